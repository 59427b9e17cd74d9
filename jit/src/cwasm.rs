//! The `.cwasm` file: a module compiled once and loaded many times without
//! compiling. It holds the Wasm binary (the module's description, names and
//! debug sections are parsed from it again on load, which is cheap), the
//! position-independent code block of an `Artifact`, and the artifact's
//! relocations and metadata, after a header that says which compiler and
//! which settings made it.
//!
//! ```text
//! offset      size  field
//! 0           16    magic "\0BACKSTOP-CWASM\0" (not a Wasm binary: "\0asm")
//! 16          4     format version, u32 LE (FORMAT_VERSION)
//! 20          4     length F of the fingerprint, u32 LE
//! 24          F     fingerprint: compiler build, target, every Cranelift
//!                   flag and every compile option, one per line
//! 24+F        8     length W of the Wasm binary, u64 LE
//!             W     the Wasm binary
//!             8     length C of the code block, u64 LE
//!             C     the code block (symbols and libcalls not yet filled in)
//!             8     length M of the metadata, u64 LE
//!             M     the rest of the artifact, postcard-encoded
//! end-4       4     CRC-32 of every byte before it, u32 LE
//! ```
//!
//! Loading refuses a file of another format, another compiler build or
//! other settings (`CompileError::Incompatible`) and a damaged one
//! (`CompileError::Invalid`), and checks every offset it will write
//! through (`Artifact::check`). Beyond that the code is trusted: a `.cwasm`
//! is native code, and whoever can write one can run anything.

use crate::artifact::{self, Artifact};
use crate::{CompileError, CompileOptions, CompiledModule, FuncType, OwnedTargetIsa};

const MAGIC: &[u8; 16] = b"\0BACKSTOP-CWASM\0";
/// Bumped whenever the layout above or the encoding of `Artifact` changes.
const FORMAT_VERSION: u32 = 1;

/// Whether `bytes` look like a `.cwasm` file (they start with its magic).
pub fn is_precompiled(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Everything that must be the same for code compiled by one process to be
/// right in another: the compiler build, the target, every Cranelift flag
/// (the CPU features it may use among them, but not the verifier, which
/// changes no code) and every option that changes the code.
fn fingerprint(isa: &OwnedTargetIsa, options: &CompileOptions) -> String {
    let mut lines = vec![
        format!(
            "compiler backstop-jit {} (source id {})",
            env!("CARGO_PKG_VERSION"),
            env!("BACKSTOP_JIT_SOURCE_ID")
        ),
        format!("target {}", isa.triple()),
    ];
    // The verifier checks the code and changes none of it.
    lines.extend(
        isa.flags()
            .iter()
            .filter(|v| v.name != "enable_verifier")
            .map(|v| format!("cranelift {v}")),
    );
    lines.extend(isa.isa_flags().iter().map(|v| format!("cranelift {v}")));
    lines.push(format!(
        "memory reservation {} guard {}",
        options.memory_layout.reservation, options.memory_layout.guard
    ));
    lines.push(format!("interrupt checks {}", options.interrupt_checks));
    lines.push(format!(
        "loop closing threshold {}",
        options.loop_closing_min_live
    ));
    lines.push(format!("passes divconst {}", options.divconst));
    lines.push(format!("proposals {:?}", options.proposals));
    lines.join("\n")
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Compiles `wasm` (binary format) and returns the `.cwasm` file's bytes.
pub fn precompile(
    isa: &OwnedTargetIsa,
    wasm: &[u8],
    options: CompileOptions,
) -> Result<Vec<u8>, CompileError> {
    let (_, artifact) = crate::compile_artifact(isa, wasm, options)
        .map_err(|e| crate::name_unsupported(wasm, options.proposals, e))?;
    let metadata = postcard::to_allocvec(&artifact)
        .map_err(|e| CompileError::Codegen(format!("encoding the compiled module: {e}")))?;
    let fingerprint = fingerprint(isa, &options);
    let mut out = Vec::with_capacity(
        64 + fingerprint.len() + wasm.len() + artifact.code.len() + metadata.len(),
    );
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, FORMAT_VERSION);
    put_u32(&mut out, fingerprint.len() as u32);
    out.extend_from_slice(fingerprint.as_bytes());
    put_bytes(&mut out, wasm);
    put_bytes(&mut out, &artifact.code);
    put_bytes(&mut out, &metadata);
    let checksum = crc32fast::hash(&out);
    put_u32(&mut out, checksum);
    Ok(out)
}

/// Reads the fields of a `.cwasm` file in order; running past the end is
/// an error, never a panic.
struct Reader<'a> {
    bytes: &'a [u8],
}

