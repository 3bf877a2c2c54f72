//! A generated corpus of bad manifests, each with the rule it breaks: what an operator's typo, a
//! broken template, a truncated copy or a hostile author can put in a manifest directory.
//!
//! Most cases are one mutation of a valid pod, written out as YAML so the parser knows every
//! line; the rest are texts no mutation makes (syntax, encodings, nesting, alias bombs).

use serde_json::{Value, json};

/// One bad manifest.
pub struct Case {
    /// The file name it is written under.
    pub file: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Texts one of which the rejection must contain: the field path and the rule, as the API
    /// server words them.
    pub rule: Vec<String>,
    /// Whether the rejection must give a `line:column`.
    pub positioned: bool,
}

/// A valid pod, every kind of field the mutations touch present once.
pub fn valid_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hostile", "namespace": "default", "labels": {"app": "hostile"}},
        "spec": {
            "volumes": [{"name": "data", "emptyDir": {}}],
            "initContainers": [{"name": "init", "image": "busybox:1"}],
            "containers": [{
                "name": "app",
                "image": "busybox:1",
                "ports": [{"name": "http", "containerPort": 80}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
                "env": [{"name": "MODE", "value": "x"}],
                "livenessProbe": {"exec": {"command": ["true"]}},
            }],
        },
    })
}

/// Every case, at least 200.
pub fn corpus() -> Vec<Case> {
    let mut cases = Corpus::default();
    cases.names();
    cases.containers();
    cases.ports();
    cases.volumes();
    cases.quantities();
    cases.probes();
    cases.pod_fields();
    cases.wrong_types();
    cases.documents();
    cases.encodings();
    cases.nesting_and_aliases();
    cases.truncations();
    cases.0
}

#[derive(Default)]
struct Corpus(Vec<Case>);

/// Sets the field at a dotted path (`spec.containers.0.name`) of a copy of the valid pod; a
/// `null` value removes it.
fn mutated(path: &str, value: Value) -> Value {
    let mut pod = valid_pod();
    let mut at = &mut pod;
    let parts: Vec<&str> = path.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        at = match part.parse::<usize>() {
            Ok(i) => &mut at[i],
            Err(_) => &mut at[*part],
        };
    }
    let last = parts[parts.len() - 1];
    match (value, last.parse::<usize>()) {
        (Value::Null, Err(_)) => {
            at.as_object_mut().expect("an object").remove(last);
        }
        (value, Ok(i)) => at[i] = value,
        (value, Err(_)) => at[last] = value,
    }
    pod
}

fn yaml(pod: &Value) -> Vec<u8> {
    staticlet_model::yaml::to_string(pod).expect("values serialize").into_bytes()
}

impl Corpus {
    fn push(&mut self, bytes: Vec<u8>, rule: &[&str], positioned: bool) {
        let file = format!("bad-{:03}.yaml", self.0.len());
        self.0.push(Case { file, bytes, rule: rule.iter().map(|r| (*r).to_owned()).collect(), positioned });
    }

    /// A mutation of the valid pod, rejected by validation at `rule` (`path: Reason`).
    fn field(&mut self, path: &str, value: Value, rule: &str) {
        self.push(yaml(&mutated(path, value)), &[rule], true);
    }

    /// A whole pod, rejected by validation at `rule`.
    fn pod(&mut self, pod: &Value, rule: &str) {
        self.push(yaml(pod), &[rule], true);
    }

