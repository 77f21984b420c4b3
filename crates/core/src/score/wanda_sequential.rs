//! Wanda's sequential variant (Sun et al. 2023, `prune_wanda`): block by block, gather the input
//! statistics of a block's Linears with every earlier block already pruned, prune the block,
//! then pass the samples through the pruned block to the next one.

use std::collections::BTreeMap;

use burn::tensor::Tensor;

use super::scorer::add_column_stats;
use super::{ReferenceSet, ScoreInfo, ScoreMethod, Scores};
use crate::error::{Error, Result};
use crate::io::HostTensor;
use crate::model::{LinearId, Model};
use crate::unit::Group;
use crate::unit::select::{check_sparsity, linear_keep};

/// Scores the model the way sequential Wanda prunes it at `sparsity` with `group` (row, layer
/// or N:M: each block is pruned before the next is scored, so a global group cannot apply).
/// The model is left dense; the returned scores cut exactly the masks the procedure applied.
/// Holds every sample's hidden state at once (samples × length × hidden floats).
pub fn wanda_sequential(
    model: &mut Model,
    reference: &ReferenceSet,
    sparsity: f64,
    group: Group,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Scores> {
    if model.is_masked() {
        return Err(Error::InvalidInput(
            "the model has a mask applied: restore the dense model before scoring it".into(),
        ));
    }
    if group == Group::Global {
        return Err(Error::InvalidInput(
            "sequential Wanda prunes block by block, so it cannot rank weights globally; use row, layer or N:M".into(),
        ));
    }
    check_sparsity(sparsity)?;
    if reference.samples.is_empty() {
        return Err(Error::InvalidInput(
            "wanda-seq needs a reference set".into(),
        ));
    }
    let mut hidden: Vec<Tensor<3>> = reference
        .samples
        .iter()
        .map(|ids| Ok(model.arch().embeddings(model.tokens(ids)?).block_input))
        .collect::<Result<_>>()?;
    let layers = model.config.num_layers;
    let mut linears = BTreeMap::new();
    let result = (|| {
        for layer in 0..layers {
            let mut sums = BTreeMap::new();
            for x in &hidden {
                let (_, inputs) = model.arch().block_linear_inputs(layer, x.clone());
                add_column_stats(layer, inputs, &mut sums, None);
            }
            for (id, sum) in sums {
                let scores = model.weight(id)?.abs() * sum.sqrt().unsqueeze::<2>();
                let shape = scores.dims().to_vec();
                let scores = HostTensor::new(shape, crate::readback::to_vec(scores)?)?;
                model.mask_linear(id, &linear_keep(&scores, sparsity, group)?)?;
                linears.insert(id, scores);
            }
            for x in &mut hidden {
                *x = model.arch().block_linear_inputs(layer, x.clone()).0;
            }
            progress(layer + 1, layers);
        }
        Ok::<_, Error>(())
    })();
    model.restore_dense();
    result?;
    check_complete(model, &linears)?;
    let mut info = ScoreInfo::new(
        ScoreMethod::WandaSequential,
        Some(reference.protocol.clone()),
        model,
    );
    info.made_for = Some((sparsity, group));
    Ok(Scores { info, linears })
}

fn check_complete(model: &Model, linears: &BTreeMap<LinearId, HostTensor>) -> Result<()> {
    match model
        .linear_ids()
        .into_iter()
        .find(|id| !linears.contains_key(id))
    {
        Some(id) => Err(Error::InvalidInput(format!(
            "no statistics were gathered for {id}"
        ))),
        None => Ok(()),
    }
}
