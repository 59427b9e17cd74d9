//! Lifetimes of instances, functions, tables and globals in the store
//! model. These tests used to check link groups (which instances were freed
//! together, and that a `Func`, table or global kept its instance alive).
//! Link groups are gone: a `Store` keeps every instance and item until it
//! drops. So each test now checks the store-model form of the same concern:
//! a function reference (a `Func` from an export, a table element, a
//! funcref global, one stored by guest code into another instance's table)
//! stays valid and callable for the store's whole life, after the handle of
//! its instance is gone and while other instances come into the store and
//! other stores come and go (no use after free); items linked between
//! instances of one store work; and dropping the store frees every instance
//! and item in it, including instances importing a funcref table or global
//! (the process's memory mappings return to the baseline, no leak).
//!
//! The tests run one at a time (a lock), because the leak checks count the
//! process's memory mappings.

use backstop::{
    Engine, Error, Extern, Global, GlobalType, Instance, Linker, Module, Store, Table, TableType,
    Val, ValType,
};
use std::sync::Mutex;

mod common;
use common::mapping_count;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn instantiate(store: &mut Store<()>, wat: &str) -> Instance {
    let module = Module::new(store.engine(), wat).unwrap();
    Linker::new(store.engine())
        .instantiate(store, &module)
        .unwrap()
}

