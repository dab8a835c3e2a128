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

mod support;
use support::e2e;
use support::live::{Spawn, Watch};
use support::natsserver::NatsCluster;

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
    Hook, Key, NatsServer, Reply, SERVER, Store, WAIT, diff, free_port, have_nats_server, id_of,
    keys_of, poll, read_stream, run, seq_of, show, str_of, tail, tally,
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
        e2e::store_args(&self.config, command, &self.state, &self.template, extra)
    }

    fn watch(&self, extra: &[&str]) -> Watch {
        Spawn::command(self.args("watch", extra)).start()
    }

    fn scan(&self) -> e2e::Run {
        run(self.args("scan", &[]), "info")
    }

    /// `maildir-events status --state DIR`, parsed.
    fn status(&self) -> Value {
        let out = run(args!["status", "--state", &self.state], "warn");
        assert_eq!(out.code, Some(0), "status failed: {}", out.stderr);
        serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("status is not JSON ({e}): {}", out.stdout))
    }

    /// `maildir-events dead-letters --state DIR`, parsed.
    fn dead_letters(&self) -> Vec<Value> {
        let out = run(args!["dead-letters", "--state", &self.state], "warn");
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

    // Step 0: the server goes away halfway (SIGTERM) and comes back on the
    // same port and store after the second user's changes.
    store.step(0, &mut || nats.lock().unwrap().stop());
    thread::sleep(Duration::from_millis(500));
    nats.lock().unwrap().restart();
    wait_stream(
        &url,
        &store,
        watch.as_ref(),
        "step 0 in the stream (server restarted)",
    );

    // Step 1: kill -9 of the watcher halfway; the rest of the step happens
    // while it is down; a new watcher on the same state catches up.
    store.step(1, &mut || {
        watch.take().unwrap().kill9();
    });
    watch = Some(env.watch(&[]));
    wait_stream(
        &url,
        &store,
        watch.as_ref(),
        "step 1 in the stream (watcher kill -9)",
    );

    // Step 2: a quick server restart while changes come in.
    store.step(2, &mut || {
        let mut n = nats.lock().unwrap();
        n.stop();
        thread::sleep(Duration::from_millis(300));
        n.restart();
    });
    wait_stream(
        &url,
        &store,
        watch.as_ref(),
        "step 2 in the stream (second server restart)",
    );

    // Step 3: kill -9 right after changes, restart at once, more changes live.
    store.step(3, &mut || {
        watch.take().unwrap().kill9();
        watch = Some(env.watch(&[]));
    });
    wait_stream(
        &url,
        &store,
        watch.as_ref(),
        "step 3 in the stream (second kill -9)",
    );
    // SIGTERM: the watcher must finish, deliver what is committed, exit 0.
    let stopped = watch.take().unwrap().terminate();

    let stored = read_stream(&url, STREAM).expect("read the stream");
    check_stream(&stored, &store, |ev| {
        format!(
            "mail.events.{}.{}",
            subject_token(str_of(ev, "user")),
            str_of(ev, "event")
        )
    });
    if let Err(why) = stopped {
        panic!("every event is in the stream once, but: {why}");
    }
}

