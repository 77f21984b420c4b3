//! Llama family (Llama 1/2/3, TinyLlama, SmolLM): pre-RMSNorm
//! blocks, rotary positions (Hugging Face half-split layout), grouped-query attention, SwiGLU MLP.
//! Qwen2 (`qwen2.rs`) runs this block with biases on q, k and v, Qwen3 (`qwen3.rs`) with an
//! RMSNorm on each query and key head.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::Logits;
use super::backward::{
    AttentionInputs, attention_backward, feature_relevance, head_relevance, silu_backward,
};
use super::config::{ModelConfig, RotaryConfig};
use super::elementwise;
use super::joined::Joined;
use super::layers::{
    BlockRun, KvCache, Linear, Loader, Products, RmsNorm, blocks, causal_attention, embed,
    export_joined, keep_positions, merge_heads, output_rows, split_heads, through_blocks,
    vocab_logits,
};
use super::recording::{Kept, Recording};
use super::spec::{
    ArchSpec, GgufSpec, HeadBlock, HeadParam, LLAMA_GGUF_GLOBALS, LLAMA_GGUF_MODULES, LoadFn,
    NeuronParam,
};
use super::{ArchOps, Embedded, LinearInputs, Param, export_linears};
use super::{LinearId, LinearKind, RelevanceSink, RuleSet};
use crate::error::{Error, Result};

/// Where Hugging Face checkpoints keep this block's layers.
const BLOCKS: &str = "model.layers";

/// The block's Linears under their Hugging Face module names, in checkpoint order (Qwen2's too).
pub(super) const LINEARS: [(LinearKind, &str); 7] = [
    (LinearKind::Q, "self_attn.q_proj"),
    (LinearKind::K, "self_attn.k_proj"),
    (LinearKind::V, "self_attn.v_proj"),
    (LinearKind::O, "self_attn.o_proj"),
    (LinearKind::Gate, "mlp.gate_proj"),
    (LinearKind::Up, "mlp.up_proj"),
    (LinearKind::Down, "mlp.down_proj"),
];

pub(super) const SPEC: ArchSpec = family(
    "Llama",
    ("llama", "LlamaForCausalLM"),
    // llama.cpp interleaves Llama's q/k rows for its rotation.
    Some(("llama", true)),
    |c, l| Ok(Box::new(Llama::load(c, l, Variant::default())?)),
);

/// A parameter whose rows are the MLP neurons (`parts` blocks of them when fused).
pub(super) const fn neuron_rows(name: &'static str, parts: usize) -> NeuronParam {
    NeuronParam {
        name,
        axis: 0,
        parts,
    }
}

/// down_proj: its input columns are the MLP neurons.
pub(super) const NEURON_DOWN: NeuronParam = NeuronParam {
    name: "mlp.down_proj.weight",
    axis: 1,
    parts: 1,
};

const LLAMA_NEURONS: [NeuronParam; 3] = [
    neuron_rows("mlp.gate_proj.weight", 1),
    neuron_rows("mlp.up_proj.weight", 1),
    NEURON_DOWN,
];

/// A parameter with one slice per head along `axis`, all of one kind.
const fn heads(name: &'static str, axis: usize, block: &'static [HeadBlock; 1]) -> HeadParam {
    HeadParam {
        name,
        axis,
        blocks: block,
    }
}

/// o_proj: its input columns are the query heads' outputs.
pub(super) const HEAD_OUT: HeadParam = heads("self_attn.o_proj.weight", 1, &[HeadBlock::Query]);

/// Qwen2's q/k/v biases are listed too: a family without them never meets the names.
const LLAMA_HEADS: [HeadParam; 7] = [
    heads("self_attn.q_proj.weight", 0, &[HeadBlock::Query]),
    heads("self_attn.q_proj.bias", 0, &[HeadBlock::Query]),
    heads("self_attn.k_proj.weight", 0, &[HeadBlock::KeyValue]),
    heads("self_attn.k_proj.bias", 0, &[HeadBlock::KeyValue]),
    heads("self_attn.v_proj.weight", 0, &[HeadBlock::KeyValue]),
    heads("self_attn.v_proj.bias", 0, &[HeadBlock::KeyValue]),
    HEAD_OUT,
];

