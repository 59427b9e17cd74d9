//! The Wasm 3.0 proposals Backstop runs, one section each, in WAT: what each
//! computes, and that its `Config` switch turns it off with an
//! `Error::Unsupported` that names the proposal and the switch.

use backstop::{Config, Engine, Error, Global, GlobalType, Linker, Module, Store, Val, ValType};

/// An engine with one proposal switched off by `off`.
fn engine_without(off: impl FnOnce(&mut Config) -> &mut Config) -> Engine {
    let mut config = Config::new();
    off(&mut config);
    Engine::new(&config).unwrap()
}

#[track_caller]
fn expect_switched_off(engine: &Engine, wat: &str, proposal: &str, switch: &str) {
    for (how, result) in [
        ("new", Module::new(engine, wat).map(drop)),
        ("validate", Module::validate(engine, wat)),
    ] {
        match result {
            Err(Error::Unsupported(m)) => assert!(
                m.starts_with(proposal) && m.contains(switch),
                "{how}: expected `{proposal}` and `{switch}`, got `{m}`"
            ),
            other => panic!("{how}: expected Unsupported, got {other:?}"),
        }
    }
}

// --- extended constant expressions ---

const EXTENDED_CONST: &str = r#"
(module
  (import "host" "base" (global $base i32))
  (import "host" "wide" (global $wide i64))
  (global $sum (export "sum") i32 (i32.add (global.get $base) (i32.const 7)))
  (global (export "product") i32
    (i32.mul (i32.sub (global.get $base) (i32.const 2)) (i32.const 3)))
  (global (export "wraps") i32 (i32.add (i32.const 0x7fffffff) (i32.const 1)))
  (global (export "wide") i64
    (i64.sub (i64.mul (global.get $wide) (i64.const 1000)) (i64.const 1)))
  (global (export "chained") i32 (i32.add (global.get $base) (global.get $base)))
  (memory 1)
  (data (i32.add (global.get $base) (i32.const 16)) "\2a")
  (table 8 funcref)
  (elem (i32.sub (global.get $base) (i32.const 8)) $f)
  (func $f (result i32) (i32.const 99))
  (func (export "byte") (param i32) (result i32) (i32.load8_u (local.get 0)))
  (func (export "slot") (param i32) (result i32) (call_indirect (result i32) (local.get 0))))
"#;

#[test]
fn extended_constant_expressions_compute_globals_and_offsets() {
    let engine = Engine::default();
    let module = Module::new(&engine, EXTENDED_CONST).unwrap();
    let mut store = Store::new(&engine, ());
    let mut linker = Linker::new(&engine);
    let base = Global::new(
        &mut store,
        GlobalType {
            content: ValType::I32,
            mutable: false,
        },
        Val::I32(10),
    )
    .unwrap();
    let wide = Global::new(
        &mut store,
        GlobalType {
            content: ValType::I64,
            mutable: false,
        },
        Val::I64(1 << 40),
    )
    .unwrap();
    linker.define("host", "base", base).unwrap();
    linker.define("host", "wide", wide).unwrap();
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let global =
        |store: &Store<()>, name: &str| instance.get_global(store, name).unwrap().get(store);
    assert_eq!(global(&store, "sum"), Val::I32(17));
    assert_eq!(global(&store, "product"), Val::I32(24));
    assert_eq!(global(&store, "wraps"), Val::I32(i32::MIN));
    assert_eq!(global(&store, "wide"), Val::I64((1i64 << 40) * 1000 - 1));
    assert_eq!(global(&store, "chained"), Val::I32(20));
    let byte = instance.get_typed_func::<i32, i32>(&store, "byte").unwrap();
    assert_eq!(byte.call(&mut store, 26).unwrap(), 0x2a);
    let slot = instance.get_typed_func::<i32, i32>(&store, "slot").unwrap();
    assert_eq!(slot.call(&mut store, 2).unwrap(), 99);
}

