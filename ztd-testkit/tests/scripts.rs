//! The drop-in scripts (scripts/*.sh) against the real Docker engine: every documented path of
//! every script by exit code and output, the files they write, and the settings taking effect.
//! The scripts are copied into each test stack's scripts/ folder and run from another working
//! directory, as a project would use them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ztd_testkit::{
    Service, TestStack, ToolOutput, example_stack, free_port, require_engine, tool_env,
};

/// A stack with the example compose file and the drop-in scripts in its scripts/ folder.
fn scripted(tag: &str) -> TestStack {
    let stack = TestStack::new(tag);
    stack.write_compose(&example_stack(&stack, free_port()));
    install_scripts(&stack);
    stack
}

fn install_scripts(stack: &TestStack) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("scripts");
    let target = stack.dir.join("scripts");
    std::fs::create_dir_all(&target).unwrap();
    for script in [
        "zero-downtime-deploy.sh",
        "deployment-health-check.sh",
        "validate-deployment.sh",
        "monitor-deployment.sh",
    ] {
        std::fs::copy(source.join(script), target.join(script)).unwrap();
    }
}

/// Run a script with the tools first on PATH, from `/` (not the project directory).
fn script(stack: &TestStack, name: &str, args: &[&str], env: &[(&str, &str)]) -> ToolOutput {
    let started = Instant::now();
    let mut command = Command::new("bash");
    command
        .arg(stack.dir.join("scripts").join(name))
        .args(args)
        .current_dir("/")
        .env_remove("COMPOSE_PROJECT_NAME")
        .stdin(Stdio::null());
    tool_env(&mut command, env);
    ToolOutput::from_output(&command.output().unwrap(), started)
}

const FAST: [(&str, &str); 3] = [
    ("MIGRATION_GRACE_PERIOD", "1"),
    ("HEALTH_CHECK_INTERVAL", "1"),
    ("HEALTH_CHECK_RETRIES", "10"),
];

fn read(stack: &TestStack, file: &str) -> String {
    std::fs::read_to_string(stack.dir.join(file)).unwrap_or_default()
}

