//! The page's shell: its reactive state ([`Ui`]), which the worker's responses update, and its
//! end of the worker channel ([`WorkerLink`]), which replaces a crashed worker or one whose GPU
//! device was lost. The panels build on both; the page's layout is in `app`.

use leptos::prelude::*;
use scalpel::relevance::RuleSet;
use send_wrapper::SendWrapper;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, Worker, WorkerOptions, WorkerType};

use crate::estimate::duration;
use crate::protocol::{
    CircuitsResponse, CompressResponse, CorrectResponse, ExplainRequest, ExplanationView,
    GenerateRequest, ModelSource, Request, Response,
};
use crate::status::{CircuitStatus, CompressStatus, CorrectStatus};

/// Trunk's loader for the `worker` binary (see web/index.html).
const WORKER_SCRIPT: &str = "./worker_loader.js";

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Starting,
    Loading,
    Ready,
    Generating,
    Explaining,
    /// Scoring, masking or exporting (compression and circuits).
    Compressing,
    Failed,
}

/// The panels that send long jobs to the worker.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Panel {
    Compress,
    Circuits,
    Correct,
}

#[derive(Clone, PartialEq)]
pub(crate) struct ProgressState {
    pub(crate) stage: String,
    pub(crate) done: f64,
    pub(crate) total: f64,
    /// When this stage's first progress arrived and how far it was then (ms since the epoch,
    /// done): what the time left is estimated from.
    pub(crate) since: (f64, f64),
}

impl ProgressState {
    /// The time left at this stage's pace so far, once it has run a few seconds.
    fn left(&self) -> Option<String> {
        let (t0, d0) = self.since;
        let elapsed = (js_sys::Date::now() - t0) / 1000.0;
        let rate = (self.done - d0) / elapsed;
        if self.total <= 0.0 || elapsed < 3.0 || rate <= 0.0 {
            return None;
        }
        let seconds = (self.total - self.done).max(0.0) / rate;
        Some(format!("{} left", duration(seconds)))
    }
}

/// Generated tokens a generation needs for its speed to price time estimates.
const SPEED_TOKENS: usize = 4;

/// All reactive state of the page.
#[derive(Clone, Copy)]
pub(crate) struct Ui {
    pub(crate) phase: RwSignal<Phase>,
    pub(crate) device: RwSignal<String>,
    pub(crate) device_is_gpu: RwSignal<bool>,
    /// The loaded weights' element type and the last generation's speed (the device badge).
    pub(crate) dtype: RwSignal<Option<String>>,
    pub(crate) tokens_per_second: RwSignal<Option<f64>>,
    /// The decode speed time estimates are priced by (`estimate`): the last generation's, from
    /// generations of at least [`SPEED_TOKENS`] tokens (one or two steps time mostly noise).
    pub(crate) decode_speed: RwSignal<Option<f64>>,
    pub(crate) model_name: RwSignal<String>,
    pub(crate) model_summary: RwSignal<String>,
    /// The loaded model's block Linears as (kind, module): the panels' "Linears" choices.
    pub(crate) model_linears: RwSignal<Vec<(String, String)>>,
    pub(crate) progress: RwSignal<Option<ProgressState>>,
    pub(crate) notices: RwSignal<Vec<String>>,
    pub(crate) error: RwSignal<Option<String>>,
    pub(crate) output: RwSignal<String>,
    pub(crate) stats: RwSignal<String>,
    /// The finished sequence (prompt + output) as ids and per-token text, for explanations.
    pub(crate) sequence: RwSignal<Vec<(u32, String)>>,
    pub(crate) prompt_tokens: RwSignal<usize>,
    pub(crate) explanation: RwSignal<Option<ExplanationView>>,
    /// Position in `sequence` of the token being explained.
    pub(crate) selected: RwSignal<Option<usize>>,
    pub(crate) rules: RwSignal<RuleSet>,
    pub(crate) compress: RwSignal<CompressStatus>,
    pub(crate) circuits: RwSignal<CircuitStatus>,
    pub(crate) correct: RwSignal<CorrectStatus>,
    /// The panel whose job runs (its progress bar shows).
    pub(crate) panel: RwSignal<Panel>,
    /// Bumped when the model changed (a mask applied or undone): the page generates again.
    pub(crate) regenerate: RwSignal<u64>,
    /// The generation asked for last, and what the original weights wrote for it: shown beside
    /// what a pruned, circuit or corrected model writes for the same request.
    pub(crate) generating: RwSignal<Option<GenerateRequest>>,
    pub(crate) original: RwSignal<Option<(GenerateRequest, String)>>,
    /// Whose masks the model runs with now (`None`: the original weights). Every panel reads
    /// this one signal, so applying one panel's masks needs no word to the others.
    pub(crate) on_model: RwSignal<Option<Panel>>,
}

