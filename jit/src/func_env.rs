//! `FuncEnv`: the `cranelift_wasm::FuncEnvironment` that tells the translator
//! how one function reaches its instance: memories, globals, tables and
//! functions through the vmctx (see `vmoffsets`), calls to imports and
//! through tables, the prologue stack-limit check, and the runtime builtins
//! that do bulk memory and table work. One `FuncEnv` is made per function so
//! that compilation can run on several threads.

use crate::artifact::{Symbol, NAMESPACE_FUNCTION};
use crate::module_info::ModuleInfo;
use crate::types::{FuncType, ValType};
use crate::vmoffsets::*;
use cranelift_codegen::cursor::FuncCursor;
use cranelift_codegen::ir::{
    self, types, AbiParam, ArgumentPurpose, InstBuilder, MemFlags, Signature, TrapCode,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig, TargetIsa};
use cranelift_frontend::FunctionBuilder;
use cranelift_wasm::{
    EngineOrModuleTypeIndex, FuncIndex, GlobalIndex, GlobalVariable, Heap, HeapData, HeapStyle,
    MemoryIndex, ModuleInternedTypeIndex, TableIndex, TargetEnvironment, TypeConvert, TypeIndex,
    WasmError, WasmHeapType, WasmResult,
};
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

/// The arguments of a call with the native signature: the two vmctx
/// pointers, then the Wasm arguments.
fn native_call_args(
    callee_vmctx: ir::Value,
    caller_vmctx: ir::Value,
    wasm_args: &[ir::Value],
) -> Vec<ir::Value> {
    let mut args = Vec::with_capacity(wasm_args.len() + 2);
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
fn trusted() -> MemFlags {
    MemFlags::trusted()
}

/// Flags for loads of vmctx fields that never change while code runs.
fn trusted_readonly() -> MemFlags {
    MemFlags::trusted().with_readonly()
}

pub struct FuncEnv<'a> {
    isa: &'a dyn TargetIsa,
    module: &'a ModuleInfo,
    offsets: &'a VMOffsets,
    memory_layout: MemoryLayout,
    interrupt_checks: bool,
    heaps: cranelift_codegen::entity::PrimaryMap<Heap, HeapData>,
    vmctx: Option<ir::GlobalValue>,
    builtin_sigs: HashMap<Builtin, ir::SigRef>,
    /// This function's one `trap Interrupt` block, shared by all its
    /// interrupt checks (see `emit_interrupt_check`).
    interrupted: Option<ir::Block>,
    /// The global value of each link-time symbol this function uses.
    symbols: HashMap<Symbol, ir::GlobalValue>,
}

