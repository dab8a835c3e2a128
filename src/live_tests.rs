//! Table tests of live application: operations in, events out, in order.

use super::*;
use crate::snapshot::DirStamp;

fn folder(source: UidSource, count: u32, uidnext: u32) -> FolderSnapshot {
    FolderSnapshot {
        id: 1,
        dir: Vec::new(),
        name: "INBOX".into(),
        dev: 1,
        ino: 1,
        uid_source: source,
        uidvalidity: 9,
        guid: None,
        uidnext,
        stamp: DirStamp::default(),
        pending: false,
        count,
        bytes: 0,
        keyword_table: None,
        messages: None,
    }
}

fn op(spec: &str) -> Op {
    // "+cur/name" or "-new/name"
    let (sign, rest) = spec.split_at(1);
    let (sub, name) = rest.split_once('/').unwrap();
    Op {
        in_new: sub == "new",
        name: name.as_bytes().to_vec(),
        present: sign == "+",
        renamed: false,
    }
}

fn state(uid: u32, letters: &str, in_new: bool) -> MessageState {
    MessageState {
        uid,
        flags: Flags::from_letters(letters.as_bytes()),
        size: 0,
        in_new,
    }
}

fn run(
    states: &[(&str, MessageState)],
    server: &[(&str, u32)],
    ops: &[&str],
) -> (Vec<String>, Applied) {
    let states: HashMap<Vec<u8>, MessageState> = states
        .iter()
        .map(|(b, s)| (b.as_bytes().to_vec(), *s))
        .collect();
    let server = ServerUids {
        uidvalidity: 9,
        uidnext: server.iter().map(|s| s.1 + 1).max().unwrap_or(1),
        guid: None,
        by_base: server
            .iter()
            .map(|(b, u)| (b.as_bytes().to_vec(), *u))
            .collect(),
    };
    let f = folder(UidSource::Dovecot, states.len() as u32, 1);
    let kw = Keywords::parse(b"0 $label1\n");
    let live = LiveFolder {
        folder: &f,
        states: &states,
        server: Some(&server),
        keywords: &kw,
        keywords_apart: false,
        info_sep: b':',
        elsewhere: &|b: &[u8]| b == b"copied",
        expired: &|b: &[u8]| b.starts_with(b"old"),
        size_of: &|_: bool, _: &[u8]| Some(100),
    };
    let ops: Vec<Op> = ops.iter().map(|s| op(s)).collect();
    let applied = apply(&live, &ops, 0);
    let text = applied
        .changes
        .iter()
        .map(|c| match c {
            Change::Arrived { arrival, uid, .. } => format!("{arrival:?} {uid}"),
            Change::Flags { changes, .. } => changes
                .iter()
                .map(|c| format!("{}+{}-{}", c.uid, c.gained.letters(), c.lost.letters()))
                .collect::<Vec<_>>()
                .join(","),
            Change::Expunge {
                uids,
                unassigned,
                expire,
                ..
            } => format!(
                "{} {uids:?}+{}",
                if *expire { "Expire" } else { "Expunge" },
                unassigned.len()
            ),
            other => format!("{other:?}"),
        })
        .collect();
    (text, applied)
}

/// (what, stored states, server UIDs, operations, expected changes)
type Case<'a> = (
    &'a str,
    &'a [(&'a str, MessageState)],
    &'a [(&'a str, u32)],
    &'a [&'a str],
    &'a [&'a str],
);

#[test]
fn batches_report_what_happened_in_order() {
    let one = [("a", state(1, "S", false))];
    let two = [("a", state(1, "", false)), ("b", state(2, "", false))];
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("three STOREs are three events", &one, &[],
            &["-cur/a:2,S", "+cur/a:2,FS", "-cur/a:2,FS", "+cur/a:2,FSa", "-cur/a:2,FSa", "+cur/a:2,Sa"],
            &["1+F-", "1+a-", "1+-F"]),
        ("mark all read is one event", &two, &[],
            &["-cur/a:2,", "+cur/a:2,S", "-cur/b:2,", "+cur/b:2,S"], &["1+S-,2+S-"]),
        ("delivery with Dovecot's UID", &[], &[("x", 5)], &["+new/x"], &["New 5"]),
        ("append with flags", &[], &[("x", 5)], &["+cur/x:2,S"], &["Append 5"]),
        ("a copy keeps its base name", &[], &[("copied", 5)], &["+new/copied"], &["Append 5"]),
        ("no UID yet", &[], &[], &["+new/x"], &["New 0"]),
        ("a file only inside the batch is no message", &[], &[], &["+new/tmp1", "-new/tmp1"], &[]),
        ("new/ to cur/ is no event", &[("x", state(3, "", true))], &[], &["-new/x", "+cur/x:2,"], &[]),
        ("vanish and reappear is a flag change", &one, &[], &["-cur/a:2,S", "+cur/a:2,RS"], &["1+R-"]),
        ("deleted then expunged", &one, &[], &["-cur/a:2,S", "+cur/a:2,ST", "-cur/a:2,ST"],
            &["1+T-", "Expunge [1]+0"]),
        ("expunges merge", &two, &[], &["-cur/b:2,", "-cur/a:2,"], &["Expunge [1, 2]+0"]),
        ("arrival then flag change", &[], &[("x", 7)], &["+new/x", "-new/x", "+cur/x:2,F"], &["New 7", "7+F-"]),
        ("P is no flag", &one, &[], &["-cur/a:2,S", "+cur/a:2,PS"], &[]),
        ("expunge then expiry are two events", &[("a", state(1, "", false)), ("old1", state(2, "", false))], &[],
            &["-cur/a:2,", "-cur/old1:2,"], &["Expunge [1]+0", "Expire [2]+0"]),
    ];
    for (what, states, server, ops, want) in cases {
        let (got, _) = run(states, server, ops);
        assert_eq!(got, *want, "{what}");
    }
}

