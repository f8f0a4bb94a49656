//! Watching a stack: a sample of every container of the watched colors each interval (state,
//! health, restarts, CPU, memory, new error lines counted once each, probe latency), the engine's
//! container events as they happen, a live view, and a watch window that trips on the first
//! threshold crossed.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};

use crate::engine::{
    ContainerInfo, ContainerQuery, DockerHealth, Engine, EngineEvent, LogQuery, ResourceSample,
    RunState,
};
use crate::error::{Error, Result};
use crate::health::HealthPolicy;
use crate::labels::{self, ServiceSettings, SwitchMode};
use crate::probe;
use crate::stack::{Color, Stack};
use crate::units::format_bytes;

/// Error lines allowed per minute while a color is watched, unless configured.
pub const DEFAULT_MAX_ERROR_RATE: f64 = 10.0;
/// Consecutive failed probes (or CPU samples over the ceiling) that trip a window.
const CONSECUTIVE: u32 = 2;
/// Log lines kept per container for the live view.
const RECENT_LINES: usize = 3;
/// Log lines one container may write between two rounds; more is a flood, counted as over the
/// error rate whatever the lines say (they cannot all be judged in time).
pub const MAX_LOG_LINES_PER_ROUND: usize = 10_000;

/// How to watch.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    /// Time between samples.
    pub interval: Duration,
    /// A watch window: trip on the first threshold crossed, or pass at its end.
    pub window: Option<Duration>,
    /// Thresholds (restarts, memory, CPU, probe timeout).
    pub policy: HealthPolicy,
    /// New error lines allowed per minute.
    pub max_error_rate: f64,
    /// Keep the last log lines of each container (for the live view).
    pub keep_logs: bool,
}

/// One sample of one container.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Its color.
    pub color: Color,
    /// Container name.
    pub container: String,
    /// Service.
    pub service: String,
    /// Run state.
    pub state: RunState,
    /// Docker health.
    pub health: DockerHealth,
    /// Restarts so far.
    pub restart_count: u64,
    /// CPU since the previous sample, in percent of one core.
    pub cpu_percent: Option<f64>,
    /// Memory in use.
    pub memory_bytes: Option<u64>,
    /// Memory limit.
    pub memory_limit: Option<u64>,
    /// Error lines logged since the previous sample.
    pub new_error_lines: u64,
    /// Probe latency, when the service has a probe label.
    pub probe_ms: Option<f64>,
    /// Whether the probe answered.
    pub probe_ok: Option<bool>,
    /// A singleton waiting, stopped, for its handover (not a problem).
    pub standby: bool,
    /// Why its log could not be judged this round (a flood: too many lines, or too slow to
    /// read); over the error rate in a window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_flood: Option<String>,
    /// The container id.
    #[serde(skip)]
    pub id: String,
    /// Its `ztd.*` settings (its thresholds).
    #[serde(skip)]
    pub settings: ServiceSettings,
    /// Its last log lines (live view only).
    #[serde(skip)]
    pub recent_logs: Vec<String>,
}

impl Sample {
    /// Whether nothing is wrong with it.
    pub fn ok(&self) -> bool {
        self.standby
            || (self.state == RunState::Running
                && self.health != DockerHealth::Unhealthy
                && self.probe_ok != Some(false))
    }
}

/// Why a watch window tripped.
#[derive(Debug, Clone, Serialize)]
pub struct Trip {
    /// `exited`, `restarted`, `oom`, `unhealthy`, `probe`, `errors`, `memory`, `cpu`, `removed`,
    /// `no_containers` (the color has none), `blind` (no round of samples succeeded).
    pub kind: &'static str,
    /// The container.
    pub container: String,
    /// For humans.
    pub reason: String,
    /// How long after the window opened.
    pub after_ms: f64,
}

#[derive(Debug, Default)]
struct Tracked {
    last_log: Option<DateTime<Utc>>,
    last_stats: Option<ResourceSample>,
    baseline_restarts: Option<u64>,
    probe_failures: u32,
    cpu_overs: u32,
    errors: VecDeque<Instant>,
    recent: VecDeque<String>,
    log_flood: Option<String>,
}

/// The result of a watch: the trip, if any, and how much was seen.
#[derive(Debug, Clone, Default)]
pub struct WatchResult {
    /// Why it tripped.
    pub trip: Option<Trip>,
    /// Rounds of samples taken.
    pub rounds: u64,
    /// Events seen.
    pub events: u64,
    /// How long it watched.
    pub watched: Duration,
    /// Stopped by Ctrl-C or SIGTERM.
    pub interrupted: bool,
}

