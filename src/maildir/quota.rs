//! The Maildir++ `maildirsize` file (Courier's quota file, which Dovecot's
//! maildir quota backend keeps too).
//!
//! Line 1 is the quota definition, a comma-separated list of
//! `<integer><type>` items (`S` bytes, `C` messages); `0S` means "no
//! limit". Every later line holds a byte delta and a count delta. Courier
//! pads the numbers, Dovecot does not, so the numbers are read loosely. We
//! only ever read it: usage is computed from the directory, and the file is
//! the server's.
//!
//! The file is written by the mailbox's user, so it may hold anything. As
//! in Dovecot's `maildirsize_read()` (dovecot/core
//! `src/plugins/quota/quota-maildir.c`), a NUL byte makes the whole file
//! unusable, and limits of 2^63 or more are cut to 2^63 - 1. A delta line
//! that is not two numbers is skipped and counted in
//! [`Maildirsize::bad_lines`] (no per-line warning), and an error names at
//! most [`SHOW_MAX`] bytes of the line, so a file of junk gives one short
//! message.

/// The largest limit: Dovecot keeps limits in a signed 64-bit integer.
const LIMIT_MAX: u64 = i64::MAX as u64;

/// How many bytes of a bad definition item an error shows before `…`.
pub const SHOW_MAX: usize = 64;

/// What `maildirsize` says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Maildirsize {
    /// Storage limit in bytes; `None` when absent or 0.
    pub storage: Option<u64>,
    /// Message count limit; `None` when absent or 0.
    pub messages: Option<u64>,
    /// The sum of the byte deltas (the server's idea of usage).
    pub bytes: i64,
    /// The sum of the count deltas.
    pub count: i64,
    /// Delta lines that are not two whole numbers (a half-appended last
    /// line included); they add nothing to the sums.
    pub bad_lines: usize,
}

/// Parses the file. Only a missing or unreadable definition line, or a
/// NUL byte anywhere, is an error; bad delta lines are skipped and counted
/// (a half-appended last line is normal).
pub fn parse(text: &[u8]) -> Result<Maildirsize, String> {
    if text.contains(&0) {
        return Err("holds a NUL byte: not a maildirsize file".into());
    }
    let text = String::from_utf8_lossy(text);
    let mut lines = text.split('\n');
    let def = lines.next().unwrap_or("").trim();
    if def.is_empty() {
        return Err("empty: no quota definition on line 1".into());
    }
    let mut out = Maildirsize::default();
    for item in def.split(',') {
        let item = item.trim();
        let Some(kind) = item.chars().last() else {
            continue;
        };
        let value: u64 = item[..item.len() - kind.len_utf8()]
            .trim()
            .parse()
            .map_err(|_| format!("line 1: {:?} is not <number>S or <number>C", show(item)))?;
        let limit = (value > 0).then_some(value.min(LIMIT_MAX));
        match kind {
            'S' => out.storage = limit,
            'C' => out.messages = limit,
            // Other types exist in the wild; they do not limit what we count.
            _ => {}
        }
    }
    for line in lines {
        let mut nums = line.split_whitespace().map(str::parse::<i64>);
        match (nums.next(), nums.next(), nums.next()) {
            (Some(Ok(b)), Some(Ok(c)), None) => {
                out.bytes = out.bytes.saturating_add(b);
                out.count = out.count.saturating_add(c);
            }
            (None, _, _) => {}
            _ => out.bad_lines += 1,
        }
    }
    Ok(out)
}

/// Cuts `item` after [`SHOW_MAX`] bytes (at a character boundary).
fn show(item: &str) -> String {
    if item.len() <= SHOW_MAX {
        return item.to_string();
    }
    let mut end = SHOW_MAX;
    while !item.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &item[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn courier_and_dovecot_files() {
        // (file, storage limit, count limit, byte sum, count sum)
        type Case<'a> = (&'a str, Option<u64>, Option<u64>, i64, i64);
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("10000000S,1000C\n      2872            1\n     -2872           -1\n", Some(10_000_000), Some(1000), 0, 0),
            ("1073741824S\n123456 10\n100 1\n", Some(1 << 30), None, 123_556, 11),
            ("0S\n5 1\n", None, None, 5, 1),
            ("500C\n", None, Some(500), 0, 0),
            ("1000S,10C\n12 1\n13", Some(1000), Some(10), 12, 1),
            ("1000S\r\n7 1\r\n", Some(1000), None, 7, 1),
            ("100S,5C,3X\nnot numbers\n1 2 3\n", Some(100), Some(5), 0, 0),
        ];
        for (text, storage, messages, bytes, count) in cases {
            let m = parse(text.as_bytes()).unwrap();
            assert_eq!(
                (m.storage, m.messages, m.bytes, m.count),
                (*storage, *messages, *bytes, *count),
                "{text:?}"
            );
        }
    }

    #[test]
    fn broken_definitions_are_errors() {
        for text in ["", "\n1 1\n", "lots\n", "12Q3S\n", "100S\n1 1\n\0\n"] {
            assert!(parse(text.as_bytes()).is_err(), "{text:?}");
        }
        let err = parse(format!("{}S\n", "9".repeat(100_000)).as_bytes()).unwrap_err();
        assert!(err.len() < 200, "{err}");
        // Control characters are escaped, so the bound is in characters.
        let err = parse(format!("{}S\n", "\x01".repeat(100_000)).as_bytes()).unwrap_err();
        assert!(err.len() < 64 * 10 + 100, "{err}");
        let err = parse(format!("{}éS\n", "9".repeat(63)).as_bytes()).unwrap_err();
        assert!(err.contains(&format!("{}…", "9".repeat(63))), "{err}");
    }

    #[test]
    fn absurd_values_and_junk_lines() {
        // (file, storage limit, count limit, byte sum, count sum, bad lines)
        type Case<'a> = (&'a str, Option<u64>, Option<u64>, i64, i64, usize);
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("18446744073709551615S,9223372036854775808C\n", Some(i64::MAX as u64), Some(i64::MAX as u64), 0, 0, 0),
            ("100S\n9223372036854775807 1\n9223372036854775807 1\n", Some(100), None, i64::MAX, 2, 0),
            ("100S\n-9223372036854775808 -1\n-1 -1\n", Some(100), None, i64::MIN, -2, 0),
            ("100S\nnot numbers\n1 2 3\n99999999999999999999 1\n\n   \n5 1\n7", Some(100), None, 5, 1, 4),
        ];
        for (text, storage, messages, bytes, count, bad) in cases {
            let m = parse(text.as_bytes()).unwrap();
            assert_eq!(
                (m.storage, m.messages, m.bytes, m.count, m.bad_lines),
                (*storage, *messages, *bytes, *count, *bad),
                "{text:?}"
            );
        }
        let junk = format!("100S\n{}", "junk line\n".repeat(40_000));
        assert_eq!(parse(junk.as_bytes()).unwrap().bad_lines, 40_000);
    }
}
