//! The validated configuration a run works with, and store templates.
//!
//! Everything the CLI accepts is checked here once, so the rest of the
//! program works with values that are known to be good and errors name
//! the option that was wrong.

pub mod file;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::event::filter::{Filter, Group};
use crate::quota::{Limits, QuotaRules};
use crate::scan::ScanOptions;
use file::{FileConfig, parse_age, parse_size};

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
}

impl Source {
    /// A stable text naming this source in the state database, so the first
    /// run over a source can record a silent baseline.
    pub fn spec(&self) -> String {
        match &self.kind {
            SourceKind::Maildir { path, user } => format!("maildir:{}:{}", user, path.display()),
            SourceKind::Template(t) => format!("template:{}", t.raw),
        }
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
        crate::event::filter::glob(&r.folder, folder) && now.saturating_sub(received) >= r.min_age
    })
}

/// Which optional message parameters to compute (see `content`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContentSettings {
    /// standard, message, header, body or headerbody.
    pub mode: String,
    pub max_size: usize,
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
    /// Report `\Seen` and `\Deleted` as MessageRead and MessageTrash rather
    /// than FlagsSet (RFC 5423 §4.2 says this SHOULD be configurable).
    pub simple_flag_events: bool,
    pub filter: Filter,
    pub content: ContentSettings,
    pub quota: Option<QuotaRules>,
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

fn one_char(option: &str, value: &str) -> Result<char, ConfigError> {
    let mut chars = value.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Ok(c),
        _ => Err(ConfigError(format!(
            "{option} takes exactly one character, not {value:?}"
        ))),
    }
}

fn millis(option: &str, v: f64) -> Result<Duration, ConfigError> {
    if v.is_finite() && v >= 0.0 {
        Ok(Duration::from_secs_f64(v / 1000.0))
    } else {
        Err(ConfigError(format!(
            "{option} must be a number of milliseconds, not {v}"
        )))
    }
}

