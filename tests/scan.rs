//! Binary-level tests of `maildir-events scan` on temporary Maildirs.
//!
//! Every test builds a store, records a baseline (the first scan is
//! silent), changes the store the way a mail server or client would, and
//! checks the JSON Lines the next scan prints against the event contract in
//! README ("What a change on disk means").

mod support;
use support::evq;
use support::fixture;
use support::live::imap_size;
use support::run::{BIN, Run, SERVER, check_envelope, parse_lines, scan_command};
use support::user::Env;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use evq::{
    ALICE, USER, flags, kinds, mailbox, message, n, of, one, s, set, uid, uids, uidvalidity,
};
use serde_json::Value;
use tempfile::TempDir;

use fixture::{HELLO, Maildir, fingerprint};

// ------------------------------------------------------ event accessors

/// The one event of the run, which must be of `kind`.
fn only<'a>(evs: &'a [Value], kind: &str) -> &'a Value {
    assert_eq!(kinds(evs), [kind], "{evs:#?}");
    &evs[0]
}

fn whoami_is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

// ============================================================ semantics

#[test]
fn a_new_file_in_new_is_message_new() {
    let env = Env::new();
    env.baseline();
    env.md
        .put("", "new", "1700000001.M1P1.host", "Subject: hi\n\nhello\n");

    let evs = env.scan();
    let ev = only(&evs, "MessageNew");
    let v = uidvalidity(ev);
    assert_eq!(s(ev, "user"), USER);
    assert_eq!(s(ev, "mailboxID"), mailbox("INBOX", v));
    assert_eq!(s(ev, "uri"), message("INBOX", v, 1));
    assert_eq!(n(ev, "messageSize"), 22, "19 bytes and 3 bare LF");
    assert_eq!(s(ev, "flagNames"), "");
    assert_eq!(n(ev, "uidnext"), 2);
    assert_eq!(n(ev, "messages"), 1);
    assert_eq!(n(ev, "vnd.maildir.seq"), 1);

    // One event per message, in UID order, under the same UIDVALIDITY.
    env.md.deliver("", "1700000002.M1P1.host", HELLO);
    env.md.deliver("", "1700000003.M1P1.host", HELLO);
    let evs = env.scan();
    assert_eq!(kinds(&evs), ["MessageNew", "MessageNew"]);
    assert_eq!(s(&evs[0], "uri"), message("INBOX", v, 2));
    assert_eq!(s(&evs[1], "uri"), message("INBOX", v, 3));
    assert_eq!(n(&evs[1], "messages"), 3);
    assert_eq!(n(&evs[1], "uidnext"), 4);
    assert_eq!(
        evs.iter()
            .map(|e| n(e, "vnd.maildir.seq"))
            .collect::<Vec<_>>(),
        [2, 3],
        "seq goes on from the last run"
    );
    env.quiet();
}

#[test]
fn a_new_file_in_cur_is_append_with_flags_and_new_without() {
    // With flags it was an APPEND (or a client's save); without any, it is
    // a delivery an IDLE client made Dovecot move out of new/ already.
    let env = Env::new();
    env.baseline();
    env.md.put("", "cur", "1700000001.M1P1.host:2,S", "x\n");
    env.md.put("", "cur", "1700000002.M1P1.host", "y\n");

    let evs = env.scan();
    assert_eq!(kinds(&evs), ["MessageAppend", "MessageNew"], "{evs:#?}");
    let v = uidvalidity(&evs[0]);
    assert_eq!(s(&evs[0], "uri"), message("INBOX", v, 1));
    assert_eq!(flags(&evs[0]), set(&["\\Seen"]));
    assert_eq!(n(&evs[0], "messageSize"), 3);
    assert_eq!(s(&evs[1], "uri"), message("INBOX", v, 2));
    assert_eq!(flags(&evs[1]), set(&[]));
    env.quiet();
}

#[test]
fn a_copy_into_another_folder_is_message_append() {
    let env = Env::new();
    env.md.folder(".Archive");
    env.md.folder(".Trash");
    env.md
        .put("", "cur", "1700000001.M1P1.host,S=2,W=3:2,S", "x\n");
    env.md.deliver("", "1700000002.M1P1.host", HELLO);
    env.baseline();

    // Dovecot's COPY hard-links and keeps the base name, into cur/ when the
    // message has flags and into new/ when it has none.
    env.md.link(
        ("", "cur", "1700000001.M1P1.host,S=2,W=3:2,S"),
        (".Archive", "cur", "1700000001.M1P1.host,S=2,W=3:2,S"),
    );
    env.md.link(
        ("", "new", "1700000002.M1P1.host"),
        (".Trash", "new", "1700000002.M1P1.host"),
    );

    let evs = env.scan();
    assert_eq!(
        kinds(&evs),
        ["MessageAppend", "MessageAppend"],
        "a copy is no delivery and no expunge: {evs:#?}"
    );
    let archive = evs
        .iter()
        .find(|e| s(e, "mailboxID").contains("/Archive;"))
        .expect("Append into Archive");
    let trash = evs
        .iter()
        .find(|e| s(e, "mailboxID").contains("/Trash;"))
        .expect("Append into Trash");
    assert_eq!(
        s(archive, "uri"),
        message("Archive", uidvalidity(archive), 1)
    );
    assert_eq!(flags(archive), set(&["\\Seen"]));
    assert_eq!(n(archive, "messageSize"), 3);
    assert_eq!(s(trash, "uri"), message("Trash", uidvalidity(trash), 1));
    assert_eq!(flags(trash), set(&[]));
    env.quiet();
}

#[test]
fn a_copy_from_a_folder_that_did_not_change_is_message_append() {
    let env = Env::new();
    env.md.folder(".Archive");
    env.md.put("", "cur", "1700000001.M1P1.host:2,S", "x\n");
    env.md
        .put(".Archive", "cur", "1700000002.M1P1.host:2,S", "x\n");
    // Quiet for a minute: INBOX's directories prove it unchanged, so its
    // messages are not listed again; the copy is still recognised.
    env.md.backdate(60);
    env.baseline();

    env.md.link(
        ("", "cur", "1700000001.M1P1.host:2,S"),
        (".Archive", "cur", "1700000001.M1P1.host:2,S"),
    );
    let evs = env.scan();
    let ev = only(&evs, "MessageAppend");
    assert_eq!(s(ev, "uri"), message("Archive", uidvalidity(ev), 2));

    // Into a folder created in the same batch.
    env.md.folder(".Copies");
    env.md.link(
        ("", "cur", "1700000001.M1P1.host:2,S"),
        (".Copies", "new", "1700000001.M1P1.host"),
    );
    let evs = env.scan();
    assert_eq!(kinds(&evs), ["MailboxCreate", "MessageAppend"], "{evs:#?}");
    assert_eq!(
        s(&evs[1], "uri"),
        message("Copies", uidvalidity(&evs[0]), 1)
    );
}

#[test]
fn a_move_is_append_in_the_target_and_expunge_in_the_source() {
    let env = Env::new();
    env.md.folder(".Archive");
    env.md.put("", "cur", "1700000001.M1P1.host:2,S", "one\n");
    env.md.put("", "cur", "1700000002.M1P1.host:2,S", "two\n");
    env.baseline();

    env.md.mv(
        ("", "cur", "1700000002.M1P1.host:2,S"),
        (".Archive", "cur", "1700000002.M1P1.host:2,S"),
    );
    let evs = env.scan();
    assert_eq!(evs.len(), 2, "{evs:#?}");
    let append = one(&evs, "MessageAppend");
    assert_eq!(s(append, "uri"), message("Archive", uidvalidity(append), 1));
    assert_eq!(flags(append), set(&["\\Seen"]));
    let expunge = of(&evs, "MessageExpunge");
    assert_eq!(expunge.len(), 1, "{evs:#?}");
    assert_eq!(
        s(expunge[0], "mailboxID"),
        mailbox("INBOX", uidvalidity(expunge[0]))
    );
    assert_eq!(s(expunge[0], "uidset"), "2");
    assert_eq!(n(expunge[0], "messages"), 1);
    env.quiet();
}

#[test]
fn expunges_are_one_event_per_folder_with_a_compressed_uidset() {
    let env = Env::new();
    env.md.folder(".Spam");
    for i in 1..=8 {
        env.md
            .put("", "cur", format!("17000000{i:02}.M1P1.host:2,S"), "x\n");
    }
    for i in 1..=3 {
        env.md
            .deliver(".Spam", format!("17000001{i:02}.M1P1.host"), HELLO);
    }
    env.baseline();

    for i in [1, 2, 3, 4, 5, 7] {
        env.md
            .rm("", "cur", format!("17000000{i:02}.M1P1.host:2,S"));
    }
    for i in [1, 3] {
        env.md
            .rm(".Spam", "new", format!("17000001{i:02}.M1P1.host"));
    }
    let evs = env.scan();
    assert_eq!(
        kinds(&evs),
        ["MessageExpunge", "MessageExpunge"],
        "{evs:#?}"
    );
    let inbox = evs
        .iter()
        .find(|e| s(e, "mailboxID").contains("/INBOX;"))
        .expect("INBOX expunge");
    let spam = evs
        .iter()
        .find(|e| s(e, "mailboxID").contains("/Spam;"))
        .expect("Spam expunge");
    assert_eq!(s(inbox, "uri"), mailbox("INBOX", uidvalidity(inbox)));
    assert_eq!(s(inbox, "uidset"), "1:5,7");
    assert_eq!(n(inbox, "messages"), 2);
    assert_eq!(s(spam, "uidset"), "1,3");
    assert_eq!(n(spam, "messages"), 1);
    env.quiet();
}

#[test]
fn moving_new_to_cur_without_flags_is_no_event() {
    let env = Env::new();
    env.md.deliver("", "1700000001.M1P1.host", HELLO);
    env.md.put(
        "",
        "new",
        "1700000002.4242_1.laptop:2,",
        "mbsync puts :2, into new/\n",
    );
    env.baseline();

    // Dovecot's first SELECT, and mbsync/mutt taking a message over.
    env.md.mv(
        ("", "new", "1700000001.M1P1.host"),
        ("", "cur", "1700000001.M1P1.host:2,"),
    );
    env.md.mv(
        ("", "new", "1700000002.4242_1.laptop:2,"),
        ("", "cur", "1700000002.4242_1.laptop:2,"),
    );
    env.quiet();
}

