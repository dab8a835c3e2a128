//! The listing half of a scan: reads every user's Maildir and snapshot and
//! hands the users, in order, to the writer thread of
//! [`pipeline`](super::pipeline), which diffs and commits them.
//!
//! Listing is most of a cold scan's work (the directories, the UID lists,
//! the names), so it runs on two threads: the calling thread lists every
//! other chunk of users and a second lister the chunks between, each
//! through its own read-only connection to the state; the calling thread
//! forwards the second lister's chunks in turn, so the writer still
//! receives users in the order they were found.

use std::collections::HashSet;
use std::path::PathBuf;

use crossbeam_channel::Sender;
use tracing::warn;

use crate::config::{Config, Source, SourceKind};
use crate::error::Error;
use crate::scan;
use crate::state::store::SnapshotReader;

use super::pipeline::{Listed, Summary, UserRef, list_user};

/// Hand-overs the lister may be ahead of the writer.
pub(super) const QUEUE: usize = 4;
/// Users are handed over when this many are held, or when what they hold
/// weighs this much (listed messages, at least 1 per user): the writer
/// gets a busy user at once and idle ones by the dozen (waking it for each
/// unchanged user, listed in about 10 µs, cost more than the user), and a
/// hand-over holds at most a few thousand listed messages besides a huge
/// user.
const HANDOVER_USERS: usize = 64;
const HANDOVER_WEIGHT: usize = 4096;
/// Users per chunk of the two listers: small enough that both stay busy
/// until the end of a source, large enough that handing chunks back and
/// forth costs nothing next to listing them.
const CHUNK_MAX: usize = 32;

/// What the lister hands the writer.
pub(super) enum Job<'a> {
    /// Users to diff and commit, in order.
    Users(Vec<ListedUser<'a>>),
    /// A source's first run is over.
    MarkSource(String),
    /// Everything before is committed: answer what the store knows of a
    /// source (whether it had its first run, and its users).
    Source(String, Sender<Result<SourceState, Error>>),
}

pub(super) type SourceState = (bool, Vec<(String, PathBuf)>);

/// A listed user on its way to the writer.
pub(super) struct ListedUser<'a> {
    pub user: String,
    pub root: PathBuf,
    pub tags: &'a [String],
    /// `None`: its Maildir is missing; nothing is written.
    pub listed: Option<Listed>,
    pub silent: bool,
    pub source: String,
}

/// What one source's users are listed with.
struct Lister<'a> {
    config: &'a Config,
    source: &'a Source,
    spec: String,
    first_run: bool,
}

impl<'a> Lister<'a> {
    fn list_one(
        &self,
        reader: &SnapshotReader,
        (user, root): (String, PathBuf),
        summary: &mut Summary,
    ) -> Result<ListedUser<'a>, Error> {
        let old = reader.load_user(&user)?;
        // A user's first sight is a silent baseline only on the first run
        // over its source; users who appear later are new and reported.
        let silent = old.is_none() && self.first_run && !self.config.emit_existing;
        let who = UserRef {
            name: &user,
            root: &root,
            tags: &self.source.tags,
        };
        let listed = list_user(self.config, reader, who, old, summary)?;
        summary.users += 1;
        Ok(ListedUser {
            user,
            root,
            tags: &self.source.tags,
            listed,
            silent,
            source: self.spec.clone(),
        })
    }

    /// Lists a chunk of users, handing them to `emit` a few at a time;
    /// `Ok(false)` when `emit` refused (the writer is gone).
    fn list_chunk(
        &self,
        reader: &SnapshotReader,
        users: Vec<(String, PathBuf)>,
        summary: &mut Summary,
        progress: &dyn Fn(&Summary),
        emit: &mut dyn FnMut(Vec<ListedUser<'a>>) -> bool,
    ) -> Result<bool, Error> {
        let mut pending = Vec::new();
        let mut weight = 0;
        for u in users {
            let listed = self.list_one(reader, u, summary)?;
            progress(summary);
            weight += listed.listed.as_ref().map_or(1, Listed::weight);
            pending.push(listed);
            if (pending.len() >= HANDOVER_USERS || weight >= HANDOVER_WEIGHT)
                && !emit(std::mem::take(&mut pending))
            {
                return Ok(false);
            }
            if pending.is_empty() {
                weight = 0;
            }
        }
        Ok(pending.is_empty() || emit(pending))
    }
}

