//! Steps of a real-Dovecot scenario and how their events are judged: the
//! [`Observer`] a scenario drives (a `scan` after each step, or one
//! `watch` running the whole time), the list of mismatches a scenario
//! collects, and the multiset comparison both observers share.
//!
//! A scenario runs every step even when an earlier one mismatched and
//! fails at the end with the list of all mismatching steps, so one run
//! shows everything the binary still gets wrong.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::dovecot::{Dovecot, PASSWORD};
use super::events::EnvelopeChecker;
use super::imap::Imap;

/// What every observer holds: the Dovecot that changes the store, the
/// user whose store is observed, the options the binary gets, and the
/// checks collected so far.
pub struct Subject {
    pub dovecot: Dovecot,
    pub user: &'static str,
    /// The user's Maildir (it may not exist yet).
    pub maildir: PathBuf,
    /// Options the binary gets before the Maildir.
    pub extra_args: Vec<&'static str>,
    pub envelope: EnvelopeChecker,
    pub failures: Failures,
}

impl Subject {
    pub fn new(dovecot: Dovecot, user: &'static str, extra_args: Vec<&'static str>) -> Subject {
        Subject {
            maildir: dovecot.maildir(user),
            dovecot,
            user,
            extra_args,
            envelope: EnvelopeChecker::default(),
            failures: Failures::default(),
        }
    }

    /// The envelope problems of `events` (common fields, rising sequence
    /// numbers across the whole run, unique ids), recorded as a mismatch.
    pub fn check_envelope(&mut self, step: &str, events: &[Value]) {
        let problems = self.envelope.check(events, self.user);
        if !problems.is_empty() {
            self.failures.fail(
                step,
                format!("bad event fields:\n  {}", problems.join("\n  ")),
            );
        }
    }
}

/// How a scenario sees the events of each step it makes Dovecot do.
pub trait Observer {
    fn subject(&self) -> &Subject;
    fn subject_mut(&mut self) -> &mut Subject;
    /// Whether events are seen as they happen (`watch`) rather than as
    /// the net change since the last look (`scan`): a live observer may see
    /// one change in more than one batch, and a folder's messages expunged
    /// before the folder is deleted.
    fn live(&self) -> bool;
    /// Called right after a step changed the store and before the test asks
    /// Dovecot for the truth, which may change the store again (a NOOP in
    /// the selected INBOX moves a delivery from `new/` to `cur/`): a scan
    /// runs here; a running watcher needs nothing.
    fn changed(&mut self, step: &str);
    /// Compares the step's events with `expected` as multisets, each entry
    /// being the summaries acceptable for one event.
    fn expect_any(&mut self, step: &str, expected: Vec<Vec<String>>);

    /// The Dovecot that changes the store.
    fn dovecot(&self) -> &Dovecot {
        &self.subject().dovecot
    }

    /// The user whose store is observed.
    fn user(&self) -> &'static str {
        self.subject().user
    }

    /// That user's Maildir (it may not exist yet).
    fn maildir(&self) -> &Path {
        &self.subject().maildir
    }

    /// Records a mismatch; the scenario goes on.
    fn fail(&mut self, step: &str, what: String) {
        self.subject_mut().failures.fail(step, what);
    }

    /// A fresh IMAP session of [`Observer::user`].
    fn imap(&self) -> Imap {
        Imap::login(self.dovecot().imap_port(), self.user(), PASSWORD)
    }

    /// [`Observer::expect_any`] with one acceptable summary per event.
    fn expect(&mut self, step: &str, expected: Vec<String>) {
        self.expect_any(step, expected.into_iter().map(|s| vec![s]).collect());
    }

    /// [`Observer::changed`] and [`Observer::expect`] in one go, for steps
    /// whose truth is known before.
    fn step(&mut self, step: &str, expected: Vec<String>) {
        self.changed(step);
        self.expect(step, expected);
    }
}

/// The mismatches a scenario found so far.
#[derive(Debug, Default)]
pub struct Failures(Vec<String>);

impl Failures {
    pub fn fail(&mut self, step: &str, what: String) {
        eprintln!("step {step}: MISMATCH: {what}");
        self.0.push(format!("step {step}: {what}"));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Panics with every recorded failure, followed by `context` (such as
    /// the watcher's stderr).
    pub fn finish(self, context: &str) {
        if !self.0.is_empty() {
            panic!(
                "{} failing check(s):\n\n{}{context}",
                self.0.len(),
                self.0.join("\n\n")
            );
        }
    }
}

/// Pairs expected entries (each a list of acceptable summaries) with
/// distinct actual summaries; returns how many expected entries found one
/// (maximum bipartite matching, small sizes).
pub fn matched(actual: &[String], expected: &[Vec<String>]) -> usize {
    fn augment(
        e: usize,
        actual: &[String],
        expected: &[Vec<String>],
        owner: &mut [Option<usize>],
        seen: &mut [bool],
    ) -> bool {
        for (a, summary) in actual.iter().enumerate() {
            if seen[a] || !expected[e].contains(summary) {
                continue;
            }
            seen[a] = true;
            if owner[a].is_none_or(|other| augment(other, actual, expected, owner, seen)) {
                owner[a] = Some(e);
                return true;
            }
        }
        false
    }
    let mut owner = vec![None; actual.len()];
    (0..expected.len())
        .filter(|&e| {
            augment(
                e,
                actual,
                expected,
                &mut owner,
                &mut vec![false; actual.len()],
            )
        })
        .count()
}

/// Compares actual summaries (in the order they came) with the expected
/// entries as multisets: `None` when every expected entry has its own
/// actual event and there is no other, else what differs.
pub fn compare(actual: &[String], expected: &[Vec<String>]) -> Option<String> {
    if matched(actual, expected) == expected.len() && actual.len() == expected.len() {
        return None;
    }
    let mut exp: Vec<String> = expected.iter().map(|alts| alts.join("\n    | ")).collect();
    exp.sort();
    let mut act = actual.to_vec();
    act.sort();
    Some(format!(
        "events differ\n expected:\n{}\n actual:\n{}\n actual, in the order printed:\n{}",
        show(&exp),
        show(&act),
        show(actual)
    ))
}

/// Summaries one a line, indented; `(none)` for none.
pub fn show(lines: &[String]) -> String {
    if lines.is_empty() {
        "  (none)".to_string()
    } else {
        lines
            .iter()
            .map(|s| format!("  {s}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
