//! Users, their watches and rescans: discovery under the sources, watching
//! a folder before reading it, rescanning a user with the `scan` code.

use super::*;

/// The line about unwatched folders is repeated at most this often when
/// their number changes.
const UNWATCHED_REPEAT: Duration = Duration::from_secs(15 * 60);

/// The `fs.inotify.max_user_watches` to suggest: what is refused now on top
/// of today's limit (other programs of the same user keep theirs), with a
/// quarter of what this store needs as room to grow, rounded up to 1024.
/// A folder takes two watches (`new/`, `cur/`), a user one more.
fn suggested_watch_limit(limit: Option<u64>, ours: usize, folders: usize, users: usize) -> u64 {
    let refused = (2 * folders + users) as u64;
    let needed = ours as u64 + refused;
    let base = limit.unwrap_or(needed).max(ours as u64);
    (base + refused + needed / 4).div_ceil(1024) * 1024
}

impl Daemon<'_> {
    /// Finds the users of a source, watches what is new, catches them up.
    pub(super) fn discover(&mut self, s: usize) -> Result<(), Error> {
        let mut found = Vec::new();
        // Watch the parents first, then look again if a watch is new: a user
        // created between the listing and the watch is then still found.
        for _ in 0..3 {
            let parents;
            (found, parents) = match &self.config.sources[s].kind {
                SourceKind::Maildir { path, user } => {
                    // Until the Maildir exists, watch its nearest existing parent.
                    let parent = (!path.is_dir())
                        .then(|| {
                            path.ancestors()
                                .skip(1)
                                .find(|p| p.is_dir())
                                .map(Path::to_path_buf)
                        })
                        .flatten();
                    (
                        vec![(user.clone(), path.clone())],
                        parent.into_iter().collect(),
                    )
                }
                SourceKind::Template(t) => scan::discover_with_dirs(t),
            };
            let source = &self.config.sources[s];
            found.retain(|(u, _)| source.owns(u));
            let Some(w) = self.watcher.as_mut() else {
                break;
            };
            let mut added = false;
            for p in parents {
                let target = Target {
                    owner: s,
                    dir: Vec::new(),
                    kind: Kind::Parent,
                };
                match w.add(&p, target) {
                    Ok(new) => added |= new,
                    Err(e) if e.is_not_found() => added = true,
                    Err(e) => warn!("{e}"),
                }
            }
            if !added {
                break;
            }
        }
        for (user, root) in found {
            let u = match self.by_name.get(&user) {
                Some(&u) => {
                    if self.users[u].root != root
                        || (self.opts.poll.is_none() && !self.is_watched(u))
                    {
                        self.users[u].root = root;
                    } else {
                        continue;
                    }
                    u
                }
                None => {
                    self.users.push(User {
                        name: user.clone(),
                        root,
                        source: s,
                        folders: BTreeMap::new(),
                        quota: None,
                    });
                    self.by_name.insert(user, self.users.len() - 1);
                    self.users.len() - 1
                }
            };
            if !self.users[u].root.is_dir() {
                continue;
            }
            self.rescan_user(u, false)?;
        }
        Ok(())
    }

    pub(super) fn is_watched(&self, u: usize) -> bool {
        self.users[u].folders.contains_key(b"".as_slice())
    }

    /// Rescans one user with the `scan` code, then makes the watches match
    /// the folders found; a folder watched for the first time is read once
    /// more, as files may have come before its watch.
    pub(super) fn rescan_user(&mut self, u: usize, full: bool) -> Result<(), Error> {
        let started = Instant::now();
        self.metrics.rescans.fetch_add(1, Ordering::Relaxed);
        let result = self.rescan_user_now(u, full);
        self.metrics
            .rescan_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        result
    }

    pub(super) fn rescan_user_now(&mut self, u: usize, full: bool) -> Result<(), Error> {
        self.deferred.retain(|k, _| k.0 != u);
        let mut refused = BTreeSet::new();
        for round in 0..4 {
            refused.clear();
            if self.watcher.is_some() {
                self.watch_root(u, &mut refused);
            }
            let name = self.users[u].name.clone();
            let root = self.users[u].root.clone();
            let old = self.store.load_user(&name)?;
            if round == 0
                && self.watcher.is_some()
                && let Some(o) = &old
                && self.users[u].folders.is_empty()
            {
                // At start, watch the folders the state knows before they
                // are read, so only folders new since then need a second
                // reading (it doubled the start of a large store).
                self.users[u].folders = o.folders.clone();
                self.watch_folders(u, &mut refused);
            }
            let silent =
                old.is_none() && self.first_run[self.users[u].source] && !self.config.emit_existing;
            let full_config;
            let config = if full && !self.config.scan.full {
                let mut c = self.config.clone();
                c.scan.full = true;
                full_config = c;
                &full_config
            } else {
                self.config
            };
            let mut summary = Summary::default();
            let tags = self.config.sources[self.users[u].source].tags.clone();
            let who = pipeline::UserRef {
                name: &name,
                root: &root,
                tags: &tags,
            };
            self.events += pipeline::scan_user(config, self.store, who, old, silent, &mut summary)?;
            // Hand the sinks this user's events now: a catch-up over many
            // users never holds them all in memory.
            self.feed_committed();
            let snap = self.store.load_user(&name)?.unwrap_or_default();
            self.users[u].folders = snap.folders;
            self.users[u].quota = snap.quota;
            if self.watcher.is_none() || !self.watch_folders(u, &mut refused) || round == 3 {
                break;
            }
            debug!(user = name, "new folders watched; reading them again");
        }
        self.note_unwatched(u, refused);
        Ok(())
    }

    /// Records which of a user's folders have no watch because the kernel's
    /// limit is reached; they are read every `poll_unwatched` instead.
    fn note_unwatched(&mut self, u: usize, refused: BTreeSet<Vec<u8>>) {
        if refused.is_empty() {
            self.unwatched.remove(&u);
        } else {
            self.unwatched.insert(u, refused);
            self.next_poll
                .get_or_insert_with(|| Instant::now() + self.opts.poll_unwatched);
        }
        if self.unwatched.is_empty() {
            self.next_poll = None;
        }
    }

    /// How many folders are polled because they have no watch.
    pub(super) fn polled_folders(&self) -> usize {
        self.unwatched.values().map(BTreeSet::len).sum()
    }

    /// Reads the users with unwatched folders (the scan code, so nothing
    /// is missed), and tries their watches again: once the limit is
    /// raised, or watches are freed, they are watched live again.
    pub(super) fn poll_unwatched(&mut self) -> Result<(), Error> {
        let users: Vec<usize> = self.unwatched.keys().copied().collect();
        for u in users {
            self.rescan_user(u, false)?;
        }
        self.next_poll =
            (!self.unwatched.is_empty()).then(|| Instant::now() + self.opts.poll_unwatched);
        self.say_unwatched();
        Ok(())
    }

    /// Tells the admin, in one line, how many folders are not watched and
    /// which sysctl to raise to what, for this store: at start, and again
    /// when the number changed (at most every 15 minutes); and once when
    /// every folder is watched again.
    pub(super) fn say_unwatched(&mut self) {
        let folders = self.polled_folders();
        match self.unwatched_said {
            None if folders == 0 => return,
            Some((_, said)) if said == folders => return,
            Some((at, said)) if folders > 0 && said > 0 && at.elapsed() < UNWATCHED_REPEAT => {
                return;
            }
            _ => {}
        }
        self.unwatched_said = Some((Instant::now(), folders));
        if folders == 0 {
            info!("every folder has an inotify watch again; polling stopped");
            return;
        }
        let watches = self.watcher.as_ref().map_or(0, Watcher::len);
        let limit = watcher::watch_limit();
        let wanted = suggested_watch_limit(limit, watches, folders, self.unwatched.len());
        warn!(
            "{folders} folders of {} users have no inotify watch: the kernel's limit \
             (fs.inotify.max_user_watches = {}) is reached, {watches} watches are ours. \
             They are read every {:.1} s until a watch can be added. For this store raise \
             it: sysctl -w fs.inotify.max_user_watches={wanted} (and set it in /etc/sysctl.d/)",
            self.unwatched.len(),
            limit.map_or_else(|| "unknown".to_string(), |l| l.to_string()),
            self.opts.poll_unwatched.as_secs_f64(),
        );
    }

    /// Watches a user's root (and its `new/`/`cur/`) before it is listed;
    /// INBOX (`""`) goes into `refused` when the watch limit is reached.
    pub(super) fn watch_root(&mut self, u: usize, refused: &mut BTreeSet<Vec<u8>>) {
        let root = self.users[u].root.clone();
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        let target = |kind| Target {
            owner: u,
            dir: Vec::new(),
            kind,
        };
        for (path, kind) in [
            (root.clone(), Kind::Root),
            (root.join("new"), Kind::Messages { in_new: true }),
            (root.join("cur"), Kind::Messages { in_new: false }),
        ] {
            match w.add(&path, target(kind)) {
                Ok(_) => {}
                Err(e) if e.is_not_found() => debug!("{e}"),
                Err(e) if e.is_limit() => {
                    debug!("{e}");
                    refused.insert(Vec::new());
                }
                Err(e) => warn!("{e}"),
            }
        }
    }

    /// Makes the watches match the user's folders; true when a folder got
    /// its first watch. Folders the watch limit refused go into `refused`.
    pub(super) fn watch_folders(&mut self, u: usize, refused: &mut BTreeSet<Vec<u8>>) -> bool {
        let root = self.users[u].root.clone();
        let dirs: BTreeSet<Vec<u8>> = self.users[u].folders.keys().cloned().collect();
        let Some(w) = self.watcher.as_mut() else {
            return false;
        };
        let mut added = false;
        for dir in &dirs {
            let path = folder_path(&root, dir);
            for (sub, in_new) in [("new", true), ("cur", false)] {
                let target = Target {
                    owner: u,
                    dir: dir.clone(),
                    kind: Kind::Messages { in_new },
                };
                match w.add(&path.join(sub), target) {
                    Ok(new) => added |= new && !dir.is_empty(),
                    Err(e) if e.is_not_found() => {
                        // Made by hand, the folder may get its new/ and
                        // cur/ a moment later: watch for them.
                        debug!("{e}");
                        let target = Target {
                            owner: u,
                            dir: dir.clone(),
                            kind: Kind::FolderDir,
                        };
                        if let Err(e) = w.add(&path, target) {
                            debug!("{e}");
                        }
                    }
                    // Polled until a watch can be added; the admin is told
                    // once for all such folders.
                    Err(e) if e.is_limit() => {
                        debug!("{e}");
                        refused.insert(dir.clone());
                    }
                    // Changes there are found by the periodic rescan only.
                    Err(e) => warn!("{e}"),
                }
            }
        }
        // In a Courier-IMAP store, each folder's directory too: Courier
        // replaces a folder's `courierimapuiddb` there (with a new
        // UIDVALIDITY after a RENAME) without touching new/ or cur/.
        let courier = self.users[u]
            .folders
            .get(b"".as_slice())
            .is_some_and(|f| f.uid_source == UidSource::Courier);
        for dir in dirs.iter().filter(|d| courier && !d.is_empty()) {
            let target = Target {
                owner: u,
                dir: dir.clone(),
                kind: Kind::FolderDir,
            };
            match w.add(&folder_path(&root, dir), target) {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) if e.is_limit() => {
                    debug!("{e}");
                    refused.insert(dir.clone());
                }
                Err(e) => warn!("{e}"),
            }
        }
        // Courier-IMAP's keywords, where a folder of a Courier store has
        // them (a Dovecot store has none: no failed watch per folder).
        for dir in dirs.iter().filter(|_| courier) {
            let path = folder_path(&root, dir).join("courierimapkeywords");
            let target = Target {
                owner: u,
                dir: dir.clone(),
                kind: Kind::Keywords,
            };
            match w.add(&path, target) {
                Ok(new) => added |= new,
                Err(e) if e.is_not_found() => {}
                Err(e) if e.is_limit() => {
                    debug!("{e}");
                    refused.insert(dir.clone());
                }
                Err(e) => warn!("{e}"),
            }
        }
        w.retain_owned(u, |t| {
            !matches!(
                t.kind,
                Kind::Messages { .. } | Kind::FolderDir | Kind::Keywords
            ) || dirs.contains(&t.dir)
        });
        added
    }

    pub(super) fn rescan_all(&mut self) -> Result<(), Error> {
        self.rescan_all_due = false;
        self.last_rescan_all = Some(Instant::now());
        for s in 0..self.config.sources.len() {
            self.discover(s)?;
        }
        for u in 0..self.users.len() {
            self.rescan_user(u, false)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::suggested_watch_limit;

    #[test]
    fn suggested_limit_covers_what_was_refused_with_room() {
        // (limit, ours, refused folders, users) → suggestion
        let cases = [
            (Some(8192), 8000, 1000, 100, 13312),
            (Some(192_540), 192_000, 13_000, 1_000, 274_432),
            (None, 500, 10, 1, 1024),
            // A limit lower than what we hold (lowered meanwhile).
            (Some(100), 1_000, 10, 1, 2048),
        ];
        for (limit, ours, folders, users, want) in cases {
            let got = suggested_watch_limit(limit, ours, folders, users);
            assert_eq!(got, want, "{limit:?} {ours} {folders} {users}");
            assert!(got >= limit.unwrap_or(0) + (2 * folders + users) as u64);
            assert_eq!(got % 1024, 0);
        }
    }
}
