//! A minimal LMTP client: delivers "like an MTA" (Postfix's `lmtp:`
//! transport), so Dovecot itself writes the message into the Maildir.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::time::Duration;

/// Reads one (possibly multi-line `250-…`) reply; returns its code and text.
fn reply(reader: &mut BufReader<TcpStream>) -> (u16, String) {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read LMTP reply");
        assert!(n > 0, "LMTP server closed the connection; so far: {text}");
        text.push_str(&line);
        // "250-more follows" vs "250 last line"
        if line.as_bytes().get(3) != Some(&b'-') {
            let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            return (code, text);
        }
    }
}

/// Sends `command` and panics unless the reply code is in `expected`'s
/// hundreds (2 for 2xx, 3 for 354).
fn exchange(reader: &mut BufReader<TcpStream>, command: &str, expected: u16) -> String {
    if !command.is_empty() {
        reader
            .get_mut()
            .write_all(format!("{command}\r\n").as_bytes())
            .expect("write LMTP command");
    }
    let (code, text) = reply(reader);
    assert_eq!(code / 100, expected, "LMTP `{command}` → {text}");
    text
}

/// The message with CRLF line ends, dot-stuffed, and terminated by
/// `CRLF.CRLF`, as the DATA phase needs it.
fn data_block(message: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(message);
    let mut out = Vec::with_capacity(message.len() + 16);
    for line in text.split_inclusive('\n') {
        let line = line.trim_end_matches('\n').trim_end_matches('\r');
        if line.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Like [`deliver_lmtp`], but a refusal at RCPT or DATA (e.g. over quota,
/// 552) is `Err` with the reply instead of a panic.
pub fn try_deliver_lmtp(port: u16, rcpt: &str, message: &[u8]) -> Result<(), String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to LMTP");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    exchange(&mut reader, "", 2);
    exchange(&mut reader, "LHLO client.example.test", 2);
    exchange(&mut reader, "MAIL FROM:<sender@example.test>", 2);
    reader
        .get_mut()
        .write_all(format!("RCPT TO:<{rcpt}>\r\n").as_bytes())
        .expect("write LMTP command");
    let (code, text) = reply(&mut reader);
    if code / 100 != 2 {
        return Err(text);
    }
    exchange(&mut reader, "DATA", 3);
    reader
        .get_mut()
        .write_all(&data_block(message))
        .expect("write LMTP data");
    let (code, text) = reply(&mut reader);
    let _ = reader.get_mut().write_all(b"QUIT\r\n");
    if code / 100 == 2 { Ok(()) } else { Err(text) }
}

/// Delivers `message` to `rcpt` (e.g. `alice@example.test`) through the LMTP
/// listener on 127.0.0.1:`port`. Panics unless every reply is 2xx (354 for
/// DATA). When this returns, Dovecot has stored the message.
pub fn deliver_lmtp(port: u16, rcpt: &str, message: &[u8]) {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to LMTP");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    exchange(&mut reader, "", 2); // greeting
    exchange(&mut reader, "LHLO client.example.test", 2);
    exchange(&mut reader, "MAIL FROM:<sender@example.test>", 2);
    exchange(&mut reader, &format!("RCPT TO:<{rcpt}>"), 2);
    exchange(&mut reader, "DATA", 3);
    reader
        .get_mut()
        .write_all(&data_block(message))
        .expect("write LMTP data");
    // LMTP: one reply per accepted recipient.
    exchange(&mut reader, "", 2);
    exchange(&mut reader, "QUIT", 2);
}
