//! Old snapshot + new listing → what changed, and the new snapshot.
//!
//! This is a pure function and the place where the Maildir semantics live:
//! what a rename of a file means, which UID a message has, when a folder
//! was renamed rather than deleted and created. It does no I/O; the only
//! outside knowledge it takes is the `elsewhere` question (is this base
//! name known in another folder of the user?) which the caller answers from
//! the state database.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::listing::{self, Listing, Side};
use crate::maildir::folders;
use crate::maildir::keywords::Keywords;
use crate::maildir::name::{self, Flags};
use crate::quota::{Limits, QuotaEvent, QuotaState, Usage};
use crate::scan::{Contents, Entry, FolderListing, NameHash, UserListing};
use crate::snapshot::{FolderSnapshot, MessageState, Messages, UidSource, UserSnapshot};

/// A mailbox as events describe it, after the changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxRef {
    pub dir: Vec<u8>,
    pub name: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub messages: u32,
    pub keywords: Keywords,
}

/// How a message came into a folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Delivered: a new name in `new/`.
    New,
    /// Appended or copied: a new name directly in `cur/`, or a base name
    /// the user already has in another folder (a copy or move keeps it).
    Append,
}

/// One message's flags before and after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlagChange {
    pub uid: u32,
    pub gained: Flags,
    pub lost: Flags,
}

/// A change, in the order events should report it. `mailbox` indexes
/// [`UserDiff::mailboxes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    MailboxCreate {
        mailbox: usize,
    },
    MailboxRename {
        mailbox: usize,
        old_name: String,
        old_uidvalidity: u32,
    },
    MailboxDelete {
        name: String,
        uidvalidity: u32,
    },
    /// `params`: optional parameters computed from the message content
    /// (filled in by the caller, which reads the file).
    Arrived {
        mailbox: usize,
        arrival: Arrival,
        uid: u32,
        base: Vec<u8>,
        entry: Entry,
        params: Vec<(String, String)>,
    },
    Flags {
        mailbox: usize,
        changes: Vec<FlagChange>,
    },
    /// `unassigned`: base names of expunged messages that never had a UID.
    /// `expire`: the messages matched an expire rule (MessageExpire).
    Expunge {
        mailbox: usize,
        uids: Vec<u32>,
        unassigned: Vec<Vec<u8>>,
        expire: bool,
    },
    /// A quota limit changed, or usage crossed it.
    Quota {
        event: QuotaEvent,
        limits: Limits,
        usage: Usage,
    },
    Subscribe {
        name: String,
    },
    Unsubscribe {
        name: String,
    },
}

/// What the store must write for one folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderUpdate {
    /// The folder's new row (its `id` is the old row's, or 0 for a new one;
    /// `messages` is `None`).
    pub folder: FolderSnapshot,
    /// Message rows to write, one by one (the live engine's few).
    pub upserts: Vec<(Vec<u8>, MessageState)>,
    /// Message rows to write, compact and in base-name order (a scan's
    /// diff: a new folder of a million messages writes a million rows).
    pub rows: Messages,
    pub deletes: Vec<Vec<u8>>,
}

/// Everything one user's diff found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserDiff {
    pub mailboxes: Vec<MailboxRef>,
    pub changes: Vec<Change>,
    pub updates: Vec<FolderUpdate>,
    /// Row ids of folders that are gone.
    pub deleted: Vec<i64>,
    /// The new subscription set, when it changed.
    pub subscriptions: Option<BTreeSet<String>>,
    /// The new quota state, when quota is on.
    pub quota: Option<QuotaState>,
}

/// Inputs of a diff besides the two sides.
pub struct DiffInput<'a> {
    /// The UIDVALIDITY for folders whose UIDs are ours (seconds since the
    /// epoch at this run, like Dovecot).
    pub own_uidvalidity: u32,
    /// Hierarchy separator of IMAP names, to tell implied child renames.
    pub hier_sep: char,
    /// Is this base name in another folder (not `dir`) of the user, in the
    /// part of the snapshot that was not loaded?
    pub elsewhere: &'a dyn Fn(&[u8], &[u8]) -> bool,
    /// Does an expunge of this base name from this mailbox match an expire
    /// rule?
    pub expired: &'a dyn Fn(&str, &[u8]) -> bool,
    /// A silent baseline: only the new snapshot is wanted, no arrivals.
    pub silent: bool,
}

