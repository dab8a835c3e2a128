use super::*;
use crate::snapshot::{DirStamp, UidSource};
use crate::state::schema::SCHEMA;
use serde_json::json;

#[test]
fn application_id_matches_schema() {
    assert!(SCHEMA.contains(&format!("application_id = {APPLICATION_ID};")));
    assert!(SCHEMA.contains(&format!("user_version = {SCHEMA_VERSION};")));
}

/// A state of schema 1 (no access tables) is upgraded at open, keeping
/// what it held, and then stores and returns access positions and
/// sessions.
#[test]
fn schema_1_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    {
        let conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
        conn.execute_batch(
            "DROP TABLE access_positions; DROP TABLE access_sessions; PRAGMA user_version = 1;
             INSERT INTO sources(spec) VALUES ('old');",
        )
        .unwrap();
    }
    let mut store = Store::open(dir.path()).unwrap();
    assert!(store.source_known("old").unwrap());
    let version: i64 = store
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let batch = crate::access::source::Batch {
        positions: vec![crate::access::Position {
            log: "/var/log/x".into(),
            dev: 1,
            ino: 2,
            offset: 3,
            tail: b"ab\n".to_vec(),
            cursor: None,
        }],
        opened: vec![(
            "S".into(),
            crate::access::OpenSession {
                user: "u".into(),
                login_ms: 5,
                client_ip: None,
            },
        )],
        ..Default::default()
    };
    store.commit_access(batch.clone()).unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let r = store.access_state().unwrap();
    assert_eq!(r.positions["/var/log/x"], batch.positions[0]);
    assert_eq!(r.sessions, batch.opened);
}

fn folder(id: i64, dir: &str) -> FolderSnapshot {
    FolderSnapshot {
        id,
        dir: dir.as_bytes().to_vec(),
        name: if dir.is_empty() { "INBOX" } else { dir }.to_string(),
        dev: 1,
        ino: 2,
        uid_source: UidSource::Own,
        uidvalidity: 7,
        guid: None,
        uidnext: 1,
        stamp: DirStamp::default(),
        pending: false,
        count: 0,
        bytes: 0,
        keyword_table: None,
        messages: None,
    }
}

/// Several users in one transaction, and message rows in every size of
/// multi-row INSERT (128 + 16 + 1 rows), read back as written, through
/// the store and through a reader beside it.
#[test]
fn commit_users_writes_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let batch = [(1usize, "a"), (128 + 2 * 16 + 5, "b"), (0, "c")]
        .into_iter()
        .map(|(n, user)| {
            let upserts: Vec<(Vec<u8>, MessageState)> = (0..n)
                .rev()
                .map(|i| {
                    let state = MessageState {
                        uid: i as u32 + 1,
                        flags: Flags(i as u32 % 3),
                        size: i as u64 * 10,
                        in_new: i % 2 == 0,
                    };
                    (format!("{i:05}.M{i}P1.host").into_bytes(), state)
                })
                .collect();
            let diff = UserDiff {
                updates: vec![crate::diff::FolderUpdate {
                    folder: folder(0, ""),
                    upserts,
                    rows: Default::default(),
                    deletes: Vec::new(),
                }],
                ..UserDiff::default()
            };
            UserCommit {
                user: user.to_string(),
                root: PathBuf::from(format!("/m/{user}")),
                change: Some((diff, Vec::new())),
                source: Some("src".to_string()),
            }
        })
        .collect();
    store.commit_users(batch).unwrap();
    let reader = store.reader().unwrap();
    for (user, n) in [("a", 1), ("b", 128 + 2 * 16 + 5), ("c", 0)] {
        for snap in [
            store.load_user(user).unwrap().unwrap(),
            reader.load_user(user).unwrap().unwrap(),
        ] {
            let mut f = snap.folders[b"".as_slice()].clone();
            reader.load_messages(&mut f).unwrap();
            let m = f.messages.unwrap();
            assert_eq!(m.len(), n, "user {user}");
            for i in 0..n {
                let s = m.get(format!("{i:05}.M{i}P1.host").as_bytes()).unwrap();
                assert_eq!(
                    (s.uid, s.size, s.in_new),
                    (i as u32 + 1, i as u64 * 10, i % 2 == 0)
                );
            }
        }
    }
    assert_eq!(
        store.users_of_source("src").unwrap().len(),
        3,
        "the source is recorded in the same transaction"
    );
}

