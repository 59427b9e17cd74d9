//! `Store<T>`: the one owner of everything guest code can touch. A store
//! holds its instances (their vmctx and segments), every memory, table and
//! global they define or the host creates in it, the per-store contexts of
//! the host functions they import, the guest stack its runs use, its run
//! state (`run_state`), its limits, and the embedder's data `T`.
//!
//! Handles (`Instance`, `Memory`, `Table`, `Global`, `Func`, `TypedFunc`)
//! are `Copy` values naming an item of one store: its id and an index (a
//! `Func` names its `VMFuncRef`). Every use goes through the store
//! (`AsContext` for reading, `AsContextMut` for anything that writes or
//! runs guest code), which checks the id first. Ids are never reused, and a
//! store frees nothing before it is dropped, so a handle whose id matches
//! always names a live item. Everything stays alive until the store drops:
//! function references in tables and globals, or held by the host, are
//! valid for the store's whole life.
//!
//! `Store<T: Send>` is `Send` and never `Sync`: one thread at a time owns
//! it, and guest code of one store never runs on two threads at once.

pub(crate) mod instance;
pub(crate) mod limits;
pub(crate) mod run_state;
pub(crate) mod storage;
pub(crate) mod vm;

use crate::compile::engine::Engine;
use crate::ending::kill::KillSwitch;
use crate::error::Error;
use instance::InstanceCore;
use limits::{StoreLimits, StoreResources};
use run_state::{RunState, StoreState};
use std::any::Any;
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use storage::{GlobalStorage, MemoryStorage, TableStorage};

/// Which store a handle belongs to. Unique in the process, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct StoreId(NonZeroU64);

impl StoreId {
    fn next() -> StoreId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        StoreId(NonZeroU64::new(id).expect("2^64 stores"))
    }
}

/// The part of a store that does not depend on `T`: its items. Each item
/// is boxed (which clippy's `vec_box` would drop) because compiled code and
/// other items hold its address, which must not move when the vector grows.
#[allow(clippy::vec_box)]
pub(crate) struct StoreParts {
    pub(crate) id: StoreId,
    pub(crate) engine: Engine,
    /// Boxed: each vmctx points to its `InstanceCore`, and function
    /// references point into the vmctx, so neither may move.
    pub(crate) instances: Vec<Box<InstanceCore>>,
    pub(crate) memories: Vec<Box<MemoryStorage>>,
    pub(crate) tables: Vec<Box<TableStorage>>,
    pub(crate) globals: Vec<Box<GlobalStorage>>,
    /// One context per host function this store's instances import (keyed
    /// by the linker's function): callers write scratch words into it, so
    /// no two stores may share one.
    pub(crate) host_contexts: HashMap<usize, Box<dyn Any>>,
    /// Limits and what is in use; boxed because memories point to it.
    pub(crate) resources: Box<StoreResources>,
}

impl StoreParts {
    /// Panics unless a handle with `id` belongs to this store.
    #[track_caller]
    pub(crate) fn check(&self, id: StoreId, what: &str) {
        if id != self.id {
            panic!("{what} used with a store it does not belong to");
        }
    }

    /// An error unless a handle with `id` belongs to this store.
    #[inline]
    pub(crate) fn ensure(&self, id: StoreId, what: &str) -> Result<(), Error> {
        if id == self.id {
            Ok(())
        } else {
            Err(another_store(what))
        }
    }

    pub(crate) fn instance(&self, index: u32) -> &InstanceCore {
        &self.instances[index as usize]
    }
}

/// A store's contents. Boxed inside `Store`, so its address is fixed:
/// every vmctx of the store holds it as the `activation` (host functions
/// reach the data through it) and the run state's fiber lives in it.
pub(crate) struct StoreInner<T: 'static> {
    /// Dropped first: the guest stack may live in a memory's mapping.
    pub(crate) run: RunState,
    pub(crate) parts: StoreParts,
    pub(crate) data: T,
}

