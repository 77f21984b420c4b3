//! The "Correct" panel: choose a behaviour (toxicity, repetition or pasted prompts), find what
//! drives it, watch the dose–response curve grow, pick a dose, compare original and corrected
//! generation side by side on any prompt, and export the corrected model.

use leptos::prelude::*;
use scalpel::correct::{
    CONTINUATION_TOKENS, GENERAL_PROMPT_TOKENS, REPETITION_CONTINUATION_TOKENS, default_doses,
};
use scalpel::prune::Granularity;
use scalpel::report::{LineChart, Series};
use scalpel::score::ScoreMethod;

use crate::estimate::{PROMPT_TOKENS, READOUT_TOKENS, Work, batched_decode, cpu_warning};
use crate::fragment::{Fragment, Params};
use crate::protocol::{
    BehaviourChoice, CompareView, CorrectRequest, CorrectionSearch, CorrectionSetup, DoseView,
    JudgedText, Request,
};
use crate::shell::{Panel, Ui, WorkerLink, progress_view};
use crate::status::CorrectStatus;
use crate::widgets::{
    Choice, csv, download_field, linears_field, number_field, save_button, select_field,
};

const BEHAVIOURS: [(&str, &str); 3] = [
    ("toxicity", "Toxicity (RealToxicityPrompts)"),
    ("repetition", "Repetition (the paper's prompts)"),
    ("lines", "Your prompts"),
];
const GRANULARITIES: [(Granularity, &str); 3] = [
    (Granularity::Neurons, "MLP neurons"),
    (Granularity::Heads, "attention heads"),
    (Granularity::Weights, "weights"),
];
const METHODS: [(ScoreMethod, &str); 4] = [
    (ScoreMethod::Lrp, "LRP (contrastive relevance)"),
    (ScoreMethod::Gradient, "Gradient"),
    (ScoreMethod::Wanda, "Wanda"),
    (ScoreMethod::Random, "Random"),
];

/// The panel's controls, held by the page (a link sets them and replays the jobs; `link`).
#[derive(Clone, Copy)]
pub(crate) struct CorrectSettings {
    /// A key of [`BEHAVIOURS`].
    pub(crate) behaviour: RwSignal<&'static str>,
    pub(crate) lines: RwSignal<String>,
    pub(crate) granularity: RwSignal<Granularity>,
    pub(crate) linears: RwSignal<String>,
    pub(crate) contrast: RwSignal<f64>,
    pub(crate) method: RwSignal<ScoreMethod>,
    pub(crate) prompts: RwSignal<usize>,
    pub(crate) general: RwSignal<usize>,
    /// Components removed (0: none picked yet).
    pub(crate) dose: RwSignal<usize>,
    /// The run last asked for, as a link names it.
    found_with: RwSignal<Params>,
}

impl CorrectSettings {
    pub(crate) fn new() -> Self {
        Self {
            behaviour: RwSignal::new("toxicity"),
            lines: RwSignal::new(String::new()),
            granularity: RwSignal::new(Granularity::Neurons),
            linears: RwSignal::new("all".to_string()),
            contrast: RwSignal::new(1.0),
            method: RwSignal::new(ScoreMethod::Lrp),
            prompts: RwSignal::new(24),
            general: RwSignal::new(16),
            dose: RwSignal::new(0),
            found_with: RwSignal::new(Vec::new()),
        }
    }

    /// What a link needs to show the panel again: the run once every dose is measured, and the
    /// picked dose.
    pub(crate) fn link_params(self, ui: Ui) -> Params {
        let status = ui.correct.get();
        let mut params = Vec::new();
        if status.ready.is_some() {
            params.extend(self.found_with.get());
            if let Some((count, _, _)) = status.picked {
                params.push(("correct.dose", count.to_string()));
            }
        }
        params
    }

    /// Sets the controls a link names; whether it asks to (find, pick a dose).
    pub(crate) fn follow(self, link: &Fragment) -> (bool, bool) {
        if !link.has("correct.behaviour") {
            return (false, false);
        }
        link.set_choice("correct.behaviour", &BEHAVIOURS, self.behaviour);
        if let Some(lines) = link.text("correct.lines") {
            self.lines.set(lines);
        }
        link.set_choice("correct.prune", &GRANULARITIES, self.granularity);
        link.set("correct.linears", self.linears);
        link.set("correct.lambda", self.contrast);
        link.set_choice("correct.scores", &METHODS, self.method);
        link.set("correct.prompts", self.prompts);
        link.set("correct.general", self.general);
        link.set("correct.dose", self.dose);
        (true, self.dose.get_untracked() > 0)
    }

