//! IMAP UID sets (RFC 3501 `sequence-set`, RFC 4315 `uid-set`).
//!
//! Events such as `MessageExpunge` and `FlagsSet` carry the affected UIDs as a
//! compact set like `1:5,7,9:10`. The writer produces the canonical form
//! Dovecot emits (`imap_write_seq_range()` in dovecot/core
//! `src/lib-imap/imap-util.c`): ascending, each run of consecutive UIDs as
//! `first:last`, single UIDs alone. The reader accepts any valid `uid-set`,
//! which is what consumers and tests hand back.

use std::fmt::Write;

/// The most UIDs [`parse`] expands, so that a short hostile string such as
/// `1:4294967295` cannot allocate gigabytes.
const MAX_EXPANDED: u64 = 10_000_000;

/// Formats UIDs as a canonical uid-set.
///
/// The input may be in any order and may hold duplicates. Zero is not a
/// UID (`nz-number`) and is skipped. No UIDs give the empty string, which
/// is not a valid set: callers should leave the field out instead.
pub fn format(uids: &[u32]) -> String {
    let mut sorted: Vec<u32> = uids.iter().copied().filter(|&u| u != 0).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let first = sorted[i];
        let mut last = first;
        while i + 1 < sorted.len() && last.checked_add(1) == Some(sorted[i + 1]) {
            i += 1;
            last = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        let _ = if first == last {
            write!(out, "{first}")
        } else {
            write!(out, "{first}:{last}")
        };
        i += 1;
    }
    out
}

/// Parses a uid-set into sorted, distinct UIDs.
///
/// Ranges may be written either way round (`4:2` is `2:4`) and may overlap.
/// Returns `None` for the empty string, `*` (a UID set names UIDs that
/// exist, RFC 4315), zero, numbers with leading zeros or beyond `u32`,
/// empty elements, whitespace or any other character, and for sets of more
/// than ten million UIDs, which no Maildir holds.
pub fn parse(s: &str) -> Option<Vec<u32>> {
    let mut ranges = Vec::new();
    for element in s.split(',') {
        let range = match element.split_once(':') {
            Some((a, b)) => {
                let (a, b) = (nz_number(a)?, nz_number(b)?);
                (a.min(b), a.max(b))
            }
            None => {
                let a = nz_number(element)?;
                (a, a)
            }
        };
        ranges.push(range);
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    let mut total = 0u64;
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if u64::from(lo) <= u64::from(last.1) + 1 => {
                if hi > last.1 {
                    total += u64::from(hi - last.1);
                    last.1 = hi;
                }
            }
            _ => {
                total += u64::from(hi - lo) + 1;
                merged.push((lo, hi));
            }
        }
        if total > MAX_EXPANDED {
            return None;
        }
    }
    let mut uids = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for (lo, hi) in merged {
        uids.extend(lo..=hi);
    }
    Some(uids)
}

/// Parses an RFC 3501 `nz-number`: a non-zero 32-bit number without
/// leading zeros or sign.
fn nz_number(s: &str) -> Option<u32> {
    if s.is_empty() || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let cases: &[(&[u32], &str)] = &[
            (&[], ""),
            (&[0], ""),
            (&[7], "7"),
            (&[1, 2, 3, 4, 5, 7, 9, 10], "1:5,7,9:10"),
            (&[10, 9, 7, 5, 4, 3, 2, 1, 7, 0], "1:5,7,9:10"),
            (&[1, 3, 5], "1,3,5"),
            (&[2, 3], "2:3"),
            (&[4294967294, 4294967295, 1], "1,4294967294:4294967295"),
            (&[4294967295], "4294967295"),
        ];
        for &(uids, want) in cases {
            assert_eq!(format(uids), want, "{uids:?}");
        }
    }

    #[test]
    fn parses() {
        let cases: &[(&str, Option<&[u32]>)] = &[
            ("1:5,7,9:10", Some(&[1, 2, 3, 4, 5, 7, 9, 10])),
            ("4:2", Some(&[2, 3, 4])),
            ("7", Some(&[7])),
            ("3,1,2,2", Some(&[1, 2, 3])),
            ("1:3,2:5", Some(&[1, 2, 3, 4, 5])),
            ("5:5", Some(&[5])),
            ("4294967295", Some(&[4294967295])),
            ("4294967294:4294967295", Some(&[4294967294, 4294967295])),
            ("", None),
            ("*", None),
            ("1:*", None),
            ("0", None),
            ("0:3", None),
            ("01", None),
            ("4294967296", None),
            ("1,", None),
            (",1", None),
            ("1,,2", None),
            ("1:", None),
            (":1", None),
            ("1:2:3", None),
            (" 1", None),
            ("1 ", None),
            ("+1", None),
            ("-1", None),
            ("a", None),
            ("１", None),
        ];
        for &(s, want) in cases {
            assert_eq!(parse(s).as_deref(), want, "{s:?}");
        }
    }

    #[test]
    fn expansion_is_capped() {
        assert_eq!(parse("1:10000000").map(|v| v.len()), Some(10_000_000));
        assert_eq!(parse("1:10000001"), None);
        assert_eq!(parse("1:4294967295"), None);
        assert_eq!(parse("1:5000000,5000001:10000001"), None);
        // Overlaps count once, so repeating a large range is fine.
        assert_eq!(
            parse("1:6000000,1:6000000,2:6000000").map(|v| v.len()),
            Some(6_000_000)
        );
    }

    /// `parse(format(x))` is `x` sorted and deduplicated, and `format` of
    /// that is stable, for many pseudo-random inputs.
    #[test]
    fn round_trip_property() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..2_000 {
            let len = (next() % 40) as usize;
            let spread = [4u64, 64, 1 << 20, 1 << 32][round % 4];
            let uids: Vec<u32> = (0..len).map(|_| (next() % spread) as u32).collect();
            let mut want: Vec<u32> = uids.iter().copied().filter(|&u| u != 0).collect();
            want.sort_unstable();
            want.dedup();
            let text = format(&uids);
            if want.is_empty() {
                assert_eq!(text, "");
                assert_eq!(parse(&text), None);
                continue;
            }
            assert_eq!(parse(&text).as_ref(), Some(&want), "{text}");
            assert_eq!(format(&want), text);
        }
    }
}
