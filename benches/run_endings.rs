//! Benchmarks of how runs end and restart, and of the kill switch:
//!
//! - `termination/*`: a run that ends through `Caller::terminate`, a trap or
//!   a host `Err`, under 1 or 50 nested host segments
//!   (guest -> host -> guest -> ...), each host frame holding an RAII guard.
//! - `yield/*`: one `Caller::suspend` + `Store::resume` round trip, on
//!   one thread, and (with `Caller::suspend_unpinned`, which a run resumed
//!   on another thread needs) alternating between two threads.
//! - `reset/*`: `Store::reset` of a store whose one instance has a fully
//!   dirtied 64 KiB and 1 MiB memory.
//! - `kill/*`: latency from `KillSwitch::terminate()` on another thread to
//!   the guest's call returning `Err(Error::Killed)`.
//! - `compute_interrupt/*`: the cost of the interrupt checks
//!   (`Config::interrupt_checks`) on fib(30), a sieve and a 256x256 matmul.
//!
//! Run with `cargo bench --bench run_endings`. See BENCHMARKS.md.

use backstop::{
    Caller, Config, Engine, Error, Instance, KillOutcome, KillSwitch, Linker, Module, Outcome,
    Store, TrapCode, TypedFunc,
};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

fn engine(interrupt_checks: bool) -> Engine {
    let mut config = Config::new();
    config.interrupt_checks(interrupt_checks);
    Engine::new(&config).unwrap()
}

/// An engine that does not capture Wasm backtraces on traps and
/// terminations (`Config::wasm_backtrace(false)`; the default captures).
fn no_backtrace() -> Engine {
    let mut config = Config::new();
    config.wasm_backtrace(false);
    Engine::new(&config).unwrap()
}

/// A store of its own holding one instance of `wat`.
fn instantiate(engine: &Engine, wat: &str) -> (Store<()>, Instance) {
    let module = Module::new(engine, wat).expect("benchmark module compiles");
    let mut store = Store::new(engine, ());
    let instance = Linker::new(engine)
        .instantiate(&mut store, &module)
        .expect("benchmark module instantiates");
    (store, instance)
}

// ---------------------------------------------------------------------------
// termination/*

thread_local! {
    /// Guards dropped on this thread (the guest stack runs on the caller's
    /// thread), checked once before measuring.
    static DROPPED: Cell<usize> = const { Cell::new(0) };
}

/// The RAII guard every host frame holds.
struct Guard;

impl Drop for Guard {
    #[inline(never)]
    fn drop(&mut self) {
        DROPPED.with(|d| d.set(d.get() + 1));
    }
}

/// `run(n)`: at n = 0 the guest traps with `unreachable`; otherwise it
/// calls the host's `down(n)`, which holds a guard and calls `run(n - 1)`
/// back as a nested guest segment (or ends the run at n = 1). `run(d)`
/// puts d host frames (and d + 1 guest frames for the trap) on the stack.
const NESTING: &str = r#"
    (module
      (import "host" "down" (func $down (param i32) (result i32)))
      (func (export "run") (param $n i32) (result i32)
        (if (i32.eqz (local.get $n)) (then unreachable))
        (i32.add (call $down (local.get $n)) (i32.const 1))))
"#;

#[derive(Clone, Copy)]
enum Ending {
    /// The innermost host frame calls `Caller::terminate`.
    Terminate,
    /// The innermost guest frame executes `unreachable`.
    Trap,
    /// The innermost host frame returns `Err`.
    HostErr,
}

fn nesting_instance(engine: &Engine, ending: Ending) -> (Store<()>, Instance) {
    let module = Module::new(engine, NESTING).unwrap();
    let mut linker = Linker::new(engine);
    linker
        .func_wrap(
            "host",
            "down",
            move |mut caller: Caller<'_, ()>, n: i32| -> Result<i32, Error> {
                let _guard = Guard;
                if n == 1 {
                    match ending {
                        Ending::Terminate => caller.terminate(7u32),
                        Ending::HostErr => return Err(Error::msg("host says no")),
                        Ending::Trap => {}
                    }
                }
                caller.call::<i32, i32>("run", n - 1)
            },
        )
        .unwrap();
    let mut store = Store::new(engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    (store, instance)
}

