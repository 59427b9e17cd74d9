//! The public API in use, in the store model: auto traits (Send/Sync/Clone,
//! stores `Send`, handles `Copy`), typed calls with multi-value results,
//! `get_typed_func` handles, `call_dynamic` with every value type (v128,
//! externref, funcref round trips through a table), exported globals,
//! memories (slices, growth limits), tables, `Caller` access to the store's
//! data and the caller's memory, dynamically typed host functions, linking
//! one instance's exports into another of the same store, host-created
//! items shared by the instances of their store, start functions,
//! instantiation traps, module imports/exports, stores moved to other
//! threads, and a backtrace taken in a host function that walks the guest
//! frames down to the embedder.

use backstop::{
    Caller, Config, Engine, Error, Extern, ExternRef, ExternType, Func, FuncType, Global,
    GlobalType, Instance, Linker, Memory, MemoryType, Module, Store, Table, TableType, TrapCode,
    TypedFunc, Val, ValType, V128,
};
use std::num::NonZeroU64;

fn assert_send<T: Send>() {}
fn assert_sync<T: Sync>() {}
fn assert_clone<T: Clone>() {}
fn assert_copy<T: Copy>() {}

/// A store is `Send` when its data is (it is never `Sync`: the doctests in
/// `lib.rs` prove that part).
fn store_is_send<T: Send + 'static>() {
    assert_send::<Store<T>>();
}

#[test]
fn auto_traits() {
    assert_send::<Engine>();
    assert_sync::<Engine>();
    assert_clone::<Engine>();
    assert_send::<Module>();
    assert_sync::<Module>();
    assert_clone::<Module>();
    store_is_send::<()>();
    store_is_send::<Vec<String>>();
    // Handles are plain data: Copy, Send and Sync.
    for_all_handles::<Instance>();
    for_all_handles::<Func>();
    for_all_handles::<Memory>();
    for_all_handles::<Table>();
    for_all_handles::<Global>();
    for_all_handles::<TypedFunc<(i32, i64), f64>>();
    assert_send::<Linker<()>>();
    assert_sync::<Linker<()>>();
    assert_clone::<Linker<()>>();
    assert_send::<Error>();
    assert_sync::<Error>();
    // Errors convert into the usual boxed error.
    let e: Box<dyn std::error::Error + Send + Sync> = Error::msg("m").into();
    assert_eq!(e.to_string(), "m");
}

fn for_all_handles<T: Send + Sync + Copy>() {
    assert_copy::<T>();
}

/// A new store holding one instance of `wat`.
fn instantiate(engine: &Engine, wat: &str) -> (Store<()>, Instance) {
    let module = Module::new(engine, wat).unwrap();
    let mut store = Store::new(engine, ());
    let instance = Linker::new(engine)
        .instantiate(&mut store, &module)
        .unwrap();
    (store, instance)
}

const VALUES_WAT: &str = r#"
(module
  (type $r (func (result i32)))
  (table $t (export "table") 2 funcref)
  (func $forty_two (export "forty_two") (result i32) (i32.const 42))
  (func $seven (result i32) (i32.const 7))
  (elem declare func $forty_two $seven)
  (func (export "multi") (param i32) (result i32 i64 f32 f64)
    (local.get 0)
    (i64.mul (i64.extend_i32_s (local.get 0)) (i64.const 1000000000000))
    (f32.div (f32.convert_i32_s (local.get 0)) (f32.const 4))
    (f64.sqrt (f64.convert_i32_s (local.get 0))))
  (func (export "swap") (param i64 i32) (result i32 i64) (local.get 1) (local.get 0))
  (func (export "all") (param i32 i64 f32 f64 v128 funcref externref)
                       (result externref funcref v128 f64 f32 i64 i32)
    (local.get 6) (local.get 5) (local.get 4) (local.get 3)
    (local.get 2) (local.get 1) (local.get 0))
  (func (export "v128_add") (param v128 v128) (result v128) (i32x4.add (local.get 0) (local.get 1)))
  (func (export "get_ref") (param i32) (result funcref)
    (if (result funcref) (local.get 0)
      (then (ref.func $forty_two))
      (else (ref.func $seven))))
  (func (export "null_ref") (result funcref) (ref.null func))
  (func (export "call_via_table") (param funcref) (result i32)
    (table.set $t (i32.const 1) (local.get 0))
    (call_indirect $t (type $r) (i32.const 1)))
  (func (export "is_null_func") (param funcref) (result i32) (ref.is_null (local.get 0)))
  (func (export "is_null_extern") (param externref) (result i32) (ref.is_null (local.get 0)))
  (func (export "id_extern") (param externref) (result externref) (local.get 0))
  (func (export "id_f32") (param f32) (result f32) (local.get 0))
  (func (export "id_f64") (param f64) (result f64) (local.get 0))
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))
"#;

#[test]
fn typed_calls_with_multi_value_results() {
    let engine = Engine::default();
    let (mut store, i) = instantiate(&engine, VALUES_WAT);
    for x in [0, 1, 16, -8, 1 << 20] {
        let (a, b, c, d) = i
            .call::<i32, (i32, i64, f32, f64)>(&mut store, "multi", x)
            .unwrap();
        assert_eq!(a, x);
        assert_eq!(b, x as i64 * 1_000_000_000_000);
        assert_eq!(c, x as f32 / 4.0);
        assert_eq!(d.to_bits(), (x as f64).sqrt().to_bits());
    }
    assert_eq!(
        i.call::<(i64, i32), (i32, i64)>(&mut store, "swap", (-5, 9))
            .unwrap(),
        (9, -5)
    );
    // Single values and unit.
    assert_eq!(i.call::<(), i32>(&mut store, "forty_two", ()).unwrap(), 42);
    // NaN payloads survive typed calls.
    let nan = f32::from_bits(0x7fa0_0001);
    assert_eq!(
        i.call::<f32, f32>(&mut store, "id_f32", nan)
            .unwrap()
            .to_bits(),
        0x7fa0_0001
    );
    let nan = f64::from_bits(0xfff4_0000_0000_0001);
    assert_eq!(
        i.call::<f64, f64>(&mut store, "id_f64", nan)
            .unwrap()
            .to_bits(),
        0xfff4_0000_0000_0001
    );
    // Multi-value results through call_dynamic too.
    let results = i
        .call_dynamic(&mut store, "multi", &[Val::I32(16)])
        .unwrap();
    assert_eq!(
        results,
        vec![
            Val::I32(16),
            Val::I64(16_000_000_000_000),
            Val::from(4.0f32),
            Val::from(4.0f64)
        ]
    );
}

