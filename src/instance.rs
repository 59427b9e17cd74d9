//! Instances: `InstanceCore` (the vmctx and everything compiled code of one
//! instance reaches: its memories, tables, globals, function references and
//! segment state, all owned by its store), instantiation, reset, and the
//! `Instance` handle with its calls by name. `TypedFunc` is a function
//! handle whose type was checked once.

use crate::externals::{GlobalStorage, MemoryChunks, MemoryStorage, TableStorage};
use crate::module::Module;
use crate::run::{self, Callee, Outcome};
use crate::store::{AsContext, AsContextMut, StoreContext, StoreId, StoreInner, StoreParts};
use crate::values::{type_list, Func, Val, WasmValues};
use crate::vm::{VMContextStorage, VMFuncRef, BUILTINS};
use crate::{Error, Extern, Global, Memory, Table, Trap, TrapCode};
use backstop_jit::vmoffsets::*;
use backstop_jit::{ConstExpr, DataMode, ElementMode, ExportKind, FuncType};
use std::cell::Cell;
use std::marker::PhantomData;

/// A resolved function import: what goes into the importer's `VMFuncRef`.
pub(crate) struct FuncImport {
    pub(crate) native_call: usize,
    pub(crate) type_id: u32,
    pub(crate) vmctx: usize,
}

/// A resolved import of any kind, in import order; items by store index.
pub(crate) enum Resolved {
    Func(FuncImport),
    Table(u32),
    Memory(u32),
    Global(u32),
}

struct ElementState {
    items: Box<[usize]>,
    dropped: Cell<bool>,
}

/// Everything compiled code of one instance reaches, behind its vmctx. The
/// items themselves belong to the store: the core holds their store
/// indices (for handles) and addresses (for the vmctx and the builtins),
/// which stay valid as long as the store, which outlives the core.
pub(crate) struct InstanceCore {
    pub(crate) module: Module,
    /// Its index in the store (for `Caller::instance`).
    pub(crate) index: u32,
    vmctx: VMContextStorage,
    memories: Vec<(u32, *const MemoryStorage)>,
    tables: Vec<(u32, *const TableStorage)>,
    globals: Vec<(u32, *const GlobalStorage)>,
    elements: Vec<ElementState>,
    data_dropped: Vec<Cell<bool>>,
    /// What `Store::reset` restores; taken after the start function ran.
    snapshot: Option<Snapshot>,
}

impl InstanceCore {
    pub(crate) fn memory(&self, index: u32) -> &MemoryStorage {
        // SAFETY: the store owns the memory and outlives this core.
        unsafe { &*self.memories[index as usize].1 }
    }

    pub(crate) fn table(&self, index: u32) -> &TableStorage {
        // SAFETY: the store owns the table and outlives this core.
        unsafe { &*self.tables[index as usize].1 }
    }

    fn global(&self, index: u32) -> &GlobalStorage {
        // SAFETY: the store owns the global and outlives this core.
        unsafe { &*self.globals[index as usize].1 }
    }

    /// The bytes of passive data segment `index` (empty once dropped).
    pub(crate) fn data_segment(&self, index: u32) -> &[u8] {
        if self.data_dropped[index as usize].get() {
            &[]
        } else {
            &self.module.info().data[index as usize].bytes
        }
    }

    pub(crate) fn drop_data(&self, index: u32) {
        self.data_dropped[index as usize].set(true);
    }

    /// The resolved items of element segment `index` (empty once dropped).
    pub(crate) fn element_segment(&self, index: u32) -> &[usize] {
        let segment = &self.elements[index as usize];
        if segment.dropped.get() {
            &[]
        } else {
            &segment.items
        }
    }

    pub(crate) fn drop_element(&self, index: u32) {
        self.elements[index as usize].dropped.set(true);
    }

    pub(crate) fn vmctx_ptr(&self) -> *mut u8 {
        self.vmctx.ptr()
    }

    fn func_ref(&self, index: u32) -> *mut VMFuncRef {
        self.vmctx.func_ref(&self.module.compiled().offsets, index)
    }

