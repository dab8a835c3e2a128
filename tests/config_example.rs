//! `config.example.toml` shows every key the program accepts, and is valid.
//!
//! The list of keys is not written down here (it would drift like the
//! example did): it comes from the program itself. Every table of the
//! configuration refuses unknown keys, and `check-config`'s error for one
//! names all the keys that table accepts. So the test puts an unknown key
//! into each table of the example (each `[[sink]]` type too) and checks
//! that every key the error names is in the example, with its commented
//! keys uncommented. Whoever adds a key and forgets the example fails here.
//!
//! The example with every commented key uncommented (its paths moved into
//! a temporary directory, which holds the files they name) must pass
//! `check-config`, and so must the example as shipped.

mod support;
use support::e2e::run;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use tempfile::TempDir;

const EXAMPLE: &str = include_str!("../config.example.toml");
const PROBE: &str = "zz_not_a_key";

/// A commented line that is configuration, not prose: `# key = …`,
/// `# [table]` or `# [[table]]`.
fn commented_setting(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('#')?.trim_start();
    let is_header = rest.starts_with('[')
        && rest
            .trim_start_matches('[')
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase());
    let key: String = rest
        .chars()
        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
        .collect();
    let is_key = !key.is_empty() && rest[key.len()..].trim_start().starts_with('=');
    (is_header || is_key).then_some(rest)
}

/// The example with every commented setting uncommented.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|l| commented_setting(l).unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn commented_settings_are_told_from_prose() {
    let cases = [
        ("# poll = 5.0             # poll every 5 s", true),
        ("# [[sink]]", true),
        ("# [metrics]", true),
        ("#   batch_size = 50", true),
        (
            "# Where events go; without [[sink]] they go to stdout.",
            false,
        ),
        ("# [RFC 5423] text", false),
        ("# The \":\" in \"name:2,FS\"", false),
        ("# Every key is optional", false),
        ("key = 1", false),
    ];
    for (line, setting) in cases {
        assert_eq!(commented_setting(line).is_some(), setting, "{line:?}");
    }
}

/// The full example, with its absolute paths moved under `dir` and the
/// files they name created there.
fn full_example(dir: &Path) -> String {
    let mut text = uncommented(EXAMPLE);
    for prefix in [
        "/etc/maildir-events/",
        "/var/log/maildir-events/",
        "/var/lib/maildir-events",
        "/var/vmail/",
        "/home/bob/",
    ] {
        let to = dir.join(prefix.trim_start_matches('/'));
        fs::create_dir_all(&to).unwrap();
        let mut to = to.display().to_string();
        if prefix.ends_with('/') {
            to.push('/');
        }
        text = text.replace(prefix, &to);
    }
    // The files the sinks read.
    let etc = dir.join("etc/maildir-events");
    fs::write(etc.join("webhook.secret"), "a shared secret\n").unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&key).unwrap();
    fs::write(etc.join("private-ca.pem"), ca.pem()).unwrap();
    text
}

fn check_config(dir: &Path, text: &str) -> support::run::Run {
    let path = dir.join("config.toml");
    fs::write(&path, text).unwrap();
    run(args!["--config", &path, "check-config"], "warn")
}

#[test]
fn the_example_as_shipped_and_with_everything_uncommented_passes_check_config() {
    let tmp = TempDir::new().unwrap();
    let out = check_config(tmp.path(), EXAMPLE);
    assert_eq!(
        out.code,
        Some(0),
        "config.example.toml as shipped: {}",
        out.stderr
    );
    let full = full_example(tmp.path());
    let out = check_config(tmp.path(), &full);
    assert_eq!(
        out.code,
        Some(0),
        "config.example.toml with every setting uncommented:\n{full}\nstderr: {}",
        out.stderr
    );
    // Every sink block is in effect: check-config names each.
    for kind in ["stdout", "file:", "webhook:", "nats:"] {
        assert!(
            out.stdout.contains(kind),
            "check-config does not show the {kind} sink:\n{}",
            out.stdout
        );
    }
}

