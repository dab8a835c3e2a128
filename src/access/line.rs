//! Dovecot's log lines about sessions and quota refusals (pure).
//!
//! A Maildir shows no logins, but Dovecot logs every one, in a fixed
//! shape (Dovecot 2.3 with the default `login_log_format_elements`):
//!
//! ```text
//! Dec 06 02:50:44 imap-login: Info: Login: user=<alice@example.test>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=26309, secured, session=<Rj/4LO5h1rJ/AAAB>
//! Dec 06 02:50:44 imap(alice@example.test)<26309><Rj/4LO5h1rJ/AAAB>: Info: Disconnected: Logged out in=24 out=775 …
//! Dec 06 02:50:50 lmtp(alice@example.test)<26355><GJomGIrNFGvzZgAAg+zDdQ>: Info: msgid=unspecified: save failed to INBOX: Quota exceeded (mailbox for user is full)
//! ```
//!
//! The log file puts Dovecot's `log_timestamp` first and the level after
//! the process; syslog puts its own time and `host dovecot[pid]:` first and
//! no level; the journal has the bare message. [`split_line`] takes the
//! time and the prefix off, [`parse_message`] reads what is left. Anything
//! else (a failed authentication, an LMTP connect) is `None`: no event.

use chrono::{DateTime, FixedOffset, NaiveDateTime};

/// A session opened: a `*-login: Login:` line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Login {
    /// `imap`, `pop3`, `submission`, `managesieve` (the login process's
    /// name without `-login`).
    pub service: String,
    pub user: String,
    /// The SASL mechanism (`PLAIN`, `LOGIN`, …).
    pub method: Option<String>,
    pub client_ip: Option<String>,
    pub client_port: Option<u16>,
    pub server_ip: Option<String>,
    pub server_port: Option<u16>,
    /// The connection was TLS.
    pub tls: bool,
    /// Dovecot's session id, which the mail process's lines repeat.
    pub session: Option<String>,
}

/// How a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disconnect {
    /// `Logged out`: the client said LOGOUT (or QUIT).
    Graceful,
    /// `Connection closed`: the client went away without a word.
    Abort,
    /// `for inactivity`: Dovecot closed an idle session.
    Timeout,
    /// Anything else (a server shutdown, a kick); the text is kept.
    Other,
}

impl Disconnect {
    pub fn name(self) -> &'static str {
        match self {
            Disconnect::Graceful => "graceful",
            Disconnect::Abort => "abort",
            Disconnect::Timeout => "timeout",
            Disconnect::Other => "other",
        }
    }
}

/// A session closed: a mail process's `Disconnected` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logout {
    pub service: String,
    pub user: String,
    pub session: Option<String>,
    pub kind: Disconnect,
    /// Dovecot's reason, without the counters that follow it.
    pub reason: String,
}

/// A delivery refused because the user's quota was exceeded (LMTP or LDA).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaRefusal {
    /// `lmtp` or `lda`.
    pub service: String,
    pub user: String,
    pub session: Option<String>,
    /// The mailbox the save was for, when the line names it.
    pub mailbox: Option<String>,
    /// The refused message's size, when the admin's `deliver_log_format`
    /// puts `size=` in the line (the default does not).
    pub size: Option<u64>,
    /// Dovecot's text, e.g. `Quota exceeded (mailbox for user is full)`.
    pub reason: String,
}

/// What one line says, if anything we report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Login(Login),
    Logout(Logout),
    QuotaRefused(QuotaRefusal),
}

/// Converts a wall-clock time of the log into an instant with its offset
/// (the local time zone in production; fixed in tests).
pub type ToLocal<'a> = &'a dyn Fn(NaiveDateTime) -> Option<DateTime<FixedOffset>>;

/// Splits a log line into its time and Dovecot's message. `now` (local
/// wall-clock) supplies the year the default `log_timestamp` leaves out: a
/// time more than a day ahead of `now` is last year's (a log read just
/// after New Year). Lines without a time we know give `None` for it.
pub fn split_line<'a>(
    line: &'a str,
    now: NaiveDateTime,
    to_local: ToLocal,
) -> (Option<DateTime<FixedOffset>>, &'a str) {
    let (at, rest) = split_time(line, now, to_local);
    (at, strip_syslog_prefix(rest))
}

