//! Opening things in the mail store, which is hostile input.
//!
//! Every Maildir is written by its own user (a shell, procmail, a sieve
//! script, any IMAP client), while the watcher reads it with root's or the
//! mail user's rights. A user who can make a symbolic link in their own
//! `new/` could otherwise have us read `/etc/shadow` into an event, block
//! every mailbox on a FIFO, or spin on `/dev/zero`. So nothing here:
//!
//! - follows a symbolic link below a Maildir root: directories are opened
//!   one component at a time with `O_DIRECTORY | O_NOFOLLOW`, and the root
//!   itself with `O_NOFOLLOW` (the path above the root is the
//!   administrator's and may contain links);
//! - opens what is not a regular file: a file is looked at with
//!   `fstatat(AT_SYMLINK_NOFOLLOW)` first, opened with `O_NOFOLLOW |
//!   O_NONBLOCK` (and `O_NOATIME` where the kernel allows it, so reading a
//!   message does not change its access time), and checked again with
//!   `fstat` on the handle, which is what decides: a FIFO swapped in
//!   between cannot block and is refused before anything is read;
//! - reads without a bound: every read has a cap, and a file over it is
//!   refused with its size (from `fstat`), not read.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

/// Why something in the store was not opened or read.
#[derive(Debug)]
pub enum Refused {
    /// It does not exist (any more).
    NotFound,
    /// A symbolic link: never followed, it could point out of the store.
    Link,
    /// Not what was asked for: a FIFO, socket or device, a directory where
    /// a file was expected, or a file where a directory was.
    Kind(&'static str),
    /// Larger than the cap; the size is from `fstat`.
    TooBig { size: u64, cap: u64 },
    /// The system refused (permissions, I/O error, …).
    Io(io::Error),
}

impl Refused {
    fn from_errno(e: rustix::io::Errno) -> Refused {
        match e {
            rustix::io::Errno::NOENT => Refused::NotFound,
            rustix::io::Errno::LOOP => Refused::Link,
            rustix::io::Errno::NOTDIR => Refused::Kind("not a directory"),
            e => Refused::Io(e.into()),
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::NotFound => write!(f, "does not exist"),
            Refused::Link => write!(
                f,
                "is a symbolic link; not followed (it could point out of the store)"
            ),
            Refused::Kind(k) => write!(f, "is {k}; not read"),
            Refused::TooBig { size, cap } => {
                write!(
                    f,
                    "is {size} bytes, over the {cap}-byte read limit; not read"
                )
            }
            Refused::Io(e) => write!(f, "cannot be read: {e}"),
        }
    }
}

impl From<io::Error> for Refused {
    fn from(e: io::Error) -> Refused {
        match e.raw_os_error() {
            Some(libc::ENOENT) => Refused::NotFound,
            Some(libc::ELOOP) => Refused::Link,
            _ => Refused::Io(e),
        }
    }
}

/// What a directory entry is, as far as the listing tells (with a
/// `fstatat` where the filesystem does not say).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntryKind {
    File,
    Dir,
    Link,
    /// A FIFO, socket or device, by name.
    Other(&'static str),
}

fn kind_of(t: FileType) -> EntryKind {
    match t {
        FileType::RegularFile => EntryKind::File,
        FileType::Directory => EntryKind::Dir,
        FileType::Symlink => EntryKind::Link,
        FileType::Fifo => EntryKind::Other("a FIFO"),
        FileType::Socket => EntryKind::Other("a socket"),
        FileType::CharacterDevice => EntryKind::Other("a character device"),
        FileType::BlockDevice => EntryKind::Other("a block device"),
        FileType::Unknown => EntryKind::Other("of an unknown type"),
    }
}

/// The kind of an `fstat` result.
pub fn stat_kind(st: &Stat) -> EntryKind {
    kind_of(FileType::from_raw_mode(st.st_mode))
}

/// Nanoseconds of a stat's modification time.
pub fn mtime_ns(st: &Stat) -> i64 {
    st.st_mtime
        .saturating_mul(1_000_000_000)
        .saturating_add(st.st_mtime_nsec as i64)
}

/// Nanoseconds of a stat's change time.
pub fn ctime_ns(st: &Stat) -> i64 {
    st.st_ctime
        .saturating_mul(1_000_000_000)
        .saturating_add(st.st_ctime_nsec as i64)
}

/// A directory of the store, opened without following links.
#[derive(Debug)]
pub struct StoreDir {
    fd: OwnedFd,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

impl StoreDir {
    /// Opens a Maildir root (or any directory the administrator named): a
    /// link as the last component is refused.
    pub fn open(path: &Path) -> Result<StoreDir, Refused> {
        match rustix::fs::open(path, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(StoreDir { fd }),
            // With O_NOFOLLOW, a link to a directory is "not a directory".
            Err(rustix::io::Errno::NOTDIR) => Err(not_dir(rustix::fs::statat(
                rustix::fs::CWD,
                path,
                AtFlags::SYMLINK_NOFOLLOW,
            ))),
            Err(e) => Err(Refused::from_errno(e)),
        }
    }

