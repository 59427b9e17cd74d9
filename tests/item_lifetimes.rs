//! Lifetimes of instances, functions, tables and globals that outlive the
//! handles they came from: a `Func` keeps its instance alive; a table or
//! global holding function references keeps the functions' instances alive
//! (no use after free); and dropping instances that import tables or
//! globals frees them (no reference cycle leaking their memories).
//!
//! The tests run one at a time (a lock), because the leak checks count the
//! process's memory mappings. Some ignored tests are use-after-free repros
//! that may crash the whole test process: run them one by one
//! (`cargo test --release --test item_lifetimes -- --ignored NAME`).

use backstop::{
    Engine, Extern, Global, GlobalType, Instance, Linker, Module, Table, TableType, Val, ValType,
};
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn instantiate(engine: &Engine, wat: &str) -> Instance<()> {
    let module = Module::new(engine, wat).unwrap();
    Linker::new(engine).instantiate(&module, ()).unwrap()
}

/// Number of memory mappings of this process.
fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

/// Compiles and runs throw-away modules, so freed code and vmctx memory
/// gets reused.
fn churn(engine: &Engine) {
    let mut junk = Vec::new();
    for n in 0..50 {
        let mut i = instantiate(
            engine,
            &format!(r#"(module (memory 1) (func (export "x") (result i32) (i32.const {n})))"#),
        );
        assert_eq!(i.call::<(), i32>("x", ()).unwrap(), n);
        junk.push(vec![0xaau8; 4096]);
    }
}

/// A module whose exported table and funcref global hold its own function,
/// which uses its own global.
const OWNER_WAT: &str = r#"
(module
  (global $count (mut i32) (i32.const 41))
  (table (export "table") 2 funcref)
  (elem (i32.const 0) $bump)
  (func $bump (export "bump") (result i32)
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (global.get $count))
  (global (export "ref") funcref (ref.func $bump)))
"#;

/// Calls element 0 of an imported table.
const USER_WAT: &str = r#"
(module
  (import "a" "table" (table 2 funcref))
  (type $r (func (result i32)))
  (func (export "run") (result i32) (call_indirect (type $r) (i32.const 0))))
"#;

#[test]
fn func_handle_keeps_its_instance_alive() {
    let _serial = serial();
    let engine = Engine::default();
    let owner = instantiate(&engine, OWNER_WAT);
    let bump = owner.get_func("bump").unwrap();
    let table = owner.get_table("table").unwrap();
    drop(owner);
    churn(&engine);
    let mut other = instantiate(&engine, r#"(module (func (export "n")))"#);
    assert_eq!(other.call_func(&bump, &[]).unwrap(), vec![Val::I32(42)]);
    // While `bump` lives, the table's element is usable too.
    assert_eq!(table.get(0), Some(Val::FuncRef(Some(bump.clone()))));
    let mut user = {
        let module = Module::new(&engine, USER_WAT).unwrap();
        let mut linker = Linker::new(&engine);
        linker.define("a", "table", table).unwrap();
        linker.instantiate(&module, ()).unwrap()
    };
    assert_eq!(user.call::<(), i32>("run", ()).unwrap(), 43);
}

#[test]
fn linked_functions_keep_their_instance_alive() {
    let _serial = serial();
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (import "a" "bump" (func $bump (result i32)))
             (func (export "run") (result i32) (call $bump)))"#,
    )
    .unwrap();
    let mut linker = Linker::new(&engine);
    {
        let owner = instantiate(&engine, OWNER_WAT);
        linker.instance("a", &owner).unwrap();
    }
    let mut user = linker.instantiate(&module, ()).unwrap();
    drop(linker);
    churn(&engine);
    assert_eq!(user.call::<(), i32>("run", ()).unwrap(), 42);
    assert_eq!(user.call::<(), i32>("run", ()).unwrap(), 43);
}

#[test]
fn table_outliving_its_instance_calls_live_code() {
    let _serial = serial();
    let engine = Engine::default();
    let table = instantiate(&engine, OWNER_WAT).get_table("table").unwrap();
    churn(&engine);
    let module = Module::new(&engine, USER_WAT).unwrap();
    let mut linker = Linker::new(&engine);
    linker.define("a", "table", table).unwrap();
    let mut user = linker.instantiate(&module, ()).unwrap();
    assert_eq!(
        user.call::<(), i32>("run", ()).map_err(|e| e.to_string()),
        Ok(42)
    );
}

