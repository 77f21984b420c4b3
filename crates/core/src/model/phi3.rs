//! Phi-3 (mini, small and medium with the 4k context): the Llama block (`llama.rs`) with q, k and
//! v stored as one `qkv_proj` matrix and gate and up as one `gate_up_proj` (gate first), split on
//! loading and joined on export, and the sliding window its config names (Mistral's masking).
//! Partial rotary embeddings and LongRoPE (the 128k models) are refused by the config reader.

use super::llama::{HEAD_OUT, Llama, NEURON_DOWN, Variant, family, neuron_rows};
use super::spec::{ArchSpec, GgufSpec, HeadBlock, HeadParam, LLAMA_GGUF_GLOBALS};

pub(super) const SPEC: ArchSpec = ArchSpec {
    // The fused matrices are stored under names of their own: q, k, v, gate and up in `linears`
    // are Scalpel's names for their rows (what score, mask and circuit files call them).
    stored_query: "self_attn.qkv_proj",
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
    neuron_params: &[neuron_rows("mlp.gate_up_proj.weight", 2), NEURON_DOWN],
    head_params: Some(&[
        HeadParam {
            name: "self_attn.qkv_proj.weight",
            axis: 0,
            blocks: &[HeadBlock::Query, HeadBlock::KeyValue, HeadBlock::KeyValue],
        },
        HEAD_OUT,
    ]),
    ..family("Phi-3", ("phi3", "Phi3ForCausalLM"), None, |c, l| {
        let variant = Variant {
            fused: true,
            ..Variant::default()
        };
        Ok(Box::new(Llama::load(c, l, variant)?))
    })
};