/// Resolves the merged file and command line into a `Config`: defaults
/// filled in, every value checked, errors naming the option.
pub fn resolve(
    fc: &FileConfig,
    env: &dyn Fn(&str) -> Option<String>,
    fqdn: &dyn Fn() -> String,
) -> Result<Config, ConfigError> {
    let state_dir = match &fc.state_dir {
        Some(d) => d.clone(),
        None => default_state_dir(env).ok_or_else(|| {
            ConfigError(
                "no state_dir (--state) given and neither $STATE_DIRECTORY nor $HOME is set".into(),
            )
        })?,
    };
    if fc.store.is_empty() {
        return Err(ConfigError(
            "nothing to scan: give MAILDIR paths or --store TEMPLATE (or [[store]] in the config file)".into(),
        ));
    }
    let mut sources = Vec::new();
    for (i, st) in fc.store.iter().enumerate() {
        let kind = match (&st.template, &st.path) {
            (Some(t), None) => {
                if st.user.is_some() {
                    return Err(ConfigError(format!(
                        "store {}: user goes with path, not template",
                        i + 1
                    )));
                }
                SourceKind::Template(Template::parse(t)?)
            }
            (None, Some(p)) => {
                let path = std::path::absolute(p)
                    .map_err(|e| ConfigError(format!("{}: {e}", p.display())))?;
                let user = match &st.user {
                    Some(u) => u.clone(),
                    None => user_from_path(&path).ok_or_else(|| {
                        ConfigError(format!(
                            "cannot tell the user of {}; pass --user",
                            path.display()
                        ))
                    })?,
                };
                SourceKind::Maildir { path, user }
            }
            _ => {
                return Err(ConfigError(format!(
                    "store {}: give exactly one of template and path",
                    i + 1
                )));
            }
        };
        sources.push(Source {
            kind,
            tags: st.tags.clone(),
        });
    }
    let hier_sep = one_char(
        "--separator (separator)",
        fc.separator.as_deref().unwrap_or("."),
    )?;
    let info = one_char(
        "--info-separator (info_separator)",
        fc.info_separator.as_deref().unwrap_or(":"),
    )?;
    if !info.is_ascii() || info == '/' || info == '.' || info == ',' {
        return Err(ConfigError(format!(
            "--info-separator (info_separator) {info:?} cannot separate a Maildir name"
        )));
    }

    let filter = match &fc.filter {
        None => Filter::default(),
        Some(f) => {
            let groups = match &f.groups {
                None => Group::ALL.to_vec(),
                Some(names) => names
                    .iter()
                    .map(|n| {
                        Group::parse(n).ok_or_else(|| {
                            ConfigError(format!(
                                "filter.groups: unknown group {n:?} (message, flags, quota, mailbox, subscription, access)"
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            };
            Filter::new(groups, f.exclude_folders.clone(), f.exclude_flags.clone())
        }
    };

    let content = {
        let c = fc.content.clone().unwrap_or_default();
        let mode = c.mode.unwrap_or_else(|| "standard".into());
        if !CONTENT_MODES.contains(&mode.as_str()) {
            return Err(ConfigError(format!(
                "content.mode: unknown mode {mode:?} (standard, message, header, body, headerbody)"
            )));
        }
        for p in &c.include {
            if !CONTENT_PARAMETERS.contains(&p.as_str()) {
                return Err(ConfigError(format!(
                    "content.include: unknown parameter {p:?} ({})",
                    CONTENT_PARAMETERS.join(", ")
                )));
            }
        }
        ContentSettings {
            mode,
            max_size: c.max_size.unwrap_or(64 * 1024),
            include: c.include,
        }
    };

    let quota = match &fc.quota {
        None => None,
        Some(q) => {
            let size = |what: &str, s: &Option<String>| -> Result<Option<u64>, ConfigError> {
                s.as_deref()
                    .map(parse_size)
                    .transpose()
                    .map_err(|e| ConfigError(format!("{what}: {e}")))
            };
            let mut per_user = HashMap::new();
            for u in &q.user {
                let limits = Limits {
                    bytes: size(&format!("quota.user {}: storage", u.user), &u.storage)?,
                    messages: u.messages,
                };
                per_user.insert(u.user.clone(), (limits, u.force));
            }
            let hysteresis = q.hysteresis_percent.unwrap_or(1.0);
            if !(0.0..100.0).contains(&hysteresis) {
                return Err(ConfigError(format!(
                    "quota.hysteresis_percent must be 0 to 100, not {hysteresis}"
                )));
            }
            Some(QuotaRules {
                default: Limits {
                    bytes: size("quota.storage", &q.storage)?,
                    messages: q.messages,
                },
                force: q.force.unwrap_or(false),
                per_user,
                ignore: q.ignore.clone(),
                hysteresis: hysteresis / 100.0,
            })
        }
    };

    let expire = fc
        .expire
        .iter()
        .map(|r| {
            Ok(ExpireRule {
                folder: r.folder.clone(),
                min_age: parse_age(&r.min_age)
                    .map_err(|e| ConfigError(format!("expire {}: min_age {e}", r.folder)))?,
            })
        })
        .collect::<Result<_, ConfigError>>()?;

    let w = fc.watch.clone().unwrap_or_default();
    let watch = WatchOptions {
        batch_quiet: millis("batch_quiet_ms", w.batch_quiet_ms.unwrap_or(0.5))?,
        batch_max: Duration::from_millis(w.batch_max_ms.unwrap_or(2).max(1)),
        rescan_interval: match w.rescan_interval.unwrap_or(3600) {
            0 => None,
            s => Some(Duration::from_secs(s)),
        },
        poll: match w.poll {
            Some(p) if p.is_finite() && p > 0.0 => Some(Duration::from_secs_f64(p)),
            Some(p) => {
                return Err(ConfigError(format!(
                    "poll must be a positive number of seconds, not {p}"
                )));
            }
            None => None,
        },
        full_every: w.full_every.unwrap_or(60),
    };

    Ok(Config {
        state_dir,
        sources,
        server_name: fc.server_name.clone().unwrap_or_else(fqdn),
        scan: ScanOptions {
            info_sep: info as u8,
            hier_sep,
            utf8_names: fc.utf8_names.unwrap_or(false),
            full: fc.full.unwrap_or(false),
            stat_sizes: quota.is_some(),
        },
        uid_wait: Duration::from_millis(fc.uid_wait_ms.unwrap_or(2000)),
        emit_existing: fc.emit_existing.unwrap_or(false),
        simple_flag_events: fc.simple_flag_events.unwrap_or(true),
        filter,
        content,
        quota,
        expire,
        watch,
        sinks: fc.sink.clone(),
        outbox_limit: fc.outbox_limit.unwrap_or(1_000_000).max(1),
        metrics_listen: fc
            .metrics
            .as_ref()
            .map(|m| m.listen.clone().unwrap_or_else(|| "127.0.0.1:9898".into())),
    })
}

/// The resolved configuration as TOML, every default spelled out (for
/// `check-config`).
pub fn describe(config: &Config, merged: &FileConfig) -> String {
    let mut fc = merged.clone();
    fc.state_dir = Some(config.state_dir.clone());
    fc.server_name = Some(config.server_name.clone());
    fc.separator = Some(config.scan.hier_sep.to_string());
    fc.info_separator = Some((config.scan.info_sep as char).to_string());
    fc.utf8_names = Some(config.scan.utf8_names);
    fc.uid_wait_ms = Some(config.uid_wait.as_millis() as u64);
    fc.emit_existing = Some(config.emit_existing);
    fc.simple_flag_events = Some(config.simple_flag_events);
    fc.full = Some(config.scan.full);
    fc.store = config
        .sources
        .iter()
        .map(|s| match &s.kind {
            SourceKind::Maildir { path, user } => file::StoreConfig {
                path: Some(path.clone()),
                user: Some(user.clone()),
                tags: s.tags.clone(),
                ..Default::default()
            },
            SourceKind::Template(t) => file::StoreConfig {
                template: Some(t.raw.clone()),
                tags: s.tags.clone(),
                ..Default::default()
            },
        })
        .collect();
    let w = &config.watch;
    fc.watch = Some(file::WatchConfig {
        batch_quiet_ms: Some(w.batch_quiet.as_secs_f64() * 1000.0),
        batch_max_ms: Some(w.batch_max.as_millis() as u64),
        rescan_interval: Some(w.rescan_interval.map_or(0, |d| d.as_secs())),
        poll: w.poll.map(|d| d.as_secs_f64()),
        full_every: Some(w.full_every),
    });
    fc.content = Some(file::ContentConfig {
        mode: Some(config.content.mode.clone()),
        max_size: Some(config.content.max_size),
        include: config.content.include.clone(),
    });
    fc.outbox_limit = Some(config.outbox_limit);
    let filter = fc.filter.get_or_insert_with(Default::default);
    filter
        .groups
        .get_or_insert_with(|| Group::ALL.iter().map(|g| g.name().to_string()).collect());
    if let Some(q) = &mut fc.quota {
        q.force.get_or_insert(false);
        q.hysteresis_percent.get_or_insert(1.0);
    }
    let sinks: Vec<String> = if config.sinks.is_empty() {
        vec!["stdout".into()]
    } else {
        config.sinks.iter().map(|s| s.name()).collect()
    };
    format!(
        "# maildir-events: resolved configuration\n# sinks: {}\n{}",
        sinks.join(", "),
        fc.to_toml()
    )
}

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

/// A placeholder in a store template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    User,
    Local,
    Domain,
}

impl Var {
    fn name(self) -> &'static str {
        match self {
            Var::User => "user",
            Var::Local => "local",
            Var::Domain => "domain",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Var(Var),
}

/// One path component of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pieces: Vec<Piece>,
    raw: String,
}

impl Part {
    pub fn has_placeholder(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Var(_)))
    }

    /// The component as written (for components without placeholders).
    pub fn literal(&self) -> &str {
        &self.raw
    }

    /// Matches a directory name, returning the placeholder values.
    pub fn matches(&self, name: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        match_pieces(&self.pieces, name, &mut out).then_some(out)
    }
}

fn match_pieces(pieces: &[Piece], s: &str, out: &mut Vec<(String, String)>) -> bool {
    match pieces.split_first() {
        None => s.is_empty(),
        Some((Piece::Lit(l), rest)) => s
            .strip_prefix(l.as_str())
            .is_some_and(|r| match_pieces(rest, r, out)),
        Some((Piece::Var(v), rest)) => {
            // Shortest non-empty value first, so `{local}@{domain}` splits
            // at the first `@`.
            for (i, _) in s.char_indices().skip(1).chain([(s.len(), ' ')]) {
                let mark = out.len();
                out.push((v.name().to_string(), s[..i].to_string()));
                if match_pieces(rest, &s[i..], out) {
                    return true;
                }
                out.truncate(mark);
            }
            false
        }
    }
}

/// A store template: a path whose components may hold `{user}`, `{local}`
/// and `{domain}`, like Dovecot's `%u`, `%n` and `%d`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    raw: String,
    absolute: bool,
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(raw: &str) -> Result<Template, ConfigError> {
        let err = |why: &str| ConfigError(format!("--store {raw:?}: {why}"));
        let mut parts = Vec::new();
        let mut vars = Vec::new();
        for comp in raw.split('/').filter(|c| !c.is_empty() && *c != ".") {
            if comp == ".." {
                return Err(err("'..' is not allowed in a template"));
            }
            let mut pieces = Vec::new();
            let mut rest = comp;
            while let Some(open) = rest.find('{') {
                if open > 0 {
                    pieces.push(Piece::Lit(rest[..open].to_string()));
                }
                let close = rest[open..].find('}').ok_or_else(|| err("unclosed '{'"))? + open;
                let var = match &rest[open + 1..close] {
                    "user" => Var::User,
                    "local" => Var::Local,
                    "domain" => Var::Domain,
                    other => {
                        return Err(err(&format!(
                            "unknown placeholder {{{other}}}; use {{user}}, {{local}} or {{domain}}"
                        )));
                    }
                };
                if matches!(pieces.last(), Some(Piece::Var(_))) {
                    return Err(err("two placeholders need a literal between them"));
                }
                pieces.push(Piece::Var(var));
                vars.push(var);
                rest = &rest[close + 1..];
            }
            if rest.contains('}') {
                return Err(err("unmatched '}'"));
            }
            if !rest.is_empty() {
                pieces.push(Piece::Lit(rest.to_string()));
            }
            parts.push(Part {
                pieces,
                raw: comp.to_string(),
            });
        }
        let has = |v| vars.contains(&v);
        if !has(Var::User) && !has(Var::Local) {
            return Err(err("needs {user} or {local} to tell users apart"));
        }
        if has(Var::User) && (has(Var::Local) || has(Var::Domain)) {
            return Err(err("use either {user} or {local}/{domain}, not both"));
        }
        if vars.len()
            != [Var::User, Var::Local, Var::Domain]
                .iter()
                .filter(|v| has(**v))
                .count()
        {
            return Err(err("each placeholder may appear once"));
        }
        Ok(Template {
            raw: raw.to_string(),
            absolute: raw.starts_with('/'),
            parts,
        })
    }

    pub fn is_absolute(&self) -> bool {
        self.absolute
    }

    pub fn part(&self, i: usize) -> Option<&Part> {
        self.parts.get(i)
    }

    /// The user name from placeholder values: `{user}`, or `{local}@{domain}`,
    /// or `{local}` alone.
    pub fn user(&self, vars: &[(String, String)]) -> Option<String> {
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if let Some(u) = get("user") {
            return Some(u);
        }
        let local = get("local")?;
        Some(match get("domain") {
            Some(d) => format!("{local}@{d}"),
            None => local,
        })
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
