//! The validated configuration a run works with, and store templates.
//!
//! Everything the CLI accepts is checked here once, so the rest of the
//! program works with values that are known to be good and errors name
//! the option that was wrong.

pub mod file;
mod resolve;
pub mod shard;

pub use crate::maildir::template::{Part, Template, TemplateError, Var};
pub use resolve::{batch_window, describe, resolve};

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::event::filter::{Filter, Group};
use crate::quota::{Limits, QuotaRules};
use crate::scan::ScanOptions;
use file::{FileConfig, parse_age, parse_size};

impl From<TemplateError> for ConfigError {
    fn from(e: TemplateError) -> Self {
        ConfigError(e.0)
    }
}

/// Where users' Maildirs are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// One Maildir, for one user.
    Maildir { path: PathBuf, user: String },
    /// Every directory matching a template such as
    /// `/var/vmail/{domain}/{local}/Maildir`.
    Template(Template),
}

/// A store to watch, with the RFC 5423 `tags` of its events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub kind: SourceKind,
    pub tags: Vec<String>,
    /// With `--shard K/N`, only the users of that shard are taken.
    pub shard: Option<shard::Shard>,
}

impl Source {
    /// A stable text naming this source in the state database, so the first
    /// run over a source can record a silent baseline.
    ///
    /// The shard is part of it: a different shard is a different set of
    /// users, whose first run is a silent baseline again.
    pub fn spec(&self) -> String {
        let spec = match &self.kind {
            SourceKind::Maildir { path, user } => format!("maildir:{}:{}", user, path.display()),
            SourceKind::Template(t) => format!("template:{}", t.raw),
        };
        match &self.shard {
            Some(s) => format!("{spec}#shard={s}"),
            None => spec,
        }
    }

    /// Whether this instance takes `user` (always, without shards).
    pub fn owns(&self, user: &str) -> bool {
        self.shard.is_none_or(|s| s.owns(user))
    }
}

/// An expire rule: expunges from matching folders of messages at least
/// `min_age` seconds old are MessageExpire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpireRule {
    pub folder: String,
    pub min_age: u64,
}

/// Whether an expunge of `base` from `folder` at `now` (seconds since the
/// epoch) is an expiry: a rule's folder glob matches and the message is at
/// least `min_age` old. The age comes from the seconds every Maildir
/// writer puts at the start of the name (the delivery time), because the
/// file is gone and its mtime with it.
pub fn expires(rules: &[ExpireRule], now: u64, folder: &str, base: &[u8]) -> bool {
    let digits = base.iter().take_while(|b| b.is_ascii_digit()).count();
    let Some(received) = std::str::from_utf8(&base[..digits])
        .ok()
        .and_then(|d| d.parse::<u64>().ok())
    else {
        return false;
    };
    rules.iter().any(|r| {
        crate::maildir::glob::glob(&r.folder, folder) && now.saturating_sub(received) >= r.min_age
    })
}

/// Which optional message parameters to compute (see `content`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContentSettings {
    /// standard, message, header, body or headerbody.
    pub mode: String,
    pub max_size: usize,
    /// At most this many bytes of a message file are read (0: 8 MiB).
    pub max_read: u64,
    /// messageContent, bodyStructure, envelope, messageId, subject, from.
    pub include: Vec<String>,
}

impl ContentSettings {
    /// The options the `content` module computes with (validated by
    /// `resolve`, so unknown names cannot occur here).
    pub fn options(&self) -> crate::content::ContentOptions {
        use crate::content::InclusionMode;
        let has = |p: &str| self.include.iter().any(|i| i == p);
        crate::content::ContentOptions {
            message_content: has("messageContent"),
            mode: match self.mode.as_str() {
                "message" => InclusionMode::Message,
                "header" => InclusionMode::Header,
                "body" => InclusionMode::Body,
                "headerbody" => InclusionMode::HeaderBody,
                _ => InclusionMode::Standard,
            },
            max_size: self.max_size,
            body_structure: has("bodyStructure"),
            envelope: has("envelope"),
            message_id: has("messageId"),
            subject: has("subject"),
            from: has("from"),
            max_read: self.max_read,
        }
    }
}

