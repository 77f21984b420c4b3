//! Relevance against references no one here wrote: LXT 2.1's efficient-mode AttnLRP / CP-LRP on
//! Llama (the same LXT rule functions applied to OPT) and plain PyTorch autograd for gradient ×
//! input, all produced by tests/fixtures/make_relevance_fixtures.py.

mod common;

use common::{fixtures, load_fixture_model, max_abs_diff, read_f32, read_ids, to_vec};
use scalpel::relevance::{
    Explanation, LinearId, MemoryLimits, RelevancePass, RuleSet, Target, Trace, WeightDetail,
    WeightRelevanceAccumulator, explain,
};
use scalpel::{Error, Model};

const TINY: [&str; 5] = [
    "llama-gqa-tied",
    "llama-untied-llama3rope",
    "opt-pre-ln",
    "opt-350m-style",
    "opt-bias-free",
];
const RULES: [RuleSet; 3] = [RuleSet::AttnLrp, RuleSet::CpLrp, RuleSet::Gradient];

struct Reference {
    bytes: Vec<u8>,
    rules: RuleSet,
}

impl Reference {
    fn load(model: &str, rules: RuleSet) -> Self {
        let path = fixtures()
            .join("relevance")
            .join(format!("{model}.{}.safetensors", rules.name()));
        Self {
            bytes: std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            rules,
        }
    }

    fn get(&self, target: &str, what: &str) -> Vec<f32> {
        read_f32(
            &self.bytes,
            &format!("{}.{target}.{what}", self.rules.name()),
        )
        .1
    }

    fn ids(&self) -> Vec<u32> {
        read_ids(&self.bytes, "input_ids")
    }

    fn target(&self, name: &str) -> Target {
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

fn hf_name(model: &Model, id: LinearId) -> String {
    let llama = model.config.architecture == scalpel::Architecture::Llama;
    let root = if llama {
        "model.layers"
    } else {
        "model.decoder.layers"
    };
    format!("{root}.{}.{}", id.layer, id.kind.module(llama))
}

/// `max |a − b| / max |b|`, the tolerance measure of ../shared/docs/lrp.md.
fn rel_err(actual: &[f32], expected: &[f32]) -> f32 {
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    max_abs_diff(actual, expected) / scale
}

fn run(
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
fn compare(model: &Model, name: &str, reference: &Reference, target: &str) -> f32 {
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

#[test]
fn tiny_models_match_lxt_and_autograd() {
    for name in TINY {
        let model = load_fixture_model(name);
        for rules in RULES {
            let reference = Reference::load(name, rules);
            for target in ["token", "contrast", "sequence"] {
                let worst = compare(&model, name, &reference, target);
                assert!(
                    worst <= 1e-4,
                    "{name} {} {target}: relative error {worst:.2e} > 1e-4",
                    rules.name()
                );
            }
        }
    }
}

#[test]
fn smollm2_matches_lxt() {
    let model = common::load_smollm2().model;
    let mut worst = 0f32;
    for rules in RULES {
        let reference = Reference::load("smollm2", rules);
        for target in ["token", "contrast", "sequence"] {
            worst = worst.max(compare(&model, "smollm2", &reference, target));
        }
    }
    println!("SmolLM2 worst relative error over all rule sets and targets: {worst:.2e}");
    assert!(worst <= 1e-4, "SmolLM2 relative error {worst:.2e}");
}

#[test]
fn cp_lrp_conserves_relevance_on_bias_free_models() {
    for name in ["llama-gqa-tied", "llama-untied-llama3rope", "opt-bias-free"] {
        let model = load_fixture_model(name);
        let reference = Reference::load(name, RuleSet::CpLrp);
        for target in ["token", "contrast", "sequence"] {
            let (e, _) = run(
                &model,
                &reference.ids(),
                reference.target(target),
                RuleSet::CpLrp,
            );
            let ratio = e.conservation();
            println!("{name} cp-lrp {target}: Σ R_in / R_out = {ratio:.6}");
            assert!((ratio - 1.0).abs() < 1e-4, "{name} {target}: {ratio}");
            // AttnLRP's softmax rule is not conservative; it is reported, not asserted.
            let (a, _) = run(
                &model,
                &reference.ids(),
                reference.target(target),
                RuleSet::AttnLrp,
            );
            println!(
                "{name} attnlrp {target}: Σ R_in / R_out = {:.4}",
                a.conservation()
            );
        }
    }
}

#[test]
fn accumulated_weight_relevance_is_the_mean_over_samples() {
    let model = load_fixture_model("llama-gqa-tied");
    let samples: [&[u32]; 2] = [&[5, 19, 33, 47, 64], &[7, 8, 90, 3]];
    let mut acc = WeightRelevanceAccumulator::new();
    let mut singles = Vec::new();
    for ids in samples {
        let target = Target::NextTokens { from: 0 };
        let trace = Trace::new(&model, ids, &MemoryLimits::default(), true).unwrap();
        RelevancePass::new(&model, trace, &target, RuleSet::AttnLrp)
            .unwrap()
            .run(&mut acc)
            .unwrap();
        acc.finish_sample();
        singles.push(run(&model, ids, target, RuleSet::AttnLrp).1);
    }
    assert_eq!(acc.samples(), 2);
    assert_eq!(acc.linears().count(), 2 * 7);
    for (i, (id, _)) in singles[0].iter().enumerate() {
        let a = to_vec(singles[0][i].1.clone());
        let b = to_vec(singles[1][i].1.clone());
        let mean: Vec<f32> = a.iter().zip(&b).map(|(x, y)| (x + y) / 2.0).collect();
        let mean_abs: Vec<f32> = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x.abs() + y.abs()) / 2.0)
            .collect();
        assert!(max_abs_diff(&to_vec(acc.mean(*id).unwrap()), &mean) < 1e-6);
        assert!(max_abs_diff(&to_vec(acc.mean_abs(*id).unwrap()), &mean_abs) < 1e-6);
    }
}

#[test]
fn bad_targets_and_limits_are_clear_errors() {
    let model = load_fixture_model("opt-pre-ln");
    let ids = [5, 19, 33];
    let err = |target: Target| {
        explain(
            &model,
            &ids,
            Some(target),
            RuleSet::AttnLrp,
            WeightDetail::None,
            &MemoryLimits::default(),
            &mut |_, _| {},
        )
        .unwrap_err()
        .to_string()
    };
    assert!(
        err(Target::Token {
            position: None,
            token: 128
        })
        .contains("outside the vocabulary")
    );
    assert!(
        err(Target::Token {
            position: Some(3),
            token: 1
        })
        .contains("outside the sequence")
    );
    let limits = MemoryLimits {
        max_buffer_bytes: Some(64),
        max_total_bytes: None,
    };
    let e = explain(
        &model,
        &ids,
        None,
        RuleSet::AttnLrp,
        WeightDetail::None,
        &limits,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("attention scores"), "{e}");
    let empty = explain(
        &model,
        &[],
        None,
        RuleSet::AttnLrp,
        WeightDetail::None,
        &MemoryLimits::default(),
        &mut |_, _| {},
    );
    assert!(empty.is_err());
}
