//! maildir-events: RFC 5423 message store events from Maildir stores, as
//! the IMAP server would report them.
//!
//! Data flows one way:
//!
//! ```text
//! fs ──▶ scan (listing) ──▶ diff (changes + new snapshot) ──▶ event (RFC 5423)
//!    ──▶ store (snapshot + outbox, one transaction) ──▶ sink (deliver, then ack)
//! ```
//!
//! `maildir` holds the pure parsers of on-disk formats; `scan` is the only
//! module that lists the mail store (and `enrich` reads a new message's
//! file when a parameter needs it); nothing ever writes into it. `diff`,
//! `live`, `quota`, `content` and `event` are pure. `watch` and `daemon`
//! turn inotify into batches for `live`; `store` and `outbox` are the
//! state database; `delivery` drives the `sink`s.

pub mod access;
pub mod cli;
pub mod config;
pub mod content;
pub mod courier;
pub mod diff;
pub mod enrich;
pub mod error;
pub mod event;
pub mod host;
pub mod listing;
pub mod live;
pub mod maildir;
pub mod manual;
pub mod quota;
pub mod root;
pub mod scan;
pub mod service;
pub mod sink;
pub mod snapshot;
pub mod state;
pub mod storefs;
pub mod uidtail;
pub mod warnlimit;
