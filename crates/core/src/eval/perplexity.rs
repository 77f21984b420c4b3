//! Perplexity over fixed, non-overlapping token windows (`wiki-512`: 64 windows of 512 tokens).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::job::Steps;
use crate::model::{Logits, Model};

/// A named windowing protocol.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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

/// Sum of next-token negative log-likelihoods of one window's log-probabilities, and how many.
fn window_sum(values: &[f32]) -> Result<(f64, usize)> {
    if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::Device(format!(
            "non-finite log-probability at position {bad}"
        )));
    }
    Ok((-values.iter().map(|&v| v as f64).sum::<f64>(), values.len()))
}

/// Sum of next-token negative log-likelihoods over one window, and how many tokens were predicted.
/// Computed on the device; only `window - 1` numbers come back.
#[cfg(not(target_family = "wasm"))]
pub fn window_nll(model: &Model, ids: &[u32]) -> Result<(f64, usize)> {
    window_sum(&crate::readback::to_vec(window_logprobs(model, ids)?)?)
}

/// The protocol's windows of `tokens`, after checking the text and the model can serve them.
fn windows<'t>(
    model: &Model,
    tokens: &'t [u32],
    protocol: &PerplexityProtocol,
) -> Result<impl Iterator<Item = &'t [u32]>> {
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
    Ok(tokens.chunks_exact(protocol.window).take(protocol.windows))
}

fn result(protocol: &PerplexityProtocol, nll: f64, count: usize) -> PerplexityResult {
    let mean_nll = nll / count as f64;
    PerplexityResult {
        protocol: protocol.clone(),
        perplexity: mean_nll.exp(),
        mean_nll,
        predicted_tokens: count,
    }
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
    let (mut nll, mut count) = (0.0, 0);
    for (i, window) in windows(model, tokens, protocol)?.enumerate() {
        let (s, n) = window_nll(model, window)?;
        nll += s;
        count += n;
        progress(i + 1, protocol.windows);
    }
    Ok(result(protocol, nll, count))
}

/// [`perplexity`] with asynchronous read-backs (the browser, and every [`crate::job`]): each
/// window is a step of `stage`, so the driver shows progress and may stop it.
pub async fn perplexity_async(
    model: &Model,
    tokens: &[u32],
    protocol: &PerplexityProtocol,
    steps: &mut impl Steps,
    stage: &str,
) -> Result<PerplexityResult> {
    let (mut nll, mut count) = (0.0, 0);
    for (i, window) in windows(model, tokens, protocol)?.enumerate() {
        steps.step(stage, i, protocol.windows).await?;
        let values = crate::readback::to_vec_async(window_logprobs(model, window)?).await?;
        let (s, n) = window_sum(&values)?;
        nll += s;
        count += n;
    }
    Ok(result(protocol, nll, count))
}
