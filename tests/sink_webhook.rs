//! The webhook sink against a real HTTP server on 127.0.0.1 that is down
//! at first, fails, is slow, rate-limits and refuses one event: every
//! other event arrives in order, signed, and the refused one is rejected.
//! And over real HTTPS (a rustls server with a CA made in the test): the
//! binary's `scan` delivers with `ca_file`, and refuses an unknown CA and a
//! certificate for another host name with a message that says what to do.

mod support;
use support::sinkutil;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use maildir_events::sink::Sink;
use maildir_events::sink::webhook::{WebhookConfig, WebhookSink};
use serde_json::Value;
use sinkutil::{free_port, id, rows};

const SECRET: &[u8] = b"s3cret shared";

/// What the server answers to one request.
#[derive(Clone, Debug)]
struct Answer {
    status: u16,
    body: String,
    delay: Duration,
    retry_after: Option<u64>,
}

impl Answer {
    fn status(status: u16) -> Answer {
        Answer {
            status,
            body: format!("status {status}"),
            delay: Duration::ZERO,
            retry_after: None,
        }
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Hit {
    key: String,
    ids: Option<String>,
    body: String,
    content_type: String,
    signature_ok: bool,
    custom: Option<String>,
    at: Instant,
    answer: Answer,
}

impl Hit {
    /// The event ids of the body (one object, or an array of them).
    fn event_ids(&self) -> Vec<String> {
        let v: Value = serde_json::from_str(&self.body).expect("body is JSON");
        let one = |e: &Value| e["vnd.maildir.eventId"].as_str().unwrap_or("").to_string();
        match &v {
            Value::Array(items) => items.iter().map(one).collect(),
            other => vec![one(other)],
        }
    }

    fn ok(&self) -> bool {
        (200..300).contains(&self.answer.status)
    }
}

type Script = dyn Fn(usize, &str) -> Answer + Send + Sync;

/// A tiny_http server on `port`, started after `start_after`, answering
/// request n (from 0) with `script(n, body)` and logging every request.
struct Server {
    hits: Arc<Mutex<Vec<Hit>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Without a delay, returns once the server listens, so the first
    /// request cannot be refused.
    fn start(port: u16, start_after: Duration, script: Box<Script>) -> Server {
        let hits = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (Arc::clone(&hits), Arc::clone(&stop));
        let (bound, listening) = mpsc::channel();
        let thread = thread::spawn(move || {
            thread::sleep(start_after);
            let server =
                tiny_http::Server::http(("127.0.0.1", port)).expect("bind the test server");
            let _ = bound.send(());
            while !s.load(Ordering::SeqCst) {
                let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(50)) else {
                    continue;
                };
                serve(req, &h, &*script);
            }
        });
        if start_after.is_zero() {
            listening.recv().expect("the test server started");
        }
        Server {
            hits,
            stop,
            thread: Some(thread),
        }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn header(req: &tiny_http::Request, name: &str) -> Option<String> {
    req.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str().to_string())
}

fn serve(mut req: tiny_http::Request, hits: &Mutex<Vec<Hit>>, script: &Script) {
    let mut body = String::new();
    req.as_reader().read_to_string(&mut body).unwrap();
    let n = hits.lock().unwrap().len();
    let answer = script(n, &body);
    let signature = header(&req, "X-Maildir-Events-Signature").unwrap_or_default();
    hits.lock().unwrap().push(Hit {
        key: header(&req, "Idempotency-Key").unwrap_or_default(),
        ids: header(&req, "X-Maildir-Events-Ids"),
        content_type: header(&req, "Content-Type").unwrap_or_default(),
        signature_ok: signature == expected_signature(body.as_bytes()),
        custom: header(&req, "X-Tenant"),
        body,
        at: Instant::now(),
        answer: answer.clone(),
    });
    if answer.delay.is_zero() {
        respond(req, answer);
    } else {
        // A slow answer comes from a thread of its own: the sender's retry
        // (after its read timeout) must not wait behind it, or it would be
        // answered only after the sender gave up on it too.
        thread::spawn(move || {
            thread::sleep(answer.delay);
            respond(req, answer);
        });
    }
}

fn respond(req: tiny_http::Request, answer: Answer) {
    let mut resp = tiny_http::Response::from_string(answer.body).with_status_code(answer.status);
    if let Some(secs) = answer.retry_after {
        resp.add_header(tiny_http::Header::from_bytes("Retry-After", secs.to_string()).unwrap());
    }
    if (300..400).contains(&answer.status) {
        resp.add_header(tiny_http::Header::from_bytes("Location", "http://elsewhere/").unwrap());
    }
    // The client may have given up (timeout); that is part of the test.
    let _ = req.respond(resp);
}

/// What the server expects, computed independently of the sink.
fn expected_signature(body: &[u8]) -> String {
    support::e2e::signature(SECRET, body)
}

/// Timeouts short enough for a quick test, long enough that a loaded
/// two-core machine never misses a prompt answer (the slow answer below is
/// [`SLOW`], well past them).
const CONNECT_TIMEOUT_MS: u64 = 2_000;
const READ_TIMEOUT_MS: u64 = 2_000;
/// An answer this late is a timeout for the client.
const SLOW: Duration = Duration::from_millis(5_000);

/// A config with short timeouts and a secret file in `dir`.
fn config(port: u16, dir: &tempfile::TempDir) -> WebhookConfig {
    let secret = dir.path().join("secret");
    let mut content = SECRET.to_vec();
    content.push(b'\n');
    std::fs::write(&secret, content).unwrap();
    let mut c = WebhookConfig::new(format!("http://127.0.0.1:{port}/hook"));
    c.secret_file = Some(secret);
    c.connect_timeout_ms = CONNECT_TIMEOUT_MS;
    c.read_timeout_ms = READ_TIMEOUT_MS;
    c.backoff_initial_ms = 20;
    c.backoff_max_ms = 200;
    c.retries = 100;
    c.deadline_ms = 20_000;
    c
}

/// Removes the entries that were immediately retried (same key as the
/// next entry), leaving one per delivered body.
fn collapse(keys: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for k in keys {
        if out.last() != Some(k) {
            out.push(k.clone());
        }
    }
    out
}

#[test]
fn down_failing_slow_and_refusing_server_gets_every_good_event_in_order() {
    let port = free_port();
    let bad = id(6);
    let script = Box::new(move |n: usize, body: &str| match n {
        0 | 1 => Answer::status(500),
        2 => Answer {
            delay: SLOW,
            ..Answer::status(200)
        },
        _ if body.contains(&format!("\"{bad}\"")) => Answer {
            body: "bad event: nope".into(),
            ..Answer::status(400)
        },
        _ => Answer::status(200),
    });
    // Down for the first 600 ms: connections are refused and retried.
    let server = Server::start(port, Duration::from_millis(600), script);
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(port, &dir);
    c.headers.insert("X-Tenant".into(), "acme".into());
    let mut sink = WebhookSink::new(c).unwrap();
    let batch = rows(1, 10);

    let started = Instant::now();
    let rejected = sink
        .send(&batch)
        .expect("send succeeds within the deadline");
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "it waited for the server"
    );

    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].seq, 6);
    assert!(
        rejected[0].reason.contains("HTTP 400"),
        "{}",
        rejected[0].reason
    );
    assert!(
        rejected[0].reason.contains("bad event: nope"),
        "{}",
        rejected[0].reason
    );

    let hits = server.hits();
    for h in &hits {
        assert!(h.signature_ok, "bad signature on {h:?}");
        assert_eq!(h.content_type, "application/json");
        assert_eq!(h.custom.as_deref(), Some("acme"));
        assert_eq!(
            h.event_ids(),
            vec![h.key.clone()],
            "single mode: key = the event's id"
        );
        assert!(h.ids.is_none(), "no id list in single mode");
    }
    assert_eq!(
        hits[0].key,
        id(1),
        "nothing was skipped while the server was down"
    );
    // The first three requests failed (500, 500, too slow): all event 1.
    assert!(hits[..3].iter().all(|h| h.key == id(1)));

    let accepted: Vec<&Hit> = hits.iter().filter(|h| h.ok()).collect();
    let keys: Vec<String> = accepted.iter().map(|h| h.key.clone()).collect();
    let want: Vec<String> = (1..=10).filter(|&s| s != 6).map(id).collect();
    assert_eq!(collapse(&keys), want, "every good event, in order");
    // Only the slow answer (which the client never saw) is repeated.
    for w in accepted.windows(2) {
        if w[0].key == w[1].key {
            assert!(
                !w[0].answer.delay.is_zero(),
                "repeat without a failure: {}",
                w[0].key
            );
        }
    }
    assert_eq!(accepted.len(), want.len() + 1);
}

