//! The fixed-width (128-bit) SIMD operators that do not touch memory:
//! `v128.const`, shuffles, lane access, comparisons, bitwise operators and
//! every integer and float lane operator of Wasm 2.0. Vector loads and stores
//! are translated with the other memory operators; relaxed SIMD is in
//! `relaxed_simd`, on top of this file's operators.
//!
//! Operands arrive as `i8x16` (see `stack`): each operator bitcasts them to
//! the lanes it works on and pushes its vector result back as `i8x16`.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::types::{self, F32X4, F64X2, I16X8, I32X4, I64X2, I8X16};
use cranelift_codegen::ir::{ConstantData, InstBuilder, Type, Value};
use cranelift_frontend::FunctionBuilder;
use wasmparser::Operator;

use super::stack::{as_lanes, to_canonical, ValueStack, V128};

/// Whether an operator reads its integer lanes as signed or unsigned.
#[derive(Clone, Copy)]
pub(super) enum Signedness {
    Signed,
    Unsigned,
}

/// Which half of a vector's lanes a widening operator reads.
#[derive(Clone, Copy)]
pub(super) enum Half {
    Low,
    High,
}

/// A vector-to-vector operator of one operand.
#[derive(Clone, Copy)]
pub(super) enum Unary {
    Bnot,
    Ineg,
    Iabs,
    Popcnt,
    Fneg,
    Fabs,
    Sqrt,
    Ceil,
    Floor,
    Trunc,
    Nearest,
    /// `extend_{low,high}_*`: doubles the lane width.
    Widen(Signedness, Half),
    /// `extadd_pairwise_*`: adds adjacent lanes at double the width.
    ExtAddPairwise(Signedness),
    /// `f32x4.convert_i32x4_*`.
    ConvertToF32(Signedness),
    /// `f64x2.convert_low_i32x4_*`.
    ConvertLowToF64(Signedness),
    /// `i32x4.trunc_sat_f32x4_*`.
    TruncSatF32(Signedness),
    /// `i32x4.trunc_sat_f64x2_*_zero`.
    TruncSatF64Zero(Signedness),
    /// `f32x4.demote_f64x2_zero`.
    Demote,
    /// `f64x2.promote_low_f32x4`.
    PromoteLow,
}

/// A vector-to-vector operator of two operands.
#[derive(Clone, Copy)]
pub(super) enum Binary {
    Band,
    Bor,
    Bxor,
    BandNot,
    Swizzle,
    Narrow(Signedness),
    Iadd,
    Isub,
    Imul,
    AddSat(Signedness),
    SubSat(Signedness),
    Min(Signedness),
    Max(Signedness),
    AvgRound,
    Q15MulrSat,
    /// `i32x4.dot_i16x8_s`.
    Dot,
    /// `extmul_{low,high}_*`: widens both operands, then multiplies.
    ExtMul(Signedness, Half),
    Fadd,
    Fsub,
    Fmul,
    Fdiv,
    Fmin,
    Fmax,
    Pmin,
    Pmax,
}

/// A lane-wise comparison, producing all-ones or all-zeros lanes.
#[derive(Clone, Copy)]
enum Compare {
    Int(IntCC),
    Float(FloatCC),
}

/// A vector shift by a scalar `i32` amount.
#[derive(Clone, Copy)]
enum Shift {
    Left,
    RightSigned,
    RightUnsigned,
}

/// How an extracted lane becomes the scalar Wasm pushes.
#[derive(Clone, Copy)]
enum LaneResult {
    /// The lane is already an `i32`, `i64`, `f32` or `f64`.
    AsIs,
    SignExtend,
    ZeroExtend,
}

