//! The state of one plugin instance and the walls around it: a WASI context with nothing granted
//! but what the spec lists, a memory cap, and the deadline of the call in progress.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::egress::Egress;
use crate::spec::PluginSpec;

/// The most table elements an instance may hold; tables only hold function references, so this
/// is far above any real plugin's need and only stops runaway growth.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// What a store holds for one instance.
pub(crate) struct State {
    plugin: Arc<str>,
    node_name: Arc<str>,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    egress: Egress,
    table: ResourceTable,
    pub(crate) memory: MemoryCap,
    /// When the call in progress must end.
    deadline: Instant,
}

impl State {
    /// Sets when the call about to start must end, for guest code and outbound HTTP alike.
    pub(crate) fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
        self.egress.set_deadline(deadline);
    }
}

/// Marks an interruption by the call deadline, to tell it from other traps.
#[derive(Debug, thiserror::Error)]
#[error("the call's deadline passed")]
pub(crate) struct DeadlineExceeded;

/// Marks a refused memory growth, to tell it from other traps.
#[derive(Debug, thiserror::Error)]
#[error("memory limit exceeded")]
pub(crate) struct MemoryLimitExceeded;

/// Caps linear memory; growing past the cap traps with [`MemoryLimitExceeded`] rather than
/// returning -1, so a guest that ignores a failed `memory.grow` cannot limp on.
pub(crate) struct MemoryCap {
    limit: usize,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            return Err(wasmtime::Error::new(MemoryLimitExceeded));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// A store in `engine` for a fresh instance of `spec`'s plugin on the agent of `node_name`,
/// with its grants and limits in force.
///
/// # Errors
///
/// A granted directory that cannot be opened.
pub(crate) fn new_store(engine: &wasmtime::Engine, node_name: Arc<str>, spec: &PluginSpec) -> wasmtime::Result<Store<State>> {
    let mut wasi = WasiCtx::builder();
    // WASI's defaults already deny sockets and name lookups; saying so keeps it true if the
    // defaults ever change, since raw sockets would make the HTTP allow-list moot.
    wasi.allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
    for dir in &spec.grants.read_only_dirs {
        wasi.preopened_dir(&dir.host_path, &dir.guest_path, FsPerms::ReadOnly)?;
    }
    let state = State {
        plugin: spec.name.as_str().into(),
        node_name,
        wasi: wasi.build(),
        http: WasiHttpCtx::new(),
        egress: Egress::new(spec.name.clone(), spec.grants.http_hosts.clone(), spec.grants.unix_sockets.clone()),
        table: ResourceTable::new(),
        memory: MemoryCap { limit: usize::try_from(spec.limits.memory_bytes).unwrap_or(usize::MAX) },
        deadline: Instant::now(),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.memory);
    // Each epoch tick yields to the async runtime, so a busy guest never holds a worker thread
    // for long, and ends the call once its deadline has passed.
    store.epoch_deadline_callback(|store| {
        if Instant::now() >= store.data().deadline {
            return Err(wasmtime::Error::new(DeadlineExceeded));
        }
        Ok(UpdateDeadline::Yield(1))
    });
    Ok(store)
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.egress }
    }
}

/// The `host` interface of one WIT version: the same three calls in every version so far.
macro_rules! host_interface {
    ($version:ident) => {
        impl crate::bindings::$version::types::Host for State {}

        impl crate::bindings::$version::host::Host for State {
            fn log(&mut self, level: crate::bindings::$version::types::LogLevel, message: String) {
                use crate::bindings::$version::types::LogLevel;
                let plugin = &*self.plugin;
                match level {
                    LogLevel::Trace => tracing::trace!(plugin, "{message}"),
                    LogLevel::Debug => tracing::debug!(plugin, "{message}"),
                    LogLevel::Info => tracing::info!(plugin, "{message}"),
                    LogLevel::Warn => tracing::warn!(plugin, "{message}"),
                    LogLevel::Error => tracing::error!(plugin, "{message}"),
                }
            }

            fn plugin_name(&mut self) -> String {
                self.plugin.to_string()
            }

            fn node_name(&mut self) -> String {
                self.node_name.to_string()
            }
        }
    };
}

host_interface!(v0_1_0);
host_interface!(v0_2_0);