#[test]
fn retry_after_is_honoured() {
    let port = free_port();
    let script = Box::new(|n: usize, _: &str| match n {
        0 => Answer {
            retry_after: Some(1),
            ..Answer::status(429)
        },
        _ => Answer::status(200),
    });
    let server = Server::start(port, Duration::ZERO, script);
    let dir = tempfile::tempdir().unwrap();
    let mut sink = WebhookSink::new(config(port, &dir)).unwrap();
    let rejected = sink.send(&rows(1, 2)).expect("send");
    assert!(rejected.is_empty());
    let hits = server.hits();
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0].key, hits[1].key);
    let waited = hits[1].at - hits[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "waited only {waited:?}"
    );
}

#[test]
fn a_server_that_keeps_failing_fails_the_batch_at_the_deadline() {
    let port = free_port();
    let _server = Server::start(
        port,
        Duration::ZERO,
        Box::new(|_, _: &str| Answer::status(503)),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(port, &dir);
    c.deadline_ms = 1_000;
    let mut sink = WebhookSink::new(c).unwrap();
    let started = Instant::now();
    let err = sink.send(&rows(1, 3)).expect_err("never accepted");
    let took = started.elapsed();
    // Without the deadline, 100 retries of up to 200 ms take about 20 s.
    assert!(took < Duration::from_secs(8), "took {took:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("deadline") && msg.contains("HTTP 503"),
        "{msg}"
    );
}

#[test]
fn the_retry_count_is_bounded_too() {
    let port = free_port();
    let server = Server::start(
        port,
        Duration::ZERO,
        Box::new(|_, _: &str| Answer::status(500)),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(port, &dir);
    c.retries = 2;
    let mut sink = WebhookSink::new(c).unwrap();
    let err = sink.send(&rows(1, 1)).expect_err("never accepted");
    assert!(
        err.to_string().contains("gave up after 3 attempts"),
        "{err}"
    );
    assert_eq!(server.hits().len(), 3);
}

#[test]
fn a_refused_batch_is_split_to_find_the_bad_event() {
    let port = free_port();
    let bad = id(5);
    let long = "x".repeat(300);
    let script = Box::new(move |_: usize, body: &str| {
        if body.contains(&format!("\"{bad}\"")) {
            Answer {
                body: long.clone(),
                ..Answer::status(422)
            }
        } else {
            Answer::status(200)
        }
    });
    let server = Server::start(port, Duration::ZERO, script);
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(port, &dir);
    c.batch_size = Some(3);
    let mut sink = WebhookSink::new(c).unwrap();
    let rejected = sink.send(&rows(1, 8)).expect("send");

    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].seq, 5);
    assert_eq!(
        rejected[0].reason,
        format!("HTTP 422: {}", "x".repeat(200)),
        "status and the first 200 bytes of the answer"
    );

    let hits = server.hits();
    let requests: Vec<(String, Option<String>)> = hits
        .iter()
        .map(|h| (h.key.clone(), h.ids.clone()))
        .collect();
    let r = |key: &str, ids: &str| (key.to_string(), Some(ids.to_string()));
    assert_eq!(
        requests,
        vec![
            r("t-1..t-3", "t-1,t-2,t-3"),
            r("t-4..t-6", "t-4,t-5,t-6"),
            r("t-4", "t-4"),
            r("t-5", "t-5"),
            r("t-6", "t-6"),
            r("t-7..t-8", "t-7,t-8"),
        ]
    );
    for h in &hits {
        assert!(h.signature_ok);
        assert!(
            h.body.starts_with('['),
            "batch bodies are arrays: {}",
            h.body
        );
        assert_eq!(h.ids.as_deref(), Some(h.event_ids().join(",").as_str()));
    }
    let delivered: Vec<String> = hits
        .iter()
        .filter(|h| h.ok())
        .flat_map(|h| h.event_ids())
        .collect();
    let want: Vec<String> = (1..=8).filter(|&s| s != 5).map(id).collect();
    assert_eq!(delivered, want);
}

