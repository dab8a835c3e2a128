use super::*;

/// The whole message with CRLF line ends.
fn to_crlf(raw: &[u8]) -> Vec<u8> {
    crlf_slice(raw, 0, usize::MAX)
}

fn bs(msg: &str) -> String {
    String::from_utf8(body_structure(msg.as_bytes())).unwrap()
}

fn all_on() -> ContentOptions {
    ContentOptions {
        message_content: true,
        mode: InclusionMode::Message,
        max_size: 0,
        body_structure: true,
        envelope: true,
        message_id: true,
        subject: true,
        from: true,
        max_read: 0,
    }
}

// ---------------------------------------------------------------------
// BODYSTRUCTURE: Dovecot's own test vectors (src/lib-imap/
// test-imap-bodystructure.c, `parse_tests`), wrapped in the outer
// parentheses FETCH adds.

#[test]
fn dovecot_vector_plain_us_ascii() {
    let msg = "From: user@domain.org\n\
               Date: Sat, 24 Mar 2017 23:00:00 +0200\n\
               Mime-Version: 1.0\n\
               Content-Type: text/plain; charset=us-ascii\n\
               \n\
               body\n";
    assert_eq!(
        bs(msg),
        r#"("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1 NIL NIL NIL NIL)"#
    );
}

#[test]
fn dovecot_vector_plain_8bit() {
    let msg = "From: user@domain.org\n\
               Date: Sat, 24 Mar 2017 23:00:00 +0200\n\
               Mime-Version: 1.0\n\
               Content-Type: text/plain; charset=utf-8\n\
               Content-Transfer-Encoding: 8bit\n\
               \n\
               body\n\
               \n";
    assert_eq!(
        bs(msg),
        r#"("text" "plain" ("charset" "utf-8") NIL NIL "8bit" 8 2 NIL NIL NIL NIL)"#
    );
}

#[test]
fn dovecot_vector_folded_boundary() {
    let msg = "From: user@domain.org\n\
               Date: Sat, 24 Mar 2007 23:00:00 +0200\n\
               Mime-Version: 1.0\n\
               Content-Type: multipart/mixed; boundary=\"foo\n bar\"\n\
               \n\
               --foo bar\n\
               Content-Type: text/x-myown; charset=us-ascii\n\
               \n\
               hello\n\
               \n\
               --foo bar--\n\
               \n";
    assert_eq!(
        bs(msg),
        r#"(("text" "x-myown" ("charset" "us-ascii") NIL NIL "7bit" 7 1 NIL NIL NIL NIL) "mixed" ("boundary" "foo bar") NIL NIL NIL)"#
    );
}

#[test]
fn dovecot_vector_message_rfc822() {
    let msg = "From: user@domain.org\n\
               Date: Sat, 24 Mar 2017 23:00:00 +0200\n\
               Mime-Version: 1.0\n\
               Content-Type: multipart/mixed; boundary=\"foo bar\"\n\
               \n\
               --foo bar\n\
               Content-Type: text/plain; charset=us-ascii\n\
               Content-ID: <A.frop.example.com>\n\
               Content-Description: Container message\n\
               \n\
               See attached...\n\
               \n\
               --foo bar\n\
               Content-Type: message/rfc822\n\
               Content-ID: <B.frop.example.com>\n\
               Content-Description: Forwarded\n\
               \n\
               From: user@domain.org\n\
               Date: Sat, 24 Mar 2017 23:00:00 +0200\n\
               Mime-Version: 1.0\n\
               Content-Type: text/plain; charset=us-ascii\n\
               \n\
               body\n\
               \n\
               --foo bar--\n";
    assert_eq!(
        bs(msg),
        concat!(
            r#"(("text" "plain" ("charset" "us-ascii") "<A.frop.example.com>" "Container message" "7bit" 17 1 NIL NIL NIL NIL)"#,
            r#"("message" "rfc822" NIL "<B.frop.example.com>" "Forwarded" "7bit" 133 ("Sat, 24 Mar 2017 23:00:00 +0200" NIL ((NIL NIL "user" "domain.org")) ((NIL NIL "user" "domain.org")) ((NIL NIL "user" "domain.org")) NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1 NIL NIL NIL NIL) 6 NIL NIL NIL NIL)"#,
            r#" "mixed" ("boundary" "foo bar") NIL NIL NIL)"#
        )
    );
}

