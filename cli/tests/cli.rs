//! The `backstop` binary runs the C test programs (wasi/tests/programs/wasi, built
//! from C with clang-14 for wasm32-wasi) and plain exports, with the expected
//! output and exit statuses: the guest's code, 134 for a trap, 124 for a
//! timeout, 1 for other errors.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn program(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../wasi/tests/programs/wasi")
        .join(format!("{name}.wasm"))
}

fn backstop(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_backstop"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the backstop binary runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "backstop-cli-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
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

#[test]
fn hello_with_args_and_env() {
    let hello = program("hello");
    let out = backstop(
        &[
            "run",
            "--env",
            "GREETING=hi there",
            hello.to_str().unwrap(),
            "one",
            "--two",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("hello from wasm\n"), "{stdout}");
    assert!(
        stdout.contains("arg 1: one\n") && stdout.contains("arg 2: --two\n"),
        "{stdout}"
    );
    assert!(stdout.contains("GREETING=hi there\n"), "{stdout}");
}

#[test]
fn file_io_in_a_preopened_dir() {
    let dir = TempDir::new("fileio");
    let mapping = format!("{}::/sandbox", dir.0.display());
    let out = backstop(
        &[
            "run",
            "--dir",
            &mapping,
            program("fileio").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "created note.txt\nread back: backstop was here\nrenamed to renamed.txt\n\
         entry: renamed.txt\nunlinked renamed.txt\n"
    );
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 0);
}

#[test]
fn every_escape_attempt_is_blocked() {
    let root = TempDir::new("escape");
    let sandbox = root.0.join("sandbox");
    std::fs::create_dir(&sandbox).unwrap();
    std::fs::write(root.0.join("outside.txt"), "secret").unwrap();
    let mapping = format!("{}::/sandbox", sandbox.display());
    let out = backstop(
        &[
            "run",
            "--dir",
            &mapping,
            program("escape").to_str().unwrap(),
        ],
        None,
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(!stdout.contains("ESCAPED"), "{stdout}");
    assert_eq!(stdout.matches("blocked").count(), 6, "{stdout}");
    assert!(!root.0.join("moved.txt").exists());
    assert_eq!(
        std::fs::read_to_string(root.0.join("outside.txt")).unwrap(),
        "secret"
    );
}

#[test]
fn reads_stdin() {
    let out = backstop(
        &["run", program("stdin").to_str().unwrap()],
        Some("first line\nsecond\n"),
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "read 18 bytes, 2 lines\n");
}

#[test]
fn clock_and_random() {
    let out = backstop(&["run", program("clock_random").to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "monotonic clock advanced: yes\nrealtime after 2020: yes\nrandom bytes: yes\n"
    );
}

#[test]
fn exit_code_comes_through() {
    let out = backstop(&["run", program("exit3").to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), "exiting with 3\n");
}

#[test]
fn trap_exits_134_with_message_and_backtrace() {
    let out = backstop(&["run", program("trap").to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(134));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("out of bounds memory access"), "{stderr}");
    assert!(
        stderr.contains("wasm backtrace:") && stderr.contains("_start"),
        "{stderr}"
    );
}

#[test]
fn timeout_stops_a_loop_with_124() {
    let started = std::time::Instant::now();
    let out = backstop(
        &[
            "run",
            "--timeout",
            "200ms",
            program("forever").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert!(text(&out.stderr).contains("--timeout"));
}

#[test]
fn timeout_stops_call_heavy_code_with_and_without_interrupt_checks() {
    let dir = TempDir::new("timeout_calls");
    let wat = dir.0.join("calls.wat");
    std::fs::write(
        &wat,
        r#"(module
             (func $leaf (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
             (func $tree (param i32) (result i32)
               (if (result i32) (i32.eqz (local.get 0))
                 (then (call $leaf (i32.const 0)))
                 (else (i32.add (call $tree (i32.sub (local.get 0) (i32.const 1)))
                                (call $tree (i32.sub (local.get 0) (i32.const 1)))))))
             (func (export "_start") (drop (call $tree (i32.const 62)))))"#,
    )
    .unwrap();
    for extra in [None, Some("--interrupt-checks")] {
        let mut args = vec!["run", "--timeout", "100ms"];
        args.extend(extra);
        args.push(wat.to_str().unwrap());
        let started = std::time::Instant::now();
        let out = backstop(&args, None);
        assert_eq!(
            out.status.code(),
            Some(124),
            "{extra:?}: {}",
            text(&out.stderr)
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }
}

#[test]
fn invoke_a_plain_export() {
    let dir = TempDir::new("invoke");
    let wat = dir.0.join("math.wat");
    std::fs::write(
        &wat,
        r#"(module
             (func (export "add") (param i32 i64) (result i64)
               (i64.add (i64.extend_i32_s (local.get 0)) (local.get 1)))
             (func (export "half") (param f64) (result f64)
               (f64.div (local.get 0) (f64.const 2))))"#,
    )
    .unwrap();
    let wat = wat.to_str().unwrap();
    let out = backstop(&["run", "--invoke", "add", wat, "-5", "12"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "7\n");
    let out = backstop(&["run", "--invoke", "half", wat, "3"], None);
    assert_eq!(text(&out.stdout), "1.5\n");
    let out = backstop(&["run", "--invoke", "add", wat, "x", "1"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not a valid i32"));
    let out = backstop(&["run", "--invoke", "nope", wat], None);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn compile_reports_functions_and_time() {
    let out = backstop(&["compile", program("hello").to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("functions, compiled in"), "{stdout}");
    let out = backstop(&["compile", "/nonexistent.wasm"], None);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn bad_modules_and_usage_fail_cleanly() {
    let dir = TempDir::new("bad");
    let junk = dir.0.join("junk.wasm");
    std::fs::write(&junk, b"\0asm\x01\0\0\0\x01\xff").unwrap();
    let out = backstop(&["run", junk.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("invalid module"),
        "{}",
        text(&out.stderr)
    );
    let out = backstop(&["run", "--timeout", "soon", junk.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn help_is_complete() {
    let out = backstop(&["run", "--help"], None);
    let help = text(&out.stdout);
    for flag in [
        "--dir",
        "--env",
        "--invoke",
        "--timeout",
        "--max-memory",
        "--stack-size",
        "--interrupt-checks",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
    let out = backstop(&["--help"], None);
    assert!(text(&out.stdout).contains("compile"));
}

fn rust_program(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../wasi/tests/programs/rust")
        .join(format!("{name}.wasm"))
}

fn write_file(dir: &TempDir, name: &str, contents: &[u8]) -> String {
    let path = dir.0.join(name);
    std::fs::write(&path, contents).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn rust_program_reads_a_read_only_dir() {
    let dir = TempDir::new("rust-ro");
    write_file(&dir, "a.txt", b"hello\n");
    write_file(&dir, "b.txt", b"second file\n");
    let mapping = format!("{}::/data", dir.0.display());
    let readfile = rust_program("readfile");
    let out = backstop(
        &[
            "run",
            "--dir-ro",
            &mapping,
            readfile.to_str().unwrap(),
            "/data",
            "create",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "a.txt (6 bytes): hello\nb.txt (12 bytes): second file\n\
         create: refused (Capabilities insufficient (os error 76))\n"
    );
    assert!(!dir.0.join("created.txt").exists());
    // The C program, through the command too.
    let c = program("readonly");
    let out = backstop(
        &[
            "run",
            "--dir-ro",
            &mapping,
            c.to_str().unwrap(),
            "/data/a.txt",
            "create",
        ],
        None,
    );
    assert_eq!(
        text(&out.stdout),
        "/data/a.txt (6 bytes): hello\ncreate: refused (Capabilities insufficient)\n"
    );
}

#[test]
fn start_and_invoke_mistakes_are_explained() {
    let dir = TempDir::new("start");
    let start_i32 = write_file(
        &dir,
        "start.wat",
        br#"(module (func (export "_start") (result i32) i32.const 7))"#,
    );
    let out = backstop(&["run", &start_i32], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("`_start` must take no parameters and return nothing; this one returns i32"),
        "{}",
        text(&out.stderr)
    );
    let library = write_file(
        &dir,
        "lib.wat",
        br#"(module (memory (export "memory") 1)
              (func (export "add") (param i32 i32) (result i32)
                (i32.add (local.get 0) (local.get 1))))"#,
    );
    let out = backstop(&["run", &library], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no `_start`"), "{stderr}");
    assert!(
        stderr.contains("use --invoke NAME (it exports `add`)"),
        "{stderr}"
    );
    let out = backstop(&["run", "--invoke", "memory", &library], None);
    assert!(
        text(&out.stderr).contains("`memory` is a memory, not a function"),
        "{}",
        text(&out.stderr)
    );
    let out = backstop(&["run", "--invoke", "add", &library, "0x10", "-0x1"], None);
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(0), "15\n".into())
    );
    let out = backstop(&["run", "--invoke", "nothing", &library], None);
    assert!(text(&out.stderr).contains("its functions: `add`"));
}

#[test]
fn usage_errors_exit_with_2() {
    let hello = program("hello");
    let hello = hello.to_str().unwrap();
    for (args, message) in [
        (
            vec!["run", "--max-memory", "1000", hello],
            "less than one 64 KiB Wasm page",
        ),
        (
            vec!["run", "--max-memory", "8G", hello],
            "more than a 32-bit memory can hold",
        ),
        (
            vec!["run", "--max-memory", "100000", hello],
            "not a whole number",
        ),
        (
            vec!["run", "--dir", "a::b::c", hello],
            "is not HOST or HOST::GUEST",
        ),
        (vec!["run", "--timeout", "soon", hello], "is not a duration"),
        (vec!["run", "--env", "=x", hello], "no variable name"),
        (vec!["frobnicate"], "unrecognized subcommand"),
    ] {
        let out = backstop(&args, None);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(message),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let help = backstop(&["--help"], None);
    assert!(text(&help.stdout).contains("2 for command-line usage errors"));
    assert!(!text(&help.stdout).contains("_start's return"));
}

#[test]
fn env_name_alone_inherits_the_hosts_value() {
    let hello = program("hello");
    let out = Command::new(env!("CARGO_BIN_EXE_backstop"))
        .args(["run", "--env", "GREETING", "--env", "BACKSTOP_UNSET_VAR"])
        .arg(&hello)
        .env("GREETING", "from the host")
        .env_remove("BACKSTOP_UNSET_VAR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("GREETING=from the host\n"), "{stdout}");
    assert!(!stdout.contains("BACKSTOP_UNSET_VAR"), "{stdout}");
}

#[test]
fn bad_module_files_are_named_and_binaries_read_as_binaries() {
    let dir = TempDir::new("badfiles");
    let wat = write_file(&dir, "broken.wat", b"(module\n  (func\n    i32.frob))\n");
    let out = backstop(&["run", &wat], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("--> {wat}:3:5")),
        "{}",
        text(&out.stderr)
    );
    let truncated = write_file(&dir, "truncated.wasm", b"\0as");
    let out = backstop(&["run", &truncated], None);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&truncated) && !stderr.contains("unexpected character"),
        "{stderr}"
    );
    let empty = write_file(&dir, "empty.wasm", b"");
    let out = backstop(&["run", &empty], None);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&empty) && stderr.contains("the module is empty"),
        "{stderr}"
    );
    let binary = write_file(&dir, "garbage.wasm", b"\x01\x02\x03 not text");
    let out = backstop(&["run", &binary], None);
    assert!(
        !text(&out.stderr).contains("unexpected character"),
        "{}",
        text(&out.stderr)
    );
}

/// `--timeout` ends a guest blocked reading stdin (a writer that keeps the
/// pipe open for 30 s and sends nothing) about when it should, not when
/// the input arrives; and accepts `ms` and `us`.
#[test]
fn timeout_stops_a_guest_blocked_in_a_host_call() {
    let stdin = program("stdin");
    let mut child = Command::new(env!("CARGO_BIN_EXE_backstop"))
        .args(["run", "--timeout", "300ms"])
        .arg(&stdin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let writer = child.stdin.take().unwrap(); // held open, never written
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    drop(writer);
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
    assert!(text(&out.stderr).contains("stopped by --timeout"));
    // The kill ended the run, not the last-resort exit after it.
    assert!(!text(&out.stderr).contains("did not stop within"));
    let forever = program("forever");
    let out = backstop(
        &["run", "--timeout", "200000us", forever.to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(124));
}

/// `--timeout` also ends a guest blocked writing to a full pipe that
/// nobody reads (fd_write waits for room in a way the kill cuts short).
#[test]
fn timeout_stops_a_guest_blocked_writing_to_a_full_pipe() {
    let dir = TempDir::new("fullpipe");
    let flood = write_file(
        &dir,
        "flood.wat",
        br#"(module
              (import "wasi_snapshot_preview1" "fd_write"
                (func $write (param i32 i32 i32 i32) (result i32)))
              (memory (export "memory") 2)
              ;; One iovec at 0: 65,536 bytes from address 65,536.
              (data (i32.const 0) "\00\00\01\00\00\00\01\00")
              (func (export "_start")
                (loop $again
                  (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
                  (br $again))))"#,
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_backstop"))
        .args(["run", "--timeout", "300ms", &flood])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap(); // held open, never read
    let started = std::time::Instant::now();
    let status = child.wait().unwrap();
    let took = started.elapsed();
    drop(stdout);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(124), "{stderr}");
    assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
    // The kill ended the run, not the last-resort exit after it.
    assert!(!stderr.contains("did not stop within"), "{stderr}");
}

/// `backstop compile -o` saves the compiled module and `backstop run` loads
/// it without compiling: the same output and exit status as from the Wasm,
/// for a Rust program reading a read-only directory and for a C program;
/// a file compiled with other settings, or damaged, is refused with status 1.
#[test]
fn compile_once_and_run_the_compiled_module() {
    let dir = TempDir::new("cwasm");
    let data = dir.0.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("a.txt"), b"hello\n").unwrap();
    let mapping = format!("{}::/data", data.display());
    let compiled = dir.0.join("readfile.cwasm");
    let compiled = compiled.to_str().unwrap();
    let readfile = rust_program("readfile");
    let out = backstop(
        &["compile", readfile.to_str().unwrap(), "-o", compiled],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("bytes written to"),
        "{}",
        text(&out.stdout)
    );
    let run = |module: &str| backstop(&["run", "--dir-ro", &mapping, module, "/data"], None);
    let from_wasm = run(readfile.to_str().unwrap());
    let from_cwasm = run(compiled);
    assert_eq!(
        from_cwasm.status.code(),
        Some(0),
        "{}",
        text(&from_cwasm.stderr)
    );
    assert_eq!(text(&from_cwasm.stdout), "a.txt (6 bytes): hello\n");
    assert_eq!(from_cwasm.stdout, from_wasm.stdout);

    // A C program and its exit code.
    let exit = dir.0.join("exit3.cwasm");
    let out = backstop(
        &[
            "compile",
            program("exit3").to_str().unwrap(),
            "--output",
            exit.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = backstop(&["run", exit.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "exiting with 3\n");

    // Other settings: compiled without interrupt checks, run with them.
    let out = backstop(&["run", "--interrupt-checks", compiled, "/data"], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("incompatible compiled module") && stderr.contains("interrupt checks"),
        "{stderr}"
    );
    assert!(
        stderr.contains("readfile.cwasm"),
        "the file is named: {stderr}"
    );
    // Compiled with them, run with them.
    let checked = dir.0.join("checked.cwasm");
    let out = backstop(
        &[
            "compile",
            "--interrupt-checks",
            readfile.to_str().unwrap(),
            "-o",
            checked.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = backstop(
        &[
            "run",
            "--interrupt-checks",
            "--dir-ro",
            &mapping,
            checked.to_str().unwrap(),
            "/data",
        ],
        None,
    );
    assert_eq!(
        text(&out.stdout),
        "a.txt (6 bytes): hello\n",
        "{}",
        text(&out.stderr)
    );

    // Damaged.
    let mut bytes = std::fs::read(compiled).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    let damaged = write_file(&dir, "damaged.cwasm", &bytes);
    let out = backstop(&["run", &damaged], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("checksum"),
        "{}",
        text(&out.stderr)
    );
    // A .cwasm is not compiled again.
    let out = backstop(
        &["compile", compiled, "-o", &format!("{compiled}.again")],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("compiled module (.cwasm)"),
        "{}",
        text(&out.stderr)
    );
}
