//! Writing a model (dense, pruned, corrected or shrunk) as one GGUF file that llama.cpp and
//! Scalpel read: llama.cpp's tensor names and layouts (the family's [`GgufSpec`]), the
//! configuration as `{arch}.*` metadata and the tokenizer as `tokenizer.ggml.*`, with weight
//! matrices as F16, Q8_0 or Q4_0 (or F32) and norms and biases as F32, as llama.cpp's converter
//! keeps them. A matrix whose rows are not a whole number of 32-element blocks stays F16.

use burn::tensor::DType;

use crate::error::{Error, Result};
use crate::io::HostTensor;
use crate::io::gguf::{GgufWriter, MetaValue, TensorPlan, permute_qk_rows};
use crate::io::quant::{GgmlType, quantize};
use crate::io::tokenizer::TextTokenizer;
use crate::model::{BlockConfig, GgufSpec, Model, ModelConfig, Param};

/// What a GGUF export stores weight matrices as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GgufType {
    F32,
    /// Half precision: exact for weights held as f16, the nearest f16 otherwise.
    #[default]
    F16,
    /// 8-bit blocks of 32 with an f16 scale (8.5 bits per weight).
    Q8_0,
    /// 4-bit blocks of 32 with an f16 scale (4.5 bits per weight).
    Q4_0,
}

impl GgufType {
    pub const ALL: [GgufType; 4] = [Self::F32, Self::F16, Self::Q8_0, Self::Q4_0];

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
        }
    }

    fn matrix_type(self) -> GgmlType {
        match self {
            Self::F32 => GgmlType::F32,
            Self::F16 => GgmlType::F16,
            Self::Q8_0 => GgmlType::Q8_0,
            Self::Q4_0 => GgmlType::Q4_0,
        }
    }

    /// llama.cpp's `general.file_type` (`LLAMA_FTYPE_*`).
    fn file_type(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q8_0 => 7,
        }
    }
}

/// A model planned as a GGUF file: its metadata, and each tensor's plan with the parameter it
/// comes from and how to lay it out.
pub struct GgufExport {
    writer: GgufWriter,
    sources: Vec<Source>,
}

struct Source {
    param: Param,
    /// Checkpoint `[in, out]` (GPT-2's `Conv1D`) written as llama.cpp's `[out, in]`.
    transpose: bool,
    /// Llama's q/k rows interleaved per head as llama.cpp's converter does: the head count.
    permute_heads: Option<usize>,
}

impl GgufExport {
    /// Plans `model` with `tokenizer` as a GGUF file of `ty`, named `name` (`general.name`).
    /// Refuses, before any weight is read, a family llama.cpp has no architecture for and
    /// settings Scalpel cannot write so that both readers get them back.
    pub fn plan(
        model: &Model,
        tokenizer: &TextTokenizer,
        ty: GgufType,
        name: &str,
    ) -> Result<Self> {
        let config = &model.config;
        let spec = config.architecture.spec();
        let gguf = writable(config)?;
        let metadata = metadata(model, gguf, tokenizer, ty, name)?;
        let params = model.arch().parameters();
        let mut plan = Vec::with_capacity(params.len());
        let mut sources = Vec::with_capacity(params.len());
        for (checkpoint, param) in params {
            let checkpoint = checkpoint.as_str();
            let tensor = gguf
                .gguf_name(checkpoint, spec.block_prefix)
                .ok_or_else(|| Error::Unsupported {
                    what: "GGUF export",
                    detail: format!("llama.cpp has no name for `{checkpoint}`"),
                })?;
            let transpose = gguf
                .transposed
                .iter()
                .any(|m| checkpoint.ends_with(&format!(".{m}.weight")));
            let permute_heads = gguf.permuted_qk.then_some(()).and_then(|()| {
                if checkpoint.ends_with("self_attn.q_proj.weight") {
                    Some(config.num_heads)
                } else if checkpoint.ends_with("self_attn.k_proj.weight") {
                    Some(config.num_kv_heads)
                } else {
                    None
                }
            });
            let (shape, ggml) = match &param {
                Param::Vector(t) => (t.dims().to_vec(), GgmlType::F32),
                Param::Matrix(t) => {
                    let [rows, cols] = t.dims();
                    let shape = if transpose {
                        vec![cols, rows]
                    } else {
                        vec![rows, cols]
                    };
                    let wanted = ty.matrix_type();
                    let fits = shape[1].is_multiple_of(wanted.block_layout().0);
                    (shape, if fits { wanted } else { GgmlType::F16 })
                }
            };
            plan.push(TensorPlan {
                name: tensor,
                shape,
                ty: ggml,
            });
            sources.push(Source {
                param,
                transpose,
                permute_heads,
            });
        }
        Ok(Self {
            writer: GgufWriter::new(&metadata, plan)?,
            sources,
        })
    }

    pub fn tensors(&self) -> usize {
        self.sources.len()
    }

    /// The file's size in bytes.
    pub fn file_size(&self) -> u64 {
        self.writer.file_size()
    }

    /// The header: metadata and tensor table.
    pub fn header(&self) -> &[u8] {
        self.writer.header()
    }