#[test]
fn dovecot_vector_everything() {
    let msg = "From: user@domain.org\n\
               Date: Sat, 24 Mar 2007 23:00:00 +0200\n\
               Mime-Version: 1.0\n\
               Content-Type: multipart/mixed; boundary=\"foo\n bar\"\n\
               \n\
               Root MIME prologue\n\
               \n\
               --foo bar\n\
               Content-Type: text/x-myown; charset=us-ascii; foo=\"quoted\\\"string\"\n\
               Content-ID: <foo@example.com>\n\
               Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n\
               Content-Disposition: inline; foo=bar\n\
               Content-Description: hellodescription\n\
               Content-Language: en, fi, se\n\
               Content-Location: http://example.com/test.txt\n\
               \n\
               hello\n\
               \n\
               --foo bar\n\
               Content-Type: message/rfc822\n\
               \n\
               From: sub@domain.org\n\
               To: sub-to1@domain.org, sub-to2@domain.org\n\
               Date: Sun, 12 Aug 2012 12:34:56 +0300\n\
               Subject: submsg\n\
               Content-Type: multipart/alternative; boundary=\"sub1\"\n\
               \n\
               Sub MIME prologue\n\
               --sub1\n\
               Content-Type: text/html\n\
               Content-Transfer-Encoding: 8bit\n\
               \n\
               <p>Hello world</p>\n\
               \n\
               --sub1\n\
               Content-Type: text/plain\n\
               Content-Transfer-Encoding: ?invalid\n\
               \n\
               Hello another world\n\
               \n\
               --sub1--\n\
               Sub MIME epilogue\n\
               \n\
               --foo bar--\n\
               Root MIME epilogue\n";
    assert_eq!(
        bs(msg),
        concat!(
            r#"(("text" "x-myown" ("charset" "us-ascii" "foo" "quoted\"string") "<foo@example.com>" "hellodescription" "7bit" 7 1 "Q2hlY2sgSW50ZWdyaXR5IQ==" ("inline" ("foo" "bar")) ("en" "fi" "se") "http://example.com/test.txt")"#,
            r#"("message" "rfc822" NIL NIL NIL "7bit" 412 ("Sun, 12 Aug 2012 12:34:56 +0300" "submsg" ((NIL NIL "sub" "domain.org")) ((NIL NIL "sub" "domain.org")) ((NIL NIL "sub" "domain.org")) ((NIL NIL "sub-to1" "domain.org")(NIL NIL "sub-to2" "domain.org")) NIL NIL NIL NIL) "#,
            r#"(("text" "html" ("charset" "us-ascii") NIL NIL "8bit" 20 1 NIL NIL NIL NIL)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 21 1 NIL NIL NIL NIL) "alternative" ("boundary" "sub1") NIL NIL NIL) 21 NIL NIL NIL NIL)"#,
            r#" "mixed" ("boundary" "foo bar") NIL NIL NIL)"#
        )
    );
}

#[test]
fn dovecot_vector_empty_multipart() {
    assert_eq!(
        bs("Content-Type: multipart/mixed; boundary=\"foo\"\n\n"),
        r#"(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mixed" ("boundary" "foo") NIL NIL NIL)"#
    );
}

// ---------------------------------------------------------------------
// BODYSTRUCTURE: our own cases.

#[test]
fn no_mime_version_ignores_content_headers() {
    // No Mime-Version and no Content-Type: Dovecot drops Content-*.
    let msg = "Subject: x\nContent-Transfer-Encoding: base64\nContent-ID: <a@b>\n\nhi\n";
    assert_eq!(
        bs(msg),
        r#"("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 4 1 NIL NIL NIL NIL)"#
    );
}

#[test]
fn lf_and_crlf_give_the_same_structure() {
    let lf = "Mime-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\npre\n--b\n\
              Content-Type: text/plain\n\none\ntwo\n--b\nContent-Type: application/x\n\n\
              AAAA\n--b--\nepi\n";
    let crlf = lf.replace('\n', "\r\n");
    assert_eq!(bs(lf), bs(&crlf));
    assert_eq!(
        bs(lf),
        r#"(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 8 1 NIL NIL NIL NIL)("application" "x" NIL NIL NIL "7bit" 4 NIL NIL NIL NIL) "mixed" ("boundary" "b") NIL NIL NIL)"#
    );
}

