//! Structured control flow: the control stack of `block`, `loop`, `if` and
//! the function body itself, the Cranelift blocks each one branches to,
//! the branches (`br`, `br_if`, `br_table`, `return`), `unreachable`, and
//! the skipping of code that validation accepts but no path reaches.
//!
//! Each frame has a `next` block, where its `end` continues, whose block
//! parameters are the frame's results. A loop also has a `header`, the
//! target of branches to it, whose parameters are the loop's parameters.
//! An `if` branches to a `then` and an `else` block; the parameters of an
//! `if` are values defined before it, so both arms use them as they are.
//!
//! | frame    | branch target | target's params | `end` when reachable        |
//! |----------|---------------|-----------------|-----------------------------|
//! | function | (a return)    | results         | `return` of the results     |
//! | block    | `next`        | results         | jump to `next`              |
//! | loop     | `header`      | params          | jump to `next`; seal header |
//! | if       | `next`        | results         | jump to `next`; the missing `else` passes the params on |
//!
//! After a branch, `return` or `unreachable` the rest of the frame is dead:
//! `reachable` is false and operators are skipped, counting the frames
//! opened in dead code (`dead_depth`), until the `else` or `end` of a live
//! frame. Code after `end` is reachable when anything reached `next`.

use super::FuncState;
use crate::func_env::{ir_type, FuncEnv};
use crate::types::{TrapCode, ValType};
use cranelift_codegen::ir::{self, BlockArg, InstBuilder, JumpTableData};
use cranelift_frontend::FunctionBuilder;
use wasmparser::{BlockType, Operator};

enum FrameKind {
    Function,
    Block,
    Loop {
        header: ir::Block,
    },
    If {
        else_block: ir::Block,
        /// Whether `else` has been seen (the else arm is then translated).
        else_seen: bool,
        /// The `if`'s parameters, for the else arm.
        params: Vec<ir::Value>,
    },
}

pub(super) struct ControlFrame {
    kind: FrameKind,
    /// Where `end` continues; its block parameters are the results.
    next: ir::Block,
    num_params: usize,
    num_results: usize,
    /// Operand stack height below the frame's parameters.
    height: usize,
    /// Whether a branch or a fall-through reaches `next`.
    next_reached: bool,
}

impl ControlFrame {
    /// A frame whose `num_params` parameters are the top of `stack`.
    fn new(
        kind: FrameKind,
        next: ir::Block,
        num_params: usize,
        num_results: usize,
        stack: &super::stack::ValueStack,
    ) -> Self {
        ControlFrame {
            kind,
            next,
            num_params,
            num_results,
            height: stack.len() - num_params,
            next_reached: false,
        }
    }

    /// The number of values a branch to this frame carries.
    fn branch_arity(&self) -> usize {
        match self.kind {
            FrameKind::Loop { .. } => self.num_params,
            _ => self.num_results,
        }
    }

    /// The block a branch to this frame jumps to. Marks `next` reached.
    fn branch_target(&mut self) -> ir::Block {
        match self.kind {
            FrameKind::Loop { header } => header,
            _ => {
                self.next_reached = true;
                self.next
            }
        }
    }
}

fn block_args(values: &[ir::Value]) -> Vec<BlockArg> {
    values.iter().copied().map(BlockArg::Value).collect()
}

/// The parameter and result types of a block type.
fn block_signature(env: &FuncEnv, ty: BlockType) -> (Vec<ValType>, Vec<ValType>) {
    match ty {
        BlockType::Empty => (Vec::new(), Vec::new()),
        BlockType::Type(t) => (
            Vec::new(),
            vec![ValType::from_wasmparser(t).expect("validated: a Wasm 2.0 type")],
        ),
        BlockType::FuncType(index) => {
            let ty = &env.module().types[index as usize];
            (ty.params().to_vec(), ty.results().to_vec())
        }
    }
}

