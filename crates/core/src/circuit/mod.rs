//! Circuit discovery (paper §3.3): score a task's components with the task metric as the
//! explained output, prune from the lowest score up, and call the smallest kept set that still
//! does the task its circuit.
//!
//! A circuit is an ordinary [`Masks`] (of weights, neurons or heads), so it applies and undoes
//! like any mask; [`file`] writes it as JSON. The curve of the task metric against the share of
//! components pruned ([`CurvePoint`]) and the circuit a threshold picks are measured by one job,
//! [`search`], for the CLI and the page; its [`report::CircuitReport`] renders as Markdown and SVG.

pub mod file;
pub mod job;
pub mod report;

pub use job::{CircuitEvent, CircuitPlan, search};

use crate::error::{Error, Result};
use crate::job::Steps;
use crate::model::{LinearKind, Model};
use crate::prune::{Granularity, Group, Masks, with_masks};
use crate::score::Scores;
use crate::task::EncodedTask;
use crate::task::metrics::{TaskMetrics, evaluate_async};

/// Shares of components pruned where a curve is measured by default: dense, then every tenth,
/// then finer near the end where circuits live.
pub const DEFAULT_FRACTIONS: [f64; 14] = [
    0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99,
];

/// A circuit keeps at least this share of the dense logit difference by default.
pub const DEFAULT_THRESHOLD: f64 = 0.9;

/// The task measured with one share of the components pruned.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CurvePoint {
    /// Share of components asked to be pruned.
    pub fraction: f64,
    /// Components pruned and in total (weights, neurons or heads).
    pub pruned: u64,
    pub total: u64,
    pub metrics: TaskMetrics,
}

/// The pruned model's logit difference as a share of the dense model's.
pub fn faithfulness(metrics: &TaskMetrics, dense: &TaskMetrics) -> f64 {
    metrics.logit_diff / dense.logit_diff
}

/// Errors unless the dense model does the task (a positive mean logit difference): a circuit
/// of a behaviour that is not there would be noise.
pub fn check_dense(dense: &TaskMetrics, task: &str) -> Result<()> {
    if dense.logit_diff > 0.0 && dense.logit_diff.is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "the dense model does not do task `{task}` (mean logit difference {:.3}, accuracy {:.0} %): \
             there is no circuit to find",
            dense.logit_diff,
            100.0 * dense.accuracy
        )))
    }
}

/// Where pruning groups compete: global (the default for circuits) or per layer. Single weights
/// may also compete per output row.
pub fn check_group(granularity: Granularity, group: Group) -> Result<()> {
    match (granularity, group) {
        (_, Group::Global | Group::Layer) | (Granularity::Weights, Group::Row) => Ok(()),
        _ => Err(Error::InvalidInput(format!(
            "{} circuits rank globally or per layer, not by group `{}`",
            granularity.name(),
            group.name()
        ))),
    }
}

/// What a circuit search measures with: scores to prune by, how they compete, the prompts the
/// task metric is taken on and the dense model's metric there.
pub struct Search<'a> {
    pub scores: &'a Scores,
    pub group: Group,
    pub task: &'a EncodedTask,
    pub dense: TaskMetrics,
}

