//! Wires the stages together for `staticlet run`.

use std::sync::Arc;

use futures::future::join_all;
use staticlet_model::{NodeContext, SourceKind};
use staticlet_plugin::{Plugin, PluginEngine};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::admission::plugins::Validators;
use crate::api::credential::Credential;
use crate::api::{self, Api};
use crate::config::{Config, RunFlags};
use crate::desired::{self, DesiredSet, DesiredState};
use crate::events::Recorder;
use crate::metrics::{Instrumented, Metrics};
use crate::mirror::{Mirror, RegisterAs};
use crate::reconcile::container_action::Runner;
use crate::reconcile::{Context, Controller};
use crate::runtimes::Runtimes;
use crate::source::file::{FileSource, Fingerprint};
use crate::source::http::UrlSource;
use crate::source::plugin::PluginSource;
use crate::source::{Source, SourceSnapshot, checkpoint};
use crate::state::Layout;
use crate::status::{PluginRegistry, StatusStore};

/// Runs the agent on `runtimes` (`adapters` are the runtime-adapter plugins among them), with
/// its plugins in `engine`, mirror pods on `mirror`'s API server if given and `credential` for
/// the API's streaming verbs, until `shutdown` is cancelled. Pods keep running afterwards. With
/// `flags` (those `config` was resolved from), a plugin pin changed in the config file is
/// followed while the agent runs.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    config: &Config,
    flags: Option<RunFlags>,
    runtimes: Runtimes,
    adapters: Vec<Arc<Plugin>>,
    engine: PluginEngine,
    mirror: Option<Mirror>,
    credential: Credential,
    shutdown: CancellationToken,
) {
    announce(config, &runtimes);
    let node = NodeContext { node_name: config.node_name.clone() };
    let metrics = Metrics::new();
    let runtimes = runtimes.map(|runtime| Arc::new(Instrumented::new(runtime, metrics.clone())));
    let events = Recorder::new(&config.node_name);
    let status = StatusStore::default();
    let plugins = PluginRegistry::default();
    let (desired_tx, desired_rx) = watch::channel(Arc::default());
    let (restart_tx, restart_rx) = mpsc::unbounded_channel();

    let api = Arc::new(Api {
        status: status.clone(),
        events: events.clone(),
        metrics: metrics.clone(),
        runtimes: runtimes.clone(),
        plugins: plugins.clone(),
        restarts: restart_tx,
        shutdown: shutdown.clone(),
        credential,
    });
    let api_tasks = serve_api(config, mirror.as_ref().map(Mirror::client), api);
    // Mirror pods only read the desired set and the status store: nothing below waits for the
    // API server.
    let mirror = mirror.map(|mirror| spawn_mirror(mirror, config, &runtimes, desired_rx.clone(), &status, &events, &shutdown));
    let layout = Layout::new(&config.root_dir);
    let (credentials, credential_plugins) = credentials(config, &engine).await;
    // Pods whose calls failed on the old code converge on their next retry.
    let reloads = [
        reload_plugins(adapters, "runtime calls use the new code", &plugins, &shutdown),
        reload_plugins(credential_plugins, "credential lookups use the new code", &plugins, &shutdown),
    ];
    let ctx = reconcile_context(config, &runtimes, &layout, &status, &events, &metrics, credentials);

    // No pod is admitted, and so none started, before every validator has loaded (or failed
    // to, which its failure policy then covers).
    let (sources, validators) = load_plugins(config, &engine, &layout, &metrics, &plugins, runtimes.class_names()).await;
    let intake = Intake::start(sources, validators, node, events, metrics, desired_tx, &shutdown);
    let follow = tokio::spawn(follow_plugin_pins(flags, config.clone(), plugins.clone(), shutdown.clone()));
    let ready = tokio::spawn(notify_systemd(status, shutdown.clone()));
    Controller::new(ctx).run(desired_rx, restart_rx, shutdown).await;
    let _ = tokio::join!(intake.join(), join_all(api_tasks), join_all(reloads), ready, follow);
    if let Some(mirror) = mirror {
        let _ = mirror.await;
    }
    info!("staticlet stopped; pods are left running");
}

