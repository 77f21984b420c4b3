//! Scores for every decoder-block weight (what pruning ranks): relevance (LRP), Wanda, magnitude
//! and gradient, computed over a reference set one sample at a time so memory stays flat in the
//! number of samples.
//!
//! Scores are computed on the device ([`Scorer`]), read back once ([`PendingScores`]) and kept on
//! the host ([`Scores`]), where masks at any sparsity are cut from them without touching the
//! model; they can be saved and reloaded ([`Scores::to_safetensors`]).

mod file;
mod job;
mod reference;
mod scorer;
#[cfg(not(target_family = "wasm"))]
mod wanda_sequential;

use std::borrow::Cow;
use std::collections::BTreeMap;

pub(crate) use file::{read_per_linear, write_per_linear};
pub use job::{ScoringBudget, read_back, run_scorer, step_scorer};
pub use reference::{ReferenceProtocol, ReferenceSet};
pub use scorer::{PendingScores, Scorer};
#[cfg(not(target_family = "wasm"))]
pub use wanda_sequential::wanda_sequential;

use crate::error::{Error, Result};
use crate::io::HostTensor;
use crate::model::{LinearId, Model};
use crate::unit::{Granularity, Group, LinearSet};

/// How each weight is scored; low scores are pruned first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreMethod {
    /// `|mean R_W|`: AttnLRP weight relevance averaged over the samples, then its magnitude
    /// (the paper's compression score).
    Lrp,
    /// `mean |R_W|`: the magnitude of each sample's relevance, averaged.
    LrpAbs,
    /// Wanda: `|W| ⊙ ‖X_col‖₂` with the dense model's inputs.
    Wanda,
    /// Wanda's sequential variant: each block's inputs come through the already-pruned
    /// earlier blocks, so the scores depend on the sparsity and group they were made for.
    WandaSequential,
    /// `|W|`.
    Magnitude,
    /// `|mean (W ⊙ ∇W)|` of the same objective as LRP, with plain gradients.
    Gradient,
    /// `mean R_W`, signed: what works against the explained output ranks lowest and is pruned
    /// first (circuits: the components that oppose the task go before the idle ones).
    LrpSigned,
    /// Mean `|x|` of the inputs a weight (neuron, head) multiplies: activation magnitude.
    Activation,
    /// Uniform random scores from a seed: the baseline any method must beat.
    Random,
}

impl ScoreMethod {
    pub const ALL: [ScoreMethod; 9] = [
        ScoreMethod::Lrp,
        ScoreMethod::LrpAbs,
        ScoreMethod::Wanda,
        ScoreMethod::WandaSequential,
        ScoreMethod::Magnitude,
        ScoreMethod::Gradient,
        ScoreMethod::LrpSigned,
        ScoreMethod::Activation,
        ScoreMethod::Random,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ScoreMethod::Lrp => "lrp",
            ScoreMethod::LrpAbs => "lrp-abs",
            ScoreMethod::Wanda => "wanda",
            ScoreMethod::WandaSequential => "wanda-seq",
            ScoreMethod::Magnitude => "magnitude",
            ScoreMethod::Gradient => "gradient",
            ScoreMethod::LrpSigned => "lrp-signed",
            ScoreMethod::Activation => "activation",
            ScoreMethod::Random => "random",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|m| m.name()).collect();
                Error::InvalidInput(format!(
                    "unknown scoring method `{s}` (one of {})",
                    names.join(", ")
                ))
            })
    }

    /// The formula of per-weight scores over a text reference set, printed with every result.
    pub fn formula(self) -> String {
        self.formula_at(Granularity::Weights, Explained::NextTokens)
    }

    /// The formula for scores of `granularity` whose relevance explains `explained`.
    pub fn formula_at(self, granularity: Granularity, explained: Explained) -> String {
        self.formula_of(granularity, explained, false)
    }

    /// [`ScoreMethod::formula_at`]; `signed`: lrp's and gradient's mean before its magnitude is
    /// taken (the undesired side of a correction).
    pub(crate) fn formula_of(
        self,
        granularity: Granularity,
        explained: Explained,
        signed: bool,
    ) -> String {
        let weights = granularity == Granularity::Weights;
        let r = if weights {
            "W ⊙ G_W"
        } else {
            "x ⊙ G at the unit (= Σ W ⊙ G_W of its columns)"
        };
        let w = if weights {
            "|W| ⊙ ‖X_col‖₂"
        } else {
            "Σ over the unit's columns of |W| ⊙ ‖X_col‖₂"
        };
        let mean = |x: &str| {
            if signed {
                format!("mean over samples of {x}, signed")
            } else {
                format!("|mean over samples of {x}|")
            }
        };
        let gradient_of = explained.with_article();
        let explained = explained.describe();
        match self {
            ScoreMethod::Lrp => format!("{} (AttnLRP; explained: {explained})", mean(r)),
            ScoreMethod::LrpAbs => {
                format!("mean over samples of |{r}| (AttnLRP; explained: {explained})")
            }
            ScoreMethod::LrpSigned => format!(
                "mean over samples of {r}, signed (AttnLRP; explained: {explained}; the most negative are pruned first)"
            ),
            ScoreMethod::Gradient => format!(
                "{} (plain gradient of {gradient_of})",
                mean(if weights {
                    "W ⊙ ∇W"
                } else {
                    "x ⊙ ∇x at the unit"
                })
            ),
            ScoreMethod::Wanda => format!("{w} over all reference tokens (dense inputs)"),
            ScoreMethod::WandaSequential => {
                format!(
                    "{w} with inputs through the already-pruned earlier blocks (Wanda's sequential variant)"
                )
            }
            ScoreMethod::Magnitude if weights => "|W|".into(),
            ScoreMethod::Magnitude => "Σ over the unit's columns of |W|".into(),
            ScoreMethod::Activation if weights => {
                "mean |x| of the inputs each weight multiplies".into()
            }
            ScoreMethod::Activation => "mean |x| over tokens and the unit's input columns".into(),
            ScoreMethod::Random => "uniform random in [0, 1) (SplitMix64, seeded)".into(),
        }
    }

    /// Whether the method needs a reference set.
    pub fn uses_reference(self) -> bool {
        !matches!(self, ScoreMethod::Magnitude | ScoreMethod::Random)
    }
}

