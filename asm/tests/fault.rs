//! Tests of the fault-resume stub: a SIGSEGV on a `GuestStack` becomes a
//! Rust unwind that runs the destructors below the fault and reaches a
//! `catch_unwind` on the host stack, including when the fault is at the
//! very first instruction of a function and when the faulting `rsp` is
//! misaligned, and when the faulting code runs on a fiber that was
//! suspended and then resumed from another function.
//!
//! The test installs its own SIGSEGV handler (SA_SIGINFO | SA_ONSTACK, on a
//! sigaltstack) for the duration of each test, serialized by a lock, and
//! restores the previous handler (std's stack-overflow handler) afterwards.

use std::cell::Cell;
use std::hint::black_box;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use backstop_asm::{
    call_on_stack, fault_unwind_stub_address, fiber_resume, fiber_start, fiber_suspend,
    redirect_to_unwind_stub, FiberExit, FiberState, GuestStack,
};

const STACK: usize = 256 * 1024;
const ITERATIONS: usize = 500;

// ------------------------------------------------------- signal plumbing

/// Faults at addresses in `FAULT_LO..FAULT_HI` are redirected to the stub.
static FAULT_LO: AtomicUsize = AtomicUsize::new(0);
static FAULT_HI: AtomicUsize = AtomicUsize::new(0);
/// How many faults the handler redirected, and the last fault PC.
static FAULTS: AtomicUsize = AtomicUsize::new(0);
static LAST_PC: AtomicUsize = AtomicUsize::new(0);
/// The handler that was installed before ours (leaked for the handler's use).
static PREV: AtomicPtr<libc::sigaction> = AtomicPtr::new(ptr::null_mut());
/// One fault test at a time: the handler and the fault range are global.
static LOCK: Mutex<()> = Mutex::new(());

#[derive(Debug, PartialEq)]
struct FaultPayload {
    addr: usize,
}

/// The callback the stub calls: starts a Rust unwind without the panic hook.
extern "C-unwind" fn raise_fault(arg: *mut u8) -> ! {
    std::panic::resume_unwind(Box::new(FaultPayload { addr: arg as usize }))
}

extern "C" fn on_sigsegv(_sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    let lo = FAULT_LO.load(Ordering::Relaxed);
    let hi = FAULT_HI.load(Ordering::Relaxed);
    if (lo..hi).contains(&addr) {
        let uc = ctx.cast::<libc::ucontext_t>();
        // SAFETY: `ctx` is the kernel's ucontext for this signal.
        let pc = unsafe { (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] } as usize;
        FAULTS.fetch_add(1, Ordering::Relaxed);
        LAST_PC.store(pc, Ordering::Relaxed);
        // SAFETY: the fault is a load from the guard page of a stack we are
        // not overflowing; the interrupted rsp lies well inside a mapped
        // GuestStack, so rsp - 8 is writable. Every frame down to the
        // catch has CFI.
        unsafe { redirect_to_unwind_stub(uc, pc, addr as *mut u8, raise_fault) };
        return;
    }
    // Not ours: put the previous handler back and return; the faulting
    // instruction runs again and the previous handler sees it.
    let prev = PREV.load(Ordering::Relaxed);
    // SAFETY: `prev` is null or a leaked, valid sigaction.
    unsafe {
        if prev.is_null() {
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        } else {
            libc::sigaction(libc::SIGSEGV, prev, ptr::null_mut());
        }
    }
}

/// Our SIGSEGV handler and this thread's sigaltstack, for one test. The
/// caller holds `LOCK` for the handler's lifetime.
struct Handler {
    altstack: GuestStack,
    old_altstack: libc::stack_t,
}

