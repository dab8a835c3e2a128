//! The SQL of the state's rows: users' and folders' snapshots, message
//! rows in bulk, and numbered outbox rows.

use super::store::OutboxRow;
use crate::diff::UserDiff;
use crate::event::Event;
use crate::listing::Listing;
use crate::maildir::name::Flags;
use crate::quota::{Limits, QuotaState};
use crate::snapshot::{DirStamp, FolderSnapshot, MessageState, Messages, UidSource, UserSnapshot};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub(super) fn load_user(conn: &Connection, user: &str) -> rusqlite::Result<Option<UserSnapshot>> {
    let row = conn
        .prepare_cached(
            "SELECT subscriptions, quota_known, quota_bytes, quota_messages, quota_over FROM users WHERE user = ?1",
        )?
        .query_row([user], |r| {
            let state = QuotaState {
                limits: Limits {
                    bytes: r.get::<_, Option<i64>>(2)?.map(|n| n as u64),
                    messages: r.get::<_, Option<i64>>(3)?.map(|n| n as u64),
                },
                over: r.get(4)?,
            };
            Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?.then_some(state)))
        })
        .optional()?;
    let Some((subs, quota)) = row else {
        return Ok(None);
    };
    let mut snap = UserSnapshot {
        subscriptions: serde_json::from_str::<BTreeSet<String>>(&subs).unwrap_or_default(),
        quota,
        ..UserSnapshot::default()
    };
    let mut stmt = conn.prepare_cached(
        "SELECT id, dir, name, dev, ino, uid_source, uidvalidity, guid, uidnext,
                new_mtime, cur_mtime, uidlist_mtime, uidlist_len, trusted, pending, count, bytes, keywords
         FROM folders WHERE user = ?1",
    )?;
    let rows = stmt.query_map([user], |r| {
        Ok(FolderSnapshot {
            id: r.get(0)?,
            dir: r.get(1)?,
            name: r.get(2)?,
            dev: r.get::<_, i64>(3)? as u64,
            ino: r.get::<_, i64>(4)? as u64,
            uid_source: UidSource::parse(&r.get::<_, String>(5)?).unwrap_or(UidSource::Own),
            uidvalidity: r.get(6)?,
            guid: r.get(7)?,
            uidnext: r.get(8)?,
            stamp: DirStamp {
                new_mtime: r.get(9)?,
                cur_mtime: r.get(10)?,
                uidlist_mtime: r.get(11)?,
                uidlist_len: r.get::<_, i64>(12)? as u64,
                trusted: r.get(13)?,
            },
            pending: r.get(14)?,
            count: r.get(15)?,
            bytes: r.get::<_, i64>(16)? as u64,
            keyword_table: r.get(17)?,
            messages: None,
        })
    })?;
    for f in rows {
        let f = f?;
        snap.folders.insert(f.dir.clone(), f);
    }
    Ok(Some(snap))
}

/// Loads a folder's rows compactly, in base-name order (see
/// [`each_message`]).
pub(super) fn load_messages(
    conn: &Connection,
    folder: &mut FolderSnapshot,
) -> rusqlite::Result<()> {
    let mut messages = Messages::with_capacity(folder.count as usize);
    each_message(conn, folder.id, &mut |base, state| {
        messages.push(base, state);
    })?;
    messages.sort();
    folder.messages = Some(messages);
    Ok(())
}

/// See [`Store::join_messages`].
pub(super) fn join_messages(
    conn: &Connection,
    folder: &mut FolderSnapshot,
    listing: &mut Listing,
) -> rusqlite::Result<()> {
    let mut joiner = listing.join(folder.uidvalidity);
    // A row out of order (only a base stored as TEXT by hand could be)
    // goes with the rest, which are sorted at the end.
    let mut last: Vec<u8> = Vec::new();
    let mut odd = Messages::default();
    each_message(conn, folder.id, &mut |base, state| {
        if base > last.as_slice() {
            joiner.row(base, state);
            last.clear();
            last.extend_from_slice(base);
        } else {
            odd.push(base, state);
        }
    })?;
    let mut gone = joiner.finish();
    for (base, state) in odd.iter() {
        gone.push(base, state);
    }
    gone.sort();
    folder.messages = Some(gone);
    Ok(())
}