/// Reads the config file again whenever it changes (checked every second, as plugin files
/// are) and makes each image plugin whose `image:` or `signature:` is all that changed follow
/// its new image: a new pin reaches a running agent as a replaced `.wasm` does. Any other change
/// to the plugins is logged as taking a restart, as the kubelet's config does.
async fn follow_plugin_pins(flags: Option<RunFlags>, mut running: Config, plugins: PluginRegistry, shutdown: CancellationToken) {
    let Some(path) = flags.as_ref().and_then(|f| f.config.clone()) else { return };
    let flags = flags.expect("a config path comes with its flags");
    // The manifest files' identity (device, inode, size, both times): an edit in place, a
    // rename over the file or a copy that keeps the times all show.
    let stamp = |path: &std::path::Path| std::fs::metadata(path).ok().map(|meta| Fingerprint::of(&meta));
    let mut seen = stamp(&path);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(staticlet_plugin::reload::RELOAD_PERIOD) => {}
        }
        let now = stamp(&path);
        if now == seen {
            continue;
        }
        seen = now;
        let config = match Config::resolve(&flags) {
            Ok(config) => config,
            Err(e) => {
                warn!(file = %path.display(), "the config file changed but does not load, so nothing of it is applied: {e}");
                continue;
            }
        };
        let changes = crate::config::plugins::changes(&running, &config);
        for (name, image) in changes.images {
            if plugins.get(&name).is_some_and(|plugin| plugin.follow(image.clone())) {
                info!(plugin = %name, %image, "the config pins another image; loading it");
            }
        }
        for name in changes.others {
            warn!(plugin = %name, file = %path.display(), "plugin changed in the config file; restart the agent to apply it");
        }
        running = config;
    }
}

/// Starts the mirror stage; with `--register-node` it is told this host's address, kubelet
/// port and runtime, for the Node object it registers.
fn spawn_mirror(
    mirror: Mirror,
    config: &Config,
    runtimes: &Runtimes,
    desired: watch::Receiver<Arc<DesiredSet>>,
    status: &StatusStore,
    events: &Recorder,
    shutdown: &CancellationToken,
) -> JoinHandle<()> {
    info!(server = mirror.server(), register_node = config.register_node, "mirror pods on");
    let register = config.register_node.then(|| RegisterAs {
        node_ip: config.node_ip.clone(),
        kubelet_port: config.kubelet_server.as_ref().map(|server| server.address.port()),
        runtime: runtimes.default_runtime().clone(),
    });
    tokio::spawn(mirror.run(register, desired, status.clone(), events.clone(), shutdown.clone()))
}

/// What the pod workers share: the runtimes, this node, the state directory, and where they
/// report statuses, events and metrics.
fn reconcile_context(
    config: &Config,
    runtimes: &Runtimes,
    layout: &Layout,
    status: &StatusStore,
    events: &Recorder,
    metrics: &Metrics,
    credentials: staticlet_credentials::Credentials,
) -> Arc<Context> {
    Arc::new(Context {
        runtimes: runtimes.clone(),
        node: config.node_name.clone(),
        layout: layout.clone(),
        host_ip: config.node_ip.clone(),
        status: status.clone(),
        runner: Runner::default(),
        events: events.clone(),
        metrics: metrics.clone(),
        clock: staticlet_runtime::Clock::SYSTEM,
        credentials: Arc::new(credentials),
        sandbox_images: Default::default(),
    })
}

