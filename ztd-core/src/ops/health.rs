//! Health: every container of a color checked at once (run state, Docker's HEALTHCHECK,
//! restarts, HTTP and TCP probes, log errors, memory, CPU), and a wait that re-checks on engine
//! events and short probe ticks until the color is healthy or the deadline passes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::{StreamExt, future::join_all};
use serde::Serialize;
use serde_json::{Value, json};

use crate::engine::{ContainerInfo, ContainerQuery, DockerHealth, Engine, LogQuery, RunState};
use crate::error::Result;
use crate::labels::{self, ServiceSettings, SwitchMode};
use crate::probe::{self, ProbeOutcome};
use crate::stack::{Color, Stack};
use crate::units::{MemoryLimit, format_bytes, format_duration, millis};

/// How often a wait re-runs probes and uptime checks between engine events.
const PROBE_TICK: Duration = Duration::from_millis(100);
/// How often a wait re-checks at the latest, in case an engine event was missed.
const SAFETY_TICK: Duration = Duration::from_secs(1);

/// The thresholds of a health check; per-service `ztd.*` labels override them.
#[derive(Debug, Clone)]
pub struct HealthPolicy {
    /// A container with no HEALTHCHECK and no probe passes once up this long.
    pub min_uptime: Duration,
    /// Connect and read timeout of each probe.
    pub probe_timeout: Duration,
    /// Restarts allowed.
    pub max_restarts: u64,
    /// Error lines allowed; `None`: any error line is a warning, never a failure.
    pub max_log_errors: Option<u64>,
    /// Memory ceiling; `None`: memory is not sampled. (The engine answers a stats request only
    /// at its next collection tick, up to a second away, so resources are read only when a
    /// ceiling asks for them.)
    pub max_memory: Option<MemoryLimit>,
    /// CPU ceiling in percent of one core; `None`: CPU is not sampled.
    pub max_cpu: Option<f64>,
    /// How long CPU is sampled when a ceiling is set.
    pub cpu_window: Duration,
    /// The most log lines read per container.
    pub log_tail: usize,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            min_uptime: Duration::from_secs(10),
            probe_timeout: Duration::from_secs(2),
            max_restarts: 0,
            max_log_errors: None,
            max_memory: None,
            max_cpu: None,
            cpu_window: Duration::from_millis(500),
            log_tail: 10_000,
        }
    }
}

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Not applicable or not reached.
    Skip,
    /// Passed.
    Pass,
    /// Passed with a warning.
    Warn,
    /// Failed.
    Fail,
}

/// One check of one container.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `running`, `docker_health`, `restarts`, `http`, `tcp`, `uptime`, `log_errors`, `memory`, `cpu`.
    pub name: &'static str,
    /// Its verdict.
    pub status: CheckStatus,
    /// What it saw.
    pub detail: String,
    /// How long it took, in milliseconds.
    pub duration_ms: f64,
}

/// The verdict on one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    /// Every check passed.
    Healthy,
    /// Passed, with warnings.
    Warning,
    /// A check failed.
    Unhealthy,
    /// A handover service of a color that is not active, created and waiting for the switch.
    Standby,
}

/// One container's report.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerHealth {
    /// Container name.
    pub name: String,
    /// Service.
    pub service: String,
    /// Run state.
    pub state: RunState,
    /// Docker's HEALTHCHECK status.
    pub health: DockerHealth,
    /// The verdict.
    pub status: ContainerStatus,
    /// Every check.
    pub checks: Vec<Check>,
    /// Whether waiting longer cannot help (exited for good, restarted too often, a final check).
    #[serde(skip)]
    pub settled: bool,
    /// When the uptime check will pass, if that is all it waits for.
    #[serde(skip)]
    pub uptime_due_in: Option<Duration>,
    /// Whether a probe or uptime check is pending (polled, not announced by events).
    #[serde(skip)]
    pub polls: bool,
}

impl ContainerHealth {
    /// The first failed or warning check, for one-line summaries.
    pub fn reason(&self) -> Option<String> {
        self.checks
            .iter()
            .filter(|c| matches!(c.status, CheckStatus::Fail | CheckStatus::Warn))
            .max_by_key(|c| c.status)
            .map(|c| c.detail.clone())
    }
}

