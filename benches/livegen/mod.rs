//! The workload of the live benchmark: a generated store (one Maildir with
//! one folder, or many users with many folders each plus one hot folder),
//! a deterministic stream of filesystem operations on it (Postfix-style
//! deliveries, flag renames in `cur/`, expunges), a paced replay of that
//! stream, and the undo that puts the store back exactly as it was, so the
//! same stream can be replayed for every watcher.
//!
//! UIDs are predictable without a `dovecot-uidlist`: the pre-populated
//! message `i` of a folder has the seconds `1600000000 + i`, so a fresh
//! state numbers it `i + 1` (Dovecot's order: seconds first); deliveries to
//! a folder are numbered in the order they arrive there, after those.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Seconds of the first pre-populated message.
const OLD_SECS: u64 = 1_600_000_000;
/// Seconds of the first delivery.
const NEW_SECS: u64 = 1_700_000_000;

/// The flag states a message cycles through, as Maildir info suffixes.
const FLAGS: [&str; 4] = ["", "S", "FS", "F"];

/// What the watcher should report for the transition from state `s` to
/// `s + 1`: (event, flagNames or "" when the event has none).
pub fn flag_event(from_state: u8) -> (&'static str, &'static str) {
    match from_state {
        0 => ("MessageRead", ""),
        1 => ("FlagsSet", "\\Flagged"),
        2 => ("FlagsClear", "\\Seen"),
        _ => ("FlagsClear", "\\Flagged"),
    }
}

/// One folder of a generated store.
pub struct Folder {
    /// Index into [`Store::users`].
    pub user: usize,
    /// The IMAP mailbox name ("INBOX", "F3", …), as in the events' URLs.
    pub mailbox: String,
    /// The folder's directory (with `cur/ new/ tmp/`).
    pub dir: PathBuf,
    /// Pre-populated messages, all in `cur/` without flags.
    pub messages: usize,
}

/// A generated store: one Maildir with one folder (INBOX), or users
/// `uNNN@example.org` at `ROOT/example.org/uNNN/Maildir`, each with INBOX
/// and folders `.F1` … (Maildir++).
pub struct Store {
    pub root: PathBuf,
    /// User names as the watcher reports them.
    pub users: Vec<String>,
    pub folders: Vec<Folder>,
    /// Several users under `root`, watched with a store template.
    pub spread: bool,
    /// The folder with [`StoreConfig::hot`] messages (spread stores).
    pub hot: Option<usize>,
}

/// Sizing of a generated store.
pub struct StoreConfig {
    /// 0: the one-folder store (INBOX of one Maildir).
    pub users: usize,
    /// Folders per user, INBOX included.
    pub folders: usize,
    /// Messages of every folder but the hot one.
    pub messages: usize,
    /// Messages of the hot folder (INBOX of the first user; 0: none).
    pub hot: usize,
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in paths")
}

fn old_name(f: usize, i: usize, flags: &str) -> String {
    format!(
        "{}.M{}P{}.bench,S=300,W=310:2,{flags}",
        OLD_SECS + i as u64,
        (i * 7919) % 1_000_000,
        4242 + f
    )
}

fn new_name(j: usize) -> String {
    // Postfix's style: seconds, V<dev>I<inode>M<usec>, host.
    format!(
        "{}.V801I{:x}M{}.bench",
        NEW_SECS + j as u64,
        0x10000 + j,
        (j * 104_729) % 1_000_000
    )
}

