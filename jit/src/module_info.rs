//! Reading a Wasm binary into `ModuleInfo`: every section except the code,
//! validated with exactly the feature set the engine enables (`Proposals`:
//! Wasm 2.0 and the later proposals Backstop runs), plus the function bodies
//! (with their validators) handed on to the compiler. This is the one place
//! that walks the binary; nothing here generates code.

use crate::types::{FuncType, GlobalType, MemoryType, TableType, ValType};
use crate::CompileError;
use std::collections::HashMap;
use wasmparser::{
    CompositeInnerType, ElementItems, ElementKind, ExternalKind, FuncValidator, FunctionBody,
    Operator, Parser, Payload, TypeRef, Validator, ValidatorResources, WasmFeatures,
};

/// The Wasm proposals beyond 2.0 that an engine compiles, each one a
/// `Config` switch. Wasm 2.0 itself (MVP, mutable globals, sign extension,
/// non-trapping float-to-int, multi-value, reference types, bulk memory,
/// 128-bit SIMD) is always on. A proposal Backstop does not run yet has no
/// field: modules that need it are refused as `CompileError::Unsupported`
/// naming it (`proposals`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Proposals {
    /// Extended constant expressions: `i32`/`i64` `add`, `sub` and `mul`
    /// in constant expressions.
    pub extended_const: bool,
    /// Multiple memories: any number of memories per module, and a memory
    /// index in every memory instruction.
    pub multi_memory: bool,
    /// Relaxed SIMD, with one fixed result per operator
    /// (`translate/relaxed_simd.rs`).
    pub relaxed_simd: bool,
}

impl Default for Proposals {
    /// Every proposal Backstop runs, on.
    fn default() -> Self {
        Proposals {
            extended_const: true,
            multi_memory: true,
            relaxed_simd: true,
        }
    }
}

impl Proposals {
    /// The validator's feature set for these proposals.
    pub fn features(&self) -> WasmFeatures {
        let mut features = WasmFeatures::WASM2;
        features.set(WasmFeatures::EXTENDED_CONST, self.extended_const);
        features.set(WasmFeatures::MULTI_MEMORY, self.multi_memory);
        features.set(WasmFeatures::RELAXED_SIMD, self.relaxed_simd);
        features
    }
}

/// An instruction of a constant expression that pushes one value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ConstValue {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
    V128(u128),
    RefNull(ValType),
    RefFunc(u32),
    GlobalGet(u32),
}

/// One instruction of an extended constant expression: a value, or the
/// arithmetic on the two values below it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ConstOp {
    Push(ConstValue),
    Binary(ConstBinary),
}

/// The arithmetic extended constant expressions allow.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ConstBinary {
    I32Add,
    I32Sub,
    I32Mul,
    I64Add,
    I64Sub,
    I64Mul,
}

/// A constant expression: almost always one instruction (all Wasm 2.0
/// allows), kept inline; extended constant expressions keep their
/// instructions in order, to be run on a value stack.
#[derive(Clone, Debug, PartialEq)]
pub enum ConstExpr {
    Single(ConstValue),
    Sequence(Box<[ConstOp]>),
}

/// What an import brings in.
#[derive(Clone, Debug)]
pub enum ImportKind {
    /// A function, by type index.
    Func(u32),
    Table(TableType),
    Memory(MemoryType),
    Global(GlobalType),
}

#[derive(Clone, Debug)]
pub struct Import {
    pub module: String,
    pub name: String,
    pub kind: ImportKind,
}

/// What kind of entity an export names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportKind {
    Func,
    Table,
    Memory,
    Global,
}

#[derive(Clone, Debug)]
pub struct Export {
    pub name: String,
    pub kind: ExportKind,
    pub index: u32,
}

#[derive(Clone, Debug)]
pub enum ElementMode {
    Active { table: u32, offset: ConstExpr },
    Passive,
    Declared,
}

#[derive(Clone, Debug)]
pub struct ElementSegment {
    pub mode: ElementMode,
    pub element_type: ValType,
    pub items: Vec<ConstExpr>,
}

#[derive(Clone, Debug)]
pub enum DataMode {
    Active { memory: u32, offset: ConstExpr },
    Passive,
}

