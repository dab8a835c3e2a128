//! What a scan found: a user's folders and their messages, and the hash
//! its maps of base names use.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::folder_path;
use crate::listing::Listing;
use crate::maildir::keywords::Keywords;
use crate::maildir::name::Flags;
use crate::snapshot::{DirStamp, UidSource};

/// A map keyed by message base names.
pub type NameMap<V> = HashMap<Vec<u8>, V, NameHash>;

/// The hasher of [`NameMap`]: a keyed multiply-fold hash (the construction
/// of foldhash and aHash's fallback), several times faster than std's
/// SipHash on base names of 40–60 bytes, where SipHash was about a tenth
/// of a scan's CPU. The keys come from std's `RandomState`, so they differ
/// per process: names in a hostile store cannot be chosen to collide.
#[derive(Clone, Copy, Debug)]
pub struct NameHash {
    k0: u64,
    k1: u64,
}

impl Default for NameHash {
    fn default() -> NameHash {
        use std::hash::BuildHasher;
        static KEYS: std::sync::OnceLock<NameHash> = std::sync::OnceLock::new();
        *KEYS.get_or_init(|| {
            let s = std::collections::hash_map::RandomState::new();
            NameHash {
                k0: s.hash_one(0x6d61_696c_6469_7230_u64),
                // Odd, so no multiplication by it loses bits.
                k1: s.hash_one(0x6576_656e_7473_3031_u64) | 1,
            }
        })
    }
}

impl std::hash::BuildHasher for NameHash {
    type Hasher = NameHasher;
    fn build_hasher(&self) -> NameHasher {
        NameHasher {
            h: self.k0,
            k: self.k1,
        }
    }
}

/// See [`NameHash`].
pub struct NameHasher {
    h: u64,
    k: u64,
}

impl NameHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        let p = u128::from(self.h ^ word) * u128::from(self.k);
        self.h = (p as u64) ^ ((p >> 64) as u64);
    }
}

impl std::hash::Hasher for NameHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        // The length goes in with the last word, so "a" and "a\0" differ.
        self.mix(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        let p = u128::from(self.h.rotate_left(29)) * u128::from(self.k ^ 0x9e37_79b9_7f4a_7c15);
        (p as u64) ^ ((p >> 64) as u64)
    }
}

/// One message file found in `new/` or `cur/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The whole file name, to find the file again.
    pub file: Vec<u8>,
    pub in_new: bool,
    pub flags: Flags,
    /// `S=` from the name.
    pub size: Option<u64>,
    /// `W=` from the name.
    pub vsize: Option<u64>,
}

/// What a folder's message directories held.
#[derive(Clone, Debug)]
pub enum Contents {
    /// The messages, in base-name order.
    Listed(Listing),
    /// The directory stamps prove nothing changed since the snapshot.
    Unchanged,
    /// The folder could not be read; keep the snapshot as it is.
    Unreadable,
}

/// The header of the server's UID list of a listed folder. Its UIDs are
/// in the [`Listing`] (see [`crate::listing::Message::uid`]): only the
/// listed names' UIDs matter, and a second map of a million names cost
/// more than the listing itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UidHeader {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub guid: Option<String>,
}

/// UIDs the server keeps for a folder, by base name (for the live engine,
/// which follows a list's tail rather than listing the folder).
#[derive(Clone, Debug, Default)]
pub struct ServerUids {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub guid: Option<String>,
    pub by_base: NameMap<u32>,
}

/// One folder on disk.
#[derive(Clone, Debug)]
pub struct FolderListing {
    pub dir: Vec<u8>,
    pub name: String,
    pub dev: u64,
    pub ino: u64,
    pub stamp: DirStamp,
    pub contents: Contents,
    /// Where UIDs come from and, for a server, its list's header.
    pub uid_source: UidSource,
    pub server_uids: Option<UidHeader>,
    pub keywords: Keywords,
    /// Our numbering of Courier keyword names (see
    /// [`crate::maildir::courier_keywords::Table`]), for a folder with a
    /// `courierimapkeywords/` directory.
    pub keyword_table: Option<String>,
}

/// One user's store on disk.
#[derive(Clone, Debug)]
pub struct UserListing {
    pub root: PathBuf,
    /// False when the Maildir root does not exist (yet).
    pub exists: bool,
    pub folders: BTreeMap<Vec<u8>, FolderListing>,
    /// Subscribed names; `None` when the file could not be read, so the
    /// old set must be kept.
    pub subscriptions: Option<BTreeSet<String>>,
    /// Dovecot manages this store (some folder has a `dovecot-uidlist`), so
    /// a new file without a UID is worth waiting for.
    pub dovecot: bool,
}

impl FolderListing {
    /// The path of a message file of this folder.
    pub fn message_path(&self, root: &Path, entry: &Entry) -> PathBuf {
        let mut p = folder_path(root, &self.dir);
        p.push(if entry.in_new { "new" } else { "cur" });
        p.push(std::ffi::OsStr::from_bytes(&entry.file));
        p
    }
}
