//! What each tool does on a Swarm cluster: detect (nodes, proxy, each color's tasks, lock and
//! journal), up (a color as a stack beside the other), health (task states, which Swarm reports
//! `running` only once a HEALTHCHECK passes, and each node's proxy), switch and rollback (one
//! idempotent convergence onto a color, journaled in the cluster and undone by converging back),
//! and monitor (the color's tasks over a window).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bollard::models::Service;
use serde::Serialize;
use serde_json::{Value, json};

use crate::compose::Compose;
use crate::error::{Error, ExitStatus, Result};
use crate::render::BuildInfo;
use crate::report::{Human, Outcome, Report};
use crate::stack::Sources;
use crate::stack::{Color, Stack};
use crate::swarm::lock::{self, ClusterLock, Holder, LockState};
use crate::swarm::proxy::{self, NodeConfirmation, ProxyView};
use crate::swarm::render::{self, PlannedService, SwarmListener};
use crate::swarm::{
    Cluster, LABEL_COLOR, LABEL_PROJECT, LABEL_PUBLISH, LABEL_REPLICAS, LABEL_SERVICE,
    LABEL_SWITCH, NodeView, Orchestrator, TaskView, color_stack, service_name, spec_label,
    spec_replicas,
};
use crate::units::millis;

/// A service of a color, as the cluster runs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceView {
    /// Its compose name.
    pub name: String,
    /// Its Swarm service.
    pub service: String,
    /// Swarm's version of its spec (each update makes a new one).
    pub version: u64,
    /// Its `ztd.switch` mode.
    pub switch: String,
    /// The replicas Swarm is asked for now (None: global).
    pub replicas: Option<i64>,
    /// The replicas it runs with while its color runs.
    pub runs_with: i64,
    /// Its tasks that run.
    pub running: usize,
    /// Its tasks that are wanted or not yet finished.
    pub tasks: Vec<TaskView>,
    /// The ports the proxy publishes for it.
    #[serde(skip)]
    pub listeners: Vec<SwarmListener>,
}

impl ServiceView {
    fn is_singleton(&self) -> bool {
        self.switch == "handover"
    }
    /// Its tasks that have not finished on their node (running, starting, or not heard from).
    fn live_tasks(&self) -> impl Iterator<Item = &TaskView> {
        self.tasks.iter().filter(|t| !t.is_finished())
    }
    /// Whether it runs as many tasks as it is asked for (at least one for a global service).
    fn is_satisfied(&self) -> bool {
        match self.replicas {
            Some(n) => self.running >= usize::try_from(n).unwrap_or(0),
            None => self.running >= 1,
        }
    }
}

/// What the cluster runs of a stack.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterState {
    /// The nodes.
    pub nodes: Vec<NodeView>,
    /// The proxy, once made.
    pub proxy: Option<ProxyView>,
    /// Each color's services.
    pub colors: BTreeMap<Color, Vec<ServiceView>>,
    /// The lock and journal.
    pub lock: LockState,
}

impl ClusterState {
    /// The color the proxy serves.
    pub fn active(&self) -> Option<Color> {
        self.proxy.as_ref().and_then(|p| p.active)
    }
    /// The other color, when it has services.
    pub fn standby(&self) -> Option<Color> {
        let other = self.active().map_or(Color::Blue, Color::other);
        self.colors.contains_key(&other).then_some(other)
    }
    /// Where the next deploy goes: the color that is not active (green when nothing is).
    pub fn target(&self) -> Color {
        self.active().map_or(Color::Green, Color::other)
    }
    fn services(&self, color: Color) -> &[ServiceView] {
        self.colors.get(&color).map(Vec::as_slice).unwrap_or(&[])
    }
    fn listeners(&self, color: Color) -> Vec<SwarmListener> {
        self.services(color)
            .iter()
            .flat_map(|s| s.listeners.clone())
            .collect()
    }
    /// The journal's color to go to, if a switch was left unfinished.
    fn journal_to(&self) -> Option<Color> {
        let to = self.lock.journal.as_ref()?.get("to")?.as_str()?;
        crate::cli::color_arg(to).ok()
    }
    /// Whether the journal's switch had failed and was being undone (its `to` is the old color).
    fn undoing(&self) -> bool {
        self.lock
            .journal
            .as_ref()
            .and_then(|j| j.get("phase"))
            .is_some_and(|p| p == "undoing")
    }
    /// Whether a switch was left unfinished by a process that is gone.
    fn interrupted(&self) -> bool {
        self.lock.journal.is_some() && self.lock.holder.as_ref().is_none_or(|h| h.is_dead_here())
    }
}

fn service_view(service: Service, tasks: Vec<TaskView>) -> Option<(Color, ServiceView)> {
    let version = service.version.and_then(|v| v.index).unwrap_or_default();
    let spec = service.spec.unwrap_or_default();
    let color = crate::cli::color_arg(spec_label(&spec, LABEL_COLOR)?).ok()?;
    let name = spec_label(&spec, LABEL_SERVICE)?.to_string();
    let listeners = spec_label(&spec, LABEL_PUBLISH)
        .map(|items| {
            items
                .split(',')
                .filter_map(|item| SwarmListener::parse(&name, item))
                .collect()
        })
        .unwrap_or_default();
    let tasks: Vec<TaskView> = tasks
        .into_iter()
        .filter(|t| t.is_wanted() || !t.is_finished())
        .collect();
    Some((
        color,
        ServiceView {
            service: spec.name.clone().unwrap_or_default(),
            version,
            switch: spec_label(&spec, LABEL_SWITCH)
                .unwrap_or("side")
                .to_string(),
            replicas: spec_replicas(&spec),
            runs_with: spec_label(&spec, LABEL_REPLICAS)
                .and_then(|r| r.parse().ok())
                .unwrap_or(1),
            running: tasks
                .iter()
                .filter(|t| t.is_running() && t.is_wanted())
                .count(),
            tasks,
            listeners,
            name,
        },
    ))
}

