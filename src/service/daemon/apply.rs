//! Applying a folder's batch of exact names: waiting for Dovecot to name
//! new files and keywords, then `live::apply`, enrichment, quota, commit.

use super::*;

impl Daemon<'_> {
    /// Applies one folder's operations, or defers them while Dovecot has not
    /// yet numbered a new file or named a new keyword letter.
    pub(super) fn apply(
        &mut self,
        u: usize,
        dir: &[u8],
        mut ops: Vec<Op>,
        rescan: &mut BTreeSet<usize>,
    ) -> Result<(), Error> {
        let key = (u, dir.to_vec());
        if let Some(d) = self.deferred.get_mut(&key) {
            d.ops.append(&mut ops);
            return Ok(());
        }
        let Some(folder) = self.users[u].folders.get(dir).cloned() else {
            // A folder we have no row for yet: the rescan will find it.
            rescan.insert(u);
            return Ok(());
        };
        let Some(view) = self.view(&key, &folder, &ops, rescan)? else {
            return Ok(());
        };
        if view.missing {
            let deadline = Instant::now() + self.config.uid_wait;
            self.deferred.insert(key, Deferred { ops, deadline });
            return Ok(());
        }
        self.apply_now(u, dir, &folder, &ops, view, rescan)
    }

    /// What the folder's control files say now about the operations' files.
    /// `None` when the folder must be rescanned instead (Dovecot started
    /// numbering it, or changed its UIDVALIDITY).
    pub(super) fn view(
        &mut self,
        key: &FolderKey,
        folder: &FolderSnapshot,
        ops: &[Op],
        rescan: &mut BTreeSet<usize>,
    ) -> Result<Option<View>, Error> {
        let (u, dir) = (key.0, key.1.as_slice());
        let sep = self.config.scan.info_sep;
        let parsed: Vec<_> = ops
            .iter()
            .filter_map(|o| name::parse(&o.name, sep).map(|p| (o, p)))
            .collect();
        let states = self
            .store
            .load_states(folder.id, parsed.iter().map(|(_, p)| p.base))?;
        let path = folder_path(&self.users[u].root, dir);
        // Everything below is read through handles opened without
        // following a link; a folder that went (or became a link) is the
        // rescan's to sort out.
        let fdir = match storefs::folder(&self.users[u].root, dir) {
            Ok(d) => d,
            Err(e) => {
                debug!(path = %path.display(), "folder {e}; rescanning");
                rescan.insert(u);
                return Ok(None);
            }
        };
        let is_file = |name: &[u8]| {
            fdir.stat_at(name)
                .is_ok_and(|st| storefs::stat_kind(&st) == EntryKind::File)
        };
        let list_file: &[u8] = match folder.uid_source {
            UidSource::Courier => b"courierimapuiddb",
            _ => b"dovecot-uidlist",
        };
        let has_uidlist = folder.uid_source == UidSource::Dovecot
            || folder.uid_source == UidSource::Courier
            || is_file(b"dovecot-uidlist");
        let courier = folder.uid_source == UidSource::Courier;
        if folder.uid_source == UidSource::Own && (has_uidlist || is_file(b"courierimapuiddb")) {
            // A server has started numbering this folder: the rescan moves
            // every message to the server's UIDVALIDITY and UIDs.
            rescan.insert(u);
            return Ok(None);
        }
        if courier
            && folder.keyword_table.is_none()
            && fdir
                .stat_at(crate::courier::KEYWORD_DIR)
                .is_ok_and(|st| storefs::stat_kind(&st) == EntryKind::Dir)
        {
            // Courier made the folder's keyword directory: the rescan reads
            // it and watches it.
            rescan.insert(u);
            return Ok(None);
        }
        // A new name that is not a regular file (a link, a FIFO) is no
        // message, as in a scan: it is dropped before anything counts it.
        let mut odd = HashSet::new();
        let mut subs: [Option<Option<StoreDir>>; 2] = [None, None];
        for (op, p) in &parsed {
            if !op.present || states.contains_key(p.base) {
                continue;
            }
            let sub = subs[usize::from(!op.in_new)]
                .get_or_insert_with(|| fdir.dir(if op.in_new { b"new" } else { b"cur" }).ok());
            let Some(sub) = sub else { continue };
            let kind = match sub.stat_at(&op.name) {
                Ok(st) => storefs::stat_kind(&st),
                Err(Refused::Link) => EntryKind::Link,
                Err(_) => continue,
            };
            if kind != EntryKind::File && kind != EntryKind::Dir {
                let what = match kind {
                    EntryKind::Other(k) => k,
                    _ => "a symbolic link",
                };
                warn_path(
                    &storefs::show(&path.join(if op.in_new { "new" } else { "cur" }), &op.name),
                    "not-regular",
                    format!("{what}, not a message file: skipped, never opened"),
                );
                odd.insert(op.name.clone());
            }
        }
        let arrivals = parsed
            .iter()
            .any(|(o, p)| o.present && !states.contains_key(p.base));
        let mut server = None;
        let mut missing = false;
        if has_uidlist && (arrivals || folder.pending) {
            let tail = self.tails.entry(key.clone()).or_default();
            match tail.refresh_file(&fdir, list_file) {
                Ok(true) => {
                    let uids = tail.uids();
                    if uids.uidvalidity != folder.uidvalidity {
                        // A new UIDVALIDITY renumbers everything.
                        rescan.insert(u);
                        return Ok(None);
                    }
                    // Courier numbers a file when it saves it (APPEND,
                    // COPY: straight into cur/), but a delivery into new/
                    // only when a client next opens the folder: no wait
                    // for that.
                    let numbered_later = |o: &Op| courier && o.in_new;
                    missing = parsed.iter().any(|(o, p)| {
                        o.present
                            && !numbered_later(o)
                            && !states.contains_key(p.base)
                            && !uids.by_base.contains_key(p.base)
                    });
                    server = Some(uids.clone());
                }
                Ok(false) => {}
                Err(e) => {
                    warn!(path = %path.display(), "cannot read {}: {e}", String::from_utf8_lossy(list_file))
                }
            }
        }
        let letters = parsed
            .iter()
            .any(|(_, p)| p.flags.keyword_indexes().next().is_some())
            || states
                .values()
                .any(|s| s.flags.keyword_indexes().next().is_some());
        let keywords = match &folder.keyword_table {
            // Courier's keywords are not in file names: a message keeps
            // the ones it had (see `LiveFolder::keywords_apart`), named by
            // our table.
            Some(table) => Keywords::parse(table.as_bytes()),
            None if letters => scan::read_keywords(&fdir, &path),
            None => Keywords::default(),
        };
        // Dovecot names a new keyword 1-5 ms after its letter shows in a
        // file name: wait for the name as for a UID.
        if has_uidlist && folder.keyword_table.is_none() {
            missing |= parsed.iter().any(|(o, p)| {
                o.present
                    && p.flags
                        .keyword_indexes()
                        .any(|i| keywords.name(i).is_none())
            });
        }
        Ok(Some(View {
            states,
            server,
            keywords,
            missing,
            odd,
            dir: fdir,
        }))
    }

    pub(super) fn apply_now(
        &mut self,
        u: usize,
        dir: &[u8],
        folder: &FolderSnapshot,
        ops: &[Op],
        view: View,
        rescan: &mut BTreeSet<usize>,
    ) -> Result<(), Error> {
        let root = self.users[u].root.clone();
        let user = self.users[u].name.clone();
        let store = &*self.store;
        // A copy's base name is in another folder of the user: probed by
        // the folder ids held here (a user with one folder has no elsewhere
        // to copy from). A folder whose row is too new to have its id
        // known here is looked up by name instead.
        let others: Vec<i64> = self.users[u]
            .folders
            .values()
            .filter(|f| f.dir != dir)
            .map(|f| f.id)
            .collect();
        let by_name = others.contains(&0);
        let elsewhere = |base: &[u8]| {
            !others.is_empty()
                && if by_name {
                    store.base_elsewhere(&user, dir, base).unwrap_or(false)
                } else {
                    store.base_in(&others, base).unwrap_or(false)
                }
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let expired =
            |base: &[u8]| crate::config::expires(&self.config.expire, now, &folder.name, base);
        // Sizes from `stat` only for quota; new/ and cur/ are opened once,
        // when first needed.
        let stat = self.config.quota.is_some();
        let subs: [std::cell::OnceCell<Option<StoreDir>>; 2] = Default::default();
        let size_of = |in_new: bool, file: &[u8]| {
            if !stat {
                return None;
            }
            let sub = subs[usize::from(!in_new)]
                .get_or_init(|| view.dir.dir(if in_new { b"new" } else { b"cur" }).ok())
                .as_ref()?;
            sub.stat_at(file).ok().map(|m| m.st_size as u64)
        };
        let odd_ops;
        let ops = if view.odd.is_empty() {
            ops
        } else {
            odd_ops = ops
                .iter()
                .filter(|o| !view.odd.contains(&o.name))
                .cloned()
                .collect::<Vec<_>>();
            &odd_ops[..]
        };
        let applied = live::apply(
            &LiveFolder {
                folder,
                states: &view.states,
                server: view.server.as_ref(),
                keywords: &view.keywords,
                keywords_apart: folder.keyword_table.is_some(),
                info_sep: self.config.scan.info_sep,
                elsewhere: &elsewhere,
                expired: &expired,
                size_of: &size_of,
            },
            ops,
            0,
        );
        if applied.doubtful {
            debug!(user, folder = %applied.mailbox.name, "a removed file was not known; rescanning");
            rescan.insert(u);
        }
        let mut diff = UserDiff {
            mailboxes: vec![applied.mailbox],
            changes: applied.changes,
            updates: vec![applied.update],
            ..UserDiff::default()
        };
        enrich::arrivals(&mut diff, &root, &self.content);
        // Quota: the cached folder totals with this folder's new ones.
        if self.config.quota.is_some() {
            let changed = &diff.updates[0].folder;
            let folders: Vec<(String, u64, u32)> = self.users[u]
                .folders
                .values()
                .map(|f| if f.id == changed.id { changed } else { f })
                .map(|f| (f.name.clone(), f.bytes, f.count))
                .collect();
            if let Some((state, changes)) =
                pipeline::check_quota(self.config, &user, &root, &folders, self.users[u].quota)
            {
                diff.quota = Some(state);
                diff.changes.extend(changes);
                self.users[u].quota = Some(state);
            }
        }
        self.commit(u, diff)?;
        Ok(())
    }

    /// Re-evaluates a user's quota alone (its `maildirsize` was replaced).
    pub(super) fn check_quota(&mut self, u: usize) -> Result<(), Error> {
        let folders: Vec<(String, u64, u32)> = self.users[u]
            .folders
            .values()
            .map(|f| (f.name.clone(), f.bytes, f.count))
            .collect();
        let (user, root) = (self.users[u].name.clone(), self.users[u].root.clone());
        let Some((state, changes)) =
            pipeline::check_quota(self.config, &user, &root, &folders, self.users[u].quota)
        else {
            return Ok(());
        };
        if changes.is_empty() && Some(state) == self.users[u].quota {
            return Ok(());
        }
        self.users[u].quota = Some(state);
        let diff = UserDiff {
            changes,
            quota: Some(state),
            ..UserDiff::default()
        };
        self.commit(u, diff)
    }

    /// Commits a user's diff with its events and updates the folder cache.
    pub(super) fn commit(&mut self, u: usize, diff: UserDiff) -> Result<(), Error> {
        let timestamp = event::timestamp_now();
        let user = self.users[u].name.clone();
        let ctx = EventContext {
            user: &user,
            server: &self.config.server_name,
            timestamp: &timestamp,
            pid: std::process::id(),
            simple_flags: self.config.simple_flag_events,
            filter: &self.config.filter,
            tags: &self.config.sources[self.users[u].source].tags,
        };
        let events = event::build(&diff, &ctx);
        self.events += events.len() as u64;
        for e in &events {
            self.metrics.event(e.kind);
        }
        let root = self.users[u].root.clone();
        self.store.commit(&user, &root, &diff, events)?;
        for up in diff.updates {
            let mut f = up.folder;
            if f.id == 0 {
                // A new row; learn its id on the next rescan.
                continue;
            }
            f.messages = None;
            self.users[u].folders.insert(f.dir.clone(), f);
        }
        Ok(())
    }

    /// Applies deferred folders whose UIDs and keyword names have appeared,
    /// or whose wait is over (then as they are), or all when stopping.
    pub(super) fn retry_deferred(&mut self, all: bool) -> Result<(), Error> {
        let keys: Vec<FolderKey> = self.deferred.keys().cloned().collect();
        for key in keys {
            let Some(d) = self.deferred.get(&key) else {
                continue;
            };
            let expired = all || Instant::now() >= d.deadline;
            let ops = d.ops.clone();
            let Some(folder) = self.users[key.0].folders.get(&key.1).cloned() else {
                self.deferred.remove(&key);
                continue;
            };
            let mut rescan = BTreeSet::new();
            let view = self.view(&key, &folder, &ops, &mut rescan)?;
            match view {
                Some(v) if v.missing && !expired => continue,
                Some(v) => {
                    self.deferred.remove(&key);
                    self.apply_now(key.0, &key.1, &folder, &ops, v, &mut rescan)?;
                }
                None => {
                    self.deferred.remove(&key);
                }
            }
            for r in rescan {
                self.rescan_user(r, false)?;
            }
        }
        Ok(())
    }
}
