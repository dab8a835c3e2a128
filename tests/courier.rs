//! Against the real Courier-IMAP `imapd`: a session of deliveries, SELECT,
//! APPEND, STOREs with a keyword, EXPUNGE, CREATE, SUBSCRIBE, COPY, a
//! delivery into the new folder, RENAME and DELETE, once while `watch`
//! runs and once with `scan` after every step. Every event is compared with
//! what Courier itself answered (UIDVALIDITY from SELECT and STATUS,
//! APPENDUID, COPYUID, UID FETCH, LSUB), and the tally of right events is
//! printed.
//!
//! Courier's `imapd` runs preauthenticated: `AUTHENTICATED=user` in its
//! environment and the Maildir as its argument, talking IMAP on stdin and
//! stdout (here one end of a socket pair), so no authdaemon and no port are
//! needed. Debian's `courier-imap` package conflicts with Dovecot's IMAP
//! server, so the binary is not installed: `.ci/run` unpacks it from the
//! package into `target/courier-imap/` (or set `COURIER_IMAPD`).
//! `maildirmake` comes from `courier-base`, which installs beside Dovecot.

mod support;

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::imap::Imap;
use support::live::{Spawn, Watch, body};
use support::parse_imap_url;

const USER: &str = "carol";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Courier's `imapd`: `$COURIER_IMAPD`, else what `.ci/run` unpacked.
fn imapd_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("COURIER_IMAPD") {
        return Some(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let p = target.join("courier-imap/usr/bin/imapd");
    p.is_file().then_some(p)
}

fn maildirmake_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("maildirmake"))
        .find(|p| p.is_file())
}

/// The programs, or `None` (with a note on stderr) to skip; under CI a
/// missing program fails the test.
fn programs() -> Option<(PathBuf, PathBuf)> {
    match (imapd_binary(), maildirmake_binary()) {
        (Some(i), Some(m)) => Some((i, m)),
        (i, m) => {
            let msg = format!(
                "Courier-IMAP test needs imapd ({}) and maildirmake ({}): run .ci/run, or \
                 `apt-get install courier-base` and `apt-get download courier-imap && dpkg-deb -x courier-imap_*.deb target/courier-imap`",
                i.map_or("missing".into(), |p| p.display().to_string()),
                m.map_or("missing".into(), |p| p.display().to_string()),
            );
            assert!(!in_ci(), "{msg}");
            eprintln!("SKIPPED: {msg}");
            None
        }
    }
}

/// One preauthenticated Courier session on `maildir`.
struct Courier {
    imap: Option<Imap>,
    child: Child,
}