/// Compares a user's snapshot (messages loaded for every folder not
/// `Unchanged` in the listing) with the listing. The listing is consumed:
/// the rows to write are made of its names in place (see
/// [`Listing::into_messages`]).
pub fn diff_user(old: &UserSnapshot, mut new: UserListing, input: &DiffInput) -> UserDiff {
    let rows;
    let mut out = {
        let (out, plans) = diff_borrowed(old, &new, input);
        rows = plans;
        out
    };
    // The rows of each folder, from its listing.
    for (update, dir, plan) in rows {
        let Some(f) = new.folders.get_mut(&dir) else {
            continue;
        };
        let Contents::Listed(listed) = std::mem::replace(&mut f.contents, Contents::Unchanged)
        else {
            continue;
        };
        out.updates[update].rows = plan.rows(listed);
    }
    out
}

/// Which of a folder's listed messages are written, with which UIDs.
struct Plan {
    uids: Vec<u32>,
    write: Vec<bool>,
    count: usize,
}

impl Plan {
    fn rows(self, listed: Listing) -> Messages {
        let Plan { uids, write, count } = self;
        if count * 4 < listed.len() {
            // A few changed in a large folder: their rows alone, so that
            // the folder's names are not held until the commit.
            let mut rows = Messages::with_capacity(count);
            for (i, m) in listed.iter().enumerate().filter(|(i, _)| write[*i]) {
                rows.push(
                    m.base(),
                    MessageState {
                        uid: uids[i],
                        flags: m.flags(),
                        size: m.size().unwrap_or(0),
                        in_new: m.in_new(),
                    },
                );
            }
            rows
        } else {
            listed.into_messages(&mut |i| write[i].then(|| uids[i]))
        }
    }
}

/// [`diff_user`] up to the rows to write: which they are, by folder (the
/// index of its update and its directory).
fn diff_borrowed(
    old: &UserSnapshot,
    new: &UserListing,
    input: &DiffInput,
) -> (UserDiff, Vec<(usize, Vec<u8>, Plan)>) {
    let mut out = UserDiff::default();
    let mut plans = Vec::new();

    // A directory deleted and made anew under the same name (another inode
    // and, where Dovecot numbers it, another UIDVALIDITY) is another folder.
    let replaced = |o: &FolderSnapshot, f: &FolderListing| {
        !o.dir.is_empty()
            && o.ino != f.ino
            && match &f.server_uids {
                Some(s) => s.uidvalidity != o.uidvalidity,
                None => matches!(f.contents, Contents::Listed(_)) && o.uid_source == UidSource::Own,
            }
    };
    let prior_of = |f: &FolderListing| old.folders.get(&f.dir).filter(|o| !replaced(o, f));
    // Pair folders: same directory, else a rename (same inode, or the same
    // Dovecot mailbox GUID).
    let gone: Vec<&FolderSnapshot> = old
        .folders
        .values()
        .filter(|o| new.folders.get(&o.dir).is_none_or(|f| replaced(o, f)))
        .collect();
    let mut renamed_from: HashMap<&[u8], &FolderSnapshot> = HashMap::new();
    let mut used: HashSet<&[u8]> = HashSet::new();
    for f in new.folders.values().filter(|f| prior_of(f).is_none()) {
        let guid = f.server_uids.as_ref().and_then(|u| u.guid.as_deref());
        let found = gone.iter().find(|o| {
            !used.contains(o.dir.as_slice())
                && o.dir != f.dir
                && ((o.dev == f.dev && o.ino == f.ino)
                    || (guid.is_some() && o.guid.as_deref() == guid))
        });
        if let Some(o) = found {
            used.insert(&o.dir);
            renamed_from.insert(&f.dir, o);
        }
    }

    // Base names present in loaded folders, to recognise copies and moves.
    // (A silent baseline reports nothing, so it needs none of this.)
    let seen = if input.silent {
        Seen::default()
    } else {
        Seen::new(old, new)
    };
    let copied =
        |dir: &[u8], base: &[u8]| seen.elsewhere(dir, base) || (input.elsewhere)(dir, base);

    let renames: Vec<(String, String)> = renamed_from
        .iter()
        .map(|(dir, o)| (o.name.clone(), new.folders[*dir].name.clone()))
        .collect();
    let implied = |old_name: &str, new_name: &str| {
        renames.iter().any(|(po, pn)| {
            po != old_name
                && folders::rebase(old_name, po, pn, input.hier_sep).as_deref() == Some(new_name)
        })
    };

    let mut head = Vec::new();
    let mut body = Vec::new();
    for f in new.folders.values() {
        let prior = prior_of(f).or_else(|| renamed_from.get(f.dir.as_slice()).copied());
        let Some((update, plan)) =
            diff_folder(prior, f, new, input, &copied, &mut out.mailboxes, &mut body)
        else {
            continue;
        };
        if let Some(plan) = plan {
            plans.push((out.updates.len(), f.dir.clone(), plan));
        }
        let mailbox = out.mailboxes.len() - 1;
        match prior {
            None if !f.dir.is_empty() => head.push(Change::MailboxCreate { mailbox }),
            Some(o) if o.dir != f.dir && !implied(&o.name, &f.name) => {
                head.push(Change::MailboxRename {
                    mailbox,
                    old_name: o.name.clone(),
                    old_uidvalidity: o.uidvalidity,
                })
            }
            _ => {}
        }
        out.updates.push(update);
    }
    let mut tail = Vec::new();
    let mut replaced_first = Vec::new();
    for o in gone
        .into_iter()
        .filter(|o| !used.contains(o.dir.as_slice()))
    {
        if !o.dir.is_empty() {
            let delete = Change::MailboxDelete {
                name: o.name.clone(),
                uidvalidity: o.uidvalidity,
            };
            // A folder made anew under its old name: the delete comes first.
            if new.folders.contains_key(&o.dir) {
                replaced_first.push(delete);
            } else {
                tail.push(delete);
            }
        }
        out.deleted.push(o.id);
    }
    if let Some(subs) = &new.subscriptions
        && *subs != old.subscriptions
    {
        for name in subs.difference(&old.subscriptions) {
            tail.push(Change::Subscribe { name: name.clone() });
        }
        for name in old.subscriptions.difference(subs) {
            tail.push(Change::Unsubscribe { name: name.clone() });
        }
        out.subscriptions = Some(subs.clone());
    }
    out.changes = replaced_first
        .into_iter()
        .chain(head)
        .chain(body)
        .chain(tail)
        .collect();
    (out, plans)
}

