//! Host panics and host errors ending a guest's run.
//!
//! Covers: a panic raised in a host function at the bottom of a chain of
//! nested guest/host segments (`run(d) -> h(d) -> run(d-1) -> ... -> h(0)`)
//! unwinds to the embedder with the original payload, drops every RAII guard
//! in every host frame, releases a mutex held in the outermost host frame,
//! poisons the store; callee-saved values of the embedder's frames survive
//! panics, errors and normal returns; a host `Err` at depth 50 comes back
//! unchanged from `call` with every guard dropped and the store usable.

use backstop::{Caller, Engine, Error, Instance, Linker, Module, Store, StoreState};
use std::hint::black_box;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};

const WAT: &str = r#"
(module
  (import "host" "h" (func $h (param i32) (result i32)))
  (func (export "run") (param i32) (result i32)
    (i32.add (call $h (local.get 0)) (i32.const 1))))
"#;

/// The payload of the test panics.
#[derive(Debug, PartialEq)]
struct MyPayload(u32);

/// What the innermost host frame (depth 0) does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// `std::panic::panic_any(MyPayload(42))` (runs the panic hook).
    Panic,
    /// `resume_unwind(Box::new(MyPayload(7)))` (a panic without the hook;
    /// cheap, for loops).
    QuietPanic,
    /// Returns `Err(Error::msg("x"))`.
    Error,
    /// Returns 0.
    Return,
}

struct State {
    created: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
    mode: Mode,
    /// Depth of the outermost host frame, which holds `lock` and `pl_lock`.
    outer_depth: i32,
    lock: Arc<Mutex<u32>>,
    pl_lock: Arc<parking_lot::Mutex<u32>>,
}

/// Counts its construction and its drop.
struct Guard {
    dropped: Arc<AtomicUsize>,
}

