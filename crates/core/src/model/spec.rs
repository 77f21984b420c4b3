//! What the rest of the crate may know about an architecture, held in one descriptor per family
//! (`SPEC` in each family's file). Pruning, score and mask files, export and the GGUF reader
//! ask the descriptor instead of matching on `Architecture`.
//!
//! # Adding an architecture
//!
//! 1. A file `model/<family>.rs` with its forward (through the KV cache), its [`ArchOps`]
//!    (relevance backward built from `backward.rs`, Linear access with its joined products
//!    (`joined.rs`), export) and its `SPEC` (including what shrinking cuts: neuron and head
//!    parameters).
//!    A family that is another one plus a switch (Qwen2 is Llama with q/k/v biases) keeps only
//!    its `SPEC`, its config fields and its `load` in its file and reuses that forward.
//! 2. A variant of `Architecture`, its arm in `Architecture::spec` (`families.rs`) and its
//!    `model_type` in `ModelConfig::from_hf_json` (`from_gguf` finds it by its `GgufSpec`).
//! 3. Fixtures: a tiny random checkpoint in `tests/fixtures/make_fixtures.py` (transformers
//!    logits and hidden states) and its relevance in `make_relevance_fixtures.py` (LXT), then
//!    its rows in `tests/hf_parity.rs` (logits, KV cache, export round trip) and
//!    `tests/relevance.rs` (AttnLRP, CP-LRP and gradient × input against LXT).

use super::ArchOps;
use super::config::ModelConfig;
use super::layers::Loader;
use super::linear_id::LinearKind;
use crate::error::Result;

/// One family's descriptor.
pub struct ArchSpec {
    /// The name printed in errors and reports.
    pub name: &'static str,
    /// What an exported `config.json` says: `model_type` and the transformers class.
    pub hf_model_type: &'static str,
    pub hf_class: &'static str,
    /// The block Linears in checkpoint order, each with its module path inside a block (for
    /// Linears a checkpoint stores fused, the name Scalpel's files give that block of rows).
    pub linears: &'static [(LinearKind, &'static str)],
    /// The module that stores the query projection in a checkpoint (`self_attn.q_proj`, or
    /// Phi-3's fused `self_attn.qkv_proj`): how its weights are stored says how to hold them.
    pub stored_query: &'static str,
    /// Where the decoder blocks live in a Hugging Face checkpoint (`model.layers`).
    pub block_prefix: &'static str,
    /// The Linear whose input columns are the MLP neurons (pruning and circuits by neuron).
    pub neuron_linear: LinearKind,
    /// The checkpoint parameters that hold one slice per MLP neuron: what removing neurons
    /// cuts from a checkpoint (`export::shrink`).
    pub neuron_params: &'static [NeuronParam],
    /// The checkpoint parameters that hold one slice per attention head: what removing heads
    /// cuts from a checkpoint. `None` where the family's config derives the head size from
    /// `hidden_size / heads` (OPT, GPT-2), so that no config can say heads were removed.
    pub head_params: Option<&'static [HeadParam]>,
    /// How llama.cpp stores the family, if Scalpel reads it from GGUF.
    pub gguf: Option<GgufSpec>,
    /// Builds the family's model from a weight source.
    pub(crate) load: LoadFn,
}

/// A checkpoint parameter with one slice per MLP neuron along `axis` of its checkpoint layout.
pub struct NeuronParam {
    /// The parameter inside a block (`mlp.up_proj.weight`).
    pub name: &'static str,
    pub axis: usize,
    /// Neuron-sized blocks along the axis (Phi-3's fused `gate_up_proj`: 2, gate then up).
    pub parts: usize,
}

/// A checkpoint parameter with one slice of `head_dim` entries per attention head along `axis`,
/// in `blocks` (q, k and v stored as one matrix: one block of query heads, then two of key/value
/// heads).
pub struct HeadParam {
    /// The parameter inside a block (`self_attn.o_proj.weight`).
    pub name: &'static str,
    pub axis: usize,
    pub blocks: &'static [HeadBlock],
}

