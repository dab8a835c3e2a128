//! `cargo bench --bench fleet`: one host's watcher over many users, as a
//! mail host of a fleet runs it.
//!
//! It generates a Dovecot-style store (default 10,000 users × 10 folders ×
//! 10 messages: 1M messages, 100k folders), then measures, in one run:
//!
//! 1. `find ROOT -printf '%f\n'` (the yardstick, warm cache, median of 3);
//! 2. a cold `scan` (the baseline) and an unchanged `scan`;
//! 3. `watch` on that state: time to `READY=1` (catch-up plus every watch
//!    in place), time from a delivery to its event on stdout, peak RSS and
//!    the number of inotify watches;
//! 4. `watch` again in a user namespace whose inotify limit is half the
//!    watches step 3 needed (a real kernel limit, as on a host whose
//!    `fs.inotify.max_user_watches` is too low): time to `READY=1`, how many
//!    folders are polled, and the CPU one poll costs per polled folder,
//!    from the watcher's own CPU time over `FLEET_IDLE_SECS` with
//!    `--poll-unwatched 1`.
//!
//! Nothing here is a pass/fail threshold; it prints a Markdown table for
//! BENCHMARKS.md. Variables: `FLEET_USERS` (10000), `FLEET_FOLDERS` (10 per
//! user), `FLEET_MESSAGES` (10 per folder), `FLEET_IDLE_SECS` (20),
//! `FLEET_DIR` (`$TMPDIR` or /tmp), `FLEET_SEED` (42). Without `--bench`
//! (`cargo test --benches`) it is a smoke run on 20 users.

// Each benchmark uses part of the generator.
#[allow(dead_code)]
mod support;

use std::env;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use support::storegen::{self, GenConfig};

const BIN: &str = env!("CARGO_BIN_EXE_maildir-events");

