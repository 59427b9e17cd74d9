//! Tests of the fibers (`fiber_start`, `fiber_suspend`, `fiber_resume`):
//! start and return; suspend from deep in nested frames and resume; values
//! passed through shared cells over many cycles; resume from another
//! function and on another thread; tear-down of a suspended fiber by an
//! unwind raised at its suspend point; backtraces that name the latest
//! resumer; abandoning a fiber from deep inside it, fresh or resumed;
//! callee-saved registers on both sides of every switch; nesting
//! with other fibers and with `call_on_stack`; and rough timings (printed,
//! run with `--nocapture` to see them).

use std::any::Any;
use std::backtrace::Backtrace;
use std::cell::{Cell, RefCell};
use std::hint::black_box;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Sender};
use std::sync::Once;
use std::thread::{self, JoinHandle, ThreadId};
use std::time::Instant;

use backstop_asm::{
    backstop_asm_fiber_resume, backstop_asm_fiber_start, backstop_asm_fiber_suspend, call_on_stack,
    fiber_abandon, fiber_resume, fiber_start, fiber_suspend, FiberExit, FiberState, GuestStack,
};

/// Big enough for a panic hook or a backtrace symbolized on the fiber.
const STACK: usize = 1 << 20;
/// Depth of nested Rust frames, each holding a guard, above the suspend.
const DEPTH: u32 = 10;

/// Silences the panic hook for the rest of this test binary (only
/// `resume_unwind` is used here, which skips the hook anyway).
fn quiet_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

/// A raw pointer to `state`, as the fiber functions take it. `FiberState`
/// is interior-mutable, so a pointer derived from `&` may be written.
fn sp(state: &FiberState) -> *mut FiberState {
    std::ptr::from_ref(state).cast_mut()
}

/// Starts `f` as a fiber on `stack` with `state`. The closure is moved onto
/// the fiber before anything can suspend, so it only needs to outlive the
/// fiber, not this call; whatever it borrows must outlive the fiber.
///
/// # Safety
///
/// Those of `fiber_start`; `f` must not outlive what it borrows.
unsafe fn start_fn<F: FnOnce()>(state: *mut FiberState, stack: &GuestStack, f: F) -> FiberExit {
    // SAFETY: forwarded.
    unsafe { start_at(state, stack.top(), f) }
}

/// `start_fn` with an explicit stack top.
///
/// # Safety
///
/// Those of `fiber_start`; `f` must not outlive what it borrows.
unsafe fn start_at<F: FnOnce()>(state: *mut FiberState, top: *mut u8, f: F) -> FiberExit {
    unsafe extern "C-unwind" fn trampoline<F: FnOnce()>(arg: *mut u8) {
        // SAFETY: `arg` is the `Option<F>` of `start_at`, alive until the
        // first switch back, which cannot happen before this `take`.
        let f = unsafe { (*arg.cast::<Option<F>>()).take() }.expect("closure taken twice");
        f();
    }
    let mut slot = Some(f);
    // SAFETY: forwarded from this function's contract; `slot` outlives the
    // only read of it.
    unsafe {
        fiber_start(
            state,
            top,
            trampoline::<F>,
            (&mut slot as *mut Option<F>).cast(),
        )
    }
}

fn on_stack(stack: &GuestStack, addr: usize) -> bool {
    (stack.usable_bottom() as usize..stack.top() as usize).contains(&addr)
}

#[derive(Debug, PartialEq)]
struct Payload(u64);

fn expect_payload(err: Box<dyn Any + Send>, i: u64) {
    assert_eq!(
        *err.downcast::<Payload>().expect("payload type lost"),
        Payload(i)
    );
}

/// Pushes its id to a log when dropped.
struct Guard<'a> {
    id: u32,
    log: &'a RefCell<Vec<u32>>,
}
impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.log.borrow_mut().push(self.id);
    }
}

/// Recurses to `DEPTH` non-inlined frames, each holding a `Guard`, and
/// calls `bottom` in the deepest.
#[inline(never)]
fn nest(depth: u32, log: &RefCell<Vec<u32>>, bottom: &mut dyn FnMut()) {
    let guard = Guard { id: depth, log };
    if depth == DEPTH {
        bottom();
    } else {
        nest(depth + 1, log, bottom);
    }
    black_box(&guard);
}

/// The drop log after all `DEPTH` guards dropped, innermost first.
fn all_dropped() -> Vec<u32> {
    (1..=DEPTH).rev().collect()
}

/// A fiber with everything it uses, movable to another thread as a whole.
/// The fiber's code reaches `shared` and `state` through their (stable)
/// heap addresses.
struct Job {
    stack: GuestStack,
    state: Box<FiberState>,
    shared: Box<Shared>,
}

/// Data the host and the fiber exchange. Only one of them runs at a time.
#[derive(Default)]
struct Shared {
    to_fiber: Cell<u64>,
    from_fiber: Cell<u64>,
    kill: Cell<bool>,
    thread: Cell<Option<ThreadId>>,
    log: RefCell<Vec<u32>>,
}

impl Job {
    fn new() -> Job {
        Job {
            stack: GuestStack::new(STACK, 4096).unwrap(),
            state: Box::new(FiberState::new()),
            shared: Box::default(),
        }
    }
}

/// The current thread's id. Not inlined, so that fiber code never keeps a
/// thread-local's address across a suspend (see `fiber_suspend`).
#[inline(never)]
fn current_thread() -> ThreadId {
    thread::current().id()
}

/// A thread that runs closures sent to it, one at a time.
struct Worker {
    tx: Option<Sender<Box<dyn FnOnce() + Send>>>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    fn new() -> Worker {
        let (tx, rx) = channel::<Box<dyn FnOnce() + Send>>();
        let handle = thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                for f in rx {
                    f();
                }
            })
            .unwrap();
        Worker {
            tx: Some(tx),
            handle: Some(handle),
        }
    }

    /// Runs `f` on the worker thread and waits for its result.
    fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let (rtx, rrx) = channel();
        let job: Box<dyn FnOnce() + Send> = Box::new(move || rtx.send(f()).unwrap());
        self.tx.as_ref().unwrap().send(job).unwrap();
        rrx.recv().expect("worker thread died")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
    }
}

// ------------------------------------------------------------ 1: return

unsafe extern "C-unwind" fn record_sp(arg: *mut u8) {
    let local = 0u64;
    let addr = black_box(&local) as *const u64 as usize;
    // SAFETY: `arg` points to a `usize` owned by the caller.
    unsafe { arg.cast::<usize>().write(addr) };
}

#[test]
fn start_then_return() {
    let stack = GuestStack::new(64 * 1024, 4096).unwrap();
    let state = FiberState::new();
    for _ in 0..10_000 {
        let mut seen = 0usize;
        // SAFETY: our own unused stack; `seen` and `state` outlive the fiber.
        let exit = unsafe {
            fiber_start(
                sp(&state),
                stack.top(),
                record_sp,
                (&mut seen as *mut usize).cast(),
            )
        };
        assert_eq!(exit, FiberExit::Returned);
        assert!(!state.is_suspended());
        assert!(
            on_stack(&stack, seen),
            "entry ran at {seen:#x}, off the fiber stack"
        );
    }
}

/// Recurses `depth` frames deep, then abandons the fiber of `state`.
#[inline(never)]
fn abandon_at_depth(state: *mut FiberState, depth: u32, reached: &Cell<u32>) {
    reached.set(reached.get().max(depth));
    if depth == 0 {
        // SAFETY: the test runs this on the fiber of `state`, and no frame
        // above the fiber's base owns anything.
        unsafe { fiber_abandon(state) }
    }
    abandon_at_depth(state, black_box(depth - 1), reached);
}

