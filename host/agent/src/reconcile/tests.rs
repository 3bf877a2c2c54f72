//! The controller on the in-memory runtime, on paused time: it starts a worker per wanted pod,
//! relists the runtime and pokes the workers whose pods changed, adopts what it finds of wanted
//! pods, removes what nobody wants only once every source is ready, reports a runtime it cannot
//! list, and hands restart requests to the pod's worker.

use std::collections::BTreeMap;
use std::sync::Arc;

use staticlet_model::StaticPod;
use staticlet_runtime::{LabelFilter, Runtime, RuntimeError};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Controller;
use super::testing::{Harness, IMAGE, app_pod, at};
use crate::desired::DesiredSet;
use crate::requests::RestartRequest;
use staticlet_runtime::labels::POD_UID;

/// The controller's inputs, as the daemon holds them.
struct Running {
    desired: watch::Sender<Arc<DesiredSet>>,
    restarts: mpsc::UnboundedSender<RestartRequest>,
    _shutdown: tokio_util::sync::DropGuard,
}

fn run(harness: &Harness) -> Running {
    let (desired, desired_rx) = watch::channel(Arc::new(DesiredSet::default()));
    let (restarts, restarts_rx) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    tokio::spawn(Controller::new(harness.ctx.clone()).run(desired_rx, restarts_rx, shutdown.clone()));
    Running { desired, restarts, _shutdown: shutdown.drop_guard() }
}

fn desired(ready: bool, pods: &[&Arc<StaticPod>]) -> Arc<DesiredSet> {
    let pods = pods.iter().map(|p| (p.uid.clone(), Arc::clone(p))).collect();
    Arc::new(DesiredSet { ready, pods, rejected: BTreeMap::new() })
}

/// The IDs and attempts of `pod`'s containers on the runtime.
async fn containers(harness: &Harness, pod: &StaticPod) -> Vec<(String, u32)> {
    let listed = harness.fake.list_containers(&LabelFilter::new(POD_UID, &pod.uid)).await.unwrap();
    let mut containers: Vec<_> = listed.into_iter().map(|c| (c.id, c.metadata.attempt)).collect();
    containers.sort_by_key(|(_, attempt)| *attempt);
    containers
}

#[tokio::test(start_paused = true)]
async fn wanted_pods_are_adopted_and_unknown_ones_removed_only_once_every_source_is_ready() {
    let harness = Harness::new(&[IMAGE]);
    // Left running by the agent before it restarted: one pod still wanted, one not.
    let (kept, orphan) = (app_pod("kept", ""), app_pod("orphan", ""));
    let kept_id = harness.start_objects(&kept).await;
    harness.start_objects(&orphan).await;
    let start = Instant::now();
    let controller = run(&harness);
    controller.desired.send_replace(desired(false, &[&kept]));
    at(start, 5.0).await;
    assert_eq!(harness.fake.sandbox_count(), 2, "nothing is removed while a source may still bring it back");
    assert_eq!(containers(&harness, &kept).await, [(kept_id.clone(), 0)], "adopted, not restarted");
    controller.desired.send_replace(desired(true, &[&kept]));
    at(start, 7.0).await;
    assert!(containers(&harness, &orphan).await.is_empty(), "removed once every source is read");
    assert_eq!(harness.fake.sandbox_count(), 1);
    assert_eq!(containers(&harness, &kept).await, [(kept_id, 0)]);
    assert!(harness.ctx.status.is_ready());
}

#[tokio::test(start_paused = true)]
async fn the_relist_sees_an_exit_and_pokes_the_pods_worker() {
    let harness = Harness::new(&[IMAGE]);
    let web = app_pod("web", "");
    let start = Instant::now();
    let controller = run(&harness);
    controller.desired.send_replace(desired(true, &[&web]));
    at(start, 0.5).await;
    assert_eq!(harness.fake.running_container_count(), 1);
    // The fake runtime streams no events: only the relist, every second, can see this.
    harness.fake.exit("app", 2);
    at(start, 1.9).await;
    assert_eq!(containers(&harness, &web).await.last().unwrap().1, 1, "restarted at the next relist");
    assert_eq!(harness.fake.running_container_count(), 1);
    // A pod taken out of the desired set is torn down.
    controller.desired.send_replace(desired(true, &[]));
    at(start, 2.5).await;
    assert_eq!(harness.fake.sandbox_count(), 0);
    assert!(harness.status(&web).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_runtime_that_cannot_be_listed_makes_the_agent_unready_until_it_answers() {
    let harness = Harness::new(&[IMAGE]);
    let start = Instant::now();
    let controller = run(&harness);
    controller.desired.send_replace(desired(true, &[]));
    at(start, 0.5).await;
    assert_eq!(harness.ctx.status.not_ready(), None);
    harness.fake.fail("list_containers", RuntimeError::Unavailable("socket gone".into()), None);
    at(start, 1.5).await;
    let why = harness.ctx.status.not_ready().expect("unready");
    assert_eq!(why, "runtime fake is unreachable: runtime unavailable: socket gone");
    // A pod added meanwhile runs as soon as the runtime answers.
    let web = app_pod("web", "");
    controller.desired.send_replace(desired(true, &[&web]));
    harness.fake.heal("list_containers");
    at(start, 3.5).await;
    assert_eq!(harness.ctx.status.not_ready(), None);
    assert_eq!(harness.fake.running_container_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn restart_requests_reach_the_pods_worker_or_say_why_not() {
    let harness = Harness::new(&[IMAGE]);
    let web = app_pod("web", "");
    let start = Instant::now();
    let controller = run(&harness);
    controller.desired.send_replace(desired(true, &[&web]));
    at(start, 0.5).await;
    let before = containers(&harness, &web).await;
    let ask = |uid: &str| {
        let (accepted, answer) = oneshot::channel();
        controller.restarts.send(RestartRequest { uid: uid.to_owned(), accepted }).unwrap();
        answer
    };
    assert_eq!(ask("no-such-uid").await.unwrap(), Err("the pod is not running here (rejected, or being removed)".to_owned()));
    assert_eq!(ask(&web.uid).await.unwrap(), Ok(()));
    at(start, 1.0).await;
    let after = containers(&harness, &web).await;
    assert_eq!(after.len(), 1);
    assert_ne!(after[0].0, before[0].0, "a new container");
    assert_eq!(after[0].1, 0, "restart counts from zero");
    assert!(harness.has_event("Restarting", "as requested"));
}