fn split_time<'a>(
    line: &'a str,
    now: NaiveDateTime,
    to_local: ToLocal,
) -> (Option<DateTime<FixedOffset>>, &'a str) {
    // RFC 3339 (rsyslog's precise format): one token with its own offset.
    if let Some((tok, rest)) = line.split_once(' ')
        && tok.len() >= 20
        && tok.as_bytes()[4] == b'-'
        && let Ok(t) = DateTime::parse_from_rfc3339(tok)
    {
        return (Some(t), rest);
    }
    // `%Y-%m-%d %H:%M:%S` with optional fractions.
    if line.len() >= 19
        && line.is_char_boundary(19)
        && line.as_bytes()[4] == b'-'
        && line.as_bytes()[10] == b' '
    {
        let end = line[19..]
            .find(' ')
            .map_or(line.len(), |i| 19 + i)
            .min(line.len());
        if let Some(head) = line.get(..end)
            && let Ok(t) = NaiveDateTime::parse_from_str(head, "%Y-%m-%d %H:%M:%S%.f")
        {
            return (to_local(t), line[end..].trim_start_matches(' '));
        }
    }
    // `%b %d %H:%M:%S` (Dovecot's default) or syslog's `%b %e %H:%M:%S`.
    if line.len() >= 15 && line.is_char_boundary(15) && line.as_bytes()[3] == b' ' {
        let head = &line[..15];
        let year = chrono::Datelike::year(&now);
        for y in [year, year - 1] {
            let Ok(t) = NaiveDateTime::parse_from_str(&format!("{y} {head}"), "%Y %b %e %H:%M:%S")
            else {
                continue;
            };
            if t - now > chrono::TimeDelta::days(1) && y == year {
                continue;
            }
            return (to_local(t), line[15..].trim_start_matches(' '));
        }
    }
    (None, line)
}

/// Takes syslog's `host dovecot[pid]: ` (or `host dovecot: `) off.
fn strip_syslog_prefix(rest: &str) -> &str {
    let mut parts = rest.splitn(3, ' ');
    if let (Some(_host), Some(tag), Some(msg)) = (parts.next(), parts.next(), parts.next())
        && tag.ends_with(':')
        && tag.starts_with("dovecot")
    {
        return msg;
    }
    rest
}

/// The process part of a message: `imap-login`, `imap(user)<pid><session>`,
/// `lmtp(pid)`, `lmtp(user)<pid><session>`.
struct Process<'a> {
    name: &'a str,
    user: Option<&'a str>,
    session: Option<&'a str>,
}

fn process(prefix: &str) -> Option<Process<'_>> {
    let Some(open) = prefix.find('(') else {
        let ok = !prefix.is_empty()
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        return ok.then_some(Process {
            name: prefix,
            user: None,
            session: None,
        });
    };
    let name = &prefix[..open];
    let close = prefix.rfind(')').filter(|&c| c > open)?;
    let inside = &prefix[open + 1..close];
    // `lmtp(26355)`: a pid, no user yet.
    let user = (!inside.bytes().all(|b| b.is_ascii_digit())).then_some(inside);
    // `<pid><session>`
    let tail = &prefix[close + 1..];
    let mut angles = tail
        .split('<')
        .filter_map(|s| s.strip_suffix('>'))
        .filter(|s| !s.is_empty());
    let _pid = angles.next();
    let session = angles.next();
    Some(Process {
        name,
        user,
        session,
    })
}

/// Levels the log file puts between the process and the text.
const LEVELS: [&str; 5] = ["Info: ", "Warning: ", "Error: ", "Fatal: ", "Debug: "];

