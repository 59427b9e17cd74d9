//! `Module`: a compiled Wasm module. It owns the code memory, its `.eh_frame`
//! registration with the system unwinder, and its entry in the PC registry
//! (function names, trap sites, Wasm offsets). Dropping the last clone
//! deregisters both, then frees the code.

use crate::{Engine, Error};
use backstop_jit::{CodeKind, CompileOptions, CompiledModule, ExternType, ImportKind, ModuleInfo};
use backstop_unwind::{CodeRegion, FunctionRange, SourceLoc, TrapSite};
use std::sync::Arc;

pub(crate) struct ModuleInner {
    // Field order is drop order: registrations go before the code they describe.
    _gdb: Option<backstop_unwind::GdbJitRegistration>,
    _lines: Option<crate::debug_lines::LineTableRegistration>,
    _registry: backstop_unwind::CodeRegistrationHandle,
    _eh_frame: Option<backstop_unwind::EhFrameRegistration>,
    pub(crate) compiled: CompiledModule,
    pub(crate) engine: Engine,
}

/// A compiled module, ready to instantiate any number of times. Cheap to
/// clone; `Send + Sync`.
#[derive(Clone)]
pub struct Module {
    pub(crate) inner: Arc<ModuleInner>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("name", &self.name())
            .field("functions", &self.info().functions.len())
            .finish()
    }
}

/// An import of a module: where it comes from and what type it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportType {
    pub module: String,
    pub name: String,
    pub ty: ExternType,
}

/// An export of a module: its name and type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportType {
    pub name: String,
    pub ty: ExternType,
}

/// Whether `bytes` look like the Wasm binary format (rather than text).
fn is_binary(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\0asm")
}

impl Module {
    /// Compiles a module from the binary or the text format.
    pub fn new(engine: &Engine, bytes: impl AsRef<[u8]>) -> Result<Module, Error> {
        let bytes = bytes.as_ref();
        if is_binary(bytes) {
            Module::from_binary(engine, bytes)
        } else {
            let text = std::str::from_utf8(bytes).map_err(|_| {
                Error::Invalid(
                    "not a Wasm binary (no \\0asm header) and not UTF-8 text either".into(),
                )
            })?;
            let binary = wat::parse_str(text).map_err(|e| Error::Invalid(e.to_string()))?;
            Module::from_binary(engine, &binary)
        }
    }

    /// Compiles a module from the binary format only.
    pub fn from_binary(engine: &Engine, binary: &[u8]) -> Result<Module, Error> {
        let config = engine.config();
        let mut options = CompileOptions {
            memory_layout: config.memory_layout,
            interrupt_checks: config.interrupt_checks,
            loop_closing_min_live: config.loop_closing_min_live,
            ..CompileOptions::default()
        };
        if !config.parallel_compilation {
            options.threads = 1;
        }
        let compiled = backstop_jit::compile(
            &engine.inner.isa,
            binary,
            &mut |ty| engine.type_id(ty),
            options,
        )?;
        let region = Arc::new(code_region(&compiled));
        let eh_frame = match &compiled.cie {
            Some(cie) if !compiled.fdes.is_empty() => Some(
                backstop_unwind::EhFrameRegistration::new(cie.clone(), compiled.fdes.clone())
                    .map_err(|e| Error::Unsupported(format!("unwind info registration: {e}")))?,
            ),
            _ => None,
        };
        if config.perf_map {
            if let Err(e) = backstop_unwind::write_perf_map(&region) {
                log::warn!("cannot write the perf map: {e}");
            }
        }
        let gdb = config
            .gdb_jit
            .then(|| backstop_unwind::GdbJitRegistration::for_region(&region));
        let lines = crate::debug_lines::LineTable::from_module(&compiled.info).map(|table| {
            crate::debug_lines::LineTableRegistration::publish(compiled.code_base, table)
        });
        let registry = backstop_unwind::register_code(region);
        Ok(Module {
            inner: Arc::new(ModuleInner {
                _gdb: gdb,
                _lines: lines,
                _registry: registry,
                _eh_frame: eh_frame,
                compiled,
                engine: engine.clone(),
            }),
        })
    }

