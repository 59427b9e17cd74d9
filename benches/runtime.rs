//! Runtime benchmarks for Backstop: calls across the host/guest boundary,
//! compute-bound guest code, traps and instantiation.
//!
//! Run with `cargo bench --bench runtime`. Each benchmark keeps its setup
//! (compiling, linking, creating a store and instantiating in it, resolving
//! a `TypedFunc`) outside the measured closure unless setup is what it
//! measures (`instantiate/small`, which creates a store per instance).
//! See BENCHMARKS.md for results and the wasmtime reference figures.

use backstop::{Config, Engine, Instance, Linker, Module, Store, TypedFunc};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

/// Guest->host calls per `call/guest_to_host_i32` iteration.
const GUEST_TO_HOST_CALLS: i32 = 1000;

/// Matrix side for `compute/matmul256_f64`.
const N: usize = 256;

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// A store of its own holding one instance of `wat`.
fn instantiate(engine: &Engine, wat: &str) -> (Store<()>, Instance) {
    let module = Module::new(engine, wat).expect("benchmark module compiles");
    let mut store = Store::new(engine, ());
    let instance = Linker::new(engine)
        .instantiate(&mut store, &module)
        .expect("benchmark module instantiates");
    (store, instance)
}

/// `call/*`: the cost of crossing the host/guest boundary.
fn calls(c: &mut Criterion) {
    let engine = Engine::default();
    let mut group = c.benchmark_group("call");
    group.measurement_time(Duration::from_secs(3));

    // Host -> guest: a root call of `() -> ()` through a pre-resolved
    // TypedFunc. Each call switches to the store's guest stack, runs
    // under catch_unwind and checks/updates the store's run state.
    {
        let (mut store, instance) = instantiate(&engine, r#"(module (func (export "nop")))"#);
        let nop: TypedFunc<(), ()> = instance.get_typed_func(&store, "nop").unwrap();
        group.bench_function("host_to_guest_unit", |b| {
            b.iter(|| nop.call(&mut store, ()).unwrap())
        });
    }

    // Guest -> host: a Wasm loop calls an imported `(i32) -> i32` host
    // function GUEST_TO_HOST_CALLS times per iteration. Criterion reports
    // the time of one iteration (one root call + 1000 host calls + loop
    // overhead) and, through `Throughput::Elements`, host calls per second;
    // the per-call figure in BENCHMARKS.md is the median divided by 1000.
    guest_to_host(&mut group, &engine, "guest_to_host_i32");
    // Supplementary: the same with kill-switch checks compiled into every
    // loop header and function entry (`Config::interrupt_checks`).
    guest_to_host(&mut group, &checked(), "guest_to_host_i32_checked");
    group.finish();
}

/// An engine whose code checks for kill-switch requests (interrupt checks).
fn checked() -> Engine {
    let mut config = Config::new();
    config.interrupt_checks(true);
    Engine::new(&config).unwrap()
}

fn guest_to_host(group: &mut Group<'_>, engine: &Engine, name: &str) {
    let module = Module::new(
        engine,
        r#"
        (module
          (import "host" "inc" (func $inc (param i32) (result i32)))
          (func (export "run") (param $n i32) (result i32)
            (local $i i32) (local $acc i32)
            (loop $l
              (local.set $acc (call $inc (local.get $acc)))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
            (local.get $acc)))
        "#,
    )
    .unwrap();
    let mut linker = Linker::new(engine);
    linker
        .func_wrap("host", "inc", |x: i32| x.wrapping_add(1))
        .unwrap();
    let mut store = Store::new(engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let run: TypedFunc<i32, i32> = instance.get_typed_func(&store, "run").unwrap();
    assert_eq!(
        run.call(&mut store, GUEST_TO_HOST_CALLS).unwrap(),
        GUEST_TO_HOST_CALLS
    );
    group.throughput(Throughput::Elements(GUEST_TO_HOST_CALLS as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            run.call(&mut store, black_box(GUEST_TO_HOST_CALLS))
                .unwrap()
        })
    });
}

/// fib(n) = n < 2 ? n : fib(n-1) + fib(n-2): 7,049,155 calls for n = 32.
const FIB_LT2: &str = r#"
    (module
      (func $fib (export "fib") (param $n i32) (result i32)
        (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
          (then (local.get $n))
          (else
            (i32.add
              (call $fib (i32.sub (local.get $n) (i32.const 1)))
              (call $fib (i32.sub (local.get $n) (i32.const 2))))))))
"#;

/// fib(n) = n <= 2 ? 1 : fib(n-1) + fib(n-2): 4,356,617 calls for n = 32.
const FIB_LE2: &str = r#"
    (module
      (func $fib (export "fib") (param $n i32) (result i32)
        (if (result i32) (i32.le_u (local.get $n) (i32.const 2))
          (then (i32.const 1))
          (else
            (i32.add
              (call $fib (i32.sub (local.get $n) (i32.const 1)))
              (call $fib (i32.sub (local.get $n) (i32.const 2))))))))
"#;

fn fib(group: &mut Group<'_>, engine: &Engine, name: &str, wat: &str) {
    let (mut store, instance) = instantiate(engine, wat);
    let fib: TypedFunc<i32, i32> = instance.get_typed_func(&store, "fib").unwrap();
    assert_eq!(fib.call(&mut store, 32).unwrap(), 2_178_309);
    group.bench_function(name, |b| {
        b.iter(|| fib.call(&mut store, black_box(32)).unwrap())
    });
}

/// `compute/*`: code generation quality on compute-bound guest code.
fn compute(c: &mut Criterion) {
    let engine = Engine::default();
    let mut group = c.benchmark_group("compute");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));

    fib(&mut group, &engine, "fib32", FIB_LT2);
    // Supplementary (not reference benchmarks): the other common definition
    // of fib, and fib32 with kill-switch checks. See BENCHMARKS.md.
    fib(&mut group, &engine, "fib32_base_le2", FIB_LE2);
    fib(&mut group, &checked(), "fib32_checked", FIB_LT2);

    // C = A * B, 256x256 row-major f64 matrices in linear memory.
    matmul(&mut group, &engine, "matmul256_f64", MATMUL_IJK);
    // Supplementary: the same product with the two inner loops swapped.
    matmul(&mut group, &engine, "matmul256_f64_ikj", MATMUL_IKJ);
    // Supplementary: the i-j-k product with kill-switch checks.
    matmul(&mut group, &checked(), "matmul256_f64_checked", MATMUL_IJK);
    sieve(&mut group, &engine, "sieve_1m");
    group.finish();
}

