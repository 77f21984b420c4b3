//! Long pipelines (a targeted correction, a circuit search) written once, for every front end.
//!
//! A job is an `async fn` that hands control to its driver before each step through
//! [`Steps::step`]: the driver shows progress, gives its event loop a turn (the browser's worker
//! must, or no Cancel message would ever arrive) and stops the job there by returning an error
//! ([`crate::Error::Cancelled`]). Each result is handed to [`Driver::event`] as soon as it is measured,
//! so the page draws curves growing and the CLI writes what it finished. Every read-back inside a
//! job is asynchronous, which the browser requires and native backends answer at once: natively a
//! job runs under `pollster::block_on`.

use std::future::Future;

use crate::error::Result;
use crate::model::Model;
use crate::relevance::MemoryLimits;
use crate::score::{PendingScores, ReferenceSet, ScoreMethod, Scorer};
use crate::unit::Granularity;

/// What a job reports between its steps.
pub trait Steps {
    /// The job is about to do step `done` of `total` of `stage` (`total` 0: not counted). An
    /// error stops the job there; the job leaves the model as it found it.
    fn step(&mut self, stage: &str, done: usize, total: usize) -> impl Future<Output = Result<()>>;

    /// Something the user should know that does not stop the job (a warning, a fallback taken).
    fn notice(&mut self, message: &str);
}

/// What a job's driver hears: its steps, and each result (`Event`) as soon as it is measured.
pub trait Driver<Event>: Steps {
    /// An error stops the job (the CLI's partial report could not be written, say).
    fn event(&mut self, event: Event) -> Result<()>;
}

/// What scorers started by a job may use.
#[derive(Debug, Clone, Default)]
pub struct ScoringBudget {
    /// Checked before a relevance pass allocates.
    pub limits: MemoryLimits,
    /// Natively: where per-weight sums that do not fit in memory spill.
    #[cfg(not(target_family = "wasm"))]
    pub scratch: Option<crate::relevance::Scratch>,
}

impl ScoringBudget {
    /// A scorer of `method` at `granularity` within this budget.
    pub fn scorer<'m>(
        &self,
        model: &'m Model,
        method: ScoreMethod,
        granularity: Granularity,
        reference: Option<ReferenceSet>,
    ) -> Result<Scorer<'m>> {
        let scorer = Scorer::at(model, method, granularity, reference, self.limits)?;
        #[cfg(not(target_family = "wasm"))]
        let scorer = match &self.scratch {
            Some(scratch) => scorer.spilling_to(scratch.clone()),
            None => scorer,
        };
        Ok(scorer)
    }
}

/// Steps `scorer` to its end under `stage`, telling once if its sums went to a scratch file.
pub async fn step_scorer(
    scorer: &mut Scorer<'_>,
    steps: &mut impl Steps,
    stage: &str,
) -> Result<()> {
    let mut told = false;
    loop {
        let (done, total) = scorer.progress();
        steps.step(stage, done, total).await?;
        if !scorer.step()? {
            return Ok(());
        }
        if !told && scorer.spilled() {
            told = true;
            steps.notice(
                "per-weight sums do not fit in memory: kept in a scratch file (set TMPDIR to move it), read and written once per sample",
            );
        }
    }
}

/// Steps `scorer` to its end and reads its scores back.
pub async fn run_scorer(
    mut scorer: Scorer<'_>,
    steps: &mut impl Steps,
    stage: &str,
) -> Result<crate::score::Scores> {
    step_scorer(&mut scorer, steps, stage).await?;
    read_back(scorer.finish()?, steps).await
}

/// Reads scores back from the device, as a step of its own (it can take a while on a GPU).
pub async fn read_back(
    pending: PendingScores,
    steps: &mut impl Steps,
) -> Result<crate::score::Scores> {
    steps.step("Reading scores back", 0, 0).await?;
    pending.read_async().await
}

/// Runs `measure` with the model changed by `change`, then restores the dense weights whether
/// `measure` succeeded or not (a cancelled job leaves the model as it found it).
pub async fn with_masks<T>(
    model: &mut Model,
    masks: &crate::prune::Masks,
    measure: impl AsyncFnOnce(&Model) -> Result<T>,
) -> Result<T> {
    masks.apply(model)?;
    let result = measure(model).await;
    model.restore_dense();
    result
}

/// A driver that shows nothing, never stops a job and ignores its events (tests, scripts).
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Steps for Quiet {
    async fn step(&mut self, _stage: &str, _done: usize, _total: usize) -> Result<()> {
        Ok(())
    }

    fn notice(&mut self, _message: &str) {}
}

impl<E> Driver<E> for Quiet {
    fn event(&mut self, _event: E) -> Result<()> {
        Ok(())
    }
}
