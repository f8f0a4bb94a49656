//! Validation of a deployed color: every check the replaced validate script meant to run,
//! grouped as it grouped them (containers, health endpoints, resources, logs, connectivity
//! between services, configuration), each passing or failing with what it saw.

use std::time::Duration;

use futures_util::future::join_all;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::engine::{ContainerInfo, ContainerQuery, Engine, LogQuery, RunState};
use crate::error::{Error, ExitStatus, Result};
use crate::health::{
    self, CheckName, CheckStatus, ContainerStatus, HealthPolicy, Target, waits_for_handover,
};
use crate::labels::{self, ServiceSettings, SwitchMode};
use crate::probe;
use crate::render::{DeployMeta, read_color_meta};
use crate::report::Outcome;
use crate::stack::{Color, Stack};
use crate::state;
use crate::units::{MemoryLimit, format_bytes};

/// Resource use above which a container fails validation, unless flags say otherwise.
const DEFAULT_RESOURCE_PERCENT: f64 = 80.0;
/// The log lines read per container, as the original.
const LOG_LINES: usize = 100;
/// A worker that logged nothing for this long is not active.
const RECENT: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// The sections of a validation, in order, named as the original printed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Group {
    /// Each container running.
    #[serde(rename = "Container Status Checks")]
    Containers,
    /// HEALTHCHECKs and probes.
    #[serde(rename = "Health Checks")]
    Health,
    /// Memory and CPU.
    #[serde(rename = "Resource Checks")]
    Resources,
    /// The last log lines.
    #[serde(rename = "Log Analysis")]
    Logs,
    /// Names, ports and shared services.
    #[serde(rename = "Network Connectivity")]
    Network,
    /// The environment, the recorded version, the rendered file.
    #[serde(rename = "Configuration Validation")]
    Configuration,
}

impl Group {
    /// Every section, in order.
    pub const ALL: [Group; 6] = [
        Group::Containers,
        Group::Health,
        Group::Resources,
        Group::Logs,
        Group::Network,
        Group::Configuration,
    ];

    /// The section's title.
    pub fn title(self) -> &'static str {
        match self {
            Group::Containers => "Container Status Checks",
            Group::Health => "Health Checks",
            Group::Resources => "Resource Checks",
            Group::Logs => "Log Analysis",
            Group::Network => "Network Connectivity",
            Group::Configuration => "Configuration Validation",
        }
    }
}

/// One validation check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationCheck {
    /// The section.
    pub group: Group,
    /// What is checked.
    pub name: String,
    /// Whether it passed.
    pub pass: bool,
    /// What it saw.
    pub detail: String,
}

fn check(group: Group, name: String, pass: bool, detail: String) -> ValidationCheck {
    ValidationCheck {
        group,
        name,
        pass,
        detail,
    }
}

/// The validation of one color: ztd-health --validate's report body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validation {
    /// The color validated.
    pub color: Color,
    /// Always true: this is a validation, not a health check.
    pub validate: bool,
    /// How many checks passed.
    pub passed: usize,
    /// How many failed.
    pub failed: usize,
    /// Every check, section by section.
    pub checks: Vec<ValidationCheck>,
}

impl Validation {
    /// The validation of `color` made of `checks`.
    pub fn new(color: Color, checks: Vec<ValidationCheck>) -> Validation {
        let passed = checks.iter().filter(|c| c.pass).count();
        Validation {
            color,
            validate: true,
            passed,
            failed: checks.len() - passed,
            checks,
        }
    }
}

/// The body of a validation that found nothing to validate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NothingToValidate {
    /// Always true.
    pub validate: bool,
    /// Always none.
    pub color: Option<Color>,
    /// `nothing is deployed`.
    pub problem: String,
}

/// ztd-health --validate's report body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ValidationBody {
    /// A color was validated.
    Validated(Validation),
    /// No color named and none active.
    NothingDeployed(NothingToValidate),
}

