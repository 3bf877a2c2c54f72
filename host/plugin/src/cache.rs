//! Compiled code on disk, so a restart does not compile plugins again. A file is named by the
//! component's SHA-256 and the engine's compatibility hash (wasmtime's version and every setting
//! that shapes code), so a new agent build or a changed `.wasm` never reads stale code. Files are
//! written to a temporary name, synced and renamed into place, and never rewritten: a loaded
//! file is memory-mapped, and rewriting it in place would change code under a running plugin.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use tracing::{debug, warn};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a component's code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Compiled when the agent was built, and embedded in it.
    Precompiled,
    /// Read from the cache.
    Cached,
    /// Compiled now (and written to the cache if there is one).
    Compiled,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::Precompiled => "precompiled",
            Origin::Cached => "cached",
            Origin::Compiled => "compiled",
        })
    }
}

pub(crate) struct CodeCache {
    dir: PathBuf,
    engine_key: String,
}

impl CodeCache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        CodeCache { dir, engine_key: format!("{:016x}", hasher.finish()) }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// The component for `wasm`, from the cache when it holds it, else compiled and stored.
    ///
    /// # Errors
    ///
    /// Only a compile error; a cache that cannot be read or written is logged and bypassed.
    pub(crate) fn load(&self, engine: &Engine, wasm: &[u8], digest: &str) -> wasmtime::Result<(Component, Origin)> {
        let path = self.path(digest);
        if path.exists() {
            match deserialize(engine, &path) {
                Ok(component) => return Ok((component, Origin::Cached)),
                Err(e) => warn!(file = %path.display(), "cached plugin code is unusable; compiling again: {e}"),
            }
        }
        let component = Component::new(engine, wasm)?;
        match component.serialize().map_err(std::io::Error::other).and_then(|code| write_new(&self.dir, &path, &code)) {
            Ok(()) => debug!(file = %path.display(), "cached compiled plugin code"),
            Err(e) => warn!(dir = %self.dir.display(), "cannot cache compiled plugin code; it will be compiled again next start: {e}"),
        }
        Ok((component, Origin::Compiled))
    }
}

/// Loads precompiled code.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime trusts the bytes it deserializes. These files are written only by
    // `write_new` below, into a directory under --root-dir that only the agent's user can
    // write (0700), and never modified after the rename that publishes them; the file name
    // carries the engine's compatibility hash and wasmtime checks it again on load.
    unsafe { Component::deserialize_file(engine, path) }
}

/// Loads code the build script compiled and the binary embeds.
#[allow(unsafe_code)]
pub(crate) fn deserialize_builtin(engine: &Engine, code: &'static [u8]) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime trusts the bytes it deserializes. These were written by this crate's
    // build script with this very wasmtime and `engine_config`, and are part of the binary
    // itself; wasmtime checks its version and the engine's settings again before using them.
    unsafe { Component::deserialize(engine, code) }
}

/// Returns the memory a compile freed to the system. Cranelift's peak is a few times the
/// settled size of the agent, and glibc's allocator keeps freed memory for reuse, so without
/// this the process would hold its compile-time peak for good. (musl's allocator gives memory
/// back on its own.)
pub(crate) fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only releases free memory at the top of the heaps and in free pages;
    // it is thread-safe and leaves every allocation in place.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn write_new(dir: &Path, path: &Path, code: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let tmp = dir.join(format!(".{}.{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("code"), std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(code)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}
