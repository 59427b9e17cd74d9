//! WASI errno values: the `Errno` type the implementation returns (the
//! `wasi` crate's, whose constants follow the preview 1 witx), and the
//! mapping from host `std::io::Error`s to it.

use std::io;

pub use wasi::Errno;

/// The result of a WASI call's implementation: success, or an errno for the
/// guest.
pub(crate) type WasiResult<T> = Result<T, Errno>;

/// The errno for a host I/O error. cap-std reports an attempt to leave a
/// sandbox (`..` past the root, an absolute path, a symlink pointing out) as
/// `PermissionDenied` without an OS error code: that becomes `ENOTCAPABLE`.
pub(crate) fn from_io(error: &io::Error) -> Errno {
    if let Some(code) = error.raw_os_error() {
        return from_raw_os(code);
    }
    match error.kind() {
        io::ErrorKind::PermissionDenied => wasi::ERRNO_NOTCAPABLE,
        io::ErrorKind::NotFound => wasi::ERRNO_NOENT,
        io::ErrorKind::AlreadyExists => wasi::ERRNO_EXIST,
        io::ErrorKind::InvalidInput => wasi::ERRNO_INVAL,
        io::ErrorKind::Unsupported => wasi::ERRNO_NOTSUP,
        io::ErrorKind::WouldBlock => wasi::ERRNO_AGAIN,
        io::ErrorKind::Interrupted => wasi::ERRNO_INTR,
        io::ErrorKind::BrokenPipe => wasi::ERRNO_PIPE,
        io::ErrorKind::OutOfMemory => wasi::ERRNO_NOMEM,
        _ => wasi::ERRNO_IO,
    }
}

/// The errno for a Linux errno value.
fn from_raw_os(code: i32) -> Errno {
    use wasi::*;
    match code {
        libc::EPERM => ERRNO_PERM,
        libc::ENOENT => ERRNO_NOENT,
        libc::ESRCH => ERRNO_SRCH,
        libc::EINTR => ERRNO_INTR,
        libc::EIO => ERRNO_IO,
        libc::ENXIO => ERRNO_NXIO,
        libc::E2BIG => ERRNO_2BIG,
        libc::EBADF => ERRNO_BADF,
        libc::EAGAIN => ERRNO_AGAIN,
        libc::ENOMEM => ERRNO_NOMEM,
        libc::EACCES => ERRNO_ACCES,
        libc::EFAULT => ERRNO_FAULT,
        libc::EBUSY => ERRNO_BUSY,
        libc::EEXIST => ERRNO_EXIST,
        libc::EXDEV => ERRNO_XDEV,
        libc::ENODEV => ERRNO_NODEV,
        libc::ENOTDIR => ERRNO_NOTDIR,
        libc::EISDIR => ERRNO_ISDIR,
        libc::EINVAL => ERRNO_INVAL,
        libc::ENFILE => ERRNO_NFILE,
        libc::EMFILE => ERRNO_MFILE,
        libc::ENOTTY => ERRNO_NOTTY,
        libc::ETXTBSY => ERRNO_TXTBSY,
        libc::EFBIG => ERRNO_FBIG,
        libc::ENOSPC => ERRNO_NOSPC,
        libc::ESPIPE => ERRNO_SPIPE,
        libc::EROFS => ERRNO_ROFS,
        libc::EMLINK => ERRNO_MLINK,
        libc::EPIPE => ERRNO_PIPE,
        libc::ERANGE => ERRNO_RANGE,
        libc::EDEADLK => ERRNO_DEADLK,
        libc::ENAMETOOLONG => ERRNO_NAMETOOLONG,
        libc::ENOLCK => ERRNO_NOLCK,
        libc::ENOSYS => ERRNO_NOSYS,
        libc::ENOTEMPTY => ERRNO_NOTEMPTY,
        libc::ELOOP => ERRNO_LOOP,
        libc::EOVERFLOW => ERRNO_OVERFLOW,
        libc::EILSEQ => ERRNO_ILSEQ,
        libc::ENOTSOCK => ERRNO_NOTSOCK,
        libc::EOPNOTSUPP => ERRNO_NOTSUP,
        libc::EDQUOT => ERRNO_DQUOT,
        libc::ESTALE => ERRNO_STALE,
        libc::ETIMEDOUT => ERRNO_TIMEDOUT,
        libc::ECANCELED => ERRNO_CANCELED,
        _ => ERRNO_IO,
    }
}

/// `result` with its I/O error turned into an errno.
pub(crate) fn io<T>(result: io::Result<T>) -> WasiResult<T> {
    result.map_err(|e| from_io(&e))
}
