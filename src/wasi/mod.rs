//! WASI preview 1 (`wasi_snapshot_preview1`) for Backstop guests.
//!
//! This module owns the host side of the preview 1 ABI: `add_to_linker`
//! defines all of its functions in a `Linker`, and `WasiCtx` (built with
//! `WasiCtxBuilder`) is the per-instance state they work on, kept in the
//! instance's data.
//!
//! ```no_run
//! use backstop::wasi::{self, WasiCtx, WasiCtxBuilder, WritePipe};
//! use backstop::{Engine, Linker, Module};
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
//! let mut instance = linker.instantiate(&module, State { wasi: ctx })?;
//! let code = wasi::run(&mut instance)?; // calls `_start`
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

use crate::{Caller, Error, FuncType, Instance, Linker, Val, ValType};
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
/// (0 if `_start` returns, the code given to `proc_exit` otherwise).
pub fn run<T: 'static>(instance: &mut Instance<T>) -> Result<u32, Error> {
    match instance.call::<(), ()>("_start", ()) {
        Ok(()) => Ok(0),
        Err(error) => ExitCode::from_error(error).map(|code| code.0),
    }
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
                    #[allow(unused_variables)]
                    let $mem = GuestMemory::new(caller.get_memory("memory"));
                    #[allow(unused_variables)]
                    let $ctx = get(caller.data_mut());
                    errno($body)
                },
            )?;
        };
    }

    define!("args_get", |ctx, mem, a: i32, b: i32| clocks::args_get(
        ctx, &mem, a as u32, b as u32
    ));
    define!("args_sizes_get", |ctx, mem, a: i32, b: i32| {
        clocks::args_sizes_get(ctx, &mem, a as u32, b as u32)
    });
    define!("environ_get", |ctx, mem, a: i32, b: i32| {
        clocks::environ_get(ctx, &mem, a as u32, b as u32)
    });
    define!("environ_sizes_get", |ctx, mem, a: i32, b: i32| {
        clocks::environ_sizes_get(ctx, &mem, a as u32, b as u32)
    });
    define!("clock_res_get", |ctx, mem, id: i32, out: i32| {
        clocks::clock_res_get(&mem, id, out as u32)
    });
    define!("clock_time_get", |ctx,
                               mem,
                               id: i32,
                               precision: i64,
                               out: i32| {
        clocks::clock_time_get(&mem, id, precision as u64, out as u32)
    });
    define!("fd_advise", |ctx,
                          mem,
                          fd: i32,
                          _offset: i64,
                          _len: i64,
                          advice: i32| {
        fs::fd_advise(ctx, fd as u32, advice)
    });
    define!("fd_allocate", |ctx, mem, fd: i32, offset: i64, len: i64| {
        fs::fd_allocate(ctx, fd as u32, offset as u64, len as u64)
    });
    define!("fd_close", |ctx, mem, fd: i32| fs::fd_close(ctx, fd as u32));
    define!("fd_datasync", |ctx, mem, fd: i32| fs::fd_datasync(
        ctx, fd as u32
    ));
    define!("fd_fdstat_get", |ctx, mem, fd: i32, buf: i32| {
        fs::fd_fdstat_get(ctx, &mem, fd as u32, buf as u32)
    });
    define!("fd_fdstat_set_flags", |ctx, mem, fd: i32, flags: i32| {
        fs::fd_fdstat_set_flags(ctx, fd as u32, flags)
    });
    define!(
        "fd_fdstat_set_rights",
        |ctx, mem, fd: i32, base: i64, inh: i64| {
            fs::fd_fdstat_set_rights(ctx, fd as u32, base as u64, inh as u64)
        }
    );
    define!("fd_filestat_get", |ctx, mem, fd: i32, buf: i32| {
        fs::fd_filestat_get(ctx, &mem, fd as u32, buf as u32)
    });
    define!("fd_filestat_set_size", |ctx, mem, fd: i32, size: i64| {
        fs::fd_filestat_set_size(ctx, fd as u32, size as u64)
    });
    define!(
        "fd_filestat_set_times",
        |ctx, mem, fd: i32, atim: i64, mtim: i64, flags: i32| {
            fs::fd_filestat_set_times(ctx, fd as u32, atim as u64, mtim as u64, flags)
        }
    );
    define!("fd_pread", |ctx,
                         mem,
                         fd: i32,
                         iovs: i32,
                         len: i32,
                         offset: i64,
                         out: i32| {
        fs::fd_pread(
            ctx,
            &mem,
            fd as u32,
            iovs as u32,
            len as u32,
            offset as u64,
            out as u32,
        )
    });
    define!("fd_prestat_get", |ctx, mem, fd: i32, buf: i32| {
        fs::fd_prestat_get(ctx, &mem, fd as u32, buf as u32)
    });
    define!(
        "fd_prestat_dir_name",
        |ctx, mem, fd: i32, path: i32, len: i32| {
            fs::fd_prestat_dir_name(ctx, &mem, fd as u32, path as u32, len as u32)
        }
    );
    define!("fd_pwrite", |ctx,
                          mem,
                          fd: i32,
                          iovs: i32,
                          len: i32,
                          offset: i64,
                          out: i32| {
        fs::fd_pwrite(
            ctx,
            &mem,
            fd as u32,
            iovs as u32,
            len as u32,
            offset as u64,
            out as u32,
        )
    });
    define!("fd_read", |ctx,
                        mem,
                        fd: i32,
                        iovs: i32,
                        len: i32,
                        out: i32| {
        fs::fd_read(ctx, &mem, fd as u32, iovs as u32, len as u32, out as u32)
    });
    define!("fd_readdir", |ctx,
                           mem,
                           fd: i32,
                           buf: i32,
                           len: i32,
                           cookie: i64,
                           out: i32| {
        fs::fd_readdir(
            ctx,
            &mem,
            fd as u32,
            buf as u32,
            len as u32,
            cookie as u64,
            out as u32,
        )
    });
    define!("fd_renumber", |ctx, mem, from: i32, to: i32| {
        fs::fd_renumber(ctx, from as u32, to as u32)
    });
    define!("fd_seek", |ctx,
                        mem,
                        fd: i32,
                        offset: i64,
                        whence: i32,
                        out: i32| {
        fs::fd_seek(ctx, &mem, fd as u32, offset, whence, out as u32)
    });
    define!("fd_sync", |ctx, mem, fd: i32| fs::fd_sync(ctx, fd as u32));
    define!("fd_tell", |ctx, mem, fd: i32, out: i32| fs::fd_tell(
        ctx, &mem, fd as u32, out as u32
    ));
    define!("fd_write", |ctx,
                         mem,
                         fd: i32,
                         iovs: i32,
                         len: i32,
                         out: i32| {
        fs::fd_write(ctx, &mem, fd as u32, iovs as u32, len as u32, out as u32)
    });
    define!(
        "path_create_directory",
        |ctx, mem, fd: i32, path: i32, len: i32| {
            fs::path_create_directory(ctx, &mem, fd as u32, path as u32, len as u32)
        }
    );
    define!(
        "path_filestat_get",
        |ctx, mem, fd: i32, flags: i32, path: i32, len: i32, buf: i32| {
            fs::path_filestat_get(
                ctx,
                &mem,
                fd as u32,
                flags,
                path as u32,
                len as u32,
                buf as u32,
            )
        }
    );
    define!(
        "path_filestat_set_times",
        |ctx, mem, fd: i32, flags: i32, path: i32, len: i32, atim: i64, mtim: i64, fst: i32| {
            fs::path_filestat_set_times(
                ctx,
                &mem,
                fd as u32,
                flags,
                path as u32,
                len as u32,
                atim as u64,
                mtim as u64,
                fst,
            )
        }
    );
    define!("path_link", |ctx,
                          mem,
                          old_fd: i32,
                          old_flags: i32,
                          old: i32,
                          old_len: i32,
                          new_fd: i32,
                          new: i32,
                          new_len: i32| {
        fs::path_link(
            ctx,
            &mem,
            old_fd as u32,
            old_flags,
            old as u32,
            old_len as u32,
            new_fd as u32,
            new as u32,
            new_len as u32,
        )
    });
    define!("path_readlink", |ctx,
                              mem,
                              fd: i32,
                              path: i32,
                              len: i32,
                              buf: i32,
                              buf_len: i32,
                              out: i32| {
        fs::path_readlink(
            ctx,
            &mem,
            fd as u32,
            path as u32,
            len as u32,
            buf as u32,
            buf_len as u32,
            out as u32,
        )
    });
    define!(
        "path_remove_directory",
        |ctx, mem, fd: i32, path: i32, len: i32| {
            fs::path_remove_directory(ctx, &mem, fd as u32, path as u32, len as u32)
        }
    );
    define!("path_rename", |ctx,
                            mem,
                            fd: i32,
                            old: i32,
                            old_len: i32,
                            new_fd: i32,
                            new: i32,
                            new_len: i32| {
        fs::path_rename(
            ctx,
            &mem,
            fd as u32,
            old as u32,
            old_len as u32,
            new_fd as u32,
            new as u32,
            new_len as u32,
        )
    });
    define!("path_symlink", |ctx,
                             mem,
                             old: i32,
                             old_len: i32,
                             fd: i32,
                             new: i32,
                             new_len: i32| {
        fs::path_symlink(
            ctx,
            &mem,
            old as u32,
            old_len as u32,
            fd as u32,
            new as u32,
            new_len as u32,
        )
    });
    define!(
        "path_unlink_file",
        |ctx, mem, fd: i32, path: i32, len: i32| {
            fs::path_unlink_file(ctx, &mem, fd as u32, path as u32, len as u32)
        }
    );
    define!("proc_raise", |ctx, mem, _signal: i32| Err(
        wasi::ERRNO_NOTSUP
    ));
    define!("sched_yield", |ctx, mem| clocks::sched_yield());
    define!("random_get", |ctx, mem, buf: i32, len: i32| {
        clocks::random_get(&mem, buf as u32, len as u32)
    });
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

    // poll_oneoff reads the table first, then waits without it, so the wait
    // can ask the caller whether the run is being ended (a kill switch).
    linker.func_wrap(
        MODULE,
        "poll_oneoff",
        move |mut caller: Caller<'_, T>, subs: i32, out: i32, n: i32, nevents: i32| -> i32 {
            let mem = GuestMemory::new(caller.get_memory("memory"));
            let plan = clocks::poll_prepare(
                get(caller.data_mut()),
                &mem,
                subs as u32,
                out as u32,
                n as u32,
                nevents as u32,
            );
            errno(
                plan.and_then(|plan| {
                    clocks::poll_wait(plan, &mem, || caller.is_termination_pending())
                }),
            )
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
            let mem = GuestMemory::new(caller.get_memory("memory"));
            let ctx = get(caller.data_mut());
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

/// No descriptor is ever a socket.
fn not_a_socket(ctx: &mut WasiCtx, fd: i32) -> WasiResult<()> {
    ctx.table.get(fd as u32)?;
    Err(wasi::ERRNO_NOTSOCK)
}
