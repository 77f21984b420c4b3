//! What a correction run measured ([`CorrectionReport`], the `correction.json` file) and how it
//! reads: a Markdown table and two dose–response charts, rendered from the report alone so an
//! old report renders again after an update.

use serde::{Deserialize, Serialize};

use super::{BehaviourMetrics, Judgement, Removed};
use crate::eval::perplexity::PerplexityProtocol;
use crate::report::{LineChart, RunInfo, Series};
use crate::score::{ReferenceProtocol, ScoreMethod};
use crate::unit::Granularity;

/// How a correction was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorrectionProtocol {
    pub behaviour: String,
    /// The judge's name and definition, and what its rate and score are called.
    pub judge: String,
    pub rate_name: String,
    pub score_name: String,
    pub lower_is_better: bool,
    pub greedy_new_tokens: usize,
    /// Seed of the scoring / held-out split (and of the random baseline).
    pub seed: u64,
    pub scoring_prompts: usize,
    pub held_out_prompts: usize,
    /// The continuations that show the behaviour, and the general set they are weighed against.
    pub undesired: ReferenceProtocol,
    pub general: ReferenceProtocol,
    /// Share of the undesired set's token 4-grams that also occur in the general set.
    pub overlap_4grams: f64,
    pub components: Granularity,
    /// Components of the competing Linears.
    pub total_components: u64,
    /// The Linears whose components competed (module names, or "all").
    #[serde(default = "every_linear")]
    pub linears: String,
    /// λ of the contrastive relevance `R_general − λ·R_undesired`.
    #[serde(default = "unit_contrast")]
    pub contrast: f64,
    pub ranking: String,
    pub perplexity: PerplexityProtocol,
}

fn every_linear() -> String {
    "all".into()
}

fn unit_contrast() -> f64 {
    1.0
}

/// The held-out behaviour and the perplexity of one model (dense, or corrected at one dose).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub held_out: BehaviourMetrics,
    pub perplexity: f64,
}

/// One dose of a method's dose–response curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DosePoint {
    /// Components pruned.
    pub count: usize,
    pub held_out: BehaviourMetrics,
    pub perplexity: f64,
}

/// One ranking method's curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodRun {
    pub method: ScoreMethod,
    pub formula: String,
    pub scoring_seconds: f64,
    pub doses: Vec<DosePoint>,
    /// The first components the correction at the chosen count removes (absent for random).
    pub removed: Vec<Removed>,
}

/// The correction the examples show (and the CLI writes as a checkpoint).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Chosen {
    pub method: ScoreMethod,
    pub count: usize,
}

/// One held-out prompt continued by the dense and the corrected model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub prompt: String,
    pub dense: String,
    pub dense_judgement: Judgement,
    pub corrected: String,
    pub corrected_judgement: Judgement,
}

/// Everything a correction run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorrectionReport {
    #[serde(flatten)]
    pub run: RunInfo,
    /// [`crate::ModelConfig::fingerprint`] of the model corrected.
    pub fingerprint: String,
    pub protocol: CorrectionProtocol,
    /// The dense model's behaviour on the scoring prompts it continued itself.
    pub scoring_set_dense: BehaviourMetrics,
    pub dense: Measured,
    pub methods: Vec<MethodRun>,
    #[serde(rename = "checkpoint")]
    pub chosen: Option<Chosen>,
    pub examples: Vec<Example>,
}

