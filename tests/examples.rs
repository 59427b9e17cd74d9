//! Runs every example program, so none of them bit-rots. Each example's
//! `main` is compiled into this test binary and called directly.

#[allow(dead_code)]
#[path = "../examples/hello.rs"]
mod hello;

#[test]
fn hello_example_runs() {
    hello::main().expect("examples/hello.rs succeeds");
}

#[allow(dead_code)]
#[path = "../examples/gdb_backtrace.rs"]
mod gdb_backtrace;

#[test]
fn gdb_backtrace_example_runs() {
    gdb_backtrace::main().expect("examples/gdb_backtrace.rs succeeds");
}

#[allow(dead_code)]
#[path = "../examples/hostcall_cleanup.rs"]
mod hostcall_cleanup;

#[test]
fn hostcall_cleanup_example_runs() {
    hostcall_cleanup::main().expect("examples/hostcall_cleanup.rs succeeds");
}

#[allow(dead_code)]
#[path = "../examples/timeout.rs"]
mod timeout;

#[test]
fn timeout_example_runs() {
    timeout::main().expect("examples/timeout.rs succeeds");
}
