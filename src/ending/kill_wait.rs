//! Waiting in host code that a kill can cut short. A host function that
//! blocks (WASI's `fd_read` on stdin, `fd_write` to a full pipe,
//! `poll_oneoff`'s sleeps) would keep its run alive past a kill, since a
//! kill in a hostcall only lands when the hostcall returns. So such waits
//! poll their descriptor together with the instance's **wakeup**, an
//! eventfd that `KillSwitch::terminate` writes to after setting the run's
//! flag: the wait returns `Waited::Killed` at once, the host function
//! returns, and the run ends with `Error::Killed`.
//!
//! Ordering: a kill stores the flag, fences, then looks for the wakeup; a
//! wait makes the wakeup, fences, then drains it and reads the flag. With
//! the two sequentially consistent fences, either the kill finds the
//! wakeup (and writes to it) or the wait sees the flag, so no kill is lost
//! between the wait's check and its `poll`. Counts left by earlier kills
//! are drained before each wait.

use crate::ending::kill::KillShared;
use rustix::event::{PollFd, PollFlags};
use rustix::time::Timespec;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a wait is for on its descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitFor {
    /// Input, end of file or an error: a read will not block.
    Readable,
    /// Room, or an error: a write will not block.
    Writable,
}

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waited {
    /// The descriptor is ready.
    Ready,
    /// The timeout passed first.
    TimedOut,
    /// A kill switch fired for this run: return from the host function
    /// promptly; the run ends with `Error::Killed` when it does.
    Killed,
}

/// Waits that a kill switch cuts short, detached from the `Caller` that
/// made it (`Caller::kill_waiter`): a host function can hold one while it
/// borrows the store's data mutably. It is tied to the store's runs, not
/// one run: use it only within the host call that made it (a kill of a
/// later run would wake it too).
#[derive(Clone)]
pub struct KillWaiter(Arc<KillShared>);

impl KillWaiter {
    pub(crate) fn new(kill: Arc<KillShared>) -> KillWaiter {
        KillWaiter(kill)
    }

    /// Waits until `fd` (if any) is ready for what is asked, `timeout` (if
    /// any) passes, or a kill switch fires for the run. With neither a
    /// descriptor nor a timeout it waits for a kill alone. On
    /// `Waited::Killed` return from the host function at once: the run
    /// then ends with `Error::Killed`.
    pub fn wait(&self, fd: Option<(BorrowedFd<'_>, WaitFor)>, timeout: Option<Duration>) -> Waited {
        self.0.wait(fd, timeout)
    }

    /// Whether a kill switch has fired for the run.
    pub fn is_killed(&self) -> bool {
        self.0.is_requested()
    }
}

impl std::fmt::Debug for KillWaiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KillWaiter")
            .field("killed", &self.is_killed())
            .finish()
    }
}

impl KillShared {
    /// The wakeup descriptor, made on first use (None if the kernel has no
    /// eventfd to give).
    pub(crate) fn wakeup_fd(&self) -> Option<BorrowedFd<'_>> {
        let wakeup = self.wakeup.get_or_init(|| {
            rustix::event::eventfd(
                0,
                rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
            )
            .map_err(|e| log::warn!("no eventfd for the kill switch's wakeup: {e}"))
            .ok()
        });
        // Pairs with the fence in `wake_waiters` (module docs).
        fence(Ordering::SeqCst);
        wakeup.as_ref().map(|fd| fd.as_fd())
    }

    /// Wakes a wait of the current run, if any was ever made. Called by
    /// `KillSwitch::terminate` after it set the flag.
    pub(crate) fn wake_waiters(&self) {
        fence(Ordering::SeqCst);
        if let Some(Some(fd)) = self.wakeup.get() {
            // A full counter (never, in practice) still wakes the wait.
            let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
        }
    }

    /// Empties the wakeup's counter (what earlier kills left).
    fn drain_wakeup(fd: BorrowedFd<'_>) {
        let mut count = [0u8; 8];
        let _ = rustix::io::read(fd, &mut count);
    }

    /// Waits until `fd` (if any) is ready as asked, `timeout` (if any)
    /// passes, or a kill of the current run is requested.
    pub(crate) fn wait(
        &self,
        fd: Option<(BorrowedFd<'_>, WaitFor)>,
        timeout: Option<Duration>,
    ) -> Waited {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        // A descriptor that is ready now needs no wakeup: most writes to
        // stdout and reads of a file end here, and an instance that never
        // has to wait never takes an eventfd.
        if let Some((fd, what)) = fd {
            if self.is_requested() {
                return Waited::Killed;
            }
            if poll_now(fd, what) {
                return Waited::Ready;
            }
        }
        let wakeup = self.wakeup_fd();
        if let Some(wakeup) = wakeup {
            Self::drain_wakeup(wakeup);
            fence(Ordering::SeqCst);
        }
        loop {
            if self.is_requested() {
                return Waited::Killed;
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) && fd.is_none() {
                return Waited::TimedOut;
            }
            // Without a wakeup (no eventfd), wake every 10 ms to look at
            // the flag instead.
            let slice = match (wakeup, left) {
                (Some(_), left) => left,
                (None, Some(left)) => Some(left.min(NO_WAKEUP_SLICE)),
                (None, None) => Some(NO_WAKEUP_SLICE),
            };
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(2);
            if let Some((fd, what)) = fd {
                fds.push(PollFd::from_borrowed_fd(fd, interest(what)));
            }
            if let Some(wakeup) = wakeup {
                fds.push(PollFd::from_borrowed_fd(wakeup, PollFlags::IN));
            }
            let timespec = slice.map(|d| Timespec {
                tv_sec: d.as_secs().min(i64::MAX as u64) as _,
                tv_nsec: d.subsec_nanos() as _,
            });
            match rustix::event::poll(&mut fds, timespec.as_ref()) {
                Ok(0) | Err(rustix::io::Errno::INTR) => {}
                Ok(_) => {
                    let fd_ready = fd.is_some() && !fds[0].revents().is_empty();
                    if fd_ready {
                        // A kill that came with it still wins.
                        return if self.is_requested() {
                            Waited::Killed
                        } else {
                            Waited::Ready
                        };
                    }
                    // The wakeup: a kill of this run, or a stale count.
                    if let Some(wakeup) = wakeup {
                        Self::drain_wakeup(wakeup);
                    }
                }
                // A descriptor poll cannot wait on: let the caller's
                // read or write find out.
                Err(_) => return Waited::Ready,
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return if self.is_requested() {
                    Waited::Killed
                } else {
                    Waited::TimedOut
                };
            }
        }
    }
}

/// Whether `fd` is ready for `what` right now (or poll cannot tell: the
/// caller's read or write will find out).
fn poll_now(fd: BorrowedFd<'_>, what: WaitFor) -> bool {
    let mut fds = [PollFd::from_borrowed_fd(fd, interest(what))];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&now)) {
        Ok(n) => n > 0,
        Err(rustix::io::Errno::INTR) => false,
        Err(_) => true,
    }
}

fn interest(what: WaitFor) -> PollFlags {
    match what {
        WaitFor::Readable => PollFlags::IN,
        WaitFor::Writable => PollFlags::OUT,
    }
}

/// How often a wait looks at the kill flag when it has no wakeup.
const NO_WAKEUP_SLICE: Duration = Duration::from_millis(10);