/// The descriptor of a family that runs this block under Hugging Face's module names: its name,
/// its `model_type` and transformers class, llama.cpp's architecture for it (with the Llama-style
/// tensor names) and whether llama.cpp interleaved its q/k rows, and its loader.
pub(super) const fn family(
    name: &'static str,
    (hf_model_type, hf_class): (&'static str, &'static str),
    gguf: Option<(&'static str, bool)>,
    load: LoadFn,
) -> ArchSpec {
    ArchSpec {
        name,
        hf_model_type,
        hf_class,
        linears: &LINEARS,
        block_prefix: BLOCKS,
        stored_query: "self_attn.q_proj",
        neuron_linear: LinearKind::Down,
        neuron_params: &LLAMA_NEURONS,
        head_params: Some(&LLAMA_HEADS),
        gguf: match gguf {
            Some((arch, permuted_qk)) => Some(GgufSpec {
                arch,
                permuted_qk,
                globals: &LLAMA_GGUF_GLOBALS,
                modules: &LLAMA_GGUF_MODULES,
                transposed: &[],
            }),
            None => None,
        },
        load,
    }
}

/// What a family built on this block adds to it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Variant {
    /// Biases on the q, k and v projections (Qwen2).
    pub qkv_bias: bool,
    /// An RMSNorm over each query and key head before RoPE (Qwen3's `q_norm`, `k_norm`).
    pub qk_norm: bool,
    /// q, k and v stored as one matrix `qkv_proj`, gate and up as `gate_up_proj` (Phi-3); they
    /// are split on loading and joined again on export.
    pub fused: bool,
}

#[derive(Debug)]
pub struct Llama {
    embed: Tensor<2>,
    layers: Vec<Block>,
    norm: RmsNorm,
    /// `None` when the head is tied to the embedding.
    lm_head: Option<Linear>,
    rope: Rope,
    num_heads: usize,
    num_kv_heads: usize,
    /// Mistral's sliding window: each query sees itself and this many keys minus one before it.
    window: Option<usize>,
    /// Exported as Phi-3's fused matrices.
    fused: bool,
}

#[derive(Debug)]
struct Block {
    input_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    /// Qwen3's per-head norms of the queries and keys.
    qk_norms: Option<(RmsNorm, RmsNorm)>,
    post_attention_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
    /// q, k and v as one product on a GPU.
    qkv: Joined,
    /// gate and up as one product on a GPU.
    gate_up: Joined,
}

block_linears!(Block { Q => q, K => k, V => v, O => o, Gate => gate, Up => up, Down => down });

impl Block {
    /// Joins the Linears that share an input where they are not joined (see `joined.rs`).
    fn join(&mut self, max_entries: usize) {
        self.qkv
            .join([&mut self.q, &mut self.k, &mut self.v], max_entries);
        self.gate_up
            .join([&mut self.gate, &mut self.up], max_entries);
    }

    /// Drops the join `kind` is part of: its weight is about to change.
    fn unjoin(&mut self, kind: LinearKind) {
        use LinearKind::*;
        match kind {
            Q | K | V => self.qkv.unjoin(),
            Gate | Up => self.gate_up.unjoin(),
            _ => {}
        }
    }
}