fn truncated() -> CompileError {
    CompileError::Invalid("corrupt compiled module: truncated".into())
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: u64) -> Result<&'a [u8], CompileError> {
        let len = usize::try_from(len).map_err(|_| truncated())?;
        if len > self.bytes.len() {
            return Err(truncated());
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, CompileError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn sized(&mut self) -> Result<&'a [u8], CompileError> {
        let len = u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"));
        self.take(len)
    }
}

/// The first line where two fingerprints differ, for the error message.
fn first_difference<'a>(theirs: &'a str, ours: &'a str) -> (&'a str, &'a str) {
    let mut theirs_lines = theirs.lines();
    let mut ours_lines = ours.lines();
    loop {
        match (theirs_lines.next(), ours_lines.next()) {
            (Some(a), Some(b)) if a == b => continue,
            (a, b) => return (a.unwrap_or("(nothing)"), b.unwrap_or("(nothing)")),
        }
    }
}

/// Loads a `.cwasm` file made by `precompile` with the same compiler build,
/// ISA and options, interning its types with `intern_type`.
pub fn load_precompiled(
    isa: &OwnedTargetIsa,
    bytes: &[u8],
    options: CompileOptions,
    intern_type: &mut dyn FnMut(&FuncType) -> u32,
) -> Result<CompiledModule, CompileError> {
    let started = std::time::Instant::now();
    if !is_precompiled(bytes) {
        return Err(CompileError::Invalid(
            "not a Backstop compiled module (.cwasm): the magic number is missing".into(),
        ));
    }
    let mut reader = Reader {
        bytes: &bytes[MAGIC.len()..],
    };
    let format = reader.u32()?;
    if format != FORMAT_VERSION {
        return Err(CompileError::Incompatible(format!(
            "the compiled module has file format {format}, this Backstop reads format \
             {FORMAT_VERSION}: compile the module again"
        )));
    }
    let Some(body_len) = bytes.len().checked_sub(4) else {
        return Err(truncated());
    };
    let (body, stored) = bytes.split_at(body_len);
    let stored = u32::from_le_bytes(stored.try_into().expect("4 bytes"));
    if body.len() < MAGIC.len() + 4 || crc32fast::hash(body) != stored {
        return Err(CompileError::Invalid(
            "corrupt compiled module: the checksum does not match (the file is damaged or \
             truncated)"
                .into(),
        ));
    }
    reader.bytes = &body[MAGIC.len() + 4..];
    let fingerprint_len = reader.u32()?;
    let theirs = std::str::from_utf8(reader.take(u64::from(fingerprint_len))?)
        .map_err(|_| CompileError::Invalid("corrupt compiled module: fingerprint".into()))?;
    let ours = fingerprint(isa, &options);
    if theirs != ours {
        let (theirs, ours) = first_difference(theirs, &ours);
        return Err(CompileError::Incompatible(format!(
            "the compiled module was made by another build of Backstop or with other settings \
             (the file has `{theirs}`, this engine has `{ours}`): compile the module again \
             with this engine"
        )));
    }
    let wasm = reader.sized()?;
    let code = reader.sized()?;
    let metadata = reader.sized()?;
    if !reader.bytes.is_empty() {
        return Err(CompileError::Invalid(
            "corrupt compiled module: bytes after the metadata".into(),
        ));
    }
    let mut artifact: Artifact = postcard::from_bytes(metadata)
        .map_err(|e| CompileError::Invalid(format!("corrupt compiled module: metadata: {e}")))?;
    artifact.code = code.to_vec();
    let (info, _bodies) = crate::module_info::parse(wasm, options.proposals)
        .map_err(|e| CompileError::Invalid(format!("corrupt compiled module: its Wasm: {e}")))?;
    artifact::load(isa, info, artifact, intern_type, started)
}
