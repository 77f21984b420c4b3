//! `scalpel sweep`: methods × sparsities → perplexity, written as JSON, a Markdown table and an
//! SVG plot; optionally how the reference set's size changes LRP. Scores are cached in files
//! and finished evaluations are kept in `sweep.json`, so an interrupted sweep resumes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use scalpel::Model;
use scalpel::eval::perplexity::{PerplexityProtocol, PerplexityResult};
use scalpel::prune::{Group, Masks};
use scalpel::report::{LineChart, Series};
use scalpel::score::{MethodFormula, ReferenceProtocol, ReferenceSet, ScoreMethod, Scores};
use serde::{Deserialize, Serialize};

use crate::model_source::{ModelArgs, load};
use crate::output::{prepare_out, write_atomically};
use crate::scoring::{ReferenceArgs, compute, load_cached, obtain, save};
use crate::wiki::{WikiArgs, evaluate};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Scoring methods (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "lrp,lrp-abs,wanda,wanda-seq,magnitude,gradient"
    )]
    pub methods: Vec<ScoreMethod>,
    /// Sparsities (comma-separated, each in [0, 1)).
    #[arg(long, value_delimiter = ',', default_value = "0.3,0.5,0.6")]
    pub sparsities: Vec<f64>,
    /// Comparison group: row, layer, global or N:M.
    #[arg(long, default_value = "row", value_parser = Group::parse)]
    pub group: Group,
    #[command(flatten)]
    pub reference: ReferenceArgs,
    #[command(flatten)]
    pub wiki: WikiArgs,
    /// Also score LRP with only the first N reference samples, for each N (comma-separated),
    /// and evaluate each at --size-sparsity: how the reference set's size matters.
    #[arg(long, value_delimiter = ',')]
    pub reference_sizes: Vec<usize>,
    #[arg(long, default_value_t = 0.5)]
    pub size_sparsity: f64,
    /// Output folder: sweep.json, sweep.md, sweep.svg (and reference-sizes.svg).
    #[arg(long)]
    pub out: PathBuf,
    /// Where score files are cached (default: OUT/scores).
    #[arg(long)]
    pub scores_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Entry {
    method: ScoreMethod,
    /// Reference samples the scores used (the size study varies it).
    samples: usize,
    sparsity: f64,
    perplexity: f64,
    mean_nll: f64,
    achieved_sparsity: f64,
}

/// How a sweep was measured; a sweep resumes only into a sweep.json of the same protocol.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct SweepProtocol {
    model: String,
    fingerprint: String,
    evaluation: PerplexityProtocol,
    reference: ReferenceProtocol,
    group: Group,
    methods: Vec<MethodFormula>,
    pruned: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Sweep {
    protocol: SweepProtocol,
    dense: Option<f64>,
    results: Vec<Entry>,
    reference_sizes: Vec<Entry>,
}

fn score_file(
    dir: &Path,
    method: ScoreMethod,
    reference: &ReferenceSet,
    group: Group,
    sparsity: f64,
) -> PathBuf {
    let name = match method {
        ScoreMethod::Magnitude => "magnitude".to_string(),
        ScoreMethod::WandaSequential => format!(
            "wanda-seq-{}-{}-{sparsity}",
            reference.protocol.name,
            group.name().replace(':', "of")
        ),
        m => format!("{}-{}", m.name(), reference.protocol.name),
    };
    dir.join(format!("{name}.safetensors"))
}

/// The LRP variants the reference-size study covers: those swept, else mean |R|.
fn size_methods(methods: &[ScoreMethod]) -> Vec<ScoreMethod> {
    let lrp: Vec<ScoreMethod> = methods
        .iter()
        .copied()
        .filter(|m| matches!(m, ScoreMethod::Lrp | ScoreMethod::LrpAbs))
        .collect();
    if lrp.is_empty() {
        vec![ScoreMethod::LrpAbs]
    } else {
        lrp
    }
}

