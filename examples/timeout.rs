//! A timeout: a guest stuck in an infinite loop is stopped from another
//! thread by its kill switch; the call returns `Error::Killed`, and the
//! instance can run again.

use backstop::{Engine, Error, KillOutcome, Linker, Module, Store};
use std::time::{Duration, Instant};

pub fn main() -> Result<(), Error> {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"
        (module
          (func (export "forever") (loop $spin (br $spin)))
          (func (export "quick") (result i32) (i32.const 42)))
        "#,
    )?;
    let linker: Linker<()> = Linker::new(&engine);
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module)?;

    let switch = store.kill_switch();
    let timer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let fired_at = Instant::now();
        (switch.terminate(), fired_at)
    });

    println!("running an infinite loop with a 100 ms timeout...");
    let result = instance.call::<(), ()>(&mut store, "forever", ());
    let stopped_at = Instant::now();
    let (outcome, fired_at) = timer.join().expect("the timer thread");
    assert!(matches!(result, Err(Error::Killed)), "{result:?}");
    assert!(matches!(
        outcome,
        KillOutcome::Interrupted | KillOutcome::CancelledBeforeStart
    ));
    println!(
        "stopped: {:?} ({outcome:?}), {:?} after the kill switch fired",
        result.unwrap_err(),
        stopped_at.saturating_duration_since(fired_at)
    );
    println!(
        "the instance runs again: quick() = {}",
        instance.call::<(), i32>(&mut store, "quick", ())?
    );
    Ok(())
}
