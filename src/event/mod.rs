//! RFC 5423 events built from the changes `diff` found.
//!
//! Keys are the RFC 5423 §5 parameter names, spelled as in the RFC, plus
//! `event` for the type as Cyrus writes it, so consumers of Cyrus or
//! Dovecot notifications can read ours. Our own keys start with
//! `vnd.maildir.`. The sequence number and event id are added by the store
//! when the event is committed to the outbox.

pub mod filter;
pub mod imapurl;
pub mod uidset;

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::diff::{Arrival, Change, FlagChange, MailboxRef, UserDiff};
use crate::maildir::keywords::Keywords;
use crate::maildir::name::Flags;
use filter::Filter;

/// What every event of one batch shares.
#[derive(Clone, Debug)]
pub struct EventContext<'a> {
    pub user: &'a str,
    pub server: &'a str,
    /// RFC 3339 with the local offset and milliseconds.
    pub timestamp: &'a str,
    pub pid: u32,
    /// `\Seen` → MessageRead and `\Deleted` → MessageTrash, rather than
    /// FlagsSet.
    pub simple_flags: bool,
    /// What not to send.
    pub filter: &'a Filter,
    /// RFC 5423 `tags` of the store.
    pub tags: &'a [String],
}

/// One event, before it is numbered.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The RFC 5423 event type.
    pub kind: &'static str,
    pub fields: Map<String, Value>,
}

/// The current time as events show it.
pub fn timestamp_now() -> String {
    chrono::Local::now()
        .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string()
}

/// The space-separated `flagNames` of a flag set: system flags as IMAP
/// names, keywords by their Dovecot names. Keyword letters without a name
/// are left out, as Dovecot ignores them when reading.
pub fn flag_names(flags: Flags, keywords: &Keywords) -> String {
    flag_name_list(flags, keywords).join(" ")
}

fn flag_name_list(flags: Flags, keywords: &Keywords) -> Vec<&str> {
    let mut names: Vec<&str> = flags.system_names();
    names.extend(flags.keyword_indexes().filter_map(|i| keywords.name(i)));
    names
}

/// Turns one user's changes into events, in order.
pub fn build(diff: &UserDiff, ctx: &EventContext) -> Vec<Event> {
    let mut all = Vec::new();
    build_each(diff, ctx, &mut |e| all.push(e));
    all
}

