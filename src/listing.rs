//! The message files of one folder as a scan found them, held compactly.
//!
//! A folder of a million messages used to be a hash map of owned names:
//! two allocations per message plus the map's slots, about 300 bytes a
//! message. Here every file name is appended to one arena and each message
//! is a 24-byte slot pointing into it; after [`Listing::finish`] the slots
//! are in base-name order, which is also the order of the snapshot's rows
//! (their primary key is `(folder, base)`), so the diff is a merge of two
//! sorted sequences and a lookup is a binary search. The server's UIDs are
//! joined into the slots rather than kept in a second map, and so is the
//! snapshot of the same folder ([`Listing::join`]): of the snapshot's rows
//! only those of names no longer listed keep their own names.
//!
//! Pure data: no I/O.

use std::cmp::Ordering;

use crate::maildir::name::{self, Flags};
use crate::scan::Entry;
use crate::snapshot::{HAS_OLD, HAS_SIZE, IN_NEW, MessageState, Messages, OLD_IN_NEW, Row};

/// The snapshot's row of a listed message, once joined in (its `in_new`
/// is a bit of the slot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Old {
    size: u64,
    uid: u32,
    flags: Flags,
}

/// Why a name could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    /// The name is longer than 255 bytes (no Linux file name is).
    NameTooLong,
    /// The arena would pass 4 GiB of names (some 70 million messages).
    TooMany,
}

/// The message files of one folder (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    names: Vec<u8>,
    /// One [`Row`] a message: where its file name is in the arena, what the
    /// name says, and the server's UID.
    slots: Vec<Row>,
    /// The snapshot's rows, beside the slots, once joined (else empty).
    old: Vec<Old>,
    /// Slots pushed since the last [`Listing::finish`] (they are unsorted).
    unsorted: bool,
    /// The UIDVALIDITY of the snapshot joined in, if one was.
    joined: Option<u32>,
}

/// A message of a [`Listing`], by reference.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    listing: &'a Listing,
    slot: Row,
    index: usize,
}

impl<'a> Message<'a> {
    /// The whole file name.
    pub fn file(&self) -> &'a [u8] {
        let from = self.slot.off as usize;
        &self.listing.names[from..from + self.slot.file_len as usize]
    }

    /// The base name (before the info separator).
    pub fn base(&self) -> &'a [u8] {
        let from = self.slot.off as usize;
        &self.listing.names[from..from + self.slot.len as usize]
    }

    pub fn in_new(&self) -> bool {
        self.slot.bits & IN_NEW != 0
    }

    pub fn flags(&self) -> Flags {
        self.slot.flags
    }

    /// `S=` from the name, or the size `stat` gave.
    pub fn size(&self) -> Option<u64> {
        (self.slot.bits & HAS_SIZE != 0).then_some(self.slot.size)
    }

    /// `W=` from the name.
    pub fn vsize(&self) -> Option<u64> {
        name::size_fields(self.base()).1
    }

    /// The UID the server's list gives it; 0 for none.
    pub fn uid(&self) -> u32 {
        self.slot.uid
    }

    /// The snapshot's row of this base name, when one was joined in.
    pub fn old(&self) -> Option<MessageState> {
        if self.slot.bits & HAS_OLD == 0 {
            return None;
        }
        let o = self.listing.old.get(self.index)?;
        Some(MessageState {
            uid: o.uid,
            flags: o.flags,
            size: o.size,
            in_new: self.slot.bits & OLD_IN_NEW != 0,
        })
    }

    /// The message as an owned [`Entry`] (for an event).
    pub fn entry(&self) -> Entry {
        Entry {
            file: self.file().to_vec(),
            in_new: self.in_new(),
            flags: self.flags(),
            size: self.size(),
            vsize: self.vsize(),
        }
    }
}

