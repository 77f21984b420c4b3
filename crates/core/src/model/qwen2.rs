//! Qwen2 and Qwen2.5: the Llama block (`llama.rs`) with biases on the q, k and v projections
//! (not on o), RoPE in the half-split layout, tied or untied head. Sliding-window attention
//! (`use_sliding_window`), off in the released checkpoints, is refused when the config turns it on.

use super::llama::{LINEARS, Llama, Variant};
use super::spec::{ArchSpec, GgufSpec, LLAMA_GGUF_GLOBALS, LLAMA_GGUF_MODULES};
use crate::relevance::LinearKind;

pub(super) const SPEC: ArchSpec = ArchSpec {
    name: "Qwen2",
    hf_model_type: "qwen2",
    hf_class: "Qwen2ForCausalLM",
    linears: &LINEARS,
    block_prefix: "model.layers",
    stored_query: "self_attn.q_proj",
    neuron_linear: LinearKind::Down,
    gguf: Some(GgufSpec {
        arch: "qwen2",
        // llama.cpp keeps Qwen2's q/k rows as they are and rotates with the NeoX (half-split) layout.
        permuted_qk: false,
        globals: &LLAMA_GGUF_GLOBALS,
        modules: &LLAMA_GGUF_MODULES,
        transposed: &[],
    }),
    load: |c, l| {
        let variant = Variant {
            qkv_bias: true,
            ..Variant::default()
        };
        Ok(Box::new(Llama::load(c, l, variant)?))
    },
};