#[test]
fn gaining_seen_is_one_message_read() {
    let env = Env::new();
    for i in 1..=4 {
        env.md
            .put("", "cur", format!("170000000{i}.M1P1.host:2,"), "x\n");
    }
    env.md.deliver("", "1700000005.M1P1.host", HELLO);
    env.baseline();

    for i in 1..=3 {
        env.md.mv(
            ("", "cur", &format!("170000000{i}.M1P1.host:2,")),
            ("", "cur", &format!("170000000{i}.M1P1.host:2,S")),
        );
    }
    // Read in mutt: new/ → cur/ with S.
    env.md.mv(
        ("", "new", "1700000005.M1P1.host"),
        ("", "cur", "1700000005.M1P1.host:2,S"),
    );

    let evs = env.scan();
    let ev = only(&evs, "MessageRead");
    assert_eq!(s(ev, "uri"), mailbox("INBOX", uidvalidity(ev)));
    assert_eq!(s(ev, "uidset"), "1:3,5");
    assert_eq!(n(ev, "messages"), 5);
    env.quiet();
}

#[test]
fn gaining_trashed_is_message_trash() {
    let env = Env::new();
    for i in 1..=4 {
        env.md
            .put("", "cur", format!("170000000{i}.M1P1.host:2,S"), "x\n");
    }
    env.baseline();

    for i in [2, 4] {
        env.md.mv(
            ("", "cur", &format!("170000000{i}.M1P1.host:2,S")),
            ("", "cur", &format!("170000000{i}.M1P1.host:2,ST")),
        );
    }
    let evs = env.scan();
    let ev = only(&evs, "MessageTrash");
    assert_eq!(s(ev, "uidset"), "2,4");
    env.quiet();
}

#[test]
fn other_flags_and_keywords_are_flags_set_with_their_names() {
    let env = Env::new();
    env.md
        .write("", "dovecot-keywords", "0 $Junk\n1 $NonJunk\n3 $label1\n");
    for i in 1..=4 {
        env.md
            .put("", "cur", format!("170000000{i}.M1P1.host:2,"), "x\n");
    }
    env.baseline();

    let flag = |i: u32, to: &str| {
        env.md.mv(
            ("", "cur", &format!("170000000{i}.M1P1.host:2,")),
            ("", "cur", &format!("170000000{i}.M1P1.host:2,{to}")),
        )
    };
    flag(1, "DFRabd");
    flag(2, "c"); // letter c has no name in dovecot-keywords: ignored
    flag(3, "F");
    flag(4, "F");

    let evs = env.scan();
    assert_eq!(kinds(&evs), ["FlagsSet", "FlagsSet"], "{evs:#?}");
    let one = evs
        .iter()
        .find(|e| s(e, "uidset") == "1")
        .expect("FlagsSet for UID 1");
    assert_eq!(
        flags(one),
        set(&[
            "\\Draft",
            "\\Flagged",
            "\\Answered",
            "$Junk",
            "$NonJunk",
            "$label1"
        ])
    );
    assert_eq!(s(one, "uri"), mailbox("INBOX", uidvalidity(one)));
    let two = evs
        .iter()
        .find(|e| s(e, "uidset") == "3:4")
        .expect("one FlagsSet for UIDs 3:4");
    assert_eq!(flags(two), set(&["\\Flagged"]));
    assert!(evs.iter().all(|e| !flags(e).contains("\\Recent")));
    env.quiet();
}

#[test]
fn losing_flags_is_flags_clear() {
    let env = Env::new();
    env.md.write("", "dovecot-keywords", "0 $Junk\n");
    env.md.put("", "cur", "1700000001.M1P1.host:2,FRSa", "x\n");
    env.md.put("", "cur", "1700000002.M1P1.host:2,DS", "x\n");
    env.baseline();

    env.md.mv(
        ("", "cur", "1700000001.M1P1.host:2,FRSa"),
        ("", "cur", "1700000001.M1P1.host:2,"),
    );
    env.md.mv(
        ("", "cur", "1700000002.M1P1.host:2,DS"),
        ("", "cur", "1700000002.M1P1.host:2,S"),
    );
    let evs = env.scan();
    assert_eq!(kinds(&evs), ["FlagsClear", "FlagsClear"], "{evs:#?}");
    let one = evs
        .iter()
        .find(|e| s(e, "uidset") == "1")
        .expect("FlagsClear for UID 1");
    assert_eq!(
        flags(one),
        set(&["\\Flagged", "\\Answered", "\\Seen", "$Junk"])
    );
    let two = evs
        .iter()
        .find(|e| s(e, "uidset") == "2")
        .expect("FlagsClear for UID 2");
    assert_eq!(flags(two), set(&["\\Draft"]));
    env.quiet();
}

#[test]
fn the_passed_flag_is_never_reported() {
    let env = Env::new();
    env.md.put("", "cur", "1700000001.M1P1.host:2,S", "x\n");
    env.md.put("", "cur", "1700000002.M1P1.host:2,", "x\n");
    env.md.put("", "cur", "1700000003.M1P1.host:2,P", "x\n");
    env.baseline();

    env.md.mv(
        ("", "cur", "1700000001.M1P1.host:2,S"),
        ("", "cur", "1700000001.M1P1.host:2,PS"),
    );
    env.md.mv(
        ("", "cur", "1700000002.M1P1.host:2,"),
        ("", "cur", "1700000002.M1P1.host:2,P"),
    );
    env.md.mv(
        ("", "cur", "1700000003.M1P1.host:2,P"),
        ("", "cur", "1700000003.M1P1.host:2,"),
    );
    env.quiet();

    // A new message with P has no P in its flagNames.
    env.md.put("", "cur", "1700000004.M1P1.host:2,FP", "x\n");
    let evs = env.scan();
    assert_eq!(flags(only(&evs, "MessageAppend")), set(&["\\Flagged"]));
}

#[test]
fn without_simple_flag_events_seen_and_deleted_are_flags_set_and_clear() {
    let env = Env::new();
    let opt = ["--no-simple-flag-events"];
    env.md.put("", "cur", "1700000001.M1P1.host:2,", "x\n");
    env.baseline_with(&opt);

    env.md.mv(
        ("", "cur", "1700000001.M1P1.host:2,"),
        ("", "cur", "1700000001.M1P1.host:2,ST"),
    );
    let evs = env.scan_with(&opt);
    let ev = only(&evs, "FlagsSet");
    assert_eq!(s(ev, "uidset"), "1");
    assert_eq!(flags(ev), set(&["\\Seen", "\\Deleted"]));

    env.md.mv(
        ("", "cur", "1700000001.M1P1.host:2,ST"),
        ("", "cur", "1700000001.M1P1.host:2,"),
    );
    let evs = env.scan_with(&opt);
    let ev = only(&evs, "FlagsClear");
    assert_eq!(flags(ev), set(&["\\Seen", "\\Deleted"]));
}

#[test]
fn a_new_folder_is_mailbox_create() {
    let env = Env::new();
    env.baseline();
    env.md.folder(".Archive");
    env.md.folder(".Archive.2024");
    env.md.folder("..DOVECOT-TRASHED");
    env.md
        .deliver(".Archive.2024", "1700000001.M1P1.host", HELLO);

    let evs = env.scan();
    assert_eq!(
        kinds(&evs),
        ["MailboxCreate", "MailboxCreate", "MessageNew"],
        "{evs:#?}"
    );
    let created: BTreeSet<String> = of(&evs, "MailboxCreate")
        .iter()
        .map(|e| {
            assert_eq!(s(e, "uri"), s(e, "mailboxID"), "{e}");
            s(e, "uri").to_owned()
        })
        .collect();
    let v = |name: &str| {
        uidvalidity(
            evs.iter()
                .find(|e| s(e, "uri").contains(&format!("/{name};")))
                .unwrap(),
        )
    };
    assert_eq!(
        created,
        BTreeSet::from([
            mailbox("Archive", v("Archive")),
            mailbox("Archive.2024", v("Archive.2024"))
        ])
    );
    assert_eq!(
        s(&evs[2], "uri"),
        message("Archive.2024", v("Archive.2024"), 1)
    );
    env.quiet();
}

#[test]
fn folder_names_use_the_configured_hierarchy_separator() {
    let env = Env::new();
    let opt = ["--separator", "/"];
    env.baseline_with(&opt);
    env.md.folder(".Archive.2024");
    env.md
        .deliver(".Archive.2024", "1700000001.M1P1.host", HELLO);

    let evs = env.scan_with(&opt);
    assert_eq!(kinds(&evs), ["MailboxCreate", "MessageNew"], "{evs:#?}");
    let v = uidvalidity(&evs[0]);
    assert_eq!(s(&evs[0], "uri"), mailbox("Archive/2024", v));
    assert_eq!(s(&evs[1], "uri"), message("Archive/2024", v, 1));
}