/// The backticked names after "expected" in a serde error: the keys (or
/// variants) the program accepts there.
fn expected_names(stderr: &str) -> BTreeSet<String> {
    let Some(at) = stderr.find("expected") else {
        return BTreeSet::new();
    };
    stderr[at..]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn expected_names_are_read_from_errors() {
    let cases = [
        (
            "unknown field `zz`, expected one of `a`, `b_c`, `d`",
            vec!["a", "b_c", "d"],
        ),
        ("unknown field `zz`, expected `listen`", vec!["listen"]),
        ("unknown field `zz`, expected `a` or `b`", vec!["a", "b"]),
        ("no expectation here `x`", vec![]),
    ];
    for (text, want) in cases {
        let got: Vec<String> = expected_names(text).into_iter().collect();
        assert_eq!(got, want, "{text}");
    }
}

/// The keys of a table (or the union over an array of tables).
fn keys_of(v: &toml::Value) -> BTreeSet<String> {
    match v {
        toml::Value::Table(t) => t.keys().cloned().collect(),
        toml::Value::Array(a) => a.iter().flat_map(keys_of).collect(),
        _ => BTreeSet::new(),
    }
}

/// Each table header of the full example: its line number and dotted path.
fn headers(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let l = l.trim();
            let name = l.strip_prefix("[[").and_then(|r| r.split("]]").next());
            let name = name.or_else(|| l.strip_prefix('[').and_then(|r| r.split(']').next()))?;
            Some((i, name.trim().to_string()))
        })
        .collect()
}

#[test]
fn every_key_the_program_accepts_is_in_the_example() {
    let tmp = TempDir::new().unwrap();
    let full = full_example(tmp.path());
    let doc: toml::Value = toml::from_str(&full).expect("the full example is TOML");
    let lines: Vec<&str> = full.lines().collect();
    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut probed = 0;
    let mut probe = |after: Option<usize>, table: &str, have: BTreeSet<String>| {
        let mut text: Vec<&str> = lines.clone();
        let line = format!("{PROBE} = 1");
        match after {
            // Before the first header: a top-level key.
            None => text.insert(0, &line),
            Some(i) => text.insert(i + 1, &line),
        }
        let out = check_config(tmp.path(), &(text.join("\n") + "\n"));
        assert_ne!(
            out.code,
            Some(0),
            "an unknown key in {table} was accepted; the program must refuse unknown keys there"
        );
        assert!(
            out.stderr.contains(PROBE),
            "the error for an unknown key in {table} does not name it: {}",
            out.stderr
        );
        let accepted = expected_names(&out.stderr);
        assert!(
            !accepted.is_empty(),
            "the error for an unknown key in {table} lists no keys: {}",
            out.stderr
        );
        for k in accepted.difference(&have) {
            missing
                .entry(table.to_string())
                .or_default()
                .push(k.clone());
        }
        probed += 1;
    };

    probe(None, "the top level", keys_of(&doc));
    let mut seen = BTreeSet::new();
    let mut sink_index = 0;
    for (i, name) in headers(&full) {
        let mut v = &doc;
        for part in name.split('.') {
            v = &v[part];
        }
        if name == "sink" {
            // Each sink type accepts its own keys.
            let block = &doc["sink"][sink_index];
            sink_index += 1;
            let kind = block["type"].as_str().unwrap_or("?").to_string();
            if kind != "stdout" && seen.insert(format!("sink:{kind}")) {
                let have = keys_of(
                    &doc["sink"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|b| b["type"].as_str() == Some(&kind))
                        .cloned()
                        .collect::<Vec<_>>()
                        .into(),
                );
                probe(Some(i), &format!("[[sink]] type = \"{kind}\""), have);
            }
        } else if seen.insert(name.clone()) {
            probe(Some(i), &format!("[{name}]"), keys_of(v));
        }
    }
    assert!(probed >= 10, "only {probed} tables probed");

    // Every sink type has its block.
    let out = check_config(tmp.path(), &format!("[[sink]]\ntype = \"{PROBE}\"\n"));
    let types = expected_names(&out.stderr);
    assert!(!types.is_empty(), "no sink types named: {}", out.stderr);
    let shown: BTreeSet<String> = doc["sink"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["type"].as_str().map(str::to_string))
        .collect();
    for t in types.difference(&shown) {
        missing
            .entry("[[sink]] types".into())
            .or_default()
            .push(t.clone());
    }

    assert!(
        missing.is_empty(),
        "config.example.toml lacks keys the program accepts (add them, commented, with their defaults): {missing:?}"
    );
}
