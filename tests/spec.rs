//! WebAssembly specification test runner for Backstop (`cargo test --release
//! --test spec`).
//!
//! This file owns the whole spec-test harness: it finds every `.wast` script
//! of the official test suite (Wasm 2.0 core plus fixed-width SIMD), parses
//! it with `wast` 217.0.1, runs every directive against the public `backstop`
//! API (Engine, Module, Linker, Store, Instance), and reports per-file and
//! total pass/fail/skip counts. It uses nothing but the public API and
//! contains no `unsafe`.
//!
//! Layout of this file:
//! - configuration (`Options`): where the suite lives, the file filter, CI mode;
//! - discovery (`find_wast_files`) and the known-failures ratchet
//!   (`KnownFailures`);
//! - the script interpreter (`Runner`): one per `.wast` file, with one store
//!   holding every instance of the script (`register` links instances, and
//!   linked instances must share a store) and the `spectest` host items, the
//!   registry of instances and the "current" instance, and one method per
//!   directive kind;
//! - value conversion and matching (`arg_to_val`, `match_ret`, NaN patterns,
//!   v128 lanes, references) and trap-message matching (`trap_matches`);
//! - reporting (`FileReport`, `main`).
//!
//! Environment:
//! - `BACKSTOP_SPEC_DIR`: the suite's directory (default
//!   `$CARGO_MANIFEST_DIR/../shared/spec-testsuite`), holding `core/` and
//!   `simd/`;
//! - `BACKSTOP_SPEC_FILTER=substring`: run only the files whose relative path
//!   (e.g. `core/i32.wast`) contains the substring;
//! - `CI=true`: a missing suite is an error rather than a skip.
//!
//! Known failures: if `tests/spec-known-failures.txt` exists (lines
//! `core/foo.wast:LINE`, `#` comments allowed), listed failures still count as
//! failures but do not fail the test; a listed entry that now passes (or no
//! longer exists) does fail it, so the list can only shrink.

use backstop::{
    Engine, Error, ExternRef, Global, GlobalType, Instance, Linker, Memory, MemoryType, Module,
    Store, Table, TableType, Trap, TrapCode, Val, ValType, V128,
};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::num::NonZeroU64;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use wast::core::{AbstractHeapType, HeapType, NanPattern, V128Pattern, WastArgCore, WastRetCore};
use wast::lexer::Lexer;
use wast::parser::{self, ParseBuffer};
use wast::token::{Id, Span, F32, F64};
use wast::{QuoteWat, Wast, WastArg, WastDirective, WastExecute, WastInvoke, WastRet, Wat};

/// Failing directives listed per file before "... and N more".
const MAX_LISTED_PER_FILE: usize = 20;

/// The suite's subdirectories, run in this order.
const SUBDIRS: [&str; 2] = ["core", "simd"];

/// The known-failures list, relative to `CARGO_MANIFEST_DIR`.
const KNOWN_FAILURES_FILE: &str = "tests/spec-known-failures.txt";

// ---------------------------------------------------------------------------
// Configuration and discovery
// ---------------------------------------------------------------------------

struct Options {
    dir: PathBuf,
    filter: Option<String>,
    ci: bool,
}

impl Options {
    fn from_env() -> Options {
        let dir = match std::env::var_os("BACKSTOP_SPEC_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/spec-testsuite"),
        };
        let filter = std::env::var("BACKSTOP_SPEC_FILTER")
            .ok()
            .filter(|f| !f.is_empty());
        let ci = std::env::var("CI")
            .map(|v| v.eq_ignore_ascii_case("true") || v == "1")
            .unwrap_or(false);
        Options { dir, filter, ci }
    }
}

/// One script to run: its display name (`core/i32.wast`) and path.
struct WastFile {
    name: String,
    path: PathBuf,
}

/// Every `.wast` in the suite's subdirectories, each sorted by name. Returns
/// the subdirectories that are missing as the second element.
fn find_wast_files(dir: &Path) -> (Vec<WastFile>, Vec<String>) {
    let mut files = Vec::new();
    let mut missing = Vec::new();
    for sub in SUBDIRS {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            missing.push(sub.to_string());
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".wast"))
            .collect();
        names.sort();
        for n in names {
            files.push(WastFile {
                name: format!("{sub}/{n}"),
                path: dir.join(sub).join(&n),
            });
        }
    }
    (files, missing)
}

// ---------------------------------------------------------------------------
// Known-failures ratchet
// ---------------------------------------------------------------------------

/// Entries of `tests/spec-known-failures.txt`, as `file:line` keys.
struct KnownFailures {
    path: PathBuf,
    entries: BTreeSet<String>,
}

impl KnownFailures {
    /// Reads the list if it exists. A malformed line is an error.
    fn load() -> Result<Option<KnownFailures>, String> {
        let path = match std::env::var_os("BACKSTOP_SPEC_KNOWN_FAILURES") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => Path::new(env!("CARGO_MANIFEST_DIR")).join(KNOWN_FAILURES_FILE),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let mut entries = BTreeSet::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let well_formed = line
                .rsplit_once(':')
                .is_some_and(|(file, n)| file.ends_with(".wast") && n.parse::<u32>().is_ok());
            if !well_formed {
                return Err(format!(
                    "{}:{}: expected `dir/file.wast:LINE`, found `{line}`",
                    path.display(),
                    i + 1
                ));
            }
            entries.insert(line.to_string());
        }
        Ok(Some(KnownFailures { path, entries }))
    }

    fn contains(&self, key: &str) -> bool {
        self.entries.contains(key)
    }

    /// The entries of the given files.
    fn entries_for<'a>(&'a self, file: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.rsplit_once(':').is_some_and(|(f, _)| f == file))
    }
}