/// The primes below one million, counted with a byte-per-number sieve of
/// Eratosthenes in linear memory (`compute/sieve_1m`).
fn sieve(group: &mut Group<'_>, engine: &Engine, name: &str) {
    let wat = r#"
        (module
          (memory 16)
          (func (export "count_primes") (param $n i32) (result i32)
            (local $i i32) (local $j i32) (local $count i32)
            (memory.fill (i32.const 0) (i32.const 0) (local.get $n))
            (local.set $i (i32.const 2))
            (block $done
              (loop $outer
                (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
                (if (i32.eqz (i32.load8_u (local.get $i)))
                  (then
                    (local.set $count (i32.add (local.get $count) (i32.const 1)))
                    ;; Multiples from i*i on, while i*i < n (no overflow).
                    (local.set $j (i32.mul (local.get $i) (local.get $i)))
                    (if (i32.gt_u (local.get $i) (i32.div_u (local.get $n) (local.get $i)))
                      (then (local.set $j (local.get $n))))
                    (block $marked
                      (loop $mark
                        (br_if $marked (i32.ge_u (local.get $j) (local.get $n)))
                        (i32.store8 (local.get $j) (i32.const 1))
                        (local.set $j (i32.add (local.get $j) (local.get $i)))
                        (br $mark)))))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br $outer)))
            (local.get $count)))
    "#;
    let (mut store, instance) = instantiate(engine, wat);
    let count: TypedFunc<i32, i32> = instance.get_typed_func(&store, "count_primes").unwrap();
    assert_eq!(count.call(&mut store, 1_000_000).unwrap(), 78_498);
    group.bench_function(name, |b| {
        b.iter(|| count.call(&mut store, black_box(1_000_000)).unwrap())
    });
}

