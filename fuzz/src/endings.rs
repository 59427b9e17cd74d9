//! The termination matrix as a generator: guest -> host -> guest -> ... at
//! a random depth, with a random mix of Wasm and host frames, ended at the
//! bottom in a random way: return, guest trap, `Caller::terminate`, a host
//! error, a host panic, a kill from the same thread, a kill from another
//! thread while the guest spins, or a suspension followed by a resume, a
//! reset or a drop of the store. Every host frame holds a counted guard;
//! the promise is that when the call (or the drop) is over, every guard
//! was dropped, the outcome is the one the ending asks for, and the
//! store still works (when it still exists; after a host panic, once it
//! is reset: a panic poisons it).

use crate::generate::Rng;
use backstop::{Caller, Engine, Error, Linker, Module, Outcome, Store};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const MODULE: &str = r#"
  (module
    (import "host" "down" (func $down (param i32 i32) (result i32)))
    ;; One Wasm frame per level, sometimes two (through $extra).
    (func $extra (param i32 i32) (result i32)
      (i32.add (call $down (local.get 0) (local.get 1)) (i32.const 2)))
    (func (export "recurse") (param $depth i32) (param $plan i32) (result i32)
      (if (result i32) (i32.and (local.get $plan) (i32.const 1))
        (then (call $extra (local.get $depth) (i32.shr_u (local.get $plan) (i32.const 1))))
        (else (i32.add (call $down (local.get $depth) (i32.shr_u (local.get $plan) (i32.const 1))) (i32.const 1)))))
    (func (export "trap") (result i32) (unreachable))
    (func (export "spin") (result i32) (loop $forever (br $forever)) (i32.const 0))
    (func (export "ok") (result i32) (i32.const 42)))
"#;

/// How the bottom of the stack ends the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Return,
    GuestTrap,
    Terminate,
    HostError,
    HostPanic,
    KillFromInside,
    KillFromAnotherThread,
    SuspendThenResume,
    SuspendThenReset,
    SuspendThenDrop,
}

const ENDINGS: [Ending; 10] = [
    Ending::Return,
    Ending::GuestTrap,
    Ending::Terminate,
    Ending::HostError,
    Ending::HostPanic,
    Ending::KillFromInside,
    Ending::KillFromAnotherThread,
    Ending::SuspendThenResume,
    Ending::SuspendThenReset,
    Ending::SuspendThenDrop,
];

struct Guard(Arc<AtomicUsize>);

