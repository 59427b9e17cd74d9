//! Calls and tables: `call` and `call_indirect` (their arguments and
//! results on the operand stack; how a callee is reached is `FuncEnv`'s),
//! `table.get/set/size/grow/fill/copy/init`, `elem.drop`, and the
//! reference operators `ref.null`, `ref.is_null` and `ref.func`.
//!
//! A reference is a pointer-sized value: a funcref is a `*const VMFuncRef`
//! (null is 0), an externref an opaque host handle.

use super::stack::ValueStack;
use crate::func_env::FuncEnv;
use crate::types::TrapCode;
use crate::vmoffsets::Builtin;
use cranelift_codegen::ir::{condcodes::IntCC, types, InstBuilder};
use cranelift_frontend::FunctionBuilder;
use wasmparser::Operator;

/// Translates `op` if it is a call, a table or a reference operator,
/// returning whether it was one.
pub(super) fn translate_call_or_table(
    op: &Operator<'_>,
    builder: &mut FunctionBuilder,
    env: &mut FuncEnv,
    stack: &mut ValueStack,
) -> bool {
    match *op {
        Operator::Call { function_index } => {
            let num_params = env.module().func_type(function_index).params().len();
            let args = stack.pop_n(num_params);
            let call = env.call_function(builder, function_index, &args);
            stack.extend(builder.inst_results(call));
        }
        Operator::CallIndirect {
            type_index,
            table_index,
        } => {
            let callee_index = stack.pop();
            let num_params = env.module().types[type_index as usize].params().len();
            let args = stack.pop_n(num_params);
            let call = env.call_indirect(builder, type_index, table_index, callee_index, &args);
            stack.extend(builder.inst_results(call));
        }
        Operator::TableGet { table } => {
            let index = stack.pop();
            let element = env.table_element_addr(builder, table, index);
            let value = builder
                .ins()
                .load(types::I64, env.table_flags(), element, 0);
            stack.push(value);
        }
        Operator::TableSet { table } => {
            let (index, value) = stack.pop2();
            let element = env.table_element_addr(builder, table, index);
            builder.ins().store(env.table_flags(), value, element, 0);
        }
        Operator::TableSize { table } => {
            let (_, length) = env.table_ptr_and_length(builder, table);
            stack.push(length);
        }
        Operator::TableGrow { table } => {
            let (init, delta) = stack.pop2();
            let previous = env
                .call_builtin(builder, Builtin::TableGrow, &[table], &[init, delta])
                .expect("table.grow returns the previous size");
            stack.push(previous);
        }
        Operator::TableFill { table } => {
            super::bulk_operation(
                env,
                builder,
                stack,
                Builtin::TableFill,
                &[table],
                TrapCode::TableOutOfBounds,
            );
        }
        Operator::TableCopy {
            dst_table,
            src_table,
        } => {
            super::bulk_operation(
                env,
                builder,
                stack,
                Builtin::TableCopy,
                &[dst_table, src_table],
                TrapCode::TableOutOfBounds,
            );
        }
        Operator::TableInit { elem_index, table } => {
            super::bulk_operation(
                env,
                builder,
                stack,
                Builtin::TableInit,
                &[table, elem_index],
                TrapCode::TableOutOfBounds,
            );
        }
        Operator::ElemDrop { elem_index } => {
            env.call_builtin(builder, Builtin::ElemDrop, &[elem_index], &[]);
        }
        Operator::RefNull { .. } => {
            let null = builder.ins().iconst(types::I64, 0);
            stack.push(null);
        }
        Operator::RefIsNull => {
            let reference = stack.pop();
            let is_null = builder.ins().icmp_imm_s(IntCC::Equal, reference, 0);
            let is_null = builder.ins().uextend(types::I32, is_null);
            stack.push(is_null);
        }
        Operator::RefFunc { function_index } => {
            let reference = env.ref_func(builder, function_index);
            stack.push(reference);
        }
        _ => return false,
    }
    true
}
