//! YAML or JSON text → one typed Pod, leniently, as the kubelet decodes static pods.
//!
//! The text is read as the kubelet reads it ([`crate::yaml`]: YAML 1.1 scalars, the first
//! document only), then decoded into a Pod. Unknown fields are dropped, as the kubelet drops
//! them, but each one becomes a warning with its path (`spec.containers[0].imagePullPolice`)
//! and line, because in a hand-written manifest an unknown field is almost always a typo; so do
//! keys written twice and documents after the first. Errors carry line and column.

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use crate::field::{FieldError, Position};
use crate::positions::{PositionIndex, join};
use crate::yaml;

/// A decoded pod, before defaults.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The pod as written.
    pub pod: Pod,
    /// One warning per unknown field that was dropped.
    pub warnings: Vec<FieldError>,
    /// Where each field is written, so later steps can locate their errors.
    pub positions: PositionIndex,
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

/// Decodes one Pod from YAML or JSON (text that starts with `{` is JSON, as to the kubelet).
///
/// # Errors
///
/// Every [`DecodeError`] variant; positions are 1-based.
pub fn decode_pod(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let text = text_of(bytes)?;
    let document =
        yaml::parse(&text).map_err(|e| DecodeError::Syntax { position: e.position, message: e.message })?.ok_or(DecodeError::Empty)?;
    let positions = document.positions;
    let Value::Object(object) = &document.value else {
        return Err(DecodeError::NotAnObject);
    };
    check_type_meta(object, &positions)?;

    let pod: Pod = serde_path_to_error::deserialize(&document.value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let hint = quoting_hint(&message);
        let mut error = FieldError::new(path.clone(), format!("{message}{hint}"));
        error.position = positions.lookup(&path);
        DecodeError::Field(error)
    })?;

    let mut warnings = Vec::new();
    let known = serde_json::to_value(&pod).unwrap_or(Value::Null);
    unknown_fields(&document.value, &known, "", &mut warnings);
    for warning in &mut warnings {
        warning.position = positions.lookup(&warning.path);
    }
    for (path, position) in document.duplicate_keys {
        let mut warning = FieldError::new(path, "key written more than once; the last one is used, as the kubelet uses it");
        warning.position = Some(position);
        warnings.push(warning);
    }
    for ignored in document.ignored {
        let what = ignored.summary.map(|s| format!(" ({s})")).unwrap_or_default();
        let mut warning = FieldError::new(
            "",
            format!(
                "document {}{what} is ignored: the kubelet runs only the first document of a manifest file; put each pod in its own file",
                ignored.number
            ),
        );
        warning.position = Some(ignored.position);
        warnings.push(warning);
    }
    Ok(Decoded { pod, warnings, positions })
}

/// The manifest's text. UTF-16 with a byte order mark is read too, as go-yaml v2 reads it (what
/// Windows PowerShell's `>` writes); anything else must be UTF-8. A manifest URL's body is read
/// the same way ([`crate::list::split`]), so a body reads as the same text would from a file.
pub(crate) fn text_of(bytes: &[u8]) -> Result<std::borrow::Cow<'_, str>, DecodeError> {
    let utf16 = |rest: &[u8], unit: fn([u8; 2]) -> u16| {
        let units: Vec<u16> = rest.chunks(2).map(|pair| unit([pair[0], *pair.get(1).unwrap_or(&0)])).collect();
        String::from_utf16(&units).map_err(|_| DecodeError::Syntax {
            position: None,
            message: "not valid UTF-16, though it starts with a UTF-16 byte order mark".to_owned(),
        })
    };
    match bytes {
        [0xff, 0xfe, rest @ ..] => utf16(rest, u16::from_le_bytes).map(Into::into),
        [0xfe, 0xff, rest @ ..] => utf16(rest, u16::from_be_bytes).map(Into::into),
        _ => std::str::from_utf8(bytes)
            .map(Into::into)
            .map_err(|e| DecodeError::NotUtf8 { position: position_of_byte(bytes, e.valid_up_to()) }),
    }
}

/// Says how to fix the type errors that YAML 1.1's scalar rules cause in string fields.
fn quoting_hint(message: &str) -> &'static str {
    if !message.contains("expected a string") {
        ""
    } else if message.starts_with("invalid type: boolean") {
        "; YAML reads an unquoted yes, no, on, off, y, n, true or false as a boolean, as the kubelet does: quote the value"
    } else if message.starts_with("invalid type: integer") || message.starts_with("invalid type: floating point") {
        "; YAML reads an unquoted number (0644 as octal 420) as a number, as the kubelet does: quote the value"
    } else {
        ""
    }
}

fn check_type_meta(object: &serde_json::Map<String, Value>, positions: &PositionIndex) -> Result<(), DecodeError> {
    match object.get("kind") {
        Some(Value::String(kind)) if kind == "Pod" => {}
        Some(other) => {
            let kind = other.as_str().map_or_else(|| other.to_string(), str::to_owned);
            return Err(DecodeError::WrongKind { kind: Some(kind), position: positions.lookup("kind") });
        }
        None => return Err(DecodeError::WrongKind { kind: None, position: None }),
    }
    match object.get("apiVersion") {
        Some(Value::String(v)) if v == "v1" => Ok(()),
        other => Err(DecodeError::WrongApiVersion {
            api_version: other.map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)),
            position: positions.lookup("apiVersion"),
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
        assert!(matches!(err, DecodeError::Syntax { position: Some(_), .. }), "{err:?}");
        // Where the sequence that is never closed opens.
        assert_eq!(err.to_string(), "4:9: unclosed bracket '['");
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
    fn empty_files_are_refused() {
        assert_eq!(decode_pod(b"# nothing\n").unwrap_err(), DecodeError::Empty);
        assert_eq!(decode_pod(b"---\n# nothing\n...\n").unwrap_err(), DecodeError::Empty);
    }

    #[test]
    fn utf16_with_a_byte_order_mark_reads_as_go_yaml_reads_it() {
        let le: Vec<u8> = [0xff, 0xfe].into_iter().chain(GOOD.encode_utf16().flat_map(u16::to_le_bytes)).collect();
        let be: Vec<u8> = [0xfe, 0xff].into_iter().chain(GOOD.encode_utf16().flat_map(u16::to_be_bytes)).collect();
        let utf8 = decode_pod(GOOD.as_bytes()).unwrap().pod;
        assert_eq!(decode_pod(&le).unwrap().pod, utf8);
        assert_eq!(decode_pod(&be).unwrap().pod, utf8);
        // A lone surrogate is no UTF-16.
        let err = decode_pod(&[0xff, 0xfe, 0x00, 0xd8, 0x41, 0x00]).unwrap_err();
        assert!(err.to_string().contains("not valid UTF-16"), "{err}");
    }

    #[test]
    fn bad_utf8_is_located() {
        let err = decode_pod(b"apiVersion: v1\nkind: \xff\n").unwrap_err();
        assert_eq!(err, DecodeError::NotUtf8 { position: Position { line: 2, column: 7 } });
    }
}
