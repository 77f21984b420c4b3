//! safetensors checkpoints: one file, or shards listed by `model.safetensors.index.json`.

use std::collections::{BTreeMap, HashMap};

use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};

use super::{FileBytes, HostTensor, StoredType, WeightSource, checked_elements};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
struct Entry {
    shard: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Absolute byte range inside the shard.
    start: usize,
    end: usize,
}

/// One or more safetensors shards, indexed by tensor name.
#[derive(Debug)]
pub struct SafetensorsSource {
    shards: Vec<(String, FileBytes)>,
    entries: BTreeMap<String, Entry>,
}

impl SafetensorsSource {
    /// Indexes the given shards (`(file name, bytes)`). A tensor present in two shards is an error.
    pub fn new<B: Into<FileBytes>>(shards: Vec<(String, B)>) -> Result<Self> {
        let shards: Vec<(String, FileBytes)> =
            shards.into_iter().map(|(n, b)| (n, b.into())).collect();
        if shards.is_empty() {
            return Err(Error::InvalidInput("no safetensors file given".into()));
        }
        let mut entries = BTreeMap::new();
        for (shard, (file, bytes)) in shards.iter().enumerate() {
            let (header_len, meta) = SafeTensors::read_metadata(bytes).map_err(|e| {
                Error::format(file.clone(), format!("not a valid safetensors file: {e}"))
            })?;
            let data_start = 8 + header_len;
            for (name, info) in meta.tensors() {
                checked_elements(&info.shape)
                    .map_err(|e| Error::format(file.clone(), format!("`{name}`: {e}")))?;
                let (s, e) = info.data_offsets;
                let (start, end) = (data_start + s, data_start + e);
                if end > bytes.len() {
                    return Err(Error::format(
                        file.clone(),
                        format!("tensor `{name}` runs past the end of the file (truncated?)"),
                    ));
                }
                let entry = Entry {
                    shard,
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    start,
                    end,
                };
                if entries.insert(name.clone(), entry).is_some() {
                    return Err(Error::format(
                        file.clone(),
                        format!("tensor `{name}` appears in more than one shard"),
                    ));
                }
            }
        }
        Ok(Self { shards, entries })
    }

    /// Names of the shard files listed in a `model.safetensors.index.json`, in first-use order.
    pub fn shard_names_from_index(index_json: &[u8]) -> Result<Vec<String>> {
        let mut names: Vec<String> = weight_map(index_json)?.into_values().collect();
        names.sort();
        names.dedup();
        for n in &names {
            if n.contains('/') || n.contains('\\') || n.starts_with('.') {
                return Err(Error::format(
                    "model.safetensors.index.json",
                    format!("shard name `{n}` is not a plain file name"),
                ));
            }
        }
        Ok(names)
    }

