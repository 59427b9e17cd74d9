//! The kill switch: stopping a guest from another thread (for timeouts).
//!
//! A kill sets the run's flag. The owner's side checks the flag itself
//! wherever a run goes back into Wasm: at its start, on every hostcall
//! return, on every nested entry (`Caller::call`) and at `resume`. A run
//! that is in compiled code when the kill lands must be stopped there, in
//! one of two ways:
//!
//! - **The interrupt signal** (the default, `Config::interrupt_checks(false)`):
//!   the kill switch queues `SIGURG`, marked as Backstop's own, to the
//!   thread running the run. The handler (`signals`) takes it only if that
//!   thread's current run is the one to stop and it is in a compiled Wasm
//!   function at an instruction where its frame can be unwound (past the
//!   frame setup, not on the final `ret`). Then it sends the thread into the
//!   fault-unwind stub, exactly as for a trap with the code `Interrupt`.
//!   On a function's first instruction or its `ret` it ends the run from
//!   the caller's return address instead. Anywhere else (a trampoline, a
//!   runtime function, host code on its way in or out) it declines.
//!   `terminate` waits for the handler's reply (a few µs) and sends again
//!   at once if it declined; if there is no reply within 50 µs, or after 8
//!   declines, a follow-up thread (started on first use) sends the signal
//!   again after 20 µs, then at doubling intervals up to 1 ms, until the
//!   run stops. Compiled code pays nothing for this until a kill.
//! - **Interrupt checks** (`Config::interrupt_checks(true)`): every loop
//!   header and function entry reads a process-wide word,
//!   `INTERRUPTS_PENDING` (a load from a constant address and a branch), and
//!   only while that is non-zero goes out of line to read its own run's
//!   flag. A kill of a run in compiled code counts the instance in that
//!   word ("arms" it) until the run ends. While any instance is armed,
//!   every check in the process takes the out-of-line path, which can
//!   double the time of a tight loop, so only a kill of a run in compiled
//!   code arms, and only until that run ends (microseconds).
//!
//! Either way the kill ends the run like a trap: it unwinds every host
//! frame on the guest stack, or, with none there, leaves the guest stack
//! directly (a few µs from `terminate()` to the embedder's `Err`, however
//! deep the guest's own recursion).
//!
//! The owner's checks are relaxed loads after relaxed stores; a kill that
//! finds the run in a hostcall or not yet started orders them with a
//! process-wide fence (`membarrier`) instead of signalling or arming.
//! Without `membarrier`, it signals or arms. Host functions see the flag
//! when they return to the guest, and can poll it
//! (`Caller::is_termination_pending`).
//!
//! Kill state is per store (`Store::kill_switch`): a store runs one guest
//! call at a time, whichever of its instances' code that call executes, so
//! a kill stops the store's run wherever it is, in any of its instances.
//! A `KillSwitch` targets one run of its store: the run in progress when
//! it was made, or the next run if the store was idle. Its `terminate`
//! tells what it did:
//!
//! | store when `terminate` runs             | effect                               | outcome                |
//! |-----------------------------------------|--------------------------------------|------------------------|
//! | idle, target run not started            | that run is cancelled at its start   | `CancelledBeforeStart` |
//! | running the target run, in Wasm code    | the guest stops (signal or check)    | `Interrupted`          |
//! | running the target run, in a hostcall   | stops when the hostcall returns; a wait in it (`Caller::wait_for_fd`, WASI's blocking calls) returns at once | `PendingInHostcall`    |
//! | target run suspended (yielded)          | stops when it is resumed             | `PendingUntilResume`   |
//! | target run finished, store reset, or another run in progress | nothing | `NothingToTerminate` |
//! | store dropped                           | nothing                              | `NothingToTerminate`   |
//!
//! The run's state is published with plain atomic stores by the thread that
//! runs the store (nothing on the hot path takes a lock); `terminate`
//! reads it and sets the flag to the target run's number, so a stale
//! request can never stop a later run.

use backstop_jit::vmoffsets::INTERRUPTS_PENDING;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

const PHASE_IDLE: u64 = 0;
const PHASE_RUNNING: u64 = 1;
const PHASE_SUSPENDED: u64 = 2;
const PHASE_DEAD: u64 = 3;