#[test]
fn typed_func_handles_in_a_loop() {
    let engine = Engine::default();
    let (mut store, i) = instantiate(&engine, VALUES_WAT);
    let add = i.get_typed_func::<(i32, i32), i32>(&store, "add").unwrap();
    let multi = i
        .get_typed_func::<i32, (i32, i64, f32, f64)>(&store, "multi")
        .unwrap();
    let mut sum = 0i32;
    for k in 0..10_000 {
        sum = add.call(&mut store, (sum, k)).unwrap();
        if k % 1000 == 0 {
            assert_eq!(multi.call(&mut store, k).unwrap().0, k);
        }
    }
    assert_eq!(sum, (0..10_000).sum::<i32>());
    // The handle's function is the export.
    assert_eq!(add.func(), i.get_func(&store, "add").unwrap());
    assert_eq!(
        add.func().ty(&store),
        FuncType::new([ValType::I32; 2], [ValType::I32])
    );
}

#[test]
fn call_dynamic_with_every_value_type() {
    let engine = Engine::default();
    let (mut store, i) = instantiate(&engine, VALUES_WAT);
    let forty_two = i.get_func(&store, "forty_two").unwrap();
    let ext = ExternRef::new(NonZeroU64::new(0xdead_beef_f00d).unwrap());
    let v = V128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff);
    let args = [
        Val::I32(-3),
        Val::I64(i64::MIN + 1),
        Val::F32(0x7fc0_0abc),
        Val::F64(0x8000_0000_0000_0000),
        Val::V128(v),
        Val::FuncRef(Some(forty_two)),
        Val::ExternRef(Some(ext)),
    ];
    let results = i.call_dynamic(&mut store, "all", &args).unwrap();
    let reversed: Vec<Val> = args.iter().rev().cloned().collect();
    assert_eq!(results, reversed);
    assert_eq!(results[0].ty(), ValType::ExternRef);
    assert_eq!(results[2].ty(), ValType::V128);
    // Null references round trip too.
    let mut args = args.to_vec();
    args[5] = Val::FuncRef(None);
    args[6] = Val::ExternRef(None);
    let results = i.call_dynamic(&mut store, "all", &args).unwrap();
    assert_eq!(results[0], Val::ExternRef(None));
    assert_eq!(results[1], Val::FuncRef(None));
    // v128 arithmetic: lane-wise i32 add.
    let a = V128(u128::from_le_bytes(
        [1u32, 2, 3, u32::MAX]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<_>>()
            .try_into()
            .unwrap(),
    ));
    let b = V128(u128::from_le_bytes(
        [10u32, 20, 30, 1]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<_>>()
            .try_into()
            .unwrap(),
    ));
    let sum = i
        .call_dynamic(&mut store, "v128_add", &[Val::V128(a), Val::V128(b)])
        .unwrap();
    let expected: Vec<u8> = [11u32, 22, 33, 0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    assert_eq!(
        sum,
        vec![Val::V128(V128(u128::from_le_bytes(
            expected.try_into().unwrap()
        )))]
    );
    // Typed v128 and externref.
    assert_eq!(
        i.call::<(V128, V128), V128>(&mut store, "v128_add", (V128(1), V128(2)))
            .unwrap(),
        V128(3)
    );
    assert_eq!(
        i.call::<Option<ExternRef>, Option<ExternRef>>(&mut store, "id_extern", Some(ext))
            .unwrap(),
        Some(ext)
    );
    assert_eq!(
        i.call::<Option<ExternRef>, i32>(&mut store, "is_null_extern", None)
            .unwrap(),
        1
    );
    assert_eq!(
        i.call::<Option<ExternRef>, i32>(&mut store, "is_null_extern", Some(ext))
            .unwrap(),
        0
    );
}

#[test]
fn funcref_round_trip_through_a_table() {
    let engine = Engine::default();
    let (mut store, i) = instantiate(&engine, VALUES_WAT);
    for (selector, expected) in [(1, 42), (0, 7)] {
        // A funcref produced by the guest ...
        let r = i
            .call_dynamic(&mut store, "get_ref", &[Val::I32(selector)])
            .unwrap();
        let Val::FuncRef(Some(func)) = &r[0] else {
            panic!("expected a non-null funcref, got {r:?}");
        };
        assert_eq!(func.ty(&store), FuncType::new([], [ValType::I32]));
        // ... passed back and called through the table.
        let out = i.call_dynamic(&mut store, "call_via_table", &r).unwrap();
        assert_eq!(out, vec![Val::I32(expected)]);
        // It is in the table now, visible from the host.
        let table = i.get_table(&store, "table").unwrap();
        assert_eq!(table.get(&store, 1), Some(r[0].clone()));
        // And it can be called directly from the host.
        assert_eq!(
            func.call(&mut store, &[]).unwrap(),
            vec![Val::I32(expected)]
        );
    }
    // The exported function's handle is the same funcref the guest makes.
    let from_guest = i
        .call_dynamic(&mut store, "get_ref", &[Val::I32(1)])
        .unwrap();
    assert_eq!(
        from_guest[0],
        Val::FuncRef(Some(i.get_func(&store, "forty_two").unwrap()))
    );
    let null = i.call_dynamic(&mut store, "null_ref", &[]).unwrap();
    assert_eq!(null, vec![Val::FuncRef(None)]);
    assert_eq!(
        i.call_dynamic(&mut store, "is_null_func", &null).unwrap(),
        vec![Val::I32(1)]
    );
    assert_eq!(
        i.call_dynamic(&mut store, "is_null_func", &from_guest)
            .unwrap(),
        vec![Val::I32(0)]
    );
    // A null funcref in the table traps when called.
    let err = i
        .call_dynamic(&mut store, "call_via_table", &null)
        .unwrap_err();
    assert_eq!(err.trap_code(), Some(TrapCode::IndirectCallToNull));
}

