//! Embedding a WASI program: run the C "hello" test program with arguments
//! and an environment variable, capture its stdout in memory, and read its
//! exit code.

use backstop::{Engine, Error, Linker, Module, Store};
use backstop_wasi::{self as wasi, WasiCtx, WasiCtxBuilder, WritePipe};

struct State {
    wasi: WasiCtx,
}

pub fn main() -> Result<(), Error> {
    let engine = Engine::default();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/programs/wasi/hello.wasm"
    );
    let bytes = std::fs::read(path).map_err(|e| Error::msg(format!("{path}: {e}")))?;
    let module = Module::new(&engine, bytes)?;

    let mut linker: Linker<State> = Linker::new(&engine);
    wasi::add_to_linker(&mut linker, |state: &mut State| &mut state.wasi)?;

    let stdout = WritePipe::new();
    let ctx = WasiCtxBuilder::new()
        .args(["hello", "from", "the", "host"])
        .env("GREETING", "embedded")
        .stdout(stdout.clone())
        .build();
    let mut store = Store::new(&engine, State { wasi: ctx });
    let instance = linker.instantiate(&mut store, &module)?;
    let code = wasi::run(&mut store, instance)?;

    let captured = stdout.contents_string();
    println!("the guest exited with {code} and wrote:");
    for line in captured.lines() {
        println!("  | {line}");
    }
    assert!(captured.contains("GREETING=embedded"));
    Ok(())
}
