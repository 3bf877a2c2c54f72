//! YAML or JSON text → one typed Pod, leniently, as the kubelet decodes static pods.
//!
//! Unknown fields are dropped, as the kubelet drops them, but each one becomes a warning with
//! its path (`spec.containers[0].imagePullPolice`) and line, because in a hand-written manifest
//! an unknown field is almost always a typo. Errors carry line and column.

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use crate::field::{FieldError, Position};
use crate::positions::{PositionIndex, join};

/// A decoded pod, before defaults.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The pod as written.
    pub pod: Pod,
    /// One warning per unknown field that was dropped.
    pub warnings: Vec<FieldError>,
    /// The manifest text, kept so later steps can locate their errors in it.
    pub source: String,
}

/// Why a manifest's text is not a Pod.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The text is not UTF-8.
    #[error("{position}: not valid UTF-8")]
    NotUtf8 {
        /// Where the first bad byte is.
        position: Position,
    },
    /// The file holds nothing but whitespace and comments.
    #[error("the manifest is empty")]
    Empty,
    /// The text is not well-formed YAML or JSON.
    #[error("{}{message}", prefix(.position))]
    Syntax {
        /// Where the parser stopped, when it said.
        position: Option<Position>,
        /// The parser's own words.
        message: String,
    },
    /// More than one YAML document: a static pod manifest holds exactly one Pod.
    #[error("the manifest holds more than one YAML document; put each pod in its own file")]
    MultipleDocuments,
    /// The document is not a mapping.
    #[error("the manifest is not an object with apiVersion, kind and metadata")]
    NotAnObject,
    /// `kind` is missing or is not `Pod`.
    #[error("{}{}", prefix(.position), kind_message(.kind))]
    WrongKind {
        /// The kind the manifest declares, if any.
        kind: Option<String>,
        /// Where `kind` is written.
        position: Option<Position>,
    },
    /// `apiVersion` is missing or is not `v1`.
    #[error("{}apiVersion {:?} is not supported for kind Pod; use apiVersion: v1", prefix(.position), .api_version.as_deref().unwrap_or(""))]
    WrongApiVersion {
        /// The version the manifest declares, if any.
        api_version: Option<String>,
        /// Where `apiVersion` is written.
        position: Option<Position>,
    },
    /// A field holds a value of the wrong type (a string where a number belongs, ...).
    #[error("{0}")]
    Field(FieldError),
}

fn prefix(position: &Option<Position>) -> String {
    position.map(|p| format!("{p}: ")).unwrap_or_default()
}

fn kind_message(kind: &Option<String>) -> String {
    match kind {
        None => "Object 'Kind' is missing: a static pod manifest must say kind: Pod".to_owned(),
        Some(kind) => format!("kind {kind:?} is not a Pod: a static pod manifest holds exactly one kind: Pod"),
    }
}

/// Decodes one Pod from YAML or JSON.
///
/// JSON is recognised by its leading `{`, as the kubelet recognises it; anything else is YAML.
///
/// # Errors
///
/// Every [`DecodeError`] variant; positions are 1-based.
pub fn decode_pod(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::NotUtf8 { position: position_of_byte(bytes, e.valid_up_to()) })?;
    let value = parse_value(text)?;
    let Value::Object(object) = &value else {
        return Err(DecodeError::NotAnObject);
    };
    check_type_meta(object, text)?;

    let pod: Pod = serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        let mut error = FieldError::new(path.clone(), e.into_inner().to_string());
        error.position = PositionIndex::build(text).lookup(&path);
        DecodeError::Field(error)
    })?;

    let mut warnings = Vec::new();
    let known = serde_json::to_value(&pod).unwrap_or(Value::Null);
    unknown_fields(&value, &known, "", &mut warnings);
    if !warnings.is_empty() {
        let index = PositionIndex::build(text);
        for warning in &mut warnings {
            warning.position = index.lookup(&warning.path);
        }
    }
    Ok(Decoded { pod, warnings, source: text.to_owned() })
}

fn parse_value(text: &str) -> Result<Value, DecodeError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        return serde_json::from_str(text)
            .map_err(|e| DecodeError::Syntax { position: Some(Position { line: e.line(), column: e.column() }), message: e.to_string() });
    }
    match serde_yaml_ng::from_str::<Value>(text) {
        Ok(Value::Null) => Err(DecodeError::Empty),
        Ok(value) => Ok(value),
        Err(e) if e.to_string().contains("more than one document") => Err(DecodeError::MultipleDocuments),
        Err(e) => {
            let position = e.location().map(|l| Position { line: l.line(), column: l.column() });
            let mut message = e.to_string();
            // serde_yaml_ng appends " at line L column C"; the position is printed in front.
            if let Some(cut) = message.find(" at line ") {
                message.truncate(cut);
            }
            if message.starts_with("EOF while parsing") && text.trim().is_empty() {
                return Err(DecodeError::Empty);
            }
            Err(DecodeError::Syntax { position, message })
        }
    }
}

