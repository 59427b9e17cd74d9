//! Instantiation (resolved imports in, a filled vmctx, segments applied and
//! the start function run), the handles `InstanceCore` hands out for its
//! exports, and the `Instance` handle with its calls by name. `TypedFunc` is a function
//! handle whose type was checked once.

use crate::api::calls::{self, Outcome};
use crate::api::values::{type_list, Func, Val, WasmValues};
use crate::compile::module::Module;
use crate::store::instance::{eval_const, ElementState, InstanceCore, Resolved};
use crate::store::storage::{GlobalStorage, MemoryStorage, TableStorage};
use crate::store::vm::Callee;
use crate::store::vm::{VMContextStorage, VMFuncRef, BUILTINS};
use crate::store::{AsContext, AsContextMut, StoreContext, StoreId, StoreInner, StoreParts};
use crate::{Error, Extern, Global, Memory, Table, Trap, TrapCode};
use backstop_jit::vmoffsets::*;
use backstop_jit::{DataMode, ElementMode, ExportKind, FuncType};
use std::cell::Cell;
use std::marker::PhantomData;

impl InstanceCore {
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
        calls::run_start(store, callee)?;
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
        calls::call_typed(store, callee, params)
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
        calls::call_dynamic(store, callee, &ty, args)
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
        calls::call_typed(store, self.callee(), params)
    }

    /// The untyped function.
    pub fn func(&self) -> Func {
        // SAFETY: `raw` came from a Func of store `self.store`.
        unsafe { Func::from_raw(self.store, self.raw as *const VMFuncRef) }
    }
}
