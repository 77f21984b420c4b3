//! What is scored and pruned as one piece, and which pieces compete. A piece is a single weight,
//! an MLP neuron (a column of down_proj / fc2) or an attention head (a head's block of columns of
//! o_proj / out_proj). Zeroing those input columns removes the unit's whole contribution to the
//! residual stream; the rest of the model is untouched, so neuron and head masks are ordinary
//! weight masks on one Linear per layer. Scoring (`score`) and masking (`prune`) both build on
//! these two choices, so they live below both.

pub mod select;

use std::collections::BTreeSet;

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
        LinearSet::all().total(self, model)
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

/// Which kinds of block Linear are scored and pruned: all of them (the default), or only some
/// (`up`, `gate,up`, OPT's `fc1`: the paper corrects repetition in fc1 alone). Linears outside
/// the set are neither ranked nor masked; they stay dense.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct LinearSet(Option<BTreeSet<LinearKind>>);

impl LinearSet {
    /// Every block Linear.
    pub fn all() -> Self {
        Self(None)
    }

    /// Only these kinds.
    pub fn only(kinds: impl IntoIterator<Item = LinearKind>) -> Self {
        Self(Some(kinds.into_iter().collect()))
    }

    pub fn is_all(&self) -> bool {
        self.0.is_none()
    }

    pub fn contains(&self, kind: LinearKind) -> bool {
        self.0.as_ref().is_none_or(|kinds| kinds.contains(&kind))
    }

    /// Reads a comma-separated list of `architecture`'s Linears, each named by its kind (`q`,
    /// `up`, `fc1`), its module (`up_proj`, `mlp.up_proj`) or `all`.
    pub fn parse(s: &str, architecture: Architecture) -> Result<Self> {
        let spec = architecture.spec();
        let mut kinds = BTreeSet::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let lower = name.to_ascii_lowercase();
            if lower == "all" {
                return Ok(Self::all());
            }
            let last = |module: &str| module.rsplit('.').next().unwrap_or(module).to_string();
            let found: Vec<LinearKind> = spec
                .linears
                .iter()
                .filter(|&&(kind, module)| {
                    kind.short_name() == lower || module == lower || last(module) == lower
                })
                .map(|&(kind, _)| kind)
                .collect();
            match found[..] {
                [kind] => {
                    kinds.insert(kind);
                }
                _ => {
                    let names: Vec<String> = spec
                        .linears
                        .iter()
                        .map(|&(kind, module)| format!("{} ({module})", kind.short_name()))
                        .collect();
                    let problem = if found.is_empty() {
                        "has no"
                    } else {
                        "has more than one"
                    };
                    return Err(Error::InvalidInput(format!(
                        "{} {problem} Linear `{name}`: name one or more of {}, or `all`",
                        spec.name,
                        names.join(", ")
                    )));
                }
            }
        }
        if kinds.is_empty() {
            return Err(Error::InvalidInput(
                "no Linear named: give one or more, comma-separated, or `all`".into(),
            ));
        }
        Ok(Self::only(kinds))
    }

    /// The set as `architecture`'s module names (`mlp.up_proj, mlp.gate_proj`), or "all".
    pub fn describe(&self, architecture: Architecture) -> String {
        match &self.0 {
            None => "all".into(),
            Some(kinds) => kinds
                .iter()
                .map(|&k| architecture.spec().module(k).unwrap_or(k.short_name()))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// How many components of `granularity` the Linears of this set hold.
    pub fn total(&self, granularity: Granularity, model: &Model) -> Result<u64> {
        self.linear_ids(granularity, model)?
            .into_iter()
            .map(|id| granularity.shape(model, id).map(|[r, c]| (r * c) as u64))
            .sum()
    }

    /// The Linears of `granularity` in this set, layer by layer; an error when there is none
    /// (neurons live in down_proj / fc2 and heads in o_proj, whatever the set says of others).
    pub fn linear_ids(&self, granularity: Granularity, model: &Model) -> Result<Vec<LinearId>> {
        let ids: Vec<LinearId> = granularity
            .linear_ids(model)
            .into_iter()
            .filter(|id| self.contains(id.kind))
            .collect();
        if ids.is_empty() {
            let architecture = model.config.architecture;
            let unit = granularity
                .unit_kind(architecture)
                .and_then(|k| architecture.spec().module(k))
                .map_or(String::new(), |m| {
                    format!(": {} are the inputs of {m}", granularity.name())
                });
            return Err(Error::InvalidInput(format!(
                "no {} to rank in the Linears {}{unit}",
                granularity.name(),
                self.describe(architecture)
            )));
        }
        Ok(ids)
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
    fn linear_sets_parse_kinds_and_modules() {
        let llama = Architecture::Llama;
        let set = LinearSet::parse("gate, up_proj", llama).unwrap();
        assert_eq!(set, LinearSet::only([LinearKind::Gate, LinearKind::Up]));
        assert_eq!(set.describe(llama), "mlp.gate_proj, mlp.up_proj");
        assert!(LinearSet::parse("all", llama).unwrap().is_all());
        assert_eq!(
            LinearSet::parse("fc1", Architecture::Opt).unwrap(),
            LinearSet::only([LinearKind::Fc1])
        );
        let err = LinearSet::parse("fc1", llama).unwrap_err().to_string();
        assert!(err.contains("up (mlp.up_proj)"), "{err}");
        // GPT-2's attn.c_proj and mlp.c_proj share a last segment: only the full path names one.
        assert!(LinearSet::parse("c_proj", Architecture::Gpt2).is_err());
        assert_eq!(
            LinearSet::parse("mlp.c_proj", Architecture::Gpt2).unwrap(),
            LinearSet::only([LinearKind::Fc2])
        );
        assert!(LinearSet::parse(" , ", llama).is_err());
    }

    #[test]
    fn granularities_parse() {
        assert_eq!(Granularity::parse("head").unwrap(), Granularity::Heads);
        assert!(Granularity::parse("layers").is_err());
    }
}
