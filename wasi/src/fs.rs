//! The descriptor and filesystem calls of WASI preview 1 (`fd_*` and
//! `path_*`). Every path is resolved by cap-std relative to a directory
//! descriptor, so nothing outside a preopened directory can be named: `..`
//! past the root, absolute paths and symlinks that lead out fail with
//! `ENOTCAPABLE`, and hard links and renames can only name both ends inside
//! preopens. Rights are checked before any host operation.

use crate::ctx::{Descriptor, DirDesc, Kind, WasiCtx, DIR_RIGHTS, FILE_RIGHTS};
use crate::error::{io, WasiResult};
use crate::memory::{GuestMemory, VectoredIo};
use crate::stdio::Stream;
use backstop::KillWaiter;
use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt, OpenOptionsMaybeDirExt};
use cap_fs_ext::{OsMetadataExt, SystemTimeSpec};
use cap_std::fs::Dir;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, FileExt};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use wasi::*;

/// A `filestat` record.
#[derive(Default)]
struct Filestat {
    dev: u64,
    ino: u64,
    filetype: u8,
    nlink: u64,
    size: u64,
    atim: u64,
    mtim: u64,
    ctim: u64,
}

impl Filestat {
    fn to_bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..8].copy_from_slice(&self.dev.to_le_bytes());
        b[8..16].copy_from_slice(&self.ino.to_le_bytes());
        b[16] = self.filetype;
        b[24..32].copy_from_slice(&self.nlink.to_le_bytes());
        b[32..40].copy_from_slice(&self.size.to_le_bytes());
        b[40..48].copy_from_slice(&self.atim.to_le_bytes());
        b[48..56].copy_from_slice(&self.mtim.to_le_bytes());
        b[56..64].copy_from_slice(&self.ctim.to_le_bytes());
        b
    }
}