/// Compiles and runs throw-away modules: some in `store` (other instances
/// coming into it), most in throw-away stores that are dropped at once, so
/// freed code, vmctx and memory gets reused (a reference of `store` that
/// pointed into freed memory would then see it overwritten).
fn churn(store: &mut Store<()>) {
    let engine = store.engine().clone();
    let mut junk = Vec::new();
    for n in 0..50 {
        let wat =
            format!(r#"(module (memory 1) (func (export "x") (result i32) (i32.const {n})))"#);
        let mut other = Store::new(&engine, ());
        let i = instantiate(&mut other, &wat);
        assert_eq!(i.call::<(), i32>(&mut other, "x", ()).unwrap(), n);
        drop(other);
        if n % 10 == 0 {
            let i = instantiate(store, &wat);
            assert_eq!(i.call::<(), i32>(&mut *store, "x", ()).unwrap(), n);
        }
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

/// Instantiates `USER_WAT` in `store`, importing `table`.
fn user_of(store: &mut Store<()>, table: Table) -> Result<Instance, Error> {
    let module = Module::new(store.engine(), USER_WAT).unwrap();
    let mut linker = Linker::new(store.engine());
    linker.define("a", "table", table).unwrap();
    linker.instantiate(store, &module)
}

#[test]
fn func_handle_stays_valid_for_the_stores_life() {
    let _serial = serial();
    let engine = Engine::default();
    let mut store = Store::new(&engine, ());
    // Only the function and table handles are kept, not the instance's.
    let (bump, table) = {
        let owner = instantiate(&mut store, OWNER_WAT);
        (
            owner.get_func(&store, "bump").unwrap(),
            owner.get_table(&store, "table").unwrap(),
        )
    };
    churn(&mut store);
    instantiate(&mut store, r#"(module (func (export "n")))"#);
    assert_eq!(bump.call(&mut store, &[]).unwrap(), vec![Val::I32(42)]);
    // The table's element is the same function, and usable too.
    assert_eq!(table.get(&store, 0), Some(Val::FuncRef(Some(bump))));
    let user = user_of(&mut store, table).unwrap();
    assert_eq!(user.call::<(), i32>(&mut store, "run", ()).unwrap(), 43);
}

#[test]
fn linked_functions_stay_valid_for_the_stores_life() {
    let _serial = serial();
    let engine = Engine::default();
    let mut store = Store::new(&engine, ());
    let module = Module::new(
        &engine,
        r#"(module
             (import "a" "bump" (func $bump (result i32)))
             (func (export "run") (result i32) (call $bump)))"#,
    )
    .unwrap();
    let mut linker = Linker::new(&engine);
    {
        let owner = instantiate(&mut store, OWNER_WAT);
        linker.instance(&store, "a", owner).unwrap();
    }
    let user = linker.instantiate(&mut store, &module).unwrap();
    drop(linker);
    churn(&mut store);
    assert_eq!(user.call::<(), i32>(&mut store, "run", ()).unwrap(), 42);
    assert_eq!(user.call::<(), i32>(&mut store, "run", ()).unwrap(), 43);
}

#[test]
fn table_outliving_its_instance_handle_calls_live_code() {
    let _serial = serial();
    let engine = Engine::default();
    let mut store = Store::new(&engine, ());
    let table = instantiate(&mut store, OWNER_WAT)
        .get_table(&store, "table")
        .unwrap();
    churn(&mut store);
    let user = user_of(&mut store, table).unwrap();
    assert_eq!(
        user.call::<(), i32>(&mut store, "run", ())
            .map_err(|e| e.to_string()),
        Ok(42)
    );
    // The table links only into its own store.
    let mut other = Store::new(&engine, ());
    assert!(matches!(user_of(&mut other, table), Err(Error::Link(_))));
}

#[test]
fn table_get_after_the_elements_instance_handle_is_gone() {
    let _serial = serial();
    let engine = Engine::default();
    let mut store = Store::new(&engine, ());
    let table = {
        let owner = instantiate(&mut store, OWNER_WAT);
        owner.get_table(&store, "table").unwrap()
    };
    churn(&mut store);
    match table.get(&store, 0) {
        Some(Val::FuncRef(Some(f))) => {
            instantiate(&mut store, r#"(module (func (export "n")))"#);
            assert_eq!(f.call(&mut store, &[]).unwrap(), vec![Val::I32(42)]);
        }
        other => panic!("expected the function, got {other:?}"),
    }
}

#[test]
fn funcref_global_outliving_its_instance_handle() {
    let _serial = serial();
    let engine = Engine::default();
    let mut store = Store::new(&engine, ());
    let global = instantiate(&mut store, OWNER_WAT)
        .get_global(&store, "ref")
        .unwrap();
    churn(&mut store);
    match global.get(&store) {
        Val::FuncRef(Some(f)) => {
            instantiate(&mut store, r#"(module (func (export "n")))"#);
            assert_eq!(f.call(&mut store, &[]).unwrap(), vec![Val::I32(42)]);
        }
        other => panic!("expected the function, got {other:?}"),
    }
}

/// Instantiates `module` 50 times in one store, each importing what
/// `define` puts into a linker of that store, after a first store (to warm
/// up allocators). Returns the mappings added while the store lives (its
/// instances are all kept) and those left once it is dropped (leaked).
fn mappings_kept_and_leaked(
    engine: &Engine,
    module: &Module,
    define: impl Fn(&mut Store<()>, &mut Linker<()>),
) -> (usize, usize) {
    let fill = |count: usize| {
        let mut store = Store::new(engine, ());
        let mut linker = Linker::new(engine);
        define(&mut store, &mut linker);
        for _ in 0..count {
            linker.instantiate(&mut store, module).unwrap();
        }
        store
    };
    drop(fill(1));
    let before = mapping_count();
    let store = fill(50);
    let kept = mapping_count().saturating_sub(before);
    drop(store);
    (kept, mapping_count().saturating_sub(before))
}

#[test]
fn dropped_stores_free_their_instances_memories() {
    let _serial = serial();
    let engine = Engine::default();
    let linker: Linker<()> = Linker::new(&engine);
    let module = Module::new(
        &engine,
        r#"(module (memory 1) (table 1 funcref) (func $f) (elem (i32.const 0) $f)
                   (global funcref (ref.func $f)))"#,
    )
    .unwrap();
    // One instance per store: each store maps a memory reservation (with
    // its guest stack in it); leaking them would add at least 50 mappings.
    drop(Store::new(&engine, ()));
    {
        let mut store = Store::new(&engine, ());
        linker.instantiate(&mut store, &module).unwrap();
    }
    let before = mapping_count();
    for _ in 0..50 {
        let mut store = Store::new(&engine, ());
        linker.instantiate(&mut store, &module).unwrap();
    }
    let leaked = mapping_count().saturating_sub(before);
    assert!(leaked < 10, "{leaked} mappings leaked by 50 stores");
    // Fifty instances in one store: all kept while it lives, all freed
    // when it drops.
    let (kept, leaked) = mappings_kept_and_leaked(&engine, &module, |_, _| {});
    assert!(
        kept >= 50,
        "instances are kept while the store lives ({kept})"
    );
    assert!(
        leaked < 10,
        "{leaked} mappings leaked after the store dropped"
    );
}

/// Instances importing an item the host made in their store (a funcref
/// table or global, which may hold their function references) live as
/// long as the store, and are freed with it.
fn importers_live_as_long_as_their_store(
    make_item: impl Fn(&mut Store<()>) -> Extern,
    import: &str,
) {
    let _serial = serial();
    let engine = Engine::default();
    let module = Module::new(&engine, format!("(module {import} (memory 1))")).unwrap();
    let (kept, leaked) = mappings_kept_and_leaked(&engine, &module, |store, linker| {
        let item = make_item(store);
        linker.define("h", "x", item).unwrap();
    });
    assert!(
        kept >= 50,
        "importers are kept while the store lives ({kept} mappings)"
    );
    assert!(
        leaked < 10,
        "{leaked} mappings leaked after the store was dropped"
    );
}

#[test]
fn instances_importing_a_funcref_table_are_freed_with_the_store() {
    importers_live_as_long_as_their_store(
        |store| {
            let ty = TableType {
                element: ValType::FuncRef,
                minimum: 1,
                maximum: None,
            };
            Extern::Table(Table::new(store, ty, Val::FuncRef(None)).unwrap())
        },
        r#"(import "h" "x" (table 1 funcref))"#,
    );
}

#[test]
fn instances_importing_a_funcref_global_are_freed_with_the_store() {
    importers_live_as_long_as_their_store(
        |store| {
            let ty = GlobalType {
                content: ValType::FuncRef,
                mutable: true,
            };
            Extern::Global(Global::new(store, ty, Val::FuncRef(None)).unwrap())
        },
        r#"(import "h" "x" (global (mut funcref)))"#,
    );
}

#[test]
fn instances_importing_an_i32_global_are_freed_with_the_store() {
    let _serial = serial();
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module (import "h" "g" (global (mut i32))) (memory 1) (table 1 funcref))"#,
    )
    .unwrap();
    let (kept, leaked) = mappings_kept_and_leaked(&engine, &module, |store, linker| {
        let ty = GlobalType {
            content: ValType::I32,
            mutable: true,
        };
        let global = Global::new(store, ty, Val::I32(0)).unwrap();
        linker.define("h", "g", global).unwrap();
    });
    assert!(
        kept >= 50,
        "instances are kept while the store lives ({kept})"
    );
    assert!(leaked < 10, "{leaked} mappings leaked by 50 instances");
}

#[test]
fn funcref_stored_by_guest_code_into_another_instances_table() {
    let _serial = serial();
    let engine = Engine::default();
    let mut store = Store::new(&engine, ());
    let keeper_module = Module::new(
        &engine,
        r#"(module
             (type $r (func (result i32)))
             (table 1 funcref)
             (func (export "store") (param funcref) (table.set 0 (i32.const 0) (local.get 0)))
             (func (export "run") (result i32) (call_indirect (type $r) (i32.const 0))))"#,
    )
    .unwrap();
    let keeper = Linker::<()>::new(&engine)
        .instantiate(&mut store, &keeper_module)
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
        linker.instance(&store, "k", keeper).unwrap();
        let giver = linker.instantiate(&mut store, &giver_module).unwrap();
        giver.call::<(), ()>(&mut store, "give", ()).unwrap();
        assert_eq!(keeper.call::<(), i32>(&mut store, "run", ()).unwrap(), 42);
    }
    churn(&mut store);
    assert_eq!(
        keeper
            .call::<(), i32>(&mut store, "run", ())
            .map_err(|e| e.to_string()),
        Ok(43)
    );
}