    /// Tensor `i` read back from the device, laid out as llama.cpp stores it and encoded, with
    /// its padding.
    pub async fn tensor(&self, i: usize) -> Result<Vec<u8>> {
        let source = &self.sources[i];
        let plan = &self.writer.plan()[i];
        let data = source.param.to_data().await?;
        let held = data.dtype();
        let mut host = HostTensor::new(source.param.dims(), crate::readback::to_f32(data)?)?;
        if source.transpose {
            host.transpose();
        }
        if let Some(heads) = source.permute_heads {
            permute_qk_rows(&mut host, heads, true)?;
        }
        if host.data.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!("tensor `{}`", plan.name)));
        }
        if plan.ty == GgmlType::F16
            && held != DType::F16
            && host
                .data
                .iter()
                .any(|v| v.abs() > f32::from(half::f16::MAX))
        {
            return Err(Error::InvalidInput(format!(
                "tensor `{}` has values beyond f16's range (±65504): export it as f32",
                plan.name
            )));
        }
        self.writer.tensor(i, quantize(plan.ty, &host.data)?)
    }

    /// The whole file in memory (the page; small models natively).
    pub async fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = self.header().to_vec();
        for i in 0..self.tensors() {
            out.extend(self.tensor(i).await?);
        }
        Ok(out)
    }

    /// The file written to `path` one tensor at a time (native).
    #[cfg(not(target_family = "wasm"))]
    pub async fn write_file(
        &self,
        path: &std::path::Path,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<u64> {
        use std::io::Write;
        let io =
            |e: std::io::Error| Error::InvalidInput(format!("writing {}: {e}", path.display()));
        let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
        let header = self.header();
        file.write_all(header).map_err(io)?;
        let mut written = header.len() as u64;
        for i in 0..self.tensors() {
            let bytes = self.tensor(i).await?;
            file.write_all(&bytes).map_err(io)?;
            written += bytes.len() as u64;
            progress(i + 1, self.tensors());
        }
        file.flush().map_err(io)?;
        Ok(written)
    }
}

/// The family's llama.cpp names, or why a model of `config` cannot be written as GGUF so that
/// llama.cpp and Scalpel read it back as it is: checked before any weight is loaded or read.
pub fn writable(config: &ModelConfig) -> Result<&'static GgufSpec> {
    let spec = config.architecture.spec();
    let refuse = |detail: String| Error::Unsupported {
        what: "GGUF export",
        detail,
    };
    let gguf = spec.gguf.as_ref().ok_or_else(|| {
        refuse(format!(
            "{} models: Scalpel writes GGUF only for the architectures it also reads back from \
             GGUF (llama, qwen2, qwen3, phi3, gpt2; llama.cpp defines no OPT architecture and \
             writes Mistral as llama, without its window); export a safetensors checkpoint instead",
            spec.name
        ))
    })?;
    if let BlockConfig::Rotary(rotary) = &config.block {
        if let Some(scaling) = &rotary.scaling {
            return Err(refuse(format!(
                "RoPE scaling ({scaling:?}) is stored by llama.cpp as a `rope_freqs` tensor that Scalpel does not write"
            )));
        }
        if let Some(window) = rotary.sliding_window
            && window < config.max_position_embeddings
        {
            return Err(refuse(format!(
                "a {window}-token sliding window: llama.cpp's {} files do not carry it the way Scalpel reads them back",
                gguf.arch
            )));
        }
    }
    Ok(gguf)
}

/// The configuration as llama.cpp's `{arch}.*` keys (those its loader needs and Scalpel's
/// [`crate::ModelConfig::from_gguf`] reads), then the tokenizer.
fn metadata(
    model: &Model,
    gguf: &GgufSpec,
    tokenizer: &TextTokenizer,
    ty: GgufType,
    name: &str,
) -> Result<Vec<(String, MetaValue)>> {
    let c = &model.config;
    let arch = gguf.arch;
    let key = |k: &str| format!("{arch}.{k}");
    let u32_of = |v: usize| MetaValue::U32(v as u32);
    let mut out = vec![
        (
            "general.architecture".to_string(),
            MetaValue::String(arch.into()),
        ),
        ("general.name".to_string(), MetaValue::String(name.into())),
        (
            "general.file_type".to_string(),
            MetaValue::U32(ty.file_type()),
        ),
        (
            "general.quantization_version".to_string(),
            MetaValue::U32(2),
        ),
        (key("context_length"), u32_of(c.max_position_embeddings)),
        (key("embedding_length"), u32_of(c.hidden_size)),
        (key("block_count"), u32_of(c.num_layers)),
        (key("feed_forward_length"), u32_of(c.intermediate_size)),
        (key("attention.head_count"), u32_of(c.num_heads)),
        (key("attention.head_count_kv"), u32_of(c.num_kv_heads)),
        (key("vocab_size"), u32_of(c.vocab_size)),
    ];
    match &c.block {
        BlockConfig::Rotary(rotary) => {
            out.extend([
                (
                    key("attention.layer_norm_rms_epsilon"),
                    MetaValue::F32(c.norm_eps as f32),
                ),
                (key("rope.freq_base"), MetaValue::F32(rotary.theta as f32)),
                (key("rope.dimension_count"), u32_of(c.head_dim)),
                (key("attention.key_length"), u32_of(c.head_dim)),
                (key("attention.value_length"), u32_of(c.head_dim)),
            ]);
        }
        BlockConfig::LearnedPositions(_) => {
            out.push((
                key("attention.layer_norm_epsilon"),
                MetaValue::F32(c.norm_eps as f32),
            ));
        }
    }
    let mut tokenizer = tokenizer.clone();
    // The model's own special tokens win over the tokenizer's (they are what generation uses).
    if c.bos_token_id.is_some() {
        tokenizer.bos_token_id = c.bos_token_id;
    }
    if !c.eos_token_ids.is_empty() {
        tokenizer.eos_token_ids = c.eos_token_ids.clone();
    }
    out.extend(tokenizer.gguf_metadata(c.vocab_size)?);
    Ok(out)
}
