//! The kill switch (per store: `store.kill_switch()`) stops a guest from
//! another thread: in a tight loop with no calls, in deep recursion, inside
//! a host function (pending until it returns), before the run (cancelled),
//! and not at all once the run it targets is over (or its store dropped).
//! Races of terminate against entry and exit never stop a later run and
//! never crash.

use backstop::{Caller, Engine, Error, Instance, KillOutcome, Linker, Module, Store};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

const GUEST: &str = r#"
    (module
      (import "host" "wait" (func $wait))
      (import "host" "tick" (func $tick))
      (func (export "spin") (loop $l (br $l)))
      (func $down (param i32)
        (if (local.get 0) (then (call $down (i32.sub (local.get 0) (i32.const 1))))))
      (func (export "recurse_forever") (loop $l (call $down (i32.const 5000)) (br $l)))
      (func (export "call_wait") (call $wait))
      (func (export "tick") (call $tick))
      (func (export "fault") (result i32)
        (local i32)
        (loop $l
          (local.set 0 (i32.add (local.get 0) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get 0) (i32.const 100))))
        (i32.load (i32.const -4)))
      (memory 1)
      (func (export "short") (result i32)
        (local i32)
        (loop $l
          (local.set 0 (i32.add (local.get 0) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get 0) (i32.const 200))))
        (local.get 0)))
"#;

struct Guard(Arc<AtomicUsize>);
impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

struct Host {
    entered: Option<mpsc::Sender<()>>,
    proceed: Option<mpsc::Receiver<()>>,
    saw_pending: Arc<AtomicBool>,
    dropped: Arc<AtomicUsize>,
    ticks: Arc<AtomicUsize>,
}

fn instance(engine: &Engine, host: Host) -> (Store<Host>, Instance) {
    let module = Module::new(engine, GUEST).unwrap();
    let mut linker = Linker::new(engine);
    linker
        .func_wrap("host", "wait", |caller: Caller<'_, Host>| {
            let _guard = Guard(caller.data().dropped.clone());
            caller.data().entered.as_ref().unwrap().send(()).unwrap();
            caller.data().proceed.as_ref().unwrap().recv().unwrap();
            caller
                .data()
                .saw_pending
                .store(caller.is_termination_pending(), Ordering::SeqCst);
        })
        .unwrap();
    linker
        .func_wrap("host", "tick", |caller: Caller<'_, Host>| {
            caller.data().ticks.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let mut store = Store::new(engine, host);
    let instance = linker.instantiate(&mut store, &module).unwrap();
    (store, instance)
}

fn plain_host() -> Host {
    Host {
        entered: None,
        proceed: None,
        saw_pending: Arc::new(AtomicBool::new(false)),
        dropped: Arc::new(AtomicUsize::new(0)),
        ticks: Arc::new(AtomicUsize::new(0)),
    }
}

/// Terminates `export` while it runs (or just before it starts).
fn kill_while_running(export: &str) {
    let engine = Engine::default();
    let (mut store, instance) = instance(&engine, plain_host());
    for _ in 0..20 {
        let (started_tx, started_rx) = mpsc::channel::<backstop::KillSwitch>();
        let killer = std::thread::spawn(move || {
            let switch = started_rx.recv().unwrap();
            std::thread::sleep(Duration::from_millis(2));
            // Usually the run is in Wasm by now; if the thread was slow to
            // start it, the run is cancelled instead. Either way it stops.
            let outcome = switch.terminate();
            assert!(
                matches!(
                    outcome,
                    KillOutcome::Interrupted | KillOutcome::CancelledBeforeStart
                ),
                "unexpected outcome {outcome:?}"
            );
        });
        started_tx.send(store.kill_switch()).unwrap();
        let result = instance.call::<(), ()>(&mut store, export, ());
        assert!(matches!(result, Err(Error::Killed)), "{result:?}");
        killer.join().unwrap();
    }
    // Not killed any more afterwards.
    assert_eq!(
        instance.call::<(), i32>(&mut store, "short", ()).unwrap(),
        200
    );
}

