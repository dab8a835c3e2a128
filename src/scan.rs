//! Reading a user's Maildir from disk into a listing: the only module that
//! reads the mail store.
//!
//! A scan reads directory names only (the flags, sizes and identity of a
//! message are in its file name), the small control files Dovecot and
//! Courier keep beside them, and nothing else. It never writes, never
//! renames, never takes a Dovecot lock: we are a guest in the store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use tracing::{debug, warn};

use crate::config::Template;
use crate::maildir::keywords::Keywords;
use crate::maildir::name::{self, Flags};
use crate::maildir::{folders, subscriptions, uidlist};
use crate::snapshot::{DirStamp, UidSource, UserSnapshot};

/// How to read names in a store.
#[derive(Clone, Debug)]
pub struct ScanOptions {
    /// The info separator in message file names (`:` unless the store was
    /// written for a filesystem that forbids it).
    pub info_sep: u8,
    /// The IMAP hierarchy separator mailbox names are reported with.
    pub hier_sep: char,
    /// Folder names on disk are UTF-8 rather than modified UTF-7.
    pub utf8_names: bool,
    /// List every folder even when its directory stamps are unchanged.
    pub full: bool,
    /// `stat` message files without `S=` in their name, for quota.
    pub stat_sizes: bool,
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
    /// The messages by base name.
    Listed(HashMap<Vec<u8>, Entry>),
    /// The directory stamps prove nothing changed since the snapshot.
    Unchanged,
    /// The folder could not be read; keep the snapshot as it is.
    Unreadable,
}

/// UIDs the server keeps for a folder.
#[derive(Clone, Debug, Default)]
pub struct ServerUids {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub guid: Option<String>,
    pub by_base: HashMap<Vec<u8>, u32>,
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
    /// Where UIDs come from and, for a server, its numbers.
    pub uid_source: UidSource,
    pub server_uids: Option<ServerUids>,
    pub keywords: Keywords,
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
/// [`DirStamp`]); the diff then keeps their snapshot.
pub fn scan_user(root: &Path, old: Option<&UserSnapshot>, opts: &ScanOptions) -> UserListing {
    let mut listing = UserListing {
        root: root.to_path_buf(),
        exists: false,
        folders: BTreeMap::new(),
        subscriptions: Some(BTreeSet::new()),
        dovecot: false,
    };
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return listing,
        Err(e) => {
            warn!(path = %root.display(), "cannot read the Maildir: {e}; keeping what was known (run as the mail user or root)");
            listing.exists = true;
            listing.subscriptions = None;
            if let Some(old) = old {
                for (dir, f) in &old.folders {
                    listing.folders.insert(dir.clone(), unreadable_copy(f));
                }
            }
            return listing;
        }
    };
    listing.exists = true;
    let mut dirs: Vec<Vec<u8>> = vec![Vec::new()];
    for entry in entries.flatten() {
        let name = entry.file_name();
        let bytes = name.as_bytes();
        if !folders::is_folder_dir(bytes) {
            continue;
        }
        match entry.file_type() {
            Ok(t) if t.is_dir() => dirs.push(bytes.to_vec()),
            Ok(t) if t.is_symlink() => warn!(
                path = %entry.path().display(),
                "folder is a symbolic link; not followed (it could point out of the store)"
            ),
            _ => {}
        }
    }
    for dir in dirs {
        let old_folder = old.and_then(|o| o.folders.get(&dir));
        if let Some(f) = scan_folder(root, &dir, old_folder, opts) {
            listing.dovecot |= f.uid_source == UidSource::Dovecot;
            listing.folders.insert(dir, f);
        }
    }
    listing.subscriptions = read_subscriptions(root, opts);
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
    }
}

