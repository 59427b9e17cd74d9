//! Loop-closing block parameters: a CLIF pass that gives the register
//! allocator shorter live ranges for values computed in a loop and used
//! after it.
//!
//! In SSA form as cranelift-frontend builds it, a value defined in a loop
//! and used after the loop is the same value inside and outside: its live
//! range runs from its definition in the loop to its last use after it.
//! regalloc2 allocates such a range as a whole, so the
//! pressure after the loop (and any call there) decides where the value
//! lives inside the loop too. In `sha256`'s round loop, which keeps about
//! 12 values live, four of the eight working variables lived in stack
//! slots and the back edge shuffled them through memory: 5 stores and 2
//! loads per round.
//!
//! This pass puts such loops in loop-closed form: the loop's exit block
//! receives each value as a block parameter, and every use after the loop
//! refers to that parameter. The loop's own value then lives only inside
//! the loop, and the allocator places the two ranges separately. (LLVM
//! keeps loops in this form too.) `sha256` ran 7% faster (525 to 489 ms)
//! on Cranelift 0.112 and 13% faster on 0.135 (BENCHMARKS.md).
//!
//! It handles the case that pays simply and leaves the rest alone, which
//! is always correct:
//! - only innermost loops (which hold the hot code), so blocks this pass
//!   adds are never inside another loop it processes;
//! - only loops under register pressure (`MIN_LIVE_IN_LOOP`);
//! - only loops with a single exit edge (not counting edges into blocks
//!   that only trap, which lead nowhere): then every path from a definition
//!   in the loop to a use outside it leaves through that edge after the
//!   definition's last execution, so the parameter carries the right value
//!   to every such use, and the definition dominates the exiting block.
//!   When the exit's target has other predecessors, the edge gets a block
//!   of its own first.
//!
//! It must run after `remove_constant_phis`, which would remove the
//! parameters again (each has a single incoming value); see
//! `lib.rs::optimize_and_lower`.

use cranelift_codegen::cursor::{Cursor, FuncCursor};
use cranelift_codegen::flowgraph::ControlFlowGraph;
use cranelift_codegen::ir::{self, Block, Inst, InstBuilder, Value, ValueDef};
use cranelift_codegen::loop_analysis::{Loop, LoopAnalysis};
use std::collections::{HashMap, HashSet};

/// How many values must be live throughout a loop (its header's parameters
/// and the values from outside that it uses) before closing it pays. In a
/// loop with fewer, regalloc2 keeps them in registers anyway, and the exit's
/// new parameters can only add moves where the loop exits: measured on
/// `lz77`, whose bit-packing loops (4 or 5 such values, a trip or two each)
/// got 1.7% slower when closed, while `sha256`'s round loop (about 12)
/// got 7% faster. x86-64 leaves Cranelift 14 general registers here, one of
/// them the heap base.
pub const MIN_LIVE_IN_LOOP: usize = 10;

/// What one innermost loop needs: its exit edges and the values it defines
/// that are used after it, with the instructions that use them.
#[derive(Default)]
struct LoopExits {
    /// (exiting block, its terminator, which destination of it, target).
    exits: Vec<(Block, Inst, usize, Block)>,
    /// Values defined in the loop and used outside it, in first-use order.
    live_out: Vec<Value>,
    /// The instructions outside the loop that use them.
    users: Vec<Inst>,
    /// Values defined outside the loop and used in it: with the header's
    /// parameters, the values live throughout the loop.
    live_through: HashSet<Value>,
}

