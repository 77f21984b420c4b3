//! Hostile or mistaken input gives a clear error naming the problem, never a panic.

mod common;

use common::*;
use scalpel::generate::{GenerateOptions, Generator};
use scalpel::io::gguf::GgufFile;
use scalpel::io::safetensors::SafetensorsSource;
use scalpel::{Error, ModelConfig, ModelFiles};

fn fixture(name: &str, file: &str) -> Vec<u8> {
    std::fs::read(fixtures().join("models").join(name).join(file)).unwrap()
}

/// A GGUF v3 header with one tensor of the given dims and no data.
fn gguf_with_tensor(dims: &[u64]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes()); // tensors
    b.extend(0u64.to_le_bytes()); // metadata entries
    b.extend(1u64.to_le_bytes());
    b.push(b'x');
    b.extend((dims.len() as u32).to_le_bytes());
    for d in dims {
        b.extend(d.to_le_bytes());
    }
    b.extend(0u32.to_le_bytes()); // F32
    b.extend(0u64.to_le_bytes()); // offset
    // Pad to the 32-byte data alignment and add a little data, so only the size claim is wrong.
    b.resize(b.len().div_ceil(32) * 32 + 16, 0);
    b
}

#[test]
fn gguf_not_gguf_and_truncated() {
    let err = GgufFile::parse(b"PK\x03\x04 a zip file".to_vec()).unwrap_err();
    assert!(err.to_string().contains("not a GGUF file"), "{err}");
    let real = asset("SmolLM2-135M-Instruct.Q4_1.gguf");
    for cut in [3, 20, 4096, real.len() / 2, real.len() - 1] {
        let err = GgufFile::parse(real[..cut].to_vec()).unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "cut at {cut}: {err}");
    }
}

#[test]
fn gguf_huge_tensor_is_rejected_before_allocating() {
    // 10^12 f32 elements (4 TB) claimed by a 60-byte file.
    let err = GgufFile::parse(gguf_with_tensor(&[1_000_000, 1_000_000])).unwrap_err();
    assert!(err.to_string().contains("runs past the end"), "{err}");
    let err = GgufFile::parse(gguf_with_tensor(&[u64::MAX, 3])).unwrap_err();
    assert!(err.to_string().contains("overflow"), "{err}");
}

#[test]
fn gguf_absurd_counts_are_rejected() {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(u64::MAX.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    let err = GgufFile::parse(b).unwrap_err();
    assert!(err.to_string().contains("cannot fit"), "{err}");
    let mut b = b"GGUF".to_vec();
    b.extend(1u32.to_le_bytes());
    assert!(
        GgufFile::parse(b)
            .unwrap_err()
            .to_string()
            .contains("GGUF version")
    );
}

#[test]
fn unknown_model_type_is_named() {
    let err =
        ModelConfig::from_hf_json(br#"{"model_type": "gpt_neox", "hidden_size": 8}"#).unwrap_err();
    assert!(err.to_string().contains("gpt_neox"), "{err}");
    let err = ModelConfig::from_hf_json(b"{not json").unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");
}

#[test]
fn inconsistent_config_is_rejected() {
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&fixture("llama-gqa-tied", "config.json")).unwrap();
    cfg["num_key_value_heads"] = 3.into();
    let err = ModelConfig::from_hf_json(cfg.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("num_kv_heads"), "{err}");
}

/// Settings a Llama-style block would otherwise drop without a word are refused, naming them.
#[test]
fn configs_the_block_cannot_honour_are_refused() {
    let with = |name: &str, key: &str, value: serde_json::Value| {
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&fixture(name, "config.json")).unwrap();
        cfg[key] = value;
        ModelConfig::from_hf_json(cfg.to_string().as_bytes())
    };
    let err = with("qwen2-untied", "use_sliding_window", true.into()).unwrap_err();
    assert!(err.to_string().contains("sliding-window"), "{err}");
    let err = with("llama-gqa-tied", "attention_bias", true.into()).unwrap_err();
    assert!(err.to_string().contains("attention_bias"), "{err}");
    let err = with("qwen3-tied-qknorm", "mlp_bias", true.into()).unwrap_err();
    assert!(err.to_string().contains("mlp_bias"), "{err}");
    let err = with("mistral-window4", "sliding_window", 0.into()).unwrap_err();
    assert!(err.to_string().contains("sliding_window"), "{err}");
    let err = with("phi3-fused", "partial_rotary_factor", 0.75.into()).unwrap_err();
    assert!(err.to_string().contains("partial_rotary_factor"), "{err}");
    let longrope =
        serde_json::json!({"rope_type": "longrope", "short_factor": [1.0], "long_factor": [1.0]});
    let err = with("phi3-fused", "rope_scaling", longrope).unwrap_err();
    assert!(err.to_string().contains("longrope"), "{err}");
    let mistral = with("mistral-window4", "sliding_window", serde_json::Value::Null).unwrap();
    assert_eq!(mistral.rotary().unwrap().sliding_window, None);
}

