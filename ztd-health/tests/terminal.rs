//! People at a terminal see a live one-line status while `ztd-health --wait` and `ztd-monitor
//! --for` run and a short summary instead of JSON (checked under a real pseudo-terminal made by
//! util-linux's `script`); a pipe gets JSON and nothing extra; `--quiet` says nothing when all is
//! well.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use ztd_testkit::{Service, TestStack, bin, require_engine, sh, tool_env};

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

#[test]
fn a_check_that_outlives_its_timeout_is_unknown_to_a_monitoring_plugin() {
    require_engine!();
    let stack = TestStack::new("timeout");
    stack.up(
        "blue",
        &[Service::new("web").label("ztd.health.http", "/health")],
    );
    let nagios = stack.run("ztd-health", &["blue", "--nagios", "-t", "1ms"]);
    nagios.expect_code(3);
    assert!(
        nagios
            .stdout
            .starts_with("ZTD-HEALTH UNKNOWN - the health check took longer"),
        "{}",
        nagios.stdout
    );
    let json = stack.run("ztd-health", &["blue", "--timeout", "1ms"]);
    json.expect_code(3)
        .expect_one_line_error("took longer than its timeout (1ms)");
    stack
        .run("ztd-health", &["blue", "--nagios", "-t", "20s"])
        .expect_code(0);
}

/// The command of a line of one of the pasteable monitoring files, pointed at `stack` and at
/// the tools built here instead of /srv/shop and /usr/local/bin.
fn pasted_command(file: &str, prefix: &str, stack: &TestStack) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/monitoring")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("example file");
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in {file}"));
    let tools = bin("ztd-health")
        .parent()
        .expect("bin dir")
        .display()
        .to_string();
    line.replace("/srv/shop", &stack.dir.display().to_string())
        .replace("/usr/local/bin", &tools)
}

#[test]
fn the_pasteable_cron_line_and_nrpe_command_work_as_written() {
    require_engine!();
    let stack = TestStack::new("pasted");
    stack.up(
        "blue",
        &[Service::new("web").label("ztd.health.http", "/health")],
    );
    std::fs::write(stack.dir.join(".current_deployment"), "blue\n").expect("state");
    // Cron: five time fields, then the command, run by sh with cron's bare environment.
    let cron = pasted_command("crontab", "*/5", &stack);
    let command: String = cron
        .split_whitespace()
        .skip(5)
        .collect::<Vec<_>>()
        .join(" ");
    let run = |command: &str| {
        Command::new("env")
            .args(["-i", "PATH=/usr/bin:/bin", "HOME=/tmp"])
            .arg(format!("COMPOSE_PROJECT_NAME={}", stack.name))
            .args(["sh", "-c", command])
            .output()
            .expect("sh")
    };
    let healthy = run(&command);
    assert_eq!(healthy.status.code(), Some(0));
    assert!(
        healthy.stdout.is_empty() && healthy.stderr.is_empty(),
        "cron mails nothing"
    );
    sh(
        "docker",
        &["stop", "-t", "1", &stack.container("web", "blue")],
    );
    let failing = run(&command);
    assert_eq!(failing.status.code(), Some(1));
    assert!(
        !failing.stdout.is_empty(),
        "cron mails the report when it fails"
    );

    let nrpe = pasted_command("nrpe.cfg", "command[", &stack);
    let command = nrpe.split_once('=').expect("command[...]=").1;
    let critical = run(command);
    assert_eq!(critical.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&critical.stdout).starts_with("ZTD-HEALTH CRITICAL - "));
}

#[test]
fn the_systemd_units_verify() {
    let Ok(status) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    };
    assert!(status.status.success());
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/monitoring");
    let dir = std::env::temp_dir().join(format!("ztd-units-{}", std::process::id()));
    let project = dir.join("srv-shop");
    std::fs::create_dir_all(&project).expect("dir");
    let tools = bin("ztd-health")
        .parent()
        .expect("bin dir")
        .display()
        .to_string();
    for (from, to) in [
        ("ztd-health@.service", "ztd-health@shop.service"),
        ("ztd-health@.timer", "ztd-health@shop.timer"),
    ] {
        let text = std::fs::read_to_string(examples.join(from)).expect("unit");
        let text = text
            .replace("/usr/local/bin", &tools)
            .replace("/srv/%i", &project.display().to_string());
        std::fs::write(dir.join(to), text).expect("unit");
    }
    let verified = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join("ztd-health@shop.service"))
        .arg(dir.join("ztd-health@shop.timer"))
        .output()
        .expect("systemd-analyze");
    let said = String::from_utf8_lossy(&verified.stderr);
    assert!(
        verified.status.success() && said.trim().is_empty(),
        "{said}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
