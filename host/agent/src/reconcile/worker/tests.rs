//! The pod worker on the in-memory runtime, on paused time: each test drives one worker the way
//! the controller does (the wanted pod, a poke every relist period, restart requests) and checks
//! what the runtime holds, the status the worker published and the events it recorded.

use std::sync::Arc;
use std::time::Duration;

use staticlet_model::StaticPod;
use staticlet_runtime::ContainerState::{Exited, Running};
use staticlet_runtime::{ContainerState, LabelFilter, RegistryAuth, Runtime, RuntimeError};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Worker;
use crate::reconcile::RELIST_PERIOD;
use crate::reconcile::testing::{HANDLER, Harness, IMAGE, advance, app_pod, at};
use staticlet_runtime::labels::POD_UID;

/// Pod `web`, with `extra` fields for its container `app`.
fn web_pod(extra: &str) -> Arc<StaticPod> {
    app_pod("web", extra)
}

/// One worker and the handles the controller would hold.
struct Driven {
    wanted: watch::Sender<Option<Arc<StaticPod>>>,
    restart: Arc<Notify>,
    task: JoinHandle<()>,
}

/// Starts a worker for `pod`, poked every relist period as the controller's relist pokes a
/// worker whose pod changed (it only pokes on a change; a poke with no change costs one look).
fn drive(harness: &Harness, pod: &Arc<StaticPod>) -> Driven {
    let (wanted, rx) = watch::channel(Some(pod.clone()));
    let (poke, restart) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let runtime: Arc<dyn Runtime> = harness.fake.clone();
    let worker = Worker::new(pod.uid.clone(), HANDLER.into(), runtime, harness.ctx.clone(), rx, poke.clone(), restart.clone());
    let relist = poke.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RELIST_PERIOD).await;
            relist.notify_one();
        }
    });
    Driven { wanted, restart, task: tokio::spawn(worker.run()) }
}

/// The attempts of `pod`'s container `name` the runtime holds, with their states.
async fn attempts(harness: &Harness, pod: &StaticPod, name: &str) -> Vec<(u32, ContainerState)> {
    let containers = harness.fake.list_containers(&LabelFilter::new(POD_UID, &pod.uid)).await.unwrap();
    let mut attempts: Vec<_> = containers.into_iter().filter(|c| c.metadata.name == name).map(|c| (c.metadata.attempt, c.state)).collect();
    attempts.sort_by_key(|(attempt, _)| *attempt);
    attempts
}

/// The newest attempt of `pod`'s container `name`.
async fn latest(harness: &Harness, pod: &StaticPod, name: &str) -> u32 {
    attempts(harness, pod, name).await.last().expect("an instance").0
}

