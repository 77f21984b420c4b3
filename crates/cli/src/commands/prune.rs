//! `scalpel prune`: score, mask and export a pruned checkpoint with a sidecar that records the
//! exact protocol and the achieved sparsity per layer.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use scalpel::export::shrink::check_shrinkable;
use scalpel::prune::{Granularity, Group, Masks, SparsityReport};
use scalpel::score::ScoreMethod;
use serde_json::json;

use crate::model_source::{ModelArgs, load};
use crate::output::{prepare_out, write_atomically, write_checkpoint, write_shrunk_model};
use crate::scoring::{LinearsArg, ReferenceArgs, obtain, streamed_masks, unit_masks};
use crate::wiki::{WikiArgs, evaluate};

/// The sidecar written next to the pruned checkpoint.
pub const SIDECAR: &str = "scalpel-prune.json";

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// How weights are scored: lrp-abs (mean |relevance|; the LRP variant that prunes well, see
    /// README "Results"), lrp (|mean relevance|), wanda, wanda-seq (Wanda's sequential
    /// variant), magnitude, gradient.
    #[arg(long, value_enum, default_value_t = ScoreMethod::LrpAbs)]
    pub method: ScoreMethod,
    /// Fraction of each group's weights to prune, in [0, 1) (default 0.5; N:M groups fix it).
    #[arg(long)]
    pub sparsity: Option<f64>,
    /// Comparison group: row (per output row, Wanda's), layer, global, or N:M such as 2:4
    /// (default row; neurons and heads: layer). Heads also take N:M with M dividing the query
    /// heads per key/value head (SmolLM2: 1:3, 2:3): each group keeps the same number, so
    /// --shrink removes them all under grouped-query attention.
    #[arg(long, value_parser = Group::parse)]
    pub group: Option<Group>,
    /// What is pruned: single weights (default), MLP neurons or attention heads (ranked per
    /// layer or globally).
    #[arg(long, value_enum, default_value_t = Granularity::Weights)]
    pub granularity: Granularity,
    /// With --out: write the checkpoint without the pruned MLP neurons or attention heads (their
    /// rows and columns removed, a smaller intermediate_size or head count) instead of with
    /// zeros. Needs neuron or head masks (heads not for OPT and GPT-2); per-layer masks shrink
    /// every layer fully, global ones to the widest layer.
    #[arg(long, requires = "out")]
    pub shrink: bool,
    #[command(flatten)]
    pub linears: LinearsArg,
    #[command(flatten)]
    pub reference: ReferenceArgs,
    /// Score file: reused when it holds this method's scores for this model and reference set,
    /// written otherwise (so a later run at another sparsity skips the scoring).
    #[arg(long)]
    pub scores: Option<PathBuf>,
    /// Apply this mask file instead of scoring: a mask from --save-mask, or a circuit file
    /// (.json, from `scalpel circuit --save-circuit` or the page), which with --shrink writes
    /// a circuit of MLP neurons or heads as a smaller model.
    #[arg(long, conflicts_with = "scores")]
    pub mask: Option<PathBuf>,
    /// Also write the mask (one byte per weight) to this file.
    #[arg(long)]
    pub save_mask: Option<PathBuf>,
    /// Folder for the pruned checkpoint (config.json, model.safetensors, tokenizer.json and
    /// the scalpel-prune.json sidecar).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace a checkpoint already in --out (a model.safetensors or a sharded one's index).
    #[arg(long)]
    pub force: bool,
    /// Evaluate the pruned model's perplexity (`wiki-512`; see --windows).
    #[arg(long)]
    pub eval: bool,
    #[command(flatten)]
    pub wiki: WikiArgs,
}

/// Pruned share overall and per layer (one line per layer with a bar, unless all are equal).
pub fn print_report(report: &SparsityReport, granularity: Granularity) {
    eprintln!(
        "pruned {} of {} {} ({:.2}%)",
        report.pruned,
        report.total,
        match granularity {
            Granularity::Weights => "block weights",
            other => other.name(),
        },
        100.0 * report.sparsity()
    );
    let layers = report.per_layer();
    let share = |(_, pruned, total): &(usize, u64, u64)| *pruned as f64 / (*total).max(1) as f64;
    if layers.windows(2).all(|w| share(&w[0]) == share(&w[1])) {
        eprintln!(
            "  every layer: {:.2}%",
            100.0 * layers.first().map_or(0.0, share)
        );
        return;
    }
    for l in &layers {
        let bar = "#".repeat((share(l) * 40.0).round() as usize);
        eprintln!("  layer {:>3} {:>6.2}% {bar}", l.0, 100.0 * share(l));
    }
}

