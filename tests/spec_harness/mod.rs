//! The WebAssembly specification test harness shared by `tests/spec.rs`
//! (the Wasm 2.0 suite) and `tests/spec3.rs` (the Wasm 3.0 suite). It finds
//! every `.wast` script of a suite, parses it with `wast` 263, runs every
//! directive against the public `backstop` API (Engine, Module, Linker,
//! Store, Instance), and reports per-file and total counts. It uses nothing
//! but the public API and contains no `unsafe`.
//!
//! Where things are:
//! - this file: the suite description (`Suite`), where it lives
//!   (`Options`), discovery (`find_wast_files`), the known-failures ratchet
//!   (`KnownFailures`), results (`Outcome`, `FileReport`), panics inside
//!   directives, and running files and whole suites (`run_file`,
//!   `run_suite`, `rerun`);
//! - `runner.rs`: the script interpreter (`Runner`), one per `.wast` file,
//!   with one store holding every instance of the script (`register` links
//!   instances, and linked instances must share a store) and the `spectest`
//!   host items, one method per directive kind, and trap-message matching;
//! - `values.rs`: script arguments to `Val`, matching results (NaN
//!   patterns, v128 lanes, references), and descriptions for failure
//!   reasons.
//!
//! Environment (`Suite::dir_var` names the first):
//! - `BACKSTOP_SPEC_DIR` / `BACKSTOP_SPEC3_DIR`: the suite's directory
//!   (default `$CARGO_MANIFEST_DIR/../shared/spec-testsuite` and
//!   `.../spec-testsuite-3.0`);
//! - `BACKSTOP_SPEC_FILTER=substring`: run only the files whose relative path
//!   (e.g. `core/i32.wast`) contains the substring;
//! - `CI=true`: a missing suite is an error rather than a skip.
//!
//! Known failures: if the suite's list exists (lines `core/foo.wast:LINE`,
//! `#` comments allowed), listed failures still count as failures but do
//! not fail the test; a listed entry that now passes (or no longer exists)
//! does fail it, so the list can only shrink. `BACKSTOP_SPEC_UPDATE_KNOWN=1`
//! rewrites the list with this run's failures (review the diff: it must
//! only lose lines).

pub(crate) mod runner;
pub(crate) mod values;

use backstop::Engine;
use runner::Runner;
use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;
use values::{describe_error, one_line};
use wast::lexer::Lexer;
use wast::parser::{self, ParseBuffer};
use wast::token::Span;
use wast::Wast;

/// One spec suite: where it lives and how its results are judged.
pub(crate) struct Suite {
    /// The name on the totals line (`spec`, `spec3`).
    pub(crate) label: &'static str,
    /// The environment variable that overrides `default_dir`.
    pub(crate) dir_var: &'static str,
    /// Relative to `CARGO_MANIFEST_DIR`.
    pub(crate) default_dir: &'static str,
    /// The subdirectories holding `.wast` files, run in this order.
    pub(crate) subdirs: &'static [&'static str],
    /// The known-failures list, relative to `CARGO_MANIFEST_DIR`.
    pub(crate) known_failures: &'static str,
    /// Wasm 3.0 rules: a module the validator calls invalid must be
    /// `Error::Invalid` (under 2.0 a module needing a later proposal may be
    /// refused as `Unsupported` instead), and a module refused as
    /// `Error::Unsupported` naming GC counts as "unsupported", as does every
    /// directive that needed it.
    pub(crate) wasm3: bool,
}

/// Failing directives listed per file before "... and N more".
const MAX_LISTED_PER_FILE: usize = 20;

// ---------------------------------------------------------------------------
// Configuration and discovery
// ---------------------------------------------------------------------------

pub(crate) struct Options {
    pub(crate) dir: PathBuf,
    pub(crate) filter: Option<String>,
    pub(crate) ci: bool,
}

