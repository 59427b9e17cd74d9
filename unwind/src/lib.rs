//! backstop-unwind: the glue between JIT-compiled code and the system unwinder and signal handlers.
//!
//! It owns these, and knows nothing about WebAssembly:
//! - [`EhFrameRegistration`] (`eh_frame.rs`): builds one `.eh_frame` section from gimli CIE/FDEs and registers it
//!   with the system unwinder (libgcc or LLVM libunwind) so panics can unwind through JIT frames.
//! - the PC registry (`registry.rs`): a process-wide map from code addresses to regions, functions, trap sites and
//!   source offsets, with lock-free, async-signal-safe lookups for fault handlers.
//!
//! And it tells debuggers and profilers about the code in those regions:
//! - [`GdbJitRegistration`] (`gdb_jit.rs`): GDB's JIT compilation interface, with an in-memory ELF image per
//!   region ([`build_elf_image`]) naming its functions.
//! - [`write_perf_map`] (`perf_map.rs`): appends a region's functions to `/tmp/perf-<pid>.map` for `perf`.

mod eh_frame;
pub mod gdb_jit;
mod perf_map;
mod registry;

pub use eh_frame::EhFrameRegistration;
pub use gdb_jit::{build_elf_image, GdbJitRegistration};
pub use perf_map::{perf_map_lines, perf_map_path, write_perf_map};
pub use registry::{
    function_offset_signal_safe, is_registered_code_signal_safe, lookup, lookup_trap_signal_safe,
    register_code, CodeRegion, CodeRegistrationHandle, FunctionRange, PcInfo, SourceLoc, TrapSite,
};

/// The gimli this crate is built against (0.33, the version cranelift-codegen 0.135 uses), so callers can name
/// the exact CIE/FDE types [`EhFrameRegistration::new`] takes.
pub use gimli;
