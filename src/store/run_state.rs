//! A store's run state: its guest stack (made on first use, in the stack
//! room of its first memory if it has one), the fiber that runs guest code
//! on it, and the state machine every call goes through. The calls that
//! drive it are `crate::api::calls`; the record a trap needs to leave the
//! stack (`CurrentRun`) is filled in here once, when the stack is made.
//!
//! | state     | event                                              | to        |
//! |-----------|----------------------------------------------------|-----------|
//! | Ready     | a root call starts                                 | Running   |
//! | Running   | returns, traps, terminated, host `Err`, killed     | Ready     |
//! | Running   | a host function calls `Caller::suspend`            | Suspended |
//! | Running   | a host function panics (re-raised)                 | Poisoned  |
//! | Running   | a call through a `Caller`                          | Running (nested) |
//! | Suspended | `resume` with the right types (on its thread, if pinned) | Running |
//! | Suspended | `resume` with wrong types, elsewhere, or a call    | Suspended (error) |
//! | Suspended | `reset` (frames unwound first)                     | Ready     |
//! | Suspended | drop (frames unwound first; leaked if pinned elsewhere) | -    |
//! | Ready     | `resume`                                           | Ready (error) |
//! | Poisoned  | a call / `resume`                                  | Poisoned (error) |
//! | Poisoned  | `reset`                                            | Ready     |
//! | Ready     | `reset`                                            | Ready     |

use crate::compile::engine::Config;
use crate::ending::exit::{self, GuestExit};
use crate::ending::kill::KillShared;
use crate::error::AnyValue;
use crate::error::Error;
use backstop_jit::ValType;
use std::any::{Any, TypeId};
use std::sync::Arc;
use std::thread::ThreadId;

/// The states of a store's run; every transition is in the table in the
/// module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreState {
    /// Idle: a call may start.
    Ready,
    /// A call is in progress (observable only from inside it, through a
    /// `Caller`).
    Running,
    /// A host function suspended the guest (`Caller::suspend`); only
    /// `resume`, `reset` or dropping the store continue it.
    Suspended,
    /// A host function panicked; only `reset` makes the store usable.
    Poisoned,
}

/// How a suspended guest continues.
pub(crate) enum ResumeAction {
    /// `Caller::suspend` returns this value.
    Value(Box<dyn Any + Send>),
    /// `Caller::suspend` ends the run instead: every frame unwinds.
    Unwind(GuestExit),
}

/// What a suspending host function left for the root call.
pub(crate) struct Yielded {
    pub(crate) value: AnyValue,
    pub(crate) resume_type: TypeId,
    pub(crate) resume_type_name: &'static str,
    /// The thread whose frames are on the stack, unless the host function
    /// promised they may run anywhere (`Caller::suspend_unpinned`).
    pub(crate) pinned_to: Option<ThreadId>,
}

/// What the suspended call expects.
pub(crate) struct Suspension {
    pub(crate) results: Box<[ValType]>,
    pub(crate) resume_type: TypeId,
    pub(crate) resume_type_name: &'static str,
    pub(crate) pinned_to: Option<ThreadId>,
}

/// A store's guest stack and run state. Lives in the boxed `StoreInner`,
/// so the fiber state's address never changes.
pub(crate) struct RunState {
    pub(crate) stack: Option<backstop_asm::GuestStack>,
    pub(crate) stack_size: usize,
    pub(crate) host_reserve: usize,
    pub(crate) stack_limit: usize,
    /// A host function may start only above this address: it keeps at
    /// least half the host reserve free for host code and the unwinder.
    pub(crate) host_floor: usize,
    pub(crate) state: StoreState,
    pub(crate) fiber: backstop_asm::FiberState,
    /// Argument and result slots of the root call in progress; they must
    /// outlive a suspension, so they are not on the caller's stack.
    pub(crate) slots: Vec<u128>,
    pub(crate) suspension: Option<Suspension>,
    /// Set by `Caller::suspend`, taken by the root call when it sees the
    /// guest suspended.
    pub(crate) yielded: Option<Yielded>,
    /// Set by `resume` and teardown, taken by the suspended guest.
    pub(crate) resume_action: Option<ResumeAction>,
    pub(crate) kill: Arc<KillShared>,
    pub(crate) capture_backtraces: bool,
    /// What a trap needs to leave the guest stack; filled in at each run's
    /// start (the fields' addresses are final by then).
    pub(crate) current: exit::CurrentRun,
}

impl RunState {
    pub(crate) fn new(config: &Config) -> RunState {
        RunState {
            stack: None,
            stack_size: config.stack_size + config.host_reserve,
            host_reserve: config.host_reserve,
            stack_limit: 0,
            host_floor: 0,
            state: StoreState::Ready,
            fiber: backstop_asm::FiberState::new(),
            slots: Vec::new(),
            suspension: None,
            yielded: None,
            resume_action: None,
            kill: KillShared::new(config.interrupt_checks),
            capture_backtraces: config.wasm_backtrace,
            current: exit::CurrentRun::NONE,
        }
    }

    pub(crate) fn state(&self) -> StoreState {
        self.state
    }

    pub(crate) fn has_stack(&self) -> bool {
        self.stack.is_some()
    }

    /// How many bytes of stack room a store's first memory should carry.
    pub(crate) fn stack_room(&self) -> usize {
        self.stack_size
    }

    /// Gives the store its guest stack, in `room`'s stack room if it has
    /// one, else in a mapping of its own. Idempotent.
    pub(crate) fn ensure_stack(
        &mut self,
        room: Option<&crate::store::storage::MemoryStorage>,
    ) -> Result<(), Error> {
        if self.stack.is_some() {
            return Ok(());
        }
        let stack = match room.and_then(|memory| memory.take_stack_room(self.stack_size)) {
            Some(stack) => stack,
            None => backstop_asm::GuestStack::new(self.stack_size, 4096),
        }
        .map_err(|e| crate::mappings::mapping_failure("allocate a guest stack", e))?;
        self.stack_limit = stack.usable_bottom() as usize + self.host_reserve;
        self.host_floor = stack.usable_bottom() as usize + self.host_reserve / 2;
        // The run state lives in the boxed store, so these addresses are
        // final: record them once rather than on every call.
        self.current = exit::CurrentRun {
            fiber: &mut self.fiber,
            kill: Arc::as_ptr(&self.kill),
            stack: (stack.usable_bottom() as usize, stack.top() as usize),
            capture_backtraces: self.capture_backtraces,
        };
        self.stack = Some(stack);
        Ok(())
    }

    #[inline]
    pub(crate) fn check_ready(&self) -> Result<(), Error> {
        if self.state == StoreState::Ready {
            Ok(())
        } else {
            Err(self.not_ready())
        }
    }

    #[cold]
    fn not_ready(&self) -> Error {
        match self.state {
            StoreState::Ready => unreachable!("checked by check_ready"),
            StoreState::Running => {
                Error::InstanceState("the store is already running a call".into())
            }
            StoreState::Suspended => Error::InstanceState(
                "the store's run is suspended: resume it, reset the store or drop it".into(),
            ),
            StoreState::Poisoned => Error::InstanceState(
                "the store is poisoned: a host function panicked during an earlier call; \
                 reset it to use it again"
                    .into(),
            ),
        }
    }
}
