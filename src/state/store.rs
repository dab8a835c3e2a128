//! The state database: the snapshot and the outbox, in one SQLite file.
//!
//! Snapshot rows and the events they produced change in one transaction,
//! so a crash at any point either loses nothing or leaves events in the
//! outbox to be delivered (again, with the same id) by the next run. The
//! outbox row is deleted only after a sink has taken it. Admins can look
//! inside with `sqlite3 state.sqlite3`.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use serde_json::{Value, json};

use crate::diff::UserDiff;
use crate::event::Event;
use crate::listing::Listing;
use crate::maildir::name::Flags;
use crate::quota::{Limits, QuotaState};
use crate::snapshot::{DirStamp, FolderSnapshot, MessageState, Messages, UidSource, UserSnapshot};

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

    fn new(path: &Path, kind: StoreErrorKind, message: impl Into<String>) -> StoreError {
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
                    // Only a change costs a write: an unchanged row is left
                    // alone, so an unchanged user writes no page at all.
                    tx.prepare_cached(
                        "UPDATE users SET source = ?2 WHERE user = ?1 AND source IS NOT ?2",
                    )?
                    .execute(params![c.user, spec])?;
                }
            }
            Ok(added)
        })
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
/// WAL pages after which the writer checkpoints in its own thread after
/// all, when the checkpoint thread could not keep up (SQLite's default is
/// 1,000).
const WRITER_CHECKPOINT_PAGES: i64 = 10_000;
/// Checkpoints in a row at most, while commits keep coming in between.
const CHECKPOINT_TRIES: usize = 8;
/// Commits plus their events after which the checkpoint thread runs at
/// its next turn (a commit of one event writes a few pages: this is about
/// SQLite's own pace of 1,000 pages).
const CHECKPOINT_COMMITS: u64 = 250;
/// A commit waits this long at most for its checkpoint.
const CHECKPOINT_LATEST: std::time::Duration = std::time::Duration::from_secs(30);
/// How often the checkpoint thread looks whether to copy the WAL into the
/// database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The checkpoint thread of `watch`'s store.
///
/// A checkpoint copies the WAL into the database and syncs both files to
/// the disk: 10 to 100 ms of `fsync` on the machine measured. SQLite runs
/// it in the thread that commits, after every 1,000 WAL pages, so the
/// engine stood still about once a second at 2,000 changes/s, and every
/// change queued meanwhile waited (the tail of its latency). Here a thread
/// of its own, on its own connection, runs a PASSIVE checkpoint (it never
/// blocks the writer) every [`CHECKPOINT_EVERY`] after
/// [`CHECKPOINT_COMMITS`] commits and events, or [`CHECKPOINT_LATEST`]
/// after a commit; the writer's own automatic checkpoint stays as a bound
/// ([`WRITER_CHECKPOINT_PAGES`]) for a WAL the thread could not finish
/// because commits kept coming. Durability is SQLite's as before: the
/// same checkpoints, with the same syncs, in another thread.
struct Checkpoints {
    /// Commits of the writer so far, plus their events.
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Dropped when the store goes: the thread ends (after the checkpoint
    /// in hand, if any).
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpoints {
    fn start(path: &Path, writer: &mut Connection) -> Result<Checkpoints, StoreError> {
        use std::sync::atomic::Ordering;
        let mut conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sql_err(path, e))?;
        tune(&mut conn).map_err(|e| sql_err(path, e))?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(|e| sql_err(path, e))?;
        writer
            .pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
            .map_err(|e| sql_err(path, e))?;
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let seen_count = count.clone();
        let shown = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || {
                let mut seen = 0;
                let mut last_run = std::time::Instant::now();
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_EVERY)
                {
                    // About SQLite's own pace (1,000 pages) when changes
                    // flow, and within half a minute of the last change
                    // when they trickle: a quiet store costs no `fsync`.
                    let now = seen_count.load(Ordering::Relaxed);
                    if now == seen
                        || (now - seen < CHECKPOINT_COMMITS
                            && last_run.elapsed() < CHECKPOINT_LATEST)
                    {
                        continue;
                    }
                    seen = now;
                    last_run = std::time::Instant::now();
                    // A checkpoint copies the frames that were there when
                    // it began; the writer restarts the WAL from its start
                    // only once all are copied. Commits made while one
                    // ran are few: another, short checkpoint copies them,
                    // until one finds nothing new (the WAL's length is
                    // what the last one saw). Without that the WAL would
                    // only grow, up to the writer's bound, and the writer
                    // would pay for the checkpoint.
                    let mut last = -1;
                    for _ in 0..CHECKPOINT_TRIES {
                        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                        }) {
                            Ok((log, done)) if log != last || done < log => last = log,
                            Ok(_) => break,
                            Err(e) => {
                                tracing::debug!(path = %shown.display(), "checkpoint: {e}");
                                break;
                            }
                        }
                    }
                }
            })
            .map_err(|e| {
                StoreError::new(
                    path,
                    StoreErrorKind::CantCreate,
                    format!("cannot start the checkpoint thread: {e}"),
                )
            })?;
        Ok(Checkpoints {
            count,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpoints {
    /// Ends the thread and waits for it, so that the writer's connection
    /// is the last to close (SQLite then checkpoints and removes the WAL,
    /// as without the thread).
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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

/// A read-only connection to the state database, for snapshot reads beside
/// the [`Store`] that writes (see [`Store::reader`]).
pub struct SnapshotReader {
    conn: Connection,
    path: PathBuf,
    /// Reads left in the open read transaction (0: none open).
    reads_left: std::cell::Cell<u32>,
}

/// How many user reads share one read transaction of a
/// [`SnapshotReader`]. Each transaction costs file locks and a look at the
/// WAL index (about 8 system calls), which was a tenth of an unchanged
/// scan of many small users; longer ones would keep the writer's
/// checkpoints from reclaiming the WAL.
const READS_PER_TRANSACTION: u32 = 256;

impl SnapshotReader {
    fn open(path: &Path) -> Result<SnapshotReader, StoreError> {
        let mut conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sql_err(path, e))?;
        tune(&mut conn).map_err(|e| sql_err(path, e))?;
        // The catch-up reads every user's folders once, in the listing's
        // order rather than the tables'; SQLite's default 2 MB page cache
        // then reads the same pages again and again. This is a ceiling:
        // pages are held only once read.
        conn.execute_batch("PRAGMA cache_size = -32768;")
            .map_err(|e| sql_err(path, e))?;
        Ok(SnapshotReader {
            conn,
            path: path.to_path_buf(),
            reads_left: std::cell::Cell::new(0),
        })
    }

    /// Runs one read inside the current read transaction, opening one when
    /// none is open; every [`READS_PER_TRANSACTION`] reads it is closed.
    fn in_batch<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        if self.reads_left.get() == 0 {
            self.conn.prepare_cached("BEGIN DEFERRED")?.execute([])?;
            self.reads_left.set(READS_PER_TRANSACTION);
        }
        let r = read(&self.conn);
        self.reads_left.set(self.reads_left.get() - 1);
        if self.reads_left.get() == 0 || r.is_err() {
            self.end_batch()?;
        }
        r
    }

    /// Ends the open read transaction, so the next read sees everything
    /// committed since (call it before reading what the writer may have
    /// changed: a user listed twice).
    pub fn end_batch(&self) -> rusqlite::Result<()> {
        if self.reads_left.get() > 0 || !self.conn.is_autocommit() {
            self.reads_left.set(0);
            if !self.conn.is_autocommit() {
                self.conn.prepare_cached("COMMIT")?.execute([])?;
            }
        }
        Ok(())
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        sql_err(&self.path, e)
    }

    /// See [`Store::load_user`].
    pub fn load_user(&self, user: &str) -> Result<Option<UserSnapshot>, StoreError> {
        self.in_batch(|c| load_user(c, user))
            .map_err(|e| self.err(e))
    }

    /// See [`Store::load_messages`].
    pub fn load_messages(&self, folder: &mut FolderSnapshot) -> Result<(), StoreError> {
        self.in_batch(|c| load_messages(c, folder))
            .map_err(|e| self.err(e))
    }

    /// See [`Store::join_messages`].
    pub fn join_messages(
        &self,
        folder: &mut FolderSnapshot,
        listing: &mut Listing,
    ) -> Result<(), StoreError> {
        self.in_batch(|c| join_messages(c, folder, listing))
            .map_err(|e| self.err(e))
    }

    /// See [`Store::base_elsewhere`].
    pub fn base_elsewhere(&self, user: &str, dir: &[u8], base: &[u8]) -> Result<bool, StoreError> {
        self.in_batch(|c| base_elsewhere(c, user, dir, base))
            .map_err(|e| self.err(e))
    }

    /// See [`SnapshotReader::end_batch`], with the store's error.
    pub fn refresh(&self) -> Result<(), StoreError> {
        self.end_batch().map_err(|e| self.err(e))
    }
}

/// The snapshot reads a scan of one user needs, from the writing [`Store`]
/// or from a [`SnapshotReader`] beside it.
pub trait SnapshotSource {
    fn load_messages(&self, folder: &mut FolderSnapshot) -> Result<(), StoreError>;
    fn join_messages(
        &self,
        folder: &mut FolderSnapshot,
        listing: &mut Listing,
    ) -> Result<(), StoreError>;
    fn base_elsewhere(&self, user: &str, dir: &[u8], base: &[u8]) -> Result<bool, StoreError>;
}

impl SnapshotSource for Store {
    fn load_messages(&self, folder: &mut FolderSnapshot) -> Result<(), StoreError> {
        Store::load_messages(self, folder)
    }
    fn join_messages(
        &self,
        folder: &mut FolderSnapshot,
        listing: &mut Listing,
    ) -> Result<(), StoreError> {
        Store::join_messages(self, folder, listing)
    }
    fn base_elsewhere(&self, user: &str, dir: &[u8], base: &[u8]) -> Result<bool, StoreError> {
        Store::base_elsewhere(self, user, dir, base)
    }
}

impl SnapshotSource for SnapshotReader {
    fn load_messages(&self, folder: &mut FolderSnapshot) -> Result<(), StoreError> {
        SnapshotReader::load_messages(self, folder)
    }
    fn join_messages(
        &self,
        folder: &mut FolderSnapshot,
        listing: &mut Listing,
    ) -> Result<(), StoreError> {
        SnapshotReader::join_messages(self, folder, listing)
    }
    fn base_elsewhere(&self, user: &str, dir: &[u8], base: &[u8]) -> Result<bool, StoreError> {
        SnapshotReader::base_elsewhere(self, user, dir, base)
    }
}

fn load_user(conn: &Connection, user: &str) -> rusqlite::Result<Option<UserSnapshot>> {
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
fn load_messages(conn: &Connection, folder: &mut FolderSnapshot) -> rusqlite::Result<()> {
    let mut messages = Messages::with_capacity(folder.count as usize);
    each_message(conn, folder.id, &mut |base, state| {
        messages.push(base, state);
    })?;
    messages.sort();
    folder.messages = Some(messages);
    Ok(())
}

/// See [`Store::join_messages`].
fn join_messages(
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

fn base_elsewhere(
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

fn write_user(tx: &Connection, user: &str, root: &Path, diff: &UserDiff) -> rusqlite::Result<()> {
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
fn enqueue(
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
fn next_seq(conn: &Connection) -> rusqlite::Result<i64> {
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

/// Settings every connection to the state database needs: WAL with
/// `synchronous = NORMAL` (per connection: no fsync per commit, only at
/// checkpoints, which keeps every committed event after a crash of the
/// process), room for every hot statement in the cache, and a busy handler
/// that waits in short steps: the engine and the sink threads take turns
/// on the write lock, and SQLite's own back-off sleeps up to 20 ms.
pub(crate) fn tune(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(64);
    conn.busy_handler(Some(short_waits))?;
    // Every page read is checked for sane cells: damage is an error, never
    // a wrong answer.
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA cell_size_check = ON;")
}

/// What the administrator can do about a state that is not usable.
const START_OVER: &str = "Nothing was changed. To start over (a silent baseline: changes since the last good run are not reported), move the state directory away; or restore it from a backup";

/// Databases up to this size get SQLite's `quick_check` at every open
/// (about 0.1 s); larger ones the b-tree walk only.
const QUICK_CHECK_MAX: u64 = 32 << 20;

/// Creates the state directory 0700 whatever the umask: the database holds
/// mailbox names and, with content on, message bodies.
fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let cant = |e: io::Error| {
        StoreError::new(
            dir,
            StoreErrorKind::CantCreate,
            format!("cannot create the state directory: {e}"),
        )
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(cant)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            // The umask may have taken bits away, never added: set it.
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if let Ok(m) = fs::metadata(dir)
                && m.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(path = %dir.display(), mode = format!("{:o}", m.permissions().mode() & 0o7777),
                    "the state directory can be read by other users; chmod 700 it (the state holds mailbox names, and message content when configured)");
            }
        }
        Err(e) => return Err(cant(e)),
    }
    Ok(())
}

/// Makes a file of the state 0600 (it may come from an older version, or
/// have been copied with looser permissions).
fn tighten(path: &Path) {
    if let Ok(m) = fs::symlink_metadata(path)
        && m.file_type().is_file()
        && m.permissions().mode() & 0o077 != 0
    {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o600));
    }
}

/// Makes a new state database beside its place and renames it there, so
/// that the file under the real name is always a whole database with its
/// schema: an empty file there can only be damage.
fn create_fresh(dir: &Path, path: &Path) -> Result<(), StoreError> {
    let tmp = dir.join(format!("{FILE_NAME}.new"));
    let cant = |e: io::Error| {
        StoreError::new(
            &tmp,
            StoreErrorKind::CantCreate,
            format!("cannot create: {e}"),
        )
    };
    for stale in ["", "-journal", "-wal", "-shm"] {
        let mut p = tmp.clone().into_os_string();
        p.push(stale);
        let _ = fs::remove_file(p);
    }
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(cant)?;
    {
        let conn = Connection::open(&tmp).map_err(|e| sql_err(&tmp, e))?;
        conn.execute_batch(&format!("BEGIN; {SCHEMA} COMMIT;"))
            .and_then(|()| {
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('instance', ?1)",
                    [random_hex()],
                )
            })
            .map_err(|e| sql_err(&tmp, e))?;
    }
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(cant)?;
    fs::rename(&tmp, path).map_err(cant)?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn short_waits(attempt: i32) -> bool {
    // About 10 s in all: 50 µs steps first, then 1 ms.
    match attempt {
        0..200 => std::thread::sleep(std::time::Duration::from_micros(50)),
        200..10_000 => std::thread::sleep(std::time::Duration::from_millis(1)),
        _ => return false,
    }
    true
}

pub(crate) fn sql_err(path: &Path, e: rusqlite::Error) -> StoreError {
    let kind = match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreErrorKind::Corrupt,
        Some(
            ErrorCode::CannotOpen
            | ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied
            | ErrorCode::DiskFull,
        ) => StoreErrorKind::CantCreate,
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreErrorKind::Locked,
        _ => StoreErrorKind::Io,
    };
    let hint = match kind {
        StoreErrorKind::Corrupt => {
            return StoreError::new(
                path,
                kind,
                format!("{e}: it is not a usable maildir-events state. {START_OVER}"),
            );
        }
        StoreErrorKind::CantCreate => {
            "; check the permissions and free space of the state directory"
        }
        _ => "",
    };
    StoreError::new(path, kind, format!("{e}{hint}"))
}

/// 16 hex digits from the kernel's random source, naming this state so
/// event ids from different hosts never collide.
fn random_hex() -> String {
    let mut buf = [0u8; 8];
    if fs::File::open("/dev/urandom")
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut buf))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        buf = (t ^ ((std::process::id() as u64) << 32)).to_le_bytes();
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

