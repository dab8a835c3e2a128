//! A deterministic generator of Dovecot-style Maildir++ stores, and a helper
//! that applies random changes to one, for the benchmarks.
//!
//! Layout: `ROOT/<domain>/<local>/Maildir`, so a scan can use the template
//! `ROOT/{domain}/{local}/Maildir`. Each user's Maildir has INBOX at its root
//! and its other folders as `.Name` / `.Parent.Child` directories, like
//! Dovecot's default Maildir++ layout:
//!
//! - messages named `<secs>.M<usec>P<pid>.<host>,S=<n>,W=<n>:2,<flags>` in
//!   `cur/` with a realistic flag mix (mostly `S`, some `F`, `R`, `T`, rare
//!   `D`/`P`, keyword letters `a`/`b`), and a few of the newest messages in
//!   `new/` with no info part, as Dovecot's LDA leaves them;
//! - `dovecot-uidlist` (version 3, `3 V<uidvalidity> N<next> G<guid>`) in
//!   every folder, listing every message with increasing UIDs (with the odd
//!   gap, as after expunges);
//! - `dovecot-keywords` where keyword letters are used, `maildirfolder` in
//!   every folder but INBOX, and at the root `subscriptions` (version 2),
//!   `maildirsize` and `dovecot-uidvalidity`.
//!
//! Messages are spread unevenly: user totals vary, and within a user folder
//! sizes follow a Zipf law (INBOX biggest, a few big folders, many small).
//! Message files are empty by default (the scan never opens a file whose name
//! carries `W=`), so a million of them cost inodes, not data blocks.
//!
//! Everything derives from one seed with a private SplitMix64, so the same
//! configuration gives the same store, byte for byte, whatever the number of
//! writer threads.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// The sizing of a generated store.
#[derive(Clone, Debug)]
pub struct GenConfig {
    /// Number of users (Maildirs).
    pub users: usize,
    /// Number of folders over all users, INBOXes included.
    pub folders: usize,
    /// Number of messages over all users.
    pub messages: u64,
    pub seed: u64,
    /// Zipf exponent of folder sizes within a user: 0 is even, 1 is
    /// "INBOX holds a fifth of 100 folders' mail".
    pub skew: f64,
    /// Roughly which share of messages sits in `new/` without info.
    pub new_fraction: f64,
    /// Bytes written into each message file.
    pub body_bytes: usize,
    /// Writer threads.
    pub threads: usize,
}

impl Default for GenConfig {
    fn default() -> GenConfig {
        GenConfig {
            users: 100,
            folders: 10_000,
            messages: 1_000_000,
            seed: 42,
            skew: 1.0,
            new_fraction: 0.02,
            body_bytes: 0,
            threads: 2,
        }
    }
}

/// A generated store, with what the mutation helper needs to know of it.
#[derive(Clone, Debug)]
pub struct Store {
    pub root: PathBuf,
    pub users: Vec<User>,
    /// Messages on disk now.
    pub messages: u64,
    /// Files and directories created by the generator (below `root`).
    pub files: u64,
    pub dirs: u64,
    body_bytes: usize,
    /// Deliveries made by [`mutate`] so far, to keep new names unique.
    deliveries: u64,
}

#[derive(Clone, Debug)]
pub struct User {
    pub domain: String,
    pub local: String,
    pub folders: Vec<Folder>,
}

#[derive(Clone, Debug)]
pub struct Folder {
    /// Directory under the Maildir: empty for INBOX, else `.Name`.
    pub dir: String,
    /// Messages on disk now.
    pub messages: u64,
    pub uidvalidity: u32,
    /// The UID the next appended `dovecot-uidlist` record gets.
    pub next_uid: u32,
}

impl Store {
    /// The `--store` template that finds every user of this store.
    pub fn template(&self) -> String {
        format!("{}/{{domain}}/{{local}}/Maildir", self.root.display())
    }

    pub fn folder_count(&self) -> usize {
        self.users.iter().map(|u| u.folders.len()).sum()
    }

    /// Message counts of all folders, smallest first.
    pub fn folder_sizes(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .users
            .iter()
            .flat_map(|u| u.folders.iter().map(|f| f.messages))
            .collect();
        v.sort_unstable();
        v
    }
}

