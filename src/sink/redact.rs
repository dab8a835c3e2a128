//! The one way secrets are kept out of what we print: log lines, error
//! messages, `check-config`, `status` and metrics labels.
//!
//! - [`url`] shows a configured URL without its userinfo, query and
//!   fragment (where tokens hide): `http://u:p@host/hook?token=t` is shown
//!   as `http://host/hook`. NATS lists (`nats://a:b@h1,c:d@h2`) are shown
//!   element by element.
//! - [`Secrets`] holds the secret words of a sink (the URL's userinfo,
//!   user, password and query, header values, the HMAC secret) and
//!   [`Secrets::scrub`] takes them, and every URL, out of any text,
//!   typically the `Display` of a foreign error (ureq, async-nats) that may
//!   embed the URL it was given.
//! - [`register`] makes a sink's secrets known to the whole process, and
//!   [`scrub`] is what the log writer and the binary's error and report
//!   lines pass through, so even a library's own log line cannot carry
//!   them.

use std::sync::RwLock;

/// Secret words shorter than this are not searched for in free text (they
/// would match everywhere); URLs are redacted structurally whatever the
/// length of their parts.
const MIN_WORD: usize = 3;

/// What replaces a secret word in free text.
const MASK: &str = "[redacted]";

/// A URL (or a comma-separated list of them) without userinfo, query or
/// fragment.
pub fn url(url: &str) -> String {
    url.split(',').map(one_url).collect::<Vec<_>>().join(",")
}

/// The parts of one URL: scheme with `://` (or ""), the userinfo (if any),
/// host and port, path; query and fragment are dropped.
fn parts(s: &str) -> (&str, Option<&str>, &str, &str) {
    let (scheme, rest) = match s.find("://") {
        Some(i) => s.split_at(i + 3),
        None => ("", s),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    // The authority ends at the first '/'; an '@' past it belongs to the
    // path, unless what comes before the '/' looks like "user:pass" (an
    // unencoded '/' in a password).
    let at = rest.rfind('@');
    let slash = rest.find('/');
    let userinfo_end = match (at, slash) {
        (Some(a), None) => Some(a),
        (Some(a), Some(sl)) if a < sl => Some(a),
        (Some(_), Some(sl)) if looks_like_user_pass(&rest[..sl]) => {
            // "user:pa/ss@host/…": the first '@' after the '/' ends it.
            rest[sl..].find('@').map(|f| sl + f)
        }
        _ => None,
    };
    let (userinfo, hostpath) = match userinfo_end {
        Some(a) => (Some(&rest[..a]), &rest[a + 1..]),
        None => (None, rest),
    };
    let (host, path) = hostpath.split_at(hostpath.find('/').unwrap_or(hostpath.len()));
    (scheme, userinfo, host, path)
}

/// "user:pass", not "host:port" or an IPv6 literal.
fn looks_like_user_pass(s: &str) -> bool {
    match s.split_once(':') {
        Some((_, after)) => !s.starts_with('[') && !after.chars().all(|c| c.is_ascii_digit()),
        None => false,
    }
}

fn one_url(s: &str) -> String {
    let (scheme, _, host, path) = parts(s);
    format!("{scheme}{host}{path}")
}

/// The schemes of the URLs sinks are given.
const SINK_SCHEMES: [&str; 6] = ["http", "https", "nats", "tls", "ws", "wss"];

/// Every sink URL in `text` (`http://…`, `nats://…` and the like, up to a
/// space or a quote) shown as [`url`] shows it.
pub fn urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        // The scheme: letters, digits, '+', '-', '.' before "://".
        let start = rest[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
            .map_or(0, |p| p + 1);
        let end = rest[i..]
            .find(|c: char| c.is_whitespace() || "\"'<>`\\".contains(c))
            .map_or(rest.len(), |e| i + e);
        out.push_str(&rest[..start]);
        let scheme = rest[start..i].to_ascii_lowercase();
        if SINK_SCHEMES.contains(&scheme.as_str()) {
            out.push_str(&url(&rest[start..end]));
        } else {
            // Not a sink's URL (an event's imap:// URL is data).
            out.push_str(&rest[start..end]);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Decodes `%XX`; anything else is kept as it is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && s.is_char_boundary(i + 3)
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The secret words of one sink.
#[derive(Clone, Default)]
pub struct Secrets {
    words: Vec<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} words)", self.words.len())
    }
}

