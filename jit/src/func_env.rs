//! `FuncEnv`: how one function reaches its instance. It owns the vmctx
//! side of translation (see `vmoffsets`): the pointers to memories,
//! globals and tables, calls to imports and through function references,
//! the prologue stack-limit check, the interrupt checks, link-time symbols,
//! and the runtime builtins that do bulk memory and table work. The
//! translator (`translate`) asks it for these; it knows nothing of Wasm
//! operators. One `FuncEnv` is made per function so that compilation can
//! run on several threads.

use crate::artifact::{Symbol, NAMESPACE_FUNCTION};
use crate::module_info::ModuleInfo;
use crate::types::{FuncType, TrapCode, ValType};
use crate::vmoffsets::*;
use cranelift_codegen::ir::{
    self, condcodes::IntCC, types, AbiParam, AliasRegion, AliasRegionData, ArgumentPurpose,
    InstBuilder, MemFlagsData, Signature,
};
use cranelift_codegen::isa::CallConv;
use cranelift_frontend::FunctionBuilder;
use std::collections::HashMap;

/// How linear memories are laid out in virtual memory, which decides the
/// bounds checks compiled code needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLayout {
    /// Bytes reserved per memory (its base never moves; it can grow up to
    /// this). At 4 GiB or more, every 32-bit index lands in the reservation
    /// and no explicit bounds check is emitted.
    pub reservation: u64,
    /// Inaccessible bytes after the reservation. Accesses whose static offset
    /// fits in the guard need no check of the offset.
    pub guard: u64,
}

impl Default for MemoryLayout {
    fn default() -> Self {
        MemoryLayout {
            reservation: 1 << 32,
            guard: 2 << 30,
        }
    }
}

/// The Cranelift type of a Wasm value type, as compiled code holds it.
pub fn ir_type(ty: ValType) -> ir::Type {
    match ty {
        ValType::I32 => types::I32,
        ValType::I64 => types::I64,
        ValType::F32 => types::F32,
        ValType::F64 => types::F64,
        ValType::V128 => types::I8X16,
        ValType::FuncRef | ValType::ExternRef => types::I64,
    }
}

/// The native signature of a Wasm function type:
/// `(callee_vmctx, caller_vmctx, params...) -> results`, System V.
pub fn native_signature(ty: &FuncType) -> Signature {
    let mut sig = Signature::new(CallConv::SystemV);
    sig.params
        .push(AbiParam::special(types::I64, ArgumentPurpose::VMContext));
    sig.params.push(AbiParam::new(types::I64));
    for p in ty.params() {
        sig.params.push(AbiParam::new(ir_type(*p)));
    }
    for r in ty.results() {
        sig.returns.push(AbiParam::new(ir_type(*r)));
    }
    sig
}

/// The number of native parameters before the Wasm ones: the callee's and
/// the caller's vmctx.
pub const NATIVE_PARAMS_BEFORE_WASM: usize = 2;

/// The arguments of a call with the native signature: the two vmctx
/// pointers, then the Wasm arguments.
fn native_call_args(
    callee_vmctx: ir::Value,
    caller_vmctx: ir::Value,
    wasm_args: &[ir::Value],
) -> Vec<ir::Value> {
    let mut args = Vec::with_capacity(wasm_args.len() + NATIVE_PARAMS_BEFORE_WASM);
    args.push(callee_vmctx);
    args.push(caller_vmctx);
    args.extend_from_slice(wasm_args);
    args
}

