//! The correction pipeline as one job ([`correct`]), driven by the CLI and the page alike: split
//! and encode the behaviour's prompts, build the undesired and general sets, measure the dense
//! model, rank components by each method's `R_diff`, and measure every dose on the held-out
//! prompts with perplexity as the guard-rail.

use web_time::Instant;

use super::report::{Chosen, CorrectionProtocol, CorrectionReport, DosePoint, Example, Measured};
use super::{
    Behaviour, BehaviourMetrics, ContinuationScorer, EncodedPrompt, Judgement, OVERLAP_WARNING,
    check_contrast, check_method, continue_all_greedily, contrastive, default_doses, dose, encode,
    general_prompts, general_reference, judge_all, overlap, removed, to_continue, undesired_scores,
    undesired_set,
};
use crate::error::{Error, Result};
use crate::eval::perplexity::{PerplexityProtocol, perplexity_async};
use crate::io::tokenizer::TextTokenizer;
use crate::job::{Driver, Steps};
use crate::model::Model;
use crate::prune::with_masks;
use crate::report::RunInfo;
use crate::score::{
    ReferenceSet, ScoreMethod, Scores, ScoringBudget, read_back, run_scorer, step_scorer,
};
use crate::unit::{Granularity, LinearSet};

/// Components of the chosen correction listed in the report, lowest `R_diff` first.
const REMOVED_LISTED: usize = 20;

/// What the general set's relevance explains.
#[derive(Debug, Clone)]
pub enum GeneralSet {
    /// The true next tokens of the whole samples.
    Text(ReferenceSet),
    /// The model's greedy continuations of each sample's first `prompt_tokens` tokens, explained
    /// as the behaviour's continuations are (the paper's choice, and the default).
    Continuations {
        text: ReferenceSet,
        prompt_tokens: usize,
    },
}

/// The perplexity guard-rail: its tokens and protocol, and the dense model's value when the
/// caller has measured it already on these tokens.
#[derive(Debug, Clone)]
pub struct GuardRail<'a> {
    pub tokens: &'a [u32],
    pub protocol: PerplexityProtocol,
    pub dense: Option<f64>,
}

/// Everything a correction run needs besides the model.
pub struct CorrectionPlan<'a> {
    pub run: RunInfo,
    pub behaviour: &'a Behaviour,
    pub judge: &'a dyn ContinuationScorer,
    pub granularity: Granularity,
    /// Which Linears' components compete (all by default; the paper's repetition setting: up
    /// projections only).
    pub linears: LinearSet,
    /// λ of the contrastive relevance `R_general − λ·R_undesired` (1 by default).
    pub contrast: f64,
    /// Ranking methods compared, in order (lrp, gradient, wanda, random).
    pub methods: Vec<ScoreMethod>,
    /// Doses measured (empty: [`default_doses`]); the chosen count is always among them.
    pub doses: Vec<usize>,
    /// The correction the examples show and the CLI writes: the first method at this count.
    pub chosen: Option<usize>,
    /// Seed of the scoring / held-out split (and of the random baseline).
    pub seed: u64,
    /// At most this many prompts per split.
    pub prompts: Option<usize>,
    pub general: GeneralSet,
    pub guard_rail: GuardRail<'a>,
    pub budget: ScoringBudget,
    /// Held-out examples shown dense against corrected.
    pub examples: usize,
}

impl CorrectionPlan<'_> {
    /// The doses measured: the asked ones (or the defaults) with the chosen count, ascending.
    pub fn sweep(&self) -> Vec<usize> {
        let mut doses = if self.doses.is_empty() {
            default_doses(self.granularity)
        } else {
            self.doses.clone()
        };
        doses.extend(self.chosen);
        doses.sort_unstable();
        doses.dedup();
        doses.retain(|&d| d > 0);
        doses
    }
}

/// What a correction run tells its driver as it goes.
pub enum CorrectionEvent<'e> {
    /// The sets are built and the dense model measured: what every dose is compared with.
    Prepared {
        protocol: &'e CorrectionProtocol,
        /// The dense model on the scoring prompts it continued itself.
        scoring_set: BehaviourMetrics,
        dense: Measured,
    },
    /// One dose of one method measured.
    Dose {
        method: ScoreMethod,
        point: DosePoint,
    },
}

/// How the components were ranked by one method: `R_diff`, and the general and undesired
/// scores it came from (absent for random, which ranks by chance).
pub struct Ranking {
    pub method: ScoreMethod,
    pub r_diff: Scores,
    pub parts: Option<(Scores, Scores)>,
}

/// A finished correction run: its report, and the first method's ranking (the one its chosen
/// correction prunes, [`dose`]`(&ranking.r_diff, count)`).
pub struct Correction {
    pub report: CorrectionReport,
    pub ranking: Ranking,
}

/// Continuations of prompts and what the judge says of each.
struct Judged {
    continuations: Vec<Vec<u32>>,
    judgements: Vec<Judgement>,
}

impl Judged {
    fn metrics(&self) -> BehaviourMetrics {
        BehaviourMetrics::of(&self.judgements)
    }
}

