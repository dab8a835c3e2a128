//! The configuration file (TOML) and the command line, as one schema.
//!
//! Every command-line option has a key here, and the command line is turned
//! into a [`FileConfig`] too: the two are merged (command line wins) and
//! resolved once into a [`Config`](super::Config). Unknown keys are errors
//! that name the key and the line, so a typo never silently does nothing.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The default place of the configuration file.
pub const DEFAULT_PATH: &str = "/etc/maildir-events/config.toml";

/// Everything settable, each optional so files and the command line merge.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Directory of the state database.
    pub state_dir: Option<PathBuf>,
    /// The server name in URLs and `serverFQDN`.
    pub server_name: Option<String>,
    /// IMAP hierarchy separator (Dovecot's namespace separator).
    pub separator: Option<String>,
    /// Namespace prefix of folder names (`INBOX.`); detected for Courier
    /// stores when absent.
    pub namespace_prefix: Option<String>,
    /// The `:` of `name:2,FS`.
    pub info_separator: Option<String>,
    /// Folder names on disk are UTF-8, not modified UTF-7.
    pub utf8_names: Option<bool>,
    /// How long to wait for Dovecot to number a new file.
    pub uid_wait_ms: Option<u64>,
    /// Report what exists on the first run instead of a silent baseline.
    pub emit_existing: Option<bool>,
    /// `\Seen`/`\Deleted` as MessageRead/MessageTrash (else FlagsSet).
    pub simple_flag_events: Option<bool>,
    /// List every folder even when its stamps are unchanged.
    pub full: Option<bool>,
    /// `K/N`: take only the users of shard K of N (a fleet sharing a store).
    pub shard: Option<String>,
    /// Accept a named Maildir that does not exist yet (or is empty).
    pub allow_missing: Option<bool>,
    /// The stores to watch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub store: Vec<StoreConfig>,
    pub watch: Option<WatchConfig>,
    pub filter: Option<FilterConfig>,
    pub content: Option<ContentConfig>,
    pub quota: Option<QuotaConfig>,
    /// Dovecot's logs, for Login, Logout and delivery refusals.
    pub access: Option<AccessConfig>,
    /// Expunges matching a rule are MessageExpire.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expire: Vec<ExpireConfig>,
    /// Where events go (default: stdout).
    #[serde(default, skip_serializing)]
    pub sink: Vec<crate::sink::SinkConfig>,
    /// `[metrics] listen = "127.0.0.1:9898"`: the Prometheus endpoint of
    /// `watch` (off when absent).
    pub metrics: Option<MetricsConfig>,
    /// At this many undelivered events the engine stops taking changes
    /// (they stay in the Maildir and the next rescan finds them).
    pub outbox_limit: Option<u64>,
}

/// One store: a template of many users, or one Maildir of one user.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `/var/vmail/{domain}/{local}/Maildir` and the like.
    pub template: Option<String>,
    /// One Maildir.
    pub path: Option<PathBuf>,
    /// The user of `path`.
    pub user: Option<String>,
    /// RFC 5423 `tags` added to every event of this store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// The live loop.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    /// 0 or more; checked here so an error names the line.
    #[serde(
        default,
        deserialize_with = "quiet_ms",
        serialize_with = "whole_if_whole",
        skip_serializing_if = "Option::is_none"
    )]
    pub batch_quiet_ms: Option<f64>,
    /// More than 0, fractions allowed like `batch_quiet_ms`.
    #[serde(
        default,
        deserialize_with = "max_ms",
        serialize_with = "whole_if_whole",
        skip_serializing_if = "Option::is_none"
    )]
    pub batch_max_ms: Option<f64>,
    pub rescan_interval: Option<u64>,
    pub poll: Option<f64>,
    pub full_every: Option<u32>,
    pub poll_unwatched: Option<f64>,
}

/// `batch_quiet_ms`: a number of milliseconds, 0 or more.
fn quiet_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let v = f64::deserialize(d)?;
    if v.is_finite() && v >= 0.0 {
        Ok(Some(v))
    } else {
        Err(serde::de::Error::custom(format!(
            "must be 0 or more milliseconds, not {v}"
        )))
    }
}

/// `batch_max_ms`: a number of milliseconds above 0.
fn max_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let v = f64::deserialize(d)?;
    if v.is_finite() && v > 0.0 {
        Ok(Some(v))
    } else {
        Err(serde::de::Error::custom(format!(
            "must be more than 0 milliseconds, not {v}"
        )))
    }
}

/// Milliseconds as written by `check-config`: `2`, not `2.0`.
fn whole_if_whole<S: serde::Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(x) if x.fract() == 0.0 && *x >= 0.0 && *x < 1e15 => s.serialize_u64(*x as u64),
        Some(x) => s.serialize_f64(*x),
        None => s.serialize_none(),
    }
}

