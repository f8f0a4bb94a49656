//! People at a terminal see a live one-line status while `ztd-health --wait` and `ztd-monitor
//! --for` run and a short summary instead of JSON (checked under a real pseudo-terminal made by
//! util-linux's `script`); a pipe gets JSON and nothing extra; `--quiet` says nothing when all is
//! well.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use ztd_testkit::{Service, TestStack, bin, require_engine, tool_env};

/// Run `tool args` under a pseudo-terminal in the stack's directory; what the terminal showed.
fn on_a_terminal(stack: &TestStack, tool: &str, args: &str) -> String {
    let line = format!("{} {args}", bin(tool).display());
    let mut command = Command::new("script");
    command
        .args(["-qfec", &line, "/dev/null"])
        .current_dir(&stack.dir)
        .env("COMPOSE_PROJECT_NAME", &stack.name)
        .env("TERM", "xterm");
    tool_env(&mut command, &[]);
    let output = command.output().expect("script (util-linux)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn slow_stack(tag: &str) -> TestStack {
    let stack = TestStack::new(tag);
    stack.up(
        "blue",
        &[Service::new("web")
            .env("HEALTHY_AFTER", "2500ms")
            .label("ztd.health.http", "/health")],
    );
    stack
}

#[test]
fn a_health_wait_shows_a_live_status_on_a_terminal_and_nothing_extra_in_a_pipe() {
    require_engine!();
    let stack = slow_stack("live-health");
    let shown = on_a_terminal(&stack, "ztd-health", "blue --wait");
    assert!(shown.contains("blue: 0/1 healthy, "), "{shown:?}");
    assert!(shown.contains(" s left"), "{shown:?}");
    assert!(shown.contains("blue: 1/1 containers healthy"), "{shown:?}");
    assert!(
        !shown.contains("\"tool\""),
        "no JSON on a terminal: {shown:?}"
    );
    let json = on_a_terminal(&stack, "ztd-health", "blue --json");
    assert!(
        json.contains("\"tool\":\"ztd-health\""),
        "--json brings it back: {json:?}"
    );

    let stack = slow_stack("live-health-pipe");
    let piped = stack.run("ztd-health", &["blue", "--wait"]);
    piped.expect_code(0);
    assert!(!piped.stderr.contains("healthy, "), "{:?}", piped.stderr);
    assert!(!piped.stderr.contains('\r'), "{:?}", piped.stderr);
}

#[test]
fn a_watch_window_shows_a_live_status_on_a_terminal_and_nothing_extra_in_a_pipe() {
    require_engine!();
    let stack = TestStack::new("live-monitor");
    stack.up(
        "blue",
        &[Service::new("web").label("ztd.health.http", "/health")],
    );
    let shown = on_a_terminal(&stack, "ztd-monitor", "blue --for 3s --interval 500ms");
    assert!(shown.contains("watching blue: "), "{shown:?}");
    assert!(shown.contains(" of 3 s, clean"), "{shown:?}");

    let piped = stack.run(
        "ztd-monitor",
        &["blue", "--for", "2s", "--interval", "500ms"],
    );
    piped.expect_code(0);
    assert!(
        !piped.stderr.contains("watching blue: "),
        "{:?}",
        piped.stderr
    );
}

#[test]
fn quiet_prints_nothing_when_healthy_and_the_report_when_not() {
    require_engine!();
    let stack = TestStack::new("quiet");
    stack.up(
        "blue",
        &[Service::new("web").label("ztd.health.http", "/health")],
    );
    let healthy = stack.run("ztd-health", &["blue", "--wait", "--quiet"]);
    healthy.expect_code(0);
    assert_eq!(healthy.stdout, "", "nothing on stdout");
    assert_eq!(healthy.stderr, "", "nothing on stderr");
    let unhealthy = stack.run("ztd-health", &["green", "-q"]);
    unhealthy.expect_code(1);
    assert!(
        unhealthy.stdout.contains("\"ok\":false"),
        "{}",
        unhealthy.stdout
    );
    // -v wins over DEPLOYMENT_LOG_LEVEL.
    let env = [("DEPLOYMENT_LOG_LEVEL", "ERROR")];
    let silent = stack.run_with("ztd-health", &["blue"], &env, None);
    assert_eq!(silent.stderr, "");
    let chatty = stack.run_with("ztd-health", &["blue", "-v"], &env, None);
    chatty.expect_code(0);
    assert!(
        chatty.stderr.contains("containers healthy"),
        "{}",
        chatty.stderr
    );
}
