//! `scalpel circuit`: find the circuit of a task (IOI by default) — score its components with
//! the task metric, prune from the lowest up, measure the metric against the share pruned, and
//! keep the smallest set that holds the threshold. Over several seeds, tested on held-out
//! prompts and against random circuits of the same size; JSON, Markdown and SVG.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use scalpel::circuit::file::{CircuitNotes, from_json, to_json};
use scalpel::circuit::{
    CircuitSummary, CurvePoint, DEFAULT_FRACTIONS, DEFAULT_THRESHOLD, Search, check_dense,
    check_group, faithfulness, mean_std, random_circuit, summarize,
};
use scalpel::prune::{Granularity, Group, Masks};
use scalpel::report::{LineChart, Series};
use scalpel::score::{Explained, ReferenceSet, ScoreMethod, Scores};
use scalpel::task::metrics::{TaskMetrics, evaluate};
use scalpel::task::{EncodedTask, Split, Task, TaskSource, ioi};
use scalpel::{Model, TextTokenizer};
use serde::Serialize;
use serde_json::json;

use crate::model_source::{ModelArgs, load};
use crate::output::{prepare_out, write_atomically};
use crate::progress::bar;
use crate::scoring::{run_scorer, scorer_at};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The task: ioi (generated per seed), capitals, agreement, pronouns, or a file of
    /// `prompt | answer | distractor` lines or JSON lines {"prompt", "answer", "distractor"}.
    #[arg(long, default_value = "ioi")]
    pub task: String,
    /// What is pruned: neurons (MLP), heads (attention) or weights (every block Linear).
    #[arg(long, default_value = "neurons")]
    pub granularity: String,
    /// Scoring methods (comma-separated): lrp (|mean relevance| of the task metric),
    /// lrp-signed, lrp-abs, gradient, wanda, activation, magnitude, random.
    #[arg(long, value_delimiter = ',', default_value = "lrp")]
    pub methods: Vec<String>,
    /// How components compete: global (one ranking over all layers) or layer; weights may
    /// also use row.
    #[arg(long, default_value = "global")]
    pub group: String,
    /// Seeds 0..N: each draws its own prompts (IOI) or its own split (data tasks).
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Prompts per seed for scoring (and as many held out).
    #[arg(long, default_value_t = 128)]
    pub prompts: usize,
    /// The circuit keeps at least this share of the dense logit difference.
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
    pub threshold: f64,
    /// Shares pruned where the curve is measured (comma-separated; default 0,0.1,…,0.9,0.95,0.97,0.98,0.99).
    #[arg(long, value_delimiter = ',')]
    pub fractions: Vec<f64>,
    /// Bisection steps that narrow the circuit between two measured shares.
    #[arg(long, default_value_t = 4)]
    pub refine: usize,
    /// Output folder: circuit.json, circuit.md and circuit.svg.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the circuit of the first method and seed as JSON (load it in the page or with --load).
    #[arg(long)]
    pub save_circuit: Option<PathBuf>,
    /// Test a saved circuit on the task (seed 0's scoring and held-out prompts) instead of searching.
    #[arg(long, conflicts_with = "save_circuit")]
    pub load: Option<PathBuf>,
    /// Print seed 0's scoring prompts as JSON lines and stop (a task file to edit or share).
    #[arg(long)]
    pub print_prompts: bool,
}

#[derive(Serialize)]
struct Dense {
    scoring: TaskMetrics,
    held_out: TaskMetrics,
}

#[derive(Serialize)]
struct RandomCircuit {
    scoring: TaskMetrics,
    held_out: TaskMetrics,
    faithfulness: f64,
    held_out_faithfulness: f64,
}

#[derive(Serialize)]
struct Found {
    point: CurvePoint,
    kept_share: f64,
    faithfulness: f64,
    held_out: TaskMetrics,
    held_out_faithfulness: f64,
    /// Random components of the same number, pruned the same way.
    random: RandomCircuit,
    summary: CircuitSummary,
}

#[derive(Serialize)]
struct MethodRun {
    method: ScoreMethod,
    scoring_seconds: f64,
    curve: Vec<CurvePoint>,
    circuit: Option<Found>,
}

