//! Values crossing between host and guest: `Val` (dynamically typed),
//! `ExternRef`, `V128`, `Func` (a function of a store),
//! and the traits that map Rust types and tuples onto Wasm value types for
//! typed calls and host functions (`WasmTy`, `WasmValues`, `HostReturn`).
//!
//! A value travels either through a 16-byte slot (`u128`), the layout the
//! compiled entry trampolines and host adapters use, or, for typed calls,
//! as its native scalar (`WasmTy::Native`) in the registers of a System V
//! call, straight between Rust and compiled code.

use crate::api::instance::TypedFunc;
use crate::store::instance::InstanceCore;
use crate::store::vm::Callee;
use crate::store::vm::VMFuncRef;
use crate::store::{AsContext, AsContextMut, StoreContext, StoreId, StoreParts};
use crate::Error;
use backstop_jit::{FuncType, ValType};
use std::fmt;
use std::num::NonZeroU64;

/// An opaque, non-null host reference passed to Wasm as `externref`. Backstop
/// does not interpret it; embedders map it to their own objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExternRef(NonZeroU64);

impl ExternRef {
    pub fn new(handle: NonZeroU64) -> ExternRef {
        ExternRef(handle)
    }

    pub fn handle(self) -> NonZeroU64 {
        self.0
    }
}

/// A 128-bit SIMD value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct V128(pub u128);

/// A function of a store: one an instance defines or imports. A small
/// `Copy` handle naming its `VMFuncRef`; valid for the store's whole life
/// (the store frees nothing before it drops), and only with that store.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Func {
    pub(crate) store: StoreId,
    /// The `VMFuncRef`'s address, as an integer: it is only dereferenced
    /// after the store's id was checked, while the store is borrowed.
    raw: usize,
}

impl Func {
    /// The handle for a funcref value of store `store`.
    ///
    /// # Safety
    /// `raw` must be a non-null pointer to a `VMFuncRef` inside the vmctx
    /// of an instance of `store` (all funcref values of its guest code and
    /// its tables and globals are).
    pub(crate) unsafe fn from_raw(store: StoreId, raw: *const VMFuncRef) -> Func {
        Func {
            store,
            raw: raw as usize,
        }
    }

    pub(crate) fn raw(&self) -> *const VMFuncRef {
        self.raw as *const VMFuncRef
    }

    /// The `VMFuncRef`, after checking the store.
    #[track_caller]
    fn vm<'a>(&self, parts: &'a StoreParts) -> &'a VMFuncRef {
        parts.check(self.store, "a Func");
        // SAFETY: the id matches, so `raw` lies in a vmctx of this store,
        // which lives as long as the borrow of its parts.
        unsafe { &*self.raw() }
    }

    pub(crate) fn type_id_in(&self, parts: &StoreParts) -> u32 {
        self.vm(parts).type_id
    }

    /// A copy of the `VMFuncRef` (for an importer's vmctx).
    pub(crate) fn vm_copy(&self, parts: &StoreParts) -> VMFuncRef {
        *self.vm(parts)
    }

    /// How to call this function from the host.
    pub(crate) fn callee(&self, parts: &StoreParts) -> Callee {
        let vm = self.vm(parts);
        // SAFETY: `owner` is the address of the InstanceCore whose vmctx
        // holds this VMFuncRef, owned by the same store.
        let owner = unsafe { &*(vm.owner as *const InstanceCore) };
        owner.callee_for(self.raw())
    }

    /// The function's type.
    pub fn ty(&self, store: impl AsContext) -> FuncType {
        let store = store.as_context();
        let type_id = self.vm(&store.0.parts).type_id;
        store.0.parts.engine.func_type(type_id)
    }

    /// Calls the function with dynamically typed values: a root call, or a
    /// nested one when `store` is the `Caller` of a running host function.
    pub fn call(&self, mut store: impl AsContextMut, args: &[Val]) -> Result<Vec<Val>, Error> {
        let store = store.as_context_mut().0;
        store.parts.ensure(self.store, "the function")?;
        let ty = self.ty(StoreContext(store));
        let callee = self.callee(&store.parts);
        crate::api::calls::call_dynamic(store, callee, &ty, args)
    }

    /// A typed view of the function, checking its type once.
    pub fn typed<P: WasmValues, R: WasmValues>(
        &self,
        store: impl AsContext,
    ) -> Result<TypedFunc<P, R>, Error> {
        let store = store.as_context();
        store.0.parts.ensure(self.store, "the function")?;
        crate::api::instance::check_typed::<P, R>(&self.ty(&store))?;
        Ok(TypedFunc::from_callee(
            self.store,
            self.callee(&store.0.parts),
        ))
    }
}

