//! Host functions: `IntoFunc` turns Rust closures into them, `HostFunc<T>`
//! is their context (what a `VMFuncRef` of a host import points to), and
//! two `extern "C-unwind"` ways in from compiled code:
//!
//! - a typed closure's **native entry** (`HostBody::native_entry`), with the
//!   import's own System V signature, which compiled code calls directly;
//! - `array_call`, which the module's compiled host adapter calls with the
//!   arguments in slots (dynamic host functions, V128, several results).
//!
//! Both build the `Caller`, run the closure on the guest stack inside the
//! hostcall bookkeeping (`run_host_call`), and hand the results back.
//! `Caller` is the closure's view of its store and calling instance, and
//! its `call` enters typed exports natively too.
//!
//! A `HostFunc<T>` (what a `Linker<T>` holds) is shared by every store that
//! imports it; each store gets a `VMHostContext<T>` of its own for it, the
//! context compiled code calls with and writes its scratch words into.
//!
//! A host function that returns `Err(e)` ends the guest's run: the entry
//! starts an unwind carrying `e`, which runs every destructor on the guest
//! stack and comes back from the embedder's call as `e`.

use crate::api::calls;
use crate::api::instance::Instance;
use crate::api::values::{type_list, HostReturn, Val, WasmTy, WasmValues};
use crate::ending::exit::{self, GuestExit};
use crate::ending::kill::KillShared;
use crate::error::{AnyValue, TerminationDetails};
use crate::store::instance::InstanceCore;
use crate::store::vm::Callee;
use crate::store::{
    AsContext, AsContextMut, StoreContext, StoreContextMut, StoreInner, StoreParts,
};
use crate::{Engine, Error, Extern, Func, Memory};
use backstop_jit::vmoffsets::{VMCTX_ACTIVATION, VMCTX_INSTANCE};
use backstop_jit::{FuncType, ValType};
use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A host function's body, over the values buffer of its adapter: reads
/// the arguments from the slots, runs, and stores the results there.
/// Implemented by `TypedHostFn` (the closures of `IntoFunc`) and
/// `DynamicHostFn`.
#[doc(hidden)]
pub trait HostBody<T>: Send + Sync + 'static {
    fn call(&self, caller: Caller<'_, T>, slots: &mut [u128]) -> Result<(), Error>;

    /// An entry point with the function's native (System V) signature,
    /// `(host_ctx, caller_vmctx, params...) -> result`, which compiled code
    /// can call directly instead of through the module's host adapter and
    /// `array_call`: one frame and a spill of the arguments fewer per
    /// hostcall. `None` when the signature has no plain Rust equivalent
    /// (two or more results, or a V128).
    fn native_entry() -> Option<usize>
    where
        Self: Sized,
    {
        None
    }
}

/// A Rust closure with a typed signature (`Params` are its argument types,
/// with or without a leading `Caller`, and `R` its return type). Its
/// `HostBody::call` is always inlined into `array_call`, so a hostcall puts
/// a single Rust frame on the guest stack: fewer frames for every unwind
/// to walk.
#[doc(hidden)]
pub struct TypedHostFn<F, Params, R> {
    f: F,
    signature: PhantomData<fn(Params) -> R>,
}

/// A host function with a signature known only at run time.
struct DynamicHostFn<F>(F);

