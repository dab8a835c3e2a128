//! Getting events from the outbox to the sinks, and only then forgetting
//! them (vector-style acknowledgement).
//!
//! `scan` delivers synchronously from the outbox before it exits. `watch`
//! gives each sink a thread of its own, so a webhook retrying for half a
//! minute never stalls the inotify loop; the threads get committed rows
//! from the engine in memory and report back what they took, and the
//! engine (the database's one user) records it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::service::queue::{Receiver, RecvTimeoutError, Sender, unbounded};
use tracing::{debug, error, warn};

use crate::config::Config;
use crate::error::Error;
use crate::service::metrics::Metrics;
use crate::sink::{Rejected, Sink, SinkConfig, SinkError};
use crate::state::outbox::Outbox;
use crate::state::store::OutboxRow;
use crate::state::store::StoreError;

/// How many events a sink gets at once.
const BATCH: usize = 1000;
/// How often an idle sink thread asks its sink whether the output went
/// away ([`Sink::check`]): a closed stdout is noticed within this.
const CHECK_EVERY: Duration = Duration::from_millis(200);

/// A sink and the name its outbox position is kept under.
pub struct Outlet {
    pub name: String,
    pub sink: Box<dyn Sink + Send>,
}

/// The configured sinks (stdout when none is configured).
pub fn outlets(config: &Config) -> Result<Vec<Outlet>, Error> {
    let configs = if config.sinks.is_empty() {
        vec![SinkConfig::Stdout]
    } else {
        config.sinks.clone()
    };
    let mut out: Vec<Outlet> = Vec::new();
    for c in configs {
        let name = c.name();
        if out.iter().any(|o| o.name == name) {
            return Err(Error::Config(crate::config::ConfigError(format!(
                "sink {name} is configured twice"
            ))));
        }
        let sink = c
            .build()
            .map_err(|e| Error::Config(crate::config::ConfigError(format!("sink {name}: {e}"))))?;
        out.push(Outlet { name, sink });
    }
    Ok(out)
}

/// The names of the outlets, for trimming and back-pressure.
pub fn names(outlets: &[Outlet]) -> Vec<String> {
    outlets.iter().map(|o| o.name.clone()).collect()
}

/// Delivers everything each sink has not taken yet, then trims what all
/// took. A failing sink does not stop the others; the first failure is
/// returned after all were tried (the events stay for the next run).
pub fn deliver(outbox: &mut Outbox, outlets: &mut [Outlet]) -> Result<u64, Error> {
    let mut sent = 0;
    let mut failure = None;
    for o in outlets.iter_mut() {
        match drain(outbox, o, None) {
            Ok(n) => sent += n,
            Err(DrainError::Store(e)) => return Err(e.into()),
            Err(DrainError::Sink(error)) => {
                let kept = outbox.backlog(&o.name).map(|b| b.events).unwrap_or(0);
                failure.get_or_insert(Error::Sink { error, kept });
            }
        }
    }
    outbox.trim(&names(outlets))?;
    match failure {
        Some(e) => Err(e),
        None => Ok(sent),
    }
}

/// One warning per event a sink rejected for good.
fn warn_rejected(sink: &str, rejected: &[Rejected]) {
    for r in rejected {
        warn!(
            sink,
            seq = r.seq,
            "event rejected: {}; kept in the dead-letter table",
            r.reason
        );
    }
}

enum DrainError {
    Store(StoreError),
    Sink(SinkError),
}

/// Sends one sink everything after its position; with `stop`, gives up at
/// the first failure when stopping.
fn drain(
    outbox: &mut Outbox,
    o: &mut Outlet,
    stop: Option<&AtomicBool>,
) -> Result<u64, DrainError> {
    let mut pos = outbox.position(&o.name).map_err(DrainError::Store)?;
    let mut sent = 0;
    loop {
        let rows = outbox.rows_after(pos, BATCH).map_err(DrainError::Store)?;
        let Some(last) = rows.last().map(|r| r.seq) else {
            return Ok(sent);
        };
        let rejected = o.sink.send(&rows).map_err(DrainError::Sink)?;
        warn_rejected(&o.name, &rejected);
        outbox
            .advance(&o.name, last, &rejected)
            .map_err(DrainError::Store)?;
        pos = last;
        sent += rows.len() as u64;
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) && rows.len() < BATCH {
            return Ok(sent);
        }
    }
}

