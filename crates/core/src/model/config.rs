//! Model hyper-parameters, read from a Hugging Face `config.json` or from GGUF metadata.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::io::gguf::{GgufFile, MetaValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Architecture {
    Llama,
    /// Qwen2 and Qwen2.5: Llama's block with biases on q, k and v.
    Qwen2,
    /// Qwen3 (dense): Llama's block with an RMSNorm on each query and key head.
    Qwen3,
    /// Mistral: Llama's block, attention limited to a sliding window when the config sets one.
    Mistral,
    /// Phi-3: Llama's block with fused q/k/v and gate/up matrices, and Mistral's sliding window.
    Phi3,
    Opt,
    /// GPT-2: OPT's pre-LayerNorm block with GELU, positions from 0 and `Conv1D` weights.
    Gpt2,
}

/// Llama 3's frequency-dependent RoPE rescaling (`rope_scaling.rope_type = "llama3"`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Llama3RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: f64,
}

/// Switches of the learned-position LayerNorm decoders (OPT; GPT-2 sets them to its fixed layout).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OptOptions {
    /// Pre-LN (most OPT sizes) or post-LN (OPT-350m).
    pub do_layer_norm_before: bool,
    /// Embedding width; differs from `hidden_size` when `project_in`/`project_out` exist.
    pub word_embed_proj_dim: usize,
    pub enable_bias: bool,
    pub remove_final_layer_norm: bool,
    /// Learned positions are offset by 2 (a fairseq legacy).
    pub position_offset: usize,
}

impl OptOptions {
    /// GPT-2's fixed layout: pre-LN with a final norm, biases, embeddings as wide as the blocks,
    /// positions from 0.
    pub fn gpt2(hidden_size: usize) -> Self {
        Self {
            do_layer_norm_before: true,
            word_embed_proj_dim: hidden_size,
            enable_bias: true,
            remove_final_layer_norm: false,
            position_offset: 0,
        }
    }
}

/// Rotary positions and what else the Llama-style block reads.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RotaryConfig {
    pub theta: f64,
    pub scaling: Option<Llama3RopeScaling>,
    /// Mistral's and Phi-3's sliding window: each query sees itself and the `w - 1` positions
    /// before it.
    pub sliding_window: Option<usize>,
}

/// What a family's block needs beyond the sizes every family has: one variant per kind of block
/// (the five Llama-style families share theirs, as OPT and GPT-2 share theirs).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum BlockConfig {
    /// Llama, Mistral, Phi-3, Qwen2, Qwen3: rotary positions inside attention, RMSNorm, SwiGLU.
    Rotary(RotaryConfig),
    /// OPT and GPT-2: learned positions added to the embeddings, LayerNorms, biased Linears.
    LearnedPositions(OptOptions),
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub max_position_embeddings: usize,
    pub norm_eps: f64,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub block: BlockConfig,
}

/// Upper bounds that no real checkpoint reaches; larger values are corrupt or hostile configs.
const MAX_DIM: usize = 1 << 17;
const MAX_LAYERS: usize = 1024;
const MAX_VOCAB: usize = 1 << 22;
const MAX_CONTEXT: usize = 1 << 22;