/// The naive i-j-k kernel: `C[i][j] = sum_k A[i][k] * B[k][j]`, with the
/// sum in a local. `{n}` is the matrix side.
const MATMUL_IJK: &str = r#"
    (local.set $i (i32.const 0))
    (loop $li
      (local.set $j (i32.const 0))
      (loop $lj
        (local.set $sum (f64.const 0))
        (local.set $k (i32.const 0))
        (loop $lk
          (local.set $sum
            (f64.add (local.get $sum)
              (f64.mul
                (f64.load (i32.add (local.get $a)
                  (i32.shl (i32.add (i32.mul (local.get $i) (i32.const {n}))
                                    (local.get $k)) (i32.const 3))))
                (f64.load (i32.add (local.get $b)
                  (i32.shl (i32.add (i32.mul (local.get $k) (i32.const {n}))
                                    (local.get $j)) (i32.const 3)))))))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br_if $lk (i32.lt_u (local.get $k) (i32.const {n}))))
        (f64.store (i32.add (local.get $c)
          (i32.shl (i32.add (i32.mul (local.get $i) (i32.const {n}))
                            (local.get $j)) (i32.const 3)))
          (local.get $sum))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br_if $lj (i32.lt_u (local.get $j) (i32.const {n}))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $li (i32.lt_u (local.get $i) (i32.const {n}))))
"#;

/// The i-k-j kernel: zero row i of C, then `C[i][j] += A[i][k] * B[k][j]`
/// for k, j. Each C[i][j] adds the same products in the same order as the
/// i-j-k kernel, so the results are bit-identical; the innermost loop has
/// no loop-carried floating-point dependency.
const MATMUL_IKJ: &str = r#"
    (local.set $i (i32.const 0))
    (loop $li
      (local.set $row (i32.add (local.get $c)
        (i32.shl (i32.mul (local.get $i) (i32.const {n})) (i32.const 3))))
      (local.set $j (i32.const 0))
      (loop $lz
        (f64.store (i32.add (local.get $row) (i32.shl (local.get $j) (i32.const 3)))
          (f64.const 0))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br_if $lz (i32.lt_u (local.get $j) (i32.const {n}))))
      (local.set $k (i32.const 0))
      (loop $lk
        (local.set $sum
          (f64.load (i32.add (local.get $a)
            (i32.shl (i32.add (i32.mul (local.get $i) (i32.const {n}))
                              (local.get $k)) (i32.const 3)))))
        (local.set $j (i32.const 0))
        (loop $lj
          (local.set $p (i32.add (local.get $row) (i32.shl (local.get $j) (i32.const 3))))
          (f64.store (local.get $p)
            (f64.add (f64.load (local.get $p))
              (f64.mul (local.get $sum)
                (f64.load (i32.add (local.get $b)
                  (i32.shl (i32.add (i32.mul (local.get $k) (i32.const {n}))
                                    (local.get $j)) (i32.const 3)))))))
          (local.set $j (i32.add (local.get $j) (i32.const 1)))
          (br_if $lj (i32.lt_u (local.get $j) (i32.const {n}))))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br_if $lk (i32.lt_u (local.get $k) (i32.const {n}))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $li (i32.lt_u (local.get $i) (i32.const {n}))))
"#;

/// Benchmarks `matmul(a, b, c)` with `kernel` as its body: A at 0, B at
/// N*N*8, C at 2*N*N*8 (1.5 MiB in all, 24 pages), checked once against a
/// host computation of one element.
fn matmul(group: &mut Group<'_>, engine: &Engine, name: &str, kernel: &str) {
    let wat = format!(
        r#"
        (module
          (memory (export "memory") 24)
          (func (export "matmul") (param $a i32) (param $b i32) (param $c i32)
            (local $i i32) (local $j i32) (local $k i32) (local $row i32) (local $p i32)
            (local $sum f64)
            {kernel}))
        "#,
        kernel = kernel.replace("{n}", &N.to_string())
    );
    let (mut store, instance) = instantiate(engine, &wat);
    let bytes = N * N * 8;
    let memory = instance.get_memory(&store, "memory").unwrap();
    {
        let memory = memory.data_mut(&mut store);
        for idx in 0..N * N {
            let a = (idx % 7) as f64 * 0.5 + 1.0;
            let b = (idx % 5) as f64 * 0.25 - 0.5;
            memory[idx * 8..idx * 8 + 8].copy_from_slice(&a.to_le_bytes());
            memory[bytes + idx * 8..bytes + idx * 8 + 8].copy_from_slice(&b.to_le_bytes());
        }
    }
    let matmul: TypedFunc<(i32, i32, i32), ()> = instance.get_typed_func(&store, "matmul").unwrap();
    let args = (0, bytes as i32, 2 * bytes as i32);
    matmul.call(&mut store, args).unwrap();
    {
        let memory = memory.data(&store);
        let read = |off: usize| f64::from_le_bytes(memory[off..off + 8].try_into().unwrap());
        for (i, j) in [(0, 0), (17, 203), (255, 255)] {
            let expected = (0..N).fold(0.0, |sum, k| {
                sum + read((i * N + k) * 8) * read(bytes + (k * N + j) * 8)
            });
            assert_eq!(
                read(2 * bytes + (i * N + j) * 8),
                expected,
                "{name} C[{i}][{j}]"
            );
        }
    }
    group.bench_function(name, |b| {
        b.iter(|| matmul.call(&mut store, black_box(args)).unwrap())
    });
}

