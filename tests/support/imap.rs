//! A minimal IMAP4rev1 client, enough to make Dovecot change the Maildir and
//! to ask it for the truth (UIDVALIDITY, UIDs, sizes) the events must match.
//!
//! Every method panics with the server's text on `NO`/`BAD`: a failing
//! command is a broken test, not a case to handle.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

/// A tagged command's result: the untagged lines it produced (`* …`,
/// without the `* `) and the text after the tagged `OK`.
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub untagged: Vec<String>,
    pub text: String,
}

impl Response {
    /// The first `[CODE …]` response code named `code` in the tagged text or
    /// an untagged `OK` line, without the brackets (e.g. `COPYUID 1 1:2 5:6`).
    pub fn code(&self, code: &str) -> Option<String> {
        std::iter::once(self.text.as_str())
            .chain(self.untagged.iter().map(String::as_str))
            .find_map(|line| {
                let start = line.find(&format!("[{code} "))?;
                let rest = &line[start + 1..];
                Some(rest[..rest.find(']')?].to_string())
            })
    }
}

/// `STATUS mailbox (UIDVALIDITY UIDNEXT MESSAGES)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub messages: u32,
}

/// What `SELECT` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub exists: u32,
}

/// A `COPYUID` response code (RFC 4315): `src[i]` became `dst[i]` in the
/// destination, whose UIDVALIDITY is `uidvalidity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyUid {
    pub uidvalidity: u32,
    pub src: Vec<u32>,
    pub dst: Vec<u32>,
}

/// Expands an IMAP sequence set of UIDs (`1:3,5`, `7:5`) into its numbers,
/// in the order written. `*` is not supported (servers never send it in
/// COPYUID).
pub fn parse_sequence_set(set: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in set.split(',') {
        let num = |s: &str| -> u32 {
            s.parse()
                .unwrap_or_else(|_| panic!("bad number {s:?} in sequence set {set:?}"))
        };
        match part.split_once(':') {
            Some((a, b)) => {
                let (a, b) = (num(a), num(b));
                if a <= b {
                    out.extend(a..=b);
                } else {
                    out.extend((b..=a).rev());
                }
            }
            None => out.push(num(part)),
        }
    }
    out
}

/// Formats UIDs as a compressed IMAP sequence set (`1:3,5`), sorted and
/// de-duplicated: the form events carry in `uidset`.
pub fn format_sequence_set(uids: &[u32]) -> String {
    let mut uids = uids.to_vec();
    uids.sort_unstable();
    uids.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        while i + 1 < uids.len() && uids[i + 1] == uids[i] + 1 {
            i += 1;
        }
        parts.push(if uids[i] == start {
            start.to_string()
        } else {
            format!("{start}:{}", uids[i])
        });
        i += 1;
    }
    parts.join(",")
}

/// Quotes a mailbox name (or any astring) as an IMAP quoted string.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `(\Seen $label1)`, or nothing for no flags.
fn flag_list(flags: &[&str]) -> String {
    format!("({})", flags.join(" "))
}

/// A two-way byte stream an IMAP server talks over: a TCP connection, or
/// one end of a socket pair whose other end is a server's stdin and stdout
/// (Courier-IMAP's `imapd` run preauthenticated).
pub trait Duplex: std::io::Read + std::io::Write + Send {}
impl<T: std::io::Read + std::io::Write + Send> Duplex for T {}

/// One logged-in (or not yet) connection.
pub struct Imap {
    reader: BufReader<Box<dyn Duplex>>,
    next_tag: u32,
}

impl Imap {
    /// Connects to 127.0.0.1:`port` and reads the greeting.
    pub fn connect(port: u16) -> Imap {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to IMAP");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Imap::over(Box::new(stream))
    }

    /// Talks over `stream` (set a read timeout on it first) and reads the
    /// greeting: `* OK`, or `* PREAUTH` from a server started logged in.
    pub fn over(stream: Box<dyn Duplex>) -> Imap {
        let mut imap = Imap {
            reader: BufReader::new(stream),
            next_tag: 1,
        };
        let greeting = imap.read_line();
        assert!(
            greeting.starts_with("* OK") || greeting.starts_with("* PREAUTH"),
            "IMAP greeting: {greeting}"
        );
        imap
    }

    /// Connects and logs in: the usual start of a test session.
    pub fn login(port: u16, user: &str, password: &str) -> Imap {
        let mut imap = Imap::connect(port);
        imap.command(&format!("LOGIN {} {}", quote(user), quote(password)));
        imap
    }

