//! Why the kernel refused a mapping. Each instance takes a few kernel
//! memory mappings (its guest stack and guard, its linear memory's
//! accessible part and the rest of the reservation), and Linux caps a
//! process at `vm.max_map_count` of them (65,530 by default), so a process
//! with many live instances runs out of mappings long before it runs out
//! of memory, and `mmap`/`mprotect` fail with `ENOMEM` either way. This
//! tells the two apart, so the error names the real cause and the remedy.
//! It runs only on the failure path.

use crate::Error;
use std::io;

/// How close to `vm.max_map_count` counts as having hit it: a failing call
/// may need a few more mappings than are free.
const LIMIT_MARGIN: usize = 16;

/// The process's mapping count and the kernel's limit, if both can be read.
fn mapping_count_and_limit() -> Option<(usize, usize)> {
    let maps = std::fs::read("/proc/self/maps").ok()?;
    let count = maps.iter().filter(|&&b| b == b'\n').count();
    let limit = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some((count, limit))
}

/// `Error::Resource` for a failed mapping call: "could not {what}: ...",
/// naming `vm.max_map_count` and how to raise it when the process is at
/// that limit.
pub(crate) fn mapping_failure(what: &str, error: io::Error) -> Error {
    if error.raw_os_error() == Some(libc::ENOMEM) {
        if let Some((count, limit)) = mapping_count_and_limit() {
            if count + LIMIT_MARGIN >= limit {
                return Error::Resource(format!(
                    "could not {what}: the process has {count} memory mappings, at the \
                     kernel's limit vm.max_map_count = {limit} (an instance takes 2 to 4, see README; \
                     raise the limit with `sysctl -w vm.max_map_count=1048576`, or drop \
                     instances that are no longer used)"
                ));
            }
        }
    }
    Error::Resource(format!("could not {what}: {error}"))
}
