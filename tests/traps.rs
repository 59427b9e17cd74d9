//! Every trap code, raised by a real module and checked via
//! `Error::trap_code()`: unreachable, out-of-bounds memory (loads, stores,
//! accesses straddling the end, a 0-page memory, huge offsets; with guard
//! pages and with explicit bounds checks), out-of-bounds tables, null and
//! mistyped indirect calls, division by zero, integer overflow, invalid
//! float-to-int conversions, stack overflow (and that the store stays
//! usable after it). Also the trap's details (name-section name, function
//! index, Wasm offset, Display), a trap at a function's first instruction
//! 1000 times, and traps under nested host segments dropping host guards;
//! traps before and after host calls (with no host frame on the stack a
//! trap skips the unwinder) and in a root nested in a host function.

use backstop::{Caller, Config, Engine, Error, Instance, Linker, Module, Store, TrapCode};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn instantiate(wat: &str) -> (Store<()>, Instance) {
    instantiate_with(&Engine::default(), wat)
}

fn instantiate_with(engine: &Engine, wat: &str) -> (Store<()>, Instance) {
    let module = Module::new(engine, wat).unwrap();
    let mut store = Store::new(engine, ());
    let instance = Linker::new(engine)
        .instantiate(&mut store, &module)
        .unwrap();
    (store, instance)
}

/// Asserts that `result` is a trap with `code`, and returns the error.
#[track_caller]
fn expect_trap<R: std::fmt::Debug>(result: Result<R, Error>, code: TrapCode) -> Error {
    match result {
        Err(e) => {
            assert_eq!(e.trap_code(), Some(code), "wrong error: {e} ({e:?})");
            e
        }
        Ok(r) => panic!("expected a {code:?} trap, the call returned {r:?}"),
    }
}

