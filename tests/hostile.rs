//! The store is hostile input: binary-level tests of what a mailbox owner
//! can put in their own Maildir against a watcher that reads it with
//! root's rights.
//!
//! Each test builds the hostile thing beside an ordinary message, runs
//! `scan` or `watch` with a time limit, and checks that nothing was read
//! through a link or from a non-file, that memory stayed bounded, that a
//! warning names the path, and that the ordinary message was still
//! reported. The damaged-state tests check that a broken `state.sqlite3`
//! is exit 65, never a silent new start.

mod support;
use support::evq;
use support::live;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::RwLock;
use std::thread;
use std::time::{Duration, Instant};

use evq::{kinds, n, of, s, uid};
use serde_json::Value;

use live::{BIN, SERVER, WAIT};
use support::evq::USER;
use support::user::Env;

/// What a hostile link points at; must never show in any output.
const SECRET: &str = "TOPSECRET-root-only-7f3a9c";
/// How long any one run may take before the test calls it hung.
const LIMIT: Duration = Duration::from_secs(60);

/// The overflow test shrinks the kernel's inotify queue for the watchers
/// started while it holds this lock for writing; every other watcher in
/// this file starts under a read lock, so none gets the small queue.
static QUEUE: RwLock<()> = RwLock::new(());

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A file outside the store that only root may read.
fn secret(env: &Env) -> PathBuf {
    let p = env.tmp.path().join("shadow");
    fs::write(&p, format!("root:{SECRET}:19000:0:99999:7:::\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// A config file with message content on.
fn content_config(env: &Env) -> PathBuf {
    let p = env.tmp.path().join("config.toml");
    fs::write(
        &p,
        "[content]\nmode = \"message\"\nmax_size = 0\ninclude = [\"messageContent\", \"bodyStructure\"]\n",
    )
    .unwrap();
    p
}

fn scan_args(env: &Env, extra: &[&OsStr]) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![
        "scan".into(),
        "--state".into(),
        env.state.clone().into(),
        "--server-name".into(),
        SERVER.into(),
        "--user".into(),
        USER.into(),
    ];
    v.extend(extra.iter().map(|a| a.to_os_string()));
    v.push(env.md.root.clone().into());
    v
}

/// A `scan` of the store with a time limit and its peak memory.
fn scan(env: &Env, extra: &[&OsStr]) -> Run {
    run(&scan_args(env, extra), LIMIT)
}

/// A first `scan` reporting what exists, with message content on.
fn scan_existing_with_content(env: &Env) -> Run {
    let cfg = content_config(env);
    scan(
        env,
        &[
            OsStr::new("--emit-existing"),
            OsStr::new("--config"),
            cfg.as_os_str(),
        ],
    )
}

/// What one run of the binary did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// Peak resident memory of the child, in KiB.
    max_rss_kib: i64,
}

impl Run {
    fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "exit status\nstderr:\n{}", self.stderr);
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        self
    }
}

/// Runs the binary with `args`, killing it (and failing) after `limit`;
/// reports its peak RSS from `wait4`.
fn run(args: &[OsString], limit: Duration) -> Run {
    run_with(Command::new(BIN).args(args), limit)
}

