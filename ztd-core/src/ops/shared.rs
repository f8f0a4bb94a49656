//! The shared services (`ztd.switch=shared`): one Compose project for both colors, whose
//! containers each color's networks reach by their service names.

use crate::engine::{ContainerQuery, Engine};
use crate::error::Result;
use crate::render::DeployMeta;
use crate::stack::Stack;
use crate::warn;

/// Where the shared project's file is written.
pub fn shared_compose_path(stack: &Stack) -> std::path::PathBuf {
    stack.ztd_dir().join("shared").join("compose.yml")
}

/// Connect each shared service to the color's networks, answering to its name and aliases.
pub async fn attach_shared<E: Engine>(engine: &E, stack: &Stack, meta: &DeployMeta) -> Result<()> {
    if meta.shared.is_empty() {
        return Ok(());
    }
    let shared = engine
        .list(&ContainerQuery::project(&stack.shared_project()))
        .await?;
    for attachment in &meta.shared {
        let Some(container) = shared.iter().find(|c| c.service == attachment.service) else {
            warn!("shared service {} has no container", attachment.service);
            continue;
        };
        for (key, aliases) in &attachment.networks {
            if let Some(network) = meta.networks.get(key) {
                engine.connect(network, &container.id, aliases).await?;
            }
        }
    }
    Ok(())
}
