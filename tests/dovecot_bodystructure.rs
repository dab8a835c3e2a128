//! `content::body_structure` against a real Dovecot: every message of the
//! corpus in `testdata/mime/` is APPENDed, then `UID FETCH n BODYSTRUCTURE`
//! must answer byte for byte what we compute from the same bytes — from
//! the CRLF form we appended, from its LF form (how Dovecot and most
//! MTAs store Maildir files) and from the file as it is in the corpus.
//!
//! A mismatch fails the test unless it is listed in [`KNOWN_DIFFERENCES`]
//! with both outputs recorded exactly, so any other change still fails.
//!
//! Skipped (with a line on stderr) when Dovecot is not installed, unless
//! `CI=true`. Run: `cargo test --test dovecot_bodystructure -- --nocapture`
//! (with `SHOW_BODYSTRUCTURE=1` to print Dovecot's answers).

mod support;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use maildir_events::content;
use support::{Dovecot, Imap, PASSWORD};

const ALICE: &str = "alice@example.test";

/// A documented difference between Dovecot's answer and ours for one
/// corpus file: both sides are asserted exactly.
struct KnownDifference {
    file: &'static str,
    reason: &'static str,
    dovecot: &'static str,
    ours: &'static str,
}

/// Every corpus message matches Dovecot 2.3 byte for byte, so this is
/// empty. An entry here documents a difference instead of hiding it.
const KNOWN_DIFFERENCES: &[KnownDifference] = &[];

/// The corpus, sorted by file name.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/mime");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    assert!(files.len() >= 10, "corpus too small: {}", files.len());
    files
}

fn to_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 20);
    for (i, &c) in raw.iter().enumerate() {
        if c == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(c);
    }
    out
}

fn to_lf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, &c) in raw.iter().enumerate() {
        if !(c == b'\r' && raw.get(i + 1) == Some(&b'\n')) {
            out.push(c);
        }
    }
    out
}

/// The file Dovecot stored for `uid` in `maildir` (INBOX): found through
/// `dovecot-uidlist` (`UID [ext…] :basename`) in `cur/` or `new/`.
fn stored_message(maildir: &Path, uid: u32) -> Vec<u8> {
    let uidlist = std::fs::read_to_string(maildir.join("dovecot-uidlist"))
        .unwrap_or_else(|e| panic!("read dovecot-uidlist: {e}"));
    let base = uidlist
        .lines()
        .skip(1)
        .find_map(|line| {
            let (n, rest) = line.split_once(' ')?;
            (n.parse::<u32>().ok()? == uid).then(|| rest.split_once(':').map_or(rest, |(_, b)| b))
        })
        .unwrap_or_else(|| panic!("UID {uid} not in dovecot-uidlist:\n{uidlist}"));
    for sub in ["cur", "new"] {
        for entry in std::fs::read_dir(maildir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name == base || name.starts_with(&format!("{base}:")) {
                return std::fs::read(path).unwrap();
            }
        }
    }
    panic!("no file for UID {uid} ({base}) in {}", maildir.display());
}

/// A byte-exact IMAP reader for FETCH responses: the harness' client turns
/// literals into lossy text, which would hide 8-bit differences.
struct RawImap {
    reader: BufReader<TcpStream>,
    next_tag: u32,
}

