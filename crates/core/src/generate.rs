//! Autoregressive generation with a KV cache: greedy, temperature, top-k, top-p, repetition penalty.
//!
//! [`Generator`] is a small state machine (forward, then accept the logits) so that the same
//! logic drives a synchronous loop natively and an `async` loop in the browser, where tensors
//! must be read back asynchronously.

use burn::tensor::Tensor;

use crate::error::{Error, Result};
use crate::model::{KvCache, Logits, Model};
use crate::rng::SplitMix64;

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampling {
    /// Always the most likely token.
    Greedy,
    /// Sample from the softmax at `temperature`, optionally restricted to the `top_k` most likely
    /// tokens and/or the smallest set whose probability reaches `top_p`.
    Sample {
        temperature: f32,
        top_k: Option<usize>,
        top_p: Option<f32>,
    },
}

impl Sampling {
    /// The usual command-line/page convention: temperature 0 (or below) means greedy.
    pub fn from_temperature(temperature: f32, top_k: Option<usize>, top_p: Option<f32>) -> Self {
        if temperature <= 0.0 {
            Self::Greedy
        } else {
            Self::Sample {
                temperature,
                top_k,
                top_p,
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    pub seed: u64,
    /// Divide (positive) or multiply (negative) the logits of recently seen tokens; 1.0 = off.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    pub stop_at_eos: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            sampling: Sampling::Greedy,
            seed: 299_792_458,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            stop_at_eos: true,
        }
    }
}

impl GenerateOptions {
    pub fn validate(&self) -> Result<()> {
        if let Sampling::Sample {
            temperature,
            top_k,
            top_p,
        } = &self.sampling
        {
            if !(temperature.is_finite() && *temperature > 0.0) {
                return Err(Error::InvalidInput(format!(
                    "temperature must be > 0 (got {temperature}); use greedy for 0"
                )));
            }
            if *top_k == Some(0) {
                return Err(Error::InvalidInput("top-k must be at least 1".into()));
            }
            if let Some(p) = top_p
                && !(*p > 0.0 && *p <= 1.0)
            {
                return Err(Error::InvalidInput(format!(
                    "top-p must be in (0, 1] (got {p})"
                )));
            }
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return Err(Error::InvalidInput(format!(
                "repeat penalty must be > 0 (got {})",
                self.repeat_penalty
            )));
        }
        Ok(())
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum StopReason {
    EndOfSequence,
    MaxTokens,
    ContextFull,
    Cancelled,
}

/// One sequence being generated.
pub struct Generator<'m> {
    model: &'m Model,
    cache: KvCache,
    /// Tokens of this sequence run through the model so far: the positions it fills in whichever
    /// cache holds it (its own, or its row of a [`Batch`]'s, after that row's padding).
    run: usize,
    /// Tokens not yet run through the model (the prompt, then each accepted token).
    pending: Vec<u32>,
    history: Vec<u32>,
    generated: Vec<u32>,
    options: GenerateOptions,
    rng: SplitMix64,
    stop: Option<StopReason>,
}

impl<'m> Generator<'m> {
    /// Checks the prompt against the context; `prompt` must hold at least one token.
    pub fn new(model: &'m Model, prompt: &[u32], options: GenerateOptions) -> Result<Self> {
        options.validate()?;
        if prompt.is_empty() {
            return Err(Error::InvalidInput(
                "the prompt is empty: type something to continue".into(),
            ));
        }
        let ctx = model.config.max_position_embeddings;
        if prompt.len() >= ctx {
            return Err(Error::InvalidInput(format!(
                "the prompt has {} tokens but the model's context holds {ctx}; shorten it to at most {} tokens",
                prompt.len(),
                ctx - 1
            )));
        }
        model.tokens(prompt)?;
        Ok(Self {
            model,
            cache: model.new_cache(),
            run: 0,
            pending: prompt.to_vec(),
            history: prompt.to_vec(),
            generated: Vec::new(),
            rng: SplitMix64::new(options.seed),
            options,
            stop: None,
        })
    }

    /// Runs the pending tokens; returns the next-token logits `[1, 1, vocab]` still on the device.
    pub fn forward(&mut self) -> Result<Tensor<3>> {
        let tokens = self.model.tokens(self.pending()?)?;
        self.mark_run();
        self.model.forward(tokens, &mut self.cache, Logits::Last)
    }

