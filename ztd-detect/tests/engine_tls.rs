//! An engine reached over TLS, as `DOCKER_HOST=tcp://…` with `DOCKER_TLS_VERIFY` and
//! `DOCKER_CERT_PATH` reach it: a real TLS terminator (the host's nginx, which `make images`
//! installs, with certificates made here by openssl and client certificates required) in front
//! of the local engine's socket. ztd and its Compose children deploy through it; a client that
//! trusts another CA is one line, exit 3.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ztd_testkit::{TestStack, example_stack, free_port, require_engine};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed for the TLS tests");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA in `dir` (`ca.pem`, `ca-key.pem`).
fn make_ca(dir: &Path, name: &str) {
    std::fs::create_dir_all(dir).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
        ],
    );
}

/// A certificate `<out>.pem` with key `<key>` signed by the CA in `ca_dir`, for `usage`.
fn sign(ca_dir: &Path, dir: &Path, out: &str, key: &str, subject: &str, extensions: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{out}.ext")), extensions).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            &format!("{out}.csr"),
            "-subj",
            subject,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{out}.csr"),
            "-CA",
            &ca_dir.join("ca.pem").to_string_lossy(),
            "-CAkey",
            &ca_dir.join("ca-key.pem").to_string_lossy(),
            "-CAcreateserial",
            "-out",
            &format!("{out}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{out}.ext"),
        ],
    );
}

/// The TLS terminator: accepts only clients whose certificate the CA signed, forwards to the
/// engine's socket. Stopped when dropped.
struct TlsEngine {
    child: Child,
    port: u16,
}

impl TlsEngine {
    fn start(server_dir: &Path) -> TlsEngine {
        let port = free_port();
        let file = |name: &str| server_dir.join(name).display().to_string();
        let conf = format!(
            "user root;\nworker_processes 1;\npid {pid};\ndaemon off;\nerror_log {log} info;\n\
             load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\
             events {{ worker_connections 64; }}\n\
             stream {{\n  server {{\n    listen 127.0.0.1:{port} ssl;\n\
             \x20   ssl_protocols TLSv1.2 TLSv1.3;\n\
             \x20   ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
             \x20   ssl_client_certificate {ca};\n    ssl_verify_client on;\n\
             \x20   proxy_pass unix:/var/run/docker.sock;\n  }}\n}}\n",
            pid = file("nginx.pid"),
            log = file("nginx.log"),
            cert = file("server.pem"),
            key = file("server-key.pem"),
            ca = file("ca.pem"),
        );
        let path = server_dir.join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("nginx")
            .args(["-c", &path.to_string_lossy(), "-e", &file("nginx.log")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the host's nginx is needed for the TLS tests (make images installs it)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nginx did not listen: {}",
                std::fs::read_to_string(file("nginx.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsEngine { child, port }
    }
}

impl Drop for TlsEngine {
    fn drop(&mut self) {
        // SIGTERM: nginx's master stops its worker too.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Certificates for one test: the engine's CA and server certificate, a client folder as
/// `DOCKER_CERT_PATH` holds it, and one whose CA is another.
struct Certs {
    server: PathBuf,
    client: PathBuf,
    strange: PathBuf,
}

fn certs(stack: &TestStack) -> Certs {
    let root = stack.dir.with_extension("tls");
    let _ = std::fs::remove_dir_all(&root);
    let (ca, server, client, other_ca, strange) = (
        root.join("ca"),
        root.join("server"),
        root.join("client"),
        root.join("other-ca"),
        root.join("strange"),
    );
    make_ca(&ca, "ztd-test-ca");
    sign(
        &ca,
        &server,
        "server",
        "server-key.pem",
        "/CN=localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    );
    std::fs::copy(ca.join("ca.pem"), server.join("ca.pem")).unwrap();
    sign(
        &ca,
        &client,
        "cert",
        "key.pem",
        "/CN=ztd-client",
        "extendedKeyUsage=clientAuth\n",
    );
    std::fs::copy(ca.join("ca.pem"), client.join("ca.pem")).unwrap();
    // A client that trusts another CA (and is known to the engine by a certificate of it).
    make_ca(&other_ca, "another-ca");
    sign(
        &other_ca,
        &strange,
        "cert",
        "key.pem",
        "/CN=stranger",
        "extendedKeyUsage=clientAuth\n",
    );
    std::fs::copy(other_ca.join("ca.pem"), strange.join("ca.pem")).unwrap();
    Certs {
        server,
        client,
        strange,
    }
}

#[test]
fn a_deploy_over_tls_goes_through_the_tls_engine_for_ztd_and_compose() {
    require_engine!();
    let stack = TestStack::new("tls-deploy");
    let port = free_port();
    stack.write_compose(&example_stack(&stack, port));
    let certs = certs(&stack);
    let engine = TlsEngine::start(&certs.server);
    let host = format!("tcp://127.0.0.1:{}", engine.port);
    let cert_path = certs.client.to_string_lossy().into_owned();
    let env = [
        ("DOCKER_HOST", host.as_str()),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", cert_path.as_str()),
    ];
    stack.deploy("v1", &env).expect_code(0);
    let detect = stack.run_with("ztd-detect", &[], &env, None);
    detect.expect_code(0);
    assert_eq!(detect.json["active"], "green", "{}", detect.stdout);
    let (_, served, _) = ztd_testkit::http_get(port, "/").unwrap();
    assert_eq!(served.as_deref(), Some("green"));

    // The same engine as a context of the docker CLI, its TLS material in the context store.
    let config = stack.dir.with_extension("docker-config");
    let _ = std::fs::remove_dir_all(&config);
    let material = |f: &str| certs.client.join(f).to_string_lossy().into_owned();
    ztd_testkit::sh(
        "docker",
        &[
            "--config",
            &config.to_string_lossy(),
            "context",
            "create",
            "secure",
            "--docker",
            &format!(
                "host={host},ca={},cert={},key={}",
                material("ca.pem"),
                material("cert.pem"),
                material("key.pem")
            ),
        ],
    );
    let config_dir = config.to_string_lossy().into_owned();
    let by_context = stack.run_with(
        "ztd-detect",
        &[],
        &[
            ("DOCKER_CONFIG", config_dir.as_str()),
            ("DOCKER_CONTEXT", "secure"),
        ],
        None,
    );
    by_context.expect_code(0);
    assert_eq!(by_context.json["active"], "green", "{}", by_context.stdout);
    let _ = std::fs::remove_dir_all(&config);

    // With the engine's TLS port closed, the same settings reach nothing: ztd did not fall
    // back to the local socket.
    drop(engine);
    let closed = stack.run_with("ztd-detect", &[], &env, None);
    closed.expect_code(3).expect_one_line_error(&host);
}

#[test]
fn a_client_that_trusts_another_ca_is_one_line_and_exit_3() {
    require_engine!();
    let stack = TestStack::new("tls-bad");
    let certs = certs(&stack);
    let engine = TlsEngine::start(&certs.server);
    let host = format!("tcp://127.0.0.1:{}", engine.port);
    let strange = certs.strange.to_string_lossy().into_owned();
    let before = stack.snapshot();
    let out = stack.run_with(
        "ztd-detect",
        &[],
        &[
            ("DOCKER_HOST", host.as_str()),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", strange.as_str()),
        ],
        None,
    );
    out.expect_code(3)
        .expect_one_line_error("the TLS connection failed");
    assert!(out.stderr.contains(&strange), "{}", out.stderr);
    assert_eq!(stack.snapshot(), before);
}
