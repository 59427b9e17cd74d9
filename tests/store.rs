//! The store model: a `Store` owns everything guest code can touch, and
//! handles are `Copy` values usable only with their store. Using a handle
//! with another store fails or panics (never undefined behaviour), linking
//! across stores is refused, everything lives until the store drops, the
//! store's limits hold on instantiation and on every grow, a kill stops the
//! store's run in whichever instance it is, and a run suspended with
//! `Caller::suspend` stays on its thread.

use backstop::{
    Caller, Engine, Error, Extern, Global, GlobalType, KillOutcome, Linker, Memory, MemoryType,
    Module, Outcome, Store, StoreLimits, StoreState, Table, TableType, Val, ValType,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

mod common;
use common::linked::{EXPORTER, IMPORTER};
use common::{Counters, Guard};

fn engine_and_modules() -> (Engine, Module, Module) {
    let engine = Engine::default();
    let exporter = Module::new(&engine, EXPORTER).unwrap();
    let importer = Module::new(&engine, IMPORTER).unwrap();
    (engine, exporter, importer)
}

fn assert_send<T: Send>() {}
fn assert_send_sync_copy<T: Send + Sync + Copy>() {}

#[test]
fn stores_are_send_and_handles_are_plain_data() {
    assert_send::<Store<()>>();
    assert_send::<Store<Vec<u8>>>();
    assert_send_sync_copy::<backstop::Instance>();
    assert_send_sync_copy::<backstop::Func>();
    assert_send_sync_copy::<Memory>();
    assert_send_sync_copy::<Table>();
    assert_send_sync_copy::<Global>();
    assert_send_sync_copy::<backstop::TypedFunc<i32, i32>>();
    // `Store` is never `Sync`, `Caller` never `Send`: the doctests in
    // `src/lib.rs` show that those do not compile.
}

#[test]
fn linked_instances_share_one_store() {
    let (engine, exporter, importer) = engine_and_modules();
    let mut store = Store::new(&engine, ());
    let mut linker = Linker::new(&engine);
    let lib = linker.instantiate(&mut store, &exporter).unwrap();
    linker.instance(&store, "lib", lib).unwrap();
    let user = linker.instantiate(&mut store, &importer).unwrap();
    assert_eq!(user.call::<(), i32>(&mut store, "twice", ()).unwrap(), 2);
    assert_eq!(lib.call::<(), i32>(&mut store, "inc", ()).unwrap(), 3);
    // The shared memory, written through the exporter's handle.
    let memory = lib.get_memory(&store, "memory").unwrap();
    memory.write(&mut store, 0, &7u32.to_le_bytes()).unwrap();
    assert_eq!(user.call::<(), i32>(&mut store, "peek", ()).unwrap(), 7);
    assert_eq!(store.usage().instances, 2);
    assert_eq!(store.usage().memories, 1);
}

#[test]
fn linking_an_item_of_another_store_is_refused() {
    let (engine, exporter, importer) = engine_and_modules();
    let mut first = Store::new(&engine, ());
    let mut second = Store::new(&engine, ());
    let mut linker = Linker::new(&engine);
    let lib = linker.instantiate(&mut first, &exporter).unwrap();
    linker.instance(&first, "lib", lib).unwrap();
    match linker.instantiate(&mut second, &importer) {
        Err(Error::Link(message)) => assert!(message.contains("another store"), "{message}"),
        other => panic!("expected a link error, got {other:?}"),
    }
    // In its own store it links.
    linker.instantiate(&mut first, &importer).unwrap();
}

#[test]
fn handles_used_with_another_store_fail_or_panic() {
    let (engine, exporter, _) = engine_and_modules();
    let linker = Linker::new(&engine);
    let mut first = Store::new(&engine, ());
    let mut second = Store::new(&engine, ());
    let instance = linker.instantiate(&mut first, &exporter).unwrap();
    let memory = instance.get_memory(&first, "memory").unwrap();
    let table = instance.get_table(&first, "table").unwrap();
    let global = instance.get_global(&first, "counter").unwrap();
    let func = instance.get_func(&first, "inc").unwrap();
    let typed = instance.get_typed_func::<(), i32>(&first, "inc").unwrap();
    linker.instantiate(&mut second, &exporter).unwrap();

    // Methods that return a Result say so.
    let wrong = |result: Result<(), Error>| match result {
        Err(Error::InvalidArgument(message)) => {
            assert!(message.contains("another store"), "{message}")
        }
        other => panic!("expected an error, got {other:?}"),
    };
    wrong(memory.write(&mut second, 0, b"x"));
    wrong(memory.read(&second, 0, &mut [0]));
    wrong(memory.grow(&mut second, 1).map(drop));
    wrong(table.set(&mut second, 0, Val::FuncRef(None)));
    wrong(table.grow(&mut second, 1, Val::FuncRef(None)).map(drop));
    wrong(global.set(&mut second, Val::I32(1)));
    wrong(func.call(&mut second, &[]).map(drop));
    wrong(typed.call(&mut second, ()).map(drop));
    wrong(instance.call::<(), i32>(&mut second, "inc", ()).map(drop));
    wrong(instance.get_typed_func::<(), i32>(&second, "inc").map(drop));
    // A function reference of one store passed into another.
    wrong(
        Table::new(
            &mut second,
            TableType {
                element: ValType::FuncRef,
                minimum: 1,
                maximum: None,
            },
            Val::FuncRef(Some(func)),
        )
        .map(drop),
    );

    // The others panic with a message, and the stores stay usable.
    let panics = |f: &mut dyn FnMut()| {
        let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("a wrong store panics");
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        assert!(message.contains("does not belong to"), "{message}");
    };
    panics(&mut || {
        let _ = memory.data(&second);
    });
    panics(&mut || {
        let _ = memory.size_pages(&second);
    });
    panics(&mut || {
        let _ = table.get(&second, 0);
    });
    panics(&mut || {
        let _ = global.get(&second);
    });
    panics(&mut || {
        let _ = func.ty(&second);
    });
    panics(&mut || {
        let _ = instance.get_func(&second, "inc");
    });
    assert_eq!(typed.call(&mut first, ()).unwrap(), 1);
}

#[test]
fn function_references_stay_valid_for_the_stores_life() {
    let (engine, exporter, _) = engine_and_modules();
    let linker = Linker::new(&engine);
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &exporter).unwrap();
    let table = instance.get_table(&store, "table").unwrap();
    // A funcref read from a table the guest filled, kept by the host while
    // more instances come and go in the store.
    let Some(Val::FuncRef(Some(inc))) = table.get(&store, 0) else {
        panic!("element 0 is $inc");
    };
    for _ in 0..10 {
        linker.instantiate(&mut store, &exporter).unwrap();
    }
    assert_eq!(inc.call(&mut store, &[]).unwrap(), vec![Val::I32(1)]);
    // Stored by the host in a table of its own, called from it.
    let host_table = Table::new(
        &mut store,
        TableType {
            element: ValType::FuncRef,
            minimum: 1,
            maximum: None,
        },
        Val::FuncRef(Some(inc)),
    )
    .unwrap();
    let Some(Val::FuncRef(Some(again))) = host_table.get(&store, 0) else {
        panic!("the element is set");
    };
    assert_eq!(again, inc);
    assert_eq!(again.call(&mut store, &[]).unwrap(), vec![Val::I32(2)]);
}

