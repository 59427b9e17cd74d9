//! `WasiCtx`, one instance's WASI state (arguments, environment and the
//! descriptor table), its builder `WasiCtxBuilder`, and the descriptors
//! themselves with their rights and fdflags. A preopened directory is a
//! `cap_std::fs::Dir` opened with ambient authority once, here; everything
//! the guest reaches afterwards is opened relative to such a `Dir`.

use crate::error::WasiResult;
use crate::stdio::{ReadPipe, Stream, WritePipe};
use backstop::Error;
use cap_std::fs::Dir;
use std::collections::BTreeMap;
use std::path::Path;
use wasi::*;

/// Rights that make sense on a regular file.
pub(crate) const FILE_RIGHTS: Rights = RIGHTS_FD_DATASYNC
    | RIGHTS_FD_READ
    | RIGHTS_FD_SEEK
    | RIGHTS_FD_FDSTAT_SET_FLAGS
    | RIGHTS_FD_SYNC
    | RIGHTS_FD_TELL
    | RIGHTS_FD_WRITE
    | RIGHTS_FD_ADVISE
    | RIGHTS_FD_ALLOCATE
    | RIGHTS_FD_FILESTAT_GET
    | RIGHTS_FD_FILESTAT_SET_SIZE
    | RIGHTS_FD_FILESTAT_SET_TIMES
    | RIGHTS_POLL_FD_READWRITE;

/// Rights that make sense on a directory.
pub(crate) const DIR_RIGHTS: Rights = RIGHTS_FD_DATASYNC
    | RIGHTS_FD_FDSTAT_SET_FLAGS
    | RIGHTS_FD_SYNC
    | RIGHTS_FD_ADVISE
    | RIGHTS_PATH_CREATE_DIRECTORY
    | RIGHTS_PATH_CREATE_FILE
    | RIGHTS_PATH_LINK_SOURCE
    | RIGHTS_PATH_LINK_TARGET
    | RIGHTS_PATH_OPEN
    | RIGHTS_FD_READDIR
    | RIGHTS_PATH_READLINK
    | RIGHTS_PATH_RENAME_SOURCE
    | RIGHTS_PATH_RENAME_TARGET
    | RIGHTS_PATH_FILESTAT_GET
    | RIGHTS_PATH_FILESTAT_SET_SIZE
    | RIGHTS_PATH_FILESTAT_SET_TIMES
    | RIGHTS_FD_FILESTAT_GET
    | RIGHTS_FD_FILESTAT_SET_TIMES
    | RIGHTS_PATH_SYMLINK
    | RIGHTS_PATH_REMOVE_DIRECTORY
    | RIGHTS_PATH_UNLINK_FILE
    | RIGHTS_POLL_FD_READWRITE;

/// Rights that change a file's contents or metadata.
pub(crate) const FILE_WRITE_RIGHTS: Rights = RIGHTS_FD_WRITE
    | RIGHTS_FD_ALLOCATE
    | RIGHTS_FD_FILESTAT_SET_SIZE
    | RIGHTS_FD_FILESTAT_SET_TIMES
    | RIGHTS_FD_DATASYNC
    | RIGHTS_FD_SYNC;

/// Rights that change what a directory holds.
const DIR_WRITE_RIGHTS: Rights = RIGHTS_PATH_CREATE_DIRECTORY
    | RIGHTS_PATH_CREATE_FILE
    | RIGHTS_PATH_LINK_TARGET
    | RIGHTS_PATH_RENAME_SOURCE
    | RIGHTS_PATH_RENAME_TARGET
    | RIGHTS_PATH_FILESTAT_SET_SIZE
    | RIGHTS_PATH_FILESTAT_SET_TIMES
    | RIGHTS_FD_FILESTAT_SET_TIMES
    | RIGHTS_PATH_SYMLINK
    | RIGHTS_PATH_REMOVE_DIRECTORY
    | RIGHTS_PATH_UNLINK_FILE;

/// Rights of the stdio descriptors (no seek or tell, so `isatty` works).
const STDIN_RIGHTS: Rights =
    RIGHTS_FD_READ | RIGHTS_FD_FDSTAT_SET_FLAGS | RIGHTS_FD_FILESTAT_GET | RIGHTS_POLL_FD_READWRITE;
const STDOUT_RIGHTS: Rights = RIGHTS_FD_WRITE
    | RIGHTS_FD_FDSTAT_SET_FLAGS
    | RIGHTS_FD_FILESTAT_GET
    | RIGHTS_POLL_FD_READWRITE
    | RIGHTS_FD_DATASYNC
    | RIGHTS_FD_SYNC;