#[test]
fn a_removed_folder_is_mailbox_delete_without_expunges() {
    let env = Env::new();
    env.md.folder(".Old");
    env.md.folder(".Old.Child");
    env.md.folder(".Gone");
    env.md.put(".Old", "cur", "1700000001.M1P1.host:2,S", "x\n");
    env.md.deliver(".Old", "1700000002.M1P1.host", HELLO);
    env.md.deliver(".Gone", "1700000003.M1P1.host", HELLO);
    env.baseline();

    // rm -r, and Dovecot's DELETE: rename to ..DOVECOT-TRASHED, then remove.
    fs::remove_dir_all(env.md.dir(".Old")).unwrap();
    fs::rename(env.md.dir(".Gone"), env.md.dir("..DOVECOT-TRASHED")).unwrap();

    let evs = env.scan();
    assert_eq!(kinds(&evs), ["MailboxDelete", "MailboxDelete"], "{evs:#?}");
    let deleted: BTreeSet<&str> = evs
        .iter()
        .map(|e| {
            s(e, "uri")
                .split(';')
                .next()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(
        deleted,
        BTreeSet::from(["Old", "Gone"]),
        "the child .Old.Child stays"
    );
    fs::remove_dir_all(env.md.dir("..DOVECOT-TRASHED")).unwrap();
    env.quiet();
}

#[test]
fn a_renamed_folder_is_one_rename_and_its_children_are_implied() {
    let env = Env::new();
    env.md.folder(".Work");
    env.md.folder(".Work.Sub");
    env.md.folder(".Other");
    env.md
        .put(".Work", "cur", "1700000001.M1P1.host:2,S", "x\n");
    env.md
        .put(".Work.Sub", "cur", "1700000002.M1P1.host:2,", "x\n");
    let evs = env.scan_with(&["--emit-existing"]);
    let v_work = uidvalidity(evs.iter().find(|e| s(e, "uri").contains("/Work;")).unwrap());
    let v_sub = uidvalidity(
        evs.iter()
            .find(|e| s(e, "uri").contains("/Work.Sub;"))
            .unwrap(),
    );

    // Dovecot's RENAME: the folder, then each child, one by one.
    env.md.backdate(60);
    fs::rename(env.md.dir(".Work"), env.md.dir(".Job")).unwrap();
    fs::rename(env.md.dir(".Work.Sub"), env.md.dir(".Job.Sub")).unwrap();
    let evs = env.scan();
    let ev = only(&evs, "MailboxRename");
    assert_eq!(s(ev, "uri"), mailbox("Job", v_work));
    assert_eq!(s(ev, "mailboxID"), mailbox("Job", v_work));
    assert_eq!(s(ev, "oldMailboxID"), mailbox("Work", v_work));

    // The child kept its messages and UIDs under its new name.
    env.md.mv(
        (".Job.Sub", "cur", "1700000002.M1P1.host:2,"),
        (".Job.Sub", "cur", "1700000002.M1P1.host:2,S"),
    );
    let evs = env.scan();
    let ev = only(&evs, "MessageRead");
    assert_eq!(s(ev, "uri"), mailbox("Job.Sub", v_sub));
    assert_eq!(s(ev, "uidset"), "1");
}

#[test]
fn a_renamed_folder_with_new_mail_in_the_same_scan() {
    let env = Env::new();
    env.md.folder(".Work");
    env.md
        .put(".Work", "cur", "1700000001.M1P1.host:2,S", "x\n");
    env.md.backdate(60);
    env.baseline();

    fs::rename(env.md.dir(".Work"), env.md.dir(".Job")).unwrap();
    env.md.deliver(".Job", "1700000002.M1P1.host", HELLO);
    let evs = env.scan();
    assert_eq!(kinds(&evs), ["MailboxRename", "MessageNew"], "{evs:#?}");
    let v = uidvalidity(&evs[0]);
    assert_eq!(s(&evs[0], "oldMailboxID"), mailbox("Work", v));
    assert_eq!(s(&evs[1], "uri"), message("Job", v, 2));
    assert_eq!(n(&evs[1], "messages"), 2);
}

#[test]
fn modified_utf7_folder_names_are_percent_encoded_utf8_in_urls() {
    let env = Env::new();
    env.baseline();
    env.md.folder(".Entw&APw-rfe");
    env.md.folder(".&ZeVnLIqe-");
    env.md.folder(".Archive.2024 Q1");
    env.md
        .deliver(".Entw&APw-rfe", "1700000001.M1P1.host", HELLO);

    let evs = env.scan();
    let creates: BTreeSet<String> = of(&evs, "MailboxCreate")
        .iter()
        .map(|e| {
            s(e, "uri")
                .split(";UIDVALIDITY=")
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        creates,
        BTreeSet::from([
            format!("{ALICE}/Entw%C3%BCrfe"),
            format!("{ALICE}/%E6%97%A5%E6%9C%AC%E8%AA%9E"),
            format!("{ALICE}/Archive.2024%20Q1"),
        ])
    );
    let new = of(&evs, "MessageNew");
    assert_eq!(new.len(), 1, "{evs:#?}");
    assert_eq!(
        s(new[0], "uri"),
        message("Entw%C3%BCrfe", uidvalidity(new[0]), 1)
    );
}

#[test]
fn mailbox_and_user_names_are_escaped_in_urls() {
    let tmp = TempDir::new().unwrap();
    let md = Maildir::create(tmp.path().join("Maildir"));
    let state = tmp.path().join("state");
    let run = || {
        let mut c = scan_command(&state, &["--user", "o'neil;x:y@example.org"]);
        Run::of(c.arg(&md.root)).events()
    };
    assert!(run().is_empty());
    for dir in [
        ".100% done",
        ".a;b",
        ".what?",
        ".#tag",
        ".Tom &- Jerry",
        ".x=y",
    ] {
        md.folder(dir);
    }
    let evs = run();
    let user = "imap://o'neil%3Bx%3Ay%40example.org@mx.example.org/";
    let got: BTreeSet<&str> = evs
        .iter()
        .map(|e| {
            assert_eq!(s(e, "event"), "MailboxCreate", "{e}");
            let rest = s(e, "uri")
                .strip_prefix(user)
                .unwrap_or_else(|| panic!("{e}"));
            rest.split(";UIDVALIDITY=").next().unwrap()
        })
        .collect();
    assert_eq!(
        got,
        BTreeSet::from([
            "100%25%20done",
            "a%3Bb",
            "what%3F",
            "%23tag",
            "Tom%20&%20Jerry",
            "x=y"
        ])
    );
}

#[test]
fn utf8_folder_names_with_utf8_names_option() {
    let env = Env::new();
    let opt = ["--utf8-names"];
    env.baseline_with(&opt);
    env.md.folder(".Entwürfe");
    let evs = env.scan_with(&opt);
    let ev = only(&evs, "MailboxCreate");
    assert_eq!(s(ev, "uri"), mailbox("Entw%C3%BCrfe", uidvalidity(ev)));
}

/// The subscription events' mailbox names (`…/NAME`), by event type.
fn subscription_names(evs: &[Value]) -> BTreeMap<&str, BTreeSet<&str>> {
    let mut out: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in evs {
        let uri = s(e, "uri");
        let name = uri
            .strip_prefix(&format!("{ALICE}/"))
            .unwrap_or_else(|| panic!("{uri}"));
        assert!(!name.contains(";UIDVALIDITY="), "{e}");
        out.entry(s(e, "event")).or_default().insert(name);
    }
    out
}

#[test]
fn subscriptions_v2_are_subscribe_and_unsubscribe() {
    let env = Env::new();
    env.md.write("", "subscriptions", "V\t2\n\nSent\n");
    env.baseline();

    env.md.write(
        "",
        "subscriptions",
        "V\t2\n\nSent\nArchive\t2024\nEntw&APw-rfe\n",
    );
    let evs = env.scan();
    assert_eq!(
        subscription_names(&evs),
        BTreeMap::from([(
            "MailboxSubscribe",
            BTreeSet::from(["Archive.2024", "Entw%C3%BCrfe"])
        )])
    );

    env.md.write("", "subscriptions", "V\t2\n\nArchive\t2024\n");
    let evs = env.scan();
    assert_eq!(
        subscription_names(&evs),
        BTreeMap::from([(
            "MailboxUnSubscribe",
            BTreeSet::from(["Sent", "Entw%C3%BCrfe"])
        )])
    );
    env.quiet();

    fs::remove_file(env.md.root.join("subscriptions")).unwrap();
    let evs = env.scan();
    assert_eq!(
        subscription_names(&evs),
        BTreeMap::from([("MailboxUnSubscribe", BTreeSet::from(["Archive.2024"]))])
    );
}

#[test]
fn subscriptions_v1_and_the_separator() {
    let env = Env::new();
    let opt = ["--separator", "/"];
    env.baseline_with(&opt);
    // Version 1: plain names with the storage separator.
    env.md.write("", "subscriptions", "Sent\nArchive.2024\n");
    let evs = env.scan_with(&opt);
    assert_eq!(
        subscription_names(&evs),
        BTreeMap::from([("MailboxSubscribe", BTreeSet::from(["Sent", "Archive/2024"]))])
    );
}

#[test]
fn courier_subscriptions_are_subscribe_and_unsubscribe() {
    let env = Env::new();
    env.md.write("", "courierimapsubscribed", "INBOX.Sent\n");
    env.baseline();

    env.md.write(
        "",
        "courierimapsubscribed",
        // Courier compares the INBOX prefix case-insensitively.
        "INBOX.Sent\nINBOX.Drafts\nINBOX.Archive.2024\nInbox.Trash\n",
    );
    let evs = env.scan();
    assert_eq!(
        subscription_names(&evs),
        BTreeMap::from([(
            "MailboxSubscribe",
            // A Courier store (courierimapsubscribed, no Dovecot files):
            // names carry Courier's namespace prefix, as its clients see.
            BTreeSet::from(["INBOX.Drafts", "INBOX.Archive.2024", "INBOX.Trash"])
        )])
    );
    env.md.write(
        "",
        "courierimapsubscribed",
        "INBOX.Drafts\nINBOX.Archive.2024\nInbox.Trash\n",
    );
    let evs = env.scan();
    assert_eq!(
        subscription_names(&evs),
        BTreeMap::from([("MailboxUnSubscribe", BTreeSet::from(["INBOX.Sent"]))])
    );
    // Without the prefix (--namespace-prefix ""), the names below it.
    let env = Env::new();
    let opt = ["--namespace-prefix", ""];
    env.md.write("", "courierimapsubscribed", "INBOX.Sent\n");
    env.baseline_with(&opt);
    env.md.write("", "courierimapsubscribed", "INBOX.Drafts\n");
    let evs = env.scan_with(&opt);
    assert_eq!(
        subscription_names(&evs),
        BTreeMap::from([
            ("MailboxSubscribe", BTreeSet::from(["Drafts"])),
            ("MailboxUnSubscribe", BTreeSet::from(["Sent"]))
        ])
    );
}

#[test]
fn uids_and_uidvalidity_come_from_dovecot_uidlist() {
    let env = Env::new();
    env.md.put(
        "",
        "cur",
        "1276528487.M364837P9451.kurkku,S=1355,W=1394:2,S",
        "x\n",
    );
    env.md.write(
        "",
        "dovecot-uidlist",
        "3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1\n25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394\n",
    );
    env.baseline_with(&["--uid-wait-ms", "50"]);

    env.md
        .put("", "new", "1276533073.M242911P3632.kurkku", "a\nb\n");
    env.md.append(
        "",
        "dovecot-uidlist",
        "25022 W6 :1276533073.M242911P3632.kurkku\n",
    );
    env.md.mv(
        (
            "",
            "cur",
            "1276528487.M364837P9451.kurkku,S=1355,W=1394:2,S",
        ),
        (
            "",
            "cur",
            "1276528487.M364837P9451.kurkku,S=1355,W=1394:2,FS",
        ),
    );
    let evs = env.scan_with(&["--uid-wait-ms", "50"]);
    assert_eq!(kinds(&evs), ["MessageNew", "FlagsSet"], "{evs:#?}");
    assert_eq!(s(&evs[0], "uri"), message("INBOX", 1275660208, 25022));
    assert_eq!(s(&evs[0], "mailboxID"), mailbox("INBOX", 1275660208));
    assert_eq!(n(&evs[0], "messageSize"), 6);
    assert_eq!(n(&evs[0], "uidnext"), 25023);
    assert_eq!(n(&evs[0], "messages"), 2);
    assert_eq!(s(&evs[1], "uri"), mailbox("INBOX", 1275660208));
    assert_eq!(s(&evs[1], "uidset"), "25006");
}

#[test]
fn uids_and_uidvalidity_come_from_courierimapuiddb() {
    let env = Env::new();
    env.md.write("", "courierimapuiddb", "1 1234567 8\n");
    env.baseline();

    env.md.put("", "cur", "1700000001.M1P1.host:2,S", "x\n");
    env.md.write(
        "",
        "courierimapuiddb",
        "1 1234567 8\n7 1700000001.M1P1.host\n",
    );
    let evs = env.scan();
    let ev = only(&evs, "MessageAppend");
    assert_eq!(s(ev, "uri"), message("INBOX", 1234567, 7));
}

#[test]
fn a_new_file_without_its_uid_is_reported_pending_and_later_events_use_the_uid() {
    let env = Env::new();
    let wait = ["--uid-wait-ms", "50"];
    env.md.put("", "cur", "1600000000.M1P1.host:2,S", "x\n");
    env.md.write(
        "",
        "dovecot-uidlist",
        "3 V1600000000 N5 G0123456789abcdef0123456789abcdef\n3 :1600000000.M1P1.host\n",
    );
    env.baseline_with(&wait);

    // Postfix delivers; no Dovecot process has synced the mailbox yet.
    env.md.deliver("", "1700000001.M2P2.host", HELLO);
    let started = Instant::now();
    let evs = env.scan_with(&wait);
    let ev = only(&evs, "MessageNew");
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "did not wait for the UID"
    );
    assert_eq!(ev["vnd.maildir.uidPending"], Value::Bool(true), "{ev}");
    assert_eq!(s(ev, "vnd.maildir.filename"), "1700000001.M2P2.host");
    assert_eq!(s(ev, "mailboxID"), mailbox("INBOX", 1600000000));
    assert!(!s(ev, "uri").contains(";UID="), "no UID is known yet: {ev}");

    // Dovecot syncs and names it; that alone is no new event.
    env.md
        .append("", "dovecot-uidlist", "5 :1700000001.M2P2.host\n");
    let evs = env.scan_with(&wait);
    assert!(evs.is_empty(), "the message was already reported: {evs:#?}");

    env.md.mv(
        ("", "new", "1700000001.M2P2.host"),
        ("", "cur", "1700000001.M2P2.host:2,S"),
    );
    let evs = env.scan_with(&wait);
    let ev = only(&evs, "MessageRead");
    assert_eq!(s(ev, "uidset"), "5");

    env.md.rm("", "cur", "1700000001.M2P2.host:2,S");
    let evs = env.scan_with(&wait);
    assert_eq!(s(only(&evs, "MessageExpunge"), "uidset"), "5");
}

#[test]
fn a_message_expunged_before_dovecot_named_it() {
    let env = Env::new();
    let wait = ["--uid-wait-ms", "20"];
    env.md.write(
        "",
        "dovecot-uidlist",
        "3 V1600000000 N5 G0123456789abcdef0123456789abcdef\n",
    );
    env.baseline_with(&wait);
    env.md.deliver("", "1700000001.M2P2.host", HELLO);
    let evs = env.scan_with(&wait);
    assert_eq!(
        only(&evs, "MessageNew")["vnd.maildir.uidPending"],
        Value::Bool(true)
    );

    // Fetched by POP3 and deleted, or removed by a filter, before any
    // Dovecot sync: the consumer was told of it, so it must hear that it
    // is gone, and every event's uidset is a valid sequence set (checked
    // for each event by `check_envelope`).
    env.md.rm("", "new", "1700000001.M2P2.host");
    let evs = env.scan_with(&wait);
    let ev = only(&evs, "MessageExpunge");
    assert_eq!(
        ev["vnd.maildir.filenames"],
        serde_json::json!(["1700000001.M2P2.host"]),
        "{ev}"
    );
    assert_eq!(ev["vnd.maildir.unassigned"], 1, "{ev}");
    assert!(ev.get("uidset").is_none(), "no empty uidset: {ev}");
}

#[test]
fn a_uid_written_while_the_scan_waits_is_used() {
    let env = Env::new();
    env.md.write(
        "",
        "dovecot-uidlist",
        "3 V1600000000 N5 G0123456789abcdef0123456789abcdef\n",
    );
    env.baseline_with(&["--uid-wait-ms", "50"]);

    env.md.deliver("", "1700000001.M2P2.host", HELLO);
    let md = env.md.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        md.append("", "dovecot-uidlist", "7 :1700000001.M2P2.host\n");
    });
    let started = Instant::now();
    let evs = env.scan_with(&["--uid-wait-ms", "5000"]);
    writer.join().unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(4000),
        "waited the whole time"
    );
    let ev = only(&evs, "MessageNew");
    assert_eq!(s(ev, "uri"), message("INBOX", 1600000000, 7));
    assert!(
        ev.get("vnd.maildir.uidPending").is_none_or(|p| p == false),
        "{ev}"
    );
}