    /// Reads one response line without CRLF. A line ending in a literal
    /// announcement `{n}` continues after the n bytes; they are inlined.
    fn read_line(&mut self) -> String {
        let mut line = String::new();
        loop {
            let mut part = String::new();
            let n = self.reader.read_line(&mut part).expect("read IMAP line");
            assert!(n > 0, "IMAP server closed the connection after: {line}");
            let part = part.trim_end_matches("\r\n").trim_end_matches('\n');
            line.push_str(part);
            let literal = part
                .strip_suffix('}')
                .and_then(|p| p.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok());
            let Some(len) = literal else { return line };
            let mut buf = vec![0; len];
            self.reader.read_exact(&mut buf).expect("read IMAP literal");
            line.push_str(&String::from_utf8_lossy(&buf));
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        let stream = self.reader.get_mut();
        stream.write_all(bytes).expect("write to IMAP");
        stream.flush().unwrap();
    }

    fn tag(&mut self) -> String {
        let tag = format!("t{}", self.next_tag);
        self.next_tag += 1;
        tag
    }

    /// Reads until the tagged reply of `tag`; panics on `NO`/`BAD`.
    fn finish(&mut self, tag: &str, what: &str) -> Response {
        let mut response = Response::default();
        loop {
            let line = self.read_line();
            if let Some(untagged) = line.strip_prefix("* ") {
                response.untagged.push(untagged.to_string());
            } else if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                match rest.split_once(' ').unwrap_or((rest, "")) {
                    ("OK", text) => {
                        response.text = text.to_string();
                        return response;
                    }
                    _ => panic!(
                        "IMAP `{what}` failed: {line}\n(untagged: {:?})",
                        response.untagged
                    ),
                }
            } else if line.starts_with('+') {
                panic!("unexpected continuation for `{what}`: {line}");
            }
        }
    }

    /// Sends one command (without tag) and returns its response.
    pub fn command(&mut self, command: &str) -> Response {
        let tag = self.tag();
        self.write(format!("{tag} {command}\r\n").as_bytes());
        self.finish(&tag, command)
    }

    /// Starts `IDLE` on the selected mailbox and returns its tag once the
    /// server's continuation arrived: from then on Dovecot watches the
    /// folder and, as with a phone or Thunderbird, moves each delivery from
    /// `new/` to `cur/` as soon as it sees it.
    pub fn idle(&mut self) -> String {
        let tag = self.tag();
        self.write(format!("{tag} IDLE\r\n").as_bytes());
        loop {
            let line = self.read_line();
            if line.starts_with('+') {
                return tag;
            }
            assert!(line.starts_with("* "), "IDLE refused: {line}");
        }
    }

    /// Waits (up to the read timeout) for `* N EXISTS` with N ≥ `count`
    /// while idling, and returns N.
    pub fn idle_wait_exists(&mut self, count: u32) -> u32 {
        loop {
            let line = self.read_line();
            let exists = line
                .strip_prefix("* ")
                .and_then(|l| l.strip_suffix(" EXISTS"))
                .and_then(|n| n.parse::<u32>().ok());
            if let Some(n) = exists.filter(|&n| n >= count) {
                return n;
            }
        }
    }

    /// Ends an `IDLE` started with [`Imap::idle`].
    pub fn idle_done(&mut self, tag: &str) -> Response {
        self.write(b"DONE\r\n");
        self.finish(tag, "IDLE")
    }

    /// `APPEND mailbox (flags) {n}` with `message` as a literal; returns
    /// `(uidvalidity, uid)` from the `APPENDUID` response code.
    /// `message` should use CRLF line ends, as IMAP requires.
    pub fn append(&mut self, mailbox: &str, flags: &[&str], message: &[u8]) -> (u32, u32) {
        let tag = self.tag();
        let command = format!(
            "APPEND {} {} {{{}}}",
            quote(mailbox),
            flag_list(flags),
            message.len()
        );
        self.write(format!("{tag} {command}\r\n").as_bytes());
        loop {
            let line = self.read_line();
            if line.starts_with('+') {
                break;
            }
            assert!(
                line.starts_with("* "),
                "IMAP `{command}` refused before the literal: {line}"
            );
        }
        self.write(message);
        self.write(b"\r\n");
        let response = self.finish(&tag, &command);
        let code = response
            .code("APPENDUID")
            .unwrap_or_else(|| panic!("no APPENDUID in {response:?}"));
        let fields: Vec<&str> = code.split_whitespace().collect();
        (fields[1].parse().unwrap(), fields[2].parse().unwrap())
    }

    /// `SELECT mailbox` (read-write: the first one moves `new/` to `cur/`).
    pub fn select(&mut self, mailbox: &str) -> Selected {
        let response = self.command(&format!("SELECT {}", quote(mailbox)));
        selected(&response)
    }

    /// `EXAMINE mailbox` (read-only: leaves `new/` alone).
    pub fn examine(&mut self, mailbox: &str) -> Selected {
        let response = self.command(&format!("EXAMINE {}", quote(mailbox)));
        selected(&response)
    }

    /// `UID STORE uids op (flags)`, e.g. `uid_store("1:2", "+FLAGS", &["\\Seen"])`.
    pub fn uid_store(&mut self, uids: &str, op: &str, flags: &[&str]) -> Response {
        self.command(&format!("UID STORE {uids} {op} {}", flag_list(flags)))
    }

    /// `UID COPY uids mailbox`; returns its `COPYUID`.
    pub fn uid_copy(&mut self, uids: &str, mailbox: &str) -> CopyUid {
        let response = self.command(&format!("UID COPY {uids} {}", quote(mailbox)));
        copyuid(&response)
    }

