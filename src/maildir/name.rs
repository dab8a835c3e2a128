//! Maildir message file names.
//!
//! A Maildir message keeps its identity in its file name, not in its inode or
//! its path: every client that changes flags renames the file, and a message
//! moves from `new/` to `cur/` by rename too. The part that never changes is
//! the *base name*, everything before the first info separator (`:` unless the
//! store was written on a system that cannot use it). The *info* after the
//! separator is `2,<flags>` in practice, where each letter is one flag and
//! Dovecot uses `a`..`z` for keywords.
//!
//! Dovecot also puts the physical and virtual message sizes into the base name
//! (`,S=<n>` and `,W=<n>`), which lets a watcher report `RFC822.SIZE` without
//! opening the file.
//!
//! Everything here works on bytes, because file names on Unix are bytes and a
//! host name or a client may put anything but `/` and NUL into them.

use std::cmp::Ordering;

/// Flags of one message: bits 0..=25 are Dovecot keyword letters 'a'..='z'
/// (keyword index 0..25), bits 26..=31 the system letters D F P R S T.
///
/// One `u32` holds everything a file name can say about a message, so the
/// flag change between two names of the same message is a cheap bit
/// operation. The mapping from keyword letters to names is per mailbox and
/// lives in `dovecot-keywords`; it is not part of this type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u32);

/// The system flag letters in bit order, which is also ASCII order.
const SYSTEM_LETTERS: [u8; 6] = *b"DFPRST";

/// The bit of the first system letter (`D`).
const SYSTEM_SHIFT: u32 = 26;

/// The number of keyword letters `a`..=`z`.
const KEYWORD_COUNT: u8 = 26;

impl Flags {
    /// `D`: the message is a draft (IMAP `\Draft`).
    pub const DRAFT: Flags = Flags(1 << SYSTEM_SHIFT);
    /// `F`: the message is flagged (IMAP `\Flagged`).
    pub const FLAGGED: Flags = Flags(1 << (SYSTEM_SHIFT + 1));
    /// `P`: the message was passed on (resent, forwarded, bounced). IMAP has
    /// no name for it; Dovecot keeps it on disk but never reports it.
    pub const PASSED: Flags = Flags(1 << (SYSTEM_SHIFT + 2));
    /// `R`: the message was replied to (IMAP `\Answered`).
    pub const REPLIED: Flags = Flags(1 << (SYSTEM_SHIFT + 3));
    /// `S`: the message was seen (IMAP `\Seen`).
    pub const SEEN: Flags = Flags(1 << (SYSTEM_SHIFT + 4));
    /// `T`: the message is trashed, to be removed later (IMAP `\Deleted`).
    pub const TRASHED: Flags = Flags(1 << (SYSTEM_SHIFT + 5));

    /// Builds flags from the letters of a `2,` info field.
    ///
    /// Unknown bytes (digits, punctuation, upper-case letters other than
    /// `DFPRST`) are ignored, as Dovecot ignores them on read: other clients
    /// may use letters this crate does not know, and one odd letter must not
    /// hide the flags that are known.
    pub fn from_letters(letters: &[u8]) -> Flags {
        letters
            .iter()
            .fold(Flags::default(), |acc, &b| acc.union(Flags::from_letter(b)))
    }

    /// Maps one letter to its flag, or to no flag at all.
    fn from_letter(letter: u8) -> Flags {
        match letter {
            b'a'..=b'z' => Flags::keyword(letter - b'a'),
            _ => SYSTEM_LETTERS
                .iter()
                .zip(SYSTEM_SHIFT..)
                .find(|&(&l, _)| l == letter)
                .map_or(Flags(0), |(_, bit)| Flags(1 << bit)),
        }
    }

    /// Returns the letters of the set flags in ASCII order, as a Maildir
    /// writer must put them (system letters first, then keywords), for
    /// example `"FRSab"`.
    pub fn letters(self) -> String {
        let system = SYSTEM_LETTERS
            .iter()
            .zip(SYSTEM_SHIFT..)
            .filter(|&(_, bit)| self.0 & (1 << bit) != 0)
            .map(|(&l, _)| char::from(l));
        let keywords = self.keyword_indexes().map(|i| char::from(b'a' + i));
        system.chain(keywords).collect()
    }

    /// Returns true if every flag of `other` is set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Returns the flags set in either `self` or `other`.
    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// Returns the flags set in `self` but not in `other`, which is how a
    /// rename turns into "flags added" and "flags removed".
    pub const fn difference(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }

    /// Returns the flags set in both `self` and `other`.
    pub const fn intersection(self, other: Flags) -> Flags {
        Flags(self.0 & other.0)
    }

