//! Login, Logout and QuotaExceed from the log of a real Dovecot (2.3, its
//! `info_log_path`): IMAP sessions that log out, one that drops the
//! connection, a wrong password (no Login), sessions while the watcher is
//! killed with -9, a rotation by rename + `doveadm log reopen` with a
//! session open across it, and LMTP deliveries Dovecot's quota plugin
//! refuses.
//!
//! Skipped (with a line on stderr) when Dovecot is not installed, unless
//! `CI=true`. Run: `cargo test --test dovecot_access -- --nocapture`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::dovecot::Options;
use support::live::{self, Spawn, WAIT};
use support::lmtp::try_deliver_lmtp;
use support::{Dovecot, Imap, PASSWORD, deliver_lmtp, message};

const ALICE: &str = "alice@example.test";

/// The access events (Login, Logout) of a run, in order.
fn access(evs: &[Value]) -> Vec<&Value> {
    evs.iter()
        .filter(|e| matches!(e["event"].as_str(), Some("Login" | "Logout")))
        .collect()
}

fn session(e: &Value) -> &str {
    e["vnd.maildir.session"].as_str().unwrap_or("")
}

/// A session that logs in, selects INBOX and logs out.
fn graceful(port: u16) {
    let mut imap = Imap::login(port, ALICE, PASSWORD);
    imap.select("INBOX");
    imap.logout();
}

/// A session that logs in and drops the connection.
fn aborted(port: u16) {
    let imap = Imap::login(port, ALICE, PASSWORD);
    drop(imap);
}

/// A LOGIN with a wrong password, then LOGOUT: Dovecot logs "auth failed".
fn bad_password(port: u16) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    r.get_mut()
        .write_all(format!("a LOGIN {ALICE} wrong-password\r\n").as_bytes())
        .unwrap();
    loop {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "connection closed");
        if line.starts_with("a ") {
            assert!(line.starts_with("a NO"), "{line}");
            break;
        }
    }
    r.get_mut().write_all(b"b LOGOUT\r\n").unwrap();
    line.clear();
    while r.read_line(&mut line).unwrap_or(0) > 0 {
        line.clear();
    }
}

fn doveadm() -> std::path::PathBuf {
    ["/usr/bin/doveadm", "/usr/local/bin/doveadm"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| "doveadm".into())
}

/// The sessions of these events that are complete (a Login and a Logout)
/// and not in `known`.
fn complete(evs: &[Value], known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut per: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in access(evs) {
        per.entry(session(e))
            .or_default()
            .insert(e["event"].as_str().unwrap());
    }
    per.into_iter()
        .filter(|(s, k)| k.len() == 2 && !known.contains(*s))
        .map(|(s, _)| s.to_string())
        .collect()
}

/// Waits until `n` sessions not in `known` are complete.
fn wait_sessions(w: &live::Watch, what: &str, n: usize, known: &BTreeSet<String>) -> Vec<Value> {
    w.wait_for(what, WAIT, |evs| complete(evs, known).len() >= n)
}

/// Events with the same type and session have the same event id (a
/// repeat after kill -9), and every one is there once at least.
fn check_once(all: &[Value]) -> BTreeMap<(String, String), String> {
    let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
    for e in access(all) {
        let key = (
            e["event"].as_str().unwrap().to_string(),
            session(e).to_string(),
        );
        let id = e["vnd.maildir.eventId"].as_str().unwrap().to_string();
        if let Some(old) = seen.insert(key.clone(), id.clone()) {
            assert_eq!(old, id, "{key:?} repeated with another event id");
        }
    }
    seen
}