/// A new block with one parameter per type.
fn block_with_params(builder: &mut FunctionBuilder, types: &[ValType]) -> ir::Block {
    let block = builder.create_block();
    for ty in types {
        builder.append_block_param(block, ir_type(*ty));
    }
    block
}

/// Opens the function's own frame, whose results are the function's.
pub(super) fn open_function(
    builder: &mut FunctionBuilder,
    state: &mut FuncState,
    results: &[ValType],
) {
    let next = block_with_params(builder, results);
    let frame = ControlFrame::new(FrameKind::Function, next, 0, results.len(), &state.stack);
    state.control.push(frame);
}

/// Translates `op` if it is a control operator, returning whether it was
/// one. Called for every operator while code is reachable.
pub(super) fn translate_control(
    op: &Operator<'_>,
    builder: &mut FunctionBuilder,
    env: &mut FuncEnv,
    state: &mut FuncState,
) -> bool {
    match op {
        Operator::Nop => {}
        Operator::Unreachable => {
            builder
                .ins()
                .trap(TrapCode::UnreachableCodeReached.to_cranelift());
            state.reachable = false;
        }
        Operator::Block { blockty } => {
            let (params, results) = block_signature(env, *blockty);
            let next = block_with_params(builder, &results);
            let frame = ControlFrame::new(
                FrameKind::Block,
                next,
                params.len(),
                results.len(),
                &state.stack,
            );
            state.control.push(frame);
        }
        Operator::Loop { blockty } => {
            let (params, results) = block_signature(env, *blockty);
            let header = block_with_params(builder, &params);
            let next = block_with_params(builder, &results);
            let args = state.stack.pop_n(params.len());
            builder.ins().jump(header, &block_args(&args));
            // Sealed at `end`, once every branch back to it is known.
            builder.switch_to_block(header);
            state.stack.extend(builder.block_params(header));
            env.emit_interrupt_check(builder);
            let frame = ControlFrame::new(
                FrameKind::Loop { header },
                next,
                params.len(),
                results.len(),
                &state.stack,
            );
            state.control.push(frame);
        }
        Operator::If { blockty } => {
            let (params, results) = block_signature(env, *blockty);
            let condition = state.stack.pop();
            let then_block = builder.create_block();
            let else_block = builder.create_block();
            let next = block_with_params(builder, &results);
            builder
                .ins()
                .brif(condition, then_block, &[], else_block, &[]);
            builder.seal_block(then_block);
            builder.seal_block(else_block);
            builder.switch_to_block(then_block);
            let kind = FrameKind::If {
                else_block,
                else_seen: false,
                params: state.stack.top(params.len()).to_vec(),
            };
            let frame = ControlFrame::new(kind, next, params.len(), results.len(), &state.stack);
            state.control.push(frame);
        }
        Operator::Else => translate_else(builder, state),
        Operator::End => translate_end(builder, state),
        Operator::Br { relative_depth } => {
            branch(builder, state, *relative_depth);
            state.reachable = false;
        }
        Operator::BrIf { relative_depth } => {
            let condition = state.stack.pop();
            let frame = frame_at(&mut state.control, *relative_depth);
            let args = block_args(state.stack.top(frame.branch_arity()));
            let target = frame.branch_target();
            let continuation = builder.create_block();
            builder
                .ins()
                .brif(condition, target, &args, continuation, &[]);
            builder.seal_block(continuation);
            builder.switch_to_block(continuation);
        }
        Operator::BrTable { targets } => {
            let index = state.stack.pop();
            let default = targets.default();
            let arity = frame_at(&mut state.control, default).branch_arity();
            let args = block_args(state.stack.top(arity));
            let mut call_to = |builder: &mut FunctionBuilder, depth: u32| {
                let target = frame_at(&mut state.control, depth).branch_target();
                builder.func.dfg.block_call(target, &args)
            };
            let mut table = Vec::with_capacity(targets.len() as usize);
            for depth in targets.targets() {
                let depth = depth.expect("validated: br_table targets read");
                table.push(call_to(builder, depth));
            }
            let default_call = call_to(builder, default);
            let jump_table = builder.create_jump_table(JumpTableData::new(default_call, &table));
            builder.ins().br_table(index, jump_table);
            state.reachable = false;
        }
        Operator::Return => {
            let depth = state.control.len() as u32 - 1;
            branch(builder, state, depth);
            state.reachable = false;
        }
        _ => return false,
    }
    true
}

