//! Reading one folder: proving it unchanged by its stamps, or listing
//! `new/` and `cur/` through handles that follow no link.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::Path;

use tracing::warn;

use super::control::{read_keywords, read_uids};
use super::listed::{Contents, FolderListing};
use super::{ScanOptions, folder_path, now_ns, unreadable_copy};
use crate::listing::Listing;
use crate::maildir::folders;
use crate::maildir::keywords::Keywords;
use crate::maildir::name::{self, Flags};
use crate::snapshot::{DirStamp, UidSource};
use crate::storefs::{self, EntryKind, Refused, StoreDir};
use crate::warnlimit::warn_path;
use rustix::fs::Stat;

/// Reads one folder; `None` when it vanished meanwhile.
pub(super) fn scan_folder(
    root_dir: &StoreDir,
    root: &Path,
    dir: &[u8],
    old: Option<&crate::snapshot::FolderSnapshot>,
    opts: &ScanOptions,
    prefix: &str,
) -> Option<FolderListing> {
    let path = folder_path(root, dir);
    let opened;
    let folder_dir = if dir.is_empty() {
        root_dir
    } else {
        match root_dir.dir(dir) {
            Ok(d) => {
                opened = d;
                &opened
            }
            Err(Refused::NotFound) => return None,
            Err(e) => {
                warn_path(
                    &path.display().to_string(),
                    "folder",
                    format!("folder {e}; keeping what was known"),
                );
                return old.map(unreadable_copy);
            }
        }
    };
    let meta = match folder_dir.stat() {
        Ok(m) => m,
        Err(e) => {
            warn!(path = %path.display(), "cannot read folder: {e}; keeping what was known");
            return old.map(unreadable_copy);
        }
    };
    let name = if dir.is_empty() {
        "INBOX".to_string()
    } else {
        match folders::imap_name(dir, opts.hier_sep, opts.utf8_names) {
            Ok(n) => format!("{prefix}{n}"),
            Err(e) => {
                let lossy = folders::imap_name_lossy(dir, opts.hier_sep, opts.utf8_names);
                warn_path(
                    &path.display().to_string(),
                    "name",
                    format!(
                        "folder name is not valid {}: {}; reported as {lossy:?}",
                        if opts.utf8_names {
                            "UTF-8"
                        } else {
                            "modified UTF-7"
                        },
                        e.reason()
                    ),
                );
                format!("{prefix}{lossy}")
            }
        }
    };
    let started = now_ns();
    // A stamp is trusted only when every part is at least a second older
    // than our listing, so no later change can share its clock tick.
    let settled = started - 1_000_000_000;
    // The UID lists of both servers and Courier's keyword directory (a
    // keyword change there renames no message file) count as one stamp:
    // the newest mtime and the summed lengths.
    let stamp_of = |new_m: Option<&Stat>, cur_m: Option<&Stat>, ul_m: &[Option<Stat>]| {
        let mut stamp = DirStamp {
            new_mtime: new_m.map(storefs::mtime_ns).unwrap_or(0),
            cur_mtime: cur_m.map(storefs::mtime_ns).unwrap_or(0),
            uidlist_mtime: ul_m
                .iter()
                .flatten()
                .map(storefs::mtime_ns)
                .max()
                .unwrap_or(0),
            uidlist_len: ul_m.iter().flatten().map(|m| m.st_size as u64).sum(),
            trusted: false,
        };
        stamp.trusted = new_m.is_some()
            && cur_m.is_some()
            && stamp.new_mtime < settled
            && stamp.cur_mtime < settled
            && stamp.uidlist_mtime < settled;
        stamp
    };
    let mut listing = FolderListing {
        dir: dir.to_vec(),
        name,
        dev: meta.st_dev,
        ino: meta.st_ino,
        stamp: DirStamp::default(),
        contents: Contents::Unchanged,
        uid_source: UidSource::Own,
        server_uids: None,
        keywords: Keywords::default(),
        keyword_table: old.and_then(|o| o.keyword_table.clone()),
    };
    // A folder with messages still waiting for their UIDs is read again
    // even when unchanged, because Dovecot may have named them since.
    let may_skip = |old: &crate::snapshot::FolderSnapshot| !opts.full && !old.pending;
    if let Some(old) = old.filter(|o| may_skip(o) && o.stamp.trusted) {
        // The usual case of a catch-up: the stamps of new/ and cur/ (both
        // directories, not links) prove the folder unchanged without
        // opening them.
        let sub_stat = |sub: &[u8]| {
            folder_dir
                .stat_at(sub)
                .ok()
                .filter(|m| storefs::stat_kind(m) == EntryKind::Dir)
        };
        let (new_m, cur_m) = (sub_stat(b"new"), sub_stat(b"cur"));
        if new_m.is_some() && cur_m.is_some() {
            let ul_m = if old.uid_source == UidSource::Dovecot && old.keyword_table.is_none() {
                // A folder Dovecot numbers, without Courier's keywords:
                // Courier's UID list is never read while Dovecot's is
                // usable, so its stamp is all that can tell a change. Two
                // lookups of names that are not there, out of five, were a
                // fifth of an unchanged scan's system time. (A Courier
                // keyword directory that appears here is seen with the
                // folder's next change.)
                [folder_dir.stat_at(b"dovecot-uidlist").ok(), None, None]
            } else {
                control_stats(folder_dir)
            };
            let stamp = stamp_of(new_m.as_ref(), cur_m.as_ref(), &ul_m);
            if stamp.unchanged_since(&old.stamp) {
                listing.stamp = stamp;
                listing.uid_source = old.uid_source;
                return Some(listing);
            }
        }
    }
    // new/ and cur/ are opened once, without following a link; their
    // stamps come from the handles, and the listing reads the same ones.
    let mut subs: [Option<StoreDir>; 2] = [None, None];
    for (i, sub) in [b"new".as_slice(), b"cur"].into_iter().enumerate() {
        match folder_dir.dir(sub) {
            Ok(d) => subs[i] = Some(d),
            Err(Refused::NotFound) => {}
            Err(e) => {
                warn_path(
                    &storefs::show(&path, sub),
                    "sub",
                    format!("{e}; the folder's messages are kept as they were"),
                );
                let mut l = old.map(unreadable_copy)?;
                l.name = listing.name;
                return Some(l);
            }
        }
    }
    let stat_of = |d: &Option<StoreDir>| d.as_ref().and_then(|d| d.stat().ok());
    let (new_m, cur_m) = (stat_of(&subs[0]), stat_of(&subs[1]));
    let ul_m = control_stats(folder_dir);
    let stamp = stamp_of(new_m.as_ref(), cur_m.as_ref(), &ul_m);
    listing.stamp = stamp;
    if let Some(old) = old
        && may_skip(old)
        && stamp.unchanged_since(&old.stamp)
    {
        listing.uid_source = old.uid_source;
        return Some(listing);
    }
    // Room for the messages from the start (growing the map moved every
    // entry several times): as many as last time, or what the directories'
    // sizes suggest (an ext4 entry of a Dovecot name takes about 72 bytes).
    let dir_bytes: u64 = [&new_m, &cur_m]
        .iter()
        .filter_map(|m| m.as_ref().map(|m| m.st_size as u64))
        .sum();
    let hint = old
        .map_or(0, |o| o.count as usize)
        .max((dir_bytes / 80) as usize)
        .min(1 << 20);
    // About 60 bytes a name (a Dovecot name with its sizes and flags).
    let mut messages = Listing::with_capacity(hint, hint * 64);
    for (i, sub) in subs.iter().enumerate() {
        let Some(sub) = sub else { continue };
        let in_new = i == 0;
        if let Err(e) = list_messages(sub, &path, in_new, opts, &|_| true, &mut messages) {
            warn!(path = %storefs::show(&path, if in_new { b"new" } else { b"cur" }),
                "cannot list messages: {e}; keeping what was known (run as the mail user or root)");
            listing.contents = Contents::Unreadable;
            return Some(listing);
        }
    }
    messages.finish();
    if opts.stat_sizes {
        // Quota needs sizes; only names without S= cost a stat (of the
        // entry itself: links were skipped when listing).
        for i in 0..messages.len() {
            let m = messages.at(i);
            if m.size().is_some() {
                continue;
            }
            let d = &subs[if m.in_new() { 0 } else { 1 }];
            let size = d
                .as_ref()
                .and_then(|d| d.stat_at(m.file()).ok())
                .map(|m| m.st_size as u64);
            messages.set_size(i, size);
        }
    }
    if let Some((source, header)) = read_uids(folder_dir, &path, &mut messages) {
        listing.uid_source = source;
        listing.server_uids = Some(header);
    }
    listing.keywords = read_keywords(folder_dir, &path);
    if let Some(by_base) = crate::courier::read_keywords(folder_dir, &path) {
        let old_table = old.and_then(|o| o.keyword_table.as_deref());
        let table = courier_keyword_bits(&mut messages, &by_base, old_table, &path);
        listing.keywords = Keywords::parse(table.as_bytes());
        listing.keyword_table = Some(table);
    } else if let Some(t) = old.and_then(|o| o.keyword_table.clone()) {
        // The directory went: every keyword is cleared, under the same table.
        for i in 0..messages.len() {
            let flags = messages.at(i).flags().difference(ALL_KEYWORDS);
            messages.set_flags(i, flags);
        }
        listing.keywords = Keywords::parse(t.as_bytes());
        listing.keyword_table = Some(t);
    }
    listing.contents = Contents::Listed(messages);
    Some(listing)
}

