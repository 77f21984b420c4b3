//! Dequantization of every supported ggml type against gguf-py, llama.cpp's own Python reference
//! (fixtures from tests/fixtures/make_quant_fixtures.py).

mod common;

use common::*;
use safetensors::SafeTensors;
use scalpel::io::quant::{GgmlType, dequantize};

#[test]
fn every_type_matches_gguf_py() {
    let bytes = std::fs::read(fixtures().join("quant/blocks.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let types = [
        ("F32", GgmlType::F32),
        ("F16", GgmlType::F16),
        ("BF16", GgmlType::BF16),
        ("Q4_0", GgmlType::Q4_0),
        ("Q4_1", GgmlType::Q4_1),
        ("Q5_0", GgmlType::Q5_0),
        ("Q5_1", GgmlType::Q5_1),
        ("Q8_0", GgmlType::Q8_0),
        ("Q4_K", GgmlType::Q4K),
        ("Q6_K", GgmlType::Q6K),
    ];
    for (name, ty) in types {
        let raw = st.tensor(&format!("{name}.raw")).unwrap().data().to_vec();
        let (shape, expected) = read_f32(&bytes, &format!("{name}.dequant"));
        let n: usize = shape.iter().product();
        let got = dequantize(ty, &raw, n).unwrap();
        // Both sides compute f16-scale × small integer in f32; allow one rounding step.
        let tol = expected.iter().fold(0f32, |m, v| m.max(v.abs())) * 1e-6;
        let diff = max_abs_diff(&got, &expected);
        assert!(diff <= tol, "{name}: max |Δ| = {diff} (tolerance {tol})");
    }
}

#[test]
fn wrong_byte_count_is_an_error() {
    let err = dequantize(GgmlType::Q4_1, &[0u8; 19], 32).unwrap_err();
    assert!(err.to_string().contains("needs 20 bytes"), "{err}");
    let err = dequantize(GgmlType::Q8_0, &[0u8; 34], 31).unwrap_err();
    assert!(err.to_string().contains("multiple"), "{err}");
}
