//! What running a module looked like, in a form two engines can be
//! compared by: one line per event (instantiation, each export call with
//! its arguments and results or trap, and after each call the state of every
//! exported global, memory and table). Both sides write values through the
//! same `Value`, so equal behaviour gives equal lines.

pub use backstop::ValType;
use std::fmt;

/// An engine-neutral value: floats as bits, references as null or not (an
/// identity cannot be compared across engines).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
    V128(u128),
    FuncRef { null: bool },
    ExternRef { null: bool },
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::I32(v) => write!(f, "i32:{v}"),
            Value::I64(v) => write!(f, "i64:{v}"),
            Value::F32(v) => write!(f, "f32:{v:#010x}"),
            Value::F64(v) => write!(f, "f64:{v:#018x}"),
            Value::V128(v) => write!(f, "v128:{v:#034x}"),
            Value::FuncRef { null } => f.write_str(if *null { "funcref:null" } else { "funcref" }),
            Value::ExternRef { null } => {
                f.write_str(if *null { "externref:null" } else { "externref" })
            }
        }
    }
}

/// The deterministic argument for parameter `i` of call number `call`:
/// small numbers, edges and bit patterns in turn, null references.
pub fn argument(ty: ValType, call: usize, i: usize) -> Value {
    const INTS: [i64; 8] = [0, 1, -1, 7, 0x7fff_ffff, i64::MIN, 65536, 3];
    let n = INTS[(call * 3 + i) % INTS.len()];
    match ty {
        ValType::I32 => Value::I32(n as i32),
        ValType::I64 => Value::I64(n),
        ValType::F32 => Value::F32((n as f32).to_bits()),
        ValType::F64 => Value::F64((n as f64).to_bits()),
        ValType::V128 => {
            Value::V128((n as u128).wrapping_mul(0x0101_0101_0101_0101_0101_0101_0101_0101))
        }
        ValType::FuncRef => Value::FuncRef { null: true },
        ValType::ExternRef => Value::ExternRef { null: true },
    }
}

fn values(values: &[Value]) -> String {
    values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// FNV-1a over a memory's bytes.
fn hash(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

// The lines of a trace. Both engines write them through these, so that a
// difference in a trace is a difference in behaviour, not in wording.

/// A call of export `name` with `args`, and how it ended (`returned` or
/// `trapped`).
pub fn call_line(name: &str, args: &[Value], outcome: &str) -> String {
    format!("call {name:?}({}) {outcome}", values(args))
}

pub fn returned(results: &[Value]) -> String {
    format!("-> {}", values(results))
}

/// A trap, by the engine's trap code name (both engines name the codes
/// alike: `MemoryOutOfBounds`, `UnreachableCodeReached`, ...).
pub fn trapped(code: impl fmt::Debug) -> String {
    format!("trap {code:?}")
}

pub fn global_line(name: &str, value: Value) -> String {
    format!("  global {name:?} = {value}")
}

pub fn memory_line(name: &str, bytes: &[u8]) -> String {
    format!(
        "  memory {name:?}: {} bytes, hash {:#x}",
        bytes.len(),
        hash(bytes)
    )
}

/// A table by its size and which elements are null (references have no
/// identity both engines share).
/// `elements` are the table's elements in order (`None` where the engine
/// could not read one).
pub fn table_line(name: &str, elements: impl Iterator<Item = Option<Value>>) -> String {
    let nulls: Vec<u8> = elements
        .map(|v| match v {
            Some(Value::FuncRef { null: true } | Value::ExternRef { null: true }) => b'0',
            _ => b'1',
        })
        .collect();
    format!(
        "  table {name:?}: {} elements, hash {:#x}",
        nulls.len(),
        hash(&nulls)
    )
}

/// One engine's run of a module.
#[derive(Debug, Default)]
pub struct Trace {
    pub lines: Vec<String>,
    /// Set when the run hit something the engines may legitimately do
    /// differently (a stack overflow, whose depth is each engine's own), so
    /// the comparison stops at the last line before it.
    pub inconclusive: Option<String>,
    /// The module's export names in order (Backstop's reading), so the
    /// oracle calls the same exports in the same order.
    pub exports: Vec<String>,
}

/// Compares two traces; a difference is a finding, named by the first line
/// where they part.
pub fn compare(backstop: &Trace, oracle: &Trace) -> Result<(), String> {
    let common = backstop.lines.len().min(oracle.lines.len());
    for i in 0..common {
        if backstop.lines[i] != oracle.lines[i] {
            return Err(format!(
                "line {i}: backstop `{}`, oracle `{}`",
                backstop.lines[i], oracle.lines[i]
            ));
        }
    }
    let stopped = backstop.inconclusive.is_some() || oracle.inconclusive.is_some();
    if !stopped && backstop.lines.len() != oracle.lines.len() {
        return Err(format!(
            "backstop wrote {} lines, the oracle {}: next `{}`",
            backstop.lines.len(),
            oracle.lines.len(),
            backstop
                .lines
                .get(common)
                .or(oracle.lines.get(common))
                .map(String::as_str)
                .unwrap_or("")
        ));
    }
    Ok(())
}
