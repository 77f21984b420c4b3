//! The "Circuits" panel: pick a task, find its circuit (the curve grows point by point), drag
//! the threshold to choose the circuit, see it layer by layer, switch between the circuit alone
//! and the full model, try your own prompt on both, and save or load the circuit as JSON.

use leptos::prelude::*;
use scalpel::circuit::DEFAULT_FRACTIONS;
use scalpel::prune::Granularity;
use scalpel::report::{LineChart, Series};
use scalpel::score::ScoreMethod;

use crate::estimate::{PROMPT_TOKENS, Work, cpu_warning};
use crate::fragment::{Fragment, Params};
use crate::protocol::{
    CircuitSearch, CircuitView, CircuitsRequest, Metrics, ProbeView, Request, TaskChoice,
};
use crate::shell::{Panel, Ui, WorkerLink, progress_view};
use crate::status::CircuitStatus;
use crate::widgets::{
    Choice, csv, linears_field, number_field, read_picked_text, save_button, select_field,
};

const TASKS: [(&str, &str); 5] = [
    ("ioi", "Indirect object (IOI)"),
    ("capitals", "Capital cities"),
    ("agreement", "Subject–verb agreement"),
    ("pronouns", "Pronouns"),
    ("lines", "Your prompts"),
];
const GRANULARITIES: [(Granularity, &str); 3] = [
    (Granularity::Heads, "attention heads"),
    (Granularity::Neurons, "MLP neurons"),
    (Granularity::Weights, "weights"),
];
const METHODS: [(ScoreMethod, &str); 5] = [
    (ScoreMethod::Lrp, "LRP |mean R|"),
    (ScoreMethod::Gradient, "Gradient"),
    (ScoreMethod::Wanda, "Wanda"),
    (ScoreMethod::Activation, "Activation"),
    (ScoreMethod::Random, "Random"),
];

/// The panel's controls, held by the page (a link sets them and replays the jobs; `link`).
#[derive(Clone, Copy)]
pub(crate) struct CircuitSettings {
    /// A key of [`TASKS`].
    pub(crate) task: RwSignal<&'static str>,
    pub(crate) lines: RwSignal<String>,
    pub(crate) granularity: RwSignal<Granularity>,
    pub(crate) linears: RwSignal<String>,
    pub(crate) method: RwSignal<ScoreMethod>,
    pub(crate) prompts: RwSignal<usize>,
    pub(crate) threshold: RwSignal<f64>,
    pub(crate) circuit_only: RwSignal<bool>,
    /// Where the running circuit was loaded from, if from a file: its URL, or `None` for a file
    /// picked from disk (which a link cannot name).
    pub(crate) loaded_from: RwSignal<Option<Option<String>>>,
    /// The search and the cut last asked for, as a link names them.
    found_with: RwSignal<Params>,
    picked_with: RwSignal<Params>,
}

/// What a link asks the Circuits panel to do again.
pub(crate) enum CircuitReplay {
    /// Search (and cut at the threshold if `pick`).
    Find { pick: bool },
    /// Load the circuit file at this URL.
    Load(String),
}

impl CircuitSettings {
    pub(crate) fn new() -> Self {
        Self {
            task: RwSignal::new("ioi"),
            lines: RwSignal::new(String::new()),
            granularity: RwSignal::new(Granularity::Heads),
            linears: RwSignal::new("all".to_string()),
            method: RwSignal::new(ScoreMethod::Lrp),
            prompts: RwSignal::new(32),
            threshold: RwSignal::new(0.9),
            circuit_only: RwSignal::new(true),
            loaded_from: RwSignal::new(None),
            found_with: RwSignal::new(Vec::new()),
            picked_with: RwSignal::new(Vec::new()),
        }
    }

