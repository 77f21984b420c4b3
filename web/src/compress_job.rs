//! The worker's compression jobs: score the model over a reference set (step by step, with
//! progress and Stop), cut masks from the cached scores, undo them, export the pruned model.

use std::cell::RefCell;

use scalpel::eval::corpus::wiki_text;
use scalpel::eval::perplexity::{PerplexityProtocol, perplexity_async};
use scalpel::export::export_checkpoint;
use scalpel::prune::{Group, Masks};
use scalpel::score::{ReferenceSet, ScoreMethod, Scorer, Scores};
use scalpel::{LoadedModel, Model};
use wasm_bindgen::JsValue;

use crate::protocol::{
    C4_URL, MaskRequest, MaskView, ReferenceChoice, Response, ScoreRequest, WIKI_URL,
};
use crate::worker::{State, download, post, progress, yield_now};

/// The perplexity readout, a quick named variant of `wiki-512`: 4 windows of 256 wiki tokens on
/// a GPU; 2 of 128 on the CPU, where one 256-token forward takes seconds in a single wasm thread.
pub(crate) fn readout_protocol(on_gpu: bool) -> PerplexityProtocol {
    if on_gpu {
        PerplexityProtocol::wiki(256, 4)
    } else {
        PerplexityProtocol::wiki(128, 2)
    }
}

/// What the compression panel keeps between requests.
#[derive(Default)]
pub(crate) struct Compression {
    scores: Option<Scores>,
    /// The readout's tokens and the dense model's perplexity on them.
    readout: Option<(Vec<u32>, f64)>,
}

pub(crate) fn text(e: scalpel::Error) -> String {
    e.to_string()
}

/// Runs `f` on the loaded model mutably (masking); no job may hold it at the same time.
pub(crate) fn with_model_mut<T>(
    state: &State,
    f: impl FnOnce(&mut LoadedModel) -> Result<T, String>,
) -> Result<T, String> {
    let mut slot = state.model.borrow_mut();
    let rc = slot.as_mut().ok_or("no model is loaded yet")?;
    let loaded = std::rc::Rc::get_mut(rc).ok_or("the model is busy; try again")?;
    f(loaded)
}

async fn reference(req: &ScoreRequest, loaded: &LoadedModel) -> Result<ReferenceSet, String> {
    let set = match &req.reference {
        ReferenceChoice::BuiltInC4 => {
            let raw = download(C4_URL, "C4 sample").await?;
            let raw = String::from_utf8_lossy(&raw);
            ReferenceSet::c4(&raw, &loaded.tokenizer, req.samples, req.sample_len)
        }
        ReferenceChoice::Text(t) => ReferenceSet::from_documents(
            "your text",
            &[t.as_str()],
            &loaded.tokenizer,
            req.samples,
            req.sample_len,
        ),
    }
    .map_err(text)?;
    if set.is_short() {
        post(&Response::Notice {
            message: format!(
                "the reference text gave {} of the {} samples asked for",
                set.protocol.samples, set.protocol.requested_samples
            ),
        });
    }
    Ok(set)
}

pub(crate) async fn score(state: &State, req: ScoreRequest) -> Result<(), String> {
    let started = js_sys::Date::now();
    let method = ScoreMethod::parse(&req.method).map_err(text)?;
    if method == ScoreMethod::WandaSequential {
        return Err("sequential Wanda runs natively (`scalpel prune --method wanda-seq`)".into());
    }
    // Scores describe the dense model: undo any mask first.
    restore_dense(state)?;
    state.compression.borrow_mut().scores = None;
    let loaded = state.loaded()?;
    let reference = if method.uses_reference() {
        Some(reference(&req, &loaded).await?)
    } else {
        None
    };
    let name = reference
        .as_ref()
        .map_or("no reference".to_string(), |r| r.protocol.name.clone());
    let scorer = Scorer::new(&loaded.model, method, reference, state.limits.get()).map_err(text)?;
    let stage = format!("Scoring ({}, {name})", method.name());
    let scores = run_scorer(state, scorer, &stage).await?;
    drop(loaded);
    state.compression.borrow_mut().scores = Some(scores);
    post(&Response::Scored {
        method: method.name().into(),
        reference: name,
        seconds: (js_sys::Date::now() - started) / 1000.0,
    });
    Ok(())
}

/// Steps `scorer` to the end with progress, yielding between steps and stopping on Cancel, then
/// reads the scores back.
pub(crate) async fn run_scorer(
    state: &State,
    mut scorer: Scorer<'_>,
    stage: &str,
) -> Result<Scores, String> {
    step_scorer(state, &mut scorer, stage).await?;
    progress("Reading scores back", 0.0, 0.0);
    yield_now().await;
    scorer
        .finish()
        .map_err(text)?
        .read_async()
        .await
        .map_err(text)
}

/// Steps `scorer` to the end with progress, yielding between steps and stopping on Cancel.
pub(crate) async fn step_scorer(
    state: &State,
    scorer: &mut Scorer<'_>,
    stage: &str,
) -> Result<(), String> {
    progress(stage, 0.0, 0.0);
    yield_now().await;
    while scorer.step().map_err(text)? {
        let (done, total) = scorer.progress();
        progress(stage, done as f64, total as f64);
        yield_now().await;
        if state.cancel.get() {
            return Err("scoring stopped".into());
        }
    }
    Ok(())
}