fn run_with(cmd: &mut Command, limit: Duration) -> Run {
    let mut child = cmd
        .env("MAILDIR_EVENTS_LOG", "warn")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let e = thread::spawn(move || {
        let mut s = Vec::new();
        err.read_to_end(&mut s).unwrap();
        String::from_utf8_lossy(&s).into_owned()
    });
    let start = Instant::now();
    let (status, rss) = loop {
        let mut status = 0;
        // SAFETY: a zeroed rusage filled in by wait4 for our own child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break (status, usage.ru_maxrss);
        }
        if start.elapsed() > limit {
            // SAFETY: kill our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = child.wait();
            panic!(
                "{:?} did not finish within {limit:?} (killed)\nstderr:\n{}",
                cmd.get_args().collect::<Vec<_>>(),
                e.join().unwrap()
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    // The child was reaped by wait4: forget it without waiting again.
    std::mem::forget(child);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Run {
        code,
        stdout: o.join().unwrap(),
        stderr: e.join().unwrap(),
        max_rss_kib: rss,
    }
}

/// No output line or log line carries the secret.
fn assert_no_secret(what: &str, text: &str) {
    assert!(
        !text.contains(SECRET),
        "{what} leaks the link target:\n{text}"
    );
}

// ------------------------------------------------------------ links

#[test]
fn a_link_to_a_root_only_file_is_never_read_by_scan() {
    let env = Env::new();
    let secret = secret(&env);
    env.md
        .deliver("", "1700000002.M2P2.host", b"Subject: ok\n\nordinary\n");
    let evil = env.md.path("", "new", "1700000001.M1P1.evil");
    symlink(&secret, &evil).unwrap();
    if is_root() {
        // The mailbox owner made it, not root.
        std::os::unix::fs::lchown(&evil, Some(65534), Some(65534)).unwrap();
    }
    let r = scan_existing_with_content(&env).ok();
    assert_no_secret("stdout", &r.stdout);
    assert_no_secret("stderr", &r.stderr);
    let evs = r.events();
    let news = of(&evs, "MessageNew");
    assert_eq!(news.len(), 1, "only the ordinary message: {evs:?}");
    assert!(s(news[0], "messageContent").contains("ordinary"));
    assert!(
        r.stderr.contains(&*evil.to_string_lossy()) && r.stderr.contains("symbolic link"),
        "a warning names the link: {}",
        r.stderr
    );
}

#[test]
fn a_link_to_a_root_only_file_is_never_read_by_watch() {
    let env = Env::new();
    let secret = secret(&env);
    let cfg = content_config(&env);
    let _q = QUEUE.read().unwrap();
    let w = env.spawn(&["--config", cfg.to_str().unwrap()]).start();
    let evil = env.md.path("", "new", "1700000001.M1P1.evil");
    symlink(&secret, &evil).unwrap();
    if is_root() {
        std::os::unix::fs::lchown(&evil, Some(65534), Some(65534)).unwrap();
    }
    // Also a link made in tmp/ and moved in, as a delivery would.
    let moved = env.md.root.join("tmp/1700000003.M3P3.evil");
    symlink("/dev/zero", &moved).unwrap();
    fs::rename(&moved, env.md.path("", "new", "1700000003.M3P3.evil")).unwrap();
    env.md
        .deliver("", "1700000002.M2P2.host", b"Subject: ok\n\nordinary\n");
    w.wait_for("the ordinary message", WAIT, |e| {
        !of(e, "MessageNew").is_empty()
    });
    let stderr = w.stderr();
    let evs = w.stop();
    assert_eq!(kinds(&evs), ["MessageNew"], "{evs:?}");
    assert!(s(&evs[0], "messageContent").contains("ordinary"));
    for e in &evs {
        assert_no_secret("an event", &e.to_string());
    }
    assert_no_secret("stderr", &stderr);
    assert!(stderr.contains("1700000001.M1P1.evil"), "{stderr}");
}

#[test]
fn linked_new_cur_and_folders_are_never_listed() {
    let env = Env::new();
    // A root-only directory with a message-like file in it.
    let private = env.tmp.path().join("private");
    fs::create_dir_all(private.join("cur")).unwrap();
    fs::write(
        private.join("cur/1600000000.M9P9.private:2,S"),
        format!("Subject: {SECRET}\n\nx\n"),
    )
    .unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    // .Evil's cur/ is a link; .Linked is a link to a whole folder.
    env.md.folder(".Evil");
    fs::remove_dir(env.md.dir(".Evil").join("cur")).unwrap();
    symlink(private.join("cur"), env.md.dir(".Evil").join("cur")).unwrap();
    symlink(&private, env.md.dir(".Linked")).unwrap();
    env.md
        .deliver("", "1700000002.M2P2.host", b"Subject: ok\n\nordinary\n");
    let r = scan_existing_with_content(&env).ok();
    assert_no_secret("stdout", &r.stdout);
    let evs = r.events();
    let messages: Vec<&Value> = evs
        .iter()
        .filter(|e| s(e, "event").starts_with("Message"))
        .collect();
    assert_eq!(messages.len(), 1, "{evs:?}");
    assert!(s(messages[0], "uri").contains("/INBOX;"));
    assert!(
        !r.stdout.contains("Linked"),
        "a linked folder is no mailbox: {}",
        r.stdout
    );
    assert!(r.stderr.contains(".Evil/cur"), "{}", r.stderr);
    assert!(r.stderr.contains(".Linked"), "{}", r.stderr);

    // A Maildir root that is itself a link is refused too.
    let env2 = Env::new();
    fs::remove_dir_all(&env2.md.root).unwrap();
    symlink(&env.md.root, &env2.md.root).unwrap();
    let r = scan(&env2, &[OsStr::new("--emit-existing")]);
    assert!(r.events().is_empty(), "{}", r.stdout);
    assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
}

// ------------------------------------------------------------ non-files

#[test]
fn a_fifo_never_blocks_scan_or_watch() {
    let env = Env::new();
    env.md
        .deliver("", "1700000002.M2P2.host", b"Subject: ok\n\nordinary\n");
    // No W= in the name: sizing it would mean opening it.
    let fifo = env.md.path("", "new", "1700000001.M1P1.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let r = scan(&env, &[OsStr::new("--emit-existing")]).ok();
    let evs = r.events();
    assert_eq!(kinds(&evs), ["MessageNew"], "{evs:?}");
    assert!(
        r.stderr.contains("1700000001.M1P1.fifo") && r.stderr.contains("FIFO"),
        "{}",
        r.stderr
    );

    // Live: a FIFO arriving must not stop the other users' events, and
    // SIGTERM still ends the watcher.
    let _q = QUEUE.read().unwrap();
    let w = env.spawn(&[]).start();
    let fifo2 = env.md.path("", "new", "1700000003.M3P3.fifo");
    let c = std::ffi::CString::new(fifo2.to_str().unwrap()).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    env.md
        .deliver("", "1700000004.M4P4.host", b"Subject: ok\n\nsecond\n");
    w.wait_for("the second message", WAIT, |e| {
        !of(e, "MessageNew").is_empty()
    });
    let evs = w.stop();
    assert_eq!(kinds(&evs), ["MessageNew"], "{evs:?}");
}

#[test]
fn a_sparse_gigabyte_with_content_on_costs_bounded_memory() {
    let env = Env::new();
    env.md
        .deliver("", "1700000002.M2P2.host", b"Subject: ok\n\nordinary\n");
    // 1 GiB that costs no disk: a user's free way to make us read.
    let big = env.md.root.join("tmp/1700000001.M1P1.big");
    fs::File::create(&big).unwrap().set_len(1 << 30).unwrap();
    fs::rename(&big, env.md.path("", "new", "1700000001.M1P1.big")).unwrap();
    let r = scan_existing_with_content(&env).ok();
    let evs = r.events();
    let news = of(&evs, "MessageNew");
    assert_eq!(news.len(), 2, "{evs:?}");
    let big_ev = news
        .iter()
        .find(|e| e.get("messageContent").is_none())
        .expect("the big message goes out without its content");
    assert!(big_ev.get("bodyStructure").is_none());
    assert_eq!(n(big_ev, "messageSize"), 1 << 30, "the size from fstat");
    assert!(news.iter().any(|e| {
        e.get("messageContent")
            .and_then(Value::as_str)
            .is_some_and(|c| c.contains("ordinary"))
    }));
    assert!(r.stderr.contains("read limit"), "{}", r.stderr);
    assert!(
        r.max_rss_kib < 100 * 1024,
        "peak RSS {} KiB for a 1 GiB sparse file",
        r.max_rss_kib
    );

    // The same live: the watcher's peak stays bounded too.
    let env = Env::new();
    let cfg = content_config(&env);
    let _q = QUEUE.read().unwrap();
    let w = env.spawn(&["--config", cfg.to_str().unwrap()]).start();
    let big = env.md.root.join("tmp/1700000005.M5P5.big");
    fs::File::create(&big).unwrap().set_len(1 << 30).unwrap();
    fs::rename(&big, env.md.path("", "new", "1700000005.M5P5.big")).unwrap();
    env.md
        .deliver("", "1700000006.M6P6.host", b"Subject: ok\n\nordinary\n");
    w.wait_for("both messages", WAIT, |e| of(e, "MessageNew").len() >= 2);
    let hwm = peak_rss_kib(w.pid());
    let evs = w.stop();
    assert_eq!(of(&evs, "MessageNew").len(), 2);
    assert!(hwm < 150 * 1024, "watch peak RSS {hwm} KiB");
}

/// VmHWM of a running process, in KiB.
fn peak_rss_kib(pid: i32) -> i64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_message_the_watcher_may_not_read_gets_a_warning() {
    let env = Env::new();
    // As root, make the scan run as nobody over a store it may list but where one
    // message is root's and 0600.
    let tmp = env.tmp.path();
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o755)).unwrap();
    env.md
        .deliver("", "1700000002.M2P2.host", b"Subject: ok\n\nordinary\n");
    let locked = env.md.path("", "new", "1700000001.M1P1.locked");
    fs::write(&locked, "Subject: no\n\nno\n").unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    let mut cmd = if is_root() {
        let bin = tmp.join("maildir-events");
        fs::copy(BIN, &bin).unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(&env.state).unwrap();
        std::os::unix::fs::chown(&env.state, Some(65534), Some(65534)).unwrap();
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin);
        c
    } else {
        Command::new(BIN)
    };
    cmd.args(scan_args(&env, &[OsStr::new("--emit-existing")]));
    let r = run_with(&mut cmd, LIMIT).ok();
    let evs = r.events();
    assert_eq!(of(&evs, "MessageNew").len(), 2, "{evs:?}");
    assert!(
        r.stderr.contains("1700000001.M1P1.locked"),
        "the unreadable file is named: {}",
        r.stderr
    );
}

