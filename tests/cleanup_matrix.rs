//! The cleanup proof (DESIGN.md §3): however a guest's run ends, every
//! destructor of every host frame on its stack runs, in every nested segment.
//!
//! One module and one host function, parameterised by (ending, depth). The
//! embedder calls `run(depth)`; `run` calls the host import `h(depth)`; at
//! depth > 0, `h` calls back into the guest with `caller.call("run",
//! depth - 1)`, a nested segment. So when the innermost `h(0)` runs, the
//! guest stack holds `depth + 1` host frames interleaved with guest frames.
//! Every host frame owns an RAII guard counting its creation and its drop;
//! the outermost one also holds a `std::sync::Mutex` guard and a
//! `parking_lot::Mutex` guard. The innermost frame then ends the run in one
//! of the ways listed in `Ending` (return, host panic, termination, host
//! error, each fault kind, stack overflow, kill in Wasm, kill in a hostcall,
//! drop or reset while yielded), at depths 1, 2 and 50.
//!
//! For every case this checks: the call's result is the expected one (the
//! trap code, the termination details, `Killed`, the exact host error, the
//! panic payload, the yielded value); afterwards `created == dropped ==
//! depth + 1`; the parking_lot mutex is free; the std mutex is not held
//! (poisoned exactly when an unwind passed through its guard); and the
//! store is usable again (after `reset` when the ending requires it).

use backstop::{
    Caller, Engine, Error, KillOutcome, Linker, Module, Outcome, Store, StoreState, TrapCode,
};
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, TryLockError};

const DEPTHS: [i32; 3] = [1, 2, 50];