/// What the second lister sends back for a chunk.
enum Piece<'a> {
    Users(Vec<ListedUser<'a>>),
    /// The chunk is done; what it counted.
    End(Summary),
    Failed(Error),
}

/// Lists every user of every source, handing each to the writer in order.
/// Stops early (with `Ok`) when the writer is gone: its error tells why.
/// `second` is the second lister's connection (`None`: list on this
/// thread alone).
pub(super) fn list_all<'a>(
    config: &'a Config,
    reader: &SnapshotReader,
    mut second: Option<SnapshotReader>,
    jobs: &Sender<Job<'a>>,
    summary: &mut Summary,
    progress: &dyn Fn(&Summary),
) -> Result<(), Error> {
    // The store's answer about a source, once all before it is committed
    // (a user may belong to several sources).
    let ask = |spec: &str| -> Option<Result<SourceState, Error>> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        jobs.send(Job::Source(spec.to_string(), tx)).ok()?;
        rx.recv().ok()
    };
    for source in &config.sources {
        let spec = source.spec();
        let Some(state) = ask(&spec) else {
            return Ok(());
        };
        let (known_source, known_users) = state?;
        let mut users = match &source.kind {
            SourceKind::Maildir { path, user } => vec![(user.clone(), path.clone())],
            SourceKind::Template(t) => scan::discover(t),
        };
        if users.is_empty() {
            warn!(source = %spec, "no Maildir found");
        }
        users.retain(|(u, _)| source.owns(u));
        // A set: with 10,000 users a scan of the list per user was a
        // hundred million string compares on every run.
        let found: HashSet<&str> = users.iter().map(|(u, _)| u.as_str()).collect();
        for (user, root) in known_users {
            if !found.contains(user.as_str()) {
                warn!(user, path = %root.display(), "Maildir of a known user is missing; keeping what was known");
            }
        }
        let lister = Lister {
            config,
            source,
            spec: spec.clone(),
            first_run: !known_source,
        };
        for (i, segment) in segments(users).into_iter().enumerate() {
            if i > 0 {
                // The same user again: its first part must be committed
                // before its snapshot is read again.
                let Some(state) = ask(&spec) else {
                    return Ok(());
                };
                state?;
            }
            // Users committed so far may be read again below (a user of
            // several sources, or twice in one): every read must see them.
            reader.refresh()?;
            if let Some(r) = &second {
                r.refresh()?;
            }
            let go_on = list_segment(
                &lister,
                reader,
                &mut second,
                segment,
                jobs,
                summary,
                progress,
            )?;
            if !go_on {
                return Ok(());
            }
        }
        if jobs.send(Job::MarkSource(spec)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Cuts a source's users into runs in which no user comes twice (a
/// template can reach one user by two paths).
fn segments(users: Vec<(String, PathBuf)>) -> Vec<Vec<(String, PathBuf)>> {
    let mut out = vec![Vec::new()];
    let mut seen = HashSet::new();
    for (user, root) in users {
        if !seen.insert(user.clone()) {
            seen.clear();
            seen.insert(user.clone());
            out.push(Vec::new());
        }
        out.last_mut()
            .expect("one segment at least")
            .push((user, root));
    }
    out
}

/// Lists one segment of a source, on two threads when it has more than one
/// chunk and a second connection; `Ok(false)` when the writer is gone.
fn list_segment<'a>(
    lister: &Lister<'a>,
    reader: &SnapshotReader,
    second: &mut Option<SnapshotReader>,
    users: Vec<(String, PathBuf)>,
    jobs: &Sender<Job<'a>>,
    summary: &mut Summary,
    progress: &dyn Fn(&Summary),
) -> Result<bool, Error> {
    let mut emit = |users: Vec<ListedUser<'a>>| jobs.send(Job::Users(users)).is_ok();
    let size = (users.len() / 16).clamp(1, CHUNK_MAX);
    let chunks = chunked(users, size);
    // (Taken only when used: a source of one user keeps it for the next.)
    let Some(other) = second.take_if(|_| chunks.len() > 1) else {
        for chunk in chunks {
            if !lister.list_chunk(reader, chunk, summary, progress, &mut emit)? {
                return Ok(false);
            }
        }
        return Ok(true);
    };
    let (done_tx, done) = crossbeam_channel::bounded::<Piece>(1);
    let (mut mine, mut theirs) = (Vec::new(), Vec::new());
    for (i, chunk) in chunks.into_iter().enumerate() {
        if i % 2 == 0 {
            mine.push(chunk)
        } else {
            theirs.push(chunk)
        }
    }
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("scan-lister".into())
            .spawn_scoped(s, move || {
                for chunk in theirs {
                    let mut counted = Summary::default();
                    let mut send = |users| done_tx.send(Piece::Users(users)).is_ok();
                    let end =
                        match lister.list_chunk(&other, chunk, &mut counted, &|_| {}, &mut send) {
                            Ok(true) => Piece::End(counted),
                            Ok(false) => break,
                            Err(e) => Piece::Failed(e),
                        };
                    let failed = matches!(end, Piece::Failed(_));
                    if done_tx.send(end).is_err() || failed {
                        break;
                    }
                }
                other
            })
            .expect("cannot start a thread");
        let result = forward(lister, reader, mine, &done, summary, progress, &mut emit);
        // Unblocks the second lister if this one stopped early.
        drop(done);
        match worker.join() {
            Ok(other) => *second = Some(other),
            Err(panic) => std::panic::resume_unwind(panic),
        }
        result
    })
}