/// What a descriptor refers to.
pub(crate) enum Kind {
    Stream(Stream),
    File(std::fs::File),
    Dir(DirDesc),
}

pub(crate) struct DirDesc {
    pub(crate) dir: Dir,
    /// The guest's name for it, if it is a preopened directory.
    pub(crate) preopen: Option<String>,
}

/// One entry of the descriptor table.
pub(crate) struct Descriptor {
    pub(crate) kind: Kind,
    pub(crate) base: Rights,
    pub(crate) inheriting: Rights,
    pub(crate) flags: Fdflags,
}

impl Descriptor {
    /// `ENOTCAPABLE` unless the descriptor has every right in `rights`.
    pub(crate) fn require(&self, rights: Rights) -> WasiResult<()> {
        if self.base & rights == rights {
            Ok(())
        } else {
            Err(ERRNO_NOTCAPABLE)
        }
    }

    pub(crate) fn dir(&self, rights: Rights) -> WasiResult<&Dir> {
        match &self.kind {
            Kind::Dir(d) => {
                self.require(rights)?;
                Ok(&d.dir)
            }
            _ => Err(ERRNO_NOTDIR),
        }
    }
}

/// The descriptor table: numbers are handed out lowest-free first.
#[derive(Default)]
pub(crate) struct FdTable {
    entries: BTreeMap<u32, Descriptor>,
}

/// At most this many descriptors at once (`EMFILE` beyond).
const MAX_FDS: usize = 1024;

impl FdTable {
    pub(crate) fn get(&self, fd: u32) -> WasiResult<&Descriptor> {
        self.entries.get(&fd).ok_or(ERRNO_BADF)
    }

    pub(crate) fn get_mut(&mut self, fd: u32) -> WasiResult<&mut Descriptor> {
        self.entries.get_mut(&fd).ok_or(ERRNO_BADF)
    }

    pub(crate) fn insert(&mut self, descriptor: Descriptor) -> WasiResult<u32> {
        if self.entries.len() >= MAX_FDS {
            return Err(ERRNO_MFILE);
        }
        let mut fd = 0;
        for &used in self.entries.keys() {
            if used != fd {
                break;
            }
            fd += 1;
        }
        self.entries.insert(fd, descriptor);
        Ok(fd)
    }

    pub(crate) fn remove(&mut self, fd: u32) -> WasiResult<Descriptor> {
        self.entries.remove(&fd).ok_or(ERRNO_BADF)
    }

    pub(crate) fn set(&mut self, fd: u32, descriptor: Descriptor) {
        self.entries.insert(fd, descriptor);
    }
}

/// One instance's WASI state. Build it with `WasiCtxBuilder` and keep it in
/// the instance's data; `add_to_linker` is given a way to reach it.
pub struct WasiCtx {
    pub(crate) args: Vec<Vec<u8>>,
    pub(crate) env: Vec<Vec<u8>>,
    pub(crate) table: FdTable,
}

impl std::fmt::Debug for WasiCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasiCtx")
            .field("args", &self.args.len())
            .field("env", &self.env.len())
            .field("fds", &self.table.entries.len())
            .finish()
    }
}

impl WasiCtx {
    /// A context with no arguments, no environment, null stdio and no
    /// preopened directories.
    pub fn new() -> WasiCtx {
        WasiCtxBuilder::new().build()
    }
}

impl Default for WasiCtx {
    fn default() -> Self {
        WasiCtx::new()
    }
}

/// Builds a `WasiCtx`:
///
/// ```no_run
/// use backstop_wasi::{WasiCtxBuilder, WritePipe};
/// let stdout = WritePipe::new();
/// let ctx = WasiCtxBuilder::new()
///     .args(["prog", "--flag"])
///     .env("HOME", "/sandbox")
///     .stdout(stdout.clone())
///     .preopened_dir("/tmp/sandbox", "/sandbox")?
///     .build();
/// # Ok::<(), backstop::Error>(())
/// ```
///
/// Stdio defaults to null (reads see end of file, writes are discarded).
pub struct WasiCtxBuilder {
    args: Vec<Vec<u8>>,
    env: Vec<Vec<u8>>,
    stdin: Stream,
    stdout: Stream,
    stderr: Stream,
    preopens: Vec<(Dir, String, bool)>,
}

impl Default for WasiCtxBuilder {
    fn default() -> Self {
        WasiCtxBuilder::new()
    }
}

impl WasiCtxBuilder {
    pub fn new() -> WasiCtxBuilder {
        WasiCtxBuilder {
            args: Vec::new(),
            env: Vec::new(),
            stdin: Stream::Null,
            stdout: Stream::Null,
            stderr: Stream::Null,
            preopens: Vec::new(),
        }
    }

