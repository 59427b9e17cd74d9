//! Scalar numeric operators: constants, integer and float arithmetic,
//! comparisons, conversions, sign extension and saturating truncation.
//!
//! Every one of them maps onto a single Cranelift instruction whose semantics
//! already match Wasm's (traps included), except that comparisons widen
//! Cranelift's `i8` truth value to Wasm's `i32`, and in-place sign extension
//! narrows before it extends. The operator table is `lowering`; `emit` builds
//! the instructions for each shape of operator.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::immediates::{Ieee32, Ieee64};
use cranelift_codegen::ir::types::{F32, F64, I16, I32, I64, I8};
use cranelift_codegen::ir::{InstBuilder, MemFlagsData, Opcode, Type, Value};
use cranelift_frontend::FunctionBuilder;
use wasmparser::Operator;

use super::stack::ValueStack;

/// Translates `op` if it is a scalar numeric operator, returning whether it was one.
pub(crate) fn translate_numeric(
    op: &Operator<'_>,
    builder: &mut FunctionBuilder<'_>,
    stack: &mut ValueStack,
) -> bool {
    let result = match op {
        // An `iconst.i32` immediate is the bit pattern, zero-extended.
        Operator::I32Const { value } => builder.ins().iconst(I32, i64::from(*value as u32)),
        Operator::I64Const { value } => builder.ins().iconst(I64, *value),
        // Bit patterns all the way, so that NaN payloads survive.
        Operator::F32Const { value } => builder.ins().f32const(Ieee32::with_bits(value.bits())),
        Operator::F64Const { value } => builder.ins().f64const(Ieee64::with_bits(value.bits())),
        _ => match lowering(op) {
            Some(lowering) => emit(lowering, builder, stack),
            None => return false,
        },
    };
    stack.push(result);
    true
}

/// The shape of a non-constant numeric operator and the Cranelift
/// instruction that implements it.
#[derive(Clone, Copy)]
enum Lowering {
    /// Pops `a b`, pushes `a op b`, of the operands' type.
    Binary(Opcode),
    /// Pops `x`, pushes `op x`, of the operand's type.
    Unary(Opcode),
    /// Pops `x`, pushes `op x` as the given type.
    Convert(Opcode, Type),
    /// Pops `a b`, pushes `a cond b` as an `i32` 0 or 1.
    IntCompare(IntCC),
    /// Pops `a b`, pushes `a cond b` as an `i32` 0 or 1.
    FloatCompare(FloatCC),
    /// Pops `x`, pushes `x == 0` as an `i32` 0 or 1.
    EqualsZero,
    /// Pops `x`, pushes its bits unchanged as the given type.
    Reinterpret(Type),
    /// Pops `x`, pushes the sign extension of its low bits (as many as the
    /// given type has) back to the operand's type.
    SignExtendLow(Type),
}