impl<T: 'static, F> HostBody<T> for DynamicHostFn<F>
where
    F: Fn(Caller<'_, T>, &mut [u128]) -> Result<(), Error> + Send + Sync + 'static,
{
    fn call(&self, caller: Caller<'_, T>, slots: &mut [u128]) -> Result<(), Error> {
        (self.0)(caller, slots)
    }
}

/// A host function, as a linker holds it: shared by every store that
/// imports it, never written.
#[doc(hidden)]
pub struct HostFunc<T> {
    /// `array_call::<T, B>`, called by the host adapter.
    array_call: usize,
    /// See `HostBody::native_entry`.
    pub(crate) native_entry: Option<usize>,
    pub(crate) ty: FuncType,
    pub(crate) type_id: u32,
    body: Box<dyn HostBody<T>>,
}

impl<T: 'static> HostFunc<T> {
    /// A host function running `body`. The adapter's entry point is
    /// monomorphised for the body's type, so a hostcall calls it directly
    /// (no indirect call, no extra frame); the box only owns it.
    pub(crate) fn new<B: HostBody<T>>(engine: &Engine, ty: FuncType, body: B) -> Self {
        HostFunc {
            array_call: array_call::<T, B> as *const () as usize,
            native_entry: B::native_entry(),
            type_id: engine.type_id(&ty),
            ty,
            body: Box::new(body),
        }
    }
}

/// A host function's context in one store: what its `VMFuncRef.vmctx`
/// points to. `#[repr(C)]` because compiled code reaches its first words
/// (see `vmoffsets`).
#[repr(C)]
pub(crate) struct VMHostContext<T> {
    /// Where callers store the propagated vmctx words before a call (as for
    /// any callee vmctx); written by compiled code, never read.
    _scratch: [UnsafeCell<usize>; 5],
    /// `array_call::<T, B>`, called by the host adapter.
    array_call: usize,
    /// The body's data (a `B`), for the entries, which know `B`.
    body: *const (),
    func: Arc<HostFunc<T>>,
}

const _: () = assert!(
    std::mem::offset_of!(VMHostContext<()>, array_call)
        == backstop_jit::vmoffsets::HOST_CTX_ARRAY_CALL as usize
);

impl<T: 'static> VMHostContext<T> {
    fn new(func: &Arc<HostFunc<T>>) -> Self {
        VMHostContext {
            _scratch: std::array::from_fn(|_| UnsafeCell::new(0)),
            array_call: func.array_call,
            body: &*func.body as *const dyn HostBody<T> as *const (),
            func: func.clone(),
        }
    }
}

/// The context of `func` in the store `parts`, made on first use; its
/// address is stable for the store's life.
pub(crate) fn host_context<T: 'static>(parts: &mut StoreParts, func: &Arc<HostFunc<T>>) -> usize {
    let key = Arc::as_ptr(func) as usize;
    let context = parts
        .host_contexts
        .entry(key)
        .or_insert_with(|| Box::new(VMHostContext::new(func)));
    let context: &VMHostContext<T> = context
        .downcast_ref()
        .expect("a host function's context has its linker's data type");
    debug_assert!(Arc::ptr_eq(&context.func, func));
    context as *const VMHostContext<T> as usize
}

/// The entry every host adapter calls: `(host_ctx, caller_vmctx, values, count)`.
unsafe extern "C-unwind" fn array_call<T: 'static, B: HostBody<T>>(
    host: *const VMHostContext<T>,
    caller_vmctx: *mut u8,
    values: *mut u128,
    count: u32,
) {
    // SAFETY: the adapter passes the context this function was made for
    // (owned by the importing store) and a buffer of `count` slots on its
    // own frame; `HostFunc::new` stored a `Box<B>` (as a `Box<dyn ..>`)
    // and chose this `array_call::<T, B>` for it, so the body is a `B`.
    let (body, slots) = unsafe {
        (
            &*((*host).body as *const B),
            std::slice::from_raw_parts_mut(values, count as usize),
        )
    };
    // SAFETY: forwarded from the adapter's contract.
    unsafe { run_host_call::<T, ()>(caller_vmctx, |caller| body.call(caller, slots)) }
}

