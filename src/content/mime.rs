//! The MIME structure of a message exactly as Dovecot 2.3 sees it: a port
//! of `lib-mail/message-parser.c` (part tree, boundaries, sizes),
//! `message-header-parser.c` (header lines; flags `SKIP_INITIAL_LWSP |
//! DROP_CR` as `index-mail.c` uses them) and `message-part-data.c` (the
//! `Content-*` fields and the envelope of `message/rfc822` parts).
//!
//! Dovecot parses a stream in blocks; here the whole message is one block
//! with the end known, which gives the same parts (the C code keeps a
//! possible `[CR]LF--boundary` in its buffer across blocks for exactly
//! that reason). Sizes are IMAP sizes: `virtual` counts every bare LF as
//! CRLF, so LF and CRLF files give the same numbers.
//!
//! Quirks kept on purpose, because Dovecot has them:
//! - without `Mime-Version:` and `Content-Type:` every `Content-*` header
//!   is ignored (the part is text/plain, 7bit);
//! - a boundary only has to be a prefix of the `--` line; the longest
//!   matching open boundary wins;
//! - the (CR)LF before a boundary line belongs to the boundary, and a part
//!   whose header ends at a boundary gives its last newline to the parent;
//! - at most 100 nested parts; beyond that a multipart or message/rfc822
//!   part is a plain application/octet-stream body (its parameters kept);
//!   after 10,000 parts no more boundaries are looked for.

use super::address::{self, Address};
use super::rfc822::{Rfc822, cstr, eq_ci};

pub(crate) const FLAG_IS_MIME: u8 = 1;
pub(crate) const FLAG_TEXT: u8 = 2;
pub(crate) const FLAG_MULTIPART: u8 = 4;
pub(crate) const FLAG_MULTIPART_DIGEST: u8 = 8;
pub(crate) const FLAG_MESSAGE_RFC822: u8 = 16;
/// A multipart or message/rfc822 part cut off by the nesting limit:
/// written as application/octet-stream.
pub(crate) const FLAG_OVERFLOW: u8 = 32;

/// Dovecot's `MESSAGE_PARSER_DEFAULT_MAX_NESTED_MIME_PARTS`.
const MAX_NESTED_MIME_PARTS: usize = 100;
/// Dovecot's `MESSAGE_PARSER_DEFAULT_MAX_TOTAL_MIME_PARTS`.
const MAX_TOTAL_MIME_PARTS: usize = 10_000;
/// RFC 2046 allows 70; Dovecot truncates longer boundaries to 80.
const BOUNDARY_STRING_MAX_LEN: usize = 70 + 10;
const BOUNDARY_END_MAX_LEN: usize = BOUNDARY_STRING_MAX_LEN + 2 + 2;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Size {
    pub physical: u64,
    /// With CRLF line ends: what IMAP reports.
    pub virtual_: u64,
    pub lines: u64,
}

