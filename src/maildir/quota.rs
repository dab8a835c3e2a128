//! The Maildir++ `maildirsize` file (Courier's quota file, which Dovecot's
//! maildir quota backend keeps too).
//!
//! Line 1 is the quota definition, a comma-separated list of
//! `<integer><type>` items (`S` bytes, `C` messages); `0S` means "no
//! limit". Every later line holds a byte delta and a count delta. Courier
//! pads the numbers, Dovecot does not, so the numbers are read loosely. We
//! only ever read it: usage is computed from the directory, and the file is
//! the server's.

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
}

/// Parses the file. Only a missing or unreadable definition line is an
/// error; bad delta lines are skipped (a half-appended last line is normal).
pub fn parse(text: &[u8]) -> Result<Maildirsize, String> {
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
            .map_err(|_| format!("line 1: {item:?} is not <number>S or <number>C"))?;
        let limit = (value > 0).then_some(value);
        match kind {
            'S' => out.storage = limit,
            'C' => out.messages = limit,
            // Other types exist in the wild; they do not limit what we count.
            _ => {}
        }
    }
    for line in lines {
        let mut nums = line.split_whitespace().map(str::parse::<i64>);
        if let (Some(Ok(b)), Some(Ok(c)), None) = (nums.next(), nums.next(), nums.next()) {
            out.bytes = out.bytes.saturating_add(b);
            out.count = out.count.saturating_add(c);
        }
    }
    Ok(out)
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
        for text in ["", "\n1 1\n", "lots\n", "12Q3S\n"] {
            assert!(parse(text.as_bytes()).is_err(), "{text:?}");
        }
    }
}
