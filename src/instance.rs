//! Instances: `InstanceCore` (the vmctx and everything compiled code of one
//! instance reaches: memories, tables, globals, function references, segment
//! state) and `Instance<T>` (a core, its guest stack, its state and the
//! embedder's data). This file instantiates modules and runs calls:
//!
//! A **root call** (`Instance::call*`) checks the state and the arguments,
//! writes the stack limit and activation into the vmctx, switches to the
//! instance's guest stack (`backstop_asm::call_on_stack`) and enters the
//! compiled entry trampoline. Whatever unwinds out of the guest (a trap, an
//! error a host function returned, a host panic) crosses the switch's CFI
//! into `catch_unwind` here. A **nested call** (`Caller::call`) runs the
//! trampoline directly on the guest stack, inside a host function, with no
//! catch: an unwind inside it ends the whole run.
//!
//! Instance states:
//!
//! | state    | `call`                  | on return / trap / host `Err`  | on host panic        |
//! |----------|-------------------------|--------------------------------|----------------------|
//! | Ready    | -> Running              | -                              | -                    |
//! | Running  | (unreachable: `&mut`)   | -> Ready                       | -> Poisoned, re-raise|
//! | Poisoned | error `InstanceState`   | -                              | -                    |

use crate::exit::{self, AnyValue, ExitUnwind, GuestExit};
use crate::externals::{Global, Memory, MemoryChunks, Table};
use crate::group::{Group, GroupCell};
use crate::kill::{KillShared, KillSwitch};
use crate::module::Module;
use crate::values::{type_list, Func, Val, WasmValues};
use crate::vm::{VMContextStorage, VMFuncRef, BUILTINS};
use crate::{Error, Trap, TrapCode};
use backstop_jit::vmoffsets::*;
use backstop_jit::{ConstExpr, DataMode, ElementMode, ExportKind, FuncType, ValType};
use std::any::{Any, TypeId};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

/// A resolved function import: what goes into the importer's `VMFuncRef`.
pub(crate) struct FuncImport {
    pub(crate) native_call: usize,
    pub(crate) type_id: u32,
    pub(crate) vmctx: usize,
    pub(crate) keepalive: Arc<dyn Any + Send + Sync>,
}

/// A resolved import of any kind, in import order.
pub(crate) enum Resolved {
    Func(FuncImport),
    Table(Table),
    Memory(Memory),
    Global(Global),
}

struct ElementState {
    items: Box<[usize]>,
    dropped: AtomicBool,
}

/// Everything compiled code of one instance reaches, behind its vmctx.
pub(crate) struct InstanceCore {
    pub(crate) module: Module,
    vmctx: VMContextStorage,
    memories: Vec<Memory>,
    tables: Vec<Table>,
    globals: Vec<Global>,
    _func_imports: Vec<Arc<dyn Any + Send + Sync>>,
    elements: Vec<ElementState>,
    data_dropped: Vec<AtomicBool>,
    /// What every `VMFuncRef.owner` of this vmctx points to.
    _self_weak: Box<Weak<InstanceCore>>,
    /// The root of this instance's link group (see `group.rs`).
    group: parking_lot::Mutex<Weak<GroupCell>>,
}

// SAFETY: the vmctx holds raw pointers into objects this core owns (or keeps
// alive), and is written only during instantiation and by the running call
// (one thread at a time: see the sharing rule in `externals`).
unsafe impl Send for InstanceCore {}
// SAFETY: as above.
unsafe impl Sync for InstanceCore {}

impl InstanceCore {
    pub(crate) fn memory(&self, index: u32) -> &Memory {
        &self.memories[index as usize]
    }

    pub(crate) fn table(&self, index: u32) -> &Table {
        &self.tables[index as usize]
    }

    /// The bytes of passive data segment `index` (empty once dropped).
    pub(crate) fn data_segment(&self, index: u32) -> &[u8] {
        if self.data_dropped[index as usize].load(Ordering::Relaxed) {
            &[]
        } else {
            &self.module.info().data[index as usize].bytes
        }
    }

    pub(crate) fn drop_data(&self, index: u32) {
        self.data_dropped[index as usize].store(true, Ordering::Relaxed);
    }

    /// The resolved items of element segment `index` (empty once dropped).
    pub(crate) fn element_segment(&self, index: u32) -> &[usize] {
        let segment = &self.elements[index as usize];
        if segment.dropped.load(Ordering::Relaxed) {
            &[]
        } else {
            &segment.items
        }
    }

    pub(crate) fn drop_element(&self, index: u32) {
        self.elements[index as usize]
            .dropped
            .store(true, Ordering::Relaxed);
    }

    pub(crate) fn set_group(&self, root: Weak<GroupCell>) {
        *self.group.lock() = root;
    }

    /// This instance's link group; alive as long as the instance is.
    pub(crate) fn group(&self) -> Group {
        Group::from_weak(&self.group.lock()).expect("a live instance's group is alive")
    }

    /// Handles for this instance's items, holding its group.
    pub(crate) fn table_handle(&self, index: u32) -> Table {
        Table {
            inner: self.tables[index as usize].inner.clone(),
            group: self.group(),
        }
    }

    pub(crate) fn memory_handle(&self, index: u32) -> Memory {
        self.memories[index as usize].clone()
    }

    pub(crate) fn global_handle(&self, index: u32) -> Global {
        Global {
            inner: self.globals[index as usize].inner.clone(),
            group: self.group(),
        }
    }

    /// The state `Instance::reset` restores: this instance's own memories,
    /// tables and globals, and which segments are dropped.
    fn snapshot(&self) -> Snapshot {
        let info = self.module.info();
        let first_own = info.num_imported_memories as usize;
        let memories = self.memories[first_own..]
            .iter()
            .enumerate()
            .map(|(i, memory)| {
                if info.start.is_some() {
                    return MemoryImage::Chunks(memory.snapshot_chunks());
                }
                let index = (first_own + i) as u32;
                let writes = info
                    .data
                    .iter()
                    .enumerate()
                    .filter_map(|(segment, data)| match &data.mode {
                        DataMode::Active { memory, offset } if *memory == index => {
                            let offset = eval_const(offset, &self.globals, |_| 0) as u32;
                            Some((segment as u32, offset as usize))
                        }
                        _ => None,
                    })
                    .collect();
                MemoryImage::Segments {
                    bytes: memory.data_size(),
                    writes,
                }
            })
            .collect();
        Snapshot {
            memories,
            tables: self.tables[info.num_imported_tables as usize..]
                .iter()
                .map(Table::elements_raw)
                .collect(),
            globals: self.globals[info.num_imported_globals as usize..]
                .iter()
                .map(Global::get_raw)
                .collect(),
            elements_dropped: self
                .elements
                .iter()
                .map(|e| e.dropped.load(Ordering::Relaxed))
                .collect(),
            data_dropped: self
                .data_dropped
                .iter()
                .map(|d| d.load(Ordering::Relaxed))
                .collect(),
        }
    }

