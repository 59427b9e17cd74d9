//! Division by a constant without a divide instruction. This pass, run on
//! each function before compilation, rewrites every `udiv`/`sdiv`/`urem`/
//! `srem` with a constant divisor (as in C's `% 65536` or `/ 10`) into
//! multiplies and shifts, for 32- and 64-bit integers. Cranelift 0.112 did
//! no such rewrite; 0.135 has one, but this pass also knows the dividend's
//! range and still makes `lz77` 1-1.4% faster (BENCHMARKS.md, "Our own
//! passes on Cranelift 0.135").
//!
//! Unsigned division picks the cheapest exact form for the dividend's range
//! (see [`UnsignedPlan`]): a single multiply and shift whenever a magic
//! number exists that fits, which for 32-bit operands usually means one
//! 64-bit multiply, and otherwise the always-correct sequence of Granlund
//! and Montgomery ("Division by invariant integers using multiplication",
//! PLDI 1994, figure 4.1). The range comes from how the dividend was made:
//! a mask, a narrow load, a shift, an extension, or an earlier remainder.
//! Signed division uses their figure 5.2.
//!
//! Divisors that can trap or overflow (0, and -1 for signed division) keep
//! their original instruction, so every trap stays exactly where Wasm puts
//! it; no other constant divisor can trap.

use cranelift_codegen::cursor::{Cursor, FuncCursor};
use cranelift_codegen::ir::{self, types, InstBuilder, InstructionData, Opcode};
use std::collections::HashMap;

/// Rewrites every division and remainder by a suitable constant in `func`.
pub fn rewrite(func: &mut ir::Function) {
    // Significant bits of the results of remainders already rewritten (their
    // instructions become `isub`s, which say nothing about the range).
    let mut rewritten_widths: HashMap<ir::Value, u32> = HashMap::new();
    let mut pos = FuncCursor::new(func);
    while pos.next_block().is_some() {
        while let Some(inst) = pos.next_inst() {
            let (opcode, n, d) = match pos.func.dfg.insts[inst] {
                InstructionData::Binary {
                    opcode: opcode @ (Opcode::Udiv | Opcode::Sdiv | Opcode::Urem | Opcode::Srem),
                    args: [n, d],
                } => (opcode, n, d),
                _ => continue,
            };
            let ty = pos.func.dfg.value_type(n);
            if ty != types::I32 && ty != types::I64 {
                continue;
            }
            let Some(divisor) = constant(pos.func, d) else {
                continue;
            };
            let bits = ty.bits();
            let quotient = match opcode {
                Opcode::Udiv | Opcode::Urem => {
                    let divisor = divisor & mask(bits);
                    if divisor == 0 {
                        continue;
                    }
                    let width = significant_bits(pos.func, n, &rewritten_widths, 0);
                    let result = pos.func.dfg.first_result(inst);
                    let n_max = (1u128 << width) - 1;
                    let result_max = if opcode == Opcode::Urem {
                        n_max.min(divisor as u64 as u128 - 1)
                    } else {
                        n_max / divisor as u64 as u128
                    };
                    rewritten_widths.insert(result, 128 - result_max.leading_zeros());
                    let plan = UnsignedPlan::choose(divisor as u64, width, bits);
                    plan.emit(&mut pos, n)
                }
                _ => {
                    let divisor = sign_extend(divisor, bits);
                    if divisor == 0 || divisor == -1 {
                        continue;
                    }
                    signed_quotient(&mut pos, n, divisor, bits)
                }
            };
            match opcode {
                Opcode::Udiv | Opcode::Sdiv => {
                    pos.func.replace(inst).iadd_imm_s(quotient, 0);
                }
                _ => {
                    // remainder = n - quotient * divisor
                    let product = pos.ins().imul_imm_s(quotient, divisor);
                    pos.func.replace(inst).isub(n, product);
                }
            }
        }
    }
}

