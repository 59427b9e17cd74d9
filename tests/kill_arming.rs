//! The kill switch's process-wide pending word (`interrupts_pending`): every
//! interrupt check in compiled code reads it first and looks at its own
//! run's flag only while it is non-zero. A kill (from the store's switch,
//! `store.kill_switch()`) must arm it exactly while compiled code has to
//! notice the request, and every way a run ends, and the store's reset and
//! drop, must disarm it, or every guest in the process pays for the slower
//! check.
//! Its own test binary, so no other test's kills interfere.
//! The engines here compile the checks (`Config::interrupt_checks`); by
//! default a kill interrupts the guest with a signal instead, and never
//! arms the word (checked last).

use backstop::{
    interrupts_pending, kill_switch_fences, Caller, Config, Engine, Error, KillOutcome, Linker,
    Module, Outcome, Store,
};
use std::sync::mpsc;
use std::time::Duration;

const GUEST: &str = r#"
    (module
      (import "host" "wait" (func $wait))
      (import "host" "yield" (func $yield))
      (import "host" "wait_then_spin" (func $wait_then_spin))
      (func (export "spin") (loop $l (br $l)))
      (func (export "call_wait") (call $wait) (loop $l (br $l)))
      (func (export "call_wait_then_spin") (call $wait_then_spin))
      (func (export "call_yield") (call $yield) (loop $l (br $l)))
      (func (export "short")))
"#;

fn checked_engine() -> Engine {
    let mut config = Config::new();
    config.interrupt_checks(true);
    Engine::new(&config).unwrap()
}

/// Waits for the guest thread to report that it is in a host function.
fn wait_for(receiver: &mpsc::Receiver<()>) {
    receiver
        .recv_timeout(Duration::from_secs(10))
        .expect("the guest reached its host function");
}

#[test]
fn kills_arm_the_pending_word_only_while_compiled_code_must_look() {
    let engine = checked_engine();
    let module = Module::new(&engine, GUEST).unwrap();
    let (entered_tx, entered) = mpsc::channel::<()>();
    let (release, release_rx) = mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap("host", "wait", move || {
            entered_tx.send(()).unwrap();
            release_rx.lock().unwrap().recv().unwrap();
        })
        .unwrap();
    let (entered_tx2, entered2) = mpsc::channel::<()>();
    let (release2, release_rx2) = mpsc::channel::<()>();
    let release_rx2 = std::sync::Mutex::new(release_rx2);
    linker
        .func_wrap(
            "host",
            "wait_then_spin",
            move |mut caller: Caller<'_, ()>| {
                entered_tx2.send(()).unwrap();
                release_rx2.lock().unwrap().recv().unwrap();
                // Back into Wasm, which never returns: the kill that found this
                // hostcall must stop it there, without compiled code having
                // been told to look.
                caller.call::<(), ()>("spin", ())
            },
        )
        .unwrap();
    linker
        .func_wrap("host", "yield", |mut caller: Caller<'_, ()>| {
            let () = caller.suspend(());
        })
        .unwrap();
    assert_eq!(interrupts_pending(), 0);
    // A kill of a run in a hostcall or not started yet arms the word only
    // where the kill switch cannot fence the owner's thread (no membarrier).
    let unfenced = u32::from(!kill_switch_fences());

    // 1. In Wasm: armed until the run ends, which it does at once.
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    for _ in 0..20 {
        let switch = store.kill_switch();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(2));
            switch.terminate()
        });
        assert!(matches!(
            instance.call::<(), ()>(&mut store, "spin", ()),
            Err(Error::Killed)
        ));
        assert_eq!(killer.join().unwrap(), KillOutcome::Interrupted);
        assert_eq!(interrupts_pending(), 0);
    }

    // 2. In a hostcall: not armed (the fence lets the hostcall's return see
    // the flag), and the run ends when the hostcall returns.
    let switch = store.kill_switch();
    let guest = std::thread::spawn(move || {
        let result = instance.call::<(), ()>(&mut store, "call_wait", ());
        (store, result)
    });
    wait_for(&entered);
    assert_eq!(switch.terminate(), KillOutcome::PendingInHostcall);
    assert_eq!(interrupts_pending(), unfenced);
    release.send(()).unwrap();
    let (mut store, result) = guest.join().unwrap();
    assert!(matches!(result, Err(Error::Killed)), "{result:?}");
    assert_eq!(interrupts_pending(), 0);

    // 2b. In a hostcall that then calls back into Wasm (which spins): the
    // nested entry sees the flag.
    let switch = store.kill_switch();
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let result = instance.call::<(), ()>(&mut store, "call_wait_then_spin", ());
        let _ = done.send((store, result));
    });
    wait_for(&entered2);
    assert_eq!(switch.terminate(), KillOutcome::PendingInHostcall);
    release2.send(()).unwrap();
    // Fail, rather than hang, if the nested segment never stops.
    let (mut store, result) = finished
        .recv_timeout(Duration::from_secs(10))
        .expect("the kill stopped the Wasm the hostcall called back into");
    assert!(matches!(result, Err(Error::Killed)), "{result:?}");
    assert_eq!(interrupts_pending(), 0);

    // 3. Suspended: not armed at all; resume sees the flag.
    assert!(matches!(
        instance
            .call_resumable::<(), ()>(&mut store, "call_yield", ())
            .unwrap(),
        Outcome::Yielded(_)
    ));
    assert_eq!(
        store.kill_switch().terminate(),
        KillOutcome::PendingUntilResume
    );
    assert_eq!(interrupts_pending(), 0);
    assert!(matches!(store.resume::<()>(()), Err(Error::Killed)));
    assert_eq!(interrupts_pending(), 0);

    // 4. Before the run: not armed; the run is cancelled at its start.
    let switch = store.kill_switch();
    assert_eq!(switch.terminate(), KillOutcome::CancelledBeforeStart);
    assert_eq!(interrupts_pending(), unfenced);
    assert!(matches!(
        instance.call::<(), ()>(&mut store, "short", ()),
        Err(Error::Killed)
    ));
    assert_eq!(interrupts_pending(), 0);

    // 5. After the run: nothing to do, nothing armed.
    let switch = store.kill_switch();
    instance.call::<(), ()>(&mut store, "short", ()).unwrap();
    assert_eq!(switch.terminate(), KillOutcome::NothingToTerminate);
    assert_eq!(interrupts_pending(), 0);

    // 6. A cancelled run that never comes: reset and drop disarm (if it
    // was armed at all).
    assert_eq!(
        store.kill_switch().terminate(),
        KillOutcome::CancelledBeforeStart
    );
    assert_eq!(interrupts_pending(), unfenced);
    store.reset().unwrap();
    assert_eq!(interrupts_pending(), 0);
    assert_eq!(
        store.kill_switch().terminate(),
        KillOutcome::CancelledBeforeStart
    );
    assert_eq!(interrupts_pending(), unfenced);
    drop(store);
    assert_eq!(interrupts_pending(), 0);

    // 7. Without compiled checks (the default), a kill in Wasm signals the
    // guest's thread and never arms the word.
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        "(module (func (export \"spin\") (loop $l (br $l))))",
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Linker::<()>::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    for _ in 0..20 {
        let switch = store.kill_switch();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(2));
            let outcome = switch.terminate();
            (outcome, interrupts_pending())
        });
        assert!(matches!(
            instance.call::<(), ()>(&mut store, "spin", ()),
            Err(Error::Killed)
        ));
        assert_eq!(killer.join().unwrap(), (KillOutcome::Interrupted, 0));
    }
}