pub(crate) async fn readout_perplexity(
    state: &State,
    model: &Model,
    tokens: &[u32],
    stage: &str,
) -> Result<f64, String> {
    let protocol = readout_protocol(state.on_gpu.get());
    let result = perplexity_async(model, tokens, &protocol, &mut |done, total| {
        progress(stage, done as f64, total as f64)
    })
    .await
    .map_err(text)?;
    Ok(result.perplexity)
}

/// The readout's tokens and dense perplexity, computed once per loaded model.
pub(crate) async fn readout(state: &State) -> Result<(Vec<u32>, f64), String> {
    if let Some(r) = state.compression.borrow().readout.clone() {
        return Ok(r);
    }
    let loaded = state.loaded()?;
    let raw = download(WIKI_URL, "Wikipedia sample").await?;
    let wiki = wiki_text(&String::from_utf8_lossy(&raw));
    // Enough characters for the readout's tokens (≈ 4 characters per token, with margin).
    let p = readout_protocol(state.on_gpu.get());
    let cut = wiki
        .char_indices()
        .nth(p.window * p.windows * 12)
        .map_or(wiki.len(), |(i, _)| i);
    let tokens = loaded.tokenizer.encode(&wiki[..cut]).map_err(text)?;
    let dense = readout_perplexity(state, &loaded.model, &tokens, "Perplexity (dense)").await?;
    let r = (tokens, dense);
    state.compression.borrow_mut().readout = Some(r.clone());
    Ok(r)
}

pub(crate) async fn mask(state: &State, req: MaskRequest) -> Result<(), String> {
    let started = js_sys::Date::now();
    let group = Group::parse(&req.group).map_err(text)?;
    let sparsity = group.implied_sparsity().unwrap_or(req.sparsity);
    restore_dense(state)?;
    let (tokens, dense) = readout(state).await?;
    progress("Masking", 0.0, 0.0);
    yield_now().await;
    let masks = {
        let compression = state.compression.borrow();
        let scores = compression.scores.as_ref().ok_or("compute scores first")?;
        Masks::from_scores(scores, sparsity, group).map_err(text)?
    };
    let report = with_model_mut(state, |l| masks.apply(&mut l.model).map_err(text))?;
    drop(masks);
    let loaded = state.loaded()?;
    let pruned = readout_perplexity(state, &loaded.model, &tokens, "Perplexity (pruned)").await?;
    let layers = report.per_layer();
    post(&Response::Masked(MaskView {
        method: state
            .compression
            .borrow()
            .scores
            .as_ref()
            .map_or(String::new(), |s| s.info.method.name().into()),
        sparsity,
        group: group.name(),
        achieved: report.sparsity(),
        per_layer: layers
            .iter()
            .map(|(_, p, t)| *p as f64 / (*t).max(1) as f64)
            .collect(),
        protocol: readout_protocol(state.on_gpu.get()).name,
        dense_perplexity: dense,
        perplexity: pruned,
        seconds: (js_sys::Date::now() - started) / 1000.0,
    }));
    Ok(())
}

pub(crate) fn restore_dense(state: &State) -> Result<(), String> {
    state.circuits.borrow_mut().model_changed();
    state.correction.borrow_mut().model_changed();
    with_model_mut(state, |l| {
        l.model.restore_dense();
        Ok(())
    })
}

pub(crate) fn restore(state: &State) -> Result<(), String> {
    restore_dense(state)?;
    post(&Response::Restored);
    Ok(())
}

/// Writes the checkpoint and hands the page object URLs (the bytes never cross the channel).
pub(crate) async fn export(state: &State) -> Result<(), String> {
    progress("Writing the checkpoint", 0.0, 0.0);
    yield_now().await;
    let loaded = state.loaded()?;
    let note = state
        .compression
        .borrow()
        .scores
        .as_ref()
        .map(|s| format!("{{\"scores\": {:?}}}", s.info.method.name()));
    let checkpoint = export_checkpoint(&loaded.model, &loaded.tokenizer, note)
        .await
        .map_err(text)?;
    let mut files = Vec::new();
    for (name, bytes) in checkpoint.files() {
        files.push((name.to_string(), object_url(bytes)?, bytes.len()));
    }
    post(&Response::Exported { files });
    Ok(())
}

pub(crate) fn object_url(bytes: &[u8]) -> Result<String, String> {
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
    let blob = web_sys::Blob::new_with_u8_array_sequence(&parts)
        .map_err(|e| format!("could not hold the file in memory: {e:?}"))?;
    web_sys::Url::create_object_url_with_blob(&blob)
        .map_err(|e: JsValue| format!("could not offer the file for download: {e:?}"))
}

impl Compression {
    /// Forgets everything tied to the previous model.
    pub(crate) fn reset(cell: &RefCell<Compression>) {
        *cell.borrow_mut() = Compression::default();
    }
}
