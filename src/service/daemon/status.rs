//! What a running `watch` publishes about itself: systemd's `STATUS=`, the
//! metrics' gauges, and the status file.
//!
//! The status file (`status.json` beside the database) is rewritten by
//! rename, so it is never half-written: for monitoring that must not open
//! the database, and for `maildir-events status` when the database is
//! busy. It is rewritten only when its content changed (at most every
//! second; while events wait, their age changes every second), and at
//! least every [`STATUS_HEARTBEAT`] when idle, so that its `updated` stamp
//! tells a live watcher from a hung one: a file older than
//! [`crate::state::store::STATUS_STALE_AFTER`]
//! is stale. An idle watcher does not touch the disk every second.

use std::io::Write as _;

use super::*;

impl Daemon<'_> {
    pub(super) fn status(&mut self) {
        let folders: usize = self.users.iter().map(|u| u.folders.len()).sum();
        let messages: u64 = self
            .users
            .iter()
            .flat_map(|u| u.folders.values())
            .map(|f| f.count as u64)
            .sum();
        let m = &self.metrics;
        m.users.store(self.users.len() as u64, Ordering::Relaxed);
        m.folders.store(folders as u64, Ordering::Relaxed);
        m.messages.store(messages, Ordering::Relaxed);
        let watches = self.watcher.as_ref().map_or(0, Watcher::len);
        m.watches.store(watches as u64, Ordering::Relaxed);
        let polled = self.polled_folders();
        m.polled_folders.store(polled as u64, Ordering::Relaxed);
        let backlog = self.feeds.backlog();
        m.set_outbox(backlog.clone());
        let mut text = format!(
            "watching {} users, {folders} folders, {messages} messages; {} events",
            self.users.len(),
            self.events
        );
        if polled > 0 {
            text.push_str(&format!(
                "; {polled} folders polled (inotify watch limit reached)"
            ));
        }
        // Only when it changed: systemd reads every datagram, but a
        // listener that does not would fill its queue and block us.
        if text != self.status_sent {
            notify(&[sd_notify::NotifyState::Status(&text)]);
            self.status_sent = text;
        }

        let mut sinks = serde_json::Map::new();
        let mut oldest: Option<f64> = None;
        for (name, waiting, age) in &backlog {
            let age = (*waiting > 0).then_some(*age);
            if let Some(a) = age {
                oldest = Some(oldest.map_or(a, |o: f64| o.max(a)));
            }
            sinks.insert(
                name.clone(),
                serde_json::json!({"waiting": waiting, "oldestSeconds": age}),
            );
        }
        let doc = serde_json::json!({
            "outbox": {"waiting": self.feeds.depth(), "oldestSeconds": oldest},
            "users": self.users.len(),
            "folders": folders,
            "messages": messages,
            "sinks": sinks,
            "deadLetters": self.feeds.dead_letters,
            "watch": {
                "pid": std::process::id(),
                "events": self.events,
                "watches": watches,
                "polledFolders": polled,
                "paused": self.paused,
            },
        });
        let due = match &self.status_written {
            Some((last, at)) => *last != doc || at.elapsed() >= STATUS_HEARTBEAT,
            None => true,
        };
        if !due {
            return;
        }
        let mut stamped = doc.clone();
        stamped["watch"]["updated"] = crate::event::timestamp_now().into();
        match write_status(&self.config.state_dir, &stamped) {
            Ok(()) => self.status_written = Some((doc, Instant::now())),
            Err(e) => debug!("cannot write the status file: {e}"),
        }
    }
}

/// Writes the status file beside the database, by rename.
fn write_status(dir: &Path, doc: &serde_json::Value) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(format!("{}.tmp", crate::state::store::STATUS_FILE));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    writeln!(f, "{doc}")?;
    drop(f);
    std::fs::rename(&tmp, dir.join(crate::state::store::STATUS_FILE))
}
