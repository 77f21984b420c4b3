//! The circuit search as one job ([`search`]), driven by the CLI and the page alike: per seed,
//! sample the task's scoring and held-out prompts, measure the dense model, score every method
//! (one model pass per family of methods), measure the curve, and — given a threshold — cut the
//! circuit and test it on held-out prompts and against random components of its size.

use web_time::Instant;

use super::report::{
    CircuitProtocol, CircuitReport, Dense, EXPLAINED, Found, METRIC, MethodRun, RandomCircuit,
    SeedRun,
};
use super::{Search, against_random, check_dense, check_group, faithfulness, summarize};
use crate::error::{Error, Result};
use crate::io::tokenizer::TextTokenizer;
use crate::job::{Driver, Steps};
use crate::model::Model;
use crate::prune::Masks;
use crate::report::RunInfo;
use crate::score::{ReferenceSet, ScoreMethod, Scores, ScoringBudget, read_back, step_scorer};
use crate::task::metrics::{TaskMetrics, evaluate_async};
use crate::task::{EncodedTask, Split, TaskSource};
use crate::unit::{Granularity, Group, LinearSet};

/// Kept components listed per circuit in the report.
const TOP_LISTED: usize = 12;

/// Everything a circuit search needs besides the model.
pub struct CircuitPlan<'a> {
    pub run: RunInfo,
    pub task: &'a TaskSource,
    pub granularity: Granularity,
    /// Which Linears' components compete (all by default); the others stay whole.
    pub linears: LinearSet,
    /// How components compete: globally (the paper's choice) or per layer.
    pub group: Group,
    pub methods: Vec<ScoreMethod>,
    /// Each seed draws its own prompts (IOI) or its own split (data tasks).
    pub seeds: Vec<u64>,
    /// Prompts per seed for scoring (and as many held out).
    pub prompts: usize,
    /// Shares pruned where each curve is measured.
    pub fractions: Vec<f64>,
    /// The share of the dense logit difference a circuit keeps; `None` measures the curves only.
    pub threshold: Option<f64>,
    /// Bisection steps that narrow a circuit between two measured shares.
    pub refine: usize,
    pub budget: ScoringBudget,
}

/// What a circuit search tells its driver as it goes.
pub enum CircuitEvent<'e> {
    /// A seed's prompts are drawn and the dense model measured on them.
    Seed {
        seed: u64,
        scoring: &'e EncodedTask,
        held_out: &'e EncodedTask,
        dense: Dense,
    },
    /// A method's scores on a seed's scoring prompts.
    Scored {
        seed: u64,
        method: ScoreMethod,
        scores: &'e Scores,
    },
    /// One point of a curve, with its faithfulness to the dense model.
    Point {
        seed: u64,
        method: ScoreMethod,
        point: &'e crate::circuit::CurvePoint,
        faithfulness: f64,
    },
    /// The circuit a method found on a seed (`None`: no measured share keeps the threshold),
    /// with the masks that cut it.
    Circuit {
        seed: u64,
        method: ScoreMethod,
        found: Option<(&'e Found, &'e Masks)>,
    },
    /// A seed is done: the report so far.
    SeedDone(&'e CircuitReport),
}

impl CircuitPlan<'_> {
    /// Errors unless the plan can run (before any model work).
    fn check(&self) -> Result<()> {
        check_group(self.granularity, self.group)?;
        if self.methods.is_empty() {
            return Err(Error::InvalidInput("no scoring method given".into()));
        }
        if self.methods.contains(&ScoreMethod::WandaSequential) {
            return Err(Error::InvalidInput(
                "wanda-seq prunes while it scores for one sparsity: it cannot draw a curve".into(),
            ));
        }
        for &f in &self.fractions {
            crate::prune::check_sparsity(f)?;
        }
        if let Some(t) = self.threshold
            && !(0.0..=1.5).contains(&t)
        {
            return Err(Error::InvalidInput(
                "the threshold is a share of the dense logit difference, e.g. 0.9".into(),
            ));
        }
        if self.seeds.is_empty() {
            return Err(Error::InvalidInput(
                "a search needs at least one seed".into(),
            ));
        }
        Ok(())
    }
}

