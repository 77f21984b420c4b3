//! The architectures, one file per family (each with its forward, its relevance backward and
//! its descriptor, `spec.rs`), plus the pieces they share.

/// `linear` / `linear_mut` of a decoder block from its `kind => field` table (before the
/// architecture modules, which use it).
macro_rules! block_linears {
    ($block:ty { $($kind:ident => $field:ident),* $(,)? }) => {
        impl $block {
            fn linear(&self, kind: LinearKind) -> Option<&Linear> {
                match kind {
                    $(LinearKind::$kind => Some(&self.$field),)*
                    _ => None,
                }
            }

            fn linear_mut(&mut self, kind: LinearKind) -> Option<&mut Linear> {
                match kind {
                    $(LinearKind::$kind => Some(&mut self.$field),)*
                    _ => None,
                }
            }
        }
    };
}

mod backward;
pub mod config;
mod cpu_buffers;
mod elementwise;
mod families;
mod few_rows;
mod gpt2;
mod joined;
mod keep;
mod layers;
mod linear_id;
mod llama;
mod mistral;
mod opt;
mod phi3;
mod precision;
mod qwen2;
mod qwen3;
mod recording;
mod spec;
mod weights;

use std::collections::BTreeMap;

use burn::tensor::{DType, Device, Int, Tensor, TensorData};

pub(crate) use backward::token_relevance;
pub use backward::{RelevanceSink, RuleSet, WeightGrad};
pub use config::{Architecture, BlockConfig, ModelConfig, RotaryConfig};
pub use keep::KeepBits;
pub use layers::{KvCache, Linear};
pub use linear_id::{LinearId, LinearKind};
pub(crate) use precision::widened;
pub use precision::{WeightDtype, bytes_per_weight, dtype_name};
pub(crate) use recording::Recording;
pub use spec::{ArchSpec, GgufSpec, HeadBlock, HeadParam, NeuronParam};

use crate::error::{Error, Result};
use crate::io::WeightSource;

/// A loaded causal language model on a device.
#[derive(Debug)]
pub struct Model {
    pub config: ModelConfig,
    device: Device,
    /// The family's forward and relevance backward.
    body: Box<dyn ArchOps>,
    /// What undoes the mask of each Linear a mask currently applies to (see `weights.rs`).
    unmasked: BTreeMap<LinearId, weights::Undo>,
}

/// Which positions' logits a forward returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Every position: `[batch, seq, vocab]` (perplexity, explanations).
    All,
    /// Only the last position: `[batch, 1, vocab]` (generation; skips most of the LM-head work).
    Last,
}

impl Model {
    /// Builds the model from a weight source, checking every tensor's shape against the config,
    /// with its weight matrices held as `weight_dtype` (float32, or a 16-bit type from
    /// [`Model::weight_storage`]). `progress(done, total)` is called after each tensor is on the
    /// device.
    pub fn load(
        config: ModelConfig,
        source: &dyn WeightSource,
        weight_dtype: DType,
        device: &Device,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        config.validate()?;
        if !device.supports_dtype(weight_dtype) {
            return Err(Error::Unsupported {
                what: "weight dtype",
                detail: format!("this device cannot hold {weight_dtype:?} tensors"),
            });
        }
        let mut loader = layers::Loader::new(source, device, weight_dtype, progress);
        let body = (config.architecture.spec().load)(&config, &mut loader)?;
        Ok(Self {
            config,
            device: device.clone(),
            body,
            unmasked: BTreeMap::new(),
        })
    }

