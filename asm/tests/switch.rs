//! Tests of `call_on_stack`: it runs code on a `GuestStack`, returns, lets
//! panics cross back to the host stack, lets `std::backtrace` walk across the
//! switch, and preserves callee-saved registers on return and through an
//! unwind.

use std::any::Any;
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::hint::black_box;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use backstop_asm::{call_on_stack, GuestStack};

/// Big enough for a panic hook that symbolizes a backtrace on the guest stack.
const STACK: usize = 1 << 20;

/// Silences the panic hook for the rest of this test binary, so that a
/// thousand panics stay fast and quiet. The hook is process-wide; tests that
/// do not call this work with either hook.
fn quiet_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

/// Calls `f` on `stack` through `call_on_stack`, passing the closure by
/// pointer. Panics leaving `f` propagate to the caller.
fn run_on<F: FnMut()>(stack: &GuestStack, mut f: F) {
    unsafe extern "C-unwind" fn trampoline<F: FnMut()>(arg: *mut u8) {
        // SAFETY: `arg` is the `&mut F` passed by `run_on`, alive for the call.
        let f = unsafe { &mut *arg.cast::<F>() };
        f();
    }
    // SAFETY: the stack is ours, unused, and outlives the call; the
    // trampoline receives a pointer to `f`, which outlives the call.
    unsafe {
        call_on_stack(
            stack.top(),
            trampoline::<F>,
            (&mut f as *mut F).cast::<u8>(),
        )
    }
}

fn on_stack(stack: &GuestStack, addr: usize) -> bool {
    (stack.usable_bottom() as usize..stack.top() as usize).contains(&addr)
}

// ---------------------------------------------------------------- test 1

unsafe extern "C-unwind" fn record_sp(arg: *mut u8) {
    let local = 0u64;
    let addr = black_box(&local) as *const u64 as usize;
    // SAFETY: `arg` points to a `usize` owned by the caller.
    unsafe { arg.cast::<usize>().write(addr) };
}

#[test]
fn runs_on_the_guest_stack_and_returns() {
    let stack = GuestStack::new(64 * 1024, 4096).unwrap();
    let host_local = 0u8;
    let host_addr = black_box(&host_local) as *const u8 as usize;
    assert!(!on_stack(&stack, host_addr));
    for _ in 0..10_000 {
        let mut seen = 0usize;
        // SAFETY: our own stack, unused; `seen` outlives the call.
        unsafe { call_on_stack(stack.top(), record_sp, (&mut seen as *mut usize).cast()) };
        assert!(
            on_stack(&stack, seen),
            "entry ran at {seen:#x}, outside the guest stack"
        );
    }
}

#[test]
fn closures_nest_across_two_stacks() {
    let outer = GuestStack::new(256 * 1024, 4096).unwrap();
    let inner = GuestStack::new(256 * 1024, 4096).unwrap();
    let mut addrs = (0usize, 0usize);
    run_on(&outer, || {
        let a = 0u8;
        addrs.0 = black_box(&a) as *const u8 as usize;
        run_on(&inner, || {
            let b = 0u8;
            addrs.1 = black_box(&b) as *const u8 as usize;
        });
    });
    assert!(on_stack(&outer, addrs.0));
    assert!(on_stack(&inner, addrs.1));
}

#[test]
fn unaligned_stack_top_is_rounded_down() {
    let stack = GuestStack::new(64 * 1024, 4096).unwrap();
    for skew in 1..16 {
        let top = stack.top().wrapping_sub(skew);
        let mut aligned = false;
        run_on_top(top, &mut aligned);
        assert!(aligned, "misaligned stack at entry with skew {skew}");
    }

    fn run_on_top(top: *mut u8, aligned: &mut bool) {
        unsafe extern "C-unwind" fn check(arg: *mut u8) {
            // A 16-byte aligned local is only possible if the ABI alignment
            // held at entry; also check it directly.
            #[repr(align(16))]
            struct A(#[allow(dead_code)] u8);
            let a = A(0);
            let ok = (black_box(&a) as *const A as usize) & 15 == 0;
            // SAFETY: `arg` points to the caller's `bool`.
            unsafe { arg.cast::<bool>().write(ok) };
        }
        // SAFETY: `top` lies inside a stack we own, with room below.
        unsafe { call_on_stack(top, check, (aligned as *mut bool).cast()) };
    }
}

// ---------------------------------------------------------------- test 2

#[derive(Debug, PartialEq)]
struct Payload(u64, String);

struct DropCounter<'a>(&'a Cell<u32>);
impl Drop for DropCounter<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

