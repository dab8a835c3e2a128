//! Courier-IMAP's keywords: the `courierimapkeywords/` directory of a
//! folder, and the stable table that turns keyword names into the keyword
//! bits of [`Flags`](super::name::Flags).
//!
//! Courier keeps keywords out of the file name. The rules here follow
//! `mail::keywords` in courier-libs `maildir/maildirkeywords.C` and its
//! `README.imapkeywords.html`:
//!
//! - `courierimapkeywords/:list` holds the keyword names, one a line, then
//!   an empty line, then `basename:i j …` lines giving each message with
//!   keywords the indexes of its names. The index order is whatever order
//!   Courier's hash table had when it last wrote the file, so it is no
//!   stable numbering.
//! - An update of one message is a file `courierimapkeywords/basename`
//!   holding its whole new keyword set, one name a line (empty: no
//!   keywords). Courier later renames it to `.N.basename` (N a positive
//!   decimal number, a 300-second time slot) and merges it into `:list`.
//! - A message's keywords are those of its `basename` file if there is one,
//!   else of its `.N.basename` with the largest N, else of `:list`.
//!
//! Nothing here touches the filesystem: the caller lists the directory and
//! reads the files (bounded, as everything in the store).

use std::collections::{BTreeSet, HashMap};

/// What a name in `courierimapkeywords/` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateName<'a> {
    /// `:list`, the merged list.
    List,
    /// `basename`: the newest update of that message.
    Newest(&'a [u8]),
    /// `.N.basename`: an aged update, version N.
    Aged(u64, &'a [u8]),
    /// Anything else (`.`, `..`, Courier's temporary files): not keywords.
    Other,
}

/// Classifies a directory entry of `courierimapkeywords/` as Courier's
/// `scan_updates()` does: `.N.name` needs N of decimal digits without a
/// leading zero and above zero; any other name starting with `.` is not an
/// update.
pub fn classify(name: &[u8]) -> UpdateName<'_> {
    if name == b":list" {
        return UpdateName::List;
    }
    if name.is_empty() || name == b"." || name == b".." {
        return UpdateName::Other;
    }
    let Some(rest) = name.strip_prefix(b".") else {
        return UpdateName::Newest(name);
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (num, after) = rest.split_at(digits);
    let base = match after.strip_prefix(b".") {
        Some(b) if !b.is_empty() && !num.is_empty() && num[0] != b'0' => b,
        _ => return UpdateName::Other,
    };
    match std::str::from_utf8(num)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        Some(n) if n > 0 => UpdateName::Aged(n, base),
        _ => UpdateName::Other,
    }
}

/// The keyword names of an update file: one a line, empty lines skipped, a
/// trailing `\r` dropped. Names that are not UTF-8 are skipped (no IMAP
/// keyword is); the count of those is returned too.
pub fn parse_update(bytes: &[u8]) -> (BTreeSet<String>, usize) {
    let mut names = BTreeSet::new();
    let mut bad = 0;
    for line in bytes.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        match std::str::from_utf8(line) {
            Ok(s) if valid_keyword(s) => {
                names.insert(s.to_string());
            }
            _ => bad += 1,
        }
    }
    (names, bad)
}

/// An IMAP keyword is an atom: no space, no control character, none of
/// `(){%*"\]`. Anything else cannot have come from an IMAP client.
fn valid_keyword(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 1024
        && s.bytes()
            .all(|b| b > b' ' && b != 0x7f && !b"(){%*\"\\]".contains(&b))
}

/// `courierimapkeywords/:list`, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListFile {
    /// Each listed message's keyword names (messages without any are
    /// dropped, as Courier does).
    pub messages: HashMap<Vec<u8>, BTreeSet<String>>,
    /// Lines that could not be used (bad names, unknown indexes).
    pub ignored: usize,
}

/// Parses `:list`: names up to the first empty line, then
/// `basename:indexes` lines. Like Courier, an index is any run of digits
/// after the first `:` (other bytes separate them) and an index past the
/// names is ignored.
pub fn parse_list(bytes: &[u8]) -> ListFile {
    let mut out = ListFile::default();
    let mut lines = bytes.split(|&b| b == b'\n');
    let mut names: Vec<Option<String>> = Vec::new();
    for line in lines.by_ref() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        match std::str::from_utf8(line) {
            Ok(s) if valid_keyword(s) => names.push(Some(s.to_string())),
            _ => {
                out.ignored += 1;
                names.push(None);
            }
        }
    }
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            out.ignored += 1;
            continue;
        };
        let (base, rest) = (&line[..colon], &line[colon + 1..]);
        if base.is_empty() {
            out.ignored += 1;
            continue;
        }
        let mut set = BTreeSet::new();
        for digits in rest.split(|b| !b.is_ascii_digit()) {
            if digits.is_empty() {
                continue;
            }
            let index = std::str::from_utf8(digits)
                .ok()
                .and_then(|s| s.parse::<usize>().ok());
            match index.and_then(|i| names.get(i)).and_then(|n| n.as_ref()) {
                Some(n) => {
                    set.insert(n.clone());
                }
                None => out.ignored += 1,
            }
        }
        if !set.is_empty() {
            out.messages.insert(base.to_vec(), set);
        }
    }
    out
}

