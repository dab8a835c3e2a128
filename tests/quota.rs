//! Binary-level tests of quota events (QuotaExceed, QuotaWithin,
//! QuotaChange) and expire rules (MessageExpire), in `scan` and live in
//! `watch`, on generated Maildirs.
//!
//! Usage is what the directory holds: the `S=` size of a message's name,
//! else its file size (`stat`), summed over all folders but the ignored
//! ones. Some messages here deliberately have an `S=` that differs from
//! their file size, so a test tells which one was counted. Limits: 10K is
//! 10240 bytes; the hysteresis is 1% unless set.

mod support;
use support::user;

use std::collections::BTreeSet;
use std::fs;

use serde_json::Value;

use support::live::WAIT;
use user::{
    Env, INBOX_URL, base, base_at, body_of, check_quota_event, keys, kinds, mbox, n, now_secs, one,
    quota_events, quota_kinds, quota_numbers, s, show, sized,
};

// ---------------------------------------------------------------- setup

/// A store using 9000 bytes in 4 messages, one of them in `.Archive`:
///
/// | where          | name          | counted | file |
/// |----------------|---------------|---------|------|
/// | INBOX new/     | `…M1…,S=3000` | 3000    | 3000 |
/// | INBOX cur/     | `…M2…,S=3000` | 3000    | 3000 |
/// | INBOX cur/     | `…M3…` (no S=)| 2000    | 2000 |
/// | .Archive cur/  | `…M4…,S=1000` | 1000    | 100  |
fn store_9000(config: &str) -> Env {
    let mut env = Env::new();
    env.set_config(config);
    env.put("", "new", &sized(1, 3000), &body_of(3000));
    env.put(
        "",
        "cur",
        &format!("{}:2,S", sized(2, 3000)),
        &body_of(3000),
    );
    env.put("", "cur", &format!("{}:2,", base(3)), &body_of(2000));
    env.folder(".Archive");
    env.put(
        ".Archive",
        "cur",
        &format!("{}:2,S", sized(4, 1000)),
        &body_of(100),
    );
    env
}

/// The quota events of a scan, each checked for its envelope.
fn quota_of(evs: &[Value]) -> Vec<Value> {
    let q: Vec<Value> = quota_events(evs).into_iter().cloned().collect();
    for ev in &q {
        check_quota_event(ev);
    }
    q
}

/// The one quota event of a scan, of `kind`.
fn only_quota<'a>(evs: &'a [Value], kind: &str) -> &'a Value {
    assert_eq!(quota_kinds(evs), [kind], "{}", show(evs));
    let ev = one(evs, kind);
    check_quota_event(ev);
    ev
}

fn no_quota(evs: &[Value]) {
    assert!(
        quota_events(evs).is_empty(),
        "expected no quota event:{}",
        show(evs)
    );
}

// ------------------------------------------------------------ crossings

#[test]
fn usage_reaching_the_storage_limit_is_one_quota_exceed() {
    let env = store_9000("[quota]\nstorage = \"10K\"\nmessages = 50\n");
    env.baseline();
    env.quiet();

    // 9000 + 1239 = 10239: one byte under the limit.
    env.deliver("", &base(5), 1239);
    let evs = env.scan();
    assert_eq!(kinds(&evs), ["MessageNew"], "{}", show(&evs));

    // Now exactly 10240 (the last byte from stat: no S=): at the limit is
    // over.
    env.rm("", "new", &base(5));
    env.deliver("", &base(6), 1240);
    let evs = env.scan();
    let ev = only_quota(&evs, "QuotaExceed");
    assert_eq!(
        quota_numbers(ev),
        (10, Some(10), 5, Some(50)),
        "(diskUsed, diskQuota, messages, maxMessages): {ev}"
    );
    assert_eq!(
        evs.len(),
        3,
        "MessageNew, MessageExpunge, QuotaExceed:{}",
        show(&evs)
    );
    // Quota events name the INBOX, without UIDVALIDITY, and carry no
    // mailboxID.
    assert_eq!(s(ev, "uri"), INBOX_URL);
    assert!(ev.get("mailboxID").is_none(), "{ev}");

    // Staying over: no second QuotaExceed.
    env.put("", "new", &sized(7, 500), &body_of(500));
    let evs = env.scan();
    assert_eq!(kinds(&evs), ["MessageNew"], "{}", show(&evs));
    env.quiet();
}

