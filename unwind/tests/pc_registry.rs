//! Exercises the process-wide PC registry through its public API: exact answers for regions, functions, traps
//! and source offsets; 5,000 regions registered and unregistered from two threads while a third looks up
//! continuously and checks every answer; and lookups from a signal handler that interrupts a writer.
//!
//! The registry is global, so each test uses its own fake address range (no memory is ever touched there).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use backstop_unwind::{
    is_registered_code_signal_safe, lookup, lookup_trap_signal_safe, register_code, CodeRegion,
    FunctionRange, SourceLoc, TrapSite,
};

/// A small xorshift generator: deterministic, and enough for picking regions and offsets.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

#[test]
fn lookups_report_the_region_function_trap_and_source_offset() {
    let base = 0x6000_0000_0000usize;
    let region = Arc::new(CodeRegion {
        start: base,
        len: 0x100,
        functions: vec![
            FunctionRange {
                start: 0,
                len: 0x40,
                index: 3,
                name: Some("first".into()),
            },
            FunctionRange {
                start: 0x80,
                len: 0x40,
                index: 9,
                name: None,
            },
        ],
        traps: vec![TrapSite {
            code_offset: 0x90,
            code: 42,
        }],
        srclocs: vec![
            SourceLoc {
                code_offset: 0x10,
                source_offset: 500,
            },
            SourceLoc {
                code_offset: 0x88,
                source_offset: 900,
            },
        ],
        owner: 0xfeed,
        name: Some("module".into()),
    });
    // A neighbour that ends exactly where `region` begins, and an empty region inside `region`'s range.
    let neighbour = register_code(Arc::new(CodeRegion {
        start: base - 0x10,
        len: 0x10,
        owner: 1,
        ..CodeRegion::default()
    }));
    let empty = register_code(Arc::new(CodeRegion {
        start: base + 0x20,
        len: 0,
        owner: 2,
        ..CodeRegion::default()
    }));
    let handle = register_code(Arc::clone(&region));
    assert!(Arc::ptr_eq(handle.region(), &region));

    let info = lookup(base + 0x20).unwrap();
    assert!(Arc::ptr_eq(&info.region, &region));
    assert_eq!(info.code_offset, 0x20);
    assert_eq!(
        info.function_range().unwrap().name.as_deref(),
        Some("first")
    );
    assert_eq!(info.source_offset, Some(500));
    assert_eq!(info.trap_code, None);

    let info = lookup(base + 0x90).unwrap();
    assert_eq!(info.function, Some(1));
    assert_eq!(info.function_range().unwrap().index, 9);
    assert_eq!(info.source_offset, Some(900));
    assert_eq!(info.trap_code, Some(42));

    let between_functions = lookup(base + 0x50).unwrap();
    assert_eq!(between_functions.function, None);
    assert_eq!(between_functions.source_offset, Some(500));

    assert_eq!(lookup(base + 5).unwrap().source_offset, None);
    assert_eq!(lookup(base - 1).unwrap().region.owner, 1);
    assert!(lookup(base + 0x100).is_none());

    assert_eq!(
        lookup_trap_signal_safe(base + 0x90),
        Some((Some(42), 0xfeed))
    );
    assert_eq!(lookup_trap_signal_safe(base + 0x91), Some((None, 0xfeed)));
    assert_eq!(lookup_trap_signal_safe(base - 0x10), Some((None, 1)));
    assert_eq!(lookup_trap_signal_safe(base - 0x11), None);
    assert!(is_registered_code_signal_safe(base + 0xff));
    assert!(!is_registered_code_signal_safe(base + 0x100));

    // A `PcInfo` keeps its region alive after the registration is gone.
    drop(handle);
    assert!(!is_registered_code_signal_safe(base + 0x90));
    assert!(lookup(base + 0x90).is_none());
    assert_eq!(info.region.owner, 0xfeed);
    assert!(is_registered_code_signal_safe(base - 1));
    drop(neighbour);
    drop(empty);
    assert!(!is_registered_code_signal_safe(base - 1));
}