/// Translates `op` if it is a SIMD operator that does not touch memory, returning whether it was one.
pub(crate) fn translate_simd(
    op: &Operator<'_>,
    builder: &mut FunctionBuilder<'_>,
    stack: &mut ValueStack,
) -> bool {
    if super::relaxed_simd::translate_relaxed(op, builder, stack) {
        return true;
    }
    if let Some((lanes, unary)) = classify_unary(op) {
        let x = pop_lanes(builder, stack, lanes);
        let result = emit_unary(builder, unary, x);
        push_vector(builder, stack, result);
    } else if let Some((lanes, binary)) = classify_binary(op) {
        let (x, y) = pop2_lanes(builder, stack, lanes);
        let result = emit_binary(builder, binary, x, y);
        push_vector(builder, stack, result);
    } else if let Some((lanes, compare)) = classify_compare(op) {
        let (x, y) = pop2_lanes(builder, stack, lanes);
        let result = match compare {
            Compare::Int(cc) => builder.ins().icmp(cc, x, y),
            Compare::Float(cc) => builder.ins().fcmp(cc, x, y),
        };
        push_vector(builder, stack, result);
    } else if let Some((lanes, shift)) = classify_shift(op) {
        // Cranelift's vector shifts take the amount modulo the lane width, as
        // Wasm does (x64 masks it before `psll`/`psra`/`psrl`): no mask here.
        let (vector, amount) = stack.pop2();
        let vector = as_lanes(builder, vector, lanes);
        let result = match shift {
            Shift::Left => builder.ins().ishl(vector, amount),
            Shift::RightSigned => builder.ins().sshr(vector, amount),
            Shift::RightUnsigned => builder.ins().ushr(vector, amount),
        };
        push_vector(builder, stack, result);
    } else {
        return translate_other(op, builder, stack);
    }
    true
}

/// The operators that take immediates, move scalars in and out of vectors
/// or reduce a vector to a scalar; returns whether `op` was one.
fn translate_other(
    op: &Operator<'_>,
    builder: &mut FunctionBuilder<'_>,
    stack: &mut ValueStack,
) -> bool {
    use LaneResult::{AsIs, SignExtend, ZeroExtend};
    use Operator as O;
    match op {
        O::V128Const { value } => {
            let bytes = ConstantData::from(&value.bytes()[..]);
            let constant = builder.func.dfg.constants.insert(bytes);
            let result = builder.ins().vconst(V128, constant);
            stack.push(result);
        }
        O::I8x16Shuffle { lanes } => {
            let (x, y) = pop2_lanes(builder, stack, I8X16);
            let mask = ConstantData::from(&lanes[..]);
            let mask = builder.func.dfg.immediates.push(mask);
            let result = builder.ins().shuffle(x, y, mask);
            push_vector(builder, stack, result);
        }
        O::V128Bitselect => bitselect(builder, stack),
        O::V128AnyTrue => {
            let vector = pop_lanes(builder, stack, V128);
            let any = builder.ins().vany_true(vector);
            stack.push(builder.ins().uextend(types::I32, any));
        }
        O::I8x16AllTrue | O::I16x8AllTrue | O::I32x4AllTrue | O::I64x2AllTrue => {
            let vector = pop_lanes(builder, stack, integer_lanes_of(op));
            let all = builder.ins().vall_true(vector);
            stack.push(builder.ins().uextend(types::I32, all));
        }
        O::I8x16Bitmask | O::I16x8Bitmask | O::I32x4Bitmask | O::I64x2Bitmask => {
            let vector = pop_lanes(builder, stack, integer_lanes_of(op));
            stack.push(builder.ins().vhigh_bits(types::I32, vector));
        }
        O::I8x16Splat => splat(builder, stack, I8X16),
        O::I16x8Splat => splat(builder, stack, I16X8),
        O::I32x4Splat => splat(builder, stack, I32X4),
        O::I64x2Splat => splat(builder, stack, I64X2),
        O::F32x4Splat => splat(builder, stack, F32X4),
        O::F64x2Splat => splat(builder, stack, F64X2),
        O::I8x16ExtractLaneS { lane } => extract_lane(builder, stack, I8X16, *lane, SignExtend),
        O::I8x16ExtractLaneU { lane } => extract_lane(builder, stack, I8X16, *lane, ZeroExtend),
        O::I16x8ExtractLaneS { lane } => extract_lane(builder, stack, I16X8, *lane, SignExtend),
        O::I16x8ExtractLaneU { lane } => extract_lane(builder, stack, I16X8, *lane, ZeroExtend),
        O::I32x4ExtractLane { lane } => extract_lane(builder, stack, I32X4, *lane, AsIs),
        O::I64x2ExtractLane { lane } => extract_lane(builder, stack, I64X2, *lane, AsIs),
        O::F32x4ExtractLane { lane } => extract_lane(builder, stack, F32X4, *lane, AsIs),
        O::F64x2ExtractLane { lane } => extract_lane(builder, stack, F64X2, *lane, AsIs),
        O::I8x16ReplaceLane { lane } => replace_lane(builder, stack, I8X16, *lane),
        O::I16x8ReplaceLane { lane } => replace_lane(builder, stack, I16X8, *lane),
        O::I32x4ReplaceLane { lane } => replace_lane(builder, stack, I32X4, *lane),
        O::I64x2ReplaceLane { lane } => replace_lane(builder, stack, I64X2, *lane),
        O::F32x4ReplaceLane { lane } => replace_lane(builder, stack, F32X4, *lane),
        O::F64x2ReplaceLane { lane } => replace_lane(builder, stack, F64X2, *lane),
        _ => return false,
    }
    true
}