#[test]
fn diskused_is_rounded_up_to_kib() {
    let env = store_9000("[quota]\nstorage = \"10K\"\n");
    env.baseline();
    // 9000 + 1300 = 10300 bytes = 10.06 KiB → 11.
    env.put("", "new", &sized(5, 1300), &body_of(1300));
    let evs = env.scan();
    let ev = only_quota(&evs, "QuotaExceed");
    assert_eq!(quota_numbers(ev), (11, Some(10), 5, None), "{ev}");
}

#[test]
fn hysteresis_holds_until_usage_is_clearly_under() {
    let env = store_9000("[quota]\nstorage = \"10K\"\nmessages = 50\n");
    env.baseline();
    env.put("", "new", &sized(5, 1740), &body_of(1740)); // 10740
    let evs = env.scan();
    only_quota(&evs, "QuotaExceed");

    // 10200: under the limit but within 1% (10137.6): still over, nothing.
    env.rm("", "new", &sized(5, 1740));
    env.put("", "new", &sized(6, 1200), &body_of(1200));
    let evs = env.scan();
    no_quota(&evs);
    assert_eq!(evs.len(), 2, "{}", show(&evs));

    // 10138: the last byte inside the margin.
    env.rm("", "new", &sized(6, 1200));
    env.put("", "new", &sized(7, 1138), &body_of(1138));
    no_quota(&env.scan());

    // 10100: clearly under → QuotaWithin.
    env.rm("", "new", &sized(7, 1138));
    env.put("", "new", &sized(8, 1100), &body_of(1100));
    let evs = env.scan();
    let ev = only_quota(&evs, "QuotaWithin");
    assert_eq!(quota_numbers(ev), (10, Some(10), 5, Some(50)), "{ev}");
    env.quiet();

    // Crossing again is a new QuotaExceed.
    env.put("", "new", &sized(9, 200), &body_of(200)); // 10300
    let evs = env.scan();
    let ev = only_quota(&evs, "QuotaExceed");
    assert_eq!(quota_numbers(ev), (11, Some(10), 6, Some(50)), "{ev}");
}

#[test]
fn the_hysteresis_is_configurable() {
    // 10%: Within only under 9216 bytes.
    let env = store_9000("[quota]\nstorage = \"10K\"\nhysteresis_percent = 10.0\n");
    env.baseline();
    env.put("", "new", &sized(5, 1240), &body_of(1240)); // 10240
    only_quota(&env.scan(), "QuotaExceed");
    env.rm("", "new", &sized(5, 1240));
    env.put("", "new", &sized(6, 300), &body_of(300)); // 9300: inside 10%
    no_quota(&env.scan());
    env.rm("", "new", &sized(6, 300)); // 9000: clearly under
    only_quota(&env.scan(), "QuotaWithin");

    // 0%: Within as soon as usage is under the limit.
    let env = store_9000("[quota]\nstorage = \"10K\"\nhysteresis_percent = 0.0\n");
    env.baseline();
    env.put("", "new", &sized(5, 1240), &body_of(1240)); // 10240
    only_quota(&env.scan(), "QuotaExceed");
    env.rm("", "new", &sized(5, 1240));
    env.put("", "new", &sized(6, 1239), &body_of(1239)); // 10239
    only_quota(&env.scan(), "QuotaWithin");
}

#[test]
fn the_message_count_limit() {
    let env = store_9000("[quota]\nmessages = 6\n");
    env.baseline();
    env.deliver("", &base(5), 100); // 5 messages
    no_quota(&env.scan());
    env.deliver(".Archive", &base(6), 100); // 6: at the limit
    let evs = env.scan();
    let ev = only_quota(&evs, "QuotaExceed");
    // No storage limit: no diskQuota, but diskUsed all the same.
    assert_eq!(
        quota_numbers(ev),
        (9200_u64.div_ceil(1024), None, 6, Some(6)),
        "{ev}"
    );
    env.rm(".Archive", "new", &base(6)); // 5 < 6 × 0.99
    let evs = env.scan();
    let ev = only_quota(&evs, "QuotaWithin");
    assert_eq!(quota_numbers(ev), (9, None, 5, Some(6)), "{ev}");
}

