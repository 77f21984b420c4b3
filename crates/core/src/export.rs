//! Writing a (pruned) model as a Hugging Face checkpoint: `config.json`, `model.safetensors`
//! (float32, Hugging Face names and layouts) and `tokenizer.json`, loadable by Scalpel and by
//! `transformers`. Reloaded, it gives exactly the logits of the model it was written from.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::io::HostTensor;
use crate::io::safetensors::{OutData, write};
use crate::io::tokenizer::TextTokenizer;
use crate::model::{Model, Param};

/// The files of an exported checkpoint, as bytes.
#[derive(Debug)]
pub struct Checkpoint {
    pub config_json: Vec<u8>,
    pub model_safetensors: Vec<u8>,
    pub tokenizer_json: Vec<u8>,
}

impl Checkpoint {
    /// File names and contents, in the order to write them.
    pub fn files(&self) -> [(&'static str, &[u8]); 3] {
        [
            ("config.json", &self.config_json),
            ("model.safetensors", &self.model_safetensors),
            ("tokenizer.json", &self.tokenizer_json),
        ]
    }
}

/// Reads every parameter back from the device and writes the checkpoint. `note` goes into the
/// safetensors metadata (`scalpel`), e.g. the pruning protocol.
pub async fn export_checkpoint(
    model: &Model,
    tokenizer: &TextTokenizer,
    note: Option<String>,
) -> Result<Checkpoint> {
    let mut host = Vec::new();
    for (name, param) in model.arch().parameters() {
        let (shape, data) = match param {
            Param::Vector(t) => (t.dims().to_vec(), crate::readback::to_vec_async(t).await?),
            Param::Matrix(t) => (t.dims().to_vec(), crate::readback::to_vec_async(t).await?),
        };
        if data.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!("parameter `{name}`")));
        }
        host.push((name, HostTensor::new(shape, data)?));
    }
    // transformers refuses safetensors files whose metadata lacks a known `format`.
    let mut metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    if let Some(note) = note {
        metadata.insert("scalpel".into(), note);
    }
    let tensors = host
        .iter()
        .map(|(name, t)| (name.clone(), t.shape.clone(), OutData::F32(&t.data)))
        .collect();
    let model_safetensors = write(tensors, metadata)?;
    let config_json = serde_json::to_vec_pretty(&model.config.to_hf_json())
        .map_err(|e| Error::InvalidInput(format!("encoding config.json: {e}")))?;
    Ok(Checkpoint {
        config_json,
        model_safetensors,
        tokenizer_json: tokenizer.to_json()?,
    })
}