/// The stream holds every event of the ground truth exactly once (by event
/// id, which is the Nats-Msg-Id), in order per user, each under the
/// subject `subject` gives.
fn check_stream(stored: &[e2e::Stored], store: &Store, subject: impl Fn(&Value) -> String) {
    let truth = store.truth();
    for m in stored {
        assert_eq!(m.msg_id, id_of(&m.event), "Nats-Msg-Id of {}", m.event);
        assert_eq!(m.subject, subject(&m.event), "{}", m.event);
    }
    // Exactly once: no event id twice in the stream.
    let mut count: HashMap<String, usize> = HashMap::new();
    for m in stored {
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
}

/// Waits until the stream (read through any of `url`'s servers) covers
/// what the store's steps so far did.
fn wait_stream(url: &str, store: &Store, watch: Option<&Watch>, what: &str) {
    let truth = store.truth();
    let events = || -> Option<Vec<Value>> {
        Some(
            read_stream(url, STREAM)?
                .into_iter()
                .map(|m| m.event)
                .collect(),
        )
    };
    poll(
        what,
        WAIT,
        || e2e::covers(&events()?, &truth).then_some(()),
        || {
            let evs = events().unwrap_or_default();
            format!(
                "{}stream:\n{}watcher stderr:\n{}",
                diff(&evs, &truth),
                show(&evs, 40),
                watch
                    .map(|w| tail(&w.stderr(), 4000).to_string())
                    .unwrap_or_default()
            )
        },
    );
}

#[test]
fn nats_cluster_keeps_every_event_once_when_the_watchers_node_dies() {
    if !have_nats_server("nats cluster") {
        return;
    }
    let (env, mut store) = Env::new(&["alice", "bob.smith", "carol"]);
    let cluster = Arc::new(Mutex::new(NatsCluster::start(&env.path("nats"))));
    let urls = cluster.lock().unwrap().urls();
    env.write_config(&format!(
        r#"
[[sink]]
type = "nats"
url = "{urls}"
stream = "{STREAM}"
replicas = 3
subject = "mail.events.{{server}}.{{user}}.{{event}}"
connect_timeout_ms = 1000
ack_timeout_ms = 1000
backoff_initial_ms = 20
backoff_max_ms = 250
retries = 400
"#
    ));
    let mut watch = env.watch(&[]);
    store.step(0, &mut || {});
    wait_stream(
        &urls,
        &store,
        Some(&watch),
        "step 0 in the stream (three nodes)",
    );

    // The node the watcher is connected to dies (SIGKILL) halfway through
    // a step; the rest of the step happens while it is down.
    let node = poll(
        "the node the watcher is connected to",
        WAIT,
        || cluster.lock().unwrap().connected_node("maildir-events"),
        || "no node lists the watcher's connection".to_string(),
    );
    store.step(1, &mut || cluster.lock().unwrap().kill(node));
    wait_stream(
        &urls,
        &store,
        Some(&watch),
        "step 1 in the stream (a node died)",
    );
    assert!(
        watch.stderr().contains("disconnected"),
        "the watcher's connection went down with its node:\n{}",
        tail(&watch.stderr(), 4000)
    );

    // It comes back while the next step comes in.
    store.step(2, &mut || cluster.lock().unwrap().restart(node));
    wait_stream(
        &urls,
        &store,
        Some(&watch),
        "step 2 in the stream (node back)",
    );
    let stopped = watch.terminate();

    // The node that came back may still be catching up, and a read can
    // reach it: read until the stream (through any node) holds the truth,
    // then check it is exactly that.
    let truth = store.truth();
    let stored = poll(
        "the whole stream, through any node",
        WAIT,
        || {
            let s = read_stream(&urls, STREAM)?;
            let evs: Vec<Value> = s.iter().map(|m| m.event.clone()).collect();
            e2e::covers(&evs, &truth).then_some(s)
        },
        || {
            let evs: Vec<Value> = read_stream(&urls, STREAM)
                .unwrap_or_default()
                .into_iter()
                .map(|m| m.event)
                .collect();
            format!("{}stream:\n{}", diff(&evs, &truth), show(&evs, 40))
        },
    );
    // Subjects carry the server name, so a fleet shares one stream.
    check_stream(&stored, &store, |ev| {
        format!(
            "mail.events.{}.{}.{}",
            SERVER.replace('.', "%2E"),
            subject_token(str_of(ev, "user")),
            str_of(ev, "event")
        )
    });
    // Three copies: every node's JetStream holds the stream's messages.
    let c = cluster.lock().unwrap();
    for i in 0..3 {
        let jsz = poll(
            "every node has the stream's messages",
            WAIT,
            || {
                let j = c.monitor(i, "/jsz?streams=true")?;
                j.contains(&format!("\"messages\": {}", stored.len()))
                    .then_some(j)
            },
            || format!("node {i}: {:?}", c.monitor(i, "/jsz?streams=true")),
        );
        assert!(jsz.contains(STREAM), "node {i}: {jsz}");
    }
    if let Err(why) = stopped {
        panic!("every event is in the stream once, but: {why}");
    }
}

// ====================================================== 2. webhook

/// The refused event: alice's INBOX UID 5 (a MessageNew of step 0).
fn is_target(ev: &Value) -> bool {
    ev["event"] == "MessageNew"
        && ev["user"] == "alice"
        && keys_of(ev)
            == [Key {
                event: "MessageNew".into(),
                user: "alice".into(),
                mailbox: "INBOX".into(),
                uid: Some(5),
            }]
}

#[test]
fn webhook_retries_signs_dead_letters_a_400_and_replays_it() {
    let (env, mut store) = Env::new(&["alice", "bob"]);
    let port = free_port();
    let secret = env.secret_file();
    env.write_config(&format!(
        r#"
[[sink]]
type = "webhook"
url = "{}"
secret_file = "{}"
connect_timeout_ms = 2000
read_timeout_ms = 2000
retries = 50
deadline_ms = 10000
backoff_initial_ms = 20
backoff_max_ms = 200
"#,
        webhook_url(port),
        secret.display()
    ));
    let w = env.watch(&[]);
    let sink = format!("webhook:{}", webhook_url(port));

    // The receiver is down while step 0 happens.
    store.step(0, &mut || {});
    thread::sleep(Duration::from_millis(800));
    let accept_target = Arc::new(AtomicBool::new(false));
    let accept = accept_target.clone();
    let hook = Hook::start(
        port,
        SECRET,
        // Answers later than the sender's read timeout (2 s, wide enough
        // for a loaded machine) are failures; the slow one is far past it.
        Duration::from_millis(2000),
        Box::new(move |n, ev| match n {
            0 | 1 => Reply::status(500),
            2 => Reply {
                status: 200,
                delay: Duration::from_millis(5000),
            },
            _ if is_target(ev) && !accept.load(Ordering::SeqCst) => Reply::status(400),
            _ => Reply::ok(),
        }),
    );
    let target = Key {
        event: "MessageNew".into(),
        user: "alice".into(),
        mailbox: "INBOX".into(),
        uid: Some(5),
    };
    let but_target = |truth: Vec<Key>| -> Vec<Key> {
        let n = truth.len();
        let v: Vec<Key> = truth.into_iter().filter(|k| *k != target).collect();
        assert_eq!(v.len() + 1, n, "the target is in the ground truth once");
        v
    };
    let explain_for = |want: &[Key]| {
        format!(
            "{}delivered:\n{}watcher stderr:\n{}",
            diff(&hook.delivered(), want),
            show(&hook.delivered(), 60),
            tail(&w.stderr(), 4000)
        )
    };
    // Each step once the previous one is delivered (a step may change what
    // the one before made, and a rescan reports net changes).
    for step in 0..Store::STEPS {
        if step > 0 {
            store.step(step, &mut || {});
        }
        let want = but_target(store.truth());
        poll(
            &format!("step {step}: every event but the refused one delivered"),
            WAIT,
            || e2e::covers(&hook.delivered(), &want).then_some(()),
            || explain_for(&want),
        );
    }
    let truth = store.truth();
    let without_target = but_target(truth.clone());
    let explain = || explain_for(&without_target);
    // The refused one is a dead letter (the advance of the sink's position
    // that records it may lag the next delivery by a moment).
    let letters = poll(
        "one dead letter",
        WAIT,
        || Some(env.dead_letters()).filter(|l| !l.is_empty()),
        explain,
    );
    assert_eq!(letters.len(), 1, "exactly one dead letter: {letters:#?}");
    let dl = &letters[0];
    assert!(
        is_target(&dl["event"]),
        "the dead letter is the refused event: {dl:#}"
    );
    assert_eq!(dl["sink"], sink.as_str(), "{dl:#}");
    assert_eq!(
        dl["eventId"].as_str(),
        Some(id_of(&dl["event"]).as_str()),
        "{dl:#}"
    );
    assert_eq!(dl["seq"].as_u64(), Some(seq_of(&dl["event"])), "{dl:#}");
    assert!(
        dl["reason"].as_str().unwrap_or("").contains("400"),
        "the reason names the status: {dl:#}"
    );
    assert!(dl["at"].as_str().is_some_and(|a| !a.is_empty()), "{dl:#}");
    let target_id = id_of(&dl["event"]);
    let refused = hook
        .hits()
        .into_iter()
        .filter(|h| is_target(&h.event))
        .count();
    assert_eq!(refused, 1, "a 400 is not retried");

    // The receiver is fixed; replay while watch runs.
    accept_target.store(true, Ordering::SeqCst);
    let out = run(
        args!["dead-letters", "--state", &env.state, "--replay"],
        "warn",
    );
    assert_eq!(out.code, Some(0), "replay failed: {}", out.stderr);
    poll(
        "the replayed event delivered",
        WAIT,
        || {
            hook.delivered()
                .iter()
                .any(|e| id_of(e) == target_id)
                .then_some(())
        },
        explain,
    );
    let after = env.dead_letters();
    assert!(
        after.is_empty(),
        "dead letters after the replay: {after:#?}"
    );
    assert_eq!(env.status()["deadLetters"], 0);
    w.stop();

    let hits = hook.hits();
    let failures = hits.iter().filter(|h| !h.delivered).count();
    assert!(
        failures >= 4,
        "two 500s, one slow answer and one 400 are failures; {failures} seen: {hits:#?}"
    );
    for h in &hits {
        assert!(h.signature_ok, "bad or missing signature on {}", h.event);
        assert_eq!(h.key, id_of(&h.event), "Idempotency-Key is the event id");
    }
    // A key comes again only after a failure, and is delivered once.
    let mut by_key: HashMap<&str, Vec<&e2e::Hit>> = HashMap::new();
    for h in &hits {
        by_key.entry(h.key.as_str()).or_default().push(h);
    }
    for (key, hs) in &by_key {
        let delivered = hs.iter().filter(|h| h.delivered).count();
        assert_eq!(delivered, 1, "{key} delivered {delivered} times: {hs:#?}");
        assert!(
            hs[..hs.len() - 1].iter().all(|h| !h.delivered),
            "{key} was sent again after it was accepted: {hs:#?}"
        );
    }
    // In order: everything in seq order, the replayed event last.
    let delivered = hook.delivered();
    let (last, rest) = delivered.split_last().unwrap();
    assert_eq!(id_of(last), target_id, "the replayed event comes last");
    check_exact("webhook (before the replay)", rest, &without_target);
    let mut all = rest.to_vec();
    all.push(last.clone());
    assert!(
        tally(&all.iter().flat_map(keys_of).collect::<Vec<_>>()) == tally(&truth),
        "{}",
        diff(&all, &truth)
    );
}

// ====================================================== 3. file

fn read_events(path: &Path) -> Vec<Value> {
    match fs::read_to_string(path) {
        Ok(text) => {
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "{} ends in a partial line",
                path.display()
            );
            e2e::parse_lines(&text)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("read {}: {e}", path.display()),
    }
}

#[test]
fn file_sink_rotated_by_rename_and_sighup_has_every_event_once_in_order() {
    let (env, mut store) = Env::new(&["alice", "bob"]);
    let path = env.path("events.jsonl");
    let rotated = env.path("events.jsonl.1");
    env.write_config(&format!(
        "[[sink]]\ntype = \"file\"\npath = \"{}\"\n",
        path.display()
    ));
    let w = env.watch(&[]);
    let union = || {
        let mut v = read_events(&rotated);
        v.extend(read_events(&path));
        v
    };
    let wait = |store: &Store, what: &str| {
        let truth = store.truth();
        poll(
            what,
            WAIT,
            || e2e::covers(&union(), &truth).then_some(()),
            || {
                format!(
                    "{}events:\n{}stderr:\n{}",
                    diff(&union(), &truth),
                    show(&union(), 40),
                    tail(&w.stderr(), 4000)
                )
            },
        )
    };
    store.step(0, &mut || {});
    wait(&store, "step 0 in the file");
    // logrotate: rename; until SIGHUP the watcher still writes the old file.
    store.step(1, &mut || fs::rename(&path, &rotated).unwrap());
    wait(&store, "step 1 in the old file");
    store.step(2, &mut || w.signal(libc::SIGHUP));
    wait(&store, "step 2");
    store.step(3, &mut || {});
    wait(&store, "step 3 in the reopened file");
    w.stop();

    let old = read_events(&rotated);
    let new = read_events(&path);
    assert!(!old.is_empty(), "nothing in the rotated file");
    assert!(
        !new.is_empty(),
        "nothing in the reopened file after SIGHUP (old file has {})",
        old.len()
    );
    check_exact("rotated + reopened file", &union(), &store.truth());
}

#[test]
fn file_and_stdout_sinks_both_get_every_event() {
    let (env, mut store) = Env::new(&["alice", "bob"]);
    let path = env.path("events.jsonl");
    env.write_config(&format!(
        "[[sink]]\ntype = \"file\"\npath = \"{}\"\n\n[[sink]]\ntype = \"stdout\"\n",
        path.display()
    ));
    let w = env.watch(&[]);
    for step in 0..Store::STEPS {
        store.step(step, &mut || {});
        let truth = store.truth();
        poll(
            &format!("step {step}: every event in the file and on stdout"),
            WAIT,
            || {
                (e2e::covers(&read_events(&path), &truth) && e2e::covers(&w.events(), &truth))
                    .then_some(())
            },
            || {
                format!(
                    "file:\n{}stdout:\n{}stderr:\n{}",
                    diff(&read_events(&path), &truth),
                    diff(&w.events(), &truth),
                    tail(&w.stderr(), 4000)
                )
            },
        );
    }
    let truth = store.truth();
    let printed = {
        let evs = w.events();
        w.stop();
        evs
    };
    let file = read_events(&path);
    check_exact("file sink", &file, &truth);
    check_exact("stdout sink", &printed, &truth);
    assert_eq!(
        file.iter().map(id_of).collect::<Vec<_>>(),
        printed.iter().map(id_of).collect::<Vec<_>>(),
        "both sinks got the same events"
    );
}

// ====================================================== 4. back-pressure

#[test]
fn back_pressure_at_outbox_limit_pauses_then_loses_nothing() {
    let (env, mut store) = Env::new(&["alice", "bob"]);
    let port = free_port();
    env.write_config(&format!(
        r#"
outbox_limit = 50

[[sink]]
type = "webhook"
url = "{}"
connect_timeout_ms = 300
retries = 3
deadline_ms = 1000
backoff_initial_ms = 20
backoff_max_ms = 100
"#,
        webhook_url(port)
    ));
    let sink = format!("webhook:{}", webhook_url(port));
    let w = env.watch(&[]);
    // 80 deliveries while the receiver is down.
    for i in 0..40 {
        store.deliver("alice", "INBOX");
        store.deliver("bob", "INBOX");
        if i % 10 == 9 {
            thread::sleep(Duration::from_millis(20));
        }
    }
    let truth = store.truth();
    assert!(truth.len() > 50);
    poll(
        "\"outbox full; pausing\" on stderr",
        WAIT,
        || w.stderr().contains("outbox full; pausing").then_some(()),
        || format!("stderr:\n{}", tail(&w.stderr(), 4000)),
    );
    let mut problems = Vec::new();
    // Without the configuration, status cannot know a sink that never
    // took an event, but it shows what waits in the outbox as a whole.
    let status = env.status();
    match status["outbox"]["waiting"].as_u64() {
        Some(n) if n >= 50 => {}
        other => problems.push(format!(
            "`status --state DIR` while paused: outbox.waiting is {other:?}, want >= 50; status: {status}"
        )),
    }
    // With --config the inspection command knows the configured sink.
    let with_config = run(
        args!["--config", &env.config, "status", "--state", &env.state],
        "warn",
    );
    let with_config: Value = serde_json::from_str(with_config.stdout.trim()).unwrap_or(Value::Null);
    match with_config["sinks"][sink.as_str()]["waiting"].as_u64() {
        Some(n) if n >= 50 => {}
        other => problems.push(format!(
            "`status --config FILE --state DIR` while paused: waiting is {other:?}, want >= 50; status: {with_config}"
        )),
    }

    // The watcher sits paused for a while with no more changes coming;
    // then the receiver comes up: everything arrives, also the changes made
    // while the watcher was not taking them.
    thread::sleep(Duration::from_millis(1500));
    let hook = Hook::start(
        port,
        b"",
        Duration::from_secs(60),
        Box::new(|_, _| Reply::ok()),
    );
    let arrived = e2e::poll_opt(WAIT, || {
        e2e::covers(&hook.delivered(), &truth).then_some(())
    });
    if arrived.is_none() {
        problems.push(format!(
            "not every event arrived within {WAIT:?} after the receiver came up (no more changes were made):\n{}stderr:\n{}",
            diff(&hook.delivered(), &truth),
            tail(&w.stderr(), 3000)
        ));
    }
    w.stop();
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    check_exact("webhook after back-pressure", &hook.delivered(), &truth);
}

// ====================================================== 5. scan

#[test]
fn scan_keeps_undelivered_events_exits_74_and_delivers_them_first_next_time() {
    let (env, mut store) = Env::new(&["alice", "bob"]);
    let port = free_port();
    env.write_config(&format!(
        r#"
[[sink]]
type = "webhook"
url = "{}"
connect_timeout_ms = 300
retries = 2
deadline_ms = 1000
backoff_initial_ms = 20
backoff_max_ms = 100
"#,
        webhook_url(port)
    ));
    let out = env.scan();
    assert_eq!(out.code, Some(0), "baseline scan: {}", out.stderr);

    store.step(0, &mut || {});
    let kept = store.truth();
    let out = env.scan();
    assert_eq!(
        out.code,
        Some(74),
        "a scan whose sink is down exits 74\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stderr.contains("outbox"),
        "stderr mentions the outbox:\n{}",
        out.stderr
    );

    // What the failed scan committed waits in the outbox (a failed scan
    // stops at the first user whose delivery failed; later users are
    // scanned next time).
    let status = run(
        args!["--config", &env.config, "status", "--state", &env.state],
        "warn",
    );
    let status: Value = serde_json::from_str(status.stdout.trim()).expect("status JSON");
    let sink = format!("webhook:{}", webhook_url(port));
    let waiting = status["sinks"][sink.as_str()]["waiting"]
        .as_u64()
        .unwrap_or_else(|| panic!("no waiting count for {sink}: {status}"))
        as usize;
    assert!(waiting > 0, "the failed scan kept its events: {status}");

    // New changes that touch nothing of step 0, so net = live.
    for u in ["alice", "bob"] {
        store.create_folder(u, "Archive");
        store.deliver(u, "Archive");
        store.deliver(u, "INBOX");
    }
    let truth = store.truth();
    let hook = Hook::start(
        port,
        b"",
        Duration::from_secs(60),
        Box::new(|_, _| Reply::ok()),
    );
    let out = env.scan();
    assert_eq!(
        out.code,
        Some(0),
        "scan with the receiver up: {}",
        out.stderr
    );
    let delivered = hook.delivered();
    check_exact("scan deliveries", &delivered, &truth);
    // The kept events come first: the first `waiting` deliveries are step-0
    // events, every one older than anything after them.
    let first: Vec<Key> = delivered[..waiting].iter().flat_map(keys_of).collect();
    let kept_tally = tally(&kept);
    for (k, n) in tally(&first) {
        assert!(
            kept_tally.get(&k).copied().unwrap_or(0) >= n,
            "{k} is among the first {waiting} deliveries but was not kept:\n{}",
            show(&delivered, 80)
        );
    }
    assert!(
        delivered[..waiting]
            .iter()
            .all(|e| delivered[waiting..].iter().all(|l| seq_of(e) < seq_of(l))),
        "kept events first:\n{}",
        show(&delivered, 80)
    );

    // Nothing changed: nothing more.
    let out = env.scan();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        hook.delivered().len(),
        delivered.len(),
        "a quiet scan sends nothing"
    );
}

