//! The Wasm 3.0 specification suite (`cargo test --release --test spec3`):
//! every `.wast` of `../shared/spec-testsuite-3.0/core`, ending with the
//! line `spec3: N passed, M failed, K skipped, G unsupported`, where
//! "unsupported" counts only directives whose module Backstop refused with
//! `Error::Unsupported` naming GC.
//!
//! Backstop is on its way to Wasm 3.0 (issue 15): the proposals it does not
//! run yet fail here, and `tests/spec3-known-failures.txt` lists those
//! failures as a ratchet. A listed directive that starts passing must be
//! removed from the list, and a failure not on it fails the test, so the
//! list only shrinks.
//!
//! The harness is `tests/spec_harness/`.

mod spec_harness;

use backstop::Engine;
use spec_harness::{run_suite, Suite};
use std::process::ExitCode;

const SUITE: Suite = Suite {
    label: "spec3",
    dir_var: "BACKSTOP_SPEC3_DIR",
    default_dir: "../shared/spec-testsuite-3.0",
    subdirs: &["core"],
    known_failures: "tests/spec3-known-failures.txt",
    wasm3: true,
};

fn main() -> ExitCode {
    if run_suite(&SUITE, &Engine::default()).ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