/// Calls `each` with a folder's rows in base-name order: the primary
/// key's order, so SQLite walks the b-tree without sorting, and the diff
/// merges them with the listing sorted the same way (SQLite compares
/// BLOBs as `memcmp` does).
fn each_message(
    conn: &Connection,
    folder: i64,
    each: &mut dyn FnMut(&[u8], MessageState),
) -> rusqlite::Result<()> {
    if folder == 0 {
        return Ok(());
    }
    let mut stmt = conn.prepare_cached(
        "SELECT base, uid, flags, size, in_new FROM messages WHERE folder = ?1 ORDER BY base",
    )?;
    let mut rows = stmt.query([folder])?;
    while let Some(r) = rows.next()? {
        let base = match r.get_ref(0)? {
            rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b) => b,
            _ => continue,
        };
        let state = MessageState {
            uid: r.get(1)?,
            flags: Flags(r.get::<_, i64>(2)? as u32),
            size: r.get::<_, i64>(3)? as u64,
            in_new: r.get(4)?,
        };
        each(base, state);
    }
    Ok(())
}

pub(super) fn base_elsewhere(
    conn: &Connection,
    user: &str,
    dir: &[u8],
    base: &[u8],
) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        // One primary-key lookup per folder of the user: no index on base
        // names is needed (it would double the state's size and slow every
        // insert).
        "SELECT 1 FROM folders f CROSS JOIN messages m ON m.folder = f.id AND m.base = ?1
         WHERE f.user = ?2 AND f.dir != ?3 LIMIT 1",
    )?
    .exists(params![base, user, dir])
}

