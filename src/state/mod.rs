//! The state database and its one owner: users' snapshots, the outbox of
//! numbered events, each sink's position and the dead letters.
//!
//! Below the sinks and the service: sinks see the rows and rejections
//! defined here, never the other way round.

mod checkpoint;
pub mod outbox;
pub mod reader;
mod rows;
mod schema;
pub mod store;
