//! Quota events against a real Dovecot whose quota plugin keeps
//! `maildirsize`: deliveries over LMTP until usage passes the 10K limit,
//! a `scan` after each, then EXPUNGEs over IMAP until usage is clearly
//! under it again.
//!
//! The harness (`tests/support/dovecot.rs`) writes a fixed `dovecot.conf`;
//! this test appends the quota settings to it and makes the running master
//! reload its configuration (SIGHUP) before the first delivery, so every
//! LMTP and IMAP process it starts has the quota plugin.
//!
//! Skipped (with a line on stderr) when Dovecot is not installed, unless
//! `CI=true`. Run: `cargo test --test dovecot_quota -- --nocapture`.

mod support;

use std::fs;
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::events::summary;
use support::{Dovecot, Imap, PASSWORD, run_scan};

const ALICE: &str = "alice@example.test";
/// The quota rule: 10 KiB.
const LIMIT: u64 = 10 * 1024;

/// Dovecot's quota plugin with a 10K storage rule. `quota_grace` is set
/// to Dovecot's default explicitly: the delivery that crosses the limit is
/// accepted when the user was under it before and it ends at most 10%
/// (1 KiB) over; the next one is refused. Messages here are under 1 KiB
/// as stored, so the crossing delivery is always accepted.
const QUOTA_CONF: &str = r#"
# added by tests/dovecot_quota.rs
mail_plugins = $mail_plugins quota
plugin {
  quota = maildir:User quota
  quota_rule = *:storage=10K
  quota_grace = 10%%
}
"#;

/// Appends [`QUOTA_CONF`] to the instance's config, checks Dovecot accepts
/// it, and makes the master reload it.
fn enable_quota(dovecot: &Dovecot) {
    let conf = dovecot.root().join("etc/dovecot.conf");
    let mut text = fs::read_to_string(&conf).unwrap();
    text.push_str(QUOTA_CONF);
    fs::write(&conf, &text).unwrap();
    let binary = support::dovecot::dovecot_binary().unwrap();
    let check = Command::new(&binary)
        .arg("-c")
        .arg(&conf)
        .arg("-n")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && shown.contains("quota_rule = *:storage=10K"),
        "dovecot -n with the quota settings failed ({}):\n{}\n{shown}",
        check.status,
        String::from_utf8_lossy(&check.stderr)
    );
    let pid: i32 = fs::read_to_string(dovecot.root().join("run/master.pid"))
        .expect("master.pid")
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) with SIGHUP (reload) to the Dovecot master this test
    // started through the harness.
    let r = unsafe { libc::kill(pid, libc::SIGHUP) };
    assert_eq!(r, 0, "SIGHUP to the dovecot master {pid}");
    // The master logs the reload; processes it starts afterwards use the
    // new configuration.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = fs::read_to_string(dovecot.log_path()).unwrap_or_default()
            + &fs::read_to_string(dovecot.root().join("log/dovecot-info.log")).unwrap_or_default();
        if log.contains("SIGHUP received") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dovecot did not log the reload:\n{}",
            dovecot.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The listeners and the auth process may be replaced during the
    // reload: wait until LMTP transactions work several times in a row.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut good = 0;
    while good < 5 {
        // A whole transaction but the message: userdb lookup and mail
        // user set-up (with the quota plugin) included.
        let ok = lmtp_session(dovecot.lmtp_port()).and_then(|mut r| {
            let mail = send(&mut r, "MAIL FROM:<sender@example.test>")?;
            let rcpt = send(&mut r, &format!("RCPT TO:<{ALICE}>"))?;
            send(&mut r, "QUIT")?;
            Ok(mail.0 / 100 == 2 && rcpt.0 / 100 == 2)
        });
        if matches!(ok, Ok(true)) {
            good += 1;
        } else {
            good = 0;
        }
        assert!(
            Instant::now() < deadline,
            "LMTP does not work after the reload:\n{}",
            dovecot.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------- LMTP

/// Reads one (possibly multi-line) reply: its code and text.
fn reply(reader: &mut BufReader<TcpStream>) -> io::Result<(u16, String)> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("LMTP server closed the connection; so far: {text}"),
            ));
        }
        text.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            return Ok((code, text));
        }
    }
}

