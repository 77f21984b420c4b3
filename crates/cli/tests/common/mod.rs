//! Running the `scalpel` binary from the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn scalpel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scalpel"))
        .args(args)
        .args(["--device", "cpu"])
        .current_dir(repo_root())
        .output()
        .expect("running scalpel")
}

pub fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scalpel failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).to_string() + &stderr
}

pub fn fails(out: &Output, message: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "scalpel should have failed");
    assert!(
        stderr.contains(message),
        "expected `{message}` in: {stderr}"
    );
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("scalpel-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Asserts that a shrunk checkpoint's perplexity (in `shrunk`'s output) is the masked model's (in
/// `masked`'s) to float tolerance: cutting out zero columns changes only the summation order, which
/// can move the sixth significant digit.
pub fn assert_same_perplexity(shrunk: &str, masked: &str) {
    let [a, b] = [shrunk, masked].map(|t| perplexity(t).parse::<f64>().expect("a number"));
    assert!((a - b).abs() <= 1e-5 * b, "shrunk {a} vs masked {b}");
}

/// The perplexity number of a `wiki-...: perplexity X` line.
pub fn perplexity(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.contains(": perplexity "))
        .expect("a perplexity line");
    line.split(": perplexity ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}
