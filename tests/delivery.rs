//! End-to-end delivery through the real binary: `maildir-events watch` and
//! `scan` with a configuration file holding `[[sink]]` entries, against a
//! real `nats-server` (JetStream), a tiny_http webhook receiver and files,
//! while the test changes Maildirs of two users (deliveries tmp → new,
//! reads and flag renames in cur/, expunges, folder creates).
//!
//! The ground truth is what the workload did ([`e2e::Store::truth`]): each
//! change is the event it must produce, by type, user, mailbox and UID.
//! Sinks must end up with exactly those, each event once (by
//! `vnd.maildir.eventId`), in `vnd.maildir.seq` order.
//!
//! No timing is asserted: every wait is a bounded poll. Without
//! `nats-server` on the PATH the NATS test prints a skip line, except
//! under `CI=true`, where it fails.

mod e2e;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use e2e::{
    Hook, Key, NatsServer, Reply, SERVER, Store, WAIT, Watch, diff, free_port, have_nats_server,
    id_of, keys_of, poll, read_stream, run, seq_of, show, str_of, tail, tally,
};

const SECRET: &[u8] = b"e2e shared secret";

/// A temporary directory with two users' Maildirs, a state directory and
/// a configuration file.
struct Env {
    tmp: TempDir,
    state: PathBuf,
    config: PathBuf,
    template: String,
}

impl Env {
    fn new(users: &[&str]) -> (Env, Store) {
        let tmp = TempDir::new().unwrap();
        let store = Store::new(&tmp.path().join("mail"), users);
        let env = Env {
            template: store.template(),
            state: tmp.path().join("state"),
            config: tmp.path().join("config.toml"),
            tmp,
        };
        (env, store)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn write_config(&self, text: &str) {
        fs::write(&self.config, text).unwrap();
    }

    /// A secret file (with a trailing newline, which is not part of it).
    fn secret_file(&self) -> PathBuf {
        let p = self.path("webhook.secret");
        let mut s = SECRET.to_vec();
        s.push(b'\n');
        fs::write(&p, s).unwrap();
        p
    }

    /// `--config FILE COMMAND --state DIR --server-name … --store TEMPLATE EXTRA…`
    fn args(&self, command: &str, extra: &[&str]) -> Vec<OsString> {
        let mut v: Vec<OsString> = args![
            "--config",
            &self.config,
            command,
            "--state",
            &self.state,
            "--server-name",
            SERVER,
            "--store",
            &self.template,
        ];
        v.extend(extra.iter().map(OsString::from));
        v
    }

    fn watch(&self, extra: &[&str]) -> Watch {
        Watch::start(self.args("watch", extra))
    }

    fn scan(&self) -> e2e::Output {
        run(&self.args("scan", &[]), "info")
    }

    /// `maildir-events status --state DIR`, parsed.
    fn status(&self) -> Value {
        let out = run(&args!["status", "--state", &self.state], "warn");
        assert_eq!(out.code, Some(0), "status failed: {}", out.stderr);
        serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("status is not JSON ({e}): {}", out.stdout))
    }

    /// `maildir-events dead-letters --state DIR`, parsed.
    fn dead_letters(&self) -> Vec<Value> {
        let out = run(&args!["dead-letters", "--state", &self.state], "warn");
        assert_eq!(out.code, Some(0), "dead-letters failed: {}", out.stderr);
        e2e::parse_lines(&out.stdout)
    }
}

fn webhook_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/hook")
}

/// Every event once by id, in strictly increasing `vnd.maildir.seq`, and
/// exactly the keys of the ground truth.
fn check_exact(what: &str, evs: &[Value], truth: &[Key]) {
    let mut ids = HashSet::new();
    let dups: Vec<String> = evs
        .iter()
        .filter(|e| !ids.insert(id_of(e)))
        .map(e2e::short)
        .collect();
    assert!(
        dups.is_empty(),
        "{what}: {} event(s) delivered more than once:\n  {}",
        dups.len(),
        dups.join("\n  ")
    );
    for w in evs.windows(2) {
        assert!(
            seq_of(&w[0]) < seq_of(&w[1]),
            "{what}: vnd.maildir.seq not increasing:\n  {}\n  {}",
            e2e::short(&w[0]),
            e2e::short(&w[1])
        );
    }
    let got: Vec<Key> = evs.iter().flat_map(keys_of).collect();
    assert!(
        tally(&got) == tally(truth),
        "{what}: the events are not the ground truth:\n{}events:\n{}",
        diff(evs, truth),
        show(evs, 80)
    );
}

// ====================================================== 1. NATS JetStream

const STREAM: &str = "E2E_EVENTS";

