//! The static pod policy's rules (spec §8), as a plain function of the pod: the
//! `static-pod-policy` component wraps them for the agent, and compiled natively they are the
//! yardstick the plugin host's benchmark and tests hold the component to.
//!
//! A static pod runs without an API server, so it may not depend on API objects. Every reference
//! to one is a violation with its field path and the reason, in app, init and ephemeral
//! containers alike. The kubelet rejects the same set since 1.34.

use k8s_openapi::api::core::v1::{Container, Pod, Volume};

const NO_API: &str = "static pods run without an API server";

/// Every violation of the pod: (field path, message), in the order the fields appear.
pub fn check(pod: &Pod) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(spec) = &pod.spec else { return out };
    if spec.service_account_name.as_deref().is_some_and(|s| !s.is_empty()) {
        out.push(("spec.serviceAccountName".into(), format!("{NO_API}, so they cannot use a ServiceAccount")));
    }
    if spec.service_account.as_deref().is_some_and(|s| !s.is_empty()) {
        out.push(("spec.serviceAccount".into(), format!("{NO_API}, so they cannot use a ServiceAccount")));
    }
    for (i, _) in spec.image_pull_secrets.iter().flatten().enumerate() {
        out.push((
            format!("spec.imagePullSecrets[{i}]"),
            format!("{NO_API}, so they cannot reference a Secret; configure registry credentials in the runtime instead"),
        ));
    }
    for (i, volume) in spec.volumes.iter().flatten().enumerate() {
        check_volume(&format!("spec.volumes[{i}]"), volume, &mut out);
    }
    for (list, containers) in [("initContainers", spec.init_containers.as_deref()), ("containers", Some(spec.containers.as_slice()))] {
        for (i, c) in containers.into_iter().flatten().enumerate() {
            check_container(&format!("spec.{list}[{i}]"), c, &mut out);
        }
    }
    if let Some(ephemeral) = spec.ephemeral_containers.as_ref().filter(|e| !e.is_empty()) {
        out.push(("spec.ephemeralContainers".into(), "static pods do not support ephemeral containers".into()));
        for (i, c) in ephemeral.iter().enumerate() {
            let path = format!("spec.ephemeralContainers[{i}]");
            for (j, env) in c.env.iter().flatten().enumerate() {
                check_env_source(&format!("{path}.env[{j}]"), env.value_from.as_ref(), &mut out);
            }
            for (j, from) in c.env_from.iter().flatten().enumerate() {
                check_env_from(&format!("{path}.envFrom[{j}]"), from.secret_ref.is_some(), from.config_map_ref.is_some(), &mut out);
            }
        }
    }
    if spec.resource_claims.as_ref().is_some_and(|c| !c.is_empty()) {
        out.push(("spec.resourceClaims".into(), format!("{NO_API}, so they cannot use ResourceClaims")));
    }
    out
}

fn check_container(path: &str, c: &Container, out: &mut Vec<(String, String)>) {
    for (j, env) in c.env.iter().flatten().enumerate() {
        check_env_source(&format!("{path}.env[{j}]"), env.value_from.as_ref(), out);
    }
    for (j, from) in c.env_from.iter().flatten().enumerate() {
        check_env_from(&format!("{path}.envFrom[{j}]"), from.secret_ref.is_some(), from.config_map_ref.is_some(), out);
    }
}

fn check_env_source(path: &str, from: Option<&k8s_openapi::api::core::v1::EnvVarSource>, out: &mut Vec<(String, String)>) {
    let Some(from) = from else { return };
    if from.secret_key_ref.is_some() {
        out.push((format!("{path}.valueFrom.secretKeyRef"), format!("{NO_API}, so they cannot reference a Secret")));
    }
    if from.config_map_key_ref.is_some() {
        out.push((format!("{path}.valueFrom.configMapKeyRef"), format!("{NO_API}, so they cannot reference a ConfigMap")));
    }
}

fn check_env_from(path: &str, secret: bool, config_map: bool, out: &mut Vec<(String, String)>) {
    if secret {
        out.push((format!("{path}.secretRef"), format!("{NO_API}, so they cannot reference a Secret")));
    }
    if config_map {
        out.push((format!("{path}.configMapRef"), format!("{NO_API}, so they cannot reference a ConfigMap")));
    }
}

