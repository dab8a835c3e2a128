//! A throwaway Dovecot instance per test, as described in
//! the README ("Test it").
//!
//! Each instance has its own directory, config, loopback ports, `base_dir`
//! and `state_dir`, so tests can run in parallel and never touch the system
//! Dovecot or `/etc/dovecot`.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The users every instance knows, with PLAIN passwords.
pub const USERS: [&str; 2] = ["alice@example.test", "bob@example.test"];
/// The password of every user in [`USERS`].
pub const PASSWORD: &str = "secret";

/// The uid/gid mail is stored under when the tests run as root: Dovecot's
/// mail processes refuse uid 0, and a bare number needs no passwd entry.
const ROOT_MAIL_UID: u32 = 14399;

/// How long to wait for Dovecot's listeners to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Settings that differ between tests.
#[derive(Debug, Clone)]
pub struct Options {
    /// The namespace hierarchy separator IMAP clients see (`.` or `/`). The
    /// Maildir++ layout on disk always uses `.` (`Foo/Sub` is `.Foo.Sub`).
    pub separator: char,
    /// The namespace prefix (`INBOX.` for a Dovecot set up like the
    /// Courier-IMAP it replaced); empty by default.
    pub prefix: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            separator: '.',
            prefix: String::new(),
        }
    }
}

/// A running Dovecot master (`dovecot -F`) and its instance directory.
///
/// Dropping it stops the master (SIGTERM, then waits). When the test is
/// panicking, the log is printed and the directory is kept for inspection.
pub struct Dovecot {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    imap_port: u16,
    lmtp_port: u16,
    separator: char,
}

/// Where the `dovecot` binary is, if installed. `/usr/sbin` is not on a
/// normal user's `PATH`, so it is looked at too.
pub fn dovecot_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join("dovecot"))
        .find(|candidate| candidate.is_file())
}

/// True when running under CI (`CI=true` or `CI=1`), where a missing
/// Dovecot is an error instead of a reason to skip.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Two free loopback ports. The listeners are dropped before Dovecot binds,
/// so another test may grab one in between; [`Dovecot::start_with`] retries.
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// The effective uid/gid of this process, read from `/proc` so the tests
/// need no libc binding.
fn own_ids() -> (u32, u32) {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let field = |name: &str| -> u32 {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing in /proc/self/status"));
        // "Uid:\treal\teffective\tsaved\tfs"
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    (field("Uid:"), field("Gid:"))
}

/// The name with this id in `/etc/passwd` or `/etc/group`, for
/// `default_login_user` / `default_internal_group` when running rootless.
fn name_of(file: &str, id: u32) -> String {
    let text = fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2] == id.to_string()).then(|| f[0].to_string())
        })
        .unwrap_or_else(|| panic!("id {id} has no name in {file}; Dovecot needs one"))
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

impl Dovecot {
    /// Starts an instance with `.` as separator, or returns `None` (after
    /// printing a skip line) when Dovecot is not installed and `CI` is not
    /// `true`. Under CI a missing Dovecot panics.
    ///
    /// Use as `let Some(dovecot) = Dovecot::start() else { return };`.
    pub fn start() -> Option<Dovecot> {
        Self::start_with(Options::default())
    }

    /// Like [`Dovecot::start`], with [`Options`].
    pub fn start_with(options: Options) -> Option<Dovecot> {
        Self::start_with_config(options, "")
    }

