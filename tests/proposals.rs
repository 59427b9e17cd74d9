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
