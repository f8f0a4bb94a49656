//! ztd-core: the logic of ztd's tools, shared by every thin tool crate.

pub mod cli;
pub mod compose;
pub mod detect;
pub mod docker;
pub mod endpoint;
pub mod engine;
pub mod error;
#[cfg(test)]
pub mod fake;
pub mod fault;
#[cfg(test)]
mod fault_table;
pub mod health;
pub mod journal;
pub mod labels;
pub mod monitor;
pub mod output;
pub mod overrides;
pub mod probe;
pub mod proxy;
pub mod recover;
pub mod render;
pub mod signals;
pub mod stack;
pub mod state;
pub mod switch;
pub mod units;
pub mod up;
pub mod validate;

pub use error::{Error, ExitStatus, Result};
