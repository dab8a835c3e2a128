//! `maildir-events watch` against a real Dovecot: one watcher runs the whole
//! time while Dovecot (LMTP, IMAP) or a Postfix-style `local(8)` delivery
//! changes the store, and the events printed live must match what Dovecot
//! answers (UIDVALIDITY, UIDs, RFC822.SIZE, mailbox names).
//!
//! Skipped (with a line on stderr) when Dovecot is not installed, unless
//! `CI=true`. Run: `cargo test --test dovecot_watch -- --nocapture`.
//!
//! After each step the test waits (bounded) until the expected events were
//! printed, then a short settle time for anything extra, and compares the
//! multiset of that step's events (or their order, where order is the
//! point). A scenario runs every step even when an earlier one mismatched
//! and fails at the end with all mismatches, so one run shows everything
//! the binary still gets wrong.

mod support;

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::events::{
    EnvelopeChecker, expect_flags, expect_mailbox, expect_message, expect_rename,
    expect_subscription, expect_uidset, parse_imap_url, summary,
};
use support::{
    Dovecot, Imap, PASSWORD, SERVER_NAME, deliver_lmtp, fingerprint_diff, format_sequence_set,
    message, run_scan, store_fingerprint,
};

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";

/// How long a step waits for its expected events.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after the expected events any extra one must not come.
const SETTLE: Duration = Duration::from_millis(300);
/// The settle time of steps that expect no event at all (nothing to wait
/// for first, so a little longer).
const QUIET: Duration = Duration::from_millis(600);
/// How long the watcher may take to send `READY=1`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// The watcher process
// ---------------------------------------------------------------------------

/// One line of the watcher's stdout.
enum Line {
    Event(Value),
    NotJson(String),
}

/// What waiting for the next line gave.
enum Next {
    Line(Line),
    Timeout,
    Closed,
}

/// A running `maildir-events watch`, its stdout read by a thread, its
/// state database, `NOTIFY_SOCKET` and stderr in one temp directory.
struct Watcher {
    child: Option<Child>,
    lines: Receiver<Line>,
    dir: Option<tempfile::TempDir>,
    state: PathBuf,
    stderr_path: PathBuf,
    /// When `READY=1` came, relative to the spawn.
    ready_after: Duration,
    closed: bool,
}

impl Watcher {
    /// Spawns `maildir-events watch --state … --user USER --server-name
    /// mx.example.test [EXTRA…] MAILDIR` and waits for `READY=1` on a
    /// datagram socket passed as `NOTIFY_SOCKET`.
    fn start(maildir: &Path, user: &str, extra_args: &[&str]) -> Watcher {
        let dir = tempfile::Builder::new()
            .prefix("maildir-events-watch-")
            .tempdir()
            .expect("watcher temp dir");
        let state = dir.path().join("state");
        fs::create_dir(&state).unwrap();
        let socket_path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&socket_path).expect("bind NOTIFY_SOCKET");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stderr_path = dir.path().join("stderr.log");
        let stderr = fs::File::create(&stderr_path).unwrap();