    /// How to call function `index` of this instance from the host.
    pub(crate) fn callee(&self, index: u32) -> Callee {
        let info = self.module.info();
        Callee {
            raw: self.func_ref(index),
            trampoline: self.module.compiled().entry_trampolines
                [info.functions[index as usize] as usize],
            owner_vmctx: self.vmctx_ptr(),
        }
    }

    /// How to call the function whose `VMFuncRef` is `raw`, which lies in
    /// this core's vmctx.
    pub(crate) fn callee_for(&self, raw: *const VMFuncRef) -> Callee {
        let offsets = &self.module.compiled().offsets;
        let index = (raw as usize - self.vmctx_ptr() as usize - offsets.func_refs as usize)
            / FUNC_REF_SIZE as usize;
        self.callee(index as u32)
    }

    fn export(&self, name: &str) -> Option<(ExportKind, u32)> {
        self.module.info().export(name).map(|e| (e.kind, e.index))
    }

    /// The export `name`, as a handle of store `store`.
    pub(crate) fn export_extern(&self, store: StoreId, name: &str) -> Option<Extern> {
        let (kind, index) = self.export(name)?;
        Some(match kind {
            ExportKind::Func => Extern::Func(self.func(store, index)),
            ExportKind::Table => Extern::Table(Table {
                store,
                index: self.tables[index as usize].0,
            }),
            ExportKind::Memory => Extern::Memory(Memory {
                store,
                index: self.memories[index as usize].0,
            }),
            ExportKind::Global => Extern::Global(Global {
                store,
                index: self.globals[index as usize].0,
            }),
        })
    }

    pub(crate) fn func(&self, store: StoreId, index: u32) -> Func {
        // SAFETY: the VMFuncRef lies in this core's vmctx, which its store
        // keeps until it drops.
        unsafe { Func::from_raw(store, self.func_ref(index)) }
    }

    /// How to call the exported function `name`, after checking its type
    /// against `P -> R`. Reads only this module's own tables: no handle, no
    /// allocation (for calls by name).
    pub(crate) fn export_entry<P: WasmValues, R: WasmValues>(
        &self,
        name: &str,
    ) -> Result<Callee, Error> {
        let index = self.export_func_index(name)?;
        check_typed::<P, R>(self.module.info().func_type(index))?;
        Ok(self.callee(index))
    }

    pub(crate) fn export_func_index(&self, name: &str) -> Result<u32, Error> {
        match self.export(name) {
            Some((ExportKind::Func, index)) => Ok(index),
            Some(_) => Err(Error::InvalidArgument(format!(
                "the export `{name}` is not a function"
            ))),
            None => Err(Error::InvalidArgument(format!(
                "no exported function `{name}`"
            ))),
        }
    }