/// The subject token of a user (only `.` needs escaping in our names).
fn subject_token(user: &str) -> String {
    user.replace('.', "%2E")
}

#[test]
fn nats_stream_holds_every_event_exactly_once_across_server_and_watcher_restarts() {
    if !have_nats_server("nats end-to-end") {
        return;
    }
    let (env, mut store) = Env::new(&["alice", "bob.smith"]);
    let nats = Arc::new(Mutex::new(NatsServer::start(
        free_port(),
        &env.path("nats"),
    )));
    let url = nats.lock().unwrap().url();
    env.write_config(&format!(
        r#"
[[sink]]
type = "nats"
url = "{url}"
stream = "{STREAM}"
connect_timeout_ms = 1000
ack_timeout_ms = 1000
backoff_initial_ms = 20
backoff_max_ms = 250
retries = 200
"#
    ));
    let mut watch = Some(env.watch(&[]));

    // Waits until the stream holds what the steps so far did.
    let wait_stream = |store: &Store, watch: &Option<Watch>, what: &str| {
        let truth = store.truth();
        poll(
            what,
            WAIT,
            || {
                let evs: Vec<Value> = read_stream(&url, STREAM)?
                    .into_iter()
                    .map(|m| m.event)
                    .collect();
                e2e::covers(&evs, &truth).then_some(())
            },
            || {
                let evs: Vec<Value> = read_stream(&url, STREAM)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|m| m.event)
                    .collect();
                format!(
                    "{}stream:\n{}watcher stderr:\n{}",
                    diff(&evs, &truth),
                    show(&evs, 40),
                    watch
                        .as_ref()
                        .map(|w| tail(&w.stderr(), 4000).to_string())
                        .unwrap_or_default()
                )
            },
        );
    };

    // Step 0: the server goes away halfway (SIGTERM) and comes back on the
    // same port and store after the second user's changes.
    store.step(0, &mut || nats.lock().unwrap().stop());
    thread::sleep(Duration::from_millis(500));
    nats.lock().unwrap().restart();
    wait_stream(&store, &watch, "step 0 in the stream (server restarted)");

    // Step 1: kill -9 of the watcher halfway; the rest of the step happens
    // while it is down; a new watcher on the same state catches up.
    store.step(1, &mut || watch.take().unwrap().kill9());
    watch = Some(env.watch(&[]));
    wait_stream(&store, &watch, "step 1 in the stream (watcher kill -9)");

    // Step 2: a quick server restart while changes come in.
    store.step(2, &mut || {
        let mut n = nats.lock().unwrap();
        n.stop();
        thread::sleep(Duration::from_millis(300));
        n.restart();
    });
    wait_stream(
        &store,
        &watch,
        "step 2 in the stream (second server restart)",
    );

    // Step 3: kill -9 right after changes, restart at once, more changes live.
    store.step(3, &mut || {
        watch.take().unwrap().kill9();
        watch = Some(env.watch(&[]));
    });
    wait_stream(&store, &watch, "step 3 in the stream (second kill -9)");
    // SIGTERM: the watcher must finish, deliver what is committed, exit 0.
    let stopped = watch.take().unwrap().terminate();

    let stored = read_stream(&url, STREAM).expect("read the stream");
    let truth = store.truth();
    // Nats-Msg-Id is the event id; the subject names user and type.
    for m in &stored {
        assert_eq!(m.msg_id, id_of(&m.event), "Nats-Msg-Id of {}", m.event);
        assert_eq!(
            m.subject,
            format!(
                "mail.events.{}.{}",
                subject_token(str_of(&m.event, "user")),
                str_of(&m.event, "event")
            ),
            "{}",
            m.event
        );
    }
    // Exactly once: no event id twice in the stream.
    let mut count: HashMap<String, usize> = HashMap::new();
    for m in &stored {
        *count.entry(m.msg_id.clone()).or_default() += 1;
    }
    let dups: BTreeMap<&String, &usize> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dups.is_empty(),
        "event ids stored more than once (Nats-Msg-Id dedup failed): {dups:?}\nstream:\n{}",
        show(
            &stored.iter().map(|m| m.event.clone()).collect::<Vec<_>>(),
            200
        )
    );
    // Per user, in stream order, seq increases; together, the ground truth.
    for user in &store.users {
        let evs: Vec<Value> = stored
            .iter()
            .filter(|m| str_of(&m.event, "user") == user)
            .map(|m| m.event.clone())
            .collect();
        let truth: Vec<Key> = truth.iter().filter(|k| &k.user == user).cloned().collect();
        check_exact(&format!("stream, user {user}"), &evs, &truth);
    }
    if let Err(why) = stopped {
        panic!("every event is in the stream once, but: {why}");
    }
}
