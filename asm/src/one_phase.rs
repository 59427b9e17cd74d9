//! A Rust panic that unwinds in one phase: [`resume_unwind_one_phase`].
//!
//! This file owns the assembly frame `backstop_asm_capture_exception` with
//! its personality routine, which catches a freshly raised Rust panic before
//! Rust's own code does and hands back its exception object, and the raise
//! of that object with `_Unwind_ForcedUnwind`.
//!
//! Why: `std::panic::resume_unwind` starts a two-phase unwind. Phase one
//! walks every frame up to the nearest `catch_unwind` just to find it, and
//! phase two walks them all again to run the landing pads. On a deep guest
//! stack (hundreds of frames) the search phase is about half of the time.
//! A forced unwind has only the second phase. Raised with a foreign
//! exception object, it would abort the process at the first
//! `catch_unwind` on its path ("Rust cannot catch foreign exceptions"), so
//! we raise it with a genuine Rust panic object, made by `resume_unwind`
//! itself and caught one frame later, before its search phase has gone
//! anywhere else.
//!
//! What personality routines see differs from a panic in one flag only:
//! `_UA_FORCE_UNWIND` in phase two. Rust's routine (std's
//! `sys/personality/gcc.rs`) then runs cleanups and enters `catch_unwind`
//! exactly as for a panic; `catch_unwind` accepts the object, because it is
//! Rust's own (right class and canary), frees it and lowers the panic count
//! that `resume_unwind` raised. C++ frames enter `catch (...)` blocks (which
//! must rethrow, as for any foreign exception) and skip typed ones. The
//! Rust reference leaves *foreign* forced unwinds through Rust frames with
//! destructors undefined (they are `pthread_exit` and `longjmp`, which
//! Rust does not expect to run its drops); this is not one of those: every
//! frame is unwound, every landing pad runs and the catch is Rust's.

use core::arch::global_asm;
use core::ffi::{c_int, c_void};
use std::any::Any;

// backstop_asm_capture_exception(f: rdi, arg: rsi) -> rax:
// calls f(arg); if f unwinds, the personality below stops the unwind in this
// frame and the landing pad returns the exception object; if f returns, 0.
//
//   +------------------------------+ <- CFA (rsp at entry + 8)
//   | return address into caller   | CFA-8
//   | caller's rbp                 | CFA-16  <- rbp (and rsp while f runs)
//   +------------------------------+
//   | return address into us       | pushed by `call rax`
//
// The unwinder resumes the landing pad with rsp = rbp = the frame record
// above (the state at the call), rax = the exception object.
#[rustfmt::skip]
global_asm!(
    ".pushsection .data.rel.ro.backstop_asm_capture_personality,\"aw\",@progbits", // a word the loader relocates, read-only after
    ".p2align 3",                                           // 8-byte aligned pointer
    "backstop_asm_capture_personality_ref:",                // what the CIE points at (indirectly)
    ".quad {personality}",                                  // the personality routine's address
    ".popsection",                                          // back to where we were
    ".text",                                                // code section
    ".globl backstop_asm_capture_exception",                // visible to the Rust declaration below
    ".hidden backstop_asm_capture_exception",               // but not exported from a shared object
    ".type backstop_asm_capture_exception, @function",      // an ELF function symbol, for symbolizers
    ".p2align 4",                                           // 16-byte aligned entry point
    "backstop_asm_capture_exception:",                      // (f, arg) -> exception object or null
    ".cfi_startproc",                                       // open the FDE: CFA = rsp+8
    ".cfi_personality 0x9b, backstop_asm_capture_personality_ref", // indirect|pcrel|sdata4: personality = *ref
    "push rbp",                                             // save the caller's rbp; rsp is 16-aligned now
    ".cfi_adjust_cfa_offset 8",                             // CFA = rsp+16
    ".cfi_offset rbp, -16",                                 // caller's rbp lives at CFA-16
    "mov rbp, rsp",                                         // frame record
    ".cfi_def_cfa_register rbp",                            // CFA = rbp+16
    "mov rax, rdi",                                         // rax = f
    "mov rdi, rsi",                                         // first argument = arg
    "call rax",                                             // f(arg): raises a Rust panic
    "xor eax, eax",                                         // f returned: no exception object
    ".globl backstop_asm_capture_landing_pad",              // the personality installs this address
    ".hidden backstop_asm_capture_landing_pad",             // not exported
    "backstop_asm_capture_landing_pad:",                    // reached with rax = exception object, rsp = rbp
    "pop rbp",                                              // restore the caller's rbp
    ".cfi_def_cfa rsp, 8",                                  // CFA = rsp+8 again
    "ret",                                                  // return rax
    ".cfi_endproc",                                         // close the FDE
    ".size backstop_asm_capture_exception, . - backstop_asm_capture_exception", // symbol size
    personality = sym capture_personality,
);

extern "C-unwind" {
    /// See the comment on the assembly above.
    fn backstop_asm_capture_exception(
        f: extern "C-unwind" fn(*mut u8),
        arg: *mut u8,
    ) -> *mut c_void;
}

extern "C" {
    /// Only its address is used, by the personality routine.
    fn backstop_asm_capture_landing_pad();
}