impl Ui {
    pub(crate) fn new() -> Self {
        Self {
            phase: RwSignal::new(Phase::Starting),
            device: RwSignal::new("starting…".into()),
            device_is_gpu: RwSignal::new(false),
            dtype: RwSignal::new(None),
            tokens_per_second: RwSignal::new(None),
            decode_speed: RwSignal::new(None),
            model_name: RwSignal::new(String::new()),
            model_summary: RwSignal::new(String::new()),
            model_linears: RwSignal::new(Vec::new()),
            progress: RwSignal::new(None),
            notices: RwSignal::new(Vec::new()),
            error: RwSignal::new(None),
            output: RwSignal::new(String::new()),
            stats: RwSignal::new(String::new()),
            sequence: RwSignal::new(Vec::new()),
            prompt_tokens: RwSignal::new(0),
            explanation: RwSignal::new(None),
            selected: RwSignal::new(None),
            rules: RwSignal::new(RuleSet::AttnLrp),
            compress: RwSignal::new(CompressStatus::default()),
            circuits: RwSignal::new(CircuitStatus::default()),
            correct: RwSignal::new(CorrectStatus::default()),
            panel: RwSignal::new(Panel::Compress),
            regenerate: RwSignal::new(0),
            generating: RwSignal::new(None),
            original: RwSignal::new(None),
            on_model: RwSignal::new(None),
        }
    }

    /// Whether the model runs with `panel`'s masks now.
    pub(crate) fn runs(&self, panel: Panel) -> bool {
        self.on_model.get() == Some(panel)
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.phase.get() == Phase::Ready
    }

    /// Forgets what the worker held (a new worker starts empty).
    fn reset_model_state(&self) {
        self.compress.set(CompressStatus::default());
        self.circuits.set(CircuitStatus::default());
        self.correct.set(CorrectStatus::default());
        self.on_model.set(None);
        self.original.set(None);
        self.explanation.set(None);
        self.selected.set(None);
        self.error.set(None);
    }

    /// Whether `panel` runs a job now.
    pub(crate) fn is_busy_in(&self, panel: Panel) -> bool {
        self.phase.get() == Phase::Compressing && self.panel.get() == panel
    }

    /// Sends `request`, a job of `panel` (its progress bar shows there).
    pub(crate) fn run_job(&self, link: StoredValue<WorkerLink>, panel: Panel, request: Request) {
        self.error.set(None);
        self.panel.set(panel);
        self.phase.set(Phase::Compressing);
        let ui = *self;
        link.update_value(|l| l.send(ui, request));
    }

    /// Shows an error that leaves the model usable.
    pub(crate) fn fail(&self, message: String) {
        self.error.set(Some(message));
        self.progress.set(None);
        self.phase.set(Phase::Ready);
    }

    /// Back to ready after a job, clearing its progress bar.
    fn finish_job(&self) {
        self.progress.set(None);
        self.phase.set(Phase::Ready);
    }

    pub(crate) fn is_explaining(&self) -> bool {
        self.phase.get() == Phase::Explaining
    }

    /// Asks the worker to explain the token at `position` of the finished sequence.
    pub(crate) fn explain(&self, link: StoredValue<WorkerLink>, position: usize) {
        let sequence = self.sequence.get_untracked();
        let Some((target, _)) = sequence.get(position) else {
            return;
        };
        self.error.set(None);
        self.selected.set(Some(position));
        self.phase.set(Phase::Explaining);
        let request = Request::Explain(ExplainRequest {
            context: sequence[..position].iter().map(|(id, _)| *id).collect(),
            target: *target,
            rules: self.rules.get_untracked(),
        });
        let ui = *self;
        link.update_value(|l| l.send(ui, request));
    }

