//! The state database's file: created private, its schema and upgrades,
//! the settings of every connection, and what its errors tell the admin.

use super::store::{FILE_NAME, StoreError, StoreErrorKind};
use rusqlite::{Connection, ErrorCode};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

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
pub(super) const START_OVER: &str = "Nothing was changed. To start over (a silent baseline: changes since the last good run are not reported), move the state directory away; or restore it from a backup";

/// Databases up to this size get SQLite's `quick_check` at every open
/// (about 0.1 s); larger ones the b-tree walk only.
pub(super) const QUICK_CHECK_MAX: u64 = 32 << 20;

/// Creates the state directory 0700 whatever the umask: the database holds
/// mailbox names and, with content on, message bodies.
pub(super) fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
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
pub(super) fn tighten(path: &Path) {
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
pub(super) fn create_fresh(dir: &Path, path: &Path) -> Result<(), StoreError> {
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

pub(super) const SCHEMA: &str = "
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
pub(super) const MIGRATE_2: &str = "
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
