//! Targeted correction (paper §3.4): score components on general text and on the continuations
//! that show an unwanted behaviour, rank them by the contrastive relevance
//! `R_diff = R_general − λ·R_undesired` (both normalized, λ = 1 by default), and prune the
//! lowest few — what drives the behaviour but matters little for general text — then measure
//! the behaviour on held-out prompts and perplexity as the guard-rail.
//!
//! Corrections are ordinary global [`Masks`] of a fixed count ([`Masks::lowest`]), so they apply,
//! undo and export like every other mask. The whole pipeline is one job, [`correct`]; its
//! [`report::CorrectionReport`] renders as Markdown and SVG.

pub mod behaviour;
pub mod job;
pub mod measure;
pub mod report;

use std::collections::{BTreeMap, HashSet};

pub use behaviour::{
    Behaviour, BehaviourPrompt, CONTINUATION_TOKENS, REPETITION_CONTINUATION_TOKENS,
    TOXICITY_CATEGORIES,
};
pub use job::{
    Correction, CorrectionEvent, CorrectionPlan, GeneralSet, GuardRail, Ranking, correct,
};
pub use measure::{
    BehaviourMetrics, ContinuationScorer, Judgement, Lexicon, Measure, Uniqueness, uniqueness_ratio,
};

use crate::error::{Error, Result};
use crate::io::HostTensor;
use crate::io::tokenizer::TextTokenizer;
use crate::model::LinearKind;
use crate::prune::{Granularity, Masks};
use crate::relevance::Target;
use crate::score::{PendingScores, ReferenceProtocol, ReferenceSet, ScoreMethod, Scorer, Scores};

/// Doses (components pruned) a dose–response sweep measures by default. Neurons: the paper's
/// 100 (≈0.3 % of OPT-125M's fc1) in the middle; weights: around its ≈7,000 for repetition.
pub fn default_doses(granularity: Granularity) -> Vec<usize> {
    match granularity {
        Granularity::Neurons => vec![10, 25, 50, 100, 200, 400],
        Granularity::Heads => vec![1, 2, 4, 8, 16],
        Granularity::Weights => vec![1_000, 3_000, 7_000, 15_000, 30_000],
    }
}

/// The dose a correction applies by default (the paper's choices).
pub fn default_count(granularity: Granularity) -> usize {
    match granularity {
        Granularity::Neurons => 100,
        Granularity::Heads => 4,
        Granularity::Weights => 7_000,
    }
}

/// Warn when more than this share of the undesired set's token 4-grams also occur in the
/// general set: the difference of their relevance then cancels what should be removed.
pub const OVERLAP_WARNING: f64 = 0.5;

/// A behaviour prompt as token ids (no BOS, plain text), with the given unwanted continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedPrompt {
    pub text: String,
    pub ids: Vec<u32>,
    pub given: Option<Vec<u32>>,
}

/// Encodes prompts, checking each leaves room for `max_new_tokens` in a `context`-token window.
pub fn encode(
    tokenizer: &TextTokenizer,
    prompts: &[BehaviourPrompt],
    max_new_tokens: usize,
    context: usize,
) -> Result<Vec<EncodedPrompt>> {
    prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let ids = tokenizer.encode(&p.prompt)?;
            if ids.is_empty() {
                return Err(Error::InvalidInput(format!(
                    "prompt {} (`{}`) encodes to no tokens",
                    i + 1,
                    p.prompt
                )));
            }
            let given = p
                .continuation
                .as_deref()
                .map(|c| tokenizer.encode(c))
                .transpose()?;
            let longest = ids.len() + given.as_ref().map_or(max_new_tokens, Vec::len);
            if longest > context {
                return Err(Error::InvalidInput(format!(
                    "prompt {} has {} tokens: with its continuation ({longest} tokens) it does not fit the model's context of {context}",
                    i + 1,
                    ids.len()
                )));
            }
            Ok(EncodedPrompt {
                text: p.prompt.clone(),
                ids,
                given,
            })
        })
        .collect()
}

/// Tokens of each general sample that prompt the model's own continuations (the general set).
pub const GENERAL_PROMPT_TOKENS: usize = 32;

/// The general set's prompts: the first `n` tokens of each sample of `text`, which the model
/// continues itself ([`general_reference`]).
pub fn general_prompts(text: &ReferenceSet, n: usize) -> Result<Vec<EncodedPrompt>> {
    let len = text.protocol.sample_len;
    if n == 0 || n > len {
        return Err(Error::InvalidInput(format!(
            "general prompts must have 1..={len} tokens (the general samples' length), not {n}"
        )));
    }
    Ok(text
        .samples
        .iter()
        .map(|s| EncodedPrompt {
            text: String::new(),
            ids: s[..n.min(s.len())].to_vec(),
            given: None,
        })
        .collect())
}

