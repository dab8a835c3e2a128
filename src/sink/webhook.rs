//! Events POSTed to an HTTP(S) endpoint, one per request or in batches,
//! signed with HMAC-SHA256, retried with backoff within a deadline.
//!
//! # What the endpoint receives
//!
//! - Single mode (no `batch_size`): the body is one event, the JSON object
//!   exactly as stored in the outbox.
//! - Batch mode (`batch_size = N`): the body is a JSON array of up to N
//!   events, in order.
//!
//! Headers on every request:
//!
//! - `Content-Type: application/json`
//! - `Idempotency-Key`: the event's `vnd.maildir.eventId` when the body
//!   holds one event. For a body of several events it is
//!   `<first id>..<last id>`: a key must name exactly one body, and the
//!   first id alone would be reused for a different body when the engine
//!   re-sends a longer batch after a failure, or when a refused batch is
//!   split (below); endpoints that follow the IETF Idempotency-Key draft
//!   answer such a reuse with 422, which would drop good events.
//! - `X-Maildir-Events-Ids` (batch mode only): every event id of the body,
//!   comma-separated, in order, so the endpoint can deduplicate per event.
//! - `X-Maildir-Events-Signature: sha256=<hex>` when `secret_file` is set:
//!   the HMAC-SHA256 of the exact body bytes with the shared secret.
//! - the configured custom `headers`.
//!
//! # What the answers mean
//!
//! - 2xx: delivered.
//! - 408, 429, 5xx, timeouts, connection and TLS errors: tried again with
//!   exponential backoff and jitter; `Retry-After` (in seconds) is honoured
//!   on 429 and 503, capped by `retry_after_max_ms`. When the retries or the
//!   deadline run out, `send` fails and the engine re-sends the batch later.
//! - 3xx: fails the batch at once. Redirects are not followed, since a
//!   POST turned into a GET could answer 2xx without delivering anything;
//!   the administrator must set `url` to the final address.
//! - Other 4xx: the event is refused for good and goes to the dead-letter
//!   table, with the status and the first 200 bytes of the answer. In batch
//!   mode a refused batch of several events is sent again one event at a
//!   time (each as a one-element array), so only the bad events are
//!   dead-lettered and the others are delivered, still in order.
//!
//! Events are sent one request at a time, so an event never reaches the
//! endpoint before the events before it have been accepted or refused.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tracing::{debug, warn};
use ureq::http::{HeaderName, HeaderValue, Response, Uri};
use ureq::tls::{PemItem, RootCerts, TlsConfig};
use ureq::{Agent, Body};

use super::redact::{self, Secrets};
use super::retry::{Backoff, RetryPolicy, check_timeout};
use super::{Rejected, Sink, SinkError};
use crate::state::store::OutboxRow;

/// The header carrying the body's HMAC signature.
pub const SIGNATURE_HEADER: &str = "X-Maildir-Events-Signature";
/// The header listing every event id of a batch body.
pub const IDS_HEADER: &str = "X-Maildir-Events-Ids";
/// The header naming the body for deduplication by the endpoint.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// How much of a refusal's body goes into the dead-letter reason.
const REASON_BODY_BYTES: u64 = 200;
/// How much of a success's body is read (and thrown away) so the
/// connection can be reused.
const DRAIN_BYTES: u64 = 64 * 1024;
/// Headers the sink sets itself; custom headers may not replace them.
const OWN_HEADERS: [&str; 4] = [
    "content-type",
    "idempotency-key",
    "x-maildir-events-ids",
    "x-maildir-events-signature",
];