/// Read what the cluster runs of `stack`.
pub async fn observe(cluster: &Cluster, stack: &Stack) -> Result<ClusterState> {
    let nodes = cluster.nodes().await?;
    // One listing holds the colors' services, the proxy and the lock (all carry the label).
    let services = cluster
        .services_labelled(LABEL_PROJECT, &stack.name)
        .await?;
    let (proxy_name, lock_name) = (proxy::service(stack), lock::service(stack));
    let mut lock = LockState::default();
    let mut with_tasks = Vec::new();
    for service in services {
        let name = crate::swarm::service_spec_name(&service);
        let spec = service.spec.as_ref();
        if name == lock_name {
            lock = lock::read_state(spec.unwrap_or(&Default::default()))?;
        } else if name == proxy_name || spec.and_then(|s| spec_label(s, LABEL_COLOR)).is_some() {
            with_tasks.push((name, service));
        }
    }
    let tasks = futures_util::future::join_all(
        with_tasks
            .iter()
            .map(|(name, _)| cluster.tasks(name, &nodes)),
    )
    .await;
    let mut colors: BTreeMap<Color, Vec<ServiceView>> = BTreeMap::new();
    let mut proxy = None;
    for ((name, service), tasks) in with_tasks.into_iter().zip(tasks) {
        let tasks = tasks?;
        if name == proxy_name {
            proxy = Some(proxy::view(service, tasks));
        } else if let Some((color, view)) = service_view(service, tasks) {
            colors.entry(color).or_default().push(view);
        }
    }
    Ok(ClusterState {
        nodes,
        proxy,
        colors,
        lock,
    })
}

/// A color, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColorView {
    /// Its Swarm stack.
    pub stack: String,
    /// Its services.
    pub services: Vec<ServiceView>,
}

/// `ztd-detect --orchestrator swarm`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwarmDetection {
    /// Always swarm.
    pub orchestrator: Orchestrator,
    /// The manager ztd asked.
    pub manager: String,
    /// The color the proxy serves.
    pub active: Option<Color>,
    /// The other color, when it is deployed.
    pub standby: Option<Color>,
    /// The cluster's nodes.
    pub nodes: Vec<NodeView>,
    /// The proxy service and its tasks.
    pub proxy: Option<ProxyView>,
    /// Each color's services and tasks.
    pub colors: BTreeMap<Color, ColorView>,
    /// Who holds the cluster lock.
    pub lock: Option<Holder>,
    /// The journal of a switch in progress (or interrupted).
    pub journal: Option<Value>,
    /// Whether that switch was interrupted (its holder is gone): resume or roll back.
    pub interrupted: bool,
}

impl Outcome for SwarmDetection {
    fn status(&self) -> ExitStatus {
        if self.interrupted {
            ExitStatus::Incomplete
        } else {
            ExitStatus::Success
        }
    }
}

impl SwarmDetection {
    /// A few lines for a person at a terminal.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "swarm via {}: {} nodes ({} ready); active {}, standby {}\n",
            self.manager,
            self.nodes.len(),
            self.nodes.iter().filter(|n| n.is_ready()).count(),
            self.active.map_or("none", Color::as_str),
            self.standby.map_or("none", Color::as_str),
        );
        for (color, view) in &self.colors {
            for s in &view.services {
                out.push_str(&format!(
                    "  {color} {}: {}/{} running\n",
                    s.name,
                    s.running,
                    s.replicas.map_or("global".to_string(), |r| r.to_string())
                ));
            }
        }
        if let Some(holder) = &self.lock {
            out.push_str(&format!("  locked by {}\n", holder.describe()));
        }
        if self.interrupted {
            out.push_str("  a switch was interrupted: ztd-switch --resume or ztd-rollback\n");
        }
        out
    }
}

/// Detect a Swarm stack.
pub async fn detect(cluster: &Cluster, stack: &Stack) -> Result<(SwarmDetection, Color)> {
    let state = observe(cluster, stack).await?;
    let target = state.target();
    let colors = state
        .colors
        .iter()
        .map(|(color, services)| {
            (
                *color,
                ColorView {
                    stack: color_stack(stack, *color),
                    services: services.clone(),
                },
            )
        })
        .collect();
    Ok((
        SwarmDetection {
            orchestrator: Orchestrator::Swarm,
            manager: cluster.engine.host().to_string(),
            active: state.active(),
            standby: state.standby(),
            interrupted: state.interrupted(),
            nodes: state.nodes,
            proxy: state.proxy,
            colors,
            lock: state.lock.holder,
            journal: state.lock.journal,
        },
        target,
    ))
}

/// Run `work` holding the cluster lock, and let go of it whatever happens.
async fn locked<T>(
    cluster: &Cluster,
    stack: &Stack,
    tool: &str,
    work: impl AsyncFnOnce(&ClusterLock) -> Result<T>,
) -> Result<T> {
    let held = lock::acquire(cluster, stack, tool).await?;
    crate::fault::pause("swarm:locked").await;
    let result = work(&held).await;
    let released = held.release(cluster).await;
    let value = result?;
    released?;
    Ok(value)
}

