//! Binary-level tests of `maildir-events watch`, the live mode.
//!
//! Each test builds a Maildir in a temporary directory, starts the watcher
//! with its own state directory and an sd_notify socket, waits for
//! `READY=1`, changes the store the way Postfix, Dovecot or a mail client
//! would, and checks the JSON Lines printed against the event contract in
//! README ("What a change on disk means", and the `watch` rules). Waits are
//! bounded polls; nothing about speed is asserted.

mod support;
use support::evq;
use support::live;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use evq::{
    ALICE, USER, flags, kinds, mailbox, mailbox_of, mbox, message, n, of, s, set, uid, uidset,
    uidvalidity,
};
use serde_json::Value;
use support::run::check_envelope;
use tempfile::TempDir;

use live::{Spawn, WAIT, Watch, body, imap_size, scan, short, show_tail};
use support::fixture::Maildir;
use support::user::Env;

/// A Maildir++ message file base name; `i` orders it (Dovecot's order is
/// seconds, then microseconds).
fn base(i: usize) -> String {
    format!("1700000000.M{i}P4242.testhost")
}

// ------------------------------------------------------ event accessors

fn has(evs: &[Value], kind: &str) -> bool {
    evs.iter().any(|e| e["event"] == kind)
}

fn seq(ev: &Value) -> u64 {
    n(ev, "vnd.maildir.seq")
}

fn event_id(ev: &Value) -> &str {
    s(ev, "vnd.maildir.eventId")
}

/// Checks every event's envelope (as in the contract) and that the
/// sequence numbers of one process's output strictly increase.
fn check_all(evs: &[Value]) {
    for ev in evs {
        check_envelope(ev);
    }
    for w in evs.windows(2) {
        assert!(
            seq(&w[0]) < seq(&w[1]),
            "vnd.maildir.seq must strictly increase:\n  {}\n  {}",
            short(&w[0]),
            short(&w[1])
        );
    }
}

/// Events of the user [`USER`] only, checked.
fn alice(evs: &[Value]) -> &[Value] {
    check_all(evs);
    for ev in evs {
        assert_eq!(s(ev, "user"), USER, "{ev}");
    }
    evs
}

fn dump(evs: &[Value]) -> String {
    show_tail(evs, 200)
}

// ====================================================== lifecycle

#[test]
fn ready_status_stopping_and_a_clean_exit_on_sigterm() {
    let env = Env::new();
    env.md
        .put("", "cur", format!("{}:2,S", base(1)), body("one"));
    let mut w = env.watch();
    let status = w.wait_note("STATUS=", WAIT);
    assert!(status, "a STATUS= datagram: {:?}", w.notes());
    let stderr_says = |w: &Watch| w.stderr().contains("caught up; watching");
    let start = Instant::now();
    while !stderr_says(&w) && start.elapsed() < WAIT {
        thread::sleep(Duration::from_millis(10));
    }
    assert!(stderr_says(&w), "stderr:\n{}", w.stderr());
    let mut w = w;
    let evs = w.stop_with(libc::SIGTERM);
    assert!(
        evs.is_empty(),
        "the first run is a silent baseline:\n{}",
        dump(&evs)
    );
    assert!(
        w.notes()
            .iter()
            .any(|n| n.lines().any(|l| l == "STOPPING=1")),
        "STOPPING=1 on the way out: {:?}",
        w.notes()
    );
    env.quiet_scan();
}

#[test]
fn status_file_and_status_command_beside_a_running_watcher() {
    let env = Env::new();
    env.md.folder(".Lists");
    let w = env.watch();
    env.md.deliver("", base(1), body("one"));
    env.md.deliver(".Lists", base(2), body("two"));
    w.wait_for("two deliveries", WAIT, |e| e.len() >= 2);
    // The status file follows within a couple of seconds.
    let path = env.state.join("status.json");
    let start = Instant::now();
    let status = loop {
        let v: Option<Value> = fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        if let Some(v) = v.filter(|v| v["watch"]["events"] == 2 && v["outbox"]["waiting"] == 0) {
            break v;
        }
        assert!(
            start.elapsed() < WAIT,
            "status.json: {:?}",
            fs::read_to_string(&path)
        );
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status["users"], 1, "{status}");
    assert_eq!(status["folders"], 2, "{status}");
    assert_eq!(status["messages"], 2, "{status}");
    assert_eq!(status["watch"]["pid"], w.pid(), "{status}");
    assert_eq!(status["sinks"]["stdout"]["waiting"], 0, "{status}");
    assert_eq!(status["watch"]["paused"], false, "{status}");
    // The inspection command works beside it.
    let out = std::process::Command::new(live::BIN)
        .args(["status", "--state"])
        .arg(&env.state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["messages"], 2, "{v}");
    assert_eq!(v["outbox"]["waiting"], 0, "{v}");
    w.stop();
}

#[test]
fn sigint_also_stops_cleanly_and_flushes() {
    let env = Env::new();
    let mut w = env.watch();
    env.md.deliver("", base(1), body("one"));
    w.wait_for("MessageNew", WAIT, |e| has(e, "MessageNew"));
    let evs = w.stop_with(libc::SIGINT);
    assert_eq!(kinds(alice(&evs)), ["MessageNew"], "{}", dump(&evs));
}

// ====================================================== live semantics

#[test]
fn a_delivery_into_new_is_message_new() {
    let env = Env::new();
    env.md
        .put("", "cur", format!("{}:2,S", base(1)), body("one"));
    env.md
        .put("", "cur", format!("{}:2,", base(2)), body("two"));
    let w = env.watch();

    let content = body("three");
    env.md.deliver("", base(3), &content);
    let evs = w.wait_for("MessageNew", WAIT, |e| has(e, "MessageNew"));
    let ev = &evs[0];
    assert_eq!(kinds(&evs), ["MessageNew"], "{}", dump(&evs));
    let v = uidvalidity(ev);
    assert_eq!(s(ev, "uri"), message("INBOX", v, 3), "{ev}");
    assert_eq!(s(ev, "mailboxID"), mailbox("INBOX", v), "{ev}");
    assert_eq!(n(ev, "messageSize"), imap_size(&content), "{ev}");
    assert_eq!(n(ev, "messages"), 3, "{ev}");
    assert_eq!(n(ev, "uidnext"), 4, "{ev}");
    assert_eq!(s(ev, "flagNames"), "", "{ev}");

    // The client sees it: new/ → cur/ with no flag is nothing (only \Recent
    // was lost). Then a second delivery, so we know the move was handled.
    env.md.mv(
        ("", "new", &base(3)),
        ("", "cur", &format!("{}:2,", base(3))),
    );
    env.md.deliver("", base(4), body("four"));
    w.wait_for("a second MessageNew", WAIT, |e| {
        of(e, "MessageNew").len() >= 2
    });

    let evs = w.stop();
    assert_eq!(
        kinds(alice(&evs)),
        ["MessageNew", "MessageNew"],
        "{}",
        dump(&evs)
    );
    assert_eq!(s(&evs[1], "uri"), message("INBOX", uidvalidity(&evs[1]), 4));
    env.quiet_scan();
}

#[test]
fn a_file_directly_in_cur_is_message_append() {
    let env = Env::new();
    let w = env.watch();
    let content = body("appended");
    env.md.put("", "cur", format!("{}:2,S", base(1)), &content);
    w.wait_for("MessageAppend", WAIT, |e| !e.is_empty());
    let evs = w.stop();
    let evs = alice(&evs);
    assert_eq!(kinds(evs), ["MessageAppend"], "{}", dump(evs));
    let ev = &evs[0];
    assert_eq!(s(ev, "uri"), message("INBOX", uidvalidity(ev), 1));
    assert_eq!(flags(ev), set(&["\\Seen"]), "{ev}");
    assert_eq!(n(ev, "messageSize"), imap_size(&content), "{ev}");
    env.quiet_scan();
}

