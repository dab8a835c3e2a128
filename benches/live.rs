//! The live benchmark: `cargo bench --bench live`.
//!
//! A driver thread replays one stream of filesystem operations on a
//! generated store at a set rate: Postfix-style deliveries (write `tmp/`,
//! link into `new/`, unlink `tmp/`), flag renames in `cur/` (`x:2,` →
//! `x:2,S` → `x:2,FS` → `x:2,F` → `x:2,`) and expunges (unlink of an
//! earlier delivery or, in the spread store, of a pre-populated message).
//!
//! The store, by default (`LIVE_SPREAD=1`), is spread like a real server's:
//! `LIVE_USERS` users `uNNN@example.org` at
//! `ROOT/example.org/uNNN/Maildir`, each with `LIVE_FOLDERS` folders
//! (INBOX and `.F1` …) of `LIVE_SMALL` messages, except one hot folder
//! (u000's INBOX) of `LIVE_HOT` messages. Deliveries go `LIVE_INBOX_PCT` %
//! to the INBOX of a uniformly drawn user and otherwise to a uniformly
//! drawn folder; flag renames touch `LIVE_WORKSET` messages drawn over all
//! folders; expunges remove, half and half, an earlier delivery or a
//! pre-populated message of a uniformly drawn folder. `LIVE_SPREAD=0`
//! gives the earlier one-folder store (one Maildir, INBOX only, expunges
//! of deliveries only). The same stream is replayed for each watcher:
//!
//! - ours: `maildir-events watch --state FRESH --server-name bench
//!   --uid-wait-ms 0 --store ROOT/{domain}/{local}/Maildir` (one folder:
//!   `--user u MAILDIR`) (release build, ready on `READY=1` through a
//!   `NOTIFY_SOCKET` we bind);
//! - `inotifywait -m -r -e create,moved_to,moved_from,delete --format
//!   '%w%f %e' ROOT` (ready on "Watches established.").
//!
//! Each line the watcher prints is timestamped on arrival and matched to
//! the operations it covers, per folder: ours's events are routed by
//! `user` and the mailbox name in `mailboxID` (`uri`). Within a folder, a
//! MessageNew goes to an unreported delivery of its `messageSize`
//! (deliveries differ in size, `j mod 1024` bytes of pad) nearest its
//! expected UID (deliveries to a folder are numbered in order after its
//! pre-populated messages); a flag event to the next flag operation of
//! each UID in its `uidset` (event and flag checked); a MessageExpunge to
//! the unlink of those deliveries or pre-populated messages; an
//! inotifywait line to the operation whose file and event it names.
//! Latency = line arrival − return of the operation's syscall (a merged
//! event gives its arrival time to all the operations it covers).
//!
//! Also counted, for ours: *renumbered* messages (a flag rename reported
//! as MessageExpunge + MessageAppend under a new UID: a rename cut in two
//! by a batch boundary), *coalesced* deliveries (a delivery and its
//! expunge both unreported: they fell into one batch because the watcher
//! was further behind than `LIVE_LAG_SECS`), unexpected events, and from
//! its `--metrics` endpoint the user rescans and batches during the stream.
//!
//! Reported, medians over `LIVE_REPEAT` runs (the machine is shared and
//! noisy), ours beside inotifywait:
//!
//! 1. per rate: operations reported (a run is lossless when every
//!    operation is matched — coalesced ones count as missing — and no
//!    overflow or "outbox full" was logged), achieved rate, p50/p99/max
//!    latency, drain (last operation → last line), CPU per operation;
//! 2. the latency at `LIVE_LAT_RATE` (the sweep point at that rate runs
//!    `LIVE_LAT_OPS` operations);
//! 3. CPU per operation (utime+stime from `/proc/PID/stat` after ready
//!    and after the last line, so the catch-up is not counted; µs/op is
//!    ms per 1k ops) at every rate, and with every operation in one small
//!    folder against every operation in the hot folder (spread store,
//!    whole store watched) or, with `LIVE_SPREAD=0`, on a small and a big
//!    one-folder store (and `LIVE_HUGE` if set);
//! 4. memory of each watcher: `VmHWM` at ready (after the catch-up) and at
//!    the end, `VmRSS` at the end; and the time to ready (the catch-up).
//!
//! It reports; it never fails on speed. Sizing by environment variable:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `LIVE_SPREAD` | 1 | 1: many users and folders plus a hot folder; 0: the one-folder store |
//! | `LIVE_USERS` | 100 | users (spread) |
//! | `LIVE_FOLDERS` | 10 | folders per user, INBOX included (spread) |
//! | `LIVE_HOT` | 100000 | messages in the hot folder, u000's INBOX (spread; 0 = none) |
//! | `LIVE_INBOX_PCT` | 80 | percent of deliveries to an INBOX (spread) |
//! | `LIVE_RATES` | 500,2000,5000,10000,20000,max (one folder: 2000,5000,10000,20000,40000,max) | sweep rates (ops/s; `max` = as fast as possible) |
//! | `LIVE_SECS` | 3 | seconds per sweep point (ops = rate × secs) |
//! | `LIVE_MIN_OPS` | 6000 (one folder: 10) | operations per sweep point at least (CPU ticks are 10 ms) |
//! | `LIVE_OPS` | unset | operations per sweep point, overriding `LIVE_SECS` |
//! | `LIVE_MAX_OPS` | 60000 | operations of the `max` point, and at most at any rate |
//! | `LIVE_LAT_RATE` / `LIVE_LAT_OPS` | 2000 / 20000 | the latency point of the sweep |
//! | `LIVE_SMALL` | 100 | messages per folder (spread), or in the small folder (one folder) |
//! | `LIVE_BIG` | 100000 | messages in the big folder (one folder) |
//! | `LIVE_HUGE` | 0 | one folder: a third, huge folder for CPU and RSS (e.g. 1000000; 0 = skip) |
//! | `LIVE_CPU_RATE` / `LIVE_CPU_OPS` | 5000 / 25000 | the CPU-per-event runs |
//! | `LIVE_REPEAT` | 3 | runs per point (`LIVE_HUGE` runs once) |
//! | `LIVE_MIX` | 30,40,30 | parts of deliveries, flag renames, expunges |
//! | `LIVE_WORKSET` | 10000 (one folder: 1000) | distinct messages the flag renames touch |
//! | `LIVE_LAG_SECS` | 0.1 | a delivery is expunged no sooner than this (at the target rate; `max` counts as 50k/s) |
//! | `LIVE_BODY_BYTES` | 300 | size of a delivered message |
//! | `LIVE_OURS_ARGS` | (empty) | extra `watch` options; `;` separates variants, each measured |
//! | `LIVE_WATCHERS` | ours,inotifywait | which watchers to run |
//! | `LIVE_SECTIONS` | sweep,cpu | which sections to run |
//! | `LIVE_QUIET_MS` | 1500 | after the stream, a run ends when nothing came this long |
//! | `LIVE_SEED` | 42 | generator seed |
//! | `LIVE_DIR` | /dev/shm if writable, else `$TMPDIR` or /tmp | where the stores go |
//! | `LIVE_STATE_DIR` | `$TMPDIR` or /tmp | where ours's state databases go |
//! | `LIVE_JSON` | unset | also write every run as JSON to this file |
//! | `LIVE_DUMP` | unset | path prefix: write the operations (with arrival or MISSING), lines and stderr of every run that was not clean (`LIVE_DUMP_ALL=1`: of every run) |
//! | `LIVE_DEBUG` | unset | print why an event of ours matched no operation |
//!
//! Run without `--bench` (as `cargo test --benches` does) it does a tiny
//! smoke run instead.

mod livegen;

use std::collections::{HashMap, VecDeque};
use std::env;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use livegen::{Kind, Mix, Store, StoreConfig, Stream, StreamConfig, flag_event};

