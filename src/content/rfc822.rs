//! RFC 822 / MIME tokenizing as Dovecot does it (`lib-mail/rfc822-parser.c`
//! and `rfc2231-parser.c`), so that parameters, tokens and comments come
//! out byte for byte as in Dovecot's BODYSTRUCTURE.
//!
//! Return values follow the C code on purpose (`1` = more data follows,
//! `0` = at the end, `-1` = invalid), because the callers' control flow
//! depends on that distinction. Reading past the end yields `0`, like the
//! NUL terminator the C code relies on.

/// Character classes: 0 = not atext, 1 = atext, 2 = alpha, digit or 8-bit,
/// 4 = atext that is a MIME tspecial (`/`, `=`, `?`).
const ATEXT: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = match c as u8 {
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' => 1,
            b'^' | b'_' | b'`' | b'{' | b'|' | b'}' | b'~' => 1,
            b'/' | b'=' | b'?' => 4,
            b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z' => 2,
            128..=255 => 2,
            _ => 0,
        };
        c += 1;
    }
    t
};

pub(crate) fn is_atext(c: u8) -> bool {
    ATEXT[usize::from(c)] != 0
}

fn is_atext_non_tspecial(c: u8) -> bool {
    ATEXT[usize::from(c)] & 3 != 0
}

/// A cursor over one header value.
pub(crate) struct Rfc822<'a> {
    data: &'a [u8],
    pub(crate) pos: usize,
    /// When set, the text of the last comment skipped (the address parser
    /// uses it as display name of `user@host (Name)`).
    pub(crate) last_comment: Option<Vec<u8>>,
}