impl Guard {
    fn new(alive: &Arc<AtomicUsize>) -> Guard {
        alive.fetch_add(1, Ordering::SeqCst);
        Guard(alive.clone())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Host {
    ending: Ending,
    alive: Arc<AtomicUsize>,
    kill: Arc<Mutex<Option<backstop::KillSwitch>>>,
}

fn linker(engine: &Engine) -> Linker<Host> {
    let mut linker = Linker::new(engine);
    linker
        .func_wrap(
            "host",
            "down",
            |mut caller: Caller<'_, Host>, depth: i32, plan: i32| -> Result<i32, Error> {
                let _guard = Guard::new(&caller.data().alive);
                if depth > 0 {
                    return caller.call::<(i32, i32), i32>("recurse", (depth - 1, plan));
                }
                match caller.data().ending {
                    Ending::Return => Ok(100),
                    Ending::GuestTrap => caller.call::<(), i32>("trap", ()),
                    Ending::Terminate => caller.terminate("ended by the matrix"),
                    Ending::HostError => Err(Error::msg("host error at the bottom")),
                    Ending::HostPanic => panic!("host panic at the bottom"),
                    Ending::KillFromInside => {
                        let switch = caller.data().kill.lock().unwrap().clone().expect("set");
                        switch.terminate();
                        Ok(0)
                    }
                    Ending::KillFromAnotherThread => caller.call::<(), i32>("spin", ()),
                    Ending::SuspendThenResume
                    | Ending::SuspendThenReset
                    | Ending::SuspendThenDrop => {
                        let answer: i32 = caller.suspend(7u32);
                        Ok(answer)
                    }
                }
            },
        )
        .expect("defines");
    linker
}

/// Runs one generated case of the matrix; `Err` is a finding.
pub fn check(input: &[u8]) -> Result<(), String> {
    let mut seed = [0u8; 8];
    for (i, b) in input.iter().take(8).enumerate() {
        seed[i] = *b;
    }
    let mut rng = Rng::new(u64::from_le_bytes(seed), input.len() as u64);
    let ending = ENDINGS[rng.below(ENDINGS.len() as u64) as usize];
    let depth = rng.below(40) as i32;
    let plan = rng.next_u64() as i32;
    let engine = crate::engine();
    let module = Module::new(&engine, MODULE).map_err(|e| e.to_string())?;
    let alive = Arc::new(AtomicUsize::new(0));
    let kill = Arc::new(Mutex::new(None));
    let host = Host {
        ending,
        alive: alive.clone(),
        kill: kill.clone(),
    };
    let mut store = Store::new(&engine, host);
    let instance = linker(&engine)
        .instantiate(&mut store, &module)
        .map_err(|e| e.to_string())?;
    *kill.lock().unwrap() = Some(store.kill_switch());
    let what = format!("{ending:?} at depth {depth}");
    let killer = (ending == Ending::KillFromAnotherThread).then(|| {
        let switch = store.kill_switch();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(1));
            switch.terminate()
        })
    });
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        instance.call_resumable::<(i32, i32), i32>(&mut store, "recurse", (depth, plan))
    }));
    if let Some(killer) = killer {
        killer.join().map_err(|_| "the killing thread panicked")?;
    }
    let expected_ok = match (ending, &result) {
        (Ending::Return, Ok(Ok(Outcome::Returned(_)))) => true,
        (Ending::GuestTrap, Ok(Err(e))) => {
            e.trap_code() == Some(backstop::TrapCode::UnreachableCodeReached)
        }
        (Ending::Terminate, Ok(Err(Error::Terminated(_)))) => true,
        (Ending::HostError, Ok(Err(Error::Message(_)))) => true,
        (Ending::HostPanic, Err(_)) => true,
        (Ending::KillFromInside | Ending::KillFromAnotherThread, Ok(Err(Error::Killed))) => true,
        (
            Ending::SuspendThenResume | Ending::SuspendThenReset | Ending::SuspendThenDrop,
            Ok(Ok(Outcome::Yielded(_))),
        ) => true,
        _ => false,
    };
    if !expected_ok {
        return Err(format!(
            "{what}: unexpected outcome {:?}",
            result.as_ref().map(|r| r.as_ref().map(|_| ()))
        ));
    }
    match ending {
        Ending::SuspendThenResume => {
            let resumed = store
                .resume::<i32>(5i32)
                .map_err(|e| format!("{what}: resume failed: {e}"))?;
            if !matches!(resumed, Outcome::Returned(_)) {
                return Err(format!("{what}: the resumed run did not return"));
            }
        }
        Ending::SuspendThenReset => store.reset().map_err(|e| format!("{what}: reset: {e}"))?,
        // A host panic poisons the store (its state may be half-written)
        // until it is reset, as documented.
        Ending::HostPanic => {
            if !store.is_poisoned() {
                return Err(format!("{what}: a host panic did not poison the store"));
            }
            if instance.call::<(), i32>(&mut store, "ok", ()).is_ok() {
                return Err(format!("{what}: a poisoned store ran a call"));
            }
            store.reset().map_err(|e| format!("{what}: reset: {e}"))?;
        }
        Ending::SuspendThenDrop => {
            drop(store);
            return match alive.load(Ordering::SeqCst) {
                0 => Ok(()),
                n => Err(format!(
                    "{what}: {n} host frames not cleaned up after the drop"
                )),
            };
        }
        _ => {}
    }
    let left = alive.load(Ordering::SeqCst);
    if left != 0 {
        return Err(format!("{what}: {left} host frames not cleaned up"));
    }
    match instance.call::<(), i32>(&mut store, "ok", ()) {
        Ok(42) => Ok(()),
        other => Err(format!(
            "{what}: the store is not usable afterwards: {other:?}"
        )),
    }
}
