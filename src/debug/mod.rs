//! Names for guest code, for people reading a failure: Wasm backtraces
//! (collapsed recursions, demangled names) and the DWARF line tables that
//! map a native PC to a source line. Knows nothing of stores or runs: it
//! reads the process-wide PC registry and what modules publish.

pub(crate) mod backtrace;
pub(crate) mod lines;