// ====================================================== 6. metrics

/// The value of a sample line `NAME{LABELS} VALUE` in a metrics text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

#[test]
fn metrics_count_events_by_type_and_the_outbox_per_sink() {
    let (env, mut store) = Env::new(&["alice"]);
    let path = env.path("events.jsonl");
    let down = free_port();
    env.write_config(&format!(
        r#"
[[sink]]
type = "file"
path = "{}"

[[sink]]
type = "webhook"
url = "{}"
connect_timeout_ms = 300
retries = 2
deadline_ms = 1000
backoff_initial_ms = 20
backoff_max_ms = 100
"#,
        path.display(),
        webhook_url(down)
    ));
    let addr = format!("127.0.0.1:{}", free_port());
    let w = env.watch(&["--metrics", &addr]);
    const N: usize = 7;
    for _ in 0..N {
        store.deliver("alice", "INBOX");
    }
    let truth = store.truth();
    poll(
        "N MessageNew in the file",
        WAIT,
        || e2e::covers(&read_events(&path), &truth).then_some(()),
        || format!("stderr:\n{}", tail(&w.stderr(), 3000)),
    );
    let file_series = format!(
        "maildir_events_outbox_events{{sink=\"file:{}\"}}",
        path.display()
    );
    let hook_series = format!(
        "maildir_events_outbox_events{{sink=\"webhook:{}\"}}",
        webhook_url(down)
    );
    let new_series = "maildir_events_events_total{event=\"MessageNew\"}";
    let last = Mutex::new(String::new());
    poll(
        "the metrics to show the deliveries",
        WAIT,
        || {
            let text = e2e::get_metrics(&addr)?;
            *last.lock().unwrap() = text.clone();
            (sample(&text, new_series) == Some(N as f64)
                && sample(&text, &file_series) == Some(0.0)
                && sample(&text, &hook_series) == Some(N as f64))
            .then_some(())
        },
        || format!("/metrics:\n{}", last.lock().unwrap()),
    );
    w.stop();
    check_exact("file sink", &read_events(&path), &truth);
}