#[derive(Serialize)]
struct SeedRun {
    seed: u64,
    scoring_prompts: String,
    held_out_prompts: String,
    notes: Vec<String>,
    dense: Dense,
    methods: Vec<MethodRun>,
}

fn task_source(name: &str) -> Result<TaskSource> {
    let path = std::path::Path::new(name);
    if path.is_file() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the task file {}", path.display()))?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "task".into());
        return Ok(TaskSource::Data(Task::parse(&stem, &text)?));
    }
    Ok(TaskSource::named(name)?)
}

/// Scores of every method, one model pass per family (the LRP variants share one, Wanda and
/// activation share one), with progress bars. Returns `(method, scores, seconds)`.
fn score_all(
    model: &Model,
    methods: &[ScoreMethod],
    granularity: Granularity,
    reference: &ReferenceSet,
    seed: u64,
) -> Result<Vec<(ScoreMethod, Scores, f64)>> {
    let family = |m: ScoreMethod| match m {
        ScoreMethod::Lrp | ScoreMethod::LrpSigned | ScoreMethod::LrpAbs => 0,
        ScoreMethod::Wanda | ScoreMethod::Activation => 1,
        ScoreMethod::Gradient => 2,
        ScoreMethod::Magnitude => 3,
        ScoreMethod::Random => 4,
        ScoreMethod::WandaSequential => 5,
    };
    let mut out: Vec<(ScoreMethod, Scores, f64)> = Vec::new();
    for f in 0..6 {
        let wanted: Vec<ScoreMethod> = methods
            .iter()
            .copied()
            .filter(|&m| family(m) == f)
            .collect();
        let Some(&first) = wanted.first() else {
            continue;
        };
        let start = Instant::now();
        let scores = match first {
            ScoreMethod::Random => vec![Scores::random(model, granularity, seed)?],
            ScoreMethod::WandaSequential => {
                bail!("wanda-seq prunes while it scores for one sparsity: it cannot draw a curve")
            }
            _ => {
                // `lrp-abs` weights need the |R| sums, so it leads its family when present.
                let lead = if wanted.contains(&ScoreMethod::LrpAbs) {
                    ScoreMethod::LrpAbs
                } else {
                    first
                };
                let used = lead.uses_reference().then(|| reference.clone());
                let mut scorer = scorer_at(model, lead, granularity, used)?;
                if wanted.len() > 1 {
                    scorer = scorer.keeping_signed_sums();
                }
                run_scorer(&mut scorer, lead.name())?;
                scorer
                    .scores_at(granularity, &wanted)?
                    .into_iter()
                    .map(|p| Ok(p.read()?))
                    .collect::<Result<Vec<_>>>()?
            }
        };
        let seconds = start.elapsed().as_secs_f64();
        for (m, s) in wanted.iter().zip(scores) {
            out.push((*m, s, seconds));
        }
    }
    // Back in the order asked for.
    out.sort_by_key(|(m, _, _)| methods.iter().position(|x| x == m));
    Ok(out)
}

fn metrics(model: &Model, task: &EncodedTask) -> Result<TaskMetrics> {
    Ok(evaluate(model, task)?.metrics())
}

/// Applies `masks`, measures both prompt sets, restores the dense model.
fn with_masks(
    model: &mut Model,
    masks: &Masks,
    scoring: &EncodedTask,
    held_out: &EncodedTask,
) -> Result<(TaskMetrics, TaskMetrics)> {
    masks.apply(model)?;
    let result = (|| Ok((metrics(model, scoring)?, metrics(model, held_out)?)))();
    model.restore_dense();
    result
}