impl Options {
    pub(crate) fn from_env(suite: &Suite) -> Options {
        let dir = match std::env::var_os(suite.dir_var) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => Path::new(env!("CARGO_MANIFEST_DIR")).join(suite.default_dir),
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
pub(crate) struct WastFile {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
}

/// Every `.wast` in the suite's subdirectories, each sorted by name. Returns
/// the subdirectories that are missing as the second element.
pub(crate) fn find_wast_files(suite: &Suite, dir: &Path) -> (Vec<WastFile>, Vec<String>) {
    let mut files = Vec::new();
    let mut missing = Vec::new();
    for sub in suite.subdirs {
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
pub(crate) struct KnownFailures {
    pub(crate) path: PathBuf,
    pub(crate) entries: BTreeSet<String>,
}

impl KnownFailures {
    /// Reads the list if it exists. A malformed line is an error.
    /// `BACKSTOP_SPEC_KNOWN_FAILURES` (`..._SPEC3_...`) overrides the path.
    pub(crate) fn load(suite: &Suite) -> Result<Option<KnownFailures>, String> {
        let var = format!("BACKSTOP_{}_KNOWN_FAILURES", suite.label.to_uppercase());
        let path = match std::env::var_os(var) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => Path::new(env!("CARGO_MANIFEST_DIR")).join(suite.known_failures),
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

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.entries.contains(key)
    }

    /// The entries of the given files.
    pub(crate) fn entries_for<'a>(
        &'a self,
        file: &'a str,
    ) -> impl Iterator<Item = &'a String> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.rsplit_once(':').is_some_and(|(f, _)| f == file))
    }
}

// ---------------------------------------------------------------------------
// Results of directives and files
// ---------------------------------------------------------------------------

/// What one directive came to.
pub(crate) enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
    /// Refused because it needs GC (Wasm 3.0 suite only): counted, not
    /// listed.
    Unsupported,
}

/// A directive that did not pass, with where it is.
#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) line: usize,
    pub(crate) col: usize,
    pub(crate) reason: String,
    pub(crate) skipped: bool,
}

#[derive(Default)]
pub(crate) struct FileReport {
    pub(crate) passed: usize,
    pub(crate) failed: usize,
    pub(crate) skipped: usize,
    pub(crate) unsupported: usize,
    pub(crate) problems: Vec<Problem>,
}

impl FileReport {
    pub(crate) fn record(&mut self, (line, col): (usize, usize), outcome: Outcome) {
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
            Outcome::Unsupported => self.unsupported += 1,
        }
    }

    /// Line numbers of the failed directives.
    pub(crate) fn failed_lines(&self) -> impl Iterator<Item = usize> + '_ {
        self.problems.iter().filter(|p| !p.skipped).map(|p| p.line)
    }
}

/// Maps byte offsets of a script to 1-based line and column numbers.
pub(crate) struct LineIndex {
    pub(crate) starts: Vec<usize>,
}

