//! A manifest URL's body: one Pod, or a `PodList` (or `List`) of them, as the kubelet's HTTP
//! source reads it. Each item comes out as its own manifest text for [`load`](crate::load).
//!
//! The body's bytes are read as a manifest file's are ([`decode`](crate::decode)): UTF-8 with
//! or without a byte order mark, or UTF-16 with one, so a URL serves whatever a file may hold.

use serde_json::Value;

/// Why a body holds no usable list of pods.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// No document, only whitespace or comments: an empty `PodList` is how a server says "no pods".
    #[error("the body is empty; serve an empty PodList to say there are no pods")]
    Empty,
    /// Neither YAML nor JSON.
    #[error("the body is not YAML or JSON: {0}")]
    Syntax(String),
    /// `items` is there but is not a sequence.
    #[error("items: must be a list")]
    ItemsNotAList,
    /// A kind other than `Pod`, `PodList` or `List`.
    #[error("kind {0:?} is not a Pod or PodList")]
    WrongKind(String),
    /// No kind at all.
    #[error("the body has no kind; it must be a Pod or a PodList")]
    NoKind,
}

/// Splits `body` into one JSON manifest per pod. Items of a list get `apiVersion: v1` and
/// `kind: Pod` when they leave them implied, as list items usually do.
///
/// # Errors
///
/// Every [`ListError`] variant (text that is neither UTF-8 nor UTF-16 with a byte order mark is
/// a [`ListError::Syntax`]); the items themselves are not checked here.
pub fn split(body: &[u8]) -> Result<Vec<String>, ListError> {
    let text = crate::decode::text_of(body).map_err(|e| ListError::Syntax(e.to_string()))?;
    let document = match crate::yaml::parse(&text) {
        Ok(Some(document)) => document.value,
        Ok(None) => return Err(ListError::Empty),
        Err(e) => return Err(ListError::Syntax(e.to_string())),
    };
    let pods = match document["kind"].as_str() {
        Some("Pod") => vec![document],
        Some("PodList" | "List") => match document.get("items") {
            Some(Value::Array(items)) => items.clone(),
            None | Some(Value::Null) => Vec::new(),
            Some(_) => return Err(ListError::ItemsNotAList),
        },
        Some(kind) => return Err(ListError::WrongKind(kind.to_owned())),
        None => return Err(ListError::NoKind),
    };
    Ok(pods
        .into_iter()
        .map(|mut pod| {
            if let Value::Object(fields) = &mut pod {
                fields.entry("apiVersion").or_insert_with(|| "v1".into());
                fields.entry("kind").or_insert_with(|| "Pod".into());
            }
            serde_json::to_string(&pod).expect("JSON values always serialize")
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_gives_one_manifest_per_item_with_its_kind() {
        let list = "kind: PodList\napiVersion: v1\nitems:\n- metadata: {name: a}\n- metadata: {name: b}\n";
        let items = split(list.as_bytes()).unwrap();
        assert_eq!(items.len(), 2);
        assert!(items[0].contains("\"kind\":\"Pod\"") && items[0].contains("\"apiVersion\":\"v1\""));
        assert_eq!(split(b"  \n"), Err(ListError::Empty));
        assert_eq!(split(br#"{"kind": "PodList", "apiVersion": "v1", "items": []}"#), Ok(vec![]));
        assert_eq!(split(b"kind: Deployment\n"), Err(ListError::WrongKind("Deployment".into())));
        assert_eq!(split(b"kind: List\nitems: 3\n"), Err(ListError::ItemsNotAList));
        assert_eq!(split(b"metadata: {}\n"), Err(ListError::NoKind));
    }

    #[test]
    fn a_body_is_read_in_every_encoding_a_manifest_file_may_use() {
        let list = "kind: PodList\napiVersion: v1\nitems:\n- metadata: {name: a}\n- metadata: {name: b}\n";
        let utf8 = split(list.as_bytes()).unwrap();
        let bom: Vec<u8> = "\u{feff}".bytes().chain(list.bytes()).collect();
        let le: Vec<u8> = [0xff, 0xfe].into_iter().chain(list.encode_utf16().flat_map(u16::to_le_bytes)).collect();
        let be: Vec<u8> = [0xfe, 0xff].into_iter().chain(list.encode_utf16().flat_map(u16::to_be_bytes)).collect();
        for body in [bom, le, be] {
            assert_eq!(split(&body).unwrap(), utf8);
        }
        let ListError::Syntax(message) = split(b"kind: \xff\n").unwrap_err() else { panic!("not a syntax error") };
        assert_eq!(message, "1:7: not valid UTF-8");
    }
}