#[test]
fn abandon_leaves_the_fiber_and_the_stack_is_reusable() {
    let stack = GuestStack::new(256 * 1024, 4096).unwrap();
    let state = FiberState::new();
    for round in 0..1_000u32 {
        let reached = Cell::new(0);
        let depth = round % 50;
        // Locals of this frame that live across the switch: they must be
        // intact after it (callee-saved registers restored).
        let (a, b, c) = (black_box(round), black_box(round * 3), black_box(!round));
        let exit = if round % 2 == 0 {
            // SAFETY: our own stack; the closure borrows only what outlives
            // the fiber, and owns nothing that needs dropping.
            unsafe {
                start_fn(sp(&state), &stack, || {
                    abandon_at_depth(sp(&state), depth, &reached)
                })
            }
        } else {
            // Suspend first, then abandon from the resumed fiber: the
            // switch must go back to the resumer.
            let f = || {
                // SAFETY: on the fiber of `state`.
                unsafe { fiber_suspend(sp(&state)) };
                abandon_at_depth(sp(&state), depth, &reached);
            };
            // SAFETY: as above.
            let first = unsafe { start_fn(sp(&state), &stack, f) };
            assert_eq!(first, FiberExit::Suspended);
            // SAFETY: suspended just above.
            unsafe { fiber_resume(sp(&state)) }
        };
        assert_eq!(exit, FiberExit::Abandoned);
        assert!(!state.is_suspended());
        assert_eq!(reached.get(), depth);
        assert_eq!((a, b, c), (round, round * 3, !round));
    }
    // The stack serves an ordinary fiber afterwards.
    let ran = Cell::new(false);
    // SAFETY: as above.
    let exit = unsafe { start_fn(sp(&state), &stack, || ran.set(true)) };
    assert_eq!(exit, FiberExit::Returned);
    assert!(ran.get());
}

