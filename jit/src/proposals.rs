//! Naming the proposal a refused module needs. Backstop validates with the
//! feature set the engine enables (`Proposals`), so a module that uses
//! another proposal fails
//! validation with the validator's wording ("tail calls support is not
//! enabled", "constant expression required: non-constant operator"),
//! which cannot be told from a broken module. When validation fails, this
//! validates again with every proposal enabled: if the module is valid
//! then, it is not broken but needs proposals Backstop lacks, and the
//! smallest set of them that makes it valid is named, with the `Config`
//! switch of any the engine has turned off.
//!
//! This runs only on the error path; a valid module never gets here.

use crate::module_info::Proposals;
use wasmparser::{Parser, Payload, TypeRef, Validator, WasmFeatures};

/// The standard proposals beyond Wasm 2.0 (Wasm 3.0's, threads, the legacy
/// exception instructions toolchains still emit, components), with the
/// names users know them by. Early-stage proposals are left out, so a
/// module malformed under every standard is never blamed on one. A
/// proposal listed before another that it builds on (GC before typed
/// function references) is
/// dropped first when the smallest set is searched for, so what a module
/// uses of the later one alone is not blamed on the earlier one.
const PROPOSALS: &[Proposal] = &[
    Proposal::lacking(WasmFeatures::COMPONENT_MODEL, "the component model"),
    Proposal::lacking(WasmFeatures::GC, "GC"),
    Proposal::lacking(
        WasmFeatures::GC_TYPES,
        "GC (reference types of the GC proposal)",
    ),
    Proposal::lacking(
        WasmFeatures::FUNCTION_REFERENCES,
        "typed function references",
    ),
    Proposal::lacking(WasmFeatures::TAIL_CALL, "tail calls"),
    Proposal::lacking(WasmFeatures::EXCEPTIONS, "exception handling"),
    Proposal::lacking(
        WasmFeatures::LEGACY_EXCEPTIONS,
        "exception handling (legacy instructions)",
    ),
    Proposal::lacking(WasmFeatures::MEMORY64, "memory64"),
    Proposal::switched(
        WasmFeatures::MULTI_MEMORY,
        "multiple memories",
        "Config::wasm_multi_memory",
    ),
    Proposal::switched(
        WasmFeatures::EXTENDED_CONST,
        "extended constant expressions",
        "Config::wasm_extended_const",
    ),
    Proposal::switched(
        WasmFeatures::RELAXED_SIMD,
        "relaxed SIMD",
        "Config::wasm_relaxed_simd",
    ),
    Proposal::lacking(WasmFeatures::THREADS, "threads"),
];

/// One row of `PROPOSALS`.
struct Proposal {
    feature: WasmFeatures,
    /// The name users know it by.
    name: &'static str,
    /// For a proposal Backstop runs, the `Config` switch that turns it off
    /// (named when an engine has it off).
    switch: Option<&'static str>,
}

impl Proposal {
    /// A proposal Backstop does not run yet.
    const fn lacking(feature: WasmFeatures, name: &'static str) -> Proposal {
        Proposal {
            feature,
            name,
            switch: None,
        }
    }

    /// A proposal Backstop runs, behind `switch`.
    const fn switched(feature: WasmFeatures, name: &'static str, switch: &'static str) -> Proposal {
        Proposal {
            feature,
            name,
            switch: Some(switch),
        }
    }
}

/// Every proposal in `PROPOSALS`, on top of Wasm 2.0.
fn all_proposals() -> WasmFeatures {
    PROPOSALS
        .iter()
        .fold(WasmFeatures::WASM2, |set, p| set | p.feature)
}

fn valid_with(wasm: &[u8], features: WasmFeatures) -> bool {
    Validator::new_with_features(features)
        .validate_all(wasm)
        .is_ok()
}

/// If `wasm` is invalid with the `enabled` proposals but valid with later
/// ones, the names of the proposals it needs (joined with ", "), each one
/// Backstop runs but the engine has off marked so; otherwise `None` (the
/// module is broken, or valid already).
pub fn needed_proposals(wasm: &[u8], enabled: Proposals) -> Option<String> {
    let enabled = enabled.features();
    let all = all_proposals();
    if valid_with(wasm, enabled) || !valid_with(wasm, all) {
        return None;
    }
    // Drop each proposal the module still validates without; what remains
    // is a smallest set (each one left is needed, given the others).
    let mut needed = all;
    for proposal in PROPOSALS {
        if enabled.contains(proposal.feature) {
            continue;
        }
        let without = needed.difference(proposal.feature);
        if valid_with(wasm, without) {
            needed = without;
        }
    }
    // What the module needs beyond what the engine has on.
    let needed = needed.difference(enabled);
    let only_memory64 = PROPOSALS
        .iter()
        .all(|p| needed.contains(p.feature) == (p.feature == WasmFeatures::MEMORY64));
    if only_memory64 && !declares_64_bit_index(wasm) {
        // Wasm 3.0 reads every memory's and table's limits as 64-bit
        // numbers, so a 32-bit limit encoded too long is valid there; but
        // a module with no 64-bit memory or table does not use memory64:
        // it is malformed.
        return None;
    }
    let names: Vec<String> = PROPOSALS
        .iter()
        .filter(|p| needed.contains(p.feature))
        .map(|p| match p.switch {
            Some(switch) => format!("{} (off in this engine: {switch})", p.name),
            None => p.name.to_string(),
        })
        .collect();
    Some(if names.is_empty() {
        // Valid only with every proposal on, yet no single one is needed:
        // not expected, but say something true.
        "proposals beyond Wasm 2.0".to_string()
    } else {
        names.join(", ")
    })
}

/// Whether the module declares or imports a memory or a table with 64-bit
/// indices (read with every proposal enabled).
fn declares_64_bit_index(wasm: &[u8]) -> bool {
    let mut parser = Parser::new(0);
    parser.set_features(all_proposals());
    for payload in parser.parse_all(wasm) {
        let Ok(payload) = payload else { return false };
        let found = match payload {
            Payload::MemorySection(reader) => reader
                .into_iter()
                .any(|memory| memory.is_ok_and(|m| m.memory64)),
            Payload::TableSection(reader) => reader
                .into_iter()
                .any(|table| table.is_ok_and(|t| t.ty.table64)),
            Payload::ImportSection(reader) => reader.into_imports().any(|import| match import {
                Ok(import) => match import.ty {
                    TypeRef::Memory(m) => m.memory64,
                    TypeRef::Table(t) => t.table64,
                    _ => false,
                },
                Err(_) => false,
            }),
            _ => false,
        };
        if found {
            return true;
        }
    }
    false
}
