//! One wasmtime engine for every plugin, the linker that gives plugins their imports, the cache
//! of compiled code and the epoch ticker that enforces call deadlines.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use crate::bindings::v0_1_0;
use crate::cache::{CodeCache, Origin};
use crate::sandbox::State;

/// How often the epoch advances: the granularity of deadlines and of yields to the async
/// runtime while a guest computes.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The engine and everything shared by all plugins. Cloning shares it.
#[derive(Clone)]
pub struct PluginEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<State>,
    cache: Option<CodeCache>,
    node_name: Arc<str>,
}

impl std::fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginEngine").field("cache", &self.inner.cache.as_ref().map(|c| c.dir())).finish_non_exhaustive()
    }
}

impl PluginEngine {
    /// An engine for the plugins of the agent running pods for `node_name` (what the `host`
    /// interface's `node-name` answers), caching compiled code in `cache_dir` (none: compile on
    /// every load).
    ///
    /// # Errors
    ///
    /// Only if wasmtime cannot be set up on this machine, or the WASI imports cannot be linked.
    pub fn new(node_name: &str, cache_dir: Option<PathBuf>) -> wasmtime::Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        // WASI preview 2 and wasi:http: what the store grants decides what they can reach.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        // The `host` and `types` interfaces are shared by the three worlds of a version.
        v0_1_0::validator::AdmissionValidator::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        let ticker = engine.weak();
        std::thread::Builder::new().name("plugin-epoch".into()).spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
        let cache = cache_dir.map(|dir| CodeCache::new(dir, &engine));
        Ok(PluginEngine { inner: Arc::new(Inner { engine, linker, cache, node_name: node_name.into() }) })
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub(crate) fn node_name(&self) -> &Arc<str> {
        &self.inner.node_name
    }

    pub(crate) fn linker(&self) -> &Linker<State> {
        &self.inner.linker
    }

    /// Compiles `wasm`, or loads its code from the cache. CPU-bound: run it off the async
    /// runtime's threads.
    pub(crate) fn compile(&self, wasm: &[u8], digest: &str) -> wasmtime::Result<(Component, Origin)> {
        match &self.inner.cache {
            Some(cache) => cache.load(&self.inner.engine, wasm, digest),
            None => Ok((Component::new(&self.inner.engine, wasm)?, Origin::Compiled)),
        }
    }
}