#[test]
fn wrong_shapes_are_named() {
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&fixture("llama-gqa-tied", "config.json")).unwrap();
    cfg["intermediate_size"] = 100.into();
    let files = ModelFiles::HuggingFace {
        config_json: cfg.to_string().into_bytes(),
        shards: vec![(
            "model.safetensors".into(),
            fixture("llama-gqa-tied", "model.safetensors").into(),
        )],
        tokenizer_json: Some(
            br#"{"version":"1.0","model":{"type":"WordLevel","vocab":{"a":0},"unk_token":"a"}}"#
                .to_vec(),
        ),
    };
    let err = files.load(&cpu(), &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    assert!(err.to_string().contains("mlp.gate_proj.weight"), "{err}");
}

#[test]
fn missing_tokenizer_is_named() {
    let files = ModelFiles::HuggingFace {
        config_json: fixture("llama-gqa-tied", "config.json"),
        shards: vec![(
            "model.safetensors".into(),
            fixture("llama-gqa-tied", "model.safetensors").into(),
        )],
        tokenizer_json: None,
    };
    let err = files.load(&cpu(), &mut |_, _| {}).unwrap_err();
    assert!(
        err.to_string().contains("tokenizer.json is missing"),
        "{err}"
    );
}

#[test]
fn truncated_safetensors_is_rejected() {
    let bytes = fixture("llama-gqa-tied", "model.safetensors");
    for cut in [4, 100, bytes.len() - 10] {
        let err = SafetensorsSource::new(vec![("model.safetensors".into(), bytes[..cut].to_vec())])
            .unwrap_err();
        assert!(err.to_string().contains("model.safetensors"), "{err}");
    }
}

#[test]
fn empty_long_and_out_of_vocabulary_prompts() {
    let model = load_fixture_model("llama-gqa-tied");
    let opts = GenerateOptions::default();
    let err = Generator::new(&model, &[], opts.clone()).err().unwrap();
    assert!(err.to_string().contains("empty"), "{err}");
    let long = vec![5u32; model.config.max_position_embeddings];
    let err = Generator::new(&model, &long, opts.clone()).err().unwrap();
    assert!(err.to_string().contains("context"), "{err}");
    let err = Generator::new(&model, &[5, 100_000], opts).err().unwrap();
    assert!(err.to_string().contains("outside the vocabulary"), "{err}");
}

#[test]
fn generation_stops_at_the_context_limit() {
    let model = load_fixture_model("llama-gqa-tied");
    let ctx = model.config.max_position_embeddings;
    let options = GenerateOptions {
        max_new_tokens: 1000,
        stop_at_eos: false,
        ..Default::default()
    };
    let (tokens, stop) =
        scalpel::generate::generate(&model, &[5, 6, 7], options, |_| true).unwrap();
    assert_eq!(stop, scalpel::generate::StopReason::ContextFull);
    assert_eq!(tokens.len() + 3, ctx);
}

