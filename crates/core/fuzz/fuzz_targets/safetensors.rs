//! A safetensors shard and a shard index from anywhere: parse them and convert every tensor.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scalpel::io::WeightSource;
use scalpel::io::safetensors::SafetensorsSource;

fuzz_target!(|data: &[u8]| {
    let _ = SafetensorsSource::shard_names_from_index(data);
    let Ok(source) = SafetensorsSource::new(vec![("model.safetensors".into(), data.to_vec())])
    else {
        return;
    };
    for name in source.names() {
        let _ = source.shape(&name);
        let _ = source.load(&name);
    }
});