#[test]
fn own_uids_follow_dovecots_order_and_stay_across_runs() {
    let env = Env::new();
    // Dovecot's order: seconds, then the M<usec> number (5 before 40).
    env.md.put("", "cur", "1700000002.M40P1.host:2,R", "x\n");
    env.md.put("", "cur", "1700000002.M5P1.host:2,F", "x\n");
    env.md.put("", "cur", "1700000001.M99P1.host:2,S", "x\n");
    let evs = env.scan_with(&["--emit-existing"]);
    assert_eq!(kinds(&evs), ["MessageAppend"; 3], "{evs:#?}");
    let v = uidvalidity(&evs[0]);
    let by_flag: BTreeMap<&str, u32> = evs.iter().map(|e| (s(e, "flagNames"), uid(e))).collect();
    assert_eq!(
        by_flag,
        BTreeMap::from([("\\Seen", 1), ("\\Flagged", 2), ("\\Answered", 3)])
    );
    assert!(evs.iter().all(|e| uidvalidity(e) == v));

    // New files get the next UIDs, in the same order among themselves.
    env.md.put("", "new", "1700000003.M1P1.host", "later\n");
    env.md.put("", "new", "1700000000.M1P1.host", "earlier\n");
    let evs = env.scan();
    assert_eq!(kinds(&evs), ["MessageNew"; 2], "{evs:#?}");
    let by_size: BTreeMap<u64, String> = evs
        .iter()
        .map(|e| (n(e, "messageSize"), s(e, "uri").to_owned()))
        .collect();
    assert_eq!(
        by_size,
        BTreeMap::from([(9, message("INBOX", v, 4)), (7, message("INBOX", v, 5))])
    );

    env.md.mv(
        ("", "cur", "1700000002.M5P1.host:2,F"),
        ("", "cur", "1700000002.M5P1.host:2,FS"),
    );
    env.md.rm("", "cur", "1700000002.M40P1.host:2,R");
    let evs = env.scan();
    assert_eq!(evs.len(), 2, "{evs:#?}");
    let read = of(&evs, "MessageRead");
    assert_eq!(read.len(), 1, "{evs:#?}");
    assert_eq!(s(read[0], "uri"), mailbox("INBOX", v));
    assert_eq!(s(read[0], "uidset"), "2");
    let expunge = of(&evs, "MessageExpunge");
    assert_eq!(expunge.len(), 1, "{evs:#?}");
    assert_eq!(s(expunge[0], "uri"), mailbox("INBOX", v));
    assert_eq!(s(expunge[0], "uidset"), "3");
}

#[test]
fn message_size_is_w_from_the_name_else_the_size_with_crlf() {
    let env = Env::new();
    env.baseline();
    env.md
        .put("", "new", "1700000001.M1P1.host,S=10,W=9999", "0123456789");
    env.md.put("", "new", "1700000002.M1P1.host", "a\nb\r\nc\n");
    env.md.put("", "new", "1700000003.M1P1.host,S=5", "ab\ncd");
    env.md
        .put("", "cur", "1700000004.M1P1.host:2,S", "crlf only\r\n\r\n");
    env.md.put("", "new", "1700000005.M1P1.host", "");

    let evs = env.scan();
    assert_eq!(evs.len(), 5, "{evs:#?}");
    let sizes: BTreeMap<u32, u64> = evs.iter().map(|e| (uid(e), n(e, "messageSize"))).collect();
    assert_eq!(
        sizes,
        BTreeMap::from([(1, 9999), (2, 9), (3, 6), (4, 13), (5, 0)])
    );
}