fn log_files(stack: &TestStack) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(stack.dir.join("logs"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn with_nothing_deployed_every_script_says_so_and_changes_nothing() {
    require_engine!();
    let stack = scripted("s-none");
    let before = stack.snapshot();
    let dhc = script(&stack, "deployment-health-check.sh", &[], &[]);
    assert_eq!(dhc.code, 2, "{dhc:?}");
    assert_eq!(dhc.stdout.trim(), "ERROR: No active deployment found");
    let val = script(&stack, "validate-deployment.sh", &[], &[]);
    assert_eq!(val.code, 1, "{val:?}");
    assert!(val.stdout.contains("No deployment found to validate"));
    let status = script(&stack, "zero-downtime-deploy.sh", &["--status"], &[]);
    assert_eq!(status.code, 0);
    assert!(status.stdout.contains("No active deployment"));
    let rollback = script(&stack, "zero-downtime-deploy.sh", &["--rollback"], &[]);
    assert_eq!(rollback.code, 1);
    assert!(rollback.stdout.contains("No rollback state found"));
    let unknown = script(
        &stack,
        "zero-downtime-deploy.sh",
        &["--frobnicate", "extra"],
        &[],
    );
    assert_eq!(unknown.code, 1);
    assert!(unknown.stdout.contains("Unknown command: --frobnicate"));
    assert_eq!(
        script(&stack, "zero-downtime-deploy.sh", &["-h"], &[]).code,
        1,
        "-h is unknown, as the original"
    );
    let help = script(&stack, "zero-downtime-deploy.sh", &["--help"], &[]);
    assert_eq!(help.code, 0);
    for command in [
        "deploy",
        "--rollback",
        "--cleanup <color>",
        "--status",
        "--help",
    ] {
        assert!(help.stdout.contains(command), "{}", help.stdout);
    }
    let usage = script(&stack, "zero-downtime-deploy.sh", &["--cleanup"], &[]);
    assert_eq!(usage.code, 1);
    assert!(
        usage.stdout.contains("Usage: ") && usage.stdout.contains("--cleanup <color>"),
        "{}",
        usage.stdout
    );
    let purple = script(
        &stack,
        "zero-downtime-deploy.sh",
        &["--cleanup", "purple; rm -rf /"],
        &[],
    );
    assert_eq!(purple.code, 1);
    assert!(purple.stdout.contains("Unknown color"));
    let bad = script(&stack, "deployment-health-check.sh", &["--help"], &[]);
    assert_ne!(bad.code, 0, "a colour is checked: --help is not one");
    assert_eq!(stack.snapshot(), before, "nothing written");
}

#[test]
fn a_healthy_deploy_a_second_one_a_rollback_and_a_cleanup() {
    require_engine!();
    let stack = scripted("s-deploy");
    let first = script(&stack, "zero-downtime-deploy.sh", &[], &FAST);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    for phrase in [
        "=== ZERO-DOWNTIME DEPLOYMENT STARTING ===",
        "=== DEPLOYMENT SUCCESSFUL ===",
        "Deployment Summary:",
        "New deployment: green",
    ] {
        assert!(first.stdout.contains(phrase), "{phrase}: {}", first.stdout);
    }
    assert_eq!(read(&stack, ".current_deployment"), "green\n");
    let rollback_state = read(&stack, ".rollback_state");
    assert!(
        rollback_state.starts_with("CURRENT=blue\nTARGET=green\nTIMESTAMP="),
        "{rollback_state}"
    );
    let logs = log_files(&stack);
    assert_eq!(logs.len(), 1);
    let name = &logs[0];
    assert!(
        name.starts_with("deployment-")
            && name.ends_with(".log")
            && name.len() == "deployment-20261126-031141.log".len(),
        "{name}"
    );
    let log = read(&stack, &format!("logs/{name}"));
    let ours: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" ["))
        .filter(|l| l.len() > 20 && l.as_bytes()[4] == b'-')
        .collect();
    assert!(!ours.is_empty(), "{log}");
    for line in &ours {
        let (stamp, rest) = line.split_at(19);
        assert!(
            chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S").is_ok(),
            "{line}"
        );
        assert!(
            rest.starts_with(" [INFO] ")
                || rest.starts_with(" [WARN] ")
                || rest.starts_with(" [ERROR] "),
            "{line}"
        );
    }
    assert!(
        log.contains("ztd-switch:"),
        "the tools' progress is in the log too"
    );

    let status = script(&stack, "zero-downtime-deploy.sh", &["--status"], &[]);
    assert_eq!(status.code, 0);
    assert!(status.stdout.contains("Active deployment: green"));
    assert!(
        status.stdout.contains(&stack.container("web", "green")),
        "{}",
        status.stdout
    );

    let dhc = script(&stack, "deployment-health-check.sh", &[], &[]);
    assert_eq!(dhc.code, 0, "{}", dhc.stdout);
    assert!(
        dhc.stdout
            .starts_with("Checking health of green deployment...")
    );
    assert!(
        dhc.stdout
            .contains(&format!("  {}: OK", stack.container("web", "green")))
    );
    assert!(
        dhc.stdout
            .trim_end()
            .ends_with("SUCCESS: All services healthy")
    );
    let val = script(&stack, "validate-deployment.sh", &[], &[]);
    assert_eq!(val.code, 0, "{}", val.stdout);
    let checks = val
        .stdout
        .lines()
        .filter(|l| l.starts_with("Checking "))
        .count();
    assert!(
        checks >= 17,
        "at least the original's 17 checks: {checks}\n{}",
        val.stdout
    );
    assert!(
        val.stdout
            .lines()
            .filter(|l| l.starts_with("Checking "))
            .all(|l| l.contains("... PASS"))
    );
    for group in [
        "Container Status Checks:",
        "Health Checks:",
        "Resource Checks:",
        "Log Analysis:",
        "Network Connectivity:",
        "Configuration Validation:",
    ] {
        assert!(val.stdout.contains(group), "{group}");
    }
    assert!(val.stdout.contains(&format!("Passed: {checks}")) && val.stdout.contains("Failed: 0"));
    assert!(val.stdout.contains("✓ Deployment validation PASSED"));

    let second = script(
        &stack,
        "zero-downtime-deploy.sh",
        &["deploy"],
        &[("APP_VERSION", "v2"), FAST[0], FAST[1], FAST[2]],
    );
    assert_eq!(second.code, 0, "{}\n{}", second.stdout, second.stderr);
    assert!(
        second.stdout.contains("Old deployment: green")
            && second.stdout.contains("New deployment: blue")
    );
    assert!(
        second.stdout.contains("--cleanup green"),
        "the cleanup hint"
    );
    let rollback = script(&stack, "zero-downtime-deploy.sh", &["--rollback"], &FAST);
    assert_eq!(rollback.code, 0, "{}\n{}", rollback.stdout, rollback.stderr);
    assert!(rollback.stdout.contains("ROLLING BACK TO green DEPLOYMENT"));
    assert_eq!(read(&stack, ".current_deployment"), "green\n");
    assert!(read(&stack, ".rollback_state").starts_with("CURRENT=green\nTARGET=blue\n"));

    let active = script(
        &stack,
        "zero-downtime-deploy.sh",
        &["--cleanup", "green"],
        &[],
    );
    assert_eq!(active.code, 1, "the live colour is never removed");
    assert!(
        stack
            .container_id(&stack.container("web", "green"))
            .is_some()
    );
    let cleaned = script(
        &stack,
        "zero-downtime-deploy.sh",
        &["--cleanup", "blue"],
        &[],
    );
    assert_eq!(cleaned.code, 0, "{}\n{}", cleaned.stdout, cleaned.stderr);
    assert!(!stack.dir.join("docker-compose.blue.yml").exists());
}

