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

/// Compose file names, in the order Compose itself looks for them.
pub const COMPOSE_FILE_NAMES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// A Compose stack: its directory and its base project name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    /// The project directory (holds the compose file and the state files).
    pub dir: PathBuf,
    /// The base Compose project name; each color runs as `<name>-<color>`.
    pub name: String,
}

impl Stack {
    /// Resolve a stack from the flags, `COMPOSE_PROJECT_NAME` and the directory's name, in that
    /// order, as Compose does.
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
        let name = match project_name {
            Some(name) => validate_project_name(name)?,
            None => match std::env::var("COMPOSE_PROJECT_NAME") {
                Ok(name) if !name.is_empty() => validate_project_name(&name)?,
                _ => {
                    let base = dir
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    normalize_project_name(&base).ok_or_else(|| {
                        Error::Usage(format!(
                            "cannot derive a project name from {}; pass --project-name",
                            dir.display()
                        ))
                    })?
                }
            },
        };
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

    /// The user's compose file, if there is one.
    pub fn compose_file(&self) -> Option<PathBuf> {
        COMPOSE_FILE_NAMES
            .iter()
            .map(|name| self.dir.join(name))
            .find(|path| path.is_file())
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
