//! Notifications against the real Docker engine: one report per deploy step that should fire
//! (ztd-up, ztd-switch, a tripped ztd-monitor window, ztd-rollback) through both a command
//! (`ZTD_NOTIFY`) and a local webhook (`ZTD_WEBHOOK`), and a webhook that never answers
//! bounded by `ZTD_NOTIFY_TIMEOUT` (one retry) without changing the tool's answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use ztd_testkit::{TestStack, example_stack, free_port, require_engine};

/// One request the receiver got: its headers (lowercased names) and its body.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: String,
}

/// A local HTTP receiver on 127.0.0.1: records each request; answers 200, or, when `silent`,
/// accepts the connection, reads the request and never answers.
struct Receiver {
    url: String,
    requests: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(silent: bool) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if let Some(request) = read_request(&mut stream) {
                    recorded.lock().unwrap().push(request);
                }
                if silent {
                    held.push(stream);
                } else {
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                }
            }
        });
        Receiver { url, requests }
    }

    fn requests(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Received> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream);
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Received {
        headers,
        body: String::from_utf8(body).ok()?,
    })
}

/// The tool and `ok` of each JSON report, in order (a window's report is the upstream object
/// with its `monitor` field added).
fn tools(reports: &[String]) -> Vec<(String, bool)> {
    reports
        .iter()
        .map(|text| {
            let report: Value = serde_json::from_str(text).expect("one JSON report");
            let tool = report["monitor"]["tool"]
                .as_str()
                .or(report["tool"].as_str());
            (tool.unwrap().to_string(), report["ok"].as_bool().unwrap())
        })
        .collect()
}

fn notified_lines(stack: &TestStack) -> Vec<String> {
    std::fs::read_to_string(stack.dir.join("notified.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn each_deploy_step_that_changes_things_notifies_once_through_the_command_and_the_webhook() {
    require_engine!();
    let stack = TestStack::new("n-steps");
    let port = free_port();
    stack.write_compose(&example_stack(&stack, port));
    let receiver = Receiver::start(false);
    let notify = format!(
        "sh -c 'cat >> {}'",
        stack.dir.join("notified.jsonl").display()
    );
    let env = [
        ("ZTD_NOTIFY", notify.as_str()),
        ("ZTD_WEBHOOK", receiver.url.as_str()),
        ("SECRET", "s3cr3t-value"),
    ];

    // A deploy: ztd-up and ztd-switch notify; ztd-detect and ztd-health only read.
    stack.deploy("v1", &env).expect_code(0);
    let deployed = vec![
        ("ztd-up".to_string(), true),
        ("ztd-switch".to_string(), true),
    ];
    assert_eq!(tools(&notified_lines(&stack)), deployed);
    let bodies: Vec<String> = receiver.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(tools(&bodies), deployed);
    for request in receiver.requests() {
        assert!(
            request
                .headers
                .iter()
                .any(|(name, value)| name == "content-type" && value == "application/json"),
            "{:?}",
            request.headers
        );
    }

    // A new version that crashes: its deploy, the tripped window and the rollback notify.
    let mut crash = env.to_vec();
    crash.extend([("APP_VERSION", "v2"), ("WEB_CRASH_AFTER", "6s")]);
    let out = stack.pipeline(
        &format!(
            "{} | ztd-monitor --for 30s || ztd-rollback",
            ztd_testkit::PIPELINE
        ),
        &crash,
    );
    out.expect_code(0);
    let mut expected = deployed.clone();
    expected.extend([
        ("ztd-up".to_string(), true),
        ("ztd-switch".to_string(), true),
        ("ztd-monitor".to_string(), false),
        ("ztd-rollback".to_string(), true),
    ]);
    let lines = notified_lines(&stack);
    assert_eq!(tools(&lines), expected, "{}", out.stderr);
    let bodies: Vec<String> = receiver.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(
        bodies, lines,
        "the command and the webhook get the same reports"
    );
    assert!(!bodies.iter().any(|b| b.contains("s3cr3t-value")));
    let history = std::fs::read_to_string(stack.dir.join(".ztd/history.jsonl")).unwrap();
    assert!(!history.contains("notif"), "{history}");
}

#[test]
fn a_webhook_that_never_answers_delays_the_tool_by_at_most_its_timeout() {
    require_engine!();
    let stack = TestStack::new("n-silent");
    stack.write_compose(&example_stack(&stack, free_port()));
    // Nothing deployed: ztd-rollback answers "nothing to roll back to" (exit 1), a report that
    // notifies.
    let plain = stack.run_with("ztd-rollback", &[], &[], None);
    plain.expect_code(1);
    let receiver = Receiver::start(true);
    let hung = format!(
        "sh -c 'sleep 30; echo late >> {}'",
        stack.dir.join("late").display()
    );
    let silent = stack.run_with(
        "ztd-rollback",
        &[],
        &[
            ("ZTD_WEBHOOK", receiver.url.as_str()),
            ("ZTD_NOTIFY", hung.as_str()),
            ("ZTD_NOTIFY_TIMEOUT", "1s"),
        ],
        None,
    );
    silent.expect_code(1);
    let (before, after): (Value, Value) = (plain.decode(), silent.decode());
    assert_eq!(
        (after["tool"].clone(), after["ok"].clone()),
        (before["tool"].clone(), before["ok"].clone()),
        "{}",
        silent.stdout
    );
    assert_eq!(
        before.as_object().unwrap().keys().collect::<Vec<_>>(),
        after.as_object().unwrap().keys().collect::<Vec<_>>()
    );
    // Side by side, each within the one timeout: a silent webhook and a hung command use it
    // all, leaving no time for a retry; the tool is delayed by the timeout, never more (plus
    // start-up slack).
    let delay = silent.elapsed.saturating_sub(plain.elapsed);
    assert!(
        silent.elapsed >= Duration::from_secs(1) && delay < Duration::from_millis(1800),
        "plain {:?}, silent {:?}",
        plain.elapsed,
        silent.elapsed
    );
    assert_eq!(receiver.requests().len(), 1, "no time left for a retry");
    let warnings: Vec<&str> = silent
        .stderr
        .lines()
        .filter(|l| l.contains("notification failed"))
        .collect();
    assert_eq!(warnings.len(), 2, "one line each: {}", silent.stderr);
    assert!(warnings.iter().any(|l| l.contains("ZTD_WEBHOOK")));
    assert!(warnings.iter().any(|l| l.contains("ZTD_NOTIFY")));
    assert!(!stack.dir.join("late").exists());

    // A bad timeout is a usage error, one line.
    let bad = stack.run_with("ztd-rollback", &[], &[("ZTD_NOTIFY_TIMEOUT", "soon")], None);
    bad.expect_code(2)
        .expect_one_line_error("ZTD_NOTIFY_TIMEOUT");
}
