//! `scalpel bench`: time a long forward and greedy generation, for side-by-side comparison with a
//! peer (PyTorch + transformers, `bench/peer_transformers.py`); `cargo xtask bench` runs both.

use std::time::Instant;

use anyhow::{Result, bail};
use scalpel::generate::{GenerateOptions, generate};
use scalpel::{Logits, readback};

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

    let prompt = loaded.tokenizer.encode("The capital of France is")?;
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
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{}",
        serde_json::json!({
            "impl": "scalpel",
            "device": device.label,
            "threads": threads,
            "forward_tokens": args.forward_tokens,
            "forward_seconds": forward_s,
            "gen_tokens": args.gen_tokens,
            "gen_tokens_per_second": tokens_per_s,
            "repeats": args.repeats,
        })
    );
    Ok(())
}
