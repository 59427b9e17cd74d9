//! Real programs against native code: three compute-heavy C programs from
//! `benches/programs/` (SHA-256, quicksort, an LZ77-style compressor), each
//! run natively and as a WASI command under Backstop.
//!
//! Run with `cargo bench --bench programs`. Benchmarks, per program `P`:
//!
//! - `programs/P/native`: spawn `target/programs-native/P` (built here with
//!   `clang-14 -O2` before measuring) and wait for it; wall time of the
//!   whole process, output piped and checked.
//! - `programs/P/backstop`: instantiate the precompiled module (default
//!   `Config`: no interrupt checks, kills use a signal) with a fresh
//!   `WasiCtx` whose stdout is a `WritePipe`, and run `_start`
//!   (`backstop_wasi::run`).
//! - `programs/P/backstop_checked`: the same with
//!   `Config::interrupt_checks(true)`.
//! - `programs/P/compile`: `Module::new` on the `.wasm` file (default
//!   `Config`), which is outside the timed region of the two above.
//!
//! - with `BACKSTOP_BENCH_PASSES=1` in the environment, also
//!   `programs/P/backstop_no_divconst`, `programs/P/backstop_close_every_loop`
//!   and `programs/P/backstop_no_loop_closing`: the default `Config` with
//!   one of Backstop's own compiler passes off or set otherwise
//!   (`compiler_passes`, `loop_closing_threshold(0 or usize::MAX)`), which
//!   is how BENCHMARKS.md measures what each pass is worth.
//!
//! Every variant's stdout is checked against the native program's once
//! before it is measured. Needs `clang-14` for the native builds; without
//! it the `native` benchmarks are skipped. See BENCHMARKS.md, section
//! "Real programs vs native".

use backstop::{Config, Engine, Linker, Module};
use backstop_wasi::{self as wasi, WasiCtx, WasiCtxBuilder, WritePipe};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PROGRAMS: &[&str] = &["sha256", "quicksort", "lz77"];

struct State {
    wasi: WasiCtx,
}

fn programs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/programs")
}

/// Builds the native binary of `name` with `clang-14 -O2` into
/// `target/programs-native/`; `None` if clang-14 is missing or fails.
fn build_native(name: &str) -> Option<PathBuf> {
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/programs-native");
    std::fs::create_dir_all(&out_dir).ok()?;
    let out = out_dir.join(name);
    let status = Command::new("clang-14")
        .arg("-O2")
        .arg("-o")
        .arg(&out)
        .arg(programs_dir().join(format!("{name}.c")))
        .status();
    match status {
        Ok(s) if s.success() => Some(out),
        _ => {
            eprintln!("programs: cannot build {name} natively with clang-14; skipping native");
            None
        }
    }
}

fn run_native(binary: &Path) -> String {
    let output = Command::new(binary)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("native program runs");
    assert!(output.status.success(), "{} failed", binary.display());
    String::from_utf8(output.stdout).unwrap()
}

/// Instantiates `module` with a fresh WASI context and runs `_start`;
/// returns its stdout.
fn run_backstop(linker: &Linker<State>, module: &Module) -> String {
    let stdout = WritePipe::new();
    let wasi = WasiCtxBuilder::new()
        .arg("program")
        .stdout(stdout.clone())
        .inherit_stderr()
        .build();
    let mut store = backstop::Store::new(module.engine(), State { wasi });
    let instance = linker.instantiate(&mut store, module).unwrap();
    assert_eq!(wasi::run(&mut store, instance).unwrap(), 0);
    drop(store);
    stdout.contents_string()
}

/// The default engine with `change` applied to its `Config`.
fn engine_with(change: impl FnOnce(&mut Config)) -> Engine {
    let mut config = Config::new();
    change(&mut config);
    Engine::new(&config).unwrap()
}

fn linker(engine: &Engine) -> Linker<State> {
    let mut linker = Linker::new(engine);
    wasi::add_to_linker(&mut linker, |s: &mut State| &mut s.wasi).unwrap();
    linker
}

fn programs(c: &mut Criterion) {
    let mut group = c.benchmark_group("programs");
    // Each run takes about a second: flat sampling, one run per sample.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(8));

    let mut engines = vec![
        ("backstop", engine_with(|_| {})),
        (
            "backstop_checked",
            engine_with(|c| {
                c.interrupt_checks(true);
            }),
        ),
    ];
    if std::env::var_os("BACKSTOP_BENCH_PASSES").is_some() {
        engines.push((
            "backstop_no_divconst",
            engine_with(|c| {
                c.compiler_passes(false);
            }),
        ));
        engines.push((
            "backstop_close_every_loop",
            engine_with(|c| {
                c.loop_closing_threshold(0);
            }),
        ));
        engines.push((
            "backstop_no_loop_closing",
            engine_with(|c| {
                c.loop_closing_threshold(usize::MAX);
            }),
        ));
    }

    for name in PROGRAMS {
        let wasm = std::fs::read(programs_dir().join(format!("{name}.wasm")))
            .expect("benches/programs/*.wasm exist (run benches/programs/build.sh)");

        let native = build_native(name);
        let expected = native.as_ref().map(|binary| run_native(binary));
        if let (Some(binary), Some(expected)) = (&native, &expected) {
            print!("{name}: {expected}");
            group.bench_function(format!("{name}/native"), |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        assert_eq!(&run_native(binary), expected);
                    }
                    start.elapsed()
                })
            });
        }

        for (label, engine) in &engines {
            let module = Module::new(engine, &wasm).unwrap();
            println!(
                "{name}: {} bytes, {} functions, compiled in {:.2} ms ({label})",
                wasm.len(),
                module.function_count(),
                module.compile_time().as_secs_f64() * 1e3
            );
            let linker = linker(engine);
            let first = run_backstop(&linker, &module);
            if let Some(expected) = &expected {
                assert_eq!(
                    &first, expected,
                    "{name}: Backstop output differs from native"
                );
            }
            group.bench_function(format!("{name}/{label}"), |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        assert_eq!(run_backstop(&linker, &module), first);
                    }
                    start.elapsed()
                })
            });
        }

        let engine = &engines[0].1;
        group.bench_function(format!("{name}/compile"), |b| {
            b.iter(|| Module::new(engine, &wasm).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, programs);
criterion_main!(benches);
