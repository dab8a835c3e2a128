//! The `maildir-events` binary: parses the command line, runs the library,
//! maps errors to sysexits-style exit codes.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use maildir_events::cli::{Cli, Command, StoreArgs, WatchArgs};
use maildir_events::config::{self, Config, ConfigError, Source, Template};
use maildir_events::daemon::WatchOptions;
use maildir_events::error::{EX_OK, Error};
use maildir_events::scan::ScanOptions;
use maildir_events::sink::stdout::StdoutSink;
use maildir_events::store::Store;
use maildir_events::{daemon, host, pipeline};

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
    let result = match cli.command {
        Command::Scan(args) => scan(args.store),
        Command::Watch(args) => watch(args),
    };
    match result {
        Ok(()) => ExitCode::from(EX_OK as u8),
        Err(e) => {
            eprintln!("maildir-events: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn scan(args: StoreArgs) -> Result<(), Error> {
    let config = store_config(args)?;
    let mut store = Store::open(&config.state_dir)?;
    let mut sink = StdoutSink::new();
    pipeline::run_scan(&config, &mut store, &mut sink)?;
    Ok(())
}

fn watch(args: WatchArgs) -> Result<(), Error> {
    let ms = |what: &str, v: f64| {
        if v.is_finite() && v >= 0.0 {
            Ok(Duration::from_secs_f64(v / 1000.0))
        } else {
            Err(ConfigError(format!(
                "{what} must be a number of milliseconds, not {v}"
            )))
        }
    };
    let opts = WatchOptions {
        batch_quiet: ms("--batch-quiet-ms", args.batch_quiet_ms)?,
        batch_max: Duration::from_millis(args.batch_max_ms.max(1)),
        rescan_interval: (args.rescan_interval > 0)
            .then(|| Duration::from_secs(args.rescan_interval)),
        poll: match args.poll {
            Some(p) if p.is_finite() && p > 0.0 => Some(Duration::from_secs_f64(p)),
            Some(p) => {
                return Err(ConfigError(format!(
                    "--poll must be a positive number of seconds, not {p}"
                ))
                .into());
            }
            None => None,
        },
        full_every: args.full_every,
    };
    let config = store_config(args.store)?;
    let mut store = Store::open(&config.state_dir)?;
    let mut sink = StdoutSink::new();
    daemon::run(&config, &opts, &mut store, &mut sink)
}

fn one_char(option: &str, value: &str) -> Result<char, ConfigError> {
    let mut chars = value.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Ok(c),
        _ => Err(ConfigError(format!(
            "{option} takes exactly one character, not {value:?}"
        ))),
    }
}

fn store_config(args: StoreArgs) -> Result<Config, ConfigError> {
    let env = |k: &str| std::env::var(k).ok();
    let state_dir = match args.state {
        Some(d) => d,
        None => config::default_state_dir(&env).ok_or_else(|| {
            ConfigError("no --state given and neither $STATE_DIRECTORY nor $HOME is set".into())
        })?,
    };
    if args.maildirs.is_empty() && args.stores.is_empty() {
        return Err(ConfigError(
            "nothing to scan: give MAILDIR paths or --store TEMPLATE".into(),
        ));
    }
    if args.user.is_some() && args.maildirs.len() != 1 {
        return Err(ConfigError(
            "--user names the user of exactly one MAILDIR".into(),
        ));
    }
    let mut sources = Vec::new();
    for path in &args.maildirs {
        let path = std::path::absolute(path)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        let user = match &args.user {
            Some(u) => u.clone(),
            None => config::user_from_path(&path).ok_or_else(|| {
                ConfigError(format!(
                    "cannot tell the user of {}; pass --user",
                    path.display()
                ))
            })?,
        };
        sources.push(Source::Maildir { path, user });
    }
    for t in &args.stores {
        sources.push(Source::Template(Template::parse(t)?));
    }
    let hier_sep = one_char("--separator", &args.separator)?;
    let info = one_char("--info-separator", &args.info_separator)?;
    if !info.is_ascii() || info == '/' || info == '.' || info == ',' {
        return Err(ConfigError(format!(
            "--info-separator {info:?} cannot separate a Maildir name"
        )));
    }
    Ok(Config {
        state_dir,
        sources,
        server_name: args.server_name.unwrap_or_else(host::fqdn),
        scan: ScanOptions {
            info_sep: info as u8,
            hier_sep,
            utf8_names: args.utf8_names,
            full: args.full,
        },
        uid_wait: Duration::from_millis(args.uid_wait_ms),
        emit_existing: args.emit_existing,
        simple_flag_events: !args.no_simple_flag_events,
    })
}
