//! `scalpel eval ppl`: perplexity under a named protocol.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::model_source::{ModelArgs, load};
use crate::wiki::{WikiArgs, evaluate};

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// Perplexity on Wikipedia text: `wiki-512` = 64 windows of 512 tokens (README, "Results").
    /// Any checkpoint works, including the folders `scalpel prune --out` writes.
    Ppl(PplArgs),
}

#[derive(clap::Args, Debug)]
pub struct PplArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub wiki: WikiArgs,
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
    let (loaded, device) = load(&args.model)?;
    let protocol = args.wiki.protocol();
    let tokens = args.wiki.tokens(&loaded.tokenizer)?;
    eprintln!("device {}", device.label);
    let result = evaluate(&loaded.model, &tokens, &protocol, "windows")?;
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
