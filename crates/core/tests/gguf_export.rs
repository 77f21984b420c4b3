//! GGUF export: every family llama.cpp names is written with llama.cpp's tensor names, layouts
//! and metadata and reads back through Scalpel's GGUF path (F16 exactly the f16 of each weight;
//! Q8_0 and Q4_0 within their rounding), with its tokenizer; what cannot be written so is
//! refused by name. `tests/fixtures/make_gguf_export_fixtures.py` reads the written files with
//! gguf-py (llama.cpp's own reader) and records what it finds; the files must still be written
//! byte for byte as committed, and Scalpel must read what gguf-py read.

mod common;

use common::*;
use half::f16;
use scalpel::export::gguf::{GgufExport, GgufType};
use scalpel::io::gguf::{GgufFile, MetaValue};
use scalpel::{Model, ModelFiles, TextTokenizer};

/// A byte-level BPE tokenizer (GPT-2's pre-tokenizer) of 97 tokens: printable ASCII, two merges
/// and an end-of-text token; the export pads it to the model's 128 rows.
fn bpe_tokenizer() -> TextTokenizer {
    let mut vocab = serde_json::Map::new();
    for (id, b) in (33u8..=126).enumerate() {
        vocab.insert((b as char).to_string(), id.into());
    }
    vocab.insert("th".into(), 94.into());
    vocab.insert("the".into(), 95.into());
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{"id": 96, "content": "<|endoftext|>", "single_word": false,
            "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": false, "vocab": vocab, "merges": [["t", "h"], ["th", "e"]]},
    });
    TextTokenizer::from_json(json.to_string().as_bytes(), None, vec![96]).unwrap()
}

fn export(model: &Model, ty: GgufType) -> Vec<u8> {
    let plan = GgufExport::plan(model, &bpe_tokenizer(), ty, "tiny").unwrap();
    let bytes = pollster::block_on(plan.to_bytes()).unwrap();
    assert_eq!(bytes.len() as u64, plan.file_size());
    bytes
}

fn reload(bytes: Vec<u8>) -> scalpel::LoadedModel {
    ModelFiles::Gguf {
        gguf: bytes.into(),
        tokenizer_json: None,
    }
    .load(&cpu(), &mut |_, _| {})
    .unwrap()
}

/// The families llama.cpp names, as Scalpel exports them (Mistral and Phi-3's fixtures have a
/// sliding window, Llama's untied one Llama 3 RoPE scaling: refused below).
const EXPORTED: [&str; 4] = [
    "llama-gqa-tied",
    "qwen2-untied",
    "qwen3-tied-qknorm",
    "gpt2-tied",
];

#[test]
fn f16_exports_read_back_as_the_f16_of_every_weight() {
    for name in EXPORTED {
        let model = load_fixture_model(name);
        let back = reload(export(&model, GgufType::F16));
        assert_eq!(
            back.model.config.architecture, model.config.architecture,
            "{name}"
        );
        assert_eq!(
            back.model.config.vocab_size, model.config.vocab_size,
            "{name}"
        );
        for id in model.linear_ids() {
            let want: Vec<f32> = scalpel::readback::to_vec(model.weight(id).unwrap())
                .unwrap()
                .into_iter()
                .map(|v| f16::from_f32(v).to_f32())
                .collect();
            let got = scalpel::readback::to_vec(back.model.weight(id).unwrap()).unwrap();
            assert_eq!(got, want, "{name} {id}");
        }
        let ids = [5, 19, 33, 47, 64, 78, 93, 110];
        let (a, b) = (logits_last(&model, &ids), logits_last(&back.model, &ids));
        assert_close(&a, &b, 1e-2, &format!("{name}: logits"));
        // The tokenizer comes back from the file's own metadata.
        let tokenizer = &back.tokenizer;
        assert_eq!(
            tokenizer.encode("the cat!").unwrap(),
            bpe_tokenizer().encode("the cat!").unwrap()
        );
        let eos = model.config.eos_token_ids.first().copied().unwrap_or(96);
        assert_eq!(tokenizer.eos_token_ids, vec![eos], "{name}");
    }
}

#[test]
fn quantized_exports_stay_within_their_rounding() {
    let model = load_fixture_model("llama-gqa-tied");
    // The step d is max|block| / 127 (Q8_0) or / 8 (Q4_0), stored as f16: Q8_0 rounds to within
    // half a step plus 127 steps' f16 error (2⁻¹¹ each); Q4_0 clamps its top value (+8d → 7d).
    for (ty, steps, bound) in [
        (GgufType::Q8_0, 127.0f32, 0.57),
        (GgufType::Q4_0, 8.0, 1.01),
    ] {
        let bytes = export(&model, ty);
        let file = GgufFile::parse(bytes.clone()).unwrap();
        let quantized = file
            .tensors
            .iter()
            .filter(|t| t.name.starts_with("blk.") && t.shape.len() == 2)
            .count();
        assert!(quantized > 0);
        let back = reload(bytes);
        for id in model.linear_ids() {
            let want = scalpel::readback::to_vec(model.weight(id).unwrap()).unwrap();
            let got = scalpel::readback::to_vec(back.model.weight(id).unwrap()).unwrap();
            let [_, cols] = model.linear_shape(id).unwrap();
            for (row, (w, g)) in want.chunks(cols).zip(got.chunks(cols)).enumerate() {
                for (block, (w, g)) in w.chunks(32).zip(g.chunks(32)).enumerate() {
                    let amax = w.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let worst = w.iter().zip(g).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                    assert!(
                        worst <= bound * amax / steps + 1e-7,
                        "{ty:?} {id} row {row} block {block}: {worst} (max {amax})"
                    );
                }
            }
        }
    }
}

