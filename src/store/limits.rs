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

    /// Adds `delta` to the count `field` picks if the total stays within
    /// `limit`; otherwise changes nothing and returns false.
    fn grow(&self, delta: u64, limit: Option<u64>, field: fn(&mut StoreUsage) -> &mut u64) -> bool {
        let mut usage = self.usage.get();
        let count = field(&mut usage);
        let total = count.saturating_add(delta);
        if !within(total, limit) {
            return false;
        }
        *count = total;
        self.usage.set(usage);
        true
    }

    /// Counts `delta` more bytes of memory, if the limit allows.
    pub(crate) fn grow_memory(&self, delta: u64) -> bool {
        self.grow(delta, self.limits.get().memory_bytes, |u| {
            &mut u.memory_bytes
        })
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
        self.grow(delta, self.limits.get().table_elements, |u| {
            &mut u.table_elements
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_stop_at_the_limit_and_change_nothing_when_refused() {
        let resources = StoreResources::new(StoreLimits::new().memory_bytes(100).table_elements(3));
        assert!(resources.grow_memory(60));
        assert!(!resources.grow_memory(41));
        assert!(resources.grow_memory(40));
        assert!(!resources.grow_memory(1));
        assert!(resources.grow_table(3));
        assert!(!resources.grow_table(1));
        resources.shrink_table(2);
        assert!(resources.grow_table(2));
        resources.force_grow_memory(u64::MAX);
        let usage = resources.usage();
        assert_eq!((usage.memory_bytes, usage.table_elements), (u64::MAX, 3));
        resources.shrink_memory(u64::MAX);
        assert_eq!(resources.usage().memory_bytes, 0);
    }

    #[test]
    fn item_counts_name_the_limit_they_exceed() {
        let resources = StoreResources::new(StoreLimits::new().instances(1).tables(2));
        resources.check_new_items(1, 5, 2).unwrap();
        resources.add_items(1, 5, 2);
        let error = resources.check_new_items(1, 0, 0).unwrap_err().to_string();
        assert!(error.contains("limit of 1 instances"), "{error}");
        let error = resources.check_new_items(0, 0, 1).unwrap_err().to_string();
        assert!(error.contains("limit of 2 tables"), "{error}");
        // Nothing more of a kind needs no room.
        resources.check_new_items(0, 100, 0).unwrap();
    }
}
