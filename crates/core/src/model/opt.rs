//! OPT (Meta's Open Pre-trained Transformers): learned positions offset by 2, LayerNorm before
//! (most sizes) or after (350m) each sub-block, ReLU MLP, biases everywhere, and optional
//! `project_in`/`project_out` when the embedding is narrower than the hidden size.

use burn::tensor::activation::relu;
use burn::tensor::{Int, Tensor, TensorData};

use super::Logits;
use super::config::{ModelConfig, OptOptions};
use super::layers::{
    KvCache, LayerNorm, Linear, Loader, causal_attention, embed, keep_positions, merge_heads,
    split_heads, vocab_logits,
};
use crate::error::{Error, Result};

#[derive(Debug)]
pub struct Opt {
    embed: Tensor<2>,
    positions: Tensor<2>,
    project_in: Option<Linear>,
    project_out: Option<Linear>,
    layers: Vec<Block>,
    final_norm: Option<LayerNorm>,
    lm_head: Option<Linear>,
    options: OptOptions,
    num_heads: usize,
}

#[derive(Debug)]
struct Block {
    attn_norm: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    mlp_norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl Opt {
    pub fn load(c: &ModelConfig, l: &mut Loader) -> Result<Self> {
        let o = c
            .opt
            .clone()
            .ok_or_else(|| Error::Config("OPT options missing".into()))?;
        // Checkpoints name the decoder `model.decoder.*` (OPTForCausalLM) or `decoder.*` (OPTModel).
        let root = if l.contains("model.decoder.embed_tokens.weight") {
            "model.decoder"
        } else {
            "decoder"
        };
        let (h, e, bias) = (c.hidden_size, o.word_embed_proj_dim, o.enable_bias);
        let embed = l.tensor(&format!("{root}.embed_tokens.weight"), [c.vocab_size, e])?;
        let positions = l.tensor(
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
        Ok(Self {
            embed,
            positions,
            project_in,
            project_out,
            layers,
            final_norm,
            lm_head,
            options: o,
            num_heads: c.num_heads,
        })
    }

    pub fn forward(
        &self,
        tokens: Tensor<2, Int>,
        cache: &mut KvCache,
        logits: Logits,
    ) -> Tensor<3> {
        let [_, t] = tokens.dims();
        let device = self.embed.device();
        let start = cache.len();
        let mut x = embed(&self.embed, tokens);
        if let Some(p) = &self.project_in {
            x = p.forward(x);
        }
        let pos_ids: Vec<i64> = (start..start + t)
            .map(|p| (p + self.options.position_offset) as i64)
            .collect();
        let pos_ids = Tensor::<1, Int>::from_data(TensorData::new(pos_ids, [t]), &device);
        x = x + self.positions.clone().select(0, pos_ids).unsqueeze::<3>();
        let pre_ln = self.options.do_layer_norm_before;
        for (i, block) in self.layers.iter().enumerate() {
            let h_in = if pre_ln {
                block.attn_norm.forward(x.clone())
            } else {
                x.clone()
            };
            let [_, _, d] = h_in.dims();
            let head_dim = d / self.num_heads;
            let q = split_heads(block.q.forward(h_in.clone()), self.num_heads)
                .mul_scalar(1.0 / (head_dim as f64).sqrt());
            let k = split_heads(block.k.forward(h_in.clone()), self.num_heads);
            let v = split_heads(block.v.forward(h_in), self.num_heads);
            let (k, v) = cache.append(i, k, v);
            x = x + block.out.forward(merge_heads(causal_attention(q, k, v)));
            if !pre_ln {
                x = block.attn_norm.forward(x);
            }
            let h_in = if pre_ln {
                block.mlp_norm.forward(x.clone())
            } else {
                x.clone()
            };
            x = x + block.fc2.forward(relu(block.fc1.forward(h_in)));
            if !pre_ln {
                x = block.mlp_norm.forward(x);
            }
        }
        cache.advance(t);
        let mut x = keep_positions(x, logits);
        if let Some(n) = &self.final_norm {
            x = n.forward(x);
        }
        if let Some(p) = &self.project_out {
            x = p.forward(x);
        }
        vocab_logits(self.lm_head.as_ref(), &self.embed, x)
    }
}
