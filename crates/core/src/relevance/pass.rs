//! The relevance pass itself: a recorded forward ([`Trace`]) and a backward that walks the
//! blocks from last to first, one [`RelevancePass::step`] per block, so callers can report
//! progress, yield to an event loop or cancel between blocks.

use burn::tensor::{Int, Tensor, TensorData};

use super::{RelevanceSink, RuleSet, Target};
use crate::error::{Error, Result};
use crate::model::{Embedded, KvCache, Logits, Model, ModelConfig, Recording};

/// Limits a relevance pass must fit in; `None` means unchecked.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryLimits {
    /// The largest single buffer the device accepts (a GPU's storage-binding limit).
    pub max_buffer_bytes: Option<u64>,
    /// The memory the whole pass may use on top of the model's weights.
    pub max_total_bytes: Option<u64>,
}

/// Bytes a pass over `len` tokens needs: the largest single buffer (one layer's attention
/// scores) and the total on top of the weights (recorded residuals, one block's working set,
/// and one Linear's weight relevance when asked for).
pub fn memory_needed(config: &ModelConfig, len: usize, with_weights: bool) -> (u64, u64) {
    let f = 4u64;
    let (t, h) = (len as u64, config.hidden_size as u64);
    let scores = config.num_heads as u64 * t * t * f;
    let residuals = (config.num_layers as u64 + 3) * t * h * f;
    let block = 4 * scores + 8 * t * config.intermediate_size as u64 * f + 12 * t * h * f;
    let weights = if with_weights {
        2 * h * config.intermediate_size as u64 * f
    } else {
        0
    };
    (scores, residuals + block + weights)
}

/// Bytes one block's internals take when a traced forward keeps them for the backward, for
/// `len` tokens: an upper bound over the families (Llama-style blocks keep both norm outputs,
/// the residual midpoint, q, k, v, the heads' output, Qwen3's pre-norm q and k, and the MLP's
/// gate, up and neurons; OPT's keep fewer).
pub fn kept_block_bytes(config: &ModelConfig, len: usize) -> u64 {
    let width = config.hidden_size.max(config.num_heads * config.head_dim) as u64;
    (9 * width + 3 * config.intermediate_size as u64) * len as u64 * 4
}

impl MemoryLimits {
    /// A clear error when a pass over `len` tokens would not fit.
    pub fn check(&self, config: &ModelConfig, len: usize, with_weights: bool) -> Result<()> {
        let (largest, total) = memory_needed(config, len, with_weights);
        let over = |what: String, requested: u64, limit: Option<u64>| match limit {
            Some(limit) if requested > limit => Err(Error::TooLarge {
                what,
                requested: requested.into(),
                limit: limit.into(),
            }),
            _ => Ok(()),
        };
        over(
            format!("explaining {len} tokens (one layer's attention scores)"),
            largest,
            self.max_buffer_bytes,
        )?;
        over(
            format!("explaining {len} tokens; use a shorter prompt"),
            total,
            self.max_total_bytes,
        )
    }

    /// These limits with `bytes` of the total already taken.
    pub fn less(&self, bytes: u64) -> Self {
        Self {
            max_total_bytes: self.max_total_bytes.map(|t| t.saturating_sub(bytes)),
            ..*self
        }
    }

    /// How many blocks a traced forward over `len` tokens keeps the internals of, so that the
    /// backward need not run their forward again: all of them when the memory is unchecked,
    /// else as many as fit in what the pass leaves of the limit.
    pub fn kept_blocks(&self, config: &ModelConfig, len: usize, with_weights: bool) -> usize {
        let Some(limit) = self.max_total_bytes else {
            return config.num_layers;
        };
        let (_, pass) = memory_needed(config, len, with_weights);
        let spare = limit.saturating_sub(pass);
        (spare / kept_block_bytes(config, len).max(1)).min(config.num_layers as u64) as usize
    }
}

/// A forward pass that kept what the backward needs: the input of every block and, as far as
/// the memory limits allow, each block's internals.
pub struct Trace {
    ids: Vec<u32>,
    tokens: Tensor<2, Int>,
    recording: Recording,
    last_logits: Tensor<1>,
}

impl Trace {
    /// Runs `model` over `ids` (one sequence) and records the residual stream and the
    /// internals of as many blocks as `limits` leave room for ([`MemoryLimits::kept_blocks`]).
    pub fn new(
        model: &Model,
        ids: &[u32],
        limits: &MemoryLimits,
        with_weights: bool,
    ) -> Result<Self> {
        if ids.is_empty() {
            return Err(Error::InvalidInput(
                "empty input: at least one token is needed".into(),
            ));
        }
        limits.check(&model.config, ids.len(), with_weights)?;
        let tokens = model.tokens(ids)?;
        let config = &model.config;
        let keep = limits.kept_blocks(config, ids.len(), with_weights);
        let mut recording = Recording::new(config.num_layers, keep);
        let mut cache = KvCache::new(config.num_layers);
        let logits = model.forward_recording(
            tokens.clone(),
            &mut cache,
            Logits::Last,
            Some(&mut recording),
        )?;
        let vocab = model.config.vocab_size;
        Ok(Self {
            ids: ids.to_vec(),
            tokens,
            recording,
            last_logits: logits.reshape([vocab]),
        })
    }

    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Logits at the last position `[vocab]` (to pick the greedy target).
    pub fn last_logits(&self) -> Tensor<1> {
        self.last_logits.clone()
    }

