//! Reading a user's Maildir from disk into a listing: the only module that
//! reads the mail store.
//!
//! A scan reads directory names only (the flags, sizes and identity of a
//! message are in its file name), the small control files Dovecot and
//! Courier keep beside them, and nothing else. It never writes, never
//! renames, never takes a Dovecot lock: we are a guest in the store.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use tracing::{debug, warn};

use crate::listing::Listing;
use crate::maildir::keywords::Keywords;
use crate::maildir::name::{self, Flags};
use crate::maildir::template::Template;
use crate::maildir::{folders, subscriptions, uidlist};
use crate::snapshot::{DirStamp, UidSource, UserSnapshot};
use crate::storefs::{self, EntryKind, Refused, StoreDir};
use crate::warnlimit::warn_path;
use rustix::fs::Stat;

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

/// Reads one folder; `None` when it vanished meanwhile.
fn scan_folder(
    root_dir: &StoreDir,
    root: &Path,
    dir: &[u8],
    old: Option<&crate::snapshot::FolderSnapshot>,
    opts: &ScanOptions,
    prefix: &str,
) -> Option<FolderListing> {
    let path = folder_path(root, dir);
    let opened;
    let folder_dir = if dir.is_empty() {
        root_dir
    } else {
        match root_dir.dir(dir) {
            Ok(d) => {
                opened = d;
                &opened
            }
            Err(Refused::NotFound) => return None,
            Err(e) => {
                warn_path(
                    &path.display().to_string(),
                    "folder",
                    format!("folder {e}; keeping what was known"),
                );
                return old.map(unreadable_copy);
            }
        }
    };
    let meta = match folder_dir.stat() {
        Ok(m) => m,
        Err(e) => {
            warn!(path = %path.display(), "cannot read folder: {e}; keeping what was known");
            return old.map(unreadable_copy);
        }
    };
    let name = if dir.is_empty() {
        "INBOX".to_string()
    } else {
        match folders::imap_name(dir, opts.hier_sep, opts.utf8_names) {
            Ok(n) => format!("{prefix}{n}"),
            Err(e) => {
                let lossy = folders::imap_name_lossy(dir, opts.hier_sep, opts.utf8_names);
                warn_path(
                    &path.display().to_string(),
                    "name",
                    format!(
                        "folder name is not valid {}: {}; reported as {lossy:?}",
                        if opts.utf8_names {
                            "UTF-8"
                        } else {
                            "modified UTF-7"
                        },
                        e.reason()
                    ),
                );
                format!("{prefix}{lossy}")
            }
        }
    };
    let started = now_ns();
    // A stamp is trusted only when every part is at least a second older
    // than our listing, so no later change can share its clock tick.
    let settled = started - 1_000_000_000;
    // The UID lists of both servers and Courier's keyword directory (a
    // keyword change there renames no message file) count as one stamp:
    // the newest mtime and the summed lengths.
    let stamp_of = |new_m: Option<&Stat>, cur_m: Option<&Stat>, ul_m: &[Option<Stat>]| {
        let mut stamp = DirStamp {
            new_mtime: new_m.map(storefs::mtime_ns).unwrap_or(0),
            cur_mtime: cur_m.map(storefs::mtime_ns).unwrap_or(0),
            uidlist_mtime: ul_m
                .iter()
                .flatten()
                .map(storefs::mtime_ns)
                .max()
                .unwrap_or(0),
            uidlist_len: ul_m.iter().flatten().map(|m| m.st_size as u64).sum(),
            trusted: false,
        };
        stamp.trusted = new_m.is_some()
            && cur_m.is_some()
            && stamp.new_mtime < settled
            && stamp.cur_mtime < settled
            && stamp.uidlist_mtime < settled;
        stamp
    };
    let mut listing = FolderListing {
        dir: dir.to_vec(),
        name,
        dev: meta.st_dev,
        ino: meta.st_ino,
        stamp: DirStamp::default(),
        contents: Contents::Unchanged,
        uid_source: UidSource::Own,
        server_uids: None,
        keywords: Keywords::default(),
        keyword_table: old.and_then(|o| o.keyword_table.clone()),
    };
    // A folder with messages still waiting for their UIDs is read again
    // even when unchanged, because Dovecot may have named them since.
    let may_skip = |old: &crate::snapshot::FolderSnapshot| !opts.full && !old.pending;
    if let Some(old) = old.filter(|o| may_skip(o) && o.stamp.trusted) {
        // The usual case of a catch-up: the stamps of new/ and cur/ (both
        // directories, not links) prove the folder unchanged without
        // opening them.
        let sub_stat = |sub: &[u8]| {
            folder_dir
                .stat_at(sub)
                .ok()
                .filter(|m| storefs::stat_kind(m) == EntryKind::Dir)
        };
        let (new_m, cur_m) = (sub_stat(b"new"), sub_stat(b"cur"));
        if new_m.is_some() && cur_m.is_some() {
            let ul_m = if old.uid_source == UidSource::Dovecot && old.keyword_table.is_none() {
                // A folder Dovecot numbers, without Courier's keywords:
                // Courier's UID list is never read while Dovecot's is
                // usable, so its stamp is all that can tell a change. Two
                // lookups of names that are not there, out of five, were a
                // fifth of an unchanged scan's system time. (A Courier
                // keyword directory that appears here is seen with the
                // folder's next change.)
                [folder_dir.stat_at(b"dovecot-uidlist").ok(), None, None]
            } else {
                control_stats(folder_dir)
            };
            let stamp = stamp_of(new_m.as_ref(), cur_m.as_ref(), &ul_m);
            if stamp.unchanged_since(&old.stamp) {
                listing.stamp = stamp;
                listing.uid_source = old.uid_source;
                return Some(listing);
            }
        }
    }
    // new/ and cur/ are opened once, without following a link; their
    // stamps come from the handles, and the listing reads the same ones.
    let mut subs: [Option<StoreDir>; 2] = [None, None];
    for (i, sub) in [b"new".as_slice(), b"cur"].into_iter().enumerate() {
        match folder_dir.dir(sub) {
            Ok(d) => subs[i] = Some(d),
            Err(Refused::NotFound) => {}
            Err(e) => {
                warn_path(
                    &storefs::show(&path, sub),
                    "sub",
                    format!("{e}; the folder's messages are kept as they were"),
                );
                let mut l = old.map(unreadable_copy)?;
                l.name = listing.name;
                return Some(l);
            }
        }
    }
    let stat_of = |d: &Option<StoreDir>| d.as_ref().and_then(|d| d.stat().ok());
    let (new_m, cur_m) = (stat_of(&subs[0]), stat_of(&subs[1]));
    let ul_m = control_stats(folder_dir);
    let stamp = stamp_of(new_m.as_ref(), cur_m.as_ref(), &ul_m);
    listing.stamp = stamp;
    if let Some(old) = old
        && may_skip(old)
        && stamp.unchanged_since(&old.stamp)
    {
        listing.uid_source = old.uid_source;
        return Some(listing);
    }
    // Room for the messages from the start (growing the map moved every
    // entry several times): as many as last time, or what the directories'
    // sizes suggest (an ext4 entry of a Dovecot name takes about 72 bytes).
    let dir_bytes: u64 = [&new_m, &cur_m]
        .iter()
        .filter_map(|m| m.as_ref().map(|m| m.st_size as u64))
        .sum();
    let hint = old
        .map_or(0, |o| o.count as usize)
        .max((dir_bytes / 80) as usize)
        .min(1 << 20);
    // About 60 bytes a name (a Dovecot name with its sizes and flags).
    let mut messages = Listing::with_capacity(hint, hint * 64);
    for (i, sub) in subs.iter().enumerate() {
        let Some(sub) = sub else { continue };
        let in_new = i == 0;
        if let Err(e) = list_messages(sub, &path, in_new, opts, &|_| true, &mut messages) {
            warn!(path = %storefs::show(&path, if in_new { b"new" } else { b"cur" }),
                "cannot list messages: {e}; keeping what was known (run as the mail user or root)");
            listing.contents = Contents::Unreadable;
            return Some(listing);
        }
    }
    messages.finish();
    if opts.stat_sizes {
        // Quota needs sizes; only names without S= cost a stat (of the
        // entry itself: links were skipped when listing).
        for i in 0..messages.len() {
            let m = messages.at(i);
            if m.size().is_some() {
                continue;
            }
            let d = &subs[if m.in_new() { 0 } else { 1 }];
            let size = d
                .as_ref()
                .and_then(|d| d.stat_at(m.file()).ok())
                .map(|m| m.st_size as u64);
            messages.set_size(i, size);
        }
    }
    if let Some((source, header)) = read_uids(folder_dir, &path, &mut messages) {
        listing.uid_source = source;
        listing.server_uids = Some(header);
    }
    listing.keywords = read_keywords(folder_dir, &path);
    if let Some(by_base) = crate::courier::read_keywords(folder_dir, &path) {
        let old_table = old.and_then(|o| o.keyword_table.as_deref());
        let table = courier_keyword_bits(&mut messages, &by_base, old_table, &path);
        listing.keywords = Keywords::parse(table.as_bytes());
        listing.keyword_table = Some(table);
    } else if let Some(t) = old.and_then(|o| o.keyword_table.clone()) {
        // The directory went: every keyword is cleared, under the same table.
        for i in 0..messages.len() {
            let flags = messages.at(i).flags().difference(ALL_KEYWORDS);
            messages.set_flags(i, flags);
        }
        listing.keywords = Keywords::parse(t.as_bytes());
        listing.keyword_table = Some(t);
    }
    listing.contents = Contents::Listed(messages);
    Some(listing)
}