#[test]
fn unaligned_stack_top_is_rounded_down() {
    let stack = GuestStack::new(64 * 1024, 4096).unwrap();
    let state = FiberState::new();
    for skew in 0..64usize {
        let top = stack.top().wrapping_sub(skew);
        let aligned = Cell::new(false);
        let inner_aligned = Cell::new(false);
        let check = || {
            #[repr(align(16))]
            struct A(#[allow(dead_code)] u8);
            let a = A(0);
            (black_box(&a) as *const A as usize) & 15 == 0
        };
        let f = || {
            aligned.set(check());
            // SAFETY: we are on the fiber of `state`.
            unsafe { fiber_suspend(sp(&state)) };
            inner_aligned.set(check());
        };
        // SAFETY: `top` lies inside a stack we own, with room below; the
        // closure and what it borrows outlive the fiber.
        let exit = unsafe { start_at(sp(&state), top, f) };
        assert_eq!(exit, FiberExit::Suspended);
        // SAFETY: suspended just above.
        assert_eq!(unsafe { fiber_resume(sp(&state)) }, FiberExit::Returned);
        assert!(
            aligned.get() && inner_aligned.get(),
            "misaligned with skew {skew}"
        );
    }
}

// -------------------------------------------- 2: suspend from depth 10

#[test]
fn suspend_from_nested_frames_then_resume() {
    let stack = GuestStack::new(STACK, 4096).unwrap();
    let state = Box::new(FiberState::new());
    let log = RefCell::new(Vec::new());
    let reached = Cell::new(0u32);
    for i in 0..2000u32 {
        log.borrow_mut().clear();
        let s = sp(&state);
        let body = || {
            nest(1, &log, &mut || {
                // SAFETY: on the fiber of `state`, innermost.
                unsafe { fiber_suspend(s) };
                reached.set(reached.get() + 1);
            });
        };
        // SAFETY: our own stack; the closure borrows `log`, `reached` and
        // `state`, all of which outlive the fiber (it finishes below).
        let exit = unsafe { start_fn(s, &stack, body) };
        assert_eq!(exit, FiberExit::Suspended);
        assert!(state.is_suspended());
        assert!(log.borrow().is_empty(), "a guard dropped while suspended");
        assert_eq!(reached.get(), i);
        // SAFETY: suspended, its stack untouched.
        let exit = unsafe { fiber_resume(s) };
        assert_eq!(exit, FiberExit::Returned);
        assert!(!state.is_suspended());
        assert_eq!(reached.get(), i + 1);
        assert_eq!(*log.borrow(), all_dropped());
    }
}

// ------------------------- 3: cycles, another function, another thread

const CYCLES: u64 = 6;

/// The fiber of test 3: each cycle reads `to_fiber`, answers in
/// `from_fiber`, records its thread and suspends; returns after `CYCLES`.
fn echo_fiber(shared: *const Shared, state: *mut FiberState) -> impl FnOnce() {
    move || {
        // SAFETY: the `Shared` is boxed in the `Job`, which outlives the
        // fiber; only one side runs at a time.
        let shared = unsafe { &*shared };
        let log = &shared.log;
        nest(1, log, &mut || {
            for k in 0..CYCLES {
                let v = shared.to_fiber.get();
                shared.from_fiber.set(v.wrapping_mul(3).wrapping_add(k));
                shared.thread.set(Some(current_thread()));
                // SAFETY: on the fiber of `state`, innermost.
                unsafe { fiber_suspend(state) };
            }
        });
    }
}

/// Starts the echo fiber of `job`; the first cycle runs here.
#[inline(never)]
fn start_here(job: &mut Job, v: u64) -> FiberExit {
    job.shared.to_fiber.set(v);
    let state = sp(&job.state);
    let f = echo_fiber(&*job.shared, state);
    // SAFETY: the job owns the stack, state and shared data, and outlives
    // the fiber.
    unsafe { start_fn(state, &job.stack, f) }
}

/// Resumes the fiber of `job` with `v`; not the function that started it.
#[inline(never)]
fn resume_elsewhere(job: &mut Job, v: u64) -> FiberExit {
    job.shared.to_fiber.set(v);
    // SAFETY: the fiber is suspended (checked by the callers' asserts).
    unsafe { fiber_resume(sp(&job.state)) }
}

fn check_cycle(job: &Job, v: u64, k: u64, thread: ThreadId) {
    assert_eq!(
        job.shared.from_fiber.get(),
        v.wrapping_mul(3).wrapping_add(k)
    );
    assert_eq!(
        job.shared.thread.get(),
        Some(thread),
        "fiber ran on the wrong thread"
    );
    assert!(job.shared.log.borrow().is_empty(), "a guard dropped early");
}

#[test]
fn cycles_resumed_from_other_functions_and_threads() {
    let worker = Worker::new();
    let worker_id = worker.run(|| thread::current().id());
    let main_id = thread::current().id();
    let mut job = Job::new();
    for i in 0..500u64 {
        job.shared.log.borrow_mut().clear();
        let v0 = i * 1000;
        assert_eq!(start_here(&mut job, v0), FiberExit::Suspended);
        check_cycle(&job, v0, 0, main_id);
        for k in 1..CYCLES {
            let v = i * 1000 + k;
            let exit;
            if (i + k) % 2 == 0 {
                exit = resume_elsewhere(&mut job, v);
                check_cycle(&job, v, k, main_id);
            } else {
                // Move the whole fiber to the worker and resume it there.
                let (back, e) = worker.run(move || {
                    let mut job = job;
                    let e = resume_elsewhere(&mut job, v);
                    (job, e)
                });
                job = back;
                exit = e;
                check_cycle(&job, v, k, worker_id);
            }
            assert_eq!(exit, FiberExit::Suspended);
        }
        // The last resume finishes the loop; the fiber returns.
        let exit = if i % 2 == 0 {
            resume_elsewhere(&mut job, 0)
        } else {
            let (back, e) = worker.run(move || {
                let mut job = job;
                let e = resume_elsewhere(&mut job, 0);
                (job, e)
            });
            job = back;
            e
        };
        assert_eq!(exit, FiberExit::Returned);
        assert!(!job.state.is_suspended());
        assert_eq!(*job.shared.log.borrow(), all_dropped());
    }
}

// --------------------------------------------- 4: unwind after resume

/// The fiber of test 4: suspends at depth `DEPTH` until told to die, then
/// starts an unwind at the suspend point.
fn killable_fiber(shared: *const Shared, state: *mut FiberState, i: u64) -> impl FnOnce() {
    move || {
        // SAFETY: see `echo_fiber`.
        let shared = unsafe { &*shared };
        nest(1, &shared.log, &mut || loop {
            // SAFETY: on the fiber of `state`, innermost.
            unsafe { fiber_suspend(state) };
            if shared.kill.get() {
                resume_unwind(Box::new(Payload(i)));
            }
        });
        unreachable!("the killable fiber returned");
    }
}

/// A host frame between the `catch_unwind` and the resume, with its own guard.
#[inline(never)]
fn resume_with_host_guard(state: *mut FiberState, log: &RefCell<Vec<u32>>) -> FiberExit {
    let _host_guard = Guard { id: 100, log };
    // SAFETY: the caller's fiber is suspended.
    unsafe { fiber_resume(state) }
}

#[test]
fn unwind_after_resume_tears_down_a_suspended_fiber() {
    quiet_panics();
    let job = Job::new();
    let state = sp(&job.state);
    let host_log = RefCell::new(Vec::new());
    for i in 0..2000u64 {
        job.shared.log.borrow_mut().clear();
        job.shared.kill.set(false);
        // SAFETY: the job outlives the fiber, which ends in this iteration.
        let exit = unsafe { start_fn(state, &job.stack, killable_fiber(&*job.shared, state, i)) };
        assert_eq!(exit, FiberExit::Suspended);
        // A few idle cycles first, from a different frame each time.
        for _ in 0..(i % 3) {
            // SAFETY: suspended.
            assert_eq!(unsafe { fiber_resume(state) }, FiberExit::Suspended);
        }
        assert!(job.shared.log.borrow().is_empty());
        job.shared.kill.set(true);
        host_log.borrow_mut().clear();
        let r = catch_unwind(AssertUnwindSafe(|| {
            resume_with_host_guard(state, &host_log)
        }));
        expect_payload(r.expect_err("the fiber did not unwind"), i);
        assert_eq!(*job.shared.log.borrow(), all_dropped(), "fiber guards");
        assert_eq!(*host_log.borrow(), vec![100], "host guard");
        assert!(!job.state.is_suspended());
    }
}

#[test]
fn unwind_after_resume_on_another_thread() {
    quiet_panics();
    let worker = Worker::new();
    let mut job = Job::new();
    for i in 0..500u64 {
        job.shared.log.borrow_mut().clear();
        job.shared.kill.set(false);
        let state = sp(&job.state);
        // SAFETY: the job outlives the fiber, which ends in this iteration.
        let exit = unsafe { start_fn(state, &job.stack, killable_fiber(&*job.shared, state, i)) };
        assert_eq!(exit, FiberExit::Suspended);
        job.shared.kill.set(true);
        let (back, r) = worker.run(move || {
            let job = job;
            let r = catch_unwind(AssertUnwindSafe(|| {
                // SAFETY: suspended; the job moved here with its stack.
                unsafe { fiber_resume(sp(&job.state)) }
            }));
            (job, r)
        });
        job = back;
        expect_payload(r.expect_err("the fiber did not unwind"), i);
        assert_eq!(*job.shared.log.borrow(), all_dropped());
        assert!(!job.state.is_suspended());
    }
}

#[test]
fn panic_after_resume_is_caught_by_the_resumer() {
    quiet_panics();
    let job = Job::new();
    let state = sp(&job.state);
    let shared: *const Shared = &*job.shared;
    for i in 0..1000u64 {
        job.shared.log.borrow_mut().clear();
        let body = move || {
            // SAFETY: the job outlives the fiber.
            let shared = unsafe { &*shared };
            nest(1, &shared.log, &mut || {
                // SAFETY: on the fiber of `state`, innermost.
                unsafe { fiber_suspend(state) };
                // A real panic (through the hook), not `resume_unwind`.
                std::panic::panic_any(Payload(i));
            });
        };
        // SAFETY: the job outlives the fiber, which ends in this iteration.
        assert_eq!(
            unsafe { start_fn(state, &job.stack, body) },
            FiberExit::Suspended
        );
        let r = catch_unwind(AssertUnwindSafe(|| resume_elsewhere_plain(state)));
        expect_payload(r.expect_err("the panic did not reach the resumer"), i);
        assert_eq!(*job.shared.log.borrow(), all_dropped());
    }
}

/// Resumes from a frame that is not the starter's.
#[inline(never)]
fn resume_elsewhere_plain(state: *mut FiberState) -> FiberExit {
    // SAFETY: the caller's fiber is suspended.
    unsafe { fiber_resume(state) }
}

/// With the default hook (unless another test already installed the quiet
/// one), the hook captures and prints a backtrace on the fiber after a
/// resume; the test harness captures the output.
#[test]
fn loud_panic_after_resume_crosses() {
    let stack = GuestStack::new(STACK, 4096).unwrap();
    let state = FiberState::new();
    let s = sp(&state);
    for _ in 0..3 {
        let body = || {
            // SAFETY: on the fiber of `state`, innermost.
            unsafe { fiber_suspend(s) };
            panic!("loud panic on a resumed fiber");
        };
        // SAFETY: our stack; the body borrows nothing that dies first.
        assert_eq!(unsafe { start_fn(s, &stack, body) }, FiberExit::Suspended);
        let r = catch_unwind(|| resume_elsewhere_plain(s));
        let msg = r.unwrap_err().downcast::<&'static str>().unwrap();
        assert_eq!(*msg, "loud panic on a resumed fiber");
    }
}

// -------------------------------------------- 5: backtrace after resume

#[inline(never)]
fn fiber_starter_plugh(
    stack: &GuestStack,
    state: *mut FiberState,
    text: &RefCell<String>,
) -> FiberExit {
    let body = move || {
        *text.borrow_mut() = Backtrace::force_capture().to_string();
        // SAFETY: on the fiber of `state`, innermost.
        unsafe { fiber_suspend(state) };
        *text.borrow_mut() = Backtrace::force_capture().to_string();
    };
    // SAFETY: the stack, state and `text` outlive the fiber (the test
    // resumes it to completion).
    unsafe { start_fn(state, stack, body) }
}

#[inline(never)]
fn fiber_resumer_xyzzy(state: *mut FiberState) -> FiberExit {
    // SAFETY: the fiber is suspended.
    let exit = unsafe { fiber_resume(state) };
    black_box(exit)
}

/// The function names in a printed backtrace, without symbol hashes.
fn frame_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let (index, name) = line.trim_start().split_once(": ")?;
            index.parse::<usize>().ok()?;
            let name = name.trim();
            // Strip a legacy-mangling hash suffix (`::h` + 16 hex digits).
            let name = match name.rsplit_once("::h") {
                Some((base, hash))
                    if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
                {
                    base
                }
                _ => name,
            };
            Some(name.to_owned())
        })
        .collect()
}

fn has_frame(names: &[String], name: &str) -> bool {
    names.iter().any(|n| n == name)
}

