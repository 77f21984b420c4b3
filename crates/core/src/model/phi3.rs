//! Phi-3 (mini, small and medium with the 4k context): the Llama block (`llama.rs`) with q, k and
//! v stored as one `qkv_proj` matrix and gate and up as one `gate_up_proj` (gate first), split on
//! loading and joined on export, and the sliding window its config names (Mistral's masking).
//! Partial rotary embeddings and LongRoPE (the 128k models) are refused by the config reader.

use super::llama::{LINEARS, Llama, Variant};
use super::spec::ArchSpec;
use crate::relevance::LinearKind;

pub(super) const SPEC: ArchSpec = ArchSpec {
    name: "Phi-3",
    hf_model_type: "phi3",
    hf_class: "Phi3ForCausalLM",
    // q, k, v, gate and up are Scalpel's names for the rows of the fused matrices: what score,
    // mask and circuit files call them.
    linears: &LINEARS,
    block_prefix: "model.layers",
    stored_query: "self_attn.qkv_proj",
    neuron_linear: LinearKind::Down,
    // llama.cpp's phi3 files keep the fused matrices under names of their own; not read yet.
    gguf: None,
    load: |c, l| {
        let variant = Variant {
            fused: true,
            ..Variant::default()
        };
        Ok(Box::new(Llama::load(c, l, variant)?))
    },
};
