//! Subscription lists: Dovecot's `subscriptions` and Courier's
//! `courierimapsubscribed`.
//!
//! Both files list one mailbox per line, but they differ in what a line
//! holds. Dovecot writes storage names relative to the namespace, in one of
//! two versions; Courier writes full IMAP names with its `INBOX.` prefix.
//! Both parsers return the names Dovecot would show for the same folders,
//! so that a Courier store migrated to Dovecot keeps its subscriptions.
//!
//! # Damaged and foreign files
//!
//! The file is written by the mailbox's user, so it may hold anything. An
//! entry that names no folder is skipped and counted
//! ([`Subscriptions::skipped_count`]); only the first [`MAX_EXAMPLES`] are
//! kept as examples ([`Subscriptions::skipped`], each cut to
//! [`EXAMPLE_MAX`] bytes), so a file of junk never gives one warning per
//! line.
//!
//! A file that is not a subscription list at all gets a verdict
//! ([`Subscriptions::not_subscriptions`]) and **no names**, so that the
//! caller keeps the subscriptions it knew, warns once, and reports no
//! MailboxSubscribe / MailboxUnSubscribe events for it. The verdict is
//! given, first rule first, when the file:
//!
//! 1. holds a NUL byte: Dovecot and Courier write text, and a NUL inside a
//!    name is escaped (`\x010`) in version 2;
//! 2. has a line longer than [`MAX_LINE`] bytes (4096, Dovecot's
//!    `MAILBOX_LIST_NAME_MAX_LENGTH` = `PATH_MAX`): Dovecot itself fails
//!    such a file ("contains lines longer than 4096 characters");
//! 3. has more invalid entries than valid ones (ignored lines, such as
//!    Courier's `#shared` ones, count as neither).
//!
//! An empty file is a valid, empty list.

use std::collections::HashSet;
use std::fmt;

use super::mutf7;

/// The first bytes of a version 2 Dovecot file: a version line and an empty
/// line (`version2_header` in `subscription-file.c`).
const V2_HEADER: &[u8] = b"V\t2\n\n";

/// The hierarchy separator of Maildir++ storage names.
const STORAGE_SEP: u8 = b'.';

/// How many skipped entries [`Subscriptions::skipped`] keeps as examples.
pub const MAX_EXAMPLES: usize = 5;

/// How many bytes of a skipped entry an example shows before `…`.
pub const EXAMPLE_MAX: usize = 64;

/// The longest line a subscriptions file may have: Dovecot's
/// `MAILBOX_LIST_NAME_MAX_LENGTH` (`PATH_MAX` on Linux).
pub const MAX_LINE: usize = 4096;

/// Why a file is not a subscription list at all (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSubscriptions {
    /// The file holds a NUL byte.
    NulByte,
    /// A line is longer than [`MAX_LINE`] bytes.
    LineTooLong,
    /// More entries are invalid than valid.
    MostlyInvalid {
        /// Entries that name a folder (duplicates included).
        valid: usize,
        /// Entries that do not.
        invalid: usize,
    },
}

impl fmt::Display for NotSubscriptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotSubscriptions::NulByte => f.write_str("it holds a NUL byte"),
            NotSubscriptions::LineTooLong => {
                write!(f, "a line is longer than {MAX_LINE} bytes")
            }
            NotSubscriptions::MostlyInvalid { valid, invalid } => write!(
                f,
                "{invalid} of its {} entries are not mailbox names",
                valid + invalid
            ),
        }
    }
}

/// The subscribed mailboxes of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscriptions {
    /// IMAP names in file order, without duplicates; empty when
    /// [`Subscriptions::not_subscriptions`] is set.
    pub names: Vec<String>,
    /// The first [`MAX_EXAMPLES`] entries that have no IMAP name, as lossy
    /// UTF-8 cut to [`EXAMPLE_MAX`] bytes, for a warning. Dovecot logs
    /// "Removing invalid entry" for these and drops them from the file.
    pub skipped: Vec<String>,
    /// How many entries have no IMAP name, in all.
    pub skipped_count: usize,
    /// Set when the file is not a subscription list at all: the caller
    /// should keep the subscriptions it knew and warn once.
    pub not_subscriptions: Option<NotSubscriptions>,
}

/// Collects the entries of one file.
#[derive(Default)]
struct Builder {
    subs: Subscriptions,
    seen: HashSet<String>,
    /// Entries that name a folder, duplicates included.
    valid: usize,
}

impl Builder {
    /// Records one entry, keeping the first of any duplicates.
    fn push(&mut self, name: Option<String>, raw: &[u8]) {
        match name {
            Some(name) => {
                self.valid += 1;
                if self.seen.insert(name.clone()) {
                    self.subs.names.push(name);
                }
            }
            None => {
                self.subs.skipped_count += 1;
                if self.subs.skipped.len() < MAX_EXAMPLES {
                    self.subs.skipped.push(example(raw));
                }
            }
        }
    }