    /// Opens a directory inside this one; a link is refused.
    pub fn dir(&self, name: &[u8]) -> Result<StoreDir, Refused> {
        let name = OsStr::from_bytes(name);
        match rustix::fs::openat(&self.fd, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(StoreDir { fd }),
            Err(rustix::io::Errno::NOTDIR) => Err(not_dir(rustix::fs::statat(
                &self.fd,
                name,
                AtFlags::SYMLINK_NOFOLLOW,
            ))),
            Err(e) => Err(Refused::from_errno(e)),
        }
    }

    /// `fstat` of the directory itself.
    pub fn stat(&self) -> io::Result<Stat> {
        Ok(rustix::fs::fstat(&self.fd)?)
    }

    /// `fstatat` of an entry, without following a link.
    pub fn stat_at(&self, name: &[u8]) -> Result<Stat, Refused> {
        rustix::fs::statat(&self.fd, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(Refused::from_errno)
    }

    /// The entries of the directory (without `.` and `..`), each with its
    /// kind. The directory is read through its own handle, so a link put
    /// in its place after it was opened changes nothing.
    pub fn entries(&self) -> io::Result<Entries<'_>> {
        Ok(Entries {
            parent: self,
            dir: rustix::fs::Dir::read_from(&self.fd)?,
        })
    }

    /// Opens a regular file inside this directory for reading; anything
    /// else is refused without being read.
    pub fn file(&self, name: &[u8]) -> Result<StoreFile, Refused> {
        let name = OsStr::from_bytes(name);
        // Look before opening, so a FIFO or device is never even opened.
        let pre = rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(Refused::from_errno)?;
        match stat_kind(&pre) {
            EntryKind::File => {}
            EntryKind::Link => return Err(Refused::Link),
            EntryKind::Dir => return Err(Refused::Kind("a directory")),
            EntryKind::Other(k) => return Err(Refused::Kind(k)),
        }
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&self.fd, name, flags | OFlags::NOATIME, Mode::empty()) {
            // O_NOATIME is only for the file's owner (or CAP_FOWNER).
            Err(rustix::io::Errno::PERM) => {
                rustix::fs::openat(&self.fd, name, flags, Mode::empty())
            }
            r => r,
        }
        .map_err(Refused::from_errno)?;
        // The handle decides: the name may have been replaced meanwhile.
        let stat = rustix::fs::fstat(&fd).map_err(Refused::from_errno)?;
        match stat_kind(&stat) {
            EntryKind::File => {}
            EntryKind::Dir => return Err(Refused::Kind("a directory")),
            EntryKind::Link => return Err(Refused::Link),
            EntryKind::Other(k) => return Err(Refused::Kind(k)),
        }
        Ok(StoreFile {
            file: File::from(fd),
            stat,
        })
    }

    /// Reads a whole regular file of at most `cap` bytes.
    pub fn read(&self, name: &[u8], cap: u64) -> Result<Vec<u8>, Refused> {
        self.file(name)?.read_all(cap)
    }

    /// Reads a control file another program may be rewriting in place:
    /// the read is trusted only when the file's size, mtime and ctime are
    /// the same before and after it; otherwise it is read again, a few
    /// times. `Ok(None)` when it never held still.
    pub fn read_stable(&self, name: &[u8], cap: u64) -> Result<Option<(Vec<u8>, Stat)>, Refused> {
        for attempt in 0..4 {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_millis(10 << attempt));
            }
            let mut f = self.file(name)?;
            let bytes = f.read_all(cap)?;
            let after = rustix::fs::fstat(f.file.as_fd()).map_err(Refused::from_errno)?;
            if same_content_stamp(&f.stat, &after) && after.st_size as u64 == bytes.len() as u64 {
                return Ok(Some((bytes, after)));
            }
        }
        Ok(None)
    }
}

