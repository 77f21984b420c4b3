//! The "Compress" panel: score every weight over a reference set once, then drag the sparsity
//! slider to re-mask instantly and watch the generation and a perplexity readout change.

use leptos::prelude::*;
use scalpel::prune::Group;
use scalpel::report::{LineChart, Series};
use scalpel::score::ScoreMethod;

use crate::estimate::{Work, cpu_warning};
use crate::fragment::{Fragment, Params};
use crate::protocol::{
    CompressRequest, MaskRequest, MaskView, ReferenceChoice, Request, ScoreRequest,
};
use crate::shell::{Panel, Ui, WorkerLink, progress_view};
use crate::widgets::{
    Choice, csv, download_field, linears_field, number_field, read_picked_text, save_button,
    select_field,
};

/// Methods offered in the page, as (value, label). Sequential Wanda runs natively only.
/// LRP's mean |R| comes first: it prunes far better than |mean R| (README, "Results").
const METHODS: [(ScoreMethod, &str); 5] = [
    (ScoreMethod::LrpAbs, "LRP mean |R|"),
    (ScoreMethod::Lrp, "LRP |mean R|"),
    (ScoreMethod::Wanda, "Wanda"),
    (ScoreMethod::Gradient, "Gradient"),
    (ScoreMethod::Magnitude, "Magnitude"),
];
const GROUPS: [(&str, &str); 5] = [
    ("row", "per output row"),
    ("layer", "per layer"),
    ("global", "global"),
    ("2:4", "2:4"),
    ("4:8", "4:8"),
];

/// What the perplexity readout's words mean (shown on hover).
const READOUT_HELP: &str = "wiki-256x4 / wiki-128x2: perplexity on 4 windows of 256 (2 of 128 on the CPU) \
    tokens of a built-in Wikipedia text, a quick stand-in for the 64-window wiki-512 the CLI measures. \
    per row group: every output row of every weight matrix loses the same share (Wanda's grouping); \
    per layer: one ranking per matrix; global: one ranking over the whole model.";

/// The panel's controls, held by the page (a link sets them and replays the jobs; `link`).
#[derive(Clone, Copy)]
pub(crate) struct CompressSettings {
    pub(crate) method: RwSignal<ScoreMethod>,
    /// "c4" (the built-in sample) or "text" (`pasted`).
    pub(crate) reference_kind: RwSignal<String>,
    pub(crate) pasted: RwSignal<String>,
    pub(crate) samples: RwSignal<usize>,
    pub(crate) sample_len: RwSignal<usize>,
    pub(crate) sparsity: RwSignal<f64>,
    pub(crate) group: RwSignal<String>,
    pub(crate) linears: RwSignal<String>,
    /// The scoring and the mask last asked for, as a link names them.
    scored_with: RwSignal<Params>,
    masked_with: RwSignal<Params>,
}

impl CompressSettings {
    pub(crate) fn new() -> Self {
        Self {
            method: RwSignal::new(ScoreMethod::LrpAbs),
            reference_kind: RwSignal::new("c4".to_string()),
            pasted: RwSignal::new(String::new()),
            samples: RwSignal::new(16),
            sample_len: RwSignal::new(128),
            sparsity: RwSignal::new(0.5),
            group: RwSignal::new("row".to_string()),
            linears: RwSignal::new("all".to_string()),
            scored_with: RwSignal::new(Vec::new()),
            masked_with: RwSignal::new(Vec::new()),
        }
    }

    /// What a link needs to score and mask again as the panel did: the scoring once it is done,
    /// the mask while it runs.
    pub(crate) fn link_params(self, ui: Ui) -> Params {
        let mut params = Vec::new();
        if ui.compress.get().scored.is_some() {
            params.extend(self.scored_with.get());
            if ui.compress.get().masked.is_some() && ui.runs(Panel::Compress) {
                params.extend(self.masked_with.get());
            }
        }
        params
    }

    /// Sets the controls a link names; whether it asks to (score, mask).
    pub(crate) fn follow(self, link: &Fragment) -> (bool, bool) {
        if !link.has("compress.method") {
            return (false, false);
        }
        link.set_choice("compress.method", &METHODS, self.method);
        link.set("compress.samples", self.samples);
        link.set("compress.tokens", self.sample_len);
        if let Some(text) = link.text("compress.text") {
            self.reference_kind.set("text".into());
            self.pasted.set(text);
        }
        link.set("compress.sparsity", self.sparsity);
        link.set_checked("compress.group", self.group, |g| Group::parse(g).is_ok());
        link.set("compress.linears", self.linears);
        (true, link.has("compress.sparsity"))
    }

