//! The calls that run a store's guest code: root calls, nested calls,
//! suspension and resumption, reset, and the unwind of a suspended run when
//! its store is reset or dropped. They drive the store's `RunState`
//! (`crate::store::run_state`, whose table gives every transition).
//!
//! A **root call** (`Func::call`, `TypedFunc::call`, `Instance::call*`)
//! checks the state and the arguments and starts the store's fiber on its
//! guest stack (`backstop_asm::fiber_start`) inside `catch_unwind`: whatever
//! unwinds out of the guest (a trap, an error a host function returned, a
//! host panic) crosses the switch's CFI into that `catch_unwind`. A call
//! made from inside a host function (through its `Caller`) is a **nested
//! call**: it runs the function directly on the guest stack, with no catch,
//! so an unwind inside it ends the whole run.
//!
//! Every vmctx of a store holds the same stack limit, activation (the
//! store) and interrupt flag (its kill state) from instantiation on: one
//! store, one guest stack, one run at a time.

use crate::api::instance::{args_to_slots, slots_to_results};
use crate::api::values::{type_list, Val, WasmValues};
use crate::ending::exit::{self, ExitUnwind, GuestExit};
use crate::error::AnyValue;
use crate::store::run_state::{ResumeAction, RunState, StoreState, Suspension, Yielded};
use crate::store::vm::Callee;
use crate::store::vm::VMFuncRef;
use crate::store::{Store, StoreInner, StoreParts};
use crate::{Error, TrapCode};
use backstop_jit::vmoffsets::VMCTX_PROPAGATED;
use backstop_jit::{FuncType, ValType};
use std::any::{Any, TypeId};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a resumable call produced.
#[derive(Debug)]
pub enum Outcome<R> {
    /// The function returned these results.
    Returned(R),
    /// A host function suspended the guest with this value; the store is
    /// `Suspended` until `resume`d (or reset, or dropped).
    Yielded(AnyValue),
}

/// Marks the unwind of a suspended guest whose store is dropped or reset.
struct TornDown;

/// What the guest-stack entry function needs, passed by pointer. Read once,
/// when the fiber starts.
struct EntryArgs {
    /// The first frame's function: `guest_entry`, or a `typed_guest_entry`.
    entry: unsafe extern "C-unwind" fn(*mut u8),
    raw: *const VMFuncRef,
    trampoline: usize,
    caller_vmctx: *mut u8,
    slots: *mut u128,
}

/// The first frame on the guest stack.
unsafe extern "C-unwind" fn guest_entry(arg: *mut u8) {
    // SAFETY: `arg` is the EntryArgs of `begin`, alive while the fiber
    // starts; its fields satisfy `invoke_in_activation`'s contract, and the
    // slots live in the store, which outlives the fiber.
    unsafe {
        let args = &*(arg as *const EntryArgs);
        invoke_in_activation(args.raw, args.trampoline, args.caller_vmctx, args.slots);
    }
}

/// The first frame on the guest stack for a typed call whose types all
/// have native equivalents: calls the function with its native signature,
/// without the entry trampoline (one frame fewer on the guest stack).
unsafe extern "C-unwind" fn typed_guest_entry<P: WasmValues, R: WasmValues>(arg: *mut u8) {
    // SAFETY: as for `guest_entry`; the slots hold a `P` and have room for
    // an `R` (`call_typed` sized them), and the function's type is `P -> R`
    // (checked when the call was set up), whose types are native. The
    // EntryArgs are only read here, before the guest runs (it may suspend,
    // and then they are gone), so the slot pointer is copied first.
    unsafe {
        let args = &*(arg as *const EntryArgs);
        let count = P::TYPES.len().max(R::TYPES.len()).max(1);
        let slots = std::slice::from_raw_parts_mut(args.slots, count);
        let results: R = invoke_native_in_activation(args.raw, args.caller_vmctx, P::load(slots));
        results.store(slots);
    }
}

/// Hands the caller's stack limit and activation to the callee's vmctx and
/// calls the entry trampoline.
///
/// # Safety
/// `raw` must be a live `VMFuncRef`, `trampoline` the entry trampoline of its
/// type, `caller_vmctx` a live vmctx of the same store, and `slots` valid
/// for the arguments and results.
pub(crate) unsafe fn invoke_in_activation(
    raw: *const VMFuncRef,
    trampoline: usize,
    caller_vmctx: *mut u8,
    slots: *mut u128,
) {
    type Trampoline = unsafe extern "C-unwind" fn(usize, usize, usize, *mut u128);
    // SAFETY: forwarded from the contract.
    unsafe {
        let func_ref = propagate_activation(raw, caller_vmctx);
        let trampoline: Trampoline = std::mem::transmute(trampoline);
        trampoline(
            func_ref.native_call,
            func_ref.vmctx,
            caller_vmctx as usize,
            slots,
        );
    }
}

