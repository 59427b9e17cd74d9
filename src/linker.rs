//! `Linker<T>`: names host functions, memories, tables, globals and other
//! instances' exports under `(module, name)`, resolves a module's imports
//! against them with type checks, and instantiates.

use crate::externals::{Global, Memory, Table};
use crate::func::{dynamic_host_func, HostFunc, IntoFunc};
use crate::group::Group;
use crate::instance::{instantiate_core, FuncImport, Instance, Resolved};
use crate::module::Module;
use crate::values::{Func, Val};
use crate::{Caller, Engine, Error};
use backstop_jit::{ExternType, FuncType, ImportKind, MemoryType, TableType, ValType};
use std::collections::HashMap;
use std::sync::Arc;

/// Anything an instance can import or export.
#[derive(Clone, Debug)]
pub enum Extern {
    Func(Func),
    Table(Table),
    Memory(Memory),
    Global(Global),
}

impl Extern {
    /// A description of the kind and type, for error messages.
    fn describe(&self) -> String {
        match self {
            Extern::Func(f) => f.ty().to_string(),
            Extern::Table(t) => t.ty().to_string(),
            Extern::Memory(m) => {
                let mut ty = m.ty();
                ty.minimum = m.size_pages();
                ty.to_string()
            }
            Extern::Global(g) => g.ty().to_string(),
        }
    }
}

impl From<Func> for Extern {
    fn from(f: Func) -> Self {
        Extern::Func(f)
    }
}
impl From<Table> for Extern {
    fn from(t: Table) -> Self {
        Extern::Table(t)
    }
}
impl From<Memory> for Extern {
    fn from(m: Memory) -> Self {
        Extern::Memory(m)
    }
}
impl From<Global> for Extern {
    fn from(g: Global) -> Self {
        Extern::Global(g)
    }
}

enum Definition<T> {
    HostFunc(Arc<HostFunc<T>>),
    Extern(Extern),
}

impl<T> Clone for Definition<T> {
    fn clone(&self) -> Self {
        match self {
            Definition::HostFunc(h) => Definition::HostFunc(h.clone()),
            Definition::Extern(e) => Definition::Extern(e.clone()),
        }
    }
}

/// Resolves imports by name. `T` is the data type of the instances it
/// creates; host functions receive a `Caller<'_, T>`.
pub struct Linker<T> {
    engine: Engine,
    definitions: HashMap<(String, String), Definition<T>>,
    allow_shadowing: bool,
}

impl<T> Clone for Linker<T> {
    fn clone(&self) -> Self {
        Linker {
            engine: self.engine.clone(),
            definitions: self.definitions.clone(),
            allow_shadowing: self.allow_shadowing,
        }
    }
}

/// Whether limits `(min, max)` satisfy the limits an import asks for.
fn limits_match(actual: (u32, Option<u32>), wanted: (u32, Option<u32>)) -> bool {
    actual.0 >= wanted.0
        && match (actual.1, wanted.1) {
            (_, None) => true,
            (Some(a), Some(w)) => a <= w,
            (None, Some(_)) => false,
        }
}

