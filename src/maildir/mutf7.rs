//! IMAP modified UTF-7 (RFC 3501 §5.1.3), the encoding of folder names on disk.
//!
//! Dovecot stores folder names in modified UTF-7 unless `mailbox_list_utf8`
//! is set, so `.Entw&APw-rfe` on disk is the folder `Entwürfe`. The decoder
//! here is exactly as strict as Dovecot's `imap_utf7_to_utf8()` (dovecot/core
//! `src/lib-imap/imap-utf7.c`, the version with the "bad ascii" and
//! "unnecessary" checks exercised by `test-imap-utf7.c`): a name Dovecot
//! rejects is rejected here too, and a name Dovecot accepts decodes to the
//! same string. That matters because a watcher must report the folder under
//! the very name the IMAP server shows to clients.

/// The modified base64 alphabet: RFC 2045 base64 with `,` in place of `/`.
const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Maps a byte to its 6-bit value, or `None` when it is not in [`B64`].
fn b64_value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b',' => Some(63),
        _ => None,
    }
}

/// Whether a character is printable US-ASCII, the characters that must be
/// written as themselves (`&` as `&-`) and never inside a base64 run.
fn is_printable_ascii(c: char) -> bool {
    (' '..='~').contains(&c)
}

/// Decodes a modified UTF-7 name into UTF-8.
///
/// Returns `None` for anything Dovecot would refuse, because such a name
/// has no well-defined IMAP form: a byte outside printable US-ASCII, an
/// `&` without its closing `-`, a character outside the modified base64
/// alphabet, a run that does not hold whole UTF-16 units, an unpaired
/// surrogate, an encoded NUL, an encoded printable ASCII character (which
/// must be written as itself), and two encoded runs back to back
/// (`&AOQ-&AOQ-` must be the single run `&AOQA5A-`). `&-` is a literal `&`.
///
/// Like Dovecot, the unused low bits of the last base64 character are not
/// checked, so two spellings may decode to the same name; only the one that
/// [`encode`] produces round-trips byte for byte.
pub fn decode(s: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if !(0x20..0x7f).contains(&b) {
            return None;
        }
        i += 1;
        if b != b'&' {
            out.push(char::from(b));
            continue;
        }
        if s.get(i) == Some(&b'-') {
            out.push('&');
            i += 1;
            continue;
        }
        let start = i;
        while i < s.len() && s[i] != b'-' {
            i += 1;
        }
        if i == s.len() {
            return None;
        }
        decode_run(&s[start..i], &mut out)?;
        i += 1;
        if s.get(i) == Some(&b'&') && s.get(i + 1) != Some(&b'-') {
            return None;
        }
    }
    Some(out)
}

