//! Reading a user's Maildir from disk into a listing: the only module that
//! reads the mail store.
//!
//! A scan reads directory names only (the flags, sizes and identity of a
//! message are in its file name), the small control files Dovecot and
//! Courier keep beside them, and nothing else. It never writes, never
//! renames, never takes a Dovecot lock: we are a guest in the store.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tracing::warn;

use crate::maildir::folders;
use crate::maildir::keywords::Keywords;
use crate::snapshot::{UidSource, UserSnapshot};
use crate::storefs::{self, EntryKind, Refused, StoreDir};
use crate::warnlimit::warn_path;

mod control;
mod discover;
mod folder;
mod listed;
mod settle;

pub use control::*;
pub use discover::*;
pub use listed::*;
pub use settle::*;

use folder::scan_folder;

/// Read limits of the control files. They are far above what a real
/// store holds (a uidlist of a million messages is about 70 MB), and keep
/// a hostile or broken file from costing unbounded memory.
pub const UIDLIST_CAP: u64 = 256 << 20;
/// `dovecot-keywords` names at most 26 keywords.
pub const KEYWORDS_CAP: u64 = 64 << 10;
/// `subscriptions` of tens of thousands of folders fit.
pub const SUBSCRIPTIONS_CAP: u64 = 4 << 20;
/// `maildirsize` is recalculated by its writers past 5,120 bytes.
pub const MAILDIRSIZE_CAP: u64 = 1 << 20;
/// A message without `W=` is read to count its line ends up to this size;
/// a larger one (no MTA delivers such a file) reports its physical size.
pub const VSIZE_READ_CAP: u64 = 64 << 20;

/// How to read names in a store.
#[derive(Clone, Debug)]
pub struct ScanOptions {
    /// The info separator in message file names (`:` unless the store was
    /// written for a filesystem that forbids it).
    pub info_sep: u8,
    /// The IMAP hierarchy separator mailbox names are reported with.
    pub hier_sep: char,
    /// The namespace prefix of every mailbox but INBOX (`INBOX.`); `None`:
    /// `INBOX` plus the separator for a Courier store (see
    /// [`crate::courier::is_courier_store`]), else none.
    pub namespace_prefix: Option<String>,
    /// Folder names on disk are UTF-8 rather than modified UTF-7.
    pub utf8_names: bool,
    /// List every folder even when its directory stamps are unchanged.
    pub full: bool,
    /// `stat` message files without `S=` in their name, for quota.
    pub stat_sizes: bool,
    /// How old a control file edited in place (`subscriptions`) must be
    /// before it is trusted; a younger one is waited for, up to this long.
    /// `None` in `watch`, which reads it again when its writer closes it.
    pub settle: Option<Duration>,
}

/// The directory of a folder: the root for INBOX, else `root/<dir>`.
pub fn folder_path(root: &Path, dir: &[u8]) -> PathBuf {
    if dir.is_empty() {
        root.to_path_buf()
    } else {
        root.join(std::ffi::OsStr::from_bytes(dir))
    }
}

/// Reads one user's store.
///
/// `old` lets folders whose stamps are unchanged be skipped (see
/// [`DirStamp`]); the diff then keeps their snapshot. Nothing under the
/// root is reached through a link (see [`storefs`]).
pub fn scan_user(root: &Path, old: Option<&UserSnapshot>, opts: &ScanOptions) -> UserListing {
    let mut listing = UserListing {
        root: root.to_path_buf(),
        exists: false,
        folders: BTreeMap::new(),
        subscriptions: Some(BTreeSet::new()),
        dovecot: false,
    };
    let keep_all = |listing: &mut UserListing| {
        listing.exists = true;
        listing.subscriptions = None;
        if let Some(old) = old {
            for (dir, f) in &old.folders {
                listing.folders.insert(dir.clone(), unreadable_copy(f));
            }
        }
    };
    let root_dir = match StoreDir::open(root) {
        Ok(d) => d,
        Err(Refused::NotFound) => return listing,
        Err(e) => {
            let hint = match e {
                Refused::Link => " (name the real directory in --store or MAILDIR)",
                _ => " (run as the mail user or root)",
            };
            warn_path(
                &root.display().to_string(),
                "root",
                format!("the Maildir {e}; keeping what was known{hint}"),
            );
            keep_all(&mut listing);
            return listing;
        }
    };
    let entries = match root_dir.entries() {
        Ok(e) => e,
        Err(e) => {
            warn!(path = %root.display(), "cannot read the Maildir: {e}; keeping what was known (run as the mail user or root)");
            keep_all(&mut listing);
            return listing;
        }
    };
    listing.exists = true;
    let prefix = match &opts.namespace_prefix {
        Some(p) => p.clone(),
        None if crate::courier::is_courier_store(&root_dir) => format!("INBOX{}", opts.hier_sep),
        None => String::new(),
    };
    let mut dirs: Vec<Vec<u8>> = vec![Vec::new()];
    let mut linked = Vec::new();
    let mut invalid = folders::InvalidDirs::default();
    for entry in entries.flatten() {
        let (name, kind) = entry;
        match folders::classify_dir(&name) {
            folders::DirKind::Folder => {}
            folders::DirKind::Invalid(why) if kind == EntryKind::Dir => {
                invalid.add(&name, why);
                continue;
            }
            _ => continue,
        }
        match kind {
            EntryKind::Dir => dirs.push(name),
            EntryKind::Link => linked.push(name),
            _ => {}
        }
    }
    if !invalid.is_empty() {
        // Dovecot will not open such a name either: no mailbox, no events
        // for what is inside.
        warn_path(
            &root.display().to_string(),
            "invalid-folders",
            format!("{invalid}; their messages get no events (rename them to valid names)"),
        );
    }
    for name in linked {
        warn_path(
            &storefs::show(root, &name),
            "link",
            "folder is a symbolic link; not followed (it could point out of the store)",
        );
        // A folder that was a directory before keeps its snapshot: turning
        // it into a link is no proof that its mailbox is gone.
        if let Some(f) = old.and_then(|o| o.folders.get(&name)) {
            listing.folders.insert(name, unreadable_copy(f));
        }
    }
    for dir in dirs {
        let old_folder = old.and_then(|o| o.folders.get(&dir));
        if let Some(f) = scan_folder(&root_dir, root, &dir, old_folder, opts, &prefix) {
            listing.dovecot |= f.uid_source == UidSource::Dovecot;
            listing.folders.insert(dir, f);
        }
    }
    listing.subscriptions = read_subscriptions(&root_dir, root, opts).map(|names| {
        names
            .into_iter()
            .map(|n| {
                if n == "INBOX" {
                    n
                } else {
                    format!("{prefix}{n}")
                }
            })
            .collect()
    });
    listing
}

fn unreadable_copy(f: &crate::snapshot::FolderSnapshot) -> FolderListing {
    FolderListing {
        dir: f.dir.clone(),
        name: f.name.clone(),
        dev: f.dev,
        ino: f.ino,
        stamp: f.stamp,
        contents: Contents::Unreadable,
        uid_source: f.uid_source,
        server_uids: None,
        keywords: Keywords::default(),
        keyword_table: f.keyword_table.clone(),
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
