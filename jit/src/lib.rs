//! `backstop-jit`: compiles a Wasm 2.0 module to native code in executable
//! memory. It owns the parsing and validation (`module_info`), the vmctx
//! layout (`vmoffsets`), the translator from Wasm to Cranelift IR
//! (`translate`) and the environment it compiles against (`func_env`), the entry
//! trampolines and host adapters (`trampolines`), the CLIF passes it adds
//! to Cranelift's pipeline (`divconst`, `loop_exits`), and
//! laying every function out in one contiguous block of executable memory
//! (`code_memory`).
//!
//! It records, per function, the address, size, trap sites, Wasm offsets and
//! DWARF unwind info (as gimli FDEs) that the unwind registry needs. It knows
//! nothing of instances, stacks or signals.

mod artifact;
mod code_memory;
#[cfg(test)]
mod cranelift_guards;
mod cwasm;
mod divconst;
pub mod func_env;
mod loop_exits;
pub mod module_info;
mod proposals;
mod trampolines;
mod translate;
pub mod types;
pub mod vmoffsets;

pub use cranelift_codegen::isa::OwnedTargetIsa;
pub use cwasm::{is_precompiled, load_precompiled, precompile};
pub use func_env::MemoryLayout;
pub use module_info::{
    ConstBinary, ConstExpr, ConstOp, ConstValue, DataMode, DataSegment, ElementMode,
    ElementSegment, Export, ExportKind, Import, ImportKind, ModuleInfo, Proposals,
};
pub use types::{ExternType, FuncType, GlobalType, MemoryType, TableType, TrapCode, ValType};
pub use vmoffsets::{Builtin, VMOffsets};

use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir;
use cranelift_codegen::isa::unwind::UnwindInfo;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{Context, FinalizedRelocTarget};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use translate::FuncTranslator;

/// Why a module could not be compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompileError {
    /// The bytes are not a valid Wasm module (malformed or fails validation).
    Invalid(String),
    /// The module uses a feature outside Wasm 2.0; the message names it.
    Unsupported(String),
    /// Code generation failed (an implementation limit or a bug).
    Codegen(String),
    /// A compiled module (`.cwasm`) made by another build of the compiler,
    /// in another file format or with other settings.
    Incompatible(String),
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::Invalid(m) => write!(f, "invalid module: {m}"),
            CompileError::Unsupported(m) => write!(f, "unsupported feature: {m}"),
            CompileError::Codegen(m) => write!(f, "code generation failed: {m}"),
            CompileError::Incompatible(m) => write!(f, "incompatible compiled module: {m}"),
        }
    }
}

impl std::error::Error for CompileError {}

/// How hard Cranelift optimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OptLevel {
    None,
    #[default]
    Speed,
    SpeedAndSize,
}

/// Builds the target ISA for this host with the flags Backstop's code relies
/// on: frame pointers everywhere, unwind info, no probestack (the prologue
/// stack-limit check replaces it), and non-PIC colocated calls.
///
/// `native_features`: use every instruction-set extension this CPU has;
/// without, the architecture's baseline (x86-64: SSE2), where Cranelift
/// calls libcalls (`code_memory::libcall_address`) for what it lacks.
///
/// `verify`: run Cranelift's IR verifier on every function before and
/// after optimization (for tests of the compiler; it costs compile time).
pub fn build_isa(
    opt_level: OptLevel,
    native_features: bool,
    verify: bool,
) -> Result<OwnedTargetIsa, String> {
    let mut flags = settings::builder();
    let set = |flags: &mut settings::Builder, name: &str, value: &str| {
        flags
            .set(name, value)
            .map_err(|e| format!("cranelift setting {name}={value}: {e}"))
    };
    set(
        &mut flags,
        "opt_level",
        match opt_level {
            OptLevel::None => "none",
            OptLevel::Speed => "speed",
            OptLevel::SpeedAndSize => "speed_and_size",
        },
    )?;
    set(&mut flags, "preserve_frame_pointers", "true")?;
    set(&mut flags, "unwind_info", "true")?;
    set(&mut flags, "enable_probestack", "false")?;
    // Wasm functions may return more values than fit in registers; the
    // rest go through a return area the caller passes (multi-value). That
    // convention is Cranelift's own, not the platform's, which is enough:
    // such functions are only ever called by code Cranelift compiled here
    // (other Wasm functions, entry trampolines, host adapters).
    set(&mut flags, "enable_multi_ret_implicit_sret", "true")?;
    set(&mut flags, "is_pic", "false")?;
    set(&mut flags, "use_colocated_libcalls", "false")?;
    set(
        &mut flags,
        "enable_verifier",
        if verify { "true" } else { "false" },
    )?;
    set(&mut flags, "enable_heap_access_spectre_mitigation", "false")?;
    set(
        &mut flags,
        "enable_table_access_spectre_mitigation",
        "false",
    )?;
    let isa_builder =
        cranelift_native::builder_with_options(native_features).map_err(|e| e.to_string())?;
    isa_builder
        .finish(settings::Flags::new(flags))
        .map_err(|e| e.to_string())
}

