//! JSON Lines appended to a file, synced to disk per batch, reopened on
//! SIGHUP so logrotate can move the file away without losing a line.
//!
//! The file is opened with `O_APPEND`, so `copytruncate` rotation also
//! works (the next write lands at the new end). With the usual
//! rename-then-SIGHUP rotation, lines written before the rename are in the
//! old file and lines written after `reopen` are in the new one; a batch is
//! never split across the two because `reopen` runs between batches.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Rejected, Sink, SinkError};
use crate::state::store::OutboxRow;

/// The mode of a file the sink creates: readable by the group, so a log
/// shipper in the file's group can read it, and by no one else, since
/// events name users and mailboxes.
const CREATE_MODE: u32 = 0o640;

/// Configuration of the file sink.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to append to. Its directory must exist; the file is
    /// created (mode 0640) when missing.
    pub path: PathBuf,
}

impl FileConfig {
    /// What `check-config` can tell without creating the file: the path
    /// is set and its directory exists, so a wrong path is caught before
    /// the first `scan` or `watch` (which would exit 78 on it).
    pub fn check(&self) -> Result<(), String> {
        if self.path.as_os_str().is_empty() {
            return Err("`path` is empty; give the file to append events to".into());
        }
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(format!("{} is not a directory", dir.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
                "the directory {} does not exist; create it (owned by the service's user), \
                 or use the unit's LogsDirectory=, /var/log/maildir-events",
                dir.display()
            )),
            Err(e) => Err(format!("{}: {e}", dir.display())),
        }
    }
}

/// Appends one line per event to a file and syncs it per batch.
pub struct FileSink {
    path: PathBuf,
    file: File,
    name: String,
}

impl FileSink {
    /// Opens (creating if needed) the file, so a wrong path is reported at
    /// start-up rather than at the first event.
    pub fn new(config: FileConfig) -> Result<FileSink, String> {
        if config.path.as_os_str().is_empty() {
            return Err("file sink: `path` is empty; give the file to append events to".into());
        }
        let file = open_append(&config.path).map_err(|e| open_error(&config.path, &e))?;
        Ok(FileSink {
            name: format!("file:{}", config.path.display()),
            path: config.path,
            file,
        })
    }

    /// The path events are appended to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the whole batch with one `write_all`, so a batch is one
    /// contiguous run of lines in one file.
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        // Remember where the batch starts so a failed write (a full disk)
        // can be cut back: a torn half line would break every JSON Lines
        // reader, and the engine sends the whole batch again anyway.
        let start = self.file.metadata()?.len();
        let res = self
            .file
            .write_all(buf)
            .and_then(|()| self.file.sync_data());
        if res.is_err() {
            // Best effort: if even this fails there is nothing better to do
            // than to report the first error.
            let _ = self.file.set_len(start);
        }
        res
    }
}

impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    /// Appends the batch and syncs it. There are no retries inside: a local
    /// write fails for reasons (full disk, I/O error) that do not go away in
    /// seconds, so the error goes straight back and the engine retries the
    /// batch later.
    fn send(&mut self, batch: &[OutboxRow]) -> Result<Vec<Rejected>, SinkError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let buf = lines(batch);
        self.append(&buf).map(|()| Vec::new()).map_err(|e| {
            SinkError::Failed(format!("cannot append to {}: {e}", self.path.display()))
        })
    }

    /// Opens the path anew and only then lets go of the old file, so if the
    /// new open fails events keep going to the old file and nothing is lost.
    fn reopen(&mut self) -> Result<(), SinkError> {
        let file =
            open_append(&self.path).map_err(|e| SinkError::Failed(open_error(&self.path, &e)))?;
        self.file = file;
        Ok(())
    }
}

/// The batch as JSON Lines: each body followed by a newline.
fn lines(batch: &[OutboxRow]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(batch.iter().map(|r| r.body.len() + 1).sum());
    for row in batch {
        buf.extend_from_slice(row.body.as_bytes());
        buf.push(b'\n');
    }
    buf
}

/// Opens `path` for appending, creating it with mode 0640 when missing.
///
/// A file we create gets exactly 0640 whatever the umask, because readers
/// in the group (log shippers) depend on it; an existing file keeps the
/// mode the administrator gave it.
fn open_append(path: &Path) -> io::Result<File> {
    let created = OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(CREATE_MODE)
        .open(path);
    match created {
        Ok(file) => {
            file.set_permissions(Permissions::from_mode(CREATE_MODE))?;
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            OpenOptions::new().append(true).open(path)
        }
        Err(e) => Err(e),
    }
}

fn open_error(path: &Path, e: &io::Error) -> String {
    let hint = match e.kind() {
        io::ErrorKind::NotFound => " (does its directory exist?)",
        io::ErrorKind::PermissionDenied => " (check the permissions of the file and its directory)",
        _ => "",
    };
    format!("file sink: cannot open {}: {e}{hint}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_each_body_with_a_newline() {
        let row = |seq: i64, body: &str| OutboxRow {
            seq,
            event_id: format!("i-{seq}"),
            body: body.into(),
        };
        assert_eq!(
            lines(&[row(1, "{}"), row(2, "{\"a\":1}")]),
            b"{}\n{\"a\":1}\n"
        );
    }

    #[test]
    fn missing_directory_is_named_in_the_error() {
        let err = FileSink::new(FileConfig {
            path: "/nonexistent-dir-for-test/events.jsonl".into(),
        })
        .err()
        .unwrap_or_default();
        assert!(err.contains("/nonexistent-dir-for-test"), "{err}");
        assert!(err.contains("directory exist"), "{err}");
    }
}
