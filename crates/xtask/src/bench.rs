//! `cargo xtask bench`: Scalpel vs PyTorch + transformers on this machine's CPU, same model file,
//! same thread count; prints the protocol, both results and their ratios. The peer needs a Python
//! with torch, transformers, gguf and accelerate: `SCALPEL_PEER_PYTHON`, else `.venv/bin/python`.
//! Without one the peer is skipped with a note (the Scalpel numbers still print).

use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cmd::{self, cargo, peer_python, tool_path};
use crate::dist::Dist;

const FORWARD_TOKENS: &str = "512";
const GEN_TOKENS: &str = "64";
const REPEATS: &str = "5";
const RELEVANCE_REPEATS: &str = "3";
/// Prompts, new tokens and runs of the batched generation benchmark: a correction's 28 held-out
/// prompts, continued for 50 tokens.
const BATCH: &str = "28";
const BATCH_GEN_TOKENS: &str = "50";
const BATCH_REPEATS: &str = "3";

fn json_line(out: std::process::Output, who: &str) -> Result<Value> {
    if !out.status.success() {
        bail!("{who} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("no JSON line in the output")?;
    Ok(serde_json::from_str(line)?)
}

/// `scalpel bench` in release on the CPU with `args`, its JSON line.
fn scalpel_bench(threads: &str, args: &[&str]) -> Result<Value> {
    let out = cargo()
        .args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "scalpel-cli",
            "--",
            "bench",
        ])
        .args(["--device", "cpu"])
        .args(args)
        .env("RAYON_NUM_THREADS", threads)
        .output()?;
    json_line(out, "scalpel bench")
}

fn field(v: &Value, path: &[&str]) -> f64 {
    path.iter()
        .fold(v, |v, k| &v[*k])
        .as_f64()
        .unwrap_or(f64::NAN)
}

/// All parts, or the one named.
pub fn run(only: Option<&str>) -> Result<()> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .to_string();
    match only {
        None => {
            forward(&threads)?;
            batch(&threads)?;
            relevance(&threads)?;
            scoring(&threads)?;
            gemm(&threads)
        }
        Some("forward") => forward(&threads),
        Some("batch") => batch(&threads),
        Some("relevance") => relevance(&threads),
        Some("scoring") => scoring(&threads),
        Some("gemm") => gemm(&threads),
        Some("page") => page(false),
        Some("page-release") => page(true),
        Some("wasm-products") => wasm_products(),
        Some(other) => {
            bail!(
                "unknown benchmark `{other}` (forward, batch, relevance, scoring, gemm, gpu, page, page-release or wasm-products)"
            )
        }
    }
}

/// A decode step's products in wasm (the page's CPU fallback), `gemm` against `scalpel_kernels`:
/// crates/kernels/examples/wasm_products.rs built for wasm32, timed in Node by
/// crates/kernels/bench/wasm_products.mjs.
fn wasm_products() -> Result<()> {
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--quiet",
        "--target",
        "wasm32-unknown-unknown",
        "-p",
        "scalpel-kernels",
        "--example",
        "wasm_products",
    ]);
    cmd::run(build)?;
    let mut c = Command::new("node");
    c.arg("crates/kernels/bench/wasm_products.mjs")
        .arg("target/wasm32-unknown-unknown/release/examples/wasm_products.wasm")
        .env("PATH", tool_path());
    cmd::run(c)
}

/// The model's matrix products alone, Scalpel's CPU backend vs PyTorch's (same shapes, threads).
fn gemm(threads: &str) -> Result<()> {
    println!(
        "protocol: SmolLM2-135M's layer-0 Linears and LM head as `x Wᵀ` (W [out, in]) on random \
         inputs at 1, 8, 28, 64, 256 and 512 tokens, f32, CPU, {threads} threads; median of {REPEATS} after a \
         warm-up; Scalpel = Linear::forward on burn's flex backend (gemm crate; up to 64 rows Scalpel's own \
         AVX-512 kernel where the CPU has it), PyTorch = \
         torch.nn.functional.linear; one after the other on this machine"
    );
    let ours = scalpel_bench(threads, &["--gemm", "--repeats", REPEATS])?;
    let Some(python) = peer_python("torch") else {
        println!("scalpel: {ours}");
        println!("peer skipped: no Python with torch (set SCALPEL_PEER_PYTHON)");
        return Ok(());
    };
    let peer = Command::new(python)
        .arg("crates/xtask/bench/peer_gemm.py")
        .args(["--shapes", &ours.to_string(), "--threads", threads])
        .args(["--repeats", REPEATS])
        .output()?;
    let theirs = json_line(peer, "the PyTorch gemm peer")?;
    let rows = |v: &Value| v["gemm"].as_array().cloned().unwrap_or_default();
    println!(
        "| shape | tokens | scalpel GFLOP/s | pytorch GFLOP/s | time ratio (scalpel / pytorch) |"
    );
    println!("|---|---|---|---|---|");
    let (mut our_total, mut their_total) = (0.0, 0.0);
    for (a, b) in rows(&ours).iter().zip(rows(&theirs)) {
        let f = |v: &Value, k: &str| field(v, &[k]);
        our_total += f(a, "seconds");
        their_total += f(&b, "seconds");
        println!(
            "| {} {}→{} | {} | {:.1} | {:.1} | {:.2} |",
            a["name"].as_str().unwrap_or("?"),
            f(a, "in"),
            f(a, "out"),
            f(a, "tokens"),
            f(a, "gflops_per_second"),
            f(&b, "gflops_per_second"),
            f(a, "seconds") / f(&b, "seconds"),
        );
    }
    println!(
        "all shapes together: time ratio (scalpel / pytorch) {:.2}  (lower is better for scalpel)",
        our_total / their_total
    );
    Ok(())
}