/// The value of `v` if it is an `iconst`.
fn constant(func: &ir::Function, v: ir::Value) -> Option<i64> {
    let inst = func.dfg.value_def(v).inst()?;
    match func.dfg.insts[inst] {
        InstructionData::UnaryImm {
            opcode: Opcode::Iconst,
            imm,
        } => Some(imm.bits()),
        _ => None,
    }
}

fn mask(bits: u32) -> i64 {
    if bits == 64 {
        -1
    } else {
        (1i64 << bits) - 1
    }
}

fn sign_extend(value: i64, bits: u32) -> i64 {
    let shift = 64 - bits;
    (value << shift) >> shift
}

/// The bits of `v` that can be non-zero, counted from the bottom: `v` is
/// below `2^significant_bits`. Looks through masks, right shifts by
/// constants, narrow loads, zero extensions and ors, a few levels deep.
fn significant_bits(
    func: &ir::Function,
    v: ir::Value,
    rewritten_widths: &HashMap<ir::Value, u32>,
    depth: u32,
) -> u32 {
    let bits = func.dfg.value_type(v).bits();
    if let Some(width) = rewritten_widths.get(&v) {
        return (*width).min(bits);
    }
    let Some(inst) = func.dfg.value_def(v).inst() else {
        return bits;
    };
    if depth > 4 {
        return bits;
    }
    let operand = |v| significant_bits(func, v, rewritten_widths, depth + 1);
    let width = match func.dfg.insts[inst] {
        InstructionData::UnaryImm {
            opcode: Opcode::Iconst,
            imm,
        } => 64 - ((imm.bits() & mask(bits)) as u64).leading_zeros(),
        InstructionData::Binary {
            opcode: Opcode::Band,
            args: [a, b],
        } => operand(a).min(operand(b)),
        InstructionData::Binary {
            opcode: Opcode::Bor | Opcode::Bxor,
            args: [a, b],
        } => operand(a).max(operand(b)),
        InstructionData::Binary {
            opcode: Opcode::Ushr,
            args: [a, amount],
        } => match constant(func, amount) {
            // Cranelift masks shift amounts to the type's width.
            Some(amount) => operand(a).saturating_sub((amount as u32) & (bits - 1)),
            None => bits,
        },
        InstructionData::Unary {
            opcode: Opcode::Uextend,
            arg,
        } => operand(arg),
        InstructionData::Load { opcode, .. } => match opcode {
            Opcode::Uload8 => 8,
            Opcode::Uload16 => 16,
            Opcode::Uload32 => 32,
            _ => bits,
        },
        _ => bits,
    };
    width.min(bits)
}

/// How to compute `n / d` for a constant `d` >= 1 and an unsigned `n` below
/// `2^width`, in an integer type of `bits` bits, without dividing.
///
/// The multiply-and-shift forms rest on one fact: with `m = ceil(2^k / d)`
/// and `e = m * d - 2^k`, `floor(n * m / 2^k) == floor(n / d)` for every
/// `n <= n_max` as long as `e * n_max < 2^k`. (Write `n = q * d + r`; then
/// `n * m / 2^k = q + r / d + n * e / (d * 2^k)`, and the last two terms
/// stay below 1 because `r <= d - 1` and `n * e < 2^k`.) The smallest such
/// `k` gives the smallest `m`, and once a `k` works every larger one does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnsignedPlan {
    /// `n < d`: the quotient is 0.
    Zero,
    /// `d` is a power of two: `n >> shift`.
    Shift(u32),
    /// `(n * magic) >> shift` in the operand's own type, whose width the
    /// product never exceeds.
    MulShift { magic: u64, shift: u32 },
    /// 32-bit operands only: `(zext64(n) * magic) >> shift`, with the
    /// product below `2^64`.
    WideMulShift { magic: u64, shift: u32 },
    /// `umulhi(n, magic) >> shift`: the high half of the double-width
    /// product, so `k = bits + shift`.
    HighMulShift { magic: u64, shift: u32 },
    /// Granlund-Montgomery figure 4.1, correct for every `n` of the type:
    /// `t = umulhi(n, magic); (t + ((n - t) >> 1)) >> shift`.
    Fixup { magic: u64, shift: u32 },
}

