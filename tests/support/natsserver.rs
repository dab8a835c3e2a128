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

/// A three-node `nats-server` cluster on loopback (JetStream clustered,
/// routes between every pair), each node with its own store directory and
/// monitoring port, so one node can be stopped and started again.
pub struct NatsCluster {
    nodes: Vec<ClusterNode>,
}

struct ClusterNode {
    port: u16,
    route_port: u16,
    monitor_port: u16,
    store: PathBuf,
    child: Option<Child>,
}

impl NatsCluster {
    /// Starts three nodes under `dir` and waits until JetStream has a
    /// metadata leader (streams can be created).
    pub fn start(dir: &Path) -> NatsCluster {
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let nodes = (0..3)
            .map(|i| ClusterNode {
                port: free(),
                route_port: free(),
                monitor_port: free(),
                store: dir.join(format!("node{}", i + 1)),
                child: None,
            })
            .collect();
        let mut c = NatsCluster { nodes };
        for i in 0..3 {
            c.restart(i);
        }
        let until = Instant::now() + Duration::from_secs(60);
        while !(0..3).any(|i| {
            c.monitor(i, "/jsz")
                .is_some_and(|j| j.contains("\"leader\""))
        }) {
            assert!(Instant::now() < until, "the NATS cluster elected no leader");
            thread::sleep(Duration::from_millis(100));
        }
        c
    }

    /// Every node's client URL, comma-separated (what a sink is given).
    pub fn urls(&self) -> String {
        (0..3).map(|i| self.url(i)).collect::<Vec<_>>().join(",")
    }

    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    /// Starts node `i` (again) and waits until it accepts clients.
    pub fn restart(&mut self, i: usize) {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.route_port))
            .collect();
        let n = &mut self.nodes[i];
        assert!(n.child.is_none(), "node {i} is running");
        let child = Command::new(nats_server_binary().expect("nats-server is installed"))
            .args(["-js", "-a", "127.0.0.1", "-p", &n.port.to_string()])
            .args(["-m", &n.monitor_port.to_string()])
            .args(["--server_name", &format!("n{}", i + 1)])
            .args(["--cluster_name", "mail"])
            .args(["--cluster", &format!("nats://127.0.0.1:{}", n.route_port)])
            .args(["--routes", &routes.join(",")])
            .arg("-sd")
            .arg(&n.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        n.child = Some(child);
        let until = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", n.port)).is_err() {
            assert!(Instant::now() < until, "node {i} did not start");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops node `i` with SIGKILL: a crash, not a clean shutdown.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The node our clients are connected to now: the one whose `/connz`
    /// lists a client connection other than a monitoring one.
    pub fn connected_node(&self, client_name_hint: &str) -> Option<usize> {
        (0..3).find(|&i| {
            self.monitor(i, "/connz")
                .is_some_and(|j| j.contains(client_name_hint))
        })
    }

    /// A GET of the node's monitoring endpoint, the body as text.
    pub fn monitor(&self, i: usize, path: &str) -> Option<String> {
        use std::io::Read;
        let mut s = TcpStream::connect(("127.0.0.1", self.nodes[i].monitor_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        body.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