#[test]
fn emit_existing_reports_the_sample_store_as_new() {
    let env = Env::sample();
    let evs = env.scan_with(&["--emit-existing", "--uid-wait-ms", "50"]);
    let root = &env.md.root;
    let size = |rel: &str| imap_size(&fs::read(root.join(rel)).unwrap());

    // Mailboxes are created before anything happens in them.
    let v_archive = uidvalidity(
        evs.iter()
            .find(|e| s(e, "uri").contains("/Archive.2024;"))
            .unwrap(),
    );
    let v_drafts = uidvalidity(
        evs.iter()
            .find(|e| s(e, "uri").contains("/Entw%C3%BCrfe;"))
            .unwrap(),
    );
    let created: Vec<&str> = of(&evs, "MailboxCreate")
        .iter()
        .map(|e| s(e, "uri"))
        .collect();
    assert_eq!(
        created.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            mailbox("Sent", 1700000001).as_str(),
            mailbox("Archive.2024", v_archive).as_str(),
            mailbox("Entw%C3%BCrfe", v_drafts).as_str(),
        ]),
        "{evs:#?}"
    );
    for (i, e) in evs.iter().enumerate() {
        if s(e, "event").starts_with("Message") {
            let create = evs
                .iter()
                .position(|c| s(c, "event") == "MailboxCreate" && s(c, "uri") == s(e, "mailboxID"));
            assert!(
                create.is_none_or(|c| c < i),
                "message event before its MailboxCreate: {e}"
            );
        }
    }

    // Every message, with its server's UID, flags and IMAP size.
    let mut got: Vec<(String, &str, BTreeSet<&str>, u64)> = evs
        .iter()
        .filter(|e| s(e, "event").starts_with("Message"))
        .map(|e| {
            (
                s(e, "uri").to_owned(),
                s(e, "event"),
                flags(e),
                n(e, "messageSize"),
            )
        })
        .collect();
    got.sort();
    let md5 = "d07923816012158d6c5f8f4d220153e3";
    let mut want = vec![
        (
            message("INBOX", 1700000000, 1),
            "MessageAppend",
            set(&["\\Seen"]),
            259,
        ),
        (
            message("INBOX", 1700000000, 2),
            "MessageAppend",
            set(&["\\Answered", "\\Seen"]),
            size("cur/1699990100.4242_1.laptop:2,RS"),
        ),
        (
            message("INBOX", 1700000000, 3),
            "MessageAppend",
            set(&["\\Flagged", "\\Seen", "$Junk"]),
            size("cur/1699990200.R4c1d2e3f4a5b6c7d.laptop:2,FSa"),
        ),
        (
            message("INBOX", 1700000000, 5),
            "MessageNew",
            set(&[]),
            size("new/1700000000.Vfe04I16e1M435392.mx.example.org"),
        ),
        (message("INBOX", 1700000000, 6), "MessageNew", set(&[]), 281),
        (
            message("Sent", 1700000001, 1),
            "MessageAppend",
            set(&["\\Seen"]),
            size(".Sent/cur/1700000200.4242_3.laptop,U=17:2,S"),
        ),
        (
            message("Sent", 1700000001, 2),
            "MessageAppend",
            set(&["\\Answered", "\\Seen"]),
            268,
        ),
        (
            message("Archive.2024", v_archive, 1),
            "MessageAppend",
            set(&["\\Seen", "\\Deleted"]),
            size(".Archive.2024/cur/1699000000.M9P1.old:2,ST"),
        ),
        (
            message("Archive.2024", v_archive, 2),
            "MessageAppend",
            set(&["\\Seen"]),
            size(
                ".Archive.2024/cur/1700000000.M12P345V0000000000000803I00000000001F2A3B_0.host,S=257:2,S",
            ),
        ),
        (
            message("Entw%C3%BCrfe", v_drafts, 1),
            "MessageNew",
            set(&[]),
            size(&format!(
                ".Entw&APw-rfe/new/1700000400_0.12345.laptop,U=5,FMD5={md5}:2,"
            )),
        ),
        (
            message("Entw%C3%BCrfe", v_drafts, 2),
            "MessageNew",
            set(&["\\Flagged"]),
            size(&format!(
                ".Entw&APw-rfe/new/1700000401_1.12345.laptop,U=6,FMD5={md5}:2,F"
            )),
        ),
    ];
    want.sort();
    assert_eq!(got, want);

    let inbox_new = evs
        .iter()
        .find(|e| s(e, "uri") == message("INBOX", 1700000000, 6))
        .unwrap();
    assert_eq!(
        n(inbox_new, "uidnext"),
        10,
        "max(N, last UID + 1) of dovecot-uidlist"
    );
    assert_eq!(n(inbox_new, "messages"), 5);

    assert_eq!(
        subscription_names(
            &of(&evs, "MailboxSubscribe")
                .into_iter()
                .cloned()
                .collect::<Vec<_>>()
        ),
        BTreeMap::from([(
            "MailboxSubscribe",
            BTreeSet::from(["Sent", "Archive.2024", "Entw%C3%BCrfe"])
        )])
    );
    assert_eq!(evs.len(), 3 + 11 + 3, "{:#?}", kinds(&evs));
    let seqs: Vec<u64> = evs.iter().map(|e| n(e, "vnd.maildir.seq")).collect();
    assert_eq!(seqs, (1..=17).collect::<Vec<_>>());

    let again = env.scan_with(&["--emit-existing", "--uid-wait-ms", "50"]);
    assert!(
        again.is_empty(),
        "--emit-existing only matters on the first run: {again:#?}"
    );
}

/// Expected `flagNames` of a real-world file name with no keywords file.
fn flags_in_name(name: &str) -> BTreeSet<&'static str> {
    let Some((_, info)) = name.split_once(':') else {
        return BTreeSet::new();
    };
    let Some(letters) = info.strip_prefix("2,") else {
        return BTreeSet::new();
    };
    let letters = letters.split(',').next().unwrap();
    letters
        .chars()
        .filter_map(|c| match c {
            'D' => Some("\\Draft"),
            'F' => Some("\\Flagged"),
            'R' => Some("\\Answered"),
            'S' => Some("\\Seen"),
            'T' => Some("\\Deleted"),
            _ => None,
        })
        .collect()
}

#[test]
fn real_world_file_names_are_one_message_each() {
    let list = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/names.txt"))
        .unwrap();
    let names: Vec<&str> = list.lines().filter(|l| !l.is_empty()).collect();
    assert!(names.len() >= 15);
    let env = Env::new();
    env.baseline();
    for name in &names {
        env.md.put("", "cur", name, "x\n");
    }
    // Files a reader must skip: dot-files, tmp/, directories.
    env.md.put("", "cur", ".nfs0000000001a2b3c400000001", "x\n");
    env.md.put("", "new", ".1700000100.M1P1.host", "x\n");
    env.md.put("", "tmp", "1700000101.M1P1.host", "x\n");
    fs::create_dir(env.md.path("", "cur", "1700000102.M1P1.host")).unwrap();

    let evs = env.scan();
    // In cur/: MessageAppend when the name carries flags, else MessageNew
    // (a delivery already moved out of new/).
    let want: Vec<&str> = names
        .iter()
        .map(|name| {
            let letters = name
                .split_once(":2,")
                .map_or("", |(_, l)| l.split(',').next().unwrap());
            if letters.is_empty() {
                "MessageNew"
            } else {
                "MessageAppend"
            }
        })
        .collect();
    assert_eq!(kinds(&evs), want, "{evs:#?}");
    let v = uidvalidity(&evs[0]);
    // names.txt is in Dovecot's UID order (by seconds).
    for (i, (ev, name)) in evs.iter().zip(&names).enumerate() {
        assert_eq!(s(ev, "uri"), message("INBOX", v, i as u32 + 1), "{name}");
        assert_eq!(flags(ev), flags_in_name(name), "{name}");
        let w = name
            .split_once(",W=")
            .map(|(_, w)| w.split([':', ',']).next().unwrap().parse::<u64>().unwrap());
        assert_eq!(n(ev, "messageSize"), w.unwrap_or(3), "{name}");
    }

    for name in &names {
        env.md.rm("", "cur", name);
    }
    let evs = env.scan();
    assert_eq!(
        s(only(&evs, "MessageExpunge"), "uidset"),
        format!("1:{}", names.len())
    );
}

#[test]
fn other_info_separators() {
    for sep in [";", "!"] {
        let env = Env::new();
        let opt = ["--info-separator", sep];
        env.md
            .put("", "cur", format!("1700000001.M1P1.host{sep}2,S"), "x\n");
        env.md.put("", "new", "1700000002.M1P1.host", "x\n");
        env.baseline_with(&opt);

        fs::rename(
            env.md
                .path("", "cur", format!("1700000001.M1P1.host{sep}2,S")),
            env.md
                .path("", "cur", format!("1700000001.M1P1.host{sep}2,FS")),
        )
        .unwrap();
        fs::rename(
            env.md.path("", "new", "1700000002.M1P1.host"),
            env.md
                .path("", "cur", format!("1700000002.M1P1.host{sep}2,")),
        )
        .unwrap();
        env.md
            .put("", "cur", format!("1700000003.M1P1.host{sep}2,T"), "x\n");
        let evs = env.scan_with(&opt);
        assert_eq!(
            kinds(&evs),
            ["MessageAppend", "FlagsSet"],
            "{sep}: {evs:#?}"
        );
        assert_eq!(uid(&evs[0]), 3, "{sep}");
        assert_eq!(flags(&evs[0]), set(&["\\Deleted"]), "{sep}");
        assert_eq!(s(&evs[1], "uidset"), "1", "{sep}");
        assert_eq!(flags(&evs[1]), set(&["\\Flagged"]), "{sep}");
    }
}

// =========================================================== multi-user

#[test]
fn many_users_are_reported_in_the_order_they_were_found() {
    // Users are listed on two threads, chunk by chunk; their events must
    // still come in the order the users were found (sorted), each user's
    // exactly once, with sequence numbers rising.
    let tmp = TempDir::new().unwrap();
    let base = tmp.path().join("vmail");
    let template = format!("{}/{{domain}}/{{local}}/Maildir", base.display());
    let state = tmp.path().join("state");
    let scan = || -> Vec<Value> { Run::of(scan_command(&state, &["--store", &template])).events() };
    let users: Vec<String> = (0..150).map(|i| format!("u{i:03}")).collect();
    let stores: Vec<Maildir> = users
        .iter()
        .map(|u| Maildir::create(base.join(format!("example.org/{u}/Maildir"))))
        .collect();
    assert!(scan().is_empty(), "first run is a baseline");
    for (i, md) in stores.iter().enumerate() {
        // Every third user gets nothing: unchanged users between changed ones.
        if i % 3 != 1 {
            md.deliver("", format!("17000000{i:02}.M1P1.host"), HELLO);
            md.deliver("", format!("17000001{i:02}.M1P1.host"), HELLO);
        }
    }
    let evs = scan();
    let got: Vec<&str> = evs.iter().map(|e| s(e, "user")).collect();
    let want: Vec<String> = users
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 1)
        .flat_map(|(_, u)| [format!("{u}@example.org"), format!("{u}@example.org")])
        .collect();
    assert_eq!(got, want);
    assert!(evs.iter().all(|e| s(e, "event") == "MessageNew"));
    let seqs: Vec<u64> = evs
        .iter()
        .map(|e| e["vnd.maildir.seq"].as_u64().expect("a sequence number"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(scan().is_empty(), "nothing left to report");
}

#[test]
fn a_user_with_thousands_of_arrivals_is_written_as_they_are_made() {
    // More changes than the writer makes at once (10,000): that user is
    // committed on its own, its events numbered and written in chunks,
    // between the users before and after it, each event exactly once.
    let tmp = TempDir::new().unwrap();
    let base = tmp.path().join("vmail");
    let template = format!("{}/{{domain}}/{{local}}/Maildir", base.display());
    let state = tmp.path().join("state");
    let scan = || -> Vec<Value> { Run::of(scan_command(&state, &["--store", &template])).events() };
    let stores: Vec<Maildir> = ["a", "b", "c"]
        .iter()
        .map(|u| Maildir::create(base.join(format!("example.org/{u}/Maildir"))))
        .collect();
    assert!(scan().is_empty(), "first run is a baseline");
    let many = 12_003;
    stores[0].deliver("", "1700000001.M1P1.host", HELLO);
    for i in 0..many {
        stores[1].put("", "new", format!("1700000002.M{i}P1.host"), "x\n");
    }
    stores[2].deliver("", "1700000003.M1P1.host", HELLO);
    let evs = scan();
    assert_eq!(evs.len(), many + 2);
    assert!(evs.iter().all(|e| s(e, "event") == "MessageNew"));
    let users: Vec<&str> = evs.iter().map(|e| s(e, "user")).collect();
    assert_eq!(users[0], "a@example.org");
    assert!(users[1..=many].iter().all(|u| *u == "b@example.org"));
    assert_eq!(users[many + 1], "c@example.org");
    let uids: Vec<u32> = evs[1..=many].iter().map(uid).collect();
    assert_eq!(uids, (1..=many as u32).collect::<Vec<_>>());
    let seqs: Vec<u64> = evs
        .iter()
        .map(|e| e["vnd.maildir.seq"].as_u64().expect("a sequence number"))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "sequence numbers rise"
    );
    let ids: std::collections::HashSet<&str> =
        evs.iter().map(|e| s(e, "vnd.maildir.eventId")).collect();
    assert_eq!(ids.len(), evs.len(), "every event id once");
    assert!(scan().is_empty(), "nothing left to report");
}