impl UnsignedPlan {
    fn choose(d: u64, width: u32, bits: u32) -> UnsignedPlan {
        let d = d & mask(bits) as u64;
        debug_assert!(d != 0 && width <= bits && (bits == 32 || bits == 64));
        if d.is_power_of_two() {
            return UnsignedPlan::Shift(d.trailing_zeros());
        }
        let n_max = (1u128 << width) - 1;
        if n_max < u128::from(d) {
            return UnsignedPlan::Zero;
        }
        let d128 = u128::from(d);
        let magic_for = |k: u32| -> Option<u128> {
            let power = 1u128 << k;
            let m = power.div_ceil(d128);
            let e = m * d128 - power;
            // e < d < 2^64 and n_max < 2^64: the product fits 128 bits.
            (e * n_max < power).then_some(m)
        };
        // ceil(log2 d): k = width + l always works (e < d <= 2^l).
        let l = 64 - (d - 1).leading_zeros();
        let limit = (width + l).min(127);
        if let Some((k, m)) = (0..=limit).find_map(|k| magic_for(k).map(|m| (k, m))) {
            // m can exceed 2^64, so the product can exceed 2^128.
            let fits_type = |factor: u128| {
                m.checked_mul(factor)
                    .is_some_and(|product| product < (1u128 << bits))
            };
            if fits_type(n_max) {
                return UnsignedPlan::MulShift {
                    magic: m as u64,
                    shift: k,
                };
            }
            if bits == 32 && m < 1u128 << 32 {
                return UnsignedPlan::WideMulShift {
                    magic: m as u64,
                    shift: k,
                };
            }
            // The high half needs k >= bits; a k that works keeps working
            // when raised.
            let k_high = k.max(bits);
            if let Some(m) = magic_for(k_high).filter(|m| *m < 1u128 << bits) {
                return UnsignedPlan::HighMulShift {
                    magic: m as u64,
                    shift: k_high - bits,
                };
            }
        }
        // m' = floor(2^bits * (2^l - d) / d) + 1, shift l - 1.
        let magic = ((1u128 << bits) * ((1u128 << l) - d128) / d128 + 1) as u64;
        UnsignedPlan::Fixup {
            magic: magic & mask(bits) as u64,
            shift: l - 1,
        }
    }

    /// Emits the quotient of `n` at `pos`.
    fn emit(self, pos: &mut FuncCursor, n: ir::Value) -> ir::Value {
        let ty = pos.func.dfg.value_type(n);
        match self {
            UnsignedPlan::Zero => pos.ins().iconst(ty, 0),
            UnsignedPlan::Shift(0) => n,
            UnsignedPlan::Shift(shift) => pos.ins().ushr_imm_u(n, i64::from(shift)),
            UnsignedPlan::MulShift { magic, shift } => {
                let product = pos.ins().imul_imm_s(n, magic as i64);
                pos.ins().ushr_imm_u(product, i64::from(shift))
            }
            UnsignedPlan::WideMulShift { magic, shift } => {
                let wide = pos.ins().uextend(types::I64, n);
                let product = pos.ins().imul_imm_s(wide, magic as i64);
                let quotient = pos.ins().ushr_imm_u(product, i64::from(shift));
                pos.ins().ireduce(ty, quotient)
            }
            UnsignedPlan::HighMulShift { magic, shift } => {
                let magic = pos.ins().iconst(ty, magic as i64);
                let high = pos.ins().umulhi(n, magic);
                if shift == 0 {
                    high
                } else {
                    pos.ins().ushr_imm_u(high, i64::from(shift))
                }
            }
            UnsignedPlan::Fixup { magic, shift } => {
                let magic = pos.ins().iconst(ty, magic as i64);
                let t1 = pos.ins().umulhi(n, magic);
                let diff = pos.ins().isub(n, t1);
                let half = pos.ins().ushr_imm_u(diff, 1);
                let sum = pos.ins().iadd(t1, half);
                pos.ins().ushr_imm_u(sum, i64::from(shift))
            }
        }
    }