/// Content inclusion modes, as Cyrus names them.
pub const CONTENT_MODES: [&str; 5] = ["standard", "message", "header", "body", "headerbody"];
/// Optional message parameters.
pub const CONTENT_PARAMETERS: [&str; 6] = [
    "messageContent",
    "bodyStructure",
    "envelope",
    "messageId",
    "subject",
    "from",
];

/// Settings of the live loop.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchOptions {
    /// A batch closes when no signal came for this long…
    pub batch_quiet: Duration,
    /// …or when it is this old.
    pub batch_max: Duration,
    /// A full rescan of every user this often (a safety net).
    pub rescan_interval: Option<Duration>,
    /// Poll instead of inotify (NFS): re-read folders whose stamps changed
    /// this often.
    pub poll: Option<Duration>,
    /// With `poll`: every this many polls, list every folder.
    pub full_every: u32,
    /// Folders the kernel would not watch (its watch limit is reached) are
    /// read this often instead, until a watch can be added.
    pub poll_unwatched: Duration,
}

/// Everything one run needs.
#[derive(Clone, Debug)]
pub struct Config {
    pub state_dir: PathBuf,
    pub sources: Vec<Source>,
    pub server_name: String,
    pub scan: ScanOptions,
    /// How long to wait for Dovecot to write a new file's UID.
    pub uid_wait: Duration,
    /// Report what already exists on the first run over a source.
    pub emit_existing: bool,
    /// A named Maildir may be missing (or empty) at start.
    pub allow_missing: bool,
    /// Report `\Seen` and `\Deleted` as MessageRead and MessageTrash rather
    /// than FlagsSet (RFC 5423 §4.2 says this SHOULD be configurable).
    pub simple_flag_events: bool,
    pub filter: Filter,
    pub content: ContentSettings,
    pub quota: Option<QuotaRules>,
    /// Dovecot's logs (paths, or `journal`) read for Login, Logout and
    /// delivery refusals.
    pub access_logs: Vec<String>,
    pub expire: Vec<ExpireRule>,
    pub watch: WatchOptions,
    /// Where events go; empty means stdout.
    pub sinks: Vec<crate::sink::SinkConfig>,
    /// Undelivered events at which `watch` stops taking changes.
    pub outbox_limit: u64,
    /// Where `watch` serves Prometheus metrics, if anywhere.
    pub metrics_listen: Option<String>,
}

/// A configuration error; the message names the option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The default state directory: systemd's `$STATE_DIRECTORY`, else the XDG
/// state directory of the user.
pub fn default_state_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(d) = env("STATE_DIRECTORY") {
        // systemd passes a colon-separated list when several are set.
        if let Some(first) = d.split(':').find(|s| !s.is_empty()) {
            return Some(PathBuf::from(first));
        }
    }
    if let Some(d) = env("XDG_STATE_HOME").filter(|d| d.starts_with('/')) {
        return Some(Path::new(&d).join("maildir-events"));
    }
    env("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| Path::new(&h).join(".local/state/maildir-events"))
}

