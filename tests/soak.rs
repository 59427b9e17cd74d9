//! Soak: one instance, in one store, ends 100,000 runs in mixed ways and
//! its resources stay flat.
//!
//! The runs cycle deterministically through a schedule of endings: normal
//! return, traps (`unreachable`, out-of-bounds load), `Caller::terminate`, a
//! host `Err`, host panics (`panic_any` and `resume_unwind`, then
//! `store.reset()`), kills (through the store's switch,
//! `store.kill_switch()`: pending in a hostcall, and cancelled before
//! start, both deterministic, on one thread; and from a killer thread while
//! the innermost segment spins in Wasm, which lands by the interrupt signal
//! or, if the guest is not back in Wasm yet, at the nested entry), yield
//! then resume, yield then reset, and stack overflow (rarer: it is the
//! expensive one). Every run goes through nested segments of depth 2 (three
//! host frames, each with an RAII guard; the outermost also holds a std and
//! a parking_lot mutex).
//!
//! After a 5,000-run warm-up and at the end it measures the process's
//! resident set (from `/proc/self/statm`) and its number of mappings (lines
//! of `/proc/self/maps`), prints both and asserts the growth stays under a
//! bound (see `RSS_BOUND` and `MAPS_BOUND`). It also asserts that every host
//! frame ever created was dropped, after every run and at the end.

use backstop::{
    Caller, Config, Engine, Error, Instance, KillOutcome, KillSwitch, Linker, Module, Outcome,
    Store, StoreState, TrapCode,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, TryLockError};
use std::time::{Duration, Instant};

const RUNS: usize = 100_000;
const WARM_UP: usize = 5_000;
const DEPTH: i32 = 2;
const FRAMES: usize = DEPTH as usize + 1;

/// The guest stack Wasm code may use. A stack overflow unwinds every
/// recursive frame, so it costs time in proportion to this: about 14 ms
/// with the default 1 MiB on the reference machine, which at one overflow
/// per 40 runs would dominate the soak. A 64 KiB stack takes the same code
/// paths (the stack-limit check, the reserve for host frames and the
/// unwinder, the forced unwind through nested segments) in a sixteenth of
/// the time. `cleanup_matrix` covers overflows with the default stack.
const STACK_SIZE: usize = 64 << 10;

/// How much the resident set may grow between the warm-up and the end.
///
/// After the warm-up every kind of run has happened over a hundred times,
/// so the allocator's arenas, the guest stack (touched to its end by the
/// stack overflows), linear memory and the unwinder's caches are all at
/// their working size; what can still move is allocator fragmentation, a
/// few pages at most (measured: +0 KiB). A leak cannot hide under 16 MiB:
/// the 95,000 runs after the warm-up would expose ~180 bytes leaked by
/// every run; each kind of ending runs at least 4,750 times after the
/// warm-up (stack overflow 2,375), which exposes ~3.5 KiB (7 KiB) leaked
/// per run of a single kind; and a leaked guest stack, signal stack or
/// linear memory (64 KiB and up) would be gigabytes. A deliberate leak of
/// one 200-byte `Vec` per run makes this test fail (+19 MiB).
const RSS_BOUND: i64 = 16 << 20;

/// How many mappings may appear between the warm-up and the end. The
/// runtime maps the guest stack once per store, linear memory once per
/// instance and code once per module or engine, not per run; a few may
/// come and go (the allocator's arenas, the kernel merging or splitting
/// neighbouring mappings). A per-run leak of any mapping would add
/// thousands.
const MAPS_BOUND: i64 = 16;

const GUEST: &str = r#"
    (module
      (import "host" "h" (func $h (param i32) (result i32)))
      (memory 1)
      (func (export "run") (param i32) (result i32)
        (i32.add (call $h (local.get 0)) (i32.const 1)))
      (func (export "load") (param i32) (result i32)
        (i32.load (local.get 0)))
      (func (export "unreachable") (param i32) (result i32)
        unreachable)
      (func (export "spin") (param i32) (result i32)
        (loop $l (br $l))
        unreachable)
      (func $recurse (export "recurse") (param i32) (result i32)
        (i32.add (call $recurse (i32.add (local.get 0) (i32.const 1))) (i32.const 1))))
