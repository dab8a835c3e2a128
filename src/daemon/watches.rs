//! Users, their watches and rescans: discovery under the sources, watching
//! a folder before reading it, rescanning a user with the `scan` code.

use super::*;

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
        for round in 0..4 {
            if self.watcher.is_some() {
                self.watch_root(u);
            }
            let name = self.users[u].name.clone();
            let root = self.users[u].root.clone();
            let old = self.store.load_user(&name)?;
            let silent =
                old.is_none() && self.first_run[self.users[u].source] && !self.config.emit_existing;
            let mut config = self.config.clone();
            config.scan.full |= full;
            let mut summary = Summary::default();
            let tags = self.config.sources[self.users[u].source].tags.clone();
            let who = pipeline::UserRef {
                name: &name,
                root: &root,
                tags: &tags,
            };
            self.events +=
                pipeline::scan_user(&config, self.store, who, old, silent, &mut summary)?;
            // Hand the sinks this user's events now: a catch-up over many
            // users never holds them all in memory.
            self.feed_committed();
            let snap = self.store.load_user(&name)?.unwrap_or_default();
            self.users[u].folders = snap.folders;
            self.users[u].quota = snap.quota;
            if self.watcher.is_none() || !self.watch_folders(u) || round == 3 {
                break;
            }
            debug!(user = name, "new folders watched; reading them again");
        }
        Ok(())
    }

    /// Watches a user's root (and its `new/`/`cur/`) before it is listed.
    pub(super) fn watch_root(&mut self, u: usize) {
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
                Err(e) => warn!("{e}"),
            }
        }
    }

    /// Makes the watches match the user's folders; true when a folder got
    /// its first watch.
    pub(super) fn watch_folders(&mut self, u: usize) -> bool {
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
            if let Err(e) = w.add(&folder_path(&root, dir), target)
                && !e.is_not_found()
            {
                warn!("{e}");
            }
        }
        // Courier-IMAP's keywords, where a folder has them.
        for dir in &dirs {
            let path = folder_path(&root, dir).join("courierimapkeywords");
            let target = Target {
                owner: u,
                dir: dir.clone(),
                kind: Kind::Keywords,
            };
            match w.add(&path, target) {
                Ok(new) => added |= new,
                Err(e) if e.is_not_found() => {}
                Err(e) => warn!("{e}"),
            }
        }
        w.retain(|t| {
            t.owner != u
                || !matches!(
                    t.kind,
                    Kind::Messages { .. } | Kind::FolderDir | Kind::Keywords
                )
                || dirs.contains(&t.dir)
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