/// The frame `depth` levels out from the innermost.
fn frame_at(control: &mut [ControlFrame], depth: u32) -> &mut ControlFrame {
    let at = control.len() - 1 - depth as usize;
    &mut control[at]
}

/// An unconditional branch out of the frame `depth` levels out; a branch
/// out of the function frame is a return.
fn branch(builder: &mut FunctionBuilder, state: &mut FuncState, depth: u32) {
    let frame = frame_at(&mut state.control, depth);
    let args = state.stack.top(frame.branch_arity()).to_vec();
    if matches!(frame.kind, FrameKind::Function) {
        builder.ins().return_(&args);
    } else {
        let target = frame.branch_target();
        builder.ins().jump(target, &block_args(&args));
    }
}

/// Translates the operators of dead code: only the nesting of frames and
/// the `else` or `end` that makes code live again matter.
pub(super) fn skip_dead(op: &Operator<'_>, builder: &mut FunctionBuilder, state: &mut FuncState) {
    match op {
        Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. } => {
            state.dead_depth += 1
        }
        Operator::Else if state.dead_depth == 0 => translate_else(builder, state),
        Operator::End if state.dead_depth == 0 => translate_end(builder, state),
        Operator::End => state.dead_depth -= 1,
        _ => {}
    }
}

fn translate_else(builder: &mut FunctionBuilder, state: &mut FuncState) {
    let reachable = state.reachable;
    let frame = state.control.last_mut().expect("validated: else inside if");
    let FrameKind::If {
        else_block,
        else_seen,
        params,
    } = &mut frame.kind
    else {
        unreachable!("validated: else closes an if")
    };
    if reachable {
        let results = state.stack.pop_n(frame.num_results);
        builder.ins().jump(frame.next, &block_args(&results));
        frame.next_reached = true;
    }
    *else_seen = true;
    state.stack.truncate(frame.height);
    state.stack.extend(params);
    builder.switch_to_block(*else_block);
    // The `if` itself was live (a frame opened in dead code is only
    // counted), so its else arm is.
    state.reachable = true;
}

fn translate_end(builder: &mut FunctionBuilder, state: &mut FuncState) {
    let mut frame = state.control.pop().expect("validated: end closes a frame");
    if state.reachable {
        let results = state.stack.pop_n(frame.num_results);
        if matches!(frame.kind, FrameKind::Function) {
            builder.ins().return_(&results);
        } else {
            builder.ins().jump(frame.next, &block_args(&results));
            frame.next_reached = true;
        }
    }
    match &frame.kind {
        FrameKind::Loop { header } => builder.seal_block(*header),
        FrameKind::If {
            else_block,
            else_seen: false,
            params,
        } => {
            // No else arm: the false edge passes the parameters on as the
            // results (validation requires they have the same types).
            builder.switch_to_block(*else_block);
            builder.ins().jump(frame.next, &block_args(params));
            frame.next_reached = true;
        }
        _ => {}
    }
    state.stack.truncate(frame.height);
    if frame.next_reached {
        builder.switch_to_block(frame.next);
        builder.seal_block(frame.next);
        state.stack.extend(builder.block_params(frame.next));
        if matches!(frame.kind, FrameKind::Function) {
            // Only `br_if` and `br_table` out of the function come here.
            let results = state.stack.pop_n(frame.num_results);
            builder.ins().return_(&results);
            state.reachable = false;
        } else {
            state.reachable = true;
        }
    } else {
        state.reachable = false;
    }
}

/// Whether the function's frame has been closed (its final `end` seen).
pub(super) fn function_done(state: &FuncState) -> bool {
    state.control.is_empty()
}
