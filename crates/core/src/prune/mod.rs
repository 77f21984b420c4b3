//! Masks cut from scores: the lowest-scored weights of each comparison group are pruned (per
//! output row, per layer, globally, or N:M semi-structured), applied to the model in place and
//! undone without reloading it (`Model::mask_linear` / `Model::restore_dense`).

mod file;
mod select;

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};

pub use crate::unit::{Granularity, Group};
pub(crate) use select::prune_lowest;

use crate::error::{Error, Result};
use crate::io::HostTensor;
use crate::model::{LinearId, LinearKind, Model};
use crate::score::{ScoreInfo, ScoreMethod, Scores};

/// Rejects sparsities outside `[0, 1)`.
pub fn check_sparsity(sparsity: f64) -> Result<()> {
    if (0.0..1.0).contains(&sparsity) {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "sparsity must be in [0, 1), got {sparsity}"
        )))
    }
}

/// What a set of masks was cut from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MaskInfo {
    pub sparsity: f64,
    pub group: Group,
    pub scores: ScoreInfo,
}

/// One Linear's mask: `keep[row * in + col]` is 1 for a kept weight, 0 for a pruned one.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearMask {
    pub shape: [usize; 2],
    pub keep: Vec<u8>,
}

impl LinearMask {
    pub fn pruned(&self) -> u64 {
        self.keep.iter().filter(|&&k| k == 0).count() as u64
    }
}

/// Masks for every block Linear of a model.
#[derive(Debug, Clone)]
pub struct Masks {
    pub info: MaskInfo,
    pub linears: BTreeMap<LinearId, LinearMask>,
}

/// Pruned and total weights of one Linear.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LinearSparsity {
    pub layer: usize,
    pub kind: LinearKind,
    pub pruned: u64,
    pub total: u64,
}

/// Achieved sparsity per Linear, per layer and overall.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SparsityReport {
    pub linears: Vec<LinearSparsity>,
    pub pruned: u64,
    pub total: u64,
}

impl SparsityReport {
    pub fn sparsity(&self) -> f64 {
        self.pruned as f64 / self.total.max(1) as f64
    }

    /// `(layer, pruned, total)` for every layer, in order.
    pub fn per_layer(&self) -> Vec<(usize, u64, u64)> {
        let mut layers: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
        for l in &self.linears {
            let e = layers.entry(l.layer).or_default();
            e.0 += l.pruned;
            e.1 += l.total;
        }
        layers.into_iter().map(|(l, (p, t))| (l, p, t)).collect()
    }
}

impl Masks {
    /// Masks pruning `sparsity` of the weights of each `group` by lowest score. N:M groups
    /// fix the sparsity themselves; sequential Wanda scores only serve the sparsity and group
    /// they were made for.
    pub fn from_scores(scores: &Scores, sparsity: f64, group: Group) -> Result<Self> {
        check_sparsity(sparsity)?;
        if let Group::NofM { keep, block } = group {
            let implied = (block - keep) as f64 / block as f64;
            if (implied - sparsity).abs() > 1e-9 {
                return Err(Error::InvalidInput(format!(
                    "{keep}:{block} keeps {keep} of every {block} weights: its sparsity is {implied}, not {sparsity}"
                )));
            }
        }
        if let Some((made_sparsity, made_group)) = scores.info.made_for
            && ((made_sparsity - sparsity).abs() > 1e-9 || made_group != group)
        {
            return Err(Error::InvalidInput(format!(
                "these {} scores were made for sparsity {made_sparsity} with group {}; \
                 recompute them for sparsity {sparsity} with group {}",
                ScoreMethod::WandaSequential.name(),
                made_group.name(),
                group.name()
            )));
        }
        let linears = if group == Group::Global {
            global_keep(scores, count(scores.components(), sparsity))?
        } else {
            scores
                .linears
                .iter()
                .map(|(&id, s)| {
                    let keep = linear_keep(s, sparsity, group)?;
                    Ok((id, mask_of(s, keep)?))
                })
                .collect::<Result<_>>()?
        };
        Ok(Self {
            info: MaskInfo {
                sparsity,
                group,
                scores: scores.info.clone(),
            },
            linears,
        })
    }

    /// Masks pruning exactly the `count` lowest-scored components of one global ranking (a
    /// dose of targeted correction: "100 neurons", not a share).
    pub fn lowest(scores: &Scores, count: usize) -> Result<Self> {
        let total = scores.components();
        if count > total {
            return Err(Error::InvalidInput(format!(
                "cannot prune {count} {}: the model has only {total}",
                scores.info.granularity.name()
            )));
        }
        Ok(Self {
            info: MaskInfo {
                sparsity: count as f64 / total.max(1) as f64,
                group: Group::Global,
                scores: scores.info.clone(),
            },
            linears: global_keep(scores, count)?,
        })
    }

