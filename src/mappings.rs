//! Why the kernel refused a mapping. Each instance takes a few kernel
//! memory mappings (its guest stack, its linear memory's accessible part
//! and the rest of the reservation) and reserves several GiB of address
//! space (a memory's reservation and guard, 6 GiB by default). Linux caps a
//! process at `vm.max_map_count` mappings (65,530 by default) and x86-64 at
//! 128 TiB of user address space, so a process with many live instances
//! runs out of one of them long before it runs out of memory, and
//! `mmap`/`mprotect` fail with `ENOMEM` in every case. This tells them
//! apart, so the error names the real cause and the remedy. It runs only on
//! the failure path.

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

/// Bytes of address space the process's mappings cover.
fn mapped_bytes() -> Option<u64> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let mut total = 0u64;
    for line in maps.lines() {
        let range = line.split_whitespace().next()?;
        let (start, end) = range.split_once('-')?;
        let start = u64::from_str_radix(start, 16).ok()?;
        let end = u64::from_str_radix(end, 16).ok()?;
        total += end.saturating_sub(start);
    }
    Some(total)
}

/// User address space on x86-64 Linux with 4-level page tables: 128 TiB.
const USER_ADDRESS_SPACE: u64 = 1 << 47;

/// `Error::Resource` for a failed mapping call: "could not {what}: ...",
/// naming `vm.max_map_count` and how to raise it when the process is at
/// that limit.
pub(crate) fn mapping_failure(what: &str, error: io::Error) -> Error {
    reservation_failure(what, 0, error)
}

/// Like `mapping_failure`, for a reservation of `bytes`: when the process's
/// address space cannot hold it, says so, and how to need less.
pub(crate) fn reservation_failure(what: &str, bytes: u64, error: io::Error) -> Error {
    if error.raw_os_error() == Some(libc::ENOMEM) && bytes > 0 {
        if let Some(mapped) = mapped_bytes() {
            if mapped + bytes > USER_ADDRESS_SPACE - (USER_ADDRESS_SPACE >> 6) {
                return Error::Resource(format!(
                    "could not {what}: the process's address space is full ({} GiB of the \
                     128 TiB a process has are mapped; each linear memory reserves its \
                     Config::memory_reservation plus memory_guard_size, 6 GiB by default). \
                     Drop instances that are no longer used, or reserve less (a \
                     memory_reservation below 4 GiB adds explicit bounds checks)",
                    mapped >> 30
                ));
            }
        }
    }
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