    /// Like [`Dovecot::start_with`], with `extra` appended to the
    /// configuration (e.g. the quota plugin), checked by `dovecot -n`.
    pub fn start_with_config(options: Options, extra: &str) -> Option<Dovecot> {
        let Some(binary) = dovecot_binary() else {
            if in_ci() {
                panic!("dovecot not installed; .ci/run must install dovecot-imapd dovecot-lmtpd");
            }
            // Straight to fd 2, not `eprintln!`: libtest captures the macro's
            // output of passing tests, and a skip must be visible.
            let _ = writeln!(
                std::io::stderr(),
                "SKIP {}: dovecot not installed (apt-get install dovecot-imapd dovecot-lmtpd); \
                 under CI=true this fails",
                std::thread::current().name().unwrap_or("real-Dovecot test")
            );
            return None;
        };
        // A port picked by `free_ports` can be taken by a parallel test before
        // Dovecot binds it: retry with fresh ports.
        let mut last_error = String::new();
        for _attempt in 0..5 {
            match Self::try_start(&binary, &options, extra) {
                Ok(dovecot) => return Some(dovecot),
                Err(e) if e.contains("Address already in use") => last_error = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("dovecot did not start after 5 attempts: {last_error}");
    }

    fn try_start(binary: &Path, options: &Options, extra: &str) -> Result<Dovecot, String> {
        let dir = tempfile::Builder::new()
            .prefix("dovecot-test-")
            .tempdir()
            .expect("create temp dir");
        let root = dir.path().to_path_buf();
        // mkdtemp makes 0700; auth and mail processes run as other users and
        // must traverse it.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["run", "state", "log", "etc", "vmail"] {
            fs::create_dir(root.join(sub)).unwrap();
        }

        let (euid, egid) = own_ids();
        let as_root = euid == 0;
        let (mail_uid, mail_gid) = if as_root {
            (ROOT_MAIL_UID, ROOT_MAIL_UID)
        } else {
            (euid, egid)
        };
        if as_root {
            chown(&root.join("vmail"), mail_uid, mail_gid);
        }

        let mut users = String::new();
        for user in USERS {
            let (local, domain) = user.split_once('@').unwrap();
            let home = root.join("vmail").join(domain).join(local);
            writeln!(
                users,
                "{user}:{{PLAIN}}{PASSWORD}:{mail_uid}:{mail_gid}::{}::",
                home.display()
            )
            .unwrap();
        }
        let users_file = root.join("etc/users");
        fs::write(&users_file, users).unwrap();
        // The auth process runs as `default_internal_user`.
        fs::set_permissions(&users_file, fs::Permissions::from_mode(0o644)).unwrap();

        let (imap_port, lmtp_port) = free_ports();
        let conf = config(
            &root, options, imap_port, lmtp_port, as_root, mail_uid, mail_gid, euid,
        ) + extra;
        let conf_path = root.join("etc/dovecot.conf");
        fs::write(&conf_path, conf).unwrap();

        // `-n` parses the config and prints errors: fail early and clearly.
        let check = Command::new(binary)
            .arg("-c")
            .arg(&conf_path)
            .arg("-n")
            .output()
            .expect("run dovecot -n");
        if !check.status.success() {
            return Err(format!(
                "dovecot -c {} -n failed ({}):\n{}",
                conf_path.display(),
                check.status,
                String::from_utf8_lossy(&check.stderr)
            ));
        }

        let stderr_log = fs::File::create(root.join("log/stderr.log")).unwrap();
        let child = Command::new(binary)
            .arg("-F")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(stderr_log.try_clone().unwrap())
            .stderr(stderr_log)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", binary.display()))?;

        let mut dovecot = Dovecot {
            child: Some(child),
            dir: Some(dir),
            root,
            imap_port,
            lmtp_port,
            separator: options.separator,
        };
        dovecot.wait_until_listening()?;
        Ok(dovecot)
    }

    /// Polls both ports until they accept connections; reports the logs if
    /// the master exits or the time runs out.
    fn wait_until_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let up = |port| TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up(self.imap_port) && up(self.lmtp_port) {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!(
                    "dovecot exited during start-up ({status}):\n{}",
                    self.logs()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "dovecot ports {} / {} not listening after {:?}:\n{}",
                    self.imap_port,
                    self.lmtp_port,
                    START_TIMEOUT,
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The instance directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The Maildir of `user` (`alice@example.test` →
    /// `ROOT/vmail/example.test/alice/Maildir`); it exists only once Dovecot
    /// has created it (first delivery or login).
    pub fn maildir(&self, user: &str) -> PathBuf {
        let (local, domain) = user.split_once('@').expect("user@domain");
        self.root
            .join("vmail")
            .join(domain)
            .join(local)
            .join("Maildir")
    }

    /// The loopback IMAP port.
    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }

    /// The loopback LMTP port.
    pub fn lmtp_port(&self) -> u16 {
        self.lmtp_port
    }

    /// The IMAP hierarchy separator of this instance's namespace.
    pub fn separator(&self) -> char {
        self.separator
    }

    /// The main log file (errors and warnings).
    pub fn log_path(&self) -> PathBuf {
        self.root.join("log/dovecot.log")
    }

    /// The info log (`info_log_path`): logins, logouts, deliveries.
    pub fn info_log_path(&self) -> PathBuf {
        self.root.join("log/dovecot-info.log")
    }

    /// The instance's configuration file (for `doveadm -c`).
    pub fn config_path(&self) -> PathBuf {
        self.root.join("etc/dovecot.conf")
    }

    /// All log files concatenated, for panic messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["stderr.log", "dovecot.log", "dovecot-info.log"] {
            let path = self.root.join("log").join(name);
            let text = fs::read_to_string(&path).unwrap_or_default();
            let _ = writeln!(out, "--- {} ---\n{text}", path.display());
        }
        out
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM lets the master stop its children; SIGKILL only if it
            // hangs.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
            if let Some(dir) = self.dir.take() {
                eprintln!(
                    "dovecot instance kept for inspection: {}",
                    dir.keep().display()
                );
            }
        }
    }
}

