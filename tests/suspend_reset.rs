//! Yield and resume (`Caller::suspend`, `Store::resume`), reset, and
//! every transition of the store's state machine (`StoreState`):
//! suspending at any nesting depth keeps every frame alive; resuming
//! continues them (a run suspended with `Caller::suspend` only on its own
//! thread, even with a `MutexGuard` held across the suspension; one
//! suspended with `Caller::suspend_unpinned` on any thread); dropping,
//! resetting or killing a suspended store unwinds them, running every
//! destructor; `Store::reset` restores memories, tables and globals.

use backstop::{
    Caller, Engine, Error, Instance, KillOutcome, Linker, Module, Outcome, Store, StoreState,
};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

mod common;
use common::{Counters, Guard};

struct Host {
    counters: Arc<Counters>,
    lock: Arc<Mutex<u32>>,
    /// Whether the bottom frame suspends with `Caller::suspend` (holding the
    /// lock's guard across the suspension) or, if false, with
    /// `Caller::suspend_unpinned` (holding only `Send` values).
    pinned: bool,
}

const GUEST: &str = r#"
    (module
      (import "host" "down" (func $down (param i32) (result i32)))
      (memory (export "memory") 1 4)
      (global $g (export "g") (mut i32) (i32.const 5))
      (table (export "t") 2 funcref)
      (elem (i32.const 0) $run)
      (data (i32.const 16) "init")
      (func $run (export "run") (param i32) (result i32)
        (i32.add (call $down (local.get 0)) (i32.const 1)))
      (func (export "scribble")
        (i32.store (i32.const 16) (i32.const 0x44434241))
        (i32.store (i32.const 60000) (i32.const 7))
        (drop (memory.grow (i32.const 2)))
        (global.set $g (i32.const 99))
        (table.set (i32.const 1) (ref.func $run))
        (table.set (i32.const 0) (ref.null func)))
      (func (export "probe") (result i32 i32 i32 i32)
        (i32.load (i32.const 16))
        (memory.size)
        (global.get $g)
        (i32.add (ref.is_null (table.get (i32.const 0)))
                 (i32.shl (ref.is_null (table.get (i32.const 1))) (i32.const 1))))
      (func (export "boom") unreachable))
"#;

/// `down(depth)`: holds a guard in every frame; at depth 0 suspends with
/// the depth and returns what it is resumed with. A pinned store's bottom
/// frame holds the shared lock across the suspension; an unpinned one only
/// reads it, and holds nothing tied to its thread when it suspends.
fn setup_with(pinned: bool) -> (Store<Host>, Instance, Arc<Counters>, Arc<Mutex<u32>>) {
    let engine = Engine::default();
    let module = Module::new(&engine, GUEST).unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap(
            "host",
            "down",
            |mut caller: Caller<'_, Host>, depth: i32| -> Result<i32, Error> {
                let _guard = Guard::new(&caller.data().counters);
                if depth > 0 {
                    return caller.call::<i32, i32>("run", depth - 1);
                }
                let lock = caller.data().lock.clone();
                if !caller.data().pinned {
                    // The `MutexGuard` is a temporary, released at the `;`.
                    let value = *lock.lock().unwrap();
                    drop(lock);
                    // SAFETY: every host frame on the guest stack (this one
                    // and the `down` frames above it, in nested calls) holds
                    // only a `Guard` (an `Arc`, `Send`) and its `Caller` (the
                    // store's own pointers, which move with the store): no
                    // `MutexGuard`, `Rc` or thread-local reference lives
                    // across the suspension.
                    let resumed: i32 =
                        unsafe { caller.suspend_unpinned(format!("depth 0 of {value}")) };
                    return Ok(resumed);
                }
                // An unwind through this frame (drop, reset or kill while
                // suspended) poisons the lock: the documented remedy.
                let held = lock
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let resumed: i32 = caller.suspend(format!("depth 0 of {}", *held));
                Ok(resumed)
            },
        )
        .unwrap();
    let counters = Arc::new(Counters::default());
    let lock = Arc::new(Mutex::new(7));
    let host = Host {
        counters: counters.clone(),
        lock: lock.clone(),
        pinned,
    };
    let mut store = Store::new(&engine, host);
    let instance = linker.instantiate(&mut store, &module).unwrap();
    (store, instance, counters, lock)
}

/// A store whose run suspends with `Caller::suspend` (pinned to its thread).
fn setup() -> (Store<Host>, Instance, Arc<Counters>, Arc<Mutex<u32>>) {
    setup_with(true)
}

fn yielded(outcome: Outcome<i32>) -> String {
    match outcome {
        Outcome::Yielded(v) => *v.downcast::<String>().expect("a String was yielded"),
        Outcome::Returned(r) => panic!("expected a yield, got a return of {r}"),
    }
}

