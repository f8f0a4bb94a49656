//! The `ztd.hook.pre-switch` and `ztd.hook.post-switch` commands of a service: each run in a
//! one-off container of the service in a color's Compose project (its image, environment,
//! networks and volumes), under `ztd.hook.timeout`, timed, with the tail of its output on
//! stderr only.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::compose::{Compose, OneOff};
use crate::engine::{ContainerInfo, Engine};
use crate::error::{Error, Result};
use crate::labels::{self, DEFAULT_HOOK_TIMEOUT};
use crate::stack::{Color, Stack};
use crate::units::millis_since;
use crate::{info, warn};

/// How many lines of a hook's output go to the stderr log.
const OUTPUT_LINES: usize = 20;

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookKind {
    /// `ztd.hook.pre-switch`: in the new color, before anything changes; failure refuses.
    PreSwitch,
    /// `ztd.hook.post-switch`: in the color made active; failure is a warning.
    PostSwitch,
}

impl std::fmt::Display for HookKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HookKind::PreSwitch => "pre-switch",
            HookKind::PostSwitch => "post-switch",
        })
    }
}

/// One hook that ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookReport {
    /// The service it belongs to.
    pub service: String,
    /// Which hook.
    pub hook: HookKind,
    /// Its exit code; `null` when it was stopped at its timeout.
    pub exit_code: Option<i64>,
    /// How long it ran (the one-off container's creation included).
    pub duration_ms: f64,
}

impl HookReport {
    /// Anything but exit 0.
    pub fn failed(&self) -> bool {
        self.exit_code != Some(0)
    }

    /// `the pre-switch hook of web exited 3` (or `timed out`).
    pub fn describe(&self) -> String {
        format!(
            "the {} hook of {} {}",
            self.hook,
            self.service,
            self.exit_code
                .map_or_else(|| "timed out".to_string(), |c| format!("exited {c}"))
        )
    }
}

/// A hook to run: the service, its argv and its timeout.
#[derive(Debug, Clone, PartialEq)]
struct Hook {
    service: String,
    argv: Vec<String>,
    timeout: Duration,
}

/// The `kind` hooks set on the services of `containers` (one per service, in name order). A
/// bad `ztd.*` label is a configuration error naming the service and the label.
fn hooks_of(containers: &[ContainerInfo], kind: HookKind) -> Result<Vec<Hook>> {
    let mut by_service = BTreeMap::new();
    for container in containers {
        let one_off = container
            .labels
            .get(labels::COMPOSE_ONEOFF)
            .map(String::as_str);
        if one_off == Some("True") || by_service.contains_key(&container.service) {
            continue;
        }
        let settings = container.settings()?;
        let argv = match kind {
            HookKind::PreSwitch => settings.pre_switch,
            HookKind::PostSwitch => settings.post_switch,
        };
        if let Some(argv) = argv {
            by_service.insert(
                container.service.clone(),
                Hook {
                    service: container.service.clone(),
                    argv,
                    timeout: settings.hook_timeout.unwrap_or(DEFAULT_HOOK_TIMEOUT),
                },
            );
        }
    }
    Ok(by_service.into_values().collect())
}

/// Whether either color's rendered project names a `ztd.hook.*` command, so a switch needs
/// Compose at hand (finding it costs a `docker compose version`, spared when there is none).
pub fn may_have_hooks(stack: &Stack) -> bool {
    Color::ALL.iter().any(|color| {
        std::fs::read_to_string(stack.rendered_compose_path(*color))
            .is_ok_and(|text| text.contains("ztd.hook."))
    })
}

/// Run the `kind` hooks of `color` (its `containers` carry the labels), one service at a time,
/// stopping at the first that fails. `compose` is needed only when there is a hook.
pub async fn run<E: Engine>(
    engine: &E,
    compose: Option<&Compose>,
    stack: &Stack,
    color: Color,
    containers: &[ContainerInfo],
    kind: HookKind,
) -> Result<Vec<HookReport>> {
    let hooks = hooks_of(containers, kind)?;
    if hooks.is_empty() {
        return Ok(Vec::new());
    }
    let compose = compose.ok_or_else(|| {
        Error::State(format!(
            "{kind} hooks need Docker Compose, which this run was not given"
        ))
    })?;
    let mut reports = Vec::new();
    for hook in hooks {
        let report = run_one(engine, compose, stack, color, &hook, kind).await?;
        let failed = report.failed();
        reports.push(report);
        if failed {
            break;
        }
    }
    Ok(reports)
}

