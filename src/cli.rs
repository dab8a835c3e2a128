//! Command-line definitions (clap derive). No I/O here: every option maps
//! onto a key of the configuration file ([`FileConfig`]), so `main` merges
//! the two and resolves them once.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::file::{FileConfig, StoreConfig, WatchConfig};

/// Reports what happens in Maildir stores as RFC 5423 message store events,
/// as the IMAP server would: Dovecot's UIDs, UIDVALIDITY and mailbox names.
#[derive(Debug, Parser)]
#[command(name = "maildir-events", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file [default: /etc/maildir-events/config.toml when it
    /// exists]. Command-line options win over it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Errors only: no summary line, no warnings, no progress display.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More log lines: -v for info, -vv for debug. -q and -v win over
    /// $MAILDIR_EVENTS_LOG, which wins over the default (warnings and the
    /// summary line).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report what changed since the last run, as JSON Lines on stdout, then
    /// remember the new state. The first run over a store records a silent
    /// baseline (see --emit-existing).
    Scan(ScanArgs),
    /// Catch up like `scan`, then follow every change live (the systemd
    /// service). Stops cleanly on SIGTERM or SIGINT.
    Watch(WatchArgs),
    /// Check the configuration file and options, and print the resolved
    /// configuration as TOML, sinks included (their secrets left out); a
    /// file sink whose directory does not exist is an error.
    CheckConfig(ScanArgs),
    /// Print what the state database holds: users, folders and messages
    /// tracked, and per sink the events waiting and the oldest one's age
    /// (JSON). Safe to run while `watch` runs.
    Status(StateArgs),
    /// List the events sinks rejected for good (JSON Lines), or put them
    /// back for delivery with --replay.
    DeadLetters(DeadLetterArgs),
    /// Print the manual page (roff) on stdout, e.g.
    /// `maildir-events man | man -l -`.
    Man,
    /// Print a shell completion script on stdout, e.g.
    /// `maildir-events completions bash > /etc/bash_completion.d/maildir-events`.
    Completions {
        /// bash, zsh or fish.
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// The shells `completions` writes scripts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Just the state directory.
#[derive(Debug, Args)]
pub struct StateArgs {
    /// Directory of the state database [default: as for scan].
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DeadLetterArgs {
    #[command(flatten)]
    pub state: StateArgs,

    /// Put the dead letters (all, or those with these vnd.maildir.seq
    /// numbers) back in the outbox for the sink that rejected them.
    #[arg(long, value_name = "SEQ", num_args = 0..)]
    pub replay: Option<Vec<i64>>,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Close a batch when no change came for this many milliseconds
    /// (fractions allowed) [default: 0.5]. Short keeps latency low; changes
    /// that come together (a MOVE of 500 messages) still merge.
    #[arg(long, value_name = "MS", allow_negative_numbers = true, value_parser = millis)]
    pub batch_quiet_ms: Option<f64>,

    /// Close a batch at this age whatever comes (fractions allowed; more
    /// than 0 and at least --batch-quiet-ms) [default: 2]; a dense burst
    /// (over 10,000 changes a second) may take ten times as long.
    #[arg(long, value_name = "MS", allow_negative_numbers = true, value_parser = positive_millis)]
    pub batch_max_ms: Option<f64>,

    /// Rescan every user this often as a safety net, in seconds (0: never)
    /// [default: 3600].
    #[arg(long, value_name = "SECS", allow_negative_numbers = true, value_parser = whole)]
    pub rescan_interval: Option<u64>,

    /// Poll every SECS instead of using inotify (NFS and other filesystems
    /// where inotify sees nothing): folders whose directories changed are read.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true, value_parser = positive_secs)]
    pub poll: Option<f64>,

    /// With --poll: list every folder every N polls [default: 60].
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = whole_u32)]
    pub full_every: Option<u32>,

    /// Read folders the kernel would not watch (fs.inotify.max_user_watches
    /// reached) every SECS until a watch can be added [default: 5].
    #[arg(long, value_name = "SECS")]
    pub poll_unwatched: Option<f64>,

    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9898).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
}

