//! The configured access logs read together: files through [`Follower`]s,
//! the journal through `journalctl`, turned into batches of events with
//! the positions to commit with them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{NaiveDateTime, TimeZone};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use tracing::warn;

use super::follow::Follower;
use super::journal::{self, Entry};
use super::{AccessError, Context, JOURNAL, OpenSession, Position, Sessions, build, line};
use crate::event::Event;
use crate::event::filter::Filter;

/// Bytes of log read per batch at most, so memory stays bounded after a
/// long downtime.
pub const BATCH_BYTES: usize = 1 << 20;
/// Journal entries per batch at most.
const BATCH_ENTRIES: usize = 2_000;
/// How often `watch` looks at the log files.
pub const POLL: Duration = Duration::from_millis(250);

/// Events and what to commit with them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub events: Vec<Event>,
    pub positions: Vec<Position>,
    /// Sessions to remember, and ids to forget.
    pub opened: Vec<(String, OpenSession)>,
    pub closed: Vec<String>,
}

impl Eq for Batch {}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.positions.is_empty()
            && self.opened.is_empty()
            && self.closed.is_empty()
    }
}

/// Settings the reading needs from the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    pub logs: Vec<String>,
    pub server: String,
    pub filter: Filter,
    /// First run: read what is there (`--emit-existing`).
    pub from_start: bool,
}

/// What the state remembered.
#[derive(Debug, Default)]
pub struct Remembered {
    pub positions: HashMap<String, Position>,
    pub sessions: Vec<(String, OpenSession)>,
}

fn to_local(t: NaiveDateTime) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::Local
        .from_local_datetime(&t)
        .earliest()
        .map(|d| d.fixed_offset())
}

/// Turns lines into events.
struct Reader {
    server: String,
    filter: Filter,
    sessions: Sessions,
}

impl Reader {
    fn line(&mut self, text: &str, out: &mut Vec<Event>) {
        let now = chrono::Local::now().naive_local();
        let (at, msg) = line::split_line(text, now, &to_local);
        self.message(msg, at, out);
    }

    fn message(
        &mut self,
        msg: &str,
        at: Option<chrono::DateTime<chrono::FixedOffset>>,
        out: &mut Vec<Event>,
    ) {
        let Some(rec) = line::parse_message(msg) else {
            return;
        };
        let ctx = Context {
            server: &self.server,
            pid: std::process::id(),
            filter: &self.filter,
        };
        out.extend(build(rec, at, &mut self.sessions, &ctx));
    }

    fn finish(&mut self, batch: &mut Batch) {
        let (opened, closed) = self.sessions.take_changes();
        batch.opened.extend(opened);
        batch.closed.extend(closed);
    }
}

/// The log files being followed, with the events they made.
pub struct Files {
    followers: Vec<Follower>,
    reader: Reader,
    committed: Vec<Position>,
}

impl Files {
    /// Opens the files of `settings` (the journal is not one of them).
    pub fn open(settings: &Settings, remembered: &mut Remembered) -> Files {
        let followers: Vec<Follower> = settings
            .logs
            .iter()
            .filter(|l| *l != JOURNAL)
            .map(|l| Follower::start(l, remembered.positions.remove(l), settings.from_start))
            .collect();
        let committed = followers.iter().map(|f| f.position()).collect();
        Files {
            followers,
            reader: Reader {
                server: settings.server.clone(),
                filter: settings.filter.clone(),
                sessions: Sessions::from_rows(std::mem::take(&mut remembered.sessions)),
            },
            committed,
        }
    }

    /// Reads the next batch of every file (up to [`BATCH_BYTES`] each);
    /// returns whether more is waiting. Positions that did not move are
    /// left out, except on a first run (the baseline is committed).
    pub fn read(&mut self, batch: &mut Batch, first: bool) -> bool {
        let mut more = false;
        let mut lines = Vec::new();
        for (i, f) in self.followers.iter_mut().enumerate() {
            lines.clear();
            more |= f.read(BATCH_BYTES, &mut lines);
            for l in &lines {
                self.reader.line(l, &mut batch.events);
            }
            let p = f.position();
            if first || p != self.committed[i] {
                self.committed[i] = p.clone();
                batch.positions.push(p);
            }
        }
        self.reader.finish(batch);
        more
    }

    /// Hands the open sessions over (to the journal reader of a scan).
    fn take_sessions(&mut self) -> Sessions {
        std::mem::take(&mut self.reader.sessions)
    }
}

/// Reads the journal once (for `scan`), from the remembered cursor, in
/// batches handed to `commit`. `remembered` is `None` on the first run.
pub fn scan_journal<E: From<AccessError>>(
    settings: &Settings,
    cursor: Option<String>,
    sessions: Sessions,
    first: bool,
    commit: &mut dyn FnMut(Batch) -> Result<(), E>,
) -> Result<(), E> {
    let baseline = first && !settings.from_start && cursor.is_none();
    let mut r = journal::Reader::spawn(cursor.as_deref(), false, baseline).map_err(|e| {
        E::from(AccessError(format!(
            "--access-log journal: cannot run journalctl: {e} (is systemd's journalctl installed?)"
        )))
    })?;
    let mut reader = Reader {
        server: settings.server.clone(),
        filter: settings.filter.clone(),
        sessions,
    };
    let mut batch = Batch::default();
    let mut n = 0;
    let mut last = None;
    while let Some(e) = r.next_entry().map_err(|e| io_error("journalctl", e))? {
        if !baseline {
            reader.message(&e.message, e.at, &mut batch.events);
        }
        last = Some(e.cursor);
        n += 1;
        if n >= BATCH_ENTRIES {
            reader.finish(&mut batch);
            batch.positions.push(cursor_position(last.clone()));
            commit(std::mem::take(&mut batch))?;
            n = 0;
        }
    }
    if let Err(e) = r.finish() {
        warn!("--access-log journal: {e}");
    }
    reader.finish(&mut batch);
    if last.is_some() || first {
        batch.positions.push(cursor_position(last.or(cursor)));
    }
    if !batch.is_empty() {
        commit(batch)?;
    }
    Ok(())
}