/// The signature of a builtin, from its documentation in `vmoffsets`.
fn builtin_signature(builtin: Builtin) -> Signature {
    use types::{I32, I64};
    let (params, returns): (&[ir::Type], &[ir::Type]) = match builtin {
        Builtin::MemoryGrow => (&[I32, I32], &[I32]),
        Builtin::MemoryFill => (&[I32, I32, I32, I32], &[I32]),
        Builtin::MemoryCopy => (&[I32, I32, I32, I32, I32], &[I32]),
        Builtin::MemoryInit => (&[I32, I32, I32, I32, I32], &[I32]),
        Builtin::DataDrop => (&[I32], &[]),
        Builtin::TableGrow => (&[I32, I64, I32], &[I32]),
        Builtin::TableFill => (&[I32, I32, I64, I32], &[I32]),
        Builtin::TableCopy => (&[I32, I32, I32, I32, I32], &[I32]),
        Builtin::TableInit => (&[I32, I32, I32, I32, I32], &[I32]),
        Builtin::ElemDrop => (&[I32], &[]),
    };
    let mut sig = Signature::new(CallConv::SystemV);
    sig.params.push(AbiParam::new(I64));
    sig.params.extend(params.iter().map(|t| AbiParam::new(*t)));
    sig.returns
        .extend(returns.iter().map(|t| AbiParam::new(*t)));
    sig
}

/// Flags for loads from the vmctx and runtime structures: never trap, aligned.
pub(crate) fn trusted() -> MemFlagsData {
    MemFlagsData::trusted()
}

/// Flags for loads of fields that never change while code runs, behind a
/// pointer that has been checked: Cranelift may merge them, but not move
/// them above the check.
pub(crate) fn trusted_readonly() -> MemFlagsData {
    MemFlagsData::trusted().with_readonly()
}

/// Flags for loads of vmctx fields that never change while code runs. The
/// vmctx is always valid, so Cranelift may also hoist them out of loops and
/// branches.
pub(crate) fn vmctx_invariant() -> MemFlagsData {
    trusted_readonly().with_can_move()
}

/// The disjoint kinds of memory compiled code touches, so that Cranelift's
/// alias analysis knows a store to one cannot change a load from another
/// (a store to linear memory leaves a global's loaded value valid).
#[derive(Clone, Copy)]
pub struct AliasRegions {
    /// Linear memory.
    pub heap: AliasRegion,
    /// The storage of globals.
    pub globals: AliasRegion,
    /// The elements of tables.
    pub tables: AliasRegion,
    /// The vmctx and the runtime's structures it points to (memory and
    /// table definitions, function references).
    pub runtime: AliasRegion,
}

impl AliasRegions {
    fn declare(func: &mut ir::Function) -> Self {
        let mut region = |user_id: u32, description: &'static str| {
            func.dfg.alias_regions.insert(AliasRegionData {
                user_id,
                description: description.into(),
            })
        };
        AliasRegions {
            heap: region(0, "linear memory"),
            globals: region(1, "globals"),
            tables: region(2, "table elements"),
            runtime: region(3, "vmctx and runtime structures"),
        }
    }
}

pub struct FuncEnv<'a> {
    module: &'a ModuleInfo,
    offsets: &'a VMOffsets,
    memory_layout: MemoryLayout,
    interrupt_checks: bool,
    builtin_sigs: HashMap<Builtin, ir::SigRef>,
    /// The signature of each type index used by a call in this function.
    signatures: HashMap<u32, ir::SigRef>,
    /// The callee of each defined function called directly.
    direct_callees: HashMap<u32, ir::FuncRef>,
    /// The vmctx parameter of the function being translated.
    vmctx: Option<ir::Value>,
    /// The function's alias regions.
    regions: Option<AliasRegions>,
    /// The global value of each link-time symbol this function uses.
    symbols: HashMap<Symbol, ir::GlobalValue>,
}

impl<'a> FuncEnv<'a> {
    pub fn new(
        module: &'a ModuleInfo,
        offsets: &'a VMOffsets,
        memory_layout: MemoryLayout,
        interrupt_checks: bool,
    ) -> Self {
        FuncEnv {
            module,
            offsets,
            memory_layout,
            interrupt_checks,
            builtin_sigs: HashMap::new(),
            signatures: HashMap::new(),
            direct_callees: HashMap::new(),
            vmctx: None,
            regions: None,
            symbols: HashMap::new(),
        }
    }

    pub fn module(&self) -> &ModuleInfo {
        self.module
    }

    pub fn memory_layout(&self) -> MemoryLayout {
        self.memory_layout
    }