    /// The state `Store::reset` restores: this instance's own memories,
    /// tables and globals, and which segments are dropped.
    fn take_snapshot(&self) -> Snapshot {
        let info = self.module.info();
        let first_own = info.num_imported_memories as usize;
        let memories = (first_own..self.memories.len())
            .map(|i| {
                let memory = self.memory(i as u32);
                if info.start.is_some() {
                    return MemoryImage::Chunks(memory.snapshot_chunks());
                }
                let writes = info
                    .data
                    .iter()
                    .enumerate()
                    .filter_map(|(segment, data)| match &data.mode {
                        DataMode::Active { memory, offset } if *memory as usize == i => {
                            let offset = self.eval_const(offset, |_| 0) as u32;
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
            tables: (info.num_imported_tables..self.tables.len() as u32)
                .map(|i| self.table(i).elements_raw())
                .collect(),
            globals: (info.num_imported_globals..self.globals.len() as u32)
                .map(|i| self.global(i).get_raw())
                .collect(),
            elements_dropped: self.elements.iter().map(|e| e.dropped.get()).collect(),
            data_dropped: self.data_dropped.iter().map(Cell::get).collect(),
        }
    }

    /// Puts back what `take_snapshot` saved (nothing if instantiation
    /// failed before it).
    pub(crate) fn restore(&self, _parts: &StoreParts) -> Result<(), Error> {
        let Some(snapshot) = &self.snapshot else {
            return Ok(());
        };
        let info = self.module.info();
        let first_own = info.num_imported_memories as usize;
        for (i, image) in snapshot.memories.iter().enumerate() {
            let memory = self.memory((first_own + i) as u32);
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
        for (i, saved) in snapshot.tables.iter().enumerate() {
            self.table(info.num_imported_tables + i as u32)
                .restore_raw(saved);
        }
        for (i, saved) in snapshot.globals.iter().enumerate() {
            self.global(info.num_imported_globals + i as u32)
                .set_raw(*saved);
        }
        for (element, dropped) in self.elements.iter().zip(&snapshot.elements_dropped) {
            element.dropped.set(*dropped);
        }
        for (data, dropped) in self.data_dropped.iter().zip(&snapshot.data_dropped) {
            data.set(*dropped);
        }
        Ok(())
    }

    /// Evaluates a constant expression over this instance's globals.
    fn eval_const(&self, expr: &ConstExpr, func_ref: impl Fn(u32) -> usize) -> u128 {
        eval_const(expr, |g| self.global(g).get_raw(), func_ref)
    }
}

/// What `Store::reset` restores of an instance: its own (not imported)
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

/// Evaluates a constant expression.
fn eval_const(
    expr: &ConstExpr,
    global: impl Fn(u32) -> u128,
    func_ref: impl Fn(u32) -> usize,
) -> u128 {
    match *expr {
        ConstExpr::I32(v) => u128::from(v as u32),
        ConstExpr::I64(v) => u128::from(v as u64),
        ConstExpr::F32(v) => u128::from(v),
        ConstExpr::F64(v) => u128::from(v),
        ConstExpr::V128(v) => v,
        ConstExpr::RefNull(_) => 0,
        ConstExpr::RefFunc(f) => func_ref(f) as u128,
        ConstExpr::GlobalGet(g) => global(g),
    }
}

/// Instantiates `module` in `store` with resolved `imports`: creates its
/// memories, tables and globals in the store, fills the vmctx, applies the
/// active element and data segments, and runs the start function. A
/// segment out of bounds fails with a trap (earlier segments stay written,
/// and what was made stays in the store, as the spec says).
pub(crate) fn instantiate<T: 'static>(
    store: &mut StoreInner<T>,
    module: &Module,
    imports: Vec<Resolved>,
) -> Result<Instance, Error> {
    let compiled = module.compiled();
    let info = module.info();
    let offsets = &compiled.offsets;
    let own_memories = &info.memories[info.num_imported_memories as usize..];
    let own_tables = &info.tables[info.num_imported_tables as usize..];
    store
        .parts
        .resources
        .check_new_items(1, own_memories.len(), own_tables.len())?;

    let parts = &mut store.parts;
    let mut func_imports = Vec::new();
    let mut memories: Vec<(u32, *const MemoryStorage)> = Vec::new();
    let mut tables: Vec<(u32, *const TableStorage)> = Vec::new();
    let mut globals: Vec<(u32, *const GlobalStorage)> = Vec::new();
    for import in imports {
        match import {
            Resolved::Func(f) => func_imports.push(f),
            Resolved::Table(t) => tables.push((t, &*parts.tables[t as usize] as *const _)),
            Resolved::Memory(m) => memories.push((m, &*parts.memories[m as usize] as *const _)),
            Resolved::Global(g) => globals.push((g, &*parts.globals[g as usize] as *const _)),
        }
    }
    // The first memory of a store also holds the store's guest stack (one
    // mapping for both: `MemoryStorage::new`).
    for ty in own_memories {
        let room = if store.run.has_stack() {
            0
        } else {
            store.run.stack_room()
        };
        let memory = Box::new(MemoryStorage::new(
            &parts.engine,
            *ty,
            room,
            &parts.resources,
        )?);
        if room > 0 {
            store.run.ensure_stack(Some(&memory))?;
        }
        parts.resources.add_items(0, 1, 0);
        memories.push((parts.memories.len() as u32, &*memory as *const _));
        parts.memories.push(memory);
    }
    store.run.ensure_stack(None)?;
    for ty in own_tables {
        let table = Box::new(TableStorage::new(*ty, 0, &parts.resources)?);
        parts.resources.add_items(0, 0, 1);
        tables.push((parts.tables.len() as u32, &*table as *const _));
        parts.tables.push(table);
    }

    let vmctx = VMContextStorage::new(offsets.size);
    let func_ref_addr = |index: u32| vmctx.func_ref(offsets, index) as usize;
    for (i, init) in info.global_inits.iter().enumerate() {
        let ty = info.globals[info.num_imported_globals as usize + i];
        let value = eval_const(
            init,
            // SAFETY: earlier globals are live in the store.
            |g| unsafe { (*globals[g as usize].1).get_raw() },
            func_ref_addr,
        );
        let global = Box::new(GlobalStorage::new(ty, value));
        globals.push((parts.globals.len() as u32, &*global as *const _));
        parts.globals.push(global);
    }
    let elements: Vec<ElementState> = info
        .elements
        .iter()
        .map(|segment| ElementState {
            items: segment
                .items
                .iter()
                .map(|item| {
                    eval_const(
                        item,
                        // SAFETY: the globals are live in the store.
                        |g| unsafe { (*globals[g as usize].1).get_raw() },
                        func_ref_addr,
                    ) as usize
                })
                .collect(),
            dropped: Cell::new(false),
        })
        .collect();
    let data_dropped = (0..info.data.len()).map(|_| Cell::new(false)).collect();

    let core = Box::new(InstanceCore {
        module: module.clone(),
        index: parts.instances.len() as u32,
        vmctx,
        memories,
        tables,
        globals,
        elements,
        data_dropped,
        snapshot: None,
    });
    let core_ptr = &*core as *const InstanceCore as usize;
    let activation = &mut *store as *mut StoreInner<T> as usize;
    let interrupt = &store.run.kill.flag as *const _ as usize;
    let vmctx = &core.vmctx;
    // SAFETY: every offset comes from this module's VMOffsets, which sized
    // the storage; nothing runs on this vmctx yet.
    unsafe {
        vmctx.write_usize(VMCTX_BUILTINS, BUILTINS.0.as_ptr() as usize);
        vmctx.write_usize(VMCTX_INSTANCE, core_ptr);
        vmctx.write_usize(VMCTX_STACK_LIMIT, store.run.stack_limit);
        vmctx.write_usize(VMCTX_ACTIVATION, activation);
        vmctx.write_usize(VMCTX_INTERRUPT, interrupt);
        for (i, memory) in core.memories.iter().enumerate() {
            vmctx.write_usize(offsets.memory_base(i as u32), (*memory.1).base() as usize);
            vmctx.write_usize(
                offsets.memory_definition(i as u32),
                (*memory.1).definition_ptr() as usize,
            );
        }
        for (i, table) in core.tables.iter().enumerate() {
            vmctx.write_usize(offsets.table(i as u32), (*table.1).vm_ptr() as usize);
        }
        for (i, global) in core.globals.iter().enumerate() {
            vmctx.write_usize(offsets.global(i as u32), (*global.1).storage_ptr() as usize);
        }
        for (index, type_index) in info.functions.iter().enumerate() {
            let index = index as u32;
            let func_ref = match func_imports.get(index as usize) {
                Some(import) => VMFuncRef {
                    native_call: import.native_call,
                    type_id: import.type_id,
                    _pad: 0,
                    vmctx: import.vmctx,
                    owner: core_ptr,
                },
                None => VMFuncRef {
                    native_call: compiled.function_addresses
                        [(index - info.num_imported_functions) as usize],
                    type_id: compiled.type_ids[*type_index as usize],
                    _pad: 0,
                    vmctx: vmctx.ptr() as usize,
                    owner: core_ptr,
                },
            };
            vmctx.func_ref(offsets, index).write(func_ref);
        }
    }
    let instance = Instance {
        store: store.parts.id,
        index: store.parts.instances.len() as u32,
    };
    store.parts.instances.push(core);
    store.parts.resources.add_items(1, 0, 0);
    let core = store.parts.instance(instance.index);

    // Active segments, in order; then they count as dropped.
    for (index, segment) in info.elements.iter().enumerate() {
        match &segment.mode {
            ElementMode::Active { table, offset } => {
                let offset = core.eval_const(offset, |_| 0) as u32;
                let items = &core.elements[index].items;
                let target = core.table(*table);
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
            let offset = core.eval_const(offset, |_| 0) as u32;
            let target = core.memory(*memory);
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
    if let Some(start) = info.start {
        let callee = core.callee(start);
        run::run_start(store, callee)?;
    }
    let core = &mut store.parts.instances[instance.index as usize];
    core.snapshot = Some(core.take_snapshot());
    Ok(instance)
}

/// Converts dynamic arguments to slots, checking count, types and that
/// function references belong to the store; the slots have room for the
/// results too.
pub(crate) fn args_to_slots(
    parts: &StoreParts,
    ty: &FuncType,
    args: &[Val],
) -> Result<Vec<u128>, Error> {
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
        slots[i] = arg.to_raw_in(parts)?;
    }
    Ok(slots)
}

/// Reads results of `ty` from slots.
///
/// # Safety
/// The slots must hold results of `ty` written by compiled code of store
/// `store`.
pub(crate) unsafe fn slots_to_results(store: StoreId, ty: &FuncType, slots: &[u128]) -> Vec<Val> {
    ty.results()
        .iter()
        .enumerate()
        // SAFETY: forwarded from the contract.
        .map(|(i, t)| unsafe { Val::from_raw(slots[i], *t, store) })
        .collect()
}

/// An instance of a module, in the store that owns it. A small `Copy`
/// handle: every use takes that store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Instance {
    pub(crate) store: StoreId,
    pub(crate) index: u32,
}

impl Instance {
    /// This instance's core in `store`; panics if it belongs to another.
    #[track_caller]
    fn core<'a, T: 'static>(&self, store: &'a StoreInner<T>) -> &'a InstanceCore {
        store.parts.check(self.store, "an Instance");
        store.parts.instance(self.index)
    }

    fn core_checked<'a, T: 'static>(
        &self,
        store: &'a StoreInner<T>,
    ) -> Result<&'a InstanceCore, Error> {
        store.parts.ensure(self.store, "the instance")?;
        Ok(store.parts.instance(self.index))
    }

    /// The module this is an instance of.
    pub fn module<'a, T: 'static>(&self, store: impl Into<StoreContext<'a, T>>) -> &'a Module {
        &self.core(store.into().0).module
    }

    /// The export `name`, of any kind.
    pub fn get_export(&self, store: impl AsContext, name: &str) -> Option<Extern> {
        let store = store.as_context();
        self.core(store.0).export_extern(self.store, name)
    }

    /// Every export, with its name, in the module's order.
    pub fn exports(&self, store: impl AsContext) -> Vec<(String, Extern)> {
        let store = store.as_context();
        let core = self.core(store.0);
        core.module
            .info()
            .exports
            .iter()
            .filter_map(|e| Some((e.name.clone(), core.export_extern(self.store, &e.name)?)))
            .collect()
    }

    /// The exported function `name`.
    pub fn get_func(&self, store: impl AsContext, name: &str) -> Option<Func> {
        match self.get_export(store, name)? {
            Extern::Func(f) => Some(f),
            _ => None,
        }
    }

    /// The exported memory `name`.
    pub fn get_memory(&self, store: impl AsContext, name: &str) -> Option<Memory> {
        match self.get_export(store, name)? {
            Extern::Memory(m) => Some(m),
            _ => None,
        }
    }

    /// The exported table `name`.
    pub fn get_table(&self, store: impl AsContext, name: &str) -> Option<Table> {
        match self.get_export(store, name)? {
            Extern::Table(t) => Some(t),
            _ => None,
        }
    }

    /// The exported global `name`.
    pub fn get_global(&self, store: impl AsContext, name: &str) -> Option<Global> {
        match self.get_export(store, name)? {
            Extern::Global(g) => Some(g),
            _ => None,
        }
    }

    /// A typed handle for the exported function `name`, checked once, for
    /// calling in hot loops.
    pub fn get_typed_func<P: WasmValues, R: WasmValues>(
        &self,
        store: impl AsContext,
        name: &str,
    ) -> Result<TypedFunc<P, R>, Error> {
        let store = store.as_context();
        let core = self.core_checked(store.0)?;
        let callee = core.export_entry::<P, R>(name)?;
        Ok(TypedFunc::from_callee(self.store, callee))
    }

    /// Calls the exported function `name` with typed parameters and
    /// results. If a host function suspends the guest, this returns
    /// `Error::Yielded` and the store stays suspended.
    pub fn call<P: WasmValues, R: WasmValues>(
        &self,
        store: impl AsContextMut,
        name: &str,
        params: P,
    ) -> Result<R, Error> {
        match self.call_resumable(store, name, params)? {
            Outcome::Returned(results) => Ok(results),
            Outcome::Yielded(value) => Err(Error::Yielded(value)),
        }
    }

    /// Calls the exported function `name`, allowing the guest to suspend:
    /// returns `Outcome::Yielded` if a host function suspended it (see
    /// `Store::resume`).
    pub fn call_resumable<P: WasmValues, R: WasmValues>(
        &self,
        mut store: impl AsContextMut,
        name: &str,
        params: P,
    ) -> Result<Outcome<R>, Error> {
        let store = store.as_context_mut().0;
        let callee = self.core_checked(store)?.export_entry::<P, R>(name)?;
        run::call_typed(store, callee, params)
    }

    /// Calls the exported function `name` with dynamically typed values.
    pub fn call_dynamic(
        &self,
        mut store: impl AsContextMut,
        name: &str,
        args: &[Val],
    ) -> Result<Vec<Val>, Error> {
        let store = store.as_context_mut().0;
        let core = self.core_checked(store)?;
        let index = core.export_func_index(name)?;
        let ty = core.module.info().func_type(index).clone();
        let callee = core.callee(index);
        run::call_dynamic(store, callee, &ty, args)
    }
}

/// Fails unless a function of type `ty` can be called as `P -> R`.
pub(crate) fn check_typed<P: WasmValues, R: WasmValues>(ty: &FuncType) -> Result<(), Error> {
    if ty.params() != P::TYPES || ty.results() != R::TYPES {
        return Err(Error::InvalidArgument(format!(
            "function has type {ty}, but was used as {} -> {}",
            type_list(P::TYPES),
            type_list(R::TYPES)
        )));
    }
    Ok(())
}

/// A function handle with its type checked once, for hot loops. `Copy`,
/// like every handle; calls take the store it belongs to.
pub struct TypedFunc<P, R> {
    store: StoreId,
    raw: usize,
    trampoline: usize,
    owner_vmctx: usize,
    _types: PhantomData<fn(P) -> R>,
}

impl<P, R> Clone for TypedFunc<P, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P, R> Copy for TypedFunc<P, R> {}

impl<P, R> std::fmt::Debug for TypedFunc<P, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TypedFunc({:#x})", self.raw)
    }
}

impl<P: WasmValues, R: WasmValues> TypedFunc<P, R> {
    pub(crate) fn from_callee(store: StoreId, callee: Callee) -> Self {
        TypedFunc {
            store,
            raw: callee.raw as usize,
            trampoline: callee.trampoline,
            owner_vmctx: callee.owner_vmctx as usize,
            _types: PhantomData,
        }
    }

    fn callee(&self) -> Callee {
        Callee {
            raw: self.raw as *const VMFuncRef,
            trampoline: self.trampoline,
            owner_vmctx: self.owner_vmctx as *mut u8,
        }
    }

    /// Calls the function. If a host function suspends the guest, this
    /// returns `Error::Yielded` and the store stays suspended; use
    /// `call_resumable` to treat that as an outcome. From inside a host
    /// function (with its `Caller`), this is a nested call.
    #[inline]
    pub fn call(&self, store: impl AsContextMut, params: P) -> Result<R, Error> {
        match self.call_resumable(store, params)? {
            Outcome::Returned(results) => Ok(results),
            Outcome::Yielded(value) => Err(Error::Yielded(value)),
        }
    }

    /// Calls the function, allowing the guest to suspend (see
    /// `Store::resume`).
    #[inline]
    pub fn call_resumable(
        &self,
        mut store: impl AsContextMut,
        params: P,
    ) -> Result<Outcome<R>, Error> {
        let store = store.as_context_mut().0;
        store.parts.ensure(self.store, "the function")?;
        run::call_typed(store, self.callee(), params)
    }

    /// The untyped function.
    pub fn func(&self) -> Func {
        // SAFETY: `raw` came from a Func of store `self.store`.
        unsafe { Func::from_raw(self.store, self.raw as *const VMFuncRef) }
    }
}
