//! Shared helpers for the core's integration tests: fixture paths and small loaders.
#![allow(dead_code)]

pub mod lxt;
pub mod transformers;

use std::path::PathBuf;

use burn::tensor::Device;
use safetensors::SafeTensors;
use scalpel::io::safetensors::SafetensorsSource;
use scalpel::{Model, ModelConfig, WeightDtype};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixtures() -> PathBuf {
    repo_root().join("tests/fixtures")
}

/// The fetched assets folder (`cargo xtask assets`), or `SCALPEL_ASSETS`.
pub fn assets() -> PathBuf {
    std::env::var_os("SCALPEL_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("assets"))
}

/// Reads an asset, failing with the command that fetches it (tests never pass silently without it).
pub fn asset(name: &str) -> Vec<u8> {
    let path = assets().join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "asset {} is missing ({e}); fetch the assets with `cargo xtask assets`",
            path.display()
        )
    })
}

/// One tiny fixture model per family (OPT twice: pre- and post-LayerNorm).
pub const ONE_PER_FAMILY: [&str; 8] = [
    "gpt2-tied",
    "llama-gqa-tied",
    "mistral-window4",
    "phi3-fused",
    "qwen2-untied",
    "qwen3-tied-qknorm",
    "opt-pre-ln",
    "opt-350m-style",
];

/// The real model fetched by `cargo xtask assets`.
pub const SMOLLM2_GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Loads SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized) on the CPU.
pub fn load_smollm2() -> scalpel::LoadedModel {
    scalpel::ModelFiles::Gguf {
        gguf: asset(SMOLLM2_GGUF).into(),
        tokenizer_json: None,
    }
    .load(&cpu(), &mut |_, _| {})
    .unwrap()
}

/// SmolLM2, loaded once per test binary.
pub fn smollm2() -> &'static scalpel::LoadedModel {
    static MODEL: std::sync::OnceLock<scalpel::LoadedModel> = std::sync::OnceLock::new();
    MODEL.get_or_init(load_smollm2)
}

/// The logits at the last position of `ids`, through the KV cache.
pub fn logits_last(model: &Model, ids: &[u32]) -> Vec<f32> {
    let mut cache = model.new_cache();
    scalpel::readback::to_vec(
        model
            .forward(
                model.tokens(ids).unwrap(),
                &mut cache,
                scalpel::Logits::Last,
            )
            .unwrap(),
    )
    .unwrap()
}

/// Errors unless `got` is within `relative` × max |want| of `want` everywhere.
pub fn assert_close(want: &[f32], got: &[f32], relative: f32, what: &str) {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = want
        .iter()
        .zip(got)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst <= relative * scale,
        "{what}: differs by {worst} (max {scale})"
    );
}

/// How many weights the Linears of `kind` hold over all layers.
pub fn weights_of(model: &Model, kind: scalpel::model::LinearKind) -> u64 {
    model
        .linear_ids()
        .into_iter()
        .filter(|id| id.kind == kind)
        .map(|id| model.linear_shape(id).unwrap().iter().product::<usize>() as u64)
        .sum()
}

pub fn cpu() -> Device {
    Device::flex()
}

/// Loads a Hugging Face-layout fixture model (config.json + safetensors shards) on the CPU.
pub fn load_fixture_model(name: &str) -> Model {
    load_fixture_model_on(name, &cpu())
}

/// [`load_fixture_model`] on `device`, every weight as float32 (the path every reference is
/// exact for; the 16-bit paths have tests of their own).
pub fn load_fixture_model_on(name: &str, device: &Device) -> Model {
    load_fixture_model_as(name, device, WeightDtype::F32)
}