/// `ztd-up --orchestrator swarm`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwarmUpReport {
    /// Always swarm.
    pub orchestrator: Orchestrator,
    /// The color deployed.
    pub color: Color,
    /// Its Swarm stack.
    pub stack: String,
    /// Its services.
    pub services: Vec<PlannedService>,
    /// The ports the proxy publishes.
    pub listeners: Vec<SwarmListener>,
    /// Whether this deploy created the proxy.
    pub proxy_created: bool,
    /// Keys of the compose file a Swarm stack does not honour (`service.key`).
    pub dropped: Vec<String>,
    /// `docker stack deploy --resolve-image`: always when every image names a registry.
    pub resolve_image: &'static str,
    /// Where the rendered stack file was written.
    pub stack_file: String,
    /// Wall time.
    pub elapsed_ms: f64,
}

impl Outcome for SwarmUpReport {
    fn status(&self) -> ExitStatus {
        ExitStatus::Success
    }
}

impl SwarmUpReport {
    /// A few lines for a person at a terminal.
    pub fn summary(&self) -> String {
        format!(
            "deployed {} as stack {} ({} services) in {:.0} ms\n",
            self.color,
            self.stack,
            self.services.len(),
            self.elapsed_ms
        )
    }
}

/// Whether an image reference names a registry (its first part has a dot, a port or is
/// localhost): only then may `docker stack deploy` ask a registry for its digest.
fn names_registry(image: &str) -> bool {
    image.split_once('/').is_some_and(|(first, _)| {
        first.contains('.') || first.contains(':') || first == "localhost"
    })
}

/// Deploy `color` of the project as a Swarm stack beside the active one.
pub async fn up(
    cluster: &Cluster,
    stack: &Stack,
    sources: &Sources,
    color: Option<Color>,
) -> Result<SwarmUpReport> {
    let started = Instant::now();
    locked(cluster, stack, "ztd-up", async |_| {
        let state = observe(cluster, stack).await?;
        if state.lock.journal.is_some() {
            return Err(Error::Incomplete(format!(
                "a switch of {} was interrupted: ztd-switch --resume or ztd-rollback first",
                stack.name
            )));
        }
        let color = color.unwrap_or_else(|| state.target());
        if state.active() == Some(color) {
            return Err(Error::State(format!(
                "{color} is the active color of {}: deploy to {}",
                stack.name,
                color.other()
            )));
        }
        let compose = Compose::find().await?.on(cluster.engine.endpoint());
        let env = BuildInfo::now(color, &stack.dir).variables(color);
        let config = compose
            .config(stack, sources, &env, Duration::from_secs(60))
            .await?;
        // With nothing active, the singletons start now, pinned to the manager's node.
        let plan = render::render(
            &config,
            stack,
            color,
            state.active().is_some(),
            &cluster.node_id,
        )?;
        for key in &plan.dropped {
            crate::warn!("{key}: not supported by a Swarm stack, left out");
        }
        let images: Vec<&str> = plan.file["services"]
            .as_object()
            .into_iter()
            .flat_map(|s| s.values())
            .filter_map(|s| s["image"].as_str())
            .collect();
        let resolve_image = if !images.is_empty() && images.iter().all(|i| names_registry(i)) {
            "always"
        } else {
            "never"
        };
        let proxy_created =
            proxy::ensure(cluster, stack, &crate::proxy::image(), &plan.listeners).await?;
        // A proxy task Swarm started since the last switch (a new node) serves nothing yet.
        if let (Some(active), Some(current)) = (state.active(), state.proxy.as_ref()) {
            let listeners = state.listeners(active);
            proxy::resync(cluster, stack, active, current.generation, &listeners).await?;
        }
        std::fs::create_dir_all(stack.ztd_dir()).map_err(|e| {
            Error::State(format!("cannot create {}: {e}", stack.ztd_dir().display()))
        })?;
        let file = stack.ztd_dir().join(format!("swarm-{color}.json"));
        let text = serde_json::to_string_pretty(&plan.file)
            .map_err(|e| Error::State(format!("cannot write the stack file: {e}")))?;
        std::fs::write(&file, text)
            .map_err(|e| Error::State(format!("cannot write {}: {e}", file.display())))?;
        let name = color_stack(stack, color);
        stack_deploy(cluster, &file, &name, resolve_image).await?;
        Ok(SwarmUpReport {
            orchestrator: Orchestrator::Swarm,
            color,
            stack: name,
            services: plan.services,
            listeners: plan.listeners,
            proxy_created,
            dropped: plan.dropped,
            resolve_image,
            stack_file: file.display().to_string(),
            elapsed_ms: millis(started.elapsed()),
        })
    })
    .await
}

/// `docker stack deploy`, on the manager ztd talks to.
async fn stack_deploy(
    cluster: &Cluster,
    file: &std::path::Path,
    name: &str,
    resolve_image: &str,
) -> Result<()> {
    let argv: Vec<String> = [
        "stack",
        "deploy",
        "--prune",
        "--resolve-image",
        resolve_image,
        "-c",
        &file.display().to_string(),
        name,
    ]
    .map(str::to_string)
    .to_vec();
    let Some(output) = cluster.docker_cli(&argv, STACK_DEPLOY_DEADLINE).await? else {
        return Err(Error::Engine(format!(
            "docker stack deploy {name}: no answer within {}s",
            STACK_DEPLOY_DEADLINE.as_secs()
        )));
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(Error::Engine(format!(
            "docker stack deploy {name} failed: {}",
            crate::error::one_line(stderr.trim())
        )));
    }
    Ok(())
}

/// How long `docker stack deploy` may take.
const STACK_DEPLOY_DEADLINE: Duration = Duration::from_secs(120);

