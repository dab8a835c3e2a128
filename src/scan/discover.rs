//! The users of a store template, found by listing its directories.

use std::fs;
use std::io;
use std::path::PathBuf;

use tracing::warn;

use crate::maildir::template::Template;

/// Finds the users of a store template by listing the directories its
/// placeholders stand for.
pub fn discover(template: &Template) -> Vec<(String, PathBuf)> {
    discover_with_dirs(template).0
}

/// Like [`discover`], and also returns the existing directories above the
/// Maildirs, where new users would appear (for `watch`).
pub fn discover_with_dirs(template: &Template) -> (Vec<(String, PathBuf)>, Vec<PathBuf>) {
    let mut dirs = Vec::new();
    let mut found = Vec::new();
    let mut stack = vec![(PathBuf::from("/"), 0usize, Vec::<(String, String)>::new())];
    if !template.is_absolute() {
        stack[0].0 = PathBuf::from(".");
    }
    while let Some((path, i, vars)) = stack.pop() {
        let Some(part) = template.part(i) else {
            if path.is_dir()
                && let Some(user) = template.user(&vars)
            {
                found.push((user, path));
            }
            continue;
        };
        if !part.has_placeholder() {
            // Below a user's level, the Maildir itself may appear later.
            if !vars.is_empty() && path.is_dir() {
                dirs.push(path.clone());
            }
            stack.push((path.join(part.literal()), i + 1, vars));
            continue;
        }
        if path.is_dir() {
            dirs.push(path.clone());
        }
        let rd = match fs::read_dir(&path) {
            Ok(rd) => rd,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    warn!(path = %path.display(), "cannot list users: {e}");
                }
                continue;
            }
        };
        for e in rd.flatten() {
            let n = e.file_name();
            let Some(n) = n.to_str() else {
                warn!(path = %e.path().display(), "user directory name is not UTF-8; skipped");
                continue;
            };
            if n.starts_with('.') || !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if let Some(bound) = part.matches(n) {
                let mut v = vars.clone();
                v.extend(bound);
                stack.push((path.join(n), i + 1, v));
            }
        }
    }
    found.sort();
    (found, dirs)
}
