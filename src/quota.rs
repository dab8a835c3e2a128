//! Quota: limits, usage and the crossing of limits (pure).
//!
//! A filesystem cannot see a delivery the server refused, so this
//! QuotaExceed means "usage reached the full mark", not RFC 5423's failed
//! operation (that one comes from the delivery agent's log, see `access`).
//! The full mark is a percentage of the limit (`full_at_percent`, default
//! 100): a delivery agent refuses the message that would cross the limit,
//! so usage may stop short of it for good. Usage is computed from the directory (sizes from `S=` or
//! `stat`), never taken from `maildirsize`, which we never write.

use std::collections::HashMap;

/// Storage and message-count limits; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub bytes: Option<u64>,
    pub messages: Option<u64>,
}

/// The configured rules.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuotaRules {
    pub default: Limits,
    /// Config limits win over `maildirsize`.
    pub force: bool,
    /// Per-user limits and force.
    pub per_user: HashMap<String, (Limits, Option<bool>)>,
    /// Folder globs not counted.
    pub ignore: Vec<String>,
    /// Fraction of the limit usage must fall under before QuotaWithin.
    pub hysteresis: f64,
    /// Fraction of a limit at which usage counts as full (1.0: the limit).
    pub full_at: f64,
}

/// What one user stores, as counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub messages: u64,
}

/// What we remember between runs: the limits in force and whether usage
/// was over them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaState {
    pub limits: Limits,
    pub over: bool,
}

/// A quota event to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaEvent {
    /// A limit changed.
    Change,
    /// Usage reached a limit.
    Exceed,
    /// Usage fell back under the limits (by the hysteresis margin).
    Within,
}

impl QuotaEvent {
    pub fn name(self) -> &'static str {
        match self {
            QuotaEvent::Change => "QuotaChange",
            QuotaEvent::Exceed => "QuotaExceed",
            QuotaEvent::Within => "QuotaWithin",
        }
    }
}

impl QuotaRules {
    /// The limits in force for a user. Like Dovecot 2.3, `maildirsize`'s
    /// limits apply unless a rule forces the configured ones; a limit the
    /// file does not set falls back to the configuration.
    pub fn limits_for(&self, user: &str, file: Option<Limits>) -> Limits {
        let (cfg, force) = match self.per_user.get(user) {
            Some((l, f)) => (
                Limits {
                    bytes: l.bytes.or(self.default.bytes),
                    messages: l.messages.or(self.default.messages),
                },
                f.unwrap_or(self.force),
            ),
            None => (self.default, self.force),
        };
        match file {
            Some(f) if !force => Limits {
                bytes: f.bytes.or(cfg.bytes),
                messages: f.messages.or(cfg.messages),
            },
            _ => cfg,
        }
    }

    /// Whether a folder counts towards usage.
    pub fn counts(&self, folder: &str) -> bool {
        !self
            .ignore
            .iter()
            .any(|p| crate::maildir::glob::glob(p, folder))
    }
}

fn at_or_over(limits: Limits, usage: Usage) -> bool {
    limits.bytes.is_some_and(|l| usage.bytes >= l)
        || limits.messages.is_some_and(|l| usage.messages >= l)
}

fn clearly_under(limits: Limits, usage: Usage, hysteresis: f64) -> bool {
    let under = |limit: Option<u64>, used: u64| {
        limit.is_none_or(|l| (used as f64) < l as f64 * (1.0 - hysteresis))
    };
    under(limits.bytes, usage.bytes) && under(limits.messages, usage.messages)
}

/// The limits scaled to the full mark (`full_at` of each, rounded up).
fn full_mark(limits: Limits, full_at: f64) -> Limits {
    let f = if full_at > 0.0 && full_at <= 1.0 {
        full_at
    } else {
        1.0
    };
    let scale = |l: u64| ((l as f64) * f).ceil() as u64;
    Limits {
        bytes: limits.bytes.map(scale),
        messages: limits.messages.map(scale),
    }
}