#[test]
fn three_quick_flag_changes_are_three_events_in_order() {
    let env = Env::new();
    env.md.write("", "dovecot-keywords", "0 $label1\n1 Junk\n");
    env.md
        .put("", "cur", format!("{}:2,", base(1)), body("one"));
    env.md
        .put("", "cur", format!("{}:2,", base(2)), body("two"));
    let w = env.watch();

    // STORE +FLAGS \Flagged, STORE +FLAGS $label1, STORE -FLAGS \Flagged,
    // back to back on message 2.
    let b = base(2);
    env.md.flag("", &b, "", "F");
    env.md.flag("", &b, "F", "Fa");
    env.md.flag("", &b, "Fa", "a");
    w.wait_for("three flag events", WAIT, |e| e.len() >= 3);

    let evs = w.stop();
    let evs = alice(&evs);
    assert_eq!(
        kinds(evs),
        ["FlagsSet", "FlagsSet", "FlagsClear"],
        "{}",
        dump(evs)
    );
    let names: Vec<BTreeSet<&str>> = evs.iter().map(flags).collect();
    assert_eq!(
        names,
        [set(&["\\Flagged"]), set(&["$label1"]), set(&["\\Flagged"])],
        "{}",
        dump(evs)
    );
    for ev in evs {
        assert_eq!(s(ev, "uri"), mailbox("INBOX", uidvalidity(ev)), "{ev}");
        assert_eq!(s(ev, "uidset"), "2", "{ev}");
    }
    env.quiet_scan();
}

#[test]
fn trash_then_unlink_is_message_trash_then_message_expunge() {
    let env = Env::new();
    for i in 1..=3 {
        env.md.put("", "cur", format!("{}:2,S", base(i)), body("m"));
    }
    let w = env.watch();
    // STORE +FLAGS \Deleted, EXPUNGE.
    let b = base(2);
    env.md.flag("", &b, "S", "ST");
    env.md.rm("", "cur", format!("{b}:2,ST"));
    w.wait_for("MessageExpunge", WAIT, |e| has(e, "MessageExpunge"));
    let evs = w.stop();
    let evs = alice(&evs);
    assert_eq!(
        kinds(evs),
        ["MessageTrash", "MessageExpunge"],
        "{}",
        dump(evs)
    );
    assert_eq!(s(&evs[0], "uidset"), "2");
    assert_eq!(s(&evs[1], "uidset"), "2");
    assert_eq!(n(&evs[1], "messages"), 2, "{}", evs[1]);
    env.quiet_scan();
}

#[test]
fn five_hundred_quick_renames_to_seen_merge_into_few_message_read_events() {
    let env = Env::new();
    const N: usize = 500;
    for i in 1..=N {
        env.md.put("", "cur", format!("{}:2,", base(i)), b"x\n");
    }
    let w = env.watch();
    for i in 1..=N {
        env.md.flag("", &base(i), "", "S");
    }
    let covered =
        |e: &[Value]| -> usize { of(e, "MessageRead").iter().map(|ev| uidset(ev).len()).sum() };
    w.wait_for("MessageRead covering 500 UIDs", WAIT, |e| covered(e) >= N);
    let evs = w.stop();
    let evs = alice(&evs);
    assert!(
        evs.iter().all(|e| e["event"] == "MessageRead"),
        "only MessageRead:\n{}",
        dump(evs)
    );
    let mut seen = BTreeSet::new();
    for ev in evs {
        assert_eq!(mbox(ev), "INBOX", "{ev}");
        for u in uidset(ev) {
            assert!(
                seen.insert(u),
                "UID {u} reported read twice:\n{}",
                dump(evs)
            );
        }
    }
    assert_eq!(seen, (1..=N as u32).collect::<BTreeSet<u32>>());
    // One event per batch; a batch closes only when the queue goes quiet
    // (or at its cap), so 500 back-to-back renames are a handful.
    assert!(
        evs.len() <= 50,
        "500 renames were not merged: {} MessageRead events",
        evs.len()
    );
    println!("500 renames → {} MessageRead event(s)", evs.len());
    env.quiet_scan();
}

/// A client reads every message of a large INBOX (new/x → cur/x:2,S), marks
/// them all unread (cur/x:2,S → cur/x:2,), then read again: one rename per
/// message, back to back. Each stream lasts longer than one batch, so batch
/// boundaries fall inside it, some between a rename's `MOVED_FROM` and
/// `MOVED_TO`. A rename is still one message changing its flags: never an
/// expunge plus an append under a new UID.
fn stream_of_reads(args: &[&str]) {
    let env = Env::new();
    const N: usize = 3000;
    for i in 1..=N {
        env.md.deliver("", base(i), b"x\n");
    }
    let w = env.spawn(args).start();
    for i in 1..=N {
        env.md.mv(
            ("", "new", &base(i)),
            ("", "cur", &format!("{}:2,S", base(i))),
        );
    }
    for i in 1..=N {
        env.md.flag("", &base(i), "S", "");
    }
    for i in 1..=N {
        env.md.flag("", &base(i), "", "S");
    }
    let covered =
        |e: &[Value], kind: &str| -> usize { of(e, kind).iter().map(|ev| uidset(ev).len()).sum() };
    let expected = |e: &Value| e["event"] == "MessageRead" || e["event"] == "FlagsClear";
    w.wait_for(
        "MessageRead ×2 and FlagsClear covering every UID",
        Duration::from_secs(30),
        |e| {
            (covered(e, "MessageRead") >= 2 * N && covered(e, "FlagsClear") >= N)
                || !e.iter().all(expected)
        },
    );
    let evs = w.stop();
    let evs = alice(&evs);
    let other: Vec<String> = evs.iter().filter(|e| !expected(e)).map(short).collect();
    assert!(
        other.is_empty(),
        "with {args:?}: {} events other than MessageRead/FlagsClear (renames split into expunge + append):\n{}",
        other.len(),
        other[..other.len().min(20)].join("\n")
    );
    // Per UID: read, unread, read, in this order.
    let mut story: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for ev in evs {
        if ev["event"] == "FlagsClear" {
            assert_eq!(flags(ev), set(&["\\Seen"]), "{ev}");
        }
        for u in uidset(ev) {
            story.entry(u).or_default().push(s(ev, "event"));
        }
    }
    assert_eq!(story.len(), N, "UIDs 1..={N}: {:?}", story.keys().last());
    for (u, st) in &story {
        assert_eq!(st, &["MessageRead", "FlagsClear", "MessageRead"], "UID {u}");
    }
    assert_eq!(*story.keys().last().unwrap(), N as u32);
    println!("{args:?}: {} renames → {} events", 3 * N, evs.len());
    env.quiet_scan();
}

#[test]
fn a_long_stream_of_reads_is_message_read_never_expunge_and_append() {
    stream_of_reads(&[]);
}

#[test]
fn a_rename_split_by_a_batch_boundary_is_still_one_message() {
    // Tiny batches: boundaries everywhere, so many renames straddle one.
    stream_of_reads(&["--batch-quiet-ms", "0", "--batch-max-ms", "1"]);
}

#[test]
fn a_file_created_and_removed_at_once_is_no_message() {
    let env = Env::new();
    // A batch that stays open while changes keep coming, so a loaded
    // machine cannot split the back-to-back link and unlink below into
    // two batches (which would rightly be an arrival and an expunge).
    let w = env
        .spawn(&["--batch-quiet-ms", "200", "--batch-max-ms", "5000"])
        .start();
    // A client's temporary file, or a delivery undone right away: the
    // link and the unlink are back to back, within one batch.
    for i in 1..=5 {
        let tmp = env.md.path("", "tmp", base(i));
        fs::write(&tmp, body("gone")).unwrap();
        let new = env.md.path("", "new", base(i));
        fs::hard_link(&tmp, &new).unwrap();
        fs::remove_file(&new).unwrap();
        fs::remove_file(&tmp).unwrap();
    }
    let cur = env.md.path("", "cur", format!("{}:2,S", base(9)));
    fs::write(&cur, b"x\n").unwrap();
    fs::remove_file(&cur).unwrap();
    // A real delivery afterwards marks the point where all was handled.
    env.md.deliver("", base(10), body("real"));
    w.wait_for("MessageNew", WAIT, |e| has(e, "MessageNew"));
    let evs = w.stop();
    let evs = alice(&evs);
    assert_eq!(kinds(evs), ["MessageNew"], "{}", dump(evs));
    assert_eq!(n(&evs[0], "messages"), 1, "{}", evs[0]);
    env.quiet_scan();
}