/// What every measurement uses.
struct Measure<'a> {
    tokenizer: &'a TextTokenizer,
    judge: &'a dyn ContinuationScorer,
    max_new_tokens: usize,
    held_out: &'a [EncodedPrompt],
    guard_rail: &'a GuardRail<'a>,
}

impl Measure<'_> {
    /// Greedy continuations of `prompts` (generated as one batch), judged.
    async fn continuations(
        &self,
        model: &Model,
        prompts: &[EncodedPrompt],
        steps: &mut impl Steps,
        stage: &str,
    ) -> Result<Judged> {
        let ids: Vec<Vec<u32>> = prompts.iter().map(|p| p.ids.clone()).collect();
        let continuations =
            continue_all_greedily(model, &ids, self.max_new_tokens, steps, stage).await?;
        let judgements = judge_all(self.judge, self.tokenizer, &continuations)?;
        Ok(Judged {
            continuations,
            judgements,
        })
    }

    /// The held-out behaviour and the perplexity of `model` as it is now (dense or masked).
    async fn measure(
        &self,
        model: &Model,
        steps: &mut impl Steps,
        label: &str,
    ) -> Result<(Judged, f64)> {
        let judged = self
            .continuations(
                model,
                self.held_out,
                steps,
                &format!("{label}: held-out prompts"),
            )
            .await?;
        let g = self.guard_rail;
        let ppl = perplexity_async(
            model,
            g.tokens,
            &g.protocol,
            steps,
            &format!("{label}: perplexity"),
        )
        .await?;
        Ok((judged, ppl.perplexity))
    }
}

