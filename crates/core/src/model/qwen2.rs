//! Qwen2 and Qwen2.5: the Llama block (`llama.rs`) with biases on the q, k and v projections
//! (not on o), RoPE in the half-split layout, tied or untied head. Sliding-window attention
//! (`use_sliding_window`), off in the released checkpoints, is refused when the config turns it on.

use super::llama::{Llama, Variant, family};
use super::spec::ArchSpec;

pub(super) const SPEC: ArchSpec = family(
    "Qwen2",
    ("qwen2", "Qwen2ForCausalLM"),
    // llama.cpp keeps Qwen2's q/k rows as they are and rotates with the NeoX (half-split) layout.
    Some(("qwen2", false)),
    |c, l| {
        let variant = Variant {
            qkv_bias: true,
            ..Variant::default()
        };
        Ok(Box::new(Llama::load(c, l, variant)?))
    },
);
