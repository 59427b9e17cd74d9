//! WASI preview 1 (`wasi_snapshot_preview1`) for Backstop guests.
//!
//! This module owns the host side of the preview 1 ABI: `add_to_linker`
//! defines all of its functions in a `Linker`, and `WasiCtx` (built with
//! `WasiCtxBuilder`) is the per-instance state they work on, kept in the
//! instance's data.
//!
//! ```no_run
//! use backstop_wasi::{self as wasi, WasiCtx, WasiCtxBuilder, WritePipe};
//! use backstop::{Engine, Linker, Module, Store};
//!
//! struct State { wasi: WasiCtx }
//!
//! let engine = Engine::default();
//! let module = Module::new(&engine, std::fs::read("app.wasm").unwrap())?;
//! let mut linker = Linker::new(&engine);
//! wasi::add_to_linker(&mut linker, |s: &mut State| &mut s.wasi)?;
//!
//! let stdout = WritePipe::new();
//! let ctx = WasiCtxBuilder::new()
//!     .args(["app", "input.txt"])
//!     .env("LANG", "C")
//!     .stdout(stdout.clone())
//!     .preopened_dir("/srv/data", "/data")?
//!     .build();
//! let mut store = Store::new(&engine, State { wasi: ctx });
//! let instance = linker.instantiate(&mut store, &module)?;
//! let code = wasi::run(&mut store, instance)?; // calls `_start`
//! println!("exit {code}: {}", stdout.contents_string());
//! # Ok::<(), backstop::Error>(())
//! ```
//!
//! # Exit codes
//!
//! `proc_exit(code)` ends the guest's run through
//! `Caller::terminate(ExitCode(code))`: every frame on the guest stack
//! unwinds and the embedder's call returns `Error::Terminated(details)`,
//! where `details.downcast::<wasi::ExitCode>()` gives the code back
//! (`ExitCode::from_error` does that in one step, and `wasi::run` treats a
//! return from `_start` as exit code 0).
//!
//! # Sandboxing
//!
//! The guest reaches the host filesystem only through preopened
//! directories, each a `cap_std::fs::Dir`; every path is resolved by cap-std
//! relative to one, so `..` past its root, absolute paths, and symlinks
//! leading out fail with `ENOTCAPABLE`, and hard links and renames can name
//! only places inside preopens. Descriptor rights are enforced (a
//! descriptor without `fd_write` gets `ENOTCAPABLE` from `fd_write`), and
//! `preopened_dir_read_only` gives a directory whose descendants cannot be
//! created, changed or removed.
//!
//! # Guest memory
//!
//! Every pointer and length is checked against the calling instance's
//! exported memory `"memory"`; a bad one (or a module with no such export)
//! gets `EFAULT`, never a trap.
//!
//! # What returns an errno instead of working
//!
//! - `proc_raise`: `ENOTSUP` (signals are not modelled).
//! - `sock_accept`, `sock_recv`, `sock_send`, `sock_shutdown`: no socket
//!   descriptors are ever handed out, so `ENOTSOCK` for an open descriptor
//!   (`EBADF` otherwise).
//! - `fd_fdstat_set_flags` changing `DSYNC`/`RSYNC`/`SYNC`: `ENOTSUP`
//!   (they are recorded at `path_open` but not applied).
//! - `path_link` with `SYMLINK_FOLLOW`: `EINVAL`.
//! - `poll_oneoff` on the CPU-time clocks: an event with `ENOTSUP`.

mod clocks;
mod ctx;
mod error;
mod fs;
mod memory;
mod stdio;

pub use ctx::{WasiCtx, WasiCtxBuilder};
pub use error::Errno;
pub use stdio::{ReadPipe, WritePipe};

use backstop::{Caller, Error, FuncType, Instance, Linker, Val, ValType};
use error::WasiResult;
use memory::GuestMemory;

/// The import module name of WASI preview 1.
pub const MODULE: &str = "wasi_snapshot_preview1";

/// What `proc_exit` terminates the run with: the guest's exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExitCode(pub u32);

impl ExitCode {
    /// The exit code an error carries, if it is the termination of a run by
    /// `proc_exit`; any other error comes back unchanged.
    pub fn from_error(error: Error) -> Result<ExitCode, Error> {
        match error {
            Error::Terminated(details) => match details.downcast::<ExitCode>() {
                Ok(code) => Ok(*code),
                Err(other) => Err(Error::Terminated(other)),
            },
            other => Err(other),
        }
    }
}

impl std::fmt::Display for ExitCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

