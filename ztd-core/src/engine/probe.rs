//! Probes sent to a container's address: where a container's probe labels send them, an HTTP
//! GET (ureq) and a TCP connect, each with its own connect and read timeouts, run off the async
//! thread so several go out at once.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::engine::ContainerInfo;
use crate::labels::ServiceSettings;

/// What a probe asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    /// GET this path (`ztd.health.http`).
    Http(String),
    /// Open a connection (`ztd.health.tcp`).
    Tcp,
}

/// Where a probe goes, or why it does not go out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeRoute {
    /// To this address and port.
    Send {
        /// The container's address.
        address: String,
        /// The port.
        port: u16,
    },
    /// Not sent from here (the engine is remote): skipped, for this reason.
    Skip(String),
    /// Cannot be sent at all (an HTTP probe with no port): a failed probe, for this reason.
    Fail(String),
}

/// One probe a container's labels ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    /// What it asks.
    pub kind: ProbeKind,
    /// Where it goes.
    pub route: ProbeRoute,
}

/// What came of a probe: skipped, or its outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeResult {
    /// Not sent, for this reason.
    Skipped(String),
    /// Sent (or unsendable: then failed with the reason).
    Done(ProbeOutcome),
}

/// The address a container's probes go to: its first address, else 127.0.0.1.
pub fn container_address(container: &ContainerInfo) -> String {
    container
        .addresses
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1".into())
}

/// The probes a container's labels ask for, HTTP first: `ztd.health.http` on `ztd.health.port`,
/// else on the first port the container exposes (none: the probe fails, saying so), then
/// `ztd.health.tcp`. On a remote engine (`remote` names it) every probe is skipped: container
/// addresses cannot be reached from here.
pub fn probe_targets(
    container: &ContainerInfo,
    settings: &ServiceSettings,
    remote: Option<&str>,
) -> Vec<ProbeTarget> {
    let address = container_address(container);
    let route = |port: Option<u16>| match (remote, port) {
        (Some(host), _) => ProbeRoute::Skip(format!("skipped: the engine at {host} is remote")),
        (None, Some(port)) => ProbeRoute::Send {
            address: address.clone(),
            port,
        },
        (None, None) => ProbeRoute::Fail(
            "ztd.health.http is set but the container exposes no port; set ztd.health.port".into(),
        ),
    };
    let mut targets = Vec::new();
    if let Some(path) = &settings.health_http {
        let port = settings
            .health_port
            .or_else(|| container.exposed_ports.first().copied());
        targets.push(ProbeTarget {
            kind: ProbeKind::Http(path.clone()),
            route: route(port),
        });
    }
    if let Some(port) = settings.health_tcp {
        targets.push(ProbeTarget {
            kind: ProbeKind::Tcp,
            route: route(Some(port)),
        });
    }
    targets
}

