//! The backward of each shared operation under a [`RuleSet`]: what `G` becomes when it passes
//! from an operation's output to its input (docs/relevance-rules.md, table of rules), and the
//! [`RelevanceSink`] the blocks hand their per-layer relevance to. Both live here, below the
//! `relevance` module that drives whole passes, so the model never imports from it.

use burn::tensor::Tensor;

use super::LinearId;
use super::layers::{
    Activation, GELU_A, GELU_C, LayerNorm, Linear, QueryBlock, RmsNorm, attention_probs, gelu_tanh,
    grouped_queries, split_heads,
};
use super::precision::widened;
use crate::error::Result;

/// How non-linear operations pass the gradient backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum RuleSet {
    /// AttnLRP (Achtibat et al. 2024), as LXT's efficient mode implements it.
    #[default]
    #[serde(rename = "attnlrp")]
    AttnLrp,
    /// Conservative propagation (Ali et al. 2022): attention weights and the SwiGLU gate are held
    /// constant, so no relevance flows into queries, keys or the gate projection.
    #[serde(rename = "cp-lrp")]
    CpLrp,
    /// The plain gradient: relevance becomes gradient × input (a baseline).
    #[serde(rename = "gradient")]
    Gradient,
}

impl RuleSet {
    pub fn name(self) -> &'static str {
        match self {
            RuleSet::AttnLrp => "attnlrp",
            RuleSet::CpLrp => "cp-lrp",
            RuleSet::Gradient => "gradient",
        }
    }

    /// Every rule set, in the order the CLI lists them.
    pub const ALL: [RuleSet; 3] = [RuleSet::AttnLrp, RuleSet::CpLrp, RuleSet::Gradient];

    /// Other spellings `parse` accepts besides [`RuleSet::name`].
    pub fn aliases(self) -> &'static [&'static str] {
        match self {
            RuleSet::AttnLrp => &["attn-lrp", "lrp"],
            RuleSet::CpLrp => &["cplrp", "cp"],
            RuleSet::Gradient => &["grad", "gradient-x-input", "gxi"],
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        let s = s.to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|r| r.name() == s || r.aliases().contains(&s.as_str()))
    }
}

/// Receives the per-layer results of a relevance pass as they are computed (last layer first).
pub trait RelevanceSink {
    /// Whether per-weight relevance is wanted: it costs one extra matrix product per Linear.
    fn wants_weights(&self) -> bool;

    /// One block Linear's weight gradient and weight, whose product is its weight relevance.
    fn weight(&mut self, id: LinearId, weight: WeightGrad) -> Result<()>;

    /// Relevance of each MLP neuron of `layer` (the input of down_proj / fc2), summed over tokens.
    fn neurons(&mut self, layer: usize, relevance: Tensor<1>) -> Result<()>;

    /// Relevance of each attention head of `layer` (the input of o_proj / out_proj), summed over
    /// tokens and the head's dimensions.
    fn heads(&mut self, layer: usize, relevance: Tensor<1>) -> Result<()>;
}

/// `G_W` and `W` of one block Linear (`[out, in]`): its weight relevance is `W ⊙ G_W`. They come
/// unmultiplied so that a sink summing over samples can sum `G_W` (and `|G_W|`) alone and multiply
/// once at the end (`Σ W ⊙ G = W ⊙ Σ G`, `Σ |W ⊙ G| = |W| ⊙ Σ |G|`): one pass over the weights per
/// sample fewer.
pub struct WeightGrad {
    /// `G_W = Σ_tokens G_z ⊗ x`, float32.
    pub grad: Tensor<2>,
    /// `W` as the model holds it (a 16-bit weight is not widened here, so keeping it costs nothing).
    pub weight: Tensor<2>,
}

impl WeightGrad {
    /// `W ⊙ G_W`.
    pub fn relevance(self) -> Tensor<2> {
        self.grad * widened(self.weight)
    }
}

/// LXT's guard against dividing by a zero pre-activation in the identity rule.
const IDENTITY_EPS: f64 = 1e-10;

impl Linear {
    /// `G_x = G_z W` (the ordinary gradient under every rule set). When the sink wants weights,
    /// also hands it `W ⊙ G_W` with `G_W = Σ_tokens G_z ⊗ x`.
    pub(crate) fn backward(
        &self,
        x: &Tensor<3>,
        g: Tensor<3>,
        id: LinearId,
        sink: &mut dyn RelevanceSink,
    ) -> Result<Tensor<3>> {
        if sink.wants_weights() {
            let [b, t, d_out] = g.dims();
            let [_, d_in] = self.weight.dims();
            let grad = g
                .clone()
                .reshape([b * t, d_out])
                .transpose()
                .matmul(x.clone().reshape([b * t, d_in]));
            let weight = self.weight.clone();
            sink.weight(id, WeightGrad { grad, weight })?;
        }
        Ok(input_gradient(g, self.weight_f32()))
    }

