//! Owns the process-wide PC registry: which address ranges hold JIT code and, for each range (a [`CodeRegion`]),
//! its functions, trap sites and source offsets. Fault handlers ask it, from signal context, "is this PC ours,
//! and which trap is it?"; backtraces and trap reports ask it for the rest.
//!
//! # The lock-free scheme
//!
//! Readers see an immutable [`Snapshot`]: an array, sorted by start address, of the published regions' bounds and
//! pointers. `PUBLISHED` holds the current one (null when empty). Writers (register, unregister) serialize on
//! `WRITER`, a plain mutex over the owning `Vec<Arc<CodeRegion>>`; each builds a new snapshot, swaps it into
//! `PUBLISHED`, waits until no reader can still be looking at the old one, and only then frees it (and drops the
//! `Arc` of a removed region).
//!
//! Readers announce themselves in one of two global counters, `ACTIVE_READERS[slot]`, where `slot` is
//! `READER_EPOCH & 1` at the time they arrive. A read is: load the epoch, increment that slot, load `PUBLISHED`,
//! search, decrement the same slot. It never blocks, allocates or panics, so it is async-signal-safe, and a signal
//! handler may nest a read inside an interrupted one (the counters simply count both).
//!
//! After swapping, a writer bumps the epoch and waits for the slot new readers just stopped using to drain to
//! zero, then does the same for the other slot. Why that is enough: every operation on `PUBLISHED`,
//! `READER_EPOCH` and `ACTIVE_READERS` is `SeqCst`, so they fall in one total order. A reader that loaded the old
//! pointer did so before the swap, and its increment, which precedes its load, is before the swap too. Both slots
//! are drained after the swap, so the writer sees that reader's increment until the reader decrements, and the
//! decrement (a release) comes after the reader's last access to the old snapshot; the writer's load of zero
//! acquires it. A counter cannot reach zero early, because each reader decrements the slot it incremented. The
//! epoch bump only keeps the writer from starving: readers that arrive after it go to the other slot, so the slot
//! being drained only has readers already in flight.
//!
//! Readers dereference the `CodeRegion` pointers in a snapshot. Those stay valid because the writer's `Vec` holds
//! an `Arc` of every region in any snapshot a reader may still see: a removed region's `Arc` is dropped only after
//! the wait. [`lookup`] clones that `Arc` inside its read, so a [`PcInfo`] outlives the registration safely.

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};

/// One function inside a [`CodeRegion`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FunctionRange {
    /// Offset of its first byte from the region's start.
    pub start: u32,
    /// Its length in bytes.
    pub len: u32,
    /// The embedder's index for it (e.g. a function index in its module).
    pub index: u32,
    /// A name for backtraces, if it has one.
    pub name: Option<String>,
}

/// An instruction that traps on purpose (e.g. `ud2`), and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrapSite {
    /// Offset of the trapping instruction from the region's start.
    pub code_offset: u32,
    /// The embedder's trap code.
    pub code: u8,
}

/// The code at `code_offset` and onward (until the next `SourceLoc`) comes from `source_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourceLoc {
    /// Offset from the region's start.
    pub code_offset: u32,
    /// Offset in the source the code was compiled from (e.g. a byte offset in a Wasm binary).
    pub source_offset: u32,
}

/// One contiguous range of JIT code, usually one module's, and what is known about it.
///
/// Immutable once registered (it is shared through an `Arc`). The three vectors must be sorted as documented:
/// lookups binary-search them.
#[derive(Debug, Clone, Default)]
pub struct CodeRegion {
    /// Address of the first byte.
    pub start: usize,
    /// Length in bytes; at most `u32::MAX`, since offsets inside it are `u32`.
    pub len: usize,
    /// Sorted by `start`.
    pub functions: Vec<FunctionRange>,
    /// Sorted by `code_offset`.
    pub traps: Vec<TrapSite>,
    /// Sorted by `code_offset`.
    pub srclocs: Vec<SourceLoc>,
    /// An opaque value for the embedder (e.g. a module id or pointer).
    pub owner: usize,
    /// A name for backtraces (e.g. the module's).
    pub name: Option<String>,
}

impl CodeRegion {
    /// One past the last byte. (Registration checks this does not overflow.)
    pub fn end(&self) -> usize {
        self.start.wrapping_add(self.len)
    }

    /// Is `pc` inside this region?
    pub fn contains(&self, pc: usize) -> bool {
        pc >= self.start && pc - self.start < self.len
    }