impl Handler {
    fn install(_lock: &MutexGuard<'static, ()>, fault_range: std::ops::Range<usize>) -> Handler {
        FAULT_LO.store(fault_range.start, Ordering::Relaxed);
        FAULT_HI.store(fault_range.end, Ordering::Relaxed);
        FAULTS.store(0, Ordering::Relaxed);
        let altstack = GuestStack::new(64 * 1024, 4096).unwrap();
        // SAFETY: plain libc calls with valid, initialized arguments; the
        // alternate stack stays mapped until `drop` disables it.
        unsafe {
            let ss = libc::stack_t {
                ss_sp: altstack.usable_bottom().cast(),
                ss_flags: 0,
                ss_size: altstack.usable_size(),
            };
            let mut old_altstack: libc::stack_t = std::mem::zeroed();
            assert_eq!(libc::sigaltstack(&ss, &mut old_altstack), 0);

            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigsegv as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            let prev = Box::into_raw(Box::new(std::mem::zeroed::<libc::sigaction>()));
            assert_eq!(libc::sigaction(libc::SIGSEGV, &sa, prev), 0);
            let old = PREV.swap(prev, Ordering::Relaxed);
            if !old.is_null() {
                drop(Box::from_raw(old));
            }
            Handler {
                altstack,
                old_altstack,
            }
        }
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        FAULT_LO.store(0, Ordering::Relaxed);
        FAULT_HI.store(0, Ordering::Relaxed);
        // SAFETY: restores exactly what `install` replaced. The previous
        // sigaction stays leaked in PREV (the handler may still read it if a
        // signal is in flight on another thread; it is a few bytes).
        unsafe {
            let prev = PREV.load(Ordering::Relaxed);
            assert_eq!(libc::sigaction(libc::SIGSEGV, prev, ptr::null_mut()), 0);
            let mut current: libc::stack_t = std::mem::zeroed();
            assert_eq!(libc::sigaltstack(&self.old_altstack, &mut current), 0);
            assert_eq!(current.ss_sp, self.altstack.usable_bottom().cast());
        }
    }
}

fn current_sigsegv_handler() -> usize {
    // SAFETY: querying the current action with a null new action.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(libc::SIGSEGV, ptr::null(), &mut sa), 0);
        sa.sa_sigaction
    }
}

// ------------------------------------------------------- faulting code

// Assembly helpers (test code only).
//
// test_before_first_insn: never called. It only exists so that the byte
// just before test_fault_first_insn is covered by an FDE whose rules at its
// end are wrong for any other function (CFA = rsp+40, rbx/r12/r13/r14 saved).
// If the unwinder looked up the faulting frame at fault_pc - 1 it would use
// those rules and crash or corrupt registers.
//
// test_fault_first_insn(p: rdi) -> rax: loads *p at its very first byte.
//
// test_fault_misaligned(p: rdi) -> rax: moves rsp by 3 bytes, then loads *p,
// so the faulting rsp is not even 8-byte aligned.
//
// test_fault_clobbered(p: rdi) -> rax: saves every callee-saved register
// (with CFI), puts garbage in all of them, then loads *p, so the unwinder
// must restore all of them from this frame's CFI.
//   +--------------------+ <- CFA
//   | return address     | CFA-8
//   | rbx                | CFA-16
//   | rbp                | CFA-24
//   | r12                | CFA-32
//   | r13                | CFA-40
//   | r14                | CFA-48
//   | r15                | CFA-56  <- rsp at the fault
#[rustfmt::skip]
std::arch::global_asm!(
    ".text",                                // code section
    ".p2align 4",                           // align the decoy
    ".globl test_before_first_insn",        // global, so any codegen unit can link to it
    ".hidden test_before_first_insn",       // but not exported
    "test_before_first_insn:",              // decoy, never executed
    ".cfi_startproc",                       // CFA = rsp+8
    "push rbx",                             // decoy save
    ".cfi_adjust_cfa_offset 8",             // CFA = rsp+16
    ".cfi_offset rbx, -16",                 // rbx at CFA-16
    "push r12",                             // decoy save
    ".cfi_adjust_cfa_offset 8",             // CFA = rsp+24
    ".cfi_offset r12, -24",                 // r12 at CFA-24
    "push r13",                             // decoy save
    ".cfi_adjust_cfa_offset 8",             // CFA = rsp+32
    ".cfi_offset r13, -32",                 // r13 at CFA-32
    "push r14",                             // decoy save
    ".cfi_adjust_cfa_offset 8",             // CFA = rsp+40
    ".cfi_offset r14, -40",                 // r14 at CFA-40
    "ud2",                                  // last bytes of the decoy: its rules say CFA = rsp+40
    ".cfi_endproc",                         // end of decoy FDE (no padding follows)
    ".globl test_fault_first_insn",         // global, so any codegen unit can link to it
    ".hidden test_fault_first_insn",        // but not exported
    "test_fault_first_insn:",               // starts right after the decoy's last byte
    ".cfi_startproc",                       // CFA = rsp+8, RA at CFA-8
    "mov rax, [rdi]",                       // the fault: at the function's first byte
    "ret",                                  // not reached when *p is unmapped
    ".cfi_endproc",                         // end of FDE
    "",                                     //
    ".p2align 4",                           // align the entry point
    ".globl test_fault_misaligned",         // global, so any codegen unit can link to it
    ".hidden test_fault_misaligned",        // but not exported
    "test_fault_misaligned:",               // rdi = p
    ".cfi_startproc",                       // CFA = rsp+8
    "sub rsp, 3",                           // misalign rsp on purpose
    ".cfi_adjust_cfa_offset 3",             // CFA = rsp+11
    "mov rax, [rdi]",                       // the fault, with rsp = 5 mod 8
    "add rsp, 3",                           // undo the misalignment
    ".cfi_adjust_cfa_offset -3",            // CFA = rsp+8
    "ret",                                  // not reached when *p is unmapped
    ".cfi_endproc",                         // end of FDE
    "",                                     //
    ".p2align 4",                           // align the entry point
    ".globl test_fault_clobbered",          // global, so any codegen unit can link to it
    ".hidden test_fault_clobbered",         // but not exported
    "test_fault_clobbered:",                // rdi = p
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
    "mov rbx, -1",                          // garbage in rbx
    "mov rbp, -2",                          // garbage in rbp
    "mov r12, -3",                          // garbage in r12
    "mov r13, -4",                          // garbage in r13
    "mov r14, -5",                          // garbage in r14
    "mov r15, -6",                          // garbage in r15
    "mov rax, [rdi]",                       // the fault, with every callee-saved register garbage
    "pop r15",                              // restore r15 (not reached on a fault)
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
    "ret",                                  // return *p
    ".cfi_endproc",                         // end of FDE
);