    /// [`Linear::backward`] where a rule stops the gradient at the output (`None`, CP-LRP's
    /// queries, keys and gate): zero weight relevance and zero input gradient, without the
    /// matrix products.
    pub(crate) fn backward_or_zero(
        &self,
        x: &Tensor<3>,
        g: Option<Tensor<3>>,
        id: LinearId,
        sink: &mut dyn RelevanceSink,
    ) -> Result<Tensor<3>> {
        match g {
            Some(g) => self.backward(x, g, id, sink),
            None => {
                if sink.wants_weights() {
                    let grad = Tensor::zeros(self.weight.dims(), &x.device());
                    let weight = self.weight.clone();
                    sink.weight(id, WeightGrad { grad, weight })?;
                }
                Ok(x.zeros_like())
            }
        }
    }

    /// `G_x = G_z W` for Linears outside the decoder blocks (no weight relevance wanted).
    pub(crate) fn backward_input(&self, g: Tensor<3>) -> Tensor<3> {
        input_gradient(g, self.weight_f32())
    }
}

/// `G_x = G_z W` for a float32 weight `w` `[out, in]`.
fn input_gradient(g: Tensor<3>, w: Tensor<2>) -> Tensor<3> {
    let [b, t, d_out] = g.dims();
    let [_, d_in] = w.dims();
    g.reshape([b * t, d_out]).matmul(w).reshape([b, t, d_in])
}

impl RmsNorm {
    /// LRP: identity on `1/rms` (`G_x = G_y ⊙ γ / rms`); gradient: the full derivative.
    pub(crate) fn backward(&self, x: &Tensor<3>, g: Tensor<3>, rules: RuleSet) -> Tensor<3> {
        let inv_rms = self.inv_rms(x.clone());
        let g_gamma = g * self.weight.clone().unsqueeze::<3>();
        match rules {
            RuleSet::AttnLrp | RuleSet::CpLrp => g_gamma * inv_rms,
            RuleSet::Gradient => {
                // d(x·r)/dx with r = (mean(x²)+eps)^-½: r·g − x·r³·mean(x ⊙ g).
                let proj = (x.clone() * g_gamma.clone()).mean_dim(2);
                let r3 = inv_rms.clone().powi_scalar(3);
                g_gamma * inv_rms - x.clone() * r3 * proj
            }
        }
    }
}

impl LayerNorm {
    /// LRP: σ held constant, the mean-centering stays linear; gradient: the full derivative.
    pub(crate) fn backward(&self, x: &Tensor<3>, g: Tensor<3>, rules: RuleSet) -> Tensor<3> {
        let (var, mean) = x.clone().var_mean_bias(2);
        let inv_std = var.add_scalar(self.eps).sqrt().recip();
        let g_hat = g * self.weight.clone().unsqueeze::<3>();
        let centered = |t: Tensor<3>| t.clone() - t.mean_dim(2);
        match rules {
            RuleSet::AttnLrp | RuleSet::CpLrp => centered(g_hat) * inv_std,
            RuleSet::Gradient => {
                let x_hat = (x.clone() - mean) * inv_std.clone();
                let proj = (g_hat.clone() * x_hat.clone()).mean_dim(2);
                (centered(g_hat) - x_hat * proj) * inv_std
            }
        }
    }
}

/// SiLU: identity rule `G ⊙ silu(x)/(x + 1e-10)` under LRP, the derivative under gradient.
pub(crate) fn silu_backward(x: &Tensor<3>, g: Tensor<3>, rules: RuleSet) -> Tensor<3> {
    let s = super::elementwise::sigmoid(x.clone());
    match rules {
        RuleSet::AttnLrp | RuleSet::CpLrp => g * s * x.clone() / x.clone().add_scalar(IDENTITY_EPS),
        RuleSet::Gradient => {
            let one_minus = s.clone().neg().add_scalar(1.0);
            g * s * (x.clone() * one_minus).add_scalar(1.0)
        }
    }
}

