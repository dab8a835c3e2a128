//! The one support module of the integration tests: every suite runs the
//! built binary on temporary stores (or against real servers) with these.
//!
//! - [`dovecot`]: a throwaway Dovecot per test (own config, ports, dirs).
//! - [`lmtp`]: deliver like an MTA, so Dovecot writes the message itself.
//! - [`imap`]: a minimal IMAP client to change the store and to ask the
//!   server for the truth (UIDVALIDITY, UIDs, sizes) events must match.
//! - [`events`]: parse and summarise the binary's JSON Lines.
//! - [`steps`]: the [`steps::Observer`] a real-Dovecot scenario drives,
//!   and how each step's events are compared.
//! - [`scenario`]: the main real-Dovecot scenario, observed by
//!   [`scansteps`] (a `scan` after each step) and [`livesteps`] (one
//!   `watch` running the whole time).
//! - [`fixture`]: the Maildir builder, changing stores the way Postfix,
//!   Dovecot and mail clients do.
//! - [`evq`]: reading the events the binary printed, and the URLs of the
//!   single-store tests' user.
//! - [`run`]: one run of the binary to its end, and the envelope every
//!   event it prints must have.
//! - [`live`]: a running `watch` and bounded polls for what it prints.
//! - [`user`]: one user's store with its own state and config files, and
//!   the runs and watchers over it (the single-store suites).
//! - [`e2e`]: multi-user stores with a ground truth, a webhook receiver and
//!   stream reads, for delivery tests.
//! - [`natsserver`]: a `nats-server -js` child on loopback.
//! - [`sinkutil`]: outbox rows shaped like the store's, for sink tests.
//! - here: run the binary, and fingerprint the store to prove the scan
//!   never writes into it.
//!
//! Each test binary compiles this module separately and uses only part of
//! it, hence the `dead_code` and `unused_imports` allowances.
#![allow(dead_code, unused_imports)]

pub mod dovecot;
pub mod e2e;
pub mod events;
pub mod evq;
pub mod fixture;
pub mod imap;
pub mod live;
pub mod livesteps;
pub mod lmtp;
pub mod natsserver;
pub mod run;
pub mod scansteps;
pub mod scenario;
pub mod sinkutil;
pub mod steps;
pub mod user;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use dovecot::{Dovecot, Options, PASSWORD};
pub use events::{ImapUrl, parse_imap_url};
pub use imap::{Imap, format_sequence_set, parse_sequence_set};
pub use lmtp::deliver_lmtp;

/// The `--server-name` every test passes; event URLs must carry it.
pub const SERVER_NAME: &str = "mx.example.test";

/// Runs `maildir-events scan --state STATE --user USER --server-name
/// mx.example.test --allow-missing [EXTRA…] MAILDIR`, asserts it exits 0
/// (showing its stderr otherwise) and parses every stdout line as a JSON
/// value. `--allow-missing`: Dovecot creates a user's Maildir at the first
/// delivery, and the tests' baselines run before it.
pub fn run_scan(
    state_dir: &Path,
    maildir: &Path,
    user: &str,
    extra_args: &[&str],
) -> Vec<serde_json::Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_maildir-events"))
        .arg("scan")
        .arg("--state")
        .arg(state_dir)
        .args([
            "--user",
            user,
            "--server-name",
            SERVER_NAME,
            "--allow-missing",
        ])
        .args(extra_args)
        .arg(maildir)
        .output()
        .expect("run maildir-events");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "maildir-events scan {} exited with {}\n--- stderr ---\n{stderr}\n--- stdout ---\n{stdout}",
        maildir.display(),
        output.status
    );
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}\nstderr: {stderr}"))
        })
        .collect()
}

/// `(length, mtime in ns, mode)` of one path, from `symlink_metadata`.
pub type Fingerprint = (u64, i128, u32);

/// Every file and directory under `dir` (including `dir`) with its
/// [`Fingerprint`]; empty when `dir` does not exist. Equal fingerprints
/// before and after a scan show it created, removed, renamed, wrote or
/// chmod-ed nothing in the store. Directory mtimes catch entries that were
/// created and removed again.
pub fn store_fingerprint(dir: &Path) -> BTreeMap<PathBuf, Fingerprint> {
    fn walk(path: &Path, out: &mut BTreeMap<PathBuf, Fingerprint>) {
        let Ok(meta) = path.symlink_metadata() else {
            return; // vanished or never existed
        };
        let mtime = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
        out.insert(path.to_path_buf(), (meta.len(), mtime, meta.mode()));
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .unwrap_or_else(|e| panic!("read_dir {}: {e}", path.display()))
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            for entry in entries {
                walk(&entry, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

/// The differences between two fingerprints, one line per path, for a
/// readable assertion message. Empty when equal.
pub fn fingerprint_diff(
    before: &BTreeMap<PathBuf, Fingerprint>,
    after: &BTreeMap<PathBuf, Fingerprint>,
) -> Vec<String> {
    let mut diff = Vec::new();
    for (path, old) in before {
        match after.get(path) {
            None => diff.push(format!("removed  {}", path.display())),
            Some(new) if new != old => {
                diff.push(format!("changed  {} {old:?} → {new:?}", path.display()))
            }
            Some(_) => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        diff.push(format!("added    {}", path.display()));
    }
    diff
}

/// A small RFC 5322 message with CRLF line ends, unique per `subject`.
pub fn message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Sender <sender@example.test>\r\n\
         To: Alice <alice@example.test>\r\n\
         Subject: {subject}\r\n\
         Message-ID: <{}@example.test>\r\n\
         Date: Sat, 28 Nov 2026 09:15:02 +0100\r\n\
         \r\n\
         {body}\r\n",
        subject.replace(' ', "-")
    )
    .into_bytes()
}
