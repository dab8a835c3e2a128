//! Maildir++ folder directories and the IMAP names Dovecot gives them.
//!
//! In the Maildir++ layout INBOX is the Maildir root and every other folder
//! is a direct child directory whose name starts with `.`: `A/B` lives in
//! `<root>/.A.B/`. The storage separator on disk is always `.`, while the
//! namespace separator that clients see is configurable (`.` by default,
//! often `/`). Each level is modified UTF-7 unless `mailbox_list_utf8` is
//! set. See dovecot/core `src/lib-storage/list/mailbox-list-maildir-iter.c`
//! (`maildir_fill_readdir_entry`) and `mailbox_list_default_get_vname()` in
//! `src/lib-storage/mailbox-list.c`.
//!
//! # Dot-directories that are not folders
//!
//! [`classify_dir`] tells why a child of the root is not a folder. A
//! directory whose name has an empty level (`..x`, `.a..b`, `.a.`) is **not
//! a mailbox**: its IMAP name would begin with, hold two adjacent, or end
//! with a hierarchy separator, and Dovecot's `mailbox_verify_name()`
//! (`src/lib-storage/mail-storage.c`) refuses to open such a name ("Begins
//! with hierarchy separator", "Has adjacent hierarchy separators", "Ends
//! with hierarchy separator"), so no IMAP client can select it. The watcher
//! therefore lists nothing inside it and reports no event for its messages;
//! the caller warns once per Maildir with the count and the first few names
//! ([`InvalidDirs`]). `.` and `..` are not entries, and `..DOVECOT-TRASHED`
//! is a folder Dovecot is deleting (`maildir_delete_trash_dir()` in
//! `list/mailbox-list-maildir-iter.c`): both are skipped without a warning.
//! Only names are looked at; the caller warns only about directories,
//! because dot-files such as `.qmail` may sit next to the folders.

use std::fmt;

use super::mutf7;

/// The hierarchy separator Maildir++ uses inside directory names.
const STORAGE_SEP: u8 = b'.';

/// Why a directory name has no IMAP name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    dir: String,
    reason: &'static str,
}

impl NameError {
    fn new(dir: &[u8], reason: &'static str) -> NameError {
        NameError {
            dir: String::from_utf8_lossy(dir).into_owned(),
            reason,
        }
    }

    /// Returns a short description of what is wrong with the name, without
    /// the name itself, so callers can build their own messages.
    pub fn reason(&self) -> &str {
        self.reason
    }
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "folder directory {:?}: {}", self.dir, self.reason)
    }
}

impl std::error::Error for NameError {}

/// Tells whether a direct child of the Maildir root names a folder.
///
/// A folder starts with `.` and has only non-empty levels, so `.`, `..`,
/// `..DOVECOT-TRASHED` (a folder Dovecot is deleting), `.a.` and `.a..b`
/// are not folders. Only the name is checked: the caller still has to make
/// sure it is a directory, because dot-files such as `.qmail` or
/// `.customflags` may sit next to the folders. [`classify_dir`] says why a
/// name is not a folder.
pub fn is_folder_dir(name: &[u8]) -> bool {
    classify_dir(name) == DirKind::Folder
}

/// What a direct child of the Maildir root is, by its name alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirKind {
    /// A Maildir++ folder: `.` followed by non-empty levels.
    Folder,
    /// Not a dot-name (`cur`, `new`, `tmp`, control files): not a folder,
    /// nothing to warn about.
    NotDotName,
    /// `.` or `..`: not an entry of its own.
    SelfOrParent,
    /// `..DOVECOT-TRASHED`: a folder Dovecot is deleting; skipped silently,
    /// as Dovecot's listing does.
    BeingDeleted,
    /// A dot-name with an empty level: not a mailbox (see the module doc);
    /// worth one warning per Maildir if it is a directory.
    Invalid(InvalidFolder),
}

/// Why a dot-name with an empty level is no mailbox, in the words of
/// Dovecot's `mailbox_verify_name()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidFolder {
    /// The first level is empty: `..x`, `...`.
    BeginsWithSeparator,
    /// A level in the middle is empty: `.a..b`, `.a..`.
    AdjacentSeparators,
    /// The last level is empty: `.a.`.
    EndsWithSeparator,
}

