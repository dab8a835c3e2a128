//! The command line as an administrator meets it first: a wrong MAILDIR,
//! bad option values, what a run says at the default log level, `-q` and
//! `-v`, `check-config`, and the `man` and `completions` commands.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::fixture::Maildir;
use support::live::Spawn;
use support::run::{BIN, Run};
use tempfile::TempDir;

/// `maildir-events ARGS…` with no `MAILDIR_EVENTS_LOG` (the default level)
/// unless `log` is given, stdin closed.
fn run_with(args: &[&str], log: Option<&str>) -> Run {
    let mut c = Command::new(BIN);
    c.args(args).stdin(Stdio::null());
    match log {
        Some(l) => c.env("MAILDIR_EVENTS_LOG", l),
        None => c.env_remove("MAILDIR_EVENTS_LOG"),
    };
    Run::of(c)
}

fn run(args: &[&str]) -> Run {
    run_with(args, None)
}

/// A temporary directory with one Maildir (two folders, three messages)
/// and a state directory beside it.
struct Env {
    tmp: TempDir,
    md: Maildir,
    state: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = TempDir::new().unwrap();
        let md = Maildir::create(tmp.path().join("alice/Maildir"));
        md.put("", "new", "1700000001.M1P1.host", "Subject: a\n\nx\n");
        md.put("", "cur", "1700000002.M1P1.host:2,S", "Subject: b\n\nx\n");
        md.folder(".Sent");
        md.put(
            ".Sent",
            "cur",
            "1700000003.M1P1.host:2,S",
            "Subject: c\n\nx\n",
        );
        let state = tmp.path().join("state");
        Env { tmp, md, state }
    }

    fn p(&self) -> &str {
        self.md.root.to_str().unwrap()
    }

    fn s(&self) -> &str {
        self.state.to_str().unwrap()
    }

    /// The configuration file [`Env::check_config`] writes.
    fn config_file(&self) -> String {
        self.path("c.toml")
    }

    /// `check-config` of this Maildir with `text` as the configuration file.
    fn check_config(&self, text: &str) -> Run {
        let conf = self.config_file();
        std::fs::write(&conf, text).unwrap();
        run(&[
            "--config",
            &conf,
            "check-config",
            "--state",
            self.s(),
            self.p(),
        ])
    }

    fn path(&self, rel: &str) -> String {
        self.tmp.path().join(rel).to_str().unwrap().to_string()
    }

    /// `scan --state STATE --server-name mx.example.test EXTRA… [MAILDIR]`
    fn scan(&self, extra: &[&str], log: Option<&str>) -> Run {
        let mut args = vec![
            "scan",
            "--state",
            self.s(),
            "--server-name",
            "mx.example.test",
        ];
        args.extend_from_slice(extra);
        run_with(&args, log)
    }
}

// ------------------------------------------------------------ wrong path

#[test]
fn a_maildir_that_does_not_exist_is_exit_66_and_records_nothing() {
    let env = Env::new();
    let nope = env.path("no/such/Maildir");
    env.scan(&[&nope], None)
        .fails_saying(66, &format!("MAILDIR {nope} does not exist"));
    assert!(
        !env.state.join("state.sqlite3").exists(),
        "a typo must not create a state database"
    );
    // With a good one beside it, still an error: nothing half-done.
    env.scan(&[env.p(), &nope], None).fails_saying(66, &nope);
    // The same for a [[store]] path in the configuration file.
    let conf = env.path("c.toml");
    std::fs::write(
        &conf,
        format!("[[store]]\npath = \"{nope}\"\nuser = \"bob\"\n"),
    )
    .unwrap();
    env.scan(&["--config", &conf], None).fails_saying(66, &nope);
}

#[test]
fn a_file_or_a_directory_that_is_no_maildir_is_exit_66() {
    let env = Env::new();
    let file = env.path("notes.txt");
    std::fs::write(&file, "x").unwrap();
    env.scan(&[&file], None)
        .fails_saying(66, "is not a directory");
    // alice/ holds the Maildir but is none: the message names the rule.
    let home = env.path("alice");
    let r = env.scan(&[&home], None);
    r.fails_saying(66, "is not a Maildir");
    assert!(r.stderr.contains("cur, new, tmp"), "{}", r.stderr);
    assert!(!r.stderr.contains("permission"), "{}", r.stderr);
}

