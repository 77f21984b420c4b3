//! Counting GPU kernel launches: the number that says how far a pass is from the GPU's speed limit
//! on small models, where each launch costs 5–20 µs whatever it computes.
//!
//! cubecl reports every kernel it issues, on the issuing thread, to one process-wide observer;
//! a [`LaunchCounter`] is that observer for as long as it lives. It counts what was issued
//! (fused kernels once, autotune's trial launches too, so warm up before counting). The CPU
//! backend launches no kernels and counts zero.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cubecl_runtime::logging::{LaunchObservation, LaunchObserver};

/// Kernel names and how often each was issued.
#[derive(Default)]
struct Tally(Mutex<HashMap<&'static str, usize>>);

impl LaunchObserver for Tally {
    fn launched(&self, kernel: &'static str) {
        // A poisoned lock only means another counting thread panicked; keep counting.
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(kernel).or_default() += 1;
    }
}

/// Counts the kernel launches of everything issued while it is alive (on every thread).
/// One counter at a time: a second one replaces the first until it is dropped.
pub struct LaunchCounter {
    tally: Arc<Tally>,
    _observation: LaunchObservation,
}

impl Default for LaunchCounter {
    fn default() -> Self {
        Self::start()
    }
}

impl LaunchCounter {
    /// Starts counting from zero.
    pub fn start() -> Self {
        let tally = Arc::new(Tally::default());
        let observation = LaunchObservation::new(tally.clone());
        Self {
            tally,
            _observation: observation,
        }
    }

    /// Stops counting and returns the counts. Launches are reported when issued, and burn's
    /// fusion issues what it holds at the latest when a result is read back, so count work that
    /// ends in a read-back.
    pub fn finish(self) -> LaunchCount {
        let counts = self.tally.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut by_kernel: Vec<(String, usize)> = counts
            .iter()
            .map(|(name, n)| (short_name(name), *n))
            .collect();
        by_kernel.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        LaunchCount {
            total: counts.values().sum(),
            by_kernel,
        }
    }
}

/// Kernel launches counted over some work.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LaunchCount {
    pub total: usize,
    /// Launches per kernel (short names), most frequent first.
    pub by_kernel: Vec<(String, usize)>,
}

/// Kernel launches of one decode step (one new token through the KV cache, its logits read back),
/// averaged over `steps` steps after the prompt's prefill. The same generation runs once before,
/// uncounted, so autotune has measured every shape the counted one meets (its trial launches
/// would otherwise be counted whenever the growing cache reaches a new shape bucket). Native
/// only: it reads tensors back synchronously.
#[cfg(not(target_family = "wasm"))]
pub fn per_decode_step(
    model: &crate::Model,
    prompt: &[u32],
    steps: usize,
) -> crate::Result<LaunchesPer> {
    use crate::generate::{GenerateOptions, Generator};
    if steps == 0 {
        return Err(crate::Error::InvalidInput(
            "count launches over at least one decode step".into(),
        ));
    }
    let options = GenerateOptions {
        max_new_tokens: steps + 1,
        stop_at_eos: false,
        ..Default::default()
    };
    let step = |g: &mut Generator| -> crate::Result<()> {
        let logits = crate::readback::to_vec(g.forward()?)?;
        g.accept(&logits)?;
        Ok(())
    };
    let mut counted = None;
    for warm in [true, false] {
        let mut generator = Generator::new(model, prompt, options.clone())?;
        step(&mut generator)?; // prefill
        let counter = (!warm).then(LaunchCounter::start);
        for _ in 0..steps {
            step(&mut generator)?;
        }
        counted = counter.map(LaunchCounter::finish);
    }
    Ok(LaunchesPer {
        count: counted.unwrap_or_default(),
        repeats: steps,
    })
}

/// Kernel launches of one AttnLRP relevance pass over `prompt` with every weight's `W ⊙ G_W`
/// kept (explaining the greedy next token), counted on the second of two identical passes.
#[cfg(not(target_family = "wasm"))]
pub fn per_relevance_pass(model: &crate::Model, prompt: &[u32]) -> crate::Result<LaunchesPer> {
    use crate::relevance::{MemoryLimits, RuleSet, WeightDetail, explain};
    let pass = || {
        explain(
            model,
            prompt,
            None,
            RuleSet::AttnLrp,
            WeightDetail::Full,
            &MemoryLimits::default(),
            &mut |_, _| {},
        )
    };
    pass()?;
    let counter = LaunchCounter::start();
    pass()?;
    Ok(LaunchesPer {
        count: counter.finish(),
        repeats: 1,
    })
}

/// Launches counted over `repeats` repetitions of one unit of work.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LaunchesPer {
    pub count: LaunchCount,
    pub repeats: usize,
}

impl LaunchesPer {
    /// Launches per repetition, rounded to the nearest whole launch.
    pub fn per_repeat(&self) -> usize {
        (self.count.total + self.repeats / 2) / self.repeats.max(1)
    }

    /// The `top` most frequent kernels with their launches per repetition.
    pub fn table(&self, top: usize) -> Vec<(String, f64)> {
        self.count
            .by_kernel
            .iter()
            .take(top)
            .map(|(name, n)| (name.clone(), *n as f64 / self.repeats.max(1) as f64))
            .collect()
    }
}

/// `a::b::Kernel<c::D>` → `Kernel<D>`: module paths make kernel names unreadable in a table.
fn short_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut segment = String::new();
    for ch in name.chars() {
        match ch {
            ':' => segment.clear(),
            '<' | '>' | ',' | ' ' | '(' | ')' | '[' | ']' | ';' | '&' => {
                out.push_str(&segment);
                segment.clear();
                out.push(ch);
            }
            _ => segment.push(ch),
        }
    }
    out.push_str(&segment);
    // Matmul kernels spell out their whole tiling strategy; the family name is enough here.
    match out.split_once('<') {
        Some((family, _)) if out.len() > 48 => format!("{family}<…>"),
        _ => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_drop_module_paths() {
        assert_eq!(
            short_name("cubecl_std::tensor::Kernel<burn_cubecl::Float, u32>"),
            "Kernel<Float, u32>"
        );
        assert_eq!(short_name("matmul"), "matmul");
        let long = format!("cubek::MatmulEntry<{}>", "TensorArgs, ".repeat(8));
        assert_eq!(short_name(&long), "MatmulEntry<…>");
    }

    #[test]
    fn the_cpu_backend_launches_no_kernels() {
        let device = burn::tensor::Device::flex();
        let counter = LaunchCounter::start();
        let x = burn::tensor::Tensor::<2>::ones([4, 4], &device);
        let _ = x.clone().matmul(x).into_data();
        assert_eq!(counter.finish().total, 0);
    }
}
