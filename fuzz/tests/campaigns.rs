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
