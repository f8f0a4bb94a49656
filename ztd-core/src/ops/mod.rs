//! The operations, one per tool: each takes the model and the engine and returns a typed
//! report; none prints.

pub mod detect;
#[cfg(test)]
mod fault_table;
pub mod health;
pub mod hooks;
pub mod monitor;
pub mod pull;
pub mod recover;
pub mod shared;
pub mod switch;
pub mod up;
pub mod validate;
pub mod versions;