impl ProbeTarget {
    /// Send the probe, off the async thread, cut off after `timeout`.
    pub async fn run(&self, timeout: Duration) -> ProbeResult {
        match (&self.route, &self.kind) {
            (ProbeRoute::Skip(reason), _) => ProbeResult::Skipped(reason.clone()),
            (ProbeRoute::Fail(reason), _) => ProbeResult::Done(failed(reason.clone())),
            (ProbeRoute::Send { address, port }, ProbeKind::Http(path)) => {
                ProbeResult::Done(http_probe(address.clone(), *port, path.clone(), timeout).await)
            }
            (ProbeRoute::Send { address, port }, ProbeKind::Tcp) => {
                ProbeResult::Done(tcp_probe(address.clone(), *port, timeout).await)
            }
        }
    }
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeOutcome {
    /// Whether the probe passed.
    pub ok: bool,
    /// What it saw, for humans.
    pub detail: String,
    /// How long it took.
    #[serde(skip)]
    pub latency: Duration,
}

/// Host part of a URL or socket address (IPv6 in brackets).
fn host_part(address: &str) -> String {
    if address.contains(':') {
        format!("[{address}]")
    } else {
        address.to_string()
    }
}

/// GET `http://address:port/path`; any 2xx or 3xx passes. Blocking.
pub fn http_get(address: &str, port: u16, path: &str, timeout: Duration) -> ProbeOutcome {
    let url = format!("http://{}:{port}{path}", host_part(address));
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_connect(Some(timeout))
        .timeout_recv_response(Some(timeout))
        .timeout_recv_body(Some(timeout))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let started = Instant::now();
    let result = agent.get(&url).call();
    let latency = started.elapsed();
    match result {
        Ok(response) => {
            let status = response.status().as_u16();
            ProbeOutcome {
                ok: (200..400).contains(&status),
                detail: format!("GET {path} on port {port}: {status}"),
                latency,
            }
        }
        Err(ureq::Error::Timeout(_)) => ProbeOutcome {
            ok: false,
            detail: format!(
                "GET {path} on port {port}: no answer within {}",
                crate::units::format_duration(timeout)
            ),
            latency,
        },
        Err(err) => ProbeOutcome {
            ok: false,
            detail: format!(
                "GET {path} on port {port}: {}",
                crate::error::one_line(&err.to_string())
            ),
            latency,
        },
    }
}

/// GET a path and return the status, the `X-Ztd-Color` header and the body; `None` when no
/// answer came. Blocking.
pub fn http_get_text(
    address: &str,
    port: u16,
    path: &str,
    timeout: Duration,
) -> Option<(u16, Option<String>, String)> {
    let url = format!("http://{}:{port}{path}", host_part(address));
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_global(Some(timeout))
        .build();
    let mut response = ureq::Agent::new_with_config(config).get(&url).call().ok()?;
    let status = response.status().as_u16();
    let color = response
        .headers()
        .get("x-ztd-color")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.body_mut().read_to_string().unwrap_or_default();
    Some((status, color, body))
}

/// Open a TCP connection to `address:port`. Blocking.
pub fn tcp_connect(address: &str, port: u16, timeout: Duration) -> ProbeOutcome {
    let started = Instant::now();
    let target: Option<SocketAddr> = format!("{}:{port}", host_part(address))
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next());
    let result = match target {
        Some(addr) => TcpStream::connect_timeout(&addr, timeout).map(|_| ()),
        None => Err(std::io::Error::other("bad address")),
    };
    let latency = started.elapsed();
    match result {
        Ok(()) => ProbeOutcome {
            ok: true,
            detail: format!("TCP port {port} accepts connections"),
            latency,
        },
        Err(err) => ProbeOutcome {
            ok: false,
            detail: format!("TCP port {port}: {err}"),
            latency,
        },
    }
}

/// Where the front proxy's confirmations go: the network, or a stand-in that answers as the
/// proxy of a fake engine would (unit tests). Blocking calls, run off the async thread.
pub trait Prober: Send + Sync {
    /// As [`http_get_text`].
    fn http_get_text(
        &self,
        address: &str,
        port: u16,
        path: &str,
        timeout: Duration,
    ) -> Option<(u16, Option<String>, String)>;
    /// As [`tcp_connect`].
    fn tcp_connect(&self, address: &str, port: u16, timeout: Duration) -> ProbeOutcome;
}

/// Probes over the network.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetProber;

impl Prober for NetProber {
    fn http_get_text(
        &self,
        address: &str,
        port: u16,
        path: &str,
        timeout: Duration,
    ) -> Option<(u16, Option<String>, String)> {
        http_get_text(address, port, path, timeout)
    }

    fn tcp_connect(&self, address: &str, port: u16, timeout: Duration) -> ProbeOutcome {
        tcp_connect(address, port, timeout)
    }
}

/// [`Prober::http_get_text`] off the async thread.
pub async fn http_get_text_with(
    prober: std::sync::Arc<dyn Prober>,
    address: String,
    port: u16,
    path: String,
    timeout: Duration,
) -> Option<(u16, Option<String>, String)> {
    tokio::task::spawn_blocking(move || prober.http_get_text(&address, port, &path, timeout))
        .await
        .ok()
        .flatten()
}

/// [`Prober::tcp_connect`] off the async thread.
pub async fn tcp_probe_with(
    prober: std::sync::Arc<dyn Prober>,
    address: String,
    port: u16,
    timeout: Duration,
) -> ProbeOutcome {
    tokio::task::spawn_blocking(move || prober.tcp_connect(&address, port, timeout))
        .await
        .unwrap_or_else(|e| failed(format!("probe task failed: {e}")))
}