#[test]
fn memory_limits_hold_on_instantiation_and_every_grow() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (memory (export "memory") 2 100)
             (func (export "grow") (param i32) (result i32)
               (memory.grow (local.get 0))))"#,
    )
    .unwrap();
    let linker = Linker::new(&engine);
    let mut store = Store::new(&engine, ());
    store.set_limits(StoreLimits::new().memory_bytes(4 * 65536));
    let instance = linker.instantiate(&mut store, &module).unwrap();
    assert_eq!(store.usage().memory_bytes, 2 * 65536);
    // Guest growth within the limit works, past it returns -1.
    assert_eq!(instance.call::<i32, i32>(&mut store, "grow", 1).unwrap(), 2);
    assert_eq!(
        instance.call::<i32, i32>(&mut store, "grow", 2).unwrap(),
        -1
    );
    assert_eq!(instance.call::<i32, i32>(&mut store, "grow", 1).unwrap(), 3);
    assert_eq!(
        instance.call::<i32, i32>(&mut store, "grow", 1).unwrap(),
        -1
    );
    // So does the host's.
    let memory = instance.get_memory(&store, "memory").unwrap();
    assert!(matches!(
        memory.grow(&mut store, 1),
        Err(Error::Resource(_))
    ));
    assert_eq!(memory.size_pages(&store), 4);
    // A second instance would need 2 more pages: refused, nothing made.
    match linker.instantiate(&mut store, &module) {
        Err(Error::Resource(message)) => assert!(message.contains("limit"), "{message}"),
        other => panic!("expected a resource error, got {other:?}"),
    }
    // Reset gives the grown pages back to the count.
    store.reset().unwrap();
    assert_eq!(store.usage().memory_bytes, 2 * 65536);
    assert_eq!(instance.call::<i32, i32>(&mut store, "grow", 2).unwrap(), 2);
}