impl Store {
    /// Creates the store under `dir`: `dir/Maildir` (one folder of
    /// `cfg.messages`) when `cfg.users` is 0, else the spread layout.
    pub fn create(dir: &Path, cfg: &StoreConfig) -> io::Result<Store> {
        let mut store = Store {
            root: dir.to_path_buf(),
            users: Vec::new(),
            folders: Vec::new(),
            spread: cfg.users > 0,
            hot: None,
        };
        if cfg.users == 0 {
            store.root = dir.join("Maildir");
            store.users.push("u".into());
            store.folders.push(Folder {
                user: 0,
                mailbox: "INBOX".into(),
                dir: store.root.clone(),
                messages: cfg.messages,
            });
        } else {
            for u in 0..cfg.users {
                let local = format!("u{u:03}");
                let md = dir.join("example.org").join(&local).join("Maildir");
                store.users.push(format!("{local}@example.org"));
                for k in 0..cfg.folders.max(1) {
                    let (mailbox, fdir) = if k == 0 {
                        ("INBOX".to_string(), md.clone())
                    } else {
                        (format!("F{k}"), md.join(format!(".F{k}")))
                    };
                    let messages = if u == 0 && k == 0 && cfg.hot > 0 {
                        store.hot = Some(store.folders.len());
                        cfg.hot
                    } else {
                        cfg.messages
                    };
                    store.folders.push(Folder {
                        user: u,
                        mailbox,
                        dir: fdir,
                        messages,
                    });
                }
            }
        }
        for (f, folder) in store.folders.iter().enumerate() {
            for sub in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(folder.dir.join(sub))?;
            }
            if folder.mailbox != "INBOX" {
                std::fs::File::create(folder.dir.join("maildirfolder"))?;
            }
            let cur = folder.dir.join("cur");
            for i in 0..folder.messages {
                std::fs::File::create(cur.join(old_name(f, i, "")))?;
            }
        }
        Ok(store)
    }

    /// The UID a fresh state gives pre-populated message `i` of a folder.
    pub fn uid_of(i: usize) -> u32 {
        i as u32 + 1
    }

    /// Messages over all folders.
    pub fn messages(&self) -> usize {
        self.folders.iter().map(|f| f.messages).sum()
    }

    /// The directory inotifywait watches (recursively).
    pub fn watch_root(&self) -> &Path {
        &self.root
    }

    /// Arguments of `maildir-events watch` that select this store.
    pub fn ours_args(&self) -> Vec<std::ffi::OsString> {
        if self.spread {
            vec![
                "--store".into(),
                self.root
                    .join("{domain}")
                    .join("{local}")
                    .join("Maildir")
                    .into_os_string(),
            ]
        } else {
            vec![
                "--user".into(),
                "u".into(),
                self.root.clone().into_os_string(),
            ]
        }
    }
}

/// What one operation is, for matching it to what the watchers print.
#[derive(Clone, Debug)]
pub enum Kind {
    /// The `j`-th delivery of the stream, the `k`-th to folder `f`.
    Deliver { f: usize, j: usize, k: usize },
    /// A flag rename of pre-populated message with `uid` of folder `f`,
    /// from flag state `from` (see [`flag_event`]).
    Flag { f: usize, uid: u32, from: u8 },
    /// The unlink of delivery `j` (in folder `f`).
    Expunge { f: usize, j: usize },
    /// The unlink of pre-populated message with `uid` of folder `f`.
    ExpungeOld { f: usize, uid: u32 },
}

impl Kind {
    pub fn folder(&self) -> usize {
        match *self {
            Kind::Deliver { f, .. }
            | Kind::Flag { f, .. }
            | Kind::Expunge { f, .. }
            | Kind::ExpungeOld { f, .. } => f,
        }
    }
}

/// One filesystem operation, with its paths ready for the syscalls.
pub struct Op {
    pub kind: Kind,
    /// Deliver: tmp path; Flag: old path; Expunge: the path.
    a: CString,
    /// Deliver: new/ path; Flag: new path.
    b: Option<CString>,
    /// The inotifywait line that completes this operation (`%w%f %e`).
    pub trigger_line: String,
    /// How many lines inotifywait prints for it (tmp/ included).
    pub inotify_lines: usize,
    /// Deliver: spaces added to the body, so its size tells deliveries apart.
    pad: usize,
}

/// Deliveries differ in size modulo this, so a MessageNew's `messageSize`
/// says which delivery it is (among this many in a row).
pub const SIZE_CLASSES: usize = 1024;

