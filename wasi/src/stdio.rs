//! The streams behind WASI's stdin, stdout and stderr: the host's own
//! (inherited), nothing (reads see end of file, writes are discarded), or
//! in-memory pipes an embedder fills and reads (`ReadPipe`, `WritePipe`).

use backstop::{KillWaiter, WaitFor, Waited};
use parking_lot::Mutex;
use std::io::Write;
use std::sync::Arc;

/// The error of a read or write a kill cut short (`EINTR` to the guest,
/// which never sees it: the run ends when the host function returns).
fn killed() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::Interrupted, "stopped by a kill switch")
}

/// An in-memory byte sink for a guest's stdout or stderr. Clones share the
/// buffer: keep one, give one to the `WasiCtxBuilder`, and read what the
/// guest wrote with `contents` after (or during) the run.
#[derive(Clone, Default, Debug)]
pub struct WritePipe {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl WritePipe {
    pub fn new() -> WritePipe {
        WritePipe::default()
    }

    /// A copy of everything written so far.
    pub fn contents(&self) -> Vec<u8> {
        self.buffer.lock().clone()
    }

    /// Everything written so far, as text (invalid UTF-8 replaced).
    pub fn contents_string(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock()).into_owned()
    }

    /// Takes everything written so far, leaving the pipe empty.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.buffer.lock())
    }

    fn write(&self, data: &[u8]) {
        self.buffer.lock().extend_from_slice(data);
    }
}

#[derive(Default, Debug)]
struct ReadState {
    data: Vec<u8>,
    position: usize,
}

/// An in-memory byte source for a guest's stdin: the guest reads the bytes
/// it was made with (plus any `push`ed later), then end of file. Clones
/// share the state.
#[derive(Clone, Default, Debug)]
pub struct ReadPipe {
    state: Arc<Mutex<ReadState>>,
}

impl ReadPipe {
    /// A pipe that yields `data`, then end of file.
    pub fn new(data: impl Into<Vec<u8>>) -> ReadPipe {
        ReadPipe {
            state: Arc::new(Mutex::new(ReadState {
                data: data.into(),
                position: 0,
            })),
        }
    }

    /// Appends bytes for the guest to read.
    pub fn push(&self, data: &[u8]) {
        self.state.lock().data.extend_from_slice(data);
    }

    /// How many bytes the guest has not read yet.
    pub fn remaining(&self) -> usize {
        let state = self.state.lock();
        state.data.len() - state.position
    }

    fn read(&self, buffer: &mut [u8]) -> usize {
        let mut state = self.state.lock();
        let start = state.position;
        let n = buffer.len().min(state.data.len() - start);
        buffer[..n].copy_from_slice(&state.data[start..start + n]);
        state.position += n;
        n
    }
}

impl From<&str> for ReadPipe {
    fn from(s: &str) -> ReadPipe {
        ReadPipe::new(s.as_bytes())
    }
}

impl From<Vec<u8>> for ReadPipe {
    fn from(v: Vec<u8>) -> ReadPipe {
        ReadPipe::new(v)
    }
}

/// What a stdio descriptor is connected to.
#[derive(Clone, Debug)]
pub(crate) enum Stream {
    /// Reads see end of file; writes succeed and are discarded.
    Null,
    /// The host process's stdin.
    HostStdin,
    /// The host process's stdout.
    HostStdout,
    /// The host process's stderr.
    HostStderr,
    Read(ReadPipe),
    Write(WritePipe),
}

impl Stream {
    pub(crate) fn is_readable(&self) -> bool {
        matches!(self, Stream::Null | Stream::HostStdin | Stream::Read(_))
    }

    /// Reads into `buffer`. The host's stdin is read directly (not through
    /// `std::io::stdin()`'s buffer, which would hide input from the
    /// readiness wait), after waiting for input in a way `kill` cuts
    /// short: a kill makes this fail with `Interrupted`.
    pub(crate) fn read(&self, buffer: &mut [u8], kill: &KillWaiter) -> std::io::Result<usize> {
        match self {
            Stream::HostStdin => {
                let stdin = rustix::stdio::stdin();
                loop {
                    if kill.wait(Some((stdin, WaitFor::Readable)), None) == Waited::Killed {
                        return Err(killed());
                    }
                    match rustix::io::read(stdin, &mut *buffer) {
                        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => continue,
                        result => return result.map_err(std::io::Error::from),
                    }
                }
            }
            Stream::Read(pipe) => Ok(pipe.read(buffer)),
            _ => Ok(0),
        }
    }

    /// Writes all of `data`. The host's stdout and stderr are written
    /// directly (after flushing what the embedder left in Rust's stdout
    /// buffer), waiting for room in a way `kill` cuts short, so a guest
    /// writing to a full pipe nobody reads can still be stopped.
    pub(crate) fn write(&self, data: &[u8], kill: &KillWaiter) -> std::io::Result<usize> {
        let fd = match self {
            Stream::HostStdout => {
                std::io::stdout().lock().flush()?;
                rustix::stdio::stdout()
            }
            Stream::HostStderr => rustix::stdio::stderr(),
            Stream::Write(pipe) => {
                pipe.write(data);
                return Ok(data.len());
            }
            _ => return Ok(data.len()),
        };
        let mut written = 0;
        while written < data.len() {
            if kill.wait(Some((fd, WaitFor::Writable)), None) == Waited::Killed {
                return Err(killed());
            }
            match rustix::io::write(fd, &data[written..]) {
                Ok(n) => written += n,
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(data.len())
    }

    /// Bytes a read could return without blocking, if known (for
    /// `poll_oneoff`); `None` for the host's stdin.
    pub(crate) fn readable_bytes(&self) -> Option<u64> {
        match self {
            Stream::Read(pipe) => Some(pipe.remaining() as u64),
            Stream::HostStdin => None,
            _ => Some(0),
        }
    }
}
