//! Recovery against the real Docker engine: a switch killed with SIGKILL at every step of its
//! journal and brought back by `ztd-switch --resume` or `ztd-rollback`; rollbacks to kept and to
//! removed containers; ROLLBACK_TIMEOUT; cleanup; concurrency; Ctrl-C; `make deploy`'s fallback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;
use ztd_core::recover::{CleanupOutcome, Resolution, Resolved, ResumeOutcome, RollbackOutcome};
use ztd_core::report::Report;
use ztd_core::stack::Color;
use ztd_core::switch::SwitchOutcome;
use ztd_testkit::{
    EventLog, LoadLoop, TestStack, ToolOutput, ever_overlapped, example_stack, free_port, http_get,
    require_engine,
};

fn read(stack: &TestStack, file: &str) -> String {
    std::fs::read_to_string(stack.dir.join(file)).unwrap_or_default()
}

fn state(stack: &TestStack) -> Value {
    serde_json::from_str(&read(stack, ".ztd/state.json")).unwrap()
}

/// ztd-rollback's report, decoded.
fn rollback_report(out: &ToolOutput) -> Report<RollbackOutcome> {
    let report: Report<RollbackOutcome> = out.decode();
    assert_eq!(report.envelope.tool, "ztd-rollback", "{}", out.stdout);
    report
}

/// What `ztd-switch --resume` or `ztd-rollback` (`tool`) did with an interrupted change.
fn resolved(tool: &str, out: &ToolOutput) -> Resolved {
    let (resolved, ok) = if tool == "ztd-rollback" {
        let report = rollback_report(out);
        match report.body {
            RollbackOutcome::Resolved(resolved) => (resolved, report.envelope.ok),
            other => panic!("not resolved: {other:?}"),
        }
    } else {
        let report: Report<ResumeOutcome> = out.decode();
        assert_eq!(report.envelope.tool, "ztd-switch", "{}", out.stdout);
        match report.body {
            ResumeOutcome::Resolved(resolved) => (resolved, report.envelope.ok),
            other => panic!("not resolved: {other:?}"),
        }
    };
    assert!(ok, "{}", out.stdout);
    assert!(resolved.resumed, "{}", out.stdout);
    resolved
}

fn other(color: &str) -> &'static str {
    if color == "blue" { "green" } else { "blue" }
}

/// A fresh stack with v1 deployed (green active) and its published port.
fn deployed(tag: &str) -> (TestStack, u16) {
    let stack = TestStack::new(tag);
    let port = free_port();
    stack.write_compose(&example_stack(&stack, port));
    stack.deploy("v1", &[]).expect_code(0);
    (stack, port)
}

/// Exactly one active color, `color`: the records say so, the proxy points at it, its
/// singleton runs and the other's does not, nothing is journaled or locked.
fn assert_only_active(stack: &TestStack, port: u16, color: &str) {
    let detect = stack.run("ztd-detect", &[]);
    detect.expect_code(0);
    assert_eq!(detect.json["active"], color, "{}", detect.stdout);
    assert_eq!(detect.json["conflict"], Value::Null);
    assert_eq!(detect.json["interrupted"], false);
    assert_eq!(detect.json["lock"], Value::Null);
    assert_eq!(read(stack, ".current_deployment"), format!("{color}\n"));
    let (_, served, _) = http_get(port, "/").unwrap();
    assert_eq!(
        served.as_deref(),
        Some(color),
        "the proxy points at {color}"
    );
    assert!(
        stack.container_id(&stack.container("bot", color)).is_some(),
        "bot-{color} runs"
    );
    assert!(
        stack
            .container_id(&stack.container("bot", other(color)))
            .is_none(),
        "bot-{} does not",
        other(color)
    );
    for service in ["web", "side"] {
        assert!(
            stack
                .container_id(&stack.container(service, color))
                .is_some(),
            "{service}-{color} runs"
        );
    }
}