/// Decodes the base64 between `&` and `-` as UTF-16BE and appends it.
fn decode_run(run: &[u8], out: &mut String) -> Option<()> {
    // A group of one character cannot carry a whole byte.
    if run.len() % 4 == 1 {
        return None;
    }
    let mut bytes = Vec::with_capacity(run.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in run {
        acc = (acc << 6) | u32::from(b64_value(b)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bytes.len() % 2 != 0 {
        return None;
    }
    let mut units = bytes
        .chunks_exact(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]));
    while let Some(u) = units.next() {
        let c = match u {
            0xD800..=0xDBFF => {
                let low = units.next()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return None;
                }
                let cp = 0x10000 + ((u32::from(u) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
                char::from_u32(cp)?
            }
            0xDC00..=0xDFFF => return None,
            _ => char::from_u32(u32::from(u))?,
        };
        if c == '\0' || is_printable_ascii(c) {
            return None;
        }
        out.push(c);
    }
    Some(())
}

/// Encodes a UTF-8 name into modified UTF-7, as Dovecot's
/// `imap_utf8_to_utf7()` does.
///
/// Printable ASCII other than `&` stays as it is, `&` becomes `&-`, and each
/// run of other characters (non-ASCII, but also control characters and DEL)
/// becomes one base64 run of its UTF-16BE form. A name containing NUL has no
/// valid encoding; it is still encoded, and [`decode`] rejects the result.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut units: Vec<u16> = Vec::new();
    for c in s.chars() {
        if is_printable_ascii(c) {
            flush_run(&mut units, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            units.extend_from_slice(c.encode_utf16(&mut [0; 2]));
        }
    }
    flush_run(&mut units, &mut out);
    out
}

/// Writes the pending UTF-16 units as one `&...-` run and clears them.
fn flush_run(units: &mut Vec<u16>, out: &mut String) {
    if units.is_empty() {
        return;
    }
    let bytes: Vec<u8> = units.iter().flat_map(|u| u.to_be_bytes()).collect();
    out.push('&');
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
        for k in 0..=chunk.len() {
            out.push(char::from(B64[((n >> (18 - 6 * k)) & 0x3f) as usize]));
        }
    }
    out.push('-');
    units.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pairs that must convert in both directions.
    #[test]
    fn round_trip_examples() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("INBOX", "INBOX"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("&", "&-"),
            ("&&x&&", "&-&-x&-&-"),
            ("tietäjä", "tiet&AOQ-j&AOQ-"),
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("äö", "&AOQA9g-"),
            ("ä&ö", "&AOQ-&-&APY-"),
            ("受信トレイ", "&U9dP4TDIMOwwpA-"),
            ("😀", "&2D3eAA-"),
            ("a😀b🎉", "a&2D3eAA-b&2DzfiQ-"),
            ("tab\there", "tab&AAk-here"),
            ("del\u{7f}", "del&AH8-"),
        ];
        for &(utf8, mutf7) in cases {
            assert_eq!(encode(utf8), mutf7, "encode {utf8:?}");
            assert_eq!(
                decode(mutf7.as_bytes()).as_deref(),
                Some(utf8),
                "decode {mutf7:?}"
            );
        }
    }

    /// Inputs Dovecot's decoder refuses, one per rule.
    #[test]
    fn invalid_inputs() {
        let cases: &[&[u8]] = &[
            b"&",                  // unterminated
            b"&Jjo",               // unterminated
            b"&Jjo!",              // bad base64 and unterminated
            b"&Jj!-",              // bad base64
            b"&U,BTFw-&ZeVnLIqe-", // two runs back to back
            b"&AOQ-&",             // run followed by a lone '&'
            b"p\xe4\xe4",          // 8-bit bytes
            "pää".as_bytes(),      // raw UTF-8
            b"tab\there",          // raw control character
            b"del\x7f",            // raw DEL
            b"&AGE-",              // encoded 'a'
            b"&ACY-",              // encoded '&'
            b"&AAA-",              // encoded NUL
            b"&A-",                // one base64 character
            b"&AOQA5-",            // five characters: a dangling group of one
            b"&AO-",               // one byte only
            b"&AOQA-",             // three bytes: half a UTF-16 unit left
            b"&2D0-",              // lone high surrogate
            b"&3gA-",              // lone low surrogate
            b"&2D0AQQ-",           // high surrogate then 'A'
            b"&-&",                // literal '&' then unterminated
        ];
        for &case in cases {
            assert_eq!(
                decode(case),
                None,
                "decode {:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    /// Every single octet in a run, and U+00E4 followed by a stray octet,
    /// are invalid (Dovecot `test_imap_utf7_non_utf16`).
    #[test]
    fn non_utf16_runs() {
        for i in 0..=255u8 {
            let one = [
                b'&',
                B64[usize::from(i >> 2)],
                B64[usize::from((i & 3) << 4)],
                b'-',
            ];
            assert_eq!(decode(&one), None, "single octet {i}");
            let three = [
                b'&',
                B64[0],
                B64[usize::from(0xe4u8 >> 4)],
                B64[usize::from(((0xe4u8 & 0x0f) << 2) | (i >> 6))],
                B64[usize::from(i & 0x3f)],
                b'-',
            ];
            assert_eq!(decode(&three), None, "U+00E4 and octet {i}");
        }
    }

    /// Characters around the BMP boundary survive a round trip in all
    /// positions (Dovecot `test_imap_utf7_ucs4_cases`).
    #[test]
    fn ucs4_boundary_round_trip() {
        for cp in (0xd7f0..=0xd7ff)
            .chain(0xe000..=0xe010)
            .chain(0xfff0..=0x10010)
        {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            for n in 1..=10 {
                let mut s = String::new();
                for j in 0..n {
                    if j % 3 == 0 {
                        s.push('x');
                    }
                    if j % 5 == 0 {
                        s.push('&');
                    }
                    s.push(c);
                }
                assert_eq!(decode(encode(&s).as_bytes()).as_deref(), Some(s.as_str()));
            }
        }
    }

    /// Printable ASCII encodes to itself; control characters do not.
    #[test]
    fn ascii_self_coding() {
        for b in 0x20u8..0x7f {
            let s = char::from(b).to_string();
            let want = if b == b'&' {
                "&-".to_string()
            } else {
                s.clone()
            };
            assert_eq!(encode(&s), want);
            assert_eq!(decode(want.as_bytes()), Some(s));
        }
        for b in (0x01u8..0x20).chain([0x7f]) {
            assert_eq!(decode(&[b]), None, "raw {b:#x}");
            let s = char::from(b).to_string();
            assert_eq!(decode(encode(&s).as_bytes()), Some(s));
        }
    }

    /// Random bytes never panic, and whatever decodes re-encodes to a
    /// string that decodes to the same name.
    #[test]
    fn random_input_is_safe() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let alphabet = b"&&--AAOQ2D3eZaz9+, ._\x7f\x80\xff\t";
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 12) as usize;
            let input: Vec<u8> = (0..len)
                .map(|k| alphabet[((x >> (4 * k)) % alphabet.len() as u64) as usize])
                .collect();
            if let Some(name) = decode(&input) {
                assert_eq!(decode(encode(&name).as_bytes()), Some(name));
            }
        }
    }
}