/// The report on one color.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    /// The color checked.
    pub color: Color,
    /// Its Compose project.
    pub project: String,
    /// Every container.
    pub containers: Vec<ContainerHealth>,
    /// Why the color is unhealthy when no single container says so (no containers).
    pub problem: Option<String>,
    /// How long the check (or the whole wait) took.
    pub duration: Duration,
    /// How many rounds a wait ran.
    pub rounds: u32,
}

impl HealthReport {
    /// Healthy: at least one container, none unhealthy.
    pub fn healthy(&self) -> bool {
        self.problem.is_none()
            && !self.containers.is_empty()
            && self
                .containers
                .iter()
                .all(|c| c.status != ContainerStatus::Unhealthy)
    }

    /// Count of containers with a verdict.
    pub fn count(&self, status: ContainerStatus) -> usize {
        self.containers
            .iter()
            .filter(|c| c.status == status)
            .count()
    }

    /// The overall word: healthy, warning or unhealthy.
    pub fn status_word(&self) -> &'static str {
        if !self.healthy() {
            "unhealthy"
        } else if self.count(ContainerStatus::Warning) > 0 {
            "warning"
        } else {
            "healthy"
        }
    }

    /// The JSON fields of the report (the tool adds `tool`, `project`, `ok`).
    pub fn to_json(&self) -> Value {
        json!({
            "color": self.color,
            "target": self.color,
            "healthy": self.healthy(),
            "status": self.status_word(),
            "problem": self.problem,
            "summary": {
                "containers": self.containers.len(),
                "healthy": self.count(ContainerStatus::Healthy),
                "warning": self.count(ContainerStatus::Warning),
                "unhealthy": self.count(ContainerStatus::Unhealthy),
                "standby": self.count(ContainerStatus::Standby),
            },
            "duration_ms": millis(self.duration),
            "rounds": self.rounds,
            "containers": self.containers,
        })
    }

    /// One line for humans and monitoring systems.
    pub fn summary_line(&self) -> String {
        let total = self.containers.len();
        if let Some(problem) = &self.problem {
            return format!("{}: {problem}", self.color);
        }
        let bad: Vec<String> = self
            .containers
            .iter()
            .filter(|c| c.status == ContainerStatus::Unhealthy)
            .map(|c| format!("{}: {}", c.name, c.reason().unwrap_or_default()))
            .collect();
        if !bad.is_empty() {
            return format!(
                "{}: {}/{total} containers unhealthy ({})",
                self.color,
                bad.len(),
                bad.join("; ")
            );
        }
        let warned: Vec<String> = self
            .containers
            .iter()
            .filter(|c| c.status == ContainerStatus::Warning)
            .map(|c| format!("{}: {}", c.name, c.reason().unwrap_or_default()))
            .collect();
        let up = total - self.count(ContainerStatus::Standby);
        if warned.is_empty() {
            format!("{}: {up}/{total} containers healthy", self.color)
        } else {
            format!(
                "{}: {up}/{total} containers up, {} with warnings ({})",
                self.color,
                warned.len(),
                warned.join("; ")
            )
        }
    }
}

/// The per-service report of the replaced health-check script: "  <container>: OK", "NOT
/// RUNNING", "UNHEALTHY", "RESTARTED" or "ERRORS IN LOGS" (the first that applies), then a
/// CRITICAL:, WARNING: or SUCCESS: line. Returns the text and the intended exit code: 0 all OK,
/// 1 warnings only, 2 critical.
pub fn service_report(report: &HealthReport) -> (String, u8) {
    let mut out = format!("Checking health of {} deployment...\n", report.color);
    let (mut critical, mut warnings) = (0, 0);
    for container in &report.containers {
        let failed = |name: &str| {
            container
                .checks
                .iter()
                .any(|c| c.name == name && c.status == CheckStatus::Fail)
        };
        let warned = |name: &str| {
            container.checks.iter().any(|c| {
                c.name == name && matches!(c.status, CheckStatus::Warn | CheckStatus::Fail)
            })
        };
        let word = if container.status == ContainerStatus::Standby {
            "OK"
        } else if failed("running") {
            critical += 1;
            "NOT RUNNING"
        } else if ["docker_health", "http", "tcp", "uptime", "memory", "cpu"]
            .iter()
            .any(|n| failed(n))
        {
            critical += 1;
            "UNHEALTHY"
        } else if failed("restarts") {
            warnings += 1;
            "RESTARTED"
        } else if warned("log_errors") {
            warnings += 1;
            "ERRORS IN LOGS"
        } else {
            "OK"
        };
        out.push_str(&format!("  {}: {word}\n", container.name));
    }
    if let Some(problem) = &report.problem {
        critical += 1;
        out.push_str(&format!("  {problem}\n"));
    }
    if critical > 0 {
        out.push_str(&format!(
            "CRITICAL: {critical} services have critical issues\n"
        ));
        (out, 2)
    } else if warnings > 0 {
        out.push_str(&format!("WARNING: {warnings} services have warnings\n"));
        (out, 1)
    } else {
        out.push_str("SUCCESS: All services healthy\n");
        (out, 0)
    }
}