impl RawImap {
    fn login(port: u16, user: &str, password: &str) -> RawImap {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to IMAP");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut imap = RawImap {
            reader: BufReader::new(stream),
            next_tag: 1,
        };
        let greeting = imap.read_response();
        assert!(
            greeting.starts_with(b"* OK"),
            "greeting: {}",
            show(&greeting)
        );
        imap.command(&format!("LOGIN \"{user}\" \"{password}\""));
        imap
    }

    /// One response line with its literals inline (`{n}\r\n` + n bytes),
    /// without the final CRLF.
    fn read_response(&mut self) -> Vec<u8> {
        let mut response = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = self.reader.read_until(b'\n', &mut line).expect("read IMAP");
            assert!(
                n > 0,
                "IMAP server closed the connection after {}",
                show(&response)
            );
            let literal = line
                .strip_suffix(b"}\r\n")
                .and_then(|l| l.iter().rposition(|&c| c == b'{').map(|i| &l[i + 1..]))
                .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok());
            match literal {
                Some(len) => {
                    response.extend_from_slice(&line);
                    let mut data = vec![0; len];
                    self.reader
                        .read_exact(&mut data)
                        .expect("read IMAP literal");
                    response.extend_from_slice(&data);
                }
                None => {
                    response.extend_from_slice(line.strip_suffix(b"\r\n").unwrap_or(&line));
                    return response;
                }
            }
        }
    }

    /// Sends a command; returns its untagged responses (without `* `).
    fn command(&mut self, command: &str) -> Vec<Vec<u8>> {
        let tag = format!("r{}", self.next_tag);
        self.next_tag += 1;
        let stream = self.reader.get_mut();
        stream
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .unwrap();
        stream.flush().unwrap();
        let mut untagged = Vec::new();
        loop {
            let response = self.read_response();
            if let Some(rest) = response.strip_prefix(b"* ") {
                untagged.push(rest.to_vec());
            } else if let Some(rest) = response.strip_prefix(format!("{tag} ").as_bytes()) {
                assert!(
                    rest.starts_with(b"OK"),
                    "`{command}` failed: {}",
                    show(&response)
                );
                return untagged;
            }
        }
    }

    /// `UID FETCH uid BODYSTRUCTURE`: the bytes after `BODYSTRUCTURE `.
    fn bodystructure(&mut self, uid: u32) -> Vec<u8> {
        let responses = self.command(&format!("UID FETCH {uid} BODYSTRUCTURE"));
        let fetch = responses
            .iter()
            .find(|r| find(r, b" FETCH (").is_some() && find(r, b"BODYSTRUCTURE ").is_some())
            .unwrap_or_else(|| panic!("no BODYSTRUCTURE for UID {uid}: {responses:?}"));
        let start = find(fetch, b"BODYSTRUCTURE ").unwrap() + b"BODYSTRUCTURE ".len();
        // The FETCH list's own ")" ends the response; BODYSTRUCTURE is the
        // last item Dovecot sends (after UID).
        let end = fetch.len() - 1;
        assert_eq!(
            fetch[end],
            b')',
            "unexpected FETCH response {}",
            show(fetch)
        );
        fetch[start..end].to_vec()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Bytes for a message: valid UTF-8 as text, the rest escaped.
fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// The first byte where two outputs differ, with some context.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let from = at.saturating_sub(40);
    format!(
        "first difference at byte {at}:\n    dovecot: …{}\n    ours:    …{}",
        show(&a[from..(at + 40).min(a.len())]),
        show(&b[from..(at + 40).min(b.len())])
    )
}