/// Makes sure the LRP score files (full set, both forms, and the size study's prefixes) exist,
/// computing them all in one pass over the reference set when any is missing.
fn ensure_lrp(
    model: &Model,
    dir: &Path,
    methods: &[ScoreMethod],
    reference: &ReferenceSet,
    sizes: &[usize],
    group: Group,
) -> Result<()> {
    let lrp: Vec<ScoreMethod> = methods
        .iter()
        .copied()
        .filter(|m| matches!(m, ScoreMethod::Lrp | ScoreMethod::LrpAbs))
        .collect();
    let mut wanted: Vec<(ScoreMethod, ReferenceSet)> =
        lrp.iter().map(|&m| (m, reference.clone())).collect();
    for &n in sizes.iter().filter(|&&n| n < reference.samples.len()) {
        for m in size_methods(methods) {
            wanted.push((m, reference.prefix(n)));
        }
    }
    let missing = wanted.iter().any(|(m, r)| {
        load_cached(
            &score_file(dir, *m, r, group, 0.0),
            model,
            *m,
            Some(r),
            None,
        )
        .map_or(true, |s| s.is_none())
    });
    if !missing {
        return Ok(());
    }
    let methods = if lrp.is_empty() {
        size_methods(methods)
    } else {
        lrp
    };
    for (samples, scores) in compute(model, &methods, reference, sizes)? {
        for s in scores {
            let r = reference.prefix(samples);
            save(&s, model, &score_file(dir, s.info.method, &r, group, 0.0))?;
        }
    }
    Ok(())
}

fn read_scores(
    path: &Path,
    model: &Model,
    method: ScoreMethod,
    reference: &ReferenceSet,
    made_for: Option<(f64, Group)>,
) -> Result<Scores> {
    let used = method.uses_reference().then_some(reference);
    load_cached(path, model, method, used, made_for)?
        .with_context(|| format!("{} was not written", path.display()))
}

fn pruned_perplexity(
    model: &mut Model,
    scores: &Scores,
    sparsity: f64,
    group: Group,
    tokens: &[u32],
    wiki: &WikiArgs,
) -> Result<(PerplexityResult, f64)> {
    let masks = Masks::from_scores(scores, sparsity, group)?;
    let report = masks.apply(model)?;
    let label = format!("{} {sparsity}", scores.info.method.name());
    let result = evaluate(model, tokens, &wiki.protocol(), &label);
    model.restore_dense();
    Ok((result?, report.sparsity()))
}