#[test]
fn either_limit_reached_is_over() {
    let env = store_9000("[quota]\nstorage = \"10K\"\nmessages = 6\n");
    env.baseline();
    // Two small messages: the count limit is reached, storage is not.
    env.deliver("", &base(5), 100);
    env.deliver("", &base(6), 100);
    let ev = only_quota(&env.scan(), "QuotaExceed").clone();
    assert_eq!(quota_numbers(&ev), (9, Some(10), 6, Some(6)), "{ev}");
    // Back under the count but over the storage limit: still over.
    env.rm("", "new", &base(6));
    env.put("", "new", &sized(7, 2000), &body_of(2000)); // 11100 bytes, 6 messages
    env.rm("", "new", &base(5)); // 11000 bytes, 5 messages
    no_quota(&env.scan());
    // Under both.
    env.rm("", "new", &sized(7, 2000)); // 9000 bytes, 4 messages
    only_quota(&env.scan(), "QuotaWithin");
}

#[test]
fn the_first_evaluation_only_records_the_state() {
    // Already over when first seen, even with --emit-existing: no quota
    // event, but the state says "over".
    let env = store_9000("[quota]\nstorage = \"8K\"\n");
    let evs = env.scan_with(&["--emit-existing"]);
    let messages = evs
        .iter()
        .filter(|e| e["event"] == "MessageNew" || e["event"] == "MessageAppend")
        .count();
    assert_eq!(messages, 4, "{}", show(&evs));
    no_quota(&evs);
    env.quiet();
    env.deliver("", &base(5), 100);
    no_quota(&env.scan());
    // 9100 - 3000 = 6100 < 8192 × 0.99.
    env.rm("", "new", &sized(1, 3000));
    let evs = env.scan();
    let ev = only_quota(&evs, "QuotaWithin");
    assert_eq!(quota_numbers(ev), (6, Some(8), 4, None), "{ev}");
}

#[test]
fn quota_turned_on_for_a_known_store_counts_every_message() {
    // The state is built without quota, so sizes of messages without S=
    // were never needed; turning quota on must count them anyway (the
    // first evaluation is silent).
    let mut env = store_9000("");
    env.baseline();
    env.quiet();
    env.set_config("[quota]\nstorage = \"10K\"\n");
    no_quota(&env.scan());
    // 9000 + 1240 = 10240, of which 2000 (M3) and 1240 (M5) from stat.
    env.deliver(".Archive", &base(5), 1240);
    let evs = env.scan();
    let ev = only_quota(&evs, "QuotaExceed");
    assert_eq!(quota_numbers(ev), (10, Some(10), 5, None), "{ev}");
}

// ---------------------------------------------------- maildirsize vs config

#[test]
fn maildirsize_limits_win_over_the_config() {
    let env = store_9000("[quota]\nstorage = \"10K\"\nmessages = 50\n");
    // Dovecot's file: 20K and 100 messages; the deltas are not usage.
    env.maildirsize("20480S,100C\n9000 4\n-1 -1\n");
    env.baseline();
    env.put("", "new", &sized(5, 3000), &body_of(3000)); // 12000: over the config only
    no_quota(&env.scan());
    env.put("", "new", &sized(6, 8480), &body_of(100)); // 20480
    let evs = env.scan();
    let ev = only_quota(&evs, "QuotaExceed");
    assert_eq!(quota_numbers(ev), (20, Some(20), 6, Some(100)), "{ev}");
}

#[test]
fn a_limit_maildirsize_lacks_falls_back_to_the_config() {
    let env = store_9000("[quota]\nstorage = \"10K\"\nmessages = 6\n");
    env.maildirsize("20480S\n");
    env.baseline();
    env.deliver("", &base(5), 100);
    env.deliver("", &base(6), 100); // 6 messages: the config's count limit
    let evs = env.scan();
    let ev = only_quota(&evs, "QuotaExceed");
    assert_eq!(quota_numbers(ev), (9, Some(20), 6, Some(6)), "{ev}");
}

#[test]
fn force_makes_the_config_win_over_maildirsize() {
    // Globally.
    let env = store_9000("[quota]\nstorage = \"10K\"\nforce = true\n");
    env.maildirsize("20480S,100C\n");
    env.baseline();
    env.put("", "new", &sized(5, 1240), &body_of(1240)); // 10240
    let evs = env.scan();
    let ev = only_quota(&evs, "QuotaExceed");
    // The config has no count limit: forced, the file's 100C is not used.
    assert_eq!(quota_numbers(ev), (10, Some(10), 5, None), "{ev}");

    // Per user, with the global rule not forced.
    let env = store_9000(
        "[quota]\nstorage = \"1G\"\n\n[[quota.user]]\nuser = \"alice@example.org\"\nstorage = \"10K\"\nforce = true\n",
    );
    env.maildirsize("20480S\n");
    env.baseline();
    env.put("", "new", &sized(5, 1240), &body_of(1240));
    let evs = env.scan();
    let ev = only_quota(&evs, "QuotaExceed");
    assert_eq!(quota_numbers(ev), (10, Some(10), 5, None), "{ev}");
}

