//! The state database: the snapshot and the outbox, in one SQLite file.
//!
//! Snapshot rows and the events they produced change in one transaction,
//! so a crash at any point either loses nothing or leaves events in the
//! outbox to be delivered (again, with the same id) by the next run. The
//! outbox row is deleted only after a sink has taken it. Admins can look
//! inside with `sqlite3 state.sqlite3`.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use crate::diff::UserDiff;
use crate::event::Event;
use crate::listing::Listing;
use crate::maildir::name::Flags;
use crate::snapshot::{FolderSnapshot, MessageState, UserSnapshot};

use super::checkpoint::Checkpoints;
use super::rows::{
    base_elsewhere, enqueue, join_messages, load_messages, load_user, next_seq, write_user,
};
use super::schema::{
    MIGRATE_2, QUICK_CHECK_MAX, START_OVER, create_fresh, create_private_dir, tighten,
};

pub use super::reader::{SnapshotReader, SnapshotSource};
pub(crate) use super::schema::{sql_err, tune};

/// `PRAGMA application_id`: "MDEV". Tells our file from any other SQLite file.
const APPLICATION_ID: i64 = 0x4D44_4556;
/// Schema version in `PRAGMA user_version`. 2 added the access logs'
/// positions and open sessions ([`MIGRATE_2`]); 3 each folder's numbering
/// of Courier-IMAP keywords (`folders.keywords`).
const SCHEMA_VERSION: i64 = 3;
/// The database file name inside the state directory.
pub const FILE_NAME: &str = "state.sqlite3";
/// The status a running `watch` keeps up to date, beside the
/// database, for tools that should not open the database itself (and for
/// `maildir-events status` when it cannot).
pub const STATUS_FILE: &str = "status.json";
/// An idle `watch` rewrites its status file this often (it rewrites it
/// at once when something changed), so the file's stamp shows it is alive.
pub const STATUS_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(60);
/// A status file whose stamp is older than this (three heartbeats) is
/// stale: its watcher is hung.
pub const STATUS_STALE_AFTER: std::time::Duration =
    std::time::Duration::from_secs(3 * STATUS_HEARTBEAT.as_secs());

/// Whether another process holds the state directory now (a running
/// `watch` or `scan`).
pub fn held(dir: &Path) -> bool {
    let Ok(f) = fs::File::open(dir.join("lock")) else {
        return false;
    };
    // SAFETY: flock on a descriptor we own; released when it is closed.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) != 0 }
}

/// Something wrong with the state directory or database.
#[derive(Debug)]
pub struct StoreError {
    path: PathBuf,
    message: String,
    kind: StoreErrorKind,
}

/// What kind of state error, for the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The file is not ours, or damaged, or from a newer version.
    Corrupt,
    /// The directory or file cannot be created or written.
    CantCreate,
    /// Another process holds the state.
    Locked,
    /// Any other database error.
    Io,
}

impl StoreError {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    pub(super) fn new(path: &Path, kind: StoreErrorKind, message: impl Into<String>) -> StoreError {
        StoreError {
            path: path.to_path_buf(),
            message: message.into(),
            kind,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "state {}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for StoreError {}

/// One event waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxRow {
    pub seq: i64,
    pub event_id: String,
    /// The event as one line of JSON.
    pub body: String,
}

/// The open state database, held exclusively by this process.
pub struct Store {
    /// The checkpoint thread (`watch` only). Declared first so it is
    /// dropped first: the writer's connection closes last.
    commits: Option<Checkpoints>,
    conn: Connection,
    path: PathBuf,
    instance: String,
    /// The rows committed since the last [`Store::take_committed`], when
    /// kept (`watch` hands them to its sinks from memory).
    committed: Option<Vec<OutboxRow>>,
    /// Rows written in the open transaction: they join `committed` only
    /// when it commits, so a sink never sees an event that could still be
    /// rolled back.
    uncommitted: Vec<OutboxRow>,
    /// The next outbox sequence number. This process is the database's
    /// only writer of events while it holds the lock, so the number lives
    /// here instead of in a `meta` row rewritten by every commit (see
    /// [`next_seq`] for how it is found again after a crash).
    next_seq: i64,
    /// `next_seq` as of the last COMMIT, restored on a rollback.
    next_seq_committed: i64,
    /// Between [`Store::hold`] and [`Store::release`]: commits join one
    /// transaction.
    held: bool,
    /// A transaction is open (BEGIN was run).
    open: bool,
    _lock: fs::File,
}

impl Store {
    /// Opens (creating if needed) the state in `dir`, and locks it so two
    /// runs cannot report the same change twice.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, false)
    }

