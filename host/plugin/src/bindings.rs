//! Host bindings of every WIT version this host loads, one module per version (Zed's habit):
//! `v0_1_0` is `wit/since_v0.1.0` (frozen), `v0_2_0` is `wit/since_v0.2.0`. Each world's bindings share the `types` and `host`
//! interfaces, so the host implements them once.

/// `staticlet:plugin@0.1.0`.
pub(crate) mod v0_1_0 {
    /// The WIT version, as it appears in import and export names.
    pub(crate) const VERSION: &str = "0.1.0";

    #[allow(missing_docs)]
    pub(crate) mod validator {
        wasmtime::component::bindgen!({
            path: "../../wit/since_v0.1.0",
            world: "admission-validator",
            exports: { default: async },
        });
    }

    #[allow(missing_docs)]
    pub(crate) mod source {
        wasmtime::component::bindgen!({
            path: "../../wit/since_v0.1.0",
            world: "manifest-source",
            exports: { default: async },
            with: {
                "staticlet:plugin/types": super::validator::staticlet::plugin::types,
                "staticlet:plugin/host": super::validator::staticlet::plugin::host,
            },
        });
    }

    #[allow(missing_docs)]
    pub(crate) mod runtime {
        wasmtime::component::bindgen!({
            path: "../../wit/since_v0.1.0",
            world: "runtime-adapter",
            exports: { default: async },
            with: {
                "staticlet:plugin/types": super::validator::staticlet::plugin::types,
                "staticlet:plugin/host": super::validator::staticlet::plugin::host,
            },
        });
    }

    pub(crate) use validator::staticlet::plugin::{host, types};
}

/// `staticlet:plugin@0.2.0`: image pulls carry credentials, and the `credential-provider` world.
pub(crate) mod v0_2_0 {
    /// The WIT version, as it appears in import and export names.
    pub(crate) const VERSION: &str = "0.2.0";

    #[allow(missing_docs)]
    pub(crate) mod validator {
        wasmtime::component::bindgen!({
            path: "../../wit/since_v0.2.0",
            world: "admission-validator",
            exports: { default: async },
        });
    }

    #[allow(missing_docs)]
    pub(crate) mod source {
        wasmtime::component::bindgen!({
            path: "../../wit/since_v0.2.0",
            world: "manifest-source",
            exports: { default: async },
            with: {
                "staticlet:plugin/types": super::validator::staticlet::plugin::types,
                "staticlet:plugin/host": super::validator::staticlet::plugin::host,
            },
        });
    }

    #[allow(missing_docs)]
    pub(crate) mod runtime {
        wasmtime::component::bindgen!({
            path: "../../wit/since_v0.2.0",
            world: "runtime-adapter",
            exports: { default: async },
            with: {
                "staticlet:plugin/types": super::validator::staticlet::plugin::types,
                "staticlet:plugin/host": super::validator::staticlet::plugin::host,
            },
        });
    }

    #[allow(missing_docs)]
    pub(crate) mod credentials {
        wasmtime::component::bindgen!({
            path: "../../wit/since_v0.2.0",
            world: "credential-provider",
            exports: { default: async },
            with: {
                "staticlet:plugin/types": super::validator::staticlet::plugin::types,
                "staticlet:plugin/host": super::validator::staticlet::plugin::host,
            },
        });
    }

    pub(crate) use validator::staticlet::plugin::{host, types};
}