impl Guard {
    fn new(state: &State) -> Guard {
        state.created.fetch_add(1, Ordering::SeqCst);
        Guard {
            dropped: state.dropped.clone(),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

fn h(mut caller: Caller<'_, State>, depth: i32) -> Result<i32, Error> {
    let _guard = Guard::new(caller.data());
    let lock = caller.data().lock.clone();
    let pl_lock = caller.data().pl_lock.clone();
    let _locked = if depth == caller.data().outer_depth {
        Some((
            lock.lock().unwrap_or_else(|e| e.into_inner()),
            pl_lock.lock(),
        ))
    } else {
        None
    };
    if depth > 0 {
        return caller.call::<i32, i32>("run", depth - 1);
    }
    match caller.data().mode {
        Mode::Panic => std::panic::panic_any(MyPayload(42)),
        Mode::QuietPanic => resume_unwind(Box::new(MyPayload(7))),
        Mode::Error => Err(Error::msg("x")),
        Mode::Return => Ok(0),
    }
}

struct Fixture {
    engine: Engine,
    module: Module,
    linker: Linker<State>,
}

fn fixture() -> Fixture {
    let engine = Engine::default();
    let module = Module::new(&engine, WAT).unwrap();
    let mut linker = Linker::new(&engine);
    linker.func_wrap("host", "h", h).unwrap();
    Fixture {
        engine,
        module,
        linker,
    }
}

impl Fixture {
    /// A fresh store holding one instance of `WAT`.
    fn instance(&self, mode: Mode, outer_depth: i32) -> (Store<State>, Instance) {
        let mut store = Store::new(
            &self.engine,
            State {
                created: Arc::new(AtomicUsize::new(0)),
                dropped: Arc::new(AtomicUsize::new(0)),
                mode,
                outer_depth,
                lock: Arc::new(Mutex::new(0)),
                pl_lock: Arc::new(parking_lot::Mutex::new(0)),
            },
        );
        let instance = self.linker.instantiate(&mut store, &self.module).unwrap();
        (store, instance)
    }
}

fn counts(store: &Store<State>) -> (usize, usize) {
    (
        store.data().created.load(Ordering::SeqCst),
        store.data().dropped.load(Ordering::SeqCst),
    )
}

fn panic_at_depth(depth: i32) {
    let f = fixture();
    let (mut store, instance) = f.instance(Mode::Panic, depth);
    let lock = store.data().lock.clone();
    let pl_lock = store.data().pl_lock.clone();
    let result = catch_unwind(AssertUnwindSafe(|| {
        instance.call::<i32, i32>(&mut store, "run", depth)
    }));
    let payload = match result {
        Ok(r) => panic!("the host panic did not reach the embedder; call returned {r:?}"),
        Err(payload) => payload,
    };
    let payload = payload
        .downcast::<MyPayload>()
        .expect("the embedder gets the original payload type");
    assert_eq!(*payload, MyPayload(42));
    let n = depth as usize + 1;
    assert_eq!(
        counts(&store),
        (n, n),
        "(created, dropped) at depth {depth}"
    );
    // The mutex held by the outermost host frame was released by the unwind
    // (std poisons it; WouldBlock would mean it is still held).
    match lock.try_lock() {
        Err(TryLockError::Poisoned(_)) => {}
        Err(TryLockError::WouldBlock) => panic!("the mutex is still locked after the unwind"),
        Ok(_) => panic!("the mutex was not poisoned: the outer host frame did not unwind"),
    }
    // A parking_lot mutex does not poison: it is simply free again.
    assert!(
        pl_lock.try_lock().is_some(),
        "the parking_lot mutex is still locked after the unwind"
    );
    assert!(store.is_poisoned());
    assert_eq!(store.state(), StoreState::Poisoned);
    match instance.call::<i32, i32>(&mut store, "run", 0) {
        Err(Error::InstanceState(message)) => println!("later call: {message}"),
        other => panic!("a poisoned store must refuse calls, got {other:?}"),
    }
    // The refusal ran no host code.
    assert_eq!(counts(&store), (n, n));
}

#[test]
fn panic_depth_0() {
    panic_at_depth(0);
}

#[test]
fn panic_depth_1() {
    panic_at_depth(1);
}

#[test]
fn panic_depth_2() {
    panic_at_depth(2);
}

#[test]
fn panic_depth_50() {
    panic_at_depth(50);
}

#[test]
fn normal_return_through_nested_segments() {
    let f = fixture();
    let (mut store, instance) = f.instance(Mode::Return, 50);
    for depth in [0, 1, 2, 50] {
        let before = counts(&store);
        let result = instance.call::<i32, i32>(&mut store, "run", depth).unwrap();
        // run(0) = h(0) + 1 = 1; h(d) = run(d-1); run(d) = d + 1.
        assert_eq!(result, depth + 1);
        let after = counts(&store);
        let n = depth as usize + 1;
        assert_eq!(after, (before.0 + n, before.1 + n));
    }
    assert!(!store.is_poisoned());
    // The mutex was locked and released normally, not poisoned.
    assert!(store.data().lock.try_lock().is_ok());
    assert!(store.data().pl_lock.try_lock().is_some());
}

#[test]
fn host_error_at_depth_50_is_returned_and_instance_stays_usable() {
    let f = fixture();
    let (mut store, instance) = f.instance(Mode::Error, 50);
    for round in 1..=3usize {
        match instance.call::<i32, i32>(&mut store, "run", 50) {
            Err(Error::Message(m)) => assert_eq!(m, "x"),
            other => panic!("expected the host's Error::Message(\"x\"), got {other:?}"),
        }
        assert_eq!(counts(&store), (51 * round, 51 * round));
        assert!(!store.is_poisoned());
        assert_eq!(store.state(), StoreState::Ready);
        // The Err unwind (a Rust panic payload) poisons a std mutex held
        // across it, but it was released.
        match store.data().lock.try_lock() {
            Err(TryLockError::WouldBlock) => panic!("the mutex is still held"),
            Ok(_) | Err(TryLockError::Poisoned(_)) => {}
        }
        assert!(store.data().pl_lock.try_lock().is_some());
    }
    // Still usable: a normal call works and nests.
    store.data_mut().mode = Mode::Return;
    store.data_mut().lock = Arc::new(Mutex::new(0));
    assert_eq!(instance.call::<i32, i32>(&mut store, "run", 3).unwrap(), 4);
    assert_eq!(counts(&store), (51 * 3 + 4, 51 * 3 + 4));
}

#[test]
fn host_error_typed_payload_survives() {
    // An error a host function returns comes back unchanged, even a boxed
    // custom error type.
    #[derive(Debug)]
    struct Custom(u64);
    impl std::fmt::Display for Custom {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "custom {}", self.0)
        }
    }
    impl std::error::Error for Custom {}

    let engine = Engine::default();
    let module = Module::new(&engine, WAT).unwrap();
    let mut linker: Linker<()> = Linker::new(&engine);
    linker
        .func_wrap("host", "h", |_: i32| -> Result<i32, Error> {
            Err(Error::Host(Box::new(Custom(0xfeed))))
        })
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let err = instance.call::<i32, i32>(&mut store, "run", 0).unwrap_err();
    match &err {
        Error::Host(e) => assert_eq!(e.downcast_ref::<Custom>().unwrap().0, 0xfeed),
        other => panic!("expected Error::Host, got {other:?}"),
    }
    assert!(!store.is_poisoned());
}

/// Twelve values derived from `seed`, different per index.
fn derive(seed: u64, i: u64) -> u64 {
    (seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_mul(0xbf58_476d_1ce4_e5b9)
        .rotate_left(i as u32 + 7)
}

/// Keeps twelve opaque values live across a call into the guest that ends
/// as `mode` says, then checks them. Returns the call's outcome.
#[inline(never)]
fn call_with_live_values(
    store: &mut Store<State>,
    instance: Instance,
    seed: u64,
    depth: i32,
) -> std::thread::Result<Result<i32, Error>> {
    let v0 = black_box(derive(seed, 0));
    let v1 = black_box(derive(seed, 1));
    let v2 = black_box(derive(seed, 2));
    let v3 = black_box(derive(seed, 3));
    let v4 = black_box(derive(seed, 4));
    let v5 = black_box(derive(seed, 5));
    let v6 = black_box(derive(seed, 6));
    let v7 = black_box(derive(seed, 7));
    let v8 = black_box(derive(seed, 8));
    let v9 = black_box(derive(seed, 9));
    let v10 = black_box(derive(seed, 10));
    let v11 = black_box(derive(seed, 11));
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        instance.call::<i32, i32>(&mut *store, "run", black_box(depth))
    }));
    let got = [v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11];
    let expected: Vec<u64> = (0..12).map(|i| derive(seed, i)).collect();
    assert_eq!(
        got.as_slice(),
        expected.as_slice(),
        "callee-saved values of the embedder's frame were clobbered (seed {seed})"
    );
    outcome
}

