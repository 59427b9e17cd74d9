//! `GuestStack`: an anonymous `mmap` region used as a stack, with a
//! `PROT_NONE` guard region at its low end: a mapping of its own
//! (`GuestStack::new`), or a part of a larger reservation someone else
//! owns, whose inaccessible bytes below it are the guard
//! (`GuestStack::in_reservation`), which saves the kernel a mapping or two
//! per stack.
//!
//! This file owns the stack's lifetime (map or protect, unprotect or
//! unmap) and the arithmetic for its bounds. It does not switch to the
//! stack; see `switch.rs`.

use std::io;
use std::ops::Range;
use std::ptr::NonNull;

/// An `mmap`ed stack with a `PROT_NONE` guard region at its low end.
///
/// Layout, addresses growing upwards:
///
/// ```text
///   top()            -> +------------------------+  (page aligned, exclusive)
///                       |  usable (read/write)   |  usable_size() bytes
///   usable_bottom()  -> +------------------------+
///                       |  guard (PROT_NONE)     |  guard_range()
///   base             -> +------------------------+
/// ```
///
/// Dropping a `GuestStack` unmaps it (or, inside another reservation,
/// makes it inaccessible and releases its pages); nothing may still run on
/// it then.
pub struct GuestStack {
    /// Start of the mapping: the lowest guard byte.
    base: NonNull<u8>,
    /// Bytes of guard at the bottom (a whole number of pages, at least one).
    guard_size: usize,
    /// Bytes usable above the guard (a whole number of pages, at least one).
    usable_size: usize,
    /// For a stack inside someone else's reservation: what keeps that
    /// reservation mapped (dropped after the stack is made inaccessible
    /// again). `None`: the stack owns its mapping and unmaps it.
    reservation: Option<Box<dyn Send + Sync>>,
}

impl std::fmt::Debug for GuestStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestStack")
            .field("base", &self.base)
            .field("guard_size", &self.guard_size)
            .field("usable_size", &self.usable_size)
            .field("in_reservation", &self.reservation.is_some())
            .finish()
    }
}

// SAFETY: a `GuestStack` only owns an address range (and, inside another
// reservation, a `Send + Sync` value keeping it alive). Its methods never
// read or write through the pointer; they return addresses. Unmapping on
// drop needs `&mut`/ownership, so sharing or sending the handle across
// threads cannot race with anything this type does.
unsafe impl Send for GuestStack {}
// SAFETY: see `Send` above; every `&self` method is a pure computation.
unsafe impl Sync for GuestStack {}

// A stack's methods only compute addresses, and the keepalive is never
// touched but dropped: no state a panic could leave half-changed is
// observable through it.
impl std::panic::UnwindSafe for GuestStack {}
impl std::panic::RefUnwindSafe for GuestStack {}

/// The system page size (4096 if the system cannot tell).
pub fn page_size() -> usize {
    // SAFETY: `sysconf` has no preconditions; `_SC_PAGESIZE` is always valid.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096)
}

/// `n` rounded up to a multiple of `page` (a power of two), at least one page.
fn round_up_pages(n: usize, page: usize) -> io::Result<usize> {
    let n = n.max(1);
    n.checked_add(page - 1)
        .map(|v| v & !(page - 1))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "stack size overflows usize"))
}

