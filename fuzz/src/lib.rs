//! `backstop-fuzz`: the fuzzing targets and the campaigns that run them.
//!
//! A case is named by (target, seed, index): its input bytes come from
//! `generate::case_bytes`, so any case can be made again anywhere. Each
//! target turns the bytes into a module and checks one promise:
//!
//! | target | input | promise |
//! |---|---|---|
//! | `compile` | real and generated modules, damaged (`mutate`) | an error or a module, never a panic, abort or hang; accepted exactly when `wasmparser`'s Wasm 2.0 validator accepts |
//! | `run` | `wasm-smith` modules with imports | instantiating and calling every export ends however it ends, but never crashes or hangs the host |
//! | `differential` | `wasm-smith` modules, no imports, NaNs canonical | Backstop and wasmi 1.1.0 give the same results, traps and exported state |
//! | `config` | the same modules | every Backstop configuration in `CONFIGS` gives exactly the same trace as the default |
//! | `targeted` | `targeted`'s shapes (division by constants, xor chains, loop exits, `call_indirect` chains, traps at a function's first instruction) | both `differential`'s and `config`'s promises |
//! | `endings` | the termination matrix (`endings`): random depth, frames and ending | every host guard dropped, the expected outcome, a usable instance |
//!
//! `campaign` runs cases in worker processes, so a crash or hang of one is
//! caught, counted and saved instead of ending the campaign.

pub mod backstop_side;
pub mod campaign;
pub mod endings;
pub mod generate;
pub mod mutate;
pub mod oracle;
pub mod reduce;
pub mod targeted;
pub mod trace;

use std::fmt;

/// A fuzzing target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Compile,
    Run,
    Differential,
    Config,
    Targeted,
    Endings,
}

impl Target {
    pub const ALL: [Target; 6] = [
        Target::Compile,
        Target::Run,
        Target::Differential,
        Target::Config,
        Target::Targeted,
        Target::Endings,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Compile => "compile",
            Target::Run => "run",
            Target::Differential => "differential",
            Target::Config => "config",
            Target::Targeted => "targeted",
            Target::Endings => "endings",
        }
    }

    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a case went, short of a crash or hang (which only the parent of a
/// worker can see).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The promise held.
    Pass,
    /// The input did not make a case (wasm-smith ran out of bytes), or the
    /// engines may legitimately differ (a stack overflow): not a finding.
    Skip(String),
    /// The promise broke: a panic, a wrong verdict, a difference.
    Finding(String),
}

/// The module a case runs: what `run_case` feeds to Backstop, and what a
/// finding saves.
pub fn case_module(target: Target, input: &[u8]) -> Option<Vec<u8>> {
    match target {
        Target::Compile => Some(mutate::mutated_module(input)),
        Target::Run => generate::smith_module(input, generate::Purpose::Run).ok(),
        Target::Differential => generate::smith_module(input, generate::Purpose::Compare).ok(),
        Target::Config => generate::smith_module(input, generate::Purpose::CompareSelf).ok(),
        Target::Targeted => wat::parse_str(targeted::module(input)).ok(),
        // Its case is a plan, not a module: `run_case` runs it.
        Target::Endings => None,
    }
}

/// Runs one case's module through its target's check. A panic anywhere in
/// it is a finding.
pub fn check_module(target: Target, module: &[u8]) -> Verdict {
    if let Some(verdict) = self_test_finding(module) {
        return verdict;
    }
    let result = std::panic::catch_unwind(|| match target {
        Target::Compile => check_compile(module),
        Target::Run => check_run(module),
        Target::Differential => check_differential(module),
        Target::Config => check_configs(module),
        Target::Targeted => match check_differential(module) {
            Verdict::Finding(f) => Verdict::Finding(format!("against the oracle: {f}")),
            _ => check_configs(module),
        },
        Target::Endings => Verdict::Skip("the endings target checks plans, not modules".into()),
    });
    match result {
        Ok(verdict) => verdict,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            Verdict::Finding(format!("panic: {message}"))
        }
    }
}

/// For tests of the reducer: with `BACKSTOP_FUZZ_SELF_TEST` holding
/// `finding-on-export=NAME`, a module that exports NAME is a finding.
fn self_test_finding(module: &[u8]) -> Option<Verdict> {
    let spec = std::env::var("BACKSTOP_FUZZ_SELF_TEST").ok()?;
    let name = spec
        .split(',')
        .find_map(|part| part.strip_prefix("finding-on-export="))?;
    let exports = wasmparser::Parser::new(0).parse_all(module).any(|payload| {
        matches!(payload, Ok(wasmparser::Payload::ExportSection(reader))
            if reader.clone().into_iter().any(|e| e.is_ok_and(|e| e.name == name)))
    });
    exports.then(|| Verdict::Finding(format!("self test: exports {name}")))
}

/// Makes case `index` of `seed` and checks it.
pub fn run_case(target: Target, seed: u64, index: u64) -> Verdict {
    let input = generate::case_bytes(seed, index);
    if target == Target::Endings {
        return match std::panic::catch_unwind(|| endings::check(&input)) {
            Ok(Ok(())) => Verdict::Pass,
            Ok(Err(finding)) => Verdict::Finding(finding),
            Err(_) => Verdict::Finding("panic outside the host frames".into()),
        };
    }
    match case_module(target, &input) {
        Some(module) => check_module(target, &module),
        None => Verdict::Skip("the input made no module".into()),
    }
}