    fn restore(&self, snapshot: &Snapshot) -> Result<(), Error> {
        let info = self.module.info();
        let own_memories = &self.memories[info.num_imported_memories as usize..];
        for (memory, image) in own_memories.iter().zip(&snapshot.memories) {
            match image {
                MemoryImage::Chunks(chunks) => memory.restore_chunks(chunks)?,
                MemoryImage::Segments { bytes, writes } => memory.restore(
                    *bytes,
                    writes.iter().map(|(segment, offset)| {
                        (*offset, &info.data[*segment as usize].bytes[..])
                    }),
                )?,
            }
        }
        let own_tables = &self.tables[info.num_imported_tables as usize..];
        for (table, saved) in own_tables.iter().zip(&snapshot.tables) {
            table.restore_raw(saved);
        }
        let own_globals = &self.globals[info.num_imported_globals as usize..];
        for (global, saved) in own_globals.iter().zip(&snapshot.globals) {
            global.set_raw(*saved);
        }
        for (element, dropped) in self.elements.iter().zip(&snapshot.elements_dropped) {
            element.dropped.store(*dropped, Ordering::Relaxed);
        }
        for (data, dropped) in self.data_dropped.iter().zip(&snapshot.data_dropped) {
            data.store(*dropped, Ordering::Relaxed);
        }
        Ok(())
    }

    pub(crate) fn vmctx_ptr(&self) -> *mut u8 {
        self.vmctx.ptr()
    }

    fn func_ref(&self, index: u32) -> *mut VMFuncRef {
        self.vmctx.func_ref(&self.module.compiled().offsets, index)
    }

    /// The entry trampoline for the function whose `VMFuncRef` is `raw`,
    /// which lies in this core's vmctx.
    pub(crate) fn trampoline_for(&self, raw: *const VMFuncRef) -> usize {
        let offsets = &self.module.compiled().offsets;
        let index = (raw as usize - self.vmctx_ptr() as usize - offsets.func_refs as usize)
            / FUNC_REF_SIZE as usize;
        let type_index = self.module.info().functions[index];
        self.module.compiled().entry_trampolines[type_index as usize]
    }

    fn export(&self, name: &str) -> Option<(ExportKind, u32)> {
        self.module.info().export(name).map(|e| (e.kind, e.index))
    }

    pub(crate) fn export_func(&self, name: &str) -> Option<Func> {
        match self.export(name)? {
            (ExportKind::Func, index) => Some(self.func(index)),
            _ => None,
        }
    }

    pub(crate) fn func(&self, index: u32) -> Func {
        Func {
            raw: self.func_ref(index),
            core: self._self_weak.upgrade().expect("a core in use is alive"),
            group: self.group(),
        }
    }

    pub(crate) fn export_memory(&self, name: &str) -> Option<Memory> {
        match self.export(name)? {
            (ExportKind::Memory, index) => Some(self.memory_handle(index)),
            _ => None,
        }
    }

    /// A typed handle for an exported function, checking its type.
    pub(crate) fn typed_export<P: WasmValues, R: WasmValues>(
        &self,
        name: &str,
    ) -> Result<TypedFunc<P, R>, Error> {
        let func = self
            .export_func(name)
            .ok_or_else(|| Error::InvalidArgument(format!("no exported function `{name}`")))?;
        TypedFunc::new(func)
    }

    /// The `VMFuncRef` and entry trampoline of the exported function `name`,
    /// after checking its type against `P -> R`. Reads only this module's
    /// own tables: no handle, no lock, no allocation (for calls by name).
    pub(crate) fn export_entry<P: WasmValues, R: WasmValues>(
        &self,
        name: &str,
    ) -> Result<(*const VMFuncRef, usize), Error> {
        let index = match self.export(name) {
            Some((ExportKind::Func, index)) => index,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "no exported function `{name}`"
                )))
            }
        };
        let info = self.module.info();
        let ty = info.func_type(index);
        check_typed::<P, R>(ty)?;
        let trampoline =
            self.module.compiled().entry_trampolines[info.functions[index as usize] as usize];
        Ok((self.func_ref(index), trampoline))
    }

    /// Runs the function `raw` (with its entry `trampoline`) directly on the
    /// current (guest) stack.
    ///
    /// # Safety
    /// Must run on the guest stack of a root call (inside a host function);
    /// `raw` must be a live `VMFuncRef` reachable from this instance and
    /// `trampoline` its type's entry trampoline; `slots` holds the arguments
    /// and has room for the results.
    pub(crate) unsafe fn invoke_nested(
        &self,
        raw: *const VMFuncRef,
        trampoline: usize,
        slots: *mut u128,
    ) {
        // SAFETY: forwarded from the contract.
        unsafe { invoke_in_activation(raw, trampoline, self.vmctx_ptr(), slots) }
    }

    /// Calls the function `raw`, whose type is `P -> R`, directly with its
    /// native signature (no entry trampoline) on the current (guest) stack.
    ///
    /// # Safety
    /// As `invoke_nested`; the function's type must be `P -> R`, and
    /// `P::HAS_NATIVE_PARAMS` and `R::HAS_NATIVE_RESULT` must hold.
    #[inline(always)]
    pub(crate) unsafe fn invoke_nested_native<P: WasmValues, R: WasmValues>(
        &self,
        raw: *const VMFuncRef,
        params: P,
    ) -> R {
        // SAFETY: forwarded from the contract.
        unsafe { invoke_native_in_activation(raw, self.vmctx_ptr(), params) }
    }
}

/// Hands the caller's stack limit and activation to the callee's vmctx and
/// calls the entry trampoline.
///
/// # Safety
/// `raw` must be a live `VMFuncRef`, `trampoline` the entry trampoline of its
/// type, `caller_vmctx` a live vmctx whose stack limit and activation are
/// current, and `slots` valid for the arguments and results.
unsafe fn invoke_in_activation(
    raw: *const VMFuncRef,
    trampoline: usize,
    caller_vmctx: *mut u8,
    slots: *mut u128,
) {
    type Trampoline = unsafe extern "C-unwind" fn(usize, usize, usize, *mut u128);
    // SAFETY: forwarded from the contract.
    unsafe {
        let func_ref = propagate_activation(raw, caller_vmctx);
        let trampoline: Trampoline = std::mem::transmute(trampoline);
        trampoline(
            func_ref.native_call,
            func_ref.vmctx,
            caller_vmctx as usize,
            slots,
        );
    }
}