fn check_ending(error: &Error, ending: Ending) {
    match (ending, error) {
        (Ending::Terminate, Error::Terminated(_)) => {}
        (Ending::HostErr, Error::Message(_)) => {}
        (Ending::Trap, e) if e.trap_code() == Some(TrapCode::UnreachableCodeReached) => {}
        (_, e) => panic!("unexpected ending: {e:?}"),
    }
}

fn termination(c: &mut Criterion) {
    let engine = Engine::default();
    let quiet = no_backtrace();
    let mut group = c.benchmark_group("termination");
    group.measurement_time(Duration::from_secs(3));
    // The `_no_backtrace` variants use `Config::wasm_backtrace(false)`;
    // the difference is the backtrace capture's share.
    let cases: [(&str, Ending, i32, &Engine); 10] = [
        ("terminate_depth_1", Ending::Terminate, 1, &engine),
        (
            "terminate_depth_1_no_backtrace",
            Ending::Terminate,
            1,
            &quiet,
        ),
        ("terminate_depth_100", Ending::Terminate, 100, &engine),
        (
            "terminate_depth_100_no_backtrace",
            Ending::Terminate,
            100,
            &quiet,
        ),
        ("terminate_depth_50", Ending::Terminate, 50, &engine),
        (
            "terminate_depth_50_no_backtrace",
            Ending::Terminate,
            50,
            &quiet,
        ),
        ("trap_under_hostcalls_depth_1", Ending::Trap, 1, &engine),
        ("trap_under_hostcalls_depth_50", Ending::Trap, 50, &engine),
        (
            "trap_under_hostcalls_depth_50_no_backtrace",
            Ending::Trap,
            50,
            &quiet,
        ),
        ("host_err_depth_1", Ending::HostErr, 1, &engine),
    ];
    for (name, ending, depth, engine) in cases {
        let (mut store, instance) = nesting_instance(engine, ending);
        let run: TypedFunc<i32, i32> = instance.get_typed_func(&store, "run").unwrap();
        DROPPED.with(|d| d.set(0));
        let error = run.call(&mut store, depth).unwrap_err();
        check_ending(&error, ending);
        assert_eq!(DROPPED.with(Cell::get), depth as usize, "{name}: guards");
        assert!(!store.is_poisoned());
        group.bench_function(name, |b| {
            b.iter(|| black_box(run.call(&mut store, black_box(depth)).is_err()))
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------
// yield/*

/// `run(n)` calls the host's `yield_n(n)`, which suspends n times with
/// `0u32` and expects a `u32` back each time.
const YIELDING: &str = r#"
    (module
      (import "host" "yield_n" (func $yield_n (param i32)))
      (func (export "run") (param i32) (call $yield_n (local.get 0))))
"#;

/// Suspensions per run: large enough that a run never ends while measured.
const YIELDS_PER_RUN: i32 = i32::MAX;

/// How `yield_n` suspends.
#[derive(Clone, Copy)]
enum Suspend {
    /// `Caller::suspend`: the run resumes only on the thread that suspended
    /// it.
    Pinned,
    /// `Caller::suspend_unpinned`: the run may resume on any thread.
    Unpinned,
}

/// A store with one instance of `YIELDING`, its `yield_n` suspending as
/// `how` says.
fn yielding_instance(engine: &Engine, how: Suspend) -> (Store<()>, Instance) {
    let module = Module::new(engine, YIELDING).unwrap();
    let mut linker = Linker::new(engine);
    linker
        .func_wrap(
            "host",
            "yield_n",
            move |mut caller: Caller<'_, ()>, n: i32| {
                for _ in 0..n {
                    let back: u32 = match how {
                        Suspend::Pinned => caller.suspend(0u32),
                        // SAFETY: no frame on the guest stack holds anything
                        // tied to this thread: this host function's only
                        // locals are the loop counter, `n`, `how` and the
                        // `Caller`, and it is the only host frame.
                        Suspend::Unpinned => unsafe { caller.suspend_unpinned(0u32) },
                    };
                    black_box(back);
                }
            },
        )
        .unwrap();
    let mut store = Store::new(engine, ());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    (store, instance)
}

/// Starts a run that yields `YIELDS_PER_RUN` times; returns after the first.
fn start_yielding(store: &mut Store<()>, instance: Instance) {
    match instance
        .call_resumable::<i32, ()>(&mut *store, "run", YIELDS_PER_RUN)
        .unwrap()
    {
        Outcome::Yielded(v) => assert_eq!(*v.downcast::<u32>().unwrap(), 0),
        Outcome::Returned(()) => panic!("expected a yield"),
    }
}

/// One resume that must yield again (restarts the run, untimed, if it ends).
#[inline]
fn resume_once(store: &mut Store<()>, instance: Instance) {
    match store.resume::<()>(0u32).unwrap() {
        Outcome::Yielded(v) => {
            black_box(v);
        }
        Outcome::Returned(()) => start_yielding(store, instance),
    }
}

fn yields(c: &mut Criterion) {
    let engine = Engine::default();
    let mut group = c.benchmark_group("yield");
    group.measurement_time(Duration::from_secs(3));

    // One suspend (host -> embedder) + resume (embedder -> host) round trip.
    {
        let (mut store, instance) = yielding_instance(&engine, Suspend::Pinned);
        // The small case ends: a 3-yield run returns after 3 resumes.
        match instance
            .call_resumable::<i32, ()>(&mut store, "run", 3)
            .unwrap()
        {
            Outcome::Yielded(_) => {}
            Outcome::Returned(()) => panic!("expected a yield"),
        }
        for expect_return in [false, false, true] {
            let outcome = store.resume::<()>(0u32).unwrap();
            assert_eq!(matches!(outcome, Outcome::Returned(())), expect_return);
        }
        start_yielding(&mut store, instance);
        group.bench_function("round_trip", |b| {
            b.iter(|| resume_once(&mut store, instance))
        });
    }

    // The store (with its suspended run) moves between two threads; each
    // thread resumes it once and hands it over (std mpsc channels). One
    // iteration = one handoff + one round trip. The run suspends with
    // `Caller::suspend_unpinned`: a run suspended with `Caller::suspend` is
    // pinned to its thread and cannot be resumed on the other one.
    // `thread_handoff_baseline` is the same ping-pong with a boxed integer
    // instead of a store, so the difference is the cost of resuming on the
    // other thread.
    {
        let (mut store, instance) = yielding_instance(&engine, Suspend::Unpinned);
        start_yielding(&mut store, instance);
        let (to_helper, helper_rx) = mpsc::sync_channel::<Store<()>>(1);
        let (to_main, main_rx) = mpsc::sync_channel::<Store<()>>(1);
        let helper = std::thread::spawn(move || {
            while let Ok(mut store) = helper_rx.recv() {
                resume_once(&mut store, instance);
                if to_main.send(store).is_err() {
                    break;
                }
            }
        });
        let mut slot = Some(store);
        group.bench_function("resume_on_other_thread", |b| {
            b.iter_custom(|iters| {
                let mut store = slot.take().unwrap();
                let start = Instant::now();
                // Pairs of handoffs: main resumes, helper resumes.
                for _ in 0..iters.div_ceil(2) {
                    resume_once(&mut store, instance);
                    to_helper.send(store).unwrap();
                    store = main_rx.recv().unwrap();
                }
                let elapsed = start.elapsed();
                slot = Some(store);
                elapsed.mul_f64(iters as f64 / (iters.div_ceil(2) * 2) as f64)
            })
        });
        drop(to_helper);
        helper.join().unwrap();

        let (to_helper, helper_rx) = mpsc::sync_channel::<Box<u64>>(1);
        let (to_main, main_rx) = mpsc::sync_channel::<Box<u64>>(1);
        let helper = std::thread::spawn(move || {
            while let Ok(mut v) = helper_rx.recv() {
                *v += 1;
                if to_main.send(v).is_err() {
                    break;
                }
            }
        });
        group.bench_function("thread_handoff_baseline", |b| {
            b.iter_custom(|iters| {
                let mut v = Box::new(0u64);
                let start = Instant::now();
                for _ in 0..iters.div_ceil(2) {
                    *v += 1;
                    to_helper.send(v).unwrap();
                    v = main_rx.recv().unwrap();
                }
                let elapsed = start.elapsed();
                black_box(v);
                elapsed.mul_f64(iters as f64 / (iters.div_ceil(2) * 2) as f64)
            })
        });
        drop(to_helper);
        helper.join().unwrap();
    }
    group.finish();
}

// ---------------------------------------------------------------------------
// reset/*

/// A memory of `{pages}` pages with a small data segment; `dirty` writes a
/// non-zero byte to every byte of it (memory.fill).
const RESETTABLE: &str = r#"
    (module
      (memory (export "memory") {pages})
      (data (i32.const 1024) "backstop reset image")
      (global $g (mut i32) (i32.const 5))
      (func (export "dirty")
        (global.set $g (i32.add (global.get $g) (i32.const 1)))
        (memory.fill (i32.const 0) (i32.const 0xab)
          (i32.mul (memory.size) (i32.const 65536)))))
"#;

fn resets(c: &mut Criterion) {
    let engine = Engine::default();
    let mut group = c.benchmark_group("reset");
    group.measurement_time(Duration::from_secs(3));
    for (label, pages) in [("64KiB", 1u32), ("1MiB", 16)] {
        let wat = RESETTABLE.replace("{pages}", &pages.to_string());
        let (mut store, instance) = instantiate(&engine, &wat);
        let dirty: TypedFunc<(), ()> = instance.get_typed_func(&store, "dirty").unwrap();
        let memory = instance.get_memory(&store, "memory").unwrap();
        let size = pages as usize * 65536;
        dirty.call(&mut store, ()).unwrap();
        assert!(memory.data(&store).iter().all(|&b| b == 0xab));
        store.reset().unwrap();
        {
            let memory = memory.data(&store);
            assert_eq!(memory.len(), size);
            assert_eq!(&memory[1024..1044], b"backstop reset image");
            assert!(memory[..1024].iter().all(|&b| b == 0));
            assert!(memory[1044..].iter().all(|&b| b == 0));
        }

        // Reset alone: dirty untimed, then time one reset.
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    dirty.call(&mut store, ()).unwrap();
                    let start = Instant::now();
                    store.reset().unwrap();
                    total += start.elapsed();
                }
                total
            })
        });
        // Dirty + reset, back to back in the timed loop (for 1 MiB this
        // includes the page faults the reset's madvise causes on the next
        // dirty).
        group.bench_function(format!("{label}_dirty_then_reset"), |b| {
            b.iter(|| {
                dirty.call(&mut store, ()).unwrap();
                store.reset().unwrap();
            })
        });
        // Dirty alone (the memory stays dirty and mapped between calls).
        group.bench_function(format!("{label}_dirty_only"), |b| {
            b.iter(|| dirty.call(&mut store, ()).unwrap())
        });
        // Reset of a memory that is already clean.
        store.reset().unwrap();
        group.bench_function(format!("{label}_clean"), |b| {
            b.iter(|| store.reset().unwrap())
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------
// kill/*

/// Every export first calls `started`, which tells the killer the guest is
/// running, then spins with no host calls:
/// - `spin`: `loop br 0` (with interrupt checks, checked at the loop
///   header);
/// - `recurse_deep`: 5000 nested calls of `$deep`, then `$tree(60)`,
///   2^60 calls with no loop anywhere (with checks, checked at function
///   entries); nothing is unwound (no host frame), ~5000 frames are left;
/// - `recurse_shallow`: `$tree(60)` directly (at most ~60 frames deep).
const KILLABLE: &str = r#"
    (module
      (import "host" "started" (func $started))
      (func (export "spin") (call $started) (loop $l (br $l)))
      (func $tree (param $n i32) (result i32)
        (if (result i32) (i32.eqz (local.get $n))
          (then (i32.const 1))
          (else (i32.add
            (call $tree (i32.sub (local.get $n) (i32.const 1)))
            (call $tree (i32.sub (local.get $n) (i32.const 1)))))))
      (func $deep (param $d i32) (result i32)
        (if (result i32) (i32.eqz (local.get $d))
          (then (call $tree (i32.const 60)))
          (else (i32.add (call $deep (i32.sub (local.get $d) (i32.const 1)))
                         (i32.const 1)))))
      (func (export "recurse_deep") (result i32)
        (call $started) (call $deep (i32.const 5000)))
      (func (export "recurse_shallow") (result i32)
        (call $started) (call $tree (i32.const 60))))
"#;

/// A guest thread that owns a store with one instance and runs one export
/// per request,
/// reporting when the call returned.
struct Victim {
    go: mpsc::Sender<()>,
    switch: mpsc::Receiver<KillSwitch>,
    done: mpsc::Receiver<Instant>,
    started: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

fn spawn_victim(export: &'static str, interrupt_checks: bool) -> Victim {
    let started = Arc::new(AtomicBool::new(false));
    let (go, go_rx) = mpsc::channel::<()>();
    let (switch_tx, switch) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    let flag = started.clone();
    let thread = std::thread::spawn(move || {
        let engine = engine(interrupt_checks);
        let module = Module::new(&engine, KILLABLE).unwrap();
        let mut linker = Linker::new(&engine);
        linker
            .func_wrap("host", "started", move || {
                flag.store(true, Ordering::Release);
            })
            .unwrap();
        let mut store = Store::new(&engine, ());
        let instance = linker.instantiate(&mut store, &module).unwrap();
        let func = instance.get_func(&store, export).unwrap();
        while go_rx.recv().is_ok() {
            // Made while idle: targets the store's next run.
            switch_tx.send(store.kill_switch()).unwrap();
            let result = func.call(&mut store, &[]);
            let end = Instant::now();
            assert!(matches!(result, Err(Error::Killed)), "{result:?}");
            done_tx.send(end).unwrap();
        }
    });
    Victim {
        go,
        switch,
        done,
        started,
        thread,
    }
}

/// Counts kills that found the guest inside a host function (the started
/// call had not yet returned) instead of in Wasm code.
static NOT_INTERRUPTED: AtomicUsize = AtomicUsize::new(0);

impl Victim {
    /// One kill: start the run, wait until the guest runs, let it spin for
    /// `settle`, terminate, and return the time until the call returned.
    fn trial(&self, settle: Duration) -> Duration {
        self.started.store(false, Ordering::Relaxed);
        self.go.send(()).unwrap();
        let switch = self.switch.recv().unwrap();
        while !self.started.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        let settled = Instant::now();
        while settled.elapsed() < settle {
            std::hint::spin_loop();
        }
        let start = Instant::now();
        let outcome = switch.terminate();
        let end = self.done.recv().unwrap();
        if outcome != KillOutcome::Interrupted {
            NOT_INTERRUPTED.fetch_add(1, Ordering::Relaxed);
        }
        end.saturating_duration_since(start)
    }

    fn stop(self) {
        drop(self.go);
        self.thread.join().unwrap();
    }
}

const KILL_TRIALS: usize = 200;
const KILL_SETTLE: Duration = Duration::from_micros(50);

fn kills(c: &mut Criterion) {
    let mut group = c.benchmark_group("kill");
    // Criterion budgets by the reported time (the latencies), but each
    // trial also spends KILL_SETTLE and two thread wake-ups: keep it short.
    group.sample_size(20);
    group.sampling_mode(criterion::SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    // The default engine's kills interrupt the guest with a signal;
    // `_checked` compiles interrupt checks and arms them instead.
    for (name, export, checks) in [
        ("latency_loop", "spin", false),
        ("latency_recursion", "recurse_deep", false),
        ("latency_recursion_shallow", "recurse_shallow", false),
        ("latency_loop_checked", "spin", true),
        ("latency_recursion_checked", "recurse_deep", true),
    ] {
        let victim = spawn_victim(export, checks);
        // Warm up, then the fixed-count trials whose median and max are
        // reported (criterion only reports central estimates).
        for _ in 0..20 {
            victim.trial(KILL_SETTLE);
        }
        NOT_INTERRUPTED.store(0, Ordering::Relaxed);
        let mut samples: Vec<Duration> = (0..KILL_TRIALS)
            .map(|_| victim.trial(KILL_SETTLE))
            .collect();
        samples.sort();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "kill/{name}: {KILL_TRIALS} trials: min {:.1} us, median {:.1} us, p90 {:.1} us, \
             p99 {:.1} us, max {:.1} us ({} found the guest in a host call)",
            us(samples[0]),
            us(samples[KILL_TRIALS / 2]),
            us(samples[KILL_TRIALS * 9 / 10]),
            us(samples[KILL_TRIALS * 99 / 100]),
            us(samples[KILL_TRIALS - 1]),
            NOT_INTERRUPTED.load(Ordering::Relaxed),
        );
        group.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| victim.trial(KILL_SETTLE)).sum())
        });
        victim.stop();
    }
    group.finish();
}