#[test]
fn funcref_of_another_instance_through_a_table() {
    // A funcref of instance A, passed to instance B of the same store and
    // stored in B's table, runs with A's context (A's global). This used to
    // check that the funcref kept A alive after A's own handle was dropped;
    // in the store model nothing is freed before the store drops, so the
    // equivalent is: A's `Instance` handle is gone (out of scope) and B is
    // instantiated after it, and the funcref still runs with A's state. A
    // store-model check is added: the funcref cannot be passed to an
    // instance of another store.
    let engine = Engine::default();
    let module = Module::new(&engine, VALUES_WAT).unwrap();
    let (mut store, bump) = {
        let (store, a) = instantiate(
            &engine,
            r#"(module
                 (global $g (mut i32) (i32.const 1000))
                 (func (export "bump") (result i32)
                   (global.set $g (i32.add (global.get $g) (i32.const 1)))
                   (global.get $g)))"#,
        );
        let bump = a.get_func(&store, "bump").unwrap();
        (store, bump)
    };
    let b = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    for expected in 1001..1004 {
        let out = b
            .call_dynamic(&mut store, "call_via_table", &[Val::FuncRef(Some(bump))])
            .unwrap();
        assert_eq!(out, vec![Val::I32(expected)]);
    }
    // Another store's instance refuses it, and A's global is untouched.
    let (mut other, c) = instantiate(&engine, VALUES_WAT);
    match c.call_dynamic(&mut other, "call_via_table", &[Val::FuncRef(Some(bump))]) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("another store"), "{m}"),
        r => panic!("expected InvalidArgument, got {r:?}"),
    }
    assert_eq!(bump.call(&mut store, &[]).unwrap(), vec![Val::I32(1004)]);
}