impl ValidationBody {
    /// The color validated, handed on as the report's `target`.
    pub fn color(&self) -> Option<Color> {
        match self {
            ValidationBody::Validated(v) => Some(v.color),
            ValidationBody::NothingDeployed(_) => None,
        }
    }
}

impl Outcome for ValidationBody {
    /// 0 when every check passed, else 1 (nothing deployed included).
    fn status(&self) -> ExitStatus {
        match self {
            ValidationBody::Validated(v) if v.failed == 0 => ExitStatus::Success,
            _ => ExitStatus::Negative,
        }
    }
}

/// ztd-health --validate: validate `requested`, else the active color.
pub async fn run<E: Engine>(
    engine: &E,
    stack: &Stack,
    requested: Option<Color>,
    policy: &HealthPolicy,
) -> Result<ValidationBody> {
    let Some((color, active)) = health::color_to_check(engine, stack, requested).await? else {
        return Ok(ValidationBody::NothingDeployed(NothingToValidate {
            validate: true,
            color: None,
            problem: "nothing is deployed".into(),
        }));
    };
    let checks = validate(engine, stack, color, active, policy).await?;
    Ok(ValidationBody::Validated(Validation::new(color, checks)))
}

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
    if containers.is_empty() {
        let none = check(
            Group::Containers,
            format!("{project} has containers"),
            false,
            "none".into(),
        );
        return Ok(vec![none]);
    }
    let settings: Vec<ServiceSettings> = containers
        .iter()
        .map(ContainerInfo::settings)
        .collect::<Result<_>>()?;
    let running: Vec<&ContainerInfo> = containers
        .iter()
        .filter(|c| c.state == RunState::Running)
        .collect();
    let meta = read_color_meta(stack, color)?;
    let mut checks = container_checks(&containers, &settings, active);
    checks.extend(health_checks(engine, stack, color, active, policy).await?);
    checks.extend(resource_checks(engine, &running, policy).await);
    checks.extend(log_checks(engine, &running).await?);
    checks.extend(name_checks(&running, meta.as_ref()));
    checks.extend(port_checks(&running, policy).await);
    if let Some(meta) = &meta {
        checks.extend(shared_checks(engine, stack, color, meta).await?);
    }
    checks.extend(configuration_checks(
        stack,
        color,
        &containers,
        meta.is_some(),
    )?);
    Ok(checks)
}

/// Containers: each one running, unless it waits for its handover.
fn container_checks(
    containers: &[ContainerInfo],
    settings: &[ServiceSettings],
    active: bool,
) -> Vec<ValidationCheck> {
    containers
        .iter()
        .zip(settings)
        .map(|(c, s)| {
            let (pass, detail) = if waits_for_handover(c, s, active) {
                (true, "stopped, waiting for its handover".to_string())
            } else {
                (
                    c.state == RunState::Running,
                    format!("{:?}", c.state).to_lowercase(),
                )
            };
            check(
                Group::Containers,
                format!("{} running", c.name),
                pass,
                detail,
            )
        })
        .collect()
}

/// Health endpoints: Docker's HEALTHCHECK and the probe labels, per container.
async fn health_checks<E: Engine>(
    engine: &E,
    stack: &Stack,
    color: Color,
    active: bool,
    policy: &HealthPolicy,
) -> Result<Vec<ValidationCheck>> {
    let target = Target {
        stack,
        color,
        active,
        service: None,
    };
    let policy = HealthPolicy {
        min_uptime: Duration::ZERO,
        ..policy.clone()
    };
    let report = health::check(engine, &target, &policy).await?;
    let mut checks = Vec::new();
    for container in &report.containers {
        if container.status == ContainerStatus::Standby {
            continue;
        }
        for probe in &container.checks {
            let what = match probe.name {
                CheckName::DockerHealth => "HEALTHCHECK",
                CheckName::Http => "HTTP health endpoint",
                CheckName::Tcp => "TCP health port",
                _ => continue,
            };
            if probe.status == CheckStatus::Skip {
                continue;
            }
            checks.push(check(
                Group::Health,
                format!("{} {what}", container.name),
                probe.status == CheckStatus::Pass,
                probe.detail.clone(),
            ));
        }
    }
    Ok(checks)
}