/// How deep one round of checks goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// State, HEALTHCHECK, restarts, probes, uptime: what a wait polls.
    Quick,
    /// Everything, logs and resources included.
    Full,
}

/// What a health check needs to know of the stack.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The stack.
    pub stack: &'a Stack,
    /// The color to check.
    pub color: Color,
    /// Whether that color is the active one (a standby handover service is then not expected).
    pub active: bool,
    /// Only this service, if set.
    pub service: Option<&'a str>,
}

/// Check every container of a color once.
pub async fn check<E: Engine>(
    engine: &E,
    target: &Target<'_>,
    policy: &HealthPolicy,
) -> Result<HealthReport> {
    let started = Instant::now();
    let mut report = round(engine, target, policy, Depth::Full).await?;
    report.duration = started.elapsed();
    report.rounds = 1;
    Ok(report)
}

/// Check until healthy or until `deadline` has passed; returns as soon as the color is healthy.
/// Re-checks when the engine reports a change to one of the color's containers, on a short tick
/// while a probe or an uptime check is pending, and at the moment an uptime check comes due.
pub async fn wait<E: Engine>(
    engine: &E,
    target: &Target<'_>,
    policy: &HealthPolicy,
    deadline: Duration,
) -> Result<HealthReport> {
    let started = Instant::now();
    let query = ContainerQuery::project(&target.stack.color_project(target.color));
    let mut events = engine.events(&query).await?;
    let mut rounds = 0;
    loop {
        rounds += 1;
        let quick = round(engine, target, policy, Depth::Quick).await?;
        let mut report = if quick.healthy() {
            round(engine, target, policy, Depth::Full).await?
        } else {
            quick
        };
        let elapsed = started.elapsed();
        let settled =
            report.healthy() || report.containers.iter().any(|c| c.settled) || elapsed >= deadline;
        if settled {
            report.duration = elapsed;
            report.rounds = rounds;
            return Ok(report);
        }
        let polls = report.problem.is_some() || report.containers.iter().any(|c| c.polls);
        let mut pause = if polls { PROBE_TICK } else { SAFETY_TICK };
        if let Some(due) = report
            .containers
            .iter()
            .filter_map(|c| c.uptime_due_in)
            .min()
        {
            pause = pause.min(due + Duration::from_millis(5));
        }
        pause = pause.min(deadline - elapsed);
        crate::debug!(
            "{}: not healthy yet ({}); next check within {}",
            target.color,
            report.summary_line(),
            format_duration(pause)
        );
        tokio::select! {
            event = events.next() => {
                match event {
                    Some(Ok(event)) => crate::debug!("event: {} {}", event.container_name, event.action),
                    // The event stream broke: fall back to ticks.
                    Some(Err(_)) | None => {
                        events = futures_util::stream::pending().boxed();
                    }
                }
            }
            () = tokio::time::sleep(pause) => {}
        }
    }
}

async fn round<E: Engine>(
    engine: &E,
    target: &Target<'_>,
    policy: &HealthPolicy,
    depth: Depth,
) -> Result<HealthReport> {
    let project = target.stack.color_project(target.color);
    let containers: Vec<ContainerInfo> = engine
        .list(&ContainerQuery::project(&project))
        .await?
        .into_iter()
        .filter(|c| c.labels.get(labels::COMPOSE_ONEOFF).map(String::as_str) != Some("True"))
        .filter(|c| target.service.is_none_or(|s| s == c.service))
        .collect();
    let mut settings = BTreeMap::new();
    for container in &containers {
        settings.insert(
            container.id.clone(),
            ServiceSettings::from_labels(&container.service, &container.labels)?,
        );
    }
    let checks = containers.iter().map(|container| {
        check_container(
            engine,
            container,
            &settings[&container.id],
            policy,
            depth,
            target.active,
        )
    });
    let reports = join_all(checks).await;
    let problem = containers
        .is_empty()
        .then(|| format!("no containers in Compose project {project}"));
    Ok(HealthReport {
        color: target.color,
        project,
        containers: reports,
        problem,
        duration: Duration::ZERO,
        rounds: 0,
    })
}

