//! One explanation of one sequence, collected on the device and read back in one go.

use burn::tensor::Tensor;
use serde::Serialize;

use super::pass::InputRelevance;
#[cfg(not(target_family = "wasm"))]
use super::pass::{MemoryLimits, RelevancePass, Trace};
use super::{LinearId, RelevanceSink, RuleSet, Target, WeightGrad};
use crate::error::{Error, Result};
#[cfg(not(target_family = "wasm"))]
use crate::model::Model;

/// How much per-weight relevance an explanation keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightDetail {
    /// None (the cheapest pass: no weight gradients at all).
    #[default]
    None,
    /// `Σ W ⊙ G_W` and `Σ |W ⊙ G_W|` per Linear.
    Sums,
    /// The sums and the full `W ⊙ G_W` tensors, left on the device.
    Full,
}

/// A [`RelevanceSink`] that keeps everything one explanation reports.
#[derive(Default)]
pub struct ExplanationCollector {
    detail: WeightDetail,
    heads: Vec<(usize, Tensor<1>)>,
    neurons: Vec<(usize, Tensor<1>)>,
    weight_sums: Vec<(LinearId, Tensor<1>)>,
    weights: Vec<(LinearId, Tensor<2>)>,
}

impl ExplanationCollector {
    pub fn new(detail: WeightDetail) -> Self {
        Self {
            detail,
            ..Self::default()
        }
    }

    /// The full per-weight relevance, if [`WeightDetail::Full`] was asked for.
    pub fn take_weights(&mut self) -> Vec<(LinearId, Tensor<2>)> {
        std::mem::take(&mut self.weights)
    }

    /// Everything to read back, as flat tensors, and how to put the host copies together.
    pub fn readback(self, input: InputRelevance, ids: &[u32], rules: RuleSet) -> Readback {
        let mut tensors = vec![input.output, input.tokens];
        let has_positions = input.positions.is_some();
        tensors.extend(input.positions);
        let by_layer = |mut v: Vec<(usize, Tensor<1>)>| {
            v.sort_by_key(|(l, _)| *l);
            v.into_iter().map(|(_, t)| t).collect::<Vec<_>>()
        };
        let heads = by_layer(self.heads);
        let neurons = by_layer(self.neurons);
        let layers = heads.len();
        let mut sums = self.weight_sums;
        sums.sort_by_key(|(id, _)| *id);
        let ids_of_sums: Vec<LinearId> = sums.iter().map(|(id, _)| *id).collect();
        for group in [heads, neurons, sums.into_iter().map(|(_, t)| t).collect()] {
            if !group.is_empty() {
                tensors.push(Tensor::cat(group, 0));
            }
        }
        Readback {
            tensors,
            assemble: Assemble {
                ids: ids.to_vec(),
                rules,
                has_positions,
                layers,
                weight_ids: ids_of_sums,
            },
        }
    }
}

impl RelevanceSink for ExplanationCollector {
    fn wants_weights(&self) -> bool {
        self.detail != WeightDetail::None
    }

    fn weight(&mut self, id: LinearId, weight: WeightGrad) -> Result<()> {
        let relevance = weight.relevance();
        let sum = relevance.clone().sum();
        let abs_sum = relevance.clone().abs().sum();
        self.weight_sums
            .push((id, Tensor::cat(vec![sum, abs_sum], 0)));
        if self.detail == WeightDetail::Full {
            self.weights.push((id, relevance));
        }
        Ok(())
    }

    fn neurons(&mut self, layer: usize, relevance: Tensor<1>) -> Result<()> {
        self.neurons.push((layer, relevance));
        Ok(())
    }

    fn heads(&mut self, layer: usize, relevance: Tensor<1>) -> Result<()> {
        self.heads.push((layer, relevance));
        Ok(())
    }
}

/// Device tensors to read (in order) and the recipe to assemble an [`Explanation`] from them.
pub struct Readback {
    pub tensors: Vec<Tensor<1>>,
    pub assemble: Assemble,
}

pub struct Assemble {
    ids: Vec<u32>,
    rules: RuleSet,
    has_positions: bool,
    layers: usize,
    weight_ids: Vec<LinearId>,
}

impl Readback {
    /// Blocking read (native).
    #[cfg(not(target_family = "wasm"))]
    pub fn read(self) -> Result<Explanation> {
        let host = self
            .tensors
            .into_iter()
            .map(crate::readback::to_vec)
            .collect::<Result<Vec<_>>>()?;
        self.assemble.finish(host)
    }

    /// Non-blocking read (browser and native).
    pub async fn read_async(self) -> Result<Explanation> {
        let mut host = Vec::with_capacity(self.tensors.len());
        for t in self.tensors {
            host.push(crate::readback::to_vec_async(t).await?);
        }
        self.assemble.finish(host)
    }
}

