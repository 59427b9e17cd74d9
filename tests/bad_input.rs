//! Bad input gives a clear `Err`, never a panic or an abort: empty, garbage
//! and truncated binaries, modules that fail validation, components, features
//! outside Wasm 2.0, invalid text; link errors (missing imports, wrong kind,
//! wrong function type, wrong global mutability or type, memory and table
//! limits); unknown exports and wrongly typed arguments; out-of-range host
//! memory accesses; modules, stores and functions of another engine, and
//! items of another store.

use backstop::{
    Engine, Error, FuncType, Global, GlobalType, Instance, Linker, Memory, MemoryType, Module,
    Store, Table, TableType, Val, ValType, V128,
};

fn engine() -> Engine {
    Engine::default()
}

#[track_caller]
fn expect_invalid(bytes: &[u8]) -> String {
    match Module::new(&engine(), bytes) {
        Err(Error::Invalid(m)) => m,
        Err(other) => panic!("expected Error::Invalid, got {other:?}"),
        Ok(_) => panic!("expected Error::Invalid, the module compiled"),
    }
}

#[test]
fn empty_bytes() {
    let m = expect_invalid(b"");
    println!("empty: {m}");
    assert!(matches!(
        Module::validate(&Engine::default(), b""),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn garbage_bytes() {
    for bytes in [
        &b"\xff\xfe\xfd\x00\x01garbage"[..],
        &b"\0asm"[..],
        &b"\0asm\x02\x00\x00\x00"[..],
        &b"\0asm\x01\x00\x00\x00\xff\x00"[..],
        &b"\0asm\x01\x00\x00\x00\x01\xff\xff\xff\xff\x0f"[..],
        &[0u8; 64][..],
        &[0xffu8; 64][..],
    ] {
        let m = expect_invalid(bytes);
        println!("{bytes:02x?}: {m}");
        assert!(Module::validate(&Engine::default(), bytes).is_err());
    }
    // Pseudo-random bytes behind a valid header.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for len in 0..200 {
        let mut bytes = b"\0asm\x01\x00\x00\x00".to_vec();
        for _ in 0..len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.push(state as u8);
        }
        // Mostly errors; whatever it is, it must not panic.
        let result = Module::new(&engine(), &bytes);
        if len == 0 {
            assert!(result.is_ok(), "the empty module is valid");
        }
    }
}

/// A module using most sections, with a name section.
const RICH_WAT: &str = r#"
(module $rich
  (type $t (func (param i32) (result i32)))
  (import "env" "f" (func $imp (type $t)))
  (import "env" "g" (global $g i32))
  (table $tab 2 funcref)
  (memory $mem 1 2)
  (global $h (mut i64) (i64.const 5))
  (export "run" (func $run))
  (export "mem" (memory $mem))
  (start $init)
  (elem (i32.const 0) $run $imp)
  (data (i32.const 8) "hello")
  (func $init (global.set $h (i64.const 6)))
  (func $run (type $t)
    (local $x i32)
    (local.set $x (call $imp (local.get 0)))
    (i32.add (local.get $x) (global.get $g))))
"#;

/// The end of the header and of every section of a module binary (each
/// but the last is also where the next section starts).
fn section_ends(binary: &[u8]) -> Vec<usize> {
    fn leb(bytes: &[u8], pos: &mut usize) -> usize {
        let (mut value, mut shift) = (0usize, 0);
        loop {
            let b = bytes[*pos];
            *pos += 1;
            value |= ((b & 0x7f) as usize) << shift;
            if b & 0x80 == 0 {
                return value;
            }
            shift += 7;
        }
    }
    let mut ends = vec![8];
    let mut pos = 8;
    while pos < binary.len() {
        pos += 1; // id
        let size = leb(binary, &mut pos);
        pos += size;
        ends.push(pos);
    }
    assert_eq!(pos, binary.len());
    ends
}

#[test]
fn truncated_module_at_every_length() {
    let binary = wat::parse_str(RICH_WAT).unwrap();
    let engine = engine();
    // The full module is valid.
    Module::new(&engine, &binary).unwrap();
    let boundaries = section_ends(&binary);
    println!("{} bytes, section ends {boundaries:?}", binary.len());
    let mut errors = 0;
    for len in 0..binary.len() {
        let cut = &binary[..len];
        let result = Module::new(&engine, cut);
        let validated = Module::validate(&Engine::default(), cut);
        assert_eq!(
            result.is_ok(),
            validated.is_ok(),
            "compile and validate disagree on a cut at {len}"
        );
        match result {
            Err(Error::Invalid(_)) => errors += 1,
            Err(other) => panic!("cut at {len}: expected Error::Invalid, got {other:?}"),
            // A cut that ends exactly at a section boundary is a complete
            // (shorter) module; it may validate. Nothing else may.
            Ok(_) => assert!(
                boundaries.contains(&len),
                "a module cut at {len} (inside a section) compiled"
            ),
        }
    }
    // At least every cut inside a section failed.
    assert!(errors >= binary.len() - boundaries.len(), "{errors} errors");
    // At a section boundary, the prefix is a complete module, valid unless
    // it declares functions (function section, id 3) without their bodies
    // (code section, id 10).
    for &len in &boundaries[..boundaries.len() - 1] {
        let cut = &binary[..len];
        let expected = !has_section(cut, 3) || has_section(cut, 10);
        assert_eq!(
            Module::new(&engine, cut).is_ok(),
            expected,
            "cut at section boundary {len}"
        );
    }
}

/// Whether a complete module binary has a section with this id.
fn has_section(binary: &[u8], id: u8) -> bool {
    let ends = section_ends(binary);
    ends[..ends.len() - 1]
        .iter()
        .any(|&start| binary[start] == id)
}

#[test]
fn invalid_module_type_error() {
    for wat in [
        r#"(module (func (result i32) (i64.const 1)))"#,
        r#"(module (func (param i32) (result i32) (f32.add (local.get 0) (local.get 0))))"#,
        r#"(module (func (result i32)))"#,
        r#"(module (func (call 5)))"#,
        r#"(module (global i32 (i32.const 0)) (func (global.set 0 (i32.const 1))))"#,
        r#"(module (func (drop (i32.load (i32.const 0)))))"#,
        r#"(module (memory 2 1))"#,
        r#"(module (memory 65537))"#,
        r#"(module (func) (export "a" (func 0)) (export "a" (func 0)))"#,
    ] {
        let m = expect_invalid(wat.as_bytes());
        println!("{wat}\n  -> {m}");
    }
}

#[test]
fn validate_checks_function_bodies() {
    for wat in [
        r#"(module (func (result i32) (i64.const 1)))"#,
        r#"(module (func (result i32)))"#,
        r#"(module (func $f (result i32) (i32.const 1))
             (func (result i32) (return_call $f)))"#,
        r#"(module (tag $e) (func (throw $e)))"#,
    ] {
        assert!(Module::new(&engine(), wat).is_err(), "{wat}");
        assert!(
            Module::validate(&Engine::default(), wat).is_err(),
            "Module::validate accepted what Module::new rejects: {wat}"
        );
    }
}