#[test]
fn a_user_reached_through_two_sources_is_reported_once() {
    // Two templates that both find alice: the second listing of her
    // Maildir must read the snapshot the first one committed, not the
    // one from before the run, or her delivery is reported twice.
    let tmp = TempDir::new().unwrap();
    let base = tmp.path().join("vmail");
    let first = format!("{}/{{domain}}/{{local}}/Maildir", base.display());
    let second = format!("{}/{{domain}}/{{local}}/./Maildir", base.display());
    let state = tmp.path().join("state");
    let scan = || -> Vec<Value> {
        Run::of(scan_command(
            &state,
            &["--store", &first, "--store", &second],
        ))
        .events()
    };
    // One user only: both of her reads fall in one read transaction of
    // the lister, which must end when the second source begins.
    let alice = Maildir::create(base.join("example.org/alice/Maildir"));
    alice.deliver("", "1700000001.M1P1.host", HELLO);
    assert!(scan().is_empty(), "first run is a baseline");
    alice.deliver("", "1700000002.M1P1.host", HELLO);
    let evs = scan();
    assert_eq!(kinds(&evs), ["MessageNew"], "{evs:#?}");
    assert_eq!(s(&evs[0], "user"), "alice@example.org");
    assert_eq!(uid(&evs[0]), 2);
    assert!(scan().is_empty(), "nothing left to report");
}

#[test]
fn a_store_template_reports_every_user_and_users_who_appear_later() {
    let tmp = TempDir::new().unwrap();
    let base = tmp.path().join("vmail");
    let template = format!("{}/{{domain}}/{{local}}/Maildir", base.display());
    let state = tmp.path().join("state");
    let scan = || -> Vec<Value> {
        let evs = Run::of(scan_command(&state, &["--store", &template])).events();
        for e in &evs {
            let user = s(e, "user");
            let (local, domain) = user
                .split_once('@')
                .unwrap_or_else(|| panic!("user {user:?} is not local@domain"));
            assert!(
                s(e, "uri").starts_with(&format!("imap://{local}%40{domain}@{SERVER}/")),
                "{e}"
            );
        }
        evs
    };
    let alice = Maildir::create(base.join("example.org/alice/Maildir"));
    let bob = Maildir::create(base.join("example.net/bob/Maildir"));
    alice.deliver("", "1700000001.M1P1.host", HELLO);
    assert!(
        scan().is_empty(),
        "first run over the template is a baseline"
    );

    alice.deliver("", "1700000002.M1P1.host", HELLO);
    bob.deliver("", "1700000003.M1P1.host", HELLO);
    let evs = scan();
    assert_eq!(kinds(&evs), ["MessageNew", "MessageNew"], "{evs:#?}");
    let by_user: BTreeMap<&str, u32> = evs.iter().map(|e| (s(e, "user"), uid(e))).collect();
    assert_eq!(
        by_user,
        BTreeMap::from([("alice@example.org", 2), ("bob@example.net", 1)])
    );

    // A user created later is reported in full.
    let carol = Maildir::create(base.join("example.org/carol/Maildir"));
    carol.folder(".Sent");
    carol.deliver("", "1700000004.M1P1.host", HELLO);
    carol.put(".Sent", "cur", "1700000005.M1P1.host:2,S", "x\n");
    carol.write("", "subscriptions", "V\t2\n\nSent\n");
    let evs = scan();
    assert!(
        evs.iter().all(|e| s(e, "user") == "carol@example.org"),
        "{evs:#?}"
    );
    let mut got = kinds(&evs);
    got.sort();
    assert_eq!(
        got,
        [
            "MailboxCreate",
            "MailboxSubscribe",
            "MessageAppend",
            "MessageNew"
        ],
        "{evs:#?}"
    );
    let create = one(&evs, "MailboxCreate");
    assert!(s(create, "uri").starts_with(&format!(
        "imap://carol%40example.org@{SERVER}/Sent;UIDVALIDITY="
    )));
    assert!(scan().is_empty());
}

#[test]
fn a_known_user_missing_under_a_template_warns_and_returns_quietly() {
    let tmp = TempDir::new().unwrap();
    let base = tmp.path().join("vmail");
    let template = format!("{}/{{domain}}/{{local}}/Maildir", base.display());
    let state = tmp.path().join("state");
    let run = || Run::of(scan_command(&state, &["--store", &template]));
    let alice = Maildir::create(base.join("example.org/alice/Maildir"));
    let bob = Maildir::create(base.join("example.org/bob/Maildir"));
    bob.put("", "cur", "1700000001.M1P1.host:2,S", "x\n");
    assert!(run().events().is_empty());

    let away = tmp.path().join("bob-unmounted");
    fs::rename(&bob.root, &away).unwrap();
    alice.deliver("", "1700000002.M1P1.host", HELLO);
    let out = run();
    let evs = out.events();
    assert_eq!(s(only(&evs, "MessageNew"), "user"), "alice@example.org");

    // Back again: bob is known, so this is neither a new user nor news.
    fs::rename(&away, &bob.root).unwrap();
    let evs = run().events();
    assert!(evs.is_empty(), "{evs:#?}");

    assert!(
        out.stderr.contains(&*bob.root.to_string_lossy()),
        "a known user's missing Maildir deserves a warning naming {}:\n{}",
        bob.root.display(),
        out.stderr
    );
}

#[test]
fn a_source_added_later_starts_with_a_baseline() {
    let tmp = TempDir::new().unwrap();
    let state = tmp.path().join("state");
    let alice = Maildir::create(tmp.path().join("alice/Maildir"));
    let bob = Maildir::create(tmp.path().join("bob/Maildir"));
    bob.deliver("", "1700000001.M1P1.host", HELLO);
    let run = |mds: &[&Maildir]| {
        let mut c = scan_command(&state, &[]);
        for md in mds {
            c.arg(&md.root);
        }
        Run::of(c).events()
    };
    assert!(run(&[&alice]).is_empty());
    alice.deliver("", "1700000002.M1P1.host", HELLO);
    bob.deliver("", "1700000003.M1P1.host", HELLO);
    // bob's Maildir is a new source: its first run is a baseline.
    let evs = run(&[&alice, &bob]);
    let ev = only(&evs, "MessageNew");
    assert_eq!(
        s(ev, "user"),
        "alice",
        "the user is the directory holding Maildir"
    );
    assert!(
        s(ev, "uri").starts_with(&format!("imap://alice@{SERVER}/INBOX;")),
        "{ev}"
    );

    bob.deliver("", "1700000004.M1P1.host", HELLO);
    let evs = run(&[&alice, &bob]);
    let ev = only(&evs, "MessageNew");
    assert_eq!(s(ev, "user"), "bob");
    assert_eq!(uid(ev), 3);
}

#[test]
fn timestamps_carry_the_local_offset() {
    let env = Env::new();
    env.baseline();
    env.md.deliver("", "1700000001.M1P1.host", HELLO);
    let out = Run::of(env.command("scan", &[]).env("TZ", "XYZ-5:30"));
    let evs = out.events();
    let ts = s(only(&evs, "MessageNew"), "timestamp");
    assert!(ts.ends_with("+05:30"), "{ts}");
}

// =========================================================== robustness

#[test]
fn non_utf8_file_and_folder_names() {
    let env = Env::new();
    env.baseline();
    let file = OsStr::from_bytes(b"1700000001.M1P1.h\xe9st");
    let folder = OsStr::from_bytes(b".Caf\xe9");
    env.md.deliver("", file, HELLO);
    env.md.folder(folder);
    env.md.put(
        folder,
        "cur",
        OsStr::from_bytes(b"1700000002.M1P1.caf\xe9:2,S"),
        "x\n",
    );

    let evs = env.scan();
    let mut got = kinds(&evs);
    got.sort();
    assert_eq!(
        got,
        ["MailboxCreate", "MessageAppend", "MessageNew"],
        "{evs:#?}"
    );
    let new = of(&evs, "MessageNew")[0];
    assert_eq!(s(new, "uri"), message("INBOX", uidvalidity(new), 1));
    assert_eq!(n(new, "messageSize"), 22);

    // The same file, read and then expunged.
    let mut read = file.to_os_string();
    read.push(":2,S");
    fs::rename(env.md.path("", "new", file), env.md.path("", "cur", &read)).unwrap();
    let evs = env.scan();
    assert_eq!(s(only(&evs, "MessageRead"), "uidset"), "1");
    env.md.rm("", "cur", &read);
    let evs = env.scan();
    assert_eq!(s(only(&evs, "MessageExpunge"), "uidset"), "1");
    fs::remove_dir_all(env.md.dir(folder)).unwrap();
    let evs = env.scan();
    only(&evs, "MailboxDelete");
}

#[test]
fn files_removed_between_scans() {
    let env = Env::new();
    env.md.deliver("", "1700000001.M1P1.host", HELLO);
    env.md.deliver("", "1700000002.M1P1.host", HELLO);
    env.baseline();

    // Gone before it was ever seen: no message at all.
    env.md.deliver("", "1700000003.M1P1.host", HELLO);
    env.md.rm("", "new", "1700000003.M1P1.host");
    // Read and removed between two scans: only the expunge is news.
    env.md.mv(
        ("", "new", "1700000001.M1P1.host"),
        ("", "cur", "1700000001.M1P1.host:2,S"),
    );
    env.md.rm("", "cur", "1700000001.M1P1.host:2,S");
    let evs = env.scan();
    assert_eq!(s(only(&evs, "MessageExpunge"), "uidset"), "1");
}

