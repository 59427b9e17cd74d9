//! Every saved case in `fuzz/regressions/` passes its target's check (the
//! target is the file name's first word: `compile-...`, `run-...`,
//! `differential-...`).

use backstop_fuzz::{check_module, Target, Verdict};
use std::path::Path;

#[test]
fn every_saved_case_passes_its_target() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("fuzz/regressions exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wat" || e == "wasm"))
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let target = name
            .split('-')
            .next()
            .and_then(Target::from_name)
            .unwrap_or_else(|| panic!("{name}: the name must start with a target"));
        let bytes = std::fs::read(&path).unwrap();
        let module = if bytes.starts_with(b"\0asm") {
            bytes
        } else {
            wat::parse_bytes(&bytes)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .into_owned()
        };
        let verdict = check_module(target, &module);
        assert!(
            !matches!(verdict, Verdict::Finding(_)),
            "{name}: {verdict:?}"
        );
        checked += 1;
    }
    assert!(checked > 0, "no saved cases in {}", dir.display());
    println!("{checked} saved cases pass");
}
