//! Reading a log file from a remembered position, across rotations.
//!
//! The position is the file's device and inode, the offset of the next
//! unread line, and the last bytes before it ([`TAIL`]): the inode names
//! the file, the bytes tell a file truncated and written again (same
//! inode) from the one we read. Rotation is handled both ways logrotate
//! does it:
//!
//! - **rename + reopen** (`doveadm log reopen`): the path names a new file.
//!   The old one is read to its end through the handle we hold (or, after a
//!   restart, found again by its inode beside the path, e.g. `dovecot.log.1`)
//!   before the new one; it is let go once the new file has data, because
//!   Dovecot writes there only after it reopened.
//! - **copytruncate**: the file shrinks under us. What we had not read yet
//!   is in the copy beside it: found by the bytes before our offset, read
//!   from there, then the truncated file from its start.
//!
//! The admin names the log, so a symbolic link to it is followed; the file
//! is opened non-blocking and must be a regular file. Lines are bounded:
//! one longer than [`MAX_LINE`] is skipped with a (rate-limited) warning.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::Position;
use crate::warnlimit::warn_path;

/// Bytes before the offset kept to recognise the file.
pub const TAIL: usize = 64;
/// The longest line read; longer ones are skipped.
pub const MAX_LINE: usize = 16 * 1024;
/// Bytes read per system call.
const CHUNK: usize = 64 * 1024;
/// Rotated files looked at beside the log, at most.
const SIBLINGS: usize = 64;

/// One open file being read.
#[derive(Debug)]
struct Open {
    file: File,
    path: PathBuf,
    dev: u64,
    ino: u64,
    offset: u64,
    tail: Vec<u8>,
    /// In the middle of an over-long line: drop up to the next newline.
    skipping: bool,
    /// A copy made by copytruncate: nobody writes to it any more.
    copy: bool,
}

/// Follows one log file.
#[derive(Debug)]
pub struct Follower {
    log: String,
    path: PathBuf,
    cur: Option<Open>,
    /// The file the path named before a rotation, read to its end first.
    old: Option<Open>,
    /// The position to report while no file is open.
    last: Position,
}

fn open(path: &Path) -> io::Result<Open> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let m = file.metadata()?;
    if !m.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is not a regular file",
        ));
    }
    Ok(Open {
        file,
        path: path.to_path_buf(),
        dev: m.dev(),
        ino: m.ino(),
        offset: 0,
        tail: Vec::new(),
        skipping: false,
        copy: false,
    })
}

impl Open {
    fn len(&self) -> u64 {
        self.file.metadata().map_or(0, |m| m.len())
    }

    /// Whether the bytes before `offset` are still the ones we read.
    fn same_bytes(&self, offset: u64, tail: &[u8]) -> bool {
        if self.len() < offset {
            return false;
        }
        let Some(start) = offset.checked_sub(tail.len() as u64) else {
            return false;
        };
        let mut buf = vec![0u8; tail.len()];
        self.file
            .read_exact_at(&mut buf, start)
            .is_ok_and(|()| buf == tail)
    }

    fn at(mut self, offset: u64, tail: Vec<u8>) -> Open {
        self.offset = offset;
        self.tail = tail;
        self
    }