/// Configuration of the webhook sink.
#[derive(Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The endpoint, `http://…` or `https://…`.
    pub url: String,
    /// Unset: one event per request, the body is the event object. Set to
    /// N ≥ 1: the body is a JSON array of up to N events.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// A file holding the shared HMAC secret (a trailing newline is
    /// ignored). Unset: requests are not signed. The secret is never taken
    /// from the command line, where `ps` would show it.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Extra headers for every request (e.g. `Authorization`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// PEM file of the CA certificates to trust for `https`, instead of the
    /// built-in Mozilla roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Time to establish the connection (including TLS), in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time to wait for the response, in milliseconds.
    #[serde(default = "default_read_timeout_ms")]
    pub read_timeout_ms: u64,
    /// Retries of one request after its first try.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The time one `send` may take, in milliseconds; then it fails and the
    /// engine sends the batch again later.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// The first backoff between retries, in milliseconds (doubles, with
    /// jitter).
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// The longest backoff between retries, in milliseconds.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// The longest `Retry-After` wait honoured, in milliseconds; a longer
    /// one is shortened to this.
    #[serde(default = "default_retry_after_max_ms")]
    pub retry_after_max_ms: u64,
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_read_timeout_ms() -> u64 {
    10_000
}
fn default_retries() -> u32 {
    10
}
fn default_deadline_ms() -> u64 {
    30_000
}
fn default_backoff_initial_ms() -> u64 {
    200
}
fn default_backoff_max_ms() -> u64 {
    5_000
}
fn default_retry_after_max_ms() -> u64 {
    60_000
}

/// Header values (an `Authorization` token) and the URL's credentials stay
/// out of logs.
impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &super::redact(&self.url))
            .field("batch_size", &self.batch_size)
            .field("secret_file", &self.secret_file)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl WebhookConfig {
    /// A configuration with every optional setting at its default.
    pub fn new(url: impl Into<String>) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            batch_size: None,
            secret_file: None,
            headers: BTreeMap::new(),
            ca_file: None,
            connect_timeout_ms: default_connect_timeout_ms(),
            read_timeout_ms: default_read_timeout_ms(),
            retries: default_retries(),
            deadline_ms: default_deadline_ms(),
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            retry_after_max_ms: default_retry_after_max_ms(),
        }
    }
}

/// POSTs events to one URL; see the module documentation for the protocol.
pub struct WebhookSink {
    name: String,
    url: String,
    /// The URL as it may be printed ([`redact::url`]).
    shown: String,
    /// What never leaves the process in a message: the URL's userinfo and
    /// query, header values, the HMAC secret.
    secrets: Secrets,
    agent: Agent,
    signer: Option<Hmac<Sha256>>,
    secret_file: Option<PathBuf>,
    headers: Vec<(HeaderName, HeaderValue)>,
    batch_size: Option<usize>,
    retry: RetryPolicy,
    retry_after_max: Duration,
}

impl WebhookSink {
    /// Checks the whole configuration and reads the secret and CA files, so
    /// every mistake is reported at start-up with the setting to fix.
    pub fn new(config: WebhookConfig) -> Result<WebhookSink, String> {
        let https = check_url(&config.url)?;
        if config.batch_size == Some(0) {
            return Err(
                "webhook: `batch_size` must be at least 1 (or unset for one event per request)"
                    .into(),
            );
        }
        for (key, ms) in [
            ("connect_timeout_ms", config.connect_timeout_ms),
            ("read_timeout_ms", config.read_timeout_ms),
            ("retry_after_max_ms", config.retry_after_max_ms),
        ] {
            check_timeout("webhook", key, ms)?;
        }
        let retry = RetryPolicy::from_settings(
            "webhook",
            config.retries,
            config.deadline_ms,
            config.backoff_initial_ms,
            config.backoff_max_ms,
        )?;
        let mut secrets = super::SinkConfig::Webhook(config.clone()).secrets();
        let signer = match &config.secret_file {
            Some(path) => {
                let secret = read_secret(path)?;
                secrets.add(&String::from_utf8_lossy(&secret));
                Some(signer(&secret)?)
            }
            None => None,
        };
        redact::register(&secrets);
        let root_certs = match &config.ca_file {
            Some(_) if !https => {
                return Err("webhook: `ca_file` is set but `url` is not https://".into());
            }
            Some(path) => Some(read_ca_file(path)?),
            None => None,
        };
        let headers = check_headers(&config.headers)?;
        let agent = build_agent(&config, root_certs);
        let shown = redact::url(&config.url);
        Ok(WebhookSink {
            name: format!("webhook:{shown}"),
            shown,
            secrets,
            url: config.url,
            agent,
            signer,
            secret_file: config.secret_file,
            headers,
            batch_size: config.batch_size,
            retry,
            retry_after_max: Duration::from_millis(config.retry_after_max_ms),
        })
    }

