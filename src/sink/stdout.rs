//! JSON Lines on standard output, flushed per batch.

use std::io::{self, Write};

use super::{Rejected, Sink, SinkError};
use crate::store::OutboxRow;

/// Writes each event as one line to stdout (or any writer, for tests).
pub struct StdoutSink<W: Write = io::Stdout> {
    out: W,
}

impl StdoutSink {
    pub fn new() -> StdoutSink {
        StdoutSink { out: io::stdout() }
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        StdoutSink::new()
    }
}

impl<W: Write> StdoutSink<W> {
    pub fn with_writer(out: W) -> StdoutSink<W> {
        StdoutSink { out }
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
