//! Runs every example program, so none of them bit-rots. Each example's
//! `main` is compiled into this test binary and called directly.

#[allow(dead_code)]
#[path = "../examples/hello.rs"]
mod hello;

#[test]
fn hello_example_runs() {
    hello::main().expect("examples/hello.rs succeeds");
}
