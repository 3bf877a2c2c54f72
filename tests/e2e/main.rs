//! End-to-end suites against a real Docker engine and the real `staticlet` binary.
//!
//! One test binary, one module per capability (ripgrep's habit). Every test gets its own node
//! name, manifest directory and `--root-dir`, so tests run side by side on one engine without
//! seeing each other's pods.

// Shared with the end-to-end benchmarks, which use helpers the tests do not.
#[allow(dead_code)]
mod support;

// The core agent: manifest directory → reconcile → Docker (issue 2).
mod core;

// Drop-in on real nodes: hostnames, YAML as the kubelet reads it, missing paths and FIFOs,
// duplicate UIDs, deletionTimestamp, and a corpus of real manifests (issue 24).
mod fidelity;

// Image pull policies against a local registry (issue 2).
mod images;

// Private registries: node credentials, credential providers, the sandbox image (issue 26).
mod registries;

// Resource limits and security contexts (issue 3, point 4).
mod resources;

// Init containers, sidecars, probes, termination and the pod status (issue 3).
mod lifecycle;

// The admission chain and WebAssembly validators (issue 4).
mod admission;

// Plugins from registries: push, pull by digest, signatures, offline loads (issue 29).
mod plugin_registry;

// Hostile manifests: a generated corpus of bad inputs (issue 10).
mod hostile;

// Security: the API's socket, port and verbs; manifests kept inside --root-dir (issue 10).
mod security;

// Faults: engine restarts and absence, objects removed behind the agent's back, kill -9 in
// bursts of changes, torn state, an air-gapped node's pause image (issue 10).
mod faults;

// The local API with kubectl, the CLI, metrics and logs (issue 6).
mod observe;

// Manifest sources: the manifest URL, checkpoints (issue 5).
mod sources;

// Source plugins: the etcd source against a real etcd (issue 5).
mod source_plugins;

// Mirror pods on an API server: the API server test double, and a real cluster on request (issue 7).
mod mirror;

// The runtime conformance suite on Docker, the Podman adapter (issue 9) and containerd (issue 11).
mod conformance;

// Runtime classes: Docker and Podman side by side, misbehaving adapters (issue 9).
mod runtime_classes;

// The Debian package under systemd as PID 1 (issue 27).
mod systemd;

// Interactive access: exec, attach, port-forward, cp, and the kubelet port (issue 12).
mod interactive;

// The CRI runtime against a real containerd: pod IPs, logs, OOM kills, adoption (issue 11).
mod cri;

// Issue 28: a fleet fed by one etcd cluster over mutual TLS, at the size CI can hold (the
// `fleet` benchmark runs 20 nodes).
mod fleet;
