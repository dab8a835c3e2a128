//! Subscription lists: Dovecot's `subscriptions` and Courier's
//! `courierimapsubscribed`.
//!
//! Both files list one mailbox per line, but they differ in what a line
//! holds. Dovecot writes storage names relative to the namespace, in one of
//! two versions; Courier writes full IMAP names with its `INBOX.` prefix.
//! Both parsers return the names Dovecot would show for the same folders,
//! so that a Courier store migrated to Dovecot keeps its subscriptions.

use std::collections::HashSet;

use super::mutf7;

/// The first bytes of a version 2 Dovecot file: a version line and an empty
/// line (`version2_header` in `subscription-file.c`).
const V2_HEADER: &[u8] = b"V\t2\n\n";

/// The hierarchy separator of Maildir++ storage names.
const STORAGE_SEP: u8 = b'.';

/// The subscribed mailboxes of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscriptions {
    /// IMAP names in file order, without duplicates.
    pub names: Vec<String>,
    /// Entries that have no IMAP name, as lossy UTF-8 for warnings. Dovecot
    /// logs "Removing invalid entry" for these and drops them from the file.
    pub skipped: Vec<String>,
}

impl Subscriptions {
    /// Records one entry, keeping the first of any duplicates.
    fn push(&mut self, seen: &mut HashSet<String>, name: Option<String>, raw: &[u8]) {
        match name {
            Some(name) => {
                if seen.insert(name.clone()) {
                    self.names.push(name);
                }
            }
            None => self.skipped.push(String::from_utf8_lossy(raw).into_owned()),
        }
    }
}

/// Parses Dovecot's `subscriptions` file, version 1 or 2.
///
/// Version 2 starts with `V<TAB>2<LF><LF>`; each following line is one
/// storage name whose levels are separated by TAB and tab-escaped with 0x01
/// (`str_append_tabunescaped()` in dovecot/core `src/lib/strescape.c`).
/// Without that header the file is version 1: each line is the storage name
/// itself, levels separated by `.` (dovecot/core
/// `src/lib-storage/list/subscription-file.c`, `subsfile_list_next()`).
///
/// Like `mailbox_list_subscription_fill_one()` in
/// `list/mailbox-list-subscriptions.c`, one trailing separator is dropped
/// (old Dovecot versions and other software wrote one), each level is
/// decoded from modified UTF-7 unless `utf8` is true, and the levels are
/// joined with the namespace separator `sep`. A trailing CR is dropped as
/// Dovecot's `i_stream_next_line()` does. `INBOX` is matched without regard
/// to case because IMAP treats it so (RFC 3501 §5.1). An entry with an
/// empty level (`A..B`) or a NUL can name no Maildir++ folder, so it is
/// skipped along with the entries that do not decode.
///
/// Only the Maildir++ layout is handled: its storage separator is `.`, for
/// version 1 lines as well as inside version 2 levels.
pub fn parse_dovecot(bytes: &[u8], sep: char, utf8: bool) -> Subscriptions {
    let (v2, body) = match bytes.strip_prefix(V2_HEADER) {
        Some(body) => (true, body),
        None => (false, bytes),
    };
    let mut subs = Subscriptions::default();
    let mut seen = HashSet::new();
    for line in lines(body) {
        let storage = if v2 {
            tab_unescape_levels(line)
        } else {
            line.to_vec()
        };
        subs.push(&mut seen, dovecot_name(&storage, sep, utf8), &storage);
    }
    subs
}

/// Parses Courier's `courierimapsubscribed` file.
///
/// Each line is an IMAP name such as `INBOX.Sent`, with `.` as separator.
/// Courier compares the `INBOX` prefix without regard to case (`sub_strcmp()`
/// in courier `imap/imapd.C`), and so does this parser: `INBOX.` is stripped
/// and the rest is named like the directory `.Sent`. Lines starting with `#`
/// belong to the shared namespaces (`#shared.`), not to this Maildir, and
/// are ignored. Folder names are modified UTF-7 before Courier-IMAP 5.0 and
/// UTF-8 after it, which `utf8` selects.
pub fn parse_courier(bytes: &[u8], sep: char, utf8: bool) -> Subscriptions {
    let mut subs = Subscriptions::default();
    let mut seen = HashSet::new();
    for line in lines(bytes) {
        if line.first() == Some(&b'#') {
            continue;
        }
        let name = if line.eq_ignore_ascii_case(b"INBOX") {
            Some("INBOX".to_string())
        } else {
            let rest = match line.get(..6) {
                Some(prefix) if prefix.eq_ignore_ascii_case(b"INBOX.") => &line[6..],
                _ => line,
            };
            join_levels(rest, sep, utf8)
        };
        subs.push(&mut seen, name, line);
    }
    subs
}

/// Yields the non-empty lines of a file, without their line endings.
fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty())
}

/// Turns one version 2 line into a storage name with `.` between levels.
///
/// Dovecot joins the unescaped levels with the storage separator and then
/// splits the storage name on it again, so this does the same.
fn tab_unescape_levels(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut bytes = line.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\t' => out.push(STORAGE_SEP),
            0x01 => match bytes.next() {
                Some(b'0') => out.push(0),
                Some(b'1') => out.push(0x01),
                Some(b't') => out.push(b'\t'),
                Some(b'r') => out.push(b'\r'),
                Some(b'n') => out.push(b'\n'),
                Some(&other) => out.push(other),
                None => {}
            },
            _ => out.push(b),
        }
    }
    out
}

