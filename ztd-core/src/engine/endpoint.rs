//! Which Docker engine a run talks to, found once as the docker CLI finds it (`DOCKER_HOST`,
//! else `DOCKER_CONTEXT`, else the current context of `$DOCKER_CONFIG/config.json`), so that
//! ztd's own engine calls and every Compose child it starts land on the engine `docker` uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The engine's address when nothing names another.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// The context that stands for `DOCKER_HOST` or the default socket.
pub const DEFAULT_CONTEXT: &str = "default";
/// The port of a `tcp://` host that names none (Docker's plain HTTP port).
const DEFAULT_TCP_PORT: u16 = 2375;
/// The engine's port over TLS when the address names none, as for the docker CLI.
const DEFAULT_TLS_PORT: u16 = 2376;

/// The variables the resolution reads, by name.
pub type EnvMap = BTreeMap<String, String>;

/// The variables of the process that decide the engine (the resolver reads no other state).
const VARS: [&str; 7] = [
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
    "DOCKER_TLS_VERIFY",
    "DOCKER_TLS",
    "DOCKER_CERT_PATH",
    "HOME",
];

/// Where an endpoint's address came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The `DOCKER_HOST` variable.
    DockerHost,
    /// A named context (from `DOCKER_CONTEXT` or the config's `currentContext`).
    Context(String),
    /// Nothing set: the default socket.
    Default,
}

/// TLS settings of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// The directory holding `ca.pem`, `cert.pem` and `key.pem` (`DOCKER_CERT_PATH`'s meaning).
    pub cert_dir: PathBuf,
    /// Whether the engine's certificate is verified.
    pub verify: bool,
}

/// How the engine is reached, as ztd supports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A unix socket at this path.
    Unix(String),
    /// Plain HTTP to this `host:port`.
    Http(String),
    /// HTTPS to this `host:port`, the engine's certificate checked against `ca`, this client
    /// known by `cert` and `key` (PEM files, as `DOCKER_CERT_PATH` holds them).
    Tls {
        /// `host:port`.
        address: String,
        /// The CA that signed the engine's certificate.
        ca: PathBuf,
        /// The client certificate.
        cert: PathBuf,
        /// The client key.
        key: PathBuf,
    },
}

/// The engine of a run: resolved once, used by the engine client and every Compose child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The engine's address (`unix:///…`, `tcp://host:port`, `ssh://…`).
    pub host: String,
    /// Where it came from.
    pub source: Source,
    /// TLS, when the address is reached with it.
    pub tls: Option<Tls>,
}

/// A context's `meta.json`, the part ztd reads.
#[derive(Debug, Deserialize)]
struct ContextMeta {
    #[serde(rename = "Endpoints", default)]
    endpoints: BTreeMap<String, ContextEndpoint>,
}

#[derive(Debug, Deserialize)]
struct ContextEndpoint {
    #[serde(rename = "Host", default)]
    host: Option<String>,
    #[serde(rename = "SkipTLSVerify", default)]
    skip_tls_verify: bool,
}

/// The part of `config.json` ztd reads.
#[derive(Debug, Deserialize)]
struct ConfigFile {
    #[serde(rename = "currentContext", default)]
    current_context: Option<String>,
}

/// A set, non-empty variable.
fn var<'a>(env: &'a EnvMap, name: &str) -> Option<&'a str> {
    env.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