#[test]
fn unreachable() {
    let (mut store, i) = instantiate(r#"(module (func (export "f") (result i32) unreachable))"#);
    expect_trap(
        i.call::<(), i32>(&mut store, "f", ()),
        TrapCode::UnreachableCodeReached,
    );
}

const MEMORY_WAT: &str = r#"
(module
  (memory 1)
  (func (export "load32") (param i32) (result i32) (i32.load (local.get 0)))
  (func (export "load8") (param i32) (result i32) (i32.load8_u (local.get 0)))
  (func (export "load64") (param i32) (result i64) (i64.load (local.get 0)))
  (func (export "load_v128") (param i32) (result i32)
    (i32x4.extract_lane 0 (v128.load (local.get 0))))
  (func (export "load_big_offset") (param i32) (result i32)
    (i32.load offset=0xfffffff0 (local.get 0)))
  (func (export "load_2g_offset") (param i32) (result i32)
    (i32.load offset=0x7fffffff (local.get 0)))
  (func (export "store_big_offset") (param i32)
    (i64.store offset=0xffffffff (local.get 0) (i64.const -1)))
  (func (export "store32") (param i32) (i32.store (local.get 0) (i32.const 0x01020304)))
  (func (export "store8") (param i32) (i32.store8 (local.get 0) (i32.const 7)))
  (func (export "store64") (param i32) (i64.store (local.get 0) (i64.const -1)))
  (func (export "fill") (param i32 i32) (memory.fill (local.get 0) (i32.const 1) (local.get 1)))
  (func (export "copy") (param i32 i32 i32)
    (memory.copy (local.get 0) (local.get 1) (local.get 2))))
"#;

fn check_memory_traps(engine: &Engine) {
    let (mut store, i) = instantiate_with(engine, MEMORY_WAT);
    let oob = TrapCode::MemoryOutOfBounds;
    // In bounds, up to the last byte.
    assert_eq!(i.call::<i32, i32>(&mut store, "load32", 65532).unwrap(), 0);
    assert_eq!(i.call::<i32, i32>(&mut store, "load8", 65535).unwrap(), 0);
    i.call::<i32, ()>(&mut store, "store32", 65532).unwrap();
    assert_eq!(
        i.call::<i32, i32>(&mut store, "load32", 65532).unwrap(),
        0x01020304
    );
    // Exactly at the end.
    expect_trap(i.call::<i32, i32>(&mut store, "load32", 65536), oob);
    expect_trap(i.call::<i32, i32>(&mut store, "load8", 65536), oob);
    expect_trap(i.call::<i32, ()>(&mut store, "store8", 65536), oob);
    // Straddling the end: some bytes in bounds, some not.
    for addr in [65533, 65534, 65535] {
        expect_trap(i.call::<i32, i32>(&mut store, "load32", addr), oob);
        expect_trap(i.call::<i32, ()>(&mut store, "store32", addr), oob);
    }
    expect_trap(i.call::<i32, i64>(&mut store, "load64", 65529), oob);
    expect_trap(i.call::<i32, ()>(&mut store, "store64", 65529), oob);
    expect_trap(i.call::<i32, i32>(&mut store, "load_v128", 65521), oob);
    // Far out: negative addresses, huge static offsets.
    expect_trap(i.call::<i32, i32>(&mut store, "load32", -1), oob);
    expect_trap(i.call::<i32, i32>(&mut store, "load32", i32::MIN), oob);
    expect_trap(i.call::<i32, ()>(&mut store, "store32", -4), oob);
    expect_trap(i.call::<i32, i32>(&mut store, "load_big_offset", 0), oob);
    expect_trap(i.call::<i32, i32>(&mut store, "load_big_offset", 0x20), oob);
    // index + offset near 8 GiB: past any reservation plus guard.
    expect_trap(i.call::<i32, i32>(&mut store, "load_big_offset", -1), oob);
    expect_trap(i.call::<i32, i32>(&mut store, "load_2g_offset", -1), oob);
    expect_trap(i.call::<i32, i32>(&mut store, "load_2g_offset", 0), oob);
    expect_trap(i.call::<i32, ()>(&mut store, "store_big_offset", 0), oob);
    expect_trap(i.call::<i32, ()>(&mut store, "store_big_offset", -1), oob);
    // Bulk memory ops check the whole range first.
    i.call::<(i32, i32), ()>(&mut store, "fill", (65535, 1))
        .unwrap();
    expect_trap(
        i.call::<(i32, i32), ()>(&mut store, "fill", (65535, 2)),
        oob,
    );
    expect_trap(
        i.call::<(i32, i32, i32), ()>(&mut store, "copy", (0, 65535, 2)),
        oob,
    );
    expect_trap(
        i.call::<(i32, i32, i32), ()>(&mut store, "copy", (65535, 0, 2)),
        oob,
    );
    // The store is still fine.
    assert_eq!(i.call::<i32, i32>(&mut store, "load8", 65535).unwrap(), 1);
}

#[test]
fn memory_out_of_bounds_with_guard_pages() {
    check_memory_traps(&Engine::default());
}

#[test]
fn memory_out_of_bounds_with_explicit_bounds_checks() {
    // A reservation below 4 GiB makes compiled code check every access.
    let mut config = Config::new();
    config
        .memory_reservation(1 << 20)
        .memory_guard_size(64 << 10);
    check_memory_traps(&Engine::new(&config).unwrap());
}

#[test]
fn zero_page_memory() {
    let wat = r#"
      (module
        (memory 0)
        (func (export "load") (param i32) (result i32) (i32.load8_u (local.get 0)))
        (func (export "store") (param i32) (i32.store8 (local.get 0) (i32.const 1)))
        (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))
    "#;
    let (mut store, i) = instantiate(wat);
    expect_trap(
        i.call::<i32, i32>(&mut store, "load", 0),
        TrapCode::MemoryOutOfBounds,
    );
    expect_trap(
        i.call::<i32, ()>(&mut store, "store", 0),
        TrapCode::MemoryOutOfBounds,
    );
    // After growing, offset 0 works, and the new end traps.
    assert_eq!(i.call::<i32, i32>(&mut store, "grow", 1).unwrap(), 0);
    i.call::<i32, ()>(&mut store, "store", 0).unwrap();
    assert_eq!(i.call::<i32, i32>(&mut store, "load", 0).unwrap(), 1);
    expect_trap(
        i.call::<i32, i32>(&mut store, "load", 65536),
        TrapCode::MemoryOutOfBounds,
    );
}

const TABLE_WAT: &str = r#"
(module
  (type $i2i (func (param i32) (result i32)))
  (type $v2v (func))
  (table $t 4 funcref)
  (elem (i32.const 0) $double $nothing)
  (func $double (type $i2i) (i32.mul (local.get 0) (i32.const 2)))
  (func $nothing (type $v2v))
  (func (export "call_i2i") (param $idx i32) (param $x i32) (result i32)
    (call_indirect (type $i2i) (local.get $x) (local.get $idx)))
  (func (export "call_v2v") (param $idx i32)
    (call_indirect (type $v2v) (local.get $idx)))
  (func (export "get_is_null") (param i32) (result i32) (ref.is_null (table.get $t (local.get 0))))
  (func (export "set_null") (param i32) (table.set $t (local.get 0) (ref.null func)))
  (func (export "fill") (param i32 i32) (table.fill $t (local.get 0) (ref.null func) (local.get 1))))
"#;

#[test]
fn table_out_of_bounds() {
    let (mut store, i) = instantiate(TABLE_WAT);
    let code = TrapCode::TableOutOfBounds;
    assert_eq!(i.call::<i32, i32>(&mut store, "get_is_null", 3).unwrap(), 1);
    assert_eq!(i.call::<i32, i32>(&mut store, "get_is_null", 0).unwrap(), 0);
    expect_trap(i.call::<i32, i32>(&mut store, "get_is_null", 4), code);
    expect_trap(i.call::<i32, i32>(&mut store, "get_is_null", -1), code);
    expect_trap(i.call::<i32, ()>(&mut store, "set_null", 4), code);
    expect_trap(i.call::<(i32, i32), ()>(&mut store, "fill", (3, 2)), code);
    // call_indirect with an index past the end ("undefined element").
    expect_trap(
        i.call::<(i32, i32), i32>(&mut store, "call_i2i", (4, 1)),
        code,
    );
    expect_trap(
        i.call::<(i32, i32), i32>(&mut store, "call_i2i", (i32::MAX, 1)),
        code,
    );
    expect_trap(
        i.call::<(i32, i32), i32>(&mut store, "call_i2i", (-1, 1)),
        code,
    );
    assert_eq!(
        i.call::<(i32, i32), i32>(&mut store, "call_i2i", (0, 21))
            .unwrap(),
        42
    );
}

#[test]
fn indirect_call_to_null() {
    let (mut store, i) = instantiate(TABLE_WAT);
    expect_trap(
        i.call::<(i32, i32), i32>(&mut store, "call_i2i", (2, 1)),
        TrapCode::IndirectCallToNull,
    );
    expect_trap(
        i.call::<i32, ()>(&mut store, "call_v2v", 3),
        TrapCode::IndirectCallToNull,
    );
    // An element set to null at run time.
    i.call::<i32, ()>(&mut store, "call_v2v", 1).unwrap();
    i.call::<i32, ()>(&mut store, "set_null", 1).unwrap();
    expect_trap(
        i.call::<i32, ()>(&mut store, "call_v2v", 1),
        TrapCode::IndirectCallToNull,
    );
}

#[test]
fn bad_signature() {
    let (mut store, i) = instantiate(TABLE_WAT);
    // Element 1 is `func`, called as `i32 -> i32`; element 0 the reverse.
    expect_trap(
        i.call::<(i32, i32), i32>(&mut store, "call_i2i", (1, 1)),
        TrapCode::BadSignature,
    );
    expect_trap(
        i.call::<i32, ()>(&mut store, "call_v2v", 0),
        TrapCode::BadSignature,
    );
    // Structurally equal types declared twice are the same signature.
    let (mut store_j, j) = instantiate(
        r#"(module
             (type $a (func (param i64) (result i64)))
             (type $b (func (param i64) (result i64)))
             (table 1 funcref)
             (elem (i32.const 0) $f)
             (func $f (type $a) (i64.add (local.get 0) (i64.const 1)))
             (func (export "g") (param i64) (result i64)
               (call_indirect (type $b) (local.get 0) (i32.const 0))))"#,
    );
    assert_eq!(j.call::<i64, i64>(&mut store_j, "g", 41).unwrap(), 42);
}

