//! The stack's state on disk: `.current_deployment`, `.ztd/state.json`, the append-only
//! `.ztd/history.jsonl` and the deploy lock. Every write is atomic (temp file, fsync, rename).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

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
}

/// `.ztd/state.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
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
    write_atomic(&stack.state_path(), &text, 0o644)
}

/// Append one event to `.ztd/history.jsonl` and fsync it.
pub fn append_history(stack: &Stack, event: &serde_json::Value) -> Result<()> {
    ensure_ztd_dir(stack)?;
    let path = stack.history_path();
    let mut line = serde_json::to_vec(event)
        .map_err(|e| Error::State(format!("cannot encode history: {e}")))?;
    line.push(b'\n');
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(&path)
        .map_err(|e| io_error(&path, e))?;
    file.write_all(&line).map_err(|e| io_error(&path, e))?;
    file.sync_data().map_err(|e| io_error(&path, e))
}

/// Create `.ztd/` if needed.
pub fn ensure_ztd_dir(stack: &Stack) -> Result<PathBuf> {
    let dir = stack.ztd_dir();
    fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
    Ok(dir)
}

/// Replace `path` with `bytes` atomically: a temporary file beside it, fsync, rename, fsync of
/// the directory. A reader sees the old or the new content, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
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
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, e)),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| io_error(path, e))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| Error::State(format!("{} is not text; fix or remove it", path.display())))
}

fn io_error(path: &Path, err: std::io::Error) -> Error {
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
    /// Take the lock without waiting; `Error::Locked` (exit 7) names the holder when it is taken.
    pub fn acquire(stack: &Stack, tool: &str) -> Result<DeployLock> {
        ensure_ztd_dir(stack)?;
        let path = stack.lock_path();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
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
}

/// The current holder of the lock, if a live process holds it. When the lock is held by a
/// process that did not write its name (the pid in the file is gone), the holder is unknown.
pub fn lock_holder(stack: &Stack) -> Option<LockHolder> {
    let path = stack.lock_path();
    let file = File::open(&path).ok()?;
    // If we can take the lock, nobody holds it (whatever the file says).
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_free) => None,
        Err(_) => {
            let written: Option<LockHolder> = fs::read_to_string(&path)
                .ok()
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
            },
        );
        write_state(&stack, &state).expect("write");
        assert_eq!(read_state(&stack), Ok(Some(state)));
        fs::write(stack.state_path(), "{\"active\": \"red\"}").expect("write");
        assert!(matches!(read_state(&stack), Err(Error::State(_))));
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
}
