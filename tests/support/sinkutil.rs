//! Helpers shared by the sink tests: outbox rows shaped like the store's.

#![allow(dead_code)]

use std::net::TcpListener;

use maildir_events::state::store::OutboxRow;
use serde_json::json;

/// The event id the store would give `seq` (instance `t`).
pub fn id(seq: i64) -> String {
    format!("t-{seq}")
}

/// One outbox row: a MessageNew for `user`, with the keys the store adds.
pub fn row(seq: i64, user: &str) -> OutboxRow {
    let body = json!({
        "event": "MessageNew",
        "user": user,
        "uri": format!("imap://{user}@mx/INBOX;UIDVALIDITY=1/;UID={seq}"),
        "vnd.maildir.seq": seq,
        "vnd.maildir.eventId": id(seq),
    });
    OutboxRow {
        seq,
        event_id: id(seq),
        body: body.to_string(),
    }
}

/// Rows `first..=last`, all for one user.
pub fn rows(first: i64, last: i64) -> Vec<OutboxRow> {
    (first..=last)
        .map(|s| row(s, "alice@example.org"))
        .collect()
}

/// A port nobody listens on right now (bound to 127.0.0.1:0, then let go),
/// so a server can be started on it later.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

// ------------------------------------------------------------ the binary

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_maildir-events");

/// A Maildir at `root` (`cur`, `new`, `tmp`) with `n` messages in `new/`.
pub fn maildir(root: &std::path::Path, n: usize) {
    for d in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for i in 0..n {
        deliver(root, &format!("seed{i}"));
    }
}

/// Delivers one message into `new/` the Maildir way (tmp, then rename).
pub fn deliver(root: &std::path::Path, name: &str) {
    let tmp = root.join("tmp").join(name);
    std::fs::write(
        &tmp,
        format!("From: a@example.org\r\nSubject: {name}\r\n\r\nbody\r\n"),
    )
    .unwrap();
    std::fs::rename(&tmp, root.join("new").join(format!("{name},S=64"))).unwrap();
}

/// `maildir-events ARGS…` with a fresh environment (no systemd, no state
/// directory from the caller) and `MAILDIR_EVENTS_LOG` set.
pub fn command(args: &[&std::ffi::OsStr], log: &str) -> std::process::Command {
    let mut c = std::process::Command::new(BIN);
    c.args(args)
        .env("MAILDIR_EVENTS_LOG", log)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("STATE_DIRECTORY")
        .env_remove("WATCHDOG_USEC")
        .stdin(std::process::Stdio::null());
    c
}

/// The number in "N event(s) kept" of a message, if any.
pub fn kept_in(stderr: &str) -> Option<u64> {
    let at = stderr.find(" event(s) kept")?;
    let digits: String = stderr[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().ok()
}

/// Waits up to `limit` for `child` to exit, polling; kills it after that.
pub fn wait_for(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Reads a child's pipe to its end in a thread.
pub fn collect(mut r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}
