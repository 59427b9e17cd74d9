//! Whole WASI programs, hand-written in WAT, run through `_start`: hello
//! world to a captured stdout pipe, arguments and environment, a `cat` of a
//! stdin pipe, `proc_exit` codes (through `wasi::run` and as the raw
//! `Error::Terminated`), a timed sleep through `poll_oneoff`, and the C test
//! programs of tests/programs/wasi.

use backstop::{Engine, Error, Instance, Linker, Module, Store};
use backstop_wasi::{self as wasi, ExitCode, WasiCtx, WasiCtxBuilder, WritePipe};
use std::time::{Duration, Instant};

struct State {
    wasi: WasiCtx,
}

/// A store holding `ctx` and the module instantiated in it.
fn instantiate(wat_or_wasm: impl AsRef<[u8]>, ctx: WasiCtx) -> (Store<State>, Instance) {
    let engine = Engine::default();
    let module = Module::new(&engine, wat_or_wasm.as_ref()).expect("module compiles");
    let mut linker = Linker::new(&engine);
    wasi::add_to_linker(&mut linker, |s: &mut State| &mut s.wasi).unwrap();
    let mut store = Store::new(&engine, State { wasi: ctx });
    let instance = linker.instantiate(&mut store, &module).unwrap();
    (store, instance)
}

const HELLO: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "Hello, world!\n")
  (func (export "_start")
    ;; iovec { buf = 16, len = 14 } at 0
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 14))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#;

#[test]
fn hello_world_to_a_stdout_pipe() {
    let stdout = WritePipe::new();
    let (mut store, instance) =
        instantiate(HELLO, WasiCtxBuilder::new().stdout(stdout.clone()).build());
    assert_eq!(wasi::run(&mut store, instance).unwrap(), 0);
    assert_eq!(stdout.contents_string(), "Hello, world!\n");
    // Running it again appends.
    assert_eq!(wasi::run(&mut store, instance).unwrap(), 0);
    assert_eq!(stdout.take(), b"Hello, world!\nHello, world!\n");
    assert!(stdout.contents().is_empty());
}

/// Writes argv's strings to stdout and environ's to stderr (each NUL
/// terminated, as packed by the host), then exits with argc * 10 + envc.
const ARGS_ENV: &str = r#"
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func $check (param i32) (if (local.get 0) (then unreachable)))
  ;; writes [ptr, ptr+len) to fd
  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 32) (local.get $ptr))
    (i32.store (i32.const 36) (local.get $len))
    (call $check (call $fd_write (local.get $fd) (i32.const 32) (i32.const 1) (i32.const 40))))
  (func (export "_start")
    ;; argc at 0, argv size at 4; argv pointers at 1024, strings at 2048
    (call $check (call $args_sizes_get (i32.const 0) (i32.const 4)))
    (call $check (call $args_get (i32.const 1024) (i32.const 2048)))
    ;; argv[0] must point at the start of the buffer
    (if (i32.load (i32.const 0))
      (then (if (i32.ne (i32.load (i32.const 1024)) (i32.const 2048)) (then unreachable))))
    (call $write (i32.const 1) (i32.const 2048) (i32.load (i32.const 4)))
    ;; envc at 8, env size at 12; pointers at 4096, strings at 8192
    (call $check (call $environ_sizes_get (i32.const 8) (i32.const 12)))
    (call $check (call $environ_get (i32.const 4096) (i32.const 8192)))
    (call $write (i32.const 2) (i32.const 8192) (i32.load (i32.const 12)))
    (call $proc_exit
      (i32.add (i32.mul (i32.load (i32.const 0)) (i32.const 10)) (i32.load (i32.const 8))))
    unreachable))
"#;

#[test]
fn args_and_environment() {
    let stdout = WritePipe::new();
    let stderr = WritePipe::new();
    let ctx = WasiCtxBuilder::new()
        .args(["prog", "two words", "--flag=é"])
        .env("HOME", "/sandbox")
        .envs([("EMPTY", ""), ("A", "b=c")])
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .build();
    let (mut store, instance) = instantiate(ARGS_ENV, ctx);
    assert_eq!(wasi::run(&mut store, instance).unwrap(), 33);
    assert_eq!(stdout.contents(), "prog\0two words\0--flag=é\0".as_bytes());
    assert_eq!(stderr.contents(), b"HOME=/sandbox\0EMPTY=\0A=b=c\0");

    // No arguments, no environment.
    let (mut store, instance) = instantiate(ARGS_ENV, WasiCtx::new());
    assert_eq!(wasi::run(&mut store, instance).unwrap(), 0);
}