/// `$DOCKER_CONFIG`, else `~/.docker`; none when neither can be known.
fn config_dir(env: &EnvMap) -> Option<PathBuf> {
    var(env, "DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| var(env, "HOME").map(|home| Path::new(home).join(".docker")))
}

/// The directory name of a context in the store: the hex SHA-256 of its name.
pub fn context_digest(name: &str) -> String {
    Sha256::digest(name.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn unreachable(message: String) -> Error {
    Error::EngineUnreachable(message)
}

impl Endpoint {
    /// Resolve from this process's environment.
    pub fn from_process_env() -> Result<Endpoint> {
        let env: EnvMap = VARS
            .iter()
            .filter_map(|name| Some((name.to_string(), std::env::var(name).ok()?)))
            .collect();
        Endpoint::resolve(&env)
    }

    /// Resolve as the docker CLI does, from `env` and the files it names: `DOCKER_HOST`, else
    /// `DOCKER_CONTEXT`, else `currentContext` in `$DOCKER_CONFIG/config.json`, else the
    /// default socket. A context that does not exist is an unreachable engine (exit 3).
    pub fn resolve(env: &EnvMap) -> Result<Endpoint> {
        if let Some(host) = var(env, "DOCKER_HOST") {
            return Ok(Endpoint::from_host_env(env, host, Source::DockerHost));
        }
        let config = config_dir(env);
        let name = match var(env, "DOCKER_CONTEXT") {
            Some(name) => name.to_string(),
            None => current_context(config.as_deref())?,
        };
        if name == DEFAULT_CONTEXT {
            return Ok(Endpoint {
                host: DEFAULT_HOST.to_string(),
                source: Source::Default,
                tls: None,
            });
        }
        Endpoint::from_context(config.as_deref(), &name)
    }

    /// `DOCKER_HOST`, with TLS from `DOCKER_TLS_VERIFY` / `DOCKER_TLS` and `DOCKER_CERT_PATH`.
    fn from_host_env(env: &EnvMap, host: &str, source: Source) -> Endpoint {
        let verify = var(env, "DOCKER_TLS_VERIFY").is_some();
        let wanted = verify || var(env, "DOCKER_TLS").is_some();
        let tls = (wanted && is_tcp(host)).then(|| Tls {
            cert_dir: var(env, "DOCKER_CERT_PATH")
                .map(PathBuf::from)
                .or_else(|| config_dir(env))
                .unwrap_or_default(),
            verify,
        });
        Endpoint {
            host: host.to_string(),
            source,
            tls,
        }
    }

    /// A named context from the store under `config`.
    fn from_context(config: Option<&Path>, name: &str) -> Result<Endpoint> {
        let digest = context_digest(name);
        let Some(config) = config else {
            return Err(unreachable(format!(
                "context \"{name}\" does not exist (neither DOCKER_CONFIG nor HOME is set)"
            )));
        };
        let meta_path = config
            .join("contexts")
            .join("meta")
            .join(&digest)
            .join("meta.json");
        let text = match std::fs::read_to_string(&meta_path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(unreachable(format!(
                    "context \"{name}\" does not exist (no {}): list them with `docker context ls`",
                    meta_path.display()
                )));
            }
            Err(err) => {
                return Err(unreachable(format!(
                    "cannot read context \"{name}\" at {}: {err}",
                    meta_path.display()
                )));
            }
        };
        let meta: ContextMeta = serde_json::from_str(&text).map_err(|err| {
            unreachable(format!(
                "context \"{name}\" is unreadable ({}): {err}",
                meta_path.display()
            ))
        })?;
        let Some(docker) = meta.endpoints.get("docker") else {
            return Err(unreachable(format!(
                "context \"{name}\" has no docker endpoint ({})",
                meta_path.display()
            )));
        };
        let host = docker
            .host
            .as_deref()
            .filter(|h| !h.is_empty())
            .unwrap_or(DEFAULT_HOST)
            .to_string();
        let cert_dir = config
            .join("contexts")
            .join("tls")
            .join(&digest)
            .join("docker");
        let material = ["ca.pem", "cert.pem", "key.pem"]
            .iter()
            .any(|file| cert_dir.join(file).exists());
        let tls = (is_tcp(&host) && (material || docker.skip_tls_verify)).then_some(Tls {
            cert_dir,
            verify: !docker.skip_tls_verify,
        });
        Ok(Endpoint {
            host,
            source: Source::Context(name.to_string()),
            tls,
        })
    }

    /// The address with where it came from, for messages.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::DockerHost => format!("{} (DOCKER_HOST)", self.host),
            Source::Context(name) => format!("{} (context \"{name}\")", self.host),
            Source::Default => self.host.clone(),
        }
    }

    /// How ztd reaches this engine; the schemes and modes it cannot use are refused with one
    /// line that says what to do instead.
    pub fn transport(&self) -> Result<Transport> {
        let host = self.host.as_str();
        if let Some(path) = host.strip_prefix("unix://") {
            let path = if path.is_empty() {
                DEFAULT_HOST.trim_start_matches("unix://")
            } else {
                path
            };
            return Ok(Transport::Unix(path.to_string()));
        }
        if let Some(rest) = host
            .strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("http://"))
        {
            let address = rest.trim_end_matches('/');
            if address.is_empty() {
                return Err(unreachable(format!(
                    "the Docker host {} names no address",
                    self.describe()
                )));
            }
            let Some(tls) = &self.tls else {
                return Ok(Transport::Http(with_port(address, DEFAULT_TCP_PORT)));
            };
            if !tls.verify {
                return Err(unreachable(format!(
                    "the Docker engine at {} asks for TLS without checking the engine's certificate (DOCKER_TLS without DOCKER_TLS_VERIFY, or SkipTLSVerify), which ztd does not do: set DOCKER_TLS_VERIFY=1 with the engine's CA in {}",
                    self.describe(),
                    tls.cert_dir.join("ca.pem").display()
                )));
            }
            let [ca, cert, key] = ["ca.pem", "cert.pem", "key.pem"].map(|f| tls.cert_dir.join(f));
            if let Some(missing) = [&ca, &cert, &key].into_iter().find(|p| !p.is_file()) {
                return Err(unreachable(format!(
                    "the Docker engine at {} is reached with TLS, but {} is missing (DOCKER_CERT_PATH or the context's TLS folder holds ca.pem, cert.pem and key.pem)",
                    self.describe(),
                    missing.display()
                )));
            }
            return Ok(Transport::Tls {
                address: with_port(address, DEFAULT_TLS_PORT),
                ca,
                cert,
                key,
            });
        }
        if host.starts_with("ssh://") {
            return Err(unreachable(format!(
                "ssh:// engines are not supported ({}): tunnel the socket instead (`ssh -L /tmp/docker.sock:/var/run/docker.sock HOST`, then DOCKER_HOST=unix:///tmp/docker.sock), or use a context over a unix socket or tcp://",
                self.describe()
            )));
        }
        Err(unreachable(format!(
            "unsupported Docker host {}: ztd talks to unix:// and tcp:// engines",
            self.describe()
        )))
    }

    /// Whether containers' addresses can be reached from here: a unix socket, or tcp:// to
    /// this machine.
    pub fn is_local(&self) -> bool {
        let host = self.host.as_str();
        if host.starts_with("unix://") {
            return true;
        }
        let Some(rest) = host
            .strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("http://"))
        else {
            return false;
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let name = match authority.strip_prefix('[') {
            Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
            None => authority.split(':').next().unwrap_or_default(),
        };
        name.eq_ignore_ascii_case("localhost")
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// What a Compose child's environment must say so it talks to this same engine: each
    /// variable set (`Some`) or removed (`None`). `DOCKER_CONTEXT` is always removed.
    pub fn child_env(&self) -> Vec<(&'static str, Option<String>)> {
        let mut vars = vec![
            ("DOCKER_HOST", Some(self.host.clone())),
            ("DOCKER_CONTEXT", None),
        ];
        match &self.tls {
            Some(tls) => {
                vars.push(("DOCKER_CERT_PATH", Some(tls.cert_dir.display().to_string())));
                if tls.verify {
                    vars.push(("DOCKER_TLS_VERIFY", Some("1".into())));
                    vars.push(("DOCKER_TLS", None));
                } else {
                    vars.push(("DOCKER_TLS_VERIFY", None));
                    vars.push(("DOCKER_TLS", Some("1".into())));
                }
            }
            None => {
                vars.push(("DOCKER_TLS_VERIFY", None));
                vars.push(("DOCKER_TLS", None));
                vars.push(("DOCKER_CERT_PATH", None));
            }
        }
        vars
    }

    /// The line said once when the engine is remote: which checks cannot run from here.
    pub fn remote_note(&self) -> Option<String> {
        (!self.is_local()).then(|| {
            format!(
                "the engine at {} is remote: HTTP/TCP probes to container addresses are skipped; Docker health, state, logs and restarts are still checked",
                self.host
            )
        })
    }
}