const BIN: &str = env!("CARGO_BIN_EXE_maildir-events");

fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
    match env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a valid value")),
        _ => default,
    }
}

fn var_str(name: &str, default: &str) -> String {
    env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

#[derive(Clone, Debug)]
struct Opts {
    rates: Vec<Option<f64>>,
    secs: f64,
    ops: Option<usize>,
    max_ops: usize,
    lat_rate: f64,
    lat_ops: usize,
    min_ops: usize,
    spread: bool,
    users: usize,
    folders: usize,
    hot: usize,
    inbox_pct: u32,
    small: usize,
    big: usize,
    huge: usize,
    cpu_rate: f64,
    cpu_ops: usize,
    repeat: usize,
    mix: Mix,
    workset: usize,
    lag_secs: f64,
    body_bytes: usize,
    watchers: Vec<Watcher>,
    sections: Vec<String>,
    quiet: Duration,
    seed: u64,
    dir: PathBuf,
    state_dir: PathBuf,
    json: Option<PathBuf>,
    smoke: bool,
}

#[derive(Clone, Debug)]
enum Watcher {
    Ours { args: Vec<String> },
    Inotifywait,
}

impl Watcher {
    fn label(&self) -> String {
        match self {
            Watcher::Ours { args } if args.is_empty() => "ours".into(),
            Watcher::Ours { args } => format!("ours [{}]", args.join(" ")),
            Watcher::Inotifywait => "inotifywait".into(),
        }
    }
}

fn opts() -> Opts {
    let smoke = !env::args().any(|a| a == "--bench");
    let spread = var("LIVE_SPREAD", 1u32) != 0;
    let rates = var_str(
        "LIVE_RATES",
        if spread {
            "500,2000,5000,10000,20000,max"
        } else {
            "2000,5000,10000,20000,40000,max"
        },
    )
    .split(',')
    .map(|r| match r.trim() {
        "max" => None,
        r => Some(
            r.parse()
                .unwrap_or_else(|_| panic!("LIVE_RATES: bad rate {r}")),
        ),
    })
    .collect();
    let mix: Vec<u32> = var_str("LIVE_MIX", "30,40,30")
        .split(',')
        .map(|p| p.trim().parse().expect("LIVE_MIX: three integers"))
        .collect();
    assert!(
        mix.len() == 3,
        "LIVE_MIX: three integers (deliver,flag,expunge)"
    );
    let mut watchers = Vec::new();
    for w in var_str("LIVE_WATCHERS", "ours,inotifywait").split(',') {
        match w.trim() {
            "ours" => {
                for variant in var_str("LIVE_OURS_ARGS", "").split(';') {
                    watchers.push(Watcher::Ours {
                        args: variant.split_whitespace().map(String::from).collect(),
                    });
                }
            }
            "inotifywait" => {
                if Command::new("inotifywait").arg("--help").output().is_ok() {
                    watchers.push(Watcher::Inotifywait);
                } else {
                    eprintln!("inotifywait not found (apt-get install inotify-tools): skipped");
                }
            }
            other => panic!("LIVE_WATCHERS: unknown watcher {other}"),
        }
    }
    // The store goes on tmpfs when there is one (as the issue's probe
    // did); the watcher's state stays on the disk of $TMPDIR.
    let shm = Path::new("/dev/shm");
    let dir = env::var_os("LIVE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            if tempfile::tempdir_in(shm).is_ok() {
                shm.to_path_buf()
            } else {
                env::temp_dir()
            }
        });
    let state_dir = env::var_os("LIVE_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(env::temp_dir);
    let mut o = Opts {
        rates,
        secs: var("LIVE_SECS", 3.0),
        ops: env::var("LIVE_OPS").ok().and_then(|v| v.parse().ok()),
        max_ops: var("LIVE_MAX_OPS", 60_000),
        lat_rate: var("LIVE_LAT_RATE", 2000.0),
        lat_ops: var("LIVE_LAT_OPS", 20_000),
        min_ops: var("LIVE_MIN_OPS", if spread { 6000 } else { 10 }),
        spread,
        users: var("LIVE_USERS", 100usize).max(1),
        folders: var("LIVE_FOLDERS", 10usize).max(1),
        hot: var("LIVE_HOT", 100_000),
        inbox_pct: var("LIVE_INBOX_PCT", 80u32).min(100),
        small: var("LIVE_SMALL", 100),
        big: var("LIVE_BIG", 100_000),
        huge: var("LIVE_HUGE", 0),
        cpu_rate: var("LIVE_CPU_RATE", 5000.0),
        cpu_ops: var("LIVE_CPU_OPS", 25_000),
        repeat: var("LIVE_REPEAT", 3usize).max(1),
        mix: Mix {
            deliver: mix[0],
            flag: mix[1],
            expunge: mix[2],
        },
        workset: var("LIVE_WORKSET", if spread { 10_000 } else { 1000 }),
        lag_secs: var("LIVE_LAG_SECS", 0.1),
        body_bytes: var("LIVE_BODY_BYTES", 300),
        watchers,
        sections: var_str("LIVE_SECTIONS", "sweep,cpu")
            .split(',')
            .map(|s| s.trim().to_string())
            .collect(),
        quiet: Duration::from_millis(var("LIVE_QUIET_MS", 1500)),
        seed: var("LIVE_SEED", 42),
        dir,
        state_dir,
        json: env::var_os("LIVE_JSON").map(PathBuf::from),
        smoke,
    };
    if smoke {
        o.rates = vec![Some(2000.0), None];
        o.ops = Some(300);
        o.max_ops = 300;
        o.lat_ops = 300;
        o.min_ops = 10;
        o.users = 3;
        o.folders = 3;
        o.hot = 500;
        o.workset = 50;
        o.small = 20;
        o.big = 500;
        o.huge = 0;
        o.cpu_ops = 300;
        o.repeat = 1;
        o.quiet = Duration::from_millis(500);
    }
    o
}

// ---------------------------------------------------------------- /proc

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// utime + stime of a process (all its threads), in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    let rest = &s[s.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / clk_tck()
}

/// VmHWM of a process, in kB.
fn vm_hwm_kb(pid: u32) -> u64 {
    vm_kb(pid, "VmHWM:")
}

/// A `/proc/PID/status` memory figure, in kB.
fn vm_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------- matching

/// Matches printed lines to operations.
trait Matcher {
    /// Takes one line that arrived at `t`.
    fn feed(&mut self, t: Instant, line: &[u8]);
    /// Every operation has been reported (and, for line counts, every line).
    fn complete(&self) -> bool;
    fn arrivals(&self) -> &[Option<Instant>];
    fn unexpected(&self) -> usize;
    /// Messages reported expunged and re-appended under a new UID.
    fn renumbered(&self) -> usize {
        0
    }
}

/// Our events, per (user, mailbox): MessageNew by order, flag events and
/// expunges by UID.
struct OursMatcher {
    arrivals: Vec<Option<Instant>>,
    matched: usize,
    unexpected: usize,
    renumbered: usize,
    /// (user, mailbox name) → folder index.
    folder_of: HashMap<(String, String), usize>,
    folders: Vec<FolderMatch>,
    /// Delivery number → the op of its expunge.
    expunge_of: HashMap<usize, usize>,
}

/// The matching state of one folder.
#[derive(Default)]
struct FolderMatch {
    /// Deliveries not reported yet, oldest first: (op, messageSize,
    /// delivery number in this folder, delivery number in the stream).
    deliveries: VecDeque<(usize, u64, usize, usize)>,
    /// UID → delivery number in the stream.
    uid_to_j: HashMap<u32, usize>,
    flags: HashMap<u32, VecDeque<(usize, u8)>>,
    /// UID of a pre-populated message → the op that expunges it.
    expunge_old: HashMap<u32, usize>,
    /// Pre-populated messages reported expunged although only renamed
    /// (a rename split over two batches), waiting for their MessageAppend.
    split: VecDeque<u32>,
    /// New UID → the message it really is, after such a split.
    alias: HashMap<u32, u32>,
    /// The UID of the first delivery.
    first_uid: u32,
    /// UID − first_uid − delivery number, as last seen.
    shift: i64,
}

