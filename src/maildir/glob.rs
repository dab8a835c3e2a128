//! Folder-name patterns, as the configuration writes them (`Junk`,
//! `Spam*`, `*.Trash`): used by the event filter, quota's ignored folders
//! and expire rules.

/// `*` matches any run of characters (the hierarchy separator included),
/// `?` one character; everything else itself.
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, n, want) in [
            ("Junk", "Junk", true),
            ("Junk", "Junk.x", false),
            ("Spam*", "Spam", true),
            ("Spam*", "Spam.Old", true),
            ("*.Trash", "Archive.Trash", true),
            ("A?c", "Abc", true),
            ("A?c", "Ac", false),
            ("*", "", true),
            ("", "x", false),
            ("Entw*", "Entwürfe", true),
        ] {
            assert_eq!(glob(p, n), want, "{p} ~ {n}");
        }
    }
}