/// The stats of the files whose change may change a folder's UIDs or
/// keywords without touching `new/` or `cur/`.
fn control_stats(folder: &StoreDir) -> [Option<Stat>; 3] {
    [
        b"dovecot-uidlist".as_slice(),
        b"courierimapuiddb",
        crate::courier::KEYWORD_DIR,
    ]
    .map(|name| folder.stat_at(name).ok())
}

/// Lists the message files of one of a folder's `new/` or `cur/` into
/// `messages`. Entries that are not regular files (links, FIFOs, devices)
/// are no messages: they are skipped with one warning per directory.
pub(super) fn list_messages(
    sub: &StoreDir,
    folder: &Path,
    in_new: bool,
    opts: &ScanOptions,
    keep: &dyn Fn(&[u8]) -> bool,
    messages: &mut Listing,
) -> io::Result<()> {
    let mut odd: Option<(Vec<u8>, &'static str)> = None;
    let mut odd_count = 0u64;
    for e in sub.entries()? {
        let (file, kind) = e?;
        match kind {
            EntryKind::File => {}
            EntryKind::Dir => continue,
            EntryKind::Link | EntryKind::Other(_) => {
                if name::parse(&file, opts.info_sep).is_some() {
                    odd_count += 1;
                    if odd.is_none() {
                        let what = match kind {
                            EntryKind::Other(k) => k,
                            _ => "a symbolic link",
                        };
                        odd = Some((file, what));
                    }
                }
                continue;
            }
        }
        let Some(parsed) = name::parse(&file, opts.info_sep) else {
            continue;
        };
        if !keep(parsed.base) {
            continue;
        }
        // During a move from new/ to cur/ a name can be seen in both;
        // cur/ (read second) is the newer one ([`Listing::finish`]).
        if let Err(full) =
            messages.push(&file, parsed.base.len(), in_new, parsed.flags, parsed.size)
        {
            return Err(io::Error::other(match full {
                crate::listing::Full::NameTooLong => "a file name longer than 255 bytes",
                crate::listing::Full::TooMany => "more than 4 GiB of file names",
            }));
        }
    }
    if let Some((first, what)) = odd {
        let dir = folder.join(if in_new { "new" } else { "cur" });
        let more = if odd_count > 1 {
            format!(
                " (and {} more entries that are no regular files)",
                odd_count - 1
            )
        } else {
            String::new()
        };
        warn_path(
            &storefs::show(&dir, &first),
            "not-regular",
            format!("{what}, not a message file: skipped, never opened{more}"),
        );
    }
    Ok(())
}

/// Every keyword bit of [`Flags`].
const ALL_KEYWORDS: Flags = Flags((1 << 26) - 1);

/// Sets the keyword bits of a Courier folder's messages from their names
/// in `courierimapkeywords/` (Courier's file names carry none), numbering
/// new names in the folder's table; returns the table's text to keep.
fn courier_keyword_bits(
    messages: &mut Listing,
    by_base: &HashMap<Vec<u8>, BTreeSet<String>>,
    old_table: Option<&str>,
    path: &Path,
) -> String {
    use crate::maildir::courier_keywords::Table;
    let mut table = old_table.map(Table::parse).unwrap_or_default();
    let mut unnumbered = 0usize;
    // In Dovecot's order, so a folder's first keywords number alike on
    // every run.
    let mut bases: Vec<&[u8]> = messages
        .iter()
        .map(|m| m.base())
        .filter(|b| by_base.contains_key(*b))
        .collect();
    name::sort_dovecot(&mut bases);
    let mut bits: Vec<(usize, Flags)> = Vec::with_capacity(bases.len());
    for base in bases {
        let mut flags = Flags::default();
        for kw in by_base.get(base).into_iter().flatten() {
            match table.number(kw) {
                Some(i) => flags = flags.union(Flags::keyword(i)),
                None => unnumbered += 1,
            }
        }
        if let Some(i) = messages.find(base) {
            bits.push((i, flags));
        }
    }
    for i in 0..messages.len() {
        let flags = messages.at(i).flags().difference(ALL_KEYWORDS);
        messages.set_flags(i, flags);
    }
    for (i, flags) in bits {
        let now = messages.at(i).flags().union(flags);
        messages.set_flags(i, now);
    }
    if unnumbered > 0 {
        warn_path(
            &storefs::show(path, crate::courier::KEYWORD_DIR),
            "courier-keywords-full",
            format!(
                "more than {} keyword names in this folder: {unnumbered} keyword settings not reported",
                crate::maildir::courier_keywords::TABLE_SIZE
            ),
        );
    }
    table.text()
}
