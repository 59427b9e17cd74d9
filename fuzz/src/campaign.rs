//! Campaigns: many cases of one target, run by worker processes (this same
//! executable, `backstop-fuzz worker`), so that a case that crashes or hangs
//! its process is caught, counted and saved, and the campaign goes on with
//! the next case in a fresh worker.
//!
//! The protocol: a worker runs cases `from..to` and writes one line before
//! each (`start I`) and one after (`pass I`, `skip I why`, `finding I
//! what`), flushed each time. The parent reads them with a deadline per
//! case:
//!
//! | the parent sees | it concludes | it does |
//! |---|---|---|
//! | `pass`/`skip`/`finding` | the case ran | counts it; a finding is saved |
//! | no line within `case_timeout` after `start I` | case I hangs | kills the worker, saves I, goes on from I+1 |
//! | end of output after `start I` | case I crashed the worker | saves I with the exit status, goes on from I+1 |
//! | end of output after a verdict | the worker finished its range | takes the next range |

use crate::{case_module, generate, Target};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

/// What a campaign runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub target: Target,
    pub seed: u64,
    /// Stop after this many cases...
    pub cases: Option<u64>,
    /// ...or after this long, whichever comes first.
    pub time: Option<Duration>,
    /// Worker processes at once.
    pub jobs: usize,
    /// How long one case may take before it counts as a hang.
    pub case_timeout: Duration,
    /// Where findings are saved (`<target>-<seed>-<index>.wasm` and `.txt`).
    pub findings_dir: PathBuf,
    /// The worker executable (this program).
    pub worker: PathBuf,
}

/// How a finding showed itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FindingKind {
    /// The check reported it (a panic, a wrong verdict, a difference).
    Check(String),
    /// The worker process died during the case.
    Crash(String),
    /// The case did not finish within the case timeout.
    Hang,
}

#[derive(Clone, Debug)]
pub struct Finding {
    pub index: u64,
    pub kind: FindingKind,
    /// The module saved for it, if the case made one.
    pub saved: Option<PathBuf>,
}

/// A finished campaign.
#[derive(Debug)]
pub struct Summary {
    pub target: Target,
    pub seed: u64,
    pub cases: u64,
    pub passed: u64,
    pub skipped: u64,
    pub findings: Vec<Finding>,
    pub elapsed: Duration,
}