#[test]
fn a_copy_or_move_to_another_folder_is_message_append() {
    let env = Env::new();
    env.md.folder(".Archive");
    env.md.folder(".Lists");
    let a = format!("{}:2,S", base(1));
    let b = format!("{}:2,", base(2));
    env.md.put("", "cur", &a, body("a"));
    env.md.put("", "cur", &b, body("b"));
    let w = env.watch();

    // COPY: a hard link with the same base name into Archive/cur.
    fs::hard_link(
        env.md.path("", "cur", &a),
        env.md.path(".Archive", "cur", &a),
    )
    .unwrap();
    w.wait_for("MessageAppend (copy)", WAIT, |e| !e.is_empty());
    // MOVE, as Dovecot does it: link into the target, unlink the source.
    fs::hard_link(
        env.md.path("", "cur", &b),
        env.md.path(".Archive", "cur", &b),
    )
    .unwrap();
    env.md.rm("", "cur", &b);
    w.wait_for("MessageExpunge (move)", WAIT, |e| has(e, "MessageExpunge"));
    // The same base name linked into another folder's new/ (a second
    // delivery of one file, e.g. a Sieve fileinto plus keep): the user has
    // it elsewhere, so it is an append, not a new message.
    fs::hard_link(
        env.md.path("", "cur", &a),
        env.md.path(".Lists", "new", base(1)),
    )
    .unwrap();
    w.wait_for("a third MessageAppend", WAIT, |e| {
        of(e, "MessageAppend").len() >= 3
    });

    let evs = w.stop();
    let evs = alice(&evs);
    assert_eq!(
        kinds(evs),
        [
            "MessageAppend",
            "MessageAppend",
            "MessageExpunge",
            "MessageAppend"
        ],
        "{}",
        dump(evs)
    );
    let v = uidvalidity(&evs[0]);
    assert_eq!(s(&evs[0], "uri"), message("Archive", v, 1));
    assert_eq!(flags(&evs[0]), set(&["\\Seen"]));
    assert_eq!(s(&evs[1], "uri"), message("Archive", v, 2));
    assert_eq!(flags(&evs[1]), set(&[]));
    assert_eq!(mbox(&evs[2]), "INBOX");
    assert_eq!(s(&evs[2], "uidset"), "2");
    assert_eq!(mbox(&evs[3]), "Lists");
    assert_eq!(uid(&evs[3]), 1);
    env.quiet_scan();
}

#[test]
fn a_new_folder_with_a_delivery_right_away() {
    let env = Env::new();
    let w = env.watch();
    // mkdir and deliver with no pause: the file may land before the
    // watcher has a watch on the new folder's new/.
    env.md.folder(".Lists");
    env.md.deliver(".Lists", base(1), body("first"));
    w.wait_for("MessageNew", WAIT, |e| has(e, "MessageNew"));
    let evs = w.stop();
    let evs = alice(&evs);
    assert_eq!(kinds(evs), ["MailboxCreate", "MessageNew"], "{}", dump(evs));
    let v = uidvalidity(&evs[0]);
    assert_eq!(s(&evs[0], "uri"), mailbox("Lists", v));
    assert_eq!(s(&evs[1], "uri"), message("Lists", v, 1));
    env.quiet_scan();
}

#[test]
fn a_folder_whose_subdirectories_come_late_still_gets_its_mail() {
    let env = Env::new();
    let w = env.watch();
    // mkdir runs one directory at a time; the watcher may read the new
    // folder between them. Here the pause is made long on purpose: `.A`
    // is an empty directory for a while, `.B` has only `cur/`.
    fs::create_dir(env.md.dir(".A")).unwrap();
    fs::create_dir_all(env.md.dir(".B").join("cur")).unwrap();
    thread::sleep(Duration::from_millis(300));
    // Distinct base names: one base name in two folders is a copy
    // (MessageAppend), not two deliveries.
    for (i, f) in [".A", ".B"].into_iter().enumerate() {
        env.md.folder(f);
        env.md.deliver(f, base(i + 1), body(f));
    }
    w.wait_for("a MessageNew in A and in B", WAIT, |e| {
        of(e, "MessageNew").len() >= 2
    });
    let evs = w.stop();
    let evs = alice(&evs);
    let got: BTreeSet<(&str, &str)> = evs.iter().map(|e| (s(e, "event"), mbox(e))).collect();
    assert_eq!(
        got,
        BTreeSet::from([
            ("MailboxCreate", "A"),
            ("MailboxCreate", "B"),
            ("MessageNew", "A"),
            ("MessageNew", "B"),
        ]),
        "{}",
        dump(evs)
    );
    assert_eq!(evs.len(), 4, "{}", dump(evs));
    env.quiet_scan();
}

#[test]
fn renaming_a_folder_with_children_is_one_mailbox_rename() {
    let env = Env::new();
    env.md.folder(".Work");
    env.md.folder(".Work.Sub");
    env.md.folder(".Other");
    env.md
        .put(".Work", "cur", format!("{}:2,S", base(1)), b"x\n");
    env.md
        .put(".Work.Sub", "cur", format!("{}:2,", base(2)), b"x\n");
    let w = env.watch();

    // Dovecot's RENAME: the folder, then each child.
    fs::rename(env.md.dir(".Work"), env.md.dir(".Job")).unwrap();
    fs::rename(env.md.dir(".Work.Sub"), env.md.dir(".Job.Sub")).unwrap();
    w.wait_for("MailboxRename", WAIT, |e| has(e, "MailboxRename"));

    // The child's messages and UIDs moved with it, and it is watched under
    // its new name.
    env.md.flag(".Job.Sub", &base(2), "", "S");
    env.md.deliver(".Job.Sub", base(3), body("later"));
    env.md.deliver(".Job", base(4), body("later"));
    w.wait_for("the changes in the renamed folders", WAIT, |e| {
        has(e, "MessageRead") && of(e, "MessageNew").len() >= 2
    });
    let evs = w.stop();
    let evs = alice(&evs);
    assert_eq!(
        kinds(evs),
        ["MailboxRename", "MessageRead", "MessageNew", "MessageNew"],
        "{}",
        dump(evs)
    );
    let ev = &evs[0];
    let v = uidvalidity(ev);
    assert_eq!(s(ev, "uri"), mailbox("Job", v), "{ev}");
    assert_eq!(s(ev, "oldMailboxID"), mailbox("Work", v), "{ev}");
    assert_eq!(mbox(&evs[1]), "Job.Sub");
    assert_eq!(s(&evs[1], "uidset"), "1");
    let v_sub = uidvalidity(&evs[1]);
    assert_eq!(s(&evs[2], "uri"), message("Job.Sub", v_sub, 2));
    assert_eq!(s(&evs[3], "uri"), message("Job", v, 2));
    env.quiet_scan();
}

#[test]
fn dovecots_delete_is_mailbox_delete_without_expunges() {
    let env = Env::new();
    env.md.folder(".Gone");
    env.md.folder(".Gone.Child");
    env.md
        .put(".Gone", "cur", format!("{}:2,S", base(1)), b"x\n");
    env.md.deliver(".Gone", base(2), b"x\n");
    let w = env.watch();

    // Dovecot's DELETE: rename to ..DOVECOT-TRASHED, then remove that.
    fs::rename(env.md.dir(".Gone"), env.md.dir("..DOVECOT-TRASHED")).unwrap();
    fs::remove_dir_all(env.md.dir("..DOVECOT-TRASHED")).unwrap();
    w.wait_for("MailboxDelete", WAIT, |e| has(e, "MailboxDelete"));
    // The child (a sibling directory in Maildir++) stays, and is watched.
    env.md.deliver(".Gone.Child", base(3), b"x\n");
    w.wait_for("MessageNew in Gone.Child", WAIT, |e| has(e, "MessageNew"));

    let evs = w.stop();
    let evs = alice(&evs);
    assert_eq!(kinds(evs), ["MailboxDelete", "MessageNew"], "{}", dump(evs));
    assert_eq!(mbox(&evs[0]), "Gone");
    assert_eq!(mbox(&evs[1]), "Gone.Child");
    env.quiet_scan();
}

