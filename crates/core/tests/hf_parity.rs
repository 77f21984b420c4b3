//! Logits of tiny random OPT and Llama checkpoints match Hugging Face `transformers`
//! (fixtures from tests/fixtures/make_fixtures.py), for a full forward and token by token
//! through the KV cache.

mod common;

use common::cpu;
use common::transformers::check_logits;

fn check_model(name: &str) {
    check_logits(name, &cpu());
}

#[test]
fn llama_gqa_tied_matches_transformers() {
    check_model("llama-gqa-tied");
}

#[test]
fn llama_untied_llama3_rope_bf16_sharded_matches_transformers() {
    check_model("llama-untied-llama3rope");
}

#[test]
fn opt_pre_layernorm_f16_matches_transformers() {
    check_model("opt-pre-ln");
}

#[test]
fn opt_350m_style_post_layernorm_projections_matches_transformers() {
    check_model("opt-350m-style");
}

/// 16-bit checkpoints are widened to float32 on load today, and `weight_dtype` (the page's
/// device badge) says so; keeping them 16-bit is the "full-size models" work.
#[test]
fn half_precision_checkpoints_are_held_as_f32() {
    for name in ["llama-untied-llama3rope", "opt-pre-ln"] {
        let model = common::load_fixture_model_on(name, &cpu());
        assert_eq!(model.weight_dtype(), burn::tensor::DType::F32, "{name}");
    }
}