    /// The value of a link-time symbol (`symbols`): a `movabs` of an
    /// immediate that a relocation fills in when the code is loaded, so the
    /// compiled code holds no address or engine-wide id of this process.
    fn symbol_value(&mut self, builder: &mut FunctionBuilder, symbol: Symbol) -> ir::Value {
        let func = &mut *builder.func;
        let gv = *self.symbols.entry(symbol).or_insert_with(|| {
            let (namespace, index) = symbol.name();
            let name =
                func.declare_imported_user_function(ir::UserExternalName::new(namespace, index));
            func.create_global_value(ir::GlobalValueData::Symbol {
                name: ir::ExternalName::User(name),
                offset: 0.into(),
                // Not colocated: with `is_pic` off, an absolute 64-bit
                // immediate (`Abs8`), whatever the value is.
                colocated: false,
                tls: false,
            })
        });
        builder.ins().symbol_value(types::I64, gv)
    }

    /// Starts a function whose entry block is `entry` (with the native
    /// parameters already appended).
    pub fn begin_function(&mut self, builder: &mut FunctionBuilder, entry: ir::Block) {
        self.vmctx = Some(builder.block_params(entry)[0]);
        self.regions = Some(AliasRegions::declare(builder.func));
    }

    /// The alias regions of the function being translated.
    pub fn regions(&self) -> AliasRegions {
        self.regions.expect("begin_function comes first")
    }

    /// `trusted()` flags in the runtime's region.
    fn runtime(&self) -> MemFlagsData {
        trusted().with_alias_region(Some(self.regions().runtime))
    }

    /// `trusted_readonly()` flags in the runtime's region.
    fn runtime_readonly(&self) -> MemFlagsData {
        trusted_readonly().with_alias_region(Some(self.regions().runtime))
    }

    /// Flags for an access to a table element.
    pub fn table_flags(&self) -> MemFlagsData {
        trusted().with_alias_region(Some(self.regions().tables))
    }

    /// Flags for an access to a global's value: it never traps and is
    /// aligned; an immutable global never changes once code can run, so its
    /// load may be hoisted (its storage is always valid).
    pub fn global_flags(&self, mutable: bool) -> MemFlagsData {
        let flags = trusted().with_alias_region(Some(self.regions().globals));
        if mutable {
            flags
        } else {
            flags.with_readonly().with_can_move()
        }
    }

    /// Flags for an access to linear memory: little-endian, possibly
    /// unaligned, and trapping `MemoryOutOfBounds` if it faults.
    pub fn heap_flags(&self) -> MemFlagsData {
        MemFlagsData::new()
            .with_endianness(ir::Endianness::Little)
            .with_trap_code(Some(TrapCode::MemoryOutOfBounds.to_cranelift()))
            .with_alias_region(Some(self.regions().heap))
    }

    /// `vmctx_invariant()` flags in the runtime's region.
    fn runtime_invariant(&self) -> MemFlagsData {
        vmctx_invariant().with_alias_region(Some(self.regions().runtime))
    }

    /// This function's own vmctx (the callee vmctx parameter).
    fn vmctx(&self) -> ir::Value {
        self.vmctx.expect("begin_function comes first")
    }

    /// Makes the prologue of this function check the stack limit kept in the
    /// vmctx: the function traps `StackOverflow` before its frame would go
    /// below it.
    pub fn install_stack_limit(&mut self, func: &mut ir::Function) {
        let vmctx = func.create_global_value(ir::GlobalValueData::VMContext);
        let flags = func
            .dfg
            .mem_flags
            .insert(trusted())
            .expect("a fresh function has room for one set of flags");
        let limit = func.create_global_value(ir::GlobalValueData::Load {
            base: vmctx,
            offset: (VMCTX_STACK_LIMIT as i32).into(),
            global_type: types::I64,
            flags,
        });
        func.stack_limit = Some(limit);
    }

