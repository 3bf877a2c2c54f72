//! Mirror pods (issue 7) on an API server.
//!
//! No kube-apiserver can be installed on the CI machine, so these tests run the agent against
//! the **API server test double** in `support::apiserver`: real HTTP, the Kubernetes wire
//! protocol (lists, streamed watches, resourceVersions, `Status` errors, graceful deletion), and
//! the NodeRestriction rules for mirror pods enforced, so that a mirror pod the double accepts
//! is one a real API server would accept from the node's credentials. The agent and the pods
//! are real (the `staticlet` binary on Docker). `real_cluster_opt_in` runs the same flow against
//! a real cluster when `STATICLET_TEST_KUBECONFIG` is set.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::apiserver::ApiServer;
use crate::support::images::BUSYBOX;
use crate::support::{Agent, docker, wait_for, yaml};

const MIRROR: Duration = Duration::from_secs(60);

fn manifest(name: &str, message: &str) -> String {
    yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata: {name: {name}, labels: {app: {name}}}
        spec:
          containers:
          - {name: app, image: {BUSYBOX}, command: [sleep, '3600'], env: [{name: MESSAGE, value: '{message}'}]}
        "#,
        name,
        BUSYBOX,
        message,
    )
}

/// The mirror pod of `name` once it satisfies `check`.
async fn wait_mirror(server: &ApiServer, agent: &Agent, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let pod = agent.pod(name);
    wait_for(MIRROR, &format!("mirror pod {pod}: {what}"), || async { server.pod("default", &pod).filter(|p| check(p)) }).await
}

async fn wait_no_mirror(server: &ApiServer, agent: &Agent, name: &str) {
    let pod = agent.pod(name);
    wait_for(MIRROR, &format!("mirror pod {pod} to go"), || async { server.pod("default", &pod).is_none().then_some(()) }).await;
}

fn uid(pod: &Value) -> String {
    pod["metadata"]["uid"].as_str().unwrap().to_owned()
}

async fn config_hash(agent: &Agent, name: &str) -> String {
    agent.pod_status(name).await.unwrap()["metadata"]["annotations"]["kubernetes.io/config.hash"].as_str().unwrap().to_owned()
}

async fn app_id(agent: &Agent, name: &str) -> String {
    let found = agent.app_containers(name).await;
    assert_eq!(found.len(), 1, "pod {name} runs one app container");
    found[0].id.clone().unwrap()
}

fn is_running(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running" && pod["status"]["containerStatuses"][0]["ready"] == true
}