#[test]
fn rm_r_of_a_folder_is_its_expunges_then_mailbox_delete() {
    let env = Env::new();
    env.md.folder(".Old");
    env.md.folder(".Other");
    env.md
        .put(".Old", "cur", format!("{}:2,S", base(1)), b"x\n");
    env.md.deliver(".Old", base(2), b"x\n");
    let w = env.watch();

    // An admin's rm -r: the files go first, then the directories. Live
    // mode reports what happened, as Dovecot's own notifications do for
    // its DELETE (which also expunges the messages first): the expunges,
    // then MailboxDelete. (`scan`, seeing only the net change, reports the
    // MailboxDelete alone.)
    fs::remove_dir_all(env.md.dir(".Old")).unwrap();
    w.wait_for("MailboxDelete", WAIT, |e| has(e, "MailboxDelete"));
    env.md.deliver(".Other", base(3), b"x\n");
    w.wait_for("MessageNew in Other", WAIT, |e| has(e, "MessageNew"));

    let evs = w.stop();
    let evs = alice(&evs);
    let k = kinds(evs);
    let n = k.len();
    assert!(n >= 2, "{}", dump(evs));
    assert_eq!(k[n - 2..], ["MailboxDelete", "MessageNew"], "{}", dump(evs));
    assert_eq!(mbox(&evs[n - 2]), "Old");
    let mut expunged = Vec::new();
    for e in &evs[..n - 2] {
        assert_eq!(
            (s(e, "event"), mbox(e)),
            ("MessageExpunge", "Old"),
            "{}",
            dump(evs)
        );
        expunged.extend(uidset(e));
    }
    // Once a directory of the folder is gone the watcher rescans, and a
    // rescan sees the net change: the messages unlinked after that point
    // are implied by the MailboxDelete. So: some of the expunges, each once.
    expunged.sort();
    let before = expunged.len();
    expunged.dedup();
    assert_eq!(before, expunged.len(), "{}", dump(evs));
    assert!(expunged.iter().all(|u| [1, 2].contains(u)), "{}", dump(evs));
    env.quiet_scan();
}

/// The subscription events' mailbox names, by event type.
fn subscription_names(evs: &[Value]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in evs {
        let kind = s(e, "event");
        if kind.contains("Subscribe") {
            let name = s(e, "uri").strip_prefix(&format!("{ALICE}/")).unwrap();
            out.entry(kind.into()).or_default().insert(name.into());
        }
    }
    out
}

fn names(list: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
        .collect()
}

#[test]
fn subscriptions_replaced_by_rename_are_subscribe_and_unsubscribe() {
    let env = Env::new();
    env.md.folder(".Sent");
    env.md.folder(".Archive");
    env.md.folder(".Archive.2024");
    env.md.write("", "subscriptions", "V\t2\n\nSent\n");
    let w = env.watch();

    // Dovecot writes subscriptions.lock and renames it over the file.
    env.md.replace(
        "",
        "subscriptions",
        "V\t2\n\nSent\nArchive\nArchive\t2024\n",
    );
    w.wait_for("two MailboxSubscribe", WAIT, |e| e.len() >= 2);
    let first = w.events();
    assert_eq!(
        subscription_names(&first),
        names(&[("MailboxSubscribe", &["Archive", "Archive.2024"])]),
        "{}",
        dump(&first)
    );

    env.md
        .replace("", "subscriptions", "V\t2\n\nArchive\t2024\n");
    w.wait_for("two MailboxUnSubscribe", WAIT, |e| e.len() >= 4);

    // RENAME Archive.2024 to Old, and the client fixes its subscriptions.
    fs::rename(env.md.dir(".Archive.2024"), env.md.dir(".Old")).unwrap();
    env.md.replace("", "subscriptions", "V\t2\n\nOld\n");
    w.wait_for("rename and resubscribe", WAIT, |e| e.len() >= 7);

    let evs = w.stop();
    let evs = alice(&evs);
    assert_eq!(
        subscription_names(&evs[2..4]),
        names(&[("MailboxUnSubscribe", &["Sent", "Archive"])]),
        "{}",
        dump(evs)
    );
    assert_eq!(kinds(&evs[4..5]), ["MailboxRename"], "{}", dump(evs));
    assert_eq!(mbox(&evs[4]), "Old");
    assert_eq!(mailbox_of(s(&evs[4], "oldMailboxID")), "Archive.2024");
    assert_eq!(
        subscription_names(&evs[5..]),
        names(&[
            ("MailboxSubscribe", &["Old"]),
            ("MailboxUnSubscribe", &["Archive.2024"])
        ]),
        "{}",
        dump(evs)
    );
    assert_eq!(evs.len(), 7, "{}", dump(evs));
    env.quiet_scan();
}

#[test]
fn a_maildir_missing_at_start_is_picked_up_when_it_appears() {
    let tmp = TempDir::new().unwrap();
    let home = tmp.path().join("home");
    fs::create_dir(&home).unwrap();
    // Two levels are missing: the user's home and the Maildir.
    let root = home.join("bob/Maildir");
    let state = tmp.path().join("state");
    // --allow-missing: without it a MAILDIR that does not exist is an
    // error (exit 66).
    let w = Spawn::new(&state, &["--user", "bob@example.org", "--allow-missing"])
        .arg(&root)
        .start();

    let md = Maildir::create(&root);
    md.deliver("", base(1), body("first"));
    w.wait_for("MessageNew for bob", WAIT, |e| has(e, "MessageNew"));
    md.put("", "cur", format!("{}:2,S", base(2)), body("second"));
    w.wait_for("MessageAppend for bob", WAIT, |e| has(e, "MessageAppend"));
    let evs = w.stop();
    check_all(&evs);
    let arrivals: Vec<&Value> = evs
        .iter()
        .filter(|e| e["event"] == "MessageNew" || e["event"] == "MessageAppend")
        .collect();
    assert_eq!(arrivals.len(), 2, "{}", dump(&evs));
    for e in &arrivals {
        assert_eq!(s(e, "user"), "bob@example.org", "{e}");
        assert!(
            s(e, "uri").starts_with("imap://bob%40example.org@mx.example.org/INBOX;"),
            "{e}"
        );
    }
    assert_eq!(
        kinds(&evs),
        ["MessageNew", "MessageAppend"],
        "nothing but the two messages:\n{}",
        dump(&evs)
    );
    let (code, lines, err) = scan(
        &state,
        &[
            OsStr::new("--user"),
            OsStr::new("bob@example.org"),
            root.as_os_str(),
        ],
    );
    assert_eq!((code, lines), (Some(0), vec![]), "{err}");
}

#[test]
fn a_new_user_under_a_store_template_appears_live() {
    let tmp = TempDir::new().unwrap();
    let vmail = tmp.path().join("vmail");
    let alice = Maildir::create(vmail.join("example.org/alice/Maildir"));
    alice.put("", "cur", format!("{}:2,S", base(1)), b"x\n");
    let state = tmp.path().join("state");
    let template = format!("{}/{{domain}}/{{local}}/Maildir", vmail.display());
    let w = Spawn::new(&state, &["--store", &template]).start();

    // A new user in a known domain, and a user in a new domain.
    let bob = Maildir::create(vmail.join("example.org/bob/Maildir"));
    bob.deliver("", base(2), body("to bob"));
    w.wait_for("bob's MessageNew", WAIT, |e| {
        e.iter()
            .any(|e| e["event"] == "MessageNew" && e["user"] == "bob@example.org")
    });
    let carol = Maildir::create(vmail.join("example.net/carol/Maildir"));
    carol.deliver("", base(3), body("to carol"));
    w.wait_for("carol's MessageNew", WAIT, |e| {
        e.iter()
            .any(|e| e["event"] == "MessageNew" && e["user"] == "carol@example.net")
    });
    // And the known user is still followed.
    alice.deliver("", base(4), body("to alice"));
    w.wait_for("alice's MessageNew", WAIT, |e| {
        e.iter()
            .any(|e| e["event"] == "MessageNew" && e["user"] == USER)
    });
    let evs = w.stop();
    check_all(&evs);
    let got: Vec<(&str, &str)> = evs.iter().map(|e| (s(e, "event"), s(e, "user"))).collect();
    assert_eq!(
        got,
        [
            ("MessageNew", "bob@example.org"),
            ("MessageNew", "carol@example.net"),
            ("MessageNew", USER)
        ],
        "{}",
        dump(&evs)
    );
    assert_eq!(uid(&evs[2]), 2);
    let (code, lines, err) = scan(&state, &[OsStr::new("--store"), OsStr::new(&template)]);
    assert_eq!((code, lines), (Some(0), vec![]), "{err}");
}

