//! Reading the binary's events: IMAP URLs, one-line summaries for exact
//! comparison, and checks of the fields every event carries.
//!
//! Steps compare *sorted summaries* (`MessageRead uri=INBOX;UIDVALIDITY=5
//! uidset=1:2`) of actual and expected events, so a failure shows the whole
//! multiset side by side, and an extra or missing event cannot hide.

use std::collections::HashSet;

use serde_json::Value;

use super::SERVER_NAME;
use super::imap::format_sequence_set;

/// The parts of an RFC 5092 IMAP URL such as
/// `imap://alice%40example.test@mx.example.test/INBOX;UIDVALIDITY=17000/;UID=3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapUrl {
    /// Percent-decoded user (`alice@example.test`).
    pub user: String,
    pub host: String,
    /// Percent-decoded mailbox name as IMAP clients see it (`Foo/Sub`).
    pub mailbox: String,
    pub uidvalidity: Option<u32>,
    pub uid: Option<u32>,
}

/// Decodes `%XX` escapes (as UTF-8); `Err` on a malformed escape or invalid
/// UTF-8.
pub fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .ok_or_else(|| format!("short escape in {s:?}"))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad escape in {s:?}"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("not UTF-8 after decoding: {s:?}"))
}

/// Splits an IMAP URL into its parts; `Err` says what is wrong with it.
pub fn parse_imap_url(url: &str) -> Result<ImapUrl, String> {
    let rest = url
        .strip_prefix("imap://")
        .ok_or_else(|| format!("not an imap:// URL: {url}"))?;
    let (authority, path) = rest
        .split_once('/')
        .ok_or_else(|| format!("no mailbox in {url}"))?;
    let (user, host) = authority
        .rsplit_once('@')
        .ok_or_else(|| format!("no user@ in {url}"))?;
    let (mailbox_part, uid) = match path.split_once("/;UID=") {
        Some((m, uid)) => (
            m,
            Some(uid.parse().map_err(|_| format!("bad UID in {url}"))?),
        ),
        None => (path, None),
    };
    let (mailbox, uidvalidity) = match mailbox_part.rsplit_once(";UIDVALIDITY=") {
        Some((m, v)) => (
            m,
            Some(v.parse().map_err(|_| format!("bad UIDVALIDITY in {url}"))?),
        ),
        None => (mailbox_part, None),
    };
    Ok(ImapUrl {
        user: percent_decode(user)?,
        host: host.to_string(),
        mailbox: percent_decode(mailbox)?,
        uidvalidity,
        uid,
    })
}

/// `Foo;UIDVALIDITY=5/;UID=3`: the parts of a URL that matter to a step,
/// with the mailbox decoded.
fn url_summary(ev: &Value, key: &str) -> String {
    match ev.get(key).and_then(Value::as_str) {
        None => "<missing>".into(),
        Some(url) => match parse_imap_url(url) {
            Err(e) => format!("<bad: {e}>"),
            Ok(u) => mailbox_ref(&u.mailbox, u.uidvalidity, u.uid),
        },
    }
}

fn mailbox_ref(mailbox: &str, uidvalidity: Option<u32>, uid: Option<u32>) -> String {
    let mut s = mailbox.to_string();
    if let Some(v) = uidvalidity {
        s.push_str(&format!(";UIDVALIDITY={v}"));
    }
    if let Some(uid) = uid {
        s.push_str(&format!("/;UID={uid}"));
    }
    s
}

