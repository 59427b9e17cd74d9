//! Linear memory: the address of every access and its bounds check, the
//! scalar and vector loads and stores (including the SIMD lane, splat,
//! zero-extending and widening loads), and `memory.size/grow/copy/fill/
//! init` and `data.drop`, which call runtime builtins.
//!
//! Bounds checks follow `MemoryLayout`. With the default layout (4 GiB
//! reserved, 2 GiB guard after it) a 32-bit index plus an offset that fits
//! in the guard cannot leave the reservation, and every byte past the
//! memory's length is inaccessible: such an access is compiled with no
//! check, and a fault on it is a trap (`MemoryOutOfBounds`) because its
//! load or store is a recorded trap site. A larger offset, or a smaller
//! reservation, gets an explicit compare against the bound: the static
//! end of the reservation and guard, or the memory's current length.

use super::stack::{as_lanes, to_canonical, ValueStack};
use crate::func_env::FuncEnv;
use crate::types::TrapCode;
use crate::vmoffsets::Builtin;
use cranelift_codegen::ir::{self, condcodes::IntCC, types, InstBuilder, MemFlagsData};
use cranelift_frontend::FunctionBuilder;
use wasmparser::{MemArg, MemArgTarget, Operator};

fn memory_index(memarg: &MemArg) -> u32 {
    match memarg.target {
        MemArgTarget::Memory(index) => index,
        MemArgTarget::Array(_) => unreachable!("validated: GC arrays are not enabled"),
    }
}

/// The native address of an access of `size` bytes at `index` (an i32)
/// plus the static offset of `memarg`, after whatever bounds check the
/// layout needs, as a base and the offset the access instruction adds.
fn checked_address(
    env: &FuncEnv,
    builder: &mut FunctionBuilder,
    memarg: &MemArg,
    index: ir::Value,
    size: u32,
) -> (ir::Value, i32) {
    let memory = memory_index(memarg);
    let layout = env.memory_layout();
    let index = builder.ins().uextend(types::I64, index);
    // Validation keeps a 32-bit memory's offset below 2^32, so none of
    // these sums overflows.
    let end_of_access = memarg.offset + u64::from(size);
    if layout.reservation >= 1 << 32 {
        let inaccessible_end = layout.reservation + layout.guard;
        if u64::from(u32::MAX) + end_of_access > inaccessible_end {
            // The offset reaches past the guard: compare with where the
            // inaccessible region ends.
            let end = builder.ins().iadd_imm_s(index, end_of_access as i64);
            let beyond =
                builder
                    .ins()
                    .icmp_imm_s(IntCC::UnsignedGreaterThan, end, inaccessible_end as i64);
            builder
                .ins()
                .trapnz(beyond, TrapCode::MemoryOutOfBounds.to_cranelift());
        }
    } else {
        let length = env.memory_length(builder, memory);
        let end = builder.ins().iadd_imm_s(index, end_of_access as i64);
        let beyond = builder.ins().icmp(IntCC::UnsignedGreaterThan, end, length);
        builder
            .ins()
            .trapnz(beyond, TrapCode::MemoryOutOfBounds.to_cranelift());
    }
    let base = env.memory_base(builder, memory);
    let address = builder.ins().iadd(base, index);
    match i32::try_from(memarg.offset) {
        // The access's own offset immediate carries it.
        Ok(offset) => (address, offset),
        Err(_) => (builder.ins().iadd_imm_s(address, memarg.offset as i64), 0),
    }
}

/// How a scalar load reads memory and extends to its Wasm type.
#[derive(Clone, Copy)]
enum Load {
    Plain(ir::Type),
    Signed8(ir::Type),
    Unsigned8(ir::Type),
    Signed16(ir::Type),
    Unsigned16(ir::Type),
    Signed32,
    Unsigned32,
}

