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
    /// configuration as TOML.
    CheckConfig(ScanArgs),
    /// Print what the state database holds: users, folders and messages
    /// tracked, and per sink the events waiting and the oldest one's age
    /// (JSON). Safe to run while `watch` runs.
    Status(StateArgs),
    /// List the events sinks rejected for good (JSON Lines), or put them
    /// back for delivery with --replay.
    DeadLetters(DeadLetterArgs),
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
    #[arg(long, value_name = "MS")]
    pub batch_quiet_ms: Option<f64>,

    /// Close a batch at this age whatever comes [default: 2]; a dense burst
    /// (over 10,000 changes a second) may take ten times as long.
    #[arg(long, value_name = "MS")]
    pub batch_max_ms: Option<u64>,

    /// Rescan every user this often as a safety net, in seconds (0: never)
    /// [default: 3600].
    #[arg(long, value_name = "SECS")]
    pub rescan_interval: Option<u64>,

    /// Poll every SECS instead of using inotify (NFS and other filesystems
    /// where inotify sees nothing): folders whose directories changed are read.
    #[arg(long, value_name = "SECS")]
    pub poll: Option<f64>,

    /// With --poll: list every folder every N polls [default: 60].
    #[arg(long, value_name = "N")]
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
    #[arg(long, value_name = "CHAR")]
    pub separator: Option<String>,

    /// The IMAP namespace prefix of folder names other than INBOX, e.g.
    /// "INBOX." (Courier-IMAP, and Dovecot set up with `prefix = INBOX.`)
    /// [default: "INBOX." for a Courier store, else none; "" for none].
    #[arg(long, value_name = "PREFIX")]
    pub namespace_prefix: Option<String>,

    /// The info separator in message file names [default: ":"; ";" or "!"
    /// for stores written for filesystems that forbid ":"].
    #[arg(long, value_name = "CHAR")]
    pub info_separator: Option<String>,

    /// Folder names on disk are UTF-8 (Dovecot's mailbox_list_utf8), not modified UTF-7.
    #[arg(long)]
    pub utf8_names: bool,

    /// How long to wait for Dovecot to write a new file's UID, in
    /// milliseconds [default: 2000].
    #[arg(long, value_name = "MS")]
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