    /// Sends one chunk in batch mode; when it is refused as a whole and
    /// holds several events, sends them one by one to find the bad ones.
    fn send_chunk(
        &self,
        chunk: &[OutboxRow],
        deadline: Instant,
    ) -> Result<Vec<Rejected>, SinkError> {
        match self.deliver(&self.batch_request(chunk), deadline)? {
            Outcome::Delivered => Ok(Vec::new()),
            Outcome::Refused(reason) if chunk.len() == 1 => Ok(vec![Rejected {
                seq: chunk[0].seq,
                reason,
            }]),
            Outcome::Refused(reason) => {
                debug!(url = %self.shown, "batch refused ({}); sending its events one by one", self.secrets.scrub(&reason));
                let mut rejected = Vec::new();
                for row in chunk {
                    let one = std::slice::from_ref(row);
                    if let Outcome::Refused(reason) =
                        self.deliver(&self.batch_request(one), deadline)?
                    {
                        rejected.push(Rejected {
                            seq: row.seq,
                            reason,
                        });
                    }
                }
                Ok(rejected)
            }
        }
    }

    /// Sends one event in single mode.
    fn send_one(&self, row: &OutboxRow, deadline: Instant) -> Result<Option<Rejected>, SinkError> {
        Ok(match self.deliver(&self.single_request(row), deadline)? {
            Outcome::Delivered => None,
            Outcome::Refused(reason) => Some(Rejected {
                seq: row.seq,
                reason,
            }),
        })
    }

    fn single_request(&self, row: &OutboxRow) -> Payload {
        self.payload(row.body.clone().into_bytes(), row.event_id.clone(), None)
    }

    fn batch_request(&self, rows: &[OutboxRow]) -> Payload {
        let (key, ids) = batch_keys(rows);
        self.payload(json_array(rows), key, Some(ids))
    }

    fn payload(&self, body: Vec<u8>, key: String, ids: Option<String>) -> Payload {
        let signature = self.signer.as_ref().map(|s| sign(s, &body));
        Payload {
            body,
            key,
            ids,
            signature,
        }
    }

    /// Posts one body until it is accepted or refused, retrying failures
    /// within the retry budget and the batch's deadline.
    fn deliver(&self, payload: &Payload, deadline: Instant) -> Result<Outcome, SinkError> {
        let mut backoff = Backoff::new(&self.retry);
        loop {
            let (why, asked) = match self.attempt(payload, deadline) {
                Attempt::Delivered => return Ok(Outcome::Delivered),
                Attempt::Refused(reason) => {
                    return Ok(Outcome::Refused(self.secrets.scrub(&reason)));
                }
                Attempt::Fatal(why) => {
                    let why = self.secrets.scrub(&why);
                    return Err(SinkError::Failed(format!("{}: {why}", self.shown)));
                }
                // Foreign errors (ureq's) may embed the URL: scrubbed here,
                // before anything prints them.
                Attempt::Retry { why, retry_after } => (self.secrets.scrub(&why), retry_after),
            };
            let wait = match asked {
                Some(asked) => asked.min(self.retry_after_max),
                None => backoff.delay(),
            };
            backoff.wait(wait, deadline).map_err(|stop| {
                SinkError::Failed(format!("{}: {stop}; last error: {why}", self.shown))
            })?;
            debug!(url = %self.shown, key = %payload.key, "retrying after: {why}");
        }
    }