/// Options for one compilation.
#[derive(Clone, Copy, Debug)]
pub struct CompileOptions {
    /// How many threads may compile function bodies (at least 1).
    pub threads: usize,
    /// How memories are reserved, which decides the bounds checks.
    pub memory_layout: func_env::MemoryLayout,
    /// Whether loop headers and function entries check the interrupt flag
    /// (what makes a running guest stoppable from another thread).
    pub interrupt_checks: bool,
    /// How many values a loop must keep live before `loop_exits` closes it
    /// (`LOOP_CLOSING_MIN_LIVE`; tests set 0 to close every loop it can).
    pub loop_closing_min_live: usize,
    /// Whether `divconst` rewrites division by constants (on by default;
    /// off for differential testing of the pass).
    pub divconst: bool,
    /// The proposals beyond Wasm 2.0 that modules may use.
    pub proposals: Proposals,
}

/// The default of `CompileOptions::loop_closing_min_live`, measured (see
/// `loop_exits`).
pub const LOOP_CLOSING_MIN_LIVE: usize = loop_exits::MIN_LIVE_IN_LOOP;

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            memory_layout: Default::default(),
            interrupt_checks: true,
            loop_closing_min_live: LOOP_CLOSING_MIN_LIVE,
            divconst: true,
            proposals: Proposals::default(),
        }
    }
}

/// A relocation still to apply inside the code block.
#[derive(Clone, Debug)]
enum Reloc {
    /// A PC-relative call to another compiled function of this module,
    /// patched when the block is laid out.
    CallFunction {
        offset: u32,
        func_index: u32,
        addend: i64,
    },
    /// A symbol the loading process fills in (`artifact::Symbol`).
    Symbol(artifact::SymbolReloc),
    /// A libcall, whose address `load` fills in.
    Libcall(artifact::LibcallReloc),
}

/// One function's machine code and metadata before layout.
struct CompiledBlob {
    bytes: Vec<u8>,
    alignment: u32,
    relocs: Vec<Reloc>,
    traps: Vec<(u32, TrapCode)>,
    srclocs: Vec<(u32, u32)>,
    unwind: Option<cranelift_codegen::isa::unwind::systemv::UnwindInfo>,
}

fn codegen_error(e: impl fmt::Debug) -> CompileError {
    CompileError::Codegen(format!("{e:?}"))
}

/// `ud2` (0F 0B): what Cranelift emits for every explicit trap.
const UD2: [u8; 2] = [0x0f, 0x0b];
/// `hlt; hlt` (F4 F4): the same length, and privileged, so in user mode it
/// faults with #GP, which Linux delivers as SIGSEGV.
const HLT_HLT: [u8; 2] = [0xf4, 0xf4];