/// `invoke_in_activation` without the entry trampoline: calls the function
/// `raw`, of type `P -> R`, through its native signature.
///
/// # Safety
/// As `invoke_in_activation`; the function's type must be `P -> R`, and
/// `P::HAS_NATIVE_PARAMS` and `R::HAS_NATIVE_RESULT` must hold.
#[inline(always)]
pub(crate) unsafe fn invoke_native_in_activation<P: WasmValues, R: WasmValues>(
    raw: *const VMFuncRef,
    caller_vmctx: *mut u8,
    params: P,
) -> R {
    // SAFETY: forwarded from the contract.
    unsafe {
        let func_ref = propagate_activation(raw, caller_vmctx);
        R::from_native_result(params.call_native::<R>(
            func_ref.native_call,
            func_ref.vmctx,
            caller_vmctx as usize,
        ))
    }
}

/// Reads a `VMFuncRef` and hands the caller's propagated vmctx words
/// (stack limit, activation, interrupt flag) to its callee's vmctx, as
/// compiled code does before every call through a `VMFuncRef`. Within one
/// store they are equal already; a host function's context is only
/// written, never read, so this keeps one rule for every callee.
///
/// # Safety
/// `raw` must be a live `VMFuncRef` and `caller_vmctx` a live vmctx whose
/// words are current; every callee vmctx starts with those words.
#[inline(always)]
unsafe fn propagate_activation(raw: *const VMFuncRef, caller_vmctx: *mut u8) -> VMFuncRef {
    // SAFETY: forwarded from the contract.
    unsafe {
        let func_ref = *raw;
        let callee_vmctx = func_ref.vmctx as *mut usize;
        if callee_vmctx as *mut u8 != caller_vmctx {
            for field in VMCTX_PROPAGATED {
                let word = field as usize / 8;
                *callee_vmctx.add(word) = *(caller_vmctx as *const usize).add(word);
            }
        }
        func_ref
    }
}

/// Calls `callee` (of type `P -> R`, checked by the caller) with typed
/// values: a root call if the store is idle, a nested call from inside one
/// of its host functions. Inlined, with `begin`, into the typed call, so
/// that `callee` stays in registers (see `begin`).
#[inline(always)]
pub(crate) fn call_typed<T: 'static, P: WasmValues, R: WasmValues>(
    store: &mut StoreInner<T>,
    callee: Callee,
    params: P,
) -> Result<Outcome<R>, Error> {
    if store.run.state == StoreState::Running {
        return Ok(Outcome::Returned(
            crate::api::func::call_nested_typed::<P, R>(store, callee, params),
        ));
    }
    store.run.check_ready()?;
    let count = P::TYPES.len().max(R::TYPES.len()).max(1);
    let slots = &mut store.run.slots;
    if slots.len() < count {
        slots.resize(count, 0);
    }
    params.store(slots);
    let entry = if P::HAS_NATIVE_PARAMS && R::HAS_NATIVE_RESULT {
        typed_guest_entry::<P, R>
    } else {
        guest_entry
    };
    Ok(match begin(store, entry, callee, R::TYPES)? {
        Outcome::Returned(()) => Outcome::Returned(R::load(&store.run.slots)),
        Outcome::Yielded(value) => Outcome::Yielded(value),
    })
}

/// Calls `callee`, of type `ty`, with dynamic values (checked here).
pub(crate) fn call_dynamic<T: 'static>(
    store: &mut StoreInner<T>,
    callee: Callee,
    ty: &FuncType,
    args: &[Val],
) -> Result<Vec<Val>, Error> {
    let mut slots = args_to_slots(&store.parts, ty, args)?;
    if store.run.state == StoreState::Running {
        crate::api::func::call_nested_slots(store, callee, &mut slots);
        // SAFETY: the function stored results of its declared types.
        return Ok(unsafe { slots_to_results(store.parts.id, ty, &slots) });
    }
    store.run.check_ready()?;
    store.run.slots = slots;
    match begin(store, guest_entry, callee, ty.results())? {
        // SAFETY: the function stored results of its declared types.
        Outcome::Returned(()) => {
            Ok(unsafe { slots_to_results(store.parts.id, ty, &store.run.slots) })
        }
        Outcome::Yielded(value) => Err(Error::Yielded(value)),
    }
}