/// Copies stdin to stdout through a 7-byte buffer until end of file.
const CAT: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $again
      (i32.store (i32.const 0) (i32.const 100))
      (i32.store (i32.const 4) (i32.const 7))
      (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)) (then unreachable))
      (if (i32.eqz (i32.load (i32.const 8))) (then return))
      (i32.store (i32.const 4) (i32.load (i32.const 8)))
      (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)) (then unreachable))
      (br $again))))
"#;

#[test]
fn stdin_from_a_pipe() {
    let input = "line one\nline two, a little longer\n\u{1F600} end";
    let stdout = WritePipe::new();
    let ctx = WasiCtxBuilder::new()
        .stdin(input)
        .stdout(stdout.clone())
        .build();
    let (mut store, instance) = instantiate(CAT, ctx);
    assert_eq!(wasi::run(&mut store, instance).unwrap(), 0);
    assert_eq!(stdout.contents_string(), input);

    // Null stdin (the default) reads as end of file at once.
    let stdout = WritePipe::new();
    let (mut store, instance) =
        instantiate(CAT, WasiCtxBuilder::new().stdout(stdout.clone()).build());
    assert_eq!(wasi::run(&mut store, instance).unwrap(), 0);
    assert!(stdout.contents().is_empty());
}

const EXIT: &str = r#"
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "after exit")
  (func (export "_start")
    (call $proc_exit (i32.const 3))
    ;; never reached
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 10))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#;

#[test]
fn proc_exit_code_reaches_the_embedder() {
    let stdout = WritePipe::new();
    let (mut store, instance) =
        instantiate(EXIT, WasiCtxBuilder::new().stdout(stdout.clone()).build());
    assert_eq!(wasi::run(&mut store, instance).unwrap(), 3);
    assert!(stdout.contents().is_empty(), "nothing runs after proc_exit");

    // The raw error, as documented.
    let error = instance
        .call::<(), ()>(&mut store, "_start", ())
        .unwrap_err();
    let Error::Terminated(details) = error else {
        panic!("expected Error::Terminated, got {error:?}");
    };
    assert_eq!(*details.downcast::<ExitCode>().unwrap(), ExitCode(3));
}

#[test]
fn exit_codes_span_the_u32_range() {
    for code in [0u32, 1, 255, 256, u32::MAX] {
        let wat = EXIT.replace("(i32.const 3)", &format!("(i32.const {})", code as i32));
        let (mut store, instance) = instantiate(wat, WasiCtx::new());
        assert_eq!(wasi::run(&mut store, instance).unwrap(), code);
    }
}

/// Sleeps 25 ms through a relative clock subscription, then checks the
/// event and writes "ok".
const SLEEP: &str = r#"
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 500) "ok")
  (func (export "_start")
    ;; subscription at 0: userdata 42, tag clock, id monotonic, 25 ms, relative
    (i64.store (i32.const 0) (i64.const 42))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 25000000))
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (i32.const 0))
    (if (call $poll (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 200)) (then unreachable))
    (if (i32.ne (i32.load (i32.const 200)) (i32.const 1)) (then unreachable))
    (if (i64.ne (i64.load (i32.const 100)) (i64.const 42)) (then unreachable))
    (if (i32.load16_u (i32.const 108)) (then unreachable))
    (i32.store (i32.const 300) (i32.const 500))
    (i32.store (i32.const 304) (i32.const 2))
    (drop (call $fd_write (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 308)))))
"#;

#[test]
fn poll_oneoff_sleep() {
    let stdout = WritePipe::new();
    let (mut store, instance) =
        instantiate(SLEEP, WasiCtxBuilder::new().stdout(stdout.clone()).build());
    let start = Instant::now();
    assert_eq!(wasi::run(&mut store, instance).unwrap(), 0);
    assert!(start.elapsed() >= Duration::from_millis(25));
    assert_eq!(stdout.contents(), b"ok");
}

#[test]
fn a_module_without_memory_gets_efault() {
    let wat = r#"
    (module
      (import "wasi_snapshot_preview1" "args_sizes_get" (func $f (param i32 i32) (result i32)))
      (func (export "run") (result i32) (call $f (i32.const 0) (i32.const 4))))"#;
    let (mut store, instance) = instantiate(wat, WasiCtxBuilder::new().arg("x").build());
    assert_eq!(instance.call::<(), i32>(&mut store, "run", ()).unwrap(), 21);
}