pub fn run(args: Args) -> Result<()> {
    if args.out.is_none() && !args.eval && args.save_mask.is_none() {
        bail!(
            "nothing to do: pass --out DIR (write the pruned checkpoint), --eval and/or --save-mask FILE"
        );
    }
    if let Some(out) = &args.out
        && (out.join("model.safetensors").exists()
            || out.join("model.safetensors.index.json").exists())
        && !args.force
    {
        bail!(
            "{} already holds a checkpoint; pass --force to replace it",
            out.display()
        );
    }
    if let Some(out) = &args.out {
        prepare_out(out)?;
    }
    let granularity = args.granularity;
    let units = granularity != Granularity::Weights;
    let group = args
        .group
        .unwrap_or(if units { Group::Layer } else { Group::Row });
    // Heads N:M: N of every M consecutive heads, within each key/value group (checked below).
    let heads_by_group = granularity == Granularity::Heads && matches!(group, Group::NofM { .. });
    if units && !matches!(group, Group::Layer | Group::Global) && !heads_by_group {
        bail!(
            "{} are ranked per layer or globally (--group layer or global{}), not by `{}`",
            granularity.name(),
            if granularity == Granularity::Heads {
                ", or N:M within each key/value group"
            } else {
                ""
            },
            group.name()
        );
    }
    if units && (args.scores.is_some() || args.method == ScoreMethod::WandaSequential) {
        bail!(
            "--scores files and wanda-seq are for single weights; {} are scored afresh",
            granularity.name()
        );
    }
    let sparsity = match (args.sparsity, group.implied_sparsity()) {
        (Some(s), _) => s,
        (None, Some(implied)) => implied,
        (None, None) => 0.5,
    };
    scalpel::prune::check_sparsity(sparsity)?;
    let method = args.method;
    if !args.linears.is_all() {
        if args.mask.is_some() {
            bail!(
                "--linears applies when scoring: a mask file already says which Linears it prunes"
            );
        }
        if method == ScoreMethod::WandaSequential {
            bail!(
                "wanda-seq prunes every Linear of a block before scoring the next; use wanda with --linears"
            );
        }
    }
    let (mut loaded, device) = load(&args.model)?;
    let model = &mut loaded.model;
    let arch = model.config.architecture;
    eprintln!("model {} on {}", args.model.model, device.label);
    let linears = args.linears.set(arch)?;
    if let (true, Group::NofM { block, .. }) = (heads_by_group, group) {
        let per_group = model.config.heads_per_kv_head();
        if !per_group.is_multiple_of(block) {
            bail!(
                "heads N:M keeps N of every M heads within a key/value group, and this model's \
                 key/value heads each serve {per_group} query heads: M must divide {per_group}"
            );
        }
    }
    if args.shrink && args.mask.is_none() {
        check_shrinkable(granularity, arch).context("--shrink")?;
    }

    let masks = match &args.mask {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let name = path.display().to_string();
            let masks = if path.extension().is_some_and(|e| e == "json") {
                let text = String::from_utf8(bytes)
                    .map_err(|_| anyhow::anyhow!("{name} is not a UTF-8 circuit file"))?;
                scalpel::circuit::file::from_json(&name, &text, arch)?.0
            } else {
                Masks::from_safetensors(&name, &bytes, arch)?
            };
            masks.check_for(model)?;
            if args.shrink {
                check_shrinkable(masks.granularity(), arch)
                    .with_context(|| format!("--shrink with {name}"))?;
            }
            masks
        }
        None => {
            let reference = args.reference.build(&loaded.tokenizer)?;
            eprintln!(
                "scores: {} = {}{}",
                method.name(),
                method.formula(),
                if method.uses_reference() {
                    format!(", reference {}", reference.protocol.name)
                } else {
                    String::new()
                }
            );
            // Without a score file to write, a per-row, per-layer or N:M mask needs only one
            // Linear's scores at a time.
            if units {
                unit_masks(
                    model,
                    method,
                    &reference,
                    granularity,
                    (sparsity, group),
                    &linears,
                )?
            } else if args.scores.is_none()
                && group != Group::Global
                && method != ScoreMethod::WandaSequential
            {
                streamed_masks(model, method, &reference, sparsity, group, &linears)?
            } else {
                let scores = obtain(
                    model,
                    method,
                    &reference,
                    (sparsity, group),
                    args.scores.as_deref(),
                )?
                .only(&linears, model)?;
                Masks::from_scores(&scores, sparsity, group)?
            }
        }
    };
    // Pruned once and exported: nothing is kept to undo the masks.
    let report = masks.apply_for_good(model)?;
    let info = &masks.info;
    eprintln!(
        "mask: {} at sparsity {} per {} group, Linears: {}",
        info.scores.method.name(),
        info.sparsity,
        info.group.name(),
        info.scores.linears.describe(arch)
    );
    print_report(&report, masks.granularity());
    if let Some(path) = &args.save_mask {
        write_atomically(path, &masks.to_safetensors(arch)?)?;
        eprintln!("mask written to {}", path.display());
    }
    let perplexity = if args.eval {
        let tokens = args.wiki.tokens(&loaded.tokenizer)?;
        let result = evaluate(model, &tokens, &args.wiki.protocol(), "perplexity")?;
        println!(
            "{}: perplexity {:.4} of the model pruned by {} at {} ({} group)",
            result.protocol.name,
            result.perplexity,
            info.scores.method.name(),
            info.sparsity,
            info.group.name()
        );
        Some(result)
    } else {
        None
    };
    if let Some(out) = &args.out {
        let sidecar = json!({
            "scalpel": env!("CARGO_PKG_VERSION"),
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "source_model": args.model.model,
            "model": model.config.fingerprint(),
            "device": device.label,
            "mask": info,
            "achieved": {
                "pruned": report.pruned,
                "total": report.total,
                "sparsity": report.sparsity(),
                "per_layer": report.per_layer().iter().map(|(l, p, t)| json!({
                    "layer": l, "pruned": p, "total": t, "sparsity": *p as f64 / (*t).max(1) as f64
                })).collect::<Vec<_>>(),
                "per_linear": report.linears,
            },
            "perplexity": perplexity,
        });
        let note = json!({
            "method": info.scores.method,
            "sparsity": info.sparsity,
            "group": info.group,
            "reference": info.scores.reference,
        });
        if args.shrink {
            write_shrunk_model(
                out,
                model,
                &loaded.tokenizer,
                &masks,
                &note,
                (SIDECAR, &sidecar),
            )?;
        } else {
            write_checkpoint(out, model, &loaded.tokenizer, &note, (SIDECAR, &sidecar))?;
        }
        eprintln!(
            "pruned checkpoint written to {} (evaluate it with `scalpel eval ppl --model {}`)",
            out.display(),
            out.display()
        );
    }
    Ok(())
}