/// A watcher of some colors of a stack.
#[derive(Debug)]
pub struct Monitor<'a, E: Engine> {
    engine: &'a E,
    stack: &'a Stack,
    colors: Vec<Color>,
    active: Option<Color>,
    opts: MonitorOptions,
    tracked: HashMap<String, Tracked>,
    opened: Instant,
    opened_at: DateTime<Utc>,
}

impl<'a, E: Engine> Monitor<'a, E> {
    /// Watch `colors` of `stack`; `active` is the active color (its singletons must run).
    pub fn new(
        engine: &'a E,
        stack: &'a Stack,
        colors: Vec<Color>,
        active: Option<Color>,
        opts: MonitorOptions,
    ) -> Self {
        Monitor {
            engine,
            stack,
            colors,
            active,
            opts,
            tracked: HashMap::new(),
            opened: Instant::now(),
            opened_at: Utc::now(),
        }
    }

    /// Watch until the window ends, a threshold trips, or a signal arrives; `emit` receives
    /// each sample and event as a JSON line, `round` each round of samples (for the view).
    /// Rounds run beside the event stream, so an event is handled the moment it arrives even
    /// while the engine is slow to answer a round.
    pub async fn run(
        &mut self,
        mut emit: impl FnMut(Value),
        mut round: impl FnMut(&[Sample]),
    ) -> Result<WatchResult> {
        let mut result = WatchResult::default();
        let mut events = self.subscribe().await?;
        let deadline = self.opts.window.map(|w| tokio::time::Instant::now() + w);
        let mut next_round = tokio::time::Instant::now();
        let mut pending: Option<std::pin::Pin<Box<RoundFuture<'a>>>> = None;
        // The engine's silence in the last round: a window cannot pass clean on it.
        let mut unanswered: Option<Error> = None;
        let mut last_error: Option<String> = None;
        loop {
            if crate::signals::interrupted() {
                result.interrupted = true;
                break;
            }
            if self.opts.window.is_none() && crate::output::stdout_closed() {
                // Nobody reads the stream any more (`ztd-monitor | head -1`).
                break;
            }
            if let Some(deadline) = deadline
                && tokio::time::Instant::now() >= deadline
            {
                // A window is never judged blind while its first round is still under way.
                let grace = deadline + 2 * self.call_limit();
                if result.rounds > 0 || pending.is_none() || tokio::time::Instant::now() >= grace {
                    break;
                }
            }
            if pending.is_none() && tokio::time::Instant::now() >= next_round {
                next_round = tokio::time::Instant::now() + self.opts.interval;
                pending = Some(Box::pin(self.round()));
            }
            let wake = deadline.map_or(next_round, |d| d.min(next_round));
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(event)) => {
                        crate::debug!("event {} {}", event.container_name, event.action);
                        if let Some(line) = self.event_line(&event) {
                            result.events += 1;
                            emit(line);
                            if let Some(trip) = self.judge_event(&event) {
                                result.trip = Some(trip);
                                break;
                            }
                        }
                    }
                    Some(Err(err)) => {
                        emit(self.error_line(&err));
                        events = self.subscribe().await.unwrap_or_else(|_| stream::select_all(Vec::new()));
                    }
                    None => {
                        // The engine closed the event streams (restarted?): subscribe again.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        events = self.subscribe().await.unwrap_or_else(|_| stream::select_all(Vec::new()));
                    }
                },
                (outcome, tracked) = async {
                    match pending.as_mut() {
                        Some(round) => round.await,
                        None => std::future::pending().await,
                    }
                }, if pending.is_some() => {
                    pending = None;
                    self.tracked = tracked;
                    match outcome {
                        Ok(samples) => {
                            unanswered = None;
                            result.rounds += 1;
                            for sample in &samples {
                                emit(self.sample_line(sample));
                            }
                            round(&samples);
                            if let Some(trip) = self.judge(&samples) {
                                result.trip = Some(trip);
                                break;
                            }
                        }
                        Err(err) => {
                            last_error = Some(err.message().to_string());
                            emit(self.error_line(&err));
                            if matches!(err, Error::EngineUnreachable(_)) {
                                unanswered = Some(err);
                            }
                        }
                    }
                }
                () = tokio::time::sleep_until(wake), if pending.is_none() => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        result.watched = self.opened.elapsed();
        // An engine that stopped answering: exit 3 (unreachable), whatever else was seen.
        if let Some(err) = unanswered
            .filter(|_| self.opts.window.is_some() && result.trip.is_none() && !result.interrupted)
        {
            // A window whose last round got no answer was not watched: exit 3, not "clean".
            return Err(err);
        }
        if let Some(window) = self.opts.window
            && result.rounds == 0
            && result.trip.is_none()
            && !result.interrupted
        {
            // Nothing was seen: the window cannot vouch for the color.
            let colors: Vec<&str> = self.colors.iter().map(|c| c.as_str()).collect();
            result.trip = Some(self.trip(
                "blind",
                &colors.join(","),
                format!(
                    "no round of samples of {} succeeded in the {}s window{}: it proves nothing",
                    colors.join(" and "),
                    window.as_secs_f64(),
                    last_error.map_or(String::new(), |e| format!(" (last error: {e})"))
                ),
            ));
        }
        Ok(result)
    }

    /// A round of samples that owns what it needs (the per-container state is handed back with
    /// its output), so it can run beside the event stream.
    fn round(&mut self) -> impl std::future::Future<Output = RoundOutput> + use<'a, E> {
        sample_round(
            self.engine,
            self.stack,
            self.colors.clone(),
            self.active,
            std::mem::take(&mut self.tracked),
            self.opened_at,
            self.opts.clone(),
        )
    }

    async fn subscribe(&self) -> Result<stream::SelectAll<crate::engine::EventStream>> {
        let mut subscriptions = Vec::new();
        for color in &self.colors {
            subscriptions.push(
                self.engine
                    .events(&ContainerQuery::project(&self.stack.color_project(*color)))
                    .await?,
            );
        }
        Ok(stream::select_all(subscriptions))
    }

    /// One round, outside a watch: every container of the watched colors, sampled at once.
    pub async fn sample(&mut self) -> Result<Vec<Sample>> {
        let (outcome, tracked) = self.round().await;
        self.tracked = tracked;
        outcome
    }

    /// How long one engine call of a round may take.
    fn call_limit(&self) -> Duration {
        call_limit(&self.opts)
    }

    fn elapsed_ms(&self) -> f64 {
        crate::units::millis(self.opened.elapsed())
    }

    fn trip(&self, kind: &'static str, container: &str, reason: String) -> Trip {
        Trip {
            kind,
            container: container.to_string(),
            reason,
            after_ms: self.elapsed_ms(),
        }
    }

    /// Window thresholds on a round of samples.
    fn judge(&mut self, samples: &[Sample]) -> Option<Trip> {
        self.opts.window?;
        if samples.is_empty() {
            let colors: Vec<&str> = self.colors.iter().map(|c| c.as_str()).collect();
            return Some(self.trip(
                "no_containers",
                &colors.join(","),
                format!(
                    "{} has no containers: there is nothing to watch",
                    colors.join(" and ")
                ),
            ));
        }
        for sample in samples.iter().filter(|s| !s.standby) {
            let settings = &sample.settings;
            if sample.state != RunState::Running {
                return Some(self.trip(
                    "exited",
                    &sample.container,
                    format!("{} is {:?}", sample.container, sample.state).to_lowercase(),
                ));
            }
            if sample.health == DockerHealth::Unhealthy {
                return Some(self.trip(
                    "unhealthy",
                    &sample.container,
                    format!("{} is unhealthy", sample.container),
                ));
            }
            let Some(tracked) = self.tracked.get(&sample.id) else {
                continue;
            };
            let allowed = settings
                .max_restarts
                .unwrap_or(self.opts.policy.max_restarts);
            if let Some(base) = tracked.baseline_restarts
                && sample.restart_count > base + allowed
            {
                return Some(self.trip(
                    "restarted",
                    &sample.container,
                    format!(
                        "{} restarted {} times while watched (allowed {allowed})",
                        sample.container,
                        sample.restart_count - base
                    ),
                ));
            }
            if tracked.probe_failures >= CONSECUTIVE {
                return Some(self.trip(
                    "probe",
                    &sample.container,
                    format!(
                        "{}'s probe failed {} times in a row",
                        sample.container, tracked.probe_failures
                    ),
                ));
            }
            let rate = settings.max_error_rate.unwrap_or(self.opts.max_error_rate);
            if let Some(flood) = &tracked.log_flood {
                return Some(self.trip(
                    "errors",
                    &sample.container,
                    format!("{flood}: counted as over the error rate (allowed {rate} a minute)"),
                ));
            }
            if tracked.errors.len() as f64 > rate {
                return Some(self.trip(
                    "errors",
                    &sample.container,
                    format!(
                        "{} logged {} error lines in the last minute (allowed {rate})",
                        sample.container,
                        tracked.errors.len()
                    ),
                ));
            }
            if let (Some(limit), Some(usage), Some(total)) = (
                settings.max_memory.or(self.opts.policy.max_memory),
                sample.memory_bytes,
                sample.memory_limit,
            ) && limit.exceeded(usage, total)
            {
                return Some(self.trip(
                    "memory",
                    &sample.container,
                    format!(
                        "{} uses {} of memory (allowed {limit})",
                        sample.container,
                        format_bytes(usage)
                    ),
                ));
            }
            if settings.max_cpu.or(self.opts.policy.max_cpu).is_some()
                && tracked.cpu_overs >= CONSECUTIVE
            {
                return Some(self.trip(
                    "cpu",
                    &sample.container,
                    format!(
                        "{} is over its CPU ceiling ({:.0}%)",
                        sample.container,
                        sample.cpu_percent.unwrap_or_default()
                    ),
                ));
            }
        }
        None
    }

    /// Window thresholds on an engine event.
    fn judge_event(&self, event: &EngineEvent) -> Option<Trip> {
        self.opts.window?;
        let name = &event.container_name;
        match event.action.as_str() {
            "die" => {
                let code = event
                    .attributes
                    .get("exitCode")
                    .cloned()
                    .unwrap_or_default();
                Some(self.trip("exited", name, format!("{name} exited (code {code})")))
            }
            "oom" => Some(self.trip("oom", name, format!("{name} ran out of memory"))),
            "health_status: unhealthy" => {
                Some(self.trip("unhealthy", name, format!("{name} became unhealthy")))
            }
            "destroy" => Some(self.trip("removed", name, format!("{name} was removed"))),
            _ => None,
        }
    }

    fn base_line(&self, kind: &str, ok: bool) -> Value {
        json!({
            "tool": "ztd-monitor",
            "project": self.stack.name,
            "type": kind,
            "ok": ok,
            "time": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        })
    }

    fn sample_line(&self, sample: &Sample) -> Value {
        let mut line = self.base_line("sample", sample.ok());
        if let (Some(line), Ok(Value::Object(fields))) =
            (line.as_object_mut(), serde_json::to_value(sample))
        {
            line.extend(fields);
        }
        line
    }

    fn event_line(&self, event: &EngineEvent) -> Option<Value> {
        let action = event.action.as_str();
        let interesting = matches!(
            action,
            "start" | "die" | "oom" | "restart" | "kill" | "stop" | "destroy" | "pause" | "unpause"
        ) || action.starts_with("health_status");
        if !interesting {
            return None;
        }
        let bad =
            matches!(action, "die" | "oom" | "destroy") || action == "health_status: unhealthy";
        let mut line = self.base_line("event", !bad);
        line["color"] = json!(event.attributes.get(labels::DEPLOYMENT_COLOR));
        line["container"] = Value::from(event.container_name.clone());
        line["action"] = Value::from(action);
        if let Some(code) = event.attributes.get("exitCode") {
            line["exit_code"] = Value::from(code.clone());
        }
        if let Some(signal) = event.attributes.get("signal") {
            line["signal"] = Value::from(signal.clone());
        }
        Some(line)
    }

    fn error_line(&self, err: &Error) -> Value {
        crate::warn!("{err}; going on");
        let mut line = self.base_line("error", false);
        line["message"] = Value::from(err.message());
        line
    }
}