#[test]
fn a_user_rule_that_does_not_force_lets_maildirsize_win_over_a_forced_default() {
    let env = store_9000(
        "[quota]\nstorage = \"1G\"\nforce = true\n\n[[quota.user]]\nuser = \"alice@example.org\"\nstorage = \"5K\"\nforce = false\n\n[[quota.user]]\nuser = \"bob@example.org\"\nstorage = \"1K\"\n",
    );
    env.maildirsize("10240S\n");
    env.baseline();
    env.put("", "new", &sized(5, 1240), &body_of(1240)); // 10240
    let evs = env.scan();
    let ev = only_quota(&evs, "QuotaExceed");
    assert_eq!(quota_numbers(ev), (10, Some(10), 5, None), "{ev}");
}

#[test]
fn a_user_rule_sets_the_limit_without_maildirsize() {
    let env = store_9000(
        "[quota]\nstorage = \"1G\"\nmessages = 6\n\n[[quota.user]]\nuser = \"alice@example.org\"\nstorage = \"10K\"\n\n[[quota.user]]\nuser = \"bob@example.org\"\nstorage = \"1K\"\n",
    );
    env.baseline();
    env.put("", "new", &sized(5, 1240), &body_of(1240)); // 10240, 5 messages
    let evs = env.scan();
    let ev = only_quota(&evs, "QuotaExceed");
    // The count limit falls back to the global one.
    assert_eq!(quota_numbers(ev), (10, Some(10), 5, Some(6)), "{ev}");
}

#[test]
fn a_limit_change_in_maildirsize_is_quota_change() {
    let env = store_9000("[quota]\nstorage = \"1G\"\n");
    env.maildirsize("20480S\n9000 4\n");
    env.put("", "new", &sized(5, 3000), &body_of(3000)); // 12000
    env.baseline();

    // New deltas, same definition: nothing.
    env.maildirsize("20480S\n9000 4\n3000 1\n");
    env.quiet();

    // Raised: QuotaChange alone.
    env.maildirsize("30720S\n12000 5\n");
    let evs = env.scan();
    let ev = only_quota(&evs, "QuotaChange");
    assert_eq!(evs.len(), 1, "{}", show(&evs));
    assert_eq!(quota_numbers(ev), (12, Some(30), 5, None), "{ev}");
    env.quiet();

    // Lowered under usage: QuotaChange and QuotaExceed.
    env.maildirsize("10240S\n12000 5\n");
    let evs = env.scan();
    assert_eq!(
        quota_kinds(&evs),
        ["QuotaChange", "QuotaExceed"],
        "{}",
        show(&evs)
    );
    for ev in quota_of(&evs) {
        assert_eq!(quota_numbers(&ev), (12, Some(10), 5, None), "{ev}");
    }
    env.quiet();

    // A count limit added, still over: QuotaChange only.
    env.maildirsize("10240S,1000C\n");
    let evs = env.scan();
    let ev = only_quota(&evs, "QuotaChange");
    assert_eq!(quota_numbers(ev), (12, Some(10), 5, Some(1000)), "{ev}");

    // Raised again: QuotaChange and QuotaWithin.
    env.maildirsize("20480S,1000C\n");
    let evs = env.scan();
    assert_eq!(
        quota_kinds(&evs),
        ["QuotaChange", "QuotaWithin"],
        "{}",
        show(&evs)
    );
    for ev in quota_of(&evs) {
        assert_eq!(quota_numbers(&ev), (12, Some(20), 5, Some(1000)), "{ev}");
    }

    // The file removed: the config's 1G is in force.
    fs::remove_file(env.root.join("maildirsize")).unwrap();
    let evs = env.scan();
    let ev = only_quota(&evs, "QuotaChange");
    assert_eq!(quota_numbers(ev), (12, Some(1 << 20), 5, None), "{ev}");
    env.quiet();
}