impl Size {
    fn add(&mut self, other: &Size) {
        self.physical += other.physical;
        self.virtual_ += other.virtual_;
        self.lines += other.lines;
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Envelope {
    pub date: Option<Vec<u8>>,
    pub subject: Option<Vec<u8>>,
    pub from: Vec<Address>,
    pub sender: Vec<Address>,
    pub reply_to: Vec<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub bcc: Vec<Address>,
    pub in_reply_to: Option<Vec<u8>>,
    pub message_id: Option<Vec<u8>>,
}

/// `message_part_data`: the `Content-*` fields of one part.
#[derive(Debug, Clone, Default)]
pub(crate) struct PartData {
    pub content_type: Option<Vec<u8>>,
    pub content_subtype: Option<Vec<u8>>,
    pub content_type_params: Vec<(Vec<u8>, Vec<u8>)>,
    pub content_transfer_encoding: Option<Vec<u8>>,
    pub content_id: Option<Vec<u8>>,
    pub content_description: Option<Vec<u8>>,
    pub content_disposition: Option<Vec<u8>>,
    pub content_disposition_params: Vec<(Vec<u8>, Vec<u8>)>,
    pub content_md5: Option<Vec<u8>>,
    pub content_language: Option<Vec<Vec<u8>>>,
    pub content_location: Option<Vec<u8>>,
    /// Only for the child of a message/rfc822 part.
    pub envelope: Option<Envelope>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Part {
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    pub flags: u8,
    pub header_size: Size,
    pub body_size: Size,
    pub data: PartData,
}

/// One header field with its continuation lines (`full_value`: joined
/// with `\n`, leading whitespace of the first line skipped).
pub(crate) struct HeaderLine {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
    pub eoh: bool,
    /// Size of the last physical line's newline (0, 1 or 2).
    newline_size: usize,
}

/// Reads header fields from `buf[pos..]`, counting their size.
pub(crate) struct HeaderReader<'a> {
    buf: &'a [u8],
    pub pos: usize,
    eoh: bool,
    pub size: Size,
}

impl<'a> HeaderReader<'a> {
    pub(crate) fn new(buf: &'a [u8], pos: usize) -> Self {
        HeaderReader {
            buf,
            pos,
            eoh: false,
            size: Size::default(),
        }
    }

    /// The next field, the end-of-header line (`eoh`), or `None` at the
    /// end of the data or after the end-of-header line.
    pub(crate) fn next_field(&mut self) -> Option<HeaderLine> {
        if self.eoh || self.pos >= self.buf.len() {
            return None;
        }
        let mut field = HeaderLine {
            name: Vec::new(),
            value: Vec::new(),
            eoh: false,
            newline_size: 0,
        };
        let mut first = true;
        loop {
            let start = self.pos;
            let rest = &self.buf[start..];
            let (content, next, newline_size) = match rest.iter().position(|&c| c == b'\n') {
                Some(i) => {
                    let crlf = i > 0 && rest[i - 1] == b'\r';
                    let end = if crlf { i - 1 } else { i };
                    self.size.lines += 1;
                    if !crlf {
                        self.size.virtual_ += 1;
                    }
                    (&rest[..end], start + i + 1, if crlf { 2 } else { 1 })
                }
                None => (rest, self.buf.len(), 0),
            };
            let skipped = (next - start) as u64;
            self.size.physical += skipped;
            self.size.virtual_ += skipped;
            self.pos = next;
            field.newline_size = newline_size;
            if first {
                if content.is_empty() {
                    self.eoh = true;
                    field.eoh = true;
                    return Some(field);
                }
                match content.iter().position(|&c| c == b':') {
                    Some(colon) => {
                        let mut name_end = colon;
                        while name_end > 0 && is_lwsp(content[name_end - 1]) {
                            name_end -= 1;
                        }
                        field.name = content[..name_end].to_vec();
                        let value = &content[colon + 1..];
                        let mut skip = value.iter().take_while(|&&c| is_lwsp(c)).count();
                        if skip == value.len() && !value.is_empty() {
                            // only whitespace: skip just one
                            skip = 1;
                        }
                        field.value = value[skip..].to_vec();
                    }
                    None => field.name = content.to_vec(),
                }
                first = false;
            } else {
                field.value.push(b'\n');
                field.value.extend_from_slice(content);
            }
            let continues = newline_size > 0 && self.buf.get(self.pos).is_some_and(|&c| is_lwsp(c));
            if !continues {
                return Some(field);
            }
        }
    }
}

fn is_lwsp(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// `name` (a C string) starts with `prefix`, case-insensitively.
fn starts_with_ci(name: &[u8], prefix: &[u8]) -> bool {
    let name = cstr(name);
    name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Dovecot's `message_header_strdup`: NULs become U+FFFD.
fn header_strdup(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for &c in value {
        if c == 0 {
            out.extend_from_slice("\u{FFFD}".as_bytes());
        } else {
            out.push(c);
        }
    }
    out
}

struct Boundary {
    part: usize,
    boundary: Vec<u8>,
    epilogue_found: bool,
}

#[derive(Clone, Copy)]
enum Step {
    HeaderInit,
    Header,
    BodyToBoundary,
    BodyToEof,
    SkipBoundaryLine,
    MimeHeaderInit,
    Rfc822Init,
    Done,
}

struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
    parts: Vec<Part>,
    cur: usize,
    /// Open boundaries, newest last.
    boundaries: Vec<Boundary>,
    last_boundary: Option<Vec<u8>>,
    last_chr: u8,
    multipart: bool,
    part_seen_content_type: bool,
    prev_hdr_newline_size: usize,
    hdr: HeaderReader<'a>,
    nested_parts: usize,
    total_parts: usize,
}

/// Parses `raw` into its part tree; `parts[0]` is the message.
pub(crate) fn parse(raw: &[u8]) -> Vec<Part> {
    let mut p = Parser {
        buf: raw,
        pos: 0,
        parts: vec![Part::default()],
        cur: 0,
        boundaries: Vec::new(),
        last_boundary: None,
        last_chr: b'\n',
        multipart: false,
        part_seen_content_type: false,
        prev_hdr_newline_size: 0,
        hdr: HeaderReader::new(raw, 0),
        nested_parts: 0,
        total_parts: 0,
    };
    let mut step = Step::HeaderInit;
    loop {
        step = match step {
            Step::HeaderInit => p.header_init(),
            Step::Header => p.next_header(),
            Step::BodyToBoundary => p.body_to_boundary(),
            Step::BodyToEof => p.body_to_eof(),
            Step::SkipBoundaryLine => p.skip_boundary_line(),
            Step::MimeHeaderInit => {
                p.part_append();
                p.parts[p.cur].flags |= FLAG_IS_MIME;
                p.header_init()
            }
            Step::Rfc822Init => {
                p.part_append();
                p.header_init()
            }
            Step::Done => break,
        };
    }
    // End of input: sum the open parts into their parents.
    while p.parts[p.cur].parent.is_some() {
        p.part_finish();
    }
    p.parts
}

impl Parser<'_> {
    fn part_append(&mut self) {
        let parent = self.cur;
        self.parts.push(Part {
            parent: Some(parent),
            ..Part::default()
        });
        let child = self.parts.len() - 1;
        self.parts[parent].children.push(child);
        self.cur = child;
        self.nested_parts += 1;
        self.total_parts += 1;
    }

    fn part_finish(&mut self) {
        let child = self.cur;
        let Some(parent) = self.parts[child].parent else {
            return;
        };
        let (body, header) = (self.parts[child].body_size, self.parts[child].header_size);
        self.parts[parent].body_size.add(&body);
        self.parts[parent].body_size.add(&header);
        self.cur = parent;
        self.nested_parts = self.nested_parts.saturating_sub(1);
    }

    fn too_many_nested(&self) -> bool {
        self.nested_parts + 1 >= MAX_NESTED_MIME_PARTS
    }

    /// Adds `buf[pos..pos + size]` to the current part's body.
    fn add_block(&mut self, size: usize) {
        let end = (self.pos + size).min(self.buf.len());
        let data = &self.buf[self.pos..end];
        if data.is_empty() {
            return;
        }
        let mut missing_cr = 0u64;
        let mut lines = 0u64;
        for (i, &c) in data.iter().enumerate() {
            if c == b'\n' {
                lines += 1;
                let prev = if i == 0 { self.last_chr } else { data[i - 1] };
                if prev != b'\r' {
                    missing_cr += 1;
                }
            }
        }
        self.last_chr = data[data.len() - 1];
        let size = &mut self.parts[self.cur].body_size;
        size.lines += lines;
        size.physical += data.len() as u64;
        size.virtual_ += data.len() as u64 + missing_cr;
        self.pos = end;
    }

    fn header_init(&mut self) -> Step {
        self.hdr = HeaderReader::new(self.buf, self.pos);
        self.part_seen_content_type = false;
        self.prev_hdr_newline_size = 0;
        Step::Header
    }

    /// Is `buf[at..]` a `--boundary` line of an open boundary? Returns its
    /// index (and records whether it is the closing `--boundary--`).
    fn boundary_line_find(&mut self, at: usize) -> Option<usize> {
        let data = self.buf.get(at..)?;
        if data.len() < 2 || &data[..2] != b"--" {
            return None;
        }
        let data = &data[2..];
        let find_size = match data.iter().position(|&c| c == b'\n') {
            Some(lf) => {
                let mut n = lf;
                if n > 0 && data[n - 1] == b'\r' {
                    n -= 1;
                }
                if n > 2 && data[n - 1] == b'-' && data[n - 2] == b'-' {
                    n -= 2;
                }
                n
            }
            None => data.len().min(BOUNDARY_END_MAX_LEN),
        };
        // Newest first; the longest prefix wins; an exact match ends it.
        let mut best: Option<usize> = None;
        for (i, b) in self.boundaries.iter().enumerate().rev() {
            let len = b.boundary.len();
            if len <= find_size
                && data[..len] == b.boundary[..]
                && best.is_none_or(|x| self.boundaries[x].boundary.len() < len)
            {
                best = Some(i);
                if len == find_size {
                    break;
                }
            }
        }
        let i = best?;
        let len = self.boundaries[i].boundary.len();
        self.boundaries[i].epilogue_found = data.len() >= len + 2 && &data[len..len + 2] == b"--";
        Some(i)
    }

    fn next_header(&mut self) -> Step {
        let have_data = self.pos < self.buf.len();
        if have_data
            && at_eoh(&self.buf[self.pos..])
            && self.last_boundary.is_some()
            && self.parts[self.cur].flags & FLAG_IS_MIME != 0
        {
            // About to start a multipart body: open its boundary already,
            // so that "\n--boundary" is matched against it first.
            if !self.too_many_nested() {
                if let Some(boundary) = self.last_boundary.take() {
                    self.boundaries.push(Boundary {
                        part: self.cur,
                        boundary,
                        epilogue_found: false,
                    });
                }
                self.multipart = true;
            } else {
                self.parts[self.cur].flags &= !FLAG_MULTIPART;
                self.parts[self.cur].flags |= FLAG_OVERFLOW;
            }
        }
        let mut field = None;
        let mut at_boundary = false;
        if have_data
            && !self.boundaries.is_empty()
            && let Some(b) = self.boundary_line_find(self.pos)
        {
            // Our own body may begin with our own boundary: not yet.
            at_boundary = self.boundaries[b].part != self.cur;
        }
        if at_boundary {
            // The header ends at a boundary; its last newline belongs to
            // the boundary, so to the parent's body.
            if self.prev_hdr_newline_size > 0 {
                let nl = self.prev_hdr_newline_size as u64;
                let part = &mut self.parts[self.cur];
                part.header_size.lines = part.header_size.lines.saturating_sub(1);
                part.header_size.physical = part.header_size.physical.saturating_sub(nl);
                part.header_size.virtual_ = part.header_size.virtual_.saturating_sub(2);
                if let Some(parent) = part.parent {
                    let body = &mut self.parts[parent].body_size;
                    body.lines += 1;
                    body.physical += nl;
                    body.virtual_ += 2;
                }
            }
        } else {
            let mut hdr = std::mem::replace(&mut self.hdr, HeaderReader::new(self.buf, 0));
            field = hdr.next_field();
            self.pos = hdr.pos;
            self.parts[self.cur].header_size = hdr.size;
            self.hdr = hdr;
        }
        let Some(field) = field else {
            return self.end_of_headers();
        };
        if !field.eoh {
            let part = self.cur;
            if eq_ci(&field.name, b"Mime-Version") {
                self.parts[part].flags |= FLAG_IS_MIME;
            } else if eq_ci(&field.name, b"Content-Type") {
                self.parts[part].flags |= FLAG_IS_MIME;
                self.parse_content_type(&field.value);
            }
            self.part_data_header(&field);
        }
        self.prev_hdr_newline_size = field.newline_size;
        Step::Header
    }

    /// The message parser's own look at `Content-Type`: part flags and the
    /// boundary.
    fn parse_content_type(&mut self, value: &[u8]) {
        if self.part_seen_content_type {
            return;
        }
        self.part_seen_content_type = true;
        let mut p = Rfc822::new(value);
        p.skip_lwsp();
        let mut ct = Vec::new();
        let ret = p.parse_content_type(&mut ct);
        let part = &mut self.parts[self.cur];
        if ct.eq_ignore_ascii_case(b"message/rfc822") {
            part.flags |= FLAG_MESSAGE_RFC822;
        } else if ct.len() >= 4
            && ct[..4].eq_ignore_ascii_case(b"text")
            && (ct.len() == 4 || ct[4] == b'/')
        {
            part.flags |= FLAG_TEXT;
        } else if ct.len() >= 10 && ct[..10].eq_ignore_ascii_case(b"multipart/") {
            part.flags |= FLAG_MULTIPART;
            if ct[10..].eq_ignore_ascii_case(b"digest") {
                part.flags |= FLAG_MULTIPART_DIGEST;
            }
        }
        if ret < 0 || part.flags & FLAG_MULTIPART == 0 || self.last_boundary.is_some() {
            return;
        }
        for (key, value) in p.parse_rfc2231() {
            if eq_ci(&key, b"boundary") {
                let mut b = value;
                b.truncate(BOUNDARY_STRING_MAX_LEN);
                self.last_boundary = Some(b);
                break;
            }
        }
    }

    fn end_of_headers(&mut self) -> Step {
        let cur = self.cur;
        let parent_digest = self.parts[cur]
            .parent
            .is_some_and(|p| self.parts[p].flags & FLAG_MULTIPART_DIGEST != 0);
        let part = &mut self.parts[cur];
        if part.flags & FLAG_IS_MIME == 0 {
            // Not MIME: forget what Content-Type said.
            part.flags = 0;
        }
        self.last_boundary = None;
        if !self.part_seen_content_type || part.flags & FLAG_IS_MIME == 0 {
            part.flags |= if parent_digest {
                FLAG_MESSAGE_RFC822
            } else {
                FLAG_TEXT
            };
        }
        self.last_chr = b'\n';
        // message_part_data_parse_from_header(NULL): without MIME, every
        // Content-* field is dropped.
        if part.flags & FLAG_IS_MIME == 0 {
            let envelope = part.data.envelope.take();
            part.data = PartData {
                envelope,
                ..PartData::default()
            };
        }
        if self.total_parts + 1 >= MAX_TOTAL_MIME_PARTS {
            // Too many parts: no more boundaries are looked for.
            self.boundaries.clear();
            if self.multipart {
                self.multipart = false;
                self.parts[cur].flags &= !FLAG_MULTIPART;
            }
        }
        if self.multipart {
            self.multipart = false;
            Step::BodyToBoundary
        } else if self.parts[cur].flags & FLAG_MESSAGE_RFC822 != 0 && !self.too_many_nested() {
            Step::Rfc822Init
        } else {
            if self.parts[cur].flags & FLAG_MESSAGE_RFC822 != 0 {
                self.parts[cur].flags &= !FLAG_MESSAGE_RFC822;
                self.parts[cur].flags |= FLAG_OVERFLOW;
            }
            if self.boundaries.is_empty() {
                Step::BodyToEof
            } else {
                Step::BodyToBoundary
            }
        }
    }

    fn body_to_eof(&mut self) -> Step {
        let rest = self.buf.len() - self.pos;
        self.add_block(rest);
        Step::Done
    }

    fn body_to_boundary(&mut self) -> Step {
        if self.pos >= self.buf.len() {
            return Step::Done;
        }
        if self.last_chr == b'\n' {
            // A boundary on the first line (or an empty line).
            if let Some(b) = self.boundary_line_find(self.pos) {
                return self.part_finish_at(b, true);
            }
        }
        let start = self.pos;
        let mut boundary_start = 0;
        let mut found = None;
        let mut cur = start;
        while let Some(i) = self.buf[cur..].iter().position(|&c| c == b'\n') {
            let lf = cur + i;
            cur = lf + 1;
            boundary_start = lf - start;
            if lf > start && self.buf[lf - 1] == b'\r' {
                boundary_start -= 1;
            }
            if let Some(b) = self.boundary_line_find(cur) {
                found = Some(b);
                break;
            }
        }
        match found {
            Some(b) if boundary_start == 0 => self.part_finish_at(b, false),
            Some(_) => {
                // The body up to the [CR]LF before the boundary.
                self.add_block(boundary_start);
                Step::BodyToBoundary
            }
            None => {
                let rest = self.buf.len() - self.pos;
                self.add_block(rest);
                Step::Done
            }
        }
    }

    /// At `[[CR]LF]--boundary[--]`: closes the parts inside the boundary's
    /// part and adds the boundary line to that part's body.
    fn part_finish_at(&mut self, b: usize, first_line: bool) -> Step {
        let owner = self.boundaries[b].part;
        while self.cur != owner && self.parts[self.cur].parent.is_some() {
            self.part_finish();
        }
        let epilogue = self.boundaries[b].epilogue_found;
        let len = self.boundaries[b].boundary.len();
        if epilogue {
            self.boundaries.truncate(b);
        } else {
            self.boundaries.truncate(b + 1);
        }
        let newline = if first_line {
            0
        } else if self.buf.get(self.pos) == Some(&b'\r') {
            2
        } else {
            1
        };
        let line_size = newline + 2 + len + if epilogue { 2 } else { 0 };
        self.add_block(line_size);
        Step::SkipBoundaryLine
    }

    fn skip_boundary_line(&mut self) -> Step {
        if self.pos >= self.buf.len() {
            return Step::Done;
        }
        let Some(i) = self.buf[self.pos..].iter().position(|&c| c == b'\n') else {
            let rest = self.buf.len() - self.pos;
            self.add_block(rest);
            return Step::Done;
        };
        self.add_block(i + 1);
        match self.boundaries.last() {
            Some(b) if b.part == self.cur => Step::MimeHeaderInit,
            Some(_) => Step::BodyToBoundary,
            None => Step::BodyToEof,
        }
    }

    /// `message_part_data_parse_from_header` for one field.
    fn part_data_header(&mut self, field: &HeaderLine) {
        let cur = self.cur;
        let parent_rfc822 = self.parts[cur]
            .parent
            .is_some_and(|p| self.parts[p].flags & FLAG_MESSAGE_RFC822 != 0);
        let is_content = starts_with_ci(&field.name, b"Content-");
        if !parent_rfc822 && !is_content {
            return;
        }
        let data = &mut self.parts[cur].data;
        if is_content {
            parse_content_header(data, &cstr(&field.name)[8..], &field.value);
        }
        if parent_rfc822 {
            parse_envelope_header(data.envelope.get_or_insert_default(), field);
        }
    }
}

fn at_eoh(data: &[u8]) -> bool {
    data.first() == Some(&b'\n') || data.starts_with(b"\r\n")
}

fn parse_content_header(data: &mut PartData, name: &[u8], value: &[u8]) {
    let name = name.to_ascii_lowercase();
    match name.as_slice() {
        b"id" if data.content_id.is_none() => data.content_id = Some(header_strdup(value)),
        b"md5" if data.content_md5.is_none() => data.content_md5 = Some(header_strdup(value)),
        b"type" if data.content_type.is_none() => parse_data_content_type(data, value),
        b"transfer-encoding" if data.content_transfer_encoding.is_none() => {
            let mut p = Rfc822::new(value);
            p.skip_lwsp();
            let mut s = Vec::new();
            if p.parse_mime_token(&mut s) >= 0 && p.skip_lwsp() == 0 && !s.is_empty() {
                data.content_transfer_encoding = Some(s);
            }
        }
        b"language" if data.content_language.is_none() => {
            let mut p = Rfc822::new(value);
            let mut langs = Vec::new();
            p.skip_lwsp();
            let mut s = Vec::new();
            while p.parse_atom(&mut s) >= 0 {
                langs.push(std::mem::take(&mut s));
                if p.at_end() || p.cur() != b',' {
                    break;
                }
                p.pos += 1;
                p.skip_lwsp();
            }
            if !langs.is_empty() {
                data.content_language = Some(langs);
            }
        }
        b"location" if data.content_location.is_none() => {
            data.content_location = Some(header_strdup(value));
        }
        b"description" if data.content_description.is_none() => {
            data.content_description = Some(header_strdup(value));
        }
        // Dovecot checks the parameters here, not the disposition: a
        // second header replaces a first one without parameters.
        b"disposition" if data.content_disposition_params.is_empty() => {
            let mut p = Rfc822::new(value);
            p.skip_lwsp();
            let mut s = Vec::new();
            if p.parse_mime_token(&mut s) < 0 {
                return;
            }
            data.content_disposition = Some(s);
            data.content_disposition_params = p.parse_rfc2231();
        }
        _ => {}
    }
}

fn parse_data_content_type(data: &mut PartData, value: &[u8]) {
    let mut p = Rfc822::new(value);
    p.skip_lwsp();
    let mut s = Vec::new();
    let ret = p.parse_content_type(&mut s);
    let s = cstr(&s);
    match s.iter().position(|&c| c == b'/') {
        Some(slash) => {
            data.content_type = Some(s[..slash].to_vec());
            data.content_subtype = Some(s[slash + 1..].to_vec());
        }
        None => {
            data.content_type = Some(s.to_vec());
            data.content_subtype = Some(Vec::new());
        }
    }
    if ret < 0 {
        // Broken: keep what was read, but no parameters.
        return;
    }
    data.content_type_params = p.parse_rfc2231();
}

fn parse_envelope_header(env: &mut Envelope, field: &HeaderLine) {
    let name = cstr(&field.name).to_ascii_lowercase();
    let value = &field.value;
    // As Dovecot 2.3.19 does it (checked against it): of repeated string
    // fields the last one counts, repeated address fields add up.
    match name.as_slice() {
        b"date" => env.date = Some(header_strdup(value)),
        b"subject" => env.subject = Some(header_strdup(value)),
        b"message-id" => env.message_id = Some(header_strdup(value)),
        b"in-reply-to" => env.in_reply_to = Some(header_strdup(value)),
        b"from" => env.from.extend(address::parse(value)),
        b"sender" => env.sender.extend(address::parse(value)),
        b"reply-to" => env.reply_to.extend(address::parse(value)),
        b"to" => env.to.extend(address::parse(value)),
        b"cc" => env.cc.extend(address::parse(value)),
        b"bcc" => env.bcc.extend(address::parse(value)),
        _ => {}
    }
}
