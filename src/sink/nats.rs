//! Events published to a NATS JetStream stream, one acknowledged message
//! per event, deduplicated by the server through `Nats-Msg-Id`.
//!
//! # Threads
//!
//! async-nats needs a tokio runtime that keeps running between batches
//! (to answer the server's pings and to reconnect), while the engine calls
//! `send` from plain threads. So the sink owns one dedicated thread running
//! a current-thread runtime; `send` hands it the batch over a channel and
//! waits for the answer.
//!
//! # Subjects
//!
//! Each event goes to the subject `subject` (default
//! `mail.events.{user}.{event}`) with `{user}` and `{event}` replaced by
//! the event's `user` and `event` values (and `{server}` by its
//! `serverFQDN`, so a fleet of hosts can publish into one stream), escaped so each stays exactly one
//! subject token: every byte that is not printable ASCII, and `.`, `*`,
//! `>` and `%`, becomes `%XX` (upper-case hex of the byte; UTF-8 is
//! escaped byte by byte). So `alice@example.org` is published as
//! `mail.events.alice@example%2Eorg.MessageNew`. Unlike replacing those
//! characters with `_`, this cannot make two users share a subject, which
//! matters when subject permissions separate users. A missing or empty
//! value becomes `_`.
//!
//! # Delivery
//!
//! Every message carries `Nats-Msg-Id: <vnd.maildir.eventId>`, so a
//! message sent again (after a lost acknowledgement, a reconnect, or a
//! failed batch sent again by the engine) is dropped by the server within
//! the stream's duplicate window. An event counts as delivered only when
//! its PubAck arrived (a "duplicate" PubAck counts: the event is stored).
//!
//! Messages are published one at a time, each after the previous one was
//! acknowledged. Pipelining would be faster but can reorder the stream:
//! when the connection drops, messages written to the dead socket are lost
//! while later ones still queued in the client go out on the new
//! connection first.
//!
//! When `stream` is set, the stream is created (file storage, `subjects`,
//! `duplicate_window_secs`) if missing, or checked to cover our subjects if
//! it exists; messages then carry `Nats-Expected-Stream` so they are never
//! stored elsewhere. This happens in `new` when the server answers in
//! time, otherwise before the first publish (so the daemon can start, and
//! keep events in the outbox, while NATS is down).

use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, ErrorCode, stream};
use async_nats::{ConnectOptions, ServerAddr};
use serde_json::Value;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::redact::{self, Secrets};
use super::retry::{Backoff, RetryPolicy, check_timeout};
use super::{Rejected, Sink, SinkError};
use crate::state::store::OutboxRow;

/// Extra time `send` waits for the worker beyond the batch deadline before
/// it stops waiting; the worker itself keeps to the deadline.
const WORKER_GRACE: Duration = Duration::from_secs(5);
/// The longest duplicate window accepted: a week. Longer windows make the
/// server keep every id that long, in memory.
const MAX_DUPLICATE_WINDOW_SECS: u64 = 7 * 24 * 3600;

/// Configuration of the NATS JetStream sink.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated (`nats://host:4222`, `tls://…`).
    #[serde(default = "default_url")]
    pub url: String,
    /// Subject template; `{user}` and `{event}` are replaced by escaped
    /// tokens (see the module documentation).
    #[serde(default = "default_subject")]
    pub subject: String,
    /// A stream to create if missing, or to check, at start.
    #[serde(default)]
    pub stream: Option<String>,
    /// The stream's subjects when it is created, and what an existing
    /// stream must cover. Default: the template with each placeholder
    /// token as `*` (`mail.events.*.*`).
    #[serde(default)]
    pub subjects: Vec<String>,
    /// The duplicate window of a stream we create, in seconds: a message
    /// sent again within it is dropped by the server.
    #[serde(default = "default_duplicate_window_secs")]
    pub duplicate_window_secs: u64,
    /// Copies of the stream we create, on that many servers of a cluster
    /// (1 to 5; 3 survives the loss of one server).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// Time to establish a connection, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time to wait for one message's PubAck (and for JetStream API
    /// answers), in milliseconds.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// Retries of one message after its first try.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The time one `send` may take, in milliseconds; then it fails and the
    /// engine sends the batch again later.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// The first backoff between retries, in milliseconds (doubles).
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// The longest backoff between retries, in milliseconds.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
}