/// Runs a host function's body on the guest stack, inside the bookkeeping
/// every hostcall does: the host-reserve check, the in-hostcall marks of the
/// kill state, and on the way back the end of the run if the body returned
/// `Err`, swallowed an unwind, or a kill switch fired meanwhile.
///
/// # Safety
/// `caller_vmctx` must be the calling instance's vmctx, whose activation is
/// its running `StoreInner<T>` (host functions of a `Linker<T>` are only
/// reachable from stores of type `T`), and this must run on its guest
/// stack, called from compiled code.
#[inline(always)]
unsafe fn run_host_call<T: 'static, V>(
    caller_vmctx: *mut u8,
    body: impl FnOnce(Caller<'_, T>) -> Result<V, Error>,
) -> V {
    // SAFETY: per the contract, the vmctx's activation and instance words
    // point to the running root and the calling instance.
    let (caller, kill, host_floor) = unsafe {
        let activation =
            *(caller_vmctx.add(VMCTX_ACTIVATION as usize) as *const *mut StoreInner<T>);
        let core = *(caller_vmctx.add(VMCTX_INSTANCE as usize) as *const *const InstanceCore);
        // The kill state is shared (an Arc), so this reference does not
        // alias the store the Caller reaches.
        let kill: &KillShared = &*Arc::as_ptr(&(*activation).run.kill);
        let caller = Caller {
            store: activation,
            core,
            _borrow: PhantomData,
        };
        (caller, kill, (*activation).run.host_floor)
    };
    // Host code runs in the reserve below the Wasm stack limit. Guest code
    // can only call in from above the limit, but host functions re-entered
    // without a guest frame in between (`Caller::call` of an export that is
    // itself a host import) could eat the reserve: refuse before any host
    // code runs once less than half of it is left.
    let stack_marker = 0u8;
    if (&stack_marker as *const u8 as usize) < host_floor {
        exit::raise(GuestExit::Trap(crate::Trap::new(
            crate::TrapCode::StackOverflow,
        )));
    }
    let outer_in_host = kill.in_host.load(Ordering::Relaxed);
    kill.in_host.store(1, Ordering::Relaxed);
    let outer_host_frames = kill.host_frames.load(Ordering::Relaxed);
    kill.host_frames
        .store(outer_host_frames + 1, Ordering::Relaxed);
    let result = body(caller);
    kill.host_frames.store(outer_host_frames, Ordering::Relaxed);
    kill.in_host.store(outer_in_host, Ordering::Relaxed);
    let value = match result {
        Ok(value) => value,
        Err(error) => exit::raise(GuestExit::HostError(error)),
    };
    // The closure may have caught and swallowed the unwind of an end of the
    // run; it must not return into the guest as if nothing happened.
    exit::reraise_if_pending();
    // A kill requested while the host function ran takes effect now.
    if kill.is_requested() {
        exit::raise(GuestExit::Killed);
    }
    value
}

/// A host function's view of its store and of the instance whose code
/// called it. Lends the store (`AsContext`, `AsContextMut`) to handles and
/// to calls, which from here are nested calls on the same guest stack.
pub struct Caller<'a, T: 'static> {
    /// The running store (the vmctx's activation). Reached only through
    /// `store`/`store_mut`, whose borrows of `self` keep any two apart.
    store: *mut StoreInner<T>,
    /// The instance whose code made this call.
    core: *const InstanceCore,
    _borrow: PhantomData<&'a mut StoreInner<T>>,
}

impl<T: 'static> Caller<'_, T> {
    pub(crate) fn store(&self) -> &StoreInner<T> {
        // SAFETY: the store runs this host function and outlives it; the
        // root call that runs it does not touch the store until the guest
        // is off its stack, and `&self` keeps `store_mut` borrows apart.
        unsafe { &*self.store }
    }

    pub(crate) fn store_mut(&mut self) -> &mut StoreInner<T> {
        // SAFETY: as for `store`; `&mut self` makes this borrow unique.
        unsafe { &mut *self.store }
    }

    fn core(&self) -> &InstanceCore {
        // SAFETY: the store owns the calling instance and outlives the call.
        unsafe { &*self.core }
    }

    /// The embedder's data of the store.
    pub fn data(&self) -> &T {
        &self.store().data
    }

    pub fn data_mut(&mut self) -> &mut T {
        &mut self.store_mut().data
    }