/// Why a directory open failed with "not a directory": a link, or
/// something else.
fn not_dir(st: rustix::io::Result<Stat>) -> Refused {
    match st.map(|st| stat_kind(&st)) {
        Ok(EntryKind::Link) => Refused::Link,
        Ok(EntryKind::Other(k)) => Refused::Kind(k),
        Err(rustix::io::Errno::NOENT) => Refused::NotFound,
        _ => Refused::Kind("not a directory"),
    }
}

fn same_content_stamp(a: &Stat, b: &Stat) -> bool {
    a.st_size == b.st_size && mtime_ns(a) == mtime_ns(b) && ctime_ns(a) == ctime_ns(b)
}

/// The entries of a [`StoreDir`].
pub struct Entries<'a> {
    parent: &'a StoreDir,
    dir: rustix::fs::Dir,
}

impl Iterator for Entries<'_> {
    type Item = io::Result<(Vec<u8>, EntryKind)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let e = match self.dir.next()? {
                Ok(e) => e,
                Err(e) => return Some(Err(e.into())),
            };
            let name = e.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let kind = match e.file_type() {
                // Some filesystems do not say: ask, without following.
                FileType::Unknown => match self.parent.stat_at(name) {
                    Ok(st) => stat_kind(&st),
                    Err(Refused::NotFound) => continue,
                    Err(_) => EntryKind::Other("of an unknown type"),
                },
                t => kind_of(t),
            };
            return Some(Ok((name.to_vec(), kind)));
        }
    }
}

/// A regular file of the store, open for reading.
#[derive(Debug)]
pub struct StoreFile {
    file: File,
    stat: Stat,
}

impl StoreFile {
    /// `fstat` of the handle, taken when it was opened.
    pub fn stat(&self) -> &Stat {
        &self.stat
    }

    pub fn len(&self) -> u64 {
        self.stat.st_size as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the whole file if it is at most `cap` bytes; a file that
    /// grows past the cap while being read is refused as well.
    pub fn read_all(&mut self, cap: u64) -> Result<Vec<u8>, Refused> {
        let size = self.len();
        if size > cap {
            return Err(Refused::TooBig { size, cap });
        }
        // One byte more than the file holds: a read that comes back short
        // is the end of a regular file, so the usual case is one `read`
        // (`read_to_end` into an exact buffer asks a second time for the
        // end, a tenth of the system calls of a cold scan's control files).
        let limit = cap.saturating_add(1);
        let mut want = size.saturating_add(1).min(limit) as usize;
        let mut bytes = Vec::with_capacity(want);
        loop {
            let start = bytes.len();
            let asked = want - start;
            bytes.resize(want, 0);
            let n = loop {
                match self.file.read(&mut bytes[start..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        bytes.truncate(start);
                        return Err(Refused::Io(e));
                    }
                }
            };
            bytes.truncate(start + n);
            // Short of the size the handle showed, a short read is no end
            // (some filesystems answer in pieces); past it, it is.
            let at_end = n == 0 || (n < asked && bytes.len() as u64 >= size);
            if at_end || bytes.len() as u64 >= limit {
                break;
            }
            if bytes.len() == want {
                // It grew while we read: on, up to one byte past the cap.
                want = (want as u64).saturating_mul(2).min(limit) as usize;
            }
        }
        if bytes.len() as u64 > cap {
            return Err(Refused::TooBig {
                size: bytes.len() as u64,
                cap,
            });
        }
        Ok(bytes)
    }

    /// The file, for positioned reads.
    pub fn file_mut(&mut self) -> &mut File {
        &mut self.file
    }
}

/// Opens a folder of a Maildir: the root for INBOX (`dir` empty), else the
/// folder directory under it, neither through a link.
pub fn folder(root: &Path, dir: &[u8]) -> Result<StoreDir, Refused> {
    let r = StoreDir::open(root)?;
    if dir.is_empty() { Ok(r) } else { r.dir(dir) }
}

/// Opens a message file of a folder (in `new/` or `cur/`).
pub fn message(root: &Path, dir: &[u8], in_new: bool, file: &[u8]) -> Result<StoreFile, Refused> {
    folder(root, dir)?
        .dir(if in_new { b"new" } else { b"cur" })?
        .file(file)
}

/// The path of an entry, for log lines.
pub fn show(parent: &Path, name: &[u8]) -> String {
    parent.join(OsStr::from_bytes(name)).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::symlink;

    #[test]
    fn refuses_links_fifos_and_big_files() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("Maildir");
        std::fs::create_dir_all(root.join("cur")).unwrap();
        std::fs::create_dir_all(t.path().join("elsewhere")).unwrap();
        std::fs::write(t.path().join("secret"), "secret").unwrap();
        std::fs::write(root.join("cur/ok"), "hello").unwrap();
        symlink(t.path().join("secret"), root.join("cur/link")).unwrap();
        symlink(t.path().join("elsewhere"), root.join(".Linked")).unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, root.join("cur/fifo"), Mode::from(0o600)).unwrap();

