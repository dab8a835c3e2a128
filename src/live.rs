//! Applying the exact names inotify reported to a folder's snapshot: the
//! live counterpart of `diff`, and as pure.
//!
//! A batch is the list of operations the kernel reported for one folder's
//! `new/` and `cur/`, in order. Applying it costs time in proportion to the
//! operations, not to the folder's size, and reports what happened in
//! order, not only the net result: `+\Flagged`, `+$label1`, `-\Flagged` on
//! one message are three events. Two things are not events: a file that
//! exists only inside the batch (a client's temporary copy), and a base
//! name that vanishes and reappears (a rename seen as unlink + link): that
//! is the same message, whose flags may have changed.

use std::collections::HashMap;

use crate::diff::{Change, FlagChange, FolderUpdate, MailboxRef};
use crate::maildir::keywords::Keywords;
use crate::maildir::name::{self, Flags};
use crate::scan::{Entry, ServerUids};
use crate::snapshot::{FolderSnapshot, MessageState, UidSource};

/// The keyword bits of [`Flags`] (`a`..`z`).
const KEYWORD_BITS: Flags = Flags((1 << 26) - 1);

/// One file appearing (`CREATE`, `MOVED_TO`) or disappearing (`DELETE`,
/// `MOVED_FROM`) in `new/` or `cur/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub in_new: bool,
    pub name: Vec<u8>,
    pub present: bool,
    /// Half of a rename (`MOVED_FROM`/`MOVED_TO`) rather than a create or
    /// unlink.
    pub renamed: bool,
}

/// What applying needs to know about the folder.
pub struct LiveFolder<'a> {
    /// The folder's row, with `count` and `uidnext` as of before the batch.
    pub folder: &'a FolderSnapshot,
    /// Stored states of the base names the batch names (others are absent).
    pub states: &'a HashMap<Vec<u8>, MessageState>,
    /// The server's UIDs, freshly read, for a folder Dovecot numbers.
    pub server: Option<&'a ServerUids>,
    pub keywords: &'a Keywords,
    /// The keywords are kept apart from file names (Courier's
    /// `courierimapkeywords/`): a message's keyword bits come from its
    /// stored state, not from its name, and change only by a rescan.
    pub keywords_apart: bool,
    pub info_sep: u8,
    /// Does the user have this base name in another folder (a copy)?
    pub elsewhere: &'a dyn Fn(&[u8]) -> bool,
    /// Does an expunge of this base name match an expire rule?
    pub expired: &'a dyn Fn(&[u8]) -> bool,
    /// The size of a file without `S=` in its name (`stat`, when quota
    /// needs it), by (in new/, file name).
    pub size_of: &'a dyn Fn(bool, &[u8]) -> Option<u64>,
}

/// The outcome of a batch for one folder.
#[derive(Debug)]
pub struct Applied {
    pub changes: Vec<Change>,
    pub update: FolderUpdate,
    pub mailbox: MailboxRef,
    /// Some removal named a file the snapshot did not know: the snapshot
    /// may be wrong, so the folder should be listed again.
    pub doubtful: bool,
}

/// The files of one base name present now, as (in new/, flags), newest last.
#[derive(Default)]
struct Track {
    initial: Option<MessageState>,
    files: Vec<(bool, Flags)>,
    /// The state last reported while present, to compare a reappearance with.
    shown: Option<(bool, Flags)>,
    /// Position of the first arrival, for a base that was not there.
    arrived_at: Option<usize>,
    gone_at: Option<usize>,
    entry: Option<Entry>,
    /// Flag changes (position, before, after) while present.
    flag_changes: Vec<(usize, Flags, Flags)>,
}