#[test]
fn a_redirect_fails_the_batch_without_rejecting_it() {
    let port = free_port();
    let server = Server::start(
        port,
        Duration::ZERO,
        Box::new(|_, _: &str| Answer::status(301)),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut sink = WebhookSink::new(config(port, &dir)).unwrap();
    let err = sink
        .send(&rows(1, 2))
        .expect_err("a redirect is a configuration error");
    assert!(err.to_string().contains("http://elsewhere/"), "{err}");
    assert_eq!(server.hits().len(), 1, "no retries: they cannot help");
}

#[test]
fn an_empty_secret_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "\n").unwrap();
    let mut c = WebhookConfig::new("http://127.0.0.1:9/");
    c.secret_file = Some(secret);
    let err = WebhookSink::new(c).err().unwrap_or_default();
    assert!(err.contains("is empty"), "{err}");
}

#[test]
fn a_ca_file_must_hold_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let mut c = WebhookConfig::new("https://127.0.0.1:9/");
    c.ca_file = Some(ca.clone());
    let err = WebhookSink::new(c.clone()).err().unwrap_or_default();
    assert!(err.contains("no PEM certificate"), "{err}");
    std::fs::write(&ca, TEST_CA).unwrap();
    assert!(WebhookSink::new(c).is_ok());
}

