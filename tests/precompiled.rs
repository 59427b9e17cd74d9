//! Compiled modules saved and loaded again (`Engine::precompile_module`,
//! `Module::deserialize`): a loaded module behaves as a freshly compiled one
//! (results, `call_indirect` type checks against the loading engine's type
//! ids, traps with names and Wasm offsets, every ending with its
//! destructors, kills by interrupt check and by signal), and a file of
//! another build or other settings, a damaged one, or one whose metadata
//! points outside its code is refused with a clear error, never a crash.

use backstop::{Caller, Config, Engine, Error, KillOutcome, Linker, Module, Store, TrapCode};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::{Counters, Guard};

const PROGRAM: &str = r#"
    (module $program
      (import "host" "down" (func $down (param i32) (result i32)))
      (type $unary (func (param i32) (result i32)))
      (type $constant (func (result i64)))
      (table $own 3 funcref)
      (elem (table $own) (i32.const 0) func $double $seven $nested)
      (memory (export "memory") 1)
      (data (i32.const 16) "precompiled")
      (global $counter (mut i32) (i32.const 0))
      (func $double (type $unary) (i32.mul (local.get 0) (i32.const 2)))
      (func $seven (type $constant) (i64.const 7))
      (func $nested (type $unary) (call $down (local.get 0)))
      (func (export "apply") (param $slot i32) (param $x i32) (result i32)
        (call_indirect $own (type $unary) (local.get $x) (local.get $slot)))
      (func (export "constant") (param $slot i32) (result i64)
        (call_indirect $own (type $constant) (local.get $slot)))
      (func (export "count") (result i32)
        (global.set $counter (i32.add (global.get $counter) (i32.const 1)))
        (global.get $counter))
      (func (export "sqrt") (param f64) (result f64) (f64.sqrt (local.get 0)))
      (func (export "nearest") (param f32) (result f32) (f32.nearest (local.get 0)))
      (func $inner (i32.store (i32.const 70000) (i32.const 1)))
      (func (export "fault") (call $inner))
      (func (export "recurse") (param i32) (result i32)
        (i32.add (call $down (local.get 0)) (i32.const 1)))
      (func (export "spin") (loop $forever (br $forever))))
"#;

/// A host import that recurses back into `recurse` and, at the bottom,
/// ends the run the way `ending` says, with a counted guard in every frame.
fn linker(engine: &Engine, counters: Arc<Counters>, ending: &'static str) -> Linker<()> {
    let mut linker = Linker::new(engine);
    linker
        .func_wrap(
            "host",
            "down",
            move |mut caller: Caller<'_, ()>, depth: i32| -> Result<i32, Error> {
                let _guard = Guard::new(&counters);
                if depth > 0 {
                    return caller.call::<i32, i32>("recurse", depth - 1);
                }
                match ending {
                    "terminate" => caller.terminate(7u32),
                    "panic" => panic!("host panic at the bottom"),
                    "error" => Err(Error::msg("host says no")),
                    _ => Ok(100),
                }
            },
        )
        .unwrap();
    linker
}

fn precompile_and_load(config: &Config) -> (Engine, Module) {
    let compiling = Engine::new(config).unwrap();
    let bytes = compiling.precompile_module(PROGRAM).unwrap();
    assert!(Module::is_precompiled(&bytes));
    // A different engine loads it: nothing of the compiling process is in
    // the file. Give it other types first, so its type ids differ from the
    // ones the compiling engine would have used.
    let engine = Engine::new(config).unwrap();
    Module::new(
        &engine,
        r#"(module (type (func (param f32 f32 f32))) (type (func (result f64 f64)))
                    (type (func (param i64))) (type (func (param i32))))"#,
    )
    .unwrap();
    // SAFETY: the bytes come from `precompile_module` just above.
    let module = unsafe { Module::deserialize(&engine, &bytes) }.unwrap();
    (engine, module)
}

