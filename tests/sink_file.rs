//! The file sink: JSON Lines appended, created 0640, and reopened for
//! logrotate without losing or repeating a line.

mod support;
use support::sinkutil;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use maildir_events::sink::Sink;
use maildir_events::sink::file::{FileConfig, FileSink};
use maildir_events::state::store::OutboxRow;
use sinkutil::rows;

fn sink(path: &Path) -> FileSink {
    FileSink::new(FileConfig {
        path: path.to_path_buf(),
    })
    .expect("open the file sink")
}

fn send(s: &mut FileSink, batch: &[OutboxRow]) {
    let rejected = s.send(batch).expect("send");
    assert!(rejected.is_empty());
}

/// The lines a file holds.
fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .expect("read the events file")
        .lines()
        .map(str::to_string)
        .collect()
}

fn bodies(rows: &[OutboxRow]) -> Vec<String> {
    rows.iter().map(|r| r.body.clone()).collect()
}

#[test]
fn rename_then_reopen_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let rotated = dir.path().join("events.jsonl.1");
    let all = rows(1, 50);
    let mut s = sink(&path);

    send(&mut s, &all[0..10]);
    send(&mut s, &all[10..20]);
    // logrotate: move the file away; until SIGHUP we still write to it.
    fs::rename(&path, &rotated).unwrap();
    send(&mut s, &all[20..25]);
    s.reopen().expect("reopen");
    send(&mut s, &all[25..40]);
    send(&mut s, &all[40..50]);

    let old = lines(&rotated);
    let new = lines(&path);
    assert_eq!(
        old,
        bodies(&all[0..25]),
        "the old file has everything before reopen"
    );
    assert_eq!(
        new,
        bodies(&all[25..50]),
        "the new file has everything after"
    );
    let union: Vec<String> = old.into_iter().chain(new).collect();
    assert_eq!(union, bodies(&all), "every row exactly once, in order");
}

#[test]
fn a_created_file_is_0640_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    // SAFETY: umask only swaps the process's file mode mask.
    let old = unsafe { libc::umask(0o077) };
    let s = FileSink::new(FileConfig { path: path.clone() });
    // SAFETY: as above; put the mask back for the other tests.
    unsafe { libc::umask(old) };
    drop(s.expect("open"));
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
}

#[test]
fn an_existing_file_is_appended_to_and_keeps_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    fs::write(&path, "earlier\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let mut s = sink(&path);
    let batch = rows(1, 2);
    send(&mut s, &batch);
    let mut want = vec!["earlier".to_string()];
    want.extend(bodies(&batch));
    assert_eq!(lines(&path), want);
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn copytruncate_rotation_writes_from_the_new_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut s = sink(&path);
    send(&mut s, &rows(1, 5));
    // logrotate copytruncate: copy the content away, truncate in place.
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    let after = rows(6, 8);
    send(&mut s, &after);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        bodies(&after).join("\n") + "\n",
        "no hole of NULs before the new lines"
    );
}

#[test]
fn a_failed_reopen_keeps_writing_to_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("log");
    fs::create_dir(&sub).unwrap();
    let path = sub.join("events.jsonl");
    let mut s = sink(&path);
    send(&mut s, &rows(1, 2));
    // The directory goes away: reopening the path must fail...
    let moved = dir.path().join("log.old");
    fs::rename(&sub, &moved).unwrap();
    let err = s.reopen().expect_err("reopen cannot create the file");
    assert!(err.to_string().contains("events.jsonl"), "{err}");
    // ...and events keep going to the file we have.
    send(&mut s, &rows(3, 4));
    assert_eq!(lines(&moved.join("events.jsonl")), bodies(&rows(1, 4)));
}

#[test]
fn an_empty_batch_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut s = sink(&path);
    send(&mut s, &[]);
    assert_eq!(fs::metadata(&path).unwrap().len(), 0);
    assert_eq!(s.name(), format!("file:{}", path.display()));
}

/// The engine runs each sink on its own delivery thread.
#[test]
fn the_sink_can_move_to_a_delivery_thread() {
    fn send<T: Send + 'static>() {}
    send::<FileSink>();
}