#[test]
fn rfc2231_parameters_are_joined_not_decoded() {
    let msg = "Mime-Version: 1.0\n\
               Content-Type: application/pdf; name*0=\"long \"; name*1=\"name.pdf\"\n\
               Content-Disposition: attachment; filename*=utf-8''%E2%82%AC.pdf\n\
               \n\
               x\n";
    assert_eq!(
        bs(msg),
        r#"("application" "pdf" ("name" "long name.pdf") NIL NIL "7bit" 3 NIL ("attachment" ("filename*" "utf-8''%E2%82%AC.pdf")) NIL NIL)"#
    );
}

#[test]
fn literals_for_8bit_newlines_and_many_quotes() {
    let msg = "Mime-Version: 1.0\n\
               Content-Type: text/plain; name=\"\u{e9}t\u{e9}\"\n\
               Content-Description: a\n \"b\" \"c\" \\d\n\
               \n";
    // Description: newline removed; five quote-specials → literal.
    assert_eq!(
        bs(msg),
        "(\"text\" \"plain\" (\"name\" {5}\r\n\u{e9}t\u{e9} \"charset\" \"us-ascii\") NIL {12}\r\na \"b\" \"c\" \\d \"7bit\" 0 0 NIL NIL NIL NIL)"
    );
}

#[test]
fn digest_parts_default_to_message_rfc822() {
    let msg = "Mime-Version: 1.0\nContent-Type: multipart/digest; boundary=d\n\n--d\n\n\
               Subject: inner\n\nbody\n--d--\n";
    assert_eq!(
        bs(msg),
        r#"(("message" "rfc822" NIL NIL NIL "7bit" 22 (NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 4 0 NIL NIL NIL NIL) 2 NIL NIL NIL NIL) "digest" ("boundary" "d") NIL NIL NIL)"#
    );
}

#[test]
fn deep_nesting_is_capped_without_stack_overflow() {
    let mut msg = String::new();
    for i in 0..5000 {
        msg.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n"
        ));
    }
    msg.push_str("\nend\n");
    let out = body_structure(msg.as_bytes());
    assert!(out.starts_with(b"(("));
    let mut rfc = String::new();
    for _ in 0..5000 {
        rfc.push_str("Content-Type: message/rfc822\n\n");
    }
    let out = body_structure(rfc.as_bytes());
    assert!(out.starts_with(b"(\"message\" \"rfc822\""));
}

// ---------------------------------------------------------------------
// messageContent

const MSG_LF: &str = "From: a@example.test\nSubject: hi\n\nline one\nline two\n";

#[test]
fn needs_file_only_when_something_is_on() {
    assert!(!needs_file(&ContentOptions::default()));
    let mut opts = ContentOptions {
        mode: InclusionMode::Body,
        max_size: 10,
        ..ContentOptions::default()
    };
    assert!(!needs_file(&opts), "mode and size alone enable nothing");
    opts.subject = true;
    assert!(needs_file(&opts));
    assert_eq!(
        extract(b"anything", &ContentOptions::default()),
        Content::default()
    );
}

#[test]
fn inclusion_modes_and_cap() {
    // CRLF form: header "From: a@example.test\r\nSubject: hi\r\n\r\n" = 37
    // bytes, body "line one\r\nline two\r\n" = 20 bytes, total 57.
    let header = "From: a@example.test\r\nSubject: hi\r\n\r\n";
    let body = "line one\r\nline two\r\n";
    assert_eq!(header.len(), 37);
    let whole = format!("{header}{body}");
    use InclusionMode::*;
    let cases: &[(InclusionMode, usize, Option<&str>)] = &[
        (Standard, 0, Some(&whole)),
        (Standard, 57, Some(&whole)),
        (Standard, 56, None),
        (Message, 0, Some(&whole)),
        (Message, 5, Some("From:")),
        (Message, 100, Some(&whole)),
        (Header, 0, Some(header)),
        (Header, 4, Some("From")),
        (Header, 37, Some(header)),
        (Body, 0, Some(body)),
        (Body, 8, Some("line one")),
        (Body, 1000, Some(body)),
        (HeaderBody, 0, Some(&whole)),
        (
            HeaderBody,
            4,
            Some("From: a@example.test\r\nSubject: hi\r\n\r\nline"),
        ),
        (HeaderBody, 20, Some(&whole)),
    ];
    for &(mode, max_size, expected) in cases {
        let opts = ContentOptions {
            message_content: true,
            mode,
            max_size,
            ..ContentOptions::default()
        };
        for raw in [MSG_LF.to_string(), MSG_LF.replace('\n', "\r\n")] {
            let got = extract(raw.as_bytes(), &opts);
            assert_eq!(
                got.message_content.as_deref(),
                expected,
                "{mode:?} cap {max_size} on {raw:?}"
            );
            assert!(got.warnings.is_empty());
        }
    }
}

