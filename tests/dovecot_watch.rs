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
use std::os::unix::fs::MetadataExt as _;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::events::{expect_flags, expect_message, expect_uidset, parse_imap_url, summary};
use support::fixture::Maildir;
use support::livesteps::{LiveSteps, SETTLE};
use support::scenario::{ALICE, main_scenario};
use support::steps::{Observer, show};
use support::{Dovecot, deliver_lmtp, fingerprint_diff, message, store_fingerprint};

/// The main scenario (tests/support/scenario.rs), step by step, with one
/// watcher running the whole time from before the Maildir exists. After
/// SIGTERM (exit 0), a scan over the same state finds nothing new: the
/// live mode committed exactly what is on disk.
#[test]
fn watch_reports_each_step_live() {
    let Some(dovecot) = Dovecot::start() else {
        return;
    };
    let mut sc = LiveSteps::new(dovecot, ALICE, vec![]);
    main_scenario(&mut sc);
    sc.stop();
    sc.scan_finds_nothing("22 scan over the watcher's state after stop");
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
    let mut sc = LiveSteps::new(dovecot, ALICE, vec![]);

    // A raw session that SELECTs INBOX and stays in IDLE while LMTP
    // delivers, as a phone or Thunderbird does.
    let mut client = sc.imap();
    let uv = client.select("INBOX").uidvalidity;
    let idle = client.idle();
    assert!(sc.maildir().is_dir(), "SELECT INBOX created the Maildir");
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
        while !Maildir::open(sc.maildir()).bases("", "new").is_empty() && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let moved = Maildir::open(sc.maildir()).bases("", "new").is_empty();
        eprintln!(
            "step {step}: Dovecot's IDLE moved new/ to cur/: {moved} (seen {:?} after the \
             delivery); cur/ = {:?}",
            delivered.elapsed(),
            Maildir::open(sc.maildir()).list("", "cur")
        );
        let late = sc.collect(&format!("{step} / after the IDLE move"), |_| true, SETTLE);
        per_delivery.push((events, late, moved));
    }
    let untagged = client.idle_done(&idle).untagged;
    client.logout();
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
    let mut sc = LiveSteps::new(dovecot, ALICE, vec!["--uid-wait-ms", "300"]);

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
    assert!(sc.maildir().join("dovecot-uidlist").is_file());

    // 2. Postfix local(8): tmp/ → link into new/ → unlink tmp/, owned like
    //    Dovecot's own files so Dovecot can read it later.
    let owner = fs::metadata(sc.maildir()).unwrap();
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
    let tmp = sc.maildir().join("tmp").join(&name);
    let new = sc.maildir().join("new").join(&name);
    fs::write(&tmp, text).unwrap();
    std::os::unix::fs::chown(&tmp, Some(owner.uid()), Some(owner.gid())).unwrap();
    fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let linked = Instant::now();
    fs::hard_link(&tmp, &new).unwrap();
    fs::remove_file(&tmp).unwrap();
    let before = store_fingerprint(sc.maildir());

    let step = "2 Postfix-style delivery (Dovecot not involved)";
    let events = sc.collect(step, |actual| !actual.is_empty(), SETTLE);
    eprintln!(
        "step {step}: first event after {:?} from link()",
        linked.elapsed()
    );
    let after = store_fingerprint(sc.maildir());
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
        Maildir::open(sc.maildir()).bases("", "new").is_empty(),
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
    let mut sc = LiveSteps::new(dovecot, ALICE, vec![]);
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