pub fn run(args: Args) -> Result<()> {
    if let Some(out) = &args.out {
        prepare_out(out)?;
    }
    let granularity = Granularity::parse(&args.granularity)?;
    let group = Group::parse(&args.group)?;
    check_group(granularity, group)?;
    let methods: Vec<ScoreMethod> = args
        .methods
        .iter()
        .map(|m| ScoreMethod::parse(m))
        .collect::<scalpel::Result<_>>()?;
    if methods.is_empty() {
        bail!("no scoring method given");
    }
    let fractions: Vec<f64> = if args.fractions.is_empty() {
        DEFAULT_FRACTIONS.to_vec()
    } else {
        args.fractions.clone()
    };
    for &f in &fractions {
        scalpel::prune::check_sparsity(f)?;
    }
    if !(0.0..=1.5).contains(&args.threshold) {
        bail!("--threshold is a share of the dense logit difference, e.g. 0.9");
    }
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let task = task_source(&args.task)?;
    let (mut loaded, device) = load(&args.model)?;
    let tokenizer = loaded.tokenizer.clone();
    let model = &mut loaded.model;
    if args.print_prompts {
        let prompts = task.sample(&tokenizer, 0, args.prompts, Split::Scoring)?;
        for p in ioi::describe(&prompts, &tokenizer)? {
            println!("{}", serde_json::to_string(&p)?);
        }
        return Ok(());
    }
    if let Some(path) = &args.load {
        return test_saved(model, &tokenizer, &task, path, args.prompts);
    }
    eprintln!(
        "model {} on {}; task {}; {} {} ranked {}; threshold {:.0} %",
        args.model.model,
        device.label,
        task.name(),
        granularity.name(),
        methods
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(", "),
        group.name(),
        100.0 * args.threshold
    );
    let mut seeds = Vec::new();
    let mut saved = false;
    for seed in 0..args.seeds {
        let scoring = task.sample(&tokenizer, seed, args.prompts, Split::Scoring)?;
        let held_out = task.sample(&tokenizer, seed, args.prompts, Split::HeldOut)?;
        for note in scoring.notes.iter().chain(&held_out.notes) {
            eprintln!("note: {note}");
        }
        let dense = Dense {
            scoring: metrics(model, &scoring)?,
            held_out: metrics(model, &held_out)?,
        };
        check_dense(&dense.scoring, &scoring.name)?;
        eprintln!(
            "seed {seed}: dense logit diff {:.3} (accuracy {:.1} %, top-1 {:.1} %) on {}; {:.3} on {}",
            dense.scoring.logit_diff,
            100.0 * dense.scoring.accuracy,
            100.0 * dense.scoring.top1,
            scoring.name,
            dense.held_out.logit_diff,
            held_out.name
        );
        let reference = ReferenceSet::from_task(&scoring)?;
        let mut runs = Vec::new();
        for (method, scores, seconds) in score_all(model, &methods, granularity, &reference, seed)?
        {
            let search = Search {
                scores: &scores,
                group,
                task: &scoring,
                dense: dense.scoring,
            };
            let pb = bar(fractions.len() as u64, method.name());
            let curve = search.curve(model, &fractions, &mut |done, _| {
                pb.set_position(done as u64)
            })?;
            pb.finish_and_clear();
            let point = search.circuit(model, &curve, args.threshold, args.refine)?;
            let circuit = match point {
                None => {
                    eprintln!(
                        "  {}: no measured share keeps {:.0} % of the logit difference",
                        method.name(),
                        100.0 * args.threshold
                    );
                    None
                }
                Some(point) => {
                    let masks = Masks::from_scores(&scores, point.fraction, group)?;
                    let (_, held) = with_masks(model, &masks, &scoring, &held_out)?;
                    let random_masks =
                        random_circuit(model, granularity, point.fraction, group, seed)?;
                    let (rs, rh) = with_masks(model, &random_masks, &scoring, &held_out)?;
                    let found = Found {
                        point,
                        kept_share: 1.0 - point.pruned as f64 / point.total.max(1) as f64,
                        faithfulness: faithfulness(&point.metrics, &dense.scoring),
                        held_out: held,
                        held_out_faithfulness: faithfulness(&held, &dense.held_out),
                        random: RandomCircuit {
                            scoring: rs,
                            held_out: rh,
                            faithfulness: faithfulness(&rs, &dense.scoring),
                            held_out_faithfulness: faithfulness(&rh, &dense.held_out),
                        },
                        summary: summarize(&masks, &scores, 12),
                    };
                    eprintln!(
                        "  {}: circuit keeps {} of {} {} ({:.2} %): logit diff {:.0} % of dense, held-out {:.0} % (random of that size {:.0} %)",
                        method.name(),
                        point.total - point.pruned,
                        point.total,
                        granularity.name(),
                        100.0 * found.kept_share,
                        100.0 * found.faithfulness,
                        100.0 * found.held_out_faithfulness,
                        100.0 * found.random.held_out_faithfulness
                    );
                    if let (Some(path), false) = (&args.save_circuit, saved) {
                        let notes = CircuitNotes {
                            task: scoring.name.clone(),
                            threshold: Some(args.threshold),
                            dense: Some(dense.scoring),
                            circuit: Some(point.metrics),
                        };
                        let text = to_json(&masks, model.config.architecture, &notes)?;
                        write_atomically(path, text.as_bytes())?;
                        eprintln!("  saved the circuit to {}", path.display());
                        saved = true;
                    }
                    Some(found)
                }
            };
            runs.push(MethodRun {
                method,
                scoring_seconds: seconds,
                curve,
                circuit,
            });
        }
        seeds.push(SeedRun {
            seed,
            scoring_prompts: scoring.name.clone(),
            held_out_prompts: held_out.name.clone(),
            notes: scoring.notes.clone(),
            dense,
            methods: runs,
        });
        if let Some(out) = &args.out {
            write_outputs(
                out,
                &args,
                model,
                &task,
                granularity,
                group,
                &methods,
                &fractions,
                &seeds,
            )?;
        }
    }
    if let Some(out) = &args.out {
        eprintln!(
            "wrote circuit.json, circuit.md and circuit.svg to {}",
            out.display()
        );
    }
    Ok(())
}

