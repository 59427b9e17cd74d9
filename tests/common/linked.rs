//! Two modules linked to each other, shared by the store tests: `EXPORTER`
//! defines a memory, a table, a global and functions; `IMPORTER` imports
//! them and calls through them.

pub const EXPORTER: &str = r#"
    (module
      (memory (export "memory") 1 4)
      (table (export "table") 2 funcref)
      (global (export "counter") (mut i32) (i32.const 0))
      (func $inc (export "inc") (result i32)
        (global.set 0 (i32.add (global.get 0) (i32.const 1)))
        (global.get 0))
      (func (export "spin") (loop $l (br $l)))
      (elem (i32.const 0) $inc))
"#;

pub const IMPORTER: &str = r#"
    (module
      (import "lib" "memory" (memory 1))
      (import "lib" "table" (table 2 funcref))
      (import "lib" "inc" (func $inc (result i32)))
      (import "lib" "spin" (func $spin))
      (type $r (func (result i32)))
      (func (export "twice") (result i32)
        (drop (call $inc))
        (call_indirect (type $r) (i32.const 0)))
      (func (export "spin_there") (call $spin))
      (func (export "peek") (result i32) (i32.load (i32.const 0))))
"#;