/// What a sink thread tells the engine.
#[derive(Debug)]
pub enum Report {
    /// The sink took every event up to `last`; it rejected `rejected` for
    /// good (they go to the dead-letter table with its position).
    Took {
        sink: usize,
        last: i64,
        rejected: Vec<Rejected>,
    },
    /// The sink's output went away (a closed stdout): the run must end.
    Closed { sink: usize },
}

struct Worker {
    name: String,
    feed: Sender<Arc<[OutboxRow]>>,
    reopen: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

/// The sink threads of `watch`. They never touch the database: the engine
/// thread, its only user, hands them committed rows from memory (the
/// outbox stays the durable copy) and records what they report taking in
/// its next transaction.
pub struct Dispatcher {
    workers: Vec<Worker>,
    stop: Arc<AtomicBool>,
    reports: Receiver<Report>,
}

impl Dispatcher {
    /// Starts one thread per sink; `wake` is called after every report so
    /// the engine, waiting for the store, takes it at once.
    pub fn start(
        outlets: Vec<Outlet>,
        metrics: Arc<Metrics>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<Dispatcher, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let (report_tx, reports) = unbounded();
        let mut workers = Vec::new();
        for (i, mut o) in outlets.into_iter().enumerate() {
            let (feed, fed) = unbounded::<Arc<[OutboxRow]>>();
            let reopen = Arc::new(AtomicBool::new(false));
            let ctx = WorkerCtx {
                index: i,
                fed,
                stop: stop.clone(),
                reopen: reopen.clone(),
                reports: report_tx.clone(),
                metrics: metrics.clone(),
                wake: wake.clone(),
            };
            let name = o.name.clone();
            let handle = thread::Builder::new()
                .name(format!("sink {name}"))
                .spawn(move || run_worker(&mut o, &ctx))
                .map_err(|e| {
                    Error::Config(crate::config::ConfigError(format!(
                        "cannot start a thread: {e}"
                    )))
                })?;
            workers.push(Worker {
                name,
                feed,
                reopen,
                handle,
            });
        }
        Ok(Dispatcher {
            workers,
            stop,
            reports,
        })
    }

    /// Hands sink `i` committed rows, in order after what it was given.
    pub fn feed(&self, i: usize, rows: Arc<[OutboxRow]>) {
        if let Some(w) = self.workers.get(i) {
            let _ = w.feed.send(rows);
        }
    }

    /// What the sinks reported since the last call.
    pub fn reports(&self) -> Vec<Report> {
        self.reports.try_iter().collect()
    }

    /// Asks every sink to reopen its output (SIGHUP).
    pub fn reopen(&self) {
        for w in &self.workers {
            w.reopen.store(true, Ordering::SeqCst);
        }
    }