impl Llama {
    /// Loads the weights of the block as `variant` shapes it.
    pub(super) fn load(c: &ModelConfig, l: &mut Loader, variant: Variant) -> Result<Self> {
        let (h, hd) = (c.hidden_size, c.head_dim);
        let rotary = c.rotary().ok_or_else(|| {
            Error::Config(format!(
                "a {:?} config without rotary settings",
                c.architecture
            ))
        })?;
        let qkv_bias = variant.qkv_bias;
        let sized_norm = |l: &mut Loader, name: &str, size: usize| -> Result<RmsNorm> {
            Ok(RmsNorm {
                weight: l.tensor(name, [size])?,
                eps: c.norm_eps,
            })
        };
        let norm = |l: &mut Loader, name: &str| sized_norm(l, name, h);
        let embed = l.matrix("model.embed_tokens.weight", [c.vocab_size, h])?;
        let mut layers = Vec::with_capacity(c.num_layers);
        let (q_rows, kv_rows, ffn) = (c.num_heads * hd, c.num_kv_heads * hd, c.intermediate_size);
        for i in 0..c.num_layers {
            let p = format!("{BLOCKS}.{i}");
            let input_norm = norm(l, &format!("{p}.input_layernorm.weight"))?;
            let [q, k, v] = if variant.fused {
                blocks(l.fused_linears(
                    &format!("{p}.self_attn.qkv_proj"),
                    &[q_rows, kv_rows, kv_rows],
                    h,
                )?)
            } else {
                [
                    l.linear(&format!("{p}.self_attn.q_proj"), q_rows, h, qkv_bias)?,
                    l.linear(&format!("{p}.self_attn.k_proj"), kv_rows, h, qkv_bias)?,
                    l.linear(&format!("{p}.self_attn.v_proj"), kv_rows, h, qkv_bias)?,
                ]
            };
            let o = l.linear(&format!("{p}.self_attn.o_proj"), h, q_rows, false)?;
            let qk_norms = if variant.qk_norm {
                Some((
                    sized_norm(l, &format!("{p}.self_attn.q_norm.weight"), hd)?,
                    sized_norm(l, &format!("{p}.self_attn.k_norm.weight"), hd)?,
                ))
            } else {
                None
            };
            let post_attention_norm = norm(l, &format!("{p}.post_attention_layernorm.weight"))?;
            let [gate, up] = if variant.fused {
                blocks(l.fused_linears(&format!("{p}.mlp.gate_up_proj"), &[ffn, ffn], h)?)
            } else {
                [
                    l.linear(&format!("{p}.mlp.gate_proj"), ffn, h, false)?,
                    l.linear(&format!("{p}.mlp.up_proj"), ffn, h, false)?,
                ]
            };
            let down = l.linear(&format!("{p}.mlp.down_proj"), h, ffn, false)?;
            layers.push(Block {
                input_norm,
                q,
                k,
                v,
                o,
                qk_norms,
                post_attention_norm,
                gate,
                up,
                down,
                qkv: Joined::default(),
                gate_up: Joined::default(),
            });
        }
        let norm_out = norm(l, "model.norm.weight")?;
        // Some tied checkpoints still store `lm_head.weight`; an untied one must.
        let lm_head = if c.tie_word_embeddings && !l.contains("lm_head.weight") {
            None
        } else {
            Some(l.linear("lm_head", c.vocab_size, h, false)?)
        };
        // llama.cpp stores Llama 3.1's frequency factors as a tensor instead of config values.
        let freq_factors = if l.contains("rope_freqs.weight") {
            Some(l.host("rope_freqs.weight", &[hd / 2])?.data)
        } else {
            None
        };
        let rope = Rope::new(rotary, hd, freq_factors.as_deref());
        let mut model = Self {
            embed,
            layers,
            norm: norm_out,
            lm_head,
            rope,
            num_heads: c.num_heads,
            num_kv_heads: c.num_kv_heads,
            window: rotary.sliding_window,
            fused: variant.fused,
        };
        model.join_linears();
        Ok(model)
    }

    /// The final norm and the LM head.
    fn head(&self, x: Tensor<3>, products: Products) -> Tensor<3> {
        let x = self.norm.forward(x);
        vocab_logits(self.lm_head.as_ref(), &self.embed, x, products)
    }