fn default_url() -> String {
    "nats://127.0.0.1:4222".into()
}
fn default_subject() -> String {
    "mail.events.{user}.{event}".into()
}
fn default_duplicate_window_secs() -> u64 {
    120
}
fn default_replicas() -> usize {
    1
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_ack_timeout_ms() -> u64 {
    5_000
}
fn default_retries() -> u32 {
    10
}
fn default_deadline_ms() -> u64 {
    30_000
}
fn default_backoff_initial_ms() -> u64 {
    100
}
fn default_backoff_max_ms() -> u64 {
    2_000
}

impl NatsConfig {
    /// A configuration for `url` with every other setting at its default.
    pub fn new(url: impl Into<String>) -> NatsConfig {
        NatsConfig {
            url: url.into(),
            subject: default_subject(),
            stream: None,
            subjects: Vec::new(),
            duplicate_window_secs: default_duplicate_window_secs(),
            replicas: default_replicas(),
            connect_timeout_ms: default_connect_timeout_ms(),
            ack_timeout_ms: default_ack_timeout_ms(),
            retries: default_retries(),
            deadline_ms: default_deadline_ms(),
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_ms: default_backoff_max_ms(),
        }
    }
}

/// Publishes events to JetStream; see the module documentation.
pub struct NatsSink {
    name: String,
    /// What never leaves the process in a message: the URL's userinfo
    /// (user and password, or a token) and query.
    secrets: Secrets,
    template: SubjectTemplate,
    settings: Arc<Settings>,
    worker: Option<Worker>,
}

/// The worker thread and the channel to it.
struct Worker {
    jobs: mpsc::UnboundedSender<Job>,
    thread: JoinHandle<()>,
}

impl Worker {
    /// Starts a thread with its own current-thread runtime.
    fn start(settings: &Arc<Settings>) -> Result<Worker, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("nats: cannot start the async runtime: {e}"))?;
        let (jobs, rx) = mpsc::unbounded_channel();
        let settings = Arc::clone(settings);
        let thread = thread::Builder::new()
            .name("nats-sink".into())
            .spawn(move || run_worker(runtime, settings, rx))
            .map_err(|e| format!("nats: cannot start the worker thread: {e}"))?;
        Ok(Worker { jobs, thread })
    }

    fn alive(&self) -> bool {
        !self.jobs.is_closed()
    }
}

impl NatsSink {
    /// Checks the configuration, starts the worker thread and, when
    /// `stream` is set and the server answers, creates or checks the
    /// stream. A server that is down is not an error here.
    pub fn new(config: NatsConfig) -> Result<NatsSink, String> {
        let secrets = Secrets::of_url(&config.url);
        redact::register(&secrets);
        let template = SubjectTemplate::parse(&config.subject)?;
        let settings = Arc::new(Settings::from_config(&config, &template)?);
        let sink = NatsSink {
            // The same name as `SinkConfig::name`: it keys the outbox position.
            name: format!("nats:{}:{}", redact::url(&config.url), config.subject),
            secrets,
            template,
            worker: Some(Worker::start(&settings)?),
            settings,
        };
        if sink.settings.stream.is_some() {
            sink.setup_stream(sink.settings.connect_timeout + sink.settings.ack_timeout)?;
        }
        Ok(sink)
    }