/// A throwaway self-signed CA certificate (its key was thrown away); it
/// is only parsed here.
const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBnDCCAUGgAwIBAgIULNwT9udgAhETcZfLlpKXtH+f58wwCgYIKoZIzj0EAwIw
IzEhMB8GA1UEAwwYbWFpbGRpci1ldmVudHMgdGVzdCByb290MB4XDTI2MTEyODA0
MDg1NVoXDTM2MTEyNTA0MDg1NVowIzEhMB8GA1UEAwwYbWFpbGRpci1ldmVudHMg
dGVzdCByb290MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEeoFmL2levgyZ2vIE
45+oIe6g1CrtyHPir76Qseos6ZK32ecggFcwXGiqJHpqpunH0uomae8TUxQjeVIc
T46Z46NTMFEwHQYDVR0OBBYEFCD4vb3/kWSiZtRVOjiCYR5RDI6yMB8GA1UdIwQY
MBaAFCD4vb3/kWSiZtRVOjiCYR5RDI6yMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZI
zj0EAwIDSQAwRgIhAOBebgHDvOZf9hg4ow5ZYx60jjrfCcI6nZU26/vG7FhlAiEA
9PqWJdScBmvwFHLRKDtS5q/N7jiIxjp2viaO8P/sXwY=
-----END CERTIFICATE-----
";

/// The engine runs each sink on its own delivery thread.
#[test]
fn the_sink_can_move_to_a_delivery_thread() {
    fn send<T: Send + 'static>() {}
    send::<WebhookSink>();
}

// ======================================================= HTTPS, for real
//
// A TLS server on 127.0.0.1 with a certificate from a CA made in the test
// (rcgen), served with rustls; the real binary's `scan` delivers to it
// with `ca_file`. An unknown CA and a certificate for another host name are
// refused: the events stay in the outbox, `scan` exits 74 and says why in
// words an operator can act on.

mod tls {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};
    use std::thread;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    /// A CA made for one test.
    pub struct Ca {
        pub pem: String,
        issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    }

    impl Ca {
        pub fn new(name: &str) -> Ca {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let cert = params.self_signed(&key).unwrap();
            Ca {
                pem: cert.pem(),
                issuer: rcgen::Issuer::new(params, key),
            }
        }

        /// A server certificate for `names` (DNS names or IP addresses),
        /// and its key.
        fn leaf(&self, names: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
            let key = rcgen::KeyPair::generate().unwrap();
            let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            let params = rcgen::CertificateParams::new(names).unwrap();
            let cert = params.signed_by(&key, &self.issuer).unwrap();
            (
                cert.der().clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
        }
    }

    /// What the server saw.
    #[derive(Default)]
    pub struct Seen {
        /// Request bodies that arrived over TLS.
        pub bodies: Vec<String>,
        /// Handshakes that failed, as rustls on the server side put it.
        pub refused: Vec<String>,
    }

    /// An HTTPS server on 127.0.0.1 answering 200 to every POST.
    pub struct Server {
        pub port: u16,
        pub seen: Arc<Mutex<Seen>>,
    }

    impl Server {
        /// Serves a certificate for `names` signed by `ca`.
        pub fn start(ca: &Ca, names: &[&str]) -> Server {
            let (cert, key) = ca.leaf(names);
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert], key)
                .unwrap();
            let config = Arc::new(config);
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let seen = Arc::new(Mutex::new(Seen::default()));
            let s = seen.clone();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { return };
                    let config = config.clone();
                    let seen = s.clone();
                    thread::spawn(move || serve(stream, config, &seen));
                }
            });
            Server { port, seen }
        }

        pub fn bodies(&self) -> Vec<String> {
            self.seen.lock().unwrap().bodies.clone()
        }

        pub fn refused(&self) -> Vec<String> {
            self.seen.lock().unwrap().refused.clone()
        }
    }

    /// One connection: the handshake, then requests until the client
    /// closes it (keep-alive).
    fn serve(mut tcp: std::net::TcpStream, config: Arc<rustls::ServerConfig>, seen: &Mutex<Seen>) {
        let mut conn = rustls::ServerConnection::new(config).unwrap();
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut tcp) {
                seen.lock().unwrap().refused.push(e.to_string());
                return;
            }
        }
        let mut r = BufReader::new(rustls::StreamOwned::new(conn, tcp));
        loop {
            let mut length = 0usize;
            let mut line = String::new();
            // The request line and headers.
            let mut first = true;
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line == "\r\n" {
                    break;
                }
                if first {
                    first = false;
                    continue;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length.min(1 << 20)];
            if r.read_exact(&mut body).is_err() {
                return;
            }
            seen.lock()
                .unwrap()
                .bodies
                .push(String::from_utf8_lossy(&body).into_owned());
            let s = r.get_mut();
            let ok = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .and_then(|_| s.flush());
            if ok.is_err() {
                return;
            }
        }
    }
}