pub(super) fn write_user(
    tx: &Connection,
    user: &str,
    root: &Path,
    diff: &UserDiff,
) -> rusqlite::Result<()> {
    let exists = tx
        .prepare_cached("SELECT 1 FROM users WHERE user = ?1")?
        .exists([user])?;
    let root_bytes = root.as_os_str().as_bytes();
    if !exists {
        let subs = diff.subscriptions.clone().unwrap_or_default();
        tx.prepare_cached("INSERT INTO users(user, root, subscriptions) VALUES (?1, ?2, ?3)")?
            .execute(params![user, root_bytes, json!(subs).to_string()])?;
    } else if let Some(subs) = &diff.subscriptions {
        tx.prepare_cached("UPDATE users SET root = ?2, subscriptions = ?3 WHERE user = ?1")?
            .execute(params![user, root_bytes, json!(subs).to_string()])?;
    }
    if let Some(q) = &diff.quota {
        tx.prepare_cached(
            "UPDATE users SET quota_known = 1, quota_bytes = ?2, quota_messages = ?3, quota_over = ?4 WHERE user = ?1",
        )?
        .execute(params![
            user,
            q.limits.bytes.map(|n| n as i64),
            q.limits.messages.map(|n| n as i64),
            q.over
        ])?;
    }
    for id in &diff.deleted {
        tx.prepare_cached("DELETE FROM messages WHERE folder = ?1")?
            .execute([id])?;
        tx.prepare_cached("DELETE FROM folders WHERE id = ?1")?
            .execute([id])?;
    }
    // Renames may swap names; move renamed rows out of the way first so the
    // UNIQUE(user, dir) constraint holds at every step. (Cached: this runs
    // for every folder of every live commit.)
    let mut moved = std::collections::HashSet::new();
    for u in diff.updates.iter().filter(|u| u.folder.id != 0) {
        let n = tx
            .prepare_cached(
                "UPDATE folders SET dir = CAST(printf('\x01moving-%d', id) AS BLOB) WHERE id = ?1 AND dir != ?2",
            )?
            .execute(params![u.folder.id, u.folder.dir])?;
        if n > 0 {
            moved.insert(u.folder.id);
        }
    }
    let mut delete_msg =
        tx.prepare_cached("DELETE FROM messages WHERE folder = ?1 AND base = ?2")?;
    for u in &diff.updates {
        let f = &u.folder;
        let values = params![
            user,
            f.dir,
            f.name,
            f.dev as i64,
            f.ino as i64,
            f.uid_source.as_str(),
            f.uidvalidity,
            f.guid,
            f.uidnext,
            f.stamp.new_mtime,
            f.stamp.cur_mtime,
            f.stamp.uidlist_mtime,
            f.stamp.uidlist_len as i64,
            f.stamp.trusted,
            f.pending,
            f.count,
            f.bytes as i64,
            f.keyword_table,
        ];
        let id = if f.id == 0 {
            tx.prepare_cached(
                "INSERT INTO folders(user, dir, name, dev, ino, uid_source, uidvalidity, guid, uidnext,
                     new_mtime, cur_mtime, uidlist_mtime, uidlist_len, trusted, pending, count, bytes, keywords)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
            )?
            .execute(values)?;
            tx.last_insert_rowid()
        } else if moved.contains(&f.id) {
            tx.prepare_cached(
                "UPDATE folders SET user = ?1, dir = ?2, name = ?3, dev = ?4, ino = ?5, uid_source = ?6,
                     uidvalidity = ?7, guid = ?8, uidnext = ?9, new_mtime = ?10, cur_mtime = ?11,
                     uidlist_mtime = ?12, uidlist_len = ?13, trusted = ?14, pending = ?15, count = ?16, bytes = ?17,
                     keywords = ?18
                 WHERE id = ?19",
            )?
            .execute(rusqlite::params_from_iter(
                values.iter().copied().chain([&f.id as &dyn rusqlite::ToSql]),
            ))?;
            f.id
        } else {
            // The folder kept its place: its (user, dir) index entry is
            // left alone, which saves a page write per folder and commit.
            tx.prepare_cached(
                "UPDATE folders SET name = ?3, dev = ?4, ino = ?5, uid_source = ?6,
                     uidvalidity = ?7, guid = ?8, uidnext = ?9, new_mtime = ?10, cur_mtime = ?11,
                     uidlist_mtime = ?12, uidlist_len = ?13, trusted = ?14, pending = ?15, count = ?16, bytes = ?17,
                     keywords = ?18
                 WHERE id = ?19 AND user = ?1 AND dir = ?2",
            )?
            .execute(rusqlite::params_from_iter(
                values.iter().copied().chain([&f.id as &dyn rusqlite::ToSql]),
            ))?;
            f.id
        };
        for base in &u.deletes {
            delete_msg.execute(params![id, base])?;
        }
        let mut rows: Vec<(&[u8], MessageState)> =
            u.upserts.iter().map(|(b, m)| (b.as_slice(), *m)).collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        insert_messages(tx, id, rows)?;
        insert_messages(tx, id, u.rows.iter())?;
    }
    Ok(())
}

/// Rows per multi-row INSERT (6 values each, well under SQLite's limit of
/// 32,766 bound values).
const INSERT_ROWS: usize = 128;

/// Writes a folder's new and changed message rows: in key order, so a new
/// folder's rows are appended to the b-tree instead of landing on random
/// leaves, and [`INSERT_ROWS`] rows per statement, so a million rows cost
/// thousands of statement steps, not a million.
fn insert_messages<'a>(
    tx: &Connection,
    folder: i64,
    rows: impl IntoIterator<Item = (&'a [u8], MessageState)>,
) -> rusqlite::Result<()> {
    // Taken INSERT_ROWS at a time from the (sorted) rows: a folder of a
    // million rows is never copied whole.
    let mut rows = rows.into_iter().peekable();
    let mut chunk: Vec<(&[u8], MessageState)> = Vec::with_capacity(INSERT_ROWS);
    while rows.peek().is_some() {
        chunk.clear();
        chunk.extend(rows.by_ref().take(INSERT_ROWS));
        let mut rest = chunk.as_slice();
        insert_chunk(tx, folder, &mut rest)?;
    }
    Ok(())
}