    /// Re-runs block `layer` alone on `x` (positions from 0, `positions`' tables), recording
    /// its internals.
    fn rerun(&self, layer: usize, x: Tensor<3>, positions: &Positions) -> (Tensor<3>, BlockActs) {
        let mut cache = KvCache::new(self.layers.len());
        let (out, acts) = self.block(
            &self.layers[layer],
            x,
            positions,
            &mut cache,
            layer,
            BlockRun::Record,
        );
        (out, acts.expect("recording was requested"))
    }

    /// What every block of a forward of `t` new positions after what `cache` holds shares
    /// (pass [`KvCache::EMPTY`] for positions from 0).
    fn positions(&self, cache: &KvCache, t: usize) -> Positions {
        let device = self.embed.device();
        let (cos, signed_sin) = self.rope.tables(&cache.row_starts(), t, &device);
        let query_scale = 1.0 / (cos.dims()[3] as f32).sqrt();
        let scales = [query_scale]
            .repeat(self.num_heads)
            .into_iter()
            .chain([1.0].repeat(self.num_kv_heads))
            .collect::<Vec<_>>();
        let qk_scales = Tensor::from_data(
            TensorData::new(scales, [1, self.num_heads + self.num_kv_heads, 1, 1]),
            &device,
        );
        Positions {
            cos,
            signed_sin,
            mask: cache.mask(t, self.window, &device),
            qk_scales,
        }
    }

    /// One decoder block; with `record`, also returns what its backward needs.
    fn block(
        &self,
        block: &Block,
        x: Tensor<3>,
        positions: &Positions,
        cache: &mut KvCache,
        layer: usize,
        run: BlockRun,
    ) -> (Tensor<3>, Option<BlockActs>) {
        let (record, products) = run.parts();
        let h_attn = block.input_norm.forward(x.clone());
        let joined_qkv = match block.qk_norms {
            None => block.qkv.product(h_attn.clone(), run),
            Some(_) => None,
        };
        let (q_scaled, k, v, qk_proj) = match joined_qkv {
            Some(qkv) => {
                let (q_scaled, k, v) = self.joined_attention_inputs(qkv, positions);
                (q_scaled, k, v, None)
            }
            None => self.attention_inputs(block, h_attn.clone(), positions, run),
        };
        let (k_all, v_all) = cache.append(layer, k.clone(), v.clone());
        let attn = merge_heads(causal_attention(
            q_scaled.clone(),
            k_all,
            v_all,
            positions.mask.as_ref(),
        ));
        let x_mid = x + block.o.apply(attn.clone(), products);
        let h_mlp = block.post_attention_norm.forward(x_mid.clone());
        let [gate, up] = block
            .gate_up
            .apply([&block.gate, &block.up], h_mlp.clone(), run);
        let hidden = elementwise::silu(gate.clone()) * up.clone();
        let out = x_mid.clone() + block.down.apply(hidden.clone(), products);
        let acts = record.then_some(BlockActs {
            h_attn,
            qk_proj,
            attention: AttentionInputs { q_scaled, k, v },
            attn,
            x_mid,
            h_mlp,
            gate,
            up,
            hidden,
        });
        (out, acts)
    }

    /// The scaled queries, keys and values `[b, heads, t, d]` of `h` (the normed input) through
    /// the block's q, k and v (one joined product where `run` allows, see `joined.rs`); also the
    /// q and k projections where per-head norms follow them (a relevance pass's backward needs
    /// them).
    #[allow(clippy::type_complexity)]
    fn attention_inputs(
        &self,
        block: &Block,
        h: Tensor<3>,
        positions: &Positions,
        run: BlockRun,
    ) -> (
        Tensor<4>,
        Tensor<4>,
        Tensor<4>,
        Option<(Tensor<3>, Tensor<3>)>,
    ) {
        let [q_proj, k_proj, v_proj] = block.qkv.apply([&block.q, &block.k, &block.v], h, run);
        let hd = q_proj.dims()[2] / self.num_heads;
        let (q_normed, k_normed) = match &block.qk_norms {
            Some((q_norm, k_norm)) => (
                q_norm
                    .forward(head_rows(q_proj.clone(), hd))
                    .reshape(q_proj.dims()),
                k_norm
                    .forward(head_rows(k_proj.clone(), hd))
                    .reshape(k_proj.dims()),
            ),
            None => (q_proj.clone(), k_proj.clone()),
        };
        // Scaled right after RoPE, so that fusion folds the scaling into RoPE's kernel (any
        // unfusable op between them would end the fused block).
        let q_scaled = Rope::apply(
            split_heads(q_normed, self.num_heads),
            &positions.cos,
            &positions.signed_sin,
        )
        .mul_scalar(1.0 / (hd as f64).sqrt());
        let k = Rope::apply(
            split_heads(k_normed, self.num_kv_heads),
            &positions.cos,
            &positions.signed_sin,
        );
        let v = split_heads(v_proj, self.num_kv_heads);
        let qk_proj = block.qk_norms.is_some().then_some((q_proj, k_proj));
        (q_scaled, k, v, qk_proj)
    }

