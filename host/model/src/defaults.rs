//! The API server's defaults for a Pod (`SetObjectDefaults_Pod`), for the fields a static pod's
//! behaviour depends on. Applying them before hashing is what makes a default written out
//! explicitly hash the same as one left implicit.

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Probe};

/// The grace period the API server gives a pod that names none.
pub const DEFAULT_GRACE_PERIOD_SECONDS: i64 = 30;

/// Applies the API server's defaults to `pod` in place.
pub fn apply(pod: &mut Pod) {
    let metadata = &mut pod.metadata;
    metadata.namespace.get_or_insert_with(|| "default".to_owned());
    // An empty map means the same as no map; normalising keeps the hash from telling them apart.
    if metadata.labels.as_ref().is_some_and(|l| l.is_empty()) {
        metadata.labels = None;
    }
    if metadata.annotations.as_ref().is_some_and(|a| a.is_empty()) {
        metadata.annotations = None;
    }
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    apply_spec(spec);
}

fn apply_spec(spec: &mut PodSpec) {
    spec.restart_policy.get_or_insert_with(|| "Always".to_owned());
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".to_owned());
    spec.scheduler_name.get_or_insert_with(|| "default-scheduler".to_owned());
    spec.security_context.get_or_insert_with(Default::default);
    spec.enable_service_links.get_or_insert(true);
    // The API server turns a negative grace period into 1 rather than rejecting it.
    let grace = spec.termination_grace_period_seconds.get_or_insert(DEFAULT_GRACE_PERIOD_SECONDS);
    if *grace < 0 {
        *grace = 1;
    }
    let host_network = spec.host_network.unwrap_or(false);
    for container in spec.init_containers.iter_mut().flatten().chain(spec.containers.iter_mut()) {
        apply_container(container, host_network);
    }
    for volume in spec.volumes.iter_mut().flatten() {
        // A volume that names no source is an emptyDir (`SetDefaults_Volume`): manifests written
        // as `- name: run-dir` alone, or with a misspelt source the decoder dropped, run.
        if crate::validate::sources_set(volume).is_empty() {
            volume.empty_dir = Some(Default::default());
        }
        if let Some(host_path) = volume.host_path.as_mut() {
            host_path.type_.get_or_insert_with(String::new);
        }
        if let Some(field_refs) = volume.downward_api.as_mut() {
            field_refs.default_mode.get_or_insert(0o644);
        }
    }
}

fn apply_container(container: &mut Container, host_network: bool) {
    container.image_pull_policy.get_or_insert_with(|| default_pull_policy(container.image.as_deref().unwrap_or("")).to_owned());
    container.termination_message_path.get_or_insert_with(|| "/dev/termination-log".to_owned());
    container.termination_message_policy.get_or_insert_with(|| "File".to_owned());
    for port in container.ports.iter_mut().flatten() {
        port.protocol.get_or_insert_with(|| "TCP".to_owned());
        // On the host network the container's port is the host's port.
        if host_network && port.host_port.unwrap_or(0) == 0 {
            port.host_port = Some(port.container_port);
        }
    }
    for env in container.env.iter_mut().flatten() {
        if let Some(field_ref) = env.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            field_ref.api_version.get_or_insert_with(|| "v1".to_owned());
        }
    }
    // A limit without a request means a request of the same amount.
    if let Some(resources) = container.resources.as_mut()
        && let Some(limits) = resources.limits.clone()
    {
        let requests = resources.requests.get_or_insert_with(Default::default);
        for (name, limit) in limits {
            requests.entry(name).or_insert(limit);
        }
    }
    for probe in [&mut container.liveness_probe, &mut container.readiness_probe, &mut container.startup_probe].into_iter().flatten() {
        apply_probe(probe);
    }
}

fn apply_probe(probe: &mut Probe) {
    // The API's probe numbers are plain int32s, so an explicit 0 is the same as none: both
    // take the default, as `SetDefaults_Probe` gives it.
    for (field, default) in [
        (&mut probe.timeout_seconds, 1),
        (&mut probe.period_seconds, 10),
        (&mut probe.success_threshold, 1),
        (&mut probe.failure_threshold, 3),
    ] {
        if field.is_none_or(|v| v == 0) {
            *field = Some(default);
        }
    }
    if let Some(http) = probe.http_get.as_mut() {
        http.scheme.get_or_insert_with(|| "HTTP".to_owned());
        http.path.get_or_insert_with(|| "/".to_owned());
    }
}

/// `Always` for an untagged or `:latest` image, `IfNotPresent` otherwise (a digest counts as a tag).
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let name = image.rsplit('/').next().unwrap_or(image);
    match name.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(default_pull_policy("busybox"), "Always");
        assert_eq!(default_pull_policy("busybox:latest"), "Always");
        assert_eq!(default_pull_policy("busybox:1.36"), "IfNotPresent");
        assert_eq!(default_pull_policy("localhost:5000/busybox"), "Always");
        assert_eq!(default_pull_policy("localhost:5000/busybox:1"), "IfNotPresent");
        assert_eq!(default_pull_policy("busybox@sha256:abcd"), "IfNotPresent");
    }

    #[test]
    fn a_probes_explicit_zeros_take_the_defaults_as_unset_ones_do() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "a", "image": "i:1", "livenessProbe": {
                "tcpSocket": {"port": 80}, "timeoutSeconds": 0, "periodSeconds": 0, "successThreshold": 0, "failureThreshold": 7
            }}]}
        }))
        .unwrap();
        apply(&mut pod);
        let probe = pod.spec.unwrap().containers[0].liveness_probe.clone().unwrap();
        assert_eq!(
            (probe.timeout_seconds, probe.period_seconds, probe.success_threshold, probe.failure_threshold),
            (Some(1), Some(10), Some(1), Some(7))
        );
    }

    #[test]
    fn a_volume_with_no_source_is_an_empty_dir() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "a", "image": "i:1"}], "volumes": [{"name": "run"}, {"name": "h", "hostPath": {"path": "/x"}}]}
        }))
        .unwrap();
        apply(&mut pod);
        let volumes = pod.spec.unwrap().volumes.unwrap();
        assert_eq!(volumes[0].empty_dir, Some(Default::default()));
        assert_eq!(volumes[1].empty_dir, None);
    }

    #[test]
    fn negative_grace_period_becomes_one() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a"},
            "spec": {"terminationGracePeriodSeconds": -5, "containers": [{"name": "a", "image": "i:1"}]}
        }))
        .unwrap();
        apply(&mut pod);
        let spec = pod.spec.unwrap();
        assert_eq!(spec.termination_grace_period_seconds, Some(1));
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.containers[0].image_pull_policy.as_deref(), Some("IfNotPresent"));
    }

    #[test]
    fn requests_default_to_limits() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "a", "image": "i", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "100m"}}}]}
        }))
        .unwrap();
        apply(&mut pod);
        let requests = pod.spec.unwrap().containers[0].resources.clone().unwrap().requests.unwrap();
        assert_eq!(requests["cpu"].0, "100m");
        assert_eq!(requests["memory"].0, "1Gi");
    }

    #[test]
    fn host_network_ports_default_host_port() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a"},
            "spec": {"hostNetwork": true, "containers": [{"name": "a", "image": "i", "ports": [{"containerPort": 80}]}]}
        }))
        .unwrap();
        apply(&mut pod);
        let spec = pod.spec.unwrap();
        let port = &spec.containers[0].ports.as_ref().unwrap()[0];
        assert_eq!(port.host_port, Some(80));
        assert_eq!(port.protocol.as_deref(), Some("TCP"));
    }
}
