//! Table tests of the diff: snapshot + listing → changes, with no disk.

use std::collections::BTreeMap;

use super::*;
use crate::scan::UidHeader;
use crate::snapshot::DirStamp;

/// A folder on "disk": dir, inode, uidlist (validity, [(uid, base)]) and
/// file names (`new/x` or `cur/x:2,FS`).
struct Disk<'a> {
    dir: &'a str,
    ino: u64,
    uids: Option<(u32, &'a [(u32, &'a str)])>,
    files: &'a [&'a str],
}

fn listing(folders: &[Disk], subs: &[&str]) -> UserListing {
    let mut out = UserListing {
        root: "/m".into(),
        exists: true,
        folders: BTreeMap::new(),
        subscriptions: Some(subs.iter().map(|s| s.to_string()).collect()),
        dovecot: false,
    };
    for d in folders {
        let mut msgs = crate::listing::Listing::default();
        for f in d.files {
            let (sub, file) = f.split_once('/').unwrap();
            let p = crate::maildir::name::parse(file.as_bytes(), b':').unwrap();
            msgs.push(file.as_bytes(), p.base.len(), sub == "new", p.flags, p.size)
                .unwrap();
        }
        msgs.finish();
        // The server's UIDs, joined into the listing as a scan does.
        for (u, b) in d.uids.map_or(&[][..], |(_, recs)| recs) {
            if let Some(i) = msgs.find(b.as_bytes()) {
                msgs.set_uid(i, *u);
            }
        }
        let server_uids = d.uids.map(|(v, recs)| UidHeader {
            uidvalidity: v,
            uidnext: recs.iter().map(|r| r.0 + 1).max().unwrap_or(1),
            guid: None,
        });
        let name = if d.dir.is_empty() {
            "INBOX".to_string()
        } else {
            d.dir[1..].to_string()
        };
        out.folders.insert(
            d.dir.as_bytes().to_vec(),
            FolderListing {
                dir: d.dir.as_bytes().to_vec(),
                name,
                dev: 1,
                ino: d.ino,
                stamp: DirStamp::default(),
                contents: Contents::Listed(msgs),
                uid_source: if server_uids.is_some() {
                    UidSource::Dovecot
                } else {
                    UidSource::Own
                },
                server_uids,
                keywords: Keywords::parse(b"0 $Junk\n1 $label1\n"),
                keyword_table: None,
            },
        );
    }
    out
}

/// The snapshot a previous diff of `disk` would have stored.
fn snapshot(disk: &UserListing) -> UserSnapshot {
    let d = diff_user(
        &UserSnapshot::default(),
        disk.clone(),
        &input(&|_, _| false),
    );
    let mut snap = UserSnapshot {
        subscriptions: disk.subscriptions.clone().unwrap(),
        ..UserSnapshot::default()
    };
    for (i, u) in d.updates.into_iter().enumerate() {
        let mut f = u.folder;
        f.id = i as i64 + 1;
        f.messages = Some(u.rows);
        snap.folders.insert(f.dir.clone(), f);
    }
    snap
}

/// The diff, checked to be the same with the snapshot of each listed
/// folder joined into its listing (as a scan loads it) as with the
/// snapshot held apart.
fn diff_both(old: &UserSnapshot, new: &UserListing, input: &DiffInput) -> UserDiff {
    let apart = diff_user(old, new.clone(), input);
    let (mut old_j, mut new_j) = (old.clone(), new.clone());
    for f in old_j.folders.values_mut() {
        let Some(messages) = f.messages.take() else {
            continue;
        };
        match new_j.folders.get_mut(&f.dir).map(|l| &mut l.contents) {
            Some(Contents::Listed(l)) => {
                let mut j = l.join(f.uidvalidity);
                for (base, state) in messages.iter() {
                    j.row(base, state);
                }
                f.messages = Some(j.finish());
            }
            _ => f.messages = Some(messages),
        }
    }
    let joined = diff_user(&old_j, new_j, input);
    assert_eq!(apart, joined, "the diff of a joined snapshot differs");
    apart
}