impl fmt::Debug for Func {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Func({:#x})", self.raw)
    }
}

/// A dynamically typed Wasm value. Floats are kept as bits so NaN payloads
/// survive.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
    V128(V128),
    FuncRef(Option<Func>),
    ExternRef(Option<ExternRef>),
}

impl Val {
    pub fn ty(&self) -> ValType {
        match self {
            Val::I32(_) => ValType::I32,
            Val::I64(_) => ValType::I64,
            Val::F32(_) => ValType::F32,
            Val::F64(_) => ValType::F64,
            Val::V128(_) => ValType::V128,
            Val::FuncRef(_) => ValType::FuncRef,
            Val::ExternRef(_) => ValType::ExternRef,
        }
    }

    /// The null reference (or zero) of a type.
    pub fn default_for(ty: ValType) -> Val {
        match ty {
            ValType::I32 => Val::I32(0),
            ValType::I64 => Val::I64(0),
            ValType::F32 => Val::F32(0),
            ValType::F64 => Val::F64(0),
            ValType::V128 => Val::V128(V128(0)),
            ValType::FuncRef => Val::FuncRef(None),
            ValType::ExternRef => Val::ExternRef(None),
        }
    }

    pub fn i32(&self) -> Option<i32> {
        match self {
            Val::I32(v) => Some(*v),
            _ => None,
        }
    }

    pub fn i64(&self) -> Option<i64> {
        match self {
            Val::I64(v) => Some(*v),
            _ => None,
        }
    }

    pub fn f32(&self) -> Option<f32> {
        match self {
            Val::F32(v) => Some(f32::from_bits(*v)),
            _ => None,
        }
    }

    pub fn f64(&self) -> Option<f64> {
        match self {
            Val::F64(v) => Some(f64::from_bits(*v)),
            _ => None,
        }
    }

    /// The 16-byte slot form of this value, for store `parts`: a function
    /// reference must belong to it.
    pub(crate) fn to_raw_in(&self, parts: &StoreParts) -> Result<u128, Error> {
        self.to_raw_for(parts.id)
    }

    /// `to_raw_in` by the store's id.
    pub(crate) fn to_raw_for(&self, store: StoreId) -> Result<u128, Error> {
        Ok(match self {
            Val::I32(v) => u128::from(*v as u32),
            Val::I64(v) => u128::from(*v as u64),
            Val::F32(v) => u128::from(*v),
            Val::F64(v) => u128::from(*v),
            Val::V128(v) => v.0,
            Val::FuncRef(None) | Val::ExternRef(None) => 0,
            Val::FuncRef(Some(f)) if f.store == store => f.raw as u128,
            Val::FuncRef(Some(_)) => {
                return Err(Error::InvalidArgument(
                    "a function reference belongs to another store".into(),
                ))
            }
            Val::ExternRef(Some(e)) => u128::from(e.0.get()),
        })
    }

    /// The value of type `ty` held in a slot of store `store`.
    ///
    /// # Safety
    /// For `FuncRef`, a non-zero slot must hold a `VMFuncRef` pointer into
    /// a vmctx of `store`.
    pub(crate) unsafe fn from_raw(raw: u128, ty: ValType, store: StoreId) -> Val {
        match ty {
            ValType::I32 => Val::I32(raw as u32 as i32),
            ValType::I64 => Val::I64(raw as u64 as i64),
            ValType::F32 => Val::F32(raw as u32),
            ValType::F64 => Val::F64(raw as u64),
            ValType::V128 => Val::V128(V128(raw)),
            ValType::FuncRef => match raw as usize {
                0 => Val::FuncRef(None),
                // SAFETY: forwarded from this function's contract.
                ptr => Val::FuncRef(Some(unsafe {
                    Func::from_raw(store, ptr as *const VMFuncRef)
                })),
            },
            ValType::ExternRef => Val::ExternRef(NonZeroU64::new(raw as u64).map(ExternRef)),
        }
    }
}

macro_rules! val_from {
    ($($t:ty => $variant:ident $(via $conv:ident)?),*) => {$(
        impl From<$t> for Val {
            fn from(v: $t) -> Val {
                Val::$variant(v $(.$conv())?)
            }
        }
    )*};
}
val_from!(i32 => I32, i64 => I64, f32 => F32 via to_bits, f64 => F64 via to_bits, V128 => V128);

/// A Rust type that stands for one Wasm value type in typed calls and host
/// functions.
pub trait WasmTy: Sized + Send + 'static {
    const TYPE: ValType;
    #[doc(hidden)]
    fn to_raw(self) -> u128;
    #[doc(hidden)]
    fn from_raw(raw: u128) -> Self;
    /// How compiled code passes the value in its native (System V)
    /// signature, as a Rust scalar of the same class and width.
    #[doc(hidden)]
    type Native: Copy;
    /// Whether `Native` is exact (false for `V128`, which travels in an
    /// XMM register that no plain Rust scalar stands for).
    #[doc(hidden)]
    const HAS_NATIVE: bool = true;
    #[doc(hidden)]
    fn from_native(native: Self::Native) -> Self;
    #[doc(hidden)]
    fn to_native(self) -> Self::Native;
}

