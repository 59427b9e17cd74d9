//! Inputs of the `compile` target: real modules (every `.wasm` committed
//! under `tests/programs`, `wasi/tests/programs` and `benches/programs`) and `wasm-smith` modules,
//! damaged by a few random edits: bit flips, overwritten bytes,
//! truncations, insertions, deletions and duplicated ranges. Some are left
//! whole, so valid modules keep coming through.

use crate::generate::{smith_module, Purpose, Rng};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn wasm_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            wasm_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "wasm") {
            out.push(path);
        }
    }
}

/// The committed modules, read once per process, in a fixed order.
pub fn corpus() -> &'static [Vec<u8>] {
    static CORPUS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        wasm_files(&root.join("tests/programs"), &mut files);
        wasm_files(&root.join("wasi/tests/programs"), &mut files);
        wasm_files(&root.join("benches/programs"), &mut files);
        files.sort();
        files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
    })
}

/// The module bytes of one `compile` case, made from its input bytes.
pub fn mutated_module(input: &[u8]) -> Vec<u8> {
    let mut seed = [0u8; 8];
    for (i, b) in input.iter().take(8).enumerate() {
        seed[i] = *b;
    }
    let mut rng = Rng::new(u64::from_le_bytes(seed), input.len() as u64);
    let corpus = corpus();
    let mut module = if corpus.is_empty() || rng.below(2) == 0 {
        smith_module(&input[8.min(input.len())..], Purpose::Run).unwrap_or_default()
    } else {
        corpus[rng.below(corpus.len() as u64) as usize].clone()
    };
    let edits = rng.below(5);
    for _ in 0..edits {
        edit(&mut module, &mut rng);
    }
    module
}

/// One random edit.
fn edit(module: &mut Vec<u8>, rng: &mut Rng) {
    let len = module.len() as u64;
    // Headers and section boundaries live near the start: aim there often.
    let at = |rng: &mut Rng| {
        if len == 0 {
            0
        } else if rng.below(2) == 0 {
            rng.below(len.min(64)) as usize
        } else {
            rng.below(len) as usize
        }
    };
    match rng.below(6) {
        0 if len > 0 => {
            let i = at(rng);
            module[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = at(rng);
            module[i] = rng.next_u64() as u8;
        }
        2 => {
            let cut = at(rng);
            module.truncate(cut);
        }
        3 => {
            let i = at(rng);
            let count = 1 + rng.below(16) as usize;
            let bytes = rng.bytes(count);
            module.splice(i..i, bytes);
        }
        4 if len > 0 => {
            let i = at(rng);
            let end = (i + 1 + rng.below(32) as usize).min(module.len());
            module.drain(i..end);
        }
        _ if len > 0 => {
            let i = at(rng);
            let end = (i + 1 + rng.below(64) as usize).min(module.len());
            let copy = module[i..end].to_vec();
            let to = at(rng);
            module.splice(to..to, copy);
        }
        _ => {}
    }
}
