//! `maildir-events status` after everything was delivered, through the
//! real binary: nothing may be said to wait, from the database (after
//! `scan`, beside and after `watch`) and from the status file a running
//! `watch` keeps. An "outbox not empty" alert must not fire on a store
//! whose sinks took every event.
//!
//! Also: an idle watcher does not rewrite its status file, and `status`
//! tells a stale status file (a hung watcher) from a live one.
//!
//! No timing is asserted: every wait is a bounded poll on content.

mod support;
use support::e2e;
use support::live::{Spawn, Watch};

use std::ffi::OsString;
use std::fs;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use e2e::{Store, WAIT, covers, diff, poll, run, tail};

/// Two users' Maildirs, a state directory, and a configuration file with
/// two sinks: a file and stdout.
struct Env {
    tmp: TempDir,
    state: PathBuf,
    config: PathBuf,
    template: String,
}

impl Env {
    fn new() -> (Env, Store) {
        let tmp = TempDir::new().unwrap();
        let store = Store::new(&tmp.path().join("mail"), &["alice", "bob"]);
        let env = Env {
            template: store.template(),
            state: tmp.path().join("state"),
            config: tmp.path().join("config.toml"),
            tmp,
        };
        fs::write(
            &env.config,
            format!(
                "[[sink]]\ntype = \"file\"\npath = \"{}\"\n\n[[sink]]\ntype = \"stdout\"\n",
                env.events_file().display()
            ),
        )
        .unwrap();
        (env, store)
    }

    fn events_file(&self) -> PathBuf {
        self.tmp.path().join("events.jsonl")
    }

    fn file_sink(&self) -> String {
        format!("file:{}", self.events_file().display())
    }

    /// What the file sink holds.
    fn filed(&self) -> Vec<Value> {
        e2e::parse_lines(&fs::read_to_string(self.events_file()).unwrap_or_default())
    }

    fn args(&self, command: &str, extra: &[&str]) -> Vec<OsString> {
        e2e::store_args(&self.config, command, &self.state, &self.template, extra)
    }