    /// What a link needs to show the panel again: the search once its curve is measured and the
    /// cut once chosen, or the URL of the circuit file that runs. `Err` says why the running
    /// circuit cannot be linked (a file picked from disk).
    pub(crate) fn link_params(self, ui: Ui) -> Result<Params, &'static str> {
        let status = ui.circuits.get();
        match self.loaded_from.get() {
            Some(Some(url)) if status.picked.is_some() => {
                return Ok(vec![("circuit.url", url)]);
            }
            Some(None) if status.picked.is_some() => {
                return Err(
                    "the circuit came from a file on this computer: load it from a URL to link it",
                );
            }
            _ => {}
        }
        let mut params = Vec::new();
        if status.ready.is_some() {
            params.extend(self.found_with.get());
            if status.picked.is_some() {
                params.extend(self.picked_with.get());
                // The checkbox says what runs now, however often it was toggled since the cut.
                params.push(("circuit.only", self.circuit_only.get().to_string()));
            }
        }
        Ok(params)
    }

    /// Sets the controls a link names; what it asks to do again.
    pub(crate) fn follow(self, link: &Fragment) -> Option<CircuitReplay> {
        if let Some(url) = link.text("circuit.url") {
            return Some(CircuitReplay::Load(url));
        }
        if !link.has("circuit.task") {
            return None;
        }
        link.set_choice("circuit.task", &TASKS, self.task);
        if let Some(lines) = link.text("circuit.lines") {
            self.lines.set(lines);
        }
        link.set_choice("circuit.prune", &GRANULARITIES, self.granularity);
        link.set("circuit.linears", self.linears);
        link.set_choice("circuit.scores", &METHODS, self.method);
        link.set("circuit.prompts", self.prompts);
        link.set("circuit.threshold", self.threshold);
        link.set("circuit.only", self.circuit_only);
        Some(CircuitReplay::Find {
            pick: link.has("circuit.threshold"),
        })
    }

    /// The search's work (`estimate`): scores over the scoring prompts, then the task measured
    /// at every point of the curve that prunes something and on the dense model for both splits.
    fn work(self) -> Work {
        let tokens = self.prompts.get() as f64 * PROMPT_TOKENS;
        let pruning = DEFAULT_FRACTIONS.iter().filter(|&&f| f > 0.0).count();
        let curve = (pruning + 2) as f64 * tokens;
        match self.method.get() {
            ScoreMethod::Random => Work {
                forward: curve,
                ..Work::default()
            },
            ScoreMethod::Wanda | ScoreMethod::Activation => Work {
                forward: curve + tokens,
                ..Work::default()
            },
            _ => Work {
                relevance: tokens,
                forward: curve,
                ..Work::default()
            },
        }
    }

    /// Scores the task's components and measures the curve.
    pub(crate) fn find(self, ui: Ui, link: StoredValue<WorkerLink>) {
        let choice = match self.task.get_untracked() {
            "lines" => TaskChoice::Lines(self.lines.get_untracked()),
            name => TaskChoice::Named(name.to_string()),
        };
        ui.circuits.set(CircuitStatus::default());
        self.loaded_from.set(None);
        let mut params = vec![("circuit.task", self.task.get_untracked().to_string())];
        if let TaskChoice::Lines(lines) = &choice {
            params.push(("circuit.lines", lines.clone()));
        }
        params.extend([
            (
                "circuit.prune",
                self.granularity.get_untracked().key().to_string(),
            ),
            ("circuit.linears", self.linears.get_untracked()),
            (
                "circuit.scores",
                self.method.get_untracked().key().to_string(),
            ),
            ("circuit.prompts", self.prompts.get_untracked().to_string()),
        ]);
        self.found_with.set(params);
        ui.run_job(
            link,
            Panel::Circuits,
            Request::Circuits(CircuitsRequest::Find(CircuitSearch {
                task: choice,
                granularity: self.granularity.get_untracked(),
                linears: self.linears.get_untracked(),
                method: self.method.get_untracked(),
                prompts: self.prompts.get_untracked(),
                seed: 0,
            })),
        );
    }

    /// Cuts the circuit at the shown threshold (once the curve is measured).
    pub(crate) fn pick(self, ui: Ui, link: StoredValue<WorkerLink>) {
        let status = ui.circuits.get_untracked();
        if status.ready.is_none() {
            return;
        }
        let threshold = self.threshold.get_untracked();
        self.picked_with
            .set(vec![("circuit.threshold", threshold.to_string())]);
        match status.fraction_for(threshold) {
            Some(fraction) => ui.run_job(link, Panel::Circuits, Request::Circuits(CircuitsRequest::Pick {
                    fraction,
                    apply: self.circuit_only.get_untracked(),
                }),
            ),
            None => ui.fail(format!(
                "no measured point keeps {:.0} % of the dense logit difference: lower the threshold",
                threshold * 100.0
            )),
        }
    }

    /// Loads a circuit file from `url` (a link's, or one typed into the panel) and runs it.
    pub(crate) fn load_url(self, ui: Ui, link: StoredValue<WorkerLink>, url: String) {
        self.loaded_from.set(Some(Some(url.clone())));
        // A loaded circuit runs alone: the checkbox says so, and unchecking it goes back.
        self.circuit_only.set(true);
        ui.run_job(
            link,
            Panel::Circuits,
            Request::Circuits(CircuitsRequest::LoadUrl { url }),
        );
    }
}