extern "C-unwind" {
    fn test_fault_first_insn(p: *const u64) -> u64;
    fn test_fault_misaligned(p: *const u64) -> u64;
    fn test_fault_clobbered(p: *const u64) -> u64;
}

#[inline(never)]
fn rust_faulting_read(p: *const u64) -> u64 {
    // SAFETY: not safe at all when `p` is in a guard page: that is the
    // point. The fault is turned into an unwind by the handler.
    unsafe { p.read_volatile() }
}

// ------------------------------------------------------- harness

struct DropCounter<'a>(&'a Cell<u32>);
impl Drop for DropCounter<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// Calls `f` on `stack` through `call_on_stack`.
fn run_on<F: FnMut()>(stack: &GuestStack, mut f: F) {
    unsafe extern "C-unwind" fn trampoline<F: FnMut()>(arg: *mut u8) {
        // SAFETY: `arg` is the `&mut F` passed by `run_on`, alive for the call.
        let f = unsafe { &mut *arg.cast::<F>() };
        f();
    }
    // SAFETY: our own unused stack and a pointer to `f`, both outliving the call.
    unsafe { call_on_stack(stack.top(), trampoline::<F>, (&mut f as *mut F).cast()) }
}

/// On `stack`, with a guard live in the entry frame, calls `read(target)`,
/// which faults; returns what reached the host-side `catch_unwind`. Keeps
/// eight values live across the catch (in callee-saved registers at
/// opt-level >= 1) and checks them afterwards.
#[inline(never)]
fn fault_once(
    stack: &GuestStack,
    target: usize,
    read: unsafe extern "C-unwind" fn(*const u64) -> u64,
    drops: &Cell<u32>,
    seed: u64,
) -> FaultPayload {
    let vals: [u64; 8] = std::array::from_fn(|k| black_box(seed ^ ((k as u64 + 1) * 0x0101)));
    let [a, b, c, d, e, f, g, h] = vals;
    let r = catch_unwind(AssertUnwindSafe(|| {
        run_on(stack, || {
            let _guard = DropCounter(drops);
            // SAFETY: deliberately faulting; see the handler.
            let v = unsafe { read(target as *const u64) };
            black_box(v);
            unreachable!("the faulting read returned");
        })
    }));
    let mix = [a, b, c, d, e, f, g, h];
    for (k, v) in mix.iter().enumerate() {
        assert_eq!(*v, seed ^ ((k as u64 + 1) * 0x0101), "local {k} corrupted");
    }
    *r.expect_err("no unwind reached the host")
        .downcast::<FaultPayload>()
        .expect("wrong payload type")
}

unsafe extern "C-unwind" fn rust_read_entry(p: *const u64) -> u64 {
    rust_faulting_read(p)
}

fn run_fault_test(read: unsafe extern "C-unwind" fn(*const u64) -> u64, expect_pc: Option<usize>) {
    let lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let before = current_sigsegv_handler();
    let stack = GuestStack::new(STACK, 4096).unwrap();
    let target = stack.guard_range().start + 64;
    {
        let _handler = Handler::install(&lock, stack.guard_range());
        let drops = Cell::new(0u32);
        for i in 0..ITERATIONS {
            let seed = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let payload = fault_once(&stack, target, read, &drops, seed);
            assert_eq!(payload, FaultPayload { addr: target });
            assert_eq!(
                drops.get() as usize,
                i + 1,
                "guard below the fault did not drop"
            );
            assert_eq!(FAULTS.load(Ordering::Relaxed), i + 1);
            if let Some(pc) = expect_pc {
                assert_eq!(LAST_PC.load(Ordering::Relaxed), pc);
            }
        }
    }
    assert_eq!(
        current_sigsegv_handler(),
        before,
        "previous handler not restored"
    );
    drop(lock);
}