    /// The scoring's work (`estimate`).
    fn work(self) -> Work {
        let tokens = (self.samples.get() * self.sample_len.get()) as f64;
        match self.method.get() {
            ScoreMethod::Magnitude => Work::default(),
            ScoreMethod::Wanda => Work {
                forward: tokens,
                ..Work::default()
            },
            _ => Work {
                relevance: tokens,
                ..Work::default()
            },
        }
    }

    /// Scores the model over the chosen reference set.
    pub(crate) fn score(self, ui: Ui, link: StoredValue<WorkerLink>) {
        let reference = if self.reference_kind.get_untracked() == "text" {
            ReferenceChoice::Text(self.pasted.get_untracked())
        } else {
            ReferenceChoice::BuiltInC4
        };
        ui.compress.update(|c| *c = Default::default());
        let mut params = vec![
            (
                "compress.method",
                self.method.get_untracked().key().to_string(),
            ),
            ("compress.samples", self.samples.get_untracked().to_string()),
            (
                "compress.tokens",
                self.sample_len.get_untracked().to_string(),
            ),
        ];
        if let ReferenceChoice::Text(text) = &reference {
            params.push(("compress.text", text.clone()));
        }
        self.scored_with.set(params);
        ui.run_job(
            link,
            Panel::Compress,
            Request::Compress(CompressRequest::Score(ScoreRequest {
                method: self.method.get_untracked(),
                reference,
                samples: self.samples.get_untracked(),
                sample_len: self.sample_len.get_untracked(),
            })),
        );
    }

    /// Masks at the shown sparsity, group and Linears (once scored).
    pub(crate) fn mask(self, ui: Ui, link: StoredValue<WorkerLink>) {
        if ui.compress.get_untracked().scored.is_none() {
            return;
        }
        self.masked_with.set(vec![
            (
                "compress.sparsity",
                self.sparsity.get_untracked().to_string(),
            ),
            ("compress.group", self.group.get_untracked()),
            ("compress.linears", self.linears.get_untracked()),
        ]);
        match Group::parse(&self.group.get_untracked()) {
            Ok(group) => ui.run_job(
                link,
                Panel::Compress,
                Request::Compress(CompressRequest::Mask(MaskRequest {
                    sparsity: self.sparsity.get_untracked(),
                    group,
                    linears: self.linears.get_untracked(),
                })),
            ),
            Err(e) => ui.fail(e.to_string()),
        }
    }
}

#[component]
pub(crate) fn CompressPanel(
    ui: Ui,
    link: StoredValue<WorkerLink>,
    settings: CompressSettings,
) -> impl IntoView {
    let CompressSettings {
        method,
        reference_kind,
        pasted,
        samples,
        sample_len,
        sparsity,
        group,
        linears,
        ..
    } = settings;
    let send = move |r: Request| ui.run_job(link, Panel::Compress, r);
    let compute = move || settings.score(ui, link);
    let remask = move || settings.mask(ui, link);
    let idle = move || ui.is_idle();
    let scored = move || ui.compress.get().scored.is_some();
    let on_file =
        move |ev: leptos::ev::Event| read_picked_text(ui, &ev, move |_, text| pasted.set(text));

    view! {
        <section class="card compress" data-testid="compress">
            <h2>"Compress"</h2>
            <p class="hint">
                "Score every decoder-block weight over a reference text, then drag the slider: the lowest-scored "
                "weights are zeroed (undoably) and the prompt above is generated again."
            </p>
            <div class="row">
                {select_field("Method", "compress-method", method, &METHODS)}
                <label class="inline">
                    <input type="radio" name="reference" prop:checked=move || reference_kind.get() == "c4"
                        on:change=move |_| reference_kind.set("c4".into()) />
                    "Built-in C4 sample"
                </label>
                <label class="inline">
                    <input type="radio" name="reference" data-testid="reference-own"
                        prop:checked=move || reference_kind.get() == "text"
                        on:change=move |_| reference_kind.set("text".into()) />
                    "Your text"
                </label>
                {number_field("Samples", samples, "1", "1024", "1", "samples")}
                {number_field("Tokens each", sample_len, "2", "2048", "1", "sample-len")}
            </div>
            <Show when=move || reference_kind.get() == "text">
                <textarea rows="3" data-testid="reference-text" placeholder="Paste general text here (or pick a .txt file)"
                    prop:value=move || pasted.get() on:input=move |ev| pasted.set(event_target_value(&ev))></textarea>
                <input type="file" accept=".txt,text/plain" data-testid="reference-file" on:change=on_file />
            </Show>
            <div class="row">
                <button class="primary" data-testid="compute-scores" disabled=move || !idle()
                    on:click=move |_| compute()>"Compute scores"</button>
                {cpu_warning(ui.device_is_gpu, ui.decode_speed, "compress-estimate", move || settings.work())}
                <span class="stats" data-testid="scores-status">{move || ui.compress.get().scored.clone()}</span>
            </div>
            <div class="row">
                <label class="inline grow">"Sparsity "
                    <input type="range" min="0" max="0.9" step="0.05" class="grow" data-testid="sparsity"
                        prop:value=move || sparsity.get().to_string()
                        disabled=move || !scored() || !idle()
                        on:input=move |ev| if let Ok(v) = event_target_value(&ev).parse() { sparsity.set(v) }
                        on:change=move |_| remask() />
                    <span class="value">{move || format!("{:.0}%", sparsity.get() * 100.0)}</span>
                </label>
                // The slider acts when moved; this applies the value it shows.
                <button data-testid="apply-mask" disabled=move || !scored() || !idle()
                    on:click=move |_| remask()>"Apply"</button>
                <label class="inline">"Group "
                    <select data-testid="group" prop:value=move || group.get()
                        disabled=move || !idle()
                        on:change=move |ev| { group.set(event_target_value(&ev)); remask() }>
                        {GROUPS.map(|(v, l)| view! { <option value=v>{l}</option> })}
                    </select>
                </label>
                {linears_field(ui, "compress-linears", linears, remask)}
            </div>
            {move || ui.is_busy_in(Panel::Compress).then(|| progress_view(ui))}
            {move || ui.compress.get().masked.filter(|_| ui.runs(Panel::Compress)).map(|m| mask_view(ui, m))}
            <div class="row">
                <button data-testid="restore" disabled=move || !idle() || !ui.runs(Panel::Compress)
                    on:click=move |_| send(Request::Restore)>"Restore dense model"</button>
                // Only a pruned model is worth downloading from here (the original is on the hub).
                {download_field("Download model", "download", "download-format",
                    move || idle() && ui.runs(Panel::Compress), move |f| send(Request::Export(f)))}
            </div>
        </section>
    }
}

