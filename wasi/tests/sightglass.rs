//! Real third-party WASI programs (../shared/programs/sightglass, read in
//! place), run as sightglass runs them: the benchmark's directory
//! preopened as `.` **read-only**, no arguments, empty stdin, and
//! `bench.start`/`bench.end` provided as host functions. Their stdout and
//! stderr must equal the expected files beside them. The Rust ones open
//! their input with the standard library, which asks `path_open` for more
//! rights than a read-only directory grants. Without the directory the test
//! says it skipped; with `CI=true` that fails.

use backstop::{Engine, Linker, Module, Store};
use backstop_wasi::{self as wasi, WasiCtx, WasiCtxBuilder, WritePipe};
use std::path::{Path, PathBuf};

struct State {
    wasi: WasiCtx,
    marks: u32,
}

fn sightglass_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/programs/sightglass");
    if dir.is_dir() {
        return Some(dir);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "CI=true: the sightglass programs are missing at {}",
        dir.display()
    );
    println!("SKIPPED: no sightglass programs at {}", dir.display());
    None
}

/// Runs `dir/<name>.wasm` and compares its output with the expected files.
fn run(dir: &Path, name: &str) {
    let engine = Engine::default();
    let module = Module::from_file(&engine, dir.join(format!("{name}.wasm"))).unwrap();
    let mut linker: Linker<State> = Linker::new(&engine);
    wasi::add_to_linker(&mut linker, |s: &mut State| &mut s.wasi).unwrap();
    for mark in ["start", "end"] {
        linker
            .func_wrap("bench", mark, |mut caller: backstop::Caller<'_, State>| {
                caller.data_mut().marks += 1;
            })
            .unwrap();
    }
    let (stdout, stderr) = (WritePipe::new(), WritePipe::new());
    let ctx = WasiCtxBuilder::new()
        .arg(name)
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .preopened_dir_read_only(dir, ".")
        .unwrap()
        .build();
    let mut store = Store::new(
        &engine,
        State {
            wasi: ctx,
            marks: 0,
        },
    );
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let code = wasi::run(&mut store, instance).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        code,
        0,
        "{name}: exit code; stderr: {}",
        stderr.contents_string()
    );
    assert_eq!(store.data().marks, 2, "{name}: bench.start and bench.end");
    for (stream, got) in [("stdout", stdout), ("stderr", stderr)] {
        let expected =
            std::fs::read(dir.join(format!("{name}.{stream}.expected"))).unwrap_or_default();
        assert!(
            got.contents() == expected,
            "{name}: {stream} differs:\n{}\nexpected:\n{}",
            got.contents_string(),
            String::from_utf8_lossy(&expected)
        );
    }
}

#[test]
fn rust_programs_read_their_input_from_a_read_only_preopen() {
    let Some(root) = sightglass_dir() else { return };
    for program in ["pulldown-cmark", "blake3-scalar", "blind-sig"] {
        run(&root.join(program), "benchmark");
    }
}

#[test]
fn c_and_tinygo_programs() {
    let Some(root) = sightglass_dir() else { return };
    run(&root.join("bz2"), "benchmark");
    run(&root.join("shootout"), "shootout-base64");
    run(&root.join("shootout"), "shootout-minicsv");
    run(&root.join("tinygo"), "tinygo-json");
}
