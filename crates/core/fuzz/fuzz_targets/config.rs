//! A config.json from anywhere: read and validate it (sizes, ratios, RoPE scaling).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = scalpel::ModelConfig::from_hf_json(data) {
        let _ = config.validate();
        let _ = config.fingerprint();
    }
});
