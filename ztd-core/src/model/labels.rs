//! The labels ztd reads and writes: the `deployment.*` labels every colored container carries,
//! Compose's own labels, and the per-service `ztd.*` settings, parsed strictly.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::units::{MemoryLimit, parse_duration, parse_percent};

/// The color a container belongs to.
pub const DEPLOYMENT_COLOR: &str = "deployment.color";
/// The Compose service a container runs.
pub const DEPLOYMENT_SERVICE: &str = "deployment.service";
/// The deploy's version, `<color>-YYYYmmdd-HHMMSS`.
pub const DEPLOYMENT_VERSION: &str = "deployment.version";
/// The deploy's UTC timestamp.
pub const DEPLOYMENT_TIMESTAMP: &str = "deployment.timestamp";
/// Compose's project label.
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
/// Compose's service label.
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
/// Compose's one-off label (`docker compose run` containers carry `True`).
pub const COMPOSE_ONEOFF: &str = "com.docker.compose.oneoff";

/// How a service moves from the old color to the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SwitchMode {
    /// Runs beside the old color; the old one stops after the switch.
    #[default]
    Side,
    /// Traffic moves through the front proxy.
    Proxy,
    /// Never both at once: drain and stop the old one, then start or activate the new one.
    Handover,
    /// Runs once for the whole stack, outside both colors.
    Shared,
}

/// How the front proxy forwards a published TCP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// HTTP: requests are proxied, so a switch lets in-flight requests finish.
    #[default]
    Http,
    /// Plain TCP through nginx's stream module.
    Tcp,
    /// UDP through nginx's stream module (`/udp` ports).
    Udp,
}

/// The default pattern of an error line: error, exception or critical as words, any case.
pub const DEFAULT_LOG_ERROR_PATTERN: &str = r"(?i)\b(error|exception|critical)\b";

/// The default pattern, compiled once.
static DEFAULT_LOG_ERROR_REGEX: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
    // A constant pattern, proven to compile by a unit test below.
    #[allow(clippy::expect_used)]
    Regex::new(DEFAULT_LOG_ERROR_PATTERN).expect("the default log pattern compiles")
});

/// Every `ztd.*` label ztd understands; anything else under `ztd.` is refused as a typo.
pub const KNOWN_LABELS: [&str; 20] = [
    "ztd.switch",
    "ztd.proxy.protocol",
    "ztd.stop.timeout",
    "ztd.drain",
    "ztd.drain.timeout",
    "ztd.activate",
    "ztd.health.http",
    "ztd.health.port",
    "ztd.health.tcp",
    "ztd.health.min_uptime",
    "ztd.health.early",
    "ztd.logs.error",
    "ztd.logs.max_errors",
    "ztd.logs.max_rate",
    "ztd.restarts.max",
    "ztd.memory.max",
    "ztd.cpu.max",
    "ztd.hook.pre-switch",
    "ztd.hook.post-switch",
    "ztd.hook.timeout",
];

