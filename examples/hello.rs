//! The smallest Backstop embedding: compile a module given as text, link a
//! host function, call an export, print the result.

use backstop::{Engine, Linker, Module, Store};

pub fn main() -> Result<(), backstop::Error> {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"
        (module
          (import "host" "greet" (func $greet (param i32)))
          (func (export "answer") (param i32 i32) (result i32)
            (call $greet (local.get 0))
            (i32.mul (local.get 0) (local.get 1))))
        "#,
    )?;

    let mut linker = Linker::new(&engine);
    linker.func_wrap("host", "greet", |who: i32| {
        println!("hello from the host, called by guest with {who}");
    })?;

    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module)?;
    let answer: i32 = instance.call(&mut store, "answer", (6, 7))?;
    println!("the guest says 6 * 7 = {answer}");
    Ok(())
}
