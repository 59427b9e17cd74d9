//! `backstop-fuzz`: runs seeded campaigns of the fuzzing targets in worker
//! processes (`campaign`), reproduces one case (`case`), checks a saved
//! module (`check`), shrinks a failing one (`reduce`), and is its own worker (`worker`, used by `campaign`).
//! Exit status: 0 when nothing was found, 1 when something was, 2 for bad
//! usage.

use backstop_fuzz::campaign::{self, FindingKind, Options};
use backstop_fuzz::{Target, Verdict};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "backstop-fuzz",
    about = "Fuzzing and differential testing of Backstop"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run many cases of one or every target in worker processes.
    Campaign {
        /// compile, run, differential, config, targeted, endings, or all
        /// (comma-separated).
        #[arg(long, default_value = "all")]
        target: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Cases per target.
        #[arg(long)]
        cases: Option<u64>,
        /// Time per target, in seconds.
        #[arg(long)]
        seconds: Option<u64>,
        /// Worker processes at once.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        /// Seconds one case may take before it counts as a hang.
        #[arg(long, default_value_t = 20)]
        case_timeout: u64,
        /// Where findings are saved (default: target/fuzz-findings).
        #[arg(long)]
        findings: Option<PathBuf>,
    },
    /// Run one case in this process and print its verdict.
    Case {
        #[arg(long)]
        target: String,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        index: u64,
        /// Also write the case's module here.
        #[arg(long)]
        save: Option<PathBuf>,
        /// Print what Backstop and the oracle did, line by line.
        #[arg(long)]
        trace: bool,
    },
    /// Check a saved module (.wasm or .wat) with a target's check.
    Check {
        #[arg(long)]
        target: String,
        file: PathBuf,
    },
    /// Shrink a module that fails a target's check to a small one that
    /// fails the same way; writes OUT.wasm and, where it prints, OUT.wat.
    Reduce {
        #[arg(long)]
        target: String,
        file: PathBuf,
        /// Where to write (without extension; default: FILE.reduced).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Seconds one candidate may take before it counts as a hang.
        #[arg(long, default_value_t = 20)]
        case_timeout: u64,
        /// How many failed shrink attempts in a row end the reduction.
        #[arg(long, default_value_t = 1000)]
        attempts: u32,
    },
    /// (Internal) run cases FROM..TO for `campaign`.
    #[command(hide = true)]
    Worker {
        target: String,
        seed: u64,
        from: u64,
        to: u64,
    },
}

fn target(name: &str) -> Result<Target, String> {
    Target::from_name(name).ok_or_else(|| {
        format!(
            "unknown target `{name}`: use compile, run, differential, config, targeted or endings"
        )
    })
}

/// A module file: binary as it is (even damaged), text compiled.
fn read_module(file: &std::path::Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    if bytes.starts_with(b"\0") || std::str::from_utf8(&bytes).is_err() {
        return Ok(bytes);
    }
    wat::parse_bytes(&bytes)
        .map(|m| m.into_owned())
        .map_err(|e| format!("{}: {e}", file.display()))
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// Ok(true) when nothing was found.
fn run(command: Command) -> Result<bool, String> {
    match command {
        Command::Campaign {
            target: names,
            seed,
            cases,
            seconds,
            jobs,
            case_timeout,
            findings,
        } => {
            let targets = if names == "all" {
                Target::ALL.to_vec()
            } else {
                names
                    .split(',')
                    .map(target)
                    .collect::<Result<Vec<_>, _>>()?
            };
            if cases.is_none() && seconds.is_none() {
                return Err("give --cases or --seconds (or both)".into());
            }
            let worker = std::env::current_exe().map_err(|e| e.to_string())?;
            let mut clean = true;
            for target in targets {
                let summary = campaign::run(Options {
                    target,
                    seed,
                    cases,
                    time: seconds.map(Duration::from_secs),
                    jobs,
                    case_timeout: Duration::from_secs(case_timeout),
                    findings_dir: findings
                        .clone()
                        .unwrap_or_else(campaign::default_findings_dir),
                    worker: worker.clone(),
                });
                println!(
                    "campaign {}: seed {}, {} cases ({} passed, {} skipped), {} findings, {:.1} s, {:.1} cases/s",
                    summary.target,
                    summary.seed,
                    summary.cases,
                    summary.passed,
                    summary.skipped,
                    summary.findings.len(),
                    summary.elapsed.as_secs_f64(),
                    summary.cases_per_second()
                );
                for finding in &summary.findings {
                    let what = match &finding.kind {
                        FindingKind::Check(message) => message.clone(),
                        FindingKind::Crash(status) => format!("the worker crashed ({status})"),
                        FindingKind::Hang => format!("no verdict within {case_timeout} s"),
                    };
                    println!(
                        "  finding: case {} ({}): {what}",
                        finding.index,
                        finding
                            .saved
                            .as_ref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_else(|| "no module".into())
                    );
                }
                clean &= summary.findings.is_empty();
            }
            Ok(clean)
        }
        Command::Case {
            target: name,
            seed,
            index,
            save,
            trace,
        } => {
            let target = target(&name)?;
            let input = backstop_fuzz::generate::case_bytes(seed, index);
            if let (true, Some(module)) = (trace, backstop_fuzz::case_module(target, &input)) {
                let (backstop, oracle) = backstop_fuzz::traces(&module)?;
                for (side, t) in [("backstop", &backstop), ("oracle", &oracle)] {
                    println!("{side}:");
                    for line in &t.lines {
                        println!("  {line}");
                    }
                    if let Some(why) = &t.inconclusive {
                        println!("  (stopped: {why})");
                    }
                }
            }
            if let (Some(path), Some(module)) = (&save, backstop_fuzz::case_module(target, &input))
            {
                std::fs::write(path, module).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            let verdict = backstop_fuzz::run_case(target, seed, index);
            println!("{target} seed {seed} case {index}: {verdict:?}");
            Ok(!matches!(verdict, Verdict::Finding(_)))
        }
        Command::Check { target: name, file } => {
            let target = target(&name)?;
            let module = read_module(&file)?;
            let verdict = backstop_fuzz::check_module(target, &module);
            println!("{target} {}: {verdict:?}", file.display());
            Ok(!matches!(verdict, Verdict::Finding(_)))
        }
        Command::Reduce {
            target: name,
            file,
            output,
            case_timeout,
            attempts,
        } => {
            let target = target(&name)?;
            let module = read_module(&file)?;
            let worker = std::env::current_exe().map_err(|e| e.to_string())?;
            let reduced = backstop_fuzz::reduce::reduce(
                &worker,
                target,
                module,
                Duration::from_secs(case_timeout),
                attempts,
            )?;
            let stem = output.unwrap_or_else(|| file.with_extension("reduced"));
            let wasm = stem.with_extension("wasm");
            std::fs::write(&wasm, &reduced.module)
                .map_err(|e| format!("{}: {e}", wasm.display()))?;
            println!(
                "{:?} kept: {} bytes -> {} bytes after {} candidates; wrote {}",
                reduced.outcome,
                reduced.original_size,
                reduced.module.len(),
                reduced.candidates,
                wasm.display()
            );
            if let Some(text) = backstop_fuzz::reduce::to_wat(&reduced.module) {
                let wat = stem.with_extension("wat");
                std::fs::write(&wat, &text).map_err(|e| format!("{}: {e}", wat.display()))?;
                println!("{}:\n{text}", wat.display());
            }
            Ok(true)
        }
        Command::Worker {
            target: name,
            seed,
            from,
            to,
        } => {
            campaign::work(target(&name)?, seed, from, to);
            Ok(true)
        }
    }
}
