//! Structured shrink: a model whose MLP neurons or attention heads were pruned, written as a
//! smaller checkpoint with their rows and columns removed (the family's [`NeuronParam`]s and
//! [`HeadParam`]s) and a smaller `intermediate_size` or head count. It computes exactly what the
//! masked model computes: a pruned unit's columns of down_proj or o_proj are zero, so removing it
//! changes nothing but the summation order.
//!
//! A Hugging Face config has one `intermediate_size` and one head count for every layer. Masks that
//! prune the same number of units in each layer (`--group layer`) shrink every layer fully; others
//! shrink every layer to the widest one, which keeps some pruned (all-zero) units in the others.
//! Heads under grouped-query attention have one more constraint: every key/value head serves the
//! same number of query heads. So each layer keeps as many key/value heads as the layer that uses
//! the most, each with as many query heads as the fullest group of any layer, filled up with pruned
//! heads of the same group (zeros again). Without grouping (as many key/value heads as query
//! heads) that is the neurons' rule.

use super::{Checkpoint, HeldData, config_json, metadata, outgoing, read_back};
use crate::error::{Error, Result};
use crate::io::safetensors::write;
use crate::io::tokenizer::TextTokenizer;
use crate::model::{Architecture, HeadBlock, HeadParam, LinearId, Model, ModelConfig, NeuronParam};
use crate::prune::{Granularity, Masks};

/// What a shrink removed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ShrinkReport {
    /// What was removed: MLP neurons or attention heads.
    pub unit: Granularity,
    /// Units each layer kept (neurons, or query heads).
    pub kept_per_layer: Vec<usize>,
    /// The written width: `intermediate_size`, or `num_attention_heads` (at least the widest
    /// layer's kept count).
    pub width: usize,
    pub dense_width: usize,
    /// Key/value heads before and after (heads only).
    pub kv_heads: Option<[usize; 2]>,
    /// Pruned units kept as zeros to give every layer the same width.
    pub pruned_kept_as_zeros: usize,
    pub parameters_before: u64,
    pub parameters_after: u64,
}

/// The shrunk checkpoint and what was cut.
pub struct ShrunkCheckpoint {
    pub checkpoint: Checkpoint,
    pub report: ShrinkReport,
}

/// `model`, which must run with the neuron or head `masks` applied, without its pruned units.
/// Weight masks are refused (they remove single weights, not rows or columns), and so are head
/// masks of a family whose config cannot hold fewer heads of the same size (OPT, GPT-2).
pub async fn shrink(
    model: &Model,
    tokenizer: &TextTokenizer,
    masks: &Masks,
    note: Option<String>,
) -> Result<ShrunkCheckpoint> {
    let config = &model.config;
    let spec = config.architecture.spec();
    check_shrinkable(masks.granularity(), config.architecture)?;
    masks.check_for(model)?;
    let cut = match (masks.granularity(), spec.head_params) {
        (Granularity::Heads, Some(params)) => Cut::heads(config, masks, params),
        _ => Cut::neurons(config, masks, spec.neuron_params),
    };

    let params = model.arch().parameters();
    let mut host = Vec::with_capacity(params.len());
    let (mut before, mut after) = (0u64, 0u64);
    for (name, param) in &params {
        let (shape, data) = read_back(name, param).await?;
        before += shape.iter().product::<usize>() as u64;
        // `{block_prefix}.{layer}.{param}`: a parameter the cut slices, and its layer.
        let sliced = name
            .strip_prefix(spec.block_prefix)
            .and_then(|rest| rest.strip_prefix('.')?.split_once('.'))
            .and_then(|(layer, param)| cut.slice_of(layer.parse().ok()?, param));
        let (shape, data) = match sliced {
            Some((axis, entries)) => slice(name, &shape, data, axis, &entries)?,
            None => (shape, data),
        };
        after += shape.iter().product::<usize>() as u64;
        host.push((name.as_str(), (shape, data)));
    }
    let mut shrunk = config.clone();
    let report = cut.write_into(&mut shrunk, before, after);
    Ok(ShrunkCheckpoint {
        checkpoint: Checkpoint {
            config_json: config_json(&shrunk, model.weight_dtype())?,
            model_safetensors: write(outgoing(&host), metadata(note.as_deref()))?,
            tokenizer_json: tokenizer.to_json()?,
        },
        report,
    })
}