#[test]
fn a_loaded_module_runs_as_a_compiled_one() {
    let (engine, module) = precompile_and_load(&Config::new());
    let counters = Arc::new(Counters::default());
    let mut store = Store::new(&engine, ());
    let instance = linker(&engine, counters.clone(), "return")
        .instantiate(&mut store, &module)
        .unwrap();
    assert_eq!(
        instance
            .call::<(i32, i32), i32>(&mut store, "apply", (0, 21))
            .unwrap(),
        42
    );
    assert_eq!(
        instance
            .call::<(i32, i32), i32>(&mut store, "apply", (2, 0))
            .unwrap(),
        100
    );
    assert_eq!(
        instance
            .call::<i32, i64>(&mut store, "constant", 1)
            .unwrap(),
        7
    );
    // The signature checks use this engine's ids.
    let mismatch = instance
        .call::<(i32, i32), i32>(&mut store, "apply", (1, 0))
        .unwrap_err();
    assert_eq!(mismatch.trap_code(), Some(TrapCode::BadSignature));
    let mismatch = instance
        .call::<i32, i64>(&mut store, "constant", 0)
        .unwrap_err();
    assert_eq!(mismatch.trap_code(), Some(TrapCode::BadSignature));
    assert_eq!(
        instance.call::<(), i32>(&mut store, "count", ()).unwrap(),
        1
    );
    assert_eq!(
        instance.call::<(), i32>(&mut store, "count", ()).unwrap(),
        2
    );
    assert_eq!(
        instance.call::<f64, f64>(&mut store, "sqrt", 2.25).unwrap(),
        1.5
    );
    assert_eq!(
        instance
            .call::<f32, f32>(&mut store, "nearest", 2.5)
            .unwrap(),
        2.0
    );
    assert_eq!(
        &instance.get_memory(&store, "memory").unwrap().data(&store)[16..27],
        b"precompiled"
    );
    assert_eq!(module.name(), Some("program"));
    assert_eq!(module.function_count(), 13);
    assert_eq!(module.exports().len(), 9);
}

#[test]
fn traps_in_a_loaded_module_have_names_and_offsets() {
    let (engine, module) = precompile_and_load(&Config::new());
    let counters = Arc::new(Counters::default());
    let mut store = Store::new(&engine, ());
    let instance = linker(&engine, counters, "return")
        .instantiate(&mut store, &module)
        .unwrap();
    let error = instance
        .call::<(), ()>(&mut store, "fault", ())
        .unwrap_err();
    let trap = error.as_trap().expect("a trap");
    assert_eq!(trap.code(), TrapCode::MemoryOutOfBounds);
    assert!(trap.wasm_offset().is_some());
    let frames = trap.backtrace().expect("captured by default").frames();
    assert_eq!(frames[0].func_name(), Some("inner"));
    assert_eq!(frames[0].wasm_offset(), trap.wasm_offset());
}

#[test]
fn every_ending_unwinds_the_host_frames_of_a_loaded_module() {
    let (engine, module) = precompile_and_load(&Config::new());
    for ending in ["terminate", "panic", "error", "return"] {
        for depth in [0, 3] {
            let counters = Arc::new(Counters::default());
            let mut store = Store::new(&engine, ());
            let instance = linker(&engine, counters.clone(), ending)
                .instantiate(&mut store, &module)
                .unwrap();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                instance.call::<i32, i32>(&mut store, "recurse", depth)
            }));
            match (ending, result) {
                ("terminate", Ok(Err(Error::Terminated(details)))) => {
                    assert_eq!(*details.downcast::<u32>().unwrap(), 7)
                }
                ("panic", Err(_)) => {}
                ("error", Ok(Err(Error::Message(m)))) => assert_eq!(m, "host says no"),
                ("return", Ok(Ok(value))) => assert_eq!(value, 100 + depth + 1),
                (ending, other) => panic!("{ending} at depth {depth}: {other:?}"),
            }
            let created = counters.created.load(Ordering::SeqCst);
            assert_eq!(created, depth as usize + 1, "{ending}");
            assert_eq!(counters.alive(), 0, "{ending} at depth {depth}");
        }
    }
}

