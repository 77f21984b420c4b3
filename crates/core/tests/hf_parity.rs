//! Logits of tiny random OPT and Llama checkpoints match Hugging Face `transformers`
//! (fixtures from tests/fixtures/make_fixtures.py), for a full forward and token by token
//! through the KV cache.

mod common;

use common::*;
use scalpel::Logits;

const TOLERANCE: f32 = 1e-4;

fn check_model(name: &str) {
    let model = load_fixture_model(name);
    let reference = std::fs::read(
        fixtures()
            .join("models")
            .join(name)
            .join("reference.safetensors"),
    )
    .unwrap();
    let ids = read_ids(&reference, "input_ids");
    let (shape, expected) = read_f32(&reference, "logits");
    let vocab = shape[2];

    // One forward over the whole sequence.
    let mut cache = model.new_cache();
    let logits = model
        .forward(model.tokens(&ids).unwrap(), &mut cache, Logits::All)
        .unwrap();
    let got = to_vec(logits);
    let diff = max_abs_diff(&got, &expected);
    assert!(
        diff <= TOLERANCE,
        "{name}: full forward max |Δlogit| = {diff}"
    );

    // A prefix, then one token at a time through the cache: each step's last-position logits
    // must equal the reference at that position.
    let split = 4;
    let mut cache = model.new_cache();
    let first = model
        .forward(
            model.tokens(&ids[..split]).unwrap(),
            &mut cache,
            Logits::Last,
        )
        .unwrap();
    let mut steps = vec![(split - 1, to_vec(first))];
    for (pos, &id) in ids.iter().enumerate().skip(split) {
        let out = model
            .forward(model.tokens(&[id]).unwrap(), &mut cache, Logits::Last)
            .unwrap();
        steps.push((pos, to_vec(out)));
    }
    for (pos, got) in steps {
        let want = &expected[pos * vocab..(pos + 1) * vocab];
        let diff = max_abs_diff(&got, want);
        assert!(
            diff <= TOLERANCE,
            "{name}: cached step at position {pos}: max |Δlogit| = {diff}"
        );
    }
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