#[tokio::test(flavor = "multi_thread")]
async fn mirror_pods_follow_their_static_pods() {
    let server = ApiServer::start().await;
    let mut agent = Agent::new("mirror");
    let node_uid = server.add_node(&agent.node).await;
    // A pod of the cluster's own on this node: not a mirror pod, never touched.
    let (code, _) = server
        .call(
            "admin",
            "POST",
            "/api/v1/namespaces/default/pods",
            json!({"metadata": {"name": "scheduled"}, "spec": {"nodeName": agent.node, "containers": [{"name": "c", "image": "i"}]}}),
        )
        .await;
    assert_eq!(code, 201);
    agent.write("web.yaml", &manifest("web", "one"));
    // Rejected by admission (spec §8): never mirrored, since NodeRestriction would refuse it.
    agent.write(
        "bad.yaml",
        &yaml!(
            r#"
            apiVersion: v1
            kind: Pod
            metadata: {name: bad}
            spec:
              volumes: [{name: s, secret: {secretName: s}}]
              containers: [{name: app, image: {BUSYBOX}}]
            "#,
            BUSYBOX,
        ),
    );
    let kubeconfig = server.kubeconfig(&agent.node);
    agent.start_with(&["--kubeconfig", kubeconfig.to_str().unwrap()]);

    // Created with the shape NodeRestriction admits, and its status follows the static pod's.
    agent.wait_reported_running(&["web"]).await;
    let hash = config_hash(&agent, "web").await;
    let mirror = wait_mirror(&server, &agent, "web", "running", is_running).await;
    assert_eq!(mirror["metadata"]["annotations"]["kubernetes.io/config.mirror"], hash.as_str());
    assert_eq!(
        mirror["metadata"]["ownerReferences"],
        json!([{"apiVersion": "v1", "kind": "Node", "name": agent.node, "uid": node_uid, "controller": true}])
    );
    assert_eq!(mirror["metadata"]["labels"]["app"], "web");
    assert_eq!(mirror["spec"]["nodeName"], agent.node.as_str());
    let local = agent.pod_status("web").await.unwrap();
    assert_eq!(mirror["status"]["containerStatuses"][0]["containerID"], local["status"]["containerStatuses"][0]["containerID"]);
    assert!(server.pod("default", &agent.pod("bad")).is_none(), "a rejected pod has no mirror");
    let container = app_id(&agent, "web").await;
    // Status patches are coalesced, and once the status holds still, so do they.
    let patches =
        || server.served().iter().filter(|s| s.method == "PATCH" && s.path.ends_with(&format!("/{}/status", agent.pod("web")))).count();
    let settled = patches();
    assert!((1..=4).contains(&settled), "{settled} status patches from Pending to Running");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(patches(), settled, "no patches while the status holds still");

    // `kubectl delete pod`: a graceful deletion the agent finishes and undoes; the pod runs on.
    let path = format!("/api/v1/namespaces/default/pods/{}", agent.pod("web"));
    let (code, deleting) = server.call("admin", "DELETE", &path, json!({})).await;
    assert_eq!(code, 200);
    assert!(deleting["metadata"]["deletionTimestamp"].is_string());
    let recreated =
        wait_mirror(&server, &agent, "web", "recreated", |p| uid(p) != uid(&mirror) && p["metadata"]["deletionTimestamp"].is_null()).await;
    wait_mirror(&server, &agent, "web", "running again", |p| uid(p) == uid(&recreated) && is_running(p)).await;
    assert_eq!(app_id(&agent, "web").await, container, "deleting the mirror pod does not touch the static pod");

    // A manifest edit replaces the mirror pod with one of the new config hash.
    agent.write("web.yaml", &manifest("web", "two"));
    wait_for(MIRROR, "the edited pod to run", || async {
        (agent.app_containers("web").await.first()?.id.as_ref()? != &container).then_some(())
    })
    .await;
    let new_hash = wait_for(MIRROR, "a new config hash", || async { Some(config_hash(&agent, "web").await).filter(|h| *h != hash) }).await;
    let replaced = wait_mirror(&server, &agent, "web", "replaced", |p| {
        p["metadata"]["annotations"]["kubernetes.io/config.mirror"] == new_hash.as_str()
    })
    .await;
    assert_ne!(uid(&replaced), uid(&recreated));

    // The manifest goes: so does the mirror pod; the cluster's own pod stays.
    agent.remove("web.yaml");
    wait_no_mirror(&server, &agent, "web").await;
    assert!(server.pod("default", "scheduled").is_some());
    let refused: Vec<_> = server.served().into_iter().filter(|s| s.path.ends_with("/scheduled")).collect();
    assert!(refused.is_empty(), "the agent never touched a pod it does not own: {refused:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn orphans_go_and_mirrors_stay_across_an_agent_restart() {
    let server = ApiServer::start().await;
    let mut agent = Agent::new("mirror-restart");
    server.add_node(&agent.node).await;
    agent.write("a.yaml", &manifest("a", "a"));
    agent.write("b.yaml", &manifest("b", "b"));
    let kubeconfig = server.kubeconfig(&agent.node);
    let flags = ["--kubeconfig", kubeconfig.to_str().unwrap()];
    agent.start_with(&flags);
    let a = wait_mirror(&server, &agent, "a", "running", is_running).await;
    wait_mirror(&server, &agent, "b", "running", is_running).await;

    // b's manifest goes while the agent is down: its mirror is an orphan when it comes back.
    agent.kill9();
    agent.remove("b.yaml");
    agent.start_with(&flags);
    wait_no_mirror(&server, &agent, "b").await;
    agent.wait_reported_running(&["a"]).await;
    let kept = server.pod("default", &agent.pod("a")).unwrap();
    assert_eq!(uid(&kept), uid(&a), "a mirror that is still right is kept, not recreated");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_server_that_is_down_never_holds_up_pods_and_mirrors_catch_up() {
    let mut server = ApiServer::start().await;
    let mut agent = Agent::new("mirror-down");
    server.add_node(&agent.node).await;
    agent.write("a.yaml", &manifest("a", "a"));
    let kubeconfig = server.kubeconfig(&agent.node);
    agent.start_with(&["--kubeconfig", kubeconfig.to_str().unwrap()]);
    wait_mirror(&server, &agent, "a", "running", is_running).await;

    server.stop().await;
    agent.write("c.yaml", &manifest("c", "c"));
    agent.remove("a.yaml");
    agent.wait_reported_running(&["c"]).await;
    wait_for(MIRROR, "pod a to stop", || async { agent.app_containers("a").await.is_empty().then_some(()) }).await;
    assert!(server.pod("default", &agent.pod("c")).is_none());

    // The agent restarts too while the server is away: still no waiting on it.
    agent.kill9();
    agent.start_with(&["--kubeconfig", kubeconfig.to_str().unwrap()]);
    agent.wait_reported_running(&["c"]).await;

    server.resume().await;
    wait_mirror(&server, &agent, "c", "running", is_running).await;
    wait_no_mirror(&server, &agent, "a").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mirror_pods_wait_for_the_node_object() {
    let server = ApiServer::start().await;
    let mut agent = Agent::new("mirror-nonode");
    agent.write("a.yaml", &manifest("a", "a"));
    let kubeconfig = server.kubeconfig(&agent.node);
    agent.start_with(&["--kubeconfig", kubeconfig.to_str().unwrap()]);
    agent.wait_reported_running(&["a"]).await;
    let problem = format!("node {:?} is not registered on the API server", agent.node);
    agent.wait_log(&problem).await;
    let waiting = wait_for(MIRROR, "a FailedMirrorPod event", || async {
        let (_, events) = agent.api("GET", "/api/v1/namespaces/default/events").await?;
        events["items"].as_array()?.iter().find(|e| e["reason"] == "FailedMirrorPod").cloned()
    })
    .await;
    assert_eq!(waiting["involvedObject"]["name"], agent.pod("a").as_str());
    assert!(waiting["message"].as_str().unwrap().contains(&problem), "{waiting}");
    assert!(server.pods(&agent.node).is_empty());

    let node_uid = server.add_node(&agent.node).await;
    let mirror = wait_mirror(&server, &agent, "a", "created once the Node exists", |_| true).await;
    assert_eq!(mirror["metadata"]["ownerReferences"][0]["uid"], node_uid.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn register_node_creates_the_node_and_renews_its_lease() {
    let server = ApiServer::start().await;
    let mut agent = Agent::new("mirror-register");
    agent.write("a.yaml", &manifest("a", "a"));
    let kubeconfig = server.kubeconfig(&agent.node);
    agent.start_with(&["--kubeconfig", kubeconfig.to_str().unwrap(), "--register-node", "--node-ip", "127.0.0.1"]);

    let node = wait_for(MIRROR, "the Node object", || async { server.node(&agent.node) }).await;
    let status = &node["status"];
    assert_eq!(status["addresses"][0], json!({"type": "InternalIP", "address": "127.0.0.1"}));
    assert!(status["capacity"]["cpu"].as_str().unwrap().parse::<u32>().unwrap() >= 1);
    assert!(status["capacity"]["memory"].as_str().unwrap().ends_with("Ki"));
    assert_eq!(status["capacity"]["pods"], "110");
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert!(status["nodeInfo"]["containerRuntimeVersion"].as_str().unwrap().starts_with("docker://"));
    assert_eq!(node["spec"]["taints"][0]["key"], "node.staticlet.dev/static-pods-only");
    let mirror = wait_mirror(&server, &agent, "a", "running", is_running).await;
    assert_eq!(mirror["metadata"]["ownerReferences"][0]["uid"], node["metadata"]["uid"]);

    let lease = wait_for(MIRROR, "the node's Lease", || async { server.lease(&agent.node) }).await;
    assert_eq!(lease["spec"]["holderIdentity"], agent.node.as_str());
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    assert_eq!(lease["metadata"]["ownerReferences"][0]["uid"], node["metadata"]["uid"]);
    let renewed = wait_for(Duration::from_secs(30), "the Lease to be renewed", || async {
        server.lease(&agent.node).filter(|l| l["spec"]["renewTime"] != lease["spec"]["renewTime"])
    })
    .await;
    assert_eq!(uid(&renewed), uid(&lease), "renewed in place");

    // Restarted, the agent finds its Node rather than registering another.
    agent.kill9();
    agent.start_with(&["--kubeconfig", kubeconfig.to_str().unwrap(), "--register-node"]);
    agent.wait_log("mirror pods on").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(server.node(&agent.node).unwrap()["metadata"]["uid"], node["metadata"]["uid"]);
    assert_eq!(uid(&server.pod("default", &agent.pod("a")).unwrap()), uid(&mirror));
}

/// A change that makes a mirror pod one NodeRestriction refuses.
type Spoil = fn(&mut Value);

/// The double itself: what it refuses from a node is what NodeRestriction refuses, so that the
/// tests above passing means the agent's mirror pods would pass on a real API server.
#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_double_enforces_node_restriction() {
    let server = ApiServer::start().await;
    let node_uid = server.add_node("n1").await;
    let good = json!({
        "metadata": {"name": "web-n1", "annotations": {"kubernetes.io/config.mirror": "h"},
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": node_uid, "controller": true}]},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}
    });
    let variants: [(&str, Spoil); 9] = [
        ("no annotation", |p| p["metadata"]["annotations"] = json!({})),
        ("no owner", |p| p["metadata"]["ownerReferences"] = json!([])),
        ("wrong owner uid", |p| p["metadata"]["ownerReferences"][0]["uid"] = json!("other")),
        ("not controller", |p| p["metadata"]["ownerReferences"][0]["controller"] = json!(false)),
        ("two owners", |p| {
            let owner = p["metadata"]["ownerReferences"][0].clone();
            p["metadata"]["ownerReferences"] = json!([owner.clone(), owner]);
        }),
        ("another node", |p| p["spec"]["nodeName"] = json!("n2")),
        ("a service account", |p| p["spec"]["serviceAccountName"] = json!("default")),
        ("a secret", |p| p["spec"]["volumes"] = json!([{"name": "s", "secret": {"secretName": "s"}}])),
        ("a config map", |p| p["spec"]["containers"][0]["envFrom"] = json!([{"configMapRef": {"name": "m"}}])),
    ];
    for (what, spoil) in variants {
        let mut pod = good.clone();
        spoil(&mut pod);
        let (code, answer) = server.request("node-n1", "POST", "/api/v1/namespaces/default/pods", pod).await;
        assert_eq!((code, answer["reason"].as_str()), (403, Some("Forbidden")), "{what}: {answer}");
    }
    let (code, _) = server.request("node-n1", "POST", "/api/v1/namespaces/default/pods", good.clone()).await;
    assert_eq!(code, 201);
    let (code, answer) = server.request("node-n1", "POST", "/api/v1/namespaces/default/pods", good).await;
    assert_eq!((code, answer["reason"].as_str()), (409, Some("AlreadyExists")));
    let (code, _) = server.request("node-n2", "DELETE", "/api/v1/namespaces/default/pods/web-n1", json!({"gracePeriodSeconds": 0})).await;
    assert_eq!(code, 403, "another node cannot delete it");
    let (code, _) = server.request("nobody", "GET", "/api/v1/nodes/n1", Value::Null).await;
    assert_eq!(code, 401);
}

/// Opt-in: with `STATICLET_TEST_KUBECONFIG` set, runs a pod's mirror through a real cluster
/// (kind, minikube). The credentials must be allowed to act for the node: a cluster admin, or
/// `system:node:<name>` with `STATICLET_TEST_NODE=<name>` naming that Node.
#[tokio::test(flavor = "multi_thread")]
async fn real_cluster_opt_in() {
    let Ok(kubeconfig) = std::env::var("STATICLET_TEST_KUBECONFIG") else {
        eprintln!("STATICLET_TEST_KUBECONFIG is not set: the real-cluster test does not run");
        return;
    };
    let _ = docker().await;
    let mut agent = Agent::new("mirror-real");
    if let Ok(node) = std::env::var("STATICLET_TEST_NODE") {
        agent.node = node;
    }
    let node = agent.node.clone();
    agent.write("web.yaml", &manifest("web", "real"));
    agent.start_with(&["--kubeconfig", &kubeconfig, "--register-node"]);
    let pod = format!("web-{node}");
    let kubectl = |args: &[&str]| std::process::Command::new("kubectl").arg("--kubeconfig").arg(&kubeconfig).args(args).output().unwrap();
    let mirror: Value = wait_for(Duration::from_secs(120), "the mirror pod on the real cluster", || async {
        let out = kubectl(&["get", "pod", &pod, "-o", "json"]);
        serde_json::from_slice::<Value>(&out.stdout).ok().filter(|p| p["status"]["phase"] == "Running")
    })
    .await;
    assert!(mirror["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string());
    agent.remove("web.yaml");
    wait_for(Duration::from_secs(120), "the mirror pod to go", || async {
        let out = kubectl(&["get", "pod", &pod, "--ignore-not-found", "-o", "name"]);
        out.stdout.is_empty().then_some(())
    })
    .await;
    if std::env::var("STATICLET_TEST_NODE").is_err() {
        kubectl(&["delete", "node", &node, "--ignore-not-found"]);
    }
}
