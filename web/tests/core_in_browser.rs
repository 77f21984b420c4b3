//! The core inside Chromium: a tiny Llama and a tiny OPT checkpoint (fixtures made by Hugging Face
//! transformers) give the reference logits, and the reference AttnLRP relevance (LXT 2.1), on the
//! wasm CPU backend and on WebGPU (SwiftShader in headless Chromium). Run with `cargo xtask test` (wasm-bindgen-test-runner + chromedriver).
#![cfg(target_arch = "wasm32")]

use burn::tensor::Device;
use scalpel::device::{DevicePreference, on_gpu_lost, select_async};
use scalpel::io::safetensors::SafetensorsSource;
use scalpel::prune::{Granularity, Group, Masks};
use scalpel::relevance::{
    ExplanationCollector, MemoryLimits, RelevancePass, RuleSet, Target, Trace, WeightDetail,
};
use scalpel::score::{ReferenceProtocol, ReferenceSet, ScoreMethod, Scorer};
use scalpel::task::metrics::evaluate_async;
use scalpel::task::{EncodedTask, TaskItem};
use scalpel::{Logits, Model, ModelConfig, WeightDtype};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

struct Fixture {
    config: &'static [u8],
    shards: &'static [(&'static str, &'static [u8])],
    reference: &'static [u8],
    /// AttnLRP relevance by tests/fixtures/make_relevance_fixtures.py.
    relevance: &'static [u8],
    /// Wanda scores, masks and pruned logits by tests/fixtures/make_prune_fixtures.py.
    prune: &'static [u8],
}

const LLAMA: Fixture = Fixture {
    config: include_bytes!("../../tests/fixtures/models/llama-gqa-tied/config.json"),
    shards: &[(
        "model.safetensors",
        include_bytes!("../../tests/fixtures/models/llama-gqa-tied/model.safetensors"),
    )],
    reference: include_bytes!("../../tests/fixtures/models/llama-gqa-tied/reference.safetensors"),
    relevance: include_bytes!("../../tests/fixtures/relevance/llama-gqa-tied.attnlrp.safetensors"),
    prune: include_bytes!("../../tests/fixtures/prune/llama-gqa-tied.safetensors"),
};

const OPT: Fixture = Fixture {
    config: include_bytes!("../../tests/fixtures/models/opt-pre-ln/config.json"),
    shards: &[(
        "model.safetensors",
        include_bytes!("../../tests/fixtures/models/opt-pre-ln/model.safetensors"),
    )],
    reference: include_bytes!("../../tests/fixtures/models/opt-pre-ln/reference.safetensors"),
    relevance: include_bytes!("../../tests/fixtures/relevance/opt-pre-ln.attnlrp.safetensors"),
    prune: include_bytes!("../../tests/fixtures/prune/opt-pre-ln.safetensors"),
};

fn f32s(st: &safetensors::SafeTensors, name: &str) -> Vec<f32> {
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn reference(bytes: &[u8]) -> (Vec<u32>, Vec<f32>) {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let ids = st
        .tensor("input_ids")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|c| c[0] as u32 | (c[1] as u32) << 8)
        .collect();
    let logits = st
        .tensor("logits")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (ids, logits)
}

/// Loads with float32 weights: the path every reference is exact for.
fn load(fixture: &Fixture, device: &Device) -> Model {
    load_as(fixture, device, WeightDtype::F32).unwrap()
}

/// Loads with the weights held as `dtype` asks (an error where the device cannot hold them).
fn load_as(fixture: &Fixture, device: &Device, dtype: WeightDtype) -> scalpel::Result<Model> {
    let config = ModelConfig::from_hf_json(fixture.config).unwrap();
    let shards = fixture
        .shards
        .iter()
        .map(|(n, b)| (n.to_string(), b.to_vec()))
        .collect();
    let source = SafetensorsSource::new(shards).unwrap();
    let held = Model::weight_storage(&config, &source, dtype, device)?;
    Model::load(config, &source, held, device, &mut |_, _| {})
}

/// Worst relative error (of max |R|) of AttnLRP input and head relevance for the greedy token.
async fn relevance_error(fixture: &Fixture, device: &Device) -> f32 {
    relevance_error_of(&load(fixture, device), fixture).await
}