#[test]
fn callee_saved_values_survive_panics_errors_and_returns() {
    let f = fixture();
    let (mut returning, returning_instance) = f.instance(Mode::Return, -1);
    let (mut erring, erring_instance) = f.instance(Mode::Error, -1);
    for i in 0..1000u64 {
        let seed = black_box(i.wrapping_mul(0x1234_5678_9abc_def1) ^ 0x5555);
        let depth = (i % 4) as i32;

        // A host panic (quiet: no hook, so 1000 of them stay fast). Each
        // poisons its store, so each gets a fresh one.
        let (mut panicking, panicking_instance) = f.instance(Mode::QuietPanic, -1);
        let outcome = call_with_live_values(&mut panicking, panicking_instance, seed, depth);
        let payload = outcome.expect_err("the panic reaches the embedder");
        assert_eq!(*payload.downcast::<MyPayload>().unwrap(), MyPayload(7));
        let n = depth as usize + 1;
        assert_eq!(counts(&panicking), (n, n));

        // A host error.
        let outcome = call_with_live_values(&mut erring, erring_instance, seed, depth);
        assert!(matches!(outcome, Ok(Err(Error::Message(ref m))) if m == "x"));

        // A normal return.
        let outcome = call_with_live_values(&mut returning, returning_instance, seed, depth);
        assert_eq!(outcome.unwrap().unwrap(), depth + 1);
    }
    assert_eq!(counts(&erring).0, counts(&erring).1);
    assert_eq!(counts(&returning).0, counts(&returning).1);
}

#[test]
fn panic_in_host_function_called_directly_from_root() {
    // The simplest shape: the export is the import itself.
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (import "host" "p" (func $p (param i64)))
             (export "p" (func $p)))"#,
    )
    .unwrap();
    let mut linker: Linker<()> = Linker::new(&engine);
    linker
        .func_wrap("host", "p", |x: i64| {
            if x == 99 {
                resume_unwind(Box::new(MyPayload(x as u32)));
            }
        })
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    instance.call::<i64, ()>(&mut store, "p", 1).unwrap();
    let payload = catch_unwind(AssertUnwindSafe(|| {
        instance.call::<i64, ()>(&mut store, "p", 99)
    }))
    .expect_err("the panic reaches the embedder");
    assert_eq!(*payload.downcast::<MyPayload>().unwrap(), MyPayload(99));
    assert!(store.is_poisoned());
    assert!(matches!(
        instance.call::<i64, ()>(&mut store, "p", 1),
        Err(Error::InstanceState(_))
    ));
}

