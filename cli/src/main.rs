//! The `backstop` command: runs WASI programs (`backstop run prog.wasm
//! args...`) or a plain export (`--invoke`), and compiles modules to check
//! them (`backstop compile`). Exit status: the guest's exit code; 134 when
//! the guest traps; 124 when `--timeout` stops it; 1 for any other error
//! (bad module, missing import, ...); 2 for bad command-line usage.

use backstop::wasi::{WasiCtx, WasiCtxBuilder};
use backstop::{Config, Engine, Error, Linker, Module, Val, ValType};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Exit status when the guest traps.
const EXIT_TRAP: u8 = 134;
/// Exit status when `--timeout` stops the guest (as `timeout(1)` does).
const EXIT_TIMEOUT: u8 = 124;
/// Exit status for any other error.
const EXIT_ERROR: u8 = 1;

#[derive(Parser)]
#[command(
    name = "backstop",
    version,
    about = "Run WebAssembly with Backstop: every host destructor runs, however a guest ends",
    after_help = "Exit status: the guest's exit code (proc_exit or _start's return), \
                  134 if the guest traps, 124 if --timeout stops it, 1 for other errors."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a WASI program (its `_start`), or call one export with --invoke.
    Run(RunArgs),
    /// Validate and compile a module; report its function count and the
    /// compile time.
    Compile {
        /// The module: a .wasm binary or .wat text.
        file: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Give the guest a host directory: HOST, or HOST::GUEST to name it
    /// differently inside the guest (default: the same path). Repeatable.
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,
    /// Set an environment variable for the guest. Repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    envs: Vec<String>,
    /// Call this export instead of running `_start`; ARGS are its
    /// arguments, parsed by the export's parameter types; results are
    /// printed one per line.
    #[arg(long, value_name = "FUNC")]
    invoke: Option<String>,
    /// Stop the guest after this long, e.g. 500ms, 10s, 2m (plain numbers
    /// are seconds). Exits with status 124.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// The most linear memory the guest may have, e.g. 64M, 1G, 65536
    /// (bytes; K, M, G suffixes are powers of 1024).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_memory: Option<u64>,
    /// Guest stack size for Wasm code, e.g. 512K, 8M.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    stack_size: Option<u64>,
    /// Compile with interrupt checks at loop headers and function entries:
    /// --timeout then stops the guest at its next check, without a signal.
    /// About 5% slower on tight loops. Without them (the default),
    /// --timeout interrupts the guest with a signal (SIGURG).
    #[arg(long)]
    interrupt_checks: bool,
    /// The module: a .wasm binary or .wat text.
    file: PathBuf,
    /// Arguments for the program (or the invoked export).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try 500ms, 10s, 2m)"))?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("`{text}` is not a duration"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, scale) = match text.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&text[..text.len() - 1], 1u64 << 10),
        Some('M') => (&text[..text.len() - 1], 1 << 20),
        Some('G') => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    number
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("`{text}` is not a size (try 64M, 1G, 65536)"))
}