impl Load {
    fn size(self) -> u32 {
        match self {
            Load::Plain(ty) => ty.bytes(),
            Load::Signed8(_) | Load::Unsigned8(_) => 1,
            Load::Signed16(_) | Load::Unsigned16(_) => 2,
            Load::Signed32 | Load::Unsigned32 => 4,
        }
    }

    fn emit(
        self,
        builder: &mut FunctionBuilder,
        flags: MemFlagsData,
        (address, offset): (ir::Value, i32),
    ) -> ir::Value {
        let ins = builder.ins();
        match self {
            Load::Plain(ty) => ins.load(ty, flags, address, offset),
            Load::Signed8(ty) => ins.sload8(ty, flags, address, offset),
            Load::Unsigned8(ty) => ins.uload8(ty, flags, address, offset),
            Load::Signed16(ty) => ins.sload16(ty, flags, address, offset),
            Load::Unsigned16(ty) => ins.uload16(ty, flags, address, offset),
            Load::Signed32 => ins.sload32(flags, address, offset),
            Load::Unsigned32 => ins.uload32(flags, address, offset),
        }
    }
}

/// The scalar (and whole-`v128`) load an operator is, if it is one.
fn scalar_load(op: &Operator<'_>) -> Option<(MemArg, Load)> {
    use types::{F32, F64, I32, I64, I8X16};
    Some(match *op {
        Operator::I32Load { memarg } => (memarg, Load::Plain(I32)),
        Operator::I64Load { memarg } => (memarg, Load::Plain(I64)),
        Operator::F32Load { memarg } => (memarg, Load::Plain(F32)),
        Operator::F64Load { memarg } => (memarg, Load::Plain(F64)),
        Operator::V128Load { memarg } => (memarg, Load::Plain(I8X16)),
        Operator::I32Load8S { memarg } => (memarg, Load::Signed8(I32)),
        Operator::I32Load8U { memarg } => (memarg, Load::Unsigned8(I32)),
        Operator::I32Load16S { memarg } => (memarg, Load::Signed16(I32)),
        Operator::I32Load16U { memarg } => (memarg, Load::Unsigned16(I32)),
        Operator::I64Load8S { memarg } => (memarg, Load::Signed8(I64)),
        Operator::I64Load8U { memarg } => (memarg, Load::Unsigned8(I64)),
        Operator::I64Load16S { memarg } => (memarg, Load::Signed16(I64)),
        Operator::I64Load16U { memarg } => (memarg, Load::Unsigned16(I64)),
        Operator::I64Load32S { memarg } => (memarg, Load::Signed32),
        Operator::I64Load32U { memarg } => (memarg, Load::Unsigned32),
        _ => return None,
    })
}

/// The scalar (and whole-`v128`) store an operator is, if it is one: its
/// memarg and how many bytes of the value it writes.
fn scalar_store(op: &Operator<'_>) -> Option<(MemArg, u32)> {
    Some(match *op {
        Operator::I32Store { memarg } | Operator::F32Store { memarg } => (memarg, 4),
        Operator::I64Store { memarg } | Operator::F64Store { memarg } => (memarg, 8),
        Operator::V128Store { memarg } => (memarg, 16),
        Operator::I32Store8 { memarg } | Operator::I64Store8 { memarg } => (memarg, 1),
        Operator::I32Store16 { memarg } | Operator::I64Store16 { memarg } => (memarg, 2),
        Operator::I64Store32 { memarg } => (memarg, 4),
        _ => return None,
    })
}

/// A SIMD load that is not a whole `v128`: what it reads and what vector
/// it makes of it.
#[derive(Clone, Copy)]
enum VectorLoad {
    /// Eight, four or two lanes, each widened to twice its width.
    Widening(WidenKind),
    /// One lane of this type, copied to every lane.
    Splat(ir::Type),
    /// One lane of this type into lane 0, the rest zero.
    Zero(ir::Type),
}

#[derive(Clone, Copy)]
enum WidenKind {
    S8x8,
    U8x8,
    S16x4,
    U16x4,
    S32x2,
    U32x2,
}

