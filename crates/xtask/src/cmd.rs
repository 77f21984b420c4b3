//! Running commands with their output visible and failures named.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root exists")
}

/// Runs a command to completion, failing with its command line if it fails.
pub fn run(mut command: Command) -> Result<()> {
    let line = format!("{command:?}");
    eprintln!("$ {line}");
    let status = command
        .status()
        .with_context(|| format!("starting {line}"))?;
    if !status.success() {
        bail!("{line} failed with {status}");
    }
    Ok(())
}

/// The first line of `program --version`, if the program runs.
pub fn version(program: &str) -> Option<String> {
    let out = Command::new(program).arg("--version").output().ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    })
}

pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// PATH with the project's local tool folders (npm's binaryen, cargo bin) first.
pub fn tool_path() -> String {
    let root = repo_root();
    let home = std::env::var("HOME").unwrap_or_default();
    let mut parts = vec![
        root.join("tests/e2e/node_modules/.bin")
            .display()
            .to_string(),
        format!("{home}/.cargo/bin"),
    ];
    parts.push(std::env::var("PATH").unwrap_or_default());
    parts.join(":")
}

/// The peer Python if it can import `modules` (comma-separated).
pub fn peer_python(modules: &str) -> Option<String> {
    let candidate =
        std::env::var("SCALPEL_PEER_PYTHON").unwrap_or_else(|_| ".venv/bin/python".into());
    let ok = Command::new(&candidate)
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(candidate)
}