/// `ztd-health --orchestrator swarm`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwarmHealthReport {
    /// Always swarm.
    pub orchestrator: Orchestrator,
    /// The color checked.
    pub color: Color,
    /// Whether every service runs what it is asked for.
    pub healthy: bool,
    /// Each service, with its tasks.
    pub services: Vec<ServiceView>,
    /// For the active color: what each ready node's proxy answers on the first HTTP port.
    pub proxies: Vec<proxy::NodeProbe>,
    /// What is missing, service by service, and each node's proxy that does not serve it.
    pub problems: Vec<String>,
    /// How long the check (and its wait) took.
    pub elapsed_ms: f64,
}

impl Outcome for SwarmHealthReport {
    fn status(&self) -> ExitStatus {
        if self.healthy {
            ExitStatus::Success
        } else {
            ExitStatus::Negative
        }
    }
}

impl SwarmHealthReport {
    /// A few lines for a person at a terminal.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{}: {}\n",
            self.color,
            if self.healthy { "healthy" } else { "unhealthy" }
        );
        for p in &self.problems {
            out.push_str(&format!("  {p}\n"));
        }
        out
    }
}

/// What keeps a color from being healthy.
fn problems(state: &ClusterState, color: Color) -> Vec<String> {
    let services = state.services(color);
    if services.is_empty() {
        return vec![format!("nothing of {color} is deployed")];
    }
    let active = state.active() == Some(color);
    services
        .iter()
        .filter(|s| {
            // A singleton of the standby waits at zero replicas for its handover.
            !(s.is_singleton() && !active && s.replicas == Some(0))
        })
        .filter(|s| !s.is_satisfied() || s.replicas == Some(0))
        .map(|s| {
            let failed = s
                .tasks
                .iter()
                .filter_map(|t| t.error.as_deref())
                .next()
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default();
            format!(
                "{}: {}/{} tasks running{failed}",
                s.name,
                s.running,
                s.replicas
                    .map_or_else(|| "global".into(), |r| r.to_string())
            )
        })
        .collect()
}

/// Check a color (the active one by default); with `wait`, until healthy or the deadline.
pub async fn health(
    cluster: &Cluster,
    stack: &Stack,
    color: Option<Color>,
    wait: Option<Duration>,
) -> Result<SwarmHealthReport> {
    let started = Instant::now();
    loop {
        let state = observe(cluster, stack).await?;
        let color = color.or(state.active()).ok_or_else(|| {
            Error::State(format!("nothing of {} is active: name a color", stack.name))
        })?;
        let mut problems = problems(&state, color);
        let port = proxy::probe_port(&state.listeners(color));
        let proxies = match port {
            Some(port) if state.active() == Some(color) => {
                proxy::probe_nodes(&state.nodes, port).await
            }
            _ => Vec::new(),
        };
        let generation = state.proxy.as_ref().map(|p| p.generation);
        for probe in &proxies {
            if !probe.serves(color, generation) {
                problems.push(format!(
                    "the proxy on {} ({}:{}) does not serve {color} at generation {}: it answered {:?} {:?} {:?}",
                    probe.node,
                    probe.addr,
                    port.unwrap_or_default(),
                    generation.unwrap_or_default(),
                    probe.status,
                    probe.color,
                    probe.generation
                ));
            }
        }
        let done = problems.is_empty() || wait.is_none_or(|w| started.elapsed() >= w);
        if done {
            return Ok(SwarmHealthReport {
                orchestrator: Orchestrator::Swarm,
                color,
                healthy: problems.is_empty(),
                services: state.services(color).to_vec(),
                proxies,
                problems,
                elapsed_ms: millis(started.elapsed()),
            });
        }
        if crate::signals::interrupted() {
            return Err(Error::Interrupted(
                "interrupted while waiting for health".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How a switch or rollback runs.
#[derive(Debug, Clone)]
pub struct SwarmSwitchOptions {
    /// The color to switch to (None: the standby; for a resume, the journal's).
    pub to: Option<Color>,
    /// Hand a singleton over even when the node of the old one cannot confirm its stop.
    pub force: bool,
    /// Finish an interrupted switch.
    pub resume: bool,
    /// How long services may take to run.
    pub health_deadline: Duration,
    /// How long an old singleton may take to stop before its node confirms it.
    pub stop_timeout: Duration,
}

/// A singleton's handover.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwarmHandover {
    /// The compose service.
    pub service: String,
    /// Where the old copy ran.
    pub old_nodes: Vec<String>,
    /// Nodes that never confirmed the old copy's stop (only with --force).
    pub unconfirmed: Vec<String>,
    /// From the old copy's stop to its node's report that it finished, in ms.
    pub stop_ms: f64,
    /// From the old copy's confirmed stop to the new one running, in ms.
    pub gap_ms: f64,
    /// Where the new copy runs.
    pub new_node: Option<String>,
}

/// `ztd-switch` / `ztd-rollback --orchestrator swarm`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwarmSwitchReport {
    /// Always swarm.
    pub orchestrator: Orchestrator,
    /// The color that was active.
    pub from: Option<Color>,
    /// The color asked for.
    pub to: Color,
    /// switched, already-active, refused (nothing changed), undone (back on the old color) or
    /// failed (nothing was active before).
    pub outcome: &'static str,
    /// Why it was refused or undone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether --force let a handover go on without a node's confirmation.
    pub forced: bool,
    /// How long each step took, in ms: ready (the new color running), proxy (every node's
    /// proxy moved and confirmed), handovers, stop_old (the old color scaled to zero).
    pub steps_ms: BTreeMap<&'static str, f64>,
    /// Each node's proxy, confirmed on the new generation.
    pub proxy: Vec<NodeConfirmation>,
    /// Nodes whose proxy was not updated (not ready): they serve what they served.
    pub unreachable_nodes: Vec<String>,
    /// Each singleton's handover.
    pub handovers: Vec<SwarmHandover>,
    /// The old color's services scaled to zero (kept for a rollback).
    pub stopped: Vec<String>,
    /// Wall time.
    pub elapsed_ms: f64,
}

impl Outcome for SwarmSwitchReport {
    fn status(&self) -> ExitStatus {
        match self.outcome {
            "switched" | "already-active" => ExitStatus::Success,
            _ => ExitStatus::Negative,
        }
    }
}

impl SwarmSwitchReport {
    /// A few lines for a person at a terminal.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{} → {}: {} in {:.0} ms\n",
            self.from.map_or("none", Color::as_str),
            self.to,
            self.outcome,
            self.elapsed_ms
        );
        if let Some(reason) = &self.reason {
            out.push_str(&format!("  {reason}\n"));
        }
        out
    }
}

/// Why a convergence stopped.
enum Stop {
    /// A singleton's old copy could not be confirmed stopped: nothing more may start.
    Refused(String),
    /// Anything else.
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(err: Error) -> Self {
        Stop::Failed(err)
    }
}

impl Stop {
    fn message(&self) -> String {
        match self {
            Stop::Refused(why) => why.clone(),
            Stop::Failed(err) => err.message().to_string(),
        }
    }
}

/// What a convergence did.
#[derive(Default)]
struct Progress {
    steps: BTreeMap<&'static str, f64>,
    proxy: Vec<NodeConfirmation>,
    unreachable: Vec<String>,
    handovers: Vec<SwarmHandover>,
    stopped: Vec<String>,
    forced: bool,
}

/// The nodes a set of tasks runs on that the managers do not hear from.
fn unready_nodes<'a>(tasks: impl Iterator<Item = &'a TaskView>, nodes: &[NodeView]) -> Vec<String> {
    let mut out: BTreeSet<String> = BTreeSet::new();
    for task in tasks {
        let ready = nodes.iter().any(|n| n.id == task.node_id && n.is_ready());
        if !ready && !task.node_id.is_empty() {
            out.insert(task.node.clone());
        }
    }
    out.into_iter().collect()
}

