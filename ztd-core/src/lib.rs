//! ztd-core: the logic of ztd's tools, shared by every thin tool crate.
//!
//! Four layers, one folder each (see ARCHITECTURE.md): `model` (stack, labels, units, state,
//! journal, rendering), `engine` (the engine trait and Docker, Compose, probes, the proxy), `ops`
//! (one operation per tool) and `report` (the typed reports and their printers). The crate root
//! re-exports every module, so `ztd_core::switch` and `crate::stack` name the same thing.

pub mod cli;
pub mod engine;
pub mod error;
pub mod fault;
pub mod model;
pub mod ops;
pub mod report;
pub mod signals;
pub mod swarm;

#[cfg(test)]
pub use engine::fake;
pub use engine::{compose, docker, endpoint, notify, probe, proxy};
pub use model::{journal, labels, overrides, render, stack, state, units, versions};
pub use ops::{detect, health, hooks, monitor, pull, recover, shared, switch, up, validate};
pub use report::output;

pub use error::{Error, ExitStatus, Result};
