//! How a run is stopped, below the store: the one-phase unwind and the
//! leaving of the fiber by which every ending (trap, termination, host
//! error, kill) leaves the guest stack (`exit`), the kill switch that
//! another thread uses to stop a run (`kill`), the waits in host code that
//! a kill cuts short (`kill_wait`), and the signal handlers that turn a
//! fault in guest code into a trap and a kill signal into an unwind
//! (`signals`). It works on one run's record (`exit::CurrentRun`) and knows
//! nothing of stores, instances or values.

pub(crate) mod exit;
pub(crate) mod kill;
pub(crate) mod kill_wait;
pub(crate) mod signals;
