//! YAML as the kubelet reads it: the one YAML front door of the project.
//!
//! The kubelet turns a manifest into JSON with sigs.k8s.io/yaml over go-yaml v2 before it decodes
//! a Pod, so a static pod manifest is read with YAML 1.1's scalar rules whatever the field:
//! `0644` is 420, `yes`/`no`/`on`/`off`/`y`/`n` are booleans, `1_000` is 1000, and a boolean or a
//! number where a string belongs is a type error that the user fixes by quoting. Only the first
//! document of a file is read; the others are never looked at by the kubelet, and here they are
//! only named, so the caller can warn about them.
//!
//! serde-saphyr (already in the build through kube) does the parsing, with YAML 1.1 booleans
//! and legacy octal; its span of every node gives each key and item of the JSON value its line
//! and column, kept in a [`PositionIndex`] so later stages can point at the field at fault.

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::{Budget, DuplicateKeyPolicy, NonFiniteFloatPolicy, Options, Spanned};

use crate::field::Position;
use crate::positions::{PositionIndex, join};

/// One document of a YAML stream turned into JSON, with the position of every field.
#[derive(Debug, Clone)]
pub struct Document {
    /// The document as JSON, after YAML 1.1 resolution.
    pub value: Value,
    /// Field path → line and column.
    pub positions: PositionIndex,
    /// Keys written twice in one mapping: the last one is used, as the kubelet uses it.
    pub duplicate_keys: Vec<(String, Position)>,
    /// The documents after the first, which are not read.
    pub ignored: Vec<IgnoredDocument>,
}

/// A document after the first one of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredDocument {
    /// 1-based number of the document in the file.
    pub number: usize,
    /// Where it starts.
    pub position: Position,
    /// Its `kind` and `metadata.name`, when it has them (`Pod web`).
    pub summary: Option<String>,
}

/// Why a text is not YAML the kubelet could read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", position.map(|p| format!("{p}: ")).unwrap_or_default())]
pub struct YamlError {
    /// Where the parser stopped, when it said.
    pub position: Option<Position>,
    /// What is wrong, in the parser's or the converter's words.
    pub message: String,
}

/// Reads the first document of `text` as the kubelet would. `Ok(None)` when the text holds no
/// document at all (only comments, blank lines and document markers).
///
/// # Errors
///
/// [`YamlError`] when the first document is not well-formed YAML, or holds something JSON cannot
/// say (a mapping used as a key, `.inf`, `.nan`).
pub fn parse(text: &str) -> Result<Option<Document>, YamlError> {
    if text.trim_start().starts_with('{') {
        return parse_json(text).map(Some);
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut documents = split_documents(text).into_iter().filter(|d| !d.is_empty());
    let Some(first) = documents.next() else { return Ok(None) };
    let mut document = first.read()?;
    document.ignored = documents.enumerate().map(|(i, document)| document.describe(i + 2)).collect();
    Ok(Some(document))
}

/// Text that starts with `{` is JSON to the kubelet (`yaml.ToJSON` passes it through to the
/// JSON decoder), so JSON's rules judge it: no single quotes, no trailing commas, one object.
/// The positions come from reading the same text as YAML, which JSON also is.
fn parse_json(text: &str) -> Result<Document, YamlError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let message = e.to_string();
        // serde_json appends " at line L column C"; the position is printed in front.
        let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
        YamlError { position: Some(Position { line: e.line(), column: e.column() }), message }
    })?;
    let read_as_yaml = split_documents(text).first().and_then(|chunk| chunk.read().ok());
    let (positions, duplicate_keys) = read_as_yaml.map(|document| (document.positions, document.duplicate_keys)).unwrap_or_default();
    Ok(Document { value, positions, duplicate_keys, ignored: Vec::new() })
}

/// Reads the first document of `text` into `T`, the way [`parse`] reads a manifest; used for the
/// agent's own files (its config), so that every YAML the agent reads follows one set of rules.
///
/// # Errors
///
/// [`YamlError`] for bad YAML, and for a value of the wrong type, naming its field path and
/// position.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    let document = parse(text)?;
    let (value, positions) = document.map(|d| (d.value, d.positions)).unwrap_or((Value::Null, PositionIndex::default()));
    serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        let position = positions.lookup(&path);
        let inner = e.into_inner().to_string();
        let message = if path == "." { inner } else { format!("{path}: {inner}") };
        YamlError { position, message }
    })
}

/// Writes `value` as block-style YAML, for people to read (`get -o yaml`, kubeconfigs).
///
/// # Errors
///
/// When `value` cannot be serialized (a map with non-string keys, ...).
pub fn to_string<T: serde::Serialize>(value: &T) -> Result<String, YamlError> {
    serde_saphyr::to_string(value).map_err(|e| YamlError { position: None, message: e.to_string() })
}

