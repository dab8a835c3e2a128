//! Optional RFC 5423 parameters of MessageNew / MessageAppend events that
//! come from the message itself: `messageContent`, `bodyStructure`,
//! `envelope`, and (our own) Message-ID, Subject and From.
//!
//! Pure code: [`extract`] takes the message file's bytes as stored (Maildir
//! files usually have LF line ends) and returns data. [`needs_file`] tells
//! the caller whether to read the file at all; with every parameter off
//! (the default, RFC 5423 §7) it never is.
//!
//! # messageContent
//!
//! As Cyrus IMAP does it (`event_content_inclusion_mode`,
//! `event_content_size`), on the message **with CRLF line ends**, as IMAP
//! (and Cyrus' spool) holds it: every LF not preceded by CR becomes CRLF,
//! and all sizes count those bytes. `max_size` 0 means no limit. The
//! header is everything up to and including the first empty line.
//!
//! | mode | content |
//! |---|---|
//! | `standard` | the whole message if it is at most `max_size` bytes, else none |
//! | `message` | the message, cut to `max_size` bytes |
//! | `header` | the header (with its empty line), cut to `max_size` bytes |
//! | `body` | the body, cut to `max_size` bytes |
//! | `headerbody` | the whole header, then the body cut to `max_size` bytes |
//!
//! A cut never splits a UTF-8 character: it moves back to the character's
//! start (so the content may be up to 3 bytes shorter than the cap). The
//! JSON string is then made with lossy UTF-8 decoding: bytes that are not
//! UTF-8 (8-bit legacy charsets, binary parts) become U+FFFD. Consumers
//! that need the exact bytes must fetch the message itself.
//!
//! # bodyStructure
//!
//! The IMAP BODYSTRUCTURE exactly as Dovecot 2.3 returns it for `FETCH
//! BODYSTRUCTURE` (checked byte for byte against 2.3.19.1 by
//! `tests/dovecot_bodystructure.rs`; see [`body_structure`]). It is
//! computed from the file as stored; LF or CRLF line ends give the same
//! result, with the sizes and line counts of the CRLF form. As a string:
//! header bytes that are not UTF-8 (a raw Latin-1 file name, say) sit in
//! IMAP literals and are decoded lossily, so such a literal's `{n}` no
//! longer counts its characters; [`body_structure`] gives the exact bytes.
//!
//! # envelope
//!
//! RFC 5423's `envelope` is the SMTP envelope of the final delivery, not
//! the IMAP ENVELOPE. A Maildir file does not keep it, but the delivery
//! agent writes it into the top of the header: `Return-Path:` (the `MAIL
//! FROM`) and `Delivered-To:` (Postfix, Dovecot LDA/LMTP) or else
//! `X-Original-To:` (the `RCPT TO`). Only the topmost of each counts (the
//! final delivery adds its own on top). The parameter is
//! `MAIL FROM:<sender>` and, when known, `\r\nRCPT TO:<recipient>`;
//! `None` without a `Return-Path:` (a message saved by a client, not
//! delivered). A null sender is `MAIL FROM:<>`.
//!
//! # Hostile messages
//!
//! A message is written by anyone who can send mail, so every parser here
//! is bounded: at most 100 nested MIME parts and 10,000 parts in all (as
//! Dovecot), no recursion deeper than that, and output that grows at most
//! linearly with the input (`tests/fuzz.rs` checks this, with 10,000
//! nested multiparts among its cases). [`extract`] is also the panic
//! boundary: each parameter, and so every call into `mail-parser` (a
//! dependency we do not control), is computed under `catch_unwind`, so a
//! panic there costs that parameter and leaves a warning ("internal error
//! …"), never the service. This needs the default
//! `panic = "unwind"`; a stack overflow cannot be caught, which is why the
//! depth limits matter.

mod address;
mod bodystructure;
mod mime;
mod rfc822;
#[cfg(test)]
mod tests;

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Deserialize;

pub use bodystructure::body_structure;

/// What `messageContent` holds; Cyrus' `event_content_inclusion_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InclusionMode {
    /// The whole message, or nothing when it is larger than the cap.
    #[default]
    Standard,
    /// The message, cut to the cap.
    Message,
    /// The header, cut to the cap.
    Header,
    /// The body, cut to the cap.
    Body,
    /// The whole header and the body cut to the cap.
    HeaderBody,
}

/// Which message-derived parameters to compute. All off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContentOptions {
    /// Include `messageContent`.
    pub message_content: bool,
    /// How `messageContent` is cut.
    pub mode: InclusionMode,
    /// Cap in bytes (of the CRLF form) for `messageContent`; 0 = no cap.
    pub max_size: usize,
    /// Include `bodyStructure`.
    pub body_structure: bool,
    /// Include `envelope` (the SMTP envelope).
    pub envelope: bool,
    /// Include the Message-ID.
    pub message_id: bool,
    /// Include the decoded Subject.
    pub subject: bool,
    /// Include the first From address.
    pub from: bool,
    /// At most this many bytes of a message file are read for any of the
    /// above; a larger file gets none of them. 0: the caller's default.
    pub max_read: u64,
}

