//! Phi-3 (mini, small and medium with the 4k context): the Llama block (`llama.rs`) with q, k and
//! v stored as one `qkv_proj` matrix and gate and up as one `gate_up_proj` (gate first), split on
//! loading and joined on export, and the sliding window its config names (Mistral's masking).
//! Partial rotary embeddings and LongRoPE (the 128k models) are refused by the config reader.

use super::llama::{LINEARS, Llama, Variant};
use super::spec::{ArchSpec, GgufSpec, LLAMA_GGUF_GLOBALS};
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
    gguf: Some(GgufSpec {
        arch: "phi3",
        permuted_qk: false,
        globals: &LLAMA_GGUF_GLOBALS,
        // llama.cpp keeps the fused matrices: `attn_qkv`, and `ffn_up` holding gate and up.
        modules: &[
            ("attn_norm", "input_layernorm"),
            ("ffn_norm", "post_attention_layernorm"),
            ("attn_qkv", "self_attn.qkv_proj"),
            ("attn_output", "self_attn.o_proj"),
            ("ffn_up", "mlp.gate_up_proj"),
            ("ffn_down", "mlp.down_proj"),
        ],
        transposed: &[],
    }),
    load: |c, l| {
        let variant = Variant {
            fused: true,
            ..Variant::default()
        };
        Ok(Box::new(Llama::load(c, l, variant)?))
    },
};
