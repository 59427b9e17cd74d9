//! Source lines in backtraces: a module built from C with `clang -g`
//! (tests/programs/debug/divide.c, rebuilt by build.sh there) carries DWARF,
//! and each frame of a trap's backtrace gives file:line.

use backstop::{Engine, FrameKind, Linker, Module, Store, TrapCode};

#[test]
fn trap_frames_give_file_and_line() {
    let engine = Engine::default();
    let wasm = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/programs/debug/divide.wasm"
    ))
    .unwrap();
    let module = Module::new(&engine, wasm).unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Linker::<()>::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    assert_eq!(
        instance.call::<i32, i32>(&mut store, "compute", 5).unwrap(),
        42
    );
    let error = instance
        .call::<i32, i32>(&mut store, "compute", 0)
        .unwrap_err();
    let trap = error.as_trap().unwrap();
    assert_eq!(trap.code(), TrapCode::IntegerDivisionByZero);
    let frames: Vec<(String, String, u32)> = trap
        .backtrace()
        .unwrap()
        .frames()
        .iter()
        .filter(|f| f.kind() == FrameKind::Wasm)
        .map(|f| {
            let (file, line) = f.source_location().expect("DWARF line info");
            (f.func_name().unwrap().to_string(), file.to_string(), line)
        })
        .collect();
    let view: Vec<(&str, u32)> = frames.iter().map(|(n, _, l)| (n.as_str(), *l)).collect();
    assert_eq!(
        view,
        [("divide", 6), ("middle", 10), ("compute", 14)],
        "{frames:?}"
    );
    for (_, file, _) in &frames {
        assert!(file.ends_with("divide.c"), "{file}");
    }
    assert!(error.to_string().contains("divide.c:6"), "{error}");
    println!("{error}");
}