    /// What the emitted code computes, in Rust, for the unit tests.
    #[cfg(test)]
    fn evaluate(self, n: u64, bits: u32) -> u64 {
        let wrap = |v: u128| (v & ((1u128 << bits) - 1)) as u64;
        let n128 = u128::from(n);
        match self {
            UnsignedPlan::Zero => 0,
            UnsignedPlan::Shift(shift) => n >> shift,
            UnsignedPlan::MulShift { magic, shift } => {
                wrap(n128 * u128::from(magic)) >> (shift & (bits - 1))
            }
            UnsignedPlan::WideMulShift { magic, shift } => {
                let product = (n128 * u128::from(magic)) as u64;
                wrap(u128::from(product >> shift))
            }
            UnsignedPlan::HighMulShift { magic, shift } => {
                let high = ((n128 * u128::from(magic)) >> bits) as u64;
                high >> shift
            }
            UnsignedPlan::Fixup { magic, shift } => {
                let t1 = ((n128 * u128::from(magic)) >> bits) as u64;
                let half = wrap(u128::from(n.wrapping_sub(t1))) >> 1;
                wrap(u128::from(t1) + u128::from(half)) >> shift
            }
        }
    }
}

/// `n / d` for signed `n` and a constant `d` not in {0, -1} (Granlund-
/// Montgomery figure 5.2, truncating toward zero as Wasm requires).
fn signed_quotient(pos: &mut FuncCursor, n: ir::Value, d: i64, bits: u32) -> ir::Value {
    let magnitude = d.unsigned_abs();
    let quotient = if magnitude == 1 {
        n
    } else if magnitude.is_power_of_two() {
        // q = (n + ((n >> (k-1)) >>> (bits-k))) >> k: round toward zero.
        let k = i64::from(magnitude.trailing_zeros());
        let sign = pos.ins().sshr_imm_u(n, k - 1);
        let bias = pos.ins().ushr_imm_u(sign, i64::from(bits) - k);
        let biased = pos.ins().iadd(n, bias);
        pos.ins().sshr_imm_u(biased, k)
    } else {
        // l = max(ceil(log2 |d|), 1); m = 1 + floor(2^(bits+l-1) / |d|) - 2^bits
        let l = (64 - (magnitude - 1).leading_zeros()).max(1);
        let m = 1 + (1u128 << (bits + l - 1)) / u128::from(magnitude);
        let m = (m as i128 - (1i128 << bits)) as i64;
        let ty = pos.func.dfg.value_type(n);
        let m = pos.ins().iconst(ty, m & mask(bits));
        // q0 = n + mulsh(m, n); q = (q0 >> (l-1)) - (n >> (bits-1))
        let high = pos.ins().smulhi(n, m);
        let q0 = pos.ins().iadd(n, high);
        let shifted = pos.ins().sshr_imm_u(q0, i64::from(l - 1));
        let sign = pos.ins().sshr_imm_u(n, i64::from(bits - 1));
        pos.ins().isub(shifted, sign)
    };
    if d < 0 {
        pos.ins().ineg(quotient)
    } else {
        quotient
    }
}

#[cfg(test)]
mod tests {
    use super::UnsignedPlan;