    /// Creates or checks the stream, waiting at most `wait`; only a stream
    /// that exists but does not fit (or that the server refuses to create)
    /// fails `new`.
    fn setup_stream(&self, wait: Duration) -> Result<(), String> {
        let (reply, answer) = std_mpsc::channel();
        self.submit(Job::Setup { reply })
            .map_err(|e| format!("nats: {e}"))?;
        match answer.recv_timeout(wait) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(SetupError::Fatal(why))) => Err(format!("nats: {}", self.secrets.scrub(&why))),
            Ok(Err(SetupError::Transient(why))) => {
                let why = self.secrets.scrub(&why);
                warn!(
                    "nats: cannot set up the stream yet ({why}); will try again before publishing"
                );
                Ok(())
            }
            Err(_) => {
                warn!(
                    "nats: server did not answer within {wait:?}; the stream will be set up before publishing"
                );
                Ok(())
            }
        }
    }

    fn submit(&self, job: Job) -> Result<(), String> {
        self.worker
            .as_ref()
            .ok_or("the worker is gone")?
            .jobs
            .send(job)
            .map_err(|_| "the NATS worker thread stopped".to_string())
    }

    /// Starts a new worker if the old one ended (it only would by a panic
    /// inside the client), so one bad moment does not stop delivery for
    /// good.
    fn revive_worker(&mut self) -> Result<(), SinkError> {
        if self.worker.as_ref().is_some_and(Worker::alive) {
            return Ok(());
        }
        warn!("nats: the worker thread ended; starting a new one");
        if let Some(old) = self.worker.take() {
            let _ = old.thread.join();
        }
        self.worker = Some(Worker::start(&self.settings).map_err(SinkError::Failed)?);
        Ok(())
    }

    /// The messages of a batch; rows whose body is not a JSON object are
    /// rejected (they cannot come from our store, and no retry fixes them).
    fn messages(&self, batch: &[OutboxRow]) -> (Vec<Outgoing>, Vec<Rejected>) {
        let mut out = Vec::with_capacity(batch.len());
        let mut rejected = Vec::new();
        for row in batch {
            match serde_json::from_str::<Value>(&row.body) {
                Ok(Value::Object(fields)) => {
                    let field = |k: &str| fields.get(k).and_then(Value::as_str).unwrap_or("");
                    out.push(Outgoing {
                        seq: row.seq,
                        subject: self.template.render(
                            field("user"),
                            field("event"),
                            field("serverFQDN"),
                        ),
                        id: row.event_id.clone(),
                        payload: row.body.clone(),
                    });
                }
                _ => rejected.push(Rejected {
                    seq: row.seq,
                    reason: "nats: the event is not a JSON object".into(),
                }),
            }
        }
        (out, rejected)
    }
}

impl Sink for NatsSink {
    fn name(&self) -> &str {
        &self.name
    }

    /// Every error and reason passes [`Secrets::scrub`]: async-nats
    /// errors may name the server URL with its credentials.
    fn send(&mut self, batch: &[OutboxRow]) -> Result<Vec<Rejected>, SinkError> {
        let mut rejected = self.send_unscrubbed(batch).map_err(|e| match e {
            SinkError::Failed(why) => SinkError::Failed(self.secrets.scrub(&why)),
            closed => closed,
        })?;
        for r in &mut rejected {
            r.reason = self.secrets.scrub(&r.reason);
        }
        Ok(rejected)
    }
}

impl NatsSink {
    fn send_unscrubbed(&mut self, batch: &[OutboxRow]) -> Result<Vec<Rejected>, SinkError> {
        let (messages, mut rejected) = self.messages(batch);
        if messages.is_empty() {
            return Ok(rejected);
        }
        self.revive_worker()?;
        let (reply, answer) = std_mpsc::channel();
        self.submit(Job::Publish { messages, reply })
            .map_err(SinkError::Failed)?;
        let published = answer
            .recv_timeout(self.settings.retry.deadline + WORKER_GRACE)
            .map_err(|e| {
                SinkError::Failed(
                    match e {
                        std_mpsc::RecvTimeoutError::Timeout => {
                            "nats: the worker did not answer in time"
                        }
                        std_mpsc::RecvTimeoutError::Disconnected => {
                            "nats: the worker thread stopped"
                        }
                    }
                    .into(),
                )
            })??;
        rejected.extend(published);
        rejected.sort_by_key(|r| r.seq);
        Ok(rejected)
    }
}

impl Drop for NatsSink {
    /// Closes the channel so the worker ends after its current job (bounded
    /// by the deadline), then waits for it, so the connection is closed
    /// when the sink is gone.
    fn drop(&mut self) {
        if let Some(Worker { jobs, thread }) = self.worker.take() {
            drop(jobs);
            let _ = thread.join();
        }
    }
}

