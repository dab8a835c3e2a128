//! What we remember about a user's store between runs.
//!
//! The snapshot is the "old" side of every diff. It lives in the state
//! database (see `store`) and is loaded lazily: folder rows always, message
//! rows only for folders whose directories changed since the last run.

use std::collections::{BTreeMap, BTreeSet};

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
    pub messages: Option<Messages>,
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

/// Message rows by base name, in base-name order, held compactly: the
/// names in one arena and a 24-byte slot each (a hash map of owned names
/// cost about 160 bytes a message). The snapshot of a folder is read from
/// the state in this order (its primary key is `(folder, base)`), and the
/// diff writes its rows in it, so a folder of a million messages costs
/// its names and 24 MB, and the rows go into the b-tree in key order.
#[derive(Clone, Debug, Default)]
pub struct Messages {
    names: Vec<u8>,
    slots: Vec<Row>,
    /// Rows pushed out of order since the last sort.
    unsorted: bool,
}

/// One message in an arena of names: the row of [`Messages`] and the slot
/// of a [`crate::listing::Listing`] alike, so that a listing becomes the
/// rows to write in place, without a copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Row {
    /// The physical size (in a listing, meaningful with [`HAS_SIZE`]).
    pub(crate) size: u64,
    /// Where the name starts in the arena.
    pub(crate) off: u32,
    pub(crate) flags: Flags,
    pub(crate) uid: u32,
    /// The length of the base name.
    pub(crate) len: u16,
    /// A listing's: the length of the whole file name (at most 255 bytes,
    /// a Linux name); 0 in a row of the state.
    pub(crate) file_len: u8,
    pub(crate) bits: u8,
}

/// [`Row::bits`]: the file is (or was) in `new/`.
pub(crate) const IN_NEW: u8 = 1;
/// [`Row::bits`] of a listing: the size is known.
pub(crate) const HAS_SIZE: u8 = 2;
/// [`Row::bits`] of a listing: the snapshot's row is joined in.
pub(crate) const HAS_OLD: u8 = 4;
/// [`Row::bits`] of a listing: the snapshot's row was in `new/`.
pub(crate) const OLD_IN_NEW: u8 = 8;

impl Messages {
    pub fn with_capacity(rows: usize) -> Messages {
        Messages {
            names: Vec::new(),
            slots: Vec::with_capacity(rows),
            unsorted: false,
        }
    }

    /// Adds a row. Rows pushed in base-name order stay sorted; others are
    /// sorted by [`Messages::sort`] (a base name pushed twice keeps its
    /// last state). A name longer than 64 KiB, or one that would take the
    /// arena past 4 GiB, is refused (false): no file name is that long and
    /// no folder holds that much.
    pub fn push(&mut self, base: &[u8], state: MessageState) -> bool {
        let (Ok(off), Ok(len)) = (u32::try_from(self.names.len()), u16::try_from(base.len()))
        else {
            return false;
        };
        if off.checked_add(u32::from(len)).is_none() {
            return false;
        }
        if let Some(last) = self.slots.last()
            && self.name(last) >= base
        {
            self.unsorted = true;
        }
        self.names.extend_from_slice(base);
        self.slots.push(Row {
            size: state.size,
            off,
            flags: state.flags,
            uid: state.uid,
            len,
            file_len: 0,
            bits: if state.in_new { IN_NEW } else { 0 },
        });
        true
    }

    /// Rows over an arena, already sorted by base name with no name twice
    /// (a listing's, see [`crate::listing::Listing::into_messages`]).
    pub(crate) fn from_parts(names: Vec<u8>, slots: Vec<Row>) -> Messages {
        Messages {
            names,
            slots,
            unsorted: false,
        }
    }

    fn name(&self, r: &Row) -> &[u8] {
        &self.names[r.off as usize..r.off as usize + r.len as usize]
    }

    /// Sorts rows pushed out of order (keeping the last of a base name).
    pub fn sort(&mut self) {
        if !self.unsorted {
            return;
        }
        self.unsorted = false;
        let names = &self.names;
        let name = |r: &Row| &names[r.off as usize..r.off as usize + r.len as usize];
        // Stable: the last pushed of a name stays last.
        self.slots.sort_by(|a, b| name(a).cmp(name(b)));
        let mut kept = 0;
        for i in 0..self.slots.len() {
            let r = self.slots[i];
            if kept > 0 && name(&self.slots[kept - 1]) == name(&r) {
                self.slots[kept - 1] = r;
            } else {
                self.slots[kept] = r;
                kept += 1;
            }
        }
        self.slots.truncate(kept);
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn state(r: &Row) -> MessageState {
        MessageState {
            uid: r.uid,
            flags: r.flags,
            size: r.size,
            in_new: r.bits & IN_NEW != 0,
        }
    }

    /// The state of a base name (the rows must be sorted: see
    /// [`Messages::sort`]).
    pub fn get(&self, base: &[u8]) -> Option<MessageState> {
        debug_assert!(!self.unsorted);
        self.slots
            .binary_search_by(|r| self.name(r).cmp(base))
            .ok()
            .map(|i| Self::state(&self.slots[i]))
    }

    pub fn contains_key(&self, base: &[u8]) -> bool {
        self.get(base).is_some()
    }

    /// The rows in base-name order (once sorted).
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], MessageState)> + '_ {
        debug_assert!(!self.unsorted);
        self.slots.iter().map(|r| (self.name(r), Self::state(r)))
    }

    /// The base names in base-name order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.slots.iter().map(|r| self.name(r))
    }
}

/// Equal when they hold the same rows, wherever the names are kept.
impl PartialEq for Messages {
    fn eq(&self, other: &Messages) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Messages {}

impl<B: AsRef<[u8]>> FromIterator<(B, MessageState)> for Messages {
    fn from_iter<I: IntoIterator<Item = (B, MessageState)>>(iter: I) -> Messages {
        let mut m = Messages::default();
        for (b, s) in iter {
            m.push(b.as_ref(), s);
        }
        m.sort();
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (base name, UID) of rows.
    type Rows = &'static [(&'static str, u32)];

    fn st(uid: u32) -> MessageState {
        MessageState {
            uid,
            flags: Flags(uid),
            size: u64::from(uid) * 10,
            in_new: uid.is_multiple_of(2),
        }
    }

    #[test]
    fn messages_keep_base_order_and_the_last_state_of_a_name() {
        #[rustfmt::skip]
        let cases: &[(Rows, Rows)] = &[
            (&[], &[]),
            (&[("a", 1), ("b", 2)], &[("a", 1), ("b", 2)]),
            (&[("b", 2), ("a", 1), ("c", 3)], &[("a", 1), ("b", 2), ("c", 3)]),
            (&[("a", 1), ("a", 5)], &[("a", 5)]),
            (&[("ab", 1), ("a", 2), ("", 3)], &[("", 3), ("a", 2), ("ab", 1)]),
        ];
        for (rows, want) in cases {
            let m: Messages = rows.iter().map(|(b, u)| (b.as_bytes(), st(*u))).collect();
            let got: Vec<(Vec<u8>, MessageState)> =
                m.iter().map(|(b, s)| (b.to_vec(), s)).collect();
            let want: Vec<(Vec<u8>, MessageState)> = want
                .iter()
                .map(|(b, u)| (b.as_bytes().to_vec(), st(*u)))
                .collect();
            assert_eq!(got, want, "{rows:?}");
            for (b, s) in &want {
                assert_eq!(m.get(b), Some(*s));
            }
            assert_eq!(m.get(b"zz"), None);
            assert_eq!(m.len(), want.len());
        }
    }
}