impl Listing {
    /// An empty listing with room for `messages` names of `bytes` bytes in
    /// all.
    pub fn with_capacity(messages: usize, bytes: usize) -> Listing {
        Listing {
            names: Vec::with_capacity(bytes),
            slots: Vec::with_capacity(messages),
            ..Listing::default()
        }
    }

    /// Adds a message file; `base_len` is the length of its base name.
    /// Until [`Listing::finish`] the listing is unsorted and may hold a
    /// base name twice.
    pub fn push(
        &mut self,
        file: &[u8],
        base_len: usize,
        in_new: bool,
        flags: Flags,
        size: Option<u64>,
    ) -> Result<(), Full> {
        let Ok(file_len) = u8::try_from(file.len()) else {
            return Err(Full::NameTooLong);
        };
        let off = u32::try_from(self.names.len()).map_err(|_| Full::TooMany)?;
        if off.checked_add(u32::from(file_len)).is_none() {
            return Err(Full::TooMany);
        }
        self.names.extend_from_slice(file);
        self.slots.push(Row {
            size: size.unwrap_or(0),
            off,
            flags,
            uid: 0,
            len: base_len.min(file.len()) as u16,
            file_len,
            bits: if in_new { IN_NEW } else { 0 } | if size.is_some() { HAS_SIZE } else { 0 },
        });
        if self.joined.is_some() {
            self.old.push(Old::default());
        }
        self.unsorted = true;
        Ok(())
    }

    /// Sorts the messages by base name and keeps, of a base name pushed
    /// more than once, the LAST one pushed: during a move from `new/` to
    /// `cur/` a name can be seen in both, and `cur/` (listed second) is the
    /// newer one.
    pub fn finish(&mut self) {
        if !self.unsorted {
            return;
        }
        self.unsorted = false;
        let names = &self.names;
        let base = |s: &Row| &names[s.off as usize..s.off as usize + s.len as usize];
        // Equal base names stay in the order they were pushed.
        if self.old.is_empty() {
            sort_by_prefix(&mut self.slots, names);
        } else {
            // Joined already (names found again after the join): the
            // snapshot's rows move with their slots.
            let mut both: Vec<(Row, Old)> = self
                .slots
                .iter()
                .copied()
                .zip(self.old.iter().copied())
                .collect();
            both.sort_by(|a, b| base(&a.0).cmp(base(&b.0)));
            (self.slots, self.old) = both.into_iter().unzip();
        }
        let mut kept = 0;
        for i in 0..self.slots.len() {
            let s = self.slots[i];
            if kept > 0 && base(&self.slots[kept - 1]) == base(&s) {
                kept -= 1;
            }
            self.slots[kept] = s;
            if let Some(o) = self.old.get(i).copied() {
                self.old[kept] = o;
            }
            kept += 1;
        }
        self.slots.truncate(kept);
        self.old.truncate(kept.min(self.old.len()));
        // Dropped duplicates leave their bytes in the arena; they are few.
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The message at `i` (in base-name order).
    pub fn at(&self, i: usize) -> Message<'_> {
        Message {
            listing: self,
            slot: self.slots[i],
            index: i,
        }
    }