const ARITH_WAT: &str = r#"
(module
  (func (export "i32.div_s") (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1)))
  (func (export "i32.div_u") (param i32 i32) (result i32) (i32.div_u (local.get 0) (local.get 1)))
  (func (export "i32.rem_s") (param i32 i32) (result i32) (i32.rem_s (local.get 0) (local.get 1)))
  (func (export "i32.rem_u") (param i32 i32) (result i32) (i32.rem_u (local.get 0) (local.get 1)))
  (func (export "i64.div_s") (param i64 i64) (result i64) (i64.div_s (local.get 0) (local.get 1)))
  (func (export "i64.div_u") (param i64 i64) (result i64) (i64.div_u (local.get 0) (local.get 1)))
  (func (export "i64.rem_s") (param i64 i64) (result i64) (i64.rem_s (local.get 0) (local.get 1)))
  (func (export "i64.rem_u") (param i64 i64) (result i64) (i64.rem_u (local.get 0) (local.get 1)))
  (func (export "i32.trunc_f32_s") (param f32) (result i32) (i32.trunc_f32_s (local.get 0)))
  (func (export "i32.trunc_f32_u") (param f32) (result i32) (i32.trunc_f32_u (local.get 0)))
  (func (export "i32.trunc_f64_s") (param f64) (result i32) (i32.trunc_f64_s (local.get 0)))
  (func (export "i64.trunc_f64_s") (param f64) (result i64) (i64.trunc_f64_s (local.get 0)))
  (func (export "i64.trunc_f32_u") (param f32) (result i64) (i64.trunc_f32_u (local.get 0)))
  (func (export "i32.trunc_sat_f32_s") (param f32) (result i32) (i32.trunc_sat_f32_s (local.get 0))))
"#;

#[test]
fn integer_divide_by_zero() {
    let (mut store, i) = instantiate(ARITH_WAT);
    let code = TrapCode::IntegerDivisionByZero;
    for op in ["i32.div_s", "i32.div_u", "i32.rem_s", "i32.rem_u"] {
        for x in [0, 1, -1, i32::MIN] {
            expect_trap(i.call::<(i32, i32), i32>(&mut store, op, (x, 0)), code);
        }
    }
    for op in ["i64.div_s", "i64.div_u", "i64.rem_s", "i64.rem_u"] {
        for x in [0, 1, -1, i64::MIN] {
            expect_trap(i.call::<(i64, i64), i64>(&mut store, op, (x, 0)), code);
        }
    }
    assert_eq!(
        i.call::<(i32, i32), i32>(&mut store, "i32.div_s", (-7, 2))
            .unwrap(),
        -3
    );
    assert_eq!(
        i.call::<(i64, i64), i64>(&mut store, "i64.rem_u", (7, 4))
            .unwrap(),
        3
    );
}