    /// What the masks prune, per Linear and overall.
    pub fn report(&self) -> SparsityReport {
        let linears: Vec<LinearSparsity> = self
            .linears
            .iter()
            .map(|(id, m)| LinearSparsity {
                layer: id.layer,
                kind: id.kind,
                pruned: m.pruned(),
                total: m.keep.len() as u64,
            })
            .collect();
        SparsityReport {
            pruned: linears.iter().map(|l| l.pruned).sum(),
            total: linears.iter().map(|l| l.total).sum(),
            linears,
        }
    }

    /// What one mask entry stands for: a weight, a neuron or a head.
    pub fn granularity(&self) -> Granularity {
        self.info.scores.granularity
    }

    /// Errors unless these masks fit `model`: same model and a mask of the right shape for
    /// every block Linear (every unit Linear for neurons and heads).
    pub fn check_for(&self, model: &Model) -> Result<()> {
        crate::score::check_per_linear(
            model,
            "mask",
            &self.info.scores.model,
            self.granularity(),
            |id| self.linears.get(&id).map(|m| m.shape.to_vec()),
        )
    }

    /// Applies every mask to the model's dense weights (replacing any mask applied before).
    /// Neuron and head masks zero whole input columns of down_proj / fc2 and o_proj / out_proj.
    pub fn apply(&self, model: &mut Model) -> Result<SparsityReport> {
        self.check_for(model)?;
        let device = model.device().clone();
        let granularity = self.granularity();
        let width = granularity.unit_width(&model.config);
        for (&id, mask) in &self.linears {
            let shape = model.linear_shape(id)?;
            let keep = granularity.expand(&mask.keep, shape[0], width);
            model.mask_linear(id, keep_tensor(&keep, &shape, &device))?;
        }
        Ok(self.report())
    }
}

/// `[rows, cols]` of one Linear's scores.
fn matrix_shape(scores: &HostTensor) -> Result<[usize; 2]> {
    match scores.shape[..] {
        [rows, cols] => Ok([rows, cols]),
        _ => Err(Error::InvalidInput(format!(
            "scores of shape {:?} are not a matrix",
            scores.shape
        ))),
    }
}

fn mask_of(scores: &HostTensor, keep: Vec<u8>) -> Result<LinearMask> {
    Ok(LinearMask {
        shape: matrix_shape(scores)?,
        keep,
    })
}

/// How many of `n` weights `sparsity` prunes: truncated, as Wanda's `int(n * sparsity)`.
fn count(n: usize, sparsity: f64) -> usize {
    (n as f64 * sparsity) as usize
}

/// The keep mask of one Linear for a row, layer or N:M group.
pub(crate) fn linear_keep(scores: &HostTensor, sparsity: f64, group: Group) -> Result<Vec<u8>> {
    let [rows, cols] = matrix_shape(scores)?;
    let mut keep = vec![1u8; rows * cols];
    let mut scratch = Vec::new();
    match group {
        Group::Row => {
            let k = count(cols, sparsity);
            for (s, m) in scores.data.chunks(cols).zip(keep.chunks_mut(cols)) {
                prune_lowest(s, k, m, &mut scratch);
            }
        }
        Group::Layer => prune_lowest(
            &scores.data,
            count(rows * cols, sparsity),
            &mut keep,
            &mut scratch,
        ),
        Group::NofM { keep: n, block } => {
            if !cols.is_multiple_of(block) {
                return Err(Error::InvalidInput(format!(
                    "{n}:{block} needs the input width to be a multiple of {block}, but it is {cols}"
                )));
            }
            for (s, m) in scores.data.chunks(block).zip(keep.chunks_mut(block)) {
                prune_lowest(s, block - n, m, &mut scratch);
            }
        }
        Group::Global => {
            return Err(Error::InvalidInput(
                "a global group ranks all Linears together; it has no per-Linear mask".into(),
            ));
        }
    }
    Ok(keep)
}

/// One ranking over every Linear's scores, in (layer, kind) order; the `pruned` lowest go.
fn global_keep(scores: &Scores, pruned: usize) -> Result<BTreeMap<LinearId, LinearMask>> {
    let total = scores.components();
    if total > u32::MAX as usize {
        return Err(Error::TooLarge {
            what: "a global ranking".into(),
            requested: total as u128,
            limit: u32::MAX as u128,
        });
    }
    let mut all = Vec::with_capacity(total);
    for s in scores.linears.values() {
        all.extend_from_slice(&s.data);
    }
    let mut keep = vec![1u8; total];
    prune_lowest(&all, pruned, &mut keep, &mut Vec::new());
    drop(all);
    let mut out = BTreeMap::new();
    let mut offset = 0;
    for (&id, s) in &scores.linears {
        let n = s.n_elements();
        out.insert(id, mask_of(s, keep[offset..offset + n].to_vec())?);
        offset += n;
    }
    Ok(out)
}

/// A 0/1 float tensor of a keep mask, on `device`.
pub(crate) fn keep_tensor(keep: &[u8], shape: &[usize], device: &Device) -> Tensor<2> {
    let data: Vec<f32> = keep.iter().map(|&k| f32::from(k)).collect();
    Tensor::from_data(TensorData::new(data, [shape[0], shape[1]]), device)
}