/// A store of one user with three new messages, its state, and a
/// configuration with one webhook sink.
struct TlsEnv {
    dir: tempfile::TempDir,
}

impl TlsEnv {
    fn new() -> TlsEnv {
        let dir = tempfile::tempdir().unwrap();
        let md = dir.path().join("Maildir");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(md.join(sub)).unwrap();
        }
        for i in 1..=3 {
            std::fs::write(
                md.join("new")
                    .join(format!("170000000{i}.M{i}P1.host,S=20")),
                format!("Subject: {i}\r\n\r\nbody{i}\r\n"),
            )
            .unwrap();
        }
        TlsEnv { dir }
    }

    /// Writes the configuration: a webhook to `url`, trusting `ca_pem`.
    fn configure(&self, url: &str, ca_pem: &str) {
        let ca = self.dir.path().join("ca.pem");
        std::fs::write(&ca, ca_pem).unwrap();
        std::fs::write(
            self.dir.path().join("config.toml"),
            format!(
                "[[sink]]\ntype = \"webhook\"\nurl = \"{url}\"\nca_file = \"{}\"\n\
                 connect_timeout_ms = 2000\nread_timeout_ms = 2000\nretries = 1\n\
                 deadline_ms = 4000\nbackoff_initial_ms = 20\nbackoff_max_ms = 50\n",
                ca.display()
            ),
        )
        .unwrap();
    }

    fn run(&self, command: &str) -> support::run::Run {
        let d = self.dir.path();
        let mut a = vec![
            std::ffi::OsString::from("--config"),
            d.join("config.toml").into(),
            command.into(),
            "--state".into(),
            d.join("state").into(),
        ];
        if command == "scan" {
            a.extend([
                "--emit-existing".into(),
                "--user".into(),
                "alice".into(),
                d.join("Maildir").into(),
            ]);
        }
        support::e2e::run(a, "warn")
    }

    /// Events waiting in the outbox, per `status`.
    fn waiting(&self) -> u64 {
        let out = self.run("status");
        assert_eq!(out.code, Some(0), "status: {}", out.stderr);
        let v: Value = serde_json::from_str(out.stdout.trim()).expect("status JSON");
        v["outbox"]["waiting"].as_u64().expect("outbox.waiting")
    }
}

/// The MessageNew events of a set of bodies (one event each).
fn new_events(bodies: &[String]) -> usize {
    bodies
        .iter()
        .filter_map(|b| serde_json::from_str::<Value>(b).ok())
        .filter(|v| v["event"] == "MessageNew")
        .count()
}

#[test]
fn https_with_ca_file_delivers_every_event() {
    let ca = tls::Ca::new("maildir-events test CA");
    let server = tls::Server::start(&ca, &["127.0.0.1"]);
    let env = TlsEnv::new();
    env.configure(&format!("https://127.0.0.1:{}/hook", server.port), &ca.pem);
    let out = env.run("scan");
    assert_eq!(
        out.code,
        Some(0),
        "scan to an HTTPS webhook with ca_file: {}",
        out.stderr
    );
    assert_eq!(
        new_events(&server.bodies()),
        3,
        "the server got: {:?}\nrefused handshakes: {:?}",
        server.bodies(),
        server.refused()
    );
    assert_eq!(env.waiting(), 0, "nothing waits after delivery");
}