"#;

/// How the innermost host frame (or the embedder) ends a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Return,
    Unreachable,
    OutOfBounds,
    Terminate,
    HostError,
    PanicAny,
    ResumeUnwind,
    /// The innermost frame terminates the run's own kill switch: pending
    /// until it returns to Wasm.
    KillPendingInHostcall,
    /// The embedder terminates the next run before starting it.
    KillCancelledBeforeStart,
    /// The innermost frame hands the run's kill switch to the killer
    /// thread and calls an export that spins.
    KillInWasm,
    YieldResume,
    YieldReset,
    StackOverflow,
}

/// One cycle of the schedule: 40 runs, stack overflow and a kill in Wasm
/// once each.
const SCHEDULE: [Ending; 40] = {
    use Ending::*;
    [
        Return,
        Unreachable,
        Terminate,
        HostError,
        ResumeUnwind,
        KillPendingInHostcall,
        YieldResume,
        YieldReset,
        OutOfBounds,
        KillCancelledBeforeStart,
        KillInWasm,
        Unreachable,
        Terminate,
        HostError,
        PanicAny,
        KillPendingInHostcall,
        YieldResume,
        YieldReset,
        OutOfBounds,
        KillCancelledBeforeStart,
        Return,
        Unreachable,
        Terminate,
        HostError,
        ResumeUnwind,
        KillPendingInHostcall,
        YieldResume,
        YieldReset,
        OutOfBounds,
        StackOverflow,
        Return,
        Unreachable,
        Terminate,
        HostError,
        PanicAny,
        KillPendingInHostcall,
        YieldResume,
        YieldReset,
        OutOfBounds,
        KillCancelledBeforeStart,
    ]
};

#[derive(Debug, PartialEq)]
struct PanicPayload(usize);

#[derive(Debug, PartialEq)]
struct Details(usize);

mod common;
use common::{Counters, Guard};

#[derive(Default)]
struct Locks {
    std: std::sync::Mutex<()>,
    pl: parking_lot::Mutex<()>,
}

struct State {
    ending: Ending,
    /// The number of the run, carried by payloads and details.
    run: usize,
    counters: Arc<Counters>,
    locks: Arc<Locks>,
    /// For `KillPendingInHostcall` and `KillInWasm`: a switch aimed at the
    /// current run.
    switch: Option<KillSwitch>,
    /// For `KillInWasm`: the killer thread, which terminates what it gets.
    killer: std::sync::mpsc::Sender<KillSwitch>,
}

fn h(mut caller: Caller<'_, State>, depth: i32) -> Result<i32, Error> {
    let _guard = Guard::new(&caller.data().counters);
    let locks = caller.data().locks.clone();
    let _held = (depth == DEPTH).then(|| {
        (
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
    let run = caller.data().run;
    match caller.data().ending {
        Ending::Return | Ending::KillCancelledBeforeStart => Ok(0),
        Ending::Unreachable => caller.call::<i32, i32>("unreachable", 0),
        Ending::OutOfBounds => caller.call::<i32, i32>("load", 1 << 16),
        Ending::Terminate => caller.terminate(Details(run)),
        Ending::HostError => Err(Error::msg("host error")),
        Ending::PanicAny => std::panic::panic_any(PanicPayload(run)),
        Ending::ResumeUnwind => std::panic::resume_unwind(Box::new(PanicPayload(run))),
        Ending::KillPendingInHostcall => {
            let outcome = caller.data().switch.as_ref().unwrap().terminate();
            assert_eq!(outcome, KillOutcome::PendingInHostcall);
            Ok(0)
        }
        Ending::KillInWasm => {
            let switch = caller.data().switch.clone().unwrap();
            caller.data().killer.send(switch).unwrap();
            caller.call::<i32, i32>("spin", 0)
        }
        Ending::YieldResume | Ending::YieldReset => {
            let resumed: i32 = caller.suspend(run);
            Ok(resumed)
        }
        Ending::StackOverflow => caller.call::<i32, i32>("recurse", 0),
    }
}

/// Keeps the default panic hook for every panic except this file's typed
/// payload, whose message would only be noise (thousands of lines).
fn quiet_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.payload().is::<PanicPayload>() {
            default(info);
        }
    }));
}