    /// Traps `Interrupt` if the running root call's interrupt flag is set.
    /// Called at function entry and at every loop header.
    ///
    /// ```text
    ///   pending = atomic_load [&INTERRUPTS_PENDING]   ; a constant address (a symbol)
    ///   brif pending, check_own_flag, continue
    /// check_own_flag:                                   ; cold: only while a kill is pending somewhere
    ///   flag = atomic_load [load vmctx.interrupt]
    ///   trapnz flag, Interrupt
    ///   jump continue
    /// continue:
    ///   ...
    /// ```
    ///
    /// The loads are atomic: plain ones would be merged by Cranelift's
    /// redundant-load elimination with the one at function entry (no store
    /// intervenes in a tight loop), and the loop would never see a change.
    /// On x86-64 they are still plain `mov`s. (Cranelift 0.112 turned each
    /// `trapnz` into a block of its own, which defeated loop-invariant
    /// hoisting, so checks shared one trap block; 0.135 keeps `trapnz` an
    /// instruction, and the shared block measured no faster: BENCHMARKS.md.)
    pub fn emit_interrupt_check(&mut self, builder: &mut FunctionBuilder) {
        if !self.interrupt_checks {
            return;
        }
        let pending_address = self.symbol_value(builder, Symbol::InterruptsPending);
        let pending = builder
            .ins()
            .atomic_load(types::I32, trusted(), pending_address);
        let check_own_flag = builder.create_block();
        let continue_block = builder.create_block();
        builder
            .ins()
            .brif(pending, check_own_flag, &[], continue_block, &[]);
        builder.set_cold_block(check_own_flag);

        builder.switch_to_block(check_own_flag);
        builder.seal_block(check_own_flag);
        let vmctx = self.vmctx();
        // Not marked read-only, though it is: a read-only load may be
        // hoisted out of the cold block and the loop, and the pointer would
        // then stay in a register for the whole function.
        let flag_ptr = builder
            .ins()
            .load(types::I64, trusted(), vmctx, VMCTX_INTERRUPT as i32);
        let flag = builder.ins().atomic_load(types::I32, trusted(), flag_ptr);
        builder
            .ins()
            .trapnz(flag, TrapCode::Interrupt.to_cranelift());
        builder.ins().jump(continue_block, &[]);

        builder.switch_to_block(continue_block);
        builder.seal_block(continue_block);
    }

    fn builtin_sig(&mut self, func: &mut ir::Function, builtin: Builtin) -> ir::SigRef {
        *self
            .builtin_sigs
            .entry(builtin)
            .or_insert_with(|| func.import_signature(builtin_signature(builtin)))
    }

    /// Loads a pointer that the vmctx holds at `offset` and that never
    /// changes while code runs (so the load is marked read-only).
    pub fn load_readonly_vmctx_ptr(&self, builder: &mut FunctionBuilder, offset: u32) -> ir::Value {
        let vmctx = self.vmctx();
        builder
            .ins()
            .load(types::I64, self.runtime_invariant(), vmctx, offset as i32)
    }

    /// Calls a runtime builtin through the builtins table in the vmctx with
    /// the arguments `(vmctx, immediates..., operands...)`: the instruction's
    /// immediates (memory, table and segment indices) as i32 constants, then
    /// its operands as they are.
    pub fn call_builtin(
        &mut self,
        builder: &mut FunctionBuilder,
        builtin: Builtin,
        immediates: &[u32],
        operands: &[ir::Value],
    ) -> Option<ir::Value> {
        let mut args = Vec::with_capacity(1 + immediates.len() + operands.len());
        args.push(self.vmctx());
        for &immediate in immediates {
            args.push(builder.ins().iconst(types::I32, i64::from(immediate)));
        }
        args.extend_from_slice(operands);
        let sig = self.builtin_sig(builder.func, builtin);
        let builtins = self.load_readonly_vmctx_ptr(builder, VMCTX_BUILTINS);
        let callee = builder.ins().load(
            types::I64,
            self.runtime_invariant(),
            builtins,
            (builtin as u32 * 8) as i32,
        );
        let call = builder.ins().call_indirect(sig, callee, &args);
        builder.func.dfg.inst_results(call).first().copied()
    }

