//! The stack model: a Compose project on disk, its two colors and where each of its files lives.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One of the two sides of a blue-green deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    /// The blue side.
    Blue,
    /// The green side.
    Green,
}

impl Color {
    /// Both colors, blue first (the original scripts' detection order).
    pub const ALL: [Color; 2] = [Color::Blue, Color::Green];

    /// The other color.
    pub fn other(self) -> Color {
        match self {
            Color::Blue => Color::Green,
            Color::Green => Color::Blue,
        }
    }

    /// `blue` or `green`.
    pub fn as_str(self) -> &'static str {
        match self {
            Color::Blue => "blue",
            Color::Green => "green",
        }
    }
}

impl fmt::Display for Color {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Color {
    type Err = Error;

    fn from_str(text: &str) -> Result<Color> {
        match text {
            "blue" => Ok(Color::Blue),
            "green" => Ok(Color::Green),
            _ => Err(Error::Usage(format!(
                "unknown color {text:?}: expected blue or green"
            ))),
        }
    }
}

/// A Compose stack: its directory and its base project name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    /// The project directory (holds the compose file and the state files).
    pub dir: PathBuf,
    /// The base Compose project name; each color runs as `<name>-<color>`.
    pub name: String,
}

/// What the user told Compose about the project: `-f` files, `--env-file`s, `--profile`s and
/// an explicit project name (`-p`, or the upstream tool's). Compose itself resolves the rest
/// (`COMPOSE_FILE`, override files, `.env`, `name:`, `COMPOSE_PROFILES`) from these and the
/// unchanged environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// `-f/--file`, absolute, in order.
    pub files: Vec<PathBuf>,
    /// `--env-file`, absolute, in order.
    pub env_files: Vec<PathBuf>,
    /// `--profile`, in order.
    pub profiles: Vec<String>,
    /// The project name given on the command line (or by the upstream tool): it wins over
    /// everything Compose would find.
    pub name: Option<String>,
}

impl Sources {
    /// The global Compose options that select the project, before the subcommand.
    pub fn compose_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(name) = &self.name {
            args.extend(["-p".to_string(), name.clone()]);
        }
        for file in &self.files {
            args.extend(["-f".to_string(), file.to_string_lossy().into_owned()]);
        }
        for file in &self.env_files {
            args.extend([
                "--env-file".to_string(),
                file.to_string_lossy().into_owned(),
            ]);
        }
        for profile in &self.profiles {
            args.extend(["--profile".to_string(), profile.clone()]);
        }
        args
    }
}

/// The value of `key` in the text of a `.env` file (`KEY=value`, optional `export `, quotes
/// and comments as Compose reads them), if it is set there.
pub fn dotenv_value(text: &str, key: &str) -> Option<String> {
    text.lines().rev().find_map(|line| {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let (name, value) = line.split_once('=')?;
        if name.trim() != key {
            return None;
        }
        let value = value.trim();
        let unquoted = match value.chars().next() {
            Some(quote @ ('"' | '\'')) => value[1..].split(quote).next().unwrap_or(""),
            _ => value.split(" #").next().unwrap_or("").trim_end(),
        };
        Some(unquoted.to_string())
    })
}

/// The project name when Compose cannot be asked: the flag, else `COMPOSE_PROJECT_NAME` from
/// the environment, else from the project dir's `.env`, else the directory's name.
pub fn fallback_name(
    flag: Option<&str>,
    env: Option<&str>,
    dotenv: Option<&str>,
    dir: &Path,
) -> Result<String> {
    if let Some(name) = flag {
        return validate_project_name(name);
    }
    if let Some(name) = [env, dotenv].into_iter().flatten().find(|n| !n.is_empty()) {
        return validate_project_name(name);
    }
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    normalize_project_name(&base).ok_or_else(|| {
        Error::Usage(format!(
            "cannot derive a project name from {}; pass --project-name",
            dir.display()
        ))
    })
}

