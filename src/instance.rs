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

use crate::exit::{self, ExitUnwind, GuestExit};
use crate::externals::{Global, Memory, Table};
use crate::group::{Group, GroupCell};
use crate::kill::{KillShared, KillSwitch};
use crate::module::Module;
use crate::values::{type_list, Func, Val, WasmValues};
use crate::vm::{VMContextStorage, VMFuncRef, BUILTINS};
use crate::{Error, Trap, TrapCode};
use backstop_jit::vmoffsets::*;
use backstop_jit::{ConstExpr, DataMode, ElementMode, ExportKind, FuncType};
use std::any::Any;
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

    /// Runs `func` directly on the current (guest) stack.
    ///
    /// # Safety
    /// Must run on the guest stack of a root call (inside a host function),
    /// with `slots` holding the arguments and room for the results.
    pub(crate) unsafe fn invoke_nested(&self, func: &Func, slots: *mut u128) {
        // SAFETY: forwarded from the contract; `func` keeps its code alive.
        unsafe { invoke_in_activation(func.raw, func.trampoline(), self.vmctx_ptr(), slots) }
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
    // SAFETY: forwarded from the contract; every callee vmctx starts with the
    // stack-limit and activation words.
    unsafe {
        let func_ref = *raw;
        let callee_vmctx = func_ref.vmctx as *mut usize;
        for field in VMCTX_PROPAGATED {
            let word = field as usize / 8;
            *callee_vmctx.add(word) = *(caller_vmctx as *const usize).add(word);
        }
        let trampoline: Trampoline = std::mem::transmute(trampoline);
        trampoline(
            func_ref.native_call,
            func_ref.vmctx,
            caller_vmctx as usize,
            slots,
        );
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
    for ty in &info.memories[info.num_imported_memories as usize..] {
        memories.push(Memory::new(engine, *ty)?);
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
                if !core.tables[*table as usize].init_raw(offset, items) {
                    return Err(Error::Trap(Trap::new(TrapCode::TableOutOfBounds)));
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
            if core.memories[*memory as usize]
                .write(offset as usize, &segment.bytes)
                .is_err()
            {
                return Err(Error::Trap(Trap::new(TrapCode::MemoryOutOfBounds)));
            }
            core.drop_data(index as u32);
        }
    }
    Ok(core)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Ready,
    Running,
    Poisoned,
}

/// The activation record of an instance: what `vmctx.activation` points to
/// during a call, and what host functions reach through `Caller`.
pub(crate) struct InstanceInner<T> {
    pub(crate) core: Arc<InstanceCore>,
    stack: backstop_asm::GuestStack,
    stack_limit: usize,
    state: State,
    /// Functions passed in as arguments, kept alive in case the guest
    /// stored them.
    group: Group,
    pub(crate) kill: Arc<KillShared>,
    pub(crate) data: T,
}

/// An instance of a module, with its own guest stack and the embedder's
/// data `T`. `Send` when `T` is.
pub struct Instance<T> {
    inner: Box<InstanceInner<T>>,
}

impl<T> std::fmt::Debug for Instance<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("module", &self.inner.core.module)
            .field("state", &self.inner.state)
            .finish()
    }
}

/// What the guest-stack entry function needs, passed by pointer.
struct EntryArgs {
    raw: *const VMFuncRef,
    trampoline: usize,
    caller_vmctx: *mut u8,
    slots: *mut u128,
}