    /// Calls a builtin that returns a status (see `call_builtin` for the
    /// arguments), and traps with `code` when the status is non-zero.
    pub fn call_builtin_checked(
        &mut self,
        builder: &mut FunctionBuilder,
        builtin: Builtin,
        immediates: &[u32],
        operands: &[ir::Value],
        code: TrapCode,
    ) {
        let status = self
            .call_builtin(builder, builtin, immediates, operands)
            .expect("checked builtins return a status");
        builder.ins().trapnz(status, code.to_cranelift());
    }

    /// The base address of linear memory `memory`. It never moves, so the
    /// load may be hoisted and shared.
    pub fn memory_base(&self, builder: &mut FunctionBuilder, memory: u32) -> ir::Value {
        self.load_readonly_vmctx_ptr(builder, self.offsets.memory_base(memory))
    }

    /// The current length in bytes (an i64) of linear memory `memory`,
    /// read through its definition; it changes when the memory grows.
    pub fn memory_length(&self, builder: &mut FunctionBuilder, memory: u32) -> ir::Value {
        let definition =
            self.load_readonly_vmctx_ptr(builder, self.offsets.memory_definition(memory));
        builder.ins().load(
            types::I64,
            self.runtime(),
            definition,
            MEMORY_DEFINITION_LENGTH as i32,
        )
    }

    /// The address of global `index`'s value, its type and whether it is
    /// mutable.
    pub fn global_address(
        &self,
        builder: &mut FunctionBuilder,
        index: u32,
    ) -> (ir::Value, ValType, bool) {
        let global = &self.module.globals[index as usize];
        let address = self.load_readonly_vmctx_ptr(builder, self.offsets.global(index));
        (address, global.content, global.mutable)
    }

    /// Loads the `VMTable` pointer of `table` and the table's current length.
    pub fn table_ptr_and_length(
        &self,
        builder: &mut FunctionBuilder,
        table: u32,
    ) -> (ir::Value, ir::Value) {
        let table_ptr = self.load_readonly_vmctx_ptr(builder, self.offsets.table(table));
        let length = builder
            .ins()
            .load(types::I32, self.runtime(), table_ptr, TABLE_LENGTH as i32);
        (table_ptr, length)
    }

    /// Loads the `VMTable` pointer of `table`, checks `index` against its
    /// length (trapping `TableOutOfBounds`) and returns the element address.
    pub fn table_element_addr(
        &self,
        builder: &mut FunctionBuilder,
        table: u32,
        index: ir::Value,
    ) -> ir::Value {
        let (table_ptr, length) = self.table_ptr_and_length(builder, table);
        let out_of_bounds = builder
            .ins()
            .icmp(IntCC::UnsignedGreaterThanOrEqual, index, length);
        builder
            .ins()
            .trapnz(out_of_bounds, TrapCode::TableOutOfBounds.to_cranelift());
        let elements =
            builder
                .ins()
                .load(types::I64, self.runtime(), table_ptr, TABLE_ELEMENTS as i32);
        let index64 = builder.ins().uextend(types::I64, index);
        let byte_offset = builder.ins().ishl_imm_u(index64, 3);
        builder.ins().iadd(elements, byte_offset)
    }

    /// The native signature of type `type_index`, imported into this function.
    pub fn signature(&mut self, func: &mut ir::Function, type_index: u32) -> ir::SigRef {
        let module = self.module;
        *self.signatures.entry(type_index).or_insert_with(|| {
            func.import_signature(native_signature(&module.types[type_index as usize]))
        })
    }