impl Stack {
    /// Resolve a stack without asking Compose: the name from the flag, `COMPOSE_PROJECT_NAME`
    /// (environment, then the project dir's `.env`) and the directory's name, in that order.
    /// Tools that can ask Compose replace the name with the one of its resolved model.
    pub fn resolve(project_dir: Option<&Path>, project_name: Option<&str>) -> Result<Stack> {
        let dir = match project_dir {
            Some(dir) => dir.to_path_buf(),
            None => std::env::current_dir()
                .map_err(|e| Error::Usage(format!("cannot read the working directory: {e}")))?,
        };
        if !dir.is_dir() {
            return Err(Error::Usage(format!(
                "project directory {} does not exist",
                dir.display()
            )));
        }
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        let env = std::env::var("COMPOSE_PROJECT_NAME").ok();
        let dotenv = std::fs::read_to_string(dir.join(".env"))
            .ok()
            .and_then(|text| dotenv_value(&text, "COMPOSE_PROJECT_NAME"));
        let name = fallback_name(project_name, env.as_deref(), dotenv.as_deref(), &dir)?;
        Ok(Stack { dir, name })
    }

    /// The Compose project of one color.
    pub fn color_project(&self, color: Color) -> String {
        format!("{}-{}", self.name, color)
    }

    /// The Compose project that holds the services shared by both colors.
    pub fn shared_project(&self) -> String {
        format!("{}-shared", self.name)
    }

    /// The name of the front proxy container.
    pub fn proxy_container(&self) -> String {
        format!("{}-ztd-proxy", self.name)
    }

    /// The same stack under the Compose project name that Compose resolved.
    pub fn named(&self, name: String) -> Stack {
        Stack {
            dir: self.dir.clone(),
            name,
        }
    }

    /// `.current_deployment`, the one-line record of the active color.
    pub fn current_deployment_path(&self) -> PathBuf {
        self.dir.join(".current_deployment")
    }

    /// `.rollback_state`, the original scripts' shell-sourceable record of a deploy.
    pub fn rollback_state_path(&self) -> PathBuf {
        self.dir.join(".rollback_state")
    }

    /// The `.ztd/` directory that holds ztd's own state.
    pub fn ztd_dir(&self) -> PathBuf {
        self.dir.join(".ztd")
    }

    /// `.ztd/state.json`.
    pub fn state_path(&self) -> PathBuf {
        self.ztd_dir().join("state.json")
    }

    /// `.ztd/history.jsonl`.
    pub fn history_path(&self) -> PathBuf {
        self.ztd_dir().join("history.jsonl")
    }

    /// `.ztd/lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.ztd_dir().join("lock")
    }

    /// `.ztd/journal.json`, the record of a switch in progress.
    pub fn journal_path(&self) -> PathBuf {
        self.ztd_dir().join("journal.json")
    }

    /// `docker-compose.<color>.yml`, the rendered project of one color.
    pub fn rendered_compose_path(&self, color: Color) -> PathBuf {
        self.dir.join(format!("docker-compose.{color}.yml"))
    }
}

/// Compose's rule for project names: lowercase letters, digits, `-` and `_`, starting with a
/// letter or digit. Returns `None` when nothing usable is left.
pub fn normalize_project_name(raw: &str) -> Option<String> {
    let lowered: String = raw
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_')
        .collect();
    let trimmed = lowered.trim_start_matches(['-', '_']);
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// The top-level `name` of Compose's resolved model, checked as a project name.
pub fn model_name(model: &serde_json::Value) -> Result<String> {
    let name = model
        .get("name")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| {
            Error::State("compose config printed a model without a project name".into())
        })?;
    validate_project_name(name).map_err(|e| Error::State(e.message().to_string()))
}