#[component]
pub(crate) fn CircuitPanel(
    ui: Ui,
    link: StoredValue<WorkerLink>,
    settings: CircuitSettings,
) -> impl IntoView {
    let CircuitSettings {
        task,
        lines,
        granularity,
        linears,
        method,
        prompts,
        threshold,
        circuit_only,
        loaded_from,
        ..
    } = settings;
    let probe = RwSignal::new(
        "When Mary and John went to the store, John gave a drink to | Mary | John".to_string(),
    );
    let circuit_url = RwSignal::new(String::new());
    let send = move |r: Request| ui.run_job(link, Panel::Circuits, r);
    let run = move || settings.find(ui, link);
    let pick = move || settings.pick(ui, link);
    let idle = move || ui.is_idle();
    let ready = move || ui.circuits.get().ready.is_some();
    let on_load = move |ev: leptos::ev::Event| {
        read_picked_text(ui, &ev, move |name, text| {
            loaded_from.set(Some(None));
            circuit_only.set(true);
            send(Request::Circuits(CircuitsRequest::Load { name, text }))
        })
    };

    view! {
        <section class="card circuits" data-testid="circuits">
            <h2>"Circuits"</h2>
            <p class="hint">
                "Score the model's components with the task's logit difference (answer − distractor) as the "
                "explained output, prune from the least relevant up, and keep the smallest set that still does the task."
            </p>
            <div class="row">
                {select_field("Task", "circuit-task", task, &TASKS)}
                {select_field("Prune", "circuit-granularity", granularity, &GRANULARITIES)}
                {linears_field(ui, "circuit-linears", linears, || ())}
                {select_field("Scores", "circuit-method", method, &METHODS)}
                {number_field("Prompts", prompts, "2", "512", "1", "circuit-prompts")}
            </div>
            <Show when=move || task.get() == "lines">
                <textarea rows="4" data-testid="circuit-lines"
                    placeholder="One prompt per line: prompt | answer | distractor (answer and distractor one token each)"
                    prop:value=move || lines.get() on:input=move |ev| lines.set(event_target_value(&ev))></textarea>
            </Show>
            <div class="row">
                <button class="primary" data-testid="find-circuit" disabled=move || !idle()
                    on:click=move |_| run()>"Find circuit"</button>
                {cpu_warning(ui.device_is_gpu, ui.decode_speed, "circuit-estimate", move || settings.work())}
                <span class="stats" data-testid="circuit-status"
                    title="the prompt set is named task-seed-split-prompts, e.g. ioi-seed0-scoring-32: \
                        the prompts the circuit is scored on (as many are held out to test it)">
                    {move || status_line(&ui.circuits.get())}</span>
            </div>
            {move || ui.is_busy_in(Panel::Circuits).then(|| progress_view(ui))}
            {move || {
                let c = ui.circuits.get();
                (!c.curve.is_empty()).then(move || curve_view(ui, &c, threshold.get()))
            }}
            <div class="row">
                <label class="inline grow">"Threshold "
                    <input type="range" min="0.5" max="1" step="0.05" class="grow" data-testid="circuit-threshold"
                        prop:value=move || threshold.get().to_string()
                        disabled=move || !ready() || !idle()
                        on:input=move |ev| if let Ok(v) = event_target_value(&ev).parse() { threshold.set(v) }
                        on:change=move |_| pick() />
                    <span class="value">{move || format!("{:.0}% of the dense logit difference", threshold.get() * 100.0)}</span>
                </label>
                // The slider acts when moved; this cuts the circuit at the value it shows.
                <button data-testid="apply-threshold" disabled=move || !ready() || !idle()
                    on:click=move |_| pick()>"Apply"</button>
                <label class="inline">
                    <input type="checkbox" data-testid="circuit-only" prop:checked=move || circuit_only.get()
                        disabled=move || ui.circuits.get().picked.is_none() || !idle()
                        on:change=move |ev| {
                            circuit_only.set(event_target_checked(&ev));
                            if let Some(p) = ui.circuits.get_untracked().picked {
                                send(Request::Circuits(CircuitsRequest::Pick { fraction: p.fraction, apply: circuit_only.get_untracked() }));
                            }
                        } />
                    "Circuit only (else the full model)"
                </label>
            </div>
            {move || ui.circuits.get().picked.map(|mut v| {
                v.applied &= ui.runs(Panel::Circuits);
                picked_view(v)
            })}
            <div class="row">
                <input type="text" class="grow" data-testid="probe-line" prop:value=move || probe.get()
                    title="prompt | answer | distractor: how much more the model favours the answer token \
                        than the distractor after the prompt, on the full model and on the circuit alone"
                    on:input=move |ev| probe.set(event_target_value(&ev)) />
                <button data-testid="probe" disabled=move || !idle()
                    on:click=move |_| send(Request::Circuits(CircuitsRequest::Probe { line: probe.get_untracked() }))>"Try prompt"</button>
            </div>
            {move || ui.circuits.get().probe.map(probe_view)}
            <div class="row">
                <button data-testid="circuit-export" disabled=move || !idle() || ui.circuits.get().picked.is_none()
                    on:click=move |_| send(Request::Circuits(CircuitsRequest::Export))>"Save circuit (JSON)"</button>
                <label class="inline">"Load circuit "
                    <input type="file" accept=".json,application/json" data-testid="circuit-load"
                        disabled=move || !idle() on:change=on_load />
                </label>
            </div>
            <div class="row">
                <input type="url" class="grow" data-testid="circuit-url" placeholder="https://…/circuit.json"
                    title="a circuit file on the web (the server must allow other sites to read it: CORS); a link to this page can then name it"
                    prop:value=move || circuit_url.get() on:input=move |ev| circuit_url.set(event_target_value(&ev)) />
                <button data-testid="circuit-load-url" disabled=move || !idle() || circuit_url.get().trim().is_empty()
                    on:click=move |_| settings.load_url(ui, link, circuit_url.get_untracked().trim().to_string())>"Load from URL"</button>
            </div>
        </section>
    }
}

