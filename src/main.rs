//! The `maildir-events` binary: parses the command line, runs the library,
//! maps errors to sysexits-style exit codes.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use maildir_events::cli::{Cli, Command, DeadLetterArgs, StateArgs};
use maildir_events::config::file::{DEFAULT_PATH, FileConfig};
use maildir_events::config::{self, Config, ConfigError};
use maildir_events::error::{EX_OK, Error};
use maildir_events::outbox::Outbox;
use maildir_events::store::{self, Store};
use maildir_events::{daemon, delivery, host, pipeline};

fn main() -> ExitCode {
    // Logging first, so even configuration errors are logged the same way.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_env("MAILDIR_EVENTS_LOG")
                .unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_target(false)
        // No colour codes in cron mail or the journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::from(EX_OK as u8),
        Err(e) => {
            eprintln!("maildir-events: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn run(cli: Cli) -> Result<(), Error> {
    let overlay = match &cli.command {
        Command::Scan(a) | Command::CheckConfig(a) => a.store.overlay(),
        Command::Watch(a) => a.overlay(),
        Command::Status(a) => return status(cli.config.as_deref(), a),
        Command::DeadLetters(a) => return dead_letters(cli.config.as_deref(), a),
    }
    .map_err(ConfigError)?;
    let merged = load_file(cli.config.as_deref())?.merge(overlay);
    let config = resolve(&merged)?;
    match cli.command {
        Command::Scan(_) => {
            let mut store = Store::open(&config.state_dir)?;
            let mut outlets = delivery::outlets(&config)?;
            pipeline::run_scan(&config, &mut store, &mut outlets)?;
        }
        Command::Watch(_) => {
            // Before any sink starts a thread of its own.
            daemon::block_signals();
            let mut store = Store::open(&config.state_dir)?;
            let outlets = delivery::outlets(&config)?;
            daemon::run(&config, &mut store, outlets)?;
        }
        Command::CheckConfig(_) => print!("{}", config::describe(&config, &merged)),
        Command::Status(_) | Command::DeadLetters(_) => {}
    }
    Ok(())
}

/// The state database for the inspection commands, which need no store
/// and take no lock (they may run beside `watch`).
fn state_outbox(file: Option<&Path>, args: &StateArgs) -> Result<(Outbox, Vec<String>), Error> {
    let fc = load_file(file)?;
    let dir = match args.state.clone().or(fc.state_dir.clone()) {
        Some(d) => d,
        None => config::default_state_dir(&|k| std::env::var(k).ok()).ok_or_else(|| {
            ConfigError("no --state given and neither $STATE_DIRECTORY nor $HOME is set".into())
        })?,
    };
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
    let (outbox, sinks) = state_outbox(file, args)?;
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
    let out = serde_json::json!({
        "outbox": {"waiting": total.events, "oldestSeconds": total.oldest_secs},
        "users": users,
        "folders": folders,
        "messages": messages,
        "sinks": per_sink,
        "deadLetters": outbox.dead_letters()?.len(),
    });
    println!("{out}");
    Ok(())
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
