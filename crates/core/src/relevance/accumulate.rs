//! Weight, neuron and head relevance accumulated over a reference set, one sample at a time:
//! memory holds the running sums (two per weight), never the per-sample relevance.

use std::collections::BTreeMap;

use burn::tensor::Tensor;

use super::{LinearId, RelevanceSink};
use crate::error::Result;

/// Running `Σ R` and `Σ |R|` per block Linear, and `Σ R` per neuron and head, over samples.
#[derive(Default)]
pub struct WeightRelevanceAccumulator {
    /// `Σ R` and, unless `signed_only`, `Σ |R|`.
    weights: BTreeMap<LinearId, (Tensor<2>, Option<Tensor<2>>)>,
    signed_only: bool,
    neurons: BTreeMap<usize, Tensor<1>>,
    heads: BTreeMap<usize, Tensor<1>>,
    samples: usize,
}

fn add<const D: usize>(slot: Option<Tensor<D>>, r: Tensor<D>) -> Tensor<D> {
    match slot {
        Some(acc) => acc + r,
        None => r,
    }
}

impl WeightRelevanceAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps only `Σ R` per weight (half the memory; [`Self::mean_abs`] is then unavailable).
    pub fn signed_only() -> Self {
        Self {
            signed_only: true,
            ..Self::default()
        }
    }

    /// Marks the end of one sample's pass.
    pub fn finish_sample(&mut self) {
        self.samples += 1;
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The Linears seen so far, in (layer, kind) order.
    pub fn linears(&self) -> impl Iterator<Item = LinearId> + '_ {
        self.weights.keys().copied()
    }

    /// Mean weight relevance over the samples (paper Eq. 1).
    pub fn mean(&self, id: LinearId) -> Option<Tensor<2>> {
        self.weights
            .get(&id)
            .map(|(s, _)| s.clone().div_scalar(self.samples.max(1) as f64))
    }

    /// Mean of the absolute weight relevance over the samples.
    pub fn mean_abs(&self, id: LinearId) -> Option<Tensor<2>> {
        self.weights
            .get(&id)
            .and_then(|(_, a)| a.clone())
            .map(|a| a.div_scalar(self.samples.max(1) as f64))
    }

    /// Mean neuron relevance of `layer`.
    pub fn neurons_mean(&self, layer: usize) -> Option<Tensor<1>> {
        self.neurons
            .get(&layer)
            .map(|s| s.clone().div_scalar(self.samples.max(1) as f64))
    }

    /// Mean head relevance of `layer`.
    pub fn heads_mean(&self, layer: usize) -> Option<Tensor<1>> {
        self.heads
            .get(&layer)
            .map(|s| s.clone().div_scalar(self.samples.max(1) as f64))
    }
}

impl RelevanceSink for WeightRelevanceAccumulator {
    fn wants_weights(&self) -> bool {
        true
    }

    fn weight(&mut self, id: LinearId, relevance: Tensor<2>) -> Result<()> {
        let (sum, abs) = match self.weights.remove(&id) {
            Some((s, a)) => (Some(s), a),
            None => (None, None),
        };
        let abs = (!self.signed_only).then(|| add(abs, relevance.clone().abs()));
        let entry = (add(sum, relevance), abs);
        self.weights.insert(id, entry);
        Ok(())
    }

    fn neurons(&mut self, layer: usize, relevance: Tensor<1>) -> Result<()> {
        let acc = add(self.neurons.remove(&layer), relevance);
        self.neurons.insert(layer, acc);
        Ok(())
    }

    fn heads(&mut self, layer: usize, relevance: Tensor<1>) -> Result<()> {
        let acc = add(self.heads.remove(&layer), relevance);
        self.heads.insert(layer, acc);
        Ok(())
    }
}
