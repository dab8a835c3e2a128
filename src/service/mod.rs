//! The orchestration above the engine, the state and the sinks: a `scan`
//! run (`pipeline`), the `watch` daemon, delivery to the sinks, metrics and
//! the summary line. Nothing below imports from here.

pub mod daemon;
pub mod delivery;
mod lister;
pub mod metrics;
pub mod pipeline;
pub mod queue;
pub mod report;
