//! The core inside Chromium: a tiny Llama and a tiny OPT checkpoint (fixtures made by Hugging Face
//! transformers) give the reference logits on the wasm CPU backend and on WebGPU (SwiftShader in
//! headless Chromium). Run with `cargo xtask test` (wasm-bindgen-test-runner + chromedriver).
#![cfg(target_arch = "wasm32")]

use burn::tensor::Device;
use scalpel::device::{DevicePreference, select_async};
use scalpel::io::safetensors::SafetensorsSource;
use scalpel::{Logits, Model, ModelConfig};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

struct Fixture {
    config: &'static [u8],
    shards: &'static [(&'static str, &'static [u8])],
    reference: &'static [u8],
}

const LLAMA: Fixture = Fixture {
    config: include_bytes!("../../tests/fixtures/models/llama-gqa-tied/config.json"),
    shards: &[(
        "model.safetensors",
        include_bytes!("../../tests/fixtures/models/llama-gqa-tied/model.safetensors"),
    )],
    reference: include_bytes!("../../tests/fixtures/models/llama-gqa-tied/reference.safetensors"),
};

const OPT: Fixture = Fixture {
    config: include_bytes!("../../tests/fixtures/models/opt-pre-ln/config.json"),
    shards: &[(
        "model.safetensors",
        include_bytes!("../../tests/fixtures/models/opt-pre-ln/model.safetensors"),
    )],
    reference: include_bytes!("../../tests/fixtures/models/opt-pre-ln/reference.safetensors"),
};

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

async fn max_diff(fixture: &Fixture, device: &Device) -> f32 {
    let config = ModelConfig::from_hf_json(fixture.config).unwrap();
    let shards = fixture
        .shards
        .iter()
        .map(|(n, b)| (n.to_string(), b.to_vec()))
        .collect();
    let source = SafetensorsSource::new(shards).unwrap();
    let model = Model::load(config, &source, device, &mut |_, _| {}).unwrap();
    let (ids, expected) = reference(fixture.reference);
    let mut cache = model.new_cache();
    let logits = model
        .forward(model.tokens(&ids).unwrap(), &mut cache, Logits::All)
        .unwrap();
    let got = scalpel::readback::to_vec_async(logits).await.unwrap();
    got.iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

#[wasm_bindgen_test]
async fn cpu_backend_matches_transformers() {
    let device = Device::flex();
    for (name, fixture) in [("llama", &LLAMA), ("opt", &OPT)] {
        let diff = max_diff(fixture, &device).await;
        assert!(diff <= 1e-4, "{name} on wasm CPU: max |Δlogit| = {diff}");
    }
}

#[wasm_bindgen_test]
async fn webgpu_matches_transformers() {
    let selected = select_async(DevicePreference::Gpu)
        .await
        .expect("WebGPU adapter (Chromium with --enable-unsafe-webgpu)");
    for (name, fixture) in [("llama", &LLAMA), ("opt", &OPT)] {
        let diff = max_diff(fixture, &selected.device).await;
        // GPU reductions sum in a different order than the CPU.
        assert!(
            diff <= 1e-3,
            "{name} on {}: max |Δlogit| = {diff}",
            selected.label
        );
    }
}
