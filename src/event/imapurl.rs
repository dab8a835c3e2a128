//! IMAP URLs (RFC 5092) that name the mailbox or message of an event.
//!
//! RFC 5423 events carry an `imap://` URL, and consumers compare these
//! URLs as strings, so they must be built the same way every time. The
//! character classes follow the RFC 5092 §11 grammar as quoted in dovecot/core
//! `src/lib-imap/imap-url.c`:
//!
//! ```text
//! enc-user    = 1*achar          achar = uchar / "&" / "="
//! enc-mailbox = 1*bchar          bchar = achar / ":" / "@" / "/"
//! uchar       = unreserved / pct-encoded / "!" / "$" / "'" / "(" / ")" / "*" / "+" / ","
//! ```
//!
//! Dovecot's `imap_url_create()` produces the same characters but writes
//! lower-case hex (`%3b`); this module writes upper-case hex as RFC 3986
//! §2.1 recommends. Both spellings are equivalent (RFC 3986 §6.2.2.1).

use std::fmt::Write;

/// Returns the URL of a mailbox, such as
/// `imap://alice%40example.org@mx1.example.org/INBOX;UIDVALIDITY=1700000000`.
///
/// `server` is a host or `host:port` and is used as given. An empty `user`
/// leaves out the `user@` part. `mailbox` is the IMAP name in UTF-8; it goes
/// into the URL as percent-encoded UTF-8, never as modified UTF-7.
/// `uidvalidity` is left out when it is `None` or zero, because the grammar
/// only allows a non-zero number. An empty `mailbox` is not a mailbox, so
/// the result is then the server URL `imap://server/` alone.
pub fn mailbox_url(server: &str, user: &str, mailbox: &str, uidvalidity: Option<u32>) -> String {
    let mut url = String::with_capacity(16 + server.len() + user.len() + mailbox.len() * 3);
    url.push_str("imap://");
    if !user.is_empty() {
        for &b in user.as_bytes() {
            push_byte(&mut url, b, is_achar(b));
        }
        url.push('@');
    }
    url.push_str(server);
    url.push('/');
    if mailbox.is_empty() {
        return url;
    }
    push_mailbox(&mut url, mailbox);
    if let Some(v) = uidvalidity.filter(|&v| v != 0) {
        let _ = write!(url, ";UIDVALIDITY={v}");
    }
    url
}

/// Returns the URL of one message, such as
/// `imap://mx1.example.org/INBOX;UIDVALIDITY=1700000000/;UID=42`.
///
/// A zero `uidvalidity` or `uid` is left out, as in Dovecot's
/// `imap_url_create()`: without a UID the result is the mailbox URL.
pub fn message_url(server: &str, user: &str, mailbox: &str, uidvalidity: u32, uid: u32) -> String {
    let mut url = mailbox_url(server, user, mailbox, Some(uidvalidity));
    if uid != 0 && !mailbox.is_empty() {
        let _ = write!(url, "/;UID={uid}");
    }
    url
}

/// RFC 3986 `unreserved` plus the RFC 5092 `sub-delims-sh`, `&` and `=`.
fn is_achar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$'()*+,&=".contains(&b)
}

/// Appends a mailbox name, keeping `/` as a path delimiter where that is safe.
///
/// Two rules of generic URI paths would change the name on the way back:
/// an empty segment (leading, trailing or doubled `/`) disappears when the
/// URL is parsed (Dovecot's parser skips empty segments), and a `.` or `..`
/// segment is removed by dot-segment resolution (RFC 3986 §5.2.4; RFC 5092
/// §7 asks for such mailbox names to be escaped). So a `/` that would start
/// an empty segment is written `%2F`, and the dots of a `.` or `..` segment
/// are written `%2E`.
fn push_mailbox(url: &mut String, mailbox: &str) {
    let bytes = mailbox.as_bytes();
    let mut start = 0;
    for i in 0..=bytes.len() {
        let delimiter = i < bytes.len()
            && bytes[i] == b'/'
            && i > 0
            && i + 1 < bytes.len()
            && bytes[i + 1] != b'/';
        if i < bytes.len() && !delimiter {
            continue;
        }
        let segment = &bytes[start..i];
        let dots = segment == b"." || segment == b"..";
        for &b in segment {
            push_byte(
                url,
                b,
                b != b'/' && !dots && (is_achar(b) || b == b':' || b == b'@'),
            );
        }
        if delimiter {
            url.push('/');
        }
        start = i + 1;
    }
}

