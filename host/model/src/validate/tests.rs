use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::*;
use crate::defaults;

/// A pod from JSON with `spec` merged over one valid container, optionally defaulted.
fn raw_pod(spec: Value) -> Pod {
    let mut base = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}});
    if let (Value::Object(target), Value::Object(extra)) = (&mut base["spec"], spec) {
        target.extend(extra);
    }
    serde_json::from_value(base).unwrap()
}

fn pod(spec: Value) -> Pod {
    let mut pod = raw_pod(spec);
    defaults::apply(&mut pod);
    pod
}

fn render(errors: Vec<FieldError>) -> Vec<String> {
    errors.into_iter().map(|e| format!("{}: {}", e.path, e.message)).collect()
}

fn errors(spec: Value) -> Vec<String> {
    render(validate_pod(&pod(spec)))
}

#[track_caller]
fn assert_one(spec: Value, expected: &str) {
    let found = errors(spec);
    assert!(found.iter().any(|e| e == expected), "expected {expected:?} in {found:#?}");
}

#[track_caller]
fn assert_valid(spec: Value) {
    assert_eq!(errors(spec), Vec::<String>::new());
}

fn container(extra: Value) -> Value {
    let mut c = json!({"name": "c", "image": "i:1"});
    if let (Value::Object(target), Value::Object(extra)) = (&mut c, extra) {
        target.extend(extra);
    }
    json!({"containers": [c]})
}

#[test]
fn a_plain_pod_is_valid() {
    assert_valid(json!({}));
}

