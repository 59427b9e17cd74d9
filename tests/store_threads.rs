//! Eight threads, each with stores of its own holding instances of one
//! shared `Module` (and one shared `Linker`), run every ending at once:
//! return, trap, stack overflow, termination, host error, host panic, kill,
//! yield and resume, drop and reset while suspended, each under nested
//! segments. Every thread counts its own guards exactly, so a run that
//! disturbed another thread's store would show.

use backstop::{Caller, Engine, Error, KillOutcome, Linker, Module, Outcome, Store, TrapCode};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

mod common;
use common::{Counters, Guard};

const GUEST: &str = r#"
    (module
      (import "host" "h" (func $h (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "run") (param i32 i32) (result i32)
        (i32.add (call $h (local.get 0) (local.get 1)) (i32.const 1)))
      (func (export "unreachable") (result i32) unreachable)
      (func $recurse (export "recurse") (param i32) (result i32)
        (i32.add (call $recurse (local.get 0)) (i32.const 1)))
      (func (export "spin") (result i32) (loop $l (br $l)) (i32.const 0)))
"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Return,
    Trap,
    StackOverflow,
    Terminate,
    HostError,
    HostPanic,
    Kill,
    YieldResume,
    YieldDrop,
    YieldReset,
}

const ENDINGS: [Ending; 10] = [
    Ending::Return,
    Ending::Trap,
    Ending::StackOverflow,
    Ending::Terminate,
    Ending::HostError,
    Ending::HostPanic,
    Ending::Kill,
    Ending::YieldResume,
    Ending::YieldDrop,
    Ending::YieldReset,
];

struct Host {
    counters: Arc<Counters>,
}

struct HostPanic;

/// `h(depth, ending)`: holds a guard; above depth 0 calls back into the
/// guest; at depth 0 ends the run as `ENDINGS[ending]` says.
fn linker(engine: &Engine) -> Linker<Host> {
    let mut linker = Linker::new(engine);
    linker
        .func_wrap(
            "host",
            "h",
            |mut caller: Caller<'_, Host>, depth: i32, ending: i32| -> Result<i32, Error> {
                let _guard = Guard::new(&caller.data().counters);
                if depth > 0 {
                    return caller.call::<(i32, i32), i32>("run", (depth - 1, ending));
                }
                match ENDINGS[ending as usize] {
                    Ending::Return => Ok(100),
                    Ending::Trap => caller.call::<(), i32>("unreachable", ()),
                    Ending::StackOverflow => caller.call::<i32, i32>("recurse", 0),
                    Ending::Terminate => caller.terminate(7u32),
                    Ending::HostError => Err(Error::msg("host error")),
                    Ending::HostPanic => std::panic::panic_any(HostPanic),
                    Ending::Kill => caller.call::<(), i32>("spin", ()),
                    Ending::YieldResume | Ending::YieldDrop | Ending::YieldReset => {
                        Ok(caller.suspend::<i32>(depth))
                    }
                }
            },
        )
        .unwrap();
    linker
}

/// Runs one ending at `depth` in a fresh store and checks its outcome and
/// that every guard it made was dropped (or is still alive while
/// suspended).
fn one_case(linker: &Linker<Host>, module: &Module, engine: &Engine, ending: Ending, depth: i32) {
    let counters = Arc::new(Counters::default());
    let mut store = Store::new(
        engine,
        Host {
            counters: counters.clone(),
        },
    );
    let instance = linker.instantiate(&mut store, module).unwrap();
    let args = (
        depth,
        ENDINGS.iter().position(|e| *e == ending).unwrap() as i32,
    );
    let expected_frames = depth as usize + 1;
    let killer = (ending == Ending::Kill).then(|| {
        let switch = store.kill_switch();
        let counters = counters.clone();
        // Kill once every host frame exists, so the guest is in `spin`
        // (a kill before the run starts would cancel it without frames).
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while counters.created.load(Ordering::SeqCst) < expected_frames {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the run never reached spin"
                );
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            loop {
                match switch.terminate() {
                    KillOutcome::Interrupted => break,
                    KillOutcome::PendingInHostcall => {
                        // Still on its way from the last host frame into spin.
                        std::thread::sleep(std::time::Duration::from_micros(200))
                    }
                    other => panic!("unexpected kill outcome {other:?}"),
                }
            }
        })
    });
    let result = catch_unwind(AssertUnwindSafe(|| {
        instance.call_resumable::<(i32, i32), i32>(&mut store, "run", args)
    }));
    if let Some(killer) = killer {
        killer.join().unwrap();
    }
    match ending {
        Ending::Return => {
            assert!(
                matches!(result, Ok(Ok(Outcome::Returned(r))) if r == 100 + expected_frames as i32)
            )
        }
        Ending::Trap => assert!(
            matches!(&result, Ok(Err(Error::Trap(t))) if t.code() == TrapCode::UnreachableCodeReached),
            "{result:?}"
        ),
        Ending::StackOverflow => assert!(
            matches!(&result, Ok(Err(Error::Trap(t))) if t.code() == TrapCode::StackOverflow),
            "{result:?}"
        ),
        Ending::Terminate => match result {
            Ok(Err(Error::Terminated(details))) => {
                assert_eq!(*details.downcast::<u32>().unwrap(), 7)
            }
            other => panic!("{other:?}"),
        },
        Ending::HostError => {
            assert!(matches!(&result, Ok(Err(e)) if e.to_string().contains("host error")))
        }
        Ending::HostPanic => {
            assert!(result.expect_err("re-raised").is::<HostPanic>());
            assert!(store.is_poisoned());
            store.reset().unwrap();
        }
        Ending::Kill => assert!(matches!(result, Ok(Err(Error::Killed))), "{result:?}"),
        Ending::YieldResume | Ending::YieldDrop | Ending::YieldReset => {
            assert!(matches!(result, Ok(Ok(Outcome::Yielded(_)))));
            assert_eq!(
                counters.alive(),
                expected_frames,
                "frames kept while suspended"
            );
            match ending {
                Ending::YieldResume => assert!(matches!(
                    store.resume::<i32>(40).unwrap(),
                    Outcome::Returned(r) if r == 40 + expected_frames as i32
                )),
                Ending::YieldReset => store.reset().unwrap(),
                _ => {
                    drop(store);
                    assert_eq!(counters.alive(), 0);
                    assert_eq!(counters.created.load(Ordering::SeqCst), expected_frames);
                    return;
                }
            }
        }
    }
    assert_eq!(counters.alive(), 0, "{ending:?} at depth {depth}");
    assert_eq!(
        counters.created.load(Ordering::SeqCst),
        expected_frames,
        "{ending:?} at depth {depth}"
    );
    // The store is usable again.
    assert!(matches!(
        instance.call_resumable::<(i32, i32), i32>(&mut store, "run", (0, 0)),
        Ok(Outcome::Returned(101))
    ));
}

#[test]
fn eight_threads_with_stores_of_their_own_run_every_ending() {
    let engine = Engine::default();
    let module = Module::new(&engine, GUEST).unwrap();
    let linker = linker(&engine);
    std::thread::scope(|scope| {
        for thread in 0..8 {
            let (engine, module, linker) = (&engine, &module, &linker);
            scope.spawn(move || {
                for round in 0..6 {
                    for i in 0..ENDINGS.len() {
                        // Each thread walks the endings in its own order.
                        let ending = ENDINGS[(i + thread + round) % ENDINGS.len()];
                        let depth = [0, 1, 3][(thread + round + i) % 3];
                        one_case(linker, module, engine, ending, depth);
                    }
                }
            });
        }
    });
}