/// Fuzzing regressions (crates/core/fuzz, target `tokenizer`): a control character, and a byte
/// that is not UTF-8, inside the decoder's JSON made tokenizers 0.23 panic; each must be an error.
/// So must a BPE merge whose result is longer than any vocabulary token (a slice panic there).
#[test]
fn a_tokenizer_json_with_a_broken_decoder_is_an_error_not_a_panic() {
    for file in [
        "tokenizer-decoder-control-char.json",
        "tokenizer-decoder-invalid-utf8.json",
    ] {
        let bytes = std::fs::read(fixtures().join("fuzz").join(file)).unwrap();
        let err = scalpel::TextTokenizer::from_json(&bytes, None, vec![]).unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{file}: {err}");
    }
    let bytes =
        std::fs::read(fixtures().join("fuzz/tokenizer-bpe-merge-beyond-vocab.json")).unwrap();
    let err = scalpel::TextTokenizer::from_json(&bytes, None, vec![]).unwrap_err();
    assert!(
        err.to_string().contains("which is not in the vocabulary"),
        "{err}"
    );
}

/// A GPU holds each tensor in one buffer: a model whose largest matrix exceeds the adapter's
/// storage-binding limit is refused before any upload, naming the matrix and the limit.
#[test]
fn a_model_over_the_storage_binding_limit_is_refused_before_upload() {
    let files = scalpel::ModelFiles::Gguf {
        gguf: asset(SMOLLM2_GGUF).into(),
        tokenizer_json: None,
    };
    let config = files.config().unwrap();
    // 49152 × 576 float32 = 113 MB: under WebGPU's default 128 MiB, over a 64 MiB limit.
    scalpel::device::check_fits(&config, burn::tensor::DType::F32, 128 << 20).unwrap();
    let options = scalpel::LoadOptions {
        max_binding_bytes: Some(64 << 20),
        ..Default::default()
    };
    let err = files
        .load_with(&cpu(), options, &mut |_, _| {
            panic!("nothing may be uploaded")
        })
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("the token embedding (49152 × 576 float32)") && text.contains("67108864"),
        "{text}"
    );
}

/// A model that would not fit in the memory it may take is refused before anything is loaded,
/// naming the bytes needed and available and, when float32 is what does not fit, what f16 needs.
#[test]
fn a_model_over_the_memory_limit_is_refused_before_loading() {
    use burn::tensor::DType;
    let shards = || {
        vec![(
            "model.safetensors".to_string(),
            scalpel::io::FileBytes::from(fixture("llama-gqa-tied", "model.safetensors")),
        )]
    };
    let source = scalpel::io::safetensors::SafetensorsSource::new(shards()).unwrap();
    let (full, half) = (
        scalpel::loader::resident_bytes(&source, DType::F32),
        scalpel::loader::resident_bytes(&source, DType::F16),
    );
    assert!(half < full);
    for (limit, hint) in [
        ((full + half) / 2, "--dtype f16 needs"),
        (half / 2, "close other programs"),
    ] {
        let files = ModelFiles::HuggingFace {
            config_json: fixture("llama-gqa-tied", "config.json"),
            shards: shards(),
            tokenizer_json: Some(
                br#"{"version":"1.0","model":{"type":"WordLevel","vocab":{"a":0},"unk_token":"a"}}"#
                    .to_vec(),
            ),
        };
        let options = scalpel::LoadOptions {
            max_memory_bytes: Some(limit),
            ..Default::default()
        };
        let err = files
            .load_with(&cpu(), options, &mut |_, _| panic!("nothing may be loaded"))
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, Error::TooLarge { .. })
                && text.contains("float32 weights")
                && text.contains(hint),
            "{text}"
        );
    }
}