    fn names(&mut self) {
        // 252 characters and the node's name make more than a subdomain's 253 (a long name
        // within them is valid, whatever the length of its labels).
        for bad in ["Bad_Name", "UPPER", "-lead", "a_b", "a..b", "a b", "ünïcode", "a/b", "dot.", &"x".repeat(252)] {
            self.field("metadata.name", json!(bad), "metadata.name: Invalid value");
        }
        // The node's name is appended first, as the kubelet appends it: "" becomes "-<node>".
        self.field("metadata.name", json!(""), "metadata.name: Invalid value");
        self.field("metadata.name", Value::Null, "metadata.name: Required value");
        for bad in ["NS_", "-x", "a.b"] {
            self.field("metadata.namespace", json!(bad), "metadata.namespace: Invalid value");
        }
        // The API server reports label and annotation errors on the map, with the bad key or value.
        self.field("metadata.labels", json!({"bad key": "v"}), "metadata.labels: Invalid value: \"bad key\": name part must consist of");
        self.field("metadata.labels", json!({"app": "-bad"}), "metadata.labels: Invalid value: \"-bad\": a valid label must be");
        let long = "x".repeat(64);
        self.field(
            "metadata.labels",
            json!({"app": long}),
            &format!("metadata.labels: Invalid value: \"{long}\": must be no more than 63 characters"),
        );
        self.field("metadata.labels", json!({"a/b/c": "v"}), "metadata.labels: Invalid value: \"a/b/c\": a qualified name must consist of");
        self.field(
            "metadata.annotations",
            json!({"not a key": "v"}),
            "metadata.annotations: Invalid value: \"not a key\": name part must consist of",
        );
        for bad in ["../../etc", "a/b", ".."] {
            self.field("metadata.uid", json!(bad), "metadata.uid: Invalid value");
        }
    }