/// How `op` is lowered, or `None` if it is not a non-constant scalar
/// numeric operator.
fn lowering(op: &Operator<'_>) -> Option<Lowering> {
    use Lowering::{
        Binary, Convert, EqualsZero, FloatCompare, IntCompare, Reinterpret, SignExtendLow, Unary,
    };
    use Operator as O;

    Some(match op {
        // Integer comparisons.
        O::I32Eqz | O::I64Eqz => EqualsZero,
        O::I32Eq | O::I64Eq => IntCompare(IntCC::Equal),
        O::I32Ne | O::I64Ne => IntCompare(IntCC::NotEqual),
        O::I32LtS | O::I64LtS => IntCompare(IntCC::SignedLessThan),
        O::I32LtU | O::I64LtU => IntCompare(IntCC::UnsignedLessThan),
        O::I32GtS | O::I64GtS => IntCompare(IntCC::SignedGreaterThan),
        O::I32GtU | O::I64GtU => IntCompare(IntCC::UnsignedGreaterThan),
        O::I32LeS | O::I64LeS => IntCompare(IntCC::SignedLessThanOrEqual),
        O::I32LeU | O::I64LeU => IntCompare(IntCC::UnsignedLessThanOrEqual),
        O::I32GeS | O::I64GeS => IntCompare(IntCC::SignedGreaterThanOrEqual),
        O::I32GeU | O::I64GeU => IntCompare(IntCC::UnsignedGreaterThanOrEqual),

        // Integer arithmetic. Division and remainder trap as Wasm requires
        // (`srem` of INT_MIN by -1 is 0); shift and rotate amounts are taken
        // modulo the bit width, as in Wasm.
        O::I32Clz | O::I64Clz => Unary(Opcode::Clz),
        O::I32Ctz | O::I64Ctz => Unary(Opcode::Ctz),
        O::I32Popcnt | O::I64Popcnt => Unary(Opcode::Popcnt),
        O::I32Add | O::I64Add => Binary(Opcode::Iadd),
        O::I32Sub | O::I64Sub => Binary(Opcode::Isub),
        O::I32Mul | O::I64Mul => Binary(Opcode::Imul),
        O::I32DivS | O::I64DivS => Binary(Opcode::Sdiv),
        O::I32DivU | O::I64DivU => Binary(Opcode::Udiv),
        O::I32RemS | O::I64RemS => Binary(Opcode::Srem),
        O::I32RemU | O::I64RemU => Binary(Opcode::Urem),
        O::I32And | O::I64And => Binary(Opcode::Band),
        O::I32Or | O::I64Or => Binary(Opcode::Bor),
        O::I32Xor | O::I64Xor => Binary(Opcode::Bxor),
        O::I32Shl | O::I64Shl => Binary(Opcode::Ishl),
        O::I32ShrS | O::I64ShrS => Binary(Opcode::Sshr),
        O::I32ShrU | O::I64ShrU => Binary(Opcode::Ushr),
        O::I32Rotl | O::I64Rotl => Binary(Opcode::Rotl),
        O::I32Rotr | O::I64Rotr => Binary(Opcode::Rotr),

        // Float comparisons: all false on NaN, except `ne`.
        O::F32Eq | O::F64Eq => FloatCompare(FloatCC::Equal),
        O::F32Ne | O::F64Ne => FloatCompare(FloatCC::NotEqual),
        O::F32Lt | O::F64Lt => FloatCompare(FloatCC::LessThan),
        O::F32Gt | O::F64Gt => FloatCompare(FloatCC::GreaterThan),
        O::F32Le | O::F64Le => FloatCompare(FloatCC::LessThanOrEqual),
        O::F32Ge | O::F64Ge => FloatCompare(FloatCC::GreaterThanOrEqual),

        // Float arithmetic. `abs`, `neg` and `copysign` only touch the sign
        // bit; `fmin`/`fmax` follow Wasm's NaN and signed-zero rules;
        // `nearest` rounds half to even.
        O::F32Abs | O::F64Abs => Unary(Opcode::Fabs),
        O::F32Neg | O::F64Neg => Unary(Opcode::Fneg),
        O::F32Ceil | O::F64Ceil => Unary(Opcode::Ceil),
        O::F32Floor | O::F64Floor => Unary(Opcode::Floor),
        O::F32Trunc | O::F64Trunc => Unary(Opcode::Trunc),
        O::F32Nearest | O::F64Nearest => Unary(Opcode::Nearest),
        O::F32Sqrt | O::F64Sqrt => Unary(Opcode::Sqrt),
        O::F32Add | O::F64Add => Binary(Opcode::Fadd),
        O::F32Sub | O::F64Sub => Binary(Opcode::Fsub),
        O::F32Mul | O::F64Mul => Binary(Opcode::Fmul),
        O::F32Div | O::F64Div => Binary(Opcode::Fdiv),
        O::F32Min | O::F64Min => Binary(Opcode::Fmin),
        O::F32Max | O::F64Max => Binary(Opcode::Fmax),
        O::F32Copysign | O::F64Copysign => Binary(Opcode::Fcopysign),

        // Integer width changes.
        O::I32WrapI64 => Convert(Opcode::Ireduce, I32),
        O::I64ExtendI32S => Convert(Opcode::Sextend, I64),
        O::I64ExtendI32U => Convert(Opcode::Uextend, I64),
        O::I32Extend8S | O::I64Extend8S => SignExtendLow(I8),
        O::I32Extend16S | O::I64Extend16S => SignExtendLow(I16),
        O::I64Extend32S => SignExtendLow(I32),

        // Float to integer: trapping on NaN or overflow...
        O::I32TruncF32S | O::I32TruncF64S => Convert(Opcode::FcvtToSint, I32),
        O::I32TruncF32U | O::I32TruncF64U => Convert(Opcode::FcvtToUint, I32),
        O::I64TruncF32S | O::I64TruncF64S => Convert(Opcode::FcvtToSint, I64),
        O::I64TruncF32U | O::I64TruncF64U => Convert(Opcode::FcvtToUint, I64),
        // ... or saturating, with NaN giving 0.
        O::I32TruncSatF32S | O::I32TruncSatF64S => Convert(Opcode::FcvtToSintSat, I32),
        O::I32TruncSatF32U | O::I32TruncSatF64U => Convert(Opcode::FcvtToUintSat, I32),
        O::I64TruncSatF32S | O::I64TruncSatF64S => Convert(Opcode::FcvtToSintSat, I64),
        O::I64TruncSatF32U | O::I64TruncSatF64U => Convert(Opcode::FcvtToUintSat, I64),

        // Integer to float, and float precision changes.
        O::F32ConvertI32S | O::F32ConvertI64S => Convert(Opcode::FcvtFromSint, F32),
        O::F32ConvertI32U | O::F32ConvertI64U => Convert(Opcode::FcvtFromUint, F32),
        O::F64ConvertI32S | O::F64ConvertI64S => Convert(Opcode::FcvtFromSint, F64),
        O::F64ConvertI32U | O::F64ConvertI64U => Convert(Opcode::FcvtFromUint, F64),
        O::F32DemoteF64 => Convert(Opcode::Fdemote, F32),
        O::F64PromoteF32 => Convert(Opcode::Fpromote, F64),

        // Same bits, other type.
        O::I32ReinterpretF32 => Reinterpret(I32),
        O::I64ReinterpretF64 => Reinterpret(I64),
        O::F32ReinterpretI32 => Reinterpret(F32),
        O::F64ReinterpretI64 => Reinterpret(F64),

        _ => return None,
    })
}

