//! Source plugins (issue 5): the etcd source built from `plugins/etcd-source`, loaded by the real
//! agent, against a real etcd the test starts: pods follow puts and deletes, survive etcd going
//! down and an agent restarted meanwhile; an ungranted host and a wrong password are errors the
//! agent logs.

use std::path::PathBuf;
use std::time::Duration;

use staticlet_plugin::artifacts::ETCD_SOURCE;

use crate::support::etcd::{Cluster, Etcd};
use crate::support::images::BUSYBOX;
use crate::support::{Agent, wait_for, yaml};

const START: Duration = Duration::from_secs(60);

fn pod(name: &str, sleep: &str) -> String {
    yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata: {name: {name}}
        spec:
          terminationGracePeriodSeconds: 1
          containers:
          - {name: app, image: {BUSYBOX}, command: [sleep, '{sleep}']}
        "#,
        name,
        BUSYBOX,
        sleep,
    )
}

/// An agent config with the etcd source polled every second.
fn config(agent: &Agent, settings: &str, allowed_hosts: &str) -> PathBuf {
    config_with(agent, ETCD_SOURCE, settings, allowed_hosts)
}

/// The same with the source built at `plugin`.
fn config_with(agent: &Agent, plugin: &str, settings: &str, allowed_hosts: &str) -> PathBuf {
    config_polled(agent, plugin, "1s", settings, allowed_hosts)
}