#[test]
fn pod_name_is_a_dns_subdomain_with_its_length() {
    let mut bad = pod(json!({}));
    bad.metadata.name = Some(format!("{}-node", "a".repeat(250)));
    assert_eq!(
        render(validate_pod(&bad)),
        [format!("metadata.name: Invalid value: \"{}-node\": must be no more than 253 characters", "a".repeat(250))]
    );
    bad.metadata.name = Some("Web_1".into());
    assert_eq!(
        render(validate_pod(&bad)),
        [
            "metadata.name: Invalid value: \"Web_1\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        ]
    );
    bad.metadata.name = None;
    assert_eq!(render(validate_pod(&bad)), ["metadata.name: Required value: name or generateName is required"]);
    // A subdomain's labels have no length of their own: a control-plane pod on a node whose
    // FQDN's first label is long is valid, as the API server has it.
    let mut long = pod(json!({}));
    long.metadata.name = Some(format!("kube-apiserver-{}.eu-central-1.compute.internal", "x".repeat(57)));
    assert!(validate_pod(&long).is_empty(), "{:?}", render(validate_pod(&long)));
}

#[test]
fn namespace_is_a_dns_label() {
    let mut bad = pod(json!({}));
    bad.metadata.namespace = Some("kube.system".into());
    assert_eq!(render(validate_pod(&bad)), ["metadata.namespace: Invalid value: \"kube.system\": must not contain dots"]);
    bad.metadata.namespace = Some("a".repeat(64));
    assert_eq!(
        render(validate_pod(&bad))[0],
        format!("metadata.namespace: Invalid value: \"{}\": must be no more than 63 characters", "a".repeat(64))
    );
}

#[test]
fn a_given_uid_must_be_one_safe_path_component() {
    for bad in ["../../etc", "a/b", "..", "", "x y"] {
        let mut pod = pod(json!({}));
        pod.metadata.uid = Some(bad.into());
        let found: Vec<_> = validate_pod(&pod).into_iter().map(|e| e.path).collect();
        assert_eq!(found, ["metadata.uid"], "{bad:?}");
    }
}

#[test]
fn label_keys_and_values_follow_the_qualified_name_rule() {
    let mut bad = pod(json!({}));
    bad.metadata.labels = Some(BTreeMap::from([
        ("ok".into(), "-bad".into()),
        (format!("{}/x", "a".repeat(254)), "v".into()),
        (format!("example.com/{}", "n".repeat(64)), "v".into()),
        ("a/b/c".into(), "v".into()),
    ]));
    let found = render(validate_pod(&bad));
    assert!(
        found.contains(&format!(
            "metadata.labels: Invalid value: \"{}/x\": prefix part must be no more than 253 characters",
            "a".repeat(254)
        )),
        "{found:#?}"
    );
    assert!(found.contains(&format!(
        "metadata.labels: Invalid value: \"example.com/{}\": name part must be no more than 63 characters",
        "n".repeat(64)
    )));
    assert!(found.contains(&"metadata.labels: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".to_owned()));
    assert!(found.contains(&"metadata.labels: Invalid value: \"-bad\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".to_owned()));
}

#[test]
fn annotations_keys_and_total_size() {
    let mut bad = pod(json!({}));
    bad.metadata.annotations = Some(BTreeMap::from([("Example.COM/Key".into(), "v".into()), ("big".into(), "x".repeat(256 * 1024))]));
    assert_eq!(render(validate_pod(&bad)), ["metadata.annotations: Too long: must have at most 262144 bytes"]);
    bad.metadata.annotations = Some(BTreeMap::from([("controller.kubernetes.io/pod-deletion-cost".into(), "+1".into())]));
    assert_eq!(
        render(validate_pod(&bad)),
        ["metadata.annotations[controller.kubernetes.io/pod-deletion-cost]: Invalid value: \"+1\": must be a 32bit integer"]
    );
}

#[test]
fn finalizers_must_be_standard_or_qualified() {
    let mut bad = pod(json!({}));
    bad.metadata.finalizers = Some(vec!["kubernetes".into(), "mine".into(), "example.com/mine".into()]);
    assert_eq!(
        render(validate_pod(&bad)),
        ["metadata.finalizers: Invalid value: \"mine\": name is neither a standard finalizer name nor is it fully qualified"]
    );
}

#[test]
fn container_names_are_unique_dns_labels() {
    assert_one(
        container(json!({"name": "A"})),
        "spec.containers[0].name: Invalid value: \"A\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
    );
    assert_one(json!({"initContainers": [{"name": "c", "image": "i"}]}), "spec.initContainers[0].name: Duplicate value: \"c\"");
    assert_one(json!({"containers": [{"name": "c"}]}), "spec.containers[0].image: Required value");
    assert_one(json!({"containers": []}), "spec.containers: Required value");
    assert_one(
        container(json!({"image": " i:1"})),
        "spec.containers[0].image: Invalid value: \" i:1\": must not have leading or trailing whitespace",
    );
    assert_one(
        container(json!({"imagePullPolicy": "Sometimes"})),
        "spec.containers[0].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
    );
    assert_one(
        container(json!({"terminationMessagePolicy": "Log"})),
        "spec.containers[0].terminationMessagePolicy: Unsupported value: \"Log\": supported values: \"File\", \"FallbackToLogsOnError\"",
    );
}

#[test]
fn ports() {
    assert_one(
        container(json!({"ports": [{"containerPort": 70000}]})),
        "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
    );
    assert_one(container(json!({"ports": [{"containerPort": 0}]})), "spec.containers[0].ports[0].containerPort: Required value");
    assert_one(
        container(json!({"ports": [{"containerPort": 80, "hostPort": 65536}]})),
        "spec.containers[0].ports[0].hostPort: Invalid value: 65536: must be between 1 and 65535, inclusive",
    );
    assert_one(
        container(json!({"ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 81, "name": "http"}]})),
        "spec.containers[0].ports[1].name: Duplicate value: \"http\"",
    );
    let found = errors(container(json!({"ports": [{"containerPort": 80, "name": "-very--long-port-name"}]})));
    assert_eq!(
        found,
        [
            "spec.containers[0].ports[0].name: Invalid value: \"-very--long-port-name\": must be no more than 15 characters",
            "spec.containers[0].ports[0].name: Invalid value: \"-very--long-port-name\": must not contain consecutive hyphens",
            "spec.containers[0].ports[0].name: Invalid value: \"-very--long-port-name\": must not begin or end with a hyphen",
        ]
    );
    assert_one(
        container(json!({"ports": [{"containerPort": 80, "protocol": "HTTP"}]})),
        "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
    );
}

#[test]
fn host_ports_are_unique_among_app_containers_and_within_each_init_container() {
    assert_one(
        json!({"containers": [{"name": "a", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}]}, {"name": "b", "image": "i", "ports": [{"containerPort": 81, "hostPort": 8080}]}]}),
        "spec.containers[1].ports[0].hostPort: Duplicate value: \"TCP//8080\"",
    );
    // Init containers run one at a time, so they may reuse an app container's host port.
    assert_valid(json!({
        "initContainers": [{"name": "i", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}]}],
        "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}]}]
    }));
    assert_one(
        json!({"hostNetwork": true, "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 81}]}]}),
        "spec.containers[0].ports[0].hostPort: Invalid value: 81: must match `containerPort` when `hostNetwork` is true",
    );
}

#[test]
fn env_names_use_the_relaxed_rule() {
    assert_valid(container(json!({"env": [{"name": "1-weird.NAME with space", "value": "x"}]})));
    assert_one(
        container(json!({"env": [{"name": "A=B", "value": "x"}]})),
        "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
    );
    assert_one(container(json!({"env": [{"name": "", "value": "x"}]})), "spec.containers[0].env[0].name: Required value");
    assert_one(
        container(json!({"envFrom": [{"prefix": "é"}]})),
        "spec.containers[0].envFrom[0].prefix: Invalid value: \"é\": a valid environment variable name must consist only of printable ASCII characters other than '='",
    );
    assert_one(
        container(json!({"envFrom": [{}]})),
        "spec.containers[0].envFrom: Invalid value: \"\": must specify one of: `configMapRef` or `secretRef`",
    );
}

#[test]
fn env_value_from() {
    assert_one(
        container(json!({"env": [{"name": "A", "valueFrom": {}}]})),
        "spec.containers[0].env[0].valueFrom: Invalid value: \"\": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef`, `secretKeyRef` or `fileKeyRef`",
    );
    assert_one(
        container(json!({"env": [{"name": "A", "value": "v", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]})),
        "spec.containers[0].env[0].valueFrom: Invalid value: \"\": may not be specified when `value` is not empty",
    );
}

#[test]
fn env_field_ref_paths() {
    let field_ref = |path: &str| container(json!({"env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": path}}}]}));
    for ok in [
        "metadata.name",
        "metadata.uid",
        "status.podIPs",
        "spec.nodeName",
        "metadata.labels['app']",
        "metadata.annotations['Example.com/X']",
        "spec.host",
    ] {
        assert_valid(field_ref(ok));
    }
    assert_one(
        field_ref("metadata.labels"),
        "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: \"metadata.labels\": supported values: \"metadata.name\", \"metadata.namespace\", \"metadata.uid\", \"spec.nodeName\", \"spec.serviceAccountName\", \"status.hostIP\", \"status.hostIPs\", \"status.podIP\", \"status.podIPs\"",
    );
    assert_one(
        field_ref("spec.containers"),
        "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Invalid value: \"spec.containers\": error converting fieldPath: field label not supported: spec.containers",
    );
    assert_one(
        field_ref("metadata.name['x']"),
        "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Invalid value: \"metadata.name['x']\": error converting fieldPath: field label does not support subscript: metadata.name['x']",
    );
    assert_one(
        field_ref("metadata.labels['-x']"),
        "spec.containers[0].env[0].valueFrom.fieldRef: Invalid value: \"-x\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
    );
    assert_one(
        container(json!({"env": [{"name": "A", "valueFrom": {"fieldRef": {"apiVersion": "v2", "fieldPath": "metadata.name"}}}]})),
        "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Invalid value: \"metadata.name\": error converting fieldPath: unsupported pod version: v2",
    );
}