/// Run the post-switch hooks of `color`, now active: a hook that fails, or cannot run, is a
/// warning.
pub async fn after_move<E: Engine>(
    engine: &E,
    compose: Option<&Compose>,
    stack: &Stack,
    color: Color,
    containers: &[ContainerInfo],
) -> Vec<HookReport> {
    let hooks = match hooks_of(containers, HookKind::PostSwitch) {
        Ok(hooks) => hooks,
        Err(err) => {
            warn!("post-switch hooks not run: {err}");
            return Vec::new();
        }
    };
    let Some(compose) = compose.filter(|_| !hooks.is_empty()) else {
        if !hooks.is_empty() {
            warn!("post-switch hooks not run: this run was not given Docker Compose");
        }
        return Vec::new();
    };
    let mut reports = Vec::new();
    for hook in hooks {
        match run_one(engine, compose, stack, color, &hook, HookKind::PostSwitch).await {
            Ok(report) => {
                if report.failed() {
                    warn!("{} (a warning: the switch stands)", report.describe());
                }
                reports.push(report);
            }
            Err(err) => warn!(
                "the post-switch hook of {} could not run: {err}",
                hook.service
            ),
        }
    }
    reports
}

/// Run one hook in a one-off container of its service in `color`'s project.
async fn run_one<E: Engine>(
    engine: &E,
    compose: &Compose,
    stack: &Stack,
    color: Color,
    hook: &Hook,
    kind: HookKind,
) -> Result<HookReport> {
    let project = stack.color_project(color);
    let name = format!("{project}-{}-{kind}-{}", hook.service, std::process::id());
    info!(
        "{}: running the {kind} hook in {color}: {}",
        hook.service,
        hook.argv.join(" ")
    );
    let started = Instant::now();
    let ran = compose
        .run_oneoff(
            stack,
            &project,
            &stack.rendered_compose_path(color),
            &hook.service,
            &name,
            &hook.argv,
            hook.timeout,
        )
        .await;
    let duration_ms = millis_since(started);
    let stopped = match &ran {
        Ok(out) => out.exit_code.is_none(),
        Err(_) => true,
    };
    if stopped {
        // Its client is gone; the container (removed when it stops) must not run on.
        match engine.kill(&name, "SIGKILL").await {
            Ok(()) | Err(Error::NotFound(_)) => {}
            Err(err) => warn!("could not stop the {kind} hook's container {name}: {err}"),
        }
    }
    let out: OneOff = ran?;
    log_tail(&hook.service, kind, &out.output);
    let report = HookReport {
        service: hook.service.clone(),
        hook: kind,
        exit_code: out.exit_code,
        duration_ms,
    };
    match out.exit_code {
        Some(0) => info!(
            "{}: the {kind} hook exited 0 in {duration_ms:.0} ms",
            hook.service
        ),
        Some(code) => warn!("{}: the {kind} hook exited {code}", hook.service),
        None => warn!(
            "{}: the {kind} hook did not finish within {}s and was stopped",
            hook.service,
            hook.timeout.as_secs_f64()
        ),
    }
    Ok(report)
}

/// The last lines of a hook's output on stderr, each prefixed with the service and the hook.
fn log_tail(service: &str, kind: HookKind, output: &str) {
    for line in tail_lines(output, OUTPUT_LINES) {
        info!("{service} {kind}| {line}");
    }
}

/// The last `n` non-empty lines of `output`.
fn tail_lines(output: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_lines_of_a_hook_are_kept() {
        let output: String = (1..=30).map(|i| format!("line {i}\n\n")).collect();
        let tail = tail_lines(&output, OUTPUT_LINES);
        assert_eq!(tail.len(), 20);
        assert_eq!(tail[0], "line 11");
        assert_eq!(tail[19], "line 30");
    }

    #[test]
    fn a_hook_report_says_which_hook_and_how_it_ended() {
        let mut report = HookReport {
            service: "web".into(),
            hook: HookKind::PreSwitch,
            exit_code: Some(3),
            duration_ms: 12.0,
        };
        assert!(report.failed());
        assert_eq!(report.describe(), "the pre-switch hook of web exited 3");
        report.exit_code = None;
        assert_eq!(report.describe(), "the pre-switch hook of web timed out");
        let json = serde_json::to_string(&report).expect("json");
        assert_eq!(
            json,
            r#"{"service":"web","hook":"pre-switch","exit_code":null,"duration_ms":12.0}"#
        );
    }
}