    /// The tokens to run next.
    fn pending(&self) -> Result<&[u32]> {
        if self.stop.is_some() {
            return Err(Error::InvalidInput("generation already finished".into()));
        }
        Ok(&self.pending)
    }

    /// Counts the pending tokens as run (once their forward is under way).
    fn mark_run(&mut self) {
        self.run += self.pending.len();
        self.pending.clear();
    }

    /// Chooses the next token from the host copy of the logits returned by [`Self::forward`].
    /// Returns the token, or `None` once generation has stopped (see [`Self::stop_reason`]).
    pub fn accept(&mut self, logits: &[f32]) -> Result<Option<u32>> {
        if let Some(bad) = logits.iter().position(|x| x.is_nan()) {
            return Err(Error::Device(format!(
                "the model produced NaN logits (first at token {bad}); the weights or the device are broken"
            )));
        }
        let next = self.pick(logits);
        if self.options.stop_at_eos && self.model.config.eos_token_ids.contains(&next) {
            self.stop = Some(StopReason::EndOfSequence);
            return Ok(None);
        }
        self.generated.push(next);
        self.history.push(next);
        if self.generated.len() >= self.options.max_new_tokens {
            self.stop = Some(StopReason::MaxTokens);
        } else if self.run + 1 >= self.model.config.max_position_embeddings {
            self.stop = Some(StopReason::ContextFull);
        } else {
            self.pending.push(next);
        }
        Ok(Some(next))
    }

    pub fn cancel(&mut self) {
        self.stop.get_or_insert(StopReason::Cancelled);
    }

    pub fn is_finished(&self) -> bool {
        self.stop.is_some() || self.options.max_new_tokens == 0
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop
    }

    pub fn generated(&self) -> &[u32] {
        &self.generated
    }

    fn pick(&mut self, logits: &[f32]) -> u32 {
        let mut logits = logits.to_vec();
        if self.options.repeat_penalty != 1.0 {
            let start = self
                .history
                .len()
                .saturating_sub(self.options.repeat_last_n);
            let mut seen = self.history[start..].to_vec();
            seen.sort_unstable();
            seen.dedup();
            for &t in &seen {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l >= 0.0 {
                        *l / self.options.repeat_penalty
                    } else {
                        *l * self.options.repeat_penalty
                    };
                }
            }
        }
        match &self.options.sampling {
            Sampling::Greedy => argmax(&logits),
            Sampling::Sample {
                temperature,
                top_k,
                top_p,
            } => sample(&logits, *temperature, *top_k, *top_p, self.rng.next_f64()),
        }
    }
}

/// Several sequences generated together. Each prompt runs alone, exactly as a [`Generator`] runs
/// it; then the sequences still going take their decode steps as one batch (their caches
/// stacked, [`KvCache::stack`]), so that a step reads the weights once for all of them instead
/// of once each. A sequence that stops leaves the batch.
pub struct Batch<'m> {
    model: &'m Model,
    sequences: Vec<Generator<'m>>,
    /// Sequences whose prompt has run.
    prompted: usize,
    /// The batch's cache once every prompt has run; its row `r` holds `sequences[rows[r]]`.
    decoding: Option<(KvCache, Vec<usize>)>,
    /// Decode steps taken.
    steps: usize,
}