        let cur = folder(&root, b"").unwrap().dir(b"cur").unwrap();
        assert_eq!(cur.read(b"ok", 100).unwrap(), b"hello");
        assert!(matches!(
            cur.read(b"ok", 4),
            Err(Refused::TooBig { size: 5, cap: 4 })
        ));
        assert!(matches!(cur.read(b"link", 100), Err(Refused::Link)));
        assert!(matches!(
            cur.read(b"fifo", 100),
            Err(Refused::Kind("a FIFO"))
        ));
        assert!(matches!(cur.read(b"gone", 100), Err(Refused::NotFound)));
        assert!(matches!(folder(&root, b".Linked"), Err(Refused::Link)));
        // A link as the Maildir root itself.
        symlink(&root, t.path().join("root-link")).unwrap();
        assert!(matches!(
            StoreDir::open(&t.path().join("root-link")),
            Err(Refused::Link)
        ));

        let mut kinds: Vec<(Vec<u8>, EntryKind)> =
            cur.entries().unwrap().map(Result::unwrap).collect();
        kinds.sort();
        assert_eq!(
            kinds,
            vec![
                (b"fifo".to_vec(), EntryKind::Other("a FIFO")),
                (b"link".to_vec(), EntryKind::Link),
                (b"ok".to_vec(), EntryKind::File),
            ]
        );
    }

    #[test]
    fn read_all_takes_what_the_file_holds_when_read() {
        let t = tempfile::tempdir().unwrap();
        let dir = StoreDir::open(t.path()).unwrap();
        let path = t.path().join("f");
        let cases: &[(usize, usize, u64, Option<usize>)] = &[
            // (bytes at open, bytes appended after open, cap, Some(len) read or None: too big)
            (0, 0, 10, Some(0)),
            (5, 0, 5, Some(5)),
            (5, 0, 100, Some(5)),
            (5, 3, 100, Some(8)),
            (5, 5000, 10_000, Some(5005)),
            (5, 6, 10, None),
            (0, 11, 10, None),
            (4096, 1, 8192, Some(4097)),
        ];
        for &(at_open, appended, cap, expected) in cases {
            std::fs::write(&path, vec![b'a'; at_open]).unwrap();
            let mut f = dir.file(b"f").unwrap();
            let mut more = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            more.write_all(&vec![b'b'; appended]).unwrap();
            let got = f.read_all(cap);
            match expected {
                Some(len) => {
                    let bytes =
                        got.unwrap_or_else(|e| panic!("{at_open}+{appended}, cap {cap}: {e}"));
                    assert_eq!(bytes.len(), len, "{at_open}+{appended}, cap {cap}");
                    assert!(bytes[..at_open].iter().all(|&b| b == b'a'));
                    assert!(bytes[at_open..].iter().all(|&b| b == b'b'));
                }
                None => assert!(
                    matches!(got, Err(Refused::TooBig { .. })),
                    "{at_open}+{appended}, cap {cap}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn stable_read_of_a_quiet_file() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("subscriptions"), "V\t2\n\nINBOX\n").unwrap();
        let d = StoreDir::open(t.path()).unwrap();
        let (bytes, st) = d.read_stable(b"subscriptions", 1024).unwrap().unwrap();
        assert_eq!(bytes, b"V\t2\n\nINBOX\n");
        assert_eq!(st.st_size, 11);
    }
}