    /// Gives the verdict on the whole file (see the module doc).
    fn finish(mut self, bytes: &[u8]) -> Subscriptions {
        let invalid = self.subs.skipped_count;
        let verdict = if bytes.contains(&0) {
            Some(NotSubscriptions::NulByte)
        } else if bytes
            .split(|&b| b == b'\n')
            .any(|line| line.len() > MAX_LINE)
        {
            Some(NotSubscriptions::LineTooLong)
        } else if invalid > self.valid {
            Some(NotSubscriptions::MostlyInvalid {
                valid: self.valid,
                invalid,
            })
        } else {
            None
        };
        if verdict.is_some() {
            self.subs.names.clear();
        }
        self.subs.not_subscriptions = verdict;
        self.subs
    }
}

/// Shows a skipped entry: lossy UTF-8, cut after [`EXAMPLE_MAX`] bytes.
fn example(raw: &[u8]) -> String {
    match raw.get(..EXAMPLE_MAX) {
        Some(head) if raw.len() > EXAMPLE_MAX => format!("{}…", String::from_utf8_lossy(head)),
        _ => String::from_utf8_lossy(raw).into_owned(),
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
    let mut subs = Builder::default();
    for line in lines(body) {
        let storage = if v2 {
            tab_unescape_levels(line)
        } else {
            line.to_vec()
        };
        subs.push(dovecot_name(&storage, sep, utf8), &storage);
    }
    subs.finish(bytes)
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
    let mut subs = Builder::default();
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
        subs.push(name, line);
    }
    subs.finish(bytes)
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
                b"bad&\nA..B\n.\nok\nx\ny\n",
                '/',
                false,
                &["ok", "x", "y"],
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
                b"INBOX.\nINBOX..x\nINBOXX\nINBOX.a\n",
                '/',
                false,
                &["INBOXX", "a"],
                &["INBOX.", "INBOX..x"],
            ),
        ];
        for &(file, sep, utf8, names, skipped) in cases {
            check(parse_courier(file, sep, utf8), names, skipped);
        }
    }

    #[test]
    fn foreign_files_get_a_verdict_and_no_names() {
        let long = format!("Sent\n{}\n", "a".repeat(MAX_LINE + 1));
        let fits = format!("Sent\n{}\n", "a".repeat(MAX_LINE));
        #[rustfmt::skip]
        let cases: &[(&[u8], Option<NotSubscriptions>, usize)] = &[
            (b"", None, 0),
            (b"\n\n", None, 0),
            (b"Sent\nbad&\n", None, 1),
            (b"Sent\nbad&\nA..B\n", Some(NotSubscriptions::MostlyInvalid { valid: 1, invalid: 2 }), 2),
            (b"bad&\n", Some(NotSubscriptions::MostlyInvalid { valid: 0, invalid: 1 }), 1),
            (b"Sent\nTrash\nSe\0nt\n", Some(NotSubscriptions::NulByte), 1),
            (b"V\t2\n\nSent\n\0\n", Some(NotSubscriptions::NulByte), 1),
            (long.as_bytes(), Some(NotSubscriptions::LineTooLong), 0),
            (fits.as_bytes(), None, 0),
            // Duplicates count as valid entries.
            (b"Sent\nSent\nbad&\n", None, 1),
        ];
        for &(file, verdict, skipped) in cases {
            let got = parse_dovecot(file, '/', false);
            assert_eq!(
                got.not_subscriptions,
                verdict,
                "{:?}",
                String::from_utf8_lossy(file)
            );
            assert_eq!(
                got.skipped_count,
                skipped,
                "{:?}",
                String::from_utf8_lossy(file)
            );
            if verdict.is_some() {
                assert!(got.names.is_empty());
            }
        }
        let got = parse_courier(b"#shared.x\nINBOX.Sent\nINBOX..x\n", '/', false);
        assert_eq!(got.not_subscriptions, None);
        assert_eq!(got.names, ["Sent"]);
        let got = parse_courier(b"INBOX..x\nINBOX.\x00\n", '/', false);
        assert_eq!(got.not_subscriptions, Some(NotSubscriptions::NulByte));
        assert_eq!(
            NotSubscriptions::MostlyInvalid {
                valid: 1,
                invalid: 3
            }
            .to_string(),
            "3 of its 4 entries are not mailbox names"
        );
    }

    #[test]
    fn random_bytes_give_a_few_examples_and_a_verdict() {
        // 10 MB of pseudo-random bytes, as in the issue: no junk names, a
        // bounded list of examples, one verdict.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let file: Vec<u8> = (0..10_000_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        for subs in [
            parse_dovecot(&file, '/', false),
            parse_courier(&file, '/', true),
        ] {
            assert!(subs.names.is_empty());
            assert!(subs.not_subscriptions.is_some());
            assert!(subs.skipped.len() <= MAX_EXAMPLES);
            assert!(subs.skipped.iter().all(|e| e.len() <= EXAMPLE_MAX * 3 + 3));
            assert!(subs.skipped_count > 1000);
        }
        let mut text = b"Sent\n".to_vec();
        for i in 0..40_000 {
            text.extend_from_slice(format!("junk&{i}\n").as_bytes());
        }
        let subs = parse_dovecot(&text, '/', false);
        assert_eq!(subs.skipped_count, 40_000);
        assert_eq!(
            subs.skipped,
            ["junk&0", "junk&1", "junk&2", "junk&3", "junk&4"]
        );
        assert_eq!(
            subs.not_subscriptions,
            Some(NotSubscriptions::MostlyInvalid {
                valid: 1,
                invalid: 40_000
            })
        );
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
