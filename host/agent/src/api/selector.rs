//! Label and field selectors, in the API's syntax: `app=web,tier!=db`, `env in (prod,staging)`,
//! `!canary`, `status.phase=Running`.

use std::collections::BTreeMap;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed selector: every requirement must hold. The empty selector selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

/// Why a selector does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement {requirement:?}: {reason}")]
pub struct SelectorError {
    requirement: String,
    reason: &'static str,
}

impl Selector {
    /// Parses a label selector (set-based requirements allowed).
    ///
    /// # Errors
    ///
    /// [`SelectorError`] naming the requirement that does not parse.
    pub fn labels(text: &str) -> Result<Selector, SelectorError> {
        Self::parse(text, true)
    }

    /// Parses a field selector (`=`, `==` and `!=` only).
    ///
    /// # Errors
    ///
    /// [`SelectorError`] naming the requirement that does not parse.
    pub fn fields(text: &str) -> Result<Selector, SelectorError> {
        Self::parse(text, false)
    }

    fn parse(text: &str, set_based: bool) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let error = |reason| SelectorError { requirement: part.to_owned(), reason };
            let requirement = if let Some((key, value)) = part.split_once("!=") {
                Requirement::NotEquals(key.trim().to_owned(), value.trim().to_owned())
            } else if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Equals(key.trim().to_owned(), value.trim().to_owned())
            } else if !set_based {
                return Err(error("a field selector needs =, == or !="));
            } else if let Some((key, values)) = set_operand(part, " notin ") {
                Requirement::NotIn(key, values.ok_or_else(|| error("values must be in parentheses"))?)
            } else if let Some((key, values)) = set_operand(part, " in ") {
                Requirement::In(key, values.ok_or_else(|| error("values must be in parentheses"))?)
            } else if let Some(key) = part.strip_prefix('!') {
                Requirement::DoesNotExist(key.trim().to_owned())
            } else if part.contains(char::is_whitespace) || part.contains(['(', ')']) {
                return Err(error("expected key, !key, key=value, key!=value, key in (...) or key notin (...)"));
            } else {
                Requirement::Exists(part.to_owned())
            };
            requirements.push(requirement);
        }
        Ok(Selector(requirements))
    }

    /// Whether `fields` (labels, or an object's selectable fields) satisfy every requirement.
    pub fn matches(&self, fields: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|requirement| match requirement {
            Requirement::Equals(k, v) => fields.get(k) == Some(v),
            Requirement::NotEquals(k, v) => fields.get(k) != Some(v),
            Requirement::In(k, vs) => fields.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => fields.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => fields.contains_key(k),
            Requirement::DoesNotExist(k) => !fields.contains_key(k),
        })
    }
}

/// Splits on commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// `key <op> (a,b)`: the key, and the values when they are in parentheses.
fn set_operand(part: &str, op: &str) -> Option<(String, Option<Vec<String>>)> {
    let (key, rest) = part.split_once(op)?;
    let values = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .map(|inner| inner.split(',').map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect());
    Some((key.trim().to_owned(), values))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn equality_and_set_requirements() {
        let web = labels(&[("app", "web"), ("env", "prod")]);
        let db = labels(&[("app", "db")]);
        for (text, selects_web, selects_db) in [
            ("", true, true),
            ("app=web", true, false),
            ("app==web,env=prod", true, false),
            ("app!=web", false, true),
            ("env in (prod, staging)", true, false),
            ("env notin (prod)", false, true),
            ("env", true, false),
            ("!env", false, true),
            ("app in (web,db),!canary", true, true),
        ] {
            let selector = Selector::labels(text).unwrap();
            assert_eq!((selector.matches(&web), selector.matches(&db)), (selects_web, selects_db), "{text}");
        }
    }

    #[test]
    fn bad_selectors_say_which_requirement() {
        let err = Selector::labels("app=web,env in prod").unwrap_err();
        assert!(err.to_string().contains("\"env in prod\""), "{err}");
        assert!(Selector::fields("status.phase").is_err());
        assert!(Selector::fields("status.phase=Running").unwrap().matches(&labels(&[("status.phase", "Running")])));
    }
}
