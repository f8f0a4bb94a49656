//! The stack's state on disk: `.current_deployment`, `.ztd/state.json`, the append-only
//! `.ztd/history.jsonl` and the deploy lock. Every write is atomic (temp file, fsync, rename).
//! `.ztd/` is its owner's alone (0700, its files 0600), no state file is reached through a
//! symbolic link, and the history never holds log lines or command output.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::fcntl::{Flock, FlockArg};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::stack::{Color, Stack};

/// What ztd records of one color's deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    /// `deployment.version` of the deploy.
    #[serde(default)]
    pub version: Option<String>,
    /// When it was deployed (RFC 3339, UTC).
    #[serde(default)]
    pub deployed_at: Option<String>,
    /// Image id of each service, so a removed color can be recreated.
    #[serde(default)]
    pub images: BTreeMap<String, String>,
    /// The repository digest (`repo@sha256:...`) of each service's image, where it has one
    /// (an image pulled from or pushed to a registry).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digests: BTreeMap<String, String>,
}

/// `.ztd/state.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// The Compose project name the stack was deployed under, as Compose resolved it: the
    /// tools that only read use it rather than asking Compose again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The active color.
    #[serde(default)]
    pub active: Option<Color>,
    /// The color that was active before it, kept for rollback.
    #[serde(default)]
    pub previous: Option<Color>,
    /// A color started by `ztd-up` and not yet switched to.
    #[serde(default)]
    pub candidate: Option<Color>,
    /// When the last switch finished.
    #[serde(default)]
    pub switched_at: Option<String>,
    /// Per color, what was deployed there.
    #[serde(default)]
    pub deployments: BTreeMap<Color, DeploymentRecord>,
    /// The retained versions, newest first (`ZTD_KEEP_VERSIONS` of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<crate::versions::VersionRecord>,
}

/// Read `.current_deployment`: `None` when absent; garbage is a state error (exit 5).
pub fn read_current_deployment(stack: &Stack) -> Result<Option<Color>> {
    let path = stack.current_deployment_path();
    let Some(text) = read_optional(&path)? else {
        return Ok(None);
    };
    let word = text.trim();
    word.parse::<Color>().map(Some).map_err(|_| {
        Error::State(format!(
            "{} holds {:?}, expected blue or green; fix or remove the file",
            path.display(),
            shorten(word)
        ))
    })
}

/// Write `.current_deployment` (one line, as the original scripts did).
pub fn write_current_deployment(stack: &Stack, color: Color) -> Result<()> {
    write_atomic(
        &stack.current_deployment_path(),
        format!("{color}\n").as_bytes(),
        0o644,
    )
}

/// Read `.ztd/state.json`: `None` when absent; unreadable JSON is a state error (exit 5).
pub fn read_state(stack: &Stack) -> Result<Option<StateFile>> {
    let path = stack.state_path();
    let Some(text) = read_optional(&path)? else {
        return Ok(None);
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        Error::State(format!(
            "{} is not a valid ztd state file: {e}; fix or remove it",
            path.display()
        ))
    })
}

/// Write `.ztd/state.json`.
pub fn write_state(stack: &Stack, state: &StateFile) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(state)
        .map_err(|e| Error::State(format!("cannot encode state: {e}")))?;
    text.push(b'\n');
    ensure_ztd_dir(stack)?;
    write_atomic(&stack.state_path(), &text, PRIVATE_FILE)
}

/// One read-modify-write of `.ztd/state.json`: read it (the default when it is absent), let
/// `change` edit it, and write it back atomically. Returns what was written. The caller holds the
/// deploy lock, so no other writer runs between the read and the write.
pub fn update(stack: &Stack, change: impl FnOnce(&mut StateFile)) -> Result<StateFile> {
    let mut record = read_state(stack)?.unwrap_or_default();
    change(&mut record);
    write_state(stack, &record)?;
    Ok(record)
}

/// Now, as the state files write it: RFC 3339, UTC, milliseconds.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Mode of `.ztd/`: its owner's alone.
pub const PRIVATE_DIR: u32 = 0o700;
/// Mode of the files in `.ztd/`.
pub const PRIVATE_FILE: u32 = 0o600;

/// Keys whose values are log lines or command output: never written to the history.
const OUTPUT_KEYS: [&str; 8] = [
    "output",
    "stdout",
    "stderr",
    "logs",
    "log_lines",
    "recent_logs",
    "lines",
    "example",
];