/// `currentContext` of `config.json`; `default` when there is no file or no such key.
fn current_context(config: Option<&Path>) -> Result<String> {
    let Some(config) = config else {
        return Ok(DEFAULT_CONTEXT.to_string());
    };
    let path = config.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(DEFAULT_CONTEXT.to_string());
        }
        Err(err) => {
            return Err(unreachable(format!(
                "cannot read the docker config {}: {err}",
                path.display()
            )));
        }
    };
    if text.trim().is_empty() {
        return Ok(DEFAULT_CONTEXT.to_string());
    }
    let file: ConfigFile = serde_json::from_str(&text).map_err(|err| {
        unreachable(format!(
            "the docker config {} is unreadable: {err}",
            path.display()
        ))
    })?;
    Ok(file
        .current_context
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| DEFAULT_CONTEXT.to_string()))
}

fn is_tcp(host: &str) -> bool {
    host.starts_with("tcp://") || host.starts_with("http://")
}

/// `address` with `port` added when it names none.
fn with_port(address: &str, port: u16) -> String {
    let has_port = match address.rfind(']') {
        Some(end) => address[end..].contains(':'),
        None => address.contains(':'),
    };
    if has_port {
        address.to_string()
    } else {
        format!("{address}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporary DOCKER_CONFIG, removed when dropped.
    struct TempConfig(PathBuf);

    impl TempConfig {
        fn new(tag: &str) -> TempConfig {
            let dir =
                std::env::temp_dir().join(format!("ztd-endpoint-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("temp dir");
            TempConfig(dir)
        }

        fn env(&self, vars: &[(&str, &str)]) -> EnvMap {
            let mut env: EnvMap = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            env.insert("DOCKER_CONFIG".into(), self.0.display().to_string());
            env
        }

        fn current(&self, name: &str) {
            std::fs::write(
                self.0.join("config.json"),
                format!("{{\"auths\":{{}},\"currentContext\":\"{name}\"}}"),
            )
            .expect("config.json");
        }

        fn context(&self, name: &str, host: &str, skip_verify: bool) -> PathBuf {
            let dir = self.0.join("contexts/meta").join(context_digest(name));
            std::fs::create_dir_all(&dir).expect("meta dir");
            std::fs::write(
                dir.join("meta.json"),
                format!(
                    "{{\"Name\":\"{name}\",\"Metadata\":{{\"Description\":\"\"}},\"Endpoints\":{{\"docker\":{{\"Host\":\"{host}\",\"SkipTLSVerify\":{skip_verify}}}}}}}"
                ),
            )
            .expect("meta.json");
            self.0
                .join("contexts/tls")
                .join(context_digest(name))
                .join("docker")
        }
    }

    impl Drop for TempConfig {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn context_directories_are_the_sha256_of_the_name() {
        // As `docker context create` names them.
        assert_eq!(
            context_digest("nosuch"),
            "9e62f93eb7d2499903ac66232f187c56fc050eb74c765f90eb214360b21f0e96"
        );
        assert_eq!(
            context_digest(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn nothing_set_is_the_default_socket() {
        let config = TempConfig::new("none");
        let endpoint = Endpoint::resolve(&config.env(&[])).expect("default");
        assert_eq!(endpoint.host, DEFAULT_HOST);
        assert_eq!(endpoint.source, Source::Default);
        assert_eq!(endpoint.tls, None);
        // No DOCKER_CONFIG and no HOME: still the default.
        assert_eq!(
            Endpoint::resolve(&EnvMap::new()).expect("default").host,
            DEFAULT_HOST
        );
    }

    #[test]
    fn docker_host_wins_over_the_context_variable_and_the_config() {
        let config = TempConfig::new("host");
        config.current("remote");
        config.context("remote", "tcp://10.0.0.9:2375", false);
        let env = config.env(&[
            ("DOCKER_HOST", "unix:///tmp/other.sock"),
            ("DOCKER_CONTEXT", "no-such-context"),
        ]);
        let endpoint = Endpoint::resolve(&env).expect("DOCKER_HOST");
        assert_eq!(endpoint.host, "unix:///tmp/other.sock");
        assert_eq!(endpoint.source, Source::DockerHost);
        // An empty DOCKER_HOST counts as unset.
        let env = config.env(&[("DOCKER_HOST", "")]);
        assert_eq!(
            Endpoint::resolve(&env).expect("context").host,
            "tcp://10.0.0.9:2375"
        );
    }

    #[test]
    fn the_context_variable_wins_over_the_current_context() {
        let config = TempConfig::new("ctxvar");
        config.current("remote");
        config.context("remote", "tcp://10.0.0.9:2375", false);
        config.context("local", "unix:///run/user/0/docker.sock", false);
        let env = config.env(&[("DOCKER_CONTEXT", "local")]);
        let endpoint = Endpoint::resolve(&env).expect("local");
        assert_eq!(endpoint.host, "unix:///run/user/0/docker.sock");
        assert_eq!(endpoint.source, Source::Context("local".into()));
        let endpoint = Endpoint::resolve(&config.env(&[])).expect("current");
        assert_eq!(endpoint.host, "tcp://10.0.0.9:2375");
        assert_eq!(endpoint.source, Source::Context("remote".into()));
        assert_eq!(endpoint.tls, None);
    }

    #[test]
    fn the_default_context_is_the_default_socket() {
        let config = TempConfig::new("default");
        config.current("remote");
        let env = config.env(&[("DOCKER_CONTEXT", "default")]);
        assert_eq!(Endpoint::resolve(&env).expect("default").host, DEFAULT_HOST);
        config.current("default");
        assert_eq!(
            Endpoint::resolve(&config.env(&[])).expect("default").source,
            Source::Default
        );
        // A config without currentContext, or an empty one.
        std::fs::write(config.0.join("config.json"), "{\"auths\":{}}").expect("write");
        assert_eq!(
            Endpoint::resolve(&config.env(&[])).expect("default").host,
            DEFAULT_HOST
        );
    }

    #[test]
    fn home_is_where_the_config_is_without_docker_config() {
        let config = TempConfig::new("home");
        let docker = config.0.join(".docker");
        std::fs::create_dir_all(&docker).expect("dir");
        std::fs::write(docker.join("config.json"), "{\"currentContext\":\"gone\"}").expect("write");
        let env: EnvMap = [("HOME".to_string(), config.0.display().to_string())].into();
        let err = Endpoint::resolve(&env).expect_err("gone");
        assert!(
            err.message().contains("context \"gone\" does not exist"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_context_is_an_unreachable_engine_naming_it() {
        let config = TempConfig::new("unknown");
        let env = config.env(&[("DOCKER_CONTEXT", "no-such-context")]);
        let err = Endpoint::resolve(&env).expect_err("unknown");
        assert_eq!(err.exit_status().code(), 3);
        assert!(
            err.message()
                .starts_with("context \"no-such-context\" does not exist"),
            "{err}"
        );
        assert!(!err.message().contains('\n'));
        config.current("also-missing");
        let err = Endpoint::resolve(&config.env(&[])).expect_err("unknown");
        assert!(err.message().contains("\"also-missing\""), "{err}");
    }

    #[test]
    fn bad_config_and_meta_files_are_errors_naming_the_file() {
        let config = TempConfig::new("bad");
        std::fs::write(config.0.join("config.json"), "{not json").expect("write");
        let err = Endpoint::resolve(&config.env(&[])).expect_err("bad config");
        assert_eq!(err.exit_status().code(), 3);
        assert!(err.message().contains("config.json"), "{err}");
        let dir = config.0.join("contexts/meta").join(context_digest("x"));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("meta.json"), "[]").expect("write");
        let err = Endpoint::resolve(&config.env(&[("DOCKER_CONTEXT", "x")])).expect_err("bad");
        assert!(err.message().contains("meta.json"), "{err}");
        std::fs::write(dir.join("meta.json"), "{\"Name\":\"x\",\"Endpoints\":{}}").expect("write");
        let err = Endpoint::resolve(&config.env(&[("DOCKER_CONTEXT", "x")])).expect_err("none");
        assert!(err.message().contains("no docker endpoint"), "{err}");
    }

    #[test]
    fn context_tls_material_and_skip_verify_are_read() {
        let config = TempConfig::new("tls");
        let tls_dir = config.context("secure", "tcp://build.example:2376", false);
        std::fs::create_dir_all(&tls_dir).expect("tls dir");
        std::fs::write(tls_dir.join("ca.pem"), "ca").expect("ca");
        let env = config.env(&[("DOCKER_CONTEXT", "secure")]);
        let endpoint = Endpoint::resolve(&env).expect("secure");
        assert_eq!(
            endpoint.tls,
            Some(Tls {
                cert_dir: tls_dir.clone(),
                verify: true
            })
        );
        config.context("insecure", "tcp://build.example:2376", true);
        let env = config.env(&[("DOCKER_CONTEXT", "insecure")]);
        let endpoint = Endpoint::resolve(&env).expect("insecure");
        assert_eq!(endpoint.tls.map(|t| t.verify), Some(false));
        // A unix socket never uses TLS.
        config.context("sock", "unix:///var/run/docker.sock", true);
        let env = config.env(&[("DOCKER_CONTEXT", "sock")]);
        assert_eq!(Endpoint::resolve(&env).expect("sock").tls, None);
    }

    #[test]
    fn tls_variables_apply_to_tcp_hosts() {
        let config = TempConfig::new("tlsvars");
        let env = config.env(&[
            ("DOCKER_HOST", "tcp://10.0.0.9:2376"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", "/etc/docker/certs"),
        ]);
        let endpoint = Endpoint::resolve(&env).expect("tls");
        assert_eq!(
            endpoint.tls,
            Some(Tls {
                cert_dir: PathBuf::from("/etc/docker/certs"),
                verify: true
            })
        );
        // Without DOCKER_CERT_PATH the certificates are in the config dir.
        let env = config.env(&[
            ("DOCKER_HOST", "tcp://10.0.0.9:2376"),
            ("DOCKER_TLS_VERIFY", "1"),
        ]);
        assert_eq!(
            Endpoint::resolve(&env)
                .expect("tls")
                .tls
                .map(|t| t.cert_dir),
            Some(config.0.clone())
        );
        let env = config.env(&[
            ("DOCKER_HOST", "unix:///var/run/docker.sock"),
            ("DOCKER_TLS_VERIFY", "1"),
        ]);
        assert_eq!(Endpoint::resolve(&env).expect("unix").tls, None);
        let env = config.env(&[("DOCKER_HOST", "tcp://10.0.0.9:2375")]);
        assert_eq!(Endpoint::resolve(&env).expect("plain").tls, None);
    }

    fn endpoint(host: &str, tls: bool) -> Endpoint {
        Endpoint {
            host: host.into(),
            source: Source::DockerHost,
            tls: tls.then(|| Tls {
                cert_dir: PathBuf::from("/certs"),
                verify: true,
            }),
        }
    }

    #[test]
    fn tls_with_its_material_is_a_tls_transport_and_skip_verify_is_refused() {
        let dir = std::env::temp_dir().join(format!("ztd-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for file in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(dir.join(file), "pem").expect("pem");
        }
        let mut secure = endpoint("tcp://build.example", true);
        secure.tls = Some(Tls {
            cert_dir: dir.clone(),
            verify: true,
        });
        assert_eq!(
            secure.transport(),
            Ok(Transport::Tls {
                address: "build.example:2376".into(),
                ca: dir.join("ca.pem"),
                cert: dir.join("cert.pem"),
                key: dir.join("key.pem"),
            })
        );
        secure.tls = Some(Tls {
            cert_dir: dir.clone(),
            verify: false,
        });
        let refused = secure.transport().expect_err("skip verify");
        assert_eq!(refused.exit_status().code(), 3);
        assert!(
            refused.message().contains("DOCKER_TLS_VERIFY=1"),
            "{refused}"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn transports_and_refusals() {
        assert_eq!(
            endpoint("unix:///tmp/d.sock", false).transport(),
            Ok(Transport::Unix("/tmp/d.sock".into()))
        );
        assert_eq!(
            endpoint("unix://", false).transport(),
            Ok(Transport::Unix("/var/run/docker.sock".into()))
        );
        assert_eq!(
            endpoint("tcp://10.0.0.9", false).transport(),
            Ok(Transport::Http("10.0.0.9:2375".into()))
        );
        assert_eq!(
            endpoint("tcp://[::1]:2380", false).transport(),
            Ok(Transport::Http("[::1]:2380".into()))
        );
        for (host, tls, needle) in [
            ("tcp://10.0.0.9:2376", true, "ca.pem is missing"),
            (
                "ssh://me@build",
                false,
                "ssh -L /tmp/docker.sock:/var/run/docker.sock",
            ),
            (
                "npipe:////./pipe/docker_engine",
                false,
                "unsupported Docker host",
            ),
            ("tcp://", false, "names no address"),
        ] {
            let err = endpoint(host, tls).transport().expect_err(host);
            assert_eq!(err.exit_status().code(), 3, "{host}");
            assert!(err.message().contains(needle), "{host}: {err}");
            assert!(err.message().contains(host), "{host}: {err}");
        }
    }

    #[test]
    fn local_and_remote_engines() {
        for host in [
            "unix:///var/run/docker.sock",
            "tcp://localhost:2375",
            "tcp://127.0.0.1:2375",
            "tcp://[::1]:2375",
            "http://LOCALHOST",
        ] {
            assert!(endpoint(host, false).is_local(), "{host}");
            assert_eq!(endpoint(host, false).remote_note(), None);
        }
        for host in [
            "tcp://10.0.0.9:2375",
            "tcp://build.example",
            "ssh://me@build",
        ] {
            assert!(!endpoint(host, false).is_local(), "{host}");
        }
        let note = endpoint("tcp://10.0.0.9:2375", false)
            .remote_note()
            .expect("remote");
        assert!(note.starts_with("the engine at tcp://10.0.0.9:2375 is remote"));
    }

    #[test]
    fn compose_children_get_the_same_engine() {
        let plain = endpoint("unix:///tmp/d.sock", false).child_env();
        assert!(plain.contains(&("DOCKER_HOST", Some("unix:///tmp/d.sock".into()))));
        assert!(plain.contains(&("DOCKER_CONTEXT", None)));
        assert!(plain.contains(&("DOCKER_TLS_VERIFY", None)));
        assert!(plain.contains(&("DOCKER_CERT_PATH", None)));
        let tls = endpoint("tcp://10.0.0.9:2376", true).child_env();
        assert!(tls.contains(&("DOCKER_TLS_VERIFY", Some("1".into()))));
        assert!(tls.contains(&("DOCKER_CERT_PATH", Some("/certs".into()))));
        assert!(tls.contains(&("DOCKER_CONTEXT", None)));
    }
}
