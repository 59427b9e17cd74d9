//! The storage of memories, tables and globals: what compiled code reaches
//! through the vmctx. A store owns each of them (boxed, so they never
//! move); the public handles in `crate::api::handles` name them by index.
//!
//! A memory is one virtual reservation that never moves: its first
//! `length` bytes are read-write, the rest of the reservation and the guard
//! after it are inaccessible, so out-of-bounds accesses fault. A table is a
//! growable array of pointer-sized elements (a `*const VMFuncRef` for
//! funcref, a host handle for externref, 0 for null). A global is 16 bytes of
//! storage.
//!
//! Nothing here is `Sync`: the store that owns an item is used by one
//! thread at a time, and every access (guest code, builtins, handles) runs
//! under that store, so the interior mutability is never raced. Growth
//! asks the store's `StoreResources` first.

use crate::store::limits::StoreResources;
use crate::{Engine, Error};
use backstop_jit::{GlobalType, MemoryType, TableType};
use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub(crate) const WASM_PAGE: usize = 65536;
/// The most elements a table may have, whatever its declared maximum.
pub(crate) const MAX_TABLE_ELEMENTS: u32 = 10_000_000;

/// The contents of a memory at one moment, for `Store::reset`: its size,
/// and the 4 KiB chunks that were not all zero.
pub(crate) struct MemoryChunks {
    pub(crate) bytes: usize,
    chunks: Vec<(usize, Box<[u8]>)>,
}

const SNAPSHOT_CHUNK: usize = 4096;
const PAGE: usize = 4096;
/// Up to this size, reset asks the kernel which pages are resident
/// (`mincore`) and zeroes just those with `memset`, keeping them mapped so
/// the next run does not fault them in again; above it, `madvise` drops the
/// whole memory (cost follows the pages touched; they fault in again later).
const RESET_MEMSET_LIMIT: usize = 64 << 20;

/// Zeroes the pages of `[base, base + len)` that are resident (touched
/// since they were last dropped); pages never touched already read as zero,
/// and writing them would only allocate them.
///
/// # Safety
/// The range must be mapped read-write, page-aligned, and not in use.
unsafe fn zero_resident_pages(base: *mut u8, len: usize) {
    let pages = len.div_ceil(PAGE);
    let mut resident = vec![0u8; pages];
    // SAFETY: the range is mapped (contract); `resident` has a byte per page.
    let known = unsafe { libc::mincore(base.cast(), len, resident.as_mut_ptr()) } == 0;
    for (page, state) in resident.iter().enumerate() {
        if !known || state & 1 != 0 {
            let start = page * PAGE;
            // SAFETY: within the range, per the contract.
            unsafe { std::ptr::write_bytes(base.add(start), 0, PAGE.min(len - start)) };
        }
    }
}

/// What compiled code reads of a memory: `{ base, length_bytes }`.
#[repr(C)]
pub(crate) struct VMMemoryDefinition {
    pub(crate) base: *mut u8,
    pub(crate) length: AtomicUsize,
}