/// The lane type an `all_true` or `bitmask` operator reads.
fn integer_lanes_of(op: &Operator<'_>) -> Type {
    use Operator as O;
    match op {
        O::I8x16AllTrue | O::I8x16Bitmask => I8X16,
        O::I16x8AllTrue | O::I16x8Bitmask => I16X8,
        O::I32x4AllTrue | O::I32x4Bitmask => I32X4,
        _ => I64X2,
    }
}

/// Pops one vector operand as a vector of type `lanes`.
pub(super) fn pop_lanes(
    builder: &mut FunctionBuilder<'_>,
    stack: &mut ValueStack,
    lanes: Type,
) -> Value {
    let vector = stack.pop();
    as_lanes(builder, vector, lanes)
}

/// Pops two vector operands, in push order, as vectors of type `lanes`.
pub(super) fn pop2_lanes(
    builder: &mut FunctionBuilder<'_>,
    stack: &mut ValueStack,
    lanes: Type,
) -> (Value, Value) {
    let (x, y) = stack.pop2();
    (as_lanes(builder, x, lanes), as_lanes(builder, y, lanes))
}

/// Pushes a vector result of any lane type as the canonical type.
/// `v128.bitselect`: Wasm pushes the two choices, then the mask; CLIF takes
/// the mask first.
pub(super) fn bitselect(builder: &mut FunctionBuilder<'_>, stack: &mut ValueStack) {
    let (if_set, if_clear, mask) = stack.pop3();
    let if_set = as_lanes(builder, if_set, V128);
    let if_clear = as_lanes(builder, if_clear, V128);
    let mask = as_lanes(builder, mask, V128);
    let result = builder.ins().bitselect(mask, if_set, if_clear);
    push_vector(builder, stack, result);
}

pub(super) fn push_vector(
    builder: &mut FunctionBuilder<'_>,
    stack: &mut ValueStack,
    vector: Value,
) {
    let canonical = to_canonical(builder, vector);
    stack.push(canonical);
}

/// A Wasm scalar as a lane of `lanes`: `i8` and `i16` lanes take the low
/// bits of an `i32`; every other lane type is the scalar's own.
fn scalar_as_lane(builder: &mut FunctionBuilder<'_>, scalar: Value, lanes: Type) -> Value {
    let lane = lanes.lane_type();
    if builder.func.dfg.value_type(scalar) == lane {
        scalar
    } else {
        builder.ins().ireduce(lane, scalar)
    }
}

fn splat(builder: &mut FunctionBuilder<'_>, stack: &mut ValueStack, lanes: Type) {
    let scalar = stack.pop();
    let lane = scalar_as_lane(builder, scalar, lanes);
    let result = builder.ins().splat(lanes, lane);
    push_vector(builder, stack, result);
}

fn extract_lane(
    builder: &mut FunctionBuilder<'_>,
    stack: &mut ValueStack,
    lanes: Type,
    lane: u8,
    result: LaneResult,
) {
    let vector = pop_lanes(builder, stack, lanes);
    let scalar = builder.ins().extractlane(vector, lane);
    let scalar = match result {
        LaneResult::AsIs => scalar,
        LaneResult::SignExtend => builder.ins().sextend(types::I32, scalar),
        LaneResult::ZeroExtend => builder.ins().uextend(types::I32, scalar),
    };
    stack.push(scalar);
}

fn replace_lane(builder: &mut FunctionBuilder<'_>, stack: &mut ValueStack, lanes: Type, lane: u8) {
    let (vector, scalar) = stack.pop2();
    let vector = as_lanes(builder, vector, lanes);
    let scalar = scalar_as_lane(builder, scalar, lanes);
    let result = builder.ins().insertlane(vector, scalar, lane);
    push_vector(builder, stack, result);
}

