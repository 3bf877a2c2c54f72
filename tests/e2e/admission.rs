//! Admission (issue 4): the built-in static pod policy, configured WebAssembly validators,
//! misbehaving ones, hot reload, and `staticlet validate`, against real Docker and real
//! components built from `plugins/` and `examples/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use staticlet_plugin::artifacts::{HOSTILE, STATIC_POD_POLICY_WASM};

use crate::support::images::BUSYBOX;
use crate::support::{Agent, containers, docker, running, wait_for, yaml};

const START: Duration = Duration::from_secs(60);
const MARK: &str = "testing.staticlet.dev/misbehave";

/// A pod whose container `app` sleeps; `extra_metadata` and `extra_spec` are YAML added to
/// `metadata:` and `spec:`.
fn manifest(name: &str, extra_metadata: &str, extra_spec: &str) -> String {
    yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata:
          name: {name}
          {extra_metadata}
        spec:
          {extra_spec}
          containers:
          - name: app
            image: {BUSYBOX}
            command: [sleep, '3600']
        "#,
        name,
        extra_metadata,
        extra_spec,
        BUSYBOX,
    )
}

fn marked(name: &str) -> String {
    manifest(name, &format!("annotations: {{{MARK}: 'true'}}"), "")
}

/// Writes the agent config next to the manifests and returns its path.
fn config(agent: &Agent, text: &str) -> PathBuf {
    let path = agent.dir().parent().unwrap().join("staticlet.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Replaces a file the way deployment tools do: write beside it, rename over it.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn status(agent: &Agent, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_for(START, what, || async {
        let pod = agent.pod_status(name).await?;
        check(&pod).then_some(pod)
    })
    .await
}

/// The name prefix of pod `name`'s `app` container.
fn app(agent: &Agent, name: &str) -> String {
    format!("k8s_app_{}_", agent.pod(name))
}

fn rejected(pod: &Value) -> bool {
    pod["status"]["phase"] == "Failed" && pod["status"]["reason"] == "Rejected"
}