/// Compares usage with the limits and the previous state. The first
/// evaluation of a user only records the state. Between the limit and the
/// hysteresis margin under it the state holds, so a message bouncing around
/// the limit does not flood. Over and under are measured against the full
/// mark, `full_at` (a fraction) of each limit.
pub fn evaluate(
    prev: Option<QuotaState>,
    limits: Limits,
    usage: Usage,
    hysteresis: f64,
    full_at: f64,
) -> (QuotaState, Vec<QuotaEvent>) {
    let mark = full_mark(limits, full_at);
    let Some(prev) = prev else {
        return (
            QuotaState {
                limits,
                over: at_or_over(mark, usage),
            },
            Vec::new(),
        );
    };
    let mut events = Vec::new();
    if prev.limits != limits {
        events.push(QuotaEvent::Change);
    }
    let over = if prev.over {
        !clearly_under(mark, usage, hysteresis)
    } else {
        at_or_over(mark, usage)
    };
    match (prev.over, over) {
        (false, true) => events.push(QuotaEvent::Exceed),
        (true, false) => events.push(QuotaEvent::Within),
        _ => {}
    }
    (QuotaState { limits, over }, events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim(bytes: Option<u64>, messages: Option<u64>) -> Limits {
        Limits { bytes, messages }
    }

    fn usage(bytes: u64, messages: u64) -> Usage {
        Usage { bytes, messages }
    }

    #[test]
    fn crossing_up_down_and_bouncing() {
        let l = lim(Some(1000), Some(10));
        let (s, e) = evaluate(None, l, usage(500, 1), 0.01, 1.0);
        assert!(e.is_empty() && !s.over, "first sight records only");
        #[rustfmt::skip]
        let steps: &[(u64, u64, &[QuotaEvent], bool)] = &[
            (999, 1, &[], false),
            (1000, 1, &[QuotaEvent::Exceed], true),     // at the limit is over
            (995, 1, &[], true),                        // inside the margin: still over
            (1001, 1, &[], true),                       // no second Exceed
            (989, 1, &[QuotaEvent::Within], false),     // 1% under
            (500, 10, &[QuotaEvent::Exceed], true),     // the count limit
            (500, 10, &[], true),
            (500, 9, &[QuotaEvent::Within], false),     // 9 < 10 * 0.99
        ];
        let mut state = s;
        for (bytes, count, want, over) in steps {
            let (s, e) = evaluate(Some(state), l, usage(*bytes, *count), 0.01, 1.0);
            assert_eq!(
                (e.as_slice(), s.over),
                (*want, *over),
                "{bytes} bytes, {count} messages"
            );
            state = s;
        }
        let (s, e) = evaluate(
            Some(state),
            lim(Some(400), Some(10)),
            usage(500, 5),
            0.01,
            1.0,
        );
        assert_eq!(e, [QuotaEvent::Change, QuotaEvent::Exceed]);
        let (_, e) = evaluate(Some(s), lim(None, None), usage(500, 5), 0.01, 1.0);
        assert_eq!(e, [QuotaEvent::Change, QuotaEvent::Within]);
    }

    /// Courier's deliverquota refused every message at 3,692 of 4,000
    /// bytes: at a full mark of 90 % that is full; Within comes once usage
    /// is the hysteresis under the mark, not under the limit.
    #[test]
    fn full_mark() {
        let l = lim(Some(4000), Some(100));
        let (s, _) = evaluate(None, l, usage(3000, 5), 0.05, 0.9);
        assert!(!s.over);
        let (s, e) = evaluate(Some(s), l, usage(3692, 6), 0.05, 0.9);
        assert_eq!((e.as_slice(), s.over), (&[QuotaEvent::Exceed][..], true));
        let (s, e) = evaluate(Some(s), l, usage(3500, 6), 0.05, 0.9);
        assert!(
            e.is_empty() && s.over,
            "3500 is within 5 % of the mark 3600"
        );
        let (s, e) = evaluate(Some(s), l, usage(3400, 6), 0.05, 0.9);
        assert_eq!((e.as_slice(), s.over), (&[QuotaEvent::Within][..], false));
        let (_, e) = evaluate(Some(s), l, usage(100, 90), 0.05, 0.9);
        assert_eq!(e, [QuotaEvent::Exceed], "the count's mark too");
        // Out-of-range fractions mean the limit itself.
        let (s, _) = evaluate(None, l, usage(3999, 5), 0.0, 0.0);
        assert!(!s.over);
    }

    #[test]
    fn which_limits_win() {
        let mut rules = QuotaRules {
            default: lim(Some(100), Some(5)),
            ..QuotaRules::default()
        };
        rules
            .per_user
            .insert("ceo".into(), (lim(Some(1000), None), None));
        rules
            .per_user
            .insert("forced".into(), (lim(Some(50), None), Some(true)));
        let file = Some(lim(Some(7), None));
        assert_eq!(rules.limits_for("bob", None), lim(Some(100), Some(5)));
        assert_eq!(
            rules.limits_for("bob", file),
            lim(Some(7), Some(5)),
            "maildirsize wins, count falls back"
        );
        assert_eq!(rules.limits_for("ceo", None), lim(Some(1000), Some(5)));
        assert_eq!(
            rules.limits_for("forced", file),
            lim(Some(50), Some(5)),
            "a forced rule wins"
        );
        rules.force = true;
        assert_eq!(rules.limits_for("bob", file), lim(Some(100), Some(5)));
    }

    #[test]
    fn ignored_folders() {
        let rules = QuotaRules {
            ignore: vec!["Trash".into(), "Spam*".into()],
            ..QuotaRules::default()
        };
        assert!(!rules.counts("Trash") && !rules.counts("Spam.Old") && rules.counts("INBOX"));
    }
}
