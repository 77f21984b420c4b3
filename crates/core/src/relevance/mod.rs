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
pub use pass::{
    InputRelevance, MemoryLimits, RelevancePass, Trace, kept_block_bytes, memory_needed,
};
#[cfg(not(target_family = "wasm"))]
pub use spill::Scratch;
pub use target::Target;

pub use crate::model::{LinearId, LinearKind, RelevanceSink, RuleSet, WeightGrad};