    /// Returns true if no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Returns the flag of keyword letter `index` (0 is `a`).
    ///
    /// An index of 26 or more has no letter, so it gives the empty set rather
    /// than a bit that would collide with a system flag.
    pub const fn keyword(index: u8) -> Flags {
        if index < KEYWORD_COUNT {
            Flags(1 << index)
        } else {
            Flags(0)
        }
    }

    /// Returns the indexes of the set keyword letters in ascending order,
    /// ready to be looked up in `dovecot-keywords`.
    pub fn keyword_indexes(self) -> impl Iterator<Item = u8> {
        (0..KEYWORD_COUNT).filter(move |&i| self.0 & (1 << i) != 0)
    }

    /// The IMAP system flag names of the set bits, in the order \Seen
    /// \Answered \Flagged \Deleted \Draft (S R F T D); P has no IMAP name and
    /// is skipped.
    ///
    /// The order is Dovecot's own order of `enum mail_flags`, so reported
    /// flag lists look like what an IMAP client sees from Dovecot.
    pub fn system_names(self) -> Vec<&'static str> {
        [
            (Flags::SEEN, "\\Seen"),
            (Flags::REPLIED, "\\Answered"),
            (Flags::FLAGGED, "\\Flagged"),
            (Flags::TRASHED, "\\Deleted"),
            (Flags::DRAFT, "\\Draft"),
        ]
        .into_iter()
        .filter(|&(flag, _)| self.contains(flag))
        .map(|(_, name)| name)
        .collect()
    }

    /// Returns the flags without `P`.
    ///
    /// `P` is kept on disk but never reported: IMAP has no such flag, so a
    /// rename that only adds or removes `P` is not an IMAP flag change.
    pub const fn without_passed(self) -> Flags {
        self.difference(Flags::PASSED)
    }
}

/// A parsed Maildir message file name.
///
/// It borrows from the name it was parsed from, so parsing every entry of a
/// large `cur/` directory allocates nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageName<'a> {
    /// Everything before the FIRST info separator: the identity of the
    /// message, which stays the same across flag changes and the move from
    /// `new/` to `cur/`.
    pub base: &'a [u8],
    /// Everything after the first separator, e.g. `b"2,FS"` or `b"1,xyz"`;
    /// `None` if the name has no separator (a fresh delivery to `new/`).
    pub info: Option<&'a [u8]>,
    /// The flags of a `2,` info: its letters up to the next `,` (Dovecot keeps
    /// non-standard fields after a second comma). A `1,` info gives no flags.
    pub flags: Flags,
    /// The `,S=<n>` field of the base name: the physical size in bytes.
    pub size: Option<u64>,
    /// The `,W=<n>` field of the base name: the size with CRLF line endings,
    /// which is what IMAP reports as `RFC822.SIZE`.
    pub vsize: Option<u64>,
}

/// Parses a name found in new/ or cur/. `sep` is the info separator (b':' by
/// default; b';' or b'!' on some systems).
///
/// Returns None for names that are not messages: empty, starting with '.', or
/// with an empty base (name starting with sep). Dot files are skipped by every
/// Maildir reader, and Dovecot renames a name with an empty base instead of
/// using it, so such a name is never a message with an identity.
///
/// The flags come from the info after the *last* separator, as in Dovecot's
/// `maildir_filename_flags_get()` (it uses `strrchr`), while the base name
/// ends at the *first* one, as in `maildir_filename_base_cmp()`. The two only
/// differ for names with several separators, which some broken clients
/// produce by appending `:2,…` to a name that already had an info part.
pub fn parse(name: &[u8], sep: u8) -> Option<MessageName<'_>> {
    match name.first() {
        None | Some(b'.') => return None,
        Some(&first) if first == sep => return None,
        Some(_) => {}
    }
    let mut parts = name.splitn(2, |&b| b == sep);
    let base = parts.next().unwrap_or_default();
    let info = parts.next();
    let flags = info
        .and_then(|_| name.rsplit(|&b| b == sep).next())
        .and_then(|last| last.strip_prefix(b"2,"))
        .and_then(|letters| letters.split(|&b| b == b',').next())
        .map_or(Flags::default(), Flags::from_letters);
    Some(MessageName {
        base,
        info,
        flags,
        size: size_field(base, b'S'),
        vsize: size_field(base, b'W'),
    })
}

/// The `S=` and `W=` fields of a base name (see [`MessageName::size`]).
pub fn size_fields(base: &[u8]) -> (Option<u64>, Option<u64>) {
    (size_field(base, b'S'), size_field(base, b'W'))
}

