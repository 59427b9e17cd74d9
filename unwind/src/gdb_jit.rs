//! Owns GDB's JIT compilation interface: the process-wide `__jit_debug_descriptor` and
//! `__jit_debug_register_code` symbols, the doubly linked list of `jit_code_entry` records GDB walks, and the
//! in-memory ELF images ([`build_elf_image`]) that tell GDB the names and bounds of the functions in a
//! [`CodeRegion`]. See "JIT Compilation Interface" in the GDB manual for the protocol.
//!
//! # The image
//!
//! A hand-written ELF64 `ET_EXEC` file for the host machine (x86-64 or AArch64, little-endian) with five
//! sections: the null section, `.text` (`SHT_NOBITS`, `SHF_ALLOC | SHF_EXECINSTR`, `sh_addr` = the region's
//! start, `sh_size` = its length), `.symtab` (one global `STT_FUNC` symbol per function, at its absolute address,
//! with its size), `.strtab` and `.shstrtab`. `.text` is `NOBITS` because GDB reads the code from the inferior's
//! memory: the image stays a few dozen bytes per function. `ET_EXEC` lets symbol values be absolute addresses, and
//! GDB takes section addresses from the image as they are. No DWARF is included: GDB unwinds JIT frames with the
//! `.eh_frame` the runtime registers with the system unwinder, or with frame pointers.
//!
//! It is written by hand (about a hundred lines) rather than with the `object` crate's writer: we need only
//! fixed, absolute addresses and a symbol table, and this crate then depends on nothing new.
//!
//! # Coexisting with other JITs in one process
//!
//! GDB looks for symbols named `__jit_debug_descriptor` and `__jit_debug_register_code`, so a process should have
//! one pair per object file, and every runtime in that object file must share it. We handle that three ways:
//! - On ELF targets (Linux x86-64 and AArch64) the two symbols are defined with `global_asm!` as **weak**
//!   definitions, as C runtimes do with `__attribute__((weak))`. Linking Backstop next to another runtime that
//!   defines them (LLVM's ORC, V8, another copy of this crate) is not a duplicate-symbol error: the linker keeps
//!   one definition and every reference binds to it. On other targets they are plain `#[no_mangle]` definitions,
//!   and only one copy may be linked.
//! - At first use, [`descriptor`] asks the dynamic linker (`dlsym(RTLD_DEFAULT, ...)`) for
//!   `__jit_debug_descriptor`. If the global scope has one (another shared object exported it) that is not ours,
//!   has version 1, and comes with its own `__jit_debug_register_code`, we use that pair instead of ours, so a
//!   debugger that only knows one descriptor per process still sees our code.
//! - Writers here serialize on one mutex. A *different* runtime sharing the same descriptor has its own lock,
//!   and the protocol offers no common one, so concurrent registrations from two runtimes can still race. That
//!   is a limit of the protocol every runtime shares. GDB 10 and newer read a separate descriptor in each object
//!   file, so when none is shared there is no race at all.

use std::ptr::{self, NonNull};
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::registry::CodeRegion;

/// `jit_actions_t::JIT_NOACTION`.
pub const JIT_NOACTION: u32 = 0;
/// `jit_actions_t::JIT_REGISTER_FN`: `relevant_entry` was just linked.
pub const JIT_REGISTER_FN: u32 = 1;
/// `jit_actions_t::JIT_UNREGISTER_FN`: `relevant_entry` was just unlinked.
pub const JIT_UNREGISTER_FN: u32 = 2;

/// GDB's `struct jit_code_entry`: one node of the list, pointing at one in-memory object file.
#[repr(C)]
#[derive(Debug)]
pub struct JitCodeEntry {
    /// The next entry, or null.
    pub next_entry: *mut JitCodeEntry,
    /// The previous entry, or null for the first.
    pub prev_entry: *mut JitCodeEntry,
    /// The object file's first byte.
    pub symfile_addr: *const u8,
    /// The object file's length in bytes.
    pub symfile_size: u64,
}

/// GDB's `struct jit_descriptor`, the type of `__jit_debug_descriptor`.
#[repr(C)]
#[derive(Debug)]
pub struct JitDescriptor {
    /// Always 1.
    pub version: u32,
    /// One of [`JIT_NOACTION`], [`JIT_REGISTER_FN`], [`JIT_UNREGISTER_FN`].
    pub action_flag: u32,
    /// The entry the current action is about.
    pub relevant_entry: *mut JitCodeEntry,
    /// The head of the list, or null.
    pub first_entry: *mut JitCodeEntry,
}

