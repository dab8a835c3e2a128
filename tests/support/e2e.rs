//! Helpers for the end-to-end delivery tests (`tests/delivery.rs`): a
//! multi-user Maildir store changed by the test, which records what it did
//! as the ground truth of events; one-shot commands of the real binary (a
//! running `watch` is [`super::live::Watch`]); a `nats-server` child; and a
//! tiny_http webhook receiver that checks signatures.
//!
//! Nothing here asserts speed: every wait is a bounded poll.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use tempfile::TempDir;

pub use super::run::{BIN, Run, SERVER};
/// How long expected events may take to arrive at a sink.
pub const WAIT: Duration = Duration::from_secs(30);

// ------------------------------------------------------------ polling

/// Polls `f` until it gives `Some`, for at most `timeout`; then panics with
/// `what` and whatever `explain` says about the state.
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
    explain: impl Fn() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!(
                "timed out after {timeout:?} waiting for: {what}\n{}",
                explain()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

pub use super::live::tail;

// ------------------------------------------------------------ events

/// What an event says about one message or mailbox: the ground truth is a
/// multiset of these (events with a `uidset` count once per UID).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub event: String,
    pub user: String,
    pub mailbox: String,
    pub uid: Option<u32>,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.event, self.user, self.mailbox)?;
        if let Some(u) = self.uid {
            write!(f, " uid {u}")?;
        }
        Ok(())
    }
}

pub fn str_of<'a>(ev: &'a Value, key: &str) -> &'a str {
    ev[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key:?} in {ev}"))
}

pub fn seq_of(ev: &Value) -> u64 {
    ev["vnd.maildir.seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no vnd.maildir.seq in {ev}"))
}

pub fn id_of(ev: &Value) -> String {
    str_of(ev, "vnd.maildir.eventId").to_string()
}

/// The mailbox name of a URL `imap://USER@SERVER/NAME;UIDVALIDITY=…`.
pub fn mailbox_of(url: &str) -> String {
    let at = url
        .find(&format!("@{SERVER}/"))
        .unwrap_or_else(|| panic!("not a URL of {SERVER}: {url}"));
    let rest = &url[at + SERVER.len() + 2..];
    rest.split(";UIDVALIDITY=").next().unwrap().to_string()
}

/// Expands an IMAP set (`1:3,7`).
pub fn uids(set: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in set.split(',') {
        match part.split_once(':') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().unwrap(), b.parse().unwrap());
                out.extend(a.min(b)..=a.max(b));
            }
            None => out.push(part.parse().unwrap_or_else(|_| panic!("bad uidset {set}"))),
        }
    }
    out
}

/// The keys one event stands for.
pub fn keys_of(ev: &Value) -> Vec<Key> {
    let event = str_of(ev, "event").to_string();
    let user = str_of(ev, "user").to_string();
    let mailbox = mailbox_of(str_of(ev, "mailboxID"));
    let key = |uid| Key {
        event: event.clone(),
        user: user.clone(),
        mailbox: mailbox.clone(),
        uid,
    };
    if let Some(set) = ev.get("uidset").and_then(Value::as_str) {
        return uids(set).into_iter().map(|u| key(Some(u))).collect();
    }
    let uri = str_of(ev, "uri");
    match uri.rsplit_once("/;UID=") {
        Some((_, u)) => vec![key(Some(u.parse().unwrap()))],
        None => vec![key(None)],
    }
}

/// Counts per key.
pub fn tally<'a>(keys: impl IntoIterator<Item = &'a Key>) -> BTreeMap<Key, usize> {
    let mut m = BTreeMap::new();
    for k in keys {
        *m.entry(k.clone()).or_insert(0) += 1;
    }
    m
}

/// The keys of distinct events (first occurrence of each event id).
pub fn distinct_keys(evs: &[Value]) -> Vec<Key> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for e in evs {
        if seen.insert(id_of(e)) {
            out.extend(keys_of(e));
        }
    }
    out
}