#[test]
fn integer_overflow() {
    let (mut store, i) = instantiate(ARITH_WAT);
    let code = TrapCode::IntegerOverflow;
    expect_trap(
        i.call::<(i32, i32), i32>(&mut store, "i32.div_s", (i32::MIN, -1)),
        code,
    );
    expect_trap(
        i.call::<(i64, i64), i64>(&mut store, "i64.div_s", (i64::MIN, -1)),
        code,
    );
    // rem_s of the same operands is defined: 0.
    assert_eq!(
        i.call::<(i32, i32), i32>(&mut store, "i32.rem_s", (i32::MIN, -1))
            .unwrap(),
        0
    );
    assert_eq!(
        i.call::<(i64, i64), i64>(&mut store, "i64.rem_s", (i64::MIN, -1))
            .unwrap(),
        0
    );
    // Unsigned division of the same bits is fine.
    assert_eq!(
        i.call::<(i32, i32), i32>(&mut store, "i32.div_u", (i32::MIN, -1))
            .unwrap(),
        0
    );
}

#[test]
fn bad_conversion_to_integer() {
    let (mut store, i) = instantiate(ARITH_WAT);
    let bad = TrapCode::BadConversionToInteger;
    // NaN is an invalid conversion.
    expect_trap(
        i.call::<f32, i32>(&mut store, "i32.trunc_f32_s", f32::NAN),
        bad,
    );
    expect_trap(
        i.call::<f32, i32>(&mut store, "i32.trunc_f32_u", -f32::NAN),
        bad,
    );
    expect_trap(
        i.call::<f64, i32>(&mut store, "i32.trunc_f64_s", f64::NAN),
        bad,
    );
    expect_trap(
        i.call::<f64, i64>(&mut store, "i64.trunc_f64_s", f64::NAN),
        bad,
    );
    expect_trap(
        i.call::<f32, i64>(&mut store, "i64.trunc_f32_u", f32::NAN),
        bad,
    );
    // Out of range is "integer overflow" in the Wasm spec (e.g. the spec
    // test `assert_trap (invoke "i32.trunc_f32_s" (f32.const 2147483648.0))
    // "integer overflow"`).
    let ovf = TrapCode::IntegerOverflow;
    expect_trap(i.call::<f32, i32>(&mut store, "i32.trunc_f32_s", 1e10), ovf);
    expect_trap(
        i.call::<f32, i32>(&mut store, "i32.trunc_f32_s", -1e10),
        ovf,
    );
    expect_trap(
        i.call::<f32, i32>(&mut store, "i32.trunc_f32_s", f32::INFINITY),
        ovf,
    );
    expect_trap(i.call::<f32, i32>(&mut store, "i32.trunc_f32_u", -1.0), ovf);
    expect_trap(
        i.call::<f64, i32>(&mut store, "i32.trunc_f64_s", 2147483648.0),
        ovf,
    );
    expect_trap(i.call::<f64, i64>(&mut store, "i64.trunc_f64_s", 1e19), ovf);
    // In range, and the saturating form never traps.
    assert_eq!(
        i.call::<f32, i32>(&mut store, "i32.trunc_f32_s", -3.9)
            .unwrap(),
        -3
    );
    assert_eq!(
        i.call::<f64, i32>(&mut store, "i32.trunc_f64_s", 2147483647.9)
            .unwrap(),
        i32::MAX
    );
    assert_eq!(
        i.call::<f32, i32>(&mut store, "i32.trunc_f32_u", -0.9)
            .unwrap(),
        0
    );
    assert_eq!(
        i.call::<f32, i32>(&mut store, "i32.trunc_sat_f32_s", 1e10)
            .unwrap(),
        i32::MAX
    );
    assert_eq!(
        i.call::<f32, i32>(&mut store, "i32.trunc_sat_f32_s", f32::NAN)
            .unwrap(),
        0
    );
}