macro_rules! wasm_ty {
    ($($t:ty => $vt:ident, |$v:ident| $to:expr, |$r:ident| $from:expr;)*) => {$(
        impl WasmTy for $t {
            const TYPE: ValType = ValType::$vt;
            #[inline]
            fn to_raw(self) -> u128 {
                let $v = self;
                $to
            }
            #[inline]
            fn from_raw($r: u128) -> Self {
                $from
            }
            // Every scalar here travels natively as its raw bits, in the
            // low bits of a general or XMM register, exactly like the
            // Rust scalar of the same width and class.
            type Native = $t;
            #[inline]
            fn from_native(native: $t) -> Self {
                native
            }
            #[inline]
            fn to_native(self) -> $t {
                self
            }
        }
    )*};
}
wasm_ty! {
    i32 => I32, |v| u128::from(v as u32), |r| r as u32 as i32;
    u32 => I32, |v| u128::from(v), |r| r as u32;
    i64 => I64, |v| u128::from(v as u64), |r| r as u64 as i64;
    u64 => I64, |v| u128::from(v), |r| r as u64;
    f32 => F32, |v| u128::from(v.to_bits()), |r| f32::from_bits(r as u32);
    f64 => F64, |v| u128::from(v.to_bits()), |r| f64::from_bits(r as u64);
}

impl WasmTy for V128 {
    const TYPE: ValType = ValType::V128;
    #[inline]
    fn to_raw(self) -> u128 {
        self.0
    }
    #[inline]
    fn from_raw(raw: u128) -> Self {
        V128(raw)
    }
    // Never used natively (see `HAS_NATIVE`): host functions with a V128
    // in their signature go through the compiled host adapter.
    type Native = u128;
    const HAS_NATIVE: bool = false;
    #[inline]
    fn from_native(native: u128) -> Self {
        V128(native)
    }
    #[inline]
    fn to_native(self) -> u128 {
        self.0
    }
}

impl WasmTy for Option<ExternRef> {
    const TYPE: ValType = ValType::ExternRef;
    #[inline]
    fn to_raw(self) -> u128 {
        u128::from(self.to_native())
    }
    #[inline]
    fn from_raw(raw: u128) -> Self {
        Self::from_native(raw as u64)
    }
    /// A reference travels as a 64-bit word, 0 for null.
    type Native = u64;
    #[inline]
    fn from_native(native: u64) -> Self {
        NonZeroU64::new(native).map(ExternRef)
    }
    #[inline]
    fn to_native(self) -> u64 {
        self.map_or(0, |e| e.0.get())
    }
}

/// A list of Wasm values as Rust types: a single `WasmTy`, `()`, or a tuple.
pub trait WasmValues: Sized + Send + 'static {
    /// The Wasm types, in order.
    const TYPES: &'static [ValType];
    #[doc(hidden)]
    fn store(self, slots: &mut [u128]);
    #[doc(hidden)]
    fn load(slots: &[u128]) -> Self;
    /// What a native (System V) function returning these values returns:
    /// `()` for none, the value's `WasmTy::Native` for one.
    #[doc(hidden)]
    type NativeResult: Copy;
    /// Whether `NativeResult` is exact (false for two or more values, which
    /// compiled code returns through memory, and for a V128).
    #[doc(hidden)]
    const HAS_NATIVE_RESULT: bool;
    #[doc(hidden)]
    fn into_native_result(self) -> Self::NativeResult;
    /// The values back from a native result (when `HAS_NATIVE_RESULT`).
    #[doc(hidden)]
    fn from_native_result(native: Self::NativeResult) -> Self;
    /// Whether every value has an exact native type, so a function taking
    /// these values can be called through a Rust function pointer.
    #[doc(hidden)]
    const HAS_NATIVE_PARAMS: bool;
    /// Calls `native`, a compiled function whose native signature is
    /// `(callee_vmctx, caller_vmctx, these values...) -> R`, and returns
    /// its native result.
    ///
    /// # Safety
    /// `native` must be such a function (with `HAS_NATIVE_PARAMS` and
    /// `R::HAS_NATIVE_RESULT` true), callable with these vmctx words now.
    #[doc(hidden)]
    unsafe fn call_native<R: WasmValues>(
        self,
        native: usize,
        callee_vmctx: usize,
        caller_vmctx: usize,
    ) -> R::NativeResult;
}

