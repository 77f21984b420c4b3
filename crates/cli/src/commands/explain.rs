//! `scalpel explain`: why the model says what it says — input-token, head, neuron and weight
//! relevance for one output, as a terminal heatmap, JSON and an optional HTML report.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use scalpel::Logits;
use scalpel::relevance::heatmap::{HeatmapPage, abs_max, heat_color, top_k, top_k_2d};
use scalpel::relevance::{Explanation, MemoryLimits, RuleSet, Target, WeightDetail, explain};
use serde_json::json;

use crate::model_source::{ModelArgs, load};
use crate::progress::bar;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text whose next token is explained.
    #[arg(long, short = 'p')]
    pub prompt: String,
    /// The token to explain (text that is one token, e.g. " Paris", or #ID); default: the greedy
    /// next token.
    #[arg(long)]
    pub target: Option<String>,
    /// Explain logit(target) − logit(contrast) instead (e.g. IO vs S names for IOI).
    #[arg(long)]
    pub contrast: Option<String>,
    /// Explain the sum of the true next tokens' logits over the whole prompt (reference text).
    #[arg(long, conflicts_with_all = ["target", "contrast"])]
    pub next_tokens: bool,
    /// attnlrp (default), cp-lrp, or gradient (gradient × input).
    #[arg(long, value_enum, default_value_t = RuleSet::AttnLrp)]
    pub rules: RuleSet,
    /// Also compute per-weight relevance of every block Linear (sums are reported).
    #[arg(long)]
    pub weights: bool,
    /// How many top tokens, heads and neurons to list.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Write everything as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML heatmap here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Prepend the model's BOS token.
    #[arg(long)]
    pub bos: bool,
}

pub fn run(args: Args) -> Result<()> {
    let (loaded, device) = load(&args.model)?;
    eprintln!("device: {}", device.label);
    let tok = &loaded.tokenizer;
    let ids = tok.encode_prompt(&args.prompt, args.bos)?;
    let target = match (&args.target, &args.contrast, args.next_tokens) {
        (_, _, true) => Some(Target::NextTokens { from: 0 }),
        (None, None, false) => None,
        (t, c, false) => {
            let token = match t {
                Some(t) => tok.single_token(t)?,
                None => greedy(&loaded.model, &ids)?,
            };
            Some(match c {
                Some(c) => Target::Contrast {
                    position: None,
                    token,
                    foil: tok.single_token(c)?,
                },
                None => Target::Token {
                    position: None,
                    token,
                },
            })
        }
    };
    let detail = if args.weights {
        WeightDetail::Sums
    } else {
        WeightDetail::None
    };
    let limits = MemoryLimits {
        max_buffer_bytes: device.max_binding_bytes,
        max_total_bytes: crate::model_source::available_memory(),
    };
    let progress = bar(loaded.model.config.num_layers as u64, "relevance (layers)");
    let explained = explain(
        &loaded.model,
        &ids,
        target.clone(),
        args.rules,
        detail,
        &limits,
        &mut |done, _| progress.set_position(done as u64),
    )?;
    progress.finish_and_clear();
    let (e, target) = (explained.explanation, explained.target);
    let pieces = ids
        .iter()
        .map(|&id| tok.id_to_text(id))
        .collect::<scalpel::Result<Vec<_>>>()?;
    let described = describe(&target, tok)?;
    print_report(&e, &pieces, &described, args.top);
    if let Some(path) = &args.json {
        let value = report_json(&e, &pieces, &described, &args);
        std::fs::write(path, serde_json::to_vec_pretty(&value)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.html {
        let page = HeatmapPage {
            rules: e.rules.name(),
            target: &described,
            output: e.output,
            conservation: e.conservation(),
            pieces: &pieces,
            tokens: &e.tokens,
            heads: &e.heads,
        };
        std::fs::write(path, page.to_html())
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The greedy next token (for a contrast given without a target): a plain forward, as nothing
/// is traced for it.
fn greedy(model: &scalpel::Model, ids: &[u32]) -> Result<u32> {
    let logits = model.forward(model.tokens(ids)?, &mut model.new_cache(), Logits::Last)?;
    Ok(scalpel::generate::argmax(&scalpel::readback::to_vec(
        logits,
    )?))
}

fn describe(target: &Target, tok: &scalpel::TextTokenizer) -> Result<String> {
    Ok(match target {
        Target::Token { token, .. } => format!("logit of {:?} (#{token})", tok.id_to_text(*token)?),
        Target::Contrast { token, foil, .. } => format!(
            "logit of {:?} (#{token}) − logit of {:?} (#{foil})",
            tok.id_to_text(*token)?,
            tok.id_to_text(*foil)?
        ),
        Target::NextTokens { .. } => "sum of the true next tokens' logits".into(),
    })
}

fn print_report(e: &Explanation, pieces: &[String], target: &str, top: usize) {
    let scale = abs_max(&e.tokens);
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    println!(
        "explaining {target} with {} ({} tokens)",
        e.rules.name(),
        pieces.len()
    );
    println!(
        "output {:.4}; Σ input relevance / output = {:.3}\n",
        e.output,
        e.conservation()
    );
    let mut line = String::new();
    for (piece, r) in pieces.iter().zip(&e.tokens) {
        if color {
            let [red, green, blue] = heat_color(*r, scale);
            line.push_str(&format!(
                "\x1b[48;2;{red};{green};{blue}m\x1b[38;2;0;0;0m{piece}\x1b[0m"
            ));
        } else {
            line.push_str(&format!("{piece}[{r:+.3}]"));
        }
    }
    println!("{line}\n");
    println!("top tokens:");
    for (i, r) in top_k(&e.tokens, top) {
        println!("  {r:+10.4}  #{i:<4} {:?}", pieces[i]);
    }
    println!("top heads (layer.head):");
    for (l, h, r) in top_k_2d(&e.heads, top) {
        println!("  {r:+10.4}  {l}.{h}");
    }
    println!("top MLP neurons (layer:neuron):");
    for (l, n, r) in top_k_2d(&e.neurons, top) {
        println!("  {r:+10.4}  {l}:{n}");
    }
    if !e.weight_sums.is_empty() {
        println!("weight relevance per layer (Σ R, Σ |R|):");
        for layer in 0..e.heads.len() {
            let (s, a) = e
                .weight_sums
                .iter()
                .filter(|w| w.layer == layer)
                .fold((0.0, 0.0), |(s, a), w| (s + w.sum, a + w.abs_sum));
            println!("  layer {layer:>3}: {s:+10.4} {a:10.4}");
        }
    }
}

fn report_json(e: &Explanation, pieces: &[String], target: &str, args: &Args) -> serde_json::Value {
    json!({
        "model": args.model.model,
        "prompt": args.prompt,
        "target": target,
        "rules": e.rules.name(),
        "output": e.output,
        "conservation": e.conservation(),
        "tokens": pieces.iter().zip(&e.ids).zip(&e.tokens)
            .map(|((text, id), r)| json!({"id": id, "text": text, "relevance": r}))
            .collect::<Vec<_>>(),
        "positions": e.positions,
        "heads": e.heads,
        "neurons": e.neurons,
        "weight_sums": e.weight_sums,
    })
}