/// What a round gives back: the samples (or the error) and the per-container state it took.
type RoundOutput = (Result<Vec<Sample>>, HashMap<String, Tracked>);
type RoundFuture<'a> = dyn std::future::Future<Output = RoundOutput> + 'a;

/// Sample every container of `colors` at once, taking the per-container state and giving it
/// back (with the gone containers forgotten).
#[allow(clippy::too_many_arguments)]
async fn sample_round<E: Engine>(
    engine: &E,
    stack: &Stack,
    colors: Vec<Color>,
    active: Option<Color>,
    mut tracked: HashMap<String, Tracked>,
    opened_at: DateTime<Utc>,
    opts: MonitorOptions,
) -> RoundOutput {
    let mut containers = Vec::new();
    for color in colors {
        match engine
            .list(&ContainerQuery::project(&stack.color_project(color)))
            .await
        {
            Ok(listed) => containers.extend(listed.into_iter().map(|c| (color, c))),
            Err(err) => return (Err(err), tracked),
        }
    }
    tracked.retain(|id, _| containers.iter().any(|(_, c)| &c.id == id));
    let futures = containers.iter().map(|(color, c)| {
        let state = tracked.remove(&c.id).unwrap_or_default();
        sample_one(
            engine,
            *color,
            c,
            state,
            active == Some(*color),
            opened_at,
            &opts,
        )
    });
    let mut samples = Vec::new();
    for (sample, state) in join_all(futures).await {
        tracked.insert(sample.id.clone(), state);
        samples.push(sample);
    }
    (Ok(samples), tracked)
}

