//! Suspendable stacks ("fibers"): `fiber_start`, `fiber_suspend`,
//! `fiber_resume`, their assembly routines, and the per-fiber
//! [`FiberState`].
//!
//! This file owns the three switch routines, the fiber's bottom frame
//! (`backstop_asm_fiber_base`) and its CFI, which names whoever *currently*
//! runs the fiber (the starter, or the latest resumer) as the caller of the
//! fiber's outermost frame. The contract and the diagrams are in the crate
//! documentation (`lib.rs`); the per-instruction CFI is next to the assembly
//! below. It knows nothing of WebAssembly.
//!
//! # The shape of every switch
//!
//! All three routines save the six callee-saved registers with the same
//! six pushes, in the same order, so a "save area" always looks like this
//! (addresses grow upwards; `S` = `rsp` after the pushes):
//!
//! ```text
//!   +----------------------------+ S+56 = CFA of the saving routine
//!   | return address             | S+48
//!   | rbp                        | S+40
//!   | rbx                        | S+32
//!   | r12                        | S+24
//!   | r13                        | S+16
//!   | r14                        | S+8
//!   | r15                        | S
//!   +----------------------------+ <- S
//! ```
//!
//! A switch pushes a save area on the stack it leaves, stores `S`, loads the
//! `S` of the other side, pops the other side's registers and returns into
//! the other side. Because the layouts are identical, one CFI rule
//! (`CFA = rsp + 56`, each register at a fixed offset below the CFA)
//! describes every instruction of every routine after its pushes, on
//! whichever stack `rsp` points to. The runner's save area (on the host
//! side) is what the fiber's bottom frame points to.

use core::arch::global_asm;
use core::mem::offset_of;
use core::sync::atomic::{AtomicUsize, Ordering};

/// The result of running a fiber until it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FiberExit {
    /// `entry` returned; the fiber is finished and its stack is free.
    Returned,
    /// Code on the fiber called [`fiber_suspend`]; the fiber can be
    /// continued with [`fiber_resume`].
    Suspended,
    /// Code on the fiber called [`fiber_abandon`]: the fiber is finished,
    /// its frames were dropped without unwinding, and its stack is free.
    Abandoned,
}

/// Per-fiber state: where the fiber's stack top is, and the fiber's saved
/// stack pointer while it is suspended.
///
/// Create one per fiber (or reuse one for successive fibers), keep it at
/// the same address (for example in a `Box`) from [`fiber_start`] until the
/// fiber returns or unwinds out, and pass the same pointer to
/// [`fiber_suspend`] and [`fiber_resume`]. It holds no pointer to itself
/// and owns nothing; it is plain data that the assembly reads and writes.
///
/// It is `Send` and `Sync`: its fields are atomics (plain aligned 64-bit
/// moves in the assembly, which x86-64 performs atomically), so reading
/// [`is_suspended`](Self::is_suspended) from another thread is defined,
/// though only meaningful with the owner's synchronization.
#[repr(C)]
#[derive(Debug, Default)]
pub struct FiberState {
    /// The fiber's `rsp` (its save area) while suspended; 0 otherwise.
    /// Written by `fiber_suspend`, cleared by `fiber_resume`.
    guest_rsp: AtomicUsize,
    /// `T`, the fiber's stack top rounded down to 16, set by `fiber_start`.
    /// The 32 bytes below it hold the link to the current runner.
    top: AtomicUsize,
}

/// Offset of `FiberState::guest_rsp`, for the assembly.
const GUEST_RSP: usize = offset_of!(FiberState, guest_rsp);
/// Offset of `FiberState::top`, for the assembly.
const TOP: usize = offset_of!(FiberState, top);

impl FiberState {
    /// A state for a fiber that has not started.
    pub const fn new() -> Self {
        FiberState {
            guest_rsp: AtomicUsize::new(0),
            top: AtomicUsize::new(0),
        }
    }

    /// True between a [`fiber_suspend`] and the next [`fiber_resume`]:
    /// the fiber's frames are alive on its stack, and nothing runs there.
    pub fn is_suspended(&self) -> bool {
        self.guest_rsp.load(Ordering::Relaxed) != 0
    }
}