/// [`relevance_error`] of an already loaded model.
async fn relevance_error_of(model: &Model, fixture: &Fixture) -> f32 {
    let st = safetensors::SafeTensors::deserialize(fixture.relevance).unwrap();
    let (ids, _) = reference(fixture.reference);
    let token = st.tensor("targets").unwrap().data()[0] as u32;
    let trace = Trace::new(model, &ids, &MemoryLimits::default(), false).unwrap();
    let target = Target::Token {
        position: None,
        token,
    };
    let mut sink = ExplanationCollector::new(WeightDetail::None);
    let input = RelevancePass::new(model, trace, &target, RuleSet::AttnLrp)
        .unwrap()
        .run(&mut sink)
        .unwrap();
    let e = sink
        .readback(input, &ids, RuleSet::AttnLrp)
        .read_async()
        .await
        .unwrap();
    let rel = |got: &[f32], want: &[f32]| {
        let scale = want.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
        max_abs_diff(got, want) / scale
    };
    rel(&e.tokens, &f32s(&st, "attnlrp.token.input"))
        .max(rel(&e.heads.concat(), &f32s(&st, "attnlrp.token.heads")))
}

/// Wanda over the fixture's samples, 50% per row, applied in place: the masks must equal
/// PyTorch's and the pruned logits match. Returns the worst logit difference.
async fn wanda_error(fixture: &Fixture, device: &Device) -> f32 {
    let mut model = load(fixture, device);
    let st = safetensors::SafeTensors::deserialize(fixture.prune).unwrap();
    let ids: Vec<u32> = st
        .tensor("tokens")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let samples: Vec<Vec<u32>> = ids.chunks(12).map(<[u32]>::to_vec).collect();
    let reference = ReferenceSet {
        protocol: ReferenceProtocol {
            name: "fixture-4x12".into(),
            source: "fixture".into(),
            samples: 4,
            requested_samples: 4,
            sample_len: 12,
        },
        samples: samples.clone(),
        targets: None,
    };
    let mut scorer = Scorer::new(
        &model,
        ScoreMethod::Wanda,
        Some(reference),
        MemoryLimits::default(),
    )
    .unwrap();
    scorer.run(&mut |_, _| {}).unwrap();
    let scores = scorer.finish().unwrap().read_async().await.unwrap();
    let masks = Masks::from_scores(&scores, 0.5, Group::Row).unwrap();
    let spec = model.config.architecture.spec();
    for (id, m) in &masks.linears {
        let name = format!(
            "layers.{}.{}.mask_wanda_row50",
            id.layer,
            spec.module(id.kind).unwrap()
        );
        assert_eq!(
            m.keep.to_bytes(),
            st.tensor(&name).unwrap().data(),
            "{name}"
        );
    }
    masks.apply(&mut model).unwrap();
    let mut got = Vec::new();
    for s in &samples {
        let mut cache = model.new_cache();
        let logits = model
            .forward(model.tokens(s).unwrap(), &mut cache, Logits::All)
            .unwrap();
        got.extend(scalpel::readback::to_vec_async(logits).await.unwrap());
    }
    max_abs_diff(&got, &f32s(&st, "logits_wanda_row50"))
}

/// A circuit search's pieces on `device`: LRP head scores of a task made of the fixture's
/// tokens, then the task's logit differences with the lower half of the heads pruned.
async fn circuit_outcomes(fixture: &Fixture, device: &Device) -> (Vec<f32>, Vec<f32>) {
    let mut model = load(fixture, device);
    let (ids, _) = reference(fixture.reference);
    let vocab = model.config.vocab_size as u32;
    let items = (0..4)
        .map(|i| TaskItem {
            ids: ids[..4 + i].to_vec(),
            answer: (ids[i] + 1) % vocab,
            distractor: (ids[i] + 2) % vocab,
        })
        .collect();
    let task = EncodedTask {
        name: "fixture-task".into(),
        items,
        notes: vec![],
    };
    let reference = ReferenceSet::from_task(&task).unwrap();
    let mut scorer = Scorer::at(
        &model,
        ScoreMethod::Lrp,
        Granularity::Heads,
        Some(reference),
        MemoryLimits::default(),
    )
    .unwrap();
    scorer.run(&mut |_, _| {}).unwrap();
    let scores = scorer.finish().unwrap().read_async().await.unwrap();
    let masks = Masks::from_scores(&scores, 0.5, Group::Global).unwrap();
    let report = masks.apply(&mut model).unwrap();
    assert_eq!(report.pruned * 2, report.total);
    let outcomes = evaluate_async(&model, &task).await.unwrap();
    let flat = scores
        .linears
        .values()
        .flat_map(|s| s.data.clone())
        .collect();
    (flat, outcomes.logit_diff)
}

