//! The core on a native wgpu device: a hardware GPU where there is one, else Mesa's software
//! Vulkan (lavapipe; `cargo xtask setup` installs it). Logits against transformers, relevance
//! against LXT, and the kernel-launch budget of a decode step — the GPU path's speed limit on
//! small models, where each launch costs microseconds whatever it computes.

mod common;

use burn::tensor::Device;
use common::lxt::{check_tiny_models, check_tiny_models_as};
use common::transformers::{LOGIT_FIXTURES, check_logits, check_logits_as};
use common::{
    assert_close, load_fixture_model, load_fixture_model_as, load_fixture_model_on, logits,
};
use scalpel::WeightDtype;
use scalpel::device::{DevicePreference, per_decode_step, per_relevance_pass, select};
use scalpel::prune::{Granularity, Group, Masks};
use scalpel::score::Scores;

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

/// Launches per decoder block of one decode step with float32 weights, per architecture: what is
/// measured today with a margin for autotune's timing-based choices (README, Benchmark: "GPU
/// kernel launches"; SmolLM2 counts 16–18 per layer, this Llama fixture 39 per step of 2 layers,
/// 16.5 per layer besides the launches outside them); the target is 20. Raise them only
/// with a reason in the README.
const DECODE_LAUNCHES_PER_LAYER: [(&str, usize); 2] = [("llama-gqa-tied", 20), ("opt-pre-ln", 30)];
/// Launches outside the blocks: embedding lookup, final norm, LM head.
const DECODE_LAUNCHES_OUTSIDE_LAYERS: usize = 6;
/// What f16 weights add outside the blocks: widening the looked-up embedding rows and OPT's
/// position rows, the LM head's two casts.
const CASTS_OUTSIDE_LAYERS: usize = 4;

#[test]
#[cfg_attr(
    not(feature = "autotune"),
    ignore = "the budget holds with autotune's kernels, as the CLI runs them (without it the Llama \
              fixture takes 56 launches for 39): `cargo xtask test` builds the workspace with it"
)]
fn a_decode_step_stays_within_its_launch_budget() {
    let (_turn, device) = gpu();
    for (name, budget) in DECODE_LAUNCHES_PER_LAYER {
        let model = load_fixture_model_as(name, &device, WeightDtype::F32);
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

        // Weights held as f16 make each decode product an f16 product: at most two casts more
        // per Linear (its input to f16, its output back) where fusion does not fold them in.
        let half = load_fixture_model_as(name, &device, WeightDtype::F16);
        let half_per_token = per_decode_step(&half, &[5, 19, 33, 47], 4)
            .unwrap()
            .per_repeat();
        let casts = 2 * model.config.architecture.spec().linears.len() * layers;
        println!("{name}: {half_per_token} launches per decode step with f16 weights");
        assert!(
            half_per_token <= per_token + casts + CASTS_OUTSIDE_LAYERS,
            "{name}: {half_per_token} launches with f16 weights, over {per_token} + {casts} \
             casts + {CASTS_OUTSIDE_LAYERS}"
        );
    }
}

#[test]
fn sixteen_bit_weights_on_wgpu_stay_within_their_rounding_of_the_references() {
    let (_turn, device) = gpu();
    for name in LOGIT_FIXTURES {
        for dtype in [WeightDtype::Auto, WeightDtype::F16] {
            let worst = check_logits_as(name, &device, dtype, common::transformers::F16_TOLERANCE);
            println!("{name} as {dtype} on wgpu: max |Δlogit| {worst:.2e}");
        }
    }
    check_tiny_models_as(&device, WeightDtype::Auto, 1e-4);
    let worst = check_tiny_models_as(&device, WeightDtype::F16, common::lxt::F16_TOLERANCE);
    println!("relevance held as f16 on wgpu: worst relative error {worst:.2e}");
}

/// wgpu has no bf16: asking for it is refused before anything loads, naming the way out.
#[test]
fn a_dtype_the_gpu_cannot_hold_is_refused_with_the_way_out() {
    let (_turn, device) = gpu();
    let err = WeightDtype::Bf16
        .storage(scalpel::io::StoredType::Bf16, &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no bf16") && err.contains("--dtype f32"),
        "{err}"
    );
}

/// On a GPU q/k/v and gate/up are joined into one product each (`model/joined.rs`): a mask drops
/// the joins of the Linears it changes and they are joined again after, so the masked and the
/// restored model compute on wgpu what they compute on the CPU, whose Linears are never joined.
#[test]
fn masks_on_joined_products_compute_what_the_cpu_computes() {
    let (_turn, device) = gpu();
    let ids = [5, 19, 33, 47, 61, 7];
    for name in ["llama-gqa-tied", "qwen3-tied-qknorm", "opt-pre-ln"] {
        let mut on_cpu = load_fixture_model(name);
        let mut on_gpu = load_fixture_model_on(name, &device);
        for seed in [1, 2] {
            let scores = Scores::random(&on_cpu, Granularity::Weights, seed).unwrap();
            let masks = Masks::from_scores(&scores, 0.5, Group::Row).unwrap();
            masks.apply(&mut on_cpu).unwrap();
            masks.apply(&mut on_gpu).unwrap();
            let what = format!("{name} masked (seed {seed})");
            assert_close(&logits(&on_cpu, &ids), &logits(&on_gpu, &ids), 1e-4, &what);
        }
        on_cpu.restore_dense();
        on_gpu.restore_dense();
        let what = format!("{name} restored");
        assert_close(&logits(&on_cpu, &ids), &logits(&on_gpu, &ids), 1e-4, &what);
    }
}