/// Sequence numbers live in memory while a store is open; none is
/// ever used twice: not after every row was delivered and trimmed and
/// the store reopened (as after kill -9), not after a row added by
/// another connection (`dead-letters --replay`), not after a rolled
/// back batch. Rows of a held batch reach the sinks only with its
/// COMMIT.
#[test]
fn sequence_numbers_are_never_used_twice() {
    let dir = tempfile::tempdir().unwrap();
    let event = || Event {
        kind: "MessageNew",
        fields: serde_json::Map::from_iter([("user".to_string(), json!("u"))]),
    };
    let commit = |store: &mut Store, n: usize| {
        let events = (0..n).map(|_| event()).collect();
        store
            .commit("u", Path::new("/m/u"), &UserDiff::default(), events)
            .unwrap();
        store
            .take_committed()
            .iter()
            .map(|r| r.seq)
            .collect::<Vec<_>>()
    };
    let mut store = Store::open_for_watch(dir.path()).unwrap();
    assert_eq!(commit(&mut store, 3), vec![1, 2, 3]);
    // Everything delivered: the outbox is emptied.
    store
        .record_taken(&[("s".into(), 3, Vec::new())], 3)
        .unwrap();
    drop(store);
    let mut store = Store::open_for_watch(dir.path()).unwrap();
    assert_eq!(commit(&mut store, 1), vec![4], "after a trim and reopen");
    // Another connection adds a row at the end (a replay).
    let other = Connection::open(dir.path().join(FILE_NAME)).unwrap();
    other
        .execute(
            "INSERT INTO outbox(seq, event_id, user, event, body, at) VALUES (5, 'x-5', 'u', 'MessageNew', '{}', 0)",
            [],
        )
        .unwrap();
    assert_eq!(commit(&mut store, 1), vec![6], "past a replayed row");
    // A held batch: nothing for the sinks before the COMMIT; a rolled
    // back one gives its numbers back, and nothing of it is kept.
    store.hold().unwrap();
    assert_eq!(commit(&mut store, 2), Vec::<i64>::new());
    store.release().unwrap();
    assert_eq!(store.take_committed().len(), 2);
    store.hold().unwrap();
    commit(&mut store, 2);
    store.abandon();
    assert!(store.take_committed().is_empty());
    assert_eq!(commit(&mut store, 1), vec![9]);
    let n: i64 = store
        .conn
        .query_row("SELECT count(*) FROM outbox WHERE seq > 8", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(n, 1, "the rolled back rows are gone");
}

/// A state database of schema 1 gets the Courier keyword column, and
/// a folder's keyword table is written and read back.
#[test]
fn schema_1_is_upgraded_and_keyword_tables_kept() {
    let dir = tempfile::tempdir().unwrap();
    let commit = |store: &mut Store, table: Option<&str>| {
        let mut f = folder(0, ".Work");
        f.keyword_table = table.map(str::to_string);
        let diff = UserDiff {
            updates: vec![crate::diff::FolderUpdate {
                folder: f,
                upserts: Vec::new(),
                rows: Default::default(),
                deletes: Vec::new(),
            }],
            ..UserDiff::default()
        };
        store
            .commit("u", Path::new("/m/u"), &diff, Vec::new())
            .unwrap();
    };
    {
        let mut store = Store::open(dir.path()).unwrap();
        commit(&mut store, None);
    }
    // Back to schema 1, as an older maildir-events left it.
    let conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
    conn.execute_batch("ALTER TABLE folders DROP COLUMN keywords; PRAGMA user_version = 1;")
        .unwrap();
    drop(conn);
    let mut store = Store::open(dir.path()).unwrap();
    let version: i64 = store
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let snap = store.load_user("u").unwrap().unwrap();
    assert_eq!(snap.folders[b".Work".as_slice()].keyword_table, None);
    let mut f = snap.folders[b".Work".as_slice()].clone();
    f.keyword_table = Some("0 $Label1\n".into());
    let diff = UserDiff {
        updates: vec![crate::diff::FolderUpdate {
            folder: f,
            upserts: Vec::new(),
            rows: Default::default(),
            deletes: Vec::new(),
        }],
        ..UserDiff::default()
    };
    store
        .commit("u", Path::new("/m/u"), &diff, Vec::new())
        .unwrap();
    let snap = store.load_user("u").unwrap().unwrap();
    assert_eq!(
        snap.folders[b".Work".as_slice()].keyword_table.as_deref(),
        Some("0 $Label1\n")
    );
}
