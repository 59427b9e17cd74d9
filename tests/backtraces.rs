//! Wasm backtraces: traps and terminations record the guest functions on
//! the stack, innermost first, with names from the name section and Wasm
//! offsets, and marked host frames between guest segments; `Caller::backtrace`
//! and `backstop::symbolize` name guest frames for embedders.

use backstop::{
    Caller, Config, Engine, Error, FrameKind, Instance, Linker, Module, Store, WasmBacktrace,
};

const GUEST: &str = r#"
    (module $demo
      (import "host" "down" (func $down (param i32)))
      (func $inner (unreachable))
      (func $middle (call $inner))
      (func $outer (export "trap") (call $middle))
      (func $enter (export "enter") (param i32) (call $down (local.get 0)))
      (func $deep (export "deep_trap") (call $outer)))
"#;

/// Compact view: wasm frames by name, host frames as "host".
fn names(backtrace: &WasmBacktrace) -> Vec<String> {
    backtrace
        .frames()
        .iter()
        .map(|f| match f.kind() {
            FrameKind::Wasm => f.func_name().unwrap_or("?").to_string(),
            FrameKind::Host => "host".to_string(),
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Inner {
    Trap,
    Terminate,
    Record,
}

/// A store holding an instance of `GUEST`, whose host function ends as
/// `inner` says.
fn instance(engine: &Engine, inner: Inner) -> (Store<Vec<Vec<String>>>, Instance) {
    let module = Module::new(engine, GUEST).unwrap();
    let mut linker = Linker::new(engine);
    linker
        .func_wrap(
            "host",
            "down",
            move |mut caller: Caller<'_, Vec<Vec<String>>>, depth: i32| -> Result<(), Error> {
                if depth > 0 {
                    return caller.call::<i32, ()>("enter", depth - 1);
                }
                match inner {
                    Inner::Trap => caller.call::<(), ()>("deep_trap", ()),
                    Inner::Terminate => caller.terminate("stop"),
                    Inner::Record => {
                        let recorded = names(&caller.backtrace());
                        caller.data_mut().push(recorded);
                        Ok(())
                    }
                }
            },
        )
        .unwrap();
    let mut store = Store::new(engine, Vec::new());
    let instance = linker.instantiate(&mut store, &module).unwrap();
    (store, instance)
}

#[test]
fn trap_backtrace_names_every_guest_frame() {
    let engine = Engine::default();
    let (mut store, instance) = instance(&engine, Inner::Trap);
    let error = instance.call::<(), ()>(&mut store, "trap", ()).unwrap_err();
    let trap = error.as_trap().unwrap();
    let backtrace = trap.backtrace().expect("captured by default");
    assert_eq!(names(backtrace), ["inner", "middle", "outer"]);
    for frame in backtrace.frames() {
        assert_eq!(frame.module_name(), Some("demo"));
        assert!(frame.wasm_offset().is_some());
        assert!(frame.func_index().is_some());
    }
    let shown = error.to_string();
    assert!(shown.contains("wasm backtrace:"), "{shown}");
    assert!(shown.contains("demo!inner @ 0x"), "{shown}");
    // The trap's own PC names the faulting function.
    let frame = backstop::symbolize(trap.pc().unwrap()).unwrap();
    assert_eq!(frame.func_name(), Some("inner"));
    assert_eq!(frame.wasm_offset(), trap.wasm_offset());
}

#[test]
fn trap_under_host_segments_marks_the_host_frames() {
    let engine = Engine::default();
    let (mut store, instance) = instance(&engine, Inner::Trap);
    let error = instance
        .call::<i32, ()>(&mut store, "enter", 2)
        .unwrap_err();
    let backtrace = error.as_trap().unwrap().backtrace().unwrap();
    assert_eq!(
        names(backtrace),
        ["inner", "middle", "outer", "deep", "host", "enter", "host", "enter", "host", "enter"]
    );
}

#[test]
fn termination_backtrace_starts_with_the_host_frame() {
    let engine = Engine::default();
    let (mut store, instance) = instance(&engine, Inner::Terminate);
    let details = instance
        .call::<i32, ()>(&mut store, "enter", 1)
        .unwrap_err()
        .into_termination()
        .unwrap();
    assert_eq!(
        names(details.backtrace().unwrap()),
        ["host", "enter", "host", "enter"]
    );
    assert_eq!(*details.downcast::<&str>().unwrap(), "stop");
}

#[test]
fn caller_backtrace_inside_a_host_function() {
    let engine = Engine::default();
    let (mut store, instance) = instance(&engine, Inner::Record);
    instance.call::<i32, ()>(&mut store, "enter", 2).unwrap();
    assert_eq!(
        store.data()[0],
        ["host", "enter", "host", "enter", "host", "enter"]
    );
}

#[test]
fn capture_can_be_turned_off() {
    let engine = Engine::new(Config::new().wasm_backtrace(false)).unwrap();
    let (mut store, instance) = instance(&engine, Inner::Trap);
    let error = instance.call::<(), ()>(&mut store, "trap", ()).unwrap_err();
    assert!(error.as_trap().unwrap().backtrace().is_none());
    assert!(!error.to_string().contains("wasm backtrace"));
}

/// A stack overflow's backtrace has tens of thousands of frames; its
/// `Display` (what the CLI prints) collapses the recursion into a few
/// lines, and `frames()` still has every one.
#[test]
fn a_stack_overflow_prints_a_few_lines_and_keeps_every_frame() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (func $r (export "r") (param i32) (result i32)
               (call $r (i32.add (local.get 0) (i32.const 1))))
             (func $main (export "main") (result i32) (call $r (i32.const 0))))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let error = instance
        .call::<(), i32>(&mut store, "main", ())
        .unwrap_err();
    let trap = error.as_trap().expect("a trap");
    assert_eq!(trap.code(), backstop::TrapCode::StackOverflow);
    let frames = trap.backtrace().unwrap().frames();
    assert!(frames.len() > 1000, "only {} frames", frames.len());
    let text = error.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() < 10, "{} lines:\n{text}", lines.len());
    let repeated = lines
        .iter()
        .find(|line| line.contains("repeated"))
        .unwrap_or_else(|| panic!("no collapsed line:\n{text}"));
    // The longest run of equal frames: the recursion's calls (the
    // innermost frame, at the overflow check, has another offset).
    let mut recursion = 0;
    let mut run = 0;
    for (i, frame) in frames.iter().enumerate() {
        run = if i > 0 && *frame == frames[i - 1] {
            run + 1
        } else {
            1
        };
        recursion = recursion.max(run);
    }
    assert!(
        recursion + 3 >= frames.len(),
        "{recursion} of {}",
        frames.len()
    );
    assert!(
        repeated.contains(&format!("repeated {} times", with_commas(recursion))),
        "{repeated} (expected {recursion})"
    );
    assert!(lines.last().unwrap().contains("main"), "{text}");
}

