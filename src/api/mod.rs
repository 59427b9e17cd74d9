//! The public types guest code is reached through, and what they do with
//! a store: the handles (`Instance`, `Func`, `TypedFunc`, `Memory`,
//! `Table`, `Global`), values (`Val`, `ExternRef`, the typed-value
//! traits), host functions and `Caller`, the `Linker` and instantiation,
//! and the calls that start, resume, suspend and reset a store's run
//! (`calls`). Everything here works through `crate::store`, which owns the
//! data.

pub(crate) mod calls;
pub(crate) mod func;
pub(crate) mod handles;
pub(crate) mod instance;
pub(crate) mod linker;
pub(crate) mod values;
