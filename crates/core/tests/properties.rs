//! Property tests: dequantization against a straightforward reference of the ggml block formats,
//! masks (any share, group and granularity) undo exactly, pruned exports round-trip bit-exactly,
//! and scores do not depend on the order of the reference samples.

mod common;

use common::*;
use half::f16;
use proptest::prelude::*;
use scalpel::export::export_checkpoint;
use scalpel::io::quant::{GgmlType, dequantize};
use scalpel::prune::{Granularity, Group, Masks};
use scalpel::score::{ScoreMethod, Scores};
use scalpel::{Model, ModelFiles};

/// `cases` per property; failures are reported, not persisted to files beside the sources.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A block scale: any finite f16 (NaN and infinity scales are not real weights).
fn scale() -> impl Strategy<Value = [u8; 2]> {
    (-1000.0f32..1000.0).prop_map(|v| f16::from_f32(v).to_le_bytes())
}

/// ggml's formats, written out from their definitions (ggml-quants.c), one block of 32 at a time.
fn reference_block(ty: GgmlType, b: &[u8]) -> Vec<f32> {
    let h = |i: usize| f16::from_le_bytes([b[i], b[i + 1]]).to_f32();
    let mut y = vec![0f32; 32];
    match ty {
        GgmlType::Q4_0 => {
            let d = h(0);
            for j in 0..16 {
                y[j] = ((b[2 + j] & 0x0F) as i32 - 8) as f32 * d;
                y[j + 16] = ((b[2 + j] >> 4) as i32 - 8) as f32 * d;
            }
        }
        GgmlType::Q4_1 => {
            let (d, m) = (h(0), h(2));
            for j in 0..16 {
                y[j] = (b[4 + j] & 0x0F) as f32 * d + m;
                y[j + 16] = (b[4 + j] >> 4) as f32 * d + m;
            }
        }
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            let q5_1 = ty == GgmlType::Q5_1;
            let (d, m, at) = if q5_1 {
                (h(0), h(2), 4)
            } else {
                (h(0), 0.0, 2)
            };
            let qh = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            let qs = &b[at + 4..at + 20];
            for j in 0..16 {
                let lo = (qs[j] & 0x0F) as u32 | (((qh >> j) & 1) << 4);
                let hi = (qs[j] >> 4) as u32 | (((qh >> (j + 16)) & 1) << 4);
                let (lo, hi) = if q5_1 {
                    (lo as f32 * d + m, hi as f32 * d + m)
                } else {
                    ((lo as i32 - 16) as f32 * d, (hi as i32 - 16) as f32 * d)
                };
                y[j] = lo;
                y[j + 16] = hi;
            }
        }
        GgmlType::Q8_0 => {
            let d = h(0);
            for j in 0..32 {
                y[j] = (b[2 + j] as i8) as f32 * d;
            }
        }
        other => unreachable!("no reference for {other:?}"),
    }
    y
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn block_formats_dequantize_as_defined(
        ty in prop::sample::select(vec![
            GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
        ]),
        blocks in 1usize..5,
        scales in prop::collection::vec((scale(), scale()), 4),
        payload in prop::collection::vec(any::<u8>(), 4 * 34),
    ) {
        let (_, block_bytes) = ty.block_layout();
        let mut data = Vec::new();
        for i in 0..blocks {
            let mut b = payload[i * 34..i * 34 + 34].to_vec();
            b.truncate(block_bytes);
            b.resize(block_bytes, 0);
            b[..2].copy_from_slice(&scales[i].0);
            if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
                b[2..4].copy_from_slice(&scales[i].1);
            }
            data.extend(b);
        }
        let got = dequantize(ty, &data, blocks * 32).unwrap();
        let expected: Vec<f32> = data
            .chunks_exact(block_bytes)
            .flat_map(|b| reference_block(ty, b))
            .collect();
        prop_assert_eq!(got, expected);
    }
}

fn any_group(granularity: Granularity) -> impl Strategy<Value = Group> {
    let groups = match granularity {
        Granularity::Weights => vec![Group::Row, Group::Layer, Group::Global],
        _ => vec![Group::Layer, Group::Global],
    };
    prop::sample::select(groups)
}

