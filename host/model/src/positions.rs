//! Maps API field paths (`spec.containers[0].image`) back to lines and columns in a manifest.
//!
//! Decoding goes through `serde_json::Value`, which forgets where things were, so the YAML
//! reader ([`crate::yaml`]) records the position of every key and sequence item by its path as
//! it builds the value (JSON is YAML, so both formats share this).

use std::collections::HashMap;

use crate::field::Position;

/// Field path → position of the key (or sequence item) in the text.
#[derive(Debug, Clone, Default)]
pub struct PositionIndex {
    by_path: HashMap<String, Position>,
}

impl PositionIndex {
    /// Records where `path` is written; a key written twice is where it was written last,
    /// since that is the one that is used.
    pub(crate) fn insert(&mut self, path: String, position: Position) {
        self.by_path.insert(path, position);
    }

    /// The position of `path`, or of its nearest indexed ancestor.
    pub fn lookup(&self, path: &str) -> Option<Position> {
        let mut candidate = path;
        loop {
            if let Some(pos) = self.by_path.get(candidate) {
                return Some(*pos);
            }
            let cut = candidate.rfind(['.', '['])?;
            candidate = &candidate[..cut];
        }
    }
}

/// Appends a mapping key to a path the way the API server prints it: `a.b`, or `a[b.c/d]` for
/// keys that are not plain identifiers (label and annotation keys).
pub fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (path.is_empty(), plain) {
        (true, _) => key.to_owned(),
        (false, true) => format!("{path}.{key}"),
        (false, false) => format!("{path}[{key}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(text: &str) -> PositionIndex {
        crate::yaml::parse(text).unwrap().unwrap().positions
    }

    #[test]
    fn indexes_keys_and_items() {
        let text = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: a\n    image: busybox\n  - name: b\n    imagee: x\n";
        let index = index(text);
        assert_eq!(index.lookup("spec.containers[1].imagee"), Some(Position { line: 8, column: 5 }));
        assert_eq!(index.lookup("spec.containers[0].image"), Some(Position { line: 6, column: 5 }));
        assert_eq!(index.lookup("spec.containers[0].ports[3].name"), Some(Position { line: 5, column: 5 }));
    }

    #[test]
    fn indexes_json_and_annotation_keys() {
        let text = "{\"metadata\": {\"annotations\": {\"a.io/b\": \"x\"}},\n \"spec\": {\"containers\": []}}";
        let index = index(text);
        assert_eq!(index.lookup("metadata.annotations[a.io/b]"), Some(Position { line: 1, column: 31 }));
        assert_eq!(index.lookup("spec.containers"), Some(Position { line: 2, column: 11 }));
    }

    #[test]
    fn positions_count_the_lines_of_documents_before() {
        let text = "# leading comment\n---\napiVersion: v1\nkind: Pod\n";
        assert_eq!(index(text).lookup("kind"), Some(Position { line: 4, column: 1 }));
    }
}