impl InvalidFolder {
    /// Returns a short description, as Dovecot words it.
    pub fn reason(self) -> &'static str {
        match self {
            InvalidFolder::BeginsWithSeparator => "begins with hierarchy separator",
            InvalidFolder::AdjacentSeparators => "has adjacent hierarchy separators",
            InvalidFolder::EndsWithSeparator => "ends with hierarchy separator",
        }
    }
}

impl fmt::Display for InvalidFolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// The name of the directory Dovecot renames a folder to while deleting it.
const TRASHED: &[u8] = b"..DOVECOT-TRASHED";

/// Classifies a direct child of the Maildir root by its name.
pub fn classify_dir(name: &[u8]) -> DirKind {
    let Some((&STORAGE_SEP, rest)) = name.split_first() else {
        return DirKind::NotDotName;
    };
    if rest.is_empty() || rest == b"." {
        return DirKind::SelfOrParent;
    }
    if name == TRASHED {
        return DirKind::BeingDeleted;
    }
    let levels: Vec<&[u8]> = rest.split(|&b| b == STORAGE_SEP).collect();
    let last = levels.len() - 1;
    let empty = |i: usize| levels.get(i).is_some_and(|l| l.is_empty());
    if empty(0) {
        DirKind::Invalid(InvalidFolder::BeginsWithSeparator)
    } else if (1..last).any(empty) || (last > 0 && empty(last) && empty(last - 1)) {
        DirKind::Invalid(InvalidFolder::AdjacentSeparators)
    } else if empty(last) {
        DirKind::Invalid(InvalidFolder::EndsWithSeparator)
    } else {
        DirKind::Folder
    }
}

/// How many names [`InvalidDirs`] keeps as examples.
pub const MAX_EXAMPLES: usize = 5;

/// How many bytes of a name an example shows before `…`.
pub const EXAMPLE_MAX: usize = 64;

/// The invalid folder directories of one Maildir, for one warning line:
/// the count and the first [`MAX_EXAMPLES`] names with their reasons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvalidDirs {
    /// How many were seen.
    pub count: usize,
    /// The first few, as (name, reason). The name is lossy UTF-8 of at
    /// most [`EXAMPLE_MAX`] bytes, with control characters escaped as
    /// Rust does (`\n`, `\u{1}`), cut to 2 × [`EXAMPLE_MAX`] characters.
    pub examples: Vec<(String, InvalidFolder)>,
}

impl InvalidDirs {
    /// Notes one invalid directory.
    pub fn add(&mut self, name: &[u8], why: InvalidFolder) {
        self.count += 1;
        if self.examples.len() < MAX_EXAMPLES {
            let head = name.get(..EXAMPLE_MAX).unwrap_or(name);
            let escaped: String = String::from_utf8_lossy(head).escape_debug().collect();
            let mut shown: String = escaped.chars().take(2 * EXAMPLE_MAX).collect();
            if name.len() > head.len() || shown.len() < escaped.len() {
                shown.push('…');
            }
            self.examples.push((shown, why));
        }
    }

    /// Returns true if none was seen.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// `2 directories are not mailboxes: ".a..b" (has adjacent hierarchy
/// separators), ".x." (ends with hierarchy separator)`, with `, …` when
/// there are more than the examples.
impl fmt::Display for InvalidDirs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.count == 1 {
            "directory is not a mailbox"
        } else {
            "directories are not mailboxes"
        };
        write!(f, "{} {what}:", self.count)?;
        for (i, (name, why)) in self.examples.iter().enumerate() {
            let comma = if i > 0 { "," } else { "" };
            write!(f, "{comma} \"{name}\" ({why})")?;
        }
        if self.count > self.examples.len() {
            f.write_str(", …")?;
        }
        Ok(())
    }
}