/// The page's default long jobs on its CPU fallback in headless Chromium (tests/e2e/page_defaults.mjs):
/// on the dev build the tests use, or (`release`) on the release build `cargo xtask serve` and
/// `cargo xtask dist` make, which is what people are served (built in its own folder, so the
/// tests' dist/ stays as it is).
fn page(release: bool) -> Result<()> {
    let (dist, build) = if release {
        (
            Dist {
                release: true,
                with_model: true,
                out: "target/dist-release".into(),
            },
            "the release build (`cargo xtask dist`: opt-level 3, wasm-opt -Os)",
        )
    } else {
        (
            Dist::for_tests(),
            "the dev build (`cargo xtask dist --dev`: dependencies at opt-level 3, core at 1, no wasm-opt)",
        )
    };
    dist.build()?;
    let mut c = Command::new("node");
    c.arg("tests/e2e/page_defaults.mjs")
        .env("PATH", tool_path())
        .env("SCALPEL_DIST", &dist.out)
        .env("PAGE_BUILD", build);
    cmd::run(c)
}

/// One long forward and greedy generation, Scalpel vs PyTorch + transformers.
fn forward(threads: &str) -> Result<()> {
    println!(
        "protocol: SmolLM2-135M-Instruct Q4_1 GGUF dequantized to f32, CPU, {threads} threads; \
         forward = one {FORWARD_TOKENS}-token forward of wiki text with all logits read back; \
         generation = greedy, {GEN_TOKENS} new tokens after \"The capital of France is\" (KV cache); \
         median of {REPEATS} runs after a warm-up; both run one after the other on this machine"
    );
    let args = [
        "--forward-tokens",
        FORWARD_TOKENS,
        "--gen-tokens",
        GEN_TOKENS,
        "--repeats",
        REPEATS,
    ];
    let ours = scalpel_bench(threads, &args)?;
    println!("scalpel: {ours}");
    let Some(theirs) = transformers_peer(threads, &args)? else {
        return Ok(());
    };
    let f = |v: &Value, k: &str| field(v, &[k]);
    println!(
        "forward time ratio (scalpel / pytorch): {:.2}  (lower is better for scalpel)",
        f(&ours, "forward_seconds") / f(&theirs, "forward_seconds")
    );
    println!(
        "generation speed ratio (scalpel / pytorch): {:.2}  (higher is better for scalpel)",
        f(&ours, "gen_tokens_per_second") / f(&theirs, "gen_tokens_per_second")
    );
    Ok(())
}

/// `peer_transformers.py` with `args` on `threads` threads: its JSON line, printed, or `None`
/// (with a note) where no Python has what it needs.
fn transformers_peer(threads: &str, args: &[&str]) -> Result<Option<Value>> {
    let Some(python) = peer_python("torch, transformers, gguf, accelerate") else {
        println!(
            "peer skipped: no Python with torch + transformers + gguf + accelerate \
             (set SCALPEL_PEER_PYTHON, or: python3 -m venv .venv && .venv/bin/pip install torch transformers gguf accelerate)"
        );
        return Ok(None);
    };
    let peer = Command::new(python)
        .arg("crates/xtask/bench/peer_transformers.py")
        .args(["--threads", threads])
        .args(args)
        .output()?;
    let theirs = json_line(peer, "the PyTorch peer")?;
    println!("peer:    {theirs}");
    Ok(Some(theirs))
}

/// Greedy generation for many prompts: Scalpel's batch and its one-at-a-time loop against
/// transformers' left-padded batch.
fn batch(threads: &str) -> Result<()> {
    println!(
        "protocol: SmolLM2-135M-Instruct Q4_1 GGUF dequantized to f32, CPU, {threads} threads; \
         {BATCH} prompts of 8-32 tokens (prompt i: the next 8 + (7i mod 25) tokens of wiki text), \
         {BATCH_GEN_TOKENS} new tokens each, greedy, no stop at end of sequence (a correction's \
         held-out prompts); tokens/s = all new tokens / wall time; median of {BATCH_REPEATS} runs \
         after a warm-up; Scalpel as one batch (prompts one by one, then every decode step \
         batched) and one prompt at a time; transformers as one left-padded batch with its \
         attention mask; run one after the other on this machine"
    );
    let args = [
        "--batch",
        BATCH,
        "--gen-tokens",
        BATCH_GEN_TOKENS,
        "--repeats",
        BATCH_REPEATS,
    ];
    let ours = scalpel_bench(threads, &args)?;
    println!("scalpel: {ours}");
    let f = |v: &Value, k: &str| field(v, &[k]);
    println!(
        "batch / one at a time (scalpel): {:.2}",
        f(&ours, "batch_tokens_per_second") / f(&ours, "serial_tokens_per_second")
    );
    if let Some(theirs) = transformers_peer(threads, &args)? {
        println!(
            "batched generation speed ratio (scalpel / pytorch): {:.2}  (higher is better for scalpel)",
            f(&ours, "batch_tokens_per_second") / f(&theirs, "batch_tokens_per_second")
        );
    }
    Ok(())
}

