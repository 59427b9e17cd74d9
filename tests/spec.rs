//! The Wasm 2.0 specification suite (`cargo test --release --test spec`):
//! every `.wast` of `../shared/spec-testsuite` (`core/` and `simd/`), run
//! three times, and each run must give the same counts:
//! - with the default engine (the totals line `spec: N passed, ...`);
//! - with the compiler closing every loop it can (`loop_exits` normally
//!   closes only loops under register pressure, which the spec modules
//!   rarely have) and Cranelift's verifier checking every function after
//!   the passes;
//! - compiled for the instruction-set baseline (x86-64: SSE2 only): other
//!   lowerings for SIMD and bit counting, and float rounding and `pshufb`
//!   through Backstop's own libcalls.
//!
//! Every run is under Wasm 2.0 rules: the proposals beyond it are switched
//! off, since the suite calls some of their modules invalid (two memories,
//! for one). The Wasm 3.0 suite is `tests/spec3.rs`.
//!
//! The harness is `tests/spec_harness/`.

mod spec_harness;

use backstop::{Config, Engine};
use spec_harness::{rerun, run_suite, Suite};
use std::process::ExitCode;

const SUITE: Suite = Suite {
    label: "spec",
    dir_var: "BACKSTOP_SPEC_DIR",
    default_dir: "../shared/spec-testsuite",
    subdirs: &["core", "simd"],
    known_failures: "tests/spec-known-failures.txt",
    wasm3: false,
};

/// A configuration with every proposal beyond Wasm 2.0 off.
fn wasm2() -> Config {
    let mut config = Config::new();
    config
        .wasm_extended_const(false)
        .wasm_multi_memory(false)
        .wasm_relaxed_simd(false);
    config
}

fn main() -> ExitCode {
    let first = run_suite(&SUITE, &Engine::new(&wasm2()).expect("engine"));
    if first.files.is_empty() {
        return if first.ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }

    let mut config = wasm2();
    config.loop_closing_threshold(0).verify_compiled_code(true);
    let closed = rerun(
        &SUITE,
        &Engine::new(&config).expect("engine"),
        &first.files,
        "closed",
    );
    println!(
        "spec, every loop closed and verified: {} passed, {} failed (must equal the run above)",
        closed.passed, closed.failed
    );

    let mut config = wasm2();
    config.native_cpu_features(false);
    let baseline = rerun(
        &SUITE,
        &Engine::new(&config).expect("engine"),
        &first.files,
        "baseline",
    );
    println!(
        "spec, baseline CPU features: {} passed, {} failed (must equal the first run)",
        baseline.passed, baseline.failed
    );

    let same = |t: &spec_harness::Totals| {
        (t.passed, t.failed) == (first.totals.passed, first.totals.failed)
    };
    if !same(&closed) {
        println!("the loop-closing pass changed results");
    }
    if !same(&baseline) {
        println!("compiling for the baseline CPU changed results");
    }
    if first.ok && same(&closed) && same(&baseline) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