/// The parameters computed from one message. A field is `None` when not
/// asked for or not available.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Content {
    /// RFC 5423 `messageContent`.
    pub message_content: Option<String>,
    /// RFC 5423 `bodyStructure`.
    pub body_structure: Option<String>,
    /// RFC 5423 `envelope`: `MAIL FROM:<…>[\r\nRCPT TO:<…>]`.
    pub envelope: Option<String>,
    /// The Message-ID in angle brackets, `<id@host>`.
    pub message_id: Option<String>,
    /// The Subject with RFC 2047 words decoded.
    pub subject: Option<String>,
    /// The first From address: `Name <addr>` or `addr`.
    pub from: Option<String>,
    /// What could not be computed, and why (for a log line).
    pub warnings: Vec<String>,
}

impl Content {
    /// The computed parameters as event keys: RFC 5423 names, our own
    /// ones under `vnd.maildir.`.
    pub fn parameters(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("messageContent", &self.message_content),
            ("bodyStructure", &self.body_structure),
            ("envelope", &self.envelope),
            ("vnd.maildir.messageId", &self.message_id),
            ("vnd.maildir.subject", &self.subject),
            ("vnd.maildir.from", &self.from),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key, value.as_deref()?)))
    }
}

/// Whether [`extract`] needs the message at all: false when every
/// parameter is off, and then the file is never read.
pub fn needs_file(opts: &ContentOptions) -> bool {
    opts.message_content
        || opts.body_structure
        || opts.envelope
        || opts.message_id
        || opts.subject
        || opts.from
}

/// Computes the parameters `opts` asks for from the message as stored.
/// Never panics; what cannot be computed is `None` with a warning. An
/// empty file is no message: nothing but a warning.
pub fn extract(raw: &[u8], opts: &ContentOptions) -> Content {
    let mut content = Content::default();
    if !needs_file(opts) {
        return content;
    }
    if raw.is_empty() {
        content.warnings.push("the message file is empty".into());
        return content;
    }
    if opts.message_content {
        match catch_unwind(|| message_content(raw, opts)) {
            Ok(mc) => content.message_content = mc,
            Err(_) => content
                .warnings
                .push("messageContent: internal error while cutting the message".into()),
        }
    }
    if opts.body_structure {
        match catch_unwind(|| body_structure(raw)) {
            Ok(bs) => content.body_structure = Some(String::from_utf8_lossy(&bs).into_owned()),
            Err(_) => content
                .warnings
                .push("bodyStructure: internal error while parsing the message".into()),
        }
    }
    if opts.envelope {
        match catch_unwind(|| smtp_envelope(raw)) {
            Ok(Ok(envelope)) => content.envelope = envelope,
            Ok(Err(warning)) => content.warnings.push(warning),
            Err(_) => content
                .warnings
                .push("envelope: internal error while reading the header".into()),
        }
    }
    if opts.message_id || opts.subject || opts.from {
        header_fields(raw, opts, &mut content);
    }
    content
}

/// Is `raw[i]` an LF without CR before it (one more byte in CRLF form)?
fn bare_lf(raw: &[u8], i: usize) -> bool {
    raw[i] == b'\n' && (i == 0 || raw[i - 1] != b'\r')
}

/// Size of `raw` with CRLF line ends.
fn crlf_len(raw: &[u8]) -> usize {
    raw.len() + (0..raw.len()).filter(|&i| bare_lf(raw, i)).count()
}

/// Bytes `start..end` of `raw` in CRLF form, without converting the rest.
fn crlf_slice(raw: &[u8], start: usize, end: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(end.saturating_sub(start).min(raw.len() * 2));
    let mut pos = 0;
    for (i, &c) in raw.iter().enumerate() {
        if bare_lf(raw, i) {
            if pos >= end {
                break;
            }
            if pos >= start {
                out.push(b'\r');
            }
            pos += 1;
        }
        if pos >= end {
            break;
        }
        if pos >= start {
            out.push(c);
        }
        pos += 1;
    }
    out
}