#[test]
fn snapshot_rows_and_counts_follow() {
    let (_, a) = run(
        &[("a", state(1, "", false)), ("b", state(2, "", false))],
        &[("x", 3)],
        &["-cur/a:2,", "+new/x", "-cur/b:2,", "+cur/b:2,F"],
    );
    assert_eq!(a.mailbox.messages, 2);
    assert_eq!(a.mailbox.uidnext, 4);
    assert_eq!(a.update.deletes, [b"a".to_vec()]);
    let mut up: Vec<_> = a
        .update
        .upserts
        .iter()
        .map(|(b, s)| {
            (
                String::from_utf8_lossy(b).into_owned(),
                s.uid,
                s.flags.letters(),
            )
        })
        .collect();
    up.sort();
    assert_eq!(
        up,
        [
            ("b".to_string(), 2, "F".to_string()),
            ("x".to_string(), 3, String::new())
        ]
    );
    assert!(!a.update.folder.stamp.trusted);
    assert!(!a.doubtful);
}

#[test]
fn unknown_removals_are_doubtful() {
    let (got, a) = run(&[], &[], &["-cur/ghost:2,S"]);
    assert!(got.is_empty());
    assert!(a.doubtful);
}

#[test]
fn own_uids_are_assigned_in_arrival_order() {
    let states = HashMap::new();
    let f = folder(UidSource::Own, 0, 10);
    let kw = Keywords::default();
    let live = LiveFolder {
        folder: &f,
        states: &states,
        server: None,
        keywords: &kw,
        keywords_apart: false,
        info_sep: b':',
        elsewhere: &|_: &[u8]| false,
        expired: &|_: &[u8]| false,
        size_of: &|_: bool, _: &[u8]| None,
    };
    let a = apply(&live, &[op("+new/p"), op("+new/q")], 0);
    let uids: Vec<u32> = a
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::Arrived { uid, .. } => Some(*uid),
            _ => None,
        })
        .collect();
    assert_eq!(uids, [10, 11]);
    assert_eq!(a.update.folder.uidnext, 12);
}

/// Courier keeps keywords out of file names: a rename for `\Seen` keeps
/// the keyword bits the message had, rather than clearing them.
#[test]
fn keywords_kept_apart_survive_renames() {
    let states: HashMap<Vec<u8>, MessageState> = [(b"m".to_vec(), state(4, "Fa", false))]
        .into_iter()
        .collect();
    let f = folder(UidSource::Courier, 1, 5);
    let kw = Keywords::parse(b"0 $Label1\n");
    for (apart, want) in [(true, "4+S-"), (false, "4+S-a")] {
        let live = LiveFolder {
            folder: &f,
            states: &states,
            server: None,
            keywords: &kw,
            keywords_apart: apart,
            info_sep: b':',
            elsewhere: &|_: &[u8]| false,
            expired: &|_: &[u8]| false,
            size_of: &|_: bool, _: &[u8]| None,
        };
        let a = apply(&live, &[op("-cur/m:2,F"), op("+cur/m:2,FS")], 0);
        let got: Vec<String> = a
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Flags { changes, .. } => Some(
                    changes
                        .iter()
                        .map(|c| format!("{}+{}-{}", c.uid, c.gained.letters(), c.lost.letters()))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                _ => None,
            })
            .collect();
        assert_eq!(got, [want], "keywords_apart {apart}");
        let kept = a.update.upserts[0].1.flags;
        assert_eq!(kept.keyword_indexes().next().is_some(), apart);
    }
}
