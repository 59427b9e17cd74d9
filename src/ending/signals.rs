//! Turning hardware faults in guest code into traps. Handlers for SIGSEGV,
//! SIGBUS, SIGILL and SIGFPE are installed once per process, run on a
//! sigaltstack, and do only async-signal-safe work:
//!
//! 1. read the faulting PC from the ucontext;
//! 2. ask the PC registry (lock-free, no allocation) whether it is guest
//!    code and which trap code it recorded there;
//! 3. if it is not guest code, chain to the handler installed before ours;
//! 4. otherwise write the fault into a thread-local record and rewrite the
//!    context so that, on return from the handler, the thread enters the
//!    fault-unwind stub of `backstop-asm` as if the faulting instruction had
//!    called it. The stub calls `raise_fault`, which (now outside any signal
//!    handler) ends the guest's run: by leaving the guest stack outright
//!    when no host frame is on it, otherwise by the unwind that runs their
//!    destructors (`exit::trap_in_guest_code`).
//!
//! The same module owns the kill switch's interrupt signal (`SIGURG`, sent
//! by `kill` to the thread of a run that is in compiled code). Its handler
//! takes only a signal that Backstop queued itself (marked in `si_value`)
//! and only when the thread's current run is the one to stop and is in a
//! compiled Wasm function, at a point from which that frame, or its
//! caller's, can be unwound (see `unwindable_point`). Then it does what the
//! fault handler does, with the trap code `Interrupt`, and tells the kill
//! switch it did; otherwise it tells the kill switch it declined, and the
//! kill switch sends again. Signals that are not Backstop's go to the
//! handler installed before ours.
//!
//! The handlers never unwind, allocate, lock or symbolize.

use crate::error::{Trap, TrapCode};
use std::cell::{Cell, UnsafeCell};
use std::mem::MaybeUninit;
use std::sync::Once;

/// The signal a kill switch sends to stop a run in compiled code. Its
/// default action is to ignore it, so a stray one (a thread that left the
/// guest before it arrived) does nothing even where our handler passes it on.
pub(crate) const INTERRUPT_SIGNAL: libc::c_int = libc::SIGURG;

/// The `si_value` that marks an interrupt signal as Backstop's own.
const INTERRUPT_MARK: usize = 0x6261_636b_7374_6f70; // "backstop"

const SIGNALS: [libc::c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    INTERRUPT_SIGNAL,
];

/// The handlers that were installed before ours, one per entry of `SIGNALS`.
struct PreviousHandlers(UnsafeCell<[MaybeUninit<libc::sigaction>; 5]>);

// SAFETY: written once, inside `INSTALL.call_once`, before our handlers are
// installed (so before any handler can read them); read-only afterwards.
unsafe impl Sync for PreviousHandlers {}

static PREVIOUS: PreviousHandlers = PreviousHandlers(UnsafeCell::new([MaybeUninit::uninit(); 5]));
static INSTALL: Once = Once::new();

/// What the handler saw, for `raise_fault` to turn into a `Trap`.
#[derive(Clone, Copy)]
struct FaultRecord {
    code: u8,
    pc: usize,
    /// rbp at the fault: the faulting function's frame pointer (compiled
    /// code sets up its frame before any instruction that can trap).
    fp: usize,
}

thread_local! {
    static LAST_FAULT: Cell<FaultRecord> = const { Cell::new(FaultRecord { code: 0, pc: 0, fp: 0 }) };
    static ALTSTACK_READY: Cell<bool> = const { Cell::new(false) };
    static OWN_ALTSTACK: Cell<Option<AltStack>> = const { Cell::new(None) };
}

/// Makes sure the handlers are installed and this thread has an alternate
/// signal stack. Cheap after the first call on a thread.
#[inline]
pub(crate) fn ensure_ready() {
    if !ALTSTACK_READY.get() {
        prepare_thread();
    }
}

#[cold]
#[inline(never)]
fn prepare_thread() {
    INSTALL.call_once(install_handlers);
    ensure_altstack();
    unblock_interrupt_signal();
    ALTSTACK_READY.set(true);
}