/// Everything the worker needs, checked once.
struct Settings {
    servers: Vec<ServerAddr>,
    stream: Option<StreamSetup>,
    connect_timeout: Duration,
    ack_timeout: Duration,
    retry: RetryPolicy,
}

impl Settings {
    fn from_config(config: &NatsConfig, template: &SubjectTemplate) -> Result<Settings, String> {
        let servers = parse_servers(&config.url)?;
        for (key, ms) in [
            ("connect_timeout_ms", config.connect_timeout_ms),
            ("ack_timeout_ms", config.ack_timeout_ms),
        ] {
            check_timeout("nats", key, ms)?;
        }
        let retry = RetryPolicy::from_settings(
            "nats",
            config.retries,
            config.deadline_ms,
            config.backoff_initial_ms,
            config.backoff_max_ms,
        )?;
        let stream = match &config.stream {
            Some(name) => Some(StreamSetup::from_config(name, config, template)?),
            None if !config.subjects.is_empty() => {
                return Err("nats: `subjects` is only used with `stream`; set `stream` or remove `subjects`".into());
            }
            None => None,
        };
        Ok(Settings {
            servers,
            stream,
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            ack_timeout: Duration::from_millis(config.ack_timeout_ms),
            retry,
        })
    }
}

fn parse_servers(url: &str) -> Result<Vec<ServerAddr>, String> {
    let servers = url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ServerAddr>().map_err(|e| {
                let shown = redact::url(s);
                Secrets::of_url(s).scrub(&format!("nats: `url` {shown:?}: {e}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err("nats: `url` is empty; give the server, e.g. nats://127.0.0.1:4222".into());
    }
    Ok(servers)
}

/// The stream to create or check.
#[derive(Clone, Debug)]
struct StreamSetup {
    name: String,
    subjects: Vec<String>,
    duplicate_window: Duration,
    replicas: usize,
}

impl StreamSetup {
    fn from_config(
        name: &str,
        config: &NatsConfig,
        template: &SubjectTemplate,
    ) -> Result<StreamSetup, String> {
        if name.is_empty()
            || name
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || ".*>/\\".contains(c))
        {
            return Err(format!(
                "nats: `stream` {name:?} is not a valid stream name (no spaces, '.', '*', '>', '/' or '\\')"
            ));
        }
        let subjects = if config.subjects.is_empty() {
            vec![template.pattern()]
        } else {
            config.subjects.clone()
        };
        for s in &subjects {
            check_filter(s)?;
        }
        let wanted = template.pattern();
        if !subjects.iter().any(|s| covers(s, &wanted)) {
            return Err(format!(
                "nats: `subjects` {subjects:?} do not cover the subjects events are published to ({wanted}); \
                 add {wanted:?} to `subjects`"
            ));
        }
        if !(1..=MAX_DUPLICATE_WINDOW_SECS).contains(&config.duplicate_window_secs) {
            return Err(format!(
                "nats: `duplicate_window_secs` must be from 1 (repeats are dropped only within it) to {MAX_DUPLICATE_WINDOW_SECS}"
            ));
        }
        if !(1..=5).contains(&config.replicas) {
            return Err(format!(
                "nats: `replicas` must be from 1 to 5 (JetStream's limit), not {}",
                config.replicas
            ));
        }
        Ok(StreamSetup {
            name: name.into(),
            subjects,
            duplicate_window: Duration::from_secs(config.duplicate_window_secs),
            replicas: config.replicas,
        })
    }
}

/// One message ready to publish.
struct Outgoing {
    seq: i64,
    subject: String,
    id: String,
    payload: String,
}

/// Work for the worker thread; each job carries the channel to answer on.
enum Job {
    Setup {
        reply: std_mpsc::Sender<Result<(), SetupError>>,
    },
    Publish {
        messages: Vec<Outgoing>,
        reply: std_mpsc::Sender<Result<Vec<Rejected>, SinkError>>,
    },
}

impl Job {
    fn fail(self, why: &str) {
        // The other side may have stopped waiting; then nobody needs the answer.
        match self {
            Job::Setup { reply } => {
                let _ = reply.send(Err(SetupError::Fatal(why.into())));
            }
            Job::Publish { reply, .. } => {
                let _ = reply.send(Err(SinkError::Failed(why.into())));
            }
        }
    }
}

/// Why the stream could not be set up.
#[derive(Debug)]
enum SetupError {
    /// The server is unreachable or not ready: try again later.
    Transient(String),
    /// The stream does not fit, or the server refused it: fix the config.
    Fatal(String),
}

/// The worker thread: connects, then serves jobs until the sink is dropped.
fn run_worker(runtime: Runtime, settings: Arc<Settings>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    runtime.block_on(async move {
        let mut publisher = match Publisher::connect(settings).await {
            Ok(p) => p,
            Err(why) => {
                while let Some(job) = jobs.recv().await {
                    job.fail(&why);
                }
                return;
            }
        };
        while let Some(job) = jobs.recv().await {
            publisher.handle(job).await;
        }
    });
}

/// The connection and what we know about the stream.
struct Publisher {
    js: jetstream::Context,
    settings: Arc<Settings>,
    stream_ready: bool,
}

impl Publisher {
    /// Creates the client; it connects (and later reconnects) in the
    /// background, so a server that is down is not an error.
    async fn connect(settings: Arc<Settings>) -> Result<Publisher, String> {
        let client = ConnectOptions::new()
            .name("maildir-events")
            .connection_timeout(settings.connect_timeout)
            .request_timeout(Some(settings.ack_timeout))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(reconnect_delay)
            .event_callback(|event| async move { log_event(event) })
            .connect(settings.servers.clone())
            .await
            .map_err(|e| format!("nats: cannot create the client: {e}"))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(settings.ack_timeout)
            .build(client);
        Ok(Publisher {
            js,
            stream_ready: settings.stream.is_none(),
            settings,
        })
    }

    async fn handle(&mut self, job: Job) {
        // A send error means the caller stopped waiting; nothing to do.
        match job {
            Job::Setup { reply } => {
                let _ = reply.send(self.setup().await);
            }
            Job::Publish { messages, reply } => {
                let _ = reply.send(self.publish_all(&messages).await);
            }
        }
    }

    async fn setup(&mut self) -> Result<(), SetupError> {
        if self.stream_ready {
            return Ok(());
        }
        if let Some(setup) = &self.settings.stream {
            ensure_stream(&self.js, setup).await?;
        }
        self.stream_ready = true;
        Ok(())
    }

    /// Publishes the messages in order, each acknowledged before the next.
    async fn publish_all(&mut self, messages: &[Outgoing]) -> Result<Vec<Rejected>, SinkError> {
        let deadline = Instant::now() + self.settings.retry.deadline;
        self.setup_before(deadline).await?;
        let mut rejected = Vec::new();
        for msg in messages {
            rejected.extend(self.publish(msg, deadline).await?);
        }
        Ok(rejected)
    }

    /// Sets up the stream if `new` could not, retrying until the deadline.
    async fn setup_before(&mut self, deadline: Instant) -> Result<(), SinkError> {
        let mut backoff = Backoff::new(&self.settings.retry);
        loop {
            let why = match self.setup().await {
                Ok(()) => return Ok(()),
                Err(SetupError::Fatal(why)) => {
                    return Err(SinkError::Failed(format!("nats: {why}")));
                }
                Err(SetupError::Transient(why)) => why,
            };
            let delay = backoff.delay();
            let wait = backoff.next_wait(delay, deadline).map_err(|stop| {
                SinkError::Failed(format!(
                    "nats: cannot set up the stream: {stop}; last error: {why}"
                ))
            })?;
            tokio::time::sleep(wait).await;
        }
    }

    /// Publishes one message until it is acknowledged, retrying within the
    /// retry budget and the deadline. Only a message too large for the
    /// server is rejected: no retry can fix it.
    async fn publish(
        &self,
        msg: &Outgoing,
        deadline: Instant,
    ) -> Result<Option<Rejected>, SinkError> {
        let mut backoff = Backoff::new(&self.settings.retry);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let try_for = remaining.min(self.settings.ack_timeout);
            let why = match tokio::time::timeout(try_for, self.publish_once(msg)).await {
                Ok(Ok(ack)) => {
                    debug!(stream = %ack.stream, seq = ack.sequence, duplicate = ack.duplicate, id = %msg.id, "acknowledged");
                    return Ok(None);
                }
                Ok(Err(e)) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    return Ok(Some(Rejected {
                        seq: msg.seq,
                        reason: format!("nats: {e}"),
                    }));
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no acknowledgement within {} ms", try_for.as_millis()),
            };
            let delay = backoff.delay();
            let wait = backoff.next_wait(delay, deadline).map_err(|stop| {
                SinkError::Failed(format!(
                    "nats: publishing {} to {}: {stop}; last error: {why}",
                    msg.id, msg.subject
                ))
            })?;
            debug!(id = %msg.id, "publish failed ({why}); retrying in {wait:?}");
            tokio::time::sleep(wait).await;
        }
    }

    async fn publish_once(
        &self,
        msg: &Outgoing,
    ) -> Result<jetstream::publish::PublishAck, jetstream::context::PublishError> {
        let mut publish = PublishMessage::build()
            .payload(msg.payload.clone().into())
            .message_id(&msg.id);
        if let Some(setup) = &self.settings.stream {
            publish = publish.expected_stream(&setup.name);
        }
        self.js
            .send_publish(msg.subject.clone(), publish)
            .await?
            .await
    }
}

/// Creates the stream, or checks that the existing one covers our subjects.
async fn ensure_stream(js: &jetstream::Context, setup: &StreamSetup) -> Result<(), SetupError> {
    match js.get_stream(&setup.name).await {
        Ok(stream) => check_stream(&stream.cached_info().config, setup),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(api)
                if api.error_code() == ErrorCode::STREAM_NOT_FOUND =>
            {
                create_stream(js, setup).await
            }
            GetStreamErrorKind::JetStream(api) => Err(SetupError::Fatal(format!(
                "cannot look up stream {}: {api}",
                setup.name
            ))),
            _ => Err(SetupError::Transient(format!(
                "cannot look up stream {}: {e}",
                setup.name
            ))),
        },
    }
}

