//! Structured shrink: a model whose MLP neurons were pruned, written as a smaller checkpoint with
//! those neurons' rows and columns removed (the family's [`NeuronParam`]s) and a smaller
//! `intermediate_size`. It computes exactly what the masked model computes: a pruned neuron's
//! down-projection column is zero, so removing it changes nothing but the summation order.
//!
//! A Hugging Face config has one `intermediate_size` for every layer. Masks that prune the same
//! number of neurons in each layer (`--group layer`) shrink every layer fully; others shrink
//! every layer to the widest one, which keeps some pruned (all-zero) neurons in the others.

use super::{Checkpoint, HeldData, config_json, metadata, outgoing, read_back};
use crate::error::{Error, Result};
use crate::io::safetensors::write;
use crate::io::tokenizer::TextTokenizer;
use crate::model::{LinearId, Model};
use crate::prune::{Granularity, Masks};

/// What a shrink removed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ShrinkReport {
    /// Neurons each layer kept.
    pub kept_per_layer: Vec<usize>,
    /// The written `intermediate_size` (the widest layer's kept count).
    pub intermediate_size: usize,
    pub dense_intermediate_size: usize,
    /// Pruned neurons kept as zeros to give every layer the same width.
    pub pruned_kept_as_zeros: usize,
    pub parameters_before: u64,
    pub parameters_after: u64,
}

/// The shrunk checkpoint and what was cut.
pub struct ShrunkCheckpoint {
    pub checkpoint: Checkpoint,
    pub report: ShrinkReport,
}

/// `model`, which must run with the neuron `masks` applied, without its pruned neurons.
/// Weight masks are refused (they remove single weights, not rows or columns), and so are head
/// masks (attention heads are not shrunk).
pub async fn shrink(
    model: &Model,
    tokenizer: &TextTokenizer,
    masks: &Masks,
    note: Option<String>,
) -> Result<ShrunkCheckpoint> {
    match masks.granularity() {
        Granularity::Neurons => {}
        Granularity::Weights => {
            return Err(Error::InvalidInput(
                "a weight mask removes single weights, not whole rows or columns, so nothing can be \
                 cut out of the matrices: prune MLP neurons (`--granularity neurons`) to shrink"
                    .into(),
            ));
        }
        Granularity::Heads => {
            return Err(Error::Unsupported {
                what: "shrinking",
                detail: "attention heads (grouped-query attention shares each key/value head \
                         among several query heads); prune MLP neurons (`--granularity neurons`) to shrink"
                    .into(),
            });
        }
    }
    masks.check_for(model)?;
    let config = &model.config;
    let spec = config.architecture.spec();
    let dense = config.intermediate_size;
    // Each layer's neurons, kept ones first (`kept_per_layer` of them), then its pruned ones.
    let mut order: Vec<Vec<usize>> = Vec::with_capacity(config.num_layers);
    let mut kept_per_layer = Vec::with_capacity(config.num_layers);
    for layer in 0..config.num_layers {
        let id = LinearId {
            layer,
            kind: spec.neuron_linear,
        };
        let bits = masks.linears.get(&id).map(|m| &m.keep);
        let (kept, pruned): (Vec<usize>, Vec<usize>) =
            (0..dense).partition(|&j| bits.is_none_or(|b| b.is_kept(j)));
        kept_per_layer.push(kept.len());
        order.push([kept, pruned].concat());
    }
    let width = kept_per_layer.iter().copied().max().unwrap_or(dense).max(1);
    let padded: usize = kept_per_layer.iter().map(|k| width - k).sum();
    // A narrower layer keeps some pruned neurons too (zero columns: they add nothing).
    let keep: Vec<Vec<usize>> = order
        .into_iter()
        .map(|mut o| {
            o.truncate(width);
            o.sort_unstable();
            o
        })
        .collect();

    let params = model.arch().parameters();
    let mut host = Vec::with_capacity(params.len());
    let (mut before, mut after) = (0u64, 0u64);
    for (name, param) in &params {
        let (shape, data) = read_back(name, param).await?;
        before += shape.iter().product::<usize>() as u64;
        // `{block_prefix}.{layer}.{param}`: one of the family's neuron slices, and its layer.
        let sliced = name
            .strip_prefix(spec.block_prefix)
            .and_then(|rest| rest.strip_prefix('.')?.split_once('.'))
            .and_then(|(layer, param)| {
                let p = spec.neuron_params.iter().find(|p| p.name == param)?;
                Some((layer.parse::<usize>().ok()?, p))
            });
        let (shape, data) = match sliced {
            Some((layer, p)) => {
                let neurons: Vec<usize> = (0..p.parts)
                    .flat_map(|part| keep[layer].iter().map(move |&j| part * dense + j))
                    .collect();
                slice(name, &shape, data, p.axis, &neurons)?
            }
            None => (shape, data),
        };
        after += shape.iter().product::<usize>() as u64;
        host.push((name.as_str(), (shape, data)));
    }
    let mut shrunk = config.clone();
    shrunk.intermediate_size = width;
    Ok(ShrunkCheckpoint {
        checkpoint: Checkpoint {
            config_json: config_json(&shrunk, model.weight_dtype())?,
            model_safetensors: write(outgoing(&host), metadata(note.as_deref()))?,
            tokenizer_json: tokenizer.to_json()?,
        },
        report: ShrinkReport {
            kept_per_layer,
            intermediate_size: width,
            dense_intermediate_size: dense,
            pruned_kept_as_zeros: padded,
            parameters_before: before,
            parameters_after: after,
        },
    })
}

/// The entries `keep` (in order) of `axis` of a row-major tensor, as held.
fn slice(
    name: &str,
    shape: &[usize],
    data: HeldData,
    axis: usize,
    keep: &[usize],
) -> Result<(Vec<usize>, HeldData)> {
    let along = *shape.get(axis).ok_or_else(|| {
        Error::InvalidInput(format!("`{name}` of shape {shape:?} has no axis {axis}"))
    })?;
    if let Some(&bad) = keep.iter().find(|&&j| j >= along) {
        return Err(Error::InvalidInput(format!(
            "`{name}`: neuron slice {bad} is outside its {along} entries"
        )));
    }
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    let pick = |bytes: &[u8], size: usize| -> Vec<u8> {
        let mut out = Vec::with_capacity(outer * keep.len() * inner * size);
        for o in 0..outer {
            for &j in keep {
                let start = ((o * along + j) * inner) * size;
                out.extend_from_slice(&bytes[start..start + inner * size]);
            }
        }
        out
    };
    let data = match data {
        HeldData::F32(v) => {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            HeldData::F32(
                pick(&bytes, 4)
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )
        }
        HeldData::F16(b) => HeldData::F16(pick(&b, 2)),
        HeldData::Bf16(b) => HeldData::Bf16(pick(&b, 2)),
    };
    let mut shape = shape.to_vec();
    shape[axis] = keep.len();
    Ok((shape, data))
}
