//! Where events go: sinks take rows from the outbox and say when they have
//! them, so the outbox moves only after delivery.

pub mod file;
pub mod nats;
pub mod redact;
mod retry;
pub mod stdout;
pub mod webhook;

use std::fmt;

use serde::Deserialize;

use crate::state::store::OutboxRow;

/// One configured destination (`[[sink]]` in the configuration file).
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkConfig {
    /// JSON Lines on standard output (the default when no sink is set).
    Stdout,
    /// JSON Lines appended to a file, fsync per batch, reopened on SIGHUP.
    File(file::FileConfig),
    /// HTTP POST with retries, signatures and a dead-letter table.
    Webhook(webhook::WebhookConfig),
    /// NATS JetStream, acknowledged per event.
    Nats(nats::NatsConfig),
}

/// A URL without credentials or query (where tokens hide), for names that
/// end up in logs, metrics and the state database: [`redact::url`], the
/// one way a URL is shown.
pub fn redact(url: &str) -> String {
    redact::url(url)
}

impl SinkConfig {
    /// A stable name for the sink's position in the outbox: its type and
    /// destination, so reordering the configuration moves no position.
    pub fn name(&self) -> String {
        match self {
            SinkConfig::Stdout => "stdout".into(),
            SinkConfig::File(c) => format!("file:{}", c.path.display()),
            SinkConfig::Webhook(c) => format!("webhook:{}", redact(&c.url)),
            SinkConfig::Nats(c) => format!("nats:{}:{}", redact(&c.url), c.subject),
        }
    }

    /// What must never be printed about this sink: the URL's userinfo and
    /// query, header values (the HMAC secret is added by the sink when it
    /// reads it).
    pub fn secrets(&self) -> redact::Secrets {
        match self {
            SinkConfig::Stdout | SinkConfig::File(_) => redact::Secrets::default(),
            SinkConfig::Webhook(c) => {
                let mut s = redact::Secrets::of_url(&c.url);
                for v in c.headers.values() {
                    s.add(v);
                    // "Bearer xyz": the token alone too.
                    if let Some((_, token)) = v.split_once(' ') {
                        s.add(token.trim());
                    }
                }
                s
            }
            SinkConfig::Nats(c) => redact::Secrets::of_url(&c.url),
        }
    }

    /// Builds the sink; the error says what to fix.
    pub fn build(&self) -> Result<Box<dyn Sink + Send>, String> {
        Ok(match self {
            SinkConfig::Stdout => Box::new(stdout::StdoutSink::new()),
            SinkConfig::File(c) => Box::new(file::FileSink::new(c.clone())?),
            SinkConfig::Webhook(c) => Box::new(webhook::WebhookSink::new(c.clone())?),
            SinkConfig::Nats(c) => Box::new(nats::NatsSink::new(c.clone())?),
        })
    }
}

/// Why a sink did not take a batch.
#[derive(Debug)]
pub enum SinkError {
    /// The reader went away (a closed pipe): stop delivering, keep the rows.
    Closed,
    /// Any other failure; the rows stay in the outbox.
    Failed(String),
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkError::Closed => f.write_str("the output was closed (its reader went away)"),
            SinkError::Failed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for SinkError {}

/// An event the destination refused for good; defined with the outbox,
/// which keeps it as a dead letter.
pub use crate::state::outbox::Rejected;

/// A destination for events. `send` returns `Ok` only when every row of the
/// batch was delivered (written and flushed, or acknowledged by the
/// server), except the ones it returns as rejected; then the rows may be
/// deleted. On `Err` nothing of the batch counts as delivered (some may
/// have been, and will be sent again with the same event id).
pub trait Sink {
    fn name(&self) -> &str;
    fn send(&mut self, batch: &[OutboxRow]) -> Result<Vec<Rejected>, SinkError>;
    /// Reopens outputs (SIGHUP, after logrotate moved a file away).
    fn reopen(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// Looks, without sending, whether the output went away (a pipe whose
    /// reader closed): `Err(SinkError::Closed)` then. Called while idle, so
    /// a closed output is noticed without waiting for the next event.
    fn check(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn names_carry_no_secrets() {
        for (url, want) in [
            (
                "https://hooks.example.org/mail",
                "https://hooks.example.org/mail",
            ),
            (
                "https://user:pw@hooks.example.org/mail?token=x",
                "https://hooks.example.org/mail",
            ),
            ("nats://a:b@127.0.0.1:4222", "nats://127.0.0.1:4222"),
            ("nats://h1:4222,h2:4222", "nats://h1:4222,h2:4222"),
        ] {
            assert_eq!(redact(url), want);
        }
    }

    #[test]
    fn webhook_debug_shows_no_header_values() {
        let mut c = super::webhook::WebhookConfig::new("https://u:pw@hooks.example.org/x?token=t");
        c.headers
            .insert("Authorization".into(), "Bearer s3cret".into());
        let shown = format!("{c:?}");
        assert!(
            shown.contains("Authorization") && shown.contains("hooks.example.org/x"),
            "{shown}"
        );
        for secret in ["s3cret", "pw", "token"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
}