/// Rewrites the `ud2` at a recorded trap site to `hlt`. Both fault at the
/// instruction itself and never fall through, and the trap table says why
/// each one is there, so the handler does not need the signal's kind. The
/// difference is the price of delivery: on the VMs we run on, #UD exits to
/// the hypervisor and costs 6.4–7.1 µs per SIGILL, while #GP costs
/// 1.5 µs per SIGSEGV (measured with a C loop over each instruction, see
/// BENCHMARKS.md). Trap sites that are not `ud2` (faulting loads and
/// stores, `idiv`) are left alone.
fn privileged_trap_instruction(bytes: &mut [u8], offset: usize) {
    if let Some(site) = bytes.get_mut(offset..offset + 2) {
        if site == UD2 {
            site.copy_from_slice(&HLT_HLT);
        }
    }
}

/// Compiles the function in `ctx` and extracts everything layout needs.
/// Cranelift's `Context::compile`, step by step, with passes of ours
/// added: `loop_exits` after `remove_constant_phis` (which would undo it)
/// and before the e-graph optimizer. The steps and their order
/// are those of `Context::optimize` and `Context::compile_stencil` in
/// cranelift-codegen 0.135. (`divconst` runs earlier, right after
/// translation.)
fn optimize_and_lower(
    isa: &dyn cranelift_codegen::isa::TargetIsa,
    ctx: &mut Context,
    regalloc: &mut regalloc2::Ctx,
    loop_closing_min_live: usize,
) -> Result<cranelift_codegen::CompiledCode, cranelift_codegen::CodegenError> {
    let mut ctrl_plane = ControlPlane::default();
    ctx.verify_if(isa)?;
    if isa.flags().enable_nan_canonicalization() {
        ctx.canonicalize_nans(isa)?;
        ctx.verify_if(isa)?;
    }
    ctx.compute_cfg();
    ctx.compute_domtree();
    ctx.eliminate_unreachable_code(isa)?;
    ctx.remove_constant_phis(isa)?;
    ctx.func.dfg.resolve_all_aliases();
    if isa.flags().opt_level() != settings::OptLevel::None {
        ctx.compute_loop_analysis();
        if loop_exits::close_innermost_loops(
            &mut ctx.func,
            &ctx.cfg,
            &ctx.loop_analysis,
            loop_closing_min_live,
        ) {
            ctx.compute_cfg();
            ctx.compute_domtree();
        }
        ctx.egraph_pass(isa, &mut ctrl_plane)?;
    }
    let stencil =
        isa.compile_function(&ctx.func, &ctx.domtree, regalloc, false, &mut ctrl_plane)?;
    Ok(stencil.apply_params(&ctx.func.params))
}

/// What compiling a function reuses from one function to the next.
struct Scratch {
    ctx: Context,
    regalloc: regalloc2::Ctx,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            ctx: Context::new(),
            regalloc: Default::default(),
        }
    }
}

