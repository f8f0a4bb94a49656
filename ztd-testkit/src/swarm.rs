//! A real 3-node Docker Swarm for the `--orchestrator swarm` tests: `swarm-testbed.sh` (beside
//! this crate) starts three extra dockerd in network namespaces (nodes so-n1..so-n3 at
//! 10.99.0.11-13, all managers), the test app and proxy images are loaded into each, and each
//! node is labelled with its engine's address. One bed at a time (a test takes it fresh and it
//! is taken down when the test ends, passing or failing).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{ToolOutput, testapp_image, tool_env};

static BED: Mutex<()> = Mutex::new(());

/// The nodes' numbers.
pub const NODES: [u8; 3] = [1, 2, 3];

/// A running test bed and a stack directory of the test's own.
#[derive(Debug)]
pub struct SwarmBed {
    /// The stack's directory (its name is the stack's).
    pub dir: PathBuf,
    _one_at_a_time: MutexGuard<'static, ()>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("swarm-testbed.sh")
}

/// Why this machine cannot run the bed, if it cannot (asked once per test binary).
fn cannot() -> Option<String> {
    static WHY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    WHY.get_or_init(ask_why_not).clone()
}

fn ask_why_not() -> Option<String> {
    if !crate::engine_answers() {
        return Some("no Docker engine answers".into());
    }
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("the Swarm test bed needs root (network namespaces)".into());
    }
    for tool in ["ip", "nsenter", "unshare", "dockerd", "python3"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("{tool} is missing (make setup-tests installs it)"));
        }
    }
    let static_busybox = Command::new("sh")
        .args(["-c", "ldd /bin/busybox 2>&1 | grep -q 'not a dynamic'"])
        .status()
        .is_ok_and(|s| s.success());
    if !static_busybox {
        return Some(
            "no static /bin/busybox (package busybox-static; make setup-tests installs it)".into(),
        );
    }
    let netns = Command::new("sh")
        .args([
            "-c",
            &format!(
                "ip netns add ztd-probe-{0} && ip netns del ztd-probe-{0}",
                std::process::id()
            ),
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !netns {
        return Some("network namespaces cannot be made here".into());
    }
    None
}

fn run_script(verb: &str) -> std::process::Output {
    Command::new("sh")
        .arg(script())
        .arg(verb)
        .env("SO_BASE", std::env::temp_dir().join("ztd-swarm-bed"))
        .stdin(Stdio::null())
        .output()
        .expect("run swarm-testbed.sh")
}

/// The engine of node `n`.
pub fn host(n: u8) -> String {
    format!("unix:///run/so-n{n}.sock")
}

/// The address of node `n`, where its published ports answer.
pub fn addr(n: u8) -> String {
    format!("10.99.0.1{n}")
}

/// `docker` against node `n`'s engine; its stdout, or the failure.
pub fn docker(n: u8, args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", host(n))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl SwarmBed {
    /// A fresh bed for the test `name`, or None (said on stderr) when this machine cannot
    /// make one.
    pub fn start(name: &str, tag: &str) -> Option<SwarmBed> {
        if let Some(why) = cannot() {
            eprintln!("skipped {name}: {why}; `make test` runs it where the machine allows");
            return None;
        }
        let guard = BED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = run_script("down");
        let up = run_script("up");
        assert!(
            up.status.success(),
            "swarm-testbed.sh up failed: {}{}",
            String::from_utf8_lossy(&up.stdout),
            String::from_utf8_lossy(&up.stderr)
        );
        let images = [
            testapp_image(),
            std::env::var("ZTD_PROXY_IMAGE").unwrap_or_else(|_| "ztd-nginx:latest".into()),
        ];
        let loads: Vec<std::process::Child> = NODES
            .iter()
            .map(|n| {
                Command::new("sh")
                    .args([
                        "-c",
                        &format!(
                            "docker save {} {} | DOCKER_HOST={} docker load -q",
                            images[0],
                            images[1],
                            host(*n)
                        ),
                    ])
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("docker save | load")
            })
            .collect();
        for mut load in loads {
            assert!(
                load.wait().is_ok_and(|s| s.success()),
                "loading images into the bed"
            );
        }
        for n in NODES {
            docker(
                1,
                &[
                    "node",
                    "update",
                    "--label-add",
                    &format!("ztd.engine={}", host(n)),
                    &format!("so-n{n}"),
                ],
            )
            .expect("label node");
        }
        let dir = std::env::temp_dir().join(format!("ztd-swarm-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("stack dir");
        Some(SwarmBed {
            dir,
            _one_at_a_time: guard,
        })
    }

    /// The stack's name.
    pub fn stack(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Write the stack's compose file.
    pub fn write_compose(&self, yaml: &str) {
        std::fs::write(self.dir.join("compose.yaml"), yaml).expect("compose.yaml");
    }

    /// Run a shell script in the stack's directory with the built tools first on PATH,
    /// `--orchestrator swarm` set and the engine of node `via`.
    pub fn run(&self, via: u8, script: &str, env: &[(&str, &str)]) -> ToolOutput {
        let started = Instant::now();
        let mut command = Command::new("bash");
        command
            .args(["-o", "pipefail", "-c", script])
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        tool_env(&mut command, env);
        command
            .env("ZTD_ORCHESTRATOR", "swarm")
            .env("DOCKER_HOST", host(via));
        let output = command.output().expect("run tools");
        ToolOutput::from_output(&output, started)
    }

    /// Start the same, without waiting.
    pub fn spawn(&self, via: u8, script: &str, env: &[(&str, &str)]) -> std::process::Child {
        let mut command = Command::new("bash");
        command
            .args(["-o", "pipefail", "-c", script])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tool_env(&mut command, env);
        command
            .env("ZTD_ORCHESTRATOR", "swarm")
            .env("DOCKER_HOST", host(via));
        command.spawn().expect("spawn tools")
    }

    /// `ztd-detect` through node `via`.
    pub fn detect(&self, via: u8) -> Value {
        self.run(via, "ztd-detect", &[]).json
    }

    /// Cut node `n` off the others (its link to the switch goes down), or heal it.
    pub fn cut(&self, n: u8, off: bool) {
        let state = if off { "down" } else { "up" };
        let status = Command::new("ip")
            .args(["-n", "so-sw", "link", "set", &format!("so-n{n}sw"), state])
            .status()
            .expect("ip link");
        assert!(status.success(), "ip link set so-n{n}sw {state}");
    }

    /// Wait until the managers, asked through node `via`, say node `n` is `state`.
    pub fn wait_node(&self, via: u8, n: u8, state: &str, limit: Duration) -> bool {
        crate::eventually(limit, || {
            docker(
                via,
                &[
                    "node",
                    "inspect",
                    "--format",
                    "{{.Status.State}}",
                    &format!("so-n{n}"),
                ],
            )
            .is_ok_and(|out| out.trim() == state)
        })
    }

    /// Wait until every node answers `node ls` with every node ready (a healed partition
    /// elects a leader again first).
    pub fn wait_whole(&self, limit: Duration) -> bool {
        crate::eventually(limit, || {
            NODES.iter().all(|n| {
                docker(*n, &["node", "ls", "--format", "{{.Status}}"])
                    .is_ok_and(|out| out.lines().count() == 3 && out.lines().all(|l| l == "Ready"))
            })
        })
    }
}

impl Drop for SwarmBed {
    fn drop(&mut self) {
        let _ = run_script("down");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
