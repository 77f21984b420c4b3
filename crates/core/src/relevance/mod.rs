//! Relevance (LRP) through OPT and Llama: input tokens, attention heads, MLP neurons and every
//! decoder-block weight, computed as `x ⊙ G` where `G` is a gradient modified by a rule set
//! (docs/relevance-rules.md).
//!
//! The pass is an explicit backward over the model's own blocks: the forward keeps only each
//! block's input, and the backward re-runs one block at a time (the same forward code, asked to
//! record its internals) before propagating through it. Peak memory is therefore one block's
//! working set plus the block inputs, and weight relevance is handed to a [`RelevanceSink`]
//! layer by layer, so it can be accumulated over many samples without keeping gradients around.

mod accumulate;
mod explain;
pub mod heatmap;
mod pass;
#[cfg(not(target_family = "wasm"))]
mod spill;
mod target;

pub use accumulate::{WeightRelevanceAccumulator, WeightSums};
pub use explain::{
    Explained, Explanation, ExplanationCollector, Readback, WeightDetail, WeightSum,
};
#[cfg(not(target_family = "wasm"))]
pub use explain::{explain, greedy_token};
pub use pass::{InputRelevance, MemoryLimits, RelevancePass, Trace, memory_needed};
#[cfg(not(target_family = "wasm"))]
pub use spill::Scratch;
pub use target::Target;

use burn::tensor::Tensor;

use crate::error::Result;
pub use crate::model::{LinearId, LinearKind};

/// How non-linear operations pass the gradient backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuleSet {
    /// AttnLRP (Achtibat et al. 2024), as LXT's efficient mode implements it.
    #[default]
    AttnLrp,
    /// Conservative propagation (Ali et al. 2022): attention weights and the SwiGLU gate are held
    /// constant, so no relevance flows into queries, keys or the gate projection.
    CpLrp,
    /// The plain gradient: relevance becomes gradient × input (a baseline).
    Gradient,
}

impl RuleSet {
    pub fn name(self) -> &'static str {
        match self {
            RuleSet::AttnLrp => "attnlrp",
            RuleSet::CpLrp => "cp-lrp",
            RuleSet::Gradient => "gradient",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "attnlrp" | "attn-lrp" | "lrp" => Some(RuleSet::AttnLrp),
            "cp-lrp" | "cplrp" | "cp" => Some(RuleSet::CpLrp),
            "gradient" | "grad" | "gradient-x-input" | "gxi" => Some(RuleSet::Gradient),
            _ => None,
        }
    }
}

/// Receives the per-layer results of a relevance pass as they are computed (last layer first).
pub trait RelevanceSink {
    /// Whether per-weight relevance is wanted: it costs one extra matrix product per Linear.
    fn wants_weights(&self) -> bool;

    /// `W ⊙ G_W` of one block Linear, `[out, in]`.
    fn weight(&mut self, id: LinearId, relevance: Tensor<2>) -> Result<()>;

    /// Relevance of each MLP neuron of `layer` (the input of down_proj / fc2), summed over tokens.
    fn neurons(&mut self, layer: usize, relevance: Tensor<1>) -> Result<()>;

    /// Relevance of each attention head of `layer` (the input of o_proj / out_proj), summed over
    /// tokens and the head's dimensions.
    fn heads(&mut self, layer: usize, relevance: Tensor<1>) -> Result<()>;
}
