//! `scalpel bench`: time a long forward and greedy generation (one prompt, or many as one batch),
//! for side-by-side comparison with a peer (PyTorch + transformers, `bench/peer_transformers.py`);
//! `cargo xtask bench` runs both.

use std::time::Instant;

use anyhow::{Result, bail};
use burn::tensor::{Distribution, Tensor};
use scalpel::generate::{GenerateOptions, generate, generate_batch};
use scalpel::model::Linear;
use scalpel::relevance::{MemoryLimits, RuleSet, WeightDetail, explain};
use scalpel::score::{ReferenceSet, ScoreMethod, Scorer};
use scalpel::{Logits, readback};
use serde_json::Value;

use crate::model_source::{ModelArgs, load};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Tokens in the timed forward (taken from the wiki corpus).
    #[arg(long, default_value_t = 512)]
    pub forward_tokens: usize,
    /// New tokens in the timed greedy generation.
    #[arg(long, default_value_t = 64)]
    pub gen_tokens: usize,
    /// Timed repetitions (the median is reported) after one warm-up.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Text to take the forward's tokens from.
    #[arg(long, default_value = "assets/wiki.utf8")]
    pub corpus: std::path::PathBuf,
    /// Time one AttnLRP relevance pass with full weight relevance over `--forward-tokens`
    /// tokens instead (explaining the greedy next token), and report its memory.
    #[arg(long)]
    pub relevance: bool,
    /// Time scoring a C4 reference set with this method (lrp, wanda, …) instead, and report
    /// its memory (`cargo xtask bench scoring` runs it at two set sizes next to PyTorch).
    #[arg(long, value_enum)]
    pub scoring: Option<ScoreMethod>,
    /// Reference samples for --scoring.
    #[arg(long, default_value_t = 128)]
    pub samples: usize,
    /// Tokens per reference sample for --scoring.
    #[arg(long, default_value_t = 256)]
    pub sample_len: usize,
    /// The C4 text for --scoring.
    #[arg(long, default_value = "assets/c4.utf8")]
    pub c4: std::path::PathBuf,
    /// On a GPU, print only the kernel-launch counts (no timing).
    #[arg(long)]
    pub launches_only: bool,
    /// Decode steps the launches per generated token are averaged over.
    #[arg(long, default_value_t = 16)]
    pub launch_steps: usize,
    /// Time the model's matrix products on their own instead: layer 0's Linears and the LM head,
    /// each at 1, 8, 28, 64, 256 and 512 tokens (`cargo xtask bench gemm` runs PyTorch on the same
    /// shapes).
    #[arg(long)]
    pub gemm: bool,
    /// Time greedy generation of `--gen-tokens` new tokens for this many prompts of different
    /// lengths (wiki text) instead: as one batch (how corrections continue their prompts) and one
    /// prompt at a time (`cargo xtask bench batch` runs transformers' batched generation beside it).
    #[arg(long)]
    pub batch: Option<usize>,
}

/// Prompt `i` of `--batch`: the next `8 + (7 i mod 25)` tokens of the wiki text (the peer takes
/// the same lengths).
fn batch_prompts(tokens: &[u32], n: usize) -> Result<Vec<Vec<u32>>> {
    let mut start = 0;
    let mut prompts = Vec::with_capacity(n);
    for i in 0..n {
        let len = 8 + (7 * i) % 25;
        let Some(prompt) = tokens.get(start..start + len) else {
            bail!("the corpus is too short for {n} prompts");
        };
        prompts.push(prompt.to_vec());
        start += len;
    }
    Ok(prompts)
}

/// Tokens/s of greedy generation for `prompts`, as one batch and one prompt at a time (the
/// median of `repeats` after a warm-up each).
fn batch(
    model: &scalpel::Model,
    prompts: &[Vec<u32>],
    gen_tokens: usize,
    repeats: usize,
) -> Result<Value> {
    let options = GenerateOptions {
        max_new_tokens: gen_tokens,
        stop_at_eos: false,
        ..Default::default()
    };
    let new_tokens = (prompts.len() * gen_tokens) as f64;
    let batched = || -> Result<f64> {
        let start = Instant::now();
        generate_batch(model, prompts, options.clone())?;
        Ok(new_tokens / start.elapsed().as_secs_f64())
    };
    let serial = || -> Result<f64> {
        let start = Instant::now();
        for prompt in prompts {
            generate(model, prompt, options.clone(), |_| true)?;
        }
        Ok(new_tokens / start.elapsed().as_secs_f64())
    };
    let timed = |run: &dyn Fn() -> Result<f64>| -> Result<f64> {
        run()?;
        Ok(median((0..repeats).map(|_| run()).collect::<Result<_>>()?))
    };
    Ok(serde_json::json!({
        "batch": prompts.len(),
        "prompt_tokens": prompts.iter().map(Vec::len).sum::<usize>(),
        "gen_tokens": gen_tokens,
        "batch_tokens_per_second": timed(&batched)?,
        "serial_tokens_per_second": timed(&serial)?,
        "repeats": repeats,
    }))
}

