//! The validated configuration a run works with, and store templates.
//!
//! Everything the CLI accepts is checked here once, so the rest of the
//! program works with values that are known to be good and errors name
//! the option that was wrong.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::scan::ScanOptions;

/// Where users' Maildirs are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// One Maildir given on the command line, for one user.
    Maildir { path: PathBuf, user: String },
    /// Every directory matching a template such as
    /// `/var/vmail/{domain}/{local}/Maildir`.
    Template(Template),
}

impl Source {
    /// A stable text naming this source in the state database, so the first
    /// run over a source can record a silent baseline.
    pub fn spec(&self) -> String {
        match self {
            Source::Maildir { path, user } => format!("maildir:{}:{}", user, path.display()),
            Source::Template(t) => format!("template:{}", t.raw),
        }
    }
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