#[test]
#[should_panic(expected = "overlaps registered region")]
fn registering_an_overlapping_region_panics() {
    let base = 0x6100_0000_0000usize;
    let _first = register_code(Arc::new(CodeRegion {
        start: base,
        len: 0x100,
        ..CodeRegion::default()
    }));
    let _second = register_code(Arc::new(CodeRegion {
        start: base + 0xff,
        len: 0x100,
        ..CodeRegion::default()
    }));
}

#[test]
#[should_panic(expected = "traps must be sorted")]
fn registering_unsorted_traps_panics() {
    let _handle = register_code(Arc::new(CodeRegion {
        start: 0x6200_0000_0000,
        len: 0x100,
        traps: vec![
            TrapSite {
                code_offset: 8,
                code: 1,
            },
            TrapSite {
                code_offset: 4,
                code: 2,
            },
        ],
        ..CodeRegion::default()
    }));
}

/// The regions of the concurrent test: module `k` lives in slot `k` of `STRESS_BASE + k * STRESS_SLOT`, and all
/// its contents follow from `k`, so a reader can check any answer against these formulas.
const STRESS_BASE: usize = 0x5000_0000_0000;
const STRESS_SLOT: usize = 0x1_0000;
const STRESS_MODULES: usize = 5_000;
const FUNCTION_GAP: u32 = 16;
const TRAP_EVERY: u32 = 64;
const TRAP_AT: u32 = 3;
const SRCLOC_EVERY: u32 = 32;

fn stress_len(k: usize) -> u32 {
    0x1000 * (1 + (k % 7) as u32)
}

fn stress_function_count(k: usize) -> u32 {
    1 + (k % 5) as u32
}

fn stress_function_size(k: usize) -> u32 {
    stress_len(k) / stress_function_count(k)
}

fn stress_owner(k: usize) -> usize {
    k ^ 0xabcd_0000
}

fn stress_trap_code(k: usize, site: u32) -> u8 {
    ((k as u32 + site) % 251) as u8
}

fn stress_region(k: usize) -> CodeRegion {
    let len = stress_len(k);
    let function_size = stress_function_size(k);
    CodeRegion {
        start: STRESS_BASE + k * STRESS_SLOT,
        len: len as usize,
        functions: (0..stress_function_count(k))
            .map(|i| FunctionRange {
                start: i * function_size,
                len: function_size - FUNCTION_GAP,
                index: i,
                name: None,
            })
            .collect(),
        traps: (0..len / TRAP_EVERY)
            .map(|site| TrapSite {
                code_offset: site * TRAP_EVERY + TRAP_AT,
                code: stress_trap_code(k, site),
            })
            .collect(),
        srclocs: (0..len / SRCLOC_EVERY)
            .map(|i| SourceLoc {
                code_offset: i * SRCLOC_EVERY,
                source_offset: k as u32 * 100_000 + i,
            })
            .collect(),
        owner: stress_owner(k),
        name: None,
    }
}

/// What a lookup of offset `offset` in slot `k` must return when module `k` is registered.
struct Expected {
    function: Option<usize>,
    source_offset: u32,
    trap_code: Option<u8>,
}

fn stress_expected(k: usize, offset: u32) -> Option<Expected> {
    if offset >= stress_len(k) {
        return None;
    }
    let function_size = stress_function_size(k);
    // The last few bytes may lie past the last function when `len` does not divide evenly.
    let function = (offset / function_size < stress_function_count(k)
        && offset % function_size < function_size - FUNCTION_GAP)
        .then_some((offset / function_size) as usize);
    let trap_code =
        (offset % TRAP_EVERY == TRAP_AT).then(|| stress_trap_code(k, offset / TRAP_EVERY));
    Some(Expected {
        function,
        source_offset: k as u32 * 100_000 + offset / SRCLOC_EVERY,
        trap_code,
    })
}

const NOT_YET: u8 = 0;
const REGISTERING: u8 = 1;
const REGISTERED: u8 = 2;
const UNREGISTERING: u8 = 3;
const GONE: u8 = 4;

