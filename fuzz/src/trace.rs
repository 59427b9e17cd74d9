//! What running a module looked like, in a form two engines can be
//! compared by: one line per event (instantiation, each export call with
//! its arguments and results or trap, and after each call the state of every
//! exported global, memory and table). Both sides write values through the
//! same `Value`, so equal behaviour gives equal lines.

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

/// The kinds of value a parameter can have, for `argument`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    I32,
    I64,
    F32,
    F64,
    V128,
    FuncRef,
    ExternRef,
}

/// The deterministic argument for parameter `i` of call number `call`:
/// small numbers, edges and bit patterns in turn, null references.
pub fn argument(kind: Kind, call: usize, i: usize) -> Value {
    const INTS: [i64; 8] = [0, 1, -1, 7, 0x7fff_ffff, i64::MIN, 65536, 3];
    let n = INTS[(call * 3 + i) % INTS.len()];
    match kind {
        Kind::I32 => Value::I32(n as i32),
        Kind::I64 => Value::I64(n),
        Kind::F32 => Value::F32((n as f32).to_bits()),
        Kind::F64 => Value::F64((n as f64).to_bits()),
        Kind::V128 => {
            Value::V128((n as u128).wrapping_mul(0x0101_0101_0101_0101_0101_0101_0101_0101))
        }
        Kind::FuncRef => Value::FuncRef { null: true },
        Kind::ExternRef => Value::ExternRef { null: true },
    }
}

pub fn values(values: &[Value]) -> String {
    values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// FNV-1a over a memory's bytes.
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
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