/// The prompt of the timed generation, of the launch counts and of the page's first example.
const PROMPT: &str = "The capital of France is";

/// On a GPU: kernel launches per generated token and per relevance pass, as two fixed lines
/// (for comparing runs), after the protocol and the most launched kernels.
fn launches(loaded: &scalpel::LoadedModel, steps: usize) -> Result<()> {
    let model = &loaded.model;
    let prompt = loaded.tokenizer.encode(PROMPT)?;
    let decode = scalpel::device::per_decode_step(model, &prompt, steps)?;
    let relevance = scalpel::device::per_relevance_pass(model, &prompt)?;
    let layers = model.config.num_layers.max(1);
    eprintln!(
        "launch protocol: prompt {PROMPT:?} ({} tokens); decode = mean over {steps} steps after the \
         prefill (forward + logits read back), the same generation run once before uncounted; relevance = AttnLRP with \
         every W ⊙ G_W kept, explaining the greedy next token, counted on the second pass",
        prompt.len()
    );
    for (what, per) in [("decode step", &decode), ("relevance pass", &relevance)] {
        eprintln!(
            "most launched kernels per {what} ({} per layer):",
            per.per_repeat() / layers
        );
        for (name, n) in per.table(12) {
            eprintln!("  {n:>8.1}  {name}");
        }
    }
    println!(
        "kernel launches per generated token: {}",
        decode.per_repeat()
    );
    println!(
        "kernel launches per relevance pass: {}",
        relevance.per_repeat()
    );
    Ok(())
}