/// Kill a switch at `point`, check what ztd-detect says, recover with `recovery`, and check the
/// stack ends with exactly one active color. Returns (resolution, failed, total requests).
fn killed_switch_recovered_by(
    stack: &TestStack,
    port: u16,
    point: &str,
    version: &str,
    recovery: &[&str],
) -> (Resolution, u64, u64) {
    let before = read(stack, ".current_deployment").trim().to_string();
    let target = other(&before);
    stack
        .run_with("ztd-up", &[], &[("APP_VERSION", version)], None)
        .expect_code(0);
    stack.run("ztd-health", &["--wait", target]).expect_code(0);
    let load = LoadLoop::start(port, "/");
    let killed = stack.run_with("ztd-switch", &[], &[("ZTD_FAULT", point)], None);
    assert_eq!(
        killed.code, -1,
        "killed by SIGKILL at {point}: {}",
        killed.stderr
    );
    let detect = stack.run("ztd-detect", &[]);
    detect.expect_code(6);
    assert_eq!(detect.json["interrupted"], true);
    assert_eq!(detect.json["journal"]["to"], target);
    assert!(
        detect.stderr.contains("was interrupted"),
        "{}",
        detect.stderr
    );
    let out = stack.run(recovery[0], &recovery[1..]);
    out.expect_code(0);
    let resolution = resolved(recovery[0], &out);
    let active = resolution
        .active
        .expect("one active color")
        .as_str()
        .to_string();
    std::thread::sleep(Duration::from_millis(200));
    let report = load.stop();
    assert_only_active(stack, port, &active);
    if recovery[0] == "ztd-rollback" {
        assert_eq!(active, before, "a rollback undoes the interrupted switch");
    }
    (resolution.resolution, report.failed, report.total)
}

fn fault_matrix_row(tag: &str, point: &str) {
    require_engine!();
    let (stack, port) = deployed(tag);
    let point = point.replace("{bot}", &stack.service("bot"));
    let events = EventLog::start(&format!("deployment.service={}", stack.service("bot")));
    let resumed =
        killed_switch_recovered_by(&stack, port, &point, "v2", &["ztd-switch", "--resume"]);
    let rolled = killed_switch_recovered_by(&stack, port, &point, "v3", &["ztd-rollback"]);
    let events = events.stop();
    eprintln!(
        "fault matrix | {point} | resume: {:?} ({} of {} requests failed) | rollback: {:?} ({} of {} failed)",
        resumed.0, resumed.1, resumed.2, rolled.0, rolled.1, rolled.2
    );
    assert!(
        !ever_overlapped(
            &events,
            &stack.container("bot", "blue"),
            &stack.container("bot", "green")
        ),
        "the singleton ran in both colors: {events:?}"
    );
    assert_eq!((resumed.1, rolled.1), (0, 0), "no request failed");
}

macro_rules! fault_matrix {
    ($($name:ident: $point:expr,)*) => {
        $(
            #[test]
            fn $name() {
                fault_matrix_row(stringify!($name), $point);
            }
        )*
    };
}

fault_matrix! {
    killed_at_proxy_start: "proxy:start",
    killed_at_proxy_renamed: "proxy:renamed",
    killed_at_proxy_done: "proxy:done",
    killed_at_handover_start: "handover:{bot}:start",
    killed_at_handover_old_stopped: "handover:{bot}:old-stopped",
    killed_at_handover_done: "handover:{bot}:done",
    killed_at_stop_old_start: "stop_old:start",
    killed_at_stop_old_done: "stop_old:done",
    killed_at_record_start: "record:start",
    killed_at_record_written: "record:written",
    killed_at_record_done: "record:done",
}

