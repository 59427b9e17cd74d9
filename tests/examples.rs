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
