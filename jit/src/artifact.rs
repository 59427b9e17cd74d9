//! `Artifact`: a compiled module's code before it is loaded. One block of
//! machine code with every function laid out in it, the relocations still to
//! apply (link-time symbols and libcalls), and the metadata (layout, trap
//! sites, Wasm offsets, unwind info) as offsets into the block. It holds no
//! address and no engine-wide id of this process, so it is what a `.cwasm`
//! file stores (`cwasm`), and `load` turns it into a `CompiledModule` in
//! executable memory the same way for a fresh compilation and for a file.
//!
//! The symbols: compiled code needs two things only the loading process
//! knows, the engine-wide id of each function type (`call_indirect`
//! compares it) and the address of `INTERRUPTS_PENDING` (interrupt checks
//! load it). Both are Cranelift symbol values, `movabs` of a 64-bit
//! immediate with an `Abs8` relocation, filled in by `load`.

use crate::code_memory::{self, CodeMemory};
use crate::types::TrapCode;
use crate::vmoffsets::INTERRUPTS_PENDING;
use crate::{CodeKind, CompileError, CompiledModule, FuncType, FunctionLayout, ModuleInfo};
use crate::{OwnedTargetIsa, VMOffsets};
use cranelift_codegen::binemit::Reloc;
use cranelift_codegen::ir;
use cranelift_codegen::isa::unwind::systemv;
use serde::{Deserialize, Serialize};

/// Namespace of `ir::UserExternalName`s that name Wasm functions (direct
/// calls), by function index.
pub(crate) const NAMESPACE_FUNCTION: u32 = 0;
/// Namespace of `Symbol::TypeId`, by type index.
const NAMESPACE_TYPE_ID: u32 = 1;
/// Namespace of runtime symbols; index 0 is `INTERRUPTS_PENDING`.
const NAMESPACE_RUNTIME: u32 = 2;

/// A value compiled code takes from the process that loads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum Symbol {
    /// The engine-wide id of the function type with this type index.
    TypeId(u32),
    /// The address of `INTERRUPTS_PENDING`.
    InterruptsPending,
}

impl Symbol {
    /// The `ir::UserExternalName` (namespace, index) that stands for it.
    pub(crate) fn name(self) -> (u32, u32) {
        match self {
            Symbol::TypeId(type_index) => (NAMESPACE_TYPE_ID, type_index),
            Symbol::InterruptsPending => (NAMESPACE_RUNTIME, 0),
        }
    }

    pub(crate) fn from_name(namespace: u32, index: u32) -> Option<Symbol> {
        match (namespace, index) {
            (NAMESPACE_TYPE_ID, type_index) => Some(Symbol::TypeId(type_index)),
            (NAMESPACE_RUNTIME, 0) => Some(Symbol::InterruptsPending),
            _ => None,
        }
    }
}

/// A 64-bit absolute relocation (`Abs8`) of a symbol.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SymbolReloc {
    /// Offset of the 8-byte immediate in the code block.
    pub offset: u32,
    pub symbol: Symbol,
    pub addend: i64,
}

/// A call to a Cranelift libcall (`floorf` and the like, where the CPU has
/// no instruction), resolved by `load` (`code_memory::libcall_address`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LibcallReloc {
    pub offset: u32,
    pub kind: Reloc,
    pub libcall: ir::LibCall,
    pub addend: i64,
}

/// A compiled module's code and metadata, position-independent.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Artifact {
    /// The code block, direct calls between its functions already patched
    /// (they are PC-relative). Not encoded with the rest: a `.cwasm` stores
    /// it as raw bytes.
    #[serde(skip)]
    pub code: Vec<u8>,
    /// Every function in the block, in address order: first the defined
    /// Wasm functions by index, then trampolines and adapters.
    pub layout: Vec<FunctionLayout>,
    pub symbol_relocs: Vec<SymbolReloc>,
    pub libcall_relocs: Vec<LibcallReloc>,
    /// Trap sites, sorted: (offset in block, `TrapCode as u8`).
    pub traps: Vec<(u32, u8)>,
    /// Wasm offsets, sorted: (offset in block, offset in the Wasm binary).
    pub srclocs: Vec<(u32, u32)>,
    /// Unwind info: (index into `layout`, the function's CFI).
    pub unwind: Vec<(u32, systemv::UnwindInfo)>,
    /// For each type index, the layout indices of its entry trampoline and
    /// its host adapter.
    pub type_slots: Vec<(u32, u32)>,
}