// ---------------------------------------------------------------------------
// Results of directives and files
// ---------------------------------------------------------------------------

/// What one directive came to.
enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

/// A directive that did not pass, with where it is.
#[derive(Debug)]
struct Problem {
    line: usize,
    col: usize,
    reason: String,
    skipped: bool,
}

#[derive(Default)]
struct FileReport {
    passed: usize,
    failed: usize,
    skipped: usize,
    problems: Vec<Problem>,
}

impl FileReport {
    fn record(&mut self, (line, col): (usize, usize), outcome: Outcome) {
        match outcome {
            Outcome::Pass => self.passed += 1,
            Outcome::Fail(reason) => {
                self.failed += 1;
                self.problems.push(Problem {
                    line,
                    col,
                    reason,
                    skipped: false,
                });
            }
            Outcome::Skip(reason) => {
                self.skipped += 1;
                self.problems.push(Problem {
                    line,
                    col,
                    reason,
                    skipped: true,
                });
            }
        }
    }

    /// Line numbers of the failed directives.
    fn failed_lines(&self) -> impl Iterator<Item = usize> + '_ {
        self.problems.iter().filter(|p| !p.skipped).map(|p| p.line)
    }
}

/// Maps byte offsets of a script to 1-based line and column numbers.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    fn locate(&self, span: Span) -> (usize, usize) {
        let offset = span.offset();
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        (line, offset - self.starts[line - 1] + 1)
    }
}

// ---------------------------------------------------------------------------
// Panics inside directives
// ---------------------------------------------------------------------------

thread_local! {
    /// Set while a directive runs: panics are then caught and reported as
    /// that directive's failure instead of being printed by the default hook.
    static IN_DIRECTIVE: Cell<bool> = const { Cell::new(false) };
    /// Where the last caught panic happened.
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Keeps the default panic output for panics outside directives, and records
/// the location of panics inside them.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if IN_DIRECTIVE.with(Cell::get) {
            let location = info.location().map(|l| l.to_string());
            PANIC_LOCATION.with(|p| *p.borrow_mut() = location);
        } else {
            default(info);
        }
    }));
}

/// Runs `f`, turning a panic into a failure.
fn run_catching(f: impl FnOnce() -> Outcome) -> Outcome {
    IN_DIRECTIVE.with(|d| d.set(true));
    PANIC_LOCATION.with(|p| *p.borrow_mut() = None);
    let result = catch_unwind(AssertUnwindSafe(f));
    IN_DIRECTIVE.with(|d| d.set(false));
    match result {
        Ok(outcome) => outcome,
        Err(payload) => {
            let message = if let Some(s) = payload.downcast_ref::<&str>() {
                (*s).to_string()
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else {
                "<non-string panic payload>".to_string()
            };
            let location = PANIC_LOCATION
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "unknown location".into());
            Outcome::Fail(format!("panicked at {location}: {message}"))
        }
    }
}

// ---------------------------------------------------------------------------
// The script interpreter
// ---------------------------------------------------------------------------

/// Interprets one `.wast` script. Every instance it creates lives in the
/// script's one store (so `register`ed instances can be linked to later
/// modules) and stays alive until the script ends.
struct Runner {
    engine: Engine,
    /// Owns every instance of the script and the `spectest` items.
    store: Store<()>,
    linker: Linker<()>,
    /// Handles of the instances in `store`, in the order they were made.
    instances: Vec<Instance>,
    /// `$id` of a module → index into `instances`.
    named: HashMap<String, usize>,
    /// The instance unnamed `invoke`s and `register`s refer to.
    current: Option<usize>,
    /// Why the latest `module` directive produced no instance, if it failed.
    current_error: Option<String>,
}

impl Runner {
    fn new(engine: &Engine) -> Result<Runner, Error> {
        let mut store = Store::new(engine, ());
        let mut linker = Linker::new(engine);
        linker.allow_shadowing(true);
        define_spectest(&mut linker, &mut store)?;
        Ok(Runner {
            engine: engine.clone(),
            store,
            linker,
            instances: Vec::new(),
            named: HashMap::new(),
            current: None,
            current_error: None,
        })
    }

    fn directive(&mut self, directive: WastDirective<'_>) -> Outcome {
        match directive {
            WastDirective::Module(module) => self.module(module),
            WastDirective::Register { name, module, .. } => self.register(name, module),
            WastDirective::Invoke(invoke) => match self.invoke(&invoke) {
                Ok(Ok(_)) => Outcome::Pass,
                Ok(Err(e)) => Outcome::Fail(format!("invoke failed: {}", describe_error(&e))),
                Err(reason) => Outcome::Fail(reason),
            },
            WastDirective::AssertReturn { exec, results, .. } => self.assert_return(exec, &results),
            WastDirective::AssertTrap { exec, message, .. } => self.assert_trap(exec, message),
            WastDirective::AssertExhaustion { call, message, .. } => {
                self.assert_exhaustion(&call, message)
            }
            WastDirective::AssertInvalid {
                module, message, ..
            } => self.assert_invalid(module, message),
            WastDirective::AssertMalformed {
                module, message, ..
            } => self.assert_malformed(module, message),
            WastDirective::AssertUnlinkable {
                module, message, ..
            } => self.assert_unlinkable(module, message),
            WastDirective::ModuleDefinition(_) => Outcome::Skip("module definition".into()),
            WastDirective::ModuleInstance { .. } => Outcome::Skip("module instance".into()),
            WastDirective::AssertException { .. } => Outcome::Skip("assert_exception".into()),
            WastDirective::Thread(_) => Outcome::Skip("thread".into()),
            WastDirective::Wait { .. } => Outcome::Skip("wait".into()),
            WastDirective::AssertSuspension { .. } => Outcome::Skip("assert_suspension".into()),
            WastDirective::AssertInvalidCustom { .. } => {
                Outcome::Skip("assert_invalid_custom".into())
            }
            WastDirective::AssertMalformedCustom { .. } => {
                Outcome::Skip("assert_malformed_custom".into())
            }
        }
    }