/// State shared between a store and its kill switches.
pub(crate) struct KillShared {
    /// Read by compiled code through `vmctx.interrupt`: 0, or the number
    /// of the run to stop (truncated to 32 bits, never 0).
    pub(crate) flag: AtomicU32,
    /// `run << 2 | phase`: the number of the current or last run, and
    /// whether it is in progress.
    status: AtomicU64,
    /// Non-zero while a host function called by the guest is running.
    pub(crate) in_host: AtomicU32,
    /// How many host functions called by the guest are on the guest stack
    /// (entered and not yet returned, at any nesting depth). Exact while
    /// the run goes normally; an unwind skips the decrements, so it can
    /// only be too high, never too low, until the next run resets it. A
    /// trap in compiled code while it is 0 has nothing to unwind.
    pub(crate) host_frames: AtomicU32,
    /// Whether this instance counts itself in `INTERRUPTS_PENDING`, the
    /// process-wide word compiled code checks before it looks at `flag`
    /// (while it is non-zero, every check in the process takes a slower,
    /// out-of-line path). Armed right after the flag is set for a run that
    /// is in compiled code now; not for a run in a hostcall, a suspended
    /// run or a run not started yet, which the owner's side checks on its
    /// way back into Wasm (see `terminate`). Disarmed when a run ends, and
    /// on reset and drop.
    armed: AtomicBool,
    /// Whether the instance's compiled code checks the flag itself
    /// (`Config::interrupt_checks`): then a kill arms; otherwise it sends
    /// the interrupt signal to `thread`.
    polls: bool,
    /// The kernel thread id of the thread running (or last running) the
    /// current run, for the interrupt signal. Stored before the status
    /// that says the run is running.
    thread: AtomicI32,
    /// The interrupt signal's handler's replies, for the kill switch that
    /// waits for them: how many signals it declined, and the number of the
    /// last run it stopped.
    interrupts_declined: AtomicU32,
    interrupted_run: AtomicU64,
    /// An eventfd a kill writes to, so host code waiting on a descriptor
    /// (WASI's `fd_read` on stdin, `poll_oneoff`) wakes up: made on first
    /// use by such a wait (`kill_wait`); `None` inside if the kernel
    /// refused one.
    pub(crate) wakeup: OnceLock<Option<std::os::fd::OwnedFd>>,
}

thread_local! {
    /// This thread's kernel id, once asked (`gettid` is a system call).
    static THREAD_ID: Cell<libc::pid_t> = const { Cell::new(0) };
}

#[inline]
fn current_thread_id() -> libc::pid_t {
    let id = THREAD_ID.get();
    if id != 0 {
        return id;
    }
    // SAFETY: gettid has no arguments and cannot fail.
    let id = unsafe { libc::gettid() };
    THREAD_ID.set(id);
    id
}

#[inline]
fn flag_value(run: u64) -> u32 {
    (run as u32).max(1)
}

impl KillShared {
    /// `polls`: whether the instance's compiled code checks the flag.
    pub(crate) fn new(polls: bool) -> Arc<KillShared> {
        Arc::new(KillShared {
            flag: AtomicU32::new(0),
            status: AtomicU64::new(PHASE_IDLE),
            in_host: AtomicU32::new(0),
            host_frames: AtomicU32::new(0),
            armed: AtomicBool::new(false),
            polls,
            thread: AtomicI32::new(0),
            interrupts_declined: AtomicU32::new(0),
            interrupted_run: AtomicU64::new(0),
            wakeup: OnceLock::new(),
        })
    }

    /// Called by the owner before a run: returns false if the run was
    /// cancelled by a kill switch.
    ///
    /// The owner's side uses plain (relaxed) stores and loads: it is on the
    /// hot path of every call. A request whose flag store is not yet
    /// visible here has the kill switch see the run started (after its
    /// fence, see `terminate`), so it interrupts or arms: no fence is
    /// needed here for the kill to land.
    #[inline]
    pub(crate) fn begin_run(&self) -> bool {
        let run = (self.status.load(Ordering::Relaxed) >> 2) + 1;
        self.thread.store(current_thread_id(), Ordering::Relaxed);
        self.status
            .store(run << 2 | PHASE_RUNNING, Ordering::Release);
        self.host_frames.store(0, Ordering::Relaxed);
        let flag = self.flag.load(Ordering::Acquire);
        if flag != 0 {
            if flag == flag_value(run) {
                self.end_run();
                return false;
            }
            // Aimed at an earlier run that finished before it could stop.
            let _ = self
                .flag
                .compare_exchange(flag, 0, Ordering::SeqCst, Ordering::SeqCst);
        }
        true
    }