/// Length of the header including the empty line that ends it; the whole
/// message when there is no empty line.
fn header_len(msg: &[u8]) -> usize {
    let mut pos = 0;
    while pos < msg.len() {
        let line_end = msg[pos..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(msg.len(), |i| pos + i + 1);
        let line = &msg[pos..line_end];
        if line == b"\n" || line == b"\r\n" {
            return line_end;
        }
        pos = line_end;
    }
    msg.len()
}

fn message_content(raw: &[u8], opts: &ContentOptions) -> Option<String> {
    let cap = if opts.max_size == 0 {
        usize::MAX
    } else {
        opts.max_size
    };
    let size = crlf_len(raw);
    let header = crlf_len(&raw[..header_len(raw)]);
    let body = size - header;
    let (start, end) = match opts.mode {
        InclusionMode::Standard if size <= cap => (0, size),
        InclusionMode::Standard => return None,
        InclusionMode::Message => (0, size.min(cap)),
        InclusionMode::Header => (0, header.min(cap)),
        InclusionMode::Body => (header, header + body.min(cap)),
        InclusionMode::HeaderBody => (0, header + body.min(cap)),
    };
    let mut slice = crlf_slice(raw, start, end);
    if end < size {
        slice.truncate(utf8_cut(&slice));
    }
    Some(String::from_utf8_lossy(&slice).into_owned())
}

/// Where to cut `s` so that it does not end inside a UTF-8 sequence.
fn utf8_cut(s: &[u8]) -> usize {
    for back in 1..=3.min(s.len()) {
        let c = s[s.len() - back];
        if c & 0xC0 == 0x80 {
            continue; // continuation byte: look further back
        }
        let width = match c {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return s.len(),
        };
        return if width > back {
            s.len() - back
        } else {
            s.len()
        };
    }
    s.len()
}

/// The topmost value of each header `names` asks for, unfolded.
fn top_headers(raw: &[u8], names: &[&str]) -> Vec<Option<Vec<u8>>> {
    let mut found = vec![None; names.len()];
    let mut reader = mime::HeaderReader::new(raw, 0);
    while let Some(field) = reader.next_field() {
        if field.eoh {
            break;
        }
        for (i, name) in names.iter().enumerate() {
            if found[i].is_none() && field.name.eq_ignore_ascii_case(name.as_bytes()) {
                found[i] = Some(field.value.clone());
            }
        }
    }
    found
}

/// The SMTP envelope from `Return-Path:` and `Delivered-To:` /
/// `X-Original-To:`; `Ok(None)` when the message was not delivered.
fn smtp_envelope(raw: &[u8]) -> Result<Option<String>, String> {
    let [return_path, delivered_to, original_to]: [Option<Vec<u8>>; 3] =
        top_headers(raw, &["Return-Path", "Delivered-To", "X-Original-To"])
            .try_into()
            .unwrap_or_default();
    let Some(return_path) = return_path else {
        return Ok(None);
    };
    let sender = smtp_path(&return_path)
        .ok_or_else(|| format!("envelope: unusable Return-Path {:?}", lossy(&return_path)))?;
    let mut envelope = format!("MAIL FROM:<{sender}>");
    if let Some(rcpt) = delivered_to.or(original_to) {
        let recipient = smtp_path(&rcpt)
            .filter(|r| !r.is_empty())
            .ok_or_else(|| format!("envelope: unusable recipient header {:?}", lossy(&rcpt)))?;
        envelope.push_str(&format!("\r\nRCPT TO:<{recipient}>"));
    }
    Ok(Some(envelope))
}

/// The address of `<addr>` or a bare `addr`; `None` when it is not one
/// (whitespace, controls, brackets inside, not UTF-8).
fn smtp_path(value: &[u8]) -> Option<String> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let inner = match value.strip_prefix('<') {
        Some(rest) => rest.split_once('>')?.0,
        None => value,
    };
    let ok = inner
        .chars()
        .all(|c| !c.is_whitespace() && !c.is_control() && c != '<' && c != '>');
    ok.then(|| inner.to_string())
}

/// A header value for a warning: lossy UTF-8, cut after
/// [`WARNING_VALUE_MAX`] bytes so that a huge header gives a short line.
fn lossy(bytes: &[u8]) -> String {
    match bytes.get(..WARNING_VALUE_MAX) {
        Some(head) if bytes.len() > WARNING_VALUE_MAX => {
            format!("{}…", String::from_utf8_lossy(head))
        }
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// How many bytes of a header value a warning shows.
const WARNING_VALUE_MAX: usize = 100;

/// Message-ID, Subject and From, decoded by mail-parser from the header.
fn header_fields(raw: &[u8], opts: &ContentOptions, content: &mut Content) {
    let header = &raw[..header_len(raw)];
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        let message = mail_parser::MessageParser::default().parse_headers(header)?;
        let message_id = message.message_id().map(|id| format!("<{id}>"));
        let subject = message.subject().map(str::to_string);
        let from = message.from().and_then(|a| a.first()).and_then(|addr| {
            let name = addr
                .name
                .as_deref()
                .map(str::trim)
                .filter(|n| !n.is_empty());
            match (name, addr.address.as_deref()) {
                (Some(name), Some(address)) => Some(format!("{name} <{address}>")),
                (None, Some(address)) => Some(address.to_string()),
                (Some(name), None) => Some(name.to_string()),
                (None, None) => None,
            }
        });
        Some((message_id, subject, from))
    }));
    match parsed {
        Ok(Some((message_id, subject, from))) => {
            if opts.message_id {
                content.message_id = message_id;
            }
            if opts.subject {
                content.subject = subject;
            }
            if opts.from {
                content.from = from;
            }
        }
        Ok(None) => content
            .warnings
            .push("the message has no header fields: no Message-ID, Subject or From".into()),
        Err(_) => content.warnings.push(
            "internal error while decoding the header: no Message-ID, Subject or From".into(),
        ),
    }
}