/// [`build`], handing each event to `emit` as soon as it is made: a user
/// with a million arrivals never holds a million events (about 2.7 KB
/// each) at once.
pub fn build_each(diff: &UserDiff, ctx: &EventContext, emit: &mut dyn FnMut(Event)) {
    let mut out = Vec::new();
    let name_of = |i: &usize| diff.mailboxes[*i].name.as_str();
    for change in &diff.changes {
        // The events of the change before (one change may make several).
        finish(ctx, &mut out, emit);
        let sends = |name: &str| ctx.filter.sends_folder(name);
        let wanted = match change {
            Change::MailboxCreate { mailbox }
            | Change::Arrived { mailbox, .. }
            | Change::Flags { mailbox, .. }
            | Change::Expunge { mailbox, .. } => sends(name_of(mailbox)),
            Change::MailboxRename {
                mailbox, old_name, ..
            } => sends(name_of(mailbox)) || sends(old_name),
            Change::MailboxDelete { name, .. }
            | Change::Subscribe { name }
            | Change::Unsubscribe { name } => sends(name),
            Change::Quota { .. } => true,
        };
        if !wanted {
            continue;
        }
        match change {
            Change::MailboxCreate { mailbox } => {
                let m = &diff.mailboxes[*mailbox];
                let url = mailbox_url(ctx, m);
                out.push(event(
                    ctx,
                    "MailboxCreate",
                    [("uri", json!(url)), ("mailboxID", json!(url))],
                ));
            }
            Change::MailboxRename {
                mailbox,
                old_name,
                old_uidvalidity,
            } => {
                let m = &diff.mailboxes[*mailbox];
                let url = mailbox_url(ctx, m);
                let old =
                    imapurl::mailbox_url(ctx.server, ctx.user, old_name, Some(*old_uidvalidity));
                out.push(event(
                    ctx,
                    "MailboxRename",
                    [
                        ("uri", json!(url)),
                        ("mailboxID", json!(url)),
                        ("oldMailboxID", json!(old)),
                    ],
                ));
            }
            Change::MailboxDelete { name, uidvalidity } => {
                let url = imapurl::mailbox_url(ctx.server, ctx.user, name, Some(*uidvalidity));
                out.push(event(
                    ctx,
                    "MailboxDelete",
                    [("uri", json!(url)), ("mailboxID", json!(url))],
                ));
            }
            Change::Quota {
                event: quota_event,
                limits,
                usage,
            } => {
                // RFC 5423 §5: sizes in KiB; the mailbox is the user's INBOX.
                let url = imapurl::mailbox_url(ctx.server, ctx.user, "INBOX", None);
                let mut e = event(ctx, quota_event.name(), [("uri", json!(url))]);
                if let Some(b) = limits.bytes {
                    e.fields.insert("diskQuota".into(), json!(b / 1024));
                }
                e.fields
                    .insert("diskUsed".into(), json!(usage.bytes.div_ceil(1024)));
                if let Some(m) = limits.messages {
                    e.fields.insert("maxMessages".into(), json!(m));
                }
                e.fields.insert("messages".into(), json!(usage.messages));
                out.push(e);
            }
            Change::Subscribe { name } | Change::Unsubscribe { name } => {
                let kind = if matches!(change, Change::Subscribe { .. }) {
                    "MailboxSubscribe"
                } else {
                    "MailboxUnSubscribe"
                };
                let url = imapurl::mailbox_url(ctx.server, ctx.user, name, None);
                out.push(event(
                    ctx,
                    kind,
                    [("uri", json!(url)), ("mailboxID", json!(url))],
                ));
            }
            Change::Arrived {
                mailbox,
                arrival,
                uid,
                base,
                entry,
                params,
            } => {
                let m = &diff.mailboxes[*mailbox];
                let kind = match arrival {
                    Arrival::New => "MessageNew",
                    Arrival::Append => "MessageAppend",
                };
                let url = mailbox_url(ctx, m);
                let mut e = event(ctx, kind, []);
                if *uid != 0 {
                    e.fields.insert(
                        "uri".into(),
                        json!(imapurl::message_url(
                            ctx.server,
                            ctx.user,
                            &m.name,
                            m.uidvalidity,
                            *uid
                        )),
                    );
                } else {
                    // Nobody has numbered it yet (a delivery Dovecot has not
                    // synced); say so rather than invent a UID.
                    e.fields.insert("uri".into(), json!(url));
                    e.fields
                        .insert("vnd.maildir.uidPending".into(), json!(true));
                    e.fields.insert(
                        "vnd.maildir.filename".into(),
                        json!(String::from_utf8_lossy(base)),
                    );
                }
                e.fields.insert("mailboxID".into(), json!(url));
                if let Some(size) = entry.vsize {
                    e.fields.insert("messageSize".into(), json!(size));
                }
                e.fields.insert(
                    "flagNames".into(),
                    json!(flag_names(entry.flags, &m.keywords)),
                );
                for (k, v) in params {
                    e.fields.insert(k.clone(), json!(v));
                }
                counts(&mut e, m);
                out.push(e);
            }
            Change::Flags { mailbox, changes } => {
                let m = &diff.mailboxes[*mailbox];
                out.extend(flag_events(ctx, m, changes));
            }
            Change::Expunge {
                mailbox,
                uids,
                unassigned,
                expire,
            } => {
                let m = &diff.mailboxes[*mailbox];
                let kind = if *expire {
                    "MessageExpire"
                } else {
                    "MessageExpunge"
                };
                let mut e = uid_event(ctx, m, kind, None, uids, unassigned.len() as u32);
                if !unassigned.is_empty() {
                    let names: Vec<String> = unassigned
                        .iter()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .collect();
                    e.fields
                        .insert("vnd.maildir.filenames".into(), json!(names));
                }
                out.push(e);
            }
        }
    }
    finish(ctx, &mut out, emit);
}

