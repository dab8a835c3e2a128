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

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::events::{
    EnvelopeChecker, expect_flags, expect_mailbox, expect_message, expect_rename,
    expect_subscription, expect_uidset, summary,
};
use support::{
    Dovecot, Imap, Options, PASSWORD, deliver_lmtp, fingerprint_diff, format_sequence_set, message,
    run_scan, store_fingerprint,
};

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";

/// Base names in `new/` or `cur/` of a Maildir folder (`dir` is the folder
/// root: the Maildir for INBOX, `.Name` for others).
fn base_names(dir: &Path, sub: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir.join(sub)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .map(|n| n.split(':').next().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// `UID basename` lines of a folder's `dovecot-uidlist`.
fn uidlist(dir: &Path) -> Vec<(u32, String)> {
    let text = fs::read_to_string(dir.join("dovecot-uidlist")).unwrap_or_default();
    text.lines()
        .skip(1) // header: "3 V1700000000 N2 G…"
        .filter_map(|line| {
            let (uid, rest) = line.split_once(' ')?;
            // "UID [extensions] :basename"
            let name = rest.rsplit_once(':').map_or(rest, |(_, n)| n);
            Some((uid.parse().ok()?, name.to_string()))
        })
        .collect()
}

/// One user's store, its state database and the checks collected so far.
struct Scenario {
    dovecot: Dovecot,
    state: tempfile::TempDir,
    user: &'static str,
    maildir: PathBuf,
    extra_args: Vec<&'static str>,
    envelope: EnvelopeChecker,
    failures: Vec<String>,
}

impl Scenario {
    fn new(dovecot: Dovecot, user: &'static str, extra_args: Vec<&'static str>) -> Scenario {
        let maildir = dovecot.maildir(user);
        Scenario {
            dovecot,
            state: tempfile::tempdir().expect("state dir"),
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

    /// Runs one scan; records a failure if it changed anything in the store
    /// or if an event lacks the common fields.
    fn scan(&mut self, step: &str) -> Vec<Value> {
        let before = store_fingerprint(&self.maildir);
        let events = run_scan(
            self.state.path(),
            &self.maildir,
            self.user,
            &self.extra_args,
        );
        let after = store_fingerprint(&self.maildir);
        let diff = fingerprint_diff(&before, &after);
        if !diff.is_empty() {
            self.fail(
                step,
                format!("the scan changed the store:\n  {}", diff.join("\n  ")),
            );
        }
        let problems = self.envelope.check(&events, self.user);
        if !problems.is_empty() {
            self.fail(
                step,
                format!("bad event fields:\n  {}", problems.join("\n  ")),
            );
        }
        events
    }

    /// Compares the events of one scan with the expected summaries, as
    /// multisets (order within one scan is not part of the contract).
    ///
    /// Then scans once more without any change in between: that scan must
    /// print nothing, which shows the step's changes were committed to the
    /// state (a missed commit shows up here, at the step that caused it,
    /// rather than as stray events in some later step).
    fn expect(&mut self, step: &str, events: &[Value], expected: Vec<String>) {
        self.compare(step, events, expected);
        let rescan = format!("{step} / rescan without changes");
        let again = self.scan(&rescan);
        self.compare(&rescan, &again, vec![]);
    }

    fn compare(&mut self, step: &str, events: &[Value], expected: Vec<String>) {
        let mut actual: Vec<String> = events.iter().map(summary).collect();
        let mut expected = expected;
        actual.sort();
        expected.sort();
        if actual == expected {
            eprintln!("step {step}: ok ({} events)", actual.len());
        } else {
            let show = |v: &[String]| {
                if v.is_empty() {
                    "  (none)".to_string()
                } else {
                    v.iter()
                        .map(|s| format!("  {s}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            };
            self.fail(
                step,
                format!(
                    "events differ\n expected:\n{}\n actual:\n{}",
                    show(&expected),
                    show(&actual)
                ),
            );
        }
    }

    /// Scan and compare in one go, for steps whose truth is known before.
    fn step(&mut self, step: &str, expected: Vec<String>) {
        let events = self.scan(step);
        self.expect(step, &events, expected);
    }

    fn fail(&mut self, step: &str, what: String) {
        eprintln!("step {step}: MISMATCH: {what}");
        self.failures.push(format!("step {step}: {what}"));
    }

    /// Panics with every recorded failure.
    fn finish(self) {
        if !self.failures.is_empty() {
            panic!(
                "{} failing check(s):\n\n{}",
                self.failures.len(),
                self.failures.join("\n\n")
            );
        }
    }
}

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
    let new = base_names(&maildir, "new");
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
        base_names(&maildir, "new").len(),
        1,
        "STATUS leaves new/ alone"
    );
    let examined = imap.examine("INBOX");
    assert_eq!(examined.uidvalidity, status.uidvalidity);
    assert_eq!(imap.uid_search_all(), vec![1]);
    let size = imap.uid_fetch_size(1);
    assert_eq!(
        base_names(&maildir, "new").len(),
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
        base_names(&maildir, "cur").contains(&appended.1),
        "APPEND with flags lands in cur/"
    );
    assert_eq!(imap.uid_fetch_size(2), body.len() as u64);

    imap.select("INBOX");
    assert!(
        base_names(&maildir, "new").is_empty(),
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
    let mut sc = Scenario::new(dovecot, ALICE, vec![]);
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
        while !base_names(&sc.maildir, "new").is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "{step}: Dovecot never moved the delivery out of new/ \
                 although a client idles on INBOX"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let events = sc.scan(&step);
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
            &events,
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

/// The main scenario with the Maildir++ default separator `.`.
#[test]
fn scan_reports_what_dovecot_did() {
    let Some(dovecot) = Dovecot::start() else {
        return;
    };
    let lmtp = dovecot.lmtp_port();
    let mut sc = Scenario::new(dovecot, ALICE, vec![]);

    // Baseline: empty state, the Maildir does not exist yet.
    sc.step("0 baseline (no Maildir yet)", vec![]);

    // 1. Two LMTP deliveries (and one to bob, which alice must not see).
    deliver_lmtp(lmtp, ALICE, &message("one", "First message."));
    deliver_lmtp(lmtp, ALICE, &message("two", "Second message,\nlonger."));
    deliver_lmtp(lmtp, BOB, &message("bob", "Not alice's."));
    let events = sc.scan("1 LMTP delivery");
    let mut imap = sc.imap();
    let inbox = imap.status("INBOX");
    imap.examine("INBOX"); // read-only: leaves new/ for step 4
    let delivered = imap.uid_search_all();
    assert_eq!(delivered.len(), 2, "Dovecot has both deliveries");
    let expected = delivered
        .iter()
        .map(|&uid| {
            let size = imap.uid_fetch_size(uid);
            expect_message(
                "MessageNew",
                "INBOX",
                inbox.uidvalidity,
                uid,
                size,
                inbox.uidnext,
                inbox.messages,
            )
        })
        .collect();
    sc.expect("1 LMTP delivery", &events, expected);
    let uv = inbox.uidvalidity;
    let (u1, u2) = (delivered[0], delivered[1]);

    // 2. APPEND with a flag lands in cur/: MessageAppend.
    let body = message("three", "Appended with \\Seen.");
    let (v, u3) = imap.append("INBOX", &["\\Seen"], &body);
    assert_eq!(v, uv);
    let events = sc.scan("2 APPEND (\\Seen)");
    let st = imap.status("INBOX");
    let size = imap.uid_fetch_size(u3);
    sc.expect(
        "2 APPEND (\\Seen)",
        &events,
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

    // 3. APPEND without flags lands in new/: indistinguishable from a
    //    delivery, reported as MessageNew (documented heuristic).
    let (v, u4) = imap.append("INBOX", &[], &message("four", "Appended without flags."));
    assert_eq!(v, uv);
    let events = sc.scan("3 APPEND ()");
    let st = imap.status("INBOX");
    let size = imap.uid_fetch_size(u4);
    sc.expect(
        "3 APPEND ()",
        &events,
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

    // 4. The first read-write SELECT moves new/x to cur/x:2, — only \Recent
    //    changes, no event.
    let in_new = base_names(&sc.maildir, "new").len();
    imap.select("INBOX");
    assert_eq!(
        in_new, 3,
        "before SELECT, the flagless messages were in new/"
    );
    assert!(
        base_names(&sc.maildir, "new").is_empty(),
        "SELECT moved new/ to cur/"
    );
    sc.step("4 SELECT (new/ → cur/)", vec![]);

    // 5.–9. STORE: one event per kind of change, uidset holding all UIDs.
    imap.uid_store(&format_sequence_set(&[u1, u2]), "+FLAGS", &["\\Seen"]);
    sc.step(
        "5 STORE +\\Seen",
        vec![expect_uidset("MessageRead", "INBOX", uv, &[u1, u2])],
    );

    imap.uid_store(&format_sequence_set(&[u1, u3]), "+FLAGS", &["\\Flagged"]);
    sc.step(
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
    sc.step(
        "7 STORE +$label1",
        vec![expect_flags("FlagsSet", "INBOX", uv, &[u2], "$label1")],
    );

    imap.uid_store(&format_sequence_set(&[u1, u3]), "-FLAGS", &["\\Flagged"]);
    sc.step(
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
    sc.step(
        "9 STORE +\\Deleted",
        vec![expect_uidset("MessageTrash", "INBOX", uv, &[u4])],
    );

    // 10. EXPUNGE.
    imap.expunge();
    assert_eq!(
        imap.uid_search_all(),
        vec![u1, u2, u3],
        "EXPUNGE removed UID {u4}"
    );
    sc.step(
        "10 EXPUNGE",
        vec![expect_uidset("MessageExpunge", "INBOX", uv, &[u4])],
    );

    // 11. CREATE.
    imap.create("Foo");
    let foo = imap.status("Foo");
    assert_ne!(foo.uidvalidity, uv);
    sc.step(
        "11 CREATE Foo",
        vec![expect_mailbox("MailboxCreate", "Foo", foo.uidvalidity)],
    );

    // 12. UID COPY: MessageAppend per message in Foo, nothing in INBOX.
    let sizes: Vec<u64> = [u1, u2].iter().map(|&u| imap.uid_fetch_size(u)).collect();
    let copy = imap.uid_copy(&format_sequence_set(&[u1, u2]), "Foo");
    assert_eq!(copy.uidvalidity, foo.uidvalidity);
    assert_eq!(copy.src, vec![u1, u2]);
    let events = sc.scan("12 UID COPY");
    let st = imap.status("Foo");
    let expected = copy
        .dst
        .iter()
        .zip(&sizes)
        .map(|(&uid, &size)| {
            expect_message(
                "MessageAppend",
                "Foo",
                copy.uidvalidity,
                uid,
                size,
                st.uidnext,
                st.messages,
            )
        })
        .collect();
    sc.expect("12 UID COPY", &events, expected);

    // 13. UID MOVE: MessageAppend in Foo + MessageExpunge in INBOX.
    let size = imap.uid_fetch_size(u3);
    let moved = imap.uid_move(&u3.to_string(), "Foo");
    assert_eq!(moved.src, vec![u3]);
    assert_eq!(moved.uidvalidity, foo.uidvalidity);
    let events = sc.scan("13 UID MOVE");
    let st = imap.status("Foo");
    sc.expect(
        "13 UID MOVE",
        &events,
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
    sc.step(
        "14 SUBSCRIBE Foo",
        vec![expect_subscription("MailboxSubscribe", "Foo")],
    );

    // 15. CREATE a child.
    imap.create("Foo.Sub");
    let sub = imap.status("Foo.Sub");
    assert!(sc.maildir.join(".Foo.Sub").is_dir());
    sc.step(
        "15 CREATE Foo.Sub",
        vec![expect_mailbox("MailboxCreate", "Foo.Sub", sub.uidvalidity)],
    );

    // 16. RENAME a parent: one MailboxRename, the child's is implied.
    imap.rename("Foo", "Bar");
    let bar = imap.status("Bar");
    let bar_sub = imap.status("Bar.Sub");
    assert!(
        sc.maildir.join(".Bar.Sub").is_dir(),
        "Dovecot renamed the child too"
    );
    sc.step(
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
    sc.step(
        "17 SUBSCRIBE Bar, UNSUBSCRIBE Foo",
        vec![
            expect_subscription("MailboxSubscribe", "Bar"),
            expect_subscription("MailboxUnSubscribe", "Foo"),
        ],
    );

    // 18./19. DELETE: MailboxDelete only, no MessageExpunge for its messages.
    imap.delete("Bar.Sub");
    sc.step(
        "18 DELETE Bar.Sub",
        vec![expect_mailbox(
            "MailboxDelete",
            "Bar.Sub",
            bar_sub.uidvalidity,
        )],
    );
    assert_eq!(bar.messages, 3);
    imap.delete("Bar");
    sc.step(
        "19 DELETE Bar (3 messages)",
        vec![expect_mailbox("MailboxDelete", "Bar", bar.uidvalidity)],
    );

    // 20. Several kinds of change in two folders in one scan. The delivery
    //     comes last: any IMAP command would sync the selected INBOX and
    //     move the new file to cur/ before the scan sees it in new/.
    imap.uid_store(&u2.to_string(), "+FLAGS", &["\\Flagged"]);
    imap.uid_store(&u1.to_string(), "-FLAGS", &["\\Seen"]);
    imap.create("Baz");
    deliver_lmtp(lmtp, ALICE, &message("five", "Delivered in a mixed batch."));
    let events = sc.scan("20 mixed batch");
    let baz = imap.status("Baz");
    // The selected INBOX's view (which STATUS on it also reports) learns of
    // the delivery only at a sync.
    imap.command("NOOP");
    let st = imap.status("INBOX");
    let uids = imap.uid_search_all();
    let u5 = *uids.last().unwrap();
    assert_eq!(uids, vec![u1, u2, u5]);
    let size = imap.uid_fetch_size(u5);
    sc.expect(
        "20 mixed batch",
        &events,
        vec![
            expect_message("MessageNew", "INBOX", uv, u5, size, st.uidnext, st.messages),
            expect_flags("FlagsSet", "INBOX", uv, &[u2], "\\Flagged"),
            expect_flags("FlagsClear", "INBOX", uv, &[u1], "\\Seen"),
            expect_mailbox("MailboxCreate", "Baz", baz.uidvalidity),
        ],
    );

    imap.logout();
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
    let mut sc = Scenario::new(dovecot, ALICE, vec!["--separator", "/"]);
    sc.step("0 baseline (no Maildir yet)", vec![]);

    let mut imap = sc.imap();
    imap.create("Foo");
    imap.create("Foo/Sub");
    assert!(
        sc.maildir.join(".Foo.Sub").is_dir(),
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
    let events = sc.scan("2 APPEND Foo/Sub");
    let st = imap.status("Foo/Sub");
    imap.examine("Foo/Sub");
    let size = imap.uid_fetch_size(uid);
    sc.expect(
        "2 APPEND Foo/Sub",
        &events,
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
        sc.maildir.join(".Bar.Sub").is_dir(),
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