/// Where the stores are and how to read and report them.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Maildir directories (each is one user's store; INBOX is its root).
    #[arg(value_name = "MAILDIR")]
    pub maildirs: Vec<PathBuf>,

    /// Every user of a store template, e.g. /var/vmail/{domain}/{local}/Maildir
    /// (user local@domain) or /home/{user}/Maildir. Repeatable.
    #[arg(long = "store", value_name = "TEMPLATE")]
    pub stores: Vec<String>,

    /// The user name for a single MAILDIR [default: the directory holding
    /// "Maildir", else the Maildir's own name].
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Directory of the state database [default: $STATE_DIRECTORY, else
    /// $XDG_STATE_HOME/maildir-events, else ~/.local/state/maildir-events].
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,

    /// The server name in events' IMAP URLs and serverFQDN [default: this host's FQDN].
    #[arg(long, value_name = "FQDN")]
    pub server_name: Option<String>,

    /// IMAP hierarchy separator of mailbox names (Dovecot's namespace
    /// separator) [default: .].
    #[arg(long, value_name = "CHAR", value_parser = one_char)]
    pub separator: Option<String>,

    /// The IMAP namespace prefix of folder names other than INBOX, e.g.
    /// "INBOX." (Courier-IMAP, and Dovecot set up with `prefix = INBOX.`)
    /// [default: "INBOX." for a Courier store, else none; "" for none].
    #[arg(long, value_name = "PREFIX")]
    pub namespace_prefix: Option<String>,

    /// The info separator in message file names [default: ":"; ";" or "!"
    /// for stores written for filesystems that forbid ":"].
    #[arg(long, value_name = "CHAR", value_parser = info_char)]
    pub info_separator: Option<String>,

    /// Folder names on disk are UTF-8 (Dovecot's mailbox_list_utf8), not modified UTF-7.
    #[arg(long)]
    pub utf8_names: bool,

    /// How long to wait for Dovecot to write a new file's UID, in
    /// milliseconds [default: 2000].
    #[arg(long, value_name = "MS", allow_negative_numbers = true, value_parser = whole)]
    pub uid_wait_ms: Option<u64>,

    /// On the first run over a store, report everything that exists rather
    /// than recording a silent baseline (backfill).
    #[arg(long)]
    pub emit_existing: bool,

    /// Report \Seen and \Deleted as FlagsSet/FlagsClear rather than
    /// MessageRead/MessageTrash.
    #[arg(long)]
    pub no_simple_flag_events: bool,

    /// List every folder, even those whose directories did not change.
    #[arg(long)]
    pub full: bool,

    /// Take only the users of shard K of N (1 <= K <= N), so N instances
    /// with their own state split one store; by a stable hash of the user name.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,

    /// Dovecot's info log (info_log_path, or the syslog file it goes to),
    /// read for Login, Logout and delivery refusals (QuotaExceed); `journal`
    /// reads the systemd journal of dovecot.service. Repeatable.
    #[arg(long = "access-log", value_name = "FILE")]
    pub access_logs: Vec<String>,

    /// Accept a MAILDIR that does not exist yet, or an empty directory
    /// (the server creates it at the first delivery). Without it such a
    /// MAILDIR is an error (exit 66).
    #[arg(long)]
    pub allow_missing: bool,
}

