//! The reducer: shrinks a module that fails a target's check to a small one
//! that fails the same way (a finding of the check, a crash, or a hang).
//! Valid modules go through `wasm-shrink` (wasm-tools' shrinker, which keeps
//! them valid); modules it cannot read, such as the damaged ones of the
//! `compile` target, through a byte-level delta-debugging loop of ours.
//! Each candidate runs in a child process (`backstop-fuzz check`), so a
//! candidate that crashes or hangs is seen, not suffered.

use crate::Target;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How a module fares with a target's check, seen from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Finding,
    Crash,
    Hang,
}

/// Runs `backstop-fuzz check` on `module` in a child process.
pub fn outcome(worker: &Path, target: Target, module: &[u8], timeout: Duration) -> Outcome {
    let file = scratch_file();
    if std::fs::write(&file, module).is_err() {
        return Outcome::Pass;
    }
    let child = Command::new(worker)
        .args(["check", "--target", target.name()])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return Outcome::Pass;
    };
    let started = Instant::now();
    let outcome = loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                break match status.code() {
                    Some(0) => Outcome::Pass,
                    Some(1) => Outcome::Finding,
                    _ => Outcome::Crash,
                };
            }
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break Outcome::Hang;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(_) => break Outcome::Pass,
        }
    };
    let _ = std::fs::remove_file(&file);
    outcome
}

fn scratch_file() -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "backstop-fuzz-reduce-{}-{}.wasm",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A reduced module and how it was reduced.
pub struct Reduced {
    pub module: Vec<u8>,
    pub outcome: Outcome,
    pub original_size: usize,
    /// How many candidates were tried.
    pub candidates: u64,
}

/// Shrinks `module`, keeping its failure. Errors if it does not fail.
pub fn reduce(
    worker: &Path,
    target: Target,
    module: Vec<u8>,
    timeout: Duration,
    attempts: u32,
) -> Result<Reduced, String> {
    let original = outcome(worker, target, &module, timeout);
    if original == Outcome::Pass {
        return Err("the module passes the check: there is nothing to reduce".into());
    }
    let original_size = module.len();
    let mut candidates = 0u64;
    let mut interesting = |candidate: &[u8]| {
        candidates += 1;
        outcome(worker, target, candidate, timeout) == original
    };
    let valid = wasmparser::Validator::new_with_features(crate::reference_features())
        .validate_all(&module)
        .is_ok();
    let module = if valid {
        wasm_shrink::WasmShrink::default()
            .attempts(attempts)
            .run(module.clone(), |candidate| Ok(interesting(candidate)))
            .map(|info| info.output)
            .unwrap_or(module)
    } else {
        delta_debug(module, &mut interesting)
    };
    Ok(Reduced {
        module,
        outcome: original,
        original_size,
        candidates,
    })
}

/// Byte-level delta debugging: removes ever smaller chunks while the
/// failure stays.
fn delta_debug(mut module: Vec<u8>, interesting: &mut dyn FnMut(&[u8]) -> bool) -> Vec<u8> {
    let mut chunk = module.len().div_ceil(2).max(1);
    loop {
        let mut start = 0;
        let mut removed_any = false;
        while start < module.len() {
            let end = (start + chunk).min(module.len());
            let mut candidate = module.clone();
            candidate.drain(start..end);
            if !candidate.is_empty() && interesting(&candidate) {
                module = candidate;
                removed_any = true;
            } else {
                start = end;
            }
        }
        if chunk == 1 && !removed_any {
            return module;
        }
        if !removed_any {
            chunk = chunk.div_ceil(2);
        }
    }
}

/// The module as text, when it is valid enough to print.
pub fn to_wat(module: &[u8]) -> Option<String> {
    wasmprinter::print_bytes(module).ok()
}