    /// Calls function `index` with `args` (the Wasm arguments) and returns
    /// the call instruction. Defined functions are called directly (a
    /// PC-relative call patched at layout); imports through the
    /// `VMFuncRef` this instance's vmctx holds for them.
    pub fn call_function(
        &mut self,
        builder: &mut FunctionBuilder,
        index: u32,
        args: &[ir::Value],
    ) -> ir::Inst {
        let vmctx = self.vmctx();
        if index < self.module.num_imported_functions {
            let type_index = self.module.functions[index as usize];
            let sig_ref = self.signature(builder.func, type_index);
            let func_ref = builder
                .ins()
                .iadd_imm_s(vmctx, self.offsets.func_ref(index) as i64);
            // An import's `VMFuncRef` is in this vmctx and never changes
            // while code runs, so its fields may be loaded once, outside
            // loops.
            let field_flags = self.runtime_invariant();
            return self.call_func_ref(builder, sig_ref, func_ref, field_flags, args);
        }
        let signature = self.signature(builder.func, self.module.functions[index as usize]);
        let callee = *self.direct_callees.entry(index).or_insert_with(|| {
            let func = &mut *builder.func;
            let name = func.declare_imported_user_function(ir::UserExternalName::new(
                NAMESPACE_FUNCTION,
                index,
            ));
            func.import_function(ir::ExtFuncData {
                name: ir::ExternalName::User(name),
                signature,
                colocated: true,
                patchable: false,
            })
        });
        let args = native_call_args(vmctx, vmctx, args);
        builder.ins().call(callee, &args)
    }

    /// Calls through table `table` at `index`, checking the element is not
    /// null and has type `type_index`.
    pub fn call_indirect(
        &mut self,
        builder: &mut FunctionBuilder,
        type_index: u32,
        table: u32,
        index: ir::Value,
        args: &[ir::Value],
    ) -> ir::Inst {
        let sig_ref = self.signature(builder.func, type_index);
        let element = self.table_element_addr(builder, table, index);
        let func_ref = builder
            .ins()
            .load(types::I64, self.table_flags(), element, 0);
        builder
            .ins()
            .trapz(func_ref, TrapCode::IndirectCallToNull.to_cranelift());
        let type_id = builder.ins().load(
            types::I32,
            self.runtime_readonly(),
            func_ref,
            FUNC_REF_TYPE_ID as i32,
        );
        // The engine-wide id of the expected type, filled in at load time.
        let expected = self.symbol_value(builder, Symbol::TypeId(type_index));
        let expected = builder.ins().ireduce(types::I32, expected);
        let mismatch = builder.ins().icmp(IntCC::NotEqual, type_id, expected);
        builder
            .ins()
            .trapnz(mismatch, TrapCode::BadSignature.to_cranelift());
        let field_flags = self.runtime_readonly();
        self.call_func_ref(builder, sig_ref, func_ref, field_flags, args)
    }

    /// A reference to function `index`: its `VMFuncRef` in this vmctx.
    pub fn ref_func(&self, builder: &mut FunctionBuilder, index: u32) -> ir::Value {
        let vmctx = self.vmctx();
        builder
            .ins()
            .iadd_imm_s(vmctx, self.offsets.func_ref(index) as i64)
    }

    /// Emits a call through a `VMFuncRef` pointer (already checked non-null),
    /// reading its fields with `field_flags`.
    fn call_func_ref(
        &self,
        builder: &mut FunctionBuilder,
        sig_ref: ir::SigRef,
        func_ref: ir::Value,
        field_flags: MemFlagsData,
        call_args: &[ir::Value],
    ) -> ir::Inst {
        let caller_vmctx = self.vmctx();
        let native = builder.ins().load(
            types::I64,
            field_flags,
            func_ref,
            FUNC_REF_NATIVE_CALL as i32,
        );
        let callee_vmctx =
            builder
                .ins()
                .load(types::I64, field_flags, func_ref, FUNC_REF_VMCTX as i32);
        // The callee runs on our stack under our root call: hand it our
        // stack limit and activation.
        for field in VMCTX_PROPAGATED {
            let value = builder
                .ins()
                .load(types::I64, self.runtime(), caller_vmctx, field as i32);
            builder
                .ins()
                .store(self.runtime(), value, callee_vmctx, field as i32);
        }
        let args = native_call_args(callee_vmctx, caller_vmctx, call_args);
        builder.ins().call_indirect(sig_ref, native, &args)
    }
}