impl Assemble {
    fn finish(self, host: Vec<Vec<f32>>) -> Result<Explanation> {
        let mut host = host.into_iter();
        let mut next = || host.next().unwrap_or_default();
        let output = next().first().copied().unwrap_or(f32::NAN);
        let tokens = next();
        let positions = self.has_positions.then(&mut next);
        let split = |flat: Vec<f32>, rows: usize| -> Vec<Vec<f32>> {
            if rows == 0 || flat.is_empty() {
                return Vec::new();
            }
            flat.chunks(flat.len() / rows)
                .map(<[f32]>::to_vec)
                .collect()
        };
        let heads = split(
            if self.layers > 0 { next() } else { Vec::new() },
            self.layers,
        );
        let neurons = split(
            if self.layers > 0 { next() } else { Vec::new() },
            self.layers,
        );
        let sums = if self.weight_ids.is_empty() {
            Vec::new()
        } else {
            next()
        };
        let weight_sums = self
            .weight_ids
            .iter()
            .zip(sums.chunks(2))
            .map(|(id, s)| WeightSum {
                layer: id.layer,
                linear: id.kind,
                sum: s[0],
                abs_sum: s[1],
            })
            .collect();
        let e = Explanation {
            rules: self.rules,
            ids: self.ids,
            output,
            tokens,
            positions,
            heads,
            neurons,
            weight_sums,
        };
        e.check_finite()?;
        Ok(e)
    }
}

/// `Σ W ⊙ G_W` and `Σ |W ⊙ G_W|` of one block Linear.
#[derive(Debug, Clone, Serialize)]
pub struct WeightSum {
    pub layer: usize,
    #[serde(serialize_with = "serialize_kind")]
    pub linear: super::LinearKind,
    pub sum: f32,
    pub abs_sum: f32,
}

fn serialize_kind<S: serde::Serializer>(k: &super::LinearKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{k:?}").to_lowercase())
}

/// Relevance of one explained output, on the host.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    #[serde(serialize_with = "serialize_rules")]
    pub rules: RuleSet,
    /// The explained sequence.
    pub ids: Vec<u32>,
    /// The explained output's value (= its relevance).
    pub output: f32,
    /// Relevance of each input token `[seq]`.
    pub tokens: Vec<f32>,
    /// OPT: relevance of each learned position embedding.
    pub positions: Option<Vec<f32>>,
    /// `[layer][head]`.
    pub heads: Vec<Vec<f32>>,
    /// `[layer][neuron]`.
    pub neurons: Vec<Vec<f32>>,
    /// Per block Linear, when weights were asked for.
    pub weight_sums: Vec<WeightSum>,
}

fn serialize_rules<S: serde::Serializer>(r: &RuleSet, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.name())
}

impl Explanation {
    /// `Σ R_input / R_output` (tokens plus positions): 1 means fully conserved. Reported, not
    /// asserted: biases, norm shifts and the softmax rule absorb some relevance in real models.
    pub fn conservation(&self) -> f32 {
        let input: f32 =
            self.tokens.iter().sum::<f32>() + self.positions.iter().flatten().sum::<f32>();
        input / self.output
    }

    /// NaN or infinite relevance means the numbers cannot be trusted (an overflow in the model,
    /// or a broken device): say so instead of drawing them.
    pub fn check_finite(&self) -> Result<()> {
        let parts: [(&str, Box<dyn Iterator<Item = &f32> + '_>); 5] = [
            (
                "the explained output",
                Box::new(std::iter::once(&self.output)),
            ),
            (
                "input relevance",
                Box::new(self.tokens.iter().chain(self.positions.iter().flatten())),
            ),
            ("head relevance", Box::new(self.heads.iter().flatten())),
            ("neuron relevance", Box::new(self.neurons.iter().flatten())),
            (
                "weight relevance",
                Box::new(self.weight_sums.iter().flat_map(|w| [&w.sum, &w.abs_sum])),
            ),
        ];
        for (what, mut values) in parts {
            if values.any(|v| !v.is_finite()) {
                return Err(Error::NonFinite(what.into()));
            }
        }
        Ok(())
    }
}

/// The greedy next token at the last position of `trace`, read back (native).
#[cfg(not(target_family = "wasm"))]
pub fn greedy_token(trace: &Trace) -> Result<u32> {
    let logits = crate::readback::to_vec(trace.last_logits())?;
    Ok(crate::generate::argmax(&logits))
}

/// What [`explain`] returns.
#[derive(Debug)]
pub struct Explained {
    pub explanation: Explanation,
    /// The target explained (the greedy token when none was given).
    pub target: Target,
    /// Full per-weight relevance on the device, with [`WeightDetail::Full`].
    pub weights: Vec<(LinearId, Tensor<2>)>,
}

/// Explains `target` (default: the greedy next token) for `ids` in one forward and one
/// relevance pass (native).
#[cfg(not(target_family = "wasm"))]
pub fn explain(
    model: &Model,
    ids: &[u32],
    target: Option<Target>,
    rules: RuleSet,
    detail: WeightDetail,
    limits: &MemoryLimits,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Explained> {
    let trace = Trace::new(model, ids, limits, detail != WeightDetail::None)?;
    let target = match target {
        Some(t) => t,
        None => Target::Token {
            position: None,
            token: greedy_token(&trace)?,
        },
    };
    let mut pass = RelevancePass::new(model, trace, &target, rules)?;
    let mut sink = ExplanationCollector::new(detail);
    let total = pass.layers_total();
    while pass.step(&mut sink)? {
        progress(pass.layers_done(), total);
    }
    progress(total, total);
    let input = pass.finish()?;
    let weights = sink.take_weights();
    let explanation = sink.readback(input, ids, rules).read()?;
    Ok(Explained {
        explanation,
        target,
        weights,
    })
}
