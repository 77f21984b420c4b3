//! Relevance against references no one here wrote: LXT 2.1's efficient-mode AttnLRP / CP-LRP on
//! Llama (the same LXT rule functions applied to OPT) and plain PyTorch autograd for gradient ×
//! input, all produced by tests/fixtures/make_relevance_fixtures.py.

mod common;

use common::lxt::{RULES, Reference, TINY, check_tiny_models, compare, run};
use common::{load_fixture_model, max_abs_diff, to_vec};
use scalpel::Error;
use scalpel::relevance::{
    MemoryLimits, RelevancePass, RuleSet, Target, Trace, WeightDetail, WeightRelevanceAccumulator,
    explain, kept_block_bytes, memory_needed,
};

#[test]
fn tiny_models_match_lxt_and_autograd() {
    check_tiny_models(&common::cpu());
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
    for name in [
        "llama-gqa-tied",
        "llama-untied-llama3rope",
        "mistral-window4",
        "phi3-fused",
        "qwen3-tied-qknorm",
        "opt-bias-free",
    ] {
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

/// A traced forward keeps each block's internals where the memory limit allows, so that the
/// backward does not run the block again; where it does not, the block is re-run. Both give the
/// same relevance, bit for bit, on every family and rule set.
#[test]
fn kept_and_rerun_blocks_give_the_same_relevance() {
    let ids = [5u32, 19, 33, 47, 64, 7];
    for name in TINY {
        let model = load_fixture_model(name);
        let config = &model.config;
        let (_, pass) = memory_needed(config, ids.len(), true);
        let per_block = kept_block_bytes(config, ids.len());
        let limit = |bytes| MemoryLimits {
            max_buffer_bytes: None,
            max_total_bytes: Some(bytes),
        };
        let budgets = [
            (config.num_layers, MemoryLimits::default()),
            (0, limit(pass)),
            (1, limit(pass + per_block)),
        ];
        for (kept, limits) in &budgets {
            let trace = Trace::new(&model, &ids, limits, true).unwrap();
            assert_eq!(trace.kept_blocks(), *kept, "{name}");
        }
        for rules in RULES {
            let explained: Vec<_> = budgets
                .iter()
                .map(|(_, limits)| {
                    let e = explain(
                        &model,
                        &ids,
                        None,
                        rules,
                        WeightDetail::Full,
                        limits,
                        &mut |_, _| {},
                    )
                    .unwrap();
                    let weights: Vec<Vec<f32>> =
                        e.weights.into_iter().map(|(_, w)| to_vec(w)).collect();
                    (serde_json::to_value(&e.explanation).unwrap(), weights)
                })
                .collect();
            for other in &explained[1..] {
                assert!(other == &explained[0], "{name} {}", rules.name());
            }
        }
    }
}

#[test]
fn accumulated_weight_relevance_is_the_mean_over_samples() {
    let model = load_fixture_model("llama-gqa-tied");
    let samples: [&[u32]; 2] = [&[5, 19, 33, 47, 64], &[7, 8, 90, 3]];
    let scratch = std::env::temp_dir().join(format!("scalpel-acc-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let mut acc = WeightRelevanceAccumulator::new();
    // The same sums kept in a scratch file instead of on the device.
    let mut spilled = WeightRelevanceAccumulator::new();
    spilled.spill_to(&scratch).unwrap();
    assert!(spilled.spilled() && !acc.spilled());
    let mut singles = Vec::new();
    for ids in samples {
        let target = Target::NextTokens { from: 0 };
        for acc in [&mut acc, &mut spilled] {
            let trace = Trace::new(&model, ids, &MemoryLimits::default(), true).unwrap();
            RelevancePass::new(&model, trace, &target, RuleSet::AttnLrp)
                .unwrap()
                .run(acc)
                .unwrap();
            acc.finish_sample();
        }
        singles.push(run(&model, ids, target, RuleSet::AttnLrp).1);
    }
    assert!(
        spilled.spill_to(&scratch).is_err(),
        "sums cannot move once kept"
    );
    assert_eq!(acc.samples(), 2);
    assert_eq!(acc.linears().len(), 2 * 7);
    assert_eq!(spilled.linears(), acc.linears());
    for (i, (id, _)) in singles[0].iter().enumerate() {
        let a = to_vec(singles[0][i].1.clone());
        let b = to_vec(singles[1][i].1.clone());
        let mean: Vec<f32> = a.iter().zip(&b).map(|(x, y)| (x + y) / 2.0).collect();
        let mean_abs: Vec<f32> = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x.abs() + y.abs()) / 2.0)
            .collect();
        let on_device = to_vec(acc.mean(*id).unwrap().unwrap());
        let on_device_abs = to_vec(acc.mean_abs(*id).unwrap().unwrap());
        assert!(max_abs_diff(&on_device, &mean) < 1e-6);
        assert!(max_abs_diff(&on_device_abs, &mean_abs) < 1e-6);
        // float32 sums in the same order: the same numbers, bit for bit.
        assert_eq!(to_vec(spilled.mean(*id).unwrap().unwrap()), on_device);
        assert_eq!(
            to_vec(spilled.mean_abs(*id).unwrap().unwrap()),
            on_device_abs
        );
    }
    drop(spilled);
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "the scratch file is gone"
    );
    std::fs::remove_dir(&scratch).unwrap();
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

/// Relevance with 16-bit weights against LXT in float32. Relevance passes multiply in float32
/// with the weight widened, so the bf16 and f16 fixtures held as f16 (`auto`) match LXT as
/// closely as float32 does; float32 fixtures held as f16 differ by their weights' rounding.
#[test]
fn relevance_with_16_bit_weights_matches_lxt_within_their_rounding() {
    use common::lxt::{F16_TOLERANCE, check_tiny_models_as};
    use scalpel::WeightDtype;
    check_tiny_models_as(&common::cpu(), WeightDtype::Auto, 1e-4);
    let worst = check_tiny_models_as(&common::cpu(), WeightDtype::F16, F16_TOLERANCE);
    println!("worst relative error held as f16: {worst:.2e}");
}