const SCHEMA: &str = "
PRAGMA application_id = 1296319830;
PRAGMA user_version = 3;
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sources(spec TEXT PRIMARY KEY);
CREATE TABLE users(
    user TEXT PRIMARY KEY,
    root BLOB NOT NULL,
    subscriptions TEXT NOT NULL,
    source TEXT,
    -- quota as last evaluated: limits (NULL: none) and whether usage was over
    quota_known INTEGER NOT NULL DEFAULT 0,
    quota_bytes INTEGER,
    quota_messages INTEGER,
    quota_over INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE folders(
    id INTEGER PRIMARY KEY,
    user TEXT NOT NULL,
    dir BLOB NOT NULL,
    name TEXT NOT NULL,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    uid_source TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    guid TEXT,
    uidnext INTEGER NOT NULL,
    new_mtime INTEGER NOT NULL,
    cur_mtime INTEGER NOT NULL,
    uidlist_mtime INTEGER NOT NULL,
    uidlist_len INTEGER NOT NULL,
    trusted INTEGER NOT NULL,
    pending INTEGER NOT NULL,
    count INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    keywords TEXT,
    UNIQUE(user, dir)
);
CREATE TABLE messages(
    folder INTEGER NOT NULL,
    base BLOB NOT NULL,
    uid INTEGER NOT NULL,
    flags INTEGER NOT NULL,
    size INTEGER NOT NULL,
    in_new INTEGER NOT NULL,
    PRIMARY KEY(folder, base)
) WITHOUT ROWID;
CREATE TABLE dead_letters(
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    sink TEXT NOT NULL,
    reason TEXT NOT NULL,
    body TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE outbox(
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    user TEXT NOT NULL,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    at INTEGER NOT NULL  -- unix milliseconds of the commit
);
CREATE TABLE sink_positions(sink TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE access_positions(
    log TEXT PRIMARY KEY,   -- a path as configured, or 'journal'
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    tail BLOB NOT NULL,     -- the bytes before offset, to recognise the file
    cursor TEXT             -- the journal's
);
CREATE TABLE access_sessions(
    session TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    login_ms INTEGER NOT NULL,
    client_ip TEXT
);
";

/// The tables schema 2 added, for states made by schema 1 (`IF NOT
/// EXISTS`: a state may have them from a development build).
const MIGRATE_2: &str = "
CREATE TABLE IF NOT EXISTS access_positions(
    log TEXT PRIMARY KEY,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    tail BLOB NOT NULL,
    cursor TEXT
);
CREATE TABLE IF NOT EXISTS access_sessions(
    session TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    login_ms INTEGER NOT NULL,
    client_ip TEXT
);
";

#[cfg(test)]
mod tests {
    use super::*;

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
}