/// Inserts at most [`INSERT_ROWS`] rows, in statements of three sizes only,
/// so they stay in the statement cache.
fn insert_chunk(
    tx: &Connection,
    folder: i64,
    rest: &mut &[(&[u8], MessageState)],
) -> rusqlite::Result<()> {
    for n in [INSERT_ROWS, 16, 1] {
        let sql = insert_sql(n);
        while rest.len() >= n {
            let (chunk, tail) = rest.split_at(n);
            *rest = tail;
            let mut stmt = tx.prepare_cached(sql)?;
            let mut i = 1;
            for (base, m) in chunk {
                stmt.raw_bind_parameter(i, folder)?;
                stmt.raw_bind_parameter(i + 1, base)?;
                stmt.raw_bind_parameter(i + 2, m.uid)?;
                stmt.raw_bind_parameter(i + 3, m.flags.0 as i64)?;
                stmt.raw_bind_parameter(i + 4, m.size as i64)?;
                stmt.raw_bind_parameter(i + 5, m.in_new)?;
                i += 6;
            }
            stmt.raw_execute()?;
        }
    }
    Ok(())
}

/// The INSERT of `n` message rows (one of the sizes `insert_messages` uses).
fn insert_sql(n: usize) -> &'static str {
    use std::sync::OnceLock;
    static SQL: [OnceLock<String>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = match n {
        INSERT_ROWS => 0,
        16 => 1,
        _ => 2,
    };
    SQL[slot].get_or_init(|| {
        let mut q = String::from(
            "INSERT OR REPLACE INTO messages(folder, base, uid, flags, size, in_new) VALUES ",
        );
        for i in 0..n {
            if i > 0 {
                q.push(',');
            }
            q.push_str("(?,?,?,?,?,?)");
        }
        q
    })
}

/// Numbers the events from `next` on and puts them in the outbox.
///
/// A row another process added (`dead-letters --replay`) is never
/// numbered over: `next` moves past the outbox's last row first (one
/// b-tree probe, no write).
pub(super) fn enqueue(
    tx: &Connection,
    instance: &str,
    next: &mut i64,
    events: impl ExactSizeIterator<Item = Event>,
) -> rusqlite::Result<Vec<OutboxRow>> {
    if events.len() == 0 {
        return Ok(Vec::new());
    }
    let mut rows = Vec::with_capacity(events.len());
    let top = crate::state::outbox::high(tx)?;
    let mut seq = (*next).max(top + 1);
    let mut insert = tx.prepare_cached(
        "INSERT INTO outbox(seq, event_id, user, event, body, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    for mut e in events {
        let id = format!("{instance}-{seq}");
        e.fields.insert("vnd.maildir.seq".into(), json!(seq));
        e.fields.insert("vnd.maildir.eventId".into(), json!(id));
        let user = e
            .fields
            .get("user")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let body = Value::Object(e.fields).to_string();
        insert.execute(params![seq, id, user, e.kind, body, now_ms])?;
        rows.push(OutboxRow {
            seq,
            event_id: id,
            body,
        });
        seq += 1;
    }
    *next = seq;
    Ok(rows)
}

/// The next outbox sequence number, as found in the database at open.
///
/// No number may ever be used for two events, also after kill -9. Every
/// number used is either still in the outbox (so below `max(seq) + 1`) or
/// was trimmed, and a trim writes `meta.next_seq` past what it deleted in
/// the same transaction ([`crate::state::outbox::trim_to`]). Sink
/// positions and dead letters only name numbers that were used, and are
/// counted for good measure.
pub(super) fn next_seq(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT max(
            coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'next_seq'), 1),
            coalesce((SELECT max(seq) FROM outbox), 0) + 1,
            coalesce((SELECT max(seq) FROM sink_positions), 0) + 1,
            coalesce((SELECT max(seq) FROM dead_letters), 0) + 1)",
        [],
        |r| r.get(0),
    )
}
