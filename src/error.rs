//! The runtime's error type; `Trap`, the record of a guest fault: its
//! code, where it happened (function and Wasm offset), and the native PC;
//! and the values an ending carries back to the embedder (`AnyValue`,
//! `TerminationDetails`).

use crate::debug::backtrace::WasmBacktrace;
use backstop_jit::CompileError;
pub use backstop_jit::TrapCode;
use std::any::Any;
use std::fmt;

/// Everything that can go wrong, as one type. Nothing the guest does, and no
/// input the embedder passes, ends the process: it ends up here.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The module's bytes are not valid Wasm (malformed, truncated, or fail
    /// validation), or the text format does not parse.
    Invalid(String),
    /// The module uses a feature Backstop does not support; the message
    /// names it.
    Unsupported(String),
    /// A compiled module (`.cwasm`) was made by another build of Backstop,
    /// in another file format, or with other settings than this engine's.
    /// Compile the module again.
    Incompatible(String),
    /// Instantiation could not resolve an import, or found one of the wrong
    /// type.
    Link(String),
    /// The guest trapped.
    Trap(Trap),
    /// A call or access named something that does not exist or passed values
    /// of the wrong number or type.
    InvalidArgument(String),
    /// The instance is not in a state that allows this operation.
    InstanceState(String),
    /// A host access to linear memory was out of range.
    MemoryAccess(String),
    /// The operating system refused a resource (memory, a stack).
    Resource(String),
    /// An error a host function returned, carried back unchanged.
    Host(Box<dyn std::error::Error + Send + Sync>),
    /// A host function ended the run with `Caller::terminate(details)`.
    Terminated(TerminationDetails),
    /// A `KillSwitch` stopped the run (or cancelled it before it started).
    Killed,
    /// A host function suspended the guest during a plain `call`; the
    /// instance is suspended with this value (see `Instance::resume`).
    Yielded(AnyValue),
    /// A message from the embedder or a host function.
    Message(String),
}

impl Error {
    /// An error with a message, for host functions to return.
    pub fn msg(message: impl fmt::Display) -> Error {
        Error::Message(message.to_string())
    }

    /// The trap, if this error is one.
    pub fn as_trap(&self) -> Option<&Trap> {
        match self {
            Error::Trap(t) => Some(t),
            _ => None,
        }
    }

    /// The termination details, if the run was terminated.
    pub fn into_termination(self) -> Option<TerminationDetails> {
        match self {
            Error::Terminated(details) => Some(details),
            _ => None,
        }
    }

    /// The trap code, if this error is a trap.
    pub fn trap_code(&self) -> Option<TrapCode> {
        self.as_trap().map(|t| t.code())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(m) => write!(f, "invalid module: {m}"),
            Error::Unsupported(m) => write!(f, "unsupported feature: {m}"),
            Error::Incompatible(m) => write!(f, "incompatible compiled module: {m}"),
            Error::Link(m) => write!(f, "link error: {m}"),
            Error::Trap(t) => t.fmt(f),
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::InstanceState(m) => write!(f, "wrong instance state: {m}"),
            Error::MemoryAccess(m) => write!(f, "memory access out of range: {m}"),
            Error::Resource(m) => write!(f, "resource exhausted: {m}"),
            Error::Host(e) => write!(f, "host error: {e}"),
            Error::Terminated(_) => f.write_str("the guest was terminated by the host"),
            Error::Killed => f.write_str("the guest was stopped by its kill switch"),
            Error::Yielded(_) => f.write_str("the guest was suspended by a host function"),
            Error::Message(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Host(e) => Some(&**e),
            _ => None,
        }
    }
}

impl From<CompileError> for Error {
    fn from(e: CompileError) -> Self {
        match e {
            CompileError::Invalid(m) => Error::Invalid(m),
            CompileError::Unsupported(m) => Error::Unsupported(m),
            CompileError::Codegen(m) => Error::Unsupported(format!("code generation: {m}")),
            CompileError::Incompatible(m) => Error::Incompatible(m),
        }
    }
}

