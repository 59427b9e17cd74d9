//! Proves that an `EhFrameRegistration` lets a Rust panic unwind through machine code we emit ourselves, and
//! that registration and deregistration can repeat many times: after each drop the unwinder no longer knows
//! the code.

use std::any::Any;
use std::ffi::c_void;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

use backstop_unwind::gimli::write::{
    Address, CallFrameInstruction, CommonInformationEntry, FrameDescriptionEntry,
};
use backstop_unwind::gimli::{self, Encoding, Format, X86_64};
use backstop_unwind::EhFrameRegistration;

/// `push rbp; mov rbp, rsp; call [rdi]; pop rbp; ret`, padded to 16 bytes with `int3`.
const CALL_THROUGH_RDI: [u8; 16] = [
    0x55, // 0: push rbp
    0x48, 0x89, 0xe5, // 1: mov rbp, rsp
    0xff, 0x17, // 4: call qword ptr [rdi]
    0x5d, // 6: pop rbp
    0xc3, // 7: ret
    0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc,
];
const CALL_THROUGH_RDI_LEN: u32 = 8;

type HostCallback = extern "C-unwind" fn();
/// The emitted function: calls the callback stored at the address in its first argument.
type CallThroughRdi = unsafe extern "C-unwind" fn(*const HostCallback);

/// A page of our own machine code, mapped read+execute.
struct ExecutablePage {
    address: *mut c_void,
    size: usize,
}

impl ExecutablePage {
    /// Maps a page holding `copies` consecutive copies of `CALL_THROUGH_RDI`.
    fn with_copies(copies: usize) -> Self {
        // SAFETY: `sysconf` has no preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        assert!(copies * CALL_THROUGH_RDI.len() <= size);
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches no existing memory.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(address, libc::MAP_FAILED);
        for copy in 0..copies {
            // SAFETY: the destination lies inside the fresh, writable mapping (checked against `size` above).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    CALL_THROUGH_RDI.as_ptr(),
                    address.cast::<u8>().add(copy * CALL_THROUGH_RDI.len()),
                    CALL_THROUGH_RDI.len(),
                )
            };
        }
        // SAFETY: `address..address + size` is exactly the mapping we own; on x86-64 the instruction cache needs
        // no flush after the writes.
        let result = unsafe { libc::mprotect(address, size, libc::PROT_READ | libc::PROT_EXEC) };
        assert_eq!(result, 0);
        ExecutablePage { address, size }
    }

    fn copy_address(&self, copy: usize) -> u64 {
        self.address as u64 + (copy * CALL_THROUGH_RDI.len()) as u64
    }

    fn copy_entry(&self, copy: usize) -> CallThroughRdi {
        // SAFETY: a copy of `CALL_THROUGH_RDI` starts at that address in executable memory, and it follows the
        // System V calling convention this signature names.
        unsafe { std::mem::transmute::<usize, CallThroughRdi>(self.copy_address(copy) as usize) }
    }
}

impl Drop for ExecutablePage {
    fn drop(&mut self) {
        // SAFETY: we own this mapping, and every registration describing it was dropped before the page was.
        unsafe { libc::munmap(self.address, self.size) };
    }
}

fn x86_64_cie() -> CommonInformationEntry {
    let encoding = Encoding {
        format: Format::Dwarf32,
        version: 1,
        address_size: 8,
    };
    let mut cie = CommonInformationEntry::new(encoding, 1, -8, X86_64::RA);
    cie.add_instruction(CallFrameInstruction::Cfa(X86_64::RSP, 8));
    cie.add_instruction(CallFrameInstruction::Offset(X86_64::RA, -8));
    cie
}

/// The unwind rules for one copy of `CALL_THROUGH_RDI` at `address`.
fn call_through_rdi_fde(address: u64) -> FrameDescriptionEntry {
    let mut fde = FrameDescriptionEntry::new(Address::Constant(address), CALL_THROUGH_RDI_LEN);
    fde.add_instruction(1, CallFrameInstruction::CfaOffset(16));
    fde.add_instruction(1, CallFrameInstruction::Offset(X86_64::RBP, -16));
    fde.add_instruction(4, CallFrameInstruction::CfaRegister(X86_64::RBP));
    fde.add_instruction(7, CallFrameInstruction::Cfa(X86_64::RSP, 8));
    fde.add_instruction(7, CallFrameInstruction::Restore(X86_64::RBP));
    fde
}

#[repr(C)]
struct DwarfEhBases {
    text_base: *mut c_void,
    data_base: *mut c_void,
    function: *mut c_void,
}

extern "C" {
    // libgcc and LLVM libunwind both export it: the FDE the unwinder would use for `pc`, or null.
    fn _Unwind_Find_FDE(pc: *mut c_void, bases: *mut DwarfEhBases) -> *const c_void;
}

fn unwinder_knows(pc: u64) -> bool {
    let mut bases = DwarfEhBases {
        text_base: std::ptr::null_mut(),
        data_base: std::ptr::null_mut(),
        function: std::ptr::null_mut(),
    };
    // SAFETY: `_Unwind_Find_FDE` only reads the unwinder's tables and writes `bases`, which is ours.
    !unsafe { _Unwind_Find_FDE(pc as *mut c_void, &mut bases) }.is_null()
}