// Fiber stack top, while the fiber runs (T = stack_top & -16, addresses
// grow upwards). R is the current runner: the caller of fiber_start or of
// the latest fiber_resume; S_R is the save area that runner's switch
// routine pushed on its own stack.
//
//   fiber stack                                  runner's stack
//   +------------------------------+ T           +------------------------------+ S_R+56
//   | copy of R's return address   | T-8    ---> | return address into R        | S_R+48
//   | copy of R's rbp              | T-16 <-rbp  | R's rbp                      | S_R+40
//   | unused                       | T-24        | rbx, r12, r13, r14, r15 of R | S_R+32 .. S_R
//   | S_R (the link)               | T-32  ----> +------------------------------+ <- S_R
//   +------------------------------+ <- rsp at `call entry`
//   | return address into base     | T-40
//   | entry's frame ...            |
//
// T-32 is what the CFI reads: the bottom frame (backstop_asm_fiber_base)
// has CFA = *(T-32) + 56 = S_R + 56, the return address at CFA-8 and R's
// callee-saved registers at their save-area offsets, so the unwinder's next
// frame is R. T-16/T-8 form an rbp frame record equal to R's, and `rbp`
// points to it when `entry` starts, so frame-pointer walkers reach R too.
// fiber_start and fiber_resume both rewrite T-32, T-16 and T-8 before they
// switch, so all three always describe the current runner.
//
// Register rules used by every FDE below once the six pushes are done:
//   CFA = rsp+56 (or *(rsp)+56 in the base), RA at CFA-8 (CIE default),
//   rbp at CFA-16, rbx at CFA-24, r12 at CFA-32, r13 at CFA-40,
//   r14 at CFA-48, r15 at CFA-56.
#[rustfmt::skip]
global_asm!(
    // ---- Two macros for the save area layout described above: six pushes
    // (rbp first, r15 last) and the matching pops, each with its CFI.
    ".macro backstop_asm_fiber_save_registers",     // push the six callee-saved registers with their CFI,
    "",                                             // leaving rsp at the save area and CFA = rsp+56:
    "push rbp",                                     // save the caller's rbp
    ".cfi_adjust_cfa_offset 8",                     // CFA = rsp+16
    ".cfi_offset rbp, -16",                         // rbp at CFA-16
    "push rbx",                                     // save the caller's rbx
    ".cfi_adjust_cfa_offset 8",                     // CFA = rsp+24
    ".cfi_offset rbx, -24",                         // rbx at CFA-24
    "push r12",                                     // save the caller's r12
    ".cfi_adjust_cfa_offset 8",                     // CFA = rsp+32
    ".cfi_offset r12, -32",                         // r12 at CFA-32
    "push r13",                                     // save the caller's r13
    ".cfi_adjust_cfa_offset 8",                     // CFA = rsp+40
    ".cfi_offset r13, -40",                         // r13 at CFA-40
    "push r14",                                     // save the caller's r14
    ".cfi_adjust_cfa_offset 8",                     // CFA = rsp+48
    ".cfi_offset r14, -48",                         // r14 at CFA-48
    "push r15",                                     // save the caller's r15; rsp = the save area
    ".cfi_adjust_cfa_offset 8",                     // CFA = rsp+56
    ".cfi_offset r15, -56",                         // r15 at CFA-56
    ".endm",                                        // end of backstop_asm_fiber_save_registers
    ".macro backstop_asm_fiber_restore_registers",  // pop them again from the save area at rsp
    "",                                             // (CFA = rsp+56), with their CFI:
    "pop r15",                                      // restore the saved r15
    ".cfi_adjust_cfa_offset -8",                    // CFA = rsp+48
    ".cfi_restore r15",                             // r15 holds its saved value again
    "pop r14",                                      // restore the saved r14
    ".cfi_adjust_cfa_offset -8",                    // CFA = rsp+40
    ".cfi_restore r14",                             // r14 holds its saved value again
    "pop r13",                                      // restore the saved r13
    ".cfi_adjust_cfa_offset -8",                    // CFA = rsp+32
    ".cfi_restore r13",                             // r13 holds its saved value again
    "pop r12",                                      // restore the saved r12
    ".cfi_adjust_cfa_offset -8",                    // CFA = rsp+24
    ".cfi_restore r12",                             // r12 holds its saved value again
    "pop rbx",                                      // restore the saved rbx
    ".cfi_adjust_cfa_offset -8",                    // CFA = rsp+16
    ".cfi_restore rbx",                             // rbx holds its saved value again
    "pop rbp",                                      // restore the saved rbp
    ".cfi_adjust_cfa_offset -8",                    // CFA = rsp+8
    ".cfi_restore rbp",                             // rbp holds its saved value again
    ".endm",                                        // end of backstop_asm_fiber_restore_registers
    "",                                             //
    // ---- backstop_asm_fiber_start(state: rdi, stack_top: rsi, entry: rdx, arg: rcx) -> rax
    // Runs on the runner's stack: saves R's registers, writes the link at the
    // fiber's top and switches; falls through into backstop_asm_fiber_base.
    ".text",                                        // code section
    ".globl backstop_asm_fiber_start",              // visible to the Rust declaration below
    ".hidden backstop_asm_fiber_start",             // but not exported from a shared object
    ".type backstop_asm_fiber_start, @function",    // an ELF function symbol, for symbolizers
    ".p2align 4",                                   // 16-byte aligned entry point
    "backstop_asm_fiber_start:",                    // rdi = state, rsi = stack_top, rdx = entry, rcx = arg
    ".cfi_startproc",                               // open the FDE: CFA = rsp+8, RA at CFA-8
    "backstop_asm_fiber_save_registers",            // save R's rbp, rbx, r12-r15; rsp = S_R, CFA = rsp+56
    "and rsi, -16",                                 // rsi = T, the top rounded down to 16
    "mov [rdi + {top}], rsi",                       // state.top = T, for suspend and resume
    "mov rax, [rsp + 48]",                          // rax = return address into R
    "mov [rsi - 8], rax",                           // frame record: R's return address at T-8
    "mov [rsi - 16], rbp",                          // frame record: R's rbp at T-16 (rbp is still R's)
    "mov [rsi - 32], rsp",                          // the link: T-32 = S_R, read by the base's CFI
    "lea rbp, [rsi - 16]",                          // rbp = the frame record, for frame-pointer walkers
    "lea rsp, [rsi - 32]",                          // switch: rsp = T-32, 16-byte aligned
    ".cfi_endproc",                                 // close the FDE; the next byte is the base
    ".size backstop_asm_fiber_start, . - backstop_asm_fiber_start", // symbol size, for symbolizers
    "",                                             //
    // ---- backstop_asm_fiber_base: the fiber's bottom frame. Entered by
    // falling through from backstop_asm_fiber_start (no padding in between),
    // with rsp = T-32, rdx = entry, rcx = arg. Never called.
    ".globl backstop_asm_fiber_base",               // visible to Rust, which stops backtraces at the bottom frame
    ".hidden backstop_asm_fiber_base",              // but not exported from a shared object
    ".type backstop_asm_fiber_base, @function",     // an ELF function symbol: names the bottom frame in backtraces
    "backstop_asm_fiber_base:",                     // rsp = T-32, [rsp] = S_R
    ".cfi_startproc",                               // open the FDE for the bottom frame
    ".cfi_escape 0x0f, 0x05, 0x77, 0x00, 0x06, 0x23, 0x38", // CFA = *(rsp+0) + 56 (def_cfa_expression: breg7 0; deref; plus_uconst 56)
    ".cfi_offset rbp, -16",                         // R's rbp at CFA-16, in R's save area
    ".cfi_offset rbx, -24",                         // R's rbx at CFA-24
    ".cfi_offset r12, -32",                         // R's r12 at CFA-32
    ".cfi_offset r13, -40",                         // R's r13 at CFA-40
    ".cfi_offset r14, -48",                         // R's r14 at CFA-48
    ".cfi_offset r15, -56",                         // R's r15 at CFA-56
    "mov rdi, rcx",                                 // first argument of entry = arg
    "call rdx",                                     // entry(arg); rsp = T-40 inside, as the ABI wants
    "mov rsp, [rsp]",                               // entry returned: rsp = S_R of the *current* runner
    ".cfi_def_cfa rsp, 56",                         // CFA = rsp+56; register rules unchanged
    "xor eax, eax",                                 // return value 0 = FiberExit::Returned
    "backstop_asm_fiber_restore_registers",         // restore R's registers from S_R; CFA = rsp+8
    "ret",                                          // return Returned to R, on R's stack
    ".cfi_endproc",                                 // close the FDE
    ".size backstop_asm_fiber_base, . - backstop_asm_fiber_base", // symbol size, for symbolizers
    "",                                             //
    // ---- backstop_asm_fiber_suspend(state: rdi)
    // Runs on the fiber: saves the fiber's registers on the fiber's stack,
    // records that save area in state.guest_rsp and returns Suspended to R
    // through R's save area. fiber_resume later returns from here.
    ".globl backstop_asm_fiber_suspend",            // visible to the Rust declaration below
    ".hidden backstop_asm_fiber_suspend",           // but not exported from a shared object
    ".type backstop_asm_fiber_suspend, @function",  // an ELF function symbol, for symbolizers
    ".p2align 4",                                   // 16-byte aligned entry point
    "backstop_asm_fiber_suspend:",                  // rdi = state
    ".cfi_startproc",                               // open the FDE: CFA = rsp+8, RA at CFA-8
    "backstop_asm_fiber_save_registers",            // save the fiber's; rsp = its save area, CFA = rsp+56
    "mov [rdi + {guest_rsp}], rsp",                 // state.guest_rsp = the fiber's save area (suspended)
    "mov rax, [rdi + {top}]",                       // rax = T
    "mov rsp, [rax - 32]",                          // switch: rsp = S_R; same layout, so CFA = rsp+56 still holds
    "mov eax, 1",                                   // return value 1 = FiberExit::Suspended
    "backstop_asm_fiber_return_to_runner:",         // rsp = S_R, eax = exit code; fiber_abandon jumps here too
    "backstop_asm_fiber_restore_registers",         // restore R's registers from S_R; CFA = rsp+8
    "ret",                                          // return Suspended from R's fiber_start/fiber_resume
    ".cfi_endproc",                                 // close the FDE
    ".size backstop_asm_fiber_suspend, . - backstop_asm_fiber_suspend", // symbol size, for symbolizers
    "",                                             //
    // ---- backstop_asm_fiber_resume(state: rdi) -> rax
    // Runs on the new runner R': saves R's registers, points the fiber's
    // link and frame record at them, and returns (void) from the fiber's
    // fiber_suspend through the fiber's save area.
    ".globl backstop_asm_fiber_resume",             // visible to the Rust declaration below
    ".hidden backstop_asm_fiber_resume",            // but not exported from a shared object
    ".type backstop_asm_fiber_resume, @function",   // an ELF function symbol, for symbolizers
    ".p2align 4",                                   // 16-byte aligned entry point
    "backstop_asm_fiber_resume:",                   // rdi = state
    ".cfi_startproc",                               // open the FDE: CFA = rsp+8, RA at CFA-8
    "backstop_asm_fiber_save_registers",            // save R's rbp, rbx, r12-r15; rsp = S_R, CFA = rsp+56
    "mov rax, [rdi + {top}]",                       // rax = T
    "mov rcx, [rsp + 48]",                          // rcx = return address into R
    "mov [rax - 8], rcx",                           // frame record: R's return address at T-8
    "mov [rax - 16], rbp",                          // frame record: R's rbp at T-16 (rbp is still R's)
    "mov [rax - 32], rsp",                          // the link: T-32 = S_R; the base now names R as its caller
    "mov rsp, [rdi + {guest_rsp}]",                 // switch: rsp = the fiber's save area; CFA = rsp+56 still holds
    "mov qword ptr [rdi + {guest_rsp}], 0",         // state.guest_rsp = 0: running
    "backstop_asm_fiber_restore_registers",         // restore the fiber's registers; CFA = rsp+8
    "ret",                                          // return from the fiber's fiber_suspend, on the fiber
    ".cfi_endproc",                                 // close the FDE
    ".size backstop_asm_fiber_resume, . - backstop_asm_fiber_resume", // symbol size, for symbolizers
    "",                                             //
    // ---- backstop_asm_fiber_abandon(state: rdi): never returns
    // Runs on the fiber: switches to R's save area without saving anything
    // of the fiber's, and returns Abandoned to R. The fiber's frames are
    // left as they are, dead: its stack is free for the next fiber_start.
    ".globl backstop_asm_fiber_abandon",            // visible to the Rust declaration below
    ".hidden backstop_asm_fiber_abandon",           // but not exported from a shared object
    ".type backstop_asm_fiber_abandon, @function",  // an ELF function symbol, for symbolizers
    ".p2align 4",                                   // 16-byte aligned entry point
    "backstop_asm_fiber_abandon:",                  // rdi = state
    ".cfi_startproc",                               // open the FDE: CFA = rsp+8, RA at CFA-8
    "mov rax, [rdi + {top}]",                       // rax = T
    "mov rsp, [rax - 32]",                          // switch: rsp = S_R, R's save area
    ".cfi_def_cfa rsp, 56",                         // CFA = rsp+56: from here on, this is R's switch frame
    ".cfi_offset rbp, -16",                         // R's rbp at CFA-16
    ".cfi_offset rbx, -24",                         // R's rbx at CFA-24
    ".cfi_offset r12, -32",                         // R's r12 at CFA-32
    ".cfi_offset r13, -40",                         // R's r13 at CFA-40
    ".cfi_offset r14, -48",                         // R's r14 at CFA-48
    ".cfi_offset r15, -56",                         // R's r15 at CFA-56
    "mov eax, 2",                                   // return value 2 = FiberExit::Abandoned
    "jmp backstop_asm_fiber_return_to_runner",      // pop R's registers and return, as fiber_suspend does
    ".cfi_endproc",                                 // close the FDE
    ".size backstop_asm_fiber_abandon, . - backstop_asm_fiber_abandon", // symbol size, for symbolizers
    top = const TOP,
    guest_rsp = const GUEST_RSP,
);