// `inline(never)` keeps these frames in release builds, where backtraces
// are symbolized from the symbol table alone.
#[test]
#[inline(never)]
fn backtrace_after_resume_names_the_resumer() {
    let stack = GuestStack::new(STACK, 4096).unwrap();
    let state = FiberState::new();
    let text = RefCell::new(String::new());
    for _ in 0..100 {
        assert_eq!(
            fiber_starter_plugh(&stack, sp(&state), &text),
            FiberExit::Suspended
        );
        let before = text.take();
        let names = frame_names(&before);
        assert!(
            has_frame(&names, "backstop_asm_fiber_base"),
            "no base frame:\n{before}"
        );
        assert!(
            has_frame(&names, "fiber::fiber_starter_plugh"),
            "starter missing before the suspend:\n{before}"
        );
        assert!(
            !has_frame(&names, "fiber::fiber_resumer_xyzzy"),
            "resumer before any resume:\n{before}"
        );

        assert_eq!(fiber_resumer_xyzzy(sp(&state)), FiberExit::Returned);
        let after = text.take();
        let names = frame_names(&after);
        assert!(
            has_frame(&names, "backstop_asm_fiber_base"),
            "no base frame:\n{after}"
        );
        assert!(
            has_frame(&names, "fiber::fiber_resumer_xyzzy"),
            "resumer missing after the resume:\n{after}"
        );
        // The fiber body is a closure defined in the starter, so its name
        // contains the starter's; the starter's own frame must be gone.
        assert!(
            !has_frame(&names, "fiber::fiber_starter_plugh"),
            "stale starter frame after the resume:\n{after}"
        );
        assert!(
            has_frame(&names, "fiber::backtrace_after_resume_names_the_resumer"),
            "backtrace does not reach the test function:\n{after}"
        );
        // Base, then the resumer (possibly with the inlined wrapper between).
        let base = names
            .iter()
            .position(|n| n == "backstop_asm_fiber_base")
            .unwrap();
        let resumer = names
            .iter()
            .position(|n| n == "fiber::fiber_resumer_xyzzy")
            .unwrap();
        assert!(
            base < resumer && resumer - base <= 2,
            "frames out of order:\n{after}"
        );
    }
}

// --------------------------------------- 6: callee-saved registers

