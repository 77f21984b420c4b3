//! A real Qwen2 model, Qwen2.5-Coder-0.5B-Instruct as a Q4_K_M GGUF (`cargo xtask assets`),
//! against transformers reading the same file and LXT 2.1's own Qwen2 rules
//! (tests/fixtures/make_qwen25_fixtures.py): the tokenizer rebuilt from the GGUF vocabulary, the
//! logits after dequantizing Q4_K/Q5_0/Q6_K/Q8_0, greedy generation through the KV cache, and
//! AttnLRP and gradient × input relevance.

mod common;

use common::lxt::{Reference, compare};
use common::{asset, cpu, fixture_json, fixtures, logits, u32s};
use scalpel::relevance::RuleSet;

const GGUF: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

fn qwen25() -> &'static scalpel::LoadedModel {
    static MODEL: std::sync::OnceLock<scalpel::LoadedModel> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| {
        scalpel::ModelFiles::Gguf {
            gguf: asset(GGUF).into(),
            tokenizer_json: None,
        }
        .load(&cpu(), &mut |_, _| {})
        .unwrap()
    })
}

fn reference_bytes() -> Vec<u8> {
    std::fs::read(fixtures().join("qwen2.5/reference.safetensors")).unwrap()
}

#[test]
fn qwen25_config_tokenizer_logits_and_generation_match_transformers() {
    let loaded = qwen25();
    let (model, tokenizer) = (&loaded.model, &loaded.tokenizer);
    let c = &model.config;
    assert_eq!(c.architecture, scalpel::Architecture::Qwen2);
    assert_eq!(
        (c.num_layers, c.hidden_size, c.intermediate_size),
        (24, 896, 4864)
    );
    assert_eq!(
        (c.num_heads, c.num_kv_heads, c.vocab_size),
        (14, 2, 151_936)
    );

    let reference = fixture_json("qwen2.5/reference.json");
    for case in reference["tokenize"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            tokenizer.encode(text).unwrap(),
            u32s(&case["ids"]),
            "tokens of {text:?}"
        );
    }
    let prompt = u32s(&reference["prompt_ids"]);
    assert_eq!(
        tokenizer
            .encode(reference["prompt"].as_str().unwrap())
            .unwrap(),
        prompt
    );

    let all = logits(model, &prompt);
    let last = &all[all.len() - c.vocab_size..];
    let (_, want) = common::read_f32(&reference_bytes(), "logits");
    let err = common::lxt::rel_err(last, &want);
    println!("Qwen2.5 last-position logits: max |Δ| / max |logit| = {err:.2e}");
    assert!(err <= 1e-4, "logits relative error {err:.2e}");

    let greedy = scalpel::correct::continue_greedily(model, &prompt, 16).unwrap();
    assert_eq!(
        greedy,
        u32s(&reference["greedy"]),
        "greedy continuation {:?}",
        tokenizer.decode(&greedy)
    );
}

#[test]
fn qwen25_relevance_matches_lxt_and_autograd() {
    let model = &qwen25().model;
    for rules in [RuleSet::AttnLrp, RuleSet::Gradient] {
        let reference = Reference {
            bytes: reference_bytes(),
            rules,
        };
        let worst = compare(model, "qwen2.5", &reference, "token");
        println!("Qwen2.5 {}: worst relative error {worst:.2e}", rules.name());
        assert!(
            worst <= 1e-4,
            "{}: relative error {worst:.2e}",
            rules.name()
        );
    }
}