/// Runs a WASI command: calls its `_start` export and returns the exit code
/// (0 if `_start` returns, the code given to `proc_exit` otherwise). A
/// module without a `_start` of type `() -> ()` is refused before anything
/// runs, with `Error::InvalidArgument` saying what is wrong
/// (`check_command`).
pub fn run<T: 'static>(store: &mut backstop::Store<T>, instance: Instance) -> Result<u32, Error> {
    check_command(instance.module(&*store))?;
    match instance.call::<(), ()>(&mut *store, "_start", ()) {
        Ok(()) => Ok(0),
        Err(error) => ExitCode::from_error(error).map(|code| code.0),
    }
}

/// Whether `module` is a WASI command: it exports a function `_start` that
/// takes no parameters and returns nothing. The error says, in a user's
/// words, what is missing or wrong (`Error::InvalidArgument`).
pub fn check_command(module: &backstop::Module) -> Result<(), Error> {
    let start = module.exports().find(|export| export.name == "_start");
    let Some(start) = start else {
        return Err(Error::InvalidArgument(
            "the module exports no `_start` function, so it is not a WASI command".into(),
        ));
    };
    let ty = match start.ty {
        backstop::ExternType::Func(ty) => ty,
        other => {
            return Err(Error::InvalidArgument(format!(
                "`_start` is a {}, not a function",
                other.kind_name()
            )))
        }
    };
    if ty.params().is_empty() && ty.results().is_empty() {
        return Ok(());
    }
    let list = |types: &[backstop::ValType]| {
        types
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut wrong = Vec::new();
    if !ty.params().is_empty() {
        wrong.push(format!("takes ({})", list(ty.params())));
    }
    if !ty.results().is_empty() {
        wrong.push(format!("returns {}", list(ty.results())));
    }
    Err(Error::InvalidArgument(format!(
        "`_start` must take no parameters and return nothing; this one {}",
        wrong.join(" and ")
    )))
}

/// The errno a WASI function returns to the guest.
fn errno(result: WasiResult<()>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => i32::from(e.raw()),
    }
}