/// Switch (or roll back) to a color.
pub async fn switch(
    cluster: &Cluster,
    stack: &Stack,
    tool: &str,
    options: &SwarmSwitchOptions,
) -> Result<SwarmSwitchReport> {
    let started = Instant::now();
    locked(cluster, stack, tool, async |held| {
        let state = observe(cluster, stack).await?;
        let from = state.active();
        let resuming = options.resume || tool == "ztd-rollback";
        if state.lock.journal.is_some() && !resuming {
            return Err(Error::Incomplete(format!(
                "a switch of {} was interrupted: ztd-switch --resume or ztd-rollback",
                stack.name
            )));
        }
        let to = match (options.to, state.journal_to()) {
            (Some(to), _) => to,
            (None, Some(journaled)) if options.resume => journaled,
            (None, Some(journaled)) if state.undoing() => {
                // A failed switch that was being undone stays undone: its undo is finished.
                journaled
            }
            (None, Some(_)) => {
                // A rollback of an interrupted switch goes back where it came from.
                let journal = state.lock.journal.as_ref();
                journal
                    .and_then(|j| j.get("from"))
                    .and_then(Value::as_str)
                    .and_then(|c| crate::cli::color_arg(c).ok())
                    .ok_or_else(|| Error::State("the journal names no color to go back to".into()))?
            }
            (None, None) if options.resume => {
                return Err(Error::State(format!(
                    "no switch of {} is in progress: nothing to resume",
                    stack.name
                )));
            }
            (None, None) => state.standby().ok_or_else(|| {
                Error::State(format!("{} has no standby color to switch to", stack.name))
            })?,
        };
        let report = |outcome, reason, progress: Progress| SwarmSwitchReport {
            orchestrator: Orchestrator::Swarm,
            from,
            to,
            outcome,
            reason,
            forced: progress.forced,
            steps_ms: progress.steps,
            proxy: progress.proxy,
            unreachable_nodes: progress.unreachable,
            handovers: progress.handovers,
            stopped: progress.stopped,
            elapsed_ms: millis(started.elapsed()),
        };
        if state.services(to).is_empty() {
            return Err(Error::State(format!("nothing of {to} is deployed in {}", stack.name)));
        }
        let settled = state.lock.journal.is_none()
            && from == Some(to)
            && state.services(to.other()).iter().all(|s| s.running == 0);
        if settled {
            return Ok(report("already-active", None, Progress::default()));
        }
        // The fence is checked before anything changes: an old singleton on a node the
        // managers do not hear from cannot be confirmed stopped.
        if !options.force {
            for old in state.services(to.other()).iter().filter(|s| s.is_singleton()) {
                let unready = unready_nodes(old.live_tasks(), &state.nodes);
                if !unready.is_empty() {
                    let why = format!(
                        "the old {} runs on {}, which the managers do not hear from: its stop cannot be confirmed, so the new one would risk running twice; nothing was changed (--force to hand over anyway)",
                        old.name,
                        unready.join(", ")
                    );
                    return Ok(report("refused", Some(why), Progress::default()));
                }
            }
        }
        // What every service was before: Swarm's version and replicas of each, for the record
        // (the undo converges back onto the old color, which restores exactly these).
        let before: Vec<Value> = state
            .colors
            .values()
            .flatten()
            .map(|s| json!({ "service": s.service, "version": s.version, "replicas": s.replicas }))
            .collect();
        let journal = json!({
            "tool": tool, "from": to.other(), "to": to, "phase": "switching",
            "started_unix_ms": chrono::Utc::now().timestamp_millis(),
            "proxy_generation": state.proxy.as_ref().map(|p| p.generation),
            "before": before,
        });
        held.set_journal(cluster, Some(&journal)).await?;
        let generation = state.proxy.as_ref().map_or(0, |p| p.generation) + 1;
        let mut progress = Progress::default();
        match converge(cluster, stack, to, generation, options, &mut progress).await {
            Ok(()) => {
                held.set_journal(cluster, None).await?;
                Ok(report("switched", None, progress))
            }
            Err(stop) if from != Some(to.other()) => {
                // Nothing served before: there is nothing to go back to.
                let why = stop.message();
                held.set_journal(cluster, None).await?;
                Ok(report("failed", Some(why), progress))
            }
            Err(stop) => {
                let why = stop.message();
                crate::warn!("switch to {to} failed: {why}; going back to {}", to.other());
                let undo = json!({
                    "tool": tool, "from": to, "to": to.other(), "phase": "undoing",
                    "reason": why,
                });
                held.set_journal(cluster, Some(&undo)).await?;
                crate::fault::point("swarm:undo");
                let mut back = Progress::default();
                let back_options = SwarmSwitchOptions {
                    force: false,
                    ..options.clone()
                };
                match converge(cluster, stack, to.other(), generation + 1, &back_options, &mut back)
                    .await
                {
                    Ok(()) => {
                        held.set_journal(cluster, None).await?;
                        progress.proxy = back.proxy;
                        Ok(report("undone", Some(why), progress))
                    }
                    Err(again) => Err(Error::Incomplete(format!(
                        "switch to {to} failed ({why}) and going back to {} did not finish: {}; the journal is kept: ztd-switch --resume (after fixing the cause) or ztd-rollback",
                        to.other(),
                        again.message()
                    ))),
                }
            }
        }
    })
    .await
}