/// Diffs one folder; pushes its [`MailboxRef`] and message changes.
/// Returns `None` when the folder is to be left as it is (unchanged or
/// unreadable, and not renamed).
fn diff_folder(
    prior: Option<&FolderSnapshot>,
    f: &FolderListing,
    new: &UserListing,
    input: &DiffInput,
    copied: &dyn Fn(&[u8], &[u8]) -> bool,
    mailboxes: &mut Vec<MailboxRef>,
    changes: &mut Vec<Change>,
) -> Option<(FolderUpdate, Option<Plan>)> {
    let listed = match &f.contents {
        Contents::Listed(m) => m,
        Contents::Unchanged | Contents::Unreadable => {
            // Keep the snapshot; only a rename moves the row.
            let p = prior?;
            if p.dir == f.dir {
                return None;
            }
            let mut folder = p.clone();
            folder.messages = None;
            folder.dir = f.dir.clone();
            folder.name = f.name.clone();
            mailboxes.push(MailboxRef {
                dir: f.dir.clone(),
                name: f.name.clone(),
                uidvalidity: p.uidvalidity,
                uidnext: p.uidnext,
                messages: p.count,
                keywords: Keywords::default(),
            });
            let update = FolderUpdate {
                folder,
                upserts: Vec::new(),
                rows: Messages::default(),
                deletes: Vec::new(),
            };
            return Some((update, None));
        }
    };

    // Which UIDVALIDITY and UIDs hold now.
    let kept = prior.filter(|p| p.uid_source != UidSource::Own && f.server_uids.is_none());
    let (uid_source, uidvalidity, guid, server) = match &f.server_uids {
        Some(s) => (f.uid_source, s.uidvalidity, s.guid.clone(), Some(s)),
        // A server's list that went away is no renumbering (Courier
        // deletes a folder file by file, its list among the first): the
        // numbers stand until a list with a new UIDVALIDITY comes.
        None if let Some(p) = kept => (p.uid_source, p.uidvalidity, p.guid.clone(), None),
        None => {
            let keep = prior.filter(|p| p.uid_source == UidSource::Own);
            let v = keep.map(|p| p.uidvalidity).unwrap_or_else(|| {
                // A fresh number, never the one the UIDs were under before.
                let v = input.own_uidvalidity.max(1);
                if prior.is_some_and(|p| p.uidvalidity == v) {
                    v.wrapping_add(1).max(1)
                } else {
                    v
                }
            });
            (UidSource::Own, v, None, None)
        }
    };
    let same_validity =
        prior.is_some_and(|p| p.uidvalidity == uidvalidity && p.uid_source == uid_source);
    let own_next = match prior {
        Some(p) if same_validity && uid_source == UidSource::Own => p.uidnext.max(1),
        _ => 1,
    };
    let own = uid_source == UidSource::Own;

    // One walk of the listing and the snapshot, both in base-name order:
    // the UIDs known now, which messages need Dovecot's order (to be
    // numbered, or reported as arrivals and flag changes), and the gone.
    let mut uids: Vec<u32> = Vec::with_capacity(listed.len());
    // With the old flags of those that had a row.
    let mut ordered: Vec<(u32, Option<Flags>)> = Vec::new();
    // Expunges, and separately those an expire rule matches.
    let mut gone: [(Vec<u32>, Vec<Vec<u8>>); 2] = Default::default();
    let mut deletes = Vec::new();
    walk(listed, old_rows(prior, new), |side| match side {
        Side::Left((i, m)) | Side::Both((i, m), _) => {
            let o = match side {
                Side::Both(_, (_, o)) => Some(o),
                _ => None,
            };
            let uid = if server.is_some() && m.uid() != 0 {
                m.uid()
            } else if same_validity && let Some(o) = o.filter(|o| o.uid != 0) {
                o.uid
            } else {
                0
            };
            uids.push(uid);
            let reported = !input.silent
                && o.is_none_or(|o| o.flags.without_passed() != m.flags().without_passed());
            if (uid == 0 && own) || reported {
                ordered.push((i as u32, o.map(|o| o.flags)));
            }
        }
        Side::Right((base, o)) => {
            // A message moved out (restored from Trash) did not expire.
            let expired = (input.expired)(&f.name, base) && !copied(&f.dir, base);
            let g = &mut gone[usize::from(expired)];
            // Under a new UIDVALIDITY the old UID means nothing any more.
            if o.uid != 0 && same_validity {
                g.0.push(o.uid);
            } else {
                g.1.push(base.to_vec());
            }
            deletes.push(base.to_vec());
        }
    });

    // Messages in the order Dovecot would number them: our own numbers,
    // and arrivals and flag changes reported in the order a client sees.
    name::sort_dovecot_by(&mut ordered, |(i, _)| listed.at(*i as usize).base());
    let mut own_next = own_next;
    for &(i, _) in &ordered {
        let i = i as usize;
        if uids[i] == 0 && own {
            uids[i] = own_next;
            own_next += 1;
        }
    }
    let max_uid = uids.iter().copied().max().unwrap_or(0);
    let uidnext = match (server, kept) {
        (Some(s), _) => s.uidnext.max(max_uid.saturating_add(1)),
        (None, Some(p)) => p.uidnext.max(max_uid.saturating_add(1)),
        (None, None) => own_next,
    };
    mailboxes.push(MailboxRef {
        dir: f.dir.clone(),
        name: f.name.clone(),
        uidvalidity,
        uidnext,
        messages: listed.len() as u32,
        keywords: f.keywords.clone(),
    });
    let mailbox = mailboxes.len() - 1;
    let state_of = |i: usize| {
        let m = listed.at(i);
        MessageState {
            uid: uids[i],
            flags: m.flags(),
            size: m.size().unwrap_or(0),
            in_new: m.in_new(),
        }
    };

    let mut arrivals = Vec::new();
    let mut flag_changes = Vec::new();
    if !input.silent {
        for &(i, old_flags) in &ordered {
            let m = listed.at(i as usize);
            let state = state_of(i as usize);
            match old_flags {
                None => {
                    let e = m.entry();
                    let arrival = arrival_kind(&e, || copied(&f.dir, m.base()));
                    arrivals.push(Change::Arrived {
                        mailbox,
                        arrival,
                        uid: state.uid,
                        base: m.base().to_vec(),
                        entry: e,
                        params: Vec::new(),
                    });
                }
                Some(old_flags) => {
                    let (was, now) = (old_flags.without_passed(), state.flags.without_passed());
                    if was != now {
                        flag_changes.push(FlagChange {
                            uid: state.uid,
                            gained: now.difference(was),
                            lost: was.difference(now),
                        });
                    }
                }
            }
        }
    }
    drop(ordered);

    // The rows to write: the new and the changed.
    let mut write = vec![false; listed.len()];
    let mut count = 0;
    let (mut pending, mut bytes) = (false, 0u64);
    walk(listed, old_rows(prior, new), |side| {
        let (i, o) = match side {
            Side::Left((i, _)) => (i, None),
            Side::Both((i, _), (_, o)) => (i, Some(o)),
            Side::Right(_) => return,
        };
        let state = state_of(i);
        pending |= state.uid == 0;
        bytes += state.size;
        if o != Some(state) {
            write[i] = true;
            count += 1;
        }
    });

    changes.extend(arrivals);
    if !flag_changes.is_empty() {
        changes.push(Change::Flags {
            mailbox,
            changes: flag_changes,
        });
    }
    for (i, (mut uids, unassigned)) in gone.into_iter().enumerate() {
        if !uids.is_empty() || !unassigned.is_empty() {
            uids.sort_unstable();
            changes.push(Change::Expunge {
                mailbox,
                uids,
                unassigned,
                expire: i == 1,
            });
        }
    }
    let folder = FolderSnapshot {
        id: prior.map(|p| p.id).unwrap_or(0),
        dir: f.dir.clone(),
        name: f.name.clone(),
        dev: f.dev,
        ino: f.ino,
        uid_source,
        uidvalidity,
        guid,
        uidnext,
        stamp: f.stamp,
        pending,
        keyword_table: f.keyword_table.clone(),
        count: listed.len() as u32,
        bytes,
        messages: None,
    };
    let update = FolderUpdate {
        folder,
        upserts: Vec::new(),
        rows: Messages::default(),
        deletes,
    };
    Some((update, Some(Plan { uids, write, count })))
}