        let log_filter = std::env::var("MAILDIR_EVENTS_LOG").unwrap_or_else(|_| "info".to_string());
        let spawned = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_maildir-events"))
            .arg("watch")
            .arg("--state")
            .arg(&state)
            .args([
                "--user",
                user,
                "--server-name",
                SERVER_NAME,
                "--allow-missing",
            ])
            .args(extra_args)
            .arg(maildir)
            .env("NOTIFY_SOCKET", &socket_path)
            .env("MAILDIR_EVENTS_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn maildir-events watch");

        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.trim().is_empty() {
                    continue;
                }
                let parsed = match serde_json::from_str::<Value>(&line) {
                    Ok(v) => Line::Event(v),
                    Err(_) => Line::NotJson(line),
                };
                if tx.send(parsed).is_err() {
                    break;
                }
            }
        });

        let mut watcher = Watcher {
            child: Some(child),
            lines,
            dir: Some(dir),
            state,
            stderr_path,
            ready_after: Duration::ZERO,
            closed: false,
        };

        // Wait for READY=1 (STATUS=… datagrams may come too).
        let deadline = spawned + READY_TIMEOUT;
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                if text.lines().any(|l| l == "READY=1") {
                    watcher.ready_after = spawned.elapsed();
                    break;
                }
            }
            if let Some(status) = watcher.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "maildir-events watch exited before READY=1 ({status})\n--- stderr ---\n{}",
                    watcher.stderr()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "maildir-events watch sent no READY=1 within {READY_TIMEOUT:?}\n--- stderr ---\n{}",
                    watcher.stderr()
                );
            }
        }
        watcher
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().expect("watcher running").id() as i32
    }

    /// The next stdout line, waiting at most `timeout`.
    fn next(&mut self, timeout: Duration) -> Next {
        if self.closed {
            std::thread::sleep(timeout);
            return Next::Closed;
        }
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Next::Line(line),
            Err(RecvTimeoutError::Timeout) => Next::Timeout,
            Err(RecvTimeoutError::Disconnected) => {
                self.closed = true;
                Next::Closed
            }
        }
    }

    /// SIGTERM, then waits (10 s at most) for the exit; returns its status
    /// and whatever stdout lines came after the signal.
    fn stop(&mut self) -> (Option<ExitStatus>, Vec<Line>) {
        let pid = self.pid();
        // SAFETY: kill(2) on the pid of our own child, which has not been
        // reaped yet (so the pid cannot have been reused).
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut rest = Vec::new();
        while let Next::Line(line) = self.next(Duration::from_secs(2)) {
            rest.push(line);
        }
        (status, rest)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- watcher stderr ---\n{}", self.stderr());
            if let Some(dir) = self.dir.take() {
                eprintln!(
                    "watcher state kept for inspection: {}",
                    dir.keep().display()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Steps: wait, settle, compare
// ---------------------------------------------------------------------------

/// Pairs expected entries (each a list of acceptable summaries) with
/// distinct actual summaries; returns how many expected entries found one
/// (maximum bipartite matching, small sizes).
fn matched(actual: &[String], expected: &[Vec<String>]) -> usize {
    fn augment(
        e: usize,
        actual: &[String],
        expected: &[Vec<String>],
        owner: &mut [Option<usize>],
        seen: &mut [bool],
    ) -> bool {
        for (a, summary) in actual.iter().enumerate() {
            if seen[a] || !expected[e].contains(summary) {
                continue;
            }
            seen[a] = true;
            if owner[a].is_none_or(|other| augment(other, actual, expected, owner, seen)) {
                owner[a] = Some(e);
                return true;
            }
        }
        false
    }
    let mut owner = vec![None; actual.len()];
    (0..expected.len())
        .filter(|&e| {
            augment(
                e,
                actual,
                expected,
                &mut owner,
                &mut vec![false; actual.len()],
            )
        })
        .count()
}

fn show(lines: &[String]) -> String {
    if lines.is_empty() {
        "  (none)".to_string()
    } else {
        lines
            .iter()
            .map(|s| format!("  {s}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// What one step read from the watcher so far.
#[derive(Default)]
struct Got {
    events: Vec<Value>,
    summaries: Vec<String>,
    problems: Vec<String>,
    closed: bool,
}

impl Got {
    fn take(&mut self, next: Next) {
        match next {
            Next::Line(Line::Event(v)) => {
                self.summaries.push(summary(&v));
                self.events.push(v);
            }
            Next::Line(Line::NotJson(l)) => {
                self.problems.push(format!("stdout line is not JSON: {l}"))
            }
            Next::Timeout => {}
            Next::Closed => self.closed = true,
        }
    }
}

/// One user's store watched by one watcher, and the checks collected so
/// far.
struct Live {
    dovecot: Dovecot,
    watcher: Watcher,
    user: &'static str,
    maildir: PathBuf,
    extra_args: Vec<&'static str>,
    envelope: EnvelopeChecker,
    failures: Vec<String>,
}

impl Live {
    /// Starts the watcher on `user`'s Maildir (which may not exist yet).
    fn new(dovecot: Dovecot, user: &'static str, extra_args: Vec<&'static str>) -> Live {
        let maildir = dovecot.maildir(user);
        let watcher = Watcher::start(&maildir, user, &extra_args);
        eprintln!(
            "watcher ready after {:?} (Maildir exists: {})",
            watcher.ready_after,
            maildir.exists()
        );
        Live {
            dovecot,
            watcher,
            user,
            maildir,
            extra_args,
            envelope: EnvelopeChecker::default(),
            failures: Vec::new(),
        }
    }

    fn imap(&self) -> Imap {
        Imap::login(self.dovecot.imap_port(), self.user, PASSWORD)
    }

    fn fail(&mut self, step: &str, what: String) {
        eprintln!("step {step}: MISMATCH: {what}");
        self.failures.push(format!("step {step}: {what}"));
    }

    /// Reads events until `done` holds for their summaries (or
    /// [`EVENT_TIMEOUT`]), then for `settle` more. Checks the envelope of
    /// each event and reports lines that are not JSON.
    fn collect(
        &mut self,
        step: &str,
        done: impl Fn(&[String]) -> bool,
        settle: Duration,
    ) -> Vec<Value> {
        let started = Instant::now();
        let deadline = started + EVENT_TIMEOUT;
        let mut got = Got::default();
        while !done(&got.summaries) && !got.closed {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            got.take(self.watcher.next(deadline - now));
        }
        let waited = started.elapsed();
        let settle_end = Instant::now() + settle;
        while !got.closed {
            let now = Instant::now();
            if now >= settle_end {
                break;
            }
            got.take(self.watcher.next(settle_end - now));
        }
        let Got {
            events,
            mut problems,
            closed,
            ..
        } = got;
        if closed {
            problems.push(format!(
                "the watcher closed stdout (exited?)\n--- stderr ---\n{}",
                self.watcher.stderr()
            ));
        }
        eprintln!(
            "step {step}: {} event(s); expected ones complete after {waited:?}",
            events.len()
        );
        for p in problems {
            self.fail(step, p);
        }
        let bad = self.envelope.check(&events, self.user);
        if !bad.is_empty() {
            self.fail(step, format!("bad event fields:\n  {}", bad.join("\n  ")));
        }
        events
    }

    /// Waits for the expected events (each entry: acceptable summaries),
    /// settles, and compares the step's events with them as multisets.
    fn expect_any(&mut self, step: &str, expected: Vec<Vec<String>>) -> Vec<Value> {
        let settle = if expected.is_empty() { QUIET } else { SETTLE };
        let events = self.collect(
            step,
            |actual| matched(actual, &expected) == expected.len(),
            settle,
        );
        let actual: Vec<String> = events.iter().map(summary).collect();
        if matched(&actual, &expected) != expected.len() || actual.len() != expected.len() {
            let mut exp: Vec<String> = expected.iter().map(|alts| alts.join("\n    | ")).collect();
            exp.sort();
            let mut act = actual.clone();
            act.sort();
            self.fail(
                step,
                format!(
                    "events differ\n expected:\n{}\n actual:\n{}\n actual, in arrival order:\n{}",
                    show(&exp),
                    show(&act),
                    show(&actual)
                ),
            );
        }
        events
    }

    /// [`Live::expect_any`] with one acceptable summary per event.
    fn expect(&mut self, step: &str, expected: Vec<String>) -> Vec<Value> {
        self.expect_any(step, expected.into_iter().map(|s| vec![s]).collect())
    }

    /// Like [`Live::expect`], but the events must come in this order.
    fn expect_in_order(&mut self, step: &str, expected: Vec<String>) -> Vec<Value> {
        let n = expected.len();
        let events = self.collect(step, |actual| actual.len() >= n, SETTLE);
        let actual: Vec<String> = events.iter().map(summary).collect();
        if actual != expected {
            self.fail(
                step,
                format!(
                    "events differ (in order)\n expected:\n{}\n actual:\n{}",
                    show(&expected),
                    show(&actual)
                ),
            );
        }
        events
    }

    /// SIGTERM must end the watcher with exit 0 and no further event.
    fn stop(&mut self) {
        let (status, rest) = self.watcher.stop();
        match status {
            Some(s) if s.success() => eprintln!("watcher stopped on SIGTERM: {s}"),
            Some(s) => self.fail(
                "stop (SIGTERM)",
                format!(
                    "expected exit 0, got {s}\n--- stderr ---\n{}",
                    self.watcher.stderr()
                ),
            ),
            None => self.fail(
                "stop (SIGTERM)",
                "still running 10 s after SIGTERM (killed)".into(),
            ),
        }
        let rest: Vec<String> = rest
            .iter()
            .map(|l| match l {
                Line::Event(v) => summary(v),
                Line::NotJson(s) => format!("not JSON: {s}"),
            })
            .collect();
        if !rest.is_empty() {
            self.fail(
                "stop (SIGTERM)",
                format!("output after SIGTERM:\n{}", show(&rest)),
            );
        }
    }

    /// Panics with every recorded failure (and the watcher's stderr).
    fn finish(self) {
        if !self.failures.is_empty() {
            panic!(
                "{} failing check(s):\n\n{}\n\n--- watcher stderr ({}) ---\n{}",
                self.failures.len(),
                self.failures.join("\n\n"),
                self.watcher.stderr_path.display(),
                self.watcher.stderr()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/// File names in `sub` (`new` or `cur`) of a folder.
fn names_in(dir: &Path, sub: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir.join(sub)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A raw IMAP connection for `IDLE`, which the harness client does not
/// speak: the IDLE process must stay open while LMTP delivers.
struct IdleClient {
    reader: BufReader<TcpStream>,
}

impl IdleClient {
    /// Logs in, SELECTs INBOX (returns its UIDVALIDITY) and starts IDLE.
    fn start(port: u16, user: &str) -> (IdleClient, u32) {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to IMAP");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut c = IdleClient {
            reader: BufReader::new(stream),
        };
        let greeting = c.line();
        assert!(greeting.starts_with("* OK"), "greeting: {greeting}");
        c.tagged("i1", &format!("LOGIN \"{user}\" \"{PASSWORD}\""));
        let select = c.tagged("i2", "SELECT INBOX");
        let uidvalidity = select
            .iter()
            .find_map(|l| {
                let rest = l.split("[UIDVALIDITY ").nth(1)?;
                rest.split(']').next()?.parse().ok()
            })
            .unwrap_or_else(|| panic!("no UIDVALIDITY in {select:?}"));
        c.send("i3 IDLE");
        loop {
            let line = c.line();
            if line.starts_with('+') {
                break;
            }
            assert!(line.starts_with("* "), "IDLE refused: {line}");
        }
        (c, uidvalidity)
    }

    fn send(&mut self, line: &str) {
        let stream = self.reader.get_mut();
        stream.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        stream.flush().unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read IMAP line");
        assert!(n > 0, "IMAP server closed the connection");
        line.trim_end().to_string()
    }

    /// Sends `tag command`; returns the lines before the tagged OK.
    fn tagged(&mut self, tag: &str, command: &str) -> Vec<String> {
        self.send(&format!("{tag} {command}"));
        self.until(tag)
    }

    fn until(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                assert!(rest.starts_with("OK"), "IMAP {tag} failed: {line}");
                return lines;
            }
            lines.push(line);
        }
    }

    /// Ends IDLE and logs out; returns the untagged lines IDLE collected.
    fn done(mut self) -> Vec<String> {
        self.send("DONE");
        let lines = self.until("i3");
        self.send("i4 LOGOUT");
        let mut rest = String::new();
        let _ = self.reader.read_to_string(&mut rest);
        lines
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// The scan scenario (tests/dovecot_scan.rs), step by step, with one
/// watcher running the whole time from before the Maildir exists.
#[test]
fn watch_reports_each_step_live() {
    let Some(dovecot) = Dovecot::start() else {
        return;
    };
    let lmtp = dovecot.lmtp_port();
    let mut sc = Live::new(dovecot, ALICE, vec![]);
    assert!(!sc.maildir.exists(), "Maildir exists before any delivery");

    // 0. Nothing happens: nothing is printed.
    sc.expect("0 baseline (no Maildir yet)", vec![]);

    // 1a. The first LMTP delivery creates the Maildir (no event for INBOX
    //     itself) and its message.
    deliver_lmtp(lmtp, ALICE, &message("one", "First message."));
    let mut imap = sc.imap();
    let inbox = imap.status("INBOX");
    imap.examine("INBOX"); // read-only: leaves new/ for step 4
    let uids = imap.uid_search_all();
    assert_eq!(uids.len(), 1, "Dovecot has the first delivery");
    let u1 = uids[0];
    let uv = inbox.uidvalidity;
    let size = imap.uid_fetch_size(u1);
    sc.expect(
        "1a LMTP delivery (creates the Maildir)",
        vec![expect_message(
            "MessageNew",
            "INBOX",
            uv,
            u1,
            size,
            inbox.uidnext,
            inbox.messages,
        )],
    );

    // 1b. A second delivery.
    deliver_lmtp(lmtp, ALICE, &message("two", "Second message,\nlonger."));
    imap.examine("INBOX"); // a fresh view, so STATUS below sees the delivery
    let st = imap.status("INBOX");
    let uids = imap.uid_search_all();
    assert_eq!(uids.len(), 2, "Dovecot has both deliveries");
    let u2 = uids[1];
    let size = imap.uid_fetch_size(u2);
    sc.expect(
        "1b LMTP delivery",
        vec![expect_message(
            "MessageNew",
            "INBOX",
            uv,
            u2,
            size,
            st.uidnext,
            st.messages,
        )],
    );

    // 1c. A delivery to bob: not alice's store.
    deliver_lmtp(lmtp, BOB, &message("bob", "Not alice's."));
    sc.expect("1c LMTP delivery to bob", vec![]);

    // 2. APPEND with a flag lands in cur/: MessageAppend.
    let body = message("three", "Appended with \\Seen.");
    let (v, u3) = imap.append("INBOX", &["\\Seen"], &body);
    assert_eq!(v, uv);
    let st = imap.status("INBOX");
    let size = imap.uid_fetch_size(u3);
    sc.expect(
        "2 APPEND (\\Seen)",
        vec![expect_message(
            "MessageAppend",
            "INBOX",
            uv,
            u3,
            size,
            st.uidnext,
            st.messages,
        )],
    );

    // 3. APPEND without flags lands in new/: MessageNew.
    let (v, u4) = imap.append("INBOX", &[], &message("four", "Appended without flags."));
    assert_eq!(v, uv);
    let st = imap.status("INBOX");
    let size = imap.uid_fetch_size(u4);
    sc.expect(
        "3 APPEND ()",
        vec![expect_message(
            "MessageNew",
            "INBOX",
            uv,
            u4,
            size,
            st.uidnext,
            st.messages,
        )],
    );

    // 4. The first read-write SELECT moves new/x to cur/x:2, — no event.
    let in_new = names_in(&sc.maildir, "new").len();
    imap.select("INBOX");
    assert_eq!(
        in_new, 3,
        "before SELECT, the flagless messages were in new/"
    );
    assert!(
        names_in(&sc.maildir, "new").is_empty(),
        "SELECT moved new/ to cur/"
    );
    sc.expect("4 SELECT (new/ → cur/)", vec![]);

    // 5.–9. STORE.
    imap.uid_store(&format_sequence_set(&[u1, u2]), "+FLAGS", &["\\Seen"]);
    sc.expect(
        "5 STORE +\\Seen",
        vec![expect_uidset("MessageRead", "INBOX", uv, &[u1, u2])],
    );

    imap.uid_store(&format_sequence_set(&[u1, u3]), "+FLAGS", &["\\Flagged"]);
    sc.expect(
        "6 STORE +\\Flagged",
        vec![expect_flags(
            "FlagsSet",
            "INBOX",
            uv,
            &[u1, u3],
            "\\Flagged",
        )],
    );

    imap.uid_store(&u2.to_string(), "+FLAGS", &["$label1"]);
    sc.expect(
        "7 STORE +$label1",
        vec![expect_flags("FlagsSet", "INBOX", uv, &[u2], "$label1")],
    );

    imap.uid_store(&format_sequence_set(&[u1, u3]), "-FLAGS", &["\\Flagged"]);
    sc.expect(
        "8 STORE -\\Flagged",
        vec![expect_flags(
            "FlagsClear",
            "INBOX",
            uv,
            &[u1, u3],
            "\\Flagged",
        )],
    );

    imap.uid_store(&u4.to_string(), "+FLAGS", &["\\Deleted"]);
    sc.expect(
        "9 STORE +\\Deleted",
        vec![expect_uidset("MessageTrash", "INBOX", uv, &[u4])],
    );

    // 10. EXPUNGE.
    imap.expunge();
    assert_eq!(
        imap.uid_search_all(),
        vec![u1, u2, u3],
        "EXPUNGE removed {u4}"
    );
    sc.expect(
        "10 EXPUNGE",
        vec![expect_uidset("MessageExpunge", "INBOX", uv, &[u4])],
    );

    // 11. CREATE.
    imap.create("Foo");
    let foo = imap.status("Foo");
    assert_ne!(foo.uidvalidity, uv);
    sc.expect(
        "11 CREATE Foo",
        vec![expect_mailbox("MailboxCreate", "Foo", foo.uidvalidity)],
    );

    // 12. UID COPY of two messages: MessageAppend per message in Foo. Their
    //     `uidnext`/`messages` are the folder's state after the batch that
    //     saw them: after both links, or (when the two links fell into two
    //     batches) after that message.
    let sizes: Vec<u64> = [u1, u2].iter().map(|&u| imap.uid_fetch_size(u)).collect();
    let copy = imap.uid_copy(&format_sequence_set(&[u1, u2]), "Foo");
    assert_eq!(copy.uidvalidity, foo.uidvalidity);
    assert_eq!(copy.src, vec![u1, u2]);
    let st = imap.status("Foo");
    let expected = copy
        .dst
        .iter()
        .zip(&sizes)
        .enumerate()
        .map(|(i, (&uid, &size))| {
            let after = |uidnext, messages| {
                expect_message(
                    "MessageAppend",
                    "Foo",
                    copy.uidvalidity,
                    uid,
                    size,
                    uidnext,
                    messages,
                )
            };
            let mut alts = vec![after(st.uidnext, st.messages)];
            let own = after(uid + 1, foo.messages + i as u32 + 1);
            if own != alts[0] {
                alts.push(own);
            }
            alts
        })
        .collect();
    sc.expect_any("12 UID COPY", expected);

    // 13. UID MOVE: MessageAppend in Foo + MessageExpunge in INBOX (the
    //     source's unlink comes a few ms after the target's link).
    let size = imap.uid_fetch_size(u3);
    let moved = imap.uid_move(&u3.to_string(), "Foo");
    assert_eq!(moved.src, vec![u3]);
    assert_eq!(moved.uidvalidity, foo.uidvalidity);
    let st = imap.status("Foo");
    sc.expect(
        "13 UID MOVE",
        vec![
            expect_message(
                "MessageAppend",
                "Foo",
                foo.uidvalidity,
                moved.dst[0],
                size,
                st.uidnext,
                st.messages,
            ),
            expect_uidset("MessageExpunge", "INBOX", uv, &[u3]),
        ],
    );
    assert_eq!(imap.uid_search_all(), vec![u1, u2]);

    // 14. SUBSCRIBE.
    imap.subscribe("Foo");
    sc.expect(
        "14 SUBSCRIBE Foo",
        vec![expect_subscription("MailboxSubscribe", "Foo")],
    );

    // 15. CREATE a child.
    imap.create("Foo.Sub");
    let sub = imap.status("Foo.Sub");
    assert!(sc.maildir.join(".Foo.Sub").is_dir());
    sc.expect(
        "15 CREATE Foo.Sub",
        vec![expect_mailbox("MailboxCreate", "Foo.Sub", sub.uidvalidity)],
    );

    // 16. RENAME a parent: one MailboxRename, the child's is implied.
    imap.rename("Foo", "Bar");
    let bar = imap.status("Bar");
    let bar_sub = imap.status("Bar.Sub");
    assert!(
        sc.maildir.join(".Bar.Sub").is_dir(),
        "Dovecot renamed the child"
    );
    sc.expect(
        "16 RENAME Foo Bar",
        vec![expect_rename(
            "Bar",
            bar.uidvalidity,
            "Foo",
            foo.uidvalidity,
        )],
    );

    // 17. RENAME left `subscriptions` alone: fix it up like a client would.
    imap.subscribe("Bar");
    imap.unsubscribe("Foo");
    sc.expect(
        "17 SUBSCRIBE Bar, UNSUBSCRIBE Foo",
        vec![
            expect_subscription("MailboxSubscribe", "Bar"),
            expect_subscription("MailboxUnSubscribe", "Foo"),
        ],
    );

    // 18./19. DELETE. Live, a folder's messages are reported expunged
    //     before the MailboxDelete, because Dovecot really expunges them
    //     first (its own mail_log logs "expunge" lines too); `scan`, which
    //     sees only the net change, reports the MailboxDelete alone.
    imap.delete("Bar.Sub");
    sc.expect(
        "18 DELETE Bar.Sub",
        vec![expect_mailbox(
            "MailboxDelete",
            "Bar.Sub",
            bar_sub.uidvalidity,
        )],
    );
    assert_eq!(bar.messages, 3);
    imap.examine("Bar");
    let bar_uids = imap.uid_search_all();
    imap.select("INBOX");
    imap.delete("Bar");
    sc.expect(
        "19 DELETE Bar (3 messages)",
        vec![
            expect_uidset("MessageExpunge", "Bar", bar.uidvalidity, &bar_uids),
            expect_mailbox("MailboxDelete", "Bar", bar.uidvalidity),
        ],
    );

    // 20. Several changes in two folders in a row. The delivery comes last;
    //     the NOOP then makes Dovecot move it from new/ to cur/ in the
    //     selected INBOX: no event for that.
    imap.uid_store(&u2.to_string(), "+FLAGS", &["\\Flagged"]);
    imap.uid_store(&u1.to_string(), "-FLAGS", &["\\Seen"]);
    imap.create("Baz");
    deliver_lmtp(lmtp, ALICE, &message("five", "Delivered in a mixed batch."));
    let baz = imap.status("Baz");
    imap.command("NOOP");
    let st = imap.status("INBOX");
    let uids = imap.uid_search_all();
    let u5 = *uids.last().unwrap();
    assert_eq!(uids, vec![u1, u2, u5]);
    let size = imap.uid_fetch_size(u5);
    sc.expect(
        "20 mixed changes in a row",
        vec![
            expect_message("MessageNew", "INBOX", uv, u5, size, st.uidnext, st.messages),
            expect_flags("FlagsSet", "INBOX", uv, &[u2], "\\Flagged"),
            expect_flags("FlagsClear", "INBOX", uv, &[u1], "\\Seen"),
            expect_mailbox("MailboxCreate", "Baz", baz.uidvalidity),
        ],
    );

    imap.logout();
    sc.expect("21 LOGOUT", vec![]);

    // SIGTERM: exit 0. Then a scan over the same state finds nothing new:
    // the live mode committed exactly what is on disk.
    sc.stop();
    let state = sc.watcher.state.clone();
    let events = run_scan(&state, &sc.maildir, sc.user, &sc.extra_args);
    let left: Vec<String> = events.iter().map(summary).collect();
    if !left.is_empty() {
        sc.fail(
            "22 scan over the watcher's state after stop",
            format!("expected no events, got:\n{}", show(&left)),
        );
    }
    sc.finish();
}

/// LMTP deliveries while an IMAP client IDLEs on INBOX: Dovecot moves each
/// new/x to cur/x:2, about 0.5 s later, which is no event.
#[test]
fn watch_lmtp_while_idle() {
    let Some(dovecot) = Dovecot::start() else {
        return;
    };
    let lmtp = dovecot.lmtp_port();
    let imap_port = dovecot.imap_port();
    let mut sc = Live::new(dovecot, ALICE, vec![]);

    let (idle, uv) = IdleClient::start(imap_port, ALICE);
    assert!(sc.maildir.is_dir(), "SELECT INBOX created the Maildir");
    sc.expect(
        "0 login + SELECT INBOX (creates the Maildir) + IDLE",
        vec![],
    );

    let mut per_delivery = Vec::new();
    for i in 1..=3 {
        deliver_lmtp(
            lmtp,
            ALICE,
            &message(&format!("idle {i}"), &format!("Delivered while IDLE, {i}.")),
        );
        // Wait for Dovecot's IDLE process to move it to cur/ before judging
        // "no extra event".
        let delivered = Instant::now();
        let step = format!("{i} LMTP delivery while IDLE");
        let events = sc.collect(&step, |actual| !actual.is_empty(), SETTLE);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !names_in(&sc.maildir, "new").is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let moved = names_in(&sc.maildir, "new").is_empty();
        eprintln!(
            "step {step}: Dovecot's IDLE moved new/ to cur/: {moved} (seen {:?} after the \
             delivery); cur/ = {:?}",
            delivered.elapsed(),
            names_in(&sc.maildir, "cur")
        );
        let late = sc.collect(&format!("{step} / after the IDLE move"), |_| true, SETTLE);
        per_delivery.push((events, late, moved));
    }
    let untagged = idle.done();
    eprintln!("IDLE saw: {untagged:?}");

    // The truth, after the fact: UIDs in delivery order and sizes.
    let mut imap = sc.imap();
    let selected = imap.examine("INBOX");
    assert_eq!(selected.uidvalidity, uv);
    let uids = imap.uid_search_all();
    assert_eq!(uids.len(), 3, "Dovecot has three deliveries");
    for (i, (events, late, moved)) in per_delivery.into_iter().enumerate() {
        let step = format!("{} LMTP delivery while IDLE", i + 1);
        let uid = uids[i];
        let size = imap.uid_fetch_size(uid);
        let expected = vec![expect_message(
            "MessageNew",
            "INBOX",
            uv,
            uid,
            size,
            uid + 1,
            i as u32 + 1,
        )];
        let actual: Vec<String> = events.iter().chain(&late).map(summary).collect();
        if actual != expected {
            sc.fail(
                &step,
                format!(
                    "events differ\n expected:\n{}\n actual (incl. after the IDLE move):\n{}",
                    show(&expected),
                    show(&actual)
                ),
            );
        } else {
            eprintln!("step {step}: ok");
        }
        if !moved {
            sc.fail(
                &step,
                "Dovecot did not move the delivery from new/ to cur/ within 5 s while IDLE \
                 (the test did not exercise that move)"
                    .into(),
            );
        }
    }
    imap.logout();
    sc.expect("4 LOGOUT", vec![]);
    sc.stop();
    sc.finish();
}

/// A Postfix `local(8)`-style delivery that Dovecot does not see: tmp/ →
/// link into new/ → unlink tmp/. The UID is unknown until Dovecot next
/// syncs the folder: a MessageNew with `vnd.maildir.uidPending` after the
/// UID wait, and later STOREs use the UID Dovecot assigns.
#[test]
fn watch_postfix_style_delivery() {
    let Some(dovecot) = Dovecot::start() else {
        return;
    };
    let lmtp = dovecot.lmtp_port();
    let mut sc = Live::new(dovecot, ALICE, vec!["--uid-wait-ms", "300"]);

    // Dovecot knows the folder (it has a dovecot-uidlist) from a delivery.
    deliver_lmtp(lmtp, ALICE, &message("lmtp", "Through Dovecot."));
    let mut imap = sc.imap();
    let inbox = imap.status("INBOX");
    imap.examine("INBOX");
    let uv = inbox.uidvalidity;
    let u1 = imap.uid_search_all()[0];
    let size = imap.uid_fetch_size(u1);
    imap.logout();
    sc.expect(
        "1 LMTP delivery",
        vec![expect_message(
            "MessageNew",
            "INBOX",
            uv,
            u1,
            size,
            inbox.uidnext,
            inbox.messages,
        )],
    );
    assert!(sc.maildir.join("dovecot-uidlist").is_file());

    // 2. Postfix local(8): tmp/ → link into new/ → unlink tmp/, owned like
    //    Dovecot's own files so Dovecot can read it later.
    let owner = fs::metadata(&sc.maildir).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let name = format!(
        "{}.M{}P{}Q1.postfix-test",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id()
    );
    let text = "From: Sender <sender@example.test>\n\
                To: Alice <alice@example.test>\n\
                Subject: local delivery\n\
                Message-ID: <local-delivery@example.test>\n\
                Date: Sat, 28 Nov 2026 09:15:02 +0100\n\
                \n\
                Delivered by a Postfix-style local(8), LF line ends.\n";
    let crlf_size = (text.len() + text.matches('\n').count()) as u64;
    let tmp = sc.maildir.join("tmp").join(&name);
    let new = sc.maildir.join("new").join(&name);
    fs::write(&tmp, text).unwrap();
    std::os::unix::fs::chown(&tmp, Some(owner.uid()), Some(owner.gid())).unwrap();
    fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let linked = Instant::now();
    fs::hard_link(&tmp, &new).unwrap();
    fs::remove_file(&tmp).unwrap();
    let before = store_fingerprint(&sc.maildir);

    let step = "2 Postfix-style delivery (Dovecot not involved)";
    let events = sc.collect(step, |actual| !actual.is_empty(), SETTLE);
    eprintln!(
        "step {step}: first event after {:?} from link()",
        linked.elapsed()
    );
    let after = store_fingerprint(&sc.maildir);
    let diff = fingerprint_diff(&before, &after);
    if !diff.is_empty() {
        sc.fail(
            step,
            format!(
                "the store changed while only the watcher ran:\n  {}",
                diff.join("\n  ")
            ),
        );
    }
    let pending_size = match events.as_slice() {
        [ev] => {
            eprintln!("step {step}: {ev}");
            let mut wrong = Vec::new();
            if ev.get("event").and_then(Value::as_str) != Some("MessageNew") {
                wrong.push("`event` is not MessageNew".to_string());
            }
            if ev.get("vnd.maildir.uidPending") != Some(&Value::Bool(true)) {
                wrong.push("`vnd.maildir.uidPending` is not true".into());
            }
            let uri = ev.get("uri").and_then(Value::as_str).unwrap_or("");
            if uri.contains(";UID=") {
                wrong.push("`uri` has a ;UID=".into());
            }
            match parse_imap_url(uri) {
                Ok(u) if u.mailbox == "INBOX" && u.uidvalidity == Some(uv) && u.uid.is_none() => {}
                other => wrong.push(format!("`uri` is not INBOX;UIDVALIDITY={uv}: {other:?}")),
            }
            let mailbox_id = ev.get("mailboxID").and_then(Value::as_str).unwrap_or("");
            match parse_imap_url(mailbox_id) {
                Ok(u) if u.mailbox == "INBOX" && u.uidvalidity == Some(uv) && u.uid.is_none() => {}
                other => wrong.push(format!(
                    "`mailboxID` is not INBOX;UIDVALIDITY={uv}: {other:?}"
                )),
            }
            let size = ev.get("messageSize").and_then(Value::as_u64);
            if size != Some(crlf_size) {
                wrong.push(format!(
                    "`messageSize` {size:?} is not the size with CRLF line ends {crlf_size}"
                ));
            }
            if !wrong.is_empty() {
                sc.fail(step, format!("{}\n in {ev}", wrong.join("; ")));
            }
            size
        }
        _ => {
            let got: Vec<String> = events.iter().map(|e| e.to_string()).collect();
            sc.fail(
                step,
                format!(
                    "expected one MessageNew with vnd.maildir.uidPending, got:\n{}",
                    show(&got)
                ),
            );
            None
        }
    };

    // 3. Dovecot syncs the folder (SELECT): it assigns the UID, moves
    //    new/ → cur/. No event: the message was reported already.
    let mut imap = sc.imap();
    let selected = imap.select("INBOX");
    assert_eq!(selected.uidvalidity, uv);
    assert!(
        names_in(&sc.maildir, "new").is_empty(),
        "SELECT moved new/ to cur/"
    );
    let uids = imap.uid_search_all();
    assert_eq!(uids.len(), 2, "Dovecot sees the local delivery: {uids:?}");
    let u2 = uids[1];
    let size = imap.uid_fetch_size(u2);
    if pending_size.is_some() && pending_size != Some(size) {
        sc.fail(
            step,
            format!("`messageSize` {pending_size:?} is not Dovecot's RFC822.SIZE {size}"),
        );
    }
    sc.expect("3 SELECT INBOX (Dovecot assigns the UID)", vec![]);

    // 4. STORE on it: the event names the UID Dovecot assigned.
    imap.uid_store(&u2.to_string(), "+FLAGS", &["\\Seen"]);
    sc.expect(
        "4 STORE +\\Seen on the local delivery",
        vec![expect_uidset("MessageRead", "INBOX", uv, &[u2])],
    );
    imap.logout();
    sc.stop();
    sc.finish();
}

/// Three STOREs on one message as three IMAP commands in a row (within a
/// few ms, likely one batch): three events in that order.
#[test]
fn watch_quick_stores_in_order() {
    let Some(dovecot) = Dovecot::start() else {
        return;
    };
    let mut sc = Live::new(dovecot, ALICE, vec![]);
    let mut imap = sc.imap();
    let body = message("stores", "Flags will change quickly.");
    let (uv, uid) = imap.append("INBOX", &["\\Seen"], &body);
    let st = imap.status("INBOX");
    imap.select("INBOX");
    let size = imap.uid_fetch_size(uid);
    sc.expect(
        "1 APPEND (\\Seen)",
        vec![expect_message(
            "MessageAppend",
            "INBOX",
            uv,
            uid,
            size,
            st.uidnext,
            st.messages,
        )],
    );

    // $label1 is the first keyword: its letter is in the file name a few
    // ms before dovecot-keywords names it.
    let u = uid.to_string();
    let started = Instant::now();
    imap.uid_store(&u, "+FLAGS", &["\\Flagged"]);
    imap.uid_store(&u, "+FLAGS", &["$label1"]);
    imap.uid_store(&u, "-FLAGS", &["\\Flagged"]);
    eprintln!("three STOREs took {:?}", started.elapsed());
    sc.expect_in_order(
        "2 STORE +\\Flagged, +$label1, -\\Flagged",
        vec![
            expect_flags("FlagsSet", "INBOX", uv, &[uid], "\\Flagged"),
            expect_flags("FlagsSet", "INBOX", uv, &[uid], "$label1"),
            expect_flags("FlagsClear", "INBOX", uv, &[uid], "\\Flagged"),
        ],
    );

    // Once more, now that the keyword is known.
    imap.uid_store(&u, "+FLAGS", &["\\Flagged"]);
    imap.uid_store(&u, "-FLAGS", &["$label1"]);
    imap.uid_store(&u, "-FLAGS", &["\\Flagged"]);
    sc.expect_in_order(
        "3 STORE +\\Flagged, -$label1, -\\Flagged",
        vec![
            expect_flags("FlagsSet", "INBOX", uv, &[uid], "\\Flagged"),
            expect_flags("FlagsClear", "INBOX", uv, &[uid], "$label1"),
            expect_flags("FlagsClear", "INBOX", uv, &[uid], "\\Flagged"),
        ],
    );
    imap.logout();
    sc.stop();
    sc.finish();
}