/// How deep mappings and sequences may nest. The deepest paths of a Pod (node affinity's
/// match expressions) are about a dozen levels; every level costs stack in the parser and the
/// converter, and a manifest is read on a worker thread.
const MAX_DEPTH: usize = 32;
/// How many nodes a document may hold, aliases expanded: a control-plane pod has a few
/// hundred, and this keeps an alias bomb from costing the agent more than a few megabytes.
const MAX_NODES: usize = 50_000;

/// A document's text: from its `---` marker (or the start of the stream) to the next marker.
struct Chunk<'a> {
    text: &'a str,
    /// Lines of the stream before this document, to turn its positions into the file's.
    first_line: usize,
}

/// Splits a stream where YAML itself splits it: at a line starting with `---` or `...` followed
/// by a space, a tab or the end of the line. YAML forbids such a line inside any content
/// (block scalars and quoted strings included), so this cut never lands inside a document.
fn split_documents(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let (mut start, mut start_line, mut offset) = (0, 0, 0);
    for (number, line) in text.split_inclusive('\n').enumerate() {
        if number > 0 && is_document_marker(line) && offset > start {
            chunks.push(Chunk { text: &text[start..offset], first_line: start_line });
            (start, start_line) = (offset, number);
        }
        offset += line.len();
    }
    chunks.push(Chunk { text: &text[start..], first_line: start_line });
    chunks
}

fn is_document_marker(line: &str) -> bool {
    ["---", "..."]
        .iter()
        .any(|marker| line.strip_prefix(marker).is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\n', '\r'])))
}

impl Chunk<'_> {
    /// True when the document has no node: only markers, directives, comments and blank lines.
    fn is_empty(&self) -> bool {
        self.text.lines().all(|line| {
            let line = line.trim();
            let line = line.strip_prefix("---").or_else(|| line.strip_prefix("...")).unwrap_or(line).trim_start();
            line.is_empty() || line.starts_with('#') || line.starts_with('%')
        })
    }

    /// The document as JSON, with where each field is written and the keys written twice (no
    /// other documents: the caller knows them).
    fn read(&self) -> Result<Document, YamlError> {
        let root = self.parse()?;
        let mut converter = Converter { text: self.text, first_line: self.first_line, ..Converter::default() };
        let value = converter.convert(root, String::new())?;
        Ok(Document { value, positions: converter.positions, duplicate_keys: converter.duplicate_keys, ignored: Vec::new() })
    }

    fn parse(&self) -> Result<Spanned<Node>, YamlError> {
        let mut options = Options::default();
        // go-yaml v2 reads `0644` as octal and lets a later duplicate key win; duplicates are
        // passed through so the converter can keep the last one and say so.
        options.legacy_octal_numbers = true;
        options.duplicate_keys = DuplicateKeyPolicy::PassThrough;
        // `.inf` and `.nan` reach the converter, which names the field they stand in.
        options.non_finite_float_policy = NonFiniteFloatPolicy::PassThrough;
        options.with_snippet = false;
        let mut budget = Budget::default();
        budget.max_depth = MAX_DEPTH;
        budget.max_nodes = MAX_NODES;
        options.budget = Some(budget);
        options.alias_limits.max_total_replayed_events = MAX_NODES;
        serde_saphyr::from_str_with_options::<Spanned<Node>>(self.text, options).map_err(|e| {
            let position = e.location().map(|l| file_position(self.first_line, l.line(), l.column()));
            let message = e.without_snippet().to_string();
            // The parser appends its own "at line L column C", relative to this document.
            let mut message = message.split(" at line ").next().unwrap_or(&message).to_owned();
            if message.starts_with("budget breached") || message.starts_with("alias replay limit exceeded") {
                message.push_str(": a manifest this deep, this large or with this many aliases is refused");
            }
            YamlError { position, message }
        })
    }

    /// Names the document for a warning; it starts at its `---` marker, or at its first line of
    /// content after a `...`.
    fn describe(&self, number: usize) -> IgnoredDocument {
        let line = self.text.lines().position(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')).unwrap_or(0);
        let position = Position { line: self.first_line + line + 1, column: 1 };
        let summary = self.parse().ok().and_then(|root| {
            let Node::Map(entries) = root.value else { return None };
            let field = |name: &str| {
                entries.iter().find_map(|(k, v)| match (&k.value, &v.value) {
                    (Node::Str(key), value) if key == name => Some(value),
                    _ => None,
                })
            };
            let kind = match field("kind") {
                Some(Node::Str(kind)) => kind.clone(),
                _ => return None,
            };
            let name = match field("metadata") {
                Some(Node::Map(meta)) => meta.iter().find_map(|(k, v)| match (&k.value, &v.value) {
                    (Node::Str(key), Node::Str(name)) if key == "name" => Some(name.clone()),
                    _ => None,
                }),
                _ => None,
            };
            Some(name.map_or(kind.clone(), |name| format!("{kind} {name}")))
        });
        IgnoredDocument { number, position, summary }
    }
}

/// A position the parser gave within one document, as a position in the file.
fn file_position(first_line: usize, line: u64, column: u64) -> Position {
    let line = usize::try_from(line).unwrap_or(usize::MAX).saturating_add(first_line);
    Position { line, column: usize::try_from(column).unwrap_or(usize::MAX) }
}

/// A YAML node as serde-saphyr resolved it, with the span of every child.
#[derive(Debug)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Node>, Spanned<Node>)>),
}

