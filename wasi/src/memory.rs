//! Bounds-checked access to the guest's linear memory for the WASI calls:
//! every pointer and length a guest passes goes through `GuestMemory`, which
//! checks it against the memory's current size before touching a byte (and
//! before allocating a host buffer of that length). A bad one is `EFAULT`,
//! never a trap. `VectoredIo` is the guest side of the vectored reads and
//! writes (`fd_read`, `fd_pwrite`, ...). It borrows the memory's bytes
//! from the `Caller` beside the store's data (`Memory::data_and_store_mut`)
//! for the length of one call.

use crate::error::WasiResult;
use backstop::Caller;
use std::cell::Cell;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// The most bytes one read or write call moves (a short count is allowed by
/// the ABI); keeps a guest from making the host allocate gigabytes through
/// overlapping iovecs.
pub(crate) const MAX_IO: usize = 16 << 20;

/// The calling instance's exported memory "memory", borrowed for one call.
/// Without one every pointer is out of bounds (`EFAULT`). Shared access
/// that writes: the bytes are seen as cells, so the WASI calls can pass
/// `&GuestMemory` around while they read and write.
pub(crate) struct GuestMemory<'a>(&'a [Cell<u8>]);

impl<'a> GuestMemory<'a> {
    /// The caller's memory "memory" and the store's data, both borrowed
    /// from `caller` for `'a`.
    pub(crate) fn split<T: 'static>(caller: &'a mut Caller<'_, T>) -> (GuestMemory<'a>, &'a mut T) {
        match caller.get_memory("memory") {
            Some(memory) => {
                let (bytes, data) = memory.data_and_store_mut(caller);
                (GuestMemory(Cell::from_mut(bytes).as_slice_of_cells()), data)
            }
            None => (GuestMemory(&[]), caller.data_mut()),
        }
    }

    /// Checks that `[ptr, ptr + len)` lies inside the memory.
    pub(crate) fn check(&self, ptr: u32, len: usize) -> WasiResult<()> {
        match (ptr as usize).checked_add(len) {
            Some(end) if end <= self.0.len() => Ok(()),
            _ => Err(wasi::ERRNO_FAULT),
        }
    }

    /// Copies `len` bytes out of the guest.
    pub(crate) fn read(&self, ptr: u32, len: u32) -> WasiResult<Vec<u8>> {
        self.check(ptr, len as usize)?;
        let start = ptr as usize;
        Ok(self.0[start..start + len as usize]
            .iter()
            .map(Cell::get)
            .collect())
    }

    /// Copies `data` into the guest at `ptr`.
    pub(crate) fn write(&self, ptr: u32, data: &[u8]) -> WasiResult<()> {
        self.check(ptr, data.len())?;
        let start = ptr as usize;
        for (cell, byte) in self.0[start..start + data.len()].iter().zip(data) {
            cell.set(*byte);
        }
        Ok(())
    }

    pub(crate) fn write_u32(&self, ptr: u32, value: u32) -> WasiResult<()> {
        self.write(ptr, &value.to_le_bytes())
    }

    pub(crate) fn write_u64(&self, ptr: u32, value: u64) -> WasiResult<()> {
        self.write(ptr, &value.to_le_bytes())
    }

    /// An array of `(buf, buf_len)` pairs (`iovec` and `ciovec` have the
    /// same layout), each checked to lie inside the memory.
    fn iovecs(&self, ptr: u32, count: u32) -> WasiResult<Vec<(u32, u32)>> {
        let bytes = self.read(ptr, count.checked_mul(8).ok_or(wasi::ERRNO_FAULT)?)?;
        let iovecs: Vec<(u32, u32)> = bytes
            .chunks_exact(8)
            .map(|c| {
                (
                    u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                    u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect();
        for &(buf, len) in &iovecs {
            self.check(buf, len as usize)?;
        }
        Ok(iovecs)
    }

    /// The bytes an array of ciovecs points to, concatenated (at most
    /// `MAX_IO` of them).
    fn gather(&self, iovecs: &[(u32, u32)]) -> WasiResult<Vec<u8>> {
        let mut data = Vec::new();
        for &(buf, len) in iovecs {
            let len = (len as usize).min(MAX_IO - data.len());
            data.extend_from_slice(&self.read(buf, len as u32)?);
            if data.len() == MAX_IO {
                break;
            }
        }
        Ok(data)
    }

    /// Spreads `data` over an array of iovecs, in order.
    fn scatter(&self, iovecs: &[(u32, u32)], mut data: &[u8]) -> WasiResult<()> {
        for &(buf, len) in iovecs {
            if data.is_empty() {
                break;
            }
            let n = (len as usize).min(data.len());
            self.write(buf, &data[..n])?;
            data = &data[n..];
        }
        Ok(())
    }

    /// A guest path (bytes, not NUL-terminated). An interior NUL is
    /// `EILSEQ`.
    pub(crate) fn path(&self, ptr: u32, len: u32) -> WasiResult<PathBuf> {
        let bytes = self.read(ptr, len)?;
        if bytes.contains(&0) {
            return Err(wasi::ERRNO_ILSEQ);
        }
        Ok(PathBuf::from(OsStr::from_bytes(&bytes)))
    }
}

/// The total length of an array of iovecs, capped at `MAX_IO`.
fn total_len(iovecs: &[(u32, u32)]) -> usize {
    iovecs
        .iter()
        .fold(0usize, |sum, &(_, len)| sum.saturating_add(len as usize))
        .min(MAX_IO)
}

/// The guest side of one vectored read or write: its iovecs and the pointer
/// its byte count goes to, both checked (`EFAULT`) when it is made, before
/// the call looks at its descriptor.
pub(crate) struct VectoredIo<'m> {
    mem: &'m GuestMemory<'m>,
    iovecs: Vec<(u32, u32)>,
    count: u32,
}

impl<'m> VectoredIo<'m> {
    /// The `iovs_len` iovecs at `iovs`, with the byte count to go to `count`.
    pub(crate) fn new(
        mem: &'m GuestMemory<'m>,
        iovs: u32,
        iovs_len: u32,
        count: u32,
    ) -> WasiResult<Self> {
        let iovecs = mem.iovecs(iovs, iovs_len)?;
        mem.check(count, 4)?;
        Ok(VectoredIo { mem, iovecs, count })
    }

    /// Hands `read` a host buffer as long as the iovecs together (at most
    /// `MAX_IO`), spreads the bytes it says it read over them and stores
    /// their count.
    pub(crate) fn read_with(
        self,
        read: impl FnOnce(&mut [u8]) -> WasiResult<usize>,
    ) -> WasiResult<()> {
        let mut buffer = vec![0u8; total_len(&self.iovecs)];
        let n = read(&mut buffer)?;
        self.mem.scatter(&self.iovecs, &buffer[..n])?;
        self.mem.write_u32(self.count, n as u32)
    }

    /// Hands `write` the bytes the iovecs hold (at most `MAX_IO`) and stores
    /// the count it says it wrote.
    pub(crate) fn write_with(
        self,
        write: impl FnOnce(&[u8]) -> WasiResult<usize>,
    ) -> WasiResult<()> {
        let data = self.mem.gather(&self.iovecs)?;
        let n = write(&data)?;
        self.mem.write_u32(self.count, n as u32)
    }
}
