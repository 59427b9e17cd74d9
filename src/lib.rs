//! Backstop: a WebAssembly runtime for Rust embedders whose promise is that
//! however a guest ends (return, trap, host panic, error from a host
//! function), every Rust destructor in every host frame on the guest's stack
//! runs.
//!
//! Modules compile with Cranelift into executable memory whose unwind info
//! is registered with the system unwinder. Each instance runs on its own
//! guarded stack; host functions run on that stack too, so an unwind that
//! starts anywhere in the guest walks every guest and host frame back to the
//! embedder's call.
//!
//! ```
//! use backstop::{Engine, Linker, Module};
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
//! let mut instance = linker.instantiate(&module, ())?;
//! assert_eq!(instance.call::<i32, i32>("run", 20)?, 41);
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

mod backtrace;
mod debug_lines;
mod engine;
mod error;
mod exit;
mod externals;
mod func;
mod group;
mod instance;
mod kill;
mod kill_wait;
mod linker;
mod mappings;
mod module;
mod signals;
mod values;
mod vm;
pub mod wasi;

pub use backstop_jit::{ExternType, FuncType, GlobalType, MemoryType, TableType, ValType};
pub use backtrace::{demangle, FrameInfo, FrameKind, WasmBacktrace};
pub use engine::{Config, Engine, OptimizationLevel};
pub use error::{Error, Trap, TrapCode};
pub use exit::{AnyValue, TerminationDetails};
pub use externals::{Global, Memory, Table};
pub use func::{Caller, IntoFunc};
pub use instance::{Instance, InstanceState, Outcome, TypedFunc};
pub use kill::{KillOutcome, KillSwitch};
pub use kill_wait::{WaitFor, Waited};
pub use linker::{Extern, Linker};
pub use module::{ExportType, ImportType, Module};
pub use values::{ExternRef, Func, HostReturn, Val, WasmTy, WasmValues, V128};

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
    kill::has_process_wide_fence()
}

/// Names the guest code at a native PC, for embedders who walk the stack
/// themselves (with `std::backtrace` or the `backtrace` crate): the module,
/// function and Wasm offset, or `None` if `pc` is not in a compiled Wasm
/// function. Pass the PC of the instruction (for a return address, the
/// address minus one).
pub fn symbolize(pc: usize) -> Option<FrameInfo> {
    FrameInfo::for_wasm_pc(pc)
}