/// Reads the `,<key>=<digits>` field of a base name.
///
/// Like Dovecot's `maildir_filename_get_size()`, only the first `,<key>=` in
/// the name counts, and its digits must be followed by `,`, or by the end of
/// the base name (where the separator was); otherwise the field is absent.
/// Two choices are stricter than Dovecot, which would report a size of 0 or
/// a wrapped-around number: no digits and too many digits both mean absent.
fn size_field(base: &[u8], key: u8) -> Option<u64> {
    let start = base.windows(3).position(|w| w == [b',', key, b'='])?;
    let value = base.get(start + 3..)?;
    let (digits, after) = value.split_at(leading_digits(value));
    if digits.is_empty() || !matches!(after.first(), None | Some(b',')) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Returns how many ASCII digits `bytes` starts with.
fn leading_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// Compares two BASE names the way Dovecot orders new files when it assigns
/// them UIDs.
///
/// Files that have no UID yet are numbered in this order, so a watcher that
/// has to predict UIDs (or just wants to report new mail in the order an IMAP
/// client will see it) must use the same order. This follows
/// `maildir_filename_sort_cmp()` in dovecot/core
/// `src/lib-storage/index/maildir/maildir-filename.c`, which
/// `maildir_assign_uid_cmp()` in `maildir-uidlist.c` uses:
///
/// 1. The leading decimal digits (the delivery time in seconds) compare as
///    numbers; a name without leading digits counts as 0.
/// 2. If the seconds are equal and *both* names continue with `.`, Dovecot
///    looks in the part up to the next `.` for the first `M` and reads the
///    decimal digits after it as microseconds. This finds the `M<usec>` of
///    Dovecot (`.M364837P9451.`), Courier (`.M12P345V….`) and Postfix
///    (`.Vfe04I16e1M435392.`) names alike. If both have it, they compare as
///    numbers.
/// 3. Otherwise, or if they are still equal, the rest of the names after the
///    seconds compare byte by byte.
///
/// Three details differ from the C code, none of them for names that real
/// software writes: numbers compare exactly at any length instead of
/// overflowing, bytes compare as unsigned (C `char` is signed on x86 and
/// unsigned on ARM), and names that Dovecot considers equal (only possible
/// when the seconds differ in leading zeros) are finally ordered by the whole
/// name so that the order is total.
pub fn dovecot_order(a: &[u8], b: &[u8]) -> Ordering {
    OrderKey::of(a).cmp_dovecot(&OrderKey::of(b))
}

/// A name cut into what [`dovecot_order`] compares, so sorting a folder of
/// a million names parses each name once instead of at every comparison
/// (that parsing was a third of a large folder's scan).
///
/// Offsets rather than slices keep it at 32 bytes: a million of them are
/// held during the sort.
#[derive(Clone, Copy, Debug)]
pub struct OrderKey<'a> {
    whole: &'a [u8],
    /// The leading seconds without leading zeros: `whole[secs.0..secs.1]`;
    /// what follows the seconds starts at `secs.1`.
    secs: (u32, u32),
    /// The microseconds after `M` without leading zeros, if any
    /// (`u32::MAX` as the start for none).
    usecs: (u32, u32),
}

impl<'a> OrderKey<'a> {
    pub fn of(name: &'a [u8]) -> OrderKey<'a> {
        let digits = leading_digits(name);
        let (secs, rest) = name.split_at(digits);
        let at = |s: &[u8]| (s.as_ptr() as usize - name.as_ptr() as usize) as u32;
        let secs = strip_zeros(secs);
        let secs_from = if secs.is_empty() {
            digits as u32
        } else {
            at(secs)
        };
        let usecs = match usecs(rest).map(strip_zeros) {
            Some([]) => (0, 0),
            Some(u) => (at(u), at(u) + u.len() as u32),
            None => (u32::MAX, 0),
        };
        OrderKey {
            whole: name,
            secs: (secs_from, digits as u32),
            usecs,
        }
    }

    fn part(&self, (from, to): (u32, u32)) -> &'a [u8] {
        &self.whole[from as usize..to as usize]
    }

    /// [`dovecot_order`] of the two names.
    pub fn cmp_dovecot(&self, other: &OrderKey) -> Ordering {
        let decimal = |x: &[u8], y: &[u8]| x.len().cmp(&y.len()).then_with(|| x.cmp(y));
        let usecs = |k: &OrderKey<'a>| (k.usecs.0 != u32::MAX).then(|| k.part(k.usecs));
        decimal(self.part(self.secs), other.part(other.secs))
            .then_with(|| match (usecs(self), other.usecs.0 != u32::MAX) {
                (Some(x), true) => decimal(x, other.part(other.usecs)),
                _ => Ordering::Equal,
            })
            .then_with(|| {
                self.whole[self.secs.1 as usize..].cmp(&other.whole[other.secs.1 as usize..])
            })
            .then_with(|| self.whole.cmp(other.whole))
    }
}

