//! The retained versions: what each successful deploy records (`.ztd/state.json` `versions`,
//! newest first, with a copy of its rendered file and Compose's model in `.ztd/versions/`), how
//! many are kept (`ZTD_KEEP_VERSIONS`), and the `ztd-keep/...` tags that keep their images.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::stack::{Color, Stack};

/// How many versions are kept when `ZTD_KEEP_VERSIONS` is not set.
pub const DEFAULT_KEEP: usize = 5;

/// One retained version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// `deployment.version` of the deploy.
    pub version: String,
    /// The color it runs (or last ran) in.
    pub color: Color,
    /// When it was deployed (RFC 3339, UTC).
    pub deployed_at: String,
    /// Image id of each service.
    #[serde(default)]
    pub images: BTreeMap<String, String>,
    /// The repository digest (`repo@sha256:...`) of each service's image, where it has one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digests: BTreeMap<String, String>,
    /// The short git hash of the project directory at its deploy, if it is a git repository.
    #[serde(default)]
    pub git_ref: Option<String>,
}

/// `ZTD_KEEP_VERSIONS`: a whole number of at least 1 (default 5); anything else is a usage
/// error.
pub fn keep_from_env() -> Result<usize> {
    parse_keep(std::env::var("ZTD_KEEP_VERSIONS").ok().as_deref())
}

/// The number of versions to keep from `ZTD_KEEP_VERSIONS`'s value.
pub fn parse_keep(value: Option<&str>) -> Result<usize> {
    match value.map(str::trim) {
        None | Some("") => Ok(DEFAULT_KEEP),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "ZTD_KEEP_VERSIONS={text:?}: expected a whole number of at least 1"
                ))
            }),
    }
}

/// Put `new` first (replacing a record of the same version) and keep `keep` records; returns
/// the records dropped, oldest last.
pub fn push(
    versions: &mut Vec<VersionRecord>,
    new: VersionRecord,
    keep: usize,
) -> Vec<VersionRecord> {
    versions.retain(|v| v.version != new.version);
    versions.insert(0, new);
    if versions.len() > keep {
        versions.split_off(keep)
    } else {
        Vec::new()
    }
}

/// A file name made of the version: letters, digits, `.`, `_` and `-` only.
fn file_stem(version: &str) -> String {
    let stem: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    stem.trim_start_matches('.').to_string()
}

/// `.ztd/versions/`.
pub fn dir(stack: &Stack) -> PathBuf {
    stack.ztd_dir().join("versions")
}

/// The copy of a version's rendered file: `.ztd/versions/<version>.yml`.
pub fn rendered_path(stack: &Stack, version: &str) -> PathBuf {
    dir(stack).join(format!("{}.yml", file_stem(version)))
}

/// Compose's model of the project at a version's deploy, to render it in the other color:
/// `.ztd/versions/<version>.config.json`.
pub fn config_path(stack: &Stack, version: &str) -> PathBuf {
    dir(stack).join(format!("{}.config.json", file_stem(version)))
}

/// One path component of an image reference: lowercase letters and digits, runs of anything
/// else made one `-`, none at either end.
fn reference_component(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-');
    if out.is_empty() {
        "x".into()
    } else {
        out.into()
    }
}

/// The tag that keeps a version's image of a service: `ztd-keep/<project>-<service>` and
/// `<version>`, lowercased and made a valid reference.
pub fn keep_tag(project: &str, service: &str, version: &str) -> (String, String) {
    let mut name = reference_component(&format!("{project}-{service}"));
    name.truncate(200);
    let name = name.trim_end_matches('-');
    let mut tag: String = version
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    tag = tag.trim_start_matches(['.', '-']).to_string();
    tag.truncate(128);
    if tag.is_empty() {
        tag = "x".into();
    }
    (format!("ztd-keep/{name}"), tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(version: &str) -> VersionRecord {
        VersionRecord {
            version: version.into(),
            color: Color::Green,
            deployed_at: "2026-11-29T13:51:14Z".into(),
            images: BTreeMap::new(),
            digests: BTreeMap::new(),
            git_ref: None,
        }
    }

    fn names(versions: &[VersionRecord]) -> Vec<&str> {
        versions.iter().map(|v| v.version.as_str()).collect()
    }

    #[test]
    fn push_keeps_the_newest_n_first_and_returns_the_pruned() {
        let mut versions = Vec::new();
        for n in 1..=5 {
            assert!(push(&mut versions, record(&format!("v{n}")), 3).len() <= 1);
        }
        assert_eq!(names(&versions), ["v5", "v4", "v3"]);
        let pruned = push(&mut versions, record("v6"), 3);
        assert_eq!(names(&pruned), ["v3"]);
        assert_eq!(names(&versions), ["v6", "v5", "v4"]);
        let again = push(&mut versions, record("v4"), 3);
        assert!(again.is_empty(), "the same version is replaced, not added");
        assert_eq!(names(&versions), ["v4", "v6", "v5"]);
        let pruned = push(&mut versions, record("v7"), 1);
        assert_eq!(names(&pruned), ["v4", "v6", "v5"]);
        assert_eq!(names(&versions), ["v7"]);
    }

    #[test]
    fn keep_versions_defaults_to_five_and_a_bad_value_is_a_usage_error() {
        assert_eq!(parse_keep(None), Ok(5));
        assert_eq!(parse_keep(Some("")), Ok(5));
        assert_eq!(parse_keep(Some(" 2 ")), Ok(2));
        for bad in ["0", "-1", "five", "2.5"] {
            let err = parse_keep(Some(bad)).expect_err(bad);
            assert_eq!(err.exit_status().code(), 2);
            assert!(err.message().contains("ZTD_KEEP_VERSIONS"));
            assert!(!err.message().contains('\n'));
        }
    }

    #[test]
    fn keep_tags_are_valid_lowercase_references() {
        assert_eq!(
            keep_tag("shop", "web", "green-20261129-135114"),
            (
                "ztd-keep/shop-web".to_string(),
                "green-20261129-135114".to_string()
            )
        );
        assert_eq!(
            keep_tag("My_Shop", "Web.API", "V1+build/7"),
            (
                "ztd-keep/my-shop-web-api".to_string(),
                "v1-build-7".to_string()
            )
        );
        assert_eq!(
            keep_tag("--a--", "__", ".-x"),
            ("ztd-keep/a".to_string(), "x".to_string())
        );
        let long = "v".repeat(300);
        assert_eq!(keep_tag("p", "s", &long).1.len(), 128);
        let (name, tag) = keep_tag(&"P".repeat(300), "s", "1");
        assert!(name.len() <= 209 && !name.ends_with('-'));
        assert_eq!(tag, "1");
    }

    #[test]
    fn version_files_stay_in_the_versions_dir() {
        let stack = Stack {
            dir: "/srv/shop".into(),
            name: "shop".into(),
        };
        assert_eq!(
            rendered_path(&stack, "green-20261129-135114"),
            PathBuf::from("/srv/shop/.ztd/versions/green-20261129-135114.yml")
        );
        assert_eq!(
            config_path(&stack, "../../etc/x"),
            PathBuf::from("/srv/shop/.ztd/versions/_.._etc_x.config.json")
        );
    }
}
