//! A color's Swarm stack file, rendered from the model `docker compose config` reads from the
//! project: what `docker stack deploy` accepts (format 3.8), on the color's overlay network,
//! with the published ports left to the front proxy and the handover singletons held at zero
//! replicas until the switch hands over.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::labels::{ProxyProtocol, ServiceSettings, SwitchMode};
use crate::stack::{Color, Stack};
use crate::swarm::{
    LABEL_COLOR, LABEL_PINNED, LABEL_PROJECT, LABEL_PUBLISH, LABEL_REPLICAS, LABEL_SERVICE,
    LABEL_SWITCH, color_network,
};

/// Service keys carried over as they are (the compose model and format 3.8 agree on them).
const KEPT_KEYS: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "healthcheck",
    "labels",
    "working_dir",
    "user",
    "stop_grace_period",
    "stop_signal",
    "init",
    "tty",
    "stdin_open",
    "read_only",
    "cap_add",
    "cap_drop",
    "extra_hosts",
    "ulimits",
    "sysctls",
    "logging",
    "tmpfs",
    "hostname",
];
/// Keys that mean nothing in a Swarm stack, or that ztd handles itself: dropped quietly.
const HANDLED_KEYS: &[&str] = &[
    "ports",
    "networks",
    "restart",
    "deploy",
    "depends_on",
    "container_name",
    "pull_policy",
    "build",
    "profiles",
    "volumes",
];
/// Keys of `deploy:` carried over.
const KEPT_DEPLOY_KEYS: &[&str] = &["placement", "resources", "restart_policy", "labels"];

/// One port the front proxy publishes on every node and forwards to a service of the color.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwarmListener {
    /// The compose service.
    pub service: String,
    /// The port published on the nodes.
    pub published: u16,
    /// The service's port.
    pub target: u16,
    /// How the proxy forwards it.
    pub protocol: ProxyProtocol,
}

impl SwarmListener {
    /// `published:target/protocol`, as kept in the service's label.
    pub fn label(&self) -> String {
        format!(
            "{}:{}/{}",
            self.published,
            self.target,
            protocol_name(self.protocol)
        )
    }

    /// Read one back from a label's item.
    pub fn parse(service: &str, item: &str) -> Option<SwarmListener> {
        let (ports, protocol) = item.split_once('/').unwrap_or((item, "http"));
        let (published, target) = ports.split_once(':')?;
        Some(SwarmListener {
            service: service.to_string(),
            published: published.parse().ok()?,
            target: target.parse().ok()?,
            protocol: match protocol {
                "tcp" => ProxyProtocol::Tcp,
                "udp" => ProxyProtocol::Udp,
                _ => ProxyProtocol::Http,
            },
        })
    }
}

fn protocol_name(protocol: ProxyProtocol) -> &'static str {
    match protocol {
        ProxyProtocol::Http => "http",
        ProxyProtocol::Tcp => "tcp",
        ProxyProtocol::Udp => "udp",
    }
}

/// A service of the rendered color.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedService {
    /// Its compose name.
    pub name: String,
    /// Its `ztd.switch` mode.
    pub switch: SwitchMode,
    /// The replicas it runs with.
    pub replicas: i64,
    /// The replicas it starts with (0 for a singleton waiting for its handover).
    pub starts_with: i64,
}

/// A rendered color.
#[derive(Debug, Clone, PartialEq)]
pub struct SwarmPlan {
    /// The stack file.
    pub file: Value,
    /// Its services, by name.
    pub services: Vec<PlannedService>,
    /// The ports the proxy publishes.
    pub listeners: Vec<SwarmListener>,
    /// Keys of the compose file a Swarm stack cannot honour, as `service.key`.
    pub dropped: Vec<String>,
}

