//! The public handles of memories, tables and globals: `Copy` values naming
//! an item of one store by index. Reading takes the store shared
//! (`AsContext`), writing takes it exclusively (`AsContextMut`), so no
//! handle can touch an item while guest code of its store runs, unless it
//! is a host function of that run, holding its `Caller`. A handle used with
//! another store panics (or, where the method returns a `Result`, fails).

use crate::api::values::Val;
use crate::store::storage::{GlobalStorage, MemoryStorage, TableStorage};
use crate::store::{AsContext, AsContextMut, StoreContext, StoreContextMut, StoreId, StoreParts};
use crate::Error;
use backstop_jit::{GlobalType, MemoryType, TableType};

/// A linear memory of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Memory {
    pub(crate) store: StoreId,
    pub(crate) index: u32,
}

impl Memory {
    /// A new memory of type `ty` in `store`, with `ty.minimum` zeroed
    /// pages (counted against the store's limits).
    pub fn new(mut store: impl AsContextMut, ty: MemoryType) -> Result<Memory, Error> {
        let parts = &mut store.as_context_mut().0.parts;
        parts.resources.check_new_items(0, 1, 0)?;
        let storage = MemoryStorage::new(&parts.engine, ty, 0, &parts.resources)?;
        parts.resources.add_items(0, 1, 0);
        parts.memories.push(Box::new(storage));
        Ok(Memory {
            store: parts.id,
            index: parts.memories.len() as u32 - 1,
        })
    }

    #[track_caller]
    pub(crate) fn storage<'a>(&self, parts: &'a StoreParts) -> &'a MemoryStorage {
        parts.check(self.store, "a Memory");
        &parts.memories[self.index as usize]
    }

    fn checked<'a>(&self, parts: &'a StoreParts) -> Result<&'a MemoryStorage, Error> {
        parts.ensure(self.store, "the memory")?;
        Ok(&parts.memories[self.index as usize])
    }

    /// The memory's type, with the minimum it was created with.
    pub fn ty(&self, store: impl AsContext) -> MemoryType {
        self.storage(&store.as_context().0.parts).ty()
    }

    /// The current size in 64 KiB pages.
    pub fn size_pages(&self, store: impl AsContext) -> u32 {
        self.storage(&store.as_context().0.parts).size_pages()
    }

    /// The current size in bytes.
    pub fn data_size(&self, store: impl AsContext) -> usize {
        self.storage(&store.as_context().0.parts).data_size()
    }

    /// The most pages it can grow to: its declared maximum, capped by the
    /// engine's limit and the reservation (the store's memory limit may
    /// stop it sooner).
    pub fn maximum_pages(&self, store: impl AsContext) -> u32 {
        self.storage(&store.as_context().0.parts).maximum_pages()
    }

    /// Grows by `delta` pages; returns the old size in pages.
    pub fn grow(&self, mut store: impl AsContextMut, delta: u32) -> Result<u32, Error> {
        let store = store.as_context_mut();
        let memory = self.checked(&store.0.parts)?;
        memory.grow_pages(delta).ok_or_else(|| {
            Error::Resource(format!(
                "cannot grow memory of {} pages by {delta} (maximum {}, or the store's limit)",
                memory.size_pages(),
                memory.maximum_pages()
            ))
        })
    }

    /// Copies `buffer.len()` bytes at `offset` out of the memory.
    pub fn read(
        &self,
        store: impl AsContext,
        offset: usize,
        buffer: &mut [u8],
    ) -> Result<(), Error> {
        self.checked(&store.as_context().0.parts)?
            .read(offset, buffer)
    }

    /// Copies `data` into the memory at `offset`.
    pub fn write(
        &self,
        mut store: impl AsContextMut,
        offset: usize,
        data: &[u8],
    ) -> Result<(), Error> {
        self.checked(&store.as_context_mut().0.parts)?
            .write(offset, data)
    }

    /// The memory's bytes, for as long as the store is borrowed.
    pub fn data<'a, T: 'static>(&self, store: impl Into<StoreContext<'a, T>>) -> &'a [u8] {
        self.storage(&store.into().0.parts).data()
    }

    /// The memory's bytes, mutably, for as long as the store is borrowed
    /// exclusively (no guest code of the store can run meanwhile).
    pub fn data_mut<'a, T: 'static>(
        &self,
        store: impl Into<StoreContextMut<'a, T>>,
    ) -> &'a mut [u8] {
        self.storage(&store.into().0.parts).data_mut()
    }

    /// The memory's bytes and the store's data, both mutably (e.g. to copy
    /// guest memory into host state without a buffer in between).
    pub fn data_and_store_mut<'a, T: 'static>(
        &self,
        store: impl Into<StoreContextMut<'a, T>>,
    ) -> (&'a mut [u8], &'a mut T) {
        let store = store.into().0;
        let bytes = self.storage(&store.parts).data_mut();
        (bytes, &mut store.data)
    }
}

/// A table of references of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Table {
    pub(crate) store: StoreId,
    pub(crate) index: u32,
}