/// The node's registry credentials: the docker config file under `--root-dir` (and the
/// kubelet's other places), then the credential provider executables of the config, then its
/// credential-provider plugins (returned too, for listing and reloading).
async fn credentials(config: &Config, engine: &PluginEngine) -> (staticlet_credentials::Credentials, Vec<Arc<Plugin>>) {
    use staticlet_credentials::provider::Cached;
    let mut providers = exec_providers(config);
    let loaded = join_all(config.credential_plugins.iter().map(|c| Plugin::load(engine, c.spec.clone()))).await;
    let mut plugins = Vec::new();
    for (settings, plugin) in config.credential_plugins.iter().zip(loaded) {
        let plugin = Arc::new(plugin);
        let provider = staticlet_plugin::CredentialPlugin::new(plugin.clone());
        providers.push(Cached::new(Arc::new(provider), settings.match_images.clone(), settings.default_cache_duration));
        plugins.push(plugin);
    }
    (staticlet_credentials::Credentials::new(&config.root_dir, providers), plugins)
}

/// The store of plugins pulled from registries, under `--root-dir`; unless `offline`, what it
/// lacks is pulled with the node's credentials (its docker config files and credential provider
/// executables: a credential-provider plugin cannot be asked for the image it is itself pulled
/// from, so plugins are not).
pub fn plugin_artifacts(config: &Config, offline: bool) -> staticlet_oci::Artifacts {
    let store = staticlet_oci::Store::new(Layout::new(&config.root_dir).plugin_store());
    staticlet_oci::Artifacts::new(store, (!offline).then(|| plugin_registry(config)))
}

/// The registry client for plugins, with the node's credentials as [`plugin_artifacts`] says.
pub fn plugin_registry(config: &Config) -> staticlet_oci::Registry {
    let credentials = staticlet_credentials::Credentials::new(&config.root_dir, exec_providers(config));
    staticlet_oci::Registry::new(Arc::new(credentials))
}

/// The config's credential provider executables, each behind the kubelet's cache; one that
/// requires a service account token is left out (static pods have none).
pub fn exec_providers(config: &Config) -> Vec<staticlet_credentials::provider::Cached> {
    use staticlet_credentials::provider::{Cached, exec::ExecProvider};
    let mut providers = Vec::new();
    for (bin_dir, provider) in config.credential_providers.iter().flat_map(|c| c.providers.iter().map(move |p| (&c.bin_dir, p))) {
        if provider.requires_service_account {
            info!(provider = %provider.name, "credential provider requires a service account token, which static pods do not have; it is never asked");
            continue;
        }
        // Checked when the config was resolved: the executable is there.
        match ExecProvider::new(provider.clone(), bin_dir) {
            Ok(exec) => providers.push(Cached::new(Arc::new(exec), provider.match_images.clone(), provider.default_cache_duration)),
            Err(e) => error!("{e}"),
        }
    }
    providers
}

/// Lists `loaded` (runtime adapters, or credential providers) in `plugins` and reloads each
/// when its file changes, logging the `consequence`.
fn reload_plugins(
    loaded: Vec<Arc<Plugin>>,
    consequence: &'static str,
    plugins: &PluginRegistry,
    shutdown: &CancellationToken,
) -> JoinHandle<()> {
    plugins.register(loaded.iter().cloned());
    tokio::spawn(staticlet_plugin::reload::watch(loaded, consequence, watch::Sender::new(0), shutdown.clone()))
}

/// The tasks that turn manifests into the desired set: one per source, the desired stage, the
/// checkpoints of what it accepted, and the validators' reload loop.
struct Intake {
    sources: Vec<JoinHandle<()>>,
    desired: JoinHandle<()>,
    checkpoints: JoinHandle<()>,
    reload: JoinHandle<()>,
}

