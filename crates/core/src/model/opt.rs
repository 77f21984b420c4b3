//! OPT (Meta's Open Pre-trained Transformers): learned positions offset by 2, LayerNorm before
//! (most sizes) or after (350m) each sub-block, ReLU MLP, biases everywhere, and optional
//! `project_in`/`project_out` when the embedding is narrower than the hidden size.

use burn::tensor::{Int, Tensor, TensorData};

use super::Logits;
use super::backward::{AttentionInputs, attention_backward, feature_relevance, head_relevance};
use super::config::{ModelConfig, OptOptions};
use super::joined::Joined;
use super::layers::{
    Activation, BlockRun, KvCache, LayerNorm, Linear, Loader, Products, causal_attention,
    causal_mask, embed, keep_positions, merge_heads, output_rows, split_heads, through_blocks,
    vocab_logits,
};
use super::precision::widened;
use super::recording::{Kept, Recording};
use super::spec::{ArchSpec, NeuronParam};
use super::{ArchOps, Embedded, LinearInputs, Param, export_linears};
use super::{LinearId, LinearKind, RelevanceSink, RuleSet};
use crate::error::{Error, Result};

pub(super) const SPEC: ArchSpec = ArchSpec {
    name: "OPT",
    hf_model_type: "opt",
    hf_class: "OPTForCausalLM",
    linears: &[
        (LinearKind::Q, "self_attn.q_proj"),
        (LinearKind::K, "self_attn.k_proj"),
        (LinearKind::V, "self_attn.v_proj"),
        (LinearKind::O, "self_attn.out_proj"),
        (LinearKind::Fc1, "fc1"),
        (LinearKind::Fc2, "fc2"),
    ],
    block_prefix: "model.decoder.layers",
    stored_query: "self_attn.q_proj",
    neuron_linear: LinearKind::Fc2,
    neuron_params: &[
        NeuronParam {
            name: "fc1.weight",
            axis: 0,
            parts: 1,
        },
        NeuronParam {
            name: "fc1.bias",
            axis: 0,
            parts: 1,
        },
        NeuronParam {
            name: "fc2.weight",
            axis: 1,
            parts: 1,
        },
    ],
    // transformers derives OPT's head size from hidden_size / heads.
    head_params: None,
    // llama.cpp defines no OPT architecture.
    gguf: None,
    load: |c, l| Ok(Box::new(Opt::load(c, l)?)),
};

/// A decoder with learned positions, LayerNorms and biased Linears: OPT, and GPT-2 (`gpt2.rs`),
/// which builds one with its own names, activation and export.
#[derive(Debug)]
pub struct Opt {
    pub(super) embed: Tensor<2>,
    pub(super) positions: Tensor<2>,
    pub(super) project_in: Option<Linear>,
    pub(super) project_out: Option<Linear>,
    pub(super) layers: Vec<Block>,
    pub(super) final_norm: Option<LayerNorm>,
    pub(super) lm_head: Option<Linear>,
    pub(super) options: OptOptions,
    pub(super) num_heads: usize,
    pub(super) activation: Activation,
    /// Every parameter under the family's checkpoint names.
    pub(super) exporter: fn(&Opt) -> Vec<(String, Param)>,
}

#[derive(Debug)]
pub(super) struct Block {
    pub(super) attn_norm: LayerNorm,
    pub(super) q: Linear,
    pub(super) k: Linear,
    pub(super) v: Linear,
    pub(super) out: Linear,
    pub(super) mlp_norm: LayerNorm,
    pub(super) fc1: Linear,
    pub(super) fc2: Linear,
    /// q, k and v as one product on a GPU.
    pub(super) qkv: Joined,
}

block_linears!(Block { Q => q, K => k, V => v, O => out, Fc1 => fc1, Fc2 => fc2 });