/// Closes every innermost single-exit loop of `func` that keeps at least
/// `min_live_in_loop` values live (see the file header and
/// `MIN_LIVE_IN_LOOP`).
/// `cfg` and `loops` must describe `func` as it is on entry, with aliases
/// resolved. Returns whether `func` changed; then its CFG and dominator
/// tree must be computed again.
pub fn close_innermost_loops(
    func: &mut ir::Function,
    cfg: &ControlFlowGraph,
    loops: &LoopAnalysis,
    min_live_in_loop: usize,
) -> bool {
    let parents: HashSet<Loop> = loops
        .loops()
        .filter_map(|lp| loops.loop_parent(lp))
        .collect();
    let innermost = |block: Block| {
        loops
            .innermost_loop(block)
            .filter(|lp| !parents.contains(lp))
    };
    let def_block = |func: &ir::Function, value: Value| match func.dfg.value_def(value) {
        ValueDef::Result(inst, _) => func.layout.inst_block(inst),
        ValueDef::Param(block, _) => Some(block),
        ValueDef::Union(..) => None,
    };

    // One pass over the function: exit edges, and uses outside the loop of
    // values defined in it.
    let mut per_loop: HashMap<Loop, LoopExits> = HashMap::new();
    let mut seen: HashSet<(Loop, Value)> = HashSet::new();
    for block in func.layout.blocks() {
        let block_loop = innermost(block);
        for inst in func.layout.block_insts(block) {
            let mut used_from: Option<Loop> = None;
            for value in func.dfg.inst_values(inst) {
                let value_loop = def_block(func, value).and_then(innermost);
                if value_loop == block_loop {
                    continue;
                }
                if let Some(lp) = block_loop {
                    per_loop.entry(lp).or_default().live_through.insert(value);
                }
                let Some(value_loop) = value_loop else {
                    continue;
                };
                let entry = per_loop.entry(value_loop).or_default();
                if seen.insert((value_loop, value)) {
                    entry.live_out.push(value);
                }
                if used_from != Some(value_loop) {
                    entry.users.push(inst);
                    used_from = Some(value_loop);
                }
            }
            let Some(lp) = block_loop else { continue };
            for (index, call) in func.dfg.insts[inst]
                .branch_destination(&func.dfg.jump_tables, &func.dfg.exception_tables)
                .iter()
                .enumerate()
            {
                let target = call.block(&func.dfg.value_lists);
                if innermost(target) != Some(lp) && !only_traps(func, target) {
                    per_loop
                        .entry(lp)
                        .or_default()
                        .exits
                        .push((block, inst, index, target));
                }
            }
        }
    }

    let mut changed = false;
    // In order of the loops' header blocks, so the output does not depend
    // on hashing.
    let mut order: Vec<Loop> = per_loop.keys().copied().collect();
    order.sort_by_key(|lp| loops.loop_header(*lp).as_u32());
    for lp in order {
        let work = &per_loop[&lp];
        let [(exiting, terminator, index, target)] = work.exits[..] else {
            continue;
        };
        let header_params = func.dfg.block_params(loops.loop_header(lp)).len();
        if work.live_out.is_empty() || header_params + work.live_through.len() < min_live_in_loop {
            continue;
        }
        let exit = dedicated_exit(func, cfg, exiting, terminator, index, target);
        let mut renamed: HashMap<Value, Value> = HashMap::with_capacity(work.live_out.len());
        for &value in &work.live_out {
            let ty = func.dfg.value_type(value);
            let param = func.dfg.append_block_param(exit, ty);
            let dfg = &mut func.dfg;
            dfg.insts[terminator]
                .branch_destination_mut(&mut dfg.jump_tables, &mut dfg.exception_tables)[index]
                .append_argument(value, &mut dfg.value_lists);
            renamed.insert(value, param);
        }
        for &user in &work.users {
            func.dfg
                .map_inst_values(user, |value| renamed.get(&value).copied().unwrap_or(value));
        }
        changed = true;
    }
    changed
}

/// Whether `block` does nothing but trap: an exit into it leads nowhere,
/// so it needs no parameters and does not count as one of the loop's exits.
/// (Legalized `trapnz` checks and the shared interrupt-check trap are such
/// blocks, inside many loops.)
fn only_traps(func: &ir::Function, block: Block) -> bool {
    let mut insts = func.layout.block_insts(block);
    matches!(
        (
            insts.next().map(|inst| func.dfg.insts[inst].opcode()),
            insts.next()
        ),
        (Some(ir::Opcode::Trap), None)
    )
}

/// The block that the exit edge (destination `index` of `terminator`, in
/// `exiting`, to `target`) enters and that has no other predecessor:
/// `target` itself if that is so, else a new block on the edge, laid out
/// just before `target`, that jumps there with the edge's arguments.
fn dedicated_exit(
    func: &mut ir::Function,
    cfg: &ControlFlowGraph,
    exiting: Block,
    terminator: Inst,
    index: usize,
    target: Block,
) -> Block {
    let mut preds = cfg.pred_iter(target);
    if matches!((preds.next(), preds.next()), (Some(pred), None) if pred.block == exiting) {
        return target;
    }
    let exit = func.dfg.make_block();
    let dfg = &mut func.dfg;
    let call = &mut dfg.insts[terminator]
        .branch_destination_mut(&mut dfg.jump_tables, &mut dfg.exception_tables)[index];
    let args: Vec<ir::BlockArg> = call.args(&dfg.value_lists).collect();
    call.clear(&mut dfg.value_lists);
    call.set_block(exit, &mut dfg.value_lists);
    func.layout.insert_block(exit, target);
    let mut cursor = FuncCursor::new(func).at_bottom(exit);
    cursor.ins().jump(target, &args);
    exit
}