    /// One POST, classified.
    fn attempt(&self, payload: &Payload, deadline: Instant) -> Attempt {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Attempt::Retry {
                why: "no time left before the deadline".into(),
                retry_after: None,
            };
        }
        let mut req = self
            .agent
            .post(&self.url)
            .config()
            .timeout_global(Some(remaining))
            .build()
            .header("Content-Type", "application/json")
            .header(IDEMPOTENCY_HEADER, &payload.key);
        if let Some(ids) = &payload.ids {
            req = req.header(IDS_HEADER, ids);
        }
        if let Some(sig) = &payload.signature {
            req = req.header(SIGNATURE_HEADER, sig);
        }
        for (name, value) in &self.headers {
            req = req.header(name.clone(), value.clone());
        }
        match req.send(&payload.body[..]) {
            Ok(resp) => classify(resp),
            Err(e) => Attempt::Retry {
                why: with_tls_hint(e.to_string()),
                retry_after: None,
            },
        }
    }
}

/// A TLS certificate error with what the operator can do about it (rustls
/// names the problem, e.g. `UnknownIssuer`, but not the remedy). Other
/// errors are kept as they are.
fn with_tls_hint(why: String) -> String {
    if !why.contains("invalid peer certificate") {
        return why;
    }
    let hint = if why.contains("UnknownIssuer") {
        "the server's certificate is not signed by a CA this sink trusts: set `ca_file` to the PEM file of the CA that signed it (or fix the chain the server sends)"
    } else if why.contains("not valid for name") || why.contains("NotValidForName") {
        "the server's certificate is not issued for the host in `url`: put a name the certificate is valid for in `url` (or give the server a certificate for this name)"
    } else if why.contains("Expired") || why.contains("NotValidYet") {
        "the server's certificate is outside its validity period (or this host's clock is wrong)"
    } else {
        "the server's certificate was refused: check it, and `ca_file`"
    };
    format!("{why} ({hint})")
}

impl Sink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }

    /// Reads `secret_file` again, so the secret can be rotated with a
    /// SIGHUP; if it cannot be read, the old secret stays in use.
    fn reopen(&mut self) -> Result<(), SinkError> {
        if let Some(path) = &self.secret_file {
            let secret = read_secret(path).map_err(SinkError::Failed)?;
            let fresh = signer(&secret).map_err(SinkError::Failed)?;
            self.secrets.add(&String::from_utf8_lossy(&secret));
            redact::register(&self.secrets);
            self.signer = Some(fresh);
        }
        Ok(())
    }

    fn send(&mut self, batch: &[OutboxRow]) -> Result<Vec<Rejected>, SinkError> {
        let deadline = Instant::now() + self.retry.deadline;
        let mut rejected = Vec::new();
        match self.batch_size {
            None => {
                for row in batch {
                    rejected.extend(self.send_one(row, deadline)?);
                }
            }
            Some(n) => {
                for chunk in batch.chunks(n) {
                    rejected.extend(self.send_chunk(chunk, deadline)?);
                }
            }
        }
        Ok(rejected)
    }
}

/// One request body with the headers derived from it, built once and sent
/// unchanged on every retry so the signature and key stay the same.
struct Payload {
    body: Vec<u8>,
    key: String,
    ids: Option<String>,
    signature: Option<String>,
}

/// The end result of delivering one body.
enum Outcome {
    Delivered,
    Refused(String),
}

/// What one POST told us.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Delivered,
    /// Refused for good: dead-letter it.
    Refused(String),
    /// Worth trying again, possibly after the server's `Retry-After`.
    Retry {
        why: String,
        retry_after: Option<Duration>,
    },
    /// Pointless to retry until the configuration changes; fail the batch.
    Fatal(String),
}