#[allow(clippy::too_many_arguments)]
async fn sample_one<E: Engine>(
    engine: &E,
    color: Color,
    container: &ContainerInfo,
    mut tracked: Tracked,
    color_is_active: bool,
    opened_at: DateTime<Utc>,
    opts: &MonitorOptions,
) -> (Sample, Tracked) {
    let settings =
        ServiceSettings::from_labels(&container.service, &container.labels).unwrap_or_default();
    let standby = settings.switch == SwitchMode::Handover
        && settings.activate.is_none()
        && !color_is_active
        && !container.state.is_up();
    tracked
        .baseline_restarts
        .get_or_insert(container.restart_count);
    let running = container.state == RunState::Running;
    let mut sample = Sample {
        color,
        container: container.name.clone(),
        service: container.service.clone(),
        state: container.state,
        health: container.health,
        restart_count: container.restart_count,
        cpu_percent: None,
        memory_bytes: None,
        memory_limit: None,
        new_error_lines: 0,
        probe_ms: None,
        probe_ok: None,
        standby,
        log_flood: None,
        id: container.id.clone(),
        settings: settings.clone(),
        recent_logs: Vec::new(),
    };
    if !running {
        sample.recent_logs = tracked.recent.iter().cloned().collect();
        return (sample, tracked);
    }
    let since = tracked.last_log.unwrap_or(opened_at);
    let address = container
        .addresses
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1".into());
    let probe = async {
        if let Some(path) = settings.health_http.clone() {
            let port = settings
                .health_port
                .or_else(|| container.exposed_ports.first().copied())?;
            Some(probe::http_probe(address.clone(), port, path, opts.policy.probe_timeout).await)
        } else if let Some(port) = settings.health_tcp {
            Some(probe::tcp_probe(address.clone(), port, opts.policy.probe_timeout).await)
        } else {
            None
        }
    };
    // A container that dies mid-round can leave a stats request unanswered: bound each call.
    let limit = call_limit(opts);
    let (stats, logs, probed) = tokio::join!(
        tokio::time::timeout(limit, engine.stats(&container.id)),
        tokio::time::timeout(
            limit,
            engine.logs(
                &container.id,
                LogQuery {
                    since: Some(since),
                    tail: None
                }
            )
        ),
        probe
    );
    let stats = stats.unwrap_or_else(|_| Err(Error::Engine("stats timed out".into())));
    tracked.log_flood = None;
    let logs = match logs {
        Ok(logs) => logs,
        Err(_) => {
            tracked.log_flood = Some(format!(
                "{}'s log could not be read within {}s (a flood?)",
                container.name,
                limit.as_secs_f64()
            ));
            Err(Error::Engine("logs timed out".into()))
        }
    };
    if let Ok(stats) = stats {
        sample.memory_bytes = Some(stats.memory_usage);
        sample.memory_limit = Some(stats.memory_limit);
        sample.cpu_percent = tracked
            .last_stats
            .and_then(|prev| stats.cpu_percent_since(&prev))
            .map(|p| (p * 10.0).round() / 10.0);
        let ceiling = settings.max_cpu.or(opts.policy.max_cpu);
        match (ceiling, sample.cpu_percent) {
            (Some(max), Some(pct)) if pct > max => tracked.cpu_overs += 1,
            _ => tracked.cpu_overs = 0,
        }
        tracked.last_stats = Some(stats);
    }
    if let Ok(lines) = logs {
        if lines.len() > MAX_LOG_LINES_PER_ROUND {
            tracked.log_flood = Some(format!(
                "{} logged {} lines in one round (more than {MAX_LOG_LINES_PER_ROUND})",
                container.name,
                lines.len()
            ));
        }
        let pattern = settings.error_pattern();
        let now = Instant::now();
        for line in lines
            .iter()
            .filter(|l| tracked.last_log.is_none_or(|last| l.timestamp > last))
        {
            if line.timestamp < opened_at {
                continue;
            }
            if pattern.is_match(&line.text) {
                sample.new_error_lines += 1;
                tracked.errors.push_back(now);
            }
            if opts.keep_logs {
                tracked
                    .recent
                    .push_back(line.text.chars().take(160).collect());
                while tracked.recent.len() > RECENT_LINES {
                    tracked.recent.pop_front();
                }
            }
        }
        if let Some(last) = lines.last() {
            tracked.last_log = Some(
                tracked
                    .last_log
                    .map_or(last.timestamp, |t| t.max(last.timestamp)),
            );
        } else if tracked.last_log.is_none() {
            tracked.last_log = Some(opened_at);
        }
        while tracked
            .errors
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            tracked.errors.pop_front();
        }
    }
    if let Some(outcome) = probed {
        sample.probe_ms = Some((outcome.latency.as_secs_f64() * 10_000.0).round() / 10.0);
        sample.probe_ok = Some(outcome.ok);
        if outcome.ok {
            tracked.probe_failures = 0;
        } else {
            tracked.probe_failures += 1;
        }
    }
    sample.log_flood = tracked.log_flood.clone();
    sample.recent_logs = tracked.recent.iter().cloned().collect();
    (sample, tracked)
}

