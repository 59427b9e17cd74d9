//! Fences that stop Cranelift's e-graph from reassociating `bxor` chains
//! through values that are used more than once.
//!
//! Cranelift 0.112 rewrites `((a ^ b) ^ c) ^ d` into `(a ^ b) ^ (c ^ d)`
//! (and the mirror image) for instruction-level parallelism, and subsumes
//! the original. That is a win when the inner values are used only there.
//! When `(a ^ b) ^ c` is also used elsewhere, which is what a xorshift
//! generator or a hash round looks like (`x ^= x << 13; x ^= x >> 17;
//! x ^= x << 5`), the rewrite computes the shared value *and* a second xor
//! tree beside it: more instructions and a longer dependency chain, which
//! compounds over an unrolled loop (lz77's and quicksort's generators ran
//! up to 10 xors and shifts per step where 6 suffice).
//!
//! [`insert`] runs before the e-graph pass: every `bxor` result used more
//! than once, at least once by another `bxor`, is routed through a
//! same-type `bitcast`, which the e-graph's rules do not look through.
//! [`remove`] runs after it and turns each such `bitcast` back into an
//! alias of its argument, so lowering sees the plain values again (a
//! same-type bitcast between general registers would lower to nothing
//! anyway, but would hide the operand from patterns such as "a 32-bit
//! operation already zero-extends").

use cranelift_codegen::cursor::{Cursor, FuncCursor};
use cranelift_codegen::entity::{EntitySet, SecondaryMap};
use cranelift_codegen::ir::{self, InstBuilder, MemFlagsData, Opcode};

/// Routes shared `bxor` results through fences; returns how many it made.
pub fn insert(func: &mut ir::Function) -> usize {
    let insts = || {
        func.layout
            .blocks()
            .flat_map(|block| func.layout.block_insts(block))
    };
    // Most functions have no xor chain at all; they pay one scan.
    let xors = insts()
        .filter(|inst| func.dfg.insts[*inst].opcode() == Opcode::Bxor)
        .count();
    if xors < 2 {
        return 0;
    }
    let mut uses: SecondaryMap<ir::Value, u32> = SecondaryMap::new();
    let mut used_by_xor: EntitySet<ir::Value> = EntitySet::new();
    for inst in insts() {
        let is_xor = func.dfg.insts[inst].opcode() == Opcode::Bxor;
        for value in func.dfg.inst_values(inst) {
            uses[value] += 1;
            if is_xor {
                used_by_xor.insert(value);
            }
        }
    }
    let mut fences = 0;
    let mut pos = FuncCursor::new(func);
    while pos.next_block().is_some() {
        while let Some(inst) = pos.next_inst() {
            if pos.func.dfg.insts[inst].opcode() != Opcode::Bxor {
                continue;
            }
            let shared = pos.func.dfg.first_result(inst);
            let ty = pos.func.dfg.value_type(shared);
            if !ty.is_int() || uses[shared] < 2 || !used_by_xor.contains(shared) {
                continue;
            }
            // The xor now defines a fresh value; the old one, with all its
            // uses, becomes the fence's result right after it.
            let unfenced = pos.func.dfg.replace_result(shared, ty);
            pos.goto_after_inst(inst);
            pos.ins()
                .with_result(shared)
                .bitcast(ty, MemFlagsData::new(), unfenced);
            fences += 1;
        }
    }
    fences
}

/// Replaces every same-type `bitcast` by an alias of its argument. Such a
/// bitcast is the identity, so this is right for any of them; in practice
/// only [`insert`] makes them (Wasm's reinterpretations change the type).
pub fn remove(func: &mut ir::Function) {
    let mut pos = FuncCursor::new(func);
    while pos.next_block().is_some() {
        while let Some(inst) = pos.next_inst() {
            let ir::InstructionData::LoadNoOffset {
                opcode: Opcode::Bitcast,
                arg,
                ..
            } = pos.func.dfg.insts[inst]
            else {
                continue;
            };
            let result = pos.func.dfg.first_result(inst);
            if pos.func.dfg.value_type(arg) != pos.func.dfg.value_type(result) {
                continue;
            }
            pos.remove_inst_and_step_back();
            pos.func.dfg.clear_results(inst);
            pos.func.dfg.change_to_alias(result, arg);
        }
    }
    func.dfg.resolve_all_aliases();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{build_isa, OptLevel};
    use cranelift_codegen::control::ControlPlane;
    use cranelift_codegen::ir::{types, AbiParam, Signature};
    use cranelift_codegen::isa::CallConv;
    use cranelift_codegen::Context;
    use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};

    /// Two steps of a xorshift generator; both states are returned, so the
    /// first is shared between the return and the second step.
    fn xorshift_twice() -> ir::Function {
        let mut sig = Signature::new(CallConv::SystemV);
        sig.params.push(AbiParam::new(types::I32));
        sig.returns
            .extend([AbiParam::new(types::I32), AbiParam::new(types::I32)]);
        let mut func = ir::Function::with_name_signature(ir::UserFuncName::default(), sig);
        let mut context = FunctionBuilderContext::new();
        let mut b = FunctionBuilder::new(&mut func, &mut context);
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let mut state = b.block_params(entry)[0];
        let mut states = Vec::new();
        for _ in 0..2 {
            let shifted = b.ins().ishl_imm_u(state, 13);
            state = b.ins().bxor(state, shifted);
            let shifted = b.ins().ushr_imm_u(state, 17);
            state = b.ins().bxor(state, shifted);
            let shifted = b.ins().ishl_imm_u(state, 5);
            state = b.ins().bxor(state, shifted);
            states.push(state);
        }
        b.ins().return_(&states);
        b.seal_all_blocks();
        b.finalize(crate::tests::frontend_config());
        func
    }

    /// Runs the e-graph pass over `func`, fenced or not, verifies the
    /// result and counts its `bxor`s and same-type `bitcast`s.
    fn optimize(func: ir::Function, fence: bool) -> (usize, usize) {
        let isa = build_isa(OptLevel::Speed, true).unwrap();
        let mut ctx = Context::for_function(func);
        ctx.compute_cfg();
        ctx.compute_domtree();
        let fenced = fence && insert(&mut ctx.func) > 0;
        ctx.egraph_pass(&*isa, &mut ControlPlane::default())
            .unwrap();
        if fenced {
            remove(&mut ctx.func);
        }
        ctx.verify(&*isa)
            .unwrap_or_else(|errors| panic!("{errors}\n{}", ctx.func.display()));
        let func = &ctx.func;
        let insts = func
            .layout
            .blocks()
            .flat_map(|block| func.layout.block_insts(block))
            .collect::<Vec<_>>();
        let count = |opcode| {
            insts
                .iter()
                .filter(|inst| func.dfg.insts[**inst].opcode() == opcode)
                .count()
        };
        (count(Opcode::Bxor), count(Opcode::Bitcast))
    }

    #[test]
    fn shared_xor_chains_keep_one_xor_per_step() {
        let (xors, bitcasts) = optimize(xorshift_twice(), true);
        assert_eq!((xors, bitcasts), (6, 0));
    }

    #[test]
    fn without_fences_the_e_graph_adds_xors() {
        // What the fences are for; if a Cranelift upgrade stops doing this,
        // this test says the fences may no longer be needed.
        let (xors, _) = optimize(xorshift_twice(), false);
        assert!(xors > 6, "{xors}");
    }
}