// ------------------------------------------------------------ overflow

/// Restores an inotify sysctl when dropped.
struct Sysctl {
    path: &'static str,
    old: String,
}

impl Sysctl {
    fn set(path: &'static str, value: &str) -> Option<Sysctl> {
        let old = fs::read_to_string(path).ok()?;
        fs::write(path, value).ok()?;
        Some(Sysctl { path, old })
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = fs::write(self.path, self.old.trim());
    }
}

#[test]
fn an_overflow_never_turns_renames_into_expunge_and_append() {
    const N: usize = 3000;
    let env = Env::new();
    // A Dovecot folder: its own UIDs, as the probe had.
    let mut uidlist = String::from("3 V1700000000 N3001 G0123456789abcdef0123456789abcdef\n");
    for i in 1..=N {
        let base = format!("1700000000.M{i}P1.host");
        env.md
            .put("", "cur", format!("{base},S=100:2,"), b"Subject: x\n\nx\n");
        uidlist.push_str(&format!("{i} :{base},S=100\n"));
    }
    env.md.write("", "dovecot-uidlist", &uidlist);
    fs::create_dir_all(&env.state).unwrap();
    // Baseline.
    scan(&env, &[]).ok();

    // A tiny queue for this watcher only (the kernel reads the limit when
    // the instance is made); restored as soon as it is running. 255 is
    // odd, so the queue fills between the two halves of a rename: the
    // kernel keeps a MOVED_FROM and drops its MOVED_TO, as under load.
    let (w, shrunk) = {
        let _q = QUEUE.write().unwrap();
        let small = Sysctl::set("/proc/sys/fs/inotify/max_queued_events", "255");
        if small.is_none() {
            let _ = writeln!(
                std::io::stderr(),
                "NOTE an_overflow_never_turns_renames_into_expunge_and_append: cannot shrink \
                 fs.inotify.max_queued_events here (not root); no overflow is forced"
            );
        }
        (
            env.spawn(&["--rescan-interval", "0"]).start(),
            small.is_some(),
        )
    };
    // The watcher is stopped while a client marks everything read, so the
    // kernel's queue overflows for certain.
    // SAFETY: signals to our own child.
    unsafe { libc::kill(w.pid(), libc::SIGSTOP) };
    let cur = env.md.root.join("cur");
    for i in 1..=N {
        let base = format!("1700000000.M{i}P1.host,S=100");
        fs::rename(
            cur.join(format!("{base}:2,")),
            cur.join(format!("{base}:2,S")),
        )
        .unwrap();
    }
    unsafe { libc::kill(w.pid(), libc::SIGCONT) };
    let want: std::collections::BTreeSet<u32> = (1..=N as u32).collect();
    let read = |evs: &[Value]| -> std::collections::BTreeSet<u32> {
        of(evs, "MessageRead")
            .iter()
            .flat_map(|e| expand(s(e, "uidset")))
            .collect()
    };
    w.wait_for("every message read", Duration::from_secs(60), |e| {
        read(e) == want
    });
    let stderr = w.stderr();
    let evs = w.stop();
    let wrong: Vec<&Value> = evs
        .iter()
        .filter(|e| s(e, "event") != "MessageRead")
        .collect();
    assert!(
        wrong.is_empty(),
        "only MessageRead, got {} others, first: {:?}",
        wrong.len(),
        wrong.first()
    );
    assert_eq!(read(&evs), want);
    if shrunk {
        assert!(
            stderr.contains("events were lost"),
            "an overflow happened with a 256-event queue and is logged: {stderr}"
        );
    }
}

