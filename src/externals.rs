//! Memories, tables and globals: the storage compiled code reaches through
//! the vmctx, and the public handles (`Memory`, `Table`, `Global`) embedders
//! use to create, share and inspect them.
//!
//! A memory is one virtual reservation that never moves: its first
//! `length` bytes are read-write, the rest of the reservation and the guard
//! after it are inaccessible, so out-of-bounds accesses fault. A table is a
//! growable array of pointer-sized elements (a `*const VMFuncRef` for
//! funcref, a host handle for externref, 0 for null). A global is 16 bytes of
//! storage.
//!
//! Sharing rule: handles are `Send + Sync` so instances that import them can
//! move between threads, but a memory, table or global shared by several
//! instances must not be used by two of them at the same time (as with any
//! non-shared Wasm memory). The runtime does not lock the hot paths.

use crate::group::Group;
use crate::values::Val;
use crate::{Engine, Error};
use backstop_jit::{GlobalType, MemoryType, TableType};
use parking_lot::Mutex;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const WASM_PAGE: usize = 65536;
/// The most elements a table may have, whatever its declared maximum.
const MAX_TABLE_ELEMENTS: u32 = 10_000_000;

/// The contents of a memory at one moment, for `Instance::reset`: its size,
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

pub(crate) struct MemoryInner {
    engine: Engine,
    definition: VMMemoryDefinition,
    mapping_size: usize,
    ty: MemoryType,
    max_pages: u32,
    grow_lock: Mutex<()>,
    /// Room for the owning instance's guest stack at the end of the
    /// mapping, past the reservation and its guard (offset from `base`,
    /// length), and whether a stack has taken it (see `new_with_stack_room`).
    stack_room: Option<(usize, usize)>,
    stack_room_taken: std::sync::atomic::AtomicBool,
}

// SAFETY: the mapping is owned by this value and freed only on drop; the
// length is atomic and growth is serialised by `grow_lock`. Concurrent use of
// the bytes by two instances is excluded by the sharing rule in the header.
unsafe impl Send for MemoryInner {}
// SAFETY: as above.
unsafe impl Sync for MemoryInner {}

impl Drop for MemoryInner {
    fn drop(&mut self) {
        // SAFETY: the mapping was created by `mmap` with this size in
        // `Memory::new` and nothing can use it once the last handle is gone.
        unsafe {
            libc::munmap(self.definition.base.cast(), self.mapping_size);
        }
    }
}

/// A linear memory. Cheap to clone (the clones share the memory).
#[derive(Clone)]
pub struct Memory {
    pub(crate) inner: Arc<MemoryInner>,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Memory({}, {} pages)", self.inner.ty, self.size_pages())
    }
}

impl Memory {
    /// A new memory of type `ty`, with `ty.minimum` zeroed pages.
    pub fn new(engine: &Engine, ty: MemoryType) -> Result<Memory, Error> {
        Memory::new_with_stack_room(engine, ty, 0)
    }