/// The `ztd.*` settings of one service.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServiceSettings {
    /// `ztd.switch`.
    pub switch: SwitchMode,
    /// `ztd.proxy.protocol`: how the proxy forwards this service's published TCP ports.
    pub proxy_protocol: ProxyProtocol,
    /// `ztd.stop.timeout`: how long a stop waits before SIGKILL.
    #[serde(skip)]
    pub stop_timeout: Option<Duration>,
    /// `ztd.drain`: argv run in the old container before it stops.
    pub drain: Option<Vec<String>>,
    /// `ztd.drain.timeout`.
    #[serde(skip)]
    pub drain_timeout: Option<Duration>,
    /// `ztd.activate`: argv run in the new container at switch time.
    pub activate: Option<Vec<String>>,
    /// `ztd.health.http`: the path of an HTTP probe.
    pub health_http: Option<String>,
    /// `ztd.health.port`: the port of the HTTP probe.
    pub health_port: Option<u16>,
    /// `ztd.health.tcp`: the port of a TCP probe.
    pub health_tcp: Option<u16>,
    /// `ztd.health.min_uptime`: for containers with no healthcheck and no probe.
    #[serde(skip)]
    pub min_uptime: Option<Duration>,
    /// `ztd.health.early: false`: wait for the engine's own HEALTHCHECK runs, rather than run
    /// the command while the engine says `starting`.
    #[serde(skip)]
    pub health_early: Option<bool>,
    /// `ztd.logs.error`: the pattern of an error line.
    #[serde(skip)]
    pub log_error_pattern: Option<Regex>,
    /// `ztd.logs.max_errors`: error lines allowed before the check fails.
    pub max_log_errors: Option<u64>,
    /// `ztd.logs.max_rate`: new error lines allowed per minute while a color is watched.
    pub max_error_rate: Option<f64>,
    /// `ztd.restarts.max`: restarts allowed.
    pub max_restarts: Option<u64>,
    /// `ztd.memory.max`: a memory ceiling.
    pub max_memory: Option<MemoryLimit>,
    /// `ztd.cpu.max`: a CPU ceiling in percent of one core.
    pub max_cpu: Option<f64>,
    /// `ztd.hook.pre-switch`: argv run in a one-off container of the new color before a switch.
    pub pre_switch: Option<Vec<String>>,
    /// `ztd.hook.post-switch`: argv run in a one-off container of the color made active.
    pub post_switch: Option<Vec<String>>,
    /// `ztd.hook.timeout`: how long a hook may run (default [`DEFAULT_HOOK_TIMEOUT`]).
    #[serde(skip)]
    pub hook_timeout: Option<Duration>,
}

/// How long a hook may run when `ztd.hook.timeout` is not set.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(60);

impl ServiceSettings {
    /// The pattern of an error line of this service: `ztd.logs.error`, else the default.
    pub fn error_pattern(&self) -> &Regex {
        self.log_error_pattern
            .as_ref()
            .unwrap_or(&DEFAULT_LOG_ERROR_REGEX)
    }