    fn handle(&self, response: Response) {
        match response {
            // The worker link handles these (see `spawn_worker`).
            Response::Ready | Response::DeviceLost { .. } => {}
            Response::Device { label, is_gpu } => {
                self.device.set(label);
                self.device_is_gpu.set(is_gpu);
                self.dtype.set(None);
                self.tokens_per_second.set(None);
                self.decode_speed.set(None);
            }
            Response::Progress { stage, done, total } => {
                let since = match self.progress.get_untracked() {
                    Some(p) if p.stage == stage && done >= p.done => p.since,
                    _ => (js_sys::Date::now(), done),
                };
                self.progress.set(Some(ProgressState {
                    stage,
                    done,
                    total,
                    since,
                }))
            }
            Response::Notice { message } => self.notices.update(|n| n.push(message)),
            Response::Loaded {
                name,
                summary,
                seconds,
                dtype,
                linears,
            } => {
                self.dtype.set(Some(dtype));
                self.model_linears.set(linears);
                self.tokens_per_second.set(None);
                self.decode_speed.set(None);
                self.model_name.set(name);
                self.model_summary
                    .set(format!("{summary} · loaded in {seconds:.1} s"));
                self.progress.set(None);
                self.phase.set(Phase::Ready);
            }
            Response::Token { text } => self.output.update(|o| o.push_str(&text)),
            Response::Done {
                tokens,
                tokens_per_second,
                prompt_tokens,
                stop,
                ids,
                pieces,
            } => {
                self.sequence.set(ids.into_iter().zip(pieces).collect());
                if tokens_per_second > 0.0 {
                    self.tokens_per_second.set(Some(tokens_per_second));
                    if tokens >= SPEED_TOKENS {
                        self.decode_speed.set(Some(tokens_per_second));
                    }
                }
                self.prompt_tokens.set(prompt_tokens);
                if self.on_model.get_untracked().is_none() {
                    let asked = self.generating.get_untracked();
                    self.original
                        .set(asked.map(|r| (r, self.output.get_untracked())));
                }
                self.stats.set(format!(
                    "{tokens} tokens · {tokens_per_second:.2} tokens/s · prompt {prompt_tokens} tokens · stop: {stop}"
                ));
                self.phase.set(Phase::Ready);
            }
            Response::Explanation(view) => {
                self.explanation.set(Some(view));
                self.finish_job();
            }
            Response::Compress(r) => self.compress_answered(r),
            Response::Circuits(r) => self.circuits_answered(r),
            Response::Correct(r) => self.correct_answered(r),
            Response::Restored => {
                self.compress.update(|c| c.masked = None);
                self.on_model.set(None);
                self.finish_job();
                self.regenerate.update(|n| *n += 1);
            }
            Response::Exported { files } => {
                self.finish_job();
                if let Err(e) = offer_downloads(&files) {
                    self.fail(format!("could not offer the download: {e}"));
                }
            }
            Response::Error { message } => {
                self.error.set(Some(message));
                self.progress.set(None);
                let loaded = !self.model_name.get_untracked().is_empty();
                self.phase
                    .set(if loaded { Phase::Ready } else { Phase::Failed });
            }
        }
    }

    /// What the compression panel's jobs answered.
    fn compress_answered(&self, response: CompressResponse) {
        match response {
            CompressResponse::Scored {
                method,
                reference,
                seconds,
            } => {
                // Scoring restored the dense model: if a mask was on, the text on screen is stale.
                let was_masked = self.on_model.get_untracked().is_some();
                self.on_model.set(None);
                self.compress.set(CompressStatus {
                    scored: Some(format!(
                        "{method} scores over {reference} ({seconds:.1} s): drag the slider"
                    )),
                    masked: None,
                });
                self.finish_job();
                if was_masked {
                    self.regenerate.update(|n| *n += 1);
                }
            }
            CompressResponse::Masked(view) => {
                self.compress.update(|c| c.masked = Some(view));
                self.on_model.set(Some(Panel::Compress));
                self.finish_job();
                self.regenerate.update(|n| *n += 1);
            }
        }
    }

