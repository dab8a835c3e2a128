//! Login, Logout and delivery refusals from Dovecot's log (RFC 5423 §4.3
//! and §4.4's QuotaExceed as "an operation failed").
//!
//! A Maildir shows no sessions, so these events come from what Dovecot
//! logs: `line` reads one line (pure), this module turns what it read into
//! events and keeps the open sessions (for a Logout's duration), `follow`
//! reads log files from a remembered position, `journal` reads the systemd
//! journal through `journalctl`. The positions are committed with the
//! events in one transaction (`Store::commit_access`), so a crash repeats
//! nothing and loses nothing.

pub mod follow;
pub mod journal;
pub mod line;
pub mod source;

use std::collections::HashMap;

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value, json};

use crate::event::filter::Filter;
use crate::event::{Event, imapurl};
use line::{Disconnect, Record};

/// A log that cannot be read: the run stops with what to do, as for a
/// wrong option (the caller turns it into its own error).
#[derive(Debug)]
pub struct AccessError(pub String);

impl std::fmt::Display for AccessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `--access-log` value that means the systemd journal of Dovecot.
pub const JOURNAL: &str = "journal";
/// Open sessions remembered at most (the oldest are forgotten first: their
/// Logout then has no duration).
pub const MAX_SESSIONS: usize = 100_000;

/// Where one log is read up to, as committed with its events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// The log as configured (a path, or `journal`).
    pub log: String,
    pub dev: u64,
    pub ino: u64,
    /// Bytes read, always at the start of a line.
    pub offset: u64,
    /// Up to [`follow::TAIL`] bytes before `offset`, to recognise the file
    /// (a truncated and regrown log has the same inode, not the same bytes).
    pub tail: Vec<u8>,
    /// The journal's cursor of the last entry read.
    pub cursor: Option<String>,
}

/// A session between its Login and its Logout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenSession {
    pub user: String,
    /// Unix milliseconds of the Login line.
    pub login_ms: i64,
    pub client_ip: Option<String>,
}

/// The open sessions by Dovecot session id, and what changed since the
/// last commit (for `Store::commit_access`).
#[derive(Debug, Default)]
pub struct Sessions {
    open: HashMap<String, OpenSession>,
    opened: Vec<(String, OpenSession)>,
    closed: Vec<String>,
}

impl Sessions {
    /// The sessions the state remembered.
    pub fn from_rows(rows: Vec<(String, OpenSession)>) -> Sessions {
        Sessions {
            open: rows.into_iter().collect(),
            ..Sessions::default()
        }
    }

    fn open(&mut self, id: String, s: OpenSession) {
        if self.open.len() >= MAX_SESSIONS
            && let Some(oldest) = self
                .open
                .iter()
                .min_by_key(|(_, s)| s.login_ms)
                .map(|(k, _)| k.clone())
        {
            self.open.remove(&oldest);
            self.opened.retain(|(k, _)| *k != oldest);
            self.closed.push(oldest);
        }
        self.open.insert(id.clone(), s.clone());
        self.opened.push((id, s));
    }

    fn close(&mut self, id: &str) -> Option<OpenSession> {
        let s = self.open.remove(id)?;
        self.opened.retain(|(k, _)| k != id);
        self.closed.push(id.to_string());
        Some(s)
    }