/// `scan` against a server whose certificate the client must refuse:
/// exit 74, the reason on stderr, no request, the events kept; then a
/// server it trusts gets them.
fn refused_then_delivered(server: &tls::Server, words: &[&str], env: &TlsEnv) {
    let out = env.run("scan");
    assert_eq!(
        out.code,
        Some(74),
        "scan must fail (exit 74: the output failed)\nstderr: {}",
        out.stderr
    );
    let said = out.stderr.to_lowercase();
    for w in words {
        assert!(
            said.contains(&w.to_lowercase()),
            "stderr should say {w:?}:\n{}",
            out.stderr
        );
    }
    assert!(
        out.stderr.contains("outbox"),
        "stderr says the events wait in the outbox:\n{}",
        out.stderr
    );
    assert!(
        server.bodies().is_empty(),
        "no request may reach a server that is not trusted: {:?}",
        server.bodies()
    );
    assert!(
        !server.refused().is_empty(),
        "the server saw no refused handshake"
    );
    assert_eq!(env.waiting(), 3, "the three events wait in the outbox");

    // The operator fixes it: the right server and CA.
    let ca = tls::Ca::new("the right CA");
    let good = tls::Server::start(&ca, &["127.0.0.1"]);
    env.configure(&format!("https://127.0.0.1:{}/hook", good.port), &ca.pem);
    let out = env.run("scan");
    assert_eq!(out.code, Some(0), "scan after the fix: {}", out.stderr);
    assert_eq!(new_events(&good.bodies()), 3, "{:?}", good.bodies());
    assert_eq!(env.waiting(), 0);
}

#[test]
fn https_with_an_unknown_ca_is_refused_clearly() {
    let ca = tls::Ca::new("the server's CA");
    let other = tls::Ca::new("a CA the client trusts");
    let server = tls::Server::start(&ca, &["127.0.0.1"]);
    let env = TlsEnv::new();
    env.configure(
        &format!("https://127.0.0.1:{}/hook", server.port),
        &other.pem,
    );
    refused_then_delivered(
        &server,
        &[
            "UnknownIssuer",
            "not signed by a CA this sink trusts",
            "`ca_file`",
        ],
        &env,
    );
}

#[test]
fn https_to_a_wrong_host_name_is_refused_clearly() {
    let ca = tls::Ca::new("maildir-events test CA");
    // The certificate is for another name than the URL's host.
    let server = tls::Server::start(&ca, &["hooks.example.org"]);
    let env = TlsEnv::new();
    env.configure(&format!("https://127.0.0.1:{}/hook", server.port), &ca.pem);
    refused_then_delivered(
        &server,
        &[
            "certificate",
            "not valid for name \"127.0.0.1\"",
            "hooks.example.org",
            "host in `url`",
        ],
        &env,
    );
}

#[test]
fn watch_logs_a_refused_certificate_with_its_remedy_and_keeps_going() {
    let ca = tls::Ca::new("the server's CA");
    let other = tls::Ca::new("a CA the client trusts");
    let server = tls::Server::start(&ca, &["127.0.0.1"]);
    let env = TlsEnv::new();
    env.configure(
        &format!("https://127.0.0.1:{}/hook", server.port),
        &other.pem,
    );
    let d = env.dir.path();
    let w = support::live::Spawn::command(vec![
        "--config".into(),
        d.join("config.toml").into(),
        "watch".into(),
        "--state".into(),
        d.join("state").into(),
        "--emit-existing".into(),
        "--user".into(),
        "alice".into(),
        d.join("Maildir").into(),
    ])
    .start();
    let said = support::e2e::poll_opt(support::e2e::WAIT, || {
        let e = w.stderr();
        e.contains("cannot deliver").then_some(e)
    })
    .unwrap_or_else(|| panic!("no delivery warning in the log:\n{}", w.stderr()));
    for words in [
        "UnknownIssuer",
        "not signed by a CA this sink trusts",
        "`ca_file`",
        "events wait in the outbox",
    ] {
        assert!(
            said.contains(words),
            "the log should say {words:?}:\n{said}"
        );
    }
    assert!(server.bodies().is_empty(), "{:?}", server.bodies());
    // The watcher keeps running (and retrying) until it is stopped.
    w.stop();
}
