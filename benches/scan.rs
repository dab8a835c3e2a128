//! The scan benchmark: `cargo bench --bench scan`.
//!
//! Generates one Dovecot-style Maildir++ store (default: the size the targets are set for,
//! 1,000,000 messages in 10,000 folders of 100 users) and measures, on that
//! same store and in one run:
//!
//! 1. `find ROOT -printf '%f\n' > /dev/null`, warm cache (the yardstick);
//! 2. the cold scan (empty state: the silent baseline that stores the whole
//!    snapshot), each run with a fresh state directory;
//! 3. the unchanged catch-up scan (same state, nothing changed);
//! 4. the catch-up after N random changes (flag renames, deliveries,
//!    expunges), counting the events, each run on a copy of the same state;
//! 5. the unchanged scan after that catch-up;
//! 6. `--full` re-scans, which list every folder whatever its stamps say;
//!
//! plus the state database size per message and the peak RSS of every scan
//! (from `wait4`'s rusage of that command, taken by a small measuring
//! process between this one and the command: see `MEASURE_VAR`). Each step runs `BENCH_RUNS` times
//! (default 3) and reports the median wall time, with min and max.
//!
//! It reports; it never fails on speed. Sizing, by environment variable or
//! `--name value` argument after `--`:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `BENCH_MESSAGES` | 1000000 | messages over all users |
//! | `BENCH_FOLDERS` | messages / 100 | folders over all users (INBOXes included) |
//! | `BENCH_USERS` | 100 | users (Maildirs) |
//! | `BENCH_CHANGES` | 10000 | random changes before the catch-up scan |
//! | `BENCH_RUNS` | 3 | timed runs per step |
//! | `BENCH_SEED` | 42 | generator seed |
//! | `BENCH_SKEW` | 1.0 | Zipf exponent of folder sizes within a user |
//! | `BENCH_THREADS` | nproc | generator threads |
//! | `BENCH_BODY_BYTES` | 0 | bytes in each message file |
//! | `BENCH_DIR` | `$TMPDIR` or /tmp | where the temporary store goes |
//! | `BENCH_KEEP` | unset | `1` keeps the store and state directories |
//! | `BENCH_JSON` | unset | also write the results as JSON to this file |
//!
//! Run without `--bench` (as `cargo test --benches` does) it does a tiny
//! smoke run of the same steps instead.

mod support;

use std::collections::BTreeMap;
use std::env;
use std::fs;
use std::io::{self, BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::storegen::{self, GenConfig, Store};

const BIN: &str = env!("CARGO_BIN_EXE_maildir-events");

/// The benchmark's settings.
#[derive(Debug)]
struct Opts {
    gen_config: GenConfig,
    changes: u64,
    runs: usize,
    dir: PathBuf,
    keep: bool,
    json: Option<PathBuf>,
    smoke: bool,
}

fn usage() -> ! {
    println!(
        "usage: cargo bench --bench scan [-- --messages N --folders N --users N --changes N --runs N \
         --seed N --skew F --threads N --body-bytes N --dir PATH --keep --json PATH]\n\
         (or the BENCH_MESSAGES, BENCH_FOLDERS, … environment variables; see benches/scan.rs)"
    );
    std::process::exit(0);
}

fn opts() -> Opts {
    let args: Vec<String> = env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        usage();
    }
    let smoke = !args.iter().any(|a| a == "--bench");
    // `--name value` or `--name=value` beats BENCH_NAME.
    let get = |name: &str| -> Option<String> {
        let flag = format!("--{}", name.replace('_', "-"));
        for (i, a) in args.iter().enumerate() {
            if let Some(v) = a.strip_prefix(&format!("{flag}=")) {
                return Some(v.to_string());
            }
            if *a == flag {
                return Some(args.get(i + 1).cloned().unwrap_or_else(|| "1".into()));
            }
        }
        env::var(format!("BENCH_{}", name.to_uppercase())).ok()
    };
    fn num<T: std::str::FromStr>(name: &str, v: Option<String>, default: T) -> T {
        match v {
            None => default,
            Some(s) => s
                .replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("{name}: not a number: {s:?}")),
        }
    }
    let threads = thread::available_parallelism().map_or(2, |n| n.get());
    let (messages, folders, users, changes, runs) = if smoke {
        (3_000, 40, 4, 200, 1)
    } else {
        (1_000_000, 10_000, 100, 10_000, 3)
    };
    let messages = num("messages", get("messages"), messages);
    // Without BENCH_FOLDERS, keep 100 messages per folder, as the targets assume.
    let folders = if smoke || get("messages").is_none() {
        folders
    } else {
        (messages / 100).max(1) as usize
    };
    let gen_config = GenConfig {
        messages,
        folders: num("folders", get("folders"), folders),
        users: num("users", get("users"), users),
        seed: num("seed", get("seed"), 42),
        skew: num("skew", get("skew"), 1.0),
        threads: num("threads", get("threads"), threads),
        body_bytes: num("body_bytes", get("body_bytes"), 0),
        ..GenConfig::default()
    };
    Opts {
        gen_config,
        changes: num("changes", get("changes"), changes),
        runs: num("runs", get("runs"), runs).max(1),
        dir: get("dir").map_or_else(env::temp_dir, PathBuf::from),
        keep: get("keep").is_some_and(|v| v != "0" && !v.is_empty()),
        json: get("json").map(PathBuf::from),
        smoke,
    }
}

