//! Logits of the tiny fixture models against Hugging Face `transformers`
//! (tests/fixtures/make_fixtures.py), shared by the CPU and the native GPU tests.

use burn::tensor::Device;
use scalpel::{Logits, Model, WeightDtype};

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
    let positions: Vec<usize> = (0..shape[1]).collect();
    let what = format!("{name} as {dtype}");
    check_logits_at(
        &model,
        &ids,
        &positions,
        4,
        &[(&what, &expected, tolerance)],
    )[0]
}

/// The logits of `model` for `ids` at `positions`, from one forward over the whole sequence and
/// from a forward over `ids[..split]` followed by one token at a time through the KV cache (each
/// step's last position, where it is one of `positions`), against each `(what, logits,
/// tolerance)` reference: its logits hold one vocabulary row per position of `positions`, and no
/// |Δlogit| may exceed its tolerance. Returns the largest |Δlogit| seen against each.
pub fn check_logits_at(
    model: &Model,
    ids: &[u32],
    positions: &[usize],
    split: usize,
    references: &[(&str, &[f32], f32)],
) -> Vec<f32> {
    let vocab = model.config.vocab_size;
    let mut worst = vec![0f32; references.len()];
    let mut check = |how: &str, pos: usize, got: &[f32]| {
        let Some(row) = positions.iter().position(|&p| p == pos) else {
            return;
        };
        for (worst, (what, expected, tolerance)) in worst.iter_mut().zip(references) {
            let diff = max_abs_diff(got, &expected[row * vocab..(row + 1) * vocab]);
            assert!(
                diff <= *tolerance,
                "{what}: {how} at position {pos}: max |Δlogit| = {diff}"
            );
            *worst = worst.max(diff);
        }
    };

    // One forward over the whole sequence.
    let mut cache = model.new_cache();
    let logits = model
        .forward(model.tokens(ids).unwrap(), &mut cache, Logits::All)
        .unwrap();
    let got = to_vec(logits);
    for (pos, row) in got.chunks_exact(vocab).enumerate() {
        check("full forward", pos, row);
    }

    // A prefix, then one token at a time through the cache: each step's last-position logits
    // must equal the reference at that position.
    let mut cache = model.new_cache();
    let first = model
        .forward(
            model.tokens(&ids[..split]).unwrap(),
            &mut cache,
            Logits::Last,
        )
        .unwrap();
    check("cached prefix", split - 1, &to_vec(first));
    for (pos, &id) in ids.iter().enumerate().skip(split) {
        let out = model
            .forward(model.tokens(&[id]).unwrap(), &mut cache, Logits::Last)
            .unwrap();
        check("cached step", pos, &to_vec(out));
    }
    worst
}
