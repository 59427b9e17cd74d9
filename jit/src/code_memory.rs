//! Executable memory for one module's code block, and the libcalls its code
//! may call. `CodeMemory::new` maps fresh pages, copies the block in, lets
//! the caller patch addresses into it, and then makes it read+execute: the
//! pages are never writable and executable at once. Dropping it unmaps them.
//!
//! Where the pages go: just below the host program's own code, when that
//! address space is free. Guest code and host code call each other on every
//! hostcall (guest -> host adapter -> Rust -> ret into guest), and this CPU
//! family predicts indirect calls and returns worse when the target lies in
//! another 4 GiB region than the branch: with code in the kernel's default
//! place (near the top of the address space, terabytes from a PIE program),
//! 1000 guest->host calls took 4.8 us, against 4.3 us with the code near the
//! program (BENCHMARKS.md, "Where compiled code lives"). Placement is a hint
//! only: when no free range is found near the program, the kernel chooses.
//!
//! A process-wide cursor hands out address ranges downwards from the
//! program's base, so concurrent loads never ask for the same range. It
//! wraps around after `NEAR_WINDOW`, so ranges freed by dropped modules are
//! found again; ranges still in use are skipped (`MAP_FIXED_NOREPLACE`
//! refuses them).

use crate::CompileError;
use cranelift_codegen::ir::LibCall;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::__m128i;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How far below the program's base the cursor may go before it wraps.
const NEAR_WINDOW: usize = 1 << 30;

/// How many ranges near the program are tried before the kernel chooses.
const NEAR_ATTEMPTS: usize = 32;

/// The next range ends here (0: not yet initialised). Moves downwards.
static NEAR_CURSOR: AtomicUsize = AtomicUsize::new(0);

/// A read+execute mapping holding one module's code.
pub(crate) struct CodeMemory {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone and, once `new` returns,
// never written again: shared access only reads addresses, and executing
// the code is safe from any thread. Drop unmaps it through `&mut self`.
unsafe impl Send for CodeMemory {}
// SAFETY: as above; `&self` gives no way to write the mapping.
unsafe impl Sync for CodeMemory {}

impl CodeMemory {
    /// Maps `code` read+execute. `patch` sees the block at its final address
    /// while it is still writable, to fill in relocations.
    pub(crate) fn new(
        code: &[u8],
        patch: impl FnOnce(&mut [u8], usize) -> Result<(), CompileError>,
    ) -> Result<Self, CompileError> {
        let len = page_ceil(code.len().max(1));
        let base = map_near_program(len)?;
        let memory = CodeMemory { base, len };
        // SAFETY: `base` is a fresh read+write mapping of `len >= code.len()`
        // bytes that nothing else references yet.
        let bytes = unsafe { std::slice::from_raw_parts_mut(base, code.len()) };
        bytes.copy_from_slice(code);
        patch(bytes, base as usize)?;
        // SAFETY: the range is exactly our own mapping.
        if unsafe { libc::mprotect(base.cast(), len, libc::PROT_READ | libc::PROT_EXEC) } != 0 {
            return Err(os_error("mprotect of compiled code"));
        }
        Ok(memory)
    }

