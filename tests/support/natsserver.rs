//! A `nats-server -js` child on loopback for the NATS tests
//! (`tests/sink_nats.rs`, `tests/delivery.rs`): skipped without the
//! server (with a line on stderr), except under CI (`CI=true` or `CI=1`),
//! where a missing server fails the test.

#![allow(dead_code)]

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Where `nats-server` is, if installed: on the PATH, or in `/usr/sbin`
/// (where Debian puts it, not on a normal user's PATH) or `/usr/bin`.
pub fn nats_server_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            "/usr/sbin".into(),
            "/usr/bin".into(),
            "/usr/local/sbin".into(),
        ])
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
}

/// True under CI (`CI=true` or `CI=1`), where a missing server is an error
/// instead of a reason to skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether to run a test needing `nats-server`: a skip line without it,
/// a failure on CI.
pub fn have_nats_server(test: &str) -> bool {
    if nats_server_binary().is_some() {
        return true;
    }
    assert!(
        !in_ci(),
        "{test}: nats-server is not installed (apt-get install nats-server); .ci/run must install it"
    );
    // Straight to fd 2, not `eprintln!`: libtest captures the macro's
    // output of passing tests, and a skip must be visible.
    let _ = writeln!(
        std::io::stderr(),
        "SKIP {test}: nats-server not installed (apt-get install nats-server); under CI=true this fails"
    );
    false
}

/// A `nats-server -js` child on a fixed port and store directory, so it
/// can be stopped and started again with its streams.
pub struct NatsServer {
    pub port: u16,
    store: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    pub fn start(port: u16, store: &Path) -> NatsServer {
        let mut s = NatsServer {
            port,
            store: store.to_path_buf(),
            child: None,
        };
        s.restart();
        s
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(nats_server_binary().expect("nats-server is installed"))
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < until, "nats-server did not start");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server with SIGTERM (a clean shutdown, so what it
    /// acknowledged is on disk) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = libc::pid_t::try_from(child.id()).expect("pid");
            // SAFETY: signals our own child process, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
