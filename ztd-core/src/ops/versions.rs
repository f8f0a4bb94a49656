//! The retained versions: recording a deploy's version (its rendered file, Compose's model, the
//! `ztd-keep/...` tags on its images), pruning past `ZTD_KEEP_VERSIONS`, and
//! `ztd-rollback --list`.

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::Engine;
use crate::error::{Error, ExitStatus, Result};
use crate::render::BuildInfo;
use crate::report::Outcome;
use crate::stack::{Color, Stack};
use crate::state::{self, PRIVATE_DIR, PRIVATE_FILE};
use crate::versions::{self, VersionRecord};
use crate::warn;

/// What a successful deploy records of its version.
#[derive(Debug)]
pub struct NewVersion<'a> {
    /// The color it was deployed to.
    pub color: Color,
    /// Its version and build metadata.
    pub build: &'a BuildInfo,
    /// The image id of each service.
    pub images: &'a BTreeMap<String, String>,
    /// The repository digest of each service's image, where it has one.
    pub digests: &'a BTreeMap<String, String>,
    /// Compose's model of the project it was rendered from.
    pub config: &'a Value,
    /// How many versions to keep.
    pub keep: usize,
}

/// Record a deployed version: copy its rendered file and Compose's model to `.ztd/versions/`,
/// tag its images `ztd-keep/<project>-<service>:<version>`, and in one write of the state file
/// put its images and digests in the color's deployment record and the version first in the
/// list, pruning what is past `keep` (records, files, tags). A tag that cannot be set or removed is
/// warned about; the deploy stands.
pub async fn record<E: Engine>(engine: &E, stack: &Stack, new: &NewVersion<'_>) -> Result<()> {
    let version = &new.build.version;
    let dir = versions::dir(stack);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(&dir)
        .map_err(|e| Error::State(format!("{}: {e}", dir.display())))?;
    let rendered = stack.rendered_compose_path(new.color);
    let text = std::fs::read(&rendered)
        .map_err(|e| Error::State(format!("{}: {e}", rendered.display())))?;
    state::write_atomic(
        &versions::rendered_path(stack, version),
        &text,
        PRIVATE_FILE,
    )?;
    let config = serde_json::to_vec(new.config)
        .map_err(|e| Error::State(format!("cannot encode the compose model: {e}")))?;
    state::write_atomic(
        &versions::config_path(stack, version),
        &config,
        PRIVATE_FILE,
    )?;
    let tags: Vec<_> = new
        .images
        .iter()
        .map(|(service, image)| {
            (
                service,
                image,
                versions::keep_tag(&stack.name, service, version),
            )
        })
        .collect();
    let tagged = join_all(
        tags.iter()
            .map(|(_, image, (repo, tag))| engine.tag_image(image, repo, tag)),
    )
    .await;
    for ((service, _, (repo, tag)), result) in tags.iter().zip(tagged) {
        if let Err(err) = result {
            warn!(
                "cannot tag {service}'s image as {repo}:{tag}: {}",
                err.message()
            );
        }
    }
    let entry = VersionRecord {
        version: version.clone(),
        color: new.color,
        deployed_at: state::now(),
        images: new.images.clone(),
        digests: new.digests.clone(),
        git_ref: Some(new.build.vcs_ref.clone()).filter(|r| r != "unknown"),
    };
    let mut pruned = Vec::new();
    state::update(stack, |record| {
        if let Some(deployment) = record.deployments.get_mut(&new.color) {
            deployment.images = new.images.clone();
            deployment.digests = new.digests.clone();
        }
        pruned = versions::push(&mut record.versions, entry, new.keep);
    })?;
    for old in &pruned {
        forget(engine, stack, old).await;
    }
    Ok(())
}

/// Remove a pruned version's files and tags (what is already gone is fine).
async fn forget<E: Engine>(engine: &E, stack: &Stack, old: &VersionRecord) {
    for file in [
        versions::rendered_path(stack, &old.version),
        versions::config_path(stack, &old.version),
    ] {
        if let Err(e) = std::fs::remove_file(&file)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!("cannot remove {}: {e}", file.display());
        }
    }
    for service in old.images.keys() {
        let (repo, tag) = versions::keep_tag(&stack.name, service, &old.version);
        match engine.untag_image(&format!("{repo}:{tag}")).await {
            Ok(()) | Err(Error::NotFound(_)) => {}
            Err(err) => warn!("cannot remove the tag {repo}:{tag}: {}", err.message()),
        }
    }
}

/// The version serving now: the one recorded for the active color.
pub fn active_version(record: &state::StateFile, active: Option<Color>) -> Option<&str> {
    let active = active?;
    record.deployments.get(&active)?.version.as_deref()
}

/// One retained version as `--list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionEntry {
    /// `deployment.version` of its deploy.
    pub version: String,
    /// The color it runs (or last ran) in.
    pub color: Color,
    /// When it was deployed.
    pub deployed_at: String,
    /// Whether it is the one serving.
    pub active: bool,
    /// Image id of each service.
    pub images: BTreeMap<String, String>,
    /// The repository digest of each service's image, where it has one.
    #[serde(default)]
    pub digests: BTreeMap<String, String>,
    /// The git ref of its deploy, if the project is a git repository.
    pub git_ref: Option<String>,
}

/// What `ztd-rollback --list` found: its report body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionList {
    /// The active color.
    pub active: Option<Color>,
    /// The retained versions, newest first.
    pub versions: Vec<VersionEntry>,
}

impl Outcome for VersionList {
    /// Always 0: listing changes nothing.
    fn status(&self) -> ExitStatus {
        ExitStatus::Success
    }
}

/// `ztd-rollback --list`: the retained versions from the state file, the active one marked.
pub fn list(stack: &Stack) -> Result<VersionList> {
    let record = state::read_state(stack)?.unwrap_or_default();
    let active = state::read_current_deployment(stack)?.or(record.active);
    let serving = active_version(&record, active).map(str::to_string);
    let versions = record
        .versions
        .iter()
        .map(|v| VersionEntry {
            version: v.version.clone(),
            color: v.color,
            deployed_at: v.deployed_at.clone(),
            active: serving.as_deref() == Some(v.version.as_str()) && Some(v.color) == active,
            images: v.images.clone(),
            digests: v.digests.clone(),
            git_ref: v.git_ref.clone(),
        })
        .collect();
    Ok(VersionList { active, versions })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Report, json_line};

    #[test]
    fn a_version_list_keeps_its_fields_and_decodes_back() {
        let stack = Stack {
            dir: "/srv/shop".into(),
            name: "shop".into(),
        };
        let body = VersionList {
            active: Some(Color::Green),
            versions: vec![VersionEntry {
                version: "green-20261129-135114".into(),
                color: Color::Green,
                deployed_at: "2026-11-29T13:51:14.000Z".into(),
                active: true,
                images: [("web".to_string(), "sha256:abc".to_string())].into(),
                digests: [("web".to_string(), "reg.example/web@sha256:def".to_string())].into(),
                git_ref: Some("abc1234".into()),
            }],
        };
        let report = Report::new("ztd-rollback", &stack, Some(Color::Green), body);
        let line = json_line(&report);
        let value: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(value["versions"][0]["images"]["web"], "sha256:abc");
        assert_eq!(
            value["versions"][0]["digests"]["web"],
            "reg.example/web@sha256:def"
        );
        assert_eq!(value["versions"][0]["active"], true);
        let back: Report<VersionList> = serde_json::from_str(&line).expect("decode");
        assert_eq!(back, report);
    }
}
