//! Generating several sequences as one batch (`generate::Batch`: prompts one by one, then decode
//! steps with the caches stacked and left-padded) gives every sequence, at every step, the
//! logits it gets alone, for each architecture's fixture (RoPE, sliding windows, learned
//! positions), including when a sequence leaves the batch early.

mod common;

use common::{assert_close, load_fixture_model, logits_last};
use scalpel::generate::{Batch, GenerateOptions, StopReason, generate};

/// Prompts of three lengths; the last fills the 64-token context but for five positions, so it
/// stops (context full) while the others go on, and the rows left lose their shared padding.
fn prompts() -> Vec<Vec<u32>> {
    [3, 11, 59]
        .iter()
        .enumerate()
        .map(|(p, &len)| {
            (0..len)
                .map(|i| ((7 * i + 31 * p + 5) % 120 + 3) as u32)
                .collect()
        })
        .collect()
}

fn options() -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: 8,
        stop_at_eos: false,
        ..Default::default()
    }
}

fn check_batch(name: &str) {
    let model = load_fixture_model(name);
    let prompts = prompts();
    let mut batch = Batch::new(&model, &prompts, options()).unwrap();
    let mut batched_steps = 0;
    while !batch.is_finished() {
        let running = batch.running();
        let so_far = batch.results();
        let logits = scalpel::readback::to_vec(batch.forward().unwrap()).unwrap();
        let vocab = logits.len() / running.len();
        batched_steps += usize::from(running.len() > 1);
        for (row, &s) in running.iter().enumerate() {
            let ids: Vec<u32> = prompts[s].iter().chain(&so_far[s].0).copied().collect();
            let alone = logits_last(&model, &ids);
            let got = &logits[row * vocab..(row + 1) * vocab];
            assert_close(
                &alone,
                got,
                1e-4,
                &format!("{name}: sequence {s} at {} tokens", ids.len()),
            );
        }
        batch.accept(&logits).unwrap();
    }
    assert!(
        batched_steps >= 7,
        "{name}: only {batched_steps} steps ran as a batch"
    );
    let results = batch.results();
    assert_eq!(results[2].1, StopReason::ContextFull, "{name}");
    for (s, (tokens, stop)) in results.iter().enumerate() {
        let (alone, alone_stop) = generate(&model, &prompts[s], options(), |_| true).unwrap();
        assert_eq!(tokens, &alone, "{name}: sequence {s}");
        assert_eq!(*stop, alone_stop, "{name}: sequence {s}");
    }
    assert_eq!(results[0].0.len(), 8);
}

#[test]
fn llama_batch_matches_each_sequence_alone() {
    check_batch("llama-gqa-tied");
}

#[test]
fn mistral_sliding_window_batch_matches_each_sequence_alone() {
    check_batch("mistral-window4");
}

#[test]
fn phi3_batch_matches_each_sequence_alone() {
    check_batch("phi3-fused");
}

#[test]
fn qwen2_batch_matches_each_sequence_alone() {
    check_batch("qwen2-untied");
}

#[test]
fn qwen3_batch_matches_each_sequence_alone() {
    check_batch("qwen3-tied-qknorm");
}

#[test]
fn opt_learned_positions_batch_matches_each_sequence_alone() {
    check_batch("opt-350m-style");
}

#[test]
fn gpt2_batch_matches_each_sequence_alone() {
    check_batch("gpt2-tied");
}

#[test]
fn bad_prompts_are_named() {
    let model = load_fixture_model("llama-gqa-tied");
    let err = Batch::new(&model, &[vec![5], vec![]], options())
        .err()
        .expect("an empty prompt is refused");
    assert!(err.to_string().contains("prompt 2 of 2"), "{err}");
}
