//! Structured shrink: a model with MLP neurons pruned, written without them, computes what the
//! masked model computes, in every family, with fewer parameters; per-layer masks shrink every
//! layer fully, global ones to the widest layer; weight and head masks are refused.

mod common;

use common::*;
use scalpel::export::shrink::shrink;
use scalpel::prune::{Granularity, Group, Masks};
use scalpel::score::Scores;
use scalpel::{Model, WeightDtype};

fn reload(checkpoint: &scalpel::export::shrink::ShrunkCheckpoint) -> Model {
    load_shards(
        &checkpoint.checkpoint.config_json,
        vec![(
            "model.safetensors".into(),
            checkpoint.checkpoint.model_safetensors.clone(),
        )],
        &cpu(),
        WeightDtype::F32,
    )
}

#[test]
fn a_shrunk_model_computes_what_the_masked_one_did() {
    let ids = [5, 19, 33, 47, 64, 78, 93, 110];
    for name in ONE_PER_FAMILY {
        let mut model = load_fixture_model(name);
        let dense = model.config.intermediate_size;
        let scores = Scores::random(&model, Granularity::Neurons, 7).unwrap();
        for (group, sparsity) in [(Group::Layer, 0.5), (Group::Global, 0.3)] {
            let masks = Masks::from_scores(&scores, sparsity, group).unwrap();
            masks.apply(&mut model).unwrap();
            let masked = logits_last(&model, &ids);
            let shrunk =
                pollster::block_on(shrink(&model, &tiny_tokenizer(128), &masks, None)).unwrap();
            let report = &shrunk.report;
            let pruned: usize = report.kept_per_layer.iter().map(|k| dense - k).sum();
            assert_eq!(pruned as u64, masks.report().pruned, "{name} {group:?}");
            let widest = *report.kept_per_layer.iter().max().unwrap();
            assert_eq!(report.intermediate_size, widest, "{name} {group:?}");
            if group == Group::Layer {
                assert_eq!(widest, dense - dense / 2, "{name}: every layer loses half");
                assert_eq!(report.pruned_kept_as_zeros, 0, "{name}");
            }
            assert!(
                report.parameters_after < report.parameters_before,
                "{name} {group:?}"
            );
            let back = reload(&shrunk);
            assert_eq!(back.config.intermediate_size, widest, "{name} {group:?}");
            let got = logits_last(&back, &ids);
            assert_close(&masked, &got, 1e-5, &format!("{name} {group:?}: logits"));
            model.restore_dense();
        }
    }
}

#[test]
fn only_neuron_masks_shrink() {
    let mut model = load_fixture_model("llama-gqa-tied");
    for (granularity, message) in [
        (Granularity::Weights, "prune MLP neurons"),
        (Granularity::Heads, "attention heads"),
    ] {
        let masks = Masks::from_scores(
            &Scores::random(&model, granularity, 1).unwrap(),
            0.5,
            Group::Layer,
        )
        .unwrap();
        masks.apply(&mut model).unwrap();
        let err = pollster::block_on(shrink(&model, &tiny_tokenizer(128), &masks, None))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(message), "{granularity:?}: {err}");
        model.restore_dense();
    }
}