/// A switch whose singleton fails after its handover, killed right after it marked the undo on
/// disk; `recovery` must finish the undo, never the failed switch.
fn killed_during_an_undo_recovered_by(tag: &str, recovery: &[&str]) {
    require_engine!();
    let (stack, port) = deployed(tag);
    stack
        .run_with(
            "ztd-up",
            &[],
            &[("APP_VERSION", "v2"), ("BOT_HEALTH_FAIL", "1")],
            None,
        )
        .expect_code(0);
    stack.run("ztd-health", &["--wait", "blue"]).expect_code(0);
    let events = EventLog::start(&format!("deployment.service={}", stack.service("bot")));
    let killed = stack.run_with(
        "ztd-switch",
        &[],
        &[
            ("ZTD_FAULT", "undo:start"),
            ("HEALTH_CHECK_RETRIES", "3"),
            ("HEALTH_CHECK_INTERVAL", "1"),
        ],
        None,
    );
    assert_eq!(killed.code, -1, "killed at undo:start: {}", killed.stderr);
    assert!(killed.stderr.contains("putting everything back"));
    let detect = stack.run("ztd-detect", &[]);
    detect.expect_code(6);
    assert_eq!(detect.json["journal"]["undoing"], true, "{}", detect.stdout);
    let out = stack.run(recovery[0], &recovery[1..]);
    out.expect_code(0);
    let resolution = resolved(recovery[0], &out);
    assert_eq!(resolution.resolution, Resolution::Undone, "{}", out.stdout);
    assert_eq!(resolution.active, Some(Color::Green));
    let events = events.stop();
    assert_only_active(&stack, port, "green");
    assert!(
        !ever_overlapped(
            &events,
            &stack.container("bot", "blue"),
            &stack.container("bot", "green")
        ),
        "the singleton ran in both colors: {events:?}"
    );
}

#[test]
fn a_switch_killed_during_its_undo_is_undone_by_resume() {
    killed_during_an_undo_recovered_by("rb-undo-resume", &["ztd-switch", "--resume"]);
}

#[test]
fn a_switch_killed_during_its_undo_is_undone_by_rollback() {
    killed_during_an_undo_recovered_by("rb-undo-rollback", &["ztd-rollback"]);
}

#[test]
fn a_rollback_after_a_good_switch_flips_back_without_a_failed_request() {
    require_engine!();
    let (stack, port) = deployed("rb-good");
    stack.deploy("v2", &[]).expect_code(0);
    let load = LoadLoop::start(port, "/");
    let out = stack.run("ztd-rollback", &[]);
    out.expect_code(0);
    std::thread::sleep(Duration::from_millis(200));
    let report = load.stop();
    let rolled = rollback_report(&out);
    assert!(rolled.envelope.ok);
    let RollbackOutcome::RolledBack(moved) = rolled.body else {
        panic!("not rolled back: {}", out.stdout)
    };
    eprintln!(
        "rollback to kept containers: {:.0} ms, {} of {} requests failed",
        moved.duration_ms, report.failed, report.total
    );
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!((moved.from, moved.to), (Some(Color::Blue), Color::Green));
    assert_only_active(&stack, port, "green");
    let (_, _, body) = http_get(port, "/").unwrap();
    assert!(body.starts_with("hello from v1 (green)"), "{body}");
    assert_eq!(
        read(&stack, ".rollback_state")
            .lines()
            .take(2)
            .collect::<Vec<_>>(),
        ["CURRENT=green", "TARGET=blue"]
    );
    let st = state(&stack);
    assert_eq!(
        (st["active"].as_str(), st["previous"].as_str()),
        (Some("green"), Some("blue"))
    );
    assert!(read(&stack, ".ztd/history.jsonl").contains("\"event\":\"rollback\""));
    assert_eq!(
        stack.inspect(&stack.container("web", "blue"))["State"]["Status"],
        "exited",
        "kept for inspection"
    );
}

#[test]
fn a_rollback_recreates_removed_containers_from_their_recorded_images() {
    require_engine!();
    let (stack, port) = deployed("rb-removed");
    stack.deploy("v2", &[]).expect_code(0);
    let recorded = state(&stack)["deployments"]["green"]["images"].clone();
    for service in ["web", "bot", "side"] {
        ztd_testkit::sh("docker", &["rm", "-f", &stack.container(service, "green")]);
    }
    let out = stack.run("ztd-rollback", &[]);
    out.expect_code(0);
    assert_only_active(&stack, port, "green");
    let web = stack.inspect(&stack.container("web", "green"));
    assert_eq!(
        web["Image"],
        recorded[stack.service("web")],
        "recreated from the recorded image id"
    );
}