/// One timed child process.
#[derive(Clone, Debug, Default)]
struct Sample {
    wall: f64,
    user: f64,
    sys: f64,
    /// Peak resident set of the child, KiB.
    maxrss_kb: u64,
}

impl Sample {
    fn cpu(&self) -> f64 {
        self.user + self.sys
    }
}

/// What a child printed, when asked to count it.
#[derive(Clone, Debug, Default)]
struct Output {
    lines: u64,
    by_event: BTreeMap<String, u64>,
}

/// The variable that makes this benchmark binary a measuring wrapper: it
/// runs its arguments as a command, waits for it with `wait4`, and writes
/// "user sys maxrss_kb" to the file the variable names.
///
/// Why a wrapper: a child started by `posix_spawn` (vfork) starts its
/// `ru_maxrss` at its parent's peak, so every command this process runs
/// after generating a large store (a million names in one folder: 110 MiB)
/// would show at least that much. The wrapper is a fresh, small process,
/// and the command it starts counts from the wrapper's few MiB.
const MEASURE_VAR: &str = "MAILDIR_EVENTS_BENCH_MEASURE";

/// The wrapper's side of [`MEASURE_VAR`]; exits with the command's status.
fn measure_and_exit(out: &str) -> ! {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("{MEASURE_VAR} set, but no command to run");
        std::process::exit(70);
    };
    let child = Command::new(program)
        .args(rest)
        .env_remove(MEASURE_VAR)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program:?}: {e}"));
    let (status, ru) = wait_rusage(child.id() as libc::pid_t);
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    fs::write(
        out,
        format!("{} {} {}\n", tv(ru.ru_utime), tv(ru.ru_stime), ru.ru_maxrss),
    )
    .expect("write the measurement");
    std::process::exit(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        70
    });
}

/// `wait4` for `pid`: its wait status and its own rusage.
fn wait_rusage(pid: libc::pid_t) -> (libc::c_int, libc::rusage) {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waits for our own child; both pointers are valid.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            return (status, ru);
        }
        let e = io::Error::last_os_error();
        assert!(e.kind() == io::ErrorKind::Interrupted, "wait4: {e}");
    }
}