#[test]
fn env_resource_field_ref() {
    let resource_ref = |r: Value| container(json!({"env": [{"name": "A", "valueFrom": {"resourceFieldRef": r}}]}));
    assert_valid(resource_ref(json!({"resource": "limits.memory", "divisor": "1Mi"})));
    assert_valid(resource_ref(json!({"resource": "requests.hugepages-2Mi"})));
    assert_one(
        resource_ref(json!({"resource": "limits.gpu"})),
        "spec.containers[0].env[0].valueFrom.resourceFieldRef.resource: Unsupported value: \"limits.gpu\": supported values: \"limits.cpu\", \"limits.ephemeral-storage\", \"limits.memory\", \"requests.cpu\", \"requests.ephemeral-storage\", \"requests.memory\"",
    );
    assert_one(resource_ref(json!({"resource": ""})), "spec.containers[0].env[0].valueFrom.resourceFieldRef.resource: Required value");
    assert_one(
        resource_ref(json!({"resource": "limits.cpu", "divisor": "2"})),
        "spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor: Invalid value: \"limits.cpu\": only divisor's values 1m and 1 are supported with the cpu resource",
    );
}

#[test]
fn volume_mounts() {
    let with_volume = |mounts: Value| json!({"volumes": [{"name": "v", "emptyDir": {}}], "containers": [{"name": "c", "image": "i", "volumeMounts": mounts}]});
    assert_one(
        json!({"containers": [{"name": "c", "image": "i", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}]}),
        "spec.containers[0].volumeMounts[0].name: Not found: \"nope\"",
    );
    assert_one(with_volume(json!([{"name": "v", "mountPath": ""}])), "spec.containers[0].volumeMounts[0].mountPath: Required value");
    assert_one(
        with_volume(json!([{"name": "v", "mountPath": "/x"}, {"name": "v", "mountPath": "/x"}])),
        "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/x\": must be unique",
    );
    // subPath errors sit on the list's path, as upstream reports them.
    assert_one(
        with_volume(json!([{"name": "v", "mountPath": "/x", "subPath": "../etc"}])),
        "spec.containers[0].volumeMounts.subPath: Invalid value: \"../etc\": must not contain '..'",
    );
    assert_one(
        with_volume(json!([{"name": "v", "mountPath": "/x", "subPath": "/etc"}])),
        "spec.containers[0].volumeMounts.subPath: Invalid value: \"/etc\": must be a relative path",
    );
    assert_one(
        with_volume(json!([{"name": "v", "mountPath": "/x", "subPath": "a", "subPathExpr": "$(X)"}])),
        "spec.containers[0].volumeMounts[0].subPathExpr: Invalid value: \"$(X)\": subPathExpr and subPath are mutually exclusive",
    );
    assert_one(
        with_volume(json!([{"name": "v", "mountPath": "/x", "mountPropagation": "Bidirectional"}])),
        "spec.containers[0].volumeMounts.mountPropagation: Forbidden: Bidirectional mount propagation is available only to privileged containers",
    );
    assert_one(
        with_volume(json!([{"name": "v", "mountPath": "/x", "recursiveReadOnly": "Enabled"}])),
        "spec.containers[0].volumeMounts.recursiveReadOnly: Forbidden: may only be specified when readOnly is true",
    );
}

#[test]
fn volume_devices_need_a_claim() {
    assert_one(
        json!({"volumes": [{"name": "v", "emptyDir": {}}], "containers": [{"name": "c", "image": "i", "volumeDevices": [{"name": "v", "devicePath": "/dev/../x"}]}]}),
        "spec.containers[0].volumeDevices[0].name: Invalid value: \"v\": can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
    );
    assert_one(
        json!({"volumes": [{"name": "v", "emptyDir": {}}], "containers": [{"name": "c", "image": "i", "volumeDevices": [{"name": "v", "devicePath": "/dev/../x"}]}]}),
        "spec.containers[0].volumeDevices[0].devicePath: Invalid value: \"/dev/../x\": can not contain backsteps ('..')",
    );
}

