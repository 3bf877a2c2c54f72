//! One loaded plugin: its pre-linked component, a warm instance, hot reload, and the calls of
//! its kind.
//!
//! A plugin runs at most [`Limits::concurrency`](crate::Limits::concurrency) calls at once, each
//! on an instance of its own; instances are kept warm between calls and keep their state. With
//! the default of one, as validators and sources have, calls are serialized on a single warm
//! instance. A call that traps, runs past its deadline or past the memory cap discards its
//! instance (a trapped instance cannot be entered again); the next call instantiates afresh
//! from the `InstancePre` and runs `init` again. A plugin that never loaded answers every call with the
//! error that kept it from loading, so a caller cannot mistake it for a plugin with nothing to
//! say.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use tracing::{info, warn};
use wasmtime::Store;
use wasmtime::component::Component;

use crate::bindings::{v0_1_0, v0_2_0};
use crate::cache::Origin;
use crate::engine::{Pace, PluginEngine};
use crate::sandbox::{DeadlineExceeded, MemoryLimitExceeded, State, new_store};
use crate::spec::{Code, Kind, PluginSpec};
use staticlet_credentials::provider::{CacheKeyType, Provided};
use staticlet_oci::ArtifactError;
use staticlet_runtime::RegistryAuth;

use crate::{PluginError, PodContext, Verdict, Violation};

/// Slack on top of a call's deadline for the timer that bounds async host calls; the epoch
/// deadline ends guest code first.
const TIMER_SLACK: Duration = Duration::from_millis(50);

/// How a plugin is doing, for `staticlet plugins` and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Loaded, and its last call (if any) succeeded.
    Ready,
    /// Loaded, but its last call failed; the next call gets a fresh instance.
    Degraded(String),
    /// Never loaded: every call fails with this.
    Failed(String),
}

/// What a plugin is, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The config's name for it.
    pub name: String,
    /// Its kind.
    pub kind: Kind,
    /// Its file, or `builtin:<name>`.
    pub code: String,
    /// The WIT package version it was built against, once loaded.
    pub wit_version: Option<String>,
    /// The SHA-256 of the component in use.
    pub digest: Option<String>,
    /// For an image plugin, the reference pinned to the artifact in use:
    /// `registry/repository[:tag]@sha256:...`.
    pub image: Option<String>,
    /// How it is doing.
    pub health: Health,
    /// Calls made into it since the agent started, `init` excluded.
    pub calls: u64,
    /// How many of those failed (its own error, a trap, a deadline, the memory cap).
    pub failed_calls: u64,
}

/// What [`Plugin::refresh`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// The code in use is still current.
    Unchanged,
    /// New code was loaded and is used from the next call on.
    Loaded {
        /// Its SHA-256.
        digest: String,
        /// Where its compiled code came from.
        origin: Origin,
    },
    /// New code could not be loaded; the code loaded before, if any, stays in use.
    Failed(PluginError),
}

/// The WIT versions this host loads, newest first.
const VERSIONS: [&str; 2] = [v0_2_0::VERSION, v0_1_0::VERSION];

/// A plugin's own error, whichever WIT version it was built against.
pub(crate) struct GuestError {
    code: String,
    message: String,
}

impl From<v0_1_0::types::Error> for GuestError {
    fn from(e: v0_1_0::types::Error) -> Self {
        GuestError { code: e.code, message: e.message }
    }
}

impl From<v0_2_0::types::Error> for GuestError {
    fn from(e: v0_2_0::types::Error) -> Self {
        GuestError { code: e.code, message: e.message }
    }
}

/// A linked component of one kind and WIT version; the digit is the minor version.
enum Pre {
    Validator1(v0_1_0::validator::AdmissionValidatorPre<State>),
    Validator2(v0_2_0::validator::AdmissionValidatorPre<State>),
    Source1(v0_1_0::source::ManifestSourcePre<State>),
    Source2(v0_2_0::source::ManifestSourcePre<State>),
    // Boxed: the runtime world has many exports, and so a large pre-instance.
    Runtime1(Box<v0_1_0::runtime::RuntimeAdapterPre<State>>),
    Runtime2(Box<v0_2_0::runtime::RuntimeAdapterPre<State>>),
    Credentials2(v0_2_0::credentials::CredentialProviderPre<State>),
}

