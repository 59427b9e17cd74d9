//! How the runtime ends a guest's run: every runtime-initiated end (a trap,
//! `Caller::terminate`, an `Err` from a host function) stores its reason in
//! a thread-local slot and unwinds with the marker payload `ExitUnwind`: a
//! Rust panic raised without the panic hook (nothing is printed, no std
//! backtrace is captured), in one phase. The root call's `catch_unwind` takes the reason back out.
//!
//! Keeping the reason out of the payload makes teardown robust against host
//! code that catches the unwind and swallows it: the reason is still
//! pending, so the runtime raises the marker again as soon as that host
//! function returns to the guest or calls back into it, and the details
//! survive intact.

use crate::debug::backtrace::{record_unwound_frame, UnwindWalk, WasmBacktrace};
use crate::ending::kill::KillShared;
use crate::error::{Error, TerminationDetails, Trap};
use std::cell::Cell;
use std::sync::atomic::Ordering;

/// Why the runtime ended a run.
pub(crate) enum GuestExit {
    Trap(Trap),
    HostError(Error),
    Terminated(TerminationDetails),
    Killed,
}

/// The unwind payload of every runtime-initiated end of a run.
pub(crate) struct ExitUnwind;

/// A pending end of a run: its reason, and the backtrace its unwind is
/// recording (when the run captures one).
pub(crate) struct PendingExit {
    exit: GuestExit,
    walk: Option<UnwindWalk>,
}

thread_local! {
    /// The pending end, boxed (null when none): checking and taking it are
    /// a load and a pointer swap, cheap enough for every call.
    static PENDING_EXIT: Cell<*mut PendingExit> = const { Cell::new(std::ptr::null_mut()) };
}

/// Ends the running guest: records `exit` (unless an earlier reason is
/// still pending, which wins) and unwinds in one phase (see
/// `backstop_asm::resume_unwind_one_phase`): the search phase would walk
/// the whole guest stack only to find the root call's `catch_unwind`.
/// A trap or a termination records its backtrace on the way.
///
/// These thread-local accessors are never inlined: after a guest resumes on
/// another thread, a thread-local address computed before the suspend must
/// not be reused.
#[inline(never)]
pub(crate) fn raise(exit: GuestExit) -> ! {
    let leading_host = match &exit {
        // A kill surfaces as Error::Killed, which has no backtrace.
        GuestExit::Trap(trap) if trap.code() == crate::TrapCode::Interrupt => None,
        GuestExit::Trap(_) => Some(false),
        GuestExit::Terminated(_) => Some(true),
        GuestExit::HostError(_) | GuestExit::Killed => None,
    };
    let capture = current_run().is_some_and(|run| run.capture_backtraces);
    let recorder = PENDING_EXIT.with(|pending| {
        if !pending.get().is_null() {
            return None;
        }
        let walk = leading_host.filter(|_| capture).map(UnwindWalk::new);
        let record = Box::into_raw(Box::new(PendingExit { exit, walk }));
        pending.set(record);
        // SAFETY: `record` was just boxed; the walk stays at this heap
        // address until the root call takes the record after the unwind.
        unsafe { (*record).walk.as_mut() }.map(|walk| walk as *mut UnwindWalk)
    });
    match recorder {
        // SAFETY: `record_unwound_frame` always continues the unwind and
        // never unwinds; the walk outlives the unwind (see above).
        Some(walk) => unsafe {
            backstop_asm::resume_unwind_one_phase_observed(
                Box::new(ExitUnwind),
                record_unwound_frame,
                walk.cast(),
            )
        },
        None => backstop_asm::resume_unwind_one_phase(Box::new(ExitUnwind)),
    }
}

/// The run on this thread's innermost guest stack: what a trap in compiled
/// code needs to leave that stack without unwinding it.
#[derive(Clone, Copy)]
pub(crate) struct CurrentRun {
    pub(crate) fiber: *mut backstop_asm::FiberState,
    pub(crate) kill: *const KillShared,
    /// The guest stack's usable range, `bottom..top`.
    pub(crate) stack: (usize, usize),
    /// Whether the run captures Wasm backtraces (`Config::wasm_backtrace`).
    pub(crate) capture_backtraces: bool,
}

// SAFETY: the pointers lead into the store that holds this record (its
// fiber state and its kill state), which moves between threads as a whole;
// they are only dereferenced by the thread that runs that store.
unsafe impl Send for CurrentRun {}
// SAFETY: a shared record only hands out copies of the pointers; see above.
unsafe impl Sync for CurrentRun {}

impl CurrentRun {
    pub(crate) const NONE: CurrentRun = CurrentRun {
        fiber: std::ptr::null_mut(),
        kill: std::ptr::null(),
        stack: (0, 0),
        capture_backtraces: false,
    };
}

thread_local! {
    /// The current run's record (in its store), or null.
    static CURRENT_RUN: Cell<*const CurrentRun> = const { Cell::new(std::ptr::null()) };
}

/// Makes `run` this thread's current run; returns the one it replaces (an
/// outer run, to put back afterwards). The root call runs on the host side,
/// which never changes thread within a function, so this may be inlined.
#[inline]
pub(crate) fn swap_current_run(run: *const CurrentRun) -> *const CurrentRun {
    CURRENT_RUN.with(|current| current.replace(run))
}