/// A field as text: strings raw, numbers as digits, `<missing>` if absent.
fn field(ev: &Value, key: &str) -> String {
    match ev.get(key) {
        None => "<missing>".into(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// `flagNames` with its words sorted (their order is not part of the
/// contract).
fn flag_names(ev: &Value) -> String {
    match ev.get("flagNames").and_then(Value::as_str) {
        None => field(ev, "flagNames"),
        Some(s) => {
            let mut words: Vec<&str> = s.split_whitespace().collect();
            words.sort_unstable();
            words.join(" ")
        }
    }
}

/// The one-line summary of an actual event, in the same form as the
/// `expect_*` constructors below produce.
pub fn summary(ev: &Value) -> String {
    let kind = field(ev, "event");
    match kind.as_str() {
        "MessageNew" | "MessageAppend" => format!(
            "{kind} uri={} mailboxID={} messageSize={} uidnext={} messages={}",
            url_summary(ev, "uri"),
            url_summary(ev, "mailboxID"),
            field(ev, "messageSize"),
            field(ev, "uidnext"),
            field(ev, "messages"),
        ),
        "MessageRead" | "MessageTrash" | "MessageExpunge" | "MessageExpire" => format!(
            "{kind} uri={} uidset={}",
            url_summary(ev, "uri"),
            field(ev, "uidset")
        ),
        "FlagsSet" | "FlagsClear" => format!(
            "{kind} uri={} uidset={} flagNames={}",
            url_summary(ev, "uri"),
            field(ev, "uidset"),
            flag_names(ev)
        ),
        "MailboxCreate" | "MailboxDelete" => format!("{kind} uri={}", url_summary(ev, "uri")),
        "MailboxRename" => format!(
            "{kind} uri={} mailboxID={} oldMailboxID={}",
            url_summary(ev, "uri"),
            url_summary(ev, "mailboxID"),
            url_summary(ev, "oldMailboxID"),
        ),
        "MailboxSubscribe" | "MailboxUnSubscribe" => {
            let mailbox = ev
                .get("mailboxID")
                .and_then(Value::as_str)
                .map(|u| parse_imap_url(u).map_or_else(|e| format!("<bad: {e}>"), |u| u.mailbox))
                .unwrap_or_else(|| "<missing>".into());
            format!("{kind} mailbox={mailbox}")
        }
        _ => format!("{kind} {ev}"),
    }
}

/// Expected MessageNew / MessageAppend (`kind`) of message `uid`.
pub fn expect_message(
    kind: &str,
    mailbox: &str,
    uidvalidity: u32,
    uid: u32,
    size: u64,
    uidnext: u32,
    messages: u32,
) -> String {
    format!(
        "{kind} uri={} mailboxID={} messageSize={size} uidnext={uidnext} messages={messages}",
        mailbox_ref(mailbox, Some(uidvalidity), Some(uid)),
        mailbox_ref(mailbox, Some(uidvalidity), None),
    )
}

/// Expected MessageRead / MessageTrash / MessageExpunge on `uids`.
pub fn expect_uidset(kind: &str, mailbox: &str, uidvalidity: u32, uids: &[u32]) -> String {
    format!(
        "{kind} uri={} uidset={}",
        mailbox_ref(mailbox, Some(uidvalidity), None),
        format_sequence_set(uids)
    )
}

/// Expected FlagsSet / FlagsClear of `flags` (space separated) on `uids`.
pub fn expect_flags(
    kind: &str,
    mailbox: &str,
    uidvalidity: u32,
    uids: &[u32],
    flags: &str,
) -> String {
    let mut words: Vec<&str> = flags.split_whitespace().collect();
    words.sort_unstable();
    format!(
        "{kind} uri={} uidset={} flagNames={}",
        mailbox_ref(mailbox, Some(uidvalidity), None),
        format_sequence_set(uids),
        words.join(" ")
    )
}

/// Expected MailboxCreate / MailboxDelete.
pub fn expect_mailbox(kind: &str, mailbox: &str, uidvalidity: u32) -> String {
    format!(
        "{kind} uri={}",
        mailbox_ref(mailbox, Some(uidvalidity), None)
    )
}

/// Expected MailboxRename of `old` to `new`.
pub fn expect_rename(new: &str, new_uidvalidity: u32, old: &str, old_uidvalidity: u32) -> String {
    let new = mailbox_ref(new, Some(new_uidvalidity), None);
    let old = mailbox_ref(old, Some(old_uidvalidity), None);
    format!("MailboxRename uri={new} mailboxID={new} oldMailboxID={old}")
}

/// Expected MailboxSubscribe / MailboxUnSubscribe of `mailbox`.
pub fn expect_subscription(kind: &str, mailbox: &str) -> String {
    format!("{kind} mailbox={mailbox}")
}

/// Checks what every event must carry, across all scans of one state
/// database: the common keys, `user`, `serverFQDN`, URLs naming the user
/// and server, RFC 3339 timestamps, strictly increasing `vnd.maildir.seq`
/// and unique `vnd.maildir.eventId`.
#[derive(Debug, Default)]
pub struct EnvelopeChecker {
    last_seq: Option<u64>,
    ids: HashSet<String>,
}

impl EnvelopeChecker {
    /// Returns one line per problem found in `events` (empty when fine).
    pub fn check(&mut self, events: &[Value], user: &str) -> Vec<String> {
        let mut problems = Vec::new();
        for ev in events {
            let mut bad = |what: String| problems.push(format!("{what} in {ev}"));
            for key in [
                "event",
                "timestamp",
                "user",
                "serverFQDN",
                "uri",
                "mailboxID",
                "pid",
                "process",
                "vnd.maildir.seq",
                "vnd.maildir.eventId",
            ] {
                if ev.get(key).is_none() {
                    bad(format!("missing `{key}`"));
                }
            }
            if ev
                .get("user")
                .and_then(Value::as_str)
                .is_some_and(|u| u != user)
            {
                bad(format!("`user` is not {user}"));
            }
            if ev
                .get("serverFQDN")
                .and_then(Value::as_str)
                .is_some_and(|s| s != SERVER_NAME)
            {
                bad(format!("`serverFQDN` is not {SERVER_NAME}"));
            }
            if ev.get("pid").is_some_and(|p| !p.is_u64()) {
                bad("`pid` is not a number".into());
            }
            if let Some(ts) = ev.get("timestamp").and_then(Value::as_str)
                && !is_rfc3339_millis(ts)
            {
                bad(format!(
                    "`timestamp` {ts:?} is not RFC 3339 with milliseconds"
                ));
            }
            for key in ["uri", "mailboxID", "oldMailboxID"] {
                let Some(url) = ev.get(key).and_then(Value::as_str) else {
                    continue;
                };
                match parse_imap_url(url) {
                    Err(e) => bad(format!("`{key}`: {e}")),
                    Ok(u) if u.user != user || u.host != SERVER_NAME => {
                        bad(format!("`{key}` does not name {user} at {SERVER_NAME}"))
                    }
                    Ok(_) => {}
                }
            }
            match ev.get("vnd.maildir.seq").and_then(Value::as_u64) {
                None => bad("`vnd.maildir.seq` is not a number".into()),
                Some(seq) => {
                    if self.last_seq.is_some_and(|last| seq <= last) {
                        bad(format!(
                            "`vnd.maildir.seq` {seq} not above {:?}",
                            self.last_seq
                        ));
                    }
                    self.last_seq = Some(seq);
                }
            }
            match ev.get("vnd.maildir.eventId").and_then(Value::as_str) {
                None => bad("`vnd.maildir.eventId` is not a string".into()),
                Some(id) if !self.ids.insert(id.to_string()) => {
                    bad(format!("`vnd.maildir.eventId` {id} repeated"))
                }
                Some(_) => {}
            }
        }
        problems
    }
}

/// `2026-11-28T09:15:02.114+01:00` or `…Z`: date, time, exactly three
/// fraction digits, offset.
pub fn is_rfc3339_millis(ts: &str) -> bool {
    let b = ts.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let offset_ok = match &ts.get(23..) {
        Some("Z") => true,
        Some(o) if o.len() == 6 => {
            let o = o.as_bytes();
            (o[0] == b'+' || o[0] == b'-')
                && o[1].is_ascii_digit()
                && o[2].is_ascii_digit()
                && o[3] == b':'
                && o[4].is_ascii_digit()
                && o[5].is_ascii_digit()
        }
        _ => false,
    };
    b.len() >= 24
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && offset_ok
}