#[test]
fn stops_a_tight_loop() {
    kill_while_running("spin");
}

#[test]
fn stops_deep_recursion() {
    kill_while_running("recurse_forever");
}

#[test]
fn pending_in_a_hostcall_until_it_returns() {
    let engine = Engine::default();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (proceed_tx, proceed_rx) = mpsc::channel();
    let host = Host {
        entered: Some(entered_tx),
        proceed: Some(proceed_rx),
        ..plain_host()
    };
    let saw_pending = host.saw_pending.clone();
    let dropped = host.dropped.clone();
    let (mut store, instance) = instance(&engine, host);
    let switch = store.kill_switch();
    let killer = std::thread::spawn(move || {
        entered_rx.recv().unwrap();
        let outcome = switch.terminate();
        proceed_tx.send(()).unwrap();
        outcome
    });
    let result = instance.call::<(), ()>(&mut store, "call_wait", ());
    assert!(matches!(result, Err(Error::Killed)), "{result:?}");
    assert_eq!(killer.join().unwrap(), KillOutcome::PendingInHostcall);
    assert!(saw_pending.load(Ordering::SeqCst));
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

#[test]
fn cancels_the_next_run_when_idle() {
    let engine = Engine::default();
    let host = plain_host();
    let ticks = host.ticks.clone();
    let (mut store, instance) = instance(&engine, host);
    let switch = store.kill_switch();
    assert_eq!(switch.terminate(), KillOutcome::CancelledBeforeStart);
    assert!(matches!(
        instance.call::<(), ()>(&mut store, "tick", ()),
        Err(Error::Killed)
    ));
    assert_eq!(
        ticks.load(Ordering::SeqCst),
        0,
        "the cancelled run never started"
    );
    instance.call::<(), ()>(&mut store, "tick", ()).unwrap();
    assert_eq!(ticks.load(Ordering::SeqCst), 1);
    // The switch targeted the cancelled run, which is over.
    assert_eq!(switch.terminate(), KillOutcome::NothingToTerminate);
    instance.call::<(), ()>(&mut store, "tick", ()).unwrap();
}

#[test]
fn nothing_to_terminate_after_the_run_or_drop() {
    let engine = Engine::default();
    let (mut store, instance) = instance(&engine, plain_host());
    let switch = store.kill_switch();
    instance.call::<(), i32>(&mut store, "short", ()).unwrap();
    assert_eq!(switch.terminate(), KillOutcome::NothingToTerminate);
    assert_eq!(
        instance.call::<(), i32>(&mut store, "short", ()).unwrap(),
        200
    );
    let next = store.kill_switch();
    drop(store);
    assert_eq!(next.terminate(), KillOutcome::NothingToTerminate);
}

#[test]
fn terminate_races_entry_exit_and_itself() {
    let engine = Engine::default();
    let (mut store, instance) = instance(&engine, plain_host());
    let (tx, rx) = mpsc::channel::<backstop::KillSwitch>();
    let rx = Arc::new(std::sync::Mutex::new(rx));
    let killers: Vec<_> = (0..2)
        .map(|_| {
            let rx = rx.clone();
            std::thread::spawn(move || {
                while let Ok(switch) = rx.lock().unwrap().recv() {
                    for _ in 0..3 {
                        let _ = switch.terminate();
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();
    let mut killed = 0;
    for _ in 0..2000 {
        let switch = store.kill_switch();
        tx.send(switch.clone()).unwrap();
        tx.send(switch).unwrap();
        match instance.call::<(), i32>(&mut store, "short", ()) {
            Ok(v) => assert_eq!(v, 200),
            Err(Error::Killed) => killed += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    drop(tx);
    for k in killers {
        k.join().unwrap();
    }
    // However the races went, no request leaks into a later run.
    for _ in 0..10 {
        assert_eq!(
            instance.call::<(), i32>(&mut store, "short", ()).unwrap(),
            200
        );
    }
    println!("{killed} of 2000 racing runs were killed");
}

#[test]
fn terminate_races_a_fault() {
    let engine = Engine::default();
    let (mut store, instance) = instance(&engine, plain_host());
    let (tx, rx) = mpsc::channel::<backstop::KillSwitch>();
    let killer = std::thread::spawn(move || {
        while let Ok(switch) = rx.recv() {
            let _ = switch.terminate();
        }
    });
    let (mut trapped, mut killed) = (0, 0);
    for _ in 0..2000 {
        tx.send(store.kill_switch()).unwrap();
        match instance.call::<(), i32>(&mut store, "fault", ()) {
            Err(Error::Trap(t)) => {
                assert_eq!(t.code(), backstop::TrapCode::MemoryOutOfBounds);
                trapped += 1;
            }
            Err(Error::Killed) => killed += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(tx);
    killer.join().unwrap();
    assert_eq!(trapped + killed, 2000);
    for _ in 0..10 {
        assert_eq!(
            instance.call::<(), i32>(&mut store, "short", ()).unwrap(),
            200
        );
    }
    println!("{trapped} faulted, {killed} killed first");
}

/// A host function that waits on a descriptor with `Caller::wait_for_fd`
/// (here a pipe nobody writes to) is woken by a kill: the wait returns
/// `Waited::Killed`, the host function returns, its destructors run, and
/// the call ends with `Error::Killed`. `Caller::sleep` is cut short too.
#[test]
fn a_kill_wakes_a_host_function_waiting_on_a_descriptor() {
    use backstop::{WaitFor, Waited};
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Guard(Arc<AtomicUsize>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let waited: Arc<parking_lot::Mutex<Vec<Waited>>> = Default::default();
    let engine = backstop::Engine::default();
    let module = backstop::Module::new(
        &engine,
        r#"(module (import "host" "wait" (func $wait)) (import "host" "sleep" (func $sleep))
             (func (export "wait") (call $wait))
             (func (export "sleep") (call $sleep)))"#,
    )
    .unwrap();
    let mut linker = backstop::Linker::new(&engine);
    let (d, w) = (dropped.clone(), waited.clone());
    linker
        .func_wrap("host", "wait", move |caller: backstop::Caller<'_, ()>| {
            let _guard = Guard(d.clone());
            let mut fds = [0; 2];
            // SAFETY: pipe writes two new descriptors into the array.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            // SAFETY: both are fresh descriptors owned by nobody else.
            let (read, _write) =
                unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            use std::os::fd::AsFd;
            let outcome = caller.wait_for_fd(read.as_fd(), WaitFor::Readable, None);
            w.lock().push(outcome);
        })
        .unwrap();
    let w = waited.clone();
    linker
        .func_wrap("host", "sleep", move |caller: backstop::Caller<'_, ()>| {
            w.lock()
                .push(caller.sleep(std::time::Duration::from_secs(60)));
        })
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    for name in ["wait", "sleep"] {
        let switch = store.kill_switch();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            switch.terminate()
        });
        let started = std::time::Instant::now();
        let result = instance.call::<(), ()>(&mut store, name, ());
        assert!(
            matches!(result, Err(backstop::Error::Killed)),
            "{name}: {result:?}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{name}"
        );
        assert_eq!(
            killer.join().unwrap(),
            backstop::KillOutcome::PendingInHostcall,
            "{name}"
        );
    }
    assert_eq!(*waited.lock(), [Waited::Killed, Waited::Killed]);
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    // Without a kill, a sleep runs to its end.
    let w = waited.clone();
    let module = backstop::Module::new(
        &engine,
        r#"(module (import "host" "short" (func $f)) (func (export "run") (call $f)))"#,
    )
    .unwrap();
    let mut linker = backstop::Linker::new(&engine);
    linker
        .func_wrap("host", "short", move |caller: backstop::Caller<'_, ()>| {
            w.lock()
                .push(caller.sleep(std::time::Duration::from_millis(1)));
        })
        .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    waited.lock().clear();
    instance.call::<(), ()>(&mut store, "run", ()).unwrap();
    assert_eq!(*waited.lock(), [Waited::TimedOut]);
}
