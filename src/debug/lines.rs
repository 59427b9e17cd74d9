//! Wasm offsets to source lines, for modules that carry DWARF (`clang -g`
//! emits `.debug_line` and friends as custom sections).
//!
//! When a module is compiled, its line programs are read once (with gimli)
//! into a table sorted by address, where an address is an offset into the
//! code section's contents, as DWARF for Wasm defines it. The table is
//! published in a process-wide map keyed by the module's code address, so a
//! backtrace frame (which knows only a PC and its registry region) can find
//! its file and line. The entry is removed when the module is dropped.

use backstop_jit::ModuleInfo;
use backstop_unwind::gimli;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The file index of a row that ends a sequence: addresses from it on have
/// no line (until the next sequence starts).
const NO_LINE: u32 = u32::MAX;

/// One module's rows: (code-section offset, file index, line), sorted by
/// address; at equal addresses a real row sorts after an end marker.
pub(crate) struct LineTable {
    rows: Vec<(u64, u32, u32)>,
    files: Vec<String>,
    code_section_offset: u32,
}

impl LineTable {
    /// Reads the module's line programs; `None` if it has no usable DWARF.
    pub(crate) fn from_module(info: &ModuleInfo) -> Option<LineTable> {
        if !info.debug_sections.contains_key(".debug_line") {
            return None;
        }
        let empty: &[u8] = &[];
        let load = |id: gimli::SectionId| -> Result<_, gimli::Error> {
            let data = info
                .debug_sections
                .get(id.name())
                .map(|v| &v[..])
                .unwrap_or(empty);
            Ok(gimli::EndianSlice::new(data, gimli::LittleEndian))
        };
        let dwarf = gimli::Dwarf::load(load).ok()?;
        let mut table = LineTable {
            rows: Vec::new(),
            files: Vec::new(),
            code_section_offset: info.code_section_offset,
        };
        let mut file_ids: HashMap<String, u32> = HashMap::new();
        let mut units = dwarf.units();
        while let Ok(Some(header)) = units.next() {
            let Ok(unit) = dwarf.unit(header) else {
                continue;
            };
            let Some(program) = unit.line_program.clone() else {
                continue;
            };
            let mut rows = program.rows();
            while let Ok(Some((header, row))) = rows.next_row() {
                if row.end_sequence() {
                    // The first address past this sequence: code from here
                    // on belongs to no line of this sequence.
                    table.rows.push((row.address(), NO_LINE, 0));
                    continue;
                }
                let Some(line) = row.line() else {
                    continue;
                };
                let path = row
                    .file(header)
                    .map(|file| file_path(&dwarf, &unit, header, file))
                    .unwrap_or_else(|| "<unknown>".to_string());
                let next_id = file_ids.len() as u32;
                let id = *file_ids.entry(path.clone()).or_insert_with(|| {
                    table.files.push(path);
                    next_id
                });
                table.rows.push((row.address(), id, line.get() as u32));
            }
        }
        // A sequence may start where another ends: the start must win.
        table.rows.sort_by_key(|r| (r.0, r.1 != NO_LINE));
        (!table.rows.is_empty()).then_some(table)
    }

    /// The file and line of the instruction at `wasm_offset` (an offset in
    /// the module's binary).
    pub(crate) fn lookup(&self, wasm_offset: u32) -> Option<(&str, u32)> {
        let address = u64::from(wasm_offset.checked_sub(self.code_section_offset)?);
        let index = self
            .rows
            .partition_point(|r| r.0 <= address)
            .checked_sub(1)?;
        let (_, file, line) = self.rows[index];
        if file == NO_LINE {
            return None;
        }
        Some((&self.files[file as usize], line))
    }
}

/// The full path of a line-program file entry: directory joined with name.
fn file_path<R: gimli::Reader>(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    header: &gimli::LineProgramHeader<R>,
    file: &gimli::FileEntry<R>,
) -> String {
    let text = |attr| -> Option<String> {
        let value = dwarf.attr_string(unit, attr).ok()?;
        Some(value.to_string_lossy().ok()?.into_owned())
    };
    let name = text(file.path_name()).unwrap_or_default();
    if name.starts_with('/') {
        return name;
    }
    match file.directory(header).and_then(text) {
        Some(dir) if !dir.is_empty() => format!("{}/{name}", dir.trim_end_matches('/')),
        _ => name,
    }
}

type Tables = RwLock<HashMap<usize, Arc<LineTable>>>;

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(Default::default)
}

/// A module's line table published for backtraces; removed on drop.
pub(crate) struct LineTableRegistration {
    code_base: usize,
}

impl LineTableRegistration {
    pub(crate) fn publish(code_base: usize, table: LineTable) -> LineTableRegistration {
        tables().write().insert(code_base, Arc::new(table));
        LineTableRegistration { code_base }
    }
}

impl Drop for LineTableRegistration {
    fn drop(&mut self) {
        tables().write().remove(&self.code_base);
    }
}

/// The line table of the module whose code starts at `code_base`, if it
/// carries DWARF.
pub(crate) fn line_table(code_base: usize) -> Option<Arc<LineTable>> {
    tables().read().get(&code_base).cloned()
}
