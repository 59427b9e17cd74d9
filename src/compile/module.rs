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
    _lines: Option<crate::debug::lines::LineTableRegistration>,
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
    if backstop_jit::is_precompiled(bytes) {
        return Err(named(
            "this is a compiled module (.cwasm), not Wasm: load it with `Module::deserialize`"
                .into(),
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

/// An error about a module file's contents, with the file's name in front.
fn naming_file(error: Error, path: &Path) -> Error {
    let named = |m: String| format!("{}: {m}", path.display());
    match error {
        Error::Invalid(m) => Error::Invalid(named(m)),
        Error::Unsupported(m) => Error::Unsupported(named(m)),
        Error::Incompatible(m) => Error::Incompatible(named(m)),
        other => other,
    }
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
        Module::from_binary(engine, &binary).map_err(|e| naming_file(e, path))
    }

    /// Compiles a module from the binary format only.
    pub fn from_binary(engine: &Engine, binary: &[u8]) -> Result<Module, Error> {
        let compiled = backstop_jit::compile(
            &engine.inner.isa,
            binary,
            &mut |ty| engine.type_id(ty),
            compile_options(engine),
        )?;
        Module::from_compiled(engine, compiled, Origin::Compiled)
    }

    /// Loads a compiled module made by `Engine::precompile_module` (or
    /// `backstop compile`) without compiling it. A file made by another
    /// build of Backstop or with other settings is refused
    /// (`Error::Incompatible`), a damaged one too (`Error::Invalid`, by its
    /// checksum).
    ///
    /// # Safety
    ///
    /// A compiled module is native code, and Backstop runs it as it finds
    /// it: the checksum catches damage, not tampering, and no check can tell
    /// good machine code from bad. `bytes` must come from
    /// `Engine::precompile_module` or `backstop compile` run on Wasm of
    /// your choosing, and must not have been writable by anyone you would
    /// not let run code in this process. A `.cwasm` is trusted input, like a
    /// shared library.
    pub unsafe fn deserialize(engine: &Engine, bytes: impl AsRef<[u8]>) -> Result<Module, Error> {
        let compiled = backstop_jit::load_precompiled(
            &engine.inner.isa,
            bytes.as_ref(),
            compile_options(engine),
            &mut |ty| engine.type_id(ty),
        )?;
        Module::from_compiled(engine, compiled, Origin::Loaded)
    }

    /// `Module::deserialize` of a file; errors name it.
    ///
    /// # Safety
    ///
    /// As for `Module::deserialize`: the file is trusted native code.
    pub unsafe fn deserialize_file(
        engine: &Engine,
        path: impl AsRef<Path>,
    ) -> Result<Module, Error> {
        let path = path.as_ref();
        let bytes = read_file(path)?;
        // SAFETY: the caller vouches for the file (this function's contract).
        unsafe { Module::deserialize(engine, bytes) }.map_err(|e| naming_file(e, path))
    }

    /// Registers freshly loaded code: its unwind info with the system
    /// unwinder, its functions and trap sites in the PC registry, and, where
    /// the engine asks for them, its perf map and GDB entries.
    fn from_compiled(
        engine: &Engine,
        compiled: CompiledModule,
        origin: Origin,
    ) -> Result<Module, Error> {
        let config = engine.config();
        let region = Arc::new(code_region(&compiled));
        let eh_frame = match &compiled.cie {
            Some(cie) if !compiled.fdes.is_empty() => Some(
                backstop_unwind::EhFrameRegistration::new(cie.clone(), compiled.fdes.clone())
                    .map_err(|e| match origin {
                        Origin::Compiled => {
                            Error::Unsupported(format!("unwind info registration: {e}"))
                        }
                        Origin::Loaded => {
                            Error::Invalid(format!("corrupt compiled module: its unwind info: {e}"))
                        }
                    })?,
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
        let lines = crate::debug::lines::LineTable::from_module(&compiled.info).map(|table| {
            crate::debug::lines::LineTableRegistration::publish(compiled.code_base, table)
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

    /// Whether `bytes` are a compiled module (`.cwasm`, for
    /// `Module::deserialize`) rather than Wasm: they start with its magic
    /// number. 16 bytes suffice to tell.
    pub fn is_precompiled(bytes: &[u8]) -> bool {
        backstop_jit::is_precompiled(bytes)
    }

    /// Validates without compiling, with the proposals `engine` enables.
    pub fn validate(engine: &Engine, bytes: impl AsRef<[u8]>) -> Result<(), Error> {
        let proposals = engine.config().proposals;
        backstop_jit::module_info::validate(&to_binary(bytes.as_ref(), None)?, proposals)?;
        Ok(())
    }

    pub(crate) fn info(&self) -> &ModuleInfo {
        &self.inner.compiled.info
    }

    pub(crate) fn compiled(&self) -> &CompiledModule {
        &self.inner.compiled
    }

    pub fn engine(&self) -> &Engine {
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

    /// How long compilation took (for a module from `Module::deserialize`,
    /// how long loading took).
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

/// Where a module's code came from, for the wording of errors.
#[derive(Clone, Copy)]
enum Origin {
    Compiled,
    /// From a `.cwasm` file: what fails to register is damaged data.
    Loaded,
}

/// The compile options an engine's configuration asks for.
fn compile_options(engine: &Engine) -> CompileOptions {
    let config = engine.config();
    let mut options = CompileOptions {
        memory_layout: config.memory_layout,
        interrupt_checks: config.interrupt_checks,
        loop_closing_min_live: config.loop_closing_min_live,
        divconst: config.divconst,
        proposals: config.proposals,
        ..CompileOptions::default()
    };
    if !config.parallel_compilation {
        options.threads = 1;
    }
    options
}

/// `Engine::precompile_module`: compiles `bytes` (binary or text) into a
/// `.cwasm` file's contents. `path` names the file in errors.
pub(crate) fn precompile(
    engine: &Engine,
    bytes: &[u8],
    path: Option<&Path>,
) -> Result<Vec<u8>, Error> {
    let binary = to_binary(bytes, path)?;
    backstop_jit::precompile(&engine.inner.isa, &binary, compile_options(engine)).map_err(|e| {
        match path {
            Some(path) => naming_file(e.into(), path),
            None => e.into(),
        }
    })
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
