//! Reading what Courier-IMAP keeps beside a Maildir: whether a store is
//! Courier's (for its `INBOX.` namespace), and a folder's keywords from
//! `courierimapkeywords/`.
//!
//! Like every read of the store this goes through [`storefs`]: no link is
//! followed, each file is read up to a cap, and a directory of absurd size
//! is read only in part (with a warning), never whole into memory.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use crate::maildir::courier_keywords::{self, UpdateName};
use crate::storefs::{self, EntryKind, Refused, StoreDir};
use crate::warnlimit::warn_path;

/// The keyword directory in each folder.
pub const KEYWORD_DIR: &[u8] = b"courierimapkeywords";
/// `:list` of a folder of a million messages with keywords fits.
pub const LIST_CAP: u64 = 128 << 20;
/// One update file holds one message's keyword names: a handful.
pub const UPDATE_CAP: u64 = 8 << 10;
/// Update files read per folder and look; Courier merges them into
/// `:list` within minutes, so a real folder has far fewer. With
/// [`UPDATE_CAP`] this bounds what a hostile directory costs.
pub const MAX_UPDATES: usize = 20_000;

/// Whether the Maildir at `root` is unambiguously Courier-IMAP's: it has
/// `courierimapuiddb` or `courierimapsubscribed` in its root, and neither
/// Dovecot's `dovecot-uidlist` nor its `subscriptions`. (A Dovecot
/// converted from Courier keeps Courier's files but writes its own beside
/// them; its prefix is a setting, `--namespace-prefix`.)
pub fn is_courier_store(root: &StoreDir) -> bool {
    let has = |name: &[u8]| root.stat_at(name).is_ok();
    (has(b"courierimapuiddb") || has(b"courierimapsubscribed"))
        && !has(b"dovecot-uidlist")
        && !has(b"subscriptions")
}

/// A folder's keywords by message base name, read from its
/// `courierimapkeywords/`; `None` when the folder has no such directory
/// (Courier never used keywords there, or this is no Courier store).
///
/// Courier removes an update file once merged: a file listed but gone when
/// opened means the directory changed under us, so it is read again (as
/// Courier itself does), a few times at most.
pub fn read_keywords(folder: &StoreDir, path: &Path) -> Option<HashMap<Vec<u8>, BTreeSet<String>>> {
    let shown = storefs::show(path, KEYWORD_DIR);
    let dir = match folder.dir(KEYWORD_DIR) {
        Ok(d) => d,
        Err(Refused::NotFound) => return None,
        Err(e) => {
            warn_path(
                &shown,
                "courier-keywords",
                format!("{e}; keywords unknown for now"),
            );
            return None;
        }
    };
    for _ in 0..5 {
        if let Some(found) = read_once(&dir, &shown) {
            return Some(found);
        }
    }
    warn_path(
        &shown,
        "courier-keywords-busy",
        "kept changing while read; keywords unknown until it holds still",
    );
    None
}