#[test]
fn a_delivery_numbered_by_dovecot_carries_dovecots_uid() {
    let env = Env::new();
    env.md.put("", "cur", format!("{}:2,S", base(1)), b"x\n");
    env.md.write(
        "",
        "dovecot-uidlist",
        format!(
            "3 V1600000000 N8 G0123456789abcdef0123456789abcdef\n7 :{}\n",
            base(1)
        ),
    );
    let w = env.spawn(&["--uid-wait-ms", "10000"]).start();
    // LMTP: the file, then Dovecot's line a moment later.
    env.md.deliver("", base(2), body("lmtp"));
    thread::sleep(Duration::from_millis(200));
    env.md
        .append("", "dovecot-uidlist", &format!("8 :{}\n", base(2)));
    w.wait_for("MessageNew", WAIT, |e| has(e, "MessageNew"));
    // A flag change uses Dovecot's UID too.
    env.md.mv(
        ("", "new", &base(2)),
        ("", "cur", &format!("{}:2,S", base(2))),
    );
    w.wait_for("MessageRead", WAIT, |e| has(e, "MessageRead"));
    let evs = w.stop();
    let evs = alice(&evs);
    assert_eq!(kinds(evs), ["MessageNew", "MessageRead"], "{}", dump(evs));
    assert_eq!(
        s(&evs[0], "uri"),
        message("INBOX", 1600000000, 8),
        "{}",
        evs[0]
    );
    assert!(
        evs[0]
            .get("vnd.maildir.uidPending")
            .is_none_or(|p| p == false),
        "{}",
        evs[0]
    );
    assert_eq!(s(&evs[1], "uidset"), "8");
}

// ====================================================== catch-up

#[test]
fn changes_while_stopped_are_reported_at_the_next_start_then_live_ones() {
    let env = Env::new();
    for i in 1..=3 {
        env.md.put("", "cur", format!("{}:2,", base(i)), b"x\n");
    }
    let w = env.watch();
    let evs = w.stop();
    assert!(evs.is_empty(), "silent baseline:\n{}", dump(&evs));

    // While it is down.
    env.md.deliver("", base(4), body("four"));
    env.md.flag("", &base(1), "", "S");
    env.md.rm("", "cur", format!("{}:2,", base(2)));
    env.md.folder(".New");

    let w = env.watch();
    // As scan reports it: creations, then arrivals, flags, expunges.
    let caught = w.wait_for("the catch-up", WAIT, |e| e.len() >= 4);
    assert_eq!(
        kinds(&caught),
        [
            "MailboxCreate",
            "MessageNew",
            "MessageRead",
            "MessageExpunge"
        ],
        "{}",
        dump(&caught)
    );
    assert_eq!(mbox(&caught[0]), "New");
    assert_eq!(uid(&caught[1]), 4);
    assert_eq!(s(&caught[2], "uidset"), "1");
    assert_eq!(s(&caught[3], "uidset"), "2");

    // Then live.
    env.md.flag("", &base(3), "", "S");
    env.md.deliver(".New", base(5), body("five"));
    w.wait_for("live events", WAIT, |e| e.len() >= 6);
    let evs = w.stop();
    let evs = alice(&evs);
    assert_eq!(
        kinds(&evs[4..]),
        ["MessageRead", "MessageNew"],
        "{}",
        dump(evs)
    );
    assert_eq!(s(&evs[4], "uidset"), "3");
    assert_eq!(mbox(&evs[5]), "New");
    assert!(
        seq(&evs[4]) > seq(&caught[3]),
        "seq continues across restarts"
    );
    env.quiet_scan();
}

#[test]
fn emit_existing_reports_the_store_at_the_first_start() {
    let env = Env::new();
    env.md.folder(".Sent");
    env.md.deliver("", base(1), body("new"));
    env.md
        .put("", "cur", format!("{}:2,S", base(2)), body("read"));
    env.md
        .put(".Sent", "cur", format!("{}:2,S", base(3)), body("sent"));
    let w = env.spawn(&["--emit-existing"]).start();
    let evs = w.wait_for("three arrivals", WAIT, |e| {
        e.iter()
            .filter(|e| e["event"] == "MessageNew" || e["event"] == "MessageAppend")
            .count()
            >= 3
    });
    let arrivals: BTreeSet<(String, String)> = evs
        .iter()
        .filter(|e| e["event"] == "MessageNew" || e["event"] == "MessageAppend")
        .map(|e| (s(e, "event").to_owned(), mbox(e).to_owned()))
        .collect();
    assert_eq!(
        arrivals,
        BTreeSet::from([
            ("MessageNew".into(), "INBOX".into()),
            ("MessageAppend".into(), "INBOX".into()),
            ("MessageAppend".into(), "Sent".into()),
        ]),
        "{}",
        dump(&evs)
    );
    let evs = w.stop();
    alice(&evs);
    // A restart is not a first run any more.
    let w = env.spawn(&["--emit-existing"]).start();
    env.md.deliver("", base(4), body("later"));
    w.wait_for("MessageNew", WAIT, |e| has(e, "MessageNew"));
    let evs = w.stop();
    assert_eq!(kinds(alice(&evs)), ["MessageNew"], "{}", dump(&evs));
    env.quiet_scan();
}

// ====================================================== bursts

#[test]
fn two_hundred_new_folders_each_with_a_message_at_once() {
    let env = Env::new();
    let w = env.watch();
    const N: usize = 200;
    for i in 0..N {
        let f = format!(".F{i:03}");
        env.md.folder(&f);
        env.md.deliver(&f, base(i), body("burst"));
    }
    let done = |e: &[Value]| of(e, "MailboxCreate").len() >= N && of(e, "MessageNew").len() >= N;
    w.wait_for(
        "200 MailboxCreate and 200 MessageNew",
        Duration::from_secs(60),
        done,
    );
    let evs = w.stop();
    let evs = alice(evs.as_slice());
    let mut created: BTreeMap<String, u64> = BTreeMap::new();
    let mut new: BTreeMap<String, (u64, u32)> = BTreeMap::new();
    for e in evs {
        let name = mbox(e).to_owned();
        match s(e, "event") {
            "MailboxCreate" => {
                assert!(created.insert(name, seq(e)).is_none(), "created twice: {e}")
            }
            "MessageNew" => assert!(
                new.insert(name, (seq(e), uid(e))).is_none(),
                "two MessageNew in one folder: {e}"
            ),
            other => panic!("unexpected {other}: {e}"),
        }
    }
    let expected: BTreeSet<String> = (0..N).map(|i| format!("F{i:03}")).collect();
    assert_eq!(created.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert_eq!(new.keys().cloned().collect::<BTreeSet<_>>(), expected);
    for (name, (at, u)) in &new {
        assert_eq!(*u, 1, "{name}");
        assert!(
            created[name] < *at,
            "{name}: its MessageNew came before its MailboxCreate"
        );
    }
    env.quiet_scan();
}

/// The flags of message `i` after round `r` of the flag storm.
fn storm_flags(i: usize, r: usize) -> &'static str {
    ["", "S", "F", "FS"][(i + r) % 4]
}

/// The storm's file base names carry `W=`, so an event's `messageSize`
/// names the message even if it comes back under another UID.
fn storm_base(i: usize) -> String {
    format!("{},W={}", base(i), 1000 + i)
}

/// Message number → (UID, \Seen, \Flagged), as the events tell it, with
/// what went wrong on the way.
type StormState = (BTreeMap<usize, (u32, bool, bool)>, Vec<String>);