/// `1:3,7` → 1, 2, 3, 7.
fn expand(set: &str) -> Vec<u32> {
    set.split(',')
        .flat_map(|r| {
            let (a, b) = r.split_once(':').unwrap_or((r, r));
            let (a, b): (u32, u32) = (a.parse().unwrap(), b.parse().unwrap());
            a.min(b)..=a.max(b)
        })
        .collect()
}

// ------------------------------------------------------------ state

fn state_file(env: &Env) -> PathBuf {
    env.state.join("state.sqlite3")
}

/// A state with one user and some messages, then `damage` done to it:
/// the next scan must exit 65 and say so, never start over.
fn damaged(damage: impl FnOnce(&Path), says: &[&str]) {
    let env = Env::new();
    env.md.folder(".Lists");
    for i in 0..50 {
        env.md.put(
            ".Lists",
            "cur",
            format!("1700000000.M{i}P1.host:2,S"),
            b"x\n",
        );
    }
    scan(&env, &[]).ok();
    env.md.deliver("", "1700000099.M1P1.host", b"x\n");
    damage(&state_file(&env));
    let r = scan(&env, &[]);
    assert_eq!(
        r.code,
        Some(65),
        "damaged state is exit 65\nstdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    assert!(r.stdout.is_empty(), "nothing reported from a damaged state");
    assert!(
        says.iter().any(|w| r.stderr.contains(w)),
        "{says:?} in: {}",
        r.stderr
    );
    assert!(r.stderr.contains("away"), "says what to do: {}", r.stderr);
    // And it stays so: nothing was replaced.
    let again = scan(&env, &[]);
    assert_eq!(again.code, Some(65));
}

#[test]
fn a_truncated_state_is_exit_65() {
    damaged(
        |p| {
            fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(p)
                .unwrap();
        },
        &["is empty"],
    );
}

#[test]
fn random_bytes_in_an_index_page_are_exit_65() {
    damaged(
        |p| {
            let conn = rusqlite::Connection::open(p).unwrap();
            let page: i64 = conn
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .unwrap();
            let root: i64 = conn
                .query_row(
                    "SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_folders_1'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            drop(conn);
            let mut bytes = vec![0u8; page as usize];
            let mut x: u64 = 0x9e3779b97f4a7c15;
            for b in bytes.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let mut f = fs::OpenOptions::new().write(true).open(p).unwrap();
            std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(((root - 1) * page) as u64))
                .unwrap();
            f.write_all(&bytes).unwrap();
        },
        &["malformed", "is damaged"],
    );
}

#[test]
fn a_foreign_or_empty_database_is_exit_65() {
    damaged(
        |p| {
            fs::remove_file(p).unwrap();
            let c = rusqlite::Connection::open(p).unwrap();
            c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
                .unwrap();
        },
        &["other program"],
    );
    damaged(
        |p| {
            fs::remove_file(p).unwrap();
            let c = rusqlite::Connection::open(p).unwrap();
            c.execute_batch("PRAGMA user_version = 0; VACUUM;").unwrap();
            // SQLite writes a header only with some content.
            c.execute_batch("CREATE TABLE t(x); DROP TABLE t; VACUUM;")
                .unwrap();
        },
        &["holds no maildir-events state", "is empty"],
    );
}

#[test]
fn the_state_is_private_whatever_the_umask() {
    let env = Env::new();
    env.md.deliver("", "1700000001.M1P1.host", b"x\n");
    let mut cmd = Command::new(BIN);
    cmd.args(scan_args(&env, &[]));
    // SAFETY: umask in the child before exec; async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    run_with(&mut cmd, LIMIT).ok();
    let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o777;
    assert_eq!(mode(&env.state), 0o700, "state directory");
    assert_eq!(mode(&state_file(&env)), 0o600, "database");
    for entry in fs::read_dir(&env.state).unwrap() {
        let p = entry.unwrap().path();
        assert_eq!(mode(&p) & 0o077, 0, "{} is private", p.display());
    }
}

// ------------------------------------------------------------ control files

#[test]
fn subscriptions_edited_in_place_are_seen_live() {
    let env = Env::new();
    env.md.folder(".Lists");
    env.md.folder(".Work");
    env.md.write("", "subscriptions", "V\t2\n\nINBOX\n");
    let _q = QUEUE.read().unwrap();
    let w = env.spawn(&["--rescan-interval", "0"]).start();
    // Truncate and write again, same inode, as an editor or a script would.
    let p = env.md.root.join("subscriptions");
    let ino = fs::metadata(&p).unwrap().ino();
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        f.write_all(b"V\t2\n\nINBOX\nLists\n").unwrap();
    }
    w.wait_for("Lists subscribed", WAIT, |e| {
        of(e, "MailboxSubscribe")
            .iter()
            .any(|e| s(e, "mailboxID").contains("/Lists;") || s(e, "mailboxID").contains("/Lists"))
    });
    // Appended to.
    {
        let mut f = fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"Work\n").unwrap();
    }
    w.wait_for("Work subscribed", WAIT, |e| {
        of(e, "MailboxSubscribe").len() >= 2
    });
    assert_eq!(fs::metadata(&p).unwrap().ino(), ino, "edited in place");
    let evs = w.stop();
    assert!(of(&evs, "MailboxUnSubscribe").is_empty(), "{evs:?}");
}

