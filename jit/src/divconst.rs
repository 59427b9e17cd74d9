//! Division by a constant without a divide instruction. Cranelift 0.112
//! lowers every `udiv`/`sdiv`/`urem`/`srem` to a hardware divide (tens of
//! cycles), even when the divisor is a constant, as in C's `% 65536` or
//! `/ 10`. This pass, run on each function before compilation, rewrites
//! those with a constant divisor into multiplies and shifts, using the
//! always-correct sequences of Granlund and Montgomery ("Division by
//! invariant integers using multiplication", PLDI 1994, figures 4.1 and
//! 5.2), for 32- and 64-bit integers.
//!
//! Divisors that can trap or overflow (0, and -1 for signed division) keep
//! their original instruction, so every trap stays exactly where Wasm puts
//! it; no other constant divisor can trap.

use cranelift_codegen::cursor::{Cursor, FuncCursor};
use cranelift_codegen::ir::{self, types, InstBuilder, InstructionData, Opcode};

/// Rewrites every division and remainder by a suitable constant in `func`.
pub fn rewrite(func: &mut ir::Function) {
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
                    unsigned_quotient(&mut pos, n, divisor, bits)
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
                    pos.func.dfg.replace(inst).iadd_imm(quotient, 0);
                }
                _ => {
                    // remainder = n - quotient * divisor
                    let product = pos.ins().imul_imm(quotient, divisor);
                    pos.func.dfg.replace(inst).isub(n, product);
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

/// `n / d` for unsigned `n` and a constant `d` >= 1 (Granlund-Montgomery
/// figure 4.1).
fn unsigned_quotient(pos: &mut FuncCursor, n: ir::Value, d: i64, bits: u32) -> ir::Value {
    let d = d as u64 & mask(bits) as u64;
    if d.is_power_of_two() {
        let shift = d.trailing_zeros();
        return if shift == 0 {
            n
        } else {
            pos.ins().ushr_imm(n, i64::from(shift))
        };
    }
    // l = ceil(log2 d); m' = floor(2^bits * (2^l - d) / d) + 1
    let l = 64 - (d - 1).leading_zeros();
    let m = ((1u128 << bits) * ((1u128 << l) - u128::from(d)) / u128::from(d) + 1) as i64;
    let ty = pos.func.dfg.value_type(n);
    let m = pos.ins().iconst(ty, m & mask(bits));
    let t1 = pos.ins().umulhi(n, m);
    // q = (t1 + ((n - t1) >> 1)) >> (l - 1)
    let diff = pos.ins().isub(n, t1);
    let half = pos.ins().ushr_imm(diff, 1);
    let sum = pos.ins().iadd(t1, half);
    pos.ins().ushr_imm(sum, i64::from(l - 1))
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
        let sign = pos.ins().sshr_imm(n, k - 1);
        let bias = pos.ins().ushr_imm(sign, i64::from(bits) - k);
        let biased = pos.ins().iadd(n, bias);
        pos.ins().sshr_imm(biased, k)
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
        let shifted = pos.ins().sshr_imm(q0, i64::from(l - 1));
        let sign = pos.ins().sshr_imm(n, i64::from(bits - 1));
        pos.ins().isub(shifted, sign)
    };
    if d < 0 {
        pos.ins().ineg(quotient)
    } else {
        quotient
    }
}