/// The operation stream and what undoes it.
pub struct Stream {
    pub ops: Vec<Op>,
    /// (current path, original path) of messages whose flags differ at the end.
    restore: Vec<(PathBuf, PathBuf)>,
    /// Delivered files still present at the end.
    remove: Vec<PathBuf>,
    /// Pre-populated files expunged by the stream.
    recreate: Vec<PathBuf>,
    body: Vec<u8>,
}

/// The mix of operations, in parts (deliver, flag, expunge).
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    pub deliver: u32,
    pub flag: u32,
    pub expunge: u32,
}

/// A small deterministic generator (splitmix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Generation settings.
pub struct StreamConfig {
    pub ops: usize,
    pub mix: Mix,
    /// A delivery is expunged no sooner than this many operations later, so
    /// the two never fall into one batch (where they would rightly be no
    /// message at all).
    pub expunge_lag: usize,
    /// Flag renames touch this many distinct pre-populated messages, spread
    /// over the folders (uniformly) and within each over the whole folder.
    pub working_set: usize,
    /// Percent of deliveries that go to an INBOX (spread stores; the rest
    /// go to a folder drawn uniformly from all).
    pub inbox_pct: u32,
    /// Every operation in this folder (the cost-per-folder runs).
    pub only: Option<usize>,
    pub body_bytes: usize,
    pub seed: u64,
}

/// The path as inotifywait prints it (`%w%f`) with the event.
fn line(dir: &Path, sub: &str, name: &str, ev: &str) -> String {
    format!("{}/{sub}/{name} {ev}", dir.display())
}