/// `invoke_in_activation` without the entry trampoline: calls the function
/// `raw`, of type `P -> R`, through its native signature.
///
/// # Safety
/// As `invoke_in_activation`; the function's type must be `P -> R`, and
/// `P::HAS_NATIVE_PARAMS` and `R::HAS_NATIVE_RESULT` must hold.
#[inline(always)]
unsafe fn invoke_native_in_activation<P: WasmValues, R: WasmValues>(
    raw: *const VMFuncRef,
    caller_vmctx: *mut u8,
    params: P,
) -> R {
    // SAFETY: forwarded from the contract.
    unsafe {
        let func_ref = propagate_activation(raw, caller_vmctx);
        R::from_native_result(params.call_native::<R>(
            func_ref.native_call,
            func_ref.vmctx,
            caller_vmctx as usize,
        ))
    }
}

/// Reads a `VMFuncRef` and hands the caller's propagated vmctx words
/// (stack limit, activation, interrupt flag) to its callee's vmctx.
///
/// # Safety
/// `raw` must be a live `VMFuncRef` and `caller_vmctx` a live vmctx whose
/// words are current; every callee vmctx starts with those words.
#[inline(always)]
unsafe fn propagate_activation(raw: *const VMFuncRef, caller_vmctx: *mut u8) -> VMFuncRef {
    // SAFETY: forwarded from the contract.
    unsafe {
        let func_ref = *raw;
        let callee_vmctx = func_ref.vmctx as *mut usize;
        if callee_vmctx as *mut u8 != caller_vmctx {
            for field in VMCTX_PROPAGATED {
                let word = field as usize / 8;
                *callee_vmctx.add(word) = *(caller_vmctx as *const usize).add(word);
            }
        }
        func_ref
    }
}

/// Evaluates a constant expression.
fn eval_const(expr: &ConstExpr, globals: &[Global], func_ref: impl Fn(u32) -> usize) -> u128 {
    match *expr {
        ConstExpr::I32(v) => u128::from(v as u32),
        ConstExpr::I64(v) => u128::from(v as u64),
        ConstExpr::F32(v) => u128::from(v),
        ConstExpr::F64(v) => u128::from(v),
        ConstExpr::V128(v) => v,
        ConstExpr::RefNull(_) => 0,
        ConstExpr::RefFunc(f) => func_ref(f) as u128,
        ConstExpr::GlobalGet(g) => globals[g as usize].get_raw(),
    }
}

/// Builds an instance's core: creates its memories, tables and globals,
/// fills the vmctx, then applies active element and data segments. A
/// segment out of bounds fails with a trap (earlier segments stay written).
///
/// `group` is the new instance's link group, already merged with the groups
/// of everything it imports.
pub(crate) fn instantiate_core(
    module: &Module,
    imports: Vec<Resolved>,
    group: &Group,
) -> Result<Arc<InstanceCore>, Error> {
    let engine = module.engine();
    let compiled = module.compiled();
    let info = module.info();
    let offsets = &compiled.offsets;

    let mut func_imports = Vec::new();
    let mut memories = Vec::new();
    let mut tables = Vec::new();
    let mut globals = Vec::new();
    for import in imports {
        match import {
            Resolved::Func(f) => func_imports.push(f),
            Resolved::Table(t) => tables.push(t.detached()),
            Resolved::Memory(m) => memories.push(m),
            Resolved::Global(g) => globals.push(g.detached()),
        }
    }
    // The first memory the module defines also holds the instance's guest
    // stack (one mapping for both: `Memory::new_with_stack_room`).
    let config = engine.config();
    let stack_room = config.stack_size + config.host_reserve;
    for (i, ty) in info.memories[info.num_imported_memories as usize..]
        .iter()
        .enumerate()
    {
        let room = if i == 0 { stack_room } else { 0 };
        memories.push(Memory::new_with_stack_room(engine, *ty, room)?);
    }
    for ty in &info.tables[info.num_imported_tables as usize..] {
        tables.push(Table::new_raw(engine, *ty, 0)?);
    }

    let vmctx = VMContextStorage::new(offsets.size);
    let func_ref_addr = |index: u32| vmctx.func_ref(offsets, index) as usize;
    for (i, init) in info.global_inits.iter().enumerate() {
        let ty = info.globals[info.num_imported_globals as usize + i];
        let value = eval_const(init, &globals, func_ref_addr);
        globals.push(Global::new_raw(engine, ty, value));
    }
    let elements: Vec<ElementState> = info
        .elements
        .iter()
        .map(|segment| ElementState {
            items: segment
                .items
                .iter()
                .map(|item| eval_const(item, &globals, func_ref_addr) as usize)
                .collect(),
            dropped: AtomicBool::new(false),
        })
        .collect();
    let data_dropped = (0..info.data.len())
        .map(|_| AtomicBool::new(false))
        .collect();

    let core = Arc::new_cyclic(|weak: &Weak<InstanceCore>| {
        let self_weak = Box::new(weak.clone());
        let owner = &*self_weak as *const Weak<InstanceCore> as usize;
        // SAFETY: every offset comes from this module's VMOffsets, which
        // sized the storage; nothing runs on this vmctx yet.
        unsafe {
            vmctx.write_usize(VMCTX_BUILTINS, BUILTINS.0.as_ptr() as usize);
            vmctx.write_usize(VMCTX_INSTANCE, weak.as_ptr() as usize);
            for (i, memory) in memories.iter().enumerate() {
                vmctx.write_usize(offsets.memory_base(i as u32), memory.base() as usize);
                vmctx.write_usize(
                    offsets.memory_definition(i as u32),
                    memory.definition_ptr() as usize,
                );
            }
            for (i, table) in tables.iter().enumerate() {
                vmctx.write_usize(offsets.table(i as u32), table.vm_ptr() as usize);
            }
            for (i, global) in globals.iter().enumerate() {
                vmctx.write_usize(offsets.global(i as u32), global.storage_ptr() as usize);
            }
            for (index, type_index) in info.functions.iter().enumerate() {
                let index = index as u32;
                let func_ref = match func_imports.get(index as usize) {
                    Some(import) => VMFuncRef {
                        native_call: import.native_call,
                        type_id: import.type_id,
                        _pad: 0,
                        vmctx: import.vmctx,
                        owner,
                    },
                    None => VMFuncRef {
                        native_call: compiled.function_addresses
                            [(index - info.num_imported_functions) as usize],
                        type_id: compiled.type_ids[*type_index as usize],
                        _pad: 0,
                        vmctx: vmctx.ptr() as usize,
                        owner,
                    },
                };
                vmctx.func_ref(offsets, index).write(func_ref);
            }
        }
        InstanceCore {
            module: module.clone(),
            vmctx,
            memories,
            tables,
            globals,
            _func_imports: func_imports.into_iter().map(|f| f.keepalive).collect(),
            elements,
            data_dropped,
            _self_weak: self_weak,
            group: parking_lot::Mutex::new(Weak::new()),
        }
    });
    group.add_member(core.clone());

    // Active segments, in order; then they count as dropped.
    for (index, segment) in info.elements.iter().enumerate() {
        match &segment.mode {
            ElementMode::Active { table, offset } => {
                let offset = eval_const(offset, &core.globals, |_| 0) as u32;
                let items = &core.elements[index].items;
                let target = &core.tables[*table as usize];
                if !target.init_raw(offset, items) {
                    return Err(Error::Trap(Trap::new(TrapCode::TableOutOfBounds).during(
                        format!(
                            "instantiation: element segment {index} ({} elements at \
                             offset {offset}) does not fit in table {table} ({} elements)",
                            items.len(),
                            target.size()
                        ),
                    )));
                }
                core.drop_element(index as u32);
            }
            ElementMode::Declared => core.drop_element(index as u32),
            ElementMode::Passive => {}
        }
    }
    for (index, segment) in info.data.iter().enumerate() {
        if let DataMode::Active { memory, offset } = &segment.mode {
            let offset = eval_const(offset, &core.globals, |_| 0) as u32;
            let target = &core.memories[*memory as usize];
            if target.write(offset as usize, &segment.bytes).is_err() {
                return Err(Error::Trap(Trap::new(TrapCode::MemoryOutOfBounds).during(
                    format!(
                        "instantiation: data segment {index} ({} bytes at offset {offset}) \
                         does not fit in memory {memory} ({} bytes)",
                        segment.bytes.len(),
                        target.data_size()
                    ),
                )));
            }
            core.drop_data(index as u32);
        }
    }
    Ok(core)
}