#[test]
fn with_no_previous_deployment_a_rollback_is_refused_and_changes_nothing() {
    require_engine!();
    let (stack, port) = deployed("rb-none");
    let before = stack.snapshot();
    let out = stack.run("ztd-rollback", &[]);
    out.expect_code(1);
    let RollbackOutcome::NothingToRollBack(refusal) = rollback_report(&out).body else {
        panic!("not refused: {}", out.stdout)
    };
    assert_eq!(refusal.refused, "no previous deployment to roll back to");
    assert_eq!(stack.snapshot(), before);
    assert_only_active(&stack, port, "green");
}

#[test]
fn a_rollback_that_reaches_rollback_timeout_stops_and_reports_where_things_stand() {
    require_engine!();
    let (stack, port) = deployed("rb-timeout");
    stack
        .deploy("v2", &[("BOT_DRAIN", "/ztd-testapp sleep 8s")])
        .expect_code(0);
    let out = stack.run_with("ztd-rollback", &[], &[("ROLLBACK_TIMEOUT", "3")], None);
    out.expect_code(6);
    let RollbackOutcome::TimedOut(timed_out) = rollback_report(&out).body else {
        panic!("not timed out: {}", out.stdout)
    };
    assert!(timed_out.timed_out);
    assert!(out.elapsed < Duration::from_secs(6), "{:?}", out.elapsed);
    assert_eq!(
        timed_out.stopped_at,
        format!("handover:{}", stack.service("bot"))
    );
    let detect = stack.run("ztd-detect", &[]);
    detect.expect_code(6);
    let resumed = stack.run("ztd-switch", &["--resume"]);
    resumed.expect_code(0);
    let active = resolved("ztd-switch", &resumed)
        .active
        .expect("one active color")
        .as_str()
        .to_string();
    assert_only_active(&stack, port, &active);
}

#[test]
fn cleanup_refuses_the_active_color_and_removes_another() {
    require_engine!();
    let (stack, port) = deployed("rb-cleanup");
    stack.deploy("v2", &[]).expect_code(0);
    let before = stack.snapshot();
    let refused = stack.run("ztd-rollback", &["--cleanup", "blue"]);
    refused.expect_code(2);
    let report: Report<CleanupOutcome> = refused.decode();
    let CleanupOutcome::Refused(refusal) = report.body else {
        panic!("not refused: {}", refused.stdout)
    };
    assert_eq!(refusal.refused, "blue is the active color");
    stack
        .run("ztd-rollback", &["--cleanup", "purple"])
        .expect_code(2)
        .expect_one_line_error("unknown color");
    stack.run("ztd-rollback", &["--cleanup"]).expect_code(2);
    assert_eq!(stack.snapshot(), before, "refusals change nothing");

    let out = stack.run("ztd-rollback", &["--cleanup", "green"]);
    out.expect_code(0);
    let report: Report<CleanupOutcome> = out.decode();
    assert_eq!(report.envelope.tool, "ztd-rollback");
    let CleanupOutcome::Removed(removed) = report.body else {
        panic!("not removed: {}", out.stdout)
    };
    assert_eq!(removed.removed.len(), 3);
    assert!(!stack.dir.join("docker-compose.green.yml").exists());
    assert!(
        stack.containers().iter().all(|c| !c.contains("-green ")),
        "{:?}",
        stack.containers()
    );
    assert_eq!(state(&stack)["previous"], Value::Null);
    assert_only_active(&stack, port, "blue");
    stack.run("ztd-rollback", &[]).expect_code(1);
}

#[test]
fn a_candidate_that_was_never_switched_to_is_stopped_by_a_rollback() {
    require_engine!();
    let (stack, port) = deployed("rb-candidate");
    let env = [
        ("WEB_HEALTH_FAIL", "1"),
        ("HEALTH_CHECK_RETRIES", "1"),
        ("HEALTH_CHECK_INTERVAL", "1"),
    ];
    let failed = stack.pipeline(
        &format!("{} || ztd-rollback", ztd_testkit::PIPELINE),
        &[("APP_VERSION", "v2"), env[0], env[1], env[2]],
    );
    failed.expect_code(0);
    let RollbackOutcome::Abandoned(abandoned) = rollback_report(&failed).body else {
        panic!("no candidate abandoned: {}", failed.stdout)
    };
    assert_eq!(abandoned.abandoned, Color::Blue);
    assert_eq!(
        stack.inspect(&stack.container("web", "blue"))["State"]["Status"],
        "exited"
    );
    assert_eq!(state(&stack)["candidate"], Value::Null);
    assert_only_active(&stack, port, "green");
}

