//! Gives the compiler a source id (`BACKSTOP_JIT_SOURCE_ID`): a hash of this
//! crate's sources and of the workspace's `Cargo.lock` (which pins the
//! Cranelift release). A `.cwasm` file records it, and one made by any other
//! build of the compiler is refused, even at the same version number.

use std::path::{Path, PathBuf};

/// FNV-1a, 64 bits: enough to tell builds apart, and no dependency.
fn fnv1a(hash: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *hash ^= u64::from(b);
        *hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let mut files = Vec::new();
    files_under(&manifest.join("src"), &mut files);
    files.push(manifest.join("build.rs"));
    files.push(manifest.join("../Cargo.lock"));
    files.sort();
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for file in &files {
        if let Ok(bytes) = std::fs::read(file) {
            let relative = file.strip_prefix(&manifest).unwrap_or(file);
            fnv1a(&mut hash, relative.to_string_lossy().as_bytes());
            fnv1a(&mut hash, &bytes);
        }
    }
    println!("cargo:rustc-env=BACKSTOP_JIT_SOURCE_ID={hash:016x}");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../Cargo.lock");
}