/// Largest difference relative to the largest magnitude of `b`.
fn relative(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    max_abs_diff(a, b) / scale
}

async fn max_diff(fixture: &Fixture, device: &Device) -> f32 {
    max_diff_of(&load(fixture, device), fixture).await
}

/// [`max_diff`] of an already loaded model.
async fn max_diff_of(model: &Model, fixture: &Fixture) -> f32 {
    let (ids, expected) = reference(fixture.reference);
    let mut cache = model.new_cache();
    let logits = model
        .forward(model.tokens(&ids).unwrap(), &mut cache, Logits::All)
        .unwrap();
    let got = scalpel::readback::to_vec_async(logits).await.unwrap();
    max_abs_diff(&got, &expected)
}

/// The largest `|a - b|` over two equally long runs of values.
fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// [`max_diff`] with the prompt fed through the KV cache one token at a time: every product then
/// has one row, which the wasm CPU backend computes with `scalpel_kernels` rather than `gemm`.
async fn decode_max_diff(fixture: &Fixture, device: &Device) -> f32 {
    decode_max_diff_of(&load(fixture, device), fixture).await
}

/// [`decode_max_diff`] of an already loaded model.
async fn decode_max_diff_of(model: &Model, fixture: &Fixture) -> f32 {
    let (ids, expected) = reference(fixture.reference);
    let vocab = expected.len() / ids.len();
    let mut cache = model.new_cache();
    let mut worst = 0.0f32;
    for (position, &id) in ids.iter().enumerate() {
        let logits = model
            .forward(model.tokens(&[id]).unwrap(), &mut cache, Logits::All)
            .unwrap();
        let got = scalpel::readback::to_vec_async(logits).await.unwrap();
        let want = &expected[position * vocab..(position + 1) * vocab];
        worst = worst.max(max_abs_diff(&got, want));
    }
    worst
}

#[wasm_bindgen_test]
async fn cpu_backend_matches_transformers() {
    let device = Device::flex();
    for (name, fixture) in [("llama", &LLAMA), ("opt", &OPT)] {
        let diff = max_diff(fixture, &device).await;
        assert!(diff <= 1e-4, "{name} on wasm CPU: max |Δlogit| = {diff}");
        let diff = decode_max_diff(fixture, &device).await;
        assert!(
            diff <= 1e-4,
            "{name} on wasm CPU, one token at a time: max |Δlogit| = {diff}"
        );
        let err = relevance_error(fixture, &device).await;
        assert!(err <= 1e-4, "{name} relevance on wasm CPU: rel err {err}");
        let diff = wanda_error(fixture, &device).await;
        assert!(
            diff <= 1e-4,
            "{name} Wanda-pruned on wasm CPU: max |Δlogit| = {diff}"
        );
    }
}

#[wasm_bindgen_test]
async fn webgpu_matches_transformers() {
    let selected = select_async(DevicePreference::Gpu)
        .await
        .expect("WebGPU adapter (Chromium with --enable-unsafe-webgpu)");
    // The page hears about a lost device through this watch (the e2e test crashes the GPU process).
    assert!(
        on_gpu_lost(|reason| panic!("the WebGPU device was lost during the test: {reason}")),
        "no device-lost watch on the initialised WebGPU device"
    );
    for (name, fixture) in [("llama", &LLAMA), ("opt", &OPT)] {
        let diff = max_diff(fixture, &selected.device).await;
        // GPU reductions sum in a different order than the CPU.
        assert!(
            diff <= 1e-3,
            "{name} on {}: max |Δlogit| = {diff}",
            selected.label
        );
        let err = relevance_error(fixture, &selected.device).await;
        assert!(
            err <= 1e-3,
            "{name} relevance on {}: rel err {err}",
            selected.label
        );
        let diff = wanda_error(fixture, &selected.device).await;
        assert!(
            diff <= 1e-3,
            "{name} Wanda-pruned on {}: max |Δlogit| = {diff}",
            selected.label
        );
        // Circuit search on the GPU agrees with the CPU backend (itself checked natively).
        let (gpu_scores, gpu_diffs) = circuit_outcomes(fixture, &selected.device).await;
        let (cpu_scores, cpu_diffs) = circuit_outcomes(fixture, &Device::flex()).await;
        let (s, d) = (
            relative(&gpu_scores, &cpu_scores),
            relative(&gpu_diffs, &cpu_diffs),
        );
        assert!(
            s <= 1e-3 && d <= 1e-3,
            "{name} circuit on {}: head scores rel err {s}, pruned logit diffs rel err {d}",
            selected.label
        );
    }
}

