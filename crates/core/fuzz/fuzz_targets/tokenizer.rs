//! A tokenizer.json from anywhere: build the tokenizer and round-trip a short text through it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tokenizer) = scalpel::TextTokenizer::from_json(data, None, vec![])
        && let Ok(ids) = tokenizer.encode("The capital of France is Paris.")
    {
        let _ = tokenizer.decode(&ids);
    }
});