fn status_line(c: &CircuitStatus) -> String {
    let Some(task) = &c.task else {
        return String::new();
    };
    let dense = c.dense.map_or(String::new(), |d| {
        format!(
            "dense: logit diff {:.2}, accuracy {:.0}%, top-1 {:.0}%",
            d.logit_diff,
            d.accuracy * 100.0,
            d.top1 * 100.0
        )
    });
    let done = c.ready.map_or(String::new(), |s| {
        format!(" · curve measured in {s:.1} s: drag the threshold")
    });
    let notes = if c.notes.is_empty() {
        String::new()
    } else {
        format!(" · note: {}", c.notes.join("; "))
    };
    format!("{task} · {dense}{done}{notes}")
}

/// The curve so far (faithfulness vs share pruned) with the threshold line.
fn curve_view(ui: Ui, c: &CircuitStatus, threshold: f64) -> impl IntoView + use<> {
    let chart = LineChart {
        title: "logit difference kept vs share pruned".into(),
        x_label: "share pruned (global ranking)".into(),
        y_label: "logit difference / dense".into(),
        log_y: false,
        series: vec![Series {
            name: "circuit".into(),
            points: c
                .curve
                .iter()
                .map(|p| (p.fraction, p.faithfulness))
                .collect(),
            spread: vec![],
        }],
        reference: Some((format!("threshold {:.0} %", threshold * 100.0), threshold)),
    };
    let choice = c.fraction_for(threshold).map_or(
        "no measured point keeps the threshold".to_string(),
        |f| {
            let p = c.curve.iter().find(|p| p.fraction == f);
            p.map_or(String::new(), |p| {
                format!(
                    "at this threshold the circuit keeps {} of {} ({:.1}%)",
                    p.kept,
                    p.total,
                    100.0 * p.kept as f64 / p.total.max(1) as f64
                )
            })
        },
    );
    let svg = chart.to_svg();
    let mut rows = vec![
        [
            "share pruned",
            "kept",
            "total",
            "logit difference / dense",
            "accuracy",
        ]
        .map(String::from)
        .to_vec(),
    ];
    rows.extend(c.curve.iter().map(|p| {
        vec![
            p.fraction.to_string(),
            p.kept.to_string(),
            p.total.to_string(),
            p.faithfulness.to_string(),
            p.accuracy.to_string(),
        ]
    }));
    view! {
        <div class="chart" data-testid="circuit-curve" inner_html=svg.clone()></div>
        <div class="row">
            {save_button(ui, "Chart (SVG)", "save-circuit-svg", "circuit-curve.svg".into(), "image/svg+xml", move || svg.clone())}
            {save_button(ui, "Curve (CSV)", "save-circuit-csv", "circuit-curve.csv".into(), "text/csv", move || csv(&rows))}
        </div>
        <div class="stats" data-testid="circuit-choice">{choice}</div>
    }
}

