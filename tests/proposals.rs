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
