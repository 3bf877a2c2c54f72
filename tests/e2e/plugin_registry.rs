//! Plugins from registries (issue 29): a validator pushed with `staticlet plugins push` to a
//! registry that wants a login (Debian's `docker-registry` with htpasswd), pulled by digest with
//! the node's credentials, judging pods as a file plugin does, and loaded from the store with the
//! registry down; a tag moved to other content, an unsigned artifact and one signed with another
//! key refused; a tag pulled again, or a new pin in the config file, reloaded in the running agent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use staticlet_plugin::artifacts::HOSTILE;

use crate::support::registry::{OwnRegistry, openssl_key_pair};
use crate::support::{Agent, docker, running, sleeper, wait_for, yaml};

const START: Duration = Duration::from_secs(60);
const MARK: &str = "testing.staticlet.dev/misbehave";
const REPOSITORY: &str = "plugins/policy";

/// Runs the `staticlet` CLI: whether it succeeded, its stdout and its stderr.
fn staticlet(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_staticlet")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A `--root-dir` holding the registry's login in its `config.json`, where the kubelet looks
/// first.
fn root_with_login(root: &Path, registry: &OwnRegistry) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(root).unwrap();
    let file = root.join("config.json");
    std::fs::write(&file, registry.config_json()).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Pushes `wasm` to `tag` with the CLI; returns the pinned reference it printed.
fn push(registry: &OwnRegistry, root: &Path, wasm: &Path, tag: &str) -> String {
    let reference = format!("{}/{REPOSITORY}:{tag}", registry.address);
    let (ok, out, err) = staticlet(&["plugins", "push", wasm.to_str().unwrap(), &reference, "--root-dir", root.to_str().unwrap()]);
    assert!(ok, "{err}");
    let pinned = out.trim().to_owned();
    assert!(pinned.starts_with(&format!("{reference}@sha256:")), "{out}");
    pinned
}

/// The digest of a pinned reference.
fn digest(pinned: &str) -> &str {
    pinned.rsplit_once('@').unwrap().1
}

/// `wasm` with a custom section appended: the same component, another digest (what a re-push
/// of a rebuilt plugin, or a tampered one, looks like).
fn variant(wasm: &Path, dir: &Path, note: &str) -> PathBuf {
    let mut bytes = std::fs::read(wasm).unwrap();
    let name = b"note";
    let size = 1 + name.len() + note.len();
    assert!(size < 128, "a one-byte LEB128 size");
    bytes.extend([0u8, size as u8, name.len() as u8]);
    bytes.extend(name);
    bytes.extend(note.as_bytes());
    let path = dir.join(format!("{note}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The agent config with one validator, `policy`, from `image` (signed with `key` if given);
/// next to the agent's manifests.
fn config(agent: &Agent, image: &str, key: Option<&Path>) -> PathBuf {
    let signature = key.map(|k| format!("signature: {{key: {}}}", k.display())).unwrap_or_default();
    let text = yaml!(
        r#"
        plugins:
        - name: policy
          kind: admission-validator
          image: {image}
          {signature}
          failurePolicy: Fail
          config: {mode: reject}
        "#,
        image,
        signature,
    );
    let path = agent.dir().parent().unwrap().join("staticlet.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn marked(name: &str) -> String {
    sleeper(name, 3600, "").replacen("metadata:\n", &format!("metadata:\n  annotations: {{{MARK}: 'true'}}\n"), 1)
}

async fn pod_status(agent: &Agent, name: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_for(START, &format!("pod {name}'s status"), || async {
        let pod = agent.pod_status(name).await?;
        check(&pod).then_some(pod)
    })
    .await
}

fn rejected(pod: &Value) -> bool {
    pod["status"]["phase"] == "Failed" && pod["status"]["reason"] == "Rejected"
}

/// `staticlet plugins -o wide`'s line for `policy`, once it shows `health`.
async fn listed(agent: &Agent, health: &str) -> String {
    let socket = agent.socket.to_str().unwrap().to_owned();
    wait_for(START, &format!("the policy plugin to be {health}"), || async {
        let (_, out, _) = staticlet(&["plugins", "-o", "wide", "--api-socket", &socket]);
        out.lines().find(|l| l.starts_with("policy ") && l.contains(&format!(" {health} "))).map(str::to_owned)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_validator_pulled_by_digest_judges_pods_and_loads_from_the_store_with_the_registry_down() {
    let docker = docker().await;
    let mut registry = OwnRegistry::start().await;
    let mut agent = Agent::new("oci-plugin");
    root_with_login(&agent.root, &registry);

    // Pushed with the CNCF layout: a Wasm config and one `application/wasm` layer, the
    // component itself; the printed digest is the one the registry serves.
    let pinned = push(&registry, &agent.root, Path::new(HOSTILE), "1.0");
    let (served, manifest) = registry.manifest(REPOSITORY, "1.0").await;
    assert_eq!(served, digest(&pinned));
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.wasm.config.v0+json");
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
    assert_eq!(manifest["layers"][0]["digest"], staticlet_oci::sha256_digest(&std::fs::read(HOSTILE).unwrap()));

    let config = config(&agent, &pinned, None);
    agent.write("plain.yaml", &sleeper("plain", 3600, ""));
    agent.write("target.yaml", &marked("target"));
    agent.start_with(&["--config", config.to_str().unwrap()]);
    let pod = pod_status(&agent, "target", rejected).await;
    let message = pod["status"]["message"].as_str().unwrap();
    assert!(message.contains("metadata.annotations"), "the plugin's own violation: {message}");
    wait_for(START, "the plain pod", || async {
        (!running(&docker, &agent.node, &format!("k8s_main_{}_", agent.pod("plain"))).await.is_empty()).then_some(())
    })
    .await;
    let line = listed(&agent, "Ready").await;
    assert!(line.contains(&pinned), "{line}");
    assert!(line.contains(&digest(&pinned)[..19]), "the artifact's short digest: {line}");
    let log = agent.log();
    assert_eq!(log.matches("pulled plugin artifact").count(), 1, "{log}");
    assert!(log.contains(&pinned), "the digest is logged: {log}");

    // The registry goes away and the agent restarts: the plugin loads from the store.
    registry.stop();
    agent.stop_with("TERM");
    agent.start_with(&["--config", config.to_str().unwrap()]);
    let line = listed(&agent, "Ready").await;
    assert!(line.contains(&pinned), "{line}");
    let pod = pod_status(&agent, "target", rejected).await;
    assert!(pod["status"]["message"].as_str().unwrap().contains("metadata.annotations"), "{pod}");
    assert!(!running(&docker, &agent.node, &format!("k8s_main_{}_", agent.pod("plain"))).await.is_empty());
    assert_eq!(agent.log().matches("pulled plugin artifact").count(), 1, "nothing pulled the second time: {}", agent.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_moved_tag_an_unsigned_artifact_and_another_keys_signature_are_refused() {
    let registry = OwnRegistry::start().await;
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("root");
    root_with_login(&root, &registry);
    let root_arg = root.to_str().unwrap();

    // The reviewed build is pushed as 1.0 and pinned; then someone pushes other content to 1.0.
    let reviewed = push(&registry, &root, Path::new(HOSTILE), "1.0");
    let moved = push(&registry, &root, &variant(Path::new(HOSTILE), scratch.path(), "rebuilt"), "1.0");
    assert_ne!(digest(&reviewed), digest(&moved));
    let (ok, _, err) = staticlet(&["plugins", "pull", &reviewed, "--root-dir", root_arg]);
    assert!(!ok);
    assert!(
        err.contains(&format!("the registry serves {}, but the config pins {}", digest(&moved), digest(&reviewed))),
        "both digests named: {err}"
    );

    // The agent refuses it too, and with failurePolicy Fail no pod is admitted.
    let mut agent = Agent::new("oci-moved");
    root_with_login(&agent.root, &registry);
    agent.write("plain.yaml", &sleeper("plain", 3600, ""));
    agent.start_with(&["--config", config(&agent, &reviewed, None).to_str().unwrap()]);
    let pod = pod_status(&agent, "plain", rejected).await;
    let message = pod["status"]["message"].as_str().unwrap();
    assert!(message.contains(digest(&reviewed)) && message.contains(digest(&moved)), "{message}");
    let line = listed(&agent, "Failed").await;
    assert!(line.contains(digest(&moved)), "{line}");
    drop(agent);

    // With a key configured: unsigned is refused, a signature by another key is refused, the
    // key's own signature (made by OpenSSL in cosign's layout) loads.
    let by_digest = format!("{}/{REPOSITORY}@{}", registry.address, digest(&reviewed));
    let (ours, theirs) = (scratch.path().join("ours"), scratch.path().join("theirs"));
    std::fs::create_dir_all(&ours).unwrap();
    std::fs::create_dir_all(&theirs).unwrap();
    let (our_key, our_public) = openssl_key_pair(&ours);
    let (their_key, _) = openssl_key_pair(&theirs);
    let pull_signed = || staticlet(&["plugins", "pull", &by_digest, "--key", our_public.to_str().unwrap(), "--root-dir", root_arg]);
    let (ok, _, err) = pull_signed();
    assert!(!ok);
    assert!(err.contains(&format!("{} is not signed", digest(&reviewed))), "{err}");
    registry.cosign_sign(REPOSITORY, digest(&reviewed), &their_key).await;
    let (ok, _, err) = pull_signed();
    assert!(!ok);
    assert!(err.contains("does not verify with the configured key"), "{err}");
    registry.cosign_sign(REPOSITORY, digest(&reviewed), &our_key).await;
    let (ok, out, err) = pull_signed();
    assert!(ok, "{err}");
    assert_eq!(out.trim(), by_digest);

    // `staticlet validate` loads the pulled, signed plugin from the store (it never pulls).
    let checked = Agent::new("oci-validate");
    let config = config(&checked, &by_digest, Some(&our_public));
    let manifests = scratch.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join("plain.yaml"), sleeper("plain", 3600, "")).unwrap();
    std::fs::write(manifests.join("target.yaml"), marked("target")).unwrap();
    let validate = |root: &str| {
        staticlet(&[
            "validate",
            "--config",
            config.to_str().unwrap(),
            "--root-dir",
            root,
            "--hostname-override",
            "n1",
            manifests.to_str().unwrap(),
        ])
    };
    let (ok, out, _) = validate(root_arg);
    assert!(!ok);
    let target = manifests.join("target.yaml");
    assert_eq!(out, format!("{}: metadata.annotations[{MARK}]: rejected as asked\n", target.display()));
    // From an empty store it says what to do.
    let (ok, out, _) = validate(scratch.path().join("empty").to_str().unwrap());
    assert!(!ok);
    assert!(out.contains("not in the store") && out.contains("staticlet plugins pull"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_pulled_again_or_a_new_pin_in_the_config_reloads_the_running_plugin() {
    let registry = OwnRegistry::start().await;
    let mut agent = Agent::new("oci-reload");
    root_with_login(&agent.root, &registry);
    let first = push(&registry, &agent.root, Path::new(HOSTILE), "stable");
    let tag = format!("{}/{REPOSITORY}:stable", registry.address);
    agent.start_with(&["--config", config(&agent, &tag, None).to_str().unwrap()]);
    let line = listed(&agent, "Ready").await;
    assert!(line.contains(&first), "the tag resolved once, shown pinned: {line}");

    let scratch = tempfile::tempdir().unwrap();
    let second = push(&registry, &agent.root, &variant(Path::new(HOSTILE), scratch.path(), "second"), "stable");
    let (ok, out, err) = staticlet(&["plugins", "pull", &tag, "--root-dir", agent.root.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), second);
    wait_for(START, "the agent to load the tag's new digest", || async {
        let (_, out, _) = staticlet(&["plugins", "-o", "wide", "--api-socket", agent.socket.to_str().unwrap()]);
        out.contains(&second).then_some(())
    })
    .await;
    assert!(agent.log().contains("plugin reloaded"), "{}", agent.log());

    // The config file edited to pin another artifact: the running agent pulls and loads it.
    let pinned = push(&registry, &agent.root, &variant(Path::new(HOSTILE), scratch.path(), "pinned"), "2.0");
    config(&agent, &pinned, None);
    wait_for(START, "the agent to load the config's new pin", || async {
        let (_, out, _) = staticlet(&["plugins", "-o", "wide", "--api-socket", agent.socket.to_str().unwrap()]);
        out.lines().any(|l| l.contains(&pinned) && l.contains(" Ready ")).then_some(())
    })
    .await;
    assert!(agent.log().contains("the config pins another image; loading it"), "{}", agent.log());
}