/// The states of an instance. Every transition is in the table in the
/// module docs of `instance.rs` and in `Instance::state`'s docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceState {
    /// Idle: a call may start.
    Ready,
    /// A call is in progress (only observable from inside it).
    Running,
    /// A host function suspended the guest (`Caller::suspend`); only
    /// `resume`, `reset` or dropping the instance continue it.
    Suspended,
    /// A host function panicked; only `reset` makes the instance usable.
    Poisoned,
}

/// What a resumable call produced.
#[derive(Debug)]
pub enum Outcome<R> {
    /// The function returned these results.
    Returned(R),
    /// A host function suspended the guest with this value; the instance is
    /// `Suspended` until `resume`d (or reset, or dropped).
    Yielded(AnyValue),
}

/// How a suspended guest continues.
enum ResumeAction {
    /// `Caller::suspend` returns this value.
    Value(Box<dyn Any + Send>),
    /// `Caller::suspend` ends the run instead: every frame unwinds.
    Unwind(GuestExit),
}

/// What the suspended call expects.
struct Suspension {
    results: Box<[ValType]>,
    resume_type: TypeId,
    resume_type_name: &'static str,
}

/// What `Instance::reset` restores: this instance's own (not imported)
/// memories, tables, globals and segments, as they were right after
/// instantiation (start function included).
struct Snapshot {
    memories: Vec<MemoryImage>,
    tables: Vec<Vec<usize>>,
    globals: Vec<u128>,
    elements_dropped: Vec<bool>,
    data_dropped: Vec<bool>,
}

/// How a memory looked right after instantiation.
enum MemoryImage {
    /// Its size and the active data segments (index, offset) written into
    /// it, in order: exact when no start function ran, and free to record.
    Segments {
        bytes: usize,
        writes: Vec<(u32, usize)>,
    },
    /// A copy of its non-zero chunks, when a start function may have
    /// written anything.
    Chunks(MemoryChunks),
}

/// The activation record of an instance: what `vmctx.activation` points to
/// during a call, and what host functions reach through `Caller`. Boxed, so
/// its address (and the fiber state in it) never moves.
pub(crate) struct InstanceInner<T> {
    pub(crate) core: Arc<InstanceCore>,
    stack: backstop_asm::GuestStack,
    stack_limit: usize,
    /// A host function may start only above this address: it keeps at
    /// least half the host reserve free for host code and the unwinder.
    pub(crate) host_floor: usize,
    state: InstanceState,
    fiber: backstop_asm::FiberState,
    /// Argument and result slots of the root call in progress; they must
    /// outlive a suspension, so they are not on the caller's stack.
    slots: Vec<u128>,
    suspension: Option<Suspension>,
    /// Set by `Caller::suspend`, taken by the root call when it sees the
    /// guest suspended.
    yielded: Option<(AnyValue, TypeId, &'static str)>,
    /// Set by `resume` and teardown, taken by the suspended guest.
    resume_action: Option<ResumeAction>,
    snapshot: Option<Snapshot>,
    group: Group,
    pub(crate) kill: Arc<KillShared>,
    /// What a trap needs to leave this instance's guest stack; made once the
    /// instance is boxed (its fields' addresses are final then).
    run: exit::CurrentRun,
    pub(crate) data: T,
}

/// An instance of a module, with its own guest stack and the embedder's
/// data `T`. `Send` when `T` is.
pub struct Instance<T: 'static> {
    inner: Box<InstanceInner<T>>,
}

impl<T: 'static> std::fmt::Debug for Instance<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("module", &self.inner.core.module)
            .field("state", &self.inner.state)
            .finish()
    }
}

/// What the guest-stack entry function needs, passed by pointer. Read once,
/// when the fiber starts.
struct EntryArgs {
    /// The first frame's function: `guest_entry`, or a `typed_guest_entry`.
    entry: unsafe extern "C-unwind" fn(*mut u8),
    raw: *const VMFuncRef,
    trampoline: usize,
    caller_vmctx: *mut u8,
    slots: *mut u128,
}

/// The first frame on the guest stack.
unsafe extern "C-unwind" fn guest_entry(arg: *mut u8) {
    // SAFETY: `arg` is the EntryArgs of `begin`, alive while the fiber
    // starts; its fields satisfy `invoke_in_activation`'s contract, and the
    // slots live in the instance, which outlives the fiber.
    unsafe {
        let args = &*(arg as *const EntryArgs);
        invoke_in_activation(args.raw, args.trampoline, args.caller_vmctx, args.slots);
    }
}