fn validate_project_name(name: &str) -> Result<String> {
    match normalize_project_name(name) {
        Some(normal) if normal == name => Ok(normal),
        _ => Err(Error::Usage(format!(
            "bad project name {name:?}: use lowercase letters, digits, '-' and '_', starting with a letter or digit"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colors_parse_strictly_and_flip() {
        assert_eq!("blue".parse::<Color>(), Ok(Color::Blue));
        assert_eq!("green".parse::<Color>(), Ok(Color::Green));
        for bad in ["Blue", "red", "", "green ", "--help"] {
            assert!(
                matches!(bad.parse::<Color>(), Err(Error::Usage(_))),
                "{bad}"
            );
        }
        assert_eq!(Color::Blue.other(), Color::Green);
        assert_eq!(Color::Green.other().other(), Color::Green);
    }

    #[test]
    fn project_names_follow_compose() {
        assert_eq!(normalize_project_name("My App.v2"), Some("myappv2".into()));
        assert_eq!(normalize_project_name("__x"), Some("x".into()));
        assert_eq!(normalize_project_name("..."), None);
        assert!(validate_project_name("shop").is_ok());
        assert!(validate_project_name("Shop").is_err());
    }

    #[test]
    fn fallback_names_take_the_flag_then_the_environment_then_dotenv_then_the_dir() {
        let dir = Path::new("/srv/My Shop");
        let name = |flag, env, dotenv| fallback_name(flag, env, dotenv, dir);
        assert_eq!(name(Some("a"), Some("b"), Some("c")), Ok("a".into()));
        assert_eq!(name(None, Some("b"), Some("c")), Ok("b".into()));
        assert_eq!(name(None, Some(""), Some("c")), Ok("c".into()));
        assert_eq!(name(None, None, None), Ok("myshop".into()));
        assert!(matches!(
            name(Some("Bad"), None, None),
            Err(Error::Usage(_))
        ));
        assert!(matches!(
            name(None, Some("b c"), None),
            Err(Error::Usage(_))
        ));
    }

    #[test]
    fn dotenv_values_are_read_as_compose_reads_them() {
        let text = "# comment\nPORT=8080\nexport COMPOSE_PROJECT_NAME=shop # inline\n";
        assert_eq!(
            dotenv_value(text, "COMPOSE_PROJECT_NAME"),
            Some("shop".into())
        );
        assert_eq!(dotenv_value(text, "PORT"), Some("8080".into()));
        assert_eq!(dotenv_value(text, "MISSING"), None);
        assert_eq!(
            dotenv_value("A=1\nA='two # x'\n", "A"),
            Some("two # x".into())
        );
        assert_eq!(dotenv_value("A=\"q\"", "A"), Some("q".into()));
    }

    #[test]
    fn sources_become_compose_options_in_order() {
        let sources = Sources {
            files: vec!["/a/base.yml".into(), "/a/prod.yml".into()],
            env_files: vec!["/a/.env.prod".into()],
            profiles: vec!["debug".into()],
            name: Some("shop".into()),
        };
        assert_eq!(
            sources.compose_args(),
            [
                "-p",
                "shop",
                "-f",
                "/a/base.yml",
                "-f",
                "/a/prod.yml",
                "--env-file",
                "/a/.env.prod",
                "--profile",
                "debug"
            ]
        );
        assert!(Sources::default().compose_args().is_empty());
    }

    #[test]
    fn the_model_name_is_checked() {
        assert_eq!(
            model_name(&serde_json::json!({"name": "shop"})),
            Ok("shop".into())
        );
        assert!(matches!(
            model_name(&serde_json::json!({})),
            Err(Error::State(_))
        ));
    }

    #[test]
    fn paths_and_projects_of_a_stack() {
        let stack = Stack {
            dir: PathBuf::from("/srv/shop"),
            name: "shop".into(),
        };
        assert_eq!(stack.color_project(Color::Green), "shop-green");
        assert_eq!(stack.proxy_container(), "shop-ztd-proxy");
        assert_eq!(
            stack.rendered_compose_path(Color::Blue),
            PathBuf::from("/srv/shop/docker-compose.blue.yml")
        );
        assert_eq!(
            stack.state_path(),
            PathBuf::from("/srv/shop/.ztd/state.json")
        );
    }
}
