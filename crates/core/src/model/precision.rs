//! The element type the weight matrices are held in.
//!
//! Weight matrices (every Linear and the embeddings) can stay 16-bit on the device; norms, biases,
//! activations, relevance and scores are always float32, and every product sums in float32.
//! - Generation, perplexity and scoring forwards multiply by an f16 weight as an f16 product
//!   (`Products::Fast`: both backends sum it in f32): the weight is read at half the bytes and
//!   never widened, the product's input and output are rounded to f16.
//! - Relevance passes widen the weight and multiply in f32 (`Products::Exact`): the relevance
//!   rules divide by and subtract forward values, and f16-rounded products moved AttnLRP
//!   relevance far from LXT's on the f16 fixture.
//! - A bf16 weight (`--dtype bf16`, the CPU only) is always widened: the CPU backend has no fast
//!   bf16 product (measured: 70 ms for a TinyLlama MLP row product against 2.5 ms in f32 and
//!   1.5 ms in f16), so `auto` holds bf16 checkpoints as f16, which represents every bf16 weight
//!   in f16's range to within 3e-8.

use burn::tensor::{DType, Device, FloatDType, Tensor};

use crate::error::{Error, Result};
use crate::io::StoredType;

/// What the user asks for (`--dtype`, the page's setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightDtype {
    /// 16-bit checkpoints (f16, bf16) as f16, float32 and quantized GGUF tensors as float32
    /// (which dequantizes them exactly); float32 where the device has no f16.
    #[default]
    Auto,
    F32,
    /// Half the memory of float32 for any checkpoint; rounds float32 and quantized weights to
    /// 11 significant bits.
    F16,
    /// float32's range at 8 significant bits; the CPU backend only, and its products are
    /// float32 products of the widened weight (exact for a bf16 checkpoint, but slow).
    Bf16,
}

impl WeightDtype {
    pub const ALL: [WeightDtype; 4] = [Self::Auto, Self::F32, Self::F16, Self::Bf16];

    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
        }
    }

    /// The element type to hold a checkpoint whose weight matrices are stored as `stored` on
    /// `device`; an explicit 16-bit choice the device cannot hold is an error naming the way out.
    pub fn storage(self, stored: StoredType, device: &Device) -> Result<DType> {
        let holds = |dtype: DType| device.supports_dtype(dtype);
        let refuse = |what: &str| Error::Unsupported {
            what: "weight dtype",
            detail: format!(
                "this device cannot hold {what} tensors ({}); use float32 weights (--dtype f32, the page's Weights: float32){}",
                if what == "bf16" {
                    "WebGPU and wgpu have no bf16"
                } else {
                    "the GPU adapter lacks shader-f16"
                },
                if what == "bf16" && holds(DType::F16) {
                    " or f16"
                } else {
                    ""
                }
            ),
        };
        Ok(match self {
            Self::F32 => DType::F32,
            Self::F16 if holds(DType::F16) => DType::F16,
            Self::Bf16 if holds(DType::BF16) => DType::BF16,
            Self::F16 => return Err(refuse("f16")),
            Self::Bf16 => return Err(refuse("bf16")),
            Self::Auto => match stored {
                StoredType::F16 | StoredType::Bf16 if holds(DType::F16) => DType::F16,
                _ => DType::F32,
            },
        })
    }
}

impl std::fmt::Display for WeightDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for WeightDtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|d| d.name() == s || (s == "float32" && *d == Self::F32))
            .ok_or_else(|| format!("unknown dtype `{s}` (auto, f32, f16, bf16)"))
    }
}

/// `float32`, `float16`, `bfloat16`: how messages name a weight dtype.
pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        DType::F32 => "float32",
        _ => "another type",
    }
}

/// Bytes per element of a weight held as `dtype`.
pub fn bytes_per_weight(dtype: DType) -> u64 {
    dtype.size() as u64
}

/// `t` as float32 for computing: a no-op for float32, a widening copy of a 16-bit weight.
pub(crate) fn widened<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    if t.dtype() == DType::F32 {
        t
    } else {
        t.cast(FloatDType::F32)
    }
}

/// `t` (float32) in the element type `dtype` of the weight it replaces.
pub(crate) fn narrowed<const D: usize>(t: Tensor<D>, dtype: DType) -> Tensor<D> {
    match dtype {
        DType::F16 => t.cast(FloatDType::F16),
        DType::BF16 => t.cast(FloatDType::BF16),
        _ => t,
    }
}

/// Errors if a weight holds values that `dtype` cannot represent (float16 overflows past ±65504),
/// checked on the host before the narrowed tensor is made.
pub(crate) fn check_representable(name: &str, data: &[f32], dtype: DType) -> Result<()> {
    const F16_MAX: f32 = 65504.0;
    if dtype == DType::F16
        && let Some(v) = data.iter().find(|v| v.abs() > F16_MAX)
    {
        return Err(Error::InvalidInput(format!(
            "weight `{name}` holds {v}, beyond float16's range of ±65504: load it with --dtype f32 (or bf16 on the CPU)"
        )));
    }
    Ok(())
}