/// Errors unless masks of `granularity` on a model of `architecture` can be shrunk: commands check
/// it before any work.
pub fn check_shrinkable(granularity: Granularity, architecture: Architecture) -> Result<()> {
    let spec = architecture.spec();
    match granularity {
        Granularity::Neurons => Ok(()),
        Granularity::Heads if spec.head_params.is_some() => Ok(()),
        Granularity::Heads => Err(Error::Unsupported {
            what: "shrinking",
            detail: format!(
                "attention heads of {} (its config derives the head size from the hidden size and \
                 the head count, so a checkpoint with fewer heads cannot say so); prune MLP \
                 neurons (`--granularity neurons`) to shrink",
                spec.name
            ),
        }),
        Granularity::Weights => Err(Error::InvalidInput(
            "a weight mask removes single weights, not whole rows or columns, so nothing can be \
             cut out of the matrices: prune MLP neurons or attention heads (`--granularity \
             neurons|heads`) to shrink"
                .into(),
        )),
    }
}

/// Which units of each layer a shrunk checkpoint keeps, and the parameters they are cut from.
enum Cut {
    Neurons {
        params: &'static [NeuronParam],
        dense: usize,
        /// Per layer, the neurons written (kept ones, then pruned ones to fill the width).
        keep: Vec<Vec<usize>>,
        kept_per_layer: Vec<usize>,
    },
    Heads {
        params: &'static [HeadParam],
        head_dim: usize,
        dense: [usize; 2],
        /// Per layer, the query heads and the key/value heads written, ascending.
        query: Vec<Vec<usize>>,
        kv: Vec<Vec<usize>>,
        kept_per_layer: Vec<usize>,
    },
}

impl Cut {
    fn neurons(config: &ModelConfig, masks: &Masks, params: &'static [NeuronParam]) -> Self {
        let dense = config.intermediate_size;
        let kept = kept_units(config, masks, dense);
        let kept_per_layer: Vec<usize> = kept.iter().map(|(k, _)| k.len()).collect();
        let width = kept_per_layer.iter().copied().max().unwrap_or(dense).max(1);
        // A narrower layer keeps some pruned neurons too (zero columns: they add nothing).
        let keep = kept
            .into_iter()
            .map(|(kept, pruned)| filled(kept, pruned, width))
            .collect();
        Cut::Neurons {
            params,
            dense,
            keep,
            kept_per_layer,
        }
    }

    fn heads(config: &ModelConfig, masks: &Masks, params: &'static [HeadParam]) -> Self {
        let (heads, kv_heads) = (config.num_heads, config.num_kv_heads);
        let per_group = config.heads_per_kv_head();
        let group_of = |h: &usize| h / per_group;
        let kept = kept_units(config, masks, heads);
        let kept_per_layer: Vec<usize> = kept.iter().map(|(k, _)| k.len()).collect();
        // Per layer and group, its kept query heads.
        let in_groups: Vec<Vec<Vec<usize>>> = kept
            .iter()
            .map(|(kept, _)| {
                (0..kv_heads)
                    .map(|g| kept.iter().copied().filter(|h| group_of(h) == g).collect())
                    .collect()
            })
            .collect();
        let used = |groups: &Vec<Vec<usize>>| groups.iter().filter(|g| !g.is_empty()).count();
        let kv_width = in_groups.iter().map(used).max().unwrap_or(0).max(1);
        let group_width = in_groups
            .iter()
            .flatten()
            .map(Vec::len)
            .max()
            .unwrap_or(0)
            .max(1);
        let (mut query, mut kv) = (Vec::new(), Vec::new());
        for groups in &in_groups {
            // The groups with kept heads, then empty ones to fill the width.
            let (used, empty): (Vec<usize>, Vec<usize>) =
                (0..kv_heads).partition(|&g| !groups[g].is_empty());
            let written = filled(used, empty, kv_width);
            query.push(
                written
                    .iter()
                    .flat_map(|&g| {
                        let pruned = (g * per_group..(g + 1) * per_group)
                            .filter(|h| !groups[g].contains(h))
                            .collect();
                        filled(groups[g].clone(), pruned, group_width)
                    })
                    .collect(),
            );
            kv.push(written);
        }
        Cut::Heads {
            params,
            head_dim: config.head_dim,
            dense: [heads, kv_heads],
            query,
            kv,
            kept_per_layer,
        }
    }