#[test]
fn yield_and_resume_at_every_depth() {
    for depth in [0, 1, 2, 50] {
        let (mut store, instance, counters, _) = setup();
        for round in 0..3 {
            let value = yielded(
                instance
                    .call_resumable::<i32, i32>(&mut store, "run", depth)
                    .unwrap(),
            );
            assert_eq!(value, "depth 0 of 7");
            assert_eq!(store.state(), StoreState::Suspended);
            // Every frame is still alive while suspended.
            let created = counters.created.load(Ordering::SeqCst);
            assert_eq!(
                created - counters.dropped.load(Ordering::SeqCst),
                depth as usize + 1
            );
            match store.resume::<i32>(100 * round).unwrap() {
                Outcome::Returned(r) => assert_eq!(r, 100 * round + depth + 1),
                Outcome::Yielded(_) => panic!("no second yield"),
            }
            assert_eq!(store.state(), StoreState::Ready);
            assert_eq!(
                counters.created.load(Ordering::SeqCst),
                counters.dropped.load(Ordering::SeqCst)
            );
        }
    }
}

#[test]
fn wrong_resumes_and_calls_are_errors() {
    let (mut store, instance, _, _) = setup();
    assert!(matches!(
        store.resume::<i32>(1),
        Err(Error::InstanceState(_))
    ));
    yielded(
        instance
            .call_resumable::<i32, i32>(&mut store, "run", 2)
            .unwrap(),
    );
    // Wrong resume value type, wrong result type, a call: all refused, and
    // the store stays suspended.
    assert!(matches!(
        store.resume::<i32>("text"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        store.resume::<i64>(1i32),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        instance.call::<i32, i32>(&mut store, "run", 1),
        Err(Error::InstanceState(_))
    ));
    assert_eq!(store.state(), StoreState::Suspended);
    assert!(matches!(
        store.resume::<i32>(5).unwrap(),
        Outcome::Returned(8)
    ));
}

#[test]
fn plain_call_reports_the_yield_as_an_error() {
    let (mut store, instance, _, _) = setup();
    match instance.call::<i32, i32>(&mut store, "run", 1) {
        Err(Error::Yielded(v)) => assert_eq!(*v.downcast::<String>().unwrap(), "depth 0 of 7"),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.state(), StoreState::Suspended);
    assert!(matches!(
        store.resume::<i32>(0).unwrap(),
        Outcome::Returned(2)
    ));
}

/// `Caller::suspend` pins the run to its thread: the bottom frame holds a
/// `MutexGuard` across the suspension. The store itself may travel, but a
/// resume (or reset) on another thread is refused and leaves it suspended,
/// guard still held; back on its own thread it resumes normally.
#[test]
fn pinned_run_resumes_only_on_its_own_thread() {
    let (mut store, instance, counters, lock) = setup();
    for _ in 0..20 {
        yielded(
            instance
                .call_resumable::<i32, i32>(&mut store, "run", 3)
                .unwrap(),
        );
        store = std::thread::spawn(move || {
            assert!(matches!(
                store.resume::<i32>(10),
                Err(Error::InstanceState(_))
            ));
            assert!(matches!(store.reset(), Err(Error::InstanceState(_))));
            assert_eq!(store.state(), StoreState::Suspended);
            store
        })
        .join()
        .unwrap();
        assert_eq!(store.state(), StoreState::Suspended);
        assert!(lock.try_lock().is_err(), "held by the suspended host frame");
        assert_eq!(counters.alive(), 4, "every frame is still alive");
        assert!(matches!(
            store.resume::<i32>(10).unwrap(),
            Outcome::Returned(14)
        ));
        assert_eq!(store.state(), StoreState::Ready);
        // Released normally (no unwind went through the frame).
        assert!(lock.try_lock().is_ok());
    }
    assert_eq!(counters.created.load(Ordering::SeqCst), 80);
    assert_eq!(counters.dropped.load(Ordering::SeqCst), 80);
}

/// `Caller::suspend_unpinned`, from a host function whose frames hold only
/// `Send` values: the run resumes on whichever thread has the store.
#[test]
fn resume_on_another_thread() {
    let (mut store, instance, counters, lock) = setup_with(false);
    for _ in 0..20 {
        yielded(
            instance
                .call_resumable::<i32, i32>(&mut store, "run", 3)
                .unwrap(),
        );
        assert!(lock.try_lock().is_ok(), "not held across the suspension");
        store = std::thread::spawn(move || {
            assert!(matches!(
                store.resume::<i32>(10).unwrap(),
                Outcome::Returned(14)
            ));
            assert_eq!(store.state(), StoreState::Ready);
            store
        })
        .join()
        .unwrap();
    }
    assert_eq!(counters.created.load(Ordering::SeqCst), 80);
    assert_eq!(counters.dropped.load(Ordering::SeqCst), 80);
}

#[test]
fn drop_while_suspended_unwinds_every_frame() {
    for depth in [0, 1, 2, 50] {
        let (mut store, instance, counters, lock) = setup();
        yielded(
            instance
                .call_resumable::<i32, i32>(&mut store, "run", depth)
                .unwrap(),
        );
        assert!(lock.try_lock().is_err(), "held by the suspended host frame");
        drop(store);
        assert_eq!(counters.created.load(Ordering::SeqCst), depth as usize + 1);
        assert_eq!(counters.dropped.load(Ordering::SeqCst), depth as usize + 1);
        // Released (poisoned by the unwind, as documented, but not held).
        assert!(matches!(
            lock.try_lock(),
            Err(std::sync::TryLockError::Poisoned(_))
        ));
    }
}

#[test]
fn reset_while_suspended_unwinds_and_makes_it_ready() {
    for depth in [0, 1, 2, 50] {
        let (mut store, instance, counters, _) = setup();
        yielded(
            instance
                .call_resumable::<i32, i32>(&mut store, "run", depth)
                .unwrap(),
        );
        store.reset().unwrap();
        assert_eq!(store.state(), StoreState::Ready);
        assert_eq!(
            counters.dropped.load(Ordering::SeqCst),
            counters.created.load(Ordering::SeqCst)
        );
        yielded(
            instance
                .call_resumable::<i32, i32>(&mut store, "run", depth)
                .unwrap(),
        );
        assert!(matches!(
            store.resume::<i32>(1).unwrap(),
            Outcome::Returned(_)
        ));
    }
}

#[test]
fn kill_while_suspended_ends_the_run_at_resume() {
    let (mut store, instance, counters, _) = setup();
    yielded(
        instance
            .call_resumable::<i32, i32>(&mut store, "run", 2)
            .unwrap(),
    );
    let switch = store.kill_switch();
    assert_eq!(switch.terminate(), KillOutcome::PendingUntilResume);
    assert!(matches!(store.resume::<i32>(1), Err(Error::Killed)));
    assert_eq!(store.state(), StoreState::Ready);
    assert_eq!(counters.dropped.load(Ordering::SeqCst), 3);
    assert_eq!(switch.terminate(), KillOutcome::NothingToTerminate);
}

fn probe(store: &mut Store<Host>, instance: Instance) -> (i32, i32, i32, i32) {
    instance
        .call::<(), (i32, i32, i32, i32)>(store, "probe", ())
        .unwrap()
}

#[test]
fn reset_restores_memory_tables_and_globals() {
    let (mut store, instance, _, _) = setup();
    let pristine = probe(&mut store, instance);
    assert_eq!(pristine, (i32::from_le_bytes(*b"init"), 1, 5, 2));
    let memory = instance.get_memory(&store, "memory").unwrap();
    for _ in 0..100 {
        instance.call::<(), ()>(&mut store, "scribble", ()).unwrap();
        assert_eq!(probe(&mut store, instance), (0x44434241, 3, 99, 1));
        store.reset().unwrap();
        assert_eq!(probe(&mut store, instance), pristine);
        assert_eq!(memory.data(&store)[60000], 0);
    }
}

#[test]
fn reset_after_trap_termination_and_host_panic() {
    let (mut store, instance, _, _) = setup();
    let pristine = probe(&mut store, instance);
    instance.call::<(), ()>(&mut store, "scribble", ()).unwrap();
    assert!(instance.call::<(), ()>(&mut store, "boom", ()).is_err());
    assert_eq!(store.state(), StoreState::Ready);
    store.reset().unwrap();
    assert_eq!(probe(&mut store, instance), pristine);

    // A host panic poisons the store; reset makes it usable again.
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module (import "h" "p" (func $p)) (func (export "go") (call $p)))"#,
    )
    .unwrap();
    let mut linker: Linker<()> = Linker::new(&engine);
    linker
        .func_wrap("h", "p", || -> () {
            std::panic::resume_unwind(Box::new(1))
        })
        .unwrap();
    let mut poisoned = Store::new(&engine, ());
    let go = linker.instantiate(&mut poisoned, &module).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        go.call::<(), ()>(&mut poisoned, "go", ())
    }));
    assert!(r.is_err());
    assert_eq!(poisoned.state(), StoreState::Poisoned);
    assert!(poisoned.is_poisoned());
    assert!(matches!(
        go.call::<(), ()>(&mut poisoned, "go", ()),
        Err(Error::InstanceState(_))
    ));
    assert!(matches!(
        poisoned.resume::<()>(()),
        Err(Error::InstanceState(_))
    ));
    poisoned.reset().unwrap();
    assert_eq!(poisoned.state(), StoreState::Ready);
}