/// An instance's exports, as [`Pre`].
pub(crate) enum Bound {
    Validator1(v0_1_0::validator::AdmissionValidator),
    Validator2(v0_2_0::validator::AdmissionValidator),
    Source1(v0_1_0::source::ManifestSource),
    Source2(v0_2_0::source::ManifestSource),
    Runtime1(Box<v0_1_0::runtime::RuntimeAdapter>),
    Runtime2(Box<v0_2_0::runtime::RuntimeAdapter>),
    Credentials2(v0_2_0::credentials::CredentialProvider),
}

struct Loaded {
    digest: String,
    /// For an image plugin: its reference pinned to the artifact loaded.
    image: Option<String>,
    wit_version: &'static str,
    pre: Pre,
}

struct Instance {
    loaded: Arc<Loaded>,
    store: Store<State>,
    bound: Bound,
}

/// What identifies the code last looked at, so unchanged code is not read again: a file's size,
/// times and inode, or the artifact digest an image stands for in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stamp {
    File { len: u64, modified: Option<SystemTime>, inode: u64, changed: i64 },
    Image(String),
}

impl Stamp {
    fn of(path: &std::path::Path) -> std::io::Result<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        Ok(Stamp::File {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: meta.ino(),
            changed: meta.ctime_nsec() + meta.ctime() * 1_000_000_000,
        })
    }
}

#[derive(Default)]
struct Current {
    loaded: Option<Arc<Loaded>>,
    load_error: Option<PluginError>,
    stamp: Option<Stamp>,
    last_call_error: Option<String>,
    calls: u64,
    failed_calls: u64,
}

/// A plugin, loaded or not.
pub struct Plugin {
    spec: PluginSpec,
    /// For an image plugin: the image it follows instead of its spec's, once the agent config's
    /// pin changed while the agent ran ([`Plugin::follow`]).
    followed: Mutex<Option<staticlet_oci::Image>>,
    engine: PluginEngine,
    current: Mutex<Current>,
    /// Warm instances not in a call.
    idle: Mutex<Vec<Instance>>,
    /// One permit per call that may run at once.
    slots: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("name", &self.spec.name).field("kind", &self.spec.kind).finish_non_exhaustive()
    }
}

impl Plugin {
    /// Loads `spec`'s plugin: reads, compiles (or takes from the cache), links and initializes
    /// it. A plugin that fails to load is still returned, [`Health::Failed`], answering every
    /// call with the error; [`Plugin::refresh`] loads it once its file is fixed.
    pub async fn load(engine: &PluginEngine, spec: PluginSpec) -> Plugin {
        let slots = tokio::sync::Semaphore::new(spec.limits.concurrency.max(1));
        let plugin =
            Plugin { spec, followed: Mutex::default(), engine: engine.clone(), current: Mutex::default(), idle: Mutex::default(), slots };
        match plugin.refresh().await {
            Refresh::Failed(e) => warn!(plugin = %plugin.spec.name, "{e}"),
            Refresh::Loaded { digest, origin } => {
                info!(plugin = %plugin.spec.name, kind = %plugin.spec.kind, code = %plugin.spec.code, digest = %short(&digest), %origin, "plugin loaded")
            }
            Refresh::Unchanged => {}
        }
        plugin
    }

    /// The spec it was loaded from.
    pub fn spec(&self) -> &PluginSpec {
        &self.spec
    }

    /// Makes an image plugin follow `image` from now on (its next refresh loads it): the agent
    /// config's `image:` or `signature:` changed while the agent ran. Returns whether it is an
    /// image plugin; a file or built-in plugin is left as it is.
    pub fn follow(&self, image: staticlet_oci::Image) -> bool {
        if !matches!(self.spec.code, Code::Image(_)) {
            return false;
        }
        *self.followed.lock().expect("plugin follow lock") = Some(image);
        true
    }

    /// Its name, kind, code, version and health.
    pub fn info(&self) -> PluginInfo {
        let current = self.current.lock().expect("plugin state lock");
        let health = match (&current.loaded, &current.load_error, &current.last_call_error) {
            (None, Some(e), _) => Health::Failed(e.to_string()),
            (None, None, _) => Health::Failed("not loaded".into()),
            (Some(_), _, Some(e)) => Health::Degraded(e.clone()),
            (Some(_), _, None) => Health::Ready,
        };
        PluginInfo {
            name: self.spec.name.clone(),
            kind: self.spec.kind,
            code: self.spec.code.to_string(),
            wit_version: current.loaded.as_ref().map(|l| l.wit_version.to_owned()),
            digest: current.loaded.as_ref().map(|l| l.digest.clone()),
            image: current.loaded.as_ref().and_then(|l| l.image.clone()),
            health,
            calls: current.calls,
            failed_calls: current.failed_calls,
        }
    }

