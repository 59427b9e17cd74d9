//! The operand stack of the function being translated: the Cranelift value
//! of every Wasm operand, in push order, and the conversions that keep
//! vectors in one canonical type.
//!
//! Every `v128` operand on the stack is an `i8x16` value. An operator that
//! works on other lanes bitcasts its inputs with `as_lanes` and returns its
//! result through `to_canonical`; the bitcasts cost no instructions, and the
//! rule means block parameters, locals, calls and returns never see another
//! vector type.

use cranelift_codegen::ir::{self, types, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::FunctionBuilder;

/// The canonical Cranelift type of a Wasm `v128`.
pub(crate) const V128: ir::Type = types::I8X16;

#[derive(Default)]
pub(crate) struct ValueStack {
    values: Vec<Value>,
}

impl ValueStack {
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn push(&mut self, value: Value) {
        self.values.push(value);
    }

    pub fn extend(&mut self, values: &[Value]) {
        self.values.extend_from_slice(values);
    }

    /// Pops one operand. Validation guarantees it is there.
    pub fn pop(&mut self) -> Value {
        self.values
            .pop()
            .expect("validated: operand stack underflow")
    }

    /// Pops two operands, in push order: `(first, second)` where `second`
    /// was on top.
    pub fn pop2(&mut self) -> (Value, Value) {
        let second = self.pop();
        let first = self.pop();
        (first, second)
    }

    /// Pops three operands, in push order.
    pub fn pop3(&mut self) -> (Value, Value, Value) {
        let third = self.pop();
        let (first, second) = self.pop2();
        (first, second, third)
    }

    /// The top operand, left in place.
    pub fn peek(&self) -> Value {
        *self
            .values
            .last()
            .expect("validated: operand stack underflow")
    }

    /// The top `n` operands, in push order, left in place.
    pub fn top(&self, n: usize) -> &[Value] {
        &self.values[self.values.len() - n..]
    }

    /// Pops the top `n` operands and returns them in push order.
    pub fn pop_n(&mut self, n: usize) -> Vec<Value> {
        let at = self.values.len() - n;
        self.values.split_off(at)
    }

    /// Drops operands down to `height`.
    pub fn truncate(&mut self, height: usize) {
        self.values.truncate(height);
    }
}

/// Flags for bitcasts between vector types: lane order is little-endian, as
/// Wasm defines it.
pub(crate) fn vector_bitcast_flags() -> MemFlagsData {
    MemFlagsData::new().with_endianness(ir::Endianness::Little)
}

/// `value` as a vector of type `lanes` (a no-op bitcast when it already is).
pub(crate) fn as_lanes(builder: &mut FunctionBuilder, value: Value, lanes: ir::Type) -> Value {
    if builder.func.dfg.value_type(value) == lanes {
        value
    } else {
        builder.ins().bitcast(lanes, vector_bitcast_flags(), value)
    }
}

/// `value`, a 128-bit vector of any lane type, as the canonical `i8x16`.
pub(crate) fn to_canonical(builder: &mut FunctionBuilder, value: Value) -> Value {
    as_lanes(builder, value, V128)
}
