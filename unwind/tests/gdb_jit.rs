//! Exercises the GDB JIT interface through its public API and the two process-wide symbols: the ELF image is
//! parsed back field by field (and by `readelf`, when installed); registrations are linked and unlinked in
//! GDB's list in every order, from several threads, with the descriptor read through `__jit_debug_descriptor`;
//! and, when `gdb` is installed and may attach to this process, GDB itself names an address in a registered
//! image.
//!
//! The list is process-wide, so every test holds `LIST_LOCK` while it registers anything.

use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};

use backstop_unwind::gdb_jit::{
    self, JitCodeEntry, JitDescriptor, JIT_NOACTION, JIT_REGISTER_FN, JIT_UNREGISTER_FN,
};
use backstop_unwind::{build_elf_image, CodeRegion, FunctionRange, GdbJitRegistration};

extern "C" {
    static __jit_debug_descriptor: JitDescriptor;
}

static LIST_LOCK: Mutex<()> = Mutex::new(());

fn lock_list() -> MutexGuard<'static, ()> {
    LIST_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn sample_region(start: usize) -> CodeRegion {
    CodeRegion {
        start,
        len: 0x300,
        functions: vec![
            FunctionRange {
                start: 0,
                len: 0x40,
                index: 0,
                name: Some("first".into()),
            },
            FunctionRange {
                start: 0x40,
                len: 0x100,
                index: 7,
                name: None,
            },
            FunctionRange {
                start: 0x200,
                len: 0x100,
                index: 8,
                name: Some("with\0nul".into()),
            },
        ],
        name: Some("module".into()),
        ..CodeRegion::default()
    }
}

// A minimal ELF64 little-endian reader, independent of the writer.
fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes(bytes[offset..offset + 2].try_into().unwrap())
}
fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
}
fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
}
fn c_string_at(bytes: &[u8], offset: usize) -> String {
    let end = bytes[offset..].iter().position(|&b| b == 0).unwrap() + offset;
    String::from_utf8(bytes[offset..end].to_vec()).unwrap()
}

#[derive(Debug)]
struct Section {
    name: String,
    kind: u32,
    flags: u64,
    addr: u64,
    offset: u64,
    size: u64,
    link: u32,
    info: u32,
    entsize: u64,
}

#[derive(Debug, PartialEq, Eq)]
struct Symbol {
    name: String,
    info: u8,
    shndx: u16,
    value: u64,
    size: u64,
}

fn parse(image: &[u8]) -> (u16, u16, Vec<Section>, Vec<Symbol>) {
    assert_eq!(&image[..4], b"\x7fELF");
    assert_eq!(image[4], 2, "ELFCLASS64");
    assert_eq!(image[5], 1, "ELFDATA2LSB");
    assert_eq!(image[6], 1, "EV_CURRENT");
    let e_type = u16_at(image, 16);
    let e_machine = u16_at(image, 18);
    let shoff = u64_at(image, 40) as usize;
    assert_eq!(u16_at(image, 52), 64, "e_ehsize");
    assert_eq!(u16_at(image, 58), 64, "e_shentsize");
    let shnum = u16_at(image, 60) as usize;
    let shstrndx = u16_at(image, 62) as usize;
    assert!(shoff + shnum * 64 <= image.len());
    let raw: Vec<_> = (0..shnum)
        .map(|index| {
            let at = shoff + index * 64;
            (
                u32_at(image, at),
                Section {
                    name: String::new(),
                    kind: u32_at(image, at + 4),
                    flags: u64_at(image, at + 8),
                    addr: u64_at(image, at + 16),
                    offset: u64_at(image, at + 24),
                    size: u64_at(image, at + 32),
                    link: u32_at(image, at + 40),
                    info: u32_at(image, at + 44),
                    entsize: u64_at(image, at + 56),
                },
            )
        })
        .collect();
    let shstrtab_offset = raw[shstrndx].1.offset as usize;
    let sections: Vec<Section> = raw
        .into_iter()
        .map(|(name, mut section)| {
            section.name = c_string_at(image, shstrtab_offset + name as usize);
            if section.kind != 8 {
                assert!(
                    section.offset + section.size <= image.len() as u64,
                    "{section:?}"
                );
            }
            section
        })
        .collect();
    let symtab = sections.iter().find(|s| s.kind == 2).expect("a SHT_SYMTAB");
    assert_eq!(symtab.entsize, 24);
    let strtab_offset = sections[symtab.link as usize].offset as usize;
    let symbols = (0..symtab.size as usize / 24)
        .map(|index| {
            let at = symtab.offset as usize + index * 24;
            Symbol {
                name: c_string_at(image, strtab_offset + u32_at(image, at) as usize),
                info: image[at + 4],
                shndx: u16_at(image, at + 6),
                value: u64_at(image, at + 8),
                size: u64_at(image, at + 16),
            }
        })
        .collect();
    (e_type, e_machine, sections, symbols)
}