/// This thread's current run, if a root call is running on it. Only for
/// functions that are never inlined into code that may change threads.
#[inline]
fn current_run() -> Option<CurrentRun> {
    // SAFETY: a non-null record is the running root's, in its store,
    // which outlives the run (`swap_current_run` puts the outer one back
    // when the run returns).
    unsafe { CURRENT_RUN.with(Cell::get).as_ref() }.copied()
}

/// The kill state of this thread's current run, if a kill switch wants it
/// stopped now: for the interrupt signal's handler, async-signal-safe (a
/// thread-local read and atomic loads).
pub(crate) fn current_run_to_interrupt() -> Option<&'static KillShared> {
    // SAFETY: a non-null record is the running root's, in its store,
    // whose kill state (an Arc it holds) outlives the run; the handler
    // that asks uses it only until it returns, within the run.
    let kill = unsafe { CURRENT_RUN.with(Cell::get).as_ref()?.kill.as_ref()? };
    kill.interrupt_due().then_some(kill)
}

/// Ends the run for a trap in compiled code: a fault at `pc` whose frame
/// pointer was `fp`, reported by the signal handler.
///
/// When no host function is on the guest stack, every frame between the
/// fault and the root is compiled code or the runtime's own entry, and
/// none of them owns anything: the run leaves the guest stack outright
/// (`fiber_abandon`), and the backtrace follows the frame pointers that
/// compiled code always keeps. That skips the unwinder, whose walk is most
/// of a trap's cost. With host frames on the stack, it unwinds like any
/// other end of the run, so their destructors run.
#[inline(never)]
pub(crate) fn trap_in_guest_code(mut trap: Trap, pc: usize, fp: usize) -> ! {
    let run = match current_run() {
        Some(run) if !run.fiber.is_null() => run,
        _ => raise(GuestExit::Trap(trap)),
    };
    // SAFETY: the record's `kill` is an Arc its store holds for the run.
    let nothing_to_unwind =
        unsafe { (*run.kill).host_frames.load(Ordering::Relaxed) } == 0 && !is_pending();
    if !nothing_to_unwind {
        raise(GuestExit::Trap(trap));
    }
    if run.capture_backtraces && trap.code() != crate::TrapCode::Interrupt {
        trap.backtrace = Some(WasmBacktrace::from_frame_pointers(pc, fp, run.stack));
    }
    let record = Box::new(PendingExit {
        exit: GuestExit::Trap(trap),
        walk: None,
    });
    PENDING_EXIT.with(|pending| pending.set(Box::into_raw(record)));
    // SAFETY: we run on the fiber of the current run (the fault happened
    // in its compiled code), and no host function is on it: the frames
    // above its base are compiled code, the root's entry (`guest_entry` or
    // `typed_guest_entry`, which hold only plain scalars and pointers) and
    // this fault path, none of which owns anything to drop.
    unsafe { backstop_asm::fiber_abandon(run.fiber) }
}

/// Whether an end of the run is pending on this thread (then the unwind
/// that carries it was swallowed, or is in progress).
#[inline(never)]
pub(crate) fn is_pending() -> bool {
    PENDING_EXIT.with(|pending| !pending.get().is_null())
}

/// Raises the pending end again, if there is one: for host code that
/// swallowed the unwind and then returned to, or called back into, the guest.
#[inline(never)]
pub(crate) fn reraise_if_pending() {
    if is_pending() {
        log::warn!(
            "a host function caught Backstop's unwind and did not rethrow it; \
             the guest's run is ended anyway"
        );
        std::panic::resume_unwind(Box::new(ExitUnwind));
    }
}

/// Swaps the raw pending end, for the root call: at entry it sets aside an
/// outer run's end (null in the common case), at exit it takes its own and
/// puts the outer one back. The root call runs on the host side, which
/// never changes thread within a function, so this may be inlined.
#[inline]
pub(crate) fn swap_pending_raw(new: *mut PendingExit) -> *mut PendingExit {
    PENDING_EXIT.with(|pending| pending.replace(new))
}

/// Turns a raw pending end from `swap_pending_raw` into its reason, with the
/// backtrace its unwind recorded.
///
/// # Safety
/// `raw` must come from `swap_pending_raw` and not have been used since, and
/// the unwind that carried it must be over.
pub(crate) unsafe fn from_raw_pending(raw: *mut PendingExit) -> Option<GuestExit> {
    if raw.is_null() {
        return None;
    }
    // SAFETY: per the contract, a non-null `raw` came from `Box::into_raw`
    // in `raise` and left the cell in the swap, so we are its only owner.
    let PendingExit { mut exit, walk } = *unsafe { Box::from_raw(raw) };
    if let Some(walk) = walk {
        let backtrace = Some(walk.into_backtrace());
        match &mut exit {
            GuestExit::Trap(trap) => trap.backtrace = backtrace,
            GuestExit::Terminated(details) => details.backtrace = backtrace,
            GuestExit::HostError(_) | GuestExit::Killed => {}
        }
    }
    Some(exit)
}
