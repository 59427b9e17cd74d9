//! Runs the WASI example program, so it does not bit-rot: its `main` is
//! compiled into this test binary and called directly.

#[allow(dead_code)]
#[path = "../examples/wasi.rs"]
mod wasi_example;

#[test]
fn wasi_example_runs() {
    wasi_example::main().expect("wasi/examples/wasi.rs succeeds");
}