impl<'a> Rfc822<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Rfc822 {
            data,
            pos: 0,
            last_comment: None,
        }
    }

    pub(crate) fn with_comments(data: &'a [u8]) -> Self {
        Rfc822 {
            data,
            pos: 0,
            last_comment: Some(Vec::new()),
        }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The current byte, or 0 at the end (the C string terminator).
    pub(crate) fn cur(&self) -> u8 {
        self.data.get(self.pos).copied().unwrap_or(0)
    }

    fn more(&self) -> i32 {
        i32::from(!self.at_end())
    }

    pub(crate) fn skip_comment(&mut self) -> i32 {
        let mut level = 1;
        if let Some(c) = self.last_comment.as_mut() {
            c.clear();
        }
        self.pos += 1;
        let mut start = self.pos;
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                b'(' => level += 1,
                b')' => {
                    level -= 1;
                    if level == 0 {
                        if let Some(c) = self.last_comment.as_mut() {
                            c.extend_from_slice(&self.data[start..self.pos]);
                        }
                        self.pos += 1;
                        return self.more();
                    }
                }
                b'\\' => {
                    if let Some(c) = self.last_comment.as_mut() {
                        c.extend_from_slice(&self.data[start..self.pos]);
                    }
                    start = self.pos + 1;
                    self.pos += 1;
                    if self.pos >= self.data.len() {
                        return -1;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        -1
    }

    pub(crate) fn skip_lwsp(&mut self) -> i32 {
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'(' => {
                    if self.skip_comment() < 0 {
                        return -1;
                    }
                }
                _ => break,
            }
        }
        self.more()
    }

    pub(crate) fn parse_atom(&mut self, out: &mut Vec<u8>) -> i32 {
        if self.at_end() || !is_atext(self.cur()) {
            return -1;
        }
        let start = self.pos;
        self.pos += 1;
        while self.pos < self.data.len() {
            if is_atext(self.data[self.pos]) {
                self.pos += 1;
                continue;
            }
            out.extend_from_slice(&self.data[start..self.pos]);
            return self.skip_lwsp();
        }
        out.extend_from_slice(&self.data[start..self.pos]);
        0
    }

    pub(crate) fn parse_dot_atom(&mut self, out: &mut Vec<u8>) -> i32 {
        if self.at_end() || !is_atext(self.cur()) {
            return -1;
        }
        let mut start = self.pos;
        self.pos += 1;
        while self.pos < self.data.len() {
            if is_atext(self.data[self.pos]) {
                self.pos += 1;
                continue;
            }
            out.extend_from_slice(&self.data[start..self.pos]);
            let ret = self.skip_lwsp();
            if ret <= 0 {
                return ret;
            }
            if self.cur() != b'.' {
                return 1;
            }
            self.pos += 1;
            out.push(b'.');
            let ret = self.skip_lwsp();
            if ret <= 0 {
                return ret;
            }
            start = self.pos;
        }
        out.extend_from_slice(&self.data[start..self.pos]);
        0
    }

    pub(crate) fn parse_mime_token(&mut self, out: &mut Vec<u8>) -> i32 {
        let start = self.pos;
        while self.pos < self.data.len() {
            let c = self.data[self.pos];
            if is_atext_non_tspecial(c) || c == b'.' {
                self.pos += 1;
                continue;
            }
            out.extend_from_slice(&self.data[start..self.pos]);
            return self.skip_lwsp();
        }
        out.extend_from_slice(&self.data[start..self.pos]);
        0
    }

    /// At a `"`: appends the unescaped content, dropping folding (CR)LFs.
    pub(crate) fn parse_quoted_string(&mut self, out: &mut Vec<u8>) -> i32 {
        self.pos += 1;
        let mut start = self.pos;
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                b'"' => {
                    out.extend_from_slice(&self.data[start..self.pos]);
                    self.pos += 1;
                    return self.skip_lwsp();
                }
                b'\n' => {
                    let mut end = self.pos;
                    if end > start && self.data[end - 1] == b'\r' {
                        end -= 1;
                    }
                    out.extend_from_slice(&self.data[start..end]);
                    start = self.pos + 1;
                }
                b'\\' => {
                    self.pos += 1;
                    if self.pos >= self.data.len() {
                        return -1;
                    }
                    out.extend_from_slice(&self.data[start..self.pos - 1]);
                    start = self.pos;
                }
                _ => {}
            }
            self.pos += 1;
        }
        -1
    }

    fn parse_atom_or_dot(&mut self, out: &mut Vec<u8>) -> i32 {
        let start = self.pos;
        while self.pos < self.data.len() {
            let c = self.data[self.pos];
            if is_atext(c) || c == b'.' {
                self.pos += 1;
                continue;
            }
            out.extend_from_slice(&self.data[start..self.pos]);
            return self.skip_lwsp();
        }
        out.extend_from_slice(&self.data[start..self.pos]);
        0
    }

    pub(crate) fn parse_phrase(&mut self, out: &mut Vec<u8>) -> i32 {
        if self.at_end() {
            return 0;
        }
        if self.cur() == b'.' {
            return -1;
        }
        loop {
            let ret = if self.cur() == b'"' {
                self.parse_quoted_string(out)
            } else {
                self.parse_atom_or_dot(out)
            };
            if ret <= 0 {
                return ret;
            }
            let c = self.cur();
            if !is_atext(c) && c != b'"' && c != b'.' {
                break;
            }
            out.push(b' ');
        }
        self.skip_lwsp()
    }

    fn parse_domain_literal(&mut self, out: &mut Vec<u8>) -> i32 {
        let start = self.pos;
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                b'\\' => {
                    self.pos += 1;
                    if self.pos >= self.data.len() {
                        break;
                    }
                }
                b']' => {
                    self.pos += 1;
                    out.extend_from_slice(&self.data[start..self.pos]);
                    return self.skip_lwsp();
                }
                _ => {}
            }
            self.pos += 1;
        }
        -1
    }

    /// At a `@`: appends the domain.
    pub(crate) fn parse_domain(&mut self, out: &mut Vec<u8>) -> i32 {
        self.pos += 1;
        if self.skip_lwsp() <= 0 {
            return -1;
        }
        if self.cur() == b'[' {
            self.parse_domain_literal(out)
        } else {
            self.parse_dot_atom(out)
        }
    }

    /// `type/subtype` into `out` (Dovecot 2.3.19's strict version): when
    /// the `/`, the subtype or what follows it is broken, `out` is emptied
    /// again; a lone type at the end stays (`text` → `text`, `text/` → ``).
    pub(crate) fn parse_content_type(&mut self, out: &mut Vec<u8>) -> i32 {
        let start = out.len();
        if self.skip_lwsp() <= 0 {
            return -1;
        }
        if self.parse_mime_token(out) <= 0 || out.len() == start {
            return -1;
        }
        if self.cur() != b'/' {
            out.truncate(start);
            return -1;
        }
        self.pos += 1;
        if self.skip_lwsp() <= 0 {
            out.truncate(start);
            return -1;
        }
        out.push(b'/');
        let subtype = out.len();
        let ret = self.parse_mime_token(out);
        if ret < 0 || out.len() == subtype || (!self.at_end() && self.cur() != b';') {
            out.truncate(start);
            return -1;
        }
        ret
    }

    /// `; key=value`: `1` with the pair, `0` at the end, `-1` when broken.
    fn parse_content_param(&mut self) -> (i32, Vec<u8>, Vec<u8>) {
        let mut key = Vec::new();
        let mut value = Vec::new();
        if self.at_end() {
            return (0, key, value);
        }
        if self.cur() != b';' {
            return (-1, key, value);
        }
        self.pos += 1;
        if self.skip_lwsp() <= 0 {
            return (-1, key, value);
        }
        if self.parse_mime_token(&mut key) <= 0 {
            return (-1, key, value);
        }
        if self.cur() != b'=' {
            return (-1, key, value);
        }
        self.pos += 1;
        let mut ret = self.skip_lwsp();
        if ret <= 0 {
            // broken / no value
        } else if self.cur() == b'"' {
            ret = self.parse_quoted_string(&mut value);
        } else if self.cur() == b'=' {
            // workaround for broken input: name==?utf-8?b?...?=
            while let Some(&c) = self.data.get(self.pos) {
                if matches!(c, b';' | b' ' | b'\t' | b'\r' | b'\n') {
                    break;
                }
                value.push(c);
                self.pos += 1;
            }
        } else {
            ret = self.parse_mime_token(&mut value);
        }
        (if ret < 0 { -1 } else { 1 }, key, value)
    }

    /// All `; key=value` parameters, RFC 2231 continuations merged the way
    /// Dovecot does: `key*0`, `key*1` → `key`; with any extended part the
    /// key becomes `key*` and the value stays percent-encoded
    /// (`utf-8''%E2%82%AC`). Keys and values are C strings (cut at NUL).
    pub(crate) fn parse_rfc2231(&mut self) -> Vec<(Vec<u8>, Vec<u8>)> {
        struct Continued {
            key: Vec<u8>,
            value: Vec<u8>,
            idx: u32,
            extended: bool,
        }
        let mut result = Vec::new();
        let mut continued: Vec<Continued> = Vec::new();
        // Dovecot reuses one struct across parameters: `key*` without an
        // index keeps the previous parameter's index.
        let mut idx: u32 = 0;
        loop {
            let (ret, key, value) = self.parse_content_param();
            if ret == 0 {
                break;
            }
            if ret < 0 {
                if self.at_end() {
                    break;
                }
                self.pos += 1;
                continue;
            }
            let key = cstr(&key).to_vec();
            let value = cstr(&value).to_vec();
            let Some(star) = key.iter().position(|&c| c == b'*') else {
                result.push((key, value));
                continue;
            };
            let mut p = star;
            if p + 1 < key.len() {
                p += 1;
                idx = 0;
                while let Some(&d) = key.get(p).filter(|d| d.is_ascii_digit()) {
                    idx = idx.wrapping_mul(10).wrapping_add(u32::from(d - b'0'));
                    p += 1;
                }
            }
            let extended = key.get(p) == Some(&b'*');
            if extended {
                p += 1;
            }
            if p != key.len() {
                result.push((key, value));
            } else {
                continued.push(Continued {
                    key: key[..star].to_vec(),
                    value,
                    idx,
                    extended,
                });
            }
        }
        if continued.is_empty() {
            return result;
        }
        continued.sort_by(|a, b| a.key.cmp(&b.key).then(a.idx.cmp(&b.idx)));
        let mut i = 0;
        while i < continued.len() {
            let mut ok = true;
            let mut have_extended = false;
            let mut next_idx = 0u32;
            let mut j = i;
            while j < continued.len() && continued[i].key.eq_ignore_ascii_case(&continued[j].key) {
                if continued[j].idx != next_idx {
                    ok = false;
                }
                have_extended |= continued[j].extended;
                next_idx = next_idx.wrapping_add(1);
                j += 1;
            }
            let group = &continued[i..j];
            if !ok {
                for c in group {
                    let mut key = c.key.clone();
                    key.extend_from_slice(format!("*{}", c.idx).as_bytes());
                    if c.extended {
                        key.push(b'*');
                    }
                    result.push((key, c.value.clone()));
                }
            } else {
                let mut value = Vec::new();
                if !group[0].extended && have_extended {
                    value.extend_from_slice(b"''");
                }
                for c in group {
                    if !c.extended && have_extended {
                        for &b in &c.value {
                            if b == b'%' {
                                value.extend_from_slice(b"%25");
                            } else {
                                value.push(b);
                            }
                        }
                    } else {
                        value.extend_from_slice(&c.value);
                    }
                }
                let mut key = group[0].key.clone();
                if have_extended {
                    key.push(b'*');
                }
                result.push((key, value));
            }
            i = j;
        }
        result
    }
}

/// The bytes before the first NUL: what a C string holds.
pub(crate) fn cstr(s: &[u8]) -> &[u8] {
    match s.iter().position(|&c| c == 0) {
        Some(n) => &s[..n],
        None => s,
    }
}

/// `strcasecmp(a, b) == 0` on C strings.
pub(crate) fn eq_ci(a: &[u8], b: &[u8]) -> bool {
    cstr(a).eq_ignore_ascii_case(cstr(b))
}
