//! The `maildir-events` binary: parses the command line, runs the library,
//! maps errors to sysexits-style exit codes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser};
use tracing_subscriber::EnvFilter;

use maildir_events::cli::{Cli, Command, DeadLetterArgs, Shell, StateArgs};
use maildir_events::config::SourceKind;
use maildir_events::config::file::{DEFAULT_PATH, FileConfig, WatchConfig};
use maildir_events::config::{self, Config, ConfigError};
use maildir_events::error::{EX_OK, Error};
use maildir_events::service::{daemon, delivery, pipeline, report};
use maildir_events::sink::{SinkConfig, SinkError, redact};
use maildir_events::state::outbox::Outbox;
use maildir_events::state::store::{self, Store};
use maildir_events::{host, manual, root};

/// Whether fd 1 was closed when the process started (`>&-`).
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Runs before `main` and before the Rust runtime's own start-up, which
/// quietly puts /dev/null on a closed fd 0, 1 or 2: only here can a closed
/// stdout still be seen. It only looks; nothing is opened.
extern "C" fn note_closed_stdout() {
    // SAFETY: fcntl(F_GETFD) on a descriptor number reads its flags only.
    if unsafe { libc::fcntl(libc::STDOUT_FILENO, libc::F_GETFD) } == -1 {
        STDOUT_CLOSED.store(true, Ordering::SeqCst);
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static NOTE_CLOSED_STDOUT: extern "C" fn() = note_closed_stdout;

/// Makes sure fds 0, 1 and 2 are open before anything else is: with one
/// closed, the next open() (the state database!) would get its number and
/// events or log lines would be written into the file. A closed one gets
/// /dev/null; a closed stdout is remembered, so a stdout sink can refuse
/// to run (its events would vanish).
fn guard_standard_fds() {
    for fd in [libc::STDIN_FILENO, libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: fcntl(F_GETFD) reads a descriptor's flags only.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1 {
            continue;
        }
        if fd == libc::STDOUT_FILENO {
            STDOUT_CLOSED.store(true, Ordering::SeqCst);
        }
        // SAFETY: open(2) of a constant path; dup2/close on the descriptor
        // just opened.
        unsafe {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
            if null >= 0 && null != fd {
                libc::dup2(null, fd);
                libc::close(null);
            } else if null == fd {
                // The lowest free number is this one: keep it open on exec
                // like any standard descriptor.
                libc::fcntl(fd, libc::F_SETFD, 0);
            }
        }
    }
}

/// One log line, written to stderr in one piece once complete, after
/// [`redact::scrub`]: no log line (ours or a library's, at any level)
/// carries a URL's userinfo or query, a header value or the HMAC secret.
struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let line = redact::scrub(&String::from_utf8_lossy(&self.0));
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

fn main() -> ExitCode {
    guard_standard_fds();
    let cli = Cli::parse();
    // Logging before anything else runs, so even configuration errors are
    // logged the same way.
    let env = std::env::var("MAILDIR_EVENTS_LOG").ok();
    tracing_subscriber::fmt()
        .with_writer(|| LogLine(Vec::new()))
        .with_env_filter(log_filter(cli.quiet, cli.verbose, env.as_deref()))
        .with_target(false)
        // No colour codes in cron mail or the journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    report::set_enabled(summary_shown(cli.quiet, cli.verbose, env.as_deref()));
    match run(cli) {
        Ok(()) => ExitCode::from(EX_OK as u8),
        Err(e) => {
            eprintln!("maildir-events: {}", redact::scrub(&e.to_string()));
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// The log filter: -q or -v when given, else `MAILDIR_EVENTS_LOG`, else
/// warnings.
fn log_filter(quiet: bool, verbose: u8, env: Option<&str>) -> EnvFilter {
    match (quiet, verbose, env) {
        (true, _, _) => EnvFilter::new("error"),
        (false, 1, _) => EnvFilter::new("info"),
        (false, 2.., _) => EnvFilter::new("debug"),
        (false, 0, Some(e)) => EnvFilter::try_new(e).unwrap_or_else(|_| EnvFilter::new("warn")),
        (false, 0, None) => EnvFilter::new("warn"),
    }
}

/// Whether the summary line and a terminal's progress are shown: not with
/// -q, nor when `MAILDIR_EVENTS_LOG` asks for errors only (and no -v).
fn summary_shown(quiet: bool, verbose: u8, env: Option<&str>) -> bool {
    let env_quiet = matches!(env.map(str::trim), Some("error" | "off"));
    !quiet && (verbose > 0 || !env_quiet)
}

fn run(cli: Cli) -> Result<(), Error> {
    let overlay = match &cli.command {
        Command::Scan(a) | Command::CheckConfig(a) => a.store.overlay(),
        Command::Watch(a) => a.overlay(),
        Command::Status(a) => return status(cli.config.as_deref(), a),
        Command::DeadLetters(a) => return dead_letters(cli.config.as_deref(), a),
        Command::Man => return man(),
        Command::Completions { shell } => return completions(*shell),
    }
    .map_err(ConfigError)?;
    let from_cli = overlay.watch.clone().unwrap_or_default();
    let merged = load_file(cli.config.as_deref())?.merge(overlay);
    register_secrets(&merged.sink);
    check_batch_window(&from_cli, &merged);
    let config = resolve(&merged)?;
    let problems = match cli.command {
        Command::Scan(_) | Command::Watch(_) => maildir_problems(&config)?,
        _ => Vec::new(),
    };
    let to_stdout =
        config.sinks.is_empty() || config.sinks.iter().any(|s| matches!(s, SinkConfig::Stdout));
    let stdout_closed = || {
        // Nothing has been read or sent: what waits stays for a run whose
        // output is open.
        let kept = kept_in_outbox(&config.state_dir.join(store::FILE_NAME)).unwrap_or(0);
        Error::Sink {
            error: SinkError::Failed(
                "standard output is closed (fd 1 not open), and a stdout sink is configured; \
                 nothing was scanned or sent"
                    .into(),
            ),
            kept,
        }
    };
    match cli.command {
        Command::Scan(_) => {
            if to_stdout && STDOUT_CLOSED.load(Ordering::SeqCst) {
                return Err(stdout_closed());
            }
            let started = Instant::now();
            let mut store = Store::open(&config.state_dir)?;
            only_known_missing(&store, problems)?;
            let mut outlets = delivery::outlets(&config)?;
            let bar = Progress::new();
            let result =
                pipeline::run_scan_with(&config, &mut store, &mut outlets, &|s| bar.show(s));
            bar.clear();
            let summary = result?;
            scan_summary(&config, &summary, started.elapsed());
        }
        Command::Watch(_) => {
            if to_stdout && STDOUT_CLOSED.load(Ordering::SeqCst) {
                return Err(stdout_closed());
            }
            // Before any sink starts a thread of its own.
            daemon::block_signals();
            let mut store = Store::open_for_watch(&config.state_dir)?;
            only_known_missing(&store, problems)?;
            let outlets = delivery::outlets(&config)?;
            // A sink whose output went away ends it with exit 74 and the
            // number of events it keeps for the next run.
            daemon::run(&config, &mut store, outlets)?;
        }
        Command::CheckConfig(_) => {
            for sink in &config.sinks {
                if let SinkConfig::File(f) = sink {
                    f.check().map_err(|e| {
                        ConfigError(format!("sink {}: {e}", redact::scrub(&sink.name())))
                    })?;
                }
            }
            print!("{}", redact::scrub(&config::describe(&config, &merged)))
        }
        Command::Status(_)
        | Command::DeadLetters(_)
        | Command::Man
        | Command::Completions { .. } => {}
    }
    Ok(())
}

/// Makes every configured sink's secrets known to the log writer and to
/// what this binary prints.
fn register_secrets(sinks: &[SinkConfig]) {
    for s in sinks {
        redact::register(&s.secrets());
    }
}

/// The events in the outbox (waiting for at least one sink), counted now;
/// 0 when there is no state database yet.
fn kept_in_outbox(db: &Path) -> Result<u64, Error> {
    if !db.exists() {
        return Ok(0);
    }
    Ok(Outbox::open(db)?.total()?.events)
}

/// The state database for the inspection commands, which need no store
/// and take no lock (they may run beside `watch`).
/// The state directory the inspection commands look at.
fn state_dir(file: Option<&Path>, args: &StateArgs) -> Result<PathBuf, Error> {
    let fc = load_file(file)?;
    Ok(match args.state.clone().or(fc.state_dir.clone()) {
        Some(d) => d,
        None => config::default_state_dir(&|k| std::env::var(k).ok()).ok_or_else(|| {
            ConfigError("no --state given and neither $STATE_DIRECTORY nor $HOME is set".into())
        })?,
    })
}

fn state_outbox(file: Option<&Path>, args: &StateArgs) -> Result<(Outbox, Vec<String>), Error> {
    let fc = load_file(file)?;
    register_secrets(&fc.sink);
    let dir = state_dir(file, args)?;
    let db = dir.join(store::FILE_NAME);
    if !db.exists() {
        return Err(ConfigError(format!(
            "no state database at {} (run scan or watch first)",
            db.display()
        ))
        .into());
    }
    let outbox = Outbox::open(&db)?;
    let mut sinks: Vec<String> = fc.sink.iter().map(|s| s.name()).collect();
    if sinks.is_empty() {
        sinks = outbox.known_sinks()?;
    }
    Ok((outbox, sinks))
}

fn status(file: Option<&Path>, args: &StateArgs) -> Result<(), Error> {
    let dir = state_dir(file, args)?;
    let (outbox, sinks) = match state_outbox(file, args) {
        Ok(o) => o,
        // The database is busy: a running `watch` publishes its status in a
        // file (only read while a watcher holds the state directory: a file
        // left by an earlier run says nothing).
        Err(e) => match watcher_status(&dir) {
            Some(text) => {
                println!("{}", redact::scrub(&text));
                return Ok(());
            }
            None => return Err(e),
        },
    };
    let (users, folders, messages) = outbox.totals()?;
    let mut per_sink = serde_json::Map::new();
    for s in &sinks {
        let b = outbox.backlog(s)?;
        per_sink.insert(
            s.clone(),
            serde_json::json!({"waiting": b.events, "oldestSeconds": b.oldest_secs}),
        );
    }
    let total = outbox.total()?;
    let mut out = serde_json::json!({
        "outbox": {"waiting": total.events, "oldestSeconds": total.oldest_secs},
        "users": users,
        "folders": folders,
        "messages": messages,
        "sinks": per_sink,
        "deadLetters": outbox.dead_letters()?.len(),
    });
    // A running `watch` adds what only it knows (watches, polled folders).
    if let Some(watch) = watcher_status(&dir)
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|mut v| v.get_mut("watch").map(serde_json::Value::take))
    {
        out["watch"] = watch;
    }
    println!("{}", redact::scrub(&out.to_string()));
    Ok(())
}

/// The status file of the `watch` holding the state directory, stale-marked
/// (see [`mark_stale`]); `None` when no watcher holds it (a file left by an
/// earlier run says nothing) or there is no file.
fn watcher_status(dir: &Path) -> Option<String> {
    if !store::held(dir) {
        return None;
    }
    let text = std::fs::read_to_string(dir.join(store::STATUS_FILE)).ok()?;
    Some(mark_stale(&text))
}

/// The status file with `watch.stale` set: true when its stamp is older
/// than [`store::STATUS_STALE_AFTER`] (the watcher holding the state
/// directory stopped refreshing it: hung), with a warning on stderr.
fn mark_stale(text: &str) -> String {
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(text) else {
        return text.trim_end().to_string();
    };
    let age = doc["watch"]["updated"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds());
    let stale = age.is_none_or(|a| a > store::STATUS_STALE_AFTER.as_secs() as i64);
    if stale {
        eprintln!(
            "maildir-events: the running watcher's status file is stale (updated {}); the watcher may be hung: look at its log",
            doc["watch"]["updated"].as_str().unwrap_or("never")
        );
    }
    if let Some(w) = doc["watch"].as_object_mut() {
        w.insert("stale".into(), stale.into());
    }
    doc.to_string()
}

fn dead_letters(file: Option<&Path>, args: &DeadLetterArgs) -> Result<(), Error> {
    let (mut outbox, _) = state_outbox(file, &args.state)?;
    match &args.replay {
        None => {
            for d in outbox.dead_letters()? {
                let event: serde_json::Value =
                    serde_json::from_str(&d.body).unwrap_or(serde_json::Value::Null);
                let line = serde_json::json!({"seq": d.seq, "eventId": d.event_id, "sink": d.sink,
                    "reason": d.reason, "at": d.at, "event": event});
                // Reasons were scrubbed when they were recorded; the events'
                // imap:// URLs are data, not secrets.
                println!("{line}");
            }
        }
        Some(seqs) => {
            let n = outbox.replay((!seqs.is_empty()).then_some(seqs.as_slice()))?;
            eprintln!("maildir-events: {n} dead letter(s) put back in the outbox");
        }
    }
    Ok(())
}

/// The configuration file: the one named, else the default one if it exists.
fn load_file(named: Option<&Path>) -> Result<FileConfig, ConfigError> {
    match named {
        Some(p) => FileConfig::load(p),
        None if Path::new(DEFAULT_PATH).exists() => FileConfig::load(Path::new(DEFAULT_PATH)),
        None => Ok(FileConfig::default()),
    }
}

fn resolve(merged: &FileConfig) -> Result<Config, ConfigError> {
    config::resolve(merged, &|k| std::env::var(k).ok(), &host::fqdn)
}

/// A batch window that cannot work (a quiet window longer than the cap) is
/// a usage error (exit 2) when the command line set either value; from
/// the configuration file alone it is a configuration error (78, from
/// `resolve`).
fn check_batch_window(from_cli: &WatchConfig, merged: &FileConfig) {
    if from_cli.batch_quiet_ms.is_none() && from_cli.batch_max_ms.is_none() {
        return;
    }
    let (quiet, max) = config::batch_window(&merged.watch.clone().unwrap_or_default());
    if quiet > max {
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "--batch-quiet-ms {quiet} is longer than --batch-max-ms {max} \
                     (defaults 0.5 and 2; the file's [watch] counts too): every batch would \
                     close at the cap; make the quiet window shorter or the cap longer"
                ),
            )
            .exit();
    }
}

/// Every Maildir named on the command line or as a `[[store]] path` must
/// be one (see `root`); template users may come and go. The users whose
/// Maildir is not, with why; an error at once when there is no state
/// database yet (nothing is created for a typo).
fn maildir_problems(config: &Config) -> Result<Vec<(String, String)>, Error> {
    let mut problems = Vec::new();
    for source in &config.sources {
        if let SourceKind::Maildir { path, user } = &source.kind
            && let Err(why) = root::check(path, config.allow_missing)
        {
            problems.push((user.clone(), why));
        }
    }
    match problems.first() {
        Some((_, why)) if !config.state_dir.join(store::FILE_NAME).exists() => {
            Err(Error::NoInput(why.clone()))
        }
        _ => Ok(problems),
    }
}

/// A Maildir that went missing after earlier runs saw its folders (an
/// unmounted store) is not an error: the scan warns and keeps what was
/// known. Any other problem is.
fn only_known_missing(store: &Store, problems: Vec<(String, String)>) -> Result<(), Error> {
    for (user, why) in problems {
        let known = store
            .load_user(&user)?
            .is_some_and(|u| !u.folders.is_empty());
        if !known {
            return Err(Error::NoInput(why));
        }
    }
    Ok(())
}

/// The line a scan ends with at the default log level.
fn scan_summary(config: &Config, s: &pipeline::Summary, took: Duration) {
    use report::count;
    // Messages as the state database now knows them (the scan lists only
    // the folders that changed).
    let db = config.state_dir.join(store::FILE_NAME);
    let messages = Outbox::open(&db)
        .and_then(|o| o.totals())
        .map(|(_, _, m)| format!(", {}", count(m, "message")))
        .unwrap_or_default();
    report::summary(&format!(
        "scan: {}, {}{messages}, {} in {}",
        count(s.users, "user"),
        count(s.folders, "folder"),
        count(s.events, "event"),
        report::elapsed(took)
    ));
}

/// A scan's progress on a terminal: shown only when stderr is one, the
/// summary line is on, and the scan has run for a second.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
}

impl Progress {
    fn new() -> Progress {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = (tty && report::enabled()).then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::hidden(),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} scanning: {msg} ({elapsed})")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar
        });
        Progress {
            bar,
            started: Instant::now(),
        }
    }

    fn show(&self, s: &pipeline::Summary) {
        let Some(bar) = &self.bar else { return };
        if bar.is_hidden() && self.started.elapsed() >= Duration::from_secs(1) {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            // A user with many folders takes a while: keep the spinner
            // (and the elapsed time) moving meanwhile.
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        bar.set_message(format!(
            "{}, {}",
            report::count(s.users, "user"),
            report::count(s.folders, "folder")
        ));
        bar.tick();
    }

    fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The manual page (roff) on stdout.
fn man() -> Result<(), Error> {
    std::io::stdout()
        .write_all(&manual::page())
        .map_err(|e| ConfigError(format!("cannot write the manual page: {e}")))?;
    Ok(())
}

/// A completion script for `shell` on stdout.
fn completions(shell: Shell) -> Result<(), Error> {
    std::io::stdout()
        .write_all(&manual::completions(shell))
        .map_err(|e| ConfigError(format!("cannot write the completion script: {e}")))?;
    Ok(())
}