/// Whether the events (deduplicated by id) hold at least every key of
/// `want`, as many times.
pub fn covers(evs: &[Value], want: &[Key]) -> bool {
    let got = tally(&distinct_keys(evs));
    tally(want)
        .iter()
        .all(|(k, n)| got.get(k).copied().unwrap_or(0) >= *n)
}

/// Missing and unexpected keys, for messages.
pub fn diff(evs: &[Value], want: &[Key]) -> String {
    let got = tally(&distinct_keys(evs));
    let want = tally(want);
    let mut out = String::new();
    for (k, n) in &want {
        let g = got.get(k).copied().unwrap_or(0);
        if g < *n {
            out.push_str(&format!("  missing: {k} (want {n}, got {g})\n"));
        }
    }
    for (k, g) in &got {
        let n = want.get(k).copied().unwrap_or(0);
        if *g > n {
            out.push_str(&format!("  unexpected: {k} (want {n}, got {g})\n"));
        }
    }
    if out.is_empty() {
        out.push_str("  (same keys)\n");
    }
    out
}

pub use super::live::{short, show_tail as show};

/// Parses JSON Lines, panicking on a line that is no JSON object.
pub fn parse_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
            assert!(v.is_object(), "not a JSON object: {l}");
            v
        })
        .collect()
}

// ------------------------------------------------------------ the store

/// Where a message file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// `new/BASE`
    New,
    /// `cur/BASE:2,S`
    Seen,
    /// `cur/BASE:2,FS`
    Flagged,
    Gone,
}

#[derive(Clone, Debug)]
struct Msg {
    base: String,
    uid: u32,
    at: At,
}

#[derive(Default)]
struct Folder {
    msgs: Vec<Msg>,
    next_uid: u32,
}

/// Several users' Maildirs under `ROOT/{user}/Maildir`, changed the way
/// Postfix and a mail client change them. Every change is recorded as the
/// event(s) it must produce ([`Store::truth`]).
///
/// UIDs: no `dovecot-uidlist` is written, so the watcher numbers messages
/// itself, in Dovecot's order (seconds, then microseconds of the base
/// name); base names here increase with every delivery, so within a folder
/// the n-th delivered message is UID n.
pub struct Store {
    pub root: PathBuf,
    pub users: Vec<String>,
    folders: BTreeMap<(String, String), Folder>,
    counter: u64,
    truth: Vec<Key>,
}

impl Store {
    /// Creates each user's INBOX (`cur/ new/ tmp/`).
    pub fn new(root: &Path, users: &[&str]) -> Store {
        let mut s = Store {
            root: root.to_path_buf(),
            users: users.iter().map(|u| u.to_string()).collect(),
            folders: BTreeMap::new(),
            counter: 0,
            truth: Vec::new(),
        };
        for u in users {
            s.mkdirs(u, "INBOX");
            s.folders
                .insert((u.to_string(), "INBOX".into()), Folder::default());
        }
        s
    }

    /// The `--store` template.
    pub fn template(&self) -> String {
        format!("{}/{{user}}/Maildir", self.root.display())
    }

    /// Every event the changes so far must have produced.
    pub fn truth(&self) -> Vec<Key> {
        self.truth.clone()
    }

    fn dir(&self, user: &str, mailbox: &str) -> PathBuf {
        let md = self.root.join(user).join("Maildir");
        if mailbox == "INBOX" {
            md
        } else {
            md.join(format!(".{mailbox}"))
        }
    }

    fn mkdirs(&self, user: &str, mailbox: &str) {
        let dir = self.dir(user, mailbox);
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        if mailbox != "INBOX" {
            fs::write(dir.join("maildirfolder"), b"").unwrap();
        }
    }

    fn record(&mut self, event: &str, user: &str, mailbox: &str, uid: Option<u32>) {
        self.truth.push(Key {
            event: event.into(),
            user: user.into(),
            mailbox: mailbox.into(),
            uid,
        });
    }