/// Tests a saved circuit on seed 0's scoring and held-out prompts, next to the dense model.
fn test_saved(
    model: &mut Model,
    tokenizer: &TextTokenizer,
    task: &TaskSource,
    path: &std::path::Path,
    prompts: usize,
) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (masks, notes) = from_json(
        &path.display().to_string(),
        &text,
        model.config.architecture,
    )?;
    masks.check_for(model)?;
    let scoring = task.sample(tokenizer, 0, prompts, Split::Scoring)?;
    let held_out = task.sample(tokenizer, 0, prompts, Split::HeldOut)?;
    let dense = (metrics(model, &scoring)?, metrics(model, &held_out)?);
    let (cs, ch) = with_masks(model, &masks, &scoring, &held_out)?;
    let report = masks.report();
    eprintln!(
        "circuit from {} (found on {}): keeps {} of {} {}",
        path.display(),
        notes.task,
        report.total - report.pruned,
        report.total,
        masks.granularity().name()
    );
    for (name, d, c) in [(&scoring.name, dense.0, cs), (&held_out.name, dense.1, ch)] {
        println!(
            "{name}: dense logit diff {:.3} (accuracy {:.1} %), circuit {:.3} (accuracy {:.1} %): {:.0} % of dense",
            d.logit_diff,
            100.0 * d.accuracy,
            c.logit_diff,
            100.0 * c.accuracy,
            100.0 * faithfulness(&c, &d)
        );
    }
    Ok(())
}

