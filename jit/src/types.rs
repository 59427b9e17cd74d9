//! Wasm-level types shared by the compiler and the runtime: value types,
//! function types, and the types of tables, memories and globals. These are
//! the types the public API speaks, so they are small, `Copy` where they can
//! be, and print the way the text format writes them.

use std::fmt;

/// The type of a Wasm value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValType {
    I32,
    I64,
    F32,
    F64,
    V128,
    FuncRef,
    ExternRef,
}

impl ValType {
    /// Whether values of this type are references.
    pub fn is_ref(self) -> bool {
        matches!(self, ValType::FuncRef | ValType::ExternRef)
    }

    pub(crate) fn from_wasmparser(ty: wasmparser::ValType) -> Result<ValType, String> {
        Ok(match ty {
            wasmparser::ValType::I32 => ValType::I32,
            wasmparser::ValType::I64 => ValType::I64,
            wasmparser::ValType::F32 => ValType::F32,
            wasmparser::ValType::F64 => ValType::F64,
            wasmparser::ValType::V128 => ValType::V128,
            wasmparser::ValType::Ref(r) => ValType::from_ref_type(r)?,
        })
    }

    pub(crate) fn from_ref_type(r: wasmparser::RefType) -> Result<ValType, String> {
        if r == wasmparser::RefType::FUNCREF {
            Ok(ValType::FuncRef)
        } else if r == wasmparser::RefType::EXTERNREF {
            Ok(ValType::ExternRef)
        } else {
            Err(format!(
                "unsupported reference type {r:?} (typed function references and GC are not supported)"
            ))
        }
    }
}

impl fmt::Display for ValType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValType::I32 => "i32",
            ValType::I64 => "i64",
            ValType::F32 => "f32",
            ValType::F64 => "f64",
            ValType::V128 => "v128",
            ValType::FuncRef => "funcref",
            ValType::ExternRef => "externref",
        })
    }
}

/// The type of a function: its parameters and results.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct FuncType {
    params: Box<[ValType]>,
    results: Box<[ValType]>,
}

impl FuncType {
    pub fn new(
        params: impl IntoIterator<Item = ValType>,
        results: impl IntoIterator<Item = ValType>,
    ) -> FuncType {
        FuncType {
            params: params.into_iter().collect(),
            results: results.into_iter().collect(),
        }
    }

    pub fn params(&self) -> &[ValType] {
        &self.params
    }

    pub fn results(&self) -> &[ValType] {
        &self.results
    }
}

impl fmt::Display for FuncType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(func")?;
        if !self.params.is_empty() {
            f.write_str(" (param")?;
            for p in self.params.iter() {
                write!(f, " {p}")?;
            }
            f.write_str(")")?;
        }
        if !self.results.is_empty() {
            f.write_str(" (result")?;
            for r in self.results.iter() {
                write!(f, " {r}")?;
            }
            f.write_str(")")?;
        }
        f.write_str(")")
    }
}

/// The type of a table: its element type and limits (in elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TableType {
    pub element: ValType,
    pub minimum: u32,
    pub maximum: Option<u32>,
}

impl fmt::Display for TableType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(table {}", self.minimum)?;
        if let Some(max) = self.maximum {
            write!(f, " {max}")?;
        }
        write!(f, " {})", self.element)
    }
}

/// The type of a linear memory: its limits in 64 KiB pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemoryType {
    pub minimum: u32,
    pub maximum: Option<u32>,
}

impl fmt::Display for MemoryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(memory {}", self.minimum)?;
        if let Some(max) = self.maximum {
            write!(f, " {max}")?;
        }
        f.write_str(")")
    }
}

/// The type of a global: its content type and mutability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GlobalType {
    pub content: ValType,
    pub mutable: bool,
}

impl fmt::Display for GlobalType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mutable {
            write!(f, "(global (mut {}))", self.content)
        } else {
            write!(f, "(global {})", self.content)
        }
    }
}

/// The type of anything a module can import or export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExternType {
    Func(FuncType),
    Table(TableType),
    Memory(MemoryType),
    Global(GlobalType),
}

impl ExternType {
    /// What kind of entity this is, as a word: "function", "table",
    /// "memory" or "global".
    pub fn kind_name(&self) -> &'static str {
        match self {
            ExternType::Func(_) => "function",
            ExternType::Table(_) => "table",
            ExternType::Memory(_) => "memory",
            ExternType::Global(_) => "global",
        }
    }
}

