//! Compilation benchmark for Backstop: a generated module of 2,000 functions
//! (about 296 KiB of binary), compiled with parallel compilation on (the
//! default) and off; and compiling real modules against loading them
//! precompiled (`precompiled/`: the largest sightglass modules, read in
//! place from ../shared/programs/sightglass, skipped when it is missing).
//!
//! Run with `cargo bench --bench compile`. The module is generated as WAT
//! and converted to binary once, outside the measurement: the benchmark
//! times `Module::from_binary` (validation, Cranelift compilation, code
//! publishing and unwind-info registration) and the module's drop.

use backstop::{Config, Engine, Module};
use criterion::{black_box, criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use std::fmt::Write;
use std::time::Duration;

const FUNCTIONS: usize = 2000;
/// Segments per function body: SEGMENTS_MIN + 0..SEGMENTS_SPREAD (about 2
/// on average, tuned with the extra segment below for a ~296 KiB binary).
const SEGMENTS_MIN: u32 = 1;
const SEGMENTS_SPREAD: u32 = 3;

/// Deterministic xorshift, so every run compiles the same module.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as u32
    }

    fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

/// A random i32 expression over the function's i32 params/locals.
fn i32_expr(rng: &mut Rng, depth: u32, out: &mut String) {
    const LOCALS: [&str; 5] = ["$p0", "$p1", "$a", "$b", "$c"];
    const BINOPS: [&str; 10] = [
        "i32.add",
        "i32.sub",
        "i32.mul",
        "i32.and",
        "i32.or",
        "i32.xor",
        "i32.shl",
        "i32.shr_u",
        "i32.rotl",
        "i32.lt_s",
    ];
    if depth == 0 || rng.below(4) == 0 {
        if rng.below(3) == 0 {
            write!(out, "(i32.const {})", rng.next() as i32 % 100_000).unwrap();
        } else {
            write!(out, "(local.get {})", LOCALS[rng.below(5) as usize]).unwrap();
        }
        return;
    }
    match rng.below(8) {
        0 => {
            out.push_str("(i32.clz ");
            i32_expr(rng, depth - 1, out);
            out.push(')');
        }
        1 => {
            out.push_str("(select ");
            i32_expr(rng, depth - 1, out);
            out.push(' ');
            i32_expr(rng, depth - 1, out);
            out.push(' ');
            i32_expr(rng, depth - 1, out);
            out.push(')');
        }
        _ => {
            write!(out, "({} ", BINOPS[rng.below(BINOPS.len() as u32) as usize]).unwrap();
            i32_expr(rng, depth - 1, out);
            out.push(' ');
            i32_expr(rng, depth - 1, out);
            out.push(')');
        }
    }
}

/// An in-bounds address expression for the 1-page memory.
fn addr(rng: &mut Rng, out: &mut String) {
    out.push_str("(i32.and ");
    i32_expr(rng, 1, out);
    out.push_str(" (i32.const 0xfff8))");
}

/// One segment of a function body: a statement that leaves the stack empty.
fn segment(rng: &mut Rng, index: usize, out: &mut String) {
    let local = ["$a", "$b", "$c"][rng.below(3) as usize];
    match rng.below(6) {
        // Arithmetic into a local.
        0 => {
            write!(out, "    (local.set {local} ").unwrap();
            i32_expr(rng, 3, out);
            out.push_str(")\n");
        }
        // A counted loop with an accumulator.
        1 => {
            let trips = 3 + rng.below(30);
            write!(
                out,
                "    (local.set $i (i32.const 0))\n    (loop $l\n      (local.set {local} "
            )
            .unwrap();
            out.push_str("(i32.add (local.get $i) ");
            i32_expr(rng, 2, out);
            out.push_str("))\n");
            writeln!(
                out,
                "      (local.set $x (i64.add (local.get $x) (i64.extend_i32_u (local.get {local}))))"
            )
            .unwrap();
            writeln!(
                out,
                "      (local.set $i (i32.add (local.get $i) (i32.const 1)))\n      (br_if $l (i32.lt_u (local.get $i) (i32.const {trips}))))"
            )
            .unwrap();
        }
        // A call to an earlier function (the call graph is acyclic).
        2 if index > 0 => {
            let callee = rng.below(index as u32);
            write!(out, "    (local.set {local} (call $f{callee} ").unwrap();
            i32_expr(rng, 2, out);
            out.push(' ');
            i32_expr(rng, 2, out);
            out.push_str("))\n");
        }
        // Memory loads and stores, i32, i64 and f64.
        3 => {
            out.push_str("    (i32.store ");
            addr(rng, out);
            out.push(' ');
            i32_expr(rng, 2, out);
            out.push_str(")\n");
            write!(
                out,
                "    (local.set {local} (i32.add (local.get {local}) (i32.load "
            )
            .unwrap();
            addr(rng, out);
            out.push_str(")))\n");
            out.push_str("    (i64.store ");
            addr(rng, out);
            out.push_str(" (i64.mul (local.get $x) (i64.load ");
            addr(rng, out);
            out.push_str(")))\n");
        }
        // Floating point through a local and memory.
        4 => {
            out.push_str("    (local.set $d (f64.add (f64.mul (local.get $d) (f64.convert_i32_s ");
            i32_expr(rng, 2, out);
            out.push_str(")) (f64.load ");
            addr(rng, out);
            out.push_str(")))\n    (f64.store ");
            addr(rng, out);
            out.push_str(" (f64.sqrt (f64.abs (local.get $d))))\n");
        }
        // Control flow: if/else and a block with br_if.
        _ => {
            out.push_str("    (if ");
            i32_expr(rng, 2, out);
            write!(out, "\n      (then (local.set {local} ").unwrap();
            i32_expr(rng, 2, out);
            write!(out, "))\n      (else (local.set {local} ").unwrap();
            i32_expr(rng, 2, out);
            out.push_str(")))\n    (block $out\n      (br_if $out ");
            i32_expr(rng, 1, out);
            out.push_str(")\n      (local.set $c ");
            i32_expr(rng, 2, out);
            out.push_str("))\n");
        }
    }
}

