//! Wires the stages together for `staticlet run`.

use std::sync::Arc;

use staticlet_model::NodeContext;
use staticlet_plugin::PluginEngine;
use staticlet_runtime::Runtime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::admission::plugins::Validators;
use crate::api;
use crate::config::Config;
use crate::desired::{self, DesiredState};
use crate::reconcile::handler::Runner;
use crate::reconcile::{Context, Controller};
use crate::source::SourceSnapshot;
use crate::source::file::FileSource;
use crate::state::Layout;
use crate::status::StatusStore;

/// Runs the agent on `runtime`, with its plugins in `engine`, until `shutdown` is cancelled.
/// Pods keep running afterwards.
pub async fn run(config: &Config, runtime: Arc<dyn Runtime>, engine: PluginEngine, shutdown: CancellationToken) {
    info!(
        node = %config.node_name,
        manifests = %config.static_pod_path.display(),
        root_dir = %config.root_dir.display(),
        runtime = runtime.name(),
        "staticlet starting"
    );
    let (source_tx, source_rx) = watch::channel(SourceSnapshot::default());
    let (desired_tx, desired_rx) = watch::channel(Arc::default());

    let file = FileSource { path: config.static_pod_path.clone(), check_frequency: config.file_check_frequency };
    let status = StatusStore::default();
    let api = tokio::spawn({
        let (path, status, shutdown) = (config.api_socket.clone(), status.clone(), shutdown.clone());
        async move {
            if let Err(e) = api::serve(path, status, shutdown).await {
                error!("the API is not served: {e}; pods are run regardless");
            }
        }
    });
    let ctx = Arc::new(Context {
        runtime,
        node: config.node_name.clone(),
        layout: Layout::new(&config.root_dir),
        host_ip: config.node_ip.clone(),
        status: status.clone(),
        runner: Runner::default(),
    });

    let source = tokio::spawn(file.run(source_tx, shutdown.clone()));
    // Sources and the API start first; no pod is admitted, and so none started, before every
    // validator has loaded (or failed to, which its failure policy then covers).
    let validators = Arc::new(Validators::load(&engine, &config.validators).await);
    let stage = DesiredState::new(NodeContext { node_name: config.node_name.clone() }, validators.chain());
    let generation = validators.generation();
    let reload = tokio::spawn(validators.watch(shutdown.clone()));
    let desired = tokio::spawn(desired::run(stage, source_rx, generation, desired_tx, shutdown.clone()));
    Controller::new(ctx).run(desired_rx, shutdown).await;
    let _ = tokio::join!(source, desired, api, reload);
    info!("staticlet stopped; pods are left running");
}