/// Kills of a guest in compiled code need the interrupt signal delivered
/// to the thread that runs it: unblock it on each thread that runs guests
/// (once, the first time). An embedder that blocks it again later on such
/// a thread makes kills of its guests wait until they call the host.
fn unblock_interrupt_signal() {
    // SAFETY: plain libc calls on a local, initialised signal set; only
    // this thread's mask changes, and only for the interrupt signal.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, INTERRUPT_SIGNAL);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

fn install_handlers() {
    for (i, signal) in SIGNALS.iter().enumerate() {
        // SAFETY: plain libc calls with valid, initialised structures. The
        // previous handler is stored before ours can run (this runs once).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            if *signal == INTERRUPT_SIGNAL {
                // Restart system calls the signal interrupts: a stray
                // interrupt must not make a blocking call fail.
                action.sa_sigaction = handle_interrupt as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
            } else {
                action.sa_sigaction = handle_signal as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            }
            libc::sigemptyset(&mut action.sa_mask);
            let previous = (*PREVIOUS.0.get())[i].as_mut_ptr();
            if libc::sigaction(*signal, &action, previous) != 0 {
                panic!(
                    "backstop: cannot install the handler for signal {signal}: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

/// An alternate signal stack this thread allocated itself.
struct AltStack {
    base: *mut libc::c_void,
    size: usize,
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // SAFETY: disable the alternate stack before unmapping it; this runs
        // at thread exit, when no handler runs on it.
        unsafe {
            let disable = libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            libc::sigaltstack(&disable, std::ptr::null_mut());
            libc::munmap(self.base, self.size);
        }
    }
}

const ALTSTACK_SIZE: usize = 64 << 10;

fn ensure_altstack() {
    // SAFETY: querying and setting this thread's alternate stack with valid
    // structures; the new stack is a fresh mapping owned by OWN_ALTSTACK.
    unsafe {
        let mut current: libc::stack_t = std::mem::zeroed();
        libc::sigaltstack(std::ptr::null(), &mut current);
        if current.ss_flags & libc::SS_DISABLE == 0 && current.ss_size >= 16 << 10 {
            return; // std (or the embedder) already gave this thread one.
        }
        let page = 4096;
        let size = ALTSTACK_SIZE + page;
        let base = libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if base == libc::MAP_FAILED {
            panic!("backstop: cannot allocate a signal stack");
        }
        libc::mprotect(base, page, libc::PROT_NONE); // guard below
        let stack = libc::stack_t {
            ss_sp: base.cast::<u8>().add(page).cast(),
            ss_flags: 0,
            ss_size: ALTSTACK_SIZE,
        };
        libc::sigaltstack(&stack, std::ptr::null_mut());
        OWN_ALTSTACK.set(Some(AltStack { base, size }));
    }
}

/// The fallback trap code when a faulting PC has no recorded trap site.
fn default_code(signal: libc::c_int) -> TrapCode {
    match signal {
        libc::SIGFPE => TrapCode::IntegerDivisionByZero,
        libc::SIGILL => TrapCode::UnreachableCodeReached,
        _ => TrapCode::MemoryOutOfBounds,
    }
}

extern "C" fn handle_signal(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    let uc = context.cast::<libc::ucontext_t>();
    // SAFETY: the kernel passes a valid ucontext to an SA_SIGINFO handler.
    let (pc, fp) = unsafe {
        let gregs = &(*uc).uc_mcontext.gregs;
        (
            gregs[libc::REG_RIP as usize] as usize,
            gregs[libc::REG_RBP as usize] as usize,
        )
    };
    match backstop_unwind::lookup_trap_signal_safe(pc) {
        Some((code, _owner)) => {
            let code = code
                .and_then(TrapCode::from_u8)
                .unwrap_or_else(|| default_code(signal));
            LAST_FAULT.set(FaultRecord {
                code: code as u8,
                pc,
                fp,
            });
            // SAFETY: the fault is in guest code, whose stack has room
            // below rsp (the prologue stack check keeps guest frames above
            // the host reserve), so pushing the return address is safe.
            unsafe {
                backstop_asm::redirect_to_unwind_stub(uc, pc, std::ptr::null_mut(), raise_fault);
            }
        }
        // SAFETY: forwarding the kernel's arguments unchanged.
        None => unsafe { chain(signal, info, context) },
    }
}

/// Passes a fault that is not ours to the handler installed before ours.
unsafe fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let Some(index) = SIGNALS.iter().position(|s| *s == signal) else {
        return;
    };
    // SAFETY: PREVIOUS was fully written before our handler was installed.
    let previous = unsafe { (*PREVIOUS.0.get())[index].assume_init_ref() };
    let handler = previous.sa_sigaction;
    if signal == INTERRUPT_SIGNAL && (handler == libc::SIG_DFL || handler == libc::SIG_IGN) {
        // Both mean "ignore" for this signal.
    } else if handler == libc::SIG_DFL {
        // Restore the default action and return: the faulting instruction
        // runs again and the default action (a core dump) happens.
        // SAFETY: sigaction is async-signal-safe; the structure is valid.
        unsafe {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut default.sa_mask);
            libc::sigaction(signal, &default, std::ptr::null_mut());
        }
    } else if handler == libc::SIG_IGN {
    } else if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: an SA_SIGINFO handler has this signature.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        f(signal, info, context);
    } else {
        // SAFETY: a plain handler has this signature.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(signal);
    }
}