impl Summary {
    pub fn cases_per_second(&self) -> f64 {
        self.cases as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Cases a worker takes at a time: small enough that a time-limited
/// campaign ends close to its limit.
const RANGE: u64 = 25;

struct Shared {
    options: Options,
    next: AtomicU64,
    deadline: Option<Instant>,
    results: Mutex<(u64, u64, u64, Vec<Finding>)>,
}

impl Shared {
    /// The next range of cases, or `None` when the campaign is over.
    fn take_range(&self) -> Option<(u64, u64)> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let limit = self.options.cases.unwrap_or(u64::MAX);
        let from = self.next.fetch_add(RANGE, Ordering::SeqCst);
        (from < limit).then(|| (from, (from + RANGE).min(limit)))
    }

    fn record(&self, line: &str) {
        let mut results = self.results.lock().unwrap();
        results.0 += 1;
        if line.starts_with("pass ") {
            results.1 += 1;
        } else if line.starts_with("skip ") {
            results.2 += 1;
        }
    }

    fn found(&self, index: u64, kind: FindingKind) {
        let saved = save(&self.options, index, &kind);
        let mut results = self.results.lock().unwrap();
        if !matches!(kind, FindingKind::Check(_)) {
            results.0 += 1; // the case that crashed or hung counts as run
        }
        results.3.push(Finding { index, kind, saved });
    }
}

/// Saves the module of case `index` and what went wrong beside it.
fn save(options: &Options, index: u64, kind: &FindingKind) -> Option<PathBuf> {
    let input = generate::case_bytes(options.seed, index);
    std::fs::create_dir_all(&options.findings_dir).ok()?;
    let stem = format!("{}-{}-{index}", options.target, options.seed);
    let saved = case_module(options.target, &input).and_then(|module| {
        let path = options.findings_dir.join(format!("{stem}.wasm"));
        std::fs::write(&path, &module).ok().map(|()| path)
    });
    let text = format!(
        "target {}\nseed {}\ncase {index}\n{kind:?}\nreproduce: backstop-fuzz case --target {} --seed {} --index {index}\n",
        options.target, options.seed, options.target, options.seed
    );
    std::fs::write(options.findings_dir.join(format!("{stem}.txt")), text).ok()?;
    saved
}

fn spawn(options: &Options, from: u64, to: u64) -> std::io::Result<Child> {
    Command::new(&options.worker)
        .args([
            "worker",
            options.target.name(),
            &options.seed.to_string(),
            &from.to_string(),
            &to.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
}

/// Runs cases `from..to` in workers until all have an outcome.
fn run_range(shared: &Shared, mut from: u64, to: u64) {
    while from < to {
        let mut child = match spawn(&shared.options, from, to) {
            Ok(child) => child,
            Err(e) => panic!(
                "cannot start a worker ({}): {e}",
                shared.options.worker.display()
            ),
        };
        let stdout = child.stdout.take().expect("piped");
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut running: Option<u64> = None;
        loop {
            match lines_rx.recv_timeout(shared.options.case_timeout) {
                Ok(line) => {
                    let index = line
                        .split(' ')
                        .nth(1)
                        .and_then(|i| i.parse::<u64>().ok())
                        .unwrap_or(from);
                    if line.starts_with("start ") {
                        running = Some(index);
                        continue;
                    }
                    running = None;
                    from = index + 1;
                    if let Some(message) = line.strip_prefix(&format!("finding {index} ")) {
                        shared.found(index, FindingKind::Check(message.to_string()));
                    }
                    shared.record(&line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let index = running.unwrap_or(from);
                    shared.found(index, FindingKind::Hang);
                    from = index + 1;
                    break;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                    if let Some(index) = running {
                        shared.found(index, FindingKind::Crash(status));
                        from = index + 1;
                    } else if from < to {
                        // Exited between cases without finishing its range:
                        // count the next case as the one that killed it.
                        shared.found(from, FindingKind::Crash(status));
                        from += 1;
                    }
                    break;
                }
            }
        }
        let _ = reader.join();
    }
}

/// Runs a campaign and returns its summary.
pub fn run(options: Options) -> Summary {
    let started = Instant::now();
    let shared = Shared {
        deadline: options.time.map(|t| started + t),
        next: AtomicU64::new(0),
        results: Mutex::new((0, 0, 0, Vec::new())),
        options,
    };
    std::thread::scope(|s| {
        for _ in 0..shared.options.jobs.max(1) {
            s.spawn(|| {
                while let Some((from, to)) = shared.take_range() {
                    run_range(&shared, from, to);
                }
            });
        }
    });
    let (cases, passed, skipped, mut findings) = shared.results.into_inner().unwrap();
    findings.sort_by_key(|f| f.index);
    Summary {
        target: shared.options.target,
        seed: shared.options.seed,
        cases,
        passed,
        skipped,
        findings,
        elapsed: started.elapsed(),
    }
}

/// Cases the self-test makes crash or hang (`BACKSTOP_FUZZ_SELF_TEST`:
/// `crash=I,hang=J`), to test that the parent catches both.
fn self_test_fault(index: u64) {
    let Ok(spec) = std::env::var("BACKSTOP_FUZZ_SELF_TEST") else {
        return;
    };
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("crash", i)) if i.parse() == Ok(index) => std::process::abort(),
            Some(("hang", i)) if i.parse() == Ok(index) => loop {
                std::thread::sleep(Duration::from_secs(1));
            },
            _ => {}
        }
    }
}

/// The worker's side: runs cases `from..to`, one line before and after each.
pub fn work(target: Target, seed: u64, from: u64, to: u64) {
    let stdout = std::io::stdout();
    for index in from..to {
        {
            let mut out = stdout.lock();
            let _ = writeln!(out, "start {index}");
            let _ = out.flush();
        }
        self_test_fault(index);
        let line = match crate::run_case(target, seed, index) {
            crate::Verdict::Pass => format!("pass {index}"),
            crate::Verdict::Skip(why) => format!("skip {index} {}", one_line(&why)),
            crate::Verdict::Finding(what) => format!("finding {index} {}", one_line(&what)),
        };
        let mut out = stdout.lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

fn one_line(text: &str) -> String {
    text.replace('\n', " | ")
}

/// Where findings go unless told otherwise: the target directory, outside
/// the sources (a finding worth keeping is reduced and moved to
/// `fuzz/regressions/`).
pub fn default_findings_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-findings")
}
