//! Masks cut from scores: the lowest-scored weights of each comparison group are pruned (per
//! output row, per layer, globally, or N:M semi-structured), applied to the model in place and
//! undone without reloading it (`Model::mask_linear` / `Model::restore_dense`).

mod file;

use std::collections::BTreeMap;

pub use crate::model::KeepBits;
pub use crate::unit::select::check_sparsity;
pub use crate::unit::{Granularity, Group, LinearSet};

use crate::unit::select::{count, linear_keep, matrix_shape, prune_lowest};

use crate::error::{Error, Result};
use crate::io::HostTensor;
use crate::model::{LinearId, LinearKind, Model};
#[cfg(not(target_family = "wasm"))]
use crate::score::Scorer;
use crate::score::{ScoreInfo, ScoreMethod, Scores};

/// What a set of masks was cut from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MaskInfo {
    pub sparsity: f64,
    pub group: Group,
    pub scores: ScoreInfo,
}

/// One Linear's mask: bit `row * in + col` of `keep` is set for a kept weight (or unit).
#[derive(Debug, Clone, PartialEq)]
pub struct LinearMask {
    pub shape: [usize; 2],
    pub keep: KeepBits,
}

impl LinearMask {
    pub fn pruned(&self) -> u64 {
        self.keep.pruned()
    }

    /// The mask over the Linear's weights `[rows, in]`: a weight mask as it is; a unit mask of
    /// `granularity` with each unit's input columns (`width` of them) kept or pruned in every row.
    pub fn weight_keep(&self, granularity: Granularity, rows: usize, width: usize) -> KeepBits {
        match granularity {
            Granularity::Weights => self.keep.clone(),
            _ => self.keep.repeated(rows, width),
        }
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
        check_request(&scores.info, sparsity, group)?;
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

    /// [`Masks::from_scores`] for a finished scorer, reading one Linear's scores at a time:
    /// memory holds one Linear's scores and the masks' bits, never every score (which for a 7B
    /// model's weights is 26 GB). Row, layer and N:M groups only: a global ranking needs every
    /// score at once. Only the Linears of `linears` are masked.
    #[cfg(not(target_family = "wasm"))]
    pub fn from_scorer(
        scorer: &Scorer,
        sparsity: f64,
        group: Group,
        linears: &LinearSet,
    ) -> Result<Self> {
        let mut info = scorer.info();
        info.linears = linears.clone();
        check_request(&info, sparsity, group)?;
        if group == Group::Global {
            return Err(Error::InvalidInput(
                "a global ranking needs every score at once: read the scores and use Masks::from_scores".into(),
            ));
        }
        let mut masks = BTreeMap::new();
        for id in linears.linear_ids(info.granularity, scorer.model())? {
            let s = scorer.linear_scores(id)?;
            let keep = linear_keep(&s, sparsity, group)?;
            masks.insert(id, mask_of(&s, keep)?);
        }
        Ok(Self {
            info: MaskInfo {
                sparsity,
                group,
                scores: info,
            },
            linears: masks,
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
    /// every block Linear they cover (every unit Linear for neurons and heads).
    pub fn check_for(&self, model: &Model) -> Result<()> {
        crate::score::check_per_linear(
            model,
            "mask",
            &self.info.scores.model,
            self.granularity(),
            &self.info.scores.linears,
            |id| self.linears.get(&id).map(|m| m.shape.to_vec()),
        )
    }

    /// Applies every mask to the model's dense weights (replacing any mask applied before),
    /// undoably ([`Model::restore_dense`]). Neuron and head masks zero whole input columns of
    /// down_proj / fc2 and o_proj / out_proj.
    pub fn apply(&self, model: &mut Model) -> Result<SparsityReport> {
        self.apply_with(model, Model::mask_linear)
    }

    /// [`Masks::apply`] for good, keeping nothing to undo it ([`Model::prune_linear`]): for a
    /// model that is pruned once and exported.
    pub fn apply_for_good(&self, model: &mut Model) -> Result<SparsityReport> {
        self.apply_with(model, Model::prune_linear)
    }

    fn apply_with(
        &self,
        model: &mut Model,
        zero: fn(&mut Model, LinearId, &KeepBits) -> Result<()>,
    ) -> Result<SparsityReport> {
        self.check_for(model)?;
        let granularity = self.granularity();
        let width = granularity.unit_width(&model.config);
        let masked = self.linears.iter().try_for_each(|(&id, mask)| {
            let [rows, _] = model.linear_shape(id)?;
            zero(model, id, &mask.weight_keep(granularity, rows, width))
        });
        model.join_linears();
        masked?;
        Ok(self.report())
    }
}

/// Errors unless `sparsity` and `group` are a valid request for scores described by `info`.
fn check_request(info: &ScoreInfo, sparsity: f64, group: Group) -> Result<()> {
    check_sparsity(sparsity)?;
    if let Group::NofM { keep, block } = group {
        let implied = (block - keep) as f64 / block as f64;
        if (implied - sparsity).abs() > 1e-9 {
            return Err(Error::InvalidInput(format!(
                "{keep}:{block} keeps {keep} of every {block} weights: its sparsity is {implied}, not {sparsity}"
            )));
        }
    }
    if let Some((made_sparsity, made_group)) = info.made_for
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
    Ok(())
}

/// One Linear's mask: `keep` over the shape of its scores.
fn mask_of(scores: &HostTensor, keep: KeepBits) -> Result<LinearMask> {
    Ok(LinearMask {
        shape: matrix_shape(scores)?,
        keep,
    })
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
    let mut keep = KeepBits::all_kept(total);
    prune_lowest(&all, pruned, &mut keep, 0, &mut Vec::new());
    drop(all);
    let mut out = BTreeMap::new();
    let mut offset = 0;
    for (&id, s) in &scores.linears {
        let n = s.n_elements();
        out.insert(id, mask_of(s, keep.slice(offset, n))?);
        offset += n;
    }
    Ok(out)
}

/// Runs `measure` on the model with `masks` applied, then restores the dense weights whether
/// `measure` succeeded or not (a cancelled job leaves the model as it found it).
pub async fn with_masks<T>(
    model: &mut Model,
    masks: &Masks,
    measure: impl AsyncFnOnce(&Model) -> Result<T>,
) -> Result<T> {
    masks.apply(model)?;
    let result = measure(model).await;
    model.restore_dense();
    result
}
