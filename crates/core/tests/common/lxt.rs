//! LXT 2.1 / autograd relevance references (tests/fixtures/make_relevance_fixtures.py) and the
//! comparison of an explanation against them, shared by the CPU and the native GPU tests.

use burn::tensor::Device;

use super::{fixtures, load_fixture_model_as, max_abs_diff, read_f32, read_ids, to_vec};
use scalpel::relevance::{
    Explanation, LinearId, MemoryLimits, RuleSet, Target, WeightDetail, explain,
};
use scalpel::{Model, WeightDtype};

/// The tiny random fixture models every relevance reference exists for.
pub const TINY: [&str; 10] = [
    "gpt2-tied",
    "llama-gqa-tied",
    "llama-untied-llama3rope",
    "mistral-window4",
    "phi3-fused",
    "qwen2-untied",
    "qwen3-tied-qknorm",
    "opt-pre-ln",
    "opt-350m-style",
    "opt-bias-free",
];
pub const RULES: [RuleSet; 3] = [RuleSet::AttnLrp, RuleSet::CpLrp, RuleSet::Gradient];

pub struct Reference {
    pub bytes: Vec<u8>,
    pub rules: RuleSet,
}

impl Reference {
    pub fn load(model: &str, rules: RuleSet) -> Self {
        let path = fixtures()
            .join("relevance")
            .join(format!("{model}.{}.safetensors", rules.name()));
        Self {
            bytes: std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            rules,
        }
    }

    pub fn get(&self, target: &str, what: &str) -> Vec<f32> {
        read_f32(
            &self.bytes,
            &format!("{}.{target}.{what}", self.rules.name()),
        )
        .1
    }

    pub fn ids(&self) -> Vec<u32> {
        read_ids(&self.bytes, "input_ids")
    }

    pub fn target(&self, name: &str) -> Target {
        let t = read_ids(&self.bytes, "targets");
        match name {
            "token" => Target::Token {
                position: None,
                token: t[0],
            },
            "contrast" => Target::Contrast {
                position: None,
                token: t[0],
                foil: t[1],
            },
            _ => Target::NextTokens { from: 0 },
        }
    }
}

pub fn hf_name(model: &Model, id: LinearId) -> String {
    id.checkpoint_name(model.config.architecture)
        .trim_end_matches(".weight")
        .to_string()
}

/// `max |a − b| / max |b|`, the tolerance measure of docs/relevance-rules.md.
pub fn rel_err(actual: &[f32], expected: &[f32]) -> f32 {
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    max_abs_diff(actual, expected) / scale
}

pub fn run(
    model: &Model,
    ids: &[u32],
    target: Target,
    rules: RuleSet,
) -> (Explanation, Vec<(LinearId, burn::tensor::Tensor<2>)>) {
    explain(
        model,
        ids,
        Some(target),
        rules,
        WeightDetail::Full,
        &MemoryLimits::default(),
        &mut |_, _| {},
    )
    .map(|e| (e.explanation, e.weights))
    .unwrap()
}

/// Compares every reported quantity with the reference; returns the worst relative error.
/// Per-weight relevance is compared wherever the reference has it (all of it for the tiny
/// models, the first rows of a few layers for SmolLM2).
pub fn compare(model: &Model, name: &str, reference: &Reference, target: &str) -> f32 {
    let (e, weights) = run(
        model,
        &reference.ids(),
        reference.target(target),
        reference.rules,
    );
    let mut worst = 0f32;
    let mut check = |what: &str, actual: &[f32], expected: &[f32]| {
        let err = rel_err(actual, expected);
        println!(
            "{name} {} {target} {what}: rel err {err:.2e}",
            reference.rules.name()
        );
        worst = worst.max(err);
    };
    check("output", &[e.output], &reference.get(target, "output"));
    check("input", &e.tokens, &reference.get(target, "input"));
    check(
        "neurons",
        &e.neurons.concat(),
        &reference.get(target, "neurons"),
    );
    check("heads", &e.heads.concat(), &reference.get(target, "heads"));
    let sums: Vec<f32> = e.weight_sums.iter().map(|w| w.sum).collect();
    check("weight sums", &sums, &reference.get(target, "weight_sums"));
    let stored = safetensors::SafeTensors::deserialize(&reference.bytes).unwrap();
    for (id, r) in weights {
        let key = format!(
            "{}.{target}.weight.{}",
            reference.rules.name(),
            hf_name(model, id)
        );
        if stored.tensor(&key).is_ok() {
            let expected = read_f32(&reference.bytes, &key).1;
            check(&key, &to_vec(r)[..expected.len()], &expected);
        }
    }
    worst
}

/// Relevance of float32 fixtures held as f16 against LXT in float32: within this share of the
/// reference's largest value (f16 rounds each weight to 11 significant bits). Measured: the
/// README's "Weight precision".
pub const F16_TOLERANCE: f32 = 5e-2;

/// Every tiny model under every rule set and target against its reference on `device`, within
/// 1e-4 of the reference's largest value, with float32 weights.
pub fn check_tiny_models(device: &Device) {
    check_tiny_models_as(device, WeightDtype::F32, 1e-4);
}

/// [`check_tiny_models`] with the weights held as `dtype` asks, within `tolerance` (relative to
/// the reference's largest value); returns the worst relative error seen.
pub fn check_tiny_models_as(device: &Device, dtype: WeightDtype, tolerance: f32) -> f32 {
    let mut worst_of_all = 0f32;
    for name in TINY {
        let model = load_fixture_model_as(name, device, dtype);
        for rules in RULES {
            let reference = Reference::load(name, rules);
            for target in ["token", "contrast", "sequence"] {
                // A contrast between two nearly tied logits cancels almost all of each: rounding
                // the weights moves each logit by about its own share, which is then large next
                // to the difference. Such a contrast is checked in float32 only.
                let margin =
                    reference.get("contrast", "output")[0] / reference.get("token", "output")[0];
                if dtype != WeightDtype::F32 && target == "contrast" && margin.abs() < 0.05 {
                    println!(
                        "{name}: contrast margin {margin:.3} of the logit, checked in float32 only"
                    );
                    continue;
                }
                let worst = compare(&model, name, &reference, target);
                assert!(
                    worst <= tolerance,
                    "{name} {} {target} as {dtype} on {device:?}: relative error {worst:.2e} > {tolerance:.0e}",
                    rules.name()
                );
                worst_of_all = worst_of_all.max(worst);
            }
        }
    }
    worst_of_all
}
