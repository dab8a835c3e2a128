//! Binary-level tests of the configuration file (`--config`), its merge
//! with the command line, `check-config`, and what the file changes in
//! the events: filtering (groups, folders, flags), store tags and
//! `simple_flag_events`.
//!
//! Every test writes its own `config.toml` next to a temporary Maildir and
//! runs the binary with its own state directory.

mod support;
use support::user;

use std::collections::BTreeSet;
use std::fs;

use serde_json::Value;

use user::{
    ALICE, EX_CONFIG, Env, INBOX_URL, Run, SERVER, USER, base, body_of, kinds, mbox, n, of, one, s,
    show, toml_table,
};

// ------------------------------------------------------------ errors

/// Runs `scan` and `check-config` with the config text; both must exit 78
/// with an error that contains every one of `what`. Returns the error.
fn rejected(text: &str, what: &[&str]) -> String {
    let mut env = Env::new();
    let path = env.set_config(text);
    let mut last = String::new();
    for sub in ["scan", "check-config"] {
        // A store on the command line would replace the file's stores.
        let cmd = if text.contains("[[store]]") {
            env.bare(sub, &[])
        } else {
            env.command(sub, &[])
        };
        let run = Run::of(cmd);
        let err = run.fails(EX_CONFIG).to_string();
        for w in what {
            let w = w.replace("{FILE}", &path.display().to_string());
            assert!(
                err.contains(&w),
                "`{sub}` with config\n{text}\nshould name {w:?}; the error was:\n{err}"
            );
        }
        last = err;
    }
    last
}

#[test]
fn an_unknown_top_level_key_names_the_key_the_line_and_the_file() {
    rejected(
        "server_name = \"mx\"\n\n# a typo:\nsever_name = \"typo\"\n",
        &["{FILE}", "sever_name", "line 4"],
    );
}

#[test]
fn an_unknown_key_in_a_section_names_the_key_the_line_and_the_file() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[filter]\ngroups = [\"message\"]\nexclude_folder = [\"Junk\"]\n",
            "exclude_folder",
            "line 3",
        ),
        ("[watch]\nbatch_max_ms = 5\npol = 2.0\n", "pol", "line 3"),
        ("[[store]]\npath = \"/m\"\ntag = [\"x\"]\n", "tag", "line 3"),
        ("[content]\nmax_sise = 10\n", "max_sise", "line 2"),
        (
            "[quota]\nstorage = \"1G\"\n\n[[quota.user]]\nuser = \"a\"\nstorag = \"1M\"\n",
            "storag",
            "line 6",
        ),
        (
            "[[expire]]\nfolder = \"Trash\"\nmin_age = \"30d\"\nmax_age = \"1d\"\n",
            "max_age",
            "line 4",
        ),
        ("[quota]\nhysteresis = 2.0\n", "hysteresis", "line 2"),
        ("server_name = \"mx\"\n[sinkz]\nx = 1\n", "sinkz", "line 2"),
    ];
    for (text, key, line) in cases {
        rejected(text, &["{FILE}", key, line]);
    }
}

#[test]
fn a_value_of_the_wrong_type_names_the_key_the_line_and_the_file() {
    let cases: &[(&str, &str, &str)] = &[
        ("uid_wait_ms = \"soon\"\n", "uid_wait_ms", "line 1"),
        (
            "server_name = \"mx\"\nemit_existing = \"yes\"\n",
            "emit_existing",
            "line 2",
        ),
        (
            "[[store]]\npath = \"/m\"\ntags = \"mx1\"\n",
            "tags",
            "line 3",
        ),
        ("[quota]\n\nmessages = \"many\"\n", "messages", "line 3"),
        ("[watch]\nbatch_max_ms = -1\n", "batch_max_ms", "line 2"),
    ];
    for (text, key, line) in cases {
        rejected(text, &["{FILE}", key, line]);
    }
}

#[test]
fn a_file_that_is_not_toml_names_the_line_and_the_file() {
    rejected(
        "server_name = \"mx\"\nthis is not toml\n",
        &["{FILE}", "line 2"],
    );
}

#[test]
fn a_missing_config_file_is_named() {
    let env = Env::new();
    let missing = env.tmp.path().join("nope.toml");
    let mut c = env.command("scan", &[]);
    c.arg("--config").arg(&missing);
    let run = Run::of(c);
    let err = run.fails(EX_CONFIG);
    assert!(err.contains(&missing.display().to_string()), "{err}");
}