/// Sorts base names in [`dovecot_order`], parsing each once.
pub fn sort_dovecot<'a, T: AsRef<[u8]> + ?Sized>(names: &mut Vec<&'a T>) {
    let mut keyed: Vec<(OrderKey<'a>, &'a T)> = names
        .iter()
        .map(|&n| (OrderKey::of(n.as_ref()), n))
        .collect();
    keyed.sort_by(|a, b| a.0.cmp_dovecot(&b.0));
    names.clear();
    names.extend(keyed.into_iter().map(|(_, n)| n));
}

/// Sorts items by their names in [`dovecot_order`], parsing each name
/// once (a folder's messages by index, say). What is kept of each parse
/// during the sort is 4 bytes (offsets into names of at most 255 bytes,
/// as every Linux file name is), not an [`OrderKey`]'s 32: a million
/// messages to number sort in 16 MB beside them, not 40.
pub fn sort_dovecot_by<'a, T: Copy>(items: &mut [T], name: impl Fn(&T) -> &'a [u8]) {
    let short = |t: &T| ShortKey::of(&OrderKey::of(name(t)));
    if items.iter().all(|t| name(t).len() <= usize::from(u8::MAX)) {
        let mut keyed: Vec<(ShortKey, T)> = items.iter().map(|t| (short(t), *t)).collect();
        // The order is total (equal only for equal names): no scratch
        // space for a stable sort is needed.
        keyed.sort_unstable_by(|a, b| a.0.key(name(&a.1)).cmp_dovecot(&b.0.key(name(&b.1))));
        for (slot, (_, t)) in items.iter_mut().zip(keyed) {
            *slot = t;
        }
    } else {
        let mut keyed: Vec<(OrderKey<'a>, T)> =
            items.iter().map(|t| (OrderKey::of(name(t)), *t)).collect();
        keyed.sort_unstable_by(|a, b| a.0.cmp_dovecot(&b.0));
        for (slot, (_, t)) in items.iter_mut().zip(keyed) {
            *slot = t;
        }
    }
}

/// An [`OrderKey`] without its name, for names of at most 255 bytes.
#[derive(Clone, Copy, Debug)]
struct ShortKey {
    secs: (u8, u8),
    /// `(u8::MAX, 0)` for none.
    usecs: (u8, u8),
}

impl ShortKey {
    fn of(k: &OrderKey) -> ShortKey {
        let b = |n: u32| n as u8;
        ShortKey {
            secs: (b(k.secs.0), b(k.secs.1)),
            usecs: if k.usecs.0 == u32::MAX {
                (u8::MAX, 0)
            } else {
                (b(k.usecs.0), b(k.usecs.1))
            },
        }
    }

    fn key<'a>(&self, whole: &'a [u8]) -> OrderKey<'a> {
        let w = |n: u8| u32::from(n);
        OrderKey {
            whole,
            secs: (w(self.secs.0), w(self.secs.1)),
            usecs: if self.usecs == (u8::MAX, 0) {
                (u32::MAX, 0)
            } else {
                (w(self.usecs.0), w(self.usecs.1))
            },
        }
    }
}

/// Finds the microseconds in what follows the seconds of a name, as
/// Dovecot's `maildir_fname_get_usecs()` does: the rest must start with `.`,
/// and the first `M` before the next `.` (or `:`) starts the digits. An `M`
/// without digits counts as 0, which the empty slice gives in
/// [`cmp_decimal`].
fn usecs(rest: &[u8]) -> Option<&[u8]> {
    let unique = rest.strip_prefix(b".")?;
    let unique = unique
        .split(|&b| b == b'.' || b == b':')
        .next()
        .unwrap_or_default();
    let m = unique.iter().position(|&b| b == b'M')?;
    let after = unique.get(m + 1..).unwrap_or_default();
    Some(after.split_at(leading_digits(after)).0)
}

