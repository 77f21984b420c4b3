//! GPT-2: OPT's pre-LayerNorm block (`opt.rs`) with learned positions from 0, GELU (`gelu_new`),
//! a final `ln_f`, a head tied to `wte`, and weights stored as `Conv1D` (`[in, out]`, the
//! transpose of a Linear's) with q, k and v fused in `c_attn`; they are transposed and split on
//! loading, joined and transposed back on export.

use super::config::ModelConfig;
use super::joined::Joined;
use super::layers::{Activation, LayerNorm, Loader, blocks, export_joined};
use super::opt::{Block, Opt};
use super::spec::{ArchSpec, GgufSpec, NeuronParam};
use super::{ArchOps, LinearKind, Param};
use crate::error::{Error, Result};

pub(super) const SPEC: ArchSpec = ArchSpec {
    name: "GPT-2",
    hf_model_type: "gpt2",
    hf_class: "GPT2LMHeadModel",
    // `c_attn_q`, `c_attn_k`, `c_attn_v` are Scalpel's names for `c_attn`'s three blocks.
    linears: &[
        (LinearKind::Q, "attn.c_attn_q"),
        (LinearKind::K, "attn.c_attn_k"),
        (LinearKind::V, "attn.c_attn_v"),
        (LinearKind::O, "attn.c_proj"),
        (LinearKind::Fc1, "mlp.c_fc"),
        (LinearKind::Fc2, "mlp.c_proj"),
    ],
    block_prefix: "transformer.h",
    stored_query: "attn.c_attn",
    neuron_linear: LinearKind::Fc2,
    // `Conv1D` stores `[in, out]`: c_fc's neurons are its columns, c_proj's its rows.
    neuron_params: &[
        NeuronParam {
            name: "mlp.c_fc.weight",
            axis: 1,
            parts: 1,
        },
        NeuronParam {
            name: "mlp.c_fc.bias",
            axis: 0,
            parts: 1,
        },
        NeuronParam {
            name: "mlp.c_proj.weight",
            axis: 0,
            parts: 1,
        },
    ],
    // transformers derives GPT-2's head size from n_embd / n_head.
    head_params: None,
    gguf: Some(GgufSpec {
        arch: "gpt2",
        permuted_qk: false,
        globals: &[
            ("token_embd", "transformer.wte"),
            ("position_embd", "transformer.wpe"),
            ("output_norm", "transformer.ln_f"),
            ("output", "lm_head"),
        ],
        modules: &[
            ("attn_norm", "ln_1"),
            ("attn_qkv", "attn.c_attn"),
            ("attn_output", "attn.c_proj"),
            ("ffn_norm", "ln_2"),
            ("ffn_up", "mlp.c_fc"),
            ("ffn_down", "mlp.c_proj"),
        ],
        // llama.cpp's converter turned the Conv1D matrices into Linears; they are turned back.
        transposed: &["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"],
    }),
    load: |c, l| Ok(Box::new(load(c, l)?)),
};

fn load(c: &ModelConfig, l: &mut Loader) -> Result<Opt> {
    let options = c
        .learned_positions()
        .cloned()
        .ok_or_else(|| Error::Config("GPT-2 options missing".into()))?;
    // `GPT2LMHeadModel` saves `transformer.*`; the original hub files (`GPT2Model`) have no prefix.
    let root = if l.contains("transformer.wte.weight") {
        "transformer."
    } else {
        ""
    };
    let (h, ffn, eps) = (c.hidden_size, c.intermediate_size, c.norm_eps);
    let embed = l.matrix(&format!("{root}wte.weight"), [c.vocab_size, h])?;
    let positions = l.matrix(&format!("{root}wpe.weight"), [c.max_position_embeddings, h])?;
    let mut layers = Vec::with_capacity(c.num_layers);
    for i in 0..c.num_layers {
        let p = format!("{root}h.{i}");
        let attn_norm = LayerNorm::load(l, &format!("{p}.ln_1"), h, eps)?;
        let [q, k, v] = blocks(l.conv1d_linears(&format!("{p}.attn.c_attn"), &[h, h, h], h)?);
        let [out] = blocks(l.conv1d_linears(&format!("{p}.attn.c_proj"), &[h], h)?);
        let mlp_norm = LayerNorm::load(l, &format!("{p}.ln_2"), h, eps)?;
        let [fc1] = blocks(l.conv1d_linears(&format!("{p}.mlp.c_fc"), &[ffn], h)?);
        let [fc2] = blocks(l.conv1d_linears(&format!("{p}.mlp.c_proj"), &[h], ffn)?);
        layers.push(Block {
            attn_norm,
            q,
            k,
            v,
            out,
            mlp_norm,
            fc1,
            fc2,
            qkv: Joined::default(),
        });
    }
    let final_norm = Some(LayerNorm::load(l, &format!("{root}ln_f"), h, eps)?);
    let lm_head = if c.tie_word_embeddings && !l.contains("lm_head.weight") {
        None
    } else {
        Some(l.linear("lm_head", c.vocab_size, h, false)?)
    };
    let mut model = Opt {
        embed,
        positions,
        project_in: None,
        project_out: None,
        layers,
        final_norm,
        lm_head,
        options,
        num_heads: c.num_heads,
        activation: Activation::GeluTanh,
        exporter: parameters,
    };
    model.join_linears();
    Ok(model)
}

/// Names and layouts as `GPT2LMHeadModel` saves them.
fn parameters(m: &Opt) -> Vec<(String, Param)> {
    let mut out = vec![
        (
            "transformer.wte.weight".into(),
            Param::Matrix(m.embed.clone()),
        ),
        (
            "transformer.wpe.weight".into(),
            Param::Matrix(m.positions.clone()),
        ),
    ];
    for (i, b) in m.layers.iter().enumerate() {
        let p = format!("transformer.h.{i}");
        b.attn_norm.export(&format!("{p}.ln_1"), &mut out);
        export_joined(
            &format!("{p}.attn.c_attn"),
            &[&b.q, &b.k, &b.v],
            true,
            &mut out,
        );
        export_joined(&format!("{p}.attn.c_proj"), &[&b.out], true, &mut out);
        b.mlp_norm.export(&format!("{p}.ln_2"), &mut out);
        export_joined(&format!("{p}.mlp.c_fc"), &[&b.fc1], true, &mut out);
        export_joined(&format!("{p}.mlp.c_proj"), &[&b.fc2], true, &mut out);
    }
    if let Some(n) = &m.final_norm {
        n.export("transformer.ln_f", &mut out);
    }
    if let Some(head) = &m.lm_head {
        head.export("lm_head", &mut out);
    }
    out
}