/// `scalpel_kernels`' SIMD128 widening of f16 weights against its scalar one (itself checked
/// natively against IEEE's definition), for every one of the 65,536 values: each is a row of 16
/// weights, multiplied by a one-hot row of `x`.
#[wasm_bindgen_test]
fn simd_f16_widening_matches_the_scalar_one_for_every_value() {
    const K: usize = 16;
    let mut w = vec![0u16; (u16::MAX as usize + 1) * K];
    for (bits, row) in (0..=u16::MAX).zip(w.chunks_exact_mut(K)) {
        row[0] = bits;
    }
    let mut x = [0.0f32; K];
    x[0] = 1.0;
    let mut y = vec![0.0f32; u16::MAX as usize + 1];
    scalpel_kernels::rows_times_transposed_f16(&x, &w, &mut y, K);
    for (bits, &got) in (0..=u16::MAX).zip(&y) {
        // The sum adds zeros to the one product, which turns -0 into +0 (as it does here).
        let want = scalpel_kernels::f16_to_f32(bits) + 0.0;
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "{bits:#06x}: {got:e} against {want:e}"
        );
    }
}

/// f16 weights in the browser (the page's "Weights: float16", and what `auto` holds the f16 OPT
/// fixture as), on the wasm CPU backend and on WebGPU: logits within f16's rounding of
/// transformers, relevance (float32 products) as float32's. An adapter without `shader-f16`
/// (SwiftShader's, in the tests) must refuse f16 with the way out instead.
#[wasm_bindgen_test]
async fn f16_weights_stay_within_f16_rounding_in_the_browser() {
    let selected = select_async(DevicePreference::Gpu)
        .await
        .expect("WebGPU adapter (Chromium with --enable-unsafe-webgpu)");
    for (label, device) in [
        ("wasm CPU".to_string(), Device::flex()),
        (selected.label.clone(), selected.device.clone()),
    ] {
        if !device.supports_dtype(burn::tensor::DType::F16) {
            let err = load_as(&LLAMA, &device, WeightDtype::F16).unwrap_err();
            assert!(err.to_string().contains("float32"), "{label}: {err}");
            let auto = load_as(&OPT, &device, WeightDtype::Auto).unwrap();
            assert_eq!(auto.weight_dtype(), burn::tensor::DType::F32, "{label}");
            continue;
        }
        for (name, fixture, dtype, relevance_tolerance) in [
            ("llama as f16", &LLAMA, WeightDtype::F16, 5e-2),
            (
                "opt (an f16 checkpoint) as auto",
                &OPT,
                WeightDtype::Auto,
                1e-3,
            ),
        ] {
            let model = load_as(fixture, &device, dtype).unwrap();
            assert_eq!(model.weight_dtype(), burn::tensor::DType::F16, "{name}");
            let diff = max_diff_of(&model, fixture).await;
            assert!(diff <= 2e-2, "{name} on {label}: max |Δlogit| = {diff}");
            // One token at a time: on the wasm CPU, scalpel_kernels reads the f16 weights.
            let diff = decode_max_diff_of(&model, fixture).await;
            assert!(
                diff <= 2e-2,
                "{name} on {label}, one token at a time: max |Δlogit| = {diff}"
            );
            let err = relevance_error_of(&model, fixture).await;
            assert!(
                err <= relevance_tolerance,
                "{name} relevance on {label}: rel err {err}"
            );
        }
    }
}
