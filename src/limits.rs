//! What one store may hold: `StoreLimits` (set by the embedder, so one
//! tenant's guest cannot take more than its share) and `StoreResources`,
//! the store's running count, checked on instantiation, on `Memory::new`,
//! `Table::new`, and on every grow, from the host or from guest code.
//!
//! Counts are `Cell`s: a store is used by one thread at a time, and the
//! grow builtins reach the count through a pointer while guest code runs,
//! with no `&mut` to the store at hand.

use std::cell::Cell;

/// Caps on what a store holds, each counted over the whole store (every
/// instance in it and every item the host created in it). `None`: no cap
/// beyond the engine's own (`Config::max_memory_pages`, the table limit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreLimits {
    /// Bytes of linear memory, over all memories.
    pub memory_bytes: Option<u64>,
    /// Table elements, over all tables.
    pub table_elements: Option<u64>,
    /// Instances.
    pub instances: Option<usize>,
    /// Linear memories (defined by instances or created by the host).
    pub memories: Option<usize>,
    /// Tables.
    pub tables: Option<usize>,
}

impl StoreLimits {
    /// No limits.
    pub fn new() -> StoreLimits {
        StoreLimits::default()
    }

    pub fn memory_bytes(mut self, bytes: u64) -> Self {
        self.memory_bytes = Some(bytes);
        self
    }

    pub fn table_elements(mut self, elements: u64) -> Self {
        self.table_elements = Some(elements);
        self
    }

    pub fn instances(mut self, count: usize) -> Self {
        self.instances = Some(count);
        self
    }

    pub fn memories(mut self, count: usize) -> Self {
        self.memories = Some(count);
        self
    }

    pub fn tables(mut self, count: usize) -> Self {
        self.tables = Some(count);
        self
    }
}

/// What a store holds now, in the units of `StoreLimits`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreUsage {
    pub memory_bytes: u64,
    pub table_elements: u64,
    pub instances: usize,
    pub memories: usize,
    pub tables: usize,
}

/// A store's limits and running counts.
pub(crate) struct StoreResources {
    limits: Cell<StoreLimits>,
    usage: Cell<StoreUsage>,
}

fn within<N: PartialOrd>(value: N, limit: Option<N>) -> bool {
    limit.is_none_or(|limit| value <= limit)
}

impl StoreResources {
    pub(crate) fn new(limits: StoreLimits) -> StoreResources {
        StoreResources {
            limits: Cell::new(limits),
            usage: Cell::new(StoreUsage::default()),
        }
    }

    pub(crate) fn set_limits(&self, limits: StoreLimits) {
        self.limits.set(limits);
    }

    pub(crate) fn limits(&self) -> StoreLimits {
        self.limits.get()
    }

    pub(crate) fn usage(&self) -> StoreUsage {
        self.usage.get()
    }

    fn update(&self, change: impl FnOnce(&mut StoreUsage)) {
        let mut usage = self.usage.get();
        change(&mut usage);
        self.usage.set(usage);
    }

    /// Counts `delta` more bytes of memory, if the limit allows.
    pub(crate) fn grow_memory(&self, delta: u64) -> bool {
        let usage = self.usage.get();
        let total = usage.memory_bytes.saturating_add(delta);
        if !within(total, self.limits.get().memory_bytes) {
            return false;
        }
        self.update(|u| u.memory_bytes = total);
        true
    }

    /// Counts `delta` more bytes whatever the limit (a reset restoring the
    /// size a memory had at instantiation).
    pub(crate) fn force_grow_memory(&self, delta: u64) {
        self.update(|u| u.memory_bytes = u.memory_bytes.saturating_add(delta));
    }

    /// Gives back bytes counted by `grow_memory` (a grow that failed after
    /// being counted, or a reset that shrank a memory).
    pub(crate) fn shrink_memory(&self, delta: u64) {
        self.update(|u| u.memory_bytes = u.memory_bytes.saturating_sub(delta));
    }

    /// Counts `delta` more table elements, if the limit allows.
    pub(crate) fn grow_table(&self, delta: u64) -> bool {
        let usage = self.usage.get();
        let total = usage.table_elements.saturating_add(delta);
        if !within(total, self.limits.get().table_elements) {
            return false;
        }
        self.update(|u| u.table_elements = total);
        true
    }

    pub(crate) fn force_grow_table(&self, delta: u64) {
        self.update(|u| u.table_elements = u.table_elements.saturating_add(delta));
    }

    pub(crate) fn shrink_table(&self, delta: u64) {
        self.update(|u| u.table_elements = u.table_elements.saturating_sub(delta));
    }

    /// Whether `instances` more instances, with `memories` and `tables`
    /// more of each, fit; the error names the limit that does not.
    pub(crate) fn check_new_items(
        &self,
        instances: usize,
        memories: usize,
        tables: usize,
    ) -> Result<(), crate::Error> {
        let usage = self.usage.get();
        let limits = self.limits.get();
        let checks = [
            ("instances", usage.instances, instances, limits.instances),
            ("memories", usage.memories, memories, limits.memories),
            ("tables", usage.tables, tables, limits.tables),
        ];
        for (what, used, more, limit) in checks {
            if more > 0 && !within(used + more, limit) {
                return Err(crate::Error::Resource(format!(
                    "the store's limit of {} {what} would be exceeded ({used} in use, {more} more needed)",
                    limit.unwrap_or_default()
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn add_items(&self, instances: usize, memories: usize, tables: usize) {
        self.update(|u| {
            u.instances += instances;
            u.memories += memories;
            u.tables += tables;
        });
    }
}