/// What `load` found wrong with an artifact that did not come from this
/// process's compiler (a `.cwasm` file that passed its checksum).
fn corrupt(what: impl std::fmt::Display) -> CompileError {
    CompileError::Invalid(format!("corrupt compiled module: {what}"))
}

impl Artifact {
    /// Checks that every offset and index stays inside what it points into,
    /// so that loading never writes outside the code block or indexes out of
    /// range. It does not and cannot check that the code is what the
    /// compiler made: a `.cwasm` is trusted input.
    fn check(&self, info: &ModuleInfo) -> Result<(), CompileError> {
        let code_len = self.code.len() as u64;
        let within = |offset: u32, len: u64| u64::from(offset) + len <= code_len;
        let defined = info.num_defined_functions() as usize;
        if code_len > u64::from(u32::MAX) {
            return Err(corrupt("the code is larger than 4 GiB"));
        }
        if self.layout.len() < defined {
            return Err(corrupt("fewer functions than the module defines"));
        }
        let in_order = self
            .layout
            .windows(2)
            .all(|w| u64::from(w[0].offset) + u64::from(w[0].len) <= u64::from(w[1].offset));
        if !in_order {
            return Err(corrupt("functions overlap or are out of order"));
        }
        for (i, f) in self.layout.iter().enumerate() {
            if !within(f.offset, u64::from(f.len)) {
                return Err(corrupt(format!("function {i} lies outside the code")));
            }
            let expected = match f.kind {
                CodeKind::Wasm(index) => {
                    i < defined && index == info.num_imported_functions + i as u32
                }
                CodeKind::EntryTrampoline(t) | CodeKind::HostAdapter(t) => {
                    i >= defined && (t as usize) < info.types.len()
                }
            };
            if !expected {
                return Err(corrupt(format!(
                    "function {i} is not where the layout says"
                )));
            }
        }
        for r in &self.symbol_relocs {
            if !within(r.offset, 8) {
                return Err(corrupt("a relocation lies outside the code"));
            }
            if let Symbol::TypeId(t) = r.symbol {
                if t as usize >= info.types.len() {
                    return Err(corrupt(format!("relocation of unknown type {t}")));
                }
            }
        }
        for r in &self.libcall_relocs {
            let size = match r.kind {
                Reloc::Abs8 => 8,
                Reloc::Abs4 | Reloc::X86CallPCRel4 | Reloc::X86PCRel4 | Reloc::X86CallPLTRel4 => 4,
                other => return Err(corrupt(format!("relocation kind {other:?}"))),
            };
            if !within(r.offset, size) {
                return Err(corrupt("a relocation lies outside the code"));
            }
        }
        if !sorted_within(self.traps.iter().map(|t| t.0), code_len) {
            return Err(corrupt("trap sites out of order or outside the code"));
        }
        if self.traps.iter().any(|t| TrapCode::from_u8(t.1).is_none()) {
            return Err(corrupt("unknown trap code"));
        }
        if !sorted_within(self.srclocs.iter().map(|s| s.0), code_len) {
            return Err(corrupt("Wasm offsets out of order or outside the code"));
        }
        if self
            .unwind
            .iter()
            .any(|(i, _)| *i as usize >= self.layout.len())
        {
            return Err(corrupt("unwind info of an unknown function"));
        }
        if self.type_slots.len() != info.types.len()
            || self.type_slots.iter().any(|(e, a)| {
                !matches!(self.layout.get(*e as usize), Some(f) if matches!(f.kind, CodeKind::EntryTrampoline(_)))
                    || !matches!(self.layout.get(*a as usize), Some(f) if matches!(f.kind, CodeKind::HostAdapter(_)))
            })
        {
            return Err(corrupt("trampolines do not match the module's types"));
        }
        Ok(())
    }
}

/// Whether `offsets` never decrease and all lie inside a code block of
/// `code_len` bytes.
fn sorted_within(offsets: impl Iterator<Item = u32>, code_len: u64) -> bool {
    let mut previous = 0;
    for offset in offsets {
        if offset < previous || u64::from(offset) >= code_len.max(1) {
            return false;
        }
        previous = offset;
    }
    true
}