fn compile_context(
    isa: &dyn cranelift_codegen::isa::TargetIsa,
    scratch: &mut Scratch,
    loop_closing_min_live: usize,
) -> Result<CompiledBlob, CompileError> {
    let ctx = &mut scratch.ctx;
    let user_names = ctx.func.params.user_named_funcs().clone();
    let code = optimize_and_lower(isa, ctx, &mut scratch.regalloc, loop_closing_min_live)
        .map_err(codegen_error)?;
    let code = &code;
    let mut bytes = code.code_buffer().to_vec();
    let alignment = code.buffer.alignment;
    let traps: Vec<(u32, TrapCode)> = code
        .buffer
        .traps()
        .iter()
        .filter_map(|t| TrapCode::from_cranelift(t.code).map(|c| (t.offset, c)))
        .collect();
    for &(offset, _) in &traps {
        privileged_trap_instruction(&mut bytes, offset as usize);
    }
    let srclocs = code
        .buffer
        .get_srclocs_sorted()
        .iter()
        .filter(|s| !s.loc.is_default())
        .map(|s| (s.start, s.loc.bits()))
        .collect();
    let mut relocs = Vec::new();
    for reloc in code.buffer.relocs() {
        let unexpected = || {
            CompileError::Codegen(format!(
                "unexpected relocation {:?} to {:?}",
                reloc.kind, reloc.target
            ))
        };
        use cranelift_codegen::binemit::Reloc as Kind;
        match reloc.target {
            FinalizedRelocTarget::ExternalName(ir::ExternalName::User(name_ref)) => {
                let name = &user_names[name_ref];
                if name.namespace == artifact::NAMESPACE_FUNCTION {
                    if reloc.kind != Kind::X86CallPCRel4 {
                        return Err(unexpected());
                    }
                    relocs.push(Reloc::CallFunction {
                        offset: reloc.offset,
                        func_index: name.index,
                        addend: reloc.addend,
                    });
                } else {
                    let symbol = artifact::Symbol::from_name(name.namespace, name.index)
                        .ok_or_else(unexpected)?;
                    if reloc.kind != Kind::Abs8 {
                        return Err(unexpected());
                    }
                    relocs.push(Reloc::Symbol(artifact::SymbolReloc {
                        offset: reloc.offset,
                        symbol,
                        addend: reloc.addend,
                    }));
                }
            }
            FinalizedRelocTarget::ExternalName(ir::ExternalName::LibCall(libcall)) => {
                relocs.push(Reloc::Libcall(artifact::LibcallReloc {
                    offset: reloc.offset,
                    kind: reloc.kind,
                    libcall,
                    addend: reloc.addend,
                }))
            }
            _ => return Err(unexpected()),
        }
    }
    let unwind = match code.create_unwind_info(isa).map_err(codegen_error)? {
        Some(UnwindInfo::SystemV(info)) => Some(info),
        Some(_) => {
            return Err(CompileError::Codegen(
                "unexpected unwind info kind (System V expected)".into(),
            ))
        }
        None => None,
    };
    ctx.clear();
    Ok(CompiledBlob {
        bytes,
        alignment,
        relocs,
        traps,
        srclocs,
        unwind,
    })
}

/// What a stretch of the code block is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CodeKind {
    /// A Wasm function, by function index.
    Wasm(u32),
    /// The entry trampoline of a type.
    EntryTrampoline(u32),
    /// The host adapter of a type.
    HostAdapter(u32),
}

/// Where one compiled function sits in the code block.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct FunctionLayout {
    pub kind: CodeKind,
    /// Offset from the start of the code block.
    pub offset: u32,
    pub len: u32,
}

/// A compiled module: its description, its code, and the metadata the
/// runtime needs to run it and to register it.
pub struct CompiledModule {
    pub info: ModuleInfo,
    pub offsets: VMOffsets,
    /// Engine-wide signature id of each type index.
    pub type_ids: Vec<u32>,
    /// Start of the code block.
    pub code_base: usize,
    pub code_len: usize,
    /// Every function in the block, in address order.
    pub layout: Vec<FunctionLayout>,
    /// Absolute address of each defined function (index minus imports).
    pub function_addresses: Vec<usize>,
    /// Entry trampoline of each type index:
    /// `extern "C-unwind" fn(native_call, callee_vmctx, caller_vmctx, values: *mut [u128])`.
    pub entry_trampolines: Vec<usize>,
    /// Host adapter of each type index: a native-signature function that
    /// forwards to `(*host_ctx).array_call(host_ctx, caller_vmctx, values, count)`.
    pub host_adapters: Vec<usize>,
    /// Trap sites, sorted: (offset in block, code).
    pub traps: Vec<(u32, TrapCode)>,
    /// Wasm offsets, sorted: (offset in block, offset in the Wasm binary).
    pub srclocs: Vec<(u32, u32)>,
    /// CIE and one FDE per function, with absolute addresses.
    pub cie: Option<gimli::write::CommonInformationEntry>,
    pub fdes: Vec<gimli::write::FrameDescriptionEntry>,
    /// Time spent compiling.
    pub compile_time: std::time::Duration,
    /// Keeps the code alive. Declared last so it is dropped last.
    _code: code_memory::CodeMemory,
}

