//! The main real-Dovecot scenario, one step per kind of change a user or
//! an MTA makes (deliver, APPEND, SELECT, STORE, EXPUNGE, CREATE, COPY,
//! MOVE, SUBSCRIBE, RENAME, DELETE, and several at once), each with the
//! events it must produce, taken from what Dovecot answers (UIDVALIDITY,
//! UIDs, RFC822.SIZE, STATUS). The same scenario is observed by a `scan`
//! after each step (`tests/dovecot_scan.rs`) and by one `watch` running
//! the whole time (`tests/dovecot_watch.rs`); where the two must differ,
//! [`Observer::live`] says which applies.

use super::events::{
    expect_flags, expect_mailbox, expect_message, expect_rename, expect_subscription, expect_uidset,
};
use super::fixture::Maildir;
use super::imap::format_sequence_set;
use super::steps::Observer;
use super::{deliver_lmtp, message};

pub const ALICE: &str = "alice@example.test";
pub const BOB: &str = "bob@example.test";

/// The messages of `alice`'s INBOX in `new/` (none when the Maildir does
/// not exist).
fn in_new(obs: &impl Observer) -> usize {
    Maildir::open(obs.maildir()).bases("", "new").len()
}

/// Runs the main scenario on [`ALICE`]'s store, which must not exist yet.
/// Mismatches are recorded in the observer; assertions about Dovecot
/// itself panic.
pub fn main_scenario(sc: &mut impl Observer) {
    let lmtp = sc.dovecot().lmtp_port();
    assert_eq!(sc.user(), ALICE, "the scenario delivers to alice");
    assert!(!sc.maildir().exists(), "Maildir exists before any delivery");

    // 0. Nothing happens: nothing is reported.
    sc.step("0 baseline (no Maildir yet)", vec![]);

    let mut imap;
    let (uv, u1, u2);
    if sc.live() {
        // 1a. The first LMTP delivery creates the Maildir (no event for
        //     INBOX itself) and its message.
        deliver_lmtp(lmtp, ALICE, &message("one", "First message."));
        imap = sc.imap();
        let inbox = imap.status("INBOX");
        imap.examine("INBOX"); // read-only: leaves new/ for step 4
        let uids = imap.uid_search_all();
        assert_eq!(uids.len(), 1, "Dovecot has the first delivery");
        u1 = uids[0];
        uv = inbox.uidvalidity;
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
        u2 = uids[1];
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
    } else {
        // 1. Two LMTP deliveries (and one to bob, which alice must not
        //    see) in one scan: both events carry the folder's state after
        //    both.
        deliver_lmtp(lmtp, ALICE, &message("one", "First message."));
        deliver_lmtp(lmtp, ALICE, &message("two", "Second message,\nlonger."));
        deliver_lmtp(lmtp, BOB, &message("bob", "Not alice's."));
        sc.changed("1 LMTP delivery");
        imap = sc.imap();
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
        sc.expect("1 LMTP delivery", expected);
        uv = inbox.uidvalidity;
        (u1, u2) = (delivered[0], delivered[1]);
    }

    // 2. APPEND with a flag lands in cur/: MessageAppend.
    let body = message("three", "Appended with \\Seen.");
    let (v, u3) = imap.append("INBOX", &["\\Seen"], &body);
    assert_eq!(v, uv);
    sc.changed("2 APPEND (\\Seen)");
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

    // 3. APPEND without flags lands in new/: indistinguishable from a
    //    delivery, reported as MessageNew (documented heuristic).
    let (v, u4) = imap.append("INBOX", &[], &message("four", "Appended without flags."));
    assert_eq!(v, uv);
    sc.changed("3 APPEND ()");
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

    // 4. The first read-write SELECT moves new/x to cur/x:2, — only \Recent
    //    changes, no event.
    let before = in_new(sc);
    imap.select("INBOX");
    assert_eq!(
        before, 3,
        "before SELECT, the flagless messages were in new/"
    );
    assert_eq!(in_new(sc), 0, "SELECT moved new/ to cur/");
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
    let foo_st = imap.status("Foo");
    assert_ne!(foo_st.uidvalidity, uv);
    sc.step(
        "11 CREATE Foo",
        vec![expect_mailbox("MailboxCreate", "Foo", foo_st.uidvalidity)],
    );

    // 12. UID COPY of two messages: MessageAppend per message in Foo,
    //     nothing in INBOX. Their `uidnext`/`messages` are the folder's
    //     state after the batch that saw them: after both links, or, live,
    //     when the two links fell into two batches, after that message.
    let sizes: Vec<u64> = [u1, u2].iter().map(|&u| imap.uid_fetch_size(u)).collect();
    let copy = imap.uid_copy(&format_sequence_set(&[u1, u2]), "Foo");
    assert_eq!(copy.uidvalidity, foo_st.uidvalidity);
    assert_eq!(copy.src, vec![u1, u2]);
    sc.changed("12 UID COPY");
    let st = imap.status("Foo");
    let live = sc.live();
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
            let own = after(uid + 1, foo_st.messages + i as u32 + 1);
            if live && own != alts[0] {
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
    assert_eq!(moved.uidvalidity, foo_st.uidvalidity);
    sc.changed("13 UID MOVE");
    let st = imap.status("Foo");
    sc.expect(
        "13 UID MOVE",
        vec![
            expect_message(
                "MessageAppend",
                "Foo",
                foo_st.uidvalidity,
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
    assert!(sc.maildir().join(".Foo.Sub").is_dir());
    sc.step(
        "15 CREATE Foo.Sub",
        vec![expect_mailbox("MailboxCreate", "Foo.Sub", sub.uidvalidity)],
    );

    // 16. RENAME a parent: one MailboxRename, the child's is implied.
    imap.rename("Foo", "Bar");
    let bar = imap.status("Bar");
    let bar_sub = imap.status("Bar.Sub");
    assert!(
        sc.maildir().join(".Bar.Sub").is_dir(),
        "Dovecot renamed the child too"
    );
    sc.step(
        "16 RENAME Foo Bar",
        vec![expect_rename(
            "Bar",
            bar.uidvalidity,
            "Foo",
            foo_st.uidvalidity,
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

    // 18./19. DELETE. Live, a folder's messages are reported expunged
    //     before the MailboxDelete, because Dovecot really expunges them
    //     first (its own mail_log logs "expunge" lines too); a scan, which
    //     sees only the net change, reports the MailboxDelete alone, with
    //     no MessageExpunge for its messages.
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
    imap.examine("Bar");
    let bar_uids = imap.uid_search_all();
    imap.select("INBOX");
    imap.delete("Bar");
    let mut expected = vec![expect_mailbox("MailboxDelete", "Bar", bar.uidvalidity)];
    if sc.live() {
        expected.push(expect_uidset(
            "MessageExpunge",
            "Bar",
            bar.uidvalidity,
            &bar_uids,
        ));
    }
    sc.step("19 DELETE Bar (3 messages)", expected);

    // 20. Several kinds of change in two folders at once. The delivery
    //     comes last: any IMAP command would sync the selected INBOX and
    //     move the new file to cur/ (no event) before a scan sees it in
    //     new/.
    imap.uid_store(&u2.to_string(), "+FLAGS", &["\\Flagged"]);
    imap.uid_store(&u1.to_string(), "-FLAGS", &["\\Seen"]);
    imap.create("Baz");
    deliver_lmtp(lmtp, ALICE, &message("five", "Delivered in a mixed batch."));
    sc.changed("20 mixed changes");
    let baz_st = imap.status("Baz");
    // The selected INBOX's view (which STATUS on it also reports) learns of
    // the delivery only at a sync.
    imap.command("NOOP");
    let st = imap.status("INBOX");
    let uids = imap.uid_search_all();
    let u5 = *uids.last().unwrap();
    assert_eq!(uids, vec![u1, u2, u5]);
    let size = imap.uid_fetch_size(u5);
    sc.expect(
        "20 mixed changes",
        vec![
            expect_message("MessageNew", "INBOX", uv, u5, size, st.uidnext, st.messages),
            expect_flags("FlagsSet", "INBOX", uv, &[u2], "\\Flagged"),
            expect_flags("FlagsClear", "INBOX", uv, &[u1], "\\Seen"),
            expect_mailbox("MailboxCreate", "Baz", baz_st.uidvalidity),
        ],
    );

    imap.logout();
    sc.step("21 LOGOUT", vec![]);
}