fn var(name: &str, default: u64) -> u64 {
    env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Median wall time of `runs` runs of a command, in seconds.
fn timed(runs: usize, mut make: impl FnMut() -> Command) -> f64 {
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let st = make()
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("run");
            assert!(st.success(), "{:?} failed", make());
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn scan(state: &Path, template: &str) -> Command {
    let mut c = Command::new(BIN);
    c.args(["scan", "--server-name", "bench", "--uid-wait-ms", "0"])
        .arg("--state")
        .arg(state)
        .args(["--store", template]);
    c
}

/// A running watcher: its first stdout line's arrival time comes over
/// `lines`, its sd_notify datagrams over `notify`.
struct Watcher {
    child: Child,
    notify: UnixDatagram,
    lines: mpsc::Receiver<Instant>,
    _sock: tempfile::TempDir,
}

impl Watcher {
    fn start(wrap: &[String], state: &Path, template: &str, extra: &[&str]) -> Watcher {
        let sock = tempfile::tempdir().unwrap();
        let path = sock.path().join("notify");
        let notify = UnixDatagram::bind(&path).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut c = match wrap.split_first() {
            Some((p, rest)) => {
                let mut c = Command::new(p);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        c.args(["watch", "--server-name", "bench", "--uid-wait-ms", "0"])
            .arg("--state")
            .arg(state)
            .args(["--store", template])
            .args(extra)
            .env("NOTIFY_SOCKET", &path)
            .env("MAILDIR_EVENTS_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = c.spawn().expect("start watch");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                if line.is_err() || tx.send(Instant::now()).is_err() {
                    return;
                }
            }
        });
        Watcher {
            child,
            notify,
            lines,
            _sock: sock,
        }
    }

    /// Waits for `READY=1` (up to 30 minutes).
    fn ready(&mut self) {
        let until = Instant::now() + Duration::from_secs(1800);
        let mut buf = [0u8; 4096];
        while Instant::now() < until {
            if let Ok(n) = self.notify.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1")
            {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("watch exited before READY=1: {st}");
            }
        }
        panic!("no READY=1");
    }

    fn proc_status(&self, key: &str) -> u64 {
        let text = fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// User plus system CPU time so far, in seconds.
    fn cpu(&self) -> f64 {
        let text = fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let after = text.rsplit_once(')').unwrap().1;
        let f: Vec<&str> = after.split_whitespace().collect();
        // Fields 14 and 15 (utime, stime), counted from 1 before the comm.
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
    }

    fn stop(mut self) {
        // SAFETY: signals our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// A field of the watcher's `status.json`.
fn status_field(state: &Path, key: &str) -> u64 {
    let text = fs::read_to_string(state.join("status.json")).unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["watch"][key].as_u64())
        .unwrap_or(0)
}

fn copy_state(from: &Path, to: &Path) {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().mode(0o700).create(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not, and
    // gets a smoke run on a tiny store (with the debug binary).
    let smoke = !env::args().any(|a| a == "--bench");
    let users = if smoke {
        20
    } else {
        var("FLEET_USERS", 10_000)
    } as usize;
    let folders = var("FLEET_FOLDERS", users as u64 * 10) as usize;
    let messages = var("FLEET_MESSAGES", folders as u64 * 10);
    let idle = if smoke { 2 } else { var("FLEET_IDLE_SECS", 20) };
    let dir = env::var_os("FLEET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("maildir-events-fleet.")
        .tempdir_in(&dir)
        .unwrap();
    let root = tmp.path().join("store");
    let cfg = GenConfig {
        users,
        folders,
        messages,
        seed: var("FLEET_SEED", 42),
        skew: 0.0,
        threads: thread::available_parallelism().map_or(2, |n| n.get()),
        ..GenConfig::default()
    };
    println!(
        "maildir-events fleet benchmark: {users} users, {folders} folders, {messages} messages"
    );
    let t = Instant::now();
    let store = storegen::generate(&root, &cfg).expect("generate");
    println!("generated in {:.1} s", t.elapsed().as_secs_f64());
    let template = store.template();
    thread::sleep(Duration::from_millis(1200));

    let find = || {
        let mut c = Command::new("find");
        c.arg(&root).args(["-printf", "%f\\n"]);
        c
    };
    timed(1, find);
    let find_s = timed(3, find);
    let state = tmp.path().join("state");
    let cold_s = timed(1, || scan(&state, &template));
    let unchanged_s = timed(3, || scan(&state, &template));

    // 3. watch with every watch the store needs.
    let live_state = tmp.path().join("state-watch");
    copy_state(&state, &live_state);
    let start = Instant::now();
    let mut w = Watcher::start(&[], &live_state, &template, &[]);
    w.ready();
    let ready_s = start.elapsed().as_secs_f64();
    let last = store.users.last().unwrap().maildir(&root);
    let delivered = Instant::now();
    let name = "1800000000.M1P1.bench";
    fs::write(last.join("tmp").join(name), b"Subject: x\n\nx\n").unwrap();
    fs::rename(last.join("tmp").join(name), last.join("new").join(name)).unwrap();
    let first = w
        .lines
        .recv_timeout(Duration::from_secs(60))
        .expect("an event for the delivery");
    let event_ms = first.duration_since(delivered).as_secs_f64() * 1e3;
    thread::sleep(Duration::from_millis(1500));
    let watches = status_field(&live_state, "watches");
    let hwm_kb = w.proc_status("VmHWM:");
    let idle_cpu0 = w.cpu();
    thread::sleep(Duration::from_secs(idle));
    let idle_cpu = (w.cpu() - idle_cpu0) / idle as f64;
    w.stop();

    // 4. Half the watches: the rest is polled.
    let limit = (watches / 2).max(10);
    let script = format!("echo {limit} > /proc/sys/user/max_inotify_watches && exec \"$@\"");
    let wrap: Vec<String> = [
        "unshare",
        "--user",
        "--map-root-user",
        "sh",
        "-c",
        &script,
        "sh",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let polled_state = tmp.path().join("state-polled");
    copy_state(&state, &polled_state);
    let start = Instant::now();
    let mut w = Watcher::start(&wrap, &polled_state, &template, &["--poll-unwatched", "1"]);
    w.ready();
    let polled_ready_s = start.elapsed().as_secs_f64();
    thread::sleep(Duration::from_millis(1500));
    let polled = status_field(&polled_state, "polledFolders");
    let cpu0 = w.cpu();
    thread::sleep(Duration::from_secs(idle));
    let poll_cpu = w.cpu() - cpu0;
    let polled_hwm_kb = w.proc_status("VmHWM:");
    w.stop();
    let per_folder_us = poll_cpu / (idle as f64 * polled.max(1) as f64) * 1e6;
    let find_per_folder_us = find_s / folders as f64 * 1e6;

    println!();
    println!("| step | figure |");
    println!("|---|---|");
    println!("| `find ROOT -printf '%f\\n'` | {find_s:.2} s |");
    println!(
        "| cold `scan` | {cold_s:.2} s ({:.2}× find) |",
        cold_s / find_s
    );
    println!(
        "| unchanged `scan` | {unchanged_s:.2} s ({:.2}× find) |",
        unchanged_s / find_s
    );
    println!("| `watch` to READY=1 (catch-up + watches) | {ready_s:.2} s |");
    println!("| delivery → event on stdout, after READY | {event_ms:.1} ms |");
    println!("| `watch` peak RSS | {} MB |", hwm_kb / 1024);
    println!("| inotify watches | {watches} |");
    println!("| `watch` idle CPU | {:.2} % of a core |", idle_cpu * 100.0);
    println!(
        "| limit {limit} watches: to READY=1 | {polled_ready_s:.2} s, {polled} folders polled, peak RSS {} MB |",
        polled_hwm_kb / 1024
    );
    println!(
        "| one poll of one unwatched folder (`--poll-unwatched 1`, {idle} s) | {per_folder_us:.1} µs CPU ({:.2}× find's time per folder); {:.1} % of a core for {polled} folders every second |",
        per_folder_us / find_per_folder_us,
        poll_cpu / idle as f64 * 100.0
    );
}