/// The general set: the prompts of [`general_prompts`]`(text, n)` with the model's own
/// `continuations` of them, explained as the behaviour's continuations are (so the two sets
/// differ in behaviour, not in kind of output).
pub fn general_reference(
    text: &ReferenceSet,
    n: usize,
    continuations: Vec<Vec<u32>>,
) -> Result<ReferenceSet> {
    let pairs: Vec<(Vec<u32>, Vec<u32>)> = general_prompts(text, n)?
        .into_iter()
        .map(|p| p.ids)
        .zip(continuations)
        .collect();
    continuation_reference(&format!("{}-prompts{n}", text.protocol.name), &pairs)
}

/// A reference set of prompts followed by continuations (the unwanted ones of a behaviour, or
/// the model's own on general prompts), explained by the sum of the continuation tokens' logits
/// (`Target::NextTokens` from the prompt's last position). Pairs with an empty continuation are
/// skipped.
pub fn continuation_reference(name: &str, pairs: &[(Vec<u32>, Vec<u32>)]) -> Result<ReferenceSet> {
    let mut samples = Vec::new();
    let mut targets = Vec::new();
    for (prompt, continuation) in pairs {
        if prompt.is_empty() || continuation.is_empty() {
            continue;
        }
        targets.push(Target::NextTokens {
            from: prompt.len() - 1,
        });
        samples.push([prompt.as_slice(), continuation.as_slice()].concat());
    }
    if samples.is_empty() {
        return Err(Error::InvalidInput(format!(
            "`{name}` has no continuation to score"
        )));
    }
    let longest = samples.iter().map(Vec::len).max().unwrap_or(0);
    Ok(ReferenceSet {
        protocol: ReferenceProtocol {
            name: format!("{name}-{}", samples.len()),
            source: format!("behaviour {name}"),
            samples: samples.len(),
            requested_samples: pairs.len(),
            sample_len: longest,
        },
        samples,
        targets: Some(targets),
    })
}

/// The undesired set of a behaviour's scoring prompts: each given continuation as it is, and of
/// the prompts without one (`generated`, `judgements`: their dense greedy continuations, in order)
/// those that show the behaviour — as the paper keeps only prompts that trigger it. Errors with
/// "behaviour not present" when no prompt has a given continuation and none shows it.
pub fn undesired_set(
    name: &str,
    scoring: &[EncodedPrompt],
    generated: &[Vec<u32>],
    judgements: &[Judgement],
    scorer: &dyn ContinuationScorer,
) -> Result<ReferenceSet> {
    if scoring.iter().all(|p| p.given.is_none()) {
        check_present(name, judgements, scorer)?;
    }
    let mut pairs: Vec<(Vec<u32>, Vec<u32>)> = scoring
        .iter()
        .filter_map(|p| p.given.clone().map(|g| (p.ids.clone(), g)))
        .collect();
    pairs.extend(
        scoring
            .iter()
            .filter(|p| p.given.is_none())
            .zip(generated.iter().zip(judgements))
            .filter(|(_, (_, j))| j.exhibits)
            .map(|(p, (c, _))| (p.ids.clone(), c.clone())),
    );
    continuation_reference(name, &pairs)
}

/// The scoring prompts without a given continuation: the ones the model continues itself.
pub fn to_continue(scoring: &[EncodedPrompt]) -> Vec<EncodedPrompt> {
    scoring
        .iter()
        .filter(|p| p.given.is_none())
        .cloned()
        .collect()
}

/// Errors unless at least one scoring prompt exhibits the behaviour: correcting a behaviour
/// the model does not show would prune blindly.
pub fn check_present(
    behaviour: &str,
    judgements: &[Judgement],
    scorer: &dyn ContinuationScorer,
) -> Result<()> {
    if judgements.iter().any(|j| j.exhibits) {
        return Ok(());
    }
    let m = BehaviourMetrics::of(judgements);
    Err(Error::InvalidInput(format!(
        "behaviour not present: none of the {} scoring prompts' greedy continuations shows `{behaviour}` \
         ({} {:.1} %, {} {:.3}) — there is nothing to correct",
        judgements.len(),
        scorer.rate_name(),
        100.0 * m.rate,
        scorer.score_name(),
        m.mean_score
    )))
}

/// Share of the undesired samples' token 4-grams that also occur in the general samples.
pub fn overlap(general: &ReferenceSet, undesired: &ReferenceSet) -> f64 {
    const N: usize = 4;
    let grams: HashSet<&[u32]> = general.samples.iter().flat_map(|s| s.windows(N)).collect();
    let (mut found, mut total) = (0usize, 0usize);
    for s in &undesired.samples {
        for g in s.windows(N) {
            total += 1;
            found += usize::from(grams.contains(g));
        }
    }
    found as f64 / total.max(1) as f64
}