    /// `UID MOVE uids mailbox` (RFC 6851); returns its `COPYUID` (sent in an
    /// untagged `OK` before the expunges).
    pub fn uid_move(&mut self, uids: &str, mailbox: &str) -> CopyUid {
        let response = self.command(&format!("UID MOVE {uids} {}", quote(mailbox)));
        copyuid(&response)
    }

    /// `EXPUNGE` in the selected mailbox.
    pub fn expunge(&mut self) -> Response {
        self.command("EXPUNGE")
    }

    pub fn create(&mut self, mailbox: &str) -> Response {
        self.command(&format!("CREATE {}", quote(mailbox)))
    }

    pub fn rename(&mut self, from: &str, to: &str) -> Response {
        self.command(&format!("RENAME {} {}", quote(from), quote(to)))
    }

    pub fn delete(&mut self, mailbox: &str) -> Response {
        self.command(&format!("DELETE {}", quote(mailbox)))
    }

    pub fn subscribe(&mut self, mailbox: &str) -> Response {
        self.command(&format!("SUBSCRIBE {}", quote(mailbox)))
    }

    pub fn unsubscribe(&mut self, mailbox: &str) -> Response {
        self.command(&format!("UNSUBSCRIBE {}", quote(mailbox)))
    }

    /// `STATUS mailbox (UIDVALIDITY UIDNEXT MESSAGES)`.
    pub fn status(&mut self, mailbox: &str) -> Status {
        let response = self.command(&format!(
            "STATUS {} (UIDVALIDITY UIDNEXT MESSAGES)",
            quote(mailbox)
        ));
        let line = response
            .untagged
            .iter()
            .find(|l| l.starts_with("STATUS "))
            .unwrap_or_else(|| panic!("no STATUS line in {response:?}"));
        Status {
            uidvalidity: item(line, "UIDVALIDITY"),
            uidnext: item(line, "UIDNEXT"),
            messages: item(line, "MESSAGES"),
        }
    }

    /// `UID FETCH uid (RFC822.SIZE)` in the selected mailbox: the size IMAP
    /// clients see, which `messageSize` must equal.
    pub fn uid_fetch_size(&mut self, uid: u32) -> u64 {
        let response = self.command(&format!("UID FETCH {uid} (RFC822.SIZE)"));
        let line = response
            .untagged
            .iter()
            .find(|l| l.contains(" FETCH ") && item::<u32>(l, "UID") == uid)
            .unwrap_or_else(|| panic!("no FETCH for UID {uid} in {response:?}"));
        item(line, "RFC822.SIZE")
    }

    /// `UID SEARCH ALL` in the selected mailbox, sorted.
    pub fn uid_search_all(&mut self) -> Vec<u32> {
        let response = self.command("UID SEARCH ALL");
        let mut uids: Vec<u32> = response
            .untagged
            .iter()
            .filter_map(|l| l.strip_prefix("SEARCH"))
            .flat_map(|rest| rest.split_whitespace().map(|n| n.parse::<u32>().unwrap()))
            .collect();
        uids.sort_unstable();
        uids
    }

    /// `LOGOUT` (the server answers `* BYE` then the tagged `OK`).
    pub fn logout(mut self) {
        self.command("LOGOUT");
    }
}

/// The number after `name` in a line such as `… (UIDVALIDITY 5 UIDNEXT 3)`
/// or `… [UIDNEXT 3] …`.
fn item<T: std::str::FromStr>(line: &str, name: &str) -> T {
    let words: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || "()[]".contains(c))
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .find(|w| w[0].eq_ignore_ascii_case(name))
        .and_then(|w| w[1].parse().ok())
        .unwrap_or_else(|| panic!("no {name} number in {line:?}"))
}

fn selected(response: &Response) -> Selected {
    let find = |name: &str| -> u32 {
        response
            .untagged
            .iter()
            .find(|l| l.contains(&format!("[{name} ")))
            .map(|l| item(l, name))
            .unwrap_or_else(|| panic!("no {name} in {response:?}"))
    };
    let exists = response
        .untagged
        .iter()
        .find_map(|l| l.strip_suffix(" EXISTS")?.parse().ok())
        .unwrap_or_else(|| panic!("no EXISTS in {response:?}"));
    Selected {
        uidvalidity: find("UIDVALIDITY"),
        uidnext: find("UIDNEXT"),
        exists,
    }
}

fn copyuid(response: &Response) -> CopyUid {
    let code = response
        .code("COPYUID")
        .unwrap_or_else(|| panic!("no COPYUID in {response:?}"));
    let fields: Vec<&str> = code.split_whitespace().collect();
    assert_eq!(fields.len(), 4, "malformed {code:?}");
    let copy = CopyUid {
        uidvalidity: fields[1].parse().unwrap(),
        src: parse_sequence_set(fields[2]),
        dst: parse_sequence_set(fields[3]),
    };
    assert_eq!(copy.src.len(), copy.dst.len(), "malformed {code:?}");
    copy
}
