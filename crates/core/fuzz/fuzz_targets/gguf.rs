//! A GGUF file from anywhere: parse it, read its configuration and vocabulary, and (when the
//! configuration is valid) build the model and tokenizer from it, dequantizing every tensor.
//! Errors are fine; panics, hangs and allocations past libFuzzer's `-malloc_limit_mb` are bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scalpel::ModelFiles;
use scalpel::device::SelectedDevice;
use scalpel::io::gguf::GgufFile;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::parse(data.to_vec()) else {
        return;
    };
    if scalpel::ModelConfig::from_gguf(&file).is_err() {
        let _ = scalpel::TextTokenizer::from_gguf(&file);
        return;
    }
    // The load builds the tokenizer itself (compiling its pre-tokenizer regex takes half of an
    // execution's time, so it is not built twice).
    let files = ModelFiles::Gguf {
        gguf: data.to_vec(),
        tokenizer_json: None,
    };
    let _ = files.load(&SelectedDevice::cpu(None).device, &mut |_, _| {});
});