/// Which events and parameters to send (after Cyrus's options).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Event groups to send: message, flags, quota, mailbox, subscription,
    /// access. Default: all.
    pub groups: Option<Vec<String>>,
    /// Folders (IMAP names, `*` and `?` globs) whose events are not sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_folders: Vec<String>,
    /// Flags (`\Seen`, `$Junk`, …) whose changes are not sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_flags: Vec<String>,
}

/// Message content parameters of MessageNew and MessageAppend.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContentConfig {
    /// standard, message, header, body or headerbody.
    pub mode: Option<String>,
    /// Size cap of `messageContent` in bytes.
    pub max_size: Option<usize>,
    /// At most this many bytes of a message file are read for content
    /// parameters; a larger message's event goes out without them.
    pub max_read: Option<u64>,
    /// Optional parameters: messageContent, bodyStructure, envelope,
    /// messageId, subject, from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
}

/// Quota limits and what counts.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// Storage limit for every user (`1G`, `500M`, bytes without suffix).
    pub storage: Option<String>,
    /// Message count limit for every user.
    pub messages: Option<u64>,
    /// Config limits win over `maildirsize` (like Dovecot 2.3's `*` rule).
    pub force: Option<bool>,
    /// Folders (globs) not counted, like Dovecot's `quota_ignore`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
    /// How far under the limit usage must fall before QuotaWithin, in
    /// percent of the limit.
    pub hysteresis_percent: Option<f64>,
    /// Usage at this percentage of a limit counts as full (QuotaExceed):
    /// delivery agents refuse the message that would cross the limit, so
    /// usage may never reach it. Default 100.
    pub full_at_percent: Option<f64>,
    /// Per-user limits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user: Vec<UserQuotaConfig>,
}

/// Dovecot's logs read for Login, Logout and QuotaExceed.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Dovecot's info log files (`info_log_path`, or the syslog file it
    /// goes to), or `journal` for the systemd journal of dovecot.service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
}

/// One user's limits.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserQuotaConfig {
    pub user: String,
    pub storage: Option<String>,
    pub messages: Option<u64>,
    pub force: Option<bool>,
}

/// The Prometheus endpoint.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address and port; keep it on loopback unless a firewall guards it.
    pub listen: Option<String>,
}

/// An expire rule, like Dovecot's `autoexpunge`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpireConfig {
    /// Folder name or glob.
    pub folder: String,
    /// Minimum age: `30d`, `12h`, `2w`, seconds without suffix.
    pub min_age: String,
}

impl FileConfig {
    /// Reads and parses a file; errors name the file, the key and the line.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("config {}: cannot read: {e}", path.display())))?;
        FileConfig::parse(&text)
            .map_err(|e| ConfigError(format!("config {}: {}", path.display(), e.0)))
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| {
            // A `[[sink]]` table is read by type (`type = "webhook"`),
            // which buffers it and loses the lines: find the sink's own
            // error again, with the line of its key.
            let e = sink_error(text).unwrap_or(e);
            ConfigError(e.to_string().trim_end().replace('\n', "\n  "))
        })
    }

    /// Merges `over` (the command line) onto `self` (the file): every value
    /// `over` sets wins; its stores replace the file's when it names any.
    pub fn merge(mut self, over: FileConfig) -> FileConfig {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f; } )* };
        }
        take!(
            state_dir,
            server_name,
            separator,
            namespace_prefix,
            info_separator,
            utf8_names,
            uid_wait_ms,
            emit_existing,
            simple_flag_events,
            full,
            shard,
            allow_missing,
            filter,
            content,
            quota,
            access,
            outbox_limit,
            metrics
        );
        if !over.sink.is_empty() {
            self.sink = over.sink;
        }
        if !over.store.is_empty() {
            self.store = over.store;
        }
        if !over.expire.is_empty() {
            self.expire = over.expire;
        }
        if let Some(w) = over.watch {
            let mine = self.watch.get_or_insert_with(WatchConfig::default);
            macro_rules! take_w {
                ($($f:ident),*) => { $( if w.$f.is_some() { mine.$f = w.$f; } )* };
            }
            take_w!(
                batch_quiet_ms,
                batch_max_ms,
                rescan_interval,
                poll,
                full_every,
                poll_unwatched
            );
        }
        self
    }

    /// The file as TOML (for `check-config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot show: {e}\n"))
    }
}

/// The first `[[sink]]` table that does not parse as the sink its `type`
/// names, with an error that points at the offending key (its line and
/// column); `None` when every sink parses (the error is elsewhere).
fn sink_error(text: &str) -> Option<toml::de::Error> {
    use crate::sink::{file, nats, webhook};
    use toml::de::{DeTable, DeValue, ValueDeserializer};
    let root = DeTable::parse(text).ok()?;
    let sinks = root.get_ref().get("sink")?.get_ref().as_array()?;
    for entry in sinks.iter() {
        let Some(table) = entry.get_ref().as_table() else {
            continue;
        };
        let kind = table.get("type").and_then(|v| v.get_ref().as_str());
        let mut rest = table.clone();
        rest.remove("type");
        let de = || {
            ValueDeserializer::from(toml::Spanned::new(
                entry.span(),
                DeValue::Table(rest.clone()),
            ))
        };
        let err = match kind {
            Some("file") => file::FileConfig::deserialize(de()).err(),
            Some("webhook") => webhook::WebhookConfig::deserialize(de()).err(),
            Some("nats") => nats::NatsConfig::deserialize(de()).err(),
            _ => None,
        };
        if let Some(mut e) = err {
            e.set_input(Some(text));
            return Some(e);
        }
    }
    None
}