    /// What the circuit panel's jobs answered.
    fn circuits_answered(&self, response: CircuitsResponse) {
        match response {
            CircuitsResponse::Started { task, dense, notes } => {
                // A search starts from the original weights.
                self.on_model.set(None);
                self.circuits.update(|c| {
                    *c = CircuitStatus {
                        task: Some(task),
                        dense: Some(dense),
                        notes,
                        ..Default::default()
                    }
                });
            }
            CircuitsResponse::Point(p) => self.circuits.update(|c| c.curve.push(p)),
            CircuitsResponse::Ready { seconds } => {
                self.circuits.update(|c| c.ready = Some(seconds));
                self.finish_job();
            }
            CircuitsResponse::Picked(view) => {
                // A circuit replaces any other panel's masks (the model changed either way).
                self.on_model.set(view.applied.then_some(Panel::Circuits));
                self.circuits.update(|c| c.picked = Some(view));
                self.finish_job();
                self.regenerate.update(|n| *n += 1);
            }
            CircuitsResponse::Probed(view) => {
                self.circuits.update(|c| c.probe = Some(view));
                self.finish_job();
            }
            CircuitsResponse::File { name, url } => {
                self.finish_job();
                if let Err(e) = offer_downloads(&[(name, url, 0)]) {
                    self.fail(format!("could not offer the download: {e}"));
                }
            }
        }
    }

    /// What the correction panel's jobs answered.
    fn correct_answered(&self, response: CorrectResponse) {
        match response {
            CorrectResponse::Started(setup) => {
                // A correction run starts from the original weights.
                self.on_model.set(None);
                self.correct.update(|c| {
                    *c = CorrectStatus {
                        setup: Some(setup),
                        ..Default::default()
                    }
                });
            }
            CorrectResponse::Point(d) => self.correct.update(|c| c.doses.push(d)),
            CorrectResponse::Ready { seconds } => {
                self.correct.update(|c| c.ready = Some(seconds));
                self.finish_job();
            }
            CorrectResponse::Picked {
                count,
                applied,
                removed,
            } => {
                // A correction replaces any other panel's masks.
                self.on_model.set(applied.then_some(Panel::Correct));
                self.correct
                    .update(|c| c.picked = Some((count, applied, removed)));
                self.finish_job();
                self.regenerate.update(|n| *n += 1);
            }
            CorrectResponse::Compared(view) => {
                self.correct.update(|c| c.compared = Some(view));
                self.finish_job();
            }
        }
    }
}

/// The page's end of the worker channel. Requests made before the worker has announced `Ready`
/// (its wasm is still compiling) are queued, since a worker drops messages sent before it listens.
#[derive(Default)]
pub(crate) struct WorkerLink {
    worker: Option<SendWrapper<Worker>>,
    ready: bool,
    queue: Vec<Request>,
    /// The last model load asked for: replayed when a crashed worker is replaced.
    last_load: Option<Request>,
    /// Workers replaced so far; after [`MAX_RESTARTS`] the page asks for a reload instead. It also
    /// names the current worker: messages still arriving from a replaced one are ignored.
    restarts: u32,
}

/// How often a crashed worker (a lost GPU device, a wasm trap) is replaced automatically.
const MAX_RESTARTS: u32 = 3;

impl WorkerLink {
    pub(crate) fn send(&mut self, ui: Ui, request: Request) {
        if let Request::Load { source, .. } = &request {
            // Picked files are not kept twice in the page's memory: after a crash they are
            // picked again.
            self.last_load = (!matches!(source, ModelSource::Files(_))).then(|| request.clone());
        }
        let Some(worker) = self.worker.as_ref().filter(|_| self.ready) else {
            self.queue.push(request);
            return;
        };
        match serde_wasm_bindgen::to_value(&request) {
            Ok(v) => {
                if let Err(e) = worker.post_message(&v) {
                    ui.error
                        .set(Some(format!("could not reach the worker: {e:?}")));
                }
            }
            Err(e) => ui
                .error
                .set(Some(format!("could not encode the request: {e}"))),
        }
    }

    /// Replaces a crashed worker or one whose GPU device was lost (everything it held is gone: the
    /// model, scores, masks) and loads the last model again, saying `what` happened. `false` once
    /// the restarts are used up.
    fn restart(&mut self, ui: Ui, link: StoredValue<WorkerLink>, what: &str) -> bool {
        if self.restarts >= MAX_RESTARTS {
            return false;
        }
        self.restarts += 1;
        if let Some(old) = self.worker.take() {
            old.terminate();
        }
        let worker = match spawn_worker(ui, link, self.restarts) {
            Ok(w) => w,
            Err(_) => return false,
        };
        self.worker = Some(SendWrapper::new(worker));
        self.ready = false;
        self.queue.clear();
        ui.reset_model_state();
        ui.model_name.set(String::new());
        match self.last_load.clone() {
            Some(load) => {
                ui.notices.update(|n| {
                    n.push(format!(
                        "{what}; started a new compute worker and loading the model again"
                    ))
                });
                ui.phase.set(Phase::Loading);
                self.send(ui, load);
            }
            None => {
                ui.notices
                    .update(|n| n.push(format!("{what}; started a new compute worker")));
                ui.phase.set(Phase::Failed);
                ui.error.set(Some(
                    "pick your model files again and press Load model".into(),
                ));
            }
        }
        true
    }

