//! Kills delivered by the interrupt signal (the default: no interrupt checks
//! in compiled code). The signal lands wherever the guest is, so these
//! tests aim at the awkward places: call-dense code (frame setups and
//! returns, where the handler declines and the kill switch sends again),
//! code that keeps entering the host and the runtime, deep nesting whose
//! host frames must all unwind, and kills at random moments. A `SIGURG`
//! that is not Backstop's goes to the embedder's handler and leaves the
//! guest alone. Its own test binary: it installs a `SIGURG` handler before
//! Backstop installs its own.

use backstop::{Caller, Engine, Error, Instance, KillOutcome, Linker, Module, Outcome, Store};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Once};
use std::time::{Duration, Instant};

const GUEST: &str = r#"
    (module
      (import "host" "tick" (func $tick))
      (import "host" "nest" (func $nest (param i32)))
      (import "host" "ready" (func $ready))
      (import "host" "pause" (func $pause))
      (memory 1)
      (func $leaf (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
      (func $pair (param i32) (result i32) (call $leaf (call $leaf (local.get 0))))
      ;; Nearly all of its time is in calls, frame setups and returns.
      (func (export "calls") (local i32)
        (call $ready)
        (loop $l (local.set 0 (call $pair (local.get 0))) (br $l)))
      ;; Enters the host on every iteration.
      (func (export "host_calls") (call $ready) (loop $l (call $tick) (br $l)))
      ;; Enters a runtime function on every iteration.
      (func (export "grows") (call $ready) (loop $l (drop (memory.grow (i32.const 0))) (br $l)))
      ;; Counts to 2^28 and returns.
      (func (export "count") (result i32) (local i32)
        (loop $l
          (local.set 0 (i32.add (local.get 0) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get 0) (i32.const 0x10000000))))
        (local.get 0))
      ;; Host and guest frames alternate `depth` times, then it spins on
      ;; calls (so kills land at frame setups and returns too).
      (func (export "nested") (param i32)
        (if (local.get 0)
          (then (call $nest (i32.sub (local.get 0) (i32.const 1))))
          (else (call $ready) (loop $l (drop (call $pair (i32.const 0))) (br $l)))))
      ;; Suspends once, then spins on calls when resumed.
      (func (export "pause_then_calls") (local i32)
        (call $pause)
        (call $ready)
        (loop $l (local.set 0 (call $pair (local.get 0))) (br $l)))
      ;; Returns after a while, unless killed first.
      (func (export "mixed") (param i32) (result i32) (local i32)
        (loop $l
          (local.set 1 (call $pair (local.get 1)))
          (if (i32.eqz (i32.and (local.get 1) (i32.const 255))) (then (call $tick)))
          (br_if $l (i32.lt_u (local.get 1) (local.get 0))))
        (local.get 1)))
"#;

static FOREIGN_SIGURGS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn embedder_sigurg(_signal: libc::c_int) {
    FOREIGN_SIGURGS.fetch_add(1, Ordering::SeqCst);
}

/// Installs the embedder's own `SIGURG` handler before Backstop's (which
/// is installed on the first call), as an embedder that uses out-of-band
/// socket data would have.
fn install_embedder_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // A kill that never lands leaves its guest spinning: fail then,
        // instead of hanging (the whole binary takes a few seconds).
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_secs(120));
            eprintln!("kill_signals: still running after 120 s; a kill did not land");
            std::process::abort();
        });
        // SAFETY: installing a plain handler with a valid, zeroed action.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = embedder_sigurg as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            assert_eq!(
                libc::sigaction(libc::SIGURG, &action, std::ptr::null_mut()),
                0
            );
        }
    });
}

struct Guard(Arc<AtomicUsize>);
impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Host {
    ticks: usize,
    dropped: Arc<AtomicUsize>,
    /// Set when the guest reaches the code to kill.
    ready: Arc<AtomicBool>,
}

fn instance(engine: &Engine) -> (Store<Host>, Instance) {
    install_embedder_handler();
    let module = Module::new(engine, GUEST).unwrap();
    let mut linker = Linker::new(engine);
    linker
        .func_wrap("host", "tick", |mut caller: Caller<'_, Host>| {
            caller.data_mut().ticks += 1;
        })
        .unwrap();
    linker
        .func_wrap(
            "host",
            "nest",
            |mut caller: Caller<'_, Host>, depth: i32| {
                let _guard = Guard(caller.data().dropped.clone());
                caller.call::<i32, ()>("nested", depth)
            },
        )
        .unwrap();
    linker
        .func_wrap("host", "pause", |mut caller: Caller<'_, Host>| {
            // Unpinned: `kills_follow_a_run_resumed_on_another_thread`
            // resumes the run on another thread, which a pinned suspension
            // (`Caller::suspend`) refuses.
            // SAFETY: no host frame on the guest stack holds a value tied
            // to this thread: `pause` is called straight from Wasm (no
            // other host frame below it) and keeps nothing but `caller`
            // across the suspension.
            let () = unsafe { caller.suspend_unpinned(()) };
        })
        .unwrap();
    linker
        .func_wrap("host", "ready", |caller: Caller<'_, Host>| {
            caller.data().ready.store(true, Ordering::SeqCst);
        })
        .unwrap();
    let mut store = Store::new(engine, Host::default());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    (store, instance)
}