/// Reads one Dovecot message (the line without time and syslog prefix).
pub fn parse_message(msg: &str) -> Option<Record> {
    let (prefix, rest) = msg.split_once(": ")?;
    let p = process(prefix)?;
    let text = LEVELS
        .iter()
        .find_map(|l| rest.strip_prefix(l))
        .unwrap_or(rest);
    if let Some(service) = p.name.strip_suffix("-login") {
        let fields = text.strip_prefix("Login: ")?;
        return login(service, fields).map(Record::Login);
    }
    let user = p.user?;
    if user.is_empty() {
        return None;
    }
    if p.name == "lmtp" || p.name == "lda" {
        return quota_refusal(p.name, user, p.session, text).map(Record::QuotaRefused);
    }
    let reason = text.strip_prefix("Disconnected")?;
    let reason = reason.strip_prefix(':').unwrap_or(reason).trim_start();
    // The counters after the reason: IMAP's `in=… out=…`, POP3's
    // `top=… retr=…`.
    let reason = [" in=", " top="]
        .iter()
        .filter_map(|k| reason.find(k))
        .min()
        .map_or(reason, |i| &reason[..i])
        .trim();
    let kind = if reason.starts_with("Logged out") {
        Disconnect::Graceful
    } else if reason.starts_with("Connection closed") {
        Disconnect::Abort
    } else if reason.contains("for inactivity") {
        Disconnect::Timeout
    } else {
        Disconnect::Other
    };
    Some(Record::Logout(Logout {
        service: p.name.to_string(),
        user: user.to_string(),
        session: p.session.map(str::to_string),
        kind,
        reason: reason.to_string(),
    }))
}

/// The fields of a `Login:` line: `key=value` and `key=<value>` separated
/// by `, `, plus bare words (`TLS`, `secured`).
fn login(service: &str, fields: &str) -> Option<Login> {
    let mut l = Login {
        service: service.to_string(),
        ..Login::default()
    };
    let mut rest = fields;
    while !rest.is_empty() {
        let (item, next) = next_field(rest);
        rest = next;
        let (key, value) = match item.split_once('=') {
            Some((k, v)) => (
                k,
                v.strip_prefix('<')
                    .and_then(|v| v.strip_suffix('>'))
                    .unwrap_or(v),
            ),
            None => {
                if item == "TLS" || item.starts_with("TLS ") || item.starts_with("TLS:") {
                    l.tls = true;
                }
                continue;
            }
        };
        match key {
            "user" => l.user = value.to_string(),
            "method" => l.method = Some(value.to_string()),
            "rip" => l.client_ip = Some(value.to_string()),
            "lip" => l.server_ip = Some(value.to_string()),
            "rport" => l.client_port = value.parse().ok(),
            "lport" => l.server_port = value.parse().ok(),
            "session" => l.session = Some(value.to_string()),
            _ => {}
        }
    }
    (!l.user.is_empty()).then_some(l)
}

/// The next `, `-separated field; a `<…>` value may hold `, ` itself.
fn next_field(s: &str) -> (&str, &str) {
    let search_from = match s.find("=<") {
        Some(i) if s[..i].find(", ").is_none() => s[i..].find('>').map_or(0, |j| i + j),
        _ => 0,
    };
    match s[search_from..].find(", ") {
        Some(i) => (&s[..search_from + i], &s[search_from + i + 2..]),
        None => (s, ""),
    }
}

