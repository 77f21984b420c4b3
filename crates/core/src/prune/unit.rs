//! What is pruned as one piece: single weights, MLP neurons (a column of down_proj / fc2) or
//! attention heads (a head's block of columns of o_proj / out_proj). Zeroing those input columns
//! removes the unit's whole contribution to the residual stream; the rest of the model is
//! untouched, so neuron and head masks are ordinary weight masks on one Linear per layer.

use crate::error::{Error, Result};
use crate::model::{Architecture, LinearId, LinearKind, Model, ModelConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Granularity {
    /// Every weight of every block Linear.
    #[default]
    Weights,
    /// MLP neurons: the inputs of down_proj (Llama) / fc2 (OPT).
    Neurons,
    /// Attention heads: the inputs of o_proj / out_proj, one head's dimensions at a time.
    Heads,
}

impl Granularity {
    pub const ALL: [Granularity; 3] = [
        Granularity::Weights,
        Granularity::Neurons,
        Granularity::Heads,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Granularity::Weights => "weights",
            Granularity::Neurons => "neurons",
            Granularity::Heads => "heads",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|g| g.name() == lower || g.name().trim_end_matches('s') == lower)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "unknown granularity `{s}` (weights, neurons or heads)"
                ))
            })
    }

    /// The Linear whose input columns are the units (none for single weights).
    pub fn unit_kind(self, architecture: Architecture) -> Option<LinearKind> {
        match (self, architecture) {
            (Granularity::Weights, _) => None,
            (Granularity::Neurons, Architecture::Llama) => Some(LinearKind::Down),
            (Granularity::Neurons, Architecture::Opt) => Some(LinearKind::Fc2),
            (Granularity::Heads, _) => Some(LinearKind::O),
        }
    }

    /// The Linears that scores and masks of this granularity cover, layer by layer.
    pub fn linear_ids(self, model: &Model) -> Vec<LinearId> {
        match self.unit_kind(model.config.architecture) {
            None => model.linear_ids(),
            Some(kind) => (0..model.config.num_layers)
                .map(|layer| LinearId { layer, kind })
                .collect(),
        }
    }

    /// How many components of this granularity `model` has (weights, neurons or heads).
    pub fn total(self, model: &Model) -> Result<u64> {
        self.linear_ids(model)
            .into_iter()
            .map(|id| self.shape(model, id).map(|[r, c]| (r * c) as u64))
            .sum()
    }

    /// Input columns per unit.
    pub fn unit_width(self, config: &ModelConfig) -> usize {
        match self {
            Granularity::Heads => config.head_dim,
            _ => 1,
        }
    }

    /// The shape of scores and masks for Linear `id`: the weight's `[out, in]`, or `[1, units]`.
    pub fn shape(self, model: &Model, id: LinearId) -> Result<[usize; 2]> {
        let [rows, cols] = model.linear_shape(id)?;
        Ok(match self {
            Granularity::Weights => [rows, cols],
            _ => [1, cols / self.unit_width(&model.config)],
        })
    }

    /// A weight keep mask `[rows, units × width]` from a keep mask over units.
    pub fn expand(self, keep: &[u8], rows: usize, width: usize) -> Vec<u8> {
        match self {
            Granularity::Weights => keep.to_vec(),
            _ => {
                let row: Vec<u8> = keep
                    .iter()
                    .flat_map(|&k| std::iter::repeat_n(k, width))
                    .collect();
                row.repeat(rows)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_masks_expand_to_whole_columns() {
        let heads = Granularity::Heads.expand(&[1, 0], 2, 2);
        assert_eq!(heads, vec![1, 1, 0, 0, 1, 1, 0, 0]);
        assert_eq!(Granularity::Neurons.expand(&[0, 1, 1], 1, 1), vec![0, 1, 1]);
        assert_eq!(Granularity::parse("head").unwrap(), Granularity::Heads);
        assert!(Granularity::parse("layers").is_err());
    }
}
