//! Circuit files (`scalpel-circuit/1`): JSON that a person can read and a page can load. Neuron
//! and head circuits list the kept units of each layer; weight circuits carry each Linear's keep
//! mask as base64 of its bits (least significant bit first), a twelfth of the bytes of a list.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::{Error, Result};
use crate::model::{Architecture, LinearId};
use crate::prune::{Granularity, KeepBits, LinearMask, MaskInfo, Masks};
use crate::task::metrics::TaskMetrics;

const FORMAT: &str = "scalpel-circuit/1";

/// What was measured about a circuit when it was found.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CircuitNotes {
    /// The task the circuit was found for.
    pub task: String,
    /// Share of the dense logit difference the circuit had to keep.
    pub threshold: Option<f64>,
    pub dense: Option<TaskMetrics>,
    /// The circuit alone, on the prompts it was found with.
    pub circuit: Option<TaskMetrics>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Kept {
    shape: [usize; 2],
    /// Kept units (neurons, heads) in increasing order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    units: Option<Vec<u32>>,
    /// Kept weights as bits (row-major), base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bits: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CircuitFile {
    format: String,
    mask: MaskInfo,
    notes: CircuitNotes,
    /// By the Linear's checkpoint name (`model.layers.3.mlp.down_proj`).
    linears: BTreeMap<String, Kept>,
}

/// The circuit `masks` as a JSON document.
pub fn to_json(masks: &Masks, architecture: Architecture, notes: &CircuitNotes) -> Result<String> {
    let units = masks.granularity() != Granularity::Weights;
    let linears = masks
        .linears
        .iter()
        .map(|(id, m)| {
            let kept = if units {
                Kept {
                    shape: m.shape,
                    units: Some(
                        m.keep
                            .iter()
                            .enumerate()
                            .filter(|(_, kept)| *kept)
                            .map(|(i, _)| i as u32)
                            .collect(),
                    ),
                    bits: None,
                }
            } else {
                Kept {
                    shape: m.shape,
                    units: None,
                    bits: Some(STANDARD.encode(m.keep.packed())),
                }
            };
            (id.checkpoint_name(architecture), kept)
        })
        .collect();
    let file = CircuitFile {
        format: FORMAT.into(),
        mask: masks.info.clone(),
        notes: notes.clone(),
        linears,
    };
    serde_json::to_string(&file)
        .map_err(|e| Error::InvalidInput(format!("encoding the circuit: {e}")))
}

/// Reads a circuit file; `file` names it in errors. Check the masks with [`Masks::check_for`].
pub fn from_json(
    file: &str,
    text: &str,
    architecture: Architecture,
) -> Result<(Masks, CircuitNotes)> {
    let bad = |reason: String| Error::format(file, reason);
    let parsed: CircuitFile =
        serde_json::from_str(text).map_err(|e| bad(format!("not a Scalpel circuit file ({e})")))?;
    if parsed.format != FORMAT {
        return Err(bad(format!("format `{}` is not {FORMAT}", parsed.format)));
    }
    let granularity = parsed.mask.scores.granularity;
    let mut linears = BTreeMap::new();
    for (name, kept) in parsed.linears {
        let id = LinearId::from_checkpoint_name(&name, architecture).ok_or_else(|| {
            bad(format!(
                "`{name}` is not a block Linear of a {architecture:?} model"
            ))
        })?;
        let [rows, cols] = kept.shape;
        let n = rows
            .checked_mul(cols)
            .filter(|&n| n <= u32::MAX as usize)
            .ok_or_else(|| bad(format!("`{name}`: shape {:?} is too large", kept.shape)))?;
        let keep = match (granularity, kept.units, kept.bits) {
            (Granularity::Weights, None, Some(bits)) => {
                let bytes = STANDARD
                    .decode(bits.as_bytes())
                    .map_err(|e| bad(format!("`{name}`: bits are not base64 ({e})")))?;
                let given = bytes.len();
                KeepBits::from_packed(bytes, n).ok_or_else(|| {
                    bad(format!("`{name}`: {given} bytes of bits for {n} weights"))
                })?
            }
            (Granularity::Neurons | Granularity::Heads, Some(units), None) => {
                if rows != 1 {
                    return Err(bad(format!("`{name}`: unit masks have one row")));
                }
                let mut keep = KeepBits::from_flags(std::iter::repeat_n(false, n));
                for u in units {
                    if u as usize >= n {
                        return Err(bad(format!("`{name}`: unit {u} is outside 0..{n}")));
                    }
                    keep.keep(u as usize);
                }
                keep
            }
            _ => {
                return Err(bad(format!(
                    "`{name}`: a {} circuit lists {}",
                    granularity.name(),
                    if granularity == Granularity::Weights {
                        "`bits`"
                    } else {
                        "`units`"
                    }
                )));
            }
        };
        linears.insert(
            id,
            LinearMask {
                shape: kept.shape,
                keep,
            },
        );
    }
    Ok((
        Masks {
            info: parsed.mask,
            linears,
        },
        parsed.notes,
    ))
}
