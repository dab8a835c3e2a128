//! One cycle of the flow: scan → diff → events → commit → deliver.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Instant, SystemTime};

use tracing::{debug, info, warn};

use crate::config::Config;
use crate::service::delivery::{self, Outlet};
use crossbeam_channel::Receiver;

use crate::diff::{self, Change, DiffInput, UserDiff};
use crate::enrich;
use crate::error::Error;
use crate::event::{self, Event, EventContext};
use crate::quota::{self, QuotaState, Usage};
use crate::scan::{self, Contents};
use crate::snapshot::UserSnapshot;
use crate::state::outbox::Outbox;
use crate::state::store::{SnapshotSource, Store, UserCommit};

use super::lister::{self, Job, ListedUser, QUEUE};

/// What a scan did, for the log and the caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub users: u64,
    pub folders: u64,
    pub folders_listed: u64,
    pub events: u64,
}

impl Summary {
    /// Adds what another lister counted.
    pub fn add(&mut self, other: &Summary) {
        self.users += other.users;
        self.folders += other.folders;
        self.folders_listed += other.folders_listed;
        self.events += other.events;
    }
}

/// One user of a source, as a scan needs it.
#[derive(Clone, Copy, Debug)]
pub struct UserRef<'a> {
    pub name: &'a str,
    pub root: &'a Path,
    /// RFC 5423 `tags` of the user's store.
    pub tags: &'a [String],
}

/// Runs one `scan`: delivers what an earlier run left in the outbox, then
/// diffs every user of every source against the snapshot, committing and
/// delivering as it goes.
///
/// Two threads share the work: this one lists and parses user after user
/// (the directories, names and UID lists, with the snapshot parts needed,
/// read through a second, read-only connection), while a writer thread
/// diffs, builds the events and commits what it gets, several users per
/// transaction when they queue up, and delivers after each commit. Every
/// user's snapshot rows and events still commit in one transaction, users
/// commit in the order they were listed, and the events of each user keep
/// their order.
pub fn run_scan(
    config: &Config,
    store: &mut Store,
    outlets: &mut [Outlet],
) -> Result<Summary, Error> {
    run_scan_with(config, store, outlets, &|_| {})
}