#[test]
fn header_body_split() {
    assert_eq!(header_len(b"A: b\r\n\r\nbody"), 8);
    assert_eq!(header_len(b"A: b\n\nbody"), 6);
    assert_eq!(header_len(b"A: b\nC: d\n"), 10, "no empty line: all header");
    assert_eq!(header_len(b"\nbody"), 1, "empty header");
    assert_eq!(header_len(b"A: b\n \n\nx"), 8, "folded empty continuation");
    assert_eq!(header_len(b""), 0);
}

#[test]
fn crlf_form_adds_cr_only_where_missing() {
    let raw = b"a\nb\r\nc\r\rd\n";
    assert_eq!(to_crlf(raw), b"a\r\nb\r\nc\r\rd\r\n");
    assert_eq!(crlf_len(raw), 12);
    assert_eq!(to_crlf(b"\n"), b"\r\n");
    // Any window of the CRLF form, without converting the rest.
    let whole = to_crlf(raw);
    for start in 0..=whole.len() {
        for end in start..=whole.len() + 1 {
            assert_eq!(
                crlf_slice(raw, start, end),
                whole[start..end.min(whole.len())],
                "{start}..{end}"
            );
        }
    }
}

#[test]
fn cut_never_splits_a_utf8_character() {
    let raw = "Subject: x\n\n\u{20ac}\u{20ac}".as_bytes(); // body: 6 bytes
    for (cap, expected) in [
        (1, ""),
        (2, ""),
        (3, "\u{20ac}"),
        (4, "\u{20ac}"),
        (6, "\u{20ac}\u{20ac}"),
    ] {
        let opts = ContentOptions {
            message_content: true,
            mode: InclusionMode::Body,
            max_size: cap,
            ..ContentOptions::default()
        };
        assert_eq!(
            extract(raw, &opts).message_content.as_deref(),
            Some(expected),
            "cap {cap}"
        );
    }
}

#[test]
fn non_utf8_content_is_lossy() {
    let raw = b"Subject: x\n\ncaf\xe9\n";
    let opts = ContentOptions {
        message_content: true,
        mode: InclusionMode::Body,
        ..ContentOptions::default()
    };
    assert_eq!(
        extract(raw, &opts).message_content.as_deref(),
        Some("caf\u{FFFD}\r\n")
    );
}

// ---------------------------------------------------------------------
// envelope (SMTP) and header fields

fn envelope_of(raw: &str) -> (Option<String>, Vec<String>) {
    let opts = ContentOptions {
        envelope: true,
        ..ContentOptions::default()
    };
    let c = extract(raw.as_bytes(), &opts);
    (c.envelope, c.warnings)
}