#[test]
fn exported_globals() {
    let engine = Engine::default();
    let (mut store, i) = instantiate(
        &engine,
        r#"(module
             (global $c (export "counter") (mut i32) (i32.const 0))
             (global (export "k") i64 (i64.const 7))
             (global (export "f") (mut f64) (f64.const 1.5))
             (global (export "v") (mut v128) (v128.const i64x2 1 2))
             (global (export "e") (mut externref) (ref.null extern))
             (func (export "inc") (result i32)
               (global.set $c (i32.add (global.get $c) (i32.const 1)))
               (global.get $c)))"#,
    );
    let counter = i.get_global(&store, "counter").unwrap();
    assert_eq!(
        counter.ty(&store),
        GlobalType {
            content: ValType::I32,
            mutable: true
        }
    );
    assert_eq!(counter.get(&store), Val::I32(0));
    assert_eq!(i.call::<(), i32>(&mut store, "inc", ()).unwrap(), 1);
    assert_eq!(counter.get(&store), Val::I32(1));
    counter.set(&mut store, Val::I32(10)).unwrap();
    assert_eq!(i.call::<(), i32>(&mut store, "inc", ()).unwrap(), 11);
    assert_eq!(
        i.get_global(&store, "counter").unwrap().get(&store),
        Val::I32(11)
    );
    // Wrong type.
    assert!(matches!(
        counter.set(&mut store, Val::I64(1)),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(counter.get(&store), Val::I32(11));
    // Immutable.
    let k = i.get_global(&store, "k").unwrap();
    assert_eq!(k.get(&store), Val::I64(7));
    assert!(!k.ty(&store).mutable);
    assert!(matches!(
        k.set(&mut store, Val::I64(8)),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(k.get(&store), Val::I64(7));
    // Other types.
    let f = i.get_global(&store, "f").unwrap();
    assert_eq!(f.get(&store).f64(), Some(1.5));
    f.set(&mut store, Val::from(-2.25f64)).unwrap();
    assert_eq!(f.get(&store).f64(), Some(-2.25));
    let v = i.get_global(&store, "v").unwrap();
    assert_eq!(v.get(&store), Val::V128(V128(1 | (2 << 64))));
    let e = i.get_global(&store, "e").unwrap();
    let handle = ExternRef::new(NonZeroU64::new(77).unwrap());
    e.set(&mut store, Val::ExternRef(Some(handle))).unwrap();
    assert_eq!(e.get(&store), Val::ExternRef(Some(handle)));
    // get_export agrees.
    assert!(matches!(i.get_export(&store, "k"), Some(Extern::Global(_))));
}

#[test]
fn memories_slices_and_growth() {
    let engine = Engine::default();
    let (mut store, i) = instantiate(
        &engine,
        r#"(module
             (memory (export "memory") 1 3)
             (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
             (func (export "size") (result i32) (memory.size))
             (func (export "sum") (param i32 i32) (result i32)
               (local $s i32)
               (block $done
                 (loop $l
                   (br_if $done (i32.eqz (local.get 1)))
                   (local.set $s (i32.add (local.get $s) (i32.load8_u (local.get 0))))
                   (local.set 0 (i32.add (local.get 0) (i32.const 1)))
                   (local.set 1 (i32.sub (local.get 1) (i32.const 1)))
                   (br $l)))
               (local.get $s))
             (func (export "poke") (param i32 i32) (i32.store8 (local.get 0) (local.get 1))))"#,
    );
    let memory = i.get_memory(&store, "memory").unwrap();
    assert_eq!(memory.data(&store).len(), 65536);
    assert_eq!(memory.data_size(&store), 65536);
    memory.data_mut(&mut store)[100..104].copy_from_slice(&[1, 2, 3, 4]);
    assert_eq!(
        i.call::<(i32, i32), i32>(&mut store, "sum", (100, 4))
            .unwrap(),
        10
    );
    i.call::<(i32, i32), ()>(&mut store, "poke", (65535, 0xab))
        .unwrap();
    assert_eq!(memory.data(&store)[65535], 0xab);
    // Grow from Wasm up to the declared maximum of 3 pages.
    assert_eq!(i.call::<i32, i32>(&mut store, "grow", 1).unwrap(), 1);
    assert_eq!(i.call::<i32, i32>(&mut store, "grow", 0).unwrap(), 2);
    assert_eq!(i.call::<i32, i32>(&mut store, "grow", 2).unwrap(), -1);
    assert_eq!(i.call::<i32, i32>(&mut store, "grow", 1).unwrap(), 2);
    assert_eq!(i.call::<i32, i32>(&mut store, "grow", 1).unwrap(), -1);
    assert_eq!(i.call::<(), i32>(&mut store, "size", ()).unwrap(), 3);
    assert_eq!(memory.size_pages(&store), 3);
    assert_eq!(memory.maximum_pages(&store), 3);
    assert_eq!(memory.data(&store).len(), 3 * 65536);
    // New pages are zeroed and usable from both sides.
    assert!(memory.data(&store)[65536..].iter().all(|&b| b == 0));
    i.call::<(i32, i32), ()>(&mut store, "poke", (3 * 65536 - 1, 9))
        .unwrap();
    let mut byte = [0u8];
    memory.read(&store, 3 * 65536 - 1, &mut byte).unwrap();
    assert_eq!(byte, [9]);
    // Growing from the host past the maximum fails.
    assert!(matches!(
        memory.grow(&mut store, 1),
        Err(Error::Resource(_))
    ));
    assert_eq!(memory.grow(&mut store, 0).unwrap(), 3);
    // Old contents are intact.
    assert_eq!(
        i.call::<(i32, i32), i32>(&mut store, "sum", (100, 4))
            .unwrap(),
        10
    );
}

#[test]
fn memory_growth_honours_config_max_memory_pages() {
    let mut config = Config::new();
    config.max_memory_pages(2);
    let engine = Engine::new(&config).unwrap();
    let (mut store, i) = instantiate(
        &engine,
        r#"(module
             (memory (export "memory") 1)
             (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))"#,
    );
    assert_eq!(i.call::<i32, i32>(&mut store, "grow", 1).unwrap(), 1);
    assert_eq!(i.call::<i32, i32>(&mut store, "grow", 1).unwrap(), -1);
    assert_eq!(i.call::<i32, i32>(&mut store, "grow", 65535).unwrap(), -1);
    assert_eq!(i.call::<i32, i32>(&mut store, "grow", -1).unwrap(), -1);
    let memory = i.get_memory(&store, "memory").unwrap();
    assert_eq!(memory.size_pages(&store), 2);
    assert_eq!(memory.maximum_pages(&store), 2);
    assert!(memory.grow(&mut store, 1).is_err());
}

#[test]
fn tables_and_table_grow() {
    let engine = Engine::default();
    let (mut store, i) = instantiate(
        &engine,
        r#"(module
             (type $r (func (result i32)))
             (table $t (export "table") 1 5 funcref)
             (table $x (export "externs") 0 externref)
             (func $one (export "one") (result i32) (i32.const 1))
             (elem (i32.const 0) $one)
             (func (export "size") (result i32) (table.size $t))
             (func (export "grow") (param i32) (result i32) (table.grow $t (ref.null func) (local.get 0)))
             (func (export "call") (param i32) (result i32) (call_indirect $t (type $r) (local.get 0)))
             (func (export "get_extern") (param i32) (result externref) (table.get $x (local.get 0))))"#,
    );
    let table = i.get_table(&store, "table").unwrap();
    assert_eq!(table.size(&store), 1);
    assert_eq!(
        table.ty(&store),
        TableType {
            element: ValType::FuncRef,
            minimum: 1,
            maximum: Some(5)
        }
    );
    assert_eq!(
        table.get(&store, 0),
        Some(Val::FuncRef(Some(i.get_func(&store, "one").unwrap())))
    );
    assert_eq!(table.get(&store, 1), None);
    // Grow from the host with a function; Wasm sees the new size and calls it.
    let one = i.get_func(&store, "one").unwrap();
    assert_eq!(
        table.grow(&mut store, 2, Val::FuncRef(Some(one))).unwrap(),
        1
    );
    assert_eq!(i.call::<(), i32>(&mut store, "size", ()).unwrap(), 3);
    assert_eq!(i.call::<i32, i32>(&mut store, "call", 2).unwrap(), 1);
    // Grow from Wasm, up to the maximum of 5.
    assert_eq!(i.call::<i32, i32>(&mut store, "grow", 2).unwrap(), 3);
    assert_eq!(i.call::<i32, i32>(&mut store, "grow", 1).unwrap(), -1);
    assert_eq!(table.size(&store), 5);
    assert_eq!(table.get(&store, 4), Some(Val::FuncRef(None)));
    assert!(table.grow(&mut store, 1, Val::FuncRef(None)).is_err());
    // Set from the host.
    table.set(&mut store, 4, Val::FuncRef(Some(one))).unwrap();
    assert_eq!(i.call::<i32, i32>(&mut store, "call", 4).unwrap(), 1);
    assert!(matches!(
        table.set(&mut store, 5, Val::FuncRef(None)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        table.set(&mut store, 0, Val::I32(0)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(table.grow(&mut store, 0, Val::ExternRef(None)).is_err());
    // An externref table grown from the host.
    let externs = i.get_table(&store, "externs").unwrap();
    let handle = ExternRef::new(NonZeroU64::new(5).unwrap());
    assert_eq!(
        externs
            .grow(&mut store, 3, Val::ExternRef(Some(handle)))
            .unwrap(),
        0
    );
    assert_eq!(
        i.call::<i32, Option<ExternRef>>(&mut store, "get_extern", 2)
            .unwrap(),
        Some(handle)
    );
    // A table made by the host.
    let fresh = Table::new(
        &mut store,
        TableType {
            element: ValType::ExternRef,
            minimum: 2,
            maximum: None,
        },
        Val::ExternRef(Some(handle)),
    )
    .unwrap();
    assert_eq!(fresh.get(&store, 1), Some(Val::ExternRef(Some(handle))));
}

#[derive(Default)]
struct HostState {
    calls: u32,
    total: i64,
    log: Vec<String>,
}

#[test]
fn caller_data_mut_persists_and_caller_memory_mut_reads_guest_strings() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (import "host" "add" (func $add (param i64) (result i32)))
             (import "host" "log" (func $log (param i32 i32)))
             (memory (export "memory") 1)
             (data $msg "hello from wasm")
             (func (export "run") (param i64) (result i32) (call $add (local.get 0)))
             (func (export "say") (param $n i32)
               ;; Write the message at 256 + n at run time, then log it.
               (memory.init $msg (i32.add (i32.const 256) (local.get $n)) (i32.const 0) (i32.const 15))
               (call $log (i32.add (i32.const 256) (local.get $n)) (i32.const 15)))
             (func (export "load8") (param i32) (result i32) (i32.load8_u (local.get 0))))"#,
    )
    .unwrap();
    let mut linker: Linker<HostState> = Linker::new(&engine);
    linker
        .func_wrap(
            "host",
            "add",
            |mut caller: Caller<'_, HostState>, x: i64| {
                let state = caller.data_mut();
                state.calls += 1;
                state.total += x;
                state.calls as i32
            },
        )
        .unwrap();
    linker
        .func_wrap(
            "host",
            "log",
            |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> Result<(), Error> {
                let memory = caller
                    .memory_mut("memory")
                    .ok_or_else(|| Error::msg("no memory"))?;
                let bytes = &mut memory[ptr as usize..(ptr + len) as usize];
                let text = String::from_utf8(bytes.to_vec()).map_err(Error::msg)?;
                // Write back: the guest sees the change after the call.
                bytes.make_ascii_uppercase();
                assert!(caller.get_memory("memory").is_some());
                assert!(caller.memory_mut("nope").is_none());
                caller.data_mut().log.push(text);
                Ok(())
            },
        )
        .unwrap();
    let mut store = Store::new(&engine, HostState::default());
    let i = linker.instantiate(&mut store, &module).unwrap();
    for k in 1..=5 {
        assert_eq!(
            i.call::<i64, i32>(&mut store, "run", k * 10).unwrap(),
            k as i32
        );
    }
    assert_eq!(store.data().calls, 5);
    assert_eq!(store.data().total, 150);
    i.call::<i32, ()>(&mut store, "say", 0).unwrap();
    i.call::<i32, ()>(&mut store, "say", 1000).unwrap();
    assert_eq!(store.data().log, vec!["hello from wasm", "hello from wasm"]);
    assert_eq!(
        i.call::<i32, i32>(&mut store, "load8", 256).unwrap(),
        u32::from(b'H') as i32
    );
    let memory = i.get_memory(&store, "memory").unwrap();
    assert_eq!(&memory.data(&store)[1256..1271], b"HELLO FROM WASM");
    // The embedder changes the state between calls; the host sees it.
    store.data_mut().calls = 100;
    assert_eq!(i.call::<i64, i32>(&mut store, "run", 0).unwrap(), 101);
}

#[test]
fn dynamically_typed_host_functions() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (import "host" "mix" (func $mix (param i32 f64 v128 externref) (result i64 externref v128)))
             (func (export "run") (param i32 f64 v128 externref) (result i64 externref v128)
               (call $mix (local.get 0) (local.get 1) (local.get 2) (local.get 3))))"#,
    )
    .unwrap();
    let mut linker: Linker<u32> = Linker::new(&engine);
    let ty = FuncType::new(
        [
            ValType::I32,
            ValType::F64,
            ValType::V128,
            ValType::ExternRef,
        ],
        [ValType::I64, ValType::ExternRef, ValType::V128],
    );
    linker
        .func_new("host", "mix", ty, |mut caller, args, results| {
            *caller.data_mut() += 1;
            let a = args[0].i32().unwrap();
            let b = args[1].f64().unwrap();
            let Val::V128(v) = args[2] else {
                return Err(Error::msg("not a v128"));
            };
            results[0] = Val::I64(i64::from(a) + b as i64);
            results[1] = args[3].clone();
            results[2] = Val::V128(V128(!v.0));
            Ok(())
        })
        .unwrap();
    let mut store = Store::new(&engine, 0);
    let i = linker.instantiate(&mut store, &module).unwrap();
    let handle = ExternRef::new(NonZeroU64::new(3).unwrap());
    let out = i
        .call_dynamic(
            &mut store,
            "run",
            &[
                Val::I32(40),
                Val::from(2.9f64),
                Val::V128(V128(0xff)),
                Val::ExternRef(Some(handle)),
            ],
        )
        .unwrap();
    assert_eq!(
        out,
        vec![
            Val::I64(42),
            Val::ExternRef(Some(handle)),
            Val::V128(V128(!0xffu128))
        ]
    );
    assert_eq!(*store.data(), 1);
    // A dynamic host function storing a result of the wrong type is an error.
    let mut linker: Linker<u32> = Linker::new(&engine);
    let ty = FuncType::new([], [ValType::I32]);
    linker
        .func_new("host", "bad", ty, |_, _, results| {
            results[0] = Val::I64(1);
            Ok(())
        })
        .unwrap();
    let module = Module::new(
        &engine,
        r#"(module (import "host" "bad" (func $b (result i32)))
                   (func (export "run") (result i32) (call $b)))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, 0);
    let i = linker.instantiate(&mut store, &module).unwrap();
    match i.call::<(), i32>(&mut store, "run", ()) {
        Err(Error::InvalidArgument(m)) => println!("{m}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert!(!store.is_poisoned());
}

#[test]
fn linking_one_instance_into_another() {
    let engine = Engine::default();
    let provider = Module::new(
        &engine,
        r#"(module
             (import "host" "id" (func $id (result i32)))
             (export "host_id" (func $id))
             (memory (export "mem") 1)
             (table (export "tab") 2 funcref)
             (global $g (export "g") (mut i32) (i32.const 5))
             (elem (i32.const 0) $triple)
             (func $triple (export "triple") (param i32) (result i32)
               (i32.mul (local.get 0) (i32.const 3)))
             (func (export "add_to_g") (param i32) (result i32)
               ;; Uses the provider's own global and memory.
               (global.set $g (i32.add (global.get $g) (local.get 0)))
               (i32.store (i32.const 0) (global.get $g))
               (global.get $g)))"#,
    )
    .unwrap();
    let consumer = Module::new(
        &engine,
        r#"(module
             (import "p" "host_id" (func $host_id (result i32)))
             (import "p" "triple" (func $triple (param i32) (result i32)))
             (import "p" "add_to_g" (func $add_to_g (param i32) (result i32)))
             (import "p" "mem" (memory 1))
             (import "p" "tab" (table 2 funcref))
             (import "p" "g" (global $g (mut i32)))
             (type $i2i (func (param i32) (result i32)))
             (func (export "run") (param i32) (result i32)
               (i32.store (i32.const 100) (call $triple (local.get 0)))
               (global.set $g (i32.add (global.get $g) (i32.const 1)))
               (i32.add
                 (call_indirect (type $i2i) (local.get 0) (i32.const 0))
                 (call $add_to_g (i32.const 10))))
             (func (export "read") (param i32) (result i32) (i32.load (local.get 0)))
             (func (export "g") (result i32) (global.get $g))
             (func (export "who") (result i32) (call $host_id)))"#,
    )
    .unwrap();
    let mut linker: Linker<i32> = Linker::new(&engine);
    linker
        .func_wrap("host", "id", |caller: Caller<'_, i32>| *caller.data())
        .unwrap();
    // Linked instances live in one store.
    let mut store = Store::new(&engine, 1);
    let p = linker.instantiate(&mut store, &provider).unwrap();
    linker.instance(&store, "p", p).unwrap();
    let c = linker.instantiate(&mut store, &consumer).unwrap();
    // run(4): triple(4)=12 stored at 100 of the shared memory; g 5 -> 6;
    // call_indirect triple(4)=12; add_to_g(10): g 6 -> 16, stored at 0.
    assert_eq!(c.call::<i32, i32>(&mut store, "run", 4).unwrap(), 12 + 16);
    assert_eq!(c.call::<i32, i32>(&mut store, "read", 100).unwrap(), 12);
    assert_eq!(c.call::<i32, i32>(&mut store, "read", 0).unwrap(), 16);
    assert_eq!(c.call::<(), i32>(&mut store, "g", ()).unwrap(), 16);
    // The provider sees the same memory and global.
    assert_eq!(p.get_global(&store, "g").unwrap().get(&store), Val::I32(16));
    let mem = p.get_memory(&store, "mem").unwrap();
    assert_eq!(&mem.data(&store)[100..104], &12i32.to_le_bytes());
    assert_eq!(p.call::<i32, i32>(&mut store, "add_to_g", 1).unwrap(), 17);
    assert_eq!(c.call::<(), i32>(&mut store, "g", ()).unwrap(), 17);
    // A host function re-exported by the provider sees the data of the
    // running store. (This used to check that it saw the data of the
    // instance running the call, the consumer's rather than the
    // provider's; data is per store now, so the equivalent is that it sees
    // the store's data as it is at the time of the call, through either
    // instance.)
    assert_eq!(c.call::<(), i32>(&mut store, "who", ()).unwrap(), 1);
    *store.data_mut() = 2;
    assert_eq!(c.call::<(), i32>(&mut store, "who", ()).unwrap(), 2);
    assert_eq!(p.call::<(), i32>(&mut store, "host_id", ()).unwrap(), 2);
    // The provider's functions can be called from the host on the store's
    // stack.
    let triple = p.get_func(&store, "triple").unwrap();
    assert_eq!(
        triple.call(&mut store, &[Val::I32(5)]).unwrap(),
        vec![Val::I32(15)]
    );
    // Linking the same name twice is refused unless shadowing is allowed.
    assert!(matches!(
        linker.instance(&store, "p", p),
        Err(Error::Link(_))
    ));
    linker.allow_shadowing(true);
    linker.instance(&store, "p", p).unwrap();
    // This used to check that the consumer kept the provider's items alive
    // after the provider was dropped. In the store model every item stays
    // for the store's life, and linking across stores is refused: the
    // linker now holds the provider's items, which belong to `store`, so
    // the consumer cannot be instantiated in another store ...
    let mut other = Store::new(&engine, 3);
    match linker.instantiate(&mut other, &consumer) {
        Err(Error::Link(m)) => assert!(m.contains("another store"), "{m}"),
        r => panic!("expected a link error, got {r:?}"),
    }
    // ... while the consumer in `store` keeps working with them.
    assert_eq!(c.call::<i32, i32>(&mut store, "run", 1).unwrap(), 3 + 28);
}

