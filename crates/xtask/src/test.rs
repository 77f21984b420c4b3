//! All tests: native (unit + integration), wasm in headless Chromium, end-to-end page tests.

use std::process::Command;

use anyhow::Result;

use crate::cmd::{cargo, run, tool_path};
use crate::setup::trunk;

pub fn all() -> Result<()> {
    native()?;
    wasm()?;
    e2e()
}

fn native() -> Result<()> {
    let mut c = cargo();
    c.args(["test", "--workspace", "--exclude", "scalpel-web"]);
    run(c)
}

/// The core running inside Chromium (CPU backend and WebGPU on SwiftShader).
fn wasm() -> Result<()> {
    let mut c = cargo();
    c.args([
        "test",
        "-p",
        "scalpel-web",
        "--target",
        "wasm32-unknown-unknown",
    ])
    .env("PATH", tool_path())
    .env("CHROMEDRIVER", "/usr/bin/chromedriver")
    .env("WASM_BINDGEN_TEST_TIMEOUT", "600");
    run(c)
}

/// Builds the site and drives it in headless Chromium (tests/e2e/e2e.mjs), with WebGPU and without.
pub fn e2e() -> Result<()> {
    run(trunk(&["build"]))?;
    let mut c = Command::new("node");
    c.arg("tests/e2e/e2e.mjs").env("PATH", tool_path());
    run(c)
}