/// (resident bytes, mappings) of this process.
fn resources() -> (i64, i64) {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let resident: i64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    let page: i64 = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let maps = std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count() as i64;
    (resident * page, maps)
}

#[track_caller]
fn expect_trap(result: Result<i32, Error>, code: TrapCode) {
    match result {
        Err(Error::Trap(trap)) => assert_eq!(trap.code(), code, "{trap}"),
        other => panic!("expected a {code:?} trap, got {other:?}"),
    }
}

#[track_caller]
fn expect_yield(outcome: Result<Outcome<i32>, Error>, run: usize) {
    match outcome {
        Ok(Outcome::Yielded(value)) => assert_eq!(*value.downcast::<usize>().unwrap(), run),
        other => panic!("expected a yield, got {other:?}"),
    }
}

/// Ends one run of `instance` (of `store`) the way `ending` says; returns
/// how many host frames it created.
fn one_run(store: &mut Store<State>, instance: Instance, ending: Ending, run: usize) -> usize {
    {
        let state = store.data_mut();
        state.ending = ending;
        state.run = run;
    }
    let result = match ending {
        Ending::Return => {
            assert_eq!(
                instance
                    .call::<i32, i32>(&mut *store, "run", DEPTH)
                    .unwrap(),
                DEPTH + 1
            );
            return FRAMES;
        }
        Ending::KillCancelledBeforeStart => {
            let switch = store.kill_switch();
            assert_eq!(switch.terminate(), KillOutcome::CancelledBeforeStart);
            let result = instance.call::<i32, i32>(&mut *store, "run", DEPTH);
            assert!(matches!(result, Err(Error::Killed)), "{result:?}");
            return 0;
        }
        Ending::KillPendingInHostcall | Ending::KillInWasm => {
            let switch = store.kill_switch();
            store.data_mut().switch = Some(switch);
            let result = instance.call::<i32, i32>(&mut *store, "run", DEPTH);
            store.data_mut().switch = None;
            assert!(matches!(result, Err(Error::Killed)), "{result:?}");
            return FRAMES;
        }
        Ending::PanicAny | Ending::ResumeUnwind => {
            let caught = catch_unwind(AssertUnwindSafe(|| {
                instance.call::<i32, i32>(&mut *store, "run", DEPTH)
            }));
            let payload = caught.expect_err("the panic reaches the embedder");
            assert_eq!(
                *payload.downcast::<PanicPayload>().unwrap(),
                PanicPayload(run)
            );
            assert!(store.is_poisoned());
            store.reset().unwrap();
            return FRAMES;
        }
        Ending::YieldResume => {
            expect_yield(
                instance.call_resumable::<i32, i32>(&mut *store, "run", DEPTH),
                run,
            );
            match store.resume::<i32>(100i32) {
                Ok(Outcome::Returned(r)) => assert_eq!(r, 100 + DEPTH + 1),
                other => panic!("expected a return after resume, got {other:?}"),
            }
            return FRAMES;
        }
        Ending::YieldReset => {
            expect_yield(
                instance.call_resumable::<i32, i32>(&mut *store, "run", DEPTH),
                run,
            );
            store.reset().unwrap();
            assert_eq!(store.state(), StoreState::Ready);
            return FRAMES;
        }
        _ => instance.call::<i32, i32>(&mut *store, "run", DEPTH),
    };
    match ending {
        Ending::Unreachable => expect_trap(result, TrapCode::UnreachableCodeReached),
        Ending::OutOfBounds => expect_trap(result, TrapCode::MemoryOutOfBounds),
        Ending::StackOverflow => expect_trap(result, TrapCode::StackOverflow),
        Ending::Terminate => match result {
            Err(Error::Terminated(details)) => {
                assert_eq!(*details.downcast::<Details>().unwrap(), Details(run));
            }
            other => panic!("expected Terminated, got {other:?}"),
        },
        Ending::HostError => match result {
            Err(Error::Message(m)) => assert_eq!(m, "host error"),
            other => panic!("expected the host error, got {other:?}"),
        },
        _ => unreachable!("handled above"),
    }
    FRAMES
}

