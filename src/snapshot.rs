//! What we remember about a user's store between runs.
//!
//! The snapshot is the "old" side of every diff. It lives in the state
//! database (see `store`) and is loaded lazily: folder rows always, message
//! rows only for folders whose directories changed since the last run.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::maildir::name::Flags;

/// Where a folder's UIDs and UIDVALIDITY come from.
///
/// Dovecot's own numbers always win, because the whole point is to report
/// what an IMAP client of that server would see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UidSource {
    /// `dovecot-uidlist` in the folder.
    Dovecot,
    /// `courierimapuiddb` in the folder.
    Courier,
    /// Neither file exists: UIDs are ours, assigned in Dovecot's order and
    /// kept in the snapshot under our own UIDVALIDITY.
    Own,
}

impl UidSource {
    /// The short name stored in the state database and shown in events.
    pub fn as_str(self) -> &'static str {
        match self {
            UidSource::Dovecot => "dovecot",
            UidSource::Courier => "courier",
            UidSource::Own => "own",
        }
    }

    /// Parses what `as_str` wrote.
    pub fn parse(s: &str) -> Option<UidSource> {
        match s {
            "dovecot" => Some(UidSource::Dovecot),
            "courier" => Some(UidSource::Courier),
            "own" => Some(UidSource::Own),
            _ => None,
        }
    }
}

/// Modification stamps of a folder's `new/`, `cur/` and `dovecot-uidlist`.
///
/// Any create, rename or unlink inside a directory changes its mtime, so an
/// unchanged stamp proves the listing is unchanged, but only when the stamp
/// was old enough at the time we read the directory: a change in the same
/// clock tick as the previous one would leave the mtime equal. `trusted`
/// records that the stamp was at least a second old when we listed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirStamp {
    pub new_mtime: i64,
    pub cur_mtime: i64,
    pub uidlist_mtime: i64,
    pub uidlist_len: u64,
    pub trusted: bool,
}

impl DirStamp {
    /// Whether a folder with this stamp on disk may keep the snapshot taken
    /// under `old` without being listed again.
    pub fn unchanged_since(&self, old: &DirStamp) -> bool {
        old.trusted
            && self.new_mtime == old.new_mtime
            && self.cur_mtime == old.cur_mtime
            && self.uidlist_mtime == old.uidlist_mtime
            && self.uidlist_len == old.uidlist_len
    }
}

/// One message as last seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageState {
    /// The IMAP UID; 0 while the server has not assigned one.
    pub uid: u32,
    pub flags: Flags,
    /// Physical size in bytes (`S=` or `stat`); 0 when unknown.
    pub size: u64,
    /// The file was in `new/` (so `\Recent` for Dovecot).
    pub in_new: bool,
}

/// One folder as last seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderSnapshot {
    /// Row id in the state database; 0 for a folder not stored yet.
    pub id: i64,
    /// Directory name under the Maildir root; empty for INBOX.
    pub dir: Vec<u8>,
    /// The IMAP mailbox name.
    pub name: String,
    pub dev: u64,
    pub ino: u64,
    pub uid_source: UidSource,
    pub uidvalidity: u32,
    /// Mailbox GUID from the `dovecot-uidlist` header, if any.
    pub guid: Option<String>,
    /// The next UID (for `Own`, the one we will assign next).
    pub uidnext: u32,
    pub stamp: DirStamp,
    /// Some message has no UID yet.
    pub pending: bool,
    /// How many messages the folder holds.
    pub count: u32,
    /// Their physical size in bytes, as far as known (`S=` or `stat`).
    pub bytes: u64,
    /// Our numbering of the folder's Courier keywords (`<index> <name>`
    /// lines), so a keyword keeps its bit across runs; `None` for a folder
    /// without `courierimapkeywords/`.
    pub keyword_table: Option<String>,
    /// The messages by base name; `None` until loaded.
    pub messages: Option<HashMap<Vec<u8>, MessageState>>,
}

/// One user's store as last seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserSnapshot {
    /// The folders by directory name.
    pub folders: BTreeMap<Vec<u8>, FolderSnapshot>,
    /// Subscribed IMAP names.
    pub subscriptions: BTreeSet<String>,
    /// Quota limits and state as last evaluated.
    pub quota: Option<crate::quota::QuotaState>,
}