/// Pops the operands of a `lowering`, builds its instructions and returns
/// the result, which the caller pushes.
fn emit(lowering: Lowering, builder: &mut FunctionBuilder<'_>, stack: &mut ValueStack) -> Value {
    match lowering {
        Lowering::Binary(opcode) => {
            let (lhs, rhs) = stack.pop2();
            let ty = builder.func.dfg.value_type(lhs);
            let (inst, dfg) = builder.ins().Binary(opcode, ty, lhs, rhs);
            dfg.first_result(inst)
        }
        Lowering::Unary(opcode) => {
            let operand = stack.pop();
            let ty = builder.func.dfg.value_type(operand);
            let (inst, dfg) = builder.ins().Unary(opcode, ty, operand);
            dfg.first_result(inst)
        }
        Lowering::Convert(opcode, to) => {
            let operand = stack.pop();
            let (inst, dfg) = builder.ins().Unary(opcode, to, operand);
            dfg.first_result(inst)
        }
        Lowering::IntCompare(cond) => {
            let (lhs, rhs) = stack.pop2();
            let truth = builder.ins().icmp(cond, lhs, rhs);
            builder.ins().uextend(I32, truth)
        }
        Lowering::FloatCompare(cond) => {
            let (lhs, rhs) = stack.pop2();
            let truth = builder.ins().fcmp(cond, lhs, rhs);
            builder.ins().uextend(I32, truth)
        }
        Lowering::EqualsZero => {
            let operand = stack.pop();
            let truth = builder.ins().icmp_imm_u(IntCC::Equal, operand, 0);
            builder.ins().uextend(I32, truth)
        }
        Lowering::Reinterpret(to) => {
            let operand = stack.pop();
            builder.ins().bitcast(to, MemFlagsData::new(), operand)
        }
        Lowering::SignExtendLow(narrow) => {
            let operand = stack.pop();
            let ty = builder.func.dfg.value_type(operand);
            let low = builder.ins().ireduce(narrow, operand);
            builder.ins().sextend(ty, low)
        }
    }
}