const RECURSION_WAT: &str = r#"
(module
  (func $rec (export "rec") (param i32) (result i32)
    (i32.add (call $rec (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  ;; A frame with many locals, to overflow in fewer calls with big frames.
  (func $fat (export "fat") (param i64) (result i64)
    (local i64 i64 i64 i64 i64 i64 i64 i64)
    (local.set 1 (i64.mul (local.get 0) (i64.const 3)))
    (local.set 2 (i64.add (local.get 1) (local.get 0)))
    (i64.add (i64.add (local.get 1) (local.get 2)) (call $fat (local.get 2))))
  (func $count (export "count") (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0))
      (then (i32.const 0))
      (else (i32.add (i32.const 1) (call $count (i32.sub (local.get 0) (i32.const 1))))))))
"#;

#[test]
fn stack_overflow_then_store_stays_usable() {
    let (mut store, i) = instantiate(RECURSION_WAT);
    expect_trap(
        i.call::<i32, i32>(&mut store, "rec", 0),
        TrapCode::StackOverflow,
    );
    for n in 0..10 {
        expect_trap(
            i.call::<i32, i32>(&mut store, "rec", n),
            TrapCode::StackOverflow,
        );
        expect_trap(
            i.call::<i64, i64>(&mut store, "fat", n.into()),
            TrapCode::StackOverflow,
        );
        // Deep but bounded recursion still works after the overflows.
        assert_eq!(
            i.call::<i32, i32>(&mut store, "count", 1000 + n).unwrap(),
            1000 + n
        );
    }
}

#[test]
fn stack_overflow_with_a_small_stack() {
    let mut config = Config::new();
    config.stack_size(64 << 10);
    let (mut store, i) = instantiate_with(&Engine::new(&config).unwrap(), RECURSION_WAT);
    for _ in 0..10 {
        expect_trap(
            i.call::<i32, i32>(&mut store, "rec", 0),
            TrapCode::StackOverflow,
        );
        assert_eq!(i.call::<i32, i32>(&mut store, "count", 100).unwrap(), 100);
    }
}

#[test]
fn trap_details_name_index_offset_display() {
    let wat = r#"
      (module
        (func $helper (param i32) (result i32) (local.get 0))
        (func $foo (param i32) (result i32)
          (drop (call $helper (local.get 0)))
          (i32.div_u (i32.const 1) (local.get 0)))
        (func (export "run") (param i32) (result i32) (call $foo (local.get 0))))
    "#;
    let (mut store, i) = instantiate(wat);
    let e = expect_trap(
        i.call::<i32, i32>(&mut store, "run", 0),
        TrapCode::IntegerDivisionByZero,
    );
    let trap = e.as_trap().unwrap();
    assert_eq!(trap.func_name(), Some("foo"));
    assert_eq!(trap.func_index(), Some(1));
    let offset = trap.wasm_offset().expect("a wasm offset");
    // The offset lies within the module and points at the division
    // (opcode 0x6e, i32.div_u) of the binary.
    let binary = wat::parse_str(wat).unwrap();
    assert!((offset as usize) < binary.len(), "offset {offset:#x}");
    assert_eq!(binary[offset as usize], 0x6e, "offset {offset:#x}");
    assert!(trap.pc().is_some());
    let text = e.to_string();
    println!("{text}");
    assert!(text.contains("foo"), "{text}");
    assert!(text.contains("divi") || text.contains("zero"), "{text}");
}

#[test]
fn trap_details_without_a_name_section() {
    // Functions without names are reported as `<wasm function N>`.
    let wat = r#"(module
        (func nop)
        (func unreachable)
        (export "f" (func 1)))"#;
    let mut binary = wat::parse_str(wat).unwrap();
    // `wat` adds no name section for unnamed functions; check there is none.
    assert!(!binary.windows(4).any(|w| w == b"name"));
    binary.shrink_to_fit();
    let engine = Engine::default();
    let module = Module::new(&engine, &binary).unwrap();
    let mut store = Store::new(&engine, ());
    let i = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let e = expect_trap(
        i.call::<(), ()>(&mut store, "f", ()),
        TrapCode::UnreachableCodeReached,
    );
    let trap = e.as_trap().unwrap();
    assert_eq!(trap.func_index(), Some(1));
    assert_eq!(trap.func_name(), Some("<wasm function 1>"));
}

/// Keeps twelve opaque values live across a trapping call and checks them.
#[inline(never)]
fn call_first_with_live_values(store: &mut Store<()>, i: Instance, seed: u64) -> Error {
    let v: [u64; 12] = std::array::from_fn(|k| black_box(seed.rotate_left(k as u32) ^ k as u64));
    let (a, b, c, d, e, f) = (v[0], v[1], v[2], v[3], v[4], v[5]);
    let (g, h, j, k, l, m) = (v[6], v[7], v[8], v[9], v[10], v[11]);
    let err = i
        .call::<i32, i32>(store, "call_first", black_box(5))
        .unwrap_err();
    let got = [a, b, c, d, e, f, g, h, j, k, l, m];
    let expected: [u64; 12] = std::array::from_fn(|k| seed.rotate_left(k as u32) ^ k as u64);
    assert_eq!(
        got, expected,
        "embedder values clobbered by a first-instruction trap"
    );
    err
}

#[test]
fn trap_at_first_instruction_1000_times() {
    // `$first`'s first instruction traps. Its fault PC is its first byte, so
    // PC-1 lies in `$before` (laid out just before it): the unwinder must
    // treat the fault frame as a signal frame.
    let wat = r#"
      (module
        (func $before (export "before") (param i32) (result i32)
          (i32.mul (local.get 0) (local.get 0)))
        (func $first unreachable)
        (func (export "call_first") (param i32) (result i32)
          (local i32)
          (local.set 1 (i32.add (local.get 0) (i32.const 1)))
          (call $first)
          (local.get 1)))
    "#;
    let (mut store, i) = instantiate(wat);
    for n in 0..1000u64 {
        let err = call_first_with_live_values(&mut store, i, n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        assert_eq!(err.trap_code(), Some(TrapCode::UnreachableCodeReached));
        assert_eq!(err.as_trap().unwrap().func_name(), Some("first"));
    }
    assert_eq!(i.call::<i32, i32>(&mut store, "before", 7).unwrap(), 49);
}

struct Counters {
    created: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
}

struct Guard(Arc<AtomicUsize>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// `run(which, depth)` calls host `h(which, depth)`, which holds a guard and
/// calls back `run(which, depth - 1)` until depth 0, where it calls
/// `trap(which)` (guest -> host -> guest -> ... -> trap).
const NESTED_WAT: &str = r#"
(module
  (import "host" "h" (func $h (param i32 i32) (result i32)))
  (memory 1)
  (table 1 funcref)
  (func $rec (param i32) (result i32) (i32.add (call $rec (local.get 0)) (i32.const 1)))
  (func $trap (export "trap") (param $which i32) (result i32)
    (block $b0 (block $b1 (block $b2 (block $b3 (block $b4 (block $b5
      (br_table $b0 $b1 $b2 $b3 $b4 $b5 (local.get $which)))
      ;; 5: a trap at the first instruction of a function
      (call $first) (return (i32.const 0)))
      ;; 4: indirect call to null
      (return (call_indirect (result i32) (i32.const 0))))
      ;; 3: stack overflow
      (return (call $rec (i32.const 0))))
      ;; 2: division by zero
      (return (i32.div_s (i32.const 1) (i32.const 0))))
      ;; 1: out of bounds
      (return (i32.load (i32.const 65536))))
    ;; 0: unreachable
    unreachable)
  (func $first unreachable)
  (func (export "ok") (result i32) (i32.const 7))
  (func (export "run") (param $which i32) (param $depth i32) (result i32)
    (call $h (local.get $which) (local.get $depth))))
"#;

#[test]
fn traps_under_nested_host_segments() {
    let engine = Engine::default();
    let module = Module::new(&engine, NESTED_WAT).unwrap();
    let mut linker: Linker<Counters> = Linker::new(&engine);
    linker
        .func_wrap(
            "host",
            "h",
            |mut caller: Caller<'_, Counters>, which: i32, depth: i32| -> Result<i32, Error> {
                caller.data().created.fetch_add(1, Ordering::SeqCst);
                let _guard = Guard(caller.data().dropped.clone());
                if depth > 0 {
                    caller.call::<(i32, i32), i32>("run", (which, depth - 1))
                } else if which == 99 {
                    caller.call::<(), i32>("ok", ())
                } else {
                    // A trap ends the whole run: this call never returns.
                    caller.call::<i32, i32>("trap", which)
                }
            },
        )
        .unwrap();
    let mut store = Store::new(
        &engine,
        Counters {
            created: Arc::new(AtomicUsize::new(0)),
            dropped: Arc::new(AtomicUsize::new(0)),
        },
    );
    let i = linker.instantiate(&mut store, &module).unwrap();
    let cases = [
        (0, TrapCode::UnreachableCodeReached),
        (1, TrapCode::MemoryOutOfBounds),
        (2, TrapCode::IntegerDivisionByZero),
        (3, TrapCode::StackOverflow),
        (4, TrapCode::IndirectCallToNull),
        (5, TrapCode::UnreachableCodeReached),
    ];
    let mut total = 0;
    for round in 0..3 {
        for (which, code) in cases {
            for depth in [0, 1, 3, 20] {
                expect_trap(
                    i.call::<(i32, i32), i32>(&mut store, "run", (which, depth)),
                    code,
                );
                total += depth as usize + 1;
                let created = store.data().created.load(Ordering::SeqCst);
                let dropped = store.data().dropped.load(Ordering::SeqCst);
                assert_eq!(
                    (created, dropped),
                    (total, total),
                    "round {round}, case {which}, depth {depth}"
                );
                assert!(!store.is_poisoned());
            }
        }
    }
    // Usable afterwards, nested and not.
    assert_eq!(
        i.call::<(i32, i32), i32>(&mut store, "run", (99, 5))
            .unwrap(),
        7
    );
    total += 6;
    let dropped = store.data().dropped.load(Ordering::SeqCst);
    assert_eq!(dropped, total);
    expect_trap(
        i.call::<i32, i32>(&mut store, "trap", 0),
        TrapCode::UnreachableCodeReached,
    );
}

#[test]
fn unbounded_guest_host_recursion_overflows_cleanly() {
    // guest -> host -> guest -> host ... without end: the guest's stack
    // check traps at some depth, and every host frame's guard drops.
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (import "host" "h" (func $h (param i32) (result i32)))
             (func (export "run") (param i32) (result i32)
               (i32.add (call $h (i32.add (local.get 0) (i32.const 1))) (i32.const 1))))"#,
    )
    .unwrap();
    let mut linker: Linker<Counters> = Linker::new(&engine);
    linker
        .func_wrap(
            "host",
            "h",
            |mut caller: Caller<'_, Counters>, depth: i32| -> Result<i32, Error> {
                caller.data().created.fetch_add(1, Ordering::SeqCst);
                let _guard = Guard(caller.data().dropped.clone());
                caller.call::<i32, i32>("run", depth)
            },
        )
        .unwrap();
    let mut store = Store::new(
        &engine,
        Counters {
            created: Arc::new(AtomicUsize::new(0)),
            dropped: Arc::new(AtomicUsize::new(0)),
        },
    );
    let i = linker.instantiate(&mut store, &module).unwrap();
    for round in 1..=3 {
        expect_trap(
            i.call::<i32, i32>(&mut store, "run", 0),
            TrapCode::StackOverflow,
        );
        let created = store.data().created.load(Ordering::SeqCst);
        let dropped = store.data().dropped.load(Ordering::SeqCst);
        assert_eq!(created, dropped, "round {round}");
        assert!(created > 100 * round, "only {created} host frames fit");
        println!("round {round}: {created} host frames in total");
    }
}