/// Runs the circuit search `plan` on `model`, which it leaves dense.
pub async fn search<D>(
    model: &mut Model,
    tokenizer: &TextTokenizer,
    plan: &CircuitPlan<'_>,
    driver: &mut D,
) -> Result<CircuitReport>
where
    D: for<'e> Driver<CircuitEvent<'e>>,
{
    plan.check()?;
    plan.linears.linear_ids(plan.granularity, model)?;
    let mut report = CircuitReport {
        run: plan.run.clone(),
        protocol: CircuitProtocol {
            fingerprint: model.config.fingerprint(),
            task: plan.task.name().to_string(),
            prompts_per_seed: plan.prompts,
            seeds: 0,
            granularity: plan.granularity,
            group: plan.group,
            linears: plan.linears.describe(model.config.architecture),
            threshold: plan.threshold,
            fractions: plan.fractions.clone(),
            refine_steps: plan.refine,
            metric: METRIC.into(),
            explained: EXPLAINED.into(),
            methods: CircuitProtocol::formulas(&plan.methods, plan.granularity),
        },
        summary: Vec::new(),
        seeds: Vec::new(),
    };
    for &seed in &plan.seeds {
        let run = search_seed(model, tokenizer, plan, seed, driver).await?;
        report.seeds.push(run);
        report.protocol.seeds = report.seeds.len();
        report.summarize();
        driver.event(CircuitEvent::SeedDone(&report))?;
    }
    Ok(report)
}

async fn search_seed<D>(
    model: &mut Model,
    tokenizer: &TextTokenizer,
    plan: &CircuitPlan<'_>,
    seed: u64,
    driver: &mut D,
) -> Result<SeedRun>
where
    D: for<'e> Driver<CircuitEvent<'e>>,
{
    let scoring = plan
        .task
        .sample(tokenizer, seed, plan.prompts, Split::Scoring)?;
    let held_out = plan
        .task
        .sample(tokenizer, seed, plan.prompts, Split::HeldOut)?;
    driver.step("Dense model on the task", 0, 2).await?;
    let dense_scoring = metrics(model, &scoring).await?;
    check_dense(&dense_scoring, &scoring.name)?;
    driver.step("Dense model on the task", 1, 2).await?;
    let dense = Dense {
        scoring: dense_scoring,
        held_out: metrics(model, &held_out).await?,
    };
    driver.event(CircuitEvent::Seed {
        seed,
        scoring: &scoring,
        held_out: &held_out,
        dense,
    })?;
    let reference = ReferenceSet::from_task(&scoring)?;
    let mut runs = Vec::new();
    for family in families(&plan.methods) {
        let start = Instant::now();
        let scored = score_family(model, &family, plan, &reference, seed, driver).await?;
        let scoring_seconds = start.elapsed().as_secs_f64();
        for (method, scores) in family.into_iter().zip(scored) {
            driver.event(CircuitEvent::Scored {
                seed,
                method,
                scores: &scores,
            })?;
            let search = Search {
                scores: &scores,
                group: plan.group,
                task: &scoring,
                dense: dense.scoring,
            };
            let stage = format!("{}: measuring the curve", method.name());
            let mut curve = Vec::with_capacity(plan.fractions.len());
            for (i, &fraction) in plan.fractions.iter().enumerate() {
                driver.step(&stage, i, plan.fractions.len()).await?;
                let point = search.measure(model, fraction).await?;
                driver.event(CircuitEvent::Point {
                    seed,
                    method,
                    point: &point,
                    faithfulness: faithfulness(&point.metrics, &dense.scoring),
                })?;
                curve.push(point);
            }
            let circuit = match plan.threshold {
                Some(threshold) => {
                    let stage = format!("{}: narrowing the circuit", method.name());
                    let found = match search
                        .circuit(model, &curve, threshold, plan.refine, driver, &stage)
                        .await?
                    {
                        Some(point) => Some(
                            test_circuit(
                                model, plan, &search, point, &held_out, dense, seed, driver,
                            )
                            .await?,
                        ),
                        None => None,
                    };
                    driver.event(CircuitEvent::Circuit {
                        seed,
                        method,
                        found: found.as_ref().map(|(f, m)| (f, m)),
                    })?;
                    found.map(|(f, _)| f)
                }
                None => None,
            };
            runs.push(MethodRun {
                method,
                scoring_seconds,
                curve,
                circuit,
            });
        }
    }
    // Back in the order asked for.
    runs.sort_by_key(|r| plan.methods.iter().position(|&m| m == r.method));
    Ok(SeedRun {
        seed,
        scoring_prompts: scoring.name.clone(),
        held_out_prompts: held_out.name.clone(),
        notes: scoring.notes.clone(),
        dense,
        methods: runs,
    })
}

