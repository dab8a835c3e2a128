//! Quota: limits, usage and the crossing of limits (pure).
//!
//! A filesystem cannot see a delivery the server refused, so our
//! QuotaExceed means "usage crossed the limit", not RFC 5423's failed
//! operation. Usage is computed from the directory (sizes from `S=` or
//! `stat`), never taken from `maildirsize`, which we never write.

use std::collections::HashMap;

/// Storage and message-count limits; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub bytes: Option<u64>,
    pub messages: Option<u64>,
}

/// The configured rules.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuotaRules {
    pub default: Limits,
    /// Config limits win over `maildirsize`.
    pub force: bool,
    /// Per-user limits and force.
    pub per_user: HashMap<String, (Limits, Option<bool>)>,
    /// Folder globs not counted.
    pub ignore: Vec<String>,
    /// Fraction of the limit usage must fall under before QuotaWithin.
    pub hysteresis: f64,
}