fn input<'a>(elsewhere: &'a dyn Fn(&[u8], &[u8]) -> bool) -> DiffInput<'a> {
    DiffInput {
        own_uidvalidity: 1_700_000_000,
        hier_sep: '.',
        elsewhere,
        // Everything expunged from Trash has expired.
        expired: &|folder: &str, _: &[u8]| folder == "Trash",
        silent: false,
    }
}

/// A compact text of each change: `Kind mailbox detail`.
fn summary(d: &UserDiff) -> Vec<String> {
    let name = |i: &usize| d.mailboxes[*i].name.clone();
    d.changes
        .iter()
        .map(|c| match c {
            Change::MailboxCreate { mailbox } => format!("Create {}", name(mailbox)),
            Change::MailboxRename {
                mailbox, old_name, ..
            } => format!("Rename {old_name}->{}", name(mailbox)),
            Change::MailboxDelete { name, .. } => format!("Delete {name}"),
            Change::Arrived {
                mailbox,
                arrival,
                uid,
                ..
            } => format!("{arrival:?} {} {uid}", name(mailbox)),
            Change::Flags { mailbox, changes } => {
                let mut parts: Vec<String> = changes
                    .iter()
                    .map(|c| format!("{}+{}-{}", c.uid, c.gained.letters(), c.lost.letters()))
                    .collect();
                parts.sort();
                format!("Flags {} {}", name(mailbox), parts.join(","))
            }
            Change::Expunge {
                mailbox,
                uids,
                unassigned,
                expire,
            } => format!(
                "{} {} {uids:?}+{}",
                if *expire { "Expire" } else { "Expunge" },
                name(mailbox),
                unassigned.len()
            ),
            Change::Quota { event, .. } => format!("{event:?}"),
            Change::Subscribe { name } => format!("Subscribe {name}"),
            Change::Unsubscribe { name } => format!("Unsubscribe {name}"),
        })
        .collect()
}

const U: &[(u32, &str)] = &[(1, "1.M1P1.h"), (2, "2.M1P1.h"), (3, "3.M1P1.h")];

#[test]
fn message_changes() {
    let before = [Disk {
        dir: "",
        ino: 1,
        uids: Some((7, U)),
        files: &["new/1.M1P1.h", "cur/2.M1P1.h:2,S"],
    }];
    #[rustfmt::skip]
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("nothing", &["new/1.M1P1.h", "cur/2.M1P1.h:2,S"], &[]),
        ("new/ to cur/ is no event", &["cur/1.M1P1.h:2,", "cur/2.M1P1.h:2,S"], &[]),
        ("delivery", &["new/1.M1P1.h", "cur/2.M1P1.h:2,S", "new/3.M1P1.h"], &["New INBOX 3"]),
        ("append in cur", &["new/1.M1P1.h", "cur/2.M1P1.h:2,S", "cur/3.M1P1.h:2,S"], &["Append INBOX 3"]),
        ("read", &["cur/1.M1P1.h:2,S", "cur/2.M1P1.h:2,S"], &["Flags INBOX 1+S-"]),
        ("unread + flagged + keyword", &["new/1.M1P1.h", "cur/2.M1P1.h:2,Fb"], &["Flags INBOX 2+Fb-S"]),
        ("P is not a flag change", &["new/1.M1P1.h", "cur/2.M1P1.h:2,PS"], &[]),
        ("expunge", &["cur/2.M1P1.h:2,S"], &["Expunge INBOX [1]+0"]),
        ("expunge all", &[], &["Expunge INBOX [1, 2]+0"]),
    ];
    for (what, files, want) in cases {
        let old = snapshot(&listing(&before, &[]));
        let new = listing(
            &[Disk {
                dir: "",
                ino: 1,
                uids: Some((7, U)),
                files,
            }],
            &[],
        );
        let d = diff_both(&old, &new, &input(&|_, _| false));
        assert_eq!(summary(&d), *want, "{what}");
    }
}