async fn create_stream(js: &jetstream::Context, setup: &StreamSetup) -> Result<(), SetupError> {
    let config = stream::Config {
        name: setup.name.clone(),
        subjects: setup.subjects.clone(),
        duplicate_window: setup.duplicate_window,
        num_replicas: setup.replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    match js.create_stream(config).await {
        Ok(_) => {
            info!(stream = %setup.name, subjects = ?setup.subjects, "nats: created the stream");
            Ok(())
        }
        Err(e) => match e.kind() {
            CreateStreamErrorKind::JetStream(api) => Err(SetupError::Fatal(format!(
                "the server refused to create stream {}: {api}",
                setup.name
            ))),
            _ => Err(SetupError::Transient(format!(
                "cannot create stream {}: {e}",
                setup.name
            ))),
        },
    }
}

/// An existing stream must store every subject we publish to; a different
/// duplicate window is only worth a warning.
fn check_stream(config: &stream::Config, setup: &StreamSetup) -> Result<(), SetupError> {
    for wanted in &setup.subjects {
        if !config.subjects.iter().any(|s| covers(s, wanted)) {
            return Err(SetupError::Fatal(format!(
                "stream {} exists with subjects {:?}, which do not cover {wanted:?}; \
                 add it to the stream or change `subjects`/`subject`",
                setup.name, config.subjects
            )));
        }
    }
    if config.duplicate_window != setup.duplicate_window {
        warn!(
            stream = %setup.name,
            "nats: the stream's duplicate window is {:?}, not the configured {:?}; repeats older than it are stored twice",
            config.duplicate_window,
            setup.duplicate_window
        );
    }
    Ok(())
}

/// Reconnect quickly at first, then every 2 s at most, so a restarted
/// server is found again well within a batch's deadline.
fn reconnect_delay(attempts: usize) -> Duration {
    let shift = attempts.min(5) as u32;
    Duration::from_millis((50u64 << shift).min(2_000))
}

fn log_event(event: async_nats::Event) {
    match event {
        async_nats::Event::Connected => info!("nats: connected"),
        async_nats::Event::Disconnected => warn!("nats: disconnected; reconnecting"),
        other => debug!("nats: {}", redact::scrub(&other.to_string())),
    }
}

/// One piece of a subject template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    User,
    Event,
    /// The event's `serverFQDN`: hosts of a fleet publishing into one
    /// stream keep apart.
    Server,
}