fn check_type_meta(object: &serde_json::Map<String, Value>, text: &str) -> Result<(), DecodeError> {
    let locate = |key: &str| PositionIndex::build(text).lookup(key);
    match object.get("kind") {
        Some(Value::String(kind)) if kind == "Pod" => {}
        Some(other) => {
            let kind = other.as_str().map_or_else(|| other.to_string(), str::to_owned);
            return Err(DecodeError::WrongKind { kind: Some(kind), position: locate("kind") });
        }
        None => return Err(DecodeError::WrongKind { kind: None, position: None }),
    }
    match object.get("apiVersion") {
        Some(Value::String(v)) if v == "v1" => Ok(()),
        other => Err(DecodeError::WrongApiVersion {
            api_version: other.map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)),
            position: locate("apiVersion"),
        }),
    }
}

/// Walks what was written next to what the typed pod kept; whatever was written but not kept
/// (and is not an explicit null) is an unknown field.
fn unknown_fields(written: &Value, kept: &Value, path: &str, out: &mut Vec<FieldError>) {
    match (written, kept) {
        (Value::Object(written), Value::Object(kept)) => {
            for (key, value) in written {
                let child = join(path, key);
                match kept.get(key) {
                    Some(kept_value) => unknown_fields(value, kept_value, &child, out),
                    None if value.is_null() || is_empty_collection(value) => {}
                    None => out.push(FieldError::new(child, "unknown field, ignored")),
                }
            }
        }
        (Value::Array(written), Value::Array(kept)) => {
            for (i, (w, k)) in written.iter().zip(kept).enumerate() {
                unknown_fields(w, k, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn is_empty_collection(value: &Value) -> bool {
    matches!(value, Value::Array(a) if a.is_empty()) || matches!(value, Value::Object(o) if o.is_empty())
}

fn position_of_byte(bytes: &[u8], offset: usize) -> Position {
    let before = &bytes[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    Position { line, column }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: web\n    image: nginx:1.27\n";

    #[test]
    fn decodes_yaml_and_json_alike() {
        let yaml = decode_pod(GOOD.as_bytes()).unwrap();
        let json = decode_pod(
            br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"},"spec":{"containers":[{"name":"web","image":"nginx:1.27"}]}}"#,
        )
        .unwrap();
        assert_eq!(yaml.pod, json.pod);
        assert!(yaml.warnings.is_empty());
    }

    #[test]
    fn unknown_fields_are_warnings_with_lines() {
        let text = GOOD.replace("    image: nginx:1.27\n", "    image: nginx:1.27\n    imagePullPolice: Always\n");
        let decoded = decode_pod(text.as_bytes()).unwrap();
        assert_eq!(decoded.warnings.len(), 1);
        let w = &decoded.warnings[0];
        assert_eq!(w.path, "spec.containers[0].imagePullPolice");
        assert_eq!(w.position, Some(Position { line: 9, column: 5 }));
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let err = decode_pod(b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: [web\n").unwrap_err();
        let DecodeError::Syntax { position: Some(pos), .. } = err else { panic!("{err:?}") };
        assert_eq!(pos.line, 5);
    }

    #[test]
    fn another_kind_is_named() {
        let err = decode_pod(b"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n").unwrap_err();
        assert_eq!(err.to_string(), "2:1: kind \"Deployment\" is not a Pod: a static pod manifest holds exactly one kind: Pod");
    }

    #[test]
    fn wrong_types_name_the_field() {
        let text = GOOD.replace("image: nginx:1.27", "image: nginx:1.27\n    ports:\n    - containerPort: http80");
        let err = decode_pod(text.as_bytes()).unwrap_err();
        let DecodeError::Field(field) = err else { panic!("{err:?}") };
        assert_eq!(field.path, "spec.containers[0].ports[0].containerPort");
        assert_eq!(field.position.map(|p| p.line), Some(10));
    }

    #[test]
    fn yaml_booleans_in_kubernetes_forms() {
        for form in ["true", "True"] {
            let text = GOOD.replace("spec:\n", &format!("spec:\n  hostNetwork: {form}\n"));
            assert_eq!(decode_pod(text.as_bytes()).unwrap().pod.spec.unwrap().host_network, Some(true));
        }
    }

    #[test]
    fn two_documents_and_empty_files_are_refused() {
        let two = format!("{GOOD}---\n{GOOD}");
        assert_eq!(decode_pod(two.as_bytes()).unwrap_err(), DecodeError::MultipleDocuments);
        assert_eq!(decode_pod(b"# nothing\n").unwrap_err(), DecodeError::Empty);
    }

    #[test]
    fn bad_utf8_is_located() {
        let err = decode_pod(b"apiVersion: v1\nkind: \xff\n").unwrap_err();
        assert_eq!(err, DecodeError::NotUtf8 { position: Position { line: 2, column: 7 } });
    }
}