/// A guest trap: what happened and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trap {
    pub(crate) code: TrapCode,
    pub(crate) pc: Option<usize>,
    pub(crate) func_index: Option<u32>,
    pub(crate) func_name: Option<String>,
    pub(crate) wasm_offset: Option<u32>,
    pub(crate) backtrace: Option<WasmBacktrace>,
    /// What the runtime was doing when it trapped outside guest code, such
    /// as "instantiation: data segment 2 (...) does not fit in memory 0".
    pub(crate) context: Option<String>,
}

impl Trap {
    /// A trap with a code and no location (raised by the runtime itself).
    pub(crate) fn new(code: TrapCode) -> Trap {
        Trap {
            code,
            pc: None,
            func_index: None,
            func_name: None,
            wasm_offset: None,
            backtrace: None,
            context: None,
        }
    }

    /// The same trap, saying what the runtime was doing.
    pub(crate) fn during(mut self, context: String) -> Trap {
        self.context = Some(context);
        self
    }

    /// What the runtime was doing when it trapped, for traps raised
    /// outside guest code: for a segment that does not fit at
    /// instantiation, which data or element segment, where, and the size
    /// of its memory or table.
    pub fn context(&self) -> Option<&str> {
        self.context.as_deref()
    }

    /// Locates a trap at a native PC of guest code through the registry.
    pub(crate) fn at_pc(code: TrapCode, pc: usize) -> Trap {
        let mut trap = Trap::new(code);
        trap.pc = Some(pc);
        if let Some(info) = backstop_unwind::lookup(pc) {
            trap.wasm_offset = info.source_offset;
            if let Some(func) = info.function_range() {
                if func.index != u32::MAX {
                    trap.func_index = Some(func.index);
                }
                trap.func_name = func.name.clone();
            }
        }
        trap
    }

    /// Why the guest trapped.
    pub fn code(&self) -> TrapCode {
        self.code
    }

    /// Index of the Wasm function that trapped, if known.
    pub fn func_index(&self) -> Option<u32> {
        self.func_index
    }

    /// Name of the function that trapped (from the name section, or
    /// `<wasm function N>`), if known.
    pub fn func_name(&self) -> Option<&str> {
        self.func_name.as_deref()
    }

    /// Offset of the trapping instruction in the Wasm binary, if known.
    pub fn wasm_offset(&self) -> Option<u32> {
        self.wasm_offset
    }

    /// The guest's stack when it trapped (if `Config::wasm_backtrace` is
    /// on), innermost first.
    pub fn backtrace(&self) -> Option<&WasmBacktrace> {
        self.backtrace.as_ref()
    }

    /// The native PC of the trap, if it came from guest code.
    pub fn pc(&self) -> Option<usize> {
        self.pc
    }
}