#[test]
fn a_bad_store_template_is_named() {
    let err = rejected(
        "[[store]]\ntemplate = \"/var/vmail/{nope}/Maildir\"\n",
        &["{nope}", "/var/vmail/{nope}/Maildir"],
    );
    assert!(err.contains("placeholder"), "{err}");
}

#[test]
fn both_template_and_path_in_one_store_is_an_error() {
    let err = rejected(
        "[[store]]\npath = \"/srv/a/Maildir\"\nuser = \"a\"\n\n[[store]]\ntemplate = \"/srv/{user}/Maildir\"\npath = \"/srv/b/Maildir\"\n",
        &["store 2", "template", "path"],
    );
    assert!(err.contains("one of"), "{err}");
    // Neither is an error as well.
    rejected(
        "[[store]]\ntags = [\"x\"]\n",
        &["store 1", "template", "path"],
    );
}

#[test]
fn a_bad_size_is_named() {
    rejected("[quota]\nstorage = \"1X\"\n", &["quota.storage", "1X"]);
    rejected("[quota]\nstorage = \"lots\"\n", &["quota.storage", "lots"]);
    rejected(
        "[quota]\nstorage = \"1G\"\n[[quota.user]]\nuser = \"ceo@example.org\"\nstorage = \"5Q\"\n",
        &["quota.user", "ceo@example.org", "storage", "5Q"],
    );
}

#[test]
fn a_bad_age_is_named() {
    rejected(
        "[[expire]]\nfolder = \"Trash\"\nmin_age = \"3y\"\n",
        &["min_age", "3y", "Trash"],
    );
    rejected(
        "[[expire]]\nfolder = \"Junk\"\nmin_age = \"soon\"\n",
        &["min_age", "soon"],
    );
}

#[test]
fn an_unknown_group_is_named() {
    rejected(
        "[filter]\ngroups = [\"message\", \"quotas\"]\n",
        &["filter.groups", "quotas"],
    );
}

#[test]
fn an_unknown_content_mode_or_parameter_is_named() {
    rejected("[content]\nmode = \"full\"\n", &["content.mode", "full"]);
    rejected(
        "[content]\ninclude = [\"subject\", \"body\"]\n",
        &["content.include", "body"],
    );
}

#[test]
fn a_bad_hysteresis_is_named() {
    rejected(
        "[quota]\nstorage = \"1G\"\nhysteresis_percent = 150.0\n",
        &["hysteresis_percent", "150"],
    );
}

// ------------------------------------------------------- merge with CLI

#[test]
fn the_command_line_wins_over_the_file_and_its_stores_replace_the_files() {
    let mut env = Env::new();
    // Bob's Maildir is the file's only store; the command line names Alice's.
    let bob = env.tmp.path().join("bob/Maildir");
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(bob.join(sub)).unwrap();
    }
    env.set_config(&format!(
        "server_name = \"file.example.org\"\nsimple_flag_events = true\n\n[[store]]\npath = \"{}\"\nuser = \"bob\"\ntags = [\"from-file\"]\n",
        bob.display()
    ));
    // The file's server name, with the command line's store.
    let mut plain = env.bare("scan", &[]);
    plain.arg("--user").arg(USER).arg(&env.root);
    assert!(Run::of(plain).parsed().is_empty(), "baseline");

    env.deliver("", &base(1), 100);
    fs::write(bob.join("new").join(base(2)), body_of(100)).unwrap();
    let mut plain = env.bare("scan", &[]);
    plain.arg("--user").arg(USER).arg(&env.root);
    let evs = Run::of(plain).parsed();
    let ev = one(&evs, "MessageNew");
    assert_eq!(evs.len(), 1, "only Alice's store is scanned:{}", show(&evs));
    assert_eq!(s(ev, "user"), USER);
    assert_eq!(s(ev, "serverFQDN"), "file.example.org", "{ev}");
    assert!(
        ev.get("tags").is_none(),
        "the file's store (and its tags) is replaced: {ev}"
    );

    // --server-name and --no-simple-flag-events win over the file.
    env.mv(
        ("", "new", &base(1)),
        ("", "cur", &format!("{}:2,S", base(1))),
    );
    let evs = env.scan_with(&["--no-simple-flag-events"]);
    let ev = one(&evs, "FlagsSet");
    assert_eq!(evs.len(), 1, "{}", show(&evs));
    assert_eq!(s(ev, "serverFQDN"), SERVER);
    assert_eq!(s(ev, "flagNames"), "\\Seen");
    assert!(s(ev, "mailboxID").starts_with(&format!("{ALICE}/INBOX;")));

    // check-config shows the command line's values.
    let out = env.check_config(&[
        "--server-name",
        SERVER,
        "--user",
        USER,
        env.root.to_str().unwrap(),
    ]);
    let t = toml_table(out.ok());
    assert_eq!(t["server_name"].as_str(), Some(SERVER));
    let stores = t["store"].as_array().unwrap();
    assert_eq!(stores.len(), 1, "{}", out.stdout);
    assert_eq!(stores[0]["user"].as_str(), Some(USER));
    assert_eq!(stores[0]["path"].as_str(), Some(env.root.to_str().unwrap()));
}

