//! One wasmtime engine for every plugin, the linker that gives plugins their imports, the cache
//! of compiled code and the epoch ticker that enforces call deadlines.

use std::path::PathBuf;
use std::sync::Arc;
#[cfg(test)]
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use staticlet_oci::Artifacts;
use wasmtime::Engine;
use wasmtime::component::{Component, HasSelf, Linker};

use crate::bindings::{v0_1_0, v0_2_0};
use crate::cache::{self, CodeCache, Origin};
use crate::engine_config::engine_config;
use crate::sandbox::State;

/// How often the epoch advances: the granularity of deadlines and of yields to the async
/// runtime while a guest computes.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);
/// How often the epoch advances while the only calls in progress wait on their backend (a
/// source following a watch): such a call spends its life blocked in the host, so its deadline
/// is long and coarse, and a watching agent then wakes 4 times a second rather than 100.
pub(crate) const WAIT_TICK: Duration = Duration::from_millis(250);
/// How often an idle ticker wakes to see whether its engine is gone.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The engine and everything shared by all plugins. Cloning shares it.
#[derive(Clone)]
pub struct PluginEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<State>,
    cache: Option<CodeCache>,
    artifacts: Option<Arc<Artifacts>>,
    node_name: Arc<str>,
    ticker: Ticker,
}

/// The thread that advances the epoch every [`EPOCH_TICK`] while guest code runs, every
/// [`WAIT_TICK`] while calls only wait, and sleeps while none does: an idle agent's plugin host
/// then costs no wakeups (ticking all the time was about 0.3% of a core, most of an idle
/// agent's CPU).
struct Ticker {
    thread: std::thread::Thread,
    /// How many calls are running guest code.
    running: Arc<AtomicUsize>,
    /// How many calls are waiting on their backend.
    waiting: Arc<AtomicUsize>,
    /// How many times the epoch advanced, for the test that shows an idle engine does not tick.
    #[cfg(test)]
    ticks: Arc<AtomicU64>,
}

/// Keeps the epoch advancing while it lives: held around every entry into guest code.
pub(crate) struct GuestRunning {
    counter: Arc<AtomicUsize>,
}

impl Drop for GuestRunning {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How a call spends its time, which sets how fast the epoch must advance for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pace {
    /// Guest code computes: deadlines to [`EPOCH_TICK`].
    Computing,
    /// Guest code mostly waits in the host for its backend: deadlines to [`WAIT_TICK`].
    Waiting,
}

impl Ticker {
    fn start(engine: &Engine) -> std::io::Result<Ticker> {
        let running = Arc::new(AtomicUsize::new(0));
        let waiting = Arc::new(AtomicUsize::new(0));
        #[cfg(test)]
        let ticks = Arc::new(AtomicU64::new(0));
        let engine = engine.weak();
        let thread = {
            let (running, waiting) = (running.clone(), waiting.clone());
            #[cfg(test)]
            let ticks = ticks.clone();
            std::thread::Builder::new().name("plugin-epoch".into()).spawn(move || {
                while let Some(engine) = engine.upgrade() {
                    let period = if running.load(Ordering::Acquire) > 0 {
                        EPOCH_TICK
                    } else if waiting.load(Ordering::Acquire) > 0 {
                        WAIT_TICK
                    } else {
                        drop(engine);
                        // Woken at once by the next call (an unpark before the park is kept).
                        std::thread::park_timeout(IDLE_CHECK);
                        continue;
                    };
                    engine.increment_epoch();
                    #[cfg(test)]
                    ticks.fetch_add(1, Ordering::Relaxed);
                    drop(engine);
                    if period == EPOCH_TICK {
                        // Computing calls tick at a fixed pace: the unpark each new call sends
                        // must not shorten a tick (that would interrupt guests more often).
                        std::thread::sleep(period);
                    } else {
                        // A call that starts computing while the ticker keeps the slow pace
                        // wakes it, so its deadline ticks at once.
                        std::thread::park_timeout(period);
                    }
                }
            })?
        };
        Ok(Ticker {
            thread: thread.thread().clone(),
            running,
            waiting,
            #[cfg(test)]
            ticks,
        })
    }

    fn guest_running(&self, pace: Pace) -> GuestRunning {
        let counter = match pace {
            Pace::Computing => &self.running,
            Pace::Waiting => &self.waiting,
        };
        counter.fetch_add(1, Ordering::AcqRel);
        self.thread.unpark();
        GuestRunning { counter: counter.clone() }
    }
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
        Self::with_artifacts(node_name, cache_dir, None)
    }

