//! Mistral: the Llama block (`llama.rs`) with attention limited to a sliding window of
//! `sliding_window` keys when the config names one (Mistral 7B v0.1: 4,096; later versions set
//! none). The window applies in every forward, through the KV cache, and in the relevance
//! backward (the same mask); the cache keeps every key, so memory grows with the context as for
//! Llama.

use super::llama::{Llama, Variant, family};
use super::spec::ArchSpec;

pub(super) const SPEC: ArchSpec = family(
    "Mistral",
    ("mistral", "MistralForCausalLM"),
    // llama.cpp writes Mistral as `llama`, without the window: such files load as Llama.
    None,
    |c, l| Ok(Box::new(Llama::load(c, l, Variant::default())?)),
);