/// The first frame on the guest stack.
unsafe extern "C-unwind" fn guest_entry(arg: *mut u8) {
    // SAFETY: `arg` is the EntryArgs of `invoke`, alive for the whole call,
    // whose fields satisfy `invoke_in_activation`'s contract.
    unsafe {
        let args = &*(arg as *const EntryArgs);
        invoke_in_activation(args.raw, args.trampoline, args.caller_vmctx, args.slots);
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

impl<T: 'static> Instance<T> {
    /// Wraps a core with a fresh guest stack, then runs the start function.
    pub(crate) fn new(core: Arc<InstanceCore>, data: T) -> Result<Instance<T>, Error> {
        let group = core.group();
        let config = core.module.engine().config();
        let stack = backstop_asm::GuestStack::new(config.stack_size + config.host_reserve, 4096)
            .map_err(|e| Error::Resource(format!("cannot allocate a guest stack: {e}")))?;
        let stack_limit = stack.usable_bottom() as usize + config.host_reserve;
        let mut instance = Instance {
            inner: Box::new(InstanceInner {
                core,
                stack,
                stack_limit,
                state: State::Ready,
                group,
                kill: KillShared::new(),
                data,
            }),
        };
        if let Some(start) = instance.inner.core.module.info().start {
            let func = instance.inner.core.func(start);
            let trampoline = func.trampoline();
            instance.invoke(func.raw, trampoline, [0u128; 1].as_mut_ptr())?;
        }
        Ok(instance)
    }

    /// Runs a function as a root call on this instance's guest stack.
    fn invoke(
        &mut self,
        raw: *const VMFuncRef,
        trampoline: usize,
        slots: *mut u128,
    ) -> Result<(), Error> {
        match self.inner.state {
            State::Ready => {}
            State::Running => {
                return Err(Error::InstanceState(
                    "the instance is already running a call".into(),
                ))
            }
            State::Poisoned => {
                return Err(Error::InstanceState(
                    "the instance is poisoned: a host function panicked during an earlier call"
                        .into(),
                ))
            }
        }
        crate::signals::ensure_ready();
        if !self.inner.kill.begin_run() {
            return Err(Error::Killed);
        }
        let inner: *mut InstanceInner<T> = &mut *self.inner;
        // SAFETY: `inner` is live and exclusively ours for the call; the
        // vmctx header fields are written before any code reads them.
        unsafe {
            let vmctx = (*inner).core.vmctx_ptr();
            *(vmctx.add(VMCTX_STACK_LIMIT as usize) as *mut usize) = (*inner).stack_limit;
            *(vmctx.add(VMCTX_ACTIVATION as usize) as *mut usize) = inner as usize;
            *(vmctx.add(VMCTX_INTERRUPT as usize) as *mut usize) =
                &(*Arc::as_ptr(&(*inner).kill)).flag as *const _ as usize;
            (*inner).state = State::Running;
            let mut args = EntryArgs {
                raw,
                trampoline,
                caller_vmctx: vmctx,
                slots,
            };
            let top = (*inner).stack.top();
            let args_ptr = &mut args as *mut EntryArgs as *mut u8;
            // An outer run on this thread may be ending (this call comes from
            // a destructor during its unwind): keep its reason apart.
            let outer_exit = exit::take_pending();
            let result = catch_unwind(AssertUnwindSafe(|| {
                backstop_asm::call_on_stack(top, guest_entry, args_ptr)
            }));
            let own_exit = exit::take_pending();
            exit::restore_pending(outer_exit);
            (*inner).state = State::Ready;
            (*inner).kill.end_run();
            match result {
                Ok(()) => Ok(()),
                Err(payload) => self.classify_unwind(payload, own_exit),
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
        self.inner.state = State::Poisoned;
        std::panic::resume_unwind(payload)
    }

    /// Calls the exported function `name` with typed parameters and results.
    pub fn call<P: WasmValues, R: WasmValues>(
        &mut self,
        name: &str,
        params: P,
    ) -> Result<R, Error> {
        let func = self.inner.core.typed_export::<P, R>(name)?;
        func.call(self, params)
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
        let mut slots = args_to_slots(&ty, args)?;
        // The guest may store function references it is given: they join
        // this instance's group (as does the callee, if linked from elsewhere).
        for arg in args {
            if let Val::FuncRef(Some(f)) = arg {
                f.check_engine(self.inner.core.module.engine())?;
                self.inner.group.merge(&f.group);
            }
        }
        self.inner.group.merge(&func.group);
        self.invoke(func.raw, func.trampoline(), slots.as_mut_ptr())?;
        // SAFETY: the function stored results of its declared types.
        Ok(unsafe { slots_to_results(&ty, &slots) })
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

    /// Whether a host panic left this instance unusable.
    pub fn is_poisoned(&self) -> bool {
        self.inner.state == State::Poisoned
    }
}

impl<T> Drop for Instance<T> {
    fn drop(&mut self) {
        self.inner.kill.mark_dead();
    }
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
        let ty = func.ty();
        if ty.params() != P::TYPES || ty.results() != R::TYPES {
            return Err(Error::InvalidArgument(format!(
                "function has type {ty}, but was used as {} -> {}",
                type_list(P::TYPES),
                type_list(R::TYPES)
            )));
        }
        Ok(TypedFunc {
            raw: func.raw,
            trampoline: func.trampoline(),
            func,
            _types: PhantomData,
        })
    }

    /// Calls the function as a root call of `instance`.
    pub fn call<T: 'static>(&self, instance: &mut Instance<T>, params: P) -> Result<R, Error> {
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
        let mut small = [0u128; 16];
        let mut large;
        let count = P::TYPES.len().max(R::TYPES.len());
        let slots: &mut [u128] = if count <= small.len() {
            &mut small
        } else {
            large = vec![0u128; count];
            &mut large
        };
        params.store(slots);
        instance.invoke(self.raw, self.trampoline, slots.as_mut_ptr())?;
        Ok(R::load(slots))
    }

    /// The underlying function.
    pub fn func(&self) -> &Func {
        &self.func
    }
}