impl CorrectionReport {
    /// The report as a Markdown page: protocol, dose table, formulas, examples.
    pub fn markdown(&self) -> String {
        let p = &self.protocol;
        let (rate, score, ppl) = (&p.rate_name, &p.score_name, &p.perplexity.name);
        let mut md = format!(
            "# Targeted correction: {}\n\n\
             Model `{}` ({}). Components: {} of the Linears {} ({} in all), ranked globally by the contrastive relevance \
             R_diff = R_general − λ·R_undesired with λ = {} (lowest pruned first). \
             Undesired set: {} ({} continuations that show the behaviour, of {} scoring prompts); general set: {}. \
             Measured on {} held-out prompts (greedy, {} new tokens), judged by {}; guard-rail: {} perplexity. \
             Split seed {}.\n\n",
            p.behaviour,
            self.run.model,
            self.run.device,
            p.components.name(),
            p.linears,
            p.total_components,
            p.contrast,
            p.undesired.name,
            p.undesired.samples,
            p.scoring_prompts,
            p.general.name,
            p.held_out_prompts,
            p.greedy_new_tokens,
            p.judge,
            ppl,
            p.seed,
        );
        let dense = &self.dense;
        md += &format!(
            "| method | components pruned | {rate} | {score} | {ppl} perplexity |\n|---|---:|---:|---:|---:|\n\
             | dense | 0 | {:.1} % | {:.3} | {:.3} |\n",
            100.0 * dense.held_out.rate,
            dense.held_out.mean_score,
            dense.perplexity,
        );
        for run in &self.methods {
            for d in &run.doses {
                md += &format!(
                    "| {} | {} | {:.1} % | {:.3} | {:.3} |\n",
                    run.method.name(),
                    d.count,
                    100.0 * d.held_out.rate,
                    d.held_out.mean_score,
                    d.perplexity,
                );
            }
        }
        md += "\nScores:\n\n";
        for run in &self.methods {
            md += &format!(
                "- {} ({:.0} s): {}\n",
                run.method.name(),
                run.scoring_seconds,
                run.formula
            );
        }
        if let Some(chosen) = &self.chosen {
            md += &format!(
                "\nExamples (held-out prompts; corrected = {} at {} components):\n\n| prompt | dense | corrected |\n|---|---|---|\n",
                chosen.method.name(),
                chosen.count
            );
            let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
            for e in &self.examples {
                md += &format!(
                    "| {} | {} | {} |\n",
                    cell(&e.prompt),
                    cell(&e.dense),
                    cell(&e.corrected)
                );
            }
        }
        md
    }

    /// The dose–response chart (behaviour against components pruned) and the perplexity chart;
    /// every line starts from the dense model at 0 pruned.
    pub fn charts(&self) -> [LineChart; 2] {
        let p = &self.protocol;
        // Toxicity: the hit rate in %; repetition: the mean RUR.
        let headline = |m: &BehaviourMetrics| {
            if p.lower_is_better {
                100.0 * m.rate
            } else {
                m.mean_score
            }
        };
        let series = |value: &dyn Fn(&DosePoint) -> f64, dense: f64| -> Vec<Series> {
            self.methods
                .iter()
                .map(|run| Series {
                    name: run.method.name().to_string(),
                    points: std::iter::once((0.0, dense))
                        .chain(run.doses.iter().map(|d| (d.count as f64, value(d))))
                        .collect(),
                    spread: Vec::new(),
                })
                .collect()
        };
        let dense_headline = headline(&self.dense.held_out);
        let dense_ppl = self.dense.perplexity;
        let components = p.components.name();
        let title = format!("{} — {}", p.behaviour, self.run.model);
        let y_label = if p.lower_is_better {
            format!("{} on held-out prompts (%)", p.rate_name)
        } else {
            format!("{} on held-out prompts", p.score_name)
        };
        let behaviour = LineChart {
            title: title.clone(),
            x_label: format!("{components} pruned"),
            y_label,
            log_y: false,
            series: series(&|d| headline(&d.held_out), dense_headline),
            reference: Some(("dense".into(), dense_headline)),
        };
        let ppl = LineChart {
            title,
            x_label: format!("{components} pruned"),
            y_label: format!("{} perplexity", p.perplexity.name),
            log_y: false,
            series: series(&|d| d.perplexity, dense_ppl),
            reference: Some(("dense".into(), dense_ppl)),
        };
        [behaviour, ppl]
    }
}
