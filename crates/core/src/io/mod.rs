//! Reading model files from bytes: GGUF, safetensors (single or sharded), tokenizers.
//!
//! Nothing here touches a filesystem or network: callers (the CLI, the page) fetch the bytes.

pub mod gguf;
pub mod quant;
pub mod safetensors;
pub mod tokenizer;

use std::sync::Arc;

use crate::error::{Error, Result};

/// Where a model file's bytes live: in memory (read or fetched), or in a memory map the caller
/// made natively.
pub trait FileSource: Send + Sync {
    fn bytes(&self) -> &[u8];

    /// Called once a tensor's bytes have been converted and are not needed again; a memory map
    /// drops those pages from the process here (they stay in the page cache), so loading never
    /// holds the whole file besides the model.
    fn done_with(&self, _range: std::ops::Range<usize>) {}
}

impl FileSource for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// The bytes of one model file, shared: cloning never copies them.
#[derive(Clone)]
pub struct FileBytes(Arc<dyn FileSource>);

impl FileBytes {
    pub fn new(source: impl FileSource + 'static) -> Self {
        Self(Arc::new(source))
    }

    /// See [`FileSource::done_with`].
    pub fn done_with(&self, range: std::ops::Range<usize>) {
        self.0.done_with(range)
    }
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.bytes()
    }
}

impl From<Vec<u8>> for FileBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

impl std::fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileBytes({} bytes)", self.len())
    }
}

/// Largest tensor accepted from any file, in elements (16 Gi elements = 64 GiB of f32). Anything
/// larger is a corrupt or hostile header; it is rejected before a byte is allocated. On wasm32 the
/// address space (4 GiB) is the tighter bound.
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 34;

/// A dense f32 tensor in host memory, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n = checked_elements(&shape)?;
        if n != data.len() {
            return Err(Error::InvalidInput(format!(
                "tensor data has {} values but shape {shape:?} needs {n}",
                data.len()
            )));
        }
        Ok(Self { shape, data })
    }

    pub fn n_elements(&self) -> usize {
        self.data.len()
    }

    /// A matrix `[rows, cols]` turned into `[cols, rows]`.
    pub fn transpose(&mut self) {
        let (rows, cols) = (self.shape[0], self.shape.get(1).copied().unwrap_or(1));
        let mut out = vec![0f32; self.data.len()];
        for (r, row) in self.data.chunks_exact(cols).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                out[c * rows + r] = v;
            }
        }
        self.data = out;
        self.shape.reverse();
    }
}

/// Number of elements of `shape`, rejecting overflow and anything over [`MAX_TENSOR_ELEMENTS`].
pub fn checked_elements(shape: &[usize]) -> Result<usize> {
    let n = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .ok_or_else(|| Error::InvalidInput(format!("shape {shape:?} overflows")))?;
    let too_large = || Error::TooLarge {
        what: format!("a tensor of shape {shape:?}"),
        requested: n as u128 * 4,
        limit: MAX_TENSOR_ELEMENTS.min(usize::MAX as u64 / 4) as u128 * 4,
    };
    if n > MAX_TENSOR_ELEMENTS {
        return Err(too_large());
    }
    usize::try_from(n)
        .ok()
        .filter(|&n| n <= usize::MAX / 4)
        .ok_or_else(too_large)
}

/// How a tensor is stored in a checkpoint file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredType {
    F32,
    F16,
    Bf16,
    /// Any GGUF block quantization (Q4_0, Q6_K, ...).
    Quantized,
}

/// Named weights that can be loaded one at a time (so peak memory stays at one dequantized tensor
/// on top of the file bytes). Names are Hugging Face parameter names (`model.layers.0.mlp.up_proj.weight`).
pub trait WeightSource {
    /// All tensor names present.
    fn names(&self) -> Vec<String>;
    /// Shape of a tensor without loading it.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// Loads and converts a tensor to f32.
    fn load(&self, name: &str) -> Result<HostTensor>;
    /// How a tensor is stored in the file (`None`: no such tensor).
    fn stored_type(&self, name: &str) -> Option<StoredType>;

    fn contains(&self, name: &str) -> bool {
        self.shape(name).is_some()
    }
}
