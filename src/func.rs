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
//! `Caller` is the closure's view of the running instance, and its `call`
//! enters typed exports natively too.
//!
//! A host function that returns `Err(e)` ends the guest's run: the entry
//! starts an unwind carrying `e`, which runs every destructor on the guest
//! stack and comes back from the embedder's call as `e`.

use crate::exit::{self, AnyValue, GuestExit, TerminationDetails};
use crate::instance::{InstanceCore, InstanceInner};
use crate::kill::KillShared;
use crate::values::{type_list, HostReturn, Val, WasmTy, WasmValues};
use crate::{Engine, Error, Func, Memory};
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

/// A host function's context. `#[repr(C)]` because compiled code reaches
/// its first three words (see `vmoffsets`).
#[repr(C)]
#[doc(hidden)]
pub struct HostFunc<T> {
    /// Where callers store the propagated vmctx words before a call (as for
    /// any callee vmctx); written by compiled code, never read.
    _scratch: [UnsafeCell<usize>; 5],
    /// `array_call::<T>`, called by the host adapter.
    array_call: usize,
    /// See `HostBody::native_entry`.
    pub(crate) native_entry: Option<usize>,
    pub(crate) ty: FuncType,
    pub(crate) type_id: u32,
    body: Box<dyn HostBody<T>>,
}

// SAFETY: the scratch words are only ever written (by compiled code), never
// read; everything else is immutable and the closure is Send + Sync.
unsafe impl<T> Send for HostFunc<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for HostFunc<T> {}

impl<T: 'static> HostFunc<T> {
    /// A host function running `body`. The adapter's entry point is
    /// monomorphised for the body's type, so a hostcall calls it directly
    /// (no indirect call, no extra frame); the box only owns it.
    pub(crate) fn new<B: HostBody<T>>(engine: &Engine, ty: FuncType, body: B) -> Self {
        HostFunc {
            _scratch: std::array::from_fn(|_| UnsafeCell::new(0)),
            array_call: array_call::<T, B> as *const () as usize,
            native_entry: B::native_entry(),
            type_id: engine.type_id(&ty),
            ty,
            body: Box::new(body),
        }
    }
}

const _: () = assert!(
    std::mem::offset_of!(HostFunc<()>, array_call)
        == backstop_jit::vmoffsets::HOST_CTX_ARRAY_CALL as usize
);