    // --- modules and instances ---

    /// Compiles and instantiates a module against the current registry, in
    /// the script's store.
    fn instantiate(&mut self, wat: &mut QuoteWat<'_>) -> Result<Instance, String> {
        if matches!(
            wat,
            QuoteWat::QuoteComponent(..) | QuoteWat::Wat(Wat::Component(_))
        ) {
            return Err("components are not supported".into());
        }
        let bytes = wat.encode().map_err(|e| {
            format!(
                "cannot encode the module text: {}",
                one_line(&e.to_string())
            )
        })?;
        let module = Module::from_binary(&self.engine, &bytes)
            .map_err(|e| format!("module failed to compile: {}", describe_error(&e)))?;
        self.linker
            .instantiate(&mut self.store, &module)
            .map_err(|e| format!("module failed to instantiate: {}", describe_error(&e)))
    }

    /// Records an instance of the store (alive for the rest of the script,
    /// as the store is); returns its index.
    fn keep(&mut self, instance: Instance) -> usize {
        self.instances.push(instance);
        self.instances.len() - 1
    }

    fn module(&mut self, mut wat: QuoteWat<'_>) -> Outcome {
        if matches!(
            wat,
            QuoteWat::QuoteComponent(..) | QuoteWat::Wat(Wat::Component(_))
        ) {
            return Outcome::Skip("component".into());
        }
        let name = wat.name().map(|id| id.name().to_string());
        match self.instantiate(&mut wat) {
            Ok(instance) => {
                let index = self.keep(instance);
                self.current = Some(index);
                self.current_error = None;
                if let Some(name) = name {
                    self.named.insert(name, index);
                }
                Outcome::Pass
            }
            Err(reason) => {
                // Later directives that use this module fail with a pointer
                // back here rather than silently running against an older
                // instance.
                self.current = None;
                self.current_error = Some(reason.clone());
                if let Some(name) = name {
                    self.named.remove(&name);
                }
                Outcome::Fail(reason)
            }
        }
    }

    /// The instance `$id` names, or the current one.
    fn instance_index(&self, id: Option<Id<'_>>) -> Result<usize, String> {
        match id {
            Some(id) => self.named.get(id.name()).copied().ok_or_else(|| {
                format!(
                    "no module named ${} (it failed or was never defined)",
                    id.name()
                )
            }),
            None => self.current.ok_or_else(|| match &self.current_error {
                Some(e) => format!("no current module: the last module failed ({e})"),
                None => "no current module".to_string(),
            }),
        }
    }

    fn register(&mut self, name: &str, id: Option<Id<'_>>) -> Outcome {
        let index = match self.instance_index(id) {
            Ok(i) => i,
            Err(reason) => return Outcome::Fail(reason),
        };
        match self
            .linker
            .instance(&self.store, name, self.instances[index])
        {
            Ok(_) => Outcome::Pass,
            Err(e) => Outcome::Fail(format!("register failed: {}", describe_error(&e))),
        }
    }

    // --- execution ---

    /// Calls an export. The outer error is a harness-level problem (unknown
    /// module, unsupported argument); the inner result is the call's.
    fn invoke(&mut self, invoke: &WastInvoke<'_>) -> Result<Result<Vec<Val>, Error>, String> {
        let index = self.instance_index(invoke.module)?;
        let args = invoke
            .args
            .iter()
            .map(arg_to_val)
            .collect::<Result<Vec<_>, _>>()?;
        let instance = self.instances[index];
        if instance.get_func(&self.store, invoke.name).is_none() {
            return Err(format!("no exported function \"{}\"", invoke.name));
        }
        Ok(instance.call_dynamic(&mut self.store, invoke.name, &args))
    }

    /// Runs an `assert_return`/`assert_trap` action: an invoke, or a global
    /// read. Module actions are handled by the callers.
    fn execute(&mut self, exec: &WastExecute<'_>) -> Result<Result<Vec<Val>, Error>, String> {
        match exec {
            WastExecute::Invoke(invoke) => self.invoke(invoke),
            WastExecute::Get { module, global, .. } => {
                let index = self.instance_index(*module)?;
                match self.instances[index].get_global(&self.store, global) {
                    Some(g) => Ok(Ok(vec![g.get(&self.store)])),
                    None => Err(format!("no exported global \"{global}\"")),
                }
            }
            WastExecute::Wat(_) => Err("a module is not an action here".into()),
        }
    }