/// [`load_fixture_model`] on `device` with its weights held as `dtype` asks.
pub fn load_fixture_model_as(name: &str, device: &Device, dtype: WeightDtype) -> Model {
    let dir = fixtures().join("models").join(name);
    let mut shards = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        if file.starts_with("model") && file.ends_with(".safetensors") {
            shards.push((file, std::fs::read(&path).unwrap()));
        }
    }
    let config_json = std::fs::read(dir.join("config.json")).unwrap();
    load_shards(&config_json, shards, device, dtype)
}

/// A model from its config.json and safetensors shards (`(file name, bytes)`) on `device`, with
/// its weights held as `dtype` asks; the shards' bytes are dropped once it is loaded.
pub fn load_shards(
    config_json: &[u8],
    shards: Vec<(String, Vec<u8>)>,
    device: &Device,
    dtype: WeightDtype,
) -> Model {
    let config = ModelConfig::from_hf_json(config_json).unwrap();
    let source = SafetensorsSource::new(shards).unwrap();
    let held = Model::weight_storage(&config, &source, dtype, device).unwrap();
    Model::load(config, &source, held, device, &mut |_, _| {}).unwrap()
}

/// A named f32 tensor from a safetensors file, flattened, with its shape.
pub fn read_f32(bytes: &[u8], name: &str) -> (Vec<usize>, Vec<f32>) {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let t = st.tensor(name).unwrap();
    let data = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (t.shape().to_vec(), data)
}

/// A named int64 tensor as u32 token ids.
pub fn read_ids(bytes: &[u8], name: &str) -> Vec<u32> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let t = st.tensor(name).unwrap();
    t.data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
        .collect()
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn to_vec<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    scalpel::readback::to_vec(t).unwrap()
}

/// Deterministic pseudo-random token samples (no tokenizer needed for the tiny models).
pub fn reference(model: &Model, samples: usize, len: usize) -> scalpel::score::ReferenceSet {
    let vocab = model.config.vocab_size as u64;
    let mut state = 0x9e3779b97f4a7c15u64;
    let samples: Vec<Vec<u32>> = (0..samples)
        .map(|_| {
            (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 33) % vocab) as u32
                })
                .collect()
        })
        .collect();
    scalpel::score::ReferenceSet {
        protocol: scalpel::score::ReferenceProtocol {
            name: format!("random-{}x{len}", samples.len()),
            source: "random".into(),
            samples: samples.len(),
            requested_samples: samples.len(),
            sample_len: len,
        },
        samples,
        targets: None,
    }
}

/// A word-level tokenizer `t0 … t{vocab-1}` for the tiny fixture models.
pub fn tiny_tokenizer(vocab: usize) -> scalpel::TextTokenizer {
    let words: serde_json::Map<String, serde_json::Value> =
        (0..vocab).map(|i| (format!("t{i}"), i.into())).collect();
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": null, "model": {"type": "WordLevel", "vocab": words, "unk_token": "t0"}
    });
    scalpel::TextTokenizer::from_json(json.to_string().as_bytes(), None, vec![]).unwrap()
}

/// Scores of `method` over `reference`, read back.
pub fn scores(
    model: &Model,
    method: scalpel::score::ScoreMethod,
    reference: Option<scalpel::score::ReferenceSet>,
) -> scalpel::score::Scores {
    let mut scorer = scalpel::score::Scorer::new(
        model,
        method,
        reference,
        scalpel::relevance::MemoryLimits::default(),
    )
    .unwrap();
    scorer.run(&mut |_, _| {}).unwrap();
    scorer.finish().unwrap().read().unwrap()
}

/// All logits of one sequence.
pub fn logits(model: &Model, ids: &[u32]) -> Vec<f32> {
    let mut cache = model.new_cache();
    to_vec(
        model
            .forward(model.tokens(ids).unwrap(), &mut cache, scalpel::Logits::All)
            .unwrap(),
    )
}

/// A JSON fixture under tests/fixtures.
pub fn fixture_json(path: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixtures().join(path)).unwrap()).unwrap()
}

/// A JSON array of integers as token ids.
pub fn u32s(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}
