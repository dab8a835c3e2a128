//! The IMAP `BODYSTRUCTURE` of a message, byte for byte as Dovecot 2.3
//! answers `FETCH BODYSTRUCTURE` (`lib-imap/imap-bodystructure.c`,
//! `imap-envelope.c`, `imap-quote.c`).
//!
//! How Dovecot writes values, kept here:
//! - types, subtypes and parameters as written in the message (no case
//!   change), RFC 2231 continuations joined but still percent-encoded
//!   (`"filename*" "utf-8''%E2%82%AC.txt"`);
//! - a string becomes a literal `{n}\r\n…` when it holds CR, LF, 8-bit
//!   bytes or more than four `"`/`\`; otherwise a quoted string;
//! - `Content-ID`, `-Description`, `-MD5`, `-Location` and the envelope's
//!   Date, In-Reply-To and Message-ID lose their folding newlines first;
//!   the Subject and display names have whitespace runs squeezed;
//! - text parts without a charset get `("charset" "us-ascii")`;
//! - sizes and line counts are those of the message with CRLF line ends.

use super::address::Address;
use super::mime::{self, Envelope, FLAG_MESSAGE_RFC822, FLAG_MULTIPART, FLAG_OVERFLOW, Part};
use super::rfc822::eq_ci;

const EMPTY_BODYSTRUCTURE: &[u8] =
    b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)";

/// The parenthesized list Dovecot sends after `BODYSTRUCTURE `, computed
/// from the message as stored (LF or CRLF line ends give the same result).
///
/// Bytes, not a string: literals may carry 8-bit header bytes as they are.
pub fn body_structure(raw: &[u8]) -> Vec<u8> {
    let parts = mime::parse(raw);
    let mut out = Vec::with_capacity(256);
    out.push(b'(');
    write_part(&parts, 0, &mut out);
    out.push(b')');
    out
}

fn write_part(parts: &[Part], idx: usize, out: &mut Vec<u8>) {
    if parts[idx].flags & FLAG_MULTIPART != 0 {
        write_multipart(parts, idx, out);
    } else {
        write_body(parts, idx, out);
    }
}

fn write_children(parts: &[Part], idx: usize, out: &mut Vec<u8>) {
    for &child in &parts[idx].children {
        out.push(b'(');
        write_part(parts, child, out);
        out.push(b')');
    }
}

fn write_multipart(parts: &[Part], idx: usize, out: &mut Vec<u8>) {
    let part = &parts[idx];
    let data = &part.data;
    if part.children.is_empty() {
        // No parts in a multipart: one empty text/plain part instead.
        out.extend_from_slice(EMPTY_BODYSTRUCTURE);
    } else {
        write_children(parts, idx, out);
    }
    out.push(b' ');
    append_string(out, data.content_subtype.as_deref().unwrap_or(b""));
    out.push(b' ');
    write_params(out, &data.content_type_params, false);
    write_common(out, data);
}

fn write_body(parts: &[Part], idx: usize, out: &mut Vec<u8>) {
    let part = &parts[idx];
    let data = &part.data;
    let rfc822 = part.flags & FLAG_MESSAGE_RFC822 != 0;
    let text = if rfc822 {
        out.extend_from_slice(b"\"message\" \"rfc822\"");
        false
    } else if part.flags & FLAG_OVERFLOW != 0 {
        out.extend_from_slice(b"\"application\" \"octet-stream\"");
        false
    } else if let Some(ty) = &data.content_type {
        append_string(out, ty);
        out.push(b' ');
        append_string(out, data.content_subtype.as_deref().unwrap_or(b""));
        eq_ci(ty, b"text")
    } else {
        out.extend_from_slice(b"\"text\" \"plain\"");
        true
    };
    out.push(b' ');
    write_params(out, &data.content_type_params, text);
    out.push(b' ');
    append_nstring_nolf(out, data.content_id.as_deref());
    out.push(b' ');
    append_nstring_nolf(out, data.content_description.as_deref());
    out.push(b' ');
    match &data.content_transfer_encoding {
        Some(cte) => append_string(out, cte),
        None => out.extend_from_slice(b"\"7bit\""),
    }
    out.extend_from_slice(format!(" {}", part.body_size.virtual_).as_bytes());
    if text {
        out.extend_from_slice(format!(" {}", part.body_size.lines).as_bytes());
    } else if rfc822 {
        if let Some(&child) = part.children.first() {
            out.extend_from_slice(b" (");
            write_envelope(out, parts[child].data.envelope.as_ref());
            out.extend_from_slice(b") ");
            write_children(parts, idx, out);
        }
        out.extend_from_slice(format!(" {}", part.body_size.lines).as_bytes());
    }
    out.push(b' ');
    append_nstring_nolf(out, data.content_md5.as_deref());
    write_common(out, data);
}