struct Timer(Instant);

impl Timer {
    fn start() -> Timer {
        Timer(Instant::now())
    }
    fn check(&self, name: &'static str, status: CheckStatus, detail: String) -> Check {
        Check {
            name,
            status,
            detail,
            duration_ms: millis(self.0.elapsed()),
        }
    }
}

#[allow(clippy::too_many_lines)]
async fn check_container<E: Engine>(
    engine: &E,
    container: &ContainerInfo,
    settings: &ServiceSettings,
    policy: &HealthPolicy,
    depth: Depth,
    color_is_active: bool,
) -> ContainerHealth {
    let mut checks = Vec::new();
    let mut settled = false;
    let mut polls = false;
    let mut uptime_due_in = None;
    let now = Utc::now();
    let report = |checks: Vec<Check>, status: ContainerStatus, settled: bool| ContainerHealth {
        name: container.name.clone(),
        service: container.service.clone(),
        state: container.state,
        health: container.health,
        status,
        checks,
        settled,
        uptime_due_in: None,
        polls: false,
    };

    // A singleton of a color that is not active waits, stopped, for its handover (unless it has
    // ztd.activate: then it runs in standby and is checked like any other container).
    if settings.switch == SwitchMode::Handover
        && settings.activate.is_none()
        && !color_is_active
        && !container.state.is_up()
    {
        let timer = Timer::start();
        checks.push(timer.check(
            "running",
            CheckStatus::Skip,
            format!(
                "{}, waiting for its handover",
                format!("{:?}", container.state).to_lowercase()
            ),
        ));
        return report(checks, ContainerStatus::Standby, false);
    }

    let timer = Timer::start();
    let running = container.state == RunState::Running;
    let state_detail = match container.state {
        RunState::Running => format!(
            "running for {}",
            container
                .uptime(now)
                .map(format_duration)
                .unwrap_or_else(|| "?".into())
        ),
        RunState::Restarting => "restarting (crash loop)".into(),
        RunState::Exited | RunState::Dead => {
            let mut detail = format!(
                "{} with code {}",
                if container.state == RunState::Dead {
                    "dead"
                } else {
                    "exited"
                },
                container.exit_code.unwrap_or(-1)
            );
            if container.oom_killed {
                detail.push_str(" (killed for lack of memory)");
            }
            if !container.will_restart() {
                settled = true;
            }
            detail
        }
        RunState::Created => "created, not started".into(),
        other => format!("{other:?}").to_lowercase(),
    };
    checks.push(timer.check(
        "running",
        if running {
            CheckStatus::Pass
        } else {
            CheckStatus::Fail
        },
        state_detail,
    ));

    let max_restarts = settings.max_restarts.unwrap_or(policy.max_restarts);
    let timer = Timer::start();
    if container.restart_count > max_restarts {
        settled = true;
        checks.push(timer.check(
            "restarts",
            CheckStatus::Fail,
            format!(
                "restarted {} times (allowed {max_restarts})",
                container.restart_count
            ),
        ));
    } else {
        checks.push(timer.check(
            "restarts",
            CheckStatus::Pass,
            format!("restarted {} times", container.restart_count),
        ));
    }

    if !running {
        return report(checks, ContainerStatus::Unhealthy, settled);
    }

    let timer = Timer::start();
    checks.push(match container.health {
        DockerHealth::None => {
            timer.check("docker_health", CheckStatus::Skip, "no HEALTHCHECK".into())
        }
        DockerHealth::Starting => {
            timer.check("docker_health", CheckStatus::Fail, "starting".into())
        }
        DockerHealth::Healthy => timer.check("docker_health", CheckStatus::Pass, "healthy".into()),
        DockerHealth::Unhealthy => {
            timer.check("docker_health", CheckStatus::Fail, "unhealthy".into())
        }
    });

    let address = container
        .addresses
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1".into());
    // Container addresses of a remote engine are not reachable from here.
    let remote = engine
        .remote_host()
        .map(|host| format!("skipped: the engine at {host} is remote"));
    let http = async {
        let path = settings.health_http.clone()?;
        let timer = Timer::start();
        if let Some(reason) = &remote {
            return Some(timer.check("http", CheckStatus::Skip, reason.clone()));
        }
        let port = settings
            .health_port
            .or_else(|| container.exposed_ports.first().copied());
        Some(match port {
            Some(port) => {
                let outcome =
                    probe::http_probe(address.clone(), port, path, policy.probe_timeout).await;
                probe_check(&timer, "http", outcome)
            }
            None => timer.check(
                "http",
                CheckStatus::Fail,
                "ztd.health.http is set but the container exposes no port; set ztd.health.port"
                    .into(),
            ),
        })
    };
    let tcp = async {
        let port = settings.health_tcp?;
        let timer = Timer::start();
        if let Some(reason) = &remote {
            return Some(timer.check("tcp", CheckStatus::Skip, reason.clone()));
        }
        let outcome = probe::tcp_probe(address.clone(), port, policy.probe_timeout).await;
        Some(probe_check(&timer, "tcp", outcome))
    };
    let full = depth == Depth::Full;
    let logs = async {
        if !full {
            return None;
        }
        Some(log_check(engine, container, settings, policy).await)
    };
    let resources = async {
        if !full {
            return Vec::new();
        }
        resource_checks(engine, container, settings, policy).await
    };
    let (http, tcp, logs, resources) = tokio::join!(http, tcp, logs, resources);
    let probed = [&http, &tcp]
        .into_iter()
        .flatten()
        .any(|c| c.status != CheckStatus::Skip);
    for probe_result in [http, tcp].into_iter().flatten() {
        if probe_result.status == CheckStatus::Fail {
            polls = true;
        }
        checks.push(probe_result);
    }

    if container.health == DockerHealth::None && !probed {
        let timer = Timer::start();
        let needed = settings.min_uptime.unwrap_or(policy.min_uptime);
        let uptime = container.uptime(now).unwrap_or_default();
        if uptime >= needed {
            checks.push(timer.check(
                "uptime",
                CheckStatus::Pass,
                format!(
                    "up {} (no healthcheck or probe; needs {})",
                    format_duration(uptime),
                    format_duration(needed)
                ),
            ));
        } else {
            uptime_due_in = Some(needed - uptime);
            polls = true;
            checks.push(timer.check(
                "uptime",
                CheckStatus::Fail,
                format!(
                    "up {}, needs {} (no healthcheck or probe)",
                    format_duration(uptime),
                    format_duration(needed)
                ),
            ));
        }
    }

    let quick_failed = checks.iter().any(|c| c.status == CheckStatus::Fail);
    if let Some(logs) = logs {
        checks.push(logs);
    }
    checks.extend(resources);
    let failed = checks.iter().any(|c| c.status == CheckStatus::Fail);
    // Log errors, memory and CPU do not get better by waiting: a failure there is final.
    if failed && !quick_failed {
        settled = true;
    }
    let status = if failed {
        ContainerStatus::Unhealthy
    } else if checks.iter().any(|c| c.status == CheckStatus::Warn) {
        ContainerStatus::Warning
    } else {
        ContainerStatus::Healthy
    };
    let mut health = report(checks, status, settled);
    health.uptime_due_in = uptime_due_in;
    health.polls = polls;
    health
}