/// The first frame on the guest stack for a typed call whose types all
/// have native equivalents: calls the function with its native signature,
/// without the entry trampoline (one frame fewer on the guest stack).
unsafe extern "C-unwind" fn typed_guest_entry<P: WasmValues, R: WasmValues>(arg: *mut u8) {
    // SAFETY: as for `guest_entry`; the slots hold a `P` and have room for
    // an `R` (`run_typed` sized them), and the function's type is `P -> R`
    // (checked when the call was set up), whose types are native. The
    // EntryArgs are only read here, before the guest runs (it may suspend,
    // and then they are gone), so the slot pointer is copied first.
    unsafe {
        let args = &*(arg as *const EntryArgs);
        let count = P::TYPES.len().max(R::TYPES.len()).max(1);
        let slots = std::slice::from_raw_parts_mut(args.slots, count);
        let results: R = invoke_native_in_activation(args.raw, args.caller_vmctx, P::load(slots));
        results.store(slots);
    }
}

/// Converts dynamic arguments to slots, checking count and types; the
/// slots have room for the results too.
pub(crate) fn args_to_slots(ty: &FuncType, args: &[Val]) -> Result<Vec<u128>, Error> {
    if args.len() != ty.params().len() {
        return Err(Error::InvalidArgument(format!(
            "expected {} arguments {}, got {}",
            ty.params().len(),
            type_list(ty.params()),
            args.len()
        )));
    }
    let mut slots = vec![0u128; ty.params().len().max(ty.results().len())];
    for (i, (arg, expected)) in args.iter().zip(ty.params()).enumerate() {
        if arg.ty() != *expected {
            return Err(Error::InvalidArgument(format!(
                "argument {i} has type {}, expected {expected}",
                arg.ty()
            )));
        }
        slots[i] = arg.to_raw();
    }
    Ok(slots)
}

/// Reads results of `ty` from slots.
///
/// # Safety
/// The slots must hold results of `ty` written by compiled code.
pub(crate) unsafe fn slots_to_results(ty: &FuncType, slots: &[u128]) -> Vec<Val> {
    ty.results()
        .iter()
        .enumerate()
        // SAFETY: forwarded from the contract.
        .map(|(i, t)| unsafe { Val::from_raw(slots[i], *t) })
        .collect()
}

/// Suspends the running guest of `inner` with `value`; returns the value
/// `resume` passes, or unwinds if the instance is torn down instead.
///
/// # Safety
/// Must run inside a host function of a root call of `inner`, on its fiber.
#[inline(never)]
pub(crate) unsafe fn suspend_current<T, R: Any + Send>(
    inner: *mut InstanceInner<T>,
    value: AnyValue,
) -> R {
    // SAFETY: per the contract, `inner` is the running root and this is its
    // innermost fiber; nothing thread-bound is live across the switch here.
    unsafe {
        (*inner).yielded = Some((value, TypeId::of::<R>(), std::any::type_name::<R>()));
        backstop_asm::fiber_suspend(&mut (*inner).fiber);
        after_resume::<T, R>(inner)
    }
}

/// The resumed half of `suspend_current`; never inlined into it, so no
/// thread-local address from before a cross-thread resume is reused.
#[inline(never)]
unsafe fn after_resume<T, R: Any + Send>(inner: *mut InstanceInner<T>) -> R {
    // SAFETY: `inner` is live: the fiber is only resumed by its instance.
    match unsafe { (*inner).resume_action.take() } {
        Some(ResumeAction::Value(value)) => match value.downcast::<R>() {
            Ok(value) => *value,
            Err(_) => exit::raise(GuestExit::HostError(Error::InvalidArgument(
                "resumed with a value of the wrong type".into(),
            ))),
        },
        Some(ResumeAction::Unwind(reason)) => exit::raise(reason),
        None => exit::raise(GuestExit::HostError(Error::InstanceState(
            "resumed without a value".into(),
        ))),
    }
}

/// Marks the unwind of a suspended guest whose instance is dropped or reset.
struct TornDown;