    /// Called by the owner after a run, however it ended.
    #[inline]
    pub(crate) fn end_run(&self) {
        let run = self.status.load(Ordering::Relaxed) >> 2;
        self.status.store(run << 2 | PHASE_IDLE, Ordering::Release);
        self.in_host.store(0, Ordering::Relaxed);
        self.host_frames.store(0, Ordering::Relaxed);
        self.disarm();
        if self.flag.load(Ordering::Relaxed) == flag_value(run) {
            let _ =
                self.flag
                    .compare_exchange(flag_value(run), 0, Ordering::SeqCst, Ordering::SeqCst);
        }
    }

    /// Called when the run suspends (yields) and when it resumes.
    pub(crate) fn set_suspended(&self, suspended: bool) {
        let run = self.status.load(Ordering::Relaxed) >> 2;
        let phase = if suspended {
            PHASE_SUSPENDED
        } else {
            // It may resume on another thread.
            self.thread.store(current_thread_id(), Ordering::Relaxed);
            PHASE_RUNNING
        };
        self.status.store(run << 2 | phase, Ordering::SeqCst);
    }

    /// Called on reset: switches made before it no longer target anything.
    pub(crate) fn skip_run(&self) {
        let run = (self.status.load(Ordering::Relaxed) >> 2) + 1;
        self.status.store(run << 2 | PHASE_IDLE, Ordering::SeqCst);
        self.flag.store(0, Ordering::SeqCst);
        self.disarm();
    }

    /// Called when the store is dropped.
    pub(crate) fn mark_dead(&self) {
        self.status.store(PHASE_DEAD, Ordering::SeqCst);
        self.disarm();
    }

    /// Sets the flag to stop `run`.
    fn request(&self, run: u64) {
        self.flag.store(flag_value(run), Ordering::SeqCst);
    }

    /// Makes compiled code stop for the flag set by `request(run)`: arms
    /// (see `armed`) if the code checks the flag, else interrupts the
    /// run's thread with the interrupt signal (`interrupt`). Arming after
    /// the flag store means a concurrent disarm (a run ending, whose stale
    /// flag this may be) cannot leave a fresh request unarmed; at worst a
    /// stale arming lasts until this instance's next run ends.
    fn notify_compiled_code(self: &Arc<Self>, run: u64) {
        if self.polls {
            if !self.armed.swap(true, Ordering::SeqCst) {
                INTERRUPTS_PENDING.fetch_add(1, Ordering::SeqCst);
            }
        } else if !self.interrupt(run) {
            follow_up(self, run);
        }
    }

    /// Sends the interrupt signal to the run's thread and waits, briefly,
    /// for the handler's reply; sends again at once when it declined (the
    /// thread was at an instruction it cannot leave from). True once the
    /// handler took it or the run stopped; false if neither happened
    /// within `INTERRUPT_WAIT` per attempt (the thread is in a hostcall or
    /// a runtime function, or was not scheduled), and the follow-up thread
    /// must go on. A reply is a few µs away: the signal's delivery.
    fn interrupt(&self, run: u64) -> bool {
        for _ in 0..INTERRUPT_ATTEMPTS {
            let declined = self.interrupts_declined.load(Ordering::SeqCst);
            self.interrupt_thread();
            let sent = std::time::Instant::now();
            loop {
                if self.interrupted_run.load(Ordering::SeqCst) == run || !self.still_to_stop(run) {
                    return true;
                }
                if self.interrupts_declined.load(Ordering::SeqCst) != declined {
                    break; // Declined: send again.
                }
                if sent.elapsed() > INTERRUPT_WAIT {
                    return false;
                }
                std::hint::spin_loop();
            }
        }
        false
    }

    /// The handler's reply: it declined this run's interrupt signal.
    /// Async-signal-safe.
    pub(crate) fn interrupt_declined(&self) {
        self.interrupts_declined.fetch_add(1, Ordering::SeqCst);
    }

    /// The handler's reply: it is stopping the current run. Async-signal-safe.
    pub(crate) fn interrupt_taken(&self) {
        let run = self.status.load(Ordering::Relaxed) >> 2;
        self.interrupted_run.store(run, Ordering::SeqCst);
    }

    /// Sends the interrupt signal to the thread of the current run.
    fn interrupt_thread(&self) {
        let thread = self.thread.load(Ordering::Relaxed);
        if thread != 0 {
            crate::ending::signals::send_interrupt(thread);
        }
    }

    /// Whether `run` is still running with its kill requested (then the
    /// follow-up thread keeps interrupting it).
    fn still_to_stop(&self, run: u64) -> bool {
        self.status.load(Ordering::SeqCst) == run << 2 | PHASE_RUNNING
            && self.flag.load(Ordering::SeqCst) == flag_value(run)
    }