    /// The messages in base-name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Message<'_>> + '_ {
        self.slots.iter().enumerate().map(|(index, &slot)| Message {
            listing: self,
            slot,
            index,
        })
    }

    fn base_of(&self, s: &Row) -> &[u8] {
        &self.names[s.off as usize..s.off as usize + s.len as usize]
    }

    /// Where a base name is, looking at `near` first (names asked for in
    /// ascending order, as a server's UID list mostly holds them, are
    /// found without a search).
    pub fn find_near(&self, base: &[u8], near: usize) -> Option<usize> {
        match self.slots.get(near) {
            Some(s) if self.base_of(s) == base => Some(near),
            _ => self.find(base),
        }
    }

    /// Where a base name is (after [`Listing::finish`]).
    pub fn find(&self, base: &[u8]) -> Option<usize> {
        debug_assert!(!self.unsorted);
        self.slots
            .binary_search_by(|s| self.base_of(s).cmp(base))
            .ok()
    }

    pub fn get(&self, base: &[u8]) -> Option<Message<'_>> {
        self.find(base).map(|i| self.at(i))
    }

    pub fn contains(&self, base: &[u8]) -> bool {
        self.find(base).is_some()
    }

    pub fn set_uid(&mut self, i: usize, uid: u32) {
        self.slots[i].uid = uid;
    }

    /// Forgets every server UID (before the server's list is read again).
    pub fn clear_uids(&mut self) {
        for s in &mut self.slots {
            s.uid = 0;
        }
    }

    pub fn set_flags(&mut self, i: usize, flags: Flags) {
        self.slots[i].flags = flags;
    }

    pub fn set_size(&mut self, i: usize, size: Option<u64>) {
        let s = &mut self.slots[i];
        s.size = size.unwrap_or(0);
        s.bits = (s.bits & !HAS_SIZE) | if size.is_some() { HAS_SIZE } else { 0 };
    }

    /// Joins in the snapshot's rows of this folder: `row` takes them in
    /// base-name order (the state's key order); a row of a listed name is
    /// kept beside its slot, the others (messages gone, or missed by the
    /// listing) in what [`Joiner::finish`] returns. The snapshot's names
    /// of listed messages are thus never held twice.
    pub fn join(&mut self, uidvalidity: u32) -> Joiner<'_> {
        debug_assert!(!self.unsorted);
        for s in &mut self.slots {
            s.bits &= !(HAS_OLD | OLD_IN_NEW);
        }
        self.old = vec![Old::default(); self.slots.len()];
        self.joined = Some(uidvalidity);
        Joiner {
            listing: self,
            next: 0,
            gone: Messages::default(),
        }
    }

    /// The UIDVALIDITY of the snapshot joined in, if one was.
    pub fn joined(&self) -> Option<u32> {
        self.joined
    }

    /// The joined rows, in base-name order.
    pub fn old_rows(&self) -> impl Iterator<Item = (&[u8], MessageState)> + '_ {
        self.iter().filter_map(|m| Some((m.base(), m.old()?)))
    }

    /// Turns the listing into rows to write, in place (the arena of names
    /// and the slots are reused: a new folder of a million messages is
    /// written without a copy of its names). `keep(i)` gives the UID to
    /// write message `i` with, or `None` to leave it out.
    pub fn into_messages(mut self, keep: &mut dyn FnMut(usize) -> Option<u32>) -> Messages {
        debug_assert!(!self.unsorted);
        let mut kept = 0;
        for i in 0..self.slots.len() {
            let mut r = self.slots[i];
            if let Some(uid) = keep(i) {
                r.uid = uid;
                // A row's size is 0 when unknown.
                if r.bits & HAS_SIZE == 0 {
                    r.size = 0;
                }
                r.bits &= IN_NEW;
                r.file_len = 0;
                self.slots[kept] = r;
                kept += 1;
            }
        }
        self.slots.truncate(kept);
        Messages::from_parts(self.names, self.slots)
    }
}

