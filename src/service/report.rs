//! The one summary line a run writes to stderr at the default log level
//! (after a scan; when `watch` is ready), so a first run says what it did
//! without `MAILDIR_EVENTS_LOG=info`. `-q` turns it off, as does a log
//! level of `error` or `off`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Whether [`summary`] writes anything (set once by `main`).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::SeqCst);
}

/// Whether summary lines (and a terminal's progress display) are shown.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::SeqCst)
}

/// Writes `maildir-events: LINE` to stderr in one piece, unless disabled.
pub fn summary(line: &str) {
    if enabled() {
        let _ = writeln!(std::io::stderr().lock(), "maildir-events: {line}");
    }
}

/// A count with its noun, singular for one: "1 user", "3 folders",
/// "2 watches".
pub fn count(n: u64, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        _ if noun.ends_with("ch") || noun.ends_with('s') => format!("{n} {noun}es"),
        _ => format!("{n} {noun}s"),
    }
}

/// A duration for people: "0.42 s", "12.3 s", "3 min 5 s".
pub fn elapsed(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.2} s")
    } else if s < 60.0 {
        format!("{s:.1} s")
    } else {
        format!("{} min {} s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_durations_read_well() {
        assert_eq!(count(1, "user"), "1 user");
        assert_eq!(count(0, "folder"), "0 folders");
        assert_eq!(count(12, "message"), "12 messages");
        assert_eq!(count(5, "inotify watch"), "5 inotify watches");
        for (ms, want) in [(420, "0.42 s"), (12_345, "12.3 s"), (185_000, "3 min 5 s")] {
            assert_eq!(elapsed(Duration::from_millis(ms)), want);
        }
    }
}