/// Walks a folder's listing and its snapshot together, in base-name
/// order (see [`listing::merge`]); a listed message comes with its index.
fn walk<'a>(
    listed: &'a Listing,
    old: impl Iterator<Item = (&'a [u8], MessageState)>,
    each: impl FnMut(Side<(usize, listing::Message<'a>), (&'a [u8], MessageState)>),
) {
    listing::merge(
        listed.iter().enumerate(),
        old,
        |(_, m)| m.base(),
        |(b, _)| *b,
        each,
    );
}

/// The snapshot's rows of a folder in base-name order: those joined into
/// the listing of its directory (see [`Listing::join`]) and the others.
fn old_rows<'a>(
    prior: Option<&'a FolderSnapshot>,
    new: &'a UserListing,
) -> impl Iterator<Item = (&'a [u8], MessageState)> + 'a {
    let joined = prior.and_then(|p| joined_listing(p, new));
    let rest = prior.and_then(|p| p.messages.as_ref());
    listing::Union::new(
        joined.into_iter().flat_map(|l| l.old_rows()),
        rest.into_iter().flat_map(|m| m.iter()),
    )
}

/// The listing a folder's snapshot was joined into, if it was.
fn joined_listing<'a>(old: &FolderSnapshot, new: &'a UserListing) -> Option<&'a Listing> {
    match new.folders.get(&old.dir).map(|f| &f.contents) {
        Some(Contents::Listed(l)) if l.joined().is_some() => Some(l),
        _ => None,
    }
}

