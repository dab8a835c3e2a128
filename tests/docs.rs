//! The project stands on its own files: every relative link in README.md
//! and contrib/README.md names a file or directory of the repository (and
//! every `#anchor` a heading), and no file names a path outside the
//! repository.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The targets of Markdown links `[text](target)` in `text`.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].to_string());
        }
    }
    out
}

/// GitHub's anchor of a heading: lower case, spaces as `-`, punctuation
/// other than `-` and `_` dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    text.lines()
        .filter(|l| {
            if l.starts_with("```") {
                in_code = !in_code;
            }
            !in_code && l.starts_with('#')
        })
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect()
}

#[test]
fn links_and_anchors_are_read() {
    assert_eq!(
        links("see [a](b.md) and [c](d/#x), not (e)"),
        vec!["b.md", "d/#x"]
    );
    assert_eq!(anchor("Sinks: where events go"), "sinks-where-events-go");
    assert_eq!(
        anchor("Options of `scan` (and `watch`)"),
        "options-of-scan-and-watch"
    );
}

fn check(doc: &str) {
    let path = Path::new(ROOT).join(doc);
    let text = fs::read_to_string(&path).unwrap();
    let base = path.parent().unwrap();
    let own = anchors(&text);
    let mut problems = Vec::new();
    for link in links(&text) {
        if link.starts_with("http://")
            || link.starts_with("https://")
            || link.starts_with("mailto:")
        {
            continue;
        }
        let (file, frag) = link.split_once('#').unwrap_or((link.as_str(), ""));
        if file.is_empty() {
            if !own.contains(frag) {
                problems.push(format!("#{frag}: no such heading"));
            }
            continue;
        }
        let target = base.join(file);
        if !target.exists() {
            problems.push(format!("{link}: no such file in the repository"));
        } else if !target
            .canonicalize()
            .unwrap()
            .starts_with(Path::new(ROOT).canonicalize().unwrap())
        {
            problems.push(format!("{link}: outside the repository"));
        }
    }
    // Not only links: a path written in the text that climbs out of the
    // repository names something a clone does not have.
    if let Some(line) = text.lines().find(|l| l.contains("../")) {
        problems.push(format!(
            "names a path outside the repository: {}",
            line.trim()
        ));
    }
    assert!(problems.is_empty(), "{doc}:\n{}", problems.join("\n"));
}

#[test]
fn readme_links_name_files_of_the_repository() {
    check("README.md");
}

#[test]
fn contrib_readme_links_name_files_of_the_repository() {
    check("contrib/README.md");
}

/// Where a relative path written in a file of `dir` leads, lexically (the
/// target need not exist): `None` once it climbs above the filesystem root.
fn resolve(dir: &Path, rel: &str) -> Option<std::path::PathBuf> {
    let mut out = dir.to_path_buf();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if !out.pop() {
                    return None;
                }
            }
            p => out.push(p),
        }
    }
    Some(out)
}

#[test]
fn no_file_names_a_path_outside_the_repository() {
    let root = Path::new(ROOT);
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "target" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let Ok(text) = fs::read_to_string(&p) else {
                continue;
            };
            // Every `../…` written in the file, read from its directory.
            for (at, _) in text.match_indices("../") {
                let start = text[..at]
                    .rfind(|c: char| c.is_whitespace() || "\"'`(<[=".contains(c))
                    .map_or(0, |i| i + 1);
                let end = text[at..]
                    .find(|c: char| c.is_whitespace() || "\"'`)>],".contains(c))
                    .map_or(text.len(), |i| at + i);
                let rel = &text[start..end];
                if rel.starts_with("..") && !resolve(&dir, rel).is_some_and(|t| t.starts_with(root))
                {
                    found.push(format!("{}: {rel}", p.display()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "files that name a path outside the repository (a clone has only its own files): {found:?}"
    );
}
