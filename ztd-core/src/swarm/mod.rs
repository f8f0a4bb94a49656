//! Docker Swarm as the orchestrator (`--orchestrator swarm`): the same tools drive a cluster
//! through one of its managers. Swarm is the cluster (consensus, membership, scheduling); ztd
//! adds what it lacks: colors as stacks behind a front proxy that never moves a port, a
//! stack-wide switch with ztd's own undo, a fenced singleton handover and a cluster-wide lock.
//!
//! This file holds the names ztd gives Swarm objects and the cluster client; `render` turns the
//! Compose model into a color's stack file, `proxy` keeps every node's proxy task in step,
//! `lock` is the compare-and-swap lock, `ops` the six tools' operations.

pub mod lock;
pub mod ops;
pub mod proxy;
pub mod render;
pub mod tools;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::models::{LocalNodeState, Node, NodeState, Service, ServiceSpec, Task, TaskState};
use bollard::query_parameters::{
    InspectServiceOptions, ListNodesOptions, ListServicesOptions, ListTasksOptions,
    UpdateServiceOptions,
};
use serde::Serialize;

use crate::docker::DockerEngine;
use crate::endpoint::{Endpoint, Source};
use crate::error::{Error, Result};
use crate::stack::{Color, Stack};

/// Where a stack runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Orchestrator {
    /// Docker Compose on the engine `docker` talks to.
    #[default]
    Compose,
    /// A Docker Swarm cluster, through the manager `docker` talks to.
    Swarm,
}

/// `--orchestrator` and `ZTD_ORCHESTRATOR`.
pub fn orchestrator_arg(text: &str) -> std::result::Result<Orchestrator, String> {
    match text.trim() {
        "compose" => Ok(Orchestrator::Compose),
        "swarm" => Ok(Orchestrator::Swarm),
        other => Err(format!(
            "unknown orchestrator \"{other}\" (expected compose or swarm)"
        )),
    }
}

/// The service label naming the stack a ztd Swarm object belongs to.
pub const LABEL_PROJECT: &str = "ztd.swarm.project";
/// The color of a rendered service.
pub const LABEL_COLOR: &str = "ztd.swarm.color";
/// The service's name in the compose file.
pub const LABEL_SERVICE: &str = "ztd.swarm.service";
/// The service's `ztd.switch` mode.
pub const LABEL_SWITCH: &str = "ztd.swarm.switch";
/// The ports the proxy publishes for it: `published:target/protocol`, comma-separated.
pub const LABEL_PUBLISH: &str = "ztd.swarm.publish";
/// How many replicas it runs with when its color runs (kept while a switch scales it to 0).
pub const LABEL_REPLICAS: &str = "ztd.swarm.replicas";
/// The node ztd pinned a handover singleton to (its `node.id==` placement constraint), so that
/// Swarm never starts a second copy elsewhere when that node goes quiet.
pub const LABEL_PINNED: &str = "ztd.swarm.pinned";
/// What a ztd-made service is for: `proxy` or `lock`.
pub const LABEL_ROLE: &str = "ztd.swarm.role";
/// The node label giving the address of that node's engine, for the proxy's config updates.
pub const NODE_ENGINE_LABEL: &str = "ztd.engine";
/// The node label (`true`) of the nodes that publish the stack's ports; none labelled: all do.
pub const NODE_EDGE_LABEL: &str = "ztd.edge";

/// The overlay network of a color; the proxy is attached to both from its creation, so a
/// switch never changes the proxy's networks (which would restart its tasks).
pub fn color_network(stack: &Stack, color: Color) -> String {
    format!("{}-ztd-{color}", stack.name)
}

/// The Swarm stack of a color.
pub fn color_stack(stack: &Stack, color: Color) -> String {
    stack.color_project(color)
}

/// The Swarm service of a compose service in a color.
pub fn service_name(stack: &Stack, color: Color, service: &str) -> String {
    format!("{}_{service}", color_stack(stack, color))
}