impl<T: 'static> Instance<T> {
    /// Wraps a core with a fresh guest stack, then runs the start function.
    pub(crate) fn new(core: Arc<InstanceCore>, data: T) -> Result<Instance<T>, Error> {
        let group = core.group();
        let config = core.module.engine().config().clone();
        let stack_size = config.stack_size + config.host_reserve;
        let first_defined = core.module.info().num_imported_memories as usize;
        let stack = match core
            .memories
            .get(first_defined)
            .and_then(|memory| memory.take_stack_room(stack_size))
        {
            Some(stack) => stack,
            None => backstop_asm::GuestStack::new(stack_size, 4096),
        }
        .map_err(|e| crate::mappings::mapping_failure("allocate a guest stack", e))?;
        let stack_limit = stack.usable_bottom() as usize + config.host_reserve;
        let host_floor = stack.usable_bottom() as usize + config.host_reserve / 2;
        let mut instance = Instance {
            inner: Box::new(InstanceInner {
                core,
                stack,
                stack_limit,
                host_floor,
                state: InstanceState::Ready,
                fiber: backstop_asm::FiberState::new(),
                slots: Vec::new(),
                suspension: None,
                yielded: None,
                resume_action: None,
                snapshot: None,
                group,
                kill: KillShared::new(config.interrupt_checks),
                run: exit::CurrentRun::NONE,
                data,
            }),
        };
        let inner = &mut *instance.inner;
        inner.run = exit::CurrentRun {
            fiber: &mut inner.fiber,
            kill: Arc::as_ptr(&inner.kill),
            stack: (
                inner.stack.usable_bottom() as usize,
                inner.stack.top() as usize,
            ),
            capture_backtraces: config.wasm_backtrace,
        };
        if let Some(start) = instance.inner.core.module.info().start {
            let func = instance.inner.core.func(start);
            let trampoline = func.trampoline();
            if let Outcome::Yielded(_) = instance.begin(guest_entry, func.raw, trampoline, &[])? {
                instance.tear_down_suspended();
                return Err(Error::InstanceState(
                    "the start function tried to suspend the guest".into(),
                ));
            }
        }
        instance.inner.snapshot = Some(instance.inner.core.snapshot());
        Ok(instance)
    }

    fn check_ready(&self) -> Result<(), Error> {
        match self.inner.state {
            InstanceState::Ready => Ok(()),
            InstanceState::Running => Err(Error::InstanceState(
                "the instance is already running a call".into(),
            )),
            InstanceState::Suspended => Err(Error::InstanceState(
                "the instance is suspended: resume it, reset it or drop it".into(),
            )),
            InstanceState::Poisoned => Err(Error::InstanceState(
                "the instance is poisoned: a host function panicked during an earlier call; \
                 reset it to use it again"
                    .into(),
            )),
        }
    }

    /// Starts a root call of the function `raw` on this instance's guest
    /// stack. The arguments are in `self.inner.slots`; so are the results
    /// once it returns.
    fn begin(
        &mut self,
        entry: unsafe extern "C-unwind" fn(*mut u8),
        raw: *const VMFuncRef,
        trampoline: usize,
        results: &[ValType],
    ) -> Result<Outcome<()>, Error> {
        self.check_ready()?;
        crate::signals::ensure_ready();
        if !self.inner.kill.begin_run() {
            return Err(Error::Killed);
        }
        let inner: *mut InstanceInner<T> = &mut *self.inner;
        // SAFETY: `inner` is live and exclusively ours for the call; the
        // vmctx header fields are written before any code reads them.
        let mut args = unsafe {
            let vmctx = (*inner).core.vmctx_ptr();
            *(vmctx.add(VMCTX_STACK_LIMIT as usize) as *mut usize) = (*inner).stack_limit;
            *(vmctx.add(VMCTX_ACTIVATION as usize) as *mut usize) = inner as usize;
            *(vmctx.add(VMCTX_INTERRUPT as usize) as *mut usize) =
                &(*Arc::as_ptr(&(*inner).kill)).flag as *const _ as usize;
            EntryArgs {
                entry,
                raw,
                trampoline,
                caller_vmctx: vmctx,
                slots: (*inner).slots.as_mut_ptr(),
            }
        };
        self.inner.state = InstanceState::Running;
        self.switch(Some(&mut args), results)
    }

    /// Runs the guest until it returns, suspends or unwinds: starts it
    /// (`args`) or resumes it (`None`).
    fn switch(
        &mut self,
        args: Option<&mut EntryArgs>,
        results: &[ValType],
    ) -> Result<Outcome<()>, Error> {
        let inner: *mut InstanceInner<T> = &mut *self.inner;
        // An outer run on this thread may be ending (this call comes from
        // a destructor during its unwind): keep its reason apart.
        let outer_exit = exit::swap_pending_raw(std::ptr::null_mut());
        let outer_run = exit::swap_current_run(&self.inner.run);
        // SAFETY: the fiber state and stack live in `inner`, which outlives
        // the fiber; `args` satisfies `guest_entry`; a resume only happens
        // when the fiber is suspended (checked by the callers).
        let result = catch_unwind(AssertUnwindSafe(|| unsafe {
            match args {
                Some(args) => backstop_asm::fiber_start(
                    &mut (*inner).fiber,
                    (*inner).stack.top(),
                    args.entry,
                    args as *mut EntryArgs as *mut u8,
                ),
                None => backstop_asm::fiber_resume(&mut (*inner).fiber),
            }
        }));
        let own_exit = exit::swap_pending_raw(outer_exit);
        exit::swap_current_run(outer_run);
        // A trap with nothing to unwind left the guest stack directly
        // (`exit::trap_in_guest_code`); it ends the run like an unwind.
        let result = match result {
            Ok(backstop_asm::FiberExit::Abandoned) => {
                Err(Box::new(ExitUnwind) as Box<dyn Any + Send>)
            }
            other => other,
        };
        if result.is_ok() && !own_exit.is_null() {
            // SAFETY: from the swap above; a reason left pending by a run
            // that still returned normally is stale: drop it.
            drop(unsafe { exit::from_raw_pending(own_exit) });
        }
        match result {
            Ok(backstop_asm::FiberExit::Abandoned) => unreachable!("mapped to an unwind above"),
            Ok(backstop_asm::FiberExit::Returned) => {
                self.inner.state = InstanceState::Ready;
                self.inner.kill.end_run();
                Ok(Outcome::Returned(()))
            }
            Ok(backstop_asm::FiberExit::Suspended) => {
                let (value, resume_type, resume_type_name) = self
                    .inner
                    .yielded
                    .take()
                    .expect("the guest suspends only through suspend_current");
                self.inner.state = InstanceState::Suspended;
                self.inner.kill.set_suspended(true);
                self.inner.suspension = Some(Suspension {
                    results: results.into(),
                    resume_type,
                    resume_type_name,
                });
                Ok(Outcome::Yielded(value))
            }
            Err(payload) => {
                self.inner.state = InstanceState::Ready;
                self.inner.kill.end_run();
                // SAFETY: `own_exit` came from the swap just above.
                let own_exit = unsafe { exit::from_raw_pending(own_exit) };
                self.classify_unwind(payload, own_exit)
                    .map(|()| Outcome::Returned(()))
            }
        }
    }

    /// Turns what unwound out of the guest into the call's result.
    fn classify_unwind(
        &mut self,
        payload: Box<dyn Any + Send>,
        exit: Option<GuestExit>,
    ) -> Result<(), Error> {
        if payload.is::<ExitUnwind>() {
            return Err(match exit {
                Some(GuestExit::Trap(trap)) if trap.code() == TrapCode::Interrupt => Error::Killed,
                Some(GuestExit::Trap(trap)) => Error::Trap(trap),
                Some(GuestExit::Killed) => Error::Killed,
                Some(GuestExit::HostError(error)) => error,
                Some(GuestExit::Terminated(details)) => Error::Terminated(details),
                None => Error::InstanceState("the guest's run ended without a reason".into()),
            });
        }
        // A host panic: the instance may be inconsistent now.
        self.inner.state = InstanceState::Poisoned;
        std::panic::resume_unwind(payload)
    }

    /// Resumes a suspended guest: the host function that called
    /// `Caller::suspend::<V>` gets `value` (which must be a `V`) back, and
    /// the guest continues. `R` must be the result type of the suspended
    /// call. If a kill switch fired meanwhile, the run ends with
    /// `Error::Killed` instead, every frame unwound.
    pub fn resume<R: WasmValues>(&mut self, value: impl Any + Send) -> Result<Outcome<R>, Error> {
        if self.inner.state != InstanceState::Suspended {
            return Err(Error::InstanceState(format!(
                "only a suspended instance can be resumed (this one is {:?})",
                self.inner.state
            )));
        }
        let suspension = self.inner.suspension.as_ref().expect("suspended");
        if &*suspension.results != R::TYPES {
            return Err(Error::InvalidArgument(format!(
                "the suspended call returns {}, not {}",
                type_list(&suspension.results),
                type_list(R::TYPES)
            )));
        }
        if value.type_id() != suspension.resume_type {
            return Err(Error::InvalidArgument(format!(
                "the suspended host function expects a resume value of type {}, not {}",
                suspension.resume_type_name,
                std::any::type_name_of_val(&value)
            )));
        }
        crate::signals::ensure_ready();
        // Running first, then the kill check: a kill switch that still saw
        // the run suspended has set the flag by now (see `KillSwitch`).
        self.inner.kill.set_suspended(false);
        let action = if self.inner.kill.is_requested() {
            ResumeAction::Unwind(GuestExit::Killed)
        } else {
            ResumeAction::Value(Box::new(value))
        };
        self.inner.resume_action = Some(action);
        let results = self.inner.suspension.take().expect("suspended").results;
        self.inner.state = InstanceState::Running;
        Ok(match self.switch(None, &results)? {
            Outcome::Returned(()) => Outcome::Returned(R::load(&self.inner.slots)),
            Outcome::Yielded(value) => Outcome::Yielded(value),
        })
    }

    /// Ends a suspended guest: resumes it into an unwind, so every host
    /// frame on its stack runs its destructors. A host panic during that
    /// unwind is swallowed (there is nobody to report it to).
    fn tear_down_suspended(&mut self) {
        if self.inner.state != InstanceState::Suspended {
            return;
        }
        let details = crate::exit::TerminationDetails::new(Box::new(TornDown));
        self.inner.resume_action = Some(ResumeAction::Unwind(GuestExit::Terminated(details)));
        let results = self
            .inner
            .suspension
            .take()
            .map(|s| s.results)
            .unwrap_or_default();
        self.inner.state = InstanceState::Running;
        self.inner.kill.set_suspended(false);
        let _ = catch_unwind(AssertUnwindSafe(|| self.switch(None, &results)));
        if self.inner.state == InstanceState::Poisoned {
            return;
        }
        self.inner.state = InstanceState::Ready;
    }

    /// The instance's state.
    ///
    /// | from      | event                                   | to        |
    /// |-----------|-----------------------------------------|-----------|
    /// | Ready     | `call` starts                           | Running   |
    /// | Running   | returns, traps, terminated, host `Err`, killed | Ready |
    /// | Running   | a host function calls `Caller::suspend` | Suspended |
    /// | Running   | a host function panics (re-raised)      | Poisoned  |
    /// | Suspended | `resume` with the right value type      | Running   |
    /// | Suspended | `resume` with a wrong type / `call`     | Suspended (error) |
    /// | Suspended | `reset` (frames unwound first)          | Ready     |
    /// | Suspended | drop (frames unwound first)             | -         |
    /// | Ready     | `resume`                                | Ready (error) |
    /// | Poisoned  | `call` / `resume`                       | Poisoned (error) |
    /// | Poisoned  | `reset`                                 | Ready     |
    /// | Ready     | `reset`                                 | Ready     |
    pub fn state(&self) -> InstanceState {
        self.inner.state
    }

    /// Restores this instance's memories, tables and globals (those it
    /// defines; imported ones belong to others) and its segments to their
    /// state right after instantiation, without recompiling or remapping.
    /// Makes a poisoned instance usable again; a suspended guest is unwound
    /// first (every host frame on its stack runs its destructors). Kill
    /// switches made before the reset no longer target anything.
    pub fn reset(&mut self) -> Result<(), Error> {
        self.tear_down_suspended();
        let snapshot = self
            .inner
            .snapshot
            .as_ref()
            .expect("taken at instantiation");
        self.inner.core.restore(snapshot)?;
        self.inner.kill.skip_run();
        self.inner.state = InstanceState::Ready;
        Ok(())
    }

    /// Calls the exported function `name`, allowing the guest to suspend:
    /// returns `Outcome::Yielded` if a host function suspended it.
    pub fn call_resumable<P: WasmValues, R: WasmValues>(
        &mut self,
        name: &str,
        params: P,
    ) -> Result<Outcome<R>, Error> {
        let (raw, trampoline) = self.inner.core.export_entry::<P, R>(name)?;
        self.run_typed(raw, trampoline, params)
    }

    /// Calls the exported function `name` with typed parameters and results.
    /// If a host function suspends the guest, this returns `Error::Yielded`
    /// and the instance stays suspended.
    pub fn call<P: WasmValues, R: WasmValues>(
        &mut self,
        name: &str,
        params: P,
    ) -> Result<R, Error> {
        match self.call_resumable(name, params)? {
            Outcome::Returned(results) => Ok(results),
            Outcome::Yielded(value) => Err(Error::Yielded(value)),
        }
    }

    /// A root call of `raw` with typed parameters and results, through this
    /// instance's slots.
    fn run_typed<P: WasmValues, R: WasmValues>(
        &mut self,
        raw: *const VMFuncRef,
        trampoline: usize,
        params: P,
    ) -> Result<Outcome<R>, Error> {
        let count = P::TYPES.len().max(R::TYPES.len()).max(1);
        let slots = &mut self.inner.slots;
        if slots.len() < count {
            slots.resize(count, 0);
        }
        params.store(slots);
        let entry = if P::HAS_NATIVE_PARAMS && R::HAS_NATIVE_RESULT {
            typed_guest_entry::<P, R>
        } else {
            guest_entry
        };
        Ok(match self.begin(entry, raw, trampoline, R::TYPES)? {
            Outcome::Returned(()) => Outcome::Returned(R::load(&self.inner.slots)),
            Outcome::Yielded(value) => Outcome::Yielded(value),
        })
    }

    /// A typed handle for the exported function `name`, checked once, for
    /// calling in hot loops.
    pub fn typed_func<P: WasmValues, R: WasmValues>(
        &self,
        name: &str,
    ) -> Result<TypedFunc<P, R>, Error> {
        self.inner.core.typed_export(name)
    }

    /// Calls the exported function `name` with dynamically typed values.
    pub fn call_dynamic(&mut self, name: &str, args: &[Val]) -> Result<Vec<Val>, Error> {
        let func = self
            .get_func(name)
            .ok_or_else(|| Error::InvalidArgument(format!("no exported function `{name}`")))?;
        self.call_func(&func, args)
    }

    /// Calls any function (of this or a linked instance) as a root call on
    /// this instance's stack.
    pub fn call_func(&mut self, func: &Func, args: &[Val]) -> Result<Vec<Val>, Error> {
        if !func
            .core
            .module
            .engine()
            .same(self.inner.core.module.engine())
        {
            return Err(Error::InvalidArgument(
                "the function belongs to another engine".into(),
            ));
        }
        let ty = func.ty();
        self.check_ready()?;
        let slots = args_to_slots(&ty, args)?;
        // The guest may store function references it is given: they join
        // this instance's group (as does the callee, if linked from elsewhere).
        for arg in args {
            if let Val::FuncRef(Some(f)) = arg {
                f.check_engine(self.inner.core.module.engine())?;
                self.inner.group.merge(&f.group);
            }
        }
        self.inner.group.merge(&func.group);
        self.inner.slots = slots;
        match self.begin(guest_entry, func.raw, func.trampoline(), ty.results())? {
            // SAFETY: the function stored results of its declared types.
            Outcome::Returned(()) => Ok(unsafe { slots_to_results(&ty, &self.inner.slots) }),
            Outcome::Yielded(value) => Err(Error::Yielded(value)),
        }
    }

    /// The exported function `name`.
    pub fn get_func(&self, name: &str) -> Option<Func> {
        self.inner.core.export_func(name)
    }

    /// The exported memory `name`.
    pub fn get_memory(&self, name: &str) -> Option<Memory> {
        self.inner.core.export_memory(name)
    }

    /// The bytes of the exported memory `name`.
    pub fn memory(&self, name: &str) -> Option<&[u8]> {
        let memory = self.inner.core.export_memory(name)?;
        // SAFETY: see `Memory::data`; `&self` keeps calls from running.
        Some(unsafe { &*(memory.data() as *const [u8]) })
    }

    /// The bytes of the exported memory `name`, mutably.
    pub fn memory_mut(&mut self, name: &str) -> Option<&mut [u8]> {
        let memory = self.inner.core.export_memory(name)?;
        // SAFETY: see `Memory::data_mut`; `&mut self` keeps calls from
        // running while the slice lives.
        Some(unsafe { &mut *(memory.data_mut() as *mut [u8]) })
    }

    /// The exported table `name`.
    pub fn get_table(&self, name: &str) -> Option<Table> {
        match self.inner.core.export(name)? {
            (ExportKind::Table, index) => Some(self.inner.core.table_handle(index)),
            _ => None,
        }
    }

    /// The exported global `name`.
    pub fn get_global(&self, name: &str) -> Option<Global> {
        match self.inner.core.export(name)? {
            (ExportKind::Global, index) => Some(self.inner.core.global_handle(index)),
            _ => None,
        }
    }

    /// The export `name`, of any kind.
    pub fn get_export(&self, name: &str) -> Option<crate::Extern> {
        let (kind, index) = self.inner.core.export(name)?;
        let core = &self.inner.core;
        Some(match kind {
            ExportKind::Func => crate::Extern::Func(core.func(index)),
            ExportKind::Table => crate::Extern::Table(core.table_handle(index)),
            ExportKind::Memory => crate::Extern::Memory(core.memory_handle(index)),
            ExportKind::Global => crate::Extern::Global(core.global_handle(index)),
        })
    }

    /// Every export, with its name.
    pub fn exports(&self) -> Vec<(String, crate::Extern)> {
        self.inner
            .core
            .module
            .info()
            .exports
            .iter()
            .filter_map(|e| Some((e.name.clone(), self.get_export(&e.name)?)))
            .collect()
    }

    /// The module this is an instance of.
    pub fn module(&self) -> &Module {
        &self.inner.core.module
    }

    /// The embedder's data.
    pub fn data(&self) -> &T {
        &self.inner.data
    }

    pub fn data_mut(&mut self) -> &mut T {
        &mut self.inner.data
    }

    /// A switch that stops this instance's current run, or its next one if
    /// it is idle, from any thread. See `KillSwitch::terminate`.
    pub fn kill_switch(&self) -> KillSwitch {
        self.inner.kill.switch()
    }

    /// Whether a host panic left this instance unusable (until `reset`).
    pub fn is_poisoned(&self) -> bool {
        self.inner.state == InstanceState::Poisoned
    }
}