impl<'a> FuncEnv<'a> {
    pub fn new(
        isa: &'a dyn TargetIsa,
        module: &'a ModuleInfo,
        offsets: &'a VMOffsets,
        memory_layout: MemoryLayout,
        interrupt_checks: bool,
    ) -> Self {
        FuncEnv {
            isa,
            module,
            offsets,
            memory_layout,
            interrupt_checks,
            heaps: Default::default(),
            vmctx: None,
            builtin_sigs: HashMap::new(),
            interrupted: None,
            symbols: HashMap::new(),
        }
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

    fn vmctx_gv(&mut self, func: &mut ir::Function) -> ir::GlobalValue {
        *self
            .vmctx
            .get_or_insert_with(|| func.create_global_value(ir::GlobalValueData::VMContext))
    }

    fn vmctx_value(func: &ir::Function) -> ir::Value {
        func.special_param(ArgumentPurpose::VMContext)
            .expect("every compiled function takes a vmctx")
    }

    /// A global value that loads a pointer stored in the vmctx at `offset`.
    fn vmctx_load_gv(
        &mut self,
        func: &mut ir::Function,
        offset: u32,
        readonly: bool,
    ) -> ir::GlobalValue {
        let vmctx = self.vmctx_gv(func);
        func.create_global_value(ir::GlobalValueData::Load {
            base: vmctx,
            offset: (offset as i32).into(),
            global_type: types::I64,
            flags: if readonly {
                trusted_readonly()
            } else {
                trusted()
            },
        })
    }

    /// Makes the prologue of this function check the stack limit kept in the
    /// vmctx: the function traps `StackOverflow` before its frame would go
    /// below it.
    pub fn install_stack_limit(&mut self, func: &mut ir::Function) {
        let limit = self.vmctx_load_gv(func, VMCTX_STACK_LIMIT, false);
        func.stack_limit = Some(limit);
    }

    /// Traps `Interrupt` if the running root call's interrupt flag is set.
    ///
    /// ```text
    ///   pending = atomic_load [&INTERRUPTS_PENDING]   ; a constant address (a symbol)
    ///   brif pending, check_own_flag, continue
    /// check_own_flag:                                   ; cold: only while a kill is pending somewhere
    ///   flag = atomic_load [load vmctx.interrupt]
    ///   brif flag, interrupted, continue
    /// continue:
    ///   ...
    /// interrupted:                                      ; one per function, cold
    ///   trap Interrupt
    /// ```
    ///
    /// The loads are atomic: plain ones would be merged by Cranelift's
    /// redundant-load elimination with the one at function entry (no store
    /// intervenes in a tight loop), and the loop would never see a change.
    /// On x86-64 they are still plain `mov`s.
    ///
    /// The trap block is shared by every check of the function, so its
    /// immediate dominator is the function-entry check, outside every loop.
    /// A trap block of its own (as `trapnz` becomes) would be dominated by
    /// a block in the loop but lie outside it, and Cranelift 0.112's
    /// elaboration, meeting it before the rest of the loop body, forgets
    /// the enclosing loops and hoists nothing out of that body (measured:
    /// the heap base reloaded in a matmul inner loop, 8% slower).
    fn emit_interrupt_check(&mut self, builder: &mut FunctionBuilder) {
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
        let vmctx = Self::vmctx_value(builder.func);
        // Not marked read-only, though it is: a read-only load counts as
        // pure, and Cranelift would hoist it out of the cold block and the
        // loop and keep the pointer in a register for the whole function.
        let flag_ptr = builder
            .ins()
            .load(types::I64, trusted(), vmctx, VMCTX_INTERRUPT as i32);
        let flag = builder.ins().atomic_load(types::I32, trusted(), flag_ptr);
        let (interrupted, first) = match self.interrupted {
            Some(block) => (block, false),
            None => (builder.create_block(), true),
        };
        builder
            .ins()
            .brif(flag, interrupted, &[], continue_block, &[]);
        if first {
            // Filled now, sealed once every check has branched to it.
            self.interrupted = Some(interrupted);
            builder.set_cold_block(interrupted);
            builder.switch_to_block(interrupted);
            builder.ins().trap(TrapCode::Interrupt);
        }

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
    fn load_readonly_vmctx_ptr(pos: &mut FuncCursor, offset: u32) -> ir::Value {
        let vmctx = Self::vmctx_value(pos.func);
        pos.ins()
            .load(types::I64, trusted_readonly(), vmctx, offset as i32)
    }

    /// Calls a runtime builtin through the builtins table in the vmctx with
    /// the arguments `(vmctx, immediates..., operands...)`: the instruction's
    /// immediates (memory, table and segment indices) as i32 constants, then
    /// its operands as they are.
    fn call_builtin(
        &mut self,
        pos: &mut FuncCursor,
        builtin: Builtin,
        immediates: &[u32],
        operands: &[ir::Value],
    ) -> Option<ir::Value> {
        let mut args = Vec::with_capacity(1 + immediates.len() + operands.len());
        args.push(Self::vmctx_value(pos.func));
        for &immediate in immediates {
            args.push(pos.ins().iconst(types::I32, i64::from(immediate)));
        }
        args.extend_from_slice(operands);
        let sig = self.builtin_sig(pos.func, builtin);
        let builtins = Self::load_readonly_vmctx_ptr(pos, VMCTX_BUILTINS);
        let callee = pos.ins().load(
            types::I64,
            trusted_readonly(),
            builtins,
            (builtin as u32 * 8) as i32,
        );
        let call = pos.ins().call_indirect(sig, callee, &args);
        pos.func.dfg.inst_results(call).first().copied()
    }

    /// Calls a builtin that returns a status (see `call_builtin` for the
    /// arguments), and traps with `code` when the status is non-zero.
    fn call_builtin_checked(
        &mut self,
        pos: &mut FuncCursor,
        builtin: Builtin,
        immediates: &[u32],
        operands: &[ir::Value],
        code: TrapCode,
    ) {
        let status = self
            .call_builtin(pos, builtin, immediates, operands)
            .expect("checked builtins return a status");
        pos.ins().trapnz(status, code);
    }

    /// Loads the `VMTable` pointer of `table` and the table's current length.
    fn load_table_ptr_and_length(
        &self,
        pos: &mut FuncCursor,
        table: TableIndex,
    ) -> (ir::Value, ir::Value) {
        let table_ptr = Self::load_readonly_vmctx_ptr(pos, self.offsets.table(table.as_u32()));
        let length = pos
            .ins()
            .load(types::I32, trusted(), table_ptr, TABLE_LENGTH as i32);
        (table_ptr, length)
    }

    /// Loads the `VMTable` pointer of `table`, checks `index` against its
    /// length (trapping `TableOutOfBounds`) and returns the element address.
    fn table_element_addr(
        &mut self,
        builder: &mut FunctionBuilder,
        table: TableIndex,
        index: ir::Value,
    ) -> ir::Value {
        let (table_ptr, length) = self.load_table_ptr_and_length(&mut builder.cursor(), table);
        let out_of_bounds = builder.ins().icmp(
            ir::condcodes::IntCC::UnsignedGreaterThanOrEqual,
            index,
            length,
        );
        builder
            .ins()
            .trapnz(out_of_bounds, TrapCode::TableOutOfBounds);
        let elements = builder
            .ins()
            .load(types::I64, trusted(), table_ptr, TABLE_ELEMENTS as i32);
        let index64 = builder.ins().uextend(types::I64, index);
        let byte_offset = builder.ins().ishl_imm(index64, 3);
        builder.ins().iadd(elements, byte_offset)
    }

    /// Emits a call through a `VMFuncRef` pointer (already checked non-null).
    fn call_func_ref(
        builder: &mut FunctionBuilder,
        sig_ref: ir::SigRef,
        func_ref: ir::Value,
        call_args: &[ir::Value],
    ) -> ir::Inst {
        let caller_vmctx = Self::vmctx_value(builder.func);
        let native = builder.ins().load(
            types::I64,
            trusted_readonly(),
            func_ref,
            FUNC_REF_NATIVE_CALL as i32,
        );
        let callee_vmctx = builder.ins().load(
            types::I64,
            trusted_readonly(),
            func_ref,
            FUNC_REF_VMCTX as i32,
        );
        // The callee runs on our stack under our root call: hand it our
        // stack limit and activation.
        for field in VMCTX_PROPAGATED {
            let value = builder
                .ins()
                .load(types::I64, trusted(), caller_vmctx, field as i32);
            builder
                .ins()
                .store(trusted(), value, callee_vmctx, field as i32);
        }
        let args = native_call_args(callee_vmctx, caller_vmctx, call_args);
        builder.ins().call_indirect(sig_ref, native, &args)
    }
}

impl TypeConvert for FuncEnv<'_> {
    fn lookup_heap_type(&self, index: wasmparser::UnpackedIndex) -> WasmHeapType {
        // Only typed function references (not enabled) name types by index.
        WasmHeapType::ConcreteFunc(self.lookup_type_index(index))
    }

    fn lookup_type_index(&self, index: wasmparser::UnpackedIndex) -> EngineOrModuleTypeIndex {
        let raw = match index {
            wasmparser::UnpackedIndex::Module(i) => i,
            wasmparser::UnpackedIndex::RecGroup(i) => i,
            wasmparser::UnpackedIndex::Id(_) => 0,
        };
        EngineOrModuleTypeIndex::Module(ModuleInternedTypeIndex::from_u32(raw))
    }
}

impl TargetEnvironment for FuncEnv<'_> {
    fn target_config(&self) -> TargetFrontendConfig {
        self.isa.frontend_config()
    }