/// Which loaded folders hold a base name, to tell a copy or move from a
/// delivery. The listings and snapshots are sorted, so the truth is a
/// binary search in each. When those searches add up (many arrivals over
/// many folders: a new user's first scan) an index of 8-byte hashes (some
/// 20 bytes a message, never the names) is built to answer "only here"
/// first; it is not built for a few arrivals beside a huge folder, which
/// it would cost tens of megabytes.
#[derive(Default)]
struct Seen<'a> {
    /// The loaded folders: directory, snapshot messages, listing (of the
    /// new side, or holding the snapshot joined into it).
    folders: Vec<(&'a [u8], Option<&'a Messages>, Held<'a>)>,
    /// The distinct directories among them.
    dirs: Vec<&'a [u8]>,
    /// Messages in all of them.
    total: usize,
    /// Folders searched so far.
    searched: std::cell::Cell<usize>,
    /// Hash of a base name → the one directory (index in `dirs`) holding
    /// names of that hash, or [`Seen::MANY`].
    index: std::cell::OnceCell<HashIndex>,
}

impl<'a> Seen<'a> {
    const MANY: u32 = u32::MAX;

    fn new(old: &'a UserSnapshot, new: &'a UserListing) -> Seen<'a> {
        let mut folders = Vec::new();
        for f in old.folders.values() {
            if let Some(m) = &f.messages {
                let joined = joined_listing(f, new).map_or(Held::None, Held::Old);
                folders.push((f.dir.as_slice(), Some(m), joined));
            }
        }
        for f in new.folders.values() {
            if let Contents::Listed(l) = &f.contents {
                folders.push((f.dir.as_slice(), None, Held::New(l)));
            }
        }
        let mut dirs: Vec<&[u8]> = folders.iter().map(|f| f.0).collect();
        dirs.sort_unstable();
        dirs.dedup();
        let total = folders
            .iter()
            .map(|(_, m, l)| {
                m.map_or(0, |m| m.len())
                    + match l {
                        Held::New(l) | Held::Old(l) => l.len(),
                        Held::None => 0,
                    }
            })
            .sum();
        Seen {
            folders,
            dirs,
            total,
            ..Seen::default()
        }
    }

    fn build_index(&self) -> HashIndex {
        use std::hash::BuildHasher;
        let hasher = NameHash::default();
        let mut index = HashIndex::default();
        for (dir, m, l) in &self.folders {
            let d = self.dirs.binary_search(dir).unwrap_or(0) as u32;
            let mut add = |base: &[u8]| {
                index
                    .entry(hasher.hash_one(base))
                    .and_modify(|v| {
                        if *v != d {
                            *v = Seen::MANY;
                        }
                    })
                    .or_insert(d);
            };
            m.iter().flat_map(|m| m.keys()).for_each(&mut add);
            match l {
                Held::New(l) => l.iter().for_each(|m| add(m.base())),
                Held::Old(l) => l.old_rows().for_each(|(b, _)| add(b)),
                Held::None => {}
            }
        }
        index
    }

    /// Whether a loaded folder other than `dir` holds `base`.
    fn elsewhere(&self, dir: &[u8], base: &[u8]) -> bool {
        use std::hash::BuildHasher;
        // One directory: nothing is elsewhere, or (a lone renamed folder)
        // a search tells.
        if self.dirs.len() >= 2 {
            // The index once the searches have cost about what it costs.
            let searched = self.searched.get() + self.folders.len();
            self.searched.set(searched);
            if searched >= self.total / 4 {
                let index = self.index.get_or_init(|| self.build_index());
                match index.get(&NameHash::default().hash_one(base)) {
                    None => return false,
                    Some(&d) if d != Seen::MANY && self.dirs[d as usize] == dir => return false,
                    Some(_) => {}
                }
            }
        }
        self.folders.iter().any(|(d, m, l)| {
            *d != dir
                && (m.is_some_and(|m| m.contains_key(base))
                    || match l {
                        Held::New(l) => l.contains(base),
                        Held::Old(l) => l.get(base).is_some_and(|m| m.old().is_some()),
                        Held::None => false,
                    })
        })
    }
}

/// Hash of a base name → index of a directory, or [`Seen::MANY`].
type HashIndex = HashMap<u64, u32, NameHash>;

/// What a listing holds for [`Seen`].
#[derive(Clone, Copy)]
enum Held<'a> {
    None,
    /// The new side's messages.
    New(&'a Listing),
    /// The snapshot's rows joined into it.
    Old(&'a Listing),
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;

/// Whether a message first seen as `entry` was delivered or appended.
///
/// A delivery lands in `new/`. One in `cur/` with no flags at all, whose
/// base name the user has in no other folder, is a delivery too: an IMAP
/// client in IDLE (most of them) makes Dovecot move each new message to
/// `cur/` within a second, before a scan or a busy watcher sees it in
/// `new/`. An APPEND with flags, a COPY or a MOVE (the base name exists
/// elsewhere) is MessageAppend; Dovecot saves an APPEND without flags in
/// `new/`, so it stays a MessageNew, as Dovecot's own notifications say.
pub fn arrival_kind(entry: &Entry, copied: impl FnOnce() -> bool) -> Arrival {
    if (!entry.in_new && entry.flags.0 != 0) || copied() {
        Arrival::Append
    } else {
        Arrival::New
    }
}
