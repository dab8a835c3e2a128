//! Helpers shared by the sink tests: outbox rows shaped like the store's.

#![allow(dead_code)]

use std::net::TcpListener;

use maildir_events::store::OutboxRow;
use serde_json::json;

/// The event id the store would give `seq` (instance `t`).
pub fn id(seq: i64) -> String {
    format!("t-{seq}")
}

/// One outbox row: a MessageNew for `user`, with the keys the store adds.
pub fn row(seq: i64, user: &str) -> OutboxRow {
    let body = json!({
        "event": "MessageNew",
        "user": user,
        "uri": format!("imap://{user}@mx/INBOX;UIDVALIDITY=1/;UID={seq}"),
        "vnd.maildir.seq": seq,
        "vnd.maildir.eventId": id(seq),
    });
    OutboxRow {
        seq,
        event_id: id(seq),
        body: body.to_string(),
    }
}

/// Rows `first..=last`, all for one user.
pub fn rows(first: i64, last: i64) -> Vec<OutboxRow> {
    (first..=last)
        .map(|s| row(s, "alice@example.org"))
        .collect()
}

/// A port nobody listens on right now (bound to 127.0.0.1:0, then let go),
/// so a server can be started on it later.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}
