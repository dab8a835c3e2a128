//! The inotify watch manager: which directories are watched, and a reader
//! thread that turns kernel events into signals for the daemon.
//!
//! The watcher only says *where* something may have changed, with the exact
//! names when the kernel gives them. It never decides what an event is. Its
//! reader thread never blocks on the daemon: when the channel is full, or
//! the kernel queue overflowed, it raises the `overflow` flag, which means
//! "rescan everything" — never silence.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use crate::service::queue::{Sender, TrySendError};
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tracing::{debug, error};

/// What a watched directory is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A Maildir root: folder directories and the root's control files.
    Root,
    /// A folder's `new/` (true) or `cur/` (false).
    Messages { in_new: bool },
    /// A folder directory whose `new/` or `cur/` does not exist yet (a
    /// folder being made by hand): watched until they appear.
    FolderDir,
    /// A folder's `courierimapkeywords/` (Courier-IMAP's keywords, which
    /// change no message file name).
    Keywords,
    /// A directory above Maildirs where users may appear (template levels,
    /// or the nearest existing parent of a missing Maildir).
    Parent,
}

/// The owner of a watch: a user's folder directory, or a source's parent
/// directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Index of the user (for `Parent`, of the source) in the daemon's table.
    pub owner: usize,
    /// Folder directory name ("" for INBOX); empty for `Parent`.
    pub dir: Vec<u8>,
    pub kind: Kind,
}

/// What the reader thread and the signal thread send the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signal {
    /// One inotify event.
    Fs {
        wd: i32,
        mask: EventMask,
        name: Option<Vec<u8>>,
    },
    /// The kernel queue overflowed: anything may have changed.
    Overflow,
    /// The reader failed; the daemon must rescan and may restart watching.
    Failed(String),
    /// SIGTERM or SIGINT: finish the batch in hand and stop.
    Stop,
    /// SIGHUP: reopen outputs.
    Reopen,
    /// A sink thread reported what it took (or that its output went away).
    Wake,
    /// Events read from the access logs, with the positions to commit.
    Access(Box<crate::access::source::Batch>),
}

/// Failure to add a watch, with what the admin should do about it.
#[derive(Debug)]
pub struct WatchError {
    path: std::path::PathBuf,
    message: String,
    errno: Option<i32>,
}

impl WatchError {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory is gone (a folder deleted meanwhile): not the admin's
    /// concern.
    pub fn is_not_found(&self) -> bool {
        self.errno == Some(libc::ENOENT)
    }

    /// The kernel's watch limit is reached: the folder is polled instead,
    /// and the admin told once for all folders, not once per folder.
    pub fn is_limit(&self) -> bool {
        self.errno == Some(libc::ENOSPC)
    }
}

/// The inotify watch limit that applies to us: the lower of the system's
/// `fs.inotify.max_user_watches` and our user namespace's
/// `user.max_inotify_watches` (a container may set a lower one).
pub fn watch_limit() -> Option<u64> {
    [
        "/proc/sys/fs/inotify/max_user_watches",
        "/proc/sys/user/max_inotify_watches",
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok()?.trim().parse::<u64>().ok())
    .min()
}

impl std::fmt::Display for WatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot watch {}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for WatchError {}

const MESSAGES_MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::DELETE)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR)
    .union(WatchMask::DONT_FOLLOW);

/// Roots and parents: directories and control files coming and going
/// (Dovecot replaces `subscriptions` and `dovecot-keywords` by rename),
/// and control files edited in place: a writer closing them is the moment
/// they are whole again (`IN_MODIFY` would show them half-written).
const DIR_MASK: WatchMask = MESSAGES_MASK.union(WatchMask::CLOSE_WRITE);

/// The set of watches and the thread reading them.
pub struct Watcher {
    watches: Watches,
    targets: HashMap<i32, (WatchDescriptor, Target)>,
    /// The watch descriptors of each owner, so making one user's watches
    /// match its folders does not walk every watch of the store (that was
    /// quadratic: 10,000 users × 220,000 watches at start).
    by_owner: HashMap<usize, HashSet<i32>>,
    /// Set by the reader when a signal could not be delivered.
    overflow: Arc<AtomicBool>,
}