/// The HTTP probe, off the async thread.
pub async fn http_probe(
    address: String,
    port: u16,
    path: String,
    timeout: Duration,
) -> ProbeOutcome {
    tokio::task::spawn_blocking(move || http_get(&address, port, &path, timeout))
        .await
        .unwrap_or_else(|e| failed(format!("probe task failed: {e}")))
}

/// The TCP probe, off the async thread.
pub async fn tcp_probe(address: String, port: u16, timeout: Duration) -> ProbeOutcome {
    tcp_probe_with(std::sync::Arc::new(NetProber), address, port, timeout).await
}

fn failed(detail: String) -> ProbeOutcome {
    ProbeOutcome {
        ok: false,
        detail,
        latency: Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn serve_once(response: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            if let Ok((mut conn, _)) = listener.accept() {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(response.as_bytes());
            }
        });
        port
    }

    #[test]
    fn http_probe_passes_on_2xx_and_fails_on_5xx() {
        let ok = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        assert!(http_get("127.0.0.1", ok, "/health", Duration::from_secs(2)).ok);
        let bad = serve_once(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        );
        let outcome = http_get("127.0.0.1", bad, "/health", Duration::from_secs(2));
        assert!(!outcome.ok);
        assert!(outcome.detail.contains("503"), "{}", outcome.detail);
    }

    #[test]
    fn http_probe_honours_its_timeout_on_a_server_that_never_answers() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let started = Instant::now();
        let outcome = http_get("127.0.0.1", port, "/health", Duration::from_millis(300));
        assert!(!outcome.ok);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(outcome.detail.contains("no answer"), "{}", outcome.detail);
        drop(listener);
    }

    fn settings(http: Option<&str>, port: Option<u16>, tcp: Option<u16>) -> ServiceSettings {
        ServiceSettings {
            health_http: http.map(str::to_string),
            health_port: port,
            health_tcp: tcp,
            ..ServiceSettings::default()
        }
    }

    #[test]
    fn probes_go_to_the_label_port_else_the_first_exposed_one_and_fail_without_one() {
        let mut web = crate::fake::container(
            "web-blue",
            "shop-blue",
            crate::stack::Color::Blue,
            crate::engine::RunState::Running,
        );
        web.addresses = vec!["172.18.0.5".into()];
        web.exposed_ports = vec![8080, 9090];
        let http = settings(Some("/health"), None, None);
        let send = |port| ProbeRoute::Send {
            address: "172.18.0.5".into(),
            port,
        };
        assert_eq!(
            probe_targets(&web, &http, None),
            vec![ProbeTarget {
                kind: ProbeKind::Http("/health".into()),
                route: send(8080),
            }]
        );
        let both = settings(Some("/health"), Some(9090), Some(5432));
        let targets = probe_targets(&web, &both, None);
        assert_eq!(targets[0].route, send(9090));
        assert_eq!(
            targets[1],
            ProbeTarget {
                kind: ProbeKind::Tcp,
                route: send(5432),
            }
        );
        web.exposed_ports.clear();
        web.addresses.clear();
        let ProbeRoute::Fail(reason) = &probe_targets(&web, &http, None)[0].route else {
            panic!("no port is a failed probe");
        };
        assert!(reason.contains("set ztd.health.port"), "{reason}");
        assert_eq!(
            probe_targets(&web, &settings(None, None, Some(5432)), None)[0].route,
            ProbeRoute::Send {
                address: "127.0.0.1".into(),
                port: 5432,
            }
        );
        for target in probe_targets(&web, &both, Some("tcp://10.0.0.9:2375")) {
            assert_eq!(
                target.route,
                ProbeRoute::Skip("skipped: the engine at tcp://10.0.0.9:2375 is remote".into())
            );
        }
        assert!(probe_targets(&web, &ServiceSettings::default(), None).is_empty());
    }

    #[test]
    fn tcp_probe_sees_open_and_closed_ports() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(tcp_connect("127.0.0.1", port, Duration::from_secs(1)).ok);
        drop(listener);
        assert!(!tcp_connect("127.0.0.1", port, Duration::from_secs(1)).ok);
    }
}