    /// Parse the `ztd.*` labels of a container or service. A bad value or an unknown `ztd.*` key
    /// is a configuration error (exit 5) that names the service and the label.
    pub fn from_labels<'a>(
        service: &str,
        labels: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<ServiceSettings> {
        let mut settings = ServiceSettings::default();
        for (key, value) in labels {
            if !key.starts_with("ztd.") {
                continue;
            }
            let bad = |why: String| {
                Error::State(format!(
                    "service {service}: label {key}={value:?} is invalid: {why}"
                ))
            };
            match key.as_str() {
                "ztd.switch" => {
                    settings.switch = match value.as_str() {
                        "proxy" => SwitchMode::Proxy,
                        "handover" => SwitchMode::Handover,
                        "shared" => SwitchMode::Shared,
                        "" => SwitchMode::Side,
                        _ => return Err(bad("expected proxy, handover or shared".into())),
                    }
                }
                "ztd.proxy.protocol" => {
                    settings.proxy_protocol = match value.as_str() {
                        "http" => ProxyProtocol::Http,
                        "tcp" => ProxyProtocol::Tcp,
                        _ => return Err(bad("expected http or tcp".into())),
                    }
                }
                "ztd.stop.timeout" => {
                    settings.stop_timeout = Some(parse_duration(value).map_err(bad)?)
                }
                "ztd.drain" => settings.drain = Some(parse_command(value).map_err(bad)?),
                "ztd.drain.timeout" => {
                    settings.drain_timeout = Some(parse_duration(value).map_err(bad)?)
                }
                "ztd.activate" => settings.activate = Some(parse_command(value).map_err(bad)?),
                "ztd.health.http" => {
                    if !value.starts_with('/') || value.chars().any(char::is_whitespace) {
                        return Err(bad("expected a path such as /health".into()));
                    }
                    settings.health_http = Some(value.clone());
                }
                "ztd.health.port" => settings.health_port = Some(parse_port(value).map_err(bad)?),
                "ztd.health.tcp" => settings.health_tcp = Some(parse_port(value).map_err(bad)?),
                "ztd.health.min_uptime" => {
                    settings.min_uptime = Some(parse_duration(value).map_err(bad)?)
                }
                "ztd.health.early" => {
                    settings.health_early = Some(match value.trim() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad("expected true or false".into())),
                    })
                }
                "ztd.logs.error" => {
                    settings.log_error_pattern = Some(
                        Regex::new(value)
                            .map_err(|e| bad(crate::error::one_line(&e.to_string())))?,
                    )
                }
                "ztd.logs.max_errors" => {
                    settings.max_log_errors = Some(parse_count(value).map_err(bad)?)
                }
                "ztd.logs.max_rate" => {
                    settings.max_error_rate =
                        Some(parse_percent(value).map_err(|_| {
                            bad("expected a number of error lines per minute".into())
                        })?)
                }
                "ztd.restarts.max" => {
                    settings.max_restarts = Some(parse_count(value).map_err(bad)?)
                }
                "ztd.memory.max" => {
                    settings.max_memory = Some(MemoryLimit::parse(value).map_err(bad)?)
                }
                "ztd.cpu.max" => settings.max_cpu = Some(parse_percent(value).map_err(bad)?),
                "ztd.hook.pre-switch" => {
                    settings.pre_switch = Some(parse_command(value).map_err(bad)?)
                }
                "ztd.hook.post-switch" => {
                    settings.post_switch = Some(parse_command(value).map_err(bad)?)
                }
                "ztd.hook.timeout" => {
                    settings.hook_timeout = Some(parse_duration(value).map_err(bad)?)
                }
                _ => {
                    return Err(Error::State(format!(
                        "service {service}: unknown label {key} (known: {})",
                        KNOWN_LABELS.join(", ")
                    )));
                }
            }
        }
        if settings.health_port.is_some() && settings.health_http.is_none() {
            return Err(Error::State(format!(
                "service {service}: ztd.health.port is set but ztd.health.http is not"
            )));
        }
        Ok(settings)
    }
}

fn parse_port(value: &str) -> Result<u16, String> {
    match value.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err("expected a port between 1 and 65535".into()),
    }
}

fn parse_count(value: &str) -> Result<u64, String> {
    value
        .trim()
        .parse::<u64>()
        .map_err(|_| "expected a whole number".into())
}

/// Parse a command label into argv: a JSON array (`["app", "drain"]`) or words separated by
/// spaces, with single or double quotes grouping words. No shell is involved unless the command
/// itself is `sh -c ...`; nothing is expanded.
pub fn parse_command(value: &str) -> Result<Vec<String>, String> {
    let trimmed = value.trim();
    let argv: Vec<String> = if trimmed.starts_with('[') {
        serde_json::from_str(trimmed).map_err(|e| format!("bad JSON argv: {e}"))?
    } else {
        split_words(trimmed)?
    };
    if argv.is_empty() || argv[0].is_empty() {
        return Err("empty command".into());
    }
    Ok(argv)
}

fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => match chars.next() {
                Some(escaped) => word.push(escaped),
                None => return Err("unfinished escape".into()),
            },
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => match chars.next() {
                Some(escaped) => {
                    word.push(escaped);
                    in_word = true;
                }
                None => return Err("unfinished escape".into()),
            },
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unclosed quote".into());
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Labels as an ordered map (stable JSON output).
pub type Labels = BTreeMap<String, String>;

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<ServiceSettings> {
        let labels: Labels = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ServiceSettings::from_labels("web", &labels)
    }

    #[test]
    fn health_early_is_true_or_false_and_nothing_else() {
        let parse = |v: &str| {
            let labels = [("ztd.health.early".to_string(), v.to_string())];
            ServiceSettings::from_labels("bot", labels.iter().map(|(k, v)| (k, v)))
        };
        assert_eq!(parse("false").expect("false").health_early, Some(false));
        assert_eq!(parse("true").expect("true").health_early, Some(true));
        let err = parse("no").expect_err("refused");
        assert!(
            err.message().contains("ztd.health.early"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn a_full_set_of_labels_parses() {
        let s = settings(&[
            ("ztd.switch", "handover"),
            ("ztd.drain", "app drain --grace '10 s'"),
            ("ztd.activate", r#"["app","activate"]"#),
            ("ztd.health.http", "/health"),
            ("ztd.health.port", "8080"),
            ("ztd.logs.error", "FATAL|panic"),
            ("ztd.logs.max_errors", "3"),
            ("ztd.restarts.max", "1"),
            ("ztd.memory.max", "80%"),
            ("ztd.cpu.max", "150"),
            ("ztd.hook.pre-switch", "app migrate --check"),
            ("ztd.hook.post-switch", r#"["sh","-c","echo done"]"#),
            ("ztd.hook.timeout", "90s"),
            ("com.example.other", "ignored"),
        ])
        .expect("valid labels");
        assert_eq!(s.switch, SwitchMode::Handover);
        assert_eq!(
            s.drain,
            Some(vec![
                "app".into(),
                "drain".into(),
                "--grace".into(),
                "10 s".into()
            ])
        );
        assert_eq!(s.activate, Some(vec!["app".into(), "activate".into()]));
        assert_eq!(
            s.pre_switch,
            Some(vec!["app".into(), "migrate".into(), "--check".into()])
        );
        assert_eq!(
            s.post_switch,
            Some(vec!["sh".into(), "-c".into(), "echo done".into()])
        );
        assert_eq!(s.hook_timeout, Some(Duration::from_secs(90)));
        assert_eq!(s.health_port, Some(8080));
        assert_eq!(s.max_log_errors, Some(3));
        assert_eq!(s.max_memory, Some(MemoryLimit::Percent(80.0)));
        assert!(
            s.log_error_pattern
                .expect("pattern")
                .is_match("a panic here")
        );
    }

    #[test]
    fn bad_values_and_unknown_keys_are_config_errors() {
        for pair in [
            ("ztd.switch", "blue-green"),
            ("ztd.health.port", "0"),
            ("ztd.health.port", "70000"),
            ("ztd.health.tcp", "http"),
            ("ztd.health.http", "health"),
            ("ztd.logs.error", "(unclosed"),
            ("ztd.logs.max_errors", "-1"),
            ("ztd.memory.max", "lots"),
            ("ztd.drain", "   "),
            ("ztd.drain", "sh -c 'unclosed"),
            ("ztd.hook.pre-switch", ""),
            ("ztd.hook.post-switch", "sh -c 'unclosed"),
            ("ztd.hook.timeout", "soon"),
            ("ztd.health.htp", "/health"),
        ] {
            let err = settings(&[pair]).expect_err(pair.0);
            assert!(matches!(err, Error::State(_)), "{pair:?}: {err:?}");
            assert!(err.message().contains(pair.0), "{err}");
        }
    }

    #[test]
    fn the_default_error_pattern_matches_error_words_only() {
        let pattern = ServiceSettings::default();
        assert!(pattern.error_pattern().is_match("ERROR: db down"));
        assert!(pattern.error_pattern().is_match("an Exception was raised"));
        assert!(!pattern.error_pattern().is_match("errorless terrors"));
    }

    #[test]
    fn commands_split_like_argv_without_a_shell() {
        assert_eq!(
            parse_command(r#"sh -c "echo \"hi\"; exit 3""#),
            Ok(vec![
                "sh".into(),
                "-c".into(),
                r#"echo "hi"; exit 3"#.into()
            ])
        );
        assert_eq!(
            parse_command("a  b\tc"),
            Ok(vec!["a".into(), "b".into(), "c".into()])
        );
        assert!(parse_command("[1, 2]").is_err());
    }
}