    fn heap_access_spectre_mitigation(&self) -> bool {
        false
    }

    fn proof_carrying_code(&self) -> bool {
        false
    }

    fn reference_type(&self, _ty: WasmHeapType) -> (ir::Type, bool) {
        // funcref is a `*const VMFuncRef`, externref an opaque host handle;
        // both are pointer-sized and neither needs stack maps (no GC).
        (types::I64, false)
    }
}

fn unsupported<T>(what: &str) -> WasmResult<T> {
    Err(WasmError::Unsupported(what.to_string()))
}

impl cranelift_wasm::FuncEnvironment for FuncEnv<'_> {
    fn is_wasm_parameter(&self, _signature: &ir::Signature, index: usize) -> bool {
        // Parameters 0 and 1 are the callee and caller vmctx.
        index >= 2
    }

    fn param_needs_stack_map(&self, _signature: &ir::Signature, _index: usize) -> bool {
        false
    }

    fn sig_ref_result_needs_stack_map(&self, _sig_ref: ir::SigRef, _index: usize) -> bool {
        false
    }

    fn func_ref_result_needs_stack_map(
        &self,
        _func: &ir::Function,
        _func_ref: ir::FuncRef,
        _index: usize,
    ) -> bool {
        false
    }

    fn make_global(
        &mut self,
        func: &mut ir::Function,
        index: GlobalIndex,
    ) -> WasmResult<GlobalVariable> {
        let ty = self.module.globals[index.as_u32() as usize].content;
        let gv = self.vmctx_load_gv(func, self.offsets.global(index.as_u32()), true);
        Ok(GlobalVariable::Memory {
            gv,
            offset: 0.into(),
            ty: ir_type(ty),
        })
    }

    fn heaps(&self) -> &cranelift_codegen::entity::PrimaryMap<Heap, HeapData> {
        &self.heaps
    }

    fn make_heap(&mut self, func: &mut ir::Function, index: MemoryIndex) -> WasmResult<Heap> {
        let memory = self.module.memories[index.as_u32() as usize];
        let base = self.vmctx_load_gv(func, self.offsets.memory_base(index.as_u32()), true);
        let style = if self.memory_layout.reservation >= 1 << 32 {
            HeapStyle::Static {
                bound: self.memory_layout.reservation,
            }
        } else {
            // A smaller reservation: check every access against the
            // current length, read through the memory's definition.
            let definition =
                self.vmctx_load_gv(func, self.offsets.memory_definition(index.as_u32()), true);
            let bound_gv = func.create_global_value(ir::GlobalValueData::Load {
                base: definition,
                offset: (MEMORY_DEFINITION_LENGTH as i32).into(),
                global_type: types::I64,
                flags: trusted(),
            });
            HeapStyle::Dynamic { bound_gv }
        };
        Ok(self.heaps.push(HeapData {
            base,
            min_size: u64::from(memory.minimum) << 16,
            max_size: memory.maximum.map(|m| u64::from(m) << 16),
            offset_guard_size: self.memory_layout.guard,
            style,
            index_type: types::I32,
            memory_type: None,
            page_size_log2: 16,
        }))
    }

    fn make_indirect_sig(
        &mut self,
        func: &mut ir::Function,
        index: TypeIndex,
    ) -> WasmResult<ir::SigRef> {
        let ty = &self.module.types[index.as_u32() as usize];
        Ok(func.import_signature(native_signature(ty)))
    }

    fn make_direct_func(
        &mut self,
        func: &mut ir::Function,
        index: FuncIndex,
    ) -> WasmResult<ir::FuncRef> {
        let ty = self.module.func_type(index.as_u32());
        let signature = func.import_signature(native_signature(ty));
        let name = func.declare_imported_user_function(ir::UserExternalName::new(
            NAMESPACE_FUNCTION,
            index.as_u32(),
        ));
        Ok(func.import_function(ir::ExtFuncData {
            name: ir::ExternalName::User(name),
            signature,
            colocated: true,
        }))
    }

    fn translate_call(
        &mut self,
        builder: &mut FunctionBuilder,
        callee_index: FuncIndex,
        callee: ir::FuncRef,
        call_args: &[ir::Value],
    ) -> WasmResult<ir::Inst> {
        let vmctx = Self::vmctx_value(builder.func);
        if callee_index.as_u32() < self.module.num_imported_functions {
            // Imports go through their VMFuncRef in this instance's vmctx.
            let sig_ref = builder.func.dfg.ext_funcs[callee].signature;
            let func_ref = builder
                .ins()
                .iadd_imm(vmctx, self.offsets.func_ref(callee_index.as_u32()) as i64);
            return Ok(Self::call_func_ref(builder, sig_ref, func_ref, call_args));
        }
        let args = native_call_args(vmctx, vmctx, call_args);
        Ok(builder.ins().call(callee, &args))
    }

    fn translate_call_indirect(
        &mut self,
        builder: &mut FunctionBuilder,
        table_index: TableIndex,
        sig_index: TypeIndex,
        sig_ref: ir::SigRef,
        callee: ir::Value,
        call_args: &[ir::Value],
    ) -> WasmResult<Option<ir::Inst>> {
        let element = self.table_element_addr(builder, table_index, callee);
        let func_ref = builder.ins().load(types::I64, trusted(), element, 0);
        builder.ins().trapz(func_ref, TrapCode::IndirectCallToNull);
        let type_id = builder.ins().load(
            types::I32,
            trusted_readonly(),
            func_ref,
            FUNC_REF_TYPE_ID as i32,
        );
        // The engine-wide id of the expected type, filled in at load time.
        let expected = self.symbol_value(builder, Symbol::TypeId(sig_index.as_u32()));
        let expected = builder.ins().ireduce(types::I32, expected);
        let mismatch = builder
            .ins()
            .icmp(ir::condcodes::IntCC::NotEqual, type_id, expected);
        builder.ins().trapnz(mismatch, TrapCode::BadSignature);
        Ok(Some(Self::call_func_ref(
            builder, sig_ref, func_ref, call_args,
        )))
    }

    fn translate_return_call_indirect(
        &mut self,
        _builder: &mut FunctionBuilder,
        _table_index: TableIndex,
        _sig_index: TypeIndex,
        _sig_ref: ir::SigRef,
        _callee: ir::Value,
        _call_args: &[ir::Value],
    ) -> WasmResult<()> {
        unsupported("tail calls")
    }

    fn translate_return_call_ref(
        &mut self,
        _builder: &mut FunctionBuilder,
        _sig_ref: ir::SigRef,
        _callee: ir::Value,
        _call_args: &[ir::Value],
    ) -> WasmResult<()> {
        unsupported("tail calls")
    }

    fn translate_return_call(
        &mut self,
        _builder: &mut FunctionBuilder,
        _callee_index: FuncIndex,
        _callee: ir::FuncRef,
        _call_args: &[ir::Value],
    ) -> WasmResult<()> {
        unsupported("tail calls")
    }

    fn translate_call_ref(
        &mut self,
        _builder: &mut FunctionBuilder,
        _sig_ref: ir::SigRef,
        _callee: ir::Value,
        _call_args: &[ir::Value],
    ) -> WasmResult<ir::Inst> {
        unsupported("typed function references")
    }

    fn translate_memory_grow(
        &mut self,
        mut pos: FuncCursor,
        index: MemoryIndex,
        _heap: Heap,
        val: ir::Value,
    ) -> WasmResult<ir::Value> {
        Ok(self
            .call_builtin(&mut pos, Builtin::MemoryGrow, &[index.as_u32()], &[val])
            .expect("memory.grow returns a value"))
    }

    fn translate_memory_size(
        &mut self,
        mut pos: FuncCursor,
        index: MemoryIndex,
        _heap: Heap,
    ) -> WasmResult<ir::Value> {
        let definition =
            Self::load_readonly_vmctx_ptr(&mut pos, self.offsets.memory_definition(index.as_u32()));
        let length = pos.ins().load(
            types::I64,
            trusted(),
            definition,
            MEMORY_DEFINITION_LENGTH as i32,
        );
        let pages = pos.ins().ushr_imm(length, 16);
        Ok(pos.ins().ireduce(types::I32, pages))
    }

    fn translate_memory_copy(
        &mut self,
        mut pos: FuncCursor,
        src_index: MemoryIndex,
        _src_heap: Heap,
        dst_index: MemoryIndex,
        _dst_heap: Heap,
        dst: ir::Value,
        src: ir::Value,
        len: ir::Value,
    ) -> WasmResult<()> {
        self.call_builtin_checked(
            &mut pos,
            Builtin::MemoryCopy,
            &[dst_index.as_u32(), src_index.as_u32()],
            &[dst, src, len],
            TrapCode::HeapOutOfBounds,
        );
        Ok(())
    }

    fn translate_memory_fill(
        &mut self,
        mut pos: FuncCursor,
        index: MemoryIndex,
        _heap: Heap,
        dst: ir::Value,
        val: ir::Value,
        len: ir::Value,
    ) -> WasmResult<()> {
        self.call_builtin_checked(
            &mut pos,
            Builtin::MemoryFill,
            &[index.as_u32()],
            &[dst, val, len],
            TrapCode::HeapOutOfBounds,
        );
        Ok(())
    }

    fn translate_memory_init(
        &mut self,
        mut pos: FuncCursor,
        index: MemoryIndex,
        _heap: Heap,
        seg_index: u32,
        dst: ir::Value,
        src: ir::Value,
        len: ir::Value,
    ) -> WasmResult<()> {
        self.call_builtin_checked(
            &mut pos,
            Builtin::MemoryInit,
            &[index.as_u32(), seg_index],
            &[dst, src, len],
            TrapCode::HeapOutOfBounds,
        );
        Ok(())
    }

    fn translate_data_drop(&mut self, mut pos: FuncCursor, seg_index: u32) -> WasmResult<()> {
        self.call_builtin(&mut pos, Builtin::DataDrop, &[seg_index], &[]);
        Ok(())
    }

    fn translate_table_size(
        &mut self,
        mut pos: FuncCursor,
        index: TableIndex,
    ) -> WasmResult<ir::Value> {
        let (_, length) = self.load_table_ptr_and_length(&mut pos, index);
        Ok(length)
    }

    fn translate_table_grow(
        &mut self,
        mut pos: FuncCursor,
        table_index: TableIndex,
        delta: ir::Value,
        init_value: ir::Value,
    ) -> WasmResult<ir::Value> {
        Ok(self
            .call_builtin(
                &mut pos,
                Builtin::TableGrow,
                &[table_index.as_u32()],
                &[init_value, delta],
            )
            .expect("table.grow returns a value"))
    }

    fn translate_table_get(
        &mut self,
        builder: &mut FunctionBuilder,
        table_index: TableIndex,
        index: ir::Value,
    ) -> WasmResult<ir::Value> {
        let element = self.table_element_addr(builder, table_index, index);
        Ok(builder.ins().load(types::I64, trusted(), element, 0))
    }

    fn translate_table_set(
        &mut self,
        builder: &mut FunctionBuilder,
        table_index: TableIndex,
        value: ir::Value,
        index: ir::Value,
    ) -> WasmResult<()> {
        let element = self.table_element_addr(builder, table_index, index);
        builder.ins().store(trusted(), value, element, 0);
        Ok(())
    }

    fn translate_table_copy(
        &mut self,
        mut pos: FuncCursor,
        dst_table_index: TableIndex,
        src_table_index: TableIndex,
        dst: ir::Value,
        src: ir::Value,
        len: ir::Value,
    ) -> WasmResult<()> {
        self.call_builtin_checked(
            &mut pos,
            Builtin::TableCopy,
            &[dst_table_index.as_u32(), src_table_index.as_u32()],
            &[dst, src, len],
            TrapCode::TableOutOfBounds,
        );
        Ok(())
    }

    fn translate_table_fill(
        &mut self,
        mut pos: FuncCursor,
        table_index: TableIndex,
        dst: ir::Value,
        val: ir::Value,
        len: ir::Value,
    ) -> WasmResult<()> {
        self.call_builtin_checked(
            &mut pos,
            Builtin::TableFill,
            &[table_index.as_u32()],
            &[dst, val, len],
            TrapCode::TableOutOfBounds,
        );
        Ok(())
    }

    fn translate_table_init(
        &mut self,
        mut pos: FuncCursor,
        seg_index: u32,
        table_index: TableIndex,
        dst: ir::Value,
        src: ir::Value,
        len: ir::Value,
    ) -> WasmResult<()> {
        self.call_builtin_checked(
            &mut pos,
            Builtin::TableInit,
            &[table_index.as_u32(), seg_index],
            &[dst, src, len],
            TrapCode::TableOutOfBounds,
        );
        Ok(())
    }

    fn translate_elem_drop(&mut self, mut pos: FuncCursor, seg_index: u32) -> WasmResult<()> {
        self.call_builtin(&mut pos, Builtin::ElemDrop, &[seg_index], &[]);
        Ok(())
    }

    fn translate_ref_null(
        &mut self,
        mut pos: FuncCursor,
        _ty: WasmHeapType,
    ) -> WasmResult<ir::Value> {
        Ok(pos.ins().iconst(types::I64, 0))
    }

    fn translate_ref_is_null(
        &mut self,
        mut pos: FuncCursor,
        value: ir::Value,
    ) -> WasmResult<ir::Value> {
        let is_null = pos.ins().icmp_imm(ir::condcodes::IntCC::Equal, value, 0);
        Ok(pos.ins().uextend(types::I32, is_null))
    }

    fn translate_ref_func(
        &mut self,
        mut pos: FuncCursor,
        func_index: FuncIndex,
    ) -> WasmResult<ir::Value> {
        let vmctx = Self::vmctx_value(pos.func);
        Ok(pos
            .ins()
            .iadd_imm(vmctx, self.offsets.func_ref(func_index.as_u32()) as i64))
    }

    fn translate_custom_global_get(
        &mut self,
        _builder: &mut FunctionBuilder,
        _global_index: GlobalIndex,
    ) -> WasmResult<ir::Value> {
        unreachable!("make_global never returns GlobalVariable::Custom")
    }

    fn translate_custom_global_set(
        &mut self,
        _builder: &mut FunctionBuilder,
        _global_index: GlobalIndex,
        _val: ir::Value,
    ) -> WasmResult<()> {
        unreachable!("make_global never returns GlobalVariable::Custom")
    }

    fn translate_atomic_wait(
        &mut self,
        _pos: FuncCursor,
        _index: MemoryIndex,
        _heap: Heap,
        _addr: ir::Value,
        _expected: ir::Value,
        _timeout: ir::Value,
    ) -> WasmResult<ir::Value> {
        unsupported("threads (atomic wait)")
    }

    fn translate_atomic_notify(
        &mut self,
        _pos: FuncCursor,
        _index: MemoryIndex,
        _heap: Heap,
        _addr: ir::Value,
        _count: ir::Value,
    ) -> WasmResult<ir::Value> {
        unsupported("threads (atomic notify)")
    }

    fn translate_ref_i31(&mut self, _pos: FuncCursor, _val: ir::Value) -> WasmResult<ir::Value> {
        unsupported("GC (i31ref)")
    }

    fn translate_i31_get_s(
        &mut self,
        _pos: FuncCursor,
        _i31ref: ir::Value,
    ) -> WasmResult<ir::Value> {
        unsupported("GC (i31ref)")
    }

    fn translate_i31_get_u(
        &mut self,
        _pos: FuncCursor,
        _i31ref: ir::Value,
    ) -> WasmResult<ir::Value> {
        unsupported("GC (i31ref)")
    }

    fn translate_loop_header(&mut self, builder: &mut FunctionBuilder) -> WasmResult<()> {
        self.emit_interrupt_check(builder);
        Ok(())
    }

    fn before_translate_function(
        &mut self,
        builder: &mut FunctionBuilder,
        _state: &cranelift_wasm::FuncTranslationState,
    ) -> WasmResult<()> {
        self.interrupted = None;
        self.emit_interrupt_check(builder);
        Ok(())
    }

    fn after_translate_function(
        &mut self,
        builder: &mut FunctionBuilder,
        _state: &cranelift_wasm::FuncTranslationState,
    ) -> WasmResult<()> {
        // Every check has branched to the shared trap block by now.
        if let Some(interrupted) = self.interrupted.take() {
            builder.seal_block(interrupted);
        }
        Ok(())
    }

    fn is_x86(&self) -> bool {
        cfg!(target_arch = "x86_64")
    }
}