/// A parsed subject template such as `mail.events.{user}.{event}`.
#[derive(Clone, Debug)]
struct SubjectTemplate {
    pieces: Vec<Piece>,
}

impl SubjectTemplate {
    /// Parses and checks the template: only `{user}` and `{event}`, and
    /// literal parts that make valid, wildcard-free subject tokens.
    fn parse(template: &str) -> Result<SubjectTemplate, String> {
        let mut pieces = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(format!(
                    "nats: `subject` {template:?} has a '}}' without '{{'"
                ));
            }
            let close = rest[open..]
                .find('}')
                .map(|i| open + i)
                .ok_or_else(|| format!("nats: `subject` {template:?} has a '{{' without '}}'"))?;
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            pieces.push(match &rest[open + 1..close] {
                "user" => Piece::User,
                "event" => Piece::Event,
                "server" => Piece::Server,
                other => {
                    return Err(format!(
                        "nats: `subject` {template:?}: unknown placeholder {{{other}}}; use {{user}}, {{event}} and {{server}}"
                    ));
                }
            });
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        let t = SubjectTemplate { pieces };
        check_subject(&t.render("x", "x", "x"))
            .map_err(|why| format!("nats: `subject` {template:?}: {why}"))?;
        Ok(t)
    }

    fn render(&self, user: &str, event: &str, server: &str) -> String {
        let mut s = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => s.push_str(t),
                Piece::User => s.push_str(&escape_token(user)),
                Piece::Event => s.push_str(&escape_token(event)),
                Piece::Server => s.push_str(&escape_token(server)),
            }
        }
        s
    }

    /// The subjects the template can produce, as a filter: every token
    /// holding a placeholder becomes `*`.
    fn pattern(&self) -> String {
        // NUL marks the placeholders: `parse` refused control characters
        // in the literal parts, so it cannot come from them.
        let marked: String = self
            .pieces
            .iter()
            .map(|piece| match piece {
                Piece::Text(t) => t.as_str(),
                Piece::User | Piece::Event | Piece::Server => "\0",
            })
            .collect();
        marked
            .split('.')
            .map(|token| if token.contains('\0') { "*" } else { token })
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// Makes `value` one safe subject token (see the module documentation).
fn escape_token(value: &str) -> String {
    if value.is_empty() {
        return "_".into();
    }
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if (0x21..=0x7e).contains(&b) && !matches!(b, b'.' | b'*' | b'>' | b'%') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A publish subject: non-empty tokens of printable characters, no wildcards.
fn check_subject(subject: &str) -> Result<(), String> {
    for token in subject.split('.') {
        if token.is_empty() {
            return Err("empty token (leading, trailing or double '.')".into());
        }
        if token.contains(['*', '>']) {
            return Err(format!(
                "token {token:?} holds a wildcard; wildcards cannot be published to"
            ));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "token {token:?} holds white space or a control character"
            ));
        }
    }
    Ok(())
}