/// Asks the thread `tid` of this process to stop the run it is running in
/// compiled code: queues the interrupt signal, marked as Backstop's own.
/// Whether it acts is up to `handle_interrupt`, on that thread. A thread
/// that is gone gets nothing (the kill switch's wait for a reply times out).
pub(crate) fn send_interrupt(tid: libc::pid_t) {
    /// `siginfo_t` as the kernel reads it for `SI_QUEUE` (x86-64 layout:
    /// the three header words and padding, then pid, uid and value).
    #[repr(C)]
    struct QueuedSignalInfo {
        signo: libc::c_int,
        errno: libc::c_int,
        code: libc::c_int,
        _pad: libc::c_int,
        pid: libc::pid_t,
        uid: libc::uid_t,
        value: usize,
        _rest: [u64; 12],
    }
    const _: () = assert!(std::mem::size_of::<QueuedSignalInfo>() == 128);
    // SAFETY: getpid and getuid cannot fail; rt_tgsigqueueinfo reads a
    // 128-byte siginfo from a valid pointer. SI_QUEUE is negative, which
    // the kernel requires for a signal queued with its own siginfo.
    unsafe {
        let info = QueuedSignalInfo {
            signo: INTERRUPT_SIGNAL,
            errno: 0,
            code: libc::SI_QUEUE,
            _pad: 0,
            pid: libc::getpid(),
            uid: libc::getuid(),
            value: INTERRUPT_MARK,
            _rest: [0; 12],
        };
        libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            libc::getpid(),
            tid,
            INTERRUPT_SIGNAL,
            &info as *const QueuedSignalInfo,
        );
    }
}

/// The first bytes of every compiled function: `push %rbp; mov %rsp,%rbp`.
/// Until they have run, `rbp` is the caller's frame pointer.
const FRAME_SETUP: [u8; 4] = [0x55, 0x48, 0x89, 0xe5];
/// `ret`: the only instruction of an epilogue after `pop %rbp`.
const RET: u8 = 0xc3;

