//! The worker's circuit jobs: score a task's components, measure the curve point by point
//! (each posted as it comes, so the page draws it growing), cut the circuit the page's threshold
//! picks, run prompts on it, and write or read circuit files.

use std::cell::RefCell;

use scalpel::circuit::file::{CircuitNotes, from_json, to_json};
use scalpel::circuit::{DEFAULT_FRACTIONS, check_dense, faithfulness, random_circuit, summarize};
use scalpel::prune::{Granularity, Group, Masks};
use scalpel::score::{ReferenceSet, ScoreMethod, Scorer, Scores};
use scalpel::task::metrics::{TaskMetrics, evaluate_async};
use scalpel::task::{EncodedTask, Split, Task, TaskSource};
use scalpel::{LoadedModel, Model};

use crate::compress_job::{object_url, run_scorer, text, with_model_mut};
use crate::protocol::{
    CircuitRequest, CircuitView, CurvePointView, ProbeView, Response, TaskChoice,
};
use crate::worker::{State, post, progress, yield_now};

/// Circuits compete globally, as in the paper.
const GROUP: Group = Group::Global;

/// What the circuit panel keeps between requests.
#[derive(Default)]
pub(crate) struct Circuits {
    scores: Option<Scores>,
    /// Scoring and held-out prompts with the dense model's metrics on them.
    scoring: Option<(EncodedTask, TaskMetrics)>,
    held_out: Option<(EncodedTask, TaskMetrics)>,
    seed: u64,
    /// The circuit picked last (applied or not) and its view.
    picked: Option<(Masks, CircuitView)>,
}

impl Circuits {
    /// Another job changed the model's weights: the picked circuit no longer runs.
    pub(crate) fn model_changed(&mut self) {
        if let Some((_, view)) = &mut self.picked {
            view.applied = false;
        }
    }

    /// Forgets everything tied to the previous model.
    pub(crate) fn reset(cell: &RefCell<Circuits>) {
        *cell.borrow_mut() = Circuits::default();
    }
}

fn task_source(choice: &TaskChoice) -> Result<TaskSource, String> {
    match choice {
        TaskChoice::Named(name) => TaskSource::named(name),
        TaskChoice::Lines(lines) => Task::parse("your task", lines).map(TaskSource::Data),
    }
    .map_err(text)
}

async fn metrics(model: &Model, task: &EncodedTask) -> Result<TaskMetrics, String> {
    Ok(evaluate_async(model, task).await.map_err(text)?.metrics())
}

fn restore_dense(state: &State) -> Result<(), String> {
    state.correction.borrow_mut().model_changed();
    with_model_mut(state, |l| {
        l.model.restore_dense();
        Ok(())
    })
}

fn apply(state: &State, masks: &Masks) -> Result<(), String> {
    state.correction.borrow_mut().model_changed();
    with_model_mut(state, |l| {
        masks.apply(&mut l.model).map(|_| ()).map_err(text)
    })
}

pub(crate) async fn run(state: &State, req: CircuitRequest) -> Result<(), String> {
    let started = js_sys::Date::now();
    let method = ScoreMethod::parse(&req.method).map_err(text)?;
    let granularity = Granularity::parse(&req.granularity).map_err(text)?;
    let source = task_source(&req.task)?;
    restore_dense(state)?;
    Circuits::reset(&state.circuits);
    let loaded = state.loaded()?;
    let tok = &loaded.tokenizer;
    let scoring = source
        .sample(tok, req.seed, req.prompts, Split::Scoring)
        .map_err(text)?;
    let held_out = source
        .sample(tok, req.seed, req.prompts, Split::HeldOut)
        .map_err(text)?;
    progress("Dense model on the task", 0.0, 0.0);
    yield_now().await;
    let dense = metrics(&loaded.model, &scoring).await?;
    check_dense(&dense, &scoring.name).map_err(text)?;
    let held_dense = metrics(&loaded.model, &held_out).await?;
    post(&Response::CircuitStarted {
        task: scoring.name.clone(),
        dense,
        notes: scoring.notes.clone(),
    });
    let scores = score(state, &loaded, method, granularity, &scoring, req.seed).await?;
    drop(loaded);
    for (i, &fraction) in DEFAULT_FRACTIONS.iter().enumerate() {
        progress(
            "Measuring the curve",
            i as f64,
            DEFAULT_FRACTIONS.len() as f64,
        );
        yield_now().await;
        if state.cancel.get() {
            restore_dense(state)?;
            return Err("circuit search stopped".into());
        }
        let masks = Masks::from_scores(&scores, fraction, GROUP).map_err(text)?;
        apply(state, &masks)?;
        let loaded = state.loaded()?;
        let m = metrics(&loaded.model, &scoring).await?;
        let report = masks.report();
        post(&Response::CircuitPoint(CurvePointView {
            fraction,
            kept: report.total - report.pruned,
            total: report.total,
            faithfulness: faithfulness(&m, &dense),
            accuracy: m.accuracy,
        }));
    }
    restore_dense(state)?;
    *state.circuits.borrow_mut() = Circuits {
        scores: Some(scores),
        scoring: Some((scoring, dense)),
        held_out: Some((held_out, held_dense)),
        seed: req.seed,
        picked: None,
    };
    post(&Response::CircuitReady {
        seconds: (js_sys::Date::now() - started) / 1000.0,
    });
    Ok(())
}