#[test]
fn file_values_apply_when_the_command_line_does_not_set_them() {
    let mut env = Env::new();
    env.set_config(&format!(
        "server_name = \"{SERVER}\"\nemit_existing = true\n\n[[store]]\npath = \"{}\"\nuser = \"{USER}\"\n",
        env.root.display()
    ));
    env.deliver("", &base(1), 100);
    // No store and no server name on the command line: both from the file;
    // emit_existing makes the first run report what exists.
    let evs = Run::of(env.bare("scan", &[])).parsed();
    let ev = one(&evs, "MessageNew");
    assert_eq!(s(ev, "user"), USER);
    assert_eq!(s(ev, "serverFQDN"), SERVER);
}

// ---------------------------------------------------------- check-config

/// Keys of the resolved top level that must always be spelled out, with
/// their defaults.
fn assert_top_defaults(t: &toml::Table, text: &str) {
    let int = |k: &str| t.get(k).and_then(toml::Value::as_integer);
    let boolean = |k: &str| t.get(k).and_then(toml::Value::as_bool);
    let string = |k: &str| t.get(k).and_then(toml::Value::as_str);
    assert_eq!(int("uid_wait_ms"), Some(2000), "{text}");
    assert_eq!(boolean("emit_existing"), Some(false), "{text}");
    assert_eq!(boolean("simple_flag_events"), Some(true), "{text}");
    assert_eq!(boolean("utf8_names"), Some(false), "{text}");
    assert_eq!(boolean("full"), Some(false), "{text}");
    assert_eq!(string("separator"), Some("."), "{text}");
    assert_eq!(string("info_separator"), Some(":"), "{text}");
    assert!(string("server_name").is_some(), "{text}");
    assert!(string("state_dir").is_some(), "{text}");
    let w = t["watch"].as_table().unwrap_or_else(|| panic!("{text}"));
    assert_eq!(w["batch_quiet_ms"].as_float(), Some(0.5), "{text}");
    assert_eq!(w["batch_max_ms"].as_integer(), Some(2), "{text}");
    assert_eq!(w["rescan_interval"].as_integer(), Some(3600), "{text}");
    assert_eq!(w["full_every"].as_integer(), Some(60), "{text}");
    let c = t["content"].as_table().unwrap_or_else(|| panic!("{text}"));
    assert_eq!(c["mode"].as_str(), Some("standard"), "{text}");
    assert_eq!(c["max_size"].as_integer(), Some(65536), "{text}");
}

#[test]
fn check_config_spells_out_the_defaults_and_its_output_reads_back() {
    let mut env = Env::new();
    // No file at all: only the command line.
    let out = env.check_config(&["--user", USER, env.root.to_str().unwrap()]);
    let text = out.ok().to_string();
    let t = toml_table(&text);
    assert_top_defaults(&t, &text);
    assert!(text.contains("uid_wait_ms = 2000"), "{text}");
    assert_eq!(
        t["state_dir"].as_str(),
        Some(env.state.to_str().unwrap()),
        "{text}"
    );

    // Its output is a config file that resolves to itself.
    let first = env.tmp.path().join("resolved.toml");
    fs::write(&first, &text).unwrap();
    let again = Run::of({
        let mut c = std::process::Command::new(user::BIN);
        c.arg("--config").arg(&first).arg("check-config");
        c
    });
    assert_eq!(again.ok(), text, "check-config of its own output differs");

    // The same with a file using every section (the example file), the
    // command line adding to it.
    let example =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml")).unwrap();
    env.set_config(&example);
    let out = env.check_config(&["--uid-wait-ms", "250"]);
    let text = out.ok().to_string();
    let t = toml_table(&text);
    assert_eq!(t["uid_wait_ms"].as_integer(), Some(250), "{text}");
    assert_eq!(t["server_name"].as_str(), Some("mx1.example.org"), "{text}");
    let q = t["quota"].as_table().unwrap();
    assert_eq!(q["storage"].as_str(), Some("1G"), "{text}");
    assert_eq!(q["messages"].as_integer(), Some(100000), "{text}");
    assert_eq!(
        q["user"][0]["user"].as_str(),
        Some("ceo@example.org"),
        "{text}"
    );
    assert_eq!(t["expire"][0]["min_age"].as_str(), Some("30d"), "{text}");
    assert_eq!(t["store"][0]["tags"][0].as_str(), Some("mx1"), "{text}");
    assert_eq!(
        t["filter"]["exclude_folders"].as_array().unwrap().len(),
        2,
        "{text}"
    );
    let resolved = env.tmp.path().join("resolved2.toml");
    fs::write(&resolved, &text).unwrap();
    let mut c = std::process::Command::new(user::BIN);
    c.arg("--config").arg(&resolved).arg("check-config");
    assert_eq!(
        Run::of(c).ok(),
        text,
        "check-config of its own output differs"
    );
}

