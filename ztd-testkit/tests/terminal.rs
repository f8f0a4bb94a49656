//! What every tool does at the edges of a command line and a pipeline, no engine needed: bytes
//! that are not UTF-8 are a usage error on one line (never a panic), a stdin pipe that stays
//! silent gets a note on stderr and a signal ends the wait, and `--generate` makes the man page
//! and completions.
#![allow(clippy::expect_used)]

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ztd_testkit::{ToolOutput, bin, tool_env};

const TOOLS: [&str; 6] = [
    "ztd-detect",
    "ztd-up",
    "ztd-health",
    "ztd-switch",
    "ztd-rollback",
    "ztd-monitor",
];

#[test]
fn an_argument_that_is_not_utf8_is_a_usage_error_on_one_line() {
    let dir = std::env::temp_dir().join(format!("ztd-utf8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for tool in TOOLS {
        let started = Instant::now();
        let mut command = Command::new(bin(tool));
        tool_env(&mut command, &[]);
        let output = command
            .arg(std::ffi::OsStr::from_bytes(b"\xff"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .expect("run");
        let out = ToolOutput::from_output(&output, started);
        out.expect_code(2).expect_one_line_error("error");
        assert!(!out.stderr.contains("panicked"), "{tool}: {}", out.stderr);
        assert_eq!(out.json["ok"], false, "{tool}: {}", out.stdout);
        assert_eq!(
            std::fs::read_dir(&dir).expect("dir").count(),
            0,
            "{tool} wrote nothing"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_silent_stdin_pipe_is_announced_and_a_signal_ends_the_wait() {
    let dir = std::env::temp_dir().join(format!("ztd-stdin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for tool in ["ztd-health", "ztd-switch"] {
        let mut command = Command::new(bin(tool));
        tool_env(&mut command, &[]);
        // stdin: a pipe whose writer stays open and says nothing (ssh host 'ztd-health').
        let mut child = command
            .args(["--project-dir", &dir.to_string_lossy()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let writer = child.stdin.take();
        let mut stderr = child.stderr.take().expect("stderr");
        let started = Instant::now();
        let mut seen = String::new();
        let mut buffer = [0u8; 512];
        while !seen.contains("waiting for the upstream")
            && started.elapsed() < Duration::from_secs(5)
        {
            let n = stderr.read(&mut buffer).expect("read stderr");
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
        let noticed = started.elapsed();
        assert!(
            seen.contains("/dev/null"),
            "{tool} says how to skip the wait: {seen:?}"
        );
        assert!(
            noticed < Duration::from_secs(3),
            "{tool} noticed after {noticed:?}"
        );
        nix_kill(child.id(), "INT");
        // A tool that changes things notes the signal and exits 130; a read-only one may die of it.
        let status = wait_for(&mut child, Duration::from_secs(5)).expect("the wait ends");
        assert!(
            status.code() == Some(130) || status.signal() == Some(2),
            "{tool} ends the wait on SIGINT: {status:?}"
        );
        drop(writer);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn generate_makes_man_pages_and_completions_and_refuses_unknown_kinds() {
    for tool in TOOLS {
        let man = Command::new(bin(tool))
            .args(["--generate", "man"])
            .output()
            .expect("run");
        assert!(man.status.success());
        let text = String::from_utf8_lossy(&man.stdout);
        assert!(text.contains(&format!(".TH {tool} 1")), "{text}");
        for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
            let out = Command::new(bin(tool))
                .arg(format!("--generate={shell}"))
                .output()
                .expect("run");
            assert!(
                out.status.success() && !out.stdout.is_empty(),
                "{tool} {shell}"
            );
        }
        let started = Instant::now();
        let output = Command::new(bin(tool))
            .args(["--generate", "tcsh"])
            .output()
            .expect("run");
        ToolOutput::from_output(&output, started)
            .expect_code(2)
            .expect_one_line_error("expected one of man, bash");
    }
}

fn nix_kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn wait_for(child: &mut std::process::Child, limit: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}