#[test]
fn concurrent_traps_on_many_threads() {
    // Each thread traps with its own code; the thread-local fault records
    // must not mix.
    let engine = Engine::default();
    let module = Module::new(&engine, NESTED_WAT).unwrap();
    let threads: Vec<_> = (0..6)
        .map(|which| {
            let engine = engine.clone();
            let module = module.clone();
            std::thread::spawn(move || {
                let mut linker: Linker<()> = Linker::new(&engine);
                linker
                    .func_wrap(
                        "host",
                        "h",
                        |mut caller: Caller<'_, ()>, which: i32, _: i32| -> Result<i32, Error> {
                            caller.call::<i32, i32>("trap", which)
                        },
                    )
                    .unwrap();
                let mut store = Store::new(&engine, ());
                let i = linker.instantiate(&mut store, &module).unwrap();
                let code = [
                    TrapCode::UnreachableCodeReached,
                    TrapCode::MemoryOutOfBounds,
                    TrapCode::IntegerDivisionByZero,
                    TrapCode::StackOverflow,
                    TrapCode::IndirectCallToNull,
                    TrapCode::UnreachableCodeReached,
                ][which as usize];
                let rounds = if which == 3 { 20 } else { 300 };
                for n in 0..rounds {
                    let e = if n % 2 == 0 {
                        i.call::<i32, i32>(&mut store, "trap", which)
                    } else {
                        i.call::<(i32, i32), i32>(&mut store, "run", (which, 0))
                    };
                    expect_trap(e, code);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn trap_details_count_imported_functions() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (import "h" "a" (func))
             (import "h" "b" (func))
             (func $x nop)
             (func $y (export "y") unreachable))"#,
    )
    .unwrap();
    let mut linker: Linker<()> = Linker::new(&engine);
    linker.func_wrap("h", "a", || {}).unwrap();
    linker.func_wrap("h", "b", || {}).unwrap();
    let mut store = Store::new(&engine, ());
    let i = linker.instantiate(&mut store, &module).unwrap();
    let e = expect_trap(
        i.call::<(), ()>(&mut store, "y", ()),
        TrapCode::UnreachableCodeReached,
    );
    let trap = e.as_trap().unwrap();
    assert_eq!(trap.func_index(), Some(3));
    assert_eq!(trap.func_name(), Some("y"));
}

#[test]
fn trap_in_a_linked_instance_names_its_function() {
    let engine = Engine::default();
    let module_a = Module::new(
        &engine,
        r#"(module
             (func $a_trapper (export "f") (param i32) (result i32)
               (i32.div_u (i32.const 1) (local.get 0))))"#,
    )
    .unwrap();
    let module_b = Module::new(
        &engine,
        r#"(module
             (import "a" "f" (func $f (param i32) (result i32)))
             (func $b_caller (export "run") (param i32) (result i32)
               (i32.add (call $f (local.get 0)) (i32.const 1))))"#,
    )
    .unwrap();
    // Linked instances live in one store.
    let mut linker: Linker<()> = Linker::new(&engine);
    let mut store = Store::new(&engine, ());
    let a = linker.instantiate(&mut store, &module_a).unwrap();
    linker.instance(&store, "a", a).unwrap();
    let b = linker.instantiate(&mut store, &module_b).unwrap();
    let e = expect_trap(
        b.call::<i32, i32>(&mut store, "run", 0),
        TrapCode::IntegerDivisionByZero,
    );
    assert_eq!(e.as_trap().unwrap().func_name(), Some("a_trapper"));
    // A's function run as a root call on the store's stack.
    let f = a.get_func(&store, "f").unwrap();
    let e = f.call(&mut store, &[backstop::Val::I32(0)]).unwrap_err();
    assert_eq!(e.as_trap().unwrap().func_name(), Some("a_trapper"));
    assert_eq!(b.call::<i32, i32>(&mut store, "run", 1).unwrap(), 2);
}