/// The entry every host adapter calls: `(host_ctx, caller_vmctx, values, count)`.
unsafe extern "C-unwind" fn array_call<T: 'static, B: HostBody<T>>(
    host: *const HostFunc<T>,
    caller_vmctx: *mut u8,
    values: *mut u128,
    count: u32,
) {
    // SAFETY: the adapter passes the HostFunc this function was created
    // with (kept alive by the importing instance) and a buffer of `count`
    // slots on its own frame; `HostFunc::new` stored a `Box<B>` (as a
    // `Box<dyn ..>`) and chose this `array_call::<T, B>` for it, so the
    // box's data is a `B`.
    let (body, slots) = unsafe {
        (
            &*(&*(*host).body as *const dyn HostBody<T> as *const B),
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
/// the running root `Instance<T>` (host functions of a `Linker<T>` are only
/// reachable from instances of type `T`), and this must run on its guest
/// stack, called from compiled code.
#[inline(always)]
unsafe fn run_host_call<T: 'static, V>(
    caller_vmctx: *mut u8,
    body: impl FnOnce(Caller<'_, T>) -> Result<V, Error>,
) -> V {
    // SAFETY: per the contract, the vmctx's activation and instance words
    // point to the running root and the calling instance.
    let (caller, kill) = unsafe {
        let activation =
            *(caller_vmctx.add(VMCTX_ACTIVATION as usize) as *const *mut InstanceInner<T>);
        let core = *(caller_vmctx.add(VMCTX_INSTANCE as usize) as *const *const InstanceCore);
        // The kill state is shared (an Arc), so this reference does not
        // alias the `&mut` the Caller holds.
        let kill: &KillShared = &*Arc::as_ptr(&(*activation).kill);
        let caller = Caller {
            inner: &mut *activation,
            core: &*core,
        };
        (caller, kill)
    };
    // Host code runs in the reserve below the Wasm stack limit. Guest code
    // can only call in from above the limit, but host functions re-entered
    // without a guest frame in between (`Caller::call` of an export that is
    // itself a host import) could eat the reserve: refuse before any host
    // code runs once less than half of it is left.
    let stack_marker = 0u8;
    if (&stack_marker as *const u8 as usize) < caller.inner.host_floor {
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

/// The calling instance, as a host function sees it.
pub struct Caller<'a, T> {
    pub(crate) inner: &'a mut InstanceInner<T>,
    /// The instance whose code made this call.
    pub(crate) core: &'a InstanceCore,
}

impl<T: 'static> Caller<'_, T> {
    /// The embedder's data of the running instance.
    pub fn data(&self) -> &T {
        &self.inner.data
    }

    pub fn data_mut(&mut self) -> &mut T {
        &mut self.inner.data
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
        self.inner.kill.is_requested() || exit::is_pending()
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
        self.inner.kill.wait(Some((fd, what)), timeout)
    }

    /// Sleeps for `duration`, or until a kill switch fires for this run
    /// (`Waited::Killed`; otherwise `Waited::TimedOut`).
    pub fn sleep(&self, duration: std::time::Duration) -> crate::Waited {
        self.inner.kill.wait(None, Some(duration))
    }

    /// A descriptor that becomes readable when a kill switch fires for
    /// this run, for host functions with an event loop of their own: poll
    /// it beside their own descriptors, then check
    /// `is_termination_pending` (a wakeup may be left over from a kill of
    /// an earlier run). Do not read it; `None` if the kernel gave no
    /// eventfd.
    pub fn kill_wakeup_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.inner.kill.wakeup_fd()
    }

    /// The run's kill state, for WASI's waits (which hold it while they
    /// borrow the instance's data mutably).
    pub(crate) fn kill_state(&self) -> Arc<KillShared> {
        self.inner.kill.clone()
    }

    /// Suspends the guest: the embedder's call returns
    /// `Outcome::Yielded(value)` (or `Error::Yielded` from a plain `call`),
    /// with every frame on the guest stack kept as it is. When the embedder
    /// calls `Instance::resume(v)`, possibly on another thread, this returns
    /// `v`, which must be an `R`. If the instance is dropped or reset
    /// instead, or a kill switch fired, this does not return: the run ends
    /// and the guest stack unwinds, running every destructor.
    ///
    /// Nothing tied to the current thread (a `MutexGuard`, an `Rc`) may be
    /// held across this call if the instance may be resumed elsewhere.
    pub fn suspend<R: std::any::Any + Send>(&mut self, value: impl std::any::Any + Send) -> R {
        exit::reraise_if_pending();
        let inner: *mut InstanceInner<T> = &mut *self.inner;
        // SAFETY: we are inside a host function of the root call whose
        // activation is `inner`, on its fiber.
        unsafe { crate::instance::suspend_current::<T, R>(inner, AnyValue::new(Box::new(value))) }
    }

    /// The Wasm functions on the guest stack right now, innermost first,
    /// with marked host frames (this one first) between guest segments.
    pub fn backtrace(&self) -> crate::WasmBacktrace {
        crate::backtrace::WasmBacktrace::capture(true)
    }

    /// The calling instance's exported memory named `name`.
    pub fn get_memory(&self, name: &str) -> Option<Memory> {
        self.core.export_memory(name)
    }

    /// The bytes of the calling instance's exported memory named `name`
    /// (usually "memory").
    pub fn memory_mut(&mut self, name: &str) -> Option<&mut [u8]> {
        let memory = self.core.export_memory(name)?;
        // SAFETY: see `Memory::data_mut`; `&mut self` keeps guest code of
        // this call from running while the slice lives.
        Some(unsafe { &mut *(memory.data_mut() as *mut [u8]) })
    }

    /// The embedder's data and the bytes of the calling instance's exported
    /// memory `name`, both at once (e.g. to copy guest memory into state
    /// without an intermediate buffer).
    pub fn data_and_memory_mut(&mut self, name: &str) -> Option<(&mut T, &mut [u8])> {
        let memory = self.core.export_memory(name)?;
        // SAFETY: see `Memory::data_mut`; the memory is not part of `T`, so
        // the two borrows do not overlap, and `&mut self` keeps guest code
        // of this call from running while they live.
        let bytes = unsafe { &mut *(memory.data_mut() as *mut [u8]) };
        Some((&mut self.inner.data, bytes))
    }

    /// The calling instance's exported function named `name`.
    pub fn get_func(&self, name: &str) -> Option<Func> {
        self.core.export_func(name)
    }

    /// Calls an export of the calling instance, as a nested guest segment on
    /// the same guest stack. Traps and errors inside it end the whole run.
    pub fn call<P: WasmValues, R: WasmValues>(
        &mut self,
        name: &str,
        params: P,
    ) -> Result<R, Error> {
        let (raw, trampoline) = self.core.export_entry::<P, R>(name)?;
        if P::HAS_NATIVE_PARAMS && R::HAS_NATIVE_RESULT {
            // Straight into the callee with its native signature: no entry
            // trampoline, so one frame fewer on the guest stack.
            // SAFETY: see `nested_segment`; `export_entry` checked that the
            // function's type is `P -> R`, which have native types.
            return Ok(self
                .nested_segment(|core| unsafe { core.invoke_nested_native::<P, R>(raw, params) }));
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
        self.run_nested(raw, trampoline, slots);
        Ok(R::load(slots))
    }

    /// Runs `func` as a nested guest segment on this guest stack: the
    /// arguments are in `slots`, and so are the results afterwards.
    fn run_nested(
        &mut self,
        raw: *const crate::vm::VMFuncRef,
        trampoline: usize,
        slots: &mut [u128],
    ) {
        // SAFETY: see `nested_segment`; `trampoline` is the entry of the
        // type of `raw`, and the slots have room for its arguments and
        // results.
        self.nested_segment(|core| unsafe {
            core.invoke_nested(raw, trampoline, slots.as_mut_ptr())
        })
    }

    /// Runs `enter` (which calls into the guest) as a nested guest segment.
    /// `enter` runs on the guest stack of the root call, inside a host
    /// function, with the calling instance; any `VMFuncRef` it calls lies in
    /// that instance's vmctx (or in a `Func` our caller holds), so it is
    /// live.
    #[inline(always)]
    fn nested_segment<V>(&mut self, enter: impl FnOnce(&InstanceCore) -> V) -> V {
        // If this host function swallowed the unwind that ends the run, the
        // guest must not run again: end it now.
        exit::reraise_if_pending();
        // While the nested segment runs, the guest is in Wasm, not in a
        // hostcall (that is what a kill switch reports). A kill that found
        // it in this hostcall did not make compiled code look: see it now.
        let outer_in_host = self.inner.kill.in_host.swap(0, Ordering::Relaxed);
        if self.inner.kill.is_requested() {
            self.inner
                .kill
                .in_host
                .store(outer_in_host, Ordering::Relaxed);
            exit::raise(GuestExit::Killed);
        }
        let results = enter(self.core);
        self.inner
            .kill
            .in_host
            .store(outer_in_host, Ordering::Relaxed);
        results
    }

    /// Calls an export of the calling instance with dynamically typed values.
    pub fn call_dynamic(&mut self, name: &str, args: &[Val]) -> Result<Vec<Val>, Error> {
        let func = self
            .core
            .export_func(name)
            .ok_or_else(|| Error::InvalidArgument(format!("no exported function `{name}`")))?;
        let ty = func.ty();
        let mut slots = crate::instance::args_to_slots(&ty, args)?;
        self.run_nested(func.raw, func.trampoline(), &mut slots);
        // SAFETY: the callee stored results of its declared types.
        Ok(unsafe { crate::instance::slots_to_results(&ty, &slots) })
    }
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
                    host: *const HostFunc<T>,
                    caller_vmctx: *mut u8,
                    $($a: $p::Native,)*
                ) -> <R::Values as WasmValues>::NativeResult
                where
                    F: Fn($($p),*) -> R + Send + Sync + 'static,
                    R: HostReturn + 'static,
                {
                    // SAFETY: compiled code calls this, as the import's
                    // `native_call`, with the HostFunc it was made for (whose
                    // box holds this `TypedHostFn`) and the caller's vmctx;
                    // its signature is the import's native signature, which
                    // the linker checked equals the closure's.
                    unsafe {
                        let body = &*(&*(*host).body as *const dyn HostBody<T>
                            as *const TypedHostFn<F, ($($p,)*), R>);
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
                    host: *const HostFunc<T>,
                    caller_vmctx: *mut u8,
                    $($a: $p::Native,)*
                ) -> <R::Values as WasmValues>::NativeResult
                where
                    F: for<'a> Fn(Caller<'a, T>, $($p),*) -> R + Send + Sync + 'static,
                    R: HostReturn + 'static,
                {
                    // SAFETY: as for the entry without a Caller above.
                    unsafe {
                        let body = &*(&*(*host).body as *const dyn HostBody<T>
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
        // SAFETY: the adapter stored arguments of the declared types.
        let args: Vec<Val> = params
            .iter()
            .enumerate()
            .map(|(i, t)| unsafe { Val::from_raw(slots[i], *t) })
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
            slots[i] = v.to_raw();
        }
        Ok(())
    };
    HostFunc::new(engine, ty, DynamicHostFn(closure))
}