/// Runs the start function `callee` of a new instance (no parameters, no
/// results): a root call, or a nested one when instantiating from inside a
/// host function. A start function may not suspend.
pub(crate) fn run_start<T: 'static>(
    store: &mut StoreInner<T>,
    callee: Callee,
) -> Result<(), Error> {
    match call_typed::<T, (), ()>(store, callee, ())? {
        Outcome::Returned(()) => Ok(()),
        Outcome::Yielded(_) => {
            tear_down_suspended(store);
            Err(Error::InstanceState(
                "the start function tried to suspend the guest".into(),
            ))
        }
    }
}

/// Starts a root call of `callee` on the store's guest stack. The
/// arguments are in `store.run.slots`; so are the results once it returns.
///
/// Inlined into its two callers: passed out of line, `callee` (24 bytes)
/// went through memory, and the copy into `EntryArgs` read it back before
/// the caller's stores had landed (a store-forwarding stall that `perf
/// annotate` put at a third of a root call's time).
#[inline(always)]
fn begin<T: 'static>(
    store: &mut StoreInner<T>,
    entry: unsafe extern "C-unwind" fn(*mut u8),
    callee: Callee,
    results: &[ValType],
) -> Result<Outcome<()>, Error> {
    if !store.run.has_stack() {
        return Err(Error::InstanceState(
            "the store has no instance to run code of".into(),
        ));
    }
    crate::ending::signals::ensure_ready();
    if !store.run.kill.begin_run() {
        return Err(Error::Killed);
    }
    let mut args = EntryArgs {
        entry,
        raw: callee.raw,
        trampoline: callee.trampoline,
        caller_vmctx: callee.owner_vmctx,
        slots: store.run.slots.as_mut_ptr(),
    };
    store.run.state = StoreState::Running;
    let run: *mut RunState = &mut store.run;
    // SAFETY: `run` is the store's, which the `&mut` keeps ours for the
    // whole call; `args` satisfies `guest_entry`.
    unsafe { switch(run, Some(&mut args), results) }
}

/// Runs the guest until it returns, suspends or unwinds: starts it
/// (`args`) or resumes it (`None`).
///
/// # Safety
/// `run` must be the live run state of a store held exclusively by the
/// caller; while the guest runs, its host functions reach the store only
/// through the vmctx's activation pointer, and this function touches the
/// run state only through `run`, before and after the switch.
unsafe fn switch(
    run: *mut RunState,
    args: Option<&mut EntryArgs>,
    results: &[ValType],
) -> Result<Outcome<()>, Error> {
    // SAFETY: per the contract; the record's fields live in the store.
    // An outer run on this thread may be ending (this call comes from a
    // destructor during its unwind): keep its reason apart.
    let outer_exit = exit::swap_pending_raw(std::ptr::null_mut());
    // SAFETY: as above.
    let outer_run = exit::swap_current_run(unsafe { &(*run).current });
    // SAFETY: the fiber state and stack live in the store, which outlives
    // the fiber; `args` satisfies `guest_entry`; a resume only happens when
    // the fiber is suspended (checked by the callers).
    let result = catch_unwind(AssertUnwindSafe(|| unsafe {
        match args {
            Some(args) => backstop_asm::fiber_start(
                &mut (*run).fiber,
                (*run).stack.as_ref().expect("a run has a stack").top(),
                args.entry,
                args as *mut EntryArgs as *mut u8,
            ),
            None => backstop_asm::fiber_resume(&mut (*run).fiber),
        }
    }));
    let own_exit = exit::swap_pending_raw(outer_exit);
    exit::swap_current_run(outer_run);
    // SAFETY: the guest is off the fiber now; the run state is ours again.
    let run = unsafe { &mut *run };
    // A trap with nothing to unwind left the guest stack directly
    // (`exit::trap_in_guest_code`); it ends the run like an unwind.
    let result = match result {
        Ok(backstop_asm::FiberExit::Abandoned) => Err(Box::new(ExitUnwind) as Box<dyn Any + Send>),
        other => other,
    };
    if result.is_ok() && !own_exit.is_null() {
        // SAFETY: from the swap above; a reason left pending by a run that
        // still returned normally is stale: drop it.
        drop(unsafe { exit::from_raw_pending(own_exit) });
    }
    match result {
        Ok(backstop_asm::FiberExit::Abandoned) => unreachable!("mapped to an unwind above"),
        Ok(backstop_asm::FiberExit::Returned) => {
            run.state = StoreState::Ready;
            run.kill.end_run();
            Ok(Outcome::Returned(()))
        }
        Ok(backstop_asm::FiberExit::Suspended) => {
            let yielded = run
                .yielded
                .take()
                .expect("the guest suspends only through suspend_current");
            run.state = StoreState::Suspended;
            run.kill.set_suspended(true);
            run.suspension = Some(Suspension {
                results: results.into(),
                resume_type: yielded.resume_type,
                resume_type_name: yielded.resume_type_name,
                pinned_to: yielded.pinned_to,
            });
            Ok(Outcome::Yielded(yielded.value))
        }
        Err(payload) => {
            run.state = StoreState::Ready;
            run.kill.end_run();
            // SAFETY: `own_exit` came from the swap just above.
            let own_exit = unsafe { exit::from_raw_pending(own_exit) };
            classify_unwind(run, payload, own_exit).map(|()| Outcome::Returned(()))
        }
    }
}