impl<A: WasmTy> WasmValues for A {
    const TYPES: &'static [ValType] = &[A::TYPE];
    #[inline]
    fn store(self, slots: &mut [u128]) {
        slots[0] = self.to_raw();
    }
    #[inline]
    fn load(slots: &[u128]) -> Self {
        A::from_raw(slots[0])
    }
    type NativeResult = A::Native;
    const HAS_NATIVE_RESULT: bool = A::HAS_NATIVE;
    #[inline]
    fn into_native_result(self) -> A::Native {
        self.to_native()
    }
    #[inline]
    fn from_native_result(native: A::Native) -> Self {
        A::from_native(native)
    }
    const HAS_NATIVE_PARAMS: bool = A::HAS_NATIVE;
    #[inline]
    unsafe fn call_native<R: WasmValues>(
        self,
        native: usize,
        callee_vmctx: usize,
        caller_vmctx: usize,
    ) -> R::NativeResult {
        // SAFETY: forwarded; a single value is passed as the 1-tuple is.
        unsafe { (self,).call_native::<R>(native, callee_vmctx, caller_vmctx) }
    }
}

macro_rules! wasm_values_tuple {
    ($($t:ident $i:tt),*) => {
        wasm_values_tuple!(@impl [$($t $i),*] [()] [false] [|_values| ()]
            [|_native| unreachable!("two or more results are never returned natively")]);
    };
    (@impl [$($t:ident $i:tt),*] [$native:ty] [$has_native:expr] [|$v:ident| $into:expr]
        [|$n:ident| $from:expr]) => {
        impl<$($t: WasmTy),*> WasmValues for ($($t,)*) {
            type NativeResult = $native;
            const HAS_NATIVE_RESULT: bool = $has_native;
            #[inline]
            fn into_native_result(self) -> $native {
                let $v = self;
                $into
            }
            #[inline]
            #[allow(clippy::unused_unit)]
            fn from_native_result($n: $native) -> Self {
                $from
            }
            const HAS_NATIVE_PARAMS: bool = true $(&& $t::HAS_NATIVE)*;
            #[inline]
            unsafe fn call_native<R: WasmValues>(
                self,
                native: usize,
                callee_vmctx: usize,
                caller_vmctx: usize,
            ) -> R::NativeResult {
                // SAFETY: per the contract, `native` has this signature.
                unsafe {
                    let f: unsafe extern "C-unwind" fn(usize, usize, $($t::Native),*)
                        -> R::NativeResult = std::mem::transmute(native);
                    f(callee_vmctx, caller_vmctx, $(self.$i.to_native()),*)
                }
            }
            const TYPES: &'static [ValType] = &[$($t::TYPE),*];
            #[inline]
            #[allow(unused_variables)]
            fn store(self, slots: &mut [u128]) {
                $(slots[$i] = self.$i.to_raw();)*
            }
            #[inline]
            #[allow(unused_variables, clippy::unused_unit)]
            fn load(slots: &[u128]) -> Self {
                ($($t::from_raw(slots[$i]),)*)
            }
        }
    };
}
wasm_values_tuple!(@impl [] [()] [true] [|_values| ()] [|_native| ()]);
wasm_values_tuple!(@impl [A 0] [A::Native] [A::HAS_NATIVE] [|values| values.0.to_native()]
    [|native| (A::from_native(native),)]);
wasm_values_tuple!(A 0, B 1);
wasm_values_tuple!(A 0, B 1, C 2);
wasm_values_tuple!(A 0, B 1, C 2, D 3);
wasm_values_tuple!(A 0, B 1, C 2, D 3, E 4);
wasm_values_tuple!(A 0, B 1, C 2, D 3, E 4, F 5);
wasm_values_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
wasm_values_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
wasm_values_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
wasm_values_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);

/// What a host function may return: values, or `Result<values, Error>`.
/// An `Err` ends the guest's run and comes back from the call unchanged.
pub trait HostReturn: Send + 'static {
    type Values: WasmValues;
    #[doc(hidden)]
    fn into_values(self) -> Result<Self::Values, Error>;
}

impl<R: WasmValues> HostReturn for R {
    type Values = R;
    #[inline]
    fn into_values(self) -> Result<R, Error> {
        Ok(self)
    }
}

impl<R: WasmValues> HostReturn for Result<R, Error> {
    type Values = R;
    #[inline]
    fn into_values(self) -> Result<R, Error> {
        self
    }
}

/// Describes a list of types as `(t1 t2 ...)` for error messages.
pub(crate) fn type_list(types: &[ValType]) -> String {
    let names: Vec<String> = types.iter().map(|t| t.to_string()).collect();
    format!("({})", names.join(" "))
}
