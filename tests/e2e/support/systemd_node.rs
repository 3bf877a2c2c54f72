//! A Debian node booted with systemd as PID 1, in a container of the host's Docker, with
//! Docker of its own inside (as a real node has): the root file system is made once with
//! debootstrap from Debian's packages and kept as the image `staticlet-test/systemd-node`.
//!
//! The node runs its own dockerd rather than the host's socket so that everything the agent
//! hands the engine (its root dir's paths for volumes, the sandbox's PID for port-forward) means
//! the same to both, as on a real node.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::images;

/// The image of the node's root file system.
const IMAGE: &str = "staticlet-test/systemd-node:bookworm";

/// The packages on top of debootstrap's minimal base: systemd as init, the engine, and curl
/// for the healthz check.
const PACKAGES: &str = "systemd,systemd-sysv,dbus,docker.io,iptables,ca-certificates,curl,procps";

/// A booted node; removed, with its engine's storage, when dropped.
pub struct SystemdNode {
    name: String,
    storage: tempfile::TempDir,
    /// Dropped after the container (fields drop after `drop` runs).
    _cgroups: CgroupView,
}

/// The node's /sys/fs/cgroup: a tmpfs of its own with each of the host's hierarchies bound
/// into it, writable. Not the host's tmpfs itself: the node's systemd remounts its
/// /sys/fs/cgroup read-only, which, through a bind of the host's, would make the host's
/// read-only too. Unmounted when dropped.
struct CgroupView {
    dir: PathBuf,
}

impl CgroupView {
    fn new() -> CgroupView {
        let dir = tempfile::Builder::new().prefix("staticlet-node-cgroup").tempdir_in("/var/tmp").unwrap().keep();
        let run = |args: &[&str]| {
            let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
            assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let view = dir.display().to_string();
        run(&["mount", "-t", "tmpfs", "-o", "size=1m,mode=755", "staticlet-node-cgroup", &view]);
        for point in host_cgroup_hierarchies() {
            let name = point.trim_start_matches("/sys/fs/cgroup/");
            let target = format!("{view}/{name}");
            std::fs::create_dir_all(&target).unwrap();
            run(&["mount", "--bind", &point, &target]);
            // The controllers of a shared hierarchy by their own names, as systemd links them.
            for member in name.split(',').filter(|member| *member != name) {
                let _ = std::os::unix::fs::symlink(name, format!("{view}/{member}"));
            }
        }
        CgroupView { dir }
    }
}

impl Drop for CgroupView {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-R").arg(&self.dir).output();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

impl SystemdNode {
    /// Boots a node (making its image first if needed), waits for systemd and its Docker, and
    /// loads the test images into that Docker.
    pub fn boot(name: &str) -> SystemdNode {
        ensure_image();
        let name = format!("staticlet-{name}-{}", std::process::id());
        let _ = Command::new("docker").args(["rm", "-f", &name]).output();
        // Storage for the inner engine on the host's file system: overlayfs cannot sit on the
        // container's own overlay.
        let storage = tempfile::Builder::new().prefix("staticlet-node-docker").tempdir_in("/var/tmp").unwrap();
        let docker_dir = format!("{}:/var/lib/docker", storage.path().display());
        let cgroups = CgroupView::new();
        let cgroups_dir = format!("{}:/sys/fs/cgroup:rw", cgroups.dir.display());
        // Every capability this machine grants (it withholds CAP_SYS_RESOURCE, so --privileged
        // cannot start here), no seccomp or AppArmor filter, every device, writable /proc and
        // cgroups: what systemd and a nested dockerd need.
        let run = Command::new("docker")
            .args(["run", "-d", "--name", &name, "--hostname", &name])
            .args(["--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE"])
            .args(["--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined"])
            .args(["--security-opt", "systempaths=unconfined", "--device-cgroup-rule", "a *:* rwm"])
            .args(["--cgroupns=host", "-v", &cgroups_dir])
            .args(["--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp", "-v", &docker_dir])
            .args([IMAGE, "/lib/systemd/systemd"])
            .output()
            .unwrap();
        assert!(run.status.success(), "booting the node: {}", String::from_utf8_lossy(&run.stderr));
        let node = SystemdNode { name, storage, _cgroups: cgroups };
        node.wait("systemd to finish booting and Docker to start", Duration::from_secs(120), || {
            let state = node.sh("systemctl is-system-running").stdout;
            let booted = matches!(String::from_utf8_lossy(&state).trim(), "running" | "degraded");
            booted && node.sh("docker info >/dev/null 2>&1").status.success()
        });
        for (tag, archive) in images::archives() {
            let loaded = node.sh_with_input("docker load", &archive);
            assert!(loaded.status.success(), "loading {tag} into the node's Docker: {}", String::from_utf8_lossy(&loaded.stderr));
        }
        node
    }

    /// The node's hostname, which is the agent's node name there.
    pub fn hostname(&self) -> &str {
        &self.name
    }

    /// Copies `file` from the host to `path` on the node.
    pub fn copy_in(&self, file: &Path, path: &str) {
        let copied = Command::new("docker").args(["cp"]).arg(file).arg(format!("{}:{path}", self.name)).output().unwrap();
        assert!(copied.status.success(), "docker cp: {}", String::from_utf8_lossy(&copied.stderr));
    }

    /// Runs `script` with `sh -c` on the node.
    pub fn sh(&self, script: &str) -> Output {
        self.sh_with_input(script, &[])
    }

