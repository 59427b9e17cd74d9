//! `Linker<T>`: names host functions, memories, tables, globals and other
//! instances' exports under `(module, name)`, resolves a module's imports
//! against them with type checks, and instantiates into a `Store<T>`.
//!
//! Host functions are store-independent, so one linker serves any number of
//! stores (on any threads). Items of a store (memories, tables, globals,
//! instance exports) can be defined too; a module that imports one can only
//! be instantiated in that store.

use crate::api::func::{dynamic_host_func, host_context, HostFunc, IntoFunc};
use crate::api::handles::{Global, Memory, Table};
use crate::api::instance::{instantiate, Instance};
use crate::api::values::{Func, Val};
use crate::compile::module::Module;
use crate::store::instance::{FuncImport, Resolved};
use crate::store::{AsContext, AsContextMut, StoreParts};
use crate::{Caller, Engine, Error};
use backstop_jit::{ExternType, FuncType, ImportKind, MemoryType, TableType};
use std::collections::HashMap;
use std::sync::Arc;

/// Anything an instance can import or export: a handle of some store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extern {
    Func(Func),
    Table(Table),
    Memory(Memory),
    Global(Global),
}

impl Extern {
    /// A description of the kind and type, for error messages; the item
    /// belongs to `parts`.
    fn describe(&self, parts: &StoreParts) -> String {
        match self {
            Extern::Func(f) => parts.engine.func_type(f.type_id_in(parts)).to_string(),
            Extern::Table(t) => {
                let table = t.storage(parts);
                let mut ty = table.ty();
                ty.minimum = table.size();
                ty.to_string()
            }
            Extern::Memory(m) => {
                let memory = m.storage(parts);
                let mut ty = memory.ty();
                ty.minimum = memory.size_pages();
                ty.to_string()
            }
            Extern::Global(g) => g.storage(parts).ty().to_string(),
        }
    }

    /// Which store the item belongs to.
    fn store(&self) -> crate::store::StoreId {
        match self {
            Extern::Func(f) => f.store,
            Extern::Table(t) => t.store,
            Extern::Memory(m) => m.store,
            Extern::Global(g) => g.store,
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
            Definition::Extern(e) => Definition::Extern(*e),
        }
    }
}

/// Resolves imports by name. `T` is the data type of the stores it
/// instantiates into; host functions receive a `Caller<'_, T>`.
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

    /// Defines every export of `instance` (of `store`) under the module
    /// name `module`.
    pub fn instance(
        &mut self,
        store: impl AsContext<Data = T>,
        module: &str,
        instance: Instance,
    ) -> Result<&mut Self, Error> {
        for (name, item) in instance.exports(store) {
            self.define(module, &name, item)?;
        }
        Ok(self)
    }

    /// Resolves `module`'s imports and instantiates it in `store`. Runs the
    /// start function, if any.
    pub fn instantiate(
        &self,
        mut store: impl AsContextMut<Data = T>,
        module: &Module,
    ) -> Result<Instance, Error> {
        let store = store.as_context_mut().0;
        if !module.engine().same(&self.engine) {
            return Err(Error::Link(
                "the module was compiled by a different engine than the linker's".into(),
            ));
        }
        if !store.parts.engine.same(&self.engine) {
            return Err(Error::Link(
                "the store belongs to a different engine than the linker's".into(),
            ));
        }
        let resolved = self.resolve(&mut store.parts, module)?;
        instantiate(store, module, resolved)
    }

    /// Checks every import of `module` against its definition and resolves
    /// it for the store `parts`.
    fn resolve(&self, parts: &mut StoreParts, module: &Module) -> Result<Vec<Resolved>, Error> {
        let info = module.info();
        let mut resolved = Vec::with_capacity(info.imports.len());
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
            if let Definition::Extern(item) = def {
                if item.store() != parts.id {
                    return Err(Error::Link(format!(
                        "`{}::{}` is defined by an item of another store",
                        import.module, import.name
                    )));
                }
            }
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
                        vmctx: host_context(parts, host),
                    })
                }
                (ImportKind::Func(type_index), Definition::Extern(Extern::Func(func))) => {
                    let wanted = &info.types[*type_index as usize];
                    let ty = parts.engine.func_type(func.type_id_in(parts));
                    if &ty != wanted {
                        return Err(incompatible(ty.to_string()));
                    }
                    let raw = func.vm_copy(parts);
                    Resolved::Func(FuncImport {
                        native_call: raw.native_call,
                        type_id: raw.type_id,
                        vmctx: raw.vmctx,
                    })
                }
                (ImportKind::Table(wanted), Definition::Extern(item @ Extern::Table(table))) => {
                    let storage = table.storage(parts);
                    if !table_matches(storage.ty(), storage.size(), wanted) {
                        return Err(incompatible(item.describe(parts)));
                    }
                    Resolved::Table(table.index)
                }
                (ImportKind::Memory(wanted), Definition::Extern(item @ Extern::Memory(memory))) => {
                    let storage = memory.storage(parts);
                    if !memory_matches(storage.ty(), storage.size_pages(), wanted) {
                        return Err(incompatible(item.describe(parts)));
                    }
                    Resolved::Memory(memory.index)
                }
                (ImportKind::Global(wanted), Definition::Extern(Extern::Global(global))) => {
                    let ty = global.storage(parts).ty();
                    if ty != *wanted {
                        return Err(incompatible(ty.to_string()));
                    }
                    Resolved::Global(global.index)
                }
                (_, Definition::HostFunc(host)) => return Err(incompatible(host.ty.to_string())),
                (_, Definition::Extern(other)) => return Err(incompatible(other.describe(parts))),
            };
            resolved.push(item);
        }
        Ok(resolved)
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

fn table_matches(ty: TableType, size: u32, wanted: &TableType) -> bool {
    ty.element == wanted.element
        && limits_match((size, ty.maximum), (wanted.minimum, wanted.maximum))
}

fn memory_matches(ty: MemoryType, pages: u32, wanted: &MemoryType) -> bool {
    limits_match((pages, ty.maximum), (wanted.minimum, wanted.maximum))
}
