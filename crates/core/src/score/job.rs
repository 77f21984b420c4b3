//! Scorers inside a long job ([`crate::job`]): what they may use, and their steps handed to the
//! job's driver so the page shows progress and can stop them.

use super::{PendingScores, ReferenceSet, ScoreMethod, Scorer, Scores};
use crate::error::Result;
use crate::job::Steps;
use crate::model::Model;
use crate::relevance::MemoryLimits;
use crate::unit::Granularity;

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
        if !told && let Some(notice) = scorer.spill_notice() {
            told = true;
            steps.notice(&notice);
        }
    }
}

/// Steps `scorer` to its end and reads its scores back.
pub async fn run_scorer(
    mut scorer: Scorer<'_>,
    steps: &mut impl Steps,
    stage: &str,
) -> Result<Scores> {
    step_scorer(&mut scorer, steps, stage).await?;
    read_back(scorer.finish()?, steps).await
}

/// Reads scores back from the device, as a step of its own (it can take a while on a GPU).
pub async fn read_back(pending: PendingScores, steps: &mut impl Steps) -> Result<Scores> {
    steps.step("Reading scores back", 0, 0).await?;
    pending.read_async().await
}