/// Disposition, language and location: the extension data both kinds of
/// part share.
fn write_common(out: &mut Vec<u8>, data: &mime::PartData) {
    out.push(b' ');
    match &data.content_disposition {
        None => out.extend_from_slice(b"NIL"),
        Some(disposition) => {
            out.push(b'(');
            append_string(out, disposition);
            out.push(b' ');
            write_params(out, &data.content_disposition_params, false);
            out.push(b')');
        }
    }
    out.push(b' ');
    match &data.content_language {
        None => out.extend_from_slice(b"NIL"),
        Some(langs) => {
            out.push(b'(');
            for (i, lang) in langs.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                append_string(out, lang);
            }
            out.push(b')');
        }
    }
    out.push(b' ');
    append_nstring_nolf(out, data.content_location.as_deref());
}

fn write_params(out: &mut Vec<u8>, params: &[(Vec<u8>, Vec<u8>)], default_charset: bool) {
    if !default_charset && params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    let mut seen_charset = false;
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        if default_charset && eq_ci(name, b"charset") {
            seen_charset = true;
        }
        append_string(out, name);
        out.push(b' ');
        append_string(out, value);
    }
    if default_charset && !seen_charset {
        if !params.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(b"\"charset\" \"us-ascii\"");
    }
    out.push(b')');
}

fn write_envelope(out: &mut Vec<u8>, env: Option<&Envelope>) {
    let Some(env) = env else {
        out.extend_from_slice(b"NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL");
        return;
    };
    append_nstring_nolf(out, env.date.as_deref());
    out.push(b' ');
    match &env.subject {
        None => out.extend_from_slice(b"NIL"),
        Some(subject) => append_string_for_humans(out, subject),
    }
    let or_from = |list: &'_ [Address]| -> Vec<Address> {
        if list.is_empty() {
            env.from.clone()
        } else {
            list.to_vec()
        }
    };
    for list in [
        env.from.clone(),
        or_from(&env.sender),
        or_from(&env.reply_to),
        env.to.clone(),
        env.cc.clone(),
        env.bcc.clone(),
    ] {
        out.push(b' ');
        write_addresses(out, &list);
    }
    out.push(b' ');
    append_nstring_nolf(out, env.in_reply_to.as_deref());
    out.push(b' ');
    append_nstring_nolf(out, env.message_id.as_deref());
}

fn write_addresses(out: &mut Vec<u8>, list: &[Address]) {
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for addr in list {
        out.push(b'(');
        match &addr.name {
            None => out.extend_from_slice(b"NIL"),
            Some(name) => append_string_for_humans(out, name),
        }
        out.push(b' ');
        append_nstring(out, addr.route.as_deref());
        out.push(b' ');
        append_nstring(out, addr.mailbox.as_deref());
        out.push(b' ');
        append_nstring(out, addr.domain.as_deref());
        out.push(b')');
    }
    out.push(b')');
}

/// Dovecot switches to a literal after this many `"` or `\`.
const QUOTED_MAX_ESCAPE_CHARS: usize = 4;

/// `imap_append_string`: a quoted string, or a literal when needed.
pub(crate) fn append_string(out: &mut Vec<u8>, src: &[u8]) {
    append_nstring(out, Some(src));
}