#[test]
fn component_bytes_are_unsupported() {
    let bytes = b"\0asm\x0d\x00\x01\x00";
    match Module::new(&engine(), bytes) {
        Err(Error::Unsupported(m)) => {
            println!("component: {m}");
            assert!(m.contains("component"), "{m}");
        }
        other => panic!("expected Error::Unsupported, got {other:?}"),
    }
    // A real (empty) component from the text format.
    let component = wat::parse_str("(component)").unwrap();
    assert!(matches!(
        Module::new(&engine(), &component),
        Err(Error::Unsupported(m)) if m.contains("component")
    ));
}

/// Every proposal beyond Wasm 2.0 is `Error::Unsupported` naming it (not
/// `Error::Invalid` with the validator's wording), through `Module::new`
/// and `Module::validate` alike, so an embedder can tell a broken module
/// from one that needs a feature Backstop lacks.
#[test]
fn features_outside_wasm_2_are_unsupported_and_named() {
    let cases = [
        ("threads", r#"(module (memory 1 1 shared))"#),
        (
            "threads",
            r#"(module (memory 1 1 shared)
                 (func (result i32) (i32.atomic.load (i32.const 0))))"#,
        ),
        (
            "threads",
            r#"(module (memory 1 1)
                 (func (result i32) (i32.atomic.load (i32.const 0))))"#,
        ),
        ("memory64", r#"(module (memory i64 1))"#),
        (
            "memory64",
            r#"(module (memory i64 1) (func (drop (i64.load (i64.const 0)))))"#,
        ),
        ("exception handling", r#"(module (tag $e (param i32)))"#),
        (
            "exception handling",
            r#"(module (tag $e) (func (throw $e)))"#,
        ),
        (
            "exception handling",
            r#"(module (func (try_table (catch_all 0)) ))"#,
        ),
        (
            "exception handling (legacy",
            r#"(module (func try catch_all end))"#,
        ),
        (
            "tail calls",
            r#"(module (func $f (result i32) (i32.const 1))
                 (func (result i32) (return_call $f)))"#,
        ),
        (
            "tail calls",
            r#"(module (type $t (func)) (table 1 funcref)
                 (func (return_call_indirect (type $t) (i32.const 0))))"#,
        ),
        ("GC", r#"(module (type (struct (field i32))))"#),
        (
            "GC",
            r#"(module (func (result i32) (i31.get_s (ref.i31 (i32.const 1)))))"#,
        ),
        (
            "typed function references",
            r#"(module (type $t (func)) (func (param (ref $t))))"#,
        ),
        (
            "typed function references",
            r#"(module (type $t (func)) (func (param (ref null $t)) (call_ref $t (local.get 0))))"#,
        ),
    ];
    for (proposal, wat) in cases {
        let bytes = wat::parse_str(wat).unwrap_or_else(|e| panic!("{wat}: {e}"));
        for (how, result) in [
            ("new", Module::new(&engine(), &bytes).map(drop)),
            ("validate", Module::validate(&Engine::default(), &bytes)),
        ] {
            match result {
                Err(Error::Unsupported(m)) => {
                    println!("{proposal} ({how}): {m}");
                    assert!(
                        m.starts_with(proposal),
                        "{how}: expected `{proposal}` first, got `{m}` for {wat}"
                    );
                }
                Err(other) => panic!("{proposal} ({how}): expected Unsupported, got {other:?}"),
                Ok(()) => panic!("{proposal} ({how}): a module outside Wasm 2.0 compiled"),
            }
        }
    }
    // A broken module stays `Invalid`, even when it also looks like a
    // proposal's: a type error is a type error under every feature set.
    for wat in [
        r#"(module (func (result i32) (i64.const 0)))"#,
        r#"(module (func $f (result i32) (i32.const 1)) (func (return_call $f)))"#,
    ] {
        match Module::new(&engine(), wat) {
            Err(Error::Invalid(m)) => println!("broken: {m}"),
            other => panic!("expected Invalid for {wat}, got {other:?}"),
        }
    }
}

