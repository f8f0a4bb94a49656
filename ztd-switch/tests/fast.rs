//! The quick paths of a deploy, against the real Docker engine: a singleton's HEALTHCHECK run
//! by ztd before the engine's first interval (and a failing one never passing early), and
//! `--stop-old background`, which answers before the old color stops, keeps the deploy lock
//! until it has, and is finished by `--resume` when it is killed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use ztd_core::report::Report;
use ztd_core::switch::SwitchOutcome;
use ztd_testkit::{
    EventLog, LoadLoop, TestStack, ever_overlapped, example_stack, free_port, require_engine,
    testapp_image,
};

/// A singleton whose HEALTHCHECK the engine runs only every 20 s, and a side service.
fn slow_healthcheck_stack(stack: &TestStack) -> String {
    let id = &stack.id;
    let image = testapp_image();
    format!(
        r#"services:
  bot{id}:
    image: {image}
    environment:
      VERSION: ${{APP_VERSION:-v1}}
      HEALTH_FAIL: ${{BOT_HEALTH_FAIL:-0}}
    labels:
      ztd.switch: handover
    healthcheck:
      test: ["CMD", "/ztd-testapp", "probe"]
      interval: 20s
      timeout: 2s
      retries: 3
  side{id}:
    image: {image}
    labels:
      ztd.health.tcp: "8080"
"#
    )
}

fn switched(out: &ztd_testkit::ToolOutput) -> ztd_core::switch::MoveReport {
    let report: Report<SwitchOutcome> = out.decode();
    match report.body {
        SwitchOutcome::Switched(moved) => moved,
        other => panic!("not switched: {other:?}\n{}", out.stdout),
    }
}

