//! Rendering a color: from Compose's resolved model of the user's unchanged compose file to the
//! color's own Compose project (`<name>-<color>`, containers named as `up` chose, the
//! `deployment.*` labels, host ports only for handover services), the shared project, and the
//! front proxy's listeners.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::labels::{self, ProxyProtocol, ServiceSettings, SwitchMode};
use crate::overrides::{self, EnvSettings};
use crate::stack::{Color, Stack};

/// The version and build metadata of one deploy, as the original scripts exported them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    /// `<color>-YYYYmmdd-HHMMSS` in local time.
    pub version: String,
    /// UTC, `YYYY-mm-ddTHH:MM:SSZ`.
    pub build_date: String,
    /// Short git hash of the project directory, or `unknown`.
    pub vcs_ref: String,
}

impl BuildInfo {
    /// Metadata for a deploy of `color` now.
    pub fn now(color: Color, project_dir: &Path) -> BuildInfo {
        let vcs_ref = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .current_dir(project_dir)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".into());
        BuildInfo {
            version: format!("{color}-{}", chrono::Local::now().format("%Y%m%d-%H%M%S")),
            build_date: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            vcs_ref,
        }
    }

    /// The variables given to Compose (for `${VERSION}` in image names) and to builds.
    pub fn variables(&self, color: Color) -> BTreeMap<String, String> {
        [
            ("DEPLOYMENT_COLOR", color.to_string()),
            ("BUILD_DATE", self.build_date.clone()),
            ("VCS_REF", self.vcs_ref.clone()),
            ("VERSION", self.version.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// One host port the front proxy listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// The service it forwards to.
    pub service: String,
    /// The host address it binds (all when `None`).
    pub host_ip: Option<String>,
    /// The published host port.
    pub port: u16,
    /// The container port it forwards to.
    pub target: u16,
    /// HTTP, TCP or UDP.
    pub protocol: ProxyProtocol,
    /// The container it forwards to, as recorded at the deploy (empty in files written before
    /// names were recorded, which meant `<service>-<color>`).
    #[serde(default)]
    pub container: String,
}

/// The container name the original scripts gave a service in a color, `<service>-<color>`,
/// which ztd keeps wherever it is free.
pub fn compatible_container_name(service: &str, color: Color) -> String {
    format!("{service}-{color}")
}

impl Listener {
    /// `container:port` of the color `color` that this listener forwards to (a listener
    /// recorded before names were recorded forwards to the compatible name).
    pub fn upstream(&self, color: Color) -> String {
        if self.container.is_empty() {
            format!(
                "{}:{}",
                compatible_container_name(&self.service, color),
                self.target
            )
        } else {
            format!("{}:{}", self.container, self.target)
        }
    }
}

/// What ztd needs to know of one service of a rendered color.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePlan {
    /// Service name.
    pub name: String,
    /// How it switches.
    pub mode: SwitchMode,
    /// Its container name.
    pub container: String,
    /// Whether it is built from source.
    pub build: bool,
    /// Whether `ztd-up` starts it (handover services without `ztd.activate` wait for the switch).
    pub start_at_up: bool,
    /// The restart policy the user asked for (handover containers are created with `no` until
    /// they take over).
    pub restart: Option<String>,
    /// The names of the networks it joins, in the order of their keys.
    pub networks: Vec<String>,
    /// Host ports a handover service publishes itself (no proxy: closed during its handover).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub direct_ports: Vec<u16>,
}

/// A shared service and the networks (by key, with aliases) it must be reachable on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedAttachment {
    /// Service name.
    pub service: String,
    /// Network key to the aliases it answers to there (its name first).
    pub networks: BTreeMap<String, Vec<String>>,
}

/// A named volume both colors use, created by ztd before either project starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumePlan {
    /// The volume's key in the compose file.
    pub key: String,
    /// Its name on the engine.
    pub name: String,
    /// Its driver, if not the default.
    pub driver: Option<String>,
    /// Driver options.
    pub driver_opts: BTreeMap<String, String>,
}

/// Everything about a rendered color, kept in the rendered file under `x-ztd`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployMeta {
    /// The color.
    pub color: Color,
    /// Its Compose project.
    pub project: String,
    /// Version and build metadata.
    pub build: BuildInfo,
    /// Its services.
    pub services: Vec<ServicePlan>,
    /// The shared services and where they must be reachable.
    pub shared: Vec<SharedAttachment>,
    /// The front proxy's listeners.
    pub listeners: Vec<Listener>,
    /// Network key to network name, for this color.
    pub networks: BTreeMap<String, String>,
    /// The named volumes.
    pub volumes: Vec<VolumePlan>,
}