#[test]
fn bodystructure_matches_dovecot() {
    let Some(dovecot) = Dovecot::start() else {
        return;
    };
    let corpus = corpus();

    // APPEND every message (CRLF, as IMAP requires) with the harness...
    let mut imap = Imap::login(dovecot.imap_port(), ALICE, PASSWORD);
    let mut uids = Vec::new();
    for (_, raw) in &corpus {
        let (_, uid) = imap.append("INBOX", &[], &to_crlf(raw));
        uids.push(uid);
    }
    imap.command("LOGOUT");

    // ...and FETCH with the byte-exact reader.
    let mut raw_imap = RawImap::login(dovecot.imap_port(), ALICE, PASSWORD);
    raw_imap.command("EXAMINE INBOX");

    let mut matched = 0;
    let mut documented = Vec::new();
    let mut failures = Vec::new();
    for ((name, raw), uid) in corpus.iter().zip(&uids) {
        let from_dovecot = raw_imap.bodystructure(*uid);
        if std::env::var_os("SHOW_BODYSTRUCTURE").is_some() {
            eprintln!("{name}: dovecot: {}", show(&from_dovecot));
        }
        let crlf = to_crlf(raw);
        let ours = content::body_structure(&crlf);
        // The same structure whatever the line ends, and from the file
        // Dovecot wrote into the Maildir (what the watcher reads).
        let stored = stored_message(&dovecot.maildir(ALICE), *uid);
        for (form, bytes) in [
            ("LF form", to_lf(&crlf)),
            ("corpus file", raw.clone()),
            ("file Dovecot stored", stored),
        ] {
            let other = content::body_structure(&bytes);
            if other != ours {
                failures.push(format!(
                    "{name}: the {form} gives another BODYSTRUCTURE than the CRLF form\n  {}",
                    first_difference(&ours, &other)
                ));
            }
        }
        // And extract() reports it as the string it is.
        let opts = content::ContentOptions {
            body_structure: true,
            ..Default::default()
        };
        let extracted = content::extract(raw, &opts)
            .body_structure
            .unwrap_or_default();
        if extracted != String::from_utf8_lossy(&ours) {
            failures.push(format!("{name}: extract() differs from body_structure()"));
        }

        let known = KNOWN_DIFFERENCES.iter().find(|k| k.file == name);
        match known {
            None if from_dovecot == ours => {
                matched += 1;
                eprintln!("{name}: match ({} bytes)", ours.len());
            }
            None => failures.push(format!(
                "{name}: BODYSTRUCTURE differs from Dovecot's\n  dovecot: {}\n  ours:    {}\n  {}",
                show(&from_dovecot),
                show(&ours),
                first_difference(&from_dovecot, &ours)
            )),
            Some(k) => {
                if from_dovecot == k.dovecot.as_bytes() && ours == k.ours.as_bytes() {
                    documented.push(format!("{name}: {}", k.reason));
                    eprintln!("{name}: known difference: {}", k.reason);
                } else {
                    failures.push(format!(
                        "{name}: no longer the recorded known difference\n  dovecot: {}\n  ours:    {}",
                        show(&from_dovecot),
                        show(&ours)
                    ));
                }
            }
        }
    }
    for k in KNOWN_DIFFERENCES {
        if !corpus.iter().any(|(name, _)| name == k.file) {
            failures.push(format!("known difference for missing file {}", k.file));
        }
    }
    eprintln!(
        "BODYSTRUCTURE: {matched} of {} corpus messages match Dovecot byte for byte; {} documented difference(s)",
        corpus.len(),
        documented.len()
    );
    assert!(
        failures.is_empty(),
        "{} failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// xorshift64*: a deterministic generator, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Pieces of messages, broken and not, that random messages are made of.
const FRAGMENTS: &[&str] = &[
    "Content-Type: multipart/mixed; boundary=\"b\"\n",
    "Content-Type: multipart/alternative; boundary=b2\n",
    "Content-Type: multipart/digest; boundary=\"b\"\n",
    "Content-Type: message/rfc822\n",
    "Content-Type: text/plain; charset=\"utf-8\"; format=flowed\n",
    "Content-Type: text/\n",
    "Content-Type: ;;=\"\n",
    "Content-Type: application/x; name*0*=utf-8''a%20; name*1=b; name*=c\n",
    "Content-Type: image/png (comment); name=\"a b\"\n",
    "Content-Disposition: attachment; filename=\"a\\\"b\"\n",
    "Content-Disposition: inline\n",
    "Content-Language: en, (comment) de\n",
    "Content-Location: (unterminated\n",
    "Content-Transfer-Encoding: base64\n",
    "Content-Transfer-Encoding: 8bit; x\n",
    "Content-Description: \"\"\"\"\"\\\\\n",
    "Content-ID: <id@x>   \n",
    "Content-MD5: \n",
    "Mime-Version: 1.0\n",
    "From: \"A, B\" <a@b>, (c) d@e, group: x@y, <@r:z@w>;\n",
    "From: user@host (Comment Name)\n",
    "To: <\n",
    "To: \"unterminated\n",
    "Cc: a@b,,c@d, ,\n",
    "Subject: =?utf-8?b?w7w=?= \t\n",
    "Subject:  \t \n",
    "Date: Sat, 28 Nov 2026 09:15:02 +0100\n",
    "In-Reply-To: <x@y>\n",
    "Message-ID: <\"q\\\\\"@x>\n",
    " folded continuation\n",
    "\tfolded with tab\n",
    "no colon line\n",
    "Header-Without-Space:value\n",
    "\n",
    "\n",
    "\n",
    "--b\n",
    "--b--\n",
    "--b2\n",
    "--b2--\n",
    "--b  trailing\n",
    "--\n",
    "body text \u{e9}\n",
    "plain body line\n",
    "=?\n",
    "(",
    "\"",
    "\\",
    "\r",
    "Content-Type: multipart/mixed; boundary=b\n\n--b\n",
    "Content-Type: text/plain; name=\u{e9}t\u{e9}\n",
    "From: J\u{f6}rg <j@x>\n",
    "Content-Type: text/plain garbage\n",
    "Content-Type: TEXT/PLAIN; CHARSET=x\n",
];

fn random_message(rng: &mut Rng) -> Vec<u8> {
    let mut msg = Vec::new();
    for _ in 0..1 + rng.below(30) {
        msg.extend_from_slice(FRAGMENTS[rng.below(FRAGMENTS.len())].as_bytes());
    }
    msg
}

/// Random messages made of the fragments above, APPENDed to Dovecot: a
/// differential fuzz of the parser against the real thing.
#[test]
fn random_messages_match_dovecot() {
    let Some(dovecot) = Dovecot::start() else {
        return;
    };
    let count = std::env::var("FUZZ_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let mut rng = Rng(0x5EED_B0D1_5747_0F0F);
    let messages: Vec<Vec<u8>> = (0..count)
        .map(|_| to_crlf(&random_message(&mut rng)))
        .collect();
    let mut imap = Imap::login(dovecot.imap_port(), ALICE, PASSWORD);
    let uids: Vec<u32> = messages
        .iter()
        .map(|m| imap.append("INBOX", &[], m).1)
        .collect();
    imap.command("LOGOUT");
    let mut raw_imap = RawImap::login(dovecot.imap_port(), ALICE, PASSWORD);
    raw_imap.command("EXAMINE INBOX");
    let mut failures = Vec::new();
    let maildir = dovecot.maildir(ALICE);
    for (i, (msg, uid)) in messages.iter().zip(&uids).enumerate() {
        let from_dovecot = raw_imap.bodystructure(*uid);
        // From the stored file: Dovecot drops a lone CR at the very end
        // when it saves, so the appended bytes may differ from the file.
        let ours = content::body_structure(&stored_message(&maildir, *uid));
        if from_dovecot != ours {
            failures.push(format!(
                "message {i}: {}\n  dovecot: {}\n  ours:    {}\n  {}",
                show(msg),
                show(&from_dovecot),
                show(&ours),
                first_difference(&from_dovecot, &ours)
            ));
        }
    }
    eprintln!(
        "random messages: {} of {count} match Dovecot byte for byte",
        count - failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} mismatch(es):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// A debugging aid, not a check: APPENDs every file of `$PROBE_DIR` and
/// prints Dovecot's BODYSTRUCTURE next to ours.
/// `PROBE_DIR=/tmp/probe cargo test --test dovecot_bodystructure probe -- --ignored --nocapture`
#[test]
#[ignore = "debugging aid; needs PROBE_DIR"]
fn probe() {
    let Some(dir) = std::env::var_os("PROBE_DIR") else {
        return;
    };
    let Some(dovecot) = Dovecot::start() else {
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut imap = Imap::login(dovecot.imap_port(), ALICE, PASSWORD);
    let mut raw_imap = RawImap::login(dovecot.imap_port(), ALICE, PASSWORD);
    for path in files {
        let msg = to_crlf(&std::fs::read(&path).unwrap());
        let (_, uid) = imap.append("INBOX", &[], &msg);
        raw_imap.command("EXAMINE INBOX");
        let from_dovecot = raw_imap.bodystructure(uid);
        let ours = content::body_structure(&msg);
        eprintln!(
            "{}: {}\n  dovecot: {}\n  ours:    {}",
            path.display(),
            if from_dovecot == ours {
                "match"
            } else {
                "DIFFERENT"
            },
            show(&from_dovecot),
            show(&ours)
        );
    }
}