#[cfg(test)]
mod tests {
    use super::*;
    use cranelift_codegen::dominator_tree::DominatorTree;
    use cranelift_codegen::ir::condcodes::IntCC;
    use cranelift_codegen::ir::{types, AbiParam, Signature};
    use cranelift_codegen::isa::CallConv;
    use cranelift_codegen::settings;
    use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};

    /// L: block1 loops on y = x + 1, and its only exit enters block2, the
    /// header of a second loop M that uses y and is also entered by its own
    /// back edge: the exit edge needs a block of its own.
    fn two_loops() -> (ir::Function, [Block; 5], Value) {
        let mut sig = Signature::new(CallConv::SystemV);
        sig.params.push(AbiParam::new(types::I32));
        sig.returns.push(AbiParam::new(types::I32));
        let mut func = ir::Function::with_name_signature(ir::UserFuncName::default(), sig);
        let mut context = FunctionBuilderContext::new();
        let mut b = FunctionBuilder::new(&mut func, &mut context);
        let blocks = [(); 5].map(|_| b.create_block());
        let [entry, l_header, m_header, m_latch, done] = blocks;
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let start = b.block_params(entry)[0];
        b.ins().jump(l_header, &[start.into()]);
        b.append_block_param(l_header, types::I32);
        b.switch_to_block(l_header);
        let x = b.block_params(l_header)[0];
        let y = b.ins().iadd_imm_s(x, 1);
        let again = b.ins().icmp_imm_s(IntCC::UnsignedLessThan, y, 10);
        b.ins().brif(again, l_header, &[y.into()], m_header, &[]);
        b.switch_to_block(m_header);
        let z = b.ins().iadd(y, y);
        b.ins().jump(m_latch, &[]);
        b.switch_to_block(m_latch);
        let again = b.ins().icmp_imm_s(IntCC::UnsignedLessThan, z, 100);
        b.ins().brif(again, m_header, &[], done, &[]);
        b.switch_to_block(done);
        b.ins().return_(&[z]);
        b.seal_all_blocks();
        b.finalize(crate::tests::frontend_config());
        (func, blocks, y)
    }

    fn close(func: &mut ir::Function, min_live: usize) -> bool {
        let cfg = ControlFlowGraph::with_function(func);
        let domtree = DominatorTree::with_function(func, &cfg);
        let mut loops = LoopAnalysis::new();
        loops.compute(func, &cfg, &domtree);
        close_innermost_loops(func, &cfg, &loops, min_live)
    }

    #[test]
    fn an_exit_into_another_loop_gets_its_own_block_and_the_function_verifies() {
        let (mut func, [_, l_header, m_header, _, _], y) = two_loops();
        assert!(close(&mut func, 0));
        let flags = settings::Flags::new(settings::builder());
        cranelift_codegen::verify_function(&func, &flags)
            .unwrap_or_else(|errors| panic!("{errors}\n{}", func.display()));
        // L's exit now enters a new block, which passes y on as its
        // parameter; M uses that parameter, not y.
        let terminator = func.layout.last_inst(l_header).unwrap();
        let exit = func.dfg.insts[terminator]
            .branch_destination(&func.dfg.jump_tables, &func.dfg.exception_tables)[1];
        let exit_block = exit.block(&func.dfg.value_lists);
        assert_ne!(exit_block, m_header);
        assert_eq!(
            exit.args(&func.dfg.value_lists).collect::<Vec<_>>(),
            [ir::BlockArg::Value(y)]
        );
        let param = func.dfg.block_params(exit_block)[0];
        let first = func.layout.first_inst(m_header).unwrap();
        assert_eq!(func.dfg.inst_args(first), &[param, param]);
    }

    #[test]
    fn loops_under_the_threshold_are_left_alone() {
        let (mut func, _, _) = two_loops();
        let before = func.display().to_string();
        assert!(!close(&mut func, 10));
        assert_eq!(func.display().to_string(), before);
    }
}
