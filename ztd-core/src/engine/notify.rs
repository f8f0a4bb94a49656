//! Notifications: a tool's JSON report, secrets redacted, handed to a command (`ZTD_NOTIFY`, on
//! its stdin) and POSTed to a webhook (`ZTD_WEBHOOK`) after a deploy, a switch, a rollback or a
//! tripped watch window. Bounded (`ZTD_NOTIFY_TIMEOUT`, one retry) and harmless: a failure is a
//! warning on stderr, never a change to the tool's stdout or exit code.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Map, Value};

use crate::error::{Error, ExitStatus, Result};
use crate::units::{format_duration, parse_duration};

/// How long one attempt of a notification may take when `ZTD_NOTIFY_TIMEOUT` is unset.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What replaces a secret's value in the report sent.
pub const REDACTED: &str = "[redacted]";

/// Where notifications go, from the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `ZTD_NOTIFY`: the command's argv.
    pub command: Option<Vec<String>>,
    /// `ZTD_WEBHOOK`: the URL the report is POSTed to.
    pub webhook: Option<String>,
    /// `ZTD_NOTIFY_TIMEOUT`: the limit of each attempt.
    pub timeout: Duration,
}

impl Settings {
    /// Whether there is anywhere to send a report.
    pub fn any(&self) -> bool {
        self.command.is_some() || self.webhook.is_some()
    }
}

/// Whether a tool notifies for some status: only the tools that change things or watch a
/// change (ztd-detect and ztd-health only read).
pub fn may_notify(tool: &str) -> bool {
    matches!(
        tool,
        "ztd-up" | "ztd-switch" | "ztd-rollback" | "ztd-monitor"
    )
}

/// Whether a report of `tool` with `status` is sent: a finished deploy (ztd-up, ztd-switch
/// exit 0), a refused or undone switch (exit 1), every ztd-rollback report, a tripped watch
/// window (ztd-monitor exit 1). Never a usage error.
pub fn wanted(tool: &str, status: ExitStatus) -> bool {
    match (tool, status) {
        (_, ExitStatus::Usage) => false,
        ("ztd-up", ExitStatus::Success) => true,
        ("ztd-switch", ExitStatus::Success | ExitStatus::Negative) => true,
        ("ztd-rollback", _) => true,
        ("ztd-monitor", ExitStatus::Negative) => true,
        _ => false,
    }
}

/// The notification settings from the process environment; a bad value is a usage error.
pub fn settings() -> Result<Settings> {
    settings_from(|key| std::env::var(key).ok().filter(|v| !v.trim().is_empty()))
}

/// [`settings`] with the environment given.
pub fn settings_from(env: impl Fn(&str) -> Option<String>) -> Result<Settings> {
    let command = env("ZTD_NOTIFY")
        .map(|text| {
            crate::labels::parse_command(&text)
                .map_err(|e| Error::Usage(format!("ZTD_NOTIFY: {e}")))
        })
        .transpose()?;
    let webhook = env("ZTD_WEBHOOK").map(|url| url.trim().to_string());
    if let Some(url) = &webhook {
        check_url(url)?;
    }
    let timeout = match env("ZTD_NOTIFY_TIMEOUT") {
        Some(text) => match parse_duration(&text) {
            Ok(timeout) if !timeout.is_zero() => timeout,
            Ok(_) => {
                return Err(Error::Usage(
                    "ZTD_NOTIFY_TIMEOUT: must be more than zero".into(),
                ));
            }
            Err(e) => return Err(Error::Usage(format!("ZTD_NOTIFY_TIMEOUT: {e}"))),
        },
        None => DEFAULT_TIMEOUT,
    };
    Ok(Settings {
        command,
        webhook,
        timeout,
    })
}

/// A webhook URL must be plain `http://`: this build of ureq has no TLS.
fn check_url(url: &str) -> Result<()> {
    if url.starts_with("https://") {
        return Err(Error::Usage(format!(
            "ZTD_WEBHOOK: {url}: https is not supported by this build (no TLS); use http:// or ZTD_NOTIFY with curl"
        )));
    }
    if !url.starts_with("http://") || url.len() <= "http://".len() {
        return Err(Error::Usage(format!(
            "ZTD_WEBHOOK: {url}: expected an http:// URL"
        )));
    }
    Ok(())
}

/// Whether a key names a secret: it contains password, secret, token, key or auth (any case).
fn secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "token", "key", "auth"]
        .iter()
        .any(|word| key.contains(word))
}

/// Replace every string under a secret-looking key (at any depth, and everything below such a
/// key) with [`REDACTED`].
pub fn redact(value: &mut Value) {
    fn all_strings(value: &mut Value) {
        match value {
            Value::String(text) => *text = REDACTED.into(),
            Value::Array(items) => items.iter_mut().for_each(all_strings),
            Value::Object(fields) => fields.values_mut().for_each(all_strings),
            _ => {}
        }
    }
    match value {
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::Object(fields) => {
            for (key, field) in fields.iter_mut() {
                if secret_key(key) {
                    all_strings(field);
                } else {
                    redact(field);
                }
            }
        }
        _ => {}
    }
}