impl Activation {
    /// ReLU: the identity rule and the gradient coincide. GELU: the identity rule
    /// `G ⊙ gelu(x)/(x + 1e-10)` under LRP, the derivative under gradient.
    pub(crate) fn backward(self, x: &Tensor<3>, g: Tensor<3>, rules: RuleSet) -> Tensor<3> {
        match (self, rules) {
            (Activation::Relu, _) => g.mask_fill(x.clone().lower_equal_elem(0.0), 0.0),
            (Activation::GeluTanh, RuleSet::AttnLrp | RuleSet::CpLrp) => {
                g * self.forward(x.clone()) / x.clone().add_scalar(IDENTITY_EPS)
            }
            (Activation::GeluTanh, RuleSet::Gradient) => {
                // d/dx x/2 (1 + tanh u), u = c (x + a x³): (1 + tanh u)/2 + x/2 (1 − tanh² u) c (1 + 3a x²).
                let th = gelu_tanh(x.clone());
                let slope = th.clone().add_scalar(1.0).mul_scalar(0.5)
                    + x.clone().mul_scalar(0.5)
                        * th.powi_scalar(2).neg().add_scalar(1.0)
                        * x.clone()
                            .powi_scalar(2)
                            .mul_scalar(3.0 * GELU_A)
                            .add_scalar(1.0)
                            .mul_scalar(GELU_C);
                g * slope
            }
        }
    }
}

/// What an attention backward needs: queries already scaled by 1/√d, and keys and values
/// before the grouped-query repeat (`[b, heads, t, d]` and `[b, kv_heads, t, d]`).
pub(crate) struct AttentionInputs {
    pub q_scaled: Tensor<4>,
    pub k: Tensor<4>,
    pub v: Tensor<4>,
}

/// Gradients at the attention's scaled queries, keys and values.
pub(crate) struct AttentionGrads {
    pub q_scaled: Option<Tensor<4>>,
    pub k: Option<Tensor<4>>,
    pub v: Tensor<4>,
}

/// Backward of causal softmax attention from `G` at its merged output `[b, t, heads*d]`, under
/// the forward's `mask` ([`causal_mask`]`(t, t, window)`).
///
/// The attention probabilities are recomputed here rather than kept from the forward, so only
/// one layer's `[heads, t, t]` matrix is ever alive. AttnLRP divides the query and key gradients
/// by 4 and the value gradient by 2 (uniform rule on both matmuls); CP-LRP holds the
/// probabilities constant (no query/key gradient, full value gradient).
pub(crate) fn attention_backward(
    inputs: &AttentionInputs,
    g_out: Tensor<3>,
    rules: RuleSet,
    mask: Option<&Tensor<4>>,
) -> AttentionGrads {
    let [_, heads, _, _] = inputs.q_scaled.dims();
    let g = split_heads(g_out, heads);
    let (q, k, v) = (&inputs.q_scaled, &inputs.k, &inputs.v);
    let Some(blocks) = QueryBlock::split(q, k, mask) else {
        return attention_grads(q.clone(), k.clone(), v.clone(), g, rules, mask);
    };
    // Block by block as in the forward ([`QueryBlock`]): the query gradients side by side, the
    // key and value gradients summed over the blocks that see each key.
    let zeros = Tensor::<4>::zeros(k.dims(), &k.device());
    let (mut g_q, mut g_k, mut g_v) = (Vec::new(), zeros.clone(), zeros);
    for block in &blocks {
        let part = attention_grads(
            block.queries(q),
            block.keys(k),
            block.keys(v),
            block.queries(&g),
            rules,
            Some(&block.mask),
        );
        g_v = block.add_to_keys(g_v, part.v);
        if let (Some(g_q_part), Some(g_k_part)) = (part.q_scaled, part.k) {
            g_q.push(g_q_part);
            g_k = block.add_to_keys(g_k, g_k_part);
        }
    }
    let with_qk = !g_q.is_empty();
    AttentionGrads {
        q_scaled: with_qk.then(|| Tensor::cat(g_q, 2)),
        k: with_qk.then_some(g_k),
        v: g_v,
    }
}