    /// [`Self::attention_inputs`] from the joined q, k and v product `[b, t, (heads + 2 · kv_heads) · d]`:
    /// q and k lie side by side there, so one RoPE turns both (one half-swap kernel instead of
    /// two), and the queries' scaling rides in the same fused kernel as a per-head factor.
    fn joined_attention_inputs(
        &self,
        qkv: Tensor<3>,
        positions: &Positions,
    ) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let [b, t, width] = qkv.dims();
        let (heads, kv_heads) = (self.num_heads, self.num_kv_heads);
        let hd = width / (heads + 2 * kv_heads);
        let qk_width = (heads + kv_heads) * hd;
        let qk = split_heads(
            qkv.clone().slice([0..b, 0..t, 0..qk_width]),
            heads + kv_heads,
        );
        let turned =
            Rope::apply(qk, &positions.cos, &positions.signed_sin) * positions.qk_scales.clone();
        let q_scaled = turned.clone().slice([0..b, 0..heads, 0..t, 0..hd]);
        let k = turned.slice([0..b, heads..heads + kv_heads, 0..t, 0..hd]);
        let v = split_heads(qkv.slice([0..b, 0..t, qk_width..width]), kv_heads);
        (q_scaled, k, v)
    }
}

/// `[b, t, heads * d]` as `[b, t * heads, d]`: a row per position and head, what a per-head
/// norm spans.
fn head_rows(x: Tensor<3>, d: usize) -> Tensor<3> {
    let [b, t, width] = x.dims();
    x.reshape([b, t * (width / d), d])
}

/// The RoPE tables and the causal mask of one forward's positions, shared by its blocks (and
/// kept for a relevance pass's backward).
#[derive(Clone)]
struct Positions {
    cos: Tensor<4>,
    signed_sin: Tensor<4>,
    mask: Option<Tensor<4>>,
    /// `[1, heads + kv_heads, 1, 1]`: `1/√d` for each query head, 1 for each key head (the
    /// queries' scaling when q and k are turned together: `joined_attention_inputs`).
    qk_scales: Tensor<4>,
}

/// A block's internals, recorded for its backward.
struct BlockActs {
    h_attn: Tensor<3>,
    /// The q and k projections before their per-head norms (Qwen3 only).
    qk_proj: Option<(Tensor<3>, Tensor<3>)>,
    attention: AttentionInputs,
    /// Merged head outputs (the input of o_proj).
    attn: Tensor<3>,
    x_mid: Tensor<3>,
    h_mlp: Tensor<3>,
    gate: Tensor<3>,
    up: Tensor<3>,
    /// `silu(gate) ⊙ up`, the MLP neurons (the input of down_proj).
    hidden: Tensor<3>,
}