    /// What changed since the last call: sessions to insert, and ids to
    /// delete (applied deletes first).
    pub fn take_changes(&mut self) -> (Vec<(String, OpenSession)>, Vec<String>) {
        (
            std::mem::take(&mut self.opened),
            std::mem::take(&mut self.closed),
        )
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// What every access event of a run shares.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub server: &'a str,
    pub pid: u32,
    pub filter: &'a Filter,
}

/// The event of one record, or `None` when the filter drops it. `at` is
/// the line's time (the read time when the line had none); the sessions
/// learn the Login and lose the Logout either way, so a filter never
/// leaves sessions open.
pub fn build(
    rec: Record,
    at: Option<DateTime<FixedOffset>>,
    sessions: &mut Sessions,
    ctx: &Context,
) -> Option<Event> {
    let at = at.unwrap_or_else(|| chrono::Local::now().fixed_offset());
    let timestamp = at.format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string();
    let (kind, mut f) = match rec {
        Record::Login(l) => {
            if let Some(id) = &l.session {
                sessions.open(
                    id.clone(),
                    OpenSession {
                        user: l.user.clone(),
                        login_ms: at.timestamp_millis(),
                        client_ip: l.client_ip.clone(),
                    },
                );
            }
            let mut f = common("Login", &timestamp, &l.user, &l.service, ctx);
            put(&mut f, "clientIP", l.client_ip.map(Value::from));
            put(&mut f, "clientPort", l.client_port.map(Value::from));
            put(&mut f, "serverDomain", l.server_ip.map(Value::from));
            put(&mut f, "serverPort", l.server_port.map(Value::from));
            put(&mut f, "vnd.maildir.mechanism", l.method.map(Value::from));
            put(&mut f, "vnd.maildir.session", l.session.map(Value::from));
            f.insert("vnd.maildir.tls".into(), json!(l.tls));
            ("Login", f)
        }
        Record::Logout(l) => {
            let open = l.session.as_deref().and_then(|id| sessions.close(id));
            let mut f = common("Logout", &timestamp, &l.user, &l.service, ctx);
            if let Some(s) = &open {
                put(&mut f, "clientIP", s.client_ip.clone().map(Value::from));
            }
            put(&mut f, "vnd.maildir.session", l.session.map(Value::from));
            f.insert("vnd.maildir.disconnect".into(), json!(l.kind.name()));
            if l.kind != Disconnect::Graceful || l.reason != "Logged out" {
                f.insert("vnd.maildir.reason".into(), json!(l.reason));
            }
            if let Some(s) = open {
                let ms = (at.timestamp_millis() - s.login_ms).max(0);
                f.insert(
                    "vnd.maildir.sessionDuration".into(),
                    json!(ms as f64 / 1000.0),
                );
            }
            ("Logout", f)
        }
        Record::QuotaRefused(q) => {
            let mut f = common("QuotaExceed", &timestamp, &q.user, &q.service, ctx);
            let mailbox = q.mailbox.as_deref().unwrap_or("INBOX");
            f.insert(
                "uri".into(),
                json!(imapurl::mailbox_url(ctx.server, &q.user, mailbox, None)),
            );
            put(&mut f, "messageSize", q.size.map(Value::from));
            put(&mut f, "vnd.maildir.session", q.session.map(Value::from));
            f.insert("vnd.maildir.quotaSource".into(), json!("log"));
            f.insert("vnd.maildir.reason".into(), json!(q.reason));
            ("QuotaExceed", f)
        }
    };
    if !ctx.filter.sends(kind) {
        return None;
    }
    f.insert("pid".into(), json!(ctx.pid));
    f.insert("process".into(), json!("maildir-events"));
    Some(Event { kind, fields: f })
}

fn common(
    kind: &str,
    timestamp: &str,
    user: &str,
    service: &str,
    ctx: &Context,
) -> Map<String, Value> {
    let mut f = Map::new();
    f.insert("event".into(), json!(kind));
    f.insert("timestamp".into(), json!(timestamp));
    f.insert("user".into(), json!(user));
    f.insert("serverFQDN".into(), json!(ctx.server));
    f.insert("service".into(), json!(service));
    // RFC 5092: the server URL of the user's session.
    f.insert(
        "uri".into(),
        json!(imapurl::mailbox_url(ctx.server, user, "", None)),
    );
    f
}

fn put(f: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        f.insert(key.into(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::filter::Group;

    fn ctx(filter: &Filter) -> Context<'_> {
        Context {
            server: "mx.example.test",
            pid: 7,
            filter,
        }
    }

    fn at(s: &str) -> Option<DateTime<FixedOffset>> {
        DateTime::parse_from_rfc3339(s).ok()
    }

    fn rec(line: &str) -> Record {
        line::parse_message(line).unwrap()
    }

    #[test]
    fn login_logout_with_duration() {
        let filter = Filter::default();
        let mut s = Sessions::default();
        let login = build(
            rec("imap-login: Login: user=<a@x>, method=PLAIN, rip=192.0.2.7, lip=192.0.2.1, rport=5000, lport=143, mpid=1, TLS, session=<S1>"),
            at("2026-12-06T02:50:44+01:00"),
            &mut s,
            &ctx(&filter),
        )
        .unwrap();
        let f = &login.fields;
        assert_eq!(f["event"], "Login");
        assert_eq!(f["timestamp"], "2026-12-06T02:50:44.000+01:00");
        assert_eq!(f["uri"], "imap://a%40x@mx.example.test/");
        assert_eq!(f["service"], "imap");
        assert_eq!(
            (&f["clientIP"], &f["clientPort"]),
            (&json!("192.0.2.7"), &json!(5000))
        );
        assert_eq!(
            (&f["serverDomain"], &f["serverPort"]),
            (&json!("192.0.2.1"), &json!(143))
        );
        assert_eq!(f["vnd.maildir.mechanism"], "PLAIN");
        assert_eq!(f["vnd.maildir.tls"], true);
        assert_eq!(s.len(), 1);
        let (opened, closed) = s.take_changes();
        assert_eq!((opened.len(), closed.len()), (1, 0));
        let logout = build(
            rec("imap(a@x)<1><S1>: Info: Disconnected: Connection closed (No commands sent) in=0 out=1"),
            at("2026-12-06T02:51:14.500+01:00"),
            &mut s,
            &ctx(&filter),
        )
        .unwrap();
        let f = &logout.fields;
        assert_eq!(f["event"], "Logout");
        assert_eq!(f["vnd.maildir.disconnect"], "abort");
        assert_eq!(
            f["vnd.maildir.reason"],
            "Connection closed (No commands sent)"
        );
        assert_eq!(f["vnd.maildir.sessionDuration"], 30.5);
        assert_eq!(f["clientIP"], "192.0.2.7");
        assert!(s.is_empty());
        assert_eq!(s.take_changes(), (vec![], vec!["S1".to_string()]));
        // A Logout without its Login: no duration.
        let logout = build(
            rec("imap(a@x)<1><S2>: Info: Disconnected: Logged out in=0 out=1"),
            None,
            &mut s,
            &ctx(&filter),
        )
        .unwrap();
        assert!(!logout.fields.contains_key("vnd.maildir.sessionDuration"));
        assert!(!logout.fields.contains_key("vnd.maildir.reason"));
        assert_eq!(logout.fields["vnd.maildir.disconnect"], "graceful");
    }

    #[test]
    fn quota_refusal_and_filter() {
        let filter = Filter::new(vec![Group::Quota], vec![], vec![]);
        let mut s = Sessions::default();
        let e = build(
            rec("lmtp(a@x)<9><Q>: Info: msgid=<m@x>, size=900: save failed to INBOX: Quota exceeded (mailbox for user is full)"),
            None,
            &mut s,
            &ctx(&filter),
        )
        .unwrap();
        assert_eq!(e.kind, "QuotaExceed");
        assert_eq!(e.fields["uri"], "imap://a%40x@mx.example.test/INBOX");
        assert_eq!(e.fields["messageSize"], 900);
        // The access group is off: no Login, but the session is known.
        let none = build(
            rec("imap-login: Login: user=<a@x>, session=<S>"),
            None,
            &mut s,
            &ctx(&filter),
        );
        assert!(none.is_none());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn sessions_are_bounded() {
        let mut s = Sessions::default();
        for i in 0..MAX_SESSIONS + 3 {
            s.open(
                format!("s{i}"),
                OpenSession {
                    user: "u".into(),
                    login_ms: i as i64,
                    client_ip: None,
                },
            );
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        let (_, closed) = s.take_changes();
        assert_eq!(closed, ["s0", "s1", "s2"]);
    }
}