impl DeployMeta {
    /// The plan of one service.
    pub fn service(&self, name: &str) -> Option<&ServicePlan> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// A rendered color.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The metadata.
    pub meta: DeployMeta,
    /// The color's Compose model (written as `docker-compose.<color>.yml`).
    pub color_model: Value,
    /// The shared project's model, if any service is shared.
    pub shared_model: Option<Value>,
}

/// The header of every rendered file (YAML comments; the rest is JSON, which is YAML).
pub const RENDERED_HEADER: &str = "# Rendered by ztd-up from the project's compose file; do not edit: every deploy rewrites it.\n# It is a complete Compose project, for example: docker compose -f docker-compose.<color>.yml ps\n";

/// What a render takes besides the compose model.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// `ZTD_HANDOVER` and `ZTD_DRAIN_<SERVICE>`.
    pub env: EnvSettings,
    /// The container name chosen for each service; a service not listed gets `<service>-<color>`.
    pub container_names: BTreeMap<String, String>,
}

/// Render `color` from Compose's resolved model of the user's file (`config --format json`).
pub fn render(config: &Value, stack: &Stack, color: Color, build: &BuildInfo) -> Result<Plan> {
    render_with(config, stack, color, build, &RenderOptions::default())
}

/// As `render`, with settings from the environment and chosen container names.
pub fn render_with(
    config: &Value,
    stack: &Stack,
    color: Color,
    build: &BuildInfo,
    opts: &RenderOptions,
) -> Result<Plan> {
    let services = config
        .get("services")
        .and_then(Value::as_object)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::State("the compose file defines no services".into()))?;
    let project = stack.color_project(color);
    let settings = Settings::read(config, services, &opts.env)?;
    let networks = Networks::of(config, &project, stack);
    let (declared_volumes, volumes) = named_volumes(config, stack)?;

    let rendering = ServiceRendering {
        color,
        build,
        opts,
        settings: &settings,
        network_names: &networks.names,
    };
    let mut rendered = RenderedServices::default();
    for (name, service) in services {
        rendering.service(name, service, &mut rendered)?;
    }
    if rendered.colored.is_empty() {
        return Err(Error::State(
            "every service is ztd.switch=shared: there is nothing to deploy per color".into(),
        ));
    }

    let meta = DeployMeta {
        color,
        project: project.clone(),
        build: build.clone(),
        services: rendered.plans,
        shared: rendered.attachments,
        listeners: rendered.listeners,
        networks: networks.names,
        volumes,
    };
    let color_model = project_model(ProjectModel {
        name: &project,
        networks: used_networks(&rendered.colored, &networks.color),
        services: &rendered.colored,
        volumes: &declared_volumes,
        secrets: config.get("secrets"),
        configs: config.get("configs"),
        x_ztd: Some(&meta),
    })?;
    let shared_model = if rendered.shared.is_empty() {
        None
    } else {
        Some(project_model(ProjectModel {
            name: &stack.shared_project(),
            networks: used_networks(&rendered.shared, &networks.shared),
            services: &rendered.shared,
            volumes: &declared_volumes,
            secrets: config.get("secrets"),
            configs: config.get("configs"),
            x_ztd: None,
        })?)
    };
    Ok(Plan {
        meta,
        color_model,
        shared_model,
    })
}

/// Every service's `ztd.*` settings: the service's own labels, over the compose file's `x-ztd`
/// block, over the environment.
struct Settings {
    /// Service name to its labels after the merge.
    merged: overrides::Merged,
    /// Service name to its settings.
    of: BTreeMap<String, ServiceSettings>,
    /// The shared services.
    shared: BTreeSet<String>,
    /// The handover services that wait for the switch to start.
    waiting: BTreeSet<String>,
}

impl Settings {
    fn read(config: &Value, services: &Map<String, Value>, env: &EnvSettings) -> Result<Settings> {
        let x_ztd = overrides::x_ztd_labels(config)?;
        let merged = overrides::merge(services, &x_ztd, env, |s| string_map(s.get("labels")));
        let mut of = BTreeMap::new();
        for (name, labels) in &merged {
            of.insert(name.clone(), ServiceSettings::from_labels(name, labels)?);
        }
        let shared = of
            .iter()
            .filter(|(_, s)| s.switch == SwitchMode::Shared)
            .map(|(n, _)| n.clone())
            .collect();
        let waiting = of
            .iter()
            // A handover service that publishes a port binds it itself: only the running one
            // may.
            .filter(|(n, s)| {
                s.switch == SwitchMode::Handover
                    && (s.activate.is_none() || has_ports(services.get(n.as_str())))
            })
            .map(|(n, _)| n.clone())
            .collect();
        Ok(Settings {
            merged,
            of,
            shared,
            waiting,
        })
    }
}