fn cursor_position(cursor: Option<String>) -> Position {
    Position {
        log: JOURNAL.to_string(),
        cursor,
        ..Position::default()
    }
}

fn io_error<E: From<AccessError>>(what: &str, e: std::io::Error) -> E {
    E::from(AccessError(format!("{what}: {e}")))
}

/// Reads every configured log once (for `scan`), committing batch by batch.
/// `first` is true when the state has no position for a log yet.
pub fn scan<E: From<AccessError>>(
    settings: &Settings,
    mut remembered: Remembered,
    commit: &mut dyn FnMut(Batch) -> Result<(), E>,
) -> Result<(), E> {
    let journal_pos = remembered.positions.remove(JOURNAL);
    let first_files = settings
        .logs
        .iter()
        .filter(|l| *l != JOURNAL)
        .any(|l| !remembered.positions.contains_key(l));
    let mut files = Files::open(settings, &mut remembered);
    let mut first = first_files;
    loop {
        let mut batch = Batch::default();
        let more = files.read(&mut batch, first);
        first = false;
        if !batch.is_empty() {
            commit(batch)?;
        }
        if !more {
            break;
        }
    }
    if settings.logs.iter().any(|l| l == JOURNAL) {
        let first = journal_pos.is_none();
        let cursor = journal_pos.and_then(|p| p.cursor);
        scan_journal(settings, cursor, files.take_sessions(), first, commit)?;
    }
    Ok(())
}

/// Follows every configured log (for `watch`) in a thread of its own,
/// sending each batch to the engine with `send` until it fails or `stop`
/// is set. While `hold` is set (the engine pauses for its sinks) nothing
/// is read: the lines wait in the log, the journal entries in `journalctl`.
pub fn follow(
    settings: Settings,
    mut remembered: Remembered,
    send: impl Fn(Batch) -> bool + Send + 'static,
    stop: Arc<AtomicBool>,
    hold: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let journal_pos = remembered.positions.remove(JOURNAL);
    let want_journal = settings.logs.iter().any(|l| l == JOURNAL);
    let first_files = settings
        .logs
        .iter()
        .filter(|l| *l != JOURNAL)
        .any(|l| !remembered.positions.contains_key(l));
    let entries = if want_journal {
        let first = journal_pos.is_none();
        let cursor = journal_pos.and_then(|p| p.cursor);
        Some(spawn_journal(&settings, cursor, first, stop.clone())?)
    } else {
        None
    };
    // Opened here, not in the thread: a first run's baseline is the end of
    // the logs as they are when `watch` says it is ready.
    let mut files = Files::open(&settings, &mut remembered);
    std::thread::Builder::new()
        .name("access-logs".into())
        .spawn(move || {
            let mut first = first_files;
            let mut entries = entries;
            while !stop.load(Ordering::SeqCst) {
                if hold.load(Ordering::SeqCst) && !first {
                    std::thread::sleep(POLL);
                    continue;
                }
                let mut batch = Batch::default();
                let more = files.read(&mut batch, first);
                first = false;
                if let Some((rx, start)) = &mut entries {
                    let mut last = None;
                    for _ in 0..BATCH_ENTRIES {
                        match rx.try_recv() {
                            Ok(e) => {
                                files.reader.message(&e.message, e.at, &mut batch.events);
                                last = Some(e.cursor);
                            }
                            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                        }
                    }
                    files.reader.finish(&mut batch);
                    match last {
                        Some(c) => batch.positions.push(cursor_position(Some(c))),
                        None => batch.positions.extend(start.take()),
                    }
                    start.take();
                }
                if !batch.is_empty() && !send(batch) {
                    return;
                }
                if !more {
                    std::thread::sleep(POLL);
                }
            }
        })?;
    Ok(())
}

/// Starts `journalctl --follow` and a thread feeding its entries into a
/// channel. On a first run without `--emit-existing` it follows from the
/// newest entry (a silent baseline), whose position is returned to be
/// committed.
fn spawn_journal(
    settings: &Settings,
    cursor: Option<String>,
    first: bool,
    stop: Arc<AtomicBool>,
) -> std::io::Result<(Receiver<Entry>, Option<Position>)> {
    let (tx, rx): (Sender<Entry>, Receiver<Entry>) = crossbeam_channel::bounded(BATCH_ENTRIES);
    let mut cursor = cursor;
    let mut start = None;
    if first && !settings.from_start {
        let mut r = journal::Reader::spawn(None, false, true)?;
        while let Some(e) = r.next_entry()? {
            cursor = Some(e.cursor);
        }
        let _ = r.finish();
        start = Some(cursor_position(cursor.clone()));
    }
    let mut r = journal::Reader::spawn(cursor.as_deref(), true, false)?;
    std::thread::Builder::new()
        .name("access-journal".into())
        .spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match r.next_entry() {
                    Ok(Some(e)) => {
                        if tx.send(e).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {
                        warn!("--access-log journal: journalctl ended; journal entries are read again at the next start");
                        return;
                    }
                    Err(e) => {
                        warn!("--access-log journal: {e}");
                        return;
                    }
                }
            }
        })?;
    Ok((rx, start))
}