/// A scoring job whose per-weight sums would not fit beside the model is refused before its
/// first pass, naming the bytes and what keeps no per-weight sums; scores of neurons keep none
/// and run under the same limit; with a scratch directory the sums spill there instead.
#[test]
fn scoring_over_the_memory_limit_is_refused_before_the_first_pass() {
    use scalpel::relevance::{MemoryLimits, memory_needed};
    use scalpel::score::{ScoreMethod, Scorer};
    use scalpel::unit::Granularity;
    let model = load_fixture_model("llama-gqa-tied");
    let r = reference(&model, 2, 7);
    let weights: u64 = model
        .linear_ids()
        .into_iter()
        .map(|id| model.linear_shape(id).map(|[r, c]| (r * c) as u64).unwrap())
        .sum();
    let (_, pass) = memory_needed(&model.config, 7, true);
    let limits = |bytes| MemoryLimits {
        max_buffer_bytes: None,
        max_total_bytes: Some(bytes),
    };
    // Σ |R| only: 4 bytes per weight.
    let needed = 4 * weights + pass;
    let scorer = |granularity, limit| {
        Scorer::at(
            &model,
            ScoreMethod::LrpAbs,
            granularity,
            Some(r.clone()),
            limits(limit),
        )
        .unwrap()
    };
    let err = scorer(Granularity::Weights, needed - 1).step().unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, Error::TooLarge { .. })
            && text.contains("per-weight sums")
            && text.contains(&format!("{needed} bytes")),
        "{text}"
    );
    assert!(scorer(Granularity::Weights, needed).step().is_ok());
    assert!(scorer(Granularity::Neurons, pass).step().is_ok());
    // Over the limit with a scratch directory, the sums spill to a file there when its disk
    // has room for them, and are refused, naming TMPDIR, when it has not.
    let scratch = |free_bytes| scalpel::relevance::Scratch {
        dir: std::env::temp_dir(),
        free_bytes: Some(free_bytes),
    };
    let mut spilling = scorer(Granularity::Weights, needed - 1).spilling_to(scratch(4 * weights));
    assert!(!spilling.spilled());
    assert!(spilling.step().is_ok() && spilling.spilled());
    let mut in_memory = scorer(Granularity::Weights, needed).spilling_to(scratch(4 * weights));
    assert!(in_memory.step().is_ok() && !in_memory.spilled());
    let err = scorer(Granularity::Weights, needed - 1)
        .spilling_to(scratch(4 * weights - 1))
        .step()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, Error::TooLarge { .. }) && text.contains("TMPDIR"),
        "{text}"
    );
    // Keeping Σ R as well needs twice the sums.
    let both = scorer(Granularity::Weights, needed)
        .keeping_signed_sums()
        .step();
    assert!(both.is_err());
}

/// A sharded checkpoint whose index places a tensor in another shard, or lists one that no shard
/// has, is refused naming the tensor and both places; the fixture's own index passes.
#[test]
fn an_index_that_disagrees_with_its_shards_is_refused() {
    let model = "llama-untied-llama3rope";
    let index = fixture(model, "model.safetensors.index.json");
    let names = SafetensorsSource::shard_names_from_index(&index).unwrap();
    assert_eq!(names.len(), 3);
    let source = SafetensorsSource::new(
        names
            .iter()
            .map(|n| (n.clone(), fixture(model, n)))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    source.check_index(&index).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&index).unwrap();
    let map = json["weight_map"].as_object().unwrap();
    let (tensor, shard) = map
        .iter()
        .map(|(t, s)| (t.clone(), s.as_str().unwrap().to_string()))
        .next()
        .unwrap();
    let other = names.iter().find(|n| **n != shard).unwrap().clone();
    let with = |changes: &[(&str, &str)]| {
        let mut changed = map.clone();
        for (t, s) in changes {
            changed.insert(t.to_string(), s.to_string().into());
        }
        serde_json::to_vec(&serde_json::json!({ "weight_map": changed })).unwrap()
    };
    let err = source
        .check_index(&with(&[(&tensor, &other)]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&tensor) && err.contains(&other) && err.contains(&format!("in {shard}")),
        "{err}"
    );
    let err = source
        .check_index(&with(&[("model.layers.9.mlp.up_proj.weight", &other)]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("in no shard"), "{err}");
}