fn check_payload(err: Box<dyn Any + Send>, i: u64) {
    let p = err.downcast::<Payload>().expect("payload type lost");
    assert_eq!(*p, Payload(i, format!("iteration {i}")));
}

#[test]
fn panic_crosses_to_host_catch_unwind() {
    quiet_panics();
    let stack = GuestStack::new(STACK, 4096).unwrap();
    let drops = Cell::new(0u32);
    for i in 0..1000u64 {
        let r = catch_unwind(AssertUnwindSafe(|| {
            run_on(&stack, || {
                let _guard = DropCounter(&drops);
                std::panic::panic_any(Payload(i, format!("iteration {i}")));
            });
            unreachable!("call_on_stack returned after a panic");
        }));
        check_payload(r.unwrap_err(), i);
        assert_eq!(
            drops.get() as u64,
            i + 1,
            "the guard on the guest stack did not drop"
        );
    }
}

#[test]
fn resume_unwind_crosses_and_runs_host_side_destructors() {
    let stack = GuestStack::new(STACK, 4096).unwrap();
    let guest_drops = Cell::new(0u32);
    let host_drops = Cell::new(0u32);
    for i in 0..1000u64 {
        let r = catch_unwind(AssertUnwindSafe(|| {
            // A host frame between the catch and the switch, with its own guard.
            let _host_guard = DropCounter(&host_drops);
            run_on(&stack, || {
                let _guard = DropCounter(&guest_drops);
                std::panic::resume_unwind(Box::new(Payload(i, format!("iteration {i}"))));
            });
        }));
        check_payload(r.unwrap_err(), i);
        assert_eq!(guest_drops.get() as u64, i + 1);
        assert_eq!(host_drops.get() as u64, i + 1);
    }
}

#[test]
fn panic_crosses_two_nested_switches() {
    quiet_panics();
    let outer = GuestStack::new(STACK, 4096).unwrap();
    let inner = GuestStack::new(STACK, 4096).unwrap();
    let drops = Cell::new(0u32);
    for i in 0..200u64 {
        let r = catch_unwind(AssertUnwindSafe(|| {
            run_on(&outer, || {
                let _g1 = DropCounter(&drops);
                run_on(&inner, || {
                    let _g2 = DropCounter(&drops);
                    std::panic::panic_any(Payload(i, format!("iteration {i}")));
                });
            });
        }));
        check_payload(r.unwrap_err(), i);
        assert_eq!(drops.get() as u64, 2 * (i + 1));
    }
}

/// The default hook captures and prints a backtrace (RUST_BACKTRACE is set
/// on these machines) while running on the guest stack. Output is captured
/// by the test harness.
#[test]
fn default_hook_panic_crosses() {
    // If another test already installed the quiet hook, this still checks
    // the crossing, just without the printed backtrace.
    let stack = GuestStack::new(STACK, 4096).unwrap();
    for _ in 0..3 {
        let r = catch_unwind(|| run_on(&stack, || panic!("loud panic on the guest stack")));
        let msg = r.unwrap_err().downcast::<&'static str>().unwrap();
        assert_eq!(*msg, "loud panic on the guest stack");
    }
}

// ---------------------------------------------------------------- test 3

#[inline(never)]
fn host_caller_for_backtrace_xyzzy(stack: &GuestStack) -> String {
    let mut text = String::new();
    run_on(stack, || {
        text = format!("{}", Backtrace::force_capture());
    });
    black_box(text)
}

// `inline(never)` keeps this frame in release builds, where the backtrace
// is symbolized from the symbol table alone.
#[test]
#[inline(never)]
fn backtrace_walks_from_guest_into_host() {
    let stack = GuestStack::new(STACK, 4096).unwrap();
    let text = host_caller_for_backtrace_xyzzy(&stack);
    assert!(
        text.contains("backstop_asm_call_on_stack"),
        "switch frame missing from backtrace:\n{text}"
    );
    assert!(
        text.contains("host_caller_for_backtrace_xyzzy"),
        "backtrace stopped at the switch:\n{text}"
    );
    assert!(
        text.contains("backtrace_walks_from_guest_into_host"),
        "backtrace does not reach the test function:\n{text}"
    );
}

// ---------------------------------------------------------------- test 4