/// The contrastive relevance `R_diff = G / Σ|G| − λ · U / Σ|U|` per component (paper Eq. 7,
/// which later versions call contrastive relevance; λ = 1 there), with `G` the general set's
/// scores (magnitudes: importance for general text) and `U` the undesired set's (signed for
/// relevance and gradient, so components that work against the behaviour are kept). Each set is
/// taken as shares of its total: the two explain outputs of different size (a 256-token text's
/// true tokens, a 20-token greedy continuation whose logits are the largest), and by conservation
/// a component's share of the total relevance is its share of the output. `contrast` (λ) weighs
/// the behaviour against general text: larger removes more of the behaviour at more risk to
/// general text. The lowest go first.
pub fn contrastive(general: &Scores, undesired: &Scores, contrast: f64) -> Result<Scores> {
    check_contrast(contrast)?;
    let granularity = general.info.granularity;
    if undesired.info.granularity != granularity || undesired.info.model != general.info.model {
        return Err(Error::InvalidInput(
            "general and undesired scores must be of the same model and granularity".into(),
        ));
    }
    let total = |s: &Scores, what: &str| -> Result<f64> {
        let sum: f64 = s
            .linears
            .values()
            .flat_map(|t| t.data.iter())
            .map(|v| f64::from(v.abs()))
            .sum();
        if sum > 0.0 && sum.is_finite() {
            Ok(sum)
        } else {
            Err(Error::InvalidInput(format!(
                "the {what} scores are all zero: nothing to compare"
            )))
        }
    };
    let (g_total, u_total) = (total(general, "general")?, total(undesired, "undesired")?);
    let mut linears = BTreeMap::new();
    for (id, g) in &general.linears {
        let u = undesired
            .linears
            .get(id)
            .filter(|u| u.shape == g.shape)
            .ok_or_else(|| {
                Error::InvalidInput(format!("the undesired scores have nothing matching {id}"))
            })?;
        let data = g
            .data
            .iter()
            .zip(&u.data)
            .map(|(&g, &u)| (f64::from(g) / g_total - contrast * f64::from(u) / u_total) as f32)
            .collect();
        linears.insert(*id, HostTensor::new(g.shape.clone(), data)?);
    }
    let mut info = general.info.clone();
    let weight = if contrast == 1.0 {
        String::new()
    } else {
        format!("{contrast}·")
    };
    info.formula = format!(
        "R_diff = G/Σ|G| − {weight}U/Σ|U| (contrastive relevance: shares of each set's total), lowest pruned first; G = {} over {}; U = {} over {}",
        general.info.formula,
        protocol_name(&general.info.reference),
        undesired.info.formula,
        protocol_name(&undesired.info.reference),
    );
    Ok(Scores { info, linears })
}

/// Errors unless λ of the contrastive relevance is a positive number.
pub fn check_contrast(contrast: f64) -> Result<()> {
    if contrast.is_finite() && contrast > 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "the contrast λ must be a positive number, not {contrast}"
        )))
    }
}

fn protocol_name(p: &Option<ReferenceProtocol>) -> String {
    p.as_ref().map_or("no reference".into(), |p| p.name.clone())
}

/// The methods a correction compares by default: LRP (the paper's), its baselines and random.
pub const DEFAULT_METHODS: [ScoreMethod; 4] = [
    ScoreMethod::Lrp,
    ScoreMethod::Wanda,
    ScoreMethod::Gradient,
    ScoreMethod::Random,
];

/// Errors unless `method` can rank components for a correction.
pub fn check_method(method: ScoreMethod) -> Result<()> {
    match method {
        ScoreMethod::Lrp | ScoreMethod::Gradient | ScoreMethod::Wanda | ScoreMethod::Random => {
            Ok(())
        }
        other => Err(Error::InvalidInput(format!(
            "correction ranks by lrp, gradient, wanda or random, not {}",
            other.name()
        ))),
    }
}

/// The scores an undesired set contributes to `R_diff`: the signed mean for relevance and
/// gradient ([`Scorer::signed_scores_at`]: a component that works against the behaviour is no
/// reason to remove it), Wanda's own scores otherwise. `scorer` must have run to the end.
pub fn undesired_scores(scorer: Scorer<'_>, granularity: Granularity) -> Result<PendingScores> {
    match scorer.method() {
        ScoreMethod::Lrp | ScoreMethod::Gradient => scorer.signed_scores_at(granularity),
        _ => scorer.finish(),
    }
}

/// The correction at `count` components: the lowest-`count` contrastive relevances, pruned.
pub fn dose(scores: &Scores, count: usize) -> Result<Masks> {
    Masks::lowest(scores, count)
}

