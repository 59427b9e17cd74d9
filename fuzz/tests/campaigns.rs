//! The bounded, seeded campaign CI runs on every change (a minute or so on
//! two cores), and a test of the harness itself: a case that crashes its
//! worker and one that hangs are each caught, saved and counted, and the
//! campaign goes on with the rest.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The seed of CI's campaign: fixed, so a failure reproduces with
/// `backstop-fuzz case --target T --seed 20261202 --index I`.
const CI_SEED: &str = "20261202";

fn findings_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("backstop-fuzz-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn campaign(
    target: &str,
    cases: u64,
    extra_env: Option<(&str, &str)>,
    dir: &Path,
) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_backstop-fuzz"));
    command.args([
        "campaign",
        "--target",
        target,
        "--seed",
        CI_SEED,
        "--cases",
        &cases.to_string(),
        "--jobs",
        "2",
        "--case-timeout",
        "5",
        "--findings",
        dir.to_str().unwrap(),
    ]);
    if let Some((name, value)) = extra_env {
        command.env(name, value);
    }
    let out = command.output().expect("backstop-fuzz runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}");
    (out.status.code().unwrap_or(-1), stdout)
}

#[test]
fn ci_campaign_of_every_target_finds_nothing() {
    for (target, cases) in [
        ("compile", 3000),
        ("run", 12000),
        ("differential", 12000),
        ("config", 3000),
        ("targeted", 3000),
        ("endings", 3000),
    ] {
        let dir = findings_dir(target);
        let (status, stdout) = campaign(target, cases, None, &dir);
        assert!(
            stdout.contains(&format!("{cases} cases")) && stdout.contains(" 0 findings"),
            "{target}: {stdout}"
        );
        assert_eq!(status, 0, "{target}: {stdout}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn the_harness_catches_a_crash_and_a_hang_and_goes_on() {
    let dir = findings_dir("selftest");
    let (status, stdout) = campaign(
        "run",
        40,
        Some(("BACKSTOP_FUZZ_SELF_TEST", "crash=3,hang=31")),
        &dir,
    );
    assert_eq!(status, 1, "findings make the status 1: {stdout}");
    assert!(stdout.contains("40 cases"), "every case counted: {stdout}");
    assert!(stdout.contains("2 findings"), "{stdout}");
    assert!(
        stdout.contains("case 3 ") && stdout.contains("the worker crashed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("case 31 ") && stdout.contains("no verdict within 5 s"),
        "{stdout}"
    );
    for index in [3, 31] {
        let saved = dir.join(format!("run-{CI_SEED}-{index}.wasm"));
        let module = std::fs::read(&saved).expect("the module of the case is saved");
        assert!(module.starts_with(b"\0asm"));
        let note = std::fs::read_to_string(dir.join(format!("run-{CI_SEED}-{index}.txt"))).unwrap();
        assert!(note.contains(&format!("--index {index}")), "{note}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The reducer keeps what makes a module fail and drops the rest: a module
/// of 30 functions and a memory "fails" (the self test's rule) because it
/// exports `culprit`, and comes out as little more than that export.
#[test]
fn the_reducer_shrinks_a_failing_module_to_its_cause() {
    let dir = findings_dir("reduce");
    std::fs::create_dir_all(&dir).unwrap();
    let mut wat = String::from(
        "(module (memory (export \"mem\") 1) (global (export \"g\") (mut i32) (i32.const 5))\n",
    );
    for i in 0..30 {
        wat.push_str(&format!(
            "(func (export \"f{i}\") (param i32) (result i32) (i32.add (local.get 0) (i32.mul (i32.const {i}) (i32.load (i32.const 16)))))\n"
        ));
    }
    wat.push_str("(func (export \"culprit\") (result i64) (i64.const 42)))");
    let input = dir.join("big.wat");
    std::fs::write(&input, &wat).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_backstop-fuzz"))
        .env("BACKSTOP_FUZZ_SELF_TEST", "finding-on-export=culprit")
        .args(["reduce", "--target", "run", "--attempts", "200", "-o"])
        .arg(dir.join("small"))
        .arg(&input)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let original = wat::parse_str(&wat).unwrap();
    let reduced = std::fs::read(dir.join("small.wasm")).unwrap();
    assert!(
        reduced.len() * 4 < original.len(),
        "{} -> {} bytes: {stdout}",
        original.len(),
        reduced.len()
    );
    let text = std::fs::read_to_string(dir.join("small.wat")).unwrap();
    assert!(text.contains("\"culprit\""), "{text}");
    assert!(!text.contains("\"f17\""), "{text}");
    // A module that passes has nothing to reduce: an error, status 2.
    let out = Command::new(env!("CARGO_BIN_EXE_backstop-fuzz"))
        .args(["reduce", "--target", "run"])
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