/// Which heads a block of a [`HeadParam`] holds a slice for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadBlock {
    Query,
    /// The key or value heads, which grouped-query attention shares among query heads.
    KeyValue,
}

/// How a family builds its model from a weight source.
pub(crate) type LoadFn = fn(&ModelConfig, &mut Loader) -> Result<Box<dyn ArchOps>>;

/// A family as llama.cpp writes it.
pub struct GgufSpec {
    /// `general.architecture`, also the prefix of the family's metadata keys (`llama.block_count`).
    pub arch: &'static str,
    /// Whether llama.cpp's converter interleaved each head's q/k rows (Llama's rotary layout);
    /// the reader undoes it.
    pub permuted_qk: bool,
    /// Tensors outside the blocks: llama.cpp's name (without `.weight`/`.bias`) and the
    /// checkpoint's.
    pub globals: &'static [(&'static str, &'static str)],
    /// Block tensors: llama.cpp's module (`attn_q`) and the module inside a checkpoint block
    /// (`self_attn.q_proj`, under `block_prefix.N`).
    pub modules: &'static [(&'static str, &'static str)],
    /// Block modules whose matrices the checkpoint stores transposed (GPT-2's `Conv1D`, `[in,
    /// out]`) where llama.cpp stores them as Linears (`[out, in]`).
    pub transposed: &'static [&'static str],
}

/// The Llama-style families' tensors outside the blocks, as llama.cpp names them.
pub(super) const LLAMA_GGUF_GLOBALS: [(&str, &str); 4] = [
    ("token_embd", "model.embed_tokens"),
    ("output_norm", "model.norm"),
    ("output", "lm_head"),
    ("rope_freqs", "rope_freqs"),
];

/// The Llama-style block's tensors, as llama.cpp names them (Qwen3's q/k norms included).
pub(super) const LLAMA_GGUF_MODULES: [(&str, &str); 11] = [
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

impl GgufSpec {
    /// The checkpoint name of llama.cpp's tensor `gguf` in a family whose blocks live under
    /// `block_prefix`; `None` for a tensor the family does not have.
    pub fn checkpoint_name(&self, gguf: &str, block_prefix: &str) -> Option<String> {
        let (module, param) = gguf.rsplit_once('.')?;
        if let Some(&(_, hf)) = self.globals.iter().find(|&&(g, _)| g == module) {
            return Some(format!("{hf}.{param}"));
        }
        let (layer, module) = module.strip_prefix("blk.")?.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        let &(_, hf) = self.modules.iter().find(|&&(g, _)| g == module)?;
        Some(format!("{block_prefix}.{layer}.{hf}.{param}"))
    }

    /// The inverse of [`GgufSpec::checkpoint_name`]: llama.cpp's name of checkpoint tensor
    /// `name` (`model.layers.3.mlp.up_proj.weight` → `blk.3.ffn_up.weight`).
    pub fn gguf_name(&self, name: &str, block_prefix: &str) -> Option<String> {
        let (module, param) = name.rsplit_once('.')?;
        if let Some(&(g, _)) = self.globals.iter().find(|&&(_, hf)| hf == module) {
            return Some(format!("{g}.{param}"));
        }
        let (layer, module) = module
            .strip_prefix(block_prefix)?
            .strip_prefix('.')?
            .split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        let &(g, _) = self.modules.iter().find(|&&(_, hf)| hf == module)?;
        Some(format!("blk.{layer}.{g}.{param}"))
    }
}

impl ArchSpec {
    /// The block Linears' kinds, in checkpoint order.
    pub fn kinds(&self) -> impl Iterator<Item = LinearKind> + '_ {
        self.linears.iter().map(|&(kind, _)| kind)
    }

    /// The module path of `kind` inside a block (`mlp.up_proj`), if the family has that Linear.
    pub fn module(&self, kind: LinearKind) -> Option<&'static str> {
        self.linears
            .iter()
            .find(|&&(k, _)| k == kind)
            .map(|&(_, module)| module)
    }
}

impl std::fmt::Debug for ArchSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}
