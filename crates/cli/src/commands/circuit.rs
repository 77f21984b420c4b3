//! `scalpel circuit`: find the circuit of a task (IOI by default) — score its components with
//! the task metric, prune from the lowest up, measure the metric against the share pruned, and
//! keep the smallest set that holds the threshold. Over several seeds, tested on held-out
//! prompts and against random circuits of the same size; JSON, Markdown and SVG.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use scalpel::circuit::file::{CircuitNotes, from_json, to_json};
use scalpel::circuit::report::CircuitReport;
use scalpel::circuit::{
    CircuitEvent, CircuitPlan, DEFAULT_FRACTIONS, DEFAULT_THRESHOLD, faithfulness, search,
};
use scalpel::prune::with_masks;
use scalpel::prune::{Granularity, Group, Masks};
use scalpel::score::ScoreMethod;
use scalpel::task::metrics::{TaskMetrics, evaluate};
use scalpel::task::{EncodedTask, Split, Task, TaskSource, ioi};
use scalpel::{Model, TextTokenizer};

use crate::model_source::{ModelArgs, load, run_info};
use crate::output::{prepare_out, write_atomically};
use crate::progress::JobBars;
use crate::scoring::{LinearsArg, budget};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The task: ioi (generated per seed), capitals, agreement, pronouns, or a file of
    /// `prompt | answer | distractor` lines or JSON lines {"prompt", "answer", "distractor"}.
    #[arg(long, default_value = "ioi")]
    pub task: String,
    /// What is pruned: neurons (MLP), heads (attention) or weights (every block Linear).
    #[arg(long, value_enum, default_value_t = Granularity::Neurons)]
    pub granularity: Granularity,
    #[command(flatten)]
    pub linears: LinearsArg,
    /// Scoring methods (comma-separated): lrp (|mean relevance| of the task metric),
    /// lrp-signed, lrp-abs, gradient, wanda, activation, magnitude, random.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "lrp")]
    pub methods: Vec<ScoreMethod>,
    /// How components compete: global (one ranking over all layers) or layer; weights may
    /// also use row.
    #[arg(long, default_value = "global", value_parser = Group::parse)]
    pub group: Group,
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

fn metrics(model: &Model, task: &EncodedTask) -> Result<TaskMetrics> {
    Ok(evaluate(model, task)?.metrics())
}

pub fn run(args: Args) -> Result<()> {
    if let Some(out) = &args.out {
        prepare_out(out)?;
    }
    let (granularity, group) = (args.granularity, args.group);
    let fractions: Vec<f64> = if args.fractions.is_empty() {
        DEFAULT_FRACTIONS.to_vec()
    } else {
        args.fractions.clone()
    };
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
    let plan = CircuitPlan {
        run: run_info(&args.model, &device),
        task: &task,
        granularity,
        linears: args.linears.set(model.config.architecture)?,
        group,
        methods: args.methods.clone(),
        seeds: (0..args.seeds).collect(),
        prompts: args.prompts,
        fractions,
        threshold: Some(args.threshold),
        refine: args.refine,
        budget: budget(model),
    };
    eprintln!(
        "model {} on {}; task {}; {} of the Linears {} by {} ranked {}; threshold {:.0} %",
        args.model.model,
        device.label,
        task.name(),
        granularity.name(),
        plan.linears.describe(model.config.architecture),
        plan.methods
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(", "),
        group.name(),
        100.0 * args.threshold
    );
    let architecture = model.config.architecture;
    // The circuit of the first method and seed that finds one goes to --save-circuit.
    let mut to_save = args.save_circuit.clone();
    let mut scoring_name = String::new();
    let mut dense_scoring = None;
    let mut driver = JobBars::new(|event: CircuitEvent<'_>| {
        match event {
            CircuitEvent::Seed {
                seed,
                scoring,
                held_out,
                dense,
            } => {
                for note in scoring.notes.iter().chain(&held_out.notes) {
                    eprintln!("note: {note}");
                }
                eprintln!(
                    "seed {seed}: dense logit diff {:.3} (accuracy {:.1} %, top-1 {:.1} %) on {}; {:.3} on {}",
                    dense.scoring.logit_diff,
                    100.0 * dense.scoring.accuracy,
                    100.0 * dense.scoring.top1,
                    scoring.name,
                    dense.held_out.logit_diff,
                    held_out.name
                );
                scoring_name = scoring.name.clone();
                dense_scoring = Some(dense.scoring);
            }
            CircuitEvent::Circuit {
                method,
                found: None,
                ..
            } => eprintln!(
                "  {}: no measured share keeps {:.0} % of the logit difference",
                method.name(),
                100.0 * args.threshold
            ),
            CircuitEvent::Circuit {
                method,
                found: Some((found, masks)),
                ..
            } => {
                let point = found.point;
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
                if let Some(path) = to_save.take() {
                    save_circuit(
                        &path,
                        masks,
                        architecture,
                        CircuitNotes {
                            task: scoring_name.clone(),
                            threshold: Some(args.threshold),
                            dense: dense_scoring,
                            circuit: Some(point.metrics),
                        },
                    )?;
                }
            }
            // What every seed finished is on disk before the next one starts.
            CircuitEvent::SeedDone(report) => {
                if let Some(out) = &args.out {
                    write_outputs(out, report)?;
                }
            }
            CircuitEvent::Scored { .. } | CircuitEvent::Point { .. } => {}
        }
        Ok(())
    });
    pollster::block_on(search(model, &tokenizer, &plan, &mut driver))?;
    drop(driver);
    if let Some(out) = &args.out {
        eprintln!(
            "wrote circuit.json, circuit.md and circuit.svg to {}",
            out.display()
        );
    }
    Ok(())
}

fn save_circuit(
    path: &Path,
    masks: &Masks,
    architecture: scalpel::Architecture,
    notes: CircuitNotes,
) -> Result<()> {
    let text = to_json(masks, architecture, &notes)?;
    write_atomically(path, text.as_bytes())?;
    eprintln!("  saved the circuit to {}", path.display());
    Ok(())
}

/// Tests a saved circuit on seed 0's scoring and held-out prompts, next to the dense model.
fn test_saved(
    model: &mut Model,
    tokenizer: &TextTokenizer,
    task: &TaskSource,
    path: &Path,
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
    let (cs, ch) = pollster::block_on(with_masks(model, &masks, async |m: &Model| {
        Ok((
            evaluate(m, &scoring)?.metrics(),
            evaluate(m, &held_out)?.metrics(),
        ))
    }))?;
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

/// circuit.json, circuit.md and circuit.svg in `out` (made by `prepare_out` before any work).
fn write_outputs(out: &Path, report: &CircuitReport) -> Result<()> {
    write_atomically(
        &out.join("circuit.json"),
        serde_json::to_string_pretty(report)?.as_bytes(),
    )?;
    write_atomically(&out.join("circuit.md"), report.markdown().as_bytes())?;
    write_atomically(&out.join("circuit.svg"), report.chart().to_svg().as_bytes())?;
    Ok(())
}