fn metrics_text(m: &Metrics) -> String {
    format!(
        "logit diff {:.2}, accuracy {:.0}%",
        m.logit_diff,
        m.accuracy * 100.0
    )
}

/// The chosen circuit: held-out test, best components, the layer-by-layer picture.
fn picked_view(v: CircuitView) -> impl IntoView {
    let held = v.held_out.map(|(dense, circuit, random)| {
        format!(
            "held-out prompts: dense {} · circuit {} · random circuit of the same size {}",
            metrics_text(&dense),
            metrics_text(&circuit),
            metrics_text(&random)
        )
    });
    let layers = if v.heads.is_empty() {
        let bars = v
            .per_layer
            .iter()
            .enumerate()
            .map(|(layer, (kept, total))| {
                let share = *kept as f64 / (*total).max(1) as f64;
                view! {
                    <div class="bar" title=format!("layer {layer}: {kept} of {total} kept")>
                        <div class="fill kept" style=format!("height: {:.1}%", share * 100.0)></div>
                    </div>
                }
            })
            .collect_view();
        view! { <div class="bars" data-testid="circuit-layers" title="kept share per layer">{bars}</div> }
            .into_any()
    } else {
        let rows = v
            .heads
            .iter()
            .enumerate()
            .map(|(layer, heads)| {
                let cells = heads
                    .iter()
                    .enumerate()
                    .map(|(h, &kept)| {
                        view! { <span class="head" class:kept=kept title=format!("layer {layer} head {h}")></span> }
                    })
                    .collect_view();
                view! { <div class="head-row"><span class="layer">{layer}</span>{cells}</div> }
            })
            .collect_view();
        view! { <div class="heads-grid" data-testid="circuit-layers">{rows}</div> }.into_any()
    };
    view! {
        <div class="stats" data-testid="circuit-picked">
            {format!(
                "{} circuit: {} of {} {} kept ({:.1}%) · {}",
                if v.applied { "running the" } else { "full model running; chosen" },
                v.kept, v.total, v.granularity,
                100.0 * v.kept as f64 / v.total.max(1) as f64,
                if v.top.is_empty() { String::new() } else { format!("strongest kept: {}", v.top.join(", ")) }
            )}
        </div>
        {held.map(|h| view! { <div class="stats" data-testid="circuit-held-out">{h}</div> })}
        {layers}
    }
}

fn probe_view(p: ProbeView) -> impl IntoView {
    let said = |(diff, top): (f32, bool)| {
        format!(
            "logit({}) − logit({}) = {diff:.2}{}",
            p.answer.trim(),
            p.distractor.trim(),
            if top { ", answer is the top token" } else { "" }
        )
    };
    let text = match p.circuit {
        Some(c) => format!("full model: {} · circuit only: {}", said(p.full), said(c)),
        None => format!("full model: {}", said(p.full)),
    };
    view! { <div class="stats" data-testid="probe-result">{text}</div> }
}
