//! Pure readers of the on-disk formats of a Maildir store.
//!
//! Nothing in here touches the filesystem: every function takes the bytes
//! that `scan` read and returns data. That keeps the Maildir semantics
//! testable with tables of real-world names and files.

pub mod courier_keywords;
pub mod folders;
pub mod glob;
pub mod keywords;
pub mod mutf7;
pub mod name;
pub mod quota;
pub mod subscriptions;
pub mod template;
pub mod uidlist;
