//! `maildir-events scan` against a real Dovecot: every IMAP/LMTP action is
//! done by Dovecot itself, and the events must match what Dovecot answers
//! (UIDVALIDITY, UIDs, RFC822.SIZE, mailbox names).
//!
//! Skipped (with a line on stderr) when Dovecot is not installed, unless
//! `CI=true`. Run: `cargo test --test dovecot_scan -- --nocapture`.
//!
//! A scenario runs every step even when an earlier one mismatched, and
//! fails at the end with the list of all mismatching steps, so one run
//! shows everything the binary still gets wrong. After every step an extra
//! scan must print nothing (the step's changes were committed), and no scan
//! may change anything in the store.

mod support;

use support::dovecot::uidlist;
use support::events::{expect_mailbox, expect_message, expect_rename, expect_subscription};
use support::fixture::Maildir;
use support::scansteps::ScanSteps;
use support::scenario::{ALICE, main_scenario};
use support::steps::Observer;
use support::{Dovecot, Imap, Options, PASSWORD, deliver_lmtp, message};

/// The harness itself against Dovecot, independent of the binary: LMTP and
/// IMAP work, and Dovecot's UIDs are on disk when its replies arrive.
#[test]
fn harness_talks_to_dovecot() {
    let Some(dovecot) = Dovecot::start() else {
        return;
    };
    let maildir = dovecot.maildir(ALICE);
    assert!(!maildir.exists(), "Maildir exists before any delivery");

    deliver_lmtp(
        dovecot.lmtp_port(),
        ALICE,
        &message("harness lmtp", "Hello.\n.dot line"),
    );
    let new = Maildir::open(&maildir).bases("", "new");
    assert_eq!(new.len(), 1, "LMTP delivery lands in new/: {new:?}");
    let list = uidlist(&maildir);
    eprintln!("after LMTP: new/ = {new:?}, dovecot-uidlist = {list:?}");
    assert!(
        list.iter().any(|(_, name)| *name == new[0]),
        "LMTP: the uidlist names the delivered file when the 250 reply arrives"
    );

    let mut imap = Imap::login(dovecot.imap_port(), ALICE, PASSWORD);
    let status = imap.status("INBOX");
    assert_eq!(
        Maildir::open(&maildir).bases("", "new").len(),
        1,
        "STATUS leaves new/ alone"
    );
    let examined = imap.examine("INBOX");
    assert_eq!(examined.uidvalidity, status.uidvalidity);
    assert_eq!(imap.uid_search_all(), vec![1]);
    let size = imap.uid_fetch_size(1);
    assert_eq!(
        Maildir::open(&maildir).bases("", "new").len(),
        1,
        "EXAMINE leaves new/ alone"
    );

    let body = message("harness append", "Appended.");
    let (uidvalidity, uid) = imap.append("INBOX", &["\\Seen"], &body);
    assert_eq!(uidvalidity, status.uidvalidity);
    assert_eq!(uid, 2);
    let list = uidlist(&maildir);
    let appended = list
        .iter()
        .find(|(u, _)| *u == uid)
        .unwrap_or_else(|| panic!("APPENDUID {uid} not in dovecot-uidlist {list:?}"));
    assert!(
        Maildir::open(&maildir)
            .bases("", "cur")
            .contains(&appended.1),
        "APPEND with flags lands in cur/"
    );
    assert_eq!(imap.uid_fetch_size(2), body.len() as u64);

    imap.select("INBOX");
    assert!(
        Maildir::open(&maildir).bases("", "new").is_empty(),
        "SELECT moves new/ to cur/"
    );
    imap.create("Foo");
    let copy = imap.uid_copy("1:2", "Foo");
    assert_eq!(copy.src, vec![1, 2]);
    assert_eq!(copy.dst, vec![1, 2]);
    let foo = imap.status("Foo");
    assert_eq!(copy.uidvalidity, foo.uidvalidity);
    eprintln!(
        "harness ok: INBOX UIDVALIDITY {} (size of UID 1: {size}), Foo UIDVALIDITY {}, COPYUID {copy:?}",
        status.uidvalidity, foo.uidvalidity
    );
    imap.logout();
    eprintln!("log: {}", dovecot.log_path().display());
}

