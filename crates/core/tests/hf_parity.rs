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

/// 16-bit checkpoints stay 16-bit under `--dtype auto` (and `weight_dtype`, the page's device
/// badge, says so); the parity tests above run on them held that way. `f32` widens them, `f16`
/// narrows a float32 checkpoint.
#[test]
fn weights_are_held_in_the_dtype_asked_for() {
    use burn::tensor::DType;
    use scalpel::WeightDtype;
    let cases = [
        ("llama-untied-llama3rope", WeightDtype::Auto, DType::BF16),
        ("opt-pre-ln", WeightDtype::Auto, DType::F16),
        ("llama-gqa-tied", WeightDtype::Auto, DType::F32),
        ("llama-untied-llama3rope", WeightDtype::F32, DType::F32),
        ("llama-gqa-tied", WeightDtype::F16, DType::F16),
        ("opt-pre-ln", WeightDtype::Bf16, DType::BF16),
    ];
    for (name, asked, held) in cases {
        let model = common::load_fixture_model_as(name, &cpu(), asked);
        assert_eq!(model.weight_dtype(), held, "{name} as {asked}");
    }
}

#[test]
fn float32_fixtures_held_as_f16_match_transformers_within_f16_rounding() {
    for name in ["llama-gqa-tied", "opt-350m-style"] {
        let worst = common::transformers::check_logits_as(
            name,
            &cpu(),
            scalpel::WeightDtype::F16,
            common::transformers::F16_TOLERANCE,
        );
        println!("{name} held as f16: max |Δlogit| {worst:.2e}");
    }
}