#[tokio::test(start_paused = true)]
async fn a_new_pod_is_started_and_its_status_published() {
    let harness = Harness::new(&[IMAGE]);
    let web = web_pod("");
    let _worker = drive(&harness, &web);
    advance(Duration::from_millis(10)).await;
    assert_eq!((harness.fake.sandbox_count(), harness.fake.running_container_count()), (1, 1));
    assert!(harness.has_event("Created", "Created container app") && harness.has_event("Started", "Started container app"));
    assert_eq!(harness.fake.calls("pull_image"), 0, "IfNotPresent uses the image present");
    // The status shows what the next look (after the relist's poke) sees.
    advance(RELIST_PERIOD).await;
    let status = harness.status(&web).expect("a status");
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.pod_ip.as_deref(), Some("10.88.0.2"), "the sandbox's address");
    assert!(harness.container_status(&web, "app").unwrap().state.unwrap().running.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_crashed_container_restarts_with_the_kubelets_back_off() {
    let harness = Harness::new(&[IMAGE]);
    let web = web_pod("");
    let start = Instant::now();
    let _worker = drive(&harness, &web);
    at(start, 0.5).await;
    harness.fake.exit("app", 1);
    at(start, 1.5).await;
    assert_eq!(latest(&harness, &web, "app").await, 1, "the first restart after a crash is immediate");
    harness.fake.exit("app", 1);
    at(start, 1.5 + 9.0).await;
    assert_eq!(latest(&harness, &web, "app").await, 1, "the second waits 10 s");
    assert_eq!(harness.waiting_reason(&web, "app").as_deref(), Some("CrashLoopBackOff"));
    assert!(harness.has_event("BackOff", "Back-off restarting failed container app in pod default/web-node-1"));
    at(start, 1.5 + 10.5).await;
    assert_eq!(latest(&harness, &web, "app").await, 2);
    harness.fake.exit("app", 1);
    at(start, 12.0 + 19.0).await;
    assert_eq!(latest(&harness, &web, "app").await, 2, "the third waits 20 s");
    at(start, 12.0 + 20.5).await;
    assert_eq!(latest(&harness, &web, "app").await, 3);
    // Only the newest instance and the one before it are kept, for `logs --previous` (from the
    // look after the restart on).
    at(start, 12.0 + 21.5).await;
    assert_eq!(attempts(&harness, &web, "app").await, [(2, Exited), (3, Running)]);
}

#[tokio::test(start_paused = true)]
async fn a_failing_runtime_is_retried_with_the_workers_back_off_and_the_status_says_why() {
    let harness = Harness::new(&[IMAGE]);
    harness.fake.fail("run_pod_sandbox", RuntimeError::Unavailable("engine restarting".into()), None);
    let web = web_pod("");
    let start = Instant::now();
    let _worker = drive(&harness, &web);
    // Retries after 2, 4, 8 s and then every 10 s: at 0, 2, 6, 14, 24, 34 s; the relist's
    // pokes do not make it retry sooner.
    for (secs, calls) in [(1.0, 1), (3.0, 2), (7.0, 3), (15.0, 4), (25.0, 5), (35.0, 6)] {
        at(start, secs).await;
        assert_eq!(harness.fake.calls("run_pod_sandbox"), calls, "calls by {secs} s");
    }
    let waiting = harness.container_status(&web, "app").unwrap().state.unwrap().waiting.unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("ContainerCreating"));
    assert!(waiting.message.unwrap().contains("Failed to create pod sandbox: runtime unavailable: engine restarting"));
    assert!(harness.has_event("FailedCreatePodSandBox", "engine restarting"));
    harness.fake.heal("run_pod_sandbox");
    at(start, 45.0).await;
    assert_eq!(harness.fake.running_container_count(), 1, "running within the 10 s cap once the runtime works");
    at(start, 46.5).await;
    assert_eq!(harness.status(&web).unwrap().phase.as_deref(), Some("Running"));
}

