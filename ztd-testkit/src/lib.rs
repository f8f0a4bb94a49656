//! The harness of ztd's integration tests: each test gets its own stack (a temp dir and unique
//! Compose project names), starts real containers of the test app with real Compose, runs the
//! built tools, compares snapshots to prove that nothing changed, and removes everything it
//! made when it ends, passing or failing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod swarm;

/// The test app image, built by `make images`.
pub fn testapp_image() -> String {
    std::env::var("ZTD_TESTAPP_IMAGE").unwrap_or_else(|_| "ztd-testapp:latest".into())
}

/// The path of a built tool (`target/debug/<name>`), found from the test binary's own path.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .expect("deps dir")
        .parent()
        .expect("profile dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace --bins` (make test does)",
        path.display()
    );
    path
}

/// How to call Compose v2: the docker plugin, else a v2 `docker-compose`.
pub fn compose_command() -> Vec<String> {
    let plugin = Command::new("docker")
        .args(["compose", "version", "--short"])
        .output();
    if plugin.is_ok_and(|o| o.status.success()) {
        return vec!["docker".into(), "compose".into()];
    }
    vec!["docker-compose".into()]
}

/// Run a command, panic with its output if it fails, return stdout.
pub fn sh(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What a tool did.
#[derive(Debug)]
pub struct ToolOutput {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Raw stdout.
    pub stdout: String,
    /// Raw stderr.
    pub stderr: String,
    /// stdout parsed as JSON (the last line, for streams), or Null.
    pub json: Value,
    /// Wall time.
    pub elapsed: Duration,
}

impl ToolOutput {
    /// What a finished process did: its code (-1 when killed by a signal), its output, stdout's
    /// last line parsed as JSON (or Null), and the time since `started`.
    pub fn from_output(output: &std::process::Output, started: Instant) -> ToolOutput {
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let json = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null);
        ToolOutput {
            code: output.status.code().unwrap_or(-1),
            stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            json,
            elapsed: started.elapsed(),
        }
    }

    /// stdout's JSON decoded into a tool's typed report (`Report<SwitchOutcome>`, say);
    /// panics, showing the output, when it is not one.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_value(self.json.clone()).unwrap_or_else(|e| {
            panic!(
                "stdout is not that report ({e})\nstdout: {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// Assert the exit code, showing everything when it differs.
    pub fn expect_code(&self, code: i32) -> &ToolOutput {
        assert_eq!(
            self.code, code,
            "exit code {} (wanted {code})\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// Assert stderr holds exactly one non-empty line that contains `needle`.
    pub fn expect_one_line_error(&self, needle: &str) -> &ToolOutput {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "stderr should be one line: {:?}",
            self.stderr
        );
        assert!(
            lines[0].contains(needle),
            "stderr {:?} lacks {needle:?}",
            lines[0]
        );
        self
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Set by `make test`: a test that needs the Docker engine fails when none answers, instead of
/// being skipped.
pub const REQUIRE_ENGINE: &str = "ZTD_REQUIRE_ENGINE";

/// Whether a Docker engine answers (asked once per test binary, with a deadline).
pub fn engine_answers() -> bool {
    static ANSWERS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ANSWERS.get_or_init(|| {
        let Ok(mut child) = Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return false;
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => return false,
            }
        }
        let _ = child.kill();
        false
    })
}

/// Whether the test `name` may go on: true when the engine answers. Without one it says on the
/// terminal (past the test harness's capture) that the test is skipped and how to run it, and
/// returns false; under `make test` (ZTD_REQUIRE_ENGINE set) it fails the test instead.
pub fn engine_or_skip(name: &str) -> bool {
    if engine_answers() {
        return true;
    }
    assert!(
        std::env::var_os(REQUIRE_ENGINE).is_none(),
        "{name}: no Docker engine answers (docker version failed); make test needs one: start \
         dockerd, or run `make setup`"
    );
    let _ = writeln!(
        std::io::stderr(),
        "skipped {name}: no Docker engine answers; `make test` runs it against a real one"
    );
    false
}

/// The running test's name: libtest names each test's thread after it; on the main thread
/// (one test thread), the module and line stand in.
pub fn test_name(module: &str, line: u32) -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => format!("{module}:{line}"),
    }
}