impl Secrets {
    /// The secrets of a URL (or list of URLs): userinfo, user, password,
    /// query, each query value and the fragment, as written and decoded.
    pub fn of_url(url: &str) -> Secrets {
        let mut s = Secrets::default();
        s.add_url(url);
        s
    }

    /// Adds the secrets of a URL.
    pub fn add_url(&mut self, url: &str) {
        for one in url.split(',') {
            let (_, userinfo, _, _) = parts(one);
            if let Some(ui) = userinfo {
                self.add(ui);
                let (user, pass) = ui.split_once(':').unwrap_or((ui, ""));
                self.add(user);
                self.add(pass);
            }
            if let Some((_, after)) = one.split_once('?') {
                let (query, fragment) = after.split_once('#').unwrap_or((after, ""));
                self.add(query);
                self.add(fragment);
                for pair in query.split('&') {
                    self.add(pair.split_once('=').map_or(pair, |(_, v)| v));
                }
            } else if let Some((_, fragment)) = one.split_once('#') {
                self.add(fragment);
            }
        }
    }

    /// Adds one secret word (and its percent-decoded form).
    pub fn add(&mut self, word: &str) {
        for w in [word.to_string(), percent_decode(word)] {
            if w.chars().count() >= MIN_WORD && !self.words.contains(&w) {
                self.words.push(w);
            }
        }
        // Longest first, so a word containing another is masked whole.
        self.words.sort_by_key(|w| std::cmp::Reverse(w.len()));
    }

    /// Adds another set.
    pub fn extend(&mut self, other: &Secrets) {
        for w in &other.words {
            self.add(w);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// `text` with every URL redacted and every secret word masked.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = urls_in(text);
        for w in &self.words {
            if out.contains(w.as_str()) {
                out = out.replace(w.as_str(), MASK);
            }
        }
        out
    }
}

/// The secrets of every sink configured in this process.
static REGISTERED: RwLock<Option<Secrets>> = RwLock::new(None);

/// Makes secrets known to [`scrub`] (the log writer, the binary's output).
pub fn register(secrets: &Secrets) {
    if secrets.is_empty() {
        return;
    }
    if let Ok(mut g) = REGISTERED.write() {
        g.get_or_insert_with(Secrets::default).extend(secrets);
    }
}

/// `text` with every URL redacted and every registered secret masked: the
/// path of every log line and every message the binary prints.
pub fn scrub(text: &str) -> String {
    match REGISTERED.read() {
        Ok(g) => match g.as_ref() {
            Some(s) => s.scrub(text),
            None => urls_in(text),
        },
        Err(_) => urls_in(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_userinfo_query_and_fragment() {
        for (u, want) in [
            (
                "https://hooks.example.org/mail",
                "https://hooks.example.org/mail",
            ),
            (
                "https://user:pw@hooks.example.org/mail?token=x#f",
                "https://hooks.example.org/mail",
            ),
            ("nats://a:b@127.0.0.1:4222", "nats://127.0.0.1:4222"),
            ("nats://s3cr3t@127.0.0.1:4222", "nats://127.0.0.1:4222"),
            ("nats://h1:4222,h2:4222", "nats://h1:4222,h2:4222"),
            ("nats://a:b@h1:4222,c:d@h2:4222", "nats://h1:4222,h2:4222"),
            ("http://h/users/@me", "http://h/users/@me"),
            ("http://user:pa/ss@host/x", "http://host/x"),
            ("http://[::1]:8080/x?t=1", "http://[::1]:8080/x"),
        ] {
            assert_eq!(url(u), want, "{u}");
        }
    }

    #[test]
    fn urls_in_text_are_redacted() {
        let t = "error: POST \"http://u:p@host:80/h?token=t\" failed: http://u:p@host:80/h?token=t: refused";
        assert_eq!(
            urls_in(t),
            // The ':' after the query went with it: a token may hold one.
            "error: POST \"http://host:80/h\" failed: http://host:80/h refused"
        );
        let imap = "imap://alice%40example.org@mx/INBOX";
        assert_eq!(urls_in(imap), imap);
    }

    #[test]
    fn secret_words_are_masked() {
        let mut s = Secrets::of_url("http://alice:pa%2Fss@host/h?token=abc123&x=yz");
        s.add("Bearer s3cret");
        let t = "user alice, pass pa/ss, token=abc123 sent Bearer s3cret to host";
        let out = s.scrub(t);
        for w in ["alice", "pa/ss", "abc123", "s3cret"] {
            assert!(!out.contains(w), "{w} in {out}");
        }
        assert!(out.contains("host"), "{out}");
    }
}