impl LineIndex {
    pub(crate) fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    pub(crate) fn locate(&self, span: Span) -> (usize, usize) {
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
pub(crate) fn install_panic_hook() {
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
pub(crate) fn run_catching(f: impl FnOnce() -> Outcome) -> Outcome {
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
// Running files and reporting
// ---------------------------------------------------------------------------

/// Parses and runs one script.
pub(crate) fn run_file(suite: &Suite, engine: &Engine, file: &WastFile) -> FileReport {
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
    let mut runner = match Runner::new(engine, suite.wasm3) {
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
pub(crate) fn print_file_report(name: &str, report: &FileReport, known: Option<&KnownFailures>) {
    println!(
        "{name}: {} passed, {} failed, {} skipped{}",
        report.passed,
        report.failed,
        report.skipped,
        if report.unsupported > 0 {
            format!(", {} unsupported (GC)", report.unsupported)
        } else {
            String::new()
        }
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

/// Counts over a whole suite.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) passed: usize,
    pub(crate) failed: usize,
    pub(crate) skipped: usize,
    pub(crate) unsupported: usize,
}

impl Totals {
    fn add(&mut self, report: &FileReport) {
        self.passed += report.passed;
        self.failed += report.failed;
        self.skipped += report.skipped;
        self.unsupported += report.unsupported;
    }
}

/// The result of `run_suite`.
pub(crate) struct SuiteRun {
    /// False if anything failed that the known-failures list does not
    /// allow, or (under `CI=true`) part of the suite is missing.
    pub(crate) ok: bool,
    // `totals`, `files` and `rerun` serve tests/spec.rs's extra runs;
    // tests/spec3.rs, which includes this module too, does not rerun.
    #[allow(dead_code)]
    pub(crate) totals: Totals,
    /// The files that ran, for `rerun`.
    #[allow(dead_code)]
    pub(crate) files: Vec<WastFile>,
}

/// Runs every file of `suite` with `engine`, prints each file's report and
/// then the totals line (`spec: N passed, M failed, K skipped`; the Wasm
/// 3.0 suite adds `, G unsupported`).
pub(crate) fn run_suite(suite: &Suite, engine: &Engine) -> SuiteRun {
    let options = Options::from_env(suite);
    install_panic_hook();
    let label = suite.label;
    let totals_line = |t: &Totals| {
        if suite.wasm3 {
            format!(
                "{label}: {} passed, {} failed, {} skipped, {} unsupported",
                t.passed, t.failed, t.skipped, t.unsupported
            )
        } else {
            format!(
                "{label}: {} passed, {} failed, {} skipped",
                t.passed, t.failed, t.skipped
            )
        }
    };

    let (mut files, missing) = find_wast_files(suite, &options.dir);
    if files.is_empty() {
        let banner = "=".repeat(78);
        println!("{banner}");
        println!(
            "SPEC TESTS NOT RUN: no .wast files under {} (looked in {})",
            options.dir.display(),
            suite
                .subdirs
                .iter()
                .map(|s| format!("{s}/"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!("Set {} to the suite's directory.", suite.dir_var);
        println!("{banner}");
        if options.ci {
            println!("CI=true: a missing test suite is an error.");
            return SuiteRun {
                ok: false,
                totals: Totals::default(),
                files,
            };
        }
        println!("Skipped everything: the suite was not found.");
        println!("{}", totals_line(&Totals::default()));
        return SuiteRun {
            ok: true,
            totals: Totals::default(),
            files,
        };
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

    let known = match KnownFailures::load(suite) {
        Ok(k) => k,
        Err(e) => {
            println!("error: {e}");
            return SuiteRun {
                ok: false,
                totals: Totals::default(),
                files,
            };
        }
    };
    match &known {
        None => println!(
            "mode: strict ({} absent): any failure fails the test",
            suite.known_failures
        ),
        Some(k) => println!(
            "mode: ratchet ({} entries in {}): listed failures are tolerated, \
             unlisted failures and stale entries fail the test",
            k.entries.len(),
            k.path.display()
        ),
    }

    let started = Instant::now();
    let mut totals = Totals::default();
    let mut all_failing: Vec<String> = Vec::new();
    let mut unexpected: Vec<String> = Vec::new();
    let mut stale: Vec<String> = Vec::new();
    for file in &files {
        let report = run_file(suite, engine, file);
        print_file_report(&file.name, &report, known.as_ref());
        totals.add(&report);
        let failing: BTreeSet<String> = report
            .failed_lines()
            .map(|line| format!("{}:{line}", file.name))
            .collect();
        all_failing.extend(failing.iter().cloned());
        if let Some(k) = &known {
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

    if std::env::var_os("BACKSTOP_SPEC_UPDATE_KNOWN").is_some_and(|v| v == "1") {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(suite.known_failures);
        let mut text = format!(
            "# Known failures of the {label} suite: `file:line` of each failing directive.\n\
             # Written by `BACKSTOP_SPEC_UPDATE_KNOWN=1 cargo test --release --test {label}`;\n\
             # the test fails on a failure not listed here and on an entry that passes.\n"
        );
        for key in &all_failing {
            let _ = writeln!(text, "{key}");
        }
        match std::fs::write(&path, text) {
            Ok(()) => println!("wrote {} entries to {}", all_failing.len(), path.display()),
            Err(e) => println!("cannot write {}: {e}", path.display()),
        }
    }

    let mut verdict = String::new();
    let ok = match &known {
        None => totals.failed == 0,
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
        "{label}: ran {} file(s) in {:.1}s",
        files.len(),
        started.elapsed().as_secs_f64()
    );
    println!("{}", totals_line(&totals));
    SuiteRun {
        ok: ok && !setup_error,
        totals,
        files,
    }
}

/// Runs `files` again with another engine, printing only the problems of
/// each file that has any; returns the totals.
#[allow(dead_code)]
pub(crate) fn rerun(suite: &Suite, engine: &Engine, files: &[WastFile], what: &str) -> Totals {
    let mut totals = Totals::default();
    for file in files {
        let report = run_file(suite, engine, file);
        totals.add(&report);
        for problem in report.problems.iter().filter(|p| !p.skipped).take(3) {
            println!("{what}: {}:{}: {}", file.name, problem.line, problem.reason);
        }
    }
    totals
}