    /// As [`PluginEngine::new`], with `artifacts` to load plugins named by an image
    /// ([`Code::Image`](crate::Code::Image)) from; without it such plugins fail to load.
    ///
    /// # Errors
    ///
    /// As [`PluginEngine::new`].
    pub fn with_artifacts(node_name: &str, cache_dir: Option<PathBuf>, artifacts: Option<Artifacts>) -> wasmtime::Result<Self> {
        let engine = Engine::new(&engine_config())?;
        let mut linker = Linker::new(&engine);
        // WASI preview 2 and wasi:http: what the store grants decides what they can reach.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        // The `host` and `types` interfaces are shared by the worlds of a version; each version
        // has its own (their names carry the version), so plugins of both load side by side.
        v0_1_0::validator::AdmissionValidator::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        v0_2_0::validator::AdmissionValidator::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        let ticker = Ticker::start(&engine)?;
        let cache = cache_dir.map(|dir| CodeCache::new(dir, &engine));
        let artifacts = artifacts.map(Arc::new);
        Ok(PluginEngine { inner: Arc::new(Inner { engine, linker, cache, artifacts, node_name: node_name.into(), ticker }) })
    }

    /// Keeps call deadlines ticking at `pace` until the returned guard drops: hold it while
    /// guest code runs.
    pub(crate) fn guest_running(&self, pace: Pace) -> GuestRunning {
        self.inner.ticker.guest_running(pace)
    }

    /// Where image plugins come from, if this engine loads any.
    pub(crate) fn artifacts(&self) -> Option<&Arc<Artifacts>> {
        self.inner.artifacts.as_ref()
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

    /// The code of `wasm`: `precompiled` when it fits this engine, else from the cache, else
    /// compiled now. CPU-bound: run it off the async runtime's threads.
    pub(crate) fn compile(&self, wasm: &[u8], digest: &str, precompiled: Option<&'static [u8]>) -> wasmtime::Result<(Component, Origin)> {
        if let Some(code) = precompiled {
            match cache::deserialize_builtin(&self.inner.engine, code) {
                Ok(component) => return Ok((component, Origin::Precompiled)),
                Err(e) => tracing::debug!("the built-in plugin's precompiled code does not fit this engine; compiling it: {e:#}"),
            }
        }
        let compiled = match &self.inner.cache {
            Some(cache) => cache.load(&self.inner.engine, wasm, digest),
            None => Ok((Component::new(&self.inner.engine, wasm)?, Origin::Compiled)),
        };
        if matches!(compiled, Ok((_, Origin::Compiled))) {
            cache::give_back_memory();
        }
        compiled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_advances_only_while_guest_code_runs() {
        let engine = PluginEngine::new("n1", None).unwrap();
        let ticks = || engine.inner.ticker.ticks.load(Ordering::Relaxed);
        std::thread::sleep(EPOCH_TICK * 10);
        assert_eq!(ticks(), 0, "an idle engine does not tick");
        let running = engine.guest_running(Pace::Computing);
        std::thread::sleep(EPOCH_TICK * 10);
        assert!(ticks() >= 3, "ticking while a guest runs: {}", ticks());
        drop(running);
        std::thread::sleep(EPOCH_TICK * 3);
        let stopped = ticks();
        std::thread::sleep(EPOCH_TICK * 10);
        assert_eq!(ticks(), stopped, "idle again once the call is over");

        // A call that waits on its backend keeps the slow pace: a few ticks a second.
        let waiting = engine.guest_running(Pace::Waiting);
        let before = ticks();
        std::thread::sleep(WAIT_TICK * 4 + WAIT_TICK / 2);
        let slow = ticks() - before;
        assert!((3..=6).contains(&slow), "{slow} ticks in 4.5 wait periods");
        drop(waiting);
    }

    #[test]
    fn the_built_in_policy_runs_the_code_the_build_compiled() {
        use crate::artifacts::{STATIC_POD_POLICY_PRECOMPILED, STATIC_POD_POLICY_WASM};
        let dir = tempfile::tempdir().unwrap();
        let engine = PluginEngine::new("n1", Some(dir.path().to_owned())).unwrap();
        let (_, origin) = engine.compile(STATIC_POD_POLICY_WASM, "policy", Some(STATIC_POD_POLICY_PRECOMPILED)).unwrap();
        assert_eq!(origin, Origin::Precompiled);
        assert_eq!(std::fs::read_dir(dir.path()).map_or(0, Iterator::count), 0, "nothing compiled, nothing cached");

        // Code that does not fit (here: not code at all) is compiled as any plugin is.
        let (_, origin) = engine.compile(STATIC_POD_POLICY_WASM, "policy", Some(b"not wasmtime code")).unwrap();
        assert_eq!(origin, Origin::Compiled);
    }
}