/// Where a thread stopped at `pc` with stack pointer `sp` can be sent into
/// the fault-unwind stub as if an instruction had trapped: a `(pc, sp)` in
/// the body of a compiled Wasm function (not a trampoline), past its frame
/// setup, where that function's frame pointer is in `rbp` and its unwind
/// information (CFA = `rbp` + 16) holds, so both the frame-pointer walk
/// and the unwinder can start there. `None` if there is none.
///
/// Inside a body that is `(pc, sp)` itself. On the first instruction of a
/// function (`push %rbp` not yet run) or on its `ret` (after `pop %rbp`),
/// the thread is, to its caller, exactly at the call's return address:
/// `rbp` is the caller's, every callee-saved register holds the caller's
/// value, and the return address is at `sp`. After `push %rbp` it is at
/// `sp + 8`. The run is ended there, never resumed, so it can be ended
/// from the caller's return address instead, which is the common case in
/// call-heavy code (calls and returns are where interrupts land most).
/// Async-signal-safe.
///
/// # Safety
/// `sp` must be the stopped thread's stack pointer.
unsafe fn unwindable_point(pc: usize, sp: usize) -> Option<(usize, usize)> {
    let (index, offset) = backstop_unwind::function_offset_signal_safe(pc)?;
    if index == u32::MAX {
        return None;
    }
    let start = pc - offset as usize;
    // SAFETY: `start..=pc` lies in a registered function: mapped, readable
    // code that stays registered while it can run.
    let (setup, opcode) = unsafe {
        (
            std::ptr::read(start as *const [u8; 4]),
            std::ptr::read(pc as *const u8),
        )
    };
    if setup != FRAME_SETUP {
        return None;
    }
    let return_address_slot = match offset {
        0 => sp,
        1 => sp + 8,
        2..=3 => return None, // inside `push %rbp; mov %rsp,%rbp`: cannot happen
        _ if opcode == RET => sp,
        _ => return Some((pc, sp)),
    };
    // SAFETY: in these states the return address is at that slot of the
    // stopped thread's stack (see above), which is mapped.
    let return_address = unsafe { std::ptr::read(return_address_slot as *const usize) };
    match backstop_unwind::function_offset_signal_safe(return_address) {
        Some((index, offset)) if index != u32::MAX && offset as usize >= FRAME_SETUP.len() => {
            Some((return_address, return_address_slot + 8))
        }
        _ => None,
    }
}

extern "C" fn handle_interrupt(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler;
    // `si_value` is only read for queued signals, which carry one.
    let ours = unsafe {
        (*info).si_code == libc::SI_QUEUE && (*info).si_value().sival_ptr as usize == INTERRUPT_MARK
    };
    if !ours {
        // SAFETY: forwarding the kernel's arguments unchanged.
        unsafe { chain(signal, info, context) };
        return;
    }
    let Some(kill) = crate::ending::exit::current_run_to_interrupt() else {
        return; // Stale: the run ended, or is in host code (it checks itself).
    };
    let uc = context.cast::<libc::ucontext_t>();
    // SAFETY: the kernel passes a valid ucontext to an SA_SIGINFO handler.
    let (pc, sp, fp) = unsafe {
        let gregs = &(*uc).uc_mcontext.gregs;
        (
            gregs[libc::REG_RIP as usize] as usize,
            gregs[libc::REG_RSP as usize] as usize,
            gregs[libc::REG_RBP as usize] as usize,
        )
    };
    // SAFETY: `sp` is the interrupted thread's stack pointer.
    let Some((pc, sp)) = (unsafe { unwindable_point(pc, sp) }) else {
        kill.interrupt_declined(); // The kill switch sends again.
        return;
    };
    kill.interrupt_taken();
    LAST_FAULT.set(FaultRecord {
        code: TrapCode::Interrupt as u8,
        pc,
        fp,
    });
    // SAFETY: as for a fault: `pc` is in a compiled function's body and
    // `sp` its stack pointer there, on the guest stack, which has room
    // below it. The context's registers are ours to rewrite.
    unsafe {
        (*uc).uc_mcontext.gregs[libc::REG_RSP as usize] = sp as i64;
        backstop_asm::redirect_to_unwind_stub(uc, pc, std::ptr::null_mut(), raise_fault);
    }
}

/// Called by the fault-unwind stub on the guest stack, outside the signal
/// handler: turns the recorded fault into a trap that ends the run.
extern "C-unwind" fn raise_fault(_arg: *mut u8) -> ! {
    let record = LAST_FAULT.get();
    let code = TrapCode::from_u8(record.code).unwrap_or(TrapCode::MemoryOutOfBounds);
    crate::ending::exit::trap_in_guest_code(Trap::at_pc(code, record.pc), record.pc, record.fp)
}
