//! Every tool gives up on an engine that answers the handshake and then never answers again
//! (design, invariant 8): the read-only tools with exit 3 within the 15 s promise, naming the
//! call and the engine's address; the changing tools with exit 3, 4 or 6 within a minute, with
//! no state file changed. All at the default ZTD_ENGINE_TIMEOUT: the promise is about defaults.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use ztd_testkit::{TestStack, ToolOutput, WedgedEngine, example_stack, free_port, require_engine};

/// The promise for read-only tools, with room for starting the process on a busy machine.
const READ_ONLY_LIMIT: Duration = Duration::from_secs(20);
/// The bound asked of the changing tools.
const CHANGING_LIMIT: Duration = Duration::from_secs(60);

/// The project dir's files, but for the lock, which records its last holder by design.
fn state_files(stack: &TestStack) -> BTreeMap<String, Vec<u8>> {
    let mut files = stack.snapshot().files;
    files.retain(|path, _| !path.starts_with(".ztd/lock"));
    files
}

fn run_wedged(stack: &TestStack, engine: &WedgedEngine, tool: &str, args: &[&str]) -> ToolOutput {
    let host = engine.host();
    let out = stack.run_with(tool, args, &[("DOCKER_HOST", &host)], None);
    eprintln!(
        "{tool} {}: exit {} after {:.1}s: {}",
        args.join(" "),
        out.code,
        out.elapsed.as_secs_f64(),
        out.stderr.trim()
    );
    out
}

fn assert_names_call_and_socket(out: &ToolOutput, text: &str, engine: &WedgedEngine) {
    let socket = engine.socket().display().to_string();
    assert!(
        text.contains("did not answer `") && text.contains(&socket),
        "the message should name the call and {socket}: {text:?}\nstderr: {}",
        out.stderr
    );
}

#[test]
fn every_tool_gives_up_on_an_engine_that_stops_answering() {
    require_engine!();
    let stack = TestStack::new("wedged");
    stack.write_compose(&example_stack(&stack, free_port()));
    stack.deploy("v1", &[]).expect_code(0);
    let before = stack.snapshot();
    let engine = WedgedEngine::start();

    // The read-only tools, side by side.
    let read_only: [(&str, &[&str]); 4] = [
        ("ztd-detect", &[]),
        ("ztd-health", &[]),
        ("ztd-health", &["--nagios"]),
        ("ztd-monitor", &["--for", "5s"]),
    ];
    let outputs: Vec<ToolOutput> = std::thread::scope(|scope| {
        let runs: Vec<_> = read_only
            .iter()
            .map(|(tool, args)| scope.spawn(|| run_wedged(&stack, &engine, tool, args)))
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for ((tool, args), out) in read_only.iter().zip(&outputs) {
        out.expect_code(3);
        assert!(
            out.elapsed < READ_ONLY_LIMIT,
            "{tool} {args:?} took {:?}",
            out.elapsed
        );
        if args.contains(&"--nagios") {
            assert!(out.stdout.contains(" UNKNOWN - "), "{}", out.stdout);
            assert_eq!(out.stdout.trim().lines().count(), 1, "{}", out.stdout);
            assert_names_call_and_socket(out, &out.stdout, &engine);
        } else {
            out.expect_one_line_error("did not answer");
            assert_names_call_and_socket(out, &out.stderr, &engine);
            assert_eq!(out.json["ok"], false, "{}", out.stdout);
        }
    }

    // The changing tools, one after the other (they take the lock).
    for (tool, args) in [
        ("ztd-up", &[][..]),
        ("ztd-switch", &[][..]),
        ("ztd-rollback", &[][..]),
    ] {
        let files = state_files(&stack);
        let out = run_wedged(&stack, &engine, tool, args);
        assert!(
            [3, 4, 6].contains(&out.code),
            "{tool}: exit {}\nstdout: {}\nstderr: {}",
            out.code,
            out.stdout,
            out.stderr
        );
        assert!(
            out.elapsed < CHANGING_LIMIT,
            "{tool} took {:?}",
            out.elapsed
        );
        assert_eq!(state_files(&stack), files, "{tool} changed a state file");
    }
    assert!(
        engine.requests().iter().any(|r| r.contains("/containers/")),
        "the tools never got past the handshake: {:?}",
        engine.requests()
    );

    // An engine that wedges under a tool already past its first calls: a health wait (on the
    // standby color, so it is still waiting when the engine stops answering) and a watch window
    // each end with exit 3 instead of waiting on, or passing clean on what was never seen.
    let late: [(&str, &[&str]); 2] = [
        ("ztd-health", &["blue", "--wait"]),
        ("ztd-monitor", &["--for", "15s"]),
    ];
    let outputs: Vec<(ToolOutput, WedgedEngine)> = std::thread::scope(|scope| {
        let runs: Vec<_> = late
            .iter()
            .map(|(tool, args)| {
                scope.spawn(|| {
                    let engine = WedgedEngine::answering_for(Duration::from_secs(3));
                    (run_wedged(&stack, &engine, tool, args), engine)
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for ((tool, args), (out, engine)) in late.iter().zip(&outputs) {
        out.expect_code(3);
        // Progress lines come first here; the error is the last line.
        let last = out.stderr.lines().last().unwrap_or_default();
        assert!(last.contains("error: "), "{}", out.stderr);
        assert_names_call_and_socket(out, last, engine);
        // The 3 s of answers, then the 10 s deadline (the watch: its 15 s window).
        assert!(
            out.elapsed < Duration::from_secs(25),
            "{tool} {args:?} took {:?}",
            out.elapsed
        );
    }

    // Nothing changed: files (the lock aside) and containers.
    let mut after = stack.snapshot();
    let mut before = before;
    for snapshot in [&mut before, &mut after] {
        snapshot
            .files
            .retain(|path, _| !path.starts_with(".ztd/lock"));
    }
    assert_eq!(after, before);
}

#[test]
fn bad_deadline_settings_are_usage_errors_that_change_nothing() {
    require_engine!();
    let stack = TestStack::new("deadline-usage");
    stack.write_compose(&example_stack(&stack, free_port()));
    let before = stack.snapshot();
    let bad_engine = [("ZTD_ENGINE_TIMEOUT", "soon")];
    for tool in [
        "ztd-detect",
        "ztd-health",
        "ztd-up",
        "ztd-switch",
        "ztd-rollback",
    ] {
        let out = stack.run_with(tool, &[], &bad_engine, None);
        out.expect_code(2)
            .expect_one_line_error("ZTD_ENGINE_TIMEOUT: bad duration \"soon\"");
    }
    let out = stack.run_with("ztd-up", &[], &[("ZTD_COMPOSE_TIMEOUT", "0")], None);
    out.expect_code(2)
        .expect_one_line_error("ZTD_COMPOSE_TIMEOUT: must be more than zero");
    assert_eq!(stack.snapshot(), before);
}
