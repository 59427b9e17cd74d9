//! A guest -> host -> guest -> host stack that ends in a host function two
//! guest segments deep. Run it under gdb with a breakpoint on
//! `backstop_demo_breakpoint` and `bt` shows the Wasm functions by name,
//! interleaved with the host frames, down to `main` (tests/gdb.rs does this).

use backstop::{Caller, Engine, Linker, Module, Store};

/// Where the debugger stops.
#[no_mangle]
#[inline(never)]
pub extern "C" fn backstop_demo_breakpoint(depth: i32) -> i32 {
    std::hint::black_box(depth) + 1
}

pub fn main() -> Result<(), backstop::Error> {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"
        (module $demo
          (import "host" "down" (func $down (param i32) (result i32)))
          (func $outer_segment (export "outer") (param i32) (result i32)
            (call $down (local.get 0)))
          (func $inner_segment (export "inner") (param i32) (result i32)
            (call $down (local.get 0))))
        "#,
    )?;
    let mut linker = Linker::new(&engine);
    linker.func_wrap(
        "host",
        "down",
        |mut caller: Caller<'_, ()>, depth: i32| -> Result<i32, backstop::Error> {
            if depth > 0 {
                caller.call::<i32, i32>("inner", depth - 1)
            } else {
                Ok(backstop_demo_breakpoint(depth))
            }
        },
    )?;
    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module)?;
    let result: i32 = instance.call(&mut store, "outer", 1)?;
    println!("two segments deep and back: {result}");
    Ok(())
}
