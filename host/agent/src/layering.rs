//! The agent's layering, checked against its source: every `crate::` import of a top-level
//! module must point at a module on a lower line of the layer table in `docs/architecture.md`,
//! and every module must be in that table. Test code is left out (tests may reach anywhere).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layer table: each top-level module's line, counted from the bottom.
fn layers() -> BTreeMap<String, usize> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/architecture.md")).unwrap();
    let table = doc.split("```layers\n").nth(1).expect("docs/architecture.md has a ```layers block");
    let lines: Vec<&str> = table.split("```").next().unwrap().lines().collect();
    let mut layers = BTreeMap::new();
    for (rank, line) in lines.iter().rev().enumerate() {
        for module in line.split_whitespace() {
            assert!(layers.insert(module.to_owned(), rank).is_none(), "{module} is in the layer table twice");
        }
    }
    layers
}

/// Every `.rs` file under `dir` that is not test code, by top-level module.
fn sources(dir: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut by_module: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        match path.extension() {
            _ if path.is_dir() => by_module.entry(name).or_default().extend(files_under(&path)),
            Some(ext) if ext == "rs" && !matches!(name.as_str(), "lib" | "main" | "layering") => {
                by_module.entry(name).or_default().push(path)
            }
            _ => {}
        }
    }
    by_module
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let test_code = matches!(path.file_name().and_then(|n| n.to_str()), Some("tests.rs" | "testing.rs" | "tests"));
        if test_code {
            continue;
        }
        if path.is_dir() {
            files.extend(files_under(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The top-level modules a file refers to through `crate::`, outside comments and its inline
/// test module.
fn imports(file: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let before_tests = text.split("#[cfg(test)]\nmod tests {").next().unwrap();
    // Comments may name any item (doc links); only code imports.
    let code: String = before_tests.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let name = |text: &str| text.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let mut modules = BTreeSet::new();
    for (at, _) in code.match_indices("crate::").filter(|(at, _)| !code[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_')) {
        let rest = &code[at + "crate::".len()..];
        match rest.strip_prefix('{') {
            // `use crate::{a::X, b};`: the first segment of each path in the group.
            Some(group) => modules.extend(group.split('}').next().unwrap().split(',').map(name)),
            None => {
                modules.insert(name(rest));
            }
        }
    }
    modules
}

#[test]
fn every_module_imports_only_modules_on_lower_layers() {
    let layers = layers();
    let sources = sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let mut wrong = Vec::new();
    for (module, files) in &sources {
        let Some(rank) = layers.get(module) else {
            wrong.push(format!("{module} is not in the layer table of docs/architecture.md"));
            continue;
        };
        for file in files {
            for target in imports(file) {
                // Items of the crate root (`error_chain`) are below every layer.
                let Some(target_rank) = layers.get(&target) else { continue };
                if target != *module && target_rank >= rank {
                    wrong.push(format!("{} imports {target}, which is not on a lower layer than {module}", file.display()));
                }
            }
        }
    }
    for module in layers.keys().filter(|m| !sources.contains_key(*m)) {
        wrong.push(format!("{module} is in the layer table but not in host/agent/src"));
    }
    assert!(wrong.is_empty(), "the layering of docs/architecture.md is broken:\n{}", wrong.join("\n"));
}
