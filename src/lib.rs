//! Backstop: a WebAssembly runtime for Rust embedders whose promise is that
//! however a guest ends (return, trap, host panic, error from a host
//! function), every Rust destructor in every host frame on the guest's stack
//! runs.
//!
//! Modules compile with Cranelift into executable memory whose unwind info
//! is registered with the system unwinder. A `Store` owns instances and
//! everything they touch, and runs their code on its own guarded stack;
//! host functions run on that stack too, so an unwind that starts anywhere
//! in the guest walks every guest and host frame back to the embedder's
//! call.
//!
//! ```
//! use backstop::{Engine, Linker, Module, Store};
//!
//! let engine = Engine::default();
//! let module = Module::new(&engine, r#"
//!     (module
//!       (import "host" "double" (func $double (param i32) (result i32)))
//!       (func (export "run") (param i32) (result i32)
//!         (i32.add (call $double (local.get 0)) (i32.const 1))))
//! "#)?;
//! let mut linker = Linker::new(&engine);
//! linker.func_wrap("host", "double", |x: i32| x * 2)?;
//! let mut store = Store::new(&engine, ());
//! let instance = linker.instantiate(&mut store, &module)?;
//! assert_eq!(instance.call::<i32, i32>(&mut store, "run", 20)?, 41);
//! # Ok::<(), backstop::Error>(())
//! ```

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!(
    "Backstop supports x86_64 Linux only for now (signal contexts, the stack switch and the \
     unwinder glue are per-architecture); see ARCHITECTURE.md for the aarch64 plan"
);

/// The README's code sample, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The threading rules of the store model, proved by the compiler (these
/// doctests must fail to compile, with the error code given).
///
/// A store is never shared between threads (it is not `Sync`):
/// ```compile_fail,E0277
/// fn shared<T: Sync>(_: &T) {}
/// let store = backstop::Store::new(&backstop::Engine::default(), ());
/// shared(&store);
/// ```
///
/// So two threads cannot call into one store at once:
/// ```compile_fail,E0499
/// use backstop::{Engine, Linker, Module, Store};
/// let engine = Engine::default();
/// let module = Module::new(&engine, r#"(module (func (export "f")))"#).unwrap();
/// let mut store = Store::new(&engine, ());
/// let instance = Linker::new(&engine).instantiate(&mut store, &module).unwrap();
/// std::thread::scope(|s| {
///     s.spawn(|| instance.call::<(), ()>(&mut store, "f", ()));
///     s.spawn(|| instance.call::<(), ()>(&mut store, "f", ()));
/// });
/// ```
///
/// A store whose data is not `Send` stays on its thread:
/// ```compile_fail,E0277
/// let store = backstop::Store::new(&backstop::Engine::default(), std::rc::Rc::new(1));
/// std::thread::spawn(move || drop(store));
/// ```
///
/// A host function's `Caller` cannot leave its thread:
/// ```compile_fail,E0277
/// use backstop::{Caller, Engine, Linker};
/// fn send<T: Send>(_: T) {}
/// let mut linker: Linker<()> = Linker::new(&Engine::default());
/// linker.func_wrap("host", "f", |caller: Caller<'_, ()>| send(caller)).unwrap();
/// ```
///
/// Bytes borrowed from a memory cannot outlive a call that could change them:
/// ```compile_fail,E0502
/// use backstop::{Engine, Linker, Module, Store};
/// let engine = Engine::default();
/// let module = Module::new(&engine, r#"(module (memory (export "m") 1) (func (export "f")))"#).unwrap();
/// let mut store = Store::new(&engine, ());
/// let instance = Linker::new(&engine).instantiate(&mut store, &module).unwrap();
/// let bytes = instance.get_memory(&store, "m").unwrap().data(&store);
/// instance.call::<(), ()>(&mut store, "f", ()).unwrap();
/// assert_eq!(bytes[0], 0);
/// ```
///
/// What is allowed: a store moves to another thread whole, handles are
/// plain data.
/// ```
/// use backstop::{Engine, Linker, Module, Store};
/// let engine = Engine::default();
/// let module = Module::new(&engine, r#"(module (func (export "f") (result i32) i32.const 1))"#).unwrap();
/// let mut store = Store::new(&engine, ());
/// let instance = Linker::new(&engine).instantiate(&mut store, &module).unwrap();
/// let f = instance.get_typed_func::<(), i32>(&store, "f").unwrap();
/// let result = std::thread::spawn(move || f.call(&mut store, ())).join().unwrap();
/// assert_eq!(result.unwrap(), 1);
/// ```
#[cfg(doctest)]
pub struct ThreadingDoctests;

mod api;
mod compile;
mod debug;
mod ending;
mod error;
mod mappings;
mod store;

pub use api::calls::Outcome;
pub use api::func::{Caller, IntoFunc};
pub use api::handles::{Global, Memory, Table};
pub use api::instance::{Instance, TypedFunc};
pub use api::linker::{Extern, Linker};
pub use api::values::{ExternRef, Func, HostReturn, Val, WasmTy, WasmValues, V128};
pub use backstop_jit::{ExternType, FuncType, GlobalType, MemoryType, TableType, ValType};
pub use compile::engine::{Config, Engine, OptimizationLevel};
pub use compile::module::{ExportType, ImportType, Module};
pub use debug::backtrace::{demangle, FrameInfo, FrameKind, WasmBacktrace};
pub use ending::kill::{KillOutcome, KillSwitch};
pub use ending::kill_wait::{KillWaiter, WaitFor, Waited};
pub use error::{AnyValue, TerminationDetails};
pub use error::{Error, Trap, TrapCode};
pub use store::limits::{StoreLimits, StoreUsage};
pub use store::run_state::StoreState;
pub use store::{AsContext, AsContextMut, Store, StoreContext, StoreContextMut};

/// How many instances in this process have a kill request that compiled
/// code must look for (every interrupt check takes a slower path while this
/// is non-zero). For tests of the kill switch; not a stable API.
#[doc(hidden)]
pub fn interrupts_pending() -> u32 {
    backstop_jit::vmoffsets::INTERRUPTS_PENDING.load(std::sync::atomic::Ordering::SeqCst)
}

/// Whether kill switches can use a process-wide fence (`membarrier`), so
/// that a kill of a run in a hostcall or not yet started does not arm
/// `interrupts_pending`. For tests of the kill switch; not a stable API.
#[doc(hidden)]
pub fn kill_switch_fences() -> bool {
    ending::kill::has_process_wide_fence()
}

/// Names the guest code at a native PC, for embedders who walk the stack
/// themselves (with `std::backtrace` or the `backtrace` crate): the module,
/// function and Wasm offset, or `None` if `pc` is not in a compiled Wasm
/// function. Pass the PC of the instruction (for a return address, the
/// address minus one).
pub fn symbolize(pc: usize) -> Option<FrameInfo> {
    FrameInfo::for_wasm_pc(pc)
}