    /// `status`, with the configuration file or without (then the sinks
    /// are those the database knows), parsed.
    fn status(&self, with_config: bool) -> Value {
        let a = if with_config {
            args!["--config", &self.config, "status", "--state", &self.state]
        } else {
            args!["status", "--state", &self.state]
        };
        let out = run(a, "warn");
        assert_eq!(out.code, Some(0), "status failed: {}", out.stderr);
        serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("status is not JSON ({e}): {}", out.stdout))
    }

    fn status_file(&self) -> PathBuf {
        self.state.join("status.json")
    }

    /// The status file a running watcher keeps, parsed (`None` while it
    /// is not there).
    fn status_doc(&self) -> Option<Value> {
        let text = fs::read_to_string(self.status_file()).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// What is wrong with a status that should say nothing waits: the whole
/// outbox and every sink in `sinks` at 0 with no age.
fn waiting_problems(status: &Value, sinks: &[&str]) -> Vec<String> {
    let mut p = Vec::new();
    if status["outbox"]["waiting"] != 0 {
        p.push(format!("outbox.waiting is {}", status["outbox"]["waiting"]));
    }
    if !status["outbox"]["oldestSeconds"].is_null() {
        p.push(format!(
            "outbox.oldestSeconds is {}",
            status["outbox"]["oldestSeconds"]
        ));
    }
    for s in sinks {
        let v = &status["sinks"][*s];
        if v.is_null() {
            p.push(format!("sink {s} missing"));
            continue;
        }
        if v["waiting"] != 0 {
            p.push(format!("sinks[{s}].waiting is {}", v["waiting"]));
        }
        if !v["oldestSeconds"].is_null() {
            p.push(format!(
                "sinks[{s}].oldestSeconds is {}",
                v["oldestSeconds"]
            ));
        }
    }
    p
}

fn assert_nothing_waits(what: &str, status: &Value, sinks: &[&str]) {
    let p = waiting_problems(status, sinks);
    assert!(
        p.is_empty(),
        "{what}: everything was delivered, yet {}\nstatus: {status}",
        p.join("; ")
    );
}

#[test]
fn after_scan_delivered_everything_nothing_waits() {
    let (env, mut store) = Env::new();
    let out = run(env.args("scan", &[]), "warn");
    assert_eq!(out.code, Some(0), "baseline scan: {}", out.stderr);
    for step in 0..2 {
        store.step(step, &mut || {});
        let out = run(env.args("scan", &[]), "warn");
        assert_eq!(out.code, Some(0), "scan {step}: {}", out.stderr);
    }
    let truth = store.truth();
    assert!(
        covers(&env.filed(), &truth),
        "the file sink lacks events:\n{}",
        diff(&env.filed(), &truth)
    );
    let sink = env.file_sink();
    let sinks = [sink.as_str(), "stdout"];
    assert_nothing_waits("status --config", &env.status(true), &sinks);
    // Without the configuration: the sinks the database knows.
    assert_nothing_waits("status without --config", &env.status(false), &sinks);
    // And still nothing after a scan that found nothing new.
    let out = run(env.args("scan", &[]), "warn");
    assert_eq!(out.code, Some(0), "idle scan: {}", out.stderr);
    assert_nothing_waits("status after an idle scan", &env.status(true), &sinks);
}

/// Waits until the status file shows `events` events and nothing waiting,
/// then returns it; fails with the last file seen.
fn settled_status_file(env: &Env, events: usize, w: &Watch) -> Value {
    let mut last = None;
    let found = e2e::poll_opt(WAIT, || {
        let doc = env.status_doc()?;
        last = Some(doc.clone());
        (doc["watch"]["events"] == events && doc["outbox"]["waiting"] == 0).then_some(doc)
    });
    found.unwrap_or_else(|| {
        panic!(
            "the status file never showed {events} events with nothing waiting within {WAIT:?}; last: {}\nstderr:\n{}",
            last.map_or("none".into(), |d| d.to_string()),
            tail(&w.stderr(), 3000)
        )
    })
}

/// Waits until `status` read from the database says nothing waits.
fn settled_database(env: &Env, sinks: &[&str], w: &Watch) {
    let mut last = Value::Null;
    let ok = e2e::poll_opt(WAIT, || {
        last = env.status(true);
        waiting_problems(&last, sinks).is_empty().then_some(())
    });
    assert!(
        ok.is_some(),
        "status from the database beside a running watcher never said nothing waits within {WAIT:?}: {}\nstatus: {last}\nstderr:\n{}",
        waiting_problems(&last, sinks).join("; "),
        tail(&w.stderr(), 3000)
    );
}

#[test]
fn beside_and_after_watch_nothing_waits_and_an_idle_watcher_leaves_the_file_alone() {
    let (env, mut store) = Env::new();
    let out = run(env.args("scan", &[]), "warn");
    assert_eq!(out.code, Some(0), "baseline scan: {}", out.stderr);
    let w = Spawn::command(env.args("watch", &[])).start();
    store.step(0, &mut || {});
    store.step(1, &mut || {});
    let truth = store.truth();
    poll(
        "every event in the file sink",
        WAIT,
        || covers(&env.filed(), &truth).then_some(()),
        || diff(&env.filed(), &truth),
    );
    poll(
        "every event on stdout",
        WAIT,
        || covers(&w.events(), &truth).then_some(()),
        || diff(&w.events(), &truth),
    );
    let events = w.events().len();
    let sink = env.file_sink();
    let sinks = [sink.as_str(), "stdout"];

    let doc = settled_status_file(&env, events, &w);
    assert_nothing_waits("status.json of a running watcher", &doc, &sinks);
    assert_eq!(doc["watch"]["pid"], w.pid(), "{doc}");
    settled_database(&env, &sinks, &w);

    // Idle: the file is not rewritten (its stamp is kept) while nothing
    // changes; the heartbeat is a minute.
    let before = fs::read_to_string(env.status_file()).unwrap();
    thread::sleep(Duration::from_secs(3));
    let after = fs::read_to_string(env.status_file()).unwrap();
    assert_eq!(
        before, after,
        "an idle watcher rewrote its status file within 3 s"
    );

    // A change is published again.
    store.step(2, &mut || {});
    let truth = store.truth();
    poll(
        "the new events on stdout",
        WAIT,
        || covers(&w.events(), &truth).then_some(()),
        || diff(&w.events(), &truth),
    );
    let events = w.events().len();
    let doc = settled_status_file(&env, events, &w);
    assert_nothing_waits("status.json after more changes", &doc, &sinks);
    assert_ne!(before, fs::read_to_string(env.status_file()).unwrap());

    w.stop();
    assert_nothing_waits("status after watch stopped", &env.status(true), &sinks);
    assert_nothing_waits(
        "status without --config after watch stopped",
        &env.status(false),
        &sinks,
    );
    // The last status file the watcher wrote says the same.
    let doc = env.status_doc().expect("status.json after stop");
    assert_nothing_waits("the final status.json", &doc, &sinks);
}

#[test]
fn with_poll_what_the_sinks_took_is_written_down_between_polls() {
    // Changes made before the start are delivered by the catch-up; the
    // next poll is an hour away, so only the loop's own pace can write
    // down what the sinks took and publish it.
    let (env, mut store) = Env::new();
    let out = run(env.args("scan", &[]), "warn");
    assert_eq!(out.code, Some(0), "baseline scan: {}", out.stderr);
    store.step(0, &mut || {});
    let truth = store.truth();
    let w = Spawn::command(env.args("watch", &["--poll", "3600"])).start();
    poll(
        "the catch-up's events on stdout",
        WAIT,
        || covers(&w.events(), &truth).then_some(()),
        || diff(&w.events(), &truth),
    );
    let events = w.events().len();
    let sink = env.file_sink();
    let sinks = [sink.as_str(), "stdout"];
    let doc = settled_status_file(&env, events, &w);
    assert_nothing_waits("status.json in poll mode", &doc, &sinks);
    settled_database(&env, &sinks, &w);
    w.stop();
}

/// Holds the state directory's lock the way a running watcher does.
struct Held(#[allow(dead_code)] fs::File);

fn hold(state: &Path) -> Held {
    fs::create_dir_all(state).unwrap();
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(state.join("lock"))
        .unwrap();
    // SAFETY: flock on a descriptor we own.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(r, 0, "flock");
    Held(f)
}

#[test]
fn status_tells_a_stale_status_file_from_a_live_one() {
    // A watcher holds the state directory, and the database cannot be
    // read (here: there is none), so `status` prints the status file.
    let tmp = TempDir::new().unwrap();
    let state = tmp.path().join("state");
    let _held = hold(&state);
    let doc = |updated: &str| {
        format!(
            r#"{{"outbox":{{"waiting":0,"oldestSeconds":null}},"users":1,"folders":1,"messages":0,"sinks":{{}},"deadLetters":0,"watch":{{"pid":1,"events":0,"watches":3,"paused":false,"updated":"{updated}"}}}}"#
        )
    };
    let now = chrono::Utc::now();
    let cases = [
        (now.to_rfc3339(), false),
        ((now - chrono::Duration::seconds(30)).to_rfc3339(), false),
        ((now - chrono::Duration::minutes(10)).to_rfc3339(), true),
        ("not a time".to_string(), true),
    ];
    for (stamp, stale) in cases {
        fs::write(state.join("status.json"), doc(&stamp)).unwrap();
        let out = run(args!["status", "--state", &state], "warn");
        assert_eq!(out.code, Some(0), "status ({stamp}): {}", out.stderr);
        let v: Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.stdout));
        assert_eq!(v["watch"]["stale"], stale, "stamp {stamp}: {v}");
        assert_eq!(v["users"], 1, "the file's content is printed: {v}");
        assert_eq!(
            out.stderr.contains("stale"),
            stale,
            "stamp {stamp}: a warning on stderr only when stale: {}",
            out.stderr
        );
    }
}