impl Opt {
    fn load(c: &ModelConfig, l: &mut Loader) -> Result<Self> {
        let o = c
            .learned_positions()
            .cloned()
            .ok_or_else(|| Error::Config("OPT options missing".into()))?;
        // Checkpoints name the decoder `model.decoder.*` (OPTForCausalLM) or `decoder.*` (OPTModel).
        let root = if l.contains("model.decoder.embed_tokens.weight") {
            "model.decoder"
        } else {
            "decoder"
        };
        let (h, e, bias) = (c.hidden_size, o.word_embed_proj_dim, o.enable_bias);
        let embed = l.matrix(&format!("{root}.embed_tokens.weight"), [c.vocab_size, e])?;
        let positions = l.matrix(
            &format!("{root}.embed_positions.weight"),
            [c.max_position_embeddings + o.position_offset, h],
        )?;
        let (project_in, project_out) = if e != h {
            (
                Some(l.linear(&format!("{root}.project_in"), h, e, false)?),
                Some(l.linear(&format!("{root}.project_out"), e, h, false)?),
            )
        } else {
            (None, None)
        };
        let mut layers = Vec::with_capacity(c.num_layers);
        for i in 0..c.num_layers {
            let p = format!("{root}.layers.{i}");
            layers.push(Block {
                attn_norm: LayerNorm::load(l, &format!("{p}.self_attn_layer_norm"), h, c.norm_eps)?,
                q: l.linear(&format!("{p}.self_attn.q_proj"), h, h, bias)?,
                k: l.linear(&format!("{p}.self_attn.k_proj"), h, h, bias)?,
                v: l.linear(&format!("{p}.self_attn.v_proj"), h, h, bias)?,
                out: l.linear(&format!("{p}.self_attn.out_proj"), h, h, bias)?,
                mlp_norm: LayerNorm::load(l, &format!("{p}.final_layer_norm"), h, c.norm_eps)?,
                fc1: l.linear(&format!("{p}.fc1"), c.intermediate_size, h, bias)?,
                fc2: l.linear(&format!("{p}.fc2"), h, c.intermediate_size, bias)?,
                qkv: Joined::default(),
            });
        }
        let final_norm = if o.do_layer_norm_before && !o.remove_final_layer_norm {
            Some(LayerNorm::load(
                l,
                &format!("{root}.final_layer_norm"),
                h,
                c.norm_eps,
            )?)
        } else {
            None
        };
        let lm_head = if c.tie_word_embeddings && !l.contains("lm_head.weight") {
            None
        } else {
            Some(l.linear("lm_head", c.vocab_size, e, false)?)
        };
        let mut model = Self {
            embed,
            positions,
            project_in,
            project_out,
            layers,
            final_norm,
            lm_head,
            options: o,
            num_heads: c.num_heads,
            activation: Activation::Relu,
            exporter: Opt::opt_parameters,
        };
        model.join_linears();
        Ok(model)
    }

    /// Token embeddings (through `project_in`) plus learned positions from each row's `start` in
    /// `starts` on (one start for every row, or one per row).
    fn embed_at(&self, tokens: Tensor<2, Int>, starts: &[usize]) -> Embedded {
        let [_, t] = tokens.dims();
        let device = self.embed.device();
        let token_embeds = embed(&self.embed, tokens);
        let x = match &self.project_in {
            Some(p) => p.forward(token_embeds.clone()),
            None => token_embeds.clone(),
        };
        let pos_ids: Vec<i64> = starts
            .iter()
            .flat_map(|&start| start..start + t)
            .map(|p| (p + self.options.position_offset) as i64)
            .collect();
        let ids = pos_ids.len();
        let pos_ids = Tensor::<1, Int>::from_data(TensorData::new(pos_ids, [ids]), &device);
        let positions = widened(self.positions.clone().select(0, pos_ids));
        let positions = positions.reshape([starts.len(), t, self.positions.dims()[1]]);
        Embedded {
            tokens: token_embeds,
            positions: Some(positions.clone()),
            block_input: x + positions,
        }
    }