    /// Loads the plugin's code again if its file changed (for an image, if the digest it stands
    /// for changed, or it was not loaded yet). Code that fails to load leaves the code loaded
    /// before in use; the same failure is reported once, not on every refresh.
    pub async fn refresh(&self) -> Refresh {
        let mut image = None;
        let (wasm, stamp, precompiled) = match &self.spec.code {
            Code::Image(configured) => match self.fetch(&self.image(configured)).await {
                Ok(None) => return Refresh::Unchanged,
                Ok(Some((artifact, stamp))) => {
                    image = Some(artifact.reference);
                    (artifact.wasm, Some(stamp), None)
                }
                Err(failure) => return failure,
            },
            Code::Builtin { wasm, precompiled, .. } => {
                if self.current.lock().expect("plugin state lock").loaded.is_some() {
                    return Refresh::Unchanged;
                }
                (wasm.to_vec(), None, *precompiled)
            }
            Code::File(path) => {
                let read = Stamp::of(path).and_then(|stamp| {
                    if self.current.lock().expect("plugin state lock").stamp.as_ref() == Some(&stamp) {
                        return Ok(None);
                    }
                    Ok(Some((std::fs::read(path)?, stamp)))
                });
                match read {
                    Ok(None) => return Refresh::Unchanged,
                    Ok(Some((wasm, stamp))) => (wasm, Some(stamp), None),
                    Err(e) => {
                        let error =
                            PluginError::Read { plugin: self.spec.name.clone(), code: self.spec.code.to_string(), message: e.to_string() };
                        return self.record_failure(error, None);
                    }
                }
            }
        };
        let digest = hex::encode(Sha256::digest(&wasm));
        if self.current.lock().expect("plugin state lock").loaded.as_ref().is_some_and(|l| l.digest == digest) {
            self.current.lock().expect("plugin state lock").stamp = stamp;
            return Refresh::Unchanged;
        }
        let engine = self.engine.clone();
        let compiled = {
            let digest = digest.clone();
            tokio::task::spawn_blocking(move || engine.compile(&wasm, &digest, precompiled)).await
        };
        let (component, origin) = match compiled {
            Ok(Ok(compiled)) => compiled,
            Ok(Err(e)) => return self.record_failure(self.compile_error(e), stamp),
            Err(e) => return self.record_failure(self.compile_error(wasmtime::Error::msg(e.to_string())), stamp),
        };
        let loaded = match self.link(&component, digest.clone(), image) {
            Ok(loaded) => Arc::new(loaded),
            Err(message) => {
                let error = PluginError::Link { plugin: self.spec.name.clone(), code: self.spec.code.to_string(), message };
                return self.record_failure(error, stamp);
            }
        };
        // A fresh instance runs `init` now, so bad settings show at load rather than at the
        // first pod, and the first call finds a warm instance.
        match self.instantiate(loaded.clone()).await {
            Ok(instance) => *self.idle.lock().expect("plugin instances lock") = vec![instance],
            Err(e) => return self.record_failure(e, stamp),
        }
        let mut current = self.current.lock().expect("plugin state lock");
        current.loaded = Some(loaded);
        current.load_error = None;
        current.last_call_error = None;
        current.stamp = stamp;
        Refresh::Loaded { digest, origin }
    }

    /// The image an image plugin stands for now: the one it was told to follow, else its spec's.
    fn image(&self, configured: &staticlet_oci::Image) -> staticlet_oci::Image {
        self.followed.lock().expect("plugin follow lock").clone().unwrap_or_else(|| configured.clone())
    }

