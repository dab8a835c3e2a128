//! `watch`: catch up, then follow every change live.
//!
//! The loop takes signals from the inotify reader, closes a batch as soon as
//! the queue goes quiet (or at the batch cap), applies the exact names it
//! got folder by folder (`live`), and falls back to rescanning a user (the
//! same code as `scan`) whenever a folder appears, goes or is renamed, the
//! subscriptions change, or anything is in doubt. Every batch is committed
//! with its events in one transaction and then delivered.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use crate::service::queue::{Receiver, RecvTimeoutError, Sender, bounded};
use inotify::EventMask;
use tracing::{debug, info, warn};

use crate::config::{Config, SourceKind, WatchOptions};
use crate::diff::UserDiff;
use crate::enrich;
use crate::error::Error;
use crate::event::{self, EventContext};
use crate::live::{self, LiveFolder, Op};
use crate::maildir::keywords::Keywords;
use crate::maildir::{folders, name};
use crate::scan::{self, folder_path};
use crate::service::delivery::{Dispatcher, Outlet};
use crate::service::metrics::{self, Metrics};
use crate::service::pipeline::{self, Summary};
use crate::snapshot::{FolderSnapshot, UidSource};
use crate::state::store::{OutboxRow, Store};
use crate::storefs::{self, EntryKind, Refused, StoreDir};
use crate::uidtail::UidTail;
use crate::warnlimit::warn_path;
use watcher::{Kind, Signal, Target, Watcher};

mod apply;
mod batch;
mod feed;
mod status;
pub mod watcher;
mod watches;

/// Signals the channel holds before the reader must report an overflow.
const CHANNEL: usize = 1 << 17;
/// Signals in one batch at most, so a flood still makes progress.
const BATCH_LIMIT: usize = 5_000;
/// How often the status (systemd, metrics, status file) is published
/// while something is on its way to a sink; the loop also takes what the
/// sinks took and writes it down at this pace.
const STATUS_EVERY: Duration = Duration::from_secs(1);
use crate::state::store::STATUS_HEARTBEAT;
/// Full rescans (after an overflow) at most this often.
const RESCAN_ALL_GAP: Duration = Duration::from_secs(1);

struct User {
    name: String,
    root: PathBuf,
    source: usize,
    folders: BTreeMap<Vec<u8>, FolderSnapshot>,
    quota: Option<crate::quota::QuotaState>,
}

/// A folder of a user: (user index, folder directory).
type FolderKey = (usize, Vec<u8>);
/// Operations per folder, in the order folders first appeared in a batch.
type Pending = Vec<(FolderKey, Vec<Op>)>;

/// What the control files say about a batch's files.
struct View {
    states: HashMap<Vec<u8>, crate::snapshot::MessageState>,
    server: Option<scan::ServerUids>,
    keywords: Keywords,
    /// A new file has no UID yet, or a keyword letter no name.
    missing: bool,
    /// New names that are no regular files: not messages.
    odd: HashSet<Vec<u8>>,
    /// The folder's directory, opened without following links.
    dir: StoreDir,
}

struct Deferred {
    ops: Vec<Op>,
    deadline: Instant,
}

struct Daemon<'a> {
    config: &'a Config,
    opts: &'a WatchOptions,
    store: &'a mut Store,
    dispatcher: Option<Dispatcher>,
    metrics: Arc<Metrics>,
    content: crate::content::ContentOptions,
    feeds: feed::Feeds,
    watcher: Option<Watcher>,
    users: Vec<User>,
    by_name: HashMap<String, usize>,
    first_run: Vec<bool>,
    tails: HashMap<FolderKey, UidTail>,
    deferred: BTreeMap<FolderKey, Deferred>,
    stop: bool,
    /// Back-pressure: changes are not being taken.
    paused: bool,
    /// Tells the access-log thread to stop reading while paused.
    access_hold: Arc<std::sync::atomic::AtomicBool>,
    events: u64,
    last_rescan_all: Option<Instant>,
    rescan_all_due: bool,
    /// The `STATUS=` text last sent to systemd.
    status_sent: String,
    /// The status file's content last written (without its stamp), and
    /// when: it is rewritten only when it changes, or at the heartbeat.
    status_written: Option<(serde_json::Value, Instant)>,
    /// A sink's wake-up is on its way (cleared when reports are taken).
    woken: Arc<std::sync::atomic::AtomicBool>,
    /// Per user, the folders the kernel would not watch (its limit is
    /// reached): read by polling until a watch can be added.
    unwatched: BTreeMap<usize, BTreeSet<Vec<u8>>>,
    /// When the unwatched folders are read next.
    next_poll: Option<Instant>,
    /// When the admin was last told about unwatched folders, and how many.
    unwatched_said: Option<(Instant, usize)>,
}