/// Bring the cluster to `to` active, step by step, each step idempotent: `to`'s services at
/// their replicas and running; every node's proxy on `to`; each singleton fenced (the other
/// color's copy stopped and its node's confirmation seen) before `to`'s starts; the other
/// color's services scaled to zero.
async fn converge(
    cluster: &Cluster,
    stack: &Stack,
    to: Color,
    generation: u64,
    options: &SwarmSwitchOptions,
    progress: &mut Progress,
) -> std::result::Result<(), Stop> {
    let mut step = Instant::now();
    let mut lap = |name, progress: &mut Progress| {
        progress.steps.insert(name, millis(step.elapsed()));
        step = Instant::now();
    };
    let state = observe(cluster, stack).await?;
    for service in state.services(to).iter().filter(|s| !s.is_singleton()) {
        if service.replicas == Some(0) && service.runs_with > 0 {
            crate::fault::point("swarm:scale_up");
            cluster
                .scale(&service.service, service.runs_with, None)
                .await?;
        }
    }
    wait_running(cluster, stack, to, false, options.health_deadline).await?;
    lap("ready", progress);
    crate::fault::point("swarm:proxy");
    let listeners = state.listeners(to);
    progress.unreachable = state
        .nodes
        .iter()
        .filter(|n| !n.is_ready())
        .map(|n| n.hostname.clone())
        .collect();
    progress.proxy = proxy::point_to(cluster, stack, to, generation, &listeners).await?;
    lap("proxy", progress);
    for new in state.services(to).iter().filter(|s| s.is_singleton()) {
        crate::fault::point("swarm:handover");
        let handover = hand_over(cluster, stack, to, new, options, &mut progress.forced).await?;
        progress.handovers.push(handover);
    }
    lap("handovers", progress);
    crate::fault::point("swarm:stop_old");
    for old in state
        .services(to.other())
        .iter()
        .filter(|s| !s.is_singleton())
    {
        if old.replicas != Some(0) {
            cluster
                .scale(&old.service, 0, Some(old.replicas.unwrap_or(old.runs_with)))
                .await?;
            progress.stopped.push(old.service.clone());
        }
    }
    lap("stop_old", progress);
    Ok(())
}