impl Watcher {
    /// Starts the reader thread, which sends to `tx`.
    pub fn start(tx: Sender<Signal>) -> io::Result<Watcher> {
        let mut inotify = Inotify::init()?;
        let watches = inotify.watches();
        let overflow = Arc::new(AtomicBool::new(false));
        let flag = overflow.clone();
        thread::Builder::new()
            .name("inotify".into())
            .spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let events = match inotify.read_events_blocking(&mut buf) {
                        Ok(e) => e,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            error!("reading inotify events failed: {e}");
                            flag.store(true, Ordering::SeqCst);
                            let _ = tx.send(Signal::Failed(e.to_string()));
                            return;
                        }
                    };
                    for ev in events {
                        let sig = if ev.mask.contains(EventMask::Q_OVERFLOW) {
                            Signal::Overflow
                        } else {
                            Signal::Fs {
                                wd: ev.wd.get_watch_descriptor_id(),
                                mask: ev.mask,
                                name: ev.name.map(|n| n.as_bytes().to_vec()),
                            }
                        };
                        if !send(&tx, &flag, sig) {
                            return;
                        }
                    }
                }
            })?;
        Ok(Watcher {
            watches,
            targets: HashMap::new(),
            by_owner: HashMap::new(),
            overflow,
        })
    }

    /// Whether a signal was lost since the last [`Watcher::take_overflow`]
    /// (without clearing it).
    pub fn overflowed(&self) -> bool {
        self.overflow.load(Ordering::SeqCst)
    }

    /// Whether a signal was lost since the last call (and clears it).
    pub fn take_overflow(&self) -> bool {
        self.overflow.swap(false, Ordering::SeqCst)
    }

    /// Adds (or re-targets) a watch on `path`; `Ok(true)` when the watch is
    /// new. Adding the watch before reading the directory is what makes
    /// sure nothing created in between is missed.
    pub fn add(&mut self, path: &Path, target: Target) -> Result<bool, WatchError> {
        let mask = match target.kind {
            Kind::Messages { .. } | Kind::Keywords => MESSAGES_MASK,
            Kind::Root | Kind::Parent | Kind::FolderDir => DIR_MASK,
        };
        match self.watches.add(path, mask) {
            Ok(wd) => {
                let id = wd.get_watch_descriptor_id();
                let owner = target.owner;
                let old = self.targets.insert(id, (wd, target));
                if let Some((_, old)) = &old
                    && old.owner != owner
                {
                    self.unindex(old.owner, id);
                }
                self.by_owner.entry(owner).or_default().insert(id);
                Ok(old.is_none())
            }
            Err(e) => Err(WatchError {
                path: path.to_path_buf(),
                message: explain(&e, self.targets.len()),
                errno: e.raw_os_error(),
            }),
        }
    }

    /// The owner of a watch descriptor, if it is still ours.
    pub fn target(&self, wd: i32) -> Option<&Target> {
        self.targets.get(&wd).map(|(_, t)| t)
    }

    /// Forgets a watch the kernel dropped (`IN_IGNORED`).
    pub fn forget(&mut self, wd: i32) -> Option<Target> {
        let (_, t) = self.targets.remove(&wd)?;
        self.unindex(t.owner, wd);
        Some(t)
    }

    fn unindex(&mut self, owner: usize, wd: i32) {
        if let Some(set) = self.by_owner.get_mut(&owner) {
            set.remove(&wd);
            if set.is_empty() {
                self.by_owner.remove(&owner);
            }
        }
    }

    /// Removes every watch of `owner` whose target `keep` rejects.
    pub fn retain_owned(&mut self, owner: usize, mut keep: impl FnMut(&Target) -> bool) {
        let drop: Vec<i32> = self
            .by_owner
            .get(&owner)
            .into_iter()
            .flatten()
            .filter(|wd| self.targets.get(wd).is_some_and(|(_, t)| !keep(t)))
            .copied()
            .collect();
        for wd in drop {
            if let Some((w, t)) = self.targets.remove(&wd) {
                self.unindex(t.owner, wd);
                // The directory may be gone already; then the kernel has
                // dropped the watch itself.
                let _ = self.watches.remove(w);
            }
        }
    }

    /// How many watches are in place.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

/// Sends without blocking; a full channel sets the overflow flag. Returns
/// false when the daemon is gone.
fn send(tx: &Sender<Signal>, flag: &AtomicBool, sig: Signal) -> bool {
    match tx.try_send(sig) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            if !flag.swap(true, Ordering::SeqCst) {
                debug!("signal channel full; a full rescan will follow");
            }
            true
        }
        Err(TrySendError::Disconnected(_)) => false,
    }
}

/// Turns an `inotify_add_watch` errno into what the admin should do.
fn explain(e: &io::Error, watches: usize) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => format!(
            "the inotify watch limit is reached ({watches} watches in place): raise \
             fs.inotify.max_user_watches (sysctl -w fs.inotify.max_user_watches=N; each folder \
             needs 2 watches, each user 1 more), or use --poll"
        ),
        Some(libc::EMFILE) => {
            "too many inotify instances: raise fs.inotify.max_user_instances".to_string()
        }
        Some(libc::ENOENT) => "it does not exist (any more)".to_string(),
        Some(libc::EACCES) => "permission denied: run as the mail user or root".to_string(),
        _ => e.to_string(),
    }
}

/// The name of an event as an `OsStr`, for logs.
pub fn show(name: &Option<Vec<u8>>) -> String {
    name.as_deref()
        .map(|n| OsStr::from_bytes(n).to_string_lossy().into_owned())
        .unwrap_or_default()
}
