//! The engine's side of delivery in `watch`: feeding the sink threads what
//! was committed, from memory, and recording what they took.
//!
//! The engine thread is the state database's only user. After each commit
//! it hands the new outbox rows to every sink that is caught up (the rows
//! stay in the outbox: that is the durable copy). A sink more than
//! [`WINDOW`] rows behind (a webhook that is down) is not fed from memory
//! any more; once it takes again it is refilled from the database, so
//! memory stays bounded whatever the backlog. What the sinks report taking
//! is written in one transaction at most every [`RECORD_EVERY`]: their
//! positions, the events they rejected (into the dead-letter table), and
//! the deletion of every row all sinks are past. A crash before that
//! transaction only repeats events, with their ids.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::service::delivery::Report;
use crate::sink::{Rejected, SinkError};

/// Rows a sink may have been handed and not yet taken.
const WINDOW: i64 = 20_000;
/// How often what the sinks took is written down (and the outbox trimmed).
const RECORD_EVERY: Duration = Duration::from_millis(100);
/// How often the outbox is looked at for rows put back by
/// `dead-letters --replay` from another process.
const RESYNC_EVERY: Duration = Duration::from_secs(2);

/// What the engine knows of one sink.
#[derive(Debug)]
pub(super) struct SinkFeed {
    name: String,
    /// The last sequence number the sink took.
    taken: i64,
    /// The last sequence number it was handed.
    fed: i64,
    /// Taken, not yet written down: (last, rejected since the last write).
    unrecorded: Option<(i64, Vec<Rejected>)>,
    closed: bool,
}

/// Every sink's feed, and the outbox as the engine sees it.
#[derive(Debug, Default)]
pub(super) struct Feeds {
    sinks: Vec<SinkFeed>,
    /// The highest sequence number committed.
    high: i64,
    /// (last sequence number, commit time) of recent commits, for the age
    /// of the oldest event a sink has not taken.
    commits: VecDeque<(i64, SystemTime)>,
    last_record: Option<Instant>,
    /// When the outbox was last looked at for rows another process added
    /// (`dead-letters --replay` beside a running watcher).
    last_resync: Option<Instant>,
    pub(super) dead_letters: u64,
}

impl Feeds {
    /// Picks up where the database says each sink is.
    pub(super) fn load(store: &Store, names: &[String]) -> Result<Feeds, Error> {
        let (positions, high, dead) = store.outbox_state(names)?;
        let sinks = names
            .iter()
            .zip(positions)
            .map(|(name, p)| SinkFeed {
                name: name.clone(),
                taken: p,
                fed: p,
                unrecorded: None,
                closed: false,
            })
            .collect();
        let mut commits = VecDeque::new();
        if high > 0 {
            // Rows from an earlier run: their age counts from now.
            commits.push_back((high, SystemTime::now()));
        }
        Ok(Feeds {
            sinks,
            high,
            commits,
            last_record: None,
            last_resync: Some(Instant::now()),
            dead_letters: dead,
        })
    }

    /// When the outbox is next read for rows another process added.
    pub(super) fn next_resync(&self) -> Instant {
        self.last_resync
            .map_or_else(Instant::now, |t| t + RESYNC_EVERY)
    }

    /// Events waiting for the slowest sink (so, for at least one).
    pub(super) fn depth(&self) -> u64 {
        let low = self
            .sinks
            .iter()
            .map(|s| s.taken)
            .min()
            .unwrap_or(self.high);
        (self.high - low).max(0) as u64
    }

    /// Whether every sink took everything committed and that is written
    /// down: nothing to wait for, so an idle loop may sleep.
    pub(super) fn settled(&self) -> bool {
        self.sinks
            .iter()
            .all(|s| s.closed || (s.taken >= self.high && s.unrecorded.is_none()))
    }

    /// Per sink: (name, events waiting, age of the oldest in seconds).
    pub(super) fn backlog(&self) -> Vec<(String, u64, f64)> {
        let now = SystemTime::now();
        self.sinks
            .iter()
            .map(|s| {
                let age = self
                    .commits
                    .iter()
                    .find(|(last, _)| *last > s.taken)
                    .and_then(|(_, at)| now.duration_since(*at).ok())
                    .map_or(0.0, |d| d.as_secs_f64());
                (s.name.clone(), (self.high - s.taken).max(0) as u64, age)
            })
            .collect()
    }
}