#[test]
fn what_llama_cpp_cannot_read_back_is_refused_by_name() {
    let tokenizer = bpe_tokenizer();
    for (name, message) in [
        ("opt-pre-ln", "OPT models: Scalpel writes GGUF only for"),
        ("llama-untied-llama3rope", "RoPE scaling"),
        ("mistral-window4", "Scalpel writes GGUF only for"),
        ("phi3-fused", "5-token sliding window"),
    ] {
        let model = load_fixture_model(name);
        let err = GgufExport::plan(&model, &tokenizer, GgufType::F16, "x")
            .err()
            .unwrap_or_else(|| panic!("{name} should be refused"))
            .to_string();
        assert!(err.contains(message), "{name}: {err}");
    }
    let model = load_fixture_model("llama-gqa-tied");
    let err = GgufExport::plan(&model, &tiny_tokenizer(128), GgufType::F16, "x")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("only byte-level BPE"), "{err}");
}

/// The committed files are what the writer writes today, and Scalpel reads in them what
/// gguf-py read (`make_gguf_export_fixtures.py`: metadata, tensor names, types, shapes and
/// dequantized values), and every Q8_0 / Q4_0 tensor is byte for byte what gguf-py's own
/// quantizer makes of the same tensor of the f32 file.
#[test]
fn gguf_py_reads_the_exported_files_as_scalpel_does() {
    let dir = fixtures().join("gguf-export");
    let model = load_fixture_model("llama-gqa-tied");
    let file_name = |ty: GgufType| format!("llama-gqa-tied.{}.gguf", ty.name());
    if std::env::var_os("SCALPEL_WRITE_GGUF_FIXTURES").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for ty in GgufType::ALL {
            std::fs::write(dir.join(file_name(ty)), export(&model, ty)).unwrap();
        }
        return;
    }
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    for ty in GgufType::ALL {
        let file_name = file_name(ty);
        let committed = std::fs::read(dir.join(&file_name)).unwrap();
        assert!(
            export(&model, ty) == committed,
            "{file_name}: the writer changed; regenerate the fixtures"
        );
        let file = GgufFile::parse(committed).unwrap();
        let reference = &expected[&file_name];
        for (key, value) in reference["metadata"].as_object().unwrap() {
            let ours = file
                .get(key)
                .unwrap_or_else(|| panic!("{file_name}: no {key}"));
            assert_eq!(meta_text(ours), meta_json_text(value), "{file_name} {key}");
        }
        let tensors = reference["tensors"].as_object().unwrap();
        assert_eq!(tensors.len(), file.tensors.len(), "{file_name}");
        for info in &file.tensors {
            let want = &tensors[&info.name];
            let what = format!("{file_name} {}", info.name);
            assert_eq!(
                format!("{:?}", info.ty),
                want["type"].as_str().unwrap(),
                "{what}"
            );
            let shape: Vec<usize> = want["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(info.shape, shape, "{what}");
            let values = file.load(info).unwrap().data;
            let sum: f64 = values.iter().map(|&v| f64::from(v)).sum();
            let want_sum = want["sum"].as_f64().unwrap();
            assert!(
                (sum - want_sum).abs() <= 1e-5 * (1.0 + want_sum.abs()),
                "{what}: sum {sum} vs {want_sum}"
            );
            let first: Vec<f32> = want["first"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(&values[..first.len()], &first[..], "{what}");
            if let Some(same) = want.get("same_as_gguf_py_quantize") {
                assert_eq!(same, true, "{what}: gguf-py quantizes it differently");
            }
        }
    }
}

/// A metadata value as text: strings as they are, numbers in f64, arrays as their length and
/// first four items (what the fixture records).
fn meta_text(v: &MetaValue) -> String {
    match v {
        MetaValue::String(s) => s.clone(),
        MetaValue::Array(items) => format!(
            "{} [{}]",
            items.len(),
            items
                .iter()
                .take(4)
                .map(meta_text)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        MetaValue::Bool(b) => b.to_string(),
        other => format!("{}", other.as_f64().unwrap() as f32),
    }
}

fn meta_json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(a) => format!(
            "{} [{}]",
            a["len"],
            a["first"]
                .as_array()
                .unwrap()
                .iter()
                .map(meta_json_text)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        serde_json::Value::Bool(b) => b.to_string(),
        other => format!("{}", other.as_f64().unwrap() as f32),
    }
}
