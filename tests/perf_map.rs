//! `Config::perf_map(true)` appends every compiled function of a module to
//! `/tmp/perf-<pid>.map` (start, size, name), so `perf report` names guest
//! code: the lines name the module's functions and cover their code.

use backstop::{Config, Engine, Module};

#[test]
fn perf_map_lists_every_function() {
    let engine = Engine::new(Config::new().perf_map(true)).unwrap();
    let module = Module::new(
        &engine,
        r#"(module $perfdemo
             (func $alpha (result i32) (i32.const 1))
             (func $beta (result i32) (call $alpha))
             (func (export "gamma") (result i32) (call $beta)))"#,
    )
    .unwrap();
    let path = format!("/tmp/perf-{}.map", std::process::id());
    let text = std::fs::read_to_string(&path).expect("the perf map was written");
    let lines: Vec<(usize, usize, &str)> = text
        .lines()
        .filter(|l| l.contains("perfdemo::"))
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let start = usize::from_str_radix(parts.next().unwrap(), 16).unwrap();
            let size = usize::from_str_radix(parts.next().unwrap(), 16).unwrap();
            (start, size, parts.next().unwrap())
        })
        .collect();
    for name in [
        "perfdemo::alpha",
        "perfdemo::beta",
        "perfdemo::<wasm function 2>",
    ] {
        let (start, size, _) = lines
            .iter()
            .find(|(_, _, n)| *n == name)
            .unwrap_or_else(|| panic!("{name} missing from {path}:\n{text}"));
        assert!(*size > 0);
        // The registry agrees: the start of the range is that function.
        let frame = backstop::symbolize(*start).expect("a guest function");
        assert_eq!(
            format!("perfdemo::{}", frame.func_name().unwrap()),
            name,
            "{start:#x}"
        );
    }
    drop(module);
}