/// The calling thread's half of [`list_segment`]: lists its own chunks and,
/// after each, forwards the second lister's next one.
fn forward<'a>(
    lister: &Lister<'a>,
    reader: &SnapshotReader,
    mine: Vec<Vec<(String, PathBuf)>>,
    done: &crossbeam_channel::Receiver<Piece<'a>>,
    summary: &mut Summary,
    progress: &dyn Fn(&Summary),
    emit: &mut dyn FnMut(Vec<ListedUser<'a>>) -> bool,
) -> Result<bool, Error> {
    for chunk in mine {
        if !lister.list_chunk(reader, chunk, summary, progress, emit)? {
            return Ok(false);
        }
        // The second lister's chunk that follows, if any: pieces until its
        // end, or until it has nothing more (the channel closes).
        loop {
            match done.recv() {
                Ok(Piece::Users(users)) => {
                    if !emit(users) {
                        return Ok(false);
                    }
                }
                Ok(Piece::End(counted)) => {
                    summary.add(&counted);
                    progress(summary);
                    break;
                }
                Ok(Piece::Failed(e)) => return Err(e),
                Err(_) => break,
            }
        }
    }
    Ok(true)
}

/// `items` in runs of `size` (the last one shorter).
fn chunked<T>(items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let mut out = Vec::with_capacity(items.len().div_ceil(size.max(1)));
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        out.push(items.by_ref().take(size.max(1)).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(names: &[&str]) -> Vec<(String, PathBuf)> {
        names
            .iter()
            .map(|n| (n.to_string(), PathBuf::from(format!("/m/{n}"))))
            .collect()
    }

    fn names(segs: &[Vec<(String, PathBuf)>]) -> Vec<Vec<&str>> {
        segs.iter()
            .map(|s| s.iter().map(|(u, _)| u.as_str()).collect())
            .collect()
    }

    #[test]
    fn segments_cut_before_a_user_seen_again() {
        let cases: &[(&[&str], &[&[&str]])] = &[
            (&[], &[&[]]),
            (&["a"], &[&["a"]]),
            (&["a", "b", "c"], &[&["a", "b", "c"]]),
            (&["a", "b", "a"], &[&["a", "b"], &["a"]]),
            (&["a", "a", "a"], &[&["a"], &["a"], &["a"]]),
            (&["a", "b", "b", "a"], &[&["a", "b"], &["b", "a"]]),
        ];
        for (input, want) in cases {
            let got = segments(users(input));
            let want: Vec<Vec<&str>> = want.iter().map(|s| s.to_vec()).collect();
            assert_eq!(names(&got), want, "{input:?}");
        }
    }

    #[test]
    fn chunks_keep_order_and_sizes() {
        let cases: &[(usize, usize, &[usize])] = &[
            (0, 3, &[]),
            (1, 3, &[1]),
            (3, 3, &[3]),
            (7, 3, &[3, 3, 1]),
            (5, 1, &[1, 1, 1, 1, 1]),
            (2, 0, &[1, 1]),
        ];
        for &(n, size, want) in cases {
            let got = chunked((0..n).collect::<Vec<_>>(), size);
            let lens: Vec<usize> = got.iter().map(Vec::len).collect();
            assert_eq!(lens, want, "{n} by {size}");
            assert_eq!(got.concat(), (0..n).collect::<Vec<_>>());
        }
    }
}