/// Drops leading `0` digits, so that the length of the rest is the magnitude.
fn strip_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&b| b == b'0').count();
    digits.get(zeros..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    /// (name, separator, base, info, flag letters, S=, W=)
    type NameRow = (
        &'static [u8],
        u8,
        &'static [u8],
        Option<&'static [u8]>,
        &'static str,
        Option<u64>,
        Option<u64>,
    );

    #[rustfmt::skip]
    const NAMES: &[NameRow] = &[
        // Dovecot: delivery to new/ (no info), after SELECT, after a read, with keyword b ($NonJunk).
        (b"1276528487.M364837P9451.kurkku,S=1355,W=1394", b':',
         b"1276528487.M364837P9451.kurkku,S=1355,W=1394", None, "", Some(1355), Some(1394)),
        (b"1700000001.M1P2.host,S=10,W=11:2,", b':',
         b"1700000001.M1P2.host,S=10,W=11", Some(b"2,"), "", Some(10), Some(11)),
        (b"1276528487.M364837P9451.kurkku,S=1355,W=1394:2,S", b':',
         b"1276528487.M364837P9451.kurkku,S=1355,W=1394", Some(b"2,S"), "S", Some(1355), Some(1394)),
        (b"1276528487.M364837P9451.kurkku,S=4542,W=4642:2,Sb", b':',
         b"1276528487.M364837P9451.kurkku,S=4542,W=4642", Some(b"2,Sb"), "Sb", Some(4542), Some(4642)),
        // Dovecot keeps non-standard fields after a second comma.
        (b"1700000001.M1P2.host,S=10,W=11:2,FSa,XYZ", b':',
         b"1700000001.M1P2.host,S=10,W=11", Some(b"2,FSa,XYZ"), "FSa", Some(10), Some(11)),
        // Postfix local(8): no sizes, dots in the host name.
        (b"1137764424.Vfe04I16e1M435392.mx.example.org", b':',
         b"1137764424.Vfe04I16e1M435392.mx.example.org", None, "", None, None),
        // Courier: S= only.
        (b"1700000000.M12P345V0000000000000803I00000000001F2A3B_0.host,S=2872:2,RS", b':',
         b"1700000000.M12P345V0000000000000803I00000000001F2A3B_0.host,S=2872", Some(b"2,RS"), "RS", Some(2872), None),
        // NeoMutt: R<random>; an unread flagged message may stay in new/ with ":2,F".
        (b"1700000000.R9876543210123456789.laptop:2,F", b':',
         b"1700000000.R9876543210123456789.laptop", Some(b"2,F"), "F", None, None),
        // Mutt: <pid>_<counter>, passed (bounced) and seen.
        (b"1700000000.4242_3.laptop:2,PS", b':',
         b"1700000000.4242_3.laptop", Some(b"2,PS"), "PS", None, None),
        // mbsync: its own ,U= field; every system flag; ';' on Windows/Cygwin.
        (b"1700000000.4242_1.laptop,U=42:2,DFPRST", b':',
         b"1700000000.4242_1.laptop,U=42", Some(b"2,DFPRST"), "DFPRST", None, None),
        (b"1700000000.4242_1.laptop,U=42;2,S", b';',
         b"1700000000.4242_1.laptop,U=42", Some(b"2,S"), "S", None, None),
        // offlineimap: ,U= and ,FMD5=; '!' with maildir-windows-compatible.
        (b"1700000000_0.4242.laptop,U=7,FMD5=7e33429f656f1e6e9d79b29c3f82c57e:2,RS", b':',
         b"1700000000_0.4242.laptop,U=7,FMD5=7e33429f656f1e6e9d79b29c3f82c57e", Some(b"2,RS"), "RS", None, None),
        (b"1700000000_0.4242.laptop,U=7,FMD5=7e33429f656f1e6e9d79b29c3f82c57e!2,S", b'!',
         b"1700000000_0.4242.laptop,U=7,FMD5=7e33429f656f1e6e9d79b29c3f82c57e", Some(b"2,S"), "S", None, None),
        // Experimental ":1,": no flags. Unknown letters and digits: ignored.
        (b"1700000001.M1P2.host:1,xyz", b':',
         b"1700000001.M1P2.host", Some(b"1,xyz"), "", None, None),
        (b"1700000001.M1P2.host:2,ABFGS9z", b':',
         b"1700000001.M1P2.host", Some(b"2,ABFGS9z"), "FSz", None, None),
        // A separator at the end: empty info.
        (b"1700000001.M1P2.host:", b':',
         b"1700000001.M1P2.host", Some(b""), "", None, None),
        // Several separators: the base ends at the first, the flags follow the last.
        (b"1700000001.M1P2.host:1,old:2,RS", b':',
         b"1700000001.M1P2.host", Some(b"1,old:2,RS"), "RS", None, None),
        (b"1700000001.M1P2.host:2,S:1,x", b':',
         b"1700000001.M1P2.host", Some(b"2,S:1,x"), "", None, None),
        // With ';' as separator a ':' belongs to the base name.
        (b"1700000001.M1P2.host:x,S=5;2,T", b';',
         b"1700000001.M1P2.host:x,S=5", Some(b"2,T"), "T", Some(5), None),
        // Non-UTF-8 and qmail-escaped ("\057" is '/', "\072" is ':') host names.
        (b"1700000001.M1P2.h\xf6st,S=3:2,S", b':',
         b"1700000001.M1P2.h\xf6st,S=3", Some(b"2,S"), "S", Some(3), None),
        (b"1700000001.M1P2.a\\057b\\072c:2,R", b':',
         b"1700000001.M1P2.a\\057b\\072c", Some(b"2,R"), "R", None, None),
        // A name starting with ':' is a message when ':' is not the separator.
        (b":2,S", b';', b":2,S", None, "", None, None),
    ];

    #[test]
    fn parse_real_world_names() {
        for &(name, sep, base, info, letters, size, vsize) in NAMES {
            let flags = Flags::from_letters(letters.as_bytes());
            let want = MessageName {
                base,
                info,
                flags,
                size,
                vsize,
            };
            assert_eq!(parse(name, sep), Some(want), "{}", show(name));
        }
    }

    #[test]
    fn parse_rejects_non_messages() {
        #[rustfmt::skip]
        let rows: &[(&[u8], u8)] = &[
            (b"", b':'), (b".", b':'), (b"..", b':'), (b".nfs0000000000123456", b':'),
            (b".1700000001.M1P2.host:2,S", b':'), (b":2,S", b':'), (b":", b':'),
            (b";2,S", b';'), (b"!2,S", b'!'),
        ];
        for &(name, sep) in rows {
            assert_eq!(parse(name, sep), None, "{}", show(name));
        }
    }

    #[test]
    fn size_fields() {
        #[rustfmt::skip]
        let rows: &[(&[u8], Option<u64>, Option<u64>)] = &[
            (b"1.M1P1.h,S=1355,W=1394", Some(1355), Some(1394)),
            (b"1.M1P1.h,W=1394,S=1355", Some(1355), Some(1394)),
            (b"1.M1P1.h,S=0", Some(0), None),
            (b"1.M1P1.h,S=12,U=3", Some(12), None),
            (b"1.M1P1.h,S=12:2,S", Some(12), None),
            (b"1.M1P1.h,S=12x", None, None),
            (b"1.M1P1.h,S=", None, None),
            (b"1.M1P1.h,S=,W=5", None, Some(5)),
            (b"1.M1P1.h,S=-1", None, None),
            (b"1.M1P1.h,S=18446744073709551615", Some(u64::MAX), None),
            (b"1.M1P1.h,S=18446744073709551616", None, None),
            // Only the first ",S=" counts, as in Dovecot.
            (b"1.M1P1.h,S=x,S=5", None, None),
            // Not a field: no comma before the key, lower case, or after the separator.
            (b"1.M1P1.hS=5", None, None),
            (b"1.M1P1.h,s=5,w=6", None, None),
            (b"1.M1P1.h:2,S=5", None, None),
            (b",S=7", Some(7), None),
        ];
        for &(name, size, vsize) in rows {
            let parsed = parse(name, b':').expect("a message name");
            assert_eq!((parsed.size, parsed.vsize), (size, vsize), "{}", show(name));
        }
    }

    #[test]
    fn flag_letters_round_trip() {
        #[rustfmt::skip]
        let rows: &[(&[u8], &str)] = &[
            (b"", ""), (b"S", "S"), (b"SRF", "FRS"), (b"TSRPFD", "DFPRST"), (b"ba", "ab"),
            (b"zaSF", "FSaz"), (b"SS", "S"), (b"0123456789.,:;!", ""),
            (b"ABCEGHIJKLMNOQUVWXYZ", ""), (b"\xff\x00S", "S"),
        ];
        for &(letters, want) in rows {
            let flags = Flags::from_letters(letters);
            assert_eq!(flags.letters(), want, "{}", show(letters));
            assert_eq!(Flags::from_letters(want.as_bytes()), flags);
        }
        assert_eq!(
            Flags(u32::MAX).letters(),
            "DFPRSTabcdefghijklmnopqrstuvwxyz"
        );
    }

    #[test]
    fn flag_set_operations() {
        let f = Flags::from_letters;
        assert!(f(b"FRS").contains(Flags::SEEN));
        assert!(f(b"FRS").contains(f(b"FS")));
        assert!(!f(b"FRS").contains(Flags::TRASHED));
        assert!(f(b"FRS").contains(Flags::default()));
        assert_eq!(f(b"FRS").difference(f(b"ST")), f(b"FR"));
        assert_eq!(f(b"FRS").intersection(f(b"ST")), Flags::SEEN);
        assert_eq!(f(b"FRS").union(Flags::TRASHED), f(b"FRST"));
        assert!(Flags::default().is_empty());
        assert!(!Flags::SEEN.is_empty());
        assert_eq!(f(b"PSa").without_passed(), f(b"Sa"));
        assert_eq!(Flags::PASSED.without_passed(), Flags::default());
        let system = [
            Flags::DRAFT,
            Flags::FLAGGED,
            Flags::PASSED,
            Flags::REPLIED,
            Flags::SEEN,
        ];
        assert_eq!(system.map(Flags::letters), ["D", "F", "P", "R", "S"]);
        assert_eq!(Flags::TRASHED.letters(), "T");
    }

    #[test]
    fn keywords_by_index() {
        assert_eq!(Flags::keyword(0), Flags::from_letters(b"a"));
        assert_eq!(Flags::keyword(25), Flags::from_letters(b"z"));
        assert_eq!(Flags::keyword(26), Flags::default());
        assert_eq!(Flags::keyword(255), Flags::default());
        #[rustfmt::skip]
        let rows: &[(&[u8], &[u8])] = &[
            (b"", &[]), (b"DFPRST", &[]), (b"a", &[0]), (b"zbaS", &[0, 1, 25]),
        ];
        for &(letters, want) in rows {
            let got: Vec<u8> = Flags::from_letters(letters).keyword_indexes().collect();
            assert_eq!(got, want, "{}", show(letters));
        }
        let all: Vec<u8> = Flags(u32::MAX).keyword_indexes().collect();
        assert_eq!(all, (0..26).collect::<Vec<u8>>());
    }

    #[test]
    fn system_flag_names() {
        #[rustfmt::skip]
        let rows: &[(&[u8], &[&str])] = &[
            (b"", &[]),
            (b"Pab", &[]),
            (b"S", &["\\Seen"]),
            (b"FRS", &["\\Seen", "\\Answered", "\\Flagged"]),
            (b"DT", &["\\Deleted", "\\Draft"]),
            (b"DFPRST", &["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"]),
        ];
        for &(letters, want) in rows {
            assert_eq!(
                Flags::from_letters(letters).system_names(),
                want,
                "{}",
                show(letters)
            );
        }
    }

    #[test]
    fn dovecot_order_pairs() {
        use Ordering::{Equal, Greater, Less};
        #[rustfmt::skip]
        let rows: &[(&[u8], &[u8], Ordering)] = &[
            // Seconds compare as numbers, not as text.
            (b"999999999.M1P1.host", b"1000000000.M1P1.host", Less),
            (b"1700000001.M0P1.host", b"1700000000.M999P1.host", Greater),
            // Equal seconds: microseconds as numbers (Dovecot, Postfix, Courier).
            (b"1276528487.M99P9451.kurkku", b"1276528487.M364837P9451.kurkku", Less),
            (b"1137764424.Vfe04I16e1M435392.mx.example.org", b"1137764424.Vfe04I16e2M1.mx.example.org", Greater),
            (b"1700000000.M12P345V0000000000000803I00000000001F2A3B_0.host",
             b"1700000000.M9P999V0000000000000803I00000000001F2A3B_0.host", Greater),
            // Equal microseconds: the rest of the name, byte by byte.
            (b"1700000000.M5P100.host", b"1700000000.M5P99.host", Less),
            // Only one has microseconds: plain bytes ('4' < 'M').
            (b"1700000000.M1P2.host", b"1700000000.4242_1.laptop", Greater),
            // Neither has them: mutt/mbsync, offlineimap ('_' after the seconds), NeoMutt.
            (b"1700000000.4242_2.laptop", b"1700000000.4242_10.laptop", Greater),
            (b"1700000000_1.9.h", b"1700000000_0.9.h", Greater),
            (b"1700000000.R5.h", b"1700000000.R10.h", Greater),
            // An M after the unique part (in the host name) is not looked at.
            (b"1700000000.P2.M1", b"1700000000.P1.M9", Greater),
            // "M" without digits counts as 0.
            (b"1700000000.MP1.h", b"1700000000.M0P0.h", Greater),
            (b"1700000000.MP1.h", b"1700000000.M1P0.h", Less),
            // No leading digits: seconds are 0.
            (b"abc", b"abd", Less),
            (b"host.M5", b"host.M1", Greater),
            (b"x", b"1.x", Less),
            (b"", b"", Equal),
            (b"", b"0", Less),
            // Leading zeros: equal seconds, Dovecot compares what follows; then the whole name.
            (b"0123.b", b"123.a", Greater),
            (b"0123.a", b"123.a", Less),
            // Huge numbers do not overflow.
            (b"99999999999999999999999.a", b"1.a", Greater),
            (b"1.M99999999999999999999999P1.h", b"1.M100000000000000000000000P1.h", Less),
            // Identical names; non-ASCII bytes compare as unsigned.
            (b"1700000000.M1P2.host", b"1700000000.M1P2.host", Equal),
            (b"1.x\xff", b"1.x\x01", Greater),
        ];
        for &(a, b, want) in rows {
            assert_eq!(dovecot_order(a, b), want, "{} vs {}", show(a), show(b));
            assert_eq!(
                dovecot_order(b, a),
                want.reverse(),
                "{} vs {}",
                show(b),
                show(a)
            );
        }
    }

    #[test]
    fn sort_dovecot_by_agrees_with_dovecot_order() {
        let long = format!("{}.M1P1.{}", "7".repeat(10), "h".repeat(300));
        let names: Vec<&[u8]> = vec![
            b"1700000002.M10P1.h",
            b"1700000002.M5P1.h",
            b"1700000001.M9P1.h",
            b"01700000001.M9P1.h",
            b"x",
            b"",
            b"1700000002.Vfe04I16e1M435392.mx",
            b"1700000002.M.h",
            b"1700000002",
        ];
        for extra in [None, Some(long.as_bytes())] {
            let mut all = names.clone();
            all.extend(extra);
            let mut want = all.clone();
            want.sort_by(|a, b| dovecot_order(a, b));
            let mut idx: Vec<usize> = (0..all.len()).collect();
            sort_dovecot_by(&mut idx, |i| all[*i]);
            let got: Vec<&[u8]> = idx.iter().map(|i| all[*i]).collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn sort_dovecot_is_sort_by_dovecot_order() {
        let names: Vec<Vec<u8>> = [
            "1600000000.M5P1.h",
            "1600000000.M10P1.h",
            "999.M1P1.h",
            "1600000000.P2.h",
            "01600000000.M5P1.h",
            "1600000000.M5P1.h:2,S",
            "x",
            "",
            "1600000001.M0P1.h",
            "1600000000.M.h",
            "1600000000.M05P1.h",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        let mut want = names.clone();
        want.sort_by(|a, b| {
            let (sa, ra) = a.split_at(leading_digits(a));
            let (sb, rb) = b.split_at(leading_digits(b));
            let dec = |x: &[u8], y: &[u8]| {
                let (x, y) = (strip_zeros(x), strip_zeros(y));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            };
            dec(sa, sb)
                .then_with(|| match (usecs(ra), usecs(rb)) {
                    (Some(x), Some(y)) => dec(x, y),
                    _ => Ordering::Equal,
                })
                .then_with(|| ra.cmp(rb))
                .then_with(|| a.cmp(b))
        });
        let mut sorted: Vec<&Vec<u8>> = names.iter().collect();
        sort_dovecot(&mut sorted);
        assert_eq!(sorted, want.iter().collect::<Vec<_>>());
    }

    #[test]
    fn dovecot_order_sorts_a_directory() {
        let mut names: Vec<&[u8]> = vec![
            b"1700000001.M2P1.host",
            b"1700000000.4242_1.laptop",
            b"1700000000.M10P1.host",
            b"999999999.M1P1.host",
            b"1700000000.M9P1.host",
        ];
        names.sort_by(|a, b| dovecot_order(a, b));
        let want: Vec<&[u8]> = vec![
            b"999999999.M1P1.host",
            b"1700000000.4242_1.laptop",
            b"1700000000.M9P1.host",
            b"1700000000.M10P1.host",
            b"1700000001.M2P1.host",
        ];
        assert_eq!(names, want);
    }

    #[test]
    fn no_panic_on_any_short_name() {
        let alphabet: &[u8] = b".:;,2SW=M0a\xff";
        for &a in alphabet {
            for &b in alphabet {
                for &c in alphabet {
                    for &d in alphabet {
                        let name = [a, b, c, d];
                        for len in 0..=name.len() {
                            let n = name.get(..len).unwrap_or_default();
                            let _ = parse(n, b':');
                            let _ = parse(n, b';');
                            let _ = dovecot_order(n, b"1.M1");
                        }
                    }
                }
            }
        }
    }
}