    pub fn engine(&self) -> &Engine {
        &self.store().parts.engine
    }

    /// The instance whose code called this host function.
    pub fn instance(&self) -> Instance {
        Instance {
            store: self.store().parts.id,
            index: self.core().index,
        }
    }

    /// Ends the guest's run: every frame on the guest stack (Wasm and host,
    /// at every nesting depth) unwinds, running its destructors, and the
    /// embedder's call returns `Error::Terminated` carrying `details`.
    ///
    /// The unwind is a Rust unwind started with `resume_unwind`: no panic
    /// hook runs. A host function that catches it with `catch_unwind` must
    /// rethrow it (`resume_unwind(payload)`); if it swallows it instead, the
    /// run still ends as soon as that function returns to the guest.
    /// A `std::sync::Mutex` held by a host frame while the unwind passes is
    /// poisoned (as by any unwind); use `parking_lot` locks or
    /// `PoisonError::into_inner` where that matters.
    #[inline(never)]
    pub fn terminate(&mut self, details: impl std::any::Any + Send) -> ! {
        exit::raise(GuestExit::Terminated(TerminationDetails::new(Box::new(
            details,
        ))))
    }

    /// Whether the run is being ended: a kill switch fired while this host
    /// function runs (the run stops when it returns to Wasm), or an unwind
    /// that ends the run is in progress.
    pub fn is_termination_pending(&self) -> bool {
        self.store().run.kill.is_requested() || exit::is_pending()
    }

    /// Waits until `fd` is ready for what is asked, `timeout` (if any)
    /// passes, or a kill switch fires for this run, whichever comes first.
    /// A host function that would block on a descriptor waits here first,
    /// so that a kill (a timeout) cuts the wait short: on
    /// `Waited::Killed` it should return at once, and the run then ends
    /// with `Error::Killed`. (WASI's `fd_read`, `fd_write` and
    /// `poll_oneoff` wait this way.)
    pub fn wait_for_fd(
        &self,
        fd: std::os::fd::BorrowedFd<'_>,
        what: crate::WaitFor,
        timeout: Option<std::time::Duration>,
    ) -> crate::Waited {
        self.store().run.kill.wait(Some((fd, what)), timeout)
    }

    /// Sleeps for `duration`, or until a kill switch fires for this run
    /// (`Waited::Killed`; otherwise `Waited::TimedOut`).
    pub fn sleep(&self, duration: std::time::Duration) -> crate::Waited {
        self.store().run.kill.wait(None, Some(duration))
    }