/// Runs the correction `plan` on `model`, which it leaves dense. The report's methods come in
/// the plan's order; the ranking returned is the first method's.
pub async fn correct<D>(
    model: &mut Model,
    tokenizer: &TextTokenizer,
    plan: &CorrectionPlan<'_>,
    driver: &mut D,
) -> Result<Correction>
where
    D: for<'e> Driver<CorrectionEvent<'e>>,
{
    let granularity = plan.granularity;
    if plan.methods.is_empty() {
        return Err(Error::InvalidInput(
            "a correction needs at least one ranking method".into(),
        ));
    }
    for &m in &plan.methods {
        check_method(m)?;
    }
    check_contrast(plan.contrast)?;
    if plan.chosen == Some(0) {
        return Err(Error::InvalidInput(
            "the chosen correction must prune at least one component".into(),
        ));
    }
    let doses = plan.sweep();
    let total = plan.linears.total(granularity, model)?;
    match doses.last() {
        None => return Err(Error::InvalidInput("no dose to measure".into())),
        Some(&largest) if largest as u64 > total => {
            return Err(Error::InvalidInput(format!(
                "a dose of {largest} {} is more than the model has ({total})",
                granularity.name()
            )));
        }
        Some(_) => {}
    }
    let behaviour = plan.behaviour;
    let max_new = behaviour.max_new_tokens;
    let (mut scoring, mut held_out) = behaviour.split(plan.seed)?;
    if let Some(n) = plan.prompts {
        scoring.truncate(n.max(1));
        held_out.truncate(n.max(1));
    }
    let context = model.config.max_position_embeddings;
    let scoring = encode(tokenizer, &scoring, max_new, context)?;
    let held_out = encode(tokenizer, &held_out, max_new, context)?;
    let measure = Measure {
        tokenizer,
        judge: plan.judge,
        max_new_tokens: max_new,
        held_out: &held_out,
        guard_rail: &plan.guard_rail,
    };

    // The general prompts are checked before any generation: bad input costs no minutes.
    if let GeneralSet::Continuations {
        text,
        prompt_tokens,
    } = &plan.general
    {
        general_prompts(text, *prompt_tokens)?;
    }
    let generated = measure
        .continuations(
            model,
            &to_continue(&scoring),
            driver,
            "Continuing scoring prompts",
        )
        .await?;
    let undesired = undesired_set(
        &behaviour.name,
        &scoring,
        &generated.continuations,
        &generated.judgements,
        plan.judge,
    )?;
    let general = match &plan.general {
        GeneralSet::Text(text) => text.clone(),
        GeneralSet::Continuations {
            text,
            prompt_tokens,
        } => {
            let prompts = general_prompts(text, *prompt_tokens)?;
            let own = measure
                .continuations(model, &prompts, driver, "Continuing general prompts")
                .await?;
            general_reference(text, *prompt_tokens, own.continuations)?
        }
    };
    let shared = overlap(&general, &undesired);
    if shared > OVERLAP_WARNING {
        driver.notice(&format!(
            "{:.0} % of the undesired set's token 4-grams also occur in the general set ({}): \
             their relevance cancels in R_diff — use general text that does not contain the behaviour",
            100.0 * shared,
            general.protocol.name
        ));
    }

    let (dense_judged, measured_ppl) = match plan.guard_rail.dense {
        Some(ppl) => {
            let judged = measure
                .continuations(model, &held_out, driver, "Dense model: held-out prompts")
                .await?;
            (judged, ppl)
        }
        None => measure.measure(model, driver, "Dense model").await?,
    };
    let dense = Measured {
        held_out: dense_judged.metrics(),
        perplexity: measured_ppl,
    };
    let protocol = CorrectionProtocol {
        behaviour: behaviour.name.clone(),
        judge: plan.judge.describe(),
        rate_name: plan.judge.rate_name().into(),
        score_name: plan.judge.score_name().into(),
        lower_is_better: plan.judge.lower_is_better(),
        greedy_new_tokens: max_new,
        seed: plan.seed,
        scoring_prompts: scoring.len(),
        held_out_prompts: held_out.len(),
        undesired: undesired.protocol.clone(),
        general: general.protocol.clone(),
        overlap_4grams: shared,
        components: granularity,
        total_components: total,
        linears: plan.linears.describe(model.config.architecture),
        contrast: plan.contrast,
        ranking: "global, lowest R_diff pruned first".into(),
        perplexity: plan.guard_rail.protocol.clone(),
    };
    driver.event(CorrectionEvent::Prepared {
        protocol: &protocol,
        scoring_set: generated.metrics(),
        dense,
    })?;

    let mut runs = Vec::new();
    let mut first: Option<Ranking> = None;
    let mut corrected: Option<Judged> = None;
    for &method in &plan.methods {
        let start = Instant::now();
        let ranking = rank(
            model,
            method,
            granularity,
            &general,
            &undesired,
            plan,
            driver,
        )
        .await?;
        let scoring_seconds = start.elapsed().as_secs_f64();
        let mut points = Vec::new();
        let mut listed = Vec::new();
        for &count in &doses {
            let masks = dose(&ranking.r_diff, count)?;
            let label = format!("{} at {count} {}", method.name(), granularity.name());
            let (judged, perplexity) = with_masks(model, &masks, async |m: &Model| {
                measure.measure(m, driver, &label).await
            })
            .await?;
            let point = DosePoint {
                count,
                held_out: judged.metrics(),
                perplexity,
            };
            driver.event(CorrectionEvent::Dose { method, point })?;
            points.push(point);
            if Some(count) == plan.chosen {
                if let Some((g, u)) = &ranking.parts {
                    listed = removed(&masks, &ranking.r_diff, g, u, REMOVED_LISTED);
                }
                if first.is_none() {
                    corrected = Some(judged);
                }
            }
        }
        runs.push(super::report::MethodRun {
            method,
            formula: ranking.r_diff.info.formula.clone(),
            scoring_seconds,
            doses: points,
            removed: listed,
        });
        if first.is_none() {
            first = Some(ranking);
        }
    }
    let ranking = first.ok_or_else(|| Error::InvalidInput("no method ran".into()))?;
    let (chosen, examples) = match (plan.chosen, &corrected) {
        (Some(count), Some(corrected)) => (
            Some(Chosen {
                method: ranking.method,
                count,
            }),
            examples(
                tokenizer,
                &held_out,
                &dense_judged,
                corrected,
                plan.examples,
            )?,
        ),
        _ => (None, Vec::new()),
    };
    Ok(Correction {
        report: CorrectionReport {
            run: plan.run.clone(),
            fingerprint: model.config.fingerprint(),
            protocol,
            scoring_set_dense: generated.metrics(),
            dense,
            methods: runs,
            chosen,
            examples,
        },
        ranking,
    })
}

/// `method`'s ranking: `R_diff` of its general and undesired scores, or random.
async fn rank(
    model: &Model,
    method: ScoreMethod,
    granularity: Granularity,
    general: &ReferenceSet,
    undesired: &ReferenceSet,
    plan: &CorrectionPlan<'_>,
    steps: &mut impl Steps,
) -> Result<Ranking> {
    if method == ScoreMethod::Random {
        return Ok(Ranking {
            method,
            r_diff: Scores::random_baseline(model, granularity, plan.seed)?
                .only(&plan.linears, model)?,
            parts: None,
        });
    }
    let scorer = plan
        .budget
        .scorer(model, method, granularity, Some(general.clone()))?;
    let g = run_scorer(
        scorer,
        steps,
        &format!("{}: scoring the general set", method.name()),
    )
    .await?
    .only(&plan.linears, model)?;
    let mut scorer = plan
        .budget
        .scorer(model, method, granularity, Some(undesired.clone()))?;
    step_scorer(
        &mut scorer,
        steps,
        &format!("{}: scoring the behaviour", method.name()),
    )
    .await?;
    let u = read_back(undesired_scores(scorer, granularity)?, steps)
        .await?
        .only(&plan.linears, model)?;
    Ok(Ranking {
        method,
        r_diff: contrastive(&g, &u, plan.contrast)?,
        parts: Some((g, u)),
    })
}

/// Up to `n` held-out prompts, those whose dense continuation shows the behaviour first.
fn examples(
    tokenizer: &TextTokenizer,
    prompts: &[EncodedPrompt],
    dense: &Judged,
    corrected: &Judged,
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