#[test]
fn five_thousand_regions_churned_by_two_threads_while_a_third_looks_up() {
    let states: Arc<Vec<AtomicU8>> = Arc::new(
        (0..STRESS_MODULES)
            .map(|_| AtomicU8::new(NOT_YET))
            .collect(),
    );
    let writers_done = Arc::new(AtomicBool::new(false));

    let writers: Vec<_> = (0..2)
        .map(|parity| {
            let states = Arc::clone(&states);
            std::thread::spawn(move || {
                let mut random = Xorshift(0x9e37_79b9_7f4a_7c15 + parity as u64);
                let mut live = Vec::new();
                // Up to 1,500 live per thread, so thousands of regions are registered at once.
                let window = 1_500;
                let drop_one = |live: &mut Vec<(usize, _)>, random: &mut Xorshift| {
                    let (k, handle) = live.swap_remove(random.below(live.len()));
                    states[k].store(UNREGISTERING, SeqCst);
                    drop(handle);
                    states[k].store(GONE, SeqCst);
                };
                for k in (parity..STRESS_MODULES).step_by(2) {
                    states[k].store(REGISTERING, SeqCst);
                    let handle = register_code(Arc::new(stress_region(k)));
                    states[k].store(REGISTERED, SeqCst);
                    live.push((k, handle));
                    if live.len() > window || random.below(4) == 0 {
                        drop_one(&mut live, &mut random);
                    }
                }
                while !live.is_empty() {
                    drop_one(&mut live, &mut random);
                }
            })
        })
        .collect();

    let reader = {
        let states = Arc::clone(&states);
        let writers_done = Arc::clone(&writers_done);
        std::thread::spawn(move || {
            let mut random = Xorshift(0x1234_5678_9abc_def1);
            let mut found = 0usize;
            let mut lookups = 0usize;
            while !writers_done.load(SeqCst) || lookups < 100_000 {
                let k = random.below(STRESS_MODULES);
                // Half the probes hit a trap site (if within the region), half anywhere in the slot.
                let offset = if random.below(2) == 0 {
                    (random.below(STRESS_SLOT / TRAP_EVERY as usize) as u32) * TRAP_EVERY + TRAP_AT
                } else {
                    random.below(STRESS_SLOT) as u32
                };
                let pc = STRESS_BASE + k * STRESS_SLOT + offset as usize;
                let expected = stress_expected(k, offset);

                let state_before = states[k].load(SeqCst);
                let (present, detail_ok) = match random.below(3) {
                    0 => match lookup(pc) {
                        None => (false, true),
                        Some(info) => {
                            let ok = expected.as_ref().is_some_and(|e| {
                                info.region.owner == stress_owner(k)
                                    && info.code_offset == offset
                                    && info.function == e.function
                                    && info.source_offset == Some(e.source_offset)
                                    && info.trap_code == e.trap_code
                            });
                            (true, ok)
                        }
                    },
                    1 => match lookup_trap_signal_safe(pc) {
                        None => (false, true),
                        Some((trap_code, owner)) => {
                            let ok = expected.as_ref().is_some_and(|e| {
                                owner == stress_owner(k) && trap_code == e.trap_code
                            });
                            (true, ok)
                        }
                    },
                    _ => {
                        let present = is_registered_code_signal_safe(pc);
                        (present, !present || expected.is_some())
                    }
                };
                let state_after = states[k].load(SeqCst);

                assert!(
                    detail_ok,
                    "wrong answer for module {k} at offset {offset:#x}"
                );
                if state_before == REGISTERED && state_after == REGISTERED {
                    assert_eq!(present, expected.is_some(), "module {k} offset {offset:#x}");
                }
                if state_before == GONE || (state_before == NOT_YET && state_after == NOT_YET) {
                    assert!(!present, "module {k} found while unregistered");
                }
                found += present as usize;
                lookups += 1;
            }
            (found, lookups)
        })
    };

    for writer in writers {
        writer.join().unwrap();
    }
    writers_done.store(true, SeqCst);
    let (found, lookups) = reader.join().unwrap();
    assert!(
        found > 0,
        "the reader never hit a registered region in {lookups} lookups"
    );
    assert!(states.iter().all(|state| state.load(SeqCst) == GONE));
    assert!(!is_registered_code_signal_safe(STRESS_BASE));
}