/// A line of the history: its event name and time, then the event's own fields.
#[derive(Debug, Serialize)]
struct Event<'a, T: ?Sized> {
    event: &'a str,
    at: String,
    #[serde(flatten)]
    fields: &'a T,
}

/// Append the event `name`, stamped now, with `fields` (a struct or map) after `event` and `at`.
pub fn record_event<T: Serialize + ?Sized>(stack: &Stack, name: &str, fields: &T) -> Result<()> {
    append_history(
        stack,
        &Event {
            event: name,
            at: now(),
            fields,
        },
    )
}

/// Append one event to `.ztd/history.jsonl` and fsync it. Log lines and the output of drain,
/// activate and hook commands are left out (exit codes, durations and names stay).
pub fn append_history<T: Serialize + ?Sized>(stack: &Stack, event: &T) -> Result<()> {
    ensure_ztd_dir(stack)?;
    let path = stack.history_path();
    let mut event = serde_json::to_value(event)
        .map_err(|e| Error::State(format!("cannot encode history: {e}")))?;
    scrub(&mut event);
    let mut line = serde_json::to_vec(&event)
        .map_err(|e| Error::State(format!("cannot encode history: {e}")))?;
    line.push(b'\n');
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(PRIVATE_FILE)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| io_error(&path, e))?;
    tighten(&file, PRIVATE_FILE).map_err(|e| io_error(&path, e))?;
    file.write_all(&line).map_err(|e| io_error(&path, e))?;
    file.sync_data().map_err(|e| io_error(&path, e))
}

/// Take log lines and command output out of a history event.
fn scrub(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|key, _| !OUTPUT_KEYS.contains(&key.as_str()));
            map.values_mut().for_each(scrub);
        }
        Value::Array(items) => items.iter_mut().for_each(scrub),
        Value::String(text) => {
            if let Some(clean) = scrub_text(text) {
                *text = clean;
            }
        }
        _ => {}
    }
}

/// A message without the command output or log line it quotes, if it quotes one: the output of
/// a `ztd.drain`, `ztd.activate` or `ztd.hook.*` command follows its exit status; a health
/// report quotes a log line as `e.g. "..."`.
fn scrub_text(text: &str) -> Option<String> {
    static PATTERNS: OnceLock<Option<(Regex, Regex)>> = OnceLock::new();
    let (command, example) = PATTERNS
        .get_or_init(|| {
            let command = Regex::new(
                r"(ztd\.(?:drain|activate|hook\.[\w.-]+)\b[^:]*?(?:exited -?\d+|timed out)): .*",
            );
            let example = Regex::new(r#"e\.g\. "(?:[^"\\]|\\.)*"?"#);
            command.ok().zip(example.ok())
        })
        .as_ref()?;
    if !command.is_match(text) && !example.is_match(text) {
        return None;
    }
    let text = command.replace_all(text, "$1 (output not recorded)");
    Some(
        example
            .replace_all(&text, "e.g. (log line not recorded)")
            .into_owned(),
    )
}

/// Create `.ztd/` if needed, its owner's alone (0700); an existing one open to others is
/// tightened, and one that is a symbolic link is refused.
pub fn ensure_ztd_dir(stack: &Stack) -> Result<PathBuf> {
    let dir = stack.ztd_dir();
    match fs::symlink_metadata(&dir) {
        Ok(meta) if meta.file_type().is_symlink() => return Err(symlink_error(&dir)),
        Ok(meta) if meta.is_dir() => {
            if meta.permissions().mode() & 0o077 != 0 {
                fs::set_permissions(&dir, fs::Permissions::from_mode(PRIVATE_DIR))
                    .map_err(|e| io_error(&dir, e))?;
            }
        }
        Ok(_) => {
            return Err(Error::State(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(PRIVATE_DIR)
            .create(&dir)
            .map_err(|e| io_error(&dir, e))?,
        Err(e) => return Err(io_error(&dir, e)),
    }
    Ok(dir)
}

/// Take group and other bits off an open file that has more than `mode`.
fn tighten(file: &File, mode: u32) -> std::io::Result<()> {
    let current = file.metadata()?.permissions().mode() & 0o777;
    if current & !mode != 0 {
        file.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

fn symlink_error(path: &Path) -> Error {
    Error::State(format!(
        "{} is a symbolic link: ztd does not follow links in its state files; replace it with the file itself",
        path.display()
    ))
}

/// Replace `path` with `bytes` atomically: a temporary file beside it, fsync, rename, fsync of
/// the directory. A reader sees the old or the new content, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(symlink_error(path));
    }
    let temp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    // A temp file left by a dead process of the same id goes (a link there is removed, never
    // followed); the new one is created afresh.
    let _ = fs::remove_file(&temp);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&temp);
        io_error(path, e)
    })
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    let mut file = match open_nofollow(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => return Err(symlink_error(path)),
        Err(e) => return Err(io_error(path, e)),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| io_error(path, e))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| Error::State(format!("{} is not text; fix or remove it", path.display())))
}