    /// Re-runs block `layer` alone on `x` (positions from 0, under `mask`), recording its
    /// internals.
    fn rerun(
        &self,
        layer: usize,
        x: Tensor<3>,
        mask: Option<&Tensor<4>>,
    ) -> (Tensor<3>, BlockActs) {
        let mut cache = KvCache::new(self.layers.len());
        let (out, acts) = self.block(
            &self.layers[layer],
            x,
            mask,
            &mut cache,
            layer,
            BlockRun::Record,
        );
        (out, acts.expect("recording was requested"))
    }

    /// The causal mask of a forward over positions `0..t`.
    fn mask(&self, t: usize) -> Option<Tensor<4>> {
        causal_mask(t, t, None, &self.embed.device())
    }

    /// One decoder block (pre- or post-LayerNorm); with `record`, also returns what its
    /// backward needs.
    fn block(
        &self,
        block: &Block,
        x: Tensor<3>,
        mask: Option<&Tensor<4>>,
        cache: &mut KvCache,
        layer: usize,
        run: BlockRun,
    ) -> (Tensor<3>, Option<BlockActs>) {
        let (record, products) = run.parts();
        let pre_ln = self.options.do_layer_norm_before;
        let h_attn = if pre_ln {
            block.attn_norm.forward(x.clone())
        } else {
            x.clone()
        };
        let [_, _, d] = h_attn.dims();
        let head_dim = d / self.num_heads;
        let [q, k, v] = block
            .qkv
            .apply([&block.q, &block.k, &block.v], h_attn.clone(), run);
        let q_scaled = split_heads(q, self.num_heads).mul_scalar(1.0 / (head_dim as f64).sqrt());
        let k = split_heads(k, self.num_heads);
        let v = split_heads(v, self.num_heads);
        let (k_all, v_all) = cache.append(layer, k.clone(), v.clone());
        let attn = merge_heads(causal_attention(q_scaled.clone(), k_all, v_all, mask));
        let attn_sum = x + block.out.apply(attn.clone(), products);
        let x_mid = if pre_ln {
            attn_sum.clone()
        } else {
            block.attn_norm.forward(attn_sum.clone())
        };
        let h_mlp = if pre_ln {
            block.mlp_norm.forward(x_mid.clone())
        } else {
            x_mid.clone()
        };
        let pre_act = block.fc1.apply(h_mlp.clone(), products);
        let hidden = self.activation.forward(pre_act.clone());
        let mlp_sum = x_mid.clone() + block.fc2.apply(hidden.clone(), products);
        let out = if pre_ln {
            mlp_sum.clone()
        } else {
            block.mlp_norm.forward(mlp_sum.clone())
        };
        let acts = record.then_some(BlockActs {
            h_attn,
            attention: AttentionInputs { q_scaled, k, v },
            attn,
            attn_sum,
            x_mid,
            h_mlp,
            pre_act,
            hidden,
            mlp_sum,
        });
        (out, acts)
    }

    /// The final LayerNorm (if any) and `project_out` (if any): the input of the LM head.
    fn head_input(&self, mut x: Tensor<3>) -> Tensor<3> {
        if let Some(n) = &self.final_norm {
            x = n.forward(x);
        }
        if let Some(p) = &self.project_out {
            x = p.forward(x);
        }
        x
    }