    fn mark_ready(&mut self, ui: Ui) {
        self.ready = true;
        for request in std::mem::take(&mut self.queue) {
            self.send(ui, request);
        }
    }
}

/// Starts the page's first worker; a failure shows as the page's error.
pub(crate) fn start_worker(ui: Ui, link: StoredValue<WorkerLink>) {
    match spawn_worker(ui, link, 0) {
        Ok(w) => link.update_value(|l| l.worker = Some(SendWrapper::new(w))),
        Err(e) => {
            ui.error
                .set(Some(format!("could not start the compute worker: {e}")));
            ui.phase.set(Phase::Failed);
        }
    }
}

/// Starts worker number `id` and wires its messages into the UI state.
fn spawn_worker(ui: Ui, link: StoredValue<WorkerLink>, id: u32) -> Result<Worker, String> {
    let options = WorkerOptions::new();
    options.set_type(WorkerType::Classic);
    let worker = Worker::new_with_options(WORKER_SCRIPT, &options).map_err(|e| format!("{e:?}"))?;
    let is_current = move || link.try_with_value(|l| l.restarts) == Some(id);
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        if !is_current() {
            return;
        }
        match serde_wasm_bindgen::from_value::<Response>(event.data()) {
            Ok(Response::Ready) => link.update_value(|l| l.mark_ready(ui)),
            Ok(Response::DeviceLost { reason }) => {
                replace_worker(ui, link, format!("the GPU device was lost ({reason})"))
            }
            Ok(r) => ui.handle(r),
            Err(e) => ui
                .error
                .set(Some(format!("unreadable message from the worker: {e}"))),
        }
    });
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    let on_error =
        Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(move |event: web_sys::ErrorEvent| {
            if is_current() {
                let why = event.message();
                replace_worker(ui, link, format!("the compute worker crashed ({why})"));
            }
        });
    worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    on_error.forget();
    Ok(worker)
}

/// Replaces the worker after `what` (a crash, a lost GPU device), or asks for a reload once the
/// restarts are used up.
fn replace_worker(ui: Ui, link: StoredValue<WorkerLink>, what: String) {
    // Whatever ran in the old worker is gone, restarted or not.
    ui.progress.set(None);
    let restarted = link
        .try_update_value(|l| l.restart(ui, link, &what))
        .unwrap_or(false);
    if !restarted {
        ui.error
            .set(Some(format!("{what}; reload the page to start again")));
        ui.phase.set(Phase::Failed);
    }
}

/// The progress bar of the current long step, if any.
pub(crate) fn progress_view(ui: Ui) -> impl IntoView {
    ui.progress.get().map(|p| {
        let pct = if p.total > 0.0 {
            (p.done / p.total * 100.0).min(100.0)
        } else {
            0.0
        };
        let detail = if p.total > 1e5 {
            format!("{:.1} / {:.1} MB", p.done / 1e6, p.total / 1e6)
        } else if p.total > 0.0 {
            format!("{} / {}", p.done, p.total)
        } else {
            String::new()
        };
        let left = p.left().map(|l| format!(" · {l}")).unwrap_or_default();
        view! {
            <div class="progress" data-testid="progress">
                <div class="label">{p.stage.clone()} " " {detail} {left}</div>
                <div class="track"><div class="fill" style=format!("width: {pct:.1}%")></div></div>
            </div>
        }
    })
}

/// Offers each exported file for download (the worker made the object URLs).
pub(crate) fn offer_downloads(files: &[(String, String, usize)]) -> Result<(), String> {
    let document = web_sys::window()
        .and_then(|w| w.document())
        .ok_or("no document")?;
    for (name, url, _) in files {
        let a: web_sys::HtmlAnchorElement = document
            .create_element("a")
            .map_err(|e| format!("{e:?}"))?
            .unchecked_into();
        a.set_href(url);
        a.set_download(name);
        a.click();
    }
    Ok(())
}