    /// The element type `dtype` holds this checkpoint's weight matrices in on `device`, judged by
    /// how the first block's query is stored (every family has one).
    pub fn weight_storage(
        config: &ModelConfig,
        source: &dyn WeightSource,
        dtype: WeightDtype,
        device: &Device,
    ) -> Result<DType> {
        let spec = config.architecture.spec();
        let q = format!("{}.0.{}.weight", spec.block_prefix, spec.stored_query);
        // OPT checkpoints may name their blocks without the leading `model.`.
        let stored = source
            .stored_type(&q)
            .or_else(|| source.stored_type(q.trim_start_matches("model.")))
            .ok_or(Error::MissingTensor(q))?;
        dtype.storage(stored, device)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether the model runs on the CPU backend (its tensors live in host memory).
    pub fn on_cpu(&self) -> bool {
        self.device == Device::flex()
    }

    /// The element type the weight matrices are held in on the device, read off the first
    /// block's query.
    pub fn weight_dtype(&self) -> DType {
        let q = LinearId {
            layer: 0,
            kind: LinearKind::Q,
        };
        self.arch()
            .linear(q)
            .expect("a loaded model has a block 0 with a query projection")
            .weight
            .dtype()
    }

    /// A fresh, empty KV cache for one sequence batch.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.num_layers)
    }

    /// Runs `tokens` (`[batch, seq]`) after whatever `cache` already holds and appends to the cache.
    pub fn forward(
        &self,
        tokens: Tensor<2, Int>,
        cache: &mut KvCache,
        logits: Logits,
    ) -> Result<Tensor<3>> {
        self.forward_recording(tokens, cache, logits, None)
    }

    /// [`Model::forward`] that also records, with a `recording`, what a relevance pass needs:
    /// the input of every block, the internals of the blocks it keeps and the last block's
    /// output.
    pub(crate) fn forward_recording(
        &self,
        tokens: Tensor<2, Int>,
        cache: &mut KvCache,
        logits: Logits,
        recording: Option<&mut Recording>,
    ) -> Result<Tensor<3>> {
        let [_, seq] = tokens.dims();
        if seq == 0 {
            return Err(Error::InvalidInput(
                "empty input: at least one token is needed".into(),
            ));
        }
        let end = cache.len() + seq;
        if end > self.config.max_position_embeddings {
            return Err(Error::InvalidInput(format!(
                "{end} tokens exceed the model's context of {} tokens; shorten the prompt or ask for fewer new tokens",
                self.config.max_position_embeddings
            )));
        }
        Ok(self.body.forward(tokens, cache, logits, recording))
    }

    /// The architecture's relevance backward.
    pub(crate) fn arch(&self) -> &dyn ArchOps {
        self.body.as_ref()
    }

    fn arch_mut(&mut self) -> &mut dyn ArchOps {
        self.body.as_mut()
    }

    /// Token ids of one sequence as a `[1, seq]` tensor on this model's device, rejecting ids
    /// outside the vocabulary (an out-of-range gather would read garbage on a GPU).
    pub fn tokens(&self, ids: &[u32]) -> Result<Tensor<2, Int>> {
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= self.config.vocab_size) {
            return Err(Error::InvalidInput(format!(
                "token id {bad} is outside the vocabulary of {} tokens",
                self.config.vocab_size
            )));
        }
        let data: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        Ok(Tensor::from_data(
            TensorData::new(data, [1, ids.len()]),
            &self.device,
        ))
    }
}

/// The embeddings of a sequence, split the way input relevance is reported.
pub(crate) struct Embedded {
    /// Token embeddings as looked up (before OPT's `project_in`).
    pub tokens: Tensor<3>,
    /// OPT's learned position embeddings (Llama has none: RoPE is inside attention).
    pub positions: Option<Tensor<3>>,
    /// What enters the first block.
    pub block_input: Tensor<3>,
}

/// A model parameter handed out for export.
pub(crate) enum Param {
    Vector(Tensor<1>),
    Matrix(Tensor<2>),
}

impl Param {
    pub(crate) fn dims(&self) -> Vec<usize> {
        match self {
            Param::Vector(t) => t.dims().to_vec(),
            Param::Matrix(t) => t.dims().to_vec(),
        }
    }

    /// Bytes it takes as held (16-bit stays 16-bit).
    pub(crate) fn bytes(&self) -> u64 {
        let dtype = match self {
            Param::Vector(t) => t.dtype(),
            Param::Matrix(t) => t.dtype(),
        };
        self.dims().iter().product::<usize>() as u64 * bytes_per_weight(dtype)
    }