/// [`attention_backward`] of queries `q` `[b, heads, t, d]` over keys and values
/// `[b, kv_heads, s, d]` from `g` at their output `[b, heads, t, d]`, in one product.
fn attention_grads(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    g: Tensor<4>,
    rules: RuleSet,
    mask: Option<&Tensor<4>>,
) -> AttentionGrads {
    let [b, heads, t, d] = q.dims();
    let [_, kv_heads, _, _] = k.dims();
    // Grouped as in the forward: query heads sharing a KV head are rows of one product, so the
    // key and value gradients come out summed over each group without a copy per head.
    let q = grouped_queries(q, kv_heads);
    let probs = attention_probs(q.clone(), k.clone(), mask);
    let g = grouped_queries(g, kv_heads);
    let g_v = probs.clone().swap_dims(2, 3).matmul(g.clone());
    if rules == RuleSet::CpLrp {
        return AttentionGrads {
            q_scaled: None,
            k: None,
            v: g_v,
        };
    }
    let g_probs = g.matmul(v.swap_dims(2, 3));
    let g_scores = probs.clone() * (g_probs.clone() - (g_probs * probs).sum_dim(3));
    let g_q = g_scores.clone().matmul(k).reshape([b, heads, t, d]);
    let g_k = g_scores.swap_dims(2, 3).matmul(q);
    match rules {
        RuleSet::AttnLrp => AttentionGrads {
            q_scaled: Some(g_q.div_scalar(4.0)),
            k: Some(g_k.div_scalar(4.0)),
            v: g_v.div_scalar(2.0),
        },
        _ => AttentionGrads {
            q_scaled: Some(g_q),
            k: Some(g_k),
            v: g_v,
        },
    }
}

/// Relevance of each head at the attention output `[b, t, heads*d]`: `Σ_tokens,dims a ⊙ G`.
pub(crate) fn head_relevance(attn: &Tensor<3>, g: &Tensor<3>, heads: usize) -> Tensor<1> {
    let r = split_heads(attn.clone() * g.clone(), heads); // [b, h, t, d]
    let [_, h, _, _] = r.dims();
    r.sum_dim(3).sum_dim(2).sum_dim(0).reshape([h])
}

/// Relevance of each feature of `x` `[b, t, f]` summed over tokens: `Σ_tokens x ⊙ G`.
pub(crate) fn feature_relevance(x: &Tensor<3>, g: &Tensor<3>) -> Tensor<1> {
    let [_, _, f] = x.dims();
    (x.clone() * g.clone()).sum_dim(1).sum_dim(0).reshape([f])
}

/// Relevance of each token of `x` `[b, t, d]` summed over the feature dimension (batch 1).
pub(crate) fn token_relevance(x: &Tensor<3>, g: &Tensor<3>) -> Tensor<1> {
    let [_, t, _] = x.dims();
    (x.clone() * g.clone()).sum_dim(2).reshape([t])
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    use super::*;
    use crate::model::layers::causal_mask;

    /// The blocked attention backward (the CPU's, for long passes) against one product, under
    /// each rule set, with grouped queries, uneven blocks and a sliding window.
    #[test]
    fn blocked_attention_backward_is_one_product() {
        let device = Device::flex();
        for (t, window) in [(150, None), (200, Some(60))] {
            let random =
                |heads| Tensor::<4>::random([2, heads, t, 8], Distribution::Default, &device);
            let inputs = AttentionInputs {
                q_scaled: random(6),
                k: random(2),
                v: random(2),
            };
            let g = Tensor::<3>::random([2, t, 6 * 8], Distribution::Default, &device);
            let mask = causal_mask(t, t, window, &device);
            for rules in RuleSet::ALL {
                let blocked = attention_backward(&inputs, g.clone(), rules, mask.as_ref());
                let whole = attention_grads(
                    inputs.q_scaled.clone(),
                    inputs.k.clone(),
                    inputs.v.clone(),
                    split_heads(g.clone(), 6),
                    rules,
                    mask.as_ref(),
                );
                // Relative to the largest gradient: the blocks sum the key and value gradients
                // in another order than one product does.
                let gap = |a: Tensor<4>, b: Tensor<4>| -> f32 {
                    let scale: f32 = b.clone().abs().max().into_scalar();
                    (a - b).abs().max().into_scalar::<f32>() / scale
                };
                let v_gap = gap(blocked.v, whole.v);
                assert!(v_gap < 1e-5, "{rules:?} {window:?}: v {v_gap}");
                match (blocked.q_scaled, whole.q_scaled, blocked.k, whole.k) {
                    (Some(bq), Some(wq), Some(bk), Some(wk)) => {
                        assert!(gap(bq, wq) < 1e-5, "{rules:?} {window:?}: q");
                        assert!(gap(bk, wk) < 1e-5, "{rules:?} {window:?}: k");
                    }
                    (None, None, None, None) => assert_eq!(rules, RuleSet::CpLrp),
                    _ => panic!("{rules:?}: blocked and whole differ in which gradients exist"),
                }
            }
        }
    }
}