/// Defines every function of `wasi_snapshot_preview1` in `linker`. `get`
/// finds the `WasiCtx` in an instance's data.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    get: impl Fn(&mut T) -> &mut WasiCtx + Send + Sync + Copy + 'static,
) -> Result<(), Error> {
    // A host function taking `i32`/`i64` parameters, handed the context and
    // the guest memory, returning an errno.
    macro_rules! define {
        ($name:literal, |$ctx:ident, $mem:ident $(, $arg:ident : $ty:ty)*| $body:expr) => {
            linker.func_wrap(
                MODULE,
                $name,
                move |mut caller: Caller<'_, T>, $($arg: $ty),*| -> i32 {
                    let (mem, data) = GuestMemory::split(&mut caller);
                    #[allow(unused_variables)]
                    let $mem = mem;
                    #[allow(unused_variables)]
                    let $ctx = get(data);
                    errno($body)
                },
            )?;
        };
        // One that passes all its parameters on to `$func`, as the types it
        // takes (see `AbiParam`), after the context, the guest memory or
        // both.
        ($name:literal => $func:path, ctx, mem $(, $arg:ident : $ty:ty)*) => {
            define!($name, |ctx, mem $(, $arg: <$ty as AbiParam>::Wasm)*| {
                $func(ctx, &mem $(, <$ty as AbiParam>::from_wasm($arg))*)
            })
        };
        // One that may block, handed the run's kill state too, so that a
        // kill cuts its wait short (`kill_wait`).
        ($name:literal => $func:path, ctx, mem, kill $(, $arg:ident : $ty:ty)*) => {
            linker.func_wrap(
                MODULE,
                $name,
                move |mut caller: Caller<'_, T>, $($arg: <$ty as AbiParam>::Wasm),*| -> i32 {
                    let kill = caller.kill_waiter();
                    let (mem, data) = GuestMemory::split(&mut caller);
                    let ctx = get(data);
                    errno($func(ctx, &mem, &kill $(, <$ty as AbiParam>::from_wasm($arg))*))
                },
            )?;
        };
        ($name:literal => $func:path, ctx $(, $arg:ident : $ty:ty)*) => {
            define!($name, |ctx, mem $(, $arg: <$ty as AbiParam>::Wasm)*| {
                $func(ctx $(, <$ty as AbiParam>::from_wasm($arg))*)
            })
        };
        ($name:literal => $func:path, mem $(, $arg:ident : $ty:ty)*) => {
            define!($name, |ctx, mem $(, $arg: <$ty as AbiParam>::Wasm)*| {
                $func(&mem $(, <$ty as AbiParam>::from_wasm($arg))*)
            })
        };
    }

    define!("args_get" => clocks::args_get, ctx, mem, argv: u32, argv_buf: u32);
    define!("args_sizes_get" => clocks::args_sizes_get, ctx, mem, argc: u32, argv_buf_size: u32);
    define!("environ_get" => clocks::environ_get, ctx, mem, environ: u32, environ_buf: u32);
    define!("environ_sizes_get" => clocks::environ_sizes_get,
        ctx, mem, environc: u32, environ_buf_size: u32);
    define!("clock_res_get" => clocks::clock_res_get, mem, id: i32, resolution: u32);
    define!("clock_time_get" => clocks::clock_time_get, mem, id: i32, precision: u64, time: u32);
    define!("fd_advise", |ctx,
                          mem,
                          fd: i32,
                          _offset: i64,
                          _len: i64,
                          advice: i32| {
        fs::fd_advise(ctx, fd as u32, advice)
    });
    define!("fd_allocate" => fs::fd_allocate, ctx, fd: u32, offset: u64, len: u64);
    define!("fd_close" => fs::fd_close, ctx, fd: u32);
    define!("fd_datasync" => fs::fd_datasync, ctx, fd: u32);
    define!("fd_fdstat_get" => fs::fd_fdstat_get, ctx, mem, fd: u32, stat: u32);
    define!("fd_fdstat_set_flags" => fs::fd_fdstat_set_flags, ctx, fd: u32, flags: i32);
    define!("fd_fdstat_set_rights" => fs::fd_fdstat_set_rights,
        ctx, fd: u32, base: u64, inheriting: u64);
    define!("fd_filestat_get" => fs::fd_filestat_get, ctx, mem, fd: u32, stat: u32);
    define!("fd_filestat_set_size" => fs::fd_filestat_set_size, ctx, fd: u32, size: u64);
    define!("fd_filestat_set_times" => fs::fd_filestat_set_times,
        ctx, fd: u32, atim: u64, mtim: u64, fst_flags: i32);
    define!("fd_pread" => fs::fd_pread,
        ctx, mem, fd: u32, iovs: u32, iovs_len: u32, offset: u64, nread: u32);
    define!("fd_prestat_get" => fs::fd_prestat_get, ctx, mem, fd: u32, prestat: u32);
    define!("fd_prestat_dir_name" => fs::fd_prestat_dir_name,
        ctx, mem, fd: u32, path: u32, path_len: u32);
    define!("fd_pwrite" => fs::fd_pwrite,
        ctx, mem, fd: u32, iovs: u32, iovs_len: u32, offset: u64, nwritten: u32);
    define!("fd_read" => fs::fd_read,
        ctx, mem, kill, fd: u32, iovs: u32, iovs_len: u32, nread: u32);
    define!("fd_readdir" => fs::fd_readdir,
        ctx, mem, fd: u32, buf: u32, buf_len: u32, cookie: u64, bufused: u32);
    define!("fd_renumber" => fs::fd_renumber, ctx, from: u32, to: u32);
    define!("fd_seek" => fs::fd_seek, ctx, mem, fd: u32, offset: i64, whence: i32, newoffset: u32);
    define!("fd_sync" => fs::fd_sync, ctx, fd: u32);
    define!("fd_tell" => fs::fd_tell, ctx, mem, fd: u32, offset: u32);
    define!("fd_write" => fs::fd_write,
        ctx, mem, kill, fd: u32, iovs: u32, iovs_len: u32, nwritten: u32);
    define!("path_create_directory" => fs::path_create_directory,
        ctx, mem, fd: u32, path: u32, path_len: u32);
    define!("path_filestat_get" => fs::path_filestat_get,
        ctx, mem, fd: u32, flags: i32, path: u32, path_len: u32, stat: u32);
    define!("path_filestat_set_times" => fs::path_filestat_set_times, ctx, mem,
        fd: u32, flags: i32, path: u32, path_len: u32, atim: u64, mtim: u64, fst_flags: i32);
    define!("path_link" => fs::path_link, ctx, mem,
        old_fd: u32, old_flags: i32, old_path: u32, old_path_len: u32,
        new_fd: u32, new_path: u32, new_path_len: u32);
    define!("path_readlink" => fs::path_readlink,
        ctx, mem, fd: u32, path: u32, path_len: u32, buf: u32, buf_len: u32, bufused: u32);
    define!("path_remove_directory" => fs::path_remove_directory,
        ctx, mem, fd: u32, path: u32, path_len: u32);
    define!("path_rename" => fs::path_rename, ctx, mem,
        fd: u32, old_path: u32, old_path_len: u32,
        new_fd: u32, new_path: u32, new_path_len: u32);
    define!("path_symlink" => fs::path_symlink,
        ctx, mem, old_path: u32, old_path_len: u32, fd: u32, new_path: u32, new_path_len: u32);
    define!("path_unlink_file" => fs::path_unlink_file,
        ctx, mem, fd: u32, path: u32, path_len: u32);
    define!("proc_raise", |ctx, mem, _signal: i32| Err(
        wasi::ERRNO_NOTSUP
    ));
    define!("sched_yield", |ctx, mem| clocks::sched_yield());
    define!("random_get" => clocks::random_get, mem, buf: u32, buf_len: u32);
    define!("sock_accept", |ctx,
                            mem,
                            fd: i32,
                            _flags: i32,
                            _out: i32| {
        not_a_socket(ctx, fd)
    });
    define!("sock_recv", |ctx,
                          mem,
                          fd: i32,
                          _data: i32,
                          _len: i32,
                          _flags: i32,
                          _out: i32,
                          _oflags: i32| {
        not_a_socket(ctx, fd)
    });
    define!("sock_send", |ctx,
                          mem,
                          fd: i32,
                          _data: i32,
                          _len: i32,
                          _flags: i32,
                          _out: i32| {
        not_a_socket(ctx, fd)
    });
    define!(
        "sock_shutdown",
        |ctx, mem, fd: i32, _how: i32| not_a_socket(ctx, fd)
    );

    // poll_oneoff reads the table first, then waits without it, in a way a
    // kill switch cuts short.
    linker.func_wrap(
        MODULE,
        "poll_oneoff",
        move |mut caller: Caller<'_, T>, subs: i32, out: i32, n: i32, nevents: i32| -> i32 {
            let kill = caller.kill_waiter();
            let (mem, data) = GuestMemory::split(&mut caller);
            let plan = clocks::poll_prepare(
                get(data),
                &mem,
                subs as u32,
                out as u32,
                n as u32,
                nevents as u32,
            );
            errno(plan.and_then(|plan| clocks::poll_wait(plan, &mem, &kill)))
        },
    )?;

    linker.func_wrap(
        MODULE,
        "proc_exit",
        |mut caller: Caller<'_, T>, code: i32| -> () { caller.terminate(ExitCode(code as u32)) },
    )?;

    // path_open has nine parameters, more than `func_wrap` takes.
    use ValType::{I32, I64};
    linker.func_new(
        MODULE,
        "path_open",
        FuncType::new([I32, I32, I32, I32, I32, I64, I64, I32, I32], [I32]),
        move |mut caller: Caller<'_, T>, args: &[Val], results: &mut [Val]| {
            let i32_at = |i: usize| match args[i] {
                Val::I32(v) => v,
                _ => 0,
            };
            let i64_at = |i: usize| match args[i] {
                Val::I64(v) => v,
                _ => 0,
            };
            let (mem, data) = GuestMemory::split(&mut caller);
            let ctx = get(data);
            results[0] = Val::I32(errno(fs::path_open(
                ctx,
                &mem,
                i32_at(0) as u32,
                i32_at(1),
                i32_at(2) as u32,
                i32_at(3) as u32,
                i32_at(4),
                i64_at(5) as u64,
                i64_at(6) as u64,
                i32_at(7),
                i32_at(8) as u32,
            )));
            Ok(())
        },
    )?;
    Ok(())
}

/// A host function parameter as the WASI implementation takes it, and the
/// Wasm type it arrives as. Pointers, lengths, descriptors, rights and
/// timestamps are unsigned in the ABI and are reinterpreted bit for bit;
/// flags, clock ids, `whence` and seek offsets are passed on unchanged.
trait AbiParam {
    type Wasm;
    fn from_wasm(value: Self::Wasm) -> Self;
}

macro_rules! abi_param {
    ($($param:ty => $wasm:ty),*) => {$(
        impl AbiParam for $param {
            type Wasm = $wasm;
            fn from_wasm(value: $wasm) -> $param {
                value as $param
            }
        }
    )*};
}
abi_param!(u32 => i32, u64 => i64, i32 => i32, i64 => i64);

/// No descriptor is ever a socket.
fn not_a_socket(ctx: &mut WasiCtx, fd: i32) -> WasiResult<()> {
    ctx.table.get(fd as u32)?;
    Err(wasi::ERRNO_NOTSOCK)
}