/// The WAT of a module with `FUNCTIONS` varied functions
/// `(i32 i32) -> i32`, a 1-page memory and every tenth function exported.
fn generate_wat() -> String {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = String::from("(module\n  (memory (export \"memory\") 1)\n");
    for index in 0..FUNCTIONS {
        write!(out, "  (func $f{index}").unwrap();
        if index % 10 == 0 {
            write!(out, " (export \"f{index}\")").unwrap();
        }
        out.push_str(
            " (param $p0 i32) (param $p1 i32) (result i32)\n    (local $a i32) (local $b i32) (local $c i32) (local $i i32) (local $x i64) (local $d f64)\n",
        );
        // Every 40th function gets one more segment: fine-tunes the size.
        let segments = SEGMENTS_MIN + rng.below(SEGMENTS_SPREAD) + u32::from(index % 40 == 0);
        for _ in 0..segments {
            segment(&mut rng, index, &mut out);
        }
        out.push_str(
            "    (i32.add (i32.xor (local.get $a) (local.get $b)) (i32.add (local.get $c) (i32.wrap_i64 (local.get $x)))))\n",
        );
    }
    out.push_str(")\n");
    out
}

fn compile(c: &mut Criterion) {
    let wat = generate_wat();
    let binary = wat::parse_str(&wat).expect("generated module parses");
    println!(
        "compile/2000_functions: {FUNCTIONS} functions, {} bytes of binary ({:.1} KiB), {} bytes of text",
        binary.len(),
        binary.len() as f64 / 1024.0,
        wat.len()
    );

    let parallel = Engine::default();
    let mut config = Config::new();
    config.parallel_compilation(false);
    let serial = Engine::new(&config).unwrap();
    // Sanity check: it compiles, and an exported function runs.
    {
        let module = Module::from_binary(&parallel, &binary).unwrap();
        assert_eq!(module.function_count(), FUNCTIONS);
        let mut store = backstop::Store::new(&parallel, ());
        let instance = backstop::Linker::new(&parallel)
            .instantiate(&mut store, &module)
            .unwrap();
        instance
            .call::<(i32, i32), i32>(&mut store, "f1990", (3, 4))
            .unwrap();
    }

    let mut group = c.benchmark_group("compile/2000_functions");
    // ~0.1-0.3 s per compile: 10 samples of equal size over ~8 s.
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Bytes(binary.len() as u64));
    group.bench_function("parallel", |b| {
        b.iter(|| Module::from_binary(&parallel, black_box(&binary)).unwrap())
    });
    group.bench_function("serial", |b| {
        b.iter(|| Module::from_binary(&serial, black_box(&binary)).unwrap())
    });
    group.finish();
}

/// The largest real modules at hand: TinyGo's regex (1.3 MB), SQLite (C,
/// 853 KB) and blind-sig (the largest Rust one, 403 KB).
const REAL_MODULES: [(&str, &str); 3] = [
    ("tinygo_regex", "tinygo/tinygo-regex.wasm"),
    ("sqlite3", "sqlite3/sqlite3.wasm"),
    ("blind_sig", "blind-sig/benchmark.wasm"),
];

/// Compiling each real module (`Module::from_binary`) against loading its
/// `.cwasm` (`Module::deserialize`), both with the module's drop.
fn precompiled(c: &mut Criterion) {
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/programs/sightglass");
    if !root.is_dir() {
        println!(
            "precompiled: skipped, no sightglass programs at {}",
            root.display()
        );
        return;
    }
    let engine = Engine::default();
    let mut group = c.benchmark_group("precompiled");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(8));
    for (name, path) in REAL_MODULES {
        let binary = std::fs::read(root.join(path)).expect("the sightglass module reads");
        let compiled = engine.precompile_module(&binary).unwrap();
        println!(
            "precompiled/{name}: {} bytes of Wasm, {} bytes of .cwasm",
            binary.len(),
            compiled.len()
        );
        group.bench_function(format!("compile/{name}"), |b| {
            b.iter(|| Module::from_binary(&engine, black_box(&binary)).unwrap())
        });
        group.bench_function(format!("deserialize/{name}"), |b| {
            // SAFETY: the bytes come from `precompile_module` above.
            b.iter(|| unsafe { Module::deserialize(&engine, black_box(&compiled)) }.unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, compile, precompiled);
criterion_main!(benches);
