//! Qwen3 (dense): the Llama block (`llama.rs`) with an RMSNorm over each query and key head
//! before RoPE (`q_norm`, `k_norm`), no biases, a head width of its own (`head_dim`, 128 in the
//! released models, not `hidden_size / heads`), tied or untied head. Sliding-window attention is
//! refused when the config turns it on.

use super::llama::{LINEARS, Llama, Variant};
use super::spec::{ArchSpec, GgufSpec, LLAMA_GGUF_GLOBALS, LLAMA_GGUF_MODULES};
use crate::relevance::LinearKind;

pub(super) const SPEC: ArchSpec = ArchSpec {
    name: "Qwen3",
    hf_model_type: "qwen3",
    hf_class: "Qwen3ForCausalLM",
    linears: &LINEARS,
    block_prefix: "model.layers",
    stored_query: "self_attn.q_proj",
    neuron_linear: LinearKind::Down,
    gguf: Some(GgufSpec {
        arch: "qwen3",
        // Like Qwen2: rows as transformers has them, NeoX (half-split) rotation.
        permuted_qk: false,
        globals: &LLAMA_GGUF_GLOBALS,
        modules: &LLAMA_GGUF_MODULES,
        transposed: &[],
    }),
    load: |c, l| {
        let variant = Variant {
            qk_norm: true,
            ..Variant::default()
        };
        Ok(Box::new(Llama::load(c, l, variant)?))
    },
};