impl ArchOps for Llama {
    fn forward(
        &self,
        tokens: Tensor<2, Int>,
        cache: &mut KvCache,
        logits: Logits,
        mut recording: Option<&mut Recording>,
    ) -> Tensor<3> {
        let [_, t] = tokens.dims();
        let products = Products::traced(recording.is_some());
        let positions = self.positions(cache, t);
        if let Some(r) = recording.as_deref_mut() {
            r.set_shared(Kept::new(positions.clone()));
        }
        let x = embed(&self.embed, tokens);
        let x = through_blocks(self.layers.len(), x, products, recording, |i, x, run| {
            let (out, acts) = self.block(&self.layers[i], x, &positions, cache, i, run);
            (out, acts.map(Kept::new))
        });
        cache.advance(t);
        self.head(keep_positions(x, logits), products)
    }

    fn linear(&self, id: LinearId) -> Option<&Linear> {
        self.layers.get(id.layer)?.linear(id.kind)
    }

    fn linear_mut(&mut self, id: LinearId) -> Option<&mut Linear> {
        let block = self.layers.get_mut(id.layer)?;
        block.unjoin(id.kind);
        block.linear_mut(id.kind)
    }

    fn join_linears(&mut self) {
        // No larger than the token embedding, which already fits in one GPU binding.
        let max_entries = self.embed.dims().iter().product();
        for block in &mut self.layers {
            block.join(max_entries);
        }
    }

    fn block_linear_inputs(&self, layer: usize, x: Tensor<3>) -> (Tensor<3>, LinearInputs) {
        let [_, t, _] = x.dims();
        let (out, a) = self.rerun(layer, x, &self.positions(&KvCache::EMPTY, t));
        use LinearKind::*;
        let inputs: LinearInputs = vec![
            (&[Q, K, V], a.h_attn),
            (&[O], a.attn),
            (&[Gate, Up], a.h_mlp),
            (&[Down], a.hidden),
        ];
        (out, inputs)
    }