    /// Reads complete lines from the offset, up to about `budget` bytes.
    /// Returns whether the end of the file was reached.
    fn read_lines(&mut self, budget: &mut usize, out: &mut Vec<String>) -> bool {
        let mut buf = vec![0u8; CHUNK];
        while *budget > 0 {
            let n = match self.file.read_at(&mut buf, self.offset) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn_path(
                        &self.path.to_string_lossy(),
                        "access-log-read",
                        format!("cannot read the access log: {e}"),
                    );
                    return true;
                }
            };
            if n == 0 {
                return true;
            }
            let data = &buf[..n];
            let Some(last) = data.iter().rposition(|&b| b == b'\n') else {
                if n >= MAX_LINE {
                    self.skip_long();
                    self.advance(data);
                    continue;
                }
                // A line still being written.
                return true;
            };
            let whole = &data[..=last];
            for line in whole[..last].split(|&b| b == b'\n') {
                if std::mem::take(&mut self.skipping) {
                    continue;
                }
                if line.len() > MAX_LINE {
                    self.skip_long();
                    self.skipping = false;
                    continue;
                }
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                out.push(String::from_utf8_lossy(line).into_owned());
            }
            self.advance(whole);
            *budget = budget.saturating_sub(whole.len());
            if n < buf.len() && last + 1 == n {
                return true;
            }
        }
        false
    }

    fn skip_long(&mut self) {
        self.skipping = true;
        warn_path(
            &self.path.to_string_lossy(),
            "access-log-long-line",
            format!("skipped a line longer than {MAX_LINE} bytes in the access log"),
        );
    }

    fn advance(&mut self, consumed: &[u8]) {
        self.offset += consumed.len() as u64;
        let keep = TAIL.min(consumed.len());
        let mut tail = std::mem::take(&mut self.tail);
        tail.extend_from_slice(&consumed[consumed.len() - keep..]);
        let cut = tail.len().saturating_sub(TAIL);
        self.tail = tail.split_off(cut);
    }

    fn position(&self, log: &str) -> Position {
        Position {
            log: log.to_string(),
            dev: self.dev,
            ino: self.ino,
            offset: self.offset,
            tail: self.tail.clone(),
            cursor: None,
        }
    }
}

impl Follower {
    /// Starts following `path` from a stored position, or (first run) at
    /// its end, or at its start with `from_start` (`--emit-existing`).
    pub fn start(log: &str, stored: Option<Position>, from_start: bool) -> Follower {
        let path = PathBuf::from(log);
        let mut f = Follower {
            log: log.to_string(),
            path: path.clone(),
            cur: None,
            old: None,
            last: stored.clone().unwrap_or(Position {
                log: log.to_string(),
                ..Position::default()
            }),
        };
        let opened = match open(&path) {
            Ok(o) => Some(o),
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound || stored.is_some() {
                    warn_path(
                        log,
                        "access-log-open",
                        format!("cannot open the access log: {e}; trying again"),
                    );
                }
                None
            }
        };
        let Some(p) = stored else {
            // First run: a silent baseline at the end, on a line boundary.
            f.cur = opened.map(|o| {
                if from_start {
                    o
                } else {
                    let end = o.len();
                    let (offset, tail) = last_line_end(&o, end);
                    o.at(offset, tail)
                }
            });
            return f;
        };
        match opened {
            Some(o) if (o.dev, o.ino) == (p.dev, p.ino) => {
                if o.same_bytes(p.offset, &p.tail) {
                    f.cur = Some(o.at(p.offset, p.tail));
                } else {
                    // Truncated (copytruncate) while we were away.
                    f.old = find_copy(&path, &p, o.ino);
                    f.cur = Some(o);
                }
            }
            other => {
                // Renamed away while we were away: the old file, if it is
                // still beside the path, first.
                f.old = find_inode(&path, &p).or_else(|| find_copy(&path, &p, 0));
                if f.old.is_none() && p.offset > 0 {
                    warn_path(
                        log,
                        "access-log-lost",
                        "the access log was rotated while maildir-events was not running and the old file is not beside it any more; lines it got after the last run are not reported",
                    );
                }
                f.cur = other;
            }
        }
        f
    }

    /// Reads up to about `budget` bytes of complete lines, oldest first.
    /// Returns whether more may be waiting (the budget ran out).
    pub fn read(&mut self, mut budget: usize, out: &mut Vec<String>) -> bool {
        if self.cur.is_none()
            && let Ok(o) = open(&self.path)
            && self
                .old
                .as_ref()
                .is_none_or(|old| (old.dev, old.ino) != (o.dev, o.ino))
        {
            // The log (re)appeared: a new file, read from its start.
            self.cur = Some(o);
        }
        // Seen before draining the old file: once the new one has data,
        // Dovecot writes to the old one no more.
        let new_has_data = match &self.cur {
            Some(c) => c.len() > 0,
            None => false,
        };
        if let Some(old) = &mut self.old {
            let eof = old.read_lines(&mut budget, out);
            if !eof {
                return true;
            }
            if old.copy || new_has_data || self.cur.is_none() && !old.path.exists() {
                self.last = old.position(&self.log);
                self.old = None;
            } else {
                return false;
            }
        }
        self.check_rotation();
        if self.old.is_some() {
            return self.read(budget, out);
        }
        match &mut self.cur {
            Some(c) => !c.read_lines(&mut budget, out),
            None => false,
        }
    }

    /// Looks whether the path names another file now (rename) or the file
    /// shrank or changed under our offset (copytruncate).
    fn check_rotation(&mut self) {
        let Some(cur) = &mut self.cur else {
            // The log did not exist (or could not be opened): a file that
            // appears is read from its start.
            if let Ok(o) = open(&self.path) {
                self.cur = Some(o);
            }
            return;
        };
        match fs::metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) != (cur.dev, cur.ino) => {
                if let Ok(new) = open(&self.path) {
                    self.old = self.cur.replace(new);
                }
            }
            Ok(_) => {
                if cur.offset > 0 && !cur.same_bytes(cur.offset, &cur.tail) {
                    let p = cur.position(&self.log);
                    self.old = find_copy(&self.path, &p, cur.ino);
                    cur.offset = 0;
                    cur.tail.clear();
                    cur.skipping = false;
                }
            }
            // Renamed, the new file not created yet: go on with the handle.
            Err(_) => {}
        }
    }

    /// Where the reading is, to commit with the events of what was read.
    pub fn position(&self) -> Position {
        match (&self.old, &self.cur) {
            (Some(o), _) | (None, Some(o)) => o.position(&self.log),
            (None, None) => self.last.clone(),
        }
    }
}