#[test]
fn sessions_kill9_gap_and_rotation() {
    let Some(dovecot) = Dovecot::start() else {
        return;
    };
    let port = dovecot.imap_port();
    // The Maildir exists once Dovecot delivered into it.
    deliver_lmtp(dovecot.lmtp_port(), ALICE, &message("first", "body"));
    let log = dovecot.info_log_path();
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let maildir = dovecot.maildir(ALICE);
    let start = || {
        Spawn::new(
            &state,
            &["--access-log", log.to_str().unwrap(), "--user", ALICE],
        )
        .arg(&maildir)
        .start()
    };

    // 1. A graceful session, a wrong password, an aborted session.
    let w = start();
    graceful(port);
    bad_password(port);
    aborted(port);
    let none = BTreeSet::new();
    let evs = wait_sessions(&w, "two whole sessions", 2, &none);
    let a = access(&evs);
    let kinds: Vec<&str> = a.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["Login", "Logout", "Login", "Logout"],
        "no Login for the wrong password\n{evs:#?}"
    );
    for e in &a {
        assert_eq!(e["user"], ALICE);
        assert_eq!(e["service"], "imap");
        assert_eq!(
            e["uri"],
            format!("imap://alice%40example.test@{}/", live::SERVER)
        );
        assert_eq!(e["clientIP"], "127.0.0.1", "{e}");
    }
    assert_eq!(a[0]["serverDomain"], "127.0.0.1");
    assert_eq!(a[0]["vnd.maildir.mechanism"], "PLAIN");
    assert_eq!(a[0]["vnd.maildir.tls"], false);
    assert_eq!(session(a[0]), session(a[1]));
    assert_eq!(session(a[2]), session(a[3]));
    assert_ne!(session(a[0]), session(a[2]));
    assert_eq!(a[1]["vnd.maildir.disconnect"], "graceful");
    assert_eq!(a[3]["vnd.maildir.disconnect"], "abort");
    assert!(
        a[3]["vnd.maildir.reason"]
            .as_str()
            .unwrap()
            .starts_with("Connection closed")
    );
    for e in [a[1], a[3]] {
        let secs = e["vnd.maildir.sessionDuration"].as_f64().unwrap();
        assert!((0.0..60.0).contains(&secs), "{e}");
    }
    let before = w.kill9();

    // 2. Two sessions while no watcher runs: reported once by the next.
    graceful(port);
    graceful(port);
    let known = complete(&before, &none);
    assert_eq!(known.len(), 2);
    let w = start();
    let evs = wait_sessions(&w, "the two sessions of the gap", 2, &known);
    let mut all: Vec<Value> = before.clone();
    all.extend(evs.iter().cloned());
    let seen = check_once(&all);
    assert_eq!(
        seen.len(),
        8,
        "4 sessions, each a Login and a Logout: {seen:#?}"
    );
    let known: BTreeSet<String> = seen.keys().map(|(_, s)| s.clone()).collect();

    // 3. Rotation: a session logs in, the log is renamed (Dovecot still
    // writes the old file), reopened; the session logs out into the new
    // file, and another whole session follows.
    let mut open = Imap::login(port, ALICE, PASSWORD);
    w.wait_for("the Login before the rotation", WAIT, |evs| {
        access(evs)
            .iter()
            .any(|e| e["event"] == "Login" && !known.contains(session(e)))
    });
    let rotated = log.with_extension("log.1");
    fs::rename(&log, &rotated).unwrap();
    open.select("INBOX");
    let out = Command::new(doveadm())
        .arg("-c")
        .arg(dovecot.config_path())
        .args(["log", "reopen"])
        .output()
        .expect("run doveadm");
    assert!(
        out.status.success(),
        "doveadm log reopen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Dovecot made the new file when it reopened.
    let deadline = std::time::Instant::now() + WAIT;
    while !log.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no new log after reopen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    open.logout();
    graceful(port);
    let evs = wait_sessions(&w, "the sessions across the rotation", 2, &known);
    let a: Vec<&Value> = access(&evs)
        .into_iter()
        .filter(|e| !known.contains(session(e)))
        .collect();
    let shown: Vec<String> = a
        .iter()
        .map(|e| format!("{} {}", e["event"].as_str().unwrap(), session(e)))
        .collect();
    assert_eq!(a.len(), 4, "{shown:?}");
    let (login, logout) = (a[0], a[1]);
    assert_eq!(
        (&login["event"], &logout["event"]),
        (&"Login".into(), &"Logout".into()),
        "{shown:?}"
    );
    assert_eq!(session(login), session(logout));
    assert!(
        logout["vnd.maildir.sessionDuration"].is_number(),
        "the Login was in the old file: {logout}"
    );
    let old = fs::read_to_string(&rotated).unwrap();
    assert!(
        old.contains(&format!("session=<{}>", session(login))),
        "the Login is in the renamed file"
    );
    let new = fs::read_to_string(&log).unwrap();
    assert!(
        new.contains(&format!(
            "<{}>: Info: Disconnected: Logged out",
            session(logout)
        )),
        "the Logout is in the new file:\n{new}"
    );
    all.extend(w.stop());
    assert_eq!(check_once(&all).len(), 12, "6 sessions, nothing lost");

    // 4. `scan` after it: nothing new in the logs.
    let (code, lines, stderr) = live::scan(
        &state,
        &[
            OsStr::new("--access-log"),
            log.as_os_str(),
            OsStr::new("--user"),
            OsStr::new(ALICE),
            maildir.as_os_str(),
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("\"Login\"") || l.contains("\"Logout\"")),
        "{lines:?}"
    );
}