/// The report to send for `tool`'s printed `text`: `None` when the status is not one that
/// notifies, when the text is not one JSON object, or when it is the `upstream` object passed on
/// unchanged (a failure further up the pipeline: the tool that made it notified already).
pub fn payload(
    tool: &str,
    status: ExitStatus,
    text: &str,
    upstream: Option<&Map<String, Value>>,
) -> Option<String> {
    if !wanted(tool, status) {
        return None;
    }
    let Value::Object(object) = serde_json::from_str(text.trim()).ok()? else {
        return None;
    };
    if upstream == Some(&object) {
        return None;
    }
    let mut report = Value::Object(object);
    redact(&mut report);
    serde_json::to_string(&report).ok()
}

/// The least time left worth a retry.
const RETRY_FLOOR: Duration = Duration::from_millis(100);

/// Send `report` everywhere the settings say, at once, each within the timeout: one attempt,
/// and a retry in whatever time the first left. Blocking; returns when every notification is
/// done or given up, so a tool is delayed by at most the timeout. A failure is one warning line
/// on stderr.
pub fn send(settings: &Settings, report: &str) {
    std::thread::scope(|scope| {
        if let Some(argv) = &settings.command {
            scope.spawn(|| {
                twice("ZTD_NOTIFY", settings.timeout, |budget| {
                    run_command(argv, report, budget)
                });
            });
        }
        if let Some(url) = &settings.webhook {
            scope.spawn(|| {
                twice("ZTD_WEBHOOK", settings.timeout, |budget| {
                    post(url, report, budget)
                });
            });
        }
    });
}

/// Try within `timeout`, and once more in the time left when the first attempt failed early;
/// warn when it did not get through.
fn twice(
    what: &str,
    timeout: Duration,
    attempt: impl Fn(Duration) -> std::result::Result<(), String>,
) {
    let deadline = Instant::now() + timeout;
    let failed = match attempt(timeout) {
        Ok(()) => return,
        Err(first) => {
            let left = deadline.saturating_duration_since(Instant::now());
            if left < RETRY_FLOOR {
                first
            } else {
                crate::debug!("{what}: {first}; retrying once");
                match attempt(left) {
                    Ok(()) => return,
                    Err(second) => second,
                }
            }
        }
    };
    crate::warn!("notification failed: {what}: {failed}");
}

/// Run the command with the report on its stdin, in a process group of its own that is killed
/// at the timeout. Its own output is discarded (stdout is the tool's).
fn run_command(
    argv: &[String],
    report: &str,
    timeout: Duration,
) -> std::result::Result<(), String> {
    use std::os::unix::process::CommandExt;
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    // A thread writes, so a command that never reads cannot block the wait; a command that
    // exits without reading is fine (the write fails, ignored).
    if let Some(mut stdin) = child.stdin.take() {
        let line = format!("{report}\n");
        std::thread::spawn(move || {
            let _ = stdin.write_all(line.as_bytes());
        });
    }
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{program} failed ({status})")),
            Ok(None) if started.elapsed() >= timeout => {
                if let Ok(pid) = i32::try_from(child.id()) {
                    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} did not finish within {}; killed",
                    format_duration(timeout)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot wait for {program}: {e}")),
        }
    }
}