    /// A descriptor that becomes readable when a kill switch fires for
    /// this run, for host functions with an event loop of their own: poll
    /// it beside their own descriptors, then check
    /// `is_termination_pending` (a wakeup may be left over from a kill of
    /// an earlier run). Do not read it; `None` if the kernel gave no
    /// eventfd.
    pub fn kill_wakeup_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.store().run.kill.wakeup_fd()
    }

    /// A handle on this run's kill state that does not borrow the caller,
    /// for host functions that wait while they hold the store's data
    /// mutably (WASI's `fd_read`, `fd_write` and `poll_oneoff` do).
    pub fn kill_waiter(&self) -> crate::KillWaiter {
        crate::KillWaiter::new(self.store().run.kill.clone())
    }

    /// Suspends the guest: the embedder's call returns
    /// `Outcome::Yielded(value)` (or `Error::Yielded` from a plain `call`),
    /// with every frame on the guest stack kept as it is. When the embedder
    /// calls `Store::resume(v)` this returns `v`, which must be an `R`. If
    /// the store is dropped or reset instead, or a kill switch fired, this
    /// does not return: the run ends and the guest stack unwinds, running
    /// every destructor.
    ///
    /// The run stays on this thread: the store may move to another thread
    /// meanwhile, but `resume` and `reset` work only here, because the host
    /// frames on the stack may hold values tied to this thread (a
    /// `MutexGuard`, an `Rc` shared with a thread-local) that the type
    /// system cannot see. A store dropped on another thread abandons the
    /// suspended frames without running their destructors.
    pub fn suspend<R: std::any::Any + Send>(&mut self, value: impl std::any::Any + Send) -> R {
        exit::reraise_if_pending();
        // SAFETY: we are inside a host function of the store's run, on its
        // fiber.
        unsafe { calls::suspend_current::<T, R>(self.store, AnyValue::new(Box::new(value)), true) }
    }

    /// `suspend`, but the run may be resumed (or reset, or dropped) on any
    /// thread.
    ///
    /// # Safety
    /// Nothing tied to the current thread may live in any frame on the
    /// guest stack across this call: every host function with a frame on
    /// it (this one, and those below it that made nested calls) holds only
    /// values that are `Send`, and no reference into a thread-local.
    pub unsafe fn suspend_unpinned<R: std::any::Any + Send>(
        &mut self,
        value: impl std::any::Any + Send,
    ) -> R {
        exit::reraise_if_pending();
        // SAFETY: as for `suspend`; the thread rule is the caller's promise.
        unsafe { calls::suspend_current::<T, R>(self.store, AnyValue::new(Box::new(value)), false) }
    }

    /// The Wasm functions on the guest stack right now, innermost first,
    /// with marked host frames (this one first) between guest segments.
    pub fn backtrace(&self) -> crate::WasmBacktrace {
        crate::debug::backtrace::WasmBacktrace::capture(true)
    }

    /// The calling instance's export named `name`.
    pub fn get_export(&self, name: &str) -> Option<Extern> {
        self.core().export_extern(self.store().parts.id, name)
    }

    /// The calling instance's exported memory named `name`.
    pub fn get_memory(&self, name: &str) -> Option<Memory> {
        match self.get_export(name)? {
            Extern::Memory(memory) => Some(memory),
            _ => None,
        }
    }

    /// The calling instance's exported function named `name`.
    pub fn get_func(&self, name: &str) -> Option<Func> {
        match self.get_export(name)? {
            Extern::Func(func) => Some(func),
            _ => None,
        }
    }

    /// The bytes of the calling instance's exported memory named `name`
    /// (usually "memory").
    pub fn memory_mut(&mut self, name: &str) -> Option<&mut [u8]> {
        let memory = self.get_memory(name)?;
        Some(memory.data_mut(self))
    }

    /// The store's data and the bytes of the calling instance's exported
    /// memory `name`, both at once (e.g. to copy guest memory into state
    /// without an intermediate buffer).
    pub fn data_and_memory_mut(&mut self, name: &str) -> Option<(&mut T, &mut [u8])> {
        let memory = self.get_memory(name)?;
        let (bytes, data) = memory.data_and_store_mut(self);
        Some((data, bytes))
    }

    /// Calls an export of the calling instance, as a nested guest segment on
    /// the same guest stack. Traps and errors inside it end the whole run.
    pub fn call<P: WasmValues, R: WasmValues>(
        &mut self,
        name: &str,
        params: P,
    ) -> Result<R, Error> {
        let callee = self.core().export_entry::<P, R>(name)?;
        Ok(call_nested_typed::<P, R>(self.store_mut(), callee, params))
    }

    /// Calls an export of the calling instance with dynamically typed values.
    pub fn call_dynamic(&mut self, name: &str, args: &[Val]) -> Result<Vec<Val>, Error> {
        let core = self.core();
        let index = core.export_func_index(name)?;
        let ty = core.module.info().func_type(index).clone();
        let callee = core.callee(index);
        calls::call_dynamic(self.store_mut(), callee, &ty, args)
    }
}

