//! A real gdb session: gdb stops the `gdb_backtrace` example at a breakpoint
//! in a host function called from Wasm two guest segments deep, and `bt`
//! must list the Wasm functions by name (registered through the GDB JIT
//! interface), in order, with the host frames and `main` below them, across
//! the stack switch. Skipped, with a message, only where gdb is absent.

use std::path::PathBuf;
use std::process::Command;

fn example_binary() -> PathBuf {
    // target/<profile>/deps/gdb-<hash> -> target/<profile>/examples/gdb_backtrace
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join("gdb_backtrace")
}

#[test]
fn gdb_bt_names_guest_frames_across_the_stack_switch() {
    if Command::new("gdb").arg("--version").output().is_err() {
        eprintln!("SKIPPED: gdb is not installed, so the gdb session test cannot run");
        return;
    }
    let binary = example_binary();
    assert!(
        binary.exists(),
        "{} is missing: `cargo test` builds the examples (a filtered run may not: \
         cargo build --release --example gdb_backtrace)",
        binary.display()
    );
    let output = Command::new("gdb")
        .args(["-batch", "-nx"])
        .args(["-ex", "set debuginfod enabled off"])
        .args(["-ex", "set pagination off"])
        .args(["-ex", "break backstop_demo_breakpoint"])
        .args(["-ex", "run"])
        .args(["-ex", "bt"])
        .arg(&binary)
        .output()
        .expect("gdb runs");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    let backtrace: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
    println!("{}", backtrace.join("\n"));
    let position = |needle: &str| {
        backtrace
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("`{needle}` not in gdb's bt:\n{text}"))
    };
    let breakpoint = position("backstop_demo_breakpoint");
    let inner = position("demo::inner_segment");
    let outer = position("demo::outer_segment");
    let main = position(" main ");
    assert!(
        breakpoint < inner && inner < outer && outer < main,
        "order:\n{text}"
    );
    // Host frames (the host function, called through its native entry or
    // `array_call`) lie between the two guest segments.
    assert!(
        backtrace[inner + 1..outer]
            .iter()
            .any(|l| l.contains("backstop::api::func::")),
        "no host frame between the segments:\n{text}"
    );
}
