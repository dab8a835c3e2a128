//! Where events go: sinks take rows from the outbox and say when they have
//! them, so the outbox moves only after delivery.

pub mod file;
pub mod nats;
pub mod stdout;
pub mod webhook;

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

/// An event the destination refused for good (e.g. HTTP 400): it goes to
/// the dead-letter table, not back to the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub seq: i64,
    pub reason: String,
}

/// A destination for events. `send` returns `Ok` only when every row of the
/// batch was delivered (written and flushed, or acknowledged by the
/// server), except the ones it returns as rejected; then the rows may be
/// deleted. On `Err` nothing of the batch counts as delivered (some may
/// have been, and will be sent again with the same event id).
pub trait Sink {
    fn name(&self) -> &str;
    fn send(&mut self, batch: &[OutboxRow]) -> Result<Vec<Rejected>, SinkError>;
    /// Reopens outputs (SIGHUP, after logrotate moved a file away).
    fn reopen(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