    /// Names as `OPTForCausalLM` saves them (`model.decoder.*`), whatever the source used.
    fn opt_parameters(&self) -> Vec<(String, Param)> {
        let root = "model.decoder";
        let mut out = vec![
            (
                format!("{root}.embed_tokens.weight"),
                Param::Matrix(self.embed.clone()),
            ),
            (
                format!("{root}.embed_positions.weight"),
                Param::Matrix(self.positions.clone()),
            ),
        ];
        if let Some(p) = &self.project_in {
            p.export(&format!("{root}.project_in"), &mut out);
        }
        if let Some(p) = &self.project_out {
            p.export(&format!("{root}.project_out"), &mut out);
        }
        for (i, b) in self.layers.iter().enumerate() {
            let p = format!("{root}.layers.{i}");
            b.attn_norm
                .export(&format!("{p}.self_attn_layer_norm"), &mut out);
            export_linears(&p, SPEC.linears, |k| b.linear(k), &mut out);
            b.mlp_norm
                .export(&format!("{p}.final_layer_norm"), &mut out);
        }
        if let Some(n) = &self.final_norm {
            n.export(&format!("{root}.final_layer_norm"), &mut out);
        }
        if let Some(head) = &self.lm_head {
            head.export("lm_head", &mut out);
        }
        out
    }
}

/// A block's internals, recorded for its backward.
struct BlockActs {
    h_attn: Tensor<3>,
    attention: AttentionInputs,
    /// Merged head outputs (the input of out_proj).
    attn: Tensor<3>,
    /// Residual plus attention, before the post-LN norm (equals `x_mid` when pre-LN).
    attn_sum: Tensor<3>,
    x_mid: Tensor<3>,
    h_mlp: Tensor<3>,
    pre_act: Tensor<3>,
    /// `act(fc1(h))`, the MLP neurons (the input of fc2).
    hidden: Tensor<3>,
    /// Residual plus MLP, before the post-LN norm.
    mlp_sum: Tensor<3>,
}

impl ArchOps for Opt {
    fn forward(
        &self,
        tokens: Tensor<2, Int>,
        cache: &mut KvCache,
        logits: Logits,
        mut recording: Option<&mut Recording>,
    ) -> Tensor<3> {
        let [_, t] = tokens.dims();
        let products = Products::traced(recording.is_some());
        let x = self.embed_at(tokens, &cache.row_starts()).block_input;
        let mask = cache.mask(t, None, &self.embed.device());
        if let Some(r) = recording.as_deref_mut() {
            r.set_shared(Kept::new(mask.clone()));
        }
        let x = through_blocks(self.layers.len(), x, products, recording, |i, x, run| {
            let (out, acts) = self.block(&self.layers[i], x, mask.as_ref(), cache, i, run);
            (out, acts.map(Kept::new))
        });
        cache.advance(t);
        let x = self.head_input(keep_positions(x, logits));
        vocab_logits(self.lm_head.as_ref(), &self.embed, x, products)
    }

    fn linear(&self, id: LinearId) -> Option<&Linear> {
        self.layers.get(id.layer)?.linear(id.kind)
    }

    fn linear_mut(&mut self, id: LinearId) -> Option<&mut Linear> {
        let block = self.layers.get_mut(id.layer)?;
        if matches!(id.kind, LinearKind::Q | LinearKind::K | LinearKind::V) {
            block.qkv.unjoin();
        }
        block.linear_mut(id.kind)
    }

    fn join_linears(&mut self) {
        // No larger than the token embedding, which already fits in one GPU binding.
        let max_entries = self.embed.dims().iter().product();
        for b in &mut self.layers {
            b.qkv.join([&mut b.q, &mut b.k, &mut b.v], max_entries);
        }
    }

    fn block_linear_inputs(&self, layer: usize, x: Tensor<3>) -> (Tensor<3>, LinearInputs) {
        let [_, t, _] = x.dims();
        let (out, a) = self.rerun(layer, x, self.mask(t).as_ref());
        use LinearKind::*;
        let inputs: LinearInputs = vec![
            (&[Q, K, V], a.h_attn),
            (&[O], a.attn),
            (&[Fc1], a.h_mlp),
            (&[Fc2], a.hidden),
        ];
        (out, inputs)
    }

    fn parameters(&self) -> Vec<(String, Param)> {
        (self.exporter)(self)
    }