#[test]
fn elf_image_has_text_at_the_region_and_one_symbol_per_function() {
    let start = 0x7f12_ab00_0000usize;
    let region = sample_region(start);
    let image = build_elf_image(&region);
    let (e_type, e_machine, sections, symbols) = parse(&image);
    assert_eq!(e_type, 2, "ET_EXEC");
    assert_eq!(
        e_machine,
        if cfg!(target_arch = "aarch64") {
            183
        } else {
            62
        }
    );

    let names: Vec<_> = sections.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["", ".text", ".symtab", ".strtab", ".shstrtab"]);
    let text = &sections[1];
    assert_eq!(text.kind, 8, "SHT_NOBITS");
    assert_eq!(text.flags, 0x6, "SHF_ALLOC | SHF_EXECINSTR");
    assert_eq!((text.addr, text.size), (start as u64, 0x300));
    let symtab = &sections[2];
    assert_eq!((symtab.link, symtab.info), (3, 1));
    assert_eq!(sections[3].kind, 3);
    assert_eq!(sections[4].kind, 3);

    let expected = [
        ("module::first", 0, 0x40),
        ("module::function[7]", 0x40, 0x100),
        ("module::with?nul", 0x200, 0x100),
    ];
    assert_eq!(symbols.len(), 1 + expected.len());
    assert_eq!(
        symbols[0],
        Symbol {
            name: String::new(),
            info: 0,
            shndx: 0,
            value: 0,
            size: 0
        }
    );
    for (symbol, (name, offset, size)) in symbols[1..].iter().zip(expected) {
        assert_eq!(
            *symbol,
            Symbol {
                name: name.into(),
                info: 0x12, // STB_GLOBAL, STT_FUNC
                shndx: 1,
                value: start as u64 + offset,
                size,
            }
        );
    }

    // An empty region gives a valid image with only the null symbol.
    let (_, _, _, symbols) = parse(&build_elf_image(&CodeRegion::default()));
    assert_eq!(symbols.len(), 1);
}

#[test]
fn readelf_accepts_the_image() {
    if Command::new("readelf").arg("--version").output().is_err() {
        eprintln!("readelf not installed; skipping");
        return;
    }
    let image = build_elf_image(&sample_region(0x7f12_ab00_0000));
    let path = std::env::temp_dir().join(format!("backstop-gdb-jit-{}.o", std::process::id()));
    std::fs::write(&path, &image).unwrap();
    let output = Command::new("readelf")
        .args(["-W", "-h", "-S", "-s"])
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "readelf warned: {stderr}\n{stdout}"
    );
    assert!(stdout.contains("EXEC (Executable file)"), "{stdout}");
    assert!(
        stdout.contains(".text             NOBITS          00007f12ab000000"),
        "{stdout}"
    );
    for line in [
        "00007f12ab000000    64 FUNC    GLOBAL DEFAULT    1 module::first",
        "00007f12ab000040   256 FUNC    GLOBAL DEFAULT    1 module::function[7]",
        "00007f12ab000200   256 FUNC    GLOBAL DEFAULT    1 module::with?nul",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
}

