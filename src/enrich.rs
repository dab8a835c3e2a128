//! Parameters of new messages that need the message file itself: the IMAP
//! size when the name carries no `W=`, and the optional content parameters
//! (messageContent, bodyStructure, envelope, Message-ID, subject, from).
//!
//! A message file is opened only when one of those is needed, and a file
//! that vanished or cannot be parsed still yields its event, without them.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use crate::content::{self, ContentOptions};
use crate::diff::{Change, UserDiff};
use crate::scan;

/// Fills in what the arrivals of `diff` need from their files; `folder`
/// gives a mailbox directory's path.
pub fn arrivals(
    diff: &mut UserDiff,
    folder: &dyn Fn(&[u8]) -> Option<PathBuf>,
    opts: &ContentOptions,
) {
    let wants_content = content::needs_file(opts);
    for change in &mut diff.changes {
        let Change::Arrived {
            mailbox,
            entry,
            params,
            ..
        } = change
        else {
            continue;
        };
        if entry.vsize.is_some() && !wants_content {
            continue;
        }
        let Some(dir) = diff.mailboxes.get(*mailbox).and_then(|m| folder(&m.dir)) else {
            continue;
        };
        let path = message_path(&dir, entry.in_new, &entry.file);
        if wants_content {
            match fs::read(&path) {
                Ok(raw) => {
                    if entry.vsize.is_none() {
                        entry.vsize = Some(crlf_size(&raw));
                    }
                    let c = content::extract(&raw, opts);
                    for w in &c.warnings {
                        warn!(path = %path.display(), "message content: {w}");
                    }
                    params.extend(c.parameters().map(|(k, v)| (k.to_string(), v.to_string())));
                }
                Err(e) => debug!(path = %path.display(), "no content: {e}"),
            }
        } else {
            match scan::virtual_size(&path) {
                Ok(n) => entry.vsize = Some(n),
                Err(e) => debug!(path = %path.display(), "no size: {e}"),
            }
        }
    }
}

fn message_path(folder: &Path, in_new: bool, file: &[u8]) -> PathBuf {
    folder
        .join(if in_new { "new" } else { "cur" })
        .join(std::ffi::OsStr::from_bytes(file))
}

/// The size with every bare LF counted as CRLF.
fn crlf_size(raw: &[u8]) -> u64 {
    let mut prev = 0u8;
    let mut n = raw.len() as u64;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            n += 1;
        }
        prev = b;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::crlf_size;

    #[test]
    fn sizes_count_bare_lf_as_crlf() {
        for (raw, n) in [
            (&b""[..], 0),
            (b"a\n", 3),
            (b"a\r\n", 3),
            (b"\n\n", 4),
            (b"x\r\ny\nz", 7),
        ] {
            assert_eq!(crlf_size(raw), n, "{raw:?}");
        }
    }
}