    /// Opens the state for `watch`, whose engine thread is its only
    /// writer: the rows each commit adds to the outbox are kept for
    /// [`Store::take_committed`], so the sinks get them from memory.
    pub fn open_for_watch(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, true)
    }

    fn open_with(dir: &Path, keep_committed: bool) -> Result<Store, StoreError> {
        create_private_dir(dir)?;
        let lock_path = dir.join("lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| {
                StoreError::new(
                    &lock_path,
                    StoreErrorKind::CantCreate,
                    format!("cannot open: {e}"),
                )
            })?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(StoreError::new(
                dir,
                StoreErrorKind::Locked,
                "in use by another maildir-events process (scan and watch must not share a state directory at once)",
            ));
        }
        let path = dir.join(FILE_NAME);
        match fs::symlink_metadata(&path) {
            Ok(m) if !m.file_type().is_file() => {
                return Err(StoreError::new(
                    &path,
                    StoreErrorKind::Corrupt,
                    "is not a regular file; move it away",
                ));
            }
            Ok(m) if m.len() == 0 => {
                // We never leave an empty database behind (a new one is
                // built aside and renamed into place), so this one was
                // truncated: what it knew is lost. Starting over is the
                // administrator's decision, not ours.
                return Err(StoreError::new(
                    &path,
                    StoreErrorKind::Corrupt,
                    format!(
                        "is empty (0 bytes): it was truncated, and the snapshot and undelivered events it held are lost. {START_OVER}"
                    ),
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => create_fresh(dir, &path)?,
            Err(e) => {
                return Err(StoreError::new(
                    &path,
                    StoreErrorKind::CantCreate,
                    format!("cannot look at it: {e}"),
                ));
            }
        }
        tighten(&path);
        let conn = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sql_err(&path, e))?;
        let mut store = Store {
            conn,
            path,
            instance: String::new(),
            committed: keep_committed.then(Vec::new),
            uncommitted: Vec::new(),
            next_seq: 1,
            next_seq_committed: 1,
            held: false,
            open: false,
            commits: None,
            _lock: lock,
        };
        store.init()?;
        store.next_seq = next_seq(&store.conn).map_err(|e| store.err(e))?;
        store.next_seq_committed = store.next_seq;
        for side in ["-wal", "-shm"] {
            let mut p = store.path.clone().into_os_string();
            p.push(side);
            tighten(Path::new(&p));
        }
        if keep_committed {
            store.commits = Some(Checkpoints::start(&store.path, &mut store.conn)?);
        }
        Ok(store)
    }

    /// Walks every b-tree of the database (tables and indexes) with page
    /// checks on, so a damaged page is found at open, not months later
    /// when its folder changes. A database of up to [`QUICK_CHECK_MAX`]
    /// bytes gets SQLite's `quick_check` as well; `full` runs the complete
    /// `integrity_check` whatever the size.
    pub fn verify(&self, full: bool) -> Result<(), StoreError> {
        let err = |e| sql_err(&self.path, e);
        let trees: Vec<(String, String, String)> = self
            .conn
            .prepare("SELECT type, name, tbl_name FROM sqlite_master WHERE rootpage > 0")
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .map_err(err)?;
        for (kind, name, table) in trees {
            let q = if kind == "table" {
                format!("SELECT count(*) FROM \"{name}\"")
            } else {
                format!("SELECT count(*) FROM \"{table}\" INDEXED BY \"{name}\"")
            };
            let _: i64 = self.conn.query_row(&q, [], |r| r.get(0)).map_err(err)?;
        }
        let size = fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        let check = if full {
            Some("PRAGMA integrity_check(20)")
        } else if size <= QUICK_CHECK_MAX {
            Some("PRAGMA quick_check(20)")
        } else {
            None
        };
        if let Some(check) = check {
            let problems: Vec<String> = self
                .conn
                .prepare(check)
                .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
                .map_err(err)?;
            if problems != ["ok"] {
                return Err(StoreError::new(
                    &self.path,
                    StoreErrorKind::Corrupt,
                    format!("is damaged: {}. {START_OVER}", problems.join("; ")),
                ));
            }
        }
        Ok(())
    }

    fn init(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |e| sql_err(&path, e);
        tune(&mut self.conn).map_err(err)?;
        let app: i64 = self
            .conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(err)?;
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        let tables: i64 = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(err)?;
        if app == 0 && tables == 0 {
            // Not ours: a new database is made with its schema (see
            // `create_fresh`), so an empty one was emptied by someone else.
            return Err(StoreError::new(
                &self.path,
                StoreErrorKind::Corrupt,
                format!("holds no maildir-events state (an empty SQLite database). {START_OVER}"),
            ));
        } else if app != APPLICATION_ID {
            return Err(StoreError::new(
                &self.path,
                StoreErrorKind::Corrupt,
                "is an SQLite database of some other program; pass another --state directory, or move this one away",
            ));
        } else if version > SCHEMA_VERSION {
            return Err(StoreError::new(
                &self.path,
                StoreErrorKind::Corrupt,
                format!(
                    "was written by a newer maildir-events (schema {version}, this one knows {SCHEMA_VERSION})"
                ),
            ));
        }
        self.conn
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(err)?;
        if version < 2 {
            // Tables added since: created in one transaction with the new
            // version, so an older state is upgraded once and whole.
            self.conn
                .execute_batch(&format!(
                    "BEGIN IMMEDIATE; {MIGRATE_2} PRAGMA user_version = 2; COMMIT;"
                ))
                .map_err(err)?;
        }
        if version < 3 {
            // Schema 3 keeps each folder's numbering of Courier keywords.
            let has: bool = self
                .conn
                .query_row(
                    "SELECT count(*) FROM pragma_table_info('folders') WHERE name = 'keywords'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(err)?
                > 0;
            let add = if has {
                ""
            } else {
                "ALTER TABLE folders ADD COLUMN keywords TEXT;"
            };
            self.conn
                .execute_batch(&format!(
                    "BEGIN IMMEDIATE; {add} PRAGMA user_version = 3; COMMIT;"
                ))
                .map_err(err)?;
        }
        self.verify(false)?;
        self.instance = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'instance'", [], |r| {
                r.get(0)
            })
            .map_err(err)?;
        Ok(())
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        sql_err(&self.path, e)
    }

    /// The database file, for the outbox connections of sinks.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a source (see `Source::spec`) has had its first run.
    pub fn source_known(&self, spec: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT 1 FROM sources WHERE spec = ?1", [spec], |_| Ok(()))
            .optional()
            .map(|o| o.is_some())
            .map_err(|e| self.err(e))
    }

    /// Records that a source has had its first run.
    pub fn mark_source(&self, spec: &str) -> Result<(), StoreError> {
        self.conn
            .execute("INSERT OR IGNORE INTO sources(spec) VALUES (?1)", [spec])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Records which source a user was found through, so a later run can
    /// tell a known user whose Maildir went missing.
    pub fn set_user_source(&self, user: &str, spec: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE users SET source = ?2 WHERE user = ?1",
                params![user, spec],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The users found through a source before, with their Maildir roots.
    pub fn users_of_source(&self, spec: &str) -> Result<Vec<(String, PathBuf)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT user, root FROM users WHERE source = ?1 ORDER BY user")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([spec], |r| {
                let root: Vec<u8> = r.get(1)?;
                Ok((r.get(0)?, PathBuf::from(std::ffi::OsStr::from_bytes(&root))))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The user's snapshot without messages, or `None` for a user never seen.
    pub fn load_user(&self, user: &str) -> Result<Option<UserSnapshot>, StoreError> {
        load_user(&self.conn, user).map_err(|e| self.err(e))
    }

    /// Loads the messages of one folder into its snapshot.
    pub fn load_messages(&self, folder: &mut FolderSnapshot) -> Result<(), StoreError> {
        load_messages(&self.conn, folder).map_err(|e| self.err(e))
    }

    /// Loads the messages of one folder joined into its new listing (see
    /// [`Listing::join`]): the snapshot keeps only the rows of names not
    /// listed.
    pub fn join_messages(
        &self,
        folder: &mut FolderSnapshot,
        listing: &mut Listing,
    ) -> Result<(), StoreError> {
        join_messages(&self.conn, folder, listing).map_err(|e| self.err(e))
    }

    /// The stored states of some base names of a folder (absent ones are
    /// left out): what live application needs, without loading the folder.
    pub fn load_states<'a>(
        &self,
        folder: i64,
        bases: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<HashMap<Vec<u8>, MessageState>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT uid, flags, size, in_new FROM messages WHERE folder = ?1 AND base = ?2",
            )
            .map_err(|e| self.err(e))?;
        let mut out = HashMap::new();
        for base in bases {
            if out.contains_key(base) {
                continue;
            }
            let row = stmt
                .query_row(params![folder, base], |r| {
                    Ok(MessageState {
                        uid: r.get(0)?,
                        flags: Flags(r.get::<_, i64>(1)? as u32),
                        size: r.get::<_, i64>(2)? as u64,
                        in_new: r.get(3)?,
                    })
                })
                .optional()
                .map_err(|e| self.err(e))?;
            if let Some(state) = row {
                out.insert(base.to_vec(), state);
            }
        }
        Ok(out)
    }

    /// Whether `base` is a message of `user` in a folder other than `dir`.
    pub fn base_elsewhere(&self, user: &str, dir: &[u8], base: &[u8]) -> Result<bool, StoreError> {
        base_elsewhere(&self.conn, user, dir, base).map_err(|e| self.err(e))
    }

    /// Whether `base` is a message of one of `folders` (ids of a user's
    /// other folders, as the caller holds them): one primary-key probe per
    /// folder through one cached statement. `watch` asks this for every
    /// arrival (is it a copy?), so it must not cost a query plan per call,
    /// as the join of [`Store::base_elsewhere`] does.
    pub fn base_in(&self, folders: &[i64], base: &[u8]) -> Result<bool, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM messages WHERE folder = ?1 AND base = ?2")
            .map_err(|e| self.err(e))?;
        for id in folders {
            if stmt.exists(params![id, base]).map_err(|e| self.err(e))? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A second, read-only connection to this database for the snapshot
    /// reads of a scan, so that listing and diffing one user can go on in
    /// one thread while another commits the users before it
    /// (`pipeline::run_scan`). It sees what was committed.
    pub fn reader(&self) -> Result<SnapshotReader, StoreError> {
        SnapshotReader::open(&self.path)
    }

    /// Writes several users' new snapshots and their events in ONE
    /// transaction, in order: each user's rows and events commit together
    /// (as with [`Store::commit`]), and one commit for many users saves the
    /// per-transaction cost (WAL frames, locks) that dominated scans of
    /// many small or unchanged users. `source` also records which source
    /// the user was found through (see [`Store::set_user_source`]).
    pub fn commit_users(&mut self, batch: Vec<UserCommit>) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.write(|tx, instance, next| {
            let mut added = Vec::new();
            for c in batch {
                if let Some((diff, events)) = c.change {
                    write_user(tx, &c.user, &c.root, &diff)?;
                    added.extend(enqueue(tx, instance, next, events.into_iter())?);
                }
                if let Some(spec) = &c.source {
                    set_source(tx, &c.user, spec)?;
                }
            }
            Ok(added)
        })
    }

    /// Writes one user's new snapshot and the events `events` makes as it
    /// goes, in one transaction, numbering and inserting them
    /// [`STREAM_CHUNK`] at a time: a user with a million arrivals to report
    /// (a new folder of a million files, `--emit-existing`) never holds all
    /// its events, about 2.7 KB each, at once. Returns how many were
    /// written. Atomic like [`Store::commit_users`].
    pub fn commit_streamed(
        &mut self,
        user: &str,
        root: &Path,
        source: Option<&str>,
        diff: &UserDiff,
        events: &mut EventSource,
    ) -> Result<u64, StoreError> {
        // Rows are kept for the sinks only in `watch`; a scan's sinks read
        // them from the outbox.
        let keep = self.committed.is_some();
        let mut count = 0u64;
        self.write(|tx, instance, next| {
            write_user(tx, user, root, diff)?;
            let mut kept = Vec::new();
            let mut chunk = Vec::with_capacity(STREAM_CHUNK);
            let mut failed = None;
            let mut put = |chunk: &mut Vec<Event>, kept: &mut Vec<OutboxRow>| {
                let rows = enqueue(tx, instance, next, chunk.drain(..))?;
                count += rows.len() as u64;
                if keep {
                    kept.extend(rows);
                }
                Ok::<(), rusqlite::Error>(())
            };
            events(&mut |e| {
                if failed.is_some() {
                    return;
                }
                chunk.push(e);
                if chunk.len() >= STREAM_CHUNK
                    && let Err(e) = put(&mut chunk, &mut kept)
                {
                    failed = Some(e);
                }
            });
            if let Some(e) = failed {
                return Err(e);
            }
            put(&mut chunk, &mut kept)?;
            if let Some(spec) = source {
                set_source(tx, user, spec)?;
            }
            Ok(kept)
        })?;
        Ok(count)
    }

    /// Writes one user's new snapshot and its events, atomically.
    pub fn commit(
        &mut self,
        user: &str,
        root: &Path,
        diff: &UserDiff,
        events: Vec<Event>,
    ) -> Result<(), StoreError> {
        self.write(|tx, instance, next| {
            write_user(tx, user, root, diff)?;
            enqueue(tx, instance, next, events.into_iter())
        })
    }

    /// Opens one transaction that every commit joins until
    /// [`Store::release`]: `watch` reads and writes all the folders of a
    /// batch in one transaction, with one COMMIT (one set of WAL frames)
    /// instead of one per folder, and its reads (`load_states`) need no
    /// transaction of their own. Nothing joins `committed` before the
    /// COMMIT.
    pub fn hold(&mut self) -> Result<(), StoreError> {
        if !self.open {
            self.step("BEGIN IMMEDIATE")?;
            self.open = true;
        }
        self.held = true;
        Ok(())
    }

    /// Commits what was written since [`Store::hold`], if anything.
    pub fn release(&mut self) -> Result<(), StoreError> {
        self.held = false;
        self.finish()
    }

    /// Rolls back what was written since [`Store::hold`] (after an error
    /// that ends the run: nothing of it reaches the sinks).
    pub fn abandon(&mut self) {
        self.rollback();
    }

    /// Runs one cached statement without parameters or rows (BEGIN,
    /// COMMIT): parsed once per connection, not per transaction.
    fn step(&self, sql: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut st| st.execute([]))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Rolls back the open transaction (if any) and forgets its rows.
    fn rollback(&mut self) {
        if self.open {
            let _ = self.step("ROLLBACK");
        }
        self.open = false;
        self.held = false;
        self.uncommitted.clear();
        self.next_seq = self.next_seq_committed;
    }

    /// Commits the open transaction, if one is open; then the sequence
    /// number is final and the rows are for the sinks.
    fn finish(&mut self) -> Result<(), StoreError> {
        if !self.open {
            return Ok(());
        }
        if let Err(e) = self.step("COMMIT") {
            self.rollback();
            return Err(e);
        }
        self.open = false;
        self.next_seq_committed = self.next_seq;
        let rows = std::mem::take(&mut self.uncommitted);
        if let Some(c) = &self.commits {
            // What the commit wrote, roughly: one for the commit, one per
            // event (each is a folder's change, or a row of the outbox).
            c.count
                .fetch_add(1 + rows.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(c) = &mut self.committed {
            c.extend(rows);
        }
        Ok(())
    }

    /// Runs `f` in a transaction of its own, or in the one that began
    /// after [`Store::hold`]; the outbox rows it returns reach `committed`
    /// with the COMMIT. Any error rolls everything back.
    fn write(
        &mut self,
        f: impl FnOnce(&Connection, &str, &mut i64) -> rusqlite::Result<Vec<OutboxRow>>,
    ) -> Result<(), StoreError> {
        if !self.open {
            self.step("BEGIN IMMEDIATE")?;
            self.open = true;
        }
        let mut next = self.next_seq;
        match f(&self.conn, &self.instance, &mut next) {
            Ok(rows) => {
                self.next_seq = next;
                self.uncommitted.extend(rows);
            }
            Err(e) => {
                let e = self.err(e);
                self.rollback();
                return Err(e);
            }
        }
        if !self.held {
            self.finish()?;
        }
        Ok(())
    }

    /// Commits events read from the access logs with the logs' new
    /// positions and the sessions opened and closed, in ONE transaction:
    /// a crash before it reads the same lines again, after it not.
    pub fn commit_access(&mut self, batch: crate::access::source::Batch) -> Result<(), StoreError> {
        self.write(|tx, instance, next| {
            for p in &batch.positions {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO access_positions(log, dev, ino, offset, tail, cursor)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    p.log,
                    p.dev as i64,
                    p.ino as i64,
                    p.offset as i64,
                    p.tail,
                    p.cursor
                ])?;
            }
            for id in &batch.closed {
                tx.prepare_cached("DELETE FROM access_sessions WHERE session = ?1")?
                    .execute([id])?;
            }
            for (id, s) in &batch.opened {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO access_sessions(session, user, login_ms, client_ip)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![id, s.user, s.login_ms, s.client_ip])?;
            }
            enqueue(tx, instance, next, batch.events.into_iter())
        })
    }

    /// The access logs' positions and open sessions, as last committed.
    pub fn access_state(&self) -> Result<crate::access::source::Remembered, StoreError> {
        let e = |e| sql_err(&self.path, e);
        let mut out = crate::access::source::Remembered::default();
        let mut st = self
            .conn
            .prepare("SELECT log, dev, ino, offset, tail, cursor FROM access_positions")
            .map_err(e)?;
        let rows = st
            .query_map([], |r| {
                Ok(crate::access::Position {
                    log: r.get(0)?,
                    dev: r.get::<_, i64>(1)? as u64,
                    ino: r.get::<_, i64>(2)? as u64,
                    offset: r.get::<_, i64>(3)? as u64,
                    tail: r.get(4)?,
                    cursor: r.get(5)?,
                })
            })
            .map_err(e)?;
        for p in rows {
            let p = p.map_err(e)?;
            out.positions.insert(p.log.clone(), p);
        }
        let mut st = self
            .conn
            .prepare("SELECT session, user, login_ms, client_ip FROM access_sessions")
            .map_err(e)?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    crate::access::OpenSession {
                        user: r.get(1)?,
                        login_ms: r.get(2)?,
                        client_ip: r.get(3)?,
                    },
                ))
            })
            .map_err(e)?;
        for s in rows {
            out.sessions.push(s.map_err(e)?);
        }
        Ok(out)
    }

    /// The outbox rows committed since the last call (only when opened
    /// with [`Store::open_for_watch`]).
    pub fn take_committed(&mut self) -> Vec<OutboxRow> {
        self.committed
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Each sink's position, the highest sequence number in the outbox,
    /// and the number of dead letters.
    pub fn outbox_state(&self, sinks: &[String]) -> Result<(Vec<i64>, i64, u64), StoreError> {
        let err = |e| sql_err(&self.path, e);
        let mut pos = Vec::with_capacity(sinks.len());
        for s in sinks {
            pos.push(crate::state::outbox::position(&self.conn, s).map_err(err)?);
        }
        let high = crate::state::outbox::high(&self.conn).map_err(err)?;
        let dead: i64 = self
            .conn
            .query_row("SELECT count(*) FROM dead_letters", [], |r| r.get(0))
            .map_err(err)?;
        Ok((pos, high, dead as u64))
    }

    /// Up to `limit` outbox rows after `seq`, for a sink being fed.
    pub fn rows_after(&self, seq: i64, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        crate::state::outbox::rows_after(&self.conn, seq, limit).map_err(|e| sql_err(&self.path, e))
    }

    /// Records what the sinks took, in one transaction: each sink's new
    /// position with the events it rejected for good (into the dead-letter
    /// table), then deletes every row all sinks are past (`low`).
    pub fn record_taken(
        &mut self,
        taken: &[(String, i64, Vec<crate::state::outbox::Rejected>)],
        low: i64,
    ) -> Result<(), StoreError> {
        self.write(|tx, _, next| {
            for (sink, seq, rejected) in taken {
                crate::state::outbox::record(tx, sink, *seq, rejected)?;
            }
            // Rows another process put back (`dead-letters --replay`) may
            // be past what this one numbered: never number below them.
            if low != i64::MAX {
                *next = (*next).max(low + 1);
            }
            crate::state::outbox::trim_to(tx, low)?;
            Ok(Vec::new())
        })
    }
}
/// What makes a user's events for [`Store::commit_streamed`]: it hands
/// each one to the function it is given.
pub type EventSource<'a> = dyn FnMut(&mut dyn FnMut(Event)) + 'a;

/// Events numbered and inserted at a time by [`Store::commit_streamed`].
pub const STREAM_CHUNK: usize = 4096;

/// Records the source a user was found through. Only a change costs a
/// write: an unchanged row is left alone, so an unchanged user writes no
/// page at all.
fn set_source(tx: &Connection, user: &str, spec: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE users SET source = ?2 WHERE user = ?1 AND source IS NOT ?2")?
        .execute(params![user, spec])?;
    Ok(())
}

/// One user's part of a [`Store::commit_users`] batch.
#[derive(Debug)]
pub struct UserCommit {
    pub user: String,
    pub root: PathBuf,
    /// The new snapshot and its events; `None` writes nothing for the user
    /// (its Maildir is missing, and what was known is kept).
    pub change: Option<(UserDiff, Vec<Event>)>,
    /// The source the user was found through, recorded when it changed.
    pub source: Option<String>,
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
