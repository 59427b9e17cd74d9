//! Owns `.eh_frame` registration: turning one CIE and its FDEs (gimli's writer types, with absolute addresses)
//! into a zero-terminated `.eh_frame` section, handing it to the system unwinder, and taking it back on drop.
//!
//! libgcc's `__register_frame` takes the start of a whole section; LLVM libunwind's takes a single FDE. Which one
//! we are linked against is decided once at run time (libunwind exports `__unw_add_dynamic_fde`). FDEs are written
//! in ascending address order because libgcc sorts each object on the first unwind after registration, and that
//! sort is much cheaper on input that is already in order.

use std::sync::OnceLock;

use gimli::write::{CommonInformationEntry, EhFrame, EndianVec, FrameDescriptionEntry, FrameTable};
use gimli::LittleEndian;

extern "C" {
    // Both live in libgcc_s (or LLVM libunwind), which std links on Linux.
    fn __register_frame(begin: *const u8);
    fn __deregister_frame(begin: *const u8);
}

/// How the section was handed to the unwinder, so `Drop` can take back exactly that.
#[derive(Debug)]
enum Registered {
    /// The section holds no FDE: there was nothing to register.
    Nothing,
    /// libgcc: one `__register_frame` call for the whole section, at its start.
    WholeSection,
    /// LLVM libunwind: one `__register_frame` call per FDE, at these byte offsets, in registration order.
    EachFde(Vec<usize>),
}

/// One `.eh_frame` section registered with the system unwinder. Deregisters it on drop.
///
/// Drop it *before* freeing the code its FDEs describe: until then, an unwind may read that code's addresses.
#[derive(Debug)]
pub struct EhFrameRegistration {
    /// The section, zero-terminated. Boxed so its address survives moves of `self`; never written after `new`,
    /// because the unwinder keeps pointers into it until we deregister.
    section: Box<[u8]>,
    registered: Registered,
}

/// Where one FDE sits in a written section, and the first code address it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FdeLocation {
    section_offset: usize,
    code_address: u64,
}

impl EhFrameRegistration {
    /// Builds one `.eh_frame` section from `cie` and `fdes` and registers it with the system unwinder.
    ///
    /// Each FDE must carry its absolute code address (`gimli::write::Address::Constant`). The FDEs are written in
    /// ascending address order whatever order they come in. The CIE must use absolute (`DW_EH_PE_absptr`)
    /// pointers, the 32-bit DWARF format and the host's pointer size: the section is registered where it lies in
    /// memory, so a PC-relative pointer computed by gimli (relative to the section's offset 0) would be wrong.
    ///
    /// Returns an error, having registered nothing, if gimli cannot write the section or it fails those checks.
    pub fn new(
        cie: CommonInformationEntry,
        fdes: Vec<FrameDescriptionEntry>,
    ) -> Result<Self, String> {
        reject_relative_pointer_encodings(&cie)?;

        let (section, fde_locations) = write_section_in_address_order(cie, fdes)?;
        let section = section.into_boxed_slice();

        let registered = if fde_locations.is_empty() {
            Registered::Nothing
        } else if unwinder_registers_single_fdes() {
            let offsets: Vec<usize> = fde_locations.iter().map(|fde| fde.section_offset).collect();
            for &offset in &offsets {
                // SAFETY: `offset` is the start of a complete FDE inside `section` (found by parsing it), and the
                // CIE it points to is in the same allocation. `section` is neither freed nor written until `Drop`,
                // which deregisters this exact pointer first.
                unsafe { __register_frame(section[offset..].as_ptr()) };
            }
            Registered::EachFde(offsets)
        } else {
            // SAFETY: `section` is a complete, zero-terminated `.eh_frame` section (parsed back above). It is
            // neither freed nor written until `Drop`, which deregisters this exact pointer first.
            unsafe { __register_frame(section.as_ptr()) };
            Registered::WholeSection
        };

        Ok(EhFrameRegistration {
            section,
            registered,
        })
    }

    /// The registered `.eh_frame` bytes, including the 4-byte zero terminator.
    pub fn eh_frame_bytes(&self) -> &[u8] {
        &self.section
    }
}