// Assembly helpers (test code only).
//
// test_clobbering_entry(arg: rdi): an `entry` for call_on_stack that saves
// every callee-saved register (with CFI), overwrites them all with garbage,
// calls clobber_inner(arg) (which may panic), then restores and returns.
//
//   +--------------------+ <- CFA
//   | return address     | CFA-8
//   | rbx                | CFA-16
//   | rbp                | CFA-24
//   | r12                | CFA-32
//   | r13                | CFA-40
//   | r14                | CFA-48
//   | r15                | CFA-56
//   | padding            | CFA-64  <- rsp, 16-byte aligned at the call
//
// test_callee_saved_harness(top: rdi, entry: rsi, arg: rdx) -> rax: saves
// the callee-saved registers (same frame layout), loads known patterns into
// rbx, rbp, r12-r15, calls backstop_asm_call_on_stack directly, and returns
// a bit mask of the registers that did not come back intact (0 = all good).
#[rustfmt::skip]
std::arch::global_asm!(
    ".text",                                // code section
    ".p2align 4",                           // align the entry point
    ".globl test_clobbering_entry",         // global, so any codegen unit can link to it
    ".hidden test_clobbering_entry",        // but not exported
    "test_clobbering_entry:",               // rdi = arg
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
    "sub rsp, 8",                           // realign to 16 for the call
    ".cfi_adjust_cfa_offset 8",             // CFA = rsp+64
    "mov rbx, -1",                          // garbage in rbx
    "mov rbp, -2",                          // garbage in rbp
    "mov r12, -3",                          // garbage in r12
    "mov r13, -4",                          // garbage in r13
    "mov r14, -5",                          // garbage in r14
    "mov r15, -6",                          // garbage in r15
    "call {inner}",                         // clobber_inner(arg); rdi unchanged
    "add rsp, 8",                           // drop the padding
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
    "ret",                                  // back to the switch routine
    ".cfi_endproc",                         // end of FDE
    "",                                     //
    ".p2align 4",                           // align the entry point
    ".globl test_callee_saved_harness",     // global, so any codegen unit can link to it
    ".hidden test_callee_saved_harness",    // but not exported
    "test_callee_saved_harness:",           // rdi = top, rsi = entry, rdx = arg
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
    "sub rsp, 8",                           // realign to 16 for the call
    ".cfi_adjust_cfa_offset 8",             // CFA = rsp+64
    "movabs rbx, 0x1111111111111111",       // pattern in rbx
    "movabs rbp, 0x2222222222222222",       // pattern in rbp (not a frame pointer here)
    "movabs r12, 0x3333333333333333",       // pattern in r12
    "movabs r13, 0x4444444444444444",       // pattern in r13
    "movabs r14, 0x5555555555555555",       // pattern in r14
    "movabs r15, 0x6666666666666666",       // pattern in r15
    "call {switch}",                        // backstop_asm_call_on_stack(top, entry, arg)
    "xor eax, eax",                         // result mask = 0
    "movabs rcx, 0x1111111111111111",       // expected rbx
    "cmp rbx, rcx",                         // rbx intact?
    "je 2f",                                // yes: skip
    "or eax, 1",                            // no: bit 0
    "2:",                                   //
    "movabs rcx, 0x2222222222222222",       // expected rbp
    "cmp rbp, rcx",                         // rbp intact?
    "je 2f",                                // yes: skip
    "or eax, 2",                            // no: bit 1
    "2:",                                   //
    "movabs rcx, 0x3333333333333333",       // expected r12
    "cmp r12, rcx",                         // r12 intact?
    "je 2f",                                // yes: skip
    "or eax, 4",                            // no: bit 2
    "2:",                                   //
    "movabs rcx, 0x4444444444444444",       // expected r13
    "cmp r13, rcx",                         // r13 intact?
    "je 2f",                                // yes: skip
    "or eax, 8",                            // no: bit 3
    "2:",                                   //
    "movabs rcx, 0x5555555555555555",       // expected r14
    "cmp r14, rcx",                         // r14 intact?
    "je 2f",                                // yes: skip
    "or eax, 16",                           // no: bit 4
    "2:",                                   //
    "movabs rcx, 0x6666666666666666",       // expected r15
    "cmp r15, rcx",                         // r15 intact?
    "je 2f",                                // yes: skip
    "or eax, 32",                           // no: bit 5
    "2:",                                   //
    "add rsp, 8",                           // drop the padding
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
    "ret",                                  // return the mask in rax
    ".cfi_endproc",                         // end of FDE
    inner = sym clobber_inner,
    switch = sym backstop_asm::backstop_asm_call_on_stack,
);

