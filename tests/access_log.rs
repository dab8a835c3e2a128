//! Login, Logout and QuotaExceed from synthetic Dovecot logs, through the
//! binary: the silent baseline, `--emit-existing`, positions across runs,
//! rotation by copytruncate and by rename (in `scan` and live in `watch`),
//! over-long lines, the `access` filter group, and the journal path with a
//! stand-in `journalctl` (this machine has no journal to read).
//!
//! The lines are the ones Dovecot 2.3.19 writes (see `tests/dovecot_access.rs`
//! for the real server).

mod support;

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::fixture::Maildir;
use support::live::{self, Spawn};

fn login(session: &str, user: &str) -> String {
    format!(
        "Dec 06 02:50:44 imap-login: Info: Login: user=<{user}>, method=PLAIN, rip=192.0.2.7, lip=192.0.2.1, mpid=26309, TLS, session=<{session}>\n"
    )
}

fn logout(session: &str, user: &str, reason: &str, secs: u32) -> String {
    format!(
        "Dec 06 02:51:{secs:02} imap({user})<26309><{session}>: Info: Disconnected: {reason} in=24 out=775 deleted=0\n"
    )
}

fn append(path: &Path, text: &str) {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// Runs `scan` over an empty Maildir with the log; returns the events.
fn scan(state: &Path, md: &Maildir, log: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("--access-log"),
        log.as_os_str(),
        OsStr::new("--user"),
        OsStr::new("alice"),
    ];
    args.extend(extra.iter().map(OsStr::new));
    args.push(md.root.as_os_str());
    let (code, lines, stderr) = live::scan(state, &args);
    assert_eq!(code, Some(0), "scan failed:\n{stderr}");
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn sessions(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .map(|e| {
            format!(
                "{} {}",
                e["event"].as_str().unwrap(),
                e["vnd.maildir.session"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

#[test]
fn scan_baseline_positions_and_rotations() {
    let d = tempfile::tempdir().unwrap();
    let md = Maildir::create(d.path().join("Maildir"));
    let state = d.path().join("state");
    let log = d.path().join("dovecot-info.log");
    append(&log, &login("OLD", "alice"));
    append(&log, &logout("OLD", "alice", "Logged out", 1));

    // First run: a silent baseline at the end of the log.
    assert!(scan(&state, &md, &log, &[]).is_empty());

    append(&log, &login("S1", "alice"));
    append(
        &log,
        "Dec 06 02:50:46 imap-login: Info: Disconnected: Aborted login by logging out (auth failed, 1 attempts in 2 secs): user=<alice>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, secured, session=<BAD>\n",
    );
    let evs = scan(&state, &md, &log, &[]);
    assert_eq!(sessions(&evs), ["Login S1"], "a failed login is no Login");
    let l = &evs[0];
    assert_eq!(l["user"], "alice");
    assert_eq!(l["service"], "imap");
    assert_eq!(l["clientIP"], "192.0.2.7");
    assert_eq!(l["serverDomain"], "192.0.2.1");
    assert_eq!(l["vnd.maildir.tls"], true);
    assert_eq!(l["uri"], "imap://alice@mx.example.org/");
    assert!(l["timestamp"].as_str().unwrap().contains("T02:50:44.000"));

    // The Logout in a later run still has its duration (the session was
    // kept in the state).
    append(
        &log,
        &logout("S1", "alice", "Connection closed (No commands sent)", 14),
    );
    let evs = scan(&state, &md, &log, &[]);
    assert_eq!(sessions(&evs), ["Logout S1"]);
    assert_eq!(evs[0]["vnd.maildir.disconnect"], "abort");
    assert_eq!(evs[0]["vnd.maildir.sessionDuration"], 30.0);
    assert!(scan(&state, &md, &log, &[]).is_empty(), "nothing twice");

    // copytruncate between runs: the unread lines are in the copy.
    append(&log, &login("S2", "alice"));
    fs::copy(&log, d.path().join("dovecot-info.log.1")).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, &login("S3", "bob"));
    let evs = scan(&state, &md, &log, &[]);
    assert_eq!(sessions(&evs), ["Login S2", "Login S3"]);

    // rename + a new file between runs: the old file first.
    append(&log, &logout("S3", "bob", "Logged out", 5));
    fs::rename(&log, d.path().join("dovecot-info.log.2")).unwrap();
    append(
        &log,
        &logout("S2", "alice", "Disconnected for inactivity", 6),
    );
    append(
        &log,
        &format!(
            "Dec 06 02:52:00 imap-login: Info: Login: user=<x>, method=PLAIN, session=<LONG{}>\n",
            "y".repeat(20_000)
        ),
    );
    append(&log, &login("S4", "carol"));
    let evs = scan(&state, &md, &log, &[]);
    assert_eq!(
        sessions(&evs),
        ["Logout S3", "Logout S2", "Login S4"],
        "the over-long line is skipped"
    );
    assert_eq!(evs[1]["vnd.maildir.disconnect"], "timeout");
    assert!(scan(&state, &md, &log, &[]).is_empty());
}

#[test]
fn emit_existing_filter_and_quota_refusals() {
    let d = tempfile::tempdir().unwrap();
    let md = Maildir::create(d.path().join("Maildir"));
    let log = d.path().join("info.log");
    append(&log, &login("S1", "alice"));
    append(
        &log,
        "Dec 06 02:50:50 lmtp(alice)<26355><GJomGIrNFGvzZgAAg+zDdQ>: Info: msgid=unspecified: save failed to INBOX: Quota exceeded (mailbox for user is full)\n",
    );
    let evs = scan(&d.path().join("s1"), &md, &log, &["--emit-existing"]);
    assert_eq!(
        sessions(&evs),
        ["Login S1", "QuotaExceed GJomGIrNFGvzZgAAg+zDdQ"]
    );
    assert_eq!(evs[1]["user"], "alice");
    assert_eq!(evs[1]["uri"], "imap://alice@mx.example.org/INBOX");
    assert_eq!(evs[1]["vnd.maildir.quotaSource"], "log");

    // Only the quota group: the Login is filtered, the refusal is not.
    let config = d.path().join("config.toml");
    fs::write(&config, "[filter]\ngroups = [\"quota\", \"message\"]\n").unwrap();
    let c = config.to_str().unwrap();
    let evs = scan(
        &d.path().join("s2"),
        &md,
        &log,
        &["--emit-existing", "--config", c],
    );
    assert_eq!(sessions(&evs), ["QuotaExceed GJomGIrNFGvzZgAAg+zDdQ"]);

    // And the logs from the configuration file.
    fs::write(
        &config,
        format!("[access]\nlogs = [{:?}]\n", log.to_str().unwrap()),
    )
    .unwrap();
    let (code, lines, stderr) = live::scan(
        &d.path().join("s3"),
        &[
            OsStr::new("--config"),
            config.as_os_str(),
            OsStr::new("--emit-existing"),
            md.root.as_os_str(),
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(lines.len(), 2, "{lines:?}");
}

#[test]
fn watch_follows_copytruncate_and_rename_live() {
    let d = tempfile::tempdir().unwrap();
    let md = Maildir::create(d.path().join("Maildir"));
    let log = d.path().join("info.log");
    append(&log, &login("OLD", "alice"));
    let state = d.path().join("state");
    let w = Spawn::new(
        &state,
        &["--access-log", log.to_str().unwrap(), "--user", "alice"],
    )
    .arg(&md.root)
    .start();
    append(&log, &login("S1", "alice"));
    w.wait_count(1);
    // copytruncate: copy, a line in the original (the copy has it),
    // truncate, new lines.
    append(&log, &login("S2", "alice"));
    fs::copy(&log, d.path().join("info.log.1")).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, &logout("S1", "alice", "Logged out", 4));
    w.wait_count(3);
    // rename: the old file keeps getting lines until the writer reopens.
    fs::rename(&log, d.path().join("info.log.2")).unwrap();
    fs::write(&log, "").unwrap();
    append(
        &d.path().join("info.log.2"),
        &logout("S2", "alice", "Logged out", 5),
    );
    append(&log, &login("S3", "bob"));
    let evs = w.wait_count(5);
    assert_eq!(
        sessions(&evs),
        ["Login S1", "Login S2", "Logout S1", "Logout S2", "Login S3"]
    );
    let evs = w.stop();
    assert_eq!(evs.len(), 5, "nothing twice");
    // A restart reads nothing again.
    append(&log, &logout("S3", "bob", "Logged out", 9));
    let w = Spawn::new(
        &state,
        &["--access-log", log.to_str().unwrap(), "--user", "alice"],
    )
    .arg(&md.root)
    .start();
    let evs = w.wait_count(1);
    assert_eq!(sessions(&evs), ["Logout S3"]);
    assert!(evs[0]["vnd.maildir.sessionDuration"].is_number());
    assert_eq!(w.stop().len(), 1);
}

/// A stand-in `journalctl` printing entries of a file after `--after-cursor`
/// (or the last with `--lines=1`), as `journalctl -o json` does.
const FAKE_JOURNALCTL: &str = r#"#!/bin/sh
echo "$@" >> "$JOURNAL_ARGS"
after=""; last=""; follow=""
for a in "$@"; do
  case "$a" in
    --after-cursor=*) after="${a#--after-cursor=}";;
    --lines=1) last=1;;
    --follow) follow=1;;
  esac
done
if [ -n "$last" ]; then tail -n 1 "$JOURNAL_FILE"; exit 0; fi
start=1
if [ -n "$after" ]; then
  n=$(grep -n -F "\"__CURSOR\":\"$after\"" "$JOURNAL_FILE" | head -n 1 | cut -d: -f1)
  start=$((n + 1))
fi
if [ -n "$follow" ]; then exec tail -n +$start -f "$JOURNAL_FILE"; fi
tail -n +$start "$JOURNAL_FILE"
"#;

fn entry(cursor: u32, message: &str) -> String {
    let v = serde_json::json!({
        "__CURSOR": format!("s=1;i={cursor}"),
        "__REALTIME_TIMESTAMP": "1796525444000000",
        "_SYSTEMD_UNIT": "dovecot.service",
        "MESSAGE": message,
    });
    format!("{v}\n")
}

/// A directory with the stand-in `journalctl`, and `PATH` with it first.
fn fake_journalctl(d: &Path) -> String {
    let bin = d.join("bin");
    fs::create_dir(&bin).unwrap();
    let fake = bin.join("journalctl");
    fs::write(&fake, FAKE_JOURNALCTL).unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// The journal path through a stand-in `journalctl`: what is tested is our
/// side (arguments, cursor kept with the events, baseline, parsing), not
/// systemd's journal, which this container does not run.
#[test]
fn journal_through_journalctl() {
    let d = tempfile::tempdir().unwrap();
    let md = Maildir::create(d.path().join("Maildir"));
    let path = fake_journalctl(d.path());
    let journal = d.path().join("journal.json");
    let args_log = d.path().join("args");
    append(
        &journal,
        &entry(
            1,
            "imap-login: Login: user=<old>, method=PLAIN, session=<J0>",
        ),
    );
    let state = d.path().join("state");
    let run = || -> Vec<Value> {
        let out = Command::new(live::BIN)
            .args(["scan", "--state"])
            .arg(&state)
            .args([
                "--server-name",
                live::SERVER,
                "--access-log",
                "journal",
                "--user",
                "alice",
            ])
            .arg(&md.root)
            .env("PATH", &path)
            .env("JOURNAL_FILE", &journal)
            .env("JOURNAL_ARGS", &args_log)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    assert!(run().is_empty(), "first run: a baseline");
    append(
        &journal,
        &entry(
            2,
            "imap-login: Login: user=<alice>, method=PLAIN, rip=192.0.2.9, lip=192.0.2.1, mpid=1, TLS, session=<J1>",
        ),
    );
    append(&journal, "{\"MESSAGE\": \"no cursor: skipped\"}\n");
    append(
        &journal,
        &entry(3, "imap(alice)<1><J1>: Disconnected: Logged out in=1 out=2"),
    );
    let evs = run();
    assert_eq!(sessions(&evs), ["Login J1", "Logout J1"]);
    assert_eq!(evs[0]["clientIP"], "192.0.2.9");
    assert_eq!(evs[1]["vnd.maildir.sessionDuration"], 0.0);
    assert!(run().is_empty(), "the cursor was kept");
    let args = fs::read_to_string(&args_log).unwrap();
    assert!(
        args.contains("--unit dovecot.service --output json")
            && args.contains("--after-cursor=s=1;i=3"),
        "{args}"
    );
}

/// `watch` with the journal: a baseline, then `journalctl --follow` from the
/// cursor; entries written while it is stopped come after a restart, once.
#[test]
fn watch_follows_the_journal() {
    let d = tempfile::tempdir().unwrap();
    let md = Maildir::create(d.path().join("Maildir"));
    let path = fake_journalctl(d.path());
    let journal = d.path().join("journal.json");
    let args_log = d.path().join("args");
    append(
        &journal,
        &entry(
            1,
            "imap-login: Login: user=<old>, method=PLAIN, session=<J0>",
        ),
    );
    let state = d.path().join("state");
    let start = || {
        Spawn::new(&state, &["--access-log", "journal", "--user", "alice"])
            .arg(&md.root)
            .env("PATH", &path)
            .env("JOURNAL_FILE", &journal)
            .env("JOURNAL_ARGS", &args_log)
            .start()
    };
    let w = start();
    append(
        &journal,
        &entry(
            2,
            "imap-login: Login: user=<alice>, method=PLAIN, session=<J1>",
        ),
    );
    append(
        &journal,
        &entry(3, "imap(alice)<1><J1>: Disconnected: Logged out in=1 out=2"),
    );
    let evs = w.wait_count(2);
    assert_eq!(sessions(&evs), ["Login J1", "Logout J1"]);
    assert_eq!(w.stop().len(), 2);
    append(
        &journal,
        &entry(
            4,
            "imap-login: Login: user=<bob>, method=PLAIN, session=<J2>",
        ),
    );
    let w = start();
    let evs = w.wait_count(1);
    assert_eq!(sessions(&evs), ["Login J2"]);
    append(
        &journal,
        &entry(
            5,
            "imap(bob)<1><J2>: Disconnected for inactivity in=1 out=2",
        ),
    );
    let evs = w.wait_count(2);
    assert_eq!(evs[1]["vnd.maildir.disconnect"], "timeout");
    let evs = w.stop();
    assert_eq!(evs.len(), 2, "{evs:?}");
    let args = fs::read_to_string(&args_log).unwrap();
    assert!(args.contains("--after-cursor=s=1;i=3 --follow"), "{args}");
}