#[test]
fn host_created_items_shared_by_instances() {
    // The host creates a memory and a global in a store; instances of that
    // store share them. (Store model: the items belong to their store, so a
    // module importing them instantiates only there.)
    let engine = Engine::default();
    let mut store = Store::new(&engine, ());
    let memory = Memory::new(
        &mut store,
        MemoryType {
            minimum: 1,
            maximum: Some(2),
        },
    )
    .unwrap();
    let global = Global::new(
        &mut store,
        GlobalType {
            content: ValType::I64,
            mutable: true,
        },
        Val::I64(40),
    )
    .unwrap();
    let mut linker: Linker<()> = Linker::new(&engine);
    linker.define("env", "memory", memory).unwrap();
    linker.define("env", "counter", global).unwrap();
    let module = Module::new(
        &engine,
        r#"(module
             (import "env" "memory" (memory 1 2))
             (import "env" "counter" (global $c (mut i64)))
             (func (export "bump") (result i64)
               (global.set $c (i64.add (global.get $c) (i64.const 1)))
               (i64.store (i32.const 8) (global.get $c))
               (global.get $c)))"#,
    )
    .unwrap();
    let a = linker.instantiate(&mut store, &module).unwrap();
    let b = linker.instantiate(&mut store, &module).unwrap();
    assert_eq!(a.call::<(), i64>(&mut store, "bump", ()).unwrap(), 41);
    assert_eq!(b.call::<(), i64>(&mut store, "bump", ()).unwrap(), 42);
    assert_eq!(global.get(&store), Val::I64(42));
    let mut bytes = [0u8; 8];
    memory.read(&store, 8, &mut bytes).unwrap();
    assert_eq!(i64::from_le_bytes(bytes), 42);
    // Another store cannot use them.
    let mut other = Store::new(&engine, ());
    match linker.instantiate(&mut other, &module) {
        Err(Error::Link(m)) => assert!(m.contains("another store"), "{m}"),
        r => panic!("expected a link error, got {r:?}"),
    }
    assert!(matches!(
        memory.read(&other, 8, &mut bytes),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        global.set(&mut other, Val::I64(0)),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(global.get(&store), Val::I64(42));
}

#[test]
fn start_function_runs_at_instantiation() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (import "host" "started" (func $started (param i32)))
             (global $g (export "g") (mut i32) (i32.const 0))
             (memory (export "memory") 1)
             (func $start
               (global.set $g (i32.const 123))
               (i32.store8 (i32.const 5) (i32.const 9))
               (call $started (i32.const 7)))
             (start $start))"#,
    )
    .unwrap();
    let mut linker: Linker<Vec<i32>> = Linker::new(&engine);
    linker
        .func_wrap("host", "started", |mut c: Caller<'_, Vec<i32>>, x: i32| {
            c.data_mut().push(x)
        })
        .unwrap();
    for _ in 0..3 {
        let mut store = Store::new(&engine, vec![1]);
        let i = linker.instantiate(&mut store, &module).unwrap();
        assert_eq!(store.data(), &vec![1, 7]);
        assert_eq!(
            i.get_global(&store, "g").unwrap().get(&store),
            Val::I32(123)
        );
        assert_eq!(i.get_memory(&store, "memory").unwrap().data(&store)[5], 9);
    }
    // A start function that traps fails the instantiation with the trap.
    let trapping = Module::new(
        &engine,
        r#"(module (func $s (drop (i32.div_u (i32.const 1) (i32.const 0)))) (start $s))"#,
    )
    .unwrap();
    let err = Linker::<()>::new(&engine)
        .instantiate(&mut Store::new(&engine, ()), &trapping)
        .unwrap_err();
    assert_eq!(
        err.trap_code(),
        Some(TrapCode::IntegerDivisionByZero),
        "{err}"
    );
    // One whose host function fails returns that error.
    let mut linker: Linker<Vec<i32>> = Linker::new(&engine);
    linker
        .func_wrap("host", "started", |_: i32| -> Result<(), Error> {
            Err(Error::msg("refused"))
        })
        .unwrap();
    match linker.instantiate(&mut Store::new(&engine, vec![]), &module) {
        Err(Error::Message(m)) => assert_eq!(m, "refused"),
        other => panic!("expected the host's error, got {other:?}"),
    }
}