/// Defaults in effect inside the filter and quota sections are spelled out
/// too: all groups when none are named, `force = false` and
/// `hysteresis_percent = 1.0` when a quota is configured.
#[test]
fn check_config_spells_out_filter_and_quota_defaults() {
    let mut env = Env::new();
    env.set_config("[filter]\nexclude_folders = [\"Junk\"]\n\n[quota]\nstorage = \"1M\"\n");
    let out = env.check_config(&["--user", USER, env.root.to_str().unwrap()]);
    let text = out.ok().to_string();
    let t = toml_table(&text);
    assert_top_defaults(&t, &text);
    let mut missing = Vec::new();
    let groups: Option<Vec<&str>> = t["filter"]
        .get("groups")
        .and_then(|g| g.as_array())
        .map(|a| a.iter().map(|g| g.as_str().unwrap()).collect());
    if groups.as_deref()
        != Some(
            &[
                "message",
                "flags",
                "quota",
                "mailbox",
                "subscription",
                "access",
            ][..],
        )
    {
        missing.push(format!("filter.groups = [all six] (got {groups:?})"));
    }
    let q = t["quota"].as_table().unwrap();
    let force = q.get("force").and_then(toml::Value::as_bool);
    if force != Some(false) {
        missing.push(format!("quota.force = false (got {force:?})"));
    }
    let hysteresis = q.get("hysteresis_percent").and_then(toml::Value::as_float);
    if hysteresis != Some(1.0) {
        missing.push(format!(
            "quota.hysteresis_percent = 1.0 (got {hysteresis:?})"
        ));
    }
    assert!(
        missing.is_empty(),
        "defaults in effect not spelled out: {missing:?}\n{text}"
    );
}

#[test]
fn check_config_reports_errors_like_scan() {
    let mut env = Env::new();
    let path = env.set_config("[filter]\ngroups = [\"flags\"]\nexclude_flag = [\"x\"]\n");
    let err = env.check_config(&["--user", USER, env.root.to_str().unwrap()]);
    let e = err.fails(EX_CONFIG);
    assert!(
        e.contains(&path.display().to_string())
            && e.contains("exclude_flag")
            && e.contains("line 3"),
        "{e}"
    );
    // Nothing to scan is a configuration error too.
    env.set_config("server_name = \"x\"\n");
    let run = env.check_config(&[]);
    let e = run.fails(EX_CONFIG);
    assert!(e.contains("nothing to scan"), "{e}");
}

// ------------------------------------------------------------- filtering

/// A store with a message in `cur/` of INBOX and of `.Work`, baselined.
fn filtered(config: &str) -> Env {
    let mut env = Env::new();
    env.set_config(config);
    env.folder(".Work");
    env.put("", "cur", &format!("{}:2,", base(1)), &body_of(100));
    env.put(".Work", "cur", &format!("{}:2,", base(2)), &body_of(100));
    env.baseline();
    env
}