#[test]
fn hundred_thousand_runs_keep_resources_flat() {
    quiet_panic_hook();
    let mut config = Config::new();
    config.stack_size(STACK_SIZE);
    let engine = Engine::new(&config).unwrap();
    let module = Module::new(&engine, GUEST).unwrap();
    let mut linker = Linker::new(&engine);
    linker.func_wrap("host", "h", h).unwrap();
    let counters = Arc::new(Counters::default());
    let locks = Arc::new(Locks::default());
    let (killer, kills) = std::sync::mpsc::channel::<KillSwitch>();
    std::thread::spawn(move || {
        for switch in kills {
            switch.terminate();
        }
    });
    let mut store = Store::new(
        &engine,
        State {
            ending: Ending::Return,
            run: 0,
            counters: counters.clone(),
            locks: locks.clone(),
            switch: None,
            killer,
        },
    );
    let instance = linker.instantiate(&mut store, &module).unwrap();

    let started = Instant::now();
    let mut expected_frames = 0;
    let mut per_ending: Vec<(Ending, usize, Duration)> = Vec::new();
    let mut after_warm_up = None;
    for run in 0..RUNS {
        if run == WARM_UP {
            after_warm_up = Some(resources());
        }
        let ending = SCHEDULE[run % SCHEDULE.len()];
        let t = Instant::now();
        expected_frames += one_run(&mut store, instance, ending, run);
        let elapsed = t.elapsed();
        match per_ending.iter_mut().find(|(e, _, _)| *e == ending) {
            Some((_, count, total)) => {
                *count += 1;
                *total += elapsed;
            }
            None => per_ending.push((ending, 1, elapsed)),
        }
        // Cheap enough to check after every run, so a failure names it.
        let created = counters.created.load(Ordering::Relaxed);
        let dropped = counters.dropped.load(Ordering::Relaxed);
        assert_eq!(
            (created, dropped),
            (expected_frames, expected_frames),
            "run {run} ({ending:?}): (created, dropped)"
        );
        assert!(locks.pl.try_lock().is_some(), "run {run} ({ending:?})");
        // Unwinds poison the std mutex (expected, documented); it must
        // never still be held.
        assert!(
            !matches!(locks.std.try_lock(), Err(TryLockError::WouldBlock)),
            "run {run} ({ending:?}): the std mutex is still held"
        );
    }
    let total = started.elapsed();
    let (rss_warm, maps_warm) = after_warm_up.unwrap();
    let (rss_end, maps_end) = resources();

    for (ending, count, time) in &per_ending {
        println!(
            "{ending:?}: {count} runs, {:.1} µs each",
            time.as_secs_f64() * 1e6 / *count as f64
        );
    }
    println!("{RUNS} runs in {total:?}");
    println!(
        "RSS after warm-up {:.2} MiB, at the end {:.2} MiB ({:+} KiB)",
        rss_warm as f64 / (1 << 20) as f64,
        rss_end as f64 / (1 << 20) as f64,
        (rss_end - rss_warm) / 1024
    );
    println!(
        "mappings after warm-up {maps_warm}, at the end {maps_end} ({:+})",
        maps_end - maps_warm
    );

    let created = counters.created.load(Ordering::SeqCst);
    assert_eq!(created, counters.dropped.load(Ordering::SeqCst));
    assert_eq!(created, expected_frames);
    assert!(
        rss_end - rss_warm < RSS_BOUND,
        "RSS grew by {} KiB",
        (rss_end - rss_warm) / 1024
    );
    assert!(
        maps_end - maps_warm < MAPS_BOUND,
        "mappings grew by {}",
        maps_end - maps_warm
    );
    // Still healthy at the end.
    store.data_mut().ending = Ending::Return;
    assert_eq!(
        instance.call::<i32, i32>(&mut store, "run", DEPTH).unwrap(),
        DEPTH + 1
    );
}
