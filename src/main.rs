//! The `maildir-events` binary: parses the command line, runs the library,
//! maps errors to sysexits-style exit codes.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use maildir_events::cli::{Cli, Command};
use maildir_events::config::file::{DEFAULT_PATH, FileConfig};
use maildir_events::config::{self, Config, ConfigError};
use maildir_events::error::{EX_OK, Error};
use maildir_events::store::Store;
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
            let mut store = Store::open(&config.state_dir)?;
            let outlets = delivery::outlets(&config)?;
            daemon::run(&config, &mut store, outlets)?;
        }
        Command::CheckConfig(_) => print!("{}", config::describe(&config, &merged)),
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
