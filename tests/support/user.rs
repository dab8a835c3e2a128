//! The single-store tests' environment (`tests/scan.rs`, `tests/watch.rs`,
//! `tests/config.rs`, `tests/quota.rs`, `tests/hostile.rs`): one user's
//! Maildir in a temporary directory with its own state directory and
//! config file, runs of `scan` and `check-config` over it, and a
//! [`super::live::Watch`] of it.
//!
//! Folder arguments are on-disk directory names: `""` is INBOX (the Maildir
//! root), `".Trash"` a Maildir++ folder. Messages are delivered the Maildir
//! way (written in `tmp/`, renamed into `new/` or `cur/`), so a watcher
//! never sees a half-written file.
#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

use super::fixture::{Maildir, copy_store};
use super::live::{Spawn, Watch};

pub use super::evq::{ALICE, USER, kinds, mbox, n, of, one, s, uid};
pub use super::run::{BIN, Run, SERVER, parse_lines};

/// The quota events' `uri`: the user's INBOX, without UIDVALIDITY.
pub const INBOX_URL: &str = "imap://alice%40example.org@mx.example.org/INBOX";

/// EX_CONFIG.
pub const EX_CONFIG: i32 = 78;

// ------------------------------------------------------ event accessors

/// The events whose type starts with `Quota`.
pub fn quota_events(evs: &[Value]) -> Vec<&Value> {
    evs.iter()
        .filter(|e| s(e, "event").starts_with("Quota"))
        .collect()
}

/// The types of the quota events.
pub fn quota_kinds(evs: &[Value]) -> Vec<&str> {
    quota_events(evs)
        .into_iter()
        .map(|e| s(e, "event"))
        .collect()
}

/// The event keys, in order.
pub fn keys(ev: &Value) -> Vec<&str> {
    ev.as_object().unwrap().keys().map(String::as_str).collect()
}

/// Events one per line, for assertion messages.
pub fn show(evs: &[Value]) -> String {
    let mut out = String::from("\n");
    for e in evs {
        out.push_str(&format!("  {e}\n"));
    }
    out
}

/// A quota event's numbers: (`diskUsed`, `diskQuota`, `messages`,
/// `maxMessages`), the optional ones `None` when absent.
pub fn quota_numbers(ev: &Value) -> (u64, Option<u64>, u64, Option<u64>) {
    (
        n(ev, "diskUsed"),
        ev.get("diskQuota").map(|v| v.as_u64().unwrap()),
        n(ev, "messages"),
        ev.get("maxMessages").map(|v| v.as_u64().unwrap()),
    )
}

/// Checks a quota event's envelope: user, server, `uri` of the INBOX.
pub fn check_quota_event(ev: &Value) {
    assert_eq!(s(ev, "user"), USER, "{ev}");
    assert_eq!(s(ev, "serverFQDN"), SERVER, "{ev}");
    assert_eq!(s(ev, "uri"), INBOX_URL, "{ev}");
    assert_eq!(s(ev, "process"), "maildir-events", "{ev}");
    assert!(ev["vnd.maildir.seq"].as_u64().is_some(), "{ev}");
}

// ------------------------------------------------------------- the store

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A Maildir++ base name: `SECS.M<i>P4242.testhost`.
pub fn base_at(secs: u64, i: u32) -> String {
    format!("{secs}.M{i}P4242.testhost")
}

/// A base name ordered by `i`, from 2023.
pub fn base(i: u32) -> String {
    base_at(1_700_000_000, i)
}

/// The same with Dovecot's `,S=<size>`.
pub fn sized(i: u32, size: u64) -> String {
    format!("{},S={size}", base(i))
}

/// A message of exactly `len` bytes (header, blank line, body of `x`).
pub fn body_of(len: usize) -> Vec<u8> {
    let head = b"Subject: q\n\n";
    assert!(len > head.len() + 1, "message too short");
    let mut v = head.to_vec();
    v.resize(len - 1, b'x');
    v.push(b'\n');
    v
}

/// One user's Maildir, a state directory and an optional config file.
/// The store methods are [`Maildir`]'s, for brevity in the tests.
pub struct Env {
    pub tmp: TempDir,
    pub root: PathBuf,
    pub md: Maildir,
    pub state: PathBuf,
    pub config: Option<PathBuf>,
}

impl Env {
    pub fn new() -> Env {
        let tmp = TempDir::new().unwrap();
        let md = Maildir::create(tmp.path().join("alice/Maildir"));
        Env::with(tmp, md)
    }

    /// An environment holding a copy of `testdata/sample/Maildir`.
    pub fn sample() -> Env {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path().join("alice/Maildir");
        copy_store(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/sample/Maildir"),
            &root,
        );
        Env::with(tmp, Maildir::open(root))
    }

    fn with(tmp: TempDir, md: Maildir) -> Env {
        let state = tmp.path().join("state");
        Env {
            tmp,
            root: md.root.clone(),
            md,
            state,
            config: None,
        }
    }

    /// The directory of a folder (`""` is the root).
    pub fn dir(&self, folder: &str) -> PathBuf {
        self.md.dir(folder)
    }

    /// Creates a folder with `cur/ new/ tmp/` (and `maildirfolder`).
    pub fn folder(&self, folder: &str) -> PathBuf {
        self.md.folder(folder)
    }

    pub fn path(&self, folder: &str, sub: &str, file: &str) -> PathBuf {
        self.md.path(folder, sub, file)
    }

    /// Writes `content` in `tmp/`, then renames it to `sub/file`.
    pub fn put(&self, folder: &str, sub: &str, file: &str, content: &[u8]) -> PathBuf {
        self.md.put(folder, sub, file, content)
    }