extern "C-unwind" {
    /// The raw routine behind [`fiber_start`]. Same contract; returns 0 for
    /// [`FiberExit::Returned`] and 1 for [`FiberExit::Suspended`]. System V
    /// ABI, arguments in `rdi`, `rsi`, `rdx`, `rcx`. For assembly callers
    /// (JIT trampolines, test harnesses).
    pub fn backstop_asm_fiber_start(
        state: *mut FiberState,
        stack_top: *mut u8,
        entry: unsafe extern "C-unwind" fn(*mut u8),
        arg: *mut u8,
    ) -> usize;

    /// The raw routine behind [`fiber_suspend`]. Same contract; System V
    /// ABI, `state` in `rdi`.
    pub fn backstop_asm_fiber_suspend(state: *mut FiberState);

    /// The fiber's bottom frame. Never called from Rust: only its address
    /// is used, see [`fiber_base_address`].
    fn backstop_asm_fiber_base();

    /// The raw routine behind [`fiber_resume`]. Same contract; returns 0 for
    /// [`FiberExit::Returned`] and 1 for [`FiberExit::Suspended`]. System V
    /// ABI, `state` in `rdi`.
    pub fn backstop_asm_fiber_resume(state: *mut FiberState) -> usize;
}

extern "C" {
    /// The raw routine behind [`fiber_abandon`]. Same contract; System V
    /// ABI, `state` in `rdi`. Makes the runner's switch return 2.
    pub fn backstop_asm_fiber_abandon(state: *mut FiberState) -> !;
}