impl Courier {
    fn start(imapd: &Path, maildir: &Path, home: &Path) -> Courier {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let out: OwnedFd = theirs.try_clone().unwrap().into();
        let child = Command::new(imapd)
            .arg(maildir)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", home)
            .env("AUTHENTICATED", USER)
            .env(
                "IMAP_CAPABILITY",
                "IMAP4rev1 UIDPLUS CHILDREN NAMESPACE IDLE",
            )
            .env("IMAP_KEYWORDS", "1")
            .env("IMAP_USELOCKS", "1")
            // No automatic Trash purge or move-to-Trash: what the test
            // does is all that happens.
            .env("IMAP_EMPTYTRASH", "")
            .env("IMAP_MOVE_EXPUNGE_TO_TRASH", "0")
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::from(out))
            .stderr(Stdio::null())
            .spawn()
            .expect("start Courier imapd");
        Courier {
            imap: Some(Imap::over(Box::new(ours))),
            child,
        }
    }

    fn imap(&mut self) -> &mut Imap {
        self.imap.as_mut().unwrap()
    }

    /// UID of each message by its Subject, from `UID FETCH`.
    fn uids_by_subject(&mut self) -> BTreeMap<String, u32> {
        let r = self
            .imap()
            .command("UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
        let mut out = BTreeMap::new();
        for line in &r.untagged {
            let Some(i) = line.find("UID ") else { continue };
            let uid: u32 = line[i + 4..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap();
            if let Some(j) = line.find("Subject: ") {
                let subject: String = line[j + 9..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .collect();
                out.insert(subject, uid);
            }
        }
        out
    }

    fn lsub(&mut self) -> Vec<String> {
        let r = self.imap().command("LSUB \"\" \"*\"");
        let mut v: Vec<String> = r
            .untagged
            .iter()
            .filter_map(|l| l.strip_prefix("LSUB "))
            .map(|l| l.rsplit(' ').next().unwrap().trim_matches('"').to_string())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Courier {
    fn drop(&mut self) {
        if let Some(imap) = self.imap.take() {
            imap.logout();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A delivery as Courier's `deliverquota`/maildrop makes one: written in
/// `tmp/`, renamed into `new/`, with `,S=` in the name.
fn deliver(folder: &Path, n: u32, subject: &str) {
    let text = format!("Subject: {subject}\nFrom: a@example.org\n\n").into_bytes();
    let mut msg = text;
    msg.extend_from_slice(&body(subject));
    let name = format!(
        "{}.M{n}P4242_{n}.mx.example.org,S={}",
        1_700_000_000 + n,
        msg.len()
    );
    std::fs::write(folder.join("tmp").join(&name), &msg).unwrap();
    std::fs::rename(
        folder.join("tmp").join(&name),
        folder.join("new").join(&name),
    )
    .unwrap();
}

/// What is compared of an event: its type, the mailbox, UIDVALIDITY and
/// UID of its URLs, its UID set and flag names.
fn key(e: &Value) -> String {
    let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
    let url = |k: &str| match e.get(k).and_then(Value::as_str) {
        Some(u) => match parse_imap_url(u) {
            Ok(u) => format!(
                "{};V={}{}",
                u.mailbox,
                u.uidvalidity.map_or("-".into(), |v| v.to_string()),
                u.uid.map_or(String::new(), |n| format!(";UID={n}"))
            ),
            Err(e) => format!("<bad url {e}>"),
        },
        None => String::new(),
    };
    let mut flags: Vec<&str> = s("flagNames").split_whitespace().collect();
    flags.sort_unstable();
    let main = if e.get("uri").is_some() {
        url("uri")
    } else {
        url("mailboxID")
    };
    let mut k = format!("{} {main}", s("event"));
    if !s("uidset").is_empty() {
        k.push_str(&format!(" uidset={}", s("uidset")));
    }
    if !flags.is_empty() {
        k.push_str(&format!(" flags={}", flags.join(",")));
    }
    if e.get("oldMailboxID").is_some() {
        k.push_str(&format!(" old={}", url("oldMailboxID")));
    }
    if e.get("vnd.maildir.uidPending").is_some() {
        k.push_str(" pending");
    }
    k
}

/// An expected event: its exact key, or (for a message no server has
/// numbered yet) a prefix of it.
enum Want {
    Exact(String),
    Prefix(String),
    /// A prefix that may also be absent (counted only when present).
    Maybe(String),
}

impl Want {
    fn matches(&self, k: &str) -> bool {
        match self {
            Want::Exact(w) => w == k,
            Want::Prefix(p) | Want::Maybe(p) => k.starts_with(p.as_str()),
        }
    }
    fn show(&self) -> String {
        match self {
            Want::Exact(w) => w.clone(),
            Want::Prefix(p) | Want::Maybe(p) => format!("{p}…"),
        }
    }
}

fn exact(s: String) -> Want {
    Want::Exact(s)
}

/// The tally of one run: per step, the events wanted and got.
#[derive(Default)]
struct Tally {
    right: usize,
    wanted: usize,
    extra: usize,
    report: String,
}

impl Tally {
    fn step(&mut self, step: &str, want: Vec<Want>, got: &[Value]) {
        let mut keys: Vec<String> = got.iter().map(key).collect();
        let mut missing = Vec::new();
        let mut wanted = 0;
        for w in &want {
            match keys.iter().position(|k| w.matches(k)) {
                Some(i) => {
                    keys.remove(i);
                    self.right += 1;
                    wanted += 1;
                }
                None if matches!(w, Want::Maybe(_)) => {}
                None => {
                    missing.push(w.show());
                    wanted += 1;
                }
            }
        }
        self.wanted += wanted;
        self.extra += keys.len();
        self.report.push_str(&format!(
            "{step}: {} of {wanted} right\n",
            wanted - missing.len()
        ));
        for m in &missing {
            self.report.push_str(&format!("    missing: {m}\n"));
        }
        for k in &keys {
            self.report.push_str(&format!("    wrong:   {k}\n"));
        }
    }
}

/// How events are collected after each step.
enum Mode<'a> {
    Watch(&'a Watch, usize),
    Scan(&'a Path, &'a Path),
}

impl Mode<'_> {
    /// The events a step caused: `watch` printed them (waiting for at least
    /// `n`, then for quiet), or `scan` reports them.
    fn take(&mut self, n: usize) -> Vec<Value> {
        match self {
            Mode::Watch(w, seen) => {
                let deadline = Instant::now() + Duration::from_secs(15);
                while w.count() < *seen + n && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let all = w.settle(Duration::from_millis(1500));
                let new = all[*seen..].to_vec();
                *seen = all.len();
                new
            }
            Mode::Scan(state, maildir) => {
                support::run_scan(state, maildir, USER, &["--uid-wait-ms", "500"])
            }
        }
    }
}

/// The session; `watch` is true for the live run (which sees every step's
/// intermediate events: MessageTrash before the expunge).
fn session(imapd: &Path, maildir: &Path, home: &Path, mut mode: Mode, watch: bool) -> Tally {
    let mut t = Tally::default();
    let inbox = maildir;

    // 1. Two deliveries before Courier ever opened the Maildir: no server
    // UID exists, so ours stand in (any UIDVALIDITY and UID are right).
    deliver(inbox, 1, "one");
    deliver(inbox, 2, "two");
    let got = mode.take(2);
    t.step(
        "deliveries",
        vec![
            Want::Prefix("MessageNew INBOX;V=".into()),
            Want::Prefix("MessageNew INBOX;V=".into()),
        ],
        &got,
    );

    // 2. SELECT: Courier numbers INBOX and takes over.
    let mut c = Courier::start(imapd, maildir, home);
    // Courier's SELECT sends no UIDNEXT, so only UIDVALIDITY is read.
    let sel = c.imap().command("SELECT INBOX");
    let v: u32 = sel.code("UIDVALIDITY").unwrap()["UIDVALIDITY ".len()..]
        .parse()
        .unwrap();
    let uids = c.uids_by_subject();
    let (u1, u2) = (uids["one"], uids["two"]);
    let got = mode.take(0);
    t.step("SELECT", vec![], &got);

    // 3. APPEND with \Seen.
    let msg = b"Subject: three\r\nFrom: b@example.org\r\n\r\nthree\r\n";
    let (av, u3) = c.imap().append("INBOX", &["\\Seen"], msg);
    assert_eq!(av, v);
    let got = mode.take(1);
    t.step(
        "APPEND",
        vec![exact(format!(
            "MessageAppend INBOX;V={v};UID={u3} flags=\\Seen"
        ))],
        &got,
    );

    // 4. STORE \Flagged, then a keyword (Courier keeps it out of the name).
    c.imap()
        .uid_store(&u1.to_string(), "+FLAGS", &["\\Flagged"]);
    let got = mode.take(1);
    t.step(
        "STORE +\\Flagged",
        vec![exact(format!(
            "FlagsSet INBOX;V={v} uidset={u1} flags=\\Flagged"
        ))],
        &got,
    );
    c.imap().uid_store(&u1.to_string(), "+FLAGS", &["$Label1"]);
    let got = mode.take(1);
    t.step(
        "STORE +$Label1",
        vec![exact(format!(
            "FlagsSet INBOX;V={v} uidset={u1} flags=$Label1"
        ))],
        &got,
    );

    // A second keyword set and cleared again: FlagsSet, then FlagsClear.
    c.imap().uid_store(&u1.to_string(), "+FLAGS", &["$Label2"]);
    let got = mode.take(1);
    t.step(
        "STORE +$Label2",
        vec![exact(format!(
            "FlagsSet INBOX;V={v} uidset={u1} flags=$Label2"
        ))],
        &got,
    );
    c.imap().uid_store(&u1.to_string(), "-FLAGS", &["$Label2"]);
    let got = mode.take(1);
    t.step(
        "STORE -$Label2",
        vec![exact(format!(
            "FlagsClear INBOX;V={v} uidset={u1} flags=$Label2"
        ))],
        &got,
    );

    // 5. \Deleted and EXPUNGE.
    c.imap()
        .uid_store(&u2.to_string(), "+FLAGS", &["\\Deleted"]);
    c.imap().expunge();
    let mut want = vec![exact(format!("MessageExpunge INBOX;V={v} uidset={u2}"))];
    if watch {
        want.insert(0, exact(format!("MessageTrash INBOX;V={v} uidset={u2}")));
    }
    let got = mode.take(want.len());
    t.step("STORE +\\Deleted, EXPUNGE", want, &got);

    // 6. CREATE: Courier numbers the folder when it first opens it.
    c.imap().create("INBOX.Work");
    let got = mode.take(1);
    t.step(
        "CREATE",
        vec![Want::Prefix("MailboxCreate INBOX.Work;V=".into())],
        &got,
    );

    // 7. SUBSCRIBE.
    c.imap().subscribe("INBOX.Work");
    assert!(c.lsub().contains(&"INBOX.Work".to_string()));
    let got = mode.take(1);
    t.step(
        "SUBSCRIBE",
        vec![exact("MailboxSubscribe INBOX.Work;V=-".to_string())],
        &got,
    );

    // 8. COPY: a new file name in the folder, numbered by Courier at once,
    // with the source's flags and keyword (which Courier writes beside it).
    let cu = c.imap().uid_copy(&u1.to_string(), "INBOX.Work");
    let (vw, w1) = (cu.uidvalidity, cu.dst[0]);
    let got = mode.take(1);
    t.step(
        "COPY",
        vec![exact(format!(
            "MessageAppend INBOX.Work;V={vw};UID={w1} flags=$Label1,\\Flagged"
        ))],
        &got,
    );

    // 9. A delivery into the folder: no UID until Courier opens it.
    deliver(&maildir.join(".Work"), 4, "four");
    let got = mode.take(1);
    t.step(
        "delivery into INBOX.Work",
        vec![exact(format!("MessageNew INBOX.Work;V={vw} pending"))],
        &got,
    );

    // 10. RENAME: Courier gives the renamed folder a new UIDVALIDITY.
    c.imap().rename("INBOX.Work", "INBOX.Job");
    let vj = c.imap().status("INBOX.Job").uidvalidity;
    let subs = c.lsub();
    let mut want = vec![exact(format!(
        "MailboxRename INBOX.Job;V={vj} old=INBOX.Work;V={vw}"
    ))];
    if !subs.contains(&"INBOX.Work".to_string()) {
        want.push(exact("MailboxUnSubscribe INBOX.Work;V=-".into()));
    }
    if subs.contains(&"INBOX.Job".to_string()) {
        want.push(exact("MailboxSubscribe INBOX.Job;V=-".into()));
    }
    let got = mode.take(want.len());
    t.step("RENAME", want, &got);

    // 11. DELETE.
    let before = c.lsub();
    c.imap().delete("INBOX.Job");
    let after = c.lsub();
    let mut want = vec![exact(format!("MailboxDelete INBOX.Job;V={vj}"))];
    if watch {
        // Live, Courier's unlinks of the messages may come first, as with
        // Dovecot (`scan` sees only the net change); when Courier removes
        // the directory before they are read, the MailboxDelete implies
        // them. The UID set is not compared: the delivered message is
        // numbered only if Courier opened the folder since.
        want.insert(0, Want::Maybe(format!("MessageExpunge INBOX.Job;V={vj} ")));
    }
    for gone in before.iter().filter(|s| !after.contains(s)) {
        want.push(exact(format!("MailboxUnSubscribe {gone};V=-")));
    }
    let sure = want.iter().filter(|w| !matches!(w, Want::Maybe(_))).count();
    let got = mode.take(sure);
    t.step("DELETE", want, &got);
    drop(c);
    t
}

fn new_store(maildirmake: &Path, dir: &Path) -> PathBuf {
    let maildir = dir.join("Maildir");
    let st = Command::new(maildirmake).arg(&maildir).status().unwrap();
    assert!(st.success(), "maildirmake failed");
    maildir
}

fn finish(what: &str, t: &Tally) {
    eprintln!(
        "{what}: {} of {} events right, {} wrong or extra\n{}",
        t.right, t.wanted, t.extra, t.report
    );
    assert!(
        t.right == t.wanted && t.extra == 0,
        "{what}: events differ from Courier's answers:\n{}",
        t.report
    );
}

#[test]
fn courier_session_in_watch() {
    let Some((imapd, maildirmake)) = programs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let maildir = new_store(&maildirmake, dir.path());
    let state = dir.path().join("state");
    let watch = Spawn::new(
        &state,
        &[
            "--user",
            USER,
            "--batch-quiet-ms",
            "50",
            "--batch-max-ms",
            "500",
        ],
    )
    .arg(&maildir)
    .start();
    let t = session(&imapd, &maildir, dir.path(), Mode::Watch(&watch, 0), true);
    let stderr = watch.stderr();
    drop(watch);
    if t.right != t.wanted || t.extra != 0 {
        eprintln!("watch stderr:\n{}", support::live::tail(&stderr, 4000));
    }
    finish("Courier-IMAP, watch", &t);
}

#[test]
fn courier_session_with_scan_between_steps() {
    let Some((imapd, maildirmake)) = programs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let maildir = new_store(&maildirmake, dir.path());
    let state = dir.path().join("state");
    // The first scan records the empty store as the baseline.
    assert!(support::run_scan(&state, &maildir, USER, &[]).is_empty());
    let t = session(
        &imapd,
        &maildir,
        dir.path(),
        Mode::Scan(&state, &maildir),
        false,
    );
    finish("Courier-IMAP, scan between steps", &t);
}

/// The option's other use: a Dovecot that replaced Courier-IMAP and keeps
/// its namespace (`namespace inbox { prefix = INBOX. }`). Nothing on disk
/// says so, so `--namespace-prefix INBOX.` does; then names, URLs,
/// `oldMailboxID` and subscriptions are what Dovecot's clients see.
#[test]
fn dovecot_with_courier_namespace_prefix() {
    use support::dovecot::{Dovecot, Options, PASSWORD, USERS};
    let Some(dovecot) = Dovecot::start_with(Options {
        prefix: "INBOX.".into(),
        ..Options::default()
    }) else {
        return;
    };
    let user = USERS[0];
    let maildir = dovecot.maildir(user);
    let state = tempfile::tempdir().unwrap();
    let opt = ["--namespace-prefix", "INBOX."];
    let scan = || support::run_scan(state.path(), &maildir, user, &opt);
    assert!(scan().is_empty(), "the first scan is a silent baseline");

    let mut t = Tally::default();
    let mut imap = Imap::login(dovecot.imap_port(), user, PASSWORD);
    imap.create("INBOX.Work");
    assert!(
        maildir.join(".Work").is_dir(),
        "INBOX.Work is .Work on disk"
    );
    let w = imap.status("INBOX.Work").uidvalidity;
    imap.subscribe("INBOX.Work");
    let msg = b"Subject: five\r\nFrom: c@example.org\r\n\r\nfive\r\n";
    let (v, uid) = imap.append("INBOX.Work", &["\\Seen"], msg);
    assert_eq!(v, w);
    t.step(
        "CREATE, SUBSCRIBE, APPEND",
        vec![
            exact(format!("MailboxCreate INBOX.Work;V={w}")),
            exact("MailboxSubscribe INBOX.Work;V=-".into()),
            exact(format!(
                "MessageAppend INBOX.Work;V={w};UID={uid} flags=\\Seen"
            )),
        ],
        &scan(),
    );

    imap.rename("INBOX.Work", "INBOX.Job");
    let j = imap.status("INBOX.Job").uidvalidity;
    let r = imap.command("LSUB \"\" \"*\"");
    let subs: Vec<&str> = r
        .untagged
        .iter()
        .filter_map(|l| l.strip_prefix("LSUB "))
        .map(|l| l.rsplit(' ').next().unwrap().trim_matches('"'))
        .collect();
    let mut want = vec![exact(format!(
        "MailboxRename INBOX.Job;V={j} old=INBOX.Work;V={w}"
    ))];
    if !subs.contains(&"INBOX.Work") {
        want.push(exact("MailboxUnSubscribe INBOX.Work;V=-".into()));
    }
    if subs.contains(&"INBOX.Job") {
        want.push(exact("MailboxSubscribe INBOX.Job;V=-".into()));
    }
    t.step("RENAME", want, &scan());
    imap.logout();
    finish("Dovecot with prefix INBOX., scan", &t);
}