/// What a run ended with, as an exit status.
enum Ending {
    Exit(u32),
    Trap(Error),
    Timeout,
    Failed(Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ending = match cli.command {
        Command::Compile { file } => compile(&file),
        Command::Run(args) => run(args),
    };
    match ending {
        Ending::Exit(code) => ExitCode::from((code & 0xff) as u8),
        Ending::Trap(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_TRAP)
        }
        Ending::Timeout => {
            eprintln!("error: the guest was stopped by --timeout");
            ExitCode::from(EXIT_TIMEOUT)
        }
        Ending::Failed(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn read_module(engine: &Engine, file: &PathBuf) -> Result<Module, Error> {
    let bytes = std::fs::read(file)
        .map_err(|e| Error::msg(format!("cannot read {}: {e}", file.display())))?;
    Module::new(engine, bytes)
}

fn compile(file: &PathBuf) -> Ending {
    let engine = Engine::default();
    let started = Instant::now();
    match read_module(&engine, file) {
        Ok(module) => {
            println!(
                "{}: {} functions, compiled in {:.1} ms ({:.1} ms including reading)",
                file.display(),
                module.function_count(),
                module.compile_time().as_secs_f64() * 1e3,
                started.elapsed().as_secs_f64() * 1e3
            );
            Ending::Exit(0)
        }
        Err(error) => Ending::Failed(error),
    }
}

struct State {
    wasi: WasiCtx,
}

fn wasi_context(args: &RunArgs) -> Result<WasiCtx, Error> {
    let program = args.file.display().to_string();
    let mut builder = WasiCtxBuilder::new()
        .arg(program)
        .args(&args.args)
        .inherit_stdio();
    for pair in &args.envs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| Error::msg(format!("--env {pair}: expected KEY=VALUE")))?;
        builder = builder.env(key, value);
    }
    for dir in &args.dirs {
        let (host, guest) = dir.split_once("::").unwrap_or((dir, dir));
        builder = builder.preopened_dir(host, guest)?;
    }
    Ok(builder.build())
}

fn run(args: RunArgs) -> Ending {
    let mut config = Config::new();
    if let Some(bytes) = args.max_memory {
        config.max_memory_pages((bytes / 65536).min(65536) as u32);
    }
    if let Some(bytes) = args.stack_size {
        config.stack_size(bytes as usize);
    }
    config.interrupt_checks(args.interrupt_checks);
    let result = (|| -> Result<Ending, Error> {
        let engine = Engine::new(&config)?;
        let module = read_module(&engine, &args.file)?;
        let mut linker: Linker<State> = Linker::new(&engine);
        backstop::wasi::add_to_linker(&mut linker, |state: &mut State| &mut state.wasi)?;
        let wasi = wasi_context(&args)?;
        let mut instance = linker.instantiate(&module, State { wasi })?;

        // The timeout: a thread that fires the kill switch unless the run
        // finishes first.
        let (done, finished) = mpsc::channel::<()>();
        let timer = args.timeout.map(|limit| {
            let switch = instance.kill_switch();
            std::thread::spawn(move || {
                if finished.recv_timeout(limit).is_err() {
                    switch.terminate();
                }
            })
        });
        let result = match &args.invoke {
            None => backstop::wasi::run(&mut instance).map(Ending::Exit),
            Some(name) => invoke(&mut instance, name, &args.args),
        };
        let _ = done.send(());
        if let Some(timer) = timer {
            let _ = timer.join();
        }
        result
    })();
    match result {
        Ok(ending) => ending,
        Err(Error::Killed) => Ending::Timeout,
        Err(error @ Error::Trap(_)) => Ending::Trap(error),
        Err(error) => Ending::Failed(error),
    }
}

fn invoke(
    instance: &mut backstop::Instance<State>,
    name: &str,
    texts: &[String],
) -> Result<Ending, Error> {
    let func = instance
        .get_func(name)
        .ok_or_else(|| Error::msg(format!("the module exports no function `{name}`")))?;
    let ty = func.ty();
    if texts.len() != ty.params().len() {
        return Err(Error::msg(format!(
            "`{name}` takes {} arguments ({ty}), {} given",
            ty.params().len(),
            texts.len()
        )));
    }
    let args = ty
        .params()
        .iter()
        .zip(texts)
        .map(|(ty, text)| parse_value(*ty, text))
        .collect::<Result<Vec<_>, _>>()?;
    for value in instance.call_func(&func, &args)? {
        println!("{}", show_value(&value));
    }
    Ok(Ending::Exit(0))
}

fn parse_value(ty: ValType, text: &str) -> Result<Val, Error> {
    let bad = || Error::msg(format!("`{text}` is not a valid {ty}"));
    Ok(match ty {
        ValType::I32 => Val::I32(
            text.parse::<i32>()
                .or_else(|_| text.parse::<u32>().map(|v| v as i32))
                .map_err(|_| bad())?,
        ),
        ValType::I64 => Val::I64(
            text.parse::<i64>()
                .or_else(|_| text.parse::<u64>().map(|v| v as i64))
                .map_err(|_| bad())?,
        ),
        ValType::F32 => Val::from(text.parse::<f32>().map_err(|_| bad())?),
        ValType::F64 => Val::from(text.parse::<f64>().map_err(|_| bad())?),
        other => {
            return Err(Error::msg(format!(
                "parameters of type {other} cannot be given on the command line"
            )))
        }
    })
}

fn show_value(value: &Val) -> String {
    match value {
        Val::I32(v) => v.to_string(),
        Val::I64(v) => v.to_string(),
        Val::F32(bits) => f32::from_bits(*bits).to_string(),
        Val::F64(bits) => f64::from_bits(*bits).to_string(),
        Val::V128(v) => format!("{:#034x}", v.0),
        Val::FuncRef(f) => format!("{f:?}"),
        Val::ExternRef(e) => format!("{e:?}"),
    }
}