/// The address of every fiber's bottom frame (the start of its unwind
/// info): a stack walker that reaches a frame starting here has reached the
/// bottom of a fiber's stack.
pub fn fiber_base_address() -> usize {
    backstop_asm_fiber_base as *const () as usize
}

/// Maps the raw routines' return value to a [`FiberExit`].
#[inline(always)]
fn exit_from_raw(raw: usize) -> FiberExit {
    match raw {
        0 => FiberExit::Returned,
        1 => FiberExit::Suspended,
        _ => FiberExit::Abandoned,
    }
}

/// Starts `entry(arg)` on the stack whose top is `stack_top`, and runs it
/// until it returns ([`FiberExit::Returned`]) or code on the fiber calls
/// [`fiber_suspend`] with `state` ([`FiberExit::Suspended`]).
///
/// The fiber's bottom frame names the caller of `fiber_start` as its caller,
/// until a [`fiber_resume`] names another: a panic or any other unwind that
/// leaves `entry` while this call runs it propagates out of `fiber_start`
/// into the caller's frames, and `std::backtrace` walks from the fiber into
/// them. The caller's callee-saved registers are intact when this returns,
/// either way, and when an unwind reaches its frames.
///
/// `stack_top` is rounded down to 16 bytes; the 32 bytes below the rounded
/// top hold the link to the runner, and `entry` starts with the stack
/// aligned as the System V ABI requires and with `rbp` pointing to a frame
/// record that matches the caller's.
///
/// # Safety
///
/// * `state` must point to a [`FiberState`] that is not in use: new, or
///   whose previous fiber returned or unwound out (not one that is
///   suspended or running). It must stay at that address, alive, until
///   this fiber returns or unwinds out of `entry`.
/// * `stack_top` must be the top of a writable region that nothing else uses
///   until then (not a stack with live frames below that point), large
///   enough for 32 bytes plus everything `entry` and its callees need
///   (including an unwind and any panic hook, which can take tens of KiB
///   when it prints a backtrace). If it is a [`crate::GuestStack`], that must
///   outlive the fiber.
/// * `entry` must be safe to call with `arg`.
/// * Code on the fiber must follow the rules of [`fiber_suspend`].
#[inline(always)]
pub unsafe fn fiber_start(
    state: *mut FiberState,
    stack_top: *mut u8,
    entry: unsafe extern "C-unwind" fn(*mut u8),
    arg: *mut u8,
) -> FiberExit {
    // SAFETY: `state` is valid (caller's contract).
    debug_assert!(
        !unsafe { &*state }.is_suspended(),
        "fiber_start with a FiberState whose fiber is suspended"
    );
    // SAFETY: forwarded from this function's contract. The routine follows
    // the System V ABI for an `extern "C-unwind"` function with this
    // signature (it preserves every callee-saved register) and has CFI at
    // every instruction, so unwinding through it is defined.
    exit_from_raw(unsafe { backstop_asm_fiber_start(state, stack_top, entry, arg) })
}

