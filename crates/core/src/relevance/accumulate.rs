//! Weight, neuron and head relevance accumulated over a reference set, one sample at a time:
//! memory holds the running sums (one or two per weight, as asked), never the per-sample
//! relevance. Natively the per-weight sums can live in a scratch file instead
//! ([`WeightRelevanceAccumulator::spill_to`]).
//!
//! Per weight the sums are of the gradient, `Σ G_W` and `Σ |G_W|`, multiplied by `W` (and `|W|`)
//! only when a mean is asked for: the same relevance sums, one pass over the weights per sample
//! fewer than multiplying every sample.

use std::collections::BTreeMap;

use burn::tensor::Tensor;

use super::{LinearId, RelevanceSink, WeightGrad};
use crate::error::Result;
use crate::model::widened;

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

/// Where the per-weight sums live.
enum WeightStore {
    /// On the model's device, per Linear.
    Device(BTreeMap<LinearId, GradSums>),
    /// In a scratch file on the host.
    #[cfg(not(target_family = "wasm"))]
    File(Box<SpilledSums>),
}

/// One Linear's `Σ G_W` and `Σ |G_W|` (each if kept) and its weight `W` (the model's own tensor,
/// shared, not a copy).
struct GradSums {
    grad: Option<Tensor<2>>,
    abs_grad: Option<Tensor<2>>,
    weight: Tensor<2>,
}

/// Sums in a scratch file, keyed by Linear and `abs`; means go back to each weight's device.
#[cfg(not(target_family = "wasm"))]
struct SpilledSums {
    file: super::spill::SumsFile<(LinearId, bool)>,
    weights: BTreeMap<LinearId, Tensor<2>>,
}

impl Default for WeightStore {
    fn default() -> Self {
        Self::Device(BTreeMap::new())
    }
}

/// Running sums per block Linear (as [`WeightSums`] says), neuron and head, over samples.
#[derive(Default)]
pub struct WeightRelevanceAccumulator {
    weights: WeightStore,
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

    /// Keeps the per-weight sums in a scratch file in `dir` instead of on the device, from the
    /// first sample on: float32 sums as on the device, so the scores are the same, at the cost
    /// of reading and writing each Linear's sums once per sample. Errors once a sum is kept.
    #[cfg(not(target_family = "wasm"))]
    pub fn spill_to(&mut self, dir: &std::path::Path) -> Result<()> {
        if !matches!(&self.weights, WeightStore::Device(w) if w.is_empty()) {
            return Err(crate::error::Error::InvalidInput(
                "weight sums can only move to a scratch file before the first sample".into(),
            ));
        }
        self.weights = WeightStore::File(Box::new(SpilledSums {
            file: super::spill::SumsFile::create(dir)?,
            weights: BTreeMap::new(),
        }));
        Ok(())
    }

    /// Whether the per-weight sums live in a scratch file.
    pub fn spilled(&self) -> bool {
        !matches!(self.weights, WeightStore::Device(_))
    }

    /// Marks the end of one sample's pass.
    pub fn finish_sample(&mut self) {
        self.samples += 1;
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The Linears seen so far, in (layer, kind) order.
    pub fn linears(&self) -> Vec<LinearId> {
        match &self.weights {
            WeightStore::Device(w) => w.keys().copied().collect(),
            #[cfg(not(target_family = "wasm"))]
            WeightStore::File(spilled) => spilled.weights.keys().copied().collect(),
        }
    }

    /// Mean weight relevance over the samples (paper Eq. 1), if `Σ R` is kept.
    pub fn mean(&self, id: LinearId) -> Result<Option<Tensor<2>>> {
        self.weight_mean(id, false)
    }

    /// Mean of the absolute weight relevance over the samples, if `Σ |R|` is kept.
    pub fn mean_abs(&self, id: LinearId) -> Result<Option<Tensor<2>>> {
        self.weight_mean(id, true)
    }

    fn weight_mean(&self, id: LinearId, abs: bool) -> Result<Option<Tensor<2>>> {
        let (sum, weight) = match &self.weights {
            WeightStore::Device(w) => match w.get(&id) {
                Some(sums) => {
                    let sum = if abs { &sums.abs_grad } else { &sums.grad };
                    (sum.clone(), sums.weight.clone())
                }
                None => return Ok(None),
            },
            #[cfg(not(target_family = "wasm"))]
            WeightStore::File(spilled) => {
                let Some(weight) = spilled.weights.get(&id) else {
                    return Ok(None);
                };
                let sum = spilled.file.read(&(id, abs))?.map(|sums| {
                    Tensor::from_data(
                        burn::tensor::TensorData::new(sums, weight.dims()),
                        &weight.device(),
                    )
                });
                (sum, weight.clone())
            }
        };
        let weight = widened(weight);
        let weight = if abs { weight.abs() } else { weight };
        Ok(sum.map(|s| (s * weight).div_scalar(self.samples.max(1) as f64)))
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

    fn weight(&mut self, id: LinearId, weight: WeightGrad) -> Result<()> {
        let (signed, abs) = match self.sums {
            WeightSums::Both => (true, true),
            WeightSums::Signed => (true, false),
            WeightSums::Abs => (false, true),
            WeightSums::None => return Ok(()),
        };
        let WeightGrad { grad, weight } = weight;
        match &mut self.weights {
            WeightStore::Device(weights) => {
                let (sum, sum_abs) = match weights.remove(&id) {
                    Some(sums) => (sums.grad, sums.abs_grad),
                    None => (None, None),
                };
                // The magnitude first: the signed sum may then take `grad` itself in place.
                let abs_grad = abs.then(|| add(sum_abs, grad.clone().abs()));
                let entry = GradSums {
                    grad: signed.then(|| add(sum, grad)),
                    abs_grad,
                    weight,
                };
                weights.insert(id, entry);
            }
            #[cfg(not(target_family = "wasm"))]
            WeightStore::File(spilled) => {
                let SpilledSums { file, weights } = spilled.as_mut();
                weights.insert(id, weight);
                let mut values = crate::readback::to_vec(grad)?;
                if signed {
                    file.add((id, false), &values)?;
                }
                if abs {
                    values.iter_mut().for_each(|v| *v = v.abs());
                    file.add((id, true), &values)?;
                }
            }
        }
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
