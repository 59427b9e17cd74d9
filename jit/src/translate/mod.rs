//! Backstop's Wasm-to-CLIF translator: turns one validated function body
//! into a Cranelift function, asking `FuncEnv` how to reach the instance.
//!
//! `FuncTranslator::translate` reads the locals, then each operator with
//! its offset, validates it (wasmparser's validator runs in the same pass,
//! so the translator may assume valid input), records the offset as the
//! source location of what follows, and hands the operator to the part
//! that owns it:
//!
//! | file        | owns                                                       |
//! |-------------|------------------------------------------------------------|
//! | `control`   | block, loop, if, branches, return, unreachable, dead code |
//! | `locals`    | locals and globals                                        |
//! | `memory`    | loads, stores, bounds checks, memory.* and data.drop      |
//! | `calls`     | calls, tables, references                                 |
//! | `numeric`   | scalar integer and float operators                        |
//! | `simd`      | 128-bit vector operators that do not touch memory         |
//! | `relaxed_simd` | relaxed SIMD, one fixed result per operator            |
//! | `stack`     | the operand stack and the canonical v128 type              |
//!
//! `drop` and `select` are here.

mod calls;
mod control;
mod locals;
mod memory;
mod numeric;
mod relaxed_simd;
mod simd;
mod stack;

use crate::func_env::FuncEnv;
use crate::types::ValType;
use crate::CompileError;
use cranelift_codegen::ir::{self, InstBuilder};
use cranelift_codegen::isa::TargetFrontendConfig;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use wasmparser::{FuncValidator, FunctionBody, Operator, OperatorsReader, ValidatorResources};

/// What translating a function keeps between operators.
pub(crate) struct FuncState {
    stack: stack::ValueStack,
    control: Vec<control::ControlFrame>,
    /// Whether the operator being translated can be reached.
    reachable: bool,
    /// Frames opened in dead code that are not yet closed.
    dead_depth: u32,
    locals: locals::Locals,
}

/// Translates function bodies, reusing its allocations from one to the next.
pub struct FuncTranslator {
    builder_context: FunctionBuilderContext,
    local_types: Vec<ValType>,
}

impl Default for FuncTranslator {
    fn default() -> Self {
        Self::new()
    }
}

fn invalid(error: wasmparser::BinaryReaderError) -> CompileError {
    CompileError::Invalid(format!(
        "{} (at offset {:#x})",
        error.message(),
        error.offset()
    ))
}

impl FuncTranslator {
    pub fn new() -> Self {
        FuncTranslator {
            builder_context: FunctionBuilderContext::new(),
            local_types: Vec::new(),
        }
    }

    /// Validates `body` with `validator` and translates it into `func`,
    /// whose signature is already the native one of the function's type.
    pub fn translate(
        &mut self,
        validator: &mut FuncValidator<ValidatorResources>,
        body: &FunctionBody<'_>,
        func: &mut ir::Function,
        env: &mut FuncEnv,
        frontend_config: TargetFrontendConfig,
    ) -> Result<(), CompileError> {
        let mut reader = body.get_binary_reader();
        validator.read_locals(&mut reader).map_err(invalid)?;
        self.local_types.clear();
        for index in 0..validator.len_locals() {
            let ty = validator
                .get_local_type(index)
                .expect("the validator knows each local it counted");
            let ty = ValType::from_wasmparser(ty).map_err(CompileError::Unsupported)?;
            self.local_types.push(ty);
        }

        let mut builder = FunctionBuilder::new(func, &mut self.builder_context);
        let entry = builder.create_block();
        builder.append_block_params_for_function_params(entry);
        builder.switch_to_block(entry);
        builder.seal_block(entry);
        env.begin_function(&mut builder, entry);
        let ty = env.module().func_type(validator.index());
        let (num_params, results) = (ty.params().len(), ty.results().to_vec());
        let mut state = FuncState {
            stack: Default::default(),
            control: Vec::new(),
            reachable: true,
            dead_depth: 0,
            locals: Default::default(),
        };
        state
            .locals
            .declare(&mut builder, entry, num_params, &self.local_types);
        control::open_function(&mut builder, &mut state, &results);
        env.emit_interrupt_check(&mut builder);

        let mut operators = OperatorsReader::new(reader);
        while !operators.eof() {
            let (op, offset) = operators.read_with_offset().map_err(invalid)?;
            validator.op(offset, &op).map_err(invalid)?;
            builder.set_srcloc(ir::SourceLoc::new(offset as u32));
            if state.reachable {
                translate_operator(&op, &mut builder, env, &mut state)?;
            } else {
                control::skip_dead(&op, &mut builder, &mut state);
            }
        }
        operators.finish().map_err(invalid)?;
        if !control::function_done(&state) {
            return Err(CompileError::Invalid(
                "function body ends inside a block".into(),
            ));
        }
        builder.finalize(frontend_config);
        Ok(())
    }
}

fn translate_operator(
    op: &Operator<'_>,
    builder: &mut FunctionBuilder,
    env: &mut FuncEnv,
    state: &mut FuncState,
) -> Result<(), CompileError> {
    let handled = numeric::translate_numeric(op, builder, &mut state.stack)
        || locals::translate_variable(op, builder, env, state)
        || control::translate_control(op, builder, env, state)
        || memory::translate_memory(op, builder, env, &mut state.stack)
        || calls::translate_call_or_table(op, builder, env, &mut state.stack)
        || simd::translate_simd(op, builder, &mut state.stack)
        || translate_parametric(op, builder, &mut state.stack);
    if handled {
        Ok(())
    } else {
        // Validation refuses every operator of a proposal that is not
        // enabled, so this is an operator we enabled and do not translate.
        Err(CompileError::Unsupported(format!("the operator {op:?}")))
    }
}

/// A bulk memory or table operator (`memory.copy/fill/init`,
/// `table.copy/fill/init`): pops its three operands, passes them to
/// `builtin` after the operator's `immediates`, and traps with `code` when
/// the builtin reports the range out of bounds.
fn bulk_operation(
    env: &mut FuncEnv,
    builder: &mut FunctionBuilder,
    stack: &mut stack::ValueStack,
    builtin: crate::vmoffsets::Builtin,
    immediates: &[u32],
    code: crate::types::TrapCode,
) {
    let (destination, source_or_value, length) = stack.pop3();
    env.call_builtin_checked(
        builder,
        builtin,
        immediates,
        &[destination, source_or_value, length],
        code,
    );
}

/// `drop` and `select`.
fn translate_parametric(
    op: &Operator<'_>,
    builder: &mut FunctionBuilder,
    stack: &mut stack::ValueStack,
) -> bool {
    match op {
        Operator::Drop => {
            stack.pop();
        }
        Operator::Select | Operator::TypedSelect { .. } => {
            let (if_true, if_false, condition) = stack.pop3();
            let chosen = builder.ins().select(condition, if_true, if_false);
            stack.push(chosen);
        }
        _ => return false,
    }
    true
}
