//! The worker's compression jobs: score the model over a reference set (step by step, with
//! progress and Stop), cut masks from the cached scores, undo them, export the pruned model.

use scalpel::LoadedModel;
use scalpel::export::export_checkpoint;
use scalpel::export::gguf::GgufExport;
use scalpel::export::shrink::shrink;
use scalpel::prune::{LinearSet, Masks};
use scalpel::score::{ReferenceSet, ScoreMethod, Scorer};

use crate::job::{
    JobResult, State, download, object_url, post, progress, readout, readout_perplexity,
    readout_protocol, run_scorer, yield_now,
};
use crate::protocol::{
    C4_URL, CompressRequest, CompressResponse, ExportFormat, MaskRequest, MaskView,
    ReferenceChoice, Response, ScoreRequest,
};

async fn reference(req: &ScoreRequest, loaded: &LoadedModel) -> JobResult<ReferenceSet> {
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
    }?;
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

/// Answers one of the compression panel's requests.
pub(crate) async fn handle(state: &State, req: CompressRequest) -> JobResult {
    match req {
        CompressRequest::Score(req) => score(state, req).await,
        CompressRequest::Mask(req) => mask(state, req).await,
    }
}

fn reply(response: CompressResponse) {
    post(&Response::Compress(response));
}

async fn score(state: &State, req: ScoreRequest) -> JobResult {
    let started = js_sys::Date::now();
    let method = req.method;
    if method == ScoreMethod::WandaSequential {
        return Err("sequential Wanda runs natively (`scalpel prune --method wanda-seq`)".into());
    }
    // Scores describe the dense model: undo any mask first.
    state.restore_dense()?;
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
    let scorer = Scorer::new(&loaded.model, method, reference, state.limits.get())?;
    let stage = format!("Scoring ({}, {name})", method.name());
    let scores = run_scorer(state, scorer, &stage).await?;
    drop(loaded);
    state.compression.borrow_mut().scores = Some(scores);
    reply(CompressResponse::Scored {
        method: method.name().into(),
        reference: name,
        seconds: (js_sys::Date::now() - started) / 1000.0,
    });
    Ok(())
}

async fn mask(state: &State, req: MaskRequest) -> JobResult {
    let started = js_sys::Date::now();
    let group = req.group;
    let sparsity = group.implied_sparsity().unwrap_or(req.sparsity);
    state.restore_dense()?;
    let (tokens, dense) = readout(state).await?;
    progress("Masking", 0.0, 0.0);
    yield_now().await;
    let masks = {
        let compression = state.compression.borrow();
        let scores = compression.scores.as_ref().ok_or("compute scores first")?;
        let loaded = state.loaded()?;
        let linears = LinearSet::parse(&req.linears, loaded.model.config.architecture)?;
        Masks::from_scores(
            &*scores.restricted(&linears, &loaded.model)?,
            sparsity,
            group,
        )?
    };
    let (report, _) = state.apply_masks(&masks)?;
    let loaded = state.loaded()?;
    let linears = masks
        .info
        .scores
        .linears
        .describe(loaded.model.config.architecture);
    drop(masks);
    let pruned = readout_perplexity(state, &loaded.model, &tokens, "Perplexity (pruned)").await?;
    let layers = report.per_layer();
    reply(CompressResponse::Masked(MaskView {
        method: state
            .compression
            .borrow()
            .scores
            .as_ref()
            .map_or(String::new(), |s| s.info.method.name().into()),
        sparsity,
        group: group.name(),
        linears,
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

/// Undoes every mask, whichever panel applied it.
pub(crate) fn restore(state: &State) -> JobResult {
    state.restore_dense()?;
    post(&Response::Restored);
    Ok(())
}

/// Writes the model as it runs now in `format` and hands the page object URLs (the bytes never
/// cross the channel).
pub(crate) async fn export(state: &State, format: ExportFormat) -> JobResult {
    let loaded = state.loaded()?;
    let (model, tokenizer) = (&loaded.model, &loaded.tokenizer);
    let note = state
        .compression
        .borrow()
        .scores
        .as_ref()
        .map(|s| format!("{{\"scores\": {:?}}}", s.info.method.name()));
    let files: Vec<(String, Vec<u8>)> = match format {
        ExportFormat::Safetensors => {
            progress("Writing the checkpoint", 0.0, 0.0);
            yield_now().await;
            let checkpoint = export_checkpoint(model, tokenizer, note).await?;
            checkpoint
                .into_files()
                .into_iter()
                .map(|(name, bytes)| (name.to_string(), bytes))
                .collect()
        }
        ExportFormat::Shrunk => {
            let masks = state.applied_masks().ok_or(
                "nothing is pruned: apply a correction or circuit of MLP neurons or heads first, then download it shrunk",
            )?;
            progress("Writing the shrunk checkpoint", 0.0, 0.0);
            yield_now().await;
            let shrunk = shrink(model, tokenizer, &masks, note).await?;
            shrunk
                .checkpoint
                .into_files()
                .into_iter()
                .map(|(name, bytes)| (name.to_string(), bytes))
                .collect()
        }
        ExportFormat::Gguf(ty) => {
            let name = format!("{}-scalpel", model.config.architecture.spec().name);
            let export = GgufExport::plan(model, tokenizer, ty, &name)?;
            let stage = format!("Writing GGUF {}", ty.name());
            let mut bytes = export.header().to_vec();
            for i in 0..export.tensors() {
                progress(&stage, i as f64, export.tensors() as f64);
                yield_now().await;
                bytes.extend(export.tensor(i).await?);
            }
            vec![(format!("model.{}.gguf", ty.name()), bytes)]
        }
    };
    let mut urls = Vec::new();
    for (name, bytes) in &files {
        urls.push((name.clone(), object_url(bytes)?, bytes.len()));
    }
    post(&Response::Exported { files: urls });
    Ok(())
}
