//! Probes sent to a container's address: an HTTP GET (ureq) and a TCP connect, each with its
//! own connect and read timeouts, run off the async thread so several go out at once.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde::Serialize;

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

    #[test]
    fn tcp_probe_sees_open_and_closed_ports() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(tcp_connect("127.0.0.1", port, Duration::from_secs(1)).ok);
        drop(listener);
        assert!(!tcp_connect("127.0.0.1", port, Duration::from_secs(1)).ok);
    }
}