#[test]
fn copies_and_moves_are_appends() {
    let before = listing(
        &[
            Disk {
                dir: "",
                ino: 1,
                uids: Some((7, U)),
                files: &["new/1.M1P1.h", "cur/2.M1P1.h:2,S"],
            },
            Disk {
                dir: ".Archive",
                ino: 2,
                uids: Some((8, &[])),
                files: &[],
            },
        ],
        &[],
    );
    let old = snapshot(&before);
    // MOVE: gone from INBOX, in Archive's new/ under the same base name.
    let after = listing(
        &[
            Disk {
                dir: "",
                ino: 1,
                uids: Some((7, U)),
                files: &["cur/2.M1P1.h:2,S"],
            },
            Disk {
                dir: ".Archive",
                ino: 2,
                uids: Some((8, &[(1, "1.M1P1.h")])),
                files: &["new/1.M1P1.h"],
            },
        ],
        &[],
    );
    let d = diff_both(&old, &after, &input(&|_, _| false));
    assert_eq!(summary(&d), ["Expunge INBOX [1]+0", "Append Archive 1"]);

    // COPY from a folder that was not loaded: the store says it is elsewhere.
    let mut old = snapshot(&before);
    old.folders.get_mut(b"".as_slice()).unwrap().messages = None;
    let after = listing(
        &[Disk {
            dir: ".Archive",
            ino: 2,
            uids: Some((8, &[(1, "1.M1P1.h")])),
            files: &["new/1.M1P1.h"],
        }],
        &[],
    );
    let mut after_all = after.clone();
    after_all.folders.insert(b"".to_vec(), {
        let mut f = before.folders[b"".as_slice()].clone();
        f.contents = Contents::Unchanged;
        f
    });
    let asked = |dir: &[u8], base: &[u8]| dir == b".Archive" && base == b"1.M1P1.h";
    let d = diff_both(&old, &after_all, &input(&asked));
    assert_eq!(summary(&d), ["Append Archive 1"]);
    let d = diff_both(&old, &after_all, &input(&|_, _| false));
    assert_eq!(
        summary(&d),
        ["New Archive 1"],
        "without the store's answer it looks like a delivery"
    );
}

#[test]
fn folder_changes() {
    let before = listing(
        &[
            Disk {
                dir: "",
                ino: 1,
                uids: None,
                files: &[],
            },
            Disk {
                dir: ".A",
                ino: 10,
                uids: None,
                files: &["cur/5.M1P1.h:2,S"],
            },
            Disk {
                dir: ".A.x",
                ino: 11,
                uids: None,
                files: &[],
            },
            Disk {
                dir: ".Old",
                ino: 12,
                uids: None,
                files: &["cur/6.M1P1.h:2,"],
            },
        ],
        &["A", "Old"],
    );
    let old = snapshot(&before);
    let after = listing(
        &[
            Disk {
                dir: "",
                ino: 1,
                uids: None,
                files: &[],
            },
            Disk {
                dir: ".B",
                ino: 10,
                uids: None,
                files: &["cur/5.M1P1.h:2,S"],
            },
            Disk {
                dir: ".B.x",
                ino: 11,
                uids: None,
                files: &[],
            },
            Disk {
                dir: ".New",
                ino: 13,
                uids: None,
                files: &[],
            },
        ],
        &["A", "New"],
    );
    let d = diff_both(&old, &after, &input(&|_, _| false));
    assert_eq!(
        summary(&d),
        [
            "Rename A->B",
            "Create New",
            "Delete Old",
            "Subscribe New",
            "Unsubscribe Old"
        ],
        "the child's rename is implied; subscriptions stay as written (Dovecot does not rewrite them on RENAME)"
    );
    assert_eq!(d.deleted, [old.folders[b".Old".as_slice()].id]);
    // The renamed folders keep their rows and UIDs.
    let b = d.updates.iter().find(|u| u.folder.dir == b".B").unwrap();
    assert_eq!(b.folder.id, old.folders[b".A".as_slice()].id);
    assert!(
        b.rows.is_empty() && b.upserts.is_empty(),
        "no message changed in the renamed folder"
    );
}