/// First line of a test that needs the Docker engine: returns from the test, saying so, when
/// none answers (see [`engine_or_skip`]).
#[macro_export]
macro_rules! require_engine {
    () => {
        if !$crate::engine_or_skip(&$crate::test_name(module_path!(), line!())) {
            return;
        }
    };
}

/// The settings ztd reads from the environment: tests set them, never inherit them.
pub const SETTINGS: [&str; 21] = [
    "ZTD_ENGINE_TIMEOUT",
    "ZTD_HEALTH_TIMEOUT",
    "ZTD_COMPOSE_TIMEOUT",
    "HEALTH_CHECK_RETRIES",
    "HEALTH_CHECK_INTERVAL",
    "MIGRATION_GRACE_PERIOD",
    "ROLLBACK_TIMEOUT",
    "DEPLOYMENT_LOG_LEVEL",
    "ZTD_MIN_UPTIME",
    "ZTD_MAX_RESTARTS",
    "ZTD_MAX_MEMORY",
    "ZTD_MAX_CPU",
    "ZTD_MAX_ERROR_RATE",
    "ZTD_NOTIFY",
    "ZTD_WEBHOOK",
    "ZTD_NOTIFY_TIMEOUT",
    "ZTD_PULL",
    "ZTD_STOP_OLD",
    "ZTD_ORCHESTRATOR",
    "ZTD_SWARM_ENDPOINT_MODE",
    "NO_COLOR",
];