// The two symbols, as weak definitions (see the file header). The descriptor starts as {version 1, no action,
// null, null}; the function only returns, and GDB puts a breakpoint on it.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
std::arch::global_asm!(
    ".pushsection .data.__jit_debug_descriptor,\"aw\",@progbits",
    ".weak __jit_debug_descriptor",
    ".type __jit_debug_descriptor,@object",
    ".size __jit_debug_descriptor,24",
    ".p2align 3",
    "__jit_debug_descriptor:",
    ".long 1",
    ".long 0",
    ".quad 0",
    ".quad 0",
    ".popsection",
    ".pushsection .text.__jit_debug_register_code,\"ax\",@progbits",
    ".weak __jit_debug_register_code",
    ".type __jit_debug_register_code,@function",
    ".p2align 4",
    "__jit_debug_register_code:",
    ".cfi_startproc",
    "ret",
    ".cfi_endproc",
    ".size __jit_debug_register_code,.-__jit_debug_register_code",
    ".popsection",
    options(att_syntax)
);

#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
std::arch::global_asm!(
    ".pushsection .data.__jit_debug_descriptor,\"aw\",%progbits",
    ".weak __jit_debug_descriptor",
    ".type __jit_debug_descriptor,%object",
    ".size __jit_debug_descriptor,24",
    ".p2align 3",
    "__jit_debug_descriptor:",
    ".word 1",
    ".word 0",
    ".xword 0",
    ".xword 0",
    ".popsection",
    ".pushsection .text.__jit_debug_register_code,\"ax\",%progbits",
    ".weak __jit_debug_register_code",
    ".type __jit_debug_register_code,%function",
    ".p2align 4",
    "__jit_debug_register_code:",
    ".cfi_startproc",
    "ret",
    ".cfi_endproc",
    ".size __jit_debug_register_code,.-__jit_debug_register_code",
    ".popsection",
);

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
extern "C" {
    static mut __jit_debug_descriptor: JitDescriptor;
    fn __jit_debug_register_code();
}

/// Fallback for targets without the weak definitions above: strong symbols, so only one copy may be linked.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
#[no_mangle]
static mut __jit_debug_descriptor: JitDescriptor = JitDescriptor {
    version: 1,
    action_flag: JIT_NOACTION,
    relevant_entry: ptr::null_mut(),
    first_entry: ptr::null_mut(),
};

/// Fallback for targets without the weak definitions above. It must stay a real, out-of-line call that does
/// nothing: GDB sets a breakpoint on it.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
#[no_mangle]
#[inline(never)]
extern "C" fn __jit_debug_register_code() {
    // SAFETY: an empty asm block has no effect; it only keeps the optimizer from treating the function as pure.
    unsafe { std::arch::asm!("", options(nostack, preserves_flags)) };
}

/// The descriptor and notification function this process uses (ours, or another object's; see the file header).
struct Interface {
    descriptor: *mut JitDescriptor,
    register_code: unsafe extern "C" fn(),
}

// SAFETY: the pointers are to process-wide statics; every access through them is made with `WRITER` held.
unsafe impl Send for Interface {}
// SAFETY: as above.
unsafe impl Sync for Interface {}

static INTERFACE: OnceLock<Interface> = OnceLock::new();
/// Serializes every change to the list and the descriptor made by this crate.
static WRITER: Mutex<()> = Mutex::new(());

fn interface() -> &'static Interface {
    INTERFACE.get_or_init(|| {
        // Taking the address of an extern/mutable static reads nothing; rustc before 1.82 still asks for
        // `unsafe` here, newer ones call it unused.
        #[allow(unused_unsafe)]
        // SAFETY: only the address is taken; the static is never referenced.
        let descriptor = unsafe { ptr::addr_of_mut!(__jit_debug_descriptor) };
        let ours = Interface {
            descriptor,
            register_code: __jit_debug_register_code,
        };
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only searches the loaded objects.
        let (descriptor, function) = unsafe {
            (
                libc::dlsym(libc::RTLD_DEFAULT, c"__jit_debug_descriptor".as_ptr()),
                libc::dlsym(libc::RTLD_DEFAULT, c"__jit_debug_register_code".as_ptr()),
            )
        };
        let descriptor = descriptor.cast::<JitDescriptor>();
        if descriptor.is_null() || descriptor == ours.descriptor || function.is_null() {
            return ours;
        }
        // SAFETY: an exported `__jit_debug_descriptor` is, by GDB's convention, a `struct jit_descriptor`, whose
        // first field is the version.
        let version = unsafe { ptr::read_volatile(ptr::addr_of!((*descriptor).version)) };
        if version != 1 {
            return ours;
        }
        Interface {
            descriptor,
            // SAFETY: an exported `__jit_debug_register_code` is, by the same convention, `void (void)`.
            register_code: unsafe {
                std::mem::transmute::<*mut libc::c_void, unsafe extern "C" fn()>(function)
            },
        }
    })
}