/// Owns instances, memories, tables, globals, host-function contexts and
/// the embedder's data `T`; see the module docs of `crate::store` (and
/// ARCHITECTURE.md) for the model.
///
/// At most one run of guest code is in progress (or suspended) in a store
/// at a time; `state()` tells which. A `KillSwitch` from `kill_switch()`
/// stops that run, whichever of the store's instances it is executing.
pub struct Store<T: 'static> {
    pub(crate) inner: Box<StoreInner<T>>,
}

// SAFETY: the raw pointers a store holds (in each vmctx, the function
// references, the fiber state, the host-function contexts) all point into
// objects the store itself owns, or into the engine's and modules' code,
// which are `Send + Sync`. No handle outside the store holds a pointer
// into it (handles are ids and indices, checked against the store), so a
// store moved to another thread takes every object its pointers reach
// along, and nothing else can reach them meanwhile. Host frames of a
// suspended run, whose locals the type system cannot see, are pinned to
// the thread that suspended them (`crate::api::calls`): they never run on another
// thread unless the host function chose `Caller::suspend_unpinned`, whose
// contract covers exactly this. `T: Send` covers the data.
unsafe impl<T: Send> Send for StoreInner<T> {}

impl<T: 'static> std::fmt::Debug for Store<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("instances", &self.inner.parts.instances.len())
            .field("state", &self.inner.run.state())
            .finish()
    }
}

impl<T: 'static> Store<T> {
    /// An empty store for modules of `engine`, holding `data`.
    pub fn new(engine: &Engine, data: T) -> Store<T> {
        let config = engine.config();
        Store {
            inner: Box::new(StoreInner {
                run: RunState::new(config),
                parts: StoreParts {
                    id: StoreId::next(),
                    engine: engine.clone(),
                    instances: Vec::new(),
                    memories: Vec::new(),
                    tables: Vec::new(),
                    globals: Vec::new(),
                    host_contexts: HashMap::new(),
                    resources: Box::new(StoreResources::new(StoreLimits::default())),
                },
                data,
            }),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.parts.engine
    }

    /// The embedder's data.
    pub fn data(&self) -> &T {
        &self.inner.data
    }

    pub fn data_mut(&mut self) -> &mut T {
        &mut self.inner.data
    }

    /// Drops the store (every instance and item in it) and returns the data.
    pub fn into_data(self) -> T {
        let mut this = std::mem::ManuallyDrop::new(self);
        this.inner.tear_down();
        // SAFETY: `this` is never used or dropped again; the box is moved
        // out exactly once.
        let inner = unsafe { std::ptr::read(&this.inner) };
        let StoreInner { parts, run, data } = *inner;
        drop(run);
        drop(parts);
        data
    }

    /// The store's run state; see `StoreState` for every transition.
    pub fn state(&self) -> StoreState {
        self.inner.run.state()
    }

    /// Whether a host panic left the store unusable (until `reset`).
    pub fn is_poisoned(&self) -> bool {
        self.inner.run.state() == StoreState::Poisoned
    }

    /// A switch that stops this store's current run (whichever of its
    /// instances is running), or its next run if none is in progress, from
    /// any thread. See `KillSwitch::terminate`.
    pub fn kill_switch(&self) -> KillSwitch {
        self.inner.run.kill.switch()
    }

    /// Caps what this store may hold from now on: memory bytes, table
    /// elements, instances, memories and tables, all counted over the whole
    /// store. Instantiation and every grow check them; a `memory.grow`
    /// or `table.grow` past a limit returns -1 to the guest, and
    /// instantiation past one fails with `Error::Resource`. Items already
    /// there stay, even above the new limits.
    pub fn set_limits(&mut self, limits: StoreLimits) {
        self.inner.parts.resources.set_limits(limits);
    }

    /// The limits in force (`StoreLimits::default()` is unlimited).
    pub fn limits(&self) -> StoreLimits {
        self.inner.parts.resources.limits()
    }

    /// What the store holds now, in the units of `StoreLimits`.
    pub fn usage(&self) -> crate::StoreUsage {
        self.inner.parts.resources.usage()
    }
}

