//! A manifest URL's body as the HTTP source reads it: arbitrary bytes split into pods
//! (`staticlet_model::list::split`: one Pod, or a PodList or List of them, as the URL source
//! splits it), then each item loaded with `SourceKind::Http` as the desired stage loads a body's
//! items, including the error message that names the rejected item. The body comes from a remote server the node merely trusts, so
//! a hostile or broken server must not be able to panic the agent.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use staticlet_model::{NodeContext, Origin, SourceKind, list, load};

const NODE: &str = "fuzz-node";

fuzz_target!(|data: &[u8]| {
    let items = match list::split(data) {
        Ok(items) => items,
        Err(error) => {
            assert!(!error.to_string().is_empty(), "empty list error: {error:?}");
            return;
        }
    };
    let origin = Origin { kind: SourceKind::Http, uri: "http://fuzz.invalid/pods".into() };
    let node = NodeContext { node_name: NODE.into() };
    for (i, content) in items.iter().enumerate() {
        match load(content.as_bytes(), &origin, &node) {
            Ok(loaded) => {
                assert!(loaded.pod.name().ends_with(&format!("-{NODE}")), "name {:?} lacks the node suffix", loaded.pod.name());
                let source = loaded.pod.pod.metadata.annotations.as_ref().and_then(|a| a.get("kubernetes.io/config.source"));
                assert_eq!(source.map(String::as_str), Some("http"));
            }
            Err(error) => {
                let rendered = error.to_string();
                assert!(!rendered.is_empty(), "empty error: {error:?}");
                let item: Value = serde_json::from_str(content).unwrap_or(Value::Null);
                let name = item["metadata"]["name"].as_str().unwrap_or("<unnamed>");
                std::hint::black_box(format!("items[{i}] ({name}): {rendered}; the whole body is rejected"));
            }
        }
    }
});