impl<T: 'static> Linker<T> {
    pub fn new(engine: &Engine) -> Linker<T> {
        Linker {
            engine: engine.clone(),
            definitions: HashMap::new(),
            allow_shadowing: false,
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Whether a new definition may replace an existing one of the same
    /// name (default false: defining a name twice is an error).
    pub fn allow_shadowing(&mut self, allow: bool) -> &mut Self {
        self.allow_shadowing = allow;
        self
    }

    fn insert(&mut self, module: &str, name: &str, def: Definition<T>) -> Result<&mut Self, Error> {
        let key = (module.to_string(), name.to_string());
        if !self.allow_shadowing && self.definitions.contains_key(&key) {
            return Err(Error::Link(format!(
                "`{module}::{name}` is already defined (use allow_shadowing to replace it)"
            )));
        }
        self.definitions.insert(key, def);
        Ok(self)
    }

    /// Defines a host function from a Rust closure. The closure may take a
    /// `Caller<'_, T>` first; its parameters and results are Wasm types, and
    /// it may return `Result<_, Error>` (an `Err` ends the guest's run).
    pub fn func_wrap<Params, Results>(
        &mut self,
        module: &str,
        name: &str,
        func: impl IntoFunc<T, Params, Results>,
    ) -> Result<&mut Self, Error> {
        let host = func.into_host_func(&self.engine);
        self.insert(module, name, Definition::HostFunc(Arc::new(host)))
    }

    /// Defines a host function whose type is given at run time.
    pub fn func_new(
        &mut self,
        module: &str,
        name: &str,
        ty: FuncType,
        func: impl Fn(Caller<'_, T>, &[Val], &mut [Val]) -> Result<(), Error> + Send + Sync + 'static,
    ) -> Result<&mut Self, Error> {
        let host = dynamic_host_func(&self.engine, ty, func);
        self.insert(module, name, Definition::HostFunc(Arc::new(host)))
    }

    /// Defines a function, table, memory or global.
    pub fn define(
        &mut self,
        module: &str,
        name: &str,
        item: impl Into<Extern>,
    ) -> Result<&mut Self, Error> {
        self.insert(module, name, Definition::Extern(item.into()))
    }

    /// Defines every export of `instance` under the module name `module`.
    pub fn instance(&mut self, module: &str, instance: &Instance<T>) -> Result<&mut Self, Error> {
        for (name, item) in instance.exports() {
            self.define(module, &name, item)?;
        }
        Ok(self)
    }

    /// Resolves `module`'s imports and instantiates it with `data`. Runs the
    /// start function, if any.
    pub fn instantiate(&self, module: &Module, data: T) -> Result<Instance<T>, Error> {
        if !module.engine().same(&self.engine) {
            return Err(Error::Link(
                "the module was compiled by a different engine than the linker's".into(),
            ));
        }
        let info = module.info();
        let mut resolved = Vec::with_capacity(info.imports.len());
        let group = Group::new();
        for import in &info.imports {
            let key = (import.module.clone(), import.name.clone());
            let Some(def) = self.definitions.get(&key) else {
                return Err(Error::Link(format!(
                    "unknown import: `{}::{}` is not defined",
                    import.module, import.name
                )));
            };
            let incompatible = |found: String| {
                Error::Link(format!(
                    "incompatible import type for `{}::{}`: expected {}, found {}",
                    import.module,
                    import.name,
                    describe_import(module, &import.kind),
                    found
                ))
            };
            let item = match (&import.kind, def) {
                (ImportKind::Func(type_index), Definition::HostFunc(host)) => {
                    let wanted = &info.types[*type_index as usize];
                    if &host.ty != wanted {
                        return Err(incompatible(host.ty.to_string()));
                    }
                    Resolved::Func(FuncImport {
                        // Straight to the closure when its signature allows,
                        // else through the module's adapter and array_call.
                        native_call: host
                            .native_entry
                            .unwrap_or(module.compiled().host_adapters[*type_index as usize]),
                        type_id: host.type_id,
                        vmctx: Arc::as_ptr(host) as usize,
                        keepalive: host.clone(),
                    })
                }
                (ImportKind::Func(type_index), Definition::Extern(Extern::Func(func))) => {
                    let wanted = &info.types[*type_index as usize];
                    let ty = func.ty();
                    if &ty != wanted {
                        return Err(incompatible(ty.to_string()));
                    }
                    if !func.core.module.engine().same(&self.engine) {
                        return Err(incompatible("a function of another engine".into()));
                    }
                    group.merge(&func.group);
                    // SAFETY: `func` keeps its VMFuncRef alive.
                    let raw = unsafe { *func.raw };
                    Resolved::Func(FuncImport {
                        native_call: raw.native_call,
                        type_id: raw.type_id,
                        vmctx: raw.vmctx,
                        keepalive: func.keepalive(),
                    })
                }
                (ImportKind::Table(wanted), Definition::Extern(Extern::Table(table))) => {
                    if !table_matches(table, wanted) {
                        return Err(incompatible(Extern::Table(table.clone()).describe()));
                    }
                    if !table.engine().same(&self.engine) {
                        return Err(incompatible("a table of another engine".into()));
                    }
                    // Only references can carry function references between
                    // instances (externref values are plain host handles).
                    if wanted.element == ValType::FuncRef {
                        group.merge(&table.group);
                    }
                    Resolved::Table(table.clone())
                }
                (ImportKind::Memory(wanted), Definition::Extern(Extern::Memory(memory))) => {
                    if !memory_matches(memory, wanted) {
                        return Err(incompatible(Extern::Memory(memory.clone()).describe()));
                    }
                    // Compiled code assumes this engine's memory layout.
                    if !memory.engine().same(&self.engine) {
                        return Err(incompatible("a memory of another engine".into()));
                    }
                    Resolved::Memory(memory.clone())
                }
                (ImportKind::Global(wanted), Definition::Extern(Extern::Global(global))) => {
                    if global.ty() != *wanted {
                        return Err(incompatible(global.ty().to_string()));
                    }
                    if !global.engine().same(&self.engine) {
                        return Err(incompatible("a global of another engine".into()));
                    }
                    if wanted.content == ValType::FuncRef {
                        group.merge(&global.group);
                    }
                    Resolved::Global(global.clone())
                }
                (_, Definition::HostFunc(host)) => return Err(incompatible(host.ty.to_string())),
                (_, Definition::Extern(other)) => return Err(incompatible(other.describe())),
            };
            resolved.push(item);
        }
        let core = instantiate_core(module, resolved, &group)?;
        Instance::new(core, data)
    }
}

fn describe_import(module: &Module, kind: &ImportKind) -> String {
    match kind {
        ImportKind::Func(t) => module.info().types[*t as usize].to_string(),
        ImportKind::Table(t) => ExternType::Table(*t).to_string(),
        ImportKind::Memory(m) => ExternType::Memory(*m).to_string(),
        ImportKind::Global(g) => ExternType::Global(*g).to_string(),
    }
}

fn table_matches(table: &Table, wanted: &TableType) -> bool {
    let ty = table.ty();
    ty.element == wanted.element
        && limits_match((table.size(), ty.maximum), (wanted.minimum, wanted.maximum))
}

fn memory_matches(memory: &Memory, wanted: &MemoryType) -> bool {
    let ty = memory.ty();
    limits_match(
        (memory.size_pages(), ty.maximum),
        (wanted.minimum, wanted.maximum),
    )
}