/// Runs `export` and kills it from another thread `delay` after it calls
/// the host's `ready` (or after it starts, for exports that never do);
/// returns the call's result, what `terminate` said, and how long the call
/// took after the kill.
fn kill_after<P: backstop::WasmValues, R: backstop::WasmValues>(
    store: &mut Store<Host>,
    instance: Instance,
    export: &str,
    params: P,
    delay: Duration,
) -> (Result<R, Error>, KillOutcome, Duration) {
    let switch = store.kill_switch();
    let ready = store.data().ready.clone();
    ready.store(false, Ordering::SeqCst);
    let wait_for_ready = export != "mixed";
    let killer = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while wait_for_ready && !ready.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::yield_now();
        }
        std::thread::sleep(delay);
        (switch.terminate(), Instant::now())
    });
    let result = instance.call::<P, R>(&mut *store, export, params);
    let returned = Instant::now();
    let (outcome, killed_at) = killer.join().unwrap();
    (
        result,
        outcome,
        returned.saturating_duration_since(killed_at),
    )
}

#[test]
fn kills_stop_code_that_is_mostly_calls_and_returns() {
    let engine = Engine::default();
    let (mut store, instance) = instance(&engine);
    let mut interrupted = 0;
    for _ in 0..50 {
        let (result, outcome, latency) =
            kill_after::<(), ()>(&mut store, instance, "calls", (), Duration::from_millis(1));
        assert!(matches!(result, Err(Error::Killed)), "{result:?}");
        interrupted += count_interrupted(outcome);
        assert!(latency < Duration::from_secs(5), "{latency:?}");
    }
    assert!(
        interrupted >= 25,
        "only {interrupted} of 50 kills found the guest in Wasm"
    );
}

/// 1 for a kill that found the guest in compiled code (the signal's case),
/// 0 for one that found it still in the host function that said it was
/// ready (a descheduled guest thread can be there after the delay); any
/// other outcome fails.
#[track_caller]
fn count_interrupted(outcome: KillOutcome) -> usize {
    match outcome {
        KillOutcome::Interrupted => 1,
        KillOutcome::PendingInHostcall => 0,
        other => panic!("unexpected outcome {other:?}"),
    }
}

#[test]
fn kills_stop_code_that_keeps_entering_the_host_and_the_runtime() {
    let engine = Engine::default();
    let (mut store, instance) = instance(&engine);
    for export in ["host_calls", "grows"] {
        for _ in 0..50 {
            let (result, outcome, _) =
                kill_after::<(), ()>(&mut store, instance, export, (), Duration::from_micros(300));
            assert!(matches!(result, Err(Error::Killed)), "{export}: {result:?}");
            assert!(
                matches!(
                    outcome,
                    KillOutcome::Interrupted | KillOutcome::PendingInHostcall
                ),
                "{export}: {outcome:?}"
            );
        }
    }
    assert!(store.data().ticks > 0);
}

#[test]
fn a_kill_in_nested_wasm_unwinds_every_host_frame() {
    let engine = Engine::default();
    let (mut store, instance) = instance(&engine);
    let mut interrupted = 0;
    for depth in [1, 2, 8, 1, 2, 8, 1, 2, 8] {
        let dropped = store.data().dropped.clone();
        dropped.store(0, Ordering::SeqCst);
        let (result, outcome, _) = kill_after::<i32, ()>(
            &mut store,
            instance,
            "nested",
            depth,
            Duration::from_millis(2),
        );
        assert!(matches!(result, Err(Error::Killed)), "{result:?}");
        interrupted += count_interrupted(outcome);
        assert_eq!(dropped.load(Ordering::SeqCst), depth as usize);
    }
    assert!(interrupted > 0, "no kill found the guest in Wasm");
    assert_eq!(
        instance.call::<(), i32>(&mut store, "count", ()).unwrap(),
        0x10000000
    );
}