#[test]
fn smtp_envelope_cases() {
    let cases: &[(&str, Option<&str>)] = &[
        (
            "Return-Path: <bob@example.org>\nDelivered-To: alice@example.test\nSubject: x\n\nb\n",
            Some("MAIL FROM:<bob@example.org>\r\nRCPT TO:<alice@example.test>"),
        ),
        (
            "Return-Path: <>\nX-Original-To: list@example.test\n\nb\n",
            Some("MAIL FROM:<>\r\nRCPT TO:<list@example.test>"),
        ),
        (
            // Delivered-To wins over X-Original-To; topmost of each.
            "Return-Path: <new@a>\nDelivered-To: final@b\nX-Original-To: orig@b\n\
             Return-Path: <old@a>\nDelivered-To: earlier@b\n\nb\n",
            Some("MAIL FROM:<new@a>\r\nRCPT TO:<final@b>"),
        ),
        (
            "return-path:   bare@a  \r\ndelivered-to: <c@d>\r\n\r\n",
            Some("MAIL FROM:<bare@a>\r\nRCPT TO:<c@d>"),
        ),
        ("Return-Path: <x@y>\n\nb\n", Some("MAIL FROM:<x@y>")),
        ("From: a@b\nDelivered-To: c@d\n\nb\n", None),
        // Only the header counts, not a Return-Path in the body.
        ("Subject: s\n\nReturn-Path: <x@y>\n", None),
    ];
    for &(raw, expected) in cases {
        let (envelope, warnings) = envelope_of(raw);
        assert_eq!(envelope.as_deref(), expected, "{raw:?}");
        assert!(warnings.is_empty(), "{raw:?}: {warnings:?}");
    }
}

#[test]
fn smtp_envelope_refuses_injection() {
    // A folded value cannot smuggle a line into the envelope.
    let (envelope, warnings) =
        envelope_of("Return-Path: <a@b>\nDelivered-To: x@y\n RCPT TO:<evil@z>\n\nb\n");
    assert_eq!(envelope, None);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    // In angle brackets only the address counts.
    let (envelope, warnings) =
        envelope_of("Return-Path: <a@b>\nDelivered-To: <x@y>\n RCPT TO:<evil@z>\n\nb\n");
    assert_eq!(
        envelope.as_deref(),
        Some("MAIL FROM:<a@b>\r\nRCPT TO:<x@y>")
    );
    assert!(warnings.is_empty());
    let (envelope, warnings) = envelope_of("Return-Path: <a b@c>\n\nb\n");
    assert_eq!(envelope, None);
    assert_eq!(warnings.len(), 1);
}

#[test]
fn envelope_warnings_are_short() {
    // A 1 MB Return-Path gives a warning of about 100 bytes, not 1 MB.
    let raw = format!("Return-Path: <{}>\n\nb\n", "a b".repeat(350_000));
    let (envelope, warnings) = envelope_of(&raw);
    assert_eq!(envelope, None);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].len() < 200, "{} bytes", warnings[0].len());
    assert!(warnings[0].ends_with("…\""), "{}", warnings[0]);
}

#[test]
fn header_fields_decoded() {
    let raw = "Message-ID: <1234@example.test>\n\
               Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus\n \tBerlin\n\
               From: =?iso-8859-1?q?J=F6rg?= <joerg@example.test>, other@example.test\n\
               \n\
               body\n";
    let c = extract(raw.as_bytes(), &all_on());
    assert_eq!(c.message_id.as_deref(), Some("<1234@example.test>"));
    assert_eq!(c.subject.as_deref(), Some("Grüße aus Berlin"));
    assert_eq!(c.from.as_deref(), Some("Jörg <joerg@example.test>"));
    let c = extract(b"From: plain@example.test\n\n", &all_on());
    assert_eq!(c.from.as_deref(), Some("plain@example.test"));
    assert_eq!(c.subject, None);
    assert_eq!(c.message_id, None);
}

#[test]
fn parameters_use_event_key_names() {
    let c = Content {
        body_structure: Some("x".into()),
        subject: Some("s".into()),
        ..Content::default()
    };
    let keys: Vec<_> = c.parameters().collect();
    assert_eq!(keys, [("bodyStructure", "x"), ("vnd.maildir.subject", "s")]);
}

#[test]
fn options_deserialize_strictly() {
    let opts: ContentOptions =
        toml::from_str("message_content = true\nmode = \"headerbody\"\nmax_size = 4096\n").unwrap();
    assert_eq!(opts.mode, InclusionMode::HeaderBody);
    assert_eq!(opts.max_size, 4096);
    assert!(toml::from_str::<ContentOptions>("mode = \"full\"\n").is_err());
    assert!(toml::from_str::<ContentOptions>("size = 1\n").is_err());
}

// ---------------------------------------------------------------------
// garbage and fuzzing

