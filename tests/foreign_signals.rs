//! An embedder's own SIGSEGV handler, installed before the first Backstop
//! call, still receives faults outside guest code after many guest traps:
//! Backstop's handler chains faults that are not in guest code to the handler
//! that was installed before it. Its own test binary (own process), so that
//! the handler really is installed before Backstop installs its own.
//!
//! The embedder's handler makes a PROT_NONE page read-write and sets a flag;
//! reading that page from Rust then succeeds (the faulting load restarts).

use backstop::{Engine, Instance, Linker, Module, Store, TrapCode};
use std::sync::atomic::{AtomicUsize, Ordering};

const PAGE: usize = 4096;

/// Start of the embedder's PROT_NONE region (`PAGES` pages).
static REGION: AtomicUsize = AtomicUsize::new(0);
const PAGES: usize = 4;
/// How many faults the embedder's handler fixed.
static FIXED: AtomicUsize = AtomicUsize::new(0);
/// How many faults it saw outside its region (should be none).
static STRAY: AtomicUsize = AtomicUsize::new(0);

extern "C" fn embedder_handler(
    _signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    let region = REGION.load(Ordering::SeqCst);
    if region != 0 && addr >= region && addr < region + PAGES * PAGE {
        let page = addr & !(PAGE - 1);
        // SAFETY: mprotect is async-signal-safe; the page is ours.
        unsafe {
            libc::mprotect(
                page as *mut libc::c_void,
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
            );
        }
        FIXED.fetch_add(1, Ordering::SeqCst);
    } else {
        // Not ours: restore the default action so the fault kills the
        // process (visibly) instead of looping.
        STRAY.fetch_add(1, Ordering::SeqCst);
        // SAFETY: sigaction is async-signal-safe.
        unsafe {
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        }
    }
}

fn install_embedder_handler() {
    // SAFETY: plain libc calls with valid arguments.
    unsafe {
        let region = libc::mmap(
            std::ptr::null_mut(),
            PAGES * PAGE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(region, libc::MAP_FAILED);
        REGION.store(region as usize, Ordering::SeqCst);
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = embedder_handler as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGSEGV, &action, std::ptr::null_mut()),
            0
        );
    }
}

/// Reads the first byte of page `index` of the region.
fn read_page(index: usize) -> u8 {
    let ptr = (REGION.load(Ordering::SeqCst) + index * PAGE) as *const u8;
    // SAFETY: the region is mapped; a PROT_NONE page faults, and the
    // embedder's handler makes it readable before the load restarts.
    unsafe { std::ptr::read_volatile(ptr) }
}

/// 100 guest traps of several kinds (SIGSEGV, SIGILL, SIGFPE in guest code).
fn run_guest_traps(store: &mut Store<()>, instance: Instance) {
    for n in 0..100 {
        let (result, code) = match n % 4 {
            0 => (
                instance.call::<i32, i32>(&mut *store, "load", 70000),
                TrapCode::MemoryOutOfBounds,
            ),
            1 => (
                instance.call::<i32, i32>(&mut *store, "unreachable", 0),
                TrapCode::UnreachableCodeReached,
            ),
            2 => (
                instance.call::<i32, i32>(&mut *store, "div", 0),
                TrapCode::IntegerDivisionByZero,
            ),
            _ => (
                instance.call::<i32, i32>(&mut *store, "load", -8),
                TrapCode::MemoryOutOfBounds,
            ),
        };
        let err = result.unwrap_err();
        assert_eq!(err.trap_code(), Some(code), "{err}");
    }
    assert_eq!(
        instance.call::<i32, i32>(&mut *store, "div", 2).unwrap(),
        50
    );
}

// One test only: its steps must run in order, in one process, with the
// embedder's handler installed before anything touches Backstop.
#[test]
fn embedder_sigsegv_handler_survives_guest_traps() {
    // If a fault were swallowed instead of chained, the read would fault
    // forever: fail loudly instead of hanging.
    std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_secs(20));
        eprintln!("foreign_signals: timed out (a fault was not passed on?)");
        std::process::abort();
    });
    install_embedder_handler();

    // Before Backstop: the embedder's handler works.
    assert_eq!(read_page(0), 0);
    assert_eq!(FIXED.load(Ordering::SeqCst), 1);

    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (memory 1)
             (func (export "load") (param i32) (result i32) (i32.load (local.get 0)))
             (func (export "unreachable") (param i32) (result i32) unreachable)
             (func (export "div") (param i32) (result i32)
               (i32.div_u (i32.const 100) (local.get 0))))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    run_guest_traps(&mut store, instance);

    // A fault outside guest code reaches the embedder's handler, chained by
    // Backstop's; the read succeeds.
    assert_eq!(read_page(1), 0);
    assert_eq!(FIXED.load(Ordering::SeqCst), 2);

    // Again after more traps, and from another thread that also ran guest
    // code (with its own signal stack).
    run_guest_traps(&mut store, instance);
    assert_eq!(read_page(2), 0);
    assert_eq!(FIXED.load(Ordering::SeqCst), 3);
    let thread = std::thread::spawn(move || {
        run_guest_traps(&mut store, instance);
        read_page(3)
    });
    assert_eq!(thread.join().unwrap(), 0);
    assert_eq!(FIXED.load(Ordering::SeqCst), 4);
    assert_eq!(STRAY.load(Ordering::SeqCst), 0);
}
