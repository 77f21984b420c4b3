//! What a circuit search measured ([`CircuitReport`], the `circuit.json` file): per seed and
//! method the curve and the circuit with its held-out and random-baseline tests, and per method
//! the mean ± standard deviation over seeds; rendered as a Markdown page and an SVG chart.

use serde::{Deserialize, Serialize};

use super::{CircuitSummary, CurvePoint, faithfulness, mean_std};
use crate::report::{LineChart, RunInfo, Series};
use crate::score::{Explained, MethodFormula, ScoreMethod};
use crate::task::metrics::TaskMetrics;
use crate::unit::{Granularity, Group};

/// What the task metric is, as every report states it.
pub const METRIC: &str = "logit(answer) − logit(distractor) at the last position; faithfulness = pruned / dense mean logit difference on the same prompts";
/// What the LRP and gradient scores of a circuit search explain.
pub const EXPLAINED: &str =
    "LRP and gradient scores explain each prompt's logit difference (answer − distractor)";

/// How a circuit search was run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CircuitProtocol {
    /// [`crate::ModelConfig::fingerprint`] of the model searched.
    pub fingerprint: String,
    pub task: String,
    pub prompts_per_seed: usize,
    pub seeds: usize,
    pub granularity: Granularity,
    pub group: Group,
    /// The Linears whose components competed (module names, or "all"); the others stay whole.
    #[serde(default = "every_linear")]
    pub linears: String,
    /// The share of the dense logit difference a circuit keeps; absent when only curves were
    /// measured (the page picks its circuit afterwards).
    pub threshold: Option<f64>,
    pub fractions: Vec<f64>,
    pub refine_steps: usize,
    pub metric: String,
    pub explained: String,
    pub methods: Vec<MethodFormula>,
}

fn every_linear() -> String {
    "all".into()
}

/// The dense model on one seed's scoring and held-out prompts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    pub scoring: TaskMetrics,
    pub held_out: TaskMetrics,
}

/// Random components of a circuit's size, pruned the same way: what a circuit must beat.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RandomCircuit {
    pub scoring: TaskMetrics,
    pub held_out: TaskMetrics,
    pub faithfulness: f64,
    pub held_out_faithfulness: f64,
}

/// A circuit found at the threshold, tested on held-out prompts and against random.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Found {
    pub point: CurvePoint,
    pub kept_share: f64,
    pub faithfulness: f64,
    pub held_out: TaskMetrics,
    pub held_out_faithfulness: f64,
    pub random: RandomCircuit,
    pub summary: CircuitSummary,
}

/// One method on one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodRun {
    pub method: ScoreMethod,
    pub scoring_seconds: f64,
    pub curve: Vec<CurvePoint>,
    pub circuit: Option<Found>,
}

/// One seed: its prompts, the dense model on them, every method's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedRun {
    pub seed: u64,
    pub scoring_prompts: String,
    pub held_out_prompts: String,
    pub notes: Vec<String>,
    pub dense: Dense,
    pub methods: Vec<MethodRun>,
}

/// Mean and sample standard deviation over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub mean: f64,
    pub std: f64,
}

impl Spread {
    /// `None` without values (no seed found a circuit).
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let (mean, std) = mean_std(values);
        Some(Self { mean, std })
    }
}

/// One share pruned, over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SummaryPoint {
    pub fraction: f64,
    pub faithfulness: f64,
    pub faithfulness_std: f64,
    pub accuracy: f64,
    pub accuracy_std: f64,
}

/// One method over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodSummary {
    pub method: ScoreMethod,
    pub formula: String,
    pub curve: Vec<SummaryPoint>,
    pub circuits_found: usize,
    pub seeds: usize,
    pub kept_share: Option<Spread>,
    pub faithfulness: Option<Spread>,
    pub held_out_faithfulness: Option<Spread>,
    pub held_out_accuracy: Option<Spread>,
    pub random_held_out_faithfulness: Option<Spread>,
    pub random_held_out_accuracy: Option<Spread>,
}

/// Everything a circuit search measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CircuitReport {
    #[serde(flatten)]
    pub run: RunInfo,
    pub protocol: CircuitProtocol,
    pub summary: Vec<MethodSummary>,
    pub seeds: Vec<SeedRun>,
}

impl CircuitProtocol {
    /// The formulas of `methods` when they explain the task metric.
    pub fn formulas(methods: &[ScoreMethod], granularity: Granularity) -> Vec<MethodFormula> {
        methods
            .iter()
            .map(|&method| MethodFormula {
                method,
                formula: method.formula_at(granularity, Explained::TaskMetric),
            })
            .collect()
    }
}

impl CircuitReport {
    /// Recomputes the per-method summary from the seeds run so far.
    pub fn summarize(&mut self) {
        let p = &self.protocol;
        self.summary = p
            .methods
            .iter()
            .map(|m| summarize_method(&self.seeds, m, &p.fractions))
            .collect();
    }