#[test]
fn table_and_count_limits_hold() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (table (export "t") 10 1000 funcref)
             (func (export "grow") (param i32) (result i32)
               (table.grow (ref.null func) (local.get 0))))"#,
    )
    .unwrap();
    let linker = Linker::new(&engine);
    let mut store = Store::new(&engine, ());
    store.set_limits(StoreLimits::new().table_elements(25).instances(2).tables(2));
    let instance = linker.instantiate(&mut store, &module).unwrap();
    assert_eq!(
        instance.call::<i32, i32>(&mut store, "grow", 10).unwrap(),
        10
    );
    assert_eq!(
        instance.call::<i32, i32>(&mut store, "grow", 6).unwrap(),
        -1
    );
    assert_eq!(
        instance.call::<i32, i32>(&mut store, "grow", 5).unwrap(),
        20
    );
    // No room for a second table of 10 elements.
    assert!(matches!(
        linker.instantiate(&mut store, &module),
        Err(Error::Resource(_))
    ));
    let mut store = Store::new(&engine, ());
    store.set_limits(StoreLimits::new().instances(2).memories(0));
    linker.instantiate(&mut store, &module).unwrap();
    linker.instantiate(&mut store, &module).unwrap();
    match linker.instantiate(&mut store, &module) {
        Err(Error::Resource(message)) => assert!(message.contains("instances"), "{message}"),
        other => panic!("expected a resource error, got {other:?}"),
    }
    assert!(matches!(
        Memory::new(
            &mut store,
            MemoryType {
                minimum: 1,
                maximum: None
            }
        ),
        Err(Error::Resource(_))
    ));
    assert_eq!(store.usage().instances, 2);
}

#[test]
fn a_kill_stops_the_stores_run_in_whichever_instance_it_is() {
    let (engine, exporter, importer) = engine_and_modules();
    let mut store = Store::new(&engine, ());
    let mut linker = Linker::new(&engine);
    let lib = linker.instantiate(&mut store, &exporter).unwrap();
    linker.instance(&store, "lib", lib).unwrap();
    let user = linker.instantiate(&mut store, &importer).unwrap();
    let switch = store.kill_switch();
    let killer = std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_millis(5));
        if switch.terminate() == KillOutcome::Interrupted {
            break;
        }
    });
    // The importer calls into the exporter's endless loop.
    assert!(matches!(
        user.call::<(), ()>(&mut store, "spin_there", ()),
        Err(Error::Killed)
    ));
    killer.join().unwrap();
    assert_eq!(user.call::<(), i32>(&mut store, "twice", ()).unwrap(), 2);
}

/// A store whose host function `wait` holds a guard and suspends, pinned
/// or not as its data says.
fn suspending_store(engine: &Engine, unpinned: bool) -> (Store<Arc<Counters>>, backstop::Instance) {
    let module = Module::new(
        engine,
        r#"(module
             (import "host" "wait" (func $wait (result i32)))
             (func (export "run") (result i32) (call $wait)))"#,
    )
    .unwrap();
    let mut linker: Linker<Arc<Counters>> = Linker::new(engine);
    linker
        .func_wrap(
            "host",
            "wait",
            move |mut caller: Caller<'_, Arc<Counters>>| -> i32 {
                let _guard = Guard::new(caller.data());
                if unpinned {
                    // SAFETY: this frame holds only a `Guard` (an `Arc`), which
                    // is `Send`, and no other host frame is on the stack.
                    unsafe { caller.suspend_unpinned::<i32>("waiting") }
                } else {
                    caller.suspend::<i32>("waiting")
                }
            },
        )
        .unwrap();
    let mut store = Store::new(engine, Arc::new(Counters::default()));
    let instance = linker.instantiate(&mut store, &module).unwrap();
    (store, instance)
}