/// Runs `cmd` to completion through the measuring wrapper (see
/// [`MEASURE_VAR`]), which gives this command's own CPU times and peak RSS.
/// stdout goes to /dev/null unless `count` is set, in which case JSON lines
/// are counted by `event`.
fn run(inner: Command, count: bool, stderr: &Path) -> (Sample, Output) {
    let measured = stderr.with_extension("rusage");
    let mut cmd = Command::new(std::env::current_exe().expect("this benchmark's path"));
    cmd.env(MEASURE_VAR, &measured)
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    if let Some(d) = inner.get_current_dir() {
        cmd.current_dir(d);
    }
    cmd.stdin(Stdio::null())
        .stdout(if count { Stdio::piped() } else { Stdio::null() })
        .stderr(fs::File::create(stderr).expect("create stderr log"));
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let reader = child.stdout.take().map(|out| {
        thread::spawn(move || {
            let mut o = Output::default();
            for line in BufReader::new(out).lines() {
                let line = line.expect("read child stdout");
                o.lines += 1;
                let kind = serde_json::from_str::<Value>(&line)
                    .ok()
                    .and_then(|v| v.get("event").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_else(|| "(not an event)".into());
                *o.by_event.entry(kind).or_default() += 1;
            }
            o
        })
    });
    let (status, _) = wait_rusage(child.id() as libc::pid_t);
    let wall = start.elapsed().as_secs_f64();
    drop(child); // already reaped by wait4; dropping a Child does not wait
    let output = reader
        .map(|r| r.join().expect("reader thread"))
        .unwrap_or_default();
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    if !ok {
        let log = fs::read_to_string(stderr).unwrap_or_default();
        panic!("{cmd:?} failed (wait status {status:#x}):\n{log}");
    }
    let text = fs::read_to_string(&measured).expect("the wrapper's measurement");
    let _ = fs::remove_file(&measured);
    let f: Vec<f64> = text
        .split_whitespace()
        .map(|x| x.parse().expect("a number"))
        .collect();
    let sample = Sample {
        wall,
        user: f[0],
        sys: f[1],
        maxrss_kb: f[2] as u64,
    };
    (sample, output)
}

/// The `key=value` fields of the "scan done" line a scan logs at info level.
fn scan_summary(stderr: &Path) -> BTreeMap<String, String> {
    let log = fs::read_to_string(stderr).unwrap_or_default();
    let Some(line) = log.lines().rev().find(|l| l.contains("scan done")) else {
        return BTreeMap::new();
    };
    let plain = strip_ansi(line);
    let after = plain.split("scan done").nth(1).unwrap_or_default();
    after
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn scan_cmd(state: &Path, template: &str, full: bool) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("scan")
        .arg("--state")
        .arg(state)
        .arg("--store")
        .arg(template)
        .args(["--server-name", "bench", "--uid-wait-ms", "0"])
        .env("MAILDIR_EVENTS_LOG", "info")
        .env("NO_COLOR", "1");
    if full {
        cmd.arg("--full");
    }
    cmd
}

/// The results of one step (several runs of the same command).
#[derive(Clone, Debug, Default)]
struct Step {
    name: String,
    samples: Vec<Sample>,
    /// "folders listed / folders" of the last run, for scans.
    listed: Option<String>,
    /// Events printed per run (the same every run).
    events: Option<u64>,
    by_event: BTreeMap<String, u64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Step {
    fn wall(&self) -> f64 {
        median(self.samples.iter().map(|s| s.wall).collect())
    }
    fn user(&self) -> f64 {
        median(self.samples.iter().map(|s| s.user).collect())
    }
    fn sys(&self) -> f64 {
        median(self.samples.iter().map(|s| s.sys).collect())
    }
    fn cpu(&self) -> f64 {
        median(self.samples.iter().map(Sample::cpu).collect())
    }
    fn min(&self) -> f64 {
        self.samples
            .iter()
            .map(|s| s.wall)
            .fold(f64::INFINITY, f64::min)
    }
    fn max(&self) -> f64 {
        self.samples.iter().map(|s| s.wall).fold(0.0, f64::max)
    }
    fn maxrss_mb(&self) -> f64 {
        self.samples.iter().map(|s| s.maxrss_kb).max().unwrap_or(0) as f64 / 1024.0
    }

    fn record(
        &mut self,
        sample: Sample,
        out: &Output,
        summary: &BTreeMap<String, String>,
        count: bool,
    ) {
        println!(
            "    {:<34} wall {:>8.3} s  user {:>7.3} s  sys {:>7.3} s  rss {:>7.1} MiB{}",
            self.name,
            sample.wall,
            sample.user,
            sample.sys,
            sample.maxrss_kb as f64 / 1024.0,
            match (summary.get("listed"), summary.get("folders")) {
                (Some(l), Some(f)) => format!("  listed {l}/{f}"),
                _ => String::new(),
            } + &if count {
                format!("  events {}", out.lines)
            } else {
                String::new()
            }
        );
        self.samples.push(sample);
        if let (Some(l), Some(f)) = (summary.get("listed"), summary.get("folders")) {
            self.listed = Some(format!("{l} / {f}"));
        }
        if count {
            self.events = Some(out.lines);
            self.by_event = out.by_event.clone();
        } else if let Some(e) = summary.get("events").and_then(|e| e.parse().ok()) {
            self.events = Some(e);
        }
    }
}

/// Size of the state database and its WAL, bytes.
fn state_bytes(state: &Path) -> (u64, u64) {
    let len = |name: &str| fs::metadata(state.join(name)).map_or(0, |m| m.len());
    (len("state.sqlite3"), len("state.sqlite3-wal"))
}

/// Bytes per table and index of a state database (SQLite's dbstat).
fn state_breakdown(state: &Path) -> Vec<(String, u64)> {
    let flags =
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let Ok(conn) = rusqlite::Connection::open_with_flags(state.join("state.sqlite3"), flags) else {
        return Vec::new();
    };
    let Ok(mut stmt) =
        conn.prepare("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")
    else {
        return Vec::new();
    };
    stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
    })
    .map(|rows| rows.flatten().collect())
    .unwrap_or_default()
}