/// Runs `callee`, of type `P -> R` (checked by the caller), as a nested
/// guest segment: from inside a host function of `store`'s run, on its
/// guest stack.
pub(crate) fn call_nested_typed<P: WasmValues, R: WasmValues>(
    store: &mut StoreInner<impl Sized + 'static>,
    callee: Callee,
    params: P,
) -> R {
    if P::HAS_NATIVE_PARAMS && R::HAS_NATIVE_RESULT {
        // Straight into the callee with its native signature: no entry
        // trampoline, so one frame fewer on the guest stack.
        // SAFETY: see `nested_segment`; the caller checked that the
        // function's type is `P -> R`, which have native types.
        return nested_segment(store, || unsafe {
            calls::invoke_native_in_activation::<P, R>(callee.raw, callee.owner_vmctx, params)
        });
    }
    let mut slots = [0u128; 16];
    let mut heap;
    let slots: &mut [u128] = if P::TYPES.len().max(R::TYPES.len()) <= slots.len() {
        &mut slots
    } else {
        heap = vec![0u128; P::TYPES.len().max(R::TYPES.len())];
        &mut heap
    };
    params.store(slots);
    call_nested_slots(store, callee, slots);
    R::load(slots)
}

/// Runs `callee` as a nested guest segment with the arguments in `slots`
/// (which then hold the results; they have room for both).
pub(crate) fn call_nested_slots<T: 'static>(
    store: &mut StoreInner<T>,
    callee: Callee,
    slots: &mut [u128],
) {
    // SAFETY: see `nested_segment`; `callee.trampoline` is the entry of
    // the type of `callee.raw`, and the slots have room for its arguments
    // and results.
    nested_segment(store, || unsafe {
        calls::invoke_in_activation(
            callee.raw,
            callee.trampoline,
            callee.owner_vmctx,
            slots.as_mut_ptr(),
        )
    })
}

/// Runs `enter` (which calls into the guest) as a nested guest segment.
/// Only a host function of the store's run reaches a store that is
/// `Running`, so `enter` runs on the store's guest stack, inside a host
/// function; the `VMFuncRef` it calls belongs to the store, so it is live,
/// and every vmctx of the store holds the run's words.
#[inline(always)]
fn nested_segment<T: 'static, V>(store: &mut StoreInner<T>, enter: impl FnOnce() -> V) -> V {
    // If this host function swallowed the unwind that ends the run, the
    // guest must not run again: end it now.
    exit::reraise_if_pending();
    // While the nested segment runs, the guest is in Wasm, not in a
    // hostcall (that is what a kill switch reports). A kill that found it
    // in this hostcall did not make compiled code look: see it now.
    let kill = store.run.kill.clone();
    let outer_in_host = kill.in_host.swap(0, Ordering::Relaxed);
    if kill.is_requested() {
        kill.in_host.store(outer_in_host, Ordering::Relaxed);
        exit::raise(GuestExit::Killed);
    }
    let results = enter();
    kill.in_host.store(outer_in_host, Ordering::Relaxed);
    results
}

/// A Rust closure usable as a host function. Implemented for
/// `Fn(A1, ..., An) -> R` and `Fn(Caller<'_, T>, A1, ..., An) -> R` where
/// every `Ai` is a `WasmTy` and `R` is a `HostReturn`.
pub trait IntoFunc<T, Params, Results>: Send + Sync + 'static {
    #[doc(hidden)]
    fn into_host_func(self, engine: &Engine) -> HostFunc<T>;
}

