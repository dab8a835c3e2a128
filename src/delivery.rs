//! Getting events from the outbox to the sinks, and only then forgetting
//! them (vector-style acknowledgement).
//!
//! `scan` delivers synchronously before it exits. `watch` gives each sink a
//! thread of its own with its own connection to the outbox, so a webhook
//! retrying for half a minute never stalls the inotify loop: the loop only
//! wakes the threads after each commit.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use tracing::{debug, error, warn};

use crate::config::Config;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::sink::{Sink, SinkConfig, SinkError};
use crate::store::StoreError;

/// How many events a sink gets at once.
const BATCH: usize = 1000;
/// How often an idle sink thread looks at the outbox without a wake-up.
const IDLE_LOOK: Duration = Duration::from_millis(500);
/// How often an idle sink thread asks its sink whether the output went
/// away ([`Sink::check`]): a closed stdout is noticed within this.
const CHECK_EVERY: Duration = Duration::from_millis(200);

/// The sink whose output went away in this process, if any.
static CLOSED: Mutex<Option<String>> = Mutex::new(None);
/// Whether a closed output should stop the process with SIGTERM.
static STOP_ON_CLOSE: AtomicBool = AtomicBool::new(false);

/// Makes a sink thread whose output goes away (a closed stdout) send
/// SIGTERM to this process, so a `watch` loop idle in its wait wakes up at
/// once and ends. Only for a process that catches SIGTERM
/// (`daemon::run`): the binary calls it for `watch`.
pub fn stop_process_on_close() {
    STOP_ON_CLOSE.store(true, Ordering::SeqCst);
}

/// The sink whose output went away in this process, if one did: the run
/// must end with [`Error::Sink`] whatever else happened.
pub fn closed_sink() -> Option<String> {
    CLOSED.lock().ok().and_then(|g| g.clone())
}

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
        for r in &rejected {
            warn!(
                sink = o.name,
                seq = r.seq,
                "event rejected: {}; kept in the dead-letter table",
                r.reason
            );
        }
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

struct Worker {
    name: String,
    wake: Sender<()>,
    reopen: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

/// The sink threads of `watch`.
pub struct Dispatcher {
    workers: Vec<Worker>,
    stop: Arc<AtomicBool>,
    fatal: Receiver<Error>,
    names: Vec<String>,
}

impl Dispatcher {
    /// Starts one thread per sink.
    pub fn start(
        db: &Path,
        outlets: Vec<Outlet>,
        metrics: Arc<Metrics>,
    ) -> Result<Dispatcher, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let (fatal_tx, fatal) = unbounded();
        let names = names(&outlets);
        let mut workers = Vec::new();
        for mut o in outlets {
            let mut outbox = Outbox::open(db)?;
            let (wake, woken) = bounded(1);
            let reopen = Arc::new(AtomicBool::new(false));
            let (stop, reopen2, fatal_tx, metrics) = (
                stop.clone(),
                reopen.clone(),
                fatal_tx.clone(),
                metrics.clone(),
            );
            let name = o.name.clone();
            let handle = thread::Builder::new()
                .name(format!("sink {name}"))
                .spawn(move || {
                    run_worker(
                        &mut outbox,
                        &mut o,
                        &woken,
                        &stop,
                        &reopen2,
                        &fatal_tx,
                        &metrics,
                    )
                })
                .map_err(|e| {
                    Error::Config(crate::config::ConfigError(format!(
                        "cannot start a thread: {e}"
                    )))
                })?;
            workers.push(Worker {
                name,
                wake,
                reopen,
                handle,
            });
        }
        Ok(Dispatcher {
            workers,
            stop,
            fatal,
            names,
        })
    }

    /// Tells every sink that new events were committed.
    pub fn wake(&self) {
        for w in &self.workers {
            let _ = w.wake.try_send(());
        }
    }

    /// Asks every sink to reopen its output (SIGHUP).
    pub fn reopen(&self) {
        for w in &self.workers {
            w.reopen.store(true, Ordering::SeqCst);
        }
        self.wake();
    }

    /// A sink that cannot go on (its reader went away), if any.
    pub fn fatal(&self) -> Option<Error> {
        self.fatal.try_recv().ok()
    }

    /// The sinks' names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Lets each sink deliver what is committed, for up to `grace`, then
    /// stops the threads. What is not delivered stays in the outbox.
    pub fn stop(self, grace: Duration) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
        let deadline = Instant::now() + grace;
        for w in self.workers {
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
    }
}

/// Waits for a wake-up for up to [`IDLE_LOOK`], asking the sink every
/// [`CHECK_EVERY`] whether its output went away.
fn idle(o: &mut Outlet, woken: &Receiver<()>) -> Result<(), SinkError> {
    let until = Instant::now() + IDLE_LOOK;
    loop {
        o.sink.check()?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || woken.recv_timeout(left.min(CHECK_EVERY)).is_ok() {
            return Ok(());
        }
    }
}

/// A sink whose output went away: the run must end. Reports it to the
/// loop, and wakes the loop up when it waits for the store (see
/// [`stop_process_on_close`]). The count of events kept is only a first
/// figure: the binary counts the outbox again once the loop has stopped.
fn closed(outbox: &Outbox, o: &Outlet, fatal: &Sender<Error>) {
    warn!(sink = o.name, "the output was closed; stopping");
    if let Ok(mut g) = CLOSED.lock() {
        g.get_or_insert_with(|| o.name.clone());
    }
    let kept = outbox.backlog(&o.name).map(|b| b.events).unwrap_or(0);
    let _ = fatal.send(Error::Sink {
        error: SinkError::Closed,
        kept,
    });
    if STOP_ON_CLOSE.load(Ordering::SeqCst) {
        // SAFETY: kill(2) on our own pid; the daemon blocks SIGTERM in every
        // thread and takes it with sigwait, as a request to stop.
        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    }
}

fn run_worker(
    outbox: &mut Outbox,
    o: &mut Outlet,
    woken: &Receiver<()>,
    stop: &AtomicBool,
    reopen: &AtomicBool,
    fatal: &Sender<Error>,
    metrics: &Metrics,
) {
    let mut backoff = Duration::from_millis(100);
    let mut failing_since: Option<Instant> = None;
    loop {
        if reopen.swap(false, Ordering::SeqCst)
            && let Err(e) = o.sink.reopen()
        {
            error!(sink = o.name, "cannot reopen: {e}");
        }
        let stopping = stop.load(Ordering::SeqCst);
        match drain(outbox, o, Some(stop)) {
            Ok(_) => {
                if failing_since.take().is_some() {
                    warn!(sink = o.name, "delivering again");
                }
                backoff = Duration::from_millis(100);
                if stopping {
                    return;
                }
                // Also look now and then without a wake-up, so nothing can
                // wait forever; meanwhile see whether the output went away.
                if let Err(SinkError::Closed) = idle(o, woken) {
                    return closed(outbox, o, fatal);
                }
            }
            Err(DrainError::Sink(SinkError::Closed)) => return closed(outbox, o, fatal),
            Err(DrainError::Sink(e)) => {
                metrics.sink_failure(&o.name);
                if failing_since.is_none() {
                    warn!(
                        sink = o.name,
                        "cannot deliver: {e}; retrying, events wait in the outbox"
                    );
                    failing_since = Some(Instant::now());
                } else {
                    debug!(sink = o.name, "still failing: {e}");
                }
                if stopping {
                    return;
                }
                let _ = woken.recv_timeout(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(DrainError::Store(e)) => {
                error!(sink = o.name, "{e}");
                if stopping {
                    return;
                }
                thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}