#[test]
fn a_rollback_while_a_switch_runs_exits_7_and_nothing_is_corrupt() {
    require_engine!();
    let (stack, port) = deployed("rb-race");
    stack
        .run_with(
            "ztd-up",
            &[],
            &[
                ("APP_VERSION", "v2"),
                ("BOT_DRAIN", "/ztd-testapp sleep 2s"),
            ],
            None,
        )
        .expect_code(0);
    let switched = std::thread::scope(|scope| {
        let switch = scope.spawn(|| stack.run("ztd-switch", &[]));
        assert!(ztd_testkit::eventually(Duration::from_secs(5), || stack
            .run("ztd-detect", &[])
            .json["lock"]
            .is_object()));
        let rollback = stack.run("ztd-rollback", &[]);
        rollback
            .expect_code(7)
            .expect_one_line_error("ztd-switch (pid");
        switch.join().unwrap()
    });
    switched.expect_code(0);
    assert_only_active(&stack, port, "blue");
    stack.run("ztd-rollback", &[]).expect_code(0);
    assert_only_active(&stack, port, "green");
}

#[test]
fn ctrl_c_mid_switch_puts_everything_back_and_exits_130() {
    require_engine!();
    let (stack, port) = deployed("rb-sigint");
    stack
        .run_with(
            "ztd-up",
            &[],
            &[
                ("APP_VERSION", "v2"),
                ("BOT_DRAIN", "/ztd-testapp sleep 2s"),
            ],
            None,
        )
        .expect_code(0);
    let tools = ztd_testkit::bin("ztd-switch");
    let mut child = std::process::Command::new(tools)
        .current_dir(&stack.dir)
        .env("COMPOSE_PROJECT_NAME", &stack.name)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(ztd_testkit::eventually(Duration::from_secs(5), || {
        read(&stack, ".ztd/journal.json").contains("handover:")
    }));
    nix_kill(child.id(), "INT");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let report: Report<SwitchOutcome> = serde_json::from_str(stdout.trim()).unwrap();
    assert!(!report.envelope.ok);
    // Undone by a signal: exit 130 above; the JSON reads as undone, saying why.
    let SwitchOutcome::Undone(moved) = report.body else {
        panic!("not undone: {stdout}")
    };
    assert!(moved.undone.unwrap().contains("interrupted"));
    assert_only_active(&stack, port, "green");
    assert!(!stack.dir.join(".ztd/journal.json").exists());
}

fn nix_kill(pid: u32, signal: &str) {
    ztd_testkit::sh("kill", &[&format!("-{signal}"), &pid.to_string()]);
}

#[test]
fn make_deploy_falls_back_to_ztd_rollback_when_a_stage_fails() {
    require_engine!();
    let (stack, port) = deployed("rb-make");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let out = std::process::Command::new("make")
        .args(["-s", "-C", repo.to_str().unwrap(), "-o", "build", "deploy"])
        .arg(format!("PROJECT_DIR={}", stack.dir.display()))
        .env("COMPOSE_PROJECT_NAME", &stack.name)
        .env("APP_VERSION", "v2")
        .env("WEB_HEALTH_FAIL", "1")
        .env("HEALTH_CHECK_RETRIES", "1")
        .env("HEALTH_CHECK_INTERVAL", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "a deploy that rolled back still fails: {stdout}"
    );
    assert!(stdout.contains("\"tool\":\"ztd-rollback\""), "{stdout}");
    assert_only_active(&stack, port, "green");
    assert_eq!(
        stack.inspect(&stack.container("web", "blue"))["State"]["Status"],
        "exited"
    );
}