#[test]
fn a_config_limit_change_is_quota_change() {
    let mut env = store_9000("[quota]\nstorage = \"20K\"\n");
    env.baseline();
    env.set_config("[quota]\nstorage = \"8K\"\n");
    let evs = env.scan();
    assert_eq!(
        quota_kinds(&evs),
        ["QuotaChange", "QuotaExceed"],
        "{}",
        show(&evs)
    );
    for ev in quota_of(&evs) {
        assert_eq!(quota_numbers(&ev), (9, Some(8), 4, None), "{ev}");
    }
}

#[test]
fn a_broken_maildirsize_warns_and_the_config_applies() {
    let env = store_9000("[quota]\nstorage = \"10K\"\n");
    env.maildirsize("lots of quota\n12 1\n");
    let run = env.run(&[]);
    assert!(run.events().is_empty(), "baseline");
    let warned = |stderr: &str| {
        stderr
            .lines()
            .any(|l| l.contains("maildirsize") && l.to_lowercase().contains("warn"))
    };
    assert!(
        warned(&run.stderr),
        "no warning naming maildirsize on stderr:\n{}",
        run.stderr
    );
    env.put("", "new", &sized(5, 1240), &body_of(1240)); // 10240
    let run = env.run(&[]);
    let evs = run.events();
    let ev = only_quota(&evs, "QuotaExceed");
    assert_eq!(quota_numbers(ev), (10, Some(10), 5, None), "{ev}");
    assert!(warned(&run.stderr), "{}", run.stderr);

    // An empty file is broken too.
    let env = store_9000("[quota]\nstorage = \"10K\"\n");
    env.maildirsize("");
    env.baseline();
    env.put("", "new", &sized(5, 1240), &body_of(1240));
    let run = env.run(&[]);
    let evs = run.events();
    let ev = only_quota(&evs, "QuotaExceed");
    assert_eq!(quota_numbers(ev), (10, Some(10), 5, None), "{ev}");
    assert!(warned(&run.stderr), "{}", run.stderr);
}

#[test]
fn ignored_folders_are_not_counted() {
    let env = store_9000("[quota]\nstorage = \"10K\"\nignore = [\"Trash\", \"Spam*\"]\n");
    env.folder(".Trash");
    env.folder(".Spam");
    env.folder(".Spam.Old");
    env.put(
        ".Trash",
        "cur",
        &format!("{}:2,S", sized(10, 1500)),
        &body_of(1500),
    );
    env.put(
        ".Spam.Old",
        "cur",
        &format!("{}:2,S", sized(11, 5000)),
        &body_of(100),
    );
    env.baseline();

    // Into ignored folders: nothing, however much.
    env.put(".Trash", "new", &sized(12, 5000), &body_of(5000));
    env.put(".Spam", "new", &sized(13, 5000), &body_of(100));
    let evs = env.scan();
    no_quota(&evs);
    assert_eq!(kinds(&evs), ["MessageNew", "MessageNew"], "{}", show(&evs));

    // A MOVE from Trash to INBOX counts it: 9000 + 1500 = 10500.
    let name = format!("{}:2,S", sized(10, 1500));
    env.mv((".Trash", "cur", &name), ("", "cur", &name));
    let evs = env.scan();
    let ev = only_quota(&evs, "QuotaExceed");
    assert_eq!(quota_numbers(ev), (11, Some(10), 5, None), "{ev}");

    // A MOVE back: under again.
    env.mv(("", "cur", &name), (".Trash", "cur", &name));
    let evs = env.scan();
    let ev = only_quota(&evs, "QuotaWithin");
    assert_eq!(quota_numbers(ev), (9, Some(10), 4, None), "{ev}");

    // A folder that is not ignored, made anew: counted.
    env.folder(".Trash2");
    env.put(
        ".Trash2",
        "cur",
        &format!("{}:2,S", sized(14, 1240)),
        &body_of(1240),
    );
    only_quota(&env.scan(), "QuotaExceed");
}

#[test]
fn deleting_a_folder_lowers_usage() {
    let env = store_9000("[quota]\nstorage = \"10K\"\n");
    env.folder(".Old");
    env.put(
        ".Old",
        "cur",
        &format!("{}:2,S", sized(10, 1240)),
        &body_of(1240),
    );
    env.baseline(); // 10240: over, silently
    fs::remove_dir_all(env.dir(".Old")).unwrap();
    let evs = env.scan();
    let ev = only_quota(&evs, "QuotaWithin");
    assert_eq!(quota_numbers(ev), (9, Some(10), 4, None), "{ev}");
    assert!(
        evs.iter().any(|e| e["event"] == "MailboxDelete"),
        "{}",
        show(&evs)
    );
}