/// Merges `:list` with the update files: for each base name, the newest
/// update wins, else the aged update with the largest version, else the
/// list. `updates` holds (classified name, its keyword names). Messages
/// left with no keyword are dropped.
pub fn merge(
    list: ListFile,
    updates: Vec<(UpdateName<'_>, BTreeSet<String>)>,
) -> HashMap<Vec<u8>, BTreeSet<String>> {
    // Per base: (rank, names); rank u64::MAX for the newest file.
    let mut best: HashMap<&[u8], (u64, BTreeSet<String>)> = HashMap::new();
    for (name, set) in updates {
        let (rank, base) = match name {
            UpdateName::Newest(b) => (u64::MAX, b),
            UpdateName::Aged(n, b) => (n, b),
            _ => continue,
        };
        match best.get(base) {
            Some((r, _)) if *r >= rank => {}
            _ => {
                best.insert(base, (rank, set));
            }
        }
    }
    let mut out = list.messages;
    for (base, (_, set)) in best {
        if set.is_empty() {
            out.remove(base);
        } else {
            out.insert(base.to_vec(), set);
        }
    }
    out
}

/// How many keywords the table can number: the 26 keyword bits of
/// [`Flags`](super::name::Flags).
pub const TABLE_SIZE: usize = 26;

/// Our numbering of a folder's Courier keywords, kept in the state so a
/// keyword keeps its bit across runs: new names take the first free index
/// and a name, once numbered, is never renumbered. Its text is that of a
/// `dovecot-keywords` file (`<index> <name>` lines), so
/// [`Keywords::parse`](super::keywords::Keywords::parse) reads it for
/// event names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    names: Vec<Option<String>>,
}

impl Table {
    /// Reads a table written by [`Table::text`]; bad lines are skipped.
    pub fn parse(text: &str) -> Table {
        let mut t = Table::default();
        for line in text.lines() {
            let Some((i, name)) = line.split_once(' ') else {
                continue;
            };
            let Ok(i) = i.parse::<usize>() else { continue };
            if i >= TABLE_SIZE || !valid_keyword(name) || t.index(name).is_some() {
                continue;
            }
            if t.names.len() <= i {
                t.names.resize(i + 1, None);
            }
            t.names[i] = Some(name.to_string());
        }
        t
    }