/// Resources: memory of the limit, CPU of the CPUs the container may use.
async fn resource_checks<E: Engine>(
    engine: &E,
    running: &[&ContainerInfo],
    policy: &HealthPolicy,
) -> Vec<ValidationCheck> {
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
    let mut checks = Vec::new();
    for (c, sample) in running.iter().zip(samples) {
        let (first, second) = match sample {
            Ok(pair) => pair,
            Err(err) => {
                let name = format!("{} resources", c.name);
                checks.push(check(Group::Resources, name, false, err.to_string()));
                continue;
            }
        };
        checks.push(check(
            Group::Resources,
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
            Group::Resources,
            format!("{} CPU under {cpu_limit}%", c.name),
            cpu.is_some_and(|p| p <= cpu_limit),
            cpu.map_or("no CPU figures".into(), |p| format!("{p:.1}% of its CPUs")),
        ));
    }
    checks
}

/// Logs: the last lines of each container; workers (singletons) must be active.
async fn log_checks<E: Engine>(
    engine: &E,
    running: &[&ContainerInfo],
) -> Result<Vec<ValidationCheck>> {
    let critical = Regex::new(r"(?i)\bcritical\b").map_err(|e| Error::State(e.to_string()))?;
    let exception = Regex::new(r"(?i)\bexception\b").map_err(|e| Error::State(e.to_string()))?;
    let logs = join_all(running.iter().map(|c| {
        let query = LogQuery {
            since: None,
            tail: Some(LOG_LINES),
        };
        engine.logs(&c.id, query)
    }))
    .await;
    let now = chrono::Utc::now();
    let mut checks = Vec::new();
    for ((c, lines), s) in running
        .iter()
        .zip(logs)
        .zip(running.iter().map(|c| c.settings_or_default()))
    {
        let lines = lines.unwrap_or_default();
        for (pattern, what) in [(&critical, "critical"), (&exception, "exception")] {
            let found = lines.iter().filter(|l| pattern.is_match(&l.text)).count();
            checks.push(check(
                Group::Logs,
                format!("{} no {what} lines", c.name),
                found == 0,
                format!("{found} of the last {} lines", lines.len()),
            ));
        }
        if s.switch == SwitchMode::Handover {
            let last = lines.last().map(|l| l.timestamp);
            checks.push(check(
                Group::Logs,
                format!("{} recent activity", c.name),
                last.is_some_and(|t| now - t < RECENT),
                last.map_or("no log lines".into(), |t| {
                    format!("last line {}s ago", (now - t).num_seconds())
                }),
            ));
        }
    }
    Ok(checks)
}

