//! maildir-events: RFC 5423 message store events from Maildir stores.

pub mod event;
pub mod maildir;