    fn parameters(&self) -> Vec<(String, Param)> {
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            Param::Matrix(self.embed.clone()),
        )];
        for (i, b) in self.layers.iter().enumerate() {
            let p = format!("{BLOCKS}.{i}");
            b.input_norm
                .export(&format!("{p}.input_layernorm.weight"), &mut out);
            if self.fused {
                let qkv = format!("{p}.self_attn.qkv_proj");
                export_joined(&qkv, &[&b.q, &b.k, &b.v], false, &mut out);
                b.o.export(&format!("{p}.self_attn.o_proj"), &mut out);
                let gate_up = format!("{p}.mlp.gate_up_proj");
                export_joined(&gate_up, &[&b.gate, &b.up], false, &mut out);
                b.down.export(&format!("{p}.mlp.down_proj"), &mut out);
            } else {
                export_linears(&p, &LINEARS, |k| b.linear(k), &mut out);
            }
            if let Some((q_norm, k_norm)) = &b.qk_norms {
                q_norm.export(&format!("{p}.self_attn.q_norm.weight"), &mut out);
                k_norm.export(&format!("{p}.self_attn.k_norm.weight"), &mut out);
            }
            b.post_attention_norm
                .export(&format!("{p}.post_attention_layernorm.weight"), &mut out);
        }
        self.norm.export("model.norm.weight", &mut out);
        if let Some(head) = &self.lm_head {
            head.export("lm_head", &mut out);
        }
        if let Some(factors) = &self.rope.freq_factors {
            let t = Tensor::from_data(
                TensorData::new(factors.clone(), [factors.len()]),
                &self.embed.device(),
            );
            out.push(("rope_freqs.weight".into(), Param::Vector(t)));
        }
        out
    }

    fn head_rows(&self, tokens: Tensor<1, Int>) -> Tensor<2> {
        output_rows(self.lm_head.as_ref(), &self.embed, tokens)
    }

    fn head_input(&self, x: Tensor<3>) -> Tensor<3> {
        self.norm.forward(x)
    }

    fn head_input_backward(&self, x: &Tensor<3>, g: Tensor<3>, rules: RuleSet) -> Tensor<3> {
        self.norm.backward(x, g, rules)
    }

    fn block_backward(
        &self,
        layer: usize,
        recording: &mut Recording,
        g: Tensor<3>,
        rules: RuleSet,
        sink: &mut dyn RelevanceSink,
    ) -> Result<Tensor<3>> {
        let block = &self.layers[layer];
        let (x, rope, a) = recording.block_parts(
            layer,
            |t| self.positions(&KvCache::EMPTY, t),
            |x, rope| self.rerun(layer, x, rope).1,
        );
        let x = &x;
        let id = |kind| LinearId { layer, kind };

        // MLP: down, then gate ⊙ up (uniform rule halves both), SiLU (identity rule).
        let g_hidden = block
            .down
            .backward(&a.hidden, g.clone(), id(LinearKind::Down), sink)?;
        sink.neurons(layer, feature_relevance(&a.hidden, &g_hidden))?;
        let act = elementwise::silu(a.gate.clone());
        let (g_act, g_up) = match rules {
            RuleSet::AttnLrp => (
                Some(g_hidden.clone() * a.up.clone().div_scalar(2.0)),
                g_hidden * act.div_scalar(2.0),
            ),
            // CP-LRP holds the gate constant: nothing flows into gate_proj.
            RuleSet::CpLrp => (None, g_hidden * act),
            RuleSet::Gradient => (Some(g_hidden.clone() * a.up.clone()), g_hidden * act),
        };
        let g_gate = g_act.map(|g| silu_backward(&a.gate, g, rules));
        let g_h_mlp = block
            .gate
            .backward_or_zero(&a.h_mlp, g_gate, id(LinearKind::Gate), sink)?
            + block
                .up
                .backward(&a.h_mlp, g_up, id(LinearKind::Up), sink)?;
        let g_mid = g + block.post_attention_norm.backward(&a.x_mid, g_h_mlp, rules);

        // Attention: o_proj, then the attention matmuls, RoPE and the q/k/v projections.
        let g_attn = block
            .o
            .backward(&a.attn, g_mid.clone(), id(LinearKind::O), sink)?;
        sink.heads(layer, head_relevance(&a.attn, &g_attn, self.num_heads))?;
        let grads = attention_backward(&a.attention, g_attn, rules, rope.mask.as_ref());
        let [_, _, _, hd] = a.attention.q_scaled.dims();
        let (cos, sin) = (&rope.cos, &rope.signed_sin);
        let project = |g: Option<Tensor<4>>, scale: f64| {
            g.map(|g| merge_heads(Rope::apply_transposed(g.mul_scalar(scale), cos, sin)))
        };
        let mut g_q = project(grads.q_scaled, 1.0 / (hd as f64).sqrt());
        let mut g_k = project(grads.k, 1.0);
        if let (Some((q_norm, k_norm)), Some((q_proj, k_proj))) = (&block.qk_norms, &a.qk_proj) {
            let back = |norm: &RmsNorm, x: &Tensor<3>, g: Tensor<3>| {
                norm.backward(&head_rows(x.clone(), hd), head_rows(g, hd), rules)
                    .reshape(x.dims())
            };
            g_q = g_q.map(|g| back(q_norm, q_proj, g));
            g_k = g_k.map(|g| back(k_norm, k_proj, g));
        }
        let g_h_attn = block
            .q
            .backward_or_zero(&a.h_attn, g_q, id(LinearKind::Q), sink)?
            + block
                .k
                .backward_or_zero(&a.h_attn, g_k, id(LinearKind::K), sink)?
            + block
                .v
                .backward(&a.h_attn, merge_heads(grads.v), id(LinearKind::V), sink)?;
        Ok(g_mid + block.input_norm.backward(x, g_h_attn, rules))
    }

    fn embeddings(&self, tokens: Tensor<2, Int>) -> Embedded {
        let x = embed(&self.embed, tokens);
        Embedded {
            tokens: x.clone(),
            positions: None,
            block_input: x,
        }
    }

    fn embeddings_backward(&self, g: Tensor<3>) -> (Tensor<3>, Option<Tensor<3>>) {
        (g, None)
    }
}