/// Per method: mean ± std over seeds of faithfulness at each share, and of the circuits.
fn aggregate(
    seeds: &[SeedRun],
    methods: &[ScoreMethod],
    granularity: Granularity,
    fractions: &[f64],
) -> serde_json::Value {
    let per_method: Vec<serde_json::Value> = methods
        .iter()
        .map(|&m| {
            let runs: Vec<(&SeedRun, &MethodRun)> = seeds
                .iter()
                .filter_map(|s| s.methods.iter().find(|r| r.method == m).map(|r| (s, r)))
                .collect();
            let curve: Vec<serde_json::Value> = fractions
                .iter()
                .map(|&f| {
                    let at = |key: fn(&TaskMetrics, &TaskMetrics) -> f64| -> (f64, f64) {
                        let v: Vec<f64> = runs
                            .iter()
                            .filter_map(|(s, r)| {
                                r.curve
                                    .iter()
                                    .find(|p| p.fraction == f)
                                    .map(|p| key(&p.metrics, &s.dense.scoring))
                            })
                            .collect();
                        mean_std(&v)
                    };
                    let (faith, faith_std) = at(faithfulness);
                    let (acc, acc_std) = at(|m, _| m.accuracy);
                    json!({"fraction": f, "faithfulness": faith, "faithfulness_std": faith_std,
                           "accuracy": acc, "accuracy_std": acc_std})
                })
                .collect();
            let found: Vec<&Found> = runs
                .iter()
                .filter_map(|(_, r)| r.circuit.as_ref())
                .collect();
            let stat = |key: fn(&Found) -> f64| {
                let (mean, std) = mean_std(&found.iter().map(|f| key(f)).collect::<Vec<_>>());
                json!({"mean": mean, "std": std})
            };
            json!({
                "method": m,
                "formula": m.formula_at(granularity, Explained::TaskMetric),
                "curve": curve,
                "circuits_found": found.len(),
                "seeds": runs.len(),
                "kept_share": stat(|f| f.kept_share),
                "faithfulness": stat(|f| f.faithfulness),
                "held_out_faithfulness": stat(|f| f.held_out_faithfulness),
                "held_out_accuracy": stat(|f| f.held_out.accuracy),
                "random_held_out_faithfulness": stat(|f| f.random.held_out_faithfulness),
                "random_held_out_accuracy": stat(|f| f.random.held_out.accuracy),
            })
        })
        .collect();
    serde_json::Value::Array(per_method)
}

/// circuit.json, circuit.md and circuit.svg in `out` (made by `prepare_out` before any work).
#[allow(clippy::too_many_arguments)]
fn write_outputs(
    out: &std::path::Path,
    args: &Args,
    model: &Model,
    task: &TaskSource,
    granularity: Granularity,
    group: Group,
    methods: &[ScoreMethod],
    fractions: &[f64],
    seeds: &[SeedRun],
) -> Result<()> {
    let summary = aggregate(seeds, methods, granularity, fractions);
    let protocol = json!({
        "model": args.model.model,
        "fingerprint": model.config.fingerprint(),
        "task": task.name(),
        "prompts_per_seed": args.prompts,
        "seeds": seeds.len(),
        "granularity": granularity,
        "group": group,
        "threshold": args.threshold,
        "fractions": fractions,
        "refine_steps": args.refine,
        "metric": "logit(answer) − logit(distractor) at the last position; faithfulness = pruned / dense mean logit difference on the same prompts",
        "explained": "LRP and gradient scores explain each prompt's logit difference (answer − distractor)",
        "methods": methods.iter().map(|m| json!({"method": m, "formula": m.formula_at(granularity, Explained::TaskMetric)})).collect::<Vec<_>>(),
    });
    let doc = json!({"protocol": protocol, "summary": summary, "seeds": seeds});
    write_atomically(
        &out.join("circuit.json"),
        serde_json::to_string_pretty(&doc)?.as_bytes(),
    )?;
    write_atomically(&out.join("circuit.md"), markdown(&doc).as_bytes())?;
    write_atomically(&out.join("circuit.svg"), chart(&doc).to_svg().as_bytes())?;
    Ok(())
}

fn pct(v: &serde_json::Value) -> String {
    match (v["mean"].as_f64(), v["std"].as_f64()) {
        (Some(m), Some(s)) if m.is_finite() => format!("{:.1} ± {:.1}", 100.0 * m, 100.0 * s),
        _ => "–".into(),
    }
}