fn send(reader: &mut BufReader<TcpStream>, command: &str) -> io::Result<(u16, String)> {
    reader
        .get_mut()
        .write_all(format!("{command}\r\n").as_bytes())?;
    reply(reader)
}

/// Connects and reads the greeting and the LHLO reply: an LMTP session
/// ready for a transaction.
fn lmtp_session(port: u16) -> io::Result<BufReader<TcpStream>> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut r = BufReader::new(stream);
    let (code, text) = reply(&mut r)?;
    assert_eq!(code / 100, 2, "LMTP greeting: {text}");
    let (code, text) = send(&mut r, "LHLO client.example.test")?;
    assert_eq!(code / 100, 2, "LHLO: {text}");
    Ok(r)
}

/// Delivers `message` (CRLF lines, no line starting with `.`) to `rcpt`
/// over LMTP. Returns `Ok` when Dovecot stored it, `Err(reply)` when it
/// refused it at RCPT or DATA (an over-quota refusal is 552 or 452).
///
/// A connection that fails before the message was sent (a listener being
/// replaced by the configuration reload) is retried.
fn deliver(port: u16, rcpt: &str, message: &[u8]) -> Result<(), String> {
    let start = Instant::now();
    let mut r = loop {
        match lmtp_session(port) {
            Ok(r) => break r,
            Err(e) if start.elapsed() < Duration::from_secs(10) => {
                eprintln!("LMTP connection failed ({e}); retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("LMTP to port {port}: {e}"),
        }
    };
    let step = |r: &mut BufReader<TcpStream>, command: &str| {
        send(r, command).unwrap_or_else(|e| panic!("LMTP {command}: {e}"))
    };
    let (code, text) = step(&mut r, "MAIL FROM:<sender@example.test>");
    assert_eq!(code / 100, 2, "MAIL: {text}");
    let (code, text) = step(&mut r, &format!("RCPT TO:<{rcpt}>"));
    if code / 100 != 2 {
        let _ = send(&mut r, "QUIT");
        return Err(text);
    }
    let (code, text) = step(&mut r, "DATA");
    assert_eq!(code / 100, 3, "DATA: {text}");
    let mut data = message.to_vec();
    data.extend_from_slice(b".\r\n");
    r.get_mut().write_all(&data).expect("write LMTP data");
    let (code, text) = reply(&mut r).expect("LMTP reply to the message");
    let _ = send(&mut r, "QUIT");
    if code / 100 == 2 { Ok(()) } else { Err(text) }
}

/// A message of about `size` bytes (CRLF lines).
fn message(i: u32, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Sender <sender@example.test>\r\nTo: Alice <alice@example.test>\r\n\
         Subject: quota {i}\r\nMessage-ID: <quota-{i}@example.test>\r\n\
         Date: Sat, 28 Nov 2026 09:15:02 +0100\r\n\r\n"
    );
    while m.len() + 72 < size {
        m.push_str(&format!("{:070}\r\n", i));
    }
    m.push_str("end\r\n");
    m.into_bytes()
}

// --------------------------------------------------------------- usage

/// Every message file of the Maildir (all folders, `new/` and `cur/`).
fn message_files(maildir: &Path) -> Vec<PathBuf> {
    let mut folders = vec![maildir.to_path_buf()];
    for e in fs::read_dir(maildir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && p.file_name().unwrap().to_string_lossy().starts_with('.') {
            folders.push(p);
        }
    }
    let mut out = Vec::new();
    for f in folders {
        for sub in ["new", "cur"] {
            if let Ok(rd) = fs::read_dir(f.join(sub)) {
                out.extend(rd.map(|e| e.unwrap().path()));
            }
        }
    }
    out
}

/// Usage as we count it: the sum of the `S=` sizes in the names (every
/// file Dovecot writes has one), and the number of messages.
fn usage(maildir: &Path) -> (u64, u64) {
    let files = message_files(maildir);
    let bytes = files
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let base = name.split(':').next().unwrap();
            base.split(',')
                .find_map(|f| f.strip_prefix("S="))
                .unwrap_or_else(|| panic!("Dovecot wrote {name} without S="))
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    (bytes, files.len() as u64)
}

/// `maildirsize`: line 1's storage limit, and the sums of the deltas
/// (Dovecot's own idea of usage).
fn maildirsize(maildir: &Path) -> (u64, i64, i64) {
    let text = fs::read_to_string(maildir.join("maildirsize")).unwrap_or_else(|e| {
        panic!("no maildirsize ({e}): is Dovecot's quota plugin on? (the reload did not apply)")
    });
    let mut lines = text.lines();
    let def = lines.next().unwrap();
    let storage = def
        .split(',')
        .find_map(|i| i.trim().strip_suffix('S'))
        .unwrap_or_else(|| panic!("no storage limit in maildirsize line 1: {def:?}"))
        .trim()
        .parse()
        .unwrap();
    let (mut bytes, mut count) = (0i64, 0i64);
    for l in lines {
        let v: Vec<i64> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() == 2 {
            bytes += v[0];
            count += v[1];
        }
    }
    (storage, bytes, count)
}

fn quota_events(evs: &[Value]) -> Vec<&Value> {
    evs.iter()
        .filter(|e| e["event"].as_str().is_some_and(|k| k.starts_with("Quota")))
        .collect()
}

fn show(evs: &[Value]) -> String {
    evs.iter().map(|e| format!("\n  {e}")).collect()
}

/// Checks a quota event against usage and Dovecot's limit.
fn check_numbers(ev: &Value, kind: &str, (bytes, count): (u64, u64), limit_bytes: u64) {
    assert_eq!(ev["event"], kind, "{ev}");
    assert_eq!(ev["user"], ALICE, "{ev}");
    assert_eq!(
        ev["uri"],
        format!("imap://alice%40example.test@{}/INBOX", support::SERVER_NAME),
        "{ev}"
    );
    assert_eq!(
        ev["diskQuota"].as_u64(),
        Some(limit_bytes / 1024),
        "diskQuota must be maildirsize's {limit_bytes} bytes in KiB: {ev}"
    );
    assert_eq!(ev["diskUsed"].as_u64(), Some(bytes.div_ceil(1024)), "{ev}");
    assert_eq!(ev["messages"].as_u64(), Some(count), "{ev}");
    assert!(
        ev.get("maxMessages").is_none(),
        "Dovecot set no count limit: {ev}"
    );
}

#[test]
fn quota_events_follow_dovecots_maildirsize_limit() {
    let Some(dovecot) = Dovecot::start() else {
        return;
    };
    enable_quota(&dovecot);
    let maildir = dovecot.maildir(ALICE);
    let state = tempfile::tempdir().unwrap();
    // Quota on, with no limit of our own: Dovecot's maildirsize sets it.
    let config = state.path().join("config.toml");
    fs::write(&config, "[quota]\n").unwrap();
    let config_arg = config.to_str().unwrap();
    let scan = || {
        run_scan(
            &state.path().join("db"),
            &maildir,
            ALICE,
            &["--config", config_arg, "--uid-wait-ms", "0"],
        )
    };

    // The first delivery creates the Maildir and maildirsize; the first
    // scan is the silent baseline.
    deliver(dovecot.lmtp_port(), ALICE, &message(1, 800)).expect("first delivery");
    let (limit, _, _) = maildirsize(&maildir);
    assert_eq!(limit, LIMIT, "maildirsize line 1");
    let evs = scan();
    assert!(evs.is_empty(), "baseline:{}", show(&evs));

    // Deliver until usage reaches the limit and Dovecot refuses one.
    let mut used = usage(&maildir);
    let mut exceeded_at = None;
    let mut refused = false;
    let mut log = Vec::new();
    for i in 2..=20 {
        let before = used;
        let result = deliver(dovecot.lmtp_port(), ALICE, &message(i, 800));
        used = usage(&maildir);
        let (limit, dovecot_bytes, dovecot_count) = maildirsize(&maildir);
        let evs = scan();
        log.push(format!(
            "delivery {i}: {} → usage {used:?} (Dovecot's maildirsize: {dovecot_bytes} bytes, {dovecot_count} messages, limit {limit}); events:{}",
            match &result {
                Ok(()) => "stored".to_string(),
                Err(r) => format!("refused ({})", r.trim()),
            },
            evs.iter().map(|e| format!("\n    {}", summary(e))).collect::<String>()
        ));
        let context = || log.join("\n");
        // Dovecot counts what we count.
        assert_eq!(
            (dovecot_bytes, dovecot_count),
            (used.0 as i64, used.1 as i64),
            "maildirsize's usage differs from the sum of S= sizes\n{}",
            context()
        );
        let q = quota_events(&evs);
        if before.0 < LIMIT && used.0 >= LIMIT {
            assert_eq!(q.len(), 1, "one QuotaExceed at the crossing\n{}", context());
            check_numbers(q[0], "QuotaExceed", used, limit);
            exceeded_at = Some(i);
        } else {
            assert!(q.is_empty(), "no quota event here\n{}", context());
        }
        match result {
            Ok(()) => {
                assert!(used.0 - before.0 <= 1024, "messages must stay under 1 KiB");
                assert!(used.1 == before.1 + 1, "{}", context());
                assert!(
                    evs.iter().any(|e| e["event"] == "MessageNew"),
                    "{}",
                    context()
                );
            }
            Err(reply) => {
                assert!(
                    reply.starts_with("552") || reply.starts_with("452"),
                    "an over-quota refusal: {reply}\n{}",
                    context()
                );
                assert!(before.0 >= LIMIT, "refused under the limit\n{}", context());
                assert_eq!(used, before, "{}", context());
                assert!(evs.is_empty(), "{}", context());
                refused = true;
                break;
            }
        }
    }
    let context = log.join("\n");
    assert!(
        exceeded_at.is_some(),
        "usage never reached the limit\n{context}"
    );
    assert!(refused, "Dovecot never refused a delivery\n{context}");
    eprintln!("{context}");

    // EXPUNGE the first messages until usage is clearly under the limit
    // (1% under it): one QuotaWithin, at that step only.
    let mut imap = Imap::login(dovecot.imap_port(), ALICE, PASSWORD);
    imap.select("INBOX");
    let mut uids = imap.uid_search_all();
    uids.sort();
    let mut within = false;
    for uid in uids {
        let before = used;
        imap.uid_store(&uid.to_string(), "+FLAGS", &["\\Deleted"]);
        imap.expunge();
        used = usage(&maildir);
        let (limit, dovecot_bytes, _) = maildirsize(&maildir);
        let evs = scan();
        assert_eq!(
            dovecot_bytes, used.0 as i64,
            "maildirsize vs S= after EXPUNGE"
        );
        let step = format!(
            "EXPUNGE UID {uid}: usage {before:?} → {used:?}; events:{}",
            show(&evs)
        );
        assert!(evs.iter().any(|e| e["event"] == "MessageExpunge"), "{step}");
        let clearly_under = (used.0 as f64) < LIMIT as f64 * 0.99;
        let q = quota_events(&evs);
        if clearly_under && !within {
            assert_eq!(q.len(), 1, "one QuotaWithin\n{step}");
            check_numbers(q[0], "QuotaWithin", used, limit);
            within = true;
            eprintln!("{step}");
            break;
        }
        assert!(q.is_empty(), "no quota event yet\n{step}");
    }
    assert!(within, "usage never went clearly under the limit");
    imap.logout();
    let evs = scan();
    assert!(evs.is_empty(), "nothing left to report:{}", show(&evs));
}
