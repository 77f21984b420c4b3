//! The two architectures, each with one forward definition, plus the pieces they share.

pub mod config;
mod layers;
mod llama;
mod opt;

use burn::tensor::{Device, Int, Tensor, TensorData};

pub use config::{Architecture, ModelConfig};
pub use layers::{KvCache, Linear};

use crate::error::{Error, Result};
use crate::io::WeightSource;

/// A loaded causal language model on a device.
#[derive(Debug)]
pub struct Model {
    pub config: ModelConfig,
    device: Device,
    body: Body,
}

#[derive(Debug)]
enum Body {
    Llama(Box<llama::Llama>),
    Opt(Box<opt::Opt>),
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
    /// Builds the model from a weight source, checking every tensor's shape against the config.
    /// `progress(done, total)` is called after each tensor is on the device.
    pub fn load(
        config: ModelConfig,
        source: &dyn WeightSource,
        device: &Device,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        config.validate()?;
        let mut loader = layers::Loader::new(source, device, progress);
        let body = match config.architecture {
            Architecture::Llama => Body::Llama(Box::new(llama::Llama::load(&config, &mut loader)?)),
            Architecture::Opt => Body::Opt(Box::new(opt::Opt::load(&config, &mut loader)?)),
        };
        Ok(Self {
            config,
            device: device.clone(),
            body,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
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
        Ok(match &self.body {
            Body::Llama(m) => m.forward(tokens, cache, logits),
            Body::Opt(m) => m.forward(tokens, cache, logits),
        })
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
