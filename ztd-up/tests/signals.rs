//! Signals and closed pipes against the real Docker engine: SIGHUP to ztd-up while it starts the
//! new color (exit 130, then ztd-rollback leaves nothing of it running), SIGTERM to ztd-switch
//! before its switch begins (exit 130, nothing changed), and tools whose stdout reader has gone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use ztd_core::report::ErrorReport;
use ztd_testkit::{Service, TestStack, bin, eventually, require_engine, testapp_image, tool_env};

/// Start a tool in the stack's directory with its output piped.
fn spawn(stack: &TestStack, tool: &str, args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(bin(tool));
    command
        .args(args)
        .current_dir(&stack.dir)
        .env("COMPOSE_PROJECT_NAME", &stack.name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tool_env(&mut command, env);
    command.spawn().expect("spawn tool")
}

fn signal(child: &Child, name: &str) {
    ztd_testkit::sh("kill", &[&format!("-{name}"), &child.id().to_string()]);
}

/// Wait for a child with a deadline; its exit code (-1 when killed by a signal).
fn wait(child: &mut Child, limit: Duration) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("{} did not end within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_all(pipe: Option<impl Read>) -> String {
    let mut text = String::new();
    if let Some(mut pipe) = pipe {
        let _ = pipe.read_to_string(&mut text);
    }
    text
}

/// Names of the running containers of a Compose project.
fn running(project: &str) -> Vec<String> {
    ztd_testkit::sh(
        "docker",
        &[
            "ps",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
            "--format",
            "{{.Names}}",
        ],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

#[test]
fn sighup_while_up_starts_the_new_color_stops_it_and_rollback_cleans_up() {
    require_engine!();
    let stack = TestStack::new("sig-up");
    let (db, app) = (stack.service("db"), stack.service("app"));
    let image = testapp_image();
    // The app waits for the db to be healthy, which takes a few seconds: Compose's start of the
    // new color runs long enough to be interrupted.
    stack.write_compose(&format!(
        r#"services:
  {db}:
    image: {image}
    healthcheck:
      test: ["CMD", "/ztd-testapp", "probe"]
      interval: 3s
      timeout: 2s
      retries: 3
  {app}:
    image: {image}
    depends_on:
      {db}:
        condition: service_healthy
"#
    ));
    let mut child = spawn(&stack, "ztd-up", &[], &[]);
    let db_green = stack.container("db", "green");
    assert!(
        eventually(Duration::from_secs(60), || stack
            .container_id(&db_green)
            .is_some()),
        "{db_green} never started"
    );
    signal(&child, "HUP");
    let code = wait(&mut child, Duration::from_secs(90));
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    assert_eq!(code, 130, "stdout: {stdout}\nstderr: {stderr}");
    let report: ErrorReport = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert!(!report.ok);
    assert_eq!(report.error.kind, "interrupted");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        running(&stack.project("green")).is_empty(),
        "ztd-up stopped what it started: {:?}",
        running(&stack.project("green"))
    );

    let rollback = stack.run("ztd-rollback", &[]);
    rollback.expect_code(0);
    assert_eq!(rollback.json["abandoned"], "green", "{}", rollback.stdout);
    assert!(running(&stack.project("green")).is_empty());
    let detect = stack.run("ztd-detect", &[]);
    detect.expect_code(0);
    assert_eq!(detect.json["active"], Value::Null, "{}", detect.stdout);
    assert_eq!(detect.json["lock"], Value::Null);
}

#[test]
fn sigterm_before_the_switch_begins_changes_nothing() {
    require_engine!();
    let stack = TestStack::new("sig-switch");
    let app = stack.service("app");
    stack.write_compose(&format!(
        "services:\n  {app}:\n    image: {}\n",
        testapp_image()
    ));
    stack.run("ztd-up", &[]).expect_code(0);
    let mut before = stack.snapshot();
    let mut child = spawn(
        &stack,
        "ztd-switch",
        &["--force"],
        &[("ZTD_PAUSE", "switch:before=5s"), ("ZTD_MIN_UPTIME", "0s")],
    );
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "ztd-switch ended before its pause: {seen}"
        );
        seen.push_str(&line);
        if line.contains("pausing at switch:before") {
            break;
        }
    }
    signal(&child, "TERM");
    let code = wait(&mut child, Duration::from_secs(60));
    let stdout = read_all(child.stdout.take());
    seen.push_str(&read_all(Some(stderr)));
    assert_eq!(code, 130, "stdout: {stdout}\nstderr: {seen}");
    let report: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(report["error"]["kind"], "interrupted");
    let mut after = stack.snapshot();
    // The lock file names its last holder; nothing else may differ.
    before.files.remove(".ztd/lock");
    after.files.remove(".ztd/lock");
    assert_eq!(
        after, before,
        "an interrupted switch that never began changes nothing"
    );
    assert!(!stack.dir.join(".ztd/journal.json").exists());
    let detect = stack.run("ztd-detect", &[]);
    assert_eq!(detect.json["active"], Value::Null, "{}", detect.stdout);
    assert_eq!(
        detect.json["recorded"]["candidate"], "green",
        "{}",
        detect.stdout
    );
}

#[test]
fn a_closed_stdout_ends_tools_quietly() {
    require_engine!();
    let stack = TestStack::new("sig-pipe");
    // One-shot tools: the reader is gone before they write their object.
    for (tool, args) in [
        ("ztd-detect", &[][..]),
        ("ztd-health", &["--nagios"][..]),
        ("ztd-up", &["--dry-run"][..]),
        ("ztd-detect", &["--help"][..]),
    ] {
        let mut child = spawn(&stack, tool, args, &[]);
        drop(child.stdout.take());
        let code = wait(&mut child, Duration::from_secs(30));
        let stderr = read_all(child.stderr.take());
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{tool}: {stderr}"
        );
        assert_ne!(code, 101, "{tool} did not panic: {stderr}");
    }
    let mut detect = Command::new("bash");
    detect
        .args(["-o", "pipefail", "-c", "ztd-detect | head -c1"])
        .current_dir(&stack.dir)
        .env("COMPOSE_PROJECT_NAME", &stack.name);
    let out = tool_env(&mut detect, &[]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{");
    assert_eq!(out.status.code(), Some(0), "exit 0 under pipefail");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));

    // A stream whose reader takes one line and leaves: the monitor stops by itself, exit 0.
    stack.up("blue", &[Service::new("app")]);
    std::fs::write(stack.dir.join(".current_deployment"), "blue\n").unwrap();
    let mut monitor = spawn(&stack, "ztd-monitor", &["--interval", "300ms"], &[]);
    let mut lines = BufReader::new(monitor.stdout.take().unwrap());
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    let first: Value = serde_json::from_str(&first).expect("a JSON line");
    assert_eq!(first["tool"], "ztd-monitor");
    drop(lines);
    let code = wait(&mut monitor, Duration::from_secs(20));
    let stderr = read_all(monitor.stderr.take());
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Monitoring stopped"), "{stderr}");
}