/// POST the report as JSON; any 2xx answer is a success.
fn post(url: &str, report: &str, timeout: Duration) -> std::result::Result<(), String> {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(timeout))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let response = agent
        .post(url)
        .content_type("application/json")
        .send(report.as_bytes())
        .map_err(|e| match e {
            ureq::Error::Timeout(_) => {
                format!("{url}: no answer within {}", format_duration(timeout))
            }
            other => format!("{url}: {}", crate::error::one_line(&other.to_string())),
        })?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("{url}: answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deploys_switches_rollbacks_and_tripped_windows_notify_reads_and_usage_errors_do_not() {
        use ExitStatus::*;
        assert!(wanted("ztd-up", Success));
        assert!(!wanted("ztd-up", Negative));
        assert!(wanted("ztd-switch", Success));
        assert!(wanted("ztd-switch", Negative));
        assert!(!wanted("ztd-switch", Locked));
        for status in [Success, Negative, StateOrConfig, Incomplete, Locked] {
            assert!(wanted("ztd-rollback", status), "{status:?}");
        }
        assert!(wanted("ztd-monitor", Negative));
        assert!(!wanted("ztd-monitor", Success));
        for tool in ["ztd-detect", "ztd-health"] {
            assert!(!may_notify(tool));
            for status in [Success, Negative] {
                assert!(!wanted(tool, status), "{tool} {status:?}");
            }
        }
        for tool in ["ztd-up", "ztd-switch", "ztd-rollback", "ztd-monitor"] {
            assert!(may_notify(tool));
            assert!(!wanted(tool, Usage), "{tool}");
        }
    }

    #[test]
    fn strings_under_secret_keys_are_redacted_at_any_depth() {
        let mut report = json!({
            "tool": "ztd-up",
            "ok": true,
            "DB_PASSWORD": "hunter2",
            "services": [{"name": "web", "api_key": "abc", "Auth": {"user": "u", "n": 3}}],
            "nested": {"GitHubToken": ["t1", "t2"], "secrets": null, "keep": "me"},
        });
        redact(&mut report);
        assert_eq!(
            report,
            json!({
                "tool": "ztd-up",
                "ok": true,
                "DB_PASSWORD": REDACTED,
                "services": [{"name": "web", "api_key": REDACTED, "Auth": {"user": REDACTED, "n": 3}}],
                "nested": {"GitHubToken": [REDACTED, REDACTED], "secrets": null, "keep": "me"},
            })
        );
    }

    #[test]
    fn a_report_passed_on_unchanged_is_not_sent_again() {
        let own = r#"{"tool":"ztd-switch","ok":true,"token":"x"}"#;
        assert_eq!(
            payload("ztd-switch", ExitStatus::Success, own, None).as_deref(),
            Some(r#"{"tool":"ztd-switch","ok":true,"token":"[redacted]"}"#)
        );
        let failed = json!({"tool": "ztd-health", "ok": false});
        let Value::Object(upstream) = failed.clone() else {
            panic!("object")
        };
        let passed_on = failed.to_string();
        let negative = ExitStatus::Negative;
        assert_eq!(
            payload("ztd-switch", negative, &passed_on, Some(&upstream)),
            None
        );
        // A window's findings added to the upstream object are the window's own report.
        let tripped =
            json!({"tool": "ztd-health", "ok": false, "monitor": {"tool": "ztd-monitor"}});
        assert!(
            payload(
                "ztd-monitor",
                negative,
                &tripped.to_string(),
                Some(&upstream)
            )
            .is_some()
        );
        assert_eq!(
            payload("ztd-switch", ExitStatus::Success, "not json", None),
            None
        );
        assert_eq!(payload("ztd-detect", ExitStatus::Success, own, None), None);
    }

    #[test]
    fn settings_come_from_the_environment_and_bad_values_are_usage_errors() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |key: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.to_string())
            }
        };
        let none = settings_from(env(&[])).expect("empty");
        assert!(!none.any());
        assert_eq!(none.timeout, DEFAULT_TIMEOUT);
        let set = settings_from(env(&[
            ("ZTD_NOTIFY", "sh -c 'cat >> out'"),
            ("ZTD_WEBHOOK", "http://127.0.0.1:9/hook"),
            ("ZTD_NOTIFY_TIMEOUT", "1500ms"),
        ]))
        .expect("set");
        assert_eq!(
            set.command,
            Some(vec!["sh".into(), "-c".into(), "cat >> out".into()])
        );
        assert_eq!(set.timeout, Duration::from_millis(1500));
        for bad in [
            &[("ZTD_NOTIFY_TIMEOUT", "soon")][..],
            &[("ZTD_NOTIFY_TIMEOUT", "0s")],
            &[("ZTD_NOTIFY", "sh -c 'unfinished")],
            &[("ZTD_WEBHOOK", "https://example.com/hook")],
            &[("ZTD_WEBHOOK", "example.com")],
        ] {
            let err = settings_from(env(bad)).expect_err("bad");
            assert_eq!(err.exit_status(), ExitStatus::Usage, "{bad:?}");
        }
    }

    #[test]
    fn a_command_that_hangs_is_killed_at_the_timeout_and_one_that_fails_early_is_retried() {
        let hung = Settings {
            command: Some(vec!["sleep".into(), "30".into()]),
            webhook: None,
            timeout: Duration::from_millis(300),
        };
        let started = Instant::now();
        send(&hung, "{}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
            "one timeout in all: {took:?}"
        );
        // A command that fails at once is tried twice: it appends a line each time.
        let file = std::env::temp_dir().join(format!("ztd-notify-retry-{}", std::process::id()));
        let failing = Settings {
            command: Some(vec![
                "sh".into(),
                "-c".into(),
                format!("echo tried >> {}; exit 1", file.display()),
            ]),
            webhook: None,
            timeout: Duration::from_secs(5),
        };
        send(&failing, "{}");
        let tried = std::fs::read_to_string(&file).unwrap_or_default();
        assert_eq!(tried.lines().count(), 2, "{tried:?}");
        std::fs::remove_file(&file).ok();
    }
}