impl<'de> serde::Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML node")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        String::from_utf8(v.to_vec()).map(Node::Str).map_err(|_| E::custom("binary data that is not UTF-8"))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Node::Map(entries))
    }
}

/// go-yaml v2's boolean spellings. serde-saphyr takes any letter case (`yEs`); go-yaml v2 reads
/// those as strings, and so must we.
const YAML11_BOOLEANS: [&str; 22] = [
    "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off",
    "Off", "OFF",
];

/// Turns nodes into JSON as sigs.k8s.io/yaml does, indexing positions on the way.
#[derive(Default)]
struct Converter<'a> {
    text: &'a str,
    first_line: usize,
    positions: PositionIndex,
    duplicate_keys: Vec<(String, Position)>,
}

impl<'a> Converter<'a> {
    fn position(&self, node: &Spanned<Node>) -> Position {
        file_position(self.first_line, node.referenced.line(), node.referenced.column())
    }

    /// The node's own text, when the parser kept its byte range: a slice of the document, so
    /// looking at it copies nothing.
    fn spelling(&self, node: &Spanned<Node>) -> Option<&'a str> {
        let span = node.defined.span();
        let start = usize::try_from(span.byte_offset()?).ok()?;
        let len = usize::try_from(span.byte_len()?).ok()?;
        self.text.get(start..start + len)
    }

    fn convert(&mut self, node: Spanned<Node>, path: String) -> Result<Value, YamlError> {
        let position = self.position(&node);
        let spelling = self.spelling(&node);
        Ok(match node.value {
            Node::Null => Value::Null,
            Node::Bool(b) => match spelling {
                Some(text) if !YAML11_BOOLEANS.contains(&text) => Value::String(text.to_owned()),
                _ => Value::Bool(b),
            },
            Node::Int(i) => Value::Number(i.into()),
            Node::UInt(u) => Value::Number(u.into()),
            Node::Float(f) => float(f).ok_or_else(|| YamlError {
                position: Some(position),
                message: format!(
                    "{path}: {} cannot be written as JSON, which is what the kubelet turns YAML into; quote it if it is a string",
                    spelling.unwrap_or("a non-finite number")
                ),
            })?,
            Node::Str(s) => Value::String(s),
            Node::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let child = format!("{path}[{i}]");
                    self.positions.insert(child.clone(), self.position(&item));
                    out.push(self.convert(item, child)?);
                }
                Value::Array(out)
            }
            Node::Map(entries) => {
                let mut out = Map::new();
                for (key, value) in entries {
                    let key_position = self.position(&key);
                    let key = self.key(key, &path)?;
                    let child = join(&path, &key);
                    let value = self.convert(value, child.clone())?;
                    if out.insert(key, value).is_some() {
                        self.duplicate_keys.push((child.clone(), key_position));
                    }
                    self.positions.insert(child, key_position);
                }
                Value::Object(out)
            }
        })
    }

    /// A mapping key as sigs.k8s.io/yaml writes it into JSON: scalars become their string form.
    fn key(&mut self, key: Spanned<Node>, path: &str) -> Result<String, YamlError> {
        let position = self.position(&key);
        match self.convert(key, path.to_owned())? {
            Value::String(s) => Ok(s),
            Value::Null => Ok("null".to_owned()),
            scalar @ (Value::Bool(_) | Value::Number(_)) => Ok(scalar.to_string()),
            Value::Array(_) | Value::Object(_) => Err(YamlError {
                position: Some(position),
                message: format!("{}: a mapping or sequence cannot be a key", if path.is_empty() { "the document" } else { path }),
            }),
        }
    }
}

/// A float as JSON carries it. Go writes an integral float without a fraction (`1e3` is
/// `1000`), so it decodes into integer fields; non-finite numbers have no JSON form at all.
fn float(f: f64) -> Option<Value> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: every integer below it is exact.
    if f.fract() == 0.0 && f.abs() < EXACT {
        #[allow(clippy::cast_possible_truncation)] // integral and below 2^53, checked above
        return Some(Value::Number((f as i64).into()));
    }
    Number::from_f64(f).map(Value::Number)
}

#[cfg(test)]
mod tests;
