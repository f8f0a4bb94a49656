//! Every tool finds the engine as the docker CLI does (DOCKER_HOST, DOCKER_CONTEXT, the
//! current context of DOCKER_CONFIG), refuses an unknown context or a missing socket with one
//! line and exit 3, and hands the same engine to its Compose children.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ztd_testkit::{TestStack, example_stack, free_port, require_engine, sh};

/// The local engine's socket.
const SOCKET: &str = "unix:///var/run/docker.sock";

/// Every tool, with arguments that make it reach for the engine at once.
const TOOLS: [(&str, &[&str]); 6] = [
    ("ztd-detect", &[]),
    ("ztd-health", &[]),
    ("ztd-up", &[]),
    ("ztd-switch", &[]),
    ("ztd-rollback", &[]),
    ("ztd-monitor", &["--for", "1s"]),
];

/// A DOCKER_CONFIG of the test's own, inside the stack's directory's parent.
fn docker_config(stack: &TestStack) -> PathBuf {
    let dir = stack.dir.with_extension("docker-config");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Create a context with the docker CLI itself, so the store is laid out as docker lays it.
fn create_context(config: &Path, name: &str, host: &str) {
    sh(
        "docker",
        &[
            "--config",
            &config.to_string_lossy(),
            "context",
            "create",
            name,
            "--docker",
            &format!("host={host}"),
        ],
    );
}

#[test]
fn an_unknown_context_is_exit_3_for_every_tool_and_changes_nothing() {
    require_engine!();
    let stack = TestStack::new("ctx-unknown");
    stack.write_compose(&example_stack(&stack, free_port()));
    let config = docker_config(&stack);
    let config = config.to_string_lossy();
    let before = stack.snapshot();
    let env = [
        ("DOCKER_HOST", ""),
        ("DOCKER_CONFIG", config.as_ref()),
        ("DOCKER_CONTEXT", "no-such-context"),
    ];
    for (tool, args) in TOOLS {
        let out = stack.run_with(tool, args, &env, None);
        out.expect_code(3)
            .expect_one_line_error("context \"no-such-context\" does not exist");
        assert_eq!(out.json["error"]["exit_code"], 3, "{tool}");
    }
    assert_eq!(stack.snapshot(), before);
}

#[test]
fn a_missing_socket_is_exit_3_in_one_line_and_changes_nothing() {
    require_engine!();
    let stack = TestStack::new("ctx-nosocket");
    stack.write_compose(&example_stack(&stack, free_port()));
    let before = stack.snapshot();
    for tool in ["ztd-detect", "ztd-up"] {
        let out = stack.run_with(
            tool,
            &[],
            &[("DOCKER_HOST", "unix:///tmp/nonexistent.sock")],
            None,
        );
        out.expect_code(3).expect_one_line_error(
            "unix:///tmp/nonexistent.sock (DOCKER_HOST): no such socket: is dockerd running?",
        );
    }
    // A context's socket, named with its context.
    let config = docker_config(&stack);
    create_context(&config, "gone", "unix:///tmp/nonexistent.sock");
    let out = stack.run_with(
        "ztd-detect",
        &[],
        &[
            ("DOCKER_HOST", ""),
            ("DOCKER_CONFIG", &config.to_string_lossy()),
            ("DOCKER_CONTEXT", "gone"),
        ],
        None,
    );
    out.expect_code(3)
        .expect_one_line_error("unix:///tmp/nonexistent.sock (context \"gone\"): no such socket");
    assert_eq!(stack.snapshot(), before);
}

#[test]
fn ssh_and_unknown_schemes_are_refused_in_one_line() {
    require_engine!();
    let stack = TestStack::new("ctx-scheme");
    let before = stack.snapshot();
    stack
        .run_with(
            "ztd-detect",
            &[],
            &[("DOCKER_HOST", "ssh://me@build")],
            None,
        )
        .expect_code(3)
        .expect_one_line_error("ssh -L /tmp/docker.sock:/var/run/docker.sock");
    stack
        .run_with("ztd-detect", &[], &[("DOCKER_HOST", "fd://")], None)
        .expect_code(3)
        .expect_one_line_error("unsupported Docker host fd://");
    assert_eq!(stack.snapshot(), before);
}

#[test]
fn a_context_on_the_local_engine_deploys_like_the_default() {
    require_engine!();
    let stack = TestStack::new("ctx-local");
    stack.write_compose(&example_stack(&stack, free_port()));
    let config = docker_config(&stack);
    create_context(&config, "local", SOCKET);
    // The current context of the config is a dead end: DOCKER_CONTEXT must win over it.
    create_context(&config, "decoy", "unix:///tmp/nonexistent.sock");
    std::fs::write(config.join("config.json"), "{\"currentContext\":\"decoy\"}").unwrap();
    // Compose through a wrapper that records the engine each project command is given.
    let log = config.join("compose-env.log");
    let wrapper = config.join("compose-wrapper.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$* | DOCKER_HOST=$DOCKER_HOST DOCKER_CONTEXT=${{DOCKER_CONTEXT-unset}}\" >> {}\nexec docker compose \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config_text = config.to_string_lossy().into_owned();
    let wrapper_text = wrapper.to_string_lossy().into_owned();
    let env = [
        ("DOCKER_HOST", ""),
        ("DOCKER_CONFIG", config_text.as_str()),
        ("DOCKER_CONTEXT", "local"),
        ("ZTD_COMPOSE", wrapper_text.as_str()),
    ];
    stack.deploy("v1", &env).expect_code(0);
    let detect = stack.run_with("ztd-detect", &[], &env, None);
    detect.expect_code(0);
    assert_eq!(detect.json["active"], "green", "{}", detect.stdout);

    let recorded = std::fs::read_to_string(&log).unwrap();
    let project_commands: Vec<&str> = recorded.lines().filter(|l| l.starts_with("-p ")).collect();
    assert!(!project_commands.is_empty(), "{recorded}");
    for line in project_commands {
        assert!(
            line.ends_with(&format!("DOCKER_HOST={SOCKET} DOCKER_CONTEXT=unset")),
            "{line}"
        );
    }

    // The config's current context, when nothing else names one.
    std::fs::write(config.join("config.json"), "{\"currentContext\":\"local\"}").unwrap();
    let current = stack.run_with(
        "ztd-detect",
        &[],
        &[("DOCKER_HOST", ""), ("DOCKER_CONFIG", config_text.as_str())],
        None,
    );
    current.expect_code(0);
    assert_eq!(current.json["active"], "green");
    let _ = std::fs::remove_dir_all(&config);
}

/// A stand-in engine on TCP that answers `/version` with this API version and every other
/// request with an empty list; its `host:port` on `ip`.
fn fake_engine(ip: std::net::IpAddr, api: &'static str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let n = stream.read(&mut request).unwrap_or(0);
            let head = String::from_utf8_lossy(&request[..n]);
            let path = head.split_whitespace().nth(1).unwrap_or_default();
            let body = if path.contains("/version") {
                format!("{{\"ApiVersion\":\"{api}\",\"Version\":\"0\"}}")
            } else {
                "[]".to_string()
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    address
}

#[test]
fn an_engine_below_api_1_41_is_refused_naming_its_version() {
    require_engine!();
    let stack = TestStack::new("ctx-oldapi");
    let before = stack.snapshot();
    let address = fake_engine([127, 0, 0, 1].into(), "1.40");
    let host = format!("tcp://{address}");
    stack
        .run_with("ztd-detect", &[], &[("DOCKER_HOST", &host)], None)
        .expect_code(4)
        .expect_one_line_error("speaks API 1.40; ztd needs API 1.41 or later");
    assert_eq!(stack.snapshot(), before);
}

#[test]
fn a_remote_engine_is_named_once_with_the_probes_it_skips() {
    require_engine!();
    // This machine's own non-loopback address stands for another machine.
    let Some(ip) = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|()| s))
        .and_then(|s| s.local_addr())
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
    else {
        eprintln!("no non-loopback address here: skipped");
        return;
    };
    let stack = TestStack::new("ctx-remote");
    let host = format!("tcp://{}", fake_engine(ip, "1.41"));
    let out = stack.run_with("ztd-detect", &[], &[("DOCKER_HOST", &host)], None);
    out.expect_code(0);
    let notes: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("is remote"))
        .collect();
    assert_eq!(notes.len(), 1, "{}", out.stderr);
    assert!(
        notes[0].contains(&format!(
            "the engine at {host} is remote: HTTP/TCP probes to container addresses are skipped"
        )),
        "{}",
        notes[0]
    );
    // On the local engine, no such note.
    let local = stack.run("ztd-detect", &[]);
    assert!(!local.stderr.contains("is remote"), "{}", local.stderr);
}
