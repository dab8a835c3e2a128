//! Reads of the snapshot beside the writing [`Store`]: a read-only
//! connection for a scan's listers, and the reads both kinds of
//! connection answer.

use super::rows::{base_elsewhere, join_messages, load_messages, load_user};
use super::schema::{sql_err, tune};
use super::store::{Store, StoreError};
use crate::listing::Listing;
use crate::snapshot::{FolderSnapshot, UserSnapshot};
use rusqlite::Connection;
use std::path::{Path, PathBuf};

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
    pub(super) fn open(path: &Path) -> Result<SnapshotReader, StoreError> {
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
    fn end_batch(&self) -> rusqlite::Result<()> {
        self.reads_left.set(0);
        if !self.conn.is_autocommit() {
            self.conn.prepare_cached("COMMIT")?.execute([])?;
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