fn vector_load(op: &Operator<'_>) -> Option<(MemArg, VectorLoad)> {
    use types::{I16X8, I32X4, I64X2, I8X16};
    use VectorLoad::*;
    use WidenKind::*;
    Some(match *op {
        Operator::V128Load8x8S { memarg } => (memarg, Widening(S8x8)),
        Operator::V128Load8x8U { memarg } => (memarg, Widening(U8x8)),
        Operator::V128Load16x4S { memarg } => (memarg, Widening(S16x4)),
        Operator::V128Load16x4U { memarg } => (memarg, Widening(U16x4)),
        Operator::V128Load32x2S { memarg } => (memarg, Widening(S32x2)),
        Operator::V128Load32x2U { memarg } => (memarg, Widening(U32x2)),
        Operator::V128Load8Splat { memarg } => (memarg, Splat(I8X16)),
        Operator::V128Load16Splat { memarg } => (memarg, Splat(I16X8)),
        Operator::V128Load32Splat { memarg } => (memarg, Splat(I32X4)),
        Operator::V128Load64Splat { memarg } => (memarg, Splat(I64X2)),
        Operator::V128Load32Zero { memarg } => (memarg, Zero(I32X4)),
        Operator::V128Load64Zero { memarg } => (memarg, Zero(I64X2)),
        _ => return None,
    })
}

impl VectorLoad {
    fn size(self) -> u32 {
        match self {
            VectorLoad::Widening(_) => 8,
            VectorLoad::Splat(ty) | VectorLoad::Zero(ty) => ty.lane_type().bytes(),
        }
    }

    fn emit(
        self,
        builder: &mut FunctionBuilder,
        flags: MemFlagsData,
        (address, offset): (ir::Value, i32),
    ) -> ir::Value {
        match self {
            VectorLoad::Widening(kind) => {
                let ins = builder.ins();
                match kind {
                    WidenKind::S8x8 => ins.sload8x8(flags, address, offset),
                    WidenKind::U8x8 => ins.uload8x8(flags, address, offset),
                    WidenKind::S16x4 => ins.sload16x4(flags, address, offset),
                    WidenKind::U16x4 => ins.uload16x4(flags, address, offset),
                    WidenKind::S32x2 => ins.sload32x2(flags, address, offset),
                    WidenKind::U32x2 => ins.uload32x2(flags, address, offset),
                }
            }
            VectorLoad::Splat(ty) => {
                let lane = builder.ins().load(ty.lane_type(), flags, address, offset);
                builder.ins().splat(ty, lane)
            }
            VectorLoad::Zero(ty) => {
                let lane = builder.ins().load(ty.lane_type(), flags, address, offset);
                builder.ins().scalar_to_vector(ty, lane)
            }
        }
    }
}

/// The lane type and lane of a `v128.loadN_lane` or `v128.storeN_lane`,
/// and whether it stores.
fn lane_access(op: &Operator<'_>) -> Option<(MemArg, ir::Type, u8, bool)> {
    use types::{I16X8, I32X4, I64X2, I8X16};
    Some(match *op {
        Operator::V128Load8Lane { memarg, lane } => (memarg, I8X16, lane, false),
        Operator::V128Load16Lane { memarg, lane } => (memarg, I16X8, lane, false),
        Operator::V128Load32Lane { memarg, lane } => (memarg, I32X4, lane, false),
        Operator::V128Load64Lane { memarg, lane } => (memarg, I64X2, lane, false),
        Operator::V128Store8Lane { memarg, lane } => (memarg, I8X16, lane, true),
        Operator::V128Store16Lane { memarg, lane } => (memarg, I16X8, lane, true),
        Operator::V128Store32Lane { memarg, lane } => (memarg, I32X4, lane, true),
        Operator::V128Store64Lane { memarg, lane } => (memarg, I64X2, lane, true),
        _ => return None,
    })
}