/// Returns the IMAP name of a folder directory, as Dovecot shows it.
///
/// The empty name (the Maildir root) is `INBOX`. Otherwise each level is
/// decoded from modified UTF-7, or checked to be UTF-8 when `utf8` is true
/// (`mailbox_list_utf8`), and the levels are joined with the namespace
/// separator `sep`.
///
/// When `sep` is not `.`, a level may contain `sep` itself (`.a/b` is legal
/// on disk when `sep` is `/`). The level is kept as it is, which makes the
/// result ambiguous with a real child folder; Dovecot without a
/// `vname_escape_char` does the same.
///
/// # Errors
///
/// Fails when `dir` is neither empty nor a folder (see [`is_folder_dir`]),
/// or when a level does not decode. Dovecot instead shows such a level raw
/// (and renames the directory when the raw name is not UTF-8);
/// [`imap_name_lossy`] gives that name.
pub fn imap_name(dir: &[u8], sep: char, utf8: bool) -> Result<String, NameError> {
    if dir.is_empty() {
        return Ok("INBOX".to_string());
    }
    if !is_folder_dir(dir) {
        return Err(NameError::new(dir, "not a Maildir++ folder directory name"));
    }
    let reason = if utf8 {
        "a level is not valid UTF-8"
    } else {
        "a level is not valid modified UTF-7"
    };
    let mut name = String::with_capacity(dir.len());
    for (i, level) in dir[1..].split(|&b| b == STORAGE_SEP).enumerate() {
        if i > 0 {
            name.push(sep);
        }
        match decode_level(level, utf8) {
            Some(decoded) => name.push_str(&decoded),
            None => return Err(NameError::new(dir, reason)),
        }
    }
    Ok(name)
}

/// Returns an IMAP name for any directory name, for log messages and as a
/// fallback when [`imap_name`] fails.
///
/// Levels that decode are decoded; the others are shown as lossy UTF-8 of
/// their raw bytes. That is what current Dovecot shows for a level that is
/// not valid modified UTF-7 (`mailbox_list_default_get_vname_part()`);
/// older versions kept the whole name raw as soon as one level failed. A
/// name that is not a folder at all has its leading `.` removed and is
/// otherwise split the same way.
pub fn imap_name_lossy(dir: &[u8], sep: char, utf8: bool) -> String {
    if dir.is_empty() {
        return "INBOX".to_string();
    }
    let body = dir.strip_prefix(b".").unwrap_or(dir);
    let mut name = String::with_capacity(dir.len());
    for (i, level) in body.split(|&b| b == STORAGE_SEP).enumerate() {
        if i > 0 {
            name.push(sep);
        }
        match decode_level(level, utf8) {
            Some(decoded) => name.push_str(&decoded),
            None => name.push_str(&String::from_utf8_lossy(level)),
        }
    }
    name
}

/// Decodes one level of a storage name.
fn decode_level(level: &[u8], utf8: bool) -> Option<String> {
    if utf8 {
        std::str::from_utf8(level).ok().map(str::to_string)
    } else {
        mutf7::decode(level)
    }
}

/// Returns the parent of an IMAP name, or `None` for a top-level name.
///
/// A name that starts with the separator has no usable parent either, so
/// `None` is returned rather than an empty name.
pub fn parent(imap: &str, sep: char) -> Option<&str> {
    match imap.rsplit_once(sep) {
        Some((parent, _)) if !parent.is_empty() => Some(parent),
        _ => None,
    }
}

