//! The folders of `src/` are the runtime's layers (ARCHITECTURE.md): each
//! may use the ones below it and never one above, so the import graph
//! between folders has no cycle. This test reads the sources and fails on
//! an import that runs back up, naming the file and the path.
//!
//! The layers, lowest first: `debug`, `error`, `mappings`, `compile`,
//! `ending`, `store`, `api`. A `use crate::Name` of a name `lib.rs`
//! re-exports counts as a use of the folder it comes from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

const LAYERS: [&str; 7] = [
    "debug", "error", "mappings", "compile", "ending", "store", "api",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The layer a file belongs to: its folder, or its own name at the top.
fn layer_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap();
    let name = first.as_os_str().to_str().unwrap();
    name.trim_end_matches(".rs").to_string()
}

/// `lib.rs`'s re-exports: a public name -> the layer it comes from.
fn reexports(lib: &str) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for line in lib.lines() {
        let Some(rest) = line.strip_prefix("pub use ") else {
            continue;
        };
        let (path, items) = match rest.find("::{") {
            Some(i) => (&rest[..i], rest[i + 3..].trim_end_matches("};")),
            None => match rest.rsplit_once("::") {
                Some((path, item)) => (path, item.trim_end_matches(';')),
                None => continue,
            },
        };
        let layer = path.split("::").next().unwrap().to_string();
        for item in items.split(',') {
            let item = item.trim();
            if !item.is_empty() {
                names.insert(item.to_string(), layer.clone());
            }
        }
    }
    names
}

/// Every layer a source text names through `crate::` paths (outside
/// comments), with the path as written.
fn crate_paths(text: &str, names: &HashMap<String, String>) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap();
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().next_back();
            let after = &rest[i + "crate::".len()..];
            rest = after;
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // `mycrate::`, not ours
            }
            let mut targets = Vec::new();
            if let Some(list) = after.strip_prefix('{') {
                let list = &list[..list.find('}').unwrap_or(list.len())];
                targets.extend(list.split(',').map(str::trim));
            } else {
                targets.push(after);
            }
            for target in targets {
                let head: String = target
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let layer = if LAYERS.contains(&head.as_str()) {
                    head.clone()
                } else if let Some(layer) = names.get(&head) {
                    layer.clone()
                } else {
                    continue;
                };
                let path: String = target
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                found.push((layer, format!("crate::{path}")));
            }
        }
    }
    found
}

#[test]
fn src_folders_import_only_downwards() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let names = reexports(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut upward = Vec::new();
    for file in &files {
        let layer = layer_of(&src, file);
        if layer == "lib" {
            continue;
        }
        let rank = LAYERS
            .iter()
            .position(|l| *l == layer)
            .unwrap_or_else(|| panic!("{} is in no layer of LAYERS", file.display()));
        let text = std::fs::read_to_string(file).unwrap();
        for (target, path) in crate_paths(&text, &names) {
            let target_rank = LAYERS.iter().position(|l| *l == target).unwrap();
            if target_rank > rank {
                upward.push(format!(
                    "{} ({layer}) uses {path} ({target})",
                    file.strip_prefix(&src).unwrap().display()
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that run up the layers:\n{}",
        upward.join("\n")
    );
    // The check sees the imports it must: `api` uses the store.
    let calls = std::fs::read_to_string(src.join("api/calls.rs")).unwrap();
    assert!(crate_paths(&calls, &names)
        .iter()
        .any(|(layer, _)| layer == "store"));
}
