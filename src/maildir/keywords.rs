//! The `dovecot-keywords` file: which keyword each letter `a`..`z` stands for.
//!
//! Dovecot writes IMAP keywords into file names as the letters `a`..`z` after
//! the system flags (`:2,Sb`). The letters are only indexes; the names live in
//! `dovecot-keywords` in the mailbox's control directory, one line per letter:
//!
//! ```text
//! 0 $Junk
//! 1 $NonJunk
//! 3 $label1
//! ```
//!
//! The rules here follow `maildir_keywords_sync()` in dovecot/core
//! `src/lib-storage/index/maildir/maildir-keywords.c`. Dovecot replaces the
//! file with `rename()` under the `dovecot-uidlist.lock`, so a reader always
//! sees a whole file and needs no locking. A letter that has no line is not an
//! error: Dovecot ignores it when reading and only invents a name when it
//! rewrites the file, which is not a reader's business.

/// How many keyword letters a file name can carry: `a`..=`z`.
const MAX_KEYWORDS: usize = 26;

/// The longest line Dovecot reads: it reads the file through a 1024-byte
/// buffer (`i_stream_create_fd(fd, 1024)`), so a longer line (with its
/// `\n`) ends its reading there, and so it ends ours.
pub const MAX_LINE: usize = 1023;

/// How many ignored lines [`Ignored::examples`] keeps.
pub const MAX_EXAMPLES: usize = 5;

/// The lines [`Keywords::parse_counted`] ignored, by reason, with the first
/// few as examples: for one warning line per file. Empty lines are not
/// counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ignored {
    /// Lines that are not `<index> <name>`: no space, an index that is not
    /// plain decimal, an empty name, a name that is not UTF-8.
    pub malformed: usize,
    /// Lines with an index of 26 or more (any number of digits).
    pub index_out_of_range: usize,
    /// Lines whose name an earlier line already has.
    pub duplicate_name: usize,
    /// Lines after a line longer than [`MAX_LINE`] bytes (that line
    /// included), where Dovecot stops reading.
    pub after_long_line: usize,
    /// The first [`MAX_EXAMPLES`] ignored lines, as `line 3: <reason>`.
    pub examples: Vec<String>,
}

impl Ignored {
    /// Returns how many lines were ignored in all.
    pub fn total(&self) -> usize {
        self.malformed + self.index_out_of_range + self.duplicate_name + self.after_long_line
    }

    fn example(&mut self, number: usize, reason: &str) {
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(format!("line {number}: {reason}"));
        }
    }
}

/// Keyword names by Dovecot letter index.
///
/// Parsing never fails, because a damaged keywords file must not stop a
/// watcher from reporting everything else about a message: a letter without
/// a usable name is simply not reported, as Dovecot does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keywords {
    names: [Option<String>; MAX_KEYWORDS],
}

impl Keywords {
    /// Reads a `dovecot-keywords` file.
    ///
    /// Each line is `<decimal index><SP><name>`; gaps between indexes are
    /// fine. A line is ignored if it has no space, if the index is not a plain
    /// decimal number below 26, or if the name is empty, not UTF-8, or (ASCII
    /// case-insensitively, like Dovecot's `strcasecmp` hash of names) the same
    /// as a name read earlier. Ignoring bad lines instead of rejecting the
    /// file keeps the good ones usable, which is what Dovecot does with lines
    /// it calls "shouldn't happen".
    ///
    /// A trailing `\r` is stripped, as Dovecot's line reader does. A last line
    /// without `\n` is accepted: the file is only ever replaced whole, so it
    /// cannot be half-written. If the same index appears twice, the later
    /// line wins, as it overwrites Dovecot's array slot.
    pub fn parse(text: &[u8]) -> Keywords {
        Keywords::parse_counted(text).0
    }

    /// Reads a `dovecot-keywords` file as [`Keywords::parse`] does, and
    /// also says which lines were ignored and why, so that the caller can
    /// warn once per file with counts.
    ///
    /// Like Dovecot, reading stops at a line longer than [`MAX_LINE`]
    /// bytes; that line and the rest are counted in
    /// [`Ignored::after_long_line`].
    pub fn parse_counted(text: &[u8]) -> (Keywords, Ignored) {
        let mut keywords = Keywords::default();
        let mut ignored = Ignored::default();
        // Names accepted so far, including any a later line overwrote:
        // Dovecot's name hash still holds them, so they stay "taken".
        let mut seen: Vec<&str> = Vec::new();
        let mut lines = (1..).zip(text.split(|&b| b == b'\n'));
        while let Some((number, line)) = lines.next() {
            if line.len() > MAX_LINE {
                ignored.after_long_line = 1 + lines.filter(|(_, l)| !l.is_empty()).count();
                ignored.example(number, "line too long; Dovecot stops reading here");
                break;
            }
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let (index, name) = match parse_line(line) {
                Ok(pair) => pair,
                Err(BadLine::IndexOutOfRange) => {
                    ignored.index_out_of_range += 1;
                    ignored.example(number, "index not below 26");
                    continue;
                }
                Err(BadLine::Malformed) => {
                    ignored.malformed += 1;
                    ignored.example(number, "not <index> <name>");
                    continue;
                }
            };
            if seen.iter().any(|s| s.eq_ignore_ascii_case(name)) {
                ignored.duplicate_name += 1;
                ignored.example(number, "name listed again");
                continue;
            }
            seen.push(name);
            if let Some(slot) = keywords.names.get_mut(index) {
                *slot = Some(name.to_owned());
            }
        }
        (keywords, ignored)
    }

