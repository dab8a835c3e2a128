//! The Prometheus side, against the real programs: the `/metrics` endpoint
//! of a running `watch --metrics 127.0.0.1:PORT` passes `promtool check
//! metrics` (Debian package `prometheus`), every metric it exposes is
//! documented in README's Metrics table with its type (and the table names
//! nothing it does not expose), and the examples in `contrib/prometheus/`
//! pass `promtool check config`, `check rules` and their unit tests.
//!
//! Without promtool the tests print a skip line, except under `CI=true`,
//! where they fail. No timing is asserted: waits are bounded polls.

mod support;
use support::e2e;
use support::live::Spawn;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use e2e::{SERVER, Store, WAIT, free_port, get_metrics, poll_opt, tail};

const README: &str = include_str!("../README.md");

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// promtool, or `None` (after a visible skip line) when it is missing
/// outside CI.
fn promtool(test: &str) -> Option<PathBuf> {
    let found = ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            let out = Command::new("sh")
                .args(["-c", "command -v promtool"])
                .output()
                .ok()?;
            let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (!p.is_empty()).then(|| PathBuf::from(p))
        });
    if found.is_some() {
        return found;
    }
    assert!(
        !in_ci(),
        "{test}: promtool is not installed (apt-get install prometheus); .ci/run must install it"
    );
    let _ = writeln!(
        std::io::stderr(),
        "SKIP {test}: promtool not installed (apt-get install prometheus); under CI=true this fails"
    );
    None
}

/// Runs promtool with `args` in `dir`, `stdin` on its standard input.
fn run_promtool(promtool: &Path, dir: &Path, args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `# TYPE name kind` lines of an exposition: name → kind.
fn families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("# TYPE ")?.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect()
}

/// The README's Metrics table: name → type.
fn documented() -> BTreeMap<String, String> {
    let at = README
        .find("### Metrics")
        .expect("README has a Metrics section");
    README[at..]
        .lines()
        .skip(1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((name.to_string(), cells.get(2)?.to_string()))
        })
        .collect()
}

#[test]
fn families_and_the_readme_table_are_read() {
    let text = "# HELP a_total x\n# TYPE a_total counter\na_total 1\n# TYPE b gauge\nb 2\n";
    let f = families(text);
    assert_eq!(f.get("a_total").map(String::as_str), Some("counter"));
    assert_eq!(f.get("b").map(String::as_str), Some("gauge"));
    assert_eq!(f.len(), 2);
    let d = documented();
    assert!(d.len() >= 10, "README's Metrics table: {d:?}");
    assert_eq!(
        d.get("maildir_events_events_total").map(String::as_str),
        Some("counter")
    );
}

#[test]
fn the_real_endpoint_passes_promtool_and_every_metric_is_documented() {
    let test = "the_real_endpoint_passes_promtool_and_every_metric_is_documented";
    let Some(promtool) = promtool(test) else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let mut store = Store::new(&tmp.path().join("mail"), &["alice", "bob"]);
    let state = tmp.path().join("state");
    let config = tmp.path().join("config.toml");
    // A file sink that takes everything, and a webhook nobody answers, so
    // the failure counter and a waiting outbox are in the exposition.
    let dead = free_port();
    fs::write(
        &config,
        format!(
            r#"[[sink]]
type = "file"
path = "{}"

[[sink]]
type = "webhook"
url = "http://127.0.0.1:{dead}/hook?token=hidden"
connect_timeout_ms = 200
retries = 0
deadline_ms = 500
backoff_initial_ms = 20
backoff_max_ms = 50
"#,
            tmp.path().join("events.jsonl").display()
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let args = |command: &str, extra: &[&str]| -> Vec<OsString> {
        let mut v: Vec<OsString> = args![
            "--config",
            &config,
            command,
            "--state",
            &state,
            "--server-name",
            SERVER,
            "--store",
            store.template(),
        ];
        v.extend(extra.iter().map(OsString::from));
        v
    };
    let out = e2e::run(args("scan", &[]), "warn");
    assert_eq!(out.code, Some(0), "baseline scan: {}", out.stderr);
    let w = Spawn::command(args("watch", &["--metrics", &addr])).start();
    store.step(0, &mut || {});

    let mut last = String::new();
    let text = poll_opt(WAIT, || {
        let t = get_metrics(&addr)?;
        last = t.clone();
        let failing = t.lines().any(|l| {
            l.starts_with("maildir_events_sink_failures_total{sink=\"webhook:")
                && !l.ends_with(" 0")
        });
        let waiting = t.lines().any(|l| {
            l.starts_with("maildir_events_outbox_events{sink=\"webhook:") && !l.ends_with(" 0")
        });
        (t.contains("maildir_events_events_total{") && failing && waiting).then_some(t)
    })
    .unwrap_or_else(|| {
        panic!(
            "the metrics never showed events, a failing webhook and its waiting events within {WAIT:?}:\n{last}\nstderr:\n{}",
            tail(&w.stderr(), 3000)
        )
    });
    assert!(
        !text.contains("hidden"),
        "a URL's query is in the metrics:\n{text}"
    );

    let (ok, said) = run_promtool(&promtool, tmp.path(), &["check", "metrics"], &text);
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics refused /metrics (or found problems): {said}\n/metrics:\n{text}"
    );

    let exposed = families(&text);
    let doc = documented();
    let mut problems = Vec::new();
    for (name, kind) in &exposed {
        match doc.get(name) {
            None => problems.push(format!("{name} ({kind}) is not in README's Metrics table")),
            Some(k) if k != kind => problems.push(format!("{name} is a {kind}, README says {k}")),
            Some(_) => {}
        }
    }
    for name in doc.keys() {
        if !exposed.contains_key(name) {
            problems.push(format!(
                "README documents {name}, which /metrics does not expose"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n/metrics:\n{text}",
        problems.join("\n")
    );
    // Anything but /metrics is a 404.
    let other = ureq::get(&format!("http://{addr}/other")).call();
    assert!(
        matches!(other, Err(ureq::Error::StatusCode(404))),
        "GET /other: {other:?}"
    );
    w.stop();
}

#[test]
fn the_contrib_prometheus_files_pass_promtool() {
    let test = "the_contrib_prometheus_files_pass_promtool";
    let Some(promtool) = promtool(test) else {
        return;
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/prometheus");
    for args in [
        &["check", "config", "prometheus.yml"][..],
        &["check", "rules", "alerts.yml"],
        &["test", "rules", "alerts_test.yml"],
    ] {
        let (ok, said) = run_promtool(&promtool, &dir, args, "");
        assert!(ok, "promtool {}: {said}", args.join(" "));
        assert!(
            said.contains("SUCCESS"),
            "promtool {}: {said}",
            args.join(" ")
        );
    }
    // Every metric the rules use is one the program exposes (README's
    // table is checked against the real endpoint above).
    let rules = fs::read_to_string(dir.join("alerts.yml")).unwrap();
    let doc = documented();
    let used: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("maildir_events_"))
        .collect();
    assert!(used.len() >= 4, "the rules use {used:?}");
    for m in used {
        assert!(
            doc.contains_key(m),
            "alerts.yml uses {m}, which is not a metric"
        );
    }
}