#[test]
fn groups_select_which_events_are_sent() {
    let env = filtered("[filter]\ngroups = [\"message\", \"subscription\"]\n");
    env.deliver("", &base(3), 100); // message
    env.mv(
        ("", "cur", &format!("{}:2,", base(1))),
        ("", "cur", &format!("{}:2,FS", base(1))),
    ); // flags
    env.folder(".New"); // mailbox
    env.write("", "subscriptions", b"Work\n"); // subscription
    env.rm(".Work", "cur", &format!("{}:2,", base(2))); // message (expunge)
    let evs = env.scan();
    let got: BTreeSet<&str> = kinds(&evs).into_iter().collect();
    assert_eq!(
        got,
        BTreeSet::from(["MessageNew", "MessageExpunge", "MailboxSubscribe"]),
        "{}",
        show(&evs)
    );
    assert_eq!(evs.len(), 3, "{}", show(&evs));

    // The other way round: flags and mailbox only.
    let env = filtered("[filter]\ngroups = [\"flags\", \"mailbox\"]\n");
    env.deliver("", &base(3), 100);
    env.mv(
        ("", "cur", &format!("{}:2,", base(1))),
        ("", "cur", &format!("{}:2,FS", base(1))),
    );
    env.folder(".New");
    env.write("", "subscriptions", b"Work\n");
    let evs = env.scan();
    let got: BTreeSet<&str> = kinds(&evs).into_iter().collect();
    assert_eq!(
        got,
        BTreeSet::from(["MessageRead", "FlagsSet", "MailboxCreate"]),
        "{}",
        show(&evs)
    );
    assert_eq!(evs.len(), 3, "{}", show(&evs));

    // An empty list sends nothing at all.
    let env = filtered("[filter]\ngroups = []\n");
    env.deliver("", &base(3), 100);
    env.folder(".New");
    env.quiet();
}

#[test]
fn excluded_folders_send_nothing_globs_included() {
    let env = filtered("[filter]\nexclude_folders = [\"Junk\", \"Spam*\", \"Arch?ve\"]\n");
    for f in [
        ".Junk",
        ".JunkMail",
        ".Spam",
        ".Spam.Old",
        ".Archive",
        ".Archives",
    ] {
        env.folder(f);
    }
    let evs = env.scan();
    let created: BTreeSet<String> = of(&evs, "MailboxCreate")
        .iter()
        .map(|e| mbox_of_uri(e))
        .collect();
    assert_eq!(
        created,
        BTreeSet::from(["JunkMail".to_string(), "Archives".to_string()]),
        "{}",
        show(&evs)
    );
    assert_eq!(evs.len(), 2, "{}", show(&evs));

    for (i, f) in [
        ".Junk",
        ".JunkMail",
        ".Spam",
        ".Spam.Old",
        ".Archive",
        ".Archives",
        "",
    ]
    .iter()
    .enumerate()
    {
        env.deliver(f, &base(10 + i as u32), 100);
    }
    let evs = env.scan();
    let got: BTreeSet<&str> = evs.iter().map(mbox).collect();
    assert_eq!(
        got,
        BTreeSet::from(["JunkMail", "Archives", "INBOX"]),
        "{}",
        show(&evs)
    );
    assert_eq!(kinds(&evs), ["MessageNew"; 3], "{}", show(&evs));

    // Renaming out of an excluded folder is reported (the new name is
    // not excluded); deleting an excluded folder is not.
    fs::rename(env.dir(".Spam.Old"), env.dir(".Kept")).unwrap();
    fs::remove_dir_all(env.dir(".Junk")).unwrap();
    let evs = env.scan();
    let ev = one(&evs, "MailboxRename");
    assert_eq!(mbox(ev), "Kept", "{ev}");
    assert_eq!(evs.len(), 1, "{}", show(&evs));
}