impl User {
    pub fn maildir(&self, root: &Path) -> PathBuf {
        root.join(&self.domain).join(&self.local).join("Maildir")
    }
}

impl Folder {
    pub fn path(&self, maildir: &Path) -> PathBuf {
        if self.dir.is_empty() {
            maildir.to_path_buf()
        } else {
            maildir.join(&self.dir)
        }
    }
}

/// SplitMix64: tiny, fast, good enough for test data, and ours (no crates).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// An independent stream for item `n` of a seed.
    pub fn stream(seed: u64, n: u64) -> Rng {
        let mut r = Rng(seed ^ n.wrapping_mul(0xD134_2543_DE82_EF95));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// Splits `total` in proportion to `weights`, exactly (largest remainders).
fn apportion(total: u64, weights: &[f64]) -> Vec<u64> {
    let sum: f64 = weights.iter().sum();
    if weights.is_empty() || sum <= 0.0 {
        return vec![0; weights.len()];
    }
    let ideal: Vec<f64> = weights.iter().map(|w| total as f64 * w / sum).collect();
    let mut out: Vec<u64> = ideal.iter().map(|x| x.floor() as u64).collect();
    let given: u64 = out.iter().sum();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        let (fa, fb) = (ideal[a] - ideal[a].floor(), ideal[b] - ideal[b].floor());
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    for &i in order
        .iter()
        .cycle()
        .take(total.saturating_sub(given) as usize)
    {
        out[i] += 1;
    }
    out
}

/// Folder directory names of a user with `n` folders (INBOX first, as "").
/// Every parent of a nested folder is itself a folder.
fn folder_dirs(n: usize) -> Vec<String> {
    const FIXED: [&str; 8] = [
        "Sent",
        "Drafts",
        "Trash",
        "Junk",
        "Archive",
        // "Entwürfe" in modified UTF-7, as Dovecot stores it.
        "Entw&APw-rfe",
        "Lists",
        "Projects",
    ];
    let mut dirs = vec![String::new()];
    dirs.extend(FIXED.iter().map(|s| format!(".{s}")));
    let mut k = 0usize;
    while dirs.len() < n {
        let i = k / 4;
        dirs.push(match k % 4 {
            0 => format!(".Archive.{}", 2000 + i),
            1 => format!(".Lists.list-{i:03}"),
            2 => format!(".Projects.proj-{i:03}"),
            _ => format!(".Projects.proj-{i:03}.Notes"),
        });
        k += 1;
    }
    dirs.truncate(n);
    dirs
}

/// The IMAP-ish sizes `S=` and `W=` of a message: mostly small, some
/// large, a few huge.
fn sizes(rng: &mut Rng) -> (u64, u64) {
    let s = match rng.below(100) {
        0..=69 => 1_000 + rng.below(9_000),
        70..=94 => 10_000 + rng.below(90_000),
        _ => 100_000 + rng.below(5_000_000),
    };
    (s, s + s / 38 + 1)
}

const HOSTS: [&str; 3] = ["mx1", "mx2", "imap1.example.net"];

/// The `2,` flag letters of a message in `cur/`, in ASCII order.
fn flags(rng: &mut Rng, recent: bool, draft: bool, junk: bool) -> String {
    let seen = rng.chance(if recent { 0.3 } else { 0.93 });
    let mut f = String::new();
    if draft {
        f.push('D');
    }
    if rng.chance(0.04) {
        f.push('F');
    }
    if rng.chance(0.002) {
        f.push('P');
    }
    if seen && rng.chance(0.10) {
        f.push('R');
    }
    if seen {
        f.push('S');
    }
    if rng.chance(0.005) {
        f.push('T');
    }
    let a = rng.chance(if junk { 0.9 } else { 0.01 });
    if a {
        f.push('a');
    }
    if !a && rng.chance(0.03) {
        f.push('b');
    }
    f
}

fn hex32(rng: &mut Rng) -> String {
    format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}

fn create_file(path: &Path, body: &[u8]) -> io::Result<()> {
    let mut f = fs::File::create(path)?;
    if !body.is_empty() {
        f.write_all(body)?;
    }
    Ok(())
}

/// Counts of what was written.
#[derive(Default)]
struct Written {
    files: u64,
    dirs: u64,
}

/// Writes one folder; returns the sum of `S=` and sets `next_uid`.
fn write_folder(
    maildir: &Path,
    folder: &mut Folder,
    rng: &mut Rng,
    cfg: &GenConfig,
    body: &[u8],
    out: &mut Written,
) -> io::Result<u64> {
    let path = folder.path(maildir);
    fs::create_dir_all(&path)?;
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir(path.join(sub))?;
    }
    out.dirs += if folder.dir.is_empty() { 3 } else { 4 };
    if !folder.dir.is_empty() {
        create_file(&path.join("maildirfolder"), b"")?;
        out.files += 1;
    }
    let (draft, junk) = (folder.dir == ".Drafts", folder.dir == ".Junk");
    let n = folder.messages;
    let t0 = u64::from(folder.uidvalidity);
    let gap = (1_760_000_000u64.saturating_sub(t0) / (n + 1)).max(1);
    let recent_from = n - ((n as f64 * cfg.new_fraction * 2.0).round() as u64).min(n);
    let mut records = String::with_capacity(n as usize * 64);
    let (mut secs, mut uid, mut total, mut keywords) = (t0, 0u64, 0u64, junk);
    let mut file = path.clone();
    for i in 0..n {
        secs += 1 + rng.below(2 * gap);
        let (usec, pid) = (rng.below(1_000_000), 1000 + rng.below(64_000));
        let host = HOSTS[rng.below(HOSTS.len() as u64) as usize];
        let (s, w) = sizes(rng);
        total += s;
        let base = format!("{secs}.M{usec}P{pid}.{host},S={s},W={w}");
        uid += 1 + if rng.below(8) == 0 { rng.below(4) } else { 0 };
        let _ = writeln!(records, "{uid} :{base}");
        let recent = i >= recent_from;
        file.clear();
        file.push(&path);
        if recent && rng.chance(0.5) {
            file.push("new");
            file.push(&base);
        } else {
            let f = flags(rng, recent, draft, junk);
            keywords |= f.contains(['a', 'b']);
            file.push("cur");
            file.push(format!("{base}:2,{f}"));
        }
        create_file(&file, body)?;
    }
    out.files += n;
    let next = uid + 1 + if rng.below(4) == 0 { rng.below(3) } else { 0 };
    folder.next_uid = next as u32;
    let header = format!("3 V{} N{next} G{}\n", folder.uidvalidity, hex32(rng));
    fs::write(path.join("dovecot-uidlist"), header + &records)?;
    out.files += 1;
    if keywords {
        fs::write(path.join("dovecot-keywords"), "0 $Junk\n1 $NonJunk\n")?;
        out.files += 1;
    }
    Ok(total)
}