/// Replays the storm's events over its baseline (message `i` is UID `i`).
fn storm_replay(count: usize, evs: &[Value]) -> StormState {
    let mut st: BTreeMap<usize, (u32, bool, bool)> = (1..=count)
        .map(|i| {
            let f = storm_flags(i, 0);
            (i, (i as u32, f.contains('S'), f.contains('F')))
        })
        .collect();
    let mut by_uid: HashMap<u32, usize> = (1..=count).map(|i| (i as u32, i)).collect();
    let mut problems = Vec::new();
    for e in evs {
        let kind = s(e, "event");
        if kind == "MessageNew" || kind == "MessageAppend" {
            let i = (n(e, "messageSize") - 1000) as usize;
            problems.push(format!("message {i} arrived (again): {}", short(e)));
            let f = flags(e);
            by_uid.insert(uid(e), i);
            st.insert(i, (uid(e), f.contains("\\Seen"), f.contains("\\Flagged")));
            continue;
        }
        let (seen, flagged) = match kind {
            "MessageRead" => (Some(true), None),
            "FlagsSet" | "FlagsClear" => {
                let on = kind == "FlagsSet";
                let f = flags(e);
                (
                    f.contains("\\Seen").then_some(on),
                    f.contains("\\Flagged").then_some(on),
                )
            }
            "MessageExpunge" => {
                problems.push(format!("expunged: {}", short(e)));
                for u in uidset(e) {
                    if let Some(i) = by_uid.remove(&u) {
                        st.remove(&i);
                    }
                }
                continue;
            }
            _ => {
                problems.push(format!("unexpected: {}", short(e)));
                continue;
            }
        };
        for u in uidset(e) {
            let Some(m) = by_uid.get(&u).and_then(|i| st.get_mut(i)) else {
                problems.push(format!("unknown UID {u}: {}", short(e)));
                continue;
            };
            if let Some(x) = seen {
                m.1 = x;
            }
            if let Some(x) = flagged {
                m.2 = x;
            }
        }
    }
    (st, problems)
}

/// 50,000 flag renames as fast as they go (`n` messages × 10) while the
/// consumer reads nothing; then it reads. The flags the events report,
/// replayed over the baseline, must end as the disk is, through flag
/// events only, and a `scan` afterwards must print nothing.
fn flag_storm(count: usize, args: &[&str]) {
    let env = Env::new();
    const ROUNDS: usize = 10;
    for i in 1..=count {
        env.md.put(
            "",
            "cur",
            format!("{}:2,{}", storm_base(i), storm_flags(i, 0)),
            b"x\n",
        );
    }
    // Our own UIDs follow Dovecot's order: message i is UID i.
    let w = env.spawn(args).paused().start();
    let started = Instant::now();
    for r in 1..=ROUNDS {
        for i in 1..=count {
            env.md
                .flag("", &storm_base(i), storm_flags(i, r - 1), storm_flags(i, r));
        }
    }
    println!("{} renames in {:?}", count * ROUNDS, started.elapsed());
    // Keep the consumer stalled a little longer, then read.
    thread::sleep(Duration::from_millis(500));
    w.resume();

    let want: BTreeMap<usize, (u32, bool, bool)> = (1..=count)
        .map(|i| {
            let f = storm_flags(i, ROUNDS);
            (i, (0, f.contains('S'), f.contains('F')))
        })
        .collect();
    let same = |st: &BTreeMap<usize, (u32, bool, bool)>| {
        st.len() == want.len()
            && st
                .iter()
                .zip(&want)
                .all(|((i, a), (j, b))| i == j && (a.1, a.2) == (b.1, b.2))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let evs = w.events();
        let (st, _) = storm_replay(count, &evs);
        if same(&st) {
            break;
        }
        if Instant::now() > deadline {
            let wrong = want
                .iter()
                .filter(|(i, b)| st.get(i).is_none_or(|a| (a.1, a.2) != (b.1, b.2)))
                .count();
            panic!(
                "the reported state never matched the disk: {wrong} messages differ ({} events)\nstderr:\n{}\n{}",
                evs.len(),
                live::tail(&w.stderr(), 3000),
                show_tail(&evs, 20)
            );
        }
        thread::sleep(Duration::from_millis(250));
    }
    let stderr = w.stderr();
    let evs = w.stop();
    check_all(&evs);
    let overflow = stderr.contains("overflow");
    println!(
        "flag storm {args:?}: {} events; overflow reported: {overflow}; outbox full: {}",
        evs.len(),
        stderr.contains("outbox full")
    );
    let (st, problems) = storm_replay(count, &evs);
    assert!(same(&st), "the events after the stop changed the state");
    env.quiet_scan();
    // The state matches; how it got there must be flag events only.
    assert!(
        problems.is_empty(),
        "the final state matches the disk, but {} events are not flag changes (overflow: {overflow}):\n{}",
        problems.len(),
        problems[..problems.len().min(20)].join("\n")
    );
}

#[test]
fn fifty_thousand_flag_renames_with_a_stalled_consumer_end_in_the_disk_state() {
    flag_storm(5_000, &[]);
}

#[test]
fn fifty_thousand_flag_renames_past_the_outbox_limit_end_in_the_disk_state() {
    // A small outbox: the stalled consumer makes the watcher stop taking
    // changes (back-pressure) and lose signals; it must recover the net
    // state by rescanning once the consumer reads again.
    let dir = TempDir::new().unwrap();
    let cfg = dir.path().join("config.toml");
    fs::write(&cfg, "outbox_limit = 1000\n").unwrap();
    flag_storm(5_000, &["--config", cfg.to_str().unwrap()]);
}

