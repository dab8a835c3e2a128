//! A full mailbox under Courier's `deliverquota`, which refuses the message
//! that would cross a Maildir++ quota, so usage never reaches the limit:
//! with `[quota] full_at_percent = 90` the store counts as full and
//! `watch` reports QuotaExceed (then QuotaWithin once usage falls back);
//! with the default (100) no quota event comes.
//!
//! Needs `maildirmake` and `deliverquota` from Debian's `courier-base` or
//! `maildrop` (the `.courier`/`.maildrop` names; Dovecot ships a
//! `maildirmake` of its own without quota support). Skipped with a line on stderr when missing, unless
//! `CI=true`.

mod support;

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::live::{self, Spawn, WAIT};

fn program(names: &[&str]) -> Option<PathBuf> {
    names
        .iter()
        .flat_map(|n| ["/usr/bin", "/usr/local/bin", "/usr/sbin"].map(|d| Path::new(d).join(n)))
        .find(|p| p.is_file())
}

fn courier() -> Option<(PathBuf, PathBuf)> {
    let found = program(&["maildirmake.courier", "maildirmake.maildrop"]).zip(program(&[
        "deliverquota.courier",
        "deliverquota.maildrop",
        "deliverquota",
    ]));
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("maildirmake.courier/deliverquota missing; .ci/run must install courier-base");
        }
        let _ = writeln!(
            std::io::stderr(),
            "SKIP deliverquota: courier-base not installed (apt-get install courier-base); under CI=true this fails"
        );
    }
    found
}

/// Delivers one message with `deliverquota`; returns its exit code and
/// what it printed.
fn deliver(bin: &Path, maildir: &Path, message: &[u8]) -> (i32, String) {
    let mut child = Command::new(bin)
        .arg(maildir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(message).unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn quota_events(evs: &[Value]) -> Vec<&Value> {
    evs.iter()
        .filter(|e| e["event"].as_str().is_some_and(|k| k.starts_with("Quota")))
        .collect()
}

#[test]
fn deliverquota_refusals_and_the_full_mark() {
    let Some((maildirmake, deliverquota)) = courier() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let maildir = d.path().join("Maildir");
    let out = Command::new(&maildirmake)
        .args(["-q", "4000S,100C"])
        .arg(&maildir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        fs::read_to_string(maildir.join("maildirsize"))
            .unwrap()
            .starts_with("4000S,100C")
    );

    // One watcher with the full mark at 90 %, one scan state with the
    // default; both start before the deliveries.
    let full_at_90 = d.path().join("90.toml");
    fs::write(&full_at_90, "[quota]\nfull_at_percent = 90\n").unwrap();
    let plain = d.path().join("plain.toml");
    fs::write(&plain, "[quota]\n").unwrap();
    let scan_plain = |state: &Path| {
        let (code, lines, stderr) = live::scan(
            state,
            &[
                OsStr::new("--config"),
                plain.as_os_str(),
                OsStr::new("--user"),
                OsStr::new("alice"),
                maildir.as_os_str(),
            ],
        );
        assert_eq!(code, Some(0), "{stderr}");
        lines
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let plain_state = d.path().join("plain-state");
    assert!(scan_plain(&plain_state).is_empty());
    let w = Spawn::new(
        &d.path().join("state"),
        &["--config", full_at_90.to_str().unwrap(), "--user", "alice"],
    )
    .arg(&maildir)
    .start();

    let message = format!("From: a@example.test\nSubject: t\n\n{}\n", "y".repeat(879));
    let mut delivered = 0;
    let mut refused = 0;
    for _ in 0..8 {
        let (code, text) = deliver(&deliverquota, &maildir, message.as_bytes());
        if code == 0 {
            delivered += 1;
        } else {
            // Courier's deliverquota exits 77 here (75 in some versions).
            assert!(code == 77 || code == 75, "exit {code}: {text}");
            assert!(text.contains("quota exceeded"), "{text}");
            refused += 1;
        }
    }
    let used: u64 = fs::read_dir(maildir.join("new"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        refused > 0 && delivered > 0,
        "{delivered} delivered, {refused} refused"
    );
    assert!(
        used < 4000 && used * 10 >= 4000 * 9,
        "refused below the limit, at {used} of 4000 bytes"
    );

    let evs = w.wait_for("QuotaExceed at the full mark", WAIT, |evs| {
        !quota_events(evs).is_empty()
    });
    let q = quota_events(&evs);
    assert_eq!(q.len(), 1, "{q:#?}");
    assert_eq!(q[0]["event"], "QuotaExceed");
    assert_eq!(q[0]["diskQuota"], 4000 / 1024);
    assert_eq!(q[0]["messages"], delivered);

    // The default full mark is the limit: no event.
    assert!(quota_events(&scan_plain(&plain_state)).is_empty());

    // Usage falls back under the mark (less the hysteresis): QuotaWithin.
    let first = fs::read_dir(maildir.join("new"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    fs::remove_file(first).unwrap();
    let evs = w.wait_for("QuotaWithin", WAIT, |evs| quota_events(evs).len() >= 2);
    assert_eq!(quota_events(&evs)[1]["event"], "QuotaWithin");
    assert_eq!(quota_events(&w.stop()).len(), 2);
}