/// The networks of a color's project and of the shared project.
struct Networks {
    /// Key to the network as the color's project declares it.
    color: Map<String, Value>,
    /// Key to the network's name in the color.
    names: BTreeMap<String, String>,
    /// Key to the network as the shared project declares it.
    shared: Map<String, Value>,
}

impl Networks {
    /// Each color gets its own copy of every network the file defines, so service names and
    /// fixed aliases resolve within one color only. External networks stay as they are.
    fn of(config: &Value, project: &str, stack: &Stack) -> Networks {
        let mut networks = Networks {
            color: Map::new(),
            names: BTreeMap::new(),
            shared: Map::new(),
        };
        for (key, network) in object(config.get("networks")) {
            if network.get("external").and_then(Value::as_bool) == Some(true) {
                let name = network
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or(key.as_str());
                networks.names.insert(key.clone(), name.to_string());
                networks.color.insert(key.clone(), network.clone());
                networks.shared.insert(key.clone(), network.clone());
                continue;
            }
            let mut own = network.clone();
            if let Some(ipam) = own.get_mut("ipam").and_then(Value::as_object_mut) {
                // Two colors cannot share fixed subnets.
                ipam.remove("config");
            }
            let name = format!("{project}_{key}");
            own["name"] = Value::from(name.clone());
            networks.names.insert(key.clone(), name);
            networks.color.insert(key.clone(), own.clone());
            // Shared services join each color's networks later; their own networks sort first
            // so their published ports stay on the same gateway (see `proxy::proxy_model`).
            own["name"] = Value::from(format!("0-ztd-shared-{}_{key}", stack.name));
            networks.shared.insert(key.clone(), own);
        }
        networks
    }
}

/// A named volume as a rendered project declares it: ztd creates it, so it is external.
#[derive(Debug, Serialize)]
struct ExternalVolume<'a> {
    name: &'a str,
    external: bool,
}

/// Named volumes: one volume for both colors (the data survives a switch), created by ztd.
/// Returns the volumes as both projects declare them and those ztd creates (not external).
fn named_volumes(config: &Value, stack: &Stack) -> Result<(Map<String, Value>, Vec<VolumePlan>)> {
    let mut declared = Map::new();
    let mut volumes = Vec::new();
    for (key, volume) in object(config.get("volumes")) {
        let name = volume
            .get("name")
            .and_then(Value::as_str)
            .map_or_else(|| format!("{}_{key}", stack.name), str::to_string);
        let external = ExternalVolume {
            name: &name,
            external: true,
        };
        declared.insert(key.clone(), encode(&external)?);
        if volume.get("external").and_then(Value::as_bool) != Some(true) {
            volumes.push(VolumePlan {
                key: key.clone(),
                name,
                driver: volume
                    .get("driver")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                driver_opts: string_map(volume.get("driver_opts")),
            });
        }
    }
    Ok((declared, volumes))
}

/// The services of a color as rendered so far.
#[derive(Debug, Default)]
struct RenderedServices {
    /// Name to service, in the color's project.
    colored: Map<String, Value>,
    /// Name to service, in the shared project.
    shared: Map<String, Value>,
    /// The plan of each colored service.
    plans: Vec<ServicePlan>,
    /// Where each shared service must be reachable.
    attachments: Vec<SharedAttachment>,
    /// The front proxy's listeners.
    listeners: Vec<Listener>,
    /// Ports of handover services, published by their own containers (kept for clash checks).
    direct: Vec<Listener>,
}