    /// Lets each sink deliver what it was given, for up to `grace`, then
    /// stops the threads; returns what they reported meanwhile. What is not
    /// delivered stays in the outbox.
    pub fn stop(self, grace: Duration) -> Vec<Report> {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + grace;
        for w in self.workers {
            drop(w.feed);
            while !w.handle.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if w.handle.is_finished() {
                let _ = w.handle.join();
            } else {
                warn!(
                    sink = w.name,
                    "still delivering at shutdown; the rest stays in the outbox"
                );
            }
        }
        self.reports.try_iter().collect()
    }
}

struct WorkerCtx {
    index: usize,
    fed: Receiver<Arc<[OutboxRow]>>,
    stop: Arc<AtomicBool>,
    reopen: Arc<AtomicBool>,
    reports: Sender<Report>,
    metrics: Arc<Metrics>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl WorkerCtx {
    /// Reports to the engine; `wake` wakes it up now rather than at its
    /// next turn (a batch, or its status tick).
    fn report(&self, r: Report, wake: bool) {
        let _ = self.reports.send(r);
        if wake {
            (self.wake)();
        }
    }
}

/// A sink that took this many rows since it last woke the engine, and has
/// nothing left, wakes it: it is catching up and may need more from the
/// outbox. Below that, what it took is taken at the engine's next turn, so
/// an event costs no extra wake-up of the loop.
const WAKE_AFTER: usize = 5_000;

/// A sink thread: takes what it is fed, up to [`BATCH`] rows at a time in
/// one `send`, retries with back-off until the sink takes them, and asks
/// an idle sink every [`CHECK_EVERY`] whether its output went away.
fn run_worker(o: &mut Outlet, ctx: &WorkerCtx) {
    let mut queue: std::collections::VecDeque<Arc<[OutboxRow]>> = Default::default();
    let mut offset = 0usize;
    let mut backoff = Duration::from_millis(100);
    let mut failing_since: Option<Instant> = None;
    let mut fed_open = true;
    let mut since_wake = 0usize;
    loop {
        if ctx.reopen.swap(false, Ordering::SeqCst)
            && let Err(e) = o.sink.reopen()
        {
            error!(sink = o.name, "cannot reopen: {e}");
        }
        while let Ok(rows) = ctx.fed.try_recv() {
            queue.push_back(rows);
        }
        if queue.is_empty() {
            if !fed_open || ctx.stop.load(Ordering::SeqCst) && ctx.fed.is_empty() {
                return;
            }
            if let Err(SinkError::Closed) = o.sink.check() {
                return closed(o, ctx);
            }
            match ctx.fed.recv_timeout(CHECK_EVERY) {
                Ok(rows) => queue.push_back(rows),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => fed_open = false,
            }
            continue;
        }
        // One send of up to BATCH rows, across what was fed: straight from
        // the rows the engine shared when they are in one piece (the usual
        // case), copied together only when several pieces are waiting.
        let joined: Vec<OutboxRow>;
        let front = &queue[0][offset..];
        let batch: &[OutboxRow] = if queue.len() == 1 || front.len() >= BATCH {
            &front[..front.len().min(BATCH)]
        } else {
            let mut v: Vec<OutboxRow> = Vec::new();
            for rows in &queue {
                let from = if v.is_empty() { offset } else { 0 };
                let take = (BATCH - v.len()).min(rows.len() - from);
                v.extend_from_slice(&rows[from..from + take]);
                if v.len() >= BATCH {
                    break;
                }
            }
            joined = v;
            &joined
        };
        let last = batch.last().map_or(0, |r| r.seq);
        let sent = batch.len();
        match o.sink.send(batch) {
            Ok(rejected) => {
                warn_rejected(&o.name, &rejected);
                if failing_since.take().is_some() {
                    warn!(sink = o.name, "delivering again");
                }
                backoff = Duration::from_millis(100);
                // Drop what was sent from the queue.
                let mut n = sent;
                while n > 0 {
                    let front_left = queue[0].len() - offset;
                    if n >= front_left {
                        n -= front_left;
                        queue.pop_front();
                        offset = 0;
                    } else {
                        offset += n;
                        n = 0;
                    }
                }
                since_wake += sent;
                let wake = since_wake >= WAKE_AFTER && queue.is_empty() && ctx.fed.is_empty();
                if wake {
                    since_wake = 0;
                }
                ctx.report(
                    Report::Took {
                        sink: ctx.index,
                        last,
                        rejected,
                    },
                    wake,
                );
            }
            Err(SinkError::Closed) => return closed(o, ctx),
            Err(e) => {
                ctx.metrics.sink_failure(&o.name);
                if failing_since.is_none() {
                    warn!(
                        sink = o.name,
                        "cannot deliver: {e}; retrying, events wait in the outbox"
                    );
                    failing_since = Some(Instant::now());
                } else {
                    debug!(sink = o.name, "still failing: {e}");
                }
                if ctx.stop.load(Ordering::SeqCst) {
                    return;
                }
                // Back off, waking early only to stop.
                let until = Instant::now() + backoff;
                while Instant::now() < until && !ctx.stop.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// A sink whose output went away: the run must end; the engine counts
/// what it keeps for the next run.
fn closed(o: &Outlet, ctx: &WorkerCtx) {
    warn!(sink = o.name, "the output was closed; stopping");
    ctx.report(Report::Closed { sink: ctx.index }, true);
}