/// A memory's mapping: unmapped when the last owner (the memory, or the
/// guest stack that lives in its tail) lets go. Plain integers, so it is
/// `Send + Sync` without a promise of ours.
struct Mapping {
    base: usize,
    size: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base` and `size` are those of an `mmap` made for this
        // value alone, and its last owner is gone.
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, self.size);
        }
    }
}

/// A linear memory's storage.
pub(crate) struct MemoryStorage {
    definition: VMMemoryDefinition,
    mapping: Arc<Mapping>,
    ty: MemoryType,
    max_pages: u32,
    /// Room for the store's guest stack at the end of the mapping, past
    /// the reservation and its guard (offset from `base`, length), and
    /// whether a stack has taken it (see `new_with_stack_room`).
    stack_room: Option<(usize, usize)>,
    stack_room_taken: Cell<bool>,
    /// The owning store's counts, asked before every grow.
    resources: *const StoreResources,
}

impl MemoryStorage {
    /// A new memory of type `ty` with `ty.minimum` zeroed pages, counted
    /// against `resources` (which must outlive it), and `stack_room` bytes
    /// (whole pages) more at the end of the mapping, past the reservation
    /// and a guard of at least a page, for the store's guest stack
    /// (`take_stack_room`). One mapping for both saves kernel mappings: the
    /// memory's trailing guard is the stack's guard. Guest accesses cannot
    /// reach the room: compiled code checks bounds explicitly wherever an
    /// access could pass the reservation and guard.
    pub(crate) fn new(
        engine: &Engine,
        ty: MemoryType,
        stack_room: usize,
        resources: &StoreResources,
    ) -> Result<MemoryStorage, Error> {
        let config = engine.config();
        let reservation = config.memory_layout.reservation;
        let limit_pages = (reservation / WASM_PAGE as u64).min(u64::from(config.max_memory_pages));
        let max_pages = u64::from(ty.maximum.unwrap_or(65536)).min(limit_pages) as u32;
        if ty.minimum > max_pages {
            return Err(Error::Resource(format!(
                "memory needs {} pages at instantiation, above the limit of {} pages",
                ty.minimum, max_pages
            )));
        }
        let page = backstop_asm::page_size();
        let guarded = (reservation + config.memory_layout.guard) as usize;
        let room_start = guarded
            .max(reservation as usize + page)
            .next_multiple_of(page);
        let stack_room = stack_room.next_multiple_of(page);
        let mapping_size = if stack_room == 0 {
            guarded
        } else {
            room_start.checked_add(stack_room).ok_or_else(|| {
                Error::Resource("a memory reservation and stack overflow usize".into())
            })?
        };
        // SAFETY: a fresh anonymous reservation; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapping_size,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(crate::mappings::reservation_failure(
                &format!("reserve {mapping_size} bytes for a linear memory"),
                mapping_size as u64,
                std::io::Error::last_os_error(),
            ));
        }
        let memory = MemoryStorage {
            definition: VMMemoryDefinition {
                base: base.cast(),
                length: AtomicUsize::new(0),
            },
            mapping: Arc::new(Mapping {
                base: base as usize,
                size: mapping_size,
            }),
            ty,
            max_pages,
            stack_room: (stack_room > 0).then_some((room_start, stack_room)),
            stack_room_taken: Cell::new(false),
            resources,
        };
        if ty.minimum > 0 {
            if memory.over_limit(ty.minimum) {
                return Err(Error::Resource(format!(
                    "a memory of {} pages is above the store's limit of {} bytes of memory",
                    ty.minimum,
                    resources.limits().memory_bytes.unwrap_or_default()
                )));
            }
            if memory.grow_pages(ty.minimum).is_none() {
                return Err(crate::mappings::mapping_failure(
                    &format!("commit {} pages of linear memory", ty.minimum),
                    std::io::Error::last_os_error(),
                ));
            }
        }
        Ok(memory)
    }

    /// Whether `pages` more pages would pass the store's memory limit.
    fn over_limit(&self, pages: u32) -> bool {
        // SAFETY: the store owns both and outlives this memory.
        let resources = unsafe { &*self.resources };
        let used = resources.usage().memory_bytes;
        resources
            .limits()
            .memory_bytes
            .is_some_and(|limit| used + u64::from(pages) * WASM_PAGE as u64 > limit)
    }

    pub(crate) fn ty(&self) -> MemoryType {
        self.ty
    }

    /// The guest stack in this memory's stack room, if it has room for
    /// `usable_size` bytes not taken yet.
    pub(crate) fn take_stack_room(
        &self,
        usable_size: usize,
    ) -> Option<std::io::Result<backstop_asm::GuestStack>> {
        let (offset, length) = self.stack_room?;
        if usable_size > length || self.stack_room_taken.replace(true) {
            return None;
        }
        let bottom = std::ptr::NonNull::new(self.base().wrapping_add(offset))?;
        let keepalive: Box<dyn Send + Sync> = Box::new(self.mapping.clone());
        // SAFETY: `[bottom - page, bottom + length)` lies in this memory's
        // mapping (made with the room at its end, past the reservation and
        // its guard, which stay PROT_NONE); the room is handed out once
        // (`stack_room_taken`), guest accesses never reach it, and the
        // keepalive keeps the mapping.
        Some(unsafe {
            backstop_asm::GuestStack::in_reservation(
                bottom,
                usable_size,
                backstop_asm::page_size(),
                keepalive,
            )
        })
    }

    pub(crate) fn size_pages(&self) -> u32 {
        (self.data_size() / WASM_PAGE) as u32
    }

    pub(crate) fn data_size(&self) -> usize {
        self.definition.length.load(Ordering::Acquire)
    }

    pub(crate) fn base(&self) -> *mut u8 {
        self.definition.base
    }

    pub(crate) fn definition_ptr(&self) -> *const VMMemoryDefinition {
        &self.definition
    }

    pub(crate) fn maximum_pages(&self) -> u32 {
        self.max_pages
    }

    /// Grows by `delta` pages if the type, the engine's limit and the
    /// store's limit allow; returns the old size in pages (`memory.grow`).
    pub(crate) fn grow_pages(&self, delta: u32) -> Option<u32> {
        let old_bytes = self.data_size();
        let old_pages = (old_bytes / WASM_PAGE) as u32;
        let new_pages = old_pages.checked_add(delta)?;
        if new_pages > self.max_pages {
            return None;
        }
        if delta > 0 {
            let new_bytes = new_pages as usize * WASM_PAGE;
            let added = (new_bytes - old_bytes) as u64;
            // SAFETY: the store owns both and outlives this memory.
            let resources = unsafe { &*self.resources };
            if !resources.grow_memory(added) {
                return None;
            }
            // SAFETY: the new range lies inside the reservation (at most
            // `max_pages`, which the reservation covers).
            let rc = unsafe {
                libc::mprotect(
                    self.base().add(old_bytes).cast(),
                    new_bytes - old_bytes,
                    libc::PROT_READ | libc::PROT_WRITE,
                )
            };
            if rc != 0 {
                resources.shrink_memory(added);
                return None;
            }
            self.definition.length.store(new_bytes, Ordering::Release);
        }
        Some(old_pages)
    }

    fn check_range(&self, offset: usize, len: usize) -> Result<(), Error> {
        let size = self.data_size();
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(Error::MemoryAccess(format!(
                "{len} bytes at offset {offset} in a memory of {size} bytes"
            ))),
        }
    }

    /// The non-zero chunks, for `Store::reset` after a start function.
    pub(crate) fn snapshot_chunks(&self) -> MemoryChunks {
        let data = self.data();
        let chunks = data
            .chunks(SNAPSHOT_CHUNK)
            .enumerate()
            .filter(|(_, chunk)| chunk.iter().any(|b| *b != 0))
            .map(|(i, chunk)| (i * SNAPSHOT_CHUNK, Box::from(chunk)))
            .collect();
        MemoryChunks {
            bytes: data.len(),
            chunks,
        }
    }

    pub(crate) fn restore_chunks(&self, saved: &MemoryChunks) -> Result<(), Error> {
        self.restore(
            saved.bytes,
            saved
                .chunks
                .iter()
                .map(|(offset, bytes)| (*offset, &bytes[..])),
        )
    }

    /// Sets the size to `keep` bytes, all zero, then writes each
    /// `(offset, bytes)`. Accessible pages beyond `keep` become
    /// inaccessible again and go back to the kernel.
    pub(crate) fn restore<'a>(
        &self,
        keep: usize,
        writes: impl Iterator<Item = (usize, &'a [u8])>,
    ) -> Result<(), Error> {
        let base = self.base();
        let length = self.data_size();
        let failed = |what: &str| {
            Error::Resource(format!(
                "cannot reset a linear memory ({what}): {}",
                std::io::Error::last_os_error()
            ))
        };
        // SAFETY: the store is not running guest code (reset takes it
        // exclusively); every range lies inside the reservation.
        unsafe {
            let resources = &*self.resources;
            if length > keep {
                let tail = base.add(keep).cast();
                if libc::mprotect(tail, length - keep, libc::PROT_NONE) != 0 {
                    return Err(failed("mprotect"));
                }
                libc::madvise(tail, length - keep, libc::MADV_DONTNEED);
                resources.shrink_memory((length - keep) as u64);
            } else if length < keep {
                // Back to the size it had at instantiation: a reset never
                // refuses for the limit.
                if libc::mprotect(
                    base.add(length).cast(),
                    keep - length,
                    libc::PROT_READ | libc::PROT_WRITE,
                ) != 0
                {
                    return Err(failed("mprotect"));
                }
                resources.force_grow_memory((keep - length) as u64);
            }
            self.definition.length.store(keep, Ordering::Release);
            if keep <= RESET_MEMSET_LIMIT {
                zero_resident_pages(base, keep);
            } else if libc::madvise(base.cast(), keep, libc::MADV_DONTNEED) != 0 {
                return Err(failed("madvise"));
            }
            for (offset, bytes) in writes {
                if offset.checked_add(bytes.len()).is_none_or(|end| end > keep) {
                    return Err(Error::Resource(
                        "a reset image lies outside the memory".into(),
                    ));
                }
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(offset), bytes.len());
            }
        }
        Ok(())
    }

    /// Copies `buffer.len()` bytes at `offset` out of the memory.
    pub(crate) fn read(&self, offset: usize, buffer: &mut [u8]) -> Result<(), Error> {
        self.check_range(offset, buffer.len())?;
        // SAFETY: the range is inside the accessible part.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base().add(offset),
                buffer.as_mut_ptr(),
                buffer.len(),
            );
        }
        Ok(())
    }

    /// Copies `data` into the memory at `offset`.
    pub(crate) fn write(&self, offset: usize, data: &[u8]) -> Result<(), Error> {
        self.check_range(offset, data.len())?;
        // SAFETY: the range is inside the accessible part.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.base().add(offset), data.len());
        }
        Ok(())
    }

    /// The accessible bytes.
    pub(crate) fn data(&self) -> &[u8] {
        // SAFETY: the accessible part is mapped read-write; callers hold
        // the store, so no guest code writes meanwhile.
        unsafe { std::slice::from_raw_parts(self.base(), self.data_size()) }
    }

    /// The accessible bytes, mutably. The caller must hold the store
    /// exclusively (or be a builtin of its running guest) for the slice's
    /// lifetime, so nothing else reads or writes them meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn data_mut(&self) -> &mut [u8] {
        // SAFETY: as above: exclusive use is the caller's contract (every
        // public path takes `&mut` of the store).
        unsafe { std::slice::from_raw_parts_mut(self.base(), self.data_size()) }
    }
}

/// What compiled code reads of a table: `{ elements, length }`.
#[repr(C)]
pub(crate) struct VMTable {
    elements: *mut usize,
    length: u32,
}

/// A table's storage: raw elements (a `*const VMFuncRef`, a host handle,
/// or 0 for null) and the header compiled code reads.
pub(crate) struct TableStorage {
    vm: UnsafeCell<VMTable>,
    elements: UnsafeCell<Vec<usize>>,
    ty: TableType,
    resources: *const StoreResources,
}

impl TableStorage {
    /// A table of type `ty` with `ty.minimum` elements set to `init`,
    /// counted against `resources` (which must outlive it).
    pub(crate) fn new(
        ty: TableType,
        init: usize,
        resources: &StoreResources,
    ) -> Result<TableStorage, Error> {
        if ty.minimum > MAX_TABLE_ELEMENTS {
            return Err(Error::Resource(format!(
                "table of {} elements exceeds the limit of {MAX_TABLE_ELEMENTS}",
                ty.minimum
            )));
        }
        if !resources.grow_table(u64::from(ty.minimum)) {
            return Err(Error::Resource(format!(
                "a table of {} elements is above the store's limit of {} table elements",
                ty.minimum,
                resources.limits().table_elements.unwrap_or_default()
            )));
        }
        let mut elements = vec![init; ty.minimum as usize];
        let vm = VMTable {
            elements: elements.as_mut_ptr(),
            length: ty.minimum,
        };
        Ok(TableStorage {
            vm: UnsafeCell::new(vm),
            elements: UnsafeCell::new(elements),
            ty,
            resources,
        })
    }

    pub(crate) fn ty(&self) -> TableType {
        self.ty
    }

    /// The current number of elements.
    pub(crate) fn size(&self) -> u32 {
        // SAFETY: reading the length; see the file header.
        unsafe { (*self.vm.get()).length }
    }

    pub(crate) fn vm_ptr(&self) -> *mut VMTable {
        self.vm.get()
    }

    /// A copy of every element, for reset.
    pub(crate) fn elements_raw(&self) -> Vec<usize> {
        // SAFETY: see the file header.
        unsafe { (*self.elements.get()).clone() }
    }

    /// Puts back a copy made by `elements_raw` (size included).
    pub(crate) fn restore_raw(&self, saved: &[usize]) {
        // SAFETY: the resources outlive the table.
        let resources = unsafe { &*self.resources };
        let old = u64::from(self.size());
        let new = saved.len() as u64;
        if old > new {
            resources.shrink_table(old - new);
        } else {
            resources.force_grow_table(new - old);
        }
        // SAFETY: see the file header; the VMTable is updated to the
        // (possibly moved) buffer before any code reads it again.
        unsafe {
            let elements = &mut *self.elements.get();
            elements.clear();
            elements.extend_from_slice(saved);
            let vm = &mut *self.vm.get();
            vm.elements = elements.as_mut_ptr();
            vm.length = saved.len() as u32;
        }
    }

    pub(crate) fn get_raw(&self, index: u32) -> Option<usize> {
        // SAFETY: see the file header; the index is checked.
        unsafe { (&*self.elements.get()).get(index as usize).copied() }
    }

    pub(crate) fn set_raw(&self, index: u32, raw: usize) -> bool {
        // SAFETY: see the file header; the index is checked.
        unsafe {
            match (&mut *self.elements.get()).get_mut(index as usize) {
                Some(slot) => {
                    *slot = raw;
                    true
                }
                None => false,
            }
        }
    }

    /// Sets every element to `raw` (a new table's initial value).
    pub(crate) fn fill_all(&self, raw: usize) {
        // SAFETY: see the file header.
        unsafe { (&mut *self.elements.get()).fill(raw) }
    }

    /// Grows by `delta` elements set to `init` if the type, the engine's
    /// limit and the store's limit allow; returns the old size.
    pub(crate) fn grow_raw(&self, delta: u32, init: usize) -> Option<u32> {
        let old = self.size();
        let new = old.checked_add(delta)?;
        let max = self.ty.maximum.unwrap_or(u32::MAX).min(MAX_TABLE_ELEMENTS);
        if new > max {
            return None;
        }
        // SAFETY: the resources outlive the table.
        if !unsafe { &*self.resources }.grow_table(u64::from(delta)) {
            return None;
        }
        // SAFETY: see the file header. The VMTable is updated to the
        // (possibly moved) buffer before any code can read it again.
        unsafe {
            let elements = &mut *self.elements.get();
            elements.resize(new as usize, init);
            let vm = &mut *self.vm.get();
            vm.elements = elements.as_mut_ptr();
            vm.length = new;
        }
        Some(old)
    }

    pub(crate) fn fill_raw(&self, dst: u32, raw: usize, len: u32) -> bool {
        // SAFETY: see the file header; the range is checked.
        unsafe {
            let elements = &mut *self.elements.get();
            match (dst as usize).checked_add(len as usize) {
                Some(end) if end <= elements.len() => {
                    elements[dst as usize..end].fill(raw);
                    true
                }
                _ => false,
            }
        }
    }

    /// Copies `len` elements from `src` (of `src_table`) to `dst` in `self`.
    pub(crate) fn copy_raw(&self, src_table: &TableStorage, dst: u32, src: u32, len: u32) -> bool {
        let (dst, src, len) = (dst as usize, src as usize, len as usize);
        let dst_len = self.size() as usize;
        let src_len = src_table.size() as usize;
        if dst.checked_add(len).is_none_or(|e| e > dst_len)
            || src.checked_add(len).is_none_or(|e| e > src_len)
        {
            return false;
        }
        // SAFETY: both ranges were checked; `ptr::copy` allows overlap when
        // both are the same table.
        unsafe {
            let from = (*src_table.elements.get()).as_ptr().add(src);
            let to = (*self.elements.get()).as_mut_ptr().add(dst);
            std::ptr::copy(from, to, len);
        }
        true
    }

    /// Writes `items` at `dst`, or changes nothing and returns false when
    /// they do not fit.
    pub(crate) fn init_raw(&self, dst: u32, items: &[usize]) -> bool {
        // SAFETY: see the file header; the range is checked.
        unsafe {
            let elements = &mut *self.elements.get();
            match (dst as usize).checked_add(items.len()) {
                Some(end) if end <= elements.len() => {
                    elements[dst as usize..end].copy_from_slice(items);
                    true
                }
                _ => false,
            }
        }
    }
}

/// 16 bytes of global storage, aligned for a v128.
#[repr(C, align(16))]
pub(crate) struct GlobalStorage {
    value: UnsafeCell<u128>,
    ty: GlobalType,
}

impl GlobalStorage {
    pub(crate) fn new(ty: GlobalType, raw: u128) -> GlobalStorage {
        GlobalStorage {
            value: UnsafeCell::new(raw),
            ty,
        }
    }

    pub(crate) fn ty(&self) -> GlobalType {
        self.ty
    }

    pub(crate) fn storage_ptr(&self) -> *mut u128 {
        self.value.get()
    }

    pub(crate) fn get_raw(&self) -> u128 {
        // SAFETY: see the file header.
        unsafe { *self.storage_ptr() }
    }

    pub(crate) fn set_raw(&self, raw: u128) {
        // SAFETY: see the file header.
        unsafe { *self.storage_ptr() = raw }
    }
}

#[cfg(test)]
mod tests {
    //! Tables and globals are plain Rust storage behind `UnsafeCell`s and
    //! raw pointers, so these run under Miri too (RELIABILITY.md): they
    //! check the header compiled code reads follows every reallocation and
    //! that overlapping copies within one table are sound.
    use super::*;
    use crate::store::limits::StoreLimits;
    use backstop_jit::ValType;

    fn table(minimum: u32, maximum: Option<u32>, resources: &StoreResources) -> TableStorage {
        let ty = TableType {
            element: ValType::FuncRef,
            minimum,
            maximum,
        };
        TableStorage::new(ty, 7, resources).unwrap()
    }

    /// What compiled code would read through the table's header.
    fn seen_by_compiled_code(table: &TableStorage) -> Vec<usize> {
        // SAFETY: the header points at `length` live elements (the
        // property under test), and nothing writes while we read.
        unsafe {
            let vm = &*table.vm_ptr();
            std::slice::from_raw_parts(vm.elements, vm.length as usize).to_vec()
        }
    }

    #[test]
    fn the_header_follows_the_elements_through_growth() {
        let resources = StoreResources::new(StoreLimits::new());
        let table = table(2, Some(40), &resources);
        assert!(table.set_raw(1, 9));
        for round in 0..5u32 {
            assert_eq!(table.grow_raw(7, round as usize), Some(2 + 7 * round));
            assert_eq!(seen_by_compiled_code(&table), table.elements_raw());
        }
        assert_eq!(table.grow_raw(10, 0), None, "above the maximum");
        assert_eq!(table.size(), 37);
        assert_eq!(table.get_raw(1), Some(9));
        assert_eq!(table.get_raw(37), None);
        assert!(!table.set_raw(37, 1));
    }

    #[test]
    fn copies_within_one_table_may_overlap() {
        let resources = StoreResources::new(StoreLimits::new());
        let table = table(8, None, &resources);
        assert!(table.init_raw(0, &[1, 2, 3, 4, 5, 6, 7, 8]));
        assert!(table.copy_raw(&table, 2, 0, 5));
        assert_eq!(table.elements_raw(), [1, 2, 1, 2, 3, 4, 5, 8]);
        assert!(table.copy_raw(&table, 0, 3, 5));
        assert_eq!(table.elements_raw(), [2, 3, 4, 5, 8, 4, 5, 8]);
        assert!(!table.copy_raw(&table, 4, 0, 5), "out of bounds");
        assert!(!table.init_raw(6, &[0, 0, 0]));
        assert!(table.fill_raw(1, 0, 7));
        assert!(!table.fill_raw(1, 0, 8));
        assert_eq!(table.elements_raw(), [2, 0, 0, 0, 0, 0, 0, 0]);
        table.restore_raw(&[5; 3]);
        assert_eq!(seen_by_compiled_code(&table), [5, 5, 5]);
    }

    #[test]
    fn tables_count_against_the_store_limit() {
        let resources = StoreResources::new(StoreLimits::new().table_elements(10));
        let first = table(6, None, &resources);
        assert!(TableStorage::new(first.ty(), 0, &resources).is_err());
        assert_eq!(first.grow_raw(5, 0), None);
        assert_eq!(first.grow_raw(4, 0), Some(6));
        assert_eq!(resources.usage().table_elements, 10);
    }

    #[test]
    fn globals_hold_sixteen_bytes() {
        let ty = GlobalType {
            content: ValType::V128,
            mutable: true,
        };
        let global = GlobalStorage::new(ty, u128::MAX - 1);
        assert_eq!(global.get_raw(), u128::MAX - 1);
        // SAFETY: compiled code writes through this pointer the same way.
        unsafe { *global.storage_ptr() = 3 };
        assert_eq!(global.get_raw(), 3);
        global.set_raw(u128::MAX);
        assert_eq!(global.get_raw(), u128::MAX);
        assert_eq!(global.storage_ptr() as usize % 16, 0);
    }
}