fn lock_writer() -> MutexGuard<'static, ()> {
    // The lock guards no Rust data, and the list is changed by complete steps, so poisoning means nothing here.
    WRITER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The descriptor this process's GDB registrations go to: our `__jit_debug_descriptor`, or another object's if
/// the dynamic linker's global scope exports one (see the file header). Read it only while no registration may
/// change concurrently.
pub fn descriptor() -> *const JitDescriptor {
    interface().descriptor
}

/// One in-memory object file registered with GDB. Dropping it unregisters it.
///
/// Drop it when the code it describes is freed, so GDB does not keep naming addresses that now hold other things.
#[derive(Debug)]
#[must_use = "dropping the registration unregisters the image at once"]
pub struct GdbJitRegistration {
    /// Our node of GDB's list; allocated by `Box`, freed in `Drop` after unlinking.
    entry: NonNull<JitCodeEntry>,
    /// The object file. Its heap bytes never move or change until `Drop`: GDB reads them when it wants.
    image: Box<[u8]>,
}

// SAFETY: the entry is only touched with `WRITER` held, and the image is immutable.
unsafe impl Send for GdbJitRegistration {}
// SAFETY: `&self` methods only read the immutable image.
unsafe impl Sync for GdbJitRegistration {}

impl GdbJitRegistration {
    /// Links `image` (an object file, e.g. from [`build_elf_image`]) into GDB's list and notifies GDB, if it is
    /// attached. Cheap when no debugger is attached: a lock, a few stores and an empty call.
    pub fn register(image: Vec<u8>) -> GdbJitRegistration {
        let image = image.into_boxed_slice();
        let entry = NonNull::from(Box::leak(Box::new(JitCodeEntry {
            next_entry: ptr::null_mut(),
            prev_entry: ptr::null_mut(),
            symfile_addr: image.as_ptr(),
            symfile_size: image.len() as u64,
        })));
        let interface = interface();
        let _writer = lock_writer();
        let descriptor = interface.descriptor;
        let entry_ptr = entry.as_ptr();
        // SAFETY: `descriptor` is the process's descriptor and every entry on its list is live until unlinked;
        // we hold the writer lock, so no other registration of ours changes them meanwhile. `entry_ptr` is ours.
        // Volatile accesses keep every store in place before the notification call.
        unsafe {
            let first = ptr::read_volatile(ptr::addr_of!((*descriptor).first_entry));
            ptr::write_volatile(ptr::addr_of_mut!((*entry_ptr).next_entry), first);
            if !first.is_null() {
                ptr::write_volatile(ptr::addr_of_mut!((*first).prev_entry), entry_ptr);
            }
            ptr::write_volatile(ptr::addr_of_mut!((*descriptor).first_entry), entry_ptr);
            notify(interface, entry_ptr, JIT_REGISTER_FN);
        }
        GdbJitRegistration { entry, image }
    }

    /// Builds the ELF image for `region` ([`build_elf_image`]) and registers it.
    pub fn for_region(region: &CodeRegion) -> GdbJitRegistration {
        GdbJitRegistration::register(build_elf_image(region))
    }

    /// The registered object file.
    pub fn image(&self) -> &[u8] {
        &self.image
    }

    /// The address of this registration's `jit_code_entry`, as linked in the list.
    pub fn entry_address(&self) -> *const JitCodeEntry {
        self.entry.as_ptr()
    }
}

