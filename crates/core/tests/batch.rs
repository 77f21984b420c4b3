//! Generating several sequences as one batch (`generate::Batch`: prompts one by one, then decode
//! steps with the caches stacked and left-padded) gives every sequence, at every step, the
//! logits it gets alone, for each architecture's fixture (RoPE, sliding windows, learned
//! positions), including when sequences leave the batch early.

mod common;

use common::{assert_close, load_fixture_model, logits_last};
use scalpel::Model;
use scalpel::generate::{Batch, GenerateOptions, StopReason, generate};

/// Prompts of the given lengths, of made-up tokens.
fn prompts(lengths: &[usize]) -> Vec<Vec<u32>> {
    lengths
        .iter()
        .enumerate()
        .map(|(p, &len)| {
            (0..len)
                .map(|i| ((7 * i + 31 * p + 5) % 120 + 3) as u32)
                .collect()
        })
        .collect()
}

/// Four prompts in a 64-token context: the 59- and 57-token ones fill it but for five and seven
/// positions, so they stop (context full) after 5 and 7 of the 8 tokens asked, one after the
/// other, from the middle of the batch, while the others go on; and two short ones whose padding
/// lies inside a 4- or 5-key sliding window.
const LONG_AND_SHORT: [usize; 4] = [11, 59, 57, 3];
const SHORT: [usize; 2] = [1, 3];

fn options(max_new_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens,
        stop_at_eos: false,
        ..Default::default()
    }
}

/// Drives a batch of `lengths` step by step, checking each row's logits against the sequence run
/// alone, then its tokens and stop reasons against `generate`.
fn check_prompts(name: &str, model: &Model, lengths: &[usize], max_new: usize) -> Vec<StopReason> {
    let prompts = prompts(lengths);
    let mut batch = Batch::new(model, &prompts, options(max_new)).unwrap();
    let mut batched_steps = 0;
    while !batch.is_finished() {
        let running = batch.running();
        let so_far = batch.results();
        let logits = scalpel::readback::to_vec(batch.forward().unwrap()).unwrap();
        let vocab = logits.len() / running.len();
        batched_steps += usize::from(running.len() > 1);
        for (row, &s) in running.iter().enumerate() {
            let ids: Vec<u32> = prompts[s].iter().chain(&so_far[s].0).copied().collect();
            let alone = logits_last(model, &ids);
            let got = &logits[row * vocab..(row + 1) * vocab];
            let what = format!("{name}: sequence {s} at {} tokens", ids.len());
            assert_close(&alone, got, 1e-4, &what);
        }
        batch.accept(&logits).unwrap();
    }
    assert_eq!(
        batched_steps,
        max_new.saturating_sub(1),
        "{name}: steps run as a batch"
    );
    let results = batch.results();
    for (s, (tokens, stop)) in results.iter().enumerate() {
        let (alone, alone_stop) = generate(model, &prompts[s], options(max_new), |_| true).unwrap();
        assert_eq!(tokens, &alone, "{name}: sequence {s}");
        assert_eq!(*stop, alone_stop, "{name}: sequence {s}");
    }
    results.into_iter().map(|(_, stop)| stop).collect()
}

fn check_batch(name: &str) {
    let model = load_fixture_model(name);
    use StopReason::*;
    let stops = check_prompts(name, &model, &LONG_AND_SHORT, 8);
    assert_eq!(
        stops,
        [MaxTokens, ContextFull, ContextFull, MaxTokens],
        "{name}"
    );
    check_prompts(name, &model, &SHORT, 6);
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
fn one_token_or_none_asked_needs_no_batch() {
    let model = load_fixture_model("llama-gqa-tied");
    for max_new in [0, 1] {
        check_prompts("llama-gqa-tied", &model, &LONG_AND_SHORT, max_new);
    }
}

#[test]
fn bad_prompts_are_named() {
    let model = load_fixture_model("llama-gqa-tied");
    let err = Batch::new(&model, &[vec![5], vec![]], options(4))
        .err()
        .expect("an empty prompt is refused");
    assert!(err.to_string().contains("prompt 2 of 2"), "{err}");
}