/// Runs `watch` until SIGTERM or SIGINT.
pub fn run(config: &Config, store: &mut Store, outlets: Vec<Outlet>) -> Result<(), Error> {
    let started = std::time::Instant::now();
    // Control files edited in place are read again when their writer
    // closes them (IN_CLOSE_WRITE), so a rescan need not wait for them.
    let config = &Config {
        scan: scan::ScanOptions {
            settle: None,
            ..config.scan.clone()
        },
        ..config.clone()
    };
    let opts = &config.watch;
    let (tx, rx) = bounded(CHANNEL);
    catch_signals(tx.clone());
    let access_tx = tx.clone();
    // What an earlier run left undelivered goes out first.
    let metrics = Arc::new(Metrics::default());
    let names = crate::service::delivery::names(&outlets);
    if let Some(listen) = &config.metrics_listen {
        metrics::serve(listen, metrics.clone(), names.clone())
            .map_err(|e| Error::Config(crate::config::ConfigError(e)))?;
    }
    let feeds = feed::Feeds::load(store, &names)?;
    // A sink's report wakes the loop, so what it took is written down (and
    // a closed output noticed) even while the store is quiet.
    let woken = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let waker = {
        let tx = tx.clone();
        let woken = woken.clone();
        // One wake-up on its way at a time: the loop takes every report
        // when it wakes.
        Arc::new(move || {
            if !woken.swap(true, Ordering::SeqCst) && tx.try_send(Signal::Wake).is_err() {
                woken.store(false, Ordering::SeqCst);
            }
        })
    };
    let dispatcher = Dispatcher::start(outlets, metrics.clone(), waker)?;
    let watcher = match opts.poll {
        Some(_) => None,
        None => Some(Watcher::start(tx).map_err(|e| {
            Error::Config(crate::config::ConfigError(format!(
                "cannot start inotify: {e} (raise fs.inotify.max_user_instances, or use --poll)"
            )))
        })?),
    };
    let mut d = Daemon {
        config,
        opts,
        store,
        dispatcher: Some(dispatcher),
        metrics,
        content: config.content.options(),
        feeds,
        watcher,
        users: Vec::new(),
        by_name: HashMap::new(),
        first_run: Vec::new(),
        tails: HashMap::new(),
        deferred: BTreeMap::new(),
        stop: false,
        paused: false,
        access_hold: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        events: 0,
        last_rescan_all: None,
        rescan_all_due: false,
        status_sent: String::new(),
        status_written: None,
        woken,
        unwatched: BTreeMap::new(),
        next_poll: None,
        unwatched_said: None,
    };
    for (i, source) in config.sources.iter().enumerate() {
        d.first_run.push(!d.store.source_known(&source.spec())?);
        d.discover(i)?;
    }
    for source in &config.sources {
        d.store.mark_source(&source.spec())?;
    }
    d.first_run.iter_mut().for_each(|f| *f = false);
    let access_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if !config.access_logs.is_empty() {
        let remembered = d.store.access_state()?;
        crate::access::source::follow(
            pipeline::access_settings(config),
            remembered,
            move |batch| access_tx.send(Signal::Access(Box::new(batch))).is_ok(),
            access_stop.clone(),
            d.access_hold.clone(),
        )
        .map_err(|e| {
            Error::Config(crate::config::ConfigError(format!(
                "--access-log: cannot start reading the access logs: {e}"
            )))
        })?;
    } else {
        drop(access_tx);
    }
    d.deliver()?;
    info!(
        users = d.users.len(),
        watches = d.watcher.as_ref().map_or(0, Watcher::len),
        "caught up; watching"
    );
    d.say_unwatched();
    notify(&[sd_notify::NotifyState::Ready]);
    d.summary(started.elapsed());
    d.status();
    let result = match opts.poll {
        Some(every) => d.poll_loop(&rx, every),
        None => d.live_loop(&rx),
    };
    access_stop.store(true, Ordering::SeqCst);
    notify(&[sd_notify::NotifyState::Stopping]);
    // Hand the sinks what is committed, deliver it before leaving, within
    // reason, and write down what they took; the rest waits in the outbox
    // for the next start.
    let fed = d.pump(true);
    if let Some(dispatcher) = d.dispatcher.take() {
        let last = dispatcher.stop(Duration::from_secs(10));
        d.take_reports(last);
    }
    let recorded = d.record(true);
    d.status();
    result?;
    fed?;
    recorded?;
    // A sink whose output went away ends the run with what it keeps.
    if let Some(e) = d.closed_error() {
        return Err(e);
    }
    info!(events = d.events, "stopped");
    Ok(())
}

