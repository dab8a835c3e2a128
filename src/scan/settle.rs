//! Before a listing is diffed: expunges confirmed by a second look, and
//! a short wait for the server to number new messages.

use std::collections::HashSet;
use std::thread;
use std::time::{Duration, Instant};

use tracing::debug;

use super::control::{read_keywords, read_uids};
use super::folder::list_messages;
use super::listed::{Contents, FolderListing, UserListing};
use super::{ScanOptions, folder_path};
use crate::listing::Listing;
use crate::snapshot::{UidSource, UserSnapshot};
use crate::storefs;

/// Makes sure a message missing from a listing is really gone before the
/// diff calls it expunged.
///
/// A directory read while another process renames files in it may miss
/// an entry altogether (on ext4 a renamed name can move to a place the
/// reading has already passed). A message whose flags were changed during
/// the listing would then look expunged, and appended again at the next
/// look: two false events. So when messages of the snapshot are missing,
/// the folder is listed again (at most twice more) and whatever turns up
/// is taken from the later listing. A message truly expunged is missing
/// from every listing.
pub fn confirm_gone(listing: &mut UserListing, old: &UserSnapshot, opts: &ScanOptions) {
    let root = listing.root.clone();
    for (dir, f) in listing.folders.iter_mut() {
        let Contents::Listed(messages) = &mut f.contents else {
            continue;
        };
        let Some(known) = old.folders.get(dir).and_then(|o| o.messages.as_ref()) else {
            continue;
        };
        // Both are in base-name order: one walk finds what is missing.
        let mut missing: Vec<Vec<u8>> = Vec::new();
        crate::listing::merge(
            known.keys(),
            messages.iter(),
            |b| *b,
            |m| m.base(),
            |side| {
                if let crate::listing::Side::Left(b) = side {
                    missing.push(b.to_vec());
                }
            },
        );
        let mut found = false;
        for _ in 0..2 {
            if missing.is_empty() {
                break;
            }
            let Ok(folder) = storefs::folder(&root, dir) else {
                break;
            };
            let path = folder_path(&root, dir);
            // Only the missing names are kept: in a folder of a million
            // messages with a few expunged, another full listing in memory
            // doubled the scan's peak.
            let wanted: HashSet<&[u8]> = missing.iter().map(|b| b.as_slice()).collect();
            let keep = |b: &[u8]| wanted.contains(b);
            let mut again = Listing::default();
            for (sub, in_new) in [(b"new".as_slice(), true), (b"cur", false)] {
                if let Ok(d) = folder.dir(sub) {
                    let _ = list_messages(&d, &path, in_new, opts, &keep, &mut again);
                }
            }
            again.finish();
            if again.is_empty() {
                continue;
            }
            debug!(path = %path.display(), found = again.len(), "messages missed by a listing (renamed meanwhile) were found again");
            for m in again.iter() {
                // Pushed after the first listing's: this one wins.
                let _ = messages.push(m.file(), m.base().len(), m.in_new(), m.flags(), m.size());
            }
            messages.finish();
            found = true;
            missing.retain(|base| !again.contains(base));
        }
        if found {
            // The names found again need their UIDs from the server's list.
            if let Ok(folder) = storefs::folder(&root, dir) {
                let path = folder_path(&root, dir);
                if let Some((source, header)) = read_uids(&folder, &path, messages) {
                    f.uid_source = source;
                    f.server_uids = Some(header);
                }
            }
        }
    }
}

/// Answers whether a base name of a folder (by directory) already has a
/// UID under a UIDVALIDITY, from the snapshot.
pub type KnownUid<'a> = dyn Fn(&[u8], &[u8], u32) -> bool + 'a;

