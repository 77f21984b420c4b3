//! `scalpel generate`: stream a continuation of a prompt.

use std::io::Write;
use std::time::Instant;

use anyhow::Result;
use scalpel::generate::{GenerateOptions, Sampling, generate};

use crate::model_source::{ModelArgs, load};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text to continue.
    #[arg(long, short = 'p')]
    pub prompt: String,
    /// Maximum number of new tokens.
    #[arg(long = "sample-len", short = 'n', default_value_t = 64)]
    pub sample_len: usize,
    /// Sampling temperature; 0 (the default) is greedy decoding.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches this.
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Keep only the k most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Random seed for sampling.
    #[arg(long, default_value_t = 299_792_458)]
    pub seed: u64,
    /// Penalty for repeating recent tokens (1.0 = none).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty considers.
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Prepend the model's BOS token to the prompt.
    #[arg(long)]
    pub bos: bool,
    /// Keep generating after an end-of-sequence token.
    #[arg(long)]
    pub ignore_eos: bool,
}

pub fn run(args: Args) -> Result<()> {
    let sampling = Sampling::from_temperature(args.temperature, args.top_k, args.top_p);
    let options = GenerateOptions {
        max_new_tokens: args.sample_len,
        sampling,
        seed: args.seed,
        repeat_penalty: args.repeat_penalty,
        repeat_last_n: args.repeat_last_n,
        stop_at_eos: !args.ignore_eos,
    };
    // Bad options fail before the model is read.
    options.validate()?;
    let (loaded, device) = load(&args.model)?;
    eprintln!("device: {}", device.label);
    let tokenizer = &loaded.tokenizer;
    let prompt = tokenizer.encode_prompt(&args.prompt, args.bos)?;
    print!("{}", args.prompt);
    std::io::stdout().flush()?;
    let mut stream = tokenizer.stream();
    let mut first_token_at = None;
    let start = Instant::now();
    let mut write_error = None;
    let (tokens, stop) = generate(&loaded.model, &prompt, options, |id| {
        first_token_at.get_or_insert_with(Instant::now);
        match stream.push(id) {
            Ok(Some(piece)) => {
                print!("{piece}");
                if let Err(e) = std::io::stdout().flush() {
                    write_error = Some(e);
                    return false;
                }
            }
            Ok(None) => {}
            Err(e) => {
                write_error = Some(std::io::Error::other(e.to_string()));
                return false;
            }
        }
        true
    })?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    println!();
    let total = start.elapsed().as_secs_f64();
    // Decode speed excludes the prompt forward, which the first token pays for.
    let decode = first_token_at
        .map(|t| t.elapsed().as_secs_f64())
        .unwrap_or(0.0);
    let rate = if tokens.len() > 1 && decode > 0.0 {
        (tokens.len() - 1) as f64 / decode
    } else {
        0.0
    };
    eprintln!(
        "{} tokens ({rate:.2} tokens/s), prompt {} tokens, {total:.2} s total, stop: {stop:?}",
        tokens.len(),
        prompt.len()
    );
    Ok(())
}
