//! The task metric: `logit(answer) − logit(distractor)` at the last position of each prompt, with
//! accuracy (the difference is positive) and the top-1 rate (the answer is the argmax).
//!
//! Prompts of equal length run together in one batch: no padding, so batching cannot change a
//! logit, and only the last position's logits are computed.

use burn::tensor::{Int, Tensor, TensorData};

use super::{EncodedTask, TaskItem};
use crate::error::{Error, Result};
use crate::model::{Logits, Model};

/// Most prompts run in one forward.
const MAX_BATCH: usize = 32;

/// Task metrics averaged over a set of prompts.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskMetrics {
    pub prompts: usize,
    /// Mean of `logit(answer) − logit(distractor)`.
    pub logit_diff: f64,
    /// Share of prompts where the answer beats the distractor.
    pub accuracy: f64,
    /// Share of prompts where the answer is the most likely next token.
    pub top1: f64,
}

/// The outcome of each prompt, in the task's order.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptOutcomes {
    pub logit_diff: Vec<f32>,
    pub top1: Vec<bool>,
}

impl PromptOutcomes {
    pub fn metrics(&self) -> TaskMetrics {
        let n = self.logit_diff.len().max(1) as f64;
        TaskMetrics {
            prompts: self.logit_diff.len(),
            logit_diff: self.logit_diff.iter().map(|&d| f64::from(d)).sum::<f64>() / n,
            accuracy: self.logit_diff.iter().filter(|&&d| d > 0.0).count() as f64 / n,
            top1: self.top1.iter().filter(|&&t| t).count() as f64 / n,
        }
    }
}

/// Indices of the task's prompts grouped by length, each group cut into batches.
fn batches(task: &EncodedTask) -> Vec<Vec<usize>> {
    let mut by_len: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, item) in task.items.iter().enumerate() {
        by_len.entry(item.ids.len()).or_default().push(i);
    }
    by_len
        .into_values()
        .flat_map(|group| {
            group
                .chunks(MAX_BATCH)
                .map(<[usize]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `[b, 2]` on the device: each prompt's logit difference and 1.0 if the answer is the argmax.
fn batch_outcomes(model: &Model, items: &[&TaskItem]) -> Result<Tensor<2>> {
    let rows = items
        .iter()
        .map(|item| model.tokens(&item.ids))
        .collect::<Result<Vec<_>>>()?;
    let b = items.len();
    let candidates: Vec<i64> = items
        .iter()
        .flat_map(|item| [item.answer as i64, item.distractor as i64])
        .collect();
    if let Some(bad) = candidates
        .iter()
        .find(|&&t| t as usize >= model.config.vocab_size)
    {
        return Err(Error::InvalidInput(format!(
            "answer or distractor token id {bad} is outside the vocabulary of {} tokens",
            model.config.vocab_size
        )));
    }
    let candidates =
        Tensor::<2, Int>::from_data(TensorData::new(candidates, [b, 2]), model.device());
    let mut cache = model.new_cache();
    let logits = model.forward(Tensor::cat(rows, 0), &mut cache, Logits::Last)?;
    let vocab = model.config.vocab_size;
    let logits = logits.reshape([b, vocab]);
    let picked = logits.clone().gather(1, candidates);
    let answer = picked.clone().narrow(1, 0, 1);
    let diff = answer.clone() - picked.narrow(1, 1, 1);
    let top1 = answer.greater_equal(logits.max_dim(1)).float();
    Ok(Tensor::cat(vec![diff, top1], 1))
}

fn check_task(task: &EncodedTask) -> Result<()> {
    if task.items.is_empty() {
        return Err(Error::InvalidInput(format!(
            "task `{}` has no prompts to evaluate",
            task.name
        )));
    }
    Ok(())
}

/// Scatters one batch's `[b, 2]` values into the outcomes.
fn record(out: &mut PromptOutcomes, batch: &[usize], values: &[f32], task: &str) -> Result<()> {
    for (&i, pair) in batch.iter().zip(values.chunks_exact(2)) {
        if !pair[0].is_finite() {
            return Err(Error::NonFinite(format!(
                "the logit difference of prompt {} of `{task}`",
                i + 1
            )));
        }
        out.logit_diff[i] = pair[0];
        out.top1[i] = pair[1] > 0.5;
    }
    Ok(())
}

fn empty(task: &EncodedTask) -> PromptOutcomes {
    PromptOutcomes {
        logit_diff: vec![0.0; task.items.len()],
        top1: vec![false; task.items.len()],
    }
}

/// Runs every prompt of `task` through the model as it is now (dense, or with a mask applied).
#[cfg(not(target_family = "wasm"))]
pub fn evaluate(model: &Model, task: &EncodedTask) -> Result<PromptOutcomes> {
    check_task(task)?;
    let mut out = empty(task);
    for batch in batches(task) {
        let items: Vec<&TaskItem> = batch.iter().map(|&i| &task.items[i]).collect();
        let values = crate::readback::to_vec(batch_outcomes(model, &items)?)?;
        record(&mut out, &batch, &values, &task.name)?;
    }
    Ok(out)
}

/// [`evaluate`] with asynchronous read-backs (the browser).
pub async fn evaluate_async(model: &Model, task: &EncodedTask) -> Result<PromptOutcomes> {
    check_task(task)?;
    let mut out = empty(task);
    for batch in batches(task) {
        let items: Vec<&TaskItem> = batch.iter().map(|&i| &task.items[i]).collect();
        let values = crate::readback::to_vec_async(batch_outcomes(model, &items)?).await?;
        record(&mut out, &batch, &values, &task.name)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_batched_by_length() {
        let item = |n: usize| TaskItem {
            ids: vec![1; n],
            answer: 2,
            distractor: 3,
        };
        let task = EncodedTask {
            name: "t".into(),
            items: (0..70).map(|i| item(3 + i % 2)).collect(),
            notes: vec![],
        };
        let b = batches(&task);
        assert_eq!(b.iter().map(Vec::len).sum::<usize>(), 70);
        assert!(b.iter().all(|g| g.len() <= MAX_BATCH));
        for g in &b {
            let len = task.items[g[0]].ids.len();
            assert!(g.iter().all(|&i| task.items[i].ids.len() == len));
        }
    }

    #[test]
    fn metrics_average_the_outcomes() {
        let o = PromptOutcomes {
            logit_diff: vec![2.0, -1.0, 1.0, 2.0],
            top1: vec![true, false, false, true],
        };
        let m = o.metrics();
        assert_eq!((m.logit_diff, m.accuracy, m.top1), (1.0, 0.75, 0.5));
    }
}