fn copy_state(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create state copy");
    for name in ["state.sqlite3", "state.sqlite3-wal"] {
        if from.join(name).exists() {
            fs::copy(from.join(name), to.join(name)).expect("copy state");
        }
    }
}

/// Waits until the newest change is more than a second old, so the scan
/// trusts directory stamps (see `DirStamp::trusted`), as it would for a
/// store that was not written a moment ago.
fn settle(since: Instant) {
    let wait = Duration::from_millis(1200).saturating_sub(since.elapsed());
    thread::sleep(wait);
}

fn first_line_with(path: &str, prefix: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(prefix))?;
    Some(
        line.split_once(':')
            .map_or(line, |(_, v)| v)
            .trim()
            .to_string(),
    )
}

/// What we can tell about the machine, for the report.
fn machine(dir: &Path) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    m.insert(
        "nproc",
        thread::available_parallelism()
            .map_or(0, |n| n.get())
            .to_string(),
    );
    m.insert(
        "cpu",
        first_line_with("/proc/cpuinfo", "model name").unwrap_or_else(|| "?".into()),
    );
    m.insert(
        "memory",
        first_line_with("/proc/meminfo", "MemTotal").unwrap_or_else(|| "?".into()),
    );
    m.insert(
        "kernel",
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or("?".into(), |s| s.trim().to_string()),
    );
    let df = Command::new("df")
        .arg("-T")
        .arg(dir)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .nth(1)
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    let mut cols = df.split_whitespace();
    m.insert(
        "filesystem",
        format!(
            "{} on {}",
            cols.nth(1).unwrap_or("?"),
            cols.last().unwrap_or("?")
        ),
    );
    m.insert("loadavg", loadavg());
    m.insert(
        "date",
        chrono::Local::now().format("%Y-%m-%d %H:%M %z").to_string(),
    );
    m
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The peak RSS of this process, KiB. A child started with vfork/posix_spawn
/// would inherit it as the floor of its own `ru_maxrss`; the measuring
/// process (see [`MEASURE_VAR`]) keeps it out of the figures.
fn own_hwm_kb() -> u64 {
    first_line_with("/proc/self/status", "VmHWM")
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn fmt_s(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.3} s")
    } else {
        format!("{x:.2} s")
    }
}