    /// Runs `script` with `sh -c` on the node, `input` on its stdin.
    pub fn sh_with_input(&self, script: &str, input: &[u8]) -> Output {
        let mut child = Command::new("docker")
            .args(["exec", "-i", &self.name, "sh", "-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(input);
        child.wait_with_output().unwrap()
    }

    /// The stdout of `script`, trimmed; panics with its stderr when it fails.
    pub fn ok(&self, script: &str) -> String {
        let output = self.sh(script);
        assert!(
            output.status.success(),
            "`{script}` failed on the node: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Polls `check` every half second until it holds; panics naming `what` (with the agent's
    /// unit status) after `timeout`.
    pub fn wait(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let status = self.sh("systemctl status staticlet --no-pager; journalctl -u staticlet --no-pager | tail -40");
        panic!("timed out after {timeout:?} waiting for {what}:\n{}", String::from_utf8_lossy(&status.stdout));
    }

    /// A unit's property (`systemctl show -P`).
    pub fn unit_property(&self, unit: &str, property: &str) -> String {
        self.ok(&format!("systemctl show -P {property} {unit}"))
    }
}

impl Drop for SystemdNode {
    fn drop(&mut self) {
        // The storage directory goes after the container, with its engine's mounts.
        let _ = Command::new("docker").args(["rm", "-f", "-v", &self.name]).output();
    }
}

/// The mount points of the host's cgroup hierarchies under /sys/fs/cgroup, after mounting the
/// v1 controllers nothing has mounted yet, as systemd does on a host it boots.
///
/// A systemd booting in a container mounts every controller the kernel has; a v1 hierarchy it
/// creates that way outlives the container and shows in every process's /proc/PID/cgroup, and
/// containerd, finding no mount for it on the host, stops loading containers' cgroups (no OOM
/// events, no stats). Mounted on the host first, the node's systemd finds them there.
fn host_cgroup_hierarchies() -> Vec<String> {
    let mounted = || -> Vec<(String, String)> {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|line| {
                let (left, right) = line.split_once(" - ")?;
                let mut fields = right.split_whitespace();
                let kind = fields.next()?;
                let options = fields.nth(1)?;
                let point = left.split_whitespace().nth(4)?;
                (point.starts_with("/sys/fs/cgroup/") && (kind == "cgroup" || kind == "cgroup2"))
                    .then(|| (point.to_owned(), options.to_owned()))
            })
            .collect()
    };
    let covered =
        |controller: &str, mounts: &[(String, String)]| mounts.iter().any(|(_, options)| options.split(',').any(|o| o == controller));
    // Hierarchies that exist (listed for this process) keep their controller sets.
    let existing: Vec<String> = std::fs::read_to_string("/proc/self/cgroup")
        .unwrap()
        .lines()
        .filter_map(|line| line.split(':').nth(1).filter(|c| !c.is_empty() && !c.starts_with("name=")).map(str::to_owned))
        .collect();
    let enabled: Vec<String> = std::fs::read_to_string("/proc/cgroups")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(3) == Some(&"1")).then(|| fields[0].to_owned())
        })
        .collect();
    for controller in &enabled {
        let mounts = mounted();
        if covered(controller, &mounts) {
            continue;
        }
        // systemd's own pairs, unless the kernel already has the controller elsewhere.
        let set =
            existing.iter().find(|set| set.split(',').any(|c| c == controller)).cloned().unwrap_or_else(|| match controller.as_str() {
                "net_cls" | "net_prio" if !covered("net_cls", &mounts) && !covered("net_prio", &mounts) => "net_cls,net_prio".to_owned(),
                "cpu" | "cpuacct" if !covered("cpu", &mounts) && !covered("cpuacct", &mounts) => "cpu,cpuacct".to_owned(),
                other => other.to_owned(),
            });
        let point = format!("/sys/fs/cgroup/{set}");
        std::fs::create_dir_all(&point).unwrap();
        let mount = Command::new("mount").args(["-t", "cgroup", "-o", &set, "cgroup", &point]).output().unwrap();
        assert!(mount.status.success(), "mounting the {set} cgroup hierarchy: {}", String::from_utf8_lossy(&mount.stderr));
        for member in set.split(',').filter(|member| *member != set) {
            let _ = std::os::unix::fs::symlink(&set, format!("/sys/fs/cgroup/{member}"));
        }
    }
    mounted().into_iter().map(|(point, _)| point).collect()
}

/// Makes the node image unless Docker has it: debootstrap from Debian's mirror
/// (`STATICLET_TEST_DEBIAN_MIRROR`, default deb.debian.org), imported as one layer. Several
/// test processes may race here; the image is made under a lock file.
fn ensure_image() {
    let has_image = || Command::new("docker").args(["image", "inspect", IMAGE]).output().is_ok_and(|o| o.status.success());
    if has_image() {
        return;
    }
    let lock = std::fs::File::create("/var/tmp/staticlet-systemd-node.lock").unwrap();
    lock.lock().unwrap();
    if has_image() {
        return;
    }
    let mirror = std::env::var("STATICLET_TEST_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    let root: PathBuf = tempfile::Builder::new().prefix("staticlet-node-root").tempdir_in("/var/tmp").unwrap().keep();
    let bootstrap = Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={PACKAGES}"), "bookworm"])
        .arg(&root)
        .arg(&mirror)
        .output()
        .expect("debootstrap is installed (Debian's debootstrap package)");
    assert!(bootstrap.status.success(), "debootstrap: {}", String::from_utf8_lossy(&bootstrap.stdout));
    let import = Command::new("sh")
        .arg("-c")
        .arg(format!("tar -C {} -c . | docker import -c 'CMD [\"/lib/systemd/systemd\"]' - {IMAGE}", root.display()))
        .output()
        .unwrap();
    assert!(import.status.success(), "docker import: {}", String::from_utf8_lossy(&import.stderr));
    let _ = std::fs::remove_dir_all(&root);
}