/// Moves a name from under `old_prefix` to under `new_prefix`.
///
/// Returns the new name when `name` is `old_prefix` itself or one of its
/// descendants, and `None` otherwise. Dovecot renames `.A` and then each
/// `.A.x` one by one, so a watcher sees a burst of renames; this tells it
/// that the rename of a child is implied by the rename of its parent.
/// `Sentx` is not a descendant of `Sent`: the prefix must end at a
/// separator.
pub fn rebase(name: &str, old_prefix: &str, new_prefix: &str, sep: char) -> Option<String> {
    let rest = name.strip_prefix(old_prefix)?;
    if rest.is_empty() || rest.starts_with(sep) {
        Some(format!("{new_prefix}{rest}"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_dirs() {
        let cases: &[(&[u8], bool)] = &[
            (b".Sent", true),
            (b".A.B", true),
            (b".Entw&APw-rfe", true),
            (b".x", true),
            (b".\xff", true),
            (b"", false),
            (b".", false),
            (b"..", false),
            (b"..DOVECOT-TRASHED", false),
            (b"..A", false),
            (b".A.", false),
            (b".A..B", false),
            (b"Sent", false),
            (b"cur", false),
        ];
        for &(name, want) in cases {
            assert_eq!(
                is_folder_dir(name),
                want,
                "{:?}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn dir_kinds() {
        use InvalidFolder::*;
        #[rustfmt::skip]
        let cases: &[(&[u8], DirKind)] = &[
            (b".Sent", DirKind::Folder),
            (b".A.B", DirKind::Folder),
            (b".\xff", DirKind::Folder),
            (b".qmail", DirKind::Folder),
            (b"", DirKind::NotDotName),
            (b"cur", DirKind::NotDotName),
            (b"Sent.", DirKind::NotDotName),
            (b".", DirKind::SelfOrParent),
            (b"..", DirKind::SelfOrParent),
            (b"..DOVECOT-TRASHED", DirKind::BeingDeleted),
            (b"..dovecot-trashed", DirKind::Invalid(BeginsWithSeparator)),
            (b"..x", DirKind::Invalid(BeginsWithSeparator)),
            (b"...", DirKind::Invalid(BeginsWithSeparator)),
            (b"..x.", DirKind::Invalid(BeginsWithSeparator)),
            (b".a..b", DirKind::Invalid(AdjacentSeparators)),
            (b".a...b", DirKind::Invalid(AdjacentSeparators)),
            (b".a..", DirKind::Invalid(AdjacentSeparators)),
            (b".a.b..c.", DirKind::Invalid(AdjacentSeparators)),
            (b".a.", DirKind::Invalid(EndsWithSeparator)),
            (b".a.b.", DirKind::Invalid(EndsWithSeparator)),
        ];
        for &(name, want) in cases {
            let got = classify_dir(name);
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(name));
            assert_eq!(is_folder_dir(name), want == DirKind::Folder);
        }
    }

    #[test]
    fn invalid_dirs_give_one_bounded_line() {
        let mut dirs = InvalidDirs::default();
        assert!(dirs.is_empty());
        dirs.add(b".a..b", InvalidFolder::AdjacentSeparators);
        assert_eq!(
            dirs.to_string(),
            "1 directory is not a mailbox: \".a..b\" (has adjacent hierarchy separators)"
        );
        dirs.add(&[b'x'; 1000], InvalidFolder::EndsWithSeparator);
        for _ in 0..40_000 {
            dirs.add(b".a.", InvalidFolder::EndsWithSeparator);
        }
        assert_eq!(dirs.count, 40_002);
        assert_eq!(dirs.examples.len(), MAX_EXAMPLES);
        assert_eq!(dirs.examples[1].0, format!("{}…", "x".repeat(EXAMPLE_MAX)));
        let line = dirs.to_string();
        assert!(line.starts_with("40002 directories are not mailboxes: \".a..b\""));
        assert!(line.ends_with("\".a.\" (ends with hierarchy separator), …"));
        assert!(line.len() < 400, "{line}");
        // Found by tests/fuzz.rs: control characters grew a line past its
        // bound when escaped at display time.
        let mut dirs = InvalidDirs::default();
        dirs.add(&[b'\x01'; 64], InvalidFolder::EndsWithSeparator);
        dirs.add(b".a\n\"b.", InvalidFolder::EndsWithSeparator);
        assert!(dirs.examples[0].0.starts_with(&"\\u{1}".repeat(25)));
        assert!(dirs.examples[0].0.ends_with('…'));
        assert_eq!(dirs.examples[0].0.chars().count(), 2 * EXAMPLE_MAX + 1);
        assert_eq!(dirs.examples[1].0, ".a\\n\\\"b.");
        assert!(dirs.to_string().len() < 250, "{dirs}");
    }

    #[test]
    fn names() {
        let cases: &[(&[u8], char, bool, Option<&str>)] = &[
            (b"", '.', false, Some("INBOX")),
            (b"", '/', true, Some("INBOX")),
            (b".Sent", '.', false, Some("Sent")),
            (b".A.B", '.', false, Some("A.B")),
            (b".A.B", '/', false, Some("A/B")),
            (b".Archive.2024 Q1", '.', false, Some("Archive.2024 Q1")),
            (b".Entw&APw-rfe", '/', false, Some("Entwürfe")),
            (b".Entw&APw-rfe", '/', true, Some("Entw&APw-rfe")),
            ("Entwürfe".as_bytes(), '/', true, None),
            (".Entwürfe.x".as_bytes(), '/', true, Some("Entwürfe/x")),
            (".Entwürfe".as_bytes(), '/', false, None),
            (
                b".&U9dP4TDIMOwwpA-.&2D3eAA-",
                '/',
                false,
                Some("受信トレイ/😀"),
            ),
            (b".a/b.c", '/', false, Some("a/b/c")),
            (b".bad&", '/', false, None),
            (b".\xff", '/', true, None),
            (b"..DOVECOT-TRASHED", '/', false, None),
            (b".A.", '/', false, None),
            (b"Sent", '/', false, None),
        ];
        for &(dir, sep, utf8, want) in cases {
            let got = imap_name(dir, sep, utf8);
            assert_eq!(
                got.as_deref().ok(),
                want,
                "{:?}",
                String::from_utf8_lossy(dir)
            );
        }
    }

    #[test]
    fn lossy_names() {
        let cases: &[(&[u8], char, bool, &str)] = &[
            (b"", '/', false, "INBOX"),
            (b".Entw&APw-rfe.bad&", '/', false, "Entwürfe/bad&"),
            (b".\xff.ok", '/', true, "\u{fffd}/ok"),
            (b"..DOVECOT-TRASHED", '/', false, "/DOVECOT-TRASHED"),
            (b".A.B", '.', false, "A.B"),
        ];
        for &(dir, sep, utf8, want) in cases {
            assert_eq!(imap_name_lossy(dir, sep, utf8), want);
        }
    }

    #[test]
    fn errors_explain_themselves() {
        let err = imap_name(b".bad&", '/', false).unwrap_err();
        assert_eq!(err.reason(), "a level is not valid modified UTF-7");
        assert_eq!(
            err.to_string(),
            "folder directory \".bad&\": a level is not valid modified UTF-7"
        );
        let err = imap_name(b"cur", '/', false).unwrap_err();
        assert_eq!(err.reason(), "not a Maildir++ folder directory name");
    }

    #[test]
    fn parents() {
        let cases: &[(&str, char, Option<&str>)] = &[
            ("A/B/C", '/', Some("A/B")),
            ("A/B", '/', Some("A")),
            ("A", '/', None),
            ("INBOX", '.', None),
            ("A.B", '/', None),
            ("A.B", '.', Some("A")),
            ("/A", '/', None),
            ("", '/', None),
        ];
        for &(name, sep, want) in cases {
            assert_eq!(parent(name, sep), want, "{name:?}");
        }
    }

    #[test]
    fn rebases() {
        let cases: &[(&str, &str, &str, char, Option<&str>)] = &[
            ("A", "A", "B", '/', Some("B")),
            ("A/x", "A", "B", '/', Some("B/x")),
            ("A/x/y", "A/x", "Z", '/', Some("Z/y")),
            ("Ax", "A", "B", '/', None),
            ("A.x", "A", "B", '/', None),
            ("A.x", "A", "B/C", '.', Some("B/C.x")),
            ("B", "A", "C", '/', None),
            (
                "Entwürfe/2024",
                "Entwürfe",
                "Drafts",
                '/',
                Some("Drafts/2024"),
            ),
        ];
        for &(name, old, new, sep, want) in cases {
            assert_eq!(rebase(name, old, new, sep).as_deref(), want, "{name:?}");
        }
    }
}
