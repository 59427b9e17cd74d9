//! Typed host functions are called by compiled code through their native
//! entry (System V, one argument per register), and `Caller::call` calls
//! typed exports natively too, when every type has a plain Rust scalar;
//! otherwise both go through slots (the host adapter and the entry
//! trampoline). Every Wasm value type, on both paths, must arrive bit for
//! bit: negative and large integers, NaN payloads, null and non-null
//! references, several arguments of mixed classes, no results, one result,
//! two results, V128.

use backstop::{Caller, Engine, ExternRef, Linker, Module, Store, V128};
use std::num::NonZeroU64;

const GUEST: &str = r#"
    (module
      (import "host" "mix" (func $mix (param i32 i64 f32 f64) (result f64)))
      (import "host" "ints" (func $ints (param i32 i32 i64 i64) (result i64)))
      (import "host" "f32" (func $f32 (param f32) (result f32)))
      (import "host" "ref" (func $ref (param externref) (result externref)))
      (import "host" "unit" (func $unit))
      (import "host" "pair" (func $pair (param i32) (result i32 i32)))
      (import "host" "vec" (func $vec (param v128) (result v128)))
      (global $units (mut i32) (i32.const 0))
      ;; Exports called back by the host with Caller::call.
      (func (export "mix_back") (param i32 i64 f32 f64) (result f64)
        (f64.add (f64.add (f64.convert_i32_s (local.get 0)) (f64.convert_i64_s (local.get 1)))
                 (f64.add (f64.promote_f32 (local.get 2)) (local.get 3))))
      (func (export "f32_back") (param f32) (result f32) (local.get 0))
      (func (export "ref_back") (param externref) (result externref) (local.get 0))
      (func (export "unit_back") (global.set $units (i32.add (global.get $units) (i32.const 1))))
      (func (export "units") (result i32) (global.get $units))
      (func (export "pair_back") (param i32) (result i32 i32)
        (local.get 0) (i32.sub (i32.const 0) (local.get 0)))
      (func (export "vec_back") (param v128) (result v128) (local.get 0))
      ;; Entry points that call the host imports from compiled code.
      (func (export "mix") (param i32 i64 f32 f64) (result f64)
        (call $mix (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
      (func (export "ints") (param i32 i32 i64 i64) (result i64)
        (call $ints (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
      (func (export "f32") (param f32) (result f32) (call $f32 (local.get 0)))
      (func (export "ref") (param externref) (result externref) (call $ref (local.get 0)))
      (func (export "unit") (call $unit))
      (func (export "pair") (param i32) (result i32 i32) (call $pair (local.get 0)))
      (func (export "vec") (param v128) (result v128) (call $vec (local.get 0))))
"#;

#[test]
fn every_type_crosses_both_ways_bit_for_bit() {
    let engine = Engine::default();
    let module = Module::new(&engine, GUEST).unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap(
            "host",
            "mix",
            |mut caller: Caller<'_, ()>, a: i32, b: i64, c: f32, d: f64| -> f64 {
                let back: f64 = caller.call("mix_back", (a, b, c, d)).unwrap();
                assert_eq!(back, f64::from(a) + b as f64 + (f64::from(c) + d));
                back * 2.0
            },
        )
        .unwrap();
    linker
        .func_wrap("host", "ints", |a: i32, b: u32, c: i64, d: u64| -> i64 {
            // Upper register bits must not leak into 32-bit arguments.
            assert_eq!((a, b, c, d), (-7, 0xffff_fff0, i64::MIN, u64::MAX));
            c.wrapping_add(i64::from(a)).wrapping_add(i64::from(b))
        })
        .unwrap();
    linker
        .func_wrap("host", "f32", |mut caller: Caller<'_, ()>, x: f32| -> f32 {
            let back: f32 = caller.call("f32_back", x).unwrap();
            assert_eq!(back.to_bits(), x.to_bits());
            back
        })
        .unwrap();
    linker
        .func_wrap(
            "host",
            "ref",
            |mut caller: Caller<'_, ()>, r: Option<ExternRef>| -> Option<ExternRef> {
                let back: Option<ExternRef> = caller.call("ref_back", r).unwrap();
                assert_eq!(back, r);
                back
            },
        )
        .unwrap();
    linker
        .func_wrap("host", "unit", |mut caller: Caller<'_, ()>| {
            let () = caller.call("unit_back", ()).unwrap();
        })
        .unwrap();
    linker
        .func_wrap(
            "host",
            "pair",
            |mut caller: Caller<'_, ()>, x: i32| -> (i32, i32) {
                let back: (i32, i32) = caller.call("pair_back", x).unwrap();
                assert_eq!(back, (x, x.wrapping_neg()));
                (back.1, back.0)
            },
        )
        .unwrap();
    linker
        .func_wrap(
            "host",
            "vec",
            |mut caller: Caller<'_, ()>, v: V128| -> V128 {
                let back: V128 = caller.call("vec_back", v).unwrap();
                assert_eq!(back, v);
                back
            },
        )
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();

    for (a, b, c, d) in [
        (-1, i64::MIN / 4, -0.5f32, 1e300),
        (i32::MAX, 1 << 53, 3.25, -2.0),
        (0, 0, 0.0, 0.0),
    ] {
        let got: f64 = instance.call(&mut store, "mix", (a, b, c, d)).unwrap();
        assert_eq!(got, (f64::from(a) + b as f64 + (f64::from(c) + d)) * 2.0);
    }
    let got: i64 = instance
        .call(
            &mut store,
            "ints",
            (-7i32, 0xffff_fff0u32, i64::MIN, u64::MAX),
        )
        .unwrap();
    assert_eq!(got, i64::MIN.wrapping_add(-7).wrapping_add(0xffff_fff0));
    // A signalling NaN with a payload, and an ordinary value.
    for bits in [0x7fa0_0001u32, 0x4049_0fdb] {
        let got: f32 = instance
            .call(&mut store, "f32", f32::from_bits(bits))
            .unwrap();
        assert_eq!(got.to_bits(), bits);
    }
    for r in [
        None,
        Some(ExternRef::new(
            NonZeroU64::new(0xdead_beef_0000_0001).unwrap(),
        )),
    ] {
        let got: Option<ExternRef> = instance.call(&mut store, "ref", r).unwrap();
        assert_eq!(got, r);
    }
    for _ in 0..3 {
        let () = instance.call(&mut store, "unit", ()).unwrap();
    }
    assert_eq!(
        instance.call::<(), i32>(&mut store, "units", ()).unwrap(),
        3
    );
    let got: (i32, i32) = instance.call(&mut store, "pair", 5).unwrap();
    assert_eq!(got, (-5, 5));
    let v = V128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
    let got: V128 = instance.call(&mut store, "vec", v).unwrap();
    assert_eq!(got, v);
}