/// Writes the address of a libcall into the code block at `base`.
fn patch_libcall(
    block: &mut [u8],
    base: usize,
    r: &LibcallReloc,
    target: usize,
) -> Result<(), CompileError> {
    let at = r.offset as usize;
    let target = (target as i64).wrapping_add(r.addend);
    let too_far = || CompileError::Codegen(format!("libcall {:?} out of reach", r.libcall));
    match r.kind {
        Reloc::Abs8 => block[at..at + 8].copy_from_slice(&target.to_le_bytes()),
        Reloc::Abs4 => {
            let value = u32::try_from(target).map_err(|_| too_far())?;
            block[at..at + 4].copy_from_slice(&value.to_le_bytes());
        }
        Reloc::X86CallPCRel4 | Reloc::X86PCRel4 | Reloc::X86CallPLTRel4 => {
            let from = (base + at) as i64;
            let value = i32::try_from(target.wrapping_sub(from)).map_err(|_| too_far())?;
            block[at..at + 4].copy_from_slice(&value.to_le_bytes());
        }
        other => {
            return Err(CompileError::Codegen(format!(
                "unexpected libcall relocation {other:?}"
            )))
        }
    }
    Ok(())
}

/// Loads `artifact` into executable memory: interns the module's types with
/// `intern_type`, fills in the symbols and the libcalls' addresses, and
/// turns the offsets into addresses.
pub(crate) fn load(
    isa: &OwnedTargetIsa,
    info: ModuleInfo,
    artifact: Artifact,
    intern_type: &mut dyn FnMut(&FuncType) -> u32,
    started: std::time::Instant,
) -> Result<CompiledModule, CompileError> {
    artifact.check(&info)?;
    let offsets = VMOffsets::new(
        info.memories.len() as u32,
        info.globals.len() as u32,
        info.tables.len() as u32,
        info.functions.len() as u32,
    );
    let type_ids: Vec<u32> = info.types.iter().map(intern_type).collect();
    let Artifact {
        mut code,
        layout,
        symbol_relocs,
        libcall_relocs,
        traps,
        srclocs,
        unwind,
        type_slots,
    } = artifact;
    if code.is_empty() {
        code.push(0xcc); // int3: even an empty module has a code range
    }
    for r in &symbol_relocs {
        let value = match r.symbol {
            Symbol::TypeId(t) => u64::from(type_ids[t as usize]),
            Symbol::InterruptsPending => {
                &INTERRUPTS_PENDING as *const std::sync::atomic::AtomicU32 as u64
            }
        };
        let value = value.wrapping_add(r.addend as u64);
        let at = r.offset as usize;
        code[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }
    let libcalls = libcall_relocs
        .iter()
        .map(|r| Ok((r, code_memory::libcall_address(r.libcall)?)))
        .collect::<Result<Vec<_>, CompileError>>()?;
    let code_memory = CodeMemory::new(&code, |block, base| {
        for (r, target) in &libcalls {
            patch_libcall(block, base, r, *target)?;
        }
        Ok(())
    })?;
    let code_base = code_memory.base();

    let address = |layout_index: u32| code_base + layout[layout_index as usize].offset as usize;
    let fdes = unwind
        .iter()
        .map(|(i, info)| info.to_fde(gimli::write::Address::Constant(address(*i) as u64)))
        .collect();
    let defined = info.num_defined_functions();
    let function_addresses = (0..defined).map(address).collect();
    let entry_trampolines = type_slots.iter().map(|(e, _)| address(*e)).collect();
    let host_adapters = type_slots.iter().map(|(_, a)| address(*a)).collect();
    let traps = traps
        .into_iter()
        .map(|(offset, code)| (offset, TrapCode::from_u8(code).expect("checked")))
        .collect();
    let cie = isa.create_systemv_cie();
    Ok(CompiledModule {
        info,
        offsets,
        type_ids,
        code_base,
        code_len: code.len(),
        layout,
        function_addresses,
        entry_trampolines,
        host_adapters,
        traps,
        srclocs,
        cie,
        fdes,
        compile_time: started.elapsed(),
        _code: code_memory,
    })
}