    /// A new folder, as Dovecot creates it: MailboxCreate.
    pub fn create_folder(&mut self, user: &str, mailbox: &str) {
        self.mkdirs(user, mailbox);
        self.folders
            .insert((user.into(), mailbox.into()), Folder::default());
        self.record("MailboxCreate", user, mailbox, None);
    }

    /// A delivery (write in `tmp/`, link into `new/`, unlink): MessageNew.
    /// Returns the UID it must get.
    pub fn deliver(&mut self, user: &str, mailbox: &str) -> u32 {
        self.counter += 1;
        let base = format!("1700000000.M{}P4242.e2e", self.counter);
        let dir = self.dir(user, mailbox);
        let body = format!(
            "From: sender@example.org\nTo: {user}@example.org\nSubject: message {}\n\nhello\n",
            self.counter
        );
        let tmp = dir.join("tmp").join(&base);
        fs::write(&tmp, body).unwrap();
        fs::hard_link(&tmp, dir.join("new").join(&base)).unwrap();
        fs::remove_file(&tmp).unwrap();
        let f = self
            .folders
            .get_mut(&(user.to_string(), mailbox.to_string()))
            .unwrap_or_else(|| panic!("no folder {mailbox} of {user}"));
        f.next_uid += 1;
        let uid = f.next_uid;
        f.msgs.push(Msg {
            base,
            uid,
            at: At::New,
        });
        self.record("MessageNew", user, mailbox, Some(uid));
        uid
    }

    fn path(&self, user: &str, mailbox: &str, m: &Msg) -> PathBuf {
        let dir = self.dir(user, mailbox);
        match m.at {
            At::New => dir.join("new").join(&m.base),
            At::Seen => dir.join("cur").join(format!("{}:2,S", m.base)),
            At::Flagged => dir.join("cur").join(format!("{}:2,FS", m.base)),
            At::Gone => panic!("message {} is gone", m.base),
        }
    }

    fn msg(&self, user: &str, mailbox: &str, uid: u32) -> Msg {
        self.folders[&(user.to_string(), mailbox.to_string())]
            .msgs
            .iter()
            .find(|m| m.uid == uid)
            .unwrap_or_else(|| panic!("no UID {uid} in {mailbox} of {user}"))
            .clone()
    }

    fn set_at(&mut self, user: &str, mailbox: &str, uid: u32, at: At) {
        let f = self
            .folders
            .get_mut(&(user.to_string(), mailbox.to_string()))
            .unwrap();
        f.msgs.iter_mut().find(|m| m.uid == uid).unwrap().at = at;
    }

    /// A client reads a new message: `new/B` → `cur/B:2,S`: MessageRead.
    pub fn read(&mut self, user: &str, mailbox: &str, uid: u32) {
        let m = self.msg(user, mailbox, uid);
        assert_eq!(m.at, At::New, "read wants a message in new/");
        let from = self.path(user, mailbox, &m);
        let to = self.path(user, mailbox, &Msg { at: At::Seen, ..m });
        fs::rename(from, to).unwrap();
        self.set_at(user, mailbox, uid, At::Seen);
        self.record("MessageRead", user, mailbox, Some(uid));
    }

    /// STORE +FLAGS \Flagged on a read message: FlagsSet.
    pub fn flag(&mut self, user: &str, mailbox: &str, uid: u32) {
        let m = self.msg(user, mailbox, uid);
        assert_eq!(m.at, At::Seen, "flag wants a read message");
        let from = self.path(user, mailbox, &m);
        let to = self.path(
            user,
            mailbox,
            &Msg {
                at: At::Flagged,
                ..m
            },
        );
        fs::rename(from, to).unwrap();
        self.set_at(user, mailbox, uid, At::Flagged);
        self.record("FlagsSet", user, mailbox, Some(uid));
    }

    /// An expunge (unlink): MessageExpunge.
    pub fn expunge(&mut self, user: &str, mailbox: &str, uid: u32) {
        let m = self.msg(user, mailbox, uid);
        fs::remove_file(self.path(user, mailbox, &m)).unwrap();
        self.set_at(user, mailbox, uid, At::Gone);
        self.record("MessageExpunge", user, mailbox, Some(uid));
    }