impl Daemon<'_> {
    /// The one line `watch` writes at the default log level when it is
    /// ready: what it watches and how long the start took.
    fn summary(&self, took: Duration) {
        use crate::service::report::count;
        let folders: usize = self.users.iter().map(|u| u.folders.len()).sum();
        let messages: u64 = self
            .users
            .iter()
            .flat_map(|u| u.folders.values())
            .map(|f| u64::from(f.count))
            .sum();
        let watching = match (&self.watcher, self.opts.poll) {
            (Some(w), _) => count(w.len() as u64, "inotify watch"),
            (None, Some(p)) => format!("polling every {} s", p.as_secs_f64()),
            (None, None) => "no watches".into(),
        };
        crate::service::report::summary(&format!(
            "watch: {}, {}, {}, {watching}; ready in {}",
            count(self.users.len() as u64, "user"),
            count(folders as u64, "folder"),
            count(messages, "message"),
            crate::service::report::elapsed(took)
        ));
    }

    fn live_loop(&mut self, rx: &Receiver<Signal>) -> Result<(), Error> {
        let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
        let mut last_watchdog = Instant::now();
        let mut last_status = Instant::now();
        // Something changed since the status was last published.
        let mut dirty = false;
        let mut next_rescan = self.opts.rescan_interval.map(|i| Instant::now() + i);
        while !self.stop {
            let now = Instant::now();
            let mut wake = now + Duration::from_secs(3600);
            if let Some(w) = watchdog {
                wake = wake.min(last_watchdog + w);
            }
            if let Some(r) = next_rescan {
                wake = wake.min(r);
            }
            // While events are on their way, what the sinks took is
            // written down (and the status published) every second, and
            // a change is published within a second; an idle loop only
            // keeps the status file's stamp fresh.
            if self.feeds.settled() && !dirty {
                wake = wake.min(last_status + STATUS_HEARTBEAT);
            } else {
                wake = wake.min(last_status + STATUS_EVERY);
            }
            // Events another process put in the outbox (`dead-letters
            // --replay`) are found by the resync, also while idle.
            wake = wake.min(self.feeds.next_resync());
            if let Some(d) = self.deferred.values().map(|d| d.deadline).min() {
                // Look again soon: Dovecot writes the UID a moment later.
                wake = wake.min(d).min(now + Duration::from_millis(2));
            }
            if self.rescan_all_due {
                wake = wake.min(self.last_rescan_all.map_or(now, |t| t + RESCAN_ALL_GAP));
            }
            if let Some(p) = self.next_poll {
                wake = wake.min(p);
            }
            if self.paused {
                // Look at the sinks' progress even when the store is quiet.
                wake = wake.min(now + Duration::from_millis(50));
            }
            let mut batch = match rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(sig) => self.collect(rx, sig)?,
                Err(RecvTimeoutError::Timeout) => Vec::new(),
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            };
            // The access logs' events are committed whatever else happens
            // (a pause, a rescan due): their lines are not read again. While
            // paused, the access thread reads no more (`access_hold`), so
            // only batches already on their way come in.
            self.take_access(&mut batch)?;
            if self.backed_up()? {
                // Back-pressure: the sinks are too far behind. Take no new
                // changes (they stay in the Maildir); rescan once they catch up.
                if !self.paused {
                    warn!(
                        limit = self.config.outbox_limit,
                        "outbox full; pausing until the sinks catch up"
                    );
                    self.paused = true;
                    self.access_hold.store(true, Ordering::SeqCst);
                }
                if batch.iter().any(|s| matches!(s, Signal::Stop)) {
                    self.stop = true;
                }
                let _ = self.watcher.as_ref().map(Watcher::take_overflow);
                self.deliver()?;
                if last_status.elapsed() >= STATUS_EVERY {
                    self.status();
                    last_status = Instant::now();
                }
                thread::sleep(Duration::from_millis(50));
                continue;
            }
            if self.paused {
                info!("sinks caught up; rescanning what changed meanwhile");
                self.paused = false;
                self.access_hold.store(false, Ordering::SeqCst);
                self.rescan_all_due = true;
                batch.retain(|s| matches!(s, Signal::Stop));
            }
            let dropped = self.watcher.as_ref().is_some_and(Watcher::take_overflow);
            let kernel = batch
                .iter()
                .any(|s| matches!(s, Signal::Overflow | Signal::Failed(_)));
            if dropped || kernel {
                self.metrics.overflows.fetch_add(1, Ordering::Relaxed);
                if dropped {
                    warn!("events were lost (our signal queue was full); rescanning everything");
                } else {
                    warn!(
                        "events were lost (the kernel's inotify queue overflowed; raise fs.inotify.max_queued_events); rescanning everything"
                    );
                }
                self.rescan_all_due = true;
            }
            if self.rescan_all_due {
                // Names from before the loss may be half of a rename whose
                // other half was lost: applied alone they would be an
                // expunge and, after the rescan, an append of the same
                // message. The rescan diffs everything against the
                // snapshot, so until it has run, names are only a wake-up.
                batch.retain(|s| matches!(s, Signal::Stop | Signal::Reopen));
            }
            if !batch.is_empty() {
                self.metrics.batches.fetch_add(1, Ordering::Relaxed);
                dirty = true;
            }
            if !batch.is_empty() || !self.deferred.is_empty() {
                self.in_batch(|d| {
                    d.handle(batch)?;
                    d.retry_deferred(false)
                })?;
            }
            if self.rescan_all_due
                && self
                    .last_rescan_all
                    .is_none_or(|t| t.elapsed() >= RESCAN_ALL_GAP)
            {
                self.rescan_all()?;
                dirty = true;
            }
            if self.next_poll.is_some_and(|p| Instant::now() >= p) {
                self.poll_unwatched()?;
            }
            if next_rescan.is_some_and(|r| Instant::now() >= r) {
                debug!("periodic safety rescan");
                self.rescan_all()?;
                next_rescan = self.opts.rescan_interval.map(|i| Instant::now() + i);
                dirty = true;
            }
            self.deliver()?;
            if last_status.elapsed() >= STATUS_EVERY {
                self.status();
                last_status = Instant::now();
                dirty = false;
            }
            if watchdog.is_some() && last_watchdog.elapsed() >= watchdog.unwrap_or_default() {
                notify(&[sd_notify::NotifyState::Watchdog]);
                self.status();
                last_watchdog = Instant::now();
            }
        }
        self.retry_deferred(true)?;
        Ok(())
    }

    fn poll_loop(&mut self, rx: &Receiver<Signal>, every: Duration) -> Result<(), Error> {
        let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
        let mut last_watchdog = Instant::now();
        let mut round = 0u32;
        let mut last_status = Instant::now();
        while !self.stop {
            let tick = watchdog.map_or(every, |w| w.min(every));
            let deadline = Instant::now() + every;
            while Instant::now() < deadline && !self.stop {
                // Between polls too, what the sinks took is written down
                // within a second, and the status follows.
                let pace = if self.feeds.settled() {
                    STATUS_HEARTBEAT
                } else {
                    STATUS_EVERY
                };
                let now = Instant::now();
                let left = deadline
                    .min(last_status + pace)
                    .saturating_duration_since(now)
                    .min(tick);
                match rx.recv_timeout(left) {
                    Ok(Signal::Stop) => self.stop = true,
                    // A sink reported: write it down, and end the run if
                    // its output went away.
                    Ok(Signal::Wake) => self.deliver()?,
                    Ok(Signal::Access(b)) => {
                        self.commit_access(*b)?;
                        self.deliver()?;
                    }
                    _ => {}
                }
                if last_status.elapsed() >= pace {
                    self.deliver()?;
                    self.status();
                    last_status = Instant::now();
                }
                if watchdog.is_some_and(|w| last_watchdog.elapsed() >= w) {
                    notify(&[sd_notify::NotifyState::Watchdog]);
                    last_watchdog = Instant::now();
                }
            }
            if self.stop {
                break;
            }
            round += 1;
            let full = self.opts.full_every > 0 && round.is_multiple_of(self.opts.full_every);
            for i in 0..self.config.sources.len() {
                self.discover(i)?;
            }
            for u in 0..self.users.len() {
                self.rescan_user(u, full)?;
            }
            self.deliver()?;
            self.status();
            last_status = Instant::now();
        }
        Ok(())
    }

    /// Runs `f` (a batch: its folders, the users it rescans, the deferred
    /// folders it retries) in ONE transaction of the state database: one
    /// COMMIT per batch instead of one per folder. The sinks get its
    /// events after the COMMIT (`deliver`); an error rolls it back.
    fn in_batch(&mut self, f: impl FnOnce(&mut Self) -> Result<(), Error>) -> Result<(), Error> {
        self.store.hold()?;
        match f(self) {
            Ok(()) => Ok(self.store.release()?),
            Err(e) => {
                self.store.abandon();
                Err(e)
            }
        }
    }

    /// Applies one batch of signals, in order.
    fn handle(&mut self, batch: Vec<Signal>) -> Result<(), Error> {
        let mut ops: Pending = Vec::new();
        let mut slot: HashMap<FolderKey, usize> = HashMap::new();
        let mut rescan: BTreeSet<usize> = BTreeSet::new();
        let mut rediscover: BTreeSet<usize> = BTreeSet::new();
        let mut quota: BTreeSet<usize> = BTreeSet::new();
        for sig in batch {
            let (wd, mask, name) = match sig {
                Signal::Stop => {
                    self.stop = true;
                    continue;
                }
                // A sink reported: taken by `deliver` after the batch.
                Signal::Wake => continue,
                Signal::Access(b) => {
                    self.commit_access(*b)?;
                    continue;
                }
                Signal::Reopen => {
                    if let Some(d) = &self.dispatcher {
                        d.reopen();
                    }
                    continue;
                }
                Signal::Overflow | Signal::Failed(_) => {
                    self.rescan_all_due = true;
                    continue;
                }
                Signal::Fs { wd, mask, name } => (wd, mask, name),
            };
            let Some(watcher) = self.watcher.as_mut() else {
                continue;
            };
            if mask.contains(EventMask::IGNORED) {
                // The kernel dropped the watch: its directory is gone.
                if let Some(t) = watcher.forget(wd) {
                    match t.kind {
                        Kind::Parent => {
                            rediscover.insert(t.owner);
                        }
                        _ => {
                            self.flush(&mut ops, &mut slot, t.owner)?;
                            rescan.insert(t.owner);
                        }
                    }
                }
                continue;
            }
            let Some(t) = watcher.target(wd).cloned() else {
                continue;
            };
            match t.kind {
                Kind::Parent => {
                    rediscover.insert(t.owner);
                }
                _ if rescan.contains(&t.owner) => {}
                Kind::Messages { in_new } => {
                    if mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF) {
                        self.flush(&mut ops, &mut slot, t.owner)?;
                        rescan.insert(t.owner);
                        continue;
                    }
                    let Some(name) = name else { continue };
                    if mask.contains(EventMask::ISDIR) {
                        continue;
                    }
                    let present = mask.intersects(EventMask::CREATE | EventMask::MOVED_TO);
                    let key = (t.owner, t.dir.clone());
                    let i = *slot.entry(key.clone()).or_insert_with(|| {
                        ops.push((key, Vec::new()));
                        ops.len() - 1
                    });
                    ops[i].1.push(Op {
                        in_new,
                        name,
                        present,
                        renamed: mask.intersects(EventMask::MOVED_FROM | EventMask::MOVED_TO),
                    });
                }
                Kind::FolderDir => {
                    let sub = name.as_deref().is_some_and(|n| n == b"new" || n == b"cur");
                    let list = name.as_deref() == Some(b"courierimapuiddb".as_slice())
                        && mask.intersects(EventMask::CREATE | EventMask::MOVED_TO)
                        && self.courier_list_news(t.owner, &t.dir);
                    if sub || list || mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF)
                    {
                        self.flush(&mut ops, &mut slot, t.owner)?;
                        rescan.insert(t.owner);
                    }
                }
                Kind::Keywords => {
                    // Courier changed a message's keywords: the rescan
                    // reads them (only this folder's stamp moved).
                    self.flush(&mut ops, &mut slot, t.owner)?;
                    rescan.insert(t.owner);
                }
                Kind::Root => {
                    // Courier's first UID list of an INBOX we numbered
                    // ourselves: its numbers take over at once.
                    let inbox_own = self.users[t.owner]
                        .folders
                        .get(b"".as_slice())
                        .is_some_and(|f| f.uid_source == UidSource::Own);
                    let structural = mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF)
                        || name.as_deref().is_some_and(|n| {
                            (mask.contains(EventMask::ISDIR) && folders::is_folder_dir(n))
                                || (mask.contains(EventMask::ISDIR) && n == b"courierimapkeywords")
                                || (inbox_own && n == b"courierimapuiddb")
                                || n == b"subscriptions"
                                || n == b"courierimapsubscribed"
                                || n == b"new"
                                || n == b"cur"
                        });
                    if structural {
                        self.flush(&mut ops, &mut slot, t.owner)?;
                        rescan.insert(t.owner);
                    } else if name.as_deref() == Some(b"maildirsize") && self.config.quota.is_some()
                    {
                        // Replaced (by rename): the limits may have changed.
                        quota.insert(t.owner);
                    }
                }
            }
        }
        for ((user, dir), list) in std::mem::take(&mut ops) {
            if !list.is_empty() && !rescan.contains(&user) {
                self.apply(user, &dir, list, &mut rescan)?;
            }
        }
        for u in quota.difference(&rescan) {
            self.check_quota(*u)?;
        }
        for u in rescan {
            self.rescan_user(u, false)?;
        }
        for s in rediscover {
            self.discover(s)?;
        }
        Ok(())
    }

    /// Applies the operations collected so far for one user (before a
    /// structural change of that user is handled).
    fn flush(
        &mut self,
        ops: &mut Pending,
        slot: &mut HashMap<FolderKey, usize>,
        user: usize,
    ) -> Result<(), Error> {
        let mut rescan = BTreeSet::new();
        // A file renamed away whose new name is not in the batch yet may
        // come back under the structural change (a folder renamed): leave it
        // to the rescan rather than report it expunged.
        let sep = self.config.scan.info_sep;
        let base = |o: &Op| name::parse(&o.name, sep).map(|p| p.base.to_vec());
        let back: HashSet<Vec<u8>> = ops
            .iter()
            .filter(|(k, _)| k.0 == user)
            .flat_map(|(_, l)| l.iter().filter(|o| o.present).filter_map(base))
            .collect();
        for (key, list) in ops.iter_mut() {
            if key.0 == user && !list.is_empty() {
                let mut list = std::mem::take(list);
                list.retain(|o| {
                    o.present || !o.renamed || base(o).is_some_and(|b| back.contains(&b))
                });
                self.apply(user, &key.1.clone(), list, &mut rescan)?;
            }
        }
        slot.retain(|k, _| k.0 != user);
        ops.retain(|(k, _)| k.0 != user);
        Ok(())
    }

    /// Hands the sinks what was committed, takes their reports, and fails
    /// when one cannot go on.
    fn deliver(&mut self) -> Result<(), Error> {
        self.pump(false)
    }

    /// Commits the access-log batches of a batch of signals and takes
    /// them out of it.
    fn take_access(&mut self, batch: &mut Vec<Signal>) -> Result<(), Error> {
        if !batch.iter().any(|s| matches!(s, Signal::Access(_))) {
            return Ok(());
        }
        for sig in std::mem::take(batch) {
            match sig {
                Signal::Access(b) => self.commit_access(*b)?,
                other => batch.push(other),
            }
        }
        Ok(())
    }

    /// Commits one access-log batch (events, positions, sessions) and
    /// hands its events to the sinks.
    fn commit_access(&mut self, b: crate::access::source::Batch) -> Result<(), Error> {
        self.events += b.events.len() as u64;
        for e in &b.events {
            self.metrics.event(e.kind);
        }
        self.store.commit_access(b)?;
        self.feed_committed();
        Ok(())
    }

    /// Whether the sinks are so far behind that no new change may be taken.
    fn backed_up(&self) -> Result<bool, Error> {
        Ok(self.feeds.depth() >= self.config.outbox_limit)
    }
}

