//! Per-service `ztd.*` settings given outside the service definitions: the compose file's
//! top-level `x-ztd:` block and the `ZTD_HANDOVER` / `ZTD_DRAIN_<SERVICE>` environment. They are
//! merged under the service's own labels and written onto the rendered service as labels, so
//! every later reader (which reads container labels) sees them.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::labels::KNOWN_LABELS;
use crate::warn;

/// Settings from the environment, applied where neither the service's labels nor `x-ztd` set
/// the same key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvSettings {
    /// `ZTD_HANDOVER=svc1,svc2`: services treated as `ztd.switch=handover`.
    pub handover: Vec<String>,
    /// `ZTD_DRAIN_<SERVICE>=command`: `ztd.drain` of a service, keyed by the variable's suffix
    /// (the service name upper-cased, every character other than a letter or digit as `_`).
    pub drain: BTreeMap<String, String>,
}

impl EnvSettings {
    /// Read `ZTD_HANDOVER` and `ZTD_DRAIN_*` from the process environment.
    pub fn from_env() -> Result<EnvSettings> {
        Self::from_vars(std::env::vars())
    }

    /// Read them from a list of variables. A malformed `ZTD_HANDOVER` is a usage error.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<EnvSettings> {
        let mut settings = EnvSettings::default();
        for (key, value) in vars {
            if key == "ZTD_HANDOVER" {
                settings.handover = parse_handover(&value)?;
            } else if let Some(suffix) = key.strip_prefix("ZTD_DRAIN_") {
                if !value.trim().is_empty() {
                    settings.drain.insert(suffix.to_string(), value);
                }
            }
        }
        Ok(settings)
    }
}

/// Parse `ZTD_HANDOVER`: service names separated by commas (spaces around them ignored).
pub fn parse_handover(value: &str) -> Result<Vec<String>> {
    if value.trim().is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|name| {
            let name = name.trim();
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if valid {
                Ok(name.to_string())
            } else {
                Err(Error::Usage(format!(
                    "ZTD_HANDOVER={value:?} is invalid: expected service names separated by commas"
                )))
            }
        })
        .collect()
}

/// The environment variable that sets the drain of `service`: `ZTD_DRAIN_` and the name
/// upper-cased with every character other than a letter or digit as `_`.
pub fn drain_variable(service: &str) -> String {
    let suffix: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("ZTD_DRAIN_{suffix}")
}