async fn metrics(model: &Model, task: &EncodedTask) -> Result<TaskMetrics> {
    Ok(evaluate_async(model, task).await?.metrics())
}

/// The circuit at `point` tested: on held-out prompts, and against random components of its
/// size pruned the same way. Returns it with its masks.
#[allow(clippy::too_many_arguments)]
async fn test_circuit(
    model: &mut Model,
    plan: &CircuitPlan<'_>,
    search: &Search<'_>,
    point: crate::circuit::CurvePoint,
    held_out: &EncodedTask,
    dense: Dense,
    seed: u64,
    steps: &mut impl Steps,
) -> Result<(Found, Masks)> {
    let masks = Masks::from_scores(search.scores, point.fraction, plan.group)?;
    let (circuit, random) = against_random(
        model,
        &masks,
        seed,
        &[search.task, held_out],
        steps,
        &format!("{}: testing the circuit", search.scores.info.method.name()),
    )
    .await?;
    let (held, rs, rh) = (circuit[1], random[0], random[1]);
    let found = Found {
        point,
        kept_share: 1.0 - point.pruned as f64 / point.total.max(1) as f64,
        faithfulness: faithfulness(&point.metrics, &dense.scoring),
        held_out: held,
        held_out_faithfulness: faithfulness(&held, &dense.held_out),
        random: RandomCircuit {
            scoring: rs,
            held_out: rh,
            faithfulness: faithfulness(&rs, &dense.scoring),
            held_out_faithfulness: faithfulness(&rh, &dense.held_out),
        },
        summary: summarize(&masks, search.scores, TOP_LISTED),
    };
    Ok((found, masks))
}

/// `methods` grouped by the model pass that scores them (the LRP variants share one, Wanda and
/// activation share one), families in the order their first method is asked for.
fn families(methods: &[ScoreMethod]) -> Vec<Vec<ScoreMethod>> {
    let family = |m: ScoreMethod| match m {
        ScoreMethod::Lrp | ScoreMethod::LrpSigned | ScoreMethod::LrpAbs => 0,
        ScoreMethod::Wanda | ScoreMethod::Activation => 1,
        ScoreMethod::Gradient => 2,
        ScoreMethod::Magnitude => 3,
        ScoreMethod::Random => 4,
        ScoreMethod::WandaSequential => 5,
    };
    let mut out: Vec<Vec<ScoreMethod>> = Vec::new();
    for &m in methods {
        match out.iter_mut().find(|f| family(f[0]) == family(m)) {
            Some(f) if !f.contains(&m) => f.push(m),
            Some(_) => {}
            None => out.push(vec![m]),
        }
    }
    out
}

/// The scores of one family's methods, in its order, from one model pass.
async fn score_family(
    model: &Model,
    family: &[ScoreMethod],
    plan: &CircuitPlan<'_>,
    reference: &ReferenceSet,
    seed: u64,
    steps: &mut impl Steps,
) -> Result<Vec<Scores>> {
    let granularity = plan.granularity;
    if family[0] == ScoreMethod::Random {
        return Ok(vec![
            Scores::random(model, granularity, seed)?.only(&plan.linears, model)?,
        ]);
    }
    // `lrp-abs` weights need the |R| sums, so it leads its family when present.
    let lead = if family.contains(&ScoreMethod::LrpAbs) {
        ScoreMethod::LrpAbs
    } else {
        family[0]
    };
    let used = lead.uses_reference().then(|| reference.clone());
    let mut scorer = plan.budget.scorer(model, lead, granularity, used)?;
    if family.len() > 1 {
        scorer = scorer.keeping_signed_sums();
    }
    let stage = format!("Scoring {} ({})", granularity.name(), lead.name());
    step_scorer(&mut scorer, steps, &stage).await?;
    let mut out = Vec::with_capacity(family.len());
    for pending in scorer.scores_at(granularity, family)? {
        out.push(
            read_back(pending, steps)
                .await?
                .only(&plan.linears, model)?,
        );
    }
    Ok(out)
}