fn engine() -> backstop::Engine {
    let mut config = backstop::Config::new();
    // Interrupt checks make a hang stoppable by the worker's own deadline.
    config.interrupt_checks(true);
    backstop::Engine::new(&config).expect("the fuzzing configuration is valid")
}

/// What a default engine must accept, written out here rather than taken
/// from Backstop, so that the `compile` target checks Backstop's feature
/// set against the reference validator: Wasm 2.0 and the Wasm 3.0
/// proposals Backstop runs.
pub(crate) fn reference_features() -> wasmparser::WasmFeatures {
    use wasmparser::WasmFeatures;
    WasmFeatures::WASM2 | WasmFeatures::EXTENDED_CONST | WasmFeatures::MULTI_MEMORY
}

fn check_compile(module: &[u8]) -> Verdict {
    let valid = wasmparser::Validator::new_with_features(reference_features()).validate_all(module);
    let compiled = backstop::Module::from_binary(&engine(), module);
    match (valid, compiled) {
        (Ok(_), Ok(_)) => Verdict::Pass,
        (Err(_), Err(backstop::Error::Invalid(_) | backstop::Error::Unsupported(_))) => {
            Verdict::Pass
        }
        (Ok(_), Err(e)) => Verdict::Finding(format!("a valid module was refused: {e}")),
        (Err(e), Ok(_)) => Verdict::Finding(format!("an invalid module compiled: {e}")),
        (Err(_), Err(e)) => {
            Verdict::Finding(format!("an invalid module gave the wrong error: {e:?}"))
        }
    }
}

fn check_run(module: &[u8]) -> Verdict {
    match backstop_side::run(&engine(), module) {
        Ok(trace) if trace.lines.is_empty() => {
            Verdict::Skip(trace.inconclusive.unwrap_or_default())
        }
        Ok(_) => Verdict::Pass,
        Err(finding) => Verdict::Finding(finding),
    }
}

/// Both engines' traces of a module, for looking at a case by hand
/// (`backstop-fuzz case --trace`).
pub fn traces(module: &[u8]) -> Result<(trace::Trace, trace::Trace), String> {
    let backstop = backstop_side::run(&engine(), module)?;
    let oracle = oracle::run(module, &backstop.exports);
    Ok((backstop, oracle))
}

fn check_differential(module: &[u8]) -> Verdict {
    let engine = engine();
    let backstop = match backstop_side::run(&engine, module) {
        Ok(trace) => trace,
        Err(finding) => return Verdict::Finding(finding),
    };
    let oracle = oracle::run(module, &backstop.exports);
    if let Some(reason) = &oracle.inconclusive {
        if oracle.lines.is_empty() {
            return Verdict::Skip(reason.clone());
        }
    }
    match trace::compare(&backstop, &oracle) {
        Ok(()) => match backstop.inconclusive.or(oracle.inconclusive) {
            Some(reason) => Verdict::Skip(reason),
            None => Verdict::Pass,
        },
        Err(difference) => Verdict::Finding(difference),
    }
}

/// The configurations `config` compares with the default one: each changes
/// how code is compiled and none may change what it does.
pub const CONFIGS: [&str; 7] = [
    "opt-none",
    "opt-speed-and-size",
    "no-interrupt-checks",
    "close-every-loop",
    "no-own-passes",
    "explicit-bounds-checks",
    "baseline-cpu",
];

/// The engine of one of `CONFIGS`, on top of the fuzzing default.
pub fn config_engine(name: &str) -> backstop::Engine {
    let mut config = backstop::Config::new();
    config.interrupt_checks(true);
    match name {
        "opt-none" => {
            config.optimization_level(backstop::OptimizationLevel::None);
        }
        "opt-speed-and-size" => {
            config.optimization_level(backstop::OptimizationLevel::SpeedAndSize);
        }
        "no-interrupt-checks" => {
            config.interrupt_checks(false);
        }
        "close-every-loop" => {
            config.loop_closing_threshold(0);
        }
        "no-own-passes" => {
            config.compiler_passes(false);
        }
        "explicit-bounds-checks" => {
            // Exactly the largest memory a case can have, and no guard: every
            // access is checked in code, none by a fault.
            config
                .memory_reservation(generate::MAX_MEMORY_BYTES)
                .memory_guard_size(0);
        }
        "baseline-cpu" => {
            config.native_cpu_features(false);
        }
        other => panic!("unknown configuration {other}"),
    }
    backstop::Engine::new(&config).expect("the configuration is valid")
}

fn check_configs(module: &[u8]) -> Verdict {
    let reference = match backstop_side::run(&engine(), module) {
        Ok(trace) => trace,
        Err(finding) => return Verdict::Finding(finding),
    };
    let mut inconclusive = reference.inconclusive.clone();
    for name in CONFIGS {
        let other = match backstop_side::run(&config_engine(name), module) {
            Ok(trace) => trace,
            Err(finding) => return Verdict::Finding(format!("{name}: {finding}")),
        };
        if let Err(difference) = trace::compare(&reference, &other) {
            return Verdict::Finding(format!("{name} differs from the default: {difference}"));
        }
        inconclusive = inconclusive.or(other.inconclusive);
    }
    match inconclusive {
        Some(reason) => Verdict::Skip(reason),
        None => Verdict::Pass,
    }
}
