//! Reading only what Dovecot appended to a `dovecot-uidlist` (or what
//! Courier-IMAP wrote to a `courierimapuiddb`) since the last look, so that learning a new message's UID costs the same in a folder of
//! ten messages and in one of a million.
//!
//! Dovecot appends records in place and rewrites the whole file (new inode)
//! only on compaction; a changed inode or a shorter file means a full read.
//! Courier replaces its list by rename each time, so it is read whole.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::FileExt;

use crate::maildir::uidlist;
use crate::scan::{ServerUids, UIDLIST_CAP};
use crate::storefs::{Refused, StoreDir};

/// How many recently appended records are remembered per folder.
const RECENT: usize = 4096;
/// How many bytes before the read position are kept to recognise the
/// file: Dovecot only appends, so they never change unless someone
/// rewrote the file in place.
const MARK: usize = 64;

/// What we know of one folder's `dovecot-uidlist`.
#[derive(Clone, Debug, Default)]
pub struct UidTail {
    ino: u64,
    /// Bytes parsed so far (up to the end of the last complete line).
    offset: u64,
    /// The last bytes before `offset`.
    mark: Vec<u8>,
    /// The list's format version (3 Dovecot, 1 Courier).
    version: u8,
    uids: ServerUids,
}

impl UidTail {
    /// The folder's UIDVALIDITY, next UID, and the UIDs of recently
    /// appended records (after a full read: all of them).
    pub fn uids(&self) -> &ServerUids {
        &self.uids
    }

    /// Brings the view up to date from the folder's `dovecot-uidlist`,
    /// opened without following a link. `Ok(false)` when the file does not
    /// exist.
    pub fn refresh(&mut self, folder: &StoreDir) -> io::Result<bool> {
        self.refresh_file(folder, b"dovecot-uidlist")
    }

    /// As [`UidTail::refresh`], from the list named `file`
    /// (`dovecot-uidlist` or `courierimapuiddb`).
    pub fn refresh_file(&mut self, folder: &StoreDir, file: &[u8]) -> io::Result<bool> {
        let mut sf = match folder.file(file) {
            Ok(f) => f,
            Err(Refused::NotFound) => return Ok(false),
            Err(Refused::Io(e)) => return Err(e),
            Err(e) => return Err(io::Error::other(e.to_string())),
        };
        let (ino, len) = (sf.stat().st_ino, sf.len());
        if ino != self.ino || len < self.offset || self.offset == 0 || !self.mark_holds(&mut sf) {
            let bytes = sf
                .read_all(UIDLIST_CAP)
                .map_err(|e| io::Error::other(e.to_string()))?;
            let list = uidlist::parse(&bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            self.ino = ino;
            self.version = list.version;
            self.offset = complete_len(&bytes);
            self.mark = mark_of(&bytes[..self.offset as usize]);
            self.uids = ServerUids {
                uidvalidity: list.uidvalidity,
                uidnext: list.next_uid,
                guid: list.guid,
                by_base: list.records.into_iter().map(|(u, b)| (b, u)).collect(),
            };
            return Ok(true);
        }
        if len == self.offset {
            return Ok(true);
        }
        let mut tail = vec![0u8; (len - self.offset).min(UIDLIST_CAP) as usize];
        let n = read_at(sf.file_mut(), &mut tail, self.offset)?;
        tail.truncate(n);
        let used = complete_len(&tail);
        if used == 0 {
            return Ok(true);
        }
        // Reuse the parser: a synthetic header and the appended records.
        let mut text = match self.version {
            1 => format!("1 {} 1\n", self.uids.uidvalidity.max(1)),
            _ => format!("3 V{} N1\n", self.uids.uidvalidity.max(1)),
        }
        .into_bytes();
        text.extend_from_slice(&tail[..used as usize]);
        if let Ok(list) = uidlist::parse(&text) {
            if self.uids.by_base.len() + list.records.len() > RECENT * 4 {
                // Keep memory bounded: after a full read the map holds the
                // whole folder; later only what came recently matters.
                self.uids.by_base.clear();
            }
            for (uid, base) in list.records {
                if uid < self.uids.uidnext {
                    // Not above every UID so far: a duplicate or out of
                    // order (Dovecot calls the list corrupted). Never two
                    // messages with one UID.
                    continue;
                }
                self.uids.uidnext = uid.saturating_add(1);
                self.uids.by_base.insert(base, uid);
            }
        }
        self.offset += used;
        let mut joined = std::mem::take(&mut self.mark);
        joined.extend_from_slice(&tail[..used as usize]);
        self.mark = mark_of(&joined);
        Ok(true)
    }

    /// Whether the bytes before the read position are still the ones read
    /// last time: if not, the file was rewritten in place (not appended to)
    /// and must be read whole again.
    fn mark_holds(&self, sf: &mut crate::storefs::StoreFile) -> bool {
        let start = self.offset - self.mark.len() as u64;
        let mut now = vec![0u8; self.mark.len()];
        matches!(read_at(sf.file_mut(), &mut now, start), Ok(n) if n == now.len() && now == self.mark)
    }
}

fn mark_of(bytes: &[u8]) -> Vec<u8> {
    bytes[bytes.len().saturating_sub(MARK)..].to_vec()
}

/// Fills as much of `buf` as the file has from `offset`.
fn read_at(f: &mut std::fs::File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Length up to and including the last '\n': a half-written line waits.
fn complete_len(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map(|i| i as u64 + 1)
        .unwrap_or(0)
}

/// Tails per folder, keyed by the caller.
pub type UidTails<K> = HashMap<K, UidTail>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;

    #[test]
    fn reads_appends_and_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dovecot-uidlist");
        fs::write(&p, "3 V7 N3\n1 :a\n2 :b\n").unwrap();
        let d = StoreDir::open(dir.path()).unwrap();
        let mut t = UidTail::default();
        assert!(t.refresh(&d).unwrap());
        assert_eq!(t.uids().by_base.get(b"b".as_slice()), Some(&2));
        assert_eq!((t.uids().uidvalidity, t.uids().uidnext), (7, 3));

        let mut f = fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"3 :c\n4 W10 :d").unwrap();
        t.refresh(&d).unwrap();
        assert_eq!(t.uids().by_base.get(b"c".as_slice()), Some(&3));
        assert_eq!(
            t.uids().by_base.get(b"d".as_slice()),
            None,
            "half-written line waits"
        );
        f.write_all(b"\n").unwrap();
        t.refresh(&d).unwrap();
        assert_eq!(t.uids().by_base.get(b"d".as_slice()), Some(&4));
        assert_eq!(t.uids().uidnext, 5);