#[tokio::test(start_paused = true)]
async fn one_pods_slow_stop_does_not_hold_back_another() {
    let harness = Harness::new(&[IMAGE]);
    let (old, new) = (web_pod(""), app_pod("api", ""));
    let start = Instant::now();
    let old_worker = drive(&harness, &old);
    at(start, 0.5).await;
    harness.fake.slow("stop_container", Duration::from_secs(25));
    old_worker.wanted.send_replace(None);
    let _new_worker = drive(&harness, &new);
    at(start, 2.0).await;
    assert_eq!(harness.fake.running_container_count(), 2, "the new pod runs while the old one's container is still stopping");
    assert!(harness.status(&old).is_none(), "a pod whose manifest is gone leaves the API when its teardown starts");
    assert_eq!(harness.status(&new).unwrap().phase.as_deref(), Some("Running"));
    assert!(!old_worker.task.is_finished());
    at(start, 28.0).await;
    assert!(old_worker.task.is_finished(), "the old pod's worker ends once its objects are gone");
    assert_eq!((harness.fake.sandbox_count(), harness.fake.running_container_count()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_container_whose_post_start_hook_fails_is_stopped_and_restarted_by_its_policy() {
    let harness = Harness::new(&[IMAGE]);
    let hooked = web_pod(
        r#"    lifecycle:
      postStart:
        exec:
          command: ["false"]
"#,
    );
    let start = Instant::now();
    let _worker = drive(&harness, &hooked);
    at(start, 0.5).await;
    assert!(harness.has_event("FailedPostStartHook", "PostStartHook failed: command [\"false\"] exited with 1"));
    assert!(harness.has_event("Killing", "Stopping container app: its postStart hook failed"));
    assert_eq!(attempts(&harness, &hooked, "app").await, [(0, Exited)], "stopped in the same breath");
    // Its exit is a crash like any other: the first restart is immediate...
    at(start, 1.5).await;
    assert_eq!(attempts(&harness, &hooked, "app").await, [(0, Exited), (1, Exited)]);
    // ...the next waits out the back-off.
    at(start, 5.0).await;
    assert_eq!(latest(&harness, &hooked, "app").await, 1);
    assert_eq!(harness.waiting_reason(&hooked, "app").as_deref(), Some("CrashLoopBackOff"));
}

#[tokio::test(start_paused = true)]
async fn always_pulls_at_every_start() {
    let harness = Harness::new(&[IMAGE]);
    let always = web_pod("    imagePullPolicy: Always");
    let start = Instant::now();
    let _worker = drive(&harness, &always);
    at(start, 0.5).await;
    assert_eq!(harness.fake.calls("pull_image"), 1, "Always pulls an image that is present");
    assert!(harness.has_event("Pulled", "Successfully pulled image \"registry.example/app:1\""));
    harness.fake.exit("app", 0);
    at(start, 1.5).await;
    assert_eq!((latest(&harness, &always, "app").await, harness.fake.calls("pull_image")), (1, 2), "the restart pulled again");
}

#[tokio::test(start_paused = true)]
async fn a_failed_pull_backs_off_per_image() {
    let harness = Harness::new(&[]);
    harness.fake.fail("pull_image", RuntimeError::ImagePull { image: IMAGE.into(), message: "unauthorized".into() }, None);
    let web = web_pod("");
    let start = Instant::now();
    let _worker = drive(&harness, &web);
    at(start, 0.5).await;
    assert_eq!(harness.fake.calls("pull_image"), 1);
    assert_eq!(harness.waiting_reason(&web, "app").as_deref(), Some("ErrImagePull"));
    // The looks after it find the image's back-off (10 s from the failure) and say so...
    at(start, 5.0).await;
    assert_eq!(harness.fake.calls("pull_image"), 1, "no pull during the back-off");
    assert_eq!(harness.waiting_reason(&web, "app").as_deref(), Some("ImagePullBackOff"));
    assert!(harness.has_event("BackOff", "Back-off pulling image \"registry.example/app:1\""));
    // ...it pulls again once it is over, and the next back-off is twice as long.
    at(start, 10.5).await;
    assert_eq!(harness.fake.calls("pull_image"), 2);
    at(start, 29.5).await;
    assert_eq!(harness.fake.calls("pull_image"), 2, "20 s after the second failure");
    harness.fake.heal("pull_image");
    at(start, 30.5).await;
    assert_eq!((harness.fake.calls("pull_image"), harness.fake.running_container_count()), (3, 1));
}

#[tokio::test(start_paused = true)]
async fn pulls_try_the_nodes_credentials_most_specific_first_until_one_works() {
    let harness = Harness::new(&[]);
    harness.fake.protect("registry.example", RegistryAuth::basic("", "right", "s3cret:pw"));
    // `auth` is base64("right:s3cret:pw"): a password may hold colons.
    let config = r#"{"auths": {"registry.example": {"auth": "cmlnaHQ6czNjcmV0OnB3"},
                               "https://registry.example/app": {"username": "stale", "password": "old"}}}"#;
    std::fs::write(harness.root().join("config.json"), config).unwrap();
    let web = web_pod("");
    let start = Instant::now();
    let _worker = drive(&harness, &web);
    at(start, 0.5).await;
    assert_eq!(harness.fake.pull_users(), ["stale", "right"], "the repository's entry first, then the registry's");
    assert_eq!(harness.fake.running_container_count(), 1);
    assert!(harness.has_event("Pulled", "Successfully pulled image \"registry.example/app:1\" in "));
    assert!(harness.events().iter().all(|(_, m)| !m.contains("s3cret") && !m.contains("old")), "{:?}", harness.events());
}

#[tokio::test(start_paused = true)]
async fn the_sandbox_image_is_pulled_with_the_nodes_credentials_and_looked_up_once_for_a_burst() {
    let harness = Harness::new(&[IMAGE]);
    let pause = "registry.example/pause:3.10";
    harness.fake.set_sandbox_image(pause);
    harness.fake.protect("registry.example", RegistryAuth::basic("", "node", "pw"));
    std::fs::write(harness.root().join("config.json"), r#"{"auths": {"registry.example": {"username": "node", "password": "pw"}}}"#)
        .unwrap();
    let (a, b) = (app_pod("a", ""), app_pod("b", ""));
    let start = Instant::now();
    let _a = drive(&harness, &a);
    at(start, 0.5).await;
    assert!(harness.fake.has_image(pause), "pulled before the first sandbox");
    assert_eq!(harness.fake.pull_users(), ["node"]);
    let looked_up = harness.fake.calls("image_status");
    let _b = drive(&harness, &b);
    at(start, 1.0).await;
    assert_eq!(harness.fake.running_container_count(), 2);
    assert_eq!(harness.fake.calls("image_status"), looked_up + 1, "the second pod looked up its own image, not the sandbox's");
}

#[tokio::test(start_paused = true)]
async fn without_credentials_the_registrys_words_stay_through_the_back_off() {
    let harness = Harness::new(&[]);
    harness.fake.protect("registry.example", RegistryAuth::basic("", "right", "pw"));
    let web = web_pod("");
    let start = Instant::now();
    let _worker = drive(&harness, &web);
    at(start, 0.5).await;
    assert_eq!(harness.fake.pull_users(), [""], "no credentials: one anonymous pull");
    let waiting = || harness.container_status(&web, "app").unwrap().state.unwrap().waiting.unwrap();
    assert_eq!(waiting().reason.as_deref(), Some("ErrImagePull"));
    assert!(waiting().message.unwrap().contains("401 Unauthorized"));
    assert!(harness.has_event("Failed", "Failed to pull image \"registry.example/app:1\": pulling image"));
    assert!(harness.events().iter().any(|(r, m)| r == "Failed" && m == "Error: ErrImagePull"), "the kubelet's pair of events");
    at(start, 5.0).await;
    assert_eq!(waiting().reason.as_deref(), Some("ImagePullBackOff"));
    let message = waiting().message.unwrap();
    assert!(
        message.starts_with("Back-off pulling image \"registry.example/app:1\": ErrImagePull: ") && message.contains("401 Unauthorized"),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_image_the_runtime_cannot_look_up_is_an_image_inspect_error() {
    let harness = Harness::new(&[IMAGE]);
    harness.fake.fail("image_status", RuntimeError::Unavailable("engine restarting".into()), Some(1));
    let web = web_pod("");
    let start = Instant::now();
    let _worker = drive(&harness, &web);
    at(start, 0.5).await;
    assert!(harness.has_event("Failed", "Error: ImageInspectError: Failed to inspect image \"registry.example/app:1\": "));
    assert_eq!(harness.fake.calls("pull_image"), 0, "no pull for an image that could not be looked up");
    at(start, 3.0).await;
    assert_eq!(harness.fake.running_container_count(), 1, "the next look finds it");
}

#[tokio::test(start_paused = true)]
async fn never_runs_only_an_image_that_is_present() {
    let harness = Harness::new(&[]);
    let never = web_pod("    imagePullPolicy: Never");
    let _worker = drive(&harness, &never);
    advance(Duration::from_millis(10)).await;
    let waiting = harness.container_status(&never, "app").unwrap().state.unwrap().waiting.unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("ErrImageNeverPull"));
    assert_eq!(waiting.message.as_deref(), Some("Container image \"registry.example/app:1\" is not present with pull policy of Never"));
    assert_eq!(harness.fake.calls("pull_image"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_requested_restart_starts_the_pod_afresh() {
    let harness = Harness::new(&[IMAGE]);
    let web = web_pod("");
    let start = Instant::now();
    let worker = drive(&harness, &web);
    at(start, 0.5).await;
    harness.fake.exit("app", 1);
    at(start, 1.5).await;
    harness.fake.exit("app", 1);
    at(start, 13.5).await;
    assert_eq!(latest(&harness, &web, "app").await, 2, "two crashes: a back-off is running");
    let started = harness.status(&web).unwrap().start_time;
    at(start, 60.0).await;
    worker.restart.notify_one();
    at(start, 60.5).await;
    assert!(harness.has_event("Restarting", "to start the pod afresh"));
    assert_eq!(attempts(&harness, &web, "app").await, [(0, Running)], "restart counts from zero");
    assert_eq!(harness.fake.sandbox_count(), 1);
    assert!(harness.status(&web).unwrap().start_time > started, "a new start time");
    harness.fake.exit("app", 1);
    at(start, 61.5).await;
    assert_eq!(latest(&harness, &web, "app").await, 1, "no back-off is left: the next crash restarts at once");
}

#[tokio::test(start_paused = true)]
async fn a_pod_no_longer_wanted_is_torn_down_and_its_worker_ends() {
    let harness = Harness::new(&[IMAGE]);
    let web = web_pod("");
    let worker = drive(&harness, &web);
    advance(Duration::from_millis(10)).await;
    assert!(harness.ctx.layout.pod_record(&web.uid).exists(), "the record is kept under --root-dir");
    worker.wanted.send_replace(None);
    advance(RELIST_PERIOD).await;
    assert!(worker.task.is_finished());
    assert_eq!(harness.fake.sandbox_count(), 0);
    assert!(harness.status(&web).is_none());
    assert!(!harness.ctx.layout.pod_dir(&web.uid).exists(), "the pod's directory goes with it");
}