#[test]
fn files_that_come_and_go_during_scans_are_reported_consistently() {
    let env = Env::new();
    env.baseline();
    let md = env.md.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let churn = std::thread::spawn(move || {
        let mut i = 0u32;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let name = format!("1700{i:06}.M{i}P1.host");
            md.deliver("", &name, HELLO);
            if i.is_multiple_of(3) {
                md.mv(("", "new", &name), ("", "cur", &format!("{name}:2,S")));
                md.rm("", "cur", format!("{name}:2,S"));
            } else {
                md.rm("", "new", &name);
            }
            i += 1;
        }
    });
    let mut all = Vec::new();
    let until = Instant::now() + Duration::from_millis(600);
    while Instant::now() < until {
        all.extend(env.scan());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.join().unwrap();
    all.extend(env.scan());

    // Every file is gone now: each message reported new must be expunged
    // exactly once, and nothing else may name an unknown UID.
    let mut arrived: BTreeMap<u32, u32> = BTreeMap::new();
    let mut expunged: BTreeMap<u32, u32> = BTreeMap::new();
    for e in &all {
        match s(e, "event") {
            "MessageNew" | "MessageAppend" => *arrived.entry(uid(e)).or_default() += 1,
            "MessageExpunge" => {
                for u in uids(s(e, "uidset")) {
                    assert!(
                        arrived.contains_key(&u),
                        "expunge of UID {u} never reported: {e}"
                    );
                    *expunged.entry(u).or_default() += 1;
                }
            }
            "MessageRead" => {
                for u in uids(s(e, "uidset")) {
                    assert!(
                        arrived.contains_key(&u),
                        "read of UID {u} never reported: {e}"
                    );
                }
            }
            other => panic!("unexpected {other}: {e}"),
        }
    }
    assert!(
        arrived.values().all(|&c| c == 1),
        "a UID arrived twice: {arrived:?}"
    );
    assert_eq!(arrived, expunged, "every arrival must be expunged once");
    env.quiet();
}

#[test]
fn an_unreadable_folder_keeps_its_snapshot_and_the_rest_is_reported() {
    let env = Env::new();
    env.md.folder(".Private");
    env.md
        .put(".Private", "cur", "1700000001.M1P1.host:2,S", "x\n");
    env.md
        .put(".Private", "cur", "1700000002.M1P1.host:2,S", "x\n");
    let as_root = whoami_is_root();
    // Root reads everything: run the binary as nobody, on a store it can
    // read except for the one folder, with a state directory it owns. The
    // binary is copied beside the store, as the build directory may be
    // closed to nobody (a checkout in /root).
    fs::set_permissions(env.tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let bin = env.tmp.path().join("maildir-events");
    if as_root {
        fs::copy(BIN, &bin).unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let run = |args: &[&str]| -> Run {
        let mut c = env.command("scan", args);
        if as_root {
            let inner = c;
            c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&bin)
                .args(inner.get_args());
        }
        Run::of(c)
    };
    fs::create_dir(&env.state).unwrap();
    if as_root {
        std::os::unix::fs::chown(&env.state, Some(65534), Some(65534)).unwrap();
    }
    assert!(run(&[]).events().is_empty());

    let private = env.md.dir(".Private");
    fs::set_permissions(
        &private,
        fs::Permissions::from_mode(if as_root { 0o700 } else { 0o000 }),
    )
    .unwrap();
    env.md.rm(".Private", "cur", "1700000001.M1P1.host:2,S");
    env.md.deliver("", "1700000003.M1P1.host", HELLO);
    let out = run(&[]);
    let evs = out.events();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o755)).unwrap();
    let ev = only(&evs, "MessageNew");
    assert_eq!(s(ev, "uri"), message("INBOX", uidvalidity(ev), 1));
    assert!(
        out.stderr.contains(&*private.to_string_lossy()),
        "the warning should name {}:\n{}",
        private.display(),
        out.stderr
    );

    // Readable again: the change made meanwhile is reported now.
    let evs = run(&[]).events();
    let ev = only(&evs, "MessageExpunge");
    assert_eq!(s(ev, "mailboxID"), mailbox("Private", uidvalidity(ev)));
    assert_eq!(s(ev, "uidset"), "1");

    // The whole Maildir unreadable: nothing is reported, nothing lost.
    let root = env.md.root.clone();
    fs::set_permissions(
        &root,
        fs::Permissions::from_mode(if as_root { 0o700 } else { 0o000 }),
    )
    .unwrap();
    env.md.rm("", "new", "1700000003.M1P1.host");
    let out = run(&[]);
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    assert!(
        out.events().is_empty(),
        "an unreadable store is no mass expunge"
    );
    assert!(
        out.stderr.contains(&*root.to_string_lossy()),
        "{}",
        out.stderr
    );
    let evs = run(&[]).events();
    assert_eq!(s(only(&evs, "MessageExpunge"), "uidset"), "1");
}

#[test]
fn a_symlinked_folder_is_not_followed() {
    let env = Env::new();
    let outside = Maildir::create(env.tmp.path().join("elsewhere"));
    outside.deliver("", "1700000001.M1P1.host", HELLO);
    outside.put("", "cur", "1700000002.M1P1.host:2,S", "x\n");
    env.baseline();

    let link = env.md.dir(".Evil");
    std::os::unix::fs::symlink(&outside.root, &link).unwrap();
    let out = env.run(&[]);
    let evs = out.events();
    assert!(
        evs.is_empty(),
        "nothing behind the link may be reported: {evs:#?}"
    );
    assert!(
        out.stderr.contains(&*link.to_string_lossy()),
        "the warning should name {}:\n{}",
        link.display(),
        out.stderr
    );
}

#[test]
fn a_garbage_dovecot_uidlist_warns_and_events_still_come() {
    let env = Env::new();
    env.md.write(
        "",
        "dovecot-uidlist",
        b"\x00\x01garbage\xff\xfe\nnot a record at all\n",
    );
    env.baseline();

    env.md.deliver("", "1700000001.M1P1.host", HELLO);
    let out = env.run(&[]);
    let evs = out.events();
    let ev = only(&evs, "MessageNew");
    assert!(s(ev, "uri").contains("/INBOX;UIDVALIDITY="), "{ev}");
    assert!(
        out.stderr
            .contains(&*env.md.root.join("dovecot-uidlist").to_string_lossy()),
        "expected a warning naming the uidlist:\n{}",
        out.stderr
    );
}

#[test]
fn a_missing_maildir_of_a_known_user_warns_and_reports_nothing() {
    let env = Env::new();
    env.md.put("", "cur", "1700000001.M1P1.host:2,S", "x\n");
    env.md.folder(".Sent");
    env.baseline();

    let away = env.tmp.path().join("unmounted");
    fs::rename(&env.md.root, &away).unwrap();
    let out = env.run(&[]);
    assert!(
        out.events().is_empty(),
        "an unmounted store is no mass expunge"
    );
    assert!(
        out.stderr.contains(&*env.md.root.to_string_lossy()),
        "the warning should name {}:\n{}",
        env.md.root.display(),
        out.stderr
    );
    fs::rename(&away, &env.md.root).unwrap();
    env.quiet();
}

#[test]
fn a_corrupt_state_file_exits_65_and_names_it() {
    let env = Env::new();
    env.baseline();
    let db = env.state.join("state.sqlite3");
    for side in ["state.sqlite3-wal", "state.sqlite3-shm"] {
        let _ = fs::remove_file(env.state.join(side));
    }
    fs::write(&db, vec![0xa5u8; 8192]).unwrap();
    env.run(&[]).fails_naming(65, &db.to_string_lossy());
}

#[test]
fn a_foreign_sqlite_file_exits_65_and_names_it() {
    let env = Env::new();
    fs::create_dir(&env.state).unwrap();
    let db = env.state.join("state.sqlite3");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("CREATE TABLE notes(id INTEGER PRIMARY KEY, text TEXT); INSERT INTO notes(text) VALUES ('mine');")
        .unwrap();
    drop(conn);
    let before = fs::read(&db).unwrap();
    env.run(&[]).fails_naming(65, &db.to_string_lossy());
    assert_eq!(
        fs::read(&db).unwrap(),
        before,
        "a foreign file must not be changed"
    );
}