extern "C-unwind" {
    fn test_clobbering_entry(arg: *mut u8);
    fn test_callee_saved_harness(
        top: *mut u8,
        entry: unsafe extern "C-unwind" fn(*mut u8),
        arg: *mut u8,
    ) -> u64;
}

/// Called by `test_clobbering_entry` with every callee-saved register
/// holding garbage. `arg` points to a `bool`: panic if true.
extern "C-unwind" fn clobber_inner(arg: *mut u8) {
    // SAFETY: every caller passes a pointer to a live `bool`.
    if unsafe { arg.cast::<bool>().read() } {
        std::panic::resume_unwind(Box::new(Payload(7, "clobbered".into())));
    }
}

#[test]
fn callee_saved_registers_survive_return() {
    let stack = GuestStack::new(64 * 1024, 4096).unwrap();
    for _ in 0..10_000 {
        let mut panic = false;
        // SAFETY: our own stack; the harness follows the System V ABI.
        let mask = unsafe {
            test_callee_saved_harness(
                stack.top(),
                test_clobbering_entry,
                (&mut panic as *mut bool).cast(),
            )
        };
        assert_eq!(mask, 0, "callee-saved registers clobbered (mask {mask:#b})");
    }
}

/// Keeps twelve values live across a panic that unwinds through a frame
/// that clobbered every callee-saved register. At opt-level >= 1 LLVM keeps
/// such values in rbx, rbp, r12-r15 (checked in the disassembly while
/// writing this test); the landing pad only sees them intact if the unwinder
/// restored every register correctly through the switch frame.
#[inline(never)]
fn catch_with_live_locals(stack: &GuestStack, seed: u64) -> u64 {
    let a = black_box(seed ^ 0x0101);
    let b = black_box(seed ^ 0x0202);
    let c = black_box(seed ^ 0x0303);
    let d = black_box(seed ^ 0x0404);
    let e = black_box(seed ^ 0x0505);
    let f = black_box(seed ^ 0x0606);
    let g = black_box(seed ^ 0x0707);
    let h = black_box(seed ^ 0x0808);
    let mut panic = true;
    let r = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: our own stack; `panic` outlives the call.
        unsafe {
            call_on_stack(
                stack.top(),
                test_clobbering_entry,
                (&mut panic as *mut bool).cast(),
            )
        }
    }));
    assert!(r.is_err());
    black_box(a)
        .wrapping_mul(3)
        .wrapping_add(b.rotate_left(7))
        .wrapping_add(c.rotate_left(13) ^ d)
        .wrapping_add(e.wrapping_mul(5) ^ f.rotate_left(29))
        .wrapping_add(g ^ h.rotate_left(41))
}

fn expected_mix(seed: u64) -> u64 {
    let [a, b, c, d, e, f, g, h] = [
        0x0101, 0x0202, 0x0303, 0x0404, 0x0505, 0x0606, 0x0707, 0x0808,
    ]
    .map(|k: u64| seed ^ k);
    a.wrapping_mul(3)
        .wrapping_add(b.rotate_left(7))
        .wrapping_add(c.rotate_left(13) ^ d)
        .wrapping_add(e.wrapping_mul(5) ^ f.rotate_left(29))
        .wrapping_add(g ^ h.rotate_left(41))
}

#[test]
fn callee_saved_registers_survive_panic() {
    let stack = GuestStack::new(STACK, 4096).unwrap();
    for i in 0..1000u64 {
        let seed = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        assert_eq!(catch_with_live_locals(&stack, seed), expected_mix(seed));
    }
}

#[test]
fn callee_saved_registers_survive_normal_return_with_rust_locals() {
    let stack = GuestStack::new(64 * 1024, 4096).unwrap();
    for i in 0..1000u64 {
        let seed = black_box(i.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let vals: [u64; 8] = std::array::from_fn(|k| black_box(seed ^ (k as u64 * 0x0101)));
        let mut panic = false;
        // SAFETY: our own stack; `panic` outlives the call.
        unsafe {
            call_on_stack(
                stack.top(),
                test_clobbering_entry,
                (&mut panic as *mut bool).cast(),
            )
        };
        for (k, v) in vals.iter().enumerate() {
            assert_eq!(*v, seed ^ (k as u64 * 0x0101));
        }
    }
}