fn masks_for(
    model: &Model,
    granularity: Granularity,
    seed: u64,
    share: f64,
    group: Group,
) -> Masks {
    let scores = Scores::random(model, granularity, seed).unwrap();
    Masks::from_scores(&scores, share, group).unwrap()
}

const MODELS: [&str; 3] = ["llama-gqa-tied", "opt-pre-ln", "opt-350m-style"];

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn any_mask_applies_as_dense_times_keep_and_undoes_exactly(
        name in prop::sample::select(MODELS.to_vec()),
        (granularity, group) in prop::sample::select(Granularity::ALL.to_vec())
            .prop_flat_map(|g| (Just(g), any_group(g))),
        seeds in prop::collection::vec(any::<u64>(), 1..3),
        share in 0.0f64..0.99,
    ) {
        let mut model = load_fixture_model(name);
        let ids = [3u32, 17, 5, 9];
        let dense_logits = logits(&model, &ids);
        let dense: Vec<Vec<f32>> = model
            .linear_ids()
            .into_iter()
            .map(|id| to_vec(model.weight(id).unwrap()))
            .collect();
        // Masks in a row: each starts from the dense weights.
        for &seed in &seeds {
            let masks = masks_for(&model, granularity, seed, share, group);
            let report = masks.apply(&mut model).unwrap();
            prop_assert!(report.pruned <= report.total);
            let width = granularity.unit_width(&model.config);
            for (id, m) in &masks.linears {
                let [rows, cols] = model.linear_shape(*id).unwrap();
                let keep = m.weight_keep(granularity, rows, width).to_bytes();
                let d = to_vec(model.dense_weight(*id).unwrap());
                let w = to_vec(model.weight(*id).unwrap());
                prop_assert_eq!(w.len(), rows * cols);
                for ((&wv, &dv), &k) in w.iter().zip(&d).zip(&keep) {
                    prop_assert_eq!(wv, if k == 1 { dv } else { 0.0 });
                }
            }
        }
        model.restore_dense();
        for (id, d) in model.linear_ids().into_iter().zip(&dense) {
            prop_assert_eq!(&to_vec(model.weight(id).unwrap()), d);
        }
        prop_assert_eq!(logits(&model, &ids), dense_logits);
    }

    #[test]
    fn pruned_exports_reload_to_identical_logits(
        name in prop::sample::select(MODELS.to_vec()),
        granularity in prop::sample::select(Granularity::ALL.to_vec()),
        seed in any::<u64>(),
        share in 0.0f64..0.95,
    ) {
        let mut model = load_fixture_model(name);
        masks_for(&model, granularity, seed, share, Group::Global).apply(&mut model).unwrap();
        let tokenizer = tiny_tokenizer(model.config.vocab_size);
        let checkpoint =
            pollster::block_on(export_checkpoint(&model, &tokenizer, None)).unwrap();
        let reloaded = ModelFiles::HuggingFace {
            config_json: checkpoint.config_json.clone(),
            shards: vec![(
                "model.safetensors".into(),
                checkpoint.model_safetensors.clone().into(),
            )],
            tokenizer_json: Some(checkpoint.tokenizer_json.clone()),
        }
        .load(&cpu(), &mut |_, _| {})
        .unwrap();
        let ids = [1u32, 8, 2, 30, 4, 11];
        prop_assert_eq!(logits(&reloaded.model, &ids), logits(&model, &ids));
    }

    #[test]
    fn scores_do_not_depend_on_the_order_of_the_samples(
        name in prop::sample::select(MODELS.to_vec()),
        method in prop::sample::select(vec![ScoreMethod::Wanda, ScoreMethod::Lrp, ScoreMethod::Gradient]),
        order in Just((0..4usize).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        let model = load_fixture_model(name);
        let forward = reference(&model, 4, 7);
        let mut shuffled = forward.clone();
        shuffled.samples = order.iter().map(|&i| forward.samples[i].clone()).collect();
        let a = scores(&model, method, Some(forward));
        let b = scores(&model, method, Some(shuffled));
        for (id, s) in &a.linears {
            let t = &b.linears[id];
            let scale = s.data.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
            // Sums in another order round differently; nothing else may change.
            prop_assert!(max_abs_diff(&s.data, &t.data) <= 1e-5 * scale, "{} {}", name, id);
        }
    }
}