/// A node, as ztd reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeView {
    /// Swarm's node ID.
    pub id: String,
    /// Its hostname.
    pub hostname: String,
    /// The address its engine advertises.
    pub addr: String,
    /// ready, down, unknown or disconnected, as the managers see it.
    pub state: String,
    /// active, pause or drain.
    pub availability: String,
    /// manager or worker.
    pub role: String,
    /// Whether it leads the Raft group.
    pub leader: bool,
    /// Its engine's address for ztd (node label `ztd.engine`), if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Whether it is labelled `ztd.edge=true` (publishes the stack's ports).
    pub edge: bool,
    /// Whether it is the manager ztd talks to.
    pub current: bool,
}

/// The nodes that run the front proxy: those labelled `ztd.edge=true`, else every node.
pub fn proxy_nodes(nodes: &[NodeView]) -> Vec<&NodeView> {
    let edge = nodes.iter().any(|n| n.edge);
    nodes.iter().filter(|n| !edge || n.edge).collect()
}

impl NodeView {
    /// Whether the managers hear from it.
    pub fn is_ready(&self) -> bool {
        self.state == "ready"
    }
}

/// A task, as ztd reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskView {
    /// Swarm's task ID.
    pub id: String,
    /// The hostname of its node (its ID when the node is gone).
    pub node: String,
    /// Its node's ID.
    #[serde(skip)]
    pub node_id: String,
    /// Its state as last reported by its node (running, shutdown, failed, …).
    pub state: String,
    /// The state the managers want it in.
    pub desired: String,
    /// Why it failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its container on its node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// When its state last changed (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

impl TaskView {
    /// Whether the task runs (and, with a HEALTHCHECK, passed it: Swarm reports `running`
    /// only then).
    pub fn is_running(&self) -> bool {
        self.state == "running"
    }
    /// Whether its node reported it finished: it no longer runs anywhere.
    pub fn is_finished(&self) -> bool {
        matches!(
            self.state.as_str(),
            "complete" | "shutdown" | "failed" | "rejected" | "remove" | "orphaned"
        )
    }
    /// Whether the managers still want it to run.
    pub fn is_wanted(&self) -> bool {
        self.desired == "running" || self.desired == "ready"
    }
}

/// A cluster reached through one manager.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The manager's engine.
    pub engine: DockerEngine,
    /// The manager's own node ID.
    pub node_id: String,
}

fn task_state(state: Option<TaskState>) -> String {
    state.map_or_else(|| "unknown".to_string(), |s| s.to_string())
}

fn node_view(node: Node, current: &str) -> NodeView {
    let id = node.id.unwrap_or_default();
    let spec = node.spec.unwrap_or_default();
    let status = node.status.unwrap_or_default();
    NodeView {
        current: id == current,
        hostname: node
            .description
            .and_then(|d| d.hostname)
            .unwrap_or_else(|| id.clone()),
        // A manager may advertise 0.0.0.0 here; its Raft address names it then.
        addr: match status.addr.as_deref() {
            Some(addr) if !addr.is_empty() && addr != "0.0.0.0" => addr.to_string(),
            _ => node
                .manager_status
                .as_ref()
                .and_then(|m| m.addr.as_deref())
                .and_then(|a| a.rsplit_once(':').map(|(host, _)| host.to_string()))
                .unwrap_or_default(),
        },
        state: status.state.unwrap_or(NodeState::UNKNOWN).to_string(),
        availability: spec.availability.map(|a| a.to_string()).unwrap_or_default(),
        role: spec.role.map(|r| r.to_string()).unwrap_or_default(),
        leader: node.manager_status.and_then(|m| m.leader).unwrap_or(false),
        edge: spec
            .labels
            .as_ref()
            .and_then(|l| l.get(NODE_EDGE_LABEL))
            .is_some_and(|v| v == "true"),
        engine: spec
            .labels
            .and_then(|l| l.get(NODE_ENGINE_LABEL).cloned())
            .filter(|e| !e.is_empty()),
        id,
    }
}