#[test]
fn kills_at_random_moments_stop_the_run_or_find_it_over() {
    let engine = Engine::default();
    let (mut store, instance) = instance(&engine);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let (mut killed, mut finished) = (0, 0);
    for _ in 0..300 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(seed % 3000);
        let (result, outcome, _) =
            kill_after::<i32, i32>(&mut store, instance, "mixed", 2_000_000, delay);
        match (result, outcome) {
            (Err(Error::Killed), KillOutcome::Interrupted | KillOutcome::PendingInHostcall) => {
                killed += 1
            }
            (Err(Error::Killed), KillOutcome::CancelledBeforeStart) => killed += 1,
            // `Interrupted` then `Ok`: the kill landed as the run returned.
            (Ok(value), KillOutcome::NothingToTerminate | KillOutcome::Interrupted) => {
                assert_eq!(value, 2_000_000);
                finished += 1;
            }
            (result, outcome) => panic!("{result:?} after {outcome:?}"),
        }
    }
    assert!(killed > 0, "no run was killed ({finished} finished)");
    assert!(
        finished > 0,
        "every run was killed (the guest is too slow?)"
    );
    assert_eq!(
        instance
            .call::<i32, i32>(&mut store, "mixed", 1000)
            .unwrap(),
        1000
    );
}

#[test]
fn kills_land_on_a_thread_that_had_blocked_the_signal() {
    let engine = Engine::default();
    let stopped = std::thread::spawn(move || {
        // SAFETY: blocking one signal on this thread with a valid set.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGURG);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        let (mut store, instance) = instance(&engine);
        // Until one kill finds the guest in Wasm, where only the signal
        // can stop it.
        for _ in 0..10 {
            let (result, outcome, _) =
                kill_after::<(), ()>(&mut store, instance, "calls", (), Duration::from_millis(1));
            assert!(matches!(result, Err(Error::Killed)), "{result:?}");
            if count_interrupted(outcome) == 1 {
                return true;
            }
        }
        false
    });
    assert!(stopped.join().unwrap(), "no kill found the guest in Wasm");
}

#[test]
fn kills_follow_a_run_resumed_on_another_thread() {
    let engine = Engine::default();
    let mut interrupted = 0;
    for _ in 0..5 {
        let (mut store, instance) = instance(&engine);
        // Suspends on this thread (which then ends)...
        // (`pause` suspends unpinned, so the store may resume elsewhere.)
        let suspended = std::thread::spawn(move || {
            let outcome = instance.call_resumable::<(), ()>(&mut store, "pause_then_calls", ());
            assert!(matches!(outcome, Ok(Outcome::Yielded(_))));
            store
        })
        .join()
        .unwrap();
        // ...and is resumed, and killed, on another.
        let mut store = suspended;
        let switch = store.kill_switch();
        let ready = store.data().ready.clone();
        let killer = std::thread::spawn(move || {
            while !ready.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            std::thread::sleep(Duration::from_millis(1));
            switch.terminate()
        });
        let result = store.resume::<()>(());
        assert!(matches!(result, Err(Error::Killed)), "{result:?}");
        interrupted += count_interrupted(killer.join().unwrap());
    }
    assert!(interrupted > 0, "no kill found the guest in Wasm");
}

#[test]
fn kills_of_many_guests_at_once_stop_each_of_them() {
    let engine = Engine::default();
    let guests: Vec<_> = (0..6)
        .map(|_| {
            let (mut store, instance) = instance(&engine);
            let switch = store.kill_switch();
            let ready = store.data().ready.clone();
            let guest =
                std::thread::spawn(move || instance.call::<(), ()>(&mut store, "calls", ()));
            (guest, switch, ready)
        })
        .collect();
    for (_, _, ready) in &guests {
        while !ready.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
    }
    std::thread::sleep(Duration::from_millis(1));
    let interrupted: usize = guests
        .iter()
        .map(|(_, switch, _)| count_interrupted(switch.terminate()))
        .sum();
    assert!(interrupted > 0, "no kill found a guest in Wasm");
    for (guest, _, _) in guests {
        let result = guest.join().unwrap();
        assert!(matches!(result, Err(Error::Killed)), "{result:?}");
    }
}

#[test]
fn a_foreign_sigurg_reaches_the_embedder_and_leaves_the_guest_alone() {
    let engine = Engine::default();
    let (mut store, instance) = instance(&engine);
    let (tid_tx, tid_rx) = mpsc::channel();
    let guest = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tid_tx.send(unsafe { libc::gettid() }).unwrap();
        instance.call::<(), i32>(&mut store, "count", ())
    });
    let tid = tid_rx.recv().unwrap();
    let before = FOREIGN_SIGURGS.load(Ordering::SeqCst);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_micros(500));
        // SAFETY: tgkill to a thread of this process that is alive until
        // `guest` is joined below.
        unsafe {
            libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGURG);
        }
    }
    assert_eq!(guest.join().unwrap().unwrap(), 0x10000000);
    assert!(FOREIGN_SIGURGS.load(Ordering::SeqCst) > before);
}
