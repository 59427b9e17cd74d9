//! libFuzzer target `run`: backstop-fuzz's `run` check under coverage
//! guidance. The input drives wasm-smith, as in the stable campaigns. A
//! finding (a panic, a wrong verdict, a difference) fails the case, so
//! libFuzzer saves and reports it.

#![no_main]

use backstop_fuzz::{check_module, Target, Verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let module: Option<Vec<u8>> =
        backstop_fuzz::generate::smith_module(data, backstop_fuzz::generate::Purpose::Run).ok();
    if let Some(module) = module {
        if let Verdict::Finding(finding) = check_module(Target::Run, &module) {
            panic!("{finding}");
        }
    }
});