fn probe_check(timer: &Timer, name: &'static str, outcome: ProbeOutcome) -> Check {
    timer.check(
        name,
        if outcome.ok {
            CheckStatus::Pass
        } else {
            CheckStatus::Fail
        },
        outcome.detail,
    )
}

async fn log_check<E: Engine>(
    engine: &E,
    container: &ContainerInfo,
    settings: &ServiceSettings,
    policy: &HealthPolicy,
) -> Check {
    let timer = Timer::start();
    let query = LogQuery {
        since: container.run_log_start(),
        tail: Some(policy.log_tail),
    };
    let lines = match engine.logs(&container.id, query).await {
        Ok(lines) => lines,
        Err(err) => {
            return timer.check(
                "log_errors",
                CheckStatus::Warn,
                format!("cannot read logs: {err}"),
            );
        }
    };
    let pattern = settings.error_pattern();
    let matching: Vec<&str> = lines
        .iter()
        .filter(|l| pattern.is_match(&l.text))
        .map(|l| l.text.as_str())
        .collect();
    let count = matching.len() as u64;
    if count == 0 {
        return timer.check(
            "log_errors",
            CheckStatus::Pass,
            format!("no error lines in {} lines since start", lines.len()),
        );
    }
    let example: String = matching[0].chars().take(120).collect();
    let detail = format!("{count} error lines since start, e.g. {example:?}");
    let max = settings.max_log_errors.or(policy.max_log_errors);
    let status = match max {
        Some(max) if count > max => CheckStatus::Fail,
        Some(_) => CheckStatus::Pass,
        None => CheckStatus::Warn,
    };
    timer.check("log_errors", status, detail)
}