/// Waits, up to `deadline`, for Dovecot to name what the listing found
/// before it: UIDs of new files in `dovecot-uidlist` and new keyword
/// letters in `dovecot-keywords`. Dovecot writes both just after the file,
/// so a scan that catches a delivery mid-way would otherwise report it
/// without its UID.
///
/// `known` says whether a base name already has a UID from the snapshot.
pub fn wait_for_server(listing: &mut UserListing, known: &KnownUid, deadline: Instant) {
    // Without time to wait (`--uid-wait-ms 0`) there is nothing to look
    // for: that look costs a lookup per listed message.
    if !listing.dovecot || Instant::now() >= deadline {
        return;
    }
    let root = listing.root.clone();
    loop {
        let mut waiting = Vec::new();
        for (dir, f) in &listing.folders {
            let Contents::Listed(msgs) = &f.contents else {
                continue;
            };
            let missing = match &f.server_uids {
                // A folder created a moment ago gets its uidlist just after
                // its directories.
                None => f.uid_source == UidSource::Own && !f.dir.is_empty() && msgs.is_empty(),
                Some(uids) => msgs.iter().any(|m| {
                    // The snapshot joined into the listing answers first.
                    let joined = msgs.joined() == Some(uids.uidvalidity)
                        && m.old().is_some_and(|o| o.uid != 0);
                    (m.uid() == 0 && !joined && !known(dir, m.base(), uids.uidvalidity))
                        || m.flags()
                            .keyword_indexes()
                            .any(|i| f.keywords.name(i).is_none())
                }),
            };
            if missing && f.uid_source != UidSource::Courier {
                waiting.push(dir.clone());
            }
        }
        if waiting.is_empty() || Instant::now() >= deadline {
            if !waiting.is_empty() {
                debug!(
                    folders = waiting.len(),
                    "Dovecot has not named every new file yet"
                );
            }
            return;
        }
        thread::sleep(Duration::from_millis(10).min(deadline - Instant::now()));
        for dir in waiting {
            if let Some(f) = listing.folders.get_mut(&dir) {
                let path = folder_path(&root, &dir);
                // The folder may have become unreadable or gone meanwhile:
                // then what was read before stands.
                if let Ok(folder) = storefs::folder(&root, &dir)
                    && let Contents::Listed(msgs) = &mut f.contents
                {
                    if let Some((source, header)) = read_uids(&folder, &path, msgs) {
                        f.uid_source = source;
                        f.server_uids = Some(header);
                    }
                    f.keywords = read_keywords(&folder, &path);
                }
            }
        }
    }
}

/// Waits, up to `deadline`, for Courier-IMAP to write the UID list of a
/// folder that had one before under the same inode and has none now.
/// Courier renames a folder, then deletes its `courierimapuiddb` and
/// writes a new one with a new UIDVALIDITY: a listing between the two
/// would give the MailboxRename the old one.
pub fn wait_for_courier_lists(listing: &mut UserListing, old: &UserSnapshot, deadline: Instant) {
    let had_list = |f: &FolderListing| {
        f.server_uids.is_none()
            && matches!(f.contents, Contents::Listed(_))
            && old
                .folders
                .values()
                .any(|o| o.uid_source == UidSource::Courier && o.dev == f.dev && o.ino == f.ino)
    };
    let root = listing.root.clone();
    loop {
        let waiting: Vec<Vec<u8>> = listing
            .folders
            .iter()
            .filter(|(_, f)| had_list(f))
            .map(|(d, _)| d.clone())
            .collect();
        if waiting.is_empty() || Instant::now() >= deadline {
            return;
        }
        thread::sleep(Duration::from_millis(10).min(deadline - Instant::now()));
        for dir in waiting {
            if let (Some(f), Ok(folder)) =
                (listing.folders.get_mut(&dir), storefs::folder(&root, &dir))
                && let Contents::Listed(msgs) = &mut f.contents
                && let Some((source, header)) = read_uids(&folder, &folder_path(&root, &dir), msgs)
            {
                f.uid_source = source;
                f.server_uids = Some(header);
            }
        }
    }
}
