//! Relaxed SIMD (Wasm 3.0): operators whose result the standard lets vary
//! between machines. Backstop gives each one fixed result, the same on
//! every x86-64 machine, with or without FMA, SSE4.1 or AVX:
//!
//! | operator | Backstop's result |
//! |---|---|
//! | `i8x16.relaxed_swizzle` | `i8x16.swizzle` (an index of 16 or more gives 0) |
//! | `i32x4.relaxed_trunc_*` | the saturating `i32x4.trunc_sat_*` (NaN gives 0) |
//! | `*.relaxed_madd`, `*.relaxed_nmadd` | unfused: the product rounded, then the sum |
//! | `*.relaxed_laneselect` | `v128.bitselect` (every bit of the mask counts) |
//! | `f32x4/f64x2.relaxed_min/max` | `min`/`max` (NaN in, NaN out; -0 below +0) |
//! | `i16x8.relaxed_q15mulr_s` | the saturating `i16x8.q15mulr_sat_s` |
//! | `i16x8.relaxed_dot_i8x16_i7x16_s` | both operands signed, pair sums wrapping in 16 bits |
//! | `i32x4.relaxed_dot_i8x16_i7x16_add_s` | the same 16-bit pair sums, widened, added in pairs, plus the accumulator |
//!
//! Unfused multiply-add is what gives one answer everywhere (a machine
//! without FMA cannot fuse cheaply), and every other row is the Wasm 2.0
//! operator the relaxed one loosens.

use super::simd::{
    bitselect, emit_binary, emit_unary, pop2_lanes, pop_lanes, push_vector, Binary, Signedness,
    Unary,
};
use super::stack::{as_lanes, ValueStack};
use cranelift_codegen::ir::types::{F32X4, F64X2, I16X8, I32X4, I8X16};
use cranelift_codegen::ir::{InstBuilder, Type};
use cranelift_frontend::FunctionBuilder;
use wasmparser::Operator;

/// Translates `op` if it is a relaxed SIMD operator, returning whether it
/// was one.
pub(super) fn translate_relaxed(
    op: &Operator<'_>,
    builder: &mut FunctionBuilder<'_>,
    stack: &mut ValueStack,
) -> bool {
    use Operator as O;
    use Signedness::{Signed, Unsigned};
    let unary = |builder: &mut FunctionBuilder<'_>, stack: &mut ValueStack, lanes, op| {
        let x = pop_lanes(builder, stack, lanes);
        let result = emit_unary(builder, op, x);
        push_vector(builder, stack, result);
    };
    let binary = |builder: &mut FunctionBuilder<'_>, stack: &mut ValueStack, lanes, op| {
        let (x, y) = pop2_lanes(builder, stack, lanes);
        let result = emit_binary(builder, op, x, y);
        push_vector(builder, stack, result);
    };
    match op {
        O::I8x16RelaxedSwizzle => binary(builder, stack, I8X16, Binary::Swizzle),
        O::I32x4RelaxedTruncF32x4S => unary(builder, stack, F32X4, Unary::TruncSatF32(Signed)),
        O::I32x4RelaxedTruncF32x4U => unary(builder, stack, F32X4, Unary::TruncSatF32(Unsigned)),
        O::I32x4RelaxedTruncF64x2SZero => {
            unary(builder, stack, F64X2, Unary::TruncSatF64Zero(Signed))
        }
        O::I32x4RelaxedTruncF64x2UZero => {
            unary(builder, stack, F64X2, Unary::TruncSatF64Zero(Unsigned))
        }
        O::F32x4RelaxedMin => binary(builder, stack, F32X4, Binary::Fmin),
        O::F32x4RelaxedMax => binary(builder, stack, F32X4, Binary::Fmax),
        O::F64x2RelaxedMin => binary(builder, stack, F64X2, Binary::Fmin),
        O::F64x2RelaxedMax => binary(builder, stack, F64X2, Binary::Fmax),
        O::I16x8RelaxedQ15mulrS => binary(builder, stack, I16X8, Binary::Q15MulrSat),
        // Widening multiplies of the i8 lanes, added in pairs (`Binary::Dot`
        // on i8x16 operands gives i16x8).
        O::I16x8RelaxedDotI8x16I7x16S => binary(builder, stack, I8X16, Binary::Dot),
        O::I32x4RelaxedDotI8x16I7x16AddS => {
            let (x, y, accumulator) = stack.pop3();
            let x = as_lanes(builder, x, I8X16);
            let y = as_lanes(builder, y, I8X16);
            let accumulator = as_lanes(builder, accumulator, I32X4);
            let pair_sums = emit_binary(builder, Binary::Dot, x, y);
            let quad_sums = emit_unary(builder, Unary::ExtAddPairwise(Signed), pair_sums);
            let result = builder.ins().iadd(quad_sums, accumulator);
            push_vector(builder, stack, result);
        }
        O::I8x16RelaxedLaneselect
        | O::I16x8RelaxedLaneselect
        | O::I32x4RelaxedLaneselect
        | O::I64x2RelaxedLaneselect => bitselect(builder, stack),
        O::F32x4RelaxedMadd => multiply_add(builder, stack, F32X4, false),
        O::F32x4RelaxedNmadd => multiply_add(builder, stack, F32X4, true),
        O::F64x2RelaxedMadd => multiply_add(builder, stack, F64X2, false),
        O::F64x2RelaxedNmadd => multiply_add(builder, stack, F64X2, true),
        _ => return false,
    }
    true
}

/// `a * b + c`, or `-(a * b) + c` when `negate`, rounded after the
/// multiply and after the add.
fn multiply_add(
    builder: &mut FunctionBuilder<'_>,
    stack: &mut ValueStack,
    lanes: Type,
    negate: bool,
) {
    let (a, b, c) = stack.pop3();
    let a = as_lanes(builder, a, lanes);
    let b = as_lanes(builder, b, lanes);
    let c = as_lanes(builder, c, lanes);
    let product = builder.ins().fmul(a, b);
    let product = if negate {
        builder.ins().fneg(product)
    } else {
        product
    };
    let result = builder.ins().fadd(product, c);
    push_vector(builder, stack, result);
}