impl<T: 'static> Drop for Instance<T> {
    fn drop(&mut self) {
        // A suspended guest still has live host frames: unwind them, so
        // their destructors run before the stack is freed.
        self.tear_down_suspended();
        self.inner.kill.mark_dead();
    }
}

/// Fails unless a function of type `ty` can be called as `P -> R`.
fn check_typed<P: WasmValues, R: WasmValues>(ty: &FuncType) -> Result<(), Error> {
    if ty.params() != P::TYPES || ty.results() != R::TYPES {
        return Err(Error::InvalidArgument(format!(
            "function has type {ty}, but was used as {} -> {}",
            type_list(P::TYPES),
            type_list(R::TYPES)
        )));
    }
    Ok(())
}

/// A function handle with its type checked once, for hot loops.
pub struct TypedFunc<P, R> {
    raw: *const VMFuncRef,
    trampoline: usize,
    func: Func,
    _types: PhantomData<fn(P) -> R>,
}

// SAFETY: the raw pointers point into `func`'s instance, kept alive by `func`.
unsafe impl<P, R> Send for TypedFunc<P, R> {}
// SAFETY: as above.
unsafe impl<P, R> Sync for TypedFunc<P, R> {}

impl<P: WasmValues, R: WasmValues> TypedFunc<P, R> {
    fn new(func: Func) -> Result<Self, Error> {
        check_typed::<P, R>(&func.ty())?;
        Ok(TypedFunc {
            raw: func.raw,
            trampoline: func.trampoline(),
            func,
            _types: PhantomData,
        })
    }

    /// Calls the function as a root call of `instance`. If a host function
    /// suspends the guest, this returns `Error::Yielded` and the instance
    /// stays suspended; use `call_resumable` to treat that as an outcome.
    pub fn call<T: 'static>(&self, instance: &mut Instance<T>, params: P) -> Result<R, Error> {
        match self.call_resumable(instance, params)? {
            Outcome::Returned(results) => Ok(results),
            Outcome::Yielded(value) => Err(Error::Yielded(value)),
        }
    }

    /// Calls the function as a root call of `instance`, allowing the guest
    /// to suspend (see `Instance::resume`).
    pub fn call_resumable<T: 'static>(
        &self,
        instance: &mut Instance<T>,
        params: P,
    ) -> Result<Outcome<R>, Error> {
        if !Arc::ptr_eq(&self.func.core, &instance.inner.core)
            && !self
                .func
                .core
                .module
                .engine()
                .same(instance.inner.core.module.engine())
        {
            return Err(Error::InvalidArgument(
                "the function belongs to another engine".into(),
            ));
        }
        instance.run_typed(self.raw, self.trampoline, params)
    }

    /// The underlying function.
    pub fn func(&self) -> &Func {
        &self.func
    }
}