/// Open a file for reading without following a symbolic link at its last component.
fn open_nofollow(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

fn io_error(path: &Path, err: std::io::Error) -> Error {
    if err.raw_os_error() == Some(nix::libc::ELOOP) {
        return symlink_error(path);
    }
    Error::State(format!("{}: {err}", path.display()))
}

fn shorten(text: &str) -> String {
    let short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        format!("{short}...")
    } else {
        short
    }
}

/// Who holds the deploy lock, as written into the lock file by its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// The holder's process id.
    pub pid: u32,
    /// The tool that holds it.
    pub tool: String,
    /// Since when (RFC 3339).
    pub since: String,
}

/// The deploy lock: an exclusive flock on `.ztd/lock`, released when dropped or when its
/// holder dies.
#[derive(Debug)]
pub struct DeployLock {
    _file: Flock<File>,
}

impl DeployLock {
    /// Take the lock; `Error::Locked` (exit 7) names the holder when it is taken. A switch's
    /// background stop of the old color is waited for (it is short, and what follows a switch
    /// should not fail for it), up to [`BACKGROUND_STOP_WAIT`]; any other holder is refused
    /// at once.
    pub fn acquire(stack: &Stack, tool: &str) -> Result<DeployLock> {
        let deadline = std::time::Instant::now() + BACKGROUND_STOP_WAIT;
        let mut said = false;
        loop {
            match DeployLock::try_acquire(stack, tool) {
                Err(Error::Locked(message)) => {
                    let stopping =
                        lock_holder(stack).is_some_and(|h| h.tool == BACKGROUND_STOP_TOOL);
                    if !stopping || std::time::Instant::now() >= deadline {
                        return Err(Error::Locked(message));
                    }
                    if crate::signals::interrupted() {
                        return Err(Error::Interrupted(
                            "interrupted while waiting for the deploy lock".into(),
                        ));
                    }
                    if !said {
                        crate::info!("waiting for the old color to finish stopping ({message})");
                        said = true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    /// Take the lock without waiting.
    fn try_acquire(stack: &Stack, tool: &str) -> Result<DeployLock> {
        ensure_ztd_dir(stack)?;
        let path = stack.lock_path();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(PRIVATE_FILE)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        tighten(&file, PRIVATE_FILE).map_err(|e| io_error(&path, e))?;
        let mut locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((_, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                let holder = match lock_holder(stack) {
                    Some(h) if h.pid != 0 => {
                        format!("{} (pid {}) since {}", h.tool, h.pid, h.since)
                    }
                    _ => "an unknown process".into(),
                };
                return Err(Error::Locked(format!(
                    "another deploy holds the lock on {}: {holder}",
                    stack.dir.display()
                )));
            }
            Err((_, errno)) => return Err(Error::State(format!("{}: {errno}", path.display()))),
        };
        let holder = LockHolder {
            pid: std::process::id(),
            tool: tool.to_string(),
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let text = serde_json::to_string(&holder).unwrap_or_default();
        let file: &mut File = &mut locked;
        file.set_len(0)
            .and_then(|()| file.write_all(text.as_bytes()))
            .map_err(|e| io_error(&path, e))?;
        Ok(DeployLock { _file: locked })
    }

    /// Hand the lock to a process about to be spawned by `command`: it inherits the locked
    /// file as descriptor `fd` (passed to it as `--lock-fd <fd>`), and holds the lock until it
    /// exits; this process lets go of it without unlocking. The lock file names the new holder.
    /// When the process cannot be started, the lock comes back with the error.
    pub fn hand_over(
        self,
        command: &mut std::process::Command,
    ) -> std::result::Result<std::process::Child, (DeployLock, Error)> {
        use nix::fcntl::{FcntlArg, FdFlag, fcntl};
        use std::os::fd::AsRawFd;
        let file: &File = &self._file;
        let fd = file.as_raw_fd();
        if let Err(e) = fcntl(file, FcntlArg::F_SETFD(FdFlag::empty())) {
            let err = Error::State(format!("cannot pass the deploy lock on: {e}"));
            return Err((self, err));
        }
        let spawned = command.arg("--lock-fd").arg(fd.to_string()).spawn();
        // Nothing else this process starts may inherit it.
        let _ = fcntl(file, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let err = Error::State(format!("cannot start the background stop: {e}"));
                return Err((self, err));
            }
        };
        let holder = LockHolder {
            pid: child.id(),
            tool: BACKGROUND_STOP_TOOL.to_string(),
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let text = serde_json::to_string(&holder).unwrap_or_default();
        let _ = file.set_len(0).and_then(|()| {
            use std::os::unix::fs::FileExt;
            file.write_all_at(text.as_bytes(), 0)
        });
        // Dropping the lock would unlock the file for the child too: the descriptor stays open
        // until this process exits, and the child's copy keeps the lock from then on.
        std::mem::forget(self);
        Ok(child)
    }

    /// Whether descriptor `fd`, inherited from a switch, is this stack's lock file (the lock
    /// a background stop holds).
    pub fn inherited(stack: &Stack, fd: i32) -> Result<()> {
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .map_err(|e| Error::Usage(format!("--lock-fd {fd}: {e}")))?;
        let lock = std::fs::canonicalize(stack.lock_path()).unwrap_or(stack.lock_path());
        if link != lock {
            return Err(Error::Usage(format!(
                "--lock-fd {fd} is {}, not {}",
                link.display(),
                stack.lock_path().display()
            )));
        }
        Ok(())
    }
}

/// The tool name a background stop writes into the lock file: tools that need the lock wait
/// for it rather than refuse.
pub const BACKGROUND_STOP_TOOL: &str = "ztd-switch (stopping the old color in the background)";

/// The longest a tool waits for a background stop to release the lock.
pub const BACKGROUND_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The current holder of the lock, if a live process holds it. When the lock is held by a
/// process that did not write its name (the pid in the file is gone), the holder is unknown.
pub fn lock_holder(stack: &Stack) -> Option<LockHolder> {
    let path = stack.lock_path();
    let file = open_nofollow(&path).ok()?;
    // If we can take the lock, nobody holds it (whatever the file says).
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_free) => None,
        Err(_) => {
            let written: Option<LockHolder> = read_optional(&path)
                .ok()
                .flatten()
                .and_then(|text| serde_json::from_str(&text).ok());
            Some(
                written
                    .filter(|h| Path::new(&format!("/proc/{}", h.pid)).exists())
                    .unwrap_or(LockHolder {
                        pid: 0,
                        tool: "an unknown process".into(),
                        since: "unknown".into(),
                    }),
            )
        }
    }
}

/// Write `.rollback_state` as the original scripts did: three shell-sourceable lines.
pub fn write_rollback_state(stack: &Stack, current: Color, target: Color) -> Result<()> {
    let text = format!(
        "CURRENT={current}\nTARGET={target}\nTIMESTAMP={}\n",
        chrono::Utc::now().timestamp()
    );
    write_atomic(&stack.rollback_state_path(), text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_stack(tag: &str) -> Stack {
        let dir = std::env::temp_dir().join(format!("ztd-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        Stack {
            dir,
            name: "t".into(),
        }
    }

    #[test]
    fn current_deployment_round_trips_and_garbage_is_a_state_error() {
        let stack = temp_stack("cd");
        assert_eq!(read_current_deployment(&stack), Ok(None));
        write_current_deployment(&stack, Color::Blue).expect("write");
        assert_eq!(
            fs::read_to_string(stack.current_deployment_path()).expect("read"),
            "blue\n"
        );
        assert_eq!(read_current_deployment(&stack), Ok(Some(Color::Blue)));
        fs::write(stack.current_deployment_path(), "purple\n").expect("write");
        let err = read_current_deployment(&stack).expect_err("garbage");
        assert!(matches!(err, Error::State(_)));
        assert!(err.message().contains("purple"));
        fs::write(stack.current_deployment_path(), "").expect("write");
        assert!(read_current_deployment(&stack).is_err());
        fs::remove_dir_all(&stack.dir).ok();
    }

    #[test]
    fn state_file_round_trips_and_bad_json_is_a_state_error() {
        let stack = temp_stack("sf");
        assert_eq!(read_state(&stack), Ok(None));
        let mut state = StateFile {
            active: Some(Color::Green),
            previous: Some(Color::Blue),
            ..Default::default()
        };
        state.deployments.insert(
            Color::Green,
            DeploymentRecord {
                version: Some("green-20261126-031141".into()),
                deployed_at: None,
                images: [("web".to_string(), "sha256:abc".to_string())].into(),
                digests: [(
                    "web".to_string(),
                    "registry.example/web@sha256:def".to_string(),
                )]
                .into(),
            },
        );
        write_state(&stack, &state).expect("write");
        assert_eq!(read_state(&stack), Ok(Some(state)));
        fs::write(stack.state_path(), "{\"active\": \"red\"}").expect("write");
        assert!(matches!(read_state(&stack), Err(Error::State(_))));
        fs::remove_dir_all(&stack.dir).ok();
    }

    #[test]
    fn update_reads_the_default_when_absent_and_writes_the_change() {
        let stack = temp_stack("update");
        let written = update(&stack, |record| record.active = Some(Color::Blue)).expect("update");
        assert_eq!(written.active, Some(Color::Blue));
        let written = update(&stack, |record| record.previous = Some(Color::Green)).expect("again");
        assert_eq!(
            (written.active, written.previous),
            (Some(Color::Blue), Some(Color::Green))
        );
        assert_eq!(read_state(&stack), Ok(Some(written)));
        fs::write(stack.state_path(), "not json").expect("write");
        assert!(matches!(update(&stack, |_| {}), Err(Error::State(_))));
        assert_eq!(
            fs::read_to_string(stack.state_path()).expect("read"),
            "not json",
            "an unreadable state is left alone"
        );
        fs::remove_dir_all(&stack.dir).ok();
    }

    #[test]
    fn events_start_with_their_name_and_time() {
        #[derive(Serialize)]
        struct Cleanup {
            color: Color,
            removed: Vec<String>,
        }
        let stack = temp_stack("event");
        let fields = Cleanup {
            color: Color::Green,
            removed: vec!["web-green".into()],
        };
        record_event(&stack, "cleanup", &fields).expect("record");
        let text = fs::read_to_string(stack.history_path()).expect("read");
        let line: serde_json::Map<String, Value> = serde_json::from_str(text.trim()).expect("json");
        let keys: Vec<&str> = line.keys().map(String::as_str).collect();
        assert_eq!(keys, ["event", "at", "color", "removed"]);
        assert_eq!(line["event"], "cleanup");
        assert!(line["at"].as_str().is_some_and(|at| at.ends_with('Z')));
        fs::remove_dir_all(&stack.dir).ok();
    }

    #[test]
    fn history_appends_one_line_per_event() {
        let stack = temp_stack("hist");
        append_history(&stack, &serde_json::json!({"event": "deploy"})).expect("append");
        append_history(&stack, &serde_json::json!({"event": "switch"})).expect("append");
        let text = fs::read_to_string(stack.history_path()).expect("read");
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with("{\"event\":\"switch\"}\n"));
        fs::remove_dir_all(&stack.dir).ok();
    }

    #[test]
    fn the_lock_excludes_a_second_holder_and_names_the_first() {
        let stack = temp_stack("lock");
        let first = DeployLock::acquire(&stack, "ztd-switch").expect("first");
        assert_eq!(
            lock_holder(&stack).map(|h| h.tool),
            Some("ztd-switch".to_string())
        );
        let second = DeployLock::acquire(&stack, "ztd-rollback").expect_err("second");
        assert!(matches!(second, Error::Locked(ref m) if m.contains("ztd-switch")));
        drop(first);
        assert_eq!(lock_holder(&stack), None);
        DeployLock::acquire(&stack, "ztd-rollback").expect("free again");
        fs::remove_dir_all(&stack.dir).ok();
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn ztd_dir_and_its_files_are_the_owners_alone() {
        let stack = temp_stack("modes");
        write_state(&stack, &StateFile::default()).expect("state");
        append_history(&stack, &serde_json::json!({"event": "up"})).expect("history");
        let lock = DeployLock::acquire(&stack, "ztd-up").expect("lock");
        let journal = crate::journal::Journal::begin(
            &stack,
            crate::journal::Operation::Switch,
            None,
            Color::Green,
            None,
        )
        .expect("journal");
        assert_eq!(mode(&stack.ztd_dir()), 0o700);
        assert_eq!(mode(&stack.state_path()), 0o600);
        assert_eq!(mode(&stack.history_path()), 0o600);
        assert_eq!(mode(&stack.lock_path()), 0o600);
        assert_eq!(mode(&stack.journal_path()), 0o600);
        journal.finish(&stack).expect("finish");
        drop(lock);
        fs::remove_dir_all(&stack.dir).ok();
    }

    #[test]
    fn a_ztd_dir_and_history_open_to_others_are_tightened() {
        let stack = temp_stack("tighten");
        fs::create_dir_all(stack.ztd_dir()).expect("dir");
        fs::set_permissions(stack.ztd_dir(), fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::write(stack.history_path(), "{\"event\":\"old\"}\n").expect("history");
        fs::set_permissions(stack.history_path(), fs::Permissions::from_mode(0o644))
            .expect("chmod");
        append_history(&stack, &serde_json::json!({"event": "new"})).expect("append");
        assert_eq!(mode(&stack.ztd_dir()), 0o700);
        assert_eq!(mode(&stack.history_path()), 0o600);
        let text = fs::read_to_string(stack.history_path()).expect("read");
        assert_eq!(text.lines().count(), 2, "appended, not replaced");
        fs::remove_dir_all(&stack.dir).ok();
    }

    #[test]
    fn a_symlinked_state_file_is_refused_and_left_alone() {
        let stack = temp_stack("symlink");
        fs::create_dir_all(stack.ztd_dir()).expect("dir");
        let elsewhere = stack.dir.join("elsewhere.json");
        fs::write(&elsewhere, "{\"active\":\"blue\"}").expect("target");
        std::os::unix::fs::symlink(&elsewhere, stack.state_path()).expect("symlink");

        let read = read_state(&stack).expect_err("a link is not followed");
        assert!(matches!(read, Error::State(_)));
        assert!(
            read.message().contains("symbolic link"),
            "{}",
            read.message()
        );
        assert!(!read.message().contains('\n'));
        assert_eq!(read.exit_status().code(), 5);

        let written = write_state(&stack, &StateFile::default()).expect_err("nor replaced");
        assert!(written.message().contains("symbolic link"));
        assert!(
            fs::symlink_metadata(stack.state_path())
                .expect("still there")
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            fs::read_to_string(&elsewhere).expect("target"),
            "{\"active\":\"blue\"}",
            "the link's target is untouched"
        );
        let leftovers: Vec<_> = fs::read_dir(stack.ztd_dir())
            .expect("list")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temp file left: {leftovers:?}");

        fs::remove_file(stack.state_path()).expect("unlink");
        std::os::unix::fs::symlink(&elsewhere, stack.history_path()).expect("symlink");
        let appended = append_history(&stack, &serde_json::json!({"event": "x"}));
        assert!(matches!(appended, Err(Error::State(ref m)) if m.contains("symbolic link")));
        assert_eq!(
            fs::read_to_string(&elsewhere).expect("target"),
            "{\"active\":\"blue\"}"
        );
        fs::remove_dir_all(&stack.dir).ok();
    }

    #[test]
    fn history_keeps_no_log_lines_and_no_command_output() {
        let stack = temp_stack("scrub");
        let event = serde_json::json!({
            "event": "switch_undone",
            "reason": "bot: ztd.drain in bot-blue exited 3: password=hunter2 connection reset",
            "handovers": [{"service": "bot", "drain_exit_code": 3, "gap_ms": 12.5, "output": "secret out"}],
            "health": "web-green: log_errors: 3 error lines since start, e.g. \"ERROR token=abc \\\"x\\\" failed\"; side-green: ok",
            "logs": ["ERROR a line"],
            "activate": "ztd.activate in bot-green timed out: half a line",
        });
        append_history(&stack, &event).expect("append");
        let text = fs::read_to_string(stack.history_path()).expect("read");
        for secret in [
            "hunter2",
            "secret out",
            "token=abc",
            "ERROR a line",
            "half a line",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect("json");
        assert_eq!(
            line["reason"],
            "bot: ztd.drain in bot-blue exited 3 (output not recorded)"
        );
        assert_eq!(line["handovers"][0]["drain_exit_code"], 3);
        assert_eq!(line["handovers"][0]["gap_ms"], 12.5);
        assert_eq!(line["handovers"][0]["service"], "bot");
        assert_eq!(
            line["health"],
            "web-green: log_errors: 3 error lines since start, e.g. (log line not recorded); side-green: ok"
        );
        assert_eq!(
            line["activate"],
            "ztd.activate in bot-green timed out (output not recorded)"
        );
        assert!(line.get("logs").is_none());
        fs::remove_dir_all(&stack.dir).ok();
    }
}