impl RenderedServices {
    /// Take a service's published ports: a proxied service's become the front proxy's
    /// listeners (and leave its definition); a handover service keeps its own, which are
    /// returned. A host port published twice is refused.
    fn take_ports(
        &mut self,
        name: &str,
        setting: &ServiceSettings,
        fields: &mut Map<String, Value>,
        container: &str,
    ) -> Result<Vec<u16>> {
        let handover = setting.switch == SwitchMode::Handover;
        let ports = if handover {
            // Handed over, never proxied: the running container publishes its ports itself.
            fields.get("ports").and_then(Value::as_array).cloned()
        } else {
            fields.remove("ports").and_then(|p| p.as_array().cloned())
        };
        let mut direct_ports = Vec::new();
        for port in ports.unwrap_or_default() {
            let mut listener = listener(name, &port, setting.proxy_protocol)?;
            listener.container = container.to_string();
            if let Some(clash) = self
                .listeners
                .iter()
                .chain(self.direct.iter())
                .find(|l| l.port == listener.port && same_family(l, &listener))
            {
                return Err(Error::State(format!(
                    "host port {} is published by both {} and {name}",
                    listener.port, clash.service
                )));
            }
            if handover {
                direct_ports.push(listener.port);
                self.direct.push(listener);
            } else {
                self.listeners.push(listener);
            }
        }
        Ok(direct_ports)
    }
}

/// What rendering each service of a color takes.
struct ServiceRendering<'a> {
    color: Color,
    build: &'a BuildInfo,
    opts: &'a RenderOptions,
    settings: &'a Settings,
    /// Network key to its name in the color.
    network_names: &'a BTreeMap<String, String>,
}

impl ServiceRendering<'_> {
    /// Render one service: into the shared project, or into the color with its plan.
    fn service(&self, name: &String, service: &Value, out: &mut RenderedServices) -> Result<()> {
        let setting = &self.settings.of[name];
        let mut rendered = service.clone();
        let Some(fields) = rendered.as_object_mut() else {
            return Err(Error::State(format!("service {name} is not a mapping")));
        };
        // Compose's model holds only the services of the enabled profiles; the rendered
        // projects run them all, whatever COMPOSE_PROFILES says when they run.
        fields.remove("profiles");
        let mut labels = self.settings.merged.get(name).cloned().unwrap_or_default();
        labels.insert(labels::DEPLOYMENT_SERVICE.into(), name.clone());
        if setting.switch == SwitchMode::Shared {
            fields.insert("labels".into(), string_object(&labels));
            out.attachments.push(SharedAttachment {
                service: name.clone(),
                networks: network_aliases(name, service),
            });
            out.shared.insert(name.clone(), rendered);
            return Ok(());
        }
        let container = self
            .opts
            .container_names
            .get(name)
            .cloned()
            .unwrap_or_else(|| compatible_container_name(name, self.color));
        let direct_ports = out.take_ports(name, setting, fields, &container)?;
        if setting.switch == SwitchMode::Proxy && !out.listeners.iter().any(|l| &l.service == name)
        {
            return Err(Error::State(format!(
                "service {name}: ztd.switch=proxy but it publishes no host port for the proxy to listen on"
            )));
        }
        fields.insert("container_name".into(), Value::from(container.clone()));
        self.color_fields(service, fields, labels);
        let restart = service
            .get("restart")
            .and_then(Value::as_str)
            .map(str::to_string);
        if setting.switch == SwitchMode::Handover {
            fields.insert("restart".into(), Value::from("no"));
        }
        let has_build = fields.contains_key("build");
        let networks = object(service.get("networks"))
            .keys()
            .filter_map(|key| self.network_names.get(key).cloned())
            .collect();
        out.plans.push(ServicePlan {
            name: name.clone(),
            mode: match setting.switch {
                SwitchMode::Side if out.listeners.iter().any(|l| &l.service == name) => {
                    SwitchMode::Proxy
                }
                mode => mode,
            },
            container,
            build: has_build,
            start_at_up: !self.settings.waiting.contains(name),
            restart,
            networks,
            direct_ports,
        });
        out.colored.insert(name.clone(), rendered);
        Ok(())
    }

    /// The color's labels, environment and build args on a service, and the dependencies it
    /// starts with.
    fn color_fields(
        &self,
        service: &Value,
        fields: &mut Map<String, Value>,
        mut labels: BTreeMap<String, String>,
    ) {
        let (color, build) = (self.color, self.build);
        labels.insert(labels::DEPLOYMENT_COLOR.into(), color.to_string());
        labels.insert(labels::DEPLOYMENT_VERSION.into(), build.version.clone());
        labels.insert(
            labels::DEPLOYMENT_TIMESTAMP.into(),
            build.build_date.clone(),
        );
        fields.insert("labels".into(), string_object(&labels));
        let mut environment = string_map(service.get("environment"));
        environment.insert("DEPLOYMENT_COLOR".into(), color.to_string());
        environment.insert("DEPLOYMENT_MODE".into(), "blue-green".into());
        fields.insert("environment".into(), string_object(&environment));
        if let Some(build_section) = fields.get_mut("build").and_then(Value::as_object_mut) {
            let mut args = string_map(build_section.get("args"));
            args.extend(build.variables(color));
            build_section.insert("args".into(), string_object(&args));
        }
        if let Some(depends) = fields.get_mut("depends_on").and_then(Value::as_object_mut) {
            // Shared services live in another project; waiting handover services start at the
            // switch, not at `up`.
            let settings = self.settings;
            depends
                .retain(|dep, _| !settings.shared.contains(dep) && !settings.waiting.contains(dep));
        }
    }
}