fn message(pod: &Value) -> String {
    pod["status"]["message"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_with_a_service_account_is_rejected_until_its_manifest_is_fixed() {
    let docker = docker().await;
    let mut agent = Agent::new("admission-sa");
    agent.write("good.yaml", &manifest("good", "", ""));
    let api_objects = yaml!(
        r#"
        serviceAccountName: builder
        volumes:
        - name: cfg
          configMap: {name: cfg}
        "#
    );
    agent.write("sa.yaml", &manifest("sa", "", &api_objects));
    agent.start();

    wait_for(START, "the good pod", || async { (!running(&docker, &agent.node, &app(&agent, "good")).await.is_empty()).then_some(()) })
        .await;
    let pod = status(&agent, "sa", "the rejected pod's status", rejected).await;
    let message = message(&pod);
    assert!(message.contains("spec.serviceAccountName: static pods run without an API server"), "{message}");
    assert!(message.contains("spec.volumes[0].configMap"), "{message}");
    assert!(running(&docker, &agent.node, &app(&agent, "sa")).await.is_empty(), "a rejected pod is not started");
    assert!(agent.log().contains("Rejected"), "{}", agent.log());

    agent.write("sa.yaml", &manifest("sa", "", ""));
    wait_for(START, "the fixed pod", || async { (!running(&docker, &agent.node, &app(&agent, "sa")).await.is_empty()).then_some(()) })
        .await;
    let pod = status(&agent, "sa", "the fixed pod's status", |p| p["status"]["phase"] == "Running").await;
    assert!(pod["status"]["reason"].is_null(), "{pod}");
}

#[tokio::test(flavor = "multi_thread")]
async fn misbehaving_validators_never_let_a_pod_through_nor_stop_the_agent() {
    let docker = docker().await;
    let mut agent = Agent::new("admission-hostile");
    let config = config(
        &agent,
        &yaml!(
            r#"
            plugins:
            - name: trap
              kind: admission-validator
              path: {HOSTILE}
              config: {mode: trap}
            - name: spin
              kind: admission-validator
              path: {HOSTILE}
              config: {mode: loop}
              timeout: 300ms
            - name: hoard
              kind: admission-validator
              path: {HOSTILE}
              config: {mode: alloc}
              memoryLimit: 32Mi
            "#,
            HOSTILE,
        ),
    );
    agent.write("plain.yaml", &manifest("plain", "", ""));
    agent.write("target.yaml", &marked("target"));
    agent.start_with(&["--config", config.to_str().unwrap()]);

    let pod = status(&agent, "target", "the marked pod's rejection", rejected).await;
    let message = message(&pod);
    for expected in [
        "validator trap failed: plugin trap: validate trapped",
        "validator spin failed: plugin spin: validate exceeded its deadline of 300ms",
        "validator hoard failed: plugin hoard: validate exceeded its memory limit of 33554432 bytes",
    ] {
        assert!(message.contains(expected), "{expected:?} not in {message}");
    }
    // Every validator got a fresh instance after failing, and the other pod was admitted.
    wait_for(START, "the unmarked pod", || async {
        (!running(&docker, &agent.node, &app(&agent, "plain")).await.is_empty()).then_some(())
    })
    .await;
    assert!(running(&docker, &agent.node, &app(&agent, "target")).await.is_empty());
    assert!(agent.is_running());
}

#[tokio::test(flavor = "multi_thread")]
async fn replacing_a_validators_wasm_changes_verdicts_without_a_restart() {
    let docker = docker().await;
    let mut agent = Agent::new("admission-reload");
    let wasm = agent.dir().parent().unwrap().join("policy.wasm");
    std::fs::write(&wasm, b"this is not WebAssembly").unwrap();
    let config = config(
        &agent,
        &yaml!(
            r#"
            staticPodPolicy: false
            plugins:
            - name: policy
              kind: admission-validator
              path: {wasm}
              config: {mode: reject}
            "#,
            wasm = wasm.display(),
        ),
    );
    agent.write("sa.yaml", &manifest("sa", "", "serviceAccountName: builder"));
    agent.start_with(&["--config", config.to_str().unwrap()]);
    let pid = agent.pid();

    // Garbage never loads, and under failurePolicy Fail nothing gets through.
    let pod = status(&agent, "sa", "rejection by a validator that does not load", rejected).await;
    assert!(
        message(&pod).contains("validator policy failed: plugin policy:") && message(&pod).contains("is not a valid WebAssembly component"),
        "{pod}"
    );

    // A working validator that has nothing against the pod: it is admitted and started.
    replace(&wasm, &std::fs::read(HOSTILE).unwrap());
    wait_for(START, "the pod admitted after the reload", || async {
        (!running(&docker, &agent.node, &app(&agent, "sa")).await.is_empty()).then_some(())
    })
    .await;

    // The static pod policy in its place: the running pod is judged again, stopped and rejected.
    replace(&wasm, STATIC_POD_POLICY_WASM);
    let pod = status(&agent, "sa", "rejection after the second reload", rejected).await;
    assert!(message(&pod).contains("spec.serviceAccountName"), "{pod}");
    wait_for(START, "the rejected pod's containers to go", || async {
        containers(&docker, &agent.node, &[]).await.is_empty().then_some(())
    })
    .await;
    assert_eq!(agent.pid(), pid);
    assert!(agent.log().contains("plugin reloaded"), "{}", agent.log());
}

fn validate(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_staticlet")).arg("validate").args(args).output().unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn validate_prints_every_violation_with_its_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let good = file("good.yaml", &manifest("good", "", ""));
    let secrets = yaml!(
        r#"
        imagePullSecrets: [{name: regcred}]
        initContainers:
        - name: init
          image: i
          env:
          - name: TOKEN
            valueFrom: {secretKeyRef: {name: s, key: k}}
        "#
    );
    let bad = file("bad.yaml", &manifest("bad", "", &secrets));
    let no_containers = yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata: {name: broken}
        spec: {containers: []}
        "#
    );
    let broken = file("broken.yaml", &no_containers);

    assert_eq!(validate(&["--hostname-override", "n1", &good]), (0, String::new()));
    let (code, out) = validate(&["--hostname-override", "n1", &good, &bad, &broken]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with(&format!("{bad}: spec.imagePullSecrets[0]: static pods run without an API server"))),
        "{out}"
    );
    assert!(lines.iter().any(|l| l.starts_with(&format!("{bad}: spec.initContainers[0].env[0].valueFrom.secretKeyRef: "))), "{out}");
    assert!(lines.iter().any(|l| l.starts_with(&format!("{broken}: ")) && l.contains("spec.containers")), "{out}");
    assert!(!out.contains(&good), "{out}");
}

