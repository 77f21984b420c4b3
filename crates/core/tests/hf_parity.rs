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

/// `--dtype auto` holds the bf16 and f16 checkpoints as f16 and float32 ones as float32
/// (`weight_dtype` is what the page's device badge shows); f32, f16 and bf16 hold any checkpoint so.
#[test]
fn weights_are_held_in_the_dtype_asked_for() {
    use burn::tensor::DType;
    use scalpel::WeightDtype;
    let cases = [
        ("llama-untied-llama3rope", WeightDtype::Auto, DType::F16),
        ("opt-pre-ln", WeightDtype::Auto, DType::F16),
        ("llama-gqa-tied", WeightDtype::Auto, DType::F32),
        ("llama-untied-llama3rope", WeightDtype::F32, DType::F32),
        ("llama-gqa-tied", WeightDtype::F16, DType::F16),
        ("llama-untied-llama3rope", WeightDtype::Bf16, DType::BF16),
        ("opt-pre-ln", WeightDtype::Bf16, DType::BF16),
    ];
    for (name, asked, held) in cases {
        let model = common::load_fixture_model_as(name, &cpu(), asked);
        assert_eq!(model.weight_dtype(), held, "{name} as {asked}");
    }
}

/// 16-bit weights against transformers in float32: f16 (the bf16 and f16 fixtures under
/// `auto`, and every fixture under `f16`) within f16's rounding; bf16 exactly, since its
/// products are float32 products of the widened weight.
#[test]
fn sixteen_bit_weights_match_transformers_within_their_rounding() {
    use common::transformers::{F16_TOLERANCE, LOGIT_FIXTURES, TOLERANCE, check_logits_as};
    use scalpel::WeightDtype;
    for name in LOGIT_FIXTURES {
        for dtype in [WeightDtype::Auto, WeightDtype::F16] {
            let worst = check_logits_as(name, &cpu(), dtype, F16_TOLERANCE);
            println!("{name} as {dtype}: max |Δlogit| {worst:.2e}");
        }
    }
    check_logits_as(
        "llama-untied-llama3rope",
        &cpu(),
        WeightDtype::Bf16,
        TOLERANCE,
    );
}
