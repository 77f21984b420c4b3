//! The GPU benchmark (`bench/gpu_bench.py`, `bench/gpu_bench.sh`): Scalpel on wgpu against
//! PyTorch + LXT on one GPU.
//!
//! - `cargo xtask bench gpu` runs it here at a small shape (Scalpel on Mesa's lavapipe, PyTorch
//!   on the CPU), to show that every step works end to end;
//! - `cargo xtask gpu-pack` prepares what the GPU machine's run takes along: `.gpu-bench/` (the
//!   stripped release CLI, xz-compressed to fit the 64 MiB a command may carry, and an LXT 2.1
//!   wheel) and `.gl/` (the Vulkan and GL loaders as Debian packages, which that machine may lack).
//!   Then the one command there is `bash crates/xtask/bench/gpu_bench.sh`, carrying both folders.

use std::fs::File;
use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

use crate::cmd::{cargo, peer_python, run};

const RELEASE_BINARY: &str = "target/release/scalpel";
const PACK: &str = ".gpu-bench";
const LOADERS: &str = ".gl";
/// The loader packages the GPU machine's notes name (Vulkan for wgpu; GL/EGL with them).
const LOADER_PACKAGES: [&str; 7] = [
    "libvulkan1",
    "libegl1",
    "libglvnd0",
    "libopengl0",
    "libgl1",
    "libglx0",
    "libgles2",
];
/// The LXT release the fixtures and the CPU benchmark use.
const LXT: &str = "lxt==2.1";

fn release_cli() -> Result<()> {
    let mut c = cargo();
    c.args(["build", "--release", "-p", "scalpel-cli"]);
    run(c)
}

/// The small local run: tiny Llama shape, 64 tokens.
pub fn local() -> Result<()> {
    let Some(python) = peer_python("torch, transformers, tokenizers, lxt") else {
        bail!(
            "the GPU benchmark needs a Python with torch, transformers and lxt==2.1 \
             (set SCALPEL_PEER_PYTHON, or: python3 -m venv .venv && .venv/bin/pip install torch transformers accelerate {LXT})"
        );
    };
    release_cli()?;
    let mut c = Command::new(python);
    c.arg("crates/xtask/bench/gpu_bench.py").args([
        "--shapes",
        "small",
        "--tokens",
        "64",
        "--gen-tokens",
        "16",
        "--repeats",
        "2",
        "--budget",
        "1200",
        "--scalpel",
        RELEASE_BINARY,
    ]);
    run(c)
}

/// `.gpu-bench/` and `.gl/` for the GPU machine's run.
pub fn pack() -> Result<()> {
    release_cli()?;
    std::fs::create_dir_all(PACK)?;
    let stripped = Path::new(PACK).join("scalpel");
    let mut strip = Command::new("strip");
    strip.arg("-o").arg(&stripped).arg(RELEASE_BINARY);
    run(strip)?;
    let compressed = File::create(Path::new(PACK).join("scalpel.xz"))?;
    let mut xz = Command::new("xz");
    xz.args(["-6", "-T0", "-c"])
        .arg(&stripped)
        .stdout(compressed);
    run(xz)?;
    std::fs::remove_file(&stripped)?;

    let mut wheel = Command::new("python3");
    wheel
        .args(["-m", "pip", "wheel", "--no-deps", "-q", LXT, "-w"])
        .arg(PACK);
    run(wheel)?;

    std::fs::create_dir_all(LOADERS)?;
    let lists = "/tmp/scalpel-amd64-lists";
    std::fs::create_dir_all(format!("{lists}/partial"))?;
    let options = [
        "-oAPT::Architecture=amd64".to_string(),
        "-oAPT::Architectures=amd64".to_string(),
        format!("-oDir::State::Lists={lists}"),
    ];
    let mut update = Command::new("apt-get");
    update.args(&options).arg("update");
    run(update)?;
    let mut download = Command::new("apt-get");
    download
        .args(&options)
        .arg("download")
        .args(LOADER_PACKAGES)
        .current_dir(LOADERS);
    run(download)?;

    let bytes: u64 = [PACK, LOADERS]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "packed {PACK}/ and {LOADERS}/ ({:.1} MiB; a GPU-machine command carries at most 64 MiB with the tree). \
         On the GPU machine: `bash crates/xtask/bench/gpu_bench.sh` with carry [\"{LOADERS}\", \"{PACK}\"]",
        bytes as f64 / 1048576.0
    );
    Ok(())
}