impl Drop for GdbJitRegistration {
    fn drop(&mut self) {
        let interface = interface();
        let entry_ptr = self.entry.as_ptr();
        {
            let _writer = lock_writer();
            let descriptor = interface.descriptor;
            // SAFETY: as in `register`: we hold the writer lock, our entry is on the list, and its neighbours are
            // live entries of that list.
            unsafe {
                let prev = ptr::read_volatile(ptr::addr_of!((*entry_ptr).prev_entry));
                let next = ptr::read_volatile(ptr::addr_of!((*entry_ptr).next_entry));
                if prev.is_null() {
                    ptr::write_volatile(ptr::addr_of_mut!((*descriptor).first_entry), next);
                } else {
                    ptr::write_volatile(ptr::addr_of_mut!((*prev).next_entry), next);
                }
                if !next.is_null() {
                    ptr::write_volatile(ptr::addr_of_mut!((*next).prev_entry), prev);
                }
                notify(interface, entry_ptr, JIT_UNREGISTER_FN);
                // GDB has seen the entry go; do not leave a pointer to memory we are about to free.
                ptr::write_volatile(
                    ptr::addr_of_mut!((*descriptor).relevant_entry),
                    ptr::null_mut(),
                );
                ptr::write_volatile(ptr::addr_of_mut!((*descriptor).action_flag), JIT_NOACTION);
            }
        }
        // SAFETY: `entry` came from `Box::leak` in `register`, and is no longer reachable from the list.
        drop(unsafe { Box::from_raw(entry_ptr) });
    }
}

/// Tells GDB (if it is attached: it has a breakpoint in `__jit_debug_register_code`) that `entry` was just
/// linked or unlinked.
///
/// # Safety
/// Call with the writer lock held; `entry` must be live.
unsafe fn notify(interface: &Interface, entry: *mut JitCodeEntry, action: u32) {
    let descriptor = interface.descriptor;
    // SAFETY: the caller holds the writer lock; `descriptor` is the process's descriptor.
    unsafe {
        ptr::write_volatile(ptr::addr_of_mut!((*descriptor).relevant_entry), entry);
        ptr::write_volatile(ptr::addr_of_mut!((*descriptor).action_flag), action);
    }
    // SAFETY: the notification function takes nothing and does nothing (GDB's breakpoint does the work).
    unsafe { (interface.register_code)() };
}

// ELF constants (from the System V gABI and <elf.h>).
const ET_EXEC: u16 = 2;
#[cfg(target_arch = "aarch64")]
const EM_HOST: u16 = 183; // EM_AARCH64
#[cfg(not(target_arch = "aarch64"))]
const EM_HOST: u16 = 62; // EM_X86_64
const SHT_NULL: u32 = 0;
const SHT_SYMTAB: u32 = 2;
const SHT_STRTAB: u32 = 3;
const SHT_NOBITS: u32 = 8;
const SHF_ALLOC: u64 = 0x2;
const SHF_EXECINSTR: u64 = 0x4;
const STB_GLOBAL: u8 = 1;
const STT_FUNC: u8 = 2;
const EHDR_SIZE: usize = 64;
const SHDR_SIZE: usize = 64;
const SYM_SIZE: usize = 24;
/// Section indices in the image: null, .text, .symtab, .strtab, .shstrtab.
const TEXT_INDEX: u16 = 1;
const STRTAB_INDEX: u32 = 3;
const SHSTRTAB_INDEX: u16 = 4;
const SECTION_COUNT: u16 = 5;