/// Kills `spin` in a loaded module from another thread, while it runs.
fn kill_spin(config: &Config) {
    let (engine, module) = precompile_and_load(config);
    let counters = Arc::new(Counters::default());
    let mut store = Store::new(&engine, ());
    let instance = linker(&engine, counters, "return")
        .instantiate(&mut store, &module)
        .unwrap();
    let mut interrupted = 0;
    for _ in 0..10 {
        let switch = store.kill_switch();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            // Usually the run is in Wasm by now; if it was slow to start, the
            // kill cancels it instead. Either way it stops.
            switch.terminate()
        });
        let result = instance.call::<(), ()>(&mut store, "spin", ());
        assert!(matches!(result, Err(Error::Killed)), "{result:?}");
        match killer.join().unwrap() {
            KillOutcome::Interrupted => interrupted += 1,
            KillOutcome::CancelledBeforeStart => {}
            other => panic!("unexpected outcome {other:?}"),
        }
        if interrupted >= 3 {
            break;
        }
    }
    assert!(
        interrupted >= 3,
        "interrupted only {interrupted} running calls"
    );
    assert_eq!(
        instance.call::<(), i32>(&mut store, "count", ()).unwrap(),
        1
    );
}

#[test]
fn kills_reach_a_loaded_module_by_interrupt_check_and_by_signal() {
    let mut checked = Config::new();
    checked.interrupt_checks(true);
    kill_spin(&checked);
    let mut signalled = Config::new();
    signalled.interrupt_checks(false);
    kill_spin(&signalled);
}

#[test]
fn a_file_of_other_settings_is_refused_by_name() {
    let mut with_checks = Config::new();
    with_checks.interrupt_checks(true);
    let bytes = Engine::new(&with_checks)
        .unwrap()
        .precompile_module(PROGRAM)
        .unwrap();
    let mut without = Config::new();
    without.interrupt_checks(false);
    let engine = Engine::new(&without).unwrap();
    // SAFETY: the bytes come from `precompile_module`.
    match unsafe { Module::deserialize(&engine, &bytes) } {
        Err(Error::Incompatible(message)) => {
            assert!(message.contains("interrupt checks true"), "{message}");
            assert!(message.contains("compile the module again"), "{message}");
        }
        other => panic!("expected Error::Incompatible, got {other:?}"),
    }
    let mut no_opt = Config::new();
    no_opt
        .interrupt_checks(true)
        .optimization_level(backstop::OptimizationLevel::None);
    let engine = Engine::new(&no_opt).unwrap();
    // SAFETY: as above.
    match unsafe { Module::deserialize(&engine, &bytes) } {
        Err(Error::Incompatible(message)) => assert!(message.contains("opt_level"), "{message}"),
        other => panic!("expected Error::Incompatible, got {other:?}"),
    }
    // The verifier changes no code: its setting does not matter.
    let mut verified = with_checks.clone();
    verified.verify_compiled_code(true);
    let engine = Engine::new(&verified).unwrap();
    // SAFETY: as above.
    unsafe { Module::deserialize(&engine, &bytes) }.unwrap();
}