async fn resource_checks<E: Engine>(
    engine: &E,
    container: &ContainerInfo,
    settings: &ServiceSettings,
    policy: &HealthPolicy,
) -> Vec<Check> {
    let max_memory = settings.max_memory.or(policy.max_memory);
    let max_cpu = settings.max_cpu.or(policy.max_cpu);
    if max_memory.is_none() && max_cpu.is_none() {
        return Vec::new();
    }
    let timer = Timer::start();
    let first = match engine.stats(&container.id).await {
        Ok(sample) => sample,
        Err(err) => {
            return vec![timer.check(
                "memory",
                CheckStatus::Warn,
                format!("cannot read stats: {err}"),
            )];
        }
    };
    let mut checks = Vec::new();
    if let Some(limit) = max_memory {
        let status = if limit.exceeded(first.memory_usage, first.memory_limit) {
            CheckStatus::Fail
        } else {
            CheckStatus::Pass
        };
        let detail = format!(
            "{} of {} ({:.1}%; allowed {limit})",
            format_bytes(first.memory_usage),
            format_bytes(first.memory_limit),
            first.memory_percent()
        );
        checks.push(timer.check("memory", status, detail));
    }
    if let Some(max_cpu) = max_cpu {
        let timer = Timer::start();
        tokio::time::sleep(policy.cpu_window).await;
        let check = match engine.stats(&container.id).await {
            Ok(second) => match second.cpu_percent_since(&first) {
                Some(pct) => timer.check(
                    "cpu",
                    if pct > max_cpu {
                        CheckStatus::Fail
                    } else {
                        CheckStatus::Pass
                    },
                    format!(
                        "{pct:.1}% over {} (allowed {max_cpu}%)",
                        format_duration(policy.cpu_window)
                    ),
                ),
                None => timer.check(
                    "cpu",
                    CheckStatus::Warn,
                    "no CPU figures from the engine".into(),
                ),
            },
            Err(err) => timer.check(
                "cpu",
                CheckStatus::Warn,
                format!("cannot read stats: {err}"),
            ),
        };
        checks.push(check);
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ResourceSample;
    use crate::fake::{FakeEngine, container};

    fn stack() -> Stack {
        Stack {
            dir: std::env::temp_dir(),
            name: "shop".into(),
        }
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    fn checked(engine: &FakeEngine, policy: &HealthPolicy) -> HealthReport {
        let stack = stack();
        let target = Target {
            stack: &stack,
            color: Color::Green,
            active: true,
            service: None,
        };
        run(check(engine, &target, policy)).expect("check")
    }

    fn check_named<'a>(report: &'a HealthReport, container: &str, name: &str) -> &'a Check {
        report
            .containers
            .iter()
            .find(|c| c.name == container)
            .and_then(|c| c.checks.iter().find(|k| k.name == name))
            .unwrap_or_else(|| panic!("no check {name} on {container}"))
    }

    #[test]
    fn running_containers_past_the_minimum_uptime_are_healthy() {
        let engine = FakeEngine::with(vec![
            container("web-green", "shop-green", Color::Green, RunState::Running),
            container(
                "worker-green",
                "shop-green",
                Color::Green,
                RunState::Running,
            ),
        ]);
        let report = checked(&engine, &HealthPolicy::default());
        assert!(report.healthy(), "{}", report.summary_line());
        assert_eq!(report.count(ContainerStatus::Healthy), 2);
        assert_eq!(
            check_named(&report, "web-green", "uptime").status,
            CheckStatus::Pass
        );
    }

    #[test]
    fn a_remote_engine_skips_address_probes_and_still_checks_uptime() {
        let mut web = container("web-green", "shop-green", Color::Green, RunState::Running);
        web.labels
            .insert("ztd.health.http".into(), "/health".into());
        web.labels.insert("ztd.health.port".into(), "8080".into());
        web.labels.insert("ztd.health.tcp".into(), "8080".into());
        web.apply_labels();
        let engine = FakeEngine::with(vec![web]);
        engine.set_remote_host("tcp://10.0.0.9:2375");
        let report = checked(&engine, &HealthPolicy::default());
        for name in ["http", "tcp"] {
            let probe = check_named(&report, "web-green", name);
            assert_eq!(probe.status, CheckStatus::Skip, "{name}");
            assert_eq!(
                probe.detail,
                "skipped: the engine at tcp://10.0.0.9:2375 is remote"
            );
        }
        // With its probes skipped, the container is judged by its uptime, as one without any.
        assert_eq!(
            check_named(&report, "web-green", "uptime").status,
            CheckStatus::Pass
        );
        assert!(report.healthy(), "{}", report.summary_line());
    }

    #[test]
    fn a_young_container_without_healthcheck_waits_for_its_uptime() {
        let mut young = container("web-green", "shop-green", Color::Green, RunState::Running);
        young.started_at = Some(Utc::now() - chrono::Duration::seconds(3));
        let engine = FakeEngine::with(vec![young]);
        let report = checked(&engine, &HealthPolicy::default());
        assert!(!report.healthy());
        let c = &report.containers[0];
        assert!(c.uptime_due_in.expect("due") <= Duration::from_secs(7));
        assert!(!c.settled, "uptime improves by waiting");
    }

    #[test]
    fn docker_health_states_are_distinct_results() {
        let mut starting = container("a-green", "shop-green", Color::Green, RunState::Running);
        starting.health = DockerHealth::Starting;
        let mut unhealthy = container("b-green", "shop-green", Color::Green, RunState::Running);
        unhealthy.health = DockerHealth::Unhealthy;
        let mut healthy = container("c-green", "shop-green", Color::Green, RunState::Running);
        healthy.health = DockerHealth::Healthy;
        healthy.started_at = Some(Utc::now());
        let engine = FakeEngine::with(vec![starting, unhealthy, healthy]);
        let report = checked(&engine, &HealthPolicy::default());
        assert_eq!(
            check_named(&report, "a-green", "docker_health").detail,
            "starting"
        );
        assert_eq!(
            check_named(&report, "b-green", "docker_health").detail,
            "unhealthy"
        );
        assert_eq!(
            check_named(&report, "c-green", "docker_health").status,
            CheckStatus::Pass
        );
        assert_eq!(
            report.count(ContainerStatus::Healthy),
            1,
            "a fresh container passes on its HEALTHCHECK alone"
        );
    }

    #[test]
    fn an_exited_container_without_restart_policy_is_settled_unhealthy() {
        let mut exited = container("web-green", "shop-green", Color::Green, RunState::Exited);
        exited.exit_code = Some(3);
        let engine = FakeEngine::with(vec![exited]);
        let report = checked(&engine, &HealthPolicy::default());
        let c = &report.containers[0];
        assert_eq!(c.status, ContainerStatus::Unhealthy);
        assert!(c.settled);
        assert!(c.reason().expect("reason").contains("code 3"));
    }

    #[test]
    fn restarts_beyond_the_limit_fail() {
        let mut looping = container("web-green", "shop-green", Color::Green, RunState::Running);
        looping.restart_count = 2;
        let engine = FakeEngine::with(vec![looping]);
        let report = checked(&engine, &HealthPolicy::default());
        assert_eq!(
            check_named(&report, "web-green", "restarts").status,
            CheckStatus::Fail
        );
        let lenient = HealthPolicy {
            max_restarts: 5,
            ..Default::default()
        };
        assert!(checked(&engine, &lenient).healthy());
    }

    #[test]
    fn error_lines_warn_by_default_and_fail_beyond_an_explicit_limit() {
        let engine = FakeEngine::with(vec![container(
            "web-green",
            "shop-green",
            Color::Green,
            RunState::Running,
        )]);
        let now = Utc::now();
        engine.set_logs(
            "web-green",
            &[
                (
                    now - chrono::Duration::seconds(62),
                    "ERROR before this start",
                ),
                (
                    now - chrono::Duration::milliseconds(60_500),
                    "ERROR stamped just before StartedAt",
                ),
                (now, "ERROR: database unreachable"),
                (now, "an errorless line"),
                (now, "Exception in thread main"),
            ],
        );
        let report = checked(&engine, &HealthPolicy::default());
        let logs = check_named(&report, "web-green", "log_errors");
        assert_eq!(logs.status, CheckStatus::Warn);
        assert!(logs.detail.starts_with("3 error lines"), "{}", logs.detail);
        assert!(report.healthy(), "warnings do not make a color unhealthy");
        let strict = HealthPolicy {
            max_log_errors: Some(2),
            ..Default::default()
        };
        let report = checked(&engine, &strict);
        assert!(!report.healthy());
        assert!(
            report.containers[0].settled,
            "log errors do not go away by waiting"
        );
    }

    #[test]
    fn memory_is_read_only_against_a_ceiling_and_fails_over_it() {
        let engine = FakeEngine::with(vec![container(
            "web-green",
            "shop-green",
            Color::Green,
            RunState::Running,
        )]);
        engine.set_stats(
            "web-green",
            ResourceSample {
                memory_usage: 95,
                memory_limit: 100,
                online_cpus: 1,
                ..Default::default()
            },
        );
        let report = checked(&engine, &HealthPolicy::default());
        assert!(
            report.containers[0]
                .checks
                .iter()
                .all(|c| c.name != "memory")
        );
        let strict = HealthPolicy {
            max_memory: Some(MemoryLimit::Percent(50.0)),
            ..Default::default()
        };
        let report = checked(&engine, &strict);
        assert!(!report.healthy());
        assert_eq!(
            check_named(&report, "web-green", "memory").status,
            CheckStatus::Fail
        );
        let lenient = HealthPolicy {
            max_memory: Some(MemoryLimit::Bytes(1 << 20)),
            ..Default::default()
        };
        assert!(checked(&engine, &lenient).healthy());
    }

    #[test]
    fn a_standby_handover_service_of_the_candidate_is_not_a_failure() {
        let mut worker = container(
            "worker-green",
            "shop-green",
            Color::Green,
            RunState::Created,
        );
        worker.labels.insert("ztd.switch".into(), "handover".into());
        let web = container("web-green", "shop-green", Color::Green, RunState::Running);
        let engine = FakeEngine::with(vec![worker, web]);
        let stack = stack();
        let candidate = Target {
            stack: &stack,
            color: Color::Green,
            active: false,
            service: None,
        };
        let report = run(check(&engine, &candidate, &HealthPolicy::default())).expect("check");
        assert!(report.healthy(), "{}", report.summary_line());
        assert_eq!(report.count(ContainerStatus::Standby), 1);
        let active = Target {
            active: true,
            ..candidate
        };
        let report = run(check(&engine, &active, &HealthPolicy::default())).expect("check");
        assert!(!report.healthy(), "in the active color it must run");
    }

    #[test]
    fn a_bad_label_is_a_config_error() {
        let mut web = container("web-green", "shop-green", Color::Green, RunState::Running);
        web.labels.insert("ztd.health.port".into(), "http".into());
        let engine = FakeEngine::with(vec![web]);
        let stack = stack();
        let target = Target {
            stack: &stack,
            color: Color::Green,
            active: true,
            service: None,
        };
        let err = run(check(&engine, &target, &HealthPolicy::default())).expect_err("bad label");
        assert_eq!(err.exit_status().code(), 5);
    }

    #[test]
    fn no_containers_is_unhealthy_with_a_reason() {
        let report = checked(&FakeEngine::default(), &HealthPolicy::default());
        assert!(!report.healthy());
        assert!(report.summary_line().contains("no containers"));
    }

    #[test]
    fn wait_returns_when_the_uptime_comes_due_not_at_the_deadline() {
        let mut young = container("web-green", "shop-green", Color::Green, RunState::Running);
        young.started_at = Some(Utc::now() - chrono::Duration::milliseconds(9_700));
        let engine = FakeEngine::with(vec![young]);
        let stack = stack();
        let target = Target {
            stack: &stack,
            color: Color::Green,
            active: true,
            service: None,
        };
        let report = run(wait(
            &engine,
            &target,
            &HealthPolicy::default(),
            Duration::from_secs(30),
        ))
        .expect("wait");
        assert!(report.healthy());
        assert!(
            report.duration < Duration::from_secs(5),
            "{:?}",
            report.duration
        );
    }

    #[test]
    fn wait_gives_up_at_once_on_a_container_that_exited_for_good() {
        let engine = FakeEngine::with(vec![container(
            "web-green",
            "shop-green",
            Color::Green,
            RunState::Exited,
        )]);
        let stack = stack();
        let target = Target {
            stack: &stack,
            color: Color::Green,
            active: true,
            service: None,
        };
        let report = run(wait(
            &engine,
            &target,
            &HealthPolicy::default(),
            Duration::from_secs(30),
        ))
        .expect("wait");
        assert!(!report.healthy());
        assert_eq!(report.rounds, 1);
    }
}
