//! Shared code of the benchmarks: a deterministic generator of Dovecot
//! Maildir++ stores and a helper that changes a generated store.

pub mod storegen;