fn docker_health(stack: &TestStack, container: &str) -> String {
    stack.inspect(container)["State"]["Health"]["Status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_handed_over_singleton_is_healthy_before_the_engine_runs_its_first_check() {
    require_engine!();
    let stack = TestStack::new("fast-hc");
    stack.write_compose(&slow_healthcheck_stack(&stack));
    stack.deploy("v1", &[]).expect_code(0);
    let second = stack.deploy("v2", &[]);
    second.expect_code(0);
    let moved = switched(&second);
    let handover = &moved.handovers[0];
    // The engine's first check comes 20 s after the start: ztd ran the same command at once.
    assert!(
        handover.healthy_ms < 5_000.0,
        "healthy after {} ms: {}",
        handover.healthy_ms,
        second.stdout
    );
    // The gap holds the engine's own start of the new container, and ztd's part besides.
    let start_ms = handover.start_ms.expect("the new singleton was started");
    assert!(
        start_ms > 0.0 && start_ms <= handover.gap_ms,
        "{}",
        second.stdout
    );
    let bot = stack.container("bot", "blue");
    assert_eq!(
        docker_health(&stack, &bot),
        "starting",
        "the engine has not checked yet"
    );
    let health = stack.run("ztd-health", &["blue"]);
    health.expect_code(0);
    assert!(
        health.stdout.contains("its HEALTHCHECK passes (run by ztd"),
        "{}",
        health.stdout
    );
}

#[test]
fn a_failing_healthcheck_never_passes_early_and_the_handover_is_undone() {
    require_engine!();
    let stack = TestStack::new("fast-hc-fail");
    stack.write_compose(&slow_healthcheck_stack(&stack));
    stack.deploy("v1", &[]).expect_code(0);
    let events = EventLog::start(&format!("deployment.service={}", stack.service("bot")));
    let out = stack.deploy(
        "v2",
        &[("BOT_HEALTH_FAIL", "1"), ("ZTD_HEALTH_TIMEOUT", "3s")],
    );
    let events = events.stop();
    out.expect_code(1);
    let report: Report<SwitchOutcome> = out.decode();
    let SwitchOutcome::Undone(undone) = report.body else {
        panic!("not undone: {}", out.stdout)
    };
    assert!(
        undone
            .undone
            .as_deref()
            .is_some_and(|why| why.contains("HEALTHCHECK exits 1 when run now")),
        "{}",
        out.stdout
    );
    assert!(!ever_overlapped(
        &events,
        &stack.container("bot", "green"),
        &stack.container("bot", "blue"),
    ));
    let detect = stack.run("ztd-detect", &[]);
    assert_eq!(detect.json["active"], "green", "{}", detect.stdout);
    assert_eq!(
        stack.inspect(&stack.container("bot", "green"))["State"]["Running"],
        true
    );
}

/// Wait until `check` holds, up to `within`.
fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

#[test]
fn a_background_stop_answers_first_holds_the_lock_and_a_rollback_waits_for_it() {
    require_engine!();
    let stack = TestStack::new("fast-bg");
    let port = free_port();
    // The side service takes 2 s to stop: the switch must not wait for it.
    let (id, image) = (&stack.id, testapp_image());
    let plain = format!("  side{id}:\n    image: {image}\n");
    let compose = example_stack(&stack, port);
    assert!(compose.contains(&plain), "{compose}");
    stack.write_compose(&compose.replace(
        &plain,
        &format!("{plain}    environment:\n      STOP_DELAY: 2s\n"),
    ));
    stack.deploy("v1", &[]).expect_code(0);
    let load = LoadLoop::start(port, "/");
    let out = stack.pipeline(
        "ztd-detect | ztd-up | ztd-health --wait | ztd-switch --stop-old background",
        &[("APP_VERSION", "v2"), ("ZTD_STOP_OLD", "wait")],
    );
    out.expect_code(0);
    let answered = Instant::now();
    let moved = switched(&out);
    let background = moved.background_stop.clone().expect("background_stop");
    assert_ne!(background.pid, 0);
    assert!(
        background
            .containers
            .contains(&stack.container("web", "green")),
        "{}",
        out.stdout
    );
    assert!(
        !background
            .containers
            .contains(&stack.container("bot", "green")),
        "the singleton was handed over, not left to the background: {}",
        out.stdout
    );
    assert!(
        !moved.steps.list().iter().any(|s| s.name == "stop_old"),
        "{}",
        out.stdout
    );
    // The answer came while the old side still runs; the state files say blue already, and the
    // switch is in progress (journaled, lock held), not interrupted.
    let side_green = stack.container("side", "green");
    assert_eq!(stack.inspect(&side_green)["State"]["Running"], true);
    let detect = stack.run("ztd-detect", &[]);
    detect.expect_code(0);
    assert_eq!(detect.json["active"], "blue", "{}", detect.stdout);
    assert_eq!(detect.json["interrupted"], false, "{}", detect.stdout);
    assert_eq!(
        detect.json["conflict"],
        serde_json::Value::Null,
        "{}",
        detect.stdout
    );
    assert_ne!(
        detect.json["lock"],
        serde_json::Value::Null,
        "{}",
        detect.stdout
    );
    assert!(answered.elapsed() < Duration::from_secs(2));
    // A rollback made right away waits for the stop, then flips back, without a failed request.
    let rollback = stack.run("ztd-rollback", &[]);
    rollback.expect_code(0);
    let report = load.stop();
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert!(
        rollback
            .stderr
            .contains("waiting for the old color to finish stopping"),
        "{}",
        rollback.stderr
    );
    let detect = stack.run("ztd-detect", &[]);
    detect.expect_code(0);
    assert_eq!(detect.json["active"], "green", "{}", detect.stdout);
    assert_eq!(detect.json["journal"], serde_json::Value::Null);
    let log = std::fs::read_to_string(stack.dir.join(".ztd/stop-old.log")).unwrap_or_default();
    assert!(log.contains("stopped"), "{log}");
}

#[test]
fn a_killed_background_stop_leaves_the_switch_journaled_and_resume_finishes_it() {
    require_engine!();
    let stack = TestStack::new("fast-bg-kill");
    let port = free_port();
    stack.write_compose(&example_stack(&stack, port));
    stack.deploy("v1", &[]).expect_code(0);
    // The background process inherits the fault: it is killed as it begins to stop.
    let out = stack.pipeline(
        "ztd-detect | ztd-up | ztd-health --wait | ztd-switch --stop-old background",
        &[("APP_VERSION", "v2"), ("ZTD_FAULT", "stop_old:start")],
    );
    out.expect_code(0);
    let web_green = stack.container("web", "green");
    assert!(
        eventually(Duration::from_secs(10), || {
            stack.run("ztd-detect", &[]).code == 6
        }),
        "the killed stop leaves the switch journaled, the lock free"
    );
    assert_eq!(stack.inspect(&web_green)["State"]["Running"], true);
    let resumed = stack.run("ztd-switch", &["--resume"]);
    resumed.expect_code(0);
    assert_eq!(stack.inspect(&web_green)["State"]["Running"], false);
    let detect = stack.run("ztd-detect", &[]);
    detect.expect_code(0);
    assert_eq!(detect.json["active"], "blue", "{}", detect.stdout);
}

#[test]
fn a_bad_stop_old_mode_is_one_line_and_changes_nothing() {
    require_engine!();
    let stack = TestStack::new("fast-bad");
    let port = free_port();
    stack.write_compose(&example_stack(&stack, port));
    stack.deploy("v1", &[]).expect_code(0);
    stack.run("ztd-up", &[]).expect_code(0);
    let before = stack.snapshot();
    stack
        .run("ztd-switch", &["--stop-old", "later"])
        .expect_code(2)
        .expect_one_line_error("later");
    stack
        .run_with("ztd-switch", &[], &[("ZTD_STOP_OLD", "soon")], None)
        .expect_code(2)
        .expect_one_line_error("soon");
    stack.run("ztd-switch", &["--lock-fd", "3"]).expect_code(2);
    assert_eq!(stack.snapshot(), before);
}