#[test]
fn own_uids_follow_dovecot_order_and_stay() {
    let files = &[
        "new/1700000002.M5P1.h",
        "new/1700000001.M9P1.h",
        "new/1700000002.M10P1.h",
    ];
    let first = listing(
        &[Disk {
            dir: "",
            ino: 1,
            uids: None,
            files,
        }],
        &[],
    );
    let d = diff_both(&UserSnapshot::default(), &first, &input(&|_, _| false));
    let uid_of = |d: &UserDiff, base: &str| d.updates[0].rows.get(base.as_bytes()).map(|s| s.uid);
    assert_eq!(uid_of(&d, "1700000001.M9P1.h"), Some(1));
    assert_eq!(uid_of(&d, "1700000002.M5P1.h"), Some(2));
    assert_eq!(
        uid_of(&d, "1700000002.M10P1.h"),
        Some(3),
        "microseconds compare as numbers"
    );
    assert_eq!(d.updates[0].folder.uidvalidity, 1_700_000_000);

    // A later delivery gets the next UID; the old ones are kept.
    let old = snapshot(&first);
    let mut files2 = files.to_vec();
    files2.push("new/1600000000.M1P1.h");
    let second = listing(
        &[Disk {
            dir: "",
            ino: 1,
            uids: None,
            files: &files2,
        }],
        &[],
    );
    let d = diff_both(&old, &second, &input(&|_, _| false));
    assert_eq!(
        summary(&d),
        ["New INBOX 4"],
        "an older name still gets the next UID"
    );
}

#[test]
fn dovecot_uids_win_and_missing_ones_wait() {
    let before = listing(
        &[Disk {
            dir: "",
            ino: 1,
            uids: None,
            files: &["new/1.M1P1.h"],
        }],
        &[],
    );
    let old = snapshot(&before);
    // Dovecot has numbered the old file and not yet the new one.
    let after = listing(
        &[Disk {
            dir: "",
            ino: 1,
            uids: Some((42, &[(5, "1.M1P1.h")])),
            files: &["new/1.M1P1.h", "new/2.M1P1.h"],
        }],
        &[],
    );
    let d = diff_both(&old, &after, &input(&|_, _| false));
    assert_eq!(summary(&d), ["New INBOX 0"]);
    let f = &d.updates[0].folder;
    assert_eq!(
        (f.uid_source, f.uidvalidity, f.pending),
        (UidSource::Dovecot, 42, true)
    );
    assert_eq!(d.mailboxes[0].uidnext, 6);
}

#[test]
fn unreadable_and_unchanged_folders_keep_their_snapshot() {
    let before = listing(
        &[Disk {
            dir: "",
            ino: 1,
            uids: None,
            files: &["new/1.M1P1.h"],
        }],
        &[],
    );
    let old = snapshot(&before);
    for contents in [Contents::Unchanged, Contents::Unreadable] {
        let mut after = before.clone();
        after.folders.get_mut(b"".as_slice()).unwrap().contents = contents.clone();
        after.subscriptions = None;
        let d = diff_both(&old, &after, &input(&|_, _| false));
        assert_eq!(summary(&d), Vec::<String>::new(), "{contents:?}");
        assert!(d.updates.is_empty() && d.deleted.is_empty() && d.subscriptions.is_none());
    }
}

#[test]
fn expunges_matching_an_expire_rule_are_expiries() {
    let before = listing(
        &[
            Disk {
                dir: "",
                ino: 1,
                uids: None,
                files: &["cur/1.M1P1.h:2,S"],
            },
            Disk {
                dir: ".Trash",
                ino: 2,
                uids: None,
                files: &["cur/2.M1P1.h:2,S", "cur/3.M1P1.h:2,S"],
            },
        ],
        &[],
    );
    let old = snapshot(&before);
    let after = listing(
        &[
            Disk {
                dir: "",
                ino: 1,
                uids: None,
                files: &[],
            },
            Disk {
                dir: ".Trash",
                ino: 2,
                uids: None,
                files: &[],
            },
        ],
        &[],
    );
    let d = diff_both(&old, &after, &input(&|_, _| false));
    assert_eq!(
        summary(&d),
        ["Expunge INBOX [1]+0", "Expire Trash [1, 2]+0"]
    );
    let trash = d
        .updates
        .iter()
        .find(|u| u.folder.dir == b".Trash")
        .unwrap();
    assert_eq!((trash.folder.count, trash.folder.bytes), (0, 0));
}