/// `trap/unreachable`: a guest trap (signal, unwind through the guest
/// frames to the root call's catch) returned as `Err`.
fn traps(c: &mut Criterion) {
    let engine = Engine::default();
    let mut group = c.benchmark_group("trap");
    group.measurement_time(Duration::from_secs(3));
    let (mut store, instance) =
        instantiate(&engine, r#"(module (func (export "boom") unreachable))"#);
    let boom: TypedFunc<(), ()> = instance.get_typed_func(&store, "boom").unwrap();
    let err = boom.call(&mut store, ()).unwrap_err();
    assert_eq!(
        err.trap_code(),
        Some(backstop::TrapCode::UnreachableCodeReached)
    );
    group.bench_function("unreachable", |b| {
        b.iter(|| black_box(boom.call(&mut store, ()).is_err()))
    });

    // The SIGSEGV path: an out-of-bounds load faults on the memory guard.
    let (mut oob_store, oob_instance) = instantiate(
        &engine,
        r#"(module (memory 1) (func (export "oob") (result i32) (i32.load (i32.const 70000))))"#,
    );
    let oob: TypedFunc<(), i32> = oob_instance.get_typed_func(&oob_store, "oob").unwrap();
    assert_eq!(
        oob.call(&mut oob_store, ()).unwrap_err().trap_code(),
        Some(backstop::TrapCode::MemoryOutOfBounds)
    );
    group.bench_function("oob_load", |b| {
        b.iter(|| black_box(oob.call(&mut oob_store, ()).is_err()))
    });

    // The same trap without the Wasm backtrace capture: the difference is
    // capture's share of a trap.
    let quiet = Engine::new(Config::new().wasm_backtrace(false)).unwrap();
    let (mut store, instance) =
        instantiate(&quiet, r#"(module (func (export "boom") unreachable))"#);
    let boom: TypedFunc<(), ()> = instance.get_typed_func(&store, "boom").unwrap();
    assert!(boom
        .call(&mut store, ())
        .unwrap_err()
        .as_trap()
        .unwrap()
        .backtrace()
        .is_none());
    group.bench_function("unreachable_no_backtrace", |b| {
        b.iter(|| black_box(boom.call(&mut store, ()).is_err()))
    });
    group.finish();
}

/// `instantiate/small`: instantiating (and dropping) an instance of a
/// module with a 1-page memory, a table and 4 globals. Includes the guest
/// stack and the memory reservation, and their release on drop.
///
/// Each iteration creates a store, instantiates the module in it and drops
/// the store, as an embedder running one instance per store does: an
/// instance is freed only with its store, so the store's creation and drop
/// are part of the measured cost (as the guest stack, now the store's, is).
fn instantiation(c: &mut Criterion) {
    let engine = Engine::default();
    let mut group = c.benchmark_group("instantiate");
    group.measurement_time(Duration::from_secs(3));
    let module = Module::new(
        &engine,
        r#"
        (module
          (memory (export "memory") 1)
          (table (export "table") 4 funcref)
          (global $g0 (export "g0") (mut i32) (i32.const 1))
          (global $g1 (export "g1") (mut i64) (i64.const 2))
          (global $g2 (export "g2") f32 (f32.const 3))
          (global $g3 (export "g3") (mut f64) (f64.const 4))
          (func $f (export "f") (result i32) (global.get $g0))
          (elem (i32.const 0) $f))
        "#,
    )
    .unwrap();
    let linker: Linker<()> = Linker::new(&engine);
    group.bench_function("small", |b| {
        b.iter(|| {
            let mut store = Store::new(&engine, ());
            let instance = linker.instantiate(&mut store, &module).unwrap();
            // Returned so that criterion drops the store (and the instance)
            // inside the measured loop, as before.
            (store, instance)
        })
    });
    group.finish();
}

criterion_group!(benches, calls, compute, traps, instantiation);
criterion_main!(benches);