/// Maps a response to what to do next.
fn classify(mut resp: Response<Body>) -> Attempt {
    let status = resp.status().as_u16();
    match status {
        200..=299 => {
            drain(&mut resp);
            Attempt::Delivered
        }
        300..=399 => {
            let to = header_str(&resp, "location")
                .unwrap_or("(no Location)")
                .to_string();
            Attempt::Fatal(format!(
                "HTTP {status}: redirected to {to}; redirects are not followed, set `url` to the final address"
            ))
        }
        408 | 429 | 500..=599 => {
            let retry_after = match status {
                429 | 503 => header_str(&resp, "retry-after").and_then(parse_retry_after),
                _ => None,
            };
            Attempt::Retry {
                why: format!("HTTP {status}: {}", snippet(&mut resp)),
                retry_after,
            }
        }
        400..=499 => Attempt::Refused(format!("HTTP {status}: {}", snippet(&mut resp))),
        _ => Attempt::Retry {
            why: format!("unexpected HTTP status {status}"),
            retry_after: None,
        },
    }
}

fn header_str<'a>(resp: &'a Response<Body>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `Retry-After` in its delay-seconds form; the HTTP-date form is rare for
/// webhooks and falls back to our own backoff.
fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The first bytes of the response body, for error messages.
fn snippet(resp: &mut Response<Body>) -> String {
    let mut buf = Vec::new();
    // A body that cannot be read just gives a shorter reason.
    let _ = resp
        .body_mut()
        .as_reader()
        .take(REASON_BODY_BYTES)
        .read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).trim().to_string()
}

/// Reads a small success body to its end so the connection can be reused;
/// failures here do not matter, the event was accepted.
fn drain(resp: &mut Response<Body>) {
    let _ = io::copy(
        &mut resp.body_mut().as_reader().take(DRAIN_BYTES),
        &mut io::sink(),
    );
}

/// A JSON array of the rows' bodies, byte for byte.
fn json_array(rows: &[OutboxRow]) -> Vec<u8> {
    let mut body = Vec::with_capacity(rows.iter().map(|r| r.body.len() + 1).sum::<usize>() + 2);
    body.push(b'[');
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(row.body.as_bytes());
    }
    body.push(b']');
    body
}

/// The idempotency key and the id list of a batch body (see the module
/// documentation for why the key names the first and the last id).
fn batch_keys(rows: &[OutboxRow]) -> (String, String) {
    let ids: Vec<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
    let key = match (ids.first(), ids.last()) {
        (Some(first), Some(last)) if ids.len() > 1 => format!("{first}..{last}"),
        (Some(first), _) => (*first).to_string(),
        _ => String::new(),
    };
    (key, ids.join(","))
}

/// `sha256=<hex>` of the body.
fn sign(signer: &Hmac<Sha256>, body: &[u8]) -> String {
    let mut mac = signer.clone();
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

fn signer(secret: &[u8]) -> Result<Hmac<Sha256>, String> {
    Hmac::<Sha256>::new_from_slice(secret).map_err(|e| format!("webhook: unusable secret: {e}"))
}

/// Reads the shared secret, without its trailing newline (editors and
/// `echo` add one). An empty secret is refused: it would sign with a key
/// everyone knows.
fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let mut secret = fs::read(path)
        .map_err(|e| format!("webhook: cannot read `secret_file` {}: {e}", path.display()))?;
    if secret.last() == Some(&b'\n') {
        secret.pop();
        if secret.last() == Some(&b'\r') {
            secret.pop();
        }
    }
    if secret.is_empty() {
        return Err(format!(
            "webhook: `secret_file` {} is empty; put the shared secret in it",
            path.display()
        ));
    }
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o004 != 0
    {
        warn!(
            "webhook: `secret_file` {} is readable by everyone; chmod o-r it",
            path.display()
        );
    }
    Ok(secret)
}

