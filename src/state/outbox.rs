//! The outbox side of the state database: each sink's position, what it
//! has yet to take, what it rejected for good.
//!
//! Every sink has its own position (the last sequence number it took), so a
//! slow webhook does not hold back the file sink; a row leaves the outbox
//! only when every configured sink is past it. Each sink thread opens its
//! own connection (SQLite's WAL lets it read while the engine writes).

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use crate::state::store::{OutboxRow, StoreError, sql_err};

/// An event a sink refused for good (e.g. HTTP 400): it goes to the
/// dead-letter table, not back to the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub seq: i64,
    pub reason: String,
}

/// A connection to the outbox of a state database.
pub struct Outbox {
    conn: Connection,
    path: PathBuf,
}

/// One event a sink rejected for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub seq: i64,
    pub event_id: String,
    pub sink: String,
    pub reason: String,
    pub at: String,
    pub body: String,
}

/// How far behind a sink is.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Backlog {
    pub events: u64,
    /// Age of the oldest event the sink has not taken, in seconds.
    pub oldest_secs: Option<f64>,
}

impl Outbox {
    /// Opens another connection to the state database at `path`.
    pub fn open(path: &Path) -> Result<Outbox, StoreError> {
        let mut conn = Connection::open(path).map_err(|e| sql_err(path, e))?;
        crate::state::store::tune(&mut conn).map_err(|e| sql_err(path, e))?;
        Ok(Outbox {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        sql_err(&self.path, e)
    }

    /// The last sequence number `sink` took (0 for a new sink: it gets
    /// everything still in the outbox).
    pub fn position(&self, sink: &str) -> Result<i64, StoreError> {
        position(&self.conn, sink).map_err(|e| self.err(e))
    }

    /// Up to `limit` events after `seq`, in order.
    pub fn rows_after(&self, seq: i64, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        rows_after(&self.conn, seq, limit).map_err(|e| self.err(e))
    }

    /// Moves `sink` past `seq`; the events it rejected go to the dead-letter
    /// table in the same transaction, so none is lost.
    pub fn advance(
        &mut self,
        sink: &str,
        seq: i64,
        rejected: &[Rejected],
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| sql_err(&path, e))?;
        record(&tx, sink, seq, rejected).map_err(|e| sql_err(&path, e))?;
        tx.commit().map_err(|e| sql_err(&path, e))
    }

    /// Deletes the events every one of `sinks` has taken.
    pub fn trim(&self, sinks: &[String]) -> Result<(), StoreError> {
        let mut low = i64::MAX;
        for s in sinks {
            low = low.min(self.position(s)?);
        }
        trim_to(&self.conn, low).map_err(|e| self.err(e))
    }

    /// How far behind `sink` is.
    pub fn backlog(&self, sink: &str) -> Result<Backlog, StoreError> {
        let pos = self.position(sink)?;
        self.backlog_after(pos)
    }

    /// Everything in the outbox (waiting for at least one sink).
    pub fn total(&self) -> Result<Backlog, StoreError> {
        self.backlog_after(0)
    }

    fn backlog_after(&self, pos: i64) -> Result<Backlog, StoreError> {
        self.conn
            .query_row(
                "SELECT count(*), (strftime('%s','now') * 1000.0 - min(at)) / 1000.0 FROM outbox WHERE seq > ?1",
                [pos],
                |r| {
                    Ok(Backlog {
                        events: r.get::<_, i64>(0)? as u64,
                        oldest_secs: r.get::<_, Option<f64>>(1)?.map(|a| a.max(0.0)),
                    })
                },
            )
            .map_err(|e| self.err(e))
    }

    /// Users, folders and messages tracked.
    pub fn totals(&self) -> Result<(u64, u64, u64), StoreError> {
        self.conn
            .query_row(
                "SELECT (SELECT count(*) FROM users), count(*), coalesce(sum(count), 0) FROM folders",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64)),
            )
            .map_err(|e| self.err(e))
    }

    /// The names of every sink that ever took an event.
    pub fn known_sinks(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT sink FROM sink_positions ORDER BY sink")
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The dead-letter table, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, event_id, sink, reason, at, body FROM dead_letters ORDER BY seq")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(DeadLetter {
                    seq: r.get(0)?,
                    event_id: r.get(1)?,
                    sink: r.get(2)?,
                    reason: r.get(3)?,
                    at: r.get(4)?,
                    body: r.get(5)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Puts dead letters back for delivery to the sink that rejected them
    /// (after the receiver was fixed). They keep their event id, so a
    /// receiver that did take one drops the repeat. Returns how many.
    pub fn replay(&mut self, seqs: Option<&[i64]>) -> Result<u64, StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| sql_err(&path, e))?;
        let letters: Vec<(i64, String, String, String)> = {
            let mut stmt = tx
                .prepare("SELECT seq, event_id, sink, body FROM dead_letters ORDER BY seq")
                .map_err(|e| sql_err(&path, e))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .map_err(|e| sql_err(&path, e))?;
            rows.collect::<Result<_, _>>()
                .map_err(|e| sql_err(&path, e))?
        };
        let mut n = 0;
        for (seq, id, sink, body) in letters {
            if seqs.is_some_and(|s| !s.contains(&seq)) {
                continue;
            }
            // A new row at the end of the outbox, so order is kept for the
            // sinks; only the sink that rejected it is behind it.
            let next = next_free(&tx).map_err(|e| sql_err(&path, e))?;
            let user = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("user").and_then(|u| u.as_str()).map(str::to_string))
                .unwrap_or_default();
            let kind = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("event").and_then(|u| u.as_str()).map(str::to_string))
                .unwrap_or_default();
            tx.execute(
                "INSERT INTO outbox(seq, event_id, user, event, body, at) VALUES (?1, ?2, ?3, ?4, ?5, CAST(strftime('%s','now') AS INTEGER) * 1000)",
                params![next, id, user, kind, body],
            )
            .map_err(|e| sql_err(&path, e))?;
            tx.execute(
                "INSERT INTO meta(key, value) VALUES ('next_seq', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [(next + 1).to_string()],
            )
            .map_err(|e| sql_err(&path, e))?;
            // Every other sink is already past it.
            tx.execute(
                "UPDATE sink_positions SET seq = max(seq, ?1) WHERE sink != ?2 AND seq = ?3",
                params![next, sink, next - 1],
            )
            .map_err(|e| sql_err(&path, e))?;
            tx.execute("DELETE FROM dead_letters WHERE seq = ?1", [seq])
                .map_err(|e| sql_err(&path, e))?;
            n += 1;
        }
        tx.commit().map_err(|e| sql_err(&path, e))?;
        Ok(n)
    }
}

