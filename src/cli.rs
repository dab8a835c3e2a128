//! Command-line definitions (clap derive). No I/O here: `main` turns these
//! into a validated [`Config`](crate::config::Config).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Reports what happens in Maildir stores as RFC 5423 message store events,
/// as the IMAP server would: Dovecot's UIDs, UIDVALIDITY and mailbox names.
#[derive(Debug, Parser)]
#[command(name = "maildir-events", version, about, long_about = None)]
pub struct Cli {
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
    /// (fractions allowed: 0.5). Short keeps latency low; changes that come
    /// together (a MOVE of 500 messages) still merge.
    #[arg(long, value_name = "MS", default_value_t = 0.5)]
    pub batch_quiet_ms: f64,

    /// Close a batch at this age whatever comes; a dense burst (over 10,000
    /// changes a second) may take ten times as long, so it still merges.
    #[arg(long, value_name = "MS", default_value_t = 5)]
    pub batch_max_ms: u64,

    /// Rescan every user this often as a safety net, in seconds (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub rescan_interval: u64,

    /// Poll every SECS instead of using inotify (NFS and other filesystems
    /// where inotify sees nothing): folders whose directories changed are read.
    #[arg(long, value_name = "SECS")]
    pub poll: Option<f64>,

    /// With --poll: list every folder every N polls.
    #[arg(long, value_name = "N", default_value_t = 60)]
    pub full_every: u32,
}

/// Where the stores are and how to read and report them.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Maildir directories to scan (each is one user's store; INBOX is its root).
    #[arg(value_name = "MAILDIR")]
    pub maildirs: Vec<PathBuf>,

    /// Scan every user of a store template, e.g. /var/vmail/{domain}/{local}/Maildir
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

    /// IMAP hierarchy separator of mailbox names (Dovecot's namespace separator).
    #[arg(long, value_name = "CHAR", default_value = ".")]
    pub separator: String,

    /// The info separator in message file names (":" unless the store was
    /// written for a filesystem that forbids it, e.g. ";" or "!").
    #[arg(long, value_name = "CHAR", default_value = ":")]
    pub info_separator: String,

    /// Folder names on disk are UTF-8 (Dovecot's mailbox_list_utf8), not modified UTF-7.
    #[arg(long)]
    pub utf8_names: bool,

    /// How long to wait for Dovecot to write a new file's UID, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub uid_wait_ms: u64,

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
}
