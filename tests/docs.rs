//! What the docs and the workspace promise a user, checked against the
//! code: ARCHITECTURE.md's vmctx table names every header field at the
//! offset `jit/src/vmoffsets.rs` gives it; `cargo build --release` builds
//! the `backstop` command (the workspace's default members include cli/);
//! the README's two commands share the release profile.

use backstop_jit::vmoffsets::{
    VMCTX_ACTIVATION, VMCTX_BUILTINS, VMCTX_INSTANCE, VMCTX_INTERRUPT, VMCTX_STACK_LIMIT,
};

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn the_vmctx_table_matches_the_offsets() {
    let doc = read("ARCHITECTURE.md");
    let table = doc
        .split("## The vmctx")
        .nth(1)
        .and_then(|rest| rest.split("```").nth(1))
        .expect("ARCHITECTURE.md has a vmctx table");
    let rows: Vec<(String, String)> = table
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect();
    for (offset, name) in [
        (VMCTX_STACK_LIMIT, "stack_limit"),
        (VMCTX_ACTIVATION, "activation"),
        (VMCTX_BUILTINS, "builtins"),
        (VMCTX_INSTANCE, "instance"),
        (VMCTX_INTERRUPT, "interrupt"),
    ] {
        assert!(
            rows.contains(&(offset.to_string(), name.to_string())),
            "the vmctx table lacks `{offset} {name}`: {rows:?}"
        );
    }
    // Nothing in the header is left out: the rows after it start at its end.
    assert!(rows
        .iter()
        .any(|(offset, name)| *offset == "40" && name == "memories"));
}

#[test]
fn cargo_build_release_builds_the_command() {
    let manifest = read("Cargo.toml");
    let line = manifest
        .lines()
        .find(|line| line.starts_with("default-members"))
        .expect("the workspace names its default members");
    assert!(line.contains("\"cli\""), "{line}");
}

#[test]
fn the_readme_commands_share_the_release_profile() {
    let readme = read("README.md");
    assert!(readme.contains("cargo run --release --example hostcall_cleanup"));
    assert!(readme.contains("cargo test --workspace --release"));
    assert!(readme.contains("cargo install"));
}