impl Daemon<'_> {
    /// Hands what was committed since the last call to every sink that is
    /// caught up; the others get it from the database later.
    pub(super) fn feed_committed(&mut self) {
        let rows = self.store.take_committed();
        let (Some(first), Some(last)) = (rows.first().map(|r| r.seq), rows.last().map(|r| r.seq))
        else {
            return;
        };
        let Some(d) = &self.dispatcher else { return };
        let f = &mut self.feeds;
        let before = first - 1;
        f.commits.push_back((last, SystemTime::now()));
        let rows: Arc<[OutboxRow]> = rows.into();
        for (i, s) in f.sinks.iter_mut().enumerate() {
            if !s.closed && s.fed == before && s.fed - s.taken + (rows.len() as i64) <= WINDOW {
                d.feed(i, rows.clone());
                s.fed = last;
            }
        }
        f.high = f.high.max(last);
    }

    /// The error a closed sink ends the run with, if one closed.
    pub(super) fn closed_error(&self) -> Option<Error> {
        let s = self.feeds.sinks.iter().find(|s| s.closed)?;
        Some(Error::Sink {
            error: SinkError::Failed(format!("{}: {}", s.name, SinkError::Closed)),
            kept: (self.feeds.high - s.taken).max(0) as u64,
        })
    }

    /// Takes the sinks' reports, refills sinks that fell behind from the
    /// database, and writes down what was taken (at most every
    /// [`RECORD_EVERY`], or now with `now`). A sink whose output went away
    /// ends the run: the error counts what it keeps for the next run.
    pub(super) fn pump(&mut self, now: bool) -> Result<(), Error> {
        self.feed_committed();
        let Some(d) = &self.dispatcher else {
            return Ok(());
        };
        self.woken.store(false, std::sync::atomic::Ordering::SeqCst);
        let reports = d.reports();
        self.take_reports(reports);
        if self
            .feeds
            .last_resync
            .is_none_or(|t| t.elapsed() >= RESYNC_EVERY)
        {
            let names: Vec<String> = self.feeds.sinks.iter().map(|s| s.name.clone()).collect();
            let (_, high, dead) = self.store.outbox_state(&names)?;
            if high > self.feeds.high {
                self.feeds.commits.push_back((high, SystemTime::now()));
                self.feeds.high = high;
            }
            self.feeds.dead_letters = dead;
            self.feeds.last_resync = Some(Instant::now());
        }
        self.refill()?;
        self.record(now)?;
        match self.closed_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub(super) fn take_reports(&mut self, reports: Vec<Report>) {
        for r in reports {
            match r {
                Report::Took {
                    sink,
                    last,
                    rejected,
                } => {
                    let Some(s) = self.feeds.sinks.get_mut(sink) else {
                        continue;
                    };
                    s.taken = s.taken.max(last);
                    self.feeds.dead_letters += rejected.len() as u64;
                    let u = s.unrecorded.get_or_insert((last, Vec::new()));
                    u.0 = u.0.max(last);
                    u.1.extend(rejected);
                }
                Report::Closed { sink } => {
                    if let Some(s) = self.feeds.sinks.get_mut(sink) {
                        s.closed = true;
                    }
                }
            }
        }
    }

    /// Feeds sinks that are behind what was committed from the database,
    /// within their window.
    fn refill(&mut self) -> Result<(), Error> {
        let Some(d) = &self.dispatcher else {
            return Ok(());
        };
        let high = self.feeds.high;
        for (i, s) in self.feeds.sinks.iter_mut().enumerate() {
            let room = WINDOW - (s.fed - s.taken);
            if s.closed || s.fed >= high || room < WINDOW / 2 {
                continue;
            }
            let rows = self.store.rows_after(s.fed, room as usize)?;
            if let Some(last) = rows.last().map(|r| r.seq) {
                d.feed(i, rows.into());
                s.fed = last;
            } else {
                // Nothing left after it (rows were trimmed): caught up.
                s.fed = high;
            }
        }
        Ok(())
    }

    /// Writes down what the sinks took, and trims the outbox.
    pub(super) fn record(&mut self, now: bool) -> Result<(), Error> {
        let f = &mut self.feeds;
        if f.sinks.iter().all(|s| s.unrecorded.is_none()) {
            return Ok(());
        }
        if !now && f.last_record.is_some_and(|t| t.elapsed() < RECORD_EVERY) {
            return Ok(());
        }
        let taken: Vec<(String, i64, Vec<Rejected>)> = f
            .sinks
            .iter_mut()
            .filter_map(|s| {
                let (last, rejected) = s.unrecorded.take()?;
                Some((s.name.clone(), last, rejected))
            })
            .collect();
        let low = f.sinks.iter().map(|s| s.taken).min().unwrap_or(0);
        self.store.record_taken(&taken, low)?;
        while f.commits.front().is_some_and(|(last, _)| *last <= low) {
            f.commits.pop_front();
        }
        f.last_record = Some(Instant::now());
        Ok(())
    }
}