#[test]
fn a_locked_state_exits_75() {
    use std::os::fd::AsRawFd;
    let env = Env::new();
    env.baseline();
    let lock = fs::OpenOptions::new()
        .write(true)
        .open(env.state.join("lock"))
        .unwrap();
    // SAFETY: flock(2) on a descriptor this test owns.
    assert_eq!(
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    env.md.deliver("", "1700000001.M1P1.host", HELLO);
    env.run(&[]).fails_naming(75, &env.state.to_string_lossy());
    drop(lock);
    only(&env.scan(), "MessageNew");
}

#[test]
fn bad_configuration_and_usage_exit_codes() {
    let env = Env::new();
    let tmp = env.tmp.path();
    let run = |args: &[&str]| Run::of(scan_command(&env.state, args));
    let nope = format!("{}/{{nope}}/Maildir", tmp.display());
    run(&["--store", &nope]).fails_naming(78, "{nope}");
    let root = env.md.root.to_str().unwrap();
    run(&["--user", USER, root, root]).fails_naming(78, "--user");
    run(&[]).fails_naming(78, "nothing to scan");
    // A bad value on the command line is a usage error; in the file, a
    // configuration error.
    let out = run(&["--info-separator", "::", root]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--info-separator"), "{out:?}");
    let conf = tmp.join("sep.toml");
    fs::write(&conf, "info_separator = \"::\"\n").unwrap();
    run(&["--config", conf.to_str().unwrap(), root]).fails_naming(78, "--info-separator");

    let out = run(&["--no-such-option", root]);
    assert_eq!(out.code, Some(2), "{out:?}");

    // A state directory below a regular file cannot be created.
    let file = tmp.join("a-file");
    fs::write(&file, "x").unwrap();
    let bad_state = file.join("state");
    let out = Run::of(
        Command::new(BIN)
            .args(["scan", "--state"])
            .arg(&bad_state)
            .args(["--user", USER])
            .arg(&env.md.root),
    );
    out.fails_naming(73, &bad_state.to_string_lossy());
}

// ============================================================ no writes

#[test]
fn scans_never_write_into_the_store() {
    let env = Env::sample();
    let root = env.md.root.clone();
    let check = |args: &[&str]| -> usize {
        let before = fingerprint(&root);
        let evs = env.scan_with(args);
        let after = fingerprint(&root);
        assert_eq!(before, after, "the scan changed the store");
        evs.len()
    };
    assert!(check(&["--emit-existing", "--uid-wait-ms", "50"]) > 0);

    // Changes of every kind, each scan producing events.
    let md = &env.md;
    md.mv(
        ("", "new", "1700000000.Vfe04I16e1M435392.mx.example.org"),
        (
            "",
            "cur",
            "1700000000.Vfe04I16e1M435392.mx.example.org:2,FS",
        ),
    );
    md.rm("", "cur", "1699990100.4242_1.laptop:2,RS");
    md.deliver("", "1700000500.M1P1.host", HELLO);
    md.folder(".New");
    md.put(".New", "cur", "1700000501.M1P1.host:2,S", "x\n");
    fs::rename(md.dir(".Archive.2024"), md.dir(".Archive.2023")).unwrap();
    md.write("", "subscriptions", "V\t2\n\nSent\nNew\n");
    assert!(check(&["--uid-wait-ms", "50"]) > 0);
    assert!(check(&["--full", "--uid-wait-ms", "50"]) == 0);
}

// ======================================================= crash safety

/// A store with `count` messages in `new/`, and the UIDs they must get.
fn big_store(env: &Env, count: u32) {
    for i in 0..count {
        env.md.put(
            "",
            "new",
            format!("{}.M{i}P1.host", 1_700_000_000 + i),
            format!("Subject: {i}\n\nbody {i}\n"),
        );
    }
}

/// The complete lines of some output (a line cut by a kill is dropped).
fn complete_lines(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    if lines.last().is_some_and(|l| !l.ends_with('\n')) {
        lines.pop();
    }
    lines
        .into_iter()
        .map(|l| l.trim_end_matches('\n').to_owned())
        .collect()
}

/// Checks that `first` (cut short) and `second` together report every
/// one of `count` messages exactly once by event id, numbered 1..=count,
/// with repeated events repeated byte for byte.
fn check_redelivery(first: &[String], second: &[String], count: u32) {
    let mut by_id: BTreeMap<String, String> = BTreeMap::new();
    for line in second {
        let ev: Value = serde_json::from_str(line).unwrap();
        check_envelope(&ev);
        let prev = by_id.insert(s(&ev, "vnd.maildir.eventId").to_owned(), line.clone());
        assert!(prev.is_none(), "one run printed an event twice: {line}");
    }
    for line in first {
        let ev: Value = serde_json::from_str(line).unwrap();
        let id = s(&ev, "vnd.maildir.eventId");
        match by_id.get(id) {
            Some(again) => assert_eq!(again, line, "a repeated event must be the same"),
            None => {
                by_id.insert(id.to_owned(), line.clone());
            }
        }
    }
    let events: Vec<Value> = by_id
        .values()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        events.len(),
        count as usize,
        "every event exactly once by id"
    );
    let mut seqs: Vec<u64> = events.iter().map(|e| n(e, "vnd.maildir.seq")).collect();
    seqs.sort();
    assert_eq!(
        seqs,
        (1..=u64::from(count)).collect::<Vec<_>>(),
        "seq must have no gap"
    );
    let mut got: Vec<u32> = events
        .iter()
        .map(|e| {
            assert_eq!(s(e, "event"), "MessageNew", "{e}");
            uid(e)
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        (1..=count).collect::<Vec<_>>(),
        "every message exactly once"
    );
}

#[test]
fn killed_while_writing_then_rerun_repeats_with_the_same_ids() {
    const COUNT: u32 = 600;
    let env = Env::new();
    big_store(&env, COUNT);
    let stderr = fs::File::create(env.tmp.path().join("stderr")).unwrap();
    let mut child = env
        .command("scan", &["--emit-existing"])
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    // The first line proves the events were committed (they are delivered
    // from the outbox); the rest fills the pipe and blocks the writer.
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.ends_with('\n'), "no output: {first:?}");

    // A second scan on the same state meanwhile is refused.
    env.run(&[]).fails_naming(75, &env.state.to_string_lossy());

    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the scan should still be blocked on the full pipe"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let mut rest = Vec::new();
    out.read_to_end(&mut rest).unwrap();
    let mut all = first.into_bytes();
    all.extend(rest);
    let first_run = complete_lines(&all);
    assert!(
        !first_run.is_empty() && first_run.len() < COUNT as usize,
        "{} lines",
        first_run.len()
    );

    let second = env.run(&[]);
    let second_run: Vec<String> = {
        assert_eq!(second.code, Some(0), "{}", second.stderr);
        second.stdout.lines().map(str::to_owned).collect()
    };
    check_redelivery(&first_run, &second_run, COUNT);
    env.quiet();
}

#[test]
fn a_closed_output_exits_74_and_the_next_run_prints_the_rest() {
    const COUNT: u32 = 600;
    let env = Env::new();
    big_store(&env, COUNT);
    let stderr_path = env.tmp.path().join("stderr");
    let mut child = env
        .command("scan", &["--emit-existing"])
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let first = {
        // `| head -1`: read one line, then close the pipe.
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        line.trim_end().to_owned()
    };
    let status = child.wait().unwrap();
    let stderr = fs::read_to_string(&stderr_path).unwrap();
    assert_eq!(status.code(), Some(74), "{stderr}");
    assert!(
        stderr.starts_with("maildir-events:") || stderr.contains("\nmaildir-events:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("outbox"),
        "the message should say the events were kept: {stderr}"
    );

    // The next run prints what was kept first, then what is new.
    env.md.deliver("", "1800000000.M1P1.host", HELLO);
    let second = env.run(&[]);
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    let second_run: Vec<String> = second.stdout.lines().map(str::to_owned).collect();
    let seqs: Vec<u64> = parse_lines(&second.stdout)
        .iter()
        .map(|e| n(e, "vnd.maildir.seq"))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "out of order: {seqs:?}"
    );
    check_redelivery(std::slice::from_ref(&first), &second_run, COUNT + 1);
    env.quiet();
}

#[test]
fn a_full_output_device_exits_74_and_the_next_run_prints_everything() {
    let env = Env::new();
    env.baseline();
    env.md.deliver("", "1700000001.M1P1.host", HELLO);
    env.md.deliver("", "1700000002.M1P1.host", HELLO);
    let full = fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Run::of(env.command("scan", &[]).stdout(full));
    out.fails_naming(74, "outbox");
    let evs = env.scan();
    assert_eq!(kinds(&evs), ["MessageNew", "MessageNew"], "{evs:#?}");
    assert_eq!(evs.iter().map(uid).collect::<Vec<_>>(), [1, 2]);
    env.quiet();
}

/// `--shard K/N`: three instances with their own state, each taking a third
/// of the users of one store, report together exactly what one instance
/// reports (event ids, sequence numbers, times and our own UIDVALIDITYs
/// aside), and no user is taken by two shards.
#[test]
fn three_shards_report_together_what_one_instance_reports() {
    let tmp = TempDir::new().unwrap();
    let vmail = tmp.path().join("vmail");
    let users: Vec<Maildir> = (0..30)
        .map(|i| {
            let md = Maildir::create(vmail.join(format!("user{i}/Maildir")));
            md.folder(".Work");
            md.put(
                "",
                "cur",
                format!("1600000000.M{i}P1.host:2,"),
                "Subject: a\n\nb\n",
            );
            md.put(
                ".Work",
                "cur",
                format!("1600000001.M{i}P1.host:2,S"),
                "Subject: c\n\nd\n",
            );
            md
        })
        .collect();
    let template = format!("{}/{{user}}/Maildir", vmail.display());
    let shards = ["1/3", "2/3", "3/3"];
    let run = |state: &str, shard: Option<&str>| -> Vec<Value> {
        let mut args = vec!["--store", template.as_str()];
        if let Some(k) = shard {
            args.extend(["--shard", k]);
        }
        let out = scan_command(&tmp.path().join(state), &args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{shard:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        parse_lines(&String::from_utf8_lossy(&out.stdout))
    };
    // What can differ between instances: numbering, ids, times, and the
    // UIDVALIDITY we make up (the time of a folder's first sight).
    let normal = |ev: &Value| -> String {
        let mut ev = ev.clone();
        let m = ev.as_object_mut().unwrap();
        for k in ["vnd.maildir.seq", "vnd.maildir.eventId", "timestamp", "pid"] {
            m.remove(k);
        }
        let text = serde_json::to_string(&ev).unwrap();
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("UIDVALIDITY=") {
            out.push_str(&rest[..i + 12]);
            rest = rest[i + 12..].trim_start_matches(|c: char| c.is_ascii_digit());
            out.push('*');
        }
        out.push_str(rest);
        out
    };
    let baseline = run("single", None);
    assert!(baseline.is_empty(), "{baseline:#?}");
    for k in shards {
        assert!(run(&format!("shard{}", &k[..1]), Some(k)).is_empty());
    }

    // Changes spread over every user: deliveries, flags, expunges, folders.
    for (i, md) in users.iter().enumerate() {
        md.deliver("", format!("1700000000.M{i}P2.host"), HELLO);
        if i % 2 == 0 {
            md.mv(
                ("", "cur", &format!("1600000000.M{i}P1.host:2,")),
                ("", "cur", &format!("1600000000.M{i}P1.host:2,S")),
            );
        }
        if i % 3 == 0 {
            md.rm(".Work", "cur", format!("1600000001.M{i}P1.host:2,S"));
        }
        if i % 5 == 0 {
            md.folder(".New");
            md.deliver(".New", format!("1700000001.M{i}P3.host"), HELLO);
        }
    }
    let single = run("single", None);
    let parts: Vec<Vec<Value>> = shards
        .iter()
        .map(|k| run(&format!("shard{}", &k[..1]), Some(k)))
        .collect();
    assert!(single.len() >= 30 + 15 + 10 + 12, "{}", single.len());
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    for (k, evs) in parts.iter().enumerate() {
        assert!(!evs.is_empty(), "shard {} took no user", k + 1);
        for ev in evs {
            let user = s(ev, "user").to_string();
            let first = *owner.entry(user.clone()).or_insert(k);
            assert_eq!(first, k, "{user} is in two shards");
        }
    }
    let mut union: Vec<String> = parts.iter().flatten().map(normal).collect();
    let mut one: Vec<String> = single.iter().map(normal).collect();
    union.sort();
    one.sort();
    assert_eq!(union, one);
    assert_eq!(owner.len(), 30);
}