#[test]
fn quota_events_follow_the_group_filter() {
    let env = store_9000("[quota]\nstorage = \"10K\"\n\n[filter]\ngroups = [\"message\"]\n");
    env.baseline();
    env.put("", "new", &sized(5, 1240), &body_of(1240));
    let evs = env.scan();
    assert_eq!(kinds(&evs), ["MessageNew"], "{}", show(&evs));

    let env = store_9000("[quota]\nstorage = \"10K\"\n\n[filter]\ngroups = [\"quota\"]\n");
    env.baseline();
    env.put("", "new", &sized(5, 1240), &body_of(1240));
    let evs = env.scan();
    assert_eq!(kinds(&evs), ["QuotaExceed"], "{}", show(&evs));
}

// --------------------------------------------------------------- live

#[test]
fn watch_reports_the_crossing_live() {
    let env = store_9000("[quota]\nstorage = \"10K\"\nmessages = 50\n");
    let w = env.watch_as_run(&[]);
    // The catch-up of a new store is a silent baseline.
    let evs = w.settle(std::time::Duration::from_millis(300));
    assert!(evs.is_empty(), "{}", show(&evs));

    // Just under: MessageNew only.
    env.deliver("", &base(5), 1239);
    let evs = w.wait_exactly(1);
    assert_eq!(kinds(&evs), ["MessageNew"], "{}", show(&evs));

    // Over, from stat: QuotaExceed.
    env.deliver(".Archive", &base(6), 1240);
    let evs = w.wait_for("QuotaExceed", WAIT, |e| {
        e.iter().any(|e| e["event"] == "QuotaExceed")
    });
    let ev = one(&evs, "QuotaExceed");
    check_quota_event(ev);
    assert_eq!(quota_numbers(ev), (12, Some(10), 6, Some(50)), "{ev}"); // 11479 bytes

    // Staying over: nothing more.
    env.put("", "new", &sized(7, 100), &body_of(100));
    let evs = w.wait_exactly(4);
    assert_eq!(
        kinds(&evs),
        ["MessageNew", "MessageNew", "QuotaExceed", "MessageNew"],
        "{}",
        show(&evs)
    );

    // Within the margin: 11579 - 1239 - 100 - 100 = 10140 ≥ 10137.6.
    env.rm("", "new", &base(5));
    env.rm("", "new", &sized(7, 100));
    let r = env.path(".Archive", "new", &base(6));
    // Shrink M6 by 100 bytes the Maildir way: a new name, then the old one
    // gone.
    env.deliver(".Archive", &base(8), 1140);
    fs::remove_file(r).unwrap();
    let evs = w.settle(std::time::Duration::from_millis(500));
    assert!(
        quota_events(&evs[4..]).is_empty(),
        "inside the margin:{}",
        show(&evs)
    );

    // Clearly under: QuotaWithin.
    env.rm("", "new", &sized(1, 3000));
    let evs = w.wait_for("QuotaWithin", WAIT, |e| {
        e.iter().any(|e| e["event"] == "QuotaWithin")
    });
    let ev = one(&evs, "QuotaWithin");
    check_quota_event(ev);
    assert_eq!(quota_numbers(ev), (7, Some(10), 4, Some(50)), "{ev}"); // 7140 bytes
    let all = w.stop();
    assert_eq!(
        quota_kinds(&all),
        ["QuotaExceed", "QuotaWithin"],
        "{}",
        show(&all)
    );
    // What the watcher committed is the disk: a scan after it is quiet.
    env.quiet();
}

