//! Where events go: sinks take rows from the outbox and say when they have
//! them, so the outbox moves only after delivery.

pub mod stdout;

use std::fmt;

use crate::store::OutboxRow;

/// Why a sink did not take a batch.
#[derive(Debug)]
pub enum SinkError {
    /// The reader went away (a closed pipe): stop delivering, keep the rows.
    Closed,
    /// Any other failure; the rows stay in the outbox.
    Failed(String),
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkError::Closed => f.write_str("the output was closed"),
            SinkError::Failed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for SinkError {}

/// A destination for events. `send` returns only when the whole batch is
/// delivered (written and flushed); then the rows may be deleted.
pub trait Sink {
    fn name(&self) -> &str;
    fn send(&mut self, batch: &[OutboxRow]) -> Result<(), SinkError>;
}
