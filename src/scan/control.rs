//! The small control files beside the messages: the servers' UID lists
//! and keywords, subscriptions, `maildirsize`, read bounded and checked
//! for holding still.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use tracing::debug;

use super::listed::{NameHash, UidHeader};
use super::{
    KEYWORDS_CAP, MAILDIRSIZE_CAP, SUBSCRIPTIONS_CAP, ScanOptions, UIDLIST_CAP, VSIZE_READ_CAP,
    now_ns,
};
use crate::listing::Listing;
use crate::maildir::keywords::Keywords;
use crate::maildir::{subscriptions, uidlist};
use crate::snapshot::UidSource;
use crate::storefs::{self, Refused, StoreDir};
use crate::warnlimit::warn_path;

/// Reads `dovecot-uidlist`, else `courierimapuiddb`, joining its UIDs
/// into the listed messages (replacing those of an earlier read); returns
/// where the UIDs come from and the list's header, or `None` (and the
/// earlier UIDs) when neither list could be read.
///
/// The file is read in pieces and never held whole: of a list of a million
/// records only the listed names' UIDs are kept (in the [`Listing`]),
/// with an 8-byte hash of each name that is not listed, to count names
/// listed twice for the warning.
pub(super) fn read_uids(
    folder: &StoreDir,
    path: &Path,
    messages: &mut Listing,
) -> Option<(UidSource, UidHeader)> {
    use std::hash::BuildHasher;
    let before: Vec<u32> = messages.iter().map(|m| m.uid()).collect();
    for (file, source) in [
        (b"dovecot-uidlist".as_slice(), UidSource::Dovecot),
        (b"courierimapuiddb", UidSource::Courier),
    ] {
        let shown = storefs::show(path, file);
        let mut parser = uidlist::Parser::new();
        messages.clear_uids();
        let hasher = NameHash::default();
        let mut unlisted: HashMap<u64, u32, NameHash> = HashMap::default();
        // Records come in UID order, which is mostly the names' order too.
        let mut near = 0;
        let read = folder.file(file).and_then(|mut f| {
            read_lines(&mut f, UIDLIST_CAP, &mut |line| {
                parser.line(
                    line,
                    &mut |uid, name| match messages.find_near(name, near) {
                        Some(i) => {
                            near = i + 1;
                            let old = messages.at(i).uid();
                            messages.set_uid(i, uid);
                            (old != 0).then_some(old)
                        }
                        None => unlisted.insert(hasher.hash_one(name), uid),
                    },
                )
            })
        });
        let partial = match read {
            Ok(p) => p,
            Err(Refused::NotFound) => continue,
            Err(e) => {
                messages.clear_uids();
                warn_path(
                    &shown,
                    "uidlist",
                    format!("{e}; UIDs of this folder are unknown for now"),
                );
                continue;
            }
        };
        match parser.finish(&partial) {
            Ok(list) => {
                if !list.dropped.is_empty() {
                    // A record dropped leaves its message without a UID:
                    // reported as pending until the server rewrites the list.
                    warn_path(
                        &shown,
                        "uidlist-records",
                        format!(
                            "{} records ignored ({}), e.g. {:?}; their messages have no UID until the server rewrites the list",
                            list.dropped.total(),
                            list.dropped,
                            list.warnings
                        ),
                    );
                } else {
                    for w in &list.warnings {
                        debug!(path = %shown, "{w}");
                    }
                }
                let header = UidHeader {
                    uidvalidity: list.uidvalidity,
                    uidnext: list.next_uid,
                    guid: list.guid,
                };
                return Some((source, header));
            }
            Err(e) => {
                messages.clear_uids();
                warn_path(
                    &shown,
                    "uidlist",
                    format!("unusable UID list ({e}); UIDs of this folder are unknown for now"),
                );
            }
        }
    }
    for (i, uid) in before.into_iter().enumerate() {
        messages.set_uid(i, uid);
    }
    None
}

/// Reads a file of at most `cap` bytes line by line, in pieces of 1 MiB:
/// `each` gets every complete line (without its `\n`); returns what
/// followed the last `\n`. A file that grows past the cap while being
/// read is refused as well.
pub(super) fn read_lines(
    file: &mut storefs::StoreFile,
    cap: u64,
    each: &mut dyn FnMut(&[u8]),
) -> Result<Vec<u8>, Refused> {
    const PIECE: usize = 1 << 20;
    let size = file.len();
    if size > cap {
        return Err(Refused::TooBig { size, cap });
    }
    let f = file.file_mut();
    let mut buf: Vec<u8> = Vec::with_capacity(PIECE.min(size as usize + 1));
    let mut total = 0u64;
    loop {
        // Room for another piece after a line that is not complete yet.
        let start = buf.len();
        buf.resize(start + PIECE, 0);
        let n = loop {
            match f.read(&mut buf[start..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Refused::Io(e)),
            }
        };
        buf.truncate(start + n);
        total += n as u64;
        if total > cap {
            return Err(Refused::TooBig { size: total, cap });
        }
        if n == 0 {
            return Ok(buf);
        }
        // Lines that ended within this piece (what came before it holds
        // no line end, so a long line is not searched again).
        let (mut from, mut search) = (0, start);
        while let Some(end) = buf[search..].iter().position(|&b| b == b'\n') {
            each(&buf[from..search + end]);
            from = search + end + 1;
            search = from;
        }
        buf.drain(..from);
    }
}

