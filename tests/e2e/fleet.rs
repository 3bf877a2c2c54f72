//! A fleet on one machine at a reduced size (issue 28): 3 nodes fed by a real 3-member etcd
//! cluster on TLS with client certificates, through the etcd source's watch. A put reaches
//! every node; a killed leader stops no pod and the next put still reaches every node; the
//! nodes' mirror pods appear on one API server, and its outage stops nothing. The `fleet`
//! benchmark runs the same at 20 nodes with every fault, and measures.

use std::time::Duration;

use crate::support::fleet::{FLEET_POD, Fleet, OWN_POD};

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_follow_one_etcd_cluster_through_a_leader_failure() {
    let mut fleet = Fleet::start("fleet", 3).await;
    fleet.put_own_pods(3600).await;
    fleet.put_fleet_pod(3600).await;
    fleet.wait_agents_ready(&[OWN_POD, FLEET_POD]).await;
    let before = fleet.running();
    assert_eq!(before.len(), 6, "two pods on each of the 3 nodes: {before:?}");
    // The sources followed the watch: the agents' logs say so, and never fell back to polling.
    for agent in &fleet.agents {
        assert!(!agent.log().contains("cannot watch"), "{}", agent.log());
    }

    // The leader dies: nothing stops, and the next change still reaches every node.
    let leader = fleet.kill_leader();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fleet.running(), before, "no pod stopped when member {leader} (the leader) died");
    fleet.put_fleet_pod(7200).await;
    let after = fleet.running();
    for node in fleet.nodes() {
        let own = format!("{OWN_POD}-{node}");
        assert_eq!(after.get(&own), before.get(&own), "{own} untouched");
        let web = format!("{FLEET_POD}-{node}");
        assert_ne!(after.get(&web), before.get(&web), "{web} updated on its node");
    }
    fleet.etcd.revive(leader);

    // Every node's pods are mirrored on the one API server, as kubectl shows them.
    let table = fleet.wait_mirrored(&[OWN_POD, FLEET_POD]).await;
    for node in fleet.nodes() {
        for pod in [OWN_POD, FLEET_POD] {
            let name = format!("{pod}-{node}");
            let row = table.lines().find(|l| l.split_whitespace().nth(1) == Some(name.as_str())).unwrap_or_else(|| panic!("{table}"));
            assert!(row.split_whitespace().any(|cell| cell == node), "the NODE column names {node}: {row}");
        }
    }
    assert!(table.lines().next().unwrap().contains("NODE"), "{table}");

    // The API server goes away: every pod runs on; back, it is mirrored again.
    let running = fleet.running();
    fleet.api.stop().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(fleet.running(), running, "no pod stopped without the API server");
    fleet.api.resume().await;
    fleet.wait_mirrored(&[OWN_POD, FLEET_POD]).await;
    assert_eq!(fleet.running(), running);
}
