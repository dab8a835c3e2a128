//! Secrets never reach stderr, `check-config` or `status`: the binary runs
//! `scan` and `watch` at `MAILDIR_EVENTS_LOG=debug` against a webhook that
//! fails in every way (HTTP 500, connection refused, no answer in time, a
//! TLS handshake with a plain HTTP port) and a NATS server that is not
//! there, each with a URL holding a user, a password and a token, a header
//! and an HMAC secret. The output must name the host, and never one of
//! those.

mod support;
use support::sinkutil;

use std::ffi::OsStr;
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::thread;
use std::time::Duration;

use sinkutil::{command, free_port, maildir, wait_for};

const USER: &str = "alice@example.org";
const SECRETS: [&str; 6] = [
    "hookuser",
    "hookpass",
    "tok3nvalue",
    "hdrs3cretvalue",
    "hmacs3cretvalue",
    "natspass",
];

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn assert_clean(what: &str, text: &str) {
    for s in SECRETS.iter().chain(["natsuser", "natstok3n"].iter()) {
        assert!(!text.contains(s), "{what}: {s:?} printed:\n{text}");
    }
    assert!(
        text.contains("127.0.0.1"),
        "{what}: the host is not named:\n{text}"
    );
}

/// A configuration with one webhook sink at `url` (plus the secrets).
fn webhook_config(dir: &Path, url: &str) -> std::path::PathBuf {
    let secret = dir.join("hmac");
    std::fs::write(&secret, "hmacs3cretvalue\n").unwrap();
    let mut perm = std::fs::metadata(&secret).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o600);
    std::fs::set_permissions(&secret, perm).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[sink]]
type = "webhook"
url = "{url}"
secret_file = "{}"
headers = {{ Authorization = "Bearer hdrs3cretvalue", X-Api-Key = "hdrs3cretvalue" }}
connect_timeout_ms = 1000
read_timeout_ms = 500
retries = 2
deadline_ms = 3000
backoff_initial_ms = 50
backoff_max_ms = 100
"#,
            secret.display()
        ),
    )
    .unwrap();
    config
}

fn nats_config(dir: &Path, url: &str) -> std::path::PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[sink]]
type = "nats"
url = "{url}"
connect_timeout_ms = 500
ack_timeout_ms = 500
retries = 2
deadline_ms = 2000
backoff_initial_ms = 50
backoff_max_ms = 100
"#
        ),
    )
    .unwrap();
    config
}

fn refs(a: &[std::ffi::OsString]) -> Vec<&OsStr> {
    a.iter().map(|s| s.as_os_str()).collect()
}

/// `scan` (must fail: the sink does) and `watch` (until it warned that
/// it cannot deliver), then `check-config` and `status`: none may print a
/// secret.
fn run_all(what: &str, config: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let (root, state) = (tmp.path().join("Maildir"), tmp.path().join("state"));
    maildir(&root, 2);
    let args = |cmd: &'static str| -> Vec<std::ffi::OsString> {
        let mut a = vec![
            os("--config").to_owned(),
            config.as_os_str().to_owned(),
            os(cmd).to_owned(),
        ];
        if cmd != "status" {
            a.extend([
                os("--emit-existing").to_owned(),
                os("--user").to_owned(),
                os(USER).to_owned(),
            ]);
        }
        a.extend([os("--state").to_owned(), state.as_os_str().to_owned()]);
        if cmd != "status" {
            a.push(root.as_os_str().to_owned());
        }
        a
    };

    let scan = command(&refs(&args("scan")), "debug").output().unwrap();
    let stderr = String::from_utf8_lossy(&scan.stderr);
    assert_eq!(scan.status.code(), Some(74), "{what} scan: {stderr}");
    assert!(
        stderr.contains("kept in the outbox"),
        "{what} scan: {stderr}"
    );
    assert_clean(&format!("{what} scan"), &stderr);

    let mut watch = command(&refs(&args("watch")), "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = watch.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match err.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    all.extend_from_slice(&buf[..n]);
                    if String::from_utf8_lossy(&all).contains("cannot deliver") {
                        let _ = tx.send(());
                    }
                }
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    // The first failed delivery is warned about once its deadline passed.
    let warned = rx.recv_timeout(Duration::from_secs(60)).is_ok();
    // SAFETY: kill(2) of our own child, still waited for.
    unsafe { libc::kill(watch.id() as libc::pid_t, libc::SIGTERM) };
    let status = wait_for(&mut watch, Duration::from_secs(60)).expect("watch exits");
    let stderr = reader.join().unwrap();
    assert!(
        warned,
        "{what} watch: no 'cannot deliver' warning:\n{stderr}"
    );
    assert_eq!(status.code(), Some(0), "{what} watch: {stderr}");
    assert_clean(&format!("{what} watch"), &stderr);

    let check = command(&refs(&args("check-config")), "debug")
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "{what} check-config: {out}");
    assert_clean(&format!("{what} check-config"), &out);

    let st = command(&refs(&args("status")), "debug").output().unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&st.stdout),
        String::from_utf8_lossy(&st.stderr)
    );
    assert!(st.status.success(), "{what} status: {out}");
    assert_clean(&format!("{what} status"), &out);
}