/// Reads a folder's `dovecot-keywords`; none when missing or unusable.
pub fn read_keywords(folder: &StoreDir, path: &Path) -> Keywords {
    match folder.read(b"dovecot-keywords", KEYWORDS_CAP) {
        Ok(b) => {
            let (keywords, ignored) = Keywords::parse_counted(&b);
            if ignored.total() > 0 {
                warn_path(
                    &storefs::show(path, b"dovecot-keywords"),
                    "keywords-lines",
                    format!(
                        "{} lines ignored, e.g. {:?}",
                        ignored.total(),
                        ignored.examples
                    ),
                );
            }
            keywords
        }
        Err(Refused::NotFound) => Keywords::default(),
        Err(e) => {
            warn_path(
                &storefs::show(path, b"dovecot-keywords"),
                "keywords",
                format!("{e}; keyword names unknown for now"),
            );
            Keywords::default()
        }
    }
}

/// Reads Dovecot's `subscriptions`, else Courier's `courierimapsubscribed`.
///
/// These files may be edited in place, so a read is trusted only when the
/// file held still during it and, in `scan`, when it is older than
/// [`ScanOptions::settle`]: a file truncated but not yet written again
/// would otherwise unsubscribe everything. `None` keeps what was known.
pub(super) fn read_subscriptions(
    root_dir: &StoreDir,
    root: &Path,
    opts: &ScanOptions,
) -> Option<BTreeSet<String>> {
    for (file, courier) in [
        (b"subscriptions".as_slice(), false),
        (b"courierimapsubscribed", true),
    ] {
        let shown = storefs::show(root, file);
        let bytes = match read_settled(root_dir, file, SUBSCRIPTIONS_CAP, opts.settle) {
            Ok(Some(b)) => b,
            Ok(None) => {
                warn_path(
                    &shown,
                    "unsettled",
                    "is being rewritten; keeping the subscriptions known so far until it holds still",
                );
                return None;
            }
            Err(Refused::NotFound) => continue,
            Err(e) => {
                warn_path(
                    &shown,
                    "subscriptions",
                    format!("{e}; keeping the subscriptions known so far"),
                );
                return None;
            }
        };
        let subs = if courier {
            subscriptions::parse_courier(&bytes, opts.hier_sep, opts.utf8_names)
        } else {
            subscriptions::parse_dovecot(&bytes, opts.hier_sep, opts.utf8_names)
        };
        if let Some(why) = &subs.not_subscriptions {
            warn_path(
                &shown,
                "subscriptions",
                format!(
                    "is not a subscription list ({why}); keeping the subscriptions known so far"
                ),
            );
            return None;
        }
        if let Some(first) = subs.skipped.first() {
            let more = match subs.skipped_count {
                0 | 1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            warn_path(
                &shown,
                "subscription-names",
                format!("subscription {first:?} is not a valid name; ignored{more}"),
            );
        }
        return Some(subs.names.into_iter().collect());
    }
    Some(BTreeSet::new())
}

/// Reads a control file that may be edited in place, trusting only a read
/// during which it held still and, with `settle`, one older than that
/// (waiting for it up to `settle`). `Ok(None)`: it would not hold still.
pub fn read_settled(
    dir: &StoreDir,
    file: &[u8],
    cap: u64,
    settle: Option<Duration>,
) -> Result<Option<Vec<u8>>, Refused> {
    let deadline = Instant::now() + settle.unwrap_or_default();
    loop {
        let Some((bytes, st)) = dir.read_stable(file, cap)? else {
            return Ok(None);
        };
        let Some(settle) = settle else {
            return Ok(Some(bytes));
        };
        let age = now_ns().saturating_sub(storefs::mtime_ns(&st).max(storefs::ctime_ns(&st)));
        let age = Duration::from_nanos(age.max(0) as u64);
        if age >= settle {
            return Ok(Some(bytes));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        thread::sleep((settle - age).min(deadline - now) + Duration::from_millis(5));
    }
}

/// The limits `maildirsize` sets, if the file exists and is readable.
pub fn read_maildirsize(root: &Path) -> Option<crate::quota::Limits> {
    let shown = root.join("maildirsize").display().to_string();
    let read = StoreDir::open(root).and_then(|d| d.read_stable(b"maildirsize", MAILDIRSIZE_CAP));
    let bytes = match read {
        Ok(Some((b, _))) => b,
        Ok(None) => {
            warn_path(
                &shown,
                "unsettled",
                "is being rewritten; using the configured quota until it holds still",
            );
            return None;
        }
        Err(Refused::NotFound) => return None,
        Err(e) => {
            warn_path(
                &shown,
                "maildirsize",
                format!("{e}; using the configured quota"),
            );
            return None;
        }
    };
    match crate::maildir::quota::parse(&bytes) {
        Ok(m) => Some(crate::quota::Limits {
            bytes: m.storage,
            messages: m.messages,
        }),
        Err(e) => {
            warn_path(
                &shown,
                "maildirsize",
                format!("unusable ({e}); using the configured quota"),
            );
            None
        }
    }
}

/// The IMAP size (RFC822.SIZE) of a message without `W=` in its name: its
/// length with every bare LF counted as CRLF. Only a regular file is read
/// (see [`storefs`]), in small pieces; past [`VSIZE_READ_CAP`] the
/// physical size from `fstat` stands in (no MTA delivers such a file, but
/// a user can make a sparse one that costs nothing).
pub fn virtual_size(file: &mut storefs::StoreFile) -> io::Result<u64> {
    if file.len() > VSIZE_READ_CAP {
        return Ok(file.len());
    }
    let f = file.file_mut();
    io::Seek::rewind(f)?;
    let mut buf = vec![0u8; 64 * 1024];
    let (mut total, mut prev, mut read) = (0u64, 0u8, 0u64);
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 || read > VSIZE_READ_CAP {
            return Ok(total);
        }
        read += n as u64;
        for &b in &buf[..n] {
            if b == b'\n' && prev != b'\r' {
                total += 1;
            }
            prev = b;
        }
        total += n as u64;
    }
}