impl GuestStack {
    /// Maps a stack of `usable_size` bytes (rounded up to whole pages, at
    /// least one) above a guard of `guard_size` bytes (rounded up to whole
    /// pages, at least one page). Memory is committed lazily by the kernel.
    pub fn new(usable_size: usize, guard_size: usize) -> io::Result<GuestStack> {
        let page = page_size();
        let usable_size = round_up_pages(usable_size, page)?;
        let guard_size = round_up_pages(guard_size, page)?;
        let total = usable_size.checked_add(guard_size).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "stack size overflows usize")
        })?;

        // Reserve the whole range inaccessible first, then open up the
        // usable part, so the guard never exists as accessible memory.
        // SAFETY: a fresh anonymous private mapping at a kernel-chosen
        // address cannot alias any existing Rust object.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(base.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned null"))?;
        let stack = GuestStack {
            base,
            guard_size,
            usable_size,
            reservation: None,
        };
        // SAFETY: `usable_bottom()..top()` lies inside the mapping we just
        // created and own (guard_size + usable_size == total).
        let rc = unsafe {
            libc::mprotect(
                stack.usable_bottom().cast(),
                usable_size,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc != 0 {
            // `stack` is dropped here, which unmaps the whole range.
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// A stack of `usable_size` bytes (rounded up to whole pages) at
    /// `bottom`, inside a reservation that `keepalive` keeps mapped: this
    /// makes it readable and writable, and on drop inaccessible again, with
    /// its pages released, before it drops `keepalive`. The guard is the
    /// reservation's own inaccessible bytes below `bottom`.
    ///
    /// # Safety
    /// `bottom` is page aligned; `[bottom - guard_size, bottom +
    /// usable_size)` (sizes rounded up to pages) lies inside an anonymous
    /// private mapping that stays mapped while `keepalive` lives, that
    /// nothing else uses or changes the protection of, and whose guard part
    /// is `PROT_NONE` and stays so.
    pub unsafe fn in_reservation(
        bottom: NonNull<u8>,
        usable_size: usize,
        guard_size: usize,
        keepalive: Box<dyn Send + Sync>,
    ) -> io::Result<GuestStack> {
        let page = page_size();
        let usable_size = round_up_pages(usable_size, page)?;
        let guard_size = round_up_pages(guard_size, page)?;
        let base = NonNull::new(bottom.as_ptr().wrapping_sub(guard_size))
            .ok_or_else(|| io::Error::other("a stack's guard cannot start at 0"))?;
        // SAFETY: the usable range lies inside the reservation, which the
        // caller gives this stack alone (the contract above).
        let rc = unsafe {
            libc::mprotect(
                bottom.as_ptr().cast(),
                usable_size,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(GuestStack {
            base,
            guard_size,
            usable_size,
            reservation: Some(keepalive),
        })
    }

    /// The highest address of the stack (exclusive). Page aligned, hence
    /// 16-byte aligned; pass it to [`crate::call_on_stack`].
    pub fn top(&self) -> *mut u8 {
        self.base
            .as_ptr()
            .wrapping_add(self.guard_size + self.usable_size)
    }

    /// The lowest usable address, just above the guard.
    pub fn usable_bottom(&self) -> *mut u8 {
        self.base.as_ptr().wrapping_add(self.guard_size)
    }

    /// The addresses of the `PROT_NONE` guard region.
    pub fn guard_range(&self) -> Range<usize> {
        let start = self.base.as_ptr() as usize;
        start..start + self.guard_size
    }

    /// Usable bytes between [`usable_bottom`](Self::usable_bottom) and
    /// [`top`](Self::top).
    pub fn usable_size(&self) -> usize {
        self.usable_size
    }
}

impl Drop for GuestStack {
    fn drop(&mut self) {
        if self.reservation.is_some() {
            // SAFETY: the usable range lies inside the reservation, which
            // is still mapped (its keepalive is dropped only below) and
            // which this stack alone uses; nothing runs on it any more.
            unsafe {
                let bottom = self.usable_bottom().cast();
                libc::mprotect(bottom, self.usable_size, libc::PROT_NONE);
                libc::madvise(bottom, self.usable_size, libc::MADV_DONTNEED);
            }
            self.reservation = None;
            return;
        }
        // SAFETY: `base` and the total length describe exactly the mapping
        // created in `new`, which this value owns; nothing borrows it past
        // the drop (the caller's contract: no code still runs on it).
        let rc = unsafe {
            libc::munmap(
                self.base.as_ptr().cast(),
                self.guard_size + self.usable_size,
            )
        };
        debug_assert_eq!(rc, 0, "munmap of a GuestStack failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_up_to_pages() {
        let page = page_size();
        let s = GuestStack::new(1, 0).unwrap();
        assert_eq!(s.usable_size(), page);
        assert_eq!(s.guard_range().len(), page);
        assert_eq!(s.top() as usize - s.usable_bottom() as usize, page);
        assert_eq!(s.guard_range().end, s.usable_bottom() as usize);
        assert_eq!(s.top() as usize % 16, 0);

        let s = GuestStack::new(3 * page + 1, page + 1).unwrap();
        assert_eq!(s.usable_size(), 4 * page);
        assert_eq!(s.guard_range().len(), 2 * page);
    }

    #[test]
    fn usable_region_is_writable() {
        let s = GuestStack::new(64 * 1024, 4096).unwrap();
        // SAFETY: both addresses lie in the read/write part of the mapping.
        unsafe {
            s.usable_bottom().write_volatile(0xA5);
            s.top().sub(1).write_volatile(0x5A);
            assert_eq!(s.usable_bottom().read_volatile(), 0xA5);
            assert_eq!(s.top().sub(1).read_volatile(), 0x5A);
        }
    }

    #[test]
    fn absurd_sizes_fail_cleanly() {
        assert!(GuestStack::new(usize::MAX, 0).is_err());
        assert!(GuestStack::new(usize::MAX / 2, usize::MAX / 2).is_err());
    }

    #[test]
    fn a_stack_inside_a_reservation_opens_and_closes_its_part() {
        let page = page_size();
        let total = 8 * page;
        // SAFETY: a fresh anonymous mapping with no access.
        let region = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(region, libc::MAP_FAILED);
        struct Unmap(usize, usize);
        impl Drop for Unmap {
            fn drop(&mut self) {
                // SAFETY: the test's own mapping, unused by now.
                unsafe { libc::munmap(self.0 as *mut libc::c_void, self.1) };
            }
        }
        let dropped = std::sync::Arc::new(());
        let bottom = NonNull::new(region.cast::<u8>().wrapping_add(4 * page)).unwrap();
        // SAFETY: pages 4..8 of the mapping, above 4 inaccessible ones.
        let s = unsafe {
            GuestStack::in_reservation(
                bottom,
                3 * page,
                page,
                Box::new((Unmap(region as usize, total), dropped.clone())),
            )
        }
        .unwrap();
        assert_eq!(s.usable_bottom(), bottom.as_ptr());
        assert_eq!(s.usable_size(), 3 * page);
        assert_eq!(
            s.guard_range(),
            bottom.as_ptr() as usize - page..bottom.as_ptr() as usize
        );
        // SAFETY: inside the usable part.
        unsafe {
            s.top().sub(1).write_volatile(7);
            assert_eq!(s.top().sub(1).read_volatile(), 7);
        }
        assert_eq!(std::sync::Arc::strong_count(&dropped), 2);
        drop(s);
        assert_eq!(
            std::sync::Arc::strong_count(&dropped),
            1,
            "the keepalive is dropped"
        );
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<GuestStack>();
    }
}