/// Writes one user's Maildir.
fn write_user(
    root: &Path,
    user: &mut User,
    idx: usize,
    cfg: &GenConfig,
    out: &mut Written,
) -> io::Result<()> {
    let mut rng = Rng::stream(cfg.seed, idx as u64 + 1);
    let maildir = user.maildir(root);
    let body = vec![b'x'; cfg.body_bytes];
    let (mut bytes, mut count) = (0u64, 0u64);
    for folder in &mut user.folders {
        bytes += write_folder(&maildir, folder, &mut rng, cfg, &body, out)?;
        count += folder.messages;
    }
    let mut subs = String::from("V\t2\n\n");
    for f in user.folders.iter().skip(1) {
        if rng.chance(0.9) {
            let _ = writeln!(subs, "{}", f.dir[1..].replace('.', "\t"));
        }
    }
    fs::write(maildir.join("subscriptions"), subs)?;
    fs::write(
        maildir.join("maildirsize"),
        format!("10737418240S\n{bytes} {count}\n"),
    )?;
    let uv = user
        .folders
        .iter()
        .map(|f| f.uidvalidity)
        .max()
        .unwrap_or(1)
        + 1;
    fs::write(maildir.join("dovecot-uidvalidity"), format!("{uv:08x}"))?;
    create_file(&maildir.join(format!("dovecot-uidvalidity.{uv:08x}")), b"")?;
    out.files += 4;
    Ok(())
}

