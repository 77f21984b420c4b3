//! The core on a native wgpu device: a hardware GPU where there is one, else Mesa's software
//! Vulkan (lavapipe; `cargo xtask setup` installs it). Logits against transformers, relevance
//! against LXT, and the kernel-launch budget of a decode step — the GPU path's speed limit on
//! small models, where each launch costs microseconds whatever it computes.

mod common;

use burn::tensor::Device;
use common::load_fixture_model_on;
use common::lxt::check_tiny_models;
use common::transformers::{LOGIT_FIXTURES, check_logits};
use scalpel::device::{DevicePreference, per_decode_step, per_relevance_pass, select};

/// The launch counter is process-wide: the tests here take turns on the device.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn gpu() -> (std::sync::MutexGuard<'static, ()>, Device) {
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let device = select(DevicePreference::Gpu)
        .unwrap_or_else(|e| {
            panic!(
                "no wgpu adapter ({e}): install Mesa's software Vulkan \
                 (`apt-get install mesa-vulkan-drivers`; `cargo xtask setup` does)"
            )
        })
        .device;
    (turn, device)
}

#[test]
fn logits_on_wgpu_match_transformers() {
    let (_turn, device) = gpu();
    for name in LOGIT_FIXTURES {
        check_logits(name, &device);
    }
}

#[test]
fn relevance_on_wgpu_matches_lxt() {
    let (_turn, device) = gpu();
    check_tiny_models(&device);
}

/// Launches per decoder block of one decode step, per architecture: what is measured today (README,
/// Benchmark: "GPU kernel launches"; SmolLM2 counts 26 per layer); the target is 20. Raise
/// them only with a reason in the README.
const DECODE_LAUNCHES_PER_LAYER: [(&str, usize); 2] = [("llama-gqa-tied", 26), ("opt-pre-ln", 30)];
/// Launches outside the blocks: embedding lookup, final norm, LM head.
const DECODE_LAUNCHES_OUTSIDE_LAYERS: usize = 6;

#[test]
fn a_decode_step_stays_within_its_launch_budget() {
    let (_turn, device) = gpu();
    for (name, budget) in DECODE_LAUNCHES_PER_LAYER {
        let model = load_fixture_model_on(name, &device);
        let layers = model.config.num_layers;
        let decode = per_decode_step(&model, &[5, 19, 33, 47], 4).unwrap();
        let per_token = decode.per_repeat();
        println!("{name}: {per_token} launches per decode step ({layers} layers)");
        for (kernel, n) in decode.table(40) {
            println!("  {n:>6.1}  {kernel}");
        }
        assert!(per_token > 0, "{name}: no launches were counted on wgpu");
        assert!(
            per_token <= budget * layers + DECODE_LAUNCHES_OUTSIDE_LAYERS,
            "{name}: {per_token} launches per decode step, over {budget} per layer \
             + {DECODE_LAUNCHES_OUTSIDE_LAYERS}"
        );
        let again = per_decode_step(&model, &[5, 19, 33, 47], 4).unwrap();
        assert_eq!(again.per_repeat(), per_token, "{name}: launch count varies");
        let relevance = per_relevance_pass(&model, &[5, 19, 33, 47]).unwrap();
        println!(
            "{name}: {} launches per relevance pass",
            relevance.per_repeat()
        );
        assert!(relevance.per_repeat() > per_token);
    }
}
