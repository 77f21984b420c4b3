//! Llama family (Llama 1/2/3, TinyLlama, SmolLM, Mistral without sliding window): pre-RMSNorm
//! blocks, rotary positions (Hugging Face half-split layout), grouped-query attention, SwiGLU MLP.

use burn::tensor::activation::silu;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::Logits;
use super::config::ModelConfig;
use super::layers::{
    KvCache, Linear, Loader, RmsNorm, causal_attention, embed, keep_positions, merge_heads,
    repeat_kv, split_heads, vocab_logits,
};
use crate::error::Result;

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
}

#[derive(Debug)]
struct Block {
    input_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    post_attention_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl Llama {
    pub fn load(c: &ModelConfig, l: &mut Loader) -> Result<Self> {
        let (h, hd) = (c.hidden_size, c.head_dim);
        let norm = |l: &mut Loader, name: &str| -> Result<RmsNorm> {
            Ok(RmsNorm {
                weight: l.tensor(name, [h])?,
                eps: c.norm_eps,
            })
        };
        let embed = l.tensor("model.embed_tokens.weight", [c.vocab_size, h])?;
        let mut layers = Vec::with_capacity(c.num_layers);
        for i in 0..c.num_layers {
            let p = format!("model.layers.{i}");
            layers.push(Block {
                input_norm: norm(l, &format!("{p}.input_layernorm.weight"))?,
                q: l.linear(&format!("{p}.self_attn.q_proj"), c.num_heads * hd, h, false)?,
                k: l.linear(
                    &format!("{p}.self_attn.k_proj"),
                    c.num_kv_heads * hd,
                    h,
                    false,
                )?,
                v: l.linear(
                    &format!("{p}.self_attn.v_proj"),
                    c.num_kv_heads * hd,
                    h,
                    false,
                )?,
                o: l.linear(&format!("{p}.self_attn.o_proj"), h, c.num_heads * hd, false)?,
                post_attention_norm: norm(l, &format!("{p}.post_attention_layernorm.weight"))?,
                gate: l.linear(&format!("{p}.mlp.gate_proj"), c.intermediate_size, h, false)?,
                up: l.linear(&format!("{p}.mlp.up_proj"), c.intermediate_size, h, false)?,
                down: l.linear(&format!("{p}.mlp.down_proj"), h, c.intermediate_size, false)?,
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
        let rope = Rope::new(c, freq_factors.as_deref());
        Ok(Self {
            embed,
            layers,
            norm: norm_out,
            lm_head,
            rope,
            num_heads: c.num_heads,
            num_kv_heads: c.num_kv_heads,
        })
    }

    pub fn forward(
        &self,
        tokens: Tensor<2, Int>,
        cache: &mut KvCache,
        logits: Logits,
    ) -> Tensor<3> {
        let [_, t] = tokens.dims();
        let start = cache.len();
        let (cos, sin) = self.rope.tables(start, t, &self.embed.device());
        let mut x = embed(&self.embed, tokens);
        for (i, block) in self.layers.iter().enumerate() {
            let h = block.input_norm.forward(x.clone());
            let q = Rope::apply(
                split_heads(block.q.forward(h.clone()), self.num_heads),
                &cos,
                &sin,
            );
            let k = Rope::apply(
                split_heads(block.k.forward(h.clone()), self.num_kv_heads),
                &cos,
                &sin,
            );
            let v = split_heads(block.v.forward(h), self.num_kv_heads);
            let (k, v) = cache.append(i, k, v);
            let n_rep = self.num_heads / self.num_kv_heads;
            let [_, _, _, hd] = q.dims();
            let q = q.mul_scalar(1.0 / (hd as f64).sqrt());
            let attn = causal_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep));
            x = x + block.o.forward(merge_heads(attn));
            let h = block.post_attention_norm.forward(x.clone());
            let mlp = silu(block.gate.forward(h.clone())) * block.up.forward(h);
            x = x + block.down.forward(mlp);
        }
        cache.advance(t);
        let x = self.norm.forward(keep_positions(x, logits));
        vocab_logits(self.lm_head.as_ref(), &self.embed, x)
    }
}

/// Rotary position embedding with Hugging Face's layout: each head's first and second halves
/// form the rotated pairs (`rotate_half`). Tables are computed on the host for just the
/// positions of each forward, so long contexts cost no memory up front.
#[derive(Debug)]
struct Rope {
    inv_freq: Vec<f64>,
}

impl Rope {
    fn new(c: &ModelConfig, freq_factors: Option<&[f32]>) -> Self {
        let half = c.head_dim / 2;
        let mut inv_freq: Vec<f64> = (0..half)
            .map(|i| 1.0 / c.rope_theta.powf(2.0 * i as f64 / c.head_dim as f64))
            .collect();
        if let Some(s) = &c.rope_scaling {
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
        Self { inv_freq }
    }

    /// cos and sin tables `[1, 1, t, head_dim]` for positions `start..start + t`.
    fn tables(&self, start: usize, t: usize, device: &Device) -> (Tensor<4>, Tensor<4>) {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(t * half * 2);
        let mut sin = Vec::with_capacity(t * half * 2);
        for pos in start..start + t {
            for _ in 0..2 {
                for f in &self.inv_freq {
                    // Angles in f32 as Hugging Face computes them, so long positions round alike.
                    let angle = (pos as f32 * *f as f32) as f64;
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
        let shape = [1, 1, t, 2 * half];
        (
            Tensor::from_data(TensorData::new(cos, shape), device),
            Tensor::from_data(TensorData::new(sin, shape), device),
        )
    }

    fn apply(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
        let [b, h, t, d] = x.dims();
        let first = x.clone().slice([0..b, 0..h, 0..t, 0..d / 2]);
        let second = x.clone().slice([0..b, 0..h, 0..t, d / 2..d]);
        let rotated = Tensor::cat(vec![second.neg(), first], 3);
        x * cos.clone() + rotated * sin.clone()
    }
}