// The libgcc (and LLVM libunwind) interface, from the Itanium C++ ABI.
const URC_NO_REASON: c_int = 0;
const URC_HANDLER_FOUND: c_int = 6;
const URC_INSTALL_CONTEXT: c_int = 7;
const URC_CONTINUE_UNWIND: c_int = 8;
const UA_SEARCH_PHASE: c_int = 1;
const UA_HANDLER_FRAME: c_int = 4;
/// DWARF register number of rax, where the landing pad expects the object.
const DWARF_RAX: c_int = 0;

/// A stop function for `_Unwind_ForcedUnwind`: `(version, actions,
/// exception class, exception, context, stop argument) -> reason`.
pub type UnwindStopFn =
    extern "C" fn(c_int, c_int, u64, *mut c_void, *mut c_void, *mut c_void) -> c_int;

extern "C" {
    fn _Unwind_SetGR(context: *mut c_void, register: c_int, value: usize);
    fn _Unwind_SetIP(context: *mut c_void, ip: usize);
}

extern "C-unwind" {
    fn _Unwind_ForcedUnwind(
        exception: *mut c_void,
        stop: UnwindStopFn,
        stop_arg: *mut c_void,
    ) -> c_int;
}

/// The personality of `backstop_asm_capture_exception`: claims any
/// exception in the search phase, and in the cleanup phase installs the
/// landing pad that returns it. It never runs for anything but the panic
/// `f` raises, because the frame exists only while `f` runs.
unsafe extern "C" fn capture_personality(
    _version: c_int,
    actions: c_int,
    _class: u64,
    exception: *mut c_void,
    context: *mut c_void,
) -> c_int {
    if actions & UA_SEARCH_PHASE != 0 {
        return URC_HANDLER_FOUND;
    }
    if actions & UA_HANDLER_FRAME != 0 {
        // SAFETY: `context` is the unwinder's context for our frame, valid
        // during this call; rax and the landing pad are what the assembly
        // above expects.
        unsafe {
            _Unwind_SetGR(context, DWARF_RAX, exception as usize);
            _Unwind_SetIP(
                context,
                backstop_asm_capture_landing_pad as *const () as usize,
            );
        }
        return URC_INSTALL_CONTEXT;
    }
    URC_CONTINUE_UNWIND
}

/// The stop function of the forced unwind: let every frame's personality
/// decide, up to the `catch_unwind` that takes the panic.
extern "C" fn keep_unwinding(
    _version: c_int,
    _actions: c_int,
    _class: u64,
    _exception: *mut c_void,
    _context: *mut c_void,
    _stop_arg: *mut c_void,
) -> c_int {
    URC_NO_REASON
}

/// Raises `payload` with `resume_unwind` (so no panic hook runs), inside the
/// capture frame.
extern "C-unwind" fn raise_payload(slot: *mut u8) {
    // SAFETY: `slot` is the `Option` on `resume_unwind_one_phase`'s frame,
    // alive for this call.
    let payload = unsafe { (*slot.cast::<Option<Box<dyn Any + Send>>>()).take() };
    std::panic::resume_unwind(payload.expect("the payload is set"))
}

/// Like `std::panic::resume_unwind(payload)`: unwinds with `payload` (no
/// panic hook runs) to the nearest `catch_unwind`, running every landing
/// pad on the way, and `catch_unwind` returns `Err(payload)`. The
/// difference is the cost: the stack above is walked once, not twice
/// (see this file's header). Everything the unwind passes (drops,
/// `std::thread::panicking()`, `Mutex` poisoning, `catch_unwind` and
/// rethrow) behaves as for `resume_unwind`.
///
/// A `catch_unwind` must be somewhere below, as for any panic; without one
/// the process aborts, as it would for a panic.
#[inline]
pub fn resume_unwind_one_phase(payload: Box<dyn Any + Send>) -> ! {
    // SAFETY: `keep_unwinding` follows the contract of
    // `resume_unwind_one_phase_observed` and ignores its argument.
    unsafe { resume_unwind_one_phase_observed(payload, keep_unwinding, std::ptr::null_mut()) }
}

/// [`resume_unwind_one_phase`] with a stop function of the caller's, which
/// libgcc calls with each frame's unwind context before that frame's
/// personality routine runs (and once more with `_UA_END_OF_STACK`, 16, in
/// the actions if the stack ends): a walk of every frame the unwind passes,
/// for free, since the unwinder visits them anyway.
///
/// # Safety
/// `stop` must return 0 (`_URC_NO_REASON`) every time, or the unwind fails
/// and the process aborts. It must not unwind. `stop_arg` must stay valid
/// until the unwind ends, and so must not point into the frames being
/// unwound: landing pads reuse their stack.
#[inline(always)]
pub unsafe fn resume_unwind_one_phase_observed(
    payload: Box<dyn Any + Send>,
    stop: UnwindStopFn,
    stop_arg: *mut c_void,
) -> ! {
    let mut slot = Some(payload);
    // SAFETY: `raise_payload` gets the slot above and raises a Rust panic,
    // which the capture frame stops and returns.
    let exception = unsafe {
        backstop_asm_capture_exception(raise_payload, (&mut slot as *mut Option<_>).cast())
    };
    if !exception.is_null() {
        // SAFETY: `exception` is the Rust panic object just raised, now
        // owned by no frame; a forced unwind takes it over, and the
        // `catch_unwind` that ends it frees it. `stop` and `stop_arg` are
        // valid per the contract. It returns only if nothing on the stack
        // catches it.
        unsafe { _Unwind_ForcedUnwind(exception, stop, stop_arg) };
    }
    eprintln!("backstop: a one-phase unwind found no catch_unwind on the stack");
    std::process::abort()
}