// Assembly helpers (test code only).
//
// test_host_harness(ctx: rdi): `ctx` points to a `HostCall`. Saves the
// callee-saved registers (with CFI), loads rbx, rbp, r12-r15 with
// `H_k ^ ctx.seed`, calls `ctx.func(ctx.a0, ctx.a1, ctx.a2, ctx.a3)`, stores
// its rax in `ctx.result` and a mask of the registers that did not come
// back intact in `ctx.mask` (0 = all good), then restores and returns.
//
//   +--------------------+ <- CFA
//   | return address     | CFA-8
//   | rbx                | CFA-16
//   | rbp                | CFA-24
//   | r12                | CFA-32
//   | r13                | CFA-40
//   | r14                | CFA-48
//   | r15                | CFA-56
//   | ctx                | CFA-64  <- rsp, 16-byte aligned at the call
//
// test_fiber_regs(state: rdi, seed: rsi, after: rdx, after_arg: rcx) -> rax:
// runs on a fiber. Saves the callee-saved registers (with CFI), loads them
// with `F_k ^ seed`, calls backstop_asm_fiber_suspend(state) directly, then
// after(after_arg) with the patterns still in place (it may unwind), and
// returns a mask of the registers that did not survive (0 = all good).
//
//   +--------------------+ <- CFA
//   | return address     | CFA-8
//   | rbx .. r15         | CFA-16 .. CFA-56 (as above)
//   | (padding)          | CFA-64
//   | after_arg          | CFA-72
//   | after              | CFA-80
//   | seed               | CFA-88
//   | state              | CFA-96  <- rsp, 16-byte aligned at the calls
#[rustfmt::skip]
std::arch::global_asm!(
    ".text",                                // code section
    ".p2align 4",                           // align the entry point
    ".globl test_host_harness",             // global, so any codegen unit can link to it
    ".hidden test_host_harness",            // but not exported
    "test_host_harness:",                   // rdi = ctx
    ".cfi_startproc",                       // CFA = rsp+8
    "push rbx",                             // save rbx
    ".cfi_adjust_cfa_offset 8",             // CFA = rsp+16
    ".cfi_offset rbx, -16",                 // rbx at CFA-16
    "push rbp",                             // save rbp
    ".cfi_adjust_cfa_offset 8",             // CFA = rsp+24
    ".cfi_offset rbp, -24",                 // rbp at CFA-24
    "push r12",                             // save r12
    ".cfi_adjust_cfa_offset 8",             // CFA = rsp+32
    ".cfi_offset r12, -32",                 // r12 at CFA-32
    "push r13",                             // save r13
    ".cfi_adjust_cfa_offset 8",             // CFA = rsp+40
    ".cfi_offset r13, -40",                 // r13 at CFA-40
    "push r14",                             // save r14
    ".cfi_adjust_cfa_offset 8",             // CFA = rsp+48
    ".cfi_offset r14, -48",                 // r14 at CFA-48
    "push r15",                             // save r15
    ".cfi_adjust_cfa_offset 8",             // CFA = rsp+56
    ".cfi_offset r15, -56",                 // r15 at CFA-56
    "sub rsp, 8",                           // slot for ctx; realigns to 16
    ".cfi_adjust_cfa_offset 8",             // CFA = rsp+64
    "mov [rsp], rdi",                       // keep ctx across the call
    "mov rsi, [rdi + 40]",                  // rsi = ctx.seed
    "movabs rbx, 0x1111111111111111",       // H_0
    "xor rbx, rsi",                         // rbx = H_0 ^ seed
    "movabs rbp, 0x2222222222222222",       // H_1 (rbp is not a frame pointer here)
    "xor rbp, rsi",                         // rbp = H_1 ^ seed
    "movabs r12, 0x3333333333333333",       // H_2
    "xor r12, rsi",                         // r12 = H_2 ^ seed
    "movabs r13, 0x4444444444444444",       // H_3
    "xor r13, rsi",                         // r13 = H_3 ^ seed
    "movabs r14, 0x5555555555555555",       // H_4
    "xor r14, rsi",                         // r14 = H_4 ^ seed
    "movabs r15, 0x6666666666666666",       // H_5
    "xor r15, rsi",                         // r15 = H_5 ^ seed
    "mov rax, [rdi]",                       // rax = ctx.func
    "mov rsi, [rdi + 16]",                  // second argument = ctx.a1
    "mov rdx, [rdi + 24]",                  // third argument = ctx.a2
    "mov rcx, [rdi + 32]",                  // fourth argument = ctx.a3
    "mov rdi, [rdi + 8]",                   // first argument = ctx.a0 (last: rdi held ctx)
    "call rax",                             // ctx.func(a0, a1, a2, a3)
    "mov rdi, [rsp]",                       // rdi = ctx
    "mov [rdi + 56], rax",                  // ctx.result = what func returned
    "mov rsi, [rdi + 40]",                  // rsi = ctx.seed
    "xor eax, eax",                         // mask = 0
    "movabs rcx, 0x1111111111111111",       // H_0
    "xor rcx, rsi",                         // expected rbx
    "cmp rbx, rcx",                         // rbx intact?
    "je 2f",                                // yes: skip
    "or eax, 1",                            // no: bit 0
    "2:",                                   //
    "movabs rcx, 0x2222222222222222",       // H_1
    "xor rcx, rsi",                         // expected rbp
    "cmp rbp, rcx",                         // rbp intact?
    "je 2f",                                // yes: skip
    "or eax, 2",                            // no: bit 1
    "2:",                                   //
    "movabs rcx, 0x3333333333333333",       // H_2
    "xor rcx, rsi",                         // expected r12
    "cmp r12, rcx",                         // r12 intact?
    "je 2f",                                // yes: skip
    "or eax, 4",                            // no: bit 2
    "2:",                                   //
    "movabs rcx, 0x4444444444444444",       // H_3
    "xor rcx, rsi",                         // expected r13
    "cmp r13, rcx",                         // r13 intact?
    "je 2f",                                // yes: skip
    "or eax, 8",                            // no: bit 3
    "2:",                                   //
    "movabs rcx, 0x5555555555555555",       // H_4
    "xor rcx, rsi",                         // expected r14
    "cmp r14, rcx",                         // r14 intact?
    "je 2f",                                // yes: skip
    "or eax, 16",                           // no: bit 4
    "2:",                                   //
    "movabs rcx, 0x6666666666666666",       // H_5
    "xor rcx, rsi",                         // expected r15
    "cmp r15, rcx",                         // r15 intact?
    "je 2f",                                // yes: skip
    "or eax, 32",                           // no: bit 5
    "2:",                                   //
    "mov [rdi + 48], rax",                  // ctx.mask = mask
    "add rsp, 8",                           // drop the ctx slot
    ".cfi_adjust_cfa_offset -8",            // CFA = rsp+56
    "pop r15",                              // restore r15
    ".cfi_adjust_cfa_offset -8",            // CFA = rsp+48
    ".cfi_restore r15",                     // r15 is the caller's again
    "pop r14",                              // restore r14
    ".cfi_adjust_cfa_offset -8",            // CFA = rsp+40
    ".cfi_restore r14",                     // r14 is the caller's again
    "pop r13",                              // restore r13
    ".cfi_adjust_cfa_offset -8",            // CFA = rsp+32
    ".cfi_restore r13",                     // r13 is the caller's again
    "pop r12",                              // restore r12
    ".cfi_adjust_cfa_offset -8",            // CFA = rsp+24
    ".cfi_restore r12",                     // r12 is the caller's again
    "pop rbp",                              // restore rbp
    ".cfi_adjust_cfa_offset -8",            // CFA = rsp+16
    ".cfi_restore rbp",                     // rbp is the caller's again
    "pop rbx",                              // restore rbx
    ".cfi_adjust_cfa_offset -8",            // CFA = rsp+8
    ".cfi_restore rbx",                     // rbx is the caller's again
    "ret",                                  // back to Rust
    ".cfi_endproc",                         // end of FDE
    "",                                     //
    ".p2align 4",                           // align the entry point
    ".globl test_fiber_regs",               // global, so any codegen unit can link to it
    ".hidden test_fiber_regs",              // but not exported
    "test_fiber_regs:",                     // rdi = state, rsi = seed, rdx = after, rcx = after_arg
    ".cfi_startproc",                       // CFA = rsp+8
    "push rbx",                             // save rbx
    ".cfi_adjust_cfa_offset 8",             // CFA = rsp+16
    ".cfi_offset rbx, -16",                 // rbx at CFA-16
    "push rbp",                             // save rbp
    ".cfi_adjust_cfa_offset 8",             // CFA = rsp+24
    ".cfi_offset rbp, -24",                 // rbp at CFA-24
    "push r12",                             // save r12
    ".cfi_adjust_cfa_offset 8",             // CFA = rsp+32
    ".cfi_offset r12, -32",                 // r12 at CFA-32
    "push r13",                             // save r13
    ".cfi_adjust_cfa_offset 8",             // CFA = rsp+40
    ".cfi_offset r13, -40",                 // r13 at CFA-40
    "push r14",                             // save r14
    ".cfi_adjust_cfa_offset 8",             // CFA = rsp+48
    ".cfi_offset r14, -48",                 // r14 at CFA-48
    "push r15",                             // save r15
    ".cfi_adjust_cfa_offset 8",             // CFA = rsp+56
    ".cfi_offset r15, -56",                 // r15 at CFA-56
    "sub rsp, 40",                          // four slots plus padding; realigns to 16
    ".cfi_adjust_cfa_offset 40",            // CFA = rsp+96
    "mov [rsp], rdi",                       // keep state
    "mov [rsp + 8], rsi",                   // keep seed
    "mov [rsp + 16], rdx",                  // keep after
    "mov [rsp + 24], rcx",                  // keep after_arg
    "movabs rbx, 0x0F1E2D3C4B5A6978",       // F_0
    "xor rbx, rsi",                         // rbx = F_0 ^ seed
    "movabs rbp, 0x1F2E3D4C5B6A7988",       // F_1 (rbp is not a frame pointer here)
    "xor rbp, rsi",                         // rbp = F_1 ^ seed
    "movabs r12, 0x2F3E4D5C6B7A8998",       // F_2
    "xor r12, rsi",                         // r12 = F_2 ^ seed
    "movabs r13, 0x3F4E5D6C7B8A99A8",       // F_3
    "xor r13, rsi",                         // r13 = F_3 ^ seed
    "movabs r14, 0x4F5E6D7C8B9AA9B8",       // F_4
    "xor r14, rsi",                         // r14 = F_4 ^ seed
    "movabs r15, 0x5F6E7D8C9BAAB9C8",       // F_5
    "xor r15, rsi",                         // r15 = F_5 ^ seed
    "call {suspend}",                       // backstop_asm_fiber_suspend(state); rdi = state still
    "mov rdi, [rsp + 24]",                  // first argument = after_arg
    "call qword ptr [rsp + 16]",            // after(after_arg), patterns still live (may unwind)
    "mov rsi, [rsp + 8]",                   // rsi = seed
    "xor eax, eax",                         // mask = 0
    "movabs rcx, 0x0F1E2D3C4B5A6978",       // F_0
    "xor rcx, rsi",                         // expected rbx
    "cmp rbx, rcx",                         // rbx intact?
    "je 2f",                                // yes: skip
    "or eax, 1",                            // no: bit 0
    "2:",                                   //
    "movabs rcx, 0x1F2E3D4C5B6A7988",       // F_1
    "xor rcx, rsi",                         // expected rbp
    "cmp rbp, rcx",                         // rbp intact?
    "je 2f",                                // yes: skip
    "or eax, 2",                            // no: bit 1
    "2:",                                   //
    "movabs rcx, 0x2F3E4D5C6B7A8998",       // F_2
    "xor rcx, rsi",                         // expected r12
    "cmp r12, rcx",                         // r12 intact?
    "je 2f",                                // yes: skip
    "or eax, 4",                            // no: bit 2
    "2:",                                   //
    "movabs rcx, 0x3F4E5D6C7B8A99A8",       // F_3
    "xor rcx, rsi",                         // expected r13
    "cmp r13, rcx",                         // r13 intact?
    "je 2f",                                // yes: skip
    "or eax, 8",                            // no: bit 3
    "2:",                                   //
    "movabs rcx, 0x4F5E6D7C8B9AA9B8",       // F_4
    "xor rcx, rsi",                         // expected r14
    "cmp r14, rcx",                         // r14 intact?
    "je 2f",                                // yes: skip
    "or eax, 16",                           // no: bit 4
    "2:",                                   //
    "movabs rcx, 0x5F6E7D8C9BAAB9C8",       // F_5
    "xor rcx, rsi",                         // expected r15
    "cmp r15, rcx",                         // r15 intact?
    "je 2f",                                // yes: skip
    "or eax, 32",                           // no: bit 5
    "2:",                                   //
    "add rsp, 40",                          // drop the slots
    ".cfi_adjust_cfa_offset -40",           // CFA = rsp+56
    "pop r15",                              // restore r15
    ".cfi_adjust_cfa_offset -8",            // CFA = rsp+48
    ".cfi_restore r15",                     // r15 is the caller's again
    "pop r14",                              // restore r14
    ".cfi_adjust_cfa_offset -8",            // CFA = rsp+40
    ".cfi_restore r14",                     // r14 is the caller's again
    "pop r13",                              // restore r13
    ".cfi_adjust_cfa_offset -8",            // CFA = rsp+32
    ".cfi_restore r13",                     // r13 is the caller's again
    "pop r12",                              // restore r12
    ".cfi_adjust_cfa_offset -8",            // CFA = rsp+24
    ".cfi_restore r12",                     // r12 is the caller's again
    "pop rbp",                              // restore rbp
    ".cfi_adjust_cfa_offset -8",            // CFA = rsp+16
    ".cfi_restore rbp",                     // rbp is the caller's again
    "pop rbx",                              // restore rbx
    ".cfi_adjust_cfa_offset -8",            // CFA = rsp+8
    ".cfi_restore rbx",                     // rbx is the caller's again
    "ret",                                  // return the mask in rax
    ".cfi_endproc",                         // end of FDE
    suspend = sym backstop_asm_fiber_suspend,
);

