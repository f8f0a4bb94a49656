//! Pulling a color's images before it is created (`ztd-up --pull`, `ZTD_PULL`, each service's
//! `pull_policy`), and reading back the repository digest of each image a deploy runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::str::FromStr;

use futures_util::future::join_all;
use serde_json::Value;

use crate::compose::Compose;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::stack::Stack;
use crate::state;
use crate::{info, warn};

/// When a service's image is pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Every deploy pulls it.
    Always,
    /// Pulled only when the engine does not have it.
    Missing,
    /// Never pulled: a missing image refuses the deploy.
    Never,
}

impl FromStr for PullPolicy {
    type Err = Error;

    fn from_str(text: &str) -> Result<PullPolicy> {
        match text.trim() {
            "always" => Ok(PullPolicy::Always),
            "missing" => Ok(PullPolicy::Missing),
            "never" => Ok(PullPolicy::Never),
            other => Err(Error::Usage(format!(
                "pull policy {other:?}: expected always, missing or never"
            ))),
        }
    }
}

/// `ZTD_PULL`, when it is set (and not empty).
pub fn from_env() -> Result<Option<PullPolicy>> {
    match std::env::var("ZTD_PULL").ok().as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|e: Error| Error::Usage(format!("ZTD_PULL: {}", e.message()))),
    }
}

/// Whether an image reference names its registry (`host.domain/...`, `host:port/...`,
/// `localhost/...`), as opposed to a Docker Hub name or an image only built here.
pub fn names_registry(image: &str) -> bool {
    match image.split_once('/') {
        Some((first, _)) => first.contains('.') || first.contains(':') || first == "localhost",
        None => false,
    }
}

/// How one service's image is pulled, or `None` when it is not pulled at all (it is built, has
/// no image, or says `pull_policy: build`). `asked` (`--pull`, `ZTD_PULL`) wins over the
/// service's `pull_policy`; without either, an image that names its registry is pulled on every
/// deploy and any other only when it is missing.
pub fn service_policy(service: &Value, asked: Option<PullPolicy>) -> Option<PullPolicy> {
    if service.get("build").is_some_and(|b| !b.is_null()) {
        return None;
    }
    let image = service.get("image").and_then(Value::as_str)?;
    if let Some(asked) = asked {
        return Some(asked);
    }
    match service.get("pull_policy").and_then(Value::as_str) {
        Some("always") => Some(PullPolicy::Always),
        Some("never") => Some(PullPolicy::Never),
        Some("build") => None,
        // missing, if_not_present, daily, weekly, every_<duration>: ztd keeps no pull times.
        Some(_) => Some(PullPolicy::Missing),
        None if names_registry(image) => Some(PullPolicy::Always),
        None => Some(PullPolicy::Missing),
    }
}

/// Pull what the color's services need before anything of the color is created: decide per
/// service, ask the engine which images are missing, then one `compose pull` of the color's
/// project (through a temporary copy of its rendered file, so a refused deploy leaves the color's
/// own file as it was). A missing image under `never`, or a pull that fails, is an engine error
/// (exit 4) with the reason on one line. Returns the services pulled.
pub async fn pull_images<E: Engine>(
    engine: &E,
    compose: &Compose,
    stack: &Stack,
    project: &str,
    color_model: &Value,
    asked: Option<PullPolicy>,
) -> Result<Vec<String>> {
    let services = color_model
        .get("services")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut wanted = Vec::new();
    // Whether each image is on the engine, asked once per image however many services use it.
    let mut present: BTreeMap<String, bool> = BTreeMap::new();
    for (name, service) in &services {
        let Some(policy) = service_policy(service, asked) else {
            continue;
        };
        let image = service.get("image").and_then(Value::as_str).unwrap_or("");
        let on_engine = match (policy, present.get(image)) {
            (PullPolicy::Always, _) => true,
            (_, Some(known)) => *known,
            (_, None) => {
                let known = engine.inspect_image(image).await?.is_some();
                present.insert(image.to_string(), known);
                known
            }
        };
        let pull = match policy {
            PullPolicy::Always => true,
            PullPolicy::Missing => !on_engine,
            PullPolicy::Never => {
                if !on_engine {
                    return Err(Error::Engine(format!(
                        "{name}: the image {image} is not on the engine and its pull policy is never: pull or build it, or deploy with --pull missing"
                    )));
                }
                false
            }
        };
        if pull {
            wanted.push(name.clone());
        }
    }
    if wanted.is_empty() {
        return Ok(wanted);
    }
    info!("pulling the images of {}", wanted.join(", "));
    let path = stack.ztd_dir().join(format!("pull.{project}.yml"));
    std::fs::create_dir_all(stack.ztd_dir())
        .map_err(|e| Error::State(format!("{}: {e}", stack.ztd_dir().display())))?;
    state::write_atomic(
        &path,
        crate::render::rendered_text(color_model).as_bytes(),
        0o600,
    )?;
    let pulled = compose.pull(stack, project, &path, &wanted).await;
    remove_quietly(&path);
    pulled.map(|()| wanted)
}