#[test]
fn panic_in_start_function_reaches_instantiate_caller() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (import "host" "h" (func $h (param i32) (result i32)))
             (func $start (drop (call $h (i32.const 3))))
             (start $start)
             (func (export "run") (param i32) (result i32)
               (i32.add (call $h (local.get 0)) (i32.const 1))))"#,
    )
    .unwrap();
    let mut linker = Linker::new(&engine);
    linker.func_wrap("host", "h", h).unwrap();
    let created = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let lock = Arc::new(Mutex::new(0));
    let state = State {
        created: created.clone(),
        dropped: dropped.clone(),
        mode: Mode::Panic,
        outer_depth: 3,
        lock: lock.clone(),
        pl_lock: Arc::new(parking_lot::Mutex::new(0)),
    };
    let mut store = Store::new(&engine, state);
    let payload = catch_unwind(AssertUnwindSafe(|| linker.instantiate(&mut store, &module)))
        .expect_err("the start function's host panic reaches the embedder");
    assert_eq!(*payload.downcast::<MyPayload>().unwrap(), MyPayload(42));
    assert_eq!(created.load(Ordering::SeqCst), 4);
    assert_eq!(dropped.load(Ordering::SeqCst), 4);
    assert!(matches!(lock.try_lock(), Err(TryLockError::Poisoned(_))));
    // The store model: the data belongs to the store, not to the failed
    // instance, so (where the old test saw it dropped with the instance) it
    // lives until the store drops. The panic poisoned the store like any
    // other host panic of a run.
    assert!(store.is_poisoned());
    assert_eq!(Arc::strong_count(&created), 2);
    drop(store);
    // The store's data (which held the counters' other clones) was dropped
    // with the store.
    assert_eq!(Arc::strong_count(&created), 1);
}

#[test]
fn nested_call_errors_are_returned_to_the_host() {
    // A nested call with a bad name or types returns Err to the host
    // function (no unwind); the host may handle it or pass it on.
    let engine = Engine::default();
    let module = Module::new(&engine, WAT).unwrap();
    let mut linker: Linker<Vec<String>> = Linker::new(&engine);
    linker
        .func_wrap(
            "host",
            "h",
            |mut caller: Caller<'_, Vec<String>>, depth: i32| -> Result<i32, Error> {
                let missing = caller.call::<i32, i32>("missing", 0).unwrap_err();
                let wrong = caller.call::<i64, i32>("run", 0).unwrap_err();
                let dynamic = caller.call_dynamic("run", &[]).unwrap_err();
                for e in [&missing, &wrong, &dynamic] {
                    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
                }
                caller.data_mut().push(missing.to_string());
                match depth {
                    0 => Ok(100),
                    1 => {
                        // A good nested call still works after the refusals.
                        let r = caller.call_dynamic("run", &[backstop::Val::I32(0)])?;
                        Ok(r[0].i32().unwrap())
                    }
                    _ => Err(missing),
                }
            },
        )
        .unwrap();
    let mut store = Store::new(&engine, Vec::new());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    assert_eq!(
        instance.call::<i32, i32>(&mut store, "run", 0).unwrap(),
        101
    );
    assert_eq!(
        instance.call::<i32, i32>(&mut store, "run", 1).unwrap(),
        102
    );
    match instance.call::<i32, i32>(&mut store, "run", 2) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("missing"), "{m}"),
        other => panic!("expected the nested InvalidArgument, got {other:?}"),
    }
    assert_eq!(store.data().len(), 4);
    assert!(!store.is_poisoned());
}