/// The operand lane type and operator of a one-operand vector operator.
fn classify_unary(op: &Operator<'_>) -> Option<(Type, Unary)> {
    use Half::{High, Low};
    use Operator as O;
    use Signedness::{Signed, Unsigned};
    use Unary as U;
    Some(match op {
        O::V128Not => (V128, U::Bnot),
        O::I8x16Abs => (I8X16, U::Iabs),
        O::I16x8Abs => (I16X8, U::Iabs),
        O::I32x4Abs => (I32X4, U::Iabs),
        O::I64x2Abs => (I64X2, U::Iabs),
        O::I8x16Neg => (I8X16, U::Ineg),
        O::I16x8Neg => (I16X8, U::Ineg),
        O::I32x4Neg => (I32X4, U::Ineg),
        O::I64x2Neg => (I64X2, U::Ineg),
        O::I8x16Popcnt => (I8X16, U::Popcnt),
        O::I16x8ExtendLowI8x16S => (I8X16, U::Widen(Signed, Low)),
        O::I16x8ExtendHighI8x16S => (I8X16, U::Widen(Signed, High)),
        O::I16x8ExtendLowI8x16U => (I8X16, U::Widen(Unsigned, Low)),
        O::I16x8ExtendHighI8x16U => (I8X16, U::Widen(Unsigned, High)),
        O::I32x4ExtendLowI16x8S => (I16X8, U::Widen(Signed, Low)),
        O::I32x4ExtendHighI16x8S => (I16X8, U::Widen(Signed, High)),
        O::I32x4ExtendLowI16x8U => (I16X8, U::Widen(Unsigned, Low)),
        O::I32x4ExtendHighI16x8U => (I16X8, U::Widen(Unsigned, High)),
        O::I64x2ExtendLowI32x4S => (I32X4, U::Widen(Signed, Low)),
        O::I64x2ExtendHighI32x4S => (I32X4, U::Widen(Signed, High)),
        O::I64x2ExtendLowI32x4U => (I32X4, U::Widen(Unsigned, Low)),
        O::I64x2ExtendHighI32x4U => (I32X4, U::Widen(Unsigned, High)),
        O::I16x8ExtAddPairwiseI8x16S => (I8X16, U::ExtAddPairwise(Signed)),
        O::I16x8ExtAddPairwiseI8x16U => (I8X16, U::ExtAddPairwise(Unsigned)),
        O::I32x4ExtAddPairwiseI16x8S => (I16X8, U::ExtAddPairwise(Signed)),
        O::I32x4ExtAddPairwiseI16x8U => (I16X8, U::ExtAddPairwise(Unsigned)),
        O::F32x4Ceil => (F32X4, U::Ceil),
        O::F64x2Ceil => (F64X2, U::Ceil),
        O::F32x4Floor => (F32X4, U::Floor),
        O::F64x2Floor => (F64X2, U::Floor),
        O::F32x4Trunc => (F32X4, U::Trunc),
        O::F64x2Trunc => (F64X2, U::Trunc),
        O::F32x4Nearest => (F32X4, U::Nearest),
        O::F64x2Nearest => (F64X2, U::Nearest),
        O::F32x4Abs => (F32X4, U::Fabs),
        O::F64x2Abs => (F64X2, U::Fabs),
        O::F32x4Neg => (F32X4, U::Fneg),
        O::F64x2Neg => (F64X2, U::Fneg),
        O::F32x4Sqrt => (F32X4, U::Sqrt),
        O::F64x2Sqrt => (F64X2, U::Sqrt),
        O::F32x4ConvertI32x4S => (I32X4, U::ConvertToF32(Signed)),
        O::F32x4ConvertI32x4U => (I32X4, U::ConvertToF32(Unsigned)),
        O::F64x2ConvertLowI32x4S => (I32X4, U::ConvertLowToF64(Signed)),
        O::F64x2ConvertLowI32x4U => (I32X4, U::ConvertLowToF64(Unsigned)),
        O::I32x4TruncSatF32x4S => (F32X4, U::TruncSatF32(Signed)),
        O::I32x4TruncSatF32x4U => (F32X4, U::TruncSatF32(Unsigned)),
        O::I32x4TruncSatF64x2SZero => (F64X2, U::TruncSatF64Zero(Signed)),
        O::I32x4TruncSatF64x2UZero => (F64X2, U::TruncSatF64Zero(Unsigned)),
        O::F32x4DemoteF64x2Zero => (F64X2, U::Demote),
        O::F64x2PromoteLowF32x4 => (F32X4, U::PromoteLow),
        _ => return None,
    })
}