/// Recomputes the trailing CRC-32 (as the format says: of every byte
/// before it), so a test can change a field and get past the checksum.
fn with_checksum(mut bytes: Vec<u8>) -> Vec<u8> {
    let body = bytes.len() - 4;
    let crc = crc32(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// CRC-32 (IEEE), bit by bit: the test's own, independent of the runtime's.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn load(engine: &Engine, bytes: &[u8]) -> Result<Module, Error> {
    // SAFETY: only loaded, never run: loading executes none of the code.
    unsafe { Module::deserialize(engine, bytes) }
}

#[test]
fn damaged_and_foreign_files_are_refused() {
    let engine = Engine::default();
    let bytes = engine.precompile_module(PROGRAM).unwrap();
    let expect_invalid = |bytes: &[u8], needle: &str| match load(&engine, bytes) {
        Err(Error::Invalid(message)) => assert!(message.contains(needle), "{message}"),
        other => panic!("expected Error::Invalid with {needle:?}, got {other:?}"),
    };
    // One flipped bit anywhere: the checksum.
    for at in [20, 100, bytes.len() / 2, bytes.len() - 10] {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x10;
        expect_invalid(&damaged, "checksum");
    }
    // Truncated anywhere after the header.
    for len in [30, bytes.len() / 3, bytes.len() - 1] {
        expect_invalid(&bytes[..len], "");
    }
    expect_invalid(&bytes[..10], "magic");
    expect_invalid(b"\0asm\x01\0\0\0", "not a Backstop compiled module");
    // Another file format.
    let mut other_format = bytes.clone();
    other_format[16] = 99;
    match load(&engine, &with_checksum(other_format)) {
        Err(Error::Incompatible(message)) => assert!(message.contains("format 99"), "{message}"),
        other => panic!("{other:?}"),
    }
    // Another build of the compiler (its source id is in the fingerprint).
    let text = String::from_utf8_lossy(&bytes[24..200]).to_string();
    let id_at = 24 + text.find("source id ").unwrap() + "source id ".len();
    let mut other_build = bytes.clone();
    other_build[id_at] = if other_build[id_at] == b'0' {
        b'1'
    } else {
        b'0'
    };
    match load(&engine, &with_checksum(other_build)) {
        Err(Error::Incompatible(message)) => {
            assert!(message.contains("another build"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // A .cwasm where Wasm is expected, and the other way round.
    match Module::new(&engine, &bytes) {
        Err(Error::Invalid(message)) => assert!(message.contains("Module::deserialize")),
        other => panic!("{other:?}"),
    }
    assert!(!Module::is_precompiled(b"(module)"));
}

/// Every byte of the metadata changed in turn, the checksum fixed up each
/// time: loading either refuses the file or loads it, and never panics,
/// writes out of bounds or crashes. (The code itself is trusted, so none
/// of these modules is run.)
#[test]
fn metadata_that_points_anywhere_is_refused_without_a_crash() {
    let engine = Engine::default();
    let small = r#"(module
        (type $t (func (param i32) (result i32)))
        (table 2 funcref) (elem (i32.const 0) $f $g)
        (func $f (type $t) (i32.add (local.get 0) (i32.const 1)))
        (func $g (type $t) (call_indirect (type $t) (local.get 0) (i32.const 0)))
        (func (export "h") (param f32) (result f32) (f32.floor (local.get 0))))"#;
    let bytes = engine.precompile_module(small).unwrap();
    // The metadata is the last sized field before the checksum; find it by
    // walking the fields.
    let fingerprint_len = u32::from_le_bytes(bytes[20..24].try_into().unwrap()) as usize;
    let mut at = 24 + fingerprint_len;
    let mut field = || {
        let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
        let start = at + 8;
        at = start + len;
        start..at
    };
    let _wasm = field();
    let _code = field();
    let metadata = field();
    assert_eq!(metadata.end, bytes.len() - 4);
    let (mut refused, mut loaded) = (0, 0);
    for i in metadata {
        for change in [0x01u8, 0x80, 0xff] {
            let mut changed = bytes.clone();
            changed[i] ^= change;
            match load(&engine, &with_checksum(changed)) {
                Ok(_) => loaded += 1,
                Err(Error::Invalid(message)) => {
                    assert!(message.contains("corrupt compiled module"), "{message}");
                    refused += 1
                }
                Err(other) => panic!("unexpected error {other:?}"),
            }
        }
    }
    assert!(refused > 0);
    println!("{refused} changed files refused, {loaded} loaded");
}