#[derive(Clone, Debug)]
pub struct DataSegment {
    pub mode: DataMode,
    pub bytes: Vec<u8>,
}

/// Everything about a module except its compiled code.
#[derive(Debug, Default)]
pub struct ModuleInfo {
    pub name: Option<String>,
    pub types: Vec<FuncType>,
    pub imports: Vec<Import>,
    /// Type index of every function, imported ones first.
    pub functions: Vec<u32>,
    pub num_imported_functions: u32,
    /// Every table, imported ones first.
    pub tables: Vec<TableType>,
    pub num_imported_tables: u32,
    /// Every memory, imported ones first.
    pub memories: Vec<MemoryType>,
    pub num_imported_memories: u32,
    /// Every global, imported ones first.
    pub globals: Vec<GlobalType>,
    pub num_imported_globals: u32,
    /// Initialisers of the defined globals (index minus `num_imported_globals`).
    pub global_inits: Vec<ConstExpr>,
    pub exports: Vec<Export>,
    pub start: Option<u32>,
    pub elements: Vec<ElementSegment>,
    pub data: Vec<DataSegment>,
    /// Function names from the name section.
    pub function_names: HashMap<u32, String>,
    /// The DWARF custom sections (`.debug_line`, `.debug_info`, ...), by
    /// name, when the producer emitted them (e.g. `clang -g`).
    pub debug_sections: HashMap<String, Vec<u8>>,
    /// Offset of the code section's contents in the binary: DWARF addresses
    /// of Wasm code are relative to it.
    pub code_section_offset: u32,
}

impl ModuleInfo {
    pub fn func_type(&self, func_index: u32) -> &FuncType {
        &self.types[self.functions[func_index as usize] as usize]
    }

    pub fn num_defined_functions(&self) -> u32 {
        self.functions.len() as u32 - self.num_imported_functions
    }

    /// The function's name from the name section, if it has one.
    pub fn function_name(&self, func_index: u32) -> Option<&str> {
        self.function_names.get(&func_index).map(|s| s.as_str())
    }

    pub fn export(&self, name: &str) -> Option<&Export> {
        self.exports.iter().find(|e| e.name == name)
    }
}

/// A function body still to compile, with the validator that checks it.
pub struct PendingBody<'data> {
    pub func_index: u32,
    pub validator: FuncValidator<ValidatorResources>,
    pub body: FunctionBody<'data>,
}

fn invalid(e: wasmparser::BinaryReaderError) -> CompileError {
    CompileError::Invalid(format!("{} (at offset {:#x})", e.message(), e.offset()))
}

fn const_op(op: Operator<'_>) -> Result<ConstOp, CompileError> {
    Ok(match op {
        Operator::I32Const { value } => ConstOp::Push(ConstValue::I32(value)),
        Operator::I64Const { value } => ConstOp::Push(ConstValue::I64(value)),
        Operator::F32Const { value } => ConstOp::Push(ConstValue::F32(value.bits())),
        Operator::F64Const { value } => ConstOp::Push(ConstValue::F64(value.bits())),
        Operator::V128Const { value } => {
            ConstOp::Push(ConstValue::V128(u128::from_le_bytes(*value.bytes())))
        }
        Operator::RefNull { hty } => ConstOp::Push(ConstValue::RefNull(match hty {
            wasmparser::HeapType::Abstract {
                ty: wasmparser::AbstractHeapType::Func,
                ..
            } => ValType::FuncRef,
            wasmparser::HeapType::Abstract {
                ty: wasmparser::AbstractHeapType::Extern,
                ..
            } => ValType::ExternRef,
            other => {
                return Err(CompileError::Unsupported(format!(
                    "reference type {other:?} in a constant expression"
                )))
            }
        })),
        Operator::RefFunc { function_index } => ConstOp::Push(ConstValue::RefFunc(function_index)),
        Operator::GlobalGet { global_index } => ConstOp::Push(ConstValue::GlobalGet(global_index)),
        Operator::I32Add => ConstOp::Binary(ConstBinary::I32Add),
        Operator::I32Sub => ConstOp::Binary(ConstBinary::I32Sub),
        Operator::I32Mul => ConstOp::Binary(ConstBinary::I32Mul),
        Operator::I64Add => ConstOp::Binary(ConstBinary::I64Add),
        Operator::I64Sub => ConstOp::Binary(ConstBinary::I64Sub),
        Operator::I64Mul => ConstOp::Binary(ConstBinary::I64Mul),
        other => {
            return Err(CompileError::Unsupported(format!(
                "instruction {other:?} in a constant expression"
            )))
        }
    })
}