#[test]
fn empty_and_garbage_input() {
    let c = extract(b"", &all_on());
    assert_eq!(c.message_content, None);
    assert_eq!(c.body_structure, None);
    assert_eq!(c.warnings.len(), 1);

    let garbage = b"\x00\xff\xfe binary \x89PNG\r\n\x1a\n\x00\x00";
    let c = extract(garbage, &all_on());
    assert!(
        c.body_structure.is_some(),
        "Dovecot reports a structure for anything"
    );
    assert_eq!(c.message_id, None);
    assert_eq!(c.envelope, None);
    // A file without any header field: the header fields cannot be found.
    let c = extract(b"\n\njust a body\n", &all_on());
    assert_eq!(c.subject, None);
    assert!(!c.warnings.is_empty(), "{c:?}");
}

/// xorshift64*: deterministic, no dependency.
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

const FRAGMENTS: &[&str] = &[
    "Content-Type: multipart/mixed; boundary=\"b\"\n",
    "Content-Type: multipart/alternative; boundary=b2\n",
    "Content-Type: multipart/digest; boundary=\"b\"\n",
    "Content-Type: message/rfc822\n",
    "Content-Type: text/plain; charset=\"utf-8\"; format=flowed\n",
    "Content-Type: text/\n",
    "Content-Type: ;;=\"\n",
    "Content-Type: application/x; name*0*=utf-8''a%20; name*1=b; name*=c\n",
    "Content-Disposition: attachment; filename=\"a\\\"b\"\n",
    "Content-Language: en, (comment) de\n",
    "Content-Location: (unterminated\n",
    "Content-Transfer-Encoding: base64\n",
    "Content-Description: \"\"\"\"\"\\\\\n",
    "Mime-Version: 1.0\n",
    "From: \"A, B\" <a@b>, (c) d@e, group: x@y, <@r:z@w>;\n",
    "To: <\n",
    "Subject: =?utf-8?b?w7w=?= \t\n",
    "Return-Path: <s@t>\n",
    "Delivered-To: r@t\n",
    " folded continuation\n",
    "no colon line\n",
    "\n",
    "\r\n",
    "--b\n",
    "--b--\n",
    "--b2\n",
    "--b2--\r\n",
    "--\n",
    "body text \u{e9}\n",
    "\r",
    "\x00",
    "\u{ff}\u{fe}",
    "(",
    "\"",
    "\\",
];

fn random_message(rng: &mut Rng) -> Vec<u8> {
    let mut msg = Vec::new();
    for _ in 0..rng.below(40) {
        if rng.below(8) == 0 {
            for _ in 0..rng.below(20) {
                msg.push(rng.next() as u8);
            }
        } else {
            msg.extend_from_slice(FRAGMENTS[rng.below(FRAGMENTS.len())].as_bytes());
        }
    }
    msg
}

/// Balanced parentheses outside quoted strings and literals.
fn well_formed(bs: &[u8]) -> bool {
    let mut depth = 0i64;
    let mut i = 0;
    while i < bs.len() {
        match bs[i] {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            b'"' => {
                i += 1;
                while i < bs.len() && bs[i] != b'"' {
                    if bs[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'{' => {
                let close = bs[i..].iter().position(|&c| c == b'}').unwrap();
                let n: usize = std::str::from_utf8(&bs[i + 1..i + close])
                    .unwrap()
                    .parse()
                    .unwrap();
                i += close + 3 + n - 1;
            }
            _ => {}
        }
        i += 1;
    }
    depth == 0
}

#[test]
fn fuzz_never_panics_and_lf_equals_crlf() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..4000 {
        let msg = random_message(&mut rng);
        let mut opts = all_on();
        opts.mode = [
            InclusionMode::Standard,
            InclusionMode::Message,
            InclusionMode::Header,
            InclusionMode::Body,
            InclusionMode::HeaderBody,
        ][round % 5];
        opts.max_size = rng.below(64);
        let _ = extract(&msg, &opts);
        // Our parser, not behind extract's catch_unwind.
        let bs = body_structure(&msg);
        assert!(
            well_formed(&bs),
            "round {round}: {}",
            String::from_utf8_lossy(&bs)
        );
        assert_eq!(
            bs,
            body_structure(&to_crlf(&msg)),
            "round {round}: LF and CRLF differ for {:?}",
            String::from_utf8_lossy(&msg)
        );
    }
}