impl fmt::Debug for CompiledModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledModule")
            .field("code_base", &format_args!("{:#x}", self.code_base))
            .field("code_len", &self.code_len)
            .field("functions", &self.function_addresses.len())
            .finish()
    }
}

/// Compiles `wasm` (binary format). `intern_type` gives each function type
/// its engine-wide id, used by `call_indirect` signature checks.
pub fn compile(
    isa: &OwnedTargetIsa,
    wasm: &[u8],
    intern_type: &mut dyn FnMut(&FuncType) -> u32,
    options: CompileOptions,
) -> Result<CompiledModule, CompileError> {
    compile_supported(isa, wasm, intern_type, options)
        .map_err(|e| name_unsupported(wasm, options.proposals, e))
}

/// Turns a validation error of a module that is valid with later proposals
/// into `CompileError::Unsupported` naming them (`proposals`), keeping the
/// validator's message (and its offset) after the names.
pub(crate) fn name_unsupported(
    wasm: &[u8],
    enabled: Proposals,
    error: CompileError,
) -> CompileError {
    match error {
        CompileError::Invalid(message) => match proposals::needed_proposals(wasm, enabled) {
            Some(names) => {
                CompileError::Unsupported(format!("{names} (the module needs it: {message})"))
            }
            None => CompileError::Invalid(message),
        },
        other => other,
    }
}

fn compile_supported(
    isa: &OwnedTargetIsa,
    wasm: &[u8],
    intern_type: &mut dyn FnMut(&FuncType) -> u32,
    options: CompileOptions,
) -> Result<CompiledModule, CompileError> {
    let started = std::time::Instant::now();
    let (info, artifact) = compile_artifact(isa, wasm, options)?;
    artifact::load(isa, info, artifact, intern_type, started)
}

/// Compiles `wasm` (binary format) into position-independent code
/// (`artifact`), not yet loaded.
fn compile_artifact(
    isa: &OwnedTargetIsa,
    wasm: &[u8],
    options: CompileOptions,
) -> Result<(ModuleInfo, artifact::Artifact), CompileError> {
    let (info, bodies) = module_info::parse(wasm, options.proposals)?;
    let offsets = VMOffsets::new(
        info.memories.len() as u32,
        info.globals.len() as u32,
        info.tables.len() as u32,
        info.functions.len() as u32,
    );

    // Compile the bodies on up to `threads` threads, pulling from a shared index.
    let num_bodies = bodies.len();
    let queue: Vec<Mutex<Option<module_info::PendingBody<'_>>>> =
        bodies.into_iter().map(|b| Mutex::new(Some(b))).collect();
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<CompiledBlob, CompileError>>>> =
        (0..num_bodies).map(|_| Mutex::new(None)).collect();
    let threads = options.threads.max(1).min(num_bodies.max(1));
    let shared = FunctionCompiler {
        isa: isa.as_ref(),
        info: &info,
        offsets: &offsets,
        memory_layout: options.memory_layout,
        interrupt_checks: options.interrupt_checks,
        loop_closing_min_live: options.loop_closing_min_live,
        divconst: options.divconst,
    };
    let worker = || {
        let mut scratch = Scratch::default();
        let mut translator = FuncTranslator::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= num_bodies {
                break;
            }
            let pending = queue[i]
                .lock()
                .unwrap()
                .take()
                .expect("each body taken once");
            let func_index = pending.func_index;
            let result = catch_compiler_panic(func_index, || {
                shared.compile(pending, &mut scratch, &mut translator)
            });
            let failed = result.is_err();
            *results[i].lock().unwrap() = Some(result);
            if failed {
                // Stop handing out work; the first error by index is reported.
                next.store(num_bodies, Ordering::Relaxed);
            }
        }
    };
    if threads <= 1 {
        worker();
    } else {
        std::thread::scope(|s| {
            for _ in 1..threads {
                s.spawn(worker);
            }
            worker();
        });
    }
    let mut blobs: Vec<(CodeKind, CompiledBlob)> = Vec::with_capacity(num_bodies);
    for (i, slot) in results.into_iter().enumerate() {
        match slot.into_inner().unwrap() {
            Some(Ok(blob)) => {
                blobs.push((CodeKind::Wasm(info.num_imported_functions + i as u32), blob))
            }
            Some(Err(e)) => return Err(e),
            None => {
                return Err(CompileError::Codegen(
                    "a function body was not compiled".into(),
                ))
            }
        }
    }

    // One entry trampoline and one host adapter per distinct function type.
    let mut scratch = Scratch::default();
    let compile_trampoline = |scratch: &mut Scratch| {
        compile_context(isa.as_ref(), scratch, options.loop_closing_min_live)
    };
    let mut distinct: HashMap<&FuncType, (u32, u32)> = HashMap::new();
    let mut type_slots = Vec::with_capacity(info.types.len());
    for (type_index, ty) in info.types.iter().enumerate() {
        let slots = match distinct.get(ty) {
            Some(slots) => *slots,
            None => {
                trampolines::build_entry_trampoline(
                    &mut scratch.ctx.func,
                    ty,
                    isa.frontend_config(),
                );
                blobs.push((
                    CodeKind::EntryTrampoline(type_index as u32),
                    compile_trampoline(&mut scratch)?,
                ));
                let entry = blobs.len() as u32 - 1;
                trampolines::build_host_adapter(&mut scratch.ctx.func, ty, isa.frontend_config());
                blobs.push((
                    CodeKind::HostAdapter(type_index as u32),
                    compile_trampoline(&mut scratch)?,
                ));
                let adapter = blobs.len() as u32 - 1;
                distinct.insert(ty, (entry, adapter));
                (entry, adapter)
            }
        };
        type_slots.push(slots);
    }
    let artifact = lay_out(&info, blobs, type_slots)?;
    Ok((info, artifact))
}