/// The offset after the last complete line of a file of `end` bytes, and
/// the bytes before it.
fn last_line_end(o: &Open, end: u64) -> (u64, Vec<u8>) {
    let start = end.saturating_sub(CHUNK as u64);
    let mut buf = vec![0u8; (end - start) as usize];
    if o.file.read_exact_at(&mut buf, start).is_err() {
        return (end, Vec::new());
    }
    match buf.iter().rposition(|&b| b == b'\n') {
        Some(i) => {
            let off = start + i as u64 + 1;
            let from = (i + 1).saturating_sub(TAIL);
            (off, buf[from..=i].to_vec())
        }
        None if start == 0 => (0, Vec::new()),
        None => (end, Vec::new()),
    }
}

/// Regular files beside the log whose names start with its name
/// (`dovecot.log.1`, `dovecot.log-20261206`), compressed ones left out.
fn siblings(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let name = name.as_encoded_bytes();
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name();
            let n = n.as_encoded_bytes();
            n.len() > name.len()
                && n.starts_with(name)
                && ![".gz", ".xz", ".bz2", ".zst", ".lz4"]
                    .iter()
                    .any(|s| n.ends_with(s.as_bytes()))
                && e.file_type().is_ok_and(|t| t.is_file())
        })
        .map(|e| e.path())
        .take(SIBLINGS)
        .collect();
    out.sort();
    out
}

/// The file a stored position was in, found again by its inode beside
/// the path (renamed by rotation).
fn find_inode(path: &Path, p: &Position) -> Option<Open> {
    siblings(path).into_iter().find_map(|s| {
        let o = open(&s).ok()?;
        if (o.dev, o.ino) != (p.dev, p.ino) {
            return None;
        }
        Some(if o.same_bytes(p.offset, &p.tail) {
            o.at(p.offset, p.tail.clone())
        } else {
            o
        })
    })
}