impl OursMatcher {
    fn new(stream: &Stream, store: &Store) -> OursMatcher {
        let mut m = OursMatcher {
            arrivals: vec![None; stream.ops.len()],
            matched: 0,
            unexpected: 0,
            renumbered: 0,
            folder_of: HashMap::new(),
            folders: Vec::new(),
            expunge_of: HashMap::new(),
        };
        for (f, folder) in store.folders.iter().enumerate() {
            m.folder_of.insert(
                (store.users[folder.user].clone(), folder.mailbox.clone()),
                f,
            );
            m.folders.push(FolderMatch {
                first_uid: Store::uid_of(folder.messages),
                ..FolderMatch::default()
            });
        }
        for (i, op) in stream.ops.iter().enumerate() {
            match op.kind {
                Kind::Deliver { f, j, k } => {
                    m.folders[f].deliveries.push_back((
                        i,
                        stream.vsize(op).expect("a delivery"),
                        k,
                        j,
                    ));
                }
                Kind::Flag { f, uid, from } => m.folders[f]
                    .flags
                    .entry(uid)
                    .or_default()
                    .push_back((i, from)),
                Kind::Expunge { j, .. } => {
                    m.expunge_of.insert(j, i);
                }
                Kind::ExpungeOld { f, uid } => {
                    m.folders[f].expunge_old.insert(uid, i);
                }
            }
        }
        m
    }
}

/// Marks operation `op` reported at `t`.
fn hit(arrivals: &mut [Option<Instant>], matched: &mut usize, op: usize, t: Instant) {
    if arrivals[op].is_none() {
        arrivals[op] = Some(t);
        *matched += 1;
    }
}

/// The mailbox name in an event's `mailboxID`
/// (`imap://USER@HOST/MAILBOX;UIDVALIDITY=…`).
fn mailbox_of(v: &Value) -> Option<String> {
    let id = v["mailboxID"].as_str().or_else(|| v["uri"].as_str())?;
    let rest = id.strip_prefix("imap://")?;
    let (_, path) = rest.split_once('/')?;
    let name = path.split(";UIDVALIDITY=").next()?;
    Some(name.trim_end_matches('/').to_string())
}

/// The sorted flagNames of a message after the flag operation from state
/// `from` (see `livegen::flag_event`).
fn flag_names_after(from: u8) -> Vec<&'static str> {
    match (from + 1) % 4 {
        0 => vec![],
        1 => vec!["\\Seen"],
        2 => vec!["\\Flagged", "\\Seen"],
        _ => vec!["\\Flagged"],
    }
}

/// Parses an IMAP uidset ("1,3:5").
fn uidset(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in s.split(',') {
        match part.split_once(':') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a.min(b)..=a.max(b));
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

impl Matcher for OursMatcher {
    fn feed(&mut self, t: Instant, line: &[u8]) {
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            self.unexpected += 1;
            return;
        };
        let ev = v["event"].as_str().unwrap_or("");
        let user = v["user"].as_str().unwrap_or("").to_string();
        let Some(f) = mailbox_of(&v).and_then(|mb| self.folder_of.get(&(user, mb)).copied()) else {
            if env::var_os("LIVE_DEBUG").is_some() {
                eprintln!("[debug] no such folder: {}", String::from_utf8_lossy(line));
            }
            self.unexpected += 1;
            return;
        };
        let arrivals = &mut self.arrivals;
        let matched = &mut self.matched;
        let fm = &mut self.folders[f];
        match ev {
            "MessageNew" => {
                // Deliveries to a folder are numbered in order, after its
                // pre-populated messages (less any that came and went
                // inside a batch): among the unreported deliveries of that
                // size (no size: the file was gone when the watcher read
                // it), the one whose expected UID is nearest.
                let size = v["messageSize"].as_u64();
                let uid = v["uri"]
                    .as_str()
                    .and_then(|u| u.rsplit_once(";UID="))
                    .and_then(|(_, n)| n.parse::<u32>().ok());
                let want = uid.map_or(0, |u| u as i64 - fm.first_uid as i64 - fm.shift);
                let Some(k) = fm
                    .deliveries
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, s, _, _))| size.is_none_or(|size| *s == size))
                    .min_by_key(|(_, (_, _, kf, _))| (*kf as i64 - want).abs())
                    .map(|(k, _)| k)
                else {
                    self.unexpected += 1;
                    return;
                };
                let (op, _, kf, j) = fm.deliveries.remove(k).expect("found");
                if let Some(uid) = uid {
                    fm.uid_to_j.insert(uid, j);
                    fm.shift = uid as i64 - fm.first_uid as i64 - kf as i64;
                }
                hit(arrivals, matched, op, t);
            }
            "MessageAppend" => {
                // Only a split rename makes one here: the message comes
                // back under a new UID, with the flags of the rename.
                let uid = v["uri"]
                    .as_str()
                    .and_then(|u| u.rsplit_once(";UID="))
                    .and_then(|(_, n)| n.parse::<u32>().ok());
                // The split message whose pending renames end in these
                // flags (a split can hide the renames that follow it in
                // the next batch).
                let mut names: Vec<&str> = v["flagNames"]
                    .as_str()
                    .unwrap_or("")
                    .split_whitespace()
                    .collect();
                names.sort_unstable();
                let found = fm.split.iter().enumerate().find_map(|(k, u)| {
                    let q = fm.flags.get(u)?;
                    let d = q
                        .iter()
                        .take(4)
                        .position(|&(_, from)| flag_names_after(from) == names)?;
                    Some((k, d))
                });
                match (uid, found) {
                    (Some(new), Some((k, d))) => {
                        let old = fm.split.remove(k).expect("found");
                        fm.alias.insert(new, old);
                        for _ in 0..=d {
                            if let Some((op, _)) =
                                fm.flags.get_mut(&old).and_then(VecDeque::pop_front)
                            {
                                hit(arrivals, matched, op, t);
                            }
                        }
                    }
                    _ => {
                        if env::var_os("LIVE_DEBUG").is_some() {
                            let fronts: Vec<_> = fm
                                .split
                                .iter()
                                .map(|u| (*u, fm.flags.get(u).and_then(|q| q.front()).copied()))
                                .collect();
                            eprintln!("[debug] append {uid:?} {names:?}: split {fronts:?}");
                        }
                        self.unexpected += 1
                    }
                }
            }
            "MessageRead" | "FlagsSet" | "FlagsClear" => {
                let names = v["flagNames"].as_str().unwrap_or("");
                for uid in uidset(v["uidset"].as_str().unwrap_or("")) {
                    let uid = fm.alias.get(&uid).copied().unwrap_or(uid);
                    let q = fm.flags.get_mut(&uid);
                    let front = q.as_ref().and_then(|q| q.front().copied());
                    match front {
                        Some((op, from)) if flag_event(from) == (ev, names) => {
                            if let Some(q) = q {
                                q.pop_front();
                            }
                            hit(arrivals, matched, op, t);
                        }
                        _ => {
                            if env::var_os("LIVE_DEBUG").is_some() {
                                let front = fm.flags.get(&uid).and_then(|q| q.front()).copied();
                                eprintln!("[debug] {ev} {names} uid {uid}: pending {front:?}");
                            }
                            self.unexpected += 1
                        }
                    }
                }
            }
            "MessageExpunge" => {
                for uid in uidset(v["uidset"].as_str().unwrap_or("")) {
                    let uid = fm.alias.get(&uid).copied().unwrap_or(uid);
                    let op = fm
                        .uid_to_j
                        .get(&uid)
                        .and_then(|j| self.expunge_of.get(j))
                        .or_else(|| fm.expunge_old.get(&uid))
                        .copied();
                    match op {
                        Some(op) => hit(arrivals, matched, op, t),
                        None if fm.flags.contains_key(&uid) => {
                            // A message of the working set is never
                            // expunged here: a rename whose halves fell
                            // into two batches.
                            self.renumbered += 1;
                            fm.split.push_back(uid);
                        }
                        None => self.unexpected += 1,
                    }
                }
            }
            _ => self.unexpected += 1,
        }
    }
    fn complete(&self) -> bool {
        self.matched == self.arrivals.len()
    }
    fn arrivals(&self) -> &[Option<Instant>] {
        &self.arrivals
    }
    fn unexpected(&self) -> usize {
        self.unexpected
    }
    fn renumbered(&self) -> usize {
        self.renumbered
    }
}