#[test]
fn trap_names_stay_right_as_modules_come_and_go() {
    // Code memory of dropped modules is reused; the registry must forget
    // them, or traps would be attributed to stale functions.
    let engine = Engine::default();
    for n in 0..100 {
        let wat = format!(
            r#"(module (func $pad{n} (result i32) (i32.const {n}))
                       (func $f{n} (export "f") unreachable))"#
        );
        let (mut store, i) = instantiate_with(&engine, &wat);
        let e = expect_trap(
            i.call::<(), ()>(&mut store, "f", ()),
            TrapCode::UnreachableCodeReached,
        );
        assert_eq!(
            e.as_trap().unwrap().func_name(),
            Some(format!("f{n}").as_str())
        );
    }
}

/// Counts its drops.
struct DropCounter(Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A trap with no host function on the guest stack leaves the stack without
/// unwinding it; one that comes after host calls have returned must still
/// name every guest frame, and one under a host function that swallowed an
/// earlier unwind must still unwind it.
#[test]
fn traps_before_and_after_host_calls() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (import "host" "h" (func $h (param i32)))
             (func $inner (param i32) (result i32)
               (call $h (local.get 0))
               (i32.div_u (i32.const 1) (local.get 0)))
             (func $middle (export "middle") (param i32) (result i32)
               (call $inner (local.get 0)))
             (func (export "outer") (param i32) (result i32)
               (i32.add (call $middle (local.get 0)) (i32.const 1))))"#,
    )
    .unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let mut linker = Linker::new(&engine);
    let counter = drops.clone();
    linker
        .func_wrap("host", "h", move |mut caller: Caller<'_, ()>, n: i32| {
            let _guard = DropCounter(counter.clone());
            if n == 7 {
                // A nested trap unwinds (this frame is below it), and this
                // frame swallows the unwind: the run still ends with that
                // trap when this returns, and both guards drop.
                let nested = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    caller.call::<i32, i32>("middle", 0)
                }));
                assert!(nested.is_err());
            }
        })
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    for round in 0..100 {
        // The host call returns, then the guest divides by zero.
        let error = expect_trap(
            instance.call::<i32, i32>(&mut store, "outer", 0),
            TrapCode::IntegerDivisionByZero,
        );
        let backtrace = error.as_trap().unwrap().backtrace().unwrap();
        let names: Vec<_> = backtrace
            .frames()
            .iter()
            .map(|f| f.func_index().unwrap())
            .collect();
        assert_eq!(names, [1, 2, 3], "round {round}");
        assert_eq!(
            instance.call::<i32, i32>(&mut store, "outer", 1).unwrap(),
            2
        );
    }
    assert_eq!(drops.load(Ordering::SeqCst), 200);
    let error = instance
        .call::<i32, i32>(&mut store, "outer", 7)
        .unwrap_err();
    assert_eq!(error.trap_code(), Some(TrapCode::IntegerDivisionByZero));
    // The swallowing frame and the nested one both dropped their guards.
    assert_eq!(drops.load(Ordering::SeqCst), 202);
    assert_eq!(
        instance.call::<i32, i32>(&mut store, "outer", 1).unwrap(),
        2
    );
}