const GUEST: &str = r#"
    (module
      (type $i2i (func (param i32) (result i32)))
      (import "host" "h" (func $h (param i32) (result i32)))
      (memory 1)
      ;; Entry 0 is null, entry 1 has the wrong type for $i2i, and every
      ;; index from 2 up is out of bounds.
      (table 2 funcref)
      (elem (i32.const 1) $nop)
      (func $nop)
      (func (export "run") (param i32) (result i32)
        (i32.add (call $h (local.get 0)) (i32.const 1)))
      ;; The fault exports all take the argument that makes them fault, so
      ;; no constant folding can remove the fault.
      (func (export "load") (param i32) (result i32)
        (i32.load (local.get 0)))
      (func (export "unreachable") (param i32) (result i32)
        unreachable)
      (func (export "div") (param i32) (result i32)
        (i32.div_u (i32.const 1) (local.get 0)))
      (func (export "div_s_min") (param i32) (result i32)
        (i32.div_s (local.get 0) (i32.const -1)))
      (func (export "trunc") (param i32) (result i32)
        (i32.trunc_f32_s (f32.reinterpret_i32 (local.get 0))))
      (func (export "call_entry") (param i32) (result i32)
        (call_indirect (type $i2i) (i32.const 7) (local.get 0)))
      (func $recurse (export "recurse") (param i32) (result i32)
        (i32.add (call $recurse (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
      (func (export "spin") (param i32) (result i32)
        (loop $l (br $l))
        (local.get 0)))
"#;

/// A fault the innermost host frame triggers by calling a guest export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    OutOfBoundsLoad,
    Unreachable,
    DivideByZero,
    IntegerOverflow,
    BadConversion,
    IndirectCallToNull,
    IndirectCallBadSignature,
    TableOutOfBounds,
}

impl Fault {
    /// The export to call, the argument that makes it fault, and the trap.
    fn plan(self) -> (&'static str, i32, TrapCode) {
        match self {
            Fault::OutOfBoundsLoad => ("load", 65536, TrapCode::MemoryOutOfBounds),
            Fault::Unreachable => ("unreachable", 0, TrapCode::UnreachableCodeReached),
            Fault::DivideByZero => ("div", 0, TrapCode::IntegerDivisionByZero),
            Fault::IntegerOverflow => ("div_s_min", i32::MIN, TrapCode::IntegerOverflow),
            // A quiet NaN.
            Fault::BadConversion => ("trunc", 0x7fc0_0000, TrapCode::BadConversionToInteger),
            Fault::IndirectCallToNull => ("call_entry", 0, TrapCode::IndirectCallToNull),
            Fault::IndirectCallBadSignature => ("call_entry", 1, TrapCode::BadSignature),
            Fault::TableOutOfBounds => ("call_entry", 2, TrapCode::TableOutOfBounds),
        }
    }
}

/// How the innermost host frame ends the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Return,
    /// `std::panic::panic_any` with a typed payload.
    PanicAny,
    /// `std::panic::resume_unwind` with a typed payload (no panic hook).
    ResumeUnwind,
    Terminate,
    HostError,
    Fault(Fault),
    StackOverflow,
    /// Calls `spin`; another thread terminates it while it is in Wasm.
    KillInWasm,
    /// Blocks until another thread has terminated the run, then returns.
    KillInHostcall,
    /// Suspends; the embedder drops the store.
    DropWhileYielded,
    /// Suspends; the embedder resets the store.
    ResetWhileYielded,
}

#[derive(Debug, PartialEq)]
struct PanicPayload(i32);

#[derive(Debug, PartialEq)]
struct Details {
    depth: i32,
    why: &'static str,
}

#[derive(Debug, PartialEq)]
struct YieldValue(i32);

#[derive(Default)]
struct Counters {
    created: AtomicUsize,
    dropped: AtomicUsize,
}

impl Counters {
    fn get(&self) -> (usize, usize) {
        (
            self.created.load(Ordering::SeqCst),
            self.dropped.load(Ordering::SeqCst),
        )
    }
}

/// Counts its creation and its drop.
struct Guard(Arc<Counters>);

impl Guard {
    fn new(counters: &Arc<Counters>) -> Guard {
        counters.created.fetch_add(1, Ordering::SeqCst);
        Guard(counters.clone())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Locks {
    std: std::sync::Mutex<()>,
    pl: parking_lot::Mutex<()>,
}

struct State {
    ending: Ending,
    /// The depth of the outermost host frame (the one holding the locks).
    outer_depth: i32,
    counters: Arc<Counters>,
    locks: Arc<Locks>,
    /// Set by the innermost frame just before it calls `spin`.
    spinning: Arc<AtomicBool>,
    /// For `KillInHostcall`: "entered" to the killer, "proceed" from it.
    handshake: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
}

fn h(mut caller: Caller<'_, State>, depth: i32) -> Result<i32, Error> {
    let _guard = Guard::new(&caller.data().counters);
    let locks = caller.data().locks.clone();
    let _held = (depth == caller.data().outer_depth).then(|| {
        (
            // A poisoned lock (from an earlier case) is still a lock.
            locks
                .std
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            locks.pl.lock(),
        )
    });
    if depth > 0 {
        return caller.call::<i32, i32>("run", depth - 1);
    }
    match caller.data().ending {
        Ending::Return => Ok(0),
        Ending::PanicAny => std::panic::panic_any(PanicPayload(depth)),
        Ending::ResumeUnwind => std::panic::resume_unwind(Box::new(PanicPayload(depth))),
        Ending::Terminate => caller.terminate(Details {
            depth,
            why: "terminated by the innermost host frame",
        }),
        Ending::HostError => Err(Error::msg("the innermost host frame says no")),
        Ending::Fault(fault) => {
            let (export, arg, _) = fault.plan();
            caller.call::<i32, i32>(export, arg)
        }
        Ending::StackOverflow => caller.call::<i32, i32>("recurse", 0),
        Ending::KillInWasm => {
            caller.data().spinning.store(true, Ordering::SeqCst);
            caller.call::<i32, i32>("spin", 0)
        }
        Ending::KillInHostcall => {
            let (entered, proceed) = caller.data().handshake.as_ref().unwrap();
            entered.send(()).unwrap();
            proceed.recv().unwrap();
            assert!(caller.is_termination_pending());
            Ok(0)
        }
        Ending::DropWhileYielded | Ending::ResetWhileYielded => {
            let resumed: i32 = caller.suspend(YieldValue(depth));
            Ok(resumed)
        }
    }
}

/// Keeps the default panic hook for every panic except this file's typed
/// payload, whose message would only be noise.
fn quiet_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<PanicPayload>() {
                default(info);
            }
        }));
    });
}

struct Fixture {
    engine: Engine,
    module: Module,
    linker: Linker<State>,
}

fn fixture() -> Fixture {
    quiet_panic_hook();
    let engine = Engine::default();
    let module = Module::new(&engine, GUEST).unwrap();
    let mut linker = Linker::new(&engine);
    linker.func_wrap("host", "h", h).unwrap();
    Fixture {
        engine,
        module,
        linker,
    }
}