/// An HTTP server answering every request with 500 (or holding it
/// unanswered for `hold`).
fn http_server(port: u16, hold: Option<Duration>) {
    let server = tiny_http::Server::http(("127.0.0.1", port)).unwrap();
    thread::spawn(move || {
        for req in server.incoming_requests() {
            match hold {
                Some(d) => {
                    thread::spawn(move || {
                        thread::sleep(d);
                        let _ = req.respond(tiny_http::Response::empty(200));
                    });
                }
                None => {
                    let _ = req.respond(
                        tiny_http::Response::from_string(
                            "failed for http://hookuser:hookpass@127.0.0.1/?token=tok3nvalue",
                        )
                        .with_status_code(500),
                    );
                }
            }
        }
    });
}

fn url(scheme: &str, port: u16) -> String {
    format!("{scheme}://hookuser:hookpass@127.0.0.1:{port}/hook?token=tok3nvalue&x=1")
}

#[test]
fn webhook_500_prints_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    http_server(port, None);
    run_all("500", &webhook_config(tmp.path(), &url("http", port)));
}

#[test]
fn webhook_connection_refused_prints_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    run_all("refused", &webhook_config(tmp.path(), &url("http", port)));
}

#[test]
fn webhook_timeout_prints_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    http_server(port, Some(Duration::from_secs(5)));
    run_all("timeout", &webhook_config(tmp.path(), &url("http", port)));
}

#[test]
fn webhook_tls_to_a_plain_port_prints_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    http_server(port, None);
    run_all("tls", &webhook_config(tmp.path(), &url("https", port)));
}

#[test]
fn nats_credentials_to_a_closed_port_print_no_secret() {
    let port = {
        // Bound and dropped: nothing listens there.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for u in [
        format!("nats://natsuser:natspass@127.0.0.1:{port}"),
        format!("nats://natstok3n@127.0.0.1:{port}"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        run_all(
            &u.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            &nats_config(tmp.path(), &u),
        );
    }
}

/// The redaction itself prints no secret even when the text is the raw
/// configuration: `check-config` of a file with a mistake next to the URL.
#[test]
fn a_configuration_error_prints_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        "[[sink]]\ntype = \"webhook\"\nurl = \"ftp://hookuser:hookpass@127.0.0.1/x?token=tok3nvalue\"\n",
    )
    .unwrap();
    // A real (empty) Maildir: a path that is none would be exit 66.
    let maildir = tmp.path().join("Maildir");
    std::fs::create_dir_all(maildir.join("cur")).unwrap();
    let out = command(
        &[
            os("--config"),
            config.as_os_str(),
            os("scan"),
            os("--state"),
            tmp.path().join("s").as_os_str(),
            os("--user"),
            os(USER),
            maildir.as_os_str(),
        ],
        "debug",
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert_clean("config error", &stderr);
}