/// Prepare a command that runs the built tools: the tools first on PATH, no inherited ztd
/// setting, then `env`.
pub fn tool_env<'c>(command: &'c mut Command, env: &[(&str, &str)]) -> &'c mut Command {
    let tools = bin("ztd-detect").parent().expect("bin dir").to_path_buf();
    let path = format!(
        "{}:{}",
        tools.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    command.env("PATH", path);
    for key in SETTINGS {
        command.env_remove(key);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

/// The design's deploy pipeline.
pub const PIPELINE: &str = "ztd-detect | ztd-up | ztd-health --wait | ztd-switch";

/// The example stack of the tests, made unique per stack: a web service on a host port (the
/// proxy's), a handover singleton (`bot`), a side service and a shared database stand-in.
/// Environment knobs at deploy time: `APP_VERSION`, `WEB_HEALTH_FAIL`, `WEB_CRASH_AFTER`,
/// `BOT_HEALTH_FAIL`, `BOT_DRAIN` (the singleton's drain command), `SECRET`.
pub fn example_stack(stack: &TestStack, port: u16) -> String {
    let id = &stack.id;
    let image = testapp_image();
    format!(
        r#"services:
  web{id}:
    image: {image}
    ports: ["127.0.0.1:{port}:8080"]
    environment:
      VERSION: ${{APP_VERSION:-v1}}
      UPSTREAM: db{id}:8080
      HEALTH_FAIL: ${{WEB_HEALTH_FAIL:-0}}
      CRASH_AFTER: ${{WEB_CRASH_AFTER:-}}
      SECRET: ${{SECRET:-none}}
    labels:
      ztd.health.http: /health
    restart: unless-stopped
  bot{id}:
    image: {image}
    environment:
      VERSION: ${{APP_VERSION:-v1}}
      LOG_EVERY: 200ms
      HEALTH_FAIL: ${{BOT_HEALTH_FAIL:-0}}
    labels:
      ztd.switch: handover
      ztd.drain: ${{BOT_DRAIN:-/ztd-testapp drain}}
    healthcheck:
      test: ["CMD", "/ztd-testapp", "probe"]
      interval: 300ms
      timeout: 2s
      retries: 2
    restart: unless-stopped
  side{id}:
    image: {image}
    labels:
      ztd.health.tcp: "8080"
  db{id}:
    image: {image}
    labels:
      ztd.switch: shared
      ztd.health.http: /health
    volumes: ["data:/data"]
volumes:
  data:
"#
    )
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// GET `path` from 127.0.0.1:`port` with `Connection: close`; the status line, the
/// `X-Ztd-Color` header and the body.
pub fn http_get(port: u16, path: &str) -> Result<(u16, Option<String>, String), String> {
    http_get_at("127.0.0.1", port, path)
}

/// As [`http_get`], from `host`.
pub fn http_get_at(
    host: &str,
    port: u16,
    path: &str,
) -> Result<(u16, Option<String>, String), String> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect((host, port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad response {text:?}"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let color = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("x-ztd-color")
            .then(|| v.trim().to_string())
    });
    Ok((status, color, body.to_string()))
}

/// A load loop on a published port: GET requests one after another on a thread until stopped.
#[derive(Debug)]
pub struct LoadLoop {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<LoadReport>>,
}

/// What a load loop saw.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Requests sent.
    pub total: u64,
    /// Requests that failed (no answer, or a status other than 200).
    pub failed: u64,
    /// The first few failures.
    pub errors: Vec<String>,
    /// The bodies seen, in order, without repeats in a row.
    pub bodies: Vec<String>,
}

impl LoadLoop {
    /// Start hitting 127.0.0.1:`port``path`.
    pub fn start(port: u16, path: &str) -> LoadLoop {
        LoadLoop::start_at("127.0.0.1", port, path)
    }

    /// Start hitting `host`:`port``path`.
    pub fn start_at(host: &str, port: u16, path: &str) -> LoadLoop {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let path = path.to_string();
        let host = host.to_string();
        let handle = std::thread::spawn(move || {
            let mut report = LoadReport::default();
            while !flag.load(Ordering::SeqCst) {
                report.total += 1;
                match http_get_at(&host, port, &path) {
                    Ok((200, _, body)) => {
                        let body = body.trim().to_string();
                        if report.bodies.last() != Some(&body) {
                            report.bodies.push(body);
                        }
                    }
                    Ok((status, _, body)) => {
                        report.failed += 1;
                        if report.errors.len() < 20 {
                            report.errors.push(format!("{status} {}", body.trim()));
                        }
                    }
                    Err(err) => {
                        report.failed += 1;
                        if report.errors.len() < 20 {
                            report.errors.push(err);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            report
        });
        LoadLoop {
            stop,
            handle: Some(handle),
        }
    }

    /// Stop and report.
    pub fn stop(mut self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for LoadLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Docker's container events for some label filter, recorded by `docker events` while alive.
#[derive(Debug)]
pub struct EventLog {
    child: std::process::Child,
    since: String,
}

/// One container event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Container name.
    pub name: String,
    /// `start`, `die`, ...
    pub action: String,
    /// Nanoseconds since the epoch.
    pub time_nano: i64,
}

impl EventLog {
    /// Record container events with this label filter (`key=value`) from now on.
    pub fn start(label: &str) -> EventLog {
        EventLog::start_on(None, label)
    }

    /// As [`EventLog::start`], on the engine at `host` (None: the one `docker` talks to).
    pub fn start_on(host: Option<&str>, label: &str) -> EventLog {
        let since = format!(
            "{:.9}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64()
        );
        let mut command = Command::new("docker");
        if let Some(host) = host {
            command.env("DOCKER_HOST", host);
        }
        let child = command
            .args([
                "events",
                "--since",
                &since,
                "--filter",
                "type=container",
                "--filter",
                &format!("label={label}"),
                "--format",
                "{{.Actor.Attributes.name}} {{.Action}} {{.TimeNano}}",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker events");
        EventLog { child, since }
    }

    /// Stop recording and return the events.
    pub fn stop(mut self) -> Vec<Event> {
        use std::io::Read;
        // Let the last events arrive.
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.child.kill();
        let mut text = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = out.read_to_string(&mut text);
        }
        let _ = self.child.wait();
        let _ = &self.since;
        text.lines()
            .filter_map(|line| {
                let mut parts = line.rsplitn(3, ' ');
                let time_nano = parts.next()?.parse().ok()?;
                let action = parts.next()?.to_string();
                let name = parts.next()?.to_string();
                Some(Event {
                    name,
                    action,
                    time_nano,
                })
            })
            .collect()
    }
}

/// The intervals (start, end) during which each container ran, from start and die events;
/// a container still running at the end runs until `i64::MAX`.
pub fn running_intervals(events: &[Event], name: &str) -> Vec<(i64, i64)> {
    let mut intervals = Vec::new();
    let mut since = None;
    let mut sorted: Vec<&Event> = events.iter().filter(|e| e.name == name).collect();
    sorted.sort_by_key(|e| e.time_nano);
    for event in sorted {
        match event.action.as_str() {
            "start" => since = since.or(Some(event.time_nano)),
            "die" => {
                if let Some(start) = since.take() {
                    intervals.push((start, event.time_nano));
                }
            }
            _ => {}
        }
    }
    if let Some(start) = since {
        intervals.push((start, i64::MAX));
    }
    intervals
}

/// Whether two containers ever ran at the same instant.
pub fn ever_overlapped(events: &[Event], a: &str, b: &str) -> bool {
    let (xs, ys) = (running_intervals(events, a), running_intervals(events, b));
    xs.iter()
        .any(|(s1, e1)| ys.iter().any(|(s2, e2)| s1 < e2 && s2 < e1))
}

/// A service of a colored test stack, rendered as ztd-up labels it.
#[derive(Debug, Clone)]
pub struct Service {
    base: String,
    env: Vec<(String, String)>,
    labels: Vec<(String, String)>,
    healthcheck: Option<String>,
    restart: Option<String>,
    extra: Vec<String>,
}

impl Service {
    /// A test app service called `base` (made unique per stack).
    pub fn new(base: &str) -> Service {
        Service {
            base: base.to_string(),
            env: Vec::new(),
            labels: Vec::new(),
            healthcheck: None,
            restart: None,
            extra: Vec::new(),
        }
    }
    /// Set an environment variable of the test app.
    pub fn env(mut self, key: &str, value: &str) -> Service {
        self.env.push((key.into(), value.into()));
        self
    }
    /// Add a label.
    pub fn label(mut self, key: &str, value: &str) -> Service {
        self.labels.push((key.into(), value.into()));
        self
    }
    /// A Docker HEALTHCHECK (`ztd-testapp probe`) at this interval.
    pub fn healthcheck(mut self, interval: &str) -> Service {
        self.healthcheck = Some(interval.into());
        self
    }
    /// A restart policy.
    pub fn restart(mut self, policy: &str) -> Service {
        self.restart = Some(policy.into());
        self
    }
    /// A raw YAML line under the service (indented by the caller's four spaces).
    pub fn yaml(mut self, line: &str) -> Service {
        self.extra.push(line.into());
        self
    }
}

/// One test's stack.
#[derive(Debug)]
pub struct TestStack {
    /// Base project name, unique per test.
    pub name: String,
    /// The project directory.
    pub dir: PathBuf,
    /// A short unique id, appended to service names so container names never clash.
    pub id: String,
}

impl TestStack {
    /// A fresh stack for the test `tag`.
    pub fn new(tag: &str) -> TestStack {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}{n}", std::process::id() % 100_000);
        let name = format!("zt-{tag}-{id}");
        let dir = std::env::temp_dir().join("ztd-tests").join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test dir");
        let stack = TestStack { name, dir, id };
        stack.remove_containers();
        stack
    }

    /// The unique service name for a base name.
    pub fn service(&self, base: &str) -> String {
        format!("{base}{}", self.id)
    }

    /// The container name ztd gives a service of a color: `<service>-<color>`.
    pub fn container(&self, base: &str, color: &str) -> String {
        format!("{}-{color}", self.service(base))
    }

    /// The Compose project of a color.
    pub fn project(&self, color: &str) -> String {
        format!("{}-{color}", self.name)
    }

    /// Render a color's compose file as ztd-up would label it.
    pub fn render(&self, color: &str, services: &[Service]) -> String {
        let mut yaml = String::from("services:\n");
        for s in services {
            let name = self.service(&s.base);
            yaml += &format!("  {name}:\n    image: {}\n", testapp_image());
            yaml += &format!("    container_name: {name}-{color}\n");
            if let Some(policy) = &s.restart {
                yaml += &format!("    restart: {policy}\n");
            }
            yaml += "    environment:\n";
            yaml +=
                &format!("      DEPLOYMENT_COLOR: {color}\n      DEPLOYMENT_MODE: blue-green\n");
            for (k, v) in &s.env {
                yaml += &format!("      {k}: {}\n", quote(v));
            }
            yaml += "    labels:\n";
            yaml += &format!(
                "      deployment.color: {color}\n      deployment.service: {name}\n      deployment.version: {color}-test\n"
            );
            for (k, v) in &s.labels {
                yaml += &format!("      {k}: {}\n", quote(v));
            }
            if let Some(interval) = &s.healthcheck {
                yaml += &format!(
                    "    healthcheck:\n      test: [\"CMD\", \"/ztd-testapp\", \"probe\"]\n      interval: {interval}\n      timeout: 2s\n      retries: 2\n"
                );
            }
            for line in &s.extra {
                yaml += &format!("    {line}\n");
            }
        }
        yaml
    }

    /// Start a color as its own Compose project, labelled as ztd-up labels it.
    pub fn up(&self, color: &str, services: &[Service]) {
        let file = self.dir.join(format!(".test-{color}.yml"));
        std::fs::write(&file, self.render(color, services)).expect("compose file");
        self.compose(color, &file, &["up", "-d", "--no-build"]);
    }

    /// Run a Compose command against a color's project.
    pub fn compose(&self, color: &str, file: &Path, args: &[&str]) {
        let cmd = compose_command();
        let project = self.project(color);
        let mut all: Vec<&str> = cmd[1..].iter().map(String::as_str).collect();
        all.extend(["-p", &project, "-f", file.to_str().expect("utf-8 path")]);
        all.extend(args);
        sh(&cmd[0], &all);
    }

    /// Run a tool in the stack's directory.
    pub fn run(&self, tool: &str, args: &[&str]) -> ToolOutput {
        self.run_with(tool, args, &[], None)
    }

    /// Run a tool with extra environment and optional stdin (None: stdin is /dev/null).
    pub fn run_with(
        &self,
        tool: &str,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&str>,
    ) -> ToolOutput {
        let started = Instant::now();
        let mut command = Command::new(bin(tool));
        command
            .args(args)
            .current_dir(&self.dir)
            .env_remove("COMPOSE_PROJECT_NAME")
            .env("COMPOSE_PROJECT_NAME", &self.name)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tool_env(&mut command, env);
        let mut child = command.spawn().expect("spawn tool");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input.as_bytes()).expect("write stdin");
        }
        let output = wait_with_timeout(child, Duration::from_secs(180));
        ToolOutput::from_output(&output, started)
    }

    /// Every container of the stack (all its projects and its proxy): id, name, state, start time.
    pub fn containers(&self) -> Vec<String> {
        let mut rows = Vec::new();
        for project in self.projects() {
            let out = sh(
                "docker",
                &[
                    "ps",
                    "-a",
                    "--no-trunc",
                    "--filter",
                    &format!("label=com.docker.compose.project={project}"),
                    "--format",
                    "{{.ID}} {{.Names}} {{.State}} {{.Status}}",
                ],
            );
            rows.extend(out.lines().map(|l| {
                // "Up 3 seconds" changes by itself; keep id, name, state.
                l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
            }));
        }
        rows.sort();
        rows
    }

    /// Files of the project dir (recursively) with their contents, and the stack's containers.
    pub fn snapshot(&self) -> Snapshot {
        let mut files = BTreeMap::new();
        collect_files(&self.dir, &self.dir, &mut files);
        Snapshot {
            files,
            containers: self.containers(),
        }
    }

    /// A container's `docker inspect` as JSON.
    pub fn inspect(&self, container: &str) -> Value {
        let out = sh("docker", &["inspect", container]);
        let all: Value = serde_json::from_str(&out).expect("inspect json");
        all[0].clone()
    }

    fn projects(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.project("blue"),
            self.project("green"),
            self.project("shared"),
            format!("{}-ztd", self.name),
        ]
    }

    /// Write the stack's compose file.
    pub fn write_compose(&self, yaml: &str) {
        std::fs::write(self.dir.join("compose.yaml"), yaml).expect("compose.yaml");
    }

    /// Run a shell pipeline in the stack's directory with the built tools first on PATH.
    pub fn pipeline(&self, script: &str, env: &[(&str, &str)]) -> ToolOutput {
        let started = Instant::now();
        let mut command = Command::new("bash");
        command
            .args(["-o", "pipefail", "-c", script])
            .current_dir(&self.dir)
            .env("COMPOSE_PROJECT_NAME", &self.name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tool_env(&mut command, env);
        let output = wait_with_timeout(command.spawn().expect("bash"), Duration::from_secs(300));
        ToolOutput::from_output(&output, started)
    }

    /// Deploy through the design's pipeline with `APP_VERSION=version` and more environment.
    pub fn deploy(&self, version: &str, env: &[(&str, &str)]) -> ToolOutput {
        let mut all = vec![("APP_VERSION", version)];
        all.extend_from_slice(env);
        self.pipeline(PIPELINE, &all)
    }

    /// The name of the container of `service` in a color, found by its labels (whatever name
    /// ztd chose for it); empty when there is none.
    pub fn container_of(&self, color: &str, service: &str) -> String {
        sh(
            "docker",
            &[
                "ps",
                "-a",
                "--filter",
                &format!("label=com.docker.compose.project={}", self.project(color)),
                "--filter",
                &format!("label=deployment.service={service}"),
                "--format",
                "{{.Names}}",
            ],
        )
        .trim()
        .to_string()
    }

    /// The id of a running container by name, if any.
    pub fn container_id(&self, name: &str) -> Option<String> {
        let out = Command::new("docker")
            .args(["inspect", "--format", "{{.Id}} {{.State.Running}}", name])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace();
        let id = words.next()?.to_string();
        (words.next() == Some("true")).then_some(id)
    }

    /// Remove everything the stack's projects made: containers first (the proxy and shared
    /// services are attached to color networks), then volumes and networks.
    fn remove_containers(&self) {
        let mut containers: Vec<String> = self
            .projects()
            .iter()
            .flat_map(|p| labelled(&["ps", "-aq"], p))
            .collect();
        containers.push(format!("{}-ztd-proxy", self.name));
        quietly(&["rm", "-f"], &containers);
        quietly(
            &["volume", "rm"],
            &labelled(&["volume", "ls", "-q"], &self.name),
        );
        let networks: Vec<String> = self
            .projects()
            .iter()
            .flat_map(|p| labelled(&["network", "ls", "-q"], p))
            .collect();
        quietly(&["network", "rm"], &networks);
        // The tags ztd-up keeps each deployed version's images by.
        let kept = Command::new("docker")
            .args(["images", "--format", "{{.Repository}}:{{.Tag}}", "--filter"])
            .arg(format!("reference=ztd-keep/{}-*", self.name.to_lowercase()))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let kept: Vec<String> = kept.lines().map(str::to_string).collect();
        quietly(&["rmi"], &kept);
    }
}

/// The ids a docker listing command gives for one Compose project's label.
fn labelled(listing: &[&str], project: &str) -> Vec<String> {
    Command::new("docker")
        .args(listing)
        .args([
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
        ])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Run a docker command on some ids, ignoring the outcome (cleanup is best effort).
fn quietly(command: &[&str], ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let _ = Command::new("docker")
        .args(command)
        .args(ids)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for TestStack {
    fn drop(&mut self) {
        self.remove_containers();
        if std::env::var_os("ZTD_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// What a stack looked like at one moment.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Path (relative) to contents.
    pub files: BTreeMap<String, Vec<u8>>,
    /// `id name state` of every container.
    pub containers: Vec<String>,
}

fn collect_files(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.insert(rel(root, &path) + "/", Vec::new());
            collect_files(root, &path, files);
        } else if rel(root, &path) == ".ztd/lock" {
            // The lock file says who last took the lock; it is not state. Every changing tool
            // takes the lock before it looks, so one that then refuses has still taken it.
        } else {
            files.insert(rel(root, &path), std::fs::read(&path).unwrap_or_default());
        }
    }
}

fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

fn wait_with_timeout(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    use std::io::Read;
    // Drain both pipes on their own threads so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                break child.wait().expect("wait");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("wait: {e}"),
        }
    };
    std::process::Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// Whether the engine counts a container as stopped by hand (`HasBeenManuallyStopped` in its
/// own record of the container, `config.v2.json` under its root directory): such a container
/// is not restarted by an `unless-stopped` policy, neither after a crash nor when the engine
/// starts again. `None` where that record cannot be read here (not root, a remote engine).
pub fn stopped_by_hand(container_id: &str) -> Option<bool> {
    let root = sh("docker", &["info", "--format", "{{.DockerRootDir}}"]);
    let path = Path::new(root.trim())
        .join("containers")
        .join(container_id)
        .join("config.v2.json");
    let record: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    record["HasBeenManuallyStopped"].as_bool()
}

/// Poll `condition` every 50 ms until it holds or `limit` passes; returns whether it held.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}

/// A Docker engine that has stopped answering: a unix socket served by a thread that answers
/// the version handshake (`/_ping`, `/version`, with or without an API version prefix, as
/// API 1.41) and reads every other request, then holds its connection open without a word.
/// [`WedgedEngine::answering_for`] makes it pass requests on to the real engine for a while
/// first, so a tool gets past its first calls and the engine wedges under it.
#[derive(Debug)]
pub struct WedgedEngine {
    dir: PathBuf,
    socket: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// What `/version` answers: a 20.10 engine's reply, trimmed to the fields clients read.
const WEDGED_VERSION: &str = r#"{"Platform":{"Name":"Docker Engine - Community"},"Components":[{"Name":"Engine","Version":"20.10.24","Details":{"ApiVersion":"1.41","MinAPIVersion":"1.12","Os":"linux","Arch":"amd64"}}],"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12","GitCommit":"5d6db84","GoVersion":"go1.19.7","Os":"linux","Arch":"amd64","KernelVersion":"5.15.0","BuildTime":"2023-04-04T14:14:01.000000000+00:00"}"#;

impl WedgedEngine {
    /// Serve a wedged engine on a socket in a fresh temp dir.
    pub fn start() -> WedgedEngine {
        WedgedEngine::answering_for(Duration::ZERO)
    }

    /// Serve an engine that passes requests on to the real one for `healthy`, then wedges.
    pub fn answering_for(healthy: Duration) -> WedgedEngine {
        use std::os::unix::net::UnixListener;
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir()
            .join("ztd-tests")
            .join(format!("wedged-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("wedged engine dir");
        let socket = dir.join("docker.sock");
        let listener = UnixListener::bind(&socket).expect("bind the wedged engine's socket");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (flag, log) = (
            std::sync::Arc::clone(&stop),
            std::sync::Arc::clone(&requests),
        );
        let wedges_at = Instant::now() + healthy;
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let log = std::sync::Arc::clone(&log);
                std::thread::spawn(move || serve_wedged(stream, &log, wedges_at));
            }
        });
        WedgedEngine {
            dir,
            socket,
            stop,
            requests,
        }
    }

    /// `unix://<socket>`, for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The request lines received so far (`GET /v1.41/containers/json?...`).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for WedgedEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = std::os::unix::net::UnixStream::connect(&self.socket);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One connection to the wedged engine: answer handshake requests (HTTP/1.1 keep-alive, so
/// several may come on one connection) until any other request, then hold the line until the
/// client hangs up.
fn serve_wedged(
    mut stream: std::os::unix::net::UnixStream,
    log: &std::sync::Mutex<Vec<String>>,
    wedges_at: Instant,
) {
    use std::io::Read;
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let body_len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + body_len {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..head_end + body_len).skip(head_end).collect();
        let request_line = head.lines().next().unwrap_or("").to_string();
        if let Ok(mut log) = log.lock() {
            log.push(request_line.clone());
        }
        let mut words = request_line.split_whitespace();
        let method = words.next().unwrap_or("");
        let path = words.next().unwrap_or("").split('?').next().unwrap_or("");
        // Strip an API version prefix: /v1.41/version -> /version.
        let bare = match path.strip_prefix("/v") {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => {
                rest.find('/').map_or(path, |at| &rest[at..])
            }
            _ => path,
        };
        let (content_type, answer) = match bare {
            "/_ping" => ("text/plain; charset=utf-8", "OK"),
            "/version" => ("application/json", WEDGED_VERSION),
            _ if Instant::now() < wedges_at => {
                pass_to_real_engine(stream, &head, &body);
                return;
            }
            _ => {
                // Wedged: never answer; read until the client gives up.
                while matches!(stream.read(&mut chunk), Ok(n) if n > 0) {}
                return;
            }
        };
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nDocker-Experimental: false\r\nOstype: linux\r\nServer: Docker/20.10.24 (linux)\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        );
        if method != "HEAD" {
            response.push_str(answer);
        }
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// Hand one request to the real engine (`DOCKER_HOST` if a unix socket, else the default) and
/// its answer back, then close: the request is rewritten to `Connection: close`, so the answer
/// ends when the engine hangs up and no framing needs parsing. Streams (events) stay open.
fn pass_to_real_engine(mut client: std::os::unix::net::UnixStream, head: &str, body: &[u8]) {
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    let Ok(mut engine) = std::os::unix::net::UnixStream::connect(socket) else {
        return;
    };
    let mut request: String = head
        .trim_end()
        .lines()
        .filter(|l| {
            !l.to_ascii_lowercase().starts_with("connection:")
                && !l.to_ascii_lowercase().starts_with("keep-alive:")
        })
        .map(|l| format!("{l}\r\n"))
        .collect();
    request.push_str("Connection: close\r\n\r\n");
    if engine.write_all(request.as_bytes()).is_err() || engine.write_all(body).is_err() {
        return;
    }
    let _ = std::io::copy(&mut engine, &mut client);
}