/// Nanoseconds since the epoch from a `(seconds, nanoseconds)` pair.
fn nanos(sec: i64, nsec: i64) -> u64 {
    (sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(nsec as u64)
}

/// The metadata of an open `std` file, in cap-std's form.
fn cap_metadata(metadata: std::fs::Metadata) -> cap_std::fs::Metadata {
    cap_std::fs::Metadata::from_just_metadata(metadata)
}

/// The WASI file type of a file type (from cap-std; std metadata is
/// converted with `cap_metadata` first).
fn filetype(ft: cap_std::fs::FileType) -> Filetype {
    use cap_fs_ext::FileTypeExt as _;
    if ft.is_dir() {
        FILETYPE_DIRECTORY
    } else if ft.is_file() {
        FILETYPE_REGULAR_FILE
    } else if ft.is_symlink() {
        FILETYPE_SYMBOLIC_LINK
    } else if ft.is_block_device() {
        FILETYPE_BLOCK_DEVICE
    } else if ft.is_char_device() {
        FILETYPE_CHARACTER_DEVICE
    } else if ft.is_socket() {
        FILETYPE_SOCKET_STREAM
    } else {
        FILETYPE_UNKNOWN
    }
}

/// What `*_filestat_get` reports for a file's metadata.
fn filestat(m: &cap_std::fs::Metadata) -> Filestat {
    Filestat {
        dev: OsMetadataExt::dev(m),
        ino: OsMetadataExt::ino(m),
        filetype: filetype(m.file_type()).raw(),
        nlink: OsMetadataExt::nlink(m),
        size: m.len(),
        atim: nanos(OsMetadataExt::atime(m), OsMetadataExt::atime_nsec(m)),
        mtim: nanos(OsMetadataExt::mtime(m), OsMetadataExt::mtime_nsec(m)),
        ctim: nanos(OsMetadataExt::ctime(m), OsMetadataExt::ctime_nsec(m)),
    }
}

/// What `fd_fdstat_get` and `fd_filestat_get` report as a stream's type.
fn stream_filetype(stream: &Stream) -> Filetype {
    match stream {
        Stream::Read(_) | Stream::Write(_) => FILETYPE_UNKNOWN,
        _ => FILETYPE_CHARACTER_DEVICE,
    }
}

fn descriptor_filetype(d: &Descriptor) -> WasiResult<Filetype> {
    Ok(match &d.kind {
        Kind::Stream(s) => stream_filetype(s),
        Kind::Dir(_) => FILETYPE_DIRECTORY,
        Kind::File(f) => filetype(cap_metadata(io(f.metadata())?).file_type()),
    })
}

/// A 16-bit flags argument, `EINVAL` if it has bits outside `known`.
pub(crate) fn flags16(value: i32, known: u16) -> WasiResult<u16> {
    let value = u16::try_from(value).map_err(|_| ERRNO_INVAL)?;
    if value & !known != 0 {
        return Err(ERRNO_INVAL);
    }
    Ok(value)
}

/// Whether a `lookupflags` argument asks for a final symlink to be
/// followed; `EINVAL` if it has unknown bits.
fn follows_symlinks(lookupflags: i32) -> WasiResult<bool> {
    Ok(flags16(lookupflags, LOOKUPFLAGS_SYMLINK_FOLLOW as u16)? != 0)
}

/// The (atime, mtime) to set from a `fst_flags` and two timestamps.
fn time_specs(
    atim: u64,
    mtim: u64,
    fst_flags: u16,
) -> WasiResult<(Option<SystemTimeSpec>, Option<SystemTimeSpec>)> {
    let spec = |t: u64, set: Fstflags, now: Fstflags| -> WasiResult<Option<SystemTimeSpec>> {
        match (fst_flags & set != 0, fst_flags & now != 0) {
            (true, true) => Err(ERRNO_INVAL),
            (_, true) => Ok(Some(SystemTimeSpec::SymbolicNow)),
            (true, false) => {
                let time = SystemTime::UNIX_EPOCH
                    .checked_add(Duration::from_nanos(t))
                    .ok_or(ERRNO_INVAL)?;
                Ok(Some(SystemTimeSpec::Absolute(
                    cap_std::time::SystemTime::from_std(time),
                )))
            }
            (false, false) => Ok(None),
        }
    };
    Ok((
        spec(atim, FSTFLAGS_ATIM, FSTFLAGS_ATIM_NOW)?,
        spec(mtim, FSTFLAGS_MTIM, FSTFLAGS_MTIM_NOW)?,
    ))
}

fn std_time(spec: SystemTimeSpec) -> SystemTime {
    match spec {
        SystemTimeSpec::SymbolicNow => SystemTime::now(),
        SystemTimeSpec::Absolute(t) => t.into_std(),
    }
}

// ---- descriptors ---------------------------------------------------------

pub(crate) fn fd_advise(ctx: &mut WasiCtx, fd: u32, advice: i32) -> WasiResult<()> {
    let d = ctx.table.get(fd)?;
    if !(0..=5).contains(&advice) {
        return Err(ERRNO_INVAL);
    }
    match &d.kind {
        Kind::Stream(_) => Err(ERRNO_SPIPE),
        Kind::Dir(_) => Err(ERRNO_BADF),
        Kind::File(_) => d.require(RIGHTS_FD_ADVISE),
    }
}

pub(crate) fn fd_allocate(ctx: &mut WasiCtx, fd: u32, offset: u64, len: u64) -> WasiResult<()> {
    let d = ctx.table.get(fd)?;
    d.require(RIGHTS_FD_ALLOCATE)?;
    let Kind::File(f) = &d.kind else {
        return Err(ERRNO_BADF);
    };
    let end = offset.checked_add(len).ok_or(ERRNO_FBIG)?;
    if end > i64::MAX as u64 {
        return Err(ERRNO_FBIG);
    }
    if end > io(f.metadata())?.len() {
        io(f.set_len(end))?;
    }
    Ok(())
}

pub(crate) fn fd_close(ctx: &mut WasiCtx, fd: u32) -> WasiResult<()> {
    ctx.table.remove(fd).map(drop)
}

fn sync(ctx: &mut WasiCtx, fd: u32, right: Rights, data_only: bool) -> WasiResult<()> {
    let d = ctx.table.get(fd)?;
    d.require(right)?;
    match &d.kind {
        Kind::File(f) if data_only => io(f.sync_data()),
        Kind::File(f) => io(f.sync_all()),
        Kind::Dir(dd) => io(io(dd.dir.try_clone())?.into_std_file().sync_all()),
        Kind::Stream(_) => Err(ERRNO_INVAL),
    }
}

pub(crate) fn fd_datasync(ctx: &mut WasiCtx, fd: u32) -> WasiResult<()> {
    sync(ctx, fd, RIGHTS_FD_DATASYNC, true)
}

pub(crate) fn fd_sync(ctx: &mut WasiCtx, fd: u32) -> WasiResult<()> {
    sync(ctx, fd, RIGHTS_FD_SYNC, false)
}

pub(crate) fn fd_fdstat_get(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    fd: u32,
    buf: u32,
) -> WasiResult<()> {
    mem.check(buf, 24)?;
    let d = ctx.table.get(fd)?;
    let mut b = [0u8; 24];
    b[0] = descriptor_filetype(d)?.raw();
    b[2..4].copy_from_slice(&d.flags.to_le_bytes());
    b[8..16].copy_from_slice(&d.base.to_le_bytes());
    b[16..24].copy_from_slice(&d.inheriting.to_le_bytes());
    mem.write(buf, &b)
}

const ALL_FDFLAGS: u16 =
    FDFLAGS_APPEND | FDFLAGS_DSYNC | FDFLAGS_NONBLOCK | FDFLAGS_RSYNC | FDFLAGS_SYNC;
const SYNC_FDFLAGS: u16 = FDFLAGS_DSYNC | FDFLAGS_RSYNC | FDFLAGS_SYNC;

pub(crate) fn fd_fdstat_set_flags(ctx: &mut WasiCtx, fd: u32, flags: i32) -> WasiResult<()> {
    let flags = flags16(flags, ALL_FDFLAGS)?;
    let d = ctx.table.get_mut(fd)?;
    d.require(RIGHTS_FD_FDSTAT_SET_FLAGS)?;
    // The sync flags are fixed when the file is opened.
    if flags & SYNC_FDFLAGS != d.flags & SYNC_FDFLAGS {
        return Err(ERRNO_NOTSUP);
    }
    d.flags = flags;
    Ok(())
}

pub(crate) fn fd_fdstat_set_rights(
    ctx: &mut WasiCtx,
    fd: u32,
    base: u64,
    inheriting: u64,
) -> WasiResult<()> {
    let d = ctx.table.get_mut(fd)?;
    if base & !d.base != 0 || inheriting & !d.inheriting != 0 {
        return Err(ERRNO_NOTCAPABLE);
    }
    d.base = base;
    d.inheriting = inheriting;
    Ok(())
}

pub(crate) fn fd_filestat_get(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    fd: u32,
    buf: u32,
) -> WasiResult<()> {
    mem.check(buf, 64)?;
    let d = ctx.table.get(fd)?;
    d.require(RIGHTS_FD_FILESTAT_GET)?;
    let stat = match &d.kind {
        Kind::File(f) => filestat(&cap_metadata(io(f.metadata())?)),
        Kind::Dir(dd) => filestat(&io(dd.dir.dir_metadata())?),
        Kind::Stream(s) => Filestat {
            filetype: stream_filetype(s).raw(),
            ..Filestat::default()
        },
    };
    mem.write(buf, &stat.to_bytes())
}

pub(crate) fn fd_filestat_set_size(ctx: &mut WasiCtx, fd: u32, size: u64) -> WasiResult<()> {
    let d = ctx.table.get(fd)?;
    d.require(RIGHTS_FD_FILESTAT_SET_SIZE)?;
    match &d.kind {
        Kind::File(f) => io(f.set_len(size)),
        Kind::Dir(_) => Err(ERRNO_ISDIR),
        Kind::Stream(_) => Err(ERRNO_INVAL),
    }
}

pub(crate) fn fd_filestat_set_times(
    ctx: &mut WasiCtx,
    fd: u32,
    atim: u64,
    mtim: u64,
    fst_flags: i32,
) -> WasiResult<()> {
    let fst_flags = flags16(fst_flags, 0xf)?;
    let d = ctx.table.get(fd)?;
    d.require(RIGHTS_FD_FILESTAT_SET_TIMES)?;
    let (atime, mtime) = time_specs(atim, mtim, fst_flags)?;
    match &d.kind {
        Kind::File(f) => {
            let mut times = std::fs::FileTimes::new();
            if let Some(a) = atime {
                times = times.set_accessed(std_time(a));
            }
            if let Some(m) = mtime {
                times = times.set_modified(std_time(m));
            }
            io(f.set_times(times))
        }
        Kind::Dir(dd) => io(dd.dir.set_times(".", atime, mtime)),
        Kind::Stream(_) => Err(ERRNO_BADF),
    }
}

/// The file of a descriptor that positional I/O and seeking work on: a
/// stream is `ESPIPE`, a directory `dir_errno` (`EISDIR` for `fd_pread`,
/// `EBADF` for the others).
fn seekable_file(d: &Descriptor, dir_errno: Errno) -> WasiResult<&std::fs::File> {
    match &d.kind {
        Kind::File(f) => Ok(f),
        Kind::Stream(_) => Err(ERRNO_SPIPE),
        Kind::Dir(_) => Err(dir_errno),
    }
}

pub(crate) fn fd_read(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    kill: &KillWaiter,
    fd: u32,
    iovs: u32,
    iovs_len: u32,
    nread: u32,
) -> WasiResult<()> {
    let guest = VectoredIo::new(mem, iovs, iovs_len, nread)?;
    let d = ctx.table.get(fd)?;
    d.require(RIGHTS_FD_READ)?;
    guest.read_with(|buffer| match &d.kind {
        Kind::File(f) => {
            let mut f: &std::fs::File = f;
            io(f.read(buffer))
        }
        Kind::Stream(s) => io(s.read(buffer, kill)),
        Kind::Dir(_) => Err(ERRNO_ISDIR),
    })
}

pub(crate) fn fd_pread(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    fd: u32,
    iovs: u32,
    iovs_len: u32,
    offset: u64,
    nread: u32,
) -> WasiResult<()> {
    let guest = VectoredIo::new(mem, iovs, iovs_len, nread)?;
    let d = ctx.table.get(fd)?;
    let f = seekable_file(d, ERRNO_ISDIR)?;
    d.require(RIGHTS_FD_READ | RIGHTS_FD_SEEK)?;
    guest.read_with(|buffer| {
        // Unlike `fd_read`, reads until the buffer is full or the file ends.
        let mut n = 0;
        while n < buffer.len() {
            let offset = offset.checked_add(n as u64).ok_or(ERRNO_INVAL)?;
            match io(f.read_at(&mut buffer[n..], offset))? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    })
}

pub(crate) fn fd_write(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    kill: &KillWaiter,
    fd: u32,
    iovs: u32,
    iovs_len: u32,
    nwritten: u32,
) -> WasiResult<()> {
    let guest = VectoredIo::new(mem, iovs, iovs_len, nwritten)?;
    let d = ctx.table.get(fd)?;
    d.require(RIGHTS_FD_WRITE)?;
    guest.write_with(|data| match &d.kind {
        Kind::File(f) => {
            let mut f: &std::fs::File = f;
            if d.flags & FDFLAGS_APPEND != 0 {
                io(f.seek(SeekFrom::End(0)))?;
            }
            io(f.write_all(data))?;
            Ok(data.len())
        }
        Kind::Stream(s) => io(s.write(data, kill)),
        Kind::Dir(_) => Err(ERRNO_BADF),
    })
}

pub(crate) fn fd_pwrite(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    fd: u32,
    iovs: u32,
    iovs_len: u32,
    offset: u64,
    nwritten: u32,
) -> WasiResult<()> {
    let guest = VectoredIo::new(mem, iovs, iovs_len, nwritten)?;
    let d = ctx.table.get(fd)?;
    let f = seekable_file(d, ERRNO_BADF)?;
    d.require(RIGHTS_FD_WRITE | RIGHTS_FD_SEEK)?;
    guest.write_with(|data| {
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|end| end > i64::MAX as u64)
        {
            return Err(ERRNO_FBIG);
        }
        io(f.write_all_at(data, offset))?;
        Ok(data.len())
    })
}

/// The guest's name for a preopened directory; `EBADF` for any other
/// descriptor.
fn preopen_name(d: &Descriptor) -> WasiResult<&str> {
    match &d.kind {
        Kind::Dir(DirDesc {
            preopen: Some(name),
            ..
        }) => Ok(name),
        _ => Err(ERRNO_BADF),
    }
}

pub(crate) fn fd_prestat_get(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    fd: u32,
    buf: u32,
) -> WasiResult<()> {
    let name = preopen_name(ctx.table.get(fd)?)?;
    let mut b = [0u8; 8];
    b[0] = PREOPENTYPE_DIR.raw();
    b[4..8].copy_from_slice(&(name.len() as u32).to_le_bytes());
    mem.write(buf, &b)
}

pub(crate) fn fd_prestat_dir_name(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    fd: u32,
    path: u32,
    path_len: u32,
) -> WasiResult<()> {
    let name = preopen_name(ctx.table.get(fd)?)?;
    if (path_len as usize) < name.len() {
        return Err(ERRNO_NAMETOOLONG);
    }
    mem.write(path, name.as_bytes())
}

pub(crate) fn fd_readdir(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    fd: u32,
    buf: u32,
    buf_len: u32,
    cookie: u64,
    bufused: u32,
) -> WasiResult<()> {
    mem.check(buf, buf_len as usize)?;
    mem.check(bufused, 4)?;
    let d = ctx.table.get(fd)?;
    let dir = d.dir(RIGHTS_FD_READDIR)?;
    let self_ino = OsMetadataExt::ino(&io(dir.dir_metadata())?);
    let mut entries: Vec<(Vec<u8>, u64, Filetype)> = Vec::new();
    for entry in io(dir.entries())? {
        let entry = io(entry)?;
        let filetype = entry.file_type().map(filetype).unwrap_or(FILETYPE_UNKNOWN);
        entries.push((entry.file_name().as_bytes().to_vec(), entry.ino(), filetype));
    }
    // A stable order, so cookies (entry indexes) stay meaningful between
    // calls while the directory does not change.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.insert(0, (b"..".to_vec(), 0, FILETYPE_DIRECTORY));
    entries.insert(0, (b".".to_vec(), self_ino, FILETYPE_DIRECTORY));

    let cap = buf_len as usize;
    let mut out = Vec::new();
    let start = usize::try_from(cookie).unwrap_or(usize::MAX);
    for (index, (name, ino, filetype)) in entries.iter().enumerate().skip(start) {
        if out.len() >= cap {
            break;
        }
        let mut header = [0u8; 24];
        header[0..8].copy_from_slice(&(index as u64 + 1).to_le_bytes());
        header[8..16].copy_from_slice(&ino.to_le_bytes());
        header[16..20].copy_from_slice(&(name.len() as u32).to_le_bytes());
        header[20] = filetype.raw();
        out.extend_from_slice(&header);
        out.extend_from_slice(name);
    }
    // A full buffer tells the guest to call again (the last entry may be
    // cut short; it asks again from that entry's cookie).
    out.truncate(cap);
    mem.write(buf, &out)?;
    mem.write_u32(bufused, out.len() as u32)
}

pub(crate) fn fd_renumber(ctx: &mut WasiCtx, from: u32, to: u32) -> WasiResult<()> {
    ctx.table.get(from)?;
    ctx.table.get(to)?;
    if from != to {
        let d = ctx.table.remove(from)?;
        ctx.table.set(to, d);
    }
    Ok(())
}

pub(crate) fn fd_seek(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    fd: u32,
    offset: i64,
    whence: i32,
    newoffset: u32,
) -> WasiResult<()> {
    mem.check(newoffset, 8)?;
    let d = ctx.table.get(fd)?;
    let mut f = seekable_file(d, ERRNO_BADF)?;
    let pos = match whence {
        0 => SeekFrom::Start(u64::try_from(offset).map_err(|_| ERRNO_INVAL)?),
        1 => SeekFrom::Current(offset),
        2 => SeekFrom::End(offset),
        _ => return Err(ERRNO_INVAL),
    };
    if matches!(pos, SeekFrom::Current(0)) {
        d.require(RIGHTS_FD_TELL)?;
    } else {
        d.require(RIGHTS_FD_SEEK)?;
    }
    let new = io(f.seek(pos))?;
    mem.write_u64(newoffset, new)
}

pub(crate) fn fd_tell(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    fd: u32,
    offset: u32,
) -> WasiResult<()> {
    mem.check(offset, 8)?;
    let d = ctx.table.get(fd)?;
    let mut f = seekable_file(d, ERRNO_BADF)?;
    d.require(RIGHTS_FD_TELL)?;
    let pos = io(f.stream_position())?;
    mem.write_u64(offset, pos)
}

// ---- paths ---------------------------------------------------------------

/// The guest path at `path` and the directory `fd` it is relative to, which
/// must have `rights`; the path is read first, so a bad one is `EFAULT`
/// whatever the descriptor.
fn path_in_dir<'a>(
    ctx: &'a WasiCtx,
    mem: &GuestMemory,
    fd: u32,
    rights: Rights,
    path: u32,
    path_len: u32,
) -> WasiResult<(&'a Dir, PathBuf)> {
    let path = mem.path(path, path_len)?;
    let dir = ctx.table.get(fd)?.dir(rights)?;
    Ok((dir, path))
}

