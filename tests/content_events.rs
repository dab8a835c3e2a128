//! The optional content parameters on MessageNew/MessageAppend, end to end:
//! off by default, each switchable, the size cap, and a message that cannot
//! be parsed still yields its event.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn scan(state: &Path, maildir: &Path, config: Option<&Path>) -> Vec<Value> {
    let mut c = Command::new(env!("CARGO_BIN_EXE_maildir-events"));
    if let Some(cfg) = config {
        c.arg("--config").arg(cfg);
    }
    let out = c
        .args([
            "scan",
            "--user",
            "alice@example.org",
            "--server-name",
            "mx.example.org",
            "--uid-wait-ms",
            "0",
        ])
        .arg("--state")
        .arg(state)
        .arg(maildir)
        .env_remove("MAILDIR_EVENTS_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const MESSAGE: &str = "Return-Path: <bob@example.net>\nDelivered-To: alice@example.org\nFrom: Bob <bob@example.net>\nSubject: =?utf-8?q?Caf=C3=A9?=\nMessage-ID: <42@example.net>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\nHello Alice.\n";

/// A Maildir with a baseline taken, and a new message in it.
fn store(config: Option<&Path>, message: &[u8]) -> (tempfile::TempDir, Vec<Value>) {
    let t = tempfile::tempdir().unwrap();
    let md = t.path().join("Maildir");
    for d in ["cur", "new", "tmp"] {
        fs::create_dir_all(md.join(d)).unwrap();
    }
    let state = t.path().join("state");
    assert!(scan(&state, &md, config).is_empty());
    fs::write(md.join("new/1700000001.M1P1.host"), message).unwrap();
    let evs = scan(&state, &md, config);
    (t, evs)
}

fn config(dir: &Path, text: &str) -> std::path::PathBuf {
    let p = dir.join("config.toml");
    fs::write(&p, text).unwrap();
    p
}

#[test]
fn content_is_off_by_default() {
    let (_t, evs) = store(None, MESSAGE.as_bytes());
    assert_eq!(evs.len(), 1);
    for key in [
        "messageContent",
        "bodyStructure",
        "envelope",
        "vnd.maildir.subject",
    ] {
        assert!(evs[0].get(key).is_none(), "{key} in {}", evs[0]);
    }
    assert_eq!(
        evs[0]["messageSize"],
        MESSAGE.len() + MESSAGE.matches('\n').count()
    );
}

#[test]
fn every_parameter_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "[content]\ninclude = [\"messageContent\", \"bodyStructure\", \"envelope\", \"messageId\", \"subject\", \"from\"]\n",
    );
    let (_t, evs) = store(Some(&cfg), MESSAGE.as_bytes());
    let e = &evs[0];
    assert_eq!(e["messageContent"], MESSAGE.replace('\n', "\r\n"));
    assert_eq!(
        e["envelope"],
        "MAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>"
    );
    assert_eq!(e["vnd.maildir.messageId"], "<42@example.net>");
    assert_eq!(e["vnd.maildir.subject"], "Café");
    assert_eq!(e["vnd.maildir.from"], "Bob <bob@example.net>");
    let bs = e["bodyStructure"].as_str().unwrap();
    assert!(
        bs.starts_with("(\"text\" \"plain\" (\"charset\" \"utf-8\")"),
        "{bs}"
    );
}

#[test]
fn standard_mode_leaves_out_a_message_over_the_cap_and_header_mode_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "[content]\ninclude = [\"messageContent\"]\nmax_size = 20\n",
    );
    let (_t, evs) = store(Some(&cfg), MESSAGE.as_bytes());
    assert!(evs[0].get("messageContent").is_none(), "{}", evs[0]);

    let cfg = config(
        dir.path(),
        "[content]\nmode = \"header\"\ninclude = [\"messageContent\"]\nmax_size = 20\n",
    );
    let (_t, evs) = store(Some(&cfg), MESSAGE.as_bytes());
    assert_eq!(evs[0]["messageContent"], "Return-Path: <bob@ex");
}

#[test]
fn a_message_that_cannot_be_parsed_still_has_its_event() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "[content]\ninclude = [\"bodyStructure\", \"envelope\", \"subject\"]\n",
    );
    let garbage: Vec<u8> = (0..4000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let (_t, evs) = store(Some(&cfg), &garbage);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["event"], "MessageNew");
    assert!(evs[0].get("envelope").is_none(), "{}", evs[0]);
}
