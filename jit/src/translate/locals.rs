//! Locals and globals: a Cranelift variable per local (parameters take the
//! function's native parameters after the two vmctx pointers; declared
//! locals start at zero), `local.get/set/tee`, and `global.get/set`
//! through the pointer to each global's value that the vmctx holds.

use super::stack::V128;
use super::FuncState;
use crate::func_env::{ir_type, FuncEnv, NATIVE_PARAMS_BEFORE_WASM};
use crate::types::ValType;
use cranelift_codegen::ir::{self, types, InstBuilder};
use cranelift_frontend::{FunctionBuilder, Variable};
use wasmparser::Operator;

#[derive(Default)]
pub(super) struct Locals {
    variables: Vec<Variable>,
}

impl Locals {
    /// Declares the parameters, from the entry block's parameters, and the
    /// declared locals, each zero. `types` lists every local, parameters
    /// first.
    pub fn declare(
        &mut self,
        builder: &mut FunctionBuilder,
        entry: ir::Block,
        num_params: usize,
        types: &[ValType],
    ) {
        self.variables.clear();
        for (index, &ty) in types.iter().enumerate() {
            let variable = builder.declare_var(ir_type(ty));
            let value = if index < num_params {
                builder.block_params(entry)[NATIVE_PARAMS_BEFORE_WASM + index]
            } else {
                zero(builder, ty)
            };
            builder.def_var(variable, value);
            self.variables.push(variable);
        }
    }
}

/// The zero value of a type: the initial value of a declared local.
fn zero(builder: &mut FunctionBuilder, ty: ValType) -> ir::Value {
    match ty {
        ValType::I32 => builder.ins().iconst(types::I32, 0),
        ValType::I64 | ValType::FuncRef | ValType::ExternRef => builder.ins().iconst(types::I64, 0),
        ValType::F32 => builder.ins().f32const(0.0),
        ValType::F64 => builder.ins().f64const(0.0),
        ValType::V128 => {
            let zeros = builder.func.dfg.constants.insert(vec![0u8; 16].into());
            builder.ins().vconst(V128, zeros)
        }
    }
}

/// Translates `op` if it is a local or global access, returning whether it
/// was one.
pub(super) fn translate_variable(
    op: &Operator<'_>,
    builder: &mut FunctionBuilder,
    env: &mut FuncEnv,
    state: &mut FuncState,
) -> bool {
    let locals = &state.locals.variables;
    match *op {
        Operator::LocalGet { local_index } => {
            let value = builder.use_var(locals[local_index as usize]);
            state.stack.push(value);
        }
        Operator::LocalSet { local_index } => {
            let value = state.stack.pop();
            builder.def_var(locals[local_index as usize], value);
        }
        Operator::LocalTee { local_index } => {
            let value = state.stack.peek();
            builder.def_var(locals[local_index as usize], value);
        }
        Operator::GlobalGet { global_index } => {
            let (address, ty, mutable) = env.global_address(builder, global_index);
            let value = builder
                .ins()
                .load(ir_type(ty), env.global_flags(mutable), address, 0);
            state.stack.push(value);
        }
        Operator::GlobalSet { global_index } => {
            let (address, _, mutable) = env.global_address(builder, global_index);
            let value = state.stack.pop();
            builder
                .ins()
                .store(env.global_flags(mutable), value, address, 0);
        }
        _ => return false,
    }
    true
}