impl Intake {
    /// Starts the `sources`, feeding the desired stage for `node`, which admits pods through
    /// the `validators` (judging every pod again when they are reloaded) and publishes on
    /// `desired`.
    fn start(
        sources: Vec<Box<dyn Source>>,
        validators: Arc<Validators>,
        node: NodeContext,
        events: Recorder,
        metrics: Metrics,
        desired: watch::Sender<Arc<DesiredSet>>,
        shutdown: &CancellationToken,
    ) -> Intake {
        let checkpoints = sources.iter().filter_map(|source| Some((source.kind(), source.checkpoint()?.to_owned()))).collect();
        let (sources, source_rx) = crate::source::start(sources, &metrics, shutdown);
        let (accepted_tx, accepted_rx) = watch::channel(SourceSnapshot::default());
        let checkpoints = tokio::spawn(checkpoint::keep(accepted_rx, checkpoints, shutdown.clone()));
        let stage = DesiredState::new(node, validators.chain()).reporting_to(events, metrics);
        let generation = validators.generation();
        let reload = tokio::spawn(validators.watch(shutdown.clone()));
        let desired = tokio::spawn(desired::run(stage, source_rx, generation, desired, accepted_tx, shutdown.clone()));
        Intake { sources, desired, checkpoints, reload }
    }

    /// Waits for every task to end, which they do at shutdown.
    async fn join(self) {
        let _ = tokio::join!(join_all(self.sources), self.desired, self.checkpoints, self.reload);
    }
}

/// Logs what the agent is about to run.
fn announce(config: &Config, runtimes: &Runtimes) {
    info!(
        node = %config.node_name,
        manifests = %config.static_pod_path.display(),
        root_dir = %config.root_dir.display(),
        runtime_classes = ?runtimes.class_names(),
        default_runtime_class = %config.default_runtime_class,
        "staticlet starting"
    );
}

/// Loads the source plugins and the validators side by side, and lists them in `plugins`:
/// the sources of `config` (the directory, the URL, the plugins) and the validator chain.
async fn load_plugins(
    config: &Config,
    engine: &PluginEngine,
    layout: &Layout,
    metrics: &Metrics,
    plugins: &PluginRegistry,
    runtime_classes: Vec<String>,
) -> (Vec<Box<dyn Source>>, Arc<Validators>) {
    let (sources, validators) =
        tokio::join!(sources(config, engine, layout, metrics), Validators::load(engine, &config.validators, runtime_classes, metrics));
    plugins.register(sources.plugins.iter().cloned());
    plugins.register(validators.plugins().iter().cloned());
    (sources.all, Arc::new(validators))
}

/// The sources of `config`, and the plugins among them.
struct Sources {
    all: Vec<Box<dyn Source>>,
    plugins: Vec<Arc<Plugin>>,
}

/// The directory, the URL if one is given and every source plugin (loaded side by side), each
/// that lives elsewhere checkpointed under its name in `layout`.
async fn sources(config: &Config, engine: &PluginEngine, layout: &Layout, metrics: &Metrics) -> Sources {
    let mut all: Vec<Box<dyn Source>> =
        vec![Box::new(FileSource { path: config.static_pod_path.clone(), check_frequency: config.file_check_frequency })];
    if let Some(settings) = config.manifest_url.clone() {
        all.push(Box::new(UrlSource::new(settings, layout.checkpoint(&SourceKind::Http.to_string()))));
    }
    let plugin_sources = config.source_plugins.iter().map(|source| {
        let checkpoint = layout.checkpoint(&SourceKind::Plugin(source.spec.name.clone()).to_string());
        PluginSource::load(engine, source, checkpoint, metrics.clone())
    });
    let plugin_sources = join_all(plugin_sources).await;
    let plugins = plugin_sources.iter().map(|source| source.plugin().clone()).collect();
    all.extend(plugin_sources.into_iter().map(|source| Box::new(source) as Box<dyn Source>));
    Sources { all, plugins }
}

