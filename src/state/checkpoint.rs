//! The checkpoint thread of `watch`'s store: the WAL is copied into the
//! database beside the writer, not in the middle of its commits.

use super::schema::{sql_err, tune};
use super::store::{StoreError, StoreErrorKind};
use rusqlite::Connection;
use std::path::Path;

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
pub(super) struct Checkpoints {
    /// Commits of the writer so far, plus their events.
    pub(super) count: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Dropped when the store goes: the thread ends (after the checkpoint
    /// in hand, if any).
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpoints {
    pub(super) fn start(path: &Path, writer: &mut Connection) -> Result<Checkpoints, StoreError> {
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