/// Counts drops, to show destructors in the host frame below the emitted code run during the unwind.
struct DropCounter<'a>(&'a AtomicUsize);

impl Drop for DropCounter<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

extern "C-unwind" fn panics_with_a_message() {
    panic!("panic from a host callback");
}

struct QuietPayload(u32);

extern "C-unwind" fn unwinds_quietly() {
    // `resume_unwind` skips the panic hook, so 2,000 unwinds do not print 2,000 backtraces.
    panic::resume_unwind(Box::new(QuietPayload(7)));
}

/// Calls `entry` (emitted code), which calls `callback`, under `catch_unwind`, with a destructor in the frame
/// between them; returns the payload and whether that destructor ran.
fn call_and_catch(entry: CallThroughRdi, callback: HostCallback) -> (Box<dyn Any + Send>, bool) {
    let drops = AtomicUsize::new(0);
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let _counter = DropCounter(&drops);
        // SAFETY: `entry` is emitted code that calls the callback the pointer designates; `callback` lives for the
        // whole call.
        unsafe { entry(&callback) };
    }));
    (
        result.expect_err("the callback always unwinds"),
        drops.load(Ordering::SeqCst) == 1,
    )
}

#[test]
fn a_panic_unwinds_through_registered_code_into_catch_unwind() {
    let page = ExecutablePage::with_copies(1);
    let registration = EhFrameRegistration::new(
        x86_64_cie(),
        vec![call_through_rdi_fde(page.copy_address(0))],
    )
    .unwrap();
    assert!(unwinder_knows(page.copy_address(0) + 4));

    let (payload, destructor_ran) = call_and_catch(page.copy_entry(0), panics_with_a_message);
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"panic from a host callback")
    );
    assert!(destructor_ran);

    drop(registration);
    assert!(!unwinder_knows(page.copy_address(0) + 4));
}

#[test]
fn fdes_given_out_of_order_are_registered_in_address_order_and_all_work() {
    let page = ExecutablePage::with_copies(3);
    let fdes = [2, 0, 1]
        .into_iter()
        .map(|copy| call_through_rdi_fde(page.copy_address(copy)))
        .collect();
    let registration = EhFrameRegistration::new(x86_64_cie(), fdes).unwrap();

    let bytes = registration.eh_frame_bytes();
    assert_eq!(&bytes[bytes.len() - 4..], &[0, 0, 0, 0]);
    let written_addresses = fde_addresses(bytes);
    assert_eq!(
        written_addresses,
        [0, 1, 2].map(|copy| page.copy_address(copy))
    );

    for copy in 0..3 {
        assert!(unwinder_knows(page.copy_address(copy)));
        let (payload, destructor_ran) = call_and_catch(page.copy_entry(copy), unwinds_quietly);
        assert_eq!(payload.downcast_ref::<QuietPayload>().map(|p| p.0), Some(7));
        assert!(destructor_ran);
    }

    drop(registration);
    for copy in 0..3 {
        assert!(!unwinder_knows(page.copy_address(copy)));
    }
}

#[test]
fn registering_and_deregistering_two_thousand_times_leaves_nothing_behind() {
    let page = ExecutablePage::with_copies(1);
    for _ in 0..2_000 {
        let registration = EhFrameRegistration::new(
            x86_64_cie(),
            vec![call_through_rdi_fde(page.copy_address(0))],
        )
        .unwrap();
        let (payload, destructor_ran) = call_and_catch(page.copy_entry(0), unwinds_quietly);
        assert!(payload.is::<QuietPayload>());
        assert!(destructor_ran);
        drop(registration);
        assert!(!unwinder_knows(page.copy_address(0)));
    }
}

#[test]
fn a_registration_can_move_to_and_drop_on_another_thread() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<EhFrameRegistration>();

    let page = ExecutablePage::with_copies(1);
    let registration = EhFrameRegistration::new(
        x86_64_cie(),
        vec![call_through_rdi_fde(page.copy_address(0))],
    )
    .unwrap();
    let address = page.copy_address(0);
    std::thread::spawn(move || {
        assert!(unwinder_knows(address));
        drop(registration);
    })
    .join()
    .unwrap();
    assert!(!unwinder_knows(address));
}

/// Reads the FDE addresses back from a section, in section order.
fn fde_addresses(section: &[u8]) -> Vec<u64> {
    use gimli::UnwindSection;
    let mut eh_frame = gimli::EhFrame::new(section, gimli::LittleEndian);
    eh_frame.set_address_size(8);
    let bases = gimli::BaseAddresses::default();
    let mut entries = eh_frame.entries(&bases);
    let mut addresses = Vec::new();
    while let Some(entry) = entries.next().unwrap() {
        if let gimli::CieOrFde::Fde(partial) = entry {
            let fde = partial.parse(gimli::EhFrame::cie_from_offset).unwrap();
            addresses.push(fde.initial_address());
        }
    }
    addresses
}