    /// Errors unless every tensor the index lists is in the shard it names (a checkpoint whose
    /// shards and index disagree was assembled from different saves).
    pub fn check_index(&self, index_json: &[u8]) -> Result<()> {
        let mut listed: Vec<(String, String)> = weight_map(index_json)?.into_iter().collect();
        listed.sort();
        for (tensor, shard) in listed {
            let found = self
                .entries
                .get(&tensor)
                .map(|e| self.shards[e.shard].0.as_str());
            if found != Some(shard.as_str()) {
                return Err(Error::format(
                    "model.safetensors.index.json",
                    format!(
                        "lists tensor `{tensor}` in {shard}, but it is {} (the index and the shards \
                         come from different saves: download the checkpoint again)",
                        found.map_or("in no shard".to_string(), |f| format!("in {f}"))
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The `weight_map` of a `model.safetensors.index.json`: tensor name → shard file name.
fn weight_map(index_json: &[u8]) -> Result<HashMap<String, String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: HashMap<String, String>,
    }
    serde_json::from_slice::<Index>(index_json)
        .map(|i| i.weight_map)
        .map_err(|e| Error::format("model.safetensors.index.json", e.to_string()))
}

impl WeightSource for SafetensorsSource {
    fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.entries.get(name).map(|e| e.shape.clone())
    }

    fn stored_type(&self, name: &str) -> Option<StoredType> {
        self.entries.get(name).map(|e| match e.dtype {
            Dtype::F16 => StoredType::F16,
            Dtype::BF16 => StoredType::Bf16,
            // F32, and anything `load` refuses by name.
            _ => StoredType::F32,
        })
    }

    fn load(&self, name: &str) -> Result<HostTensor> {
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| Error::MissingTensor(name.into()))?;
        let (file, bytes) = &self.shards[e.shard];
        let raw = &bytes[e.start..e.end];
        let data: Vec<f32> = match e.dtype {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::Unsupported {
                    what: "safetensors dtype",
                    detail: format!(
                        "{file}: tensor `{name}` is {other:?} (supported: F32, F16, BF16)"
                    ),
                });
            }
        };
        bytes.done_with(e.start..e.end);
        HostTensor::new(e.shape.clone(), data)
    }
}

/// Tensor data to write: borrowed, converted to little-endian bytes one tensor at a time.
pub enum OutData<'a> {
    F32(&'a [f32]),
    U8(&'a [u8]),
    /// The little-endian bytes of f16 values.
    F16(&'a [u8]),
    /// The little-endian bytes of bf16 values.
    Bf16(&'a [u8]),
}

struct OutView<'a> {
    shape: Vec<usize>,
    data: OutData<'a>,
}

impl safetensors::View for OutView<'_> {
    fn dtype(&self) -> Dtype {
        match self.data {
            OutData::F32(_) => Dtype::F32,
            OutData::U8(_) => Dtype::U8,
            OutData::F16(_) => Dtype::F16,
            OutData::Bf16(_) => Dtype::BF16,
        }
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        match self.data {
            OutData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            OutData::U8(v) | OutData::F16(v) | OutData::Bf16(v) => std::borrow::Cow::Borrowed(v),
        }
    }

    fn data_len(&self) -> usize {
        match self.data {
            OutData::F32(v) => v.len() * 4,
            OutData::U8(v) | OutData::F16(v) | OutData::Bf16(v) => v.len(),
        }
    }
}

fn views<'a>(
    tensors: Vec<(String, Vec<usize>, OutData<'a>)>,
) -> impl Iterator<Item = (String, OutView<'a>)> {
    tensors
        .into_iter()
        .map(|(name, shape, data)| (name, OutView { shape, data }))
}

/// A safetensors file of `(name, shape, data)` with string metadata (`__metadata__`).
pub fn write(
    tensors: Vec<(String, Vec<usize>, OutData<'_>)>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    safetensors::serialize(views(tensors), Some(metadata))
        .map_err(|e| Error::InvalidInput(format!("writing safetensors: {e}")))
}

/// [`write`] straight to the file at `path`, never holding the encoded file in memory (native).
#[cfg(not(target_family = "wasm"))]
pub fn write_file(
    tensors: Vec<(String, Vec<usize>, OutData<'_>)>,
    metadata: HashMap<String, String>,
    path: &std::path::Path,
) -> Result<()> {
    safetensors::serialize_to_file(views(tensors), Some(metadata), path)
        .map_err(|e| Error::InvalidInput(format!("writing safetensors to {}: {e}", path.display())))
}

/// A safetensors file Scalpel wrote (scores, masks): its metadata and tensors.
pub struct Sidecar<'a> {
    file: String,
    pub metadata: HashMap<String, String>,
    tensors: SafeTensors<'a>,
}

impl<'a> Sidecar<'a> {
    /// Parses `bytes`; `file` names it in errors.
    pub fn parse(file: &str, bytes: &'a [u8]) -> Result<Self> {
        let bad = |e: String| Error::format(file.to_string(), e);
        let (_, meta) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
        for (name, info) in meta.tensors() {
            checked_elements(&info.shape).map_err(|e| bad(format!("`{name}`: {e}")))?;
        }
        let metadata = meta.metadata().clone().unwrap_or_default();
        let tensors = SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
        Ok(Self {
            file: file.to_string(),
            metadata,
            tensors,
        })
    }

    /// The metadata value `key`, or an error naming what the file should have been.
    pub fn require(&self, key: &str, what: &str) -> Result<&str> {
        self.metadata.get(key).map(String::as_str).ok_or_else(|| {
            Error::format(
                self.file.clone(),
                format!("not a Scalpel {what} file (no `{key}` in its metadata)"),
            )
        })
    }

    pub fn names(&self) -> Vec<String> {
        self.tensors
            .names()
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    fn view(&self, name: &str, dtype: Dtype) -> Result<safetensors::tensor::TensorView<'a>> {
        let view = self
            .tensors
            .tensor(name)
            .map_err(|e| Error::format(self.file.clone(), format!("`{name}`: {e}")))?;
        if view.dtype() != dtype {
            return Err(Error::format(
                self.file.clone(),
                format!("`{name}` is {:?}, expected {dtype:?}", view.dtype()),
            ));
        }
        Ok(view)
    }

    pub fn f32(&self, name: &str) -> Result<HostTensor> {
        let view = self.view(name, Dtype::F32)?;
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        HostTensor::new(view.shape().to_vec(), data)
    }

    pub fn u8(&self, name: &str) -> Result<(Vec<usize>, Vec<u8>)> {
        let view = self.view(name, Dtype::U8)?;
        Ok((view.shape().to_vec(), view.data().to_vec()))
    }
}