/// The CA certificates of a PEM file; other PEM items (keys) are ignored.
fn read_ca_file(path: &Path) -> Result<RootCerts, String> {
    let pem = fs::read(path)
        .map_err(|e| format!("webhook: cannot read `ca_file` {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => {
                return Err(format!(
                    "webhook: `ca_file` {} is not valid PEM: {e}",
                    path.display()
                ));
            }
        }
    }
    if certs.is_empty() {
        return Err(format!(
            "webhook: `ca_file` {} holds no PEM certificate (BEGIN CERTIFICATE)",
            path.display()
        ));
    }
    Ok(RootCerts::new_with_certs(&certs))
}

/// Checks the URL and tells whether it is https.
fn check_url(url: &str) -> Result<bool, String> {
    let shown = redact::url(url);
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("webhook: `url` {shown:?} is not a valid URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            return Err(format!(
                "webhook: `url` {shown:?} must start with http:// or https://"
            ));
        }
    };
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("webhook: `url` {shown:?} has no host"));
    }
    Ok(https)
}

/// Parses the custom headers once, so a bad one fails at start-up rather
/// than at every request.
fn check_headers(
    headers: &BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    headers
        .iter()
        .map(|(name, value)| {
            let parsed = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                format!("webhook: header name {name:?} is not a valid HTTP header name")
            })?;
            if OWN_HEADERS.contains(&parsed.as_str()) {
                return Err(format!(
                    "webhook: header {name:?} is set by the sink and cannot be configured"
                ));
            }
            let value = HeaderValue::from_str(value).map_err(|_| {
                format!("webhook: the value of header {name:?} has characters not allowed in HTTP")
            })?;
            Ok((parsed, value))
        })
        .collect()
}

