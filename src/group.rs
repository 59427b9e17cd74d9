//! Link groups: who keeps an instance's code and vmctx alive.
//!
//! Guest code stores raw function references (pointers into some instance's
//! vmctx) in tables and globals, with no hook the runtime could use to count
//! them. So Backstop never frees an instance that such a pointer may still
//! name: instances that are linked together, and the items they share,
//! form a **group**, and a group's instances are freed together, once no
//! handle to anything in the group is left.
//!
//! - Every handle (`Instance`, `Func`, `Table`, `Memory`, `Global`) holds its
//!   group. An unlinked instance is a group of one and is freed with its
//!   handles, as expected.
//! - Instantiation merges the groups of every imported item into the new
//!   instance's group; passing a function reference from the host into a
//!   call, a table or a global merges its group into the receiver's.
//! - So a function reference stored anywhere points into an instance of the
//!   same group as the storage, which keeps it alive.
//!
//! Groups are a union-find forest of `GroupCell`s: a merged cell holds its
//! parent, the root holds the members. Nothing a group holds points back to
//! a cell strongly, so no reference cycle can form.

use crate::instance::InstanceCore;
use parking_lot::Mutex;
use std::sync::{Arc, Weak};

enum CellState {
    Root { members: Vec<Arc<InstanceCore>> },
    Merged { parent: Arc<GroupCell> },
}

pub(crate) struct GroupCell {
    state: Mutex<CellState>,
}

/// A handle on a link group (see the module docs).
#[derive(Clone)]
pub(crate) struct Group {
    cell: Arc<GroupCell>,
}

impl Group {
    pub(crate) fn new() -> Group {
        Group {
            cell: Arc::new(GroupCell {
                state: Mutex::new(CellState::Root {
                    members: Vec::new(),
                }),
            }),
        }
    }

    /// The root cell of this group.
    fn root(&self) -> Arc<GroupCell> {
        let mut cell = self.cell.clone();
        loop {
            let parent = match &*cell.state.lock() {
                CellState::Root { .. } => return cell.clone(),
                CellState::Merged { parent } => parent.clone(),
            };
            cell = parent;
        }
    }

    /// The group of a weak root reference kept by a member.
    pub(crate) fn from_weak(weak: &Weak<GroupCell>) -> Option<Group> {
        weak.upgrade().map(|cell| Group { cell })
    }

    /// Adds a freshly created instance to the group.
    pub(crate) fn add_member(&self, core: Arc<InstanceCore>) {
        loop {
            let root = self.root();
            let mut state = root.state.lock();
            if let CellState::Root { members } = &mut *state {
                core.set_group(Arc::downgrade(&root));
                members.push(core);
                return;
            }
            // Merged meanwhile: find the new root.
        }
    }

    /// Makes `self` and `other` one group.
    pub(crate) fn merge(&self, other: &Group) {
        loop {
            let (a, b) = (self.root(), other.root());
            if Arc::ptr_eq(&a, &b) {
                return;
            }
            // Lock both roots in address order, so two merges cannot
            // deadlock; then check they are still roots.
            let (first, second) = if Arc::as_ptr(&a) < Arc::as_ptr(&b) {
                (&a, &b)
            } else {
                (&b, &a)
            };
            let mut first_state = first.state.lock();
            let mut second_state = second.state.lock();
            let (CellState::Root { members: into }, CellState::Root { members: from }) =
                (&mut *first_state, &mut *second_state)
            else {
                continue;
            };
            let moved = std::mem::take(from);
            for core in &moved {
                core.set_group(Arc::downgrade(first));
            }
            into.extend(moved);
            *second_state = CellState::Merged {
                parent: first.clone(),
            };
            return;
        }
    }

    #[cfg(test)]
    fn member_count(&self) -> usize {
        match &*self.root().state.lock() {
            CellState::Root { members } => members.len(),
            CellState::Merged { .. } => unreachable!("root() returns a root"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_is_transitive_and_idempotent() {
        let (a, b, c) = (Group::new(), Group::new(), Group::new());
        a.merge(&b);
        b.merge(&c);
        c.merge(&a);
        assert!(Arc::ptr_eq(&a.root(), &c.root()));
        assert!(Arc::ptr_eq(&b.root(), &c.root()));
        assert_eq!(a.member_count(), 0);
    }

    #[test]
    fn concurrent_merges_do_not_deadlock() {
        let groups: Vec<Group> = (0..64).map(|_| Group::new()).collect();
        std::thread::scope(|s| {
            for t in 0..4 {
                let groups = &groups;
                s.spawn(move || {
                    for i in 0..groups.len() {
                        let j = (i * 7 + t * 13) % groups.len();
                        groups[i].merge(&groups[j]);
                    }
                });
            }
        });
        let root = groups[0].root();
        for g in &groups {
            // Not necessarily one group, but every root is a real root.
            let r = g.root();
            assert!(matches!(&*r.state.lock(), CellState::Root { .. }));
        }
        drop(root);
    }
}