/// Rotary position embedding with Hugging Face's layout: each head's first and second halves
/// form the rotated pairs (`rotate_half`). Tables are computed on the host for just the
/// positions of each forward, so long contexts cost no memory up front.
#[derive(Debug)]
struct Rope {
    inv_freq: Vec<f64>,
    /// llama.cpp's per-frequency divisors (Llama 3.1 GGUF files), kept for export.
    freq_factors: Option<Vec<f32>>,
}

impl Rope {
    fn new(c: &RotaryConfig, head_dim: usize, freq_factors: Option<&[f32]>) -> Self {
        let half = head_dim / 2;
        let mut inv_freq: Vec<f64> = (0..half)
            .map(|i| 1.0 / c.theta.powf(2.0 * i as f64 / head_dim as f64))
            .collect();
        if let Some(s) = &c.scaling {
            let low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
            let high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
            for f in &mut inv_freq {
                let wavelen = 2.0 * std::f64::consts::PI / *f;
                if wavelen > low_wavelen {
                    *f /= s.factor;
                } else if wavelen >= high_wavelen {
                    let smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor)
                        / (s.high_freq_factor - s.low_freq_factor);
                    *f = (1.0 - smooth) * *f / s.factor + smooth * *f;
                }
            }
        }
        if let Some(factors) = freq_factors {
            for (f, k) in inv_freq.iter_mut().zip(factors) {
                *f /= *k as f64;
            }
        }
        Self {
            inv_freq,
            freq_factors: freq_factors.map(<[f32]>::to_vec),
        }
    }

    /// cos and signed sin tables `[rows, 1, t, head_dim]` for positions `start..start + t` of
    /// each row's `start` in `starts`: the sin table's first half is negated, so
    /// `rotate_half(x) ⊙ sin = swap_halves(x) ⊙ signed_sin`.
    fn tables(&self, starts: &[usize], t: usize, device: &Device) -> (Tensor<4>, Tensor<4>) {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(starts.len() * t * half * 2);
        let mut sin = Vec::with_capacity(starts.len() * t * half * 2);
        for pos in starts.iter().flat_map(|&start| start..start + t) {
            for sign in [-1.0, 1.0] {
                for f in &self.inv_freq {
                    // Angles in f32 as Hugging Face computes them, so long positions round alike.
                    let angle = (pos as f32 * *f as f32) as f64;
                    cos.push(angle.cos() as f32);
                    sin.push(sign * angle.sin() as f32);
                }
            }
        }
        let shape = [starts.len(), 1, t, 2 * half];
        (
            Tensor::from_data(TensorData::new(cos, shape), device),
            Tensor::from_data(TensorData::new(sin, shape), device),
        )
    }

    /// `x cos + rotate_half(x) sin`, with `rotate_half([a, b]) = [-b, a]` on each head's halves
    /// (the sign lives in the table, the swap is one kernel).
    fn apply(x: Tensor<4>, cos: &Tensor<4>, signed_sin: &Tensor<4>) -> Tensor<4> {
        let swapped = Self::swap_halves(x.clone());
        x * cos.clone() + swapped * signed_sin.clone()
    }

    /// The transpose of [`Rope::apply`], which carries gradients back: `g cos + rotate_halfᵀ(g sin)`
    /// with `rotate_halfᵀ([a, b]) = [b, -a]`, which is `swap_halves(g ⊙ signed_sin)`.
    fn apply_transposed(g: Tensor<4>, cos: &Tensor<4>, signed_sin: &Tensor<4>) -> Tensor<4> {
        let rotated = Self::swap_halves(g.clone() * signed_sin.clone());
        g * cos.clone() + rotated
    }

    /// `[a, b] → [b, a]` on each head's halves.
    fn swap_halves(x: Tensor<4>) -> Tensor<4> {
        let [b, h, t, d] = x.dims();
        x.reshape([b, h, t, 2, d / 2])
            .flip([3])
            .reshape([b, h, t, d])
    }
}