    /// The index into `functions` of the function that contains `code_offset`. Async-signal-safe.
    pub fn function_at(&self, code_offset: u32) -> Option<usize> {
        let candidate = self
            .functions
            .partition_point(|function| function.start <= code_offset)
            .checked_sub(1)?;
        let function = self.functions.get(candidate)?;
        let offset_in_function = code_offset - function.start;
        (offset_in_function < function.len).then_some(candidate)
    }

    /// The trap code recorded at exactly `code_offset`. Async-signal-safe.
    pub fn trap_code_at(&self, code_offset: u32) -> Option<u8> {
        let index = self
            .traps
            .binary_search_by_key(&code_offset, |trap| trap.code_offset)
            .ok()?;
        self.traps.get(index).map(|trap| trap.code)
    }

    /// The source offset the code at `code_offset` comes from: that of the last `SourceLoc` at or before it.
    /// Async-signal-safe.
    pub fn source_offset_at(&self, code_offset: u32) -> Option<u32> {
        let candidate = self
            .srclocs
            .partition_point(|loc| loc.code_offset <= code_offset)
            .checked_sub(1)?;
        self.srclocs.get(candidate).map(|loc| loc.source_offset)
    }

    /// The name debuggers and profilers show for `function`: its own name (or `function[INDEX]` if it has none),
    /// prefixed with `REGION_NAME::` when the region has a name. Used by the GDB JIT images and the perf map, so
    /// both tools agree.
    pub fn symbol_name(&self, function: &FunctionRange) -> String {
        let base = match &function.name {
            Some(name) => name.clone(),
            None => format!("function[{}]", function.index),
        };
        match &self.name {
            Some(region_name) => format!("{region_name}::{base}"),
            None => base,
        }
    }

    /// Panics with a message if this region breaks the invariants the lookups rely on.
    fn assert_well_formed(&self) {
        assert!(
            self.len <= u32::MAX as usize,
            "code region at {:#x} is {} bytes; offsets are u32, so at most {} bytes",
            self.start,
            self.len,
            u32::MAX
        );
        assert!(
            self.start.checked_add(self.len).is_some(),
            "code region at {:#x} with length {} wraps around the address space",
            self.start,
            self.len
        );
        assert!(
            self.functions.windows(2).all(|w| w[0].start <= w[1].start),
            "code region at {:#x}: functions must be sorted by start",
            self.start
        );
        assert!(
            self.traps
                .windows(2)
                .all(|w| w[0].code_offset <= w[1].code_offset),
            "code region at {:#x}: traps must be sorted by code_offset",
            self.start
        );
        assert!(
            self.srclocs
                .windows(2)
                .all(|w| w[0].code_offset <= w[1].code_offset),
            "code region at {:#x}: srclocs must be sorted by code_offset",
            self.start
        );
    }
}

/// Everything the registry knows about one PC.
#[derive(Debug, Clone)]
pub struct PcInfo {
    /// The region that contains the PC.
    pub region: Arc<CodeRegion>,
    /// Index into `region.functions` of the function that contains the PC, if any does.
    pub function: Option<usize>,
    /// The PC's offset from `region.start`.
    pub code_offset: u32,
    /// The source offset the PC's code comes from, if known.
    pub source_offset: Option<u32>,
    /// The trap code recorded at exactly this PC, if any.
    pub trap_code: Option<u8>,
}

impl PcInfo {
    /// The function that contains the PC, if any does.
    pub fn function_range(&self) -> Option<&FunctionRange> {
        self.function
            .and_then(|index| self.region.functions.get(index))
    }
}

/// Keeps a region registered; dropping it unregisters the region, after waiting until no lookup still sees it.
#[derive(Debug)]
#[must_use = "dropping the handle unregisters the region at once"]
pub struct CodeRegistrationHandle {
    region: Arc<CodeRegion>,
}

impl CodeRegistrationHandle {
    /// The registered region.
    pub fn region(&self) -> &Arc<CodeRegion> {
        &self.region
    }
}

impl Drop for CodeRegistrationHandle {
    fn drop(&mut self) {
        let removed = {
            let mut registered = lock_writer();
            let first_with_same_start =
                registered.partition_point(|region| region.start < self.region.start);
            let position = registered[first_with_same_start..]
                .iter()
                .position(|region| Arc::ptr_eq(region, &self.region))
                .map(|position| first_with_same_start + position)
                .expect("a registered region is in the writer's list until its handle drops");
            let removed = registered.remove(position);
            publish(&registered);
            removed
        };
        // Only now, after `publish` waited out every reader of the old snapshot, may the region be freed.
        drop(removed);
    }
}