impl Table {
    /// A new table of type `ty` in `store`, with every element set to
    /// `init` (counted against the store's limits).
    pub fn new(mut store: impl AsContextMut, ty: TableType, init: Val) -> Result<Table, Error> {
        let parts = &mut store.as_context_mut().0.parts;
        let raw = element_raw(parts, ty, &init)?;
        parts.resources.check_new_items(0, 0, 1)?;
        let storage = TableStorage::new(ty, 0, &parts.resources)?;
        storage.fill_all(raw);
        parts.resources.add_items(0, 0, 1);
        parts.tables.push(Box::new(storage));
        Ok(Table {
            store: parts.id,
            index: parts.tables.len() as u32 - 1,
        })
    }

    #[track_caller]
    pub(crate) fn storage<'a>(&self, parts: &'a StoreParts) -> &'a TableStorage {
        parts.check(self.store, "a Table");
        &parts.tables[self.index as usize]
    }

    fn checked<'a>(&self, parts: &'a StoreParts) -> Result<&'a TableStorage, Error> {
        parts.ensure(self.store, "the table")?;
        Ok(&parts.tables[self.index as usize])
    }

    pub fn ty(&self, store: impl AsContext) -> TableType {
        self.storage(&store.as_context().0.parts).ty()
    }

    /// The current number of elements.
    pub fn size(&self, store: impl AsContext) -> u32 {
        self.storage(&store.as_context().0.parts).size()
    }

    /// Element `index`, or `None` when out of bounds.
    pub fn get(&self, store: impl AsContext, index: u32) -> Option<Val> {
        let parts = &store.as_context().0.parts;
        let table = self.storage(parts);
        let raw = table.get_raw(index)?;
        // SAFETY: elements of this table hold values of its element type,
        // and function references of this store.
        Some(unsafe { Val::from_raw(raw as u128, table.ty().element, parts.id) })
    }

    /// Sets element `index`.
    pub fn set(&self, mut store: impl AsContextMut, index: u32, val: Val) -> Result<(), Error> {
        let parts = &store.as_context_mut().0.parts;
        let table = self.checked(parts)?;
        let raw = element_raw(parts, table.ty(), &val)?;
        if table.set_raw(index, raw) {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "table index {index} out of bounds (size {})",
                table.size()
            )))
        }
    }

    /// Grows the table by `delta` elements set to `init`; returns the old
    /// size.
    pub fn grow(&self, mut store: impl AsContextMut, delta: u32, init: Val) -> Result<u32, Error> {
        let parts = &store.as_context_mut().0.parts;
        let table = self.checked(parts)?;
        let raw = element_raw(parts, table.ty(), &init)?;
        table.grow_raw(delta, raw).ok_or_else(|| {
            Error::Resource(format!(
                "cannot grow table of {} elements by {delta} (its maximum, or the store's limit)",
                table.size()
            ))
        })
    }
}

/// The raw element for `val` in a table of type `ty` of the store `parts`.
fn element_raw(parts: &StoreParts, ty: TableType, val: &Val) -> Result<usize, Error> {
    if val.ty() != ty.element {
        return Err(Error::InvalidArgument(format!(
            "a {} value cannot be stored in a table of {}",
            val.ty(),
            ty.element
        )));
    }
    Ok(val.to_raw_in(parts)? as usize)
}

/// A global variable of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Global {
    pub(crate) store: StoreId,
    pub(crate) index: u32,
}

impl Global {
    /// A new global of type `ty` in `store`, holding `val`.
    pub fn new(mut store: impl AsContextMut, ty: GlobalType, val: Val) -> Result<Global, Error> {
        let parts = &mut store.as_context_mut().0.parts;
        if val.ty() != ty.content {
            return Err(Error::InvalidArgument(format!(
                "a {} value cannot initialise a global of type {}",
                val.ty(),
                ty.content
            )));
        }
        let raw = val.to_raw_in(parts)?;
        parts.globals.push(Box::new(GlobalStorage::new(ty, raw)));
        Ok(Global {
            store: parts.id,
            index: parts.globals.len() as u32 - 1,
        })
    }

    #[track_caller]
    pub(crate) fn storage<'a>(&self, parts: &'a StoreParts) -> &'a GlobalStorage {
        parts.check(self.store, "a Global");
        &parts.globals[self.index as usize]
    }

    pub fn ty(&self, store: impl AsContext) -> GlobalType {
        self.storage(&store.as_context().0.parts).ty()
    }

    /// The current value.
    pub fn get(&self, store: impl AsContext) -> Val {
        let parts = &store.as_context().0.parts;
        let global = self.storage(parts);
        // SAFETY: the storage holds a value of the global's content type,
        // and function references of this store.
        unsafe { Val::from_raw(global.get_raw(), global.ty().content, parts.id) }
    }

    /// Sets the value; the global must be mutable and the type must match.
    pub fn set(&self, mut store: impl AsContextMut, val: Val) -> Result<(), Error> {
        let parts = &store.as_context_mut().0.parts;
        parts.ensure(self.store, "the global")?;
        let global = &parts.globals[self.index as usize];
        let ty = global.ty();
        if !ty.mutable {
            return Err(Error::InvalidArgument("the global is immutable".into()));
        }
        if val.ty() != ty.content {
            return Err(Error::InvalidArgument(format!(
                "a {} value cannot be stored in a global of type {}",
                val.ty(),
                ty.content
            )));
        }
        global.set_raw(val.to_raw_in(parts)?);
        Ok(())
    }
}