macro_rules! into_func {
    ($($p:ident $i:tt $a:ident),*) => {
        impl<T: 'static, F, R, $($p: WasmTy,)*> HostBody<T> for TypedHostFn<F, ($($p,)*), R>
        where
            F: Fn($($p),*) -> R + Send + Sync + 'static,
            R: HostReturn + 'static,
        {
            #[inline(always)]
            #[allow(unused_variables)]
            fn call(&self, _caller: Caller<'_, T>, slots: &mut [u128]) -> Result<(), Error> {
                let values = (self.f)($($p::from_raw(slots[$i])),*).into_values()?;
                values.store(slots);
                Ok(())
            }

            fn native_entry() -> Option<usize> {
                /// The native entry (see `HostBody::native_entry`).
                #[allow(clippy::too_many_arguments)]
                unsafe extern "C-unwind" fn entry<T: 'static, F, R, $($p: WasmTy,)*>(
                    host: *const VMHostContext<T>,
                    caller_vmctx: *mut u8,
                    $($a: $p::Native,)*
                ) -> <R::Values as WasmValues>::NativeResult
                where
                    F: Fn($($p),*) -> R + Send + Sync + 'static,
                    R: HostReturn + 'static,
                {
                    // SAFETY: compiled code calls this, as the import's
                    // `native_call`, with the context it was made for (whose
                    // body is this `TypedHostFn`) and the caller's vmctx;
                    // its signature is the import's native signature, which
                    // the linker checked equals the closure's.
                    unsafe {
                        let body = &*((*host).body as *const TypedHostFn<F, ($($p,)*), R>);
                        run_host_call::<T, _>(caller_vmctx, |_caller| {
                            Ok((body.f)($($p::from_native($a)),*)
                                .into_values()?
                                .into_native_result())
                        })
                    }
                }
                let exact = true $(&& $p::HAS_NATIVE)* && R::Values::HAS_NATIVE_RESULT;
                exact.then_some(entry::<T, F, R, $($p,)*> as *const () as usize)
            }
        }

        impl<T: 'static, F, R, $($p: WasmTy,)*> IntoFunc<T, ($($p,)*), R> for F
        where
            F: Fn($($p),*) -> R + Send + Sync + 'static,
            R: HostReturn + 'static,
        {
            fn into_host_func(self, engine: &Engine) -> HostFunc<T> {
                let ty = FuncType::new([$($p::TYPE),*], R::Values::TYPES.iter().copied());
                let body: TypedHostFn<F, ($($p,)*), R> =
                    TypedHostFn { f: self, signature: PhantomData };
                HostFunc::new(engine, ty, body)
            }
        }

        impl<T: 'static, F, R, $($p: WasmTy,)*> HostBody<T>
            for TypedHostFn<F, (Caller<'static, T>, $($p,)*), R>
        where
            F: for<'a> Fn(Caller<'a, T>, $($p),*) -> R + Send + Sync + 'static,
            R: HostReturn + 'static,
        {
            #[inline(always)]
            #[allow(unused_variables)]
            fn call(&self, caller: Caller<'_, T>, slots: &mut [u128]) -> Result<(), Error> {
                let values = (self.f)(caller, $($p::from_raw(slots[$i])),*).into_values()?;
                values.store(slots);
                Ok(())
            }

            fn native_entry() -> Option<usize> {
                /// The native entry (see `HostBody::native_entry`).
                #[allow(clippy::too_many_arguments)]
                unsafe extern "C-unwind" fn entry<T: 'static, F, R, $($p: WasmTy,)*>(
                    host: *const VMHostContext<T>,
                    caller_vmctx: *mut u8,
                    $($a: $p::Native,)*
                ) -> <R::Values as WasmValues>::NativeResult
                where
                    F: for<'a> Fn(Caller<'a, T>, $($p),*) -> R + Send + Sync + 'static,
                    R: HostReturn + 'static,
                {
                    // SAFETY: as for the entry without a Caller above.
                    unsafe {
                        let body = &*((*host).body
                            as *const TypedHostFn<F, (Caller<'static, T>, $($p,)*), R>);
                        run_host_call::<T, _>(caller_vmctx, |caller| {
                            Ok((body.f)(caller, $($p::from_native($a)),*)
                                .into_values()?
                                .into_native_result())
                        })
                    }
                }
                let exact = true $(&& $p::HAS_NATIVE)* && R::Values::HAS_NATIVE_RESULT;
                exact.then_some(entry::<T, F, R, $($p,)*> as *const () as usize)
            }
        }

        impl<T: 'static, F, R, $($p: WasmTy,)*> IntoFunc<T, (Caller<'static, T>, $($p,)*), R> for F
        where
            F: for<'a> Fn(Caller<'a, T>, $($p),*) -> R + Send + Sync + 'static,
            R: HostReturn + 'static,
        {
            fn into_host_func(self, engine: &Engine) -> HostFunc<T> {
                let ty = FuncType::new([$($p::TYPE),*], R::Values::TYPES.iter().copied());
                let body: TypedHostFn<F, (Caller<'static, T>, $($p,)*), R> =
                    TypedHostFn { f: self, signature: PhantomData };
                HostFunc::new(engine, ty, body)
            }
        }
    };
}
into_func!();
into_func!(A 0 a);
into_func!(A 0 a, B 1 b);
into_func!(A 0 a, B 1 b, C 2 c);
into_func!(A 0 a, B 1 b, C 2 c, D 3 d);
into_func!(A 0 a, B 1 b, C 2 c, D 3 d, E 4 e);
into_func!(A 0 a, B 1 b, C 2 c, D 3 d, E 4 e, F5 5 f5);
into_func!(A 0 a, B 1 b, C 2 c, D 3 d, E 4 e, F5 5 f5, G 6 g);
into_func!(A 0 a, B 1 b, C 2 c, D 3 d, E 4 e, F5 5 f5, G 6 g, H 7 h);