/// inotifywait lines: the line naming each operation's file and event.
struct InotifyMatcher {
    arrivals: Vec<Option<Instant>>,
    matched: usize,
    lines: usize,
    expected_lines: usize,
    trigger: HashMap<Vec<u8>, VecDeque<usize>>,
}

impl InotifyMatcher {
    fn new(stream: &Stream) -> InotifyMatcher {
        let mut trigger: HashMap<Vec<u8>, VecDeque<usize>> = HashMap::new();
        for (i, op) in stream.ops.iter().enumerate() {
            trigger
                .entry(op.trigger_line.as_bytes().to_vec())
                .or_default()
                .push_back(i);
        }
        InotifyMatcher {
            arrivals: vec![None; stream.ops.len()],
            matched: 0,
            lines: 0,
            expected_lines: stream.inotify_lines(),
            trigger,
        }
    }
}

impl Matcher for InotifyMatcher {
    fn feed(&mut self, t: Instant, line: &[u8]) {
        self.lines += 1;
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if let Some(op) = self.trigger.get_mut(line).and_then(VecDeque::pop_front) {
            self.arrivals[op] = Some(t);
            self.matched += 1;
        }
    }
    fn complete(&self) -> bool {
        self.matched == self.arrivals.len() && self.lines >= self.expected_lines
    }
    fn arrivals(&self) -> &[Option<Instant>] {
        &self.arrivals
    }
    fn unexpected(&self) -> usize {
        self.lines.saturating_sub(self.expected_lines)
    }
}

// ---------------------------------------------------------------- one run

#[derive(Clone, Debug, Default)]
struct RunResult {
    watcher: String,
    folder: usize,
    target_rate: Option<f64>,
    ops: usize,
    achieved_rate: f64,
    reported: usize,
    unexpected: usize,
    renumbered: usize,
    coalesced: usize,
    lines: usize,
    overflows: usize,
    lossless: bool,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    drain_ms: f64,
    cpu_us_per_op: f64,
    ready_s: f64,
    hwm_ready_kb: u64,
    hwm_end_kb: u64,
    rss_end_kb: u64,
    /// From ours' metrics, during the stream: user rescans and batches.
    rescans: Option<u64>,
    batches: Option<u64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Spawned {
    child: Child,
    /// Where ours serves its Prometheus metrics, when it can.
    metrics: Option<String>,
    lines: mpsc::Receiver<(Instant, Vec<u8>)>,
    stderr: Arc<Mutex<Vec<String>>>,
    ready_s: f64,
    threads: Vec<thread::JoinHandle<()>>,
}

fn read_lines(
    out: impl Read + Send + 'static,
    tx: mpsc::Sender<(Instant, Vec<u8>)>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut r = BufReader::with_capacity(1 << 20, out);
        loop {
            let mut buf = Vec::with_capacity(512);
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx.send((Instant::now(), buf)).is_err() {
                        return;
                    }
                }
            }
        }
    })
}

fn spawn(w: &Watcher, store: &Store, work: &Path) -> Spawned {
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    let stderr_lines = Arc::new(Mutex::new(Vec::new()));
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let metrics = match w {
        Watcher::Ours { .. } if supports_metrics() => free_port().map(|p| format!("127.0.0.1:{p}")),
        _ => None,
    };
    let mut child;
    let mut threads = Vec::new();
    let sock;
    match w {
        Watcher::Ours { args } => {
            let state = work.join("state");
            let sock_path = work.join("notify.sock");
            let _ = std::fs::remove_file(&sock_path);
            sock = Some(UnixDatagram::bind(&sock_path).expect("bind NOTIFY_SOCKET"));
            child = Command::new(BIN)
                .args(["watch", "--state"])
                .arg(&state)
                .args(["--server-name", "bench", "--uid-wait-ms", "0"])
                .args(args)
                .args(
                    metrics
                        .iter()
                        .flat_map(|a| ["--metrics".to_string(), a.clone()]),
                )
                .args(store.ours_args())
                .env("NOTIFY_SOCKET", &sock_path)
                .env_remove("MAILDIR_EVENTS_LOG")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start maildir-events watch");
        }
        Watcher::Inotifywait => {
            sock = None;
            child = Command::new("inotifywait")
                .args([
                    "-m",
                    "-r",
                    "-e",
                    "create,moved_to,moved_from,delete",
                    "--format",
                    "%w%f %e",
                ])
                .arg(store.watch_root())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start inotifywait");
        }
    }
    threads.push(read_lines(child.stdout.take().expect("piped"), tx));
    {
        let err = child.stderr.take().expect("piped");
        let store = stderr_lines.clone();
        threads.push(thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if line.contains("Watches established") {
                    let _ = ready_tx.send(());
                }
                store.lock().expect("stderr lock").push(line);
            }
        }));
    }
    // Wait for readiness.
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let err = stderr_lines.lock().expect("stderr lock").join("\n");
            panic!(
                "{} exited before it was ready ({status}):\n{err}",
                w.label()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} not ready after 30 min",
            w.label()
        );
        match &sock {
            Some(sock) => {
                sock.set_read_timeout(Some(Duration::from_millis(100)))
                    .expect("socket timeout");
                let mut buf = [0u8; 4096];
                if let Ok(n) = sock.recv(&mut buf)
                    && String::from_utf8_lossy(&buf[..n])
                        .lines()
                        .any(|l| l == "READY=1")
                {
                    break;
                }
            }
            None => {
                if ready_rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                    break;
                }
            }
        }
    }
    Spawned {
        child,
        metrics,
        lines: rx,
        stderr: stderr_lines,
        ready_s: started.elapsed().as_secs_f64(),
        threads,
    }
}

