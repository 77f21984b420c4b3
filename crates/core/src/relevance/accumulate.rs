//! Weight, neuron and head relevance accumulated over a reference set, one sample at a time:
//! memory holds the running sums (one or two per weight, as asked), never the per-sample
//! relevance.

use std::collections::BTreeMap;

use burn::tensor::Tensor;

use super::{LinearId, RelevanceSink};
use crate::error::Result;

/// Which running sums to keep per weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightSums {
    /// `Σ R` and `Σ |R|` (8 bytes per weight): both `lrp` and `lrp-abs` from one pass.
    #[default]
    Both,
    /// `Σ R` only (`lrp`, gradient).
    Signed,
    /// `Σ |R|` only (`lrp-abs`).
    Abs,
    /// None: neuron and head relevance only, and the pass skips the per-weight products.
    None,
}

impl WeightSums {
    /// How many float32 sums this keeps per weight.
    pub fn per_weight(self) -> u64 {
        match self {
            Self::Both => 2,
            Self::Signed | Self::Abs => 1,
            Self::None => 0,
        }
    }
}

/// Running sums per block Linear (as [`WeightSums`] says), neuron and head, over samples.
#[derive(Default)]
pub struct WeightRelevanceAccumulator {
    /// `Σ R` and `Σ |R|`, each if kept.
    weights: BTreeMap<LinearId, (Option<Tensor<2>>, Option<Tensor<2>>)>,
    sums: WeightSums,
    /// `Σ R` and `Σ |R|` per layer.
    neurons: BTreeMap<usize, (Tensor<1>, Tensor<1>)>,
    heads: BTreeMap<usize, (Tensor<1>, Tensor<1>)>,
    samples: usize,
}

fn add<const D: usize>(slot: Option<Tensor<D>>, r: Tensor<D>) -> Tensor<D> {
    match slot {
        Some(acc) => acc + r,
        None => r,
    }
}

impl WeightRelevanceAccumulator {
    /// Keeps `Σ R` and `Σ |R|` per weight.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the per-weight sums `sums` says.
    pub fn keeping(sums: WeightSums) -> Self {
        Self {
            sums,
            ..Self::default()
        }
    }

    /// Which per-weight sums this keeps.
    pub fn sums(&self) -> WeightSums {
        self.sums
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

    /// Mean weight relevance over the samples (paper Eq. 1), if `Σ R` is kept.
    pub fn mean(&self, id: LinearId) -> Option<Tensor<2>> {
        self.weights
            .get(&id)
            .and_then(|(s, _)| s.clone())
            .map(|s| s.div_scalar(self.samples.max(1) as f64))
    }

    /// Mean of the absolute weight relevance over the samples, if `Σ |R|` is kept.
    pub fn mean_abs(&self, id: LinearId) -> Option<Tensor<2>> {
        self.weights
            .get(&id)
            .and_then(|(_, a)| a.clone())
            .map(|a| a.div_scalar(self.samples.max(1) as f64))
    }

    fn unit_mean(
        &self,
        units: &BTreeMap<usize, (Tensor<1>, Tensor<1>)>,
        layer: usize,
        abs: bool,
    ) -> Option<Tensor<1>> {
        units.get(&layer).map(|(s, a)| {
            let sum = if abs { a } else { s };
            sum.clone().div_scalar(self.samples.max(1) as f64)
        })
    }

    /// Mean neuron relevance of `layer`.
    pub fn neurons_mean(&self, layer: usize) -> Option<Tensor<1>> {
        self.unit_mean(&self.neurons, layer, false)
    }

    /// Mean of the absolute neuron relevance of `layer`.
    pub fn neurons_mean_abs(&self, layer: usize) -> Option<Tensor<1>> {
        self.unit_mean(&self.neurons, layer, true)
    }

    /// Mean head relevance of `layer`.
    pub fn heads_mean(&self, layer: usize) -> Option<Tensor<1>> {
        self.unit_mean(&self.heads, layer, false)
    }

    /// Mean of the absolute head relevance of `layer`.
    pub fn heads_mean_abs(&self, layer: usize) -> Option<Tensor<1>> {
        self.unit_mean(&self.heads, layer, true)
    }
}

/// Adds one sample's unit relevance and its magnitude to a layer's running sums.
fn add_units(units: &mut BTreeMap<usize, (Tensor<1>, Tensor<1>)>, layer: usize, r: Tensor<1>) {
    let entry = match units.remove(&layer) {
        Some((s, a)) => (s + r.clone(), a + r.abs()),
        None => (r.clone(), r.abs()),
    };
    units.insert(layer, entry);
}

impl RelevanceSink for WeightRelevanceAccumulator {
    fn wants_weights(&self) -> bool {
        self.sums != WeightSums::None
    }

    fn weight(&mut self, id: LinearId, relevance: Tensor<2>) -> Result<()> {
        let (sum, abs) = self.weights.remove(&id).unwrap_or((None, None));
        let entry = match self.sums {
            WeightSums::Both => (
                Some(add(sum, relevance.clone())),
                Some(add(abs, relevance.abs())),
            ),
            WeightSums::Signed => (Some(add(sum, relevance)), None),
            WeightSums::Abs => (None, Some(add(abs, relevance.abs()))),
            WeightSums::None => return Ok(()),
        };
        self.weights.insert(id, entry);
        Ok(())
    }

    fn neurons(&mut self, layer: usize, relevance: Tensor<1>) -> Result<()> {
        add_units(&mut self.neurons, layer, relevance);
        Ok(())
    }

    fn heads(&mut self, layer: usize, relevance: Tensor<1>) -> Result<()> {
        add_units(&mut self.heads, layer, relevance);
        Ok(())
    }
}