/// A validated constant expression (the validator has checked its
/// instructions and types before this reads it).
fn const_expr(expr: &wasmparser::ConstExpr<'_>) -> Result<ConstExpr, CompileError> {
    let mut ops = Vec::with_capacity(1);
    let mut reader = expr.get_operators_reader();
    loop {
        match reader.read().map_err(invalid)? {
            Operator::End => break,
            op => ops.push(const_op(op)?),
        }
    }
    match ops.as_slice() {
        [ConstOp::Push(value)] => Ok(ConstExpr::Single(*value)),
        [] | [_] => Err(CompileError::Invalid(
            "a constant expression must leave one value".into(),
        )),
        _ => Ok(ConstExpr::Sequence(ops.into_boxed_slice())),
    }
}

fn table_type(ty: &wasmparser::TableType) -> Result<TableType, CompileError> {
    Ok(TableType {
        element: ValType::from_ref_type(ty.element_type).map_err(CompileError::Unsupported)?,
        minimum: u32::try_from(ty.initial)
            .map_err(|_| CompileError::Unsupported("64-bit table sizes".into()))?,
        maximum: ty.maximum.map(|m| u32::try_from(m).unwrap_or(u32::MAX)),
    })
}

fn memory_type(ty: &wasmparser::MemoryType) -> Result<MemoryType, CompileError> {
    if ty.memory64 {
        return Err(CompileError::Unsupported("memory64".into()));
    }
    if ty.shared {
        return Err(CompileError::Unsupported("shared memory (threads)".into()));
    }
    Ok(MemoryType {
        minimum: ty.initial as u32,
        maximum: ty.maximum.map(|m| m as u32),
    })
}

fn global_type(ty: &wasmparser::GlobalType) -> Result<GlobalType, CompileError> {
    Ok(GlobalType {
        content: ValType::from_wasmparser(ty.content_type).map_err(CompileError::Unsupported)?,
        mutable: ty.mutable,
    })
}