/// One look at the directory; `None` when an update file vanished.
fn read_once(dir: &StoreDir, shown: &str) -> Option<HashMap<Vec<u8>, BTreeSet<String>>> {
    let entries = match dir.entries() {
        Ok(e) => e,
        Err(e) => {
            warn_path(shown, "courier-keywords", format!("cannot list: {e}"));
            return Some(HashMap::new());
        }
    };
    let mut names: Vec<Vec<u8>> = Vec::new();
    let mut list = None;
    let mut skipped = 0usize;
    for (name, kind) in entries.flatten() {
        if kind != EntryKind::File {
            continue;
        }
        match courier_keywords::classify(&name) {
            UpdateName::List => list = Some(()),
            UpdateName::Newest(_) | UpdateName::Aged(..) if names.len() < MAX_UPDATES => {
                names.push(name)
            }
            UpdateName::Newest(_) | UpdateName::Aged(..) => skipped += 1,
            UpdateName::Other => {}
        }
    }
    if skipped > 0 {
        warn_path(
            shown,
            "courier-keywords-many",
            format!("{skipped} update files past the first {MAX_UPDATES} not read"),
        );
    }
    let mut updates = Vec::with_capacity(names.len());
    let mut bad = 0;
    for name in &names {
        match dir.read(name, UPDATE_CAP) {
            Ok(bytes) => {
                let (set, b) = courier_keywords::parse_update(&bytes);
                bad += b;
                updates.push((courier_keywords::classify(name), set));
            }
            Err(Refused::NotFound) => return None,
            Err(e) => {
                warn_path(
                    &format!("{shown}/{}", String::from_utf8_lossy(name)),
                    "courier-keyword-file",
                    format!("{e}; ignored"),
                );
            }
        }
    }
    let parsed = match list {
        None => courier_keywords::ListFile::default(),
        Some(()) => match dir.read(b":list", LIST_CAP) {
            Ok(bytes) => courier_keywords::parse_list(&bytes),
            Err(Refused::NotFound) => return None,
            Err(e) => {
                warn_path(shown, "courier-keyword-list", format!(":list {e}; ignored"));
                courier_keywords::ListFile::default()
            }
        },
    };
    if parsed.ignored + bad > 0 {
        warn_path(
            shown,
            "courier-keyword-lines",
            format!(
                "{} keyword lines ignored (not IMAP keywords, or indexes without a name)",
                parsed.ignored + bad
            ),
        );
    }
    Some(courier_keywords::merge(parsed, updates))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn kw(folder: &Path) -> Option<Vec<(String, Vec<String>)>> {
        let d = StoreDir::open(folder).unwrap();
        let mut v: Vec<(String, Vec<String>)> = read_keywords(&d, folder)?
            .into_iter()
            .map(|(b, s)| (String::from_utf8(b).unwrap(), s.into_iter().collect()))
            .collect();
        v.sort();
        Some(v)
    }

    #[test]
    fn reads_the_list_and_updates_and_skips_what_is_no_file() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(kw(t.path()), None, "no directory: no Courier keywords");
        let k = t.path().join("courierimapkeywords");
        fs::create_dir(&k).unwrap();
        assert_eq!(kw(t.path()), Some(vec![]));
        fs::write(k.join(":list"), "$Label1\n$Label2\n\na:0 1\nb:1\nc:0\n").unwrap();
        fs::write(k.join(".5.a"), "$Label2\n").unwrap();
        fs::write(k.join("b"), "").unwrap();
        fs::write(k.join(".tmp.123"), "Junk\n").unwrap();
        fs::write(t.path().join("elsewhere"), "Secret\n").unwrap();
        std::os::unix::fs::symlink(t.path().join("elsewhere"), k.join("c")).unwrap();
        fs::create_dir(k.join("d")).unwrap();
        let one = |b: &str, n: &[&str]| (b.to_string(), n.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            kw(t.path()),
            Some(vec![one("a", &["$Label2"]), one("c", &["$Label1"])]),
            "a link or a directory is no update file; never followed"
        );
        // :list as a link is not read either.
        fs::remove_file(k.join(":list")).unwrap();
        std::os::unix::fs::symlink(t.path().join("elsewhere"), k.join(":list")).unwrap();
        assert_eq!(kw(t.path()), Some(vec![one("a", &["$Label2"])]));
    }

    #[test]
    fn courier_stores_are_told_apart() {
        let t = tempfile::tempdir().unwrap();
        let is = || is_courier_store(&StoreDir::open(t.path()).unwrap());
        assert!(!is(), "a bare Maildir");
        fs::write(t.path().join("courierimapuiddb"), "1 1 1\n").unwrap();
        assert!(is());
        fs::write(t.path().join("dovecot-uidlist"), "3 V1 N1\n").unwrap();
        assert!(!is(), "Dovecot serves it now");
        fs::remove_file(t.path().join("dovecot-uidlist")).unwrap();
        fs::write(t.path().join("subscriptions"), "").unwrap();
        assert!(!is());
        fs::remove_file(t.path().join("subscriptions")).unwrap();
        fs::remove_file(t.path().join("courierimapuiddb")).unwrap();
        fs::write(t.path().join("courierimapsubscribed"), "INBOX.Sent\n").unwrap();
        assert!(is());
    }
}
