//! What is made once and shared: the `Engine` (its `Config` and the
//! engine-wide function-type ids) and the `Module` (compiled code, its
//! registered unwind info, names and line tables; `.cwasm` files). Both are
//! `Send + Sync` and know nothing of stores.

pub(crate) mod engine;
pub(crate) mod module;