#[test]
fn a_half_written_subscriptions_file_is_not_trusted_by_scan() {
    let env = Env::new();
    env.md.folder(".Lists");
    env.md.write("", "subscriptions", "V\t2\n\nINBOX\nLists\n");
    scan(&env, &[]).ok();
    // A writer truncates the file, and finishes writing 300 ms later,
    // while the scan runs.
    let p = env.md.root.join("subscriptions");
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    let writer = {
        let p = p.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            let mut f = fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.write_all(b"V\t2\n\nINBOX\nLists\n").unwrap();
        })
    };
    let r = scan(&env, &[]).ok();
    writer.join().unwrap();
    let evs = r.events();
    assert!(
        of(&evs, "MailboxUnSubscribe").is_empty(),
        "the truncated file was trusted: {evs:?}"
    );
}

#[test]
fn no_event_names_a_link_or_fifo_in_any_folder() {
    // Every kind of odd entry at once, in INBOX and a folder, beside one
    // ordinary message each: exactly two MessageNew.
    let env = Env::new();
    env.md.folder(".Sent");
    for (i, folder) in ["", ".Sent"].into_iter().enumerate() {
        let dir = env.md.dir(folder);
        symlink("/etc/passwd", dir.join("new/1700000001.M1P1.l1")).unwrap();
        symlink("/dev/zero", dir.join("cur/1700000002.M1P1.l2:2,S")).unwrap();
        symlink("/nonexistent", dir.join("cur/1700000003.M1P1.l3:2,")).unwrap();
        let c =
            std::ffi::CString::new(dir.join("new/1700000004.M1P1.f").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let sock =
            std::os::unix::net::UnixListener::bind(dir.join("new/1700000005.M1P1.s")).unwrap();
        std::mem::forget(sock);
        env.md.deliver(
            folder,
            format!("170000000{i}.M9P9.host"),
            b"Subject: ok\n\nx\n",
        );
    }
    let r = scan(&env, &[OsStr::new("--emit-existing")]).ok();
    let evs = r.events();
    let news = of(&evs, "MessageNew");
    assert_eq!(news.len(), 2, "{}", r.stdout);
    let uids: Vec<u32> = news.iter().map(|e| uid(e)).collect();
    assert_eq!(
        uids,
        [1, 1],
        "{:?}",
        news.iter().map(|e| s(e, "uri")).collect::<Vec<_>>()
    );
    // One warning line per directory, not one per entry.
    let lines = r
        .stderr
        .lines()
        .filter(|l| l.contains("not a message file"))
        .count();
    assert!((2..=4).contains(&lines), "{lines} lines:\n{}", r.stderr);
}

// ------------------------------------------------------------ bad control data

#[test]
fn duplicate_and_out_of_range_uids_never_give_two_messages_one_uid() {
    let env = Env::new();
    for b in ["a", "b", "c", "d"] {
        env.md
            .put("", "cur", format!("1700000000.M{b}P1.host:2,S"), b"x\n");
    }
    env.md.write(
        "",
        "dovecot-uidlist",
        "3 V1700000000 N9\n1 :1700000000.MaP1.host\n1 :1700000000.MbP1.host\n\
         4294967296 :1700000000.McP1.host\n5 :1700000000.MdP1.host\n",
    );
    let r = scan(
        &env,
        &[
            OsStr::new("--emit-existing"),
            OsStr::new("--uid-wait-ms"),
            OsStr::new("0"),
        ],
    )
    .ok();
    let evs = r.events();
    let arrived: Vec<&Value> = evs
        .iter()
        .filter(|e| matches!(s(e, "event"), "MessageNew" | "MessageAppend"))
        .collect();
    assert_eq!(arrived.len(), 4, "every message is reported: {}", r.stdout);
    let mut uids: Vec<u32> = arrived
        .iter()
        .filter(|e| e.get("vnd.maildir.uidPending").is_none())
        .map(|e| uid(e))
        .collect();
    let n_named = uids.len();
    uids.sort();
    uids.dedup();
    assert_eq!(
        uids.len(),
        n_named,
        "two messages with one UID: {}",
        r.stdout
    );
    assert_eq!(uids, [1, 5], "{}", r.stdout);
    let lines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("dovecot-uidlist"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one warning line for the file: {}",
        r.stderr
    );
    assert!(lines[0].contains("2 records ignored"), "{}", lines[0]);
}

#[test]
fn invalid_folder_names_are_one_warning_and_no_events() {
    let env = Env::new();
    for f in [".a..b", ".a.", "..x"] {
        env.md.folder(f);
        env.md.put(f, "cur", "1700000001.M1P1.host:2,S", b"x\n");
    }
    env.md.folder(".Good");
    env.md
        .put(".Good", "cur", "1700000002.M1P1.host:2,S", b"x\n");
    let r = scan(&env, &[OsStr::new("--emit-existing")]).ok();
    let evs = r.events();
    let mailboxes: Vec<&str> = evs.iter().map(|e| s(e, "mailboxID")).collect();
    assert!(
        mailboxes
            .iter()
            .all(|m| m.contains("/Good;") || m.contains("/INBOX;")),
        "{mailboxes:?}"
    );
    assert_eq!(of(&evs, "MessageAppend").len(), 1, "{}", r.stdout);
    let lines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("not mailboxes"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert!(
        lines[0].contains("3 directories") && lines[0].contains(".a..b"),
        "{}",
        lines[0]
    );
}

#[test]
fn random_bytes_in_subscriptions_are_no_subscriptions_and_few_lines() {
    let env = Env::new();
    env.md.folder(".Lists");
    env.md.write("", "subscriptions", "V\t2\n\nINBOX\nLists\n");
    fs::create_dir_all(&env.state).unwrap();
    scan(&env, &[]).ok();
    let mut x: u64 = 0x2545f4914f6cdd1d;
    let mut noise = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    // Over the read cap, and under it.
    for len in [10 << 20, 100 << 10] {
        fs::write(env.md.root.join("subscriptions"), noise(len)).unwrap();
        let r = scan(&env, &[OsStr::new("--uid-wait-ms"), OsStr::new("0")]).ok();
        let evs = r.events();
        assert!(
            evs.iter().all(|e| !s(e, "event").contains("Subscribe")),
            "no junk (un)subscriptions from {len} random bytes: {}",
            r.stdout
        );
        assert!(
            r.stderr.lines().count() <= 3,
            "{} log lines for {len} random bytes:\n{}",
            r.stderr.lines().count(),
            r.stderr
        );
        assert!(r.stderr.contains("subscriptions"), "{}", r.stderr);
    }
    // A good file again: nothing changed, nothing to report.
    env.md.write("", "subscriptions", "V\t2\n\nINBOX\nLists\n");
    let r = scan(&env, &[]).ok();
    assert!(r.events().is_empty(), "{}", r.stdout);
}