/// `msgid=…: save failed to INBOX: Quota exceeded (…)` and the like.
fn quota_refusal(
    service: &str,
    user: &str,
    session: Option<&str>,
    text: &str,
) -> Option<QuotaRefusal> {
    let at = text.find("Quota exceeded")?;
    let before = &text[..at];
    let mailbox = before
        .rfind("save failed to ")
        .map(|i| &before[i + "save failed to ".len()..])
        .and_then(|m| m.strip_suffix(": "))
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    let size = before
        .split([' ', ',', ':'])
        .find_map(|w| w.strip_prefix("size="))
        .and_then(|n| n.parse().ok());
    Some(QuotaRefusal {
        service: service.to_string(),
        user: user.to_string(),
        session: session.map(str::to_string),
        mailbox,
        size,
        reason: text[at..].trim_end().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(t: NaiveDateTime) -> Option<DateTime<FixedOffset>> {
        FixedOffset::east_opt(3600).and_then(|o| t.and_local_timezone(o).single())
    }

    fn now() -> NaiveDateTime {
        NaiveDateTime::parse_from_str("2026-12-06 03:00:00", "%Y-%m-%d %H:%M:%S").unwrap()
    }

    fn parse(line: &str) -> (Option<String>, Option<Record>) {
        let (at, msg) = split_line(line, now(), &utc);
        (at.map(|t| t.to_rfc3339()), parse_message(msg))
    }

    fn login(service: &str, user: &str, session: &str) -> Login {
        Login {
            service: service.into(),
            user: user.into(),
            method: Some("PLAIN".into()),
            client_ip: Some("127.0.0.1".into()),
            server_ip: Some("127.0.0.1".into()),
            session: Some(session.into()),
            ..Login::default()
        }
    }

    fn logout(service: &str, kind: Disconnect, reason: &str) -> Record {
        Record::Logout(Logout {
            service: service.into(),
            user: "alice@example.test".into(),
            session: Some("Rj/4LO5h1rJ/AAAB".into()),
            kind,
            reason: reason.into(),
        })
    }

    /// Lines as Dovecot 2.3.19 wrote them into `info_log_path`, and as
    /// syslog and other timestamps show them.
    #[test]
    fn real_lines() {
        let t = Some("2026-12-06T02:50:44+01:00".to_string());
        #[rustfmt::skip]
        let cases: Vec<(&str, Option<String>, Option<Record>)> = vec![
            ("Dec 06 02:50:44 imap-login: Info: Login: user=<alice@example.test>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=26309, secured, session=<Rj/4LO5h1rJ/AAAB>",
             t.clone(), Some(Record::Login(login("imap", "alice@example.test", "Rj/4LO5h1rJ/AAAB")))),
            ("Dec 06 02:50:44 imap(alice@example.test)<26309><Rj/4LO5h1rJ/AAAB>: Info: Disconnected: Logged out in=24 out=775 deleted=0 expunged=0 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0",
             t.clone(), Some(logout("imap", Disconnect::Graceful, "Logged out"))),
            ("Dec 06 02:50:44 imap(alice@example.test)<26309><Rj/4LO5h1rJ/AAAB>: Info: Disconnected: Connection closed (No commands sent) in=0 out=404 deleted=0",
             t.clone(), Some(logout("imap", Disconnect::Abort, "Connection closed (No commands sent)"))),
            ("Dec 06 02:50:44 imap(alice@example.test)<26309><Rj/4LO5h1rJ/AAAB>: Info: Disconnected for inactivity in=10 out=500",
             t.clone(), Some(logout("imap", Disconnect::Timeout, "for inactivity"))),
            ("Dec 06 02:50:44 imap(alice@example.test)<26309><Rj/4LO5h1rJ/AAAB>: Info: Disconnected: Server shutting down. in=10 out=500",
             t.clone(), Some(logout("imap", Disconnect::Other, "Server shutting down."))),
            ("Dec 06 02:50:44 pop3(alice@example.test)<26309><Rj/4LO5h1rJ/AAAB>: Info: Disconnected: Logged out top=0/0, retr=0/0, del=0/0, size=0",
             t.clone(), Some(logout("pop3", Disconnect::Graceful, "Logged out"))),
            // A failed authentication is no login.
            ("Dec 06 02:50:46 imap-login: Info: Disconnected: Aborted login by logging out (auth failed, 1 attempts in 2 secs): user=<alice@example.test>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, secured, session=<i3/4LO5h2rJ/AAAB>",
             Some("2026-12-06T02:50:46+01:00".into()), None),
            ("Dec 06 02:50:50 lmtp(26355): Info: Connect from 127.0.0.1", Some("2026-12-06T02:50:50+01:00".into()), None),
            ("Dec 06 02:50:50 lmtp(alice@example.test)<26355><ETzWF4rNFGvzZgAAg+zDdQ>: Info: msgid=unspecified: saved mail to INBOX",
             Some("2026-12-06T02:50:50+01:00".into()), None),
            ("Dec 06 02:50:50 master: Info: Dovecot v2.3.19.1 (9b53102964) starting up for imap, lmtp", Some("2026-12-06T02:50:50+01:00".into()), None),
            ("Dec 06 02:50:50 lmtp(alice@example.test)<26355><GJomGIrNFGvzZgAAg+zDdQ>: Info: msgid=unspecified: save failed to INBOX: Quota exceeded (mailbox for user is full)",
             Some("2026-12-06T02:50:50+01:00".into()),
             Some(Record::QuotaRefused(QuotaRefusal {
                 service: "lmtp".into(), user: "alice@example.test".into(),
                 session: Some("GJomGIrNFGvzZgAAg+zDdQ".into()), mailbox: Some("INBOX".into()),
                 size: None, reason: "Quota exceeded (mailbox for user is full)".into(),
             }))),
            ("2026-12-06 02:50:50 lda(bob)<77><s1>: Error: msgid=<a@b>, size=4711: save failed to INBOX: Quota exceeded",
             Some("2026-12-06T02:50:50+01:00".into()),
             Some(Record::QuotaRefused(QuotaRefusal {
                 service: "lda".into(), user: "bob".into(), session: Some("s1".into()),
                 mailbox: Some("INBOX".into()), size: Some(4711), reason: "Quota exceeded".into(),
             }))),
            // Syslog: its own time, host and tag, no level; TLS and ports.
            ("Dec  6 02:50:44 mx dovecot[901]: pop3-login: Login: user=<bob>, method=LOGIN, rip=192.0.2.7, lip=192.0.2.1, rport=50000, lport=995, mpid=16147, TLS, session=<atvaduthFK1/AAAB>",
             t.clone(), Some(Record::Login(Login {
                 service: "pop3".into(), user: "bob".into(), method: Some("LOGIN".into()),
                 client_ip: Some("192.0.2.7".into()), client_port: Some(50000),
                 server_ip: Some("192.0.2.1".into()), server_port: Some(995), tls: true,
                 session: Some("atvaduthFK1/AAAB".into()),
             }))),
            ("2026-12-06T02:50:44.123456+00:00 mx dovecot: submission-login: Login: user=<a, b>, method=PLAIN, rip=::1, lip=::1, mpid=1, TLS, session=<x>",
             Some("2026-12-06T02:50:44.123456+00:00".into()),
             Some(Record::Login(Login {
                 service: "submission".into(), user: "a, b".into(), method: Some("PLAIN".into()),
                 client_ip: Some("::1".into()), server_ip: Some("::1".into()), tls: true,
                 session: Some("x".into()), ..Login::default()
             }))),
            // Last year's line read just after New Year is not next December.
            ("Dec 31 23:59:59 imap-login: Info: Login: user=<u>, session=<s>",
             Some("2025-12-31T23:59:59+01:00".into()),
             Some(Record::Login(Login { service: "imap".into(), user: "u".into(), session: Some("s".into()), ..Login::default() }))),
            // Nonsense and partial lines: nothing, and no panic.
            ("", None, None),
            ("Dec", None, None),
            ("imap-login: Login: user=<>", None, None),
            ("imap(): Info: Disconnected: Logged out", None, None),
            ("imap(x: Info: Disconnected: Logged out", None, None),
            ("é€ 06 02:50:44 imap-login: Info: Login: user=<ü>", None, None),
            ("imap-login: Login: user=<ü>", None, Some(Record::Login(Login { service: "imap".into(), user: "ü".into(), ..Login::default() }))),
        ];
        for (line, at, want) in cases {
            let (got_at, got) = parse(line);
            assert_eq!(got, want, "{line}");
            assert_eq!(got_at, at, "{line}");
        }
    }

    /// Every cut of real lines, and multi-byte characters at every place
    /// the parser slices: no panic, whatever the input.
    #[test]
    fn no_panics_on_any_input() {
        let real = [
            "Dec 06 02:50:44 imap-login: Info: Login: user=<alice@example.test>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=26309, secured, session=<Rj/4LO5h1rJ/AAAB>",
            "2026-12-06 02:50:44.5 imap(alice)<26309><Rj/4>: Info: Disconnected: Logged out in=24 out=775",
            "2026-12-06T02:50:44+00:00 mx dovecot[9]: lmtp(a)<1><s>: msgid=x, size=12: save failed to INBOX: Quota exceeded",
        ];
        for line in real {
            for cut in 0..=line.len() {
                for filler in ["", "é", "€", "\u{1F600}", "<", ">", ", ", ": ", "(", ")"] {
                    let mut s = line[..cut].to_string();
                    s.push_str(filler);
                    s.push_str(&line[cut..]);
                    let (_, msg) = split_line(&s, now(), &utc);
                    let _ = parse_message(msg);
                }
            }
        }
    }

    #[test]
    fn new_year() {
        // On 2 January, a "Dec 31" line is last year's.
        let jan =
            NaiveDateTime::parse_from_str("2027-01-02 00:10:00", "%Y-%m-%d %H:%M:%S").unwrap();
        let (at, _) = split_line("Dec 31 23:00:00 x: y", jan, &utc);
        assert_eq!(at.unwrap().to_rfc3339(), "2026-12-31T23:00:00+01:00");
        let (at, _) = split_line("Jan 02 00:09:00 x: y", jan, &utc);
        assert_eq!(at.unwrap().to_rfc3339(), "2027-01-02T00:09:00+01:00");
    }
}
