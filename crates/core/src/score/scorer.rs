//! The step-wise scoring job: one relevance block, or one sample's forward, per
//! [`Scorer::step`], so callers can show progress, yield to an event loop or cancel.

use std::collections::BTreeMap;

use burn::tensor::Tensor;

use super::{ReferenceSet, ScoreInfo, ScoreMethod, Scores};
use crate::error::{Error, Result};
use crate::io::HostTensor;
use crate::model::{LinearId, Model};
use crate::relevance::{
    MemoryLimits, RelevancePass, RuleSet, Target, Trace, WeightRelevanceAccumulator,
};

enum Work<'m> {
    Magnitude,
    /// Σ x² per input column of every Linear.
    Wanda(BTreeMap<LinearId, Tensor<1>>),
    Relevance {
        rules: RuleSet,
        accumulator: WeightRelevanceAccumulator,
        pass: Option<Box<RelevancePass<'m>>>,
    },
}

/// Scores a dense model over a reference set.
pub struct Scorer<'m> {
    model: &'m Model,
    method: ScoreMethod,
    reference: Option<ReferenceSet>,
    limits: MemoryLimits,
    next_sample: usize,
    work: Work<'m>,
}

impl<'m> Scorer<'m> {
    /// `reference` is required by every method but magnitude. Sequential Wanda prunes while it
    /// scores, so it is [`super::wanda_sequential`], not a `Scorer`.
    pub fn new(
        model: &'m Model,
        method: ScoreMethod,
        reference: Option<ReferenceSet>,
        limits: MemoryLimits,
    ) -> Result<Self> {
        if model.is_masked() {
            return Err(Error::InvalidInput(
                "the model has a mask applied: restore the dense model before scoring it".into(),
            ));
        }
        if method.uses_reference() && reference.as_ref().is_none_or(|r| r.samples.is_empty()) {
            return Err(Error::InvalidInput(format!(
                "{} scores need a reference set",
                method.name()
            )));
        }
        let work = match method {
            ScoreMethod::Magnitude => Work::Magnitude,
            ScoreMethod::Wanda => Work::Wanda(BTreeMap::new()),
            ScoreMethod::Lrp => Work::relevance(RuleSet::AttnLrp, false),
            // Keeping Σ|R| as well lets `lrp` come from the same pass.
            ScoreMethod::LrpAbs => Work::relevance(RuleSet::AttnLrp, true),
            ScoreMethod::Gradient => Work::relevance(RuleSet::Gradient, false),
            ScoreMethod::WandaSequential => {
                return Err(Error::InvalidInput(
                    "sequential Wanda prunes while it scores: use `wanda_sequential`".into(),
                ));
            }
        };
        if let Some(r) = &reference {
            let longest = r.samples.iter().map(Vec::len).max().unwrap_or(0);
            limits.check(
                &model.config,
                longest,
                matches!(work, Work::Relevance { .. }),
            )?;
        }
        Ok(Self {
            model,
            method,
            reference,
            limits,
            next_sample: 0,
            work,
        })
    }

    fn samples_total(&self) -> usize {
        match (&self.work, &self.reference) {
            (Work::Magnitude, _) | (_, None) => 0,
            (_, Some(r)) => r.samples.len(),
        }
    }

    pub fn samples_done(&self) -> usize {
        self.next_sample
    }

    /// `(done, total)` in steps: blocks of samples for relevance, samples for Wanda.
    pub fn progress(&self) -> (usize, usize) {
        let total = self.samples_total();
        match &self.work {
            Work::Relevance { pass, .. } => {
                let layers = self.model.config.num_layers;
                let within = pass.as_ref().map_or(0, |p| p.layers_done());
                (self.next_sample * layers + within, total * layers)
            }
            _ => (self.next_sample, total),
        }
    }

    pub fn is_done(&self) -> bool {
        self.next_sample >= self.samples_total()
    }

    /// Does the next step; `false` once everything is done.
    pub fn step(&mut self) -> Result<bool> {
        if self.is_done() {
            return Ok(false);
        }
        let model = self.model;
        let ids = match &self.reference {
            Some(r) => &r.samples[self.next_sample],
            None => return Ok(false),
        };
        match &mut self.work {
            Work::Magnitude => {}
            Work::Wanda(sums) => {
                wanda_sample(model, ids, sums)?;
                self.next_sample += 1;
            }
            Work::Relevance {
                rules,
                accumulator,
                pass,
            } => {
                let current = match pass {
                    Some(p) => p,
                    None => {
                        let trace = Trace::new(model, ids, &self.limits, true)?;
                        pass.insert(Box::new(RelevancePass::new(
                            model,
                            trace,
                            &Target::NextTokens { from: 0 },
                            *rules,
                        )?))
                    }
                };
                if !current.step(accumulator)? {
                    *pass = None;
                    accumulator.finish_sample();
                    self.next_sample += 1;
                }
            }
        }
        Ok(!self.is_done())
    }

    /// Runs every remaining step, calling `progress(done, total)` after each.
    pub fn run(&mut self, progress: &mut dyn FnMut(usize, usize)) -> Result<()> {
        while self.step()? {
            let (done, total) = self.progress();
            progress(done, total);
        }
        let (done, total) = self.progress();
        progress(done, total);
        Ok(())
    }

    /// The scores of the method this scorer was made for, once every sample is done.
    pub fn finish(self) -> Result<PendingScores> {
        if !self.is_done() {
            return Err(Error::InvalidInput(format!(
                "scoring stopped after {} of {} samples",
                self.next_sample,
                self.samples_total()
            )));
        }
        Ok(self.scores(&[self.method])?.remove(0))
    }

