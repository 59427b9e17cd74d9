//! The layout of the `VMContext`: the block of memory that compiled code of one
//! instance reaches through its first argument. The compiler bakes these
//! offsets into code and the runtime fills the block at instantiation, so this
//! file is the single source of truth for both.
//!
//! ```text
//! vmctx + 0                    stack_limit        usize: lowest stack address guest code may use
//! vmctx + 8                    activation         *mut (runtime's record of the running root call)
//! vmctx + 16                   builtins           *const [usize; Builtin::COUNT]: runtime entry points
//! vmctx + 24                   instance           *const (runtime's record of this instance)
//! vmctx + 32                   interrupt          *const u32: non-zero asks guest code to stop (kill switch)
//! vmctx + memories             [VMMemoryImport; memories]   { base, definition }
//! vmctx + globals              [*mut VMGlobal; globals]     16-byte storage of each global
//! vmctx + tables               [*mut VMTable; tables]       { elements, length }
//! vmctx + func_refs            [VMFuncRef; functions]       { native_call, type_id, vmctx, owner }
//! ```
//!
//! A `VMFuncRef` is what a `funcref` value points to (null is 0). Its
//! `native_call` has the native signature of the function's Wasm type:
//! `(callee_vmctx, caller_vmctx, params...) -> results`, System V. Its
//! `owner` is an opaque pointer the runtime uses to keep the function alive.
//!
//! The callee vmctx of a call through a `VMFuncRef` may belong to another
//! instance (an import, or a table entry) or be a host function's context.
//! Either way its first words are the stack limit and the activation (and,
//! in an instance's vmctx, the interrupt flag pointer at 32), and the caller
//! stores its own there before the call: code of a linked instance runs on
//! the caller's stack, under the caller's root call.

/// Offset of the stack limit.
pub const VMCTX_STACK_LIMIT: u32 = 0;
/// Offset of the running root call's activation record.
pub const VMCTX_ACTIVATION: u32 = 8;
/// Offset of the builtin function table pointer.
pub const VMCTX_BUILTINS: u32 = 16;
/// Offset of the runtime's instance back-pointer.
pub const VMCTX_INSTANCE: u32 = 24;
/// Offset of the pointer to the running root call's interrupt flag (u32).
pub const VMCTX_INTERRUPT: u32 = 32;
/// The words a caller hands every callee vmctx (a host function's context
/// reserves them as scratch).
pub const VMCTX_PROPAGATED: [u32; 3] = [VMCTX_STACK_LIMIT, VMCTX_ACTIVATION, VMCTX_INTERRUPT];
/// Offset, in a host function's context, of its array-call entry point
/// (after scratch space for the propagated words, which it never reads).
pub const HOST_CTX_ARRAY_CALL: u32 = 40;
const VMCTX_HEADER_SIZE: u32 = 40;

/// `VMMemoryImport`: the base of the memory's reservation (it never moves) and
/// a pointer to its `VMMemoryDefinition`.
pub const MEMORY_IMPORT_SIZE: u32 = 16;
pub const MEMORY_IMPORT_BASE: u32 = 0;
pub const MEMORY_IMPORT_DEFINITION: u32 = 8;
/// `VMMemoryDefinition`: `{ base: *mut u8, length_bytes: usize }`.
pub const MEMORY_DEFINITION_LENGTH: u32 = 8;

/// `VMTable`: `{ elements: *mut usize, length: u32 }`.
pub const TABLE_ELEMENTS: u32 = 0;
pub const TABLE_LENGTH: u32 = 8;

/// `VMFuncRef`: `{ native_call: usize, type_id: u32, _pad: u32, vmctx: usize, owner: usize }`.
pub const FUNC_REF_SIZE: u32 = 32;
pub const FUNC_REF_NATIVE_CALL: u32 = 0;
pub const FUNC_REF_TYPE_ID: u32 = 8;
pub const FUNC_REF_VMCTX: u32 = 16;
pub const FUNC_REF_OWNER: u32 = 24;

/// Where each array of a module's vmctx starts.
#[derive(Clone, Debug)]
pub struct VMOffsets {
    pub num_memories: u32,
    pub num_globals: u32,
    pub num_tables: u32,
    pub num_functions: u32,
    pub memories: u32,
    pub globals: u32,
    pub tables: u32,
    pub func_refs: u32,
    pub size: u32,
}

impl VMOffsets {
    pub fn new(num_memories: u32, num_globals: u32, num_tables: u32, num_functions: u32) -> Self {
        let memories = VMCTX_HEADER_SIZE;
        let globals = memories + MEMORY_IMPORT_SIZE * num_memories;
        let tables = globals + 8 * num_globals;
        let func_refs = tables + 8 * num_tables;
        let size = func_refs + FUNC_REF_SIZE * num_functions;
        VMOffsets {
            num_memories,
            num_globals,
            num_tables,
            num_functions,
            memories,
            globals,
            tables,
            func_refs,
            size,
        }
    }

    pub fn memory_base(&self, index: u32) -> u32 {
        self.memories + index * MEMORY_IMPORT_SIZE + MEMORY_IMPORT_BASE
    }

    pub fn memory_definition(&self, index: u32) -> u32 {
        self.memories + index * MEMORY_IMPORT_SIZE + MEMORY_IMPORT_DEFINITION
    }

    pub fn global(&self, index: u32) -> u32 {
        self.globals + index * 8
    }

    pub fn table(&self, index: u32) -> u32 {
        self.tables + index * 8
    }

    pub fn func_ref(&self, index: u32) -> u32 {
        self.func_refs + index * FUNC_REF_SIZE
    }
}

/// Runtime entry points compiled code calls through the builtins table.
/// Each takes the caller's vmctx first. Those returning a status return 0 on
/// success and non-zero when the operation must trap (the trap code is fixed
/// per builtin and emitted by the compiler).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Builtin {
    /// `(vmctx, memory: i32, delta_pages: i32) -> old_pages_or_minus_1: i32`
    MemoryGrow = 0,
    /// `(vmctx, memory: i32, dst: i32, value: i32, len: i32) -> status`
    MemoryFill = 1,
    /// `(vmctx, dst_memory: i32, src_memory: i32, dst: i32, src: i32, len: i32) -> status`
    MemoryCopy = 2,
    /// `(vmctx, memory: i32, segment: i32, dst: i32, src: i32, len: i32) -> status`
    MemoryInit = 3,
    /// `(vmctx, segment: i32)`
    DataDrop = 4,
    /// `(vmctx, table: i32, init: i64, delta: i32) -> old_len_or_minus_1: i32`
    TableGrow = 5,
    /// `(vmctx, table: i32, dst: i32, value: i64, len: i32) -> status`
    TableFill = 6,
    /// `(vmctx, dst_table: i32, src_table: i32, dst: i32, src: i32, len: i32) -> status`
    TableCopy = 7,
    /// `(vmctx, table: i32, segment: i32, dst: i32, src: i32, len: i32) -> status`
    TableInit = 8,
    /// `(vmctx, segment: i32)`
    ElemDrop = 9,
}

impl Builtin {
    pub const COUNT: usize = 10;
}

/// How many runs in this process have a kill request that compiled code
/// must notice (the runtime's kill switches count themselves in and out).
/// Every interrupt check first loads this word, at an address baked into
/// the code, and looks at its own run's flag (`vmctx + interrupt`) only
/// when it is non-zero: in steady state a check is a load from a constant
/// address and a branch, with no pointer kept alive across the loop.
pub static INTERRUPTS_PENDING: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