fn build_agent(config: &WebhookConfig, root_certs: Option<RootCerts>) -> Agent {
    let read = Duration::from_millis(config.read_timeout_ms);
    let mut builder = Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(Duration::from_millis(config.connect_timeout_ms)))
        .timeout_recv_response(Some(read))
        .timeout_per_read(Some(read))
        .user_agent(concat!("maildir-events/", env!("CARGO_PKG_VERSION")));
    if let Some(roots) = root_certs {
        builder = builder.tls_config(TlsConfig::builder().root_certs(roots).build());
    }
    builder.build().new_agent()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tls_errors_say_what_to_do() {
        let cases = [
            (
                "io: invalid peer certificate: UnknownIssuer",
                Some("`ca_file`"),
            ),
            (
                "io: invalid peer certificate: certificate not valid for name \"127.0.0.1\"",
                Some("host in `url`"),
            ),
            (
                "io: invalid peer certificate: Expired",
                Some("validity period"),
            ),
            (
                "io: invalid peer certificate: BadSignature",
                Some("was refused"),
            ),
            ("io: Connection refused", None),
        ];
        for (why, hint) in cases {
            let got = super::with_tls_hint(why.to_string());
            assert!(got.starts_with(why), "{got}");
            match hint {
                Some(h) => assert!(got.contains(h), "{why}: {got}"),
                None => assert_eq!(got, why),
            }
        }
    }

    use super::*;

    fn row(seq: i64) -> OutboxRow {
        OutboxRow {
            seq,
            event_id: format!("i-{seq}"),
            body: format!("{{\"n\":{seq}}}"),
        }
    }

    #[test]
    fn batch_body_is_an_array_of_the_exact_bodies() {
        assert_eq!(json_array(&[row(1), row(2)]), b"[{\"n\":1},{\"n\":2}]");
        assert_eq!(json_array(&[row(7)]), b"[{\"n\":7}]");
    }

    #[test]
    fn batch_key_names_first_and_last() {
        assert_eq!(
            batch_keys(&[row(1), row(2), row(3)]),
            ("i-1..i-3".into(), "i-1,i-2,i-3".into())
        );
        assert_eq!(batch_keys(&[row(4)]), ("i-4".into(), "i-4".into()));
    }

    #[test]
    fn signature_matches_rfc_4231_case_2() {
        let s = signer(b"Jefe").unwrap();
        assert_eq!(
            sign(&s, b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn retry_after_seconds_only() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn secret_trailing_newline_trimmed_and_empty_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        fs::write(&p, "abc\r\n").unwrap();
        assert_eq!(read_secret(&p).unwrap(), b"abc");
        fs::write(&p, "a b\n\n").unwrap();
        assert_eq!(read_secret(&p).unwrap(), b"a b\n");
        fs::write(&p, "\n").unwrap();
        assert!(read_secret(&p).unwrap_err().contains("is empty"));
    }

    #[test]
    fn config_mistakes_are_named() {
        let err = |c: WebhookConfig| WebhookSink::new(c).err().unwrap_or_default();
        assert!(err(WebhookConfig::new("ftp://x/")).contains("http:// or https://"));
        assert!(err(WebhookConfig::new("not a url")).contains("not a valid URL"));
        let mut c = WebhookConfig::new("http://127.0.0.1/");
        c.batch_size = Some(0);
        assert!(err(c).contains("batch_size"));
        let mut c = WebhookConfig::new("http://127.0.0.1/");
        c.headers.insert("Idempotency-Key".into(), "x".into());
        assert!(err(c).contains("set by the sink"));
        let mut c = WebhookConfig::new("http://127.0.0.1/");
        c.headers.insert("X-Bad".into(), "a\nb".into());
        assert!(err(c).contains("not allowed"));
        let mut c = WebhookConfig::new("http://127.0.0.1/");
        c.ca_file = Some("/x.pem".into());
        assert!(err(c).contains("not https"));
        let mut c = WebhookConfig::new("http://127.0.0.1/");
        c.backoff_max_ms = 1;
        assert!(err(c).contains("backoff"));
    }

    #[test]
    fn reopen_rereads_the_secret_and_keeps_the_old_one_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        fs::write(&p, "old\n").unwrap();
        let mut c = WebhookConfig::new("http://127.0.0.1:9/");
        c.secret_file = Some(p.clone());
        let mut s = WebhookSink::new(c).unwrap();
        let with = |secret: &[u8]| sign(&signer(secret).unwrap(), b"body");
        let current = |s: &WebhookSink| sign(s.signer.as_ref().unwrap(), b"body");
        fs::write(&p, "new\n").unwrap();
        s.reopen().unwrap();
        assert_eq!(current(&s), with(b"new"));
        fs::write(&p, "").unwrap();
        assert!(s.reopen().is_err());
        assert_eq!(current(&s), with(b"new"));
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let c: WebhookConfig = serde_json::from_str(r#"{"url":"http://h/"}"#).unwrap();
        assert_eq!((c.batch_size, c.retries, c.deadline_ms), (None, 10, 30_000));
        let err = serde_json::from_str::<WebhookConfig>(r#"{"url":"http://h/","secret":"x"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `secret`"), "{err}");
        let mut c = WebhookConfig::new("http://h/");
        c.deadline_ms = u64::MAX;
        assert!(
            WebhookSink::new(c)
                .err()
                .unwrap_or_default()
                .contains("deadline_ms")
        );
    }

    #[test]
    fn backoff_grows_within_bounds_and_stops() {
        let policy = RetryPolicy::from_settings("t", 3, 60_000, 100, 400).unwrap();
        let mut b = Backoff::new(&policy);
        let deadline = Instant::now() + Duration::from_secs(60);
        for cap in [100u64, 200, 400, 400] {
            let d = b.delay();
            assert!(
                d >= Duration::from_millis(cap / 2) && d <= Duration::from_millis(cap),
                "{d:?}"
            );
            b.attempts += 1;
        }
        let mut b = Backoff::new(&policy);
        for _ in 0..3 {
            assert!(b.next_wait(Duration::ZERO, deadline).is_ok());
        }
        assert!(
            b.next_wait(Duration::ZERO, deadline)
                .unwrap_err()
                .contains("gave up")
        );
        let mut b = Backoff::new(&policy);
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(
            b.next_wait(Duration::from_secs(1), soon)
                .unwrap_err()
                .contains("deadline")
        );
    }
}