/// A server's list that goes away (Courier deletes a folder file by file,
/// and deletes a renamed folder's list before writing a new one) keeps the
/// folder's UIDVALIDITY and UIDs; a list with a new UIDVALIDITY then takes
/// over, silently.
#[test]
fn a_vanished_uid_list_renumbers_nothing() {
    let with_list = [Disk {
        dir: ".Job",
        ino: 5,
        uids: Some((7, U)),
        files: &["cur/1.M1P1.h:2,S", "cur/2.M1P1.h:2,", "cur/3.M1P1.h:2,"],
    }];
    let snap = snapshot(&listing(&with_list, &[]));
    let gone = listing(
        &[Disk {
            dir: ".Job",
            ino: 5,
            uids: None,
            files: &["cur/1.M1P1.h:2,S", "new/4.M1P1.h"],
        }],
        &[],
    );
    let d = diff_both(&snap, &gone, &input(&|_, _| false));
    assert_eq!(summary(&d), ["New Job 0", "Expunge Job [2, 3]+0"]);
    assert_eq!(d.mailboxes[0].uidvalidity, 7);
    let f = &d.updates[0].folder;
    assert_eq!(
        (f.uid_source, f.uidvalidity, f.uidnext),
        (UidSource::Dovecot, 7, 4)
    );

    // The server's new list: its numbers stand, and no event says so (the
    // message that stayed is not reported again).
    let renumbered = listing(
        &[Disk {
            dir: ".Job",
            ino: 5,
            uids: Some((9, &[(1, "1.M1P1.h")])),
            files: &["cur/1.M1P1.h:2,S"],
        }],
        &[],
    );
    let d = diff_both(&snap, &renumbered, &input(&|_, _| false));
    assert_eq!(d.mailboxes[0].uidvalidity, 9);
    assert_eq!(summary(&d), ["Expunge Job []+2"]);
}

#[test]
fn copies_are_told_alike_with_and_without_the_hash_index() {
    // Two folders of 200 messages sharing 10 names, and the snapshot of
    // one of them joined into its listing.
    let inbox: Vec<String> = (0..200).map(|i| format!("cur/{i}.M1P1.h:2,S")).collect();
    let work: Vec<String> = (190..390).map(|i| format!("cur/{i}.M1P1.h:2,S")).collect();
    let inbox: Vec<&str> = inbox.iter().map(String::as_str).collect();
    let work: Vec<&str> = work.iter().map(String::as_str).collect();
    let disk = [
        Disk {
            dir: "",
            ino: 1,
            uids: None,
            files: &inbox,
        },
        Disk {
            dir: ".Work",
            ino: 2,
            uids: None,
            files: &work,
        },
    ];
    let new = listing(&disk, &[]);
    let old = snapshot(&listing(&disk[..1], &[]));
    let seen = Seen::new(&old, &new);
    let asks: [(&str, &str, bool); 5] = [
        ("", "195.M1P1.h", true),
        ("", "5.M1P1.h", false),
        (".Work", "5.M1P1.h", true),
        (".Work", "300.M1P1.h", false),
        ("", "999.M1P1.h", false),
    ];
    for round in 0..2 {
        for (dir, base, want) in asks {
            assert_eq!(
                seen.elsewhere(dir.as_bytes(), base.as_bytes()),
                want,
                "{dir:?} {base} (index built: {})",
                seen.index.get().is_some()
            );
        }
        assert_eq!(seen.index.get().is_some(), round == 1);
        // Enough searches to make the index worth it.
        for _ in 0..200 {
            seen.elsewhere(b"", b"0.M1P1.h");
        }
    }
}
