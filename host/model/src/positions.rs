//! Maps API field paths (`spec.containers[0].image`) back to lines and columns in a manifest.
//!
//! Decoding goes through `serde_json::Value`, which forgets where things were. When an error
//! or warning needs a position, the text is walked once more with an event-level YAML parser
//! (JSON is YAML, so both formats share this code) and every key and sequence item is indexed
//! by its path. Built only when there is something to report, so a good manifest pays nothing.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, Span};

use crate::field::Position;

/// Field path → position of the key (or sequence item) in the text.
#[derive(Debug, Default)]
pub struct PositionIndex {
    by_path: HashMap<String, Position>,
}

enum Frame {
    Mapping {
        path: String,
        key: Option<String>,
    },
    Sequence {
        path: String,
        next: usize,
    },
    /// A mapping or sequence used as a mapping key: never part of an API path.
    ComplexKey,
}

impl PositionIndex {
    /// Indexes `text`. Text that does not parse is indexed up to the first error.
    pub fn build(text: &str) -> Self {
        let mut index = PositionIndex::default();
        let mut stack: Vec<Frame> = Vec::new();
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            match event {
                Event::Scalar(value, ..) => index.node(&mut stack, span, Some(value.as_ref()), None),
                Event::Alias(_) => index.node(&mut stack, span, None, None),
                Event::MappingStart(..) => {
                    index.node(&mut stack, span, None, Some(true));
                }
                Event::SequenceStart(..) => {
                    index.node(&mut stack, span, None, Some(false));
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        index
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

    /// Handles one node: a scalar (`scalar` is its text), an alias, or the start of a
    /// collection (`opens` is `Some(is_mapping)`).
    fn node(&mut self, stack: &mut Vec<Frame>, span: Span, scalar: Option<&str>, opens: Option<bool>) {
        let position = Position { line: span.start.line(), column: span.start.col() + 1 };
        let child_path = match stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::ComplexKey) => None,
            Some(Frame::Sequence { path, next }) => {
                let item = format!("{path}[{next}]");
                *next += 1;
                self.by_path.entry(item.clone()).or_insert(position);
                Some(item)
            }
            Some(Frame::Mapping { path, key }) => match key.take() {
                Some(k) => Some(join(path, &k)),
                None => match scalar {
                    Some(k) => {
                        self.by_path.entry(join(path, k)).or_insert(position);
                        *key = Some(k.to_owned());
                        return;
                    }
                    None if opens.is_some() => {
                        stack.push(Frame::ComplexKey);
                        return;
                    }
                    None => {
                        *key = Some(String::new());
                        return;
                    }
                },
            },
        };
        if let Some(is_mapping) = opens {
            stack.push(match child_path {
                None => Frame::ComplexKey,
                Some(path) if is_mapping => Frame::Mapping { path, key: None },
                Some(path) => Frame::Sequence { path, next: 0 },
            });
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

    #[test]
    fn indexes_keys_and_items() {
        let text = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: a\n    image: busybox\n  - name: b\n    imagee: x\n";
        let index = PositionIndex::build(text);
        assert_eq!(index.lookup("spec.containers[1].imagee"), Some(Position { line: 8, column: 5 }));
        assert_eq!(index.lookup("spec.containers[0].image"), Some(Position { line: 6, column: 5 }));
        assert_eq!(index.lookup("spec.containers[0].ports[3].name"), Some(Position { line: 5, column: 5 }));
    }

    #[test]
    fn indexes_json_and_annotation_keys() {
        let text = "{\"metadata\": {\"annotations\": {\"a.io/b\": \"x\"}},\n \"spec\": {\"containers\": []}}";
        let index = PositionIndex::build(text);
        assert_eq!(index.lookup("metadata.annotations[a.io/b]"), Some(Position { line: 1, column: 31 }));
        assert_eq!(index.lookup("spec.containers"), Some(Position { line: 2, column: 11 }));
    }
}
