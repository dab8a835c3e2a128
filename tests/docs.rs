//! The project stands on its own files: every relative link in README.md
//! and contrib/README.md names a file or directory of the repository (and
//! every `#anchor` a heading), and no document points to a design note
//! that is not in the repository.

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
    let design = concat!("DESIGN", ".md");
    if text.contains(design) || text.contains("../shared") {
        problems.push(format!(
            "points to {design} or ../shared, which are not in the repository"
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

#[test]
fn no_file_points_to_a_design_note_outside_the_repository() {
    let design = concat!("DESIGN", ".md");
    let mut found = Vec::new();
    let mut stack = vec![Path::new(ROOT).to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "target" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(text) = fs::read_to_string(&p)
                && (text.contains(design) || text.contains(concat!("shared", "/docs")))
            {
                found.push(p.display().to_string());
            }
        }
    }
    // This file names neither (it builds the name).
    assert!(
        found.is_empty(),
        "files that point outside the repository: {found:?}"
    );
}