#[test]
fn invalid_text() {
    for text in [
        "(module",
        "(module (func (i32.frobnicate)))",
        "(modle)",
        "hello",
        "(module (func $f) (func $f))",
        "\u{1F600}",
    ] {
        let m = expect_invalid(text.as_bytes());
        println!("{text:?}: {m}");
    }
    // Neither binary nor UTF-8.
    let m = expect_invalid(&[0xc3, 0x28, 0xa0, 0xa1]);
    println!("non-UTF-8: {m}");
}

#[track_caller]
fn expect_link_error(result: Result<Instance, Error>) -> String {
    match result {
        Err(Error::Link(m)) => {
            println!("{m}");
            m
        }
        Err(other) => panic!("expected Error::Link, got {other:?}"),
        Ok(_) => panic!("expected Error::Link, instantiation succeeded"),
    }
}

#[test]
fn missing_import() {
    let engine = engine();
    let module = Module::new(
        &engine,
        r#"(module
             (import "env" "present" (func))
             (import "env" "absent_fn" (func (param i32))))"#,
    )
    .unwrap();
    let mut store = Store::new(&engine, ());
    let mut linker = Linker::new(&engine);
    linker.func_wrap("env", "present", || {}).unwrap();
    let m = expect_link_error(linker.instantiate(&mut store, &module));
    assert!(m.contains("absent_fn") && m.contains("env"), "{m}");
    // Same name in another module does not count.
    linker.func_wrap("other", "absent_fn", |_: i32| {}).unwrap();
    let m = expect_link_error(linker.instantiate(&mut store, &module));
    assert!(m.contains("absent_fn"), "{m}");
    // Defining it makes it work.
    linker.func_wrap("env", "absent_fn", |_: i32| {}).unwrap();
    linker.instantiate(&mut store, &module).unwrap();
}