// The outbox statements, on any connection: `Outbox` uses its own, and
// `watch`'s engine thread the store's, as the one writer of the database.

/// The last sequence number `sink` took (0 for a new sink).
pub(crate) fn position(conn: &Connection, sink: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT seq FROM sink_positions WHERE sink = ?1")?
        .query_row([sink], |r| r.get(0))
        .optional()
        .map(|o| o.unwrap_or(0))
}

/// Up to `limit` events after `seq`, in order.
pub(crate) fn rows_after(
    conn: &Connection,
    seq: i64,
    limit: usize,
) -> rusqlite::Result<Vec<OutboxRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, event_id, body FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![seq, limit as i64], |r| {
        Ok(OutboxRow {
            seq: r.get(0)?,
            event_id: r.get(1)?,
            body: r.get(2)?,
        })
    })?;
    rows.collect()
}

/// Moves `sink` past `seq`, its rejected events into the dead-letter
/// table; call inside a transaction.
pub(crate) fn record(
    conn: &Connection,
    sink: &str,
    seq: i64,
    rejected: &[Rejected],
) -> rusqlite::Result<()> {
    for r in rejected {
        conn.prepare_cached(
            "INSERT OR REPLACE INTO dead_letters(seq, event_id, sink, reason, body, at)
             SELECT seq, event_id, ?2, ?3, body, strftime('%Y-%m-%dT%H:%M:%fZ', 'now') FROM outbox WHERE seq = ?1",
        )?
        .execute(params![r.seq, sink, r.reason])?;
    }
    conn.prepare_cached(
        "INSERT INTO sink_positions(sink, seq) VALUES (?1, ?2)
         ON CONFLICT(sink) DO UPDATE SET seq = max(seq, excluded.seq)",
    )?
    .execute(params![sink, seq])?;
    Ok(())
}

/// Deletes the events up to `low` (every sink's position is at least it),
/// and writes `meta.next_seq` past them in the same transaction: the
/// writer keeps the next number in memory, and finds it again after a
/// crash from the outbox's last row and this mark (`store::next_seq`), so
/// no number is used twice even when the outbox was emptied.
pub(crate) fn trim_to(conn: &Connection, low: i64) -> rusqlite::Result<()> {
    if low == i64::MAX || low == 0 {
        return Ok(());
    }
    let deleted = conn
        .prepare_cached("DELETE FROM outbox WHERE seq <= ?1")?
        .execute([low])?;
    if deleted > 0 {
        conn.prepare_cached(
            "INSERT INTO meta(key, value) VALUES ('next_seq', ?1)
             ON CONFLICT(key) DO UPDATE SET value = max(CAST(value AS INTEGER), excluded.value)",
        )?
        .execute([low + 1])?;
    }
    Ok(())
}

/// The next sequence number for a row added by another process than the
/// writer (`dead-letters --replay`): past the outbox's last row and past
/// every trimmed one.
fn next_free(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT max(
            coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'next_seq'), 1),
            coalesce((SELECT max(seq) FROM outbox), 0) + 1)",
        [],
        |r| r.get(0),
    )
}

/// The highest sequence number in the outbox (0 when empty).
pub(crate) fn high(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT coalesce(max(seq), 0) FROM outbox")?
        .query_row([], |r| r.get(0))
}