impl Drop for EhFrameRegistration {
    fn drop(&mut self) {
        match &self.registered {
            Registered::Nothing => {}
            Registered::WholeSection => {
                // SAFETY: this is the pointer `new` registered, and the section is still alive and unchanged.
                unsafe { __deregister_frame(self.section.as_ptr()) };
            }
            Registered::EachFde(offsets) => {
                // Newest first: the unwinder keeps a list, and removing from its head stays cheap.
                for &offset in offsets.iter().rev() {
                    // SAFETY: `new` registered exactly this FDE pointer; the section is still alive and unchanged.
                    unsafe { __deregister_frame(self.section[offset..].as_ptr()) };
                }
            }
        }
    }
}

/// True when the process's unwinder is LLVM libunwind, whose `__register_frame` takes one FDE rather than a section.
fn unwinder_registers_single_fdes() -> bool {
    static REGISTERS_SINGLE_FDES: OnceLock<bool> = OnceLock::new();
    *REGISTERS_SINGLE_FDES.get_or_init(|| {
        // SAFETY: `dlsym` with `RTLD_DEFAULT` and a NUL-terminated name only looks the symbol up; we never call
        // or dereference the result, we only test it for null.
        let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__unw_add_dynamic_fde".as_ptr()) };
        !symbol.is_null()
    })
}

/// gimli computes a PC-relative pointer relative to the *section offset*, not to where the bytes will live in
/// memory, so only absolute pointers come out right for an in-memory section.
fn reject_relative_pointer_encodings(cie: &CommonInformationEntry) -> Result<(), String> {
    let absolute = |encoding: gimli::DwEhPe| encoding.application() == gimli::DW_EH_PE_absptr;
    if !absolute(cie.fde_address_encoding) {
        return Err(format!(
            "the CIE's FDE address encoding {} is not absolute; in-memory .eh_frame needs DW_EH_PE_absptr",
            cie.fde_address_encoding
        ));
    }
    if let Some((encoding, _)) = cie.personality {
        if !absolute(encoding) {
            return Err(format!(
                "the CIE's personality encoding {encoding} is not absolute; in-memory .eh_frame needs DW_EH_PE_absptr"
            ));
        }
    }
    if let Some(encoding) = cie.lsda_encoding {
        if !absolute(encoding) {
            return Err(format!(
                "the CIE's LSDA encoding {encoding} is not absolute; in-memory .eh_frame needs DW_EH_PE_absptr"
            ));
        }
    }
    Ok(())
}

/// Writes the section with its FDEs in ascending address order, and returns it with where each FDE landed.
///
/// gimli's writer does not expose an FDE's address, so we write once, read the addresses back, and only if they
/// were out of order reorder the FDEs and write again.
fn write_section_in_address_order(
    cie: CommonInformationEntry,
    mut fdes: Vec<FrameDescriptionEntry>,
) -> Result<(Vec<u8>, Vec<FdeLocation>), String> {
    let section = write_section(cie.clone(), fdes.clone())?;
    let locations = locate_fdes(&section)?;
    if locations
        .windows(2)
        .all(|pair| pair[0].code_address <= pair[1].code_address)
    {
        return Ok((section, locations));
    }

    // `locations[i]` describes `fdes[i]`: gimli writes FDEs in the order they were added.
    let mut order: Vec<usize> = (0..fdes.len()).collect();
    order.sort_by_key(|&index| locations[index].code_address);
    let mut slots: Vec<Option<FrameDescriptionEntry>> = fdes.drain(..).map(Some).collect();
    let sorted_fdes: Vec<FrameDescriptionEntry> = order
        .iter()
        .map(|&index| slots[index].take().expect("each index appears once"))
        .collect();

    let section = write_section(cie, sorted_fdes)?;
    let locations = locate_fdes(&section)?;
    Ok((section, locations))
}

/// One CIE, the FDEs in the given order, then the zero terminator gimli leaves out.
fn write_section(
    cie: CommonInformationEntry,
    fdes: Vec<FrameDescriptionEntry>,
) -> Result<Vec<u8>, String> {
    let mut table = FrameTable::default();
    let cie_id = table.add_cie(cie);
    for fde in fdes {
        table.add_fde(cie_id, fde);
    }
    let mut eh_frame = EhFrame(EndianVec::new(LittleEndian));
    table
        .write_eh_frame(&mut eh_frame)
        .map_err(|error| format!("gimli could not write .eh_frame: {error}"))?;
    let mut section = eh_frame.0.into_vec();
    section.extend_from_slice(&[0; 4]);
    Ok(section)
}