fn main() {
    if let Some(out) = std::env::var_os(MEASURE_VAR) {
        measure_and_exit(&out.to_string_lossy());
    }
    let opts = opts();
    let cfg = &opts.gen_config;
    fs::create_dir_all(&opts.dir).expect("create BENCH_DIR");
    let tmp = tempfile::Builder::new()
        .prefix("maildir-events-bench.")
        .tempdir_in(&opts.dir)
        .expect("create temporary directory");
    let work = tmp.path().to_path_buf();
    let root = work.join("store");
    let logs = work.join("logs");
    fs::create_dir_all(&root).expect("create store root");
    fs::create_dir_all(&logs).expect("create log dir");
    let mach = machine(&work);

    println!(
        "maildir-events scan benchmark{}",
        if opts.smoke {
            " (smoke run: tiny store, not a measurement)"
        } else {
            ""
        }
    );
    println!("  binary     {BIN}");
    for (k, v) in &mach {
        println!("  {k:<11}{v}");
    }
    println!(
        "  store      {} messages, {} folders, {} users, skew {}, seed {}, {} changes, {} runs per step",
        cfg.messages, cfg.folders, cfg.users, cfg.skew, cfg.seed, opts.changes, opts.runs
    );
    println!("  work dir   {}", work.display());

    // Generate.
    let t = Instant::now();
    let mut store: Store = storegen::generate(&root, cfg).expect("generate the store");
    let gen_secs = t.elapsed().as_secs_f64();
    let generated = Instant::now();
    let sizes = store.folder_sizes();
    let pct = |p: f64| sizes[((sizes.len() - 1) as f64 * p).round() as usize];
    println!(
        "\ngenerated in {} ({} files, {} directories); folder sizes: min {}, median {}, p90 {}, p99 {}, max {}",
        fmt_s(gen_secs),
        store.files,
        store.dirs,
        pct(0.0),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0),
    );
    let messages = store.messages;
    let template = store.template();
    let mut steps: Vec<Step> = Vec::new();
    let log = |name: &str, i: usize| logs.join(format!("{name}-{i}.log"));

    // 1. find, warm.
    settle(generated);
    println!("\nmeasuring (wall = elapsed; user/sys/rss from wait4 of that child)");
    let find_cmd = || {
        let mut c = Command::new("find");
        c.arg(&root).args(["-printf", "%f\\n"]);
        c
    };
    run(find_cmd(), false, &log("find-warmup", 0));
    let mut find = Step {
        name: "find ROOT -printf '%f\\n'".into(),
        ..Step::default()
    };
    for i in 0..opts.runs {
        let (s, o) = run(find_cmd(), false, &log("find", i));
        find.record(s, &o, &BTreeMap::new(), false);
    }
    steps.push(find);

    // 2. cold scans, each with a fresh state.
    let mut cold = Step {
        name: "cold scan (empty state, baseline)".into(),
        ..Step::default()
    };
    let mut cold_state = PathBuf::new();
    for i in 0..opts.runs {
        cold_state = work.join(format!("state-cold-{i}"));
        let (s, o) = run(
            scan_cmd(&cold_state, &template, false),
            false,
            &log("cold", i),
        );
        cold.record(s, &o, &scan_summary(&log("cold", i)), false);
    }
    let cold_size = state_bytes(&cold_state);
    steps.push(cold);

    // 3. unchanged catch-up on the baseline.
    let mut unchanged = Step {
        name: "unchanged catch-up".into(),
        ..Step::default()
    };
    for i in 0..opts.runs {
        let (s, o) = run(
            scan_cmd(&cold_state, &template, false),
            false,
            &log("unchanged", i),
        );
        unchanged.record(s, &o, &scan_summary(&log("unchanged", i)), false);
    }
    steps.push(unchanged);

    // 4. catch-up after random changes, each run on a copy of that state.
    let t = Instant::now();
    let m = storegen::mutate(&mut store, opts.changes, cfg.seed).expect("mutate the store");
    let mutate_secs = t.elapsed().as_secs_f64();
    let mutated = Instant::now();
    println!(
        "    (applied {} changes in {}: {} flag renames of which {} new/→cur/, {} deliveries, {} expunges, in {} folders holding {} messages)",
        opts.changes,
        fmt_s(mutate_secs),
        m.flag_changes,
        m.moved_to_cur,
        m.deliveries,
        m.expunges,
        m.folders_touched,
        m.messages_in_touched
    );
    settle(mutated);
    let mut catchup = Step {
        name: format!("catch-up after {} changes", opts.changes),
        ..Step::default()
    };
    let mut state = PathBuf::new();
    for i in 0..opts.runs {
        state = work.join(format!("state-catchup-{i}"));
        copy_state(&cold_state, &state);
        let (s, o) = run(scan_cmd(&state, &template, false), true, &log("catchup", i));
        catchup.record(s, &o, &scan_summary(&log("catchup", i)), true);
    }
    steps.push(catchup);

    // 5. unchanged again, after the catch-up.
    let mut again = Step {
        name: "unchanged, after the catch-up".into(),
        ..Step::default()
    };
    for i in 0..opts.runs {
        let (s, o) = run(scan_cmd(&state, &template, false), false, &log("again", i));
        again.record(s, &o, &scan_summary(&log("again", i)), false);
    }
    steps.push(again);

    // 6. --full: list every folder.
    let mut full = Step {
        name: "--full unchanged re-scan".into(),
        ..Step::default()
    };
    for i in 0..opts.runs {
        let (s, o) = run(scan_cmd(&state, &template, true), false, &log("full", i));
        full.record(s, &o, &scan_summary(&log("full", i)), false);
    }
    steps.push(full);
    let final_size = state_bytes(&state);
    let parent_hwm = own_hwm_kb();
    // What any command shows through the measuring process: its floor.
    let floor = run(Command::new("true"), false, &log("floor", 0))
        .0
        .maxrss_kb as f64
        / 1024.0;

    // Report.
    let find_wall = steps[0].wall();
    let find_cpu = steps[0].cpu();
    let end_load = loadavg();
    println!(
        "\n## Results ({}, {} messages, {} folders, {} users; median of {} runs; load average {} → {})\n",
        mach["date"],
        messages,
        store.folder_count(),
        store.users.len(),
        opts.runs,
        mach["loadavg"],
        end_load
    );
    println!(
        "| step | wall (median) | min – max | user | sys | peak RSS | wall ÷ find | CPU ÷ find | folders listed | events |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in &steps {
        println!(
            "| {} | {} | {} – {} | {} | {} | {:.1} MiB | {:.2}× | {:.2}× | {} | {} |",
            s.name.replace('|', "\\|"),
            fmt_s(s.wall()),
            fmt_s(s.min()),
            fmt_s(s.max()),
            fmt_s(s.user()),
            fmt_s(s.sys()),
            s.maxrss_mb(),
            s.wall() / find_wall,
            s.cpu() / find_cpu,
            s.listed.clone().unwrap_or_else(|| "–".into()),
            s.events.map_or_else(|| "–".into(), |e| e.to_string()),
        );
    }
    let catch = &steps[3];
    if !catch.by_event.is_empty() {
        let kinds: Vec<String> = catch
            .by_event
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("\nevents of the catch-up: {}", kinds.join(", "));
    }
    let per_msg = |(db, wal): (u64, u64), n: u64| (db + wal) as f64 / n.max(1) as f64;
    println!(
        "\nstate after the baseline: {} bytes (+ WAL {}) = {:.1} bytes/message; after the catch-up and --full: {} (+ WAL {}) = {:.1} bytes/message",
        cold_size.0,
        cold_size.1,
        per_msg(cold_size, messages),
        final_size.0,
        final_size.1,
        per_msg(final_size, store.messages)
    );
    let breakdown = state_breakdown(&state);
    if !breakdown.is_empty() {
        let parts: Vec<String> = breakdown
            .iter()
            .map(|(n, b)| format!("{n} {:.1} B/msg", *b as f64 / store.messages.max(1) as f64))
            .collect();
        println!("state by table/index (dbstat): {}", parts.join(", "));
    }
    let scan_rss = steps[1..].iter().map(Step::maxrss_mb).fold(0.0, f64::max);
    println!(
        "peak RSS of any scan: {scan_rss:.1} MiB (`true` shows {floor:.1} MiB through the measuring process; this benchmark's own peak, which a command it started directly would have inherited: {:.1} MiB)",
        parent_hwm as f64 / 1024.0
    );
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let (cold_r, unch_r) = (steps[1].wall() / find_wall, steps[2].wall() / find_wall);
    println!("\ntargets (the project's; reported, never asserted):");
    println!(
        "  cold scan ≤ 1.5× find:       {cold_r:.2}×  {}",
        verdict(cold_r <= 1.5)
    );
    println!(
        "  unchanged scan ≤ 0.2× find:  {unch_r:.2}×  {}",
        verdict(unch_r <= 0.2)
    );
    println!(
        "  RSS ≤ 128 MB:                {scan_rss:.1} MiB  {}",
        verdict(scan_rss * 1.048_576 <= 128.0)
    );
    let bpm = per_msg(cold_size, messages).max(per_msg(final_size, store.messages));
    println!(
        "  state ≤ 150 bytes/message:   {bpm:.1}  {}",
        verdict(bpm <= 150.0)
    );

    if let Some(path) = &opts.json {
        let steps_json: Vec<Value> = steps
            .iter()
            .map(|s| {
                json!({
                    "step": s.name, "wall_median_s": s.wall(), "wall_min_s": s.min(), "wall_max_s": s.max(),
                    "user_s": s.user(), "sys_s": s.sys(), "max_rss_mib": s.maxrss_mb(),
                    "wall_vs_find": s.wall() / find_wall, "cpu_vs_find": s.cpu() / find_cpu,
                    "folders_listed": s.listed, "events": s.events, "events_by_kind": s.by_event,
                    "runs": s.samples.iter().map(|x| json!({"wall_s": x.wall, "user_s": x.user, "sys_s": x.sys, "max_rss_kib": x.maxrss_kb})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let doc = json!({
            "machine": mach, "loadavg_end": end_load,
            "store": {"messages_generated": cfg.messages, "messages_after_changes": messages, "folders": store.folder_count(),
                      "users": store.users.len(), "files": store.files, "dirs": store.dirs, "skew": cfg.skew, "seed": cfg.seed,
                      "generate_s": gen_secs},
            "changes": {"requested": opts.changes, "flag_changes": m.flag_changes, "moved_to_cur": m.moved_to_cur,
                        "deliveries": m.deliveries, "expunges": m.expunges, "folders_touched": m.folders_touched,
                        "messages_in_touched_folders": m.messages_in_touched},
            "steps": steps_json,
            "state_bytes_baseline": cold_size.0 + cold_size.1, "state_bytes_final": final_size.0 + final_size.1,
            "state_breakdown": breakdown.iter().map(|(n, b)| json!({"name": n, "bytes": b})).collect::<Vec<_>>(),
            "bench_process_hwm_kib": parent_hwm,
        });
        let mut f = fs::File::create(path).expect("create BENCH_JSON file");
        writeln!(f, "{}", serde_json::to_string_pretty(&doc).expect("json"))
            .expect("write BENCH_JSON");
        println!("\nresults written to {}", path.display());
    }

    if opts.keep {
        let kept = tmp.keep();
        println!(
            "\nkept {} (store in store/, states in state-*/, scan logs in logs/)",
            kept.display()
        );
    } else {
        let t = Instant::now();
        drop(tmp);
        println!(
            "\nremoved the store in {}",
            fmt_s(t.elapsed().as_secs_f64())
        );
    }
}
