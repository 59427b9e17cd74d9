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
//! The handler never unwinds, allocates, locks or symbolizes.

use crate::error::{Trap, TrapCode};
use std::cell::{Cell, UnsafeCell};
use std::mem::MaybeUninit;
use std::sync::Once;

const SIGNALS: [libc::c_int; 4] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE];

/// The handlers that were installed before ours, one per entry of `SIGNALS`.
struct PreviousHandlers(UnsafeCell<[MaybeUninit<libc::sigaction>; 4]>);

// SAFETY: written once, inside `INSTALL.call_once`, before our handlers are
// installed (so before any handler can read them); read-only afterwards.
unsafe impl Sync for PreviousHandlers {}

static PREVIOUS: PreviousHandlers = PreviousHandlers(UnsafeCell::new([MaybeUninit::uninit(); 4]));
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
    ALTSTACK_READY.set(true);
}

fn install_handlers() {
    for (i, signal) in SIGNALS.iter().enumerate() {
        // SAFETY: plain libc calls with valid, initialised structures. The
        // previous handler is stored before ours can run (this runs once).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handle_signal as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
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
    if handler == libc::SIG_DFL {
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

/// Called by the fault-unwind stub on the guest stack, outside the signal
/// handler: turns the recorded fault into a trap that ends the run.
extern "C-unwind" fn raise_fault(_arg: *mut u8) -> ! {
    let record = LAST_FAULT.get();
    let code = TrapCode::from_u8(record.code).unwrap_or(TrapCode::MemoryOutOfBounds);
    crate::exit::trap_in_guest_code(Trap::at_pc(code, record.pc), record.pc, record.fp)
}