/// The mailbox name of a mailbox event's `uri`.
fn mbox_of_uri(ev: &Value) -> String {
    let uri = s(ev, "uri");
    uri.strip_prefix(&format!("{ALICE}/"))
        .unwrap()
        .split(";UIDVALIDITY=")
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn excluded_flags_are_left_out_of_flag_events() {
    let env = filtered("[filter]\nexclude_flags = [\"\\\\Seen\", \"$Junk\"]\n");
    env.write("", "dovecot-keywords", b"0 $Junk\n1 $label1\n");
    let b1 = base(1);
    // One rename gains \Seen and \Flagged: only \Flagged is reported, and
    // no MessageRead.
    env.mv(
        ("", "cur", &format!("{b1}:2,")),
        ("", "cur", &format!("{b1}:2,FS")),
    );
    let evs = env.scan();
    let ev = one(&evs, "FlagsSet");
    assert_eq!(evs.len(), 1, "{}", show(&evs));
    assert_eq!(s(ev, "flagNames"), "\\Flagged", "{ev}");
    assert_eq!(mbox(ev), "INBOX");

    // Losing only \Seen: an event with no flag left is not sent.
    env.mv(
        ("", "cur", &format!("{b1}:2,FS")),
        ("", "cur", &format!("{b1}:2,F")),
    );
    env.quiet();

    // Keywords: $Junk is left out, $label1 stays.
    env.mv(
        ("", "cur", &format!("{b1}:2,F")),
        ("", "cur", &format!("{b1}:2,Fab")),
    );
    let evs = env.scan();
    let ev = one(&evs, "FlagsSet");
    assert_eq!(evs.len(), 1, "{}", show(&evs));
    assert_eq!(s(ev, "flagNames"), "$label1", "{ev}");
    env.mv(
        ("", "cur", &format!("{b1}:2,Fab")),
        ("", "cur", &format!("{b1}:2,Fb")),
    );
    env.quiet();

    // A new message keeps its flags in flagNames (the filter is about
    // flag changes).
    env.put("", "cur", &format!("{}:2,S", base(5)), &body_of(100));
    let evs = env.scan();
    one(&evs, "MessageAppend");
    assert_eq!(evs.len(), 1, "{}", show(&evs));
}

#[test]
fn store_tags_are_on_every_event_of_the_store() {
    let mut env = Env::new();
    env.set_config(&format!(
        "server_name = \"{SERVER}\"\n\n[[store]]\npath = \"{}\"\nuser = \"{USER}\"\ntags = [\"mx1\", \"blue\"]\n\n[quota]\nstorage = \"1K\"\n",
        env.root.display()
    ));
    env.put("", "cur", &format!("{}:2,", base(1)), &body_of(100));
    let scan = || Run::of(env.bare("scan", &[])).parsed();
    assert!(scan().is_empty(), "baseline");

    env.deliver("", &base(2), 2000); // MessageNew + QuotaExceed
    env.mv(
        ("", "cur", &format!("{}:2,", base(1))),
        ("", "cur", &format!("{}:2,FS", base(1))),
    );
    env.folder(".Work");
    env.write("", "subscriptions", b"Work\n");
    let evs = scan();
    let got: BTreeSet<&str> = kinds(&evs).into_iter().collect();
    assert_eq!(
        got,
        BTreeSet::from([
            "MailboxCreate",
            "MessageNew",
            "MessageRead",
            "FlagsSet",
            "QuotaExceed",
            "MailboxSubscribe",
        ]),
        "{}",
        show(&evs)
    );
    for ev in &evs {
        assert_eq!(ev["tags"], serde_json::json!(["mx1", "blue"]), "{ev}");
    }
    assert_eq!(s(one(&evs, "QuotaExceed"), "uri"), INBOX_URL);

    env.rm("", "new", &base(2)); // MessageExpunge + QuotaWithin
    let evs = scan();
    assert_eq!(evs.len(), 2, "{}", show(&evs));
    for ev in &evs {
        assert_eq!(ev["tags"], serde_json::json!(["mx1", "blue"]), "{ev}");
    }
}

#[test]
fn stores_without_tags_have_no_tags_key() {
    let mut env = Env::new();
    env.set_config(&format!(
        "[[store]]\npath = \"{}\"\nuser = \"{USER}\"\ntags = [\"t\"]\n",
        env.root.display()
    ));
    // The command line's store replaces the file's, tags and all.
    env.baseline();
    env.deliver("", &base(1), 100);
    let evs = env.scan();
    let ev = one(&evs, "MessageNew");
    assert!(ev.get("tags").is_none(), "{ev}");
}

#[test]
fn simple_flag_events_false_in_the_file() {
    let env = filtered("simple_flag_events = false\n");
    let b1 = base(1);
    env.mv(
        ("", "cur", &format!("{b1}:2,")),
        ("", "cur", &format!("{b1}:2,ST")),
    );
    let evs = env.scan();
    assert_eq!(kinds(&evs), ["FlagsSet"], "{}", show(&evs));
    let names: BTreeSet<&str> = s(&evs[0], "flagNames").split(' ').collect();
    assert_eq!(
        names,
        BTreeSet::from(["\\Seen", "\\Deleted"]),
        "{}",
        show(&evs)
    );

    // And true (the default) gives MessageRead and MessageTrash.
    let env = filtered("simple_flag_events = true\n");
    env.mv(
        ("", "cur", &format!("{b1}:2,")),
        ("", "cur", &format!("{b1}:2,ST")),
    );
    let evs = env.scan();
    assert_eq!(
        kinds(&evs),
        ["MessageRead", "MessageTrash"],
        "{}",
        show(&evs)
    );
    assert_eq!(n(&evs[0], "messages"), 1);
}