#[test]
fn instantiation_traps_on_out_of_bounds_segments() {
    let engine = Engine::default();
    let linker: Linker<()> = Linker::new(&engine);
    for (wat, code) in [
        (
            r#"(module (memory 1) (data (i32.const 65535) "ab"))"#,
            TrapCode::MemoryOutOfBounds,
        ),
        (
            r#"(module (memory 0) (data (i32.const 0) "a"))"#,
            TrapCode::MemoryOutOfBounds,
        ),
        (
            r#"(module (memory 1) (data (i32.const -1) "a"))"#,
            TrapCode::MemoryOutOfBounds,
        ),
        (
            r#"(module (table 1 funcref) (func $f) (elem (i32.const 1) $f))"#,
            TrapCode::TableOutOfBounds,
        ),
        (
            r#"(module (table 2 funcref) (func $f) (elem (i32.const 1) $f $f))"#,
            TrapCode::TableOutOfBounds,
        ),
    ] {
        let module = Module::new(&engine, wat).unwrap();
        match linker.instantiate(&mut Store::new(&engine, ()), &module) {
            Err(Error::Trap(trap)) => {
                assert_eq!(trap.code(), code, "{wat}");
                println!("{wat}: {trap}");
            }
            other => panic!("{wat}: expected Err(Trap), got {other:?}"),
        }
    }
    // Exactly fitting segments are fine.
    let module = Module::new(
        &engine,
        r#"(module (memory (export "m") 1) (data (i32.const 65534) "ab")
                   (table 1 funcref) (func $f) (elem (i32.const 0) $f))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let i = linker.instantiate(&mut store, &module).unwrap();
    assert_eq!(
        &i.get_memory(&store, "m").unwrap().data(&store)[65534..],
        b"ab"
    );
}