/// Builds an in-memory ELF64 object for `region`: `.text` (`NOBITS`) at the region's address and length, and one
/// global `STT_FUNC` symbol per function, named by [`CodeRegion::symbol_name`], at its absolute address with its
/// size. See the file header for the full layout.
pub fn build_elf_image(region: &CodeRegion) -> Vec<u8> {
    let shstrtab: &[u8] = b"\0.text\0.symtab\0.strtab\0.shstrtab\0";
    let (text_name, symtab_name, strtab_name, shstrtab_name) = (1u32, 7u32, 15u32, 23u32);

    let mut strtab = vec![0u8];
    let mut symtab = vec![0u8; SYM_SIZE]; // Symbol 0 is the null symbol.
    for function in &region.functions {
        let name_offset = strtab.len() as u32;
        // A NUL would end the name early; nothing else needs escaping in an ELF string table.
        strtab.extend(region.symbol_name(function).bytes().map(|byte| {
            if byte == 0 {
                b'?'
            } else {
                byte
            }
        }));
        strtab.push(0);
        let address = region.start as u64 + u64::from(function.start);
        symtab.extend_from_slice(&name_offset.to_le_bytes()); // st_name
        symtab.push((STB_GLOBAL << 4) | STT_FUNC); // st_info
        symtab.push(0); // st_other: STV_DEFAULT
        symtab.extend_from_slice(&TEXT_INDEX.to_le_bytes()); // st_shndx
        symtab.extend_from_slice(&address.to_le_bytes()); // st_value
        symtab.extend_from_slice(&u64::from(function.len).to_le_bytes()); // st_size
    }

    // Layout: header, .shstrtab, .strtab, padding, .symtab, padding, section headers.
    let shstrtab_offset = EHDR_SIZE;
    let strtab_offset = shstrtab_offset + shstrtab.len();
    let symtab_offset = align_up(strtab_offset + strtab.len(), 8);
    let section_headers_offset = align_up(symtab_offset + symtab.len(), 8);
    let total = section_headers_offset + SHDR_SIZE * usize::from(SECTION_COUNT);

    let mut image = Vec::with_capacity(total);
    // e_ident: magic, ELFCLASS64, ELFDATA2LSB, EV_CURRENT, ELFOSABI_NONE, ABI version 0, padding.
    image.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    image.extend_from_slice(&ET_EXEC.to_le_bytes()); // e_type
    image.extend_from_slice(&EM_HOST.to_le_bytes()); // e_machine
    image.extend_from_slice(&1u32.to_le_bytes()); // e_version
    image.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    image.extend_from_slice(&0u64.to_le_bytes()); // e_phoff: no program headers
    image.extend_from_slice(&(section_headers_offset as u64).to_le_bytes()); // e_shoff
    image.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    image.extend_from_slice(&(EHDR_SIZE as u16).to_le_bytes()); // e_ehsize
    image.extend_from_slice(&0u16.to_le_bytes()); // e_phentsize
    image.extend_from_slice(&0u16.to_le_bytes()); // e_phnum
    image.extend_from_slice(&(SHDR_SIZE as u16).to_le_bytes()); // e_shentsize
    image.extend_from_slice(&SECTION_COUNT.to_le_bytes()); // e_shnum
    image.extend_from_slice(&SHSTRTAB_INDEX.to_le_bytes()); // e_shstrndx
    debug_assert_eq!(image.len(), EHDR_SIZE);

    image.extend_from_slice(shstrtab);
    image.extend_from_slice(&strtab);
    image.resize(symtab_offset, 0);
    image.extend_from_slice(&symtab);
    image.resize(section_headers_offset, 0);

    let headers = [
        SectionHeader::default(),
        SectionHeader {
            name: text_name,
            kind: SHT_NOBITS,
            flags: SHF_ALLOC | SHF_EXECINSTR,
            address: region.start as u64,
            // NOBITS occupies no bytes of the file; point it just past the header, as linkers do.
            offset: EHDR_SIZE as u64,
            size: region.len as u64,
            align: 1,
            ..SectionHeader::default()
        },
        SectionHeader {
            name: symtab_name,
            kind: SHT_SYMTAB,
            offset: symtab_offset as u64,
            size: symtab.len() as u64,
            link: STRTAB_INDEX,
            // One past the last local symbol: only the null symbol is local.
            info: 1,
            align: 8,
            entry_size: SYM_SIZE as u64,
            ..SectionHeader::default()
        },
        SectionHeader {
            name: strtab_name,
            kind: SHT_STRTAB,
            offset: strtab_offset as u64,
            size: strtab.len() as u64,
            align: 1,
            ..SectionHeader::default()
        },
        SectionHeader {
            name: shstrtab_name,
            kind: SHT_STRTAB,
            offset: shstrtab_offset as u64,
            size: shstrtab.len() as u64,
            align: 1,
            ..SectionHeader::default()
        },
    ];
    debug_assert_eq!(headers.len(), usize::from(SECTION_COUNT));
    for header in &headers {
        header.write(&mut image);
    }
    debug_assert_eq!(image.len(), total);
    image
}

/// One `Elf64_Shdr`.
#[derive(Default)]
struct SectionHeader {
    name: u32,
    kind: u32,
    flags: u64,
    address: u64,
    offset: u64,
    size: u64,
    link: u32,
    info: u32,
    align: u64,
    entry_size: u64,
}

impl SectionHeader {
    fn write(&self, out: &mut Vec<u8>) {
        debug_assert!(self.kind != SHT_NULL || self.size == 0);
        out.extend_from_slice(&self.name.to_le_bytes());
        out.extend_from_slice(&self.kind.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&self.address.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.link.to_le_bytes());
        out.extend_from_slice(&self.info.to_le_bytes());
        out.extend_from_slice(&self.align.to_le_bytes());
        out.extend_from_slice(&self.entry_size.to_le_bytes());
    }
}

fn align_up(value: usize, align: usize) -> usize {
    value.div_ceil(align) * align
}
