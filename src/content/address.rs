//! RFC 5322 address lists as Dovecot parses them for the IMAP ENVELOPE
//! (`lib-mail/message-address.c`, with `fill_missing`): needed for the
//! envelope of `message/rfc822` parts inside BODYSTRUCTURE.
//!
//! A group is written as a start entry (mailbox = group name, domain
//! `None`) followed by its members and an end entry (everything `None`).

use super::rfc822::Rfc822;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Address {
    pub name: Option<Vec<u8>>,
    pub route: Option<Vec<u8>>,
    pub mailbox: Option<Vec<u8>>,
    pub domain: Option<Vec<u8>>,
}

struct Parser<'a> {
    p: Rfc822<'a>,
    addrs: Vec<Address>,
    addr: Address,
    /// `invalid_syntax` of the address being parsed.
    invalid: bool,
    /// Dovecot's shared scratch string (`ctx->str`): the local part is
    /// still in it when `parse_addr_spec` looks for a display name.
    s: Vec<u8>,
}

/// Parses an address header value; empty when it holds no address.
pub(crate) fn parse(value: &[u8]) -> Vec<Address> {
    let mut ctx = Parser {
        p: Rfc822::with_comments(value),
        addrs: Vec::new(),
        addr: Address::default(),
        invalid: false,
        s: Vec::new(),
    };
    if ctx.p.skip_lwsp() <= 0 {
        return Vec::new();
    }
    ctx.parse_address_list();
    ctx.addrs
}

