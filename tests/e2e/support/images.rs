//! Test images, built locally from Debian's `busybox-static` and loaded with `docker load`
//! (bollard's import): no registry is reachable here, and tests must not depend on one.

use std::collections::HashMap;
use std::process::Command;

use bollard::Docker;
use bollard::query_parameters::ImportImageOptions;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::OnceCell;

/// A shell, `httpd`, `nc`, `sleep`...: everything the test pods run.
pub const BUSYBOX: &str = "staticlet.test/busybox:1";
/// The sandbox image: a shell that exits at once on SIGTERM, as `pause` does.
pub const PAUSE: &str = "staticlet.test/pause:1";

/// The local registry `.ci/run` starts (Debian's `docker-registry`), which Docker trusts without
/// TLS on loopback.
pub const REGISTRY: &str = "127.0.0.1:5000";

const BUSYBOX_BIN: &str = "/bin/busybox";

static LOADED: OnceCell<()> = OnceCell::const_new();

/// Loads the test images into the engine once per test process.
pub async fn ensure_loaded(docker: &Docker) {
    LOADED
        .get_or_init(|| async {
            for (tag, archive) in archives() {
                load(docker, &tag, archive).await;
            }
        })
        .await;
}

/// The test images, each as a `docker save` archive, by tag.
pub fn archives() -> Vec<(String, Vec<u8>)> {
    [(BUSYBOX, json!(["sh"])), (PAUSE, json!(["sh", "-c", "trap 'exit 0' TERM INT; sleep 2147483647 & wait"]))]
        .into_iter()
        .map(|(tag, cmd)| (tag.to_owned(), archive(tag, cmd)))
        .collect()
}

fn layer() -> Vec<u8> {
    layer_with(&[])
}

/// The test images' layer with `extra` files (path, bytes) in it too.
pub fn layer_with(extra: &[(&str, &[u8])]) -> Vec<u8> {
    let applets = Command::new(BUSYBOX_BIN).arg("--list").output().expect("busybox-static is installed (/bin/busybox)");
    let mut builder = tar::Builder::new(Vec::new());
    let dir = |builder: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(mode);
        header.set_size(0);
        builder.append_data(&mut header, path, std::io::empty()).unwrap();
    };
    for (path, mode) in [("bin/", 0o755), ("etc/", 0o755), ("tmp/", 0o1777), ("www/", 0o755), ("root/", 0o700)] {
        dir(&mut builder, path, mode);
    }
    let binary = std::fs::read(BUSYBOX_BIN).unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o755);
    header.set_size(binary.len() as u64);
    builder.append_data(&mut header, "bin/busybox", binary.as_slice()).unwrap();
    for applet in String::from_utf8_lossy(&applets.stdout).lines().filter(|a| *a != "busybox") {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_mode(0o777);
        header.set_size(0);
        builder.append_link(&mut header, format!("bin/{applet}"), "busybox").unwrap();
    }
    let page = b"hello from staticlet\n";
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_size(page.len() as u64);
    builder.append_data(&mut header, "www/index.html", &page[..]).unwrap();
    for (path, bytes) in extra {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(bytes.len() as u64);
        builder.append_data(&mut header, path, *bytes).unwrap();
    }
    builder.into_inner().unwrap()
}

/// A `docker save` archive holding one image.
fn archive(tag: &str, cmd: serde_json::Value) -> Vec<u8> {
    staticlet_docker::save_archive(tag, json!({"Cmd": cmd, "Env": ["PATH=/bin"], "WorkingDir": "/"}), &layer())
}

/// Loads one archive into `docker`.
pub async fn load(docker: &Docker, tag: &str, archive: Vec<u8>) {
    let body = bollard::body_full(archive.into());
    let mut progress = docker.import_image(ImportImageOptions { quiet: true, ..Default::default() }, body, None::<HashMap<_, _>>);
    while let Some(step) = progress.next().await {
        let info = step.unwrap_or_else(|e| panic!("loading {tag}: {e}"));
        assert!(info.error_detail.is_none(), "loading {tag}: {info:?}");
    }
}
