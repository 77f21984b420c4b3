//! All tests: native (unit + integration), wasm in headless Chromium, end-to-end page tests.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::cmd::{cargo, run, tool_path};
use crate::dist::Dist;
use crate::setup;

/// One step of `cargo xtask test`.
type Phase = (&'static str, fn() -> Result<()>);

/// Setup and every test, then how long each phase took (printed also when one fails; the e2e
/// run prints its scenarios' times itself).
pub fn all() -> Result<()> {
    let phases: [Phase; 5] = [
        ("setup", setup::all),
        ("native tests", native),
        ("wasm tests", wasm),
        ("site build", site),
        ("e2e scenarios", scenarios),
    ];
    let mut took: Vec<(&str, Duration)> = Vec::new();
    let mut outcome = Ok(());
    for (name, phase) in phases {
        let start = Instant::now();
        outcome = phase();
        took.push((name, start.elapsed()));
        if outcome.is_err() {
            break;
        }
    }
    let total: Duration = took.iter().map(|(_, d)| *d).sum();
    eprintln!("\ncargo xtask test, time per phase:");
    for (name, d) in &took {
        eprintln!("  {name:<14} {:>6.0} s", d.as_secs_f64());
    }
    eprintln!("  {:<14} {:>6.0} s", "total", total.as_secs_f64());
    outcome
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
    site()?;
    scenarios()
}

/// The site as `cargo xtask dist --dev` writes it: the e2e tests serve that folder from a plain
/// static server.
fn site() -> Result<()> {
    Dist::for_tests().build()
}

/// tests/e2e/e2e.mjs over the built site.
fn scenarios() -> Result<()> {
    let mut c = Command::new("node");
    c.arg("tests/e2e/e2e.mjs").env("PATH", tool_path());
    run(c)
}