/// [`run_scan`], calling `progress` with the counts so far after each user
/// is listed (for a terminal's progress display).
pub fn run_scan_with(
    config: &Config,
    store: &mut Store,
    outlets: &mut [Outlet],
    progress: &dyn Fn(&Summary),
) -> Result<Summary, Error> {
    let mut outbox = Outbox::open(store.path())?;
    // A sink that fails does not stop the scan: the events wait in the
    // outbox, the snapshot moves on, and the failure is the exit status.
    let mut failed: Option<Error> = None;
    deliver_unless_failed(&mut outbox, outlets, &mut failed)?;
    let mut summary = Summary::default();
    summary.events += scan_access(config, store, &mut outbox, outlets, &mut failed)?;
    let access_events = summary.events;
    let reader = store.reader()?;
    let second = Some(store.reader()?);
    let (jobs, queue) = crossbeam_channel::bounded::<Job>(QUEUE);
    let (listed, (written, outbox, failed, events)) = std::thread::scope(|s| {
        // Owned here, so that a panic of the lister also closes the queue
        // and the writer ends (the scope waits for it).
        let jobs = jobs;
        let writer = std::thread::Builder::new()
            .name("scan-writer".into())
            .spawn_scoped(s, move || {
                let mut w = Writer {
                    config,
                    store,
                    outbox,
                    outlets,
                    failed,
                    events: 0,
                };
                let r = w.run(&queue);
                (r, w.outbox, w.failed, w.events)
            })
            .expect("cannot start a thread");
        let listed = lister::list_all(config, &reader, second, &jobs, &mut summary, progress);
        drop(jobs);
        match writer.join() {
            Ok(w) => (listed, w),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    });
    // The writer's own error first: the lister stops when it cannot hand
    // a user over, and that is only a consequence.
    summary.events = access_events + events;
    written?;
    listed?;
    info!(
        users = summary.users,
        folders = summary.folders,
        listed = summary.folders_listed,
        events = summary.events,
        "scan done"
    );
    match failed {
        // Count again: events of later users joined those kept.
        Some(Error::Sink { error, .. }) => Err(Error::Sink {
            error,
            kept: outbox.total()?.events,
        }),
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

/// Reads what the access logs got since the last run, committing each
/// batch of events with the logs' positions, and delivering after each.
fn scan_access(
    config: &Config,
    store: &mut Store,
    outbox: &mut Outbox,
    outlets: &mut [Outlet],
    failed: &mut Option<Error>,
) -> Result<u64, Error> {
    if config.access_logs.is_empty() {
        return Ok(0);
    }
    let settings = access_settings(config);
    let remembered = store.access_state()?;
    let mut events = 0;
    crate::access::source::scan::<Error>(&settings, remembered, &mut |batch| {
        let n = batch.events.len() as u64;
        store.commit_access(batch)?;
        events += n;
        if n > 0 {
            deliver_unless_failed(outbox, outlets, failed)?;
        }
        Ok(())
    })?;
    Ok(events)
}

/// What reading the access logs needs from the configuration.
pub fn access_settings(config: &Config) -> crate::access::source::Settings {
    crate::access::source::Settings {
        logs: config.access_logs.clone(),
        server: config.server_name.clone(),
        filter: config.filter.clone(),
        from_start: config.emit_existing,
    }
}

/// A writer's transaction takes more users while it holds fewer than
/// these users and message rows (which bounds its memory too).
const BATCH_USERS: usize = 1024;
const BATCH_ROWS: usize = 100_000;

/// The writer thread: diffs and commits users in order, several per
/// transaction when they queue up, and delivers after each commit that
/// added events.
struct Writer<'a> {
    config: &'a Config,
    store: &'a mut Store,
    outbox: Outbox,
    outlets: &'a mut [Outlet],
    failed: Option<Error>,
    events: u64,
}

impl<'a> Writer<'a> {
    fn run(&mut self, queue: &Receiver<Job<'a>>) -> Result<(), Error> {
        let mut next = queue.recv().ok();
        while let Some(job) = next.take() {
            match job {
                Job::Users(first) => {
                    let mut rows = 0;
                    let mut batch = Vec::with_capacity(first.len());
                    for u in first {
                        self.take(u, &mut batch, &mut rows)?;
                    }
                    while batch.len() < BATCH_USERS && rows < BATCH_ROWS {
                        match queue.try_recv() {
                            Ok(Job::Users(users)) => {
                                for u in users {
                                    self.take(u, &mut batch, &mut rows)?;
                                }
                            }
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit(batch)?;
                }
                Job::MarkSource(spec) => self.store.mark_source(&spec)?,
                Job::Source(spec, reply) => {
                    let answer = self
                        .store
                        .source_known(&spec)
                        .and_then(|k| Ok((k, self.store.users_of_source(&spec)?)))
                        .map_err(Error::from);
                    let _ = reply.send(answer);
                }
            }
            if next.is_none() {
                next = queue.recv().ok();
            }
        }
        Ok(())
    }

    /// Commits a batch of users and delivers what it added.
    fn commit(&mut self, batch: Vec<UserCommit>) -> Result<(), Error> {
        let events: u64 = batch
            .iter()
            .map(|c| c.change.as_ref().map_or(0, |(_, e)| e.len() as u64))
            .sum();
        self.store.commit_users(batch)?;
        self.added(events)
    }

    fn added(&mut self, events: u64) -> Result<(), Error> {
        self.events += events;
        if events > 0 {
            deliver_unless_failed(&mut self.outbox, self.outlets, &mut self.failed)?;
        }
        Ok(())
    }

    /// Diffs a listed user (the copy lookups read this thread's own
    /// connection, which has every earlier user committed) into the batch;
    /// a user with more than [`STREAM_CHANGES`] changes is committed on
    /// its own after the batch so far, its events made and written as
    /// they go.
    fn take(
        &mut self,
        u: ListedUser<'a>,
        batch: &mut Vec<UserCommit>,
        rows: &mut usize,
    ) -> Result<(), Error> {
        let who = UserRef {
            name: &u.user,
            root: &u.root,
            tags: u.tags,
        };
        let diff = match u.listed {
            Some(listed) => Some(diff_user(self.config, &*self.store, who, listed, u.silent)?),
            None => None,
        };
        if let Some(diff) = diff.as_ref().filter(|d| d.changes.len() > STREAM_CHANGES) {
            self.commit(std::mem::take(batch))?;
            *rows = 0;
            let config = self.config;
            let n = self.store.commit_streamed(
                &u.user,
                &u.root,
                Some(&u.source),
                diff,
                &mut |emit| events_of(config, who, diff, emit),
            )?;
            return self.added(n);
        }
        let change = diff.map(|d| {
            let mut events = Vec::new();
            events_of(self.config, who, &d, &mut |e| events.push(e));
            (d, events)
        });
        let c = UserCommit {
            user: u.user,
            root: u.root,
            change,
            source: Some(u.source),
        };
        *rows += rows_of(&c);
        batch.push(c);
        Ok(())
    }
}

/// See [`Writer::take`]: about 30 MB of events, made at once.
const STREAM_CHANGES: usize = 10_000;

/// Message rows a user's commit writes, for sizing transactions.
fn rows_of(c: &UserCommit) -> usize {
    c.change.as_ref().map_or(0, |(d, _)| {
        d.updates
            .iter()
            .map(|u| u.upserts.len() + u.rows.len() + u.deletes.len() + 1)
            .sum()
    })
}

/// Delivers, unless a sink already failed in this run; a sink failure is
/// kept for the end, any other error ends the run.
fn deliver_unless_failed(
    outbox: &mut Outbox,
    outlets: &mut [Outlet],
    failed: &mut Option<Error>,
) -> Result<(), Error> {
    if failed.is_some() {
        return Ok(());
    }
    match delivery::deliver(outbox, outlets) {
        Ok(_) => Ok(()),
        Err(e @ Error::Sink { .. }) => {
            *failed = Some(e);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Scans, diffs and commits one user; returns the number of events.
/// `silent` records the snapshot without events (a first-run baseline).
pub fn scan_user(
    config: &Config,
    store: &mut Store,
    who: UserRef,
    old: Option<UserSnapshot>,
    silent: bool,
    summary: &mut Summary,
) -> Result<u64, Error> {
    let Some(listed) = list_user(config, &*store, who, old, summary)? else {
        return Ok(0);
    };
    let diff = diff_user(config, &*store, who, listed, silent)?;
    // Events are made as they are written: a user with a million arrivals
    // (a catch-up after a long stop) never holds them all at once.
    let n = store.commit_streamed(who.name, who.root, None, &diff, &mut |emit| {
        events_of(config, who, &diff, emit)
    })?;
    Ok(n)
}

/// A user's store as listed, with the snapshot it is to be diffed against.
pub struct Listed {
    old: UserSnapshot,
    listing: scan::UserListing,
}

impl Listed {
    /// The messages listed (at least 1), for sizing hand-overs.
    pub(super) fn weight(&self) -> usize {
        1 + self
            .listing
            .folders
            .values()
            .map(|f| match &f.contents {
                scan::Contents::Listed(m) => m.len(),
                _ => 0,
            })
            .sum::<usize>()
    }
}

/// The first half of a user's scan: lists the store and loads the parts of
/// the snapshot the diff needs; `None` when nothing is to be written (its
/// Maildir went missing).
pub fn list_user<S: SnapshotSource>(
    config: &Config,
    store: &S,
    who: UserRef,
    old: Option<UserSnapshot>,
    summary: &mut Summary,
) -> Result<Option<Listed>, Error> {
    let UserRef {
        name: user, root, ..
    } = who;
    let mut old = old.unwrap_or_default();
    let mut listing = scan::scan_user(root, Some(&old), &config.scan);
    if !listing.exists {
        if !old.folders.is_empty() {
            warn!(user, path = %root.display(), "Maildir is missing; keeping what was known (an unmounted store is not a mass expunge)");
            return Ok(None);
        }
        debug!(user, path = %root.display(), "Maildir does not exist yet");
    }
    // Messages are needed for every folder that was listed (joined into
    // its listing, which holds the names already), or is gone (it may have
    // been renamed).
    for f in old.folders.values_mut() {
        match listing.folders.get_mut(&f.dir).map(|l| &mut l.contents) {
            Some(Contents::Listed(messages)) => store.join_messages(f, messages)?,
            Some(_) => {}
            None => store.load_messages(f)?,
        }
    }
    scan::confirm_gone(&mut listing, &old, &config.scan);
    let deadline = Instant::now() + config.uid_wait;
    let known = |dir: &[u8], base: &[u8], uidvalidity: u32| {
        old.folders.get(dir).is_some_and(|f| {
            f.uidvalidity == uidvalidity
                && f.messages
                    .as_ref()
                    .and_then(|m| m.get(base))
                    .is_some_and(|m| m.uid != 0)
        })
    };
    scan::wait_for_courier_lists(&mut listing, &old, deadline);
    scan::wait_for_server(&mut listing, &known, deadline);
    summary.folders += listing.folders.len() as u64;
    summary.folders_listed += listing
        .folders
        .values()
        .filter(|f| matches!(f.contents, Contents::Listed(_)))
        .count() as u64;
    Ok(Some(Listed { old, listing }))
}

/// The second half of a user's scan: the diff and quota, ready to commit;
/// its events are made from it by [`events_of`] as they are written.
/// `silent` records the snapshot without events (a first-run baseline).
pub fn diff_user<S: SnapshotSource>(
    config: &Config,
    store: &S,
    who: UserRef,
    listed: Listed,
    silent: bool,
) -> Result<UserDiff, Error> {
    let UserRef {
        name: user, root, ..
    } = who;
    let Listed { old, listing } = listed;
    // Only folders whose messages were not loaded need the database to
    // tell a copy from a delivery; a new user has none.
    let unloaded = old.folders.values().any(|f| f.messages.is_none());
    let lookup_error = std::cell::Cell::new(None);
    let elsewhere = |dir: &[u8], base: &[u8]| {
        unloaded
            && match store.base_elsewhere(user, dir, base) {
                Ok(b) => b,
                Err(e) => {
                    lookup_error.set(Some(e));
                    false
                }
            }
    };
    let now = now_secs();
    let expired = |folder: &str, base: &[u8]| {
        crate::config::expires(&config.expire, now as u64, folder, base)
    };
    let input = DiffInput {
        own_uidvalidity: now,
        hier_sep: config.scan.hier_sep,
        elsewhere: &elsewhere,
        expired: &expired,
        silent,
    };
    let exists = listing.exists;
    let mut diff = diff::diff_user(&old, listing, &input);
    if exists && config.quota.is_some() {
        // Folder totals after the diff: the old rows, less the gone ones,
        // with the updated ones replaced.
        let mut totals: HashMap<i64, (String, u64, u32)> = old
            .folders
            .values()
            .map(|f| (f.id, (f.name.clone(), f.bytes, f.count)))
            .collect();
        for id in &diff.deleted {
            totals.remove(id);
        }
        let mut fresh = Vec::new();
        for u in &diff.updates {
            let t = (u.folder.name.clone(), u.folder.bytes, u.folder.count);
            if u.folder.id == 0 {
                fresh.push(t);
            } else {
                totals.insert(u.folder.id, t);
            }
        }
        let folders: Vec<(String, u64, u32)> = totals.into_values().chain(fresh).collect();
        if let Some((state, changes)) = check_quota(config, user, root, &folders, old.quota) {
            diff.quota = Some(state);
            diff.changes.extend(changes);
        }
    }
    if let Some(e) = lookup_error.take() {
        return Err(e.into());
    }
    if silent {
        diff.changes.clear();
    }
    enrich::arrivals(&mut diff, root, &config.content.options());
    Ok(diff)
}

/// The events of a user's diff, made with the time they are made.
fn events_of(config: &Config, who: UserRef, diff: &UserDiff, emit: &mut dyn FnMut(Event)) {
    let timestamp = event::timestamp_now();
    let ctx = EventContext {
        user: who.name,
        server: &config.server_name,
        timestamp: &timestamp,
        pid: std::process::id(),
        simple_flags: config.simple_flag_events,
        filter: &config.filter,
        tags: who.tags,
    };
    event::build_each(diff, &ctx, emit);
}

/// Evaluates a user's quota from folder totals (name, bytes, messages):
/// the new state and the quota events, or `None` when quota is off.
pub fn check_quota(
    config: &Config,
    user: &str,
    root: &Path,
    folders: &[(String, u64, u32)],
    prev: Option<QuotaState>,
) -> Option<(QuotaState, Vec<Change>)> {
    let rules = config.quota.as_ref()?;
    let limits = rules.limits_for(user, scan::read_maildirsize(root));
    let usage = folders
        .iter()
        .filter(|(name, _, _)| rules.counts(name))
        .fold(Usage::default(), |u, (_, bytes, count)| Usage {
            bytes: u.bytes + bytes,
            messages: u.messages + *count as u64,
        });
    let (state, events) = quota::evaluate(prev, limits, usage, rules.hysteresis, rules.full_at);
    let changes = events
        .into_iter()
        .map(|event| Change::Quota {
            event,
            limits,
            usage,
        })
        .collect();
    Some((state, changes))
}

fn now_secs() -> u32 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1)
}