/// What relevance and gradient scores explain on each sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Explained {
    /// The sum of the true next tokens' logits (text reference sets).
    NextTokens,
    /// Each task prompt's `logit(answer) − logit(distractor)` at the last position.
    TaskMetric,
    /// The sum of the logits of each prompt's continuation (generated or given): what drives
    /// a behaviour, for targeted correction.
    Continuation,
}

impl Explained {
    fn describe(self) -> &'static str {
        match self {
            Explained::NextTokens => "sum of the true next tokens' logits",
            Explained::TaskMetric => "each prompt's logit(answer) − logit(distractor)",
            Explained::Continuation => "sum of the logits of each prompt's continuation tokens",
        }
    }

    /// [`Explained::describe`] as the object of a phrase ("the gradient of …").
    fn with_article(self) -> &'static str {
        match self {
            Explained::NextTokens => "the sum of the true next tokens' logits",
            Explained::Continuation => "the sum of the logits of each prompt's continuation tokens",
            Explained::TaskMetric => self.describe(),
        }
    }
}

/// A method with the formula of its scores.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MethodFormula {
    pub method: ScoreMethod,
    pub formula: String,
}

/// What a set of scores was computed from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScoreInfo {
    pub method: ScoreMethod,
    pub formula: String,
    pub reference: Option<ReferenceProtocol>,
    /// [`crate::ModelConfig::fingerprint`] of the model scored.
    pub model: String,
    /// For sequential Wanda: the sparsity and group the scores were made for.
    pub made_for: Option<(f64, Group)>,
    /// What one score stands for: a weight, a neuron or a head.
    #[serde(default)]
    pub granularity: Granularity,
    /// Which kinds of Linear are ranked ([`Scores::only`]); all unless restricted.
    #[serde(default, skip_serializing_if = "LinearSet::is_all")]
    pub linears: LinearSet,
}

impl ScoreInfo {
    pub(crate) fn new(
        method: ScoreMethod,
        reference: Option<ReferenceProtocol>,
        model: &Model,
    ) -> Self {
        Self {
            method,
            formula: method.formula(),
            reference,
            model: model.config.fingerprint(),
            made_for: None,
            granularity: Granularity::Weights,
            linears: LinearSet::all(),
        }
    }
}

/// Host scores `[out, in]` for every block Linear.
#[derive(Debug, Clone)]
pub struct Scores {
    pub info: ScoreInfo,
    pub linears: BTreeMap<LinearId, HostTensor>,
}