/// Expects `outcome` to be a yield of `YieldValue(0)` (the innermost depth).
fn expect_yield(outcome: Result<Outcome<i32>, Error>) {
    match outcome {
        Ok(Outcome::Yielded(value)) => {
            let value = value.downcast::<YieldValue>().expect("the yielded type");
            assert_eq!(*value, YieldValue(0));
        }
        Ok(Outcome::Returned(r)) => panic!("expected a yield, the call returned {r}"),
        Err(e) => panic!("expected a yield, the call failed: {e} ({e:?})"),
    }
}

/// Expects the call to have ended with a panic carrying `PanicPayload(0)`.
fn expect_panic(result: Result<Result<i32, Error>, Box<dyn Any + Send>>) {
    match result {
        Ok(r) => panic!("the host panic did not reach the embedder; the call gave {r:?}"),
        Err(payload) => {
            let payload = payload
                .downcast::<PanicPayload>()
                .expect("the embedder gets the original payload type");
            assert_eq!(*payload, PanicPayload(0));
        }
    }
}

#[track_caller]
fn expect_trap(result: Result<i32, Error>, code: TrapCode) {
    match result {
        Err(Error::Trap(trap)) => assert_eq!(trap.code(), code, "{trap}"),
        other => panic!("expected a {code:?} trap, got {other:?}"),
    }
}

