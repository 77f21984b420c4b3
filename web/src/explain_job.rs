//! The worker's explanation job: one relevance pass, block by block, yielding between blocks so
//! progress reaches the page and Stop is honoured.

use std::cell::Cell;

use scalpel::LoadedModel;
use scalpel::relevance::heatmap::top_k;
use scalpel::relevance::{
    ExplanationCollector, MemoryLimits, RelevancePass, Target, Trace, WeightDetail,
};

use crate::job::{JobResult, progress, yield_now};
use crate::protocol::{ExplainRequest, ExplanationView};

/// Strongest neurons listed per layer.
const NEURONS_PER_LAYER: usize = 5;

pub(crate) async fn explain(
    loaded: &LoadedModel,
    limits: &MemoryLimits,
    req: ExplainRequest,
    target_index: usize,
    cancel: &Cell<bool>,
) -> JobResult<ExplanationView> {
    let started = js_sys::Date::now();
    let LoadedModel { model, tokenizer } = loaded;
    let rules = req.rules;
    progress("Explaining: forward", 0.0, 0.0);
    yield_now().await;
    let trace = Trace::new(model, &req.context, limits, false)?;
    let target = Target::Token {
        position: None,
        token: req.target,
    };
    let mut pass = RelevancePass::new(model, trace, &target, rules)?;
    let mut sink = ExplanationCollector::new(WeightDetail::None);
    let total = pass.layers_total() as f64;
    while pass.step(&mut sink)? {
        progress("Explaining: layers", pass.layers_done() as f64, total);
        yield_now().await;
        if cancel.get() {
            return Err("explanation stopped".into());
        }
    }
    let input = pass.finish()?;
    let e = sink
        .readback(input, &req.context, rules)
        .read_async()
        .await?;
    let pieces = req
        .context
        .iter()
        .map(|&id| tokenizer.id_to_text(id))
        .collect::<scalpel::Result<Vec<_>>>()?;
    Ok(ExplanationView {
        rules: rules.name().into(),
        target_text: tokenizer.id_to_text(req.target)?,
        target_index,
        pieces,
        output: e.output,
        conservation: e.conservation(),
        neuron_totals: e.neurons.iter().map(|l| l.iter().sum()).collect(),
        neuron_top: e
            .neurons
            .iter()
            .map(|l| top_k(l, NEURONS_PER_LAYER))
            .collect(),
        heads: e.heads,
        relevance: e.tokens,
        seconds: (js_sys::Date::now() - started) / 1000.0,
    })
}