/// A host function with a signature known only at run time.
pub(crate) fn dynamic_host_func<T: 'static>(
    engine: &Engine,
    ty: FuncType,
    f: impl Fn(Caller<'_, T>, &[Val], &mut [Val]) -> Result<(), Error> + Send + Sync + 'static,
) -> HostFunc<T> {
    let params: Vec<ValType> = ty.params().to_vec();
    let results: Vec<ValType> = ty.results().to_vec();
    let closure = move |caller: Caller<'_, T>, slots: &mut [u128]| {
        let store = caller.store().parts.id;
        // SAFETY: the adapter stored arguments of the declared types, from
        // guest code of the caller's store.
        let args: Vec<Val> = params
            .iter()
            .enumerate()
            .map(|(i, t)| unsafe { Val::from_raw(slots[i], *t, store) })
            .collect();
        let mut outs: Vec<Val> = results.iter().map(|t| Val::default_for(*t)).collect();
        f(caller, &args, &mut outs)?;
        for (i, (v, t)) in outs.iter().zip(&results).enumerate() {
            if v.ty() != *t {
                return Err(Error::InvalidArgument(format!(
                    "host function result {i} has type {}, expected {} (results {})",
                    v.ty(),
                    t,
                    type_list(&results)
                )));
            }
            slots[i] = v.to_raw_for(store)?;
        }
        Ok(())
    };
    HostFunc::new(engine, ty, DynamicHostFn(closure))
}

// A Caller is a view of its store, usable wherever a store is.

impl<T: 'static> AsContext for Caller<'_, T> {
    type Data = T;
    fn as_context(&self) -> StoreContext<'_, T> {
        StoreContext(self.store())
    }
}

impl<T: 'static> AsContextMut for Caller<'_, T> {
    fn as_context_mut(&mut self) -> StoreContextMut<'_, T> {
        StoreContextMut(self.store_mut())
    }
}

impl<'a, T: 'static> From<&'a Caller<'_, T>> for StoreContext<'a, T> {
    fn from(caller: &'a Caller<'_, T>) -> Self {
        StoreContext(caller.store())
    }
}

impl<'a, T: 'static> From<&'a mut Caller<'_, T>> for StoreContext<'a, T> {
    fn from(caller: &'a mut Caller<'_, T>) -> Self {
        StoreContext(caller.store())
    }
}

impl<'a, T: 'static> From<&'a mut Caller<'_, T>> for StoreContextMut<'a, T> {
    fn from(caller: &'a mut Caller<'_, T>) -> Self {
        StoreContextMut(caller.store_mut())
    }
}
