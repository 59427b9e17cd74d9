//! `Config` and `Engine`: the settings every module and instance of an engine
//! share (stack sizes, memory layout and limits, optimisation), the compiler
//! target, and the engine-wide registry that gives each function type the id
//! `call_indirect` checks.

use crate::Error;
use backstop_jit::{FuncType, MemoryLayout, OptLevel, OwnedTargetIsa, Proposals};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;

/// Settings for an [`Engine`].
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) stack_size: usize,
    pub(crate) host_reserve: usize,
    pub(crate) memory_layout: MemoryLayout,
    pub(crate) max_memory_pages: u32,
    pub(crate) opt_level: OptLevel,
    pub(crate) native_cpu_features: bool,
    pub(crate) proposals: Proposals,
    pub(crate) parallel_compilation: bool,
    pub(crate) interrupt_checks: bool,
    pub(crate) loop_closing_min_live: usize,
    pub(crate) divconst: bool,
    pub(crate) verify_compiled_code: bool,
    pub(crate) wasm_backtrace: bool,
    pub(crate) gdb_jit: bool,
    pub(crate) perf_map: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            stack_size: 1 << 20,
            host_reserve: 256 << 10,
            memory_layout: MemoryLayout::default(),
            max_memory_pages: 65536,
            opt_level: OptLevel::Speed,
            native_cpu_features: true,
            proposals: Proposals::default(),
            parallel_compilation: true,
            interrupt_checks: false,
            loop_closing_min_live: backstop_jit::LOOP_CLOSING_MIN_LIVE,
            divconst: true,
            verify_compiled_code: false,
            wasm_backtrace: true,
            gdb_jit: true,
            perf_map: false,
        }
    }
}

/// How hard the compiler optimises.
pub use backstop_jit::OptLevel as OptimizationLevel;

impl Config {
    pub fn new() -> Config {
        Config::default()
    }

    /// Bytes of guest stack Wasm code may use (default 1 MiB). Recursion
    /// deeper than this traps with `StackOverflow`.
    pub fn stack_size(&mut self, bytes: usize) -> &mut Self {
        self.stack_size = bytes;
        self
    }

    /// Bytes kept free below the Wasm stack limit for host functions and for
    /// the unwinder (default 256 KiB). Host code called from Wasm runs on the
    /// guest stack, in this reserve.
    pub fn host_reserve(&mut self, bytes: usize) -> &mut Self {
        self.host_reserve = bytes;
        self
    }

    /// Virtual bytes reserved per linear memory (default 4 GiB). With 4 GiB
    /// or more, compiled code needs no bounds checks; below that, every
    /// access is checked against the memory's length, and memories cannot
    /// grow beyond the reservation.
    pub fn memory_reservation(&mut self, bytes: u64) -> &mut Self {
        self.memory_layout.reservation = bytes;
        self
    }

    /// Inaccessible bytes after each memory's reservation (default 2 GiB).
    pub fn memory_guard_size(&mut self, bytes: u64) -> &mut Self {
        self.memory_layout.guard = bytes;
        self
    }

    /// The most 64 KiB pages any memory may have (default 65536, i.e. 4 GiB).
    /// `memory.grow` beyond it fails with -1, and a module whose memory needs
    /// more at instantiation fails to instantiate.
    pub fn max_memory_pages(&mut self, pages: u32) -> &mut Self {
        self.max_memory_pages = pages;
        self
    }

    /// Optimisation level of the compiler (default `Speed`).
    pub fn optimization_level(&mut self, level: OptimizationLevel) -> &mut Self {
        self.opt_level = level;
        self
    }

    /// Whether the compiler uses every instruction-set extension this CPU
    /// has (default true). With false it targets the architecture's
    /// baseline (x86-64: SSE2 only), so a compiled module file made here
    /// runs on any x86-64 machine; float rounding then calls out of
    /// compiled code, and some SIMD operations take longer sequences.
    pub fn native_cpu_features(&mut self, enable: bool) -> &mut Self {
        self.native_cpu_features = enable;
        self
    }

    /// Whether modules may use extended constant expressions (Wasm 3.0:
    /// `i32`/`i64` `add`, `sub` and `mul` in global initialisers and segment
    /// offsets); default true. Off, such a module is refused with
    /// `Error::Unsupported` naming the proposal and this switch.
    pub fn wasm_extended_const(&mut self, enable: bool) -> &mut Self {
        self.proposals.extended_const = enable;
        self
    }

    /// Whether modules may define and import more than one memory (Wasm
    /// 3.0's multiple memories); default true. Off, such a module is
    /// refused with `Error::Unsupported` naming the proposal and this
    /// switch.
    pub fn wasm_multi_memory(&mut self, enable: bool) -> &mut Self {
        self.proposals.multi_memory = enable;
        self
    }

    /// Whether modules may use relaxed SIMD (Wasm 3.0); default true. Each
    /// relaxed operator has one fixed result, the same on every x86-64
    /// machine: the Wasm 2.0 operator it loosens, and unfused multiply-add
    /// (the table is in `jit/src/translate/relaxed_simd.rs`). Off, such a
    /// module is refused with `Error::Unsupported` naming the proposal and
    /// this switch.
    pub fn wasm_relaxed_simd(&mut self, enable: bool) -> &mut Self {
        self.proposals.relaxed_simd = enable;
        self
    }