#[test]
fn host_may_catch_its_own_panic_from_a_nested_segment() {
    // h(1) catches the panic of h(0), raised two guest frames deeper, and
    // returns normally: the run goes on and the store stays usable.
    let engine = Engine::default();
    let module = Module::new(&engine, WAT).unwrap();
    let mut linker: Linker<Arc<AtomicUsize>> = Linker::new(&engine);
    linker
        .func_wrap(
            "host",
            "h",
            |mut caller: Caller<'_, Arc<AtomicUsize>>, depth: i32| -> i32 {
                let _guard = Guard {
                    dropped: caller.data().clone(),
                };
                if depth == 0 {
                    resume_unwind(Box::new(MyPayload(5)));
                }
                match catch_unwind(AssertUnwindSafe(|| {
                    caller.call::<i32, i32>("run", depth - 1)
                })) {
                    Ok(r) => r.unwrap(),
                    Err(payload) => payload.downcast::<MyPayload>().unwrap().0 as i32 * 10,
                }
            },
        )
        .unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let mut store = Store::new(&engine, dropped.clone());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    for round in 1..=3 {
        // run(1) = h(1) + 1 = 50 + 1.
        assert_eq!(instance.call::<i32, i32>(&mut store, "run", 1).unwrap(), 51);
        assert_eq!(dropped.load(Ordering::SeqCst), 2 * round);
    }
    assert!(!store.is_poisoned());
}

#[test]
fn panic_in_another_instances_host_function_poisons_the_whole_store() {
    // B's root call -> A's export (imported by B) -> host panic.
    //
    // Store model: this test used to be
    // `..._poisons_the_root_instance_only`, checking that only B (the root
    // instance) was poisoned while A, with data of its own, stayed usable.
    // Linked instances now live in one store (one data, one run state) and
    // poisoning is per store: the panic poisons the store, so A refuses
    // calls as well until `reset`, while another store (holding its own
    // instance of A, with its own data) is untouched.
    let engine = Engine::default();
    let module_a = Module::new(
        &engine,
        r#"(module
             (import "host" "p" (func $p (param i32) (result i32)))
             (func (export "f") (param i32) (result i32) (call $p (local.get 0))))"#,
    )
    .unwrap();
    let module_b = Module::new(
        &engine,
        r#"(module
             (import "a" "f" (func $f (param i32) (result i32)))
             (func (export "run") (param i32) (result i32)
               (i32.add (call $f (local.get 0)) (i32.const 1))))"#,
    )
    .unwrap();
    let mut linker: Linker<u32> = Linker::new(&engine);
    linker
        .func_wrap("host", "p", |caller: Caller<'_, u32>, x: i32| -> i32 {
            if x == 0 {
                resume_unwind(Box::new(MyPayload(*caller.data())));
            }
            x * *caller.data() as i32
        })
        .unwrap();
    let mut store = Store::new(&engine, 20);
    let a = linker.instantiate(&mut store, &module_a).unwrap();
    linker.instance(&store, "a", a).unwrap();
    let b = linker.instantiate(&mut store, &module_b).unwrap();
    let mut other = Store::new(&engine, 10);
    let other_a = linker.instantiate(&mut other, &module_a).unwrap();
    // The host function sees the data of the store running the call.
    assert_eq!(b.call::<i32, i32>(&mut store, "run", 2).unwrap(), 41);
    let payload = catch_unwind(AssertUnwindSafe(|| {
        b.call::<i32, i32>(&mut store, "run", 0)
    }))
    .expect_err("the panic reaches the embedder");
    assert_eq!(*payload.downcast::<MyPayload>().unwrap(), MyPayload(20));
    assert!(store.is_poisoned());
    assert_eq!(store.state(), StoreState::Poisoned);
    // Every instance of the poisoned store refuses calls, A included.
    assert!(matches!(
        b.call::<i32, i32>(&mut store, "run", 2),
        Err(Error::InstanceState(_))
    ));
    assert!(matches!(
        a.call::<i32, i32>(&mut store, "f", 3),
        Err(Error::InstanceState(_))
    ));
    // Another store is not affected.
    assert!(!other.is_poisoned());
    assert_eq!(other_a.call::<i32, i32>(&mut other, "f", 3).unwrap(), 30);
    // A reset makes the whole store usable again.
    store.reset().unwrap();
    assert_eq!(store.state(), StoreState::Ready);
    assert_eq!(a.call::<i32, i32>(&mut store, "f", 3).unwrap(), 60);
    assert_eq!(b.call::<i32, i32>(&mut store, "run", 2).unwrap(), 41);
}