/// Publishes `region` for lookups until the returned handle drops.
///
/// # Panics
/// If `region` overlaps a registered region (two regions cannot own one PC), if its length exceeds `u32::MAX` or
/// wraps the address space, or if its functions, traps or srclocs are not sorted.
///
/// Not async-signal-safe: it locks, allocates and may wait briefly for concurrent lookups.
pub fn register_code(region: Arc<CodeRegion>) -> CodeRegistrationHandle {
    region.assert_well_formed();
    let overlapping = {
        let mut registered = lock_writer();
        let insert_at = registered.partition_point(|other| other.start <= region.start);
        let overlapping = [insert_at.checked_sub(1), Some(insert_at)]
            .into_iter()
            .flatten()
            .filter_map(|index| registered.get(index))
            .find(|other| overlaps(other, &region))
            .cloned();
        if overlapping.is_none() {
            registered.insert(insert_at, Arc::clone(&region));
            publish(&registered);
        }
        overlapping
    };
    if let Some(other) = overlapping {
        panic!(
            "code region {:#x}..{:#x} overlaps registered region {:#x}..{:#x}",
            region.start,
            region.end(),
            other.start,
            other.end()
        );
    }
    CodeRegistrationHandle { region }
}

/// Looks up `pc` for a fault handler: the trap code recorded at exactly `pc` (if any) and the region's `owner`,
/// or `None` if no registered region contains `pc`.
///
/// Async-signal-safe: no allocation, no locks, no panics, never blocks.
pub fn lookup_trap_signal_safe(pc: usize) -> Option<(Option<u8>, usize)> {
    with_region_containing(pc, |region| {
        let code_offset = (pc - region.start) as u32;
        (region.trap_code_at(code_offset), region.owner)
    })
}

/// Where `pc` is inside a registered function: that function's embedder index and how far `pc` is from the
/// function's first byte. `None` if no registered function contains `pc` (it is outside every region, or in a gap
/// between a region's functions).
///
/// Async-signal-safe: no allocation, no locks, no panics, never blocks.
pub fn function_offset_signal_safe(pc: usize) -> Option<(u32, u32)> {
    with_region_containing(pc, |region| {
        let code_offset = (pc - region.start) as u32;
        let function = region.functions.get(region.function_at(code_offset)?)?;
        Some((function.index, code_offset - function.start))
    })
    .flatten()
}

/// Is `pc` inside any registered region?
///
/// Async-signal-safe: no allocation, no locks, no panics, never blocks.
pub fn is_registered_code_signal_safe(pc: usize) -> bool {
    with_region_containing(pc, |_| ()).is_some()
}

/// Everything known about `pc`, or `None` if no registered region contains it. May allocate; not for signal
/// handlers.
pub fn lookup(pc: usize) -> Option<PcInfo> {
    let region = with_region_pointer_containing(pc, |pointer| {
        // SAFETY: `pointer` came from `Arc::as_ptr` on an `Arc<CodeRegion>` that the writer's list keeps alive for
        // as long as a reader may see this snapshot (see the file header), so its strong count is at least one
        // here, and incrementing it then taking ownership of that new count is the documented way to clone from a
        // pointer. The pointer is `Arc::as_ptr`'s own, not one made from a `&CodeRegion`: the counts lie outside
        // the `CodeRegion`, where a reference to it gives no access (Miri found this).
        unsafe {
            Arc::increment_strong_count(pointer);
            Arc::from_raw(pointer)
        }
    })?;
    let code_offset = (pc - region.start) as u32;
    Some(PcInfo {
        function: region.function_at(code_offset),
        source_offset: region.source_offset_at(code_offset),
        trap_code: region.trap_code_at(code_offset),
        code_offset,
        region,
    })
}

/// What a reader sees: the published regions, sorted by start, never modified after publication.
struct Snapshot {
    regions: Box<[PublishedRegion]>,
}

/// A region's bounds copied next to its pointer, so the binary search stays within one array.
struct PublishedRegion {
    start: usize,
    end: usize,
    region: *const CodeRegion,
}

/// Keeps each counter on its own cache line, so readers bumping one do not slow the other or `PUBLISHED`.
#[repr(align(64))]
struct CacheLine<T>(T);