/// What `test_host_harness` calls, with what, and what came back.
#[repr(C)]
struct HostCall {
    func: usize,
    a0: usize,
    a1: usize,
    a2: usize,
    a3: usize,
    seed: u64,
    mask: u64,
    result: u64,
}

extern "C-unwind" {
    fn test_host_harness(ctx: *mut HostCall);
    fn test_fiber_regs(
        state: *mut FiberState,
        seed: u64,
        after: extern "C-unwind" fn(*mut u8),
        after_arg: *mut u8,
    ) -> u64;
}

/// Runs `call` through the harness; returns (result, mask).
fn harness(mut call: HostCall) -> (u64, u64) {
    // SAFETY: `call.func` is one of the fiber routines with valid arguments
    // (the callers' responsibility); the harness follows the System V ABI.
    unsafe { test_host_harness(&mut call) };
    (call.result, call.mask)
}

extern "C-unwind" fn after_nothing(_: *mut u8) {}

/// Per-round seeds, different on each side.
fn host_seed(i: u64, r: u64) -> u64 {
    (i << 32 | r).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
fn fiber_seed(i: u64, r: u64) -> u64 {
    (i << 32 | r).wrapping_mul(0x2545_F491_4F6C_DD1D)
}

const ROUNDS: u64 = 8;

/// Fiber side of test 6: `ROUNDS` suspends through `test_fiber_regs`, ORing
/// the masks into `mask`.
struct RegsFiber {
    state: *mut FiberState,
    iteration: u64,
    mask: Cell<u64>,
}

unsafe extern "C-unwind" fn regs_fiber_entry(arg: *mut u8) {
    // SAFETY: `arg` is the test's `RegsFiber`, alive until the fiber ends.
    let ctx = unsafe { &*arg.cast::<RegsFiber>() };
    for r in 0..ROUNDS {
        // SAFETY: on the fiber of `ctx.state`, innermost.
        let m =
            unsafe { test_fiber_regs(ctx.state, fiber_seed(ctx.iteration, r), after_nothing, arg) };
        ctx.mask.set(ctx.mask.get() | m);
    }
}

#[test]
fn callee_saved_registers_survive_every_switch() {
    let stack = GuestStack::new(64 * 1024, 4096).unwrap();
    let state = FiberState::new();
    for i in 0..2000u64 {
        let ctx = RegsFiber {
            state: sp(&state),
            iteration: i,
            mask: Cell::new(0),
        };
        let (result, mask) = harness(HostCall {
            func: backstop_asm_fiber_start as *const () as usize,
            a0: sp(&state) as usize,
            a1: stack.top() as usize,
            a2: regs_fiber_entry as *const () as usize,
            a3: &ctx as *const RegsFiber as usize,
            seed: host_seed(i, 0),
            mask: 0,
            result: u64::MAX,
        });
        assert_eq!(
            mask, 0,
            "host registers clobbered by fiber_start (mask {mask:#b})"
        );
        assert_eq!(result, 1, "fiber_start did not report a suspension");
        for r in 1..=ROUNDS {
            let (result, mask) = harness(HostCall {
                func: backstop_asm_fiber_resume as *const () as usize,
                a0: sp(&state) as usize,
                a1: 0,
                a2: 0,
                a3: 0,
                seed: host_seed(i, r),
                mask: 0,
                result: u64::MAX,
            });
            assert_eq!(
                mask, 0,
                "host registers clobbered by fiber_resume (mask {mask:#b})"
            );
            assert_eq!(result, u64::from(r != ROUNDS), "wrong exit in round {r}");
        }
        assert_eq!(
            ctx.mask.get(),
            0,
            "fiber registers clobbered (mask {:#b})",
            ctx.mask.get()
        );
    }
}

/// Twelve values live across a call, on either side. At opt-level >= 1
/// LLVM keeps most of them in callee-saved registers.
#[inline(never)]
fn live_locals_across(seed: u64, f: &mut dyn FnMut()) -> u64 {
    let v: [u64; 12] = std::array::from_fn(|k| black_box(seed ^ ((k as u64 + 1) * 0x0101_0101)));
    let [a, b, c, d, e, g, h, j, k, l, m, n] = v;
    f();
    black_box(a)
        .wrapping_mul(3)
        .wrapping_add(b.rotate_left(7) ^ c)
        .wrapping_add(d.rotate_left(13) ^ e)
        .wrapping_add(g.wrapping_mul(5) ^ h.rotate_left(29))
        .wrapping_add(j ^ k.rotate_left(41))
        .wrapping_add(l.wrapping_mul(7) ^ m ^ n.rotate_left(3))
}

fn expected_live(seed: u64) -> u64 {
    live_locals_across(seed, &mut || {})
}

#[test]
fn rust_locals_survive_on_both_sides() {
    let stack = GuestStack::new(STACK, 4096).unwrap();
    let state = FiberState::new();
    let s = sp(&state);
    let bad = Cell::new(0u32);
    for i in 0..2000u64 {
        let fiber_seed = black_box(i.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let host_seed = black_box(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let fiber_body = || {
            for r in 0..ROUNDS {
                let got = live_locals_across(fiber_seed ^ r, &mut || {
                    // SAFETY: on the fiber of `state`, innermost.
                    unsafe { fiber_suspend(s) }
                });
                if got != expected_live(fiber_seed ^ r) {
                    bad.set(bad.get() + 1);
                }
            }
        };
        let mut exit = FiberExit::Suspended;
        let got = live_locals_across(host_seed, &mut || {
            // SAFETY: the stack and everything the body borrows outlive the fiber.
            exit = unsafe { start_fn(s, &stack, fiber_body) };
        });
        assert_eq!(
            got,
            expected_live(host_seed),
            "host locals across fiber_start"
        );
        let mut rounds = 0;
        while exit == FiberExit::Suspended {
            let seed = host_seed ^ rounds;
            let got = live_locals_across(seed, &mut || {
                // SAFETY: suspended.
                exit = unsafe { fiber_resume(s) };
            });
            assert_eq!(got, expected_live(seed), "host locals across fiber_resume");
            rounds += 1;
        }
        assert_eq!(rounds, ROUNDS);
        assert_eq!(bad.get(), 0, "fiber locals corrupted across fiber_suspend");
    }
}

/// Fiber side of the unwind variant: suspends with every callee-saved
/// register holding a pattern, then unwinds from `after` on resume.
struct UnwindFiber {
    state: *mut FiberState,
    iteration: u64,
}

extern "C-unwind" fn after_unwind(arg: *mut u8) {
    // SAFETY: `arg` is the test's `UnwindFiber`.
    let ctx = unsafe { &*arg.cast::<UnwindFiber>() };
    resume_unwind(Box::new(Payload(ctx.iteration)));
}

unsafe extern "C-unwind" fn unwind_fiber_entry(arg: *mut u8) {
    // SAFETY: `arg` is the test's `UnwindFiber`, alive until the fiber ends.
    let ctx = unsafe { &*arg.cast::<UnwindFiber>() };
    // SAFETY: on the fiber of `ctx.state`, innermost.
    unsafe { test_fiber_regs(ctx.state, fiber_seed(ctx.iteration, 0), after_unwind, arg) };
    unreachable!("after_unwind returned");
}

/// Catches the unwind that a resume raises on the fiber, with twelve live
/// locals in this frame; returns their mix.
#[inline(never)]
fn resume_and_catch(state: *mut FiberState, seed: u64, i: u64) -> u64 {
    let mut err = None;
    let got = live_locals_across(seed, &mut || {
        // SAFETY: suspended.
        let r = catch_unwind(|| unsafe { fiber_resume(state) });
        err = r.err();
    });
    expect_payload(err.expect("no unwind reached the resumer"), i);
    got
}

#[test]
fn callee_saved_registers_survive_unwind_after_resume() {
    quiet_panics();
    let stack = GuestStack::new(STACK, 4096).unwrap();
    let state = FiberState::new();
    for i in 0..2000u64 {
        let ctx = UnwindFiber {
            state: sp(&state),
            iteration: i,
        };
        // SAFETY: our own stack; `ctx` outlives the fiber.
        let exit = unsafe {
            fiber_start(
                sp(&state),
                stack.top(),
                unwind_fiber_entry,
                (&ctx as *const UnwindFiber).cast_mut().cast(),
            )
        };
        assert_eq!(exit, FiberExit::Suspended);
        let seed = host_seed(i, 1);
        assert_eq!(resume_and_catch(sp(&state), seed, i), expected_live(seed));
        assert!(!state.is_suspended());
    }
}

// ----------------------------------------- frame record for fp walkers

// test_call_with_frame(func: rdi, a0: rsi, a1: rdx, a2: rcx, a3: r8,
// out: r9) -> rax: a caller with a classic frame (push rbp; mov rbp, rsp).
// Calls func(a0, a1, a2, a3) from one of two call sites (site B if out[2]
// is nonzero, so successive calls can differ), stores its rbp in out[0] and
// that call's return address in out[1], and returns func's result. A
// frame-pointer walker in the callee must see exactly {out[0], out[1]} as
// the record that leads back here.
//
//   +--------------------+ <- CFA
//   | return address     | CFA-8
//   | caller's rbp       | CFA-16  <- rbp, rsp (16-byte aligned at the call)
#[rustfmt::skip]
std::arch::global_asm!(
    ".text",                                // code section
    ".p2align 4",                           // align the entry point
    ".globl test_call_with_frame",          // global, so any codegen unit can link to it
    ".hidden test_call_with_frame",         // but not exported
    "test_call_with_frame:",                // rdi = func, rsi = a0, rdx = a1, rcx = a2, r8 = a3, r9 = out
    ".cfi_startproc",                       // CFA = rsp+8
    "push rbp",                             // save the caller's rbp
    ".cfi_adjust_cfa_offset 8",             // CFA = rsp+16
    ".cfi_offset rbp, -16",                 // rbp at CFA-16
    "mov rbp, rsp",                         // our frame record
    ".cfi_def_cfa_register rbp",            // CFA = rbp+16
    "mov [r9], rbp",                        // out[0] = our rbp
    "mov rax, rdi",                         // rax = func
    "mov rdi, rsi",                         // first argument = a0
    "mov rsi, rdx",                         // second argument = a1
    "mov rdx, rcx",                         // third argument = a2
    "mov rcx, r8",                          // fourth argument = a3
    "cmp qword ptr [r9 + 16], 0",           // which call site?
    "jne 4f",                               // out[2] != 0: site B
    "lea r10, [rip + 3f]",                  // site A's return address
    "mov [r9 + 8], r10",                    // out[1] = it
    "call rax",                             // site A: func(a0, a1, a2, a3)
    "3:",                                   // site A's return address
    "jmp 5f",                               // to the common exit
    "4:",                                   // site B
    "lea r10, [rip + 6f]",                  // site B's return address
    "mov [r9 + 8], r10",                    // out[1] = it
    "call rax",                             // site B: func(a0, a1, a2, a3)
    "6:",                                   // site B's return address
    "5:",                                   // common exit; rax = func's result
    "pop rbp",                              // restore the caller's rbp
    ".cfi_def_cfa rsp, 8",                  // CFA = rsp+8
    ".cfi_restore rbp",                     // rbp is the caller's again
    "ret",                                  // return func's result
    ".cfi_endproc",                         // end of FDE
);

extern "C-unwind" {
    fn test_call_with_frame(
        func: usize,
        a0: usize,
        a1: usize,
        a2: usize,
        a3: usize,
        out: *mut [usize; 3],
    ) -> usize;
}

/// Calls `f` under `depth` extra non-inlined frames, so that its stack
/// pointer differs from one call to the next.
#[inline(never)]
fn at_depth(depth: u32, f: &mut dyn FnMut()) {
    let pad = [depth; 8];
    if depth == 0 {
        f();
    } else {
        at_depth(depth - 1, f);
    }
    black_box(&pad);
}

/// The frame record at the fiber's top (`T-16`: rbp, `T-8`: return address).
fn top_record(stack: &GuestStack) -> [usize; 2] {
    let t = stack.top() as usize & !15;
    // SAFETY: the top 32 bytes of our own stack, written by the switches.
    unsafe {
        [
            ((t - 16) as *const usize).read(),
            ((t - 8) as *const usize).read(),
        ]
    }
}

#[test]
fn frame_record_names_the_current_runner() {
    let stack = GuestStack::new(64 * 1024, 4096).unwrap();
    let state = FiberState::new();
    let s = sp(&state);
    let seen = RefCell::new(Vec::new());
    for _ in 0..1000 {
        seen.borrow_mut().clear();
        let body = || {
            seen.borrow_mut().push(top_record(&stack));
            for _ in 0..3 {
                // SAFETY: on the fiber of `state`, innermost.
                unsafe { fiber_suspend(s) };
                seen.borrow_mut().push(top_record(&stack));
            }
        };
        unsafe extern "C-unwind" fn tramp<F: FnOnce()>(arg: *mut u8) {
            // SAFETY: `arg` is the `Option<F>` below, alive for this take.
            unsafe { (*arg.cast::<Option<F>>()).take() }.unwrap()();
        }
        fn tramp_of<F: FnOnce()>(_: &Option<F>) -> unsafe extern "C-unwind" fn(*mut u8) {
            tramp::<F>
        }
        let mut slot = Some(body);
        let mut expected = Vec::new();
        let mut out = [0usize; 3];
        // SAFETY: our own stack; `slot` and what the body borrows outlive
        // the fiber; the helper calls fiber_start with these arguments.
        let mut exit = unsafe {
            test_call_with_frame(
                backstop_asm_fiber_start as *const () as usize,
                s as usize,
                stack.top() as usize,
                tramp_of(&slot) as usize,
                (&mut slot as *mut Option<_>) as usize,
                &mut out,
            )
        };
        expected.push([out[0], out[1]]);
        let mut cycle = 0;
        while exit == 1 {
            cycle += 1;
            out[2] = cycle % 2;
            at_depth(cycle as u32, &mut || {
                // SAFETY: suspended; the helper calls fiber_resume(state).
                exit = unsafe {
                    test_call_with_frame(
                        backstop_asm_fiber_resume as *const () as usize,
                        s as usize,
                        0,
                        0,
                        0,
                        &mut out,
                    )
                };
            });
            expected.push([out[0], out[1]]);
        }
        // Every record differs from the previous one, so a stale copy shows.
        assert!(expected
            .windows(2)
            .all(|w| w[0][0] != w[1][0] && w[0][1] != w[1][1]));
        assert_eq!(*seen.borrow(), expected);
    }
}

// test_record_rbp(out: rdi): a fiber entry that stores the rbp it started
// with in *out and returns. No frame, so CFA = rsp+8 throughout.
#[rustfmt::skip]
std::arch::global_asm!(
    ".text",                                // code section
    ".p2align 4",                           // align the entry point
    ".globl test_record_rbp",               // global, so any codegen unit can link to it
    ".hidden test_record_rbp",              // but not exported
    "test_record_rbp:",                     // rdi = out
    ".cfi_startproc",                       // CFA = rsp+8
    "mov [rdi], rbp",                       // *out = rbp as the fiber's base left it
    "ret",                                  // back to the base
    ".cfi_endproc",                         // end of FDE
);

extern "C-unwind" {
    fn test_record_rbp(out: *mut u8);
}

#[test]
fn entry_starts_with_rbp_at_the_frame_record() {
    let stack = GuestStack::new(64 * 1024, 4096).unwrap();
    let state = FiberState::new();
    for skew in 0..32usize {
        let top = stack.top().wrapping_sub(skew);
        let mut rbp = 0usize;
        // SAFETY: our own stack; `rbp` outlives the fiber, which returns.
        let exit = unsafe {
            fiber_start(
                sp(&state),
                top,
                test_record_rbp,
                (&mut rbp as *mut usize).cast(),
            )
        };
        assert_eq!(exit, FiberExit::Returned);
        assert_eq!(rbp, (top as usize & !15) - 16);
    }
}

// ------------------------------------------------------------ 7: nesting

#[test]
fn fibers_nest_and_unwind_across_both() {
    quiet_panics();
    let outer_stack = GuestStack::new(STACK, 4096).unwrap();
    let inner_stack = GuestStack::new(STACK, 4096).unwrap();
    let outer = FiberState::new();
    let inner = FiberState::new();
    let (o, n) = (sp(&outer), sp(&inner));
    let log = RefCell::new(Vec::new());
    let kill = Cell::new(false);
    for i in 0..500u64 {
        log.borrow_mut().clear();
        kill.set(i % 2 == 1);
        let outer_body = || {
            let _g = Guard { id: 1, log: &log };
            let inner_body = || {
                let _g = Guard { id: 2, log: &log };
                // Suspends the inner fiber: its runner is the outer fiber.
                // SAFETY: on the inner fiber, innermost.
                unsafe { fiber_suspend(n) };
                if kill.get() {
                    resume_unwind(Box::new(Payload(i)));
                }
            };
            // SAFETY: the inner stack and what the body borrows outlive it.
            assert_eq!(
                unsafe { start_fn(n, &inner_stack, inner_body) },
                FiberExit::Suspended
            );
            // Suspends the outer fiber, with the inner one still suspended.
            // SAFETY: on the outer fiber, innermost (the inner one is suspended).
            unsafe { fiber_suspend(o) };
            // Resumed by the host: now resume the inner fiber from here.
            // SAFETY: the inner fiber is suspended.
            assert_eq!(unsafe { fiber_resume(n) }, FiberExit::Returned);
        };
        // SAFETY: the outer stack and what the body borrows outlive it.
        assert_eq!(
            unsafe { start_fn(o, &outer_stack, outer_body) },
            FiberExit::Suspended
        );
        assert!(outer.is_suspended() && inner.is_suspended());
        assert!(log.borrow().is_empty());
        // SAFETY: suspended.
        let r = catch_unwind(|| unsafe { fiber_resume(o) });
        if kill.get() {
            expect_payload(r.expect_err("the unwind did not reach the host"), i);
        } else {
            assert_eq!(r.unwrap(), FiberExit::Returned);
        }
        assert_eq!(*log.borrow(), vec![2, 1]);
        assert!(!outer.is_suspended() && !inner.is_suspended());
    }
}

#[test]
fn suspend_from_a_call_on_stack_segment() {
    quiet_panics();
    let fiber_stack = GuestStack::new(STACK, 4096).unwrap();
    let segment_stack = GuestStack::new(STACK, 4096).unwrap();
    let state = FiberState::new();
    let s = sp(&state);
    let log = RefCell::new(Vec::new());
    let kill = Cell::new(false);
    let seen = Cell::new(0usize);
    for i in 0..1000u64 {
        log.borrow_mut().clear();
        kill.set(i % 2 == 0);
        let body = || {
            let _g = Guard { id: 1, log: &log };
            let mut segment = || {
                let _g = Guard { id: 2, log: &log };
                let local = 0u8;
                seen.set(black_box(&local) as *const u8 as usize);
                // The segment is suspended with the fiber that entered it.
                // SAFETY: the innermost fiber on this thread is `state`'s.
                unsafe { fiber_suspend(s) };
                if kill.get() {
                    resume_unwind(Box::new(Payload(i)));
                }
            };
            unsafe extern "C-unwind" fn tramp<F: FnMut()>(arg: *mut u8) {
                // SAFETY: `arg` is the `&mut F` below, alive for the call.
                unsafe { (*arg.cast::<F>())() };
            }
            fn run<F: FnMut()>(stack: &GuestStack, f: &mut F) {
                // SAFETY: our own stack, unused; `f` outlives the call.
                unsafe { call_on_stack(stack.top(), tramp::<F>, (f as *mut F).cast()) };
            }
            run(&segment_stack, &mut segment);
        };
        // SAFETY: both stacks and what the body borrows outlive the fiber.
        assert_eq!(
            unsafe { start_fn(s, &fiber_stack, body) },
            FiberExit::Suspended
        );
        assert!(on_stack(&segment_stack, seen.get()));
        assert!(log.borrow().is_empty());
        // SAFETY: suspended.
        let r = catch_unwind(|| unsafe { fiber_resume(s) });
        if kill.get() {
            expect_payload(r.expect_err("the unwind did not reach the host"), i);
        } else {
            assert_eq!(r.unwrap(), FiberExit::Returned);
        }
        assert_eq!(*log.borrow(), vec![2, 1]);
    }
}

// ------------------------------------------------------------ timings

/// Rough costs, printed (`cargo test -- --nocapture`); no assertion.
#[test]
fn timings() {
    const N: u64 = 1_000_000;
    let stack = GuestStack::new(64 * 1024, 4096).unwrap();
    let state = FiberState::new();
    let s = sp(&state);

    // A suspend + resume round trip.
    let counter = Cell::new(0u64);
    let body = || {
        for _ in 0..N {
            counter.set(counter.get() + 1);
            // SAFETY: on the fiber of `state`, innermost.
            unsafe { fiber_suspend(s) };
        }
    };
    // SAFETY: our stack; `counter` and `state` outlive the fiber.
    let mut exit = unsafe { start_fn(s, &stack, body) };
    let t = Instant::now();
    while exit == FiberExit::Suspended {
        // SAFETY: suspended.
        exit = unsafe { fiber_resume(s) };
    }
    let round_trip = t.elapsed().as_nanos() as f64 / N as f64;
    assert_eq!(counter.get(), N);

    unsafe extern "C-unwind" fn nothing(arg: *mut u8) {
        black_box(arg);
    }
    let t = Instant::now();
    for _ in 0..N {
        // SAFETY: our own unused stack; the entry does nothing.
        let e = unsafe { fiber_start(s, stack.top(), nothing, std::ptr::null_mut()) };
        black_box(e);
    }
    let start = t.elapsed().as_nanos() as f64 / N as f64;

    let t = Instant::now();
    for _ in 0..N {
        // SAFETY: our own unused stack; the entry does nothing.
        unsafe { call_on_stack(stack.top(), nothing, std::ptr::null_mut()) };
    }
    let call = t.elapsed().as_nanos() as f64 / N as f64;

    let t = Instant::now();
    for _ in 0..N {
        // SAFETY: a plain indirect call for reference.
        unsafe { black_box(nothing as unsafe extern "C-unwind" fn(*mut u8))(std::ptr::null_mut()) };
    }
    let direct = t.elapsed().as_nanos() as f64 / N as f64;

    println!(
        "fiber timings ({} build, {N} iterations each):\n  \
         suspend + resume round trip:     {round_trip:6.2} ns\n  \
         fiber_start, trivial entry:      {start:6.2} ns\n  \
         call_on_stack, trivial entry:    {call:6.2} ns\n  \
         indirect call, no switch:        {direct:6.2} ns",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
}
