//! Collecting one batch of signals: a quiet window and a cap, with room
//! for one folder's burst.
//!
//! A batch closes after `--batch-quiet-ms` without news, or at
//! `--batch-max-ms`. A folder that is being changed faster than
//! [`DENSE_RATE`] (a client marking 50,000 messages read) is a burst: it
//! may be held up to ten times the cap so its changes merge into few
//! events. The rate is counted per watched directory, not over the whole
//! store, so ordinary traffic spread over many users is never held as a
//! burst; and while one folder bursts, the changes of every other folder
//! are split off and applied at the normal cap.

use super::*;

/// Signals per second in one directory above which it counts as a burst.
const DENSE_RATE: f64 = 10_000.0;
/// A burst needs at least this many signals in one directory.
const DENSE_MIN: usize = 16;

impl Daemon<'_> {
    /// Collects a batch that starts with `first`.
    pub(super) fn collect(
        &mut self,
        rx: &Receiver<Signal>,
        first: Signal,
    ) -> Result<Vec<Signal>, Error> {
        let cap = self.opts.batch_max;
        let started = Instant::now();
        let mut batch = vec![first];
        let mut counts: HashMap<i32, usize> = HashMap::new();
        let mut top = (0i32, 0usize);
        note(&batch[0], &mut counts, &mut top);
        let mut next_split = cap;
        while batch.len() < BATCH_LIMIT && !self.stop {
            let elapsed = started.elapsed();
            let dense = top.1 >= DENSE_MIN && top.1 as f64 >= elapsed.as_secs_f64() * DENSE_RATE;
            if dense && elapsed >= next_split {
                // The other folders keep the cap: apply them now, and go
                // on merging the burst.
                next_split = elapsed + cap;
                if let Some(rest) = self.split_off_others(&mut batch, top.0) {
                    self.in_batch(|d| {
                        d.handle(rest)?;
                        d.retry_deferred(false)
                    })?;
                    self.deliver()?;
                    counts.clear();
                    top.1 = 0;
                    for s in &batch {
                        note(s, &mut counts, &mut top);
                    }
                }
            }
            let limit = if dense { cap * 10 } else { cap };
            let left = limit.saturating_sub(elapsed);
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(self.opts.batch_quiet.min(left)) {
                Ok(sig) => {
                    note(&sig, &mut counts, &mut top);
                    batch.push(sig);
                }
                Err(_) => break,
            }
        }
        // Never cut between the two halves of a rename: the kernel queues
        // them together, so the second is already on its way (a sink's
        // wake-up may have come in between).
        while ends_in_moved_from(&batch) {
            match rx.recv_timeout(Duration::from_millis(2)) {
                Ok(sig) => batch.push(sig),
                Err(_) => break,
            }
        }
        Ok(batch)
    }

    /// Takes every signal that is not about the bursting folder (the one of
    /// watch descriptor `wd`) out of `batch`, when that is safe: not after
    /// an overflow or while paused (the rescan decides then), never with
    /// half a rename, never a folder's signals split.
    fn split_off_others(&self, batch: &mut Vec<Signal>, wd: i32) -> Option<Vec<Signal>> {
        if self.rescan_all_due || self.paused {
            return None;
        }
        if batch
            .iter()
            .any(|s| matches!(s, Signal::Overflow | Signal::Failed(_)))
        {
            return None;
        }
        let watcher = self.watcher.as_ref()?;
        if watcher.overflowed() {
            return None;
        }
        let burst = watcher.target(wd)?;
        let (owner, dir) = (burst.owner, burst.dir.clone());
        let is_burst = |s: &Signal| match s {
            Signal::Fs { wd, .. } => watcher.target(*wd).is_some_and(|t| {
                t.owner == owner && t.dir == dir && matches!(t.kind, Kind::Messages { .. })
            }),
            _ => false,
        };
        // Nothing to split off, or a rename of another folder still waits
        // for its second half: leave the batch as it is.
        let last_other = batch
            .iter()
            .rev()
            .find(|s| !matches!(s, Signal::Wake) && !is_burst(s))?;
        if is_moved_from(last_other) {
            return None;
        }
        let (keep, rest): (Vec<Signal>, Vec<Signal>) =
            std::mem::take(batch).into_iter().partition(is_burst);
        *batch = keep;
        Some(rest)
    }
}

/// Counts a signal for its watched directory, keeping the busiest.
fn note(sig: &Signal, counts: &mut HashMap<i32, usize>, top: &mut (i32, usize)) {
    if let Signal::Fs { wd, .. } = sig {
        let c = counts.entry(*wd).or_default();
        *c += 1;
        if *c > top.1 {
            *top = (*wd, *c);
        }
    }
}

/// Whether the last filesystem signal of `batch` is the first half of a
/// rename.
fn ends_in_moved_from(batch: &[Signal]) -> bool {
    batch
        .iter()
        .rev()
        .find(|s| !matches!(s, Signal::Wake))
        .is_some_and(is_moved_from)
}