    /// One step of the standard workload. Within a step every message
    /// changes at most once, and a step only touches what earlier steps
    /// made, so what a restarted watcher's catch-up reports (net changes)
    /// is exactly what the live watcher would: the ground truth holds
    /// however a step is cut by a crash, provided the previous step was
    /// delivered. `mid` runs once, after the first user's part.
    pub fn step(&mut self, n: usize, mid: &mut dyn FnMut()) {
        let users = self.users.clone();
        for (i, u) in users.iter().enumerate() {
            if i == 1 {
                mid();
            }
            match n {
                0 => {
                    for _ in 0..6 {
                        self.deliver(u, "INBOX");
                    }
                }
                1 => {
                    self.create_folder(u, "Work");
                    for _ in 0..3 {
                        self.deliver(u, "Work");
                    }
                    for uid in 1..=3 {
                        self.read(u, "INBOX", uid);
                    }
                    self.deliver(u, "INBOX");
                }
                2 => {
                    self.flag(u, "INBOX", 1);
                    self.flag(u, "INBOX", 2);
                    self.expunge(u, "INBOX", 3);
                    self.read(u, "Work", 1);
                    self.read(u, "INBOX", 4);
                    self.deliver(u, "INBOX");
                    self.deliver(u, "Work");
                }
                3 => {
                    self.expunge(u, "INBOX", 1);
                    self.expunge(u, "Work", 2);
                    self.flag(u, "Work", 1);
                    for _ in 0..3 {
                        self.deliver(u, "INBOX");
                    }
                }
                _ => panic!("no step {n}"),
            }
        }
        if users.len() < 2 {
            mid();
        }
    }

    /// The number of steps of [`Store::step`].
    pub const STEPS: usize = 4;
}

// ------------------------------------------------------------ the binary

/// Runs `maildir-events ARGS…` to its end.
pub fn run(args: Vec<OsString>, log: &str) -> Run {
    let mut c = Command::new(BIN);
    c.args(&args)
        .env("MAILDIR_EVENTS_LOG", log)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("STATE_DIRECTORY")
        .stdin(Stdio::null());
    Run::of(c)
}

/// `--config CONFIG COMMAND --state STATE --server-name … --store TEMPLATE
/// EXTRA…`: a command over a multi-user store and its configuration file.
pub fn store_args(
    config: &Path,
    command: &str,
    state: &Path,
    template: &str,
    extra: &[&str],
) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![
        "--config".into(),
        config.into(),
        command.into(),
        "--state".into(),
        state.into(),
        "--server-name".into(),
        SERVER.into(),
        "--store".into(),
        template.into(),
    ];
    v.extend(extra.iter().map(OsString::from));
    v
}

/// `OsString`s from anything path- or string-like.
#[macro_export]
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        vec![$(std::ffi::OsString::from($a)),*]
    };
}

// ------------------------------------------------------------ nats-server

pub use super::natsserver::{NatsServer, have_nats_server};

/// One message of a stream.
#[derive(Clone, Debug)]
pub struct Stored {
    pub subject: String,
    pub msg_id: String,
    pub event: Value,
}

/// The whole stream, in stream order; `None` while the server or the
/// stream is not there.
pub fn read_stream(url: &str, stream: &str) -> Option<Vec<Stored>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // A comma-separated list: any server of a cluster will do.
        let servers: Vec<async_nats::ServerAddr> = url
            .split(',')
            .map(|u| u.trim().parse().expect("a NATS URL"))
            .collect();
        let connect = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(servers);
        let client = tokio::time::timeout(Duration::from_secs(3), connect)
            .await
            .ok()?
            .ok()?;
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream(stream).await.ok()?;
        let info = stream.get_info().await.ok()?;
        let mut out = Vec::new();
        if info.state.messages == 0 {
            return Some(out);
        }
        for seq in info.state.first_sequence..=info.state.last_sequence {
            let m = stream.get_raw_message(seq).await.ok()?;
            out.push(Stored {
                subject: m.subject.to_string(),
                msg_id: m
                    .headers
                    .get("Nats-Msg-Id")
                    .map(|v| v.as_str().to_string())
                    .unwrap_or_default(),
                event: serde_json::from_slice(&m.payload).expect("a JSON payload"),
            });
        }
        assert_eq!(
            out.len() as u64,
            info.state.messages,
            "no gaps in the stream"
        );
        Some(out)
    })
}