pub(crate) fn path_create_directory(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    fd: u32,
    path: u32,
    path_len: u32,
) -> WasiResult<()> {
    let (dir, path) = path_in_dir(ctx, mem, fd, RIGHTS_PATH_CREATE_DIRECTORY, path, path_len)?;
    io(dir.create_dir(path))
}

pub(crate) fn path_filestat_get(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    fd: u32,
    flags: i32,
    path: u32,
    path_len: u32,
    buf: u32,
) -> WasiResult<()> {
    let follow = follows_symlinks(flags)?;
    let path = mem.path(path, path_len)?;
    mem.check(buf, 64)?;
    let dir = ctx.table.get(fd)?.dir(RIGHTS_PATH_FILESTAT_GET)?;
    let meta = if follow {
        io(dir.metadata(path))?
    } else {
        io(dir.symlink_metadata(path))?
    };
    mem.write(buf, &filestat(&meta).to_bytes())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn path_filestat_set_times(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    fd: u32,
    flags: i32,
    path: u32,
    path_len: u32,
    atim: u64,
    mtim: u64,
    fst_flags: i32,
) -> WasiResult<()> {
    let follow = follows_symlinks(flags)?;
    let fst_flags = flags16(fst_flags, 0xf)?;
    let (dir, path) = path_in_dir(ctx, mem, fd, RIGHTS_PATH_FILESTAT_SET_TIMES, path, path_len)?;
    let (atime, mtime) = time_specs(atim, mtim, fst_flags)?;
    if follow {
        io(dir.set_times(path, atime, mtime))
    } else {
        io(dir.set_symlink_times(path, atime, mtime))
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn path_link(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    old_fd: u32,
    old_flags: i32,
    old_path: u32,
    old_path_len: u32,
    new_fd: u32,
    new_path: u32,
    new_path_len: u32,
) -> WasiResult<()> {
    if follows_symlinks(old_flags)? {
        // Linking through a symlink is not offered (as in other runtimes).
        return Err(ERRNO_INVAL);
    }
    let old_path = mem.path(old_path, old_path_len)?;
    let new_path = mem.path(new_path, new_path_len)?;
    let old_dir = ctx.table.get(old_fd)?.dir(RIGHTS_PATH_LINK_SOURCE)?;
    let new_dir = ctx.table.get(new_fd)?.dir(RIGHTS_PATH_LINK_TARGET)?;
    io(old_dir.hard_link(old_path, new_dir, new_path))
}

/// The rights that need a file opened for writing by the operating system.
const WRITE_ACCESS_RIGHTS: Rights =
    RIGHTS_FD_WRITE | RIGHTS_FD_ALLOCATE | RIGHTS_FD_FILESTAT_SET_SIZE;

/// Which operating-system access a descriptor with these rights needs.
fn access_of(base: Rights) -> (bool, bool) {
    let read = base & (RIGHTS_FD_READ | RIGHTS_FD_READDIR) != 0;
    let write = base & WRITE_ACCESS_RIGHTS != 0;
    (read, write)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn path_open(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    fd: u32,
    dirflags: i32,
    path: u32,
    path_len: u32,
    oflags: i32,
    base: u64,
    inheriting: u64,
    fdflags: i32,
    opened: u32,
) -> WasiResult<()> {
    let follow = FollowSymlinks::follow(follows_symlinks(dirflags)?);
    let oflags = flags16(
        oflags,
        OFLAGS_CREAT | OFLAGS_DIRECTORY | OFLAGS_EXCL | OFLAGS_TRUNC,
    )?;
    let fdflags = flags16(fdflags, ALL_FDFLAGS)?;
    let path = mem.path(path, path_len)?;
    mem.check(opened, 4)?;

    let parent = ctx.table.get(fd)?;
    let mut needed = RIGHTS_PATH_OPEN;
    if oflags & OFLAGS_CREAT != 0 {
        needed |= RIGHTS_PATH_CREATE_FILE;
    }
    if oflags & OFLAGS_TRUNC != 0 {
        needed |= RIGHTS_PATH_FILESTAT_SET_SIZE;
    }
    let dir = parent.dir(needed)?;
    // The new descriptor gets the rights asked for that the parent can
    // pass on, and no others (the preview 1 convention: programs ask for
    // more than they use; Rust's std asks for `fd_filestat_set_times` and
    // `fd_sync` even to read). The open itself fails only when it needs a
    // missing right: creating or truncating (checked on the directory
    // above) or write access to the file, which must not quietly become a
    // read-only open.
    if base & WRITE_ACCESS_RIGHTS & !parent.inheriting != 0 {
        return Err(ERRNO_NOTCAPABLE);
    }
    let base = base & parent.inheriting;
    let inheriting = inheriting & parent.inheriting;
    // What a directory opened here (asked for as one or not) becomes.
    let dir_descriptor = |dir: Dir| Descriptor {
        kind: Kind::Dir(DirDesc { dir, preopen: None }),
        base: base & DIR_RIGHTS,
        inheriting,
        flags: fdflags,
    };

    let descriptor = if oflags & OFLAGS_DIRECTORY != 0 {
        if oflags & (OFLAGS_CREAT | OFLAGS_TRUNC) != 0 {
            return Err(ERRNO_INVAL);
        }
        let opened_dir = match follow {
            FollowSymlinks::Yes => io(dir.open_dir(&path))?,
            FollowSymlinks::No => io(dir.open_dir_nofollow(&path))?,
        };
        dir_descriptor(opened_dir)
    } else {
        let (read, write) = access_of(base);
        let creates = oflags & (OFLAGS_CREAT | OFLAGS_TRUNC) != 0;
        let mut options = cap_std::fs::OpenOptions::new();
        options
            .read(read || !write)
            .write(write || creates)
            .truncate(oflags & OFLAGS_TRUNC != 0)
            .follow(follow)
            .maybe_dir(true);
        if oflags & OFLAGS_CREAT != 0 {
            if oflags & OFLAGS_EXCL != 0 {
                options.create_new(true);
            } else {
                options.create(true);
            }
        }
        let file = io(dir.open_with(&path, &options))?.into_std();
        if io(file.metadata())?.is_dir() {
            if write {
                return Err(ERRNO_ISDIR);
            }
            dir_descriptor(Dir::from_std_file(file))
        } else {
            let mut rights = base & FILE_RIGHTS;
            if !read && write {
                rights &= !RIGHTS_FD_READ;
            }
            if !(write || creates) {
                rights &= !WRITE_ACCESS_RIGHTS;
            }
            Descriptor {
                kind: Kind::File(file),
                base: rights,
                inheriting: 0,
                flags: fdflags,
            }
        }
    };
    let new_fd = ctx.table.insert(descriptor)?;
    mem.write_u32(opened, new_fd)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn path_readlink(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    fd: u32,
    path: u32,
    path_len: u32,
    buf: u32,
    buf_len: u32,
    bufused: u32,
) -> WasiResult<()> {
    let path = mem.path(path, path_len)?;
    mem.check(buf, buf_len as usize)?;
    mem.check(bufused, 4)?;
    let dir = ctx.table.get(fd)?.dir(RIGHTS_PATH_READLINK)?;
    let target = io(dir.read_link_contents(path))?;
    let bytes = target.as_os_str().as_bytes();
    let n = bytes.len().min(buf_len as usize);
    mem.write(buf, &bytes[..n])?;
    mem.write_u32(bufused, n as u32)
}

pub(crate) fn path_remove_directory(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    fd: u32,
    path: u32,
    path_len: u32,
) -> WasiResult<()> {
    let (dir, path) = path_in_dir(ctx, mem, fd, RIGHTS_PATH_REMOVE_DIRECTORY, path, path_len)?;
    io(dir.remove_dir(path))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn path_rename(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    fd: u32,
    old_path: u32,
    old_path_len: u32,
    new_fd: u32,
    new_path: u32,
    new_path_len: u32,
) -> WasiResult<()> {
    let old_path = mem.path(old_path, old_path_len)?;
    let new_path = mem.path(new_path, new_path_len)?;
    let old_dir = ctx.table.get(fd)?.dir(RIGHTS_PATH_RENAME_SOURCE)?;
    let new_dir = ctx.table.get(new_fd)?.dir(RIGHTS_PATH_RENAME_TARGET)?;
    io(old_dir.rename(old_path, new_dir, new_path))
}

pub(crate) fn path_symlink(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    old_path: u32,
    old_path_len: u32,
    fd: u32,
    new_path: u32,
    new_path_len: u32,
) -> WasiResult<()> {
    let old_path = mem.path(old_path, old_path_len)?;
    let new_path = mem.path(new_path, new_path_len)?;
    let dir = ctx.table.get(fd)?.dir(RIGHTS_PATH_SYMLINK)?;
    io(dir.symlink(old_path, new_path))
}

pub(crate) fn path_unlink_file(
    ctx: &mut WasiCtx,
    mem: &GuestMemory,
    fd: u32,
    path: u32,
    path_len: u32,
) -> WasiResult<()> {
    let (dir, path) = path_in_dir(ctx, mem, fd, RIGHTS_PATH_UNLINK_FILE, path, path_len)?;
    io(dir.remove_file(path))
}
