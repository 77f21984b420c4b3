//! `scalpel eval ppl`: perplexity under a named protocol.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use scalpel::eval::corpus::wiki_text;
use scalpel::eval::perplexity::{PerplexityProtocol, perplexity};

use crate::model_source::{ModelArgs, load};
use crate::progress::bar;

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// Perplexity on Wikipedia text: `wiki-512` = 64 windows of 512 tokens (README, "Results").
    Ppl(PplArgs),
}

#[derive(clap::Args, Debug)]
pub struct PplArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The wiki.utf8 corpus (fetched by `cargo xtask assets`).
    #[arg(long, default_value = "assets/wiki.utf8")]
    pub corpus: PathBuf,
    /// Tokens per window.
    #[arg(long, default_value_t = 512)]
    pub window: usize,
    /// Number of windows (64 = the full `wiki-512` protocol).
    #[arg(long, default_value_t = 64)]
    pub windows: usize,
    /// Also write the result as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(cmd: EvalCommand) -> Result<()> {
    match cmd {
        EvalCommand::Ppl(args) => ppl(args),
    }
}

fn ppl(args: PplArgs) -> Result<()> {
    let raw = std::fs::read_to_string(&args.corpus).with_context(|| {
        format!(
            "reading {} (fetch it with `cargo xtask assets`)",
            args.corpus.display()
        )
    })?;
    let (loaded, device) = load(&args.model)?;
    let protocol = PerplexityProtocol::wiki(args.window, args.windows);
    let tokens = loaded.tokenizer.encode(&wiki_text(&raw))?;
    eprintln!(
        "protocol {}: {} windows × {} tokens of {} (articles joined by a blank line, no BOS), device {}",
        protocol.name,
        protocol.windows,
        protocol.window,
        args.corpus.display(),
        device.label
    );
    let pb = bar(protocol.windows as u64, "windows");
    let result = perplexity(&loaded.model, &tokens, &protocol, &mut |done, _| {
        pb.set_position(done as u64)
    })?;
    pb.finish_and_clear();
    println!(
        "{}: perplexity {:.4} (mean NLL {:.5} over {} predicted tokens) — model {}",
        protocol.name,
        result.perplexity,
        result.mean_nll,
        result.predicted_tokens,
        args.model.model
    );
    if let Some(path) = args.json {
        let json = serde_json::json!({ "model": args.model.model, "device": device.label, "result": result });
        std::fs::write(&path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