#[test]
fn a_folder_renamed_while_mail_arrives_reports_every_message_once() {
    let env = Env::new();
    env.md.folder(".Work");
    let w = env.watch();
    const N: usize = 300;
    let done = Arc::new(AtomicUsize::new(0));
    let deliverer = {
        let md = env.md.clone();
        let done = done.clone();
        thread::spawn(move || {
            let mut folder = ".Work";
            for i in 1..=N {
                // W= makes messageSize name the message.
                let name = format!("{},W={}", base(i), 1000 + i);
                loop {
                    match md.try_deliver(folder, &name, b"x\n") {
                        Ok(_) => break,
                        Err(_) if folder == ".Work" => folder = ".Job",
                        Err(e) => panic!("delivery {i} failed: {e}"),
                    }
                }
                done.store(i, Ordering::SeqCst);
                if i % 10 == 0 {
                    thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };
    while done.load(Ordering::SeqCst) < N / 3 {
        thread::yield_now();
    }
    fs::rename(env.md.dir(".Work"), env.md.dir(".Job")).unwrap();
    deliverer.join().unwrap();
    let before = done.load(Ordering::SeqCst);
    assert_eq!(before, N);

    w.wait_for("300 MessageNew", Duration::from_secs(30), |e| {
        of(e, "MessageNew").len() >= N
    });
    let evs = w.settle(Duration::from_millis(300));
    let evs2 = w.stop();
    assert!(evs2.len() >= evs.len());
    let evs = alice(&evs2);
    let mut by_msg: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    let mut by_uid: BTreeMap<u32, u64> = BTreeMap::new();
    let mut renames = 0;
    for e in evs {
        match s(e, "event") {
            "MessageNew" => {
                let m = n(e, "messageSize") - 1000;
                by_msg.entry(m).or_default().push(e);
                assert!(["Work", "Job"].contains(&mbox(e)), "{e}");
                if let Some(other) = by_uid.insert(uid(e), m) {
                    panic!("UID {} given to messages {other} and {m}", uid(e));
                }
            }
            "MailboxRename" => {
                renames += 1;
                assert_eq!(mbox(e), "Job", "{e}");
                assert_eq!(mailbox_of(s(e, "oldMailboxID")), "Work", "{e}");
            }
            other => panic!("unexpected {other}: {}\n{}", short(e), dump(evs)),
        }
    }
    assert_eq!(renames, 1, "{}", dump(evs));
    let twice: Vec<_> = by_msg.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(twice.is_empty(), "messages reported twice: {twice:#?}");
    let missing: Vec<u64> = (1..=N as u64).filter(|m| !by_msg.contains_key(m)).collect();
    assert!(missing.is_empty(), "messages never reported: {missing:?}");
    assert_eq!(by_msg.len(), N);
    env.quiet_scan();
}

// ====================================================== crash

/// A tiny deterministic generator (xorshift64*), seeded per run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the crash workload did to one message: (file in new/, seen).
#[derive(Clone, Debug, Default)]
struct Disk {
    /// Message number → (in new/, seen) while it exists.
    live: BTreeMap<usize, (bool, bool)>,
    delivered: usize,
    /// What was done, in order.
    log: Vec<String>,
}

/// Sets the flag when dropped (also while a test panics).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn crash_name(i: usize) -> String {
    format!("{},W={}", base(i), 1000 + i)
}

#[test]
fn kill_9_at_random_moments_loses_nothing_and_repeats_with_the_same_ids() {
    let env = Env::new();
    let seed = std::env::var("WATCH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("crash test seed: WATCH_SEED={seed}");
    let mut rng = Rng(seed);

    // The first run records the (empty) baseline before the workload starts.
    let mut first = Some(env.watch());
    let stop = Arc::new(AtomicBool::new(false));
    // Stops the workload if the test fails before it does.
    let _stop_guard = StopOnDrop(stop.clone());
    let disk = Arc::new(std::sync::Mutex::new(Disk::default()));
    let workload = {
        let md = env.md.clone();
        let stop = stop.clone();
        let disk = disk.clone();
        let mut rng = Rng(seed.rotate_left(17) | 1);
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let mut d = disk.lock().unwrap();
                let roll = rng.below(100);
                let pick = |d: &Disk, rng: &mut Rng| -> Option<usize> {
                    if d.live.is_empty() {
                        return None;
                    }
                    let k = rng.below(d.live.len() as u64) as usize;
                    d.live.keys().nth(k).copied()
                };
                if roll < 45 || d.live.is_empty() {
                    d.delivered += 1;
                    let i = d.delivered;
                    md.deliver("", crash_name(i), body("crash"));
                    d.live.insert(i, (true, false));
                    d.log.push(format!("deliver {i}"));
                } else if roll < 85 {
                    // A client reads, or toggles \Seen.
                    let i = pick(&d, &mut rng).unwrap();
                    let (in_new, seen) = d.live[&i];
                    let from = if in_new {
                        ("new", crash_name(i))
                    } else {
                        (
                            "cur",
                            format!("{}:2,{}", crash_name(i), if seen { "S" } else { "" }),
                        )
                    };
                    let now_seen = if in_new { rng.below(2) == 0 } else { !seen };
                    let to = format!("{}:2,{}", crash_name(i), if now_seen { "S" } else { "" });
                    md.mv(("", from.0, &from.1), ("", "cur", &to));
                    d.live.insert(i, (false, now_seen));
                    d.log
                        .push(format!("{i}: {}/{} -> cur/{to}", from.0, from.1));
                } else {
                    let i = pick(&d, &mut rng).unwrap();
                    let (in_new, seen) = d.live[&i];
                    if in_new {
                        md.rm("", "new", crash_name(i));
                    } else {
                        md.rm(
                            "",
                            "cur",
                            format!("{}:2,{}", crash_name(i), if seen { "S" } else { "" }),
                        );
                    }
                    d.live.remove(&i);
                    d.log.push(format!("expunge {i}"));
                }
                drop(d);
                thread::sleep(Duration::from_micros(500 + rng.below(1500)));
            }
        })
    };

    let mut runs: Vec<Vec<Value>> = Vec::new();
    let kills = 3 + rng.below(3) as usize;
    for k in 0..kills {
        // Every other run has a stalled consumer and a one-page pipe: the
        // watcher commits batches it cannot print, and is killed blocked on
        // the pipe, so the next run must print them again, unchanged.
        let stalled = k % 2 == 1;
        // (A stalled run may block on the pipe before READY=1, during its
        // catch-up, so it is not waited for.)
        let w = first.take().unwrap_or_else(|| {
            if stalled {
                env.spawn(&[]).paused().pipe_size(4096).spawn()
            } else {
                env.watch()
            }
        });
        let wait = 100 + rng.below(700);
        thread::sleep(Duration::from_millis(wait));
        let evs = w.kill9();
        println!(
            "run {k}: {}killed after {wait} ms, {} events read",
            if stalled { "consumer stalled, " } else { "" },
            evs.len()
        );
        check_all(&evs);
        runs.push(evs);
        thread::sleep(Duration::from_millis(rng.below(200)));
    }
    let w = env.watch();
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    workload.join().unwrap();
    let disk = disk.lock().unwrap().clone();
    println!(
        "workload: {} delivered, {} left on disk",
        disk.delivered,
        disk.live.len()
    );

    // The union of everything printed, in seq order, deduplicated.
    let union = |runs: &[Vec<Value>]| -> Result<Vec<Value>, String> {
        let mut by_id: HashMap<String, Value> = HashMap::new();
        for e in runs.iter().flatten() {
            match by_id.get(event_id(e)) {
                Some(prev) if prev != e => {
                    return Err(format!(
                        "eventId {} printed with two bodies:\n  {prev}\n  {e}",
                        event_id(e)
                    ));
                }
                Some(_) => {}
                None => {
                    by_id.insert(event_id(e).to_owned(), e.clone());
                }
            }
        }
        let mut all: Vec<Value> = by_id.into_values().collect();
        all.sort_by_key(seq);
        Ok(all)
    };
    // Message number → (uid, exists, seen) as the events tell it.
    type Told = BTreeMap<usize, (u32, bool, bool)>;
    // Problems are collected, not fatal, so one report shows them all.
    let replay = |all: &[Value]| -> (Told, Vec<String>) {
        let mut told: Told = BTreeMap::new();
        let mut by_uid: HashMap<u32, usize> = HashMap::new();
        let mut problems = Vec::new();
        for e in all {
            let kind = s(e, "event");
            match kind {
                "MessageNew" | "MessageAppend" => {
                    let m = (n(e, "messageSize") - 1000) as usize;
                    let u = uid(e);
                    match told.get(&m) {
                        Some((_, true, _)) => {
                            problems.push(format!("message {m} arrived twice: {}", short(e)))
                        }
                        Some((old, false, _)) => problems.push(format!(
                            "message {m} (UID {old}) arrived again after its expunge: {}",
                            short(e)
                        )),
                        None => {}
                    }
                    if by_uid.insert(u, m).is_some() {
                        problems.push(format!("UID {u} reused: {}", short(e)));
                    }
                    told.insert(m, (u, true, flags(e).contains("\\Seen")));
                }
                "MessageRead" | "FlagsClear" | "MessageExpunge" => {
                    for u in uidset(e) {
                        let Some(&m) = by_uid.get(&u) else {
                            problems.push(format!("UID {u} never arrived: {}", short(e)));
                            continue;
                        };
                        let t = told.get_mut(&m).unwrap();
                        if !t.1 {
                            problems.push(format!("UID {u} is already expunged: {}", short(e)));
                        }
                        match kind {
                            "MessageRead" => t.2 = true,
                            "FlagsClear" if flags(e).contains("\\Seen") => t.2 = false,
                            "FlagsClear" => {}
                            _ => t.1 = false,
                        }
                    }
                }
                other => problems.push(format!("unexpected {other}: {}", short(e))),
            }
        }
        (told, problems)
    };
    let matches = |told: &Told| -> Result<(), String> {
        let exists: BTreeMap<usize, bool> = told
            .iter()
            .filter(|(_, t)| t.1)
            .map(|(m, t)| (*m, t.2))
            .collect();
        let want: BTreeMap<usize, bool> = disk.live.iter().map(|(m, x)| (*m, x.1)).collect();
        if exists == want {
            return Ok(());
        }
        let missing: Vec<_> = want
            .keys()
            .filter(|m| !exists.contains_key(m))
            .take(20)
            .collect();
        let extra: Vec<_> = exists
            .keys()
            .filter(|m| !want.contains_key(m))
            .take(20)
            .collect();
        let seen: Vec<_> = want
            .iter()
            .filter(|(m, s)| exists.get(m).is_some_and(|x| x != *s))
            .take(20)
            .collect();
        Err(format!(
            "reported ≠ disk: never reported (or expunged) {missing:?}, reported but gone {extra:?}, \\Seen differs {seen:?}"
        ))
    };

    // Wait until the last run has told everything, then stop it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut why = String::new();
    loop {
        let mut all_runs = runs.clone();
        all_runs.push(w.events());
        let ok = union(&all_runs).and_then(|all| matches(&replay(&all).0));
        match ok {
            Ok(()) => break,
            Err(e) => why = e,
        }
        if Instant::now() > deadline {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    let last = w.stop();
    check_all(&last);
    runs.push(last);
    // Kept for a post-mortem when a check below fails; removed on success.
    let saved = std::env::temp_dir().join(format!("watch-crash-{seed}.txt"));
    {
        let mut text = String::new();
        for (k, run) in runs.iter().enumerate() {
            for e in run {
                text.push_str(&format!("run {k}: {e}\n"));
            }
        }
        for l in &disk.log {
            text.push_str(&format!("disk: {l}\n"));
        }
        fs::write(&saved, text).unwrap();
        println!("events and workload saved in {}", saved.display());
    }
    let all = union(&runs).unwrap_or_else(|e| panic!("{e}"));
    let printed: usize = runs.iter().map(Vec::len).sum();
    println!(
        "{} events printed, {} distinct: {} repeats after a kill",
        printed,
        all.len(),
        printed - all.len()
    );
    let max = all.last().map(seq).unwrap_or(0);
    let seqs: Vec<u64> = all.iter().map(seq).collect();
    let gaps: Vec<u64> = (1..=max)
        .filter(|x| seqs.binary_search(x).is_err())
        .take(20)
        .collect();
    assert!(
        gaps.is_empty() && seqs.len() as u64 == max,
        "vnd.maildir.seq must cover 1..={max} once each; missing {gaps:?}, {} distinct events (before: {why})",
        seqs.len()
    );
    let (told, problems) = replay(&all);
    let state = matches(&told);
    // Every message still on disk was reported.
    let never: Vec<&usize> = disk.live.keys().filter(|m| !told.contains_key(m)).collect();
    let after = env.scan_lines();
    assert!(
        problems.is_empty() && state.is_ok() && never.is_empty() && after.is_empty(),
        "{} problems in the union of {} events:\n{}\nfinal state: {:?}\nnever reported: {never:?}\na scan afterwards printed {} lines\n(all printed events and the workload are in {})",
        problems.len(),
        all.len(),
        problems[..problems.len().min(30)].join("\n"),
        state,
        after.len(),
        saved.display()
    );
    let _ = fs::remove_file(&saved);
}

// ====================================================== --poll

#[test]
fn poll_mode_reports_delivery_flags_and_expunge_without_inotify() {
    let env = Env::new();
    env.md.put("", "cur", format!("{}:2,", base(1)), b"x\n");
    let w = env.spawn(&["--poll", "0.2"]).start();

    // No inotify instance in the process.
    let fds: Vec<String> = fs::read_dir(format!("/proc/{}/fd", w.pid()))
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        !fds.iter().any(|f| f.contains("inotify")),
        "--poll must not use inotify: {fds:?}"
    );

    env.md.deliver("", base(2), body("polled"));
    w.wait_for("MessageNew", WAIT, |e| has(e, "MessageNew"));
    env.md.flag("", &base(1), "", "S");
    w.wait_for("MessageRead", WAIT, |e| has(e, "MessageRead"));
    env.md.rm("", "cur", format!("{}:2,S", base(1)));
    w.wait_for("MessageExpunge", WAIT, |e| has(e, "MessageExpunge"));
    env.md.folder(".Polled");
    w.wait_for("MailboxCreate", WAIT, |e| has(e, "MailboxCreate"));
    let evs = w.stop();
    let evs = alice(&evs);
    assert_eq!(
        kinds(evs),
        [
            "MessageNew",
            "MessageRead",
            "MessageExpunge",
            "MailboxCreate"
        ],
        "{}",
        dump(evs)
    );
    assert_eq!(uid(&evs[0]), 2);
    assert_eq!(s(&evs[1], "uidset"), "1");
    assert_eq!(s(&evs[2], "uidset"), "1");
    assert_eq!(mbox(&evs[3]), "Polled");
    env.quiet_scan();
}

// ====================================================== lock

#[test]
fn a_second_watcher_on_the_same_state_exits_75() {
    let env = Env::new();
    let first = env.watch();
    let second = env.spawn(&[]).spawn();
    let (code, stderr) = second.wait_exit(WAIT);
    assert_eq!(code, Some(75), "stderr:\n{stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with("maildir-events:")),
        "says why on stderr:\n{stderr}"
    );
    // The first one is unharmed.
    env.md.deliver("", base(1), body("still"));
    first.wait_for("MessageNew", WAIT, |e| has(e, "MessageNew"));
    let evs = first.stop();
    assert_eq!(kinds(alice(&evs)), ["MessageNew"], "{}", dump(&evs));
    // And once it is gone, the state is free again.
    let again = env.watch();
    assert!(again.stop().is_empty());
}

/// When the kernel's inotify watch limit is reached, the folders without a
/// watch are polled: every change in them is still reported, the admin gets
/// one line naming the sysctl and a value for this store (not one warning
/// per folder), systemd's STATUS= and `status` say how many are polled,
/// and once watches can be added again (here: users removed, freeing
/// theirs) polling stops.
#[test]
fn folders_past_the_watch_limit_are_polled() {
    let Some(wrap) = live::with_watch_limit("folders_past_the_watch_limit_are_polled", 20) else {
        return;
    };
    // The folder of any user's event: `imap://USER@HOST/FOLDER;UIDVALIDITY=…`.
    let folder_of = |e: &Value| -> String {
        let url = s(e, "mailboxID");
        let path = url.splitn(4, '/').nth(3).unwrap_or_default();
        path.split(";UIDVALIDITY=")
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let wrap: Vec<&str> = wrap.iter().map(String::as_str).collect();
    let tmp = TempDir::new().unwrap();
    let vmail = tmp.path().join("vmail");
    // 6 users × (INBOX + 2 folders): 7 watches each, 42 in all, 20 allowed.
    let users: Vec<(String, Maildir)> = (0..6)
        .map(|i| {
            let md = Maildir::create(vmail.join(format!("u{i}/Maildir")));
            md.folder(".A");
            md.folder(".B");
            (format!("u{i}"), md)
        })
        .collect();
    let state = tmp.path().join("state");
    let template = format!("{}/{{user}}/Maildir", vmail.display());
    let mut w = Spawn::new(&state, &["--store", &template, "--poll-unwatched", "0.2"])
        .wrapped(&wrap)
        .start();
    let limit_lines = |w: &Watch| {
        w.stderr()
            .lines()
            .filter(|l| l.contains("sysctl -w fs.inotify.max_user_watches="))
            .count()
    };
    // Written before READY=1; our reader of its stderr may lag behind.
    let deadline = Instant::now() + WAIT;
    while limit_lines(&w) == 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        limit_lines(&w),
        1,
        "one line for the admin:\n{}",
        w.stderr()
    );
    assert!(
        w.wait_note("STATUS=", WAIT) && w.notes().iter().any(|n| n.contains("folders polled")),
        "STATUS= says folders are polled: {:?}",
        w.notes()
    );
    let (code, out, err) = live::status(&state);
    assert_eq!(code, Some(0), "{err}");
    let polled = serde_json::from_str::<Value>(&out).unwrap()["watch"]["polledFolders"]
        .as_u64()
        .unwrap_or(0);
    assert!(polled > 0, "status shows polled folders: {out}");

    // A change in every folder of every user is reported, watched or not.
    for (i, (_, md)) in users.iter().enumerate() {
        for (j, folder) in ["", ".A", ".B"].iter().enumerate() {
            md.deliver(folder, base(100 + i * 3 + j), body("hi"));
        }
    }
    let evs = w.wait_for("18 MessageNew", WAIT, |e| {
        e.iter().filter(|e| e["event"] == "MessageNew").count() >= 18
    });
    let got: BTreeSet<(String, String)> = evs
        .iter()
        .filter(|e| e["event"] == "MessageNew")
        .map(|e| (s(e, "user").to_string(), folder_of(e)))
        .collect();
    let want: BTreeSet<(String, String)> = users
        .iter()
        .flat_map(|(u, _)| ["INBOX", "A", "B"].map(|f| (u.clone(), f.to_string())))
        .collect();
    assert_eq!(got, want, "{}", dump(&evs));

    // Four users leave: their watches are freed, the rest fit, polling ends.
    for (_, md) in &users[..4] {
        fs::remove_dir_all(md.root.parent().unwrap()).unwrap();
    }
    let deadline = Instant::now() + WAIT;
    while !w
        .stderr()
        .contains("every folder has an inotify watch again")
    {
        assert!(
            Instant::now() < deadline,
            "polling never stopped:\n{}",
            w.stderr()
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(limit_lines(&w), 1, "still one line:\n{}", w.stderr());
    // And the remaining users are followed live.
    users[5].1.deliver(".B", base(200), body("after"));
    w.wait_for("the last delivery", WAIT, |e| {
        e.iter().any(|e| {
            e["event"] == "MessageNew" && uid(e) >= 2 && folder_of(e) == "B" && s(e, "user") == "u5"
        })
    });
    let evs = w.stop();
    assert_eq!(
        evs.iter().filter(|e| e["event"] == "MessageNew").count(),
        19,
        "no event twice:\n{}",
        dump(&evs)
    );
}