    /// An image plugin's artifact from the engine's store (pulled if the store lacks it), unless
    /// the digest its reference stands for is the one looked at last. A refused artifact is
    /// stamped too, so it is not read and refused again every second; one that could not be had
    /// (not pulled yet, the registry away) is asked for again at the next refresh, which the
    /// store's back-off keeps from reaching the registry more than its schedule allows.
    async fn fetch(&self, image: &staticlet_oci::Image) -> Result<Option<(staticlet_oci::Artifact, Stamp)>, Refresh> {
        let failure = |message: String| PluginError::Artifact { plugin: self.spec.name.clone(), message };
        let Some(artifacts) = self.engine.artifacts() else {
            return Err(self.record_failure(failure(format!("{image}: this agent has no store for plugins from registries")), None));
        };
        let resolved = artifacts.current(image).map_err(|e| self.record_failure(failure(e.to_string()), None))?;
        let stamp = resolved.map(Stamp::Image);
        if stamp.is_some() && self.current.lock().expect("plugin state lock").stamp == stamp {
            return Ok(None);
        }
        match artifacts.fetch(image).await {
            Ok(artifact) => {
                let stamp = Stamp::Image(artifact.digest.clone());
                Ok(Some((artifact, stamp)))
            }
            Err(e @ (ArtifactError::NotStored { .. } | ArtifactError::Registry { .. } | ArtifactError::Io { .. })) => {
                Err(self.record_failure(failure(e.to_string()), None))
            }
            Err(refused) => Err(self.record_failure(failure(refused.to_string()), stamp)),
        }
    }

    fn compile_error(&self, e: wasmtime::Error) -> PluginError {
        PluginError::Compile { plugin: self.spec.name.clone(), code: self.spec.code.to_string(), message: format!("{e:#}") }
    }

    fn record_failure(&self, error: PluginError, stamp: Option<Stamp>) -> Refresh {
        let mut current = self.current.lock().expect("plugin state lock");
        if stamp.is_some() {
            current.stamp = stamp;
        }
        if current.load_error.as_ref() == Some(&error) {
            return Refresh::Unchanged;
        }
        current.load_error = Some(error.clone());
        Refresh::Failed(error)
    }

    /// Checks the component implements the configured kind at a WIT version this host knows,
    /// and resolves its imports.
    fn link(&self, component: &Component, digest: String, image: Option<String>) -> Result<Loaded, String> {
        let engine = self.engine.engine();
        let exports: Vec<String> = component.component_type().exports(engine).map(|(name, _)| name.to_owned()).collect();
        let wanted = interface(self.spec.kind);
        let mut wit_version = None;
        for name in &exports {
            let Some((iface, version)) = name.strip_prefix("staticlet:plugin/").and_then(|rest| rest.split_once('@')) else { continue };
            if iface == wanted {
                let known = VERSIONS.iter().find(|known| **known == version).ok_or_else(|| {
                    format!(
                        "was built against staticlet:plugin@{version}; this agent loads plugins built against {}",
                        VERSIONS.join(" or ")
                    )
                })?;
                wit_version = Some(*known);
            } else if let Some(kind) = KINDS.into_iter().find(|k| interface(*k) == iface) {
                return Err(format!("is {} plugin, but the config says kind: {}", kind.with_article(), self.spec.kind));
            }
        }
        let Some(wit_version) = wit_version else {
            return Err(format!(
                "does not implement the {} world of staticlet:plugin@{}: it exports {}",
                self.spec.kind,
                VERSIONS.join(" or "),
                if exports.is_empty() { "nothing".to_owned() } else { exports.join(", ") }
            ));
        };
        let pre = self
            .engine
            .linker()
            .instantiate_pre(component)
            .map_err(|e| format!("imports what the agent does not provide to plugins: {e:#}"))?;
        let latest = wit_version == v0_2_0::VERSION;
        let pre = match (self.spec.kind, latest) {
            (Kind::AdmissionValidator, false) => v0_1_0::validator::AdmissionValidatorPre::new(pre).map(Pre::Validator1),
            (Kind::AdmissionValidator, true) => v0_2_0::validator::AdmissionValidatorPre::new(pre).map(Pre::Validator2),
            (Kind::ManifestSource, false) => v0_1_0::source::ManifestSourcePre::new(pre).map(Pre::Source1),
            (Kind::ManifestSource, true) => v0_2_0::source::ManifestSourcePre::new(pre).map(Pre::Source2),
            (Kind::RuntimeAdapter, false) => v0_1_0::runtime::RuntimeAdapterPre::new(pre).map(|pre| Pre::Runtime1(Box::new(pre))),
            (Kind::RuntimeAdapter, true) => v0_2_0::runtime::RuntimeAdapterPre::new(pre).map(|pre| Pre::Runtime2(Box::new(pre))),
            (Kind::CredentialProvider, true) => v0_2_0::credentials::CredentialProviderPre::new(pre).map(Pre::Credentials2),
            (Kind::CredentialProvider, false) => unreachable!("0.1.0 has no credentials interface to find"),
        }
        .map_err(|e| format!("does not match the {} world: {e:#}", self.spec.kind))?;
        Ok(Loaded { digest, image, wit_version, pre })
    }