/// A stream subject filter: like a subject, but `*` and `>` may be whole
/// tokens (`>` only last).
fn check_filter(filter: &str) -> Result<(), String> {
    let tokens: Vec<&str> = filter.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        let ok = match *token {
            "*" => true,
            ">" => i + 1 == tokens.len(),
            t => check_subject(t).is_ok(),
        };
        if !ok {
            return Err(format!(
                "nats: `subjects` entry {filter:?} is not a valid subject filter"
            ));
        }
    }
    Ok(())
}

/// Whether every subject matched by `subject` (itself possibly holding
/// wildcards) is matched by the filter `pattern`.
fn covers(pattern: &str, subject: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let s: Vec<&str> = subject.split('.').collect();
    for (i, pt) in p.iter().enumerate() {
        if *pt == ">" {
            return s.len() > i;
        }
        let Some(st) = s.get(i) else {
            return false;
        };
        if *st == ">" || (*pt != "*" && pt != st) {
            return false;
        }
    }
    p.len() == s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_escaped_reversibly() {
        assert_eq!(escape_token("alice@example.org"), "alice@example%2Eorg");
        assert_eq!(escape_token("a b*c>d%e\tf"), "a%20b%2Ac%3Ed%25e%09f");
        assert_eq!(escape_token("jürgen"), "j%C3%BCrgen");
        assert_eq!(escape_token(""), "_");
        assert_ne!(escape_token("a.b"), escape_token("a_b"));
    }

    #[test]
    fn template_renders_and_gives_its_pattern() {
        let t = SubjectTemplate::parse("mail.events.{user}.{event}").unwrap();
        assert_eq!(
            t.render("bob@x.org", "MessageNew", "mx"),
            "mail.events.bob@x%2Eorg.MessageNew"
        );
        assert_eq!(t.pattern(), "mail.events.*.*");
        let t = SubjectTemplate::parse("m.u-{user}.all").unwrap();
        assert_eq!(t.pattern(), "m.*.all");
        assert_eq!(t.render("", "E", "mx"), "m.u-_.all");
        let t = SubjectTemplate::parse("mail.events.{server}.{user}.{event}").unwrap();
        assert_eq!(
            t.render("bob@x.org", "MessageNew", "mx1.example.org"),
            "mail.events.mx1%2Eexample%2Eorg.bob@x%2Eorg.MessageNew"
        );
        assert_eq!(t.pattern(), "mail.events.*.*.*");
    }

    #[test]
    fn bad_templates_are_named() {
        for (t, why) in [
            ("mail.{folder}", "unknown placeholder"),
            ("mail.{user", "without"),
            ("mail.user}", "without"),
            ("mail..{user}", "empty token"),
            ("mail.*.{user}", "wildcard"),
            ("mail.{user}.>", "wildcard"),
            ("mail events.{user}", "white space"),
        ] {
            let err = SubjectTemplate::parse(t).err().unwrap_or_default();
            assert!(err.contains(why), "{t}: {err}");
        }
    }

    #[test]
    fn coverage_of_subject_filters() {
        assert!(covers("mail.>", "mail.events.*.*"));
        assert!(covers("mail.events.*.*", "mail.events.*.*"));
        assert!(covers(">", "a"));
        assert!(!covers("mail.events.*", "mail.events.*.*"));
        assert!(!covers("mail.events.x.*", "mail.events.*.*"));
        assert!(!covers("mail.*.*.*", "mail.>"));
        assert!(!covers("mail.events.>", "mail.events"));
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let c: NatsConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c.url, "nats://127.0.0.1:4222");
        assert_eq!(c.subject, "mail.events.{user}.{event}");
        assert_eq!((c.duplicate_window_secs, c.deadline_ms), (120, 30_000));
        let err = serde_json::from_str::<NatsConfig>(r#"{"streams":"X"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `streams`"), "{err}");
    }

    #[test]
    fn config_mistakes_are_named() {
        let err = |c: NatsConfig| NatsSink::new(c).err().unwrap_or_default();
        assert!(err(NatsConfig::new("http://x")).contains("invalid scheme"));
        let mut c = NatsConfig::new("nats://127.0.0.1:1");
        c.subjects = vec!["a.>".into()];
        assert!(err(c).contains("only used with `stream`"));
        let mut c = NatsConfig::new("nats://127.0.0.1:1");
        c.stream = Some("A.B".into());
        assert!(err(c).contains("not a valid stream name"));
        let mut c = NatsConfig::new("nats://127.0.0.1:1");
        c.stream = Some("S".into());
        c.subjects = vec!["other.>".into()];
        assert!(err(c).contains("do not cover"));
        let mut c = NatsConfig::new("nats://127.0.0.1:1");
        c.ack_timeout_ms = 0;
        assert!(err(c).contains("ack_timeout_ms"));
        let mut c = NatsConfig::new("nats://127.0.0.1:1");
        c.stream = Some("S".into());
        c.duplicate_window_secs = 0;
        assert!(err(c).contains("duplicate_window_secs"));
    }
}
