//! The model: what a stack, its colors, labels, durations, recorded state and journal are,
//! and how a color's Compose project is rendered. Nothing here talks to the engine.

pub mod journal;
pub mod labels;
pub mod overrides;
pub mod render;
pub mod stack;
pub mod state;
pub mod units;
pub mod versions;