/// Applies a batch of operations to one folder. `mailbox` is the index the
/// returned changes use for this folder.
pub fn apply(f: &LiveFolder, ops: &[Op], mailbox: usize) -> Applied {
    let mut tracks: HashMap<Vec<u8>, Track> = HashMap::new();
    let mut order: Vec<Vec<u8>> = Vec::new();
    let mut doubtful = false;
    for (pos, op) in ops.iter().enumerate() {
        let Some(parsed) = name::parse(&op.name, f.info_sep) else {
            continue;
        };
        let base = parsed.base.to_vec();
        let t = tracks.entry(base.clone()).or_insert_with(|| {
            order.push(base.clone());
            let initial = f.states.get(&base).copied();
            Track {
                initial,
                files: initial.iter().map(|s| (s.in_new, s.flags)).collect(),
                shown: initial.map(|s| (s.in_new, s.flags)),
                ..Track::default()
            }
        });
        let flags = if f.keywords_apart {
            let kept = t
                .initial
                .map_or(Flags::default(), |s| s.flags.intersection(KEYWORD_BITS));
            parsed.flags.difference(KEYWORD_BITS).union(kept)
        } else {
            parsed.flags
        };
        let file = (op.in_new, flags);
        if op.present {
            t.files.push(file);
            match t.shown {
                None => {
                    t.arrived_at.get_or_insert(pos);
                    t.entry = Some(Entry {
                        file: op.name.clone(),
                        in_new: op.in_new,
                        flags,
                        size: parsed.size.or_else(|| (f.size_of)(op.in_new, &op.name)),
                        vsize: parsed.vsize,
                    });
                }
                Some((_, before)) if before.without_passed() != file.1.without_passed() => {
                    t.flag_changes.push((pos, before, file.1));
                }
                Some(_) => {}
            }
            t.shown = Some(file);
            t.gone_at = None;
        } else {
            match t.files.iter().position(|x| *x == file) {
                Some(i) => {
                    t.files.remove(i);
                }
                None => doubtful = true,
            }
            match t.files.last() {
                Some(&now) => {
                    if let Some((_, before)) = t.shown
                        && before.without_passed() != now.1.without_passed()
                    {
                        t.flag_changes.push((pos, before, now.1));
                    }
                    t.shown = Some(now);
                }
                None => t.gone_at = Some(pos),
            }
        }
    }

    // Events by position: arrivals, flag changes, expunges.
    enum Ev {
        Arrive(Vec<u8>),
        Flags(Vec<u8>, Flags, Flags),
        Gone(Vec<u8>),
    }
    let mut evs: Vec<(usize, Ev)> = Vec::new();
    for base in &order {
        let t = &tracks[base];
        let present = !t.files.is_empty();
        match (t.initial.is_some(), present) {
            // Came and went inside the batch: no message.
            (false, false) => continue,
            (false, true) => evs.push((t.arrived_at.unwrap_or(0), Ev::Arrive(base.clone()))),
            (true, false) => evs.push((t.gone_at.unwrap_or(usize::MAX), Ev::Gone(base.clone()))),
            (true, true) => {}
        }
        for &(pos, before, after) in &t.flag_changes {
            if present || t.gone_at.is_some_and(|g| pos < g) {
                evs.push((pos, Ev::Flags(base.clone(), before, after)));
            }
        }
    }
    evs.sort_by_key(|(pos, _)| *pos);

    let folder = f.folder;
    let own = folder.uid_source == UidSource::Own && f.server.is_none();
    let mut uidnext = folder.uidnext.max(1);
    let mut count = folder.count as i64;
    let mut bytes = folder.bytes as i64;
    let mut upserts = Vec::new();
    let mut deletes = Vec::new();
    let mut uids: HashMap<Vec<u8>, u32> = HashMap::new();
    let uid_for = |base: &[u8], known: Option<MessageState>, uidnext: &mut u32| -> u32 {
        if let Some(&u) = f.server.and_then(|s| s.by_base.get(base)) {
            return u;
        }
        if let Some(s) = known.filter(|s| s.uid != 0) {
            return s.uid;
        }
        if own {
            let u = *uidnext;
            *uidnext += 1;
            return u;
        }
        0
    };
    for base in &order {
        let t = &tracks[base];
        if t.initial.is_none() && t.files.is_empty() {
            continue;
        }
        let uid = uid_for(base, t.initial, &mut uidnext);
        uids.insert(base.clone(), uid);
        match t.files.last() {
            Some(&(in_new, flags)) => {
                let size = t
                    .entry
                    .as_ref()
                    .and_then(|e| e.size)
                    .or(t.initial.map(|s| s.size))
                    .unwrap_or(0);
                let state = MessageState {
                    uid,
                    flags,
                    size,
                    in_new,
                };
                if t.initial != Some(state) {
                    upserts.push((base.clone(), state));
                }
                if t.initial.is_none() {
                    count += 1;
                }
                bytes += size as i64 - t.initial.map_or(0, |s| s.size as i64);
            }
            None => {
                deletes.push(base.clone());
                count -= 1;
                bytes -= t.initial.map_or(0, |s| s.size as i64);
            }
        }
    }
    if let Some(s) = f.server {
        uidnext = uidnext.max(s.uidnext);
    }
    let max_uid = uids.values().copied().max().unwrap_or(0);
    uidnext = uidnext.max(max_uid.saturating_add(1));

    // Consecutive changes of one kind and flag set merge into one event.
    let mut changes: Vec<Change> = Vec::new();
    for (_, ev) in evs {
        match ev {
            Ev::Arrive(base) => {
                let t = &tracks[&base];
                // The message as it first appeared; later flag changes in
                // the batch follow as their own events.
                let entry = t.entry.clone().unwrap_or_else(|| Entry {
                    file: base.clone(),
                    in_new: true,
                    flags: Flags::default(),
                    size: None,
                    vsize: None,
                });
                let arrival = crate::diff::arrival_kind(&entry, || (f.elsewhere)(&base));
                changes.push(Change::Arrived {
                    mailbox,
                    arrival,
                    uid: uids[&base],
                    base,
                    entry,
                    params: Vec::new(),
                });
            }
            Ev::Flags(base, before, after) => {
                let (was, now) = (before.without_passed(), after.without_passed());
                let fc = FlagChange {
                    uid: uids[&base],
                    gained: now.difference(was),
                    lost: was.difference(now),
                };
                match changes.last_mut() {
                    Some(Change::Flags { changes: prev, .. })
                        if prev
                            .last()
                            .is_some_and(|p| p.gained == fc.gained && p.lost == fc.lost) =>
                    {
                        prev.push(fc)
                    }
                    _ => changes.push(Change::Flags {
                        mailbox,
                        changes: vec![fc],
                    }),
                }
            }
            Ev::Gone(base) => {
                let uid = uids[&base];
                // A message moved out (restored from Trash) did not expire.
                let expire = (f.expired)(&base) && !(f.elsewhere)(&base);
                if !matches!(changes.last(), Some(Change::Expunge { expire: e, .. }) if *e == expire)
                {
                    changes.push(Change::Expunge {
                        mailbox,
                        uids: Vec::new(),
                        unassigned: Vec::new(),
                        expire,
                    });
                }
                if let Some(Change::Expunge {
                    uids, unassigned, ..
                }) = changes.last_mut()
                {
                    if uid == 0 {
                        unassigned.push(base);
                    } else {
                        uids.push(uid);
                    }
                }
            }
        }
    }
    for c in &mut changes {
        if let Change::Expunge { uids, .. } = c {
            uids.sort_unstable();
        }
    }

    let count = count.max(0) as u32;
    let mut row = folder.clone();
    row.messages = None;
    row.uidnext = uidnext;
    row.count = count;
    row.bytes = bytes.max(0) as u64;
    // The stamps no longer describe what we know; the next catch-up lists
    // this folder again.
    row.stamp.trusted = false;
    if let Some(s) = f.server {
        row.uidvalidity = s.uidvalidity;
        row.guid = s.guid.clone().or(row.guid);
    }
    row.pending = row.pending || uids.values().any(|&u| u == 0);
    let mailbox_ref = MailboxRef {
        dir: folder.dir.clone(),
        name: folder.name.clone(),
        uidvalidity: row.uidvalidity,
        uidnext,
        messages: count,
        keywords: f.keywords.clone(),
    };
    Applied {
        changes,
        update: FolderUpdate {
            folder: row,
            upserts,
            rows: Default::default(),
            deletes,
        },
        mailbox: mailbox_ref,
        doubtful,
    }
}

#[cfg(test)]
#[path = "live_tests.rs"]
mod tests;