/// The stats of the files whose change may change a folder's UIDs or
/// keywords without touching `new/` or `cur/`.
fn control_stats(folder: &StoreDir) -> [Option<Stat>; 3] {
    [
        b"dovecot-uidlist".as_slice(),
        b"courierimapuiddb",
        crate::courier::KEYWORD_DIR,
    ]
    .map(|name| folder.stat_at(name).ok())
}

/// Lists the message files of one of a folder's `new/` or `cur/` into
/// `messages`. Entries that are not regular files (links, FIFOs, devices)
/// are no messages: they are skipped with one warning per directory.
fn list_messages(
    sub: &StoreDir,
    folder: &Path,
    in_new: bool,
    opts: &ScanOptions,
    keep: &dyn Fn(&[u8]) -> bool,
    messages: &mut Listing,
) -> io::Result<()> {
    let mut odd: Option<(Vec<u8>, &'static str)> = None;
    let mut odd_count = 0u64;
    for e in sub.entries()? {
        let (file, kind) = e?;
        match kind {
            EntryKind::File => {}
            EntryKind::Dir => continue,
            EntryKind::Link | EntryKind::Other(_) => {
                if name::parse(&file, opts.info_sep).is_some() {
                    odd_count += 1;
                    if odd.is_none() {
                        let what = match kind {
                            EntryKind::Other(k) => k,
                            _ => "a symbolic link",
                        };
                        odd = Some((file, what));
                    }
                }
                continue;
            }
        }
        let Some(parsed) = name::parse(&file, opts.info_sep) else {
            continue;
        };
        if !keep(parsed.base) {
            continue;
        }
        // During a move from new/ to cur/ a name can be seen in both;
        // cur/ (read second) is the newer one ([`Listing::finish`]).
        if let Err(full) =
            messages.push(&file, parsed.base.len(), in_new, parsed.flags, parsed.size)
        {
            return Err(io::Error::other(match full {
                crate::listing::Full::NameTooLong => "a file name longer than 255 bytes",
                crate::listing::Full::TooMany => "more than 4 GiB of file names",
            }));
        }
    }
    if let Some((first, what)) = odd {
        let dir = folder.join(if in_new { "new" } else { "cur" });
        let more = if odd_count > 1 {
            format!(
                " (and {} more entries that are no regular files)",
                odd_count - 1
            )
        } else {
            String::new()
        };
        warn_path(
            &storefs::show(&dir, &first),
            "not-regular",
            format!("{what}, not a message file: skipped, never opened{more}"),
        );
    }
    Ok(())
}

/// Every keyword bit of [`Flags`].
const ALL_KEYWORDS: Flags = Flags((1 << 26) - 1);

/// Sets the keyword bits of a Courier folder's messages from their names
/// in `courierimapkeywords/` (Courier's file names carry none), numbering
/// new names in the folder's table; returns the table's text to keep.
fn courier_keyword_bits(
    messages: &mut Listing,
    by_base: &HashMap<Vec<u8>, BTreeSet<String>>,
    old_table: Option<&str>,
    path: &Path,
) -> String {
    use crate::maildir::courier_keywords::Table;
    let mut table = old_table.map(Table::parse).unwrap_or_default();
    let mut unnumbered = 0usize;
    // In Dovecot's order, so a folder's first keywords number alike on
    // every run.
    let mut bases: Vec<&[u8]> = messages
        .iter()
        .map(|m| m.base())
        .filter(|b| by_base.contains_key(*b))
        .collect();
    name::sort_dovecot(&mut bases);
    let mut bits: Vec<(usize, Flags)> = Vec::with_capacity(bases.len());
    for base in bases {
        let mut flags = Flags::default();
        for kw in by_base.get(base).into_iter().flatten() {
            match table.number(kw) {
                Some(i) => flags = flags.union(Flags::keyword(i)),
                None => unnumbered += 1,
            }
        }
        if let Some(i) = messages.find(base) {
            bits.push((i, flags));
        }
    }
    for i in 0..messages.len() {
        let flags = messages.at(i).flags().difference(ALL_KEYWORDS);
        messages.set_flags(i, flags);
    }
    for (i, flags) in bits {
        let now = messages.at(i).flags().union(flags);
        messages.set_flags(i, now);
    }
    if unnumbered > 0 {
        warn_path(
            &storefs::show(path, crate::courier::KEYWORD_DIR),
            "courier-keywords-full",
            format!(
                "more than {} keyword names in this folder: {unnumbered} keyword settings not reported",
                crate::maildir::courier_keywords::TABLE_SIZE
            ),
        );
    }
    table.text()
}

/// Reads `dovecot-uidlist`, else `courierimapuiddb`, joining its UIDs
/// into the listed messages (replacing those of an earlier read); returns
/// where the UIDs come from and the list's header, or `None` (and the
/// earlier UIDs) when neither list could be read.
///
/// The file is read in pieces and never held whole: of a list of a million
/// records only the listed names' UIDs are kept (in the [`Listing`]),
/// with an 8-byte hash of each name that is not listed, to count names
/// listed twice for the warning.
fn read_uids(
    folder: &StoreDir,
    path: &Path,
    messages: &mut Listing,
) -> Option<(UidSource, UidHeader)> {
    use std::hash::BuildHasher;
    let before: Vec<u32> = messages.iter().map(|m| m.uid()).collect();
    for (file, source) in [
        (b"dovecot-uidlist".as_slice(), UidSource::Dovecot),
        (b"courierimapuiddb", UidSource::Courier),
    ] {
        let shown = storefs::show(path, file);
        let mut parser = uidlist::Parser::new();
        messages.clear_uids();
        let hasher = NameHash::default();
        let mut unlisted: HashMap<u64, u32, NameHash> = HashMap::default();
        // Records come in UID order, which is mostly the names' order too.
        let mut near = 0;
        let read = folder.file(file).and_then(|mut f| {
            read_lines(&mut f, UIDLIST_CAP, &mut |line| {
                parser.line(
                    line,
                    &mut |uid, name| match messages.find_near(name, near) {
                        Some(i) => {
                            near = i + 1;
                            let old = messages.at(i).uid();
                            messages.set_uid(i, uid);
                            (old != 0).then_some(old)
                        }
                        None => unlisted.insert(hasher.hash_one(name), uid),
                    },
                )
            })
        });
        let partial = match read {
            Ok(p) => p,
            Err(Refused::NotFound) => continue,
            Err(e) => {
                messages.clear_uids();
                warn_path(
                    &shown,
                    "uidlist",
                    format!("{e}; UIDs of this folder are unknown for now"),
                );
                continue;
            }
        };
        match parser.finish(&partial) {
            Ok(list) => {
                if !list.dropped.is_empty() {
                    // A record dropped leaves its message without a UID:
                    // reported as pending until the server rewrites the list.
                    warn_path(
                        &shown,
                        "uidlist-records",
                        format!(
                            "{} records ignored ({}), e.g. {:?}; their messages have no UID until the server rewrites the list",
                            list.dropped.total(),
                            list.dropped,
                            list.warnings
                        ),
                    );
                } else {
                    for w in &list.warnings {
                        debug!(path = %shown, "{w}");
                    }
                }
                let header = UidHeader {
                    uidvalidity: list.uidvalidity,
                    uidnext: list.next_uid,
                    guid: list.guid,
                };
                return Some((source, header));
            }
            Err(e) => {
                messages.clear_uids();
                warn_path(
                    &shown,
                    "uidlist",
                    format!("unusable UID list ({e}); UIDs of this folder are unknown for now"),
                );
            }
        }
    }
    for (i, uid) in before.into_iter().enumerate() {
        messages.set_uid(i, uid);
    }
    None
}

/// Reads a file of at most `cap` bytes line by line, in pieces of 1 MiB:
/// `each` gets every complete line (without its `\n`); returns what
/// followed the last `\n`. A file that grows past the cap while being
/// read is refused as well.
fn read_lines(
    file: &mut storefs::StoreFile,
    cap: u64,
    each: &mut dyn FnMut(&[u8]),
) -> Result<Vec<u8>, Refused> {
    const PIECE: usize = 1 << 20;
    let size = file.len();
    if size > cap {
        return Err(Refused::TooBig { size, cap });
    }
    let f = file.file_mut();
    let mut buf: Vec<u8> = Vec::with_capacity(PIECE.min(size as usize + 1));
    let mut total = 0u64;
    loop {
        // Room for another piece after a line that is not complete yet.
        let start = buf.len();
        buf.resize(start + PIECE, 0);
        let n = loop {
            match f.read(&mut buf[start..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Refused::Io(e)),
            }
        };
        buf.truncate(start + n);
        total += n as u64;
        if total > cap {
            return Err(Refused::TooBig { size: total, cap });
        }
        if n == 0 {
            return Ok(buf);
        }
        // Lines that ended within this piece (what came before it holds
        // no line end, so a long line is not searched again).
        let (mut from, mut search) = (0, start);
        while let Some(end) = buf[search..].iter().position(|&b| b == b'\n') {
            each(&buf[from..search + end]);
            from = search + end + 1;
            search = from;
        }
        buf.drain(..from);
    }
}

/// Reads a folder's `dovecot-keywords`; none when missing or unusable.
pub fn read_keywords(folder: &StoreDir, path: &Path) -> Keywords {
    match folder.read(b"dovecot-keywords", KEYWORDS_CAP) {
        Ok(b) => {
            let (keywords, ignored) = Keywords::parse_counted(&b);
            if ignored.total() > 0 {
                warn_path(
                    &storefs::show(path, b"dovecot-keywords"),
                    "keywords-lines",
                    format!(
                        "{} lines ignored, e.g. {:?}",
                        ignored.total(),
                        ignored.examples
                    ),
                );
            }
            keywords
        }
        Err(Refused::NotFound) => Keywords::default(),
        Err(e) => {
            warn_path(
                &storefs::show(path, b"dovecot-keywords"),
                "keywords",
                format!("{e}; keyword names unknown for now"),
            );
            Keywords::default()
        }
    }
}

/// Reads Dovecot's `subscriptions`, else Courier's `courierimapsubscribed`.
///
/// These files may be edited in place, so a read is trusted only when the
/// file held still during it and, in `scan`, when it is older than
/// [`ScanOptions::settle`]: a file truncated but not yet written again
/// would otherwise unsubscribe everything. `None` keeps what was known.
fn read_subscriptions(
    root_dir: &StoreDir,
    root: &Path,
    opts: &ScanOptions,
) -> Option<BTreeSet<String>> {
    for (file, courier) in [
        (b"subscriptions".as_slice(), false),
        (b"courierimapsubscribed", true),
    ] {
        let shown = storefs::show(root, file);
        let bytes = match read_settled(root_dir, file, SUBSCRIPTIONS_CAP, opts.settle) {
            Ok(Some(b)) => b,
            Ok(None) => {
                warn_path(
                    &shown,
                    "unsettled",
                    "is being rewritten; keeping the subscriptions known so far until it holds still",
                );
                return None;
            }
            Err(Refused::NotFound) => continue,
            Err(e) => {
                warn_path(
                    &shown,
                    "subscriptions",
                    format!("{e}; keeping the subscriptions known so far"),
                );
                return None;
            }
        };
        let subs = if courier {
            subscriptions::parse_courier(&bytes, opts.hier_sep, opts.utf8_names)
        } else {
            subscriptions::parse_dovecot(&bytes, opts.hier_sep, opts.utf8_names)
        };
        if let Some(why) = &subs.not_subscriptions {
            warn_path(
                &shown,
                "subscriptions",
                format!(
                    "is not a subscription list ({why}); keeping the subscriptions known so far"
                ),
            );
            return None;
        }
        if let Some(first) = subs.skipped.first() {
            let more = match subs.skipped_count {
                0 | 1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            warn_path(
                &shown,
                "subscription-names",
                format!("subscription {first:?} is not a valid name; ignored{more}"),
            );
        }
        return Some(subs.names.into_iter().collect());
    }
    Some(BTreeSet::new())
}

/// Reads a control file that may be edited in place, trusting only a read
/// during which it held still and, with `settle`, one older than that
/// (waiting for it up to `settle`). `Ok(None)`: it would not hold still.
pub fn read_settled(
    dir: &StoreDir,
    file: &[u8],
    cap: u64,
    settle: Option<Duration>,
) -> Result<Option<Vec<u8>>, Refused> {
    let deadline = Instant::now() + settle.unwrap_or_default();
    loop {
        let Some((bytes, st)) = dir.read_stable(file, cap)? else {
            return Ok(None);
        };
        let Some(settle) = settle else {
            return Ok(Some(bytes));
        };
        let age = now_ns().saturating_sub(storefs::mtime_ns(&st).max(storefs::ctime_ns(&st)));
        let age = Duration::from_nanos(age.max(0) as u64);
        if age >= settle {
            return Ok(Some(bytes));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        thread::sleep((settle - age).min(deadline - now) + Duration::from_millis(5));
    }
}

/// Makes sure a message missing from a listing is really gone before the
/// diff calls it expunged.
///
/// A directory read while another process renames files in it may miss
/// an entry altogether (on ext4 a renamed name can move to a place the
/// reading has already passed). A message whose flags were changed during
/// the listing would then look expunged, and appended again at the next
/// look: two false events. So when messages of the snapshot are missing,
/// the folder is listed again (at most twice more) and whatever turns up
/// is taken from the later listing. A message truly expunged is missing
/// from every listing.
pub fn confirm_gone(listing: &mut UserListing, old: &UserSnapshot, opts: &ScanOptions) {
    let root = listing.root.clone();
    for (dir, f) in listing.folders.iter_mut() {
        let Contents::Listed(messages) = &mut f.contents else {
            continue;
        };
        let Some(known) = old.folders.get(dir).and_then(|o| o.messages.as_ref()) else {
            continue;
        };
        // Both are in base-name order: one walk finds what is missing.
        let mut missing: Vec<Vec<u8>> = Vec::new();
        crate::listing::merge(
            known.keys(),
            messages.iter(),
            |b| *b,
            |m| m.base(),
            |side| {
                if let crate::listing::Side::Left(b) = side {
                    missing.push(b.to_vec());
                }
            },
        );
        let mut found = false;
        for _ in 0..2 {
            if missing.is_empty() {
                break;
            }
            let Ok(folder) = storefs::folder(&root, dir) else {
                break;
            };
            let path = folder_path(&root, dir);
            // Only the missing names are kept: in a folder of a million
            // messages with a few expunged, another full listing in memory
            // doubled the scan's peak.
            let wanted: HashSet<&[u8]> = missing.iter().map(|b| b.as_slice()).collect();
            let keep = |b: &[u8]| wanted.contains(b);
            let mut again = Listing::default();
            for (sub, in_new) in [(b"new".as_slice(), true), (b"cur", false)] {
                if let Ok(d) = folder.dir(sub) {
                    let _ = list_messages(&d, &path, in_new, opts, &keep, &mut again);
                }
            }
            again.finish();
            if again.is_empty() {
                continue;
            }
            debug!(path = %path.display(), found = again.len(), "messages missed by a listing (renamed meanwhile) were found again");
            for m in again.iter() {
                // Pushed after the first listing's: this one wins.
                let _ = messages.push(m.file(), m.base().len(), m.in_new(), m.flags(), m.size());
            }
            messages.finish();
            found = true;
            missing.retain(|base| !again.contains(base));
        }
        if found {
            // The names found again need their UIDs from the server's list.
            if let Ok(folder) = storefs::folder(&root, dir) {
                let path = folder_path(&root, dir);
                if let Some((source, header)) = read_uids(&folder, &path, messages) {
                    f.uid_source = source;
                    f.server_uids = Some(header);
                }
            }
        }
    }
}

/// Answers whether a base name of a folder (by directory) already has a
/// UID under a UIDVALIDITY, from the snapshot.
pub type KnownUid<'a> = dyn Fn(&[u8], &[u8], u32) -> bool + 'a;

/// Waits, up to `deadline`, for Dovecot to name what the listing found
/// before it: UIDs of new files in `dovecot-uidlist` and new keyword
/// letters in `dovecot-keywords`. Dovecot writes both just after the file,
/// so a scan that catches a delivery mid-way would otherwise report it
/// without its UID.
///
/// `known` says whether a base name already has a UID from the snapshot.
pub fn wait_for_server(listing: &mut UserListing, known: &KnownUid, deadline: Instant) {
    // Without time to wait (`--uid-wait-ms 0`) there is nothing to look
    // for: that look costs a lookup per listed message.
    if !listing.dovecot || Instant::now() >= deadline {
        return;
    }
    let root = listing.root.clone();
    loop {
        let mut waiting = Vec::new();
        for (dir, f) in &listing.folders {
            let Contents::Listed(msgs) = &f.contents else {
                continue;
            };
            let missing = match &f.server_uids {
                // A folder created a moment ago gets its uidlist just after
                // its directories.
                None => f.uid_source == UidSource::Own && !f.dir.is_empty() && msgs.is_empty(),
                Some(uids) => msgs.iter().any(|m| {
                    // The snapshot joined into the listing answers first.
                    let joined = msgs.joined() == Some(uids.uidvalidity)
                        && m.old().is_some_and(|o| o.uid != 0);
                    (m.uid() == 0 && !joined && !known(dir, m.base(), uids.uidvalidity))
                        || m.flags()
                            .keyword_indexes()
                            .any(|i| f.keywords.name(i).is_none())
                }),
            };
            if missing && f.uid_source != UidSource::Courier {
                waiting.push(dir.clone());
            }
        }
        if waiting.is_empty() || Instant::now() >= deadline {
            if !waiting.is_empty() {
                debug!(
                    folders = waiting.len(),
                    "Dovecot has not named every new file yet"
                );
            }
            return;
        }
        thread::sleep(Duration::from_millis(10).min(deadline - Instant::now()));
        for dir in waiting {
            if let Some(f) = listing.folders.get_mut(&dir) {
                let path = folder_path(&root, &dir);
                // The folder may have become unreadable or gone meanwhile:
                // then what was read before stands.
                if let Ok(folder) = storefs::folder(&root, &dir)
                    && let Contents::Listed(msgs) = &mut f.contents
                {
                    if let Some((source, header)) = read_uids(&folder, &path, msgs) {
                        f.uid_source = source;
                        f.server_uids = Some(header);
                    }
                    f.keywords = read_keywords(&folder, &path);
                }
            }
        }
    }
}

/// Waits, up to `deadline`, for Courier-IMAP to write the UID list of a
/// folder that had one before under the same inode and has none now.
/// Courier renames a folder, then deletes its `courierimapuiddb` and
/// writes a new one with a new UIDVALIDITY: a listing between the two
/// would give the MailboxRename the old one.
pub fn wait_for_courier_lists(listing: &mut UserListing, old: &UserSnapshot, deadline: Instant) {
    let had_list = |f: &FolderListing| {
        f.server_uids.is_none()
            && matches!(f.contents, Contents::Listed(_))
            && old
                .folders
                .values()
                .any(|o| o.uid_source == UidSource::Courier && o.dev == f.dev && o.ino == f.ino)
    };
    let root = listing.root.clone();
    loop {
        let waiting: Vec<Vec<u8>> = listing
            .folders
            .iter()
            .filter(|(_, f)| had_list(f))
            .map(|(d, _)| d.clone())
            .collect();
        if waiting.is_empty() || Instant::now() >= deadline {
            return;
        }
        thread::sleep(Duration::from_millis(10).min(deadline - Instant::now()));
        for dir in waiting {
            if let (Some(f), Ok(folder)) =
                (listing.folders.get_mut(&dir), storefs::folder(&root, &dir))
                && let Contents::Listed(msgs) = &mut f.contents
                && let Some((source, header)) = read_uids(&folder, &folder_path(&root, &dir), msgs)
            {
                f.uid_source = source;
                f.server_uids = Some(header);
            }
        }
    }
}

/// The limits `maildirsize` sets, if the file exists and is readable.
pub fn read_maildirsize(root: &Path) -> Option<crate::quota::Limits> {
    let shown = root.join("maildirsize").display().to_string();
    let read = StoreDir::open(root).and_then(|d| d.read_stable(b"maildirsize", MAILDIRSIZE_CAP));
    let bytes = match read {
        Ok(Some((b, _))) => b,
        Ok(None) => {
            warn_path(
                &shown,
                "unsettled",
                "is being rewritten; using the configured quota until it holds still",
            );
            return None;
        }
        Err(Refused::NotFound) => return None,
        Err(e) => {
            warn_path(
                &shown,
                "maildirsize",
                format!("{e}; using the configured quota"),
            );
            return None;
        }
    };
    match crate::maildir::quota::parse(&bytes) {
        Ok(m) => Some(crate::quota::Limits {
            bytes: m.storage,
            messages: m.messages,
        }),
        Err(e) => {
            warn_path(
                &shown,
                "maildirsize",
                format!("unusable ({e}); using the configured quota"),
            );
            None
        }
    }
}

/// The IMAP size (RFC822.SIZE) of a message without `W=` in its name: its
/// length with every bare LF counted as CRLF. Only a regular file is read
/// (see [`storefs`]), in small pieces; past [`VSIZE_READ_CAP`] the
/// physical size from `fstat` stands in (no MTA delivers such a file, but
/// a user can make a sparse one that costs nothing).
pub fn virtual_size(file: &mut storefs::StoreFile) -> io::Result<u64> {
    if file.len() > VSIZE_READ_CAP {
        return Ok(file.len());
    }
    let f = file.file_mut();
    io::Seek::rewind(f)?;
    let mut buf = vec![0u8; 64 * 1024];
    let (mut total, mut prev, mut read) = (0u64, 0u8, 0u64);
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 || read > VSIZE_READ_CAP {
            return Ok(total);
        }
        read += n as u64;
        for &b in &buf[..n] {
            if b == b'\n' && prev != b'\r' {
                total += 1;
            }
            prev = b;
        }
        total += n as u64;
    }
}

/// Finds the users of a store template by listing the directories its
/// placeholders stand for.
pub fn discover(template: &Template) -> Vec<(String, PathBuf)> {
    discover_with_dirs(template).0
}

/// Like [`discover`], and also returns the existing directories above the
/// Maildirs, where new users would appear (for `watch`).
pub fn discover_with_dirs(template: &Template) -> (Vec<(String, PathBuf)>, Vec<PathBuf>) {
    let mut dirs = Vec::new();
    let mut found = Vec::new();
    let mut stack = vec![(PathBuf::from("/"), 0usize, Vec::<(String, String)>::new())];
    if !template.is_absolute() {
        stack[0].0 = PathBuf::from(".");
    }
    while let Some((path, i, vars)) = stack.pop() {
        let Some(part) = template.part(i) else {
            if path.is_dir()
                && let Some(user) = template.user(&vars)
            {
                found.push((user, path));
            }
            continue;
        };
        if !part.has_placeholder() {
            // Below a user's level, the Maildir itself may appear later.
            if !vars.is_empty() && path.is_dir() {
                dirs.push(path.clone());
            }
            stack.push((path.join(part.literal()), i + 1, vars));
            continue;
        }
        if path.is_dir() {
            dirs.push(path.clone());
        }
        let rd = match fs::read_dir(&path) {
            Ok(rd) => rd,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    warn!(path = %path.display(), "cannot list users: {e}");
                }
                continue;
            }
        };
        for e in rd.flatten() {
            let n = e.file_name();
            let Some(n) = n.to_str() else {
                warn!(path = %e.path().display(), "user directory name is not UTF-8; skipped");
                continue;
            };
            if n.starts_with('.') || !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if let Some(bound) = part.matches(n) {
                let mut v = vars.clone();
                v.extend(bound);
                stack.push((path.join(n), i + 1, v));
            }
        }
    }
    found.sort();
    (found, dirs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn files_are_read_line_by_line_across_pieces() {
        let dir = tempfile::tempdir().unwrap();
        // Lines around and across the 1 MiB pieces, one longer than a
        // piece, empty ones, and a last line without its end.
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut len = 0usize;
        while len < (3 << 20) {
            let n = match lines.len() % 7 {
                0 => 0,
                1 => (1 << 20) + 3,
                _ => 1000 + lines.len() % 4093,
            };
            lines.push((0..n).map(|i| b'a' + (i % 26) as u8).collect());
            len += n + 1;
        }
        for partial in [&b""[..], b"half a rec"] {
            let mut bytes = lines.join(&b'\n');
            bytes.push(b'\n');
            bytes.extend_from_slice(partial);
            fs::write(dir.path().join("list"), &bytes).unwrap();
            let store = StoreDir::open(dir.path()).unwrap();
            let mut got: Vec<Vec<u8>> = Vec::new();
            let mut f = store.file(b"list").unwrap();
            let rest = read_lines(&mut f, UIDLIST_CAP, &mut |l| got.push(l.to_vec())).unwrap();
            assert_eq!(got, lines);
            assert_eq!(rest, partial);
            // Over the cap: refused, as a whole read would be.
            let mut f = store.file(b"list").unwrap();
            assert!(matches!(
                read_lines(&mut f, 1 << 20, &mut |_| {}),
                Err(Refused::TooBig { .. })
            ));
        }
    }

    #[test]
    fn name_hash_is_stable_in_a_process_and_tells_lengths_apart() {
        let (a, b) = (NameHash::default(), NameHash::default());
        let name = b"1455674145.M8826P59269.imap1.example.net,S=1930,W=1981".to_vec();
        assert_eq!(a.hash_one(&name), b.hash_one(&name));
        assert_ne!(a.hash_one(b"a".to_vec()), a.hash_one(b"a\0".to_vec()));
        assert_ne!(a.hash_one(b"".to_vec()), a.hash_one(b"\0".to_vec()));
        let mut m: NameMap<u32> = NameMap::default();
        for i in 0..1000u32 {
            m.insert(format!("{i}.M1P1.host").into_bytes(), i);
        }
        assert!((0..1000u32).all(|i| m[format!("{i}.M1P1.host").as_bytes()] == i));
    }
}