    /// The address of the first byte of the code block.
    pub(crate) fn base(&self) -> usize {
        self.base as usize
    }
}

impl Drop for CodeMemory {
    fn drop(&mut self) {
        // SAFETY: the owner (`CompiledModule`) is only dropped once no code
        // of it can run and its unwind info has been deregistered (the
        // runtime drops its registrations before the module); the range is
        // exactly our own mapping.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

fn page_ceil(len: usize) -> usize {
    let page = page_size();
    len.div_ceil(page) * page
}

fn os_error(what: &str) -> CompileError {
    CompileError::Codegen(format!("{what}: {}", std::io::Error::last_os_error()))
}

/// The base address of the program (executable or shared object) holding
/// this crate's code, or 0 if the dynamic loader cannot say.
fn program_base() -> usize {
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    let here = program_base as fn() -> usize as *const libc::c_void;
    // SAFETY: `here` is an address in this object; `info` is a valid out
    // parameter.
    if unsafe { libc::dladdr(here, &mut info) } == 0 {
        return 0;
    }
    info.dli_fbase as usize
}

/// A fresh read+write anonymous mapping of `len` bytes (a page multiple),
/// below the program's code if a free range is found there.
fn map_near_program(len: usize) -> Result<*mut u8, CompileError> {
    let top = program_base() & !(page_size() - 1);
    if top > NEAR_WINDOW {
        let bottom = top - NEAR_WINDOW;
        for _ in 0..NEAR_ATTEMPTS {
            let Some(hint) = claim_range(&NEAR_CURSOR, top, bottom, len) else {
                break;
            };
            if let Some(base) = map(hint, len, libc::MAP_FIXED_NOREPLACE) {
                if base as usize == hint {
                    return Ok(base);
                }
                // A kernel older than 4.17 takes the flag as a hint and may
                // place the mapping elsewhere: give it back and go on.
                // SAFETY: `base` is the mapping just made, of `len` bytes.
                unsafe { libc::munmap(base.cast(), len) };
            }
        }
    }
    map(0, len, 0).ok_or_else(|| os_error("mmap of compiled code"))
}

/// Takes the next `len` bytes below `cursor`, wrapping to `top` when the
/// range would fall below `bottom`. None if `len` does not fit at all.
fn claim_range(cursor: &AtomicUsize, top: usize, bottom: usize, len: usize) -> Option<usize> {
    if len > top - bottom {
        return None;
    }
    let mut current = cursor.load(Ordering::Relaxed);
    loop {
        let end = if current == 0 || current > top || current - bottom < len {
            top
        } else {
            current
        };
        let start = end - len;
        match cursor.compare_exchange_weak(current, start, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Some(start),
            Err(now) => current = now,
        }
    }
}

/// `mmap` of `len` anonymous read+write bytes at `addr` with `extra` flags.
fn map(addr: usize, len: usize, extra: libc::c_int) -> Option<*mut u8> {
    // SAFETY: an anonymous private mapping; with MAP_FIXED_NOREPLACE or a
    // null address it never replaces an existing mapping.
    let base = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra,
            -1,
            0,
        )
    };
    (base != libc::MAP_FAILED).then_some(base.cast())
}

/// The address of a Cranelift libcall, for the ones our code can emit:
/// float rounding where the CPU lacks SSE4.1, fused multiply-add where it
/// lacks FMA, and `pshufb` where it lacks SSSE3.
pub(crate) fn libcall_address(libcall: LibCall) -> Result<usize, CompileError> {
    let address = match libcall {
        LibCall::CeilF32 => ceil_f32 as extern "C" fn(f32) -> f32 as usize,
        LibCall::CeilF64 => ceil_f64 as extern "C" fn(f64) -> f64 as usize,
        LibCall::FloorF32 => floor_f32 as extern "C" fn(f32) -> f32 as usize,
        LibCall::FloorF64 => floor_f64 as extern "C" fn(f64) -> f64 as usize,
        LibCall::TruncF32 => trunc_f32 as extern "C" fn(f32) -> f32 as usize,
        LibCall::TruncF64 => trunc_f64 as extern "C" fn(f64) -> f64 as usize,
        LibCall::NearestF32 => nearest_f32 as extern "C" fn(f32) -> f32 as usize,
        LibCall::NearestF64 => nearest_f64 as extern "C" fn(f64) -> f64 as usize,
        LibCall::FmaF32 => fma_f32 as extern "C" fn(f32, f32, f32) -> f32 as usize,
        LibCall::FmaF64 => fma_f64 as extern "C" fn(f64, f64, f64) -> f64 as usize,
        #[cfg(target_arch = "x86_64")]
        LibCall::X86Pshufb => x86_pshufb as unsafe extern "C" fn(_, _) -> _ as usize,
        other => {
            return Err(CompileError::Codegen(format!(
                "compiled code calls the unsupported libcall {other:?}"
            )))
        }
    };
    Ok(address)
}

// Wasm wants an arithmetic (quiet) NaN out of every float operation, and a
// software rounding function may hand a signalling NaN back unchanged.
fn quiet_f32(x: f32) -> f32 {
    if x.is_nan() {
        f32::from_bits(x.to_bits() | 0x0040_0000)
    } else {
        x
    }
}
fn quiet_f64(x: f64) -> f64 {
    if x.is_nan() {
        f64::from_bits(x.to_bits() | 0x0008_0000_0000_0000)
    } else {
        x
    }
}

extern "C" fn ceil_f32(x: f32) -> f32 {
    quiet_f32(x.ceil())
}
extern "C" fn ceil_f64(x: f64) -> f64 {
    quiet_f64(x.ceil())
}
extern "C" fn floor_f32(x: f32) -> f32 {
    quiet_f32(x.floor())
}
extern "C" fn floor_f64(x: f64) -> f64 {
    quiet_f64(x.floor())
}
extern "C" fn trunc_f32(x: f32) -> f32 {
    quiet_f32(x.trunc())
}
extern "C" fn trunc_f64(x: f64) -> f64 {
    quiet_f64(x.trunc())
}
extern "C" fn nearest_f32(x: f32) -> f32 {
    quiet_f32(x.round_ties_even())
}
extern "C" fn nearest_f64(x: f64) -> f64 {
    quiet_f64(x.round_ties_even())
}
extern "C" fn fma_f32(a: f32, b: f32, c: f32) -> f32 {
    quiet_f32(a.mul_add(b, c))
}
extern "C" fn fma_f64(a: f64, b: f64, c: f64) -> f64 {
    quiet_f64(a.mul_add(b, c))
}

/// `pshufb` of 16 bytes: lane i is 0 if the selector's top bit is set, else
/// `a[selector & 15]`.
///
/// Cranelift calls it with both vectors in xmm0/xmm1 and the result in xmm0,
/// the System V convention for `__m128i`, which x86-64's baseline SSE2 lets
/// Rust follow (the lint cannot know that the type's layout is fixed).
#[cfg(target_arch = "x86_64")]
#[allow(improper_ctypes_definitions)]
unsafe extern "C" fn x86_pshufb(a: __m128i, selectors: __m128i) -> __m128i {
    // SAFETY: `__m128i` is 16 plain bytes; transmuting to and from byte
    // arrays is a bit copy.
    let (a, selectors) = unsafe {
        (
            std::mem::transmute::<__m128i, [u8; 16]>(a),
            std::mem::transmute::<__m128i, [u8; 16]>(selectors),
        )
    };
    let shuffled = selectors.map(|s| {
        if s & 0x80 != 0 {
            0
        } else {
            a[usize::from(s & 15)]
        }
    });
    // SAFETY: as above.
    unsafe { std::mem::transmute::<[u8; 16], __m128i>(shuffled) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_lands_near_the_program_and_is_executable() {
        // `mov eax, 42; ret`
        let code = [0xb8, 42, 0, 0, 0, 0xc3];
        let memory = CodeMemory::new(&code, |_, _| Ok(())).unwrap();
        let base = program_base();
        assert!(base != 0);
        assert!(
            memory.base() < base && base - memory.base() <= NEAR_WINDOW,
            "code at {:#x}, program at {base:#x}",
            memory.base()
        );
        // SAFETY: the block is the machine code of `extern "C" fn() -> i32`.
        let f: extern "C" fn() -> i32 = unsafe { std::mem::transmute(memory.base()) };
        assert_eq!(f(), 42);
    }

    #[test]
    fn every_module_gets_a_range_of_its_own() {
        let many: Vec<CodeMemory> = (0..8)
            .map(|_| CodeMemory::new(&[0xc3], |_, _| Ok(())).unwrap())
            .collect();
        let mut bases: Vec<usize> = many.iter().map(CodeMemory::base).collect();
        bases.sort_unstable();
        bases.dedup();
        assert_eq!(bases.len(), 8);
    }

    #[test]
    fn the_cursor_moves_down_and_wraps_at_the_bottom() {
        let cursor = AtomicUsize::new(0);
        let (top, bottom) = (0x10_0000, 0x0f_0000);
        assert_eq!(claim_range(&cursor, top, bottom, 0x8000), Some(0x0f_8000));
        assert_eq!(claim_range(&cursor, top, bottom, 0x8000), Some(0x0f_0000));
        assert_eq!(claim_range(&cursor, top, bottom, 0x1000), Some(0x0f_f000));
        assert_eq!(claim_range(&cursor, top, bottom, 0x2_0000), None);
    }

    #[test]
    fn libcalls_compute_wasm_semantics() {
        assert_eq!(nearest_f32(2.5), 2.0);
        assert_eq!(nearest_f64(-3.5), -4.0);
        let signalling = f32::from_bits(0x7fa0_0000);
        assert_eq!(ceil_f32(signalling).to_bits(), 0x7fe0_0000);
        let signalling = f64::from_bits(0xfff4_0000_0000_0000);
        assert_eq!(floor_f64(signalling).to_bits(), 0xfffc_0000_0000_0000);
        assert!(libcall_address(LibCall::Memcpy).is_err());
        #[cfg(target_arch = "x86_64")]
        {
            let a: [u8; 16] = std::array::from_fn(|i| 100 + i as u8);
            let selectors: [u8; 16] = [15, 0, 0x80, 3, 0x8f, 16, 17, 1, 2, 3, 4, 5, 6, 7, 8, 9];
            // SAFETY: plain 16-byte values; the function only shuffles bytes.
            let out: [u8; 16] = unsafe {
                std::mem::transmute(x86_pshufb(
                    std::mem::transmute::<[u8; 16], __m128i>(a),
                    std::mem::transmute::<[u8; 16], __m128i>(selectors),
                ))
            };
            assert_eq!(&out[..8], &[115, 100, 0, 103, 0, 100, 101, 101]);
        }
    }
}