/// The current snapshot; null while nothing non-empty is registered.
static PUBLISHED: CacheLine<AtomicPtr<Snapshot>> = CacheLine(AtomicPtr::new(ptr::null_mut()));
/// Which `ACTIVE_READERS` slot an arriving reader uses: `READER_EPOCH & 1`.
static READER_EPOCH: CacheLine<AtomicUsize> = CacheLine(AtomicUsize::new(0));
/// How many reads are in progress, per slot.
static ACTIVE_READERS: [CacheLine<AtomicUsize>; 2] = [
    CacheLine(AtomicUsize::new(0)),
    CacheLine(AtomicUsize::new(0)),
];
/// Serializes writers, and owns an `Arc` of every registered region, sorted by start.
static WRITER: Mutex<Vec<Arc<CodeRegion>>> = Mutex::new(Vec::new());

fn lock_writer() -> MutexGuard<'static, Vec<Arc<CodeRegion>>> {
    // The list is only changed by complete, non-panicking steps, so a poisoned lock still guards a consistent list.
    WRITER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn overlaps(a: &CodeRegion, b: &CodeRegion) -> bool {
    a.len != 0 && b.len != 0 && a.start < b.end() && b.start < a.end()
}

/// Announces a read in one `ACTIVE_READERS` slot, and withdraws it on drop, even if the reader unwinds.
struct ReadAnnouncement {
    slot: usize,
}

impl ReadAnnouncement {
    fn begin() -> Self {
        let slot = READER_EPOCH.0.load(SeqCst) & 1;
        ACTIVE_READERS[slot].0.fetch_add(1, SeqCst);
        ReadAnnouncement { slot }
    }
}

impl Drop for ReadAnnouncement {
    fn drop(&mut self) {
        ACTIVE_READERS[self.slot].0.fetch_sub(1, SeqCst);
    }
}

/// Runs `read` on the registered region that contains `pc`, inside an announced read. Async-signal-safe as long as
/// `read` is.
fn with_region_containing<R>(pc: usize, read: impl FnOnce(&CodeRegion) -> R) -> Option<R> {
    // SAFETY: the writer's list holds an `Arc` of every region in a snapshot a reader may still see, and only
    // drops it after waiting for such readers; the announcement in `with_region_pointer_containing` is live until
    // after `read` returns.
    with_region_pointer_containing(pc, |region| read(unsafe { &*region }))
}

/// `with_region_containing`, handing `read` the region's pointer as `Arc::as_ptr` made it (for `lookup`, which
/// clones the `Arc` from it). The pointer is valid only while `read` runs.
fn with_region_pointer_containing<R>(
    pc: usize,
    read: impl FnOnce(*const CodeRegion) -> R,
) -> Option<R> {
    let _announcement = ReadAnnouncement::begin();
    let snapshot = PUBLISHED.0.load(SeqCst);
    if snapshot.is_null() {
        return None;
    }
    // SAFETY: we announced this read before loading the pointer, so the writer that replaces this snapshot waits
    // for our announcement to be withdrawn before freeing it (see the file header).
    let regions = unsafe { &(*snapshot).regions };
    let candidate = regions
        .partition_point(|published| published.start <= pc)
        .checked_sub(1)?;
    let published = regions.get(candidate)?;
    if pc >= published.end {
        return None;
    }
    Some(read(published.region))
}

/// Replaces the published snapshot with one built from `registered`, then frees the old one once no reader can
/// still see it. Call with the writer lock held.
fn publish(registered: &[Arc<CodeRegion>]) {
    let regions: Box<[PublishedRegion]> = registered
        .iter()
        .filter(|region| region.len != 0)
        .map(|region| PublishedRegion {
            start: region.start,
            end: region.end(),
            region: Arc::as_ptr(region),
        })
        .collect();
    let new_snapshot = if regions.is_empty() {
        ptr::null_mut()
    } else {
        Box::into_raw(Box::new(Snapshot { regions }))
    };
    let old_snapshot = PUBLISHED.0.swap(new_snapshot, SeqCst);
    wait_until_no_reader_sees_an_older_snapshot();
    if !old_snapshot.is_null() {
        // SAFETY: `old_snapshot` came from `Box::into_raw` in an earlier `publish`, is no longer reachable from
        // `PUBLISHED`, and every reader that could have loaded it has finished (we just waited for them).
        drop(unsafe { Box::from_raw(old_snapshot) });
    }
}