    fn arm(store: &mut Store<State>, timeout: Duration) {
        store.data_mut().set_deadline(Instant::now() + timeout);
        store.set_epoch_deadline(1);
    }

    /// A fresh instance with `init` called.
    async fn instantiate(&self, loaded: Arc<Loaded>) -> Result<Instance, PluginError> {
        const CALL: &str = "init";
        let mut store = new_store(self.engine.engine(), self.engine.node_name().clone(), &self.spec).map_err(|e| PluginError::Link {
            plugin: self.spec.name.clone(),
            code: self.spec.code.to_string(),
            message: format!("cannot open a granted directory: {e:#}"),
        })?;
        let limit = self.spec.limits.call_timeout;
        let _ticking = self.engine.guest_running(Pace::Computing);
        Self::arm(&mut store, limit);
        let settings = self.spec.settings.as_str();
        let timeout = limit + TIMER_SLACK;
        // Instantiates a pre-instance and runs its `init`: the same steps for every kind and
        // version, on types that differ.
        macro_rules! bind {
            ($pre:expr, $bound:expr) => {{
                let bound = self.bounded(CALL, limit, tokio::time::timeout(timeout, $pre.instantiate_async(&mut store)).await)?;
                let init = tokio::time::timeout(timeout, bound.call_init(&mut store, settings)).await;
                (($bound)(bound), init.map(|called| called.map(|answer| answer.map_err(GuestError::from))))
            }};
        }
        let (bound, init) = match &loaded.pre {
            Pre::Validator1(pre) => bind!(pre, Bound::Validator1),
            Pre::Validator2(pre) => bind!(pre, Bound::Validator2),
            Pre::Source1(pre) => bind!(pre, Bound::Source1),
            Pre::Source2(pre) => bind!(pre, Bound::Source2),
            Pre::Runtime1(pre) => bind!(pre, |bound| Bound::Runtime1(Box::new(bound))),
            Pre::Runtime2(pre) => bind!(pre, |bound| Bound::Runtime2(Box::new(bound))),
            Pre::Credentials2(pre) => bind!(pre, Bound::Credentials2),
        };
        self.bounded(CALL, limit, init)?.map_err(|e| self.guest_error(CALL, e))?;
        Ok(Instance { loaded, store, bound })
    }

