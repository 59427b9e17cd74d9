//! libFuzzer target `compile`: backstop-fuzz's `compile` check under
//! coverage guidance. The raw input is the module: libFuzzer mutates the
//! bytes themselves. A finding (a panic, a wrong verdict, a difference)
//! fails the case, so libFuzzer saves and reports it.

#![no_main]

use backstop_fuzz::{check_module, Target, Verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let module: Option<Vec<u8>> = Some(data.to_vec());
    if let Some(module) = module {
        if let Verdict::Finding(finding) = check_module(Target::Compile, &module) {
            panic!("{finding}");
        }
    }
});