/// Appends `b` as itself when `keep` is true, percent-encoded otherwise.
fn push_byte(url: &mut String, b: u8, keep: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if keep {
        url.push(char::from(b));
    } else {
        url.push('%');
        url.push(char::from(HEX[usize::from(b >> 4)]));
        url.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of the format reference §6.2 and the brief.
    #[test]
    fn reference_examples() {
        let cases: &[(&str, &str, &str, u32, u32, &str)] = &[
            (
                "imap.example.com",
                "joe@example.com",
                "INBOX",
                1275660208,
                25006,
                "imap://joe%40example.com@imap.example.com/INBOX;UIDVALIDITY=1275660208/;UID=25006",
            ),
            (
                "imap.example.com",
                "joe@example.com",
                "Archive.2024 Q1",
                1700000000,
                7,
                "imap://joe%40example.com@imap.example.com/Archive.2024%20Q1;UIDVALIDITY=1700000000/;UID=7",
            ),
            (
                "imap.example.com",
                "",
                "Entwürfe",
                42,
                3,
                "imap://imap.example.com/Entw%C3%BCrfe;UIDVALIDITY=42/;UID=3",
            ),
            (
                "mx1.example.org",
                "alice@example.org",
                "INBOX",
                1700000000,
                42,
                "imap://alice%40example.org@mx1.example.org/INBOX;UIDVALIDITY=1700000000/;UID=42",
            ),
            ("h", "u", "INBOX", 0, 5, "imap://u@h/INBOX/;UID=5"),
            ("h", "u", "INBOX", 15, 0, "imap://u@h/INBOX;UIDVALIDITY=15"),
        ];
        for &(server, user, mailbox, uidvalidity, uid, want) in cases {
            assert_eq!(message_url(server, user, mailbox, uidvalidity, uid), want);
        }
    }

    /// Mailbox URLs on `host.example.com` (written `h` in the table),
    /// including the `imap_url_create()` cases of Dovecot's
    /// `src/lib-imap/test-imap-url.c` (with upper-case hex).
    #[test]
    fn mailbox_urls() {
        let cases: &[(&str, &str, Option<u32>, &str)] = &[
            (
                "a@example.org",
                "INBOX",
                Some(1700000000),
                "a%40example.org@h/INBOX;UIDVALIDITY=1700000000",
            ),
            ("a@example.org", "INBOX", None, "a%40example.org@h/INBOX"),
            ("", "INBOX", Some(0), "h/INBOX"),
            ("user", "INBOX;Trash", None, "user@h/INBOX%3BTrash"),
            ("", "", None, "h/"),
            ("user", "", Some(7), "user@h/"),
            ("su:user", "", None, "su%3Auser@h/"),
            ("user;a", "", None, "user%3Ba@h/"),
            ("user@example.com", "", None, "user%40example.com@h/"),
            (
                "user",
                "INBOX/Important;Work",
                None,
                "user@h/INBOX/Important%3BWork",
            ),
            ("user", "#shared/news", None, "user@h/%23shared/news"),
            ("user", "INBOX", Some(15), "user@h/INBOX;UIDVALIDITY=15"),
            ("a&b=c!$'()*+,-._~", "x", None, "a&b=c!$'()*+,-._~@h/x"),
            (
                "",
                "a&b=c:d@e/f!$'()*+,-._~",
                None,
                "h/a&b=c:d@e/f!$'()*+,-._~",
            ),
            ("", "100% sure? #1", None, "h/100%25%20sure%3F%20%231"),
            (
                "",
                "tab\tnl\n\"<>[]\\^`{|}",
                None,
                "h/tab%09nl%0A%22%3C%3E%5B%5D%5C%5E%60%7B%7C%7D",
            ),
            ("", "受信", None, "h/%E5%8F%97%E4%BF%A1"),
            ("ü", "x", None, "%C3%BC@h/x"),
        ];
        for &(user, mailbox, uidvalidity, want) in cases {
            let want = format!("imap://{}", want.replacen("h/", "host.example.com/", 1));
            let got = mailbox_url("host.example.com", user, mailbox, uidvalidity);
            assert_eq!(got, want, "{mailbox:?}");
        }
        // The server is used as given, port and IPv6 literal included.
        assert_eq!(
            mailbox_url("host.example.com:993", "user", "", None),
            "imap://user@host.example.com:993/"
        );
        assert_eq!(
            mailbox_url("[::1]:143", "", "INBOX", None),
            "imap://[::1]:143/INBOX"
        );
    }

    /// Names whose path segments a URI parser would rewrite.
    #[test]
    fn unsafe_segments() {
        let cases: &[(&str, &str)] = &[
            (".", "%2E"),
            ("..", "%2E%2E"),
            ("...", "..."),
            (".hidden", ".hidden"),
            ("a/./b", "a/%2E/b"),
            ("a/../b", "a/%2E%2E/b"),
            ("a/..", "a/%2E%2E"),
            ("../a", "%2E%2E/a"),
            ("a.b/c..d", "a.b/c..d"),
            ("/a", "%2Fa"),
            ("a/", "a%2F"),
            ("a//b", "a%2F/b"),
            ("a///b", "a%2F%2F/b"),
            ("/", "%2F"),
            ("//", "%2F%2F"),
            ("./", ".%2F"),
            ("a/.//b", "a/.%2F/b"),
        ];
        for &(mailbox, want) in cases {
            assert_eq!(
                mailbox_url("h", "", mailbox, None),
                format!("imap://h/{want}"),
                "{mailbox:?}"
            );
        }
    }

    /// Every segment of an encoded name survives URI path resolution and
    /// percent-decodes back to the name.
    #[test]
    fn segments_decode_back() {
        let names = [
            "a", "/", "//a//", "./..", "a/./../b", "x/.../y", "%2F", "ü/;/?/#", "@:/&=",
        ];
        for name in names {
            let url = mailbox_url("h", "", name, None);
            let enc = url.strip_prefix("imap://h/").unwrap();
            let mut decoded = Vec::new();
            for (i, segment) in enc.split('/').enumerate() {
                assert!(!matches!(segment, "" | "." | ".."), "{name:?} -> {enc:?}");
                if i > 0 {
                    decoded.push(b'/');
                }
                let bytes = segment.as_bytes();
                let mut k = 0;
                while k < bytes.len() {
                    if bytes[k] == b'%' {
                        let hex = std::str::from_utf8(&bytes[k + 1..k + 3]).unwrap();
                        decoded.push(u8::from_str_radix(hex, 16).unwrap());
                        k += 3;
                    } else {
                        decoded.push(bytes[k]);
                        k += 1;
                    }
                }
            }
            assert_eq!(String::from_utf8(decoded).unwrap(), name);
        }
    }
}