    fn divisors(bits: u32) -> Vec<u64> {
        let mut list: Vec<u64> = (1..=1200).collect();
        list.extend([
            10404,
            65535,
            65536,
            65537,
            1_000_000,
            0x7fff_ffff,
            0x8000_0001,
            0xffff_fffe,
            0xffff_ffff,
        ]);
        if bits == 64 {
            list.extend([
                1_000_000_007,
                (1 << 32) + 1,
                10u64.pow(18),
                u64::MAX - 1,
                u64::MAX,
            ]);
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..300 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            list.push((state >> (state % bits as u64)) | 1);
        }
        list.retain(|d| *d != 0 && (bits == 64 || *d <= u64::from(u32::MAX)));
        list
    }

    /// Dividends below `2^width` where a wrong quotient shows first: the
    /// ends of the range, either side of multiples of `d`, and random ones.
    fn dividends(d: u64, width: u32) -> Vec<u64> {
        let n_max = if width == 64 {
            u64::MAX
        } else {
            (1u64 << width) - 1
        };
        let mut list = vec![0, 1, n_max, n_max - 1, n_max / 2];
        let top = n_max / d;
        for q in [1, 2, 3, top / 2, top.saturating_sub(1), top] {
            let base = q.saturating_mul(d);
            for n in [base.wrapping_sub(1), base, base.wrapping_add(1)] {
                if n <= n_max {
                    list.push(n);
                }
            }
        }
        let mut state = d ^ 0x9e37_79b9_7f4a_7c15;
        for _ in 0..64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            list.push(state & n_max);
        }
        list
    }

    fn check_all(bits: u32, widths: &[u32]) {
        for d in divisors(bits) {
            for &width in widths {
                let plan = UnsignedPlan::choose(d, width, bits);
                let values: Vec<u64> = if width <= 12 {
                    (0..1u64 << width).collect()
                } else {
                    dividends(d, width)
                };
                for n in values {
                    assert_eq!(
                        plan.evaluate(n, bits),
                        n / d,
                        "{n} / {d}, width {width}: {plan:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_plan_divides_exactly_32() {
        check_all(32, &[1, 5, 8, 12, 16, 17, 24, 31, 32]);
    }

    #[test]
    fn every_plan_divides_exactly_64() {
        check_all(64, &[8, 16, 32, 33, 48, 63, 64]);
    }

    #[test]
    fn sixteen_bit_dividends_exhaustively() {
        for d in [3, 7, 10, 100, 105, 641, 10404, 65535] {
            for bits in [32, 64] {
                let plan = UnsignedPlan::choose(d, 16, bits);
                for n in 0..=u64::from(u16::MAX) {
                    assert_eq!(plan.evaluate(n, bits), n / d, "{n} / {d}: {plan:?}");
                }
            }
        }
    }

    #[test]
    fn plans_are_the_cheap_ones_where_they_exist() {
        // A 16-bit dividend: one 32-bit multiply.
        assert!(matches!(
            UnsignedPlan::choose(105, 16, 32),
            UnsignedPlan::MulShift { .. }
        ));
        // Full 32-bit dividends: a 64-bit multiply where the magic fits 32 bits...
        assert!(matches!(
            UnsignedPlan::choose(10, 32, 32),
            UnsignedPlan::WideMulShift { .. }
        ));
        assert!(matches!(
            UnsignedPlan::choose(10404, 32, 32),
            UnsignedPlan::WideMulShift { .. }
        ));
        // ...and the fix-up sequence where it needs 33.
        assert!(matches!(
            UnsignedPlan::choose(7, 32, 32),
            UnsignedPlan::Fixup { .. }
        ));
        assert!(matches!(
            UnsignedPlan::choose(10, 64, 64),
            UnsignedPlan::HighMulShift { .. }
        ));
        assert!(matches!(
            UnsignedPlan::choose(7, 64, 64),
            UnsignedPlan::Fixup { .. }
        ));
        assert_eq!(UnsignedPlan::choose(300, 8, 32), UnsignedPlan::Zero);
        assert_eq!(UnsignedPlan::choose(64, 32, 32), UnsignedPlan::Shift(6));
    }
}
