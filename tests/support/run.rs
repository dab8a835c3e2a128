//! One run of the binary to its end: the command lines the single-store
//! tests build, what came out, and the checks every event printed must
//! pass (the envelope of the event contract in README).

use std::borrow::BorrowMut;
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::evq::{s, uids};

pub const BIN: &str = env!("CARGO_BIN_EXE_maildir-events");
/// The `--server-name` of the single-store tests.
pub const SERVER: &str = "mx.example.org";

/// `maildir-events scan --state STATE --server-name SERVER [--uid-wait-ms 0] ARGS…`
/// at the default log level: `--uid-wait-ms 0` unless `args` set it.
pub fn scan_command(state: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("scan")
        .arg("--state")
        .arg(state)
        .arg("--server-name")
        .arg(SERVER);
    if !args.contains(&"--uid-wait-ms") {
        c.args(["--uid-wait-ms", "0"]);
    }
    c.args(args);
    c.env_remove("MAILDIR_EVENTS_LOG");
    c
}

/// The outcome of one run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub args: Vec<OsString>,
    /// Whether stdout was valid UTF-8 (`stdout` is lossy either way).
    pub utf8: bool,
}

impl Run {
    /// Runs `cmd` to its end.
    pub fn of(mut cmd: impl BorrowMut<Command>) -> Run {
        let cmd = cmd.borrow_mut();
        let args = cmd.get_args().map(OsString::from).collect();
        let out = cmd.output().expect("run maildir-events");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            args,
            utf8: std::str::from_utf8(&out.stdout).is_ok(),
        }
    }

    /// Asserts exit 0 and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code,
            Some(0),
            "expected exit 0\nargs: {:?}\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }

    /// The events, after checking the run succeeded and each line is a
    /// well-formed event ([`check_envelope`]).
    pub fn events(&self) -> Vec<Value> {
        let stdout = self.ok();
        assert!(self.utf8, "stdout is not UTF-8:\n{stdout}");
        parse_lines(stdout)
    }

    /// The events of a run that succeeded, each a JSON object with an
    /// `event`, without the envelope check: for runs whose server name is
    /// not [`SERVER`].
    pub fn parsed(&self) -> Vec<Value> {
        self.ok()
            .lines()
            .map(|l| {
                let v: Value =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
                assert!(v["event"].is_string(), "no event type: {l}");
                v
            })
            .collect()
    }

    /// Asserts exit `code`, nothing on stdout, and returns the
    /// `maildir-events:` error text on stderr (with its continuation lines).
    pub fn fails(&self, code: i32) -> &str {
        self.exits(code);
        assert!(
            self.stdout.is_empty(),
            "a failed run printed on stdout:\n{}",
            self.stdout
        );
        let at = self.stderr.find("maildir-events:").unwrap_or_else(|| {
            panic!(
                "stderr has no `maildir-events:` error line:\n{}",
                self.stderr
            )
        });
        &self.stderr[at..]
    }

    /// Asserts exit `code` and a `maildir-events:` line on stderr naming
    /// `what`.
    pub fn fails_naming(&self, code: i32, what: &str) {
        self.exits(code);
        assert!(
            self.stderr
                .lines()
                .any(|l| l.starts_with("maildir-events:") && l.contains(what)),
            "stderr should have a `maildir-events:` line naming {what:?}:\n{}",
            self.stderr
        );
    }

    /// Asserts exit `code` and that stderr says `what` anywhere (usage
    /// errors come from the argument parser, not as `maildir-events:`).
    pub fn fails_saying(&self, code: i32, what: &str) -> &Run {
        self.exits(code);
        assert!(
            self.stderr.contains(what),
            "stderr should say {what:?}:\n{}",
            self.stderr
        );
        self
    }

    fn exits(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}\nargs: {:?}\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.stdout,
            self.stderr
        );
    }
}

/// Parses JSON Lines output and checks every event's envelope.
pub fn parse_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            check_envelope(&v);
            v
        })
        .collect()
}

/// The keys every event has, in this order, with the per-event keys
/// between `mailboxID` and `pid`.
pub fn check_envelope(ev: &Value) {
    let obj = ev
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {ev}"));
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(keys.first(), Some(&"event"), "{ev}");
    assert_eq!(
        keys[keys.len().saturating_sub(4)..],
        ["pid", "process", "vnd.maildir.seq", "vnd.maildir.eventId"],
        "{ev}"
    );
    let pos = |k: &str| {
        keys.iter()
            .position(|x| *x == k)
            .unwrap_or_else(|| panic!("no {k}: {ev}"))
    };
    // A quota event is about the user's INBOX as a whole: a `uri`, no
    // `mailboxID`.
    let quota = s(ev, "event").starts_with("Quota");
    let mut head = vec!["event", "timestamp", "user", "serverFQDN", "uri"];
    if !quota {
        head.push("mailboxID");
    }
    let head: Vec<usize> = head.into_iter().map(pos).collect();
    assert!(
        head.windows(2).all(|w| w[0] < w[1]),
        "envelope keys out of order: {ev}"
    );

    let ts = s(ev, "timestamp");
    assert!(
        chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
        "timestamp {ts:?} is not RFC 3339"
    );
    assert_eq!(
        ts.as_bytes().get(19),
        Some(&b'.'),
        "timestamp {ts:?} has no milliseconds"
    );
    assert!(
        ts[20..23].bytes().all(|b| b.is_ascii_digit()),
        "timestamp {ts:?} has no milliseconds"
    );
    assert_eq!(s(ev, "serverFQDN"), SERVER, "{ev}");
    assert!(s(ev, "uri").starts_with("imap://"), "{ev}");
    assert!(
        s(ev, "uri").is_ascii() && (quota || s(ev, "mailboxID").is_ascii()),
        "URLs must be ASCII: {ev}"
    );
    assert!(ev["pid"].as_u64().is_some(), "{ev}");
    assert_eq!(s(ev, "process"), "maildir-events", "{ev}");
    assert!(ev["vnd.maildir.seq"].as_u64().is_some(), "{ev}");
    assert!(!s(ev, "vnd.maildir.eventId").is_empty(), "{ev}");
    if let Some(set) = ev.get("uidset") {
        let set = set
            .as_str()
            .unwrap_or_else(|| panic!("uidset is no string: {ev}"));
        assert!(!uids(set).is_empty(), "{ev}");
    }
}