impl<'m> Batch<'m> {
    /// Checks every prompt as [`Generator::new`] does (an error names the prompt).
    pub fn new(model: &'m Model, prompts: &[Vec<u32>], options: GenerateOptions) -> Result<Self> {
        let sequences = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Generator::new(model, p, options.clone()).map_err(|e| match e {
                    Error::InvalidInput(why) => {
                        Error::InvalidInput(format!("prompt {} of {}: {why}", i + 1, prompts.len()))
                    }
                    other => other,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut batch = Self {
            model,
            sequences,
            prompted: 0,
            decoding: None,
            steps: 0,
        };
        batch.skip_finished_prompts()?;
        Ok(batch)
    }

    /// Runs the next prompt, or the next decode step of every sequence still going: the
    /// next-token logits `[rows, 1, vocab]`, still on the device, for [`Self::accept`].
    pub fn forward(&mut self) -> Result<Tensor<3>> {
        let Some((cache, rows)) = &mut self.decoding else {
            return match self.sequences.get_mut(self.prompted) {
                Some(g) => g.forward(),
                None => Err(Error::InvalidInput("generation already finished".into())),
            };
        };
        let mut ids = Vec::with_capacity(rows.len());
        for &r in rows.iter() {
            // A sequence still going has exactly its last accepted token pending.
            ids.extend_from_slice(self.sequences[r].pending()?);
        }
        let tokens = self.model.tokens(&ids)?.reshape([ids.len(), 1]);
        for &r in rows.iter() {
            self.sequences[r].mark_run();
        }
        self.model.forward(tokens, cache, Logits::Last)
    }

    /// Takes the host copy of the logits [`Self::forward`] returned.
    pub fn accept(&mut self, logits: &[f32]) -> Result<()> {
        let Some((cache, rows)) = &mut self.decoding else {
            let g = self
                .sequences
                .get_mut(self.prompted)
                .ok_or_else(|| Error::InvalidInput("generation already finished".into()))?;
            g.accept(logits)?;
            self.prompted += 1;
            return self.skip_finished_prompts();
        };
        let vocab = logits.len() / rows.len().max(1);
        for (&r, row) in rows.iter().zip(logits.chunks(vocab)) {
            self.sequences[r].accept(row)?;
        }
        self.steps += 1;
        let going: Vec<usize> = (0..rows.len())
            .filter(|&i| !self.sequences[rows[i]].is_finished())
            .collect();
        if going.is_empty() {
            self.decoding = None;
        } else if going.len() < rows.len() {
            cache.keep_rows(&going);
            *rows = going.iter().map(|&i| rows[i]).collect();
        }
        Ok(())
    }

    /// Moves past prompts that need no step (a sequence that stopped on its prompt's token, or
    /// asks for no tokens); once all prompts have run, stacks the caches of those still going.
    fn skip_finished_prompts(&mut self) -> Result<()> {
        while self.prompted < self.sequences.len() {
            let g = &self.sequences[self.prompted];
            if !g.is_finished() && g.run == 0 {
                return Ok(());
            }
            self.prompted += 1;
        }
        let rows: Vec<usize> = (0..self.sequences.len())
            .filter(|&r| !self.sequences[r].is_finished())
            .collect();
        if !rows.is_empty() {
            let caches = rows
                .iter()
                .map(|&r| std::mem::replace(&mut self.sequences[r].cache, KvCache::EMPTY))
                .collect();
            self.decoding = Some((KvCache::stack(caches)?, rows));
        }
        Ok(())
    }

    pub fn is_finished(&self) -> bool {
        self.prompted == self.sequences.len() && self.decoding.is_none()
    }

    /// The sequences (indices into the prompts) the next [`Self::forward`] runs, in the order
    /// of its logits' rows.
    pub fn running(&self) -> Vec<usize> {
        match &self.decoding {
            Some((_, rows)) => rows.clone(),
            None if self.prompted < self.sequences.len() => vec![self.prompted],
            None => Vec::new(),
        }
    }

    /// Steps done and the most there can be: one per prompt (which gives each sequence its first
    /// token), then one per further token.
    pub fn progress(&self) -> (usize, usize) {
        let max_new = self
            .sequences
            .first()
            .map_or(0, |g| g.options.max_new_tokens);
        (
            self.prompted + self.steps,
            self.sequences.len() + max_new.saturating_sub(1),
        )
    }

    /// Each sequence's new tokens and why it stopped, in the prompts' order.
    pub fn results(&self) -> Vec<(Vec<u32>, StopReason)> {
        self.sequences
            .iter()
            .map(|g| {
                (
                    g.generated().to_vec(),
                    g.stop_reason().unwrap_or(StopReason::MaxTokens),
                )
            })
            .collect()
    }
}

/// Index of the largest value (the first one on ties, as `torch.argmax`).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// Draws from softmax(logits / temperature) restricted by top-k and top-p, given a uniform `u` in [0, 1).
fn sample(
    logits: &[f32],
    temperature: f32,
    top_k: Option<usize>,
    top_p: Option<f32>,
    u: f64,
) -> u32 {
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    if let Some(k) = top_k {
        order.truncate(k.max(1));
    }
    let max = logits[order[0] as usize] as f64;
    let mut probs: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i as usize] as f64 - max) / temperature as f64).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if let Some(p) = top_p {
        let mut cumulative = 0.0;
        let keep = probs
            .iter()
            .position(|&q| {
                cumulative += q;
                cumulative >= p as f64
            })
            .map_or(probs.len(), |i| i + 1);
        order.truncate(keep);
        probs.truncate(keep);
    }
    let total: f64 = probs.iter().sum();
    let mut target = u * total;
    for (&id, &p) in order.iter().zip(&probs) {
        if target < p {
            return id;
        }
        target -= p;
    }
    *order.last().expect("at least one candidate")
}