#[test]
fn allow_missing_accepts_a_maildir_created_later() {
    let env = Env::new();
    let later = env.path("bob/Maildir");
    env.scan(&["--allow-missing", "--user", "bob", &later], None)
        .ok();
    // Once it exists, a message in it is new (the baseline was recorded
    // while it was missing).
    let md = Maildir::create(PathBuf::from(&later));
    md.put("", "new", "1700000009.M1P1.host", "Subject: z\n\nx\n");
    let r = env.scan(&["--allow-missing", "--user", "bob", &later], None);
    r.ok();
    assert!(r.stdout.contains("\"MessageNew\""), "{}", r.stdout);
    // An empty directory is accepted with the option, refused without.
    let empty = env.path("carol/Maildir");
    std::fs::create_dir_all(&empty).unwrap();
    env.scan(&["--user", "carol", &empty], None)
        .fails_saying(66, "is not a Maildir");
    env.scan(&["--allow-missing", "--user", "carol", &empty], None)
        .ok();
}

#[test]
fn an_unmounted_maildir_seen_before_warns_and_keeps_what_was_known() {
    let env = Env::new();
    env.scan(&[env.p()], None).ok();
    let away = env.path("away");
    std::fs::rename(&env.md.root, &away).unwrap();
    let r = env.scan(&[env.p()], None);
    r.ok();
    assert!(r.stdout.is_empty(), "no mass expunge: {}", r.stdout);
    assert!(r.stderr.contains(env.p()), "{}", r.stderr);
}

#[test]
fn watch_on_a_missing_maildir_exits_66_instead_of_waiting() {
    let env = Env::new();
    let nope = env.path("nope/Maildir");
    let mut spawn = Spawn::new(&env.state, &[]).arg(&nope);
    spawn.log = "warn";
    let (code, stderr) = spawn.spawn().wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(66), "{stderr}");
    assert!(stderr.contains(&nope), "{stderr}");
}

#[test]
fn templates_may_have_no_users_yet() {
    let env = Env::new();
    let template = env.path("{user}/Maildir-not-yet");
    env.scan(&["--store", &template], None).ok();
}

// ------------------------------------------------------------ options

#[test]
fn bad_option_values_are_usage_errors_that_name_the_option() {
    let env = Env::new();
    let p = env.p();
    for (args, what) in [
        (vec!["--separator", "::"], "--separator"),
        (vec!["--info-separator", ","], "--info-separator"),
        (vec!["--uid-wait-ms", "-1"], "--uid-wait-ms"),
        (vec!["--uid-wait-ms", "soon"], "--uid-wait-ms"),
    ] {
        let mut a = vec!["scan", "--state", env.s()];
        a.extend(args);
        a.push(p);
        run(&a).fails_saying(2, what);
    }
    for (args, what) in [
        (vec!["--batch-max-ms", "-1"], "--batch-max-ms"),
        (vec!["--batch-max-ms", "0"], "--batch-max-ms"),
        (vec!["--batch-quiet-ms", "-0.5"], "--batch-quiet-ms"),
        (vec!["--batch-quiet-ms", "5"], "longer than --batch-max-ms"),
        (
            vec!["--batch-quiet-ms", "3", "--batch-max-ms", "2.5"],
            "longer than",
        ),
        (vec!["--poll", "-2"], "--poll"),
        (vec!["--rescan-interval", "-1"], "--rescan-interval"),
        (vec!["--full-every", "1.5"], "--full-every"),
    ] {
        let mut a = vec!["watch", "--state", env.s()];
        a.extend(args.iter().copied());
        a.push(p);
        let r = run(&a);
        r.fails_saying(2, what);
        // clap's tip for a value that looks like an option would turn -1
        // into a MAILDIR: a clear value error instead.
        assert!(!r.stderr.contains("-- -1"), "{args:?}: {}", r.stderr);
    }
}

#[test]
fn fractions_of_milliseconds_are_taken_by_both_batch_options() {
    let env = Env::new();
    let r = run(&["check-config", "--state", env.s(), env.p()]);
    r.ok();
    // check-config takes the scan options only; the watch window is
    // checked through the file.
    let r = env.check_config("[watch]\nbatch_quiet_ms = 0.25\nbatch_max_ms = 2.5\n");
    r.ok();
    assert!(r.stdout.contains("batch_max_ms = 2.5"), "{}", r.stdout);
    assert!(r.stdout.contains("batch_quiet_ms = 0.25"), "{}", r.stdout);
}

#[test]
fn a_bad_batch_window_in_the_file_is_exit_78_with_its_line() {
    let env = Env::new();
    for (text, what) in [
        ("[watch]\nbatch_max_ms = 0\n", "line 2"),
        ("[watch]\n\nbatch_max_ms = -1\n", "line 3"),
        (
            "[watch]\nbatch_quiet_ms = 9\nbatch_max_ms = 3\n",
            "longer than",
        ),
    ] {
        env.check_config(text).fails_saying(78, what);
    }
}