/// The entries on GDB's list, head first, after checking the back links and that the list ends.
fn list_entries(descriptor: *const JitDescriptor) -> Vec<*const JitCodeEntry> {
    let mut entries = Vec::new();
    // SAFETY: the caller holds LIST_LOCK, and only this test binary registers anything, so the list does not
    // change while we walk it and every entry on it is live.
    unsafe {
        assert_eq!((*descriptor).version, 1);
        let mut previous: *const JitCodeEntry = std::ptr::null();
        let mut entry: *const JitCodeEntry = (*descriptor).first_entry;
        while !entry.is_null() {
            assert_eq!(
                (*entry).prev_entry.cast_const(),
                previous,
                "broken back link"
            );
            entries.push(entry);
            assert!(entries.len() < 100_000, "the list does not end");
            previous = entry;
            entry = (*entry).next_entry;
        }
    }
    entries
}

#[test]
fn registrations_link_and_unlink_in_any_order() {
    let _lock = lock_list();
    #[allow(unused_unsafe)] // Needed before rustc 1.82, unused after.
    // SAFETY: only the address is taken.
    let symbol = unsafe { std::ptr::addr_of!(__jit_debug_descriptor) };
    // Nothing else in this process exports a descriptor, so ours is the one in use.
    assert_eq!(gdb_jit::descriptor(), symbol);
    let descriptor = gdb_jit::descriptor();
    let before = list_entries(descriptor);

    let mut registrations = Vec::new();
    for index in 0..64usize {
        let image = build_elf_image(&sample_region(0x5000_0000_0000 + index * 0x1000));
        let expected = image.clone();
        let registration = GdbJitRegistration::register(image);
        assert_eq!(registration.image(), expected.as_slice());
        let entry = registration.entry_address();
        // SAFETY: LIST_LOCK is held; see `list_entries`.
        unsafe {
            assert_eq!((*descriptor).action_flag, JIT_REGISTER_FN);
            assert_eq!((*descriptor).relevant_entry.cast_const(), entry);
            assert_eq!((*descriptor).first_entry.cast_const(), entry);
            assert_eq!((*entry).symfile_addr, registration.image().as_ptr());
            assert_eq!((*entry).symfile_size, expected.len() as u64);
        }
        registrations.push(registration);
    }
    let mut expected: Vec<_> = registrations
        .iter()
        .rev()
        .map(|r| r.entry_address())
        .collect();
    expected.extend(&before);
    assert_eq!(list_entries(descriptor), expected);

    // Unlink from the middle, the head and the tail of our part, checking the whole list each time.
    let mut order = Vec::new();
    let (mut low, mut high) = (0usize, registrations.len());
    while low < high {
        order.push((low + high) / 2);
        order.push(high - 1);
        order.push(low);
        low += 1;
        high -= 1;
    }
    let mut registrations: Vec<Option<GdbJitRegistration>> =
        registrations.into_iter().map(Some).collect();
    for index in order {
        let Some(registration) = registrations[index].take() else {
            continue;
        };
        let entry = registration.entry_address();
        drop(registration);
        // SAFETY: LIST_LOCK is held; see `list_entries`.
        unsafe {
            assert_eq!((*descriptor).action_flag, JIT_NOACTION);
            assert!((*descriptor).relevant_entry.is_null());
        }
        let entries = list_entries(descriptor);
        assert!(!entries.contains(&entry));
        let mut expected: Vec<_> = registrations
            .iter()
            .rev()
            .flatten()
            .map(|r| r.entry_address())
            .collect();
        expected.extend(&before);
        assert_eq!(entries, expected);
    }
    assert_eq!(list_entries(descriptor), before);
    // The constants match GDB's `jit_actions_t`.
    assert_eq!(
        (JIT_NOACTION, JIT_REGISTER_FN, JIT_UNREGISTER_FN),
        (0, 1, 2)
    );
}

#[test]
fn concurrent_registrations_keep_the_list_whole() {
    let _lock = lock_list();
    let descriptor = gdb_jit::descriptor();
    let before = list_entries(descriptor);
    let region = Arc::new(sample_region(0x5800_0000_0000));
    let threads: Vec<_> = (0..4)
        .map(|thread| {
            let region = Arc::clone(&region);
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for round in 0..2_000usize {
                    held.push(GdbJitRegistration::for_region(&region));
                    if (round + thread) % 3 != 0 {
                        let victim = (round * 7 + thread) % held.len();
                        drop(held.swap_remove(victim));
                    }
                }
                held.len()
            })
        })
        .collect();
    let held: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    // Every thread dropped what it still held on exit; the list is as it was.
    assert!(held > 0);
    assert_eq!(list_entries(descriptor), before);
}

