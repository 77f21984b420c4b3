//! How long a panel's long job will take on the CPU fallback, said before it starts.
//!
//! A job's work is counted in tokens: through relevance passes (forward, backward and scores),
//! through batched forward passes (perplexity windows, Wanda's activations, a circuit's curve)
//! and decoded (continuations, whose decode steps run as one batch per set of prompts:
//! [`batched_decode`]). Each costs a fixed multiple of one decoded token,
//! so the loaded model's last generation speed on this device (`Ui::decode_speed`: the badge's
//! tokens/s, from generations long enough to time) prices them all: it scales with the machine
//! and with the model's size alike. The multiples were fitted to
//! the page's default jobs timed by `cargo xtask bench page-release` (README, "Benchmark"), which
//! also prints this estimate beside each measured time.

use leptos::prelude::*;

/// One token through a relevance pass, in decoded-token times (SmolLM2 on the CPU fallback,
/// release build, 2026-12-07: LRP mean |R| over 2,048 tokens in 63.3 s at 14.1 generated
/// tokens/s). The multiples belong to one build of the page on one kind of CPU, not to the model:
/// that day's decode kernel (core's `few_rows.rs`) made decoding 2× faster and relevance not, and
/// they went from 0.2 and 0.07 (dev build, 2026-12-03) to these.
const RELEVANCE_TOKEN: f64 = 0.44;
/// One token of a batched forward pass, in decoded-token times (the IOI head search's 32
/// prompts in 99.3 s at the same speed, less its relevance pass).
const FORWARD_TOKEN: f64 = 0.15;
/// Jobs estimated to take less than this say nothing.
const WARN_SECONDS: f64 = 60.0;
/// Tokens of one task or behaviour prompt, about (the built-in ones have 6–20).
pub(crate) const PROMPT_TOKENS: f64 = 16.0;
/// Tokens of the page's perplexity readout (wiki-128x2 on the CPU).
pub(crate) const READOUT_TOKENS: f64 = 256.0;

/// `steps` decode steps of `rows` sequences at once, in decoded-token times: a step reads every
/// weight once, as one decoded token does, and its products cost what `rows` tokens of a forward
/// pass cost; whichever is more bounds it.
pub(crate) fn batched_decode(rows: f64, steps: f64) -> f64 {
    steps * (rows * FORWARD_TOKEN).max(1.0)
}

/// The work of one job, in tokens.
#[derive(Clone, Copy, Default)]
pub(crate) struct Work {
    pub(crate) relevance: f64,
    pub(crate) forward: f64,
    /// In decoded-token times (one per token decoded alone; [`batched_decode`] for a batch).
    pub(crate) decoded: f64,
}

impl Work {
    /// Seconds at `tokens_per_second` decoded.
    pub(crate) fn seconds(&self, tokens_per_second: f64) -> f64 {
        (self.relevance * RELEVANCE_TOKEN + self.forward * FORWARD_TOKEN + self.decoded)
            / tokens_per_second
    }
}

/// "about 3 min", rounded as the progress bar's time left is.
pub(crate) fn duration(seconds: f64) -> String {
    if seconds >= 90.0 {
        format!("about {:.0} min", seconds / 60.0)
    } else {
        format!("about {seconds:.0} s")
    }
}

/// A warning beside a job's button when, on the CPU (`on_gpu` false), `work` will take a minute or
/// more at `tokens_per_second` decoded (none before a generation has measured it).
pub(crate) fn cpu_warning(
    on_gpu: RwSignal<bool>,
    tokens_per_second: RwSignal<Option<f64>>,
    testid: &'static str,
    work: impl Fn() -> Work + Send + Sync + 'static,
) -> impl IntoView {
    move || {
        if on_gpu.get() {
            return None;
        }
        let speed = tokens_per_second.get().filter(|s| *s > 0.0)?;
        let seconds = work().seconds(speed);
        (seconds >= WARN_SECONDS).then(|| {
            view! {
                <span class="warn" data-testid=testid
                    title="estimated from this device's generation speed (the badge's tokens/s); fewer samples or prompts are faster, and WebGPU much faster">
                    {format!("⚠ {} on this CPU", duration(seconds))}
                </span>
            }
        })
    }
}