/// A trap in a store called from a host function of another store leaves
/// only the inner store's guest stack; the host function goes on.
#[test]
fn trap_in_a_nested_root_returns_to_the_host_function() {
    let engine = Engine::default();
    let inner = std::sync::Mutex::new(instantiate_with(
        &engine,
        r#"(module (func (export "boom") (result i32) unreachable))"#,
    ));
    let module = Module::new(
        &engine,
        r#"(module
             (import "host" "h" (func $h (result i32)))
             (func (export "run") (result i32) (i32.add (call $h) (i32.const 1))))"#,
    )
    .unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let counter = drops.clone();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap("host", "h", move || -> i32 {
            let _guard = DropCounter(counter.clone());
            let mut inner = inner.lock().unwrap();
            let (store, instance) = &mut *inner;
            let error = instance.call::<(), i32>(store, "boom", ()).unwrap_err();
            assert_eq!(error.trap_code(), Some(TrapCode::UnreachableCodeReached));
            41
        })
        .unwrap();
    let mut store = Store::new(&engine, ());
    let outer = linker.instantiate(&mut store, &module).unwrap();
    for _ in 0..100 {
        assert_eq!(outer.call::<(), i32>(&mut store, "run", ()).unwrap(), 42);
    }
    assert_eq!(drops.load(Ordering::SeqCst), 100);
}

/// A segment that does not fit at instantiation is a trap that says so:
/// while instantiating, which segment, where, and how big its target is.
#[test]
fn out_of_bounds_segments_at_instantiation_are_named() {
    let engine = Engine::default();
    let linker: Linker<()> = Linker::new(&engine);
    let mut store = Store::new(&engine, ());
    let data = Module::new(
        &engine,
        r#"(module (memory 1)
             (data (i32.const 0) "ok")
             (data (i32.const 65530) "0123456789"))"#,
    )
    .unwrap();
    let error = linker.instantiate(&mut store, &data).unwrap_err();
    let trap = error.as_trap().expect("a trap");
    assert_eq!(trap.code(), TrapCode::MemoryOutOfBounds);
    assert_eq!(
        trap.context(),
        Some(
            "instantiation: data segment 1 (10 bytes at offset 65530) does not fit \
             in memory 0 (65536 bytes)"
        )
    );
    assert_eq!(
        error.to_string(),
        "wasm trap: out of bounds memory access during instantiation: data segment 1 \
         (10 bytes at offset 65530) does not fit in memory 0 (65536 bytes)"
    );
    let elements = Module::new(
        &engine,
        r#"(module (table 2 funcref) (func $f)
             (elem (i32.const 1) $f $f))"#,
    )
    .unwrap();
    let error = linker.instantiate(&mut store, &elements).unwrap_err();
    assert_eq!(error.trap_code(), Some(TrapCode::TableOutOfBounds));
    assert!(
        error.to_string().contains(
            "during instantiation: element segment 0 (2 elements at offset 1) \
             does not fit in table 0 (2 elements)"
        ),
        "{error}"
    );
}