/// The operand lane type and operator of a two-operand vector operator.
fn classify_binary(op: &Operator<'_>) -> Option<(Type, Binary)> {
    use Binary as B;
    use Half::{High, Low};
    use Operator as O;
    use Signedness::{Signed, Unsigned};
    Some(match op {
        O::V128And => (V128, B::Band),
        O::V128Or => (V128, B::Bor),
        O::V128Xor => (V128, B::Bxor),
        O::V128AndNot => (V128, B::BandNot),
        O::I8x16Swizzle => (I8X16, B::Swizzle),
        O::I8x16NarrowI16x8S => (I16X8, B::Narrow(Signed)),
        O::I8x16NarrowI16x8U => (I16X8, B::Narrow(Unsigned)),
        O::I16x8NarrowI32x4S => (I32X4, B::Narrow(Signed)),
        O::I16x8NarrowI32x4U => (I32X4, B::Narrow(Unsigned)),
        O::I8x16Add => (I8X16, B::Iadd),
        O::I16x8Add => (I16X8, B::Iadd),
        O::I32x4Add => (I32X4, B::Iadd),
        O::I64x2Add => (I64X2, B::Iadd),
        O::I8x16Sub => (I8X16, B::Isub),
        O::I16x8Sub => (I16X8, B::Isub),
        O::I32x4Sub => (I32X4, B::Isub),
        O::I64x2Sub => (I64X2, B::Isub),
        O::I16x8Mul => (I16X8, B::Imul),
        O::I32x4Mul => (I32X4, B::Imul),
        O::I64x2Mul => (I64X2, B::Imul),
        O::I8x16AddSatS => (I8X16, B::AddSat(Signed)),
        O::I8x16AddSatU => (I8X16, B::AddSat(Unsigned)),
        O::I16x8AddSatS => (I16X8, B::AddSat(Signed)),
        O::I16x8AddSatU => (I16X8, B::AddSat(Unsigned)),
        O::I8x16SubSatS => (I8X16, B::SubSat(Signed)),
        O::I8x16SubSatU => (I8X16, B::SubSat(Unsigned)),
        O::I16x8SubSatS => (I16X8, B::SubSat(Signed)),
        O::I16x8SubSatU => (I16X8, B::SubSat(Unsigned)),
        O::I8x16MinS => (I8X16, B::Min(Signed)),
        O::I8x16MinU => (I8X16, B::Min(Unsigned)),
        O::I16x8MinS => (I16X8, B::Min(Signed)),
        O::I16x8MinU => (I16X8, B::Min(Unsigned)),
        O::I32x4MinS => (I32X4, B::Min(Signed)),
        O::I32x4MinU => (I32X4, B::Min(Unsigned)),
        O::I8x16MaxS => (I8X16, B::Max(Signed)),
        O::I8x16MaxU => (I8X16, B::Max(Unsigned)),
        O::I16x8MaxS => (I16X8, B::Max(Signed)),
        O::I16x8MaxU => (I16X8, B::Max(Unsigned)),
        O::I32x4MaxS => (I32X4, B::Max(Signed)),
        O::I32x4MaxU => (I32X4, B::Max(Unsigned)),
        O::I8x16AvgrU => (I8X16, B::AvgRound),
        O::I16x8AvgrU => (I16X8, B::AvgRound),
        O::I16x8Q15MulrSatS => (I16X8, B::Q15MulrSat),
        O::I32x4DotI16x8S => (I16X8, B::Dot),
        O::I16x8ExtMulLowI8x16S => (I8X16, B::ExtMul(Signed, Low)),
        O::I16x8ExtMulHighI8x16S => (I8X16, B::ExtMul(Signed, High)),
        O::I16x8ExtMulLowI8x16U => (I8X16, B::ExtMul(Unsigned, Low)),
        O::I16x8ExtMulHighI8x16U => (I8X16, B::ExtMul(Unsigned, High)),
        O::I32x4ExtMulLowI16x8S => (I16X8, B::ExtMul(Signed, Low)),
        O::I32x4ExtMulHighI16x8S => (I16X8, B::ExtMul(Signed, High)),
        O::I32x4ExtMulLowI16x8U => (I16X8, B::ExtMul(Unsigned, Low)),
        O::I32x4ExtMulHighI16x8U => (I16X8, B::ExtMul(Unsigned, High)),
        O::I64x2ExtMulLowI32x4S => (I32X4, B::ExtMul(Signed, Low)),
        O::I64x2ExtMulHighI32x4S => (I32X4, B::ExtMul(Signed, High)),
        O::I64x2ExtMulLowI32x4U => (I32X4, B::ExtMul(Unsigned, Low)),
        O::I64x2ExtMulHighI32x4U => (I32X4, B::ExtMul(Unsigned, High)),
        O::F32x4Add => (F32X4, B::Fadd),
        O::F64x2Add => (F64X2, B::Fadd),
        O::F32x4Sub => (F32X4, B::Fsub),
        O::F64x2Sub => (F64X2, B::Fsub),
        O::F32x4Mul => (F32X4, B::Fmul),
        O::F64x2Mul => (F64X2, B::Fmul),
        O::F32x4Div => (F32X4, B::Fdiv),
        O::F64x2Div => (F64X2, B::Fdiv),
        O::F32x4Min => (F32X4, B::Fmin),
        O::F64x2Min => (F64X2, B::Fmin),
        O::F32x4Max => (F32X4, B::Fmax),
        O::F64x2Max => (F64X2, B::Fmax),
        O::F32x4PMin => (F32X4, B::Pmin),
        O::F64x2PMin => (F64X2, B::Pmin),
        O::F32x4PMax => (F32X4, B::Pmax),
        O::F64x2PMax => (F64X2, B::Pmax),
        _ => return None,
    })
}