#[test]
fn gdb_names_an_address_in_a_registered_image() {
    if Command::new("gdb").arg("--version").output().is_err() {
        eprintln!("gdb not installed; skipping");
        return;
    }
    let _lock = lock_list();
    // Real memory, so the addresses GDB is asked about exist in this process.
    let code = vec![0xc3u8; 0x300];
    let start = code.as_ptr() as usize;
    let region = sample_region(start);
    let registration = GdbJitRegistration::for_region(&region);
    // GDB reads every registered entry when it attaches, then we ask it about the second function.
    let output = Command::new("gdb")
        .args(["-nx", "-batch", "-iex", "set debuginfod enabled off"])
        .args(["-p", &std::process::id().to_string()])
        .args(["-ex", &format!("info symbol {:#x}", start + 0x48)])
        .args(["-ex", "info functions ^module::"])
        .output()
        .unwrap();
    drop(registration);
    drop(code);
    if std::env::var_os("BACKSTOP_SHOW_GDB").is_some() {
        eprintln!("{}", String::from_utf8_lossy(&output.stdout));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("ptrace: Operation not permitted") || stderr.contains("Could not attach") {
        eprintln!("gdb may not attach to this process here; skipping\n{stderr}");
        return;
    }
    assert!(
        stdout.contains("module::function[7] + 8 in section .text"),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for name in ["module::first", "module::function[7]", "module::with?nul"] {
        assert!(
            stdout.contains(name),
            "missing {name}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
    }
}

/// A fake address range for the live-session test; no memory there is ever touched.
const LIVE_START: usize = 0x5a5a_0000_0000;

/// Run by `gdb_sees_registrations_while_attached` under GDB: registers, stops, unregisters, stops.
#[test]
#[ignore = "runs only under GDB, started by gdb_sees_registrations_while_attached"]
fn gdb_helper_register_then_trap() {
    if std::env::var_os("BACKSTOP_GDB_HELPER").is_none() {
        return;
    }
    let registration = GdbJitRegistration::for_region(&sample_region(LIVE_START));
    // SAFETY: raising SIGTRAP stops the process under GDB, which then continues it; nothing else is affected.
    unsafe { libc::raise(libc::SIGTRAP) };
    drop(registration);
    // SAFETY: as above.
    unsafe { libc::raise(libc::SIGTRAP) };
}

#[test]
fn gdb_sees_registrations_while_attached() {
    if Command::new("gdb").arg("--version").output().is_err() {
        eprintln!("gdb not installed; skipping");
        return;
    }
    let query = format!("info symbol {:#x}", LIVE_START + 0x48);
    let output = Command::new("gdb")
        .args(["-nx", "-batch", "-iex", "set debuginfod enabled off"])
        .args([
            "-ex", "run", "-ex", &query, "-ex", "continue", "-ex", &query,
        ])
        .args(["-ex", "continue", "--args"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "gdb_helper_register_then_trap", "--ignored"])
        .args(["--test-threads=1", "--nocapture"])
        .env("BACKSTOP_GDB_HELPER", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if std::env::var_os("BACKSTOP_SHOW_GDB").is_some() {
        eprintln!("{stdout}\n{stderr}");
    }
    if stderr.contains("ptrace: Operation not permitted") || stderr.contains("Could not attach") {
        eprintln!("gdb may not trace processes here; skipping\n{stderr}");
        return;
    }
    // First stop: the image is registered, so GDB names the address. Second stop: it is gone.
    let named = stdout
        .find("module::function[7] + 8 in section .text")
        .unwrap_or_else(|| {
            panic!("not named while registered\nstdout:\n{stdout}\nstderr:\n{stderr}")
        });
    assert!(
        stdout[named..].contains("No symbol matches"),
        "still named after unregistering\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "the helper did not finish\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}