/// One AttnLRP pass with full weight relevance, Scalpel vs LXT 2.1 + PyTorch, each in its own
/// process so that peak memory is its own.
fn relevance(threads: &str) -> Result<()> {
    println!(
        "protocol: relevance = one AttnLRP pass over {FORWARD_TOKENS} wiki tokens explaining the \
         greedy next token, with input relevance and W ⊙ G_W of every decoder-block Linear kept; \
         median of {RELEVANCE_REPEATS} runs after a warm-up; memory = peak RSS during the first \
         pass minus RSS before it (Linux VmHWM, reset after loading)"
    );
    let ours = scalpel_bench(
        threads,
        &[
            "--relevance",
            "--forward-tokens",
            FORWARD_TOKENS,
            "--repeats",
            RELEVANCE_REPEATS,
        ],
    )?;
    println!("scalpel: {ours}");
    let Some(python) = peer_python("torch, transformers, gguf, accelerate, lxt") else {
        println!("LXT peer skipped: no Python with lxt==2.1 next to torch + transformers");
        return Ok(());
    };
    let peer = Command::new(python)
        .arg("crates/xtask/bench/peer_lxt.py")
        .args(["--threads", threads, "--tokens", FORWARD_TOKENS])
        .args(["--repeats", RELEVANCE_REPEATS])
        .output()?;
    let theirs = json_line(peer, "the LXT peer")?;
    println!("peer:    {theirs}");
    println!(
        "relevance time ratio (scalpel / lxt): {:.2}  (lower is better for scalpel)",
        field(&ours, &["relevance_seconds"]) / field(&theirs, &["relevance_seconds"])
    );
    let extra = ["memory", "pass_extra_bytes"];
    println!(
        "relevance memory: scalpel {:.0} MiB, lxt {:.0} MiB extra over the loaded model (ratio {:.2})",
        field(&ours, &extra) / 1048576.0,
        field(&theirs, &extra) / 1048576.0,
        field(&ours, &extra) / field(&theirs, &extra)
    );
    Ok(())
}

/// Reference-set sizes the scoring benchmark runs at: memory must not grow with the size.
const SCORING_SIZES: [&str; 2] = ["16", "128"];

/// Scoring `c4-Nx256` with LRP and with Wanda, Scalpel vs PyTorch (LXT 2.1 for LRP, a Wanda
/// implementation with forward hooks), each run in its own process at two set sizes.
fn scoring(threads: &str) -> Result<()> {
    println!(
        "protocol: scoring = every decoder-block weight of SmolLM2-135M (f32, CPU, {threads} threads) \
         over c4-Nx256 (N = {}); lrp = AttnLRP of the sum of the true next tokens' logits per \
         sample, Σ W ⊙ G_W accumulated over samples (LXT 2.1 efficient mode for the peer); \
         wanda = |W| ⊙ ‖X_col‖₂ from forward passes; time = scoring until the scores are on the \
         host; memory = peak RSS during scoring minus RSS before it (VmHWM reset after loading)",
        SCORING_SIZES.join(", ")
    );
    let python = peer_python("torch, transformers, gguf, accelerate, lxt");
    if python.is_none() {
        println!("peer skipped: no Python with torch + transformers + gguf + accelerate + lxt");
    }
    for method in ["wanda", "lrp"] {
        for samples in SCORING_SIZES {
            let ours = scalpel_bench(
                threads,
                &[
                    "--scoring",
                    method,
                    "--samples",
                    samples,
                    "--sample-len",
                    "256",
                ],
            )?;
            println!("scalpel: {ours}");
            let Some(python) = &python else { continue };
            let peer = Command::new(python)
                .arg("crates/xtask/bench/peer_scores.py")
                .args(["--method", method, "--samples", samples, "--seq-len", "256"])
                .args(["--threads", threads])
                .output()?;
            let theirs = json_line(peer, "the PyTorch scoring peer")?;
            println!("peer:    {theirs}");
            let extra = ["memory", "extra_bytes"];
            println!(
                "{method} c4-{samples}x256: time ratio (scalpel / pytorch) {:.2}; extra memory scalpel {:.0} MiB, pytorch {:.0} MiB",
                field(&ours, &["seconds"]) / field(&theirs, &["seconds"]),
                field(&ours, &extra) / 1048576.0,
                field(&theirs, &extra) / 1048576.0,
            );
        }
    }
    Ok(())
}