/// Parses a written section back: the offset and first code address of every FDE, in section order. Also checks
/// what the system unwinders need and gimli's writer cannot promise: 32-bit format, host-sized pointers.
fn locate_fdes(section: &[u8]) -> Result<Vec<FdeLocation>, String> {
    use gimli::UnwindSection;

    let host_pointer_size = std::mem::size_of::<usize>() as u8;
    let mut reader = gimli::EhFrame::new(section, LittleEndian);
    reader.set_address_size(host_pointer_size);
    let bases = gimli::BaseAddresses::default();
    let mut entries = reader.entries(&bases);
    let mut locations = Vec::new();
    let malformed =
        |error: gimli::Error| format!("the written .eh_frame does not parse back: {error}");
    while let Some(entry) = entries.next().map_err(malformed)? {
        let gimli::CieOrFde::Fde(partial) = entry else {
            continue;
        };
        let fde = partial
            .parse(gimli::EhFrame::cie_from_offset)
            .map_err(malformed)?;
        let encoding = fde.cie().encoding();
        if encoding.format != gimli::Format::Dwarf32 {
            return Err(
                "the CIE uses 64-bit DWARF; system unwinders read 32-bit .eh_frame only"
                    .to_string(),
            );
        }
        if encoding.address_size != host_pointer_size {
            return Err(format!(
                "the CIE's address size is {} bytes; this host's pointers are {host_pointer_size}",
                encoding.address_size
            ));
        }
        locations.push(FdeLocation {
            section_offset: fde.offset(),
            code_address: fde.initial_address(),
        });
    }
    Ok(locations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gimli::write::{Address, CallFrameInstruction};
    use gimli::{Encoding, Format, X86_64};

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

    fn leaf_fde(address: u64, length: u32) -> FrameDescriptionEntry {
        FrameDescriptionEntry::new(Address::Constant(address), length)
    }

    #[test]
    fn fdes_are_written_in_ascending_address_order_at_the_offsets_reported() {
        let addresses = [0x7000_3000u64, 0x7000_1000, 0x7000_2000, 0x7000_0000];
        let fdes = addresses.iter().map(|&a| leaf_fde(a, 0x100)).collect();
        let (section, locations) = write_section_in_address_order(x86_64_cie(), fdes).unwrap();

        let found: Vec<u64> = locations.iter().map(|l| l.code_address).collect();
        assert_eq!(found, [0x7000_0000, 0x7000_1000, 0x7000_2000, 0x7000_3000]);
        assert_eq!(&section[section.len() - 4..], &[0, 0, 0, 0]);

        for location in &locations {
            // An FDE: a non-zero length, then a non-zero CIE pointer, then the absolute address.
            let at = |offset: usize, size: usize| {
                let mut bytes = [0u8; 8];
                bytes[..size].copy_from_slice(&section[offset..offset + size]);
                u64::from_le_bytes(bytes)
            };
            assert_ne!(at(location.section_offset, 4), 0);
            assert_ne!(at(location.section_offset + 4, 4), 0);
            assert_eq!(at(location.section_offset + 8, 8), location.code_address);
        }
    }

    #[test]
    fn an_empty_fde_list_gives_only_the_terminator_and_registers_nothing() {
        let registration = EhFrameRegistration::new(x86_64_cie(), Vec::new()).unwrap();
        assert_eq!(registration.eh_frame_bytes(), &[0, 0, 0, 0]);
        assert!(matches!(registration.registered, Registered::Nothing));
    }

    #[test]
    fn pc_relative_encodings_are_refused() {
        let mut cie = x86_64_cie();
        cie.fde_address_encoding =
            gimli::DwEhPe(gimli::DW_EH_PE_pcrel.0 | gimli::DW_EH_PE_sdata4.0);
        let error = EhFrameRegistration::new(cie, vec![leaf_fde(0x7000_0000, 16)]).unwrap_err();
        assert!(error.contains("not absolute"), "{error}");
    }

    #[test]
    fn a_64_bit_dwarf_cie_is_refused() {
        let encoding = Encoding {
            format: Format::Dwarf64,
            version: 1,
            address_size: 8,
        };
        let cie = CommonInformationEntry::new(encoding, 1, -8, X86_64::RA);
        let error = EhFrameRegistration::new(cie, vec![leaf_fde(0x7000_0000, 16)]).unwrap_err();
        assert!(error.contains("64-bit"), "{error}");
    }
}