/// Serves the API on its socket, and on the read-only and kubelet ports when configured; a
/// listener that cannot be set up is logged, and pods are run regardless.
fn serve_api(config: &Config, api_server: Option<kube::Client>, api: Arc<Api>) -> Vec<JoinHandle<()>> {
    let socket = tokio::spawn({
        let (path, api) = (config.api_socket.clone(), api.clone());
        async move {
            if let Err(e) = api::serve_socket(path, api).await {
                error!("the API is not served on its socket: {e}; pods are run regardless");
            }
        }
    });
    let port = tokio::spawn({
        let (address, api) = (config.read_only_address, api.clone());
        async move {
            if let Some(address) = address
                && let Err(e) = api::serve_read_only_port(address, api).await
            {
                error!("the read-only port is not served: {e}; pods are run regardless");
            }
        }
    });
    let healthz = tokio::spawn({
        let (address, api) = (config.healthz_address, api.clone());
        async move {
            if let Some(address) = address
                && let Err(e) = api::healthz::serve_port(address, api).await
            {
                error!("healthz is not served: {e}; pods are run regardless");
            }
        }
    });
    let config = config.clone();
    let kubelet_port = tokio::spawn(async move { serve_kubelet_port(&config, api_server, api).await });
    vec![socket, port, healthz, kubelet_port]
}

/// Serves the kubelet port when configured. A port that cannot be set up (a bad certificate,
/// a port in use) is logged; pods are run regardless.
async fn serve_kubelet_port(config: &Config, api_server: Option<kube::Client>, api: Arc<Api>) {
    let Some(server) = config.kubelet_server.clone() else { return };
    let layout = Layout::new(&config.root_dir);
    let names = api::kubelet::tls::serving_names(&config.node_name, &config.node_ip);
    let tls = match api::kubelet::tls::server_config(
        server.tls_pair.as_ref(),
        &layout.serving_pair(),
        &names,
        server.client_ca_file.as_deref(),
    ) {
        Ok(tls) => tls,
        Err(e) => return error!("the kubelet port is not served: {e}; pods are run regardless"),
    };
    let gate = api::kubelet::auth::Gate::new(
        api.credential.clone(),
        api_server,
        server.token_webhook,
        server.authorization,
        config.node_name.clone(),
    );
    if let Err(e) = api::kubelet::serve(server.address, tls, gate, api).await {
        error!("the kubelet port is not served: {e}; pods are run regardless");
    }
}

/// Tells systemd (a `Type=notify` unit) that the agent is ready once its first manifests are
/// admitted and handed to the pod workers, and that it is stopping when it is. Under
/// `WatchdogSec=` it pings the watchdog twice a period while the controller's loop goes round
/// (`/healthz`'s syncloop check), so systemd restarts an agent that is stuck. Outside systemd
/// (no `NOTIFY_SOCKET`) this does nothing.
async fn notify_systemd(status: StatusStore, shutdown: CancellationToken) {
    use sd_notify::NotifyState;
    let watchdog = watchdog_period();
    if let Some(period) = watchdog {
        info!(period = ?period, "pinging systemd's watchdog while the sync loop goes round");
    }
    let pings = {
        let sync_loop = status.sync_loop.clone();
        async move {
            let Some(period) = watchdog else { return std::future::pending().await };
            let mut ticks = tokio::time::interval(period / 2);
            loop {
                ticks.tick().await;
                match sync_loop.check() {
                    Ok(()) => {
                        let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
                    }
                    Err(why) => warn!("not pinging systemd's watchdog: {why}"),
                }
            }
        }
    };
    let lifecycle = async {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = status.wait_ready() => {}
        }
        if let Err(e) = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status("running static pods")]) {
            warn!("cannot tell systemd the agent is ready: {e}");
        }
        shutdown.cancelled().await;
    };
    tokio::select! {
        () = lifecycle => {}
        () = pings => {}
    }
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
}

/// systemd's watchdog period for this process (`WATCHDOG_USEC`, for `WATCHDOG_PID` if set).
fn watchdog_period() -> Option<std::time::Duration> {
    let mut usec = 0;
    (sd_notify::watchdog_enabled(false, &mut usec) && usec > 0).then(|| std::time::Duration::from_micros(usec))
}