/// The committed C test programs (tests/programs/wasi, built by build.sh
/// there with clang-14 for wasm32-wasi), run through the Rust API; the
/// `backstop` binary runs the same programs in cli/tests/cli.rs.
fn c_program(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/programs/wasi/{name}.wasm",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("backstop-wasi-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_c(name: &str, builder: WasiCtxBuilder) -> (Result<u32, Error>, String) {
    let stdout = WritePipe::new();
    let (mut store, instance) =
        instantiate(c_program(name), builder.stdout(stdout.clone()).build());
    let result = wasi::run(&mut store, instance);
    (result, stdout.contents_string())
}

#[test]
fn c_hello_with_args_and_env() {
    let (code, out) = run_c(
        "hello",
        WasiCtxBuilder::new()
            .args(["hello", "world"])
            .env("GREETING", "hi"),
    );
    assert_eq!(code.unwrap(), 0);
    assert_eq!(
        out,
        "hello from wasm\narg 0: hello\narg 1: world\nGREETING=hi\n"
    );
}

#[test]
fn c_file_io_and_escapes_in_a_preopened_dir() {
    let dir = TempDir::new("c-fileio");
    let ctx = WasiCtxBuilder::new()
        .preopened_dir(&dir.0, "/sandbox")
        .unwrap();
    let (code, out) = run_c("fileio", ctx);
    assert_eq!(code.unwrap(), 0, "{out}");
    assert!(
        out.ends_with("entry: renamed.txt\nunlinked renamed.txt\n"),
        "{out}"
    );

    let root = TempDir::new("c-escape");
    let sandbox = root.0.join("sandbox");
    std::fs::create_dir(&sandbox).unwrap();
    std::fs::write(root.0.join("outside.txt"), "secret").unwrap();
    let ctx = WasiCtxBuilder::new()
        .preopened_dir(&sandbox, "/sandbox")
        .unwrap();
    let (code, out) = run_c("escape", ctx);
    assert_eq!(code.unwrap(), 0, "{out}");
    assert_eq!(out.matches("blocked").count(), 6, "{out}");
    assert!(!out.contains("ESCAPED"));
    assert!(!root.0.join("moved.txt").exists());
}

#[test]
fn c_stdin_clock_random_and_exit() {
    let (code, out) = run_c("stdin", WasiCtxBuilder::new().stdin("one\ntwo\nthree\n"));
    assert_eq!(
        (code.unwrap(), out.as_str()),
        (0, "read 14 bytes, 3 lines\n")
    );
    let (code, out) = run_c("clock_random", WasiCtxBuilder::new());
    assert_eq!(code.unwrap(), 0);
    assert_eq!(
        out,
        "monotonic clock advanced: yes\nrealtime after 2020: yes\nrandom bytes: yes\n"
    );
    let (code, out) = run_c("exit3", WasiCtxBuilder::new());
    assert_eq!((code.unwrap(), out.as_str()), (3, "exiting with 3\n"));
}

#[test]
fn c_trap_and_kill() {
    let (result, _) = run_c("trap", WasiCtxBuilder::new());
    let error = result.unwrap_err();
    assert_eq!(
        error.trap_code(),
        Some(backstop::TrapCode::MemoryOutOfBounds),
        "{error}"
    );

    let (mut store, instance) = instantiate(c_program("forever"), WasiCtxBuilder::new().build());
    let killer = kill_after(&store, 50);
    assert!(matches!(
        wasi::run(&mut store, instance),
        Err(Error::Killed)
    ));
    killer.join().unwrap();
}

/// A Rust program built with the standard library (tests/programs/rust,
/// built by build.sh there): `File::open` asks `path_open` for rights a
/// read-only directory cannot give (fd_filestat_set_times, fd_sync); the
/// open must still succeed, with what the directory can give.
fn rust_program(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/programs/rust/{name}.wasm",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The files the read-only tests read.
fn read_only_fixture(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    std::fs::write(dir.0.join("a.txt"), "hello\n").unwrap();
    std::fs::write(dir.0.join("b.txt"), "second file\n").unwrap();
    dir
}

#[test]
fn rust_std_reads_files_from_a_read_only_preopen_as_natively() {
    let dir = read_only_fixture("rust-ro");
    // The same source, built for this machine and run on the same
    // directory, is what the guest must print.
    let native = std::env::temp_dir().join(format!("backstop-readfile-{}", std::process::id()));
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let built = std::process::Command::new(rustc)
        .args(["--edition", "2021", "-o"])
        .arg(&native)
        .arg(format!(
            "{}/tests/programs/rust/readfile.rs",
            env!("CARGO_MANIFEST_DIR")
        ))
        .status()
        .expect("rustc runs");
    assert!(built.success());
    let expected = std::process::Command::new(&native)
        .arg(&dir.0)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&native);
    let expected = String::from_utf8(expected.stdout).unwrap();
    assert_eq!(
        expected,
        "a.txt (6 bytes): hello\nb.txt (12 bytes): second file\n"
    );

    // The program's stdout, run with `args` on the directory preopened as
    // /data, read-only or writable.
    let readfile = |args: &[&str], writable: bool| {
        let stdout = WritePipe::new();
        let builder = WasiCtxBuilder::new().args(args).stdout(stdout.clone());
        let builder = if writable {
            builder.preopened_dir(&dir.0, "/data")
        } else {
            builder.preopened_dir_read_only(&dir.0, "/data")
        };
        let (mut store, instance) = instantiate(rust_program("readfile"), builder.unwrap().build());
        assert_eq!(wasi::run(&mut store, instance).unwrap(), 0);
        stdout.contents_string()
    };
    assert_eq!(readfile(&["readfile", "/data"], false), expected);

    // Asked to create a file there, it is refused, and nothing appears.
    assert_eq!(
        readfile(&["readfile", "/data", "create"], false),
        format!("{expected}create: refused (Capabilities insufficient (os error 76))\n")
    );
    assert!(!dir.0.join("created.txt").exists());

    // A writable preopen lets it create.
    assert!(readfile(&["readfile", "/data", "create"], true).ends_with("create: ok\n"));
    assert_eq!(
        std::fs::read(dir.0.join("created.txt")).unwrap(),
        b"written\n"
    );
}

#[test]
fn c_reads_files_from_a_read_only_preopen() {
    let dir = read_only_fixture("c-ro");
    let (code, out) = run_c(
        "readonly",
        WasiCtxBuilder::new()
            .args(["readonly", "/data/a.txt", "/data/b.txt", "create"])
            .preopened_dir_read_only(&dir.0, "/data")
            .unwrap(),
    );
    assert_eq!(code.unwrap(), 0, "{out}");
    assert_eq!(
        out,
        "/data/a.txt (6 bytes): hello\n/data/b.txt (12 bytes): second file\n\
         create: refused (Capabilities insufficient)\n"
    );
    assert!(!dir.0.join("created.txt").exists());
}

#[test]
fn start_with_the_wrong_type_is_refused_in_a_users_words() {
    let cases = [
        (
            r#"(module (func (export "_start") (result i32) i32.const 1))"#,
            "`_start` must take no parameters and return nothing; this one returns i32",
        ),
        (
            r#"(module (func (export "_start") (param i32 i64)))"#,
            "`_start` must take no parameters and return nothing; this one takes (i32, i64)",
        ),
        (
            r#"(module (func (export "_start") (param i32) (result f32 f64) unreachable))"#,
            "`_start` must take no parameters and return nothing; \
             this one takes (i32) and returns f32, f64",
        ),
        (
            r#"(module (memory (export "_start") 1))"#,
            "`_start` is a memory, not a function",
        ),
        (
            r#"(module (func (export "main")))"#,
            "the module exports no `_start` function, so it is not a WASI command",
        ),
    ];
    for (wat, expected) in cases {
        let (mut store, instance) = instantiate(wat, WasiCtxBuilder::new().build());
        match wasi::run(&mut store, instance) {
            Err(Error::InvalidArgument(message)) => assert_eq!(message, expected),
            other => panic!("expected InvalidArgument for {wat}, got {other:?}"),
        }
    }
}

/// `fd_read` on a stdin that never delivers, and `poll_oneoff` sleeping
/// for a minute, are cut short by the kill switch: the run ends with
/// `Error::Killed` promptly, not when the wait would have ended.
#[test]
fn a_kill_cuts_blocking_wasi_calls_short() {
    const SLEEP_A_MINUTE: &str = r#"
    (module
      (import "wasi_snapshot_preview1" "poll_oneoff"
        (func $poll (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      ;; One relative clock subscription: 60 s on the monotonic clock.
      (data (i32.const 0) "\00\00\00\00\00\00\00\00" "\00" "\00\00\00\00\00\00\00"
                          "\01\00\00\00\00\00\00\00" "\00\b0\8e\f0\1b\00\00\00"
                          "\00\00\00\00\00\00\00\00" "\00\00\00\00\00\00\00\00")
      (func (export "_start")
        (drop (call $poll (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 200)))))"#;
    let (mut store, instance) = instantiate(SLEEP_A_MINUTE, WasiCtxBuilder::new().build());
    let killer = kill_after(&store, 100);
    let started = Instant::now();
    assert!(matches!(
        wasi::run(&mut store, instance),
        Err(Error::Killed)
    ));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the sleep was not cut short"
    );
    assert_eq!(
        killer.join().unwrap(),
        backstop::KillOutcome::PendingInHostcall
    );
    // The store stays usable: a kill of the next run lands too.
    let killer = kill_after(&store, 50);
    assert!(matches!(
        wasi::run(&mut store, instance),
        Err(Error::Killed)
    ));
    killer.join().unwrap();
}

/// Fires `store`'s kill switch from another thread after `ms`.
fn kill_after(store: &Store<State>, ms: u64) -> std::thread::JoinHandle<backstop::KillOutcome> {
    let switch = store.kill_switch();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(ms));
        switch.terminate()
    })
}