fn with_commas(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// Rust and C++ symbols from the name section are demangled where people
/// read them (`Display` of frames and traps), and kept raw in `func_name`.
#[test]
fn guest_symbols_are_demangled_and_the_raw_name_kept() {
    let engine = Engine::default();
    let module = Module::new(
        &engine,
        r#"(module
             (func $_ZN4json4main17h0123456789abcdefE (export "rust")
               (call $_Z5innerv))
             (func $_Z5innerv unreachable)
             (func $_RNvNtCs1234_7mycrate6module4func (export "v0") unreachable))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let error = instance.call::<(), ()>(&mut store, "rust", ()).unwrap_err();
    let trap = error.as_trap().unwrap();
    assert_eq!(trap.func_name(), Some("_Z5innerv"));
    let frames = trap.backtrace().unwrap().frames();
    assert_eq!(frames[0].func_name(), Some("_Z5innerv"));
    assert_eq!(frames[0].display_name(), Some("inner()"));
    assert_eq!(
        frames[1].func_name(),
        Some("_ZN4json4main17h0123456789abcdefE")
    );
    assert_eq!(frames[1].display_name(), Some("json::main"));
    let text = error.to_string();
    assert!(text.contains("in inner()"), "{text}");
    assert!(text.contains("json::main @ "), "{text}");
    assert!(!text.contains("_ZN4json"), "{text}");
    let error = instance.call::<(), ()>(&mut store, "v0", ()).unwrap_err();
    assert!(
        error.to_string().contains("mycrate::module::func"),
        "{error}"
    );
}
