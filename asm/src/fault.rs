//! The fault-resume stub: where a signal handler sends a faulted context so
//! that it starts an ordinary unwind from the faulting instruction.
//!
//! This file owns the stub `backstop_asm_fault_unwind_stub`, its CFI (a
//! signal frame whose caller is the faulting frame), and the helper that
//! rewrites a Linux x86-64 `ucontext_t` to resume there. The contract and the
//! stack diagram are in the crate documentation (`lib.rs`).

use core::arch::global_asm;

// backstop_asm_fault_unwind_stub: entered (not called) with
//   [rsp] = fault_pc, pushed by the signal handler as a fake return address
//   rdi   = arg, rsi = callback (extern "C-unwind" fn(*mut u8) -> !)
//   every other register as it was at the fault.
//
//   +----------------------------+ <- F = rsp at the fault (any alignment)  = CFA
//   | fault_pc                   | F-8   RA at CFA-8 (CIE default)
//   | faulting frame's rbp       | F-16  pushed here; rbp at CFA-16
//   +----------------------------+ <- rbp
//   | 0..8 bytes of realignment  |
//   +----------------------------+ <- 16-byte aligned
//   | return address into stub   |       pushed by `call rsi`
//
// `.cfi_signal_frame` (augmentation "S") makes the unwinder look up the
// caller (the faulting frame) at fault_pc exactly, not fault_pc - 1.
#[rustfmt::skip]
global_asm!(
    ".text",                                            // code section
    ".globl backstop_asm_fault_unwind_stub",            // visible to the Rust declaration below
    ".hidden backstop_asm_fault_unwind_stub",           // but not exported from a shared object
    ".type backstop_asm_fault_unwind_stub, @function",  // an ELF function symbol, for symbolizers
    ".p2align 4",                                       // 16-byte aligned entry point
    "backstop_asm_fault_unwind_stub:",                  // entered from a rewritten signal context
    ".cfi_startproc",                                   // open the FDE: CFA = rsp+8, RA (fault_pc) at CFA-8
    ".cfi_signal_frame",                                // caller's PC is exact: no "minus one" on lookup
    "push rbp",                                         // save the faulting frame's rbp
    ".cfi_adjust_cfa_offset 8",                         // CFA = rsp+16
    ".cfi_offset rbp, -16",                             // faulting frame's rbp lives at CFA-16
    "mov rbp, rsp",                                     // rbp = this frame's record (F-16)
    ".cfi_def_cfa_register rbp",                        // CFA = rbp+16, independent of the realignment
    "and rsp, -16",                                     // realign: the fault rsp may have any alignment
    "call rsi",                                         // callback(arg): starts an unwind, never returns
    "ud2",                                              // unreachable; keeps the return address inside this FDE
    ".cfi_endproc",                                     // close the FDE
    ".size backstop_asm_fault_unwind_stub, . - backstop_asm_fault_unwind_stub", // symbol size, for symbolizers
);

extern "C" {
    /// The stub itself. Never called as a function: only its address is
    /// taken, and a signal handler resumes a context there.
    fn backstop_asm_fault_unwind_stub();
}

/// Address of the fault-resume stub.
///
/// A signal handler (running on a `sigaltstack`) that wants the faulted
/// code to unwind rewrites the interrupted context and returns:
/// `rsp -= 8; *(rsp) = fault_pc; rip = fault_unwind_stub_address();
/// rdi = arg; rsi = callback`, where `callback` is an
/// `extern "C-unwind" fn(*mut u8) -> !` that starts a Rust unwind (for
/// example with `std::panic::resume_unwind`).
///
/// The stub's CFI carries `.cfi_signal_frame`, so libgcc looks up the
/// faulting frame at the exact fault PC, and describes its caller as the
/// faulting frame: return address = the pushed `fault_pc`, CFA = `rsp` at
/// stub entry + 8, every callee-saved register unchanged. The stub realigns
/// the stack to 16 bytes and calls `callback(arg)`. It never returns.
pub fn fault_unwind_stub_address() -> usize {
    backstop_asm_fault_unwind_stub as *const () as usize
}

/// Applies the redirect described at [`fault_unwind_stub_address`] to a
/// Linux x86-64 signal context: pushes `fault_pc` on the interrupted stack
/// and makes the context resume at the stub with `rdi = arg` and
/// `rsi = callback`.
///
/// # Safety
///
/// * `uc` must be the `ucontext_t` the kernel passed to a running
///   `SA_SIGINFO` handler (or another valid, writable `ucontext_t`).
/// * The 8 bytes below the context's `rsp` must be mapped and writable and
///   belong to the interrupted thread's stack. This function writes them
///   without checking, so it must not be used for a fault caused by the
///   stack itself overflowing into its guard.
/// * The interrupted code must be able to unwind from `fault_pc`: every
///   frame from there down to where the unwind is caught needs CFI
///   (registered FDEs for JIT code), and `callback` must start an unwind
///   that something catches.
pub unsafe fn redirect_to_unwind_stub(
    uc: *mut libc::ucontext_t,
    fault_pc: usize,
    arg: *mut u8,
    callback: extern "C-unwind" fn(*mut u8) -> !,
) {
    // SAFETY: `uc` is valid and writable (caller's contract), and the
    // register indices are Linux x86-64's `REG_*` constants, all below
    // `NGREG`.
    let gregs = unsafe { &mut (*uc).uc_mcontext.gregs };
    let rsp = (gregs[libc::REG_RSP as usize] as usize).wrapping_sub(8);
    // SAFETY: the caller guarantees `rsp - 8` is mapped, writable stack
    // memory of the interrupted thread. The fault rsp may have any
    // alignment, hence the unaligned write.
    unsafe { (rsp as *mut usize).write_unaligned(fault_pc) };
    gregs[libc::REG_RSP as usize] = rsp as i64;
    gregs[libc::REG_RIP as usize] = fault_unwind_stub_address() as i64;
    gregs[libc::REG_RDI as usize] = arg as i64;
    gregs[libc::REG_RSI as usize] = callback as usize as i64;
}