/// The `x-ztd` block of a resolved compose model: service name to `ztd.*` label to value.
/// Accepted shape: `x-ztd: {services: {NAME: {switch: handover, drain: "...", ...}}}`, each key
/// a `ztd.*` label with or without its `ztd.` prefix, each value a string, number or boolean.
pub fn x_ztd_labels(config: &Value) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
    let mut out = BTreeMap::new();
    let Some(block) = config.get("x-ztd") else {
        return Ok(out);
    };
    let bad = |why: String| Error::State(format!("x-ztd is invalid: {why}"));
    let Some(block) = block.as_object() else {
        return Err(bad("expected a mapping with a services key".into()));
    };
    for key in block.keys() {
        if key != "services" {
            return Err(bad(format!("unknown key {key} (expected services)")));
        }
    }
    let services = match block.get("services") {
        None | Some(Value::Null) => return Ok(out),
        Some(Value::Object(services)) => services,
        Some(_) => return Err(bad("services must map service names to settings".into())),
    };
    for (service, settings) in services {
        let settings = match settings {
            Value::Null => continue,
            Value::Object(settings) => settings,
            _ => {
                return Err(bad(format!(
                    "services.{service} must be a mapping such as {{switch: handover}}"
                )));
            }
        };
        let mut labels = BTreeMap::new();
        for (key, value) in settings {
            let label = if key.starts_with("ztd.") {
                key.clone()
            } else {
                format!("ztd.{key}")
            };
            if !KNOWN_LABELS.contains(&label.as_str()) {
                return Err(bad(format!(
                    "services.{service}.{key} is not a ztd setting (known: {})",
                    KNOWN_LABELS
                        .iter()
                        .map(|l| l.trim_start_matches("ztd."))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(bad(format!(
                        "services.{service}.{key} must be a string, number or boolean"
                    )));
                }
            };
            labels.insert(label, text);
        }
        out.insert(service.clone(), labels);
    }
    Ok(out)
}

/// Service name to its labels after the merge.
pub type Merged = BTreeMap<String, BTreeMap<String, String>>;

/// Merge the settings into the services' labels: the service's own labels win over `x-ztd`,
/// which wins over the environment. Names that match no service (not defined, or behind an
/// inactive profile) are warned about and skipped.
pub fn merge(
    services: &serde_json::Map<String, Value>,
    x_ztd: &BTreeMap<String, BTreeMap<String, String>>,
    env: &EnvSettings,
    own_labels: impl Fn(&Value) -> BTreeMap<String, String>,
) -> Merged {
    for name in x_ztd.keys() {
        if !services.contains_key(name) {
            warn!(
                "x-ztd names service {name}, which this project does not run (undefined or behind an inactive profile)"
            );
        }
    }
    for name in &env.handover {
        if !services.contains_key(name) {
            warn!(
                "ZTD_HANDOVER names service {name}, which this project does not run (undefined or behind an inactive profile)"
            );
        }
    }
    for suffix in env.drain.keys() {
        if !services
            .keys()
            .any(|s| drain_variable(s) == format!("ZTD_DRAIN_{suffix}"))
        {
            warn!("ZTD_DRAIN_{suffix} matches no service of this project");
        }
    }
    let mut merged = Merged::default();
    for (name, service) in services {
        let own = own_labels(service);
        let mut labels = own.clone();
        if let Some(extra) = x_ztd.get(name) {
            for (key, value) in extra {
                labels.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
        if env.handover.iter().any(|h| h == name) {
            match labels.get("ztd.switch").map(String::as_str) {
                None | Some("") => {
                    labels.insert("ztd.switch".into(), "handover".into());
                }
                Some("handover") => {}
                Some(other) => warn!(
                    "ZTD_HANDOVER names {name}, but the compose file sets ztd.switch={other}, which wins"
                ),
            }
        }
        if let Some(drain) = env.drain.iter().find_map(|(suffix, command)| {
            (drain_variable(name) == format!("ZTD_DRAIN_{suffix}")).then_some(command)
        }) {
            labels
                .entry("ztd.drain".into())
                .or_insert_with(|| drain.clone());
        }
        merged.insert(name.clone(), labels);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn handover_lists_are_names_separated_by_commas() {
        assert_eq!(
            parse_handover(" bot , ai-trading-bot").expect("ok"),
            vec!["bot".to_string(), "ai-trading-bot".to_string()]
        );
        assert!(parse_handover("").expect("empty").is_empty());
        for bad in ["bot,,x", "bot;rm", ",", "a b"] {
            assert!(
                matches!(parse_handover(bad), Err(Error::Usage(_))),
                "{bad} must be refused"
            );
        }
    }

    #[test]
    fn drain_variables_upper_case_the_service_name() {
        assert_eq!(drain_variable("ai-trading-bot"), "ZTD_DRAIN_AI_TRADING_BOT");
        let env = EnvSettings::from_vars(vars(&[
            ("ZTD_DRAIN_AI_TRADING_BOT", "python -m x"),
            ("ZTD_DRAIN_EMPTY", " "),
            ("PATH", "/bin"),
        ]))
        .expect("env");
        assert_eq!(env.drain.len(), 1);
        assert!(EnvSettings::from_vars(vars(&[("ZTD_HANDOVER", "a,,b")])).is_err());
    }

    #[test]
    fn x_ztd_takes_settings_with_or_without_the_prefix_and_refuses_the_rest() {
        let config = json!({"x-ztd": {"services": {"bot": {"switch": "handover", "ztd.drain.timeout": "20s", "stop.timeout": 30}}}});
        let labels = x_ztd_labels(&config).expect("ok");
        assert_eq!(labels["bot"]["ztd.switch"], "handover");
        assert_eq!(labels["bot"]["ztd.drain.timeout"], "20s");
        assert_eq!(labels["bot"]["ztd.stop.timeout"], "30");
        let hooks = json!({"x-ztd": {"services": {"web": {"hook.pre-switch": "app check", "ztd.hook.post-switch": "app warm", "hook.timeout": "2m"}}}});
        let labels = x_ztd_labels(&hooks).expect("hooks");
        assert_eq!(labels["web"]["ztd.hook.pre-switch"], "app check");
        assert_eq!(labels["web"]["ztd.hook.post-switch"], "app warm");
        assert_eq!(labels["web"]["ztd.hook.timeout"], "2m");
        for bad in [
            json!({"x-ztd": "handover"}),
            json!({"x-ztd": {"bot": {}}}),
            json!({"x-ztd": {"services": ["bot"]}}),
            json!({"x-ztd": {"services": {"bot": "handover"}}}),
            json!({"x-ztd": {"services": {"bot": {"swtich": "handover"}}}}),
            json!({"x-ztd": {"services": {"bot": {"drain": ["a"]}}}}),
        ] {
            assert!(
                matches!(x_ztd_labels(&bad), Err(Error::State(_))),
                "{bad} must be refused"
            );
        }
        assert!(x_ztd_labels(&json!({})).expect("none").is_empty());
    }

    #[test]
    fn labels_win_over_x_ztd_which_wins_over_the_environment() {
        let services = json!({
            "a": {"labels": {"ztd.switch": "proxy"}},
            "b": {},
            "c": {"labels": {"ztd.drain": "own"}},
            "d": {}
        });
        let services = services.as_object().expect("map");
        let x = x_ztd_labels(&json!({"x-ztd": {"services": {
            "a": {"switch": "handover"},
            "b": {"switch": "shared", "drain": "from-x"},
        }}}))
        .expect("x");
        let env = EnvSettings::from_vars(vars(&[
            ("ZTD_HANDOVER", "a,b,c,d,gone"),
            ("ZTD_DRAIN_C", "from-env"),
            ("ZTD_DRAIN_D", "from-env"),
        ]))
        .expect("env");
        let merged = merge(services, &x, &env, |s| {
            s.get("labels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default()
        });
        assert_eq!(merged["a"]["ztd.switch"], "proxy");
        assert_eq!(merged["b"]["ztd.switch"], "shared");
        assert_eq!(merged["b"]["ztd.drain"], "from-x");
        assert_eq!(merged["c"]["ztd.switch"], "handover");
        assert_eq!(merged["c"]["ztd.drain"], "own");
        assert_eq!(merged["d"]["ztd.switch"], "handover");
        assert_eq!(merged["d"]["ztd.drain"], "from-env");
    }
}