async fn score(
    state: &State,
    loaded: &LoadedModel,
    method: ScoreMethod,
    granularity: Granularity,
    scoring: &EncodedTask,
    seed: u64,
) -> Result<Scores, String> {
    if method == ScoreMethod::Random {
        return Scores::random(&loaded.model, granularity, seed).map_err(text);
    }
    let reference = ReferenceSet::from_task(scoring).map_err(text)?;
    let used = method.uses_reference().then_some(reference);
    let scorer =
        Scorer::at(&loaded.model, method, granularity, used, state.limits.get()).map_err(text)?;
    let stage = format!("Scoring {} ({})", granularity.name(), method.name());
    run_scorer(state, scorer, &stage).await
}

/// `"L23 H3"` for a head, `"L5 N1021"` for a neuron, `"L2 Down[17]"` for a weight.
pub(crate) fn component_label(
    granularity: Granularity,
    layer: usize,
    linear: scalpel::model::LinearKind,
    index: usize,
) -> String {
    match granularity {
        Granularity::Heads => format!("L{layer} H{index}"),
        Granularity::Neurons => format!("L{layer} N{index}"),
        Granularity::Weights => format!("L{layer} {linear:?}[{index}]"),
    }
}

/// The view of `masks`: per-layer counts, the heads grid, the best kept components.
fn view_of(masks: &Masks, scores: Option<&Scores>, fraction: f64) -> CircuitView {
    let granularity = masks.granularity();
    let report = masks.report();
    let top = scores
        .map(|s| summarize(masks, s, 12).top)
        .unwrap_or_default()
        .iter()
        .map(|c| component_label(granularity, c.layer, c.linear, c.index))
        .collect();
    CircuitView {
        granularity: granularity.name().into(),
        fraction,
        kept: report.total - report.pruned,
        total: report.total,
        per_layer: report
            .per_layer()
            .into_iter()
            .map(|(_, p, t)| (t - p, t))
            .collect(),
        heads: if granularity == Granularity::Heads {
            masks
                .linears
                .values()
                .map(|m| m.keep.iter().collect())
                .collect()
        } else {
            Vec::new()
        },
        top,
        held_out: None,
        applied: true,
    }
}

/// Held-out metrics of the applied circuit and of a random circuit of the same size.
async fn held_out_metrics(
    state: &State,
    masks: &Masks,
    fraction: f64,
) -> Result<Option<(TaskMetrics, TaskMetrics, TaskMetrics)>, String> {
    let (held, dense, seed) = {
        let c = state.circuits.borrow();
        match &c.held_out {
            Some((t, d)) => (t.clone(), *d, c.seed),
            None => return Ok(None),
        }
    };
    progress("Testing on held-out prompts", 0.0, 2.0);
    yield_now().await;
    apply(state, masks)?;
    let circuit = metrics(&state.loaded()?.model, &held).await?;
    let random = random_circuit(
        &state.loaded()?.model,
        masks.granularity(),
        fraction,
        masks.info.group,
        seed,
    )
    .map_err(text)?;
    progress("Testing a random circuit of the same size", 1.0, 2.0);
    yield_now().await;
    apply(state, &random)?;
    let random = metrics(&state.loaded()?.model, &held).await?;
    Ok(Some((dense, circuit, random)))
}