/// Runs the killer for `KillInWasm`: once the innermost frame is about to
/// spin, terminates with `switch` until the call returns; gives back every
/// outcome it saw.
fn spawn_wasm_killer(
    store: &Store<State>,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<KillOutcome>> {
    // Obtained before the call: it targets the next run.
    let switch = store.kill_switch();
    let spinning = store.data().spinning.clone();
    std::thread::spawn(move || {
        let mut outcomes = Vec::new();
        while !done.load(Ordering::SeqCst) {
            if spinning.load(Ordering::SeqCst) {
                outcomes.push(switch.terminate());
            }
            std::thread::yield_now();
        }
        outcomes
    })
}

fn run_case(fixture: &Fixture, ending: Ending, depth: i32) {
    let case = format!("{ending:?} at depth {depth}");
    let counters = Arc::new(Counters::default());
    let locks = Arc::new(Locks::default());
    let (entered_tx, entered_rx) = mpsc::channel();
    let (proceed_tx, proceed_rx) = mpsc::channel();
    let mut store = Store::new(
        &fixture.engine,
        State {
            ending,
            outer_depth: depth,
            counters: counters.clone(),
            locks: locks.clone(),
            spinning: Arc::new(AtomicBool::new(false)),
            handshake: Some((entered_tx, proceed_rx)),
        },
    );
    let instance = fixture
        .linker
        .instantiate(&mut store, &fixture.module)
        .unwrap();
    let frames = depth as usize + 1;

    // Whether the run ends by unwinding through the host frames.
    let unwound = ending != Ending::Return;
    match ending {
        Ending::Return => {
            assert_eq!(
                instance.call::<i32, i32>(&mut store, "run", depth).unwrap(),
                depth + 1
            );
        }
        Ending::PanicAny | Ending::ResumeUnwind => {
            expect_panic(catch_unwind(AssertUnwindSafe(|| {
                instance.call::<i32, i32>(&mut store, "run", depth)
            })));
            assert!(store.is_poisoned(), "{case}");
            assert_eq!(store.state(), StoreState::Poisoned);
            assert!(matches!(
                instance.call::<i32, i32>(&mut store, "run", depth),
                Err(Error::InstanceState(_))
            ));
        }
        Ending::Terminate => match instance.call::<i32, i32>(&mut store, "run", depth) {
            Err(Error::Terminated(details)) => {
                let details = details.downcast::<Details>().expect("the details' type");
                assert_eq!(
                    *details,
                    Details {
                        depth: 0,
                        why: "terminated by the innermost host frame"
                    }
                );
            }
            other => panic!("{case}: expected Terminated, got {other:?}"),
        },
        Ending::HostError => match instance.call::<i32, i32>(&mut store, "run", depth) {
            Err(Error::Message(m)) => assert_eq!(m, "the innermost host frame says no"),
            other => panic!("{case}: expected the host's error, got {other:?}"),
        },
        Ending::Fault(fault) => {
            expect_trap(
                instance.call::<i32, i32>(&mut store, "run", depth),
                fault.plan().2,
            );
        }
        Ending::StackOverflow => {
            expect_trap(
                instance.call::<i32, i32>(&mut store, "run", depth),
                TrapCode::StackOverflow,
            );
        }
        Ending::KillInWasm => {
            let done = Arc::new(AtomicBool::new(false));
            let killer = spawn_wasm_killer(&store, done.clone());
            let result = instance.call::<i32, i32>(&mut store, "run", depth);
            done.store(true, Ordering::SeqCst);
            let outcomes = killer.join().unwrap();
            assert!(matches!(result, Err(Error::Killed)), "{case}: {result:?}");
            // The first terminate found the run in progress; later ones may
            // find it over. (It reports `PendingInHostcall` although the
            // guest is spinning in Wasm: see
            // `kill_in_nested_wasm_reports_interrupted`.)
            assert!(
                matches!(
                    outcomes.first(),
                    Some(KillOutcome::Interrupted | KillOutcome::PendingInHostcall)
                ),
                "{case}: {outcomes:?}"
            );
        }
        Ending::KillInHostcall => {
            let switch = store.kill_switch();
            let killer = std::thread::spawn(move || {
                entered_rx.recv().unwrap();
                let outcome = switch.terminate();
                proceed_tx.send(()).unwrap();
                outcome
            });
            let result = instance.call::<i32, i32>(&mut store, "run", depth);
            assert_eq!(killer.join().unwrap(), KillOutcome::PendingInHostcall);
            assert!(matches!(result, Err(Error::Killed)), "{case}: {result:?}");
        }
        Ending::DropWhileYielded | Ending::ResetWhileYielded => {
            expect_yield(instance.call_resumable::<i32, i32>(&mut store, "run", depth));
            assert_eq!(store.state(), StoreState::Suspended);
            // Every frame is alive while suspended, and the outer one still
            // holds its locks.
            assert_eq!(counters.get(), (frames, 0), "{case}: while suspended");
            assert!(locks.pl.try_lock().is_none(), "{case}: lock held");
            assert!(matches!(
                locks.std.try_lock(),
                Err(TryLockError::WouldBlock)
            ));
            if ending == Ending::DropWhileYielded {
                drop(store);
                check_cleanup(&case, &counters, &locks, frames, unwound);
                return;
            }
            store.reset().unwrap();
            assert_eq!(store.state(), StoreState::Ready);
        }
    }
    check_cleanup(&case, &counters, &locks, frames, unwound);

    // The store is usable again: after a reset if it was poisoned.
    if store.is_poisoned() {
        store.reset().unwrap();
    }
    store.data_mut().ending = Ending::Return;
    assert_eq!(
        instance.call::<i32, i32>(&mut store, "run", depth).unwrap(),
        depth + 1,
        "{case}: the call after the ending"
    );
    assert_eq!(counters.get(), (2 * frames, 2 * frames), "{case}: after");
}

/// The checks after every ending: every frame created was dropped, and the
/// locks of the outermost frame are free.
fn check_cleanup(case: &str, counters: &Counters, locks: &Locks, frames: usize, unwound: bool) {
    assert_eq!(
        counters.get(),
        (frames, frames),
        "{case}: (created, dropped) host frames"
    );
    assert!(
        locks.pl.try_lock().is_some(),
        "{case}: the parking_lot mutex is still locked"
    );
    // An unwind that passes a `std::sync::MutexGuard` poisons the mutex
    // (std's documented behaviour for any unwind, and `Caller::terminate`
    // documents it for Backstop's forced unwinds too). So `Poisoned` is
    // expected exactly when the run ended by unwinding; `WouldBlock` would
    // mean the guard was never dropped.
    match locks.std.try_lock() {
        Ok(_) => assert!(!unwound, "{case}: an unwind did not poison the std mutex"),
        Err(TryLockError::Poisoned(_)) => {
            assert!(unwound, "{case}: a normal return poisoned the std mutex")
        }
        Err(TryLockError::WouldBlock) => panic!("{case}: the std mutex is still held"),
    }
}

fn check(ending: Ending) {
    let fixture = fixture();
    for depth in DEPTHS {
        run_case(&fixture, ending, depth);
    }
}

macro_rules! matrix {
    ($($name:ident => $ending:expr,)*) => {
        $(
            #[test]
            fn $name() {
                check($ending);
            }
        )*
    };
}

matrix! {
    return_normally => Ending::Return,
    host_panic_any => Ending::PanicAny,
    host_resume_unwind => Ending::ResumeUnwind,
    terminate => Ending::Terminate,
    host_error => Ending::HostError,
    fault_out_of_bounds_load => Ending::Fault(Fault::OutOfBoundsLoad),
    fault_unreachable => Ending::Fault(Fault::Unreachable),
    fault_divide_by_zero => Ending::Fault(Fault::DivideByZero),
    fault_integer_overflow => Ending::Fault(Fault::IntegerOverflow),
    fault_bad_conversion => Ending::Fault(Fault::BadConversion),
    fault_indirect_call_to_null => Ending::Fault(Fault::IndirectCallToNull),
    fault_indirect_call_bad_signature => Ending::Fault(Fault::IndirectCallBadSignature),
    fault_table_out_of_bounds => Ending::Fault(Fault::TableOutOfBounds),
    stack_overflow => Ending::StackOverflow,
    kill_in_wasm => Ending::KillInWasm,
    kill_in_hostcall => Ending::KillInHostcall,
    drop_while_yielded => Ending::DropWhileYielded,
    reset_while_yielded => Ending::ResetWhileYielded,
}

/// A kill while the guest spins in Wasm code of a nested segment (guest ->
/// host -> guest) should report `Interrupted`: the guest is in Wasm and
/// stops there (by the interrupt signal), not "when the hostcall returns".
#[test]
fn kill_in_nested_wasm_reports_interrupted() {
    let fixture = fixture();
    let (entered_tx, _entered_rx) = mpsc::channel();
    let (_proceed_tx, proceed_rx) = mpsc::channel();
    let mut store = Store::new(
        &fixture.engine,
        State {
            ending: Ending::KillInWasm,
            outer_depth: 0,
            counters: Arc::new(Counters::default()),
            locks: Arc::new(Locks::default()),
            spinning: Arc::new(AtomicBool::new(false)),
            handshake: Some((entered_tx, proceed_rx)),
        },
    );
    let instance = fixture
        .linker
        .instantiate(&mut store, &fixture.module)
        .unwrap();
    let switch = store.kill_switch();
    let spinning = store.data().spinning.clone();
    let killer = std::thread::spawn(move || {
        while !spinning.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        // Give the innermost frame time to enter `spin` (a late kill is
        // still correct: it then fires at `spin`'s entry check).
        std::thread::sleep(std::time::Duration::from_millis(20));
        switch.terminate()
    });
    // h(0) calls the guest's `spin`, which loops until killed.
    let result = instance.call::<i32, i32>(&mut store, "run", 0);
    assert!(matches!(result, Err(Error::Killed)), "{result:?}");
    assert_eq!(killer.join().unwrap(), KillOutcome::Interrupted);
}

/// A host function that catches Backstop's unwind and swallows it must not
/// run guest code afterwards: `src/ending/exit.rs` promises the end of the run is
/// raised again "as soon as that host function returns to the guest or
/// calls back into it". `Caller::call_dynamic` re-raises; `Caller::call`
/// runs the nested segment first.
#[test]
fn swallowed_unwind_then_caller_call_runs_no_guest_code() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (import "host" "outer" (func $outer))
             (import "host" "end" (func $end))
             (import "host" "side_effect" (func $side_effect))
             (func (export "run") (call $outer))
             (func (export "end") (call $end))
             (func (export "side_effect") (call $side_effect)))"#,
    )
    .unwrap();
    let mut linker: Linker<Arc<AtomicBool>> = Linker::new(&engine);
    linker
        .func_wrap(
            "host",
            "outer",
            |mut caller: Caller<'_, Arc<AtomicBool>>| {
                let swallowed = catch_unwind(AssertUnwindSafe(|| caller.call::<(), ()>("end", ())));
                assert!(
                    swallowed.is_err(),
                    "the termination unwind reached this frame"
                );
                // The run is over: this must not run the guest.
                let _ = caller.call::<(), ()>("side_effect", ());
            },
        )
        .unwrap();
    linker
        .func_wrap(
            "host",
            "end",
            |mut caller: Caller<'_, Arc<AtomicBool>>| -> () { caller.terminate(5u32) },
        )
        .unwrap();
    linker
        .func_wrap(
            "host",
            "side_effect",
            |caller: Caller<'_, Arc<AtomicBool>>| {
                caller.data().store(true, Ordering::SeqCst);
            },
        )
        .unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let mut store = Store::new(&engine, ran.clone());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let result = instance.call::<(), ()>(&mut store, "run", ());
    match result {
        Err(Error::Terminated(details)) => assert_eq!(*details.downcast::<u32>().unwrap(), 5),
        other => panic!("expected Terminated, got {other:?}"),
    }
    assert!(
        !ran.load(Ordering::SeqCst),
        "guest code ran after the run was terminated"
    );
}
