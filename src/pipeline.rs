//! One cycle of the flow: scan → diff → events → commit → deliver.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Instant, SystemTime};

use tracing::{debug, info, warn};

use crate::config::{Config, SourceKind};
use crate::delivery::{self, Outlet};
use crate::diff::{self, Change, DiffInput};
use crate::enrich;
use crate::error::Error;
use crate::event::{self, EventContext};
use crate::outbox::Outbox;
use crate::quota::{self, QuotaState, Usage};
use crate::scan::{self, Contents};
use crate::snapshot::UserSnapshot;
use crate::store::Store;

/// What a scan did, for the log and the caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub users: u64,
    pub folders: u64,
    pub folders_listed: u64,
    pub events: u64,
}

/// One user of a source, as a scan needs it.
#[derive(Clone, Copy, Debug)]
pub struct UserRef<'a> {
    pub name: &'a str,
    pub root: &'a Path,
    /// RFC 5423 `tags` of the user's store.
    pub tags: &'a [String],
}

/// Runs one `scan`: delivers what an earlier run left in the outbox, then
/// diffs every user of every source against the snapshot, committing and
/// delivering user by user.
pub fn run_scan(
    config: &Config,
    store: &mut Store,
    outlets: &mut [Outlet],
) -> Result<Summary, Error> {
    let mut outbox = Outbox::open(store.path())?;
    // A sink that fails does not stop the scan: the events wait in the
    // outbox, the snapshot moves on, and the failure is the exit status.
    let mut failed: Option<Error> = None;
    deliver_unless_failed(&mut outbox, outlets, &mut failed)?;
    let mut summary = Summary::default();
    for source in &config.sources {
        let spec = source.spec();
        let first_run = !store.source_known(&spec)?;
        let users = match &source.kind {
            SourceKind::Maildir { path, user } => vec![(user.clone(), path.clone())],
            SourceKind::Template(t) => scan::discover(t),
        };
        if users.is_empty() {
            warn!(source = %spec, "no Maildir found");
        }
        for (user, root) in store.users_of_source(&spec)? {
            if !users.iter().any(|(u, _)| *u == user) {
                warn!(user, path = %root.display(), "Maildir of a known user is missing; keeping what was known");
            }
        }
        for (user, root) in users {
            let old = store.load_user(&user)?;
            // A user's first sight is a silent baseline only on the first run
            // over its source; users who appear later are new and reported.
            let silent = old.is_none() && first_run && !config.emit_existing;
            let who = UserRef {
                name: &user,
                root: &root,
                tags: &source.tags,
            };
            summary.events += scan_user(config, store, who, old, silent, &mut summary)?;
            store.set_user_source(&user, &spec)?;
            summary.users += 1;
            deliver_unless_failed(&mut outbox, outlets, &mut failed)?;
        }
        store.mark_source(&spec)?;
    }
    info!(
        users = summary.users,
        folders = summary.folders,
        listed = summary.folders_listed,
        events = summary.events,
        "scan done"
    );
    match failed {
        // Count again: events of later users joined those kept.
        Some(Error::Sink { error, .. }) => Err(Error::Sink {
            error,
            kept: outbox.total()?.events,
        }),
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

/// Delivers, unless a sink already failed in this run; a sink failure is
/// kept for the end, any other error ends the run.
fn deliver_unless_failed(
    outbox: &mut Outbox,
    outlets: &mut [Outlet],
    failed: &mut Option<Error>,
) -> Result<(), Error> {
    if failed.is_some() {
        return Ok(());
    }
    match delivery::deliver(outbox, outlets) {
        Ok(_) => Ok(()),
        Err(e @ Error::Sink { .. }) => {
            *failed = Some(e);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Scans, diffs and commits one user; returns the number of events.
/// `silent` records the snapshot without events (a first-run baseline).
pub fn scan_user(
    config: &Config,
    store: &mut Store,
    who: UserRef,
    old: Option<UserSnapshot>,
    silent: bool,
    summary: &mut Summary,
) -> Result<u64, Error> {
    let UserRef {
        name: user,
        root,
        tags,
    } = who;
    let mut old = old.unwrap_or_default();
    let mut listing = scan::scan_user(root, Some(&old), &config.scan);
    if !listing.exists {
        if !old.folders.is_empty() {
            warn!(user, path = %root.display(), "Maildir is missing; keeping what was known (an unmounted store is not a mass expunge)");
            return Ok(0);
        }
        debug!(user, path = %root.display(), "Maildir does not exist yet");
    }
    // Messages are needed for every folder that was listed, or is gone (it
    // may have been renamed).
    for f in old.folders.values_mut() {
        let needed = match listing.folders.get(&f.dir) {
            Some(l) => matches!(l.contents, Contents::Listed(_)),
            None => true,
        };
        if needed {
            store.load_messages(f)?;
        }
    }
    scan::confirm_gone(&mut listing, &old, &config.scan);
    let deadline = Instant::now() + config.uid_wait;
    let known = |dir: &[u8], base: &[u8], uidvalidity: u32| {
        old.folders.get(dir).is_some_and(|f| {
            f.uidvalidity == uidvalidity
                && f.messages
                    .as_ref()
                    .and_then(|m| m.get(base))
                    .is_some_and(|m| m.uid != 0)
        })
    };
    scan::wait_for_server(&mut listing, &known, deadline);
    summary.folders += listing.folders.len() as u64;
    summary.folders_listed += listing
        .folders
        .values()
        .filter(|f| matches!(f.contents, Contents::Listed(_)))
        .count() as u64;

    // Only folders whose messages were not loaded need the database to
    // tell a copy from a delivery; a new user has none.
    let unloaded = old.folders.values().any(|f| f.messages.is_none());
    let lookup_error = std::cell::Cell::new(None);
    let elsewhere = |dir: &[u8], base: &[u8]| {
        unloaded
            && match store.base_elsewhere(user, dir, base) {
                Ok(b) => b,
                Err(e) => {
                    lookup_error.set(Some(e));
                    false
                }
            }
    };
    let now = now_secs();
    let expired = |folder: &str, base: &[u8]| {
        crate::config::expires(&config.expire, now as u64, folder, base)
    };
    let input = DiffInput {
        own_uidvalidity: now,
        hier_sep: config.scan.hier_sep,
        elsewhere: &elsewhere,
        expired: &expired,
        silent,
    };
    let mut diff = diff::diff_user(&old, &listing, &input);
    if listing.exists {
        // Folder totals after the diff: the old rows, less the gone ones,
        // with the updated ones replaced.
        let mut totals: HashMap<i64, (String, u64, u32)> = old
            .folders
            .values()
            .map(|f| (f.id, (f.name.clone(), f.bytes, f.count)))
            .collect();
        for id in &diff.deleted {
            totals.remove(id);
        }
        let mut fresh = Vec::new();
        for u in &diff.updates {
            let t = (u.folder.name.clone(), u.folder.bytes, u.folder.count);
            if u.folder.id == 0 {
                fresh.push(t);
            } else {
                totals.insert(u.folder.id, t);
            }
        }
        let folders: Vec<(String, u64, u32)> = totals.into_values().chain(fresh).collect();
        if let Some((state, changes)) = check_quota(config, user, root, &folders, old.quota) {
            diff.quota = Some(state);
            diff.changes.extend(changes);
        }
    }
    if let Some(e) = lookup_error.take() {
        return Err(e.into());
    }
    if silent {
        diff.changes.clear();
    }
    enrich::arrivals(&mut diff, root, &config.content.options());
    let timestamp = event::timestamp_now();
    let ctx = EventContext {
        user,
        server: &config.server_name,
        timestamp: &timestamp,
        pid: std::process::id(),
        simple_flags: config.simple_flag_events,
        filter: &config.filter,
        tags,
    };
    let events = event::build(&diff, &ctx);
    let n = events.len() as u64;
    store.commit(user, root, &diff, events)?;
    Ok(n)
}

/// Evaluates a user's quota from folder totals (name, bytes, messages):
/// the new state and the quota events, or `None` when quota is off.
pub fn check_quota(
    config: &Config,
    user: &str,
    root: &Path,
    folders: &[(String, u64, u32)],
    prev: Option<QuotaState>,
) -> Option<(QuotaState, Vec<Change>)> {
    let rules = config.quota.as_ref()?;
    let limits = rules.limits_for(user, scan::read_maildirsize(root));
    let usage = folders
        .iter()
        .filter(|(name, _, _)| rules.counts(name))
        .fold(Usage::default(), |u, (_, bytes, count)| Usage {
            bytes: u.bytes + bytes,
            messages: u.messages + *count as u64,
        });
    let (state, events) = quota::evaluate(prev, limits, usage, rules.hysteresis);
    let changes = events
        .into_iter()
        .map(|event| Change::Quota {
            event,
            limits,
            usage,
        })
        .collect();
    Some((state, changes))
}

fn now_secs() -> u32 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1)
}