/// A rendered Compose project, as its file holds it.
#[derive(Debug, Serialize)]
struct ProjectModel<'a> {
    name: &'a str,
    services: &'a Map<String, Value>,
    networks: Map<String, Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    volumes: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secrets: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    configs: Option<&'a Value>,
    /// The color's metadata, read back by every later tool.
    #[serde(rename = "x-ztd", skip_serializing_if = "Option::is_none")]
    x_ztd: Option<&'a DeployMeta>,
}

/// A project's model, as it is written to its rendered file.
fn project_model(model: ProjectModel<'_>) -> Result<Value> {
    encode(&model)
}

/// The networks of `all` that these services join, in the order of `all`.
fn used_networks(services: &Map<String, Value>, all: &Map<String, Value>) -> Map<String, Value> {
    let keys: BTreeSet<String> = services
        .values()
        .flat_map(|s| {
            object(s.get("networks"))
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    all.iter()
        .filter(|(k, _)| keys.contains(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A part of a rendered model as JSON.
fn encode<T: Serialize>(part: &T) -> Result<Value> {
    serde_json::to_value(part).map_err(|e| Error::State(format!("cannot encode the plan: {e}")))
}

/// A map of strings as a JSON object, in key order.
fn string_object(map: &BTreeMap<String, String>) -> Value {
    Value::Object(
        map.iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect(),
    )
}

/// Read the `x-ztd` metadata back from a rendered file's text.
pub fn read_meta(text: &str) -> Result<DeployMeta> {
    let model = parse_rendered(text)?;
    serde_json::from_value(model.get("x-ztd").cloned().unwrap_or(Value::Null))
        .map_err(|e| Error::State(format!("rendered file lacks valid x-ztd metadata: {e}")))
}

/// Read the rendered metadata of a color, if it has been deployed.
pub fn read_color_meta(stack: &Stack, color: Color) -> Result<Option<DeployMeta>> {
    let path = stack.rendered_compose_path(color);
    match std::fs::read_to_string(&path) {
        Ok(text) => read_meta(&text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::State(format!("{}: {e}", path.display()))),
    }
}

/// Parse a rendered file (comment header, then JSON).
pub fn parse_rendered(text: &str) -> Result<Value> {
    let body: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&body)
        .map_err(|e| Error::State(format!("rendered file is not valid: {e}")))
}

/// The text of a rendered file.
pub fn rendered_text(model: &Value) -> String {
    let body = serde_json::to_string_pretty(model).unwrap_or_default();
    format!("{RENDERED_HEADER}{body}\n")
}

/// A copy of a model with every environment value and build argument replaced, for printing.
pub fn redact(model: &Value) -> Value {
    let mut copy = model.clone();
    if let Some(services) = copy.get_mut("services").and_then(Value::as_object_mut) {
        for service in services.values_mut() {
            for path in [&["environment"][..], &["build", "args"][..]] {
                let mut node = Some(&mut *service);
                for key in path {
                    node = node.and_then(|n| n.get_mut(*key));
                }
                if let Some(map) = node.and_then(Value::as_object_mut) {
                    for (key, value) in map.iter_mut() {
                        if !matches!(
                            key.as_str(),
                            "DEPLOYMENT_COLOR"
                                | "DEPLOYMENT_MODE"
                                | "VERSION"
                                | "BUILD_DATE"
                                | "VCS_REF"
                        ) {
                            *value = Value::from("<redacted>");
                        }
                    }
                }
            }
        }
    }
    copy
}

fn listener(service: &str, port: &Value, http_or_tcp: ProxyProtocol) -> Result<Listener> {
    let bad = |why: &str| Error::State(format!("service {service}: port {port} {why}"));
    let published = match port.get("published") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(bad("has no fixed host port; the front proxy needs one")),
    };
    if published.contains('-') {
        return Err(bad("is a range; the front proxy needs single ports"));
    }
    let port_number: u16 = published
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| bad("has a bad host port"))?;
    let target = port
        .get("target")
        .and_then(Value::as_u64)
        .and_then(|t| u16::try_from(t).ok())
        .ok_or_else(|| bad("has no container port"))?;
    let protocol = match port
        .get("protocol")
        .and_then(Value::as_str)
        .unwrap_or("tcp")
    {
        "udp" => ProxyProtocol::Udp,
        "tcp" => http_or_tcp,
        other => return Err(bad(&format!("uses protocol {other}, not tcp or udp"))),
    };
    Ok(Listener {
        service: service.to_string(),
        host_ip: port
            .get("host_ip")
            .and_then(Value::as_str)
            .filter(|ip| !ip.is_empty())
            .map(str::to_string),
        port: port_number,
        target,
        protocol,
        container: String::new(),
    })
}

fn has_ports(service: Option<&Value>) -> bool {
    service
        .and_then(|s| s.get("ports"))
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty())
}

fn same_family(a: &Listener, b: &Listener) -> bool {
    (a.protocol == ProxyProtocol::Udp) == (b.protocol == ProxyProtocol::Udp)
}

fn network_aliases(name: &str, service: &Value) -> BTreeMap<String, Vec<String>> {
    object(service.get("networks"))
        .iter()
        .map(|(key, settings)| {
            let mut aliases = vec![name.to_string()];
            for alias in settings
                .get("aliases")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !aliases.iter().any(|a| a == alias) {
                    aliases.push(alias.to_string());
                }
            }
            (key.clone(), aliases)
        })
        .collect()
}