impl Stream {
    /// Generates the stream for a store in its pristine state.
    ///
    /// One-folder stores: expunges remove earlier deliveries only (as
    /// before). Spread stores: half the expunges remove an earlier
    /// delivery, the other half a pre-populated message outside the
    /// working set of any folder; users are drawn uniformly.
    pub fn generate(store: &Store, cfg: &StreamConfig) -> Stream {
        let mut rng = Rng::new(cfg.seed);
        let nf = store.folders.len();
        let draw_folder =
            |rng: &mut Rng| -> usize { cfg.only.unwrap_or_else(|| rng.below(nf as u64) as usize) };
        // The working set: distinct (folder, message) pairs.
        let pool: usize = match cfg.only {
            Some(f) => store.folders[f].messages,
            None => store.messages(),
        };
        let w = cfg.working_set.min(pool);
        let mut set: Vec<(usize, usize)> = Vec::with_capacity(w);
        let mut in_set = std::collections::HashSet::new();
        if w == pool {
            for (f, folder) in store.folders.iter().enumerate() {
                if cfg.only.is_none_or(|o| o == f) {
                    set.extend((0..folder.messages).map(|i| (f, i)));
                }
            }
            in_set.extend(set.iter().copied());
        } else {
            while set.len() < w {
                let f = draw_folder(&mut rng);
                let n = store.folders[f].messages;
                if n == 0 {
                    continue;
                }
                let i = rng.below(n as u64) as usize;
                if in_set.insert((f, i)) {
                    set.push((f, i));
                }
            }
        }
        let mut state = vec![0u8; set.len()];
        let mut expunged_old = std::collections::HashSet::new();
        let total = (cfg.mix.deliver + cfg.mix.flag + cfg.mix.expunge).max(1) as u64;
        let mut ops = Vec::with_capacity(cfg.ops);
        // Deliveries present: (j, folder, op index delivered at).
        let mut present: std::collections::VecDeque<(usize, usize, usize)> = Default::default();
        let mut deliveries = 0usize;
        let mut per_folder = vec![0usize; nf];
        for k in 0..cfg.ops {
            let r = rng.below(total) as u32;
            let mut choice = if r < cfg.mix.deliver {
                0
            } else if r < cfg.mix.deliver + cfg.mix.flag {
                1
            } else {
                2
            };
            let ripe = present
                .front()
                .is_some_and(|&(_, _, at)| at + cfg.expunge_lag <= k);
            let mut old = None;
            if choice == 2 && store.spread && (!ripe || rng.below(2) == 0) {
                // A pre-populated message outside the working set.
                for _ in 0..8 {
                    let f = draw_folder(&mut rng);
                    let n = store.folders[f].messages;
                    if n == 0 {
                        continue;
                    }
                    let i = rng.below(n as u64) as usize;
                    if !in_set.contains(&(f, i)) && expunged_old.insert((f, i)) {
                        old = Some((f, i));
                        break;
                    }
                }
            }
            // An expunge needs a delivery old enough (or a pre-populated
            // message); else a flag rename.
            if choice == 2 && old.is_none() && !ripe {
                choice = if set.is_empty() { 0 } else { 1 };
            }
            if choice == 1 && set.is_empty() {
                choice = 0;
            }
            match choice {
                0 => {
                    let j = deliveries;
                    deliveries += 1;
                    let f = match cfg.only {
                        Some(f) => f,
                        None if store.spread && rng.below(100) < cfg.inbox_pct as u64 => {
                            // INBOX of a user drawn uniformly.
                            let u = rng.below(store.users.len() as u64) as usize;
                            store
                                .folders
                                .iter()
                                .position(|x| x.user == u && x.mailbox == "INBOX")
                                .expect("every user has an INBOX")
                        }
                        None => draw_folder(&mut rng),
                    };
                    let md = &store.folders[f].dir;
                    let kf = per_folder[f];
                    per_folder[f] += 1;
                    let name = new_name(j);
                    ops.push(Op {
                        kind: Kind::Deliver { f, j, k: kf },
                        a: c(&md.join("tmp").join(&name)),
                        b: Some(c(&md.join("new").join(&name))),
                        trigger_line: line(md, "new", &name, "CREATE"),
                        inotify_lines: 3,
                        pad: j % SIZE_CLASSES,
                    });
                    present.push_back((j, f, k));
                }
                1 => {
                    let s = rng.below(set.len() as u64) as usize;
                    let (f, i) = set[s];
                    let md = &store.folders[f].dir;
                    let from = state[s];
                    let to = (from + 1) % 4;
                    state[s] = to;
                    let (old, new) = (
                        old_name(f, i, FLAGS[from as usize]),
                        old_name(f, i, FLAGS[to as usize]),
                    );
                    ops.push(Op {
                        kind: Kind::Flag {
                            f,
                            uid: Store::uid_of(i),
                            from,
                        },
                        a: c(&md.join("cur").join(&old)),
                        b: Some(c(&md.join("cur").join(&new))),
                        trigger_line: line(md, "cur", &new, "MOVED_TO"),
                        inotify_lines: 2,
                        pad: 0,
                    });
                }
                _ => {
                    if let Some((f, i)) = old {
                        let md = &store.folders[f].dir;
                        let name = old_name(f, i, "");
                        ops.push(Op {
                            kind: Kind::ExpungeOld {
                                f,
                                uid: Store::uid_of(i),
                            },
                            a: c(&md.join("cur").join(&name)),
                            b: None,
                            trigger_line: line(md, "cur", &name, "DELETE"),
                            inotify_lines: 1,
                            pad: 0,
                        });
                    } else {
                        let (j, f, _) = present.pop_front().expect("checked above");
                        let md = &store.folders[f].dir;
                        let name = new_name(j);
                        ops.push(Op {
                            kind: Kind::Expunge { f, j },
                            a: c(&md.join("new").join(&name)),
                            b: None,
                            trigger_line: line(md, "new", &name, "DELETE"),
                            inotify_lines: 1,
                            pad: 0,
                        });
                    }
                }
            }
        }
        let restore = set
            .iter()
            .zip(&state)
            .filter(|(_, s)| **s != 0)
            .map(|(&(f, i), &s)| {
                let cur = store.folders[f].dir.join("cur");
                (
                    cur.join(old_name(f, i, FLAGS[s as usize])),
                    cur.join(old_name(f, i, "")),
                )
            })
            .collect();
        let remove = present
            .iter()
            .map(|&(j, f, _)| store.folders[f].dir.join("new").join(new_name(j)))
            .collect();
        let recreate = expunged_old
            .iter()
            .map(|&(f, i)| store.folders[f].dir.join("cur").join(old_name(f, i, "")))
            .collect();
        let mut body = b"Return-Path: <bench@example.org>\nFrom: bench@example.org\nTo: u@example.org\nSubject: live bench\n\n".to_vec();
        while body.len() < cfg.body_bytes {
            body.extend_from_slice(b"All work and no play makes Jack a dull boy.\n");
        }
        // Without its last newline: the pad and a newline follow.
        body.truncate(cfg.body_bytes.max(2) - 1);
        Stream {
            ops,
            restore,
            remove,
            recreate,
            body,
        }
    }
    /// The virtual size (LF counted as CRLF, as in `messageSize`) of a
    /// delivery; `None` for other operations.
    pub fn vsize(&self, op: &Op) -> Option<u64> {
        matches!(op.kind, Kind::Deliver { .. }).then(|| {
            let lf = self.body.iter().filter(|&&b| b == b'\n').count() + 1;
            (self.body.len() + op.pad + 1 + lf) as u64
        })
    }

