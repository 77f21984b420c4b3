//! The real SmolLM2-135M-Instruct Q4_1 GGUF (fetched by `cargo xtask assets`) against references
//! computed by transformers and llama.cpp's tokenizer rules (tests/fixtures/smollm2/).

mod common;

use common::*;
use scalpel::eval::corpus::wiki_text;
use scalpel::eval::perplexity::{PerplexityProtocol, perplexity};
use scalpel::generate::{GenerateOptions, generate};
use scalpel::{LoadedModel, Logits};
use serde_json::Value;

fn reference() -> Value {
    fixture_json("smollm2/reference.json")
}

#[test]
fn config_is_read_from_gguf_metadata() {
    let c = &smollm2().model.config;
    assert_eq!(
        (c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads),
        (30, 576, 9, 3)
    );
    assert_eq!(
        (c.vocab_size, c.intermediate_size, c.rotary().unwrap().theta),
        (49152, 1536, 100_000.0)
    );
    assert!(c.tie_word_embeddings);
}

#[test]
fn tokenizer_matches_reference_ids_and_round_trips() {
    let tok = &smollm2().tokenizer;
    let r = reference();
    let cases = r["tokenize"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            tok.encode(text).unwrap(),
            u32s(&case["ids"]),
            "ids of {text:?}"
        );
        assert_eq!(
            tok.decode(&tok.encode(text).unwrap()).unwrap(),
            text,
            "round trip of {text:?}"
        );
    }
}

#[test]
fn greedy_continuation_matches_transformers() {
    let LoadedModel { model, tokenizer } = smollm2();
    let r = &reference()["greedy"];
    let prompt = tokenizer.encode(r["prompt"].as_str().unwrap()).unwrap();
    assert_eq!(prompt, u32s(&r["prompt_ids"]));
    let expected = u32s(&r["ids"]);
    let options = GenerateOptions {
        max_new_tokens: expected.len(),
        ..Default::default()
    };
    let (got, _) = generate(model, &prompt, options, |_| true).unwrap();
    assert!(tokenizer.decode(&got).unwrap().starts_with(" Paris"));
    assert_eq!(got, expected, "greedy ids");
}

#[test]
fn last_position_logits_match_transformers() {
    let LoadedModel { model, .. } = smollm2();
    let bytes = std::fs::read(fixtures().join("smollm2/last_logits.safetensors")).unwrap();
    let prompt = read_ids(&bytes, "prompt_ids");
    let (_, expected) = read_f32(&bytes, "logits");
    let mut cache = model.new_cache();
    let got = to_vec(
        model
            .forward(model.tokens(&prompt).unwrap(), &mut cache, Logits::Last)
            .unwrap(),
    );
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = max_abs_diff(&got, &expected);
    // Same dequantized weights; only f32 summation order differs across 30 layers.
    assert!(
        diff <= 2e-4 * scale,
        "max |Δlogit| = {diff} (max |logit| = {scale})"
    );
}

#[test]
fn wiki_perplexity_matches_transformers() {
    let LoadedModel { model, tokenizer } = smollm2();
    let r = &reference()["wiki_ppl"];
    let text = wiki_text(&String::from_utf8(asset("wiki.utf8")).unwrap());
    assert_eq!(
        text.chars().count() as u64,
        r["corpus_chars"].as_u64().unwrap(),
        "corpus reconstruction"
    );
    let tokens = tokenizer.encode(&text).unwrap();
    assert_eq!(
        &tokens[..16],
        &u32s(&r["first_16_ids"])[..],
        "corpus reconstruction / tokenization"
    );
    let protocol = PerplexityProtocol::wiki(512, 4);
    let result = perplexity(model, &tokens, &protocol, &mut |_, _| {}).unwrap();
    let expected = r["perplexity"].as_f64().unwrap();
    let rel = (result.perplexity - expected).abs() / expected;
    assert!(
        rel < 1e-3,
        "{}: {} vs transformers {expected}",
        protocol.name,
        result.perplexity
    );
}

#[test]
fn single_token_targets_are_resolved_or_refused() {
    let tok = &smollm2().tokenizer;
    let paris = tok.single_token(" Paris").unwrap();
    assert_eq!(tok.id_to_text(paris).unwrap(), " Paris");
    assert_eq!(tok.single_token("#5").unwrap(), 5);
    let two = tok.single_token(" Paris Rome").unwrap_err().to_string();
    assert!(two.contains("is 2 tokens"), "{two}");
    assert!(tok.single_token("#49152").is_err());
    assert!(tok.single_token("").is_err());
}