#[test]
fn a_status_file_left_by_an_earlier_run_is_not_used() {
    // Nobody holds the state directory: the file says nothing about now,
    // and without a database `status` says so.
    let tmp = TempDir::new().unwrap();
    let state = tmp.path().join("state");
    fs::create_dir_all(&state).unwrap();
    fs::write(
        state.join("status.json"),
        r#"{"outbox":{"waiting":7,"oldestSeconds":99.0},"watch":{"updated":"2026-01-01T00:00:00+00:00"}}"#,
    )
    .unwrap();
    let out = run(args!["status", "--state", &state], "warn");
    assert_ne!(out.code, Some(0), "stdout: {}", out.stdout);
    assert!(
        out.stderr.contains("no state database"),
        "stderr: {}",
        out.stderr
    );
    assert!(!out.stdout.contains("waiting"), "stdout: {}", out.stdout);
}

#[test]
fn a_change_that_sends_no_event_is_still_published() {
    // Only mailbox events are sent: deliveries change the counts in the
    // status file without any event on its way to a sink.
    let (env, mut store) = Env::new();
    let mut config = fs::read_to_string(&env.config).unwrap();
    config.insert_str(0, "[filter]\ngroups = [\"mailbox\"]\n\n");
    fs::write(&env.config, config).unwrap();
    let out = run(env.args("scan", &[]), "warn");
    assert_eq!(out.code, Some(0), "baseline scan: {}", out.stderr);
    let w = Spawn::command(env.args("watch", &[])).start();
    let before = e2e::poll_opt(WAIT, || env.status_doc()).expect("a status file");
    let messages = before["messages"].as_u64().unwrap();
    for _ in 0..3 {
        store.deliver("alice", "INBOX");
    }
    let mut last = Value::Null;
    let seen = e2e::poll_opt(WAIT, || {
        last = env.status_doc()?;
        (last["messages"] == messages + 3).then_some(())
    });
    assert!(
        seen.is_some(),
        "the status file never showed the 3 new messages within {WAIT:?}: {last}\nstderr:\n{}",
        tail(&w.stderr(), 3000)
    );
    assert!(w.events().is_empty(), "events were sent: {:?}", w.events());
    assert_nothing_waits("status.json", &last, &["stdout"]);
    w.stop();
}
