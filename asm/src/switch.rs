//! The stack switch: `call_on_stack` and its assembly routine
//! `backstop_asm_call_on_stack`.
//!
//! This file owns the switch routine, its CFI (which names the saved host
//! stack pointer as the caller's frame, so unwinds and backtraces cross from
//! the guest stack to the host stack), and its Rust-facing wrapper. The stack
//! diagram is in the crate documentation (`lib.rs`).

use core::arch::global_asm;

// backstop_asm_call_on_stack(stack_top: rdi, entry: rsi, arg: rdx)
//
// System V x86-64 ABI. Clobbers only caller-saved registers (rdi, plus
// whatever `entry` clobbers); rbp is saved and restored, rsp is switched back.
//
//   host stack (after `push rbp`)           guest stack (while `entry` runs)
//   +-----------------------------+ H+16    +-----------------------------+ T (stack_top & -16)
//   | return address into caller  | H+8     | unused                      | T-8
//   | caller's rbp                | H       | H                           | T-16  <- rsp here = CFA of entry
//   +-----------------------------+ <- rbp  | return address into switch  | T-24
//                                           | entry's frame ...           |
//
// CFI at each point (CFA = caller's rsp after our `ret` = H+16):
//   entry:            CFA = rsp+8                 (CIE default; RA at CFA-8)
//   after push rbp:   CFA = rsp+16, rbp at CFA-16
//   after mov rbp:    CFA = rbp+16
//   on guest stack:   CFA = *(rsp) + 16           (DW_CFA_def_cfa_expression)
//   back on host:     CFA = rsp+16
//   after pop rbp:    CFA = rsp+8, rbp same value
#[rustfmt::skip]
global_asm!(
    ".text",                                        // code section
    ".globl backstop_asm_call_on_stack",            // visible to the Rust declaration below
    ".hidden backstop_asm_call_on_stack",           // but not exported from a shared object
    ".type backstop_asm_call_on_stack, @function",  // an ELF function symbol, for symbolizers
    ".p2align 4",                                   // 16-byte aligned entry point
    "backstop_asm_call_on_stack:",                  // rdi = stack_top, rsi = entry, rdx = arg
    ".cfi_startproc",                               // open the FDE: CFA = rsp+8, RA at CFA-8
    "push rbp",                                     // save caller's rbp on the host stack
    ".cfi_adjust_cfa_offset 8",                     // CFA = rsp+16
    ".cfi_offset rbp, -16",                         // caller's rbp lives at CFA-16
    "mov rbp, rsp",                                 // rbp = H, the host frame record
    ".cfi_def_cfa_register rbp",                    // CFA = rbp+16 (rsp is about to move)
    "and rdi, -16",                                 // T = stack_top rounded down to 16 bytes
    "mov [rdi - 16], rbp",                          // guest slot T-16 = H
    "lea rsp, [rdi - 16]",                          // switch: rsp = T-16, 16-byte aligned
    ".cfi_escape 0x0f, 0x05, 0x77, 0x00, 0x06, 0x23, 0x10", // CFA = *(rsp+0) + 16 (def_cfa_expression: breg7 0; deref; plus_uconst 16)
    "mov rdi, rdx",                                 // first argument of entry = arg
    "call rsi",                                     // entry(arg); rsp = T-24 inside, as the ABI wants
    "mov rsp, [rsp]",                               // switch back: rsp = H (slot survives; entry returned)
    ".cfi_def_cfa rsp, 16",                         // CFA = rsp+16 again
    "pop rbp",                                      // restore caller's rbp
    ".cfi_adjust_cfa_offset -8",                    // CFA = rsp+8
    ".cfi_restore rbp",                             // rbp holds the caller's value again
    "ret",                                          // return to the caller on the host stack
    ".cfi_endproc",                                 // close the FDE
    ".size backstop_asm_call_on_stack, . - backstop_asm_call_on_stack", // symbol size, for symbolizers
);

extern "C-unwind" {
    /// The raw assembly switch routine behind [`call_on_stack`], for code
    /// that wants to call it directly (for example a JIT trampoline, or an
    /// assembly test harness). Same contract as [`call_on_stack`]; System V
    /// ABI, arguments in `rdi`, `rsi`, `rdx`.
    pub fn backstop_asm_call_on_stack(
        stack_top: *mut u8,
        entry: unsafe extern "C-unwind" fn(*mut u8),
        arg: *mut u8,
    );
}

/// Switches the stack pointer to `stack_top`, calls `entry(arg)` there, and
/// switches back when it returns.
///
/// A Rust panic (or any unwind) leaving `entry` propagates out of
/// `call_on_stack` into the caller's frames on the original stack: the
/// switch frame's CFI names the saved host stack pointer and return address
/// as its caller, so the system unwinder (libgcc) and `std::backtrace` walk
/// from the guest stack into the host stack. Callee-saved registers survive
/// in the caller on return and through an unwind.
///
/// `stack_top` is rounded down to 16 bytes; `entry` starts with the stack
/// aligned as the System V ABI requires. The routine uses the 16 bytes just
/// below the rounded top for its own record.
///
/// # Safety
///
/// * `stack_top` must be the top of a writable region that nothing else uses
///   while `entry` runs (in particular, not the stack currently in use below
///   its live frames), large enough for the 16-byte record plus everything
///   `entry` and its callees need (including an unwind and any panic hook,
///   which can take tens of KiB when it prints a backtrace).
/// * `entry` must be safe to call with `arg`.
/// * If the region is a [`crate::GuestStack`], it must outlive the call.
#[inline(always)]
pub unsafe fn call_on_stack(
    stack_top: *mut u8,
    entry: unsafe extern "C-unwind" fn(*mut u8),
    arg: *mut u8,
) {
    // SAFETY: forwarded from this function's contract; the routine follows
    // the System V ABI for an `extern "C-unwind"` function with this
    // signature and has CFI at every instruction, so unwinding through it
    // is defined.
    unsafe { backstop_asm_call_on_stack(stack_top, entry, arg) }
}