/// The user name for a Maildir given without `--user`: the directory that
/// holds it when it is called `Maildir` (`/home/bob/Maildir` is bob's), else
/// the Maildir directory's own name.
pub fn user_from_path(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    if name.eq_ignore_ascii_case("maildir") || name == ".maildir" {
        path.parent()?.file_name()?.to_str().map(str::to_string)
    } else {
        Some(name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_and_match() {
        let t = Template::parse("/var/vmail/{domain}/{local}/Maildir").unwrap();
        assert!(t.is_absolute());
        assert!(!t.part(0).unwrap().has_placeholder());
        let d = t.part(2).unwrap().matches("example.org").unwrap();
        let l = t.part(3).unwrap().matches("alice").unwrap();
        let all: Vec<_> = d.into_iter().chain(l).collect();
        assert_eq!(t.user(&all).as_deref(), Some("alice@example.org"));

        let t = Template::parse("/srv/{local}@{domain}").unwrap();
        let v = t.part(1).unwrap().matches("bob@example.net").unwrap();
        assert_eq!(t.user(&v).as_deref(), Some("bob@example.net"));
        assert!(t.part(1).unwrap().matches("nobody").is_none());

        let t = Template::parse("/home/{user}/Maildir").unwrap();
        let v = t.part(1).unwrap().matches("carol").unwrap();
        assert_eq!(t.user(&v).as_deref(), Some("carol"));

        let t = Template::parse("/m/user-{user}.d").unwrap();
        assert_eq!(t.part(1).unwrap().matches("user-x.d").unwrap()[0].1, "x");
        assert!(t.part(1).unwrap().matches("user-.d").is_none());
    }

    #[test]
    fn bad_templates_are_named() {
        for (raw, why) in [
            ("/var/vmail/{domain}", "needs {user} or {local}"),
            ("/var/{nope}/x", "unknown placeholder {nope}"),
            ("/var/{user", "unclosed"),
            ("/var/{local}{domain}", "literal between"),
            ("/a/{user}/{local}", "either {user}"),
            ("/a/{local}/{local}", "once"),
            ("/a/../{user}", "'..'"),
        ] {
            let e = Template::parse(raw).unwrap_err();
            assert!(e.0.contains(why), "{raw}: {e}");
            assert!(e.0.contains(raw), "{raw}: {e}");
        }
    }

    #[test]
    fn users_from_paths() {
        for (p, u) in [
            ("/home/bob/Maildir", Some("bob")),
            ("/srv/mail/alice", Some("alice")),
            ("/home/eve/.maildir", Some("eve")),
        ] {
            assert_eq!(user_from_path(Path::new(p)).as_deref(), u, "{p}");
        }
    }

    #[test]
    fn namespace_prefixes() {
        let resolve_with = |sep: &str, prefix: Option<&str>| {
            let fc = FileConfig {
                state_dir: Some("/s".into()),
                separator: Some(sep.into()),
                namespace_prefix: prefix.map(str::to_string),
                store: vec![file::StoreConfig {
                    path: Some("/home/bob/Maildir".into()),
                    ..Default::default()
                }],
                ..Default::default()
            };
            resolve::resolve(&fc, &|_| None, &|| "h".into()).map(|c| c.scan.namespace_prefix)
        };
        // (separator, given, resolved or the error's words)
        type Case<'a> = (&'a str, Option<&'a str>, Result<Option<&'a str>, &'a str>);
        let cases: &[Case] = &[
            (".", None, Ok(None)),
            (".", Some(""), Ok(Some(""))),
            (".", Some("INBOX."), Ok(Some("INBOX."))),
            ("/", Some("INBOX/"), Ok(Some("INBOX/"))),
            (".", Some("Mail.Box."), Ok(Some("Mail.Box."))),
            (".", Some("INBOX"), Err("must end with the separator")),
            ("/", Some("INBOX."), Err("must end with the separator")),
            (".", Some("."), Err("must end with the separator")),
            (".", Some("a\nb."), Err("must end with the separator")),
        ];
        for (sep, given, want) in cases {
            match (resolve_with(sep, *given), want) {
                (Ok(got), Ok(w)) => assert_eq!(got.as_deref(), *w, "{given:?}"),
                (Err(e), Err(w)) => {
                    assert!(e.0.contains(w) && e.0.contains("--namespace-prefix"), "{e}")
                }
                (got, _) => panic!("{sep:?} {given:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn state_dir_defaults() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let d = default_state_dir(&env(&[
            ("STATE_DIRECTORY", "/var/lib/me:/x"),
            ("HOME", "/h"),
        ]));
        assert_eq!(d, Some(PathBuf::from("/var/lib/me")));
        let d = default_state_dir(&env(&[("XDG_STATE_HOME", "/s"), ("HOME", "/h")]));
        assert_eq!(d, Some(PathBuf::from("/s/maildir-events")));
        let d = default_state_dir(&env(&[("HOME", "/h")]));
        assert_eq!(d, Some(PathBuf::from("/h/.local/state/maildir-events")));
        assert_eq!(default_state_dir(&env(&[])), None);
    }
}