/// Generates with asynchronous read-backs (the browser), without streaming: the new tokens and
/// why generation stopped.
pub async fn generate_async(
    model: &Model,
    prompt: &[u32],
    options: GenerateOptions,
) -> Result<(Vec<u32>, StopReason)> {
    let mut g = Generator::new(model, prompt, options)?;
    while !g.is_finished() {
        let logits = crate::readback::to_vec_async(g.forward()?).await?;
        g.accept(&logits)?;
    }
    Ok((
        g.generated().to_vec(),
        g.stop_reason().unwrap_or(StopReason::MaxTokens),
    ))
}

/// Generates natively, calling `on_token(id)` after each new token; return `false` to stop early.
#[cfg(not(target_family = "wasm"))]
pub fn generate(
    model: &Model,
    prompt: &[u32],
    options: GenerateOptions,
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<(Vec<u32>, StopReason)> {
    let mut g = Generator::new(model, prompt, options)?;
    while !g.is_finished() {
        let logits = crate::readback::to_vec(g.forward()?)?;
        match g.accept(&logits)? {
            Some(id) if !on_token(id) => g.cancel(),
            _ => {}
        }
    }
    Ok((
        g.generated().to_vec(),
        g.stop_reason().unwrap_or(StopReason::MaxTokens),
    ))
}

/// Generates for every prompt as one [`Batch`] natively: each sequence's new tokens and why it
/// stopped, in the prompts' order.
#[cfg(not(target_family = "wasm"))]
pub fn generate_batch(
    model: &Model,
    prompts: &[Vec<u32>],
    options: GenerateOptions,
) -> Result<Vec<(Vec<u32>, StopReason)>> {
    let mut batch = Batch::new(model, prompts, options)?;
    while !batch.is_finished() {
        let logits = crate::readback::to_vec(batch.forward()?)?;
        batch.accept(&logits)?;
    }
    Ok(batch.results())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn top_k_one_is_greedy() {
        let logits = [0.1, 2.0, 1.9, -4.0];
        for u in [0.0, 0.3, 0.99] {
            assert_eq!(sample(&logits, 1.0, Some(1), None, u), 1);
        }
    }

    #[test]
    fn top_p_keeps_smallest_nucleus() {
        // probabilities ≈ [0.64, 0.24, 0.09, 0.03]: top-p 0.5 keeps only the first.
        let logits = [3.0, 2.0, 1.0, 0.0];
        for u in [0.0, 0.5, 0.999] {
            assert_eq!(sample(&logits, 1.0, None, Some(0.5), u), 0);
        }
        // top-p 0.85 keeps two; u near 1 picks the second.
        assert_eq!(sample(&logits, 1.0, None, Some(0.85), 0.99), 1);
    }

    #[test]
    fn sampling_follows_the_distribution() {
        let logits = [0.0f32, (3.0f32).ln()]; // p = [0.25, 0.75]
        let mut rng = SplitMix64::new(7);
        let n = 20_000;
        let ones = (0..n)
            .filter(|_| sample(&logits, 1.0, None, None, rng.next_f64()) == 1)
            .count();
        let freq = ones as f64 / n as f64;
        assert!((freq - 0.75).abs() < 0.015, "frequency {freq}");
    }

    #[test]
    fn options_reject_bad_values() {
        let bad = GenerateOptions {
            sampling: Sampling::Sample {
                temperature: 0.0,
                top_k: None,
                top_p: None,
            },
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let bad = GenerateOptions {
            sampling: Sampling::Sample {
                temperature: 1.0,
                top_k: None,
                top_p: Some(1.5),
            },
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}