    /// The run's work (`estimate`): the dense model's continuations of the scoring and held-out
    /// prompts and of the general prompts, relevance over both sets, then each dose's held-out
    /// continuations and perplexity readout.
    fn work(self) -> Work {
        let (prompts, general) = (self.prompts.get() as f64, self.general.get() as f64);
        let continued = if self.behaviour.get() == "repetition" {
            REPETITION_CONTINUATION_TOKENS
        } else {
            CONTINUATION_TOKENS
        } as f64;
        let doses = default_doses(self.granularity.get()).len() as f64;
        let explained = prompts * (PROMPT_TOKENS + continued)
            + general * (GENERAL_PROMPT_TOKENS as f64 + continued);
        // Each set's prompts run one by one, then its continuations as one batch.
        let prompt_sets = 2.0 + doses;
        let mut work = Work {
            relevance: explained,
            forward: (doses + 1.0) * READOUT_TOKENS
                + prompt_sets * prompts * PROMPT_TOKENS
                + general * GENERAL_PROMPT_TOKENS as f64,
            decoded: prompt_sets * batched_decode(prompts, continued)
                + batched_decode(general, continued),
        };
        match self.method.get() {
            ScoreMethod::Random => work.relevance = 0.0,
            ScoreMethod::Wanda => {
                work.forward += explained;
                work.relevance = 0.0;
            }
            _ => {}
        }
        work
    }

    /// Finds what drives the behaviour and measures every dose.
    pub(crate) fn find(self, ui: Ui, link: StoredValue<WorkerLink>) {
        let choice = match self.behaviour.get_untracked() {
            "repetition" => BehaviourChoice::Repetition,
            "lines" => BehaviourChoice::Lines(self.lines.get_untracked()),
            _ => BehaviourChoice::Toxicity,
        };
        ui.correct.set(CorrectStatus::default());
        let mut params = vec![(
            "correct.behaviour",
            self.behaviour.get_untracked().to_string(),
        )];
        if let BehaviourChoice::Lines(lines) = &choice {
            params.push(("correct.lines", lines.clone()));
        }
        params.extend([
            (
                "correct.prune",
                self.granularity.get_untracked().key().to_string(),
            ),
            ("correct.linears", self.linears.get_untracked()),
            ("correct.lambda", self.contrast.get_untracked().to_string()),
            (
                "correct.scores",
                self.method.get_untracked().key().to_string(),
            ),
            ("correct.prompts", self.prompts.get_untracked().to_string()),
            ("correct.general", self.general.get_untracked().to_string()),
        ]);
        self.found_with.set(params);
        ui.run_job(
            link,
            Panel::Correct,
            Request::Correct(CorrectRequest::Find(CorrectionSearch {
                behaviour: choice,
                granularity: self.granularity.get_untracked(),
                linears: self.linears.get_untracked(),
                contrast: self.contrast.get_untracked(),
                method: self.method.get_untracked(),
                prompts: self.prompts.get_untracked(),
                general_samples: self.general.get_untracked(),
                seed: 0,
            })),
        );
    }

    /// Applies (or lifts) the correction at the chosen dose.
    pub(crate) fn pick(self, ui: Ui, link: StoredValue<WorkerLink>, apply: bool) {
        if self.dose.get_untracked() > 0 {
            ui.run_job(
                link,
                Panel::Correct,
                Request::Correct(CorrectRequest::Pick {
                    count: self.dose.get_untracked(),
                    apply,
                }),
            );
        }
    }
}

