//! libFuzzer target `differential`: backstop-fuzz's `differential` check
//! under coverage guidance. The input drives wasm-smith (no imports, NaNs
//! canonical), as in the stable campaigns. A finding (a panic, a wrong
//! verdict, a difference) fails the case, so libFuzzer saves and reports
//! it.

#![no_main]

use backstop_fuzz::{check_module, Target, Verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let module: Option<Vec<u8>> =
        backstop_fuzz::generate::smith_module(data, backstop_fuzz::generate::Purpose::Compare).ok();
    if let Some(module) = module {
        if let Verdict::Finding(finding) = check_module(Target::Differential, &module) {
            panic!("{finding}");
        }
    }
});