    /// For the interrupt signal's handler, on the run's own thread: whether
    /// the current run is to be stopped now. Not while it is in a host
    /// function, which sees the flag when it returns. Async-signal-safe
    /// (atomic loads only).
    pub(crate) fn interrupt_due(&self) -> bool {
        let run = self.status.load(Ordering::Relaxed) >> 2;
        self.still_to_stop(run) && self.in_host.load(Ordering::Relaxed) == 0
    }

    /// Stops counting this instance in `INTERRUPTS_PENDING`.
    #[inline]
    fn disarm(&self) {
        if self.armed.load(Ordering::Relaxed) && self.armed.swap(false, Ordering::SeqCst) {
            INTERRUPTS_PENDING.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Whether a kill of the current run is requested. (A sequentially
    /// consistent load, a plain `mov` on x86-64: `resume` pairs it with its
    /// status store, see `terminate`.)
    pub(crate) fn is_requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst) != 0
    }

    /// A switch aimed at the current run, or the next one if idle.
    pub(crate) fn switch(self: &Arc<Self>) -> KillSwitch {
        let status = self.status.load(Ordering::SeqCst);
        let run = status >> 2;
        let target = match status & 3 {
            PHASE_RUNNING | PHASE_SUSPENDED => run,
            _ => run + 1,
        };
        KillSwitch {
            shared: self.clone(),
            target,
        }
    }
}

/// Kills whose run may still be in compiled code, for the follow-up thread.
struct FollowUps {
    pending: Mutex<Vec<(Arc<KillShared>, u64)>>,
    added: Condvar,
}

/// How long `terminate` waits for the interrupt signal's handler to reply,
/// and how many signals it sends while the handler declines, before it
/// leaves the run to the follow-up thread.
const INTERRUPT_WAIT: Duration = Duration::from_micros(50);
const INTERRUPT_ATTEMPTS: u32 = 8;

/// The first wait before the follow-up thread interrupts a run again, and
/// the longest (the wait doubles while the run goes on).
const FIRST_FOLLOW_UP: Duration = Duration::from_micros(20);
const LAST_FOLLOW_UP: Duration = Duration::from_millis(1);

/// Hands the kill of `run` to the follow-up thread (started on first use):
/// it interrupts the run's thread again until the run stops. The signal's
/// handler declines when the thread is somewhere it cannot leave from (a
/// trampoline, a runtime function called by compiled code, host code on
/// its way in or out); a moment later it is elsewhere.
fn follow_up(shared: &Arc<KillShared>, run: u64) {
    static FOLLOW_UPS: OnceLock<Option<&'static FollowUps>> = OnceLock::new();
    let follow_ups = FOLLOW_UPS.get_or_init(|| {
        let follow_ups: &'static FollowUps = Box::leak(Box::new(FollowUps {
            pending: Mutex::new(Vec::new()),
            added: Condvar::new(),
        }));
        match std::thread::Builder::new()
            .name("backstop-kill-follow-up".into())
            .spawn(move || follow_up_thread(follow_ups))
        {
            Ok(_) => Some(follow_ups),
            Err(error) => {
                log::error!(
                    "cannot start the kill switch's follow-up thread ({error}); \
                     a kill may not stop a run that is at a frame setup or in a runtime call"
                );
                None
            }
        }
    });
    if let Some(follow_ups) = follow_ups {
        let mut pending = follow_ups
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pending.push((shared.clone(), run));
        follow_ups.added.notify_one();
    }
}

