//! Reading only what Dovecot appended to a `dovecot-uidlist` since the last
//! look, so that learning a new message's UID costs the same in a folder of
//! ten messages and in one of a million.
//!
//! Dovecot appends records in place and rewrites the whole file (new inode)
//! only on compaction; a changed inode or a shorter file means a full read.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::maildir::uidlist;
use crate::scan::ServerUids;

/// How many recently appended records are remembered per folder.
const RECENT: usize = 4096;

/// What we know of one folder's `dovecot-uidlist`.
#[derive(Clone, Debug, Default)]
pub struct UidTail {
    ino: u64,
    /// Bytes parsed so far (up to the end of the last complete line).
    offset: u64,
    uids: ServerUids,
}

impl UidTail {
    /// The folder's UIDVALIDITY, next UID, and the UIDs of recently
    /// appended records (after a full read: all of them).
    pub fn uids(&self) -> &ServerUids {
        &self.uids
    }

    /// Brings the view up to date. `Ok(false)` when the file does not exist.
    pub fn refresh(&mut self, path: &Path) -> io::Result<bool> {
        let mut file = match fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        if meta.ino() != self.ino || meta.len() < self.offset || self.offset == 0 {
            let mut bytes = Vec::with_capacity(meta.len() as usize);
            file.read_to_end(&mut bytes)?;
            let list = uidlist::parse(&bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            self.ino = meta.ino();
            self.offset = complete_len(&bytes);
            self.uids = ServerUids {
                uidvalidity: list.uidvalidity,
                uidnext: list.next_uid,
                guid: list.guid,
                by_base: list.records.into_iter().map(|(u, b)| (b, u)).collect(),
            };
            return Ok(true);
        }
        if meta.len() == self.offset {
            return Ok(true);
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut tail = Vec::new();
        file.read_to_end(&mut tail)?;
        let used = complete_len(&tail);
        if used == 0 {
            return Ok(true);
        }
        // Reuse the parser: a synthetic header and the appended records.
        let mut text = format!("3 V{} N1\n", self.uids.uidvalidity.max(1)).into_bytes();
        text.extend_from_slice(&tail[..used as usize]);
        if let Ok(list) = uidlist::parse(&text) {
            if self.uids.by_base.len() + list.records.len() > RECENT * 4 {
                // Keep memory bounded: after a full read the map holds the
                // whole folder; later only what came recently matters.
                self.uids.by_base.clear();
            }
            for (uid, base) in list.records {
                self.uids.uidnext = self.uids.uidnext.max(uid.saturating_add(1));
                self.uids.by_base.insert(base, uid);
            }
        }
        self.offset += used;
        Ok(true)
    }
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
    use std::io::Write;

    #[test]
    fn reads_appends_and_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dovecot-uidlist");
        fs::write(&p, "3 V7 N3\n1 :a\n2 :b\n").unwrap();
        let mut t = UidTail::default();
        assert!(t.refresh(&p).unwrap());
        assert_eq!(t.uids().by_base.get(b"b".as_slice()), Some(&2));
        assert_eq!((t.uids().uidvalidity, t.uids().uidnext), (7, 3));

        let mut f = fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"3 :c\n4 W10 :d").unwrap();
        t.refresh(&p).unwrap();
        assert_eq!(t.uids().by_base.get(b"c".as_slice()), Some(&3));
        assert_eq!(
            t.uids().by_base.get(b"d".as_slice()),
            None,
            "half-written line waits"
        );
        f.write_all(b"\n").unwrap();
        t.refresh(&p).unwrap();
        assert_eq!(t.uids().by_base.get(b"d".as_slice()), Some(&4));
        assert_eq!(t.uids().uidnext, 5);

        // Compaction: a new file by rename.
        let tmp = dir.path().join("tmp");
        fs::write(&tmp, "3 V8 N10\n9 :z\n").unwrap();
        fs::rename(&tmp, &p).unwrap();
        t.refresh(&p).unwrap();
        assert_eq!(
            (t.uids().uidvalidity, t.uids().by_base.get(b"z".as_slice())),
            (8, Some(&9))
        );
        assert_eq!(t.uids().by_base.get(b"a".as_slice()), None);

        fs::remove_file(&p).unwrap();
        assert!(!t.refresh(&p).unwrap());
    }
}
