//! Parameters of new messages that need the message file itself: the IMAP
//! size when the name carries no `W=`, and the optional content parameters
//! (messageContent, bodyStructure, envelope, Message-ID, subject, from).
//!
//! A message file is opened only when one of those is needed, and a file
//! that vanished or cannot be parsed still yields its event, without them.

use std::path::Path;

use tracing::{debug, warn};

use crate::content::{self, ContentOptions};
use crate::diff::{Change, UserDiff};
use crate::scan;
use crate::storefs::{self, Refused};
use crate::warnlimit::warn_path;

/// How much of a message is read for its content parameters when the
/// configuration does not say (`[content] max_read`).
pub const DEFAULT_MAX_READ: u64 = 8 << 20;

/// Fills in what the arrivals of `diff` need from their files, which are
/// found under the Maildir `root` without following any link.
pub fn arrivals(diff: &mut UserDiff, root: &Path, opts: &ContentOptions) {
    let wants_content = content::needs_file(opts);
    let cap = match opts.max_read {
        0 => DEFAULT_MAX_READ,
        n => n,
    };
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
        let Some(dir) = diff.mailboxes.get(*mailbox).map(|m| m.dir.as_slice()) else {
            continue;
        };
        let shown = || {
            storefs::show(
                &scan::folder_path(root, dir).join(if entry.in_new { "new" } else { "cur" }),
                &entry.file,
            )
        };
        let mut file = match storefs::message(root, dir, entry.in_new, &entry.file) {
            Ok(f) => f,
            Err(Refused::NotFound) => {
                debug!(path = %shown(), "gone before it could be read; event without its size");
                continue;
            }
            Err(e) => {
                warn_path(
                    &shown(),
                    "message",
                    format!(
                        "message file {e}; its event goes out without the parameters read from the file"
                    ),
                );
                continue;
            }
        };
        if wants_content {
            match file.read_all(cap) {
                Ok(raw) => {
                    if entry.vsize.is_none() {
                        entry.vsize = Some(crlf_size(&raw));
                    }
                    let c = content::extract(&raw, opts);
                    for w in &c.warnings {
                        warn!(path = %shown(), "message content: {w}");
                    }
                    params.extend(c.parameters().map(|(k, v)| (k.to_string(), v.to_string())));
                    continue;
                }
                Err(e @ Refused::TooBig { .. }) => warn_path(
                    &shown(),
                    "content-cap",
                    format!(
                        "message {e} ([content] max_read); its event goes out without content parameters"
                    ),
                ),
                Err(e) => {
                    warn_path(
                        &shown(),
                        "message",
                        format!("message file {e}; its event goes out without content parameters"),
                    );
                    continue;
                }
            }
        }
        if entry.vsize.is_none() {
            match scan::virtual_size(&mut file) {
                Ok(n) => entry.vsize = Some(n),
                Err(e) => warn_path(
                    &shown(),
                    "message",
                    format!(
                        "message file cannot be read: {e}; its event goes out without messageSize"
                    ),
                ),
            }
        }
    }
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
