//! Logits of tiny random Llama, Mistral, Phi-3, Qwen2, Qwen3, OPT and GPT-2 checkpoints match Hugging Face `transformers`
//! (fixtures from tests/fixtures/make_fixtures.py), for a full forward and token by token
//! through the KV cache.

mod common;

use common::cpu;
use common::transformers::check_logits;

fn check_model(name: &str) {
    check_logits(name, &cpu());
}

#[test]
fn llama_gqa_tied_matches_transformers() {
    check_model("llama-gqa-tied");
}

#[test]
fn llama_untied_llama3_rope_bf16_sharded_matches_transformers() {
    check_model("llama-untied-llama3rope");
}

/// The 9-token input reaches past the window of 4, through the KV cache too.
#[test]
fn mistral_sliding_window_matches_transformers() {
    check_model("mistral-window4");
}

/// Fused q/k/v and gate/up matrices, and a sliding window of 5 under the 9-token input.
#[test]
fn phi3_fused_projections_sliding_window_matches_transformers() {
    check_model("phi3-fused");
}

/// Conv1D weights with q, k and v fused in `c_attn`, GELU, learned positions from 0.
#[test]
fn gpt2_conv1d_fused_attention_gelu_matches_transformers() {
    check_model("gpt2-tied");
}

#[test]
fn qwen2_qkv_biases_untied_matches_transformers() {
    check_model("qwen2-untied");
}

#[test]
fn qwen3_per_head_qk_norms_own_head_dim_matches_transformers() {
    check_model("qwen3-tied-qknorm");
}

#[test]
fn opt_pre_layernorm_f16_matches_transformers() {
    check_model("opt-pre-ln");
}

#[test]
fn opt_350m_style_post_layernorm_projections_matches_transformers() {
    check_model("opt-350m-style");
}

/// The same tiny checkpoints as llama.cpp writes them (tests/fixtures/make_gguf_fixtures.py:
/// llama.cpp's tensor names, fused and transposed layouts, metadata), read through Scalpel's GGUF
/// path, against transformers' forward of the checkpoint the file describes.
#[test]
fn gguf_files_of_each_family_match_transformers() {
    use scalpel::{Architecture, ModelFiles};
    for (name, architecture) in [
        ("qwen2-untied", Architecture::Qwen2),
        ("qwen3-tied-qknorm", Architecture::Qwen3),
        ("phi3-fused", Architecture::Phi3),
        ("gpt2-tied", Architecture::Gpt2),
    ] {
        let dir = common::fixtures().join("gguf");
        let gguf = std::fs::read(dir.join(format!("{name}.gguf"))).unwrap();
        // The files' placeholder vocabulary has no merges to rebuild a tokenizer from.
        let tokenizer = common::tiny_tokenizer(128).to_json().unwrap();
        let loaded = ModelFiles::Gguf {
            gguf: gguf.into(),
            tokenizer_json: Some(tokenizer),
        }
        .load(&cpu(), &mut |_, _| {})
        .unwrap();
        assert_eq!(loaded.model.config.architecture, architecture, "{name}");
        let reference = std::fs::read(dir.join(format!("{name}.logits.safetensors"))).unwrap();
        let (shape, expected) = common::read_f32(&reference, "logits");
        let ids = [5, 19, 33, 47, 64, 78, 93, 110, 127];
        let positions: Vec<usize> = (0..shape[1]).collect();
        let what = format!("{name} from GGUF");
        common::transformers::check_logits_at(
            &loaded.model,
            &ids,
            &positions,
            4,
            &[(&what, &expected, common::transformers::TOLERANCE)],
        );
    }
}

/// `--dtype auto` holds the bf16 and f16 checkpoints as f16 and float32 ones as float32
/// (`weight_dtype` is what the page's device badge shows); f32, f16 and bf16 hold any checkpoint so.
#[test]
fn weights_are_held_in_the_dtype_asked_for() {
    use burn::tensor::DType;
    use scalpel::WeightDtype;
    let cases = [
        ("llama-untied-llama3rope", WeightDtype::Auto, DType::F16),
        ("opt-pre-ln", WeightDtype::Auto, DType::F16),
        ("llama-gqa-tied", WeightDtype::Auto, DType::F32),
        ("llama-untied-llama3rope", WeightDtype::F32, DType::F32),
        ("llama-gqa-tied", WeightDtype::F16, DType::F16),
        ("llama-untied-llama3rope", WeightDtype::Bf16, DType::BF16),
        ("opt-pre-ln", WeightDtype::Bf16, DType::BF16),
    ];
    for (name, asked, held) in cases {
        let model = common::load_fixture_model_as(name, &cpu(), asked);
        assert_eq!(model.weight_dtype(), held, "{name} as {asked}");
    }
}

/// 16-bit weights against transformers in float32: f16 (the bf16 and f16 fixtures under
/// `auto`, and every fixture under `f16`) within f16's rounding; bf16 exactly, since its
/// products are float32 products of the widened weight.
#[test]
fn sixteen_bit_weights_match_transformers_within_their_rounding() {
    use common::transformers::{F16_TOLERANCE, LOGIT_FIXTURES, TOLERANCE, check_logits_as};
    use scalpel::WeightDtype;
    for name in LOGIT_FIXTURES {
        for dtype in [WeightDtype::Auto, WeightDtype::F16] {
            let worst = check_logits_as(name, &cpu(), dtype, F16_TOLERANCE);
            println!("{name} as {dtype}: max |Δlogit| {worst:.2e}");
        }
    }
    check_logits_as(
        "llama-untied-llama3rope",
        &cpu(),
        WeightDtype::Bf16,
        TOLERANCE,
    );
}

/// A file source that records which byte ranges the loader says it is done with.
struct Recording {
    bytes: Vec<u8>,
    released: std::sync::Arc<std::sync::Mutex<Vec<std::ops::Range<usize>>>>,
}

impl scalpel::io::FileSource for Recording {
    fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn done_with(&self, range: std::ops::Range<usize>) {
        self.released.lock().unwrap().push(range);
    }
}

/// Loading hands every tensor's bytes back once it is converted (a memory-mapped file drops them
/// there, so loading never holds the whole file besides the model), each exactly once.
#[test]
fn loading_releases_each_tensors_bytes_once_converted() {
    let dir = common::fixtures().join("models/llama-untied-llama3rope");
    let released = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let index = std::fs::read(dir.join("model.safetensors.index.json")).unwrap();
    let names =
        scalpel::io::safetensors::SafetensorsSource::shard_names_from_index(&index).unwrap();
    let shards = names
        .iter()
        .map(|n| {
            let source = Recording {
                bytes: std::fs::read(dir.join(n)).unwrap(),
                released: released.clone(),
            };
            (n.to_string(), scalpel::io::FileBytes::new(source))
        })
        .collect();
    let files = scalpel::ModelFiles::HuggingFace {
        config_json: std::fs::read(dir.join("config.json")).unwrap(),
        shards,
        tokenizer_json: Some(
            br#"{"version":"1.0","model":{"type":"WordLevel","vocab":{"a":0},"unk_token":"a"}}"#
                .to_vec(),
        ),
    };
    let mut loaded = 0;
    files
        .load(&cpu(), &mut |done, _| loaded = done)
        .expect("the fixture loads");
    let ranges = released.lock().unwrap().clone();
    assert_eq!(ranges.len(), loaded, "one release per tensor loaded");
    assert!(ranges.iter().all(|r| r.start < r.end));
}