#[test]
fn volumes() {
    // Defaulting makes a sourceless volume an emptyDir; the rule is for a pod that skipped it.
    let sourceless = raw_pod(json!({"volumes": [{"name": "v"}]}));
    assert!(render(validate_pod(&sourceless)).contains(&"spec.volumes[0]: Required value: must specify a volume type".to_owned()));
    assert_one(
        json!({"volumes": [{"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}]}),
        "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type",
    );
    assert_one(
        json!({"volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]}),
        "spec.volumes[1].name: Duplicate value: \"v\"",
    );
    assert_one(json!({"volumes": [{"name": "", "emptyDir": {}}]}), "spec.volumes[0].name: Required value");
    assert_one(
        json!({"volumes": [{"name": "v", "emptyDir": {"sizeLimit": "-1"}}]}),
        "spec.volumes[0].emptyDir.sizeLimit: Forbidden: SizeLimit field must be a valid resource quantity",
    );
    assert_one(json!({"volumes": [{"name": "v", "image": {}}]}), "spec.volumes[0].image.reference: Required value");
    assert_one(
        json!({"volumes": [{"name": "v", "emptyDir": {"medium": "Disk"}}]}),
        "spec.volumes[0].emptyDir.medium: Unsupported value: \"Disk\": supported values: \"\", \"Memory\", \"HugePages\", \"HugePages-<size>\"",
    );
    for medium in ["Memory", "HugePages-2Mi"] {
        assert!(validate_pod(&pod(json!({"volumes": [{"name": "v", "emptyDir": {"medium": medium}}]}))).is_empty(), "{medium}");
    }
}

#[test]
fn host_path_volumes() {
    assert_one(
        json!({"volumes": [{"name": "v", "hostPath": {"path": "/var/../etc"}}]}),
        "spec.volumes[0].hostPath.path: Invalid value: \"/var/../etc\": must not contain '..'",
    );
    assert_one(json!({"volumes": [{"name": "v", "hostPath": {"path": ""}}]}), "spec.volumes[0].hostPath.path: Required value");
    assert_one(
        json!({"volumes": [{"name": "v", "hostPath": {"path": "/x", "type": "Dir"}}]}),
        "spec.volumes[0].hostPath.type: Unsupported value: \"Dir\": supported values: \"\", \"BlockDevice\", \"CharDevice\", \"Directory\", \"DirectoryOrCreate\", \"File\", \"FileOrCreate\", \"Socket\"",
    );
    assert_valid(json!({"volumes": [{"name": "v", "hostPath": {"path": "/var/..data"}}]}));
}

#[test]
fn downward_api_volumes() {
    let downward = |items: Value| json!({"volumes": [{"name": "v", "downwardAPI": {"items": items}}]});
    assert_valid(downward(json!([{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}])));
    assert_one(
        downward(json!([{"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}}])),
        "spec.volumes[0].downwardAPI.fieldRef.fieldPath: Unsupported value: \"status.podIP\": supported values: \"metadata.annotations\", \"metadata.labels\", \"metadata.name\", \"metadata.namespace\", \"metadata.uid\"",
    );
    assert_one(
        downward(json!([{"path": "/abs", "fieldRef": {"fieldPath": "metadata.name"}}])),
        "spec.volumes[0].downwardAPI.path: Invalid value: \"/abs\": must be a relative path",
    );
    assert_one(
        downward(json!([{"path": "..x", "fieldRef": {"fieldPath": "metadata.name"}}])),
        "spec.volumes[0].downwardAPI.path: Invalid value: \"..x\": must not start with '..'",
    );
    assert_one(
        downward(json!([{"path": "cpu", "resourceFieldRef": {"resource": "limits.cpu"}}])),
        "spec.volumes[0].downwardAPI.resourceFieldRef.containerName: Required value",
    );
    assert_one(
        downward(json!([{"path": "x"}])),
        "spec.volumes[0].downwardAPI: Required value: one of fieldRef and resourceFieldRef is required",
    );
    assert_one(
        downward(json!([{"path": "x", "mode": 1024, "fieldRef": {"fieldPath": "metadata.name"}}])),
        "spec.volumes[0].downwardAPI.mode: Invalid value: 1024: must be a number between 0 and 0777 (octal), both inclusive",
    );
}

#[test]
fn resources() {
    let resources = |r: Value| container(json!({"resources": r}));
    assert_one(
        resources(json!({"limits": {"cpu": "500m"}, "requests": {"cpu": "1"}})),
        "spec.containers[0].resources.requests: Invalid value: \"1\": must be less than or equal to cpu limit of 500m",
    );
    assert_one(
        resources(json!({"requests": {"memory": "-1"}})),
        "spec.containers[0].resources.requests[memory]: Invalid value: \"-1\": must be greater than or equal to 0",
    );
    assert_one(
        resources(json!({"requests": {"gpu": "1"}})),
        "spec.containers[0].resources.requests[gpu]: Invalid value: gpu: must be a standard resource type or fully qualified",
    );
    assert_one(
        resources(json!({"requests": {"pods": "1"}})),
        "spec.containers[0].resources.requests[pods]: Invalid value: pods: must be a standard resource for containers",
    );
    assert_one(
        resources(json!({"limits": {"example.com/gpu": "2"}, "requests": {"example.com/gpu": "1"}})),
        "spec.containers[0].resources.requests: Invalid value: \"1\": must be equal to example.com/gpu limit of 2",
    );
    assert_one(
        resources(json!({"limits": {"example.com/gpu": "500m"}})),
        "spec.containers[0].resources.limits[example.com/gpu]: Invalid value: 500m: must be an integer",
    );
    assert_one(
        resources(json!({"limits": {"hugepages-2Mi": "3Mi", "memory": "1Gi"}})),
        "spec.containers[0].resources.limits[hugepages-2Mi]: Invalid value: \"3Mi\": 3Mi is not positive integer multiple of hugepages-2Mi",
    );
    assert_one(
        resources(json!({"limits": {"hugepages-2Mi": "4Mi"}})),
        "spec.containers[0].resources: Forbidden: HugePages require cpu or memory",
    );
    assert_valid(resources(
        json!({"limits": {"cpu": 2, "memory": "1Gi", "hugepages-2Mi": "4Mi"}, "requests": {"cpu": "1500m", "memory": "1Gi"}}),
    ));
    assert_one(json!({"overhead": {"cpu": "-1"}}), "spec.overhead.limits[cpu]: Invalid value: \"-1\": must be greater than or equal to 0");
}

#[test]
fn resize_policy() {
    assert_one(
        json!({"restartPolicy": "Never", "containers": [{"name": "c", "image": "i", "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "RestartContainer"}]}]}),
        "spec.containers[0].resizePolicy: Invalid value: \"RestartContainer\": must be 'NotRequired' when `restartPolicy` is 'Never'",
    );
}

#[test]
fn probe_handlers() {
    assert_one(
        container(json!({"livenessProbe": {"periodSeconds": 5}})),
        "spec.containers[0].livenessProbe: Required value: must specify a handler type",
    );
    assert_one(
        container(json!({"livenessProbe": {"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}}})),
        "spec.containers[0].livenessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
    );
    assert_one(container(json!({"livenessProbe": {"exec": {}}})), "spec.containers[0].livenessProbe.exec.command: Required value");
    assert_one(
        container(json!({"readinessProbe": {"httpGet": {"port": 0}}})),
        "spec.containers[0].readinessProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive",
    );
    assert_one(
        container(json!({"readinessProbe": {"httpGet": {"port": 80, "scheme": "FTP"}}})),
        "spec.containers[0].readinessProbe.httpGet.scheme: Unsupported value: \"FTP\": supported values: \"HTTP\", \"HTTPS\"",
    );
    assert_one(
        container(json!({"readinessProbe": {"httpGet": {"port": 80, "httpHeaders": [{"name": "X Y", "value": "v"}]}}})),
        "spec.containers[0].readinessProbe.httpGet.httpHeaders: Invalid value: \"X Y\": a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')",
    );
    assert_one(
        container(json!({"startupProbe": {"grpc": {"port": 70000}}})),
        "spec.containers[0].startupProbe.grpc.port: Invalid value: 70000: must be between 1 and 65535, inclusive",
    );
}

#[test]
fn probe_numbers() {
    assert_one(
        container(json!({"livenessProbe": {"exec": {"command": ["true"]}, "successThreshold": 2}})),
        "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
    );
    assert_one(
        container(json!({"startupProbe": {"exec": {"command": ["true"]}, "successThreshold": 3}})),
        "spec.containers[0].startupProbe.successThreshold: Invalid value: 3: must be 1",
    );
    assert_valid(container(json!({"readinessProbe": {"exec": {"command": ["true"]}, "successThreshold": 2}})));
    assert_one(
        container(json!({"readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": -1}})),
        "spec.containers[0].readinessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0",
    );
    assert_one(
        container(json!({"livenessProbe": {"exec": {"command": ["true"]}, "terminationGracePeriodSeconds": 0}})),
        "spec.containers[0].livenessProbe.terminationGracePeriodSeconds: Invalid value: 0: must be greater than 0",
    );
    assert_one(
        container(json!({"readinessProbe": {"exec": {"command": ["true"]}, "terminationGracePeriodSeconds": 5}})),
        "spec.containers[0].readinessProbe.terminationGracePeriodSeconds: Invalid value: 5: must not be set for readinessProbes",
    );
}

#[test]
fn lifecycle_and_sidecars() {
    assert_one(
        container(json!({"lifecycle": {"preStop": {}}})),
        "spec.containers[0].lifecycle.preStop: Required value: must specify a handler type",
    );
    assert_one(
        container(json!({"lifecycle": {"preStop": {"sleep": {"seconds": 60}}}})),
        "spec.containers[0].lifecycle.preStop.sleep: Invalid value: 60: must be non-negative and less than terminationGracePeriodSeconds (30)",
    );
    assert_valid(container(json!({"lifecycle": {"preStop": {"sleep": {"seconds": 0}}, "postStart": {"httpGet": {"port": "http"}}}})));
    assert_one(
        json!({"initContainers": [{"name": "i", "image": "i", "livenessProbe": {"exec": {"command": ["true"]}}}]}),
        "spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
    );
    assert_valid(
        json!({"initContainers": [{"name": "s", "image": "i", "restartPolicy": "Always", "livenessProbe": {"exec": {"command": ["true"]}}}]}),
    );
    assert_one(
        json!({"initContainers": [{"name": "s", "image": "i", "restartPolicy": "Never"}]}),
        "spec.initContainers[0].restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
    );
    assert_one(
        container(json!({"restartPolicy": "Always"})),
        "spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers",
    );
}

#[test]
fn container_security_context() {
    let sc = |s: Value| container(json!({"securityContext": s}));
    assert_one(
        sc(json!({"privileged": true, "allowPrivilegeEscalation": false})),
        "spec.containers[0].securityContext: Invalid value: {\"allowPrivilegeEscalation\":false,\"privileged\":true}: cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
    );
    assert_one(
        sc(json!({"allowPrivilegeEscalation": false, "capabilities": {"add": ["CAP_SYS_ADMIN"]}})),
        "spec.containers[0].securityContext: Invalid value: {\"allowPrivilegeEscalation\":false,\"capabilities\":{\"add\":[\"CAP_SYS_ADMIN\"]}}: cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
    );
    assert_valid(sc(json!({"privileged": true})));
    assert_one(
        sc(json!({"runAsUser": -1})),
        "spec.containers[0].securityContext.runAsUser: Invalid value: -1: must be between 0 and 4294967295, inclusive",
    );
    assert_one(
        sc(json!({"procMount": "Unmasked"})),
        "spec.containers[0].securityContext.procMount: Invalid value: \"Unmasked\": `hostUsers` must be false to use `Unmasked`",
    );
    assert_one(
        sc(json!({"seccompProfile": {"type": "Localhost"}})),
        "spec.containers[0].securityContext.seccompProfile.localhostProfile: Required value: must be set when seccomp type is Localhost",
    );
    assert_one(
        sc(json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "../x.json"}})),
        "spec.containers[0].securityContext.seccompProfile.localhostProfile: Invalid value: \"../x.json\": must not contain '..'",
    );
    assert_one(
        sc(json!({"appArmorProfile": {"type": "Localhost", "localhostProfile": " p"}})),
        "spec.containers[0].securityContext.appArmorProfile.localhostProfile: Invalid value: \" p\": must not be padded with whitespace",
    );
}

#[test]
fn pod_security_context() {
    assert_one(
        json!({"securityContext": {"fsGroup": 4294967296_i64}}),
        "spec.securityContext.fsGroup: Invalid value: 4294967296: must be between 0 and 4294967295, inclusive",
    );
    assert_one(
        json!({"shareProcessNamespace": true, "hostPID": true}),
        "spec.securityContext.shareProcessNamespace: Invalid value: true: ShareProcessNamespace and HostPID cannot both be enabled",
    );
    assert_one(
        json!({"securityContext": {"sysctls": [{"name": "Net.X", "value": "1"}]}}),
        "spec.securityContext.sysctls[0].name: Invalid value: \"Net.X\": must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$",
    );
    assert_one(
        json!({"hostNetwork": true, "securityContext": {"sysctls": [{"name": "net/ipv4/ip_forward", "value": "1"}]}}),
        "spec.securityContext.sysctls[0].name: Invalid value: \"net/ipv4/ip_forward\": may not be specified when 'hostNetwork' is true",
    );
    assert_one(
        json!({"securityContext": {"fsGroupChangePolicy": "Sometimes"}}),
        "spec.securityContext.fsGroupChangePolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnRootMismatch\"",
    );
    assert_one(json!({"hostUsers": false, "hostNetwork": true}), "spec.hostNetwork: Forbidden: when `pod.Spec.HostUsers` is false");
}

#[test]
fn os_field() {
    assert_one(json!({"os": {"name": "plan9"}}), "spec.os: Unsupported value: \"plan9\": supported values: \"linux\", \"windows\"");
    assert_one(
        json!({"os": {"name": "windows"}, "containers": [{"name": "c", "image": "i", "securityContext": {"privileged": true}}]}),
        "spec.containers[0].securityContext.privileged: Forbidden: cannot be set for a windows pod",
    );
    assert_one(
        json!({"os": {"name": "linux"}, "securityContext": {"windowsOptions": {"runAsUserName": "x"}}}),
        "spec.securityContext.windowsOptions: Forbidden: windows options cannot be set for a linux pod",
    );
}

#[test]
fn seccomp_and_apparmor_annotations() {
    let mut bad = pod(json!({"containers": [{"name": "c", "image": "i", "securityContext": {"seccompProfile": {"type": "Unconfined"}}}]}));
    bad.metadata.annotations = Some(BTreeMap::from([
        ("container.seccomp.security.alpha.kubernetes.io/c".into(), "runtime/default".into()),
        ("seccomp.security.alpha.kubernetes.io/pod".into(), "bogus".into()),
        ("container.apparmor.security.beta.kubernetes.io/nope".into(), "runtime/default".into()),
    ]));
    let found = render(validate_pod(&bad));
    assert_eq!(
        found,
        [
            "metadata.annotations[container.apparmor.security.beta.kubernetes.io/nope]: Invalid value: \"nope\": container not found",
            "metadata.annotations.seccomp.security.alpha.kubernetes.io/pod: Invalid value: \"bogus\": must be a valid seccomp profile",
            "spec.containers[0].securityContext.seccompProfile.type: Forbidden: seccomp type in annotation and field must match",
        ]
    );
}

#[test]
fn pod_level_fields() {
    assert_one(
        json!({"restartPolicy": "Sometimes"}),
        "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
    );
    assert_one(
        json!({"dnsPolicy": "Cluster"}),
        "spec.dnsPolicy: Unsupported value: \"Cluster\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
    );
    assert_one(
        json!({"activeDeadlineSeconds": 0}),
        "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive",
    );
    assert_one(json!({"hostname": "a.b"}), "spec.hostname: Invalid value: \"a.b\": must not contain dots");
    assert_one(
        json!({"priorityClassName": "High"}),
        "spec.priorityClassName: Invalid value: \"High\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
    );
    assert_one(
        json!({"preemptionPolicy": "Always"}),
        "spec.preemptionPolicy: Unsupported value: \"Always\": supported values: \"PreemptLowerPriority\", \"Never\"",
    );
    assert_one(
        json!({"readinessGates": [{"conditionType": "a/b/c"}]}),
        "spec.readinessGates[0].conditionType: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
    );
    assert_one(
        json!({"ephemeralContainers": [{"name": "e", "image": "i"}]}),
        "spec.ephemeralContainers: Forbidden: cannot be set on create",
    );
    let mut gated = pod(json!({"schedulingGates": [{"name": "g"}, {"name": "g"}]}));
    gated.spec.as_mut().unwrap().node_name = Some("node".into());
    let found = render(validate_pod(&gated));
    assert!(found.contains(&"spec.schedulingGates[1]: Duplicate value: \"g\"".to_owned()), "{found:#?}");
    assert!(found.contains(&"spec.nodeName: Forbidden: cannot be set until all schedulingGates have been cleared".to_owned()));
}

#[test]
fn dns_config_and_host_aliases() {
    assert_one(json!({"dnsPolicy": "None"}), "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None");
    assert_one(
        json!({"dnsPolicy": "None", "dnsConfig": {}}),
        "spec.dnsConfig.nameservers: Required value: must provide at least one DNS nameserver when `dnsPolicy` is None",
    );
    assert_one(
        json!({"dnsConfig": {"nameservers": ["1.1.1.1", "x"]}}),
        "spec.dnsConfig.nameservers[1]: Invalid value: \"x\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
    );
    assert_one(
        json!({"dnsConfig": {"nameservers": ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4"]}}),
        "spec.dnsConfig.nameservers: Invalid value: []string{\"1.1.1.1\", \"1.1.1.2\", \"1.1.1.3\", \"1.1.1.4\"}: must not have more than 3 nameservers",
    );
    assert_valid(json!({"dnsConfig": {"searches": ["_srv.example.com.", "."], "options": [{"name": "ndots", "value": "2"}]}}));
    assert_one(json!({"dnsConfig": {"options": [{"value": "2"}]}}), "spec.dnsConfig.options[0]: Required value: must not be empty");
    assert_one(
        json!({"hostAliases": [{"ip": "nope", "hostnames": ["a"]}]}),
        "spec.hostAliases[0].ip: Invalid value: \"nope\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
    );
    assert_one(
        json!({"hostAliases": [{"ip": "1.2.3.4", "hostnames": ["A_b"]}]}),
        "spec.hostAliases[0].hostnames[0]: Invalid value: \"A_b\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
    );
}

#[test]
fn tolerations_affinity_and_spread() {
    assert_one(
        json!({"tolerations": [{"key": "", "operator": "Equal"}]}),
        "spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
    );
    assert_one(
        json!({"tolerations": [{"key": "k", "tolerationSeconds": 5}]}),
        "spec.tolerations[0].effect: Invalid value: \"\": effect must be 'NoExecute' when `tolerationSeconds` is set",
    );
    assert_one(
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}}),
        "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: Required value: must have at least one node selector term",
    );
    assert_one(
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "In"}]}]}}}}),
        "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
    );
    assert_one(
        json!({"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 0, "podAffinityTerm": {"topologyKey": "zone"}}]}}}),
        "spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 0: must be in the range 1-100",
    );
    assert_one(
        json!({"topologySpreadConstraints": [{"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]}),
        "spec.topologySpreadConstraints[0].maxSkew: Invalid value: 0: must be greater than zero",
    );
    assert_one(
        json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "z", "whenUnsatisfiable": "DoNotSchedule"}, {"maxSkew": 1, "topologyKey": "z", "whenUnsatisfiable": "DoNotSchedule"}]}),
        "spec.topologySpreadConstraints[0].{topologyKey, whenUnsatisfiable}: Duplicate value: \"{z, DoNotSchedule}\"",
    );
    assert_one(
        json!({"nodeSelector": {"k": "-v"}}),
        "spec.nodeSelector: Invalid value: \"-v\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
    );
}

#[test]
fn helpers() {
    assert!(is_dns1123_label("a-1"));
    assert!(!is_dns1123_label("a_1"));
    assert!(!is_dns1123_label(&"a".repeat(64)));
    assert!(is_dns1123_subdomain("a.b-c.d"));
    assert!(is_qualified_name("example.com/app_name.x"));
    assert!(!is_qualified_name("Example.com/app"));
    assert!(is_iana_svc_name("http-alt"));
    assert!(!is_iana_svc_name("8080"));
    assert!(!is_iana_svc_name("a--b"));
    assert!(is_label_value(""));
    assert!(is_safe_uid("6f1c2d1e-2b7a-4f0e-9d1c-1a2b3c4d5e6f"));
}

fn warned(pod: &Pod) -> Vec<String> {
    render(warnings(pod))
}

#[test]
fn warnings_for_deprecated_annotations_and_labels() {
    let mut p = raw_pod(json!({"nodeSelector": {"beta.kubernetes.io/os": "linux"}}));
    p.metadata.annotations = Some(BTreeMap::from([
        ("scheduler.alpha.kubernetes.io/critical-pod".into(), "".into()),
        ("seccomp.security.alpha.kubernetes.io/pod".into(), "runtime/default".into()),
    ]));
    assert_eq!(
        warned(&p),
        [
            "spec.nodeSelector[beta.kubernetes.io/os]: deprecated since v1.14; use \"kubernetes.io/os\" instead",
            "metadata.annotations[scheduler.alpha.kubernetes.io/critical-pod]: non-functional in v1.16+; use the \"priorityClassName\" field instead",
            "metadata.annotations[seccomp.security.alpha.kubernetes.io/pod]: non-functional in v1.27+; use the \"seccompProfile\" field instead",
        ]
    );
}

#[test]
fn warnings_for_negative_grace_period_and_fractional_bytes() {
    let p = raw_pod(
        json!({"terminationGracePeriodSeconds": -5, "containers": [{"name": "c", "image": "i", "resources": {"limits": {"memory": "100m"}}}]}),
    );
    assert_eq!(
        warned(&p),
        [
            "spec.containers[0].resources.limits[memory]: fractional byte value \"100m\" is invalid, must be an integer",
            "spec.terminationGracePeriodSeconds: must be >= 0; negative values are invalid and will be treated as 1",
        ]
    );
}

#[test]
fn warnings_for_a_priority_that_its_class_contradicts() {
    let with = |priority: i64, class: Option<&str>| {
        let mut spec = json!({"priority": priority});
        if let Some(class) = class {
            spec["priorityClassName"] = json!(class);
        }
        warned(&raw_pod(spec))
    };
    assert_eq!(
        with(0, Some("system-node-critical")),
        [
            "spec.priority: 0 does not match priorityClassName system-node-critical (2000001000): the API server refuses a mirror pod whose priority differs from its class's"
        ]
    );
    assert!(with(2_000_001_000, Some("system-node-critical")).is_empty());
    assert!(with(7, Some("my-class")).is_empty(), "an unknown class's value cannot be checked here");
    assert_eq!(
        with(5, None),
        [
            "spec.priority: 5 is set without priorityClassName: the API server computes the priority from the class (0 without one) and refuses a mirror pod whose priority differs"
        ]
    );
}

#[test]
fn warnings_for_duplicate_env_and_ports() {
    let p = raw_pod(json!({"containers": [
        {"name": "a", "image": "i", "env": [{"name": "X", "value": "1"}, {"name": "X", "value": "$(X)2"}, {"name": "X", "value": "3"}], "ports": [{"containerPort": 80, "hostIP": "127.0.0.1"}]},
        {"name": "b", "image": "i", "ports": [{"containerPort": 80, "hostIP": "127.0.0.1"}]}
    ]}));
    assert_eq!(
        warned(&p),
        [
            "spec.containers[0].env[2]: hides previous definition of \"X\", which may be dropped when using apply",
            "spec.containers[0].ports[0]: hostIP set without hostPort: {Name: HostPort:0 ContainerPort:80 Protocol:TCP HostIP:127.0.0.1}",
            "spec.containers[1].ports[0]: hostIP set without hostPort: {Name: HostPort:0 ContainerPort:80 Protocol:TCP HostIP:127.0.0.1}",
            "spec.containers[1].ports[0]: duplicate port definition with spec.containers[0].ports[0]",
        ]
    );
}

#[test]
fn warnings_for_host_aliases_volumes_and_selectors() {
    let p = raw_pod(json!({
        "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["a"]}, {"ip": "1.2.3.4", "hostnames": ["b"]}],
        "volumes": [{"name": "g", "gitRepo": {"repository": "r"}}],
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "failure-domain.beta.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}]
    }));
    assert_eq!(
        warned(&p),
        [
            "spec.topologySpreadConstraints[0].topologyKey: failure-domain.beta.kubernetes.io/zone is deprecated since v1.17; use \"topology.kubernetes.io/zone\" instead",
            "spec.topologySpreadConstraints[0].labelSelector: a null labelSelector results in matching no pod",
            "spec.volumes[0].gitRepo: deprecated in v1.11",
            "spec.hostAliases[1].ip: duplicate ip \"1.2.3.4\"",
        ]
    );
    assert_eq!(warned(&pod(json!({}))), Vec::<String>::new());
}

#[test]
fn metadata_fields_a_static_pod_rarely_sets() {
    let with_meta = |meta: Value| {
        let mut p = raw_pod(json!({}));
        let mut m = serde_json::to_value(&p.metadata).unwrap();
        m.as_object_mut().unwrap().extend(meta.as_object().unwrap().clone());
        p.metadata = serde_json::from_value(m).unwrap();
        defaults::apply(&mut p);
        render(validate_pod(&p))
    };
    let subdomain = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    assert_eq!(with_meta(json!({"generateName": "Bad_"})), [format!("metadata.generateName: Invalid value: \"Bad_\": {subdomain}")]);
    assert_eq!(with_meta(json!({"generateName": "web-"})), Vec::<String>::new(), "a trailing '-' is a prefix's");
    assert_eq!(with_meta(json!({"generation": -1})), ["metadata.generation: Invalid value: -1: must be greater than or equal to 0"]);
    // Upstream reports each reference's fields on the list's path, without the index.
    assert_eq!(
        with_meta(json!({"ownerReferences": [{"apiVersion": "", "kind": "", "name": "", "uid": ""}]})),
        [
            "metadata.ownerReferences.apiVersion: Invalid value: \"\": version must not be empty",
            "metadata.ownerReferences.kind: Invalid value: \"\": must not be empty",
            "metadata.ownerReferences.name: Invalid value: \"\": must not be empty",
            "metadata.ownerReferences.uid: Invalid value: \"\": must not be empty",
        ]
    );
    assert_one(json!({"nodeName": "Node_1"}), &format!("spec.nodeName: Invalid value: \"Node_1\": {subdomain}"));
    assert_one(
        json!({"containers": [{"name": "c", "image": "i", "resources": {"claims": [{"name": "gpu"}]}}]}),
        "spec.containers[0].resources.claims[0]: Not found: \"gpu\": must be one of the names in pod.spec.resourceClaims which is empty",
    );
}