/// Whether this build of ours has `--metrics`.
fn supports_metrics() -> bool {
    static YES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *YES.get_or_init(|| {
        Command::new(BIN)
            .args(["watch", "--help"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--metrics"))
    })
}

fn free_port() -> Option<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .ok()
}

/// The unlabelled samples of a Prometheus endpoint (labelled ones summed).
fn scrape(addr: &str) -> HashMap<String, f64> {
    use std::io::Write as _;
    let mut out = HashMap::new();
    let Ok(mut c) = std::net::TcpStream::connect(addr) else {
        return out;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = write!(c, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut body = String::new();
    let _ = c.read_to_string(&mut body);
    for line in body.lines().filter(|l| l.starts_with("maildir_events_")) {
        if let Some((k, v)) = line.rsplit_once(' ')
            && let Ok(v) = v.parse::<f64>()
        {
            let k = k.split('{').next().unwrap_or(k);
            *out.entry(k.to_string()).or_insert(0.0) += v;
        }
    }
    out
}

fn stop(mut s: Spawned) -> Vec<String> {
    // SAFETY: signalling our own child by its pid.
    unsafe {
        libc::kill(s.child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match s.child.try_wait() {
            Ok(Some(_)) => break,
            _ if Instant::now() > deadline => {
                let _ = s.child.kill();
                let _ = s.child.wait();
                break;
            }
            _ => thread::sleep(Duration::from_millis(10)),
        }
    }
    // Drain what is left so the reader threads end.
    while s.lines.try_recv().is_ok() {}
    drop(s.lines);
    for t in s.threads {
        let _ = t.join();
    }
    std::mem::take(&mut *s.stderr.lock().expect("stderr lock"))
}

fn run_one(
    o: &Opts,
    w: &Watcher,
    store: &Store,
    stream: &Arc<Stream>,
    rate: Option<f64>,
    folder: usize,
) -> RunResult {
    let work = tempfile::Builder::new()
        .prefix("live-run.")
        .tempdir_in(&o.state_dir)
        .expect("work dir");
    let s = spawn(w, store, work.path());
    let pid = s.child.id();
    let cpu0 = cpu_secs(pid);
    let m0 = s.metrics.as_deref().map(scrape).unwrap_or_default();
    let hwm_ready = vm_hwm_kb(pid);
    // Anything printed before the stream (nothing is expected) is dropped.
    while s.lines.try_recv().is_ok() {}
    let mut matcher: Box<dyn Matcher> = match w {
        Watcher::Ours { .. } => Box::new(OursMatcher::new(stream, store)),
        Watcher::Inotifywait => Box::new(InotifyMatcher::new(stream)),
    };
    let driver = {
        let stream = stream.clone();
        thread::Builder::new()
            .name("driver".into())
            .spawn(move || stream.replay(rate))
            .expect("driver thread")
    };
    let mut lines = 0usize;
    let mut dump: Vec<(Instant, Vec<u8>)> = Vec::new();
    let dumping = env::var_os("LIVE_DUMP").is_some();
    let mut last_line = Instant::now();
    let mut driver_done: Option<Instant> = None;
    loop {
        match s.lines.recv_timeout(Duration::from_millis(20)) {
            Ok((t, line)) => {
                lines += 1;
                last_line = t;
                matcher.feed(t, &line);
                if dumping {
                    dump.push((t, line));
                }
                while let Ok((t, line)) = s.lines.try_recv() {
                    lines += 1;
                    last_line = t;
                    matcher.feed(t, &line);
                    if dumping {
                        dump.push((t, line));
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if driver_done.is_none() && driver.is_finished() {
            driver_done = Some(Instant::now());
        }
        if let Some(done) = driver_done {
            if matcher.complete() {
                break;
            }
            let quiet_since = last_line.max(done);
            if quiet_since.elapsed() >= o.quiet || done.elapsed() > Duration::from_secs(300) {
                break;
            }
        }
    }
    let cpu1 = cpu_secs(pid);
    let m1 = s.metrics.as_deref().map(scrape).unwrap_or_default();
    let counter = |name: &str| match (m0.get(name), m1.get(name)) {
        (Some(a), Some(b)) => Some((b - a).max(0.0) as u64),
        _ => None,
    };
    let hwm_end = vm_hwm_kb(pid);
    let rss_end = vm_kb(pid, "VmRSS:");
    let times = driver
        .join()
        .expect("driver thread")
        .expect("the workload's filesystem operations failed");
    let ready_s = s.ready_s;
    let stderr = stop(s);

    stream.undo().expect("undo the stream");
    let overflows = stderr
        .iter()
        .filter(|l| l.contains("overflow") || l.contains("Q_OVERFLOW") || l.contains("outbox full"))
        .count();

    let ops = stream.ops.len();
    let arrivals = matcher.arrivals();
    let mut lat: Vec<f64> = arrivals
        .iter()
        .zip(&times)
        .filter_map(|(a, t)| a.map(|a| a.saturating_duration_since(*t).as_secs_f64() * 1e3))
        .collect();
    lat.sort_by(f64::total_cmp);
    let reported = lat.len();
    let last_arrival = arrivals.iter().flatten().max().copied();
    let span = times
        .last()
        .map(|l| l.saturating_duration_since(times[0]).as_secs_f64())
        .unwrap_or(0.0);
    // A delivery and its expunge that both went unreported fell into one
    // batch (the watcher was that far behind): no message, by design.
    let mut delivered_at = HashMap::new();
    let mut coalesced = 0;
    for (i, op) in stream.ops.iter().enumerate() {
        match op.kind {
            Kind::Deliver { j, .. } => {
                delivered_at.insert(j, i);
            }
            Kind::Expunge { j, .. } => {
                if arrivals[i].is_none()
                    && delivered_at.get(&j).is_some_and(|&d| arrivals[d].is_none())
                {
                    coalesced += 1;
                }
            }
            Kind::Flag { .. } | Kind::ExpungeOld { .. } => {}
        }
    }
    // The count check is strict: a coalesced pair is not reported either.
    let lossless = reported == ops && overflows == 0;
    // LIVE_DUMP=PREFIX: the operations and lines of every run that was not
    // clean (LIVE_DUMP_ALL=1: of every run), for looking into it.
    if let Some(prefix) = env::var_os("LIVE_DUMP")
        && (!lossless || matcher.unexpected() > 0 || env::var_os("LIVE_DUMP_ALL").is_some())
    {
        write_dump(
            Path::new(&prefix),
            w,
            stream,
            &times,
            arrivals,
            &dump,
            &stderr,
        );
    }
    RunResult {
        watcher: w.label(),
        folder,
        target_rate: rate,
        ops,
        achieved_rate: if span > 0.0 {
            (ops - 1) as f64 / span
        } else {
            f64::NAN
        },
        reported,
        unexpected: matcher.unexpected(),
        renumbered: matcher.renumbered(),
        coalesced,
        lines,
        overflows,
        lossless,
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(f64::NAN),
        drain_ms: match (last_arrival, times.last()) {
            (Some(a), Some(t)) => a.saturating_duration_since(*t).as_secs_f64() * 1e3,
            _ => f64::NAN,
        },
        cpu_us_per_op: (cpu1 - cpu0) * 1e6 / ops as f64,
        ready_s,
        hwm_ready_kb: hwm_ready,
        hwm_end_kb: hwm_end,
        rss_end_kb: rss_end,
        rescans: counter("maildir_events_rescans_total"),
        batches: counter("maildir_events_batches_total"),
    }
}

/// Writes the operations and the lines of a run (for debugging the matching).
fn write_dump(
    prefix: &Path,
    w: &Watcher,
    stream: &Stream,
    times: &[Instant],
    arrivals: &[Option<Instant>],
    lines: &[(Instant, Vec<u8>)],
    stderr: &[String],
) {
    use std::io::Write as _;
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let label: String = w
        .label()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '_' })
        .collect();
    let base = format!("{}-{n:03}-{label}", prefix.display());
    let t0 = times[0];
    let ms = |t: Instant| t.saturating_duration_since(t0).as_secs_f64() * 1e3;
    let mut f = std::fs::File::create(format!("{base}.ops")).expect("dump");
    for ((op, t), a) in stream.ops.iter().zip(times).zip(arrivals) {
        let seen = a.map_or("MISSING".to_string(), |a| format!("{:.3}", ms(a)));
        let _ = writeln!(f, "{:.3} {seen} {:?} {}", ms(*t), op.kind, op.trigger_line);
    }
    let mut f = std::fs::File::create(format!("{base}.lines")).expect("dump");
    for (t, l) in lines {
        let _ = write!(f, "{:.3} {}", ms(*t), String::from_utf8_lossy(l));
    }
    let _ = std::fs::write(format!("{base}.stderr"), stderr.join("\n"));
}

impl RunResult {
    fn json(&self) -> Value {
        json!({
            "watcher": self.watcher, "folder": self.folder,
            "target_rate": self.target_rate, "ops": self.ops,
            "achieved_rate": self.achieved_rate, "reported": self.reported,
            "unexpected": self.unexpected, "renumbered": self.renumbered, "coalesced": self.coalesced, "lines": self.lines,
            "overflows": self.overflows, "lossless": self.lossless,
            "p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "max_ms": self.max_ms,
            "drain_ms": self.drain_ms, "cpu_us_per_op": self.cpu_us_per_op,
            "ready_s": self.ready_s, "hwm_ready_kb": self.hwm_ready_kb,
            "hwm_end_kb": self.hwm_end_kb, "rss_end_kb": self.rss_end_kb,
            "rescans": self.rescans, "batches": self.batches,
        })
    }
}

// ---------------------------------------------------------------- reporting

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn rate_label(r: Option<f64>) -> String {
    r.map_or("max".into(), |r| format!("{r:.0}"))
}

fn f(x: f64, digits: usize) -> String {
    if x.is_nan() {
        "–".into()
    } else {
        format!("{x:.digits$}")
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() || b == 0.0 {
        "–".into()
    } else {
        format!("{:.2}×", a / b)
    }
}

fn ops_for(o: &Opts, rate: Option<f64>) -> usize {
    match rate {
        Some(r) if (r - o.lat_rate).abs() < 0.5 && o.ops.is_none() => o.lat_ops,
        Some(r) => o
            .ops
            .unwrap_or(((r * o.secs).round() as usize).clamp(o.min_ops.min(o.max_ops), o.max_ops))
            .max(10),
        None => o.ops.unwrap_or(o.max_ops),
    }
}

fn stream_for(
    o: &Opts,
    store: &Store,
    ops: usize,
    rate: Option<f64>,
    only: Option<usize>,
) -> Arc<Stream> {
    // Deliveries are expunged no sooner than LIVE_LAG_SECS (at the
    // target rate; at least 200 operations) later.
    let lag = (rate.unwrap_or(50_000.0) * o.lag_secs).max(200.0) as usize;
    Arc::new(Stream::generate(
        store,
        &StreamConfig {
            ops,
            mix: o.mix,
            expunge_lag: lag,
            working_set: o.workset,
            inbox_pct: o.inbox_pct,
            only,
            body_bytes: o.body_bytes,
            seed: o.seed,
        },
    ))
}

/// A one-folder store of `messages`, or (`LIVE_SPREAD`) the spread store.
fn make_store(o: &Opts, messages: usize) -> (tempfile::TempDir, Store) {
    let dir = tempfile::Builder::new()
        .prefix("live-store.")
        .tempdir_in(&o.dir)
        .expect("store dir");
    let t = Instant::now();
    let cfg = if o.spread {
        StoreConfig {
            users: o.users,
            folders: o.folders,
            messages: o.small,
            hot: o.hot,
        }
    } else {
        StoreConfig {
            users: 0,
            folders: 1,
            messages,
            hot: 0,
        }
    };
    let store = Store::create(dir.path(), &cfg).expect("create the store");
    eprintln!(
        "[live] store of {} messages in {} folders of {} users created in {:.1} s",
        store.messages(),
        store.folders.len(),
        store.users.len(),
        t.elapsed().as_secs_f64()
    );
    (dir, store)
}

fn log_run(r: &RunResult) {
    eprintln!(
        "[live] {:<12} folder {:>7} rate {:>6} ops {:>6} achieved {:>8.0}/s reported {:>6} unexpected {:>3} \
         renumbered {:>3} coalesced {:>4} overflow {} rescans {} batches {} p50 {:>7} p99 {:>7} max {:>8} drain {:>8} ms cpu {:>6} us/op hwm {} kB",
        r.watcher,
        r.folder,
        rate_label(r.target_rate),
        r.ops,
        r.achieved_rate,
        r.reported,
        r.unexpected,
        r.renumbered,
        r.coalesced,
        r.overflows,
        r.rescans.map_or("-".into(), |v| v.to_string()),
        r.batches.map_or("-".into(), |v| v.to_string()),
        f(r.p50_ms, 2),
        f(r.p99_ms, 2),
        f(r.max_ms, 1),
        f(r.drain_ms, 1),
        f(r.cpu_us_per_op, 1),
        r.hwm_end_kb
    );
}

fn main() {
    let o = opts();
    if env::args().any(|a| a == "--help" || a == "-h") {
        println!("cargo bench --bench live   (sized by LIVE_* variables; see benches/live.rs)");
        return;
    }
    println!(
        "# live benchmark{}",
        if o.smoke { " (smoke run)" } else { "" }
    );
    println!();
    println!(
        "machine: {} cores, {}; store in {} ({}); binary {BIN}",
        thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        o.dir.display(),
        fs_type(&o.dir)
    );
    println!(
        "mix deliver/flag/expunge {}/{}/{}, flag working set {}, delivered size {}+(j mod {}) B, expunge ≥ {} s after delivery, {} run(s) per point, medians",
        o.mix.deliver,
        o.mix.flag,
        o.mix.expunge,
        o.workset,
        o.body_bytes,
        livegen::SIZE_CLASSES,
        o.lag_secs,
        o.repeat
    );
    if o.spread {
        println!(
            "spread: {} users × {} folders of {} messages, hot folder (INBOX of u000) {} messages; deliveries {}% to an INBOX of a uniformly drawn user, the rest, flag renames and expunges to uniformly drawn folders; at least {} ops per rate; state in {}",
            o.users,
            o.folders,
            o.small,
            o.hot,
            o.inbox_pct,
            o.min_ops,
            o.state_dir.display()
        );
    } else {
        println!(
            "one folder (LIVE_SPREAD=0); state in {}",
            o.state_dir.display()
        );
    }
    println!("load average at start: {}", loadavg());
    println!();
    let spread_store = o.spread.then(|| make_store(&o, 0));
    let mut all: Vec<RunResult> = Vec::new();
    let mut sweep: Vec<RunResult> = Vec::new();
    let mut cpu: Vec<RunResult> = Vec::new();
    let total = Instant::now();

    if o.sections.iter().any(|s| s == "sweep") {
        let own = (!o.spread).then(|| make_store(&o, o.small));
        let store = match (&spread_store, &own) {
            (Some((_, s)), _) | (None, Some((_, s))) => s,
            (None, None) => unreachable!("one of the two"),
        };
        let mut runs: Vec<RunResult> = Vec::new();
        for rep in 0..o.repeat {
            for &rate in &o.rates {
                let stream = stream_for(&o, store, ops_for(&o, rate), rate, None);
                if rep == 0 {
                    let mut touched: Vec<usize> =
                        stream.ops.iter().map(|op| op.kind.folder()).collect();
                    touched.sort_unstable();
                    touched.dedup();
                    let users: std::collections::HashSet<usize> =
                        touched.iter().map(|&f| store.folders[f].user).collect();
                    eprintln!(
                        "[live] rate {}: {} ops touch {} of {} folders, {} of {} users",
                        rate_label(rate),
                        stream.ops.len(),
                        touched.len(),
                        store.folders.len(),
                        users.len(),
                        store.users.len()
                    );
                }
                for w in &o.watchers {
                    let r = run_one(&o, w, store, &stream, rate, store.messages());
                    eprint!("[live] sweep rep {} ", rep + 1);
                    log_run(&r);
                    runs.push(r);
                }
            }
        }
        if o.spread {
            println!(
                "## 1–2. Throughput, latency and CPU, operations spread over {} users × {} folders (+ hot folder of {})",
                o.users, o.folders, o.hot
            );
        } else {
            println!(
                "## 1–2. Throughput and latency ({}-message folder)",
                o.small
            );
        }
        println!();
        println!(
            "| target ops/s | watcher | ops | achieved ops/s | lossless runs | missing ops, median (worst) | of which coalesced | renumbered | unexpected events | rescans | ops/batch | p50 ms | p99 ms | max ms | drain ms | CPU µs/op (= ms per 1k ops) | CPU vs inotifywait |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let iw_cpu = |rate: Option<f64>| {
            median(
                runs.iter()
                    .filter(|r| r.target_rate == rate && r.watcher == "inotifywait")
                    .map(|r| r.cpu_us_per_op)
                    .collect(),
            )
        };
        for &rate in &o.rates {
            for w in &o.watchers {
                let rs: Vec<&RunResult> = runs
                    .iter()
                    .filter(|r| r.target_rate == rate && r.watcher == w.label())
                    .collect();
                if rs.is_empty() {
                    continue;
                }
                let m = |g: fn(&RunResult) -> f64| median(rs.iter().map(|r| g(r)).collect());
                println!(
                    "| {} | {} | {} | {} | {}/{} | {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    rate_label(rate),
                    w.label(),
                    rs[0].ops,
                    f(m(|r| r.achieved_rate), 0),
                    rs.iter().filter(|r| r.lossless).count(),
                    rs.len(),
                    f(m(|r| (r.ops - r.reported) as f64), 0),
                    rs.iter().map(|r| r.ops - r.reported).max().unwrap_or(0),
                    f(m(|r| 2.0 * r.coalesced as f64), 0),
                    f(m(|r| r.renumbered as f64), 0),
                    f(m(|r| r.unexpected as f64), 0),
                    f(m(|r| r.rescans.map_or(f64::NAN, |v| v as f64)), 0),
                    f(
                        m(|r| r
                            .batches
                            .map_or(f64::NAN, |b| r.ops as f64 / b.max(1) as f64)),
                        1
                    ),
                    f(m(|r| r.p50_ms), 2),
                    f(m(|r| r.p99_ms), 2),
                    f(m(|r| r.max_ms), 1),
                    f(m(|r| r.drain_ms), 1),
                    f(m(|r| r.cpu_us_per_op), 1),
                    ratio(m(|r| r.cpu_us_per_op), iw_cpu(rate)),
                );
            }
        }
        println!();
        println!("Highest rate with every run lossless (all lower rates lossless too):");
        println!();
        for w in &o.watchers {
            let mut best = None;
            for &rate in &o.rates {
                let rs: Vec<&RunResult> = runs
                    .iter()
                    .filter(|r| r.target_rate == rate && r.watcher == w.label())
                    .collect();
                if rs.is_empty() || !rs.iter().all(|r| r.lossless) {
                    break;
                }
                let achieved = median(rs.iter().map(|r| r.achieved_rate).collect());
                best = Some((rate, achieved));
            }
            match best {
                Some((rate, achieved)) => println!(
                    "- {}: {} (achieved {:.0} ops/s)",
                    w.label(),
                    rate_label(rate),
                    achieved
                ),
                None => println!("- {}: none", w.label()),
            }
        }
        println!();
        sweep.extend(runs.iter().cloned());
        all.extend(runs);
    }

    if o.sections.iter().any(|s| s == "cpu") {
        let mut sizes = Vec::new();
        if let Some((_, store)) = &spread_store {
            // Every operation in one folder of the spread store: a small
            // INBOX (u001's, or another small folder) against the hot one.
            let small = (0..store.folders.len())
                .filter(|&f| Some(f) != store.hot)
                .min_by_key(|&f| (store.folders[f].mailbox != "INBOX", f));
            sizes.extend(small.map(|f| (store.folders[f].messages, o.repeat, Some(f))));
            sizes.extend(
                store
                    .hot
                    .map(|f| (store.folders[f].messages, o.repeat, Some(f))),
            );
        } else {
            sizes.push((o.small, o.repeat, None));
            sizes.push((o.big, o.repeat, None));
            if o.huge > 0 {
                sizes.push((o.huge, 1, None));
            }
        }
        let mut runs: Vec<RunResult> = Vec::new();
        for &(size, repeat, only) in &sizes {
            let own = only.is_none().then(|| make_store(&o, size));
            let store = match (&spread_store, &own) {
                (_, Some((_, s))) | (Some((_, s)), None) => s,
                (None, None) => unreachable!("one of the two"),
            };
            if let Some(f) = only {
                eprintln!(
                    "[live] cpu runs in folder {} of {} ({} messages)",
                    store.folders[f].mailbox, store.users[store.folders[f].user], size
                );
            }
            let stream = stream_for(&o, store, o.cpu_ops, Some(o.cpu_rate), only);
            for rep in 0..repeat {
                for w in &o.watchers {
                    let r = run_one(&o, w, store, &stream, Some(o.cpu_rate), size);
                    eprint!("[live] cpu rep {} ", rep + 1);
                    log_run(&r);
                    runs.push(r);
                }
            }
        }
        println!(
            "## 3–4. CPU per operation and peak RSS by folder size ({} ops at {:.0} ops/s{})",
            o.cpu_ops,
            o.cpu_rate,
            if o.spread {
                ", all in one folder of the spread store, the whole store watched"
            } else {
                ""
            }
        );
        println!();
        println!(
            "| folder | watcher | runs | CPU µs/op (median) | min–max | vs inotifywait | vs smallest folder | lossless | p50 ms | p99 ms | catch-up s | VmHWM at ready | VmHWM at end | VmRSS at end |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let cpu_of = |size: usize, label: &str| {
            median(
                runs.iter()
                    .filter(|r| r.folder == size && r.watcher == label)
                    .map(|r| r.cpu_us_per_op)
                    .collect(),
            )
        };
        for &(size, _, _) in &sizes {
            for w in &o.watchers {
                let rs: Vec<&RunResult> = runs
                    .iter()
                    .filter(|r| r.folder == size && r.watcher == w.label())
                    .collect();
                if rs.is_empty() {
                    continue;
                }
                let cpu: Vec<f64> = rs.iter().map(|r| r.cpu_us_per_op).collect();
                let lo = cpu.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = cpu.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let med = median(cpu);
                let m = |g: fn(&RunResult) -> f64| median(rs.iter().map(|r| g(r)).collect());
                println!(
                    "| {} | {} | {} | {} | {}–{} | {} | {} | {}/{} | {} | {} | {} | {:.1} MB | {:.1} MB | {:.1} MB |",
                    size,
                    w.label(),
                    rs.len(),
                    f(med, 1),
                    f(lo, 1),
                    f(hi, 1),
                    ratio(med, cpu_of(size, "inotifywait")),
                    ratio(med, cpu_of(sizes[0].0, &w.label())),
                    rs.iter().filter(|r| r.lossless).count(),
                    rs.len(),
                    f(m(|r| r.p50_ms), 2),
                    f(m(|r| r.p99_ms), 2),
                    f(m(|r| r.ready_s), 2),
                    m(|r| r.hwm_ready_kb as f64) / 1024.0,
                    m(|r| r.hwm_end_kb as f64) / 1024.0,
                    m(|r| r.rss_end_kb as f64) / 1024.0,
                );
            }
        }
        println!();
        cpu.extend(runs.iter().cloned());
        all.extend(runs);
    }

    summary(&o, &sweep, &cpu);
    println!("load average at end: {}", loadavg());
    println!("total time {:.0} s", total.elapsed().as_secs_f64());
    if let Some(path) = &o.json {
        let v = json!({
            "runs": all.iter().map(RunResult::json).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_vec_pretty(&v).expect("json"))
            .expect("write LIVE_JSON");
    }
    if o.smoke {
        // The smoke run checks the plumbing, not speed: every watcher saw
        // the operations at the slow rate.
        for r in all.iter().filter(|r| r.target_rate.is_some()) {
            assert!(r.reported > 0, "{}: nothing reported", r.watcher);
        }
    }
}

/// The figures against the project's targets, one column per watcher.
fn summary(o: &Opts, sweep: &[RunResult], cpu: &[RunResult]) {
    let labels: Vec<String> = o.watchers.iter().map(Watcher::label).collect();
    let med = |runs: &[RunResult], keep: &dyn Fn(&RunResult) -> bool, g: fn(&RunResult) -> f64| {
        median(runs.iter().filter(|r| keep(r)).map(g).collect())
    };
    let mut rows: Vec<(String, String, Vec<String>)> = Vec::new();
    if !sweep.is_empty() {
        // Per watcher, the highest rate (going up, no gap) at which every
        // run was lossless and the runs pass `ok`.
        let highest = |ok: &dyn Fn(&[&RunResult]) -> bool| -> Vec<String> {
            labels
                .iter()
                .map(|l| {
                    let mut best = "none".to_string();
                    for &rate in &o.rates {
                        let rs: Vec<&RunResult> = sweep
                            .iter()
                            .filter(|r| r.target_rate == rate && &r.watcher == l)
                            .collect();
                        if rs.is_empty() || !rs.iter().all(|r| r.lossless) || !ok(&rs) {
                            break;
                        }
                        let a = median(rs.iter().map(|r| r.achieved_rate).collect());
                        best = format!("{} (achieved {a:.0}/s)", rate_label(rate));
                    }
                    best
                })
                .collect()
        };
        rows.push((
            "highest lossless rate, ops/s".into(),
            "≥ 20000".into(),
            highest(&|_| true),
        ));
        // Lossless in every run and median p99 ≤ 5 ms, lower rates too.
        let best_p99 = highest(&|rs| {
            let p99 = median(rs.iter().map(|r| r.p99_ms).collect());
            !p99.is_nan() && p99 <= 5.0
        });
        rows.push((
            "highest rate with 0 lost and p99 ≤ 5 ms, ops/s".into(),
            "≥ 20000 (or = inotifywait's)".into(),
            best_p99,
        ));
        // CPU per 1k operations at the low rates, against inotifywait.
        let mut cpu_rates: Vec<f64> = o
            .rates
            .iter()
            .flatten()
            .copied()
            .filter(|&r| r <= o.lat_rate)
            .collect();
        if !cpu_rates.iter().any(|&r| (r - o.lat_rate).abs() < 0.5) {
            cpu_rates.push(o.lat_rate);
        }
        for rate in cpu_rates {
            let v: Vec<f64> = labels
                .iter()
                .map(|l| {
                    med(
                        sweep,
                        &|r| r.target_rate == Some(rate) && &r.watcher == l,
                        |r| r.cpu_us_per_op,
                    )
                })
                .collect();
            let iw = labels
                .iter()
                .position(|l| l == "inotifywait")
                .map_or(f64::NAN, |k| v[k]);
            rows.push((
                format!("CPU ms per 1k ops at {rate:.0} ops/s"),
                "≤ 2× inotifywait".into(),
                labels
                    .iter()
                    .zip(&v)
                    .map(|(l, x)| {
                        if l == "inotifywait" {
                            f(*x, 1)
                        } else {
                            format!("{} ({})", f(*x, 1), ratio(*x, iw))
                        }
                    })
                    .collect(),
            ));
        }
        let lat = Some(o.lat_rate);
        for (name, g) in [
            (
                "p50 latency ms",
                (|r: &RunResult| r.p50_ms) as fn(&RunResult) -> f64,
            ),
            ("p99 latency ms", |r: &RunResult| r.p99_ms),
        ] {
            let v: Vec<f64> = labels
                .iter()
                .map(|l| med(sweep, &|r| r.target_rate == lat && &r.watcher == l, g))
                .collect();
            let target = if name.starts_with("p99") { "≤ 5" } else { "" };
            rows.push((
                format!("{name} at {:.0} ops/s", o.lat_rate),
                target.into(),
                v.iter().map(|x| f(*x, 2)).collect(),
            ));
        }
    }
    if !cpu.is_empty() {
        let mut sizes: Vec<usize> = cpu.iter().map(|r| r.folder).collect();
        sizes.sort_unstable();
        sizes.dedup();
        let per = |size: usize, l: &str, g: fn(&RunResult) -> f64| {
            med(cpu, &|r| r.folder == size && r.watcher == l, g)
        };
        let iw = per(sizes[0], "inotifywait", |r| r.cpu_us_per_op);
        for &size in &sizes {
            let iw_size = per(size, "inotifywait", |r| r.cpu_us_per_op);
            rows.push((
                format!("CPU µs/op, {size}-message folder ({:.0} ops/s)", o.cpu_rate),
                "≤ 2× inotifywait".into(),
                labels
                    .iter()
                    .map(|l| {
                        let v = per(size, l, |r| r.cpu_us_per_op);
                        if l == "inotifywait" {
                            f(v, 1)
                        } else {
                            format!("{} ({})", f(v, 1), ratio(v, iw_size))
                        }
                    })
                    .collect(),
            ));
        }
        let (small, big) = (sizes[0], sizes[sizes.len() - 1]);
        if big != small {
            rows.push((
                format!("CPU/op {big} vs {small} messages"),
                if o.spread { "≤ 1.2×" } else { "≈ 1×" }.into(),
                labels
                    .iter()
                    .map(|l| {
                        ratio(
                            per(big, l, |r| r.cpu_us_per_op),
                            per(small, l, |r| r.cpu_us_per_op),
                        )
                    })
                    .collect(),
            ));
        }
        let _ = iw;
        for &size in &sizes[1..] {
            rows.push((
                format!("VmHWM MB at ready / at end, VmRSS at end, {size} messages"),
                if size >= 1_000_000 {
                    "≤ 128".into()
                } else {
                    String::new()
                },
                labels
                    .iter()
                    .map(|l| {
                        format!(
                            "{} / {}, {}",
                            f(per(size, l, |r| r.hwm_ready_kb as f64) / 1024.0, 1),
                            f(per(size, l, |r| r.hwm_end_kb as f64) / 1024.0, 1),
                            f(per(size, l, |r| r.rss_end_kb as f64) / 1024.0, 1)
                        )
                    })
                    .collect(),
            ));
            rows.push((
                format!("catch-up to ready, {size} messages, s"),
                String::new(),
                labels
                    .iter()
                    .map(|l| f(per(size, l, |r| r.ready_s), 2))
                    .collect(),
            ));
        }
    }
    let all: Vec<&RunResult> = sweep.iter().chain(cpu).collect();
    if !all.is_empty() {
        rows.push((
            "peak RSS (VmHWM, highest of all runs), MB".into(),
            String::new(),
            labels
                .iter()
                .map(|l| {
                    let kb = all
                        .iter()
                        .filter(|r| &r.watcher == l)
                        .map(|r| r.hwm_end_kb)
                        .max()
                        .unwrap_or(0);
                    f(kb as f64 / 1024.0, 1)
                })
                .collect(),
        ));
    }
    if rows.is_empty() {
        return;
    }
    println!("## Summary against the project targets (medians; a shared, noisy machine)");
    println!();
    println!("| figure | target | {} |", labels.join(" | "));
    println!("|---|---|{}", "---|".repeat(labels.len()));
    for (name, target, vals) in rows {
        println!("| {name} | {target} | {} |", vals.join(" | "));
    }
    println!();
}

/// The first three fields of /proc/loadavg.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn fs_type(dir: &Path) -> String {
    Command::new("df")
        .args(["--output=fstype"])
        .arg(dir)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().nth(1).map(|l| l.trim().to_string()))
        .unwrap_or_else(|| "unknown fs".into())
}