#[test]
fn module_imports_and_exports() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module $named
             (import "a" "f" (func (param i32)))
             (import "a" "m" (memory 1 2))
             (import "b" "g" (global (mut f32)))
             (import "b" "t" (table 3 externref))
             (func (export "h") (param i64) (result f64) (f64.const 0))
             (global (export "k") i32 (i32.const 1)))"#,
    )
    .unwrap();
    assert_eq!(module.name(), Some("named"));
    assert_eq!(module.function_count(), 2);
    let imports: Vec<_> = module.imports().map(|i| (i.module, i.name, i.ty)).collect();
    assert_eq!(
        imports,
        vec![
            (
                "a".into(),
                "f".into(),
                ExternType::Func(FuncType::new([ValType::I32], []))
            ),
            (
                "a".into(),
                "m".into(),
                ExternType::Memory(MemoryType {
                    minimum: 1,
                    maximum: Some(2)
                })
            ),
            (
                "b".into(),
                "g".into(),
                ExternType::Global(GlobalType {
                    content: ValType::F32,
                    mutable: true
                })
            ),
            (
                "b".into(),
                "t".into(),
                ExternType::Table(TableType {
                    element: ValType::ExternRef,
                    minimum: 3,
                    maximum: None
                })
            ),
        ]
    );
    let exports: Vec<_> = module.exports().map(|e| (e.name, e.ty)).collect();
    assert_eq!(
        exports,
        vec![
            (
                "h".into(),
                ExternType::Func(FuncType::new([ValType::I64], [ValType::F64]))
            ),
            (
                "k".into(),
                ExternType::Global(GlobalType {
                    content: ValType::I32,
                    mutable: false
                })
            ),
        ]
    );
}

#[test]
fn stores_move_to_other_threads() {
    let engine = Engine::default();
    let module = Module::new(&engine, VALUES_WAT).unwrap();
    let linker: Linker<()> = Linker::new(&engine);
    let handles: Vec<_> = (0..4)
        .map(|k| {
            let mut store = Store::new(&engine, ());
            let i = linker.instantiate(&mut store, &module).unwrap();
            std::thread::spawn(move || {
                let mut sum = 0;
                for n in 0..1000 {
                    sum = i
                        .call::<(i32, i32), i32>(&mut store, "add", (sum, n + k))
                        .unwrap();
                    // A trap on this thread (its own signal stack) is fine.
                    if n % 100 == 0 {
                        let e = i
                            .call::<i32, i32>(&mut store, "call_via_table_missing", 0)
                            .unwrap_err();
                        assert!(matches!(e, Error::InvalidArgument(_)));
                        let e = i
                            .call_dynamic(&mut store, "call_via_table", &[Val::FuncRef(None)])
                            .unwrap_err();
                        assert_eq!(e.trap_code(), Some(TrapCode::IndirectCallToNull));
                    }
                }
                (sum, store, i)
            })
        })
        .collect();
    for (k, h) in handles.into_iter().enumerate() {
        let (sum, mut store, i) = h.join().unwrap();
        assert_eq!(sum, (0..1000).map(|n| n + k as i32).sum::<i32>());
        // And back on this thread.
        assert_eq!(
            i.call::<(i32, i32), i32>(&mut store, "add", (1, 2))
                .unwrap(),
            3
        );
    }
}

/// Calls into the guest, whose host function captures a backtrace. Never
/// inlined, so its frame (and name) is on the stack below the guest's.
#[inline(never)]
fn backtrace_embedder_frame_marker(store: &mut Store<Option<String>>, instance: Instance) -> i32 {
    let r = instance.call::<i32, i32>(store, "run", std::hint::black_box(3));
    std::hint::black_box(r.unwrap())
}

/// The host function: records a backtrace in the store's data.
#[inline(never)]
fn capture_backtrace_in_host(mut caller: Caller<'_, Option<String>>) -> i32 {
    *caller.data_mut() = Some(std::backtrace::Backtrace::force_capture().to_string());
    10
}

