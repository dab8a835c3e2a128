//! Reading the events the binary printed: keys, kinds, URLs, flags.
//! Shared by `tests/scan.rs` and `tests/watch.rs`.

#![allow(dead_code)]

use std::collections::BTreeSet;

use serde_json::Value;

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