pub fn run(args: Args) -> Result<()> {
    prepare_out(&args.out)?;
    let group = args.group;
    let methods = args.methods.clone();
    for &s in args.sparsities.iter().chain([&args.size_sparsity]) {
        scalpel::prune::check_sparsity(s)?;
    }
    let (mut loaded, device) = load(&args.model)?;
    let reference = args.reference.build(&loaded.tokenizer)?;
    let tokens = args.wiki.tokens(&loaded.tokenizer)?;
    let model = &mut loaded.model;
    let dir = args
        .scores_dir
        .clone()
        .unwrap_or_else(|| args.out.join("scores"));
    let protocol = SweepProtocol {
        model: args.model.model.clone(),
        fingerprint: model.config.fingerprint(),
        evaluation: args.wiki.protocol(),
        reference: reference.protocol.clone(),
        group,
        methods: methods
            .iter()
            .map(|&method| MethodFormula {
                method,
                formula: method.formula(),
            })
            .collect(),
        pruned: "every decoder-block Linear (not embeddings, not the LM head)".into(),
    };
    eprintln!(
        "device {}; reference {}; group {}",
        device.label,
        reference.protocol.name,
        group.name()
    );
    let json_path = args.out.join("sweep.json");
    let mut sweep = std::fs::read(&json_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Sweep>(&b).ok())
        .filter(|s| s.protocol == protocol)
        .unwrap_or(Sweep {
            protocol,
            dense: None,
            results: vec![],
            reference_sizes: vec![],
        });
    if !sweep.results.is_empty() || sweep.dense.is_some() {
        eprintln!(
            "resuming: {} results already in {}",
            sweep.results.len(),
            json_path.display()
        );
    }
    let write = |sweep: &Sweep| -> Result<()> {
        write_atomically(&json_path, serde_json::to_string_pretty(sweep)?.as_bytes())?;
        write_atomically(
            &args.out.join("sweep.md"),
            markdown(sweep, &args.sparsities).as_bytes(),
        )?;
        write_atomically(
            &args.out.join("sweep.svg"),
            chart(sweep, &methods).to_svg().as_bytes(),
        )?;
        if !sweep.reference_sizes.is_empty() {
            write_atomically(
                &args.out.join("reference-sizes.svg"),
                size_chart(sweep).to_svg().as_bytes(),
            )?;
        }
        Ok(())
    };
    if sweep.dense.is_none() {
        let result = evaluate(model, &tokens, &args.wiki.protocol(), "dense")?;
        eprintln!(
            "dense: {} perplexity {:.4}",
            result.protocol.name, result.perplexity
        );
        sweep.dense = Some(result.perplexity);
        write(&sweep)?;
    }

    ensure_lrp(
        model,
        &dir,
        &methods,
        &reference,
        &args.reference_sizes,
        group,
    )?;
    let n = reference.samples.len();
    for &method in &methods {
        let todo: Vec<f64> = args
            .sparsities
            .iter()
            .copied()
            .filter(|&s| {
                !sweep
                    .results
                    .iter()
                    .any(|e| e.method == method && e.sparsity == s)
            })
            .collect();
        if todo.is_empty() {
            continue;
        }
        let shared = if method == ScoreMethod::WandaSequential {
            None
        } else {
            let path = score_file(&dir, method, &reference, group, 0.0);
            Some(obtain(
                model,
                method,
                &reference,
                (0.0, group),
                Some(&path),
            )?)
        };
        for sparsity in todo {
            let scores = match &shared {
                Some(s) => s.clone(),
                None => {
                    let path = score_file(&dir, method, &reference, group, sparsity);
                    obtain(model, method, &reference, (sparsity, group), Some(&path))?
                }
            };
            let (result, achieved) =
                pruned_perplexity(model, &scores, sparsity, group, &tokens, &args.wiki)?;
            eprintln!(
                "{} at {sparsity}: perplexity {:.4}",
                method.name(),
                result.perplexity
            );
            sweep.results.push(Entry {
                method,
                samples: if method.uses_reference() { n } else { 0 },
                sparsity,
                perplexity: result.perplexity,
                mean_nll: result.mean_nll,
                achieved_sparsity: achieved,
            });
            write(&sweep)?;
        }
    }
    for method in size_methods(&methods) {
        for &size in &args.reference_sizes {
            let r = reference.prefix(size);
            let samples = r.samples.len();
            if sweep
                .reference_sizes
                .iter()
                .any(|e| e.method == method && e.samples == samples)
            {
                continue;
            }
            let path = score_file(&dir, method, &r, group, 0.0);
            let scores = read_scores(&path, model, method, &r, None)?;
            let (result, achieved) = pruned_perplexity(
                model,
                &scores,
                args.size_sparsity,
                group,
                &tokens,
                &args.wiki,
            )?;
            eprintln!(
                "{} with {samples} samples at {}: perplexity {:.4}",
                method.name(),
                args.size_sparsity,
                result.perplexity
            );
            sweep.reference_sizes.push(Entry {
                method,
                samples,
                sparsity: args.size_sparsity,
                perplexity: result.perplexity,
                mean_nll: result.mean_nll,
                achieved_sparsity: achieved,
            });
            write(&sweep)?;
        }
    }
    // Also when everything was resumed: the outputs follow this version's format.
    write(&sweep)?;
    println!("{}", markdown(&sweep, &args.sparsities));
    eprintln!(
        "written: {}/sweep.json, sweep.md, sweep.svg",
        args.out.display()
    );
    Ok(())
}

