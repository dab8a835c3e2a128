//! Helpers for the `watch` tests: a running watcher whose stdout is read by
//! a thread into a shared list of events, its sd_notify datagrams, bounded
//! and bounded polls for what it prints. The stores it watches are built with
//! [`super::fixture::Maildir`].
//!
//! No timing is asserted anywhere: every wait is a poll with a generous
//! bound, so the tests pass on a loaded machine.

#![allow(dead_code)]

use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

pub use super::run::{BIN, SERVER};

/// How long an expected line may take to appear.
pub const WAIT: Duration = Duration::from_secs(20);
/// How long the catch-up before `READY=1` may take.
pub const READY_WAIT: Duration = Duration::from_secs(60);

// ------------------------------------------------------------ the store

/// A message body of a few lines.
pub fn body(tag: &str) -> Vec<u8> {
    format!("From: a@example.org\nSubject: {tag}\n\nhello {tag}\n").into_bytes()
}

/// RFC822.SIZE of content: bare LF counted as CRLF.
pub fn imap_size(content: &[u8]) -> u64 {
    let bare_lf = content
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' && (i == 0 || content[i - 1] != b'\r'))
        .count();
    (content.len() + bare_lf) as u64
}

// ------------------------------------------------------------ the watcher

/// What the stdout reader collected.
#[derive(Default)]
struct Out {
    events: Vec<Value>,
    /// Lines that were not JSON objects (a bug unless at a kill -9).
    bad: Vec<String>,
    /// An unterminated last line (only legitimate after kill -9).
    partial: Option<String>,
    eof: bool,
}

/// A running `maildir-events watch`.
pub struct Watch {
    child: Option<Child>,
    pid: i32,
    out: Arc<Mutex<Out>>,
    stderr: Arc<Mutex<String>>,
    gate: Arc<(Mutex<bool>, Condvar)>,
    reader: Option<JoinHandle<()>>,
    err_reader: Option<JoinHandle<()>>,
    notify: UnixDatagram,
    notes: Vec<String>,
    _sock_dir: TempDir,
    pub args: Vec<OsString>,
}

/// How to start a watcher.
pub struct Spawn {
    pub args: Vec<OsString>,
    /// Do not read stdout until [`Watch::resume`]: the pipe fills and the
    /// watcher blocks on it.
    pub paused: bool,
    /// Shrinks the stdout pipe to this many bytes (`F_SETPIPE_SZ`), so a
    /// stalled consumer blocks the watcher after a few lines.
    pub pipe_size: Option<i32>,
    pub log: &'static str,
    /// A program (and its arguments) that runs the watcher, ending with
    /// an `exec` of what follows it, e.g. `unshare … sh -c '…; exec "$@"' sh`:
    /// the child's pid is then still the watcher's.
    pub wrap: Vec<OsString>,
    /// Extra environment variables of the watcher.
    pub env: Vec<(OsString, OsString)>,
}

impl Spawn {
    /// `watch --state STATE --server-name mx.example.org ARGS…`
    pub fn new(state: &Path, args: &[&str]) -> Spawn {
        let mut v: Vec<OsString> = vec![
            "watch".into(),
            "--state".into(),
            state.into(),
            "--server-name".into(),
            SERVER.into(),
        ];
        v.extend(args.iter().map(OsString::from));
        Spawn::command(v)
    }