/// The operand lane type and condition of a comparison.
fn classify_compare(op: &Operator<'_>) -> Option<(Type, Compare)> {
    use Compare::{Float, Int};
    use FloatCC as F;
    use IntCC as I;
    use Operator as O;
    Some(match op {
        O::I8x16Eq => (I8X16, Int(I::Equal)),
        O::I8x16Ne => (I8X16, Int(I::NotEqual)),
        O::I8x16LtS => (I8X16, Int(I::SignedLessThan)),
        O::I8x16LtU => (I8X16, Int(I::UnsignedLessThan)),
        O::I8x16GtS => (I8X16, Int(I::SignedGreaterThan)),
        O::I8x16GtU => (I8X16, Int(I::UnsignedGreaterThan)),
        O::I8x16LeS => (I8X16, Int(I::SignedLessThanOrEqual)),
        O::I8x16LeU => (I8X16, Int(I::UnsignedLessThanOrEqual)),
        O::I8x16GeS => (I8X16, Int(I::SignedGreaterThanOrEqual)),
        O::I8x16GeU => (I8X16, Int(I::UnsignedGreaterThanOrEqual)),
        O::I16x8Eq => (I16X8, Int(I::Equal)),
        O::I16x8Ne => (I16X8, Int(I::NotEqual)),
        O::I16x8LtS => (I16X8, Int(I::SignedLessThan)),
        O::I16x8LtU => (I16X8, Int(I::UnsignedLessThan)),
        O::I16x8GtS => (I16X8, Int(I::SignedGreaterThan)),
        O::I16x8GtU => (I16X8, Int(I::UnsignedGreaterThan)),
        O::I16x8LeS => (I16X8, Int(I::SignedLessThanOrEqual)),
        O::I16x8LeU => (I16X8, Int(I::UnsignedLessThanOrEqual)),
        O::I16x8GeS => (I16X8, Int(I::SignedGreaterThanOrEqual)),
        O::I16x8GeU => (I16X8, Int(I::UnsignedGreaterThanOrEqual)),
        O::I32x4Eq => (I32X4, Int(I::Equal)),
        O::I32x4Ne => (I32X4, Int(I::NotEqual)),
        O::I32x4LtS => (I32X4, Int(I::SignedLessThan)),
        O::I32x4LtU => (I32X4, Int(I::UnsignedLessThan)),
        O::I32x4GtS => (I32X4, Int(I::SignedGreaterThan)),
        O::I32x4GtU => (I32X4, Int(I::UnsignedGreaterThan)),
        O::I32x4LeS => (I32X4, Int(I::SignedLessThanOrEqual)),
        O::I32x4LeU => (I32X4, Int(I::UnsignedLessThanOrEqual)),
        O::I32x4GeS => (I32X4, Int(I::SignedGreaterThanOrEqual)),
        O::I32x4GeU => (I32X4, Int(I::UnsignedGreaterThanOrEqual)),
        O::I64x2Eq => (I64X2, Int(I::Equal)),
        O::I64x2Ne => (I64X2, Int(I::NotEqual)),
        O::I64x2LtS => (I64X2, Int(I::SignedLessThan)),
        O::I64x2GtS => (I64X2, Int(I::SignedGreaterThan)),
        O::I64x2LeS => (I64X2, Int(I::SignedLessThanOrEqual)),
        O::I64x2GeS => (I64X2, Int(I::SignedGreaterThanOrEqual)),
        // CLIF's `NotEqual` holds for unordered operands and the ordering
        // conditions do not, as for Wasm's `ne`, `lt`, `gt`, `le` and `ge`.
        O::F32x4Eq => (F32X4, Float(F::Equal)),
        O::F32x4Ne => (F32X4, Float(F::NotEqual)),
        O::F32x4Lt => (F32X4, Float(F::LessThan)),
        O::F32x4Gt => (F32X4, Float(F::GreaterThan)),
        O::F32x4Le => (F32X4, Float(F::LessThanOrEqual)),
        O::F32x4Ge => (F32X4, Float(F::GreaterThanOrEqual)),
        O::F64x2Eq => (F64X2, Float(F::Equal)),
        O::F64x2Ne => (F64X2, Float(F::NotEqual)),
        O::F64x2Lt => (F64X2, Float(F::LessThan)),
        O::F64x2Gt => (F64X2, Float(F::GreaterThan)),
        O::F64x2Le => (F64X2, Float(F::LessThanOrEqual)),
        O::F64x2Ge => (F64X2, Float(F::GreaterThanOrEqual)),
        _ => return None,
    })
}

