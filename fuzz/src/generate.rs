//! Where every case's input comes from: a deterministic byte stream per
//! (seed, case index), and `wasm-smith` modules restricted to what Backstop
//! supports (Wasm 2.0 and up to four memories; no tail calls, exceptions,
//! memory64, threads, GC or relaxed SIMD), with bounded memories and tables (every one
//! declares a maximum) and termination ensured by wasm-smith's fuel global.

use arbitrary::Unstructured;

/// SplitMix64: a tiny, well-mixed generator; the same (seed, index) gives
/// the same bytes on every machine and in every process.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, index: u64) -> Rng {
        let mut rng = Rng(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        rng.next_u64();
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// The input bytes of case `index` of a campaign with `seed`: between 64
/// bytes and 16 KiB, as wasm-smith makes larger modules from more bytes.
pub fn case_bytes(seed: u64, index: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed, index);
    let len = 64 + rng.below(16 * 1024 - 64) as usize;
    rng.bytes(len)
}

/// The fuel `ensure_termination` gives every module: loops and calls each
/// take one unit, so a run does at most this many of them before it traps
/// with `unreachable`.
pub const FUEL: u32 = 1_000;

/// The most bytes a generated memory may declare (64 pages, 4 MiB).
pub const MAX_MEMORY_BYTES: u64 = 64 * 65536;

/// The most elements a generated table may declare.
pub const MAX_TABLE_ELEMENTS: u64 = 10_000;

/// What a generated module is for, which decides its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Anything Backstop supports, imports included.
    Run,
    /// No imports, every item exported, NaNs canonicalised, so that two
    /// engines must agree exactly on every result and every exported item.
    Compare,
    /// As `Compare`, plus relaxed SIMD, for comparing Backstop with itself
    /// under other configurations: its relaxed operators have one result
    /// whatever the configuration or CPU features (the oracle's may differ).
    CompareSelf,
}

/// A `wasm-smith` configuration drawn from `u`, then restricted to
/// Backstop's feature set and bounds.
fn config(u: &mut Unstructured<'_>, purpose: Purpose) -> arbitrary::Result<wasm_smith::Config> {
    let mut config: wasm_smith::Config = u.arbitrary()?;
    // Multiple memories (Wasm 3.0) are in; wasm-smith 0.217 has no switch
    // for extended constant expressions, which tests/proposals.rs covers.
    config.max_memories = config.max_memories.min(4);
    config.memory64_enabled = false;
    config.threads_enabled = false;
    config.tail_call_enabled = false;
    config.exceptions_enabled = false;
    config.gc_enabled = false;
    config.relaxed_simd_enabled = purpose == Purpose::CompareSelf;
    config.custom_page_sizes_enabled = false;
    config.max_tags = 0;
    config.max_memory32_bytes = config.max_memory32_bytes.min(MAX_MEMORY_BYTES);
    config.memory_max_size_required = true;
    config.table_max_size_required = true;
    config.max_table_elements = config.max_table_elements.min(MAX_TABLE_ELEMENTS);
    config.max_tables = config.max_tables.min(8);
    // At least a few functions with real bodies, every kind of
    // instruction allowed, and everything exported so it is called and
    // compared.
    config.min_funcs = 1;
    config.max_funcs = config.max_funcs.clamp(10, 100);
    config.max_instructions = config.max_instructions.clamp(100, 1000);
    config.allowed_instructions = wasm_smith::InstructionKinds::all();
    config.export_everything = true;
    config.max_data_segments = config.max_data_segments.min(50);
    config.max_element_segments = config.max_element_segments.min(50);
    config.max_elements = config.max_elements.min(200);
    config.max_exports = config.max_exports.min(100);
    config.max_globals = config.max_globals.min(100);
    config.max_types = config.max_types.min(100);
    config.max_type_size = config.max_type_size.min(100);
    // Every Wasm 2.0 feature on, whatever the drawn configuration said.
    config.multi_value_enabled = true;
    config.reference_types_enabled = true;
    config.bulk_memory_enabled = true;
    config.saturating_float_to_int_enabled = true;
    config.sign_extension_ops_enabled = true;
    if purpose != Purpose::Run {
        config.max_imports = 0;
        config.min_imports = 0;
        config.canonicalize_nans = true;
    } else {
        config.max_imports = config.max_imports.min(20);
    }
    Ok(config)
}

/// A valid module from `bytes`, with termination ensured.
pub fn smith_module(bytes: &[u8], purpose: Purpose) -> arbitrary::Result<Vec<u8>> {
    let mut u = Unstructured::new(bytes);
    let config = config(&mut u, purpose)?;
    let mut module = wasm_smith::Module::new(config, &mut u)?;
    module
        .ensure_termination(FUEL)
        .map_err(|_| arbitrary::Error::IncorrectFormat)?;
    Ok(module.to_bytes())
}
