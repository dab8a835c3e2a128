//! The errors a run can end with, and their exit codes.
//!
//! Exit codes follow sysexits(3), so cron mail and systemd show the class
//! of failure at a glance: 0 ok, 2 usage (from clap), 65 damaged or foreign
//! state, 66 a MAILDIR named that is missing or not a Maildir, 73 state
//! cannot be created, 74 output failed (events stay in the
//! outbox), 75 state in use by another process, 78 bad configuration.

use std::fmt;

use crate::config::ConfigError;
use crate::sink::SinkError;
use crate::state::store::{StoreError, StoreErrorKind};

/// A run's failure; its message says which path and what to do.
#[derive(Debug)]
pub enum Error {
    Config(ConfigError),
    Store(StoreError),
    /// A Maildir named explicitly is missing or is not a Maildir.
    NoInput(String),
    /// The sink failed; the events it did not take stay in the outbox.
    Sink {
        error: SinkError,
        kept: u64,
    },
}

pub const EX_OK: i32 = 0;
pub const EX_USAGE: i32 = 2;
pub const EX_DATAERR: i32 = 65;
pub const EX_NOINPUT: i32 = 66;
pub const EX_SOFTWARE: i32 = 70;
pub const EX_CANTCREAT: i32 = 73;
pub const EX_IOERR: i32 = 74;
pub const EX_TEMPFAIL: i32 = 75;
pub const EX_CONFIG: i32 = 78;

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) => EX_CONFIG,
            Error::Store(e) => match e.kind() {
                StoreErrorKind::Corrupt => EX_DATAERR,
                StoreErrorKind::CantCreate => EX_CANTCREAT,
                StoreErrorKind::Locked => EX_TEMPFAIL,
                StoreErrorKind::Io => EX_IOERR,
            },
            Error::Sink { .. } => EX_IOERR,
            Error::NoInput(_) => EX_NOINPUT,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "{e}"),
            Error::Store(e) => write!(f, "{e}"),
            Error::NoInput(why) => f.write_str(why),
            Error::Sink { error, kept } => write!(
                f,
                "{error}; {kept} event(s) kept in the outbox for the next run"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

impl From<crate::access::AccessError> for Error {
    fn from(e: crate::access::AccessError) -> Self {
        Error::Config(ConfigError(e.0))
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}
