//! Validation of a deployed color: every check the replaced validate script meant to run,
//! grouped as it grouped them (containers, health endpoints, resources, logs, connectivity
//! between services, configuration), each passing or failing with what it saw.

use std::time::Duration;

use futures_util::future::join_all;
use regex::Regex;
use serde::Serialize;
use serde_json::{Value, json};

use crate::engine::{ContainerInfo, ContainerQuery, Engine, LogQuery, RunState};
use crate::error::{Error, Result};
use crate::health::{self, CheckStatus, ContainerStatus, HealthPolicy, Target};
use crate::labels::{self, ServiceSettings, SwitchMode};
use crate::probe;
use crate::render::read_color_meta;
use crate::stack::{Color, Stack};
use crate::state;
use crate::units::{MemoryLimit, format_bytes};

/// Resource use above which a container fails validation, unless flags say otherwise.
const DEFAULT_RESOURCE_PERCENT: f64 = 80.0;
/// The log lines read per container, as the original.
const LOG_LINES: usize = 100;
/// A worker that logged nothing for this long is not active.
const RECENT: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// One validation check.
#[derive(Debug, Clone, Serialize)]
pub struct ValidationCheck {
    /// The section, as the original printed it.
    pub group: &'static str,
    /// What is checked.
    pub name: String,
    /// Whether it passed.
    pub pass: bool,
    /// What it saw.
    pub detail: String,
}

fn check(group: &'static str, name: String, pass: bool, detail: String) -> ValidationCheck {
    ValidationCheck {
        group,
        name,
        pass,
        detail,
    }
}

/// The sections, in order.
pub const GROUPS: [&str; 6] = [
    "Container Status Checks",
    "Health Checks",
    "Resource Checks",
    "Log Analysis",
    "Network Connectivity",
    "Configuration Validation",
];

