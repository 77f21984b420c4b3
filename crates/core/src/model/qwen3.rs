//! Qwen3 (dense): the Llama block (`llama.rs`) with an RMSNorm over each query and key head
//! before RoPE (`q_norm`, `k_norm`), no biases, a head width of its own (`head_dim`, 128 in the
//! released models, not `hidden_size / heads`), tied or untied head. Sliding-window attention is
//! refused when the config turns it on.

use super::llama::{Llama, Variant, family};
use super::spec::ArchSpec;

pub(super) const SPEC: ArchSpec = family(
    "Qwen3",
    ("qwen3", "Qwen3ForCausalLM"),
    // Like Qwen2: rows as transformers has them, NeoX (half-split) rotation.
    Some(("qwen3", false)),
    |c, l| {
        let variant = Variant {
            qk_norm: true,
            ..Variant::default()
        };
        Ok(Box::new(Llama::load(c, l, variant)?))
    },
);