impl Search<'_> {
    /// One curve point: the mask at `fraction` applied, the task run, the dense model restored.
    /// A mask that prunes nothing is the dense model, already measured on these prompts.
    pub async fn measure(&self, model: &mut Model, fraction: f64) -> Result<CurvePoint> {
        check_group(self.scores.info.granularity, self.group)?;
        let masks = Masks::from_scores(self.scores, fraction, self.group)?;
        if masks.report().pruned == 0 {
            return Ok(point(fraction, &masks, self.dense));
        }
        let metrics = with_masks(model, &masks, async |m: &Model| {
            Ok(evaluate_async(m, self.task).await?.metrics())
        })
        .await?;
        Ok(point(fraction, &masks, metrics))
    }

    /// The circuit at `threshold`: the bracket from `curve`, narrowed by `refine` bisections
    /// between the last fraction that keeps the threshold and the next that does not (each a
    /// step of `stage`). `None` if no measured fraction keeps the threshold.
    pub async fn circuit(
        &self,
        model: &mut Model,
        curve: &[CurvePoint],
        threshold: f64,
        refine: usize,
        steps: &mut impl Steps,
        stage: &str,
    ) -> Result<Option<CurvePoint>> {
        let Some((mut good, bad)) = bracket(curve, &self.dense, threshold) else {
            return Ok(None);
        };
        if let Some(mut bad) = bad {
            for i in 0..refine {
                steps.step(stage, i, refine).await?;
                let p = self
                    .measure(model, (good.fraction + bad.fraction) / 2.0)
                    .await?;
                if faithfulness(&p.metrics, &self.dense) >= threshold {
                    good = p;
                } else {
                    bad = p;
                }
            }
        }
        Ok(Some(good))
    }
}

/// The baseline for the circuit `masks`: random components of the same Linears, as many as it
/// prunes with its group ([`Scores::random_baseline`] of the search's `seed`).
pub fn random_circuit(model: &Model, masks: &Masks, seed: u64) -> Result<Masks> {
    let scores = Scores::random_baseline(model, masks.granularity(), seed)?
        .only(&masks.info.scores.linears, model)?;
    Masks::from_scores(&scores, masks.info.sparsity, masks.info.group)
}

/// The circuit `masks` and random components of its size (drawn from `seed`, pruned the same
/// way) each measured on every task of `tasks`, the dense model restored after: `(circuit,
/// random)` metrics, one per task. Each of the two is a step of `stage`.
pub async fn against_random(
    model: &mut Model,
    masks: &Masks,
    seed: u64,
    tasks: &[&EncodedTask],
    steps: &mut impl Steps,
    stage: &str,
) -> Result<(Vec<TaskMetrics>, Vec<TaskMetrics>)> {
    let random = random_circuit(model, masks, seed)?;
    steps.step(stage, 0, 2).await?;
    let circuit = measure_on(model, masks, tasks).await?;
    steps.step(stage, 1, 2).await?;
    let random = measure_on(model, &random, tasks).await?;
    Ok((circuit, random))
}

/// Each task's metrics with `masks` applied, the dense model restored after.
async fn measure_on(
    model: &mut Model,
    masks: &Masks,
    tasks: &[&EncodedTask],
) -> Result<Vec<TaskMetrics>> {
    with_masks(model, masks, async |model: &Model| {
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            out.push(evaluate_async(model, task).await?.metrics());
        }
        Ok(out)
    })
    .await
}

/// A curve point from the mask it was measured with.
pub fn point(fraction: f64, masks: &Masks, metrics: TaskMetrics) -> CurvePoint {
    let report = masks.report();
    CurvePoint {
        fraction,
        pruned: report.pruned,
        total: report.total,
        metrics,
    }
}

/// The largest measured fraction whose faithfulness reaches `threshold`, and the next measured
/// fraction above it if that one falls short (where a finer search would look). `None` if even
/// the smallest measured fraction falls short.
pub fn bracket(
    points: &[CurvePoint],
    dense: &TaskMetrics,
    threshold: f64,
) -> Option<(CurvePoint, Option<CurvePoint>)> {
    let mut sorted: Vec<CurvePoint> = points.to_vec();
    sorted.sort_by(|a, b| a.fraction.total_cmp(&b.fraction));
    let best = largest_keeping(
        sorted
            .iter()
            .map(|p| (p.fraction, faithfulness(&p.metrics, dense))),
        threshold,
    )?;
    let at = sorted.iter().position(|p| p.fraction == best)?;
    Some((sorted[at], sorted.get(at + 1).copied()))
}