// ------------------------------------------------------- tests

#[test]
fn fault_in_rust_code_unwinds_to_host() {
    run_fault_test(rust_read_entry, None);
}

#[test]
fn fault_at_first_instruction_uses_signal_frame_semantics() {
    let first = test_fault_first_insn as *const () as usize;
    run_fault_test(test_fault_first_insn, Some(first));
}

#[test]
fn fault_with_misaligned_rsp() {
    run_fault_test(test_fault_misaligned, None);
}

#[test]
fn fault_with_every_callee_saved_register_clobbered() {
    run_fault_test(test_fault_clobbered, None);
}

#[test]
fn stub_address_is_stable_and_nonzero() {
    assert_ne!(fault_unwind_stub_address(), 0);
    assert_eq!(fault_unwind_stub_address(), fault_unwind_stub_address());
}

// ------------------------------------------------------- fibers

/// What the fiber of `fault_after_resume_unwinds_to_the_resumer` needs.
struct FaultFiber<'a> {
    state: *mut FiberState,
    target: usize,
    read: unsafe extern "C-unwind" fn(*const u64) -> u64,
    drops: &'a Cell<u32>,
}

unsafe extern "C-unwind" fn fault_fiber_entry(arg: *mut u8) {
    // SAFETY: `arg` is the test's `FaultFiber`, alive until the fiber ends.
    let ctx = unsafe { &*arg.cast::<FaultFiber>() };
    let _guard = DropCounter(ctx.drops);
    // SAFETY: on the fiber of `ctx.state`, innermost.
    unsafe { fiber_suspend(ctx.state) };
    // SAFETY: deliberately faulting; see the handler.
    let v = unsafe { (ctx.read)(ctx.target as *const u64) };
    black_box(v);
    unreachable!("the faulting read returned");
}

/// Resumes the faulting fiber from a frame that is not the starter's, with
/// eight live locals, and returns what reached its `catch_unwind`.
#[inline(never)]
fn resume_into_fault(state: *mut FiberState, seed: u64) -> FaultPayload {
    let vals: [u64; 8] = std::array::from_fn(|k| black_box(seed ^ ((k as u64 + 1) * 0x0101)));
    let [a, b, c, d, e, f, g, h] = vals;
    // SAFETY: the fiber is suspended.
    let r = catch_unwind(|| unsafe { fiber_resume(state) });
    let mix = [a, b, c, d, e, f, g, h];
    for (k, v) in mix.iter().enumerate() {
        assert_eq!(*v, seed ^ ((k as u64 + 1) * 0x0101), "local {k} corrupted");
    }
    *r.expect_err("no unwind reached the resumer")
        .downcast::<FaultPayload>()
        .expect("wrong payload type")
}

#[test]
fn fault_after_resume_unwinds_to_the_resumer() {
    let lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let stack = GuestStack::new(STACK, 4096).unwrap();
    let target = stack.guard_range().start + 64;
    let state = FiberState::new();
    let sp = std::ptr::from_ref(&state).cast_mut();
    {
        let _handler = Handler::install(&lock, stack.guard_range());
        let drops = Cell::new(0u32);
        for i in 0..ITERATIONS {
            let read: unsafe extern "C-unwind" fn(*const u64) -> u64 = match i % 3 {
                0 => rust_read_entry,
                1 => test_fault_first_insn,
                _ => test_fault_clobbered,
            };
            let ctx = FaultFiber {
                state: sp,
                target,
                read,
                drops: &drops,
            };
            // SAFETY: our own stack; `ctx` outlives the fiber, which ends
            // in this iteration.
            let exit = unsafe {
                fiber_start(
                    sp,
                    stack.top(),
                    fault_fiber_entry,
                    std::ptr::from_ref(&ctx).cast_mut().cast(),
                )
            };
            assert_eq!(exit, FiberExit::Suspended);
            let seed = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            assert_eq!(resume_into_fault(sp, seed), FaultPayload { addr: target });
            assert_eq!(
                drops.get() as usize,
                i + 1,
                "guard on the fiber did not drop"
            );
            assert_eq!(FAULTS.load(Ordering::Relaxed), i + 1);
            assert!(!state.is_suspended());
        }
    }
    drop(lock);
}
