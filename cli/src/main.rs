//! The `backstop` command: runs WASI programs (`backstop run prog.wasm
//! args...`) or a plain export (`--invoke`), and compiles modules, to check
//! them or to save the compiled code (`backstop compile prog.wasm -o
//! prog.cwasm`, which `backstop run prog.cwasm` loads without compiling).
//! Exit status: the guest's exit code (from
//! `proc_exit`; 0 when `_start` returns); 134 when the guest traps; 124
//! when `--timeout` stops it; 2 for bad command-line usage; 1 for any other
//! error (bad module, missing import, ...).

use backstop::{Config, Engine, Error, Extern, ExternType, Linker, Module, Store, Val, ValType};
use backstop_wasi::{WasiCtx, WasiCtxBuilder};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
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
    after_help = "Exit status: the guest's exit code (the code given to proc_exit; 0 when \
                  _start returns), 134 if the guest traps, 124 if --timeout stops it, \
                  2 for command-line usage errors, 1 for other errors."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a WASI program (its `_start`), or call one export with --invoke.
    Run(RunArgs),
    /// Validate and compile a module and report its function count and the
    /// compile time; with -o, save the compiled module for `backstop run`.
    Compile(CompileArgs),
}

#[derive(clap::Args)]
struct CompileArgs {
    /// Write the compiled module here (a .cwasm file), which `backstop run`
    /// then loads without compiling. It is native code: run only .cwasm
    /// files you made or trust as you would a program. Only the same build
    /// of backstop, on a machine with the same CPU features and with the
    /// same --interrupt-checks, loads it.
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
    /// Compile with interrupt checks (see `backstop run --interrupt-checks`);
    /// `backstop run` must be given the same flag.
    #[arg(long)]
    interrupt_checks: bool,
    /// The module: a .wasm binary or .wat text.
    file: PathBuf,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Give the guest a host directory: HOST, or HOST::GUEST to name it
    /// differently inside the guest (default: the same path). Repeatable.
    #[arg(long = "dir", value_name = "HOST[::GUEST]", value_parser = parse_dir)]
    dirs: Vec<(String, String)>,
    /// Like --dir, but read-only: the guest can read files and list
    /// directories under it, and cannot create, change, rename or remove
    /// anything. Repeatable.
    #[arg(long = "dir-ro", value_name = "HOST[::GUEST]", value_parser = parse_dir)]
    read_only_dirs: Vec<(String, String)>,
    /// Set an environment variable for the guest: NAME=VALUE, or NAME alone
    /// to pass on the host's value (skipped if the host has none).
    /// Repeatable.
    #[arg(long = "env", value_name = "NAME[=VALUE]", value_parser = parse_env)]
    envs: Vec<(String, Option<String>)>,
    /// Call this export instead of running `_start`; ARGS are its
    /// arguments, parsed by the export's parameter types (integers may be
    /// hex: 0x10, -0x10); results are printed one per line.
    #[arg(long, value_name = "FUNC")]
    invoke: Option<String>,
    /// Stop the guest after this long, e.g. 250us, 500ms, 10s, 2m, 1h
    /// (plain numbers are seconds), whatever it is doing, even waiting for
    /// input. Exits with status 124.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// The most linear memory the guest may have, a whole number of 64 KiB
    /// Wasm pages from 64K to 4G, e.g. 64M, 1G, 65536 (bytes; K, M, G
    /// suffixes are powers of 1024).
    #[arg(long, value_name = "SIZE", value_parser = parse_max_memory)]
    max_memory: Option<u32>,
    /// Guest stack size for Wasm code, e.g. 512K, 8M.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    stack_size: Option<u64>,
    /// Compile with interrupt checks at loop headers and function entries:
    /// --timeout then stops the guest at its next check, without a signal.
    /// About 5% slower on tight loops. Without them (the default),
    /// --timeout interrupts the guest with a signal (SIGURG).
    #[arg(long)]
    interrupt_checks: bool,
    /// The module: a .wasm binary, .wat text, or a compiled module from
    /// `backstop compile -o` (a .cwasm file, trusted as native code).
    file: PathBuf,
    /// Arguments for the program (or the invoked export).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// `HOST` or `HOST::GUEST`; anything with more `::` is a mistake.
fn parse_dir(text: &str) -> Result<(String, String), String> {
    let parts: Vec<&str> = text.split("::").collect();
    match parts[..] {
        [host] if !host.is_empty() => Ok((host.to_string(), host.to_string())),
        [host, guest] if !host.is_empty() && !guest.is_empty() => {
            Ok((host.to_string(), guest.to_string()))
        }
        _ => Err(format!(
            "`{text}` is not HOST or HOST::GUEST (one `::` at most, neither side empty)"
        )),
    }
}

/// `NAME=VALUE`, or `NAME` to inherit the host's value.
fn parse_env(text: &str) -> Result<(String, Option<String>), String> {
    let (name, value) = match text.split_once('=') {
        Some((name, value)) => (name, Some(value.to_string())),
        None => (text, None),
    };
    if name.is_empty() {
        return Err(format!(
            "`{text}` has no variable name (expected NAME=VALUE or NAME)"
        ));
    }
    Ok((name.to_string(), value))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    // Longer suffixes first: "ms" before "s", "us" before "s".
    const UNITS: [(&str, f64); 8] = [
        ("ns", 1e-9),
        ("us", 1e-6),
        ("\u{b5}s", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
        ("", 1.0),
    ];
    let (number, scale) = UNITS
        .iter()
        .find_map(|(unit, scale)| Some((text.strip_suffix(unit)?, *scale)))
        .unwrap_or((text, 1.0));
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try 250us, 500ms, 10s, 2m)"))?;
    let seconds = value * scale;
    if !(seconds.is_finite() && seconds >= 0.0) || seconds > Duration::MAX.as_secs_f64() {
        return Err(format!("`{text}` is not a duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
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

/// The Wasm page size.
const PAGE: u64 = 65536;
/// A 32-bit memory's largest size, in pages (4 GiB).
const MAX_PAGES: u64 = 65536;

/// A `--max-memory` size as a number of pages: refused, not rounded or
/// clamped, when it is below one page, above 4 GiB, or not whole pages.
fn parse_max_memory(text: &str) -> Result<u32, String> {
    let bytes = parse_size(text)?;
    if bytes < PAGE {
        return Err(format!(
            "{text} is less than one 64 KiB Wasm page (the smallest is 64K)"
        ));
    }
    if bytes > MAX_PAGES * PAGE {
        return Err(format!(
            "{text} is more than a 32-bit memory can hold (the largest is 4G)"
        ));
    }
    if bytes % PAGE != 0 {
        return Err(format!(
            "{text} is not a whole number of 64 KiB Wasm pages (try {}K or {}K)",
            bytes / PAGE * 64,
            (bytes / PAGE + 1) * 64
        ));
    }
    Ok((bytes / PAGE) as u32)
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
        Command::Compile(args) => compile(&args),
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

/// Compiles a .wasm or .wat file, or loads a .cwasm file (by its magic
/// number, whatever its name).
fn read_module(engine: &Engine, file: &Path) -> Result<Module, Error> {
    let mut magic = [0u8; 16];
    let is_compiled = std::fs::File::open(file)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && Module::is_precompiled(&magic);
    if is_compiled {
        // SAFETY: a .cwasm given to `backstop run` is trusted as native code,
        // as `backstop compile --help` and the README say: whoever runs it
        // vouches for it, as for any program they run.
        unsafe { Module::deserialize_file(engine, file) }
    } else {
        Module::from_file(engine, file)
    }
}

fn compile(args: &CompileArgs) -> Ending {
    let mut config = Config::new();
    config.interrupt_checks(args.interrupt_checks);
    let result = (|| -> Result<(), Error> {
        let engine = Engine::new(&config)?;
        let started = Instant::now();
        let Some(output) = &args.output else {
            let module = Module::from_file(&engine, &args.file)?;
            println!(
                "{}: {} functions, compiled in {:.1} ms ({:.1} ms including reading)",
                args.file.display(),
                module.function_count(),
                module.compile_time().as_secs_f64() * 1e3,
                started.elapsed().as_secs_f64() * 1e3
            );
            return Ok(());
        };
        let compiled = engine.precompile_file(&args.file)?;
        std::fs::write(output, &compiled).map_err(|e| {
            Error::InvalidArgument(format!("cannot write {}: {e}", output.display()))
        })?;
        println!(
            "{}: compiled in {:.1} ms, {} bytes written to {}",
            args.file.display(),
            started.elapsed().as_secs_f64() * 1e3,
            compiled.len(),
            output.display()
        );
        Ok(())
    })();
    match result {
        Ok(()) => Ending::Exit(0),
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
    for (name, value) in &args.envs {
        match value {
            Some(value) => builder = builder.env(name, value),
            None => {
                if let Some(value) = std::env::var_os(name) {
                    builder = builder.env(name, value.to_string_lossy());
                }
            }
        }
    }
    for (host, guest) in &args.dirs {
        builder = builder.preopened_dir(host, guest)?;
    }
    for (host, guest) in &args.read_only_dirs {
        builder = builder.preopened_dir_read_only(host, guest)?;
    }
    Ok(builder.build())
}

/// How long the timeout waits, after firing the kill switch, for the run
/// to end before it ends the process itself.
const KILL_GRACE: Duration = Duration::from_secs(2);

fn run(args: RunArgs) -> Ending {
    let mut config = Config::new();
    if let Some(pages) = args.max_memory {
        config.max_memory_pages(pages);
    }
    if let Some(bytes) = args.stack_size {
        config.stack_size(bytes as usize);
    }
    config.interrupt_checks(args.interrupt_checks);
    let result = (|| -> Result<Ending, Error> {
        let engine = Engine::new(&config)?;
        let module = read_module(&engine, &args.file)?;
        if args.invoke.is_none() {
            check_command(&module)?;
        }
        let mut linker: Linker<State> = Linker::new(&engine);
        backstop_wasi::add_to_linker(&mut linker, |state: &mut State| &mut state.wasi)?;
        let wasi = wasi_context(&args)?;
        let mut store = Store::new(&engine, State { wasi });
        let instance = linker.instantiate(&mut store, &module)?;

        // The timeout: a thread that fires the kill switch unless the run
        // finishes first. The kill stops the guest wherever it is, in
        // compiled code or waiting in a WASI call; should the run still not
        // have ended after KILL_GRACE (a host call that cannot be cut
        // short), the timeout ends the process, so the command always
        // keeps its limit.
        let (done, finished) = mpsc::channel::<()>();
        let timer = args.timeout.map(|limit| {
            let switch = store.kill_switch();
            std::thread::spawn(move || {
                if finished.recv_timeout(limit).is_err() {
                    switch.terminate();
                    if finished.recv_timeout(KILL_GRACE).is_err() {
                        eprintln!(
                            "error: the guest was stopped by --timeout \
                             (it did not stop within {KILL_GRACE:?} of the kill)"
                        );
                        std::process::exit(EXIT_TIMEOUT.into());
                    }
                }
            })
        });
        let result = match &args.invoke {
            None => backstop_wasi::run(&mut store, instance).map(Ending::Exit),
            Some(name) => invoke(&mut store, instance, name, &args.args),
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

/// Refuses a module that is not a WASI command before instantiating it,
/// pointing to --invoke when it exports functions.
fn check_command(module: &Module) -> Result<(), Error> {
    let message = match backstop_wasi::check_command(module) {
        Ok(()) => return Ok(()),
        Err(Error::InvalidArgument(message)) => message,
        Err(other) => return Err(other),
    };
    let has_start = module.exports().any(|export| export.name == "_start");
    let functions: Vec<String> = module
        .exports()
        .filter(|export| matches!(export.ty, ExternType::Func(_)))
        .map(|export| format!("`{}`", export.name))
        .collect();
    Err(Error::msg(if has_start || functions.is_empty() {
        message
    } else {
        format!(
            "{message}; to call one of its exports, use --invoke NAME (it exports {})",
            functions.join(", ")
        )
    }))
}

fn invoke(
    store: &mut Store<State>,
    instance: backstop::Instance,
    name: &str,
    texts: &[String],
) -> Result<Ending, Error> {
    let func = match instance.get_export(&*store, name) {
        Some(Extern::Func(func)) => func,
        Some(other) => {
            let kind = match other {
                Extern::Table(_) => "table",
                Extern::Memory(_) => "memory",
                Extern::Global(_) => "global",
                Extern::Func(_) => unreachable!("matched above"),
            };
            return Err(Error::msg(format!(
                "`{name}` is a {kind}, not a function, so it cannot be invoked"
            )));
        }
        None => {
            let functions: Vec<String> = instance
                .exports(&*store)
                .into_iter()
                .filter(|(_, export)| matches!(export, Extern::Func(_)))
                .map(|(name, _)| format!("`{name}`"))
                .collect();
            return Err(Error::msg(if functions.is_empty() {
                format!("the module exports no function `{name}` (it exports no functions)")
            } else {
                format!(
                    "the module exports no function `{name}` (its functions: {})",
                    functions.join(", ")
                )
            }));
        }
    };
    let ty = func.ty(&*store);
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
    for value in func.call(&mut *store, &args)? {
        println!("{}", show_value(&value));
    }
    Ok(Ending::Exit(0))
}

fn parse_value(ty: ValType, text: &str) -> Result<Val, Error> {
    let bad = || Error::msg(format!("`{text}` is not a valid {ty}"));
    Ok(match ty {
        ValType::I32 => Val::I32(parse_integer(text, 32).ok_or_else(bad)? as i32),
        ValType::I64 => Val::I64(parse_integer(text, 64).ok_or_else(bad)? as i64),
        ValType::F32 => Val::from(text.parse::<f32>().map_err(|_| bad())?),
        ValType::F64 => Val::from(text.parse::<f64>().map_err(|_| bad())?),
        other => {
            return Err(Error::msg(format!(
                "parameters of type {other} cannot be given on the command line"
            )))
        }
    })
}

/// An integer of `bits` bits, signed or unsigned, decimal or hex (`0x10`,
/// `-0x10`, `0xffffffff`), as its two's-complement bit pattern.
fn parse_integer(text: &str, bits: u32) -> Option<u64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let magnitude = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16).ok()?,
        None => digits.parse::<u64>().ok()?,
    };
    let unsigned_max = u64::MAX >> (64 - bits);
    let signed_min_magnitude = 1u64 << (bits - 1);
    if negative {
        (magnitude <= signed_min_magnitude).then(|| magnitude.wrapping_neg() & unsigned_max)
    } else {
        (magnitude <= unsigned_max).then_some(magnitude)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_in_decimal_and_hex() {
        assert_eq!(parse_integer("16", 32), Some(16));
        assert_eq!(parse_integer("0x10", 32), Some(16));
        assert_eq!(parse_integer("-0x10", 32), Some(0xffff_fff0));
        assert_eq!(parse_integer("0xffffffff", 32), Some(0xffff_ffff));
        assert_eq!(parse_integer("0x100000000", 32), None);
        assert_eq!(parse_integer("-2147483648", 32), Some(0x8000_0000));
        assert_eq!(parse_integer("-2147483649", 32), None);
        assert_eq!(parse_integer("-1", 64), Some(u64::MAX));
        assert_eq!(parse_integer("0x", 32), None);
        assert_eq!(parse_integer("ten", 32), None);
    }

    #[test]
    fn durations_with_every_unit() {
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("250\u{b5}s"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("100ns"), Ok(Duration::from_nanos(100)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("1e300h").is_err());
    }

    #[test]
    fn max_memory_is_refused_not_rounded() {
        assert_eq!(parse_max_memory("64K"), Ok(1));
        assert_eq!(parse_max_memory("65536"), Ok(1));
        assert_eq!(parse_max_memory("1G"), Ok(16384));
        assert_eq!(parse_max_memory("4G"), Ok(65536));
        assert!(parse_max_memory("1000").is_err());
        assert!(parse_max_memory("0").is_err());
        assert!(parse_max_memory("5G").is_err());
        assert!(parse_max_memory("100000").is_err());
    }

    #[test]
    fn dirs_and_envs() {
        assert_eq!(parse_dir("data"), Ok(("data".into(), "data".into())));
        assert_eq!(parse_dir("./d::/data"), Ok(("./d".into(), "/data".into())));
        assert!(parse_dir("a::b::c").is_err());
        assert!(parse_dir("a::").is_err());
        assert!(parse_dir("").is_err());
        assert_eq!(parse_env("K=V=W"), Ok(("K".into(), Some("V=W".into()))));
        assert_eq!(parse_env("HOME"), Ok(("HOME".into(), None)));
        assert!(parse_env("=V").is_err());
    }
}