        // Compaction: a new file by rename.
        let tmp = dir.path().join("tmp");
        fs::write(&tmp, "3 V8 N10\n9 :z\n").unwrap();
        fs::rename(&tmp, &p).unwrap();
        t.refresh(&d).unwrap();
        assert_eq!(
            (t.uids().uidvalidity, t.uids().by_base.get(b"z".as_slice())),
            (8, Some(&9))
        );
        assert_eq!(t.uids().by_base.get(b"a".as_slice()), None);

        fs::remove_file(&p).unwrap();
        assert!(!t.refresh(&d).unwrap());
    }

    #[test]
    fn reads_courier_lists() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("courierimapuiddb");
        fs::write(&p, "1 796525500 3\n1 a\n2 b,S=21\n").unwrap();
        let d = StoreDir::open(dir.path()).unwrap();
        let mut t = UidTail::default();
        assert!(!t.refresh(&d).unwrap(), "no dovecot-uidlist here");
        assert!(t.refresh_file(&d, b"courierimapuiddb").unwrap());
        assert_eq!(t.uids().by_base.get(b"b,S=21".as_slice()), Some(&2));
        assert_eq!((t.uids().uidvalidity, t.uids().uidnext), (796525500, 3));
        // Appended in place (Courier renames, but a tail must still work).
        let mut f = fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"3 c\n").unwrap();
        t.refresh_file(&d, b"courierimapuiddb").unwrap();
        assert_eq!(t.uids().by_base.get(b"c".as_slice()), Some(&3));
        // Replaced by rename with a new UIDVALIDITY (a folder renamed).
        let tmp = dir.path().join("tmp");
        fs::write(&tmp, "1 796525502 2\n1 c\n").unwrap();
        fs::rename(&tmp, &p).unwrap();
        t.refresh_file(&d, b"courierimapuiddb").unwrap();
        assert_eq!(t.uids().uidvalidity, 796525502);
        assert_eq!(t.uids().by_base.get(b"c".as_slice()), Some(&1));
    }

    #[test]
    fn a_rewrite_in_place_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dovecot-uidlist");
        fs::write(&p, "3 V7 N3\n1 :a\n2 :b\n").unwrap();
        let d = StoreDir::open(dir.path()).unwrap();
        let mut t = UidTail::default();
        t.refresh(&d).unwrap();
        // Same inode, longer, but not an append: the old tail is gone.
        let mut f = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        f.write_all(b"3 V7 N9\n5 :x\n6 :y\n7 :zzzzzz\n").unwrap();
        drop(f);
        t.refresh(&d).unwrap();
        assert_eq!(t.uids().by_base.get(b"a".as_slice()), None);
        assert_eq!(t.uids().by_base.get(b"zzzzzz".as_slice()), Some(&7));
        assert_eq!(t.uids().uidnext, 9);
    }

    #[test]
    fn a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("other"), "3 V7 N3\n1 :a\n").unwrap();
        std::os::unix::fs::symlink(dir.path().join("other"), dir.path().join("dovecot-uidlist"))
            .unwrap();
        let d = StoreDir::open(dir.path()).unwrap();
        assert!(UidTail::default().refresh(&d).is_err());
    }
}