/// Dovecot replaces `maildirsize` by rename when it rewrites it (a new
/// limit, a recalculation); the watcher must report the new limit live,
/// not only at the user's next message change.
#[test]
fn watch_reports_a_maildirsize_limit_change_live() {
    let env = store_9000("[quota]\nstorage = \"1G\"\n");
    env.maildirsize("20480S\n9000 4\n");
    let w = env.watch_as_run(&[]);
    let evs = w.settle(std::time::Duration::from_millis(300));
    assert!(evs.is_empty(), "{}", show(&evs));

    let tmp = env.root.join("maildirsize.lock");
    fs::write(&tmp, "8192S\n9000 4\n").unwrap();
    fs::rename(&tmp, env.root.join("maildirsize")).unwrap();
    let evs = w.wait_for(
        "QuotaChange and QuotaExceed after maildirsize was replaced",
        WAIT,
        |e| quota_kinds(e).len() >= 2,
    );
    assert_eq!(
        quota_kinds(&evs),
        ["QuotaChange", "QuotaExceed"],
        "{}",
        show(&evs)
    );
    for ev in quota_of(&evs) {
        assert_eq!(quota_numbers(&ev), (9, Some(8), 4, None), "{ev}");
    }
    w.stop();
    env.quiet();
}

// -------------------------------------------------------------- expire

/// A store with `.Trash` and `.Trash.Sub` and INBOX holding messages of
/// known ages, with Dovecot's UIDs; rule: Trash, 30 days.
///
/// Trash: UID 1 from 2020 (expired), 2 from 31 days ago (expired), 3 from
/// 29 days ago, 4 from now. INBOX: UID 1 from 2020. Trash.Sub: UID 1 from
/// 2020 (the rule is for Trash only).
struct Aged {
    env: Env,
    trash: [String; 4],
    inbox_old: String,
    sub_old: String,
}

fn aged(rules: &str) -> Aged {
    let mut env = Env::new();
    env.set_config(rules);
    let now = now_secs();
    let day = 86_400;
    let trash = [
        base_at(1_600_000_000, 1),
        base_at(now - 31 * day, 2),
        base_at(now - 29 * day, 3),
        base_at(now, 4),
    ];
    env.folder(".Trash");
    let mut uidlist = String::from("3 V1700000000 N5\n");
    for (i, b) in trash.iter().enumerate() {
        env.put(".Trash", "cur", &format!("{b}:2,ST"), &body_of(100));
        uidlist.push_str(&format!("{} :{b}\n", i + 1));
    }
    env.write(".Trash", "dovecot-uidlist", uidlist.as_bytes());
    let inbox_old = base_at(1_600_000_000, 5);
    env.put("", "cur", &format!("{inbox_old}:2,S"), &body_of(100));
    env.write(
        "",
        "dovecot-uidlist",
        format!("3 V1700000001 N2\n1 :{inbox_old}\n").as_bytes(),
    );
    env.folder(".Trash.Sub");
    let sub_old = base_at(1_600_000_000, 6);
    env.put(
        ".Trash.Sub",
        "cur",
        &format!("{sub_old}:2,S"),
        &body_of(100),
    );
    env.write(
        ".Trash.Sub",
        "dovecot-uidlist",
        format!("3 V1700000002 N2\n1 :{sub_old}\n").as_bytes(),
    );
    Aged {
        env,
        trash,
        inbox_old,
        sub_old,
    }
}

const TRASH_30D: &str = "[[expire]]\nfolder = \"Trash\"\nmin_age = \"30d\"\n";

/// The set of key names of an event, without `uidset` differences.
fn key_set(ev: &Value) -> BTreeSet<&str> {
    keys(ev).into_iter().collect()
}

#[test]
fn expunging_an_old_message_from_an_expire_folder_is_message_expire() {
    let a = aged(TRASH_30D);
    let env = &a.env;
    env.baseline();

    env.rm(".Trash", "cur", &format!("{}:2,ST", a.trash[0]));
    let evs = env.scan();
    assert_eq!(kinds(&evs), ["MessageExpire"], "{}", show(&evs));
    let expire = evs[0].clone();
    assert_eq!(mbox(&expire), "Trash");
    assert_eq!(s(&expire, "uidset"), "1");
    assert_eq!(n(&expire, "messages"), 3);
    assert_eq!(n(&expire, "uidnext"), 5);

    // A message of today: MessageExpunge, with the same keys.
    env.rm(".Trash", "cur", &format!("{}:2,ST", a.trash[3]));
    let evs = env.scan();
    assert_eq!(kinds(&evs), ["MessageExpunge"], "{}", show(&evs));
    assert_eq!(mbox(&evs[0]), "Trash");
    assert_eq!(s(&evs[0], "uidset"), "4");
    assert_eq!(
        key_set(&evs[0]),
        key_set(&expire),
        "same keys as MessageExpire"
    );

    // An old message of another folder: MessageExpunge.
    env.rm("", "cur", &format!("{}:2,S", a.inbox_old));
    let evs = env.scan();
    assert_eq!(kinds(&evs), ["MessageExpunge"], "{}", show(&evs));
    assert_eq!(mbox(&evs[0]), "INBOX");
    env.rm(".Trash.Sub", "cur", &format!("{}:2,S", a.sub_old));
    let evs = env.scan();
    assert_eq!(kinds(&evs), ["MessageExpunge"], "{}", show(&evs));
    assert_eq!(mbox(&evs[0]), "Trash.Sub");
}

