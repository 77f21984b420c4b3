//! Perplexity over fixed, non-overlapping token windows (`wiki-512`: 64 windows of 512 tokens).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::model::{Logits, Model};

/// A named windowing protocol.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PerplexityProtocol {
    pub name: String,
    pub window: usize,
    pub windows: usize,
}

impl PerplexityProtocol {
    /// `wiki-512` (64 windows) or a smaller named variant `wiki-512xN`.
    pub fn wiki(window: usize, windows: usize) -> Self {
        let name = if window == 512 && windows == 64 {
            "wiki-512".to_string()
        } else {
            format!("wiki-{window}x{windows}")
        };
        Self {
            name,
            window,
            windows,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PerplexityResult {
    pub protocol: PerplexityProtocol,
    pub perplexity: f64,
    pub mean_nll: f64,
    pub predicted_tokens: usize,
}

/// Log-probabilities `[1, n - 1, 1]` of each next token of a window, left on the device.
pub fn window_logprobs(model: &Model, ids: &[u32]) -> Result<Tensor<3>> {
    if ids.len() < 2 {
        return Err(Error::InvalidInput(
            "a perplexity window needs at least 2 tokens".into(),
        ));
    }
    let n = ids.len() - 1;
    let tokens = model.tokens(&ids[..n])?;
    let mut cache = model.new_cache();
    let logits = model.forward(tokens, &mut cache, Logits::All)?;
    let targets: Vec<i64> = ids[1..].iter().map(|&t| t as i64).collect();
    let targets = Tensor::<3, Int>::from_data(TensorData::new(targets, [1, n, 1]), model.device());
    Ok(log_softmax(logits, 2).gather(2, targets))
}

/// Sum of next-token negative log-likelihoods over one window, and how many tokens were predicted.
/// Computed on the device; only `window - 1` numbers come back.
#[cfg(not(target_family = "wasm"))]
pub fn window_nll(model: &Model, ids: &[u32]) -> Result<(f64, usize)> {
    let values = crate::readback::to_vec(window_logprobs(model, ids)?)?;
    let n = values.len();
    if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::Device(format!(
            "non-finite log-probability at position {bad}"
        )));
    }
    Ok((-values.iter().map(|&v| v as f64).sum::<f64>(), n))
}

#[cfg(not(target_family = "wasm"))]
/// Perplexity of `tokens` under `protocol`, calling `progress(done, total)` after each window.
/// Errors if the text is too short for the protocol's windows.
pub fn perplexity(
    model: &Model,
    tokens: &[u32],
    protocol: &PerplexityProtocol,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PerplexityResult> {
    let needed = protocol.window * protocol.windows;
    if tokens.len() < needed {
        return Err(Error::InvalidInput(format!(
            "{} needs {needed} tokens but the text has {}",
            protocol.name,
            tokens.len()
        )));
    }
    if protocol.window > model.config.max_position_embeddings {
        return Err(Error::InvalidInput(format!(
            "window of {} exceeds the model context {}",
            protocol.window, model.config.max_position_embeddings
        )));
    }
    let (mut nll, mut count) = (0.0, 0);
    for (i, window) in tokens
        .chunks_exact(protocol.window)
        .take(protocol.windows)
        .enumerate()
    {
        let (s, n) = window_nll(model, window)?;
        nll += s;
        count += n;
        progress(i + 1, protocol.windows);
    }
    let mean_nll = nll / count as f64;
    Ok(PerplexityResult {
        protocol: protocol.clone(),
        perplexity: mean_nll.exp(),
        mean_nll,
        predicted_tokens: count,
    })
}