#[test]
fn import_of_wrong_kind() {
    let engine = engine();
    let mut store = Store::new(&engine, ());
    let memory = Memory::new(
        &mut store,
        MemoryType {
            minimum: 1,
            maximum: None,
        },
    )
    .unwrap();
    let global = Global::new(
        &mut store,
        GlobalType {
            content: ValType::I32,
            mutable: false,
        },
        Val::I32(1),
    )
    .unwrap();
    let table = Table::new(
        &mut store,
        TableType {
            element: ValType::FuncRef,
            minimum: 1,
            maximum: None,
        },
        Val::FuncRef(None),
    )
    .unwrap();
    let mut linker: Linker<()> = Linker::new(&engine);
    linker.func_wrap("env", "func", || {}).unwrap();
    linker.define("env", "memory", memory).unwrap();
    linker.define("env", "global", global).unwrap();
    linker.define("env", "table", table).unwrap();
    for (import, provided) in [
        ("(func)", "memory"),
        ("(func)", "global"),
        ("(func)", "table"),
        ("(memory 1)", "func"),
        ("(memory 1)", "table"),
        ("(global i32)", "func"),
        ("(global i32)", "memory"),
        ("(table 1 funcref)", "global"),
        ("(table 1 funcref)", "func"),
    ] {
        let wat = format!(r#"(module (import "env" "{provided}" {import}))"#);
        let module = Module::new(&engine, &wat).unwrap();
        let m = expect_link_error(linker.instantiate(&mut store, &module));
        assert!(m.contains(provided), "{wat}: {m}");
    }
}

#[test]
fn import_of_wrong_function_type() {
    let engine = engine();
    let mut store = Store::new(&engine, ());
    let mut linker: Linker<()> = Linker::new(&engine);
    linker.func_wrap("env", "f", |x: i32| x).unwrap();
    for import in [
        "(func (param i64) (result i64))",
        "(func (param i32))",
        "(func (result i32))",
        "(func (param i32) (result i32 i32))",
        "(func (param i32 i32) (result i32))",
        "(func (param f32) (result i32))",
    ] {
        let wat = format!(r#"(module (import "env" "f" {import}))"#);
        let module = Module::new(&engine, &wat).unwrap();
        let m = expect_link_error(linker.instantiate(&mut store, &module));
        assert!(m.contains("env") && m.contains('f'), "{m}");
    }
    // A dynamically typed host function is checked the same way.
    let mut linker: Linker<()> = Linker::new(&engine);
    linker
        .func_new("env", "f", FuncType::new([ValType::I64], []), |_, _, _| {
            Ok(())
        })
        .unwrap();
    let module = Module::new(&engine, r#"(module (import "env" "f" (func (param i32))))"#).unwrap();
    expect_link_error(linker.instantiate(&mut store, &module));
    // The right type links.
    let module = Module::new(&engine, r#"(module (import "env" "f" (func (param i64))))"#).unwrap();
    linker.instantiate(&mut store, &module).unwrap();
}

#[test]
fn import_of_wrong_global_type_or_mutability() {
    let engine = engine();
    let mut store = Store::new(&engine, ());
    let global = |store: &mut Store<()>, content, mutable| {
        Global::new(
            store,
            GlobalType { content, mutable },
            Val::default_for(content),
        )
        .unwrap()
    };
    let mut linker: Linker<()> = Linker::new(&engine);
    linker
        .define("env", "const_i32", global(&mut store, ValType::I32, false))
        .unwrap();
    linker
        .define("env", "mut_i32", global(&mut store, ValType::I32, true))
        .unwrap();
    for (import, name) in [
        ("(global (mut i32))", "const_i32"),
        ("(global i32)", "mut_i32"),
        ("(global i64)", "const_i32"),
        ("(global (mut f32))", "mut_i32"),
    ] {
        let wat = format!(r#"(module (import "env" "{name}" {import}))"#);
        let module = Module::new(&engine, &wat).unwrap();
        let m = expect_link_error(linker.instantiate(&mut store, &module));
        assert!(m.contains(name), "{m}");
    }
    for (import, name) in [
        ("(global (mut i32))", "mut_i32"),
        ("(global i32)", "const_i32"),
    ] {
        let wat = format!(r#"(module (import "env" "{name}" {import}))"#);
        let module = Module::new(&engine, &wat).unwrap();
        linker.instantiate(&mut store, &module).unwrap();
    }
}

#[test]
fn import_of_memory_or_table_with_wrong_limits() {
    let engine = engine();
    let mut store = Store::new(&engine, ());
    let mut linker: Linker<()> = Linker::new(&engine);
    let small = Memory::new(
        &mut store,
        MemoryType {
            minimum: 1,
            maximum: Some(2),
        },
    )
    .unwrap();
    let unbounded = Memory::new(
        &mut store,
        MemoryType {
            minimum: 1,
            maximum: None,
        },
    )
    .unwrap();
    linker.define("env", "small", small).unwrap();
    linker.define("env", "unbounded", unbounded).unwrap();
    let table = Table::new(
        &mut store,
        TableType {
            element: ValType::FuncRef,
            minimum: 2,
            maximum: Some(4),
        },
        Val::FuncRef(None),
    )
    .unwrap();
    linker.define("env", "table", table).unwrap();
    for (import, name) in [
        ("(memory 2)", "small"),          // too small
        ("(memory 1 1)", "small"),        // maximum too large
        ("(memory 1 5)", "unbounded"),    // no maximum, one required
        ("(table 3 funcref)", "table"),   // too small
        ("(table 1 3 funcref)", "table"), // maximum too large
        ("(table 1 externref)", "table"), // wrong element type
    ] {
        let wat = format!(r#"(module (import "env" "{name}" {import}))"#);
        let module = Module::new(&engine, &wat).unwrap();
        let m = expect_link_error(linker.instantiate(&mut store, &module));
        assert!(m.contains(name), "{m}");
    }
    // The current size counts, not the declared minimum.
    small.grow(&mut store, 1).unwrap();
    let module = Module::new(&engine, r#"(module (import "env" "small" (memory 2 2)))"#).unwrap();
    linker.instantiate(&mut store, &module).unwrap();
    let module = Module::new(
        &engine,
        r#"(module (import "env" "table" (table 2 4 funcref)))"#,
    )
    .unwrap();
    linker.instantiate(&mut store, &module).unwrap();
}

const CALLS_WAT: &str = r#"
(module
  (memory (export "memory") 1)
  (global (export "g") i32 (i32.const 0))
  (func (export "add") (param i32 i64) (result i64)
    (i64.add (i64.extend_i32_s (local.get 0)) (local.get 1)))
  (func (export "nothing")))
"#;

#[track_caller]
fn expect_invalid_argument<R: std::fmt::Debug>(result: Result<R, Error>) -> String {
    match result {
        Err(Error::InvalidArgument(m)) => {
            println!("{m}");
            m
        }
        other => panic!("expected Error::InvalidArgument, got {other:?}"),
    }
}

#[test]
fn unknown_export_name() {
    let engine = engine();
    let module = Module::new(&engine, CALLS_WAT).unwrap();
    let mut store = Store::new(&engine, ());
    let i = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let m = expect_invalid_argument(i.call::<(), ()>(&mut store, "missing", ()));
    assert!(m.contains("missing"), "{m}");
    expect_invalid_argument(i.call_dynamic(&mut store, "missing", &[]));
    expect_invalid_argument(i.get_typed_func::<(), ()>(&store, "missing").map(|_| ()));
    // Exports of another kind are not functions.
    expect_invalid_argument(i.call::<(), ()>(&mut store, "memory", ()));
    expect_invalid_argument(i.call_dynamic(&mut store, "g", &[]));
    assert!(i.get_func(&store, "memory").is_none());
    assert!(i.get_memory(&store, "add").is_none());
    assert!(i.get_global(&store, "nothing").is_none());
    assert!(i.get_table(&store, "g").is_none());
    // The store is fine.
    assert_eq!(
        i.call::<(i32, i64), i64>(&mut store, "add", (-1, 10))
            .unwrap(),
        9
    );
}

#[test]
fn wrong_argument_count_and_types() {
    let engine = engine();
    let module = Module::new(&engine, CALLS_WAT).unwrap();
    let mut store = Store::new(&engine, ());
    let i = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    // Typed calls: wrong parameter types, count, result types.
    expect_invalid_argument(i.call::<(i64, i64), i64>(&mut store, "add", (1, 2)));
    expect_invalid_argument(i.call::<(i32, i32), i64>(&mut store, "add", (1, 2)));
    expect_invalid_argument(i.call::<i32, i64>(&mut store, "add", 1));
    expect_invalid_argument(i.call::<(i32, i64, i32), i64>(&mut store, "add", (1, 2, 3)));
    expect_invalid_argument(i.call::<(i32, i64), i32>(&mut store, "add", (1, 2)));
    expect_invalid_argument(i.call::<(i32, i64), ()>(&mut store, "add", (1, 2)));
    expect_invalid_argument(i.call::<(i32, i64), (i64, i64)>(&mut store, "add", (1, 2)));
    expect_invalid_argument(i.call::<(), i32>(&mut store, "nothing", ()));
    expect_invalid_argument(i.call::<i32, ()>(&mut store, "nothing", 0));
    expect_invalid_argument(
        i.get_typed_func::<(u32, u32), u64>(&store, "add")
            .map(|_| ()),
    );
    // Dynamic calls: count.
    let m = expect_invalid_argument(i.call_dynamic(&mut store, "add", &[Val::I32(1)]));
    assert!(m.contains('2'), "{m}");
    expect_invalid_argument(i.call_dynamic(&mut store, "add", &[]));
    expect_invalid_argument(i.call_dynamic(
        &mut store,
        "add",
        &[Val::I32(1), Val::I64(2), Val::I64(3)],
    ));
    expect_invalid_argument(i.call_dynamic(&mut store, "nothing", &[Val::I32(1)]));
    // Dynamic calls: types.
    for args in [
        [Val::I64(1), Val::I64(2)],
        [Val::I32(1), Val::I32(2)],
        [Val::F32(0), Val::I64(2)],
        [Val::I32(1), Val::F64(0)],
        [Val::I32(1), Val::V128(V128(0))],
        [Val::I32(1), Val::FuncRef(None)],
        [Val::ExternRef(None), Val::I64(2)],
    ] {
        let m = expect_invalid_argument(i.call_dynamic(&mut store, "add", &args));
        assert!(m.contains("argument"), "{m}");
    }
    // Unsigned Rust types map to the same Wasm types.
    assert_eq!(
        i.call::<(u32, u64), u64>(&mut store, "add", (1, 2))
            .unwrap(),
        3
    );
    assert_eq!(
        i.call_dynamic(&mut store, "add", &[Val::I32(1), Val::I64(2)])
            .unwrap(),
        vec![Val::I64(3)]
    );
}

#[test]
fn host_memory_access_out_of_range() {
    let engine = engine();
    let module = Module::new(&engine, CALLS_WAT).unwrap();
    let mut store = Store::new(&engine, ());
    let i = Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let memory = i.get_memory(&store, "memory").unwrap();
    let size = memory.data_size(&store);
    assert_eq!(size, 65536);
    let mut buf = [0u8; 8];
    memory.read(&store, size - 8, &mut buf).unwrap();
    memory.write(&mut store, size - 8, &[1; 8]).unwrap();
    memory.read(&store, size, &mut []).unwrap();
    for (offset, len) in [
        (size - 7, 8),
        (size, 1),
        (size + 1, 0),
        (usize::MAX, 1),
        (usize::MAX, 0),
        (usize::MAX - 3, 8),
        (1 << 40, 1),
    ] {
        let mut buf = vec![0u8; len];
        match memory.read(&store, offset, &mut buf) {
            Err(Error::MemoryAccess(m)) => println!("read {len} at {offset}: {m}"),
            other => panic!("read {len} at {offset}: expected MemoryAccess, got {other:?}"),
        }
        match memory.write(&mut store, offset, &buf) {
            Err(Error::MemoryAccess(_)) => {}
            other => panic!("write {len} at {offset}: expected MemoryAccess, got {other:?}"),
        }
    }
    // The failed write at size-7 wrote nothing.
    memory.read(&store, size - 8, &mut buf).unwrap();
    assert_eq!(buf, [1; 8]);
    // A memory that grows accepts the new range.
    memory.grow(&mut store, 1).unwrap();
    memory.write(&mut store, size, &[2; 8]).unwrap();
}

#[test]
fn modules_and_items_of_another_engine() {
    let a = engine();
    let b = engine();
    let module_a = Module::new(&a, CALLS_WAT).unwrap();
    let linker_b: Linker<()> = Linker::new(&b);
    let mut store_a = Store::new(&a, ());
    let mut store_b = Store::new(&b, ());
    let m = expect_link_error(linker_b.instantiate(&mut store_b, &module_a));
    assert!(m.contains("engine"), "{m}");
    // A module of the linker's engine into a store of another engine.
    let importer = Module::new(
        &b,
        r#"(module (import "a" "add" (func (param i32 i64) (result i64))))"#,
    )
    .unwrap();
    let m = expect_link_error(linker_b.instantiate(&mut store_a, &importer));
    assert!(m.contains("engine"), "{m}");
    // A function of an instance of another engine as an import. Such a
    // function necessarily belongs to another store (a store has one
    // engine), and the store model refuses it as that: the link error
    // names the other store rather than the engine.
    let instance_a = Linker::new(&a)
        .instantiate(&mut store_a, &module_a)
        .unwrap();
    let mut linker_b: Linker<()> = Linker::new(&b);
    linker_b.instance(&store_a, "a", instance_a).unwrap();
    let m = expect_link_error(linker_b.instantiate(&mut store_b, &importer));
    assert!(m.contains("another store"), "{m}");
    // Calling a function of another engine's instance.
    let module_b = Module::new(&b, CALLS_WAT).unwrap();
    Linker::new(&b)
        .instantiate(&mut store_b, &module_b)
        .unwrap();
    let add_a = instance_a.get_func(&store_a, "add").unwrap();
    expect_invalid_argument(add_a.call(&mut store_b, &[Val::I32(1), Val::I64(2)]));
    let typed_a = instance_a
        .get_typed_func::<(i32, i64), i64>(&store_a, "add")
        .unwrap();
    expect_invalid_argument(typed_a.call(&mut store_b, (1, 2)));
    // Both stores are fine.
    assert_eq!(typed_a.call(&mut store_a, (1, 2)).unwrap(), 3);
}

#[test]
fn engine_config_out_of_range() {
    let mut config = backstop::Config::new();
    config.memory_reservation(1000);
    assert!(matches!(
        Engine::new(&config),
        Err(Error::InvalidArgument(_))
    ));
    let mut config = backstop::Config::new();
    config.stack_size(100);
    assert!(matches!(
        Engine::new(&config),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn instantiation_needing_too_much_memory() {
    let mut config = backstop::Config::new();
    config.max_memory_pages(4);
    let engine = Engine::new(&config).unwrap();
    let module = Module::new(&engine, "(module (memory 5))").unwrap();
    let mut store = Store::new(&engine, ());
    match Linker::<()>::new(&engine).instantiate(&mut store, &module) {
        Err(Error::Resource(m)) => println!("{m}"),
        other => panic!("expected Error::Resource, got {other:?}"),
    }
    let module = Module::new(&engine, "(module (memory 4))").unwrap();
    Linker::<()>::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
}

#[test]
fn memory_of_an_engine_with_a_smaller_reservation() {
    let mut config = backstop::Config::new();
    config
        .memory_reservation(1 << 20)
        .memory_guard_size(64 << 10);
    let small = Engine::new(&config).unwrap();
    let span = (1usize << 20) + (64 << 10);
    // A page of our own, mapped just before the memory: with top-down mmap
    // placement, it usually lands right after the memory's mapping.
    // SAFETY: a fresh anonymous mapping.
    let target = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            65536,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(target, libc::MAP_FAILED);
    let target = target as usize;
    let mut small_store = Store::new(&small, ());
    let memory = Memory::new(
        &mut small_store,
        MemoryType {
            minimum: 1,
            maximum: None,
        },
    )
    .unwrap();
    // The memory's base address, through an instance of its own engine.
    let exporter = Module::new(
        &small,
        r#"(module (import "h" "m" (memory 1)) (export "m" (memory 0)))"#,
    )
    .unwrap();
    let mut linker: Linker<()> = Linker::new(&small);
    linker.define("h", "m", memory).unwrap();
    let base = linker
        .instantiate(&mut small_store, &exporter)
        .unwrap()
        .get_memory(&small_store, "m")
        .unwrap()
        .data(&small_store)
        .as_ptr() as usize;

    let big = Engine::default();
    let module = Module::new(
        &big,
        r#"(module (import "h" "m" (memory 1))
             (func (export "store") (param i32) (i32.store (local.get 0) (i32.const 0x11223344))))"#,
    )
    .unwrap();
    // The memory belongs to a store of the small engine; a store of the
    // big one may refuse it (as an item of another store), or must keep
    // the guest inside it.
    let mut big_store = Store::new(&big, ());
    let mut linker: Linker<()> = Linker::new(&big);
    linker.define("h", "m", memory).unwrap();
    let instance = match linker.instantiate(&mut big_store, &module) {
        Err(Error::Link(m)) => return println!("refused: {m}"),
        Err(other) => panic!("expected a link error, got {other:?}"),
        Ok(i) => i,
    };
    // Past the memory (1 page) and past its reservation and guard: must trap.
    let offset = if target == base + span {
        target - base + 16
    } else {
        span + 16
    };
    let result = instance.call::<i32, ()>(&mut big_store, "store", offset as i32);
    // SAFETY: our own mapping.
    let foreign = unsafe { std::ptr::read_volatile((target + 16) as *const u32) };
    assert_eq!(foreign, 0, "the guest wrote into unrelated memory");
    assert_eq!(
        result.map_err(|e| e.trap_code()),
        Err(Some(backstop::TrapCode::MemoryOutOfBounds))
    );
}

#[test]
fn table_of_another_engine() {
    let a = engine();
    let b = engine();
    // In engine A the first registered type is (i64 i64 i64 i64) -> i64 ...
    let module_a = Module::new(
        &a,
        r#"(module
             (type (func (param i64 i64 i64 i64) (result i64)))
             (table (export "t") 1 funcref)
             (elem (i32.const 0) $f)
             (func $f (type 0) (i64.add (local.get 3) (i64.const 1))))"#,
    )
    .unwrap();
    let mut store_a = Store::new(&a, ());
    let instance_a = Linker::<()>::new(&a)
        .instantiate(&mut store_a, &module_a)
        .unwrap();
    // ... in engine B it is () -> i32.
    let module_b = Module::new(
        &b,
        r#"(module
             (type (func (result i32)))
             (import "a" "t" (table 1 funcref))
             (func (export "run") (result i32) (call_indirect (type 0) (i32.const 0))))"#,
    )
    .unwrap();
    let mut linker: Linker<()> = Linker::new(&b);
    linker
        .define("a", "t", instance_a.get_table(&store_a, "t").unwrap())
        .unwrap();
    // The table is an item of another store (of engine A): refusing it is
    // right; running must not call A's function with B's signature.
    let mut store_b = Store::new(&b, ());
    let instance_b = match linker.instantiate(&mut store_b, &module_b) {
        Err(Error::Link(m)) => return println!("refused: {m}"),
        Err(other) => panic!("expected a link error, got {other:?}"),
        Ok(i) => i,
    };
    let result = instance_b.call::<(), i32>(&mut store_b, "run", ());
    assert_eq!(
        result.map_err(|e| e.trap_code()),
        Err(Some(backstop::TrapCode::BadSignature))
    );
}

#[test]
fn funcref_argument_of_another_engine() {
    let a = engine();
    let b = engine();
    let module_a = Module::new(
        &a,
        r#"(module
             (type (func (param i64 i64 i64 i64) (result i64)))
             (func (export "f") (type 0) (i64.add (local.get 3) (i64.const 1))))"#,
    )
    .unwrap();
    let mut store_a = Store::new(&a, ());
    let f = Linker::<()>::new(&a)
        .instantiate(&mut store_a, &module_a)
        .unwrap()
        .get_func(&store_a, "f")
        .unwrap();
    let module_b = Module::new(
        &b,
        r#"(module
             (type (func (result i32)))
             (table 1 funcref)
             (func (export "run") (param funcref) (result i32)
               (table.set 0 (i32.const 0) (local.get 0))
               (call_indirect (type 0) (i32.const 0))))"#,
    )
    .unwrap();
    let mut store_b = Store::new(&b, ());
    let instance_b = Linker::<()>::new(&b)
        .instantiate(&mut store_b, &module_b)
        .unwrap();
    match instance_b.call_dynamic(&mut store_b, "run", &[Val::FuncRef(Some(f))]) {
        Err(Error::InvalidArgument(m)) => println!("refused: {m}"),
        Err(e) => assert_eq!(e.trap_code(), Some(backstop::TrapCode::BadSignature)),
        Ok(r) => panic!("a function of another engine ran with the wrong signature: {r:?}"),
    }
}
