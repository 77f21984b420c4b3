//! Writing a (pruned) model: as a Hugging Face checkpoint: `config.json`, the weights as
//! safetensors (Hugging Face names and layouts, each tensor in the dtype the model holds it in:
//! float32, or f16/bf16 for 16-bit weights) and `tokenizer.json`, loadable by Scalpel and by
//! `transformers`. Reloaded, it gives exactly the logits of the model it was written from.
//!
//! Large models are written in shards, as the hub stores them (`model-00001-of-00004.safetensors`
//! and `model.safetensors.index.json`): only one shard's tensors are read back at a time, so a
//! 7B model is written with a few GB beside it instead of twice its size.

pub mod gguf;
pub mod shrink;

use std::collections::{BTreeMap, HashMap};

use burn::tensor::DType;

use crate::error::{Error, Result};
use crate::io::safetensors::{OutData, write};
use crate::io::tokenizer::TextTokenizer;
use crate::model::{Model, Param};

/// The files of an exported single-file checkpoint, as bytes.
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

    /// [`Checkpoint::files`], given up rather than borrowed.
    pub fn into_files(self) -> [(&'static str, Vec<u8>); 3] {
        [
            ("config.json", self.config_json),
            ("model.safetensors", self.model_safetensors),
            ("tokenizer.json", self.tokenizer_json),
        ]
    }
}

/// Reads every parameter back from the device and writes a single-file checkpoint. `note` goes
/// into the safetensors metadata (`scalpel`), e.g. the pruning protocol.
pub async fn export_checkpoint(
    model: &Model,
    tokenizer: &TextTokenizer,
    note: Option<String>,
) -> Result<Checkpoint> {
    let shards = Shards::plan(model, u64::MAX);
    Ok(Checkpoint {
        config_json: config_json(&model.config, model.weight_dtype())?,
        model_safetensors: shards.safetensors(0, note.as_deref()).await?,
        tokenizer_json: tokenizer.to_json()?,
    })
}

/// `config.json` of a checkpoint of `config` whose weight matrices are written as `dtype`.
pub fn config_json(config: &crate::ModelConfig, dtype: DType) -> Result<Vec<u8>> {
    let mut config = config.to_hf_json();
    config["torch_dtype"] = match dtype {
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        _ => "float32",
    }
    .into();
    serde_json::to_vec_pretty(&config)
        .map_err(|e| Error::InvalidInput(format!("encoding config.json: {e}")))
}

/// A model's parameters grouped into shards of at most `max_shard_bytes` each, in checkpoint
/// order (a parameter larger than that has a shard of its own).
pub struct Shards {
    groups: Vec<Vec<(String, Param)>>,
    bytes: u64,
}

impl Shards {
    pub fn plan(model: &Model, max_shard_bytes: u64) -> Self {
        let mut groups: Vec<Vec<(String, Param)>> = vec![Vec::new()];
        let (mut in_shard, mut bytes) = (0u64, 0u64);
        for (name, param) in model.arch().parameters() {
            let size = param.bytes();
            let current = groups.last().map_or(0, Vec::len);
            if current > 0 && in_shard + size > max_shard_bytes {
                groups.push(Vec::new());
                in_shard = 0;
            }
            in_shard += size;
            bytes += size;
            if let Some(group) = groups.last_mut() {
                group.push((name, param));
            }
        }
        Self { groups, bytes }
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The bytes of every tensor, as written.
    pub fn tensor_bytes(&self) -> u64 {
        self.bytes
    }

    /// The file shard `i` is written to: `model.safetensors` when there is one shard.
    pub fn file_name(&self, i: usize) -> String {
        if self.len() == 1 {
            "model.safetensors".into()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", i + 1, self.len())
        }
    }

    /// Shard `i` as a safetensors file, its tensors read back from the device in their held
    /// dtype; `note` goes into its metadata (`scalpel`).
    pub async fn safetensors(&self, i: usize, note: Option<&str>) -> Result<Vec<u8>> {
        let host = self.read_back(i).await?;
        write(outgoing(&host), metadata(note))
    }

    /// [`Shards::safetensors`] written straight to the file at `path` (native): only the
    /// shard's tensors are in memory, not also the encoded file.
    #[cfg(not(target_family = "wasm"))]
    pub async fn write_file(
        &self,
        i: usize,
        note: Option<&str>,
        path: &std::path::Path,
    ) -> Result<()> {
        let host = self.read_back(i).await?;
        crate::io::safetensors::write_file(outgoing(&host), metadata(note), path)
    }

    /// Shard `i`'s tensors on the host, in their held dtype.
    async fn read_back(&self, i: usize) -> Result<Vec<(&str, (Vec<usize>, HeldData))>> {
        let group = self
            .groups
            .get(i)
            .ok_or_else(|| Error::InvalidInput(format!("there is no shard {i}")))?;
        let mut host = Vec::with_capacity(group.len());
        for (name, param) in group {
            host.push((name.as_str(), read_back(name, param).await?));
        }
        Ok(host)
    }

    /// `model.safetensors.index.json` naming each tensor's shard, when there is more than one.
    pub fn index_json(&self) -> Option<Vec<u8>> {
        if self.len() < 2 {
            return None;
        }
        let weight_map: BTreeMap<&str, String> = self
            .groups
            .iter()
            .enumerate()
            .flat_map(|(i, group)| group.iter().map(move |(name, _)| (name.as_str(), i)))
            .map(|(name, i)| (name, self.file_name(i)))
            .collect();
        let index = serde_json::json!({
            "metadata": { "total_size": self.bytes },
            "weight_map": weight_map,
        });
        serde_json::to_vec_pretty(&index).ok()
    }
}

/// Safetensors metadata: transformers refuses files whose metadata lacks a known `format`;
/// `note` goes under `scalpel`.
fn metadata(note: Option<&str>) -> HashMap<String, String> {
    let mut metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    if let Some(note) = note {
        metadata.insert("scalpel".into(), note.to_string());
    }
    metadata
}

fn outgoing<'a>(
    host: &'a [(&str, (Vec<usize>, HeldData))],
) -> Vec<(String, Vec<usize>, OutData<'a>)> {
    host.iter()
        .map(|(name, (shape, data))| (name.to_string(), shape.clone(), data.out()))
        .collect()
}

/// A parameter read back as held: float32 values, or the little-endian bytes of a 16-bit type.
pub(crate) enum HeldData {
    F32(Vec<f32>),
    F16(Vec<u8>),
    Bf16(Vec<u8>),
}

impl HeldData {
    pub(crate) fn out(&self) -> OutData<'_> {
        match self {
            Self::F32(v) => OutData::F32(v),
            Self::F16(b) => OutData::F16(b),
            Self::Bf16(b) => OutData::Bf16(b),
        }
    }
}

pub(crate) async fn read_back(name: &str, param: &Param) -> Result<(Vec<usize>, HeldData)> {
    let (shape, data) = (param.dims(), param.to_data().await?);
    if data.iter::<f32>().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite(format!("parameter `{name}`")));
    }
    let held = match data.dtype() {
        DType::F32 => HeldData::F32(crate::readback::to_f32(data)?),
        DType::F16 => HeldData::F16(data.as_bytes().to_vec()),
        DType::BF16 => HeldData::Bf16(data.as_bytes().to_vec()),
        other => {
            return Err(Error::Unsupported {
                what: "export dtype",
                detail: format!("parameter `{name}` is held as {other:?}"),
            });
        }
    };
    Ok((shape, held))
}