fn mtime_ns(m: &fs::Metadata) -> i64 {
    m.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(m.mtime_nsec())
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Reads one folder; `None` when it vanished meanwhile.
fn scan_folder(
    root: &Path,
    dir: &[u8],
    old: Option<&crate::snapshot::FolderSnapshot>,
    opts: &ScanOptions,
) -> Option<FolderListing> {
    let path = folder_path(root, dir);
    let meta = match fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(path = %path.display(), "cannot read folder: {e}; keeping what was known");
            return old.map(unreadable_copy);
        }
    };
    let name = if dir.is_empty() {
        "INBOX".to_string()
    } else {
        match folders::imap_name(dir, opts.hier_sep, opts.utf8_names) {
            Ok(n) => n,
            Err(e) => {
                let lossy = folders::imap_name_lossy(dir, opts.hier_sep, opts.utf8_names);
                warn!(path = %path.display(), "folder name is not valid {}: {}; reported as {lossy:?}",
                    if opts.utf8_names { "UTF-8" } else { "modified UTF-7" }, e.reason());
                lossy
            }
        }
    };
    let started = now_ns();
    let stat = |sub: &str| fs::metadata(path.join(sub)).ok();
    let (new_m, cur_m, ul_m) = (stat("new"), stat("cur"), stat("dovecot-uidlist"));
    let mut stamp = DirStamp {
        new_mtime: new_m.as_ref().map(mtime_ns).unwrap_or(0),
        cur_mtime: cur_m.as_ref().map(mtime_ns).unwrap_or(0),
        uidlist_mtime: ul_m.as_ref().map(mtime_ns).unwrap_or(0),
        uidlist_len: ul_m.as_ref().map(|m| m.len()).unwrap_or(0),
        trusted: false,
    };
    // A stamp is trusted only when every part is at least a second older
    // than our listing, so no later change can share its clock tick.
    let settled = started - 1_000_000_000;
    stamp.trusted = new_m.is_some()
        && cur_m.is_some()
        && stamp.new_mtime < settled
        && stamp.cur_mtime < settled
        && stamp.uidlist_mtime < settled;

    let mut listing = FolderListing {
        dir: dir.to_vec(),
        name,
        dev: meta.dev(),
        ino: meta.ino(),
        stamp,
        contents: Contents::Unchanged,
        uid_source: UidSource::Own,
        server_uids: None,
        keywords: Keywords::default(),
    };
    if let Some(old) = old {
        // A folder with messages still waiting for their UIDs is read again
        // even when unchanged, because Dovecot may have named them since.
        if !opts.full && !old.pending && stamp.unchanged_since(&old.stamp) {
            listing.uid_source = old.uid_source;
            return Some(listing);
        }
    }
    let mut messages = HashMap::new();
    for (sub, in_new) in [("new", true), ("cur", false)] {
        let d = path.join(sub);
        match fs::read_dir(&d) {
            Ok(rd) => {
                for e in rd {
                    let e = match e {
                        Ok(e) => e,
                        Err(err) => {
                            warn!(path = %d.display(), "error while listing: {err}; keeping what was known");
                            listing.contents = Contents::Unreadable;
                            return Some(listing);
                        }
                    };
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        continue;
                    }
                    let file = e.file_name();
                    let Some(parsed) = name::parse(file.as_bytes(), opts.info_sep) else {
                        continue;
                    };
                    let entry = Entry {
                        file: file.as_bytes().to_vec(),
                        in_new,
                        flags: parsed.flags,
                        size: parsed.size,
                        vsize: parsed.vsize,
                    };
                    // During a move from new/ to cur/ a name can be seen in
                    // both; cur/ (read second) is the newer one.
                    messages.insert(parsed.base.to_vec(), entry);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(path = %d.display(), "cannot list messages: {e}; keeping what was known (run as the mail user or root)");
                listing.contents = Contents::Unreadable;
                return Some(listing);
            }
        }
    }
    if opts.stat_sizes {
        // Quota needs sizes; only names without S= cost a stat.
        for e in messages.values_mut().filter(|e| e.size.is_none()) {
            let p = path
                .join(if e.in_new { "new" } else { "cur" })
                .join(std::ffi::OsStr::from_bytes(&e.file));
            e.size = fs::symlink_metadata(&p).ok().map(|m| m.len());
        }
    }
    listing.contents = Contents::Listed(messages);
    read_uids(&path, &mut listing);
    listing.keywords = read_keywords(&path);
    Some(listing)
}