/// Remove a temporary file; one already gone is fine.
fn remove_quietly(path: &Path) {
    if let Err(err) = std::fs::remove_file(path)
        && err.kind() != std::io::ErrorKind::NotFound
    {
        warn!("cannot remove {}: {err}", path.display());
    }
}

/// The repository digest of each service's image, where it has one: of the image's
/// `RepoDigests`, the one of the repository its reference names, else the first.
pub async fn digests<E: Engine>(
    engine: &E,
    images: &BTreeMap<String, String>,
    references: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    // Services often share an image: ask the engine once per image, all at once.
    let ids: BTreeSet<&String> = images.values().collect();
    let answers = join_all(ids.iter().map(|id| engine.inspect_image(id))).await;
    let details: BTreeMap<&String, _> = ids.into_iter().zip(answers).collect();
    let mut out = BTreeMap::new();
    for (service, id) in images {
        let details = match details.get(id) {
            Some(Ok(Some(details))) => details,
            Some(Ok(None)) | None => continue,
            Some(Err(err)) => {
                warn!(
                    "cannot read the digest of {service}'s image: {}",
                    err.message()
                );
                continue;
            }
        };
        let repo = references.get(service).map(|r| repository(r));
        let chosen = details
            .repo_digests
            .iter()
            .find(|d| repo.is_some_and(|repo| d.split('@').next() == Some(repo)))
            .or_else(|| details.repo_digests.first());
        if let Some(digest) = chosen {
            out.insert(service.clone(), digest.clone());
        }
    }
    out
}

/// An image reference without its tag or digest (`host:5000/app:v1` → `host:5000/app`).
fn repository(reference: &str) -> &str {
    let name = reference.split('@').next().unwrap_or(reference);
    match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn registry_images_are_pulled_by_default_built_ones_never() {
        let cases = [
            (
                json!({"image": "127.0.0.1:5000/app:latest"}),
                None,
                Some(PullPolicy::Always),
            ),
            (
                json!({"image": "ghcr.io/acme/web"}),
                None,
                Some(PullPolicy::Always),
            ),
            (
                json!({"image": "nginx:1.25"}),
                None,
                Some(PullPolicy::Missing),
            ),
            (
                json!({"image": "acme/web"}),
                None,
                Some(PullPolicy::Missing),
            ),
            (
                json!({"image": "x", "build": {"context": "."}}),
                Some(PullPolicy::Always),
                None,
            ),
            (json!({"build": {"context": "."}}), None, None),
            (
                json!({"image": "reg.io/a", "pull_policy": "never"}),
                None,
                Some(PullPolicy::Never),
            ),
            (
                json!({"image": "a", "pull_policy": "always"}),
                None,
                Some(PullPolicy::Always),
            ),
            (
                json!({"image": "reg.io/a", "pull_policy": "if_not_present"}),
                None,
                Some(PullPolicy::Missing),
            ),
            (
                json!({"image": "a", "pull_policy": "build"}),
                Some(PullPolicy::Always),
                Some(PullPolicy::Always),
            ),
            (
                json!({"image": "reg.io/a", "pull_policy": "never"}),
                Some(PullPolicy::Always),
                Some(PullPolicy::Always),
            ),
            (
                json!({"image": "reg.io/a"}),
                Some(PullPolicy::Never),
                Some(PullPolicy::Never),
            ),
        ];
        for (service, asked, want) in cases {
            assert_eq!(service_policy(&service, asked), want, "{service} {asked:?}");
        }
    }

    #[test]
    fn policies_parse_and_anything_else_is_a_usage_error() {
        assert_eq!("always".parse(), Ok(PullPolicy::Always));
        assert_eq!(" never ".parse(), Ok(PullPolicy::Never));
        assert!(matches!(
            "sometimes".parse::<PullPolicy>(),
            Err(Error::Usage(_))
        ));
    }

    #[test]
    fn a_repository_drops_its_tag_but_keeps_its_port() {
        assert_eq!(
            repository("127.0.0.1:5000/app:latest"),
            "127.0.0.1:5000/app"
        );
        assert_eq!(repository("127.0.0.1:5000/app"), "127.0.0.1:5000/app");
        assert_eq!(repository("app@sha256:abc"), "app");
        assert_eq!(repository("nginx:1.25"), "nginx");
    }
}
