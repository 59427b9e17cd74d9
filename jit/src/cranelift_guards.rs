//! Tests that pin behaviours of Cranelift that Backstop once had to work
//! around and no longer does, so that a Cranelift upgrade that brings one
//! back fails here rather than slowing programs down unnoticed
//! (BENCHMARKS.md, "Our own passes on Cranelift 0.135").
//!
//! - Shared xor chains: Cranelift 0.112's e-graph reassociated
//!   `((a ^ b) ^ c) ^ d` into `(a ^ b) ^ (c ^ d)` even where `(a ^ b) ^ c`
//!   was used elsewhere, computing a second xor tree beside the shared
//!   value (up to 10 xors per xorshift step where 6 do). Backstop hid shared
//!   xors from that rule (`xor_fences`, removed with the move to 0.135).

use crate::{build_isa, OptLevel};
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::{self, types, AbiParam, InstBuilder, Opcode, Signature};
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

#[test]
fn the_e_graph_keeps_one_xor_per_step_of_a_shared_xor_chain() {
    let isa = build_isa(OptLevel::Speed, true, true).unwrap();
    let mut ctx = Context::for_function(xorshift_twice());
    ctx.compute_cfg();
    ctx.compute_domtree();
    ctx.egraph_pass(&*isa, &mut ControlPlane::default())
        .unwrap();
    ctx.verify(&*isa)
        .unwrap_or_else(|errors| panic!("{errors}\n{}", ctx.func.display()));
    let func = &ctx.func;
    let xors = func
        .layout
        .blocks()
        .flat_map(|block| func.layout.block_insts(block))
        .filter(|inst| func.dfg.insts[*inst].opcode() == Opcode::Bxor)
        .count();
    assert_eq!(xors, 6, "{}", func.display());
}
