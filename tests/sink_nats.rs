//! The NATS JetStream sink against a real `nats-server` (child process):
//! every event stored once, in order, under the right subject and
//! `Nats-Msg-Id`, also when batches are sent again and when the server
//! restarts in the middle of the work.
//!
//! Without `nats-server` on the PATH the tests print a skip line, unless
//! `CI=true`, where they fail.

mod support;
use support::natsserver;
use support::sinkutil;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use maildir_events::sink::Sink;
use maildir_events::sink::nats::{NatsConfig, NatsSink};
use maildir_events::state::store::OutboxRow;
use natsserver::{NatsServer, have_nats_server};
use sinkutil::{free_port, id, row};

const STREAM: &str = "MAILEVENTS";

fn config(url: &str) -> NatsConfig {
    let mut c = NatsConfig::new(url);
    c.stream = Some(STREAM.into());
    c.connect_timeout_ms = 1_000;
    c.ack_timeout_ms = 1_000;
    c.backoff_initial_ms = 20;
    c.backoff_max_ms = 250;
    c.retries = 200;
    c
}

/// One message as stored in the stream.
#[derive(Debug, PartialEq, Eq)]
struct Stored {
    subject: String,
    msg_id: String,
    payload: String,
}

/// Reads the whole stream back, in stream order.
fn read_stream(url: &str) -> Vec<Stored> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = async_nats::connect(url).await.expect("connect");
        let js = jetstream::new(client);
        let stream = js.get_stream(STREAM).await.expect("the stream exists");
        let info = stream.get_info().await.expect("stream info");
        let mut out = Vec::new();
        for seq in info.state.first_sequence..=info.state.last_sequence {
            let m = stream.get_raw_message(seq).await.expect("message");
            out.push(Stored {
                subject: m.subject.to_string(),
                msg_id: m
                    .headers
                    .get("Nats-Msg-Id")
                    .map(|v| v.as_str().to_string())
                    .unwrap_or_default(),
                payload: String::from_utf8(m.payload.to_vec()).unwrap(),
            });
        }
        assert_eq!(
            out.len() as u64,
            info.state.messages,
            "no gaps in the stream"
        );
        out
    })
}

/// What the stream must hold for `rows`, given their subjects.
fn expected(rows: &[OutboxRow], subject: impl Fn(&OutboxRow) -> String) -> Vec<Stored> {
    rows.iter()
        .map(|r| Stored {
            subject: subject(r),
            msg_id: r.event_id.clone(),
            payload: r.body.clone(),
        })
        .collect()
}

#[test]
fn every_event_once_in_order_with_subject_and_id_and_resending_adds_nothing() {
    if !have_nats_server("nats publish") {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    let server = NatsServer::start(free_port(), store.path());
    let users = ["alice@example.org", "bob smith@x", "c*>%", ""];
    let batch: Vec<OutboxRow> = (1..=40).map(|s| row(s, users[s as usize % 4])).collect();
    let subject_of = |r: &OutboxRow| {
        let user = match r.seq % 4 {
            0 => "alice@example%2Eorg",
            1 => "bob%20smith@x",
            2 => "c%2A%3E%25",
            _ => "_",
        };
        format!("mail.events.{user}.MessageNew")
    };

    let mut sink = NatsSink::new(config(&server.url())).expect("sink");
    assert!(sink.send(&batch[..25]).expect("send").is_empty());
    assert!(sink.send(&batch[25..]).expect("send").is_empty());
    let want = expected(&batch, subject_of);
    assert_eq!(read_stream(&server.url()), want);

    // The same rows again (as after a failed batch): dropped by the server.
    assert!(sink.send(&batch).expect("send again").is_empty());
    assert_eq!(read_stream(&server.url()), want, "no duplicates");

    // A new sink (a restart of the daemon) finds the stream and dedups too.
    drop(sink);
    let mut sink = NatsSink::new(config(&server.url())).expect("sink");
    assert!(sink.send(&batch[30..]).expect("send").is_empty());
    assert_eq!(
        read_stream(&server.url()),
        want,
        "no duplicates after a restart"
    );
}

#[test]
fn a_server_restart_in_the_middle_loses_and_repeats_nothing() {
    if !have_nats_server("nats restart") {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    let mut server = NatsServer::start(free_port(), store.path());
    let url = server.url();
    let mut sink = NatsSink::new(config(&url)).expect("sink");

    let restarted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&restarted);
    let restarter = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        server.stop();
        thread::sleep(Duration::from_millis(700));
        server.restart();
        flag.store(true, Ordering::SeqCst);
        server
    });

    let mut sent: Vec<OutboxRow> = Vec::new();
    let mut seq = 0;
    let mut after_restart = 0;
    while after_restart < 5 {
        if restarted.load(Ordering::SeqCst) {
            after_restart += 1;
        }
        let batch: Vec<OutboxRow> = (seq + 1..=seq + 10)
            .map(|s| row(s, "alice@example.org"))
            .collect();
        seq += 10;
        let rejected = sink
            .send(&batch)
            .expect("send succeeds within the deadline");
        assert!(rejected.is_empty());
        sent.extend(batch);
        thread::sleep(Duration::from_millis(20));
    }
    let server = restarter.join().unwrap();
    assert!(sent.len() >= 60, "the workload spanned the restart");
    let want = expected(&sent, |_| {
        "mail.events.alice@example%2Eorg.MessageNew".into()
    });
    assert_eq!(read_stream(&server.url()), want);
}

#[test]
fn a_server_that_is_down_at_start_is_waited_for() {
    if !have_nats_server("nats down at start") {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    // new() must not fail: the daemon starts and keeps events in the outbox.
    let mut sink = NatsSink::new(config(&url)).expect("sink while the server is down");
    let starter = {
        let store = store.path().to_path_buf();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(500));
            NatsServer::start(port, &store)
        })
    };
    let batch: Vec<OutboxRow> = (1..=5).map(|s| row(s, "a@b")).collect();
    assert!(
        sink.send(&batch)
            .expect("send once the server is up")
            .is_empty()
    );
    let server = starter.join().unwrap();
    let want = expected(&batch, |_| "mail.events.a@b.MessageNew".into());
    assert_eq!(read_stream(&server.url()), want);
    assert_eq!(want[0].msg_id, id(1));
}

#[test]
fn a_deadline_bounds_send_while_the_server_is_down() {
    if !have_nats_server("nats deadline") {
        return;
    }
    let port = free_port();
    let mut c = config(&format!("nats://127.0.0.1:{port}"));
    c.deadline_ms = 1_000;
    let mut sink = NatsSink::new(c).expect("sink");
    let started = Instant::now();
    let err = sink
        .send(&[row(1, "a@b")])
        .expect_err("nobody is listening");
    // Margin for a loaded machine; without the deadline the retries and
    // their backoff take well over this.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("deadline"), "{err}");
}

#[test]
fn an_existing_stream_that_does_not_cover_our_subjects_is_refused() {
    if !have_nats_server("nats stream check") {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    let server = NatsServer::start(free_port(), store.path());
    let mut other = config(&server.url());
    other.subject = "other.{event}".into();
    drop(NatsSink::new(other).expect("creates the stream with other.*"));
    let err = NatsSink::new(config(&server.url()))
        .err()
        .unwrap_or_default();
    assert!(
        err.contains("do not cover") && err.contains(STREAM),
        "{err}"
    );
}

/// The engine runs each sink on its own delivery thread.
#[test]
fn the_sink_can_move_to_a_delivery_thread() {
    fn send<T: Send + 'static>() {}
    send::<NatsSink>();
}