impl Parser<'_> {
    fn add_address(&mut self) {
        self.addrs.push(std::mem::take(&mut self.addr));
        self.invalid = false;
    }

    fn parse_local_part(&mut self) -> i32 {
        if self.p.at_end() {
            return -1;
        }
        self.s.clear();
        let ret = if self.p.cur() == b'"' {
            self.p.parse_quoted_string(&mut self.s)
        } else {
            self.p.parse_dot_atom(&mut self.s)
        };
        if ret < 0 {
            return -1;
        }
        self.addr.mailbox = Some(cstr_vec(self.s.clone()));
        ret
    }

    fn parse_domain(&mut self) -> i32 {
        self.s.clear();
        let ret = self.p.parse_domain(&mut self.s);
        if ret < 0 {
            return -1;
        }
        self.addr.domain = Some(cstr_vec(self.s.clone()));
        ret
    }

    fn parse_domain_list(&mut self) -> i32 {
        self.s.clear();
        loop {
            if self.p.at_end() {
                return 0;
            }
            if self.p.cur() != b'@' {
                break;
            }
            if !self.s.is_empty() {
                self.s.push(b',');
            }
            self.s.push(b'@');
            let ret = self.p.parse_domain(&mut self.s);
            if ret <= 0 {
                return ret;
            }
            while self.p.skip_lwsp() > 0 && self.p.cur() == b',' {
                self.p.pos += 1;
            }
        }
        self.addr.route = Some(cstr_vec(self.s.clone()));
        1
    }

    fn parse_angle_addr(&mut self) -> i32 {
        self.p.pos += 1; // '<'
        if self.p.skip_lwsp() <= 0 {
            return -1;
        }
        if self.p.cur() == b'@' {
            if self.parse_domain_list() > 0 && self.p.cur() == b':' {
                self.p.pos += 1;
            } else {
                self.addr.route = Some(b"INVALID_ROUTE".to_vec());
                if self.p.at_end() {
                    return -1;
                }
                // try to continue anyway
            }
            if self.p.skip_lwsp() <= 0 {
                return -1;
            }
        }
        if self.p.cur() != b'>' {
            if self.parse_local_part() <= 0 {
                return -1;
            }
            if self.p.cur() == b'@' && self.parse_domain() <= 0 {
                return -1;
            }
        }
        // else: "<>" is no valid address
        if self.p.cur() != b'>' {
            return -1;
        }
        self.p.pos += 1;
        self.p.skip_lwsp()
    }

    fn parse_name_addr(&mut self) -> i32 {
        self.s.clear();
        if self.p.parse_phrase(&mut self.s) <= 0 || self.p.cur() != b'<' {
            return -1;
        }
        let name = cstr_vec(self.s.clone());
        self.addr.name = (!name.is_empty()).then_some(name);
        if self.parse_angle_addr() < 0 {
            self.addr.domain = Some(b"SYNTAX_ERROR".to_vec());
            self.invalid = true;
        }
        i32::from(!self.p.at_end())
    }

    fn parse_addr_spec(&mut self) -> i32 {
        if self.p.at_end() {
            return -1;
        }
        if let Some(c) = self.p.last_comment.as_mut() {
            c.clear();
        }
        let quoted_string = self.p.cur() == b'"';
        let mut ret = self.parse_local_part();
        if ret <= 0 {
            self.invalid = true;
        }
        let mut ret2 = -2;
        if ret != 0 && !self.p.at_end() && self.p.cur() == b'@' {
            ret2 = self.parse_domain();
            if ret2 <= 0 {
                ret = ret2;
            }
        }
        if let Some(c) = self.p.last_comment.as_ref().filter(|c| !c.is_empty()) {
            self.addr.name = Some(cstr_vec(c.clone()));
        } else if ret2 == -2 {
            // "user" without @domain and without (Display Name): a lone
            // word is a mailbox, anything following makes it a name.
            self.s.push(b' ');
            let orig = self.s.len();
            let mut s = std::mem::take(&mut self.s);
            self.p.parse_phrase(&mut s);
            self.s = s;
            if self.s.len() != orig {
                self.addr.mailbox = None;
                self.addr.name = Some(cstr_vec(self.s.clone()));
            } else if !quoted_string {
                self.addr.domain = Some(Vec::new());
            }
            self.invalid = true;
            ret = -1;
        }
        ret
    }

    fn add_fixed_address(&mut self) {
        if self.addr.mailbox.is_none() {
            self.addr.mailbox = Some(b"MISSING_MAILBOX".to_vec());
        }
        if self.addr.domain.as_ref().is_none_or(|d| d.is_empty()) {
            self.addr.domain = Some(b"MISSING_DOMAIN".to_vec());
        }
        self.add_address();
    }

    fn parse_mailbox(&mut self) -> i32 {
        let start = self.p.pos;
        let mut ret = self.parse_name_addr();
        if ret < 0 {
            self.p.pos = start;
            ret = self.parse_addr_spec();
            if self.invalid
                && self.addr.name.is_none()
                && self.addr.mailbox.is_some()
                && self.addr.domain.is_none()
            {
                self.addr.name = self.addr.mailbox.take();
            }
        }
        self.add_fixed_address();
        ret
    }

    fn parse_group(&mut self) -> i32 {
        self.s.clear();
        if self.p.parse_phrase(&mut self.s) <= 0 || self.p.cur() != b':' {
            return -1;
        }
        // From here on a group, even when broken.
        self.p.pos += 1;
        let mut ret = self.p.skip_lwsp();
        self.addr.mailbox = Some(cstr_vec(self.s.clone()));
        self.add_address();
        if ret > 0 && self.p.cur() != b';' {
            loop {
                // a broken mailbox: try to continue anyway
                self.parse_mailbox();
                if self.p.at_end() || self.p.cur() != b',' {
                    break;
                }
                self.p.pos += 1;
                if self.p.skip_lwsp() <= 0 {
                    ret = -1;
                    break;
                }
            }
        }
        if ret >= 0 {
            if self.p.at_end() || self.p.cur() != b';' {
                ret = -1;
            } else {
                self.p.pos += 1;
                ret = self.p.skip_lwsp();
            }
        }
        self.add_address();
        i32::from(ret != 0)
    }

    fn parse_address(&mut self) -> i32 {
        let start = self.p.pos;
        let ret = self.parse_group();
        if ret < 0 {
            self.p.pos = start;
            return self.parse_mailbox();
        }
        ret
    }

    fn parse_address_list(&mut self) {
        loop {
            if self.parse_address() == 0 {
                break;
            }
            if self.p.at_end() || self.p.cur() != b',' {
                break;
            }
            self.p.pos += 1;
            let ret = self.p.skip_lwsp();
            if ret <= 0 {
                if ret < 0 {
                    // ends with some garbage
                    self.add_fixed_address();
                }
                break;
            }
        }
    }
}

fn cstr_vec(mut s: Vec<u8>) -> Vec<u8> {
    if let Some(n) = s.iter().position(|&c| c == 0) {
        s.truncate(n);
    }
    s
}