#[test]
fn one_scan_splits_expired_and_young_expunges() {
    let a = aged(TRASH_30D);
    let env = &a.env;
    env.baseline();
    for b in &a.trash {
        env.rm(".Trash", "cur", &format!("{b}:2,ST"));
    }
    let evs = env.scan();
    let expire = one(&evs, "MessageExpire");
    let expunge = one(&evs, "MessageExpunge");
    assert_eq!(evs.len(), 2, "{}", show(&evs));
    // 31 days is past min_age, 29 days is not.
    assert_eq!(s(expire, "uidset"), "1:2", "{expire}");
    assert_eq!(s(expunge, "uidset"), "3:4", "{expunge}");
    assert_eq!((mbox(expire), mbox(expunge)), ("Trash", "Trash"));
}

#[test]
fn expire_rules_take_globs_and_ages_in_other_units() {
    // Trash* covers Trash.Sub; 4w = 28 days, so the 29-day-old one expires.
    let a = aged("[[expire]]\nfolder = \"Trash*\"\nmin_age = \"4w\"\n");
    let env = &a.env;
    env.baseline();
    env.rm(".Trash", "cur", &format!("{}:2,ST", a.trash[2]));
    env.rm(".Trash.Sub", "cur", &format!("{}:2,S", a.sub_old));
    let evs = env.scan();
    assert_eq!(
        kinds(&evs),
        ["MessageExpire", "MessageExpire"],
        "{}",
        show(&evs)
    );
    let boxes: BTreeSet<&str> = evs.iter().map(mbox).collect();
    assert_eq!(boxes, BTreeSet::from(["Trash", "Trash.Sub"]));
}

#[test]
fn without_expire_rules_expunges_stay_expunges() {
    let a = aged("");
    let env = &a.env;
    env.baseline();
    env.rm(".Trash", "cur", &format!("{}:2,ST", a.trash[0]));
    let evs = env.scan();
    assert_eq!(kinds(&evs), ["MessageExpunge"], "{}", show(&evs));
}

#[test]
fn watch_reports_expire_live() {
    let a = aged(TRASH_30D);
    let env = &a.env;
    let w = env.watch_as_run(&[]);
    env.rm(".Trash", "cur", &format!("{}:2,ST", a.trash[0]));
    let evs = w.wait_exactly(1);
    assert_eq!(kinds(&evs), ["MessageExpire"], "{}", show(&evs));
    assert_eq!(mbox(&evs[0]), "Trash");
    assert_eq!(s(&evs[0], "uidset"), "1");

    env.rm(".Trash", "cur", &format!("{}:2,ST", a.trash[3]));
    let evs = w.wait_exactly(2);
    assert_eq!(kinds(&evs[1..]), ["MessageExpunge"], "{}", show(&evs));
    assert_eq!(s(&evs[1], "uidset"), "4");

    env.rm("", "cur", &format!("{}:2,S", a.inbox_old));
    let evs = w.wait_exactly(3);
    assert_eq!(kinds(&evs[2..]), ["MessageExpunge"], "{}", show(&evs));
    assert_eq!(mbox(&evs[2]), "INBOX");

    // Together: 31 days old expires, 29 days old does not.
    env.rm(".Trash", "cur", &format!("{}:2,ST", a.trash[1]));
    env.rm(".Trash", "cur", &format!("{}:2,ST", a.trash[2]));
    let evs = w.wait_exactly(5);
    let rest = &evs[3..];
    let expire = one(rest, "MessageExpire");
    let expunge = one(rest, "MessageExpunge");
    assert_eq!(s(expire, "uidset"), "2", "{}", show(&evs));
    assert_eq!(s(expunge, "uidset"), "3", "{}", show(&evs));
    let all = w.stop();
    assert_eq!(all.len(), 5, "{}", show(&all));
    env.quiet();
}