/// Reads and validates every section of `wasm`. Returns the module's
/// description and its function bodies, which still need validating and
/// compiling (`crate::compile` does both, in parallel).
pub fn parse(
    wasm: &[u8],
    proposals: Proposals,
) -> Result<(ModuleInfo, Vec<PendingBody<'_>>), CompileError> {
    let features = proposals.features();
    let mut validator = Validator::new_with_features(features);
    let mut info = ModuleInfo::default();
    let mut bodies = Vec::new();

    // The parser's own feature set decides how bytes are read (e.g. whether
    // the reserved byte of memory.size is a LEB128 memory index), so it must
    // match the validator's, not wasmparser's default of "everything".
    let mut parser = Parser::new(0);
    parser.set_features(features);
    for payload in parser.parse_all(wasm) {
        let payload = payload.map_err(invalid)?;
        match payload {
            Payload::Version {
                num,
                encoding,
                ref range,
            } => {
                // A header that is no known version is malformed; a real
                // component header is a feature we do not support.
                let version = validator.version(num, encoding, range).map_err(invalid);
                if encoding == wasmparser::Encoding::Component && num == 0xd {
                    return Err(CompileError::Unsupported(
                        "the component model (this is a component, not a core module)".into(),
                    ));
                }
                version?;
            }
            Payload::TypeSection(reader) => {
                validator.type_section(&reader).map_err(invalid)?;
                for group in reader {
                    for sub in group.map_err(invalid)?.into_types() {
                        match &sub.composite_type.inner {
                            CompositeInnerType::Func(f) => {
                                let params = f
                                    .params()
                                    .iter()
                                    .map(|t| ValType::from_wasmparser(*t))
                                    .collect::<Result<Vec<_>, _>>()
                                    .map_err(CompileError::Unsupported)?;
                                let results = f
                                    .results()
                                    .iter()
                                    .map(|t| ValType::from_wasmparser(*t))
                                    .collect::<Result<Vec<_>, _>>()
                                    .map_err(CompileError::Unsupported)?;
                                info.types.push(FuncType::new(params, results));
                            }
                            _ => {
                                return Err(CompileError::Unsupported(
                                    "GC struct and array types".into(),
                                ))
                            }
                        }
                    }
                }
            }
            Payload::ImportSection(reader) => {
                validator.import_section(&reader).map_err(invalid)?;
                for import in reader.into_imports() {
                    let import = import.map_err(invalid)?;
                    let kind = match import.ty {
                        TypeRef::Func(t) => {
                            info.functions.push(t);
                            info.num_imported_functions += 1;
                            ImportKind::Func(t)
                        }
                        TypeRef::Table(t) => {
                            let t = table_type(&t)?;
                            info.tables.push(t);
                            info.num_imported_tables += 1;
                            ImportKind::Table(t)
                        }
                        TypeRef::Memory(m) => {
                            let m = memory_type(&m)?;
                            info.memories.push(m);
                            info.num_imported_memories += 1;
                            ImportKind::Memory(m)
                        }
                        TypeRef::Global(g) => {
                            let g = global_type(&g)?;
                            info.globals.push(g);
                            info.num_imported_globals += 1;
                            ImportKind::Global(g)
                        }
                        TypeRef::Tag(_) => {
                            return Err(CompileError::Unsupported("exception handling tags".into()))
                        }
                        TypeRef::FuncExact(_) => {
                            return Err(CompileError::Unsupported(
                                "custom descriptors (exact function imports)".into(),
                            ))
                        }
                    };
                    info.imports.push(Import {
                        module: import.module.to_string(),
                        name: import.name.to_string(),
                        kind,
                    });
                }
            }
            Payload::FunctionSection(reader) => {
                validator.function_section(&reader).map_err(invalid)?;
                for ty in reader {
                    info.functions.push(ty.map_err(invalid)?);
                }
            }
            Payload::TableSection(reader) => {
                validator.table_section(&reader).map_err(invalid)?;
                for table in reader {
                    let table = table.map_err(invalid)?;
                    if !matches!(table.init, wasmparser::TableInit::RefNull) {
                        return Err(CompileError::Unsupported(
                            "table initialiser expressions (function references)".into(),
                        ));
                    }
                    info.tables.push(table_type(&table.ty)?);
                }
            }
            Payload::MemorySection(reader) => {
                validator.memory_section(&reader).map_err(invalid)?;
                for memory in reader {
                    info.memories.push(memory_type(&memory.map_err(invalid)?)?);
                }
            }
            Payload::TagSection(reader) => {
                validator.tag_section(&reader).map_err(invalid)?;
                return Err(CompileError::Unsupported("exception handling tags".into()));
            }
            Payload::GlobalSection(reader) => {
                validator.global_section(&reader).map_err(invalid)?;
                for global in reader {
                    let global = global.map_err(invalid)?;
                    info.globals.push(global_type(&global.ty)?);
                    info.global_inits.push(const_expr(&global.init_expr)?);
                }
            }
            Payload::ExportSection(reader) => {
                validator.export_section(&reader).map_err(invalid)?;
                for export in reader {
                    let export = export.map_err(invalid)?;
                    let kind = match export.kind {
                        ExternalKind::Func => ExportKind::Func,
                        ExternalKind::Table => ExportKind::Table,
                        ExternalKind::Memory => ExportKind::Memory,
                        ExternalKind::Global => ExportKind::Global,
                        ExternalKind::Tag => {
                            return Err(CompileError::Unsupported("exception handling tags".into()))
                        }
                        ExternalKind::FuncExact => {
                            return Err(CompileError::Unsupported(
                                "custom descriptors (exact function exports)".into(),
                            ))
                        }
                    };
                    info.exports.push(Export {
                        name: export.name.to_string(),
                        kind,
                        index: export.index,
                    });
                }
            }
            Payload::StartSection { func, ref range } => {
                validator.start_section(func, range).map_err(invalid)?;
                info.start = Some(func);
            }
            Payload::ElementSection(reader) => {
                validator.element_section(&reader).map_err(invalid)?;
                for element in reader {
                    let element = element.map_err(invalid)?;
                    let mode = match element.kind {
                        ElementKind::Active {
                            table_index,
                            offset_expr,
                        } => ElementMode::Active {
                            table: table_index.unwrap_or(0),
                            offset: const_expr(&offset_expr)?,
                        },
                        ElementKind::Passive => ElementMode::Passive,
                        ElementKind::Declared => ElementMode::Declared,
                    };
                    let (element_type, items) = match element.items {
                        ElementItems::Functions(funcs) => {
                            let mut items = Vec::new();
                            for f in funcs {
                                items.push(ConstExpr::Single(ConstValue::RefFunc(
                                    f.map_err(invalid)?,
                                )));
                            }
                            (ValType::FuncRef, items)
                        }
                        ElementItems::Expressions(ty, exprs) => {
                            let mut items = Vec::new();
                            for e in exprs {
                                items.push(const_expr(&e.map_err(invalid)?)?);
                            }
                            (
                                ValType::from_ref_type(ty).map_err(CompileError::Unsupported)?,
                                items,
                            )
                        }
                    };
                    info.elements.push(ElementSegment {
                        mode,
                        element_type,
                        items,
                    });
                }
            }
            Payload::DataCountSection { count, ref range } => {
                validator
                    .data_count_section(count, range)
                    .map_err(invalid)?;
            }
            Payload::DataSection(reader) => {
                validator.data_section(&reader).map_err(invalid)?;
                for data in reader {
                    let data = data.map_err(invalid)?;
                    let mode = match data.kind {
                        wasmparser::DataKind::Active {
                            memory_index,
                            offset_expr,
                        } => DataMode::Active {
                            memory: memory_index,
                            offset: const_expr(&offset_expr)?,
                        },
                        wasmparser::DataKind::Passive => DataMode::Passive,
                    };
                    info.data.push(DataSegment {
                        mode,
                        bytes: data.data.to_vec(),
                    });
                }
            }
            Payload::CodeSectionStart {
                ref unchecked_range,
                ..
            } => {
                info.code_section_offset = unchecked_range.start as u32;
                validator
                    .code_section_start(unchecked_range)
                    .map_err(invalid)?;
            }
            Payload::CodeSectionEntry(body) => {
                let func_validator = validator
                    .code_section_entry(&body)
                    .map_err(invalid)?
                    .into_validator(Default::default());
                let func_index = info.num_imported_functions + bodies.len() as u32;
                bodies.push(PendingBody {
                    func_index,
                    validator: func_validator,
                    body,
                });
            }
            Payload::CustomSection(reader) => {
                if reader.name().starts_with(".debug_") {
                    info.debug_sections
                        .insert(reader.name().to_string(), reader.data().to_vec());
                }
                if let wasmparser::KnownCustom::Name(names) = reader.as_known() {
                    // A malformed name section is not an error: names are
                    // debugging aids, so keep whatever could be read.
                    let _ = read_names(names, &mut info);
                }
            }
            Payload::End(offset) => {
                validator.end(offset).map_err(invalid)?;
            }
            other => {
                // Everything else is a proposal we do not support; let the
                // validator name it, or name it ourselves.
                validator.payload(&other).map_err(invalid)?;
                return Err(CompileError::Unsupported(format!(
                    "section {:?}",
                    std::mem::discriminant(&other)
                )));
            }
        }
    }
    Ok((info, bodies))
}

fn read_names(
    names: wasmparser::NameSectionReader<'_>,
    info: &mut ModuleInfo,
) -> wasmparser::Result<()> {
    for name in names {
        match name? {
            wasmparser::Name::Module { name, .. } => info.name = Some(name.to_string()),
            wasmparser::Name::Function(map) => {
                for naming in map {
                    let naming = naming?;
                    info.function_names
                        .insert(naming.index, naming.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Validates `wasm` completely, function bodies included, without compiling.
/// A module that needs a proposal `proposals` leaves off is
/// `CompileError::Unsupported`, naming it.
pub fn validate(wasm: &[u8], proposals: Proposals) -> Result<(), CompileError> {
    let validate_all = || {
        let (_, bodies) = parse(wasm, proposals)?;
        for mut pending in bodies {
            pending.validator.validate(&pending.body).map_err(invalid)?;
        }
        Ok(())
    };
    validate_all().map_err(|e| crate::name_unsupported(wasm, proposals, e))
}
