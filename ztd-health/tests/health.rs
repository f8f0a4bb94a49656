//! ztd-health against the real Docker engine: every kind of container health, the wait, the
//! nagios mode, pipelines, settings, and bad input that must change nothing. Its JSON is decoded
//! into the report types it is printed from.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ztd_core::engine::{DockerHealth, RunState};
use ztd_core::health::{
    Check, CheckName, CheckStatus, ContainerHealth, ContainerStatus, HealthBody, HealthReport,
    HealthStatus,
};
use ztd_core::report::Report;
use ztd_core::stack::Color;
use ztd_core::validate::{Group, ValidationBody};
use ztd_testkit::{Service, TestStack, ToolOutput, eventually, require_engine};

/// stdout's last line.
fn last_line(out: &ToolOutput) -> &str {
    out.stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no output: {out:?}"))
}

/// stdout as ztd-health's report.
fn report(out: &ToolOutput) -> Report<HealthBody> {
    serde_json::from_str(last_line(out)).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// stdout as the report of a color that was checked.
fn checked(out: &ToolOutput) -> HealthReport {
    match report(out).body {
        HealthBody::Checked { report, .. } => report,
        HealthBody::NothingDeployed(_) => panic!("nothing checked: {}", out.stdout),
    }
}

/// stdout as ztd-health --validate's report.
fn validation(out: &ToolOutput) -> Report<ValidationBody> {
    serde_json::from_str(last_line(out)).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn container(out: &ToolOutput, name: &str) -> ContainerHealth {
    checked(out)
        .containers
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("{name} not in {}", out.stdout))
}

fn check(out: &ToolOutput, name: &str, check: CheckName) -> Check {
    container(out, name)
        .checks
        .into_iter()
        .find(|c| c.name == check)
        .unwrap_or_else(|| panic!("no {check:?} check on {name}: {}", out.stdout))
}

#[test]
fn a_healthy_color_passes_every_kind_of_check() {
    require_engine!();
    let stack = TestStack::new("h-ok");
    stack.up(
        "blue",
        &[
            Service::new("api").healthcheck("300ms"),
            Service::new("web").label("ztd.health.http", "/health"),
            Service::new("db").label("ztd.health.tcp", "8080"),
            Service::new("worker"),
        ],
    );
    std::fs::write(stack.dir.join(".current_deployment"), "blue\n").unwrap();
    let out = stack.run("ztd-health", &["--wait", "--min-uptime", "1s"]);
    out.expect_code(0);
    let j = report(&out);
    assert_eq!(
        (j.envelope.tool.as_str(), j.envelope.ok),
        ("ztd-health", true)
    );
    assert_eq!(j.envelope.target, Some(Color::Blue));
    let health = checked(&out);
    assert_eq!(health.color, Color::Blue);
    assert_eq!(health.status, HealthStatus::Healthy);
    assert_eq!(health.summary.healthy, 4);
    let api = stack.container("api", "blue");
    assert_eq!(
        check(&out, &api, CheckName::DockerHealth).status,
        CheckStatus::Pass
    );
    let web = stack.container("web", "blue");
    let http = check(&out, &web, CheckName::Http);
    assert_eq!(http.status, CheckStatus::Pass);
    assert!(http.detail.contains("200"), "{}", http.detail);
    assert!(http.duration_ms.is_finite() && http.duration_ms >= 0.0);
    assert_eq!(
        check(&out, &stack.container("db", "blue"), CheckName::Tcp).status,
        CheckStatus::Pass
    );
    let worker = stack.container("worker", "blue");
    assert_eq!(
        check(&out, &worker, CheckName::Uptime).status,
        CheckStatus::Pass
    );
    assert_eq!(
        check(&out, &worker, CheckName::DockerHealth).detail,
        "no HEALTHCHECK"
    );
    assert_eq!(
        check(&out, &worker, CheckName::LogErrors).status,
        CheckStatus::Pass
    );
    assert_eq!(
        check(&out, &worker, CheckName::Restarts).status,
        CheckStatus::Pass
    );
}

#[test]
fn starting_then_healthy_within_the_wait_returns_promptly() {
    require_engine!();
    let stack = TestStack::new("h-starting");
    stack.up(
        "green",
        &[
            Service::new("slow")
                .env("HEALTHY_AFTER", "2s")
                .healthcheck("200ms"),
            Service::new("probed")
                .env("HEALTHY_AFTER", "1500ms")
                .label("ztd.health.http", "/health"),
        ],
    );
    // Right after the start, a single pass sees it starting: a distinct result. ztd runs its
    // HEALTHCHECK itself then, which fails until 2 s after the start.
    let once = stack.run("ztd-health", &["green"]);
    once.expect_code(1);
    let slow = stack.container("slow", "green");
    assert_eq!(container(&once, &slow).health, DockerHealth::Starting);
    let early = check(&once, &slow, CheckName::DockerHealth);
    assert_eq!(early.status, CheckStatus::Fail);
    assert!(
        early
            .detail
            .starts_with("starting; its HEALTHCHECK exits 1 when run now"),
        "{}",
        early.detail
    );

    let out = stack.run("ztd-health", &["green", "--wait"]);
    out.expect_code(0);
    let HealthBody::Checked { waited, report } = report(&out).body else {
        panic!("checked: {}", out.stdout);
    };
    assert!(waited);
    assert!(report.rounds > 1);
    // The default deadline is 10 x 5s; it returned long before that.
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
}

#[test]
fn an_unhealthy_color_fails_once_and_when_waiting_until_the_deadline() {
    require_engine!();
    let stack = TestStack::new("h-unhealthy");
    stack.up(
        "blue",
        &[
            Service::new("web")
                .env("HEALTH_FAIL", "1")
                .label("ztd.health.http", "/health"),
            Service::new("api")
                .env("HEALTH_FAIL", "1")
                .healthcheck("200ms"),
        ],
    );
    let before = stack.snapshot();
    let out = stack.run("ztd-health", &["blue"]);
    out.expect_code(1);
    assert!(!report(&out).envelope.ok);
    assert_eq!(checked(&out).status, HealthStatus::Unhealthy);
    let web = stack.container("web", "blue");
    assert!(check(&out, &web, CheckName::Http).detail.contains("503"));
    let api = stack.container("api", "blue");
    assert!(eventually(Duration::from_secs(10), || {
        checked(&stack.run("ztd-health", &["blue"]))
            .containers
            .iter()
            .any(|c| c.name == api && c.health == DockerHealth::Unhealthy)
    }));
    let waited = stack.run(
        "ztd-health",
        &[
            "blue",
            "--wait",
            "--retries",
            "3",
            "--retry-interval",
            "500ms",
        ],
    );
    waited.expect_code(1);
    assert!(
        waited.elapsed >= Duration::from_millis(1500),
        "{:?}",
        waited.elapsed
    );
    assert!(
        waited.elapsed < Duration::from_secs(6),
        "{:?}",
        waited.elapsed
    );
    assert_eq!(stack.snapshot(), before, "a health check changes nothing");
}

#[test]
fn an_exited_container_fails_and_a_wait_gives_up_at_once() {
    require_engine!();
    let stack = TestStack::new("h-exited");
    stack.up(
        "blue",
        &[Service::new("web")
            .env("CRASH_AFTER", "100ms")
            .env("CRASH_CODE", "3")],
    );
    let name = stack.container("web", "blue");
    assert!(eventually(Duration::from_secs(10), || stack.inspect(&name)
        ["State"]["Status"]
        == "exited"));
    let out = stack.run("ztd-health", &["blue", "--wait"]);
    out.expect_code(1);
    assert_eq!(container(&out, &name).state, RunState::Exited);
    assert!(
        check(&out, &name, CheckName::Running)
            .detail
            .contains("code 3")
    );
    assert_eq!(
        checked(&out).rounds,
        1,
        "no point waiting for a container that will not restart"
    );
    assert!(out.elapsed < Duration::from_secs(5));
}

#[test]
fn a_restart_loop_is_unhealthy() {
    require_engine!();
    let stack = TestStack::new("h-loop");
    stack.up(
        "blue",
        &[Service::new("web")
            .env("CRASH_AFTER", "200ms")
            .restart("always")],
    );
    let name = stack.container("web", "blue");
    assert!(eventually(Duration::from_secs(15), || {
        stack.inspect(&name)["RestartCount"].as_u64().unwrap_or(0) >= 2
    }));
    let out = stack.run("ztd-health", &["blue", "--wait"]);
    out.expect_code(1);
    let restarts = check(&out, &name, CheckName::Restarts);
    assert_eq!(restarts.status, CheckStatus::Fail);
    assert!(restarts.detail.starts_with("restarted"));
    assert!(
        out.elapsed < Duration::from_secs(5),
        "restarts only grow: no waiting"
    );
    let lenient = stack.run("ztd-health", &["blue", "--max-restarts", "1000"]);
    assert_eq!(
        check(&lenient, &name, CheckName::Restarts).status,
        CheckStatus::Pass,
        "--max-restarts is honoured"
    );
}

#[test]
fn a_hanging_health_endpoint_is_cut_off_by_the_probe_timeout() {
    require_engine!();
    let stack = TestStack::new("h-hang");
    stack.up(
        "blue",
        &[Service::new("web")
            .env("HEALTH_HANG", "1")
            .label("ztd.health.http", "/health")],
    );
    let name = stack.container("web", "blue");
    let out = stack.run("ztd-health", &["blue", "--probe-timeout", "500ms"]);
    out.expect_code(1);
    let http = check(&out, &name, CheckName::Http);
    assert_eq!(http.status, CheckStatus::Fail);
    assert!(
        http.detail.contains("no answer within 500ms"),
        "{}",
        http.detail
    );
    let took = http.duration_ms;
    assert!((450.0..3000.0).contains(&took), "probe took {took} ms");
    assert!(out.elapsed < Duration::from_secs(4), "{:?}", out.elapsed);
}

#[test]
fn error_lines_warn_by_default_and_fail_beyond_a_limit() {
    require_engine!();
    let stack = TestStack::new("h-logs");
    stack.up(
        "blue",
        &[
            Service::new("web")
                .env("LOG_ERRORS", "3")
                .label("ztd.health.http", "/health"),
            Service::new("quiet")
                .env("LOG_ERRORS", "2")
                .label("ztd.health.http", "/health")
                .label("ztd.logs.error", "^FATAL"),
        ],
    );
    let web = stack.container("web", "blue");
    let ok = stack.run("ztd-health", &["blue", "--wait"]);
    ok.expect_code(0);
    assert_eq!(checked(&ok).status, HealthStatus::Warning);
    let logs = check(&ok, &web, CheckName::LogErrors);
    assert_eq!(logs.status, CheckStatus::Warn);
    assert!(logs.detail.starts_with("3 error lines"), "{}", logs.detail);
    // A service-specific pattern that the lines do not match.
    assert_eq!(
        check(&ok, &stack.container("quiet", "blue"), CheckName::LogErrors).status,
        CheckStatus::Pass
    );

    let strict = stack.run("ztd-health", &["blue", "--max-log-errors", "2"]);
    strict.expect_code(1);
    assert_eq!(
        check(&strict, &web, CheckName::LogErrors).status,
        CheckStatus::Fail
    );
    stack
        .run("ztd-health", &["blue", "--max-log-errors", "3"])
        .expect_code(0);
}

#[test]
fn memory_over_a_ceiling_is_unhealthy() {
    require_engine!();
    let stack = TestStack::new("h-mem");
    stack.up(
        "blue",
        &[Service::new("web")
            .env("MEMORY_MB", "48")
            .label("ztd.health.http", "/health")],
    );
    let web = stack.container("web", "blue");
    assert!(eventually(Duration::from_secs(10), || {
        sh_logs(&web).contains("holding 48 MiB")
    }));
    let out = stack.run("ztd-health", &["blue", "--max-memory", "16MiB"]);
    out.expect_code(1);
    let memory = check(&out, &web, CheckName::Memory);
    assert_eq!(memory.status, CheckStatus::Fail);
    stack
        .run("ztd-health", &["blue", "--max-memory", "1GiB"])
        .expect_code(0);
}

fn sh_logs(container: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["logs", container])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn nagios_mode_prints_one_line_with_plugin_codes() {
    require_engine!();
    let stack = TestStack::new("h-nagios");
    stack.run("ztd-health", &["--nagios"]).expect_code(2);
    stack.up(
        "blue",
        &[Service::new("web")
            .env("LOG_ERRORS", "1")
            .label("ztd.health.http", "/health")],
    );
    let warn = stack.run("ztd-health", &["--nagios"]);
    warn.expect_code(1);
    assert_eq!(warn.stdout.lines().count(), 1, "{}", warn.stdout);
    assert!(
        warn.stdout.starts_with("ZTD-HEALTH WARNING - "),
        "{}",
        warn.stdout
    );
    assert!(
        warn.stdout.contains("| containers=1"),
        "perfdata: {}",
        warn.stdout
    );
    let ok = stack.run("ztd-health", &["--nagios", "--max-log-errors", "5"]);
    ok.expect_code(0);
    assert!(ok.stdout.starts_with("ZTD-HEALTH OK - "));
    let critical = stack.run("ztd-health", &["--nagios", "--max-log-errors", "0"]);
    critical.expect_code(2);
    assert!(critical.stdout.starts_with("ZTD-HEALTH CRITICAL - "));
    let unknown = stack.run_with(
        "ztd-health",
        &["--nagios"],
        &[("DOCKER_HOST", "unix:///nonexistent.sock")],
        None,
    );
    unknown.expect_code(3);
    assert!(unknown.stdout.starts_with("ZTD-HEALTH UNKNOWN - "));
    let usage = stack.run("ztd-health", &["--nagios", "--bogus"]);
    usage.expect_code(3);
    assert!(usage.stdout.starts_with("ZTD-HEALTH UNKNOWN - "));
}

#[test]
fn the_environment_sets_the_deadline_and_flags_override_it() {
    require_engine!();
    let stack = TestStack::new("h-env");
    stack.up(
        "blue",
        &[Service::new("web")
            .env("HEALTH_FAIL", "1")
            .label("ztd.health.http", "/health")],
    );
    let env = [
        ("HEALTH_CHECK_RETRIES", "2"),
        ("HEALTH_CHECK_INTERVAL", "1"),
    ];
    let out = stack.run_with("ztd-health", &["blue", "--wait"], &env, None);
    out.expect_code(1);
    assert!(
        out.elapsed >= Duration::from_secs(2) && out.elapsed < Duration::from_secs(5),
        "2 x 1s deadline, took {:?}",
        out.elapsed
    );
    let flagged = stack.run_with(
        "ztd-health",
        &[
            "blue",
            "--wait",
            "--retries",
            "1",
            "--retry-interval",
            "300ms",
        ],
        &env,
        None,
    );
    flagged.expect_code(1);
    assert!(
        flagged.elapsed < Duration::from_millis(1800),
        "{:?}",
        flagged.elapsed
    );
    // --timeout wins over retries x interval, from the flag or ZTD_HEALTH_TIMEOUT.
    let timed = stack.run_with(
        "ztd-health",
        &["blue", "--wait", "--timeout", "400ms"],
        &env,
        None,
    );
    timed.expect_code(1);
    assert!(
        timed.elapsed < Duration::from_millis(1800),
        "{:?}",
        timed.elapsed
    );
    let timed_env = [("ZTD_HEALTH_TIMEOUT", "400ms")];
    let timed = stack.run_with("ztd-health", &["blue", "--wait"], &timed_env, None);
    timed.expect_code(1);
    assert!(
        timed.elapsed < Duration::from_millis(1800),
        "{:?}",
        timed.elapsed
    );
    let bad = stack.run_with(
        "ztd-health",
        &["blue"],
        &[("HEALTH_CHECK_INTERVAL", "soon")],
        None,
    );
    bad.expect_code(2).expect_one_line_error("soon");
    let level = stack.run_with(
        "ztd-health",
        &["blue"],
        &[("DEPLOYMENT_LOG_LEVEL", "ERROR")],
        None,
    );
    level.expect_code(1);
    assert_eq!(level.stderr, "", "ERROR level hides the warning");
    let chatty = stack.run_with(
        "ztd-health",
        &["blue"],
        &[("DEPLOYMENT_LOG_LEVEL", "DEBUG")],
        None,
    );
    assert!(chatty.stderr.contains("unhealthy"), "{}", chatty.stderr);
}

#[test]
fn the_minimum_uptime_is_honoured_and_configurable() {
    require_engine!();
    let stack = TestStack::new("h-uptime");
    stack.up("blue", &[Service::new("web")]);
    let name = stack.container("web", "blue");
    let young = stack.run("ztd-health", &["blue", "--min-uptime", "1h"]);
    young.expect_code(1);
    assert!(
        check(&young, &name, CheckName::Uptime)
            .detail
            .contains("needs")
    );
    let env = stack.run_with(
        "ztd-health",
        &["blue", "--wait"],
        &[("ZTD_MIN_UPTIME", "1500ms")],
        None,
    );
    env.expect_code(0);
    assert!(env.elapsed < Duration::from_secs(5), "{:?}", env.elapsed);
}

#[test]
fn pipelines_act_on_the_upstream_target_and_pass_failures_on() {
    require_engine!();
    let stack = TestStack::new("h-pipe");
    stack.up(
        "green",
        &[Service::new("web").label("ztd.health.http", "/health")],
    );
    let upstream = format!(
        "{{\"tool\":\"ztd-up\",\"project\":\"{}\",\"project_dir\":\"{}\",\"ok\":true,\"target\":\"green\"}}\n",
        stack.name,
        stack.dir.display()
    );
    let out = stack.run_with("ztd-health", &[], &[], Some(&upstream));
    out.expect_code(0);
    assert_eq!(checked(&out).color, Color::Green);
    assert_eq!(report(&out).envelope.target, Some(Color::Green));

    let failed = "{\"tool\":\"ztd-up\",\"ok\":false,\"target\":\"green\",\"error\":{\"message\":\"build failed\"}}";
    let passed = stack.run_with("ztd-health", &[], &[], Some(failed));
    passed.expect_code(1);
    assert_eq!(passed.stdout.trim(), failed, "passed on unchanged");

    // Empty stdin means no upstream: the active color (green, adopted).
    let empty = stack.run_with("ztd-health", &[], &[], Some(""));
    empty.expect_code(0);
    assert_eq!(checked(&empty).color, Color::Green);

    stack
        .run_with("ztd-health", &[], &[], Some("this is not json"))
        .expect_code(2)
        .expect_one_line_error("not the JSON");
}

#[test]
fn a_handover_service_waiting_in_the_candidate_color_is_standby_not_a_failure() {
    require_engine!();
    let stack = TestStack::new("h-standby");
    stack.up(
        "blue",
        &[Service::new("web").label("ztd.health.http", "/health")],
    );
    std::fs::write(stack.dir.join(".current_deployment"), "blue\n").unwrap();
    let services = [
        Service::new("web").label("ztd.health.http", "/health"),
        Service::new("bot").label("ztd.switch", "handover"),
    ];
    let file = stack.dir.join(".test-green.yml");
    std::fs::write(&file, stack.render("green", &services)).unwrap();
    stack.compose("green", &file, &["create"]);
    stack.compose("green", &file, &["start", &stack.service("web")]);
    let out = stack.run("ztd-health", &["green", "--wait"]);
    out.expect_code(0);
    assert_eq!(
        container(&out, &stack.container("bot", "green")).status,
        ContainerStatus::Standby
    );
    assert_eq!(checked(&out).summary.standby, 1);
}

#[test]
fn bad_input_is_exit_2_or_5_and_changes_nothing() {
    require_engine!();
    let stack = TestStack::new("h-bad");
    stack.up("blue", &[Service::new("web")]);
    let before = stack.snapshot();
    stack
        .run("ztd-health", &["purple"])
        .expect_code(2)
        .expect_one_line_error("unknown color \"purple\"");
    stack
        .run("ztd-health", &["--retry-interval", "5 parsecs"])
        .expect_code(2)
        .expect_one_line_error("bad duration");
    stack
        .run("ztd-health", &["--timeout", "soon"])
        .expect_code(2)
        .expect_one_line_error("bad duration");
    // --interval is ztd-monitor's sampling period only.
    stack
        .run("ztd-health", &["--interval", "1s"])
        .expect_code(2)
        .expect_one_line_error("--interval");
    stack
        .run("ztd-health", &["--max-memory", "lots"])
        .expect_code(2);
    stack.run("ztd-health", &["blue", "green"]).expect_code(2);
    let nohost = stack.run_with(
        "ztd-health",
        &["blue"],
        &[("DOCKER_HOST", "unix:///nonexistent.sock")],
        None,
    );
    nohost
        .expect_code(3)
        .expect_one_line_error("cannot reach the Docker engine");
    std::fs::write(stack.dir.join(".current_deployment"), "teal\n").unwrap();
    let before_garbage = stack.snapshot();
    stack
        .run("ztd-health", &[])
        .expect_code(5)
        .expect_one_line_error("teal");
    assert_eq!(stack.snapshot(), before_garbage);
    std::fs::remove_file(stack.dir.join(".current_deployment")).unwrap();
    assert_eq!(stack.snapshot(), before);
}

#[test]
fn a_bad_ztd_label_is_a_config_error_exit_5() {
    require_engine!();
    let stack = TestStack::new("h-badlabel");
    stack.up(
        "blue",
        &[Service::new("web").label("ztd.health.port", "eighty")],
    );
    let before = stack.snapshot();
    stack
        .run("ztd-health", &["blue"])
        .expect_code(5)
        .expect_one_line_error("ztd.health.port");
    assert_eq!(stack.snapshot(), before);
}

#[test]
fn nothing_deployed_is_unhealthy() {
    require_engine!();
    let stack = TestStack::new("h-none");
    let out = stack.run("ztd-health", &[]);
    out.expect_code(1);
    let HealthBody::NothingDeployed(nothing) = report(&out).body else {
        panic!("nothing deployed: {}", out.stdout);
    };
    assert_eq!(nothing.problem, "nothing is deployed");
    let out = stack.run("ztd-health", &["blue"]);
    out.expect_code(1);
    let problem = checked(&out).problem.unwrap_or_default();
    assert!(problem.contains("no containers"), "{problem}");
}

#[test]
fn validate_runs_every_group_of_checks_as_json() {
    require_engine!();
    let stack = TestStack::new("h-validate");
    stack.up(
        "blue",
        &[
            Service::new("web").label("ztd.health.http", "/health"),
            Service::new("noisy")
                .env("LOG_ERRORS", "1")
                .env("HEALTH_FAIL", "1")
                .label("ztd.health.http", "/health"),
        ],
    );
    std::fs::write(stack.dir.join(".current_deployment"), "blue\n").unwrap();
    let out = stack.run("ztd-health", &["--validate"]);
    out.expect_code(1);
    let report = validation(&out);
    assert_eq!(report.envelope.tool, "ztd-health");
    let ValidationBody::Validated(validated) = report.body else {
        panic!("validated: {}", out.stdout);
    };
    assert!(validated.validate);
    let checks = &validated.checks;
    let groups: Vec<Group> = checks.iter().map(|c| c.group).collect();
    for group in Group::ALL {
        assert!(groups.contains(&group), "{group:?}: {groups:?}");
    }
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.pass)
        .map(|c| c.name.as_str())
        .collect();
    let noisy = stack.container("noisy", "blue");
    // Started by hand, not by ztd-up: there is no rendered file either.
    assert_eq!(
        failed,
        vec![
            format!("{noisy} HTTP health endpoint").as_str(),
            "docker-compose.blue.yml present"
        ],
        "only the failing endpoint and the missing file fail: {failed:?}"
    );
    assert_eq!(validated.failed, 2);
    assert_eq!(validated.passed + 2, checks.len());
    let web_only = stack.run("ztd-health", &["--validate", "--max-memory", "1b"]);
    web_only.expect_code(1);
    let ValidationBody::Validated(strict) = validation(&web_only).body else {
        panic!("validated: {}", web_only.stdout);
    };
    assert!(
        strict
            .checks
            .iter()
            .any(|c| c.name.contains("memory under 1B") && !c.pass)
    );
}