/// Parses a size: bytes, or with a suffix B, K, M, G, T (powers of 1024,
/// as Dovecot reads them).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'B' => 1,
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => {
                    return Err(format!(
                        "{s:?}: unknown size suffix {c:?} (use B, K, M, G or T)"
                    ));
                }
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 500M, 2G, 1048576)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses a duration: seconds, or with a suffix s, m, h, d, w.
pub fn parse_age(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => {
            let m = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 604_800,
                _ => return Err(format!("{s:?}: unknown unit {c:?} (use s, m, h, d or w)")),
            };
            (&t[..t.len() - 1], m)
        }
        _ => (t, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an age (e.g. 30d, 12h)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let e = FileConfig::parse("server_name = \"mx\"\nsever_name = \"typo\"\n").unwrap_err();
        assert!(e.0.contains("sever_name") && e.0.contains("line 2"), "{e}");
        let e = FileConfig::parse("[filter]\nexclude_folder = [\"Junk\"]\n").unwrap_err();
        assert!(
            e.0.contains("exclude_folder") && e.0.contains("line 2"),
            "{e}"
        );
        let e = FileConfig::parse(
            "[[sink]]\ntype = \"stdout\"\n\n[[sink]]\ntype = \"webhook\"\nurl = \"http://h/\"\nretrys = 3\n",
        )
        .unwrap_err();
        assert!(e.0.contains("retrys") && e.0.contains("line 7"), "{e}");
        let e = FileConfig::parse("[[sink]]\ntype = \"file\"\npaht = \"/x\"\n").unwrap_err();
        assert!(e.0.contains("paht") && e.0.contains("line 3"), "{e}");
        let e = FileConfig::parse("[[sink]]\ntype = \"nats\"\nretries = \"many\"\n").unwrap_err();
        assert!(e.0.contains("retries") && e.0.contains("line 3"), "{e}");
        let e = FileConfig::parse("[watch]\nbatch_max_ms = 0\n").unwrap_err();
        assert!(e.0.contains("more than 0") && e.0.contains("line 2"), "{e}");
        let w = FileConfig::parse("[watch]\nbatch_max_ms = 2.5\nbatch_quiet_ms = 1\n")
            .unwrap()
            .watch
            .unwrap();
        assert_eq!((w.batch_max_ms, w.batch_quiet_ms), (Some(2.5), Some(1.0)));
        let e = FileConfig::parse("uid_wait_ms = \"soon\"\n").unwrap_err();
        assert!(e.0.contains("line 1") && e.0.contains("uid_wait_ms"), "{e}");
    }

    #[test]
    fn command_line_wins_and_stores_replace() {
        let file = FileConfig::parse(
            "server_name = \"file\"\nuid_wait_ms = 10\n[[store]]\ntemplate = \"/a/{user}\"\n[watch]\nbatch_max_ms = 9\npoll = 2.0\n",
        )
        .unwrap();
        let cli = FileConfig {
            server_name: Some("cli".into()),
            store: vec![StoreConfig {
                path: Some("/m".into()),
                ..StoreConfig::default()
            }],
            watch: Some(WatchConfig {
                batch_max_ms: Some(3.0),
                ..WatchConfig::default()
            }),
            ..FileConfig::default()
        };
        let m = file.merge(cli);
        assert_eq!(m.server_name.as_deref(), Some("cli"));
        assert_eq!(m.uid_wait_ms, Some(10));
        assert_eq!(m.store.len(), 1);
        assert_eq!(m.store[0].path.as_deref(), Some(Path::new("/m")));
        let w = m.watch.unwrap();
        assert_eq!((w.batch_max_ms, w.poll), (Some(3.0), Some(2.0)));
    }

    #[test]
    fn sizes_and_ages() {
        for (s, n) in [
            ("1024", 1024),
            ("1K", 1024),
            ("2G", 2 << 30),
            ("500m", 500 << 20),
            ("7B", 7),
        ] {
            assert_eq!(parse_size(s), Ok(n), "{s}");
        }
        assert!(parse_size("1X").unwrap_err().contains("suffix"));
        assert!(parse_size("lots").is_err());
        for (s, n) in [
            ("30d", 2_592_000),
            ("12h", 43_200),
            ("90", 90),
            ("2w", 1_209_600),
        ] {
            assert_eq!(parse_age(s), Ok(n), "{s}");
        }
        assert!(parse_age("3y").is_err());
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../../config.example.toml");
        let c = FileConfig::parse(text).unwrap();
        assert!(!c.store.is_empty());
    }
}