/// A client idling on INBOX (phones, Thunderbird) makes Dovecot move each
/// delivery from `new/` to `cur/`, with no flags, about as soon as it lands,
/// so the next scan first sees it in `cur/`. It is still a delivery: the
/// scan must say MessageNew, with Dovecot's UID, not MessageAppend.
#[test]
fn scan_names_deliveries_an_idling_client_moved() {
    let Some(dovecot) = Dovecot::start() else {
        return;
    };
    let lmtp = dovecot.lmtp_port();
    let mut sc = ScanSteps::new(dovecot, ALICE, vec![]);
    deliver_lmtp(lmtp, ALICE, &message("before", "Before the client."));
    sc.step("0 baseline of an existing Maildir", vec![]);

    let mut client = sc.imap();
    client.select("INBOX");
    let mut idle = client.idle();
    for round in 1..=3u32 {
        let step = format!("{round} delivery while a client idles");
        deliver_lmtp(lmtp, ALICE, &message(&format!("idle {round}"), "Hi."));
        client.idle_wait_exists(1 + round);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !Maildir::open(sc.maildir()).bases("", "new").is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "{step}: Dovecot never moved the delivery out of new/ \
                 although a client idles on INBOX"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        sc.changed(&step);
        // A fresh session asks for the truth each round (a session with the
        // folder open would answer STATUS from its own view); EXAMINE and
        // STATUS leave new/ and cur/ alone.
        let mut probe = sc.imap();
        let st = probe.status("INBOX");
        probe.examine("INBOX");
        let uid = *probe.uid_search_all().last().expect("a message");
        let size = probe.uid_fetch_size(uid);
        probe.logout();
        sc.expect(
            &step,
            vec![expect_message(
                "MessageNew",
                "INBOX",
                st.uidvalidity,
                uid,
                size,
                st.uidnext,
                st.messages,
            )],
        );
        // The client leaves IDLE and comes back, as clients do, so the
        // next delivery is seen by a fresh IDLE too.
        client.idle_done(&idle);
        idle = client.idle();
    }
    client.idle_done(&idle);
    client.logout();
    sc.finish();
}

/// The main scenario (tests/support/scenario.rs) with the Maildir++
/// default separator `.`, a scan after each step.
#[test]
fn scan_reports_what_dovecot_did() {
    let Some(dovecot) = Dovecot::start() else {
        return;
    };
    let mut sc = ScanSteps::new(dovecot, ALICE, vec![]);
    main_scenario(&mut sc);
    sc.finish();
}

/// With `separator = /` the client sees `Foo/Sub`; on disk it is still
/// `.Foo.Sub`. The binary is told with `--separator /`.
#[test]
fn scan_with_slash_separator() {
    let Some(dovecot) = Dovecot::start_with(Options {
        separator: '/',
        ..Options::default()
    }) else {
        return;
    };
    let mut sc = ScanSteps::new(dovecot, ALICE, vec!["--separator", "/"]);
    sc.step("0 baseline (no Maildir yet)", vec![]);

    let mut imap = sc.imap();
    imap.create("Foo");
    imap.create("Foo/Sub");
    assert!(
        sc.maildir().join(".Foo.Sub").is_dir(),
        "Foo/Sub is .Foo.Sub on disk"
    );
    let foo = imap.status("Foo");
    let sub = imap.status("Foo/Sub");
    // Login and CREATE also made the Maildir (INBOX) itself: no event for it.
    sc.step(
        "1 CREATE Foo, Foo/Sub",
        vec![
            expect_mailbox("MailboxCreate", "Foo", foo.uidvalidity),
            expect_mailbox("MailboxCreate", "Foo/Sub", sub.uidvalidity),
        ],
    );

    let body = message("sub", "Into Foo/Sub.");
    let (v, uid) = imap.append("Foo/Sub", &["\\Flagged"], &body);
    assert_eq!(v, sub.uidvalidity);
    sc.changed("2 APPEND Foo/Sub");
    let st = imap.status("Foo/Sub");
    imap.examine("Foo/Sub");
    let size = imap.uid_fetch_size(uid);
    sc.expect(
        "2 APPEND Foo/Sub",
        vec![expect_message(
            "MessageAppend",
            "Foo/Sub",
            v,
            uid,
            size,
            st.uidnext,
            st.messages,
        )],
    );

    imap.command("UNSELECT");
    imap.rename("Foo", "Bar");
    assert!(
        sc.maildir().join(".Bar.Sub").is_dir(),
        "Bar/Sub is .Bar.Sub on disk"
    );
    let bar = imap.status("Bar");
    sc.step(
        "3 RENAME Foo Bar",
        vec![expect_rename(
            "Bar",
            bar.uidvalidity,
            "Foo",
            foo.uidvalidity,
        )],
    );

    imap.subscribe("Bar/Sub");
    sc.step(
        "4 SUBSCRIBE Bar/Sub",
        vec![expect_subscription("MailboxSubscribe", "Bar/Sub")],
    );
    imap.logout();
    sc.finish();
}