/// Lines of policy in `source`: not blank, not a comment, not in a docstring.
fn policy_lines(source: &str) -> usize {
    const QUOTES: &str = "\"\"\"";
    let mut in_docstring = false;
    let mut count = 0;
    for line in source.lines().map(str::trim) {
        if in_docstring {
            in_docstring = !line.contains(QUOTES);
        } else if let Some(rest) = line.strip_prefix(QUOTES) {
            in_docstring = !rest.contains(QUOTES);
        } else if !line.is_empty() && !line.starts_with("//") && !line.starts_with('#') {
            count += 1;
        }
    }
    count
}

/// The allowed-registries example (`examples/plugins/allowed-registries`) in Rust, Python and
/// JavaScript: each under 15 lines of policy with its SDK, built with its language's tool exactly
/// as the README says, and each judging the same pods the same way through `staticlet validate`.
#[test]
fn policy_lines_leave_out_comments_and_docstrings() {
    let python = "\"\"\"A docstring\nover two lines.\"\"\"\n\n# a comment\nimport json\n\"\"\"One line.\"\"\"\nx = 1\n";
    assert_eq!(policy_lines(python), 2);
    assert_eq!(policy_lines("// a comment\nuse a;\n\nfn f() {}\n"), 2);
}

#[test]
fn the_allowed_registries_example_in_each_language_is_short_and_judges_alike() {
    use crate::support::{ExampleLanguage, build_example_validator};
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.yaml");
    let from_our_registry = yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata: {name: ours}
        spec:
          containers:
          - {name: c, image: 'registry.internal:5000/app:1'}
        "#
    );
    std::fs::write(&ours, from_our_registry).unwrap();
    let hub = dir.path().join("hub.yaml");
    let from_docker_hub_too = yaml!(
        r#"
        apiVersion: v1
        kind: Pod
        metadata: {name: hub}
        spec:
          initContainers:
          - {name: i, image: 'registry.internal:5000/init:1'}
          containers:
          - {name: c, image: 'registry.internal:5000/app:1'}
          - {name: d, image: busybox}
        "#
    );
    std::fs::write(&hub, from_docker_hub_too).unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/plugins/allowed-registries");
    for language in ExampleLanguage::ALL {
        let source = std::fs::read_to_string(repo.join(language.folder()).join(language.policy_file())).unwrap();
        let lines = policy_lines(&source);
        assert!((5..15).contains(&lines), "{language:?}: {lines} lines of policy");

        let wasm = build_example_validator(language, dir.path()).unwrap();
        let config = dir.path().join(format!("{}.yaml", language.folder()));
        let plugins = yaml!(
            r#"
            plugins:
            - name: allowed-registries
              kind: admission-validator
              path: {wasm}
              config: {registries: [registry.internal:5000]}
            "#,
            wasm = wasm.display(),
        );
        std::fs::write(&config, plugins).unwrap();
        let args = ["--config", config.to_str().unwrap(), "--hostname-override", "n1", ours.to_str().unwrap(), hub.to_str().unwrap()];
        let (code, out) = validate(&args);
        assert_eq!(code, 1, "{language:?}: {out}");
        assert_eq!(
            out,
            format!(
                "{}: spec.containers[1].image: image busybox is not from an allowed registry (registry.internal:5000)\n",
                hub.display()
            ),
            "{language:?}"
        );

        // Without its settings it does not start, and says which is missing.
        std::fs::write(&config, format!("plugins:\n- {{name: r, kind: admission-validator, path: {}}}\n", wasm.display())).unwrap();
        let (code, out) = validate(&["--config", config.to_str().unwrap(), "--hostname-override", "n1", ours.to_str().unwrap()]);
        assert_eq!(code, 1, "{language:?}: {out}");
        assert!(out.contains("init failed: config:") && out.contains("registries"), "{language:?}: {out}");
    }
}

#[test]
fn the_example_pods_and_the_fields_static_pods_are_admitted_as_written() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files: Vec<String> = ["examples/manifests", "examples/field"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(repo.join(dir)).unwrap())
        .map(|entry| entry.unwrap().path().display().to_string())
        .filter(|path| path.ends_with(".yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 6, "the two tutorial pods and etcd, haproxy, kube-vip, node exporter: {files:?}");
    let config = repo.join("examples/staticlet.yaml").display().to_string();
    let args: Vec<&str> = ["--strict", "--config", &config].into_iter().chain(files.iter().map(String::as_str)).collect();
    assert_eq!(validate(&args), (0, String::new()));
}