    fn assert_return(&mut self, exec: WastExecute<'_>, expected: &[WastRet<'_>]) -> Outcome {
        if let WastExecute::Wat(_) = exec {
            return Outcome::Skip("assert_return of a module".into());
        }
        let results = match self.execute(&exec) {
            Ok(Ok(results)) => results,
            Ok(Err(e)) => {
                return Outcome::Fail(format!("expected results, got {}", describe_error(&e)))
            }
            Err(reason) => return Outcome::Fail(reason),
        };
        if results.len() != expected.len() {
            return Outcome::Fail(format!(
                "expected {} results, got {}: {}",
                expected.len(),
                results.len(),
                describe_vals(&results)
            ));
        }
        for (i, (got, want)) in results.iter().zip(expected).enumerate() {
            let want = match want {
                WastRet::Core(core) => core,
                #[allow(unreachable_patterns)]
                _ => return Outcome::Skip("component result".into()),
            };
            match match_ret(got, want) {
                Match::Yes => {}
                Match::No => {
                    return Outcome::Fail(format!(
                        "result {i}: expected {}, got {}{}",
                        describe_ret(want),
                        describe_val(got),
                        if results.len() > 1 {
                            format!(" (all results: {})", describe_vals(&results))
                        } else {
                            String::new()
                        }
                    ))
                }
                Match::Unsupported(what) => return Outcome::Skip(what),
            }
        }
        Outcome::Pass
    }

    fn assert_trap(&mut self, exec: WastExecute<'_>, message: &str) -> Outcome {
        let result = match exec {
            WastExecute::Wat(wat) => {
                let mut wat = QuoteWat::Wat(wat);
                let bytes = match wat.encode() {
                    Ok(b) => b,
                    Err(e) => {
                        return Outcome::Fail(format!(
                            "cannot encode: {}",
                            one_line(&e.to_string())
                        ))
                    }
                };
                let module = match Module::from_binary(&self.engine, &bytes) {
                    Ok(m) => m,
                    Err(e) => {
                        return Outcome::Fail(format!(
                            "expected instantiation to trap \"{message}\", but the module failed to compile: {}",
                            describe_error(&e)
                        ))
                    }
                };
                match self.linker.instantiate(&mut self.store, &module) {
                    Ok(instance) => {
                        self.keep(instance);
                        return Outcome::Fail(format!(
                            "expected instantiation to trap \"{message}\", but it succeeded"
                        ));
                    }
                    Err(e) => Err(e),
                }
            }
            exec => match self.execute(&exec) {
                Ok(result) => result,
                Err(reason) => return Outcome::Fail(reason),
            },
        };
        match result {
            Ok(values) => Outcome::Fail(format!(
                "expected trap \"{message}\", got results {}",
                describe_vals(&values)
            )),
            Err(Error::Trap(trap)) if trap_matches(message, &trap) => Outcome::Pass,
            Err(Error::Trap(trap)) => Outcome::Fail(format!(
                "expected trap \"{message}\", got trap \"{}\" ({:?}; {trap})",
                trap.code().message(),
                trap.code()
            )),
            Err(e) => Outcome::Fail(format!(
                "expected trap \"{message}\", got non-trap error {}",
                describe_error(&e)
            )),
        }
    }

    fn assert_exhaustion(&mut self, call: &WastInvoke<'_>, message: &str) -> Outcome {
        match self.invoke(call) {
            Err(reason) => Outcome::Fail(reason),
            Ok(Ok(values)) => Outcome::Fail(format!(
                "expected exhaustion \"{message}\", got results {}",
                describe_vals(&values)
            )),
            Ok(Err(Error::Trap(trap))) if trap.code() == TrapCode::StackOverflow => Outcome::Pass,
            Ok(Err(Error::Trap(trap))) => Outcome::Fail(format!(
                "expected exhaustion (StackOverflow), got trap \"{}\" ({:?})",
                trap.code().message(),
                trap.code()
            )),
            Ok(Err(e)) => Outcome::Fail(format!(
                "expected exhaustion (StackOverflow), got non-trap error {}",
                describe_error(&e)
            )),
        }
    }

    // --- modules that must be rejected ---

    fn assert_invalid(&mut self, mut wat: QuoteWat<'_>, message: &str) -> Outcome {
        let bytes = match wat.encode() {
            Ok(b) => b,
            Err(e) => {
                return Outcome::Fail(format!(
                    "assert_invalid module does not encode (harness/wast problem): {}",
                    one_line(&e.to_string())
                ))
            }
        };
        self.expect_rejected(&bytes, "invalid", message)
    }

    fn assert_malformed(&mut self, mut wat: QuoteWat<'_>, message: &str) -> Outcome {
        match wat.encode() {
            // The text (or binary) does not even encode: malformed, as wanted.
            Err(_) => Outcome::Pass,
            Ok(bytes) => self.expect_rejected(&bytes, "malformed", message),
        }
    }

    /// `bytes` must fail to compile with `Error::Invalid`, or with
    /// `Error::Unsupported` naming a later proposal: some modules the Wasm
    /// 2.0 suite calls invalid or malformed are valid under Wasm 3.0's
    /// proposals (a second memory, `global.get` of a defined global in a
    /// constant, a memory index where 2.0 has a zero byte), and Backstop
    /// reports those as needing the proposal.
    fn expect_rejected(&mut self, bytes: &[u8], kind: &str, message: &str) -> Outcome {
        match Module::from_binary(&self.engine, bytes) {
            Ok(_) => Outcome::Fail(format!(
                "{kind} module was accepted (expected \"{message}\")"
            )),
            Err(Error::Invalid(_)) => Outcome::Pass,
            Err(Error::Unsupported(m))
                if ["multiple memories", "GC", "typed function references"]
                    .iter()
                    .any(|proposal| m.starts_with(proposal)) =>
            {
                Outcome::Pass
            }
            Err(e) => Outcome::Fail(format!(
                "{kind} module rejected, but not as Error::Invalid (expected \"{message}\"): {}",
                describe_error(&e)
            )),
        }
    }

    fn assert_unlinkable(&mut self, wat: Wat<'_>, message: &str) -> Outcome {
        let mut wat = QuoteWat::Wat(wat);
        let bytes = match wat.encode() {
            Ok(b) => b,
            Err(e) => return Outcome::Fail(format!("cannot encode: {}", one_line(&e.to_string()))),
        };
        let module = match Module::from_binary(&self.engine, &bytes) {
            Ok(m) => m,
            Err(e) => {
                return Outcome::Fail(format!(
                    "expected a link error \"{message}\", but the module failed to compile: {}",
                    describe_error(&e)
                ))
            }
        };
        match self.linker.instantiate(&mut self.store, &module) {
            Ok(instance) => {
                self.keep(instance);
                Outcome::Fail(format!(
                    "unlinkable module was accepted (expected \"{message}\")"
                ))
            }
            Err(Error::Link(_)) => Outcome::Pass,
            Err(e) => Outcome::Fail(format!(
                "expected a link error \"{message}\", got {}",
                describe_error(&e)
            )),
        }
    }
}