    /// `ARGS…` as they are (the first is the subcommand, or a global
    /// option such as `--config` before it): for tests that name their
    /// own server or pass a configuration file.
    pub fn command(args: Vec<OsString>) -> Spawn {
        Spawn {
            args,
            paused: false,
            pipe_size: None,
            log: "info",
            wrap: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Runs the watcher through `wrap` (see [`Spawn::wrap`]).
    pub fn wrapped(mut self, wrap: &[&str]) -> Spawn {
        self.wrap = wrap.iter().map(OsString::from).collect();
        self
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Spawn {
        self.args.push(a.into());
        self
    }

    /// Sets an environment variable of the watcher.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Spawn {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn paused(mut self) -> Spawn {
        self.paused = true;
        self
    }

    pub fn pipe_size(mut self, bytes: i32) -> Spawn {
        self.pipe_size = Some(bytes);
        self
    }

    /// Spawns and waits for `READY=1`.
    pub fn start(self) -> Watch {
        let mut w = self.spawn();
        w.wait_ready();
        w
    }

    /// Spawns without waiting.
    pub fn spawn(self) -> Watch {
        let sock_dir = tempfile::Builder::new()
            .prefix("me-notify")
            .tempdir_in("/tmp")
            .unwrap();
        let sock_path = sock_dir.path().join("n");
        let notify = UnixDatagram::bind(&sock_path).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut cmd = match self.wrap.split_first() {
            Some((program, wrap)) => {
                let mut c = Command::new(program);
                c.args(wrap).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = cmd
            .args(&self.args)
            .env("NOTIFY_SOCKET", &sock_path)
            .env("MAILDIR_EVENTS_LOG", self.log)
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("STATE_DIRECTORY")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let out = Arc::new(Mutex::new(Out::default()));
        let gate = Arc::new((Mutex::new(self.paused), Condvar::new()));
        let stdout = child.stdout.take().unwrap();
        if let Some(bytes) = self.pipe_size {
            use std::os::fd::AsRawFd;
            // SAFETY: fcntl on the pipe's read end, which we own.
            let r = unsafe { libc::fcntl(stdout.as_raw_fd(), libc::F_SETPIPE_SZ, bytes) };
            assert!(r >= 0, "F_SETPIPE_SZ failed");
        }
        let reader = {
            let out = out.clone();
            let gate = gate.clone();
            thread::spawn(move || read_stdout(stdout, &out, &gate))
        };
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_reader = {
            let stderr = stderr.clone();
            let mut pipe = child.stderr.take().unwrap();
            thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => stderr
                            .lock()
                            .unwrap()
                            .push_str(&String::from_utf8_lossy(&buf[..n])),
                    }
                }
            })
        };
        Watch {
            child: Some(child),
            pid,
            out,
            stderr,
            gate,
            reader: Some(reader),
            err_reader: Some(err_reader),
            notify,
            notes: Vec::new(),
            _sock_dir: sock_dir,
            args: self.args,
        }
    }
}

fn read_stdout(stdout: impl Read, out: &Mutex<Out>, gate: &(Mutex<bool>, Condvar)) {
    {
        let (lock, cv) = gate;
        let mut paused = lock.lock().unwrap();
        while *paused {
            paused = cv.wait(paused).unwrap();
        }
    }
    let mut r = BufReader::with_capacity(1 << 16, stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
        if line.last() != Some(&b'\n') {
            o.partial = Some(String::from_utf8_lossy(&line).into_owned());
            break;
        }
        let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
        match serde_json::from_str::<Value>(&text) {
            Ok(v) if v.is_object() => o.events.push(v),
            _ => o.bad.push(text),
        }
    }
    out.lock().unwrap_or_else(|e| e.into_inner()).eof = true;
}

impl Watch {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Everything read from stdout so far.
    pub fn events(&self) -> Vec<Value> {
        self.out.lock().unwrap().events.clone()
    }