#[test]
fn backtrace_from_host_function_reaches_the_embedder() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (import "host" "capture" (func $capture (result i32)))
             (func $guest_inner (param i32) (result i32)
               (i32.add (call $capture) (local.get 0)))
             (func (export "run") (param i32) (result i32)
               (i32.add (call $guest_inner (local.get 0)) (i32.const 1))))"#,
    )
    .unwrap();
    let mut linker: Linker<Option<String>> = Linker::new(&engine);
    linker
        .func_wrap("host", "capture", capture_backtrace_in_host)
        .unwrap();
    let mut store = Store::new(&engine, None);
    let i = linker.instantiate(&mut store, &module).unwrap();
    assert_eq!(backtrace_embedder_frame_marker(&mut store, i), 14);
    let trace = store.data().clone().unwrap();
    assert!(
        trace.contains("backtrace_embedder_frame_marker"),
        "the backtrace does not reach the embedder's frame:\n{trace}"
    );
    // The host function's own frame is there too, above it.
    let marker = trace.find("backtrace_embedder_frame_marker").unwrap();
    let capture = trace
        .find("capture_backtrace_in_host")
        .unwrap_or_else(|| panic!("the host function's frame is missing:\n{trace}"));
    assert!(capture < marker, "{trace}");
}

#[test]
fn host_functions_with_many_mixed_parameters_and_results() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (import "host" "eight" (func $eight
               (param i32 i64 f32 f64 v128 externref i32 i64)
               (result i64 f64 i32 v128 externref)))
             (import "host" "five" (func $five (result i32 i32 i32 i32 i32)))
             (func (export "run") (param i32 i64 f32 f64 v128 externref i32 i64)
               (result i64 f64 i32 v128 externref)
               (call $eight (local.get 0) (local.get 1) (local.get 2) (local.get 3)
                            (local.get 4) (local.get 5) (local.get 6) (local.get 7)))
             (func (export "five") (result i32 i32 i32 i32 i32) (call $five))
             (func (export "twelve") (result i32 i64 i32 i64 i32 i64 i32 i64 i32 i64 f32 f64)
               (i32.const 1) (i64.const 2) (i32.const 3) (i64.const 4) (i32.const 5) (i64.const 6)
               (i32.const 7) (i64.const 8) (i32.const 9) (i64.const 10) (f32.const 11) (f64.const 12))
             (func (export "twenty") (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32
                                           i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
               (i32.add (i32.mul (local.get 0) (i32.const 1000)) (local.get 19))))"#,
    )
    .unwrap();
    let mut linker: Linker<()> = Linker::new(&engine);
    linker
        .func_wrap(
            "host",
            "eight",
            |a: i32,
             b: i64,
             c: f32,
             d: f64,
             e: V128,
             f: Option<ExternRef>,
             g: u32,
             h: u64|
             -> (i64, f64, i32, V128, Option<ExternRef>) {
                (
                    i64::from(a) + b + h as i64,
                    f64::from(c) * d,
                    g as i32 - 1,
                    V128(e.0.rotate_left(8)),
                    f,
                )
            },
        )
        .unwrap();
    linker
        .func_wrap("host", "five", || (1, 2, 3, 4, 5))
        .unwrap();
    let mut store = Store::new(&engine, ());
    let i = linker.instantiate(&mut store, &module).unwrap();
    let handle = ExternRef::new(NonZeroU64::new(u64::MAX).unwrap());
    let out = i
        .call::<
            (i32, i64, f32, f64, V128, Option<ExternRef>, u32, u64),
            (i64, f64, i32, V128, Option<ExternRef>),
        >(
            &mut store,
            "run",
            (-1, 1 << 40, 1.5, -4.0, V128(0xab << 120 | 1), Some(handle), 0, 7),
        )
        .unwrap();
    assert_eq!(
        out,
        ((1 << 40) + 6, -6.0, -1, V128(0xab | 1 << 8), Some(handle))
    );
    assert_eq!(
        i.call::<(), (i32, i32, i32, i32, i32)>(&mut store, "five", ())
            .unwrap(),
        (1, 2, 3, 4, 5)
    );
    let twelve = i.call_dynamic(&mut store, "twelve", &[]).unwrap();
    assert_eq!(twelve.len(), 12);
    assert_eq!(twelve[9], Val::I64(10));
    assert_eq!(twelve[10], Val::from(11.0f32));
    assert_eq!(twelve[11], Val::from(12.0f64));
    let args: Vec<Val> = (1..=20).map(Val::I32).collect();
    assert_eq!(
        i.call_dynamic(&mut store, "twenty", &args).unwrap(),
        vec![Val::I32(1020)]
    );
}

type Items = Option<(Memory, Table, Global, Func)>;

#[test]
fn host_grows_memory_and_table_and_sets_global_during_a_call() {
    // Compiled code must not cache a memory's length, a table's base and
    // length, or a global's value across a host call.
    for reservation in [4u64 << 30, 2 << 20] {
        let mut config = Config::new();
        config.memory_reservation(reservation);
        let engine = Engine::new(&config).unwrap();
        let module = Module::new(
            &engine,
            r#"(module
                 (import "host" "grow" (func $grow))
                 (memory (export "mem") 1)
                 (type $r (func (result i32)))
                 (table (export "tab") 1 funcref)
                 (global (export "g") (mut i32) (i32.const 1))
                 (func $k (export "k") (result i32) (i32.const 77))
                 (func (export "run") (result i32)
                   (drop (i32.load (i32.const 65532)))
                   (drop (global.get 0))
                   (drop (table.size 0))
                   (call $grow)
                   (i32.store (i32.const 70000) (i32.const 5))
                   (i32.add
                     (i32.add (i32.load (i32.const 70000)) (memory.size))
                     (i32.add
                       (global.get 0)
                       (i32.add (table.size 0) (call_indirect (type $r) (i32.const 3)))))))"#,
        )
        .unwrap();
        let mut linker: Linker<Items> = Linker::new(&engine);
        linker
            .func_wrap("host", "grow", |mut caller: Caller<'_, Items>| {
                let (memory, table, global, func) = caller.data().unwrap();
                memory.grow(&mut caller, 1).unwrap();
                table
                    .grow(&mut caller, 3, Val::FuncRef(Some(func)))
                    .unwrap();
                global.set(&mut caller, Val::I32(1000)).unwrap();
            })
            .unwrap();
        let mut store = Store::new(&engine, None);
        let i = linker.instantiate(&mut store, &module).unwrap();
        let items = (
            i.get_memory(&store, "mem").unwrap(),
            i.get_table(&store, "tab").unwrap(),
            i.get_global(&store, "g").unwrap(),
            i.get_func(&store, "k").unwrap(),
        );
        *store.data_mut() = Some(items);
        // 5 + 2 pages + 1000 + 4 elements + 77.
        assert_eq!(
            i.call::<(), i32>(&mut store, "run", ()).unwrap(),
            5 + 2 + 1000 + 4 + 77
        );
    }
}