/// The copy copytruncate made of the file we were reading: a file beside
/// it (not `not_ino`) with our last bytes just before our offset.
fn find_copy(path: &Path, p: &Position, not_ino: u64) -> Option<Open> {
    if p.offset == 0 || p.tail.is_empty() {
        return None;
    }
    siblings(path).into_iter().find_map(|s| {
        let o = open(&s).ok()?;
        if o.ino == not_ino || !o.same_bytes(p.offset, &p.tail) {
            return None;
        }
        let mut o = o.at(p.offset, p.tail.clone());
        o.copy = true;
        Some(o)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, text: &str) {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn read_all(f: &mut Follower) -> Vec<String> {
        let mut out = Vec::new();
        while f.read(1 << 20, &mut out) {}
        out
    }

    #[test]
    fn baseline_partial_lines_and_restart() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("dovecot.log");
        append(&log, "old 1\nold 2\nhalf");
        let mut f = Follower::start(log.to_str().unwrap(), None, false);
        append(&log, " line\nnew 1\n");
        assert_eq!(read_all(&mut f), ["half line", "new 1"]);
        append(&log, "new 2\npart");
        assert_eq!(read_all(&mut f), ["new 2"]);
        let p = f.position();
        append(&log, "ial\n");
        let mut g = Follower::start(log.to_str().unwrap(), Some(p), false);
        assert_eq!(read_all(&mut g), ["partial"]);
        let mut all = Follower::start(log.to_str().unwrap(), None, true);
        assert_eq!(read_all(&mut all).len(), 6);
    }

    #[test]
    fn rename_then_reopen_and_copytruncate() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("dovecot.log");
        append(&log, "a\n");
        let mut f = Follower::start(log.to_str().unwrap(), None, false);
        append(&log, "b\n");
        fs::rename(&log, d.path().join("dovecot.log.1")).unwrap();
        append(&d.path().join("dovecot.log.1"), "c\n");
        fs::write(&log, "").unwrap();
        // The new file is empty: the old one may still get lines.
        assert_eq!(read_all(&mut f), ["b", "c"]);
        append(&d.path().join("dovecot.log.1"), "d\n");
        append(&log, "e\n");
        assert_eq!(read_all(&mut f), ["d", "e"]);
        // copytruncate: copy, truncate, new lines.
        append(&log, "f\ng\n");
        let mut out = Vec::new();
        f.read(1 << 20, &mut out);
        assert_eq!(out, ["f", "g"]);
        append(&log, "h\n");
        fs::copy(&log, d.path().join("dovecot.log.2")).unwrap();
        fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&log, "i\n");
        assert_eq!(read_all(&mut f), ["h", "i"]);
    }

    #[test]
    fn rotations_while_away() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("dovecot.log");
        append(&log, "a\n");
        let mut f = Follower::start(log.to_str().unwrap(), None, false);
        append(&log, "b\n");
        assert_eq!(read_all(&mut f), ["b"]);
        let p = f.position();
        // Renamed and reopened while we were away.
        append(&log, "c\n");
        fs::rename(&log, d.path().join("dovecot.log.1")).unwrap();
        append(&log, "d\n");
        let mut g = Follower::start(log.to_str().unwrap(), Some(p), false);
        assert_eq!(read_all(&mut g), ["c", "d"]);
        // Copied and truncated while we were away, then written again
        // longer than before.
        let p = g.position();
        append(&log, "e\n");
        fs::copy(&log, d.path().join("dovecot.log.0")).unwrap();
        fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&log, "f f f f f f\n");
        let mut h = Follower::start(log.to_str().unwrap(), Some(p), false);
        assert_eq!(read_all(&mut h), ["e", "f f f f f f"]);

        // Renamed while we were away, and no new file yet: the old one,
        // then the new one once it appears.
        let p = h.position();
        append(&log, "g\n");
        fs::rename(&log, d.path().join("dovecot.log.3")).unwrap();
        let mut k = Follower::start(log.to_str().unwrap(), Some(p), false);
        assert_eq!(read_all(&mut k), ["g"]);
        append(&log, "h\n");
        assert_eq!(read_all(&mut k), ["h"]);
    }

    #[test]
    fn long_lines_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("x.log");
        fs::write(&log, "").unwrap();
        let mut f = Follower::start(log.to_str().unwrap(), None, false);
        let long = "x".repeat(MAX_LINE + 10);
        let huge = "y".repeat(3 * CHUNK);
        append(&log, &format!("a\n{long}\nb\n{huge}\nc\n"));
        assert_eq!(read_all(&mut f), ["a", "b", "c"]);
    }
}