/// Connectivity by name: each service answers to its name on the color's network.
fn name_checks(running: &[&ContainerInfo], meta: Option<&DeployMeta>) -> Vec<ValidationCheck> {
    running
        .iter()
        .map(|c| {
            let named = c.networks.iter().any(|(network, aliases)| {
                aliases.iter().any(|a| a == &c.service)
                    && meta.is_none_or(|m| m.networks.values().any(|n| n == network))
            });
            check(
                Group::Network,
                format!("{} reachable as {}", c.name, c.service),
                named,
                format!(
                    "networks: {}",
                    c.networks.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })
        .collect()
}

/// Connectivity by port: each port a container exposes accepts connections.
async fn port_checks(running: &[&ContainerInfo], policy: &HealthPolicy) -> Vec<ValidationCheck> {
    let probes = join_all(running.iter().flat_map(|c| {
        let address = probe::container_address(c);
        c.exposed_ports.iter().map(move |port| {
            let address = address.clone();
            async move {
                let outcome = probe::tcp_probe(address, *port, policy.probe_timeout).await;
                (c.name.clone(), *port, outcome)
            }
        })
    }))
    .await;
    probes
        .into_iter()
        .map(|(name, port, outcome)| {
            check(
                Group::Network,
                format!("{name} port {port} accepts connections"),
                outcome.ok,
                outcome.detail,
            )
        })
        .collect()
}

/// Connectivity of the shared services: each one reachable from the color by name.
async fn shared_checks<E: Engine>(
    engine: &E,
    stack: &Stack,
    color: Color,
    meta: &DeployMeta,
) -> Result<Vec<ValidationCheck>> {
    let shared = engine
        .list(&ContainerQuery::project(&stack.shared_project()))
        .await?;
    Ok(meta
        .shared
        .iter()
        .map(|attachment| {
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
            let detail = if reachable {
                "attached to the color's network under its name"
            } else {
                "not attached or not running"
            };
            check(
                Group::Network,
                format!("shared {} reachable from {color}", attachment.service),
                reachable,
                detail.into(),
            )
        })
        .collect())
}

/// Configuration: `DEPLOYMENT_COLOR` in each container, the recorded version, the rendered file.
fn configuration_checks(
    stack: &Stack,
    color: Color,
    containers: &[ContainerInfo],
    rendered: bool,
) -> Result<Vec<ValidationCheck>> {
    let mut checks: Vec<ValidationCheck> = containers
        .iter()
        .map(|c| {
            let env = c.deployment_color_env.clone();
            check(
                Group::Configuration,
                format!("{} DEPLOYMENT_COLOR={color}", c.name),
                env.as_deref() == Some(color.as_str()),
                env.map_or("not set".into(), |e| format!("DEPLOYMENT_COLOR={e}")),
            )
        })
        .collect();
    let recorded = state::read_state(stack)?
        .and_then(|s| s.deployments.get(&color).and_then(|d| d.version.clone()));
    if let Some(recorded) = recorded {
        let versions: Vec<String> = containers
            .iter()
            .filter_map(|c| c.labels.get(labels::DEPLOYMENT_VERSION).cloned())
            .collect();
        checks.push(check(
            Group::Configuration,
            format!("{color} runs the recorded version"),
            !versions.is_empty() && versions.iter().all(|v| v == &recorded),
            format!("recorded {recorded}; containers {}", versions.join(", ")),
        ));
    }
    checks.push(check(
        Group::Configuration,
        format!("docker-compose.{color}.yml present"),
        rendered,
        stack.rendered_compose_path(color).display().to_string(),
    ));
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Report, json_line};

    #[test]
    fn a_validation_prints_target_after_ok_then_its_fields_and_decodes_back() {
        let stack = Stack {
            dir: "/srv/shop".into(),
            name: "shop".into(),
        };
        let checks = vec![check(
            Group::Containers,
            "web-blue running".into(),
            false,
            "exited".into(),
        )];
        let body = ValidationBody::Validated(Validation::new(Color::Blue, checks));
        let printed = json_line(&Report::new(
            "ztd-health",
            &stack,
            body.color(),
            body.clone(),
        ));
        assert_eq!(
            printed,
            "{\"tool\":\"ztd-health\",\"project\":\"shop\",\"project_dir\":\"/srv/shop\",\"ok\":false,\"target\":\"blue\",\"color\":\"blue\",\"validate\":true,\"passed\":0,\"failed\":1,\"checks\":[{\"group\":\"Container Status Checks\",\"name\":\"web-blue running\",\"pass\":false,\"detail\":\"exited\"}]}\n"
        );
        let decoded: Report<ValidationBody> = serde_json::from_str(&printed).expect("decode");
        assert_eq!(decoded.body, body);
        let none = ValidationBody::NothingDeployed(NothingToValidate {
            validate: true,
            color: None,
            problem: "nothing is deployed".into(),
        });
        let printed = json_line(&Report::new(
            "ztd-health",
            &stack,
            none.color(),
            none.clone(),
        ));
        assert!(printed.ends_with(
            "\"ok\":false,\"target\":null,\"validate\":true,\"color\":null,\"problem\":\"nothing is deployed\"}\n"
        ));
        let decoded: Report<ValidationBody> = serde_json::from_str(&printed).expect("decode");
        assert_eq!(decoded.body, none);
        assert_eq!(none.status(), ExitStatus::Negative);
    }
}