/// `VmRSS` and `VmHWM` of this process in bytes (Linux), after resetting the high-water mark
/// when `reset` is set, so a phase's peak can be told apart from the model load's.
fn rss(reset: bool) -> Option<(u64, u64)> {
    if reset {
        std::fs::write("/proc/self/clear_refs", "5").ok()?;
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kb| kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn relevance(model: &scalpel::Model, window: &[u32], repeats: usize) -> Result<Value> {
    let once = || -> Result<f64> {
        let start = Instant::now();
        explain(
            model,
            window,
            None,
            RuleSet::AttnLrp,
            WeightDetail::Full,
            &MemoryLimits::default(),
            &mut |_, _| {},
        )?;
        Ok(start.elapsed().as_secs_f64())
    };
    let before = rss(true);
    once()?;
    let after = rss(false);
    let seconds = median((0..repeats).map(|_| once()).collect::<Result<_>>()?);
    let memory = match (before, after) {
        (Some((rss_before, _)), Some((_, peak))) => serde_json::json!({
            "rss_before_bytes": rss_before,
            "peak_rss_bytes": peak,
            "pass_extra_bytes": peak.saturating_sub(rss_before),
        }),
        _ => Value::Null,
    };
    Ok(serde_json::json!({"relevance_seconds": seconds, "memory": memory}))
}

/// Scores `reference` once with `method`, from a fresh scorer to scores on the host.
fn scoring(model: &scalpel::Model, method: ScoreMethod, reference: ReferenceSet) -> Result<Value> {
    let protocol = reference.protocol.clone();
    let before = rss(true);
    let start = Instant::now();
    let mut scorer = Scorer::new(model, method, Some(reference), MemoryLimits::default())?;
    scorer.run(&mut |_, _| {})?;
    let scores = scorer.finish()?.read()?;
    let seconds = start.elapsed().as_secs_f64();
    let after = rss(false);
    drop(scores);
    let memory = match (before, after) {
        (Some((rss_before, _)), Some((_, peak))) => serde_json::json!({
            "rss_before_bytes": rss_before,
            "peak_rss_bytes": peak,
            "extra_bytes": peak.saturating_sub(rss_before),
        }),
        _ => Value::Null,
    };
    Ok(serde_json::json!({
        "method": method.name(),
        "protocol": protocol.name,
        "samples": protocol.samples,
        "seq_len": protocol.sample_len,
        "seconds": seconds,
        "seconds_per_sample": seconds / protocol.samples.max(1) as f64,
        "memory": memory,
    }))
}

/// Token counts the matrix-product benchmark runs each shape at (a decode step; batched decode
/// steps, among them a correction's 28 held-out prompts, up to the few-row kernel's 64 rows; a
/// reference sample; a long forward).
const GEMM_TOKENS: [usize; 6] = [1, 8, 28, 64, 256, 512];

/// Each Linear of layer 0 and the LM head as `Linear::forward` runs them (`x Wᵀ`, W `[out, in]`),
/// on random inputs: median seconds over repeats after a warm-up, and the GFLOP/s that gives.
/// One output element is read back per run, so an asynchronous device has finished it.
fn gemm(model: &scalpel::Model, repeats: usize) -> Result<Value> {
    let device = model.device();
    let config = &model.config;
    let mut shapes: Vec<(String, Linear)> = model
        .linear_ids()
        .into_iter()
        .filter(|id| id.layer == 0)
        .map(|id| {
            let weight = model.weight(id)?;
            Ok((
                format!("{:?}", id.kind).to_lowercase(),
                Linear { weight, bias: None },
            ))
        })
        .collect::<Result<_>>()?;
    let head = Tensor::random(
        [config.vocab_size, config.hidden_size],
        Distribution::Default,
        device,
    );
    shapes.push((
        "lm_head".into(),
        Linear {
            weight: head,
            bias: None,
        },
    ));
    let mut rows = Vec::new();
    for tokens in GEMM_TOKENS {
        for (name, linear) in &shapes {
            let [out, inputs] = linear.weight.dims();
            let x = Tensor::<3>::random([1, tokens, inputs], Distribution::Default, device);
            let once = || -> Result<f64> {
                let start = Instant::now();
                let y = linear.forward(x.clone());
                readback::to_vec(y.slice([0..1, 0..1, 0..1]))?;
                Ok(start.elapsed().as_secs_f64())
            };
            once()?;
            let seconds = median((0..repeats).map(|_| once()).collect::<Result<_>>()?);
            let flops = 2.0 * (tokens * inputs * out) as f64;
            rows.push(serde_json::json!({
                "name": name, "tokens": tokens, "in": inputs, "out": out,
                "seconds": seconds, "gflops_per_second": flops / seconds / 1e9,
            }));
        }
    }
    Ok(serde_json::json!({ "gemm": rows, "repeats": repeats }))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

pub fn run(args: Args) -> Result<()> {
    if args.repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let (loaded, device) = load(&args.model)?;
    let model = &loaded.model;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // What every result line says about the run, so that lines from different runs compare.
    let labelled = |mut out: serde_json::Value| {
        out["impl"] = "scalpel".into();
        out["device"] = device.label.clone().into();
        out["threads"] = threads.into();
        out["dtype"] = model.weight_dtype().name().into();
        out
    };
    if device.is_gpu {
        launches(&loaded, args.launch_steps)?;
        if args.launches_only {
            return Ok(());
        }
    } else if args.launches_only {
        bail!("--launches-only counts GPU kernels: run with --device gpu");
    }
    if args.gemm {
        println!("{}", labelled(gemm(model, args.repeats)?));
        return Ok(());
    }
    if let Some(method) = args.scoring {
        let raw = std::fs::read_to_string(&args.c4)?;
        let reference = ReferenceSet::c4(&raw, &loaded.tokenizer, args.samples, args.sample_len)?;
        println!("{}", labelled(scoring(model, method, reference)?));
        return Ok(());
    }
    let text = scalpel::eval::corpus::wiki_text(&std::fs::read_to_string(&args.corpus)?);
    // A prefix of ~16 characters per token is plenty; cut on a character boundary.
    let prefix = text
        .char_indices()
        .nth(args.forward_tokens * 16)
        .map_or(text.as_str(), |(i, _)| &text[..i]);
    let tokens = loaded.tokenizer.encode(prefix)?;
    if tokens.len() < args.forward_tokens {
        bail!("the corpus gave only {} tokens", tokens.len());
    }
    let window = &tokens[..args.forward_tokens];
    if let Some(n) = args.batch {
        let text_tokens = loaded
            .tokenizer
            .encode(&text[..text.floor_char_boundary(n * 33 * 16)])?;
        let prompts = batch_prompts(&text_tokens, n)?;
        println!(
            "{}",
            labelled(batch(model, &prompts, args.gen_tokens, args.repeats)?)
        );
        return Ok(());
    }
    if args.relevance {
        let mut out = labelled(relevance(model, window, args.repeats)?);
        out["tokens"] = args.forward_tokens.into();
        out["repeats"] = args.repeats.into();
        println!("{out}");
        return Ok(());
    }
    let forward = || -> Result<f64> {
        let start = Instant::now();
        let mut cache = model.new_cache();
        let logits = model.forward(model.tokens(window)?, &mut cache, Logits::All)?;
        readback::to_vec(logits)?;
        Ok(start.elapsed().as_secs_f64())
    };
    forward()?;
    let forward_s = median(
        (0..args.repeats)
            .map(|_| forward())
            .collect::<Result<_>>()?,
    );

    let prompt = loaded.tokenizer.encode(PROMPT)?;
    let options = GenerateOptions {
        max_new_tokens: args.gen_tokens,
        stop_at_eos: false,
        ..Default::default()
    };
    let generation = || -> Result<f64> {
        let start = Instant::now();
        let (out, _) = generate(model, &prompt, options.clone(), |_| true)?;
        Ok(out.len() as f64 / start.elapsed().as_secs_f64())
    };
    generation()?;
    let tokens_per_s = median(
        (0..args.repeats)
            .map(|_| generation())
            .collect::<Result<_>>()?,
    );
    println!(
        "{}",
        labelled(serde_json::json!({
            "forward_tokens": args.forward_tokens,
            "forward_seconds": forward_s,
            "gen_tokens": args.gen_tokens,
            "gen_tokens_per_second": tokens_per_s,
            "repeats": args.repeats,
        }))
    );
    Ok(())
}