    /// Appends one argument (the first is, by convention, the program name).
    pub fn arg(mut self, arg: impl AsRef<str>) -> Self {
        self.args.push(arg.as_ref().as_bytes().to_vec());
        self
    }

    /// Appends arguments.
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        for arg in args {
            self = self.arg(arg);
        }
        self
    }

    /// The host process's arguments.
    pub fn inherit_args(self) -> Self {
        let args: Vec<String> = std::env::args().collect();
        self.args(args)
    }

    /// Sets one environment variable.
    pub fn env(mut self, key: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        self.env
            .push(format!("{}={}", key.as_ref(), value.as_ref()).into_bytes());
        self
    }

    /// Sets environment variables.
    pub fn envs<K: AsRef<str>, V: AsRef<str>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    /// The host process's environment (variables whose name or value is
    /// not UTF-8 are skipped).
    pub fn inherit_env(self) -> Self {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        self.envs(vars)
    }

    /// Stdin reads from `pipe`.
    pub fn stdin(mut self, pipe: impl Into<ReadPipe>) -> Self {
        self.stdin = Stream::Read(pipe.into());
        self
    }

    /// Stdout goes to `pipe`.
    pub fn stdout(mut self, pipe: WritePipe) -> Self {
        self.stdout = Stream::Write(pipe);
        self
    }

    /// Stderr goes to `pipe`.
    pub fn stderr(mut self, pipe: WritePipe) -> Self {
        self.stderr = Stream::Write(pipe);
        self
    }

    pub fn inherit_stdin(mut self) -> Self {
        self.stdin = Stream::HostStdin;
        self
    }

    pub fn inherit_stdout(mut self) -> Self {
        self.stdout = Stream::HostStdout;
        self
    }

    pub fn inherit_stderr(mut self) -> Self {
        self.stderr = Stream::HostStderr;
        self
    }

    /// The host process's stdin, stdout and stderr.
    pub fn inherit_stdio(self) -> Self {
        self.inherit_stdin().inherit_stdout().inherit_stderr()
    }

    /// Gives the guest the host directory `host_path` under the name
    /// `guest_path` (what `fd_prestat_dir_name` reports; wasi-libc resolves
    /// paths under it). The guest can reach nothing outside it.
    pub fn preopened_dir(
        self,
        host_path: impl AsRef<Path>,
        guest_path: impl AsRef<str>,
    ) -> Result<Self, Error> {
        self.preopen(host_path.as_ref(), guest_path.as_ref(), true)
    }

    /// Like `preopened_dir`, but the guest may only read: it cannot create,
    /// change, rename or remove anything under it.
    pub fn preopened_dir_read_only(
        self,
        host_path: impl AsRef<Path>,
        guest_path: impl AsRef<str>,
    ) -> Result<Self, Error> {
        self.preopen(host_path.as_ref(), guest_path.as_ref(), false)
    }

    fn preopen(mut self, host: &Path, guest: &str, writable: bool) -> Result<Self, Error> {
        let dir = Dir::open_ambient_dir(host, cap_std::ambient_authority()).map_err(|e| {
            Error::InvalidArgument(format!(
                "cannot preopen directory `{}`: {e}",
                host.display()
            ))
        })?;
        self.preopens.push((dir, guest.to_string(), writable));
        Ok(self)
    }

    pub fn build(self) -> WasiCtx {
        let mut table = FdTable::default();
        let stream = |stream: Stream, rights: Rights| Descriptor {
            kind: Kind::Stream(stream),
            base: rights,
            inheriting: 0,
            flags: 0,
        };
        table.set(0, stream(self.stdin, STDIN_RIGHTS));
        table.set(1, stream(self.stdout, STDOUT_RIGHTS));
        table.set(2, stream(self.stderr, STDOUT_RIGHTS));
        for (dir, name, writable) in self.preopens {
            let (base, inheriting) = if writable {
                (DIR_RIGHTS, DIR_RIGHTS | FILE_RIGHTS)
            } else {
                (
                    DIR_RIGHTS & !DIR_WRITE_RIGHTS,
                    (DIR_RIGHTS | FILE_RIGHTS) & !DIR_WRITE_RIGHTS & !FILE_WRITE_RIGHTS,
                )
            };
            let descriptor = Descriptor {
                kind: Kind::Dir(DirDesc {
                    dir,
                    preopen: Some(name),
                }),
                base,
                inheriting,
                flags: 0,
            };
            // Cannot fail: the table is far from full here.
            let _ = table.insert(descriptor);
        }
        WasiCtx {
            args: self.args,
            env: self.env,
            table,
        }
    }
}
