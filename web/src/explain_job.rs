//! The worker's explanation job: one relevance pass, block by block, yielding between blocks so
//! progress reaches the page and Stop is honoured.

use std::cell::Cell;

use scalpel::LoadedModel;
use scalpel::relevance::heatmap::top_k;
use scalpel::relevance::{
    ExplanationCollector, MemoryLimits, RelevancePass, RuleSet, Target, Trace, WeightDetail,
};

use crate::job::{progress, yield_now};
use crate::protocol::{ExplainRequest, ExplanationView};

/// Strongest neurons listed per layer.
const NEURONS_PER_LAYER: usize = 5;

pub async fn explain(
    loaded: &LoadedModel,
    limits: &MemoryLimits,
    req: ExplainRequest,
    target_index: usize,
    cancel: &Cell<bool>,
) -> Result<ExplanationView, String> {
    let started = js_sys::Date::now();
    let LoadedModel { model, tokenizer } = loaded;
    let rules = RuleSet::parse(&req.rules).ok_or(format!("unknown rule set `{}`", req.rules))?;
    let text = |e: scalpel::Error| e.to_string();
    progress("Explaining: forward", 0.0, 0.0);
    yield_now().await;
    let trace = Trace::new(model, &req.context, limits, false).map_err(text)?;
    let target = Target::Token {
        position: None,
        token: req.target,
    };
    let mut pass = RelevancePass::new(model, trace, &target, rules).map_err(text)?;
    let mut sink = ExplanationCollector::new(WeightDetail::None);
    let total = pass.layers_total() as f64;
    while pass.step(&mut sink).map_err(text)? {
        progress("Explaining: layers", pass.layers_done() as f64, total);
        yield_now().await;
        if cancel.get() {
            return Err("explanation stopped".into());
        }
    }
    let input = pass.finish().map_err(text)?;
    let e = sink
        .readback(input, &req.context, rules)
        .read_async()
        .await
        .map_err(text)?;
    let pieces = req
        .context
        .iter()
        .map(|&id| tokenizer.id_to_text(id))
        .collect::<scalpel::Result<Vec<_>>>()
        .map_err(text)?;
    Ok(ExplanationView {
        rules: rules.name().into(),
        target_text: tokenizer.id_to_text(req.target).map_err(text)?,
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
