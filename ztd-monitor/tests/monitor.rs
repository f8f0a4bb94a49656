//! ztd-monitor against the real Docker engine: watch windows that pass or trip (crash, error
//! burst, restart loop, memory), the automatic rollback after a trip, the JSON stream surviving a
//! removed container, the live view under a pseudo-terminal, and bad flags. Its JSON is decoded
//! into the report and record types it is printed from.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ztd_core::health::HealthBody;
use ztd_core::monitor::{Findings, MonitorField, Record, TripKind, WindowBody};
use ztd_core::report::Report;
use ztd_core::report::monitor::StreamLine;
use ztd_core::stack::Color;
use ztd_testkit::{
    LoadLoop, Service, TestStack, ToolOutput, bin, example_stack, free_port, http_get,
    require_engine,
};

/// stdout's last line.
fn last_line(out: &ToolOutput) -> &str {
    out.stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no output: {out:?}"))
}

/// stdout as a window's own report.
fn window(out: &ToolOutput) -> Report<WindowBody> {
    serde_json::from_str(last_line(out)).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// The findings of a window that watched a color.
fn findings(out: &ToolOutput) -> Findings {
    match window(out).body {
        WindowBody::Watched(findings) => findings,
        WindowBody::NothingDeployed(_) => panic!("nothing watched: {}", out.stdout),
    }
}

/// The container a stream line is about, if any.
fn container_of(line: &StreamLine) -> Option<&str> {
    match &line.record {
        Record::Sample(record) => Some(&record.sample.container),
        Record::Event(event) => Some(&event.container),
        Record::Error(_) => None,
    }
}

fn one_service(tag: &str, service: Service) -> (TestStack, String) {
    let stack = TestStack::new(tag);
    stack.up("blue", &[service]);
    std::fs::write(stack.dir.join(".current_deployment"), "blue\n").unwrap();
    let name = stack.container("app", "blue");
    (stack, name)
}

#[test]
fn a_clean_window_passes() {
    require_engine!();
    let (stack, _) = one_service(
        "m-clean",
        Service::new("app").label("ztd.health.http", "/health"),
    );
    let out = stack.run("ztd-monitor", &["--for", "3s", "--interval", "500ms"]);
    out.expect_code(0);
    assert!(window(&out).envelope.ok);
    assert_eq!(window(&out).envelope.target, Some(Color::Blue));
    let found = findings(&out);
    assert!(!found.tripped);
    assert_eq!(found.color, Color::Blue);
    assert!(found.rounds >= 3);
    assert!(
        out.elapsed >= Duration::from_secs(3) && out.elapsed < Duration::from_secs(6),
        "{:?}",
        out.elapsed
    );
}

#[test]
fn a_crash_after_the_switch_trips_the_window_and_the_old_color_serves_again() {
    require_engine!();
    let stack = TestStack::new("m-crash");
    let port = free_port();
    stack.write_compose(&example_stack(&stack, port));
    stack.deploy("v1", &[]).expect_code(0);
    let load = LoadLoop::start(port, "/health");
    let started = Instant::now();
    let out = stack.pipeline(
        &format!(
            "{} | ztd-monitor --for 30s || ztd-rollback",
            ztd_testkit::PIPELINE
        ),
        &[("APP_VERSION", "v2"), ("WEB_CRASH_AFTER", "6s")],
    );
    let took = started.elapsed();
    let report = load.stop();
    out.expect_code(0);
    assert_eq!(
        out.json["tool"], "ztd-rollback",
        "the trip rolled back: {}",
        out.stdout
    );
    assert_eq!(
        (out.json["from"].as_str(), out.json["to"].as_str()),
        (Some("blue"), Some("green"))
    );
    assert!(
        took < Duration::from_secs(20),
        "tripped well before the 30s window ended: {took:?}"
    );
    assert!(out.stderr.contains("tripped after"), "{}", out.stderr);
    let (_, color, body) = http_get(port, "/").unwrap();
    assert_eq!(color.as_deref(), Some("green"));
    assert!(body.starts_with("hello from v1 (green)"), "{body}");
    eprintln!(
        "crash after the switch: {} of {} health requests failed while blue crashed and green came back",
        report.failed, report.total
    );
}

#[test]
fn a_burst_of_error_lines_trips_while_the_same_number_of_old_lines_does_not() {
    require_engine!();
    let (old, _) = one_service("m-oldlines", Service::new("app").env("LOG_ERRORS", "30"));
    std::thread::sleep(Duration::from_millis(500));
    let out = old.run("ztd-monitor", &["--for", "3s", "--interval", "500ms"]);
    out.expect_code(0);

    let (burst, name) = one_service(
        "m-burst",
        Service::new("app")
            .env("LOG_ERRORS", "30")
            .env("LOG_ERRORS_AFTER", "1500ms"),
    );
    let out = burst.run("ztd-monitor", &["--for", "20s", "--interval", "500ms"]);
    out.expect_code(1);
    let found = findings(&out);
    let trip = found.trip.expect("tripped");
    assert_eq!(trip.kind, TripKind::Errors);
    assert_eq!(trip.container, name);
    assert!(
        found.reason.unwrap_or_default().contains("30 error lines"),
        "{}",
        out.stdout
    );
    assert!(out.elapsed < Duration::from_secs(8));

    // With a higher allowed rate (label), the same burst passes.
    let (lenient, _) = one_service(
        "m-lenient",
        Service::new("app")
            .env("LOG_ERRORS", "30")
            .env("LOG_ERRORS_AFTER", "1s")
            .label("ztd.logs.max_rate", "100"),
    );
    lenient
        .run("ztd-monitor", &["--for", "3s", "--interval", "500ms"])
        .expect_code(0);
}

#[test]
fn each_new_error_line_is_counted_once_in_the_stream() {
    require_engine!();
    let (stack, name) = one_service(
        "m-once",
        Service::new("app")
            .env("LOG_ERRORS", "7")
            .env("LOG_ERRORS_AFTER", "1s"),
    );
    let out = stack.run(
        "ztd-monitor",
        &[
            "--for",
            "4s",
            "--stream",
            "--interval",
            "300ms",
            "--max-error-rate",
            "1000",
        ],
    );
    out.expect_code(0);
    let lines = out.stdout.lines().count();
    let counted: u64 = out
        .stdout
        .lines()
        .take(lines - 1)
        .map(|l| serde_json::from_str::<StreamLine>(l).expect("a stream line"))
        .filter_map(|line| match line.record {
            Record::Sample(record) if record.sample.container == name => {
                Some(record.sample.new_error_lines)
            }
            _ => None,
        })
        .sum();
    assert_eq!(counted, 7, "seven lines, each counted once");
}

#[test]
fn a_restart_loop_trips_the_window() {
    require_engine!();
    let (stack, name) = one_service(
        "m-loop",
        Service::new("app")
            .env("CRASH_AFTER", "700ms")
            .restart("always"),
    );
    let out = stack.run("ztd-monitor", &["--for", "20s"]);
    out.expect_code(1);
    let trip = findings(&out).trip.expect("tripped");
    assert_eq!(trip.container, name);
    assert!([TripKind::Exited, TripKind::Restarted].contains(&trip.kind));
    assert!(out.elapsed < Duration::from_secs(5));
}

#[test]
fn memory_over_a_limit_trips_the_window() {
    require_engine!();
    let (stack, _) = one_service("m-mem", Service::new("app").env("MEMORY_MB", "48"));
    let out = stack.run(
        "ztd-monitor",
        &[
            "--for",
            "20s",
            "--max-memory",
            "16MiB",
            "--interval",
            "500ms",
        ],
    );
    out.expect_code(1);
    assert_eq!(findings(&out).trip.expect("tripped").kind, TripKind::Memory);
    let env = stack.run_with(
        "ztd-monitor",
        &["--for", "2s", "--interval", "500ms"],
        &[("ZTD_MAX_MEMORY", "1GiB")],
        None,
    );
    env.expect_code(0);
}

#[test]
fn a_pipeline_object_is_passed_on_with_the_findings() {
    require_engine!();
    let (stack, _) = one_service(
        "m-pipe",
        Service::new("app").label("ztd.health.http", "/health"),
    );
    let out = stack.pipeline(
        "ztd-health blue | ztd-monitor --for 2s --interval 500ms",
        &[],
    );
    out.expect_code(0);
    let passed: Report<HealthBody> = serde_json::from_str(last_line(&out)).expect("decode");
    assert_eq!(passed.envelope.tool, "ztd-health");
    assert_eq!(passed.envelope.target, Some(Color::Blue));
    let monitor: MonitorField =
        serde_json::from_value(out.json["monitor"].clone()).expect("monitor");
    assert_eq!(monitor.tool, "ztd-monitor");
    assert!(!monitor.findings.tripped);
    let failed = stack.run_with(
        "ztd-monitor",
        &["--for", "2s"],
        &[],
        Some("{\"tool\":\"ztd-up\",\"ok\":false,\"target\":\"blue\"}"),
    );
    failed.expect_code(1);
    assert_eq!(
        failed.json["tool"], "ztd-up",
        "a failure upstream is passed on unchanged"
    );
    let env = stack.run_with(
        "ztd-monitor",
        &["--for"],
        &[("MIGRATION_GRACE_PERIOD", "1s")],
        None,
    );
    env.expect_code(0);
    assert_eq!(
        findings(&env).window_s,
        1.0,
        "--for alone takes MIGRATION_GRACE_PERIOD"
    );
}

#[test]
fn the_stream_survives_a_container_removed_under_it() {
    require_engine!();
    let stack = TestStack::new("m-removed");
    stack.up("blue", &[Service::new("app"), Service::new("other")]);
    let removed = stack.container("other", "blue");
    let mut child = Command::new(bin("ztd-monitor"))
        .args(["--both", "--interval", "300ms"])
        .current_dir(&stack.dir)
        .env("COMPOSE_PROJECT_NAME", &stack.name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    ztd_testkit::sh("docker", &["rm", "-f", &removed]);
    // A round takes about a second (the engine answers stats at its next sample): wait for a few.
    std::thread::sleep(Duration::from_millis(3500));
    assert!(child.try_wait().unwrap().is_none(), "still running");
    ztd_testkit::sh("kill", &["-INT", &child.id().to_string()]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<StreamLine> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is a stream line"))
        .collect();
    assert!(lines.iter().all(|l| l.tool == "ztd-monitor"));
    assert!(lines.iter().any(|l| matches!(&l.record,
        Record::Event(event) if event.container == removed && event.action == "destroy")));
    let last_removed = lines
        .iter()
        .rposition(|l| container_of(l) == Some(removed.as_str()))
        .unwrap();
    let app = stack.container("app", "blue");
    assert!(
        lines[last_removed..].iter().any(|l| matches!(&l.record,
            Record::Sample(record) if record.sample.container == app)),
        "samples go on after the removal"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Monitoring stopped"));
}

#[test]
fn the_live_view_shows_both_colors_under_a_terminal() {
    require_engine!();
    let stack = TestStack::new("m-view");
    stack.up("blue", &[Service::new("app").env("LOG_EVERY", "200ms")]);
    stack.up("green", &[Service::new("app")]);
    std::fs::write(stack.dir.join(".current_deployment"), "blue\n").unwrap();
    let command = format!("{} --interval 500ms", bin("ztd-monitor").display());
    let out = Command::new("timeout")
        .args(["-s", "INT", "3", "script", "-qfec", &command, "/dev/null"])
        .current_dir(&stack.dir)
        .env("COMPOSE_PROJECT_NAME", &stack.name)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "ztd-monitor",
        "TRANSITION IN PROGRESS - Both deployments active",
        "=== BLUE DEPLOYMENT (active) ===",
        "=== GREEN DEPLOYMENT (standby) ===",
        "Health:",
        "Containers:",
        "Resources:",
        "Logs:",
        "working: tick",
        &stack.container("app", "green"),
    ] {
        assert!(
            screen.contains(needle),
            "the view lacks {needle:?}:\n{screen}"
        );
    }
    assert!(screen.contains("\x1b[H\x1b[2J"), "it redraws the screen");
}

#[test]
fn bad_flags_exit_2_and_start_nothing() {
    require_engine!();
    let stack = TestStack::new("m-bad");
    let before = stack.snapshot();
    stack
        .run("ztd-monitor", &["--for", "soon"])
        .expect_code(2)
        .expect_one_line_error("bad duration");
    stack.run("ztd-monitor", &["--bogus"]).expect_code(2);
    stack.run("ztd-monitor", &["blue", "--both"]).expect_code(2);
    stack
        .run("ztd-monitor", &["--view", "--for", "3s"])
        .expect_code(2);
    stack
        .run("ztd-monitor", &["--for", "1s", "--max-error-rate", "lots"])
        .expect_code(2);
    stack
        .run_with(
            "ztd-monitor",
            &["--for"],
            &[("MIGRATION_GRACE_PERIOD", "a while")],
            None,
        )
        .expect_code(2)
        .expect_one_line_error("MIGRATION_GRACE_PERIOD");
    assert_eq!(stack.snapshot(), before);
}