/// Waits for kills, then interrupts each run again, with a doubling wait,
/// until it has stopped (its status or flag changed). A run in a host
/// function is not interrupted: it sees the flag when the function returns.
fn follow_up_thread(follow_ups: &'static FollowUps) {
    let lock = || {
        follow_ups
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    let mut wait = FIRST_FOLLOW_UP;
    loop {
        {
            let mut pending = lock();
            while pending.is_empty() {
                wait = FIRST_FOLLOW_UP;
                pending = follow_ups
                    .added
                    .wait(pending)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(LAST_FOLLOW_UP);
        let mut pending = lock();
        pending.retain(|(shared, run)| shared.still_to_stop(*run));
        for (shared, _) in pending.iter() {
            if shared.in_host.load(Ordering::SeqCst) == 0 {
                shared.interrupt_thread();
            }
        }
    }
}

/// `membarrier(2)` commands (linux/membarrier.h).
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

/// Whether this process can use `process_wide_fence` (registered once).
pub(crate) fn has_process_wide_fence() -> bool {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REGISTERED.get_or_init(|| {
        // SAFETY: a plain system call with integer arguments; it only
        // registers this process for expedited private membarriers.
        unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
                0,
                0,
            ) == 0
        }
    })
}

/// A full memory barrier on every thread of this process that is running
/// now (`membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`): the owner's
/// relaxed store-then-load pairs on the hot path act as if they were
/// sequentially consistent against the kill switch, which pays a system
/// call instead. False if the kernel does not offer it.
fn process_wide_fence() -> bool {
    has_process_wide_fence()
        // SAFETY: as above; the process is registered.
        && unsafe {
            libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0
        }
}

/// What `KillSwitch::terminate` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillOutcome {
    /// The run had not started; it will end with `Error::Killed` as soon
    /// as it starts, before any guest code runs.
    CancelledBeforeStart,
    /// The guest was running Wasm code; it stops within microseconds (the
    /// interrupt signal, or its next interrupt check) and the call returns
    /// `Error::Killed`. (A run that was just returning may still return
    /// its results first.)
    Interrupted,
    /// The guest was inside a host function; the run stops when that
    /// function returns to Wasm (the function can poll
    /// `Caller::is_termination_pending`).
    PendingInHostcall,
    /// The run was suspended (yielded); it ends with `Error::Killed`, every
    /// frame unwound, when it is resumed.
    PendingUntilResume,
    /// The targeted run already finished, the store was reset or
    /// dropped: there was nothing to terminate.
    NothingToTerminate,
}

/// Stops a run of a store from any thread. `Clone + Send + Sync`.
#[derive(Clone)]
pub struct KillSwitch {
    shared: Arc<KillShared>,
    target: u64,
}

impl std::fmt::Debug for KillSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KillSwitch(run {})", self.target)
    }
}

impl KillSwitch {
    /// Stops the targeted run (see the table in the module docs).
    pub fn terminate(&self) -> KillOutcome {
        let status = self.shared.status.load(Ordering::SeqCst);
        let (run, phase) = (status >> 2, status & 3);
        match phase {
            PHASE_DEAD => KillOutcome::NothingToTerminate,
            PHASE_RUNNING if run == self.target => {
                // The owner's side marks "in a hostcall" and then reads the
                // flag with relaxed atomics (on every hostcall return and
                // nested entry). After the flag store, a process-wide fence
                // makes that pair behave as sequentially consistent: if the
                // mark still reads "in a hostcall" below, the owner reads
                // the flag when it goes back to Wasm, so compiled code need
                // not look (no arming, no slower checks elsewhere). Without
                // the fence (an old kernel), arm anyway.
                // The fence (a system call with inter-processor interrupts,
                // about 10 µs here) is only paid when the run looks to be in
                // a hostcall; a run in Wasm is armed at once.
                self.shared.request(self.target);
                let in_host = || self.shared.in_host.load(Ordering::SeqCst) != 0;
                let outcome = if in_host() && process_wide_fence() && in_host() {
                    KillOutcome::PendingInHostcall
                } else {
                    self.shared.notify_compiled_code(self.target);
                    if in_host() {
                        KillOutcome::PendingInHostcall
                    } else {
                        KillOutcome::Interrupted
                    }
                };
                // A host function waiting on a descriptor wakes up now
                // (after the outcome is known: woken, it leaves the
                // hostcall at once).
                self.shared.wake_waiters();
                outcome
            }
            PHASE_SUSPENDED if run == self.target => {
                // Not armed: `resume` publishes the running status and then
                // reads the flag (both sequentially consistent), so either
                // it sees the flag, or the status read below sees it
                // running and arms.
                self.shared.request(self.target);
                let now = self.shared.status.load(Ordering::SeqCst);
                if now == run << 2 | PHASE_RUNNING {
                    self.shared.notify_compiled_code(self.target);
                }
                KillOutcome::PendingUntilResume
            }
            PHASE_IDLE if run + 1 == self.target => {
                // `begin_run` publishes the running status and then reads
                // the flag, with plain atomics; after the fence, either the
                // status below still reads idle and the run will see the
                // flag when it starts (no arming), or the run has started
                // and compiled code must look. Without the fence, arm.
                self.shared.request(self.target);
                let fenced = process_wide_fence();
                let now = self.shared.status.load(Ordering::SeqCst);
                if fenced && now == status {
                    return KillOutcome::CancelledBeforeStart;
                }
                self.shared.notify_compiled_code(self.target);
                if self.shared.status.load(Ordering::SeqCst) == status {
                    KillOutcome::CancelledBeforeStart
                } else {
                    KillOutcome::Interrupted
                }
            }
            _ => KillOutcome::NothingToTerminate,
        }
    }
}
