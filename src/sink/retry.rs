//! Retrying inside one `send`, shared by the webhook and NATS sinks: a
//! policy with a deadline, and exponential backoff with jitter.

use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long and how often a sink retries inside one `send`.
#[derive(Clone, Debug)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt of one message or request.
    pub(crate) retries: u32,
    /// The whole `send` must end within this.
    pub(crate) deadline: Duration,
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
}

impl RetryPolicy {
    /// Checks the retry settings shared by the network sinks; `sink` names
    /// the sink in error messages.
    pub(crate) fn from_settings(
        sink: &str,
        retries: u32,
        deadline_ms: u64,
        initial_ms: u64,
        max_ms: u64,
    ) -> Result<RetryPolicy, String> {
        check_timeout(sink, "deadline_ms", deadline_ms)?;
        check_timeout(sink, "backoff_max_ms", max_ms)?;
        if initial_ms == 0 || max_ms < initial_ms {
            return Err(format!(
                "{sink}: need 0 < `backoff_initial_ms` ≤ `backoff_max_ms` (got {initial_ms} and {max_ms})"
            ));
        }
        Ok(RetryPolicy {
            retries,
            deadline: Duration::from_millis(deadline_ms),
            initial: Duration::from_millis(initial_ms),
            max: Duration::from_millis(max_ms),
        })
    }
}

/// The longest timeout or deadline accepted, an hour: longer ones would
/// hold a batch (and the engine) for no good reason, and huge ones would
/// overflow clock arithmetic.
const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// Checks that a duration setting is above 0 and at most an hour.
pub(crate) fn check_timeout(sink: &str, key: &str, ms: u64) -> Result<(), String> {
    if (1..=MAX_TIMEOUT_MS).contains(&ms) {
        Ok(())
    } else {
        Err(format!(
            "{sink}: `{key}` must be from 1 to {MAX_TIMEOUT_MS} (milliseconds), not {ms}"
        ))
    }
}

/// Exponential backoff with "equal jitter" (half the delay fixed, half
/// random), so many instances that failed together do not retry together.
pub(crate) struct Backoff {
    policy: RetryPolicy,
    pub(crate) attempts: u32,
    rng: XorShift,
}

impl Backoff {
    pub(crate) fn new(policy: &RetryPolicy) -> Backoff {
        Backoff {
            policy: policy.clone(),
            attempts: 0,
            rng: XorShift::from_time(),
        }
    }

    /// The next backoff delay: initial × 2^n, capped, jittered.
    pub(crate) fn delay(&mut self) -> Duration {
        let factor = 1u32 << self.attempts.min(16);
        let base = self
            .policy
            .initial
            .saturating_mul(factor)
            .min(self.policy.max);
        let half = base / 2;
        let jitter_ms = self.rng.next() % (half.as_millis() as u64 + 1);
        half + Duration::from_millis(jitter_ms)
    }

    /// Counts one retry and checks it fits the budget: `Ok` with the time to
    /// sleep (not past the deadline), or `Err` saying why to stop.
    pub(crate) fn next_wait(
        &mut self,
        wait: Duration,
        deadline: Instant,
    ) -> Result<Duration, String> {
        self.attempts += 1;
        if self.attempts > self.policy.retries {
            return Err(format!("gave up after {} attempts", self.attempts));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if wait >= remaining {
            return Err(format!(
                "deadline of {} ms reached (next try would be in {} ms)",
                self.policy.deadline.as_millis(),
                wait.as_millis()
            ));
        }
        Ok(wait)
    }

    /// `next_wait`, then sleeps that long (blocking sinks).
    pub(crate) fn wait(&mut self, wait: Duration, deadline: Instant) -> Result<(), String> {
        thread::sleep(self.next_wait(wait, deadline)?);
        Ok(())
    }
}

/// A tiny xorshift64 generator, enough to spread retries; seeded from the
/// clock and the pid so instances differ.
struct XorShift(u64);

impl XorShift {
    fn from_time() -> XorShift {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        XorShift((nanos ^ (u64::from(std::process::id()) << 32)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}
