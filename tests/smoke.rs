use backstop::*;

#[test]
fn smoke_traps_and_panics() {
    let engine = Engine::default();
    let module = Module::new(&engine, r#"
      (module
        (import "host" "boom" (func $boom))
        (memory 1)
        (func (export "unreachable") unreachable)
        (func (export "oob") (result i32) (i32.load (i32.const 70000)))
        (func (export "div") (param i32) (result i32) (i32.div_s (i32.const 1) (local.get 0)))
        (func $rec (export "rec") (param i32) (result i32) (i32.add (call $rec (local.get 0)) (i32.const 1)))
        (func (export "boom") call $boom))
    "#).unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap("host", "boom", || -> () { panic!("host boom") })
        .unwrap();
    let mut i = linker.instantiate(&module, ()).unwrap();
    for _ in 0..3 {
        let e = i.call::<(), ()>("unreachable", ()).unwrap_err();
        assert_eq!(e.trap_code(), Some(TrapCode::UnreachableCodeReached), "{e}");
        println!("{e}");
        let e = i.call::<(), i32>("oob", ()).unwrap_err();
        assert_eq!(e.trap_code(), Some(TrapCode::MemoryOutOfBounds), "{e}");
        let e = i.call::<i32, i32>("div", 0).unwrap_err();
        assert_eq!(e.trap_code(), Some(TrapCode::IntegerDivisionByZero), "{e}");
        let e = i.call::<i32, i32>("rec", 0).unwrap_err();
        assert_eq!(e.trap_code(), Some(TrapCode::StackOverflow), "{e}");
        assert_eq!(i.call::<i32, i32>("div", 1).unwrap(), 1);
    }
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        i.call::<(), ()>("boom", ())
    }));
    assert_eq!(*r.unwrap_err().downcast::<&str>().unwrap(), "host boom");
    assert!(i.is_poisoned());
    assert!(matches!(
        i.call::<i32, i32>("div", 1),
        Err(Error::InstanceState(_))
    ));
}
