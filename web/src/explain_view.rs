//! The "Explain" panel: a relevance heatmap over the text, a layer × head grid and a per-layer
//! neuron summary for the clicked token, with a switch between rule sets.

use leptos::prelude::*;
use scalpel::relevance::RuleSet;
use scalpel::relevance::heatmap::{HeatmapPage, abs_max, heat_color};

use crate::protocol::ExplanationView;
use crate::shell::{Ui, WorkerLink, progress_view};
use crate::widgets::save_button;

fn rgb([r, g, b]: [u8; 3]) -> String {
    format!("background: rgb({r}, {g}, {b})")
}

/// What the numbers under a heatmap mean (shown on hover).
const EXPLAIN_STATS_HELP: &str = "explained logit: the output explained, the chosen token's logit (the relevance \
    starts as this value). Σ input relevance / logit: the share of it the input tokens carry; the rest is \
    absorbed on the way (biases, normalisation offsets, attention sinks; docs/relevance-rules.md).";

/// The rule sets offered, as (value, label).
pub(crate) const RULES: [(RuleSet, &str); 3] = [
    (RuleSet::AttnLrp, "AttnLRP"),
    (RuleSet::Gradient, "Gradient × input"),
    (RuleSet::CpLrp, "CP-LRP"),
];

#[component]
pub(crate) fn ExplainPanel(ui: Ui, link: StoredValue<WorkerLink>) -> impl IntoView {
    let switch = move |rules: RuleSet| {
        ui.rules.set(rules);
        if let Some(position) = ui.selected.get_untracked() {
            ui.explain(link, position);
        }
    };
    view! {
        <section class="card explain" data-testid="explain">
            <h2>{move || match ui.explanation.get() {
                Some(e) => format!("Why {:?}?", e.target_text),
                None => "Explaining…".to_string(),
            }}</h2>
            <div class="row rules">
                {RULES.map(|(value, label)| view! {
                    <label class="inline">
                        <input type="radio" name="rules" value=value.name() data-testid=format!("rules-{}", value.name())
                            prop:checked=move || ui.rules.get() == value
                            disabled=move || ui.is_explaining()
                            on:change=move |_| switch(value) />
                        {label}
                    </label>
                })}
            </div>
            {move || ui.is_explaining().then(|| progress_view(ui))}
            {move || ui.explanation.get().map(|e| explanation_view(ui, e))}
        </section>
    }
}

fn explanation_view(ui: Ui, e: ExplanationView) -> impl IntoView {
    let scale = abs_max(&e.relevance);
    let text = e
        .pieces
        .iter()
        .zip(&e.relevance)
        .map(|(piece, r)| {
            view! {
                <span class="heat" data-testid="heat-token" style=rgb(heat_color(*r, scale))
                    title=format!("{piece:?}: {r:+.4}")>{piece.clone()}</span>
            }
        })
        .collect_view();
    let stats = format!(
        "{} · explained logit {:.3} · Σ input relevance / logit {:.2} · {:.1} s",
        e.rules, e.output, e.conservation, e.seconds
    );
    view! {
        <div class="heatmap" data-testid="heatmap">
            {text}
            <span class="heat target" title="the explained token">{e.target_text.clone()}</span>
        </div>
        {legend(scale)}
        <div class="stats" data-testid="explain-stats" title=EXPLAIN_STATS_HELP>{stats}</div>
        {save_button(ui, "Download heatmap (HTML)", "save-heatmap", "relevance.html".into(), "text/html", {
            let e = e.clone();
            move || HeatmapPage {
                rules: &e.rules,
                target: &format!("{:?}", e.target_text),
                output: e.output,
                conservation: e.conservation,
                pieces: &e.pieces,
                tokens: &e.relevance,
                heads: &e.heads,
            }.to_html()
        })}
        <div class="flow">
            {heads_grid(e.heads)}
            {neuron_summary(e.neuron_totals, e.neuron_top)}
        </div>
    }
}

fn legend(scale: f32) -> impl IntoView {
    let stops: Vec<String> = (-4..=4)
        .map(|i| {
            let [r, g, b] = heat_color(i as f32 / 4.0, 1.0);
            format!("rgb({r},{g},{b})")
        })
        .collect();
    view! {
        <div class="legend" data-testid="legend">
            <span>{format!("{:+.3}", -scale)}</span>
            <span class="bar" style=format!("background: linear-gradient(to right, {})", stops.join(","))></span>
            <span>{format!("{:+.3}", scale)}</span>
            <span class="note">"red: supports the token · blue: speaks against it"</span>
        </div>
    }
}

fn heads_grid(heads: Vec<Vec<f32>>) -> impl IntoView {
    let scale = abs_max(&heads.concat());
    let rows = heads
        .iter()
        .enumerate()
        .map(|(layer, row)| {
            let cells = row
                .iter()
                .enumerate()
                .map(|(head, r)| {
                    view! {
                        <td style=rgb(heat_color(*r, scale))
                            title=format!("layer {layer}, head {head}: {r:+.4}")></td>
                    }
                })
                .collect_view();
            view! { <tr><th>{layer}</th>{cells}</tr> }
        })
        .collect_view();
    view! {
        <div class="heads">
            <h3>"Attention heads"</h3>
            <p class="hint">"rows: layers (0 at the top) · columns: heads"</p>
            <table data-testid="heads-grid"><tbody>{rows}</tbody></table>
        </div>
    }
}

fn neuron_summary(totals: Vec<f32>, top: Vec<Vec<(usize, f32)>>) -> impl IntoView {
    let scale = abs_max(&totals);
    let rows = totals
        .iter()
        .zip(&top)
        .enumerate()
        .map(|(layer, (total, top))| {
            let width = (total.abs() / scale * 50.0).min(50.0);
            let (left, colour) = if *total >= 0.0 {
                (50.0, "#d33")
            } else {
                (50.0 - width, "#36c")
            };
            let strongest = top
                .iter()
                .map(|(i, r)| format!("#{i} {r:+.3}"))
                .collect::<Vec<_>>()
                .join(", ");
            view! {
                <div class="neuron-row" title=format!("layer {layer}: Σ {total:+.4}; strongest: {strongest}")>
                    <span class="layer">{layer}</span>
                    <span class="track">
                        <span class="fill" style=format!("left: {left:.1}%; width: {width:.1}%; background: {colour}")></span>
                    </span>
                    <span class="value">{format!("{total:+.2}")}</span>
                </div>
            }
        })
        .collect_view();
    view! {
        <div class="neurons" data-testid="neurons">
            <h3>"MLP neurons per layer"</h3>
            <p class="hint">"Σ neuron relevance; hover for the strongest neurons"</p>
            {rows}
        </div>
    }
}