    /// Whether compiled code polls for kill-switch requests at every loop
    /// header and function entry (default false).
    ///
    /// Either way a `KillSwitch` stops a guest wherever it is. Without
    /// checks (the default), a kill of a guest running compiled code
    /// interrupts its thread with a signal (`SIGURG`, marked as Backstop's
    /// own), which costs the guest nothing until then. Backstop unblocks
    /// that signal on each thread the first time it runs a guest there;
    /// the embedder must not block it again there. With checks, compiled
    /// code reads a process-wide word at each check, and a kill stops the
    /// guest at its next check without any signal. The checks cost about
    /// 5% on tight loops.
    pub fn interrupt_checks(&mut self, enable: bool) -> &mut Self {
        self.interrupt_checks = enable;
        self
    }

    /// For tests of the compiler: how many values a loop must keep live
    /// before the compiler gives its exit block parameters for the values
    /// that leave it (0: every loop it can). Not a tuning knob.
    #[doc(hidden)]
    pub fn loop_closing_threshold(&mut self, min_live: usize) -> &mut Self {
        self.loop_closing_min_live = min_live;
        self
    }

    /// For tests of the compiler (the config-differential fuzzing target):
    /// turn Backstop's own CLIF pass `divconst` (division by constants as
    /// multiplications) off. It is on by default. Not a tuning knob.
    #[doc(hidden)]
    pub fn compiler_passes(&mut self, divconst: bool) -> &mut Self {
        self.divconst = divconst;
        self
    }

    /// For tests of the compiler: run Cranelift's IR verifier on every
    /// function before and after optimization. Not for production: it
    /// costs compile time.
    #[doc(hidden)]
    pub fn verify_compiled_code(&mut self, verify: bool) -> &mut Self {
        self.verify_compiled_code = verify;
        self
    }

    /// Whether traps and terminations record the guest's stack (a
    /// `WasmBacktrace` in `Trap::backtrace` and
    /// `TerminationDetails::backtrace`); default true. Capture walks the
    /// guest stack once more before it unwinds.
    pub fn wasm_backtrace(&mut self, enable: bool) -> &mut Self {
        self.wasm_backtrace = enable;
        self
    }

    /// Whether each module is registered with the GDB JIT interface (an
    /// in-memory ELF object with a symbol per function), so `gdb` names
    /// guest frames; default true.
    pub fn gdb_jit(&mut self, enable: bool) -> &mut Self {
        self.gdb_jit = enable;
        self
    }

    /// Whether each module's functions are appended to `/tmp/perf-<pid>.map`
    /// (start, size, name), so `perf report` names them; default false.
    pub fn perf_map(&mut self, enable: bool) -> &mut Self {
        self.perf_map = enable;
        self
    }

    /// Whether a module's functions compile on all cores (default true).
    pub fn parallel_compilation(&mut self, enable: bool) -> &mut Self {
        self.parallel_compilation = enable;
        self
    }
}

pub(crate) struct EngineInner {
    pub(crate) config: Config,
    pub(crate) isa: OwnedTargetIsa,
    types: RwLock<TypeRegistry>,
}

#[derive(Default)]
struct TypeRegistry {
    ids: HashMap<FuncType, u32>,
    types: Vec<FuncType>,
}

/// The compiler and settings shared by modules and instances. Cheap to
/// clone; `Send + Sync`.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Engine {
    /// An engine with these settings.
    pub fn new(config: &Config) -> Result<Engine, Error> {
        let page = 4096u64;
        if config.memory_layout.reservation < 1 << 16
            || !config.memory_layout.reservation.is_multiple_of(page)
            || !config.memory_layout.guard.is_multiple_of(page)
        {
            return Err(Error::InvalidArgument(
                "memory reservation must be at least 64 KiB, and reservation and guard \
                 multiples of the page size"
                    .into(),
            ));
        }
        if config.stack_size < 16 << 10 || config.host_reserve < 32 << 10 {
            return Err(Error::InvalidArgument(
                "stack size must be at least 16 KiB and the host reserve at least 32 KiB".into(),
            ));
        }
        let isa = backstop_jit::build_isa(
            config.opt_level,
            config.native_cpu_features,
            config.verify_compiled_code,
        )
        .map_err(Error::Unsupported)?;
        Ok(Engine {
            inner: Arc::new(EngineInner {
                config: config.clone(),
                isa,
                types: RwLock::new(TypeRegistry::default()),
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Compiles a module (binary or text) without loading it, and returns
    /// the contents of a compiled module file (`.cwasm`), which
    /// `Module::deserialize` loads in milliseconds into an engine with the
    /// same settings, in this process or another, with the same build of
    /// Backstop.
    pub fn precompile_module(&self, bytes: impl AsRef<[u8]>) -> Result<Vec<u8>, Error> {
        crate::compile::module::precompile(self, bytes.as_ref(), None)
    }

    /// `precompile_module` of a file (binary or text); errors name it.
    pub fn precompile_file(&self, path: impl AsRef<std::path::Path>) -> Result<Vec<u8>, Error> {
        let path = path.as_ref();
        let bytes = crate::compile::module::read_file(path)?;
        crate::compile::module::precompile(self, &bytes, Some(path))
    }

    /// The engine-wide id of a function type.
    pub(crate) fn type_id(&self, ty: &FuncType) -> u32 {
        if let Some(id) = self.inner.types.read().ids.get(ty) {
            return *id;
        }
        let mut registry = self.inner.types.write();
        if let Some(id) = registry.ids.get(ty) {
            return *id;
        }
        let id = registry.types.len() as u32;
        registry.types.push(ty.clone());
        registry.ids.insert(ty.clone(), id);
        id
    }

    /// The function type with this engine-wide id.
    pub(crate) fn func_type(&self, id: u32) -> FuncType {
        self.inner.types.read().types[id as usize].clone()
    }

    pub(crate) fn same(&self, other: &Engine) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new(&Config::default()).expect("the default configuration is valid")
    }
}