/// One pruned component with its scores: what a correction removed and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Removed {
    pub layer: usize,
    pub linear: LinearKind,
    /// Neuron or head within its layer, or `row × in + column` of a weight.
    pub index: usize,
    pub r_diff: f32,
    /// The general and undesired scores before scaling.
    pub general: f32,
    pub undesired: f32,
}

/// The (up to) `top` components `masks` prunes, lowest `R_diff` first.
pub fn removed(
    masks: &Masks,
    diff: &Scores,
    general: &Scores,
    undesired: &Scores,
    top: usize,
) -> Vec<Removed> {
    let mut out = Vec::new();
    for (id, mask) in &masks.linears {
        let (Some(d), Some(g), Some(u)) = (
            diff.linears.get(id),
            general.linears.get(id),
            undesired.linears.get(id),
        ) else {
            continue;
        };
        for index in mask.keep.pruned_indices() {
            out.push(Removed {
                layer: id.layer,
                linear: id.kind,
                index,
                r_diff: d.data[index],
                general: g.data[index],
                undesired: u.data[index],
            });
        }
    }
    out.sort_by(|a, b| a.r_diff.total_cmp(&b.r_diff));
    out.truncate(top);
    out
}

/// Greedy decoding of `max_new_tokens`, stopping at end of sequence: how continuations are made.
fn greedy(max_new_tokens: usize) -> crate::GenerateOptions {
    crate::GenerateOptions {
        max_new_tokens,
        ..Default::default()
    }
}

/// Greedy continuation of `prompt`, natively.
#[cfg(not(target_family = "wasm"))]
pub fn continue_greedily(
    model: &crate::Model,
    prompt: &[u32],
    max_new_tokens: usize,
) -> Result<Vec<u32>> {
    Ok(crate::generate::generate(model, prompt, greedy(max_new_tokens), |_| true)?.0)
}

/// [`continue_greedily`] with asynchronous read-backs (the browser).
pub async fn continue_greedily_async(
    model: &crate::Model,
    prompt: &[u32],
    max_new_tokens: usize,
) -> Result<Vec<u32>> {
    Ok(
        crate::generate::generate_async(model, prompt, greedy(max_new_tokens))
            .await?
            .0,
    )
}

/// Greedy continuations of `prompts` generated as one batch ([`crate::generate::Batch`], in far
/// less time than one at a time). A batch's products round differently from one row's, so where
/// two tokens nearly tie a continuation can differ from the one-at-a-time one from there on
/// (on Qwen2.5's repetition prompts none did). `steps` hears each prompt and each decode step
/// under `stage`.
pub async fn continue_all_greedily(
    model: &crate::Model,
    prompts: &[Vec<u32>],
    max_new_tokens: usize,
    steps: &mut impl crate::job::Steps,
    stage: &str,
) -> Result<Vec<Vec<u32>>> {
    let mut batch = crate::generate::Batch::new(model, prompts, greedy(max_new_tokens))?;
    while !batch.is_finished() {
        let (done, total) = batch.progress();
        steps.step(stage, done, total).await?;
        let logits = crate::readback::to_vec_async(batch.forward()?).await?;
        batch.accept(&logits)?;
    }
    Ok(batch.results().into_iter().map(|(ids, _)| ids).collect())
}

/// Judges each continuation (token ids, decoded with `tokenizer`).
pub fn judge_all(
    scorer: &dyn ContinuationScorer,
    tokenizer: &TextTokenizer,
    continuations: &[Vec<u32>],
) -> Result<Vec<Judgement>> {
    continuations
        .iter()
        .map(|ids| Ok(scorer.judge(&tokenizer.decode(ids)?, ids)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undesired_samples_explain_their_continuations() {
        let set =
            continuation_reference("b", &[(vec![1, 2], vec![3, 4, 5]), (vec![6], vec![])]).unwrap();
        assert_eq!(set.samples, vec![vec![1, 2, 3, 4, 5]]);
        assert_eq!(set.target(0), Target::NextTokens { from: 1 });
        assert_eq!(set.protocol.requested_samples, 2);
        assert!(continuation_reference("b", &[(vec![1], vec![])]).is_err());
    }

    #[test]
    fn overlap_counts_shared_four_grams() {
        let set = |s: Vec<Vec<u32>>| ReferenceSet {
            protocol: ReferenceProtocol {
                name: "t".into(),
                source: "t".into(),
                samples: s.len(),
                requested_samples: s.len(),
                sample_len: 0,
            },
            samples: s,
            targets: None,
        };
        let general = set(vec![vec![1, 2, 3, 4, 5, 6]]);
        assert_eq!(overlap(&general, &set(vec![vec![1, 2, 3, 4, 5]])), 1.0);
        assert_eq!(overlap(&general, &set(vec![vec![9, 9, 9, 9]])), 0.0);
        assert_eq!(overlap(&general, &set(vec![vec![3, 4, 5, 6, 7]])), 0.5);
    }
}