/// Validate one color.
pub async fn validate<E: Engine>(
    engine: &E,
    stack: &Stack,
    color: Color,
    active: bool,
    policy: &HealthPolicy,
) -> Result<Vec<ValidationCheck>> {
    let project = stack.color_project(color);
    let containers = engine.list(&ContainerQuery::project(&project)).await?;
    let mut checks = Vec::new();
    if containers.is_empty() {
        checks.push(check(
            GROUPS[0],
            format!("{project} has containers"),
            false,
            "none".into(),
        ));
        return Ok(checks);
    }
    let settings: Vec<ServiceSettings> = containers
        .iter()
        .map(|c| ServiceSettings::from_labels(&c.service, &c.labels))
        .collect::<Result<_>>()?;
    let standby = |c: &ContainerInfo, s: &ServiceSettings| {
        !active && s.switch == SwitchMode::Handover && s.activate.is_none() && !c.state.is_up()
    };

    // Containers.
    for (c, s) in containers.iter().zip(&settings) {
        let (pass, detail) = if standby(c, s) {
            (true, "stopped, waiting for its handover".to_string())
        } else {
            (
                c.state == RunState::Running,
                format!("{:?}", c.state).to_lowercase(),
            )
        };
        checks.push(check(
            GROUPS[0],
            format!("{} running", c.name),
            pass,
            detail,
        ));
    }

    // Health endpoints: Docker's HEALTHCHECK and the probe labels, per container.
    let target = Target {
        stack,
        color,
        active,
        service: None,
    };
    let report = health::check(
        engine,
        &target,
        &HealthPolicy {
            min_uptime: Duration::ZERO,
            ..policy.clone()
        },
    )
    .await?;
    for container in &report.containers {
        if container.status == ContainerStatus::Standby {
            continue;
        }
        for probe in container
            .checks
            .iter()
            .filter(|k| matches!(k.name, "docker_health" | "http" | "tcp"))
        {
            if probe.status == CheckStatus::Skip {
                continue;
            }
            let what = match probe.name {
                "docker_health" => "HEALTHCHECK",
                "http" => "HTTP health endpoint",
                _ => "TCP health port",
            };
            checks.push(check(
                GROUPS[1],
                format!("{} {what}", container.name),
                probe.status == CheckStatus::Pass,
                probe.detail.clone(),
            ));
        }
    }

    let running: Vec<&ContainerInfo> = containers
        .iter()
        .filter(|c| c.state == RunState::Running)
        .collect();

    // Resources: memory of the limit, CPU of the CPUs the container may use.
    let memory_limit = policy
        .max_memory
        .unwrap_or(MemoryLimit::Percent(DEFAULT_RESOURCE_PERCENT));
    let cpu_limit = policy.max_cpu.unwrap_or(DEFAULT_RESOURCE_PERCENT);
    let samples = join_all(running.iter().map(|c| async move {
        let first = engine.stats(&c.id).await?;
        tokio::time::sleep(policy.cpu_window).await;
        let second = engine.stats(&c.id).await?;
        Ok::<_, Error>((first, second))
    }))
    .await;
    for (c, sample) in running.iter().zip(samples) {
        match sample {
            Ok((first, second)) => {
                checks.push(check(
                    GROUPS[2],
                    format!("{} memory under {memory_limit}", c.name),
                    !memory_limit.exceeded(second.memory_usage, second.memory_limit),
                    format!(
                        "{} of {} ({:.1}%)",
                        format_bytes(second.memory_usage),
                        format_bytes(second.memory_limit),
                        second.memory_percent()
                    ),
                ));
                let cpu = second
                    .cpu_percent_since(&first)
                    .map(|p| p / f64::from(second.online_cpus.max(1)));
                checks.push(check(
                    GROUPS[2],
                    format!("{} CPU under {cpu_limit}%", c.name),
                    cpu.is_some_and(|p| p <= cpu_limit),
                    cpu.map_or("no CPU figures".into(), |p| format!("{p:.1}% of its CPUs")),
                ));
            }
            Err(err) => checks.push(check(
                GROUPS[2],
                format!("{} resources", c.name),
                false,
                err.to_string(),
            )),
        }
    }

    // Logs: the last lines of each container; workers (singletons) must be active.
    let critical = Regex::new(r"(?i)\bcritical\b").map_err(|e| Error::State(e.to_string()))?;
    let exception = Regex::new(r"(?i)\bexception\b").map_err(|e| Error::State(e.to_string()))?;
    let logs = join_all(running.iter().map(|c| {
        engine.logs(
            &c.id,
            LogQuery {
                since: None,
                tail: Some(LOG_LINES),
            },
        )
    }))
    .await;
    let now = chrono::Utc::now();
    for ((c, lines), s) in running.iter().zip(logs).zip(
        running
            .iter()
            .map(|c| ServiceSettings::from_labels(&c.service, &c.labels).unwrap_or_default()),
    ) {
        let lines = lines.unwrap_or_default();
        for (pattern, what) in [(&critical, "critical"), (&exception, "exception")] {
            let found = lines.iter().filter(|l| pattern.is_match(&l.text)).count();
            checks.push(check(
                GROUPS[3],
                format!("{} no {what} lines", c.name),
                found == 0,
                format!("{found} of the last {} lines", lines.len()),
            ));
        }
        if s.switch == SwitchMode::Handover {
            let last = lines.last().map(|l| l.timestamp);
            checks.push(check(
                GROUPS[3],
                format!("{} recent activity", c.name),
                last.is_some_and(|t| now - t < RECENT),
                last.map_or("no log lines".into(), |t| {
                    format!("last line {}s ago", (now - t).num_seconds())
                }),
            ));
        }
    }

    // Connectivity: each service answers to its name on the color's network and accepts
    // connections on its ports; shared services are reachable from the color by name.
    let meta = read_color_meta(stack, color)?;
    for c in &running {
        let named = c.networks.iter().any(|(network, aliases)| {
            aliases.iter().any(|a| a == &c.service)
                && meta
                    .as_ref()
                    .is_none_or(|m| m.networks.values().any(|n| n == network))
        });
        checks.push(check(
            GROUPS[4],
            format!("{} reachable as {}", c.name, c.service),
            named,
            format!(
                "networks: {}",
                c.networks.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let address_checks = join_all(running.iter().flat_map(|c| {
        let address = c
            .addresses
            .first()
            .cloned()
            .unwrap_or_else(|| "127.0.0.1".into());
        c.exposed_ports.iter().map(move |port| {
            let address = address.clone();
            async move {
                (
                    c.name.clone(),
                    *port,
                    probe::tcp_probe(address, *port, policy.probe_timeout).await,
                )
            }
        })
    }))
    .await;
    for (name, port, outcome) in address_checks {
        checks.push(check(
            GROUPS[4],
            format!("{name} port {port} accepts connections"),
            outcome.ok,
            outcome.detail,
        ));
    }
    if let Some(meta) = &meta {
        let shared = engine
            .list(&ContainerQuery::project(&stack.shared_project()))
            .await?;
        for attachment in &meta.shared {
            let reachable = shared
                .iter()
                .find(|c| c.service == attachment.service)
                .is_some_and(|c| {
                    c.state == RunState::Running
                        && meta.networks.values().any(|n| {
                            c.networks
                                .get(n)
                                .is_some_and(|aliases| aliases.contains(&attachment.service))
                        })
                });
            checks.push(check(
                GROUPS[4],
                format!("shared {} reachable from {color}", attachment.service),
                reachable,
                if reachable {
                    "attached to the color's network under its name".into()
                } else {
                    "not attached or not running".into()
                },
            ));
        }
    }

    // Configuration.
    for c in &containers {
        let env = c.deployment_color_env.clone();
        checks.push(check(
            GROUPS[5],
            format!("{} DEPLOYMENT_COLOR={color}", c.name),
            env.as_deref() == Some(color.as_str()),
            env.map_or("not set".into(), |e| format!("DEPLOYMENT_COLOR={e}")),
        ));
    }
    let recorded = state::read_state(stack)?
        .and_then(|s| s.deployments.get(&color).and_then(|d| d.version.clone()));
    if let Some(recorded) = recorded {
        let versions: Vec<String> = containers
            .iter()
            .filter_map(|c| c.labels.get(labels::DEPLOYMENT_VERSION).cloned())
            .collect();
        checks.push(check(
            GROUPS[5],
            format!("{color} runs the recorded version"),
            !versions.is_empty() && versions.iter().all(|v| v == &recorded),
            format!("recorded {recorded}; containers {}", versions.join(", ")),
        ));
    }
    checks.push(check(
        GROUPS[5],
        format!("docker-compose.{color}.yml present"),
        meta.is_some(),
        stack.rendered_compose_path(color).display().to_string(),
    ));
    Ok(checks)
}

/// The JSON fields of a validation (the tool adds `tool`, `project`).
pub fn to_json(color: Color, checks: &[ValidationCheck]) -> Value {
    let passed = checks.iter().filter(|c| c.pass).count();
    json!({
        "ok": passed == checks.len(),
        "color": color,
        "target": color,
        "validate": true,
        "passed": passed,
        "failed": checks.len() - passed,
        "checks": checks,
    })
}

/// The report of the replaced validate script: sections, "Checking <name>... PASS|FAIL", the
/// summary. `colors` adds ANSI colours. Returns the text and whether everything passed.
pub fn report(color: Color, checks: &[ValidationCheck], colors: bool) -> (String, bool) {
    let (green, red, yellow, blue, reset) = if colors {
        (
            "\x1b[0;32m",
            "\x1b[0;31m",
            "\x1b[1;33m",
            "\x1b[0;34m",
            "\x1b[0m",
        )
    } else {
        ("", "", "", "", "")
    };
    let mut out = format!(
        "{blue}=== DEPLOYMENT VALIDATION: {} ==={reset}\n",
        color.as_str().to_uppercase()
    );
    for group in GROUPS {
        let mine: Vec<&ValidationCheck> = checks.iter().filter(|c| c.group == group).collect();
        if mine.is_empty() {
            continue;
        }
        out.push_str(&format!("\n{yellow}{group}:{reset}\n"));
        for c in mine {
            let word = if c.pass {
                format!("{green}PASS{reset}")
            } else {
                format!("{red}FAIL{reset} ({})", c.detail)
            };
            out.push_str(&format!("Checking {}... {word}\n", c.name));
        }
    }
    let passed = checks.iter().filter(|c| c.pass).count();
    let failed = checks.len() - passed;
    out.push_str(&format!(
        "\n=== VALIDATION SUMMARY ===\nPassed: {passed}\nFailed: {failed}\n"
    ));
    if failed == 0 {
        out.push_str(&format!("{green}✓ Deployment validation PASSED{reset}\n"));
    } else {
        out.push_str(&format!("{red}✗ Deployment validation FAILED{reset}\n"));
    }
    (out, failed == 0)
}
