//! `Module`: a compiled Wasm module. It owns the code memory, its `.eh_frame`
//! registration with the system unwinder, and its entry in the PC registry
//! (function names, trap sites, Wasm offsets). Dropping the last clone
//! deregisters both, then frees the code.

use crate::{Engine, Error};
use backstop_jit::{CodeKind, CompileOptions, CompiledModule, ExternType, ImportKind, ModuleInfo};
use backstop_unwind::{CodeRegion, FunctionRange, SourceLoc, TrapSite};
use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

/// Reads a module file; the error names it.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path)
        .map_err(|e| Error::InvalidArgument(format!("cannot read {}: {e}", path.display())))
}

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

/// The Wasm binary in `bytes`: `bytes` themselves if they are a binary,
/// else the text format compiled. Anything that starts with `\0`, or is not
/// UTF-8 text free of control characters, is taken for a (perhaps
/// truncated or malformed) binary, so a broken binary gets the binary
/// reader's error, not the text parser's. `path` names the file in text
/// errors (`--> prog.wat:5:1`).
fn to_binary<'a>(bytes: &'a [u8], path: Option<&Path>) -> Result<Cow<'a, [u8]>, Error> {
    let named = |message: String| match path {
        Some(path) => Error::Invalid(format!("{}: {message}", path.display())),
        None => Error::Invalid(message),
    };
    if bytes.is_empty() {
        return Err(named(
            "the module is empty (0 bytes): neither a Wasm binary nor text".into(),
        ));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) if bytes[0] != 0 && !text.chars().any(is_binary_control) => text,
        _ => return Ok(Cow::Borrowed(bytes)),
    };
    if text.trim().is_empty() {
        return Err(named(
            "the module is only white space: neither a Wasm binary nor text".into(),
        ));
    }
    wat::parse_str(text).map(Cow::Owned).map_err(|mut e| {
        if let Some(path) = path {
            e.set_path(path);
        }
        Error::Invalid(e.to_string())
    })
}

/// Characters that do not occur in text: control characters other than
/// tab, line feed, carriage return and form feed.
fn is_binary_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0c')
}

impl Module {
    /// Compiles a module from the binary or the text format.
    pub fn new(engine: &Engine, bytes: impl AsRef<[u8]>) -> Result<Module, Error> {
        Module::from_binary(engine, &to_binary(bytes.as_ref(), None)?)
    }

    /// Compiles a module from a file in the binary or the text format.
    /// Errors name the file.
    pub fn from_file(engine: &Engine, path: impl AsRef<Path>) -> Result<Module, Error> {
        let path = path.as_ref();
        let bytes = read_file(path)?;
        // Text errors name the file already (to_binary).
        let binary = to_binary(&bytes, Some(path))?;
        Module::from_binary(engine, &binary).map_err(|e| match e {
            Error::Invalid(m) => Error::Invalid(format!("{}: {m}", path.display())),
            Error::Unsupported(m) => Error::Unsupported(format!("{}: {m}", path.display())),
            other => other,
        })
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
        backstop_jit::module_info::validate(&to_binary(bytes.as_ref(), None)?)?;
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