/// Render `color` of the project `config` (the output of `compose config --format json`).
/// `singletons_wait`: another color runs, so the handover singletons start at zero replicas
/// (the switch pins each to a node as it hands over); else they start now, pinned to `pin`.
pub fn render(
    config: &Value,
    stack: &Stack,
    color: Color,
    singletons_wait: bool,
    pin: &str,
) -> Result<SwarmPlan> {
    let services = config
        .get("services")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::State("the compose model has no services".into()))?;
    let mut file_services = Map::new();
    let mut planned = Vec::new();
    let mut listeners = Vec::new();
    let mut dropped = Vec::new();
    let mut volumes = BTreeMap::new();
    for (name, service) in services {
        let service = service
            .as_object()
            .ok_or_else(|| Error::State(format!("service {name}: not an object")))?;
        let labels = string_map(service.get("labels"));
        let settings = ServiceSettings::from_labels(name, labels.iter())?;
        if settings.switch == SwitchMode::Shared {
            return Err(Error::State(format!(
                "service {name}: ztd.switch: shared is not supported with --orchestrator swarm yet; run it as a stack of its own"
            )));
        }
        if service.get("image").and_then(Value::as_str).is_none() {
            return Err(Error::State(format!(
                "service {name}: a Swarm service needs an image (build it and load or push it to every node; see README, Beyond one machine)"
            )));
        }
        let replicas = service
            .get("deploy")
            .and_then(|d| d.get("replicas"))
            .and_then(Value::as_i64)
            .unwrap_or(1);
        if settings.switch == SwitchMode::Handover && replicas != 1 {
            return Err(Error::State(format!(
                "service {name}: a handover singleton runs one replica, not {replicas}"
            )));
        }
        let starts_with = if settings.switch == SwitchMode::Handover && singletons_wait {
            0
        } else {
            replicas
        };
        let mut out = Map::new();
        for (key, value) in service {
            if value.is_null() {
                continue;
            }
            if KEPT_KEYS.contains(&key.as_str()) {
                out.insert(key.clone(), value.clone());
            } else if !HANDLED_KEYS.contains(&key.as_str()) {
                dropped.push(format!("{name}.{key}"));
            }
        }
        let environment = out
            .entry("environment")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(env) = environment {
            env.insert("DEPLOYMENT_COLOR".into(), json!(color.as_str()));
        }
        let mut service_listeners = Vec::new();
        for port in service
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(listener) = listener(name, port, settings.proxy_protocol)? {
                service_listeners.push(listener);
            }
        }
        out.insert(
            "volumes".into(),
            Value::Array(mounts(
                name,
                service.get("volumes"),
                &mut volumes,
                (config.get("volumes"), &stack.name),
            )?),
        );
        let mut deploy = Map::new();
        if let Some(Value::Object(given)) = service.get("deploy") {
            for key in KEPT_DEPLOY_KEYS {
                if let Some(value) = given.get(*key) {
                    deploy.insert((*key).to_string(), value.clone());
                }
            }
        }
        deploy.insert("mode".into(), json!("replicated"));
        deploy.insert("replicas".into(), json!(starts_with));
        deploy.insert("endpoint_mode".into(), json!(endpoint_mode()));
        if !deploy.contains_key("restart_policy") {
            let condition = match service.get("restart").and_then(Value::as_str) {
                Some("no") => "none",
                Some(r) if r.starts_with("on-failure") => "on-failure",
                _ => "any",
            };
            deploy.insert("restart_policy".into(), json!({ "condition": condition }));
        }
        let pinned = settings.switch == SwitchMode::Handover && starts_with == 1;
        if pinned {
            let placement = deploy.entry("placement").or_insert_with(|| json!({}));
            if let Value::Object(placement) = placement {
                let constraints = placement.entry("constraints").or_insert_with(|| json!([]));
                if let Value::Array(list) = constraints {
                    list.push(json!(format!("node.id=={pin}")));
                }
            }
        }
        let mut ztd_labels = string_map(deploy.get("labels"));
        if pinned {
            ztd_labels.insert(LABEL_PINNED.into(), pin.to_string());
        }
        ztd_labels.insert(LABEL_PROJECT.into(), stack.name.clone());
        ztd_labels.insert(LABEL_COLOR.into(), color.as_str().into());
        ztd_labels.insert(LABEL_SERVICE.into(), name.clone());
        ztd_labels.insert(LABEL_SWITCH.into(), switch_name(settings.switch).into());
        ztd_labels.insert(LABEL_REPLICAS.into(), replicas.to_string());
        if !service_listeners.is_empty() {
            let items: Vec<String> = service_listeners.iter().map(SwarmListener::label).collect();
            ztd_labels.insert(LABEL_PUBLISH.into(), items.join(","));
        }
        deploy.insert("labels".into(), json!(ztd_labels));
        out.insert("deploy".into(), Value::Object(deploy));
        file_services.insert(name.clone(), Value::Object(out));
        listeners.extend(service_listeners);
        planned.push(PlannedService {
            name: name.clone(),
            switch: settings.switch,
            replicas,
            starts_with,
        });
    }
    check_listeners(&listeners)?;
    let mut file = json!({
        "version": "3.8",
        "services": file_services,
        "networks": { "default": { "external": true, "name": color_network(stack, color) } },
    });
    if !volumes.is_empty() {
        file["volumes"] = json!(volumes);
    }
    Ok(SwarmPlan {
        file,
        services: planned,
        listeners,
        dropped,
    })
}

