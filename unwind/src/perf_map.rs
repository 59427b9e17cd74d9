//! Owns the perf map: `/tmp/perf-<pid>.map`, the text file through which `perf report` (and other profilers that
//! follow the same convention) names samples in JIT code. Each line is `START SIZE NAME`, with START and SIZE in
//! hexadecimal without a `0x` prefix; NAME runs to the end of the line. perf reads the file when it reports, so
//! lines must be written before the code runs and are never removed while the process lives.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::registry::CodeRegion;

/// Serializes this process's writers, so the lines of two regions never interleave.
static WRITER: Mutex<()> = Mutex::new(());

/// The perf map of this process: `/tmp/perf-<pid>.map`.
pub fn perf_map_path() -> PathBuf {
    PathBuf::from(format!("/tmp/perf-{}.map", std::process::id()))
}

/// Appends one line per function of `region` to [`perf_map_path`], creating the file if needed. Names come from
/// [`CodeRegion::symbol_name`] (so `module::function`), with control characters (a newline would end the line)
/// replaced by spaces.
///
/// The lines are built first and written with one `write` to a file opened with `O_APPEND`, under a process-wide
/// lock, so concurrent callers in this process never interleave, and other processes' appends at worst come
/// between whole regions.
pub fn write_perf_map(region: &CodeRegion) -> std::io::Result<()> {
    let lines = perf_map_lines(region);
    if lines.is_empty() {
        return Ok(());
    }
    // The lock guards no data, so a poisoned lock is as good as any.
    let _writer = WRITER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(perf_map_path())?;
    file.write_all(lines.as_bytes())
}

/// The perf map lines for `region`, each ending in a newline.
pub fn perf_map_lines(region: &CodeRegion) -> String {
    let mut lines = String::new();
    for function in &region.functions {
        let start = region.start as u64 + u64::from(function.start);
        let name: String = region
            .symbol_name(function)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        // Writing to a String cannot fail.
        let _ = writeln!(lines, "{start:x} {:x} {name}", function.len);
    }
    lines
}