impl fmt::Display for ExternType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExternType::Func(t) => t.fmt(f),
            ExternType::Table(t) => t.fmt(f),
            ExternType::Memory(t) => t.fmt(f),
            ExternType::Global(t) => t.fmt(f),
        }
    }
}

/// Why a trap happened. The numeric values are what the compiler records per
/// trap site in the code registry, so they are stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TrapCode {
    StackOverflow = 1,
    MemoryOutOfBounds = 2,
    TableOutOfBounds = 3,
    IndirectCallToNull = 4,
    BadSignature = 5,
    IntegerDivisionByZero = 6,
    IntegerOverflow = 7,
    BadConversionToInteger = 8,
    UnreachableCodeReached = 9,
    NullReference = 10,
    Interrupt = 11,
    HeapMisaligned = 12,
}

impl TrapCode {
    /// Decodes a code recorded in the registry.
    pub fn from_u8(code: u8) -> Option<TrapCode> {
        use TrapCode::*;
        Some(match code {
            1 => StackOverflow,
            2 => MemoryOutOfBounds,
            3 => TableOutOfBounds,
            4 => IndirectCallToNull,
            5 => BadSignature,
            6 => IntegerDivisionByZero,
            7 => IntegerOverflow,
            8 => BadConversionToInteger,
            9 => UnreachableCodeReached,
            10 => NullReference,
            11 => Interrupt,
            12 => HeapMisaligned,
            _ => return None,
        })
    }

    /// The Cranelift trap code compiled code uses for this trap: Cranelift's
    /// own codes where it has one (its instructions raise those by
    /// themselves), a user code numbered as `TrapCode` otherwise.
    pub(crate) fn to_cranelift(self) -> cranelift_codegen::ir::TrapCode {
        use cranelift_codegen::ir::TrapCode as C;
        match self {
            TrapCode::StackOverflow => C::STACK_OVERFLOW,
            TrapCode::MemoryOutOfBounds => C::HEAP_OUT_OF_BOUNDS,
            TrapCode::IntegerOverflow => C::INTEGER_OVERFLOW,
            TrapCode::IntegerDivisionByZero => C::INTEGER_DIVISION_BY_ZERO,
            TrapCode::BadConversionToInteger => C::BAD_CONVERSION_TO_INTEGER,
            other => C::unwrap_user(other as u8),
        }
    }

    /// The inverse of `to_cranelift`; `None` for a code compiled code never
    /// uses.
    pub(crate) fn from_cranelift(code: cranelift_codegen::ir::TrapCode) -> Option<TrapCode> {
        use cranelift_codegen::ir::TrapCode as C;
        Some(match code {
            C::STACK_OVERFLOW => TrapCode::StackOverflow,
            C::HEAP_OUT_OF_BOUNDS => TrapCode::MemoryOutOfBounds,
            C::INTEGER_OVERFLOW => TrapCode::IntegerOverflow,
            C::INTEGER_DIVISION_BY_ZERO => TrapCode::IntegerDivisionByZero,
            C::BAD_CONVERSION_TO_INTEGER => TrapCode::BadConversionToInteger,
            other => {
                let user = TrapCode::from_u8(other.as_raw().get())?;
                (user.to_cranelift() == other).then_some(user)?
            }
        })
    }

    /// The message the Wasm specification's test suite uses for this trap.
    pub fn message(self) -> &'static str {
        match self {
            TrapCode::StackOverflow => "call stack exhausted",
            TrapCode::MemoryOutOfBounds => "out of bounds memory access",
            TrapCode::TableOutOfBounds => "out of bounds table access",
            TrapCode::IndirectCallToNull => "uninitialized element",
            TrapCode::BadSignature => "indirect call type mismatch",
            TrapCode::IntegerDivisionByZero => "integer divide by zero",
            TrapCode::IntegerOverflow => "integer overflow",
            TrapCode::BadConversionToInteger => "invalid conversion to integer",
            TrapCode::UnreachableCodeReached => "unreachable",
            TrapCode::NullReference => "null reference",
            TrapCode::Interrupt => "interrupted",
            TrapCode::HeapMisaligned => "misaligned memory access",
        }
    }
}

impl fmt::Display for TrapCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}