/// `dnsrr` unless `ZTD_SWARM_ENDPOINT_MODE=vip` (which needs IPVS in every node's kernel).
pub fn endpoint_mode() -> &'static str {
    match std::env::var("ZTD_SWARM_ENDPOINT_MODE").as_deref() {
        Ok("vip") => "vip",
        _ => "dnsrr",
    }
}

/// The `ztd.switch` value of a mode.
pub fn switch_name(mode: SwitchMode) -> &'static str {
    match mode {
        SwitchMode::Side => "side",
        SwitchMode::Proxy => "proxy",
        SwitchMode::Handover => "handover",
        SwitchMode::Shared => "shared",
    }
}

/// A label map (or a compose mapping of strings) as strings.
fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    (k.clone(), text)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The listener of one entry of a service's `ports:` (none for a port without a host side).
fn listener(service: &str, port: &Value, protocol: ProxyProtocol) -> Result<Option<SwarmListener>> {
    let number = |v: Option<&Value>| -> Option<u16> {
        match v? {
            Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    };
    let Some(target) = number(port.get("target")) else {
        return Err(Error::State(format!(
            "service {service}: a port without a target: {port}"
        )));
    };
    let Some(published) = number(port.get("published")) else {
        return Ok(None);
    };
    let protocol = match port.get("protocol").and_then(Value::as_str) {
        Some("udp") => ProxyProtocol::Udp,
        _ => protocol,
    };
    Ok(Some(SwarmListener {
        service: service.to_string(),
        published,
        target,
        protocol,
    }))
}

/// Two services cannot publish the same port.
fn check_listeners(listeners: &[SwarmListener]) -> Result<()> {
    let mut seen = BTreeMap::new();
    for l in listeners {
        if let Some(other) = seen.insert(l.published, &l.service) {
            return Err(Error::State(format!(
                "port {} is published by both {other} and {}",
                l.published, l.service
            )));
        }
    }
    Ok(())
}

/// A service's mounts in the long syntax of format 3.8; named volumes are declared at the
/// top level under one name for both colors (`<stack>_<volume>`, as Compose names them), so a
/// singleton handed over on the same node finds its data (Swarm keeps one per node).
fn mounts(
    service: &str,
    given: Option<&Value>,
    volumes: &mut BTreeMap<String, Value>,
    (declared, stack_name): (Option<&Value>, &str),
) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for mount in given.and_then(Value::as_array).into_iter().flatten() {
        let kind = mount
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("volume");
        let target = mount
            .get("target")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::State(format!("service {service}: a volume without a target")))?;
        let mut entry = json!({ "type": kind, "target": target });
        if let Some(source) = mount.get("source").and_then(Value::as_str) {
            entry["source"] = json!(source);
            if kind == "volume" {
                let declared = declared
                    .and_then(|d| d.get(source))
                    .and_then(|d| d.get("external"))
                    .cloned();
                let decl = match declared {
                    Some(external) if external.as_bool() == Some(true) => {
                        json!({ "external": true })
                    }
                    _ => json!({ "name": format!("{stack_name}_{source}") }),
                };
                volumes.insert(source.to_string(), decl);
            }
        }
        if mount.get("read_only").and_then(Value::as_bool) == Some(true) {
            entry["read_only"] = json!(true);
        }
        out.push(entry);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn stack() -> Stack {
        Stack {
            name: "shop".into(),
            dir: PathBuf::from("/srv/shop"),
        }
    }

    fn model() -> Value {
        json!({
            "name": "shop",
            "services": {
                "web": {
                    "image": "app:1",
                    "ports": [{"mode": "ingress", "target": 8080, "published": "80", "protocol": "tcp"}],
                    "restart": "unless-stopped",
                    "networks": {"default": null},
                    "environment": {"A": "1"},
                },
                "bot": {
                    "image": "app:1",
                    "volumes": [{"type": "volume", "source": "state", "target": "/data"}],
                    "labels": {"ztd.switch": "handover"},
                    "healthcheck": {"test": ["CMD", "/app", "probe"], "interval": "1s"},
                    "pull_policy": "never",
                    "privileged": true,
                },
            },
            "networks": {"default": {"name": "shop_default"}},
        })
    }

    #[test]
    fn a_color_runs_on_its_network_with_its_ports_left_to_the_proxy() {
        let plan = render(&model(), &stack(), Color::Green, true, "n1").expect("render");
        assert_eq!(plan.file["version"], "3.8");
        assert_eq!(plan.file["networks"]["default"]["name"], "shop-ztd-green");
        let web = &plan.file["services"]["web"];
        assert!(web.get("ports").is_none());
        assert_eq!(web["environment"]["DEPLOYMENT_COLOR"], "green");
        assert_eq!(web["deploy"]["endpoint_mode"], "dnsrr");
        assert_eq!(web["deploy"]["restart_policy"]["condition"], "any");
        assert_eq!(web["deploy"]["labels"][LABEL_PUBLISH], "80:8080/http");
        assert_eq!(
            plan.listeners,
            vec![SwarmListener {
                service: "web".into(),
                published: 80,
                target: 8080,
                protocol: ProxyProtocol::Http
            }]
        );
        assert_eq!(plan.dropped, vec!["bot.privileged".to_string()]);
    }

    #[test]
    fn a_singleton_waits_at_zero_replicas_only_when_another_color_runs() {
        let waiting = render(&model(), &stack(), Color::Blue, true, "n1").expect("render");
        assert_eq!(waiting.file["services"]["bot"]["deploy"]["replicas"], 0);
        assert_eq!(
            waiting.file["services"]["bot"]["deploy"]["labels"][LABEL_REPLICAS],
            "1"
        );
        assert_eq!(waiting.file["services"]["web"]["deploy"]["replicas"], 1);
        let first = render(&model(), &stack(), Color::Blue, false, "n1").expect("render");
        assert_eq!(first.file["services"]["bot"]["deploy"]["replicas"], 1);
        assert_eq!(
            first.file["services"]["bot"]["deploy"]["placement"]["constraints"],
            json!(["node.id==n1"])
        );
        assert!(
            waiting.file["services"]["bot"]["deploy"]
                .get("placement")
                .is_none()
        );
        // Both colors mount the same named volume.
        assert_eq!(first.file["volumes"]["state"]["name"], "shop_state");
        assert_eq!(
            first.file["services"]["bot"]["volumes"][0]["source"],
            "state"
        );
    }

    #[test]
    fn what_a_swarm_cannot_run_is_refused_by_name() {
        let mut shared = model();
        shared["services"]["db"] = json!({"image": "db:1", "labels": {"ztd.switch": "shared"}});
        let err = render(&shared, &stack(), Color::Blue, true, "n1").expect_err("shared");
        assert!(err.message().contains("db"), "{}", err.message());
        let mut built = model();
        built["services"]["web"]
            .as_object_mut()
            .expect("web")
            .remove("image");
        assert!(render(&built, &stack(), Color::Blue, true, "n1").is_err());
        let mut twice = model();
        twice["services"]["bot"]["deploy"] = json!({"replicas": 2});
        assert!(render(&twice, &stack(), Color::Blue, true, "n1").is_err());
    }

    #[test]
    fn a_listener_label_reads_back() {
        let l = SwarmListener::parse("web", "80:8080/tcp").expect("parse");
        assert_eq!(l.label(), "80:8080/tcp");
        assert!(SwarmListener::parse("web", "x").is_none());
    }
}