    /// Its values read back from the device as held (16-bit stays 16-bit).
    pub(crate) async fn to_data(&self) -> Result<burn::tensor::TensorData> {
        match self {
            Param::Vector(t) => crate::readback::to_data_async(t.clone()).await,
            Param::Matrix(t) => crate::readback::to_data_async(t.clone()).await,
        }
    }
}

/// Appends a block's Linears (`linear(kind)`) under `prefix`, in checkpoint order.
pub(crate) fn export_linears<'a>(
    prefix: &str,
    linears: &[(LinearKind, &str)],
    linear: impl Fn(LinearKind) -> Option<&'a Linear>,
    out: &mut Vec<(String, Param)>,
) {
    for &(kind, module) in linears {
        if let Some(l) = linear(kind) {
            l.export(&format!("{prefix}.{module}"), out);
        }
    }
}

/// Every Linear of a block with the input it saw: Linears sharing an input are listed together.
pub(crate) type LinearInputs = Vec<(&'static [LinearKind], Tensor<3>)>;

/// What each architecture provides: its forward, the pieces of a relevance pass, access to the
/// block Linears (pruning) and its parameters by checkpoint name (export).
pub(crate) trait ArchOps: std::fmt::Debug + Send + Sync {
    /// Runs `tokens` after what `cache` holds (positions and context already checked) and, with
    /// a `recording`, records what [`ArchOps::block_backward`] reads back (exact products).
    fn forward(
        &self,
        tokens: Tensor<2, Int>,
        cache: &mut KvCache,
        logits: Logits,
        recording: Option<&mut Recording>,
    ) -> Tensor<3>;

    /// A block Linear, if the architecture has that kind.
    fn linear(&self, id: LinearId) -> Option<&Linear>;

    /// A block Linear to change; the Linears it shares a product with compute separately until
    /// [`ArchOps::join_linears`].
    fn linear_mut(&mut self, id: LinearId) -> Option<&mut Linear>;

    /// Joins again the Linears that share an input into one product each, where the device gains
    /// from it (`joined.rs`).
    fn join_linears(&mut self);

    /// Runs block `layer` on `x` (full causal attention from position 0) and returns its output
    /// and the input of each of its Linears (Wanda's activation statistics).
    fn block_linear_inputs(&self, layer: usize, x: Tensor<3>) -> (Tensor<3>, LinearInputs);

    /// Every parameter with its Hugging Face name, in checkpoint order.
    fn parameters(&self) -> Vec<(String, Param)>;

    /// Rows of the output embedding for `tokens`: `[n, d]`.
    fn head_rows(&self, tokens: Tensor<1, Int>) -> Tensor<2>;

    /// From the last block's output to the LM head's input (final norm, OPT's project_out).
    fn head_input(&self, x: Tensor<3>) -> Tensor<3>;

    /// The backward of [`ArchOps::head_input`].
    fn head_input_backward(&self, x: &Tensor<3>, g: Tensor<3>, rules: RuleSet) -> Tensor<3>;

    /// Carries `g` from block `layer`'s output to its input, handing heads, neurons and (if
    /// wanted) weight relevance to `sink`. Reads the block's internals from `recording` (and
    /// frees them there) when the forward kept them, and re-runs the block on its recorded
    /// input otherwise.
    fn block_backward(
        &self,
        layer: usize,
        recording: &mut Recording,
        g: Tensor<3>,
        rules: RuleSet,
        sink: &mut dyn RelevanceSink,
    ) -> Result<Tensor<3>>;

    fn embeddings(&self, tokens: Tensor<2, Int>) -> Embedded;

    /// Gradients at the token embeddings and (OPT) the position embeddings, from `g` at the
    /// first block's input.
    fn embeddings_backward(&self, g: Tensor<3>) -> (Tensor<3>, Option<Tensor<3>>);
}