/// Turns what unwound out of the guest into the call's result.
fn classify_unwind(
    run: &mut RunState,
    payload: Box<dyn Any + Send>,
    exit: Option<GuestExit>,
) -> Result<(), Error> {
    if payload.is::<ExitUnwind>() {
        return Err(match exit {
            Some(GuestExit::Trap(trap)) if trap.code() == TrapCode::Interrupt => Error::Killed,
            Some(GuestExit::Trap(trap)) => Error::Trap(trap),
            Some(GuestExit::Killed) => Error::Killed,
            Some(GuestExit::HostError(error)) => error,
            Some(GuestExit::Terminated(details)) => Error::Terminated(details),
            None => Error::InstanceState("the guest's run ended without a reason".into()),
        });
    }
    // A host panic: the store's data may be inconsistent now.
    run.state = StoreState::Poisoned;
    std::panic::resume_unwind(payload)
}

/// `Store::resume`.
pub(crate) fn resume<T: 'static, R: WasmValues>(
    store: &mut StoreInner<T>,
    value: Box<dyn Any + Send>,
) -> Result<Outcome<R>, Error> {
    let run = &mut store.run;
    if run.state != StoreState::Suspended {
        return Err(Error::InstanceState(format!(
            "only a suspended run can be resumed (the store is {:?})",
            run.state
        )));
    }
    let suspension = run.suspension.as_ref().expect("suspended");
    if &*suspension.results != R::TYPES {
        return Err(Error::InvalidArgument(format!(
            "the suspended call returns {}, not {}",
            type_list(&suspension.results),
            type_list(R::TYPES)
        )));
    }
    if (*value).type_id() != suspension.resume_type {
        return Err(Error::InvalidArgument(format!(
            "the suspended host function expects a resume value of type {}",
            suspension.resume_type_name,
        )));
    }
    check_thread(suspension)?;
    crate::ending::signals::ensure_ready();
    // Running first, then the kill check: a kill switch that still saw the
    // run suspended has set the flag by now (see `KillSwitch`).
    run.kill.set_suspended(false);
    let action = if run.kill.is_requested() {
        ResumeAction::Unwind(GuestExit::Killed)
    } else {
        ResumeAction::Value(value)
    };
    run.resume_action = Some(action);
    let results = run.suspension.take().expect("suspended").results;
    run.state = StoreState::Running;
    let run: *mut RunState = run;
    // SAFETY: the store is held exclusively; the fiber is suspended.
    Ok(match unsafe { switch(run, None, &results) }? {
        Outcome::Returned(()) => Outcome::Returned(R::load(&store.run.slots)),
        Outcome::Yielded(value) => Outcome::Yielded(value),
    })
}

/// Refuses to continue a pinned suspension on another thread.
fn check_thread(suspension: &Suspension) -> Result<(), Error> {
    match suspension.pinned_to {
        Some(thread) if thread != std::thread::current().id() => Err(Error::InstanceState(
            "the run was suspended with Caller::suspend on another thread, and its host frames \
             may hold values tied to that thread: continue it there (or suspend with \
             Caller::suspend_unpinned)"
                .into(),
        )),
        _ => Ok(()),
    }
}

/// Ends a suspended run: resumes it into an unwind, so every host frame on
/// its stack runs its destructors. A host panic during that unwind is
/// swallowed (there is nobody to report it to). A run pinned to another
/// thread is not resumed here: its frames are abandoned with the stack
/// (their destructors do not run), because running them on this thread
/// could break what their types promise.
pub(crate) fn tear_down_suspended<T: 'static>(store: &mut StoreInner<T>) {
    let run = &mut store.run;
    if run.state != StoreState::Suspended {
        return;
    }
    let suspension = run.suspension.take().expect("suspended");
    run.kill.set_suspended(false);
    if check_thread(&suspension).is_err() {
        run.state = StoreState::Ready;
        run.fiber = backstop_asm::FiberState::new();
        return;
    }
    let details = crate::error::TerminationDetails::new(Box::new(TornDown));
    run.resume_action = Some(ResumeAction::Unwind(GuestExit::Terminated(details)));
    run.state = StoreState::Running;
    let raw: *mut RunState = run;
    // SAFETY: the store is held exclusively; the fiber is suspended.
    let _ = catch_unwind(AssertUnwindSafe(|| unsafe {
        switch(raw, None, &suspension.results)
    }));
    if store.run.state != StoreState::Poisoned {
        store.run.state = StoreState::Ready;
    }
}