    /// Like `new`, with `stack_room` bytes (whole pages) more at the end of
    /// the mapping, past the reservation and a guard of at least a page,
    /// for the instance's guest stack (`take_stack_room`). One mapping for
    /// both saves the kernel mappings: the memory's trailing guard is the
    /// stack's guard, so an instance costs 3 mappings instead of 4. Guest
    /// accesses cannot reach the room: compiled code checks bounds
    /// explicitly wherever an access could pass the reservation and guard.
    pub(crate) fn new_with_stack_room(
        engine: &Engine,
        ty: MemoryType,
        stack_room: usize,
    ) -> Result<Memory, Error> {
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
        // The stack needs a guard of its own below it when the memory's is
        // less than a page (a memory grown to its whole reservation would
        // otherwise touch the stack).
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
        // SAFETY: a fresh anonymous mapping with no access; nothing else
        // refers to it.
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
        let memory = Memory {
            inner: Arc::new(MemoryInner {
                engine: engine.clone(),
                definition: VMMemoryDefinition {
                    base: base.cast(),
                    length: AtomicUsize::new(0),
                },
                mapping_size,
                ty,
                max_pages,
                grow_lock: Mutex::new(()),
                stack_room: (stack_room > 0).then_some((room_start, stack_room)),
                stack_room_taken: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        if ty.minimum > 0 && memory.grow_pages(ty.minimum).is_none() {
            // Read at once: nothing since the failed mprotect sets errno.
            return Err(crate::mappings::mapping_failure(
                &format!("commit {} pages of linear memory", ty.minimum),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(memory)
    }

    /// The memory's type as declared (its minimum is the initial size).
    pub fn ty(&self) -> MemoryType {
        self.inner.ty
    }

    /// A guest stack in this memory's stack room, if it has one not yet
    /// taken (`new_with_stack_room`); the stack keeps the memory's mapping
    /// alive.
    pub(crate) fn take_stack_room(
        &self,
        usable_size: usize,
    ) -> Option<std::io::Result<backstop_asm::GuestStack>> {
        let (offset, length) = self.inner.stack_room?;
        if usable_size > length || self.inner.stack_room_taken.swap(true, Ordering::SeqCst) {
            return None;
        }
        let bottom = std::ptr::NonNull::new(self.base().wrapping_add(offset))?;
        let keepalive: Box<dyn Send + Sync> = Box::new(self.inner.clone());
        // SAFETY: [bottom, bottom + length) is the room at the end of this
        // memory's mapping, inaccessible until now and used by nothing else
        // (taken once, above); the page below it is inaccessible (the
        // memory's guard, at least a page, never made accessible since
        // the memory grows only within its reservation); `keepalive` holds
        // the mapping until the stack is dropped.
        Some(unsafe {
            backstop_asm::GuestStack::in_reservation(
                bottom,
                usable_size,
                backstop_asm::page_size(),
                keepalive,
            )
        })
    }

    /// The current size in 64 KiB pages.
    pub fn size_pages(&self) -> u32 {
        (self.data_size() / WASM_PAGE) as u32
    }

    /// The current size in bytes.
    pub fn data_size(&self) -> usize {
        self.inner.definition.length.load(Ordering::Acquire)
    }

    pub(crate) fn base(&self) -> *mut u8 {
        self.inner.definition.base
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub(crate) fn definition_ptr(&self) -> *const VMMemoryDefinition {
        &self.inner.definition
    }

    /// The effective maximum in pages (declared maximum, engine limit and
    /// reservation, whichever is smallest).
    pub fn maximum_pages(&self) -> u32 {
        self.inner.max_pages
    }

    /// Grows the memory by `delta` pages; returns the old size in pages, or
    /// `None` if that would pass the maximum.
    pub(crate) fn grow_pages(&self, delta: u32) -> Option<u32> {
        let _guard = self.inner.grow_lock.lock();
        let old_bytes = self.data_size();
        let old_pages = (old_bytes / WASM_PAGE) as u32;
        let new_pages = old_pages.checked_add(delta)?;
        if new_pages > self.inner.max_pages {
            return None;
        }
        if delta > 0 {
            let new_bytes = new_pages as usize * WASM_PAGE;
            // SAFETY: [old_bytes, new_bytes) lies inside the reservation
            // (new_pages <= max_pages <= reservation / page), which this
            // memory owns.
            let rc = unsafe {
                libc::mprotect(
                    self.base().add(old_bytes).cast(),
                    new_bytes - old_bytes,
                    libc::PROT_READ | libc::PROT_WRITE,
                )
            };
            if rc != 0 {
                return None;
            }
            self.inner
                .definition
                .length
                .store(new_bytes, Ordering::Release);
        }
        Some(old_pages)
    }

    /// Grows the memory by `delta` pages and returns the old size in pages.
    pub fn grow(&self, delta: u32) -> Result<u32, Error> {
        self.grow_pages(delta).ok_or_else(|| {
            Error::Resource(format!(
                "cannot grow memory of {} pages by {delta} (maximum {})",
                self.size_pages(),
                self.inner.max_pages
            ))
        })
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

    /// Records the non-zero 4 KiB chunks (reads the whole memory).
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

    /// Puts back what `snapshot_chunks` recorded.
    pub(crate) fn restore_chunks(&self, saved: &MemoryChunks) -> Result<(), Error> {
        self.restore(
            saved.bytes,
            saved
                .chunks
                .iter()
                .map(|(offset, bytes)| (*offset, &bytes[..])),
        )
    }

    /// Resizes the memory to `keep` bytes, zeroes it, and writes `writes`.
    pub(crate) fn restore<'a>(
        &self,
        keep: usize,
        writes: impl Iterator<Item = (usize, &'a [u8])>,
    ) -> Result<(), Error> {
        let _guard = self.inner.grow_lock.lock();
        let base = self.base();
        let length = self.data_size();
        let failed = |what: &str| {
            Error::Resource(format!(
                "cannot reset a linear memory ({what}): {}",
                std::io::Error::last_os_error()
            ))
        };
        // SAFETY: every range below lies inside this memory's reservation;
        // the grow lock keeps the length steady, and the caller (reset)
        // guarantees no guest code of the instance runs meanwhile.
        unsafe {
            if length > keep {
                let tail = base.add(keep).cast();
                if libc::mprotect(tail, length - keep, libc::PROT_NONE) != 0 {
                    return Err(failed("mprotect"));
                }
                libc::madvise(tail, length - keep, libc::MADV_DONTNEED);
            } else if length < keep
                && libc::mprotect(
                    base.add(length).cast(),
                    keep - length,
                    libc::PROT_READ | libc::PROT_WRITE,
                ) != 0
            {
                return Err(failed("mprotect"));
            }
            self.inner.definition.length.store(keep, Ordering::Release);
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

    /// Copies bytes out of the memory.
    pub fn read(&self, offset: usize, buffer: &mut [u8]) -> Result<(), Error> {
        self.check_range(offset, buffer.len())?;
        // SAFETY: the range was checked against the accessible length.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base().add(offset),
                buffer.as_mut_ptr(),
                buffer.len(),
            );
        }
        Ok(())
    }

    /// Copies bytes into the memory.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<(), Error> {
        self.check_range(offset, data.len())?;
        // SAFETY: the range was checked against the accessible length.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.base().add(offset), data.len());
        }
        Ok(())
    }

    /// The accessible bytes. The borrow of the instance (or caller) this
    /// memory was reached through keeps guest code from running meanwhile.
    pub(crate) fn data(&self) -> &[u8] {
        // SAFETY: [base, base + length) is mapped read-write for as long as
        // the memory lives; it never shrinks.
        unsafe { std::slice::from_raw_parts(self.base(), self.data_size()) }
    }

    #[allow(clippy::mut_from_ref)]
    pub(crate) fn data_mut(&self) -> &mut [u8] {
        // SAFETY: as in `data`; exclusivity comes from the `&mut` borrow of
        // the instance or caller through which the caller reached us.
        unsafe { std::slice::from_raw_parts_mut(self.base(), self.data_size()) }
    }
}

/// What compiled code reads of a table: `{ elements, length }`.
#[repr(C)]
pub(crate) struct VMTable {
    elements: *mut usize,
    length: u32,
}

pub(crate) struct TableInner {
    engine: Engine,
    vm: UnsafeCell<VMTable>,
    elements: UnsafeCell<Vec<usize>>,
    ty: TableType,
}

// SAFETY: see the sharing rule in the file header: a table is used by one
// instance's thread at a time, so the unsynchronised cells are never raced.
unsafe impl Send for TableInner {}
// SAFETY: as above.
unsafe impl Sync for TableInner {}

/// A table of references. Cheap to clone (the clones share the table).
#[derive(Clone)]
pub struct Table {
    pub(crate) inner: Arc<TableInner>,
    pub(crate) group: Group,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Table({}, {} elements)", self.inner.ty, self.size())
    }
}

impl Table {
    pub(crate) fn new_raw(engine: &Engine, ty: TableType, init: usize) -> Result<Table, Error> {
        if ty.minimum > MAX_TABLE_ELEMENTS {
            return Err(Error::Resource(format!(
                "table of {} elements exceeds the limit of {MAX_TABLE_ELEMENTS}",
                ty.minimum
            )));
        }
        let mut elements = vec![init; ty.minimum as usize];
        let vm = VMTable {
            elements: elements.as_mut_ptr(),
            length: ty.minimum,
        };
        Ok(Table {
            inner: Arc::new(TableInner {
                engine: engine.clone(),
                vm: UnsafeCell::new(vm),
                elements: UnsafeCell::new(elements),
                ty,
            }),
            group: Group::new(),
        })
    }

    /// A new table of type `ty` with every element set to `init`.
    pub fn new(engine: &Engine, ty: TableType, init: Val) -> Result<Table, Error> {
        let table = Table::new_raw(engine, ty, 0)?;
        let raw = table.val_to_raw(init)?;
        // SAFETY: the table is not shared yet.
        unsafe { (&mut *table.inner.elements.get()).fill(raw) };
        Ok(table)
    }

    fn val_to_raw(&self, val: Val) -> Result<usize, Error> {
        if val.ty() != self.inner.ty.element {
            return Err(Error::InvalidArgument(format!(
                "a {} value cannot be stored in a table of {}",
                val.ty(),
                self.inner.ty.element
            )));
        }
        if let Val::FuncRef(Some(func)) = &val {
            func.check_engine(&self.inner.engine)?;
            self.group.merge(&func.group);
        }
        Ok(val.to_raw() as usize)
    }

    pub fn ty(&self) -> TableType {
        self.inner.ty
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The same storage without a link group, for an instance's own list:
    /// an instance must not hold a group (that would be a cycle).
    pub(crate) fn detached(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            group: Group::new(),
        }
    }

    /// The current number of elements.
    pub fn size(&self) -> u32 {
        // SAFETY: reading the length; see the sharing rule.
        unsafe { (*self.inner.vm.get()).length }
    }

    pub(crate) fn vm_ptr(&self) -> *mut VMTable {
        self.inner.vm.get()
    }

    /// A copy of every element, for reset.
    pub(crate) fn elements_raw(&self) -> Vec<usize> {
        // SAFETY: see the sharing rule.
        unsafe { (*self.inner.elements.get()).clone() }
    }

    /// Puts back a copy made by `elements_raw` (size included).
    pub(crate) fn restore_raw(&self, saved: &[usize]) {
        // SAFETY: see the sharing rule; the VMTable is updated to the
        // (possibly moved) buffer before any code reads it again.
        unsafe {
            let elements = &mut *self.inner.elements.get();
            elements.clear();
            elements.extend_from_slice(saved);
            let vm = &mut *self.inner.vm.get();
            vm.elements = elements.as_mut_ptr();
            vm.length = saved.len() as u32;
        }
    }

    pub(crate) fn get_raw(&self, index: u32) -> Option<usize> {
        // SAFETY: see the sharing rule; the index is checked.
        unsafe { (&*self.inner.elements.get()).get(index as usize).copied() }
    }

    /// Element `index`, or `None` when out of bounds.
    pub fn get(&self, index: u32) -> Option<Val> {
        let raw = self.get_raw(index)?;
        // SAFETY: elements of this table hold values of its element type.
        Some(unsafe { Val::from_raw(raw as u128, self.inner.ty.element) })
    }

    /// Sets element `index`.
    pub fn set(&self, index: u32, val: Val) -> Result<(), Error> {
        let raw = self.val_to_raw(val)?;
        if self.set_raw(index, raw) {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "table index {index} out of bounds (size {})",
                self.size()
            )))
        }
    }

    pub(crate) fn set_raw(&self, index: u32, raw: usize) -> bool {
        // SAFETY: see the sharing rule; the index is checked.
        unsafe {
            match (&mut *self.inner.elements.get()).get_mut(index as usize) {
                Some(slot) => {
                    *slot = raw;
                    true
                }
                None => false,
            }
        }
    }

    /// Grows the table by `delta` elements set to `init`; returns the old size.
    pub fn grow(&self, delta: u32, init: Val) -> Result<u32, Error> {
        let raw = self.val_to_raw(init)?;
        self.grow_raw(delta, raw)
            .ok_or_else(|| Error::Resource(format!("cannot grow table by {delta}")))
    }

    pub(crate) fn grow_raw(&self, delta: u32, init: usize) -> Option<u32> {
        let old = self.size();
        let new = old.checked_add(delta)?;
        let max = self
            .inner
            .ty
            .maximum
            .unwrap_or(u32::MAX)
            .min(MAX_TABLE_ELEMENTS);
        if new > max {
            return None;
        }
        // SAFETY: see the sharing rule. The VMTable is updated to the
        // (possibly moved) buffer before any code can read it again.
        unsafe {
            let elements = &mut *self.inner.elements.get();
            elements.resize(new as usize, init);
            let vm = &mut *self.inner.vm.get();
            vm.elements = elements.as_mut_ptr();
            vm.length = new;
        }
        Some(old)
    }

    pub(crate) fn fill_raw(&self, dst: u32, raw: usize, len: u32) -> bool {
        // SAFETY: see the sharing rule; the range is checked.
        unsafe {
            let elements = &mut *self.inner.elements.get();
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
    pub(crate) fn copy_raw(&self, src_table: &Table, dst: u32, src: u32, len: u32) -> bool {
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
            let from = (&*src_table.inner.elements.get()).as_ptr().add(src);
            let to = (&mut *self.inner.elements.get()).as_mut_ptr().add(dst);
            std::ptr::copy(from, to, len);
        }
        true
    }

    /// Writes `items` at `dst`, or changes nothing and returns false when
    /// they do not fit.
    pub(crate) fn init_raw(&self, dst: u32, items: &[usize]) -> bool {
        // SAFETY: see the sharing rule; the range is checked.
        unsafe {
            let elements = &mut *self.inner.elements.get();
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
pub(crate) struct VMGlobal(UnsafeCell<u128>);

pub(crate) struct GlobalInner {
    engine: Engine,
    value: VMGlobal,
    ty: GlobalType,
}

// SAFETY: see the sharing rule in the file header.
unsafe impl Send for GlobalInner {}
// SAFETY: as above.
unsafe impl Sync for GlobalInner {}

/// A global variable. Cheap to clone (the clones share the global).
#[derive(Clone)]
pub struct Global {
    pub(crate) inner: Arc<GlobalInner>,
    pub(crate) group: Group,
}

impl std::fmt::Debug for Global {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Global({}, {:?})", self.inner.ty, self.get())
    }
}

impl Global {
    pub(crate) fn new_raw(engine: &Engine, ty: GlobalType, raw: u128) -> Global {
        Global {
            inner: Arc::new(GlobalInner {
                engine: engine.clone(),
                value: VMGlobal(UnsafeCell::new(raw)),
                ty,
            }),
            group: Group::new(),
        }
    }

    /// A new global of type `ty` holding `val`.
    pub fn new(engine: &Engine, ty: GlobalType, val: Val) -> Result<Global, Error> {
        if val.ty() != ty.content {
            return Err(Error::InvalidArgument(format!(
                "a {} value cannot initialise a global of type {}",
                val.ty(),
                ty.content
            )));
        }
        let global = Global::new_raw(engine, ty, 0);
        global.store(val)?;
        Ok(global)
    }

    pub fn ty(&self) -> GlobalType {
        self.inner.ty
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The same storage without a link group, for an instance's own list:
    /// an instance must not hold a group (that would be a cycle).
    pub(crate) fn detached(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            group: Group::new(),
        }
    }

    pub(crate) fn storage_ptr(&self) -> *mut u128 {
        self.inner.value.0.get()
    }

    pub(crate) fn get_raw(&self) -> u128 {
        // SAFETY: see the sharing rule.
        unsafe { *self.storage_ptr() }
    }

    pub(crate) fn set_raw(&self, raw: u128) {
        // SAFETY: see the sharing rule.
        unsafe { *self.storage_ptr() = raw }
    }

    /// The current value.
    pub fn get(&self) -> Val {
        // SAFETY: the storage holds a value of the global's content type.
        unsafe { Val::from_raw(self.get_raw(), self.inner.ty.content) }
    }

    /// Sets the value; the global must be mutable and the type must match.
    pub fn set(&self, val: Val) -> Result<(), Error> {
        if !self.inner.ty.mutable {
            return Err(Error::InvalidArgument("the global is immutable".into()));
        }
        if val.ty() != self.inner.ty.content {
            return Err(Error::InvalidArgument(format!(
                "a {} value cannot be stored in a global of type {}",
                val.ty(),
                self.inner.ty.content
            )));
        }
        self.store(val)
    }

    /// Stores a value already checked against the type.
    fn store(&self, val: Val) -> Result<(), Error> {
        if let Val::FuncRef(Some(func)) = &val {
            func.check_engine(&self.inner.engine)?;
            self.group.merge(&func.group);
        }
        self.set_raw(val.to_raw());
        Ok(())
    }
}