    /// Validates without compiling.
    pub fn validate(bytes: impl AsRef<[u8]>) -> Result<(), Error> {
        let bytes = bytes.as_ref();
        let binary;
        let bytes = if is_binary(bytes) {
            bytes
        } else {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| Error::Invalid("neither a Wasm binary nor UTF-8 text".into()))?;
            binary = wat::parse_str(text).map_err(|e| Error::Invalid(e.to_string()))?;
            &binary
        };
        backstop_jit::module_info::validate(bytes)?;
        Ok(())
    }

    pub(crate) fn info(&self) -> &ModuleInfo {
        &self.inner.compiled.info
    }

    pub(crate) fn compiled(&self) -> &CompiledModule {
        &self.inner.compiled
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The module's name from its name section, if any.
    pub fn name(&self) -> Option<&str> {
        self.info().name.as_deref()
    }

    /// Number of functions (imported and defined).
    pub fn function_count(&self) -> usize {
        self.info().functions.len()
    }

    /// How long compilation took.
    pub fn compile_time(&self) -> std::time::Duration {
        self.inner.compiled.compile_time
    }

    /// The module's imports, in order.
    pub fn imports(&self) -> impl ExactSizeIterator<Item = ImportType> + '_ {
        let info = self.info();
        info.imports.iter().map(move |i| ImportType {
            module: i.module.clone(),
            name: i.name.clone(),
            ty: match &i.kind {
                ImportKind::Func(t) => ExternType::Func(info.types[*t as usize].clone()),
                ImportKind::Table(t) => ExternType::Table(*t),
                ImportKind::Memory(m) => ExternType::Memory(*m),
                ImportKind::Global(g) => ExternType::Global(*g),
            },
        })
    }

    /// The module's exports, in order.
    pub fn exports(&self) -> impl ExactSizeIterator<Item = ExportType> + '_ {
        let info = self.info();
        info.exports.iter().map(move |e| ExportType {
            name: e.name.clone(),
            ty: export_type(info, e.kind, e.index),
        })
    }
}

pub(crate) fn export_type(
    info: &ModuleInfo,
    kind: backstop_jit::ExportKind,
    index: u32,
) -> ExternType {
    use backstop_jit::ExportKind;
    match kind {
        ExportKind::Func => ExternType::Func(info.func_type(index).clone()),
        ExportKind::Table => ExternType::Table(info.tables[index as usize]),
        ExportKind::Memory => ExternType::Memory(info.memories[index as usize]),
        ExportKind::Global => ExternType::Global(info.globals[index as usize]),
    }
}

/// The registry's view of a module's code: functions with names, trap sites
/// and Wasm offsets.
fn code_region(compiled: &CompiledModule) -> CodeRegion {
    let info = &compiled.info;
    let functions = compiled
        .layout
        .iter()
        .map(|f| {
            let (index, name) = match f.kind {
                CodeKind::Wasm(i) => (
                    i,
                    info.function_name(i)
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("<wasm function {i}>")),
                ),
                CodeKind::EntryTrampoline(t) => (u32::MAX, format!("<entry trampoline type {t}>")),
                CodeKind::HostAdapter(t) => (u32::MAX, format!("<host adapter type {t}>")),
            };
            FunctionRange {
                start: f.offset,
                len: f.len,
                index,
                name: Some(name),
            }
        })
        .collect();
    CodeRegion {
        start: compiled.code_base,
        len: compiled.code_len,
        functions,
        traps: compiled
            .traps
            .iter()
            .map(|(offset, code)| TrapSite {
                code_offset: *offset,
                code: *code as u8,
            })
            .collect(),
        srclocs: compiled
            .srclocs
            .iter()
            .map(|(code_offset, source_offset)| SourceLoc {
                code_offset: *code_offset,
                source_offset: *source_offset,
            })
            .collect(),
        owner: compiled.code_base,
        name: info.name.clone(),
    }
}