/// Defines the standard `spectest` module; its memory, table and globals
/// are created in `store`, the script's store.
fn define_spectest(linker: &mut Linker<()>, store: &mut Store<()>) -> Result<(), Error> {
    linker.func_wrap("spectest", "print", || {})?;
    linker.func_wrap("spectest", "print_i32", |_: i32| {})?;
    linker.func_wrap("spectest", "print_i64", |_: i64| {})?;
    linker.func_wrap("spectest", "print_f32", |_: f32| {})?;
    linker.func_wrap("spectest", "print_f64", |_: f64| {})?;
    linker.func_wrap("spectest", "print_i32_f32", |_: i32, _: f32| {})?;
    linker.func_wrap("spectest", "print_f64_f64", |_: f64, _: f64| {})?;

    let globals = [
        ("global_i32", ValType::I32, Val::I32(666)),
        ("global_i64", ValType::I64, Val::I64(666)),
        ("global_f32", ValType::F32, Val::from(666.6f32)),
        ("global_f64", ValType::F64, Val::from(666.6f64)),
    ];
    for (name, content, value) in globals {
        let ty = GlobalType {
            content,
            mutable: false,
        };
        linker.define("spectest", name, Global::new(&mut *store, ty, value)?)?;
    }

    let table_ty = TableType {
        element: ValType::FuncRef,
        minimum: 10,
        maximum: Some(20),
    };
    linker.define(
        "spectest",
        "table",
        Table::new(&mut *store, table_ty, Val::FuncRef(None))?,
    )?;

    let memory_ty = MemoryType {
        minimum: 1,
        maximum: Some(2),
    };
    linker.define("spectest", "memory", Memory::new(&mut *store, memory_ty)?)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Values: script arguments to `Val`, and matching results
// ---------------------------------------------------------------------------

/// The host handle for the script's `ref.extern N` (handles are non-zero).
fn extern_ref(n: u32) -> ExternRef {
    ExternRef::new(NonZeroU64::new(u64::from(n) + 1).expect("n + 1 is non-zero"))
}

fn arg_to_val(arg: &WastArg<'_>) -> Result<Val, String> {
    let WastArg::Core(arg) = arg else {
        return Err("component-model argument".into());
    };
    Ok(match arg {
        WastArgCore::I32(v) => Val::I32(*v),
        WastArgCore::I64(v) => Val::I64(*v),
        WastArgCore::F32(f) => Val::F32(f.bits),
        WastArgCore::F64(f) => Val::F64(f.bits),
        WastArgCore::V128(v) => Val::V128(V128(u128::from_le_bytes(v.to_le_bytes()))),
        WastArgCore::RefNull(heap) => match null_type(heap) {
            Some(ValType::FuncRef) => Val::FuncRef(None),
            Some(_) => Val::ExternRef(None),
            None => return Err(format!("unsupported ref.null type {heap:?}")),
        },
        WastArgCore::RefExtern(n) => Val::ExternRef(Some(extern_ref(*n))),
        WastArgCore::RefHost(_) => return Err("ref.host arguments are not supported".into()),
    })
}

/// The value type of `ref.null <heap>`, for the heap types of Wasm 2.0.
fn null_type(heap: &HeapType<'_>) -> Option<ValType> {
    match heap {
        HeapType::Abstract {
            ty: AbstractHeapType::Func,
            ..
        } => Some(ValType::FuncRef),
        HeapType::Abstract {
            ty: AbstractHeapType::Extern,
            ..
        } => Some(ValType::ExternRef),
        _ => None,
    }
}

enum Match {
    Yes,
    No,
    Unsupported(String),
}

impl From<bool> for Match {
    fn from(b: bool) -> Match {
        if b {
            Match::Yes
        } else {
            Match::No
        }
    }
}

fn f32_matches(bits: u32, want: &NanPattern<F32>) -> bool {
    match want {
        NanPattern::CanonicalNan => bits & 0x7fff_ffff == 0x7fc0_0000,
        NanPattern::ArithmeticNan => bits & 0x7fc0_0000 == 0x7fc0_0000,
        NanPattern::Value(f) => bits == f.bits,
    }
}

fn f64_matches(bits: u64, want: &NanPattern<F64>) -> bool {
    match want {
        NanPattern::CanonicalNan => bits & 0x7fff_ffff_ffff_ffff == 0x7ff8_0000_0000_0000,
        NanPattern::ArithmeticNan => bits & 0x7ff8_0000_0000_0000 == 0x7ff8_0000_0000_0000,
        NanPattern::Value(f) => bits == f.bits,
    }
}

/// Lane `i` of width `bits` of a v128, as an unsigned integer.
fn lane(v: u128, bits: u32, i: usize) -> u128 {
    let mask = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    (v >> (bits as usize * i)) & mask
}

fn v128_matches(v: u128, want: &V128Pattern) -> bool {
    match want {
        V128Pattern::I8x16(l) => l
            .iter()
            .enumerate()
            .all(|(i, x)| lane(v, 8, i) == u128::from(*x as u8)),
        V128Pattern::I16x8(l) => l
            .iter()
            .enumerate()
            .all(|(i, x)| lane(v, 16, i) == u128::from(*x as u16)),
        V128Pattern::I32x4(l) => l
            .iter()
            .enumerate()
            .all(|(i, x)| lane(v, 32, i) == u128::from(*x as u32)),
        V128Pattern::I64x2(l) => l
            .iter()
            .enumerate()
            .all(|(i, x)| lane(v, 64, i) == u128::from(*x as u64)),
        V128Pattern::F32x4(l) => l
            .iter()
            .enumerate()
            .all(|(i, p)| f32_matches(lane(v, 32, i) as u32, p)),
        V128Pattern::F64x2(l) => l
            .iter()
            .enumerate()
            .all(|(i, p)| f64_matches(lane(v, 64, i) as u64, p)),
    }
}

fn match_ret(got: &Val, want: &WastRetCore<'_>) -> Match {
    match (want, got) {
        (WastRetCore::I32(w), Val::I32(g)) => (w == g).into(),
        (WastRetCore::I64(w), Val::I64(g)) => (w == g).into(),
        (WastRetCore::F32(w), Val::F32(g)) => f32_matches(*g, w).into(),
        (WastRetCore::F64(w), Val::F64(g)) => f64_matches(*g, w).into(),
        (WastRetCore::V128(w), Val::V128(g)) => v128_matches(g.0, w).into(),
        (WastRetCore::RefNull(None), Val::FuncRef(r)) => r.is_none().into(),
        (WastRetCore::RefNull(None), Val::ExternRef(r)) => r.is_none().into(),
        (WastRetCore::RefNull(Some(heap)), got) => match null_type(heap) {
            Some(ty) => {
                (got.ty() == ty && matches!(got, Val::FuncRef(None) | Val::ExternRef(None))).into()
            }
            None => Match::Unsupported(format!("ref.null of heap type {heap:?}")),
        },
        (WastRetCore::RefExtern(None), Val::ExternRef(r)) => r.is_some().into(),
        (WastRetCore::RefExtern(Some(n)), Val::ExternRef(r)) => (*r == Some(extern_ref(*n))).into(),
        // The script cannot name which function; any non-null funcref will do.
        (WastRetCore::RefFunc(_), Val::FuncRef(r)) => r.is_some().into(),
        (WastRetCore::Either(options), got) => {
            let mut result = Match::No;
            for option in options {
                match match_ret(got, option) {
                    Match::Yes => return Match::Yes,
                    Match::Unsupported(w) => result = Match::Unsupported(w),
                    Match::No => {}
                }
            }
            result
        }
        (
            WastRetCore::RefHost(_)
            | WastRetCore::RefAny
            | WastRetCore::RefEq
            | WastRetCore::RefArray
            | WastRetCore::RefStruct
            | WastRetCore::RefI31
            | WastRetCore::RefI31Shared,
            _,
        ) => Match::Unsupported(format!("expected result {}", describe_ret(want))),
        _ => Match::No,
    }
}

// ---------------------------------------------------------------------------
// Trap messages
// ---------------------------------------------------------------------------

/// Whether a trap fits the script's expected message. Our
/// `TrapCode::message()` strings are the spec's; they are compared by
/// substring either way, and "out of bounds" variants leniently. The spec's
/// "undefined element" (index past the table's end in `call_indirect`) is
/// our out-of-bounds table access.
fn trap_matches(expected: &str, trap: &Trap) -> bool {
    let actual = trap.code().message();
    if expected.contains(actual) || actual.contains(expected) {
        return true;
    }
    let both = |a: &str, b: &str| expected.contains(a) && actual.contains(b);
    both("out of bounds", "out of bounds")
        || both("undefined element", "out of bounds table access")
        || both("uninitialized element", "uninitialized element")
        || both("indirect call type mismatch", "indirect call")
}

// ---------------------------------------------------------------------------
// Descriptions for failure reasons
// ---------------------------------------------------------------------------

fn one_line(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 300 {
        let mut cut: String = s.chars().take(300).collect();
        cut.push('…');
        cut
    } else {
        s
    }
}

fn describe_error(e: &Error) -> String {
    let kind = match e {
        Error::Invalid(_) => "Invalid",
        Error::Unsupported(_) => "Unsupported",
        Error::Link(_) => "Link",
        Error::Trap(_) => "Trap",
        Error::InvalidArgument(_) => "InvalidArgument",
        Error::InstanceState(_) => "InstanceState",
        Error::MemoryAccess(_) => "MemoryAccess",
        Error::Resource(_) => "Resource",
        Error::Host(_) => "Host",
        Error::Message(_) => "Message",
        _ => "other",
    };
    format!("Error::{kind}({})", one_line(&e.to_string()))
}

fn describe_val(v: &Val) -> String {
    match v {
        Val::I32(x) => format!("i32:{x}"),
        Val::I64(x) => format!("i64:{x}"),
        Val::F32(b) => format!("f32:{} (0x{b:08x})", f32::from_bits(*b)),
        Val::F64(b) => format!("f64:{} (0x{b:016x})", f64::from_bits(*b)),
        Val::V128(x) => format!("v128:0x{:032x}", x.0),
        Val::FuncRef(None) => "ref.null func".into(),
        Val::FuncRef(Some(_)) => "ref.func".into(),
        Val::ExternRef(None) => "ref.null extern".into(),
        Val::ExternRef(Some(r)) => format!(
            "ref.extern {} (handle {})",
            r.handle().get() - 1,
            r.handle()
        ),
    }
}

fn describe_vals(vs: &[Val]) -> String {
    let parts: Vec<String> = vs.iter().map(describe_val).collect();
    format!("[{}]", parts.join(", "))
}

fn describe_nan<T>(p: &NanPattern<T>, bits: impl Fn(&T) -> String) -> String {
    match p {
        NanPattern::CanonicalNan => "nan:canonical".into(),
        NanPattern::ArithmeticNan => "nan:arithmetic".into(),
        NanPattern::Value(v) => bits(v),
    }
}

fn describe_ret(r: &WastRetCore<'_>) -> String {
    let f32s = |f: &F32| format!("{} (0x{:08x})", f32::from_bits(f.bits), f.bits);
    let f64s = |f: &F64| format!("{} (0x{:016x})", f64::from_bits(f.bits), f.bits);
    match r {
        WastRetCore::I32(x) => format!("i32:{x}"),
        WastRetCore::I64(x) => format!("i64:{x}"),
        WastRetCore::F32(p) => format!("f32:{}", describe_nan(p, f32s)),
        WastRetCore::F64(p) => format!("f64:{}", describe_nan(p, f64s)),
        WastRetCore::V128(p) => {
            let lanes: Vec<String> = match p {
                V128Pattern::I8x16(l) => l.iter().map(|x| x.to_string()).collect(),
                V128Pattern::I16x8(l) => l.iter().map(|x| x.to_string()).collect(),
                V128Pattern::I32x4(l) => l.iter().map(|x| x.to_string()).collect(),
                V128Pattern::I64x2(l) => l.iter().map(|x| x.to_string()).collect(),
                V128Pattern::F32x4(l) => l.iter().map(|x| describe_nan(x, f32s)).collect(),
                V128Pattern::F64x2(l) => l.iter().map(|x| describe_nan(x, f64s)).collect(),
            };
            let shape = match p {
                V128Pattern::I8x16(_) => "i8x16",
                V128Pattern::I16x8(_) => "i16x8",
                V128Pattern::I32x4(_) => "i32x4",
                V128Pattern::I64x2(_) => "i64x2",
                V128Pattern::F32x4(_) => "f32x4",
                V128Pattern::F64x2(_) => "f64x2",
            };
            format!("v128 {shape} [{}]", lanes.join(" "))
        }
        WastRetCore::RefNull(None) => "ref.null".into(),
        WastRetCore::RefNull(Some(h)) => match null_type(h) {
            Some(ValType::FuncRef) => "ref.null func".into(),
            Some(_) => "ref.null extern".into(),
            None => format!("ref.null {h:?}"),
        },
        WastRetCore::RefExtern(None) => "ref.extern (any)".into(),
        WastRetCore::RefExtern(Some(n)) => format!("ref.extern {n}"),
        WastRetCore::RefFunc(_) => "ref.func (non-null)".into(),
        WastRetCore::Either(options) => {
            let parts: Vec<String> = options.iter().map(describe_ret).collect();
            format!("either({})", parts.join(" | "))
        }
        other => format!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Running files and reporting
// ---------------------------------------------------------------------------

/// Parses and runs one script.
fn run_file(engine: &Engine, file: &WastFile) -> FileReport {
    let mut report = FileReport::default();
    let text = match std::fs::read_to_string(&file.path) {
        Ok(t) => t,
        Err(e) => {
            report.record((0, 0), Outcome::Fail(format!("cannot read the file: {e}")));
            return report;
        }
    };
    let lines = LineIndex::new(&text);
    let mut lexer = Lexer::new(&text);
    // names.wast deliberately uses bidi control characters in names.
    if file.name.ends_with("/names.wast") {
        lexer.allow_confusing_unicode(true);
    }
    let buffer = match ParseBuffer::new_with_lexer(lexer) {
        Ok(b) => b,
        Err(e) => {
            let loc = lines.locate(e.span());
            report.record(
                loc,
                Outcome::Fail(format!("lexer error: {}", one_line(&e.message()))),
            );
            return report;
        }
    };
    let wast = match parser::parse::<Wast>(&buffer) {
        Ok(w) => w,
        Err(e) => {
            let loc = lines.locate(e.span());
            report.record(
                loc,
                Outcome::Fail(format!("parse error: {}", one_line(&e.message()))),
            );
            return report;
        }
    };
    let mut runner = match Runner::new(engine) {
        Ok(r) => r,
        Err(e) => {
            report.record(
                (0, 0),
                Outcome::Fail(format!(
                    "cannot set up the spectest module: {}",
                    describe_error(&e)
                )),
            );
            return report;
        }
    };
    for directive in wast.directives {
        let loc = lines.locate(directive.span());
        let outcome = run_catching(|| runner.directive(directive));
        report.record(loc, outcome);
    }
    // The script's store (every instance, its stack and memories, and the
    // spectest items) is dropped here, at the end of the script, also inside
    // the panic guard.
    let dropped = run_catching(move || {
        drop(runner);
        Outcome::Pass
    });
    if let Outcome::Fail(reason) = dropped {
        report.record(
            (0, 0),
            Outcome::Fail(format!("dropping the script's instances: {reason}")),
        );
    }
    report
}

/// Prints a file's line and its problems; `known` marks listed failures.
fn print_file_report(name: &str, report: &FileReport, known: Option<&KnownFailures>) {
    println!(
        "{name}: {} passed, {} failed, {} skipped",
        report.passed, report.failed, report.skipped
    );
    let shown = report.problems.len().min(MAX_LISTED_PER_FILE);
    for p in &report.problems[..shown] {
        let mut tag = if p.skipped { "SKIP" } else { "FAIL" }.to_string();
        if !p.skipped && known.is_some_and(|k| k.contains(&format!("{name}:{}", p.line))) {
            tag.push_str(" (known)");
        }
        println!("    {tag} {name}:{}:{}: {}", p.line, p.col, p.reason);
    }
    if report.problems.len() > shown {
        println!("    ... and {} more", report.problems.len() - shown);
    }
}

fn main() -> ExitCode {
    let options = Options::from_env();
    install_panic_hook();

    let (mut files, missing) = find_wast_files(&options.dir);
    if files.is_empty() {
        let banner = "=".repeat(78);
        println!("{banner}");
        println!(
            "SPEC TESTS NOT RUN: no .wast files under {} (looked in {})",
            options.dir.display(),
            SUBDIRS.map(|s| format!("{s}/")).join(", ")
        );
        println!("Set BACKSTOP_SPEC_DIR to the spec-testsuite directory.");
        println!("{banner}");
        if options.ci {
            println!("CI=true: a missing test suite is an error.");
            return ExitCode::FAILURE;
        }
        println!("Skipped everything: the suite was not found.");
        println!("spec: 0 passed, 0 failed, 0 skipped");
        return ExitCode::SUCCESS;
    }
    let mut setup_error = false;
    for sub in &missing {
        println!(
            "WARNING: {}/{sub} is missing; running the other files only",
            options.dir.display()
        );
        setup_error |= options.ci;
    }
    if let Some(filter) = &options.filter {
        files.retain(|f| f.name.contains(filter.as_str()));
        println!(
            "BACKSTOP_SPEC_FILTER={filter:?}: running {} file(s)",
            files.len()
        );
    }

    let known = match KnownFailures::load() {
        Ok(k) => k,
        Err(e) => {
            println!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match &known {
        None => println!("mode: strict ({KNOWN_FAILURES_FILE} absent): any failure fails the test"),
        Some(k) => println!(
            "mode: ratchet ({} entries in {}): listed failures are tolerated, \
             unlisted failures and stale entries fail the test",
            k.entries.len(),
            k.path.display()
        ),
    }

    let engine = Engine::default();
    let started = Instant::now();
    let (mut passed, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    let mut unexpected: Vec<String> = Vec::new();
    let mut stale: Vec<String> = Vec::new();
    for file in &files {
        let report = run_file(&engine, file);
        print_file_report(&file.name, &report, known.as_ref());
        passed += report.passed;
        failed += report.failed;
        skipped += report.skipped;
        if let Some(k) = &known {
            let failing: BTreeSet<String> = report
                .failed_lines()
                .map(|line| format!("{}:{line}", file.name))
                .collect();
            unexpected.extend(failing.iter().filter(|key| !k.contains(key)).cloned());
            stale.extend(
                k.entries_for(&file.name)
                    .filter(|e| !failing.contains(*e))
                    .cloned(),
            );
        }
    }
    // Entries for files that no longer exist are stale too (unless filtered
    // out of this run).
    if let Some(k) = &known {
        for entry in &k.entries {
            let file = entry.rsplit_once(':').map_or("", |(f, _)| f);
            let selected = match &options.filter {
                Some(filter) => file.contains(filter.as_str()),
                None => true,
            };
            if selected && !files.iter().any(|wf| wf.name == file) {
                stale.push(entry.clone());
            }
        }
    }

    let mut verdict = String::new();
    let ok = match &known {
        None => failed == 0,
        Some(k) => {
            let list = k.path.display();
            if !unexpected.is_empty() {
                let _ = writeln!(
                    verdict,
                    "{} failure(s) not in {list}: {}",
                    unexpected.len(),
                    unexpected.join(" ")
                );
            }
            if !stale.is_empty() {
                let _ = writeln!(
                    verdict,
                    "{} stale entr(y/ies) in {list} (now passing or gone; remove them): {}",
                    stale.len(),
                    stale.join(" ")
                );
            }
            unexpected.is_empty() && stale.is_empty()
        }
    };
    print!("{verdict}");
    println!(
        "spec: ran {} file(s) in {:.1}s",
        files.len(),
        started.elapsed().as_secs_f64()
    );
    println!("spec: {passed} passed, {failed} failed, {skipped} skipped");

    // Again, with the compiler closing every loop it can (`loop_exits`
    // normally closes only loops under register pressure, which the spec
    // modules rarely have) and Cranelift's verifier checking every function
    // after the passes: that must not change any result.
    let mut config = backstop::Config::new();
    config.loop_closing_threshold(0).verify_compiled_code(true);
    let every_loop_closed = Engine::new(&config).expect("engine");
    let (mut passed_closed, mut failed_closed) = (0usize, 0usize);
    for file in &files {
        let report = run_file(&every_loop_closed, file);
        passed_closed += report.passed;
        failed_closed += report.failed;
    }
    println!(
        "spec, every loop closed and verified: {passed_closed} passed, {failed_closed} failed \
         (must equal the run above)"
    );
    let same = (passed_closed, failed_closed) == (passed, failed);
    if !same {
        println!("the loop-closing pass changed results");
    }

    // Again, for the instruction-set baseline (x86-64: SSE2 only): other
    // lowerings for SIMD and bit counting, and float rounding and `pshufb`
    // through Backstop's own libcalls.
    let mut config = backstop::Config::new();
    config.native_cpu_features(false);
    let baseline = Engine::new(&config).expect("engine");
    let (mut passed_baseline, mut failed_baseline) = (0usize, 0usize);
    for file in &files {
        let report = run_file(&baseline, file);
        passed_baseline += report.passed;
        failed_baseline += report.failed;
        for problem in report.problems.iter().take(3) {
            println!("baseline: {}: {problem:?}", file.path.display());
        }
    }
    println!(
        "spec, baseline CPU features: {passed_baseline} passed, {failed_baseline} failed \
         (must equal the first run)"
    );
    let same_on_baseline = (passed_baseline, failed_baseline) == (passed, failed);
    if !same_on_baseline {
        println!("compiling for the baseline CPU changed results");
    }
    if ok && same && same_on_baseline && !setup_error {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