/// Suspends the fiber this is called on: switches back to whoever last
/// started or resumed it, whose [`fiber_start`] or [`fiber_resume`] then
/// returns [`FiberExit::Suspended`]. Returns when the fiber is resumed,
/// possibly from another function or another thread. Every callee-saved
/// register of the fiber is intact then.
///
/// # Safety
///
/// * `state` must be the [`FiberState`] of the *innermost* fiber running on
///   this thread, and this must be called on that fiber (from any depth,
///   including from a stack entered from the fiber with
///   [`crate::call_on_stack`], which is suspended along with it; but not
///   from inside another fiber started on it that has not returned).
/// * The frames between the fiber's base and this call stay alive, pinned
///   in place, until the fiber is resumed. Whoever owns the fiber must
///   eventually resume it and let it return or unwind; freeing its stack
///   instead leaks those frames without running their destructors, which
///   is unsound if any of them holds pinned data (a pinned future, for
///   example), since `Pin` promises a drop before the memory is reused.
/// * If the fiber may be resumed on another thread, nothing live across the
///   suspend may be tied to this thread: no `!Send` values (a `MutexGuard`,
///   an `Rc`), no references to thread-locals. Beware that the compiler may
///   keep a thread-local's *address* in a register across this call within
///   one function: access thread-locals after a suspend only through a
///   function that is not inlined into the suspending one.
/// * Do not suspend from a destructor that runs during an unwind, nor while
///   the floating-point control state (MXCSR, x87 control word) differs
///   from the runner's: neither is switched.
#[inline(always)]
pub unsafe fn fiber_suspend(state: *mut FiberState) {
    // SAFETY: forwarded from this function's contract; the routine follows
    // the System V ABI (all callee-saved registers are preserved across the
    // suspension) and has CFI at every instruction.
    unsafe { backstop_asm_fiber_suspend(state) }
}

