//! The runtime side of the vmctx contract in `backstop_jit::vmoffsets`: the
//! `VMFuncRef` struct, the vmctx storage of an instance, and the builtins
//! compiled code calls for `memory.grow`, bulk memory and table operations.
//!
//! Builtins run on the guest stack, called from compiled code. They never
//! unwind on their own: they return a status and compiled code traps.

use crate::store::instance::InstanceCore;
use backstop_jit::vmoffsets::*;
use std::cell::UnsafeCell;

/// What a funcref value points to. Layout fixed by `vmoffsets`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct VMFuncRef {
    /// Entry with the native signature of the function's type.
    pub(crate) native_call: usize,
    /// Engine-wide id of the function's type.
    pub(crate) type_id: u32,
    pub(crate) _pad: u32,
    /// First argument of `native_call`: an instance's vmctx or a host
    /// function's context.
    pub(crate) vmctx: usize,
    /// `*const InstanceCore` of the instance whose vmctx holds this.
    pub(crate) owner: usize,
}

const _: () = assert!(std::mem::size_of::<VMFuncRef>() == FUNC_REF_SIZE as usize);

/// The memory of one instance's vmctx: zeroed, 16-byte aligned, never moved.
pub(crate) struct VMContextStorage {
    words: Box<[UnsafeCell<u128>]>,
}

impl VMContextStorage {
    pub(crate) fn new(size: u32) -> VMContextStorage {
        let count = (size as usize).div_ceil(16).max(1);
        VMContextStorage {
            words: (0..count).map(|_| UnsafeCell::new(0)).collect(),
        }
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        self.words.as_ptr() as *mut u8
    }

    /// Writes a word at `offset`.
    ///
    /// # Safety
    /// `offset + 8` must lie within the storage and no compiled code of the
    /// instance may be running a read of that field concurrently.
    pub(crate) unsafe fn write_usize(&self, offset: u32, value: usize) {
        // SAFETY: forwarded from the contract; the storage is 16-aligned and
        // every vmctx field is 8-aligned.
        unsafe { (self.ptr().add(offset as usize) as *mut usize).write(value) }
    }

    /// The funcref slot of function `index`.
    pub(crate) fn func_ref(&self, offsets: &VMOffsets, index: u32) -> *mut VMFuncRef {
        // SAFETY: the offset lies within the storage, which `VMOffsets`
        // sized; it is only turned into a pointer here.
        unsafe { self.ptr().add(offsets.func_ref(index) as usize) as *mut VMFuncRef }
    }
}

/// The instance whose vmctx this is.
///
/// # Safety
/// `vmctx` must be the vmctx of a live instance (compiled code passes its
/// own).
unsafe fn core_of<'a>(vmctx: *mut u8) -> &'a InstanceCore {
    // SAFETY: per the contract; the field was set at instantiation to the
    // address of the InstanceCore, which outlives its running code.
    unsafe { &*(*(vmctx.add(VMCTX_INSTANCE as usize) as *const *const InstanceCore)) }
}

fn status(ok: bool) -> u32 {
    u32::from(!ok)
}

unsafe extern "C-unwind" fn builtin_memory_grow(vmctx: *mut u8, memory: u32, delta: u32) -> u32 {
    // SAFETY: compiled code passes its own vmctx.
    let core = unsafe { core_of(vmctx) };
    core.memory(memory).grow_pages(delta).unwrap_or(u32::MAX)
}

unsafe extern "C-unwind" fn builtin_memory_fill(
    vmctx: *mut u8,
    memory: u32,
    dst: u32,
    value: u32,
    len: u32,
) -> u32 {
    // SAFETY: compiled code passes its own vmctx.
    let core = unsafe { core_of(vmctx) };
    let memory = core.memory(memory);
    let data = memory.data_mut();
    let (dst, len) = (dst as usize, len as usize);
    match dst.checked_add(len) {
        Some(end) if end <= data.len() => {
            data[dst..end].fill(value as u8);
            status(true)
        }
        _ => status(false),
    }
}

unsafe extern "C-unwind" fn builtin_memory_copy(
    vmctx: *mut u8,
    dst_memory: u32,
    src_memory: u32,
    dst: u32,
    src: u32,
    len: u32,
) -> u32 {
    // SAFETY: compiled code passes its own vmctx.
    let core = unsafe { core_of(vmctx) };
    let (dst_mem, src_mem) = (core.memory(dst_memory), core.memory(src_memory));
    let (dst, src, len) = (dst as usize, src as usize, len as usize);
    let dst_ok = dst
        .checked_add(len)
        .is_some_and(|e| e <= dst_mem.data_size());
    let src_ok = src
        .checked_add(len)
        .is_some_and(|e| e <= src_mem.data_size());
    if !(dst_ok && src_ok) {
        return status(false);
    }
    // SAFETY: both ranges were checked; `copy` handles overlap.
    unsafe { std::ptr::copy(src_mem.base().add(src), dst_mem.base().add(dst), len) };
    status(true)
}

