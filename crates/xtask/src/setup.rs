//! Installs the toolchain pieces the web build and the tests need. Each step checks first, so a
//! second run costs seconds. Versions are pinned to match Cargo.lock and Trunk.toml.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

use crate::cmd::{cargo, run, tool_path, version};

const TRUNK_VERSION: &str = "0.21.14";
/// Must equal the `wasm-bindgen` version in Cargo.lock.
const WASM_BINDGEN_VERSION: &str = "0.2.130";

/// Everything: the web build plus the browser test tools.
pub fn all() -> Result<()> {
    web_build()?;
    debian_packages()
}

/// What building and serving the site needs: wasm target, Trunk, wasm-bindgen-cli, binaryen's
/// wasm-opt (npm), assets.
pub fn web_build() -> Result<()> {
    wasm_target()?;
    trunk_installed()?;
    wasm_bindgen_cli()?;
    npm_packages()?;
    crate::assets::fetch()
}

fn wasm_target() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()?;
    if !String::from_utf8_lossy(&out.stdout).contains("wasm32-unknown-unknown") {
        let mut c = Command::new("rustup");
        c.args(["target", "add", "wasm32-unknown-unknown"]);
        run(c)?;
    }
    Ok(())
}

fn trunk_installed() -> Result<()> {
    if version("trunk").is_some_and(|v| v.contains(TRUNK_VERSION)) {
        return Ok(());
    }
    eprintln!("installing trunk {TRUNK_VERSION} (takes ~12 minutes on 2 cores, once)");
    let mut c = cargo();
    c.args(["install", "trunk", "--version", TRUNK_VERSION, "--locked"]);
    run(c)
}

fn wasm_bindgen_cli() -> Result<()> {
    if version("wasm-bindgen").is_some_and(|v| v.contains(WASM_BINDGEN_VERSION)) {
        return Ok(());
    }
    // Without --locked: the crate's own lock file pins a webpki-roots the registry no longer has.
    let mut c = cargo();
    c.args([
        "install",
        "wasm-bindgen-cli",
        "--version",
        WASM_BINDGEN_VERSION,
    ]);
    run(c)
}

/// Debian packages, each checked by a file it installs: Chromium and its driver for the browser
/// tests, Mesa's software Vulkan (lavapipe) for the native wgpu tests on machines without a GPU.
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("chromium", "/usr/bin/chromium"),
    ("chromium-driver", "/usr/bin/chromedriver"),
    (
        "mesa-vulkan-drivers",
        "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json",
    ),
    ("libvulkan1", "/usr/lib/x86_64-linux-gnu/libvulkan.so.1"),
];

fn debian_packages() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
    {
        bail!(
            "missing Debian packages: run `sudo apt-get install -y {}`",
            missing.join(" ")
        );
    }
    let mut update = Command::new("apt-get");
    update.arg("update");
    run(update)?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing);
    install.env("DEBIAN_FRONTEND", "noninteractive");
    run(install)
}

/// The npm packages pinned by tests/e2e/package-lock.json: playwright-core drives Debian's
/// Chromium in the page tests; binaryen 132 is the wasm-opt of the release build (Trunk finds it on
/// `tool_path`; Debian's binaryen 108 produced a module the browser refused).
fn npm_packages() -> Result<()> {
    let installed = ["playwright-core", "binaryen"]
        .iter()
        .all(|p| Path::new("tests/e2e/node_modules").join(p).exists());
    if installed {
        return Ok(());
    }
    let mut c = Command::new("npm");
    c.args(["ci", "--no-audit", "--no-fund"])
        .current_dir("tests/e2e");
    run(c)
}

/// A `trunk` invocation that never downloads tools (wasm-bindgen comes from PATH).
pub fn trunk(args: &[&str]) -> Command {
    let mut c = Command::new("trunk");
    c.args(["--offline", "--skip-version-check"])
        .args(args)
        .env("PATH", tool_path());
    c
}