/// Leaves the fiber this is called on for good: switches back to whoever
/// last started or resumed it, whose [`fiber_start`] or [`fiber_resume`]
/// then returns [`FiberExit::Abandoned`], as if `entry` had returned. The
/// fiber's frames are not unwound: no destructor on the fiber runs, and
/// its stack is reused by the next [`fiber_start`].
///
/// This is for leaving a fiber whose frames own nothing (for example,
/// JIT-compiled code that faulted, with no host frame on the fiber), where
/// an unwind would only cost time.
///
/// # Safety
///
/// * `state` must be the [`FiberState`] of the *innermost* fiber running on
///   this thread, and this must be called on that fiber.
/// * No frame on the fiber may own anything that needs dropping, nor hold a
///   borrow or a pinned value that outlives it: they all vanish unannounced.
#[inline(always)]
pub unsafe fn fiber_abandon(state: *mut FiberState) -> ! {
    // SAFETY: forwarded from this function's contract; the routine restores
    // the runner's callee-saved registers from its save area and returns
    // into it, as fiber_suspend does.
    unsafe { backstop_asm_fiber_abandon(state) }
}

/// Continues a suspended fiber where its [`fiber_suspend`] left off, from
/// any host frame on any thread. Returns [`FiberExit::Returned`] when the
/// fiber's `entry` returns and [`FiberExit::Suspended`] when it suspends
/// again.
///
/// From now on the fiber's bottom frame names the caller of this function as
/// its caller: an unwind that leaves `entry` while this call runs it
/// propagates out of `fiber_resume` into *this* caller's frames (not the
/// starter's, which may be long gone), and `std::backtrace` on the fiber
/// shows this caller. The caller's callee-saved registers are intact when
/// this returns, and when an unwind reaches its frames.
///
/// To tear down a suspended fiber, resume it with a flag that makes the code
/// at its suspend point start an unwind (for example with
/// `std::panic::resume_unwind`) and catch that around this call: every
/// destructor on the fiber runs.
///
/// # Safety
///
/// * `state` must be the state of a suspended fiber
///   ([`FiberState::is_suspended`]), and its stack must still be mapped and
///   untouched since the suspend.
/// * The rules of [`fiber_start`] and [`fiber_suspend`] continue to apply
///   (in particular, about moving between threads).
#[inline(always)]
pub unsafe fn fiber_resume(state: *mut FiberState) -> FiberExit {
    // SAFETY: `state` is valid (caller's contract).
    debug_assert!(
        unsafe { &*state }.is_suspended(),
        "fiber_resume with a FiberState whose fiber is not suspended"
    );
    // SAFETY: forwarded from this function's contract; the routine follows
    // the System V ABI for an `extern "C-unwind"` function with this
    // signature and has CFI at every instruction.
    exit_from_raw(unsafe { backstop_asm_fiber_resume(state) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_assembly() {
        assert_eq!(GUEST_RSP, 0);
        assert_eq!(TOP, 8);
        assert_eq!(core::mem::size_of::<FiberState>(), 16);
    }

    #[test]
    fn new_state_is_not_suspended() {
        assert!(!FiberState::new().is_suspended());
        assert!(!FiberState::default().is_suspended());
    }

    #[test]
    fn state_is_send_sync_and_unwind_safe() {
        fn check<T: Send + Sync + core::panic::RefUnwindSafe + core::panic::UnwindSafe>() {}
        check::<FiberState>();
    }
}