/// The readout after a mask: perplexity dense → pruned, achieved sparsity, per-layer bars (and
/// the bars as a chart and a table to download).
fn mask_view(ui: Ui, m: MaskView) -> impl IntoView {
    let bars = m
        .per_layer
        .iter()
        .enumerate()
        .map(|(layer, share)| {
            view! {
                <div class="bar" title=format!("layer {layer}: {:.1}% pruned", share * 100.0)>
                    <div class="fill" style=format!("height: {:.1}%", share * 100.0)></div>
                </div>
            }
        })
        .collect_view();
    view! {
        <div class="stats" data-testid="ppl-readout" title=READOUT_HELP>
            {format!(
                "{} perplexity: dense {:.2} → pruned {:.2} · {} at {:.0}% per {} group · {:.1}% of {} pruned · {:.1} s",
                m.protocol, m.dense_perplexity, m.perplexity, m.method, m.sparsity * 100.0, m.group,
                m.achieved * 100.0,
                if m.linears == "all" { "block weights".to_string() } else { format!("the weights of {}", m.linears) },
                m.seconds
            )}
        </div>
        <div class="bars" data-testid="layer-bars" title="pruned share per layer">{bars}</div>
        {per_layer_downloads(ui, &m)}
        {(m.group == "row" || m.group.contains(':')).then(|| view! {
            <p class="hint">"Per-row and N:M groups prune the same share of every layer: choose per layer or global to see the layers differ."</p>
        })}
    }
}

/// The per-layer shares as an SVG chart and a CSV table.
fn per_layer_downloads(ui: Ui, m: &MaskView) -> impl IntoView + use<> {
    let points: Vec<(f64, f64)> = m
        .per_layer
        .iter()
        .enumerate()
        .map(|(layer, share)| (layer as f64, 100.0 * share))
        .collect();
    let chart = LineChart {
        title: format!(
            "{} at {:.0}% per {} group: share pruned per layer",
            m.method,
            m.sparsity * 100.0,
            m.group
        ),
        x_label: "layer".into(),
        y_label: "pruned (%)".into(),
        log_y: false,
        series: vec![Series {
            name: m.linears.clone(),
            points,
            spread: vec![],
        }],
        reference: Some(("overall".into(), 100.0 * m.achieved)),
    };
    let svg = chart.to_svg();
    let mut rows = vec![vec!["layer".to_string(), "share pruned".to_string()]];
    rows.extend(
        m.per_layer
            .iter()
            .enumerate()
            .map(|(layer, share)| vec![layer.to_string(), share.to_string()]),
    );
    view! {
        <div class="row">
            {save_button(ui, "Per layer (SVG)", "save-layers-svg", "pruned-per-layer.svg".into(), "image/svg+xml", move || svg.clone())}
            {save_button(ui, "Per layer (CSV)", "save-layers-csv", "pruned-per-layer.csv".into(), "text/csv", move || csv(&rows))}
        </div>
    }
}