    /// Puts a message of `len` bytes into `new/`.
    pub fn deliver(&self, folder: &str, file: &str, len: usize) -> PathBuf {
        self.put(folder, "new", file, &body_of(len))
    }

    pub fn rm(&self, folder: &str, sub: &str, file: &str) {
        self.md.rm(folder, sub, file)
    }

    pub fn mv(&self, from: (&str, &str, &str), to: (&str, &str, &str)) {
        self.md.mv(from, to)
    }

    /// Writes a control file of a folder or of the root.
    pub fn write(&self, folder: &str, name: &str, contents: &[u8]) {
        self.md.write(folder, name, contents)
    }

    /// Writes `maildirsize` at the root.
    pub fn maildirsize(&self, text: &str) {
        self.write("", "maildirsize", text.as_bytes());
    }

    /// Writes the config file (`config.toml` next to the Maildir) that
    /// every later run gets with `--config`.
    pub fn set_config(&mut self, text: &str) -> PathBuf {
        let p = self.tmp.path().join("config.toml");
        fs::write(&p, text).unwrap();
        self.config = Some(p.clone());
        p
    }

    /// `maildir-events SUB [--config FILE] --state STATE --uid-wait-ms 0 ARGS…`
    /// (no store, no server name: the caller or the file gives them).
    pub fn bare(&self, sub: &str, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg(sub);
        if let Some(cfg) = &self.config {
            c.arg("--config").arg(cfg);
        }
        c.arg("--state").arg(&self.state);
        if !args.contains(&"--uid-wait-ms") {
            c.args(["--uid-wait-ms", "0"]);
        }
        c.args(args);
        c.env_remove("MAILDIR_EVENTS_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("CARGO_TERM_COLOR");
        c
    }

    /// `bare(SUB, ARGS) --server-name mx.example.org --user alice@… ROOT`.
    pub fn command(&self, sub: &str, args: &[&str]) -> Command {
        let mut c = self.bare(sub, args);
        if !args.contains(&"--server-name") {
            c.args(["--server-name", SERVER]);
        }
        c.arg("--user").arg(USER).arg(&self.root);
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::of(self.command("scan", args))
    }

    /// A scan that must succeed; its events, each checked to be
    /// [`USER`]'s.
    pub fn scan_with(&self, args: &[&str]) -> Vec<Value> {
        let evs = self.run(args).events();
        for ev in &evs {
            assert_eq!(s(ev, "user"), USER, "{ev}");
            assert!(s(ev, "uri").starts_with(&format!("{ALICE}/")), "{ev}");
        }
        evs
    }

    pub fn scan(&self) -> Vec<Value> {
        self.scan_with(&[])
    }

    /// The first scan: a silent baseline.
    pub fn baseline(&self) {
        self.baseline_with(&[]);
    }

    /// [`Env::baseline`] with `scan` options.
    pub fn baseline_with(&self, args: &[&str]) {
        let evs = self.scan_with(args);
        assert!(evs.is_empty(), "the baseline printed:{}", show(&evs));
    }

    /// A scan that must print nothing.
    pub fn quiet(&self) {
        let evs = self.scan();
        assert!(evs.is_empty(), "expected no events, got:{}", show(&evs));
    }

    /// `check-config [--config FILE] --state STATE ARGS…` (no store, no
    /// `--uid-wait-ms`: the defaults show).
    pub fn check_config(&self, args: &[&str]) -> Run {
        let mut c = Command::new(BIN);
        c.arg("check-config");
        if let Some(cfg) = &self.config {
            c.arg("--config").arg(cfg);
        }
        c.arg("--state").arg(&self.state).args(args);
        c.env_remove("MAILDIR_EVENTS_LOG");
        Run::of(c)
    }

    /// `watch --state … --server-name … ARGS… --user alice@… ROOT`, to
    /// start with other options than [`Env::watch`]'s.
    pub fn spawn(&self, args: &[&str]) -> Spawn {
        Spawn::new(&self.state, args)
            .arg("--user")
            .arg(USER)
            .arg(&self.md.root)
    }

    /// Starts a watcher with default options ([`Env::spawn`]) and waits
    /// for `READY=1`.
    pub fn watch(&self) -> Watch {
        self.spawn(&[]).start()
    }

    /// What a `scan` with default options over the same state prints.
    pub fn scan_lines(&self) -> Vec<String> {
        let root = self.md.root.as_os_str();
        let (code, lines, stderr) =
            super::live::scan(&self.state, &[OsStr::new("--user"), OsStr::new(USER), root]);
        assert_eq!(code, Some(0), "scan failed: {stderr}");
        lines
    }

    /// A `scan` with default options over the same state must print
    /// nothing: a watcher's committed snapshot is the disk.
    pub fn quiet_scan(&self) {
        let lines = self.scan_lines();
        assert!(
            lines.is_empty(),
            "a scan after the watcher should print nothing; it printed {} lines:\n{}",
            lines.len(),
            lines
                .iter()
                .take(30)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    /// Starts `watch` with the command line of the runs ([`Env::command`]:
    /// `--config` when set, `--uid-wait-ms 0` unless `args` set it) and
    /// waits for `READY=1`; it logs at its default level, as the runs do.
    pub fn watch_as_run(&self, args: &[&str]) -> Watch {
        let c = self.command("watch", args);
        let mut spawn = Spawn::command(c.get_args().map(OsString::from).collect());
        spawn.log = "warn";
        spawn.start()
    }
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

/// Parses TOML text into a generic table (panics with the text on error).
pub fn toml_table(text: &str) -> toml::Table {
    text.parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("not TOML ({e}):\n{text}"))
}

/// Whether `p` exists.
pub fn exists(p: &Path) -> bool {
    p.exists()
}