    /// Lines inotifywait prints for the whole stream.
    pub fn inotify_lines(&self) -> usize {
        self.ops.iter().map(|o| o.inotify_lines).sum()
    }

    /// Performs the operations, op `i` at `start + i / rate` (as fast as
    /// possible without a rate). Returns the instant each operation's
    /// event-producing syscall returned.
    pub fn replay(&self, rate: Option<f64>) -> io::Result<Vec<Instant>> {
        let mut times = Vec::with_capacity(self.ops.len());
        let start = Instant::now();
        for (i, op) in self.ops.iter().enumerate() {
            if let Some(rate) = rate {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                let now = Instant::now();
                if due > now + Duration::from_micros(30) {
                    std::thread::sleep(due - now);
                }
            }
            times.push(self.perform(op)?);
        }
        Ok(times)
    }

    fn perform(&self, op: &Op) -> io::Result<Instant> {
        // SAFETY: plain syscalls on NUL-terminated paths we own.
        unsafe {
            let check = |r: libc::c_int| {
                if r < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(r)
                }
            };
            match op.kind {
                Kind::Deliver { .. } => {
                    let b = op.b.as_ref().expect("deliveries have two paths");
                    let fd = check(libc::open(
                        op.a.as_ptr(),
                        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                        0o600,
                    ))?;
                    static SPACES: [u8; SIZE_CLASSES] = [b' '; SIZE_CLASSES];
                    let iov = [
                        libc::iovec {
                            iov_base: self.body.as_ptr() as *mut libc::c_void,
                            iov_len: self.body.len(),
                        },
                        libc::iovec {
                            iov_base: SPACES.as_ptr() as *mut libc::c_void,
                            iov_len: op.pad,
                        },
                        libc::iovec {
                            iov_base: b"\n".as_ptr() as *mut libc::c_void,
                            iov_len: 1,
                        },
                    ];
                    let w = libc::writev(fd, iov.as_ptr(), 3);
                    libc::close(fd);
                    if w < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    check(libc::link(op.a.as_ptr(), b.as_ptr()))?;
                    let t = Instant::now();
                    check(libc::unlink(op.a.as_ptr()))?;
                    Ok(t)
                }
                Kind::Flag { .. } => {
                    let b = op.b.as_ref().expect("renames have two paths");
                    check(libc::rename(op.a.as_ptr(), b.as_ptr()))?;
                    Ok(Instant::now())
                }
                Kind::Expunge { .. } | Kind::ExpungeOld { .. } => {
                    check(libc::unlink(op.a.as_ptr()))?;
                    Ok(Instant::now())
                }
            }
        }
    }

    /// Puts the store back as it was before the stream (call after the
    /// stream was replayed in full).
    pub fn undo(&self) -> io::Result<()> {
        for (now, was) in &self.restore {
            std::fs::rename(now, was)?;
        }
        for p in &self.remove {
            std::fs::remove_file(p)?;
        }
        for p in &self.recreate {
            std::fs::File::create(p)?;
        }
        Ok(())
    }
}