/// Dovecot's quota plugin with a 2K rule.
const QUOTA: &str = r#"
mail_plugins = $mail_plugins quota
plugin {
  quota = maildir:User quota
  quota_rule = *:storage=2K
  quota_grace = 10%%
}
"#;

#[test]
fn quota_refusals_from_the_log() {
    let Some(dovecot) = Dovecot::start_with_config(Options::default(), QUOTA) else {
        return;
    };
    let log = dovecot.info_log_path();
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let maildir = dovecot.maildir(ALICE);
    let scan = |state: &Path| -> Vec<Value> {
        let (code, lines, stderr) = live::scan(
            state,
            &[
                OsStr::new("--access-log"),
                log.as_os_str(),
                // The baseline runs before Dovecot made the Maildir.
                OsStr::new("--allow-missing"),
                OsStr::new("--user"),
                OsStr::new(ALICE),
                maildir.as_os_str(),
            ],
        );
        assert_eq!(code, Some(0), "{stderr}");
        lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    assert!(scan(&state).is_empty(), "the first run is a baseline");
    let body = "x".repeat(900);
    let mut refused = 0;
    for i in 0..6 {
        match try_deliver_lmtp(
            dovecot.lmtp_port(),
            ALICE,
            &message(&format!("q{i}"), &body),
        ) {
            Ok(()) => {}
            Err(reply) => {
                assert!(reply.contains("Quota exceeded"), "{reply}");
                refused += 1;
            }
        }
    }
    assert!(
        refused >= 2,
        "the quota refused some deliveries\n{}",
        dovecot.logs()
    );
    let evs = scan(&state);
    let q: Vec<&Value> = evs.iter().filter(|e| e["event"] == "QuotaExceed").collect();
    assert_eq!(q.len(), refused, "one QuotaExceed per refusal\n{evs:#?}");
    for e in q {
        assert_eq!(e["user"], ALICE);
        assert_eq!(e["service"], "lmtp");
        assert_eq!(e["vnd.maildir.quotaSource"], "log");
        assert_eq!(
            e["uri"],
            format!("imap://alice%40example.test@{}/INBOX", live::SERVER)
        );
        assert!(
            e["vnd.maildir.reason"]
                .as_str()
                .unwrap()
                .starts_with("Quota exceeded")
        );
    }
    let evs = scan(&state);
    assert!(
        !evs.iter().any(|e| e["event"] == "QuotaExceed"),
        "nothing twice"
    );
}
