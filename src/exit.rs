//! How the runtime ends a guest's run: every runtime-initiated end (a trap,
//! `Caller::terminate`, an `Err` from a host function) stores its reason in
//! a thread-local slot and unwinds with the marker payload `ExitUnwind`,
//! raised by `resume_unwind` so no panic hook runs and no backtrace is
//! captured. The root call's `catch_unwind` takes the reason back out.
//!
//! Keeping the reason out of the payload makes teardown robust against host
//! code that catches the unwind and swallows it: the reason is still
//! pending, so the runtime raises the marker again as soon as that host
//! function returns to the guest or calls back into it, and the details
//! survive intact.

use crate::{Error, Trap};
use std::any::Any;
use std::cell::RefCell;
use std::fmt;

/// Why the runtime ended a run.
pub(crate) enum GuestExit {
    Trap(Trap),
    HostError(Error),
    Terminated(TerminationDetails),
    Killed,
}

/// The unwind payload of every runtime-initiated end of a run.
pub(crate) struct ExitUnwind;

thread_local! {
    static PENDING_EXIT: RefCell<Option<GuestExit>> = const { RefCell::new(None) };
}

/// Ends the running guest: records `exit` (unless an earlier reason is
/// still pending, which wins) and unwinds.
///
/// These thread-local accessors are never inlined: after a guest resumes on
/// another thread, a thread-local address computed before the suspend must
/// not be reused.
#[inline(never)]
pub(crate) fn raise(exit: GuestExit) -> ! {
    PENDING_EXIT.with(|pending| {
        let mut pending = pending.borrow_mut();
        if pending.is_none() {
            *pending = Some(exit);
        }
    });
    std::panic::resume_unwind(Box::new(ExitUnwind))
}

/// Whether an end of the run is pending on this thread (then the unwind
/// that carries it was swallowed, or is in progress).
#[inline(never)]
pub(crate) fn is_pending() -> bool {
    PENDING_EXIT.with(|pending| pending.borrow().is_some())
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

/// Takes the pending reason (at the root call, once the unwind arrived).
pub(crate) fn take_pending() -> Option<GuestExit> {
    PENDING_EXIT.with(|pending| pending.borrow_mut().take())
}

/// Puts back a reason taken by `take_pending` (when a nested root call on
/// the same thread must not see an outer run's pending end).
pub(crate) fn restore_pending(exit: Option<GuestExit>) {
    if exit.is_some() {
        PENDING_EXIT.with(|pending| *pending.borrow_mut() = exit);
    }
}

/// A `Send + 'static` value of any type, given back to the embedder: what
/// `Caller::terminate` was given, or what `Caller::suspend` yielded.
/// Downcast it back to its type.
pub struct AnyValue {
    value: Box<dyn Any + Send>,
}

// SAFETY: the boxed value is only reachable through `&mut self` or by value
// (`downcast`, `downcast_mut`, `into_inner`); `&self` exposes only its type
// id. So sharing `&TerminationDetails` across threads cannot share the
// value, which is therefore never accessed from two threads at once.
unsafe impl Sync for AnyValue {}

impl AnyValue {
    pub(crate) fn new(value: Box<dyn Any + Send>) -> Self {
        AnyValue { value }
    }

    /// Whether the details are of type `T`.
    pub fn is<T: Any>(&self) -> bool {
        (*self.value).type_id() == std::any::TypeId::of::<T>()
    }

    /// The details as `T`, or `self` back if they are of another type.
    pub fn downcast<T: Any>(self) -> Result<Box<T>, AnyValue> {
        self.value
            .downcast::<T>()
            .map_err(|value| AnyValue { value })
    }

    /// A mutable view of the details as `T`.
    pub fn downcast_mut<T: Any>(&mut self) -> Option<&mut T> {
        self.value.downcast_mut::<T>()
    }

    /// The boxed value.
    pub fn into_inner(self) -> Box<dyn Any + Send> {
        self.value
    }
}

impl fmt::Debug for AnyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AnyValue(..)")
    }
}

/// What `Caller::terminate` was given.
pub type TerminationDetails = AnyValue;