/// `Store::reset`.
pub(crate) fn reset<T: 'static>(store: &mut StoreInner<T>) -> Result<(), Error> {
    if store.run.state == StoreState::Running {
        return Err(Error::InstanceState(
            "a store cannot be reset from inside its own run".into(),
        ));
    }
    if let Some(suspension) = &store.run.suspension {
        check_thread(suspension)?;
    }
    tear_down_suspended(store);
    let parts: &StoreParts = &store.parts;
    for core in &parts.instances {
        core.restore(parts)?;
    }
    store.run.kill.skip_run();
    store.run.state = StoreState::Ready;
    Ok(())
}

/// Suspends the running guest of `store` with `value`; returns the value
/// `resume` passes, or unwinds if the store is torn down instead.
///
/// # Safety
/// Must run inside a host function of a run of `store`, on its fiber.
#[inline(never)]
pub(crate) unsafe fn suspend_current<T, R: Any + Send>(
    store: *mut StoreInner<T>,
    value: AnyValue,
    pinned: bool,
) -> R {
    let pinned_to = pinned.then(|| std::thread::current().id());
    // SAFETY: per the contract, `store` is running and this is its fiber.
    unsafe {
        (*store).run.yielded = Some(Yielded {
            value,
            resume_type: TypeId::of::<R>(),
            resume_type_name: std::any::type_name::<R>(),
            pinned_to,
        });
        backstop_asm::fiber_suspend(&mut (*store).run.fiber);
        after_resume::<T, R>(store)
    }
}

/// The resumed half of `suspend_current`; never inlined into it, so no
/// thread-local address from before a cross-thread resume is reused.
#[inline(never)]
unsafe fn after_resume<T, R: Any + Send>(store: *mut StoreInner<T>) -> R {
    // SAFETY: `store` is live: the fiber is only resumed by its store.
    match unsafe { (*store).run.resume_action.take() } {
        Some(ResumeAction::Value(value)) => match value.downcast::<R>() {
            Ok(value) => *value,
            Err(_) => exit::raise(GuestExit::HostError(Error::InvalidArgument(
                "resumed with a value of the wrong type".into(),
            ))),
        },
        Some(ResumeAction::Unwind(reason)) => exit::raise(reason),
        None => exit::raise(GuestExit::HostError(Error::InstanceState(
            "resumed without a value".into(),
        ))),
    }
}

/// What a store does with its run, beside the data it owns.
impl<T: 'static> Store<T> {
    /// Resumes the suspended run: the host function that called
    /// `Caller::suspend::<V>` gets `value` (which must be a `V`) back, and
    /// the guest continues. `R` must be the result type of the suspended
    /// call. If a kill switch fired meanwhile, the run ends with
    /// `Error::Killed` instead, every frame unwound. A run suspended with
    /// `Caller::suspend` resumes only on the thread that suspended it.
    pub fn resume<R: WasmValues>(&mut self, value: impl Any + Send) -> Result<Outcome<R>, Error> {
        resume(&mut self.inner, Box::new(value))
    }

    /// Restores every instance of the store (the memories, tables, globals
    /// and segments it defines) to its state right after instantiation,
    /// without recompiling or remapping. Makes a poisoned store usable
    /// again; a suspended run is unwound first (every host frame on its
    /// stack runs its destructors). Items the host created with
    /// `Memory::new`, `Table::new` or `Global::new` are left as they are.
    /// Kill switches made before the reset no longer target anything.
    pub fn reset(&mut self) -> Result<(), Error> {
        reset(&mut self.inner)
    }
}

impl<T: 'static> StoreInner<T> {
    /// Ends a suspended run (unwinding its frames) before the store goes.
    pub(crate) fn tear_down(&mut self) {
        tear_down_suspended(self);
        self.run.kill.mark_dead();
    }
}

impl<T: 'static> Drop for Store<T> {
    fn drop(&mut self) {
        // A suspended guest still has live host frames: unwind them, so
        // their destructors run before the stack is freed.
        self.inner.tear_down();
    }
}
