//! Concurrency soak: two threads compile and drop modules without pause
//! (each module's unwind info registered with the system unwinder and its
//! code entered in the PC registry, then both removed), while four threads
//! run the termination matrix (`backstop_fuzz::endings`: traps, terminate,
//! host errors and panics, kills from inside and from other threads,
//! suspensions resumed, reset or dropped, at random depths, host guards
//! counted exactly) and trap in compiled code the whole time, so unwinds
//! walk the registry and the unwinder's tables while they change.
//!
//! It asserts that every case kept its promise, that nothing deadlocked (a
//! watchdog ends the process if no thread makes progress for 60 s), and
//! that the resident set and the number of mappings stay flat between the
//! end of the warm-up and the end of the run.

use backstop_fuzz::generate::case_bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RUN_FOR: Duration = Duration::from_secs(20);
const WARM_UP: Duration = Duration::from_secs(5);
/// Growth allowed after the warm-up: allocator and thread-cache noise, far
/// below what one leaked module or stack per case would add.
const RSS_BOUND_KB: i64 = 48 * 1024;
const MAPS_BOUND: i64 = 64;

fn resources() -> (i64, i64) {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let resident_pages: i64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count() as i64;
    (resident_pages * 4, maps)
}

#[test]
fn compile_and_drop_while_guests_end_every_way() {
    // The matrix panics in host frames on purpose; keep the log readable.
    std::panic::set_hook(Box::new(|_| {}));
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let compiled = Arc::new(AtomicU64::new(0));
    let cases = Arc::new(AtomicU64::new(0));

    let watchdog = {
        let (stop, progress) = (stop.clone(), progress.clone());
        std::thread::spawn(move || {
            let mut last = (0, Instant::now());
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(200));
                let now = progress.load(Ordering::SeqCst);
                if now != last.0 {
                    last = (now, Instant::now());
                } else if last.1.elapsed() > Duration::from_secs(60) {
                    eprintln!("no progress for 60 s: a deadlock");
                    std::process::exit(1);
                }
            }
        })
    };

    let mut threads = Vec::new();
    for t in 0..2u64 {
        let (stop, progress, compiled) = (stop.clone(), progress.clone(), compiled.clone());
        threads.push(std::thread::spawn(move || {
            let engine = backstop::Engine::default();
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let wat = format!(
                    "(module (func (export \"f\") (result i32) (i32.const {})) (func (export \"t\") (unreachable)))",
                    t * 1_000_000 + i
                );
                let module = backstop::Module::new(&engine, wat).expect("compiles");
                let mut store = backstop::Store::new(&engine, ());
                let instance = backstop::Linker::new(&engine)
                    .instantiate(&mut store, &module)
                    .unwrap();
                assert_eq!(
                    instance.call::<(), i32>(&mut store, "f", ()).unwrap(),
                    (t * 1_000_000 + i) as i32
                );
                assert!(instance.call::<(), ()>(&mut store, "t", ()).is_err());
                drop(store);
                drop(module);
                i += 1;
                compiled.fetch_add(1, Ordering::SeqCst);
                progress.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for t in 0..4u64 {
        let (stop, progress, cases) = (stop.clone(), progress.clone(), cases.clone());
        threads.push(std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let input = case_bytes(0x50a4 + t, i);
                if let Err(finding) = backstop_fuzz::endings::check(&input) {
                    panic!("thread {t}, case {i}: {finding}");
                }
                i += 1;
                cases.fetch_add(1, Ordering::SeqCst);
                progress.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    std::thread::sleep(WARM_UP);
    let warm = resources();
    std::thread::sleep(RUN_FOR - WARM_UP);
    stop.store(true, Ordering::SeqCst);
    let mut failed = false;
    for thread in threads {
        if let Err(payload) = thread.join() {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            eprintln!("a soak thread failed: {message}");
            failed = true;
        }
    }
    watchdog.join().unwrap();
    let _ = std::panic::take_hook();
    let end = resources();
    println!(
        "soak: {} modules compiled and dropped, {} matrix cases; RSS {} -> {} KiB, mappings {} -> {}",
        compiled.load(Ordering::SeqCst),
        cases.load(Ordering::SeqCst),
        warm.0,
        end.0,
        warm.1,
        end.1
    );
    assert!(!failed, "a thread broke a promise (see above)");
    assert!(compiled.load(Ordering::SeqCst) > 100);
    assert!(cases.load(Ordering::SeqCst) > 1000);
    assert!(
        end.0 - warm.0 < RSS_BOUND_KB,
        "RSS grew by {} KiB",
        end.0 - warm.0
    );
    assert!(
        end.1 - warm.1 < MAPS_BOUND,
        "mappings grew by {}",
        end.1 - warm.1
    );
}