/// The replicas a service's spec asks for (None: global).
pub fn spec_replicas(spec: &ServiceSpec) -> Option<i64> {
    let mode = spec.mode.as_ref()?;
    if mode.global.is_some() {
        return None;
    }
    Some(
        mode.replicated
            .as_ref()
            .and_then(|r| r.replicas)
            .unwrap_or(1),
    )
}

/// A label of a service's spec.
pub fn spec_label<'a>(spec: &'a ServiceSpec, key: &str) -> Option<&'a str> {
    spec.labels.as_ref()?.get(key).map(String::as_str)
}

/// Whether an engine error is Swarm's refusal of an update made from a stale version.
pub fn out_of_sequence(err: &bollard::errors::Error) -> bool {
    err.to_string().contains("out of sequence")
}

impl Cluster {
    /// Connect to the manager `docker` would talk to; a node that is not a manager of an
    /// active swarm is refused (exit 5), naming what to do.
    pub async fn connect() -> Result<Cluster> {
        let engine = DockerEngine::connect().await?;
        Cluster::on(engine).await
    }

    /// The cluster of an engine already connected.
    pub async fn on(engine: DockerEngine) -> Result<Cluster> {
        let info = engine.swarm_call("info", engine.client().info()).await?;
        let swarm = info.swarm.unwrap_or_default();
        let active = swarm.local_node_state == Some(LocalNodeState::ACTIVE);
        if !active || swarm.control_available != Some(true) {
            return Err(Error::State(format!(
                "the Docker engine at {} is not a manager of an active swarm (--orchestrator swarm): point DOCKER_HOST or the context at a manager, or use --orchestrator compose",
                engine.host()
            )));
        }
        Ok(Cluster {
            node_id: swarm.node_id.unwrap_or_default(),
            engine,
        })
    }

    /// Every node of the cluster, by hostname.
    pub async fn nodes(&self) -> Result<Vec<NodeView>> {
        let docker = self.engine.client();
        let nodes = self
            .engine
            .swarm_call("list nodes", docker.list_nodes(None::<ListNodesOptions>))
            .await?;
        let mut views: Vec<NodeView> = nodes
            .into_iter()
            .map(|n| node_view(n, &self.node_id))
            .collect();
        views.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        Ok(views)
    }