pub(crate) async fn pick(state: &State, fraction: f64, on: bool) -> Result<(), String> {
    // Toggling between circuit and full model keeps the measured view.
    let same = state
        .circuits
        .borrow()
        .picked
        .as_ref()
        .filter(|(_, v)| v.fraction == fraction)
        .map(|(m, v)| (m.clone(), v.clone()));
    let (masks, mut view) = match same {
        Some(p) => p,
        None => {
            let masks = {
                let c = state.circuits.borrow();
                let scores = c.scores.as_ref().ok_or("find a circuit first")?;
                Masks::from_scores(scores, fraction, GROUP).map_err(text)?
            };
            let mut view = view_of(&masks, state.circuits.borrow().scores.as_ref(), fraction);
            view.held_out = held_out_metrics(state, &masks, fraction).await?;
            (masks, view)
        }
    };
    if on {
        apply(state, &masks)?;
    } else {
        restore_dense(state)?;
    }
    view.applied = on;
    state.circuits.borrow_mut().picked = Some((masks, view.clone()));
    post(&Response::CircuitPicked(view));
    Ok(())
}

pub(crate) async fn probe(state: &State, line: String) -> Result<(), String> {
    let task = Task::parse("your prompt", &line).map_err(text)?;
    let loaded = state.loaded()?;
    let encoded = task.encode(&loaded.tokenizer).map_err(text)?;
    drop(loaded);
    let first = |o: scalpel::task::metrics::PromptOutcomes| (o.logit_diff[0], o.top1[0]);
    let applied = state
        .circuits
        .borrow()
        .picked
        .as_ref()
        .filter(|(_, v)| v.applied)
        .map(|(m, _)| m.clone());
    progress("Running the prompt", 0.0, 0.0);
    yield_now().await;
    let circuit = match &applied {
        Some(_) => Some(first(
            evaluate_async(&state.loaded()?.model, &encoded)
                .await
                .map_err(text)?,
        )),
        None => None,
    };
    restore_dense(state)?;
    let full = evaluate_async(&state.loaded()?.model, &encoded)
        .await
        .map_err(text);
    if let Some(masks) = &applied {
        apply(state, masks)?;
    }
    let p = &task.prompts[0];
    post(&Response::Probed(ProbeView {
        prompt: p.prompt.clone(),
        answer: p.answer.clone(),
        distractor: p.distractor.clone(),
        full: first(full?),
        circuit,
    }));
    Ok(())
}

pub(crate) fn export(state: &State) -> Result<(), String> {
    let c = state.circuits.borrow();
    let (masks, view) = c.picked.as_ref().ok_or("pick a circuit first")?;
    let loaded = state.loaded()?;
    let notes = CircuitNotes {
        task: c
            .scoring
            .as_ref()
            .map_or(String::new(), |(t, _)| t.name.clone()),
        threshold: None,
        dense: c.scoring.as_ref().map(|(_, d)| *d),
        circuit: view.held_out.map(|(_, circuit, _)| circuit),
    };
    let json = to_json(masks, loaded.model.config.architecture, &notes).map_err(text)?;
    let name = format!("circuit-{}-{}.json", view.granularity, view.kept);
    post(&Response::CircuitFile {
        url: object_url(json.as_bytes())?,
        name,
    });
    Ok(())
}

pub(crate) async fn load(state: &State, name: String, text_: String) -> Result<(), String> {
    let masks = {
        let loaded = state.loaded()?;
        let (masks, _) =
            from_json(&name, &text_, loaded.model.config.architecture).map_err(text)?;
        masks.check_for(&loaded.model).map_err(text)?;
        masks
    };
    let fraction = masks.info.sparsity;
    let mut view = view_of(&masks, None, fraction);
    view.held_out = held_out_metrics(state, &masks, fraction).await?;
    apply(state, &masks)?;
    state.circuits.borrow_mut().picked = Some((masks, view.clone()));
    post(&Response::CircuitPicked(view));
    Ok(())
}
