//! Explicit termination (`Caller::terminate`) and errors returned by host
//! functions: the whole guest stack unwinds at any nesting depth, every host
//! destructor runs, the details come back intact, and a host function that
//! swallows the unwind cannot stop the teardown.

use backstop::{Caller, Engine, Error, Linker, Module, Store};
use std::sync::atomic::Ordering;
use std::sync::Arc;

mod common;
use common::{Counters, Guard};

#[derive(Debug, PartialEq)]
struct Reason {
    code: u32,
    text: String,
}

const NESTING_MODULE: &str = r#"
    (module
      (import "host" "down" (func $down (param i32) (result i32)))
      (func (export "run") (param i32) (result i32)
        (i32.add (call $down (local.get 0)) (i32.const 1))))
"#;

/// How the innermost host frame ends the run.
#[derive(Clone, Copy)]
enum Ending {
    Terminate,
    ReturnErr,
    /// Terminates, but an intermediate host frame catches the unwind and
    /// swallows it.
    TerminateSwallowed,
}

fn linker(engine: &Engine, counters: Arc<Counters>, ending: Ending) -> Linker<()> {
    let mut linker = Linker::new(engine);
    linker
        .func_wrap(
            "host",
            "down",
            move |mut caller: Caller<'_, ()>, depth: i32| -> Result<i32, Error> {
                let _guard = Guard::new(&counters);
                if depth > 0 {
                    if matches!(ending, Ending::TerminateSwallowed) && depth == 1 {
                        let swallowed =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                caller.call::<i32, i32>("run", depth - 1)
                            }));
                        assert!(swallowed.is_err(), "the unwind reached this frame");
                        // Returning normally: the runtime must end the run anyway.
                        return Ok(0);
                    }
                    return caller.call::<i32, i32>("run", depth - 1);
                }
                match ending {
                    Ending::Terminate | Ending::TerminateSwallowed => caller.terminate(Reason {
                        code: 7,
                        text: "stop".into(),
                    }),
                    Ending::ReturnErr => Err(Error::msg("host says no")),
                }
            },
        )
        .unwrap();
    linker
}

fn run(ending: Ending, depth: i32) -> (Error, Arc<Counters>) {
    let engine = Engine::default();
    let module = Module::new(&engine, NESTING_MODULE).unwrap();
    let counters = Arc::new(Counters::default());
    let linker = linker(&engine, counters.clone(), ending);
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let error = instance
        .call::<i32, i32>(&mut store, "run", depth)
        .unwrap_err();
    assert!(!store.is_poisoned());
    (error, counters)
}

#[test]
fn terminate_unwinds_every_segment_with_details() {
    for depth in [0, 1, 2, 50] {
        let (error, counters) = run(Ending::Terminate, depth);
        let details = error.into_termination().expect("Error::Terminated");
        let reason = details
            .downcast::<Reason>()
            .expect("details keep their type");
        assert_eq!(
            *reason,
            Reason {
                code: 7,
                text: "stop".into()
            }
        );
        let created = counters.created.load(Ordering::SeqCst);
        assert_eq!(created, depth as usize + 1);
        assert_eq!(counters.dropped.load(Ordering::SeqCst), created);
    }
}

#[test]
fn host_error_comes_back_intact() {
    for depth in [0, 1, 2, 50] {
        let (error, counters) = run(Ending::ReturnErr, depth);
        assert!(
            matches!(&error, Error::Message(m) if m == "host says no"),
            "{error:?}"
        );
        let created = counters.created.load(Ordering::SeqCst);
        assert_eq!(created, depth as usize + 1);
        assert_eq!(counters.dropped.load(Ordering::SeqCst), created);
    }
}

#[test]
fn swallowed_unwind_still_ends_the_run() {
    for depth in [2, 3, 50] {
        let (error, counters) = run(Ending::TerminateSwallowed, depth);
        let details = error.into_termination().expect("still Error::Terminated");
        assert_eq!(details.downcast::<Reason>().unwrap().code, 7);
        let created = counters.created.load(Ordering::SeqCst);
        assert_eq!(created, depth as usize + 1);
        assert_eq!(counters.dropped.load(Ordering::SeqCst), created);
    }
}

#[test]
fn instance_is_reusable_after_termination() {
    let engine = Engine::default();
    let module = Module::new(&engine, NESTING_MODULE).unwrap();
    let counters = Arc::new(Counters::default());
    let linker = linker(&engine, counters.clone(), Ending::Terminate);
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    for _ in 0..1000 {
        assert!(matches!(
            instance.call::<i32, i32>(&mut store, "run", 3),
            Err(Error::Terminated(_))
        ));
    }
    assert_eq!(counters.created.load(Ordering::SeqCst), 4000);
    assert_eq!(counters.dropped.load(Ordering::SeqCst), 4000);
}

/// A host function re-entering itself through an export that is the host
/// import itself (no Wasm frame, so no prologue stack check in between)
/// would eat the host reserve; hostcall entry refuses once half of it is
/// gone, with a StackOverflow trap, and every frame unwinds.
#[test]
fn host_recursion_without_guest_frames_traps_stack_overflow() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module (import "host" "again" (func $again)) (export "again" (func $again)))"#,
    )
    .unwrap();
    let counters = Arc::new(Counters::default());
    let c = counters.clone();
    let mut linker: Linker<()> = Linker::new(&engine);
    linker
        .func_wrap(
            "host",
            "again",
            move |mut caller: Caller<'_, ()>| -> Result<(), Error> {
                let _guard = Guard::new(&c);
                let padding = std::hint::black_box([0u8; 512]);
                caller.call::<(), ()>("again", ())?;
                std::hint::black_box(padding);
                Ok(())
            },
        )
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    for _ in 0..3 {
        let error = instance
            .call::<(), ()>(&mut store, "again", ())
            .unwrap_err();
        assert_eq!(
            error.trap_code(),
            Some(backstop::TrapCode::StackOverflow),
            "{error}"
        );
        let created = counters.created.load(Ordering::SeqCst);
        assert!(created > 10);
        assert_eq!(counters.dropped.load(Ordering::SeqCst), created);
    }
}