    /// The report as a Markdown page: the circuits per method, the curves, the top components.
    pub fn markdown(&self) -> String {
        let p = &self.protocol;
        let threshold = p
            .threshold
            .map_or("–".to_string(), |t| format!("{}", 100.0 * t));
        let mut md = format!(
            "# Circuits: {} ({} seeds × {} prompts, {} ranked {}, threshold {} % of the dense logit difference)\n\n\
             Model `{}`. Linears: {}. Metric: {}.\n\n\
             | method | circuits found | kept share % | faithfulness % (scoring prompts) | held-out faithfulness % | held-out accuracy % | random circuit, same size: held-out faithfulness % | random: held-out accuracy % |\n\
             |---|---|---|---|---|---|---|---|\n",
            p.task,
            p.seeds,
            p.prompts_per_seed,
            p.granularity.name(),
            p.group.name(),
            threshold,
            self.run.model,
            p.linears,
            p.metric,
        );
        for m in &self.summary {
            md.push_str(&format!(
                "| {} | {}/{} | {} | {} | {} | {} | {} | {} |\n",
                m.method.name(),
                m.circuits_found,
                m.seeds,
                pct(m.kept_share),
                pct(m.faithfulness),
                pct(m.held_out_faithfulness),
                pct(m.held_out_accuracy),
                pct(m.random_held_out_faithfulness),
                pct(m.random_held_out_accuracy),
            ));
        }
        md.push_str("\nMean ± standard deviation over seeds. Faithfulness along the curve (mean over seeds):\n\n| share pruned |");
        for m in &self.summary {
            md.push_str(&format!(" {} |", m.method.name()));
        }
        md.push_str(&format!("\n|---|{}\n", "---|".repeat(self.summary.len())));
        for &f in &p.fractions {
            md.push_str(&format!("| {f} |"));
            for m in &self.summary {
                let cell =
                    m.curve
                        .iter()
                        .find(|x| x.fraction == f)
                        .map_or("–".to_string(), |x| {
                            format!(
                                "{:.1} ± {:.1}",
                                100.0 * x.faithfulness,
                                100.0 * x.faithfulness_std
                            )
                        });
                md.push_str(&format!(" {cell} |"));
            }
            md.push('\n');
        }
        if let Some(first) = self.seeds.first() {
            md.push_str("\nHighest-scored kept components (seed 0):\n\n");
            for run in &first.methods {
                let top: Vec<String> = run
                    .circuit
                    .iter()
                    .flat_map(|c| &c.summary.top)
                    .map(|c| match p.granularity {
                        Granularity::Weights => format!("L{} {:?}[{}]", c.layer, c.linear, c.index),
                        _ => format!("L{}.{}", c.layer, c.index),
                    })
                    .collect();
                if !top.is_empty() {
                    md.push_str(&format!("- {}: {}\n", run.method.name(), top.join(", ")));
                }
            }
        }
        md
    }

    /// Faithfulness against the share pruned, per method, with a ± 1 sd band over seeds.
    pub fn chart(&self) -> LineChart {
        let p = &self.protocol;
        let series = self
            .summary
            .iter()
            .map(|m| Series {
                name: m.method.name().into(),
                points: m
                    .curve
                    .iter()
                    .map(|x| (x.fraction, x.faithfulness))
                    .collect(),
                spread: m
                    .curve
                    .iter()
                    .map(|x| {
                        (
                            x.fraction,
                            x.faithfulness - x.faithfulness_std,
                            x.faithfulness + x.faithfulness_std,
                        )
                    })
                    .collect(),
            })
            .collect();
        LineChart {
            title: format!(
                "{}: {} pruned ({} seeds, ± 1 sd)",
                p.task,
                p.granularity.name(),
                p.seeds
            ),
            x_label: format!(
                "share of {} pruned ({} ranking)",
                p.granularity.name(),
                p.group.name()
            ),
            y_label: "logit difference / dense".into(),
            log_y: false,
            series,
            reference: p
                .threshold
                .map(|t| (format!("threshold {:.0} %", 100.0 * t), t)),
        }
    }
}

/// `method` over the seeds that ran it: the curve's mean ± sd at each share, and its circuits.
fn summarize_method(seeds: &[SeedRun], m: &MethodFormula, fractions: &[f64]) -> MethodSummary {
    let runs: Vec<(&SeedRun, &MethodRun)> = seeds
        .iter()
        .filter_map(|s| {
            s.methods
                .iter()
                .find(|r| r.method == m.method)
                .map(|r| (s, r))
        })
        .collect();
    let curve = fractions
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
            let (faithfulness, faithfulness_std) = at(faithfulness);
            let (accuracy, accuracy_std) = at(|m, _| m.accuracy);
            SummaryPoint {
                fraction: f,
                faithfulness,
                faithfulness_std,
                accuracy,
                accuracy_std,
            }
        })
        .collect();
    let found: Vec<&Found> = runs
        .iter()
        .filter_map(|(_, r)| r.circuit.as_ref())
        .collect();
    let stat =
        |key: fn(&Found) -> f64| Spread::of(&found.iter().map(|f| key(f)).collect::<Vec<_>>());
    MethodSummary {
        method: m.method,
        formula: m.formula.clone(),
        curve,
        circuits_found: found.len(),
        seeds: runs.len(),
        kept_share: stat(|f| f.kept_share),
        faithfulness: stat(|f| f.faithfulness),
        held_out_faithfulness: stat(|f| f.held_out_faithfulness),
        held_out_accuracy: stat(|f| f.held_out.accuracy),
        random_held_out_faithfulness: stat(|f| f.random.held_out_faithfulness),
        random_held_out_accuracy: stat(|f| f.random.held_out.accuracy),
    }
}

fn pct(v: Option<Spread>) -> String {
    match v {
        Some(s) if s.mean.is_finite() => format!("{:.1} ± {:.1}", 100.0 * s.mean, 100.0 * s.std),
        _ => "–".into(),
    }
}