    /// The table as `<index> <name>` lines.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for (i, n) in self.names.iter().enumerate() {
            if let Some(n) = n {
                s.push_str(&format!("{i} {n}\n"));
            }
        }
        s
    }

    /// The index of a name (IMAP keywords compare without regard to
    /// ASCII case, as Courier's keyword hash does).
    pub fn index(&self, name: &str) -> Option<u8> {
        self.names
            .iter()
            .position(|n| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .map(|i| i as u8)
    }

    /// The index of a name, numbering it if it is new; `None` when all
    /// [`TABLE_SIZE`] indexes are taken.
    pub fn number(&mut self, name: &str) -> Option<u8> {
        if let Some(i) = self.index(name) {
            return Some(i);
        }
        let free = self.names.iter().position(Option::is_none);
        let i = match free {
            Some(i) => i,
            None if self.names.len() < TABLE_SIZE => {
                self.names.push(None);
                self.names.len() - 1
            }
            None => return None,
        };
        self.names[i] = Some(name.to_string());
        Some(i as u8)
    }

    /// True when no name is numbered.
    pub fn is_empty(&self) -> bool {
        self.names.iter().all(Option::is_none)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn classify_names() {
        let cases: &[(&[u8], UpdateName)] = &[
            (b":list", UpdateName::List),
            (
                b"1700000000.M1P1.host",
                UpdateName::Newest(b"1700000000.M1P1.host"),
            ),
            (
                b".5988419.1700.M1P1.h",
                UpdateName::Aged(5988419, b"1700.M1P1.h"),
            ),
            (b".1.x,S=21", UpdateName::Aged(1, b"x,S=21")),
            (b".0.x", UpdateName::Other),
            (b".01.x", UpdateName::Other),
            (b".12.", UpdateName::Other),
            (b"..x", UpdateName::Other),
            (b".tmp.123", UpdateName::Other),
            (b".99999999999999999999999.x", UpdateName::Other),
            (b".", UpdateName::Other),
            (b"..", UpdateName::Other),
            (b"", UpdateName::Other),
        ];
        for (name, want) in cases {
            assert_eq!(classify(name), *want, "{}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn update_files() {
        let cases: &[(&[u8], &[&str], usize)] = &[
            (b"$Label1\n", &["$Label1"], 0),
            (b"$Label1\n$Label2\n", &["$Label1", "$Label2"], 0),
            (b"", &[], 0),
            (b"\n\n", &[], 0),
            (b"a\r\nb", &["a", "b"], 0),
            (b"two words\n\xff\nok\n", &["ok"], 2),
            (b"x(y\nJunk\n", &["Junk"], 1),
        ];
        for (bytes, names, bad) in cases {
            assert_eq!(parse_update(bytes), (set(names), *bad), "{bytes:?}");
        }
    }

    #[test]
    fn list_files() {
        // (file, [(base, names)], ignored)
        type Case<'a> = (&'a [u8], &'a [(&'a str, &'a [&'a str])], usize);
        let cases: &[Case] = &[
            // As Courier 5.0 wrote it in a test.
            (
                b"$Label1\n$Label2\n\n1700000000.M1P1.host:0 1\n",
                &[("1700000000.M1P1.host", &["$Label1", "$Label2"])],
                0,
            ),
            (
                b"$Label2\n\nx,S=21:0\ny:1\n",
                &[("x,S=21", &["$Label2"])],
                1,
            ),
            (b"", &[], 0),
            (b"a\nb\n", &[], 0),
            (b"a\n\nnocolon\n:0\nz:\n", &[], 2),
            (b"a\nb\n\nm:1,0;1\n", &[("m", &["a", "b"])], 0),
            (b"a\n\nm:99999999999999999999999 0\n", &[("m", &["a"])], 1),
            (b"bad name\nb\n\nm:0 1\n", &[("m", &["b"])], 2),
        ];
        for (bytes, want, ignored) in cases {
            let got = parse_list(bytes);
            let want: HashMap<Vec<u8>, BTreeSet<String>> = want
                .iter()
                .map(|(b, n)| (b.as_bytes().to_vec(), set(n)))
                .collect();
            assert_eq!(got.messages, want, "{bytes:?}");
            assert_eq!(got.ignored, *ignored, "{bytes:?}");
        }
    }

    #[test]
    fn updates_override_the_list() {
        let list = parse_list(b"a\nb\n\nm1:0\nm2:0 1\nm3:1\n");
        let got = merge(
            list,
            vec![
                (classify(b".5.m1"), set(&["c"])),
                (classify(b".7.m1"), set(&["d"])),
                (classify(b".3.m1"), set(&["e"])),
                (classify(b"m2"), set(&[])),
                (classify(b".9.m2"), set(&["f"])),
                (classify(b"m4"), set(&["g"])),
                (classify(b".tmp.x"), set(&["h"])),
            ],
        );
        let want: HashMap<Vec<u8>, BTreeSet<String>> =
            [("m1", &["d"][..]), ("m3", &["b"][..]), ("m4", &["g"][..])]
                .iter()
                .map(|(b, n)| (b.as_bytes().to_vec(), set(n)))
                .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn table_numbers_stably() {
        let mut t = Table::default();
        assert_eq!(t.number("$Label1"), Some(0));
        assert_eq!(t.number("$label1"), Some(0));
        assert_eq!(t.number("Junk"), Some(1));
        let text = t.text();
        assert_eq!(text, "0 $Label1\n1 Junk\n");
        let mut again = Table::parse(&text);
        assert_eq!(again, t);
        assert_eq!(again.number("Work"), Some(2));
        assert_eq!(
            Table::parse("3 x\n0 y\nbad\n30 z\n1 y\n1 a b\n").text(),
            "0 y\n3 x\n"
        );
        let mut gap = Table::parse("3 x\n");
        assert_eq!(gap.number("n"), Some(0));
        let mut full = Table::default();
        for i in 0..TABLE_SIZE {
            assert_eq!(full.number(&format!("k{i}")), Some(i as u8));
        }
        assert_eq!(full.number("one-too-many"), None);
        assert!(Table::default().is_empty() && !full.is_empty());
    }
}