#[test]
fn table_get_after_the_elements_instance_is_dropped() {
    let _serial = serial();
    let engine = Engine::default();
    let owner = instantiate(&engine, OWNER_WAT);
    let table = owner.get_table("table").unwrap();
    drop(owner);
    churn(&engine);
    match table.get(0) {
        Some(Val::FuncRef(Some(f))) => {
            let mut other = instantiate(&engine, r#"(module (func (export "n")))"#);
            assert_eq!(other.call_func(&f, &[]).unwrap(), vec![Val::I32(42)]);
        }
        other => panic!("expected the function, got {other:?}"),
    }
}

#[test]
fn funcref_global_outliving_its_instance() {
    let _serial = serial();
    let engine = Engine::default();
    let global = instantiate(&engine, OWNER_WAT).get_global("ref").unwrap();
    churn(&engine);
    match global.get() {
        Val::FuncRef(Some(f)) => {
            let mut other = instantiate(&engine, r#"(module (func (export "n")))"#);
            assert_eq!(other.call_func(&f, &[]).unwrap(), vec![Val::I32(42)]);
        }
        other => panic!("expected the function, got {other:?}"),
    }
}

/// Mappings added by instantiating and dropping `module` 50 times (after a
/// first instance, to warm up allocators).
fn mappings_leaked(linker: &Linker<()>, module: &Module) -> usize {
    drop(linker.instantiate(module, ()).unwrap());
    let before = mappings();
    for _ in 0..50 {
        drop(linker.instantiate(module, ()).unwrap());
    }
    mappings().saturating_sub(before)
}

#[test]
fn dropped_instances_free_their_memories() {
    let _serial = serial();
    let engine = Engine::default();
    let linker: Linker<()> = Linker::new(&engine);
    let module = Module::new(
        &engine,
        r#"(module (memory 1) (table 1 funcref) (func $f) (elem (i32.const 0) $f)
                   (global funcref (ref.func $f)))"#,
    )
    .unwrap();
    // Each instance maps a memory reservation and a guest stack: leaking
    // them would add about 100 mappings.
    assert!(mappings_leaked(&linker, &module) < 10);
}

/// Instances that import a funcref table or global join its link group: it
/// may hold their function references, so they live as long as it does, and
/// are freed with it.
fn importers_live_as_long_as_the_shared_item_in(engine: &Engine, item: Extern, import: &str) {
    let _serial = serial();
    let before = mappings();
    {
        let mut linker: Linker<()> = Linker::new(engine);
        linker.define("h", "x", item).unwrap();
        let module = Module::new(engine, format!("(module {import} (memory 1))")).unwrap();
        let kept = mappings_leaked(&linker, &module);
        assert!(
            kept >= 50,
            "importers are kept while the item lives ({kept} mappings)"
        );
    }
    let leaked = mappings().saturating_sub(before);
    assert!(
        leaked < 10,
        "{leaked} mappings leaked after the item was dropped"
    );
}

#[test]
fn instances_importing_a_funcref_table_are_freed_with_it() {
    let engine = Engine::default();
    let table = Table::new(
        &engine,
        TableType {
            element: ValType::FuncRef,
            minimum: 1,
            maximum: None,
        },
        Val::FuncRef(None),
    )
    .unwrap();
    importers_live_as_long_as_the_shared_item_in(
        &engine,
        Extern::Table(table),
        r#"(import "h" "x" (table 1 funcref))"#,
    );
}

#[test]
fn instances_importing_a_funcref_global_are_freed_with_it() {
    let engine = Engine::default();
    let global = Global::new(
        &engine,
        GlobalType {
            content: ValType::FuncRef,
            mutable: true,
        },
        Val::FuncRef(None),
    )
    .unwrap();
    importers_live_as_long_as_the_shared_item_in(
        &engine,
        Extern::Global(global),
        r#"(import "h" "x" (global (mut funcref)))"#,
    );
}

#[test]
fn instances_importing_an_i32_global_are_freed() {
    let _serial = serial();
    let engine = Engine::default();
    let global = Global::new(
        &engine,
        GlobalType {
            content: ValType::I32,
            mutable: true,
        },
        Val::I32(0),
    )
    .unwrap();
    let mut linker: Linker<()> = Linker::new(&engine);
    linker.define("h", "g", global).unwrap();
    let module = Module::new(
        &engine,
        r#"(module (import "h" "g" (global (mut i32))) (memory 1) (table 1 funcref))"#,
    )
    .unwrap();
    let leaked = mappings_leaked(&linker, &module);
    assert!(leaked < 10, "{leaked} mappings leaked by 50 instances");
}

#[test]
fn funcref_stored_by_guest_code_into_another_instances_table() {
    let _serial = serial();
    let engine = Engine::default();
    let keeper_module = Module::new(
        &engine,
        r#"(module
             (type $r (func (result i32)))
             (table 1 funcref)
             (func (export "store") (param funcref) (table.set 0 (i32.const 0) (local.get 0)))
             (func (export "run") (result i32) (call_indirect (type $r) (i32.const 0))))"#,
    )
    .unwrap();
    let mut keeper = Linker::<()>::new(&engine)
        .instantiate(&keeper_module, ())
        .unwrap();
    {
        let giver_module = Module::new(
            &engine,
            r#"(module
                 (import "k" "store" (func $store (param funcref)))
                 (global $count (mut i32) (i32.const 41))
                 (func $bump (result i32)
                   (global.set $count (i32.add (global.get $count) (i32.const 1)))
                   (global.get $count))
                 (elem declare func $bump)
                 (func (export "give") (call $store (ref.func $bump))))"#,
        )
        .unwrap();
        let mut linker = Linker::new(&engine);
        linker.instance("k", &keeper).unwrap();
        let mut giver = linker.instantiate(&giver_module, ()).unwrap();
        giver.call::<(), ()>("give", ()).unwrap();
        assert_eq!(keeper.call::<(), i32>("run", ()).unwrap(), 42);
    }
    churn(&engine);
    assert_eq!(
        keeper.call::<(), i32>("run", ()).map_err(|e| e.to_string()),
        Ok(43)
    );
}