    /// How many blocks' internals the forward kept (the others are run again by the backward).
    pub fn kept_blocks(&self) -> usize {
        self.recording.kept_blocks()
    }
}

/// Device tensors a finished pass leaves: input relevance and the explained value.
#[derive(Debug, Clone)]
pub struct InputRelevance {
    /// Per token, summed over the embedding dimension: `[seq]`.
    pub tokens: Tensor<1>,
    /// OPT's learned positions, per position: `[seq]` (Llama: `None`).
    pub positions: Option<Tensor<1>>,
    /// The explained output `[1]`; its relevance equals its value.
    pub output: Tensor<1>,
}

/// A backward walk through one traced sequence.
pub struct RelevancePass<'m> {
    model: &'m Model,
    trace: Trace,
    rules: RuleSet,
    /// The modified gradient at the residual stream, at the output of block `next - 1`.
    g: Tensor<3>,
    next: usize,
    output: Tensor<1>,
}

impl<'m> RelevancePass<'m> {
    /// Seeds the pass: `G = 1` on the target, carried through the LM head and final norm.
    pub fn new(model: &'m Model, trace: Trace, target: &Target, rules: RuleSet) -> Result<Self> {
        let terms = target.terms(&trace.ids, model.config.vocab_size)?;
        let device = model.device();
        let arch = model.arch();
        let len = trace.ids.len();
        let token_ids: Vec<i64> = terms.iter().map(|t| t.token as i64).collect();
        let rows = arch.head_rows(Tensor::<1, Int>::from_data(
            TensorData::new(token_ids, [terms.len()]),
            device,
        ));
        // Coefficients [seq, terms]: the gradient at the head input is coefficients × rows.
        let mut coefficients = vec![0f32; len * terms.len()];
        for (i, t) in terms.iter().enumerate() {
            coefficients[t.position * terms.len() + i] = t.coefficient;
        }
        let coefficients =
            Tensor::<2>::from_data(TensorData::new(coefficients, [len, terms.len()]), device);
        let g_head = coefficients.matmul(rows).unsqueeze::<3>();
        let last = trace
            .recording
            .output()
            .ok_or_else(|| Error::InvalidInput("the trace recorded no blocks".into()))?
            .clone();
        let head_in = arch.head_input(last.clone());
        let output = (g_head.clone() * head_in).sum().reshape([1]);
        let g = arch.head_input_backward(&last, g_head, rules);
        Ok(Self {
            model,
            next: model.config.num_layers,
            trace,
            rules,
            g,
            output,
        })
    }

    pub fn layers_total(&self) -> usize {
        self.model.config.num_layers
    }

    pub fn layers_done(&self) -> usize {
        self.layers_total() - self.next
    }

    pub fn is_done(&self) -> bool {
        self.next == 0
    }

    /// Propagates through the next block (from the last one down); `false` once all are done.
    pub fn step(&mut self, sink: &mut dyn RelevanceSink) -> Result<bool> {
        if self.next == 0 {
            return Ok(false);
        }
        let layer = self.next - 1;
        let g = self.g.clone();
        self.g = self.model.arch().block_backward(
            layer,
            &mut self.trace.recording,
            g,
            self.rules,
            sink,
        )?;
        self.next = layer;
        Ok(self.next > 0)
    }

    /// Runs all remaining blocks.
    pub fn run(mut self, sink: &mut dyn RelevanceSink) -> Result<InputRelevance> {
        while self.step(sink)? {}
        self.finish()
    }

    /// Input relevance, once every block is done.
    pub fn finish(self) -> Result<InputRelevance> {
        if self.next != 0 {
            return Err(Error::InvalidInput(format!(
                "relevance pass finished with {} blocks left",
                self.next
            )));
        }
        let arch = self.model.arch();
        let embedded: Embedded = arch.embeddings(self.trace.tokens.clone());
        let (g_tokens, g_positions) = arch.embeddings_backward(self.g);
        let positions = match (&embedded.positions, g_positions) {
            (Some(p), Some(g)) => Some(crate::model::token_relevance(p, &g)),
            _ => None,
        };
        Ok(InputRelevance {
            tokens: crate::model::token_relevance(&embedded.tokens, &g_tokens),
            positions,
            output: self.output,
        })
    }
}