/// Sorts slots by base name, keeping slots of equal names in their order,
/// as [`Listing::finish`] needs (without the scratch space of a stable
/// sort: half the slots' size again).
///
/// Comparing names through the arena missed the cache at every step (a
/// fifth of a large folder's scan in `memcmp`), so the sort goes over the
/// first 8 bytes of each name with the slot's index (12 MB for a million
/// names), comparing whole names only on equal prefixes, and the slots
/// are then put in that order in place.
fn sort_by_prefix(slots: &mut [Row], names: &[u8]) {
    let base = |s: &Row| &names[s.off as usize..s.off as usize + s.len as usize];
    let prefix = |b: &[u8]| {
        let mut p = [0u8; 8];
        let n = b.len().min(8);
        p[..n].copy_from_slice(&b[..n]);
        u64::from_be_bytes(p)
    };
    let Some(n) = u32::try_from(slots.len()).ok().filter(|&n| n < u32::MAX) else {
        slots.sort_by(|a, b| base(a).cmp(base(b)));
        return;
    };
    let mut keyed: Vec<(u64, u32)> = (0..n)
        .map(|i| (prefix(base(&slots[i as usize])), i))
        .collect();
    // Names shorter than 8 bytes pad with zeros, which a longer name with
    // a zero byte there shares: equal prefixes compare whole names, and
    // equal names their indexes.
    keyed.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| base(&slots[a.1 as usize]).cmp(base(&slots[b.1 as usize])))
            .then(a.1.cmp(&b.1))
    });
    let mut perm: Vec<u32> = keyed.into_iter().map(|(_, i)| i).collect();
    // slots[j] = old slots[perm[j]], following each cycle once.
    const DONE: u32 = u32::MAX;
    for start in 0..slots.len() {
        if perm[start] == DONE {
            continue;
        }
        let first = slots[start];
        let mut j = start;
        loop {
            let k = perm[j] as usize;
            perm[j] = DONE;
            if k == start {
                slots[j] = first;
                break;
            }
            slots[j] = slots[k];
            j = k;
        }
    }
}

/// See [`Listing::join`].
pub struct Joiner<'a> {
    listing: &'a mut Listing,
    /// Slots before this one have base names below the last row's.
    next: usize,
    gone: Messages,
}

impl Joiner<'_> {
    /// One row of the snapshot; rows come in ascending base-name order.
    pub fn row(&mut self, base: &[u8], state: MessageState) {
        let l = &mut *self.listing;
        while self.next < l.slots.len() && l.base_of(&l.slots[self.next]) < base {
            self.next += 1;
        }
        if self.next < l.slots.len() && l.base_of(&l.slots[self.next]) == base {
            l.slots[self.next].bits |= HAS_OLD | if state.in_new { OLD_IN_NEW } else { 0 };
            l.old[self.next] = Old {
                size: state.size,
                uid: state.uid,
                flags: state.flags,
            };
            self.next += 1;
        } else {
            self.gone.push(base, state);
        }
    }

    /// The rows of names not listed.
    pub fn finish(mut self) -> Messages {
        self.gone.sort();
        self.gone
    }
}

/// Merges two sequences of rows, each sorted by base name and with no
/// name in both, into one sorted sequence (the snapshot of a folder whose
/// rows are part joined into its listing, part not).
pub struct Union<'a, A: Iterator, B: Iterator> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
    _names: std::marker::PhantomData<&'a ()>,
}