/// The lane type and direction of a shift.
fn classify_shift(op: &Operator<'_>) -> Option<(Type, Shift)> {
    use Operator as O;
    use Shift as S;
    Some(match op {
        O::I8x16Shl => (I8X16, S::Left),
        O::I16x8Shl => (I16X8, S::Left),
        O::I32x4Shl => (I32X4, S::Left),
        O::I64x2Shl => (I64X2, S::Left),
        O::I8x16ShrS => (I8X16, S::RightSigned),
        O::I16x8ShrS => (I16X8, S::RightSigned),
        O::I32x4ShrS => (I32X4, S::RightSigned),
        O::I64x2ShrS => (I64X2, S::RightSigned),
        O::I8x16ShrU => (I8X16, S::RightUnsigned),
        O::I16x8ShrU => (I16X8, S::RightUnsigned),
        O::I32x4ShrU => (I32X4, S::RightUnsigned),
        O::I64x2ShrU => (I64X2, S::RightUnsigned),
        _ => return None,
    })
}

/// Half of `x`'s lanes, each extended to double width.
fn widen(builder: &mut FunctionBuilder<'_>, x: Value, sign: Signedness, half: Half) -> Value {
    let ins = builder.ins();
    match (sign, half) {
        (Signedness::Signed, Half::Low) => ins.swiden_low(x),
        (Signedness::Signed, Half::High) => ins.swiden_high(x),
        (Signedness::Unsigned, Half::Low) => ins.uwiden_low(x),
        (Signedness::Unsigned, Half::High) => ins.uwiden_high(x),
    }
}

pub(super) fn emit_unary(builder: &mut FunctionBuilder<'_>, unary: Unary, x: Value) -> Value {
    use Signedness::{Signed, Unsigned};
    match unary {
        Unary::Bnot => builder.ins().bnot(x),
        Unary::Ineg => builder.ins().ineg(x),
        Unary::Iabs => builder.ins().iabs(x),
        Unary::Popcnt => builder.ins().popcnt(x),
        Unary::Fneg => builder.ins().fneg(x),
        Unary::Fabs => builder.ins().fabs(x),
        Unary::Sqrt => builder.ins().sqrt(x),
        Unary::Ceil => builder.ins().ceil(x),
        Unary::Floor => builder.ins().floor(x),
        Unary::Trunc => builder.ins().trunc(x),
        Unary::Nearest => builder.ins().nearest(x),
        Unary::Widen(sign, half) => widen(builder, x, sign, half),
        Unary::ExtAddPairwise(sign) => {
            // Both halves of the one value, added pairwise: x64 recognises
            // the shape (`pmaddubsw`/`pmaddwd` by ones); each step is exact.
            let low = widen(builder, x, sign, Half::Low);
            let high = widen(builder, x, sign, Half::High);
            builder.ins().iadd_pairwise(low, high)
        }
        Unary::ConvertToF32(Signed) => builder.ins().fcvt_from_sint(F32X4, x),
        Unary::ConvertToF32(Unsigned) => builder.ins().fcvt_from_uint(F32X4, x),
        Unary::ConvertLowToF64(sign) => {
            // A conversion of a `*widen_low` is one x64 pattern (`cvtdq2pd`,
            // or the 2^52 trick unsigned); otherwise it is the i64x2 conversion.
            let wide = widen(builder, x, sign, Half::Low);
            match sign {
                Signed => builder.ins().fcvt_from_sint(F64X2, wide),
                Unsigned => builder.ins().fcvt_from_uint(F64X2, wide),
            }
        }
        Unary::TruncSatF32(Signed) => builder.ins().fcvt_to_sint_sat(I32X4, x),
        Unary::TruncSatF32(Unsigned) => builder.ins().fcvt_to_uint_sat(I32X4, x),
        Unary::TruncSatF64Zero(sign) => {
            // Saturate to i64 lanes, then narrow against a zero vector with
            // saturation: exact, as saturating twice is saturating once. x64
            // has no general i64x2 narrowing and lowers exactly this shape,
            // the `vconst` zero included.
            let zeros = ConstantData::from(&[0u8; 16][..]);
            let zeros = builder.func.dfg.constants.insert(zeros);
            let zero = builder.ins().vconst(I64X2, zeros);
            match sign {
                Signed => {
                    let wide = builder.ins().fcvt_to_sint_sat(I64X2, x);
                    builder.ins().snarrow(wide, zero)
                }
                Unsigned => {
                    let wide = builder.ins().fcvt_to_uint_sat(I64X2, x);
                    builder.ins().uunarrow(wide, zero)
                }
            }
        }
        Unary::Demote => builder.ins().fvdemote(x),
        Unary::PromoteLow => builder.ins().fvpromote_low(x),
    }
}