    /// Turns the outcome of a bounded call into the plugin's error: the deadline, the memory
    /// cap, or a trap.
    fn bounded<R>(
        &self,
        call: &'static str,
        timeout: Duration,
        outcome: Result<wasmtime::Result<R>, tokio::time::error::Elapsed>,
    ) -> Result<R, PluginError> {
        let plugin = self.spec.name.clone();
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Err(_) => Err(PluginError::Deadline { plugin, call, timeout }),
            Ok(Err(e)) if e.downcast_ref::<DeadlineExceeded>().is_some() => Err(PluginError::Deadline { plugin, call, timeout }),
            Ok(Err(e)) if e.downcast_ref::<MemoryLimitExceeded>().is_some() => {
                Err(PluginError::Memory { plugin, call, limit: self.spec.limits.memory_bytes })
            }
            Ok(Err(e)) => {
                let message = match e.downcast_ref::<wasmtime::Trap>() {
                    Some(trap) => trap.to_string(),
                    None => format!("{e:#}").lines().next().unwrap_or_default().to_owned(),
                };
                Err(PluginError::Trap { plugin, call, message })
            }
        }
    }

    fn guest_error(&self, call: &'static str, e: GuestError) -> PluginError {
        PluginError::Guest { plugin: self.spec.name.clone(), call, code: e.code, message: e.message }
    }

    /// A warm instance if one runs the current code, else a fresh one.
    async fn checkout(&self) -> Result<Instance, PluginError> {
        let loaded = {
            let current = self.current.lock().expect("plugin state lock");
            match (&current.loaded, &current.load_error) {
                (Some(loaded), _) => loaded.clone(),
                (None, Some(e)) => return Err(e.clone()),
                (None, None) => {
                    return Err(PluginError::Link {
                        plugin: self.spec.name.clone(),
                        code: self.spec.code.to_string(),
                        message: "is not loaded".into(),
                    });
                }
            }
        };
        let warm = {
            let mut idle = self.idle.lock().expect("plugin instances lock");
            idle.retain(|instance| Arc::ptr_eq(&instance.loaded, &loaded));
            idle.pop()
        };
        match warm {
            Some(instance) => Ok(instance),
            None => self.instantiate(loaded).await,
        }
    }

    fn note_call(&self, error: Option<&PluginError>) {
        let mut current = self.current.lock().expect("plugin state lock");
        current.calls += 1;
        current.failed_calls += u64::from(error.is_some());
        current.last_call_error = error.map(ToString::to_string);
    }

    /// Runs one export on a warm instance (or a fresh one), bounded by `timeout` and the
    /// memory cap; keeps the instance for a later call unless the call failed in a way that
    /// leaves it unusable.
    pub(crate) async fn call<T>(
        &self,
        call: &'static str,
        kind: Kind,
        timeout: Duration,
        export: impl for<'a> FnOnce(&'a Bound, &'a mut Store<State>) -> GuestCall<'a, T>,
    ) -> Result<T, PluginError> {
        self.call_at(Pace::Computing, call, kind, timeout, export).await
    }

    /// [`Plugin::call`] for a call that spends its time at `pace`.
    async fn call_at<T>(
        &self,
        pace: Pace,
        call: &'static str,
        kind: Kind,
        timeout: Duration,
        export: impl for<'a> FnOnce(&'a Bound, &'a mut Store<State>) -> GuestCall<'a, T>,
    ) -> Result<T, PluginError> {
        if self.spec.kind != kind {
            return Err(PluginError::WrongKind { plugin: self.spec.name.clone(), kind: self.spec.kind, call });
        }
        let _slot = self.slots.acquire().await.expect("the call semaphore is never closed");
        let result = async {
            let mut instance = self.checkout().await?;
            let _ticking = self.engine.guest_running(pace);
            Self::arm(&mut instance.store, timeout);
            let Instance { bound, store, .. } = &mut instance;
            let outcome = tokio::time::timeout(timeout + TIMER_SLACK, export(bound, store)).await;
            let answer = self.bounded(call, timeout, outcome)?;
            // The plugin answered, with a result or an error of its own: the instance is sound.
            self.idle.lock().expect("plugin instances lock").push(instance);
            answer.map_err(|e| self.guest_error(call, e))
        }
        .await;
        self.note_call(result.as_ref().err());
        result
    }

    /// Asks an admission validator about one pod (canonical JSON).
    ///
    /// # Errors
    ///
    /// Any [`PluginError`]: the plugin is not a validator or is not loaded, it returned its own
    /// error, or the call trapped, overran its deadline or its memory cap.
    pub async fn validate(&self, ctx: &PodContext, pod_json: &str) -> Result<Verdict, PluginError> {
        let (ctx, pod_json) = (ctx.clone(), pod_json.to_owned());
        self.call("validate", Kind::AdmissionValidator, self.spec.limits.call_timeout, |bound, store| {
            // The same call in each version, on its own types.
            macro_rules! validate {
                ($v:expr, $version:ident) => {{
                    use crate::bindings::$version::types::PodContext as WitContext;
                    let wit_ctx = WitContext { node_name: ctx.node_name, source: ctx.source, source_uri: ctx.source_uri };
                    let answer = $v.staticlet_plugin_validator().call_validate(store, &wit_ctx, &pod_json).await?;
                    Ok(answer
                        .map(|verdict| Verdict {
                            violations: verdict.violations.into_iter().map(|v| Violation { field: v.field, message: v.message }).collect(),
                            warnings: verdict.warnings,
                        })
                        .map_err(GuestError::from))
                }};
            }
            Box::pin(async move {
                match bound {
                    Bound::Validator1(v) => validate!(v, v0_1_0),
                    Bound::Validator2(v) => validate!(v, v0_2_0),
                    _ => Err(wasmtime::Error::msg("not a validator instance")),
                }
            })
        })
        .await
    }

    /// Polls a manifest source: `None` when nothing changed since its last successful poll,
    /// else its full set of manifests as (id, text).
    ///
    /// # Errors
    ///
    /// Any [`PluginError`], as for [`Plugin::validate`].
    pub async fn poll(&self) -> Result<Option<Vec<(String, String)>>, PluginError> {
        self.call("poll", Kind::ManifestSource, self.spec.limits.call_timeout, |bound, store| {
            // The same call in each version, on its own types.
            macro_rules! poll {
                ($s:expr) => {{
                    let answer = $s.staticlet_plugin_source().call_poll(store).await?;
                    Ok(answer
                        .map(|listed| listed.map(|list| list.into_iter().map(|m| (m.id, m.content)).collect()))
                        .map_err(GuestError::from))
                }};
            }
            Box::pin(async move {
                match bound {
                    Bound::Source1(s) => poll!(s),
                    Bound::Source2(s) => poll!(s),
                    _ => Err(wasmtime::Error::msg("not a source instance")),
                }
            })
        })
        .await
    }

    /// Whether the source can say when it changed ([`Plugin::wait_for_change`] returns early);
    /// a source built against WIT 0.1.0 cannot, and is polled at its interval.
    pub fn follows_changes(&self) -> bool {
        self.current.lock().expect("plugin state lock").loaded.as_ref().is_some_and(|l| matches!(l.pre, Pre::Source2(_)))
    }

    /// Waits until the source may have changed (`true`: poll it now) or `timeout` passed
    /// (`false`). The call may run for `timeout` and then its own deadline. A source that cannot
    /// follow its backend ([`Plugin::follows_changes`] is false) is not called: this sleeps the
    /// timeout. Dropping the future mid-wait ends the call and throws its instance away, so a
    /// reload or shutdown need not wait for it.
    ///
    /// # Errors
    ///
    /// Any [`PluginError`], as for [`Plugin::validate`]: typically the source's own error when
    /// it cannot follow its backend right now.
    pub async fn wait_for_change(&self, timeout: Duration) -> Result<bool, PluginError> {
        if !self.follows_changes() {
            tokio::time::sleep(timeout).await;
            return Ok(false);
        }
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let deadline = timeout + self.spec.limits.call_timeout;
        self.call_at(Pace::Waiting, "wait-for-change", Kind::ManifestSource, deadline, |bound, store| {
            Box::pin(async move {
                let Bound::Source2(s) = bound else { return Err(wasmtime::Error::msg("not a source instance that can wait")) };
                let answer = s.staticlet_plugin_source().call_wait_for_change(store, timeout_ms).await?;
                Ok(answer.map_err(GuestError::from))
            })
        })
        .await
    }

    /// Asks a credential provider for the logins to pull images of `repository`.
    ///
    /// # Errors
    ///
    /// Any [`PluginError`], as for [`Plugin::validate`].
    pub async fn provide(&self, repository: &str) -> Result<Provided, PluginError> {
        use v0_2_0::credentials::exports::staticlet::plugin::credentials::CacheKeyType as Key;
        let repository = repository.to_owned();
        self.call("provide", Kind::CredentialProvider, self.spec.limits.call_timeout, |bound, store| {
            Box::pin(async move {
                let Bound::Credentials2(p) = bound else { return Err(wasmtime::Error::msg("not a credential provider instance")) };
                let answer = p.staticlet_plugin_credentials().call_provide(store, &repository).await?;
                Ok(answer
                    .map(|c| Provided {
                        cache_key_type: match c.cache_key_type {
                            Key::Image => CacheKeyType::Image,
                            Key::Registry => CacheKeyType::Registry,
                            Key::Global => CacheKeyType::Global,
                        },
                        cache_duration: c.cache_duration_ms.map(Duration::from_millis),
                        auth: c.auths.into_iter().map(|a| (a.location, RegistryAuth::basic("", a.username, a.password))).collect(),
                    })
                    .map_err(GuestError::from))
            })
        })
        .await
    }
}

/// One call into a guest: a result, or the guest's own error, or a trap.
pub(crate) type GuestCall<'a, T> = std::pin::Pin<Box<dyn Future<Output = wasmtime::Result<Result<T, GuestError>>> + Send + 'a>>;

/// Every kind, to tell a component of another kind from one of no kind at all.
const KINDS: [Kind; 4] = [Kind::AdmissionValidator, Kind::ManifestSource, Kind::RuntimeAdapter, Kind::CredentialProvider];

/// The interface a kind's world exports.
fn interface(kind: Kind) -> &'static str {
    match kind {
        Kind::AdmissionValidator => "validator",
        Kind::ManifestSource => "source",
        Kind::RuntimeAdapter => "runtime",
        Kind::CredentialProvider => "credentials",
    }
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}