impl<'a, A, B> Union<'a, A, B>
where
    A: Iterator<Item = (&'a [u8], MessageState)>,
    B: Iterator<Item = (&'a [u8], MessageState)>,
{
    pub fn new(a: A, b: B) -> Self {
        Union {
            a: a.peekable(),
            b: b.peekable(),
            _names: std::marker::PhantomData,
        }
    }
}

impl<'a, A, B> Iterator for Union<'a, A, B>
where
    A: Iterator<Item = (&'a [u8], MessageState)>,
    B: Iterator<Item = (&'a [u8], MessageState)>,
{
    type Item = (&'a [u8], MessageState);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) if y.0 < x.0 => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

/// Walks two sequences sorted by the same key together: `both` for a key
/// in each, `left`/`right` for a key in one only. The diff of a folder is
/// such a walk over the listing and the snapshot.
pub fn merge<L, R, K: Ord + ?Sized>(
    left: impl IntoIterator<Item = L>,
    right: impl IntoIterator<Item = R>,
    key_l: impl Fn(&L) -> &K,
    key_r: impl Fn(&R) -> &K,
    mut each: impl FnMut(Side<L, R>),
) {
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let order = match (left.peek(), right.peek()) {
            (None, None) => return,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(l), Some(r)) => key_l(l).cmp(key_r(r)),
        };
        match order {
            Ordering::Less => each(Side::Left(left.next().expect("peeked"))),
            Ordering::Greater => each(Side::Right(right.next().expect("peeked"))),
            Ordering::Equal => {
                let l = left.next().expect("peeked");
                let r = right.next().expect("peeked");
                each(Side::Both(l, r));
            }
        }
    }
}

/// What [`merge`] found for one key.
#[derive(Debug, PartialEq, Eq)]
pub enum Side<L, R> {
    Left(L),
    Right(R),
    Both(L, R),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (`new` or `cur`, file name) in listing order.
    type Files = &'static [(&'static str, &'static str)];
    /// (base name, UID) of the state's rows.
    type Rows = &'static [(&'static str, u32)];

    /// (dir, file) in listing order → the listing, parsed as a scan does.
    fn listing(files: &[(&str, &str)]) -> Listing {
        let mut l = Listing::default();
        for (dir, file) in files {
            let p = name::parse(file.as_bytes(), b':').unwrap();
            l.push(
                file.as_bytes(),
                p.base.len(),
                *dir == "new",
                p.flags,
                p.size,
            )
            .unwrap();
        }
        l.finish();
        l
    }

    fn shown(l: &Listing) -> Vec<String> {
        l.iter()
            .map(|m| {
                format!(
                    "{}{} {}",
                    if m.in_new() { "new/" } else { "cur/" },
                    String::from_utf8_lossy(m.file()),
                    m.flags().letters()
                )
            })
            .collect()
    }

    #[test]
    fn listings_sort_by_base_and_keep_the_last_of_a_base() {
        #[rustfmt::skip]
        let cases: &[(Files, &[&str])] = &[
            // Empty folder.
            (&[], &[]),
            // Sorted by base name, whatever the listing order.
            (&[("cur", "3.M1P1.h:2,S"), ("new", "1.M1P1.h"), ("cur", "2.M1P1.h:2,")],
             &["new/1.M1P1.h ", "cur/2.M1P1.h:2, ", "cur/3.M1P1.h:2,S S"]),
            // Seen in new/ and cur/ during a move: cur/ (listed second) wins.
            (&[("new", "1.M1P1.h"), ("cur", "1.M1P1.h:2,S")], &["cur/1.M1P1.h:2,S S"]),
            // Twice in cur/ (a rename seen half-way): the later one listed wins.
            (&[("cur", "1.x:2,S"), ("cur", "1.x:2,RS"), ("cur", "0.y:2,")],
             &["cur/0.y:2, ", "cur/1.x:2,RS RS"]),
            // Odd info parts: the base is before the first separator; the
            // flags are the last info's, up to its first comma.
            (&[("cur", "5.a:1,xyz"), ("cur", "4.b:2,FSa,XYZ"), ("cur", "6.c:2,S:2,T")],
             &["cur/4.b:2,FSa,XYZ FSa", "cur/5.a:1,xyz ", "cur/6.c:2,S:2,T T"]),
            // A base that is a prefix of another sorts first.
            (&[("cur", "1.ab:2,"), ("cur", "1.a:2,")], &["cur/1.a:2, ", "cur/1.ab:2, "]),
        ];
        for (files, want) in cases {
            assert_eq!(shown(&listing(files)), *want, "{files:?}");
        }
    }

    #[test]
    fn finish_sorts_like_a_stable_sort_keeping_the_last() {
        // Names from a small alphabet with a zero byte, of 0 to 11 bytes:
        // shared 8-byte prefixes, padding look-alikes and duplicates.
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for round in 0..50 {
            let n = next() % (20 + round * 20);
            let mut l = Listing::default();
            let mut want: Vec<(Vec<u8>, usize)> = Vec::new();
            for i in 0..n {
                let len = next() % 12;
                let name: Vec<u8> = (0..len).map(|_| b"a0\x00"[next() % 3]).collect();
                l.push(
                    &name,
                    name.len(),
                    i.is_multiple_of(2),
                    Flags(i as u32),
                    None,
                )
                .unwrap();
                want.push((name, i));
            }
            l.finish();
            want.sort_by(|a, b| a.0.cmp(&b.0));
            let mut dedup: Vec<(Vec<u8>, usize)> = Vec::new();
            for w in want {
                match dedup.last_mut() {
                    Some(last) if last.0 == w.0 => *last = w,
                    _ => dedup.push(w),
                }
            }
            let got: Vec<(Vec<u8>, usize)> = l
                .iter()
                .map(|m| (m.base().to_vec(), m.flags().0 as usize))
                .collect();
            assert_eq!(got, dedup, "round {round}");
        }
    }

    #[test]
    fn lookups_sizes_uids_and_changes() {
        let mut l = listing(&[
            ("cur", "20.M1P1.h,S=10,W=12:2,S"),
            ("new", "10.M1P1.h"),
            ("cur", "30.M1P1.h,S=x:2,"),
        ]);
        assert_eq!(l.find(b"10.M1P1.h"), Some(0));
        // Near or not, the same answer.
        for near in 0..5 {
            assert_eq!(l.find_near(b"10.M1P1.h", near), Some(0));
            assert_eq!(l.find_near(b"30.M1P1.h,S=x", near), Some(2));
            assert_eq!(l.find_near(b"31", near), None);
        }
        assert!(l.contains(b"20.M1P1.h,S=10,W=12"));
        assert!(!l.contains(b"20.M1P1.h"));
        assert!(!l.contains(b""));
        let m = l.get(b"20.M1P1.h,S=10,W=12").unwrap();
        assert_eq!((m.size(), m.vsize(), m.uid()), (Some(10), Some(12), 0));
        assert_eq!(l.at(2).size(), None);
        l.set_uid(1, 7);
        l.set_size(2, Some(99));
        l.set_flags(0, Flags::SEEN);
        assert_eq!((l.at(1).uid(), l.at(2).size()), (7, Some(99)));
        assert_eq!(
            l.at(0).entry(),
            Entry {
                file: b"10.M1P1.h".to_vec(),
                in_new: true,
                flags: Flags::SEEN,
                size: None,
                vsize: None
            }
        );
        l.clear_uids();
        assert!(l.iter().all(|m| m.uid() == 0));
        // Added later (a name found again) and sorted in.
        l.push(b"15.M1P1.h:2,T", 9, false, Flags::TRASHED, None)
            .unwrap();
        l.finish();
        assert_eq!(l.find(b"15.M1P1.h"), Some(1));
        assert_eq!(l.len(), 4);
    }

    #[test]
    fn names_that_do_not_fit_are_refused() {
        let mut l = Listing::default();
        let long = vec![b'a'; 256];
        assert_eq!(
            l.push(&long, 256, false, Flags::default(), None),
            Err(Full::NameTooLong)
        );
        assert!(
            l.push(&long[..255], 255, false, Flags::default(), None)
                .is_ok()
        );
        assert_eq!(l.len(), 1);
    }

    fn st(uid: u32) -> MessageState {
        MessageState {
            uid,
            flags: Flags(uid),
            size: u64::from(uid),
            in_new: !uid.is_multiple_of(2),
        }
    }

    #[test]
    fn a_snapshot_joins_into_the_listing_and_the_rest_is_gone() {
        // (listed bases, snapshot rows) → (joined: base uid, gone: base uid)
        #[rustfmt::skip]
        let cases: &[(&[&str], Rows, &str, &str)] = &[
            // Empty folder, empty snapshot.
            (&[], &[], "", ""),
            // Everything new.
            (&["1.a", "2.b"], &[], "", ""),
            // Everything removed.
            (&[], &[("1.a", 1), ("2.b", 2)], "", "1.a 1, 2.b 2"),
            // Some of each, interleaved.
            (&["1.a", "3.c", "5.e"], &[("1.a", 1), ("2.b", 2), ("5.e", 5), ("6.f", 6)],
             "1.a 1, 5.e 5", "2.b 2, 6.f 6"),
            // A base that is a prefix of another.
            (&["1.a", "1.ab"], &[("1.a", 1), ("1.aa", 2), ("1.ab", 3)], "1.a 1, 1.ab 3", "1.aa 2"),
        ];
        let text = |rows: Vec<(&[u8], MessageState)>| {
            rows.iter()
                .map(|(b, s)| format!("{} {}", String::from_utf8_lossy(b), s.uid))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (listed, rows, joined, gone) in cases {
            let files: Vec<(&str, &str)> = listed.iter().map(|b| ("cur", *b)).collect();
            let mut l = listing(&files);
            let mut j = l.join(7);
            for (b, u) in *rows {
                j.row(b.as_bytes(), st(*u));
            }
            let g = j.finish();
            assert_eq!(text(l.old_rows().collect()), *joined, "{listed:?} {rows:?}");
            assert_eq!(text(g.iter().collect()), *gone, "{listed:?} {rows:?}");
            // The two together are the snapshot, in order.
            let all: Vec<(&[u8], MessageState)> = Union::new(l.old_rows(), g.iter()).collect();
            let want: Vec<(&[u8], MessageState)> =
                rows.iter().map(|(b, u)| (b.as_bytes(), st(*u))).collect();
            assert_eq!(all, want);
            assert_eq!(l.joined(), Some(7));
            for m in l.iter() {
                let was = rows.iter().find(|(b, _)| b.as_bytes() == m.base());
                assert_eq!(m.old(), was.map(|(_, u)| st(*u)));
            }
        }
    }

    #[test]
    fn a_listing_becomes_its_rows_in_place() {
        // (listed, written with uid i+1 where the mask says) → rows
        #[rustfmt::skip]
        let cases: &[(Files, &[bool], &str)] = &[
            (&[], &[], ""),
            // Everything written (a new folder).
            (&[("new", "2.b,S=5"), ("cur", "1.a:2,S")], &[true, true], "1.a 1 S 0 cur, 2.b,S=5 2 - 5 new"),
            // Some: the others are left out.
            (&[("cur", "1.a:2,S"), ("cur", "2.b:2,"), ("cur", "3.c:2,F")], &[false, true, false], "2.b 2 - 0 cur"),
            // None.
            (&[("cur", "1.a:2,S")], &[false], ""),
        ];
        for (files, mask, want) in cases {
            let l = listing(files);
            let rows = l.into_messages(&mut |i| mask[i].then_some(i as u32 + 1));
            let got: Vec<String> = rows
                .iter()
                .map(|(b, s)| {
                    let f = s.flags.letters();
                    format!(
                        "{} {} {} {} {}",
                        String::from_utf8_lossy(b),
                        s.uid,
                        if f.is_empty() { "-".into() } else { f },
                        s.size,
                        if s.in_new { "new" } else { "cur" }
                    )
                })
                .collect();
            assert_eq!(got.join(", "), *want, "{files:?}");
        }
    }

    #[test]
    fn merges_walk_two_sorted_sequences() {
        #[rustfmt::skip]
        let cases: &[(&[u32], &[u32], &str)] = &[
            (&[], &[], ""),
            (&[1, 2], &[], "L1 L2"),
            (&[], &[1, 2], "R1 R2"),
            (&[1, 3, 5], &[2, 3, 6], "L1 R2 B3 L5 R6"),
            (&[1, 2, 3], &[1, 2, 3], "B1 B2 B3"),
        ];
        for (l, r, want) in cases {
            let mut got = Vec::new();
            merge(
                l.iter(),
                r.iter(),
                |x| *x,
                |x| *x,
                |s| {
                    got.push(match s {
                        Side::Left(x) => format!("L{x}"),
                        Side::Right(x) => format!("R{x}"),
                        Side::Both(x, _) => format!("B{x}"),
                    })
                },
            );
            assert_eq!(got.join(" "), *want);
        }
    }
}