/// Lays the compiled functions out in one block, patches the direct calls
/// between them, and gathers their metadata as offsets into the block.
fn lay_out(
    info: &ModuleInfo,
    blobs: Vec<(CodeKind, CompiledBlob)>,
    type_slots: Vec<(u32, u32)>,
) -> Result<artifact::Artifact, CompileError> {
    let mut code = Vec::new();
    let mut blob_offsets = Vec::with_capacity(blobs.len());
    for (_, blob) in &blobs {
        let align = blob.alignment.max(16) as usize;
        while code.len() % align != 0 {
            code.push(0xcc); // int3 padding
        }
        blob_offsets.push(code.len() as u32);
        code.extend_from_slice(&blob.bytes);
    }
    let wasm_offset_of = |func_index: u32| -> Option<u32> {
        let defined = func_index.checked_sub(info.num_imported_functions)?;
        blob_offsets.get(defined as usize).copied()
    };
    let mut artifact = artifact::Artifact::default();
    for (i, ((kind, blob), &base)) in blobs.into_iter().zip(&blob_offsets).enumerate() {
        for reloc in blob.relocs {
            match reloc {
                Reloc::CallFunction {
                    offset,
                    func_index,
                    addend,
                } => {
                    let target = wasm_offset_of(func_index).ok_or_else(|| {
                        CompileError::Codegen(format!("call to unknown function {func_index}"))
                    })?;
                    let at = base + offset;
                    let value = i64::from(target) + addend - i64::from(at);
                    let value = i32::try_from(value).map_err(|_| {
                        CompileError::Codegen("code block larger than 2 GiB".into())
                    })?;
                    code[at as usize..at as usize + 4].copy_from_slice(&value.to_le_bytes());
                }
                Reloc::Symbol(mut r) => {
                    r.offset += base;
                    artifact.symbol_relocs.push(r);
                }
                Reloc::Libcall(mut r) => {
                    r.offset += base;
                    artifact.libcall_relocs.push(r);
                }
            }
        }
        artifact.layout.push(FunctionLayout {
            kind,
            offset: base,
            len: blob.bytes.len() as u32,
        });
        artifact
            .traps
            .extend(blob.traps.iter().map(|(o, c)| (base + o, *c as u8)));
        artifact
            .srclocs
            .extend(blob.srclocs.iter().map(|(o, s)| (base + o, *s)));
        if let Some(unwind) = blob.unwind {
            artifact.unwind.push((i as u32, unwind));
        }
    }
    artifact.code = code;
    artifact.type_slots = type_slots;
    Ok(artifact)
}