/// The same polled every `interval`.
fn config_polled(agent: &Agent, plugin: &str, interval: &str, settings: &str, allowed_hosts: &str) -> PathBuf {
    let path = agent.dir().parent().unwrap().join("staticlet.yaml");
    let text = yaml!(
        r#"
        plugins:
        - name: etcd
          kind: manifest-source
          path: {plugin}
          interval: {interval}
          config: {settings}
          allowedHosts: {allowed_hosts}
        "#,
        plugin,
        interval,
        settings,
        allowed_hosts,
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn app_id(agent: &Agent, name: &str) -> Option<String> {
    agent.app_containers(name).await.first().and_then(|c| c.id.clone())
}

async fn wait_running(agent: &Agent, name: &str) -> String {
    wait_for(START, &format!("pod {name} to run"), || app_id(agent, name)).await
}

async fn wait_gone(agent: &Agent, name: &str) {
    wait_for(START, &format!("pod {name} to go"), || async { app_id(agent, name).await.is_none().then_some(()) }).await;
}

/// With a poll interval of an hour, only the watch can explain a change arriving: puts and
/// deletes arrive through it; when its member dies and etcd compacts its history meanwhile, the
/// source reads the prefix whole again once the member is back, and the changes made in between
/// apply once each: nothing missed, nothing replayed.
#[tokio::test(flavor = "multi_thread")]
async fn the_etcd_source_follows_a_watch_across_a_lost_member_and_a_compaction() {
    let mut cluster = Cluster::start(3, false);
    let mut agent = Agent::new("etcdwatch");
    let node = agent.node.clone();
    let key = |name: &str| format!("/staticlet/{node}/{name}");
    cluster.put(&key("a"), &pod("a", "3600"));
    cluster.put(&key("b"), &pod("b", "3600"));
    // The agent knows one member only, so that member's death cuts it off.
    let (url, address) = (cluster.url(0), cluster.addresses()[0].clone());
    let config = config_polled(&agent, ETCD_SOURCE, "1h", &format!("{{endpoints: ['{url}']}}"), &format!("['{address}']"));
    agent.start_with(&["--config", config.to_str().unwrap()]);
    let a = wait_running(&agent, "a").await;
    wait_running(&agent, "b").await;

    // Within the hour, through the watch.
    cluster.put(&key("c"), &pod("c", "3600"));
    wait_running(&agent, "c").await;
    cluster.delete(&key("c"));
    wait_gone(&agent, "c").await;

    // Its member dies; meanwhile a changes, b goes, d comes, c comes and goes again, and etcd
    // compacts its history past everything the agent saw.
    cluster.kill(0);
    cluster.wait_healthy();
    cluster.put(&key("a"), &pod("a", "7200"));
    cluster.delete(&key("b"));
    cluster.put(&key("d"), &pod("d", "3600"));
    cluster.put(&key("c"), &pod("c", "3600"));
    cluster.delete(&key("c"));
    let revision = cluster.revision();
    cluster.must(&["compact", &revision.to_string()]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.revive(0);

    let replaced = wait_for(START, "pod a's container to be replaced", || async { app_id(&agent, "a").await.filter(|id| *id != a) }).await;
    wait_running(&agent, "d").await;
    wait_gone(&agent, "b").await;
    agent.wait_log("compacted its history").await;
    // Once each: a's new container stays, c never comes back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app_id(&agent, "a").await, Some(replaced), "a replaced once, not again by a replayed event");
    assert!(app_id(&agent, "c").await.is_none());
    // And the watch goes on from there.
    cluster.put(&key("e"), &pod("e", "3600"));
    wait_running(&agent, "e").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_etcd_sources_pods_follow_etcd_and_outlive_it() {
    let mut etcd = Etcd::start();
    let mut agent = Agent::new("etcd");
    let node = agent.node.clone();
    let key = |name: &str| format!("/staticlet/{node}/{name}");
    etcd.put(&key("a.yaml"), &pod("a", "3600"));
    etcd.put(&key("b"), &pod("b", "3600"));
    etcd.put("/staticlet/another-node/x", &pod("x", "3600"));
    let config = config(&agent, &format!("{{endpoints: ['{}']}}", etcd.url()), &format!("['127.0.0.1:{}']", etcd.port));
    let flags = ["--config", config.to_str().unwrap()];
    agent.start_with(&flags);

    let a = wait_running(&agent, "a").await;
    wait_running(&agent, "b").await;
    let status = agent.pod_status("a").await.unwrap();
    assert_eq!(status["metadata"]["annotations"]["kubernetes.io/config.source"], "plugin:etcd");
    assert!(agent.pod_status("x").await.is_none(), "another node's manifests are not this node's");

    // Puts and deletes: a new key starts a pod, a deleted one removes it, a changed value
    // replaces the container.
    etcd.put(&key("c"), &pod("c", "3600"));
    wait_running(&agent, "c").await;
    etcd.delete(&key("b"));
    wait_gone(&agent, "b").await;
    etcd.put(&key("a.yaml"), &pod("a", "7200"));
    let a = wait_for(START, "pod a's container to be replaced", || async { app_id(&agent, "a").await.filter(|id| *id != a) }).await;
    let c = app_id(&agent, "c").await.unwrap();

    // etcd going down stops nothing.
    etcd.stop();
    agent.wait_log("no etcd endpoint answered").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!((app_id(&agent, "a").await, app_id(&agent, "c").await), (Some(a.clone()), Some(c.clone())));

    // Restarted while etcd is down: the checkpoint brings the same pods back, adopted.
    agent.kill9();
    agent.start_with(&flags);
    agent.wait_log("restored the source plugin's last good pods from the checkpoint").await;
    agent.wait_reported_running(&["a", "c"]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!((app_id(&agent, "a").await, app_id(&agent, "c").await), (Some(a), Some(c)), "adopted, not restarted");
    assert!(agent.pod_status("b").await.is_none());

    // etcd back: its changes apply again.
    etcd.resume();
    etcd.put(&key("d"), &pod("d", "3600"));
    wait_running(&agent, "d").await;
    etcd.delete(&key("c"));
    wait_gone(&agent, "c").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_etcd_source_built_against_wit_0_1_0_still_serves_pods() {
    let etcd = Etcd::start();
    let mut agent = Agent::new("etcdold");
    let node = agent.node.clone();
    etcd.put(&format!("/staticlet/{node}/a"), &pod("a", "3600"));
    let plugin = crate::support::wit_v0_1_0("etcd_source.wasm");
    let config = config_with(&agent, &plugin, &format!("{{endpoints: ['{}']}}", etcd.url()), &format!("['127.0.0.1:{}']", etcd.port));
    agent.start_with(&["--config", config.to_str().unwrap()]);
    wait_running(&agent, "a").await;
    etcd.put(&format!("/staticlet/{node}/b"), &pod("b", "3600"));
    wait_running(&agent, "b").await;
    let (_, plugins) = agent.api("GET", "/staticlet/v1/plugins").await.unwrap();
    let listed = plugins.to_string();
    assert!(listed.contains("0.1.0"), "the plugin list shows the WIT version it was built against: {listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_the_plugin_was_not_granted_is_refused_and_logged() {
    let etcd = Etcd::start();
    let mut agent = Agent::new("etcd-ungranted");
    etcd.put(&format!("/staticlet/{}/a", agent.node), &pod("a", "3600"));
    // Granted another port of the same address only.
    let config = config(&agent, &format!("{{endpoints: ['{}']}}", etcd.url()), &format!("['127.0.0.1:{}']", etcd.port + 1));
    agent.write("file.yaml", &pod("file", "3600"));
    agent.start_with(&["--config", config.to_str().unwrap()]);

    agent.wait_log("refused an outbound HTTP request: the host is not in the plugin's allowedHosts").await;
    agent.wait_log("the agent refused the request: the host is not in this plugin's allowedHosts").await;
    // The failing source holds up nothing else.
    wait_running(&agent, "file").await;
    assert!(agent.pod_status("a").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_etcd_source_authenticates_when_etcd_asks() {
    let etcd = Etcd::start();
    etcd.must(&["user", "add", "root:s3cret"]);
    etcd.must(&["auth", "enable"]);
    let mut agent = Agent::new("etcd-auth");
    etcd.must(&["--user", "root:s3cret", "put", &format!("/staticlet/{}/a", agent.node), &pod("a", "3600")]);
    let grant = format!("['127.0.0.1:{}']", etcd.port);

    let wrong = config(&agent, &format!("{{endpoints: ['{}'], username: root, password: wrong}}", etcd.url()), &grant);
    agent.start_with(&["--config", wrong.to_str().unwrap()]);
    agent.wait_log("authenticating as root: etcdserver: authentication failed").await;
    assert!(agent.pod_status("a").await.is_none());
    agent.kill9();

    let right = config(&agent, &format!("{{endpoints: ['{}'], username: root, password: s3cret}}", etcd.url()), &grant);
    agent.start_with(&["--config", right.to_str().unwrap()]);
    wait_running(&agent, "a").await;
}
