//! Store templates: paths whose components hold `{user}`, `{local}` and
//! `{domain}`, and matching directory names against them.

/// A template that cannot be used, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A placeholder in a store template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    User,
    Local,
    Domain,
}

impl Var {
    fn name(self) -> &'static str {
        match self {
            Var::User => "user",
            Var::Local => "local",
            Var::Domain => "domain",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Var(Var),
}

/// One path component of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pieces: Vec<Piece>,
    raw: String,
}

impl Part {
    pub fn has_placeholder(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Var(_)))
    }

    /// The component as written (for components without placeholders).
    pub fn literal(&self) -> &str {
        &self.raw
    }

    /// Matches a directory name, returning the placeholder values.
    pub fn matches(&self, name: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        match_pieces(&self.pieces, name, &mut out).then_some(out)
    }
}

fn match_pieces(pieces: &[Piece], s: &str, out: &mut Vec<(String, String)>) -> bool {
    match pieces.split_first() {
        None => s.is_empty(),
        Some((Piece::Lit(l), rest)) => s
            .strip_prefix(l.as_str())
            .is_some_and(|r| match_pieces(rest, r, out)),
        Some((Piece::Var(v), rest)) => {
            // Shortest non-empty value first, so `{local}@{domain}` splits
            // at the first `@`.
            for (i, _) in s.char_indices().skip(1).chain([(s.len(), ' ')]) {
                let mark = out.len();
                out.push((v.name().to_string(), s[..i].to_string()));
                if match_pieces(rest, &s[i..], out) {
                    return true;
                }
                out.truncate(mark);
            }
            false
        }
    }
}

/// A store template: a path whose components may hold `{user}`, `{local}`
/// and `{domain}`, like Dovecot's `%u`, `%n` and `%d`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// The template as given.
    pub raw: String,
    absolute: bool,
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(raw: &str) -> Result<Template, TemplateError> {
        let err = |why: &str| TemplateError(format!("--store {raw:?}: {why}"));
        let mut parts = Vec::new();
        let mut vars = Vec::new();
        for comp in raw.split('/').filter(|c| !c.is_empty() && *c != ".") {
            if comp == ".." {
                return Err(err("'..' is not allowed in a template"));
            }
            let mut pieces = Vec::new();
            let mut rest = comp;
            while let Some(open) = rest.find('{') {
                if open > 0 {
                    pieces.push(Piece::Lit(rest[..open].to_string()));
                }
                let close = rest[open..].find('}').ok_or_else(|| err("unclosed '{'"))? + open;
                let var = match &rest[open + 1..close] {
                    "user" => Var::User,
                    "local" => Var::Local,
                    "domain" => Var::Domain,
                    other => {
                        return Err(err(&format!(
                            "unknown placeholder {{{other}}}; use {{user}}, {{local}} or {{domain}}"
                        )));
                    }
                };
                if matches!(pieces.last(), Some(Piece::Var(_))) {
                    return Err(err("two placeholders need a literal between them"));
                }
                pieces.push(Piece::Var(var));
                vars.push(var);
                rest = &rest[close + 1..];
            }
            if rest.contains('}') {
                return Err(err("unmatched '}'"));
            }
            if !rest.is_empty() {
                pieces.push(Piece::Lit(rest.to_string()));
            }
            parts.push(Part {
                pieces,
                raw: comp.to_string(),
            });
        }
        let has = |v| vars.contains(&v);
        if !has(Var::User) && !has(Var::Local) {
            return Err(err("needs {user} or {local} to tell users apart"));
        }
        if has(Var::User) && (has(Var::Local) || has(Var::Domain)) {
            return Err(err("use either {user} or {local}/{domain}, not both"));
        }
        if vars.len()
            != [Var::User, Var::Local, Var::Domain]
                .iter()
                .filter(|v| has(**v))
                .count()
        {
            return Err(err("each placeholder may appear once"));
        }
        Ok(Template {
            raw: raw.to_string(),
            absolute: raw.starts_with('/'),
            parts,
        })
    }

    pub fn is_absolute(&self) -> bool {
        self.absolute
    }

    pub fn part(&self, i: usize) -> Option<&Part> {
        self.parts.get(i)
    }

    /// The user name from placeholder values: `{user}`, or `{local}@{domain}`,
    /// or `{local}` alone.
    pub fn user(&self, vars: &[(String, String)]) -> Option<String> {
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if let Some(u) = get("user") {
            return Some(u);
        }
        let local = get("local")?;
        Some(match get("domain") {
            Some(d) => format!("{local}@{d}"),
            None => local,
        })
    }
}
