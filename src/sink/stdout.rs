//! JSON Lines on standard output, flushed per batch.
//!
//! A reader that goes away (`watch | head -1`) is noticed even when no
//! event is being written: [`Sink::check`] polls fd 1, and a pipe whose
//! reader closed reports `POLLERR` on its write end (a hung-up terminal
//! `POLLHUP`).

use std::io::{self, Write};

use super::{Rejected, Sink, SinkError};
use crate::state::store::OutboxRow;

/// Writes each event as one line to stdout (or any writer, for tests).
pub struct StdoutSink<W: Write = io::Stdout> {
    out: W,
    /// The descriptor `check` polls (fd 1 for the real stdout).
    fd: Option<std::os::fd::RawFd>,
}

impl StdoutSink {
    pub fn new() -> StdoutSink {
        StdoutSink {
            out: io::stdout(),
            fd: Some(libc::STDOUT_FILENO),
        }
    }
}

/// Whether `fd` is a pipe or socket whose other end is gone, or a terminal
/// that hung up, or not open at all. Does not block.
pub fn output_gone(fd: std::os::fd::RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        // POLLERR, POLLHUP and POLLNVAL are always reported; asking for
        // nothing else keeps a full pipe from counting as an answer.
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
}

impl Default for StdoutSink {
    fn default() -> Self {
        StdoutSink::new()
    }
}

impl<W: Write> StdoutSink<W> {
    pub fn with_writer(out: W) -> StdoutSink<W> {
        StdoutSink { out, fd: None }
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> Sink for StdoutSink<W> {
    fn name(&self) -> &str {
        "stdout"
    }

    fn send(&mut self, batch: &[OutboxRow]) -> Result<Vec<Rejected>, SinkError> {
        let mut buf = Vec::with_capacity(batch.iter().map(|r| r.body.len() + 1).sum());
        for row in batch {
            buf.extend_from_slice(row.body.as_bytes());
            buf.push(b'\n');
        }
        let res = self.out.write_all(&buf).and_then(|()| self.out.flush());
        res.map(|()| Vec::new()).map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => SinkError::Closed,
            _ => SinkError::Failed(format!("cannot write to standard output: {e}")),
        })
    }

    fn check(&mut self) -> Result<(), SinkError> {
        match self.fd {
            Some(fd) if output_gone(fd) => Err(SinkError::Closed),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_line_per_row() {
        let mut s = StdoutSink::with_writer(Vec::new());
        let row = |seq: i64, body: &str| OutboxRow {
            seq,
            event_id: format!("x-{seq}"),
            body: body.into(),
        };
        s.send(&[row(1, "{\"a\":1}"), row(2, "{\"b\":2}")]).unwrap();
        assert_eq!(s.into_inner(), b"{\"a\":1}\n{\"b\":2}\n");
    }

    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_pipe_without_reader_is_gone_and_one_with_a_reader_is_not() {
        let mut fds = [0; 2];
        // SAFETY: pipe(2) into a two-element array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let [r, w] = fds;
        assert!(!output_gone(w));
        // SAFETY: closing the read end we own.
        unsafe { libc::close(r) };
        assert!(output_gone(w));
        // SAFETY: closing the write end we own.
        unsafe { libc::close(w) };
    }

    #[test]
    fn a_journal_stream_that_only_shut_its_own_side_is_not_gone() {
        // journald shuts down its writing side of a service's stdout
        // socket at once: that must not look like a closed output.
        let mut fds = [0; 2];
        // SAFETY: socketpair(2) into a two-element array.
        let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
        assert_eq!(r, 0);
        let [ours, journal] = fds;
        // SAFETY: shutdown/close of descriptors we own.
        unsafe { libc::shutdown(journal, libc::SHUT_WR) };
        assert!(!output_gone(ours));
        unsafe { libc::close(journal) };
        assert!(output_gone(ours), "the peer closed: gone");
        unsafe { libc::close(ours) };
    }

    #[test]
    fn broken_pipe_is_closed() {
        let mut s = StdoutSink::with_writer(Closed);
        let r = s.send(&[OutboxRow {
            seq: 1,
            event_id: "i".into(),
            body: "{}".into(),
        }]);
        assert!(matches!(r, Err(SinkError::Closed)));
    }
}