unsafe extern "C-unwind" fn builtin_memory_init(
    vmctx: *mut u8,
    memory: u32,
    segment: u32,
    dst: u32,
    src: u32,
    len: u32,
) -> u32 {
    // SAFETY: compiled code passes its own vmctx.
    let core = unsafe { core_of(vmctx) };
    let Some(bytes) = segment_range(core.data_segment(segment), src, len) else {
        return status(false);
    };
    status(core.memory(memory).write(dst as usize, bytes).is_ok())
}

/// `segment[src..src + len]`, or `None` if that is out of bounds (a trap).
fn segment_range<E>(segment: &[E], src: u32, len: u32) -> Option<&[E]> {
    let src = src as usize;
    segment.get(src..src.checked_add(len as usize)?)
}

unsafe extern "C-unwind" fn builtin_data_drop(vmctx: *mut u8, segment: u32) {
    // SAFETY: compiled code passes its own vmctx.
    unsafe { core_of(vmctx) }.drop_data(segment);
}

unsafe extern "C-unwind" fn builtin_table_grow(
    vmctx: *mut u8,
    table: u32,
    init: u64,
    delta: u32,
) -> u32 {
    // SAFETY: compiled code passes its own vmctx.
    let core = unsafe { core_of(vmctx) };
    core.table(table)
        .grow_raw(delta, init as usize)
        .unwrap_or(u32::MAX)
}

unsafe extern "C-unwind" fn builtin_table_fill(
    vmctx: *mut u8,
    table: u32,
    dst: u32,
    value: u64,
    len: u32,
) -> u32 {
    // SAFETY: compiled code passes its own vmctx.
    let core = unsafe { core_of(vmctx) };
    status(core.table(table).fill_raw(dst, value as usize, len))
}

unsafe extern "C-unwind" fn builtin_table_copy(
    vmctx: *mut u8,
    dst_table: u32,
    src_table: u32,
    dst: u32,
    src: u32,
    len: u32,
) -> u32 {
    // SAFETY: compiled code passes its own vmctx.
    let core = unsafe { core_of(vmctx) };
    status(
        core.table(dst_table)
            .copy_raw(core.table(src_table), dst, src, len),
    )
}

unsafe extern "C-unwind" fn builtin_table_init(
    vmctx: *mut u8,
    table: u32,
    segment: u32,
    dst: u32,
    src: u32,
    len: u32,
) -> u32 {
    // SAFETY: compiled code passes its own vmctx.
    let core = unsafe { core_of(vmctx) };
    let Some(items) = segment_range(core.element_segment(segment), src, len) else {
        return status(false);
    };
    status(core.table(table).init_raw(dst, items))
}

unsafe extern "C-unwind" fn builtin_elem_drop(vmctx: *mut u8, segment: u32) {
    // SAFETY: compiled code passes its own vmctx.
    unsafe { core_of(vmctx) }.drop_element(segment);
}

/// The builtins table every vmctx points to, in `Builtin` order.
#[repr(transparent)]
pub(crate) struct BuiltinTable(pub(crate) [*const (); Builtin::COUNT]);

// SAFETY: the table holds code addresses and is never written.
unsafe impl Sync for BuiltinTable {}

pub(crate) static BUILTINS: BuiltinTable = BuiltinTable([
    builtin_memory_grow as *const (),
    builtin_memory_fill as *const (),
    builtin_memory_copy as *const (),
    builtin_memory_init as *const (),
    builtin_data_drop as *const (),
    builtin_table_grow as *const (),
    builtin_table_fill as *const (),
    builtin_table_copy as *const (),
    builtin_table_init as *const (),
    builtin_elem_drop as *const (),
]);

/// Where a function runs from: its `VMFuncRef`, its type's entry
/// trampoline, and the vmctx of the instance that holds the `VMFuncRef`
/// (the "caller" a root call stands in for).
#[derive(Clone, Copy)]
pub(crate) struct Callee {
    pub(crate) raw: *const VMFuncRef,
    pub(crate) trampoline: usize,
    pub(crate) owner_vmctx: *mut u8,
}
