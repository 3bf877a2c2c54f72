//! The settings that shape the code wasmtime compiles. `build.rs` includes this file too and
//! precompiles the built-in policy with them: code compiled with any other setting would not
//! load into the agent's engine.

/// The engine's configuration, before any target is chosen.
pub(crate) fn engine_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    // Call deadlines interrupt guest code at epoch ticks.
    config.epoch_interruption(true);
    config
}