impl ModelConfig {
    /// Parses a Hugging Face `config.json`.
    pub fn from_hf_json(bytes: &[u8]) -> Result<Self> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::format("config.json", e.to_string()))?;
        let model_type = v
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("<missing>");
        let usize_of = |key: &str| -> Result<usize> {
            v.get(key)
                .and_then(Value::as_u64)
                .map(|x| x as usize)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "config.json: `{key}` is missing or not a non-negative integer"
                    ))
                })
        };
        let opt_usize = |key: &str| v.get(key).and_then(Value::as_u64).map(|x| x as usize);
        let f64_or =
            |key: &str, default: f64| v.get(key).and_then(Value::as_f64).unwrap_or(default);
        let bool_or =
            |key: &str, default: bool| v.get(key).and_then(Value::as_bool).unwrap_or(default);
        let eos_token_ids = match v.get("eos_token_id") {
            Some(Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_u64)
                .map(|x| x as u32)
                .collect(),
            _ => Vec::new(),
        };
        let bos_token_id = v
            .get("bos_token_id")
            .and_then(Value::as_u64)
            .map(|x| x as u32);
        let cfg = match model_type {
            "llama" | "mistral" | "phi3" | "qwen2" | "qwen3" => {
                let architecture = match model_type {
                    "qwen2" => Architecture::Qwen2,
                    "qwen3" => Architecture::Qwen3,
                    "mistral" => Architecture::Mistral,
                    "phi3" => Architecture::Phi3,
                    _ => Architecture::Llama,
                };
                // The Qwens slide a window over some layers only (`max_window_layers`), when told
                // to; Mistral and Phi-3 slide one over every layer whenever they name one.
                let sliding = matches!(architecture, Architecture::Qwen2 | Architecture::Qwen3)
                    && bool_or("use_sliding_window", false);
                let sliding_window = match architecture {
                    Architecture::Mistral | Architecture::Phi3 => match v.get("sliding_window") {
                        None | Some(Value::Null) => None,
                        Some(w) => Some(w.as_u64().filter(|&w| w > 0).ok_or_else(|| {
                            Error::Config(format!(
                                "config.json: `sliding_window` = {w} is not a positive integer"
                            ))
                        })? as usize),
                    },
                    _ => None,
                };
                // Biases the block does not read would be dropped without a word.
                let (attention_bias, mlp_bias) =
                    (bool_or("attention_bias", false), bool_or("mlp_bias", false));
                if (attention_bias && architecture != Architecture::Qwen2) || mlp_bias {
                    return Err(Error::Unsupported {
                        what: "model",
                        detail: format!(
                            "{model_type} with attention_bias or mlp_bias (Scalpel reads Qwen2's q/k/v biases only)"
                        ),
                    });
                }
                if sliding {
                    return Err(Error::Unsupported {
                        what: "model",
                        detail: format!("{model_type} with sliding-window attention"),
                    });
                }
                let hidden_size = usize_of("hidden_size")?;
                let num_heads = usize_of("num_attention_heads")?;
                let act = v
                    .get("hidden_act")
                    .and_then(Value::as_str)
                    .unwrap_or("silu");
                if act != "silu" {
                    return Err(Error::Unsupported {
                        what: "activation",
                        detail: format!("{act} in a {model_type} model (SwiGLU needs silu)"),
                    });
                }
                // transformers 5 writes RoPE settings under `rope_parameters`; hub checkpoints
                // mostly still use `rope_theta` and `rope_scaling`.
                let rope_parameters = v.get("rope_parameters").filter(|p| p.is_object());
                let rope_theta = v
                    .get("rope_theta")
                    .or_else(|| rope_parameters.and_then(|p| p.get("rope_theta")))
                    .and_then(Value::as_f64)
                    .unwrap_or(10_000.0);
                let partial_rotary = v
                    .get("partial_rotary_factor")
                    .or_else(|| rope_parameters.and_then(|p| p.get("partial_rotary_factor")))
                    .and_then(Value::as_f64)
                    .unwrap_or(1.0);
                if partial_rotary != 1.0 {
                    return Err(Error::Unsupported {
                        what: "RoPE",
                        detail: format!(
                            "partial_rotary_factor {partial_rotary} (Scalpel rotates whole heads)"
                        ),
                    });
                }
                let rope_scaling = parse_rope_scaling(
                    v.get("rope_scaling")
                        .filter(|s| !s.is_null())
                        .or(rope_parameters),
                )?;
                Self {
                    architecture,
                    vocab_size: usize_of("vocab_size")?,
                    hidden_size,
                    intermediate_size: usize_of("intermediate_size")?,
                    num_layers: usize_of("num_hidden_layers")?,
                    num_heads,
                    num_kv_heads: opt_usize("num_key_value_heads").unwrap_or(num_heads),
                    head_dim: opt_usize("head_dim").unwrap_or(hidden_size / num_heads.max(1)),
                    max_position_embeddings: opt_usize("max_position_embeddings").unwrap_or(2048),
                    norm_eps: f64_or("rms_norm_eps", 1e-6),
                    tie_word_embeddings: bool_or("tie_word_embeddings", false),
                    bos_token_id,
                    eos_token_ids,
                    block: BlockConfig::Rotary(RotaryConfig {
                        theta: rope_theta,
                        scaling: rope_scaling,
                        sliding_window,
                    }),
                }
            }
            "opt" => {
                let hidden_size = usize_of("hidden_size")?;
                let num_heads = usize_of("num_attention_heads")?;
                let act = v
                    .get("activation_function")
                    .and_then(Value::as_str)
                    .unwrap_or("relu");
                if act != "relu" {
                    return Err(Error::Unsupported {
                        what: "OPT activation",
                        detail: act.into(),
                    });
                }
                Self {
                    architecture: Architecture::Opt,
                    vocab_size: usize_of("vocab_size")?,
                    hidden_size,
                    intermediate_size: usize_of("ffn_dim")?,
                    num_layers: usize_of("num_hidden_layers")?,
                    num_heads,
                    num_kv_heads: num_heads,
                    head_dim: hidden_size / num_heads.max(1),
                    max_position_embeddings: opt_usize("max_position_embeddings").unwrap_or(2048),
                    norm_eps: 1e-5,
                    tie_word_embeddings: bool_or("tie_word_embeddings", true),
                    bos_token_id,
                    eos_token_ids,
                    block: BlockConfig::LearnedPositions(OptOptions {
                        do_layer_norm_before: bool_or("do_layer_norm_before", true),
                        word_embed_proj_dim: opt_usize("word_embed_proj_dim")
                            .unwrap_or(hidden_size),
                        enable_bias: bool_or("enable_bias", true),
                        remove_final_layer_norm: bool_or("_remove_final_layer_norm", false),
                        position_offset: 2,
                    }),
                }
            }
            "gpt2" => {
                let hidden_size = usize_of("n_embd").or_else(|_| usize_of("hidden_size"))?;
                let num_heads = usize_of("n_head").or_else(|_| usize_of("num_attention_heads"))?;
                let act = v
                    .get("activation_function")
                    .and_then(Value::as_str)
                    .unwrap_or("gelu_new");
                if !matches!(act, "gelu_new" | "gelu_pytorch_tanh") {
                    return Err(Error::Unsupported {
                        what: "GPT-2 activation",
                        detail: format!("{act} (supported: gelu_new, gelu_pytorch_tanh)"),
                    });
                }
                if bool_or("scale_attn_by_inverse_layer_idx", false)
                    || !bool_or("scale_attn_weights", true)
                {
                    return Err(Error::Unsupported {
                        what: "GPT-2 attention scaling",
                        detail: "scale_attn_by_inverse_layer_idx or unscaled attention".into(),
                    });
                }
                Self {
                    architecture: Architecture::Gpt2,
                    vocab_size: usize_of("vocab_size")?,
                    hidden_size,
                    intermediate_size: opt_usize("n_inner").unwrap_or(4 * hidden_size),
                    num_layers: usize_of("n_layer").or_else(|_| usize_of("num_hidden_layers"))?,
                    num_heads,
                    num_kv_heads: num_heads,
                    head_dim: hidden_size / num_heads.max(1),
                    max_position_embeddings: usize_of("n_positions")
                        .or_else(|_| usize_of("max_position_embeddings"))?,
                    norm_eps: f64_or("layer_norm_epsilon", 1e-5),
                    tie_word_embeddings: bool_or("tie_word_embeddings", true),
                    bos_token_id,
                    eos_token_ids,
                    block: BlockConfig::LearnedPositions(OptOptions::gpt2(hidden_size)),
                }
            }
            other => {
                return Err(Error::Unsupported {
                    what: "model_type",
                    detail: format!(
                        "`{other}` (Scalpel runs `llama`, `mistral`, `phi3`, `qwen2`, `qwen3`, `opt` and `gpt2` checkpoints)"
                    ),
                });
            }
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads GGUF metadata of a family llama.cpp writes (`llama`, which covers Llama 1/2/3,
    /// TinyLlama, SmolLM and Mistral without its window; `qwen2`, `qwen3`, `phi3` and `gpt2`),
    /// whose keys start with the architecture's name. Phi-3's sliding window is not read.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let arch = file.architecture()?;
        let Some(architecture) = Architecture::for_gguf(arch) else {
            return Err(Error::Unsupported {
                what: "GGUF architecture",
                detail: format!(
                    "`{arch}` (Scalpel reads `llama`, `qwen2`, `qwen3`, `phi3` and `gpt2` GGUF files; OPT and Mistral's window load from safetensors)"
                ),
            });
        };
        let get = |key: &str| file.get(&format!("{arch}.{key}"));
        let usize_of = |key: &str| -> Result<usize> {
            get(key)
                .and_then(MetaValue::as_u64)
                .map(|x| x as usize)
                .ok_or_else(|| Error::Config(format!("GGUF metadata `{arch}.{key}` is missing")))
        };
        let hidden_size = usize_of("embedding_length")?;
        let num_heads = usize_of("attention.head_count")?;
        let vocab_size = match get("vocab_size").and_then(MetaValue::as_u64) {
            Some(v) => v as usize,
            None => file
                .get("tokenizer.ggml.tokens")
                .and_then(MetaValue::as_array)
                .map(<[MetaValue]>::len)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "GGUF has neither `{arch}.vocab_size` nor a token list"
                    ))
                })?,
        };
        let has_output = file.tensors.iter().any(|t| t.name == "output.weight");
        let learned = architecture == Architecture::Gpt2;
        let id = |key: &str| file.get(key).and_then(MetaValue::as_u64).map(|v| v as u32);
        let rope_scaling = match get("rope.scaling.type").and_then(MetaValue::as_str) {
            None | Some("none") => None,
            Some(other) => {
                return Err(Error::Unsupported {
                    what: "GGUF RoPE scaling",
                    detail: other.into(),
                });
            }
        };
        let cfg = Self {
            architecture,
            vocab_size,
            hidden_size,
            intermediate_size: usize_of("feed_forward_length")?,
            num_layers: usize_of("block_count")?,
            num_heads,
            num_kv_heads: get("attention.head_count_kv")
                .and_then(MetaValue::as_u64)
                .map_or(num_heads, |v| v as usize),
            head_dim: get("attention.key_length")
                .and_then(MetaValue::as_u64)
                .map_or(hidden_size / num_heads.max(1), |v| v as usize),
            max_position_embeddings: usize_of("context_length")?,
            norm_eps: get(if learned {
                "attention.layer_norm_epsilon"
            } else {
                "attention.layer_norm_rms_epsilon"
            })
            .and_then(MetaValue::as_f64)
            .unwrap_or(1e-5),
            tie_word_embeddings: !has_output,
            bos_token_id: id("tokenizer.ggml.bos_token_id"),
            eos_token_ids: id("tokenizer.ggml.eos_token_id").into_iter().collect(),
            block: if learned {
                BlockConfig::LearnedPositions(OptOptions::gpt2(hidden_size))
            } else {
                BlockConfig::Rotary(RotaryConfig {
                    theta: get("rope.freq_base")
                        .and_then(MetaValue::as_f64)
                        .unwrap_or(10_000.0),
                    scaling: rope_scaling,
                    // llama.cpp writes Mistral as `llama` without its window.
                    sliding_window: None,
                })
            },
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// A Hugging Face `config.json` that [`ModelConfig::from_hf_json`] (and `transformers`) read
    /// back as this configuration.
    pub fn to_hf_json(&self) -> Value {
        let eos: Value = match self.eos_token_ids[..] {
            [] => Value::Null,
            [one] => one.into(),
            _ => self.eos_token_ids.clone().into(),
        };
        let mut v = serde_json::json!({
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "torch_dtype": "float32",
        });
        let spec = self.architecture.spec();
        let mut extra = match &self.block {
            BlockConfig::Rotary(r) => serde_json::json!({
                "intermediate_size": self.intermediate_size,
                "num_key_value_heads": self.num_kv_heads,
                "head_dim": self.head_dim,
                "rms_norm_eps": self.norm_eps,
                "rope_theta": r.theta,
                "rope_scaling": r.scaling.as_ref().map(|s| serde_json::json!({
                    "rope_type": "llama3",
                    "factor": s.factor,
                    "low_freq_factor": s.low_freq_factor,
                    "high_freq_factor": s.high_freq_factor,
                    "original_max_position_embeddings": s.original_max_position_embeddings,
                })),
                "hidden_act": "silu",
                "sliding_window": r.sliding_window,
            }),
            BlockConfig::LearnedPositions(_) if self.architecture == Architecture::Gpt2 => {
                serde_json::json!({
                    "n_embd": self.hidden_size,
                    "n_layer": self.num_layers,
                    "n_head": self.num_heads,
                    "n_positions": self.max_position_embeddings,
                    "n_inner": self.intermediate_size,
                    "layer_norm_epsilon": self.norm_eps,
                    "activation_function": "gelu_new",
                })
            }
            BlockConfig::LearnedPositions(o) => serde_json::json!({
                "ffn_dim": self.intermediate_size,
                "do_layer_norm_before": o.do_layer_norm_before,
                "word_embed_proj_dim": o.word_embed_proj_dim,
                "enable_bias": o.enable_bias,
                "_remove_final_layer_norm": o.remove_final_layer_norm,
                "activation_function": "relu",
            }),
        };
        extra["architectures"] = serde_json::json!([spec.hf_class]);
        extra["model_type"] = spec.hf_model_type.into();
        // What the block does not have, said where transformers would otherwise assume it.
        match self.architecture {
            Architecture::Llama => {
                extra["attention_bias"] = false.into();
                extra["mlp_bias"] = false.into();
            }
            Architecture::Qwen2 | Architecture::Qwen3 => {
                extra["use_sliding_window"] = false.into();
            }
            _ => {}
        }
        if let (Value::Object(base), Value::Object(extra)) = (&mut v, extra) {
            base.extend(extra);
        }
        v
    }

    /// How many query heads share each key/value head (grouped-query attention; 1 without it).
    pub fn heads_per_kv_head(&self) -> usize {
        self.num_heads / self.num_kv_heads.max(1)
    }

    /// The rotary settings of a Llama-style family (`None` for OPT and GPT-2).
    pub fn rotary(&self) -> Option<&RotaryConfig> {
        match &self.block {
            BlockConfig::Rotary(r) => Some(r),
            BlockConfig::LearnedPositions(_) => None,
        }
    }

    /// The layout of OPT and GPT-2 (`None` for the Llama-style families).
    pub fn learned_positions(&self) -> Option<&OptOptions> {
        match &self.block {
            BlockConfig::LearnedPositions(o) => Some(o),
            BlockConfig::Rotary(_) => None,
        }
    }

    /// Identifies the model's shape (not its weights): scores and masks carry it, so files made
    /// for a differently shaped model are refused.
    pub fn fingerprint(&self) -> String {
        format!(
            "{:?} layers={} hidden={} intermediate={} heads={}/{} head_dim={} vocab={}",
            self.architecture,
            self.num_layers,
            self.hidden_size,
            self.intermediate_size,
            self.num_heads,
            self.num_kv_heads,
            self.head_dim,
            self.vocab_size
        )
    }

    /// Rejects zero, inconsistent or absurd sizes before any allocation depends on them.
    pub fn validate(&self) -> Result<()> {
        let dims = [
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("hidden_size", self.hidden_size, MAX_DIM),
            ("intermediate_size", self.intermediate_size, MAX_DIM * 8),
            ("num_layers", self.num_layers, MAX_LAYERS),
            ("num_heads", self.num_heads, MAX_DIM),
            ("num_kv_heads", self.num_kv_heads, MAX_DIM),
            ("head_dim", self.head_dim, MAX_DIM),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                MAX_CONTEXT,
            ),
        ];
        for (name, value, max) in dims {
            if value == 0 || value > max {
                return Err(Error::Config(format!(
                    "{name} = {value} is outside 1..={max}"
                )));
            }
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(Error::Config(format!(
                "num_heads ({}) is not a multiple of num_kv_heads ({})",
                self.num_heads, self.num_kv_heads
            )));
        }
        if matches!(self.block, BlockConfig::LearnedPositions(_))
            && !self.hidden_size.is_multiple_of(self.num_heads)
        {
            return Err(Error::Config(
                "hidden_size is not a multiple of num_heads".into(),
            ));
        }
        if let BlockConfig::Rotary(r) = &self.block
            && (!self.head_dim.is_multiple_of(2) || r.theta.is_nan() || r.theta <= 0.0)
        {
            return Err(Error::Config(
                "RoPE needs an even head_dim and a positive rope_theta".into(),
            ));
        }
        if !(self.norm_eps >= 0.0 && self.norm_eps < 1.0) {
            return Err(Error::Config(format!(
                "norm epsilon {} is out of range",
                self.norm_eps
            )));
        }
        Ok(())
    }
}

fn parse_rope_scaling(v: Option<&Value>) -> Result<Option<Llama3RopeScaling>> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let kind = v
        .get("rope_type")
        .or_else(|| v.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    match kind {
        "llama3" => {
            let f = |key: &str| {
                v.get(key)
                    .and_then(Value::as_f64)
                    .ok_or_else(|| Error::Config(format!("rope_scaling.{key} is missing")))
            };
            Ok(Some(Llama3RopeScaling {
                factor: f("factor")?,
                low_freq_factor: f("low_freq_factor")?,
                high_freq_factor: f("high_freq_factor")?,
                original_max_position_embeddings: f("original_max_position_embeddings")?,
            }))
        }
        "default" => Ok(None),
        other => Err(Error::Unsupported {
            what: "rope_scaling",
            detail: format!("`{other}` (supported: llama3)"),
        }),
    }
}
