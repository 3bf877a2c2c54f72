//! A real containerd for the tests: Debian's `containerd` with its CRI plugin, as a separate
//! instance with its own config, socket, root, state, CNI network and IPAM store under a temp
//! dir, so the tests never touch the Docker engine's containerd. It is started on first use,
//! given the test images with `ctr images import`, and stopped by its PID when the test process
//! is gone (a watchdog shell waits on both).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::sync::OnceCell;

use super::{images, wait_for};

/// One containerd and its directories.
#[derive(Debug, Clone)]
pub struct Containerd {
    /// Its CRI (and containerd API) socket.
    pub socket: PathBuf,
    dir: PathBuf,
    /// Which instance of this test process it is: its bridge (`stlctd<n>`; Linux caps interface
    /// names at 15 bytes) and the /24 its pods get addresses from (`10.88.<77+n>.0`) are its own.
    instance: u8,
    /// The image its CRI makes sandboxes from.
    sandbox_image: String,
}

static SERVICE: OnceCell<Containerd> = OnceCell::const_new();

/// The tests' containerd, started (with the test images) on first use.
pub async fn containerd() -> Containerd {
    SERVICE
        .get_or_init(|| async {
            let containerd = Containerd::new(0, images::PAUSE);
            containerd.start().await;
            containerd.import_test_images();
            containerd
        })
        .await
        .clone()
}

/// A containerd of its own for one test (instance 1 and up), whose CRI makes sandboxes from
/// `sandbox_image`, with the test images imported.
pub async fn dedicated(instance: u8, sandbox_image: &str) -> Containerd {
    assert!(instance > 0, "instance 0 is the shared one");
    let containerd = Containerd::new(instance, sandbox_image);
    containerd.start().await;
    containerd.import_test_images();
    containerd
}

impl Containerd {
    fn new(instance: u8, sandbox_image: &str) -> Containerd {
        let dir = std::env::temp_dir().join(format!("staticlet-e2e-containerd-{}-{instance}", std::process::id()));
        Containerd { socket: dir.join("containerd.sock"), dir, instance, sandbox_image: sandbox_image.to_owned() }
    }

    /// `--container-runtime-endpoint` for the agent.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    async fn start(&self) {
        let (dir, socket) = (&self.dir, self.socket.display());
        let bridge = format!("stlctd{}", self.instance);
        let subnet = format!("10.88.{}", 77 + u16::from(self.instance));
        std::fs::create_dir_all(dir.join("cni")).unwrap();
        std::fs::write(
            dir.join("cni/10-staticlet-e2e.conflist"),
            serde_json::json!({
                "cniVersion": "1.0.0",
                "name": format!("staticlet-e2e-{}", self.instance),
                "plugins": [
                    {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": true, "hairpinMode": true,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": format!("{subnet}.0/24")}]],
                              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": dir.join("ipam")}},
                    {"type": "portmap", "capabilities": {"portMappings": true}}
                ]
            })
            .to_string(),
        )
        .unwrap();
        let registry = images::REGISTRY;
        // restrict_oom_score_adj: root on this machine may not lower oom_score_adj.
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  sandbox_image = "{pause}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."{registry}"]
    endpoint = ["http://{registry}"]
"#,
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            pause = self.sandbox_image,
            cni = dir.join("cni").display(),
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        // The watchdog stops containerd by its PID once this test process is gone, and its
        // shims after it (they outlive containerd by design).
        let script = format!(
            r#"containerd --config '{dir}/config.toml' >>'{dir}/containerd.log' 2>&1 & c=$!
while kill -0 {tests} 2>/dev/null && kill -0 $c 2>/dev/null; do sleep 1; done
kill $c; wait $c; pkill -9 -f 'containerd-shim-runc-v2 .*-address {socket}'"#,
            dir = dir.display(),
            tests = std::process::id(),
        );
        let mut watchdog =
            Command::new("sh").arg("-c").arg(script).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::spawn(move || watchdog.wait());
        wait_for(Duration::from_secs(60), "the private containerd to answer", || async {
            self.ctr(&["version"]).status().ok().filter(|s| s.success())
        })
        .await;
    }

    /// `ctr` on this instance, in the CRI's namespace.
    pub fn ctr(&self, args: &[&str]) -> Command {
        let mut command = Command::new("ctr");
        command.arg("--address").arg(&self.socket).args(["--namespace", "k8s.io"]).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        command
    }

    /// Runs `ctr <args>` and returns its standard output.
    pub fn run(&self, args: &[&str]) -> String {
        let output = self.ctr(args).output().expect("ctr is installed");
        assert!(output.status.success(), "ctr {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }

    fn import_test_images(&self) {
        for (tag, archive) in images::archives() {
            let file = self.dir.join(format!("{}.tar", tag.replace(['/', ':'], "_")));
            std::fs::write(&file, archive).unwrap();
            self.run(&["images", "import", file.to_str().unwrap()]);
        }
    }

    /// The containers containerd holds for a node (CRI sandboxes and containers alike), each
    /// with its labels and whether its task runs, read with `ctr`, not through the CRI.
    pub fn held(&self, node: &str) -> Vec<(serde_json::Value, bool)> {
        let running: Vec<String> = self
            .run(&["tasks", "ls"])
            .lines()
            .skip(1)
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                (fields.get(2) == Some(&"RUNNING")).then(|| fields[0].to_owned())
            })
            .collect();
        let filter = format!("labels.\"io.staticlet.node\"=={node}");
        self.run(&["containers", "ls", "-q", &filter])
            .split_whitespace()
            .filter_map(|id| {
                // A container removed since the list is skipped: other tests share the instance.
                let info = self.ctr(&["containers", "info", id]).output().ok().filter(|o| o.status.success())?;
                let info: serde_json::Value = serde_json::from_slice(&info.stdout).ok()?;
                Some((info["Labels"].clone(), running.iter().any(|r| r == id)))
            })
            .collect()
    }

    /// Removes every sandbox of a node through the CRI, network and all, as a kubelet would
    /// when its pods go: what a test leaves behind is gone before the next one.
    pub fn remove_node(&self, node: &str) {
        let socket = self.socket.clone();
        let node = node.to_owned();
        std::thread::spawn(move || {
            use staticlet_runtime::{LabelFilter, Runtime};
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let cri = staticlet_cri::CriRuntime::new(socket);
                for sandbox in cri.list_pod_sandboxes(&LabelFilter::new("io.staticlet.node", node)).await.unwrap_or_default() {
                    let _ = cri.stop_pod_sandbox(&sandbox.id).await;
                    let _ = cri.remove_pod_sandbox(&sandbox.id).await;
                }
            });
        })
        .join()
        .unwrap();
    }
}