    /// Scores of `methods` over the samples done so far (between samples), e.g. to study how the
    /// reference set's size matters. A scorer made for `lrp-abs` also gives `lrp`.
    pub fn scores(&self, methods: &[ScoreMethod]) -> Result<Vec<PendingScores>> {
        if matches!(&self.work, Work::Relevance { pass: Some(_), .. }) {
            return Err(Error::InvalidInput(
                "scores can only be read between samples".into(),
            ));
        }
        let model = self.model;
        let reference = self
            .reference
            .as_ref()
            .map(|r| r.prefix_protocol(self.next_sample));
        methods
            .iter()
            .map(|&method| {
                let mut tensors = Vec::new();
                for id in model.linear_ids() {
                    let w = model.weight(id)?;
                    let scores = match (&self.work, method) {
                        (Work::Magnitude, ScoreMethod::Magnitude) => w.abs(),
                        (Work::Wanda(sums), ScoreMethod::Wanda) => {
                            let norms = sums.get(&id).ok_or_else(|| not_seen(id))?.clone().sqrt();
                            w.abs() * norms.unsqueeze::<2>()
                        }
                        (
                            Work::Relevance {
                                rules, accumulator, ..
                            },
                            m,
                        ) if relevance_method(*rules, m) => {
                            let mean = match m {
                                ScoreMethod::LrpAbs => accumulator.mean_abs(id),
                                _ => accumulator.mean(id).map(|m| m.abs()),
                            };
                            mean.ok_or_else(|| not_seen(id))?
                        }
                        _ => {
                            return Err(Error::InvalidInput(format!(
                                "{} scores cannot be derived from {} scoring",
                                method.name(),
                                self.method.name()
                            )));
                        }
                    };
                    tensors.push((id, scores));
                }
                Ok(PendingScores {
                    info: ScoreInfo::new(method, reference.clone(), model),
                    tensors,
                })
            })
            .collect()
    }
}

impl Work<'_> {
    fn relevance(rules: RuleSet, with_abs: bool) -> Self {
        Work::Relevance {
            rules,
            accumulator: if with_abs {
                WeightRelevanceAccumulator::new()
            } else {
                WeightRelevanceAccumulator::signed_only()
            },
            pass: None,
        }
    }
}

fn relevance_method(rules: RuleSet, method: ScoreMethod) -> bool {
    matches!(
        (rules, method),
        (RuleSet::AttnLrp, ScoreMethod::Lrp | ScoreMethod::LrpAbs)
            | (RuleSet::Gradient, ScoreMethod::Gradient)
    )
}

fn not_seen(id: LinearId) -> Error {
    Error::InvalidInput(format!("no statistics were gathered for {id}"))
}

/// Adds one sample's Σ x² per input column of every Linear (through the dense blocks).
pub(super) fn wanda_sample(
    model: &Model,
    ids: &[u32],
    sums: &mut BTreeMap<LinearId, Tensor<1>>,
) -> Result<()> {
    let arch = model.arch();
    let mut x = arch.embeddings(model.tokens(ids)?).block_input;
    for layer in 0..model.config.num_layers {
        let (out, inputs) = arch.block_linear_inputs(layer, x);
        add_column_squares(layer, inputs, sums);
        x = out;
    }
    Ok(())
}

/// Σ over tokens of x² per column, added to each listed Linear's running sum.
pub(super) fn add_column_squares(
    layer: usize,
    inputs: crate::model::LinearInputs,
    sums: &mut BTreeMap<LinearId, Tensor<1>>,
) {
    for (kinds, input) in inputs {
        let [b, t, d] = input.dims();
        let squares = input.square().reshape([b * t, d]).sum_dim(0).reshape([d]);
        for &kind in kinds {
            let id = LinearId { layer, kind };
            let sum = match sums.remove(&id) {
                Some(s) => s + squares.clone(),
                None => squares.clone(),
            };
            sums.insert(id, sum);
        }
    }
}

/// Scores still on the device; read them back once with [`PendingScores::read`] (native) or
/// [`PendingScores::read_async`] (browser).
pub struct PendingScores {
    pub info: ScoreInfo,
    tensors: Vec<(LinearId, Tensor<2>)>,
}

impl PendingScores {
    #[cfg(not(target_family = "wasm"))]
    pub fn read(self) -> Result<Scores> {
        let mut linears = BTreeMap::new();
        for (id, t) in self.tensors {
            let shape = t.dims().to_vec();
            linears.insert(
                id,
                host(&self.info, id, shape, crate::readback::to_vec(t)?)?,
            );
        }
        Ok(Scores {
            info: self.info,
            linears,
        })
    }

    pub async fn read_async(self) -> Result<Scores> {
        let mut linears = BTreeMap::new();
        for (id, t) in self.tensors {
            let shape = t.dims().to_vec();
            let data = crate::readback::to_vec_async(t).await?;
            linears.insert(id, host(&self.info, id, shape, data)?);
        }
        Ok(Scores {
            info: self.info,
            linears,
        })
    }
}

fn host(info: &ScoreInfo, id: LinearId, shape: Vec<usize>, data: Vec<f32>) -> Result<HostTensor> {
    if data.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite(format!(
            "the {} scores of {id}",
            info.method.name()
        )));
    }
    HostTensor::new(shape, data)
}
