//! Field paths and field errors, spelled the way the API server spells them.

use std::fmt;

/// A position in a manifest's text, 1-based as editors show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Line, starting at 1.
    pub line: usize,
    /// Column, starting at 1.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A problem with one field of a pod, such as `spec.containers[0].image: Required value`.
///
/// `path` uses the API server's notation (`spec.volumes[1].hostPath.path`), so messages read
/// like `kubectl apply` errors. `position` is filled in by the decoder when the field can be
/// traced back to the manifest text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field at fault, in API notation.
    pub path: String,
    /// Why the value is not acceptable.
    pub message: String,
    /// Where the field stands in the manifest, when known.
    pub position: Option<Position>,
}

impl FieldError {
    /// An error at `path` with `message`, position unknown.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { path: path.into(), message: message.into(), position: None }
    }

    /// `Required value`, as the API server words it.
    pub fn required(path: impl Into<String>) -> Self {
        Self::new(path, "Required value")
    }

    /// `Invalid value: "<value>": <detail>`, as the API server words it.
    pub fn invalid(path: impl Into<String>, value: impl fmt::Display, detail: impl fmt::Display) -> Self {
        Self::new(path, format!("Invalid value: \"{value}\": {detail}"))
    }

    /// `Duplicate value: "<value>"`, as the API server words it.
    pub fn duplicate(path: impl Into<String>, value: impl fmt::Display) -> Self {
        Self::new(path, format!("Duplicate value: \"{value}\""))
    }

    /// `Unsupported value: "<value>": supported values: "a", "b"`, as the API server words it.
    pub fn not_supported(path: impl Into<String>, value: impl fmt::Display, supported: &[&str]) -> Self {
        let list = supported.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
        Self::new(path, format!("Unsupported value: \"{value}\": supported values: {list}"))
    }

    /// `Invalid value: <value>: <detail>` with the value unquoted, as the API server prints
    /// numbers, booleans, quantities and whole objects (strings alone are quoted).
    pub fn invalid_unquoted(path: impl Into<String>, value: impl fmt::Display, detail: impl fmt::Display) -> Self {
        Self::new(path, format!("Invalid value: {value}: {detail}"))
    }

    /// `Required value: <detail>`, for the rules that say why the value is required.
    pub fn required_because(path: impl Into<String>, detail: impl fmt::Display) -> Self {
        Self::new(path, format!("Required value: {detail}"))
    }

    /// `Not found: "<value>"`, as the API server words it.
    pub fn not_found(path: impl Into<String>, value: impl fmt::Display) -> Self {
        Self::new(path, format!("Not found: \"{value}\""))
    }

    /// `Too long: must have at most <max> bytes`, as the API server words it.
    pub fn too_long(path: impl Into<String>, max: usize) -> Self {
        Self::new(path, format!("Too long: must have at most {max} bytes"))
    }

    /// `Forbidden: <detail>`, as the API server words it.
    pub fn forbidden(path: impl Into<String>, detail: impl fmt::Display) -> Self {
        Self::new(path, format!("Forbidden: {detail}"))
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(pos) = self.position {
            write!(f, "{pos}: ")?;
        }
        // A problem with the file as a whole (a document it ignores) has no field path.
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}
