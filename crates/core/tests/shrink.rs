//! Structured shrink: a model with MLP neurons or attention heads pruned, written without them,
//! computes what the masked model computes, in every family, with fewer parameters; per-layer
//! masks shrink every layer fully, global ones to the widest layer; weight masks are refused, and
//! head masks of the families whose config cannot hold fewer heads.

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
            assert_eq!(report.width, widest, "{name} {group:?}");
            assert_eq!(report.unit, Granularity::Neurons);
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
fn a_model_without_its_pruned_heads_computes_what_the_masked_one_did() {
    let ids = [5, 19, 33, 47, 64, 78, 93, 110];
    // Every family once, and a Llama without grouped-query attention.
    for name in ONE_PER_FAMILY
        .into_iter()
        .chain(["llama-untied-llama3rope"])
    {
        let mut model = load_fixture_model(name);
        let (heads, kv_heads) = (model.config.num_heads, model.config.num_kv_heads);
        let shrinkable = model.config.architecture.spec().head_params.is_some();
        let scores = Scores::random(&model, Granularity::Heads, 3).unwrap();
        for (group, sparsity) in [
            (Group::Layer, 0.5),
            (Group::Layer, 0.75),
            (Group::Global, 0.3),
        ] {
            let case = format!("{name} {group:?} {sparsity}");
            let masks = Masks::from_scores(&scores, sparsity, group).unwrap();
            masks.apply(&mut model).unwrap();
            let result = pollster::block_on(shrink(&model, &tiny_tokenizer(128), &masks, None));
            if !shrinkable {
                let err = result.err().unwrap().to_string();
                assert!(err.contains("attention heads of"), "{case}: {err}");
                model.restore_dense();
                continue;
            }
            let masked = logits_last(&model, &ids);
            let shrunk = result.unwrap();
            let report = &shrunk.report;
            assert_eq!(report.unit, Granularity::Heads, "{case}");
            let pruned: usize = report.kept_per_layer.iter().map(|k| heads - k).sum();
            assert_eq!(pruned as u64, masks.report().pruned, "{case}");
            let [dense_kv, kv_written] = report.kv_heads.unwrap();
            assert_eq!(dense_kv, kv_heads, "{case}");
            // Every written key/value head serves the same number of query heads.
            assert_eq!(report.width % kv_written, 0, "{case}");
            assert!(report.width >= *report.kept_per_layer.iter().max().unwrap());
            let padded: usize = report.kept_per_layer.iter().map(|k| report.width - k).sum();
            assert_eq!(report.pruned_kept_as_zeros, padded, "{case}");
            if group == Group::Layer && sparsity == 0.75 {
                // One head per layer: one key/value head serving one query head, whichever
                // group each layer's head was in.
                assert_eq!([report.width, kv_written], [1, 1], "{case}");
            }
            if kv_heads == heads && group == Group::Layer {
                assert_eq!(
                    report.pruned_kept_as_zeros, 0,
                    "{case}: no groups, no padding"
                );
            }
            assert!(
                report.parameters_after <= report.parameters_before,
                "{case}"
            );
            let back = reload(&shrunk);
            assert_eq!(
                [back.config.num_heads, back.config.num_kv_heads],
                [report.width, kv_written],
                "{case}"
            );
            let got = logits_last(&back, &ids);
            assert_close(&masked, &got, 1e-5, &format!("{case}: logits"));
            model.restore_dense();
        }
    }
}

#[test]
fn weight_masks_do_not_shrink() {
    let mut model = load_fixture_model("llama-gqa-tied");
    let masks = Masks::from_scores(
        &Scores::random(&model, Granularity::Weights, 1).unwrap(),
        0.5,
        Group::Layer,
    )
    .unwrap();
    masks.apply(&mut model).unwrap();
    let err = pollster::block_on(shrink(&model, &tiny_tokenizer(128), &masks, None))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("prune MLP neurons or attention heads"),
        "{err}"
    );
}