impl Daemon<'_> {
    /// Whether a folder's new `courierimapuiddb` says something the
    /// folder's row does not: Courier numbers it for the first time, gives
    /// it a new UIDVALIDITY (it does after a RENAME, a moment after the
    /// directory moved), or numbers messages still waiting for a UID.
    fn courier_list_news(&mut self, u: usize, dir: &[u8]) -> bool {
        let Some(folder) = self.users[u].folders.get(dir) else {
            return true;
        };
        let Ok(fdir) = storefs::folder(&self.users[u].root, dir) else {
            return true;
        };
        let tail = self.tails.entry((u, dir.to_vec())).or_default();
        match tail.refresh_file(&fdir, b"courierimapuiddb") {
            Ok(true) => {
                folder.uid_source != UidSource::Courier
                    || tail.uids().uidvalidity != folder.uidvalidity
                    || folder.pending
            }
            _ => false,
        }
    }
}

/// The first half of a rename.
fn is_moved_from(sig: &Signal) -> bool {
    matches!(sig, Signal::Fs { mask, .. } if mask.contains(EventMask::MOVED_FROM))
}

/// Tells systemd, when it is listening; a no-op elsewhere.
///
/// The datagram is sent without blocking: systemd reads every one at once,
/// but a listener that does not (a test harness, a wrapper) would otherwise
/// fill its queue and stop the whole loop. A message that does not fit is
/// dropped; the next status carries the news.
fn notify(state: &[sd_notify::NotifyState]) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(Path::new(&path)),
    };
    let Ok(addr) = addr else { return };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let _ = sock.set_nonblocking(true);
    let mut msg = String::new();
    for s in state {
        msg.push_str(&s.to_string());
        msg.push('\n');
    }
    let _ = sock.send_to_addr(msg.as_bytes(), &addr);
}

/// Blocks SIGTERM, SIGINT and SIGHUP in this thread and every thread it
/// starts from now on. Call it before anything starts a thread (a sink's
/// runtime): a thread without the mask would take the signal and die of
/// it, taking the process with it.
pub fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc signal-mask calls on a zeroed sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Blocks SIGTERM, SIGINT and SIGHUP in every thread and turns them into
/// signals on the channel, so the loop stops between batches, never inside
/// one.
fn catch_signals(tx: Sender<Signal>) {
    let set = block_signals();
    let _ = thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: sigwait on the set blocked above.
                if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                    continue;
                }
                let msg = if sig == libc::SIGHUP {
                    Signal::Reopen
                } else {
                    Signal::Stop
                };
                if tx.send(msg).is_err() {
                    return;
                }
            }
        });
}