impl StoreArgs {
    /// The options given, as a configuration to lay over the file's.
    pub fn overlay(&self) -> Result<FileConfig, String> {
        if self.user.is_some() && self.maildirs.len() != 1 {
            return Err("--user names the user of exactly one MAILDIR".into());
        }
        let mut store: Vec<StoreConfig> = self
            .maildirs
            .iter()
            .map(|p| StoreConfig {
                path: Some(p.clone()),
                user: self.user.clone(),
                ..StoreConfig::default()
            })
            .collect();
        store.extend(self.stores.iter().map(|t| StoreConfig {
            template: Some(t.clone()),
            ..StoreConfig::default()
        }));
        let flag = |b: bool| b.then_some(true);
        Ok(FileConfig {
            state_dir: self.state.clone(),
            server_name: self.server_name.clone(),
            separator: self.separator.clone(),
            namespace_prefix: self.namespace_prefix.clone(),
            info_separator: self.info_separator.clone(),
            utf8_names: flag(self.utf8_names),
            uid_wait_ms: self.uid_wait_ms,
            emit_existing: flag(self.emit_existing),
            simple_flag_events: self.no_simple_flag_events.then_some(false),
            full: flag(self.full),
            shard: self.shard.clone(),
            allow_missing: flag(self.allow_missing),
            store,
            access: (!self.access_logs.is_empty()).then(|| crate::config::file::AccessConfig {
                logs: self.access_logs.clone(),
            }),
            ..FileConfig::default()
        })
    }
}

impl WatchArgs {
    /// The options given, as a configuration to lay over the file's.
    pub fn overlay(&self) -> Result<FileConfig, String> {
        let mut fc = self.store.overlay()?;
        fc.watch = Some(WatchConfig {
            batch_quiet_ms: self.batch_quiet_ms,
            batch_max_ms: self.batch_max_ms,
            rescan_interval: self.rescan_interval,
            poll: self.poll,
            full_every: self.full_every,
            poll_unwatched: self.poll_unwatched,
        });
        fc.metrics = self
            .metrics
            .clone()
            .map(|listen| crate::config::file::MetricsConfig {
                listen: Some(listen),
            });
        Ok(fc)
    }
}

/// A number of milliseconds, 0 or more, fractions allowed.
fn millis(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of milliseconds (0 or more, e.g. 0.5 or 20)"
        )),
    }
}

/// A number of milliseconds above 0, fractions allowed.
fn positive_millis(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of milliseconds above 0 (e.g. 2 or 2.5)"
        )),
    }
}

/// A number of seconds above 0, fractions allowed.
fn positive_secs(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds above 0 (e.g. 5 or 0.5)"
        )),
    }
}

/// A whole number, 0 or more.
fn whole(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<u64>()
        .map_err(|_| format!("{s:?} is not a whole number (0 or more)"))
}

fn whole_u32(s: &str) -> Result<u32, String> {
    s.trim()
        .parse::<u32>()
        .map_err(|_| format!("{s:?} is not a whole number from 0 to {}", u32::MAX))
}

/// Exactly one character.
fn one_char(s: &str) -> Result<String, String> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(_), None) => Ok(s.to_string()),
        _ => Err(format!("takes exactly one character, not {s:?}")),
    }
}

/// One character that can separate a Maildir file name's info part.
fn info_char(s: &str) -> Result<String, String> {
    let s = one_char(s)?;
    match s.as_str() {
        "/" | "." | "," => Err(format!(
            "{s:?} cannot separate a Maildir name (use :, ; or !)"
        )),
        c if !c.is_ascii() => Err(format!(
            "{s:?} cannot separate a Maildir name (use :, ; or !)"
        )),
        _ => Ok(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_values_are_checked() {
        assert_eq!(millis("0.5"), Ok(0.5));
        assert_eq!(millis("0"), Ok(0.0));
        assert_eq!(positive_millis("2.5"), Ok(2.5));
        for bad in ["-1", "NaN", "inf", "soon", ""] {
            assert!(millis(bad).is_err(), "{bad}");
        }
        assert!(positive_millis("0").is_err());
        assert!(positive_secs("-3").is_err());
        assert_eq!(whole("3600"), Ok(3600));
        assert!(whole("-1").unwrap_err().contains("whole number"));
        assert!(whole("2.5").is_err());
        assert_eq!(one_char("/").as_deref(), Ok("/"));
        assert!(one_char("::").unwrap_err().contains("exactly one"));
        assert!(one_char("").is_err());
        assert_eq!(info_char(";").as_deref(), Ok(";"));
        assert!(info_char(",").is_err());
        assert!(info_char("é").is_err());
    }
}