// ------------------------------------------------------------ webhook receiver

/// The receiver's answer to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// Wait this long before answering (longer than `read_timeout_ms`:
    /// the sender gives up, so it counts as a failure).
    pub delay: Duration,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::status(200)
    }

    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            delay: Duration::ZERO,
        }
    }
}

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Hit {
    pub key: String,
    pub signature_ok: bool,
    pub event: Value,
    pub reply: Reply,
    /// 2xx in time: the sender saw a success.
    pub delivered: bool,
}

pub type Script = dyn FnMut(usize, &Value) -> Reply + Send;

/// A tiny_http receiver on 127.0.0.1:`port` answering request n (from 0)
/// with `script(n, event)`; requests answered later than `slow` count as
/// failures.
pub struct Hook {
    hits: Arc<Mutex<Vec<Hit>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Hook {
    /// Binds now and returns once listening.
    pub fn start(port: u16, secret: &[u8], slow: Duration, mut script: Box<Script>) -> Hook {
        let hits = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        let secret = secret.to_vec();
        let (bound, listening) = mpsc::channel();
        let thread = thread::spawn(move || {
            let server = tiny_http::Server::http(("127.0.0.1", port)).expect("bind the receiver");
            let _ = bound.send(());
            let mut responders = Vec::new();
            while !s.load(Ordering::SeqCst) {
                let Ok(Some(mut req)) = server.recv_timeout(Duration::from_millis(50)) else {
                    continue;
                };
                let mut body = Vec::new();
                req.as_reader().read_to_end(&mut body).unwrap();
                let sig = req
                    .headers()
                    .iter()
                    .find(|x| x.field.equiv("X-Maildir-Events-Signature"))
                    .map(|x| x.value.as_str().to_string())
                    .unwrap_or_default();
                let key = req
                    .headers()
                    .iter()
                    .find(|x| x.field.equiv("Idempotency-Key"))
                    .map(|x| x.value.as_str().to_string())
                    .unwrap_or_default();
                let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let n = h.lock().unwrap().len();
                let reply = script(n, &event);
                h.lock().unwrap().push(Hit {
                    key,
                    signature_ok: sig == signature(&secret, &body),
                    event,
                    reply,
                    delivered: (200..300).contains(&reply.status) && reply.delay < slow,
                });
                // Answer from a thread of its own, so a slow answer does not
                // hold up the sender's retry (which would then be answered
                // after the sender gave up on it too).
                responders.push(thread::spawn(move || {
                    thread::sleep(reply.delay);
                    let _ = req.respond(
                        tiny_http::Response::from_string(format!("status {}", reply.status))
                            .with_status_code(reply.status),
                    );
                }));
            }
            for r in responders {
                let _ = r.join();
            }
        });
        listening.recv().expect("the receiver started");
        Hook {
            hits,
            stop,
            thread: Some(thread),
        }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// The events the sender saw accepted, in order.
    pub fn delivered(&self) -> Vec<Value> {
        self.hits()
            .into_iter()
            .filter(|h| h.delivered)
            .map(|h| h.event)
            .collect()
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, computed here independently.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// `GET http://ADDR/metrics`, or `None` while nobody answers.
pub fn get_metrics(addr: &str) -> Option<String> {
    let mut resp = ureq::get(&format!("http://{addr}/metrics")).call().ok()?;
    resp.body_mut().read_to_string().ok()
}

/// Polls `f` for at most `timeout`; `None` when it never gave `Some`.
pub fn poll_opt<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        thread::sleep(Duration::from_millis(50));
    }
}
