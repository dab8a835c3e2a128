//! RFC 5423 events built from the changes `diff` found.

pub mod imapurl;
pub mod uidset;