/// Reads `dovecot-uidlist`, else `courierimapuiddb`, into the listing.
fn read_uids(path: &Path, listing: &mut FolderListing) {
    for (file, source) in [
        ("dovecot-uidlist", UidSource::Dovecot),
        ("courierimapuiddb", UidSource::Courier),
    ] {
        let p = path.join(file);
        let bytes = match fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                warn!(path = %p.display(), "cannot read: {e}; UIDs of this folder are unknown for now");
                continue;
            }
        };
        match uidlist::parse(&bytes) {
            Ok(list) => {
                for w in &list.warnings {
                    debug!(path = %p.display(), "{w}");
                }
                let by_base = list
                    .records
                    .iter()
                    .map(|(uid, base)| (base.clone(), *uid))
                    .collect();
                listing.uid_source = source;
                listing.server_uids = Some(ServerUids {
                    uidvalidity: list.uidvalidity,
                    uidnext: list.next_uid,
                    guid: list.guid,
                    by_base,
                });
                return;
            }
            Err(e) => {
                warn!(path = %p.display(), "unusable UID list ({e}); UIDs of this folder are unknown for now");
            }
        }
    }
}

fn read_keywords(path: &Path) -> Keywords {
    match fs::read(path.join("dovecot-keywords")) {
        Ok(b) => Keywords::parse(&b),
        Err(_) => Keywords::default(),
    }
}

/// Reads Dovecot's `subscriptions`, else Courier's `courierimapsubscribed`.
fn read_subscriptions(root: &Path, opts: &ScanOptions) -> Option<BTreeSet<String>> {
    for (file, courier) in [("subscriptions", false), ("courierimapsubscribed", true)] {
        let p = root.join(file);
        match fs::read(&p) {
            Ok(bytes) => {
                let subs = if courier {
                    subscriptions::parse_courier(&bytes, opts.hier_sep, opts.utf8_names)
                } else {
                    subscriptions::parse_dovecot(&bytes, opts.hier_sep, opts.utf8_names)
                };
                for s in &subs.skipped {
                    warn!(path = %p.display(), "subscription {s:?} is not a valid name; ignored");
                }
                return Some(subs.names.into_iter().collect());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                warn!(path = %p.display(), "cannot read subscriptions: {e}; keeping what was known");
                return None;
            }
        }
    }
    Some(BTreeSet::new())
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
    if !listing.dovecot {
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
                Some(uids) => msgs.iter().any(|(base, e)| {
                    (!uids.by_base.contains_key(base) && !known(dir, base, uids.uidvalidity))
                        || e.flags
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
                read_uids(&path, f);
                f.keywords = read_keywords(&path);
            }
        }
    }
}

/// The limits `maildirsize` sets, if the file exists and is readable.
pub fn read_maildirsize(root: &Path) -> Option<crate::quota::Limits> {
    let p = root.join("maildirsize");
    let bytes = match fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(path = %p.display(), "cannot read: {e}; using the configured quota");
            return None;
        }
    };
    match crate::maildir::quota::parse(&bytes) {
        Ok(m) => Some(crate::quota::Limits {
            bytes: m.storage,
            messages: m.messages,
        }),
        Err(e) => {
            warn!(path = %p.display(), "unusable ({e}); using the configured quota");
            None
        }
    }
}

/// The IMAP size (RFC822.SIZE) of a message without `W=` in its name: its
/// length with every bare LF counted as CRLF.
pub fn virtual_size(path: &Path) -> io::Result<u64> {
    let mut f = fs::File::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    let (mut total, mut prev) = (0u64, 0u8);
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
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