impl fmt::Display for Trap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wasm trap: {}", self.code.message())?;
        let demangled = self
            .func_name
            .as_deref()
            .and_then(crate::debug::backtrace::demangle);
        match (
            demangled.as_ref().or(self.func_name.as_ref()),
            self.wasm_offset,
        ) {
            (Some(name), Some(offset)) => write!(f, " in {name} at wasm offset {offset:#x}")?,
            (Some(name), None) => write!(f, " in {name}")?,
            (None, Some(offset)) => write!(f, " at wasm offset {offset:#x}")?,
            (None, None) => {}
        }
        if let Some(context) = &self.context {
            write!(f, " during {context}")?;
        }
        if let Some(backtrace) = self.backtrace.as_ref().filter(|b| !b.frames().is_empty()) {
            write!(f, "\nwasm backtrace:\n{backtrace}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Trap {}

/// A `Send + 'static` value of any type, given back to the embedder: what
/// `Caller::terminate` was given, or what `Caller::suspend` yielded.
/// Downcast it back to its type.
pub struct AnyValue {
    value: Box<dyn Any + Send>,
}

// SAFETY: the boxed value is only reachable through `&mut self` or by value
// (`downcast`, `downcast_mut`, `into_inner`), or through `&self` as a `&T`
// where `T: Sync` (`downcast_ref`); otherwise `&self` exposes only its type
// id. So sharing `&AnyValue` across threads shares the value only when its
// type allows that.
unsafe impl Sync for AnyValue {}

impl AnyValue {
    pub(crate) fn new(value: Box<dyn Any + Send>) -> Self {
        AnyValue { value }
    }

    /// Whether the details are of type `T`.
    pub fn is<T: Any>(&self) -> bool {
        (*self.value).type_id() == std::any::TypeId::of::<T>()
    }

    /// The details as `T`, or `self` back if they are of another type.
    pub fn downcast<T: Any>(self) -> Result<Box<T>, AnyValue> {
        self.value
            .downcast::<T>()
            .map_err(|value| AnyValue { value })
    }

    /// A mutable view of the details as `T`.
    pub fn downcast_mut<T: Any>(&mut self) -> Option<&mut T> {
        self.value.downcast_mut::<T>()
    }

    /// A shared view of the value as `T`. `T` must be `Sync`: a shared
    /// reference may cross threads, and only `Sync` values may be reached
    /// that way (see the `Sync` impl above).
    pub fn downcast_ref<T: Any + Sync>(&self) -> Option<&T> {
        self.value.downcast_ref::<T>()
    }

    /// The boxed value.
    pub fn into_inner(self) -> Box<dyn Any + Send> {
        self.value
    }
}

impl fmt::Debug for AnyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AnyValue(..)")
    }
}

/// What `Caller::terminate` was given, and where the guest was.
#[derive(Debug)]
pub struct TerminationDetails {
    value: AnyValue,
    pub(crate) backtrace: Option<WasmBacktrace>,
}

impl TerminationDetails {
    pub(crate) fn new(value: Box<dyn Any + Send>) -> Self {
        TerminationDetails {
            value: AnyValue::new(value),
            backtrace: None,
        }
    }

    /// Whether the details are of type `T`.
    pub fn is<T: Any>(&self) -> bool {
        self.value.is::<T>()
    }

    /// The details as `T`, or `self` back if they are of another type.
    pub fn downcast<T: Any>(self) -> Result<Box<T>, TerminationDetails> {
        let backtrace = self.backtrace;
        self.value
            .downcast::<T>()
            .map_err(|value| TerminationDetails { value, backtrace })
    }

    /// A mutable view of the details as `T`.
    pub fn downcast_mut<T: Any>(&mut self) -> Option<&mut T> {
        self.value.downcast_mut::<T>()
    }

    /// A shared view of the details as `T`. `T` must be `Sync`, since the
    /// details may be shared across threads.
    pub fn downcast_ref<T: Any + Sync>(&self) -> Option<&T> {
        self.value.downcast_ref::<T>()
    }

    /// The boxed value.
    pub fn into_inner(self) -> Box<dyn Any + Send> {
        self.value.into_inner()
    }

    /// The guest's stack when it was terminated (if `Config::wasm_backtrace`
    /// is on), innermost first.
    pub fn backtrace(&self) -> Option<&WasmBacktrace> {
        self.backtrace.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_values_give_back_only_their_own_type() {
        let mut value = AnyValue::new(Box::new(String::from("stop")));
        assert!(value.is::<String>() && !value.is::<u32>());
        assert_eq!(value.downcast_ref::<String>().unwrap(), "stop");
        value.downcast_mut::<String>().unwrap().push('!');
        let value = value.downcast::<u32>().unwrap_err();
        assert_eq!(*value.downcast::<String>().unwrap(), "stop!");
        // Shared across threads, a `Sync` value is readable from each.
        let shared = AnyValue::new(Box::new(7u64));
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(shared.downcast_ref::<u64>(), Some(&7)));
        });
    }

    #[test]
    fn termination_details_keep_their_backtrace_through_a_failed_downcast() {
        let details = TerminationDetails::new(Box::new(3i32));
        let details = details.downcast::<u8>().unwrap_err();
        assert!(details.backtrace().is_none());
        assert_eq!(*details.downcast::<i32>().unwrap(), 3);
    }
}