    /// Returns the name of keyword letter `index` (0 is `a`), or `None` if
    /// the file does not name it.
    pub fn name(&self, index: u8) -> Option<&str> {
        self.names.get(usize::from(index))?.as_deref()
    }

    /// Returns true if no letter has a name, which is the state of a mailbox
    /// that never had keywords (the file does not exist).
    pub fn is_empty(&self) -> bool {
        self.names.iter().all(Option::is_none)
    }

    /// Returns the named letters as `(index, name)` in index order, for
    /// logging and for building a reverse map.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &str)> {
        (0u8..)
            .zip(&self.names)
            .filter_map(|(i, name)| Some((i, name.as_deref()?)))
    }
}

/// Why a line defines no keyword.
enum BadLine {
    IndexOutOfRange,
    Malformed,
}

/// Splits one line into a keyword index and a name, or says why the line
/// does not define a keyword.
fn parse_line(line: &[u8]) -> Result<(usize, &str), BadLine> {
    let space = line
        .iter()
        .position(|&b| b == b' ')
        .ok_or(BadLine::Malformed)?;
    let (index, name) = line.split_at(space);
    let name = name.get(1..).unwrap_or_default();
    if index.is_empty() || !index.iter().all(u8::is_ascii_digit) {
        return Err(BadLine::Malformed);
    }
    // Only ASCII digits are left: an index below 26 has at most two
    // significant digits, however many leading zeros come first.
    let significant = index.iter().skip_while(|&&d| d == b'0').count();
    let index = index.iter().fold(0usize, |n, &d| {
        n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
    });
    if significant > 2 || index >= MAX_KEYWORDS {
        return Err(BadLine::IndexOutOfRange);
    }
    if name.is_empty() {
        return Err(BadLine::Malformed);
    }
    let name = std::str::from_utf8(name).map_err(|_| BadLine::Malformed)?;
    Ok((index, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file's text and the (index, name) pairs it defines.
    type Row = (&'static [u8], &'static [(u8, &'static str)]);

    #[test]
    fn parse_files() {
        #[rustfmt::skip]
        let rows: &[Row] = &[
            // The example from the Dovecot documentation, with a gap.
            (b"0 $Junk\n1 $NonJunk\n3 $label1\n", &[(0, "$Junk"), (1, "$NonJunk"), (3, "$label1")]),
            // Keywords Thunderbird sets, lettered in order of first use.
            (b"0 $Forwarded\n1 $MDNSent\n2 NonJunk\n3 $label2\n4 Junk\n",
             &[(0, "$Forwarded"), (1, "$MDNSent"), (2, "NonJunk"), (3, "$label2"), (4, "Junk")]),
            // Nothing at all.
            (b"", &[]),
            (b"\n\n", &[]),
            // Lines out of order; leading zeros are still decimal.
            (b"25 last\n0 first\n", &[(0, "first"), (25, "last")]),
            (b"007 $seven\n", &[(7, "$seven")]),
            // CRLF line endings.
            (b"0 $Junk\r\n1 $NonJunk\r\n", &[(0, "$Junk"), (1, "$NonJunk")]),
            // A last line without '\n' still counts if it is complete.
            (b"0 $Junk\n1 $NonJunk", &[(0, "$Junk"), (1, "$NonJunk")]),
            (b"0 $Junk\n1 ", &[(0, "$Junk")]),
            (b"0 $Junk\n1", &[(0, "$Junk")]),
            // Lines without a space (the header of a converted .customflags file).
            (b"$Junk\n0 $Junk\n", &[(0, "$Junk")]),
            // Index 26 and beyond, huge, signed or non-decimal indexes.
            (b"26 z1\n99 z2\n4294967296 z3\n", &[]),
            (b"-1 neg\n+1 pos\n0x1 hex\n a lead\n1a mix\n", &[]),
            // An empty name is ignored; a name is the rest of the line, spaces included.
            (b"0 \n1  \n2 two words\n", &[(1, " "), (2, "two words")]),
            // Duplicate names keep the first; the comparison ignores ASCII case.
            (b"0 $Junk\n1 $Junk\n2 $junk\n3 $NonJunk\n", &[(0, "$Junk"), (3, "$NonJunk")]),
            // The same index twice: the later line wins, the earlier name stays taken.
            (b"0 $Junk\n0 $Spam\n1 $Junk\n", &[(0, "$Spam")]),
            // Non-UTF-8 names are ignored; UTF-8 ones are kept.
            (b"0 caf\xe9\n1 caf\xc3\xa9\n", &[(1, "caf\u{e9}")]),
        ];
        for &(text, want) in rows {
            let keywords = Keywords::parse(text);
            let got: Vec<(u8, &str)> = keywords.iter().collect();
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn ignored_lines_are_counted() {
        // (file, malformed, out of range, duplicate, after a long line, examples)
        type Row = (Vec<u8>, usize, usize, usize, usize, &'static [&'static str]);
        let long = format!("0 a\n1 {}\n2 b\n\n3 c\n", "x".repeat(MAX_LINE));
        let fits = format!("0 {}\n", "x".repeat(MAX_LINE - 2));
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            (b"0 $Junk\n\n\r\n1 $NonJunk\n".to_vec(), 0, 0, 0, 0, &[]),
            (b"$Junk\n26 z\n99999999999999999999999 big\n0 a\n1 a\n-1 n\n2 \n3 caf\xe9\n".to_vec(),
             4, 2, 1, 0, &[
                 "line 1: not <index> <name>",
                 "line 2: index not below 26",
                 "line 3: index not below 26",
                 "line 5: name listed again",
                 "line 6: not <index> <name>",
             ]),
            (long.into_bytes(), 0, 0, 0, 3, &["line 2: line too long; Dovecot stops reading here"]),
            (fits.into_bytes(), 0, 0, 0, 0, &[]),
        ];
        for (text, malformed, range, duplicate, after, examples) in rows {
            let (_, ignored) = Keywords::parse_counted(&text);
            assert_eq!(
                (
                    ignored.malformed,
                    ignored.index_out_of_range,
                    ignored.duplicate_name,
                    ignored.after_long_line
                ),
                (malformed, range, duplicate, after),
                "{:?}",
                String::from_utf8_lossy(&text)
            );
            assert_eq!(ignored.examples, examples);
            assert_eq!(ignored.total(), malformed + range + duplicate + after);
        }
        let (keywords, _) =
            Keywords::parse_counted(format!("0 a\n1 {}\n2 b\n", "x".repeat(MAX_LINE)).as_bytes());
        assert_eq!(keywords.iter().collect::<Vec<_>>(), [(0, "a")]);
        // 40,000 junk lines: counts and five examples.
        let junk: Vec<u8> = b"junk\n".repeat(40_000);
        let (keywords, ignored) = Keywords::parse_counted(&junk);
        assert!(keywords.is_empty());
        assert_eq!(ignored.malformed, 40_000);
        assert_eq!(ignored.examples.len(), MAX_EXAMPLES);
    }

    #[test]
    fn lookups() {
        let keywords = Keywords::parse(b"0 $Junk\n1 $NonJunk\n3 $label1\n");
        #[rustfmt::skip]
        let rows: &[(u8, Option<&str>)] = &[
            (0, Some("$Junk")), (1, Some("$NonJunk")), (2, None), (3, Some("$label1")),
            (25, None), (26, None), (255, None),
        ];
        for &(index, want) in rows {
            assert_eq!(keywords.name(index), want, "index {index}");
        }
        assert!(!keywords.is_empty());
        assert!(Keywords::parse(b"").is_empty());
        assert!(Keywords::parse(b"26 x\nfoo\n").is_empty());
        assert_eq!(Keywords::parse(b""), Keywords::default());
    }

    #[test]
    fn all_letters() {
        let text: String = (0..26).map(|i| format!("{i} kw{i}\n")).collect();
        let keywords = Keywords::parse(text.as_bytes());
        for i in 0..26u8 {
            assert_eq!(keywords.name(i), Some(format!("kw{i}").as_str()));
        }
        assert_eq!(keywords.iter().count(), 26);
    }

    #[test]
    fn no_panic_on_any_short_file() {
        let alphabet: &[u8] = b"0129 \n\ra\xff";
        for &a in alphabet {
            for &b in alphabet {
                for &c in alphabet {
                    for &d in alphabet {
                        let _ = Keywords::parse(&[a, b, c, d]);
                    }
                }
            }
        }
    }
}