    fn head_rows(&self, tokens: Tensor<1, Int>) -> Tensor<2> {
        output_rows(self.lm_head.as_ref(), &self.embed, tokens)
    }

    fn head_input(&self, x: Tensor<3>) -> Tensor<3> {
        Opt::head_input(self, x)
    }

    fn head_input_backward(&self, x: &Tensor<3>, mut g: Tensor<3>, rules: RuleSet) -> Tensor<3> {
        if let Some(p) = &self.project_out {
            g = p.backward_input(g);
        }
        match &self.final_norm {
            Some(n) => n.backward(x, g, rules),
            None => g,
        }
    }

    fn block_backward(
        &self,
        layer: usize,
        recording: &mut Recording,
        g: Tensor<3>,
        rules: RuleSet,
        sink: &mut dyn RelevanceSink,
    ) -> Result<Tensor<3>> {
        let pre_ln = self.options.do_layer_norm_before;
        let block = &self.layers[layer];
        let (x, mask, a) = recording.block_parts(
            layer,
            |t| self.mask(t),
            |x, mask: &Option<Tensor<4>>| self.rerun(layer, x, mask.as_ref()).1,
        );
        let x = &x;
        let id = |kind| LinearId { layer, kind };

        // MLP (and the post-LN norm after it).
        let g_sum = if pre_ln {
            g
        } else {
            block.mlp_norm.backward(&a.mlp_sum, g, rules)
        };
        let g_hidden = block
            .fc2
            .backward(&a.hidden, g_sum.clone(), id(LinearKind::Fc2), sink)?;
        sink.neurons(layer, feature_relevance(&a.hidden, &g_hidden))?;
        let g_pre = self.activation.backward(&a.pre_act, g_hidden, rules);
        let g_h_mlp = block
            .fc1
            .backward(&a.h_mlp, g_pre, id(LinearKind::Fc1), sink)?;
        let g_mid = if pre_ln {
            g_sum + block.mlp_norm.backward(&a.x_mid, g_h_mlp, rules)
        } else {
            g_sum + g_h_mlp
        };

        // Attention (and the post-LN norm after it).
        let g_attn_sum = if pre_ln {
            g_mid
        } else {
            block.attn_norm.backward(&a.attn_sum, g_mid, rules)
        };
        let g_attn = block
            .out
            .backward(&a.attn, g_attn_sum.clone(), id(LinearKind::O), sink)?;
        sink.heads(layer, head_relevance(&a.attn, &g_attn, self.num_heads))?;
        let grads = attention_backward(&a.attention, g_attn, rules, mask.as_ref());
        let [_, _, _, hd] = a.attention.q_scaled.dims();
        let mut g_h_attn =
            block
                .v
                .backward(&a.h_attn, merge_heads(grads.v), id(LinearKind::V), sink)?;
        for (kind, lin, grad, scale) in [
            (
                LinearKind::Q,
                &block.q,
                grads.q_scaled,
                1.0 / (hd as f64).sqrt(),
            ),
            (LinearKind::K, &block.k, grads.k, 1.0),
        ] {
            let g = grad.map(|g| merge_heads(g.mul_scalar(scale)));
            g_h_attn = g_h_attn + lin.backward_or_zero(&a.h_attn, g, id(kind), sink)?;
        }
        Ok(if pre_ln {
            g_attn_sum + block.attn_norm.backward(x, g_h_attn, rules)
        } else {
            g_attn_sum + g_h_attn
        })
    }

    fn embeddings(&self, tokens: Tensor<2, Int>) -> Embedded {
        self.embed_at(tokens, &[0])
    }

    fn embeddings_backward(&self, g: Tensor<3>) -> (Tensor<3>, Option<Tensor<3>>) {
        let g_tokens = match &self.project_in {
            Some(p) => p.backward_input(g.clone()),
            None => g.clone(),
        };
        (g_tokens, Some(g))
    }
}