fn object(value: Option<&Value>) -> Map<String, Value> {
    value
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    match value {
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|item| match item.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (item.to_string(), String::new()),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stack() -> Stack {
        Stack {
            dir: "/srv/shop".into(),
            name: "shop".into(),
        }
    }

    fn build() -> BuildInfo {
        BuildInfo {
            version: "green-20261126-031141".into(),
            build_date: "2026-11-26T03:11:41Z".into(),
            vcs_ref: "abc1234".into(),
        }
    }

    fn config() -> Value {
        json!({
            "name": "shop",
            "networks": {
                "backend": {"name": "trading-network", "ipam": {"config": [{"subnet": "10.9.0.0/16"}]}},
                "default": {"name": "shop_default", "ipam": {}},
                "outside": {"name": "edge", "external": true}
            },
            "services": {
                "db": {"image": "db:1", "labels": {"ztd.switch": "shared"},
                       "ports": [{"target": 5432, "published": "5432", "protocol": "tcp"}],
                       "networks": {"default": null, "backend": {"aliases": ["database"]}}},
                "web": {"build": {"context": "/srv/shop/web", "args": {"FOO": "bar"}},
                        "image": "shop-web:v7",
                        "environment": {"SECRET": "hunter2"},
                        "depends_on": {"db": {"condition": "service_started"}, "bot": {"condition": "service_started"}, "memory": {"condition": "service_healthy"}},
                        "labels": {"ztd.health.http": "/health"},
                        "networks": {"default": null, "backend": null},
                        "ports": [{"target": 8080, "published": "80", "protocol": "tcp"},
                                  {"target": 9000, "published": "9000", "protocol": "udp", "host_ip": "127.0.0.1"}],
                        "volumes": [{"type": "volume", "source": "data", "target": "/data"}]},
                "bot": {"image": "bot:1", "restart": "unless-stopped", "labels": {"ztd.switch": "handover"},
                        "networks": {"backend": {"aliases": ["trading-bot"]}}},
                "memory": {"image": "mem:1", "networks": {"default": null}}
            },
            "volumes": {"data": {"name": "shop_data"}}
        })
    }

    #[test]
    fn a_color_gets_its_own_project_names_labels_and_no_host_ports() {
        let plan = render(&config(), &stack(), Color::Green, &build()).expect("render");
        let model = &plan.color_model;
        assert_eq!(model["name"], "shop-green");
        let web = &model["services"]["web"];
        assert_eq!(web["container_name"], "web-green");
        assert!(web.get("ports").is_none(), "the proxy owns host ports");
        assert_eq!(web["labels"]["deployment.color"], "green");
        assert_eq!(web["labels"]["deployment.service"], "web");
        assert_eq!(web["labels"]["deployment.version"], "green-20261126-031141");
        assert_eq!(web["labels"]["ztd.health.http"], "/health");
        assert_eq!(web["environment"]["DEPLOYMENT_COLOR"], "green");
        assert_eq!(web["environment"]["DEPLOYMENT_MODE"], "blue-green");
        assert_eq!(web["environment"]["SECRET"], "hunter2");
        assert_eq!(web["build"]["args"]["FOO"], "bar");
        assert_eq!(web["build"]["args"]["VERSION"], "green-20261126-031141");
        assert_eq!(web["build"]["args"]["VCS_REF"], "abc1234");
        assert_eq!(web["build"]["args"]["DEPLOYMENT_COLOR"], "green");
        assert!(
            web["build"]["args"]["BUILD_DATE"]
                .as_str()
                .expect("date")
                .ends_with('Z')
        );
        assert!(
            model["services"].get("db").is_none(),
            "shared services are not per color"
        );
    }

    #[test]
    fn networks_are_per_color_volumes_are_shared_and_external_networks_stay() {
        let plan = render(&config(), &stack(), Color::Blue, &build()).expect("render");
        let networks = &plan.color_model["networks"];
        assert_eq!(networks["backend"]["name"], "shop-blue_backend");
        assert!(
            networks["backend"]["ipam"].get("config").is_none(),
            "fixed subnets dropped"
        );
        assert_eq!(networks["default"]["name"], "shop-blue_default");
        assert!(
            networks.get("outside").is_none(),
            "unused networks are left out"
        );
        assert_eq!(
            plan.color_model["volumes"]["data"],
            json!({"name": "shop_data", "external": true})
        );
        assert_eq!(plan.meta.volumes[0].name, "shop_data");
        assert_eq!(plan.meta.networks["backend"], "shop-blue_backend");
        let bot = plan.meta.service("bot").expect("bot");
        assert_eq!(bot.networks, vec!["shop-blue_backend".to_string()]);
    }

    #[test]
    fn depends_on_drops_shared_and_waiting_handover_services() {
        let plan = render(&config(), &stack(), Color::Blue, &build()).expect("render");
        let depends = plan.color_model["services"]["web"]["depends_on"]
            .as_object()
            .expect("map");
        assert_eq!(depends.keys().collect::<Vec<_>>(), vec!["memory"]);
    }

    #[test]
    fn handover_services_wait_with_restart_no_and_remember_the_policy() {
        let plan = render(&config(), &stack(), Color::Blue, &build()).expect("render");
        assert_eq!(plan.color_model["services"]["bot"]["restart"], "no");
        let bot = plan.meta.service("bot").expect("bot");
        assert_eq!(bot.mode, SwitchMode::Handover);
        assert!(!bot.start_at_up);
        assert_eq!(bot.restart.as_deref(), Some("unless-stopped"));
        assert!(plan.meta.service("memory").expect("memory").start_at_up);
        assert_eq!(
            plan.meta.service("memory").expect("memory").mode,
            SwitchMode::Side
        );
        assert_eq!(
            plan.meta.service("web").expect("web").mode,
            SwitchMode::Proxy,
            "ports imply proxy"
        );
    }

    #[test]
    fn published_ports_become_proxy_listeners() {
        let plan = render(&config(), &stack(), Color::Blue, &build()).expect("render");
        assert_eq!(
            plan.meta.listeners,
            vec![
                Listener {
                    service: "web".into(),
                    host_ip: None,
                    port: 80,
                    target: 8080,
                    protocol: ProxyProtocol::Http,
                    container: "web-blue".into(),
                },
                Listener {
                    service: "web".into(),
                    host_ip: Some("127.0.0.1".into()),
                    port: 9000,
                    target: 9000,
                    protocol: ProxyProtocol::Udp,
                    container: "web-blue".into(),
                },
            ]
        );
    }

    #[test]
    fn shared_services_get_their_own_project_keeping_their_ports() {
        let plan = render(&config(), &stack(), Color::Blue, &build()).expect("render");
        let shared = plan.shared_model.expect("shared model");
        assert_eq!(shared["name"], "shop-shared");
        assert_eq!(shared["services"]["db"]["ports"][0]["published"], "5432");
        assert_eq!(
            shared["networks"]["default"]["name"],
            "0-ztd-shared-shop_default"
        );
        assert_eq!(
            plan.meta.shared[0].networks["backend"],
            vec!["db".to_string(), "database".to_string()]
        );
    }

    #[test]
    fn the_metadata_survives_the_rendered_file() {
        let plan = render(&config(), &stack(), Color::Blue, &build()).expect("render");
        let text = rendered_text(&plan.color_model);
        assert!(text.starts_with("# Rendered by ztd-up"));
        assert_eq!(read_meta(&text).expect("meta"), plan.meta);
    }

    #[test]
    fn redaction_hides_environment_values_and_build_args() {
        let plan = render(&config(), &stack(), Color::Blue, &build()).expect("render");
        let text = redact(&plan.color_model).to_string();
        assert!(!text.contains("hunter2"));
        assert!(!text.contains("\"bar\""));
        assert!(text.contains("\"DEPLOYMENT_COLOR\":\"blue\""));
    }

    #[test]
    fn chosen_container_names_are_used_and_recorded_for_the_proxy() {
        let opts = RenderOptions {
            container_names: [("web".to_string(), "shop-blue-web-1".to_string())].into(),
            ..RenderOptions::default()
        };
        let plan = render_with(&config(), &stack(), Color::Blue, &build(), &opts).expect("render");
        assert_eq!(
            plan.color_model["services"]["web"]["container_name"],
            "shop-blue-web-1"
        );
        assert_eq!(
            plan.meta.service("web").expect("web").container,
            "shop-blue-web-1"
        );
        assert_eq!(
            plan.meta.service("memory").expect("memory").container,
            "memory-blue"
        );
        assert_eq!(
            plan.meta.listeners[0].upstream(Color::Blue),
            "shop-blue-web-1:8080"
        );
    }

    #[test]
    fn x_ztd_and_the_environment_make_a_singleton_that_keeps_its_port() {
        let mut c = config();
        c["services"]["memory"]["ports"] =
            json!([{"target": 8080, "published": "8767", "protocol": "tcp"}]);
        c["x-ztd"] = json!({"services": {"memory": {"switch": "handover", "drain": "app drain"}}});
        let plan = render(&c, &stack(), Color::Green, &build()).expect("render");
        let memory = &plan.color_model["services"]["memory"];
        assert_eq!(memory["labels"]["ztd.switch"], "handover");
        assert_eq!(memory["labels"]["ztd.drain"], "app drain");
        assert_eq!(
            memory["ports"][0]["published"], "8767",
            "handed over, not proxied"
        );
        assert_eq!(memory["restart"], "no");
        let plan_memory = plan.meta.service("memory").expect("memory");
        assert_eq!(plan_memory.mode, SwitchMode::Handover);
        assert_eq!(plan_memory.direct_ports, vec![8767]);
        assert!(!plan_memory.start_at_up);
        assert!(plan.meta.listeners.iter().all(|l| l.service != "memory"));

        let opts = RenderOptions {
            env: EnvSettings::from_vars([("ZTD_HANDOVER".to_string(), "web".to_string())])
                .expect("env"),
            ..RenderOptions::default()
        };
        let plan = render_with(&config(), &stack(), Color::Green, &build(), &opts).expect("render");
        let web = plan.meta.service("web").expect("web");
        assert_eq!(web.mode, SwitchMode::Handover);
        assert_eq!(web.direct_ports, vec![80, 9000]);
        assert!(
            plan.meta.listeners.is_empty(),
            "no proxy for a handover service"
        );
        assert_eq!(
            plan.color_model["services"]["web"]["labels"]["ztd.switch"],
            "handover"
        );

        let mut c = config();
        c["x-ztd"] = json!({"services": {"web": {"switch": "sideways"}}});
        assert!(matches!(
            render(&c, &stack(), Color::Blue, &build()),
            Err(Error::State(_))
        ));
        c["x-ztd"] = json!(["web"]);
        assert!(matches!(
            render(&c, &stack(), Color::Blue, &build()),
            Err(Error::State(_))
        ));
    }

    #[test]
    fn bad_models_are_config_errors() {
        let mut c = config();
        c["services"]["web"]["labels"]["ztd.switch"] = json!("sideways");
        assert!(matches!(
            render(&c, &stack(), Color::Blue, &build()),
            Err(Error::State(_))
        ));
        let mut c = config();
        c["services"]["memory"]["ports"] =
            json!([{"target": 1, "published": "80", "protocol": "tcp"}]);
        let err = render(&c, &stack(), Color::Blue, &build()).expect_err("clash");
        assert!(err.message().contains("published by both"), "{err}");
        let mut c = config();
        c["services"]["memory"]["labels"] = json!({"ztd.switch": "proxy"});
        assert!(render(&c, &stack(), Color::Blue, &build()).is_err());
        let mut c = config();
        c["services"]["web"]["ports"] = json!([{"target": 8080, "protocol": "tcp"}]);
        assert!(render(&c, &stack(), Color::Blue, &build()).is_err());
        assert!(render(&json!({"services": {}}), &stack(), Color::Blue, &build()).is_err());
    }
}
