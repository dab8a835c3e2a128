//! Dovecot's messages from the systemd journal, through `journalctl`.
//!
//! `journalctl -u dovecot.service -o json` prints one JSON object per
//! entry; we take its `MESSAGE` (Dovecot's text without a time: the
//! journal has its own, `__REALTIME_TIMESTAMP`) and its `__CURSOR`, the
//! position committed with the events. `scan` runs it once from the
//! cursor; `watch` keeps one running with `--follow`. The first run takes
//! only the cursor of the newest entry (a silent baseline) unless
//! `--emit-existing`.

use std::io::{self, BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};

use chrono::{DateTime, FixedOffset};
use serde_json::Value;

use super::follow::MAX_LINE;

/// The systemd unit whose entries are read.
pub const UNIT: &str = "dovecot.service";

/// One journal entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub cursor: String,
    pub at: Option<DateTime<FixedOffset>>,
    pub message: String,
}

/// Reads one line of `journalctl -o json` (pure). `MESSAGE` may be a
/// string or, when it is not UTF-8, an array of bytes.
pub fn parse_entry(line: &str) -> Option<Entry> {
    let v: Value = serde_json::from_str(line).ok()?;
    let cursor = v.get("__CURSOR")?.as_str()?.to_string();
    let message = match v.get("MESSAGE") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(bytes)) => {
            let b: Vec<u8> = bytes
                .iter()
                .filter_map(|x| x.as_u64().and_then(|n| u8::try_from(n).ok()))
                .collect();
            String::from_utf8_lossy(&b).into_owned()
        }
        _ => String::new(),
    };
    let at = v
        .get("__REALTIME_TIMESTAMP")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(DateTime::from_timestamp_micros)
        .map(|t| t.with_timezone(&chrono::Local).fixed_offset());
    Some(Entry {
        cursor,
        at,
        message,
    })
}

/// The arguments of one `journalctl` run.
pub fn args(cursor: Option<&str>, follow: bool, baseline: bool) -> Vec<String> {
    let mut a = vec![
        "--unit".to_string(),
        UNIT.to_string(),
        "--output".to_string(),
        "json".to_string(),
        "--no-pager".to_string(),
        "--quiet".to_string(),
    ];
    if let Some(c) = cursor {
        a.push(format!("--after-cursor={c}"));
    } else if baseline {
        // Only the newest entry, for its cursor.
        a.push("--lines=1".to_string());
    }
    if follow {
        a.push("--follow".to_string());
    }
    a
}

/// A running `journalctl`.
pub struct Reader {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Reader {
    /// Starts `journalctl` (from `PATH`) with [`args`]. It gets SIGTERM
    /// when the thread that started it ends (the process's main thread),
    /// so a `--follow` never outlives us, not even a kill -9.
    pub fn spawn(cursor: Option<&str>, follow: bool, baseline: bool) -> io::Result<Reader> {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new("journalctl");
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .args(args(cursor, follow, baseline))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let out = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("journalctl has no stdout"))?;
        Ok(Reader {
            child,
            out: BufReader::new(out),
        })
    }

    /// The next entry, `None` at the end of the output. Lines longer than
    /// [`MAX_LINE`] (times 4: JSON escapes) are skipped.
    pub fn next_entry(&mut self) -> io::Result<Option<Entry>> {
        let limit = (MAX_LINE * 4) as u64;
        loop {
            let mut buf = Vec::new();
            let n = (&mut self.out).take(limit).read_until(b'\n', &mut buf)?;
            if n == 0 {
                return Ok(None);
            }
            if buf.last() != Some(&b'\n') && n as u64 == limit {
                // Over-long: drop the rest of the line.
                let mut sink = Vec::new();
                while (&mut self.out).take(limit).read_until(b'\n', &mut sink)? as u64 == limit
                    && sink.last() != Some(&b'\n')
                {
                    sink.clear();
                }
                crate::warnlimit::warn_path(
                    "journal",
                    "access-journal-long",
                    "skipped an over-long journal entry",
                );
                continue;
            }
            if let Some(e) = parse_entry(&String::from_utf8_lossy(&buf)) {
                return Ok(Some(e));
            }
        }
    }

    /// Waits for `journalctl` and says whether it failed.
    pub fn finish(mut self) -> io::Result<()> {
        let status = self.child.wait()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("journalctl exited with {status}")))
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // Only our own child, by its handle.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries() {
        let e = parse_entry(r#"{"__CURSOR":"s=abc;i=1","__REALTIME_TIMESTAMP":"1796525444000000","MESSAGE":"imap-login: Login: user=<a>, session=<s>","_SYSTEMD_UNIT":"dovecot.service"}"#).unwrap();
        assert_eq!(e.cursor, "s=abc;i=1");
        assert_eq!(e.at.unwrap().timestamp(), 1_796_525_444);
        assert_eq!(e.message, "imap-login: Login: user=<a>, session=<s>");
        let e = parse_entry(r#"{"__CURSOR":"c","MESSAGE":[104,105,255]}"#).unwrap();
        assert_eq!(e.message, "hi\u{fffd}");
        assert!(e.at.is_none());
        assert!(parse_entry(r#"{"MESSAGE":"no cursor"}"#).is_none());
        assert!(parse_entry("not json").is_none());
    }

    #[test]
    fn arguments() {
        let a = args(Some("s=1"), true, false).join(" ");
        assert!(a.contains("--unit dovecot.service") && a.contains("--after-cursor=s=1"));
        assert!(a.ends_with("--follow"));
        assert!(args(None, false, true).contains(&"--lines=1".to_string()));
        assert!(
            !args(None, false, false)
                .iter()
                .any(|x| x.starts_with("--lines"))
        );
    }
}