/// What every function of a module is compiled against, shared by the
/// compiling threads.
struct FunctionCompiler<'a> {
    isa: &'a dyn cranelift_codegen::isa::TargetIsa,
    info: &'a ModuleInfo,
    offsets: &'a VMOffsets,
    memory_layout: func_env::MemoryLayout,
    interrupt_checks: bool,
    loop_closing_min_live: usize,
    divconst: bool,
}

/// Runs `compile` for function `func_index`, turning a panic inside it (a
/// bug in our passes or in Cranelift, or an arithmetic overflow in
/// backstop-jit, which is built with overflow checks) into
/// `CompileError::Codegen`: a bad module must never take the embedder down.
/// The panic hook has already printed the message and location by then.
fn catch_compiler_panic(
    func_index: u32,
    compile: impl FnOnce() -> Result<CompiledBlob, CompileError>,
) -> Result<CompiledBlob, CompileError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(compile)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string());
        Err(CompileError::Codegen(format!(
            "internal compiler error in function {func_index}: {message}"
        )))
    })
}

impl FunctionCompiler<'_> {
    fn compile(
        &self,
        mut pending: module_info::PendingBody<'_>,
        scratch: &mut Scratch,
        translator: &mut FuncTranslator,
    ) -> Result<CompiledBlob, CompileError> {
        let ctx = &mut scratch.ctx;
        let ty = self.info.func_type(pending.func_index);
        ctx.func = ir::Function::with_name_signature(
            ir::UserFuncName::user(0, pending.func_index),
            func_env::native_signature(ty),
        );
        let mut env = func_env::FuncEnv::new(
            self.info,
            self.offsets,
            self.memory_layout,
            self.interrupt_checks,
        );
        env.install_stack_limit(&mut ctx.func);
        translator.translate(
            &mut pending.validator,
            &pending.body,
            &mut ctx.func,
            &mut env,
            self.isa.frontend_config(),
        )?;
        if self.divconst {
            divconst::rewrite(&mut ctx.func);
        }
        compile_context(self.isa, scratch, self.loop_closing_min_live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `FunctionBuilder::finalize` needs to know of this host, for the
    /// passes' tests that build functions by hand.
    pub(crate) fn frontend_config() -> cranelift_codegen::isa::TargetFrontendConfig {
        build_isa(OptLevel::None, true, false)
            .expect("this host is supported")
            .frontend_config()
    }

    #[test]
    fn a_panic_while_compiling_becomes_a_codegen_error() {
        let overflow = || -> Result<CompiledBlob, CompileError> {
            let magic = std::hint::black_box(u128::MAX);
            let _ = std::hint::black_box(magic.checked_mul(2).expect("the magic fits"));
            unreachable!()
        };
        match catch_compiler_panic(7, overflow) {
            Err(CompileError::Codegen(message)) => {
                assert_eq!(
                    message,
                    "internal compiler error in function 7: the magic fits"
                )
            }
            _ => panic!("expected a codegen error"),
        }
        let formatted = || -> Result<CompiledBlob, CompileError> { panic!("value {}", 42) };
        match catch_compiler_panic(3, formatted) {
            Err(CompileError::Codegen(message)) => {
                assert_eq!(message, "internal compiler error in function 3: value 42")
            }
            _ => panic!("expected a codegen error"),
        }
    }
}
