//! The layout of a plugin artifact.
//!
//! Pushed as the CNCF TAG Runtime's "Wasm OCI Artifact layout" gives it, which `wkg` and
//! wasmCloud's `wash` push too: an OCI image manifest whose config has the media type
//! [`WASM_CONFIG`] (the component's imports and exports, `os: wasip2`) and one layer,
//! [`WASM_LAYER`], the component itself. On pull, Kubewarden's older pair
//! ([`LEGACY_WASM_CONFIG`], [`LEGACY_WASM_LAYER`]) is accepted as well; anything else, or more
//! than one layer, is refused as the spec says a consumer should.

use serde::{Deserialize, Serialize};

/// An OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// A Docker v2 manifest (cosign writes signatures in it when asked to).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The config of a Wasm artifact (the CNCF layout).
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// The component layer (the CNCF layout).
pub const WASM_LAYER: &str = "application/wasm";
/// The config of Kubewarden's and wasm-to-oci's artifacts.
pub const LEGACY_WASM_CONFIG: &str = "application/vnd.wasm.config.v1+json";
/// The module layer of Kubewarden's and wasm-to-oci's artifacts.
pub const LEGACY_WASM_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// A cosign signature's payload layer.
pub const COSIGN_PAYLOAD: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation of a cosign payload layer that holds the base64 signature.
pub const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// A manifest, as far as a plugin artifact or a cosign signature needs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`OCI_MANIFEST`] or [`DOCKER_MANIFEST`]; optional in OCI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers.
    pub layers: Vec<Descriptor>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// A reference to a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the blob is.
    pub media_type: String,
    /// `sha256:...`.
    pub digest: String,
    /// Its length in bytes.
    pub size: u64,
    /// Free-form annotations (a cosign signature's lives here).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl Descriptor {
    fn of(media_type: &str, blob: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest: crate::sha256_digest(blob),
            size: blob.len() as u64,
            annotations: Default::default(),
        }
    }
}

/// Parses a manifest.
///
/// # Errors
///
/// Not JSON, not schema version 2, or not an image manifest (an index, say).
pub fn parse(manifest: &[u8]) -> Result<Manifest, String> {
    let parsed: Manifest = serde_json::from_slice(manifest).map_err(|e| format!("the manifest is not an image manifest: {e}"))?;
    if parsed.schema_version != 2 {
        return Err(format!("the manifest has schemaVersion {}, not 2", parsed.schema_version));
    }
    if let Some(other) = parsed.media_type.as_deref().filter(|t| ![OCI_MANIFEST, DOCKER_MANIFEST].contains(t)) {
        return Err(format!("the manifest is a {other}, not an image manifest"));
    }
    Ok(parsed)
}

/// The component layer of a plugin artifact's manifest.
///
/// # Errors
///
/// The manifest is not a Wasm artifact's: another config type, no layer or more than one, or a
/// layer that is not a component.
pub fn component_layer(manifest: &[u8]) -> Result<Descriptor, String> {
    let manifest = parse(manifest)?;
    let config = manifest.config.media_type.as_str();
    if ![WASM_CONFIG, LEGACY_WASM_CONFIG].contains(&config) {
        return Err(format!("its config is a {config}, not {WASM_CONFIG} (is it a container image?)"));
    }
    let [layer] = &manifest.layers[..] else {
        return Err(format!("it has {} layers; a plugin artifact has exactly one, the component", manifest.layers.len()));
    };
    if ![WASM_LAYER, LEGACY_WASM_LAYER].contains(&layer.media_type.as_str()) {
        return Err(format!("its layer is a {}, not {WASM_LAYER}", layer.media_type));
    }
    Ok(layer.clone())
}

/// The config blob of a plugin artifact, as the CNCF layout gives it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Config<'a> {
    created: &'a str,
    architecture: &'static str,
    os: &'static str,
    /// Makes every config, and so its digest, unique to its component.
    layer_digests: [&'a str; 1],
    component: Component,
}

/// What a component imports and exports, by name.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
struct Component {
    exports: Vec<String>,
    imports: Vec<String>,
}

/// The blobs of a plugin artifact made from a component.
#[derive(Debug, Clone)]
pub struct Built {
    /// The config blob.
    pub config: Vec<u8>,
    /// The component, the one layer.
    pub wasm: Vec<u8>,
    /// The manifest, as pushed (its digest is the artifact's).
    pub manifest: Vec<u8>,
}