/// Names a Dovecot storage name, or `None` when it can name no folder.
fn dovecot_name(storage: &[u8], sep: char, utf8: bool) -> Option<String> {
    let mut sep_bytes = [0; 4];
    let sep_bytes = sep.encode_utf8(&mut sep_bytes).as_bytes();
    let storage = storage.strip_suffix(sep_bytes).unwrap_or(storage);
    if storage.eq_ignore_ascii_case(b"INBOX") {
        return Some("INBOX".to_string());
    }
    join_levels(storage, sep, utf8)
}

/// Decodes the `.`-separated levels of a storage name and joins them with
/// `sep`; `None` for an empty level, NUL, or a level that does not decode.
fn join_levels(storage: &[u8], sep: char, utf8: bool) -> Option<String> {
    if storage.is_empty() || storage.contains(&0) {
        return None;
    }
    let mut name = String::with_capacity(storage.len());
    for (i, level) in storage.split(|&b| b == STORAGE_SEP).enumerate() {
        if level.is_empty() {
            return None;
        }
        if i > 0 {
            name.push(sep);
        }
        if utf8 {
            name.push_str(std::str::from_utf8(level).ok()?);
        } else {
            name.push_str(&mutf7::decode(level)?);
        }
    }
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(got: Subscriptions, names: &[&str], skipped: &[&str]) {
        assert_eq!(got.names, names);
        assert_eq!(got.skipped, skipped);
    }

    #[test]
    fn dovecot_files() {
        type Case<'a> = (&'a [u8], char, bool, &'a [&'a str], &'a [&'a str]);
        let cases: &[Case] = &[
            (b"", '/', false, &[], &[]),
            (
                b"V\t2\n\nSent\nArchive\t2024\n",
                '/',
                false,
                &["Sent", "Archive/2024"],
                &[],
            ),
            (
                b"V\t2\n\nSent\nArchive\t2024\n",
                '.',
                false,
                &["Sent", "Archive.2024"],
                &[],
            ),
            (
                b"V\t2\n\nINBOX\nEntw&APw-rfe\tx\n",
                '/',
                false,
                &["INBOX", "Entwürfe/x"],
                &[],
            ),
            (b"V\t2\n\nEntw&APw-rfe\n", '/', true, &["Entw&APw-rfe"], &[]),
            (
                "V\t2\n\nEntwürfe\n".as_bytes(),
                '/',
                true,
                &["Entwürfe"],
                &[],
            ),
            (
                "V\t2\n\nEntwürfe\n".as_bytes(),
                '/',
                false,
                &[],
                &["Entwürfe"],
            ),
            (b"V\t2\n\na\x01tb\n", '/', true, &["a\tb"], &[]),
            (b"V\t2\n\na\x01tb\n", '/', false, &[], &["a\tb"]),
            (b"V\t2\n\na\x010b\n", '/', true, &[], &["a\0b"]),
            (b"V\t2\n\nSent\t\n", '/', false, &[], &["Sent."]),
            (b"V\t2\n\nSent\t\n", '.', false, &["Sent"], &[]),
            (
                b"V\t2\n\nSent\r\nSent\n\n\nTrash",
                '/',
                false,
                &["Sent", "Trash"],
                &[],
            ),
            (b"V\t2\n\ninbox\nINBOX\n", '/', false, &["INBOX"], &[]),
            (
                b"Sent\nArchive.2024\nSent\n",
                '/',
                false,
                &["Sent", "Archive/2024"],
                &[],
            ),
            (b"Archive.2024.\n", '.', false, &["Archive.2024"], &[]),
            (
                b"bad&\nA..B\n.\nok\n",
                '/',
                false,
                &["ok"],
                &["bad&", "A..B", "."],
            ),
            (b"V\t2\nSent\n", '/', false, &["Sent"], &["V\t2"]),
            (b"\xff\n", '/', true, &[], &["\u{fffd}"]),
        ];
        for &(file, sep, utf8, names, skipped) in cases {
            check(parse_dovecot(file, sep, utf8), names, skipped);
        }
    }

    #[test]
    fn courier_files() {
        type Case<'a> = (&'a [u8], char, bool, &'a [&'a str], &'a [&'a str]);
        let cases: &[Case] = &[
            (b"", '/', false, &[], &[]),
            (
                b"INBOX\nINBOX.Sent\nINBOX.Sent.2002\n",
                '/',
                false,
                &["INBOX", "Sent", "Sent/2002"],
                &[],
            ),
            (
                b"inbox\ninbox.Sent\nINBOX.Sent\n",
                '.',
                false,
                &["INBOX", "Sent"],
                &[],
            ),
            (b"INBOX.Entw&APw-rfe\n", '/', false, &["Entwürfe"], &[]),
            ("INBOX.Entwürfe\n".as_bytes(), '/', true, &["Entwürfe"], &[]),
            (
                "INBOX.Entwürfe\n".as_bytes(),
                '/',
                false,
                &[],
                &["INBOX.Entwürfe"],
            ),
            (
                b"#shared.alice.Sent\nINBOX.Trash\r\n",
                '/',
                false,
                &["Trash"],
                &[],
            ),
            (
                b"INBOX.\nINBOX..x\nINBOXX\n",
                '/',
                false,
                &["INBOXX"],
                &["INBOX.", "INBOX..x"],
            ),
        ];
        for &(file, sep, utf8, names, skipped) in cases {
            check(parse_courier(file, sep, utf8), names, skipped);
        }
    }

    #[test]
    fn tab_unescaping() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"plain", b"plain"),
            (b"a\tb", b"a.b"),
            (b"\x011\x01t\x01r\x01n\x010", b"\x01\t\r\n\0"),
            (b"\x01x", b"x"),
            (b"end\x01", b"end"),
            (b"\x012\x01l\x01", b"2l"),
        ];
        for &(line, want) in cases {
            assert_eq!(tab_unescape_levels(line), want);
        }
    }
}
