//! `backstop-asm`: guarded stacks, a stack switch whose CFI lets the system
//! unwinder cross from the new stack back into the caller's, suspendable
//! stacks (fibers) with the same property, and a stub at which a faulted
//! context resumes to start an unwind.
//!
//! This file owns the crate documentation, the platform check and the public
//! re-exports. It knows nothing about WebAssembly; any JIT can use it.
//!
//! # The pieces
//!
//! * [`GuestStack`]: an `mmap`ed stack with a `PROT_NONE` guard at its low
//!   end. Dropping it unmaps it.
//! * [`call_on_stack`]: switches `rsp` to a given stack top, calls
//!   `entry(arg)` there and switches back when it returns. An unwind (a Rust
//!   panic, `resume_unwind`, any `_Unwind_RaiseException`) leaving `entry`
//!   continues into the caller's frames on the original stack, and
//!   `std::backtrace` walks across the switch too.
//! * [`fiber_start`], [`fiber_suspend`], [`fiber_resume`], [`fiber_abandon`] and
//!   [`FiberState`]: the same, on a stack that can be suspended from any
//!   depth and resumed later from any host frame on any thread. The
//!   fiber's bottom frame always names its *current* runner as its caller,
//!   so unwinds and backtraces after a resume reach the resumer.
//! * [`fault_unwind_stub_address`] and [`redirect_to_unwind_stub`]: the
//!   contract for a signal handler that turns a synchronous fault (SIGSEGV,
//!   SIGBUS, SIGILL, SIGFPE) into an ordinary unwind that starts at the
//!   faulting instruction.
//! * [`resume_unwind_one_phase`]: `resume_unwind` without the search
//!   phase, for unwinds through deep stacks.
//!
//! # The switch frame
//!
//! `call_on_stack(stack_top, entry, arg)` runs the assembly routine
//! `backstop_asm_call_on_stack`. While `entry` runs, the two stacks look like
//! this (addresses grow upwards, `T` = `stack_top` rounded down to 16):
//!
//! ```text
//!   host stack                                 guest stack
//!   +------------------------------+ H+16      +------------------------------+ T
//!   | caller's frame ...           |           | (unused)                     | T-8
//!   +------------------------------+           +------------------------------+
//!   | return address into caller   | H+8       | H  (host rsp after push rbp) | T-16 <- rsp of the switch frame
//!   | caller's rbp                 | H  <------+----- (value stored at T-16)  |
//!   +------------------------------+           +------------------------------+
//!                                              | return address into switch   | T-24 (pushed by `call entry`)
//!                                              | entry's frame ...            |
//! ```
//!
//! The caller's CFA (its `rsp` after the switch returns) is `H + 16`.
//!
//! The switch frame's CFI computes its canonical frame address (CFA) as
//! `*(rsp) + 16`, with the DWARF expression `DW_OP_breg7 0; DW_OP_deref;
//! DW_OP_plus_uconst 16` (the `rsp` of the switch frame, as the unwinder sees
//! it, is the CFA of `entry`'s frame, so it is exact). The return address is
//! at `CFA - 8` and the caller's `rbp` at `CFA - 16`, both on the host stack,
//! so the unwinder's next frame is the caller, with its `rsp`, `rip` and
//! `rbp` restored. The routine changes no other callee-saved register. It
//! also leaves `rbp = H` while `entry` runs, so frame-pointer walkers cross
//! the switch as well.
//!
//! # Fibers
//!
//! `fiber_start(state, stack_top, entry, arg)` is `call_on_stack` with two
//! differences: it saves all six callee-saved registers in a *save area* on
//! the runner's stack (the runner is the caller of `fiber_start`, or later
//! of `fiber_resume`), and the link at the fiber's top points to that save
//! area. `fiber_suspend` pushes the same save area on the fiber, records it
//! in the [`FiberState`], and pops the runner's, so the runner's call
//! returns `Suspended`. `fiber_resume` pushes a save area for the new
//! runner, rewrites the link to point to it, and pops the fiber's, so
//! `fiber_suspend` returns. While the fiber runs (`T` = `stack_top`
//! rounded down to 16, `S` = the current runner's save area):
//!
//! ```text
//!   fiber stack                              current runner's stack
//!   +----------------------------+ T         +-----------------------------+ S+56
//!   | copy of runner's ret. addr | T-8       | return address into runner  | S+48
//!   | copy of runner's rbp       | T-16      | runner's rbp                | S+40
//!   | unused                     | T-24      | runner's rbx, r12-r15       | S+32 .. S
//!   | S  (the link) -------------+-T-32----> +-----------------------------+ <- S
//!   +----------------------------+
//!   | return address into base   | T-40      (pushed by `call entry`)
//!   | entry's frame ...          |
//! ```
//!
//! The bottom frame, `backstop_asm_fiber_base`, has the CFI rule
//! `CFA = *(rsp) + 56` (`DW_OP_breg7 0; DW_OP_deref; DW_OP_plus_uconst 56`)
//! and finds the runner's return address and callee-saved registers at fixed
//! offsets below that CFA, in the save area. Every switch routine pushes the
//! same save area, so whichever routine made the current runner, the link
//! and the CFI agree, and the unwinder's next frame is the runner. The
//! copies at `T-16` and `T-8` form a frame record equal to the runner's, and
//! `rbp` points to it when `entry` starts, so frame-pointer walkers cross
//! too. `fiber_start` and `fiber_resume` rewrite all three words before they
//! switch.
//!
//! Fibers nest: code on a fiber may start or resume another fiber (it is
//! then that fiber's runner), and may call [`call_on_stack`] and suspend
//! from the stack it switched to. [`fiber_suspend`] documents what may
//! happen between a suspend and a resume.
//!
//! A `fiber_start` whose entry returns without suspending costs only a few
//! tenths of a nanosecond more than a `call_on_stack` (three more stores,
//! four more pushes and pops), so a caller that may need to suspend can use
//! it for every call. A suspend plus resume round trip costs about 25 ns on
//! the development VM, most of it the two returns into the other stack that
//! the return-stack predictor cannot foresee; the routines keep that
//! predictor balanced instead of jumping, so the code after a switch does
//! not pay for it later.
//!
//! # The fault-resume stub
//!
//! A signal handler (running on a `sigaltstack`) that wants the faulting
//! code to unwind does not unwind itself. It rewrites the interrupted
//! context and returns:
//!
//! ```text
//!   rsp -= 8; *(rsp) = fault_pc;          // a fake return address
//!   rip  = fault_unwind_stub_address();
//!   rdi  = arg;
//!   rsi  = callback;                      // extern "C-unwind" fn(*mut u8) -> !
//! ```
//!
//! [`redirect_to_unwind_stub`] does exactly that to a `ucontext_t`. When
//! the kernel resumes the thread, the stub runs on the faulting stack:
//!
//! ```text
//!   faulting stack (addresses grow upwards)
//!   +----------------------------+
//!   | faulting frame ...         |
//!   +----------------------------+ <- rsp at the fault (any alignment) = stub's CFA
//!   | fault_pc (fake ret. addr.) |    written by the handler
//!   +----------------------------+
//!   | faulting frame's rbp       |    pushed by the stub
//!   +----------------------------+ <- rbp of the stub
//!   | 0-8 bytes of realignment   |
//!   +----------------------------+ <- 16-byte aligned
//!   | return address into stub   |    pushed by `call callback`
//!   +----------------------------+
//!   | callback's frame ...       |
//! ```
//!
//! The stub's FDE carries `.cfi_signal_frame` (the `S` augmentation). That
//! makes libgcc look up the faulting frame's FDE at `fault_pc` itself rather
//! than at `fault_pc - 1`, which matters when the fault is at a function's
//! first byte (`fault_pc - 1` then lies in another function, or in none).
//! Every callee-saved register other than `rbp` is untouched and described
//! as unchanged; `rbp` is restored from the stub's frame. The callback
//! typically calls `std::panic::resume_unwind`. The stub never returns.
//!
//! The write at `rsp - 8` lands in the faulting frame's red zone; that frame
//! is being unwound, and no landing pad can rely on red-zone contents (a call
//! clobbers them), so nothing of value is lost.

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!(
    "backstop-asm supports only x86_64 Linux: its stack switch and fault stub are \
     x86-64 System V assembly, and the signal-context layout is Linux's"
);

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod fault;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod fiber;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod one_phase;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod stack;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod switch;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub use fault::{fault_unwind_stub_address, redirect_to_unwind_stub};
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub use fiber::{
    backstop_asm_fiber_abandon, backstop_asm_fiber_resume, backstop_asm_fiber_start,
    backstop_asm_fiber_suspend, fiber_abandon, fiber_base_address, fiber_resume, fiber_start,
    fiber_suspend, FiberExit, FiberState,
};
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub use one_phase::{resume_unwind_one_phase, resume_unwind_one_phase_observed, UnwindStopFn};
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub use stack::{page_size, GuestStack};
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub use switch::{backstop_asm_call_on_stack, call_on_stack};