pub(super) fn emit_binary(
    builder: &mut FunctionBuilder<'_>,
    binary: Binary,
    x: Value,
    y: Value,
) -> Value {
    use Signedness::{Signed, Unsigned};
    match binary {
        Binary::Band => builder.ins().band(x, y),
        Binary::Bor => builder.ins().bor(x, y),
        Binary::Bxor => builder.ins().bxor(x, y),
        Binary::BandNot => builder.ins().band_not(x, y),
        Binary::Swizzle => builder.ins().swizzle(x, y),
        Binary::Narrow(Signed) => builder.ins().snarrow(x, y),
        Binary::Narrow(Unsigned) => builder.ins().unarrow(x, y),
        Binary::Iadd => builder.ins().iadd(x, y),
        Binary::Isub => builder.ins().isub(x, y),
        Binary::Imul => builder.ins().imul(x, y),
        Binary::AddSat(Signed) => builder.ins().sadd_sat(x, y),
        Binary::AddSat(Unsigned) => builder.ins().uadd_sat(x, y),
        Binary::SubSat(Signed) => builder.ins().ssub_sat(x, y),
        Binary::SubSat(Unsigned) => builder.ins().usub_sat(x, y),
        Binary::Min(Signed) => builder.ins().smin(x, y),
        Binary::Min(Unsigned) => builder.ins().umin(x, y),
        Binary::Max(Signed) => builder.ins().smax(x, y),
        Binary::Max(Unsigned) => builder.ins().umax(x, y),
        Binary::AvgRound => builder.ins().avg_round(x, y),
        Binary::Q15MulrSat => builder.ins().sqmul_round_sat(x, y),
        Binary::Dot => {
            // Widen, multiply, add pairs (wrapping, as Wasm does): x64
            // recognises the shape as one `pmaddwd`.
            let low = emit_binary(builder, Binary::ExtMul(Signed, Half::Low), x, y);
            let high = emit_binary(builder, Binary::ExtMul(Signed, Half::High), x, y);
            builder.ins().iadd_pairwise(low, high)
        }
        Binary::ExtMul(sign, half) => {
            // x64 recognises a multiply of two like widenings (`pmull*` with
            // `pmulh*` and an unpack, or `pmul{u,}dq`).
            let x = widen(builder, x, sign, half);
            let y = widen(builder, y, sign, half);
            builder.ins().imul(x, y)
        }
        Binary::Fadd => builder.ins().fadd(x, y),
        Binary::Fsub => builder.ins().fsub(x, y),
        Binary::Fmul => builder.ins().fmul(x, y),
        Binary::Fdiv => builder.ins().fdiv(x, y),
        // Vector `fmin`/`fmax` have Wasm's semantics (a NaN operand gives a
        // NaN, -0 < +0), which x64 builds from both orders of `minp*`/`maxp*`.
        Binary::Fmin => builder.ins().fmin(x, y),
        Binary::Fmax => builder.ins().fmax(x, y),
        // pmin(x, y) = y < x ? y : x and pmax(x, y) = x < y ? y : x, lane-wise:
        // x64 lowers these exact shapes to `minp*`/`maxp*` y, x.
        Binary::Pmin | Binary::Pmax => {
            let (lesser, greater) = match binary {
                Binary::Pmin => (y, x),
                _ => (x, y),
            };
            let float_lanes = builder.func.dfg.value_type(x);
            let y_wins = builder.ins().fcmp(FloatCC::LessThan, lesser, greater);
            let y_wins = as_lanes(builder, y_wins, float_lanes);
            builder.ins().bitselect(y_wins, y, x)
        }
    }
}
