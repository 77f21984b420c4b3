//! The worker's circuit jobs: score a task's components, measure the curve point by point
//! (each posted as it comes, so the page draws it growing), cut the circuit the page's threshold
//! picks, run prompts on it, and write or read circuit files.

use scalpel::LoadedModel;
use scalpel::circuit::file::{CircuitNotes, from_json, to_json};
use scalpel::circuit::{
    CircuitEvent, CircuitPlan, DEFAULT_FRACTIONS, against_random, search, summarize,
};
use scalpel::prune::{Granularity, Group, LinearSet, Masks};
use scalpel::report::RunInfo;
use scalpel::score::Scores;
use scalpel::task::metrics::{TaskMetrics, evaluate_async};
use scalpel::task::{Task, TaskSource};

use crate::job::{
    Circuits, JobResult, Posting, Progress, State, budget, component_label, download, object_url,
    post, progress, yield_now,
};
use crate::protocol::{
    CircuitSearch, CircuitView, CircuitsRequest, CircuitsResponse, CurvePointView, ProbeView,
    Response, TaskChoice,
};

/// Circuits compete globally, as in the paper.
const GROUP: Group = Group::Global;

fn task_source(choice: &TaskChoice) -> JobResult<TaskSource> {
    Ok(match choice {
        TaskChoice::Named(name) => TaskSource::named(name)?,
        TaskChoice::Lines(lines) => TaskSource::Data(Task::parse("your task", lines)?),
    })
}

/// Answers one of the circuit panel's requests.
pub(crate) async fn handle(state: &State, req: CircuitsRequest) -> JobResult {
    match req {
        CircuitsRequest::Find(search) => run(state, search).await,
        CircuitsRequest::Pick { fraction, apply } => pick(state, fraction, apply).await,
        CircuitsRequest::Probe { line } => probe(state, line).await,
        CircuitsRequest::Export => export(state),
        CircuitsRequest::Load { name, text } => load(state, name, text).await,
        CircuitsRequest::LoadUrl { url } => {
            let text = String::from_utf8(download(&url, "circuit file").await?)
                .map_err(|_| format!("{url} is not a UTF-8 text file"))?;
            let name = url.rsplit('/').next().unwrap_or(&url).to_string();
            load(state, name, text).await
        }
    }
}

fn reply(response: CircuitsResponse) {
    post(&Response::Circuits(response));
}

async fn run(state: &State, req: CircuitSearch) -> JobResult {
    let started = js_sys::Date::now();
    let (method, granularity) = (req.method, req.granularity);
    let source = task_source(&req.task)?;
    state.restore_dense()?;
    Circuits::reset(&state.circuits);
    let mut lent = state.lend_model()?;
    let LoadedModel { model, tokenizer } = lent.get()?;
    // The curve only: the page's threshold picks the circuit from it afterwards (`pick`).
    let plan = CircuitPlan {
        run: RunInfo::default(),
        task: &source,
        granularity,
        linears: LinearSet::parse(&req.linears, model.config.architecture)?,
        group: GROUP,
        methods: vec![method],
        seeds: vec![req.seed],
        prompts: req.prompts,
        fractions: DEFAULT_FRACTIONS.to_vec(),
        threshold: None,
        refine: 0,
        budget: budget(state),
    };
    let mut kept = Circuits {
        seed: req.seed,
        ..Circuits::default()
    };
    let mut driver = Posting::new(state, |event: CircuitEvent<'_>| match event {
        CircuitEvent::Seed {
            scoring,
            held_out,
            dense,
            ..
        } => {
            reply(CircuitsResponse::Started {
                task: scoring.name.clone(),
                dense: dense.scoring,
                notes: scoring.notes.clone(),
            });
            kept.scoring = Some((scoring.clone(), dense.scoring));
            kept.held_out = Some((held_out.clone(), dense.held_out));
        }
        CircuitEvent::Scored { scores, .. } => kept.scores = Some(scores.clone()),
        CircuitEvent::Point {
            point,
            faithfulness,
            ..
        } => reply(CircuitsResponse::Point(CurvePointView {
            fraction: point.fraction,
            kept: point.total - point.pruned,
            total: point.total,
            faithfulness,
            accuracy: point.metrics.accuracy,
        })),
        CircuitEvent::Circuit { .. } | CircuitEvent::SeedDone(_) => {}
    });
    search(model, tokenizer, &plan, &mut driver).await?;
    drop(lent);
    *state.circuits.borrow_mut() = kept;
    reply(CircuitsResponse::Ready {
        seconds: (js_sys::Date::now() - started) / 1000.0,
    });
    Ok(())
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

