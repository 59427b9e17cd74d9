//! The two per-type adapters between Rust and compiled Wasm, both built as
//! Cranelift IR and compiled with the module, so their frames have unwind
//! info like every other guest frame:
//!
//! - The **entry trampoline** lets Rust call any function of a type through
//!   one uniform signature, `(native_call, callee_vmctx, caller_vmctx,
//!   values)`: it loads the arguments from `values` (16-byte slots), calls,
//!   and stores the results back into the same slots.
//! - The **host adapter** is the reverse: it has the native signature of the
//!   type, so compiled code (direct calls, tables) can call a host function
//!   like any Wasm function. It spills the arguments into 16-byte slots on its
//!   own frame and calls `host_ctx.array_call(host_ctx, caller_vmctx, values,
//!   count)`, then loads the results from the same slots.
//!
//! The runtime skips both when a call is typed with plain scalar types: it
//! calls compiled functions, and compiled code calls its host functions,
//! with the native signature directly (one frame fewer each way).

use crate::func_env::{ir_type, native_signature};
use crate::types::FuncType;
use crate::vmoffsets::HOST_CTX_ARRAY_CALL;
use cranelift_codegen::ir::{
    self, types, AbiParam, InstBuilder, MemFlagsData, Signature, StackSlotData, StackSlotKind,
    UserFuncName,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};

/// Size of one value slot: enough for a v128.
pub const VALUE_SLOT_SIZE: u32 = 16;

/// Signature of a host function's array call:
/// `extern "C-unwind" fn(host_ctx, caller_vmctx, values: *mut u128, count: u32)`.
fn array_call_signature() -> Signature {
    let mut sig = Signature::new(CallConv::SystemV);
    sig.params.push(AbiParam::new(types::I64));
    sig.params.push(AbiParam::new(types::I64));
    sig.params.push(AbiParam::new(types::I64));
    sig.params.push(AbiParam::new(types::I32));
    sig
}

/// Replaces `func` with the entry trampoline of `ty`.
pub fn build_entry_trampoline(
    func: &mut ir::Function,
    ty: &FuncType,
    frontend_config: TargetFrontendConfig,
) {
    let mut sig = Signature::new(CallConv::SystemV);
    for _ in 0..4 {
        sig.params.push(AbiParam::new(types::I64));
    }
    *func = ir::Function::with_name_signature(UserFuncName::user(1, 0), sig);
    let mut fb_ctx = FunctionBuilderContext::new();
    let mut builder = FunctionBuilder::new(func, &mut fb_ctx);
    let block = builder.create_block();
    builder.append_block_params_for_function_params(block);
    builder.switch_to_block(block);
    builder.seal_block(block);
    let params = builder.block_params(block).to_vec();
    let (native_call, callee_vmctx, caller_vmctx, values) =
        (params[0], params[1], params[2], params[3]);
    let flags = MemFlagsData::trusted();
    let mut args = vec![callee_vmctx, caller_vmctx];
    for (i, p) in ty.params().iter().enumerate() {
        let v = builder.ins().load(
            ir_type(*p),
            flags,
            values,
            (i as u32 * VALUE_SLOT_SIZE) as i32,
        );
        args.push(v);
    }
    let callee_sig = builder.import_signature(native_signature(ty));
    let call = builder.ins().call_indirect(callee_sig, native_call, &args);
    let results = builder.inst_results(call).to_vec();
    for (i, r) in results.into_iter().enumerate() {
        builder
            .ins()
            .store(flags, r, values, (i as u32 * VALUE_SLOT_SIZE) as i32);
    }
    builder.ins().return_(&[]);
    builder.finalize(frontend_config);
}

/// Replaces `func` with the host adapter of `ty`.
pub fn build_host_adapter(
    func: &mut ir::Function,
    ty: &FuncType,
    frontend_config: TargetFrontendConfig,
) {
    *func = ir::Function::with_name_signature(UserFuncName::user(2, 0), native_signature(ty));
    let mut fb_ctx = FunctionBuilderContext::new();
    let mut builder = FunctionBuilder::new(func, &mut fb_ctx);
    let block = builder.create_block();
    builder.append_block_params_for_function_params(block);
    builder.switch_to_block(block);
    builder.seal_block(block);
    let params = builder.block_params(block).to_vec();
    let (host_ctx, caller_vmctx) = (params[0], params[1]);
    let count = ty.params().len().max(ty.results().len()).max(1) as u32;
    let slot = builder.create_sized_stack_slot(StackSlotData::new(
        StackSlotKind::ExplicitSlot,
        count * VALUE_SLOT_SIZE,
        4,
    ));
    for (i, v) in params[2..].iter().enumerate() {
        builder
            .ins()
            .stack_store(types::I64, *v, slot, (i as u32 * VALUE_SLOT_SIZE) as i32);
    }
    let values = builder.ins().stack_addr(types::I64, slot, 0);
    let array_call = builder.ins().load(
        types::I64,
        MemFlagsData::trusted().with_readonly(),
        host_ctx,
        HOST_CTX_ARRAY_CALL as i32,
    );
    let array_sig = builder.import_signature(array_call_signature());
    let count_value = builder.ins().iconst(types::I32, i64::from(count));
    builder.ins().call_indirect(
        array_sig,
        array_call,
        &[host_ctx, caller_vmctx, values, count_value],
    );
    let mut results = Vec::with_capacity(ty.results().len());
    for (i, r) in ty.results().iter().enumerate() {
        results.push(builder.ins().stack_load(
            types::I64,
            ir_type(*r),
            slot,
            (i as u32 * VALUE_SLOT_SIZE) as i32,
        ));
    }
    builder.ins().return_(&results);
    builder.finalize(frontend_config);
}