    /// The axis of block parameter `param` of `layer` and the entries along it that are written,
    /// if the cut slices it.
    fn slice_of(&self, layer: usize, param: &str) -> Option<(usize, Vec<usize>)> {
        match self {
            Cut::Neurons {
                params,
                dense,
                keep,
                ..
            } => {
                let p = params.iter().find(|p| p.name == param)?;
                let keep = keep.get(layer)?;
                let entries = (0..p.parts)
                    .flat_map(|part| keep.iter().map(move |&j| part * dense + j))
                    .collect();
                Some((p.axis, entries))
            }
            Cut::Heads {
                params,
                head_dim,
                dense: [heads, kv_heads],
                query,
                kv,
                ..
            } => {
                let p = params.iter().find(|p| p.name == param)?;
                let mut entries = Vec::new();
                let mut offset = 0;
                for block in p.blocks {
                    let (keep, count) = match block {
                        HeadBlock::Query => (query.get(layer)?, heads),
                        HeadBlock::KeyValue => (kv.get(layer)?, kv_heads),
                    };
                    for &h in keep {
                        let start = offset + h * head_dim;
                        entries.extend(start..start + head_dim);
                    }
                    offset += count * head_dim;
                }
                Some((p.axis, entries))
            }
        }
    }

    /// Writes the shrunk sizes into `config`; the report of the shrink.
    fn write_into(self, config: &mut ModelConfig, before: u64, after: u64) -> ShrinkReport {
        let (unit, kept_per_layer, width, dense_width, kv_heads) = match self {
            Cut::Neurons {
                dense,
                keep,
                kept_per_layer,
                ..
            } => {
                let width = keep.first().map_or(dense, Vec::len);
                config.intermediate_size = width;
                (Granularity::Neurons, kept_per_layer, width, dense, None)
            }
            Cut::Heads {
                dense: [heads, kv_heads],
                query,
                kv,
                kept_per_layer,
                ..
            } => {
                let width = query.first().map_or(heads, Vec::len);
                let kv_width = kv.first().map_or(kv_heads, Vec::len);
                config.num_heads = width;
                config.num_kv_heads = kv_width;
                let kv = [kv_heads, kv_width];
                (Granularity::Heads, kept_per_layer, width, heads, Some(kv))
            }
        };
        ShrinkReport {
            unit,
            pruned_kept_as_zeros: kept_per_layer.iter().map(|k| width - k).sum(),
            kept_per_layer,
            width,
            dense_width,
            kv_heads,
            parameters_before: before,
            parameters_after: after,
        }
    }
}

/// Per layer, the units of a `units`-wide layer its mask keeps and those it prunes (all kept
/// where no mask applies), each ascending.
fn kept_units(config: &ModelConfig, masks: &Masks, units: usize) -> Vec<(Vec<usize>, Vec<usize>)> {
    let kind = masks.granularity().unit_kind(config.architecture);
    (0..config.num_layers)
        .map(|layer| {
            let bits = kind
                .and_then(|kind| masks.linears.get(&LinearId { layer, kind }))
                .map(|m| &m.keep);
            (0..units).partition(|&j| bits.is_none_or(|b| b.is_kept(j)))
        })
        .collect()
}

/// `kept`, then as many of `pruned` as fill it up to `width`, ascending.
fn filled(kept: Vec<usize>, pruned: Vec<usize>, width: usize) -> Vec<usize> {
    let mut written = [kept, pruned].concat();
    written.truncate(width);
    written.sort_unstable();
    written
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
