//! Logits of the tiny fixture models against Hugging Face `transformers`
//! (tests/fixtures/make_fixtures.py), shared by the CPU and the native GPU tests.

use burn::tensor::Device;
use scalpel::{Logits, WeightDtype};

use super::{fixtures, load_fixture_model_as, max_abs_diff, read_f32, read_ids, to_vec};

/// The fixture models with transformers' logits (reference.safetensors beside them).
pub const LOGIT_FIXTURES: [&str; 4] = [
    "llama-gqa-tied",
    "llama-untied-llama3rope",
    "opt-pre-ln",
    "opt-350m-style",
];

/// Largest |Δlogit| accepted, for a full forward and for every cached step.
pub const TOLERANCE: f32 = 1e-4;

/// Largest |Δlogit| accepted with weights held as f16, against transformers in float32: each
/// generation product rounds its input and output to 11 significant bits (relative error
/// ≤ 2⁻¹¹ ≈ 4.9e-4), and a float32 fixture's weights too; these tiny random models' logits reach
/// about ±6. Measured: the README's "Weight precision".
pub const F16_TOLERANCE: f32 = 2e-2;

/// One forward over the whole reference sequence, then a prefix and one token at a time through
/// the KV cache, each against the reference logits, with float32 weights.
pub fn check_logits(name: &str, device: &Device) {
    check_logits_as(name, device, WeightDtype::F32, TOLERANCE);
}

/// [`check_logits`] with the weights held as `dtype` asks, within `tolerance`; returns the
/// largest |Δlogit| seen.
pub fn check_logits_as(name: &str, device: &Device, dtype: WeightDtype, tolerance: f32) -> f32 {
    let model = load_fixture_model_as(name, device, dtype);
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
        diff <= tolerance,
        "{name} as {dtype}: full forward max |Δlogit| = {diff}"
    );
    let mut worst = diff;

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
            diff <= tolerance,
            "{name} as {dtype}: cached step at position {pos}: max |Δlogit| = {diff}"
        );
        worst = worst.max(diff);
    }
    worst
}