/// A shared borrow of a store: what reading a handle needs.
pub struct StoreContext<'a, T: 'static>(pub(crate) &'a StoreInner<T>);

/// An exclusive borrow of a store: what writing through a handle or
/// running guest code needs.
pub struct StoreContextMut<'a, T: 'static>(pub(crate) &'a mut StoreInner<T>);

/// Anything that lends a store for reading: `&Store<T>`, `&mut Store<T>`,
/// `&Caller<'_, T>`, `&mut Caller<'_, T>` and the contexts themselves.
pub trait AsContext {
    type Data: 'static;
    fn as_context(&self) -> StoreContext<'_, Self::Data>;
}

/// Anything that lends a store for writing and running guest code.
pub trait AsContextMut: AsContext {
    fn as_context_mut(&mut self) -> StoreContextMut<'_, Self::Data>;
}

impl<T: 'static> AsContext for Store<T> {
    type Data = T;
    fn as_context(&self) -> StoreContext<'_, T> {
        StoreContext(&self.inner)
    }
}

impl<T: 'static> AsContextMut for Store<T> {
    fn as_context_mut(&mut self) -> StoreContextMut<'_, T> {
        StoreContextMut(&mut self.inner)
    }
}

impl<T: 'static> AsContext for StoreContext<'_, T> {
    type Data = T;
    fn as_context(&self) -> StoreContext<'_, T> {
        StoreContext(self.0)
    }
}

impl<T: 'static> AsContext for StoreContextMut<'_, T> {
    type Data = T;
    fn as_context(&self) -> StoreContext<'_, T> {
        StoreContext(self.0)
    }
}

impl<T: 'static> AsContextMut for StoreContextMut<'_, T> {
    fn as_context_mut(&mut self) -> StoreContextMut<'_, T> {
        StoreContextMut(self.0)
    }
}

impl<C: AsContext + ?Sized> AsContext for &C {
    type Data = C::Data;
    fn as_context(&self) -> StoreContext<'_, C::Data> {
        (**self).as_context()
    }
}

impl<C: AsContext + ?Sized> AsContext for &mut C {
    type Data = C::Data;
    fn as_context(&self) -> StoreContext<'_, C::Data> {
        (**self).as_context()
    }
}

impl<C: AsContextMut + ?Sized> AsContextMut for &mut C {
    fn as_context_mut(&mut self) -> StoreContextMut<'_, C::Data> {
        (**self).as_context_mut()
    }
}

impl<'a, T: 'static> From<&'a Store<T>> for StoreContext<'a, T> {
    fn from(store: &'a Store<T>) -> Self {
        StoreContext(&store.inner)
    }
}

impl<'a, T: 'static> From<&'a mut Store<T>> for StoreContext<'a, T> {
    fn from(store: &'a mut Store<T>) -> Self {
        StoreContext(&store.inner)
    }
}

impl<'a, T: 'static> From<StoreContextMut<'a, T>> for StoreContext<'a, T> {
    fn from(store: StoreContextMut<'a, T>) -> Self {
        StoreContext(store.0)
    }
}

impl<'a, T: 'static> From<&'a mut Store<T>> for StoreContextMut<'a, T> {
    fn from(store: &'a mut Store<T>) -> Self {
        StoreContextMut(&mut store.inner)
    }
}

impl<'a, T: 'static> StoreContext<'a, T> {
    pub fn engine(&self) -> &'a Engine {
        &self.0.parts.engine
    }

    pub fn data(&self) -> &'a T {
        &self.0.data
    }
}

impl<'a, T: 'static> StoreContextMut<'a, T> {
    pub fn engine(&self) -> &Engine {
        &self.0.parts.engine
    }

    pub fn data(&self) -> &T {
        &self.0.data
    }

    pub fn data_mut(&mut self) -> &mut T {
        &mut self.0.data
    }
}

#[cold]
fn another_store(what: &str) -> Error {
    Error::InvalidArgument(format!("{what} belongs to another store"))
}