#[test]
fn a_failing_new_version_is_rolled_back_within_the_configured_deadline() {
    require_engine!();
    let stack = scripted("s-fail");
    assert_eq!(
        script(&stack, "zero-downtime-deploy.sh", &[], &FAST).code,
        0
    );
    let env = [
        ("APP_VERSION", "v2"),
        ("WEB_HEALTH_FAIL", "1"),
        ("HEALTH_CHECK_RETRIES", "2"),
        ("HEALTH_CHECK_INTERVAL", "1"),
        ("MIGRATION_GRACE_PERIOD", "1"),
        ("DEPLOYMENT_LOG_LEVEL", "ERROR"),
    ];
    let out = script(&stack, "zero-downtime-deploy.sh", &[], &env);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("ROLLING BACK TO green DEPLOYMENT"),
        "{}",
        out.stdout
    );
    assert!(
        out.elapsed < Duration::from_secs(30),
        "2 x 1 s health deadline: {:?}",
        out.elapsed
    );
    assert_eq!(read(&stack, ".current_deployment"), "green\n");
    assert!(
        stack
            .container_id(&stack.container("web", "green"))
            .is_some()
    );
    assert!(
        stack
            .container_id(&stack.container("web", "blue"))
            .is_none(),
        "the failed colour is stopped"
    );
    let newest = log_files(&stack).pop().unwrap();
    let log = read(&stack, &format!("logs/{newest}"));
    assert!(log.contains("[ERROR] Deployment failed"), "{log}");
    assert!(
        !log.contains("[INFO]"),
        "DEPLOYMENT_LOG_LEVEL=ERROR hides INFO lines: {log}"
    );
}

#[test]
fn the_health_check_reports_warnings_and_critical_problems_with_their_codes() {
    require_engine!();
    let stack = TestStack::new("s-dhc");
    install_scripts(&stack);
    stack.up(
        "blue",
        &[
            Service::new("web").label("ztd.health.http", "/health"),
            Service::new("noisy").env("LOG_ERRORS", "2"),
        ],
    );
    std::fs::write(stack.dir.join(".current_deployment"), "blue\n").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let warn = script(&stack, "deployment-health-check.sh", &[], &[]);
    assert_eq!(warn.code, 1, "{}", warn.stdout);
    assert!(warn.stdout.contains(&format!(
        "  {}: ERRORS IN LOGS",
        stack.container("noisy", "blue")
    )));
    assert!(
        warn.stdout
            .contains(&format!("  {}: OK", stack.container("web", "blue"))),
        "every service is checked"
    );
    assert!(warn.stdout.contains("WARNING: 1 services have warnings"));
    ztd_testkit::sh(
        "docker",
        &["stop", "-t", "1", &stack.container("web", "blue")],
    );
    let critical = script(&stack, "deployment-health-check.sh", &["blue"], &[]);
    assert_eq!(critical.code, 2, "{}", critical.stdout);
    assert!(critical.stdout.contains(&format!(
        "  {}: NOT RUNNING",
        stack.container("web", "blue")
    )));
    assert!(
        critical
            .stdout
            .contains("CRITICAL: 1 services have critical issues")
    );
    let val = script(&stack, "validate-deployment.sh", &["blue"], &[]);
    assert_eq!(val.code, 1);
    assert!(
        val.stdout.contains(&format!(
            "Checking {} running... FAIL",
            stack.container("web", "blue")
        )),
        "{}",
        val.stdout
    );
    assert!(val.stdout.contains("✗ Deployment validation FAILED"));
}

#[test]
fn the_monitor_script_shows_the_live_view_and_stops_on_ctrl_c() {
    require_engine!();
    let stack = TestStack::new("s-mon");
    install_scripts(&stack);
    stack.up("blue", &[Service::new("web")]);
    std::fs::write(stack.dir.join(".current_deployment"), "blue\n").unwrap();
    let mut command = Command::new("bash");
    command
        .arg(stack.dir.join("scripts/monitor-deployment.sh"))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = tool_env(&mut command, &[]).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    // The script execs ztd-monitor: the signal reaches it directly.
    ztd_testkit::sh("kill", &["-INT", &child.id().to_string()]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "Ctrl+C stops it with exit 0");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        screen.contains("=== BLUE DEPLOYMENT (active) ==="),
        "{screen}"
    );
    assert!(
        screen.contains("Health:") && screen.contains("Logs:"),
        "{screen}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Monitoring stopped"));
}