fn markdown(sweep: &Sweep, sparsities: &[f64]) -> String {
    let p = &sweep.protocol;
    let mut md = format!(
        "Perplexity ({}) of {} pruned per {} group; scores over {}.\n\n| method | dense |",
        p.evaluation.name,
        p.model,
        p.group.name(),
        p.reference.name,
    );
    for s in sparsities {
        md.push_str(&format!(" {:.0}% |", s * 100.0));
    }
    md.push_str("\n|---|---|");
    md.push_str(&"---|".repeat(sparsities.len()));
    let mut methods: Vec<ScoreMethod> = Vec::new();
    for e in &sweep.results {
        if !methods.contains(&e.method) {
            methods.push(e.method);
        }
    }
    let dense = sweep.dense.map_or("–".into(), |d| format!("{d:.2}"));
    for m in methods {
        md.push_str(&format!("\n| {} | {dense} |", m.name()));
        for &s in sparsities {
            let cell = sweep
                .results
                .iter()
                .find(|e| e.method == m && e.sparsity == s)
                .map_or("–".into(), |e| format!("{:.2}", e.perplexity));
            md.push_str(&format!(" {cell} |"));
        }
    }
    if !sweep.reference_sizes.is_empty() {
        let mut methods: Vec<ScoreMethod> = Vec::new();
        let mut sizes: Vec<usize> = Vec::new();
        for e in &sweep.reference_sizes {
            if !methods.contains(&e.method) {
                methods.push(e.method);
            }
            if !sizes.contains(&e.samples) {
                sizes.push(e.samples);
            }
        }
        sizes.sort_unstable();
        md.push_str(&format!(
            "\n\nLRP scores from the first N reference samples, pruned at {:.0}%:\n\n| samples |",
            sweep.reference_sizes[0].sparsity * 100.0
        ));
        for m in &methods {
            md.push_str(&format!(" {} |", m.name()));
        }
        md.push_str("\n|---|");
        md.push_str(&"---|".repeat(methods.len()));
        for n in sizes {
            md.push_str(&format!("\n| {n} |"));
            for &m in &methods {
                let cell = sweep
                    .reference_sizes
                    .iter()
                    .find(|e| e.method == m && e.samples == n)
                    .map_or("–".into(), |e| format!("{:.2}", e.perplexity));
                md.push_str(&format!(" {cell} |"));
            }
        }
    }
    md.push('\n');
    md
}

fn chart(sweep: &Sweep, methods: &[ScoreMethod]) -> LineChart {
    let series = methods
        .iter()
        .map(|&m| {
            let mut points: Vec<(f64, f64)> = sweep.dense.map(|d| (0.0, d)).into_iter().collect();
            let mut entries: Vec<&Entry> = sweep.results.iter().filter(|e| e.method == m).collect();
            entries.sort_by(|a, b| a.sparsity.total_cmp(&b.sparsity));
            points.extend(entries.iter().map(|e| (e.sparsity, e.perplexity)));
            Series {
                name: m.name().into(),
                points,
                spread: vec![],
            }
        })
        .collect();
    LineChart {
        title: format!(
            "{} perplexity vs sparsity ({})",
            sweep.protocol.evaluation.name, sweep.protocol.reference.name
        ),
        x_label: format!("sparsity (per {} group)", sweep.protocol.group.name()),
        y_label: "perplexity".into(),
        log_y: true,
        series,
        reference: sweep.dense.map(|d| ("dense".to_string(), d)),
    }
}

fn size_chart(sweep: &Sweep) -> LineChart {
    let mut methods: Vec<ScoreMethod> = Vec::new();
    for e in &sweep.reference_sizes {
        if !methods.contains(&e.method) {
            methods.push(e.method);
        }
    }
    let series = methods
        .into_iter()
        .map(|m| {
            let mut points: Vec<(f64, f64)> = sweep
                .reference_sizes
                .iter()
                .filter(|e| e.method == m)
                .map(|e| (e.samples as f64, e.perplexity))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                name: m.name().into(),
                points,
                spread: vec![],
            }
        })
        .collect();
    let sparsity = sweep.reference_sizes.first().map_or(0.0, |e| e.sparsity);
    LineChart {
        title: format!(
            "LRP at {:.0}% sparsity vs reference-set size",
            sparsity * 100.0
        ),
        x_label: "reference samples".into(),
        y_label: "perplexity".into(),
        log_y: true,
        series,
        reference: sweep.dense.map(|d| ("dense".to_string(), d)),
    }
}