/// Waits until every read that began before the latest swap of `PUBLISHED` has ended. See the file header.
fn wait_until_no_reader_sees_an_older_snapshot() {
    for _ in 0..2 {
        let draining_slot = READER_EPOCH.0.fetch_add(1, SeqCst) & 1;
        let mut spins = 0u32;
        while ACTIVE_READERS[draining_slot].0.load(SeqCst) != 0 {
            if spins < 100 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region_with_functions(functions: &[(u32, u32)]) -> CodeRegion {
        CodeRegion {
            start: 0x1000,
            len: 0x1000,
            functions: functions
                .iter()
                .enumerate()
                .map(|(index, &(start, len))| FunctionRange {
                    start,
                    len,
                    index: index as u32,
                    name: None,
                })
                .collect(),
            ..CodeRegion::default()
        }
    }

    #[test]
    fn function_at_respects_gaps_and_ends() {
        let region = region_with_functions(&[(0, 0x10), (0x20, 0x10), (0x30, 0x8)]);
        assert_eq!(region.function_at(0), Some(0));
        assert_eq!(region.function_at(0xf), Some(0));
        assert_eq!(region.function_at(0x10), None);
        assert_eq!(region.function_at(0x20), Some(1));
        assert_eq!(region.function_at(0x30), Some(2));
        assert_eq!(region.function_at(0x38), None);
        assert_eq!(region_with_functions(&[]).function_at(0), None);
    }

    #[test]
    fn trap_and_source_offsets_are_found_by_binary_search() {
        let region = CodeRegion {
            traps: vec![
                TrapSite {
                    code_offset: 4,
                    code: 1,
                },
                TrapSite {
                    code_offset: 9,
                    code: 2,
                },
            ],
            srclocs: vec![
                SourceLoc {
                    code_offset: 2,
                    source_offset: 100,
                },
                SourceLoc {
                    code_offset: 8,
                    source_offset: 140,
                },
            ],
            ..region_with_functions(&[])
        };
        assert_eq!(region.trap_code_at(4), Some(1));
        assert_eq!(region.trap_code_at(5), None);
        assert_eq!(region.trap_code_at(9), Some(2));
        assert_eq!(region.source_offset_at(1), None);
        assert_eq!(region.source_offset_at(2), Some(100));
        assert_eq!(region.source_offset_at(7), Some(100));
        assert_eq!(region.source_offset_at(8), Some(140));
        assert_eq!(region.source_offset_at(u32::MAX), Some(140));
    }

    #[test]
    fn contains_and_overlaps_treat_empty_regions_as_owning_nothing() {
        let region = region_with_functions(&[]);
        assert!(!region.contains(0xfff));
        assert!(region.contains(0x1000));
        assert!(region.contains(0x1fff));
        assert!(!region.contains(0x2000));
        let empty = CodeRegion {
            start: 0x1800,
            len: 0,
            ..CodeRegion::default()
        };
        assert!(!overlaps(&region, &empty));
        let touching = CodeRegion {
            start: 0x2000,
            len: 0x10,
            ..CodeRegion::default()
        };
        assert!(!overlaps(&region, &touching));
        let straddling = CodeRegion {
            start: 0x1ff0,
            len: 0x20,
            ..CodeRegion::default()
        };
        assert!(overlaps(&region, &straddling));
    }

    /// Readers look regions up while a writer registers and drops them:
    /// under Miri this checks the publication protocol for data races and
    /// use-after-free (a reader must never see a region being freed).
    #[test]
    fn lookups_race_registrations_safely() {
        use std::sync::atomic::{AtomicBool, Ordering};
        // Addresses no real code has (this test may run beside others).
        const BASE: usize = usize::MAX / 2;
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        for k in 0..4 {
                            let pc = BASE + k * 0x10000 + 0x10;
                            if let Some((_, owner)) = lookup_trap_signal_safe(pc) {
                                assert_eq!(owner, k);
                            }
                            if let Some((index, offset)) = function_offset_signal_safe(pc) {
                                assert_eq!((index, offset), (0, 0x10));
                            }
                            if let Some(info) = lookup(pc) {
                                assert!(info.function_range().is_some());
                            }
                        }
                    }
                });
            }
            for round in 0..if cfg!(miri) { 6 } else { 200 } {
                let handles: Vec<_> = (0..4)
                    .map(|k| {
                        let region = CodeRegion {
                            start: BASE + k * 0x10000,
                            owner: k,
                            ..region_with_functions(&[(0, 0x100)])
                        };
                        register_code(Arc::new(region))
                    })
                    .collect();
                assert!(is_registered_code_signal_safe(BASE + 0x10));
                if round % 2 == 0 {
                    drop(handles);
                } else {
                    handles.into_iter().rev().for_each(drop);
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
        assert!(!is_registered_code_signal_safe(BASE + 0x10));
    }
}