/// The largest share pruned among `(fraction, faithfulness)` points whose faithfulness reaches
/// `threshold`: the circuit a threshold picks from a measured curve.
pub fn largest_keeping(
    points: impl IntoIterator<Item = (f64, f64)>,
    threshold: f64,
) -> Option<f64> {
    points
        .into_iter()
        .filter(|&(_, f)| f >= threshold)
        .map(|(fraction, _)| fraction)
        .max_by(f64::total_cmp)
}

/// One kept component with its score: a head or neuron (`index` within its layer), or a
/// weight (`index` = row × in + column of its Linear).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Component {
    pub layer: usize,
    pub linear: LinearKind,
    pub index: usize,
    pub score: f32,
}

/// What a circuit keeps: per layer, and its highest-scored components.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CircuitSummary {
    pub granularity: Granularity,
    /// `(layer, kept, total)` components.
    pub per_layer: Vec<(usize, u64, u64)>,
    pub kept: u64,
    pub total: u64,
    /// The kept components with the highest scores, best first.
    pub top: Vec<Component>,
}

/// Summarises the circuit `masks` cut from `scores`, listing the `top` best kept components.
pub fn summarize(masks: &Masks, scores: &Scores, top: usize) -> CircuitSummary {
    let report = masks.report();
    let per_layer = report
        .per_layer()
        .into_iter()
        .map(|(layer, pruned, total)| (layer, total - pruned, total))
        .collect();
    let mut kept: Vec<Component> = Vec::new();
    for (id, mask) in &masks.linears {
        let Some(s) = scores.linears.get(id) else {
            continue;
        };
        for (index, (kept_here, &score)) in mask.keep.iter().zip(&s.data).enumerate() {
            if kept_here {
                kept.push(Component {
                    layer: id.layer,
                    linear: id.kind,
                    index,
                    score,
                });
            }
        }
        // Bound the memory for weight circuits: only the best `top` can make the list.
        if kept.len() > top.max(1) * 64 {
            kept.sort_by(|a, b| b.score.total_cmp(&a.score));
            kept.truncate(top);
        }
    }
    kept.sort_by(|a, b| b.score.total_cmp(&a.score));
    kept.truncate(top);
    CircuitSummary {
        granularity: masks.granularity(),
        per_layer,
        kept: report.total - report.pruned,
        total: report.total,
        top: kept,
    }
}

/// Mean and sample standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(fraction: f64, logit_diff: f64) -> CurvePoint {
        CurvePoint {
            fraction,
            pruned: 0,
            total: 1,
            metrics: TaskMetrics {
                prompts: 1,
                logit_diff,
                accuracy: 1.0,
                top1: 1.0,
            },
        }
    }

    #[test]
    fn the_bracket_is_the_last_faithful_point_and_the_next() {
        let dense = p(0.0, 2.0).metrics;
        let curve = [p(0.0, 2.0), p(0.5, 1.9), p(0.8, 1.0), p(0.9, 0.1)];
        let (good, bad) = bracket(&curve, &dense, 0.9).unwrap();
        assert_eq!((good.fraction, bad.unwrap().fraction), (0.5, 0.8));
        // A curve that rises again above the threshold later counts the later point.
        let curve = [p(0.0, 2.0), p(0.5, 1.0), p(0.8, 2.5)];
        let (good, bad) = bracket(&curve, &dense, 0.9).unwrap();
        assert_eq!((good.fraction, bad), (0.8, None));
        assert!(bracket(&[p(0.1, 0.5)], &dense, 0.9).is_none());
    }

    #[test]
    fn spread_and_checks() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0]);
        assert_eq!((m, s), (2.0, 1.0));
        assert_eq!(mean_std(&[4.0]), (4.0, 0.0));
        assert!(check_dense(&p(0.0, -0.5).metrics, "t").is_err());
        assert!(check_group(Granularity::Heads, Group::Row).is_err());
        assert!(check_group(Granularity::Weights, Group::Row).is_ok());
    }
}
