//! The `wiki-512` perplexity protocol as the commands take it (`eval ppl`, `prune --eval`, `sweep`,
//! `correct`): its arguments, its tokens and a perplexity run with a progress bar.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use scalpel::eval::corpus::wiki_text;
use scalpel::eval::perplexity::{PerplexityProtocol, PerplexityResult, perplexity};
use scalpel::{Model, TextTokenizer};

use crate::progress::bar;

/// The `wiki-512` perplexity protocol's inputs (smaller variants are named `wiki-<window>x<n>`).
#[derive(clap::Args, Debug, Clone)]
pub struct WikiArgs {
    /// The wiki.utf8 corpus (fetched by `cargo xtask assets`).
    #[arg(long, default_value = "assets/wiki.utf8")]
    pub corpus: PathBuf,
    /// Tokens per window.
    #[arg(long, default_value_t = 512)]
    pub window: usize,
    /// Number of windows (64 = the full `wiki-512` protocol).
    #[arg(long, default_value_t = 64)]
    pub windows: usize,
}

impl WikiArgs {
    pub fn protocol(&self) -> PerplexityProtocol {
        PerplexityProtocol::wiki(self.window, self.windows)
    }

    /// Prints the protocol (with every number it yields) and returns the tokens.
    pub fn tokens(&self, tokenizer: &TextTokenizer) -> Result<Vec<u32>> {
        let p = self.protocol();
        eprintln!(
            "protocol {}: {} windows × {} tokens of {} (articles joined by a blank line, no BOS)",
            p.name,
            p.windows,
            p.window,
            self.corpus.display()
        );
        wiki_tokens(&self.corpus, tokenizer)
    }
}

/// The `wiki.utf8` articles as the protocol joins them, tokenized without BOS.
pub fn wiki_tokens(corpus: &Path, tokenizer: &TextTokenizer) -> Result<Vec<u32>> {
    let raw = std::fs::read_to_string(corpus).with_context(|| {
        format!(
            "reading {} (fetch it with `cargo xtask assets`)",
            corpus.display()
        )
    })?;
    Ok(tokenizer.encode(&wiki_text(&raw))?)
}

/// Perplexity with a progress bar labelled `what`.
pub fn evaluate(
    model: &Model,
    tokens: &[u32],
    protocol: &PerplexityProtocol,
    what: &str,
) -> Result<PerplexityResult> {
    let pb = bar(protocol.windows as u64, what);
    let result = perplexity(model, tokens, protocol, &mut |done, _| {
        pb.set_position(done as u64)
    })?;
    pb.finish_and_clear();
    Ok(result)
}