/// How long one engine call of a round (stats, logs) may take.
fn call_limit(opts: &MonitorOptions) -> Duration {
    opts.interval.max(Duration::from_secs(3))
}

/// The live view of one round, in the spirit of the replaced monitor script.
pub fn render_view(
    stack: &Stack,
    active: Option<Color>,
    samples: &[Sample],
    color: bool,
) -> String {
    let (bold, dim, red, green, yellow, reset) = if color {
        (
            "\x1b[1m",
            "\x1b[2m",
            "\x1b[0;31m",
            "\x1b[0;32m",
            "\x1b[1;33m",
            "\x1b[0m",
        )
    } else {
        ("", "", "", "", "", "")
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{bold}ztd-monitor{reset} {} {dim}{} (refresh every ~2s; Ctrl-C to stop){reset}",
        stack.name,
        chrono::Local::now().format("%Y-%m-%d %H:%M:%S")
    );
    let up = |c: Color| samples.iter().any(|s| s.color == c && s.state.is_up());
    if up(Color::Blue) && up(Color::Green) {
        let _ = writeln!(
            out,
            "{yellow}TRANSITION IN PROGRESS - Both deployments active{reset}"
        );
    }
    for c in Color::ALL {
        let mine: Vec<&Sample> = samples.iter().filter(|s| s.color == c).collect();
        let role = if active == Some(c) {
            "active"
        } else {
            "standby"
        };
        let running = mine.iter().filter(|s| s.state.is_up()).count();
        let _ = writeln!(
            out,
            "\n{bold}=== {} DEPLOYMENT ({role}) ==={reset}  {running}/{} containers up",
            c.as_str().to_uppercase(),
            mine.len()
        );
        if mine.is_empty() {
            let _ = writeln!(out, "  {dim}no containers{reset}");
            continue;
        }
        let _ = writeln!(out, "  Health:");
        for s in &mine {
            let (mark, word) = if s.standby {
                (format!("{dim}-{reset}"), "standby".to_string())
            } else if s.ok() {
                (
                    format!("{green}✓{reset}"),
                    if s.health == DockerHealth::Healthy {
                        "healthy".into()
                    } else {
                        "up".into()
                    },
                )
            } else {
                (
                    format!("{red}✗{reset}"),
                    format!("{:?}", s.state).to_lowercase()
                        + if s.health == DockerHealth::Unhealthy {
                            ", unhealthy"
                        } else {
                            ""
                        },
                )
            };
            let _ = writeln!(out, "    {mark} {} {word}", s.container);
        }
        let _ = writeln!(out, "  Containers:");
        let _ = writeln!(
            out,
            "    {:<28} {:<10} {:<9} {:>8}",
            "NAME", "STATE", "HEALTH", "RESTARTS"
        );
        for s in &mine {
            let _ = writeln!(
                out,
                "    {:<28} {:<10} {:<9} {:>8}",
                s.container,
                format!("{:?}", s.state).to_lowercase(),
                format!("{:?}", s.health).to_lowercase(),
                s.restart_count
            );
        }
        let _ = writeln!(out, "  Resources:");
        for s in mine.iter().filter(|s| s.memory_bytes.is_some()) {
            let _ = writeln!(
                out,
                "    {:<28} CPU {:>6}  MEM {} / {}",
                s.container,
                s.cpu_percent
                    .map_or("-".to_string(), |p| format!("{p:.1}%")),
                format_bytes(s.memory_bytes.unwrap_or_default()),
                format_bytes(s.memory_limit.unwrap_or_default())
            );
        }
        let _ = writeln!(out, "  Logs:");
        let mut any = false;
        for s in &mine {
            for line in &s.recent_logs {
                any = true;
                let _ = writeln!(out, "    {dim}{}:{reset} {line}", s.container);
            }
        }
        if !any {
            let _ = writeln!(out, "    {dim}No recent logs{reset}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeEngine, container};

    fn stack() -> Stack {
        Stack {
            dir: std::env::temp_dir(),
            name: "shop".into(),
        }
    }

    /// Watch blue of the fake engine for `window`.
    fn watch(engine: &FakeEngine, window: Duration) -> WatchResult {
        let stack = stack();
        let opts = MonitorOptions {
            interval: Duration::from_millis(100),
            window: Some(window),
            policy: HealthPolicy::default(),
            max_error_rate: DEFAULT_MAX_ERROR_RATE,
            keep_logs: false,
        };
        let mut monitor = Monitor::new(engine, &stack, vec![Color::Blue], Some(Color::Blue), opts);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(monitor.run(|_| {}, |_| {}))
            .expect("watch")
    }

    fn running_web() -> FakeEngine {
        FakeEngine::with(vec![container(
            "web-blue",
            "shop-blue",
            Color::Blue,
            RunState::Running,
        )])
    }

    #[test]
    fn a_quiet_running_color_passes_its_window() {
        let result = watch(&running_web(), Duration::from_millis(400));
        assert!(result.trip.is_none(), "{:?}", result.trip);
        assert!(result.rounds >= 2);
    }

    #[test]
    fn a_color_with_no_containers_fails_its_window() {
        let result = watch(&FakeEngine::default(), Duration::from_millis(400));
        let trip = result.trip.expect("tripped");
        assert_eq!(trip.kind, "no_containers");
        assert!(
            trip.reason.contains("blue has no containers"),
            "{}",
            trip.reason
        );
    }

    #[test]
    fn a_window_in_which_every_round_failed_is_not_clean() {
        let engine = running_web();
        engine.set_failing(true);
        let result = watch(&engine, Duration::from_millis(400));
        assert_eq!(result.rounds, 0);
        let trip = result.trip.expect("a blind window fails");
        assert_eq!(trip.kind, "blind");
        assert!(
            trip.reason.contains("no round of samples"),
            "{}",
            trip.reason
        );
        assert!(
            trip.reason.contains("fake engine is failing"),
            "{}",
            trip.reason
        );
    }

    #[test]
    fn more_log_lines_in_a_round_than_the_cap_trip_as_errors() {
        let engine = running_web();
        let now = Utc::now();
        let lines: Vec<(DateTime<Utc>, &str)> = (0..=MAX_LOG_LINES_PER_ROUND)
            .map(|_| (now + chrono::Duration::milliseconds(50), "GET / 200"))
            .collect();
        engine.set_logs("web-blue", &lines);
        let result = watch(&engine, Duration::from_secs(2));
        let trip = result.trip.expect("a flood trips");
        assert_eq!(trip.kind, "errors");
        assert!(
            trip.reason.contains("lines in one round"),
            "{}",
            trip.reason
        );
        assert!(
            trip.reason.contains("over the error rate"),
            "{}",
            trip.reason
        );
    }

    #[test]
    fn a_log_too_slow_to_read_trips_as_errors() {
        let engine = running_web();
        engine.set_log_delay(Duration::from_secs(10));
        let result = watch(&engine, Duration::from_secs(1));
        let trip = result.trip.expect("a flood trips");
        assert_eq!(trip.kind, "errors");
        assert!(
            trip.reason.contains("could not be read within 3s"),
            "{}",
            trip.reason
        );
    }
}