    fn containers(&mut self) {
        for (list, index) in [("containers", 0), ("initContainers", 0)] {
            let at = format!("spec.{list}.{index}");
            let shown = format!("spec.{list}[{index}]");
            for bad in ["Bad_Name", "-a", "a-", &"c".repeat(64), "a.b"] {
                self.field(&format!("{at}.name"), json!(bad), &format!("{shown}.name: Invalid value"));
            }
            self.field(&format!("{at}.name"), json!(""), &format!("{shown}.name: Required value"));
            self.field(&format!("{at}.image"), Value::Null, &format!("{shown}.image: Required value"));
            self.field(&format!("{at}.image"), json!(" busybox:1"), &format!("{shown}.image: Invalid value"));
            self.field(&format!("{at}.imagePullPolicy"), json!("Sometimes"), &format!("{shown}.imagePullPolicy: Unsupported value"));
            self.field(
                &format!("{at}.terminationMessagePolicy"),
                json!("Never"),
                &format!("{shown}.terminationMessagePolicy: Unsupported value"),
            );
            for bad in ["A=B", ""] {
                let env = json!([{"name": bad, "value": "x"}]);
                let rule = if bad.is_empty() { "env[0].name: Required value" } else { "env[0].name: Invalid value" };
                self.field(&format!("{at}.env"), env, &format!("{shown}.{rule}"));
            }
            self.field(&format!("{at}.env"), json!([{"name": "A", "valueFrom": {}}]), &format!("{shown}.env[0].valueFrom: Invalid value"));
            self.field(
                &format!("{at}.env"),
                json!([{"name": "A", "value": "v", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]),
                &format!("{shown}.env[0].valueFrom: Invalid value"),
            );
        }
        let mut twice = valid_pod();
        let app = twice["spec"]["containers"][0].clone();
        twice["spec"]["containers"].as_array_mut().unwrap().push(app);
        self.pod(&twice, "spec.containers[1].name: Duplicate value");
        // Init containers are checked against the app containers' names, so the init one is at fault.
        self.field("spec.initContainers.0.name", json!("app"), "spec.initContainers[0].name: Duplicate value");
        self.field("spec.containers", json!([]), "spec.containers: Required value");
        self.field("spec.containers", Value::Null, "spec.containers: Required value");
        self.field("spec.containers.0.restartPolicy", json!("Always"), "spec.containers[0].restartPolicy: Forbidden");
    }

    fn ports(&mut self) {
        let port = "spec.containers.0.ports.0";
        let shown = "spec.containers[0].ports[0]";
        self.field(&format!("{port}.containerPort"), json!(0), &format!("{shown}.containerPort: Required value"));
        for bad in [-1, 65536, 100_000] {
            self.field(&format!("{port}.containerPort"), json!(bad), &format!("{shown}.containerPort: Invalid value"));
        }
        for bad in [-5, 65536, 70_000] {
            self.field(&format!("{port}.hostPort"), json!(bad), &format!("{shown}.hostPort: Invalid value"));
        }
        for bad in ["HTTP_", "toolongportname1", "-x", "12345", "a--b"] {
            self.field(&format!("{port}.name"), json!(bad), &format!("{shown}.name: Invalid value"));
        }
        for bad in ["HTTP", "tcp", "ICMP"] {
            self.field(&format!("{port}.protocol"), json!(bad), &format!("{shown}.protocol: Unsupported value"));
        }
        self.field(
            "spec.containers.0.ports",
            json!([{"name": "http", "containerPort": 80}, {"name": "http", "containerPort": 81}]),
            "spec.containers[0].ports[1].name: Duplicate value",
        );
        self.field(
            "spec.containers.0.ports",
            json!([{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81, "hostPort": 8080}]),
            "spec.containers[0].ports[1].hostPort: Duplicate value",
        );
        let mut host = mutated("spec.hostNetwork", json!(true));
        host["spec"]["containers"][0]["ports"][0]["hostPort"] = json!(81);
        self.pod(&host, "spec.containers[0].ports[0].hostPort: Invalid value: 81: must match `containerPort` when `hostNetwork` is true");
    }

    fn volumes(&mut self) {
        self.field("spec.volumes.0.name", json!("Bad_Vol"), "spec.volumes[0].name: Invalid value");
        self.field("spec.volumes.0.name", json!(""), "spec.volumes[0].name: Required value");
        self.field(
            "spec.volumes",
            json!([{"name": "data", "emptyDir": {}}, {"name": "data", "emptyDir": {}}]),
            "spec.volumes[1].name: Duplicate value",
        );
        // (A volume with no source is no case: the API server defaults it to an emptyDir.)
        self.field(
            "spec.volumes.0.hostPath",
            json!({"path": "/tmp"}),
            "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type",
        );
        self.field(
            "spec.volumes.0",
            json!({"name": "data", "hostPath": {"path": "/tmp", "type": "Dir"}}),
            "spec.volumes[0].hostPath.type: Unsupported value",
        );
        self.field("spec.volumes.0", json!({"name": "data", "hostPath": {"path": ""}}), "spec.volumes[0].hostPath.path: Required value");
        self.field("spec.volumes.0.emptyDir", json!({"medium": "Disk"}), "spec.volumes[0].emptyDir.medium: Unsupported value");
        let mount = "spec.containers.0.volumeMounts.0";
        let shown = "spec.containers[0].volumeMounts[0]";
        self.field(&format!("{mount}.name"), json!("nope"), &format!("{shown}.name: Not found"));
        self.field(&format!("{mount}.mountPath"), json!(""), &format!("{shown}.mountPath: Required value"));
        // The API server reports a mount's subPath on the list, without the mount's index.
        let list = "spec.containers[0].volumeMounts";
        for (bad, rule) in [
            ("../x", "must not contain '..'"),
            ("/abs", "must be a relative path"),
            ("a/../../b", "must not contain '..'"),
            ("..", "must not contain '..'"),
        ] {
            self.field(&format!("{mount}.subPath"), json!(bad), &format!("{list}.subPath: Invalid value: \"{bad}\": {rule}"));
        }
        self.field(
            &format!("{mount}.subPathExpr"),
            json!("../$(POD_NAME)"),
            &format!("{list}.subPathExpr: Invalid value: \"../$(POD_NAME)\": must not contain '..'"),
        );
        self.field(
            "spec.containers.0.volumeMounts",
            json!([{"name": "data", "mountPath": "/d"}, {"name": "data", "mountPath": "/d"}]),
            "spec.containers[0].volumeMounts[1].mountPath: Invalid value",
        );
    }

    fn quantities(&mut self) {
        let at = "spec.containers.0.resources";
        let shown = "spec.containers[0].resources";
        for bad in ["1.5.5", "abc", "1Xi", "", "1e", "--1", "0x10", "1 Gi", "Mi"] {
            self.field(&format!("{at}.limits.memory"), json!(bad), &format!("{shown}.limits[memory]: Invalid value"));
            self.field(&format!("{at}.requests"), json!({"cpu": bad}), &format!("{shown}.requests[cpu]: Invalid value"));
        }
        self.field(&format!("{at}.requests"), json!({"memory": "-1"}), &format!("{shown}.requests[memory]: Invalid value"));
        self.field(&format!("{at}.requests"), json!({"gpu": "1"}), &format!("{shown}.requests[gpu]: Invalid value"));
        // A request above its limit is reported on the requests, as the API server reports it.
        self.field(
            &format!("{at}.requests"),
            json!({"cpu": "1"}),
            &format!("{shown}.requests: Invalid value: \"1\": must be less than or equal to cpu limit"),
        );
        self.field(
            &format!("{at}.requests"),
            json!({"memory": "1Gi"}),
            &format!("{shown}.requests: Invalid value: \"1Gi\": must be less than or equal to memory limit"),
        );
    }

    fn probes(&mut self) {
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            let at = format!("spec.containers.0.{probe}");
            let shown = format!("spec.containers[0].{probe}");
            self.field(&at, json!({"periodSeconds": 5}), &format!("{shown}: Required value"));
            self.field(&at, json!({}), &format!("{shown}: Required value"));
            self.field(
                &at,
                json!({"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}}),
                &format!("{shown}.tcpSocket: Forbidden: may not specify more than 1 handler type"),
            );
            for bad in [json!(0), json!(70_000), json!("bad_name"), json!("")] {
                self.field(&at, json!({"httpGet": {"port": bad}}), &format!("{shown}.httpGet.port: Invalid value"));
            }
            self.field(&at, json!({"tcpSocket": {"port": -1}}), &format!("{shown}.tcpSocket.port: Invalid value"));
            for field in ["periodSeconds", "timeoutSeconds", "initialDelaySeconds", "failureThreshold"] {
                self.field(&at, json!({"exec": {"command": ["true"]}, field: -1}), &format!("{shown}.{field}: Invalid value"));
            }
        }
        for probe in ["livenessProbe", "startupProbe"] {
            self.field(
                &format!("spec.containers.0.{probe}"),
                json!({"exec": {"command": ["true"]}, "successThreshold": 2}),
                &format!("spec.containers[0].{probe}.successThreshold: Invalid value"),
            );
        }
        self.field(
            "spec.initContainers.0.livenessProbe",
            json!({"exec": {"command": ["true"]}}),
            "spec.initContainers[0].livenessProbe: Forbidden",
        );
        self.field("spec.containers.0.lifecycle", json!({"preStop": {}}), "spec.containers[0].lifecycle.preStop: Required value");
    }

    fn pod_fields(&mut self) {
        self.field("spec.restartPolicy", json!("Sometimes"), "spec.restartPolicy: Unsupported value");
        self.field("spec.dnsPolicy", json!("Bad"), "spec.dnsPolicy: Unsupported value");
        self.field("spec.dnsConfig", json!({"nameservers": ["1.1.1.1", "x"]}), "spec.dnsConfig.nameservers[1]: Invalid value");
        self.field("spec.hostAliases", json!([{"ip": "nope", "hostnames": ["a"]}]), "spec.hostAliases[0].ip: Invalid value");
        self.field("spec.activeDeadlineSeconds", json!(0), "spec.activeDeadlineSeconds: Invalid value");
        self.field("spec.activeDeadlineSeconds", json!(-3), "spec.activeDeadlineSeconds: Invalid value");
        // A pod without a spec has an empty one, as the API server decodes it.
        self.push(yaml(&mutated("spec", Value::Null)), &["spec.containers: Required value"], false);
    }

    fn wrong_types(&mut self) {
        let wrong = [
            ("metadata.name", json!([1])),
            ("metadata.labels", json!(["a"])),
            ("spec.containers", json!("app")),
            ("spec.containers.0.ports.0.containerPort", json!("eighty")),
            ("spec.containers.0.command", json!("sh")),
            ("spec.containers.0.env", json!({"A": "B"})),
            ("spec.containers.0.resources.limits", json!([1])),
            ("spec.volumes", json!(3)),
            ("spec.terminationGracePeriodSeconds", json!("30s")),
            ("spec.hostNetwork", json!({"on": true})),
            ("spec.restartPolicy", json!(["Always"])),
            ("spec.containers.0.livenessProbe.periodSeconds", json!(1.5)),
            ("spec.containers.0.ports.0.containerPort", json!(8e10)),
            ("metadata", json!("hostile")),
        ];
        for (path, value) in wrong {
            let shown = shown_path(path);
            self.push(yaml(&mutated(path, value)), &[&format!("{shown}: invalid type"), &format!("{shown}: invalid value")], true);
        }
    }

    fn documents(&mut self) {
        let text = String::from_utf8(yaml(&valid_pod())).unwrap();
        self.push(text.replace("kind: Pod", "kind: Deployment").into_bytes(), &["kind \"Deployment\" is not a Pod"], true);
        self.push(text.replace("kind: Pod\n", "").into_bytes(), &["Object 'Kind' is missing"], false);
        self.push(text.replace("apiVersion: v1", "apiVersion: v2").into_bytes(), &["apiVersion \"v2\" is not supported"], true);
        self.push(text.replace("apiVersion: v1\n", "").into_bytes(), &["apiVersion \"\" is not supported"], false);
        self.push(b"- a\n- b\n".to_vec(), &["not an object"], false);
        self.push(b"just a string\n".to_vec(), &["not an object"], false);
        self.push(b"".to_vec(), &["empty"], false);
        self.push(b"# only a comment\n\n".to_vec(), &["empty"], false);
        // Each with the parser's words for what is wrong; JSON (text that starts with `{`) is
        // judged by JSON's rules, as the kubelet judges it.
        let syntax: [(&[u8], &str); 12] = [
            (b"apiVersion: v1\nkind: Pod\nmetadata:\n\tname: tab\n", "tabs disallowed within this context"),
            (b"apiVersion: v1\nkind: Pod\nmetadata: {name: x\n", "unclosed bracket '{'"),
            (b"apiVersion: v1\nkind: Pod\nmetadata:\n  labels: [unclosed\n", "unclosed bracket '['"),
            (b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: \"unterminated\n", "unclosed quote"),
            (b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n   bad: indent\n", "mapping values are not allowed in this context"),
            (b"apiVersion: v1\nkind: Pod\nmetadata: name: x\n", "mapping values are not allowed in this context"),
            (b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: \"\\q\"\n", "found unknown escape character"),
            (b"{\"apiVersion\": \"v1\", \"kind\": \"Pod\",}", "trailing comma"),
            (b"{'apiVersion': 'v1'}", "key must be a string"),
            (b"{\"apiVersion\": \"v1\", \"kind\": \"Pod\"", "EOF while parsing an object"),
            (b"apiVersion: v1\nkind: Pod\nmetadata: *undefined\n", "alias references unknown anchor"),
            (b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: \x00nul\n", "unexpected character"),
        ];
        for (text, rule) in syntax {
            self.push(text.to_vec(), &[rule], true);
        }
    }

    fn encodings(&mut self) {
        let text = yaml(&valid_pod());
        let bad: [&[u8]; 6] = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xe9", b"\xf0\x28\x8c\x28", b"\x80"];
        for (i, bytes) in bad.iter().enumerate() {
            let at = (i * 37) % text.len();
            let mut spliced = text[..at].to_vec();
            spliced.extend_from_slice(bytes);
            spliced.extend_from_slice(&text[at..]);
            self.push(spliced, &["not valid UTF-8"], true);
        }
        // UTF-16 with a byte order mark is read, as the kubelet reads it; broken UTF-16 is not.
        let mut utf16: Vec<u8> =
            [0xff, 0xfe].into_iter().chain(String::from_utf8(text).unwrap().encode_utf16().flat_map(u16::to_le_bytes)).collect();
        utf16.extend_from_slice(&[0x00, 0xd8]);
        self.push(utf16, &["not valid UTF-16"], false);
    }

    fn nesting_and_aliases(&mut self) {
        let deep_flow = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: x}}\nspec: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
        self.push(deep_flow.into_bytes(), &["recursion limit exceeded"], false);
        let mut deep_block = String::from("apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n");
        for depth in 1..=300 {
            deep_block.push_str(&format!("{}k{depth}:\n", "  ".repeat(depth)));
        }
        self.push(deep_block.into_bytes(), &["budget breached: Depth"], false);
        let deep_json = format!("{}{}", "{\"a\":".repeat(5_000), "}".repeat(5_000));
        self.push(
            format!("{{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"spec\":{deep_json}}}").into_bytes(),
            &["recursion limit exceeded"],
            false,
        );
        self.push(
            format!("{{\"kind\":\"Pod\",\"x\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            &["recursion limit exceeded"],
            false,
        );
        let mut bomb =
            String::from("apiVersion: v1\nkind: Pod\na: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        for (name, prev) in ["b", "c", "d", "e", "f", "g", "h", "i"].iter().zip(["a", "b", "c", "d", "e", "f", "g", "h"]) {
            bomb.push_str(&format!("{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
        }
        self.push(format!("{bomb}metadata: {{name: x}}\n").into_bytes(), &["alias replay limit exceeded"], false);
        let labels = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n  labels: &l {a: b}\n  annotations:\n";
        let mut wide = labels.to_owned();
        let mut level = String::from("[*l,*l,*l,*l,*l,*l,*l,*l,*l,*l]");
        for _ in 0..6 {
            wide.push_str(&format!("    k: &n {level}\n"));
            level = "[*n,*n,*n,*n,*n,*n,*n,*n,*n,*n]".to_owned();
        }
        // Each level's `&n` is redefined around aliases to the name it is taking: an alias to
        // itself, which go-yaml refuses too ("anchor 'n' value contains itself").
        self.push(wide.into_bytes(), &["recursive references"], true);
    }

    /// Every cut of a valid manifest before its last line: each leaves something required
    /// missing, or the text unfinished.
    fn truncations(&mut self) {
        let mut pod = valid_pod();
        pod["spec"]["containers"][0].as_object_mut().unwrap().remove("image");
        let text = String::from_utf8(yaml(&pod)).unwrap() + "    image: busybox:1\n";
        let last_line = text.trim_end().rfind('\n').unwrap();
        // A YAML cut is still YAML: what follows it is missing (a required field, or `kind`),
        // or a key is cut before its colon, or a mapping before its value.
        let yaml_rules = ["Required value", "simple key expected ':'", "invalid type", "Object 'Kind' is missing", "is not an object"];
        for cut in (1..last_line).step_by(last_line / 40) {
            self.push(text.as_bytes()[..cut].to_vec(), &yaml_rules, false);
        }
        // A JSON cut never is JSON.
        let json = serde_json::to_string(&valid_pod()).unwrap();
        for cut in (1..json.len()).step_by(json.len() / 20) {
            self.push(json.as_bytes()[..cut].to_vec(), &["EOF while parsing"], true);
        }
    }
}

/// `spec.containers.0.name` → `spec.containers[0].name`.
fn shown_path(path: &str) -> String {
    let mut shown = String::new();
    for part in path.split('.') {
        match part.parse::<usize>() {
            Ok(i) => shown.push_str(&format!("[{i}]")),
            Err(_) if shown.is_empty() => shown.push_str(part),
            Err(_) => shown.push_str(&format!(".{part}")),
        }
    }
    shown
}
