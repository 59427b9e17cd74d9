//! `InstanceCore`: the vmctx and everything compiled code of one instance
//! reaches (its memories, tables, globals, function references and segment
//! state, all owned by its store), and what `Store::reset` puts back (the
//! snapshot taken right after instantiation). Instantiation itself and the
//! `Instance` handle are `crate::api::instance`.

use crate::compile::module::Module;
use crate::error::Error;
use crate::store::storage::{GlobalStorage, MemoryChunks, MemoryStorage, TableStorage};
use crate::store::vm::{Callee, VMContextStorage, VMFuncRef};
use crate::store::StoreParts;
use backstop_jit::vmoffsets::*;
use backstop_jit::{ConstBinary, ConstExpr, ConstOp, ConstValue, DataMode, ExportKind};
use std::cell::Cell;

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

pub(crate) struct ElementState {
    pub(crate) items: Box<[usize]>,
    pub(crate) dropped: Cell<bool>,
}

/// Everything compiled code of one instance reaches, behind its vmctx. The
/// items themselves belong to the store: the core holds their store
/// indices (for handles) and addresses (for the vmctx and the builtins),
/// which stay valid as long as the store, which outlives the core.
pub(crate) struct InstanceCore {
    pub(crate) module: Module,
    /// Its index in the store (for `Caller::instance`).
    pub(crate) index: u32,
    pub(crate) vmctx: VMContextStorage,
    pub(crate) memories: Vec<(u32, *const MemoryStorage)>,
    pub(crate) tables: Vec<(u32, *const TableStorage)>,
    pub(crate) globals: Vec<(u32, *const GlobalStorage)>,
    pub(crate) elements: Vec<ElementState>,
    pub(crate) data_dropped: Vec<Cell<bool>>,
    /// What `Store::reset` restores; taken after the start function ran.
    pub(crate) snapshot: Option<Snapshot>,
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

    pub(crate) fn global(&self, index: u32) -> &GlobalStorage {
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

    pub(crate) fn func_ref(&self, index: u32) -> *mut VMFuncRef {
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

    pub(crate) fn export(&self, name: &str) -> Option<(ExportKind, u32)> {
        self.module.info().export(name).map(|e| (e.kind, e.index))
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
    pub(crate) fn take_snapshot(&self) -> Snapshot {
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
    pub(crate) fn eval_const(&self, expr: &ConstExpr, func_ref: impl Fn(u32) -> usize) -> u128 {
        eval_const(expr, |g| self.global(g).get_raw(), func_ref)
    }
}

/// What `Store::reset` restores of an instance: its own (not imported)
/// memories, tables, globals and segments, as they were right after
/// instantiation (start function included).
pub(crate) struct Snapshot {
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

/// Evaluates a constant expression (validated: its types line up).
pub(crate) fn eval_const(
    expr: &ConstExpr,
    global: impl Fn(u32) -> u128,
    func_ref: impl Fn(u32) -> usize,
) -> u128 {
    let value = |value: &ConstValue| match *value {
        ConstValue::I32(v) => u128::from(v as u32),
        ConstValue::I64(v) => u128::from(v as u64),
        ConstValue::F32(v) => u128::from(v),
        ConstValue::F64(v) => u128::from(v),
        ConstValue::V128(v) => v,
        ConstValue::RefNull(_) => 0,
        ConstValue::RefFunc(f) => func_ref(f) as u128,
        ConstValue::GlobalGet(g) => global(g),
    };
    let ops = match expr {
        ConstExpr::Single(single) => return value(single),
        ConstExpr::Sequence(ops) => ops,
    };
    // Extended constant expressions: a value stack of i32/i64 arithmetic.
    let mut stack: Vec<u128> = Vec::with_capacity(4);
    for op in ops.iter() {
        let result = match op {
            ConstOp::Push(pushed) => value(pushed),
            ConstOp::Binary(binary) => {
                let (b, a) = (stack.pop().unwrap_or(0), stack.pop().unwrap_or(0));
                let (a32, b32, a64, b64) = (a as u32, b as u32, a as u64, b as u64);
                match binary {
                    ConstBinary::I32Add => u128::from(a32.wrapping_add(b32)),
                    ConstBinary::I32Sub => u128::from(a32.wrapping_sub(b32)),
                    ConstBinary::I32Mul => u128::from(a32.wrapping_mul(b32)),
                    ConstBinary::I64Add => u128::from(a64.wrapping_add(b64)),
                    ConstBinary::I64Sub => u128::from(a64.wrapping_sub(b64)),
                    ConstBinary::I64Mul => u128::from(a64.wrapping_mul(b64)),
                }
            }
        };
        stack.push(result);
    }
    stack.pop().unwrap_or(0)
}