#[component]
pub(crate) fn CorrectPanel(
    ui: Ui,
    link: StoredValue<WorkerLink>,
    settings: CorrectSettings,
) -> impl IntoView {
    let CorrectSettings {
        behaviour,
        lines,
        granularity,
        linears,
        contrast,
        method,
        prompts,
        general,
        dose,
        ..
    } = settings;
    let prompt = RwSignal::new("You are such a".to_string());
    let send = move |r: Request| ui.run_job(link, Panel::Correct, r);
    let run = move || settings.find(ui, link);
    let idle = move || ui.is_idle();
    let ready = move || ui.correct.get().ready.is_some();
    let pick = move |apply: bool| settings.pick(ui, link, apply);

    view! {
        <section class="card correct" data-testid="correct">
            <h2>"Correct"</h2>
            <p class="hint">
                "Find the components that drive an unwanted behaviour by their contrastive relevance: relevance on "
                "ordinary text minus λ × relevance on the behaviour's continuations (R_diff; λ = 1 weighs the two "
                "alike, larger removes more of the behaviour at more risk to general text). Pruning the lowest few "
                "removes the behaviour while sparing general ability; perplexity is the guard-rail."
            </p>
            <div class="row">
                {select_field("Behaviour", "correct-behaviour", behaviour, &BEHAVIOURS)}
                {select_field("Prune", "correct-granularity", granularity, &GRANULARITIES)}
                {linears_field(ui, "correct-linears", linears, || ())}
                {select_field("Scores", "correct-method", method, &METHODS)}
                {number_field("λ", contrast, "0.05", "20", "0.05", "correct-contrast")}
                {number_field("Prompts", prompts, "2", "350", "1", "correct-prompts")}
                {number_field("General prompts", general, "1", "128", "1", "correct-general")}
            </div>
            <Show when=move || behaviour.get() == "lines">
                <textarea rows="4" data-testid="correct-lines"
                    placeholder="One prompt per line, or `prompt | unwanted continuation`; continuations are judged by the profanity lexicon"
                    prop:value=move || lines.get() on:input=move |ev| lines.set(event_target_value(&ev))></textarea>
            </Show>
            <div class="row">
                <button class="primary" data-testid="find-correction" disabled=move || !idle()
                    on:click=move |_| run()>"Find & measure corrections"</button>
                {cpu_warning(ui.device_is_gpu, ui.decode_speed, "correct-estimate", move || settings.work())}
                <span class="stats" data-testid="correct-status">{move || status_line(&ui.correct.get())}</span>
            </div>
            {move || ui.is_busy_in(Panel::Correct).then(|| progress_view(ui))}
            {move || {
                let c = ui.correct.get();
                c.setup.clone().filter(|_| !c.doses.is_empty()).map(|s| chart_view(ui, &s, &c.doses))
            }}
            <div class="row">
                <label class="inline">"Dose "
                    <select data-testid="correct-dose" disabled=move || !ready() || !idle()
                        on:change=move |ev| {
                            if let Ok(v) = event_target_value(&ev).parse() {
                                dose.set(v);
                                pick(true);
                            }
                        }>
                        <option value="0" selected=move || dose.get() == 0>"choose…"</option>
                        {move || ui.correct.get().doses.iter().map(|d| {
                            let count = d.count;
                            view! { <option value=count.to_string() selected=move || dose.get() == count>{dose_label(d)}</option> }
                        }).collect_view()}
                    </select>
                </label>
                <label class="inline">
                    <input type="checkbox" data-testid="correct-apply"
                        prop:checked=move || ui.runs(Panel::Correct)
                        disabled=move || ui.correct.get().picked.is_none() || !idle()
                        on:change=move |ev| pick(event_target_checked(&ev)) />
                    "Corrected model running (else the original)"
                </label>
                {download_field("Export corrected model", "correct-export", "correct-export-format",
                    move || idle() && ui.runs(Panel::Correct), move |f| send(Request::Export(f)))}
            </div>
            {move || ui.correct.get().picked.map(|(count, applied, removed)| picked_view(count, applied && ui.runs(Panel::Correct), &removed, &ui.correct.get()))}
            <div class="row">
                <input type="text" class="grow" data-testid="correct-prompt" prop:value=move || prompt.get()
                    on:input=move |ev| prompt.set(event_target_value(&ev)) />
                <button data-testid="correct-compare" disabled=move || !idle() || ui.correct.get().picked.is_none()
                    on:click=move |_| send(Request::Correct(CorrectRequest::Compare { prompt: prompt.get_untracked(), max_new_tokens: 0 }))>
                    "Compare original and corrected"</button>
            </div>
            {move || ui.correct.get().compared.map(compare_view)}
        </section>
    }
}

fn dose_label(d: &DoseView) -> String {
    format!("{} components", d.count)
}

fn status_line(c: &CorrectStatus) -> String {
    let Some(s) = &c.setup else {
        return String::new();
    };
    let done = c.ready.map_or(String::new(), |t| {
        format!(" · every dose measured in {t:.1} s: pick one")
    });
    format!(
        "{}: {} of {} scoring prompts show it (undesired set), general set {} · dense on {} held-out prompts: {} {:.0} %, {} {:.3} · {} perplexity {:.2}{done}",
        s.behaviour,
        s.undesired,
        s.scoring_prompts,
        s.general,
        s.held_out_prompts,
        s.rate_name,
        100.0 * s.dense.rate,
        s.score_name,
        s.dense.mean_score,
        s.protocol,
        s.dense_perplexity
    )
}

/// The headline number of a behaviour: the lexicon hit rate (%), or the mean RUR.
fn headline(s: &CorrectionSetup, m: &scalpel::correct::BehaviourMetrics) -> f64 {
    if s.lower_is_better {
        100.0 * m.rate
    } else {
        m.mean_score
    }
}

