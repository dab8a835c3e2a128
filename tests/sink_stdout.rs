//! The stdout sink through the real binary when its output fails:
//!
//! - a pipe whose reader goes away (`watch | head -1`) ends `watch` with
//!   exit 74 promptly, even while idle, and the message counts exactly the
//!   events the outbox keeps (as `status` reads them); the next run
//!   delivers them;
//! - stdout closed at start (`>&-`) is exit 74 for `scan` and `watch`
//!   before anything leaves the outbox, and a later run prints the events;
//! - with only a webhook sink, a closed stdout does not matter.
//!
//! Time limits are generous (a loaded two-core machine): they only tell
//! "promptly" (about half a second here) from "at the next event".

mod support;
use support::sinkutil;

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use sinkutil::{collect, command, deliver, kept_in, maildir, wait_for};

const USER: &str = "alice@example.org";
/// A closed output must end `watch` within this (it takes well under a
/// second; the margin is for a loaded machine).
const PROMPT: Duration = Duration::from_secs(3);

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// `status` of a state directory, parsed.
fn status(state: &Path) -> Value {
    let out = command(&[os("status"), os("--state"), state.as_os_str()], "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The stdout sink's waiting events, by `status`.
fn waiting(state: &Path) -> u64 {
    let s = status(state);
    s["sinks"]["stdout"]["waiting"].as_u64().unwrap_or(0)
}

/// `scan` to its end: exit code, stdout lines, stderr.
fn scan(state: &Path, root: &Path) -> (Option<i32>, Vec<Value>, String) {
    let out = command(
        &[
            os("scan"),
            os("--state"),
            state.as_os_str(),
            os("--user"),
            os(USER),
            root.as_os_str(),
        ],
        "warn",
    )
    .output()
    .unwrap();
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (
        out.status.code(),
        events,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn count(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["event"] == kind).count()
}

/// `watch` with stdout to a pipe the test reads line by line and then
/// closes, as `head -1` does.
struct Piped {
    child: std::process::Child,
    out: Option<std::process::ChildStdout>,
    stderr: thread::JoinHandle<String>,
}

fn watch_piped(state: &Path, root: &Path, log: &str) -> Piped {
    let mut child = command(
        &[
            os("watch"),
            os("--state"),
            state.as_os_str(),
            os("--user"),
            os(USER),
            root.as_os_str(),
        ],
        log,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stderr = collect(child.stderr.take().unwrap());
    let out = child.stdout.take();
    Piped { child, out, stderr }
}

impl Piped {
    /// The next line, read a byte at a time so nothing past it is taken
    /// from the pipe (a killer thread ends a watch that never writes).
    fn next_line(&mut self) -> Value {
        let pid = self.child.id() as libc::pid_t;
        let done = Arc::new(Mutex::new(false));
        let d = done.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_secs(60));
            if !*d.lock().unwrap() {
                // SAFETY: kill(2) of our own child, which is still waited for.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        });
        let out = self.out.as_mut().expect("the pipe is open");
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match std::io::Read::read(out, &mut byte) {
                Ok(1) if byte[0] == b'\n' => break,
                Ok(1) => line.push(byte[0]),
                other => panic!("watch's output ended: {other:?}"),
            }
        }
        *done.lock().unwrap() = true;
        serde_json::from_str(&String::from_utf8_lossy(&line)).unwrap()
    }

    /// Closes the read end, as `head -1` does when it exits; returns when.
    fn close(&mut self) -> Instant {
        self.out.take();
        Instant::now()
    }

    /// Waits for the exit; the status, the time since `since`, stderr.
    fn finish(mut self, since: Instant) -> (Option<i32>, Duration, String) {
        let status = wait_for(&mut self.child, Duration::from_secs(60));
        let took = since.elapsed();
        let stderr = self.stderr.join().unwrap();
        let status = status.unwrap_or_else(|| panic!("watch did not exit\n{stderr}"));
        (status.code(), took, stderr)
    }
}

#[test]
fn a_reader_that_goes_away_ends_watch_promptly_and_the_count_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, state) = (tmp.path().join("Maildir"), tmp.path().join("state"));
    maildir(&root, 2);
    // Baseline, silently: only what happens while watching is an event.
    let (code, events, err) = scan(&state, &root);
    assert_eq!((code, events.len()), (Some(0), 0), "{err}");

    let mut w = watch_piped(&state, &root, "info");
    deliver(&root, "first");
    let ev = w.next_line();
    assert_eq!(ev["event"], "MessageNew", "{ev}");
    // Idle now: nothing is written until the next change.
    thread::sleep(Duration::from_millis(800));
    let closed = w.close();
    let (code, took, stderr) = w.finish(closed);
    assert_eq!(code, Some(74), "{stderr}");
    assert!(
        took < PROMPT,
        "a closed output was noticed only after {took:?}\n{stderr}"
    );
    let kept = kept_in(&stderr).unwrap_or_else(|| panic!("no count in: {stderr}"));
    assert_eq!(kept, waiting(&state), "{stderr}");
    eprintln!("watch ended {took:?} after its reader went away; {kept} kept");
}

#[test]
fn events_kept_when_the_reader_goes_away_are_counted_and_delivered_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, state) = (tmp.path().join("Maildir"), tmp.path().join("state"));
    maildir(&root, 1);
    let (code, _, err) = scan(&state, &root);
    assert_eq!(code, Some(0), "{err}");

    let mut w = watch_piped(&state, &root, "debug");
    deliver(&root, "first");
    assert_eq!(w.next_line()["event"], "MessageNew");
    // More events than the pipe holds arrive and are not read: the
    // watcher blocks writing them; then the reader goes away. What it had
    // not written stays in the outbox.
    const MORE: usize = 400;
    for i in 0..MORE {
        deliver(&root, &format!("more{i}"));
    }
    let until = Instant::now() + Duration::from_secs(60);
    while waiting(&state) == 0 {
        assert!(Instant::now() < until, "the watcher wrote everything?");
        thread::sleep(Duration::from_millis(100));
    }
    thread::sleep(Duration::from_millis(500));
    let closed = w.close();
    let (code, took, stderr) = w.finish(closed);
    assert_eq!(code, Some(74), "{stderr}");
    assert!(took < PROMPT, "took {took:?}\n{stderr}");
    let kept = kept_in(&stderr).unwrap_or_else(|| panic!("no count in: {stderr}"));
    let st = status(&state);
    assert_eq!(kept, waiting(&state), "{st}\n{stderr}");
    assert_eq!(Some(kept), st["outbox"]["waiting"].as_u64(), "{st}");
    assert!(kept > 0, "{stderr}");
    // The next run delivers them (and what the watcher had not committed
    // yet, which its catch-up finds), and nothing waits any more.
    let (code, events, err) = scan(&state, &root);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        count(&events, "MessageNew") as u64 >= kept,
        "{kept}: {events:?}"
    );
    let seqs: Vec<u64> = events
        .iter()
        .filter_map(|e| e["vnd.maildir.seq"].as_u64())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(waiting(&state), 0);
    eprintln!("watch ended {took:?} after its reader went away; {kept} kept");
}