/// Generates a store under `root` (which must exist and be empty).
pub fn generate(root: &Path, cfg: &GenConfig) -> io::Result<Store> {
    let folders = cfg.folders.max(1);
    let users = cfg.users.clamp(1, folders);
    let domains = users.div_ceil(10);
    let mut rng = Rng::new(cfg.seed);
    let user_weights: Vec<f64> = (0..users).map(|_| 0.5 + rng.unit()).collect();
    let user_totals = apportion(cfg.messages, &user_weights);
    let mut all = Vec::with_capacity(users);
    for (i, &total) in user_totals.iter().enumerate() {
        let n = folders / users + usize::from(i < folders % users);
        // INBOX is the biggest; the other ranks are shuffled.
        let mut ranks: Vec<usize> = (1..n).collect();
        for j in (1..ranks.len()).rev() {
            ranks.swap(j, rng.below(j as u64 + 1) as usize);
        }
        ranks.insert(0, 0);
        let weights: Vec<f64> = ranks
            .iter()
            .map(|&r| 1.0 / ((r + 1) as f64).powf(cfg.skew))
            .collect();
        let counts = apportion(total, &weights);
        let folders = folder_dirs(n)
            .into_iter()
            .zip(counts)
            .map(|(dir, messages)| Folder {
                dir,
                messages,
                uidvalidity: 1_300_000_000 + rng.below(300_000_000) as u32,
                next_uid: 1,
            })
            .collect();
        all.push(User {
            domain: format!("d{:02}.example.org", i % domains),
            local: format!("user{i:04}"),
            folders,
        });
    }
    let threads = cfg.threads.max(1);
    let chunk = all.len().div_ceil(threads).max(1);
    let written: Vec<io::Result<Written>> = std::thread::scope(|s| {
        let handles: Vec<_> = all
            .chunks_mut(chunk)
            .enumerate()
            .map(|(c, users)| {
                s.spawn(move || {
                    let mut out = Written::default();
                    for (k, user) in users.iter_mut().enumerate() {
                        write_user(root, user, c * chunk + k, cfg, &mut out)?;
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread panicked"))
            .collect()
    });
    let mut store = Store {
        root: root.to_path_buf(),
        users: all,
        messages: cfg.messages,
        files: 0,
        dirs: 0,
        body_bytes: cfg.body_bytes,
        deliveries: 0,
    };
    for w in written {
        let w = w?;
        store.files += w.files;
        store.dirs += w.dirs;
    }
    // Domain and user directories, and each Maildir root.
    store.dirs += domains as u64 + 2 * users as u64;
    Ok(store)
}

/// What [`mutate`] did.
#[derive(Clone, Debug, Default)]
pub struct Mutations {
    /// Renames that change flags: in `cur/`, or `new/` → `cur/` with `S`.
    pub flag_changes: u64,
    /// Of those, moves from `new/` to `cur/`.
    pub moved_to_cur: u64,
    /// New files in `new/`, each with a record appended to `dovecot-uidlist`.
    pub deliveries: u64,
    /// Files removed (their `dovecot-uidlist` records stay, as Dovecot
    /// leaves them until its next rewrite).
    pub expunges: u64,
    /// Folders that got at least one change.
    pub folders_touched: u64,
    /// Messages in those folders afterwards: what a catch-up has to list.
    pub messages_in_touched: u64,
}

/// Applies `changes` random changes to the store: about 60 % flag renames,
/// 25 % deliveries, 15 % expunges. A change hits a folder with a
/// probability proportional to its size (plus one, so empty folders can
/// get mail), i.e. a uniformly chosen message. Deterministic for a given
/// store, `changes` and `seed`.
pub fn mutate(store: &mut Store, changes: u64, seed: u64) -> io::Result<Mutations> {
    let mut rng = Rng::new(seed ^ 0x6D75_7461_7465);
    let slots: Vec<(usize, usize)> = store
        .users
        .iter()
        .enumerate()
        .flat_map(|(u, user)| (0..user.folders.len()).map(move |f| (u, f)))
        .collect();
    let mut cumulative = Vec::with_capacity(slots.len());
    let mut acc = 0u64;
    for &(u, f) in &slots {
        acc += store.users[u].folders[f].messages + 1;
        cumulative.push(acc);
    }
    let mut per_slot: BTreeMap<usize, u64> = BTreeMap::new();
    for _ in 0..changes {
        let x = rng.below(acc);
        *per_slot
            .entry(cumulative.partition_point(|&c| c <= x))
            .or_default() += 1;
    }
    let body = vec![b'x'; store.body_bytes];
    let mut done = Mutations {
        folders_touched: per_slot.len() as u64,
        ..Mutations::default()
    };
    for (slot, k) in per_slot {
        let (u, f) = slots[slot];
        let maildir = store.users[u].maildir(&store.root);
        let folder = &mut store.users[u].folders[f];
        let path = folder.path(&maildir);
        let mut files: Vec<(bool, String)> = Vec::new();
        for (sub, in_new) in [("new", true), ("cur", false)] {
            for e in fs::read_dir(path.join(sub))? {
                let name = e?
                    .file_name()
                    .into_string()
                    .expect("generated names are UTF-8");
                files.push((in_new, name));
            }
        }
        files.sort_unstable();
        let mut appended = String::new();
        for _ in 0..k {
            let kind = rng.below(100);
            if files.is_empty() || (60..85).contains(&kind) {
                let secs = 1_770_000_000 + store.deliveries;
                store.deliveries += 1;
                let (s, w) = sizes(&mut rng);
                let base = format!(
                    "{secs}.M{}P{}.mx1,S={s},W={w}",
                    rng.below(1_000_000),
                    1000 + rng.below(64_000)
                );
                create_file(&path.join("new").join(&base), &body)?;
                let _ = writeln!(appended, "{} :{base}", folder.next_uid);
                folder.next_uid += 1;
                folder.messages += 1;
                store.messages += 1;
                files.push((true, base));
                done.deliveries += 1;
            } else if kind < 60 {
                let i = rng.below(files.len() as u64) as usize;
                let (in_new, name) = files[i].clone();
                let (base, letters) = match name.split_once(":2,") {
                    Some((b, l)) => (b.to_string(), l.to_string()),
                    None => (
                        name.split(':').next().unwrap_or(&name).to_string(),
                        String::new(),
                    ),
                };
                let letters = if in_new {
                    done.moved_to_cur += 1;
                    if letters.contains('S') {
                        letters
                    } else {
                        toggle(&letters, 'S')
                    }
                } else {
                    const PICK: [char; 9] = ['S', 'S', 'S', 'F', 'F', 'R', 'T', 'a', 'b'];
                    toggle(&letters, PICK[rng.below(PICK.len() as u64) as usize])
                };
                let new_name = format!("{base}:2,{letters}");
                let from = path.join(if in_new { "new" } else { "cur" }).join(&name);
                fs::rename(from, path.join("cur").join(&new_name))?;
                files[i] = (false, new_name);
                done.flag_changes += 1;
            } else {
                let i = rng.below(files.len() as u64) as usize;
                let (in_new, name) = files.swap_remove(i);
                fs::remove_file(path.join(if in_new { "new" } else { "cur" }).join(name))?;
                folder.messages -= 1;
                store.messages -= 1;
                done.expunges += 1;
            }
        }
        done.messages_in_touched += folder.messages;
        if !appended.is_empty() {
            let mut ul = fs::OpenOptions::new()
                .append(true)
                .open(path.join("dovecot-uidlist"))?;
            ul.write_all(appended.as_bytes())?;
        }
    }
    Ok(done)
}

/// Adds or removes one flag letter, keeping ASCII order.
fn toggle(letters: &str, flag: char) -> String {
    let mut v: Vec<char> = letters.chars().collect();
    match v.iter().position(|&c| c == flag) {
        Some(i) => {
            v.remove(i);
        }
        None => {
            v.push(flag);
            v.sort_unstable();
        }
    }
    v.into_iter().collect()
}