/// Wait until every service of `color` runs its replicas (singletons too, with `singletons`).
async fn wait_running(
    cluster: &Cluster,
    stack: &Stack,
    color: Color,
    singletons: bool,
    deadline: Duration,
) -> Result<()> {
    let started = Instant::now();
    loop {
        let state = observe(cluster, stack).await?;
        let missing: Vec<String> = state
            .services(color)
            .iter()
            .filter(|s| singletons || !s.is_singleton())
            .filter(|s| !s.is_satisfied())
            .map(|s| format!("{} {}/{}", s.name, s.running, s.replicas.unwrap_or(1)))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if started.elapsed() > deadline {
            return Err(Error::Engine(format!(
                "{color} does not run within {}s: {}",
                deadline.as_secs(),
                missing.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Hand a singleton over to `to`: stop the other color's copy, wait until every node that ran
/// it reports it finished (a node the managers do not hear from refuses, unless --force), and
/// only then start `to`'s.
async fn hand_over(
    cluster: &Cluster,
    stack: &Stack,
    to: Color,
    new: &ServiceView,
    options: &SwarmSwitchOptions,
    forced: &mut bool,
) -> std::result::Result<SwarmHandover, Stop> {
    let old_name = service_name(stack, to.other(), &new.name);
    let mut handover = SwarmHandover {
        service: new.name.clone(),
        old_nodes: Vec::new(),
        unconfirmed: Vec::new(),
        stop_ms: 0.0,
        gap_ms: 0.0,
        new_node: None,
    };
    let nodes = cluster.nodes().await?;
    // The new copy goes where the old one ran (its node-local volumes are there), when that
    // node is ready.
    let mut pin = None;
    let mut old_tasks = Vec::new();
    let old_exists = if let Some(old) = cluster.service(&old_name).await? {
        old_tasks = cluster.tasks(&old_name, &nodes).await?;
        handover.old_nodes = old_tasks
            .iter()
            .filter(|t| !t.is_finished())
            .map(|t| t.node.clone())
            .collect();
        // Where it runs, else (it stopped already: a resumed handover) where it was pinned.
        pin = old_tasks
            .iter()
            .filter(|t| !t.is_finished())
            .map(|t| t.node_id.clone())
            .next()
            .or_else(|| {
                old.spec
                    .as_ref()
                    .and_then(|s| spec_label(s, crate::swarm::LABEL_PINNED))
                    .map(str::to_string)
            });
        cluster.scale(&old_name, 0, Some(1)).await?;
        true
    } else {
        false
    };
    let started = Instant::now();
    let stopped_on_node = stop_on_nodes(cluster, &old_tasks, &nodes, options.stop_timeout).await;
    // The new copy's own earlier tasks count too: none may still run anywhere. Which of the
    // two services exist is asked once; each poll asks only for their tasks.
    let mut watched = Vec::new();
    if old_exists {
        watched.push(&old_name);
    }
    if cluster.service(&new.service).await?.is_some() {
        watched.push(&new.service);
    }
    let limit = options.stop_timeout + Duration::from_secs(10);
    loop {
        let nodes = cluster.nodes().await?;
        let mut live = Vec::new();
        for name in &watched {
            live.extend(
                cluster
                    .tasks(name, &nodes)
                    .await?
                    .into_iter()
                    // The new copy's wanted task is the one being started, not an old one.
                    .filter(|t| !(t.is_finished() || *name == &new.service && t.is_wanted()))
                    .filter(|t| !stopped_on_node.contains(&t.id)),
            );
        }
        if live.is_empty() {
            break;
        }
        let unready = unready_nodes(live.iter(), &nodes);
        if !unready.is_empty() {
            if options.force {
                *forced = true;
                crate::warn!(
                    "--force: handing {} over without {}'s confirmation that the old copy stopped",
                    new.name,
                    unready.join(", ")
                );
                handover.unconfirmed = unready;
                break;
            }
            return Err(Stop::Refused(format!(
                "the old {} ran on {}, which the managers no longer hear from: its stop cannot be confirmed; {} stays stopped until that node answers (then ztd-switch --resume), or --force",
                new.name,
                unready.join(", "),
                new.name
            )));
        }
        if started.elapsed() > limit {
            return Err(Stop::Refused(format!(
                "the old {} was not reported stopped within {}s",
                new.name,
                limit.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handover.stop_ms = millis(started.elapsed());
    let gap_started = Instant::now();
    crate::fault::point("swarm:handover_start");
    if new.replicas != Some(1) {
        let nodes = cluster.nodes().await?;
        let usable = |id: &str| {
            nodes
                .iter()
                .any(|n| n.id == id && n.is_ready() && n.availability == "active")
        };
        let node = pin
            .filter(|id| usable(id))
            .or_else(|| {
                nodes
                    .iter()
                    .find(|n| n.is_ready() && n.availability == "active")
                    .map(|n| n.id.clone())
            })
            .ok_or_else(|| Error::State("no ready node can run the singleton".into()))?;
        cluster.run_pinned(&new.service, &node).await?;
    }
    let deadline = options.health_deadline;
    loop {
        let nodes = cluster.nodes().await?;
        let tasks = cluster.tasks(&new.service, &nodes).await?;
        if let Some(task) = tasks.iter().find(|t| t.is_running() && t.is_wanted()) {
            handover.new_node = Some(task.node.clone());
            break;
        }
        if gap_started.elapsed() > deadline {
            return Err(Stop::Failed(Error::Engine(format!(
                "the new {} does not run within {}s",
                new.name,
                deadline.as_secs()
            ))));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handover.gap_ms = millis(gap_started.elapsed());
    Ok(handover)
}

/// Stop the live tasks' containers of a service scaled to zero (its `tasks`, as read before)
/// through their nodes' own engines, and return the tasks whose node said their container has
/// stopped. Swarm alone
/// waits about 3 s before it stops a task on an overlay network (for the network's gossip to
/// forget it), which a singleton, reached by nobody, need not wait; the answer of the node's
/// engine is the node's own report. A node ztd cannot reach is left to Swarm's report.
async fn stop_on_nodes(
    cluster: &Cluster,
    tasks: &[TaskView],
    nodes: &[NodeView],
    grace: Duration,
) -> BTreeSet<String> {
    use crate::engine::Engine as _;
    let mut stopped = BTreeSet::new();
    for task in tasks.iter().filter(|t| !t.is_finished()) {
        let (Some(container), Some(node)) = (
            &task.container,
            nodes.iter().find(|n| n.id == task.node_id && n.is_ready()),
        ) else {
            continue;
        };
        let Ok(engine) = cluster.node_engine(node).await else {
            continue;
        };
        if engine.stop(container, grace).await.is_err() {
            continue;
        }
        if engine
            .inspect(container)
            .await
            .is_ok_and(|c| !c.state.is_up())
        {
            stopped.insert(task.id.clone());
        }
    }
    stopped
}

/// `ztd-rollback --orchestrator swarm --break-lock`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BrokenLock {
    /// Always swarm.
    pub orchestrator: Orchestrator,
    /// Who held it.
    pub was_held_by: Option<Holder>,
}

impl Outcome for BrokenLock {
    fn status(&self) -> ExitStatus {
        ExitStatus::Success
    }
}

impl BrokenLock {
    /// A few lines for a person at a terminal.
    pub fn summary(&self) -> String {
        match &self.was_held_by {
            Some(h) => format!("broke the lock of {}\n", h.describe()),
            None => "the lock was free\n".into(),
        }
    }
}

/// Break the cluster lock.
pub async fn break_lock(cluster: &Cluster, stack: &Stack) -> Result<BrokenLock> {
    let was = lock::break_lock(cluster, stack).await?;
    if let Some(holder) = &was {
        crate::warn!("broke the cluster lock of {}", holder.describe());
    }
    Ok(BrokenLock {
        orchestrator: Orchestrator::Swarm,
        was_held_by: was,
    })
}

/// One change seen by `ztd-monitor --orchestrator swarm`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskEvent {
    /// When, in ms from the start of the window.
    pub at_ms: f64,
    /// The compose service.
    pub service: String,
    /// The task.
    pub task: String,
    /// Its node.
    pub node: String,
    /// Its new state.
    pub state: String,
    /// Its error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `ztd-monitor --orchestrator swarm`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwarmMonitorReport {
    /// Always swarm.
    pub orchestrator: Orchestrator,
    /// The color watched.
    pub color: Color,
    /// How long it was watched, in ms.
    pub window_ms: f64,
    /// Whether a task failed or was replaced while watched.
    pub tripped: bool,
    /// What changed.
    pub events: Vec<TaskEvent>,
}

impl Outcome for SwarmMonitorReport {
    fn status(&self) -> ExitStatus {
        if self.tripped {
            ExitStatus::Negative
        } else {
            ExitStatus::Success
        }
    }
}

impl SwarmMonitorReport {
    /// A few lines for a person at a terminal.
    pub fn summary(&self) -> String {
        format!(
            "watched {} for {:.1} s: {}\n",
            self.color,
            self.window_ms / 1000.0,
            if self.tripped { "tripped" } else { "clean" }
        )
    }
}

/// Watch a color's tasks (every node's, as the managers hear them) for `window`: a task that
/// fails, is rejected or is replaced trips the watch.
pub async fn monitor(
    cluster: &Cluster,
    stack: &Stack,
    color: Option<Color>,
    window: Duration,
) -> Result<SwarmMonitorReport> {
    let started = Instant::now();
    let first = observe(cluster, stack).await?;
    let color = color.or(first.active()).ok_or_else(|| {
        Error::State(format!("nothing of {} is active: name a color", stack.name))
    })?;
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for s in first.services(color) {
        for t in &s.tasks {
            seen.insert(t.id.clone(), t.state.clone());
        }
    }
    let mut events = Vec::new();
    let mut tripped = false;
    while started.elapsed() < window && !tripped {
        if crate::signals::interrupted() {
            return Err(Error::Interrupted("interrupted while monitoring".into()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let state = observe(cluster, stack).await?;
        for s in state.services(color) {
            for t in &s.tasks {
                if seen.get(&t.id) == Some(&t.state) {
                    continue;
                }
                let replaced = !seen.contains_key(&t.id);
                seen.insert(t.id.clone(), t.state.clone());
                let bad = matches!(t.state.as_str(), "failed" | "rejected")
                    || (replaced && t.is_wanted() && s.replicas != Some(0));
                tripped |= bad;
                let event = TaskEvent {
                    at_ms: millis(started.elapsed()),
                    service: s.name.clone(),
                    task: t.id.clone(),
                    node: t.node.clone(),
                    state: t.state.clone(),
                    error: t.error.clone(),
                };
                crate::output::print_text(&crate::report::json_line(&event));
                events.push(event);
            }
        }
    }
    Ok(SwarmMonitorReport {
        orchestrator: Orchestrator::Swarm,
        color,
        window_ms: millis(started.elapsed()),
        tripped,
        events,
    })
}

/// Each report's summary is what a person at a terminal sees.
macro_rules! human_reports {
    ($($body:ty),*) => {
        $(impl Human for Report<$body> {
            fn human(&self) -> String {
                self.body.summary()
            }
        })*
    };
}

human_reports!(
    SwarmDetection,
    SwarmUpReport,
    SwarmHealthReport,
    SwarmSwitchReport,
    BrokenLock,
    SwarmMonitorReport
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_image_that_names_a_registry_is_resolved() {
        assert!(names_registry("registry.example.com/app:1"));
        assert!(names_registry("localhost:5000/app"));
        assert!(!names_registry("ztd-testapp:latest"));
        assert!(!names_registry("library/nginx"));
    }

    fn task(id: &str, node: &str, state: &str) -> TaskView {
        TaskView {
            id: id.into(),
            node: node.into(),
            node_id: node.into(),
            state: state.into(),
            desired: "running".into(),
            error: None,
            container: None,
            since: None,
        }
    }

    #[test]
    fn a_task_on_a_node_the_managers_do_not_hear_from_is_named() {
        let nodes = vec![
            NodeView {
                id: "n1".into(),
                hostname: "n1".into(),
                addr: String::new(),
                state: "ready".into(),
                availability: "active".into(),
                role: "manager".into(),
                leader: true,
                engine: None,
                edge: false,
                current: true,
            },
            NodeView {
                id: "n2".into(),
                hostname: "n2".into(),
                addr: String::new(),
                state: "down".into(),
                availability: "active".into(),
                role: "manager".into(),
                leader: false,
                engine: None,
                edge: false,
                current: false,
            },
        ];
        let tasks = [task("a", "n1", "running"), task("b", "n2", "running")];
        assert_eq!(unready_nodes(tasks.iter(), &nodes), vec!["n2".to_string()]);
        assert!(unready_nodes(tasks[..1].iter(), &nodes).is_empty());
    }
}