impl Scores {
    /// Uniform random scores for every weight, neuron or head of `model`: the baseline.
    pub fn random(model: &Model, granularity: Granularity, seed: u64) -> Result<Self> {
        let mut rng = crate::rng::SplitMix64::new(seed);
        let mut linears = BTreeMap::new();
        for id in granularity.linear_ids(model) {
            let [rows, cols] = granularity.shape(model, id)?;
            let data = (0..rows * cols).map(|_| rng.next_f32()).collect();
            linears.insert(id, HostTensor::new(vec![rows, cols], data)?);
        }
        let mut info = ScoreInfo::new(ScoreMethod::Random, None, model);
        info.formula = format!("{} (seed {seed})", info.formula);
        info.granularity = granularity;
        Ok(Self { info, linears })
    }

    /// These scores restricted to the Linears of `set` (intersected with any earlier
    /// restriction): the others are neither ranked nor masked, and stay dense.
    pub fn only(self, set: &LinearSet, model: &Model) -> Result<Self> {
        if set.is_all() {
            return Ok(self);
        }
        self.restricted(set, model).map(Cow::into_owned)
    }

    /// [`Scores::only`] without giving the scores up: borrowed as they are for every Linear,
    /// else a copy of the chosen Linears' scores.
    pub fn restricted(&self, set: &LinearSet, model: &Model) -> Result<Cow<'_, Self>> {
        if set.is_all() {
            return Ok(Cow::Borrowed(self));
        }
        let chosen = set.linear_ids(self.info.granularity, model)?;
        let linears: BTreeMap<LinearId, HostTensor> = self
            .linears
            .iter()
            .filter(|(id, _)| chosen.contains(id))
            .map(|(&id, s)| (id, s.clone()))
            .collect();
        if linears.is_empty() {
            return Err(Error::InvalidInput(format!(
                "these scores rank none of the Linears {}",
                set.describe(model.config.architecture)
            )));
        }
        let mut info = self.info.clone();
        info.linears = LinearSet::only(linears.keys().map(|id| id.kind));
        Ok(Cow::Owned(Self { info, linears }))
    }

    /// How many components are scored (weights, neurons or heads, over every Linear).
    pub fn components(&self) -> usize {
        self.linears.values().map(HostTensor::n_elements).sum()
    }

    /// Random scores for a baseline drawn alongside a run of `seed` (a circuit's same-size random
    /// circuit, a correction's random components): the seed is derived from `seed`, so they
    /// differ from a `random` method's scores of the same seed.
    pub fn random_baseline(model: &Model, granularity: Granularity, seed: u64) -> Result<Self> {
        Self::random(model, granularity, seed ^ 0x5EED_0000)
    }

    /// Errors unless these scores belong to `model`: same architecture and sizes, and a score
    /// of the right shape for every block Linear (every unit Linear for neurons and heads).
    pub fn check_for(&self, model: &Model) -> Result<()> {
        check_per_linear(
            model,
            "scores",
            &self.info.model,
            self.info.granularity,
            &self.info.linears,
            |id| self.linears.get(&id).map(|s| s.shape.clone()),
        )
    }
}

/// Errors unless a per-Linear file (`what`: scores, mask) made for model `made_for` fits
/// `model`: same fingerprint, and an entry of the right shape (`shape_of`) for every Linear
/// of `linears` the granularity covers.
pub(crate) fn check_per_linear(
    model: &Model,
    what: &str,
    made_for: &str,
    granularity: Granularity,
    linears: &LinearSet,
    shape_of: impl Fn(LinearId) -> Option<Vec<usize>>,
) -> Result<()> {
    let fingerprint = model.config.fingerprint();
    if made_for != fingerprint {
        return Err(Error::InvalidInput(format!(
            "{what} made for another model ({made_for}) cannot serve the loaded model ({fingerprint})"
        )));
    }
    for id in linears.linear_ids(granularity, model)? {
        let expected = granularity.shape(model, id)?;
        let actual =
            shape_of(id).ok_or_else(|| Error::InvalidInput(format!("{what}: nothing for {id}")))?;
        if actual != expected {
            return Err(Error::ShapeMismatch {
                name: format!("{what} of {id}"),
                expected: expected.to_vec(),
                actual,
            });
        }
    }
    Ok(())
}