/// Runs the binary with fd 1 closed (as `sh -c 'exec … >&-'` does).
fn run_stdout_closed(args: &[&OsStr], log: &str) -> (Option<i32>, String) {
    let mut c = command(args, log);
    c.stdout(Stdio::inherit()).stderr(Stdio::piped());
    // SAFETY: close(2) between fork and exec; nothing else runs there.
    unsafe {
        c.pre_exec(|| {
            libc::close(libc::STDOUT_FILENO);
            Ok(())
        });
    }
    let out = c.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn stdout_closed_at_start_is_exit_74_and_nothing_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, state) = (tmp.path().join("Maildir"), tmp.path().join("state"));
    maildir(&root, 1);
    let (code, _, err) = scan(&state, &root);
    assert_eq!(code, Some(0), "{err}");
    deliver(&root, "a");
    deliver(&root, "b");
    let args = |cmd: &'static str| {
        vec![
            os(cmd).to_owned(),
            os("--state").to_owned(),
            state.as_os_str().to_owned(),
            os("--user").to_owned(),
            os(USER).to_owned(),
            root.as_os_str().to_owned(),
        ]
    };
    for cmd in ["scan", "watch"] {
        let a = args(cmd);
        let a: Vec<&OsStr> = a.iter().map(|s| s.as_os_str()).collect();
        let (code, stderr) = run_stdout_closed(&a, "debug");
        assert_eq!(code, Some(74), "{cmd}: {stderr}");
        assert!(
            stderr.contains("standard output is closed"),
            "{cmd}: {stderr}"
        );
        assert_eq!(kept_in(&stderr), Some(0), "{cmd}: {stderr}");
    }
    // Nothing was written into the state database by mistake, nothing
    // was lost: a normal run prints both messages.
    let (code, events, err) = scan(&state, &root);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(count(&events, "MessageNew"), 2, "{events:?}");
}

#[test]
fn stdout_closed_does_not_matter_without_a_stdout_sink() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, state) = (tmp.path().join("Maildir"), tmp.path().join("state"));
    maildir(&root, 2);
    let port = sinkutil::free_port();
    let server = tiny_http::Server::http(("127.0.0.1", port)).unwrap();
    let got = Arc::new(Mutex::new(0usize));
    let g = got.clone();
    thread::spawn(move || {
        for req in server.incoming_requests() {
            *g.lock().unwrap() += 1;
            let _ = req.respond(tiny_http::Response::from_string("ok"));
        }
    });
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[[sink]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\n"),
    )
    .unwrap();
    let (code, stderr) = run_stdout_closed(
        &[
            os("--config"),
            config.as_os_str(),
            os("scan"),
            os("--emit-existing"),
            os("--state"),
            state.as_os_str(),
            os("--user"),
            os(USER),
            root.as_os_str(),
        ],
        "info",
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(*got.lock().unwrap() >= 2, "{stderr}");
}
