//! The point of Backstop, step by step: a guest -> host -> guest -> host
//! stack, where the innermost host function terminates the guest. Every
//! host frame on the way holds a resource whose destructor prints; all of
//! them run, innermost first, before `call` returns, and the lock held by the
//! outermost host frame is free again. Then the same instance is called
//! again, and answers.

use backstop::{Caller, Engine, Error, Linker, Module, Store};
use std::sync::{Arc, Mutex};

/// A resource a host function holds; its destructor reports itself.
struct Resource {
    name: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Resource {
    fn new(name: String, log: &Arc<Mutex<Vec<String>>>) -> Resource {
        println!("  acquire {name}");
        Resource {
            name,
            log: log.clone(),
        }
    }
}

impl Drop for Resource {
    fn drop(&mut self) {
        println!("  release {}", self.name);
        self.log.lock().unwrap().push(self.name.clone());
    }
}

pub fn main() -> Result<(), Error> {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"
        (module $app
          (import "host" "work" (func $work (param i32)))
          (func (export "run") (param i32)
            (call $work (local.get 0)))
          (func (export "add") (param i32 i32) (result i32)
            (i32.add (local.get 0) (local.get 1))))
        "#,
    )?;

    let log = Arc::new(Mutex::new(Vec::new()));
    let shared_lock = Arc::new(parking_lot::Mutex::new(0u32));
    let mut linker = Linker::new(&engine);
    {
        let (log, shared_lock) = (log.clone(), shared_lock.clone());
        linker.func_wrap(
            "host",
            "work",
            move |mut caller: Caller<'_, ()>, depth: i32| -> Result<(), Error> {
                let _resource = Resource::new(format!("host frame at depth {depth}"), &log);
                // The outermost host frame holds a lock across the nested calls.
                let _guard = (depth == 2).then(|| shared_lock.lock());
                if depth > 0 {
                    println!("  host at depth {depth} calls back into the guest");
                    return caller.call::<i32, ()>("run", depth - 1);
                }
                println!("  host at depth 0 terminates the guest");
                caller.terminate("deadline exceeded")
            },
        )?;
    }

    let mut store = Store::new(&engine, ());
    let instance = linker.instantiate(&mut store, &module)?;
    println!("calling run(2): guest -> host -> guest -> host -> guest -> host");
    match instance.call::<i32, ()>(&mut store, "run", 2) {
        Err(Error::Terminated(details)) => {
            let reason = details.downcast::<&str>().expect("a &str reason");
            println!("call returned Error::Terminated({reason:?})");
        }
        other => panic!("expected a termination, got {other:?}"),
    }
    let released = log.lock().unwrap().clone();
    println!("destructors that ran: {}", released.len());
    assert_eq!(released.len(), 3, "every host frame cleaned up");
    assert!(shared_lock.try_lock().is_some(), "the lock is free again");
    println!("the lock held by the outermost host frame is free again");

    // The instance is still usable: call it again.
    let sum: i32 = instance.call(&mut store, "add", (2, 3))?;
    println!("calling add(2, 3) on the same instance returned {sum}");
    assert_eq!(sum, 5, "the instance still runs guest code");
    println!("and the instance is still usable");
    Ok(())
}