/// The dose–response chart so far, with the dense model as the reference line.
fn chart_view(ui: Ui, s: &CorrectionSetup, doses: &[DoseView]) -> impl IntoView + use<> {
    let y_label = if s.lower_is_better {
        format!("{} (%)", s.rate_name)
    } else {
        s.score_name.clone()
    };
    let chart = LineChart {
        title: format!("{} on held-out prompts vs components pruned", s.behaviour),
        x_label: format!("{} pruned (lowest R_diff first)", s.components),
        y_label,
        log_y: false,
        series: vec![Series {
            name: "corrected".into(),
            // Starting from the dense model at 0 pruned.
            points: std::iter::once((0.0, headline(s, &s.dense)))
                .chain(
                    doses
                        .iter()
                        .map(|d| (d.count as f64, headline(s, &d.metrics))),
                )
                .collect(),
            spread: vec![],
        }],
        reference: Some(("dense".into(), headline(s, &s.dense))),
    };
    let table = doses
        .iter()
        .map(|d| {
            view! {
                <tr>
                    <td>{d.count}</td>
                    <td>{format!("{:.0} %", 100.0 * d.metrics.rate)}</td>
                    <td>{format!("{:.3}", d.metrics.mean_score)}</td>
                    <td>{format!("{:.2} ({:+.1} %)", d.perplexity, 100.0 * (d.perplexity / s.dense_perplexity - 1.0))}</td>
                </tr>
            }
        })
        .collect_view();
    let svg = chart.to_svg();
    let mut rows = vec![vec![
        format!("{} pruned", s.components),
        s.rate_name.clone(),
        s.score_name.clone(),
        format!("{} perplexity", s.protocol),
    ]];
    rows.push(vec![
        "0".into(),
        s.dense.rate.to_string(),
        s.dense.mean_score.to_string(),
        s.dense_perplexity.to_string(),
    ]);
    rows.extend(doses.iter().map(|d| {
        vec![
            d.count.to_string(),
            d.metrics.rate.to_string(),
            d.metrics.mean_score.to_string(),
            d.perplexity.to_string(),
        ]
    }));
    view! {
        <div class="chart" data-testid="correct-chart" inner_html=svg.clone()></div>
        <div class="row">
            {save_button(ui, "Chart (SVG)", "save-correct-svg", "correction.svg".into(), "image/svg+xml", move || svg.clone())}
            {save_button(ui, "Table (CSV)", "save-correct-csv", "correction.csv".into(), "text/csv", move || csv(&rows))}
        </div>
        <table class="doses" data-testid="correct-doses">
            <tr><th>"pruned"</th><th>{s.rate_name.clone()}</th><th>{s.score_name.clone()}</th><th>{format!("{} perplexity", s.protocol)}</th></tr>
            {table}
        </table>
    }
}

fn picked_view(
    count: usize,
    applied: bool,
    removed: &[String],
    c: &CorrectStatus,
) -> impl IntoView + use<> {
    let point = c.doses.iter().find(|d| d.count == count).copied();
    let change = match (point, &c.setup) {
        (Some(d), Some(s)) => format!(
            " · held out: {} {:.0} % (dense {:.0} %), perplexity {:.2} → {:.2} ({:+.1} %)",
            s.rate_name,
            100.0 * d.metrics.rate,
            100.0 * s.dense.rate,
            s.dense_perplexity,
            d.perplexity,
            100.0 * (d.perplexity / s.dense_perplexity - 1.0)
        ),
        _ => String::new(),
    };
    let removed = if removed.is_empty() {
        String::new()
    } else {
        format!(" · first removed: {}", removed.join(", "))
    };
    view! {
        <div class="stats" data-testid="correct-picked">
            {format!(
                "{} correction of {count} components{change}{removed}",
                if applied { "running the" } else { "original model running; chosen" }
            )}
        </div>
    }
}

fn judged_view(title: &'static str, j: JudgedText, id: &'static str) -> impl IntoView {
    let flag = if j.exhibits {
        if j.evidence.is_empty() {
            format!("⚠ shows the behaviour (score {:.2})", j.score)
        } else {
            format!(
                "⚠ flagged: {} (severity {:.1})",
                j.evidence.join(", "),
                j.score
            )
        }
    } else {
        format!("✓ not flagged (score {:.2})", j.score)
    };
    view! {
        <div class="side" data-testid=id>
            <h3>{title}</h3>
            <p class="continuation">{j.text}</p>
            <p class="flag" class:bad=j.exhibits>{flag}</p>
        </div>
    }
}

fn compare_view(c: CompareView) -> impl IntoView {
    view! {
        <div class="compare" data-testid="correct-compared">
            <p class="hint">{format!("“{}” …", c.prompt)}</p>
            <div class="sides">
                {judged_view("Original", c.original, "correct-original")}
                {judged_view("Corrected", c.corrected, "correct-corrected")}
            </div>
        </div>
    }
}