    /// The services carrying `label=value`, by name.
    pub async fn services_labelled(&self, label: &str, value: &str) -> Result<Vec<Service>> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{label}={value}")])]);
        let options = ListServicesOptions {
            filters: Some(filters),
            ..Default::default()
        };
        let docker = self.engine.client();
        let mut services = self
            .engine
            .swarm_call("list services", docker.list_services(Some(options)))
            .await?;
        services.sort_by_key(service_spec_name);
        Ok(services)
    }

    /// One service by name, if it exists.
    pub async fn service(&self, name: &str) -> Result<Option<Service>> {
        let docker = self.engine.client();
        let answer = self
            .engine
            .swarm_request(
                &format!("inspect service {name}"),
                docker.inspect_service(name, None::<InspectServiceOptions>),
            )
            .await?;
        match answer {
            Ok(service) => Ok(Some(service)),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// The tasks of a service (every one Swarm still keeps), newest first.
    pub async fn tasks(&self, service: &str, nodes: &[NodeView]) -> Result<Vec<TaskView>> {
        let filters = HashMap::from([("service".to_string(), vec![service.to_string()])]);
        let docker = self.engine.client();
        let tasks: Vec<Task> = self
            .engine
            .swarm_call(
                &format!("list the tasks of {service}"),
                docker.list_tasks(Some(ListTasksOptions {
                    filters: Some(filters),
                })),
            )
            .await?;
        let hostnames: BTreeMap<&str, &str> = nodes
            .iter()
            .map(|n| (n.id.as_str(), n.hostname.as_str()))
            .collect();
        let mut views: Vec<(String, TaskView)> = tasks
            .into_iter()
            .map(|task| {
                let status = task.status.unwrap_or_default();
                let node_id = task.node_id.unwrap_or_default();
                let since = status.timestamp.map(|t| t.to_string());
                let view = TaskView {
                    id: task.id.unwrap_or_default(),
                    node: hostnames
                        .get(node_id.as_str())
                        .map_or_else(|| node_id.clone(), |h| h.to_string()),
                    node_id,
                    state: task_state(status.state),
                    desired: task_state(task.desired_state),
                    error: status.err.filter(|e| !e.is_empty()),
                    container: status.container_status.and_then(|c| c.container_id),
                    since: since.clone(),
                };
                (since.unwrap_or_default(), view)
            })
            .collect();
        views.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(views.into_iter().map(|(_, v)| v).collect())
    }

    /// Update one of ztd's own services (the proxy, the lock) from what `change` makes of its
    /// current spec, on Swarm's own version (compare-and-swap); a stale version is read again,
    /// a few times. Not for a user's service: bollard's typed spec does not read back every
    /// field (see [`Cluster::scale`]), which ztd's own specs do not use.
    pub async fn update_own_service(
        &self,
        name: &str,
        change: impl Fn(&mut ServiceSpec) -> Result<()>,
    ) -> Result<()> {
        let docker = self.engine.client();
        for _ in 0..5 {
            let service = self
                .service(name)
                .await?
                .ok_or_else(|| Error::NotFound(format!("no service {name} in the swarm")))?;
            let version = service
                .version
                .and_then(|v| v.index)
                .ok_or_else(|| Error::Engine(format!("service {name} has no version")))?;
            let mut spec = service.spec.unwrap_or_default();
            change(&mut spec)?;
            let options = UpdateServiceOptions {
                version: i32::try_from(version)
                    .map_err(|_| Error::Engine(format!("service {name}: version {version}")))?,
                ..Default::default()
            };
            let answer = self
                .engine
                .swarm_request(
                    &format!("update service {name}"),
                    docker.update_service(name, spec, options, None),
                )
                .await?;
            match answer {
                Ok(_) => return Ok(()),
                Err(err) if out_of_sequence(&err) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(Error::Engine(format!(
            "service {name} kept changing under ztd's update (update out of sequence)"
        )))
    }

    /// Set a replicated service's replicas; `remember` also records them as the replicas its
    /// color runs with. Done by `docker service update`, which reads and writes the whole spec
    /// losslessly: bollard's typed spec does not read back every field the engine writes (the
    /// engine's `Healthcheck` is bollard's `HealthCheck`), so a typed round trip of a user's
    /// service would drop them.
    pub async fn scale(&self, name: &str, replicas: i64, remember: Option<i64>) -> Result<()> {
        let mut args = vec!["--replicas".to_string(), replicas.to_string()];
        if let Some(kept) = remember {
            args.extend(["--label-add".into(), format!("{LABEL_REPLICAS}={kept}")]);
        }
        self.cli_update(name, &args).await
    }

    /// Run a handover singleton as one task pinned to `node_id`: any pin ztd made before is
    /// replaced, the user's own constraints stay (see [`Cluster::scale`] for why the CLI).
    pub async fn run_pinned(&self, name: &str, node_id: &str) -> Result<()> {
        let service = self
            .service(name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no service {name} in the swarm")))?;
        let spec = service.spec.unwrap_or_default();
        let wanted = format!("node.id=={node_id}");
        let present: Vec<String> = spec
            .task_template
            .as_ref()
            .and_then(|t| t.placement.as_ref())
            .and_then(|p| p.constraints.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.replace(' ', ""))
            .collect();
        let mut args = vec!["--replicas".to_string(), "1".to_string()];
        if let Some(before) = spec_label(&spec, LABEL_PINNED).filter(|b| *b != node_id) {
            args.extend(["--constraint-rm".into(), format!("node.id=={before}")]);
        }
        if !present.contains(&wanted) {
            args.extend(["--constraint-add".into(), wanted]);
        }
        args.extend(["--label-add".into(), format!("{LABEL_PINNED}={node_id}")]);
        self.cli_update(name, &args).await
    }

    /// `docker service update --detach <args> <name>` on the manager ztd talks to; a stale
    /// version (another change came first) is tried again.
    async fn cli_update(&self, name: &str, args: &[String]) -> Result<()> {
        let mut argv: Vec<String> = ["service", "update", "--detach", "--quiet"]
            .map(str::to_string)
            .to_vec();
        argv.extend(args.iter().cloned());
        argv.push(name.to_string());
        for _ in 0..5 {
            let Some(output) = self.docker_cli(&argv, CLI_DEADLINE).await? else {
                return Err(Error::EngineUnreachable(format!(
                    "docker service update {name}: no answer within {}s",
                    CLI_DEADLINE.as_secs()
                )));
            };
            if output.status.success() {
                return Ok(());
            }
            let stderr = String::from_utf8_lossy(&output.stderr);
            if stderr.contains("out of sequence") {
                continue;
            }
            return Err(Error::Engine(format!(
                "docker service update {name} failed: {}",
                crate::error::one_line(stderr.trim())
            )));
        }
        Err(Error::Engine(format!(
            "service {name} kept changing under ztd's update (update out of sequence)"
        )))
    }

    /// Run `docker <argv>` on the manager ztd talks to (its endpoint passed on as to every
    /// child); its output, or None when it did not end within `deadline` (it is killed).
    pub async fn docker_cli(
        &self,
        argv: &[String],
        deadline: Duration,
    ) -> Result<Option<std::process::Output>> {
        let mut command = tokio::process::Command::new("docker");
        command
            .args(argv)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in self.engine.endpoint().child_env() {
            match value {
                Some(v) => command.env(key, v),
                None => command.env_remove(key),
            };
        }
        match tokio::time::timeout(deadline, command.output()).await {
            Err(_) => Ok(None),
            Ok(output) => output
                .map(Some)
                .map_err(|e| Error::Engine(format!("cannot run docker {}: {e}", argv.join(" ")))),
        }
    }

    /// The engine of a node, from its `ztd.engine` label (the manager ztd talks to needs
    /// none), with the same TLS settings as the manager's.
    pub async fn node_engine(&self, node: &NodeView) -> Result<DockerEngine> {
        if node.current && node.engine.is_none() {
            return Ok(self.engine.clone());
        }
        let Some(host) = &node.engine else {
            return Err(Error::State(format!(
                "node {} runs a proxy task but ztd cannot reach its engine: label it with its address, e.g. docker node update --label-add {NODE_ENGINE_LABEL}=tcp://{}:2376 {}",
                node.hostname, node.addr, node.hostname
            )));
        };
        let mut endpoint = self.engine.endpoint().clone();
        endpoint = Endpoint {
            host: host.clone(),
            source: Source::DockerHost,
            tls: endpoint.tls.filter(|_| host.starts_with("tcp://")),
        };
        DockerEngine::connect_within(endpoint, NODE_ENGINE_DEADLINE).await
    }
}

/// How long one `docker service update` may take.
const CLI_DEADLINE: Duration = Duration::from_secs(30);
/// How long a call to a node's own engine may take.
const NODE_ENGINE_DEADLINE: Duration = Duration::from_secs(10);

/// A service's name, from its spec.
pub fn service_spec_name(service: &Service) -> String {
    service
        .spec
        .as_ref()
        .and_then(|s| s.name.clone())
        .unwrap_or_default()
}
