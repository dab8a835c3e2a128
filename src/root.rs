//! Whether a path named as one user's Maildir is one, checked once at
//! start, so a typo in a path is an error (sysexits `EX_NOINPUT`) and not a
//! silent run over nothing: a `scan` that records a user with no folders,
//! or a `watch` that waits for a directory that will never appear.
//!
//! The rule: the path must be a directory (a symbolic link the
//! administrator made to one is fine) holding at least one of `cur/`,
//! `new/` and `tmp/`, or one of the control files Dovecot or Courier
//! keep at a Maildir's root. With `allow_missing` (Dovecot creates a
//! user's Maildir at the first delivery) a path that does not exist yet,
//! or an empty directory, is accepted too. A directory that exists but
//! may not be listed is left to the scan, which warns and keeps what was
//! known. Users found through a store template are not checked here:
//! they may appear at any time; nor is a named Maildir earlier runs saw
//! with folders (an unmounted store warns and keeps what was known).

use std::io;
use std::path::Path;

/// What marks a directory as a Maildir root: the three directories every
/// writer creates, and the control files Dovecot and Courier keep there.
pub const MARKERS: [&str; 9] = [
    "cur",
    "new",
    "tmp",
    "dovecot-uidlist",
    "dovecot-keywords",
    "maildirsize",
    "subscriptions",
    "courierimapuiddb",
    "courierimapsubscribed",
];

/// Why a named Maildir cannot be used, as a message that says what to do;
/// `Ok` when it can.
pub fn check(path: &Path, allow_missing: bool) -> Result<(), String> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound && allow_missing => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!(
                "MAILDIR {shown} does not exist; check the path (for a Maildir the server \
                 creates at the first delivery pass --allow-missing, for users who come \
                 later a --store template)"
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(format!(
                "MAILDIR {shown}: permission denied; run as the owner of the mail store \
                 (e.g. vmail) or a user in its group"
            ));
        }
        Err(e) => return Err(format!("MAILDIR {shown}: {e}")),
    };
    if !meta.is_dir() {
        return Err(format!(
            "MAILDIR {shown} is not a directory; name the Maildir directory itself \
             (the one holding cur/, new/ and tmp/)"
        ));
    }
    let mut empty = true;
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        // A directory we may not list is the scan's to report: it warns,
        // naming it, and keeps what was known (no mass expunge).
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(()),
        Err(e) => return Err(format!("MAILDIR {shown}: {e}")),
    };
    for entry in entries {
        let Ok(entry) = entry else { continue };
        empty = false;
        let name = entry.file_name();
        if MARKERS
            .iter()
            .any(|m| name.as_encoded_bytes() == m.as_bytes())
        {
            return Ok(());
        }
    }
    if empty && allow_missing {
        return Ok(());
    }
    Err(format!(
        "MAILDIR {shown} is not a Maildir (none of {} in it); name a user's Maildir \
         directory, or use --store TEMPLATE for many users",
        MARKERS.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_are_and_are_not_maildirs() {
        let tmp = tempfile::tempdir().unwrap();
        let p = |n: &str| tmp.path().join(n);
        std::fs::create_dir_all(p("md/cur")).unwrap();
        std::fs::create_dir_all(p("uidlist-only")).unwrap();
        std::fs::write(p("uidlist-only/dovecot-uidlist"), "3 V1 N1\n").unwrap();
        std::fs::create_dir_all(p("empty")).unwrap();
        std::fs::create_dir_all(p("home/bob")).unwrap();
        std::fs::write(p("home/bob/notes.txt"), "x").unwrap();
        std::fs::write(p("file"), "x").unwrap();
        std::os::unix::fs::symlink(p("md"), p("link")).unwrap();
        // (path, allow_missing, Ok or a word of the message)
        let table: [(&str, bool, Result<(), &str>); 12] = [
            ("md", false, Ok(())),
            ("link", false, Ok(())),
            ("uidlist-only", false, Ok(())),
            ("nope", false, Err("does not exist")),
            ("nope/Maildir", false, Err("does not exist")),
            ("nope", true, Ok(())),
            ("empty", false, Err("is not a Maildir")),
            ("empty", true, Ok(())),
            ("home/bob", false, Err("is not a Maildir")),
            ("home/bob", true, Err("is not a Maildir")),
            ("file", false, Err("is not a directory")),
            ("file", true, Err("is not a directory")),
        ];
        for (name, allow, want) in table {
            let got = check(&p(name), allow);
            match (want, &got) {
                (Ok(()), Ok(())) => {}
                (Err(word), Err(msg)) => {
                    assert!(msg.contains(word), "{name}: {msg}");
                    assert!(msg.contains(&*p(name).to_string_lossy()), "{name}: {msg}");
                }
                _ => panic!("{name} (allow_missing {allow}): {got:?}"),
            }
        }
    }
}
