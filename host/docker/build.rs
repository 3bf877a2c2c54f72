//! Builds `host/pause` as a static binary for the target the agent is built for, so the Docker
//! runtime can carry a pause image of its own (`pause.rs`) for nodes that cannot pull one. The
//! build has a target dir of its own beside the host's, so it stays warm and never contends for
//! the host's build lock.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let pause = manifest_dir.join("../pause");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let target_dir = out_dir.ancestors().nth(4).expect("OUT_DIR sits four levels below the target dir").join("pause");
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    for path in ["Cargo.toml", "Cargo.lock", "src"] {
        println!("cargo::rerun-if-changed={}", pause.join(path).display());
    }

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .arg("build")
        .arg("--manifest-path")
        .arg(pause.join("Cargo.toml"))
        .args(["--release", "--target", &target, "--target-dir"])
        .arg(&target_dir);
    // The outer build's flags are for the agent; this binary needs only its own: static, so it
    // runs in an image that holds nothing else.
    for var in ["RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET", "RUSTC_WORKSPACE_WRAPPER"] {
        build.env_remove(var);
    }
    build.env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static");
    let status = build.status().expect("running cargo for the pause binary");
    assert!(status.success(), "building the static pause binary in {} failed", pause.display());
    std::fs::copy(target_dir.join(&target).join("release").join("staticlet-pause"), out_dir.join("pause"))
        .expect("the pause binary is built");
}