fn markdown(doc: &serde_json::Value) -> String {
    let p = &doc["protocol"];
    let mut md = format!(
        "# Circuits: {} ({} seeds × {} prompts, {} ranked {}, threshold {} % of the dense logit difference)\n\n\
         Model `{}`. Metric: {}.\n\n\
         | method | circuits found | kept share % | faithfulness % (scoring prompts) | held-out faithfulness % | held-out accuracy % | random circuit, same size: held-out faithfulness % | random: held-out accuracy % |\n\
         |---|---|---|---|---|---|---|---|\n",
        p["task"].as_str().unwrap_or("?"),
        p["seeds"],
        p["prompts_per_seed"],
        p["granularity"].as_str().unwrap_or("?"),
        p["group"].as_str().unwrap_or("?"),
        100.0 * p["threshold"].as_f64().unwrap_or(f64::NAN),
        p["model"].as_str().unwrap_or("?"),
        p["metric"].as_str().unwrap_or("?"),
    );
    for m in doc["summary"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "| {} | {}/{} | {} | {} | {} | {} | {} | {} |\n",
            m["method"].as_str().unwrap_or("?"),
            m["circuits_found"],
            m["seeds"],
            pct(&m["kept_share"]),
            pct(&m["faithfulness"]),
            pct(&m["held_out_faithfulness"]),
            pct(&m["held_out_accuracy"]),
            pct(&m["random_held_out_faithfulness"]),
            pct(&m["random_held_out_accuracy"]),
        ));
    }
    md.push_str("\nMean ± standard deviation over seeds. Faithfulness along the curve (mean over seeds):\n\n| share pruned |");
    let summary: Vec<&serde_json::Value> =
        doc["summary"].as_array().into_iter().flatten().collect();
    for m in &summary {
        md.push_str(&format!(" {} |", m["method"].as_str().unwrap_or("?")));
    }
    md.push_str(&format!("\n|---|{}\n", "---|".repeat(summary.len())));
    for f in p["fractions"].as_array().into_iter().flatten() {
        md.push_str(&format!("| {} |", f));
        for m in &summary {
            let point = m["curve"]
                .as_array()
                .and_then(|c| c.iter().find(|x| x["fraction"] == *f));
            let cell = point.map_or("–".to_string(), |x| {
                format!(
                    "{:.1} ± {:.1}",
                    100.0 * x["faithfulness"].as_f64().unwrap_or(f64::NAN),
                    100.0 * x["faithfulness_std"].as_f64().unwrap_or(f64::NAN)
                )
            });
            md.push_str(&format!(" {cell} |"));
        }
        md.push('\n');
    }
    if let Some(first) = doc["seeds"].as_array().and_then(|s| s.first()) {
        md.push_str("\nHighest-scored kept components (seed 0):\n\n");
        for run in first["methods"].as_array().into_iter().flatten() {
            let top: Vec<String> = run["circuit"]["summary"]["top"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| match p["granularity"].as_str() {
                    Some("weights") => format!(
                        "L{} {}[{}]",
                        c["layer"],
                        c["linear"].as_str().unwrap_or("?"),
                        c["index"]
                    ),
                    _ => format!("L{}.{}", c["layer"], c["index"]),
                })
                .collect();
            if !top.is_empty() {
                md.push_str(&format!(
                    "- {}: {}\n",
                    run["method"].as_str().unwrap_or("?"),
                    top.join(", ")
                ));
            }
        }
    }
    md
}

fn chart(doc: &serde_json::Value) -> LineChart {
    let p = &doc["protocol"];
    let series = doc["summary"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let curve: Vec<(f64, f64, f64)> = m["curve"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| {
                    Some((
                        x["fraction"].as_f64()?,
                        x["faithfulness"].as_f64()?,
                        x["faithfulness_std"].as_f64()?,
                    ))
                })
                .collect();
            Series {
                name: m["method"].as_str().unwrap_or("?").into(),
                points: curve.iter().map(|&(f, y, _)| (f, y)).collect(),
                spread: curve.iter().map(|&(f, y, s)| (f, y - s, y + s)).collect(),
            }
        })
        .collect();
    LineChart {
        title: format!(
            "{}: {} pruned ({} seeds, ± 1 sd)",
            p["task"].as_str().unwrap_or("?"),
            p["granularity"].as_str().unwrap_or("?"),
            p["seeds"]
        ),
        x_label: format!(
            "share of {} pruned ({} ranking)",
            p["granularity"].as_str().unwrap_or("?"),
            p["group"].as_str().unwrap_or("?")
        ),
        y_label: "logit difference / dense".into(),
        log_y: false,
        series,
        reference: p["threshold"]
            .as_f64()
            .map(|t| (format!("threshold {:.0} %", 100.0 * t), t)),
    }
}
