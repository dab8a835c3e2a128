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
/// `.customflags` may sit next to the folders.
pub fn is_folder_dir(name: &[u8]) -> bool {
    match name.split_first() {
        Some((&STORAGE_SEP, rest)) => {
            !rest.is_empty()
                && rest
                    .split(|&b| b == STORAGE_SEP)
                    .all(|level| !level.is_empty())
        }
        _ => false,
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
