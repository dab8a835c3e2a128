//! Warnings about the store, rate-limited per path and kind.
//!
//! A store is written by its users, so whatever is wrong in it is wrong
//! again at the next rescan, and a hostile user can make thousands of bad
//! entries. Each (path, kind) is logged at most once per [`INTERVAL`];
//! the next line says how many were held back meanwhile. The table is
//! bounded: when it is full it starts over, which at worst repeats a line.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::warn;

/// How long the same warning about the same path stays quiet.
pub const INTERVAL: Duration = Duration::from_secs(15 * 60);
/// How many (path, kind) pairs are remembered.
const CAPACITY: usize = 4096;

struct Seen {
    at: Instant,
    held: u64,
}

static SEEN: Mutex<Option<HashMap<(String, &'static str), Seen>>> = Mutex::new(None);

/// Whether a warning of `kind` about `path` may be logged now; `Some(n)`
/// with the number held back since the last one.
pub fn admit(path: &str, kind: &'static str) -> Option<u64> {
    let mut guard = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    let now = Instant::now();
    let key = (path.to_string(), kind);
    if let Some(s) = map.get_mut(&key) {
        if now.duration_since(s.at) < INTERVAL {
            s.held += 1;
            return None;
        }
        let held = s.held;
        *s = Seen { at: now, held: 0 };
        return Some(held);
    }
    if map.len() >= CAPACITY {
        map.retain(|_, s| now.duration_since(s.at) < INTERVAL);
        if map.len() >= CAPACITY {
            map.clear();
        }
    }
    map.insert(key, Seen { at: now, held: 0 });
    Some(0)
}

/// Logs `message` about `path` at warn level, unless the same kind of
/// warning about it was logged within [`INTERVAL`].
pub fn warn_path(path: &str, kind: &'static str, message: impl Display) {
    if let Some(held) = admit(path, kind) {
        if held == 0 {
            warn!(path, "{message}");
        } else {
            warn!(
                path,
                "{message} ({held} more like it since the last report)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_interval_with_a_count() {
        assert_eq!(admit("/t/warnlimit/a", "link"), Some(0));
        assert_eq!(admit("/t/warnlimit/a", "link"), None);
        assert_eq!(admit("/t/warnlimit/a", "link"), None);
        assert_eq!(admit("/t/warnlimit/a", "fifo"), Some(0), "another kind");
        assert_eq!(admit("/t/warnlimit/b", "link"), Some(0), "another path");
    }
}