// ------------------------------------------------------------ check-config

#[test]
fn check_config_prints_the_sinks_without_their_secrets() {
    let env = Env::new();
    let log = env.path("log");
    std::fs::create_dir(&log).unwrap();
    let r = env.check_config(&format!(
        "[[sink]]\ntype = \"webhook\"\nurl = \"https://hookuser:s3cretpw@hooks.example.org/mail?token=t0ken123\"\n\
         headers = {{ Authorization = \"Bearer abcdef123456\" }}\n\n\
         [[sink]]\ntype = \"nats\"\nurl = \"nats://natsuser:natspw99@127.0.0.1:4222\"\n\n\
         [[sink]]\ntype = \"file\"\npath = \"{log}/events.jsonl\"\n"
    ));
    r.ok();
    let out = &r.stdout;
    for secret in [
        "s3cretpw",
        "hookuser",
        "t0ken123",
        "abcdef123456",
        "natspw99",
        "natsuser",
    ] {
        assert!(!out.contains(secret), "{secret} printed:\n{out}");
        assert!(!r.stderr.contains(secret), "{secret} logged:\n{}", r.stderr);
    }
    // The sinks as tables, every default spelled out.
    let parsed: toml::Table = toml::from_str(out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    let sinks = parsed["sink"].as_array().unwrap_or_else(|| panic!("{out}"));
    assert_eq!(sinks.len(), 3, "{out}");
    let hook = sinks[0].as_table().unwrap();
    assert_eq!(hook["type"].as_str(), Some("webhook"));
    assert_eq!(hook["url"].as_str(), Some("https://hooks.example.org/mail"));
    assert_eq!(hook["retries"].as_integer(), Some(10), "{out}");
    assert_eq!(
        hook["headers"]["Authorization"].as_str(),
        Some("[redacted]")
    );
    assert_eq!(
        sinks[1]["subject"].as_str(),
        Some("mail.events.{user}.{event}")
    );
    assert_eq!(
        sinks[2]["path"].as_str(),
        Some(format!("{log}/events.jsonl").as_str())
    );
}

#[test]
fn check_config_refuses_a_file_sink_in_a_missing_directory() {
    let env = Env::new();
    let missing = env.path("no-such-dir/events.jsonl");
    let r = env.check_config(&format!(
        "[[sink]]\ntype = \"file\"\npath = \"{missing}\"\n"
    ));
    r.fails_saying(78, "does not exist");
    assert!(r.stderr.contains("no-such-dir"), "{}", r.stderr);
    // What scan says about it too.
    env.scan(&["--config", &env.config_file(), env.p()], None)
        .fails_saying(78, "no-such-dir");
}

#[test]
fn a_typo_inside_a_sink_is_reported_at_its_line() {
    let env = Env::new();
    let r = env.check_config(
        "server_name = \"mx\"\n\n[[sink]]\ntype = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\nsubjct = \"x\"\n",
    );
    r.fails_saying(78, "subjct");
    assert!(r.stderr.contains("line 6"), "{}", r.stderr);
}

// ------------------------------------------------------------ what a run says

#[test]
fn a_scan_says_what_it_did_in_one_line_at_the_default_level() {
    let env = Env::new();
    let r = env.scan(&["--emit-existing", env.p()], None);
    r.ok();
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    let line = lines[0];
    // Three MessageNew and a MailboxCreate (Sent) for the backfill.
    let events = format!("{} events", r.stdout.lines().count());
    for part in [
        "maildir-events: scan: ",
        "1 user",
        "2 folders",
        "3 messages",
        &events,
        " s",
    ] {
        assert!(line.contains(part), "{part:?} missing: {line}");
    }
    // No progress display when stderr is not a terminal.
    assert!(
        !r.stderr.contains('\r') && !r.stderr.contains('\u{1b}'),
        "{:?}",
        r.stderr
    );
    // Events go to stdout only.
    assert!(r.stdout.lines().count() >= 3, "{}", r.stdout);
    assert!(r.stdout.lines().all(|l| l.starts_with('{')), "{}", r.stdout);
}

#[test]
fn quiet_and_verbose_and_the_environment() {
    let env = Env::new();
    env.scan(&[env.p()], None).ok();
    // -q: nothing at all on a good run.
    let r = env.scan(&["-q", env.p()], None);
    r.ok();
    assert_eq!(r.stderr, "", "-q");
    // -q wins over MAILDIR_EVENTS_LOG.
    let r = env.scan(&["--quiet", env.p()], Some("debug"));
    assert_eq!(r.stderr, "", "--quiet with MAILDIR_EVENTS_LOG=debug");
    // -q still shows errors.
    env.scan(&["-q", &env.path("nope")], None)
        .fails_saying(66, "does not exist");
    // -v: the info log ("scan done") besides the summary line.
    let r = env.scan(&["-v", env.p()], None);
    assert!(
        r.stderr.contains("INFO") && r.stderr.contains("scan done"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("maildir-events: scan:"), "{}", r.stderr);
    assert!(!r.stderr.contains("DEBUG"), "{}", r.stderr);
    // -vv: debug (a Maildir not there yet is a debug line); and -v wins
    // over MAILDIR_EVENTS_LOG=error.
    let later = env.path("later/Maildir");
    let r = env.scan(
        &["-vv", "--allow-missing", "--user", "later", &later],
        Some("error"),
    );
    assert!(
        r.stderr.contains("DEBUG") && r.stderr.contains("does not exist yet"),
        "{}",
        r.stderr
    );
    let r = env.scan(&["-v", "--allow-missing", "--user", "later", &later], None);
    assert!(!r.stderr.contains("DEBUG"), "{}", r.stderr);
    // MAILDIR_EVENTS_LOG alone is honoured: info, and error hides the
    // summary line.
    let r = env.scan(&[env.p()], Some("info"));
    assert!(r.stderr.contains("scan done"), "{}", r.stderr);
    let r = env.scan(&[env.p()], Some("error"));
    assert_eq!(r.stderr, "", "MAILDIR_EVENTS_LOG=error");
    // -q and -v together make no sense.
    env.scan(&["-q", "-v", env.p()], None)
        .fails_saying(2, "--quiet");
}

#[test]
fn watch_says_when_it_is_ready_and_what_it_watches() {
    let env = Env::new();
    let mut spawn = Spawn::new(&env.state, &["--user", "alice"]).arg(env.p());
    spawn.log = "warn";
    let w = spawn.start();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let line = loop {
        if let Some(l) = w
            .stderr()
            .lines()
            .find(|l| l.starts_with("maildir-events: watch:"))
        {
            break l.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no summary line:\n{}",
            w.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    for part in [
        "1 user",
        "2 folders",
        "3 messages",
        "inotify watches",
        "ready in ",
    ] {
        assert!(line.contains(part), "{part:?} missing: {line}");
    }
    w.stop();
}

// ------------------------------------------------------------ man, completions

#[test]
fn the_manual_page_has_every_command_and_option() {
    let r = run(&["man"]);
    r.ok();
    let page = &r.stdout;
    assert!(
        page.starts_with(".ie") || page.contains(".TH"),
        "not roff:\n{page}"
    );
    for cmd in [
        "scan",
        "watch",
        "check-config",
        "status",
        "dead-letters",
        "man",
        "completions",
    ] {
        assert!(page.contains(cmd), "{cmd} missing from the manual page");
    }
    for cmd in ["SCAN", "WATCH", "CHECK-CONFIG", "STATUS", "DEAD-LETTERS"] {
        assert!(
            page.contains(&format!("COMMAND: {cmd}")),
            "no section for {cmd}"
        );
    }
    for opt in [
        "batch\\-max\\-ms",
        "allow\\-missing",
        "quiet",
        "verbose",
        "store",
    ] {
        assert!(page.contains(opt), "{opt} missing from the manual page");
    }
    assert!(
        page.contains("EXIT STATUS") && page.contains("66"),
        "exit codes"
    );
    // One page holds every command: no pointers to pages that do not exist.
    assert!(
        !page.contains("maildir\\-events\\-scan(1)") && !page.contains("maildir-events-scan(1)"),
        "points to a page per command"
    );
    assert!(page.contains(".SH COMMANDS"), "a list of the commands");
    // man(1) reads it without complaint, where man is installed.
    if Path::new("/usr/bin/man").exists() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), page).unwrap();
        let out = Command::new("man")
            .args(["--warnings", "-l", "-E", "UTF-8"])
            .arg(file.path())
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("maildir-events"), "{text}");
    }
}

#[test]
fn completion_scripts_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let r = run(&["completions", shell]);
        r.ok();
        assert!(!r.stdout.trim().is_empty(), "{shell}: empty");
        for word in [
            "scan",
            "watch",
            "check-config",
            "batch-max-ms",
            "allow-missing",
        ] {
            assert!(r.stdout.contains(word), "{shell}: {word} missing");
        }
    }
    let r = run(&["completions", "bash"]);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &r.stdout).unwrap();
    let out = Command::new("bash")
        .arg("-n")
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    run(&["completions", "tcsh"]).fails_saying(2, "tcsh");
}