/// `rec(n)` recurses n times in Wasm, then calls the host function.
const DEEP_WAT: &str = r#"
(module
  (import "host" "h" (func $h (param i32) (result i32)))
  (func $rec (export "rec") (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0))
      (then (call $h (i32.const 0)))
      (else (i32.add (call $rec (i32.sub (local.get 0) (i32.const 1))) (i32.const 1))))))
"#;

/// Uses `kib` KiB of stack.
#[inline(never)]
fn use_stack(kib: usize) -> u8 {
    let mut buffer = [0u8; 160 * 1024];
    let buffer = black_box(&mut buffer[..kib * 1024]);
    for (k, b) in buffer.iter_mut().enumerate() {
        *b = k as u8;
    }
    black_box(buffer)[kib * 1024 - 1]
}

/// A store with an instance of `DEEP_WAT` whose host function acts by the
/// store's data: 0 returns, 1 uses 150 KiB of stack, 2 uses 100 KiB then
/// panics quietly, 3 panics with the hook, 4 uses 100 KiB then returns an
/// error.
fn deep_instance() -> (Store<u32>, Instance) {
    let engine = Engine::default();
    let module = Module::new(&engine, DEEP_WAT).unwrap();
    let mut linker: Linker<u32> = Linker::new(&engine);
    linker
        .func_wrap(
            "host",
            "h",
            |caller: Caller<'_, u32>, _: i32| -> Result<i32, Error> {
                match *caller.data() {
                    0 => Ok(1),
                    1 => Ok(i32::from(use_stack(150))),
                    2 => {
                        use_stack(100);
                        resume_unwind(Box::new(MyPayload(2)))
                    }
                    3 => std::panic::panic_any(MyPayload(3)),
                    _ => {
                        use_stack(100);
                        Err(Error::msg("deep"))
                    }
                }
            },
        )
        .unwrap();
    let mut store = Store::new(&engine, 0);
    let instance = linker.instantiate(&mut store, &module).unwrap();
    (store, instance)
}

/// The deepest recursion that does not overflow (binary search).
fn max_depth(store: &mut Store<u32>, instance: Instance) -> i32 {
    let (mut ok, mut overflow) = (0, 1 << 21);
    while ok + 1 < overflow {
        let mid = (ok + overflow) / 2;
        match instance.call::<i32, i32>(&mut *store, "rec", mid) {
            Ok(r) => {
                assert_eq!(r, mid + 1);
                ok = mid;
            }
            Err(e) => {
                assert_eq!(e.trap_code(), Some(backstop::TrapCode::StackOverflow));
                overflow = mid;
            }
        }
    }
    assert!(ok > 1000, "max depth {ok}");
    ok
}

#[test]
fn host_functions_at_the_deepest_guest_recursion() {
    // At the deepest point the guest may reach, a host function still has
    // the host reserve: it may use 150 KiB of stack, return an error, or
    // panic (with or without the panic hook, which captures a backtrace).
    let (mut store, instance) = deep_instance();
    let depth = max_depth(&mut store, instance);
    *store.data_mut() = 1;
    for d in [depth, depth - 1, depth - 7] {
        let r = instance.call::<i32, i32>(&mut store, "rec", d).unwrap();
        assert_eq!(r, i32::from((150 * 1024 - 1) as u8) + d);
    }
    *store.data_mut() = 4;
    for _ in 0..3 {
        match instance.call::<i32, i32>(&mut store, "rec", depth) {
            Err(Error::Message(m)) => assert_eq!(m, "deep"),
            other => panic!("expected the host error, got {other:?}"),
        }
    }
    *store.data_mut() = 2;
    let payload = catch_unwind(AssertUnwindSafe(|| {
        instance.call::<i32, i32>(&mut store, "rec", depth)
    }))
    .expect_err("the panic reaches the embedder");
    assert_eq!(*payload.downcast::<MyPayload>().unwrap(), MyPayload(2));

    let (mut store, instance) = deep_instance();
    let depth = max_depth(&mut store, instance);
    *store.data_mut() = 3;
    let payload = catch_unwind(AssertUnwindSafe(|| {
        instance.call::<i32, i32>(&mut store, "rec", depth)
    }))
    .expect_err("the panic reaches the embedder");
    assert_eq!(*payload.downcast::<MyPayload>().unwrap(), MyPayload(3));
}