/// `imap_append_nstring`: `NIL`, a quoted string or a literal.
pub(crate) fn append_nstring(out: &mut Vec<u8>, src: Option<&[u8]>) {
    let Some(src) = src else {
        out.extend_from_slice(b"NIL");
        return;
    };
    let mut escapes = 0;
    let mut literal = false;
    for &c in src {
        match c {
            b'"' | b'\\' => {
                if escapes >= QUOTED_MAX_ESCAPE_CHARS {
                    literal = true;
                    break;
                }
                escapes += 1;
            }
            b'\r' | b'\n' => {
                literal = true;
                break;
            }
            c if c >= 0x80 => {
                literal = true;
                break;
            }
            _ => {}
        }
    }
    if literal {
        out.extend_from_slice(format!("{{{}}}\r\n", src.len()).as_bytes());
        out.extend_from_slice(src);
        return;
    }
    out.push(b'"');
    for &c in src {
        if c == b'"' || c == b'\\' {
            out.push(b'\\');
        }
        out.push(c);
    }
    out.push(b'"');
}

/// `imap_append_nstring_nolf`: folding newlines removed first (a space is
/// put in when the next line does not start with one).
fn append_nstring_nolf(out: &mut Vec<u8>, src: Option<&[u8]>) {
    let Some(src) = src.filter(|s| s.iter().any(|&c| c == b'\r' || c == b'\n')) else {
        append_nstring(out, src);
        return;
    };
    let mut clean = Vec::with_capacity(src.len());
    for (i, &c) in src.iter().enumerate() {
        if c != b'\r' && c != b'\n' {
            clean.push(c);
        } else if !matches!(
            src.get(i + 1),
            None | Some(b' ' | b'\t' | b'\r' | b'\n' | 0)
        ) {
            clean.push(b' ');
        }
    }
    append_nstring(out, Some(&clean));
}

/// `imap_append_string_for_humans`: whitespace runs (TAB, CR, LF too)
/// become one space, leading and trailing whitespace goes, NUL becomes
/// 0x80; a literal when anything had to change.
fn append_string_for_humans(out: &mut Vec<u8>, src: &[u8]) {
    let lwsp = |c: u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let mut remove = 0;
    let mut whitespace_prefix = true;
    let mut last_lwsp = true;
    let mut modify = false;
    for &c in src {
        match c {
            0 => {
                last_lwsp = false;
                modify = true;
            }
            b'\r' | b'\n' | b'\t' | b' ' => {
                if c != b' ' {
                    modify = true;
                }
                if last_lwsp {
                    modify = true;
                    remove += 1;
                }
                last_lwsp = true;
            }
            b'"' | b'\\' => {
                modify = true;
                last_lwsp = false;
            }
            c => {
                if c & 0x80 != 0 {
                    modify = true;
                }
                last_lwsp = false;
            }
        }
        if !last_lwsp {
            whitespace_prefix = false;
        }
    }
    if last_lwsp && !src.is_empty() && !whitespace_prefix {
        modify = true;
        remove += 1;
    }
    if !modify {
        out.push(b'"');
        out.extend_from_slice(src);
        out.push(b'"');
        return;
    }
    if src.len() == remove {
        out.extend_from_slice(b"\"\"");
        return;
    }
    out.extend_from_slice(format!("{{{}}}\r\n", src.len() - remove).as_bytes());
    let mut last_lwsp = true;
    let mut whitespace_prefix = true;
    for &c in src {
        if c == 0 {
            out.push(0x80);
            last_lwsp = false;
        } else if lwsp(c) {
            if !last_lwsp {
                out.push(b' ');
            }
            last_lwsp = true;
        } else {
            last_lwsp = false;
            out.push(c);
        }
        if !last_lwsp {
            whitespace_prefix = false;
        }
    }
    if last_lwsp && !src.is_empty() && !whitespace_prefix {
        out.pop();
    }
}
