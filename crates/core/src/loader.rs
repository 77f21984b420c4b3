//! From a set of files (as bytes) to a ready model + tokenizer.

use burn::tensor::{DType, Device};

use crate::error::{Error, Result};
use crate::io::gguf::{GgufFile, GgufSource};
use crate::io::safetensors::SafetensorsSource;
use crate::io::tokenizer::TextTokenizer;
use crate::io::{FileBytes, WeightSource};
use crate::model::{Model, ModelConfig, WeightDtype};

/// The files of one checkpoint, in memory or memory-mapped ([`FileBytes`]).
#[derive(Debug)]
pub enum ModelFiles {
    /// A llama.cpp GGUF file; the tokenizer comes from its metadata unless a tokenizer.json is given.
    Gguf {
        gguf: FileBytes,
        tokenizer_json: Option<Vec<u8>>,
    },
    /// Hugging Face layout: config.json, one or more safetensors shards (file name, bytes), tokenizer.json.
    HuggingFace {
        config_json: Vec<u8>,
        shards: Vec<(String, FileBytes)>,
        tokenizer_json: Option<Vec<u8>>,
    },
}

/// How to load: the weights' element type and the limits to check before anything is allocated.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    pub dtype: WeightDtype,
    /// The adapter's largest storage-buffer binding: every weight must fit one
    /// ([`crate::device::check_fits`]), checked before anything is uploaded.
    pub max_binding_bytes: Option<u64>,
    /// The memory the model may take where it is held (natively on the CPU: the machine's
    /// available memory); a model that would not fit is refused before loading, naming the bytes
    /// and, when float32 is too large, what f16 would need.
    pub max_memory_bytes: Option<u64>,
}

/// Bytes a model from `source` takes once loaded: its matrices as `weight_dtype`, every other
/// tensor as float32, plus the largest tensor's float32 copy while it converts.
pub fn resident_bytes(source: &dyn WeightSource, weight_dtype: DType) -> u64 {
    let (mut total, mut largest) = (0u64, 0u64);
    for name in source.names() {
        let shape = source.shape(&name).unwrap_or_default();
        let n: u64 = shape.iter().map(|&d| d as u64).product();
        total += n * if shape.len() == 2 {
            crate::model::bytes_per_weight(weight_dtype)
        } else {
            4
        };
        largest = largest.max(n * 4);
    }
    total + largest
}

/// Refuses a model that would not fit in `limit` bytes held as `weight_dtype`.
fn check_memory(source: &dyn WeightSource, weight_dtype: DType, limit: u64) -> Result<()> {
    let needed = resident_bytes(source, weight_dtype);
    if needed <= limit {
        return Ok(());
    }
    let gb = |b: u64| b as f64 / 1e9;
    let half = resident_bytes(source, DType::F16);
    let way_out = if weight_dtype == DType::F32 && half <= limit {
        format!("--dtype f16 needs {:.1} GB and fits", gb(half))
    } else {
        "close other programs, or use a machine with more memory".into()
    };
    Err(Error::TooLarge {
        what: format!(
            "this model with {} weights ({:.1} GB; {:.1} GB available; {way_out})",
            crate::model::dtype_name(weight_dtype),
            gb(needed),
            gb(limit)
        ),
        requested: needed.into(),
        limit: limit.into(),
    })
}

/// A model with its tokenizer, ready to generate.
#[derive(Debug)]
pub struct LoadedModel {
    pub model: Model,
    pub tokenizer: TextTokenizer,
}

/// True if `bytes` start like a GGUF file.
pub fn is_gguf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"GGUF")
}

impl ModelFiles {
    /// Parses the configuration only (cheap): what would be loaded.
    pub fn config(&self) -> Result<ModelConfig> {
        match self {
            ModelFiles::Gguf { gguf, .. } => {
                ModelConfig::from_gguf(&GgufFile::parse(gguf.clone())?)
            }
            ModelFiles::HuggingFace { config_json, .. } => ModelConfig::from_hf_json(config_json),
        }
    }

    /// Parses, validates and uploads everything (float32 weights only for float32 and quantized
    /// checkpoints: [`WeightDtype::Auto`]). `progress(done, total)` counts tensors.
    pub fn load(
        self,
        device: &Device,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<LoadedModel> {
        self.load_with(device, LoadOptions::default(), progress)
    }

    /// [`ModelFiles::load`] with the weights' element type and the device's buffer limit given.
    pub fn load_with(
        self,
        device: &Device,
        options: LoadOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<LoadedModel> {
        let (config, source, tokenizer): (ModelConfig, Box<dyn WeightSource>, TextTokenizer) =
            match self {
                ModelFiles::Gguf {
                    gguf,
                    tokenizer_json,
                } => {
                    let file = GgufFile::parse(gguf)?;
                    let config = ModelConfig::from_gguf(&file)?;
                    let tokenizer = match tokenizer_json {
                        Some(json) => TextTokenizer::from_json(
                            &json,
                            config.bos_token_id,
                            config.eos_token_ids.clone(),
                        )?,
                        None => TextTokenizer::from_gguf(&file)?,
                    };
                    let source = GgufSource::new(file, &config)?;
                    (config, Box::new(source), tokenizer)
                }
                ModelFiles::HuggingFace {
                    config_json,
                    shards,
                    tokenizer_json,
                } => {
                    let config = ModelConfig::from_hf_json(&config_json)?;
                    let json = tokenizer_json.ok_or_else(|| {
                    Error::Tokenizer("tokenizer.json is missing: a Hugging Face checkpoint needs one beside config.json".into())
                })?;
                    let tokenizer = TextTokenizer::from_json(
                        &json,
                        config.bos_token_id,
                        config.eos_token_ids.clone(),
                    )?;
                    (config, Box::new(SafetensorsSource::new(shards)?), tokenizer)
                }
            };
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(Error::Config(format!(
                "the tokenizer has {} tokens but the model's vocabulary is {}: they do not belong together",
                tokenizer.vocab_size(),
                config.vocab_size
            )));
        }
        let weight_dtype = Model::weight_storage(&config, source.as_ref(), options.dtype, device)?;
        if let Some(limit) = options.max_binding_bytes {
            crate::device::check_fits(&config, weight_dtype, limit)?;
        }
        if let Some(limit) = options.max_memory_bytes {
            check_memory(source.as_ref(), weight_dtype, limit)?;
        }
        let model = Model::load(config, source.as_ref(), weight_dtype, device, progress)?;
        Ok(LoadedModel { model, tokenizer })
    }
}