/// Stores the low `size` bytes of `value`.
fn store(
    builder: &mut FunctionBuilder,
    flags: MemFlagsData,
    value: ir::Value,
    (address, offset): (ir::Value, i32),
    size: u32,
) {
    let value_size = builder.func.dfg.value_type(value).bytes();
    let ins = builder.ins();
    match (size, value_size) {
        (1, _) => ins.istore8(flags, value, address, offset),
        (2, _) => ins.istore16(flags, value, address, offset),
        (4, 8) => ins.istore32(flags, value, address, offset),
        _ => ins.store(flags, value, address, offset),
    };
}

/// Translates `op` if it accesses linear memory, returning whether it did.
pub(super) fn translate_memory(
    op: &Operator<'_>,
    builder: &mut FunctionBuilder,
    env: &mut FuncEnv,
    stack: &mut ValueStack,
) -> bool {
    if let Some((memarg, load)) = scalar_load(op) {
        let index = stack.pop();
        let address = checked_address(env, builder, &memarg, index, load.size());
        let value = load.emit(builder, env.heap_flags(), address);
        stack.push(value);
        return true;
    }
    if let Some((memarg, size)) = scalar_store(op) {
        let (index, value) = stack.pop2();
        let address = checked_address(env, builder, &memarg, index, size);
        store(builder, env.heap_flags(), value, address, size);
        return true;
    }
    if let Some((memarg, load)) = vector_load(op) {
        let index = stack.pop();
        let address = checked_address(env, builder, &memarg, index, load.size());
        let value = load.emit(builder, env.heap_flags(), address);
        let value = to_canonical(builder, value);
        stack.push(value);
        return true;
    }
    if let Some((memarg, lanes, lane, is_store)) = lane_access(op) {
        let (index, vector) = stack.pop2();
        let size = lanes.lane_type().bytes();
        let (address, offset) = checked_address(env, builder, &memarg, index, size);
        let vector = as_lanes(builder, vector, lanes);
        if is_store {
            let value = builder.ins().extractlane(vector, lane);
            builder
                .ins()
                .store(env.heap_flags(), value, address, offset);
        } else {
            let value = builder
                .ins()
                .load(lanes.lane_type(), env.heap_flags(), address, offset);
            let vector = builder.ins().insertlane(vector, value, lane);
            let vector = to_canonical(builder, vector);
            stack.push(vector);
        }
        return true;
    }
    match *op {
        Operator::MemorySize { mem } => {
            let length = env.memory_length(builder, mem);
            let pages = builder.ins().ushr_imm_u(length, 16);
            let pages = builder.ins().ireduce(types::I32, pages);
            stack.push(pages);
        }
        Operator::MemoryGrow { mem } => {
            let delta = stack.pop();
            let previous = env
                .call_builtin(builder, Builtin::MemoryGrow, &[mem], &[delta])
                .expect("memory.grow returns the previous size");
            stack.push(previous);
        }
        Operator::MemoryCopy { dst_mem, src_mem } => {
            super::bulk_operation(
                env,
                builder,
                stack,
                Builtin::MemoryCopy,
                &[dst_mem, src_mem],
                TrapCode::MemoryOutOfBounds,
            );
        }
        Operator::MemoryFill { mem } => {
            super::bulk_operation(
                env,
                builder,
                stack,
                Builtin::MemoryFill,
                &[mem],
                TrapCode::MemoryOutOfBounds,
            );
        }
        Operator::MemoryInit { data_index, mem } => {
            super::bulk_operation(
                env,
                builder,
                stack,
                Builtin::MemoryInit,
                &[mem, data_index],
                TrapCode::MemoryOutOfBounds,
            );
        }
        Operator::DataDrop { data_index } => {
            env.call_builtin(builder, Builtin::DataDrop, &[data_index], &[]);
        }
        _ => return false,
    }
    true
}