    pub fn count(&self) -> usize {
        self.out.lock().unwrap().events.len()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The stdout lines so far that were no JSON object.
    pub fn bad_lines(&self) -> Vec<String> {
        self.out.lock().unwrap().bad.clone()
    }

    /// Whether stdout has ended (the watcher exited or closed it).
    pub fn closed(&self) -> bool {
        self.out.lock().unwrap().eof
    }

    /// The sd_notify datagrams received so far.
    pub fn notes(&mut self) -> &[String] {
        self.drain_notes();
        &self.notes
    }

    fn drain_notes(&mut self) {
        self.notify.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.notify.recv(&mut buf) {
            self.notes
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        self.notify.set_nonblocking(false).unwrap();
    }

    /// Waits (bounded) for a datagram with a line starting with `prefix`.
    pub fn wait_note(&mut self, prefix: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            self.drain_notes();
            if self
                .notes
                .iter()
                .any(|n| n.lines().any(|l| l.starts_with(prefix)))
            {
                return true;
            }
            if start.elapsed() > timeout {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts reading stdout (after [`Spawn::paused`]).
    pub fn resume(&self) {
        let (lock, cv) = &*self.gate;
        *lock.lock().unwrap() = false;
        cv.notify_all();
    }

    /// Waits for a datagram with `READY=1`; panics when the watcher exits
    /// or the time is up.
    pub fn wait_ready(&mut self) {
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            if self.notes.iter().any(|n| n.lines().any(|l| l == "READY=1")) {
                return;
            }
            if let Ok(n) = self.notify.recv(&mut buf) {
                self.notes
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                continue;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "the watcher exited ({status}) before READY=1\nargs: {:?}\nstderr:\n{}",
                    self.args,
                    self.stderr()
                );
            }
            assert!(
                start.elapsed() < READY_WAIT,
                "no READY=1 within {READY_WAIT:?}\nargs: {:?}\nnotes: {:?}\nstderr:\n{}",
                self.args,
                self.notes,
                self.stderr()
            );
        }
    }

    /// Polls until `cond` holds for the events read so far; returns them.
    /// Panics after `timeout`, showing what was printed.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let start = Instant::now();
        loop {
            {
                let o = self.out.lock().unwrap();
                if cond(&o.events) {
                    return o.events.clone();
                }
            }
            if start.elapsed() > timeout {
                let evs = self.events();
                panic!(
                    "timed out after {timeout:?} waiting for: {what}\n{} events printed:\n{}\nstderr (tail):\n{}",
                    evs.len(),
                    show_tail(&evs, 60),
                    tail(&self.stderr(), 6000)
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until `n` events were printed.
    pub fn wait_count(&self, n: usize) -> Vec<Value> {
        self.wait_for(&format!("{n} events"), WAIT, |e| e.len() >= n)
    }

    /// Waits until `n` events were printed, then until nothing new came
    /// for 300 ms, so that an unwanted extra event shows too; returns them
    /// all.
    pub fn wait_exactly(&self, n: usize) -> Vec<Value> {
        self.wait_count(n);
        self.settle(Duration::from_millis(300))
    }

    /// Waits until nothing new was printed for `quiet` (for tests that
    /// then check nothing *else* came; the final check is at `stop`).
    pub fn settle(&self, quiet: Duration) -> Vec<Value> {
        let mut last = self.count();
        let mut since = Instant::now();
        let start = Instant::now();
        loop {
            thread::sleep(Duration::from_millis(10));
            let now = self.count();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return self.events();
            }
            assert!(start.elapsed() < Duration::from_secs(120), "never settled");
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of our own child, not yet reaped.
        let r = unsafe { libc::kill(self.pid, sig) };
        assert_eq!(r, 0, "kill({}, {sig}) failed", self.pid);
    }

    /// Sends `sig`, waits for the exit (bounded) and for stdout's end.
    fn end(&mut self, sig: i32) -> ExitStatus {
        if sig == libc::SIGKILL {
            // Killed where it stands (maybe blocked on a full pipe); what
            // it wrote into the pipe is still read afterwards.
            self.signal(sig);
            self.resume();
        } else {
            self.resume();
            self.signal(sig);
        }
        let start = Instant::now();
        let child = self.child.as_mut().unwrap();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the watcher did not exit within 60 s of signal {sig}\nstderr (tail):\n{}",
                    tail(&self.stderr(), 6000)
                );
            }
            thread::sleep(Duration::from_millis(5));
        };
        self.child = None;
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        if let Some(r) = self.err_reader.take() {
            r.join().unwrap();
        }
        self.drain_notes();
        status
    }

    /// SIGTERM: the watcher must finish its batch, flush and exit 0, having
    /// printed only well-formed lines. Returns everything it printed.
    pub fn stop(mut self) -> Vec<Value> {
        self.stop_with(libc::SIGTERM)
    }

    pub fn stop_with(&mut self, sig: i32) -> Vec<Value> {
        let status = self.end(sig);
        let o = self.out.lock().unwrap();
        assert_eq!(
            status.code(),
            Some(0),
            "the watcher should exit 0 on signal {sig}, got {status}\nstderr (tail):\n{}",
            tail(&self.stderr(), 6000)
        );
        assert!(
            o.bad.is_empty(),
            "lines that are no JSON object: {:?}",
            o.bad
        );
        assert!(
            o.partial.is_none(),
            "unterminated last line: {:?}",
            o.partial
        );
        o.events.clone()
    }

    /// SIGTERM; `Err` says how the watcher did not exit 0 with only
    /// well-formed lines, for tests that check more before failing. `Ok`
    /// holds its stderr; [`Watch::events`] still holds all it printed.
    pub fn terminate(&mut self) -> Result<String, String> {
        let status = self.end(libc::SIGTERM);
        let o = self.out.lock().unwrap();
        let mut wrong = Vec::new();
        if status.code() != Some(0) {
            wrong.push(format!(
                "the watcher should exit 0 on SIGTERM, got {status}"
            ));
        }
        if !o.bad.is_empty() {
            wrong.push(format!("lines that are no JSON object: {:?}", o.bad));
        }
        if let Some(p) = &o.partial {
            wrong.push(format!("unterminated last line: {p:?}"));
        }
        if wrong.is_empty() {
            return Ok(self.stderr());
        }
        Err(format!(
            "{} (args {:?})\nstderr (tail):\n{}",
            wrong.join("; "),
            self.args,
            tail(&self.stderr(), 6000)
        ))
    }

    /// kill -9: returns the complete lines printed (a partial last line is
    /// legitimate and dropped).
    pub fn kill9(mut self) -> Vec<Value> {
        let status = self.end(libc::SIGKILL);
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "{status}"
        );
        let o = self.out.lock().unwrap();
        assert!(
            o.bad.is_empty(),
            "lines that are no JSON object: {:?}",
            o.bad
        );
        o.events.clone()
    }

    /// Waits for the exit of a watcher expected to stop by itself.
    pub fn wait_exit(mut self, timeout: Duration) -> (Option<i32>, String) {
        let start = Instant::now();
        let child = self.child.as_mut().unwrap();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(start.elapsed() < timeout, "did not exit within {timeout:?}");
            thread::sleep(Duration::from_millis(10));
        };
        self.child = None;
        if let Some(r) = self.err_reader.take() {
            r.join().unwrap();
        }
        (status.code(), self.stderr())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.resume();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ------------------------------------------------------------ scan

/// Runs `scan` with the same state; returns (exit code, stdout lines, stderr).
pub fn scan(state: &Path, args: &[&std::ffi::OsStr]) -> (Option<i32>, Vec<String>, String) {
    let out = Command::new(BIN)
        .arg("scan")
        .arg("--state")
        .arg(state)
        .arg("--server-name")
        .arg(SERVER)
        .args(args)
        .env_remove("MAILDIR_EVENTS_LOG")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `status` on the state; returns (exit code, stdout, stderr).
pub fn status(state: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .arg("status")
        .arg("--state")
        .arg(state)
        .env_remove("MAILDIR_EVENTS_LOG")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ------------------------------------------------------------ printing

pub fn tail(s: &str, n: usize) -> &str {
    let mut i = s.len().saturating_sub(n);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// The last `n` events, one short line each.
pub fn show_tail(evs: &[Value], n: usize) -> String {
    let skip = evs.len().saturating_sub(n);
    let mut out = String::new();
    if skip > 0 {
        out.push_str(&format!("  … {skip} earlier\n"));
    }
    for e in &evs[skip..] {
        out.push_str(&format!("  {}\n", short(e)));
    }
    out
}

/// An event in one short line: sequence number, type, user, URL, and
/// uidset, flags, old mailbox and file name where it has them.
pub fn short(e: &Value) -> String {
    let g = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
    let mut s = format!(
        "#{} {} {} {}",
        e.get("vnd.maildir.seq")
            .map(Value::to_string)
            .unwrap_or_default(),
        g("event"),
        g("user"),
        g("uri")
    );
    for k in [
        "uidset",
        "flagNames",
        "oldMailboxID",
        "vnd.maildir.filename",
    ] {
        if let Some(v) = e.get(k) {
            s.push_str(&format!(" {k}={v}"));
        }
    }
    s
}

/// A wrapper for [`Spawn::wrapped`] that runs the watcher in its own user
/// namespace with a real kernel limit of `limit` inotify watches
/// (`user.max_inotify_watches`), so the kernel refuses watches with ENOSPC
/// as it does on a host whose `fs.inotify.max_user_watches` is too low,
/// without touching the host's limit. `None` (with a visible skip line)
/// when user namespaces are not available; under CI that is a failure.
pub fn with_watch_limit(test: &str, limit: u32) -> Option<Vec<String>> {
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
    let probe = Command::new(&wrap[0]).args(&wrap[1..]).arg("true").output();
    let why = match probe {
        Ok(o) if o.status.success() => return Some(wrap),
        Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
        Err(e) => e.to_string(),
    };
    assert!(
        !super::natsserver::in_ci(),
        "{test}: cannot set an inotify limit in a user namespace (unshare --user): {why}"
    );
    let _ = writeln!(
        std::io::stderr(),
        "SKIP {test}: no user namespaces here (unshare --user: {why}); under CI=true this fails"
    );
    None
}