/// The `UID basename` lines of a folder's `dovecot-uidlist` (`folder` is
/// the folder's directory: the Maildir for INBOX, `.Name` for others);
/// none when Dovecot has not written one.
pub fn uidlist(folder: &Path) -> Vec<(u32, String)> {
    let text = fs::read_to_string(folder.join("dovecot-uidlist")).unwrap_or_default();
    text.lines()
        .skip(1) // header: "3 V1700000000 N2 G…"
        .filter_map(|line| {
            let (uid, rest) = line.split_once(' ')?;
            // "UID [extensions] :basename"
            let name = rest.rsplit_once(':').map_or(rest, |(_, n)| n);
            Some((uid.parse().ok()?, name.to_string()))
        })
        .collect()
}

/// The instance's `dovecot.conf`.
#[allow(clippy::too_many_arguments)]
fn config(
    root: &Path,
    options: &Options,
    imap_port: u16,
    lmtp_port: u16,
    as_root: bool,
    mail_uid: u32,
    mail_gid: u32,
    own_uid: u32,
) -> String {
    let dir = root.display();
    let sep = options.separator;
    let prefix = &options.prefix;
    // As root: the package's unprivileged users, and only the bare mail uid
    // may own mail. Rootless: everything runs as ourselves, without chroot.
    let users = if as_root {
        format!(
            "default_login_user = dovenull\n\
             default_internal_user = dovecot\n\
             first_valid_uid = {mail_uid}\nlast_valid_uid = {mail_uid}\n\
             first_valid_gid = {mail_gid}\nlast_valid_gid = {mail_gid}\n"
        )
    } else {
        let me = name_of("/etc/passwd", own_uid);
        let group = name_of("/etc/group", mail_gid);
        format!(
            "default_login_user = {me}\n\
             default_internal_user = {me}\n\
             default_internal_group = {group}\n\
             first_valid_uid = {mail_uid}\nlast_valid_uid = {mail_uid}\n\
             first_valid_gid = {mail_gid}\nlast_valid_gid = {mail_gid}\n\
             service anvil {{\n  chroot =\n}}\n"
        )
    };
    let login_chroot = if as_root { "" } else { "  chroot =\n" };
    format!(
        r#"# generated by tests/support/dovecot.rs
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = test-{imap_port}
listen = 127.0.0.1
protocols = imap lmtp
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
log_path = {dir}/log/dovecot.log
info_log_path = {dir}/log/dovecot-info.log
{users}
mail_location = maildir:{dir}/vmail/%d/%n/Maildir
namespace inbox {{
  inbox = yes
  separator = {sep}
  prefix = {prefix}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/etc/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {dir}/etc/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
{login_chroot}}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@example.test
}}
# What Dovecot itself did, for comparing with our events when debugging.
mail_plugins = $mail_plugins notify mail_log
plugin {{
  mail_log_events = delete undelete expunge copy mailbox_delete mailbox_rename flag_change save mailbox_create
  mail_log_fields = uid box msgid size flags
}}
"#
    )
}