#[test]
fn a_pinned_suspension_resumes_only_on_its_thread() {
    let engine = Engine::default();
    let (mut store, instance) = suspending_store(&engine, false);
    assert!(matches!(
        instance
            .call_resumable::<(), i32>(&mut store, "run", ())
            .unwrap(),
        Outcome::Yielded(_)
    ));
    // The store moves to another thread, which cannot resume or reset it.
    let mut store = std::thread::spawn(move || {
        match store.resume::<i32>(1) {
            Err(Error::InstanceState(message)) => {
                assert!(message.contains("another thread"), "{message}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(matches!(store.reset(), Err(Error::InstanceState(_))));
        assert_eq!(store.state(), StoreState::Suspended);
        store
    })
    .join()
    .unwrap();
    // Back home it resumes, and the frame cleans up.
    assert!(matches!(
        store.resume::<i32>(5).unwrap(),
        Outcome::Returned(5)
    ));
    assert_eq!(store.data().alive(), 0);
    assert_eq!(store.data().created.load(Ordering::SeqCst), 1);
}

#[test]
fn an_unpinned_suspension_resumes_anywhere() {
    let engine = Engine::default();
    let (mut store, instance) = suspending_store(&engine, true);
    for round in 0..10 {
        assert!(matches!(
            instance
                .call_resumable::<(), i32>(&mut store, "run", ())
                .unwrap(),
            Outcome::Yielded(_)
        ));
        store = std::thread::spawn(move || {
            assert!(matches!(
                store.resume::<i32>(round).unwrap(),
                Outcome::Returned(r) if r == round
            ));
            store
        })
        .join()
        .unwrap();
    }
    assert_eq!(store.data().alive(), 0);
    // Dropped on another thread while suspended: unwound there.
    assert!(matches!(
        instance
            .call_resumable::<(), i32>(&mut store, "run", ())
            .unwrap(),
        Outcome::Yielded(_)
    ));
    let counters = store.data().clone();
    std::thread::spawn(move || drop(store)).join().unwrap();
    assert_eq!(counters.alive(), 0);
}

#[test]
fn a_pinned_suspension_dropped_elsewhere_is_abandoned_not_run() {
    let engine = Engine::default();
    let (mut store, instance) = suspending_store(&engine, false);
    assert!(matches!(
        instance
            .call_resumable::<(), i32>(&mut store, "run", ())
            .unwrap(),
        Outcome::Yielded(_)
    ));
    let counters = store.data().clone();
    std::thread::spawn(move || drop(store)).join().unwrap();
    // The frame's guard was not dropped on the wrong thread: its frame was
    // abandoned with the stack (documented in `Caller::suspend`).
    assert_eq!(counters.alive(), 1);
}

#[test]
fn a_store_holds_host_made_items() {
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
        Val::I64(-3),
    )
    .unwrap();
    let module = Module::new(
        &engine,
        r#"(module
             (import "env" "m" (memory 1 2))
             (import "env" "g" (global (mut i64)))
             (func (export "bump")
               (global.set 0 (i64.add (global.get 0) (i64.const 1)))
               (i64.store (i32.const 8) (global.get 0))))"#,
    )
    .unwrap();
    let mut linker = Linker::new(&engine);
    linker.define("env", "m", memory).unwrap();
    linker.define("env", "g", global).unwrap();
    let instance = linker.instantiate(&mut store, &module).unwrap();
    instance.call::<(), ()>(&mut store, "bump", ()).unwrap();
    assert_eq!(global.get(&store), Val::I64(-2));
    assert_eq!(memory.data(&store)[8..16], (-2i64).to_le_bytes());
    let exports = instance.exports(&store);
    assert!(matches!(exports[..], [(ref name, Extern::Func(_))] if name == "bump"));
}