/// Hands on the events made so far that the filter sends, with the
/// parameters every event carries.
fn finish(ctx: &EventContext, out: &mut Vec<Event>, emit: &mut dyn FnMut(Event)) {
    for mut e in out.drain(..) {
        if !ctx.filter.sends(e.kind) {
            continue;
        }
        // Process parameters last, so the interesting keys lead each line.
        if !ctx.tags.is_empty() {
            e.fields.insert("tags".into(), json!(ctx.tags));
        }
        e.fields.insert("pid".into(), json!(ctx.pid));
        e.fields.insert("process".into(), json!("maildir-events"));
        emit(e);
    }
}

fn event<const N: usize>(
    ctx: &EventContext,
    kind: &'static str,
    extra: [(&str, Value); N],
) -> Event {
    let mut fields = Map::new();
    fields.insert("event".into(), json!(kind));
    fields.insert("timestamp".into(), json!(ctx.timestamp));
    fields.insert("user".into(), json!(ctx.user));
    fields.insert("serverFQDN".into(), json!(ctx.server));
    for (k, v) in extra {
        fields.insert(k.into(), v);
    }
    Event { kind, fields }
}

fn mailbox_url(ctx: &EventContext, m: &MailboxRef) -> String {
    imapurl::mailbox_url(ctx.server, ctx.user, &m.name, Some(m.uidvalidity))
}

fn counts(e: &mut Event, m: &MailboxRef) {
    e.fields.insert("uidnext".into(), json!(m.uidnext));
    e.fields.insert("messages".into(), json!(m.messages));
}

/// An event about a set of messages of one mailbox.
fn uid_event(
    ctx: &EventContext,
    m: &MailboxRef,
    kind: &'static str,
    flag_names: Option<String>,
    uids: &[u32],
    unassigned: u32,
) -> Event {
    let url = mailbox_url(ctx, m);
    let mut e = event(ctx, kind, [("uri", json!(url)), ("mailboxID", json!(url))]);
    // A set of no UIDs is no IMAP sequence-set: leave the key out.
    if !uids.is_empty() {
        e.fields
            .insert("uidset".into(), json!(uidset::format(uids)));
    }
    if let Some(names) = flag_names {
        e.fields.insert("flagNames".into(), json!(names));
    }
    if unassigned > 0 {
        e.fields
            .insert("vnd.maildir.unassigned".into(), json!(unassigned));
    }
    counts(&mut e, m);
    e
}

/// Groups per-message flag changes into one event per kind and flag set:
/// marking a thousand messages read is one MessageRead.
fn flag_events(ctx: &EventContext, m: &MailboxRef, changes: &[FlagChange]) -> Vec<Event> {
    // (order, kind, flagNames) → (uids, unassigned)
    let mut groups: BTreeMap<(u8, &'static str, String), (Vec<u32>, u32)> = BTreeMap::new();
    let mut add = |order: u8, kind: &'static str, flags: Flags, uid: u32| {
        let mut list = flag_name_list(flags, &m.keywords);
        list.retain(|n| ctx.filter.sends_flag(n));
        let names = list.join(" ");
        if names.is_empty() {
            return;
        }
        let g = groups.entry((order, kind, names)).or_default();
        if uid == 0 {
            g.1 += 1;
        } else {
            g.0.push(uid);
        }
    };
    for c in changes {
        let mut gained = c.gained;
        if ctx.simple_flags {
            if gained.contains(Flags::SEEN) {
                add(0, "MessageRead", Flags::SEEN, c.uid);
                gained = gained.difference(Flags::SEEN);
            }
            if gained.contains(Flags::TRASHED) {
                add(1, "MessageTrash", Flags::TRASHED, c.uid);
                gained = gained.difference(Flags::TRASHED);
            }
        }
        add(2, "FlagsSet", gained, c.uid);
        add(3, "FlagsClear", c.lost, c.uid);
    }
    groups
        .into_iter()
        .map(|((_, kind, names), (uids, unassigned))| {
            let names = (kind == "FlagsSet" || kind == "FlagsClear").then_some(names);
            uid_event(ctx, m, kind, names, &uids, unassigned)
        })
        .collect()
}
