//! What is scored and pruned as one piece, and which pieces compete. A piece is a single weight,
//! an MLP neuron (a column of down_proj / fc2) or an attention head (a head's block of columns of
//! o_proj / out_proj). Zeroing those input columns removes the unit's whole contribution to the
//! residual stream; the rest of the model is untouched, so neuron and head masks are ordinary
//! weight masks on one Linear per layer. Scoring (`score`) and masking (`prune`) both build on
//! these two choices, so they live below both.

pub mod select;

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
        match self {
            Granularity::Weights => None,
            Granularity::Neurons => Some(architecture.spec().neuron_linear),
            // Every family's output projection reads the heads side by side.
            Granularity::Heads => Some(LinearKind::O),
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
}

/// Which weights compete with each other for survival.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Group {
    /// Each output row of each Linear loses the same fraction (Wanda's group; the default).
    #[default]
    Row,
    /// Each Linear loses the same fraction.
    Layer,
    /// One ranking over every block Linear.
    Global,
    /// Semi-structured: in every `block` consecutive inputs of a row, `keep` survive (2:4, 4:8).
    NofM { keep: usize, block: usize },
}

impl Group {
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "row" | "output" | "per-row" => Ok(Group::Row),
            "layer" | "per-layer" => Ok(Group::Layer),
            "global" => Ok(Group::Global),
            other => {
                let bad = || {
                    Error::InvalidInput(format!(
                        "unknown group `{other}` (row, layer, global, or N:M such as 2:4)"
                    ))
                };
                let (n, m) = other.split_once(':').ok_or_else(bad)?;
                let (keep, block) = (
                    n.parse::<usize>().map_err(|_| bad())?,
                    m.parse::<usize>().map_err(|_| bad())?,
                );
                if keep == 0 || keep >= block {
                    return Err(Error::InvalidInput(format!(
                        "N:M needs 0 < N < M (got {keep}:{block})"
                    )));
                }
                Ok(Group::NofM { keep, block })
            }
        }
    }

    pub fn name(self) -> String {
        match self {
            Group::Row => "row".into(),
            Group::Layer => "layer".into(),
            Group::Global => "global".into(),
            Group::NofM { keep, block } => format!("{keep}:{block}"),
        }
    }

    /// The sparsity an N:M pattern fixes.
    pub fn implied_sparsity(self) -> Option<f64> {
        match self {
            Group::NofM { keep, block } => Some((block - keep) as f64 / block as f64),
            _ => None,
        }
    }
}

impl From<Group> for String {
    fn from(g: Group) -> String {
        g.name()
    }
}

impl TryFrom<String> for Group {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Group::parse(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granularities_parse() {
        assert_eq!(Granularity::parse("head").unwrap(), Granularity::Heads);
        assert!(Granularity::parse("layers").is_err());
    }
}
