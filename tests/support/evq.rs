//! Reading the events the binary printed: keys, kinds, URLs, flags, and
//! the URLs of the single-store tests' user [`USER`].

#![allow(dead_code)]

use std::collections::BTreeSet;

use serde_json::Value;

/// The user of the single-store tests.
pub const USER: &str = "alice@example.org";
/// `imap://` + user + server, as every URL of [`USER`] starts.
pub const ALICE: &str = "imap://alice%40example.org@mx.example.org";

pub fn s<'a>(ev: &'a Value, key: &str) -> &'a str {
    ev[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key:?} in {ev}"))
}

pub fn n(ev: &Value, key: &str) -> u64 {
    ev[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number {key:?} in {ev}"))
}

pub fn kinds(evs: &[Value]) -> Vec<&str> {
    evs.iter().map(|e| s(e, "event")).collect()
}

pub fn of<'a>(evs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| s(e, "event") == kind).collect()
}

pub fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
    names.iter().copied().collect()
}

/// The UIDVALIDITY in an event's `mailboxID`.
pub fn uidvalidity(ev: &Value) -> u32 {
    let id = s(ev, "mailboxID");
    let (_, v) = id
        .rsplit_once(";UIDVALIDITY=")
        .unwrap_or_else(|| panic!("no UIDVALIDITY in {id}"));
    v.parse().unwrap()
}

/// The UID in an event's `uri`.
pub fn uid(ev: &Value) -> u32 {
    let uri = s(ev, "uri");
    let (_, u) = uri
        .rsplit_once("/;UID=")
        .unwrap_or_else(|| panic!("no UID in {uri}"));
    u.parse().unwrap()
}

/// `flagNames` as a set.
pub fn flags(ev: &Value) -> BTreeSet<&str> {
    s(ev, "flagNames")
        .split(' ')
        .filter(|f| !f.is_empty())
        .collect()
}

/// The one event of `kind` among others.
pub fn one<'a>(evs: &'a [Value], kind: &str) -> &'a Value {
    let found = of(evs, kind);
    assert_eq!(found.len(), 1, "expected one {kind}: {evs:#?}");
    found[0]
}

/// A mailbox URL of [`USER`].
pub fn mailbox(name: &str, uidvalidity: u32) -> String {
    format!("{ALICE}/{name};UIDVALIDITY={uidvalidity}")
}

/// A message URL of [`USER`].
pub fn message(name: &str, uidvalidity: u32, uid: u32) -> String {
    format!("{ALICE}/{name};UIDVALIDITY={uidvalidity}/;UID={uid}")
}

/// The mailbox name in a URL of [`USER`] (`imap://…/NAME;UIDVALIDITY=…`),
/// as printed.
pub fn mailbox_of(url: &str) -> &str {
    let rest = url
        .strip_prefix(&format!("{ALICE}/"))
        .unwrap_or_else(|| panic!("not a URL of {USER}: {url}"));
    rest.split(";UIDVALIDITY=").next().unwrap()
}

/// The mailbox an event is about (from its `mailboxID`).
pub fn mbox(ev: &Value) -> &str {
    mailbox_of(s(ev, "mailboxID"))
}

/// Expands an IMAP sequence set (`1:3,7`) and checks it is valid
/// (non-empty, no zero) and compressed: ascending, ranges for runs,
/// nothing repeated.
pub fn uids(set: &str) -> Vec<u32> {
    let num = |x: &str| -> u32 {
        let v = x
            .parse()
            .unwrap_or_else(|_| panic!("uidset {set:?} is not an IMAP sequence set"));
        assert!(v > 0, "uidset {set:?} holds 0");
        v
    };
    let mut out: Vec<u32> = Vec::new();
    for part in set.split(',') {
        let (a, b) = match part.split_once(':') {
            Some((a, b)) => (num(a), num(b)),
            None => (num(part), num(part)),
        };
        assert!(a <= b, "range {part} is not ascending in {set}");
        if let Some(&last) = out.last() {
            assert!(a > last + 1, "uidset {set} is not compressed");
        }
        out.extend(a..=b);
    }
    out
}

/// An event's `uidset`, expanded and checked ([`uids`]).
pub fn uidset(ev: &Value) -> Vec<u32> {
    uids(s(ev, "uidset"))
}