#[test]
fn extended_constant_expressions_can_be_switched_off() {
    let engine = engine_without(|c| c.wasm_extended_const(false));
    expect_switched_off(
        &engine,
        r#"(module (global i32 (i32.add (i32.const 1) (i32.const 2))))"#,
        "extended constant expressions",
        "Config::wasm_extended_const",
    );
    // A single-instruction constant is Wasm 2.0 and still compiles.
    Module::new(&engine, r#"(module (global i32 (i32.const 3)))"#).unwrap();
}

// --- multiple memories ---

const TWO_MEMORIES: &str = r#"
(module
  (import "host" "shared" (memory $shared 1))
  (memory $own (export "own") 1 4)
  (data (memory $own) (i32.const 8) "own")
  (data (memory $shared) (i32.const 8) "shr")
  (func (export "store") (param $which i32) (param $at i32) (param $v i32)
    (if (local.get $which)
      (then (i32.store $own (local.get $at) (local.get $v)))
      (else (i32.store $shared (local.get $at) (local.get $v)))))
  (func (export "load") (param $which i32) (param $at i32) (result i32)
    (if (result i32) (local.get $which)
      (then (i32.load8_u $own (local.get $at)))
      (else (i32.load8_u $shared (local.get $at)))))
  ;; copies 3 bytes from the shared memory's offset 8 into ours at `to`
  (func (export "copy_in") (param $to i32)
    (memory.copy $own $shared (local.get $to) (i32.const 8) (i32.const 3)))
  (func (export "fill_own") (param $at i32) (param $v i32) (param $n i32)
    (memory.fill $own (local.get $at) (local.get $v) (local.get $n)))
  (func (export "grow_own") (param i32) (result i32) (memory.grow $own (local.get 0)))
  (func (export "sizes") (result i32 i32) (memory.size $shared) (memory.size $own)))
"#;

#[test]
fn multiple_memories_are_separate_and_each_instruction_names_one() {
    let engine = Engine::default();
    let module = Module::new(&engine, TWO_MEMORIES).unwrap();
    let mut store = Store::new(&engine, ());
    let shared = backstop::Memory::new(
        &mut store,
        backstop::MemoryType {
            minimum: 1,
            maximum: None,
        },
    )
    .unwrap();
    let mut linker = Linker::new(&engine);
    linker.define("host", "shared", shared).unwrap();
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let own = instance.get_memory(&store, "own").unwrap();
    assert_eq!(&own.data(&store)[8..11], b"own");
    assert_eq!(&shared.data(&store)[8..11], b"shr");

    let store_fn = instance
        .get_typed_func::<(i32, i32, i32), ()>(&store, "store")
        .unwrap();
    let load = instance
        .get_typed_func::<(i32, i32), i32>(&store, "load")
        .unwrap();
    store_fn.call(&mut store, (1, 100, 7)).unwrap();
    store_fn.call(&mut store, (0, 100, 9)).unwrap();
    assert_eq!(load.call(&mut store, (1, 100)).unwrap(), 7);
    assert_eq!(load.call(&mut store, (0, 100)).unwrap(), 9);
    assert_eq!(own.data(&store)[100], 7);
    assert_eq!(shared.data(&store)[100], 9);

    let copy_in = instance
        .get_typed_func::<i32, ()>(&store, "copy_in")
        .unwrap();
    copy_in.call(&mut store, 200).unwrap();
    assert_eq!(&own.data(&store)[200..203], b"shr");
    let fill = instance
        .get_typed_func::<(i32, i32, i32), ()>(&store, "fill_own")
        .unwrap();
    fill.call(&mut store, (300, 0xab, 4)).unwrap();
    assert_eq!(&own.data(&store)[300..304], &[0xab; 4]);
    assert_eq!(shared.data(&store)[300], 0);

    // Growing one memory leaves the other alone; an access past the end of
    // either traps, whichever one it names.
    let grow = instance
        .get_typed_func::<i32, i32>(&store, "grow_own")
        .unwrap();
    assert_eq!(grow.call(&mut store, 2).unwrap(), 1);
    let sizes = instance
        .get_typed_func::<(), (i32, i32)>(&store, "sizes")
        .unwrap();
    assert_eq!(sizes.call(&mut store, ()).unwrap(), (1, 3));
    assert_eq!(load.call(&mut store, (1, 3 * 65536 - 1)).unwrap(), 0);
    for (which, at) in [(1, 3 * 65536), (0, 65536)] {
        match load.call(&mut store, (which, at)) {
            Err(Error::Trap(trap)) => {
                assert_eq!(trap.code(), backstop::TrapCode::MemoryOutOfBounds)
            }
            other => panic!("memory {which} at {at}: expected a trap, got {other:?}"),
        }
    }
    // The instance stays usable after the traps.
    assert_eq!(load.call(&mut store, (0, 100)).unwrap(), 9);
    assert_eq!(
        grow.call(&mut store, 2).unwrap(),
        -1,
        "the maximum is 4 pages"
    );
}

#[test]
fn multiple_memories_can_be_switched_off() {
    let engine = engine_without(|c| c.wasm_multi_memory(false));
    expect_switched_off(
        &engine,
        r#"(module (memory 1) (memory 1))"#,
        "multiple memories",
        "Config::wasm_multi_memory",
    );
    Module::new(&engine, r#"(module (memory 1))"#).unwrap();
}

// --- relaxed SIMD ---

const RELAXED: &str = r#"
(module
  (func (export "madd") (param f32 f32 f32) (result f32)
    (f32x4.extract_lane 0
      (f32x4.relaxed_madd (f32x4.splat (local.get 0)) (f32x4.splat (local.get 1))
                          (f32x4.splat (local.get 2)))))
  (func (export "nmadd") (param f64 f64 f64) (result f64)
    (f64x2.extract_lane 1
      (f64x2.relaxed_nmadd (f64x2.splat (local.get 0)) (f64x2.splat (local.get 1))
                           (f64x2.splat (local.get 2)))))
  (func (export "trunc_s") (param f32) (result i32)
    (i32x4.extract_lane 2 (i32x4.relaxed_trunc_f32x4_s (f32x4.splat (local.get 0)))))
  (func (export "trunc_u_zero") (param f64) (result i32 i32)
    (i32x4.extract_lane 0 (i32x4.relaxed_trunc_f64x2_u_zero (f64x2.splat (local.get 0))))
    (i32x4.extract_lane 3 (i32x4.relaxed_trunc_f64x2_u_zero (f64x2.splat (local.get 0)))))
  (func (export "swizzle") (param i32) (result i32)
    (i8x16.extract_lane_u 0
      (i8x16.relaxed_swizzle (v128.const i8x16 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25)
                             (i8x16.splat (local.get 0)))))
  (func (export "laneselect") (param i32) (result i32)
    (i32x4.extract_lane 0
      (i32x4.relaxed_laneselect (i32x4.splat (i32.const -1)) (i32x4.splat (i32.const 0))
                                (i32x4.splat (local.get 0)))))
  (func (export "dot") (param i32 i32) (result i32)
    (i16x8.extract_lane_s 0
      (i16x8.relaxed_dot_i8x16_i7x16_s (i8x16.splat (local.get 0)) (i8x16.splat (local.get 1)))))
  (func (export "dot_add") (param i32 i32 i32) (result i32)
    (i32x4.extract_lane 1
      (i32x4.relaxed_dot_i8x16_i7x16_add_s (i8x16.splat (local.get 0)) (i8x16.splat (local.get 1))
                                           (i32x4.splat (local.get 2)))))
  (func (export "min") (param f32 f32) (result f32)
    (f32x4.extract_lane 0 (f32x4.relaxed_min (f32x4.splat (local.get 0)) (f32x4.splat (local.get 1)))))
  (func (export "q15") (param i32 i32) (result i32)
    (i16x8.extract_lane_s 0
      (i16x8.relaxed_q15mulr_s (i16x8.splat (local.get 0)) (i16x8.splat (local.get 1))))))
"#;

/// Runs every relaxed operator on inputs where machines may differ and
/// checks Backstop's documented choice (`jit/src/translate/relaxed_simd.rs`).
fn check_relaxed_results(engine: &Engine) {
    let module = Module::new(engine, RELAXED).unwrap();
    let mut store = Store::new(engine, ());
    let instance = Linker::new(engine)
        .instantiate(&mut store, &module)
        .unwrap();
    macro_rules! call {
        ($name:literal, $p:ty, $r:ty, $args:expr) => {
            instance
                .get_typed_func::<$p, $r>(&store, $name)
                .unwrap()
                .call(&mut store, $args)
                .unwrap()
        };
    }
    // Unfused: (1 + 2^-12)^2 rounds to 1 + 2^-11 before the add, so the sum
    // is exactly 0 (fused it would be 2^-24).
    let a = 1.0 + 2f32.powi(-12);
    assert_eq!(
        call!(
            "madd",
            (f32, f32, f32),
            f32,
            (a, a, -(1.0 + 2f32.powi(-11)))
        ),
        0.0
    );
    let b = 1.0 + 2f64.powi(-27);
    assert_eq!(
        call!("nmadd", (f64, f64, f64), f64, (b, b, 1.0 + 2f64.powi(-26))),
        0.0
    );
    // Saturating truncation; NaN gives 0.
    assert_eq!(call!("trunc_s", f32, i32, f32::NAN), 0);
    assert_eq!(call!("trunc_s", f32, i32, 3e9), i32::MAX);
    assert_eq!(call!("trunc_s", f32, i32, -3e9), i32::MIN);
    assert_eq!(call!("trunc_u_zero", f64, (i32, i32), -5.0), (0, 0));
    assert_eq!(call!("trunc_u_zero", f64, (i32, i32), 5e9), (-1, 0));
    // An index of 16 or more (top bit set or not) selects 0.
    assert_eq!(call!("swizzle", i32, i32, 3), 13);
    assert_eq!(call!("swizzle", i32, i32, 16), 0);
    assert_eq!(call!("swizzle", i32, i32, 0x80), 0);
    // Every mask bit counts, not only each lane's top bit.
    assert_eq!(call!("laneselect", i32, i32, 0x0000_ffff), 0x0000_ffff);
    // Both dot operands are signed; the 16-bit pair sum wraps.
    assert_eq!(call!("dot", (i32, i32), i32, (-128, -127)), 32512);
    assert_eq!(call!("dot", (i32, i32), i32, (-128, -128)), -32768);
    assert_eq!(call!("dot", (i32, i32), i32, (-3, 100)), -600);
    assert_eq!(
        call!("dot_add", (i32, i32, i32), i32, (-128, -127, 1)),
        65025
    );
    assert_eq!(
        call!("dot_add", (i32, i32, i32), i32, (-128, -128, 0)),
        -65536
    );
    // min: NaN in, NaN out; -0 is below +0.
    assert!(call!("min", (f32, f32), f32, (f32::NAN, 1.0)).is_nan());
    assert!(call!("min", (f32, f32), f32, (0.0, -0.0)).is_sign_negative());
    // q15mulr saturates its one overflowing case.
    assert_eq!(call!("q15", (i32, i32), i32, (-32768, -32768)), 32767);
}

#[test]
fn relaxed_simd_has_one_documented_result_per_operator() {
    check_relaxed_results(&Engine::default());
}

#[test]
fn relaxed_simd_results_do_not_depend_on_cpu_features() {
    let mut config = Config::new();
    config.native_cpu_features(false);
    check_relaxed_results(&Engine::new(&config).unwrap());
}

#[test]
fn relaxed_simd_can_be_switched_off() {
    let engine = engine_without(|c| c.wasm_relaxed_simd(false));
    expect_switched_off(
        &engine,
        r#"(module (func (param v128 v128) (result v128)
             (i8x16.relaxed_swizzle (local.get 0) (local.get 1))))"#,
        "relaxed SIMD",
        "Config::wasm_relaxed_simd",
    );
}