/// Makes the artifact for `wasm`, created at `created` (RFC 3339).
///
/// # Errors
///
/// `wasm` is not a WebAssembly component (a core module, say, or not WebAssembly at all).
pub fn build(wasm: Vec<u8>, created: &str) -> Result<Built, String> {
    let component = interface(&wasm)?;
    let layer = Descriptor::of(WASM_LAYER, &wasm);
    let config = Config { created, architecture: "wasm", os: "wasip2", layer_digests: [&layer.digest], component };
    let config = serde_json::to_vec(&config).map_err(|e| e.to_string())?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_owned()),
        config: Descriptor::of(WASM_CONFIG, &config),
        layers: vec![layer],
        annotations: [("org.opencontainers.image.created".to_owned(), created.to_owned())].into(),
    };
    let manifest = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    Ok(Built { config, wasm, manifest })
}

/// The top-level imports and exports of a component (those of nested modules and components
/// are its own business).
fn interface(wasm: &[u8]) -> Result<Component, String> {
    let mut component = Component::default();
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| format!("not a WebAssembly component: {e}"))?;
        match payload {
            wasmparser::Payload::Version { encoding, .. } => {
                if depth == 0 && encoding != wasmparser::Encoding::Component {
                    return Err(
                        "a core WebAssembly module, not a component (build for wasm32-wasip2, or run `wasm-tools component new`)".into()
                    );
                }
                depth += 1;
            }
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentImportSection(imports) if depth == 1 => {
                for import in imports {
                    component.imports.push(import.map_err(|e| e.to_string())?.name.name.to_owned());
                }
            }
            wasmparser::Payload::ComponentExportSection(exports) if depth == 1 => {
                for export in exports {
                    component.exports.push(export.map_err(|e| e.to_string())?.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(component)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component: the preamble and nothing else.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";
    const CORE_MODULE: &[u8] = b"\0asm\x01\0\0\0";

    #[test]
    fn an_artifact_has_the_cncf_layout_and_its_one_layer_is_the_component() {
        let built = build(EMPTY_COMPONENT.to_vec(), "2026-12-06T00:00:00Z").unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&built.manifest).unwrap();
        assert_eq!(manifest["mediaType"], OCI_MANIFEST);
        assert_eq!(manifest["config"]["mediaType"], WASM_CONFIG);
        assert_eq!(manifest["config"]["digest"], crate::sha256_digest(&built.config));
        assert_eq!(manifest["layers"][0]["mediaType"], WASM_LAYER);
        assert_eq!(manifest["layers"][0]["digest"], crate::sha256_digest(EMPTY_COMPONENT));
        let config: serde_json::Value = serde_json::from_slice(&built.config).unwrap();
        assert_eq!((config["os"].as_str(), config["architecture"].as_str()), (Some("wasip2"), Some("wasm")));
        assert_eq!(config["layerDigests"][0], crate::sha256_digest(EMPTY_COMPONENT));
        assert_eq!(config["component"], serde_json::json!({"exports": [], "imports": []}));
        assert_eq!(component_layer(&built.manifest).unwrap().digest, crate::sha256_digest(EMPTY_COMPONENT));
    }

    #[test]
    fn only_a_component_is_pushed() {
        assert!(build(CORE_MODULE.to_vec(), "t").unwrap_err().contains("a core WebAssembly module"));
        assert!(build(b"#!/bin/sh\n".to_vec(), "t").unwrap_err().starts_with("not a WebAssembly component"));
    }

    #[test]
    fn kubewardens_media_types_are_read_and_images_and_extra_layers_are_refused() {
        let manifest = |config: &str, layers: &[&str]| {
            let layers: Vec<_> =
                layers.iter().map(|t| serde_json::json!({"mediaType": t, "digest": format!("sha256:{:064}", 1), "size": 1})).collect();
            serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "config": {"mediaType": config, "digest": format!("sha256:{:064}", 2), "size": 2}, "layers": layers}))
                .unwrap()
        };
        assert!(component_layer(&manifest(LEGACY_WASM_CONFIG, &[LEGACY_WASM_LAYER])).is_ok());
        let image =
            component_layer(&manifest("application/vnd.oci.image.config.v1+json", &["application/vnd.oci.image.layer.v1.tar+gzip"]));
        assert!(image.unwrap_err().contains("is it a container image?"));
        assert!(component_layer(&manifest(WASM_CONFIG, &[WASM_LAYER, WASM_LAYER])).unwrap_err().contains("2 layers"));
        assert!(component_layer(&manifest(WASM_CONFIG, &[])).unwrap_err().contains("0 layers"));
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(component_layer(index).is_err());
    }
}
