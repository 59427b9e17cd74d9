//! Yield and resume (`Caller::suspend`, `Instance::resume`), reset, and
//! every transition of the instance state machine: suspending at any
//! nesting depth keeps every frame alive; resuming (on any thread) continues
//! them; dropping, resetting or killing a suspended instance unwinds them,
//! running every destructor; reset restores memories, tables and globals.

use backstop::{
    Caller, Engine, Error, Instance, InstanceState, KillOutcome, Linker, Module, Outcome,
};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

mod common;
use common::{Counters, Guard};

struct Host {
    counters: Arc<Counters>,
    lock: Arc<Mutex<u32>>,
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

/// `down(depth)`: holds a guard and the shared lock's absence; at depth 0
/// suspends with the depth and returns what it is resumed with.
fn setup() -> (Instance<Host>, Arc<Counters>, Arc<Mutex<u32>>) {
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
    };
    (linker.instantiate(&module, host).unwrap(), counters, lock)
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
        let (mut instance, counters, _) = setup();
        for round in 0..3 {
            let value = yielded(instance.call_resumable::<i32, i32>("run", depth).unwrap());
            assert_eq!(value, "depth 0 of 7");
            assert_eq!(instance.state(), InstanceState::Suspended);
            // Every frame is still alive while suspended.
            let created = counters.created.load(Ordering::SeqCst);
            assert_eq!(
                created - counters.dropped.load(Ordering::SeqCst),
                depth as usize + 1
            );
            match instance.resume::<i32>(100 * round).unwrap() {
                Outcome::Returned(r) => assert_eq!(r, 100 * round + depth + 1),
                Outcome::Yielded(_) => panic!("no second yield"),
            }
            assert_eq!(instance.state(), InstanceState::Ready);
            assert_eq!(
                counters.created.load(Ordering::SeqCst),
                counters.dropped.load(Ordering::SeqCst)
            );
        }
    }
}

#[test]
fn wrong_resumes_and_calls_are_errors() {
    let (mut instance, _, _) = setup();
    assert!(matches!(
        instance.resume::<i32>(1),
        Err(Error::InstanceState(_))
    ));
    yielded(instance.call_resumable::<i32, i32>("run", 2).unwrap());
    // Wrong resume value type, wrong result type, a call: all refused, and
    // the instance stays suspended.
    assert!(matches!(
        instance.resume::<i32>("text"),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        instance.resume::<i64>(1i32),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        instance.call::<i32, i32>("run", 1),
        Err(Error::InstanceState(_))
    ));
    assert_eq!(instance.state(), InstanceState::Suspended);
    assert!(matches!(
        instance.resume::<i32>(5).unwrap(),
        Outcome::Returned(8)
    ));
}

#[test]
fn plain_call_reports_the_yield_as_an_error() {
    let (mut instance, _, _) = setup();
    match instance.call::<i32, i32>("run", 1) {
        Err(Error::Yielded(v)) => assert_eq!(*v.downcast::<String>().unwrap(), "depth 0 of 7"),
        other => panic!("{other:?}"),
    }
    assert_eq!(instance.state(), InstanceState::Suspended);
    assert!(matches!(
        instance.resume::<i32>(0).unwrap(),
        Outcome::Returned(2)
    ));
}

#[test]
fn resume_on_another_thread() {
    let (mut instance, counters, _) = setup();
    for _ in 0..20 {
        yielded(instance.call_resumable::<i32, i32>("run", 3).unwrap());
        instance = std::thread::spawn(move || {
            assert!(matches!(
                instance.resume::<i32>(10).unwrap(),
                Outcome::Returned(14)
            ));
            instance
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
        let (mut instance, counters, lock) = setup();
        yielded(instance.call_resumable::<i32, i32>("run", depth).unwrap());
        assert!(lock.try_lock().is_err(), "held by the suspended host frame");
        drop(instance);
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
        let (mut instance, counters, _) = setup();
        yielded(instance.call_resumable::<i32, i32>("run", depth).unwrap());
        instance.reset().unwrap();
        assert_eq!(instance.state(), InstanceState::Ready);
        assert_eq!(
            counters.dropped.load(Ordering::SeqCst),
            counters.created.load(Ordering::SeqCst)
        );
        yielded(instance.call_resumable::<i32, i32>("run", depth).unwrap());
        assert!(matches!(
            instance.resume::<i32>(1).unwrap(),
            Outcome::Returned(_)
        ));
    }
}

#[test]
fn kill_while_suspended_ends_the_run_at_resume() {
    let (mut instance, counters, _) = setup();
    yielded(instance.call_resumable::<i32, i32>("run", 2).unwrap());
    let switch = instance.kill_switch();
    assert_eq!(switch.terminate(), KillOutcome::PendingUntilResume);
    assert!(matches!(instance.resume::<i32>(1), Err(Error::Killed)));
    assert_eq!(instance.state(), InstanceState::Ready);
    assert_eq!(counters.dropped.load(Ordering::SeqCst), 3);
    assert_eq!(switch.terminate(), KillOutcome::NothingToTerminate);
}

fn probe(instance: &mut Instance<Host>) -> (i32, i32, i32, i32) {
    instance
        .call::<(), (i32, i32, i32, i32)>("probe", ())
        .unwrap()
}

#[test]
fn reset_restores_memory_tables_and_globals() {
    let (mut instance, _, _) = setup();
    let pristine = probe(&mut instance);
    assert_eq!(pristine, (i32::from_le_bytes(*b"init"), 1, 5, 2));
    for _ in 0..100 {
        instance.call::<(), ()>("scribble", ()).unwrap();
        assert_eq!(probe(&mut instance), (0x44434241, 3, 99, 1));
        instance.reset().unwrap();
        assert_eq!(probe(&mut instance), pristine);
        assert_eq!(instance.memory("memory").unwrap()[60000], 0);
    }
}

#[test]
fn reset_after_trap_termination_and_host_panic() {
    let (mut instance, _, _) = setup();
    let pristine = probe(&mut instance);
    instance.call::<(), ()>("scribble", ()).unwrap();
    assert!(instance.call::<(), ()>("boom", ()).is_err());
    assert_eq!(instance.state(), InstanceState::Ready);
    instance.reset().unwrap();
    assert_eq!(probe(&mut instance), pristine);

    // A host panic poisons; reset makes it usable again.
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
    let mut poisoned = linker.instantiate(&module, ()).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        poisoned.call::<(), ()>("go", ())
    }));
    assert!(r.is_err());
    assert_eq!(poisoned.state(), InstanceState::Poisoned);
    assert!(matches!(
        poisoned.call::<(), ()>("go", ()),
        Err(Error::InstanceState(_))
    ));
    assert!(matches!(
        poisoned.resume::<()>(()),
        Err(Error::InstanceState(_))
    ));
    poisoned.reset().unwrap();
    assert_eq!(poisoned.state(), InstanceState::Ready);
}