/// Held-out metrics of the dense model, the circuit `masks` and a random circuit of the same
/// size (core's [`against_random`], the test the search gives every circuit it finds).
async fn held_out_metrics(
    state: &State,
    masks: &Masks,
) -> JobResult<Option<(TaskMetrics, TaskMetrics, TaskMetrics)>> {
    let (held, dense, seed) = {
        let c = state.circuits.borrow();
        match &c.held_out {
            Some((t, d)) => (t.clone(), *d, c.seed),
            None => return Ok(None),
        }
    };
    let mut lent = state.lend_model()?;
    let (circuit, random) = against_random(
        &mut lent.get()?.model,
        masks,
        seed,
        &[&held],
        &mut Progress(state),
        "Testing on held-out prompts, beside a random circuit of the same size",
    )
    .await?;
    Ok(Some((dense, circuit[0], random[0])))
}

async fn pick(state: &State, fraction: f64, on: bool) -> JobResult {
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
                Masks::from_scores(scores, fraction, GROUP)?
            };
            let mut view = view_of(&masks, state.circuits.borrow().scores.as_ref(), fraction);
            view.held_out = held_out_metrics(state, &masks).await?;
            (masks, view)
        }
    };
    let applied_at = if on {
        Some(state.apply_masks(&masks)?.1)
    } else {
        state.restore_dense()?;
        None
    };
    view.applied = on;
    let mut circuits = state.circuits.borrow_mut();
    circuits.picked = Some((masks, view.clone()));
    circuits.applied_at = applied_at;
    drop(circuits);
    reply(CircuitsResponse::Picked(view));
    Ok(())
}

async fn probe(state: &State, line: String) -> JobResult {
    let task = Task::parse("your prompt", &line)?;
    let loaded = state.loaded()?;
    let encoded = task.encode(&loaded.tokenizer)?;
    drop(loaded);
    let first = |o: scalpel::task::metrics::PromptOutcomes| (o.logit_diff[0], o.top1[0]);
    // The picked circuit runs only if no other job has changed the weights since it was applied.
    let applied = {
        let c = state.circuits.borrow();
        c.picked
            .as_ref()
            .filter(|_| c.applied_at == Some(state.weights_version()))
            .map(|(m, _)| m.clone())
    };
    progress("Running the prompt", 0.0, 0.0);
    yield_now().await;
    let circuit = match &applied {
        Some(_) => Some(first(
            evaluate_async(&state.loaded()?.model, &encoded).await?,
        )),
        None => None,
    };
    state.restore_dense()?;
    let full = evaluate_async(&state.loaded()?.model, &encoded).await;
    if let Some(masks) = &applied {
        let (_, version) = state.apply_masks(masks)?;
        state.circuits.borrow_mut().applied_at = Some(version);
    }
    let p = &task.prompts[0];
    reply(CircuitsResponse::Probed(ProbeView {
        prompt: p.prompt.clone(),
        answer: p.answer.clone(),
        distractor: p.distractor.clone(),
        full: first(full?),
        circuit,
    }));
    Ok(())
}

fn export(state: &State) -> JobResult {
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
    let json = to_json(masks, loaded.model.config.architecture, &notes)?;
    let name = format!("circuit-{}-{}.json", view.granularity, view.kept);
    reply(CircuitsResponse::File {
        url: object_url(json.as_bytes())?,
        name,
    });
    Ok(())
}

async fn load(state: &State, name: String, text_: String) -> JobResult {
    let masks = {
        let loaded = state.loaded()?;
        let (masks, _) = from_json(&name, &text_, loaded.model.config.architecture)?;
        masks.check_for(&loaded.model)?;
        masks
    };
    let fraction = masks.info.sparsity;
    let mut view = view_of(&masks, None, fraction);
    view.held_out = held_out_metrics(state, &masks).await?;
    let (_, version) = state.apply_masks(&masks)?;
    let mut circuits = state.circuits.borrow_mut();
    circuits.picked = Some((masks, view.clone()));
    circuits.applied_at = Some(version);
    drop(circuits);
    reply(CircuitsResponse::Picked(view));
    Ok(())
}