/// Filled in by the test below and read by its signal handler.
static HANDLER_PROBE_PC: AtomicUsize = AtomicUsize::new(0);
static HANDLER_RUNS: AtomicUsize = AtomicUsize::new(0);
static HANDLER_WRONG_ANSWERS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn probe_registry_from_signal_handler(_signal: libc::c_int) {
    let pc = HANDLER_PROBE_PC.load(SeqCst);
    let right = lookup_trap_signal_safe(pc) == Some((Some(77), 0x51a1))
        && is_registered_code_signal_safe(pc)
        && lookup_trap_signal_safe(pc + 0x1000).is_none();
    if !right {
        HANDLER_WRONG_ANSWERS.fetch_add(1, SeqCst);
    }
    HANDLER_RUNS.fetch_add(1, SeqCst);
}

#[test]
fn signal_handler_lookups_interrupting_a_writer_neither_block_nor_err() {
    let base = 0x6300_0000_0000usize;
    let probed = register_code(Arc::new(CodeRegion {
        start: base,
        len: 0x100,
        traps: vec![TrapSite {
            code_offset: 0x10,
            code: 77,
        }],
        owner: 0x51a1,
        ..CodeRegion::default()
    }));
    HANDLER_PROBE_PC.store(base + 0x10, SeqCst);

    // SAFETY: a zeroed `sigaction` is a valid starting point; the handler only touches atomics and the
    // async-signal-safe registry functions; SIGUSR2 is used by nothing else in this test binary.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = probe_registry_from_signal_handler as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR2, &action, std::ptr::null_mut()),
            0
        );
    }

    let writer_thread = Arc::new(AtomicUsize::new(0));
    let stop_signalling = Arc::new(AtomicBool::new(false));
    let signaller_stopped = Arc::new(AtomicBool::new(false));

    let writer = {
        let writer_thread = Arc::clone(&writer_thread);
        let stop_signalling = Arc::clone(&stop_signalling);
        let signaller_stopped = Arc::clone(&signaller_stopped);
        std::thread::spawn(move || {
            // SAFETY: `pthread_self` has no preconditions.
            writer_thread.store(unsafe { libc::pthread_self() } as usize, SeqCst);
            // Churn until the handler has interrupted us many times (at least 3,000 rounds either way).
            let mut round = 0usize;
            while round < 3_000 || HANDLER_RUNS.load(SeqCst) < 500 {
                let i = round;
                round += 1;
                let handle = register_code(Arc::new(CodeRegion {
                    start: base + 0x1_0000 + (i % 16) * 0x100,
                    len: 0x100,
                    ..CodeRegion::default()
                }));
                drop(handle);
            }
            // Stay alive until the signaller has stopped, so it never signals a finished thread.
            stop_signalling.store(true, SeqCst);
            while !signaller_stopped.load(SeqCst) {
                std::thread::yield_now();
            }
        })
    };

    let signaller = {
        let writer_thread = Arc::clone(&writer_thread);
        std::thread::spawn(move || {
            while writer_thread.load(SeqCst) == 0 {
                std::thread::yield_now();
            }
            let target = writer_thread.load(SeqCst) as libc::pthread_t;
            let mut sent = 0usize;
            while !stop_signalling.load(SeqCst) {
                // SAFETY: the writer thread stays alive until `signaller_stopped` is set, after this loop.
                assert_eq!(unsafe { libc::pthread_kill(target, libc::SIGUSR2) }, 0);
                sent += 1;
                std::thread::yield_now();
            }
            signaller_stopped.store(true, SeqCst);
            sent
        })
    };

    let sent = signaller.join().unwrap();
    writer.join().unwrap();
    drop(probed);
    assert!(sent > 0 && HANDLER_RUNS.load(SeqCst) > 0);
    assert_eq!(HANDLER_WRONG_ANSWERS.load(SeqCst), 0);
}