fn check_volume(path: &str, v: &Volume, out: &mut Vec<(String, String)>) {
    let mut reject = |field: &str, why: String| out.push((format!("{path}.{field}"), why));
    if v.host_path.is_some() || v.empty_dir.is_some() || v.downward_api.is_some() || v.image.is_some() {
        return;
    }
    if v.secret.is_some() {
        reject("secret", format!("{NO_API}, so they cannot mount a Secret"));
    } else if v.config_map.is_some() {
        reject("configMap", format!("{NO_API}, so they cannot mount a ConfigMap"));
    } else if let Some(projected) = &v.projected {
        for (k, source) in projected.sources.iter().flatten().enumerate() {
            let at = format!("projected.sources[{k}]");
            if source.secret.is_some() {
                reject(&format!("{at}.secret"), format!("{NO_API}, so they cannot project a Secret"));
            }
            if source.config_map.is_some() {
                reject(&format!("{at}.configMap"), format!("{NO_API}, so they cannot project a ConfigMap"));
            }
            if source.service_account_token.is_some() {
                reject(&format!("{at}.serviceAccountToken"), format!("{NO_API}, so no ServiceAccount token can be issued"));
            }
            if source.cluster_trust_bundle.is_some() {
                reject(&format!("{at}.clusterTrustBundle"), format!("{NO_API}, so they cannot project a ClusterTrustBundle"));
            }
            if source.pod_certificate.is_some() {
                reject(&format!("{at}.podCertificate"), format!("{NO_API}, so no pod certificate can be issued"));
            }
        }
    } else if v.persistent_volume_claim.is_some() {
        reject("persistentVolumeClaim", format!("{NO_API}, so they cannot use a PersistentVolumeClaim"));
    } else if v.ephemeral.is_some() {
        reject("ephemeral", format!("{NO_API}, so they cannot use ephemeral volumes (they need a PersistentVolumeClaim)"));
    } else if v.csi.is_some() {
        reject("csi", "static pods cannot use CSI volumes: the node's CSI drivers need the API server".into());
    } else {
        out.push((
            path.to_owned(),
            format!("volume {:?} is not a type a static pod can use: only hostPath, emptyDir, downwardAPI and image are", v.name),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    fn fields(spec: serde_json::Value) -> Vec<String> {
        check(&pod(spec)).into_iter().map(|(field, _)| field).collect()
    }

    fn with_container(container: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"containers": [{"name": "ok", "image": "i"}, container]})
    }

    #[test]
    fn service_accounts_and_pull_secrets() {
        let spec = serde_json::json!({"serviceAccountName": "sa", "serviceAccount": "sa", "imagePullSecrets": [{"name": "a"}, {"name": "b"}], "containers": [{"name": "c", "image": "i"}]});
        assert_eq!(
            fields(spec),
            ["spec.serviceAccountName", "spec.serviceAccount", "spec.imagePullSecrets[0]", "spec.imagePullSecrets[1]"]
        );
        let (_, message) = &check(&pod(serde_json::json!({"serviceAccountName": "sa", "containers": []})))[0];
        assert_eq!(message, "static pods run without an API server, so they cannot use a ServiceAccount");
    }

    #[test]
    fn env_references_in_every_kind_of_container() {
        let env = serde_json::json!([
            {"name": "A", "value": "plain"},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "m", "key": "k"}}},
            {"name": "D", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
        ]);
        let env_from = serde_json::json!([{"secretRef": {"name": "s"}}, {"configMapRef": {"name": "m"}}]);
        let spec = serde_json::json!({
            "initContainers": [{"name": "i", "image": "i", "env": env, "envFrom": env_from}],
            "containers": [{"name": "ok", "image": "i"}, {"name": "c", "image": "i", "env": env, "envFrom": env_from}],
            "ephemeralContainers": [{"name": "e", "image": "i", "env": env, "envFrom": env_from}]
        });
        assert_eq!(
            fields(spec),
            [
                "spec.initContainers[0].env[1].valueFrom.secretKeyRef",
                "spec.initContainers[0].env[2].valueFrom.configMapKeyRef",
                "spec.initContainers[0].envFrom[0].secretRef",
                "spec.initContainers[0].envFrom[1].configMapRef",
                "spec.containers[1].env[1].valueFrom.secretKeyRef",
                "spec.containers[1].env[2].valueFrom.configMapKeyRef",
                "spec.containers[1].envFrom[0].secretRef",
                "spec.containers[1].envFrom[1].configMapRef",
                "spec.ephemeralContainers",
                "spec.ephemeralContainers[0].env[1].valueFrom.secretKeyRef",
                "spec.ephemeralContainers[0].env[2].valueFrom.configMapKeyRef",
                "spec.ephemeralContainers[0].envFrom[0].secretRef",
                "spec.ephemeralContainers[0].envFrom[1].configMapRef",
            ]
        );
    }

    #[test]
    fn volumes() {
        let spec = serde_json::json!({
            "containers": [{"name": "c", "image": "i"}],
            "volumes": [
                {"name": "host", "hostPath": {"path": "/srv"}},
                {"name": "scratch", "emptyDir": {}},
                {"name": "meta", "downwardAPI": {"items": []}},
                {"name": "img", "image": {"reference": "r"}},
                {"name": "s", "secret": {"secretName": "s"}},
                {"name": "m", "configMap": {"name": "m"}},
                {"name": "p", "projected": {"sources": [
                    {"secret": {"name": "s"}},
                    {"configMap": {"name": "m"}},
                    {"serviceAccountToken": {"path": "t"}},
                    {"clusterTrustBundle": {"path": "b", "name": "n"}},
                    {"podCertificate": {"signerName": "x/y", "keyType": "ED25519", "credentialBundlePath": "c"}},
                    {"downwardAPI": {"items": []}}
                ]}},
                {"name": "pvc", "persistentVolumeClaim": {"claimName": "c"}},
                {"name": "eph", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                {"name": "csi", "csi": {"driver": "d"}},
                {"name": "nfs", "nfs": {"server": "s", "path": "/"}},
                {"name": "nothing"}
            ]
        });
        assert_eq!(
            fields(spec),
            [
                "spec.volumes[4].secret",
                "spec.volumes[5].configMap",
                "spec.volumes[6].projected.sources[0].secret",
                "spec.volumes[6].projected.sources[1].configMap",
                "spec.volumes[6].projected.sources[2].serviceAccountToken",
                "spec.volumes[6].projected.sources[3].clusterTrustBundle",
                "spec.volumes[6].projected.sources[4].podCertificate",
                "spec.volumes[7].persistentVolumeClaim",
                "spec.volumes[8].ephemeral",
                "spec.volumes[9].csi",
                "spec.volumes[10]",
                "spec.volumes[11]",
            ]
        );
    }

    #[test]
    fn resource_claims_and_a_clean_pod() {
        let claims = serde_json::json!({"containers": [{"name": "c", "image": "i"}], "resourceClaims": [{"name": "gpu"}]});
        assert_eq!(fields(claims), ["spec.resourceClaims"]);
        assert!(fields(with_container(serde_json::json!({"name": "c2", "image": "i", "env": [{"name": "X", "value": "y"}]}))).is_empty());
    }
}