// ---------------------------------------------------------------------------
// compute_interrupt/*

/// fib(n) = n < 2 ? n : fib(n-1) + fib(n-2): 2,692,537 calls for n = 30.
const FIB: &str = r#"
    (module
      (func $fib (export "fib") (param $n i32) (result i32)
        (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
          (then (local.get $n))
          (else
            (i32.add
              (call $fib (i32.sub (local.get $n) (i32.const 1)))
              (call $fib (i32.sub (local.get $n) (i32.const 2))))))))
"#;

/// Sieve of Eratosthenes over `n` bytes of memory (one byte per number):
/// returns the number of primes below n.
const SIEVE: &str = r#"
    (module
      (memory (export "memory") 64)
      (func (export "sieve") (param $n i32) (result i32)
        (local $i i32) (local $j i32) (local $count i32)
        (loop $init
          (i64.store (local.get $i) (i64.const 0x0101010101010101))
          (local.set $i (i32.add (local.get $i) (i32.const 8)))
          (br_if $init (i32.lt_u (local.get $i) (local.get $n))))
        (local.set $i (i32.const 2))
        (block $done
          (loop $outer
            (br_if $done (i32.ge_u (i32.mul (local.get $i) (local.get $i)) (local.get $n)))
            (if (i32.load8_u (local.get $i))
              (then
                (local.set $j (i32.mul (local.get $i) (local.get $i)))
                (loop $inner
                  (i32.store8 (local.get $j) (i32.const 0))
                  (local.set $j (i32.add (local.get $j) (local.get $i)))
                  (br_if $inner (i32.lt_u (local.get $j) (local.get $n))))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $outer)))
        (local.set $i (i32.const 2))
        (loop $count
          (local.set $count (i32.add (local.get $count) (i32.load8_u (local.get $i))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $count (i32.lt_u (local.get $i) (local.get $n))))
        (local.get $count)))
"#;

/// Sieve size: 4 MiB of the 64-page memory.
const SIEVE_N: i32 = 4 << 20;

/// Matrix side for the matmul kernel.
const N: usize = 256;

/// The naive i-j-k kernel of `benches/runtime.rs` (`compute/matmul256_f64`).
const MATMUL: &str = r#"
    (module
      (memory (export "memory") 24)
      (func (export "matmul") (param $a i32) (param $b i32) (param $c i32)
        (local $i i32) (local $j i32) (local $k i32) (local $sum f64)
        (local.set $i (i32.const 0))
        (loop $li
          (local.set $j (i32.const 0))
          (loop $lj
            (local.set $sum (f64.const 0))
            (local.set $k (i32.const 0))
            (loop $lk
              (local.set $sum
                (f64.add (local.get $sum)
                  (f64.mul
                    (f64.load (i32.add (local.get $a)
                      (i32.shl (i32.add (i32.mul (local.get $i) (i32.const 256))
                                        (local.get $k)) (i32.const 3))))
                    (f64.load (i32.add (local.get $b)
                      (i32.shl (i32.add (i32.mul (local.get $k) (i32.const 256))
                                        (local.get $j)) (i32.const 3)))))))
              (local.set $k (i32.add (local.get $k) (i32.const 1)))
              (br_if $lk (i32.lt_u (local.get $k) (i32.const 256))))
            (f64.store (i32.add (local.get $c)
              (i32.shl (i32.add (i32.mul (local.get $i) (i32.const 256))
                                (local.get $j)) (i32.const 3)))
              (local.get $sum))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br_if $lj (i32.lt_u (local.get $j) (i32.const 256))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $li (i32.lt_u (local.get $i) (i32.const 256))))))
"#;

fn host_sieve(n: usize) -> i32 {
    let mut flags = vec![true; n];
    let mut i = 2;
    while i * i < n {
        if flags[i] {
            let mut j = i * i;
            while j < n {
                flags[j] = false;
                j += i;
            }
        }
        i += 1;
    }
    flags[2..].iter().filter(|&&f| f).count() as i32
}

/// A compute kernel compiled with `engine`, checked once; returns a closure
/// that runs it once.
fn kernel(engine: &Engine, kernel: &str) -> Box<dyn FnMut()> {
    match kernel {
        "fib" => {
            let (mut store, instance) = instantiate(engine, FIB);
            let fib: TypedFunc<i32, i32> = instance.get_typed_func(&store, "fib").unwrap();
            assert_eq!(fib.call(&mut store, 30).unwrap(), 832_040);
            Box::new(move || {
                black_box(fib.call(&mut store, black_box(30)).unwrap());
            })
        }
        "sieve" => {
            let (mut store, instance) = instantiate(engine, SIEVE);
            let sieve: TypedFunc<i32, i32> = instance.get_typed_func(&store, "sieve").unwrap();
            let primes = host_sieve(SIEVE_N as usize);
            assert_eq!(sieve.call(&mut store, SIEVE_N).unwrap(), primes);
            Box::new(move || {
                black_box(sieve.call(&mut store, black_box(SIEVE_N)).unwrap());
            })
        }
        "matmul" => {
            let (mut store, instance) = instantiate(engine, MATMUL);
            let bytes = N * N * 8;
            let memory = instance.get_memory(&store, "memory").unwrap();
            {
                let memory = memory.data_mut(&mut store);
                for idx in 0..N * N {
                    let a = (idx % 7) as f64 * 0.5 + 1.0;
                    let b = (idx % 5) as f64 * 0.25 - 0.5;
                    memory[idx * 8..idx * 8 + 8].copy_from_slice(&a.to_le_bytes());
                    memory[bytes + idx * 8..bytes + idx * 8 + 8].copy_from_slice(&b.to_le_bytes());
                }
            }
            let matmul: TypedFunc<(i32, i32, i32), ()> =
                instance.get_typed_func(&store, "matmul").unwrap();
            let args = (0, bytes as i32, 2 * bytes as i32);
            matmul.call(&mut store, args).unwrap();
            {
                let memory = memory.data(&store);
                let read =
                    |off: usize| f64::from_le_bytes(memory[off..off + 8].try_into().unwrap());
                for (i, j) in [(0, 0), (17, 203), (255, 255)] {
                    let expected = (0..N).fold(0.0, |sum, k| {
                        sum + read((i * N + k) * 8) * read(bytes + (k * N + j) * 8)
                    });
                    assert_eq!(read(2 * bytes + (i * N + j) * 8), expected);
                }
            }
            Box::new(move || matmul.call(&mut store, black_box(args)).unwrap())
        }
        _ => unreachable!(),
    }
}

/// Alternating checked/unchecked runs for the paired estimate.
const PAIRED_RUNS: usize = 21;

fn compute_interrupt(c: &mut Criterion) {
    let mut group = c.benchmark_group("compute_interrupt");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    let checked_engine = engine(true);
    let unchecked_engine = engine(false);
    for name in ["fib", "sieve", "matmul"] {
        let mut checked = kernel(&checked_engine, name);
        let mut unchecked = kernel(&unchecked_engine, name);
        // Paired estimate, robust against background load that changes
        // between criterion's two benchmarks: alternate the variants, take
        // each one's median.
        let time = |f: &mut dyn FnMut()| {
            let start = Instant::now();
            f();
            start.elapsed()
        };
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            checked();
            unchecked();
        }
        for _ in 0..PAIRED_RUNS {
            on.push(time(&mut *checked));
            off.push(time(&mut *unchecked));
        }
        on.sort();
        off.sort();
        let (on, off) = (on[PAIRED_RUNS / 2], off[PAIRED_RUNS / 2]);
        println!(
            "compute_interrupt/{name}: paired medians of {PAIRED_RUNS}: checked {:.3} ms, \
             unchecked {:.3} ms, overhead {:+.1}%",
            on.as_secs_f64() * 1e3,
            off.as_secs_f64() * 1e3,
            (on.as_secs_f64() / off.as_secs_f64() - 1.0) * 100.0
        );
        group.bench_function(format!("{name}/checked"), |b| b.iter(&mut *checked));
        group.bench_function(format!("{name}/unchecked"), |b| b.iter(&mut *unchecked));
    }
    group.finish();
}

criterion_group!(
    benches,
    termination,
    yields,
    resets,
    kills,
    compute_interrupt
);
criterion_main!(benches);
