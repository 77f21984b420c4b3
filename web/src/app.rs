//! The page (Leptos, client-side rendered). It holds no tensors: every job goes to the worker.

use leptos::prelude::*;
use send_wrapper::SendWrapper;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{HtmlInputElement, MessageEvent, Worker, WorkerOptions, WorkerType};

use crate::circuit_view::{CircuitPanel, CircuitStatus};
use crate::compress_view::{CompressPanel, offer_downloads};
use crate::correct_view::{CorrectPanel, CorrectStatus};
use crate::explain_view::ExplainPanel;
use crate::protocol::{
    DEFAULT_MODEL_NAME, DeviceChoice, ExplainRequest, ExplanationView, GenerateRequest, MaskView,
    ModelSource, Request, Response, WeightDtype,
};

/// Trunk's loader for the `worker` binary (see web/index.html).
const WORKER_SCRIPT: &str = "./worker_loader.js";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
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

/// What the compression panel shows.
#[derive(Clone, Default, PartialEq)]
pub(crate) struct CompressStatus {
    /// "lrp scores over c4-16x128 (12.3 s)" once scores are cached in the worker.
    pub(crate) scored: Option<String>,
    pub(crate) masked: Option<MaskView>,
}

#[derive(Clone, PartialEq)]
struct ProgressState {
    stage: String,
    done: f64,
    total: f64,
}

/// All reactive state of the page.
#[derive(Clone, Copy)]
pub(crate) struct Ui {
    phase: RwSignal<Phase>,
    device: RwSignal<String>,
    device_is_gpu: RwSignal<bool>,
    /// The loaded weights' element type and the last generation's speed (the device badge).
    dtype: RwSignal<Option<String>>,
    tokens_per_second: RwSignal<Option<f64>>,
    model_name: RwSignal<String>,
    model_summary: RwSignal<String>,
    progress: RwSignal<Option<ProgressState>>,
    notices: RwSignal<Vec<String>>,
    error: RwSignal<Option<String>>,
    output: RwSignal<String>,
    stats: RwSignal<String>,
    /// The finished sequence (prompt + output) as ids and per-token text, for explanations.
    sequence: RwSignal<Vec<(u32, String)>>,
    prompt_tokens: RwSignal<usize>,
    pub(crate) explanation: RwSignal<Option<ExplanationView>>,
    /// Position in `sequence` of the token being explained.
    pub(crate) selected: RwSignal<Option<usize>>,
    pub(crate) rules: RwSignal<String>,
    pub(crate) compress: RwSignal<CompressStatus>,
    pub(crate) circuits: RwSignal<CircuitStatus>,
    pub(crate) correct: RwSignal<CorrectStatus>,
    /// The panel whose job runs (its progress bar shows).
    pub(crate) panel: RwSignal<Panel>,
    /// Bumped when the model changed (a mask applied or undone): the page generates again.
    regenerate: RwSignal<u64>,
}

impl Ui {
    fn new() -> Self {
        Self {
            phase: RwSignal::new(Phase::Starting),
            device: RwSignal::new("starting…".into()),
            device_is_gpu: RwSignal::new(false),
            dtype: RwSignal::new(None),
            tokens_per_second: RwSignal::new(None),
            model_name: RwSignal::new(String::new()),
            model_summary: RwSignal::new(String::new()),
            progress: RwSignal::new(None),
            notices: RwSignal::new(Vec::new()),
            error: RwSignal::new(None),
            output: RwSignal::new(String::new()),
            stats: RwSignal::new(String::new()),
            sequence: RwSignal::new(Vec::new()),
            prompt_tokens: RwSignal::new(0),
            explanation: RwSignal::new(None),
            selected: RwSignal::new(None),
            rules: RwSignal::new("attnlrp".into()),
            compress: RwSignal::new(CompressStatus::default()),
            circuits: RwSignal::new(CircuitStatus::default()),
            correct: RwSignal::new(CorrectStatus::default()),
            panel: RwSignal::new(Panel::Compress),
            regenerate: RwSignal::new(0),
        }
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.phase.get() == Phase::Ready
    }

    /// Forgets what the worker held (a new worker starts empty).
    fn reset_model_state(&self) {
        self.compress.set(CompressStatus::default());
        self.circuits.set(CircuitStatus::default());
        self.correct.set(CorrectStatus::default());
        self.explanation.set(None);
        self.selected.set(None);
        self.error.set(None);
    }

    /// Whether `panel` runs a job now.
    pub(crate) fn is_busy_in(&self, panel: Panel) -> bool {
        self.phase.get() == Phase::Compressing && self.panel.get() == panel
    }

    /// Marks a job of `panel` as started.
    pub(crate) fn start_job(&self, panel: Panel) {
        self.error.set(None);
        self.panel.set(panel);
        self.phase.set(Phase::Compressing);
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
            }
            Response::Progress { stage, done, total } => {
                self.progress
                    .set(Some(ProgressState { stage, done, total }))
            }
            Response::Notice { message } => self.notices.update(|n| n.push(message)),
            Response::Loaded {
                name,
                summary,
                seconds,
                dtype,
            } => {
                self.dtype.set(Some(dtype));
                self.tokens_per_second.set(None);
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
                }
                self.prompt_tokens.set(prompt_tokens);
                self.stats.set(format!(
                    "{tokens} tokens · {tokens_per_second:.2} tokens/s · prompt {prompt_tokens} tokens · stop: {stop}"
                ));
                self.phase.set(Phase::Ready);
            }
            Response::Explanation(view) => {
                self.explanation.set(Some(view));
                self.finish_job();
            }
            Response::Scored {
                method,
                reference,
                seconds,
            } => {
                // Scoring restored the dense model: if a mask was on, the text on screen is stale.
                let was_masked = self.compress.get_untracked().masked.is_some();
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
            Response::Masked(view) => {
                self.compress.update(|c| c.masked = Some(view));
                self.circuits.update(CircuitStatus::model_changed);
                self.correct.update(CorrectStatus::model_changed);
                self.finish_job();
                self.regenerate.update(|n| *n += 1);
            }
            Response::Restored => {
                self.compress.update(|c| c.masked = None);
                self.circuits.update(CircuitStatus::model_changed);
                self.correct.update(CorrectStatus::model_changed);
                self.finish_job();
                self.regenerate.update(|n| *n += 1);
            }
            Response::Exported { files } => {
                self.finish_job();
                if let Err(e) = offer_downloads(&files) {
                    self.fail(format!("could not offer the download: {e}"));
                }
            }
            Response::CircuitStarted { task, dense, notes } => {
                self.circuits.update(|c| {
                    *c = CircuitStatus {
                        task: Some(task),
                        dense: Some(dense),
                        notes,
                        ..Default::default()
                    }
                });
            }
            Response::CircuitPoint(p) => self.circuits.update(|c| c.curve.push(p)),
            Response::CircuitReady { seconds } => {
                self.circuits.update(|c| c.ready = Some(seconds));
                self.finish_job();
            }
            Response::CircuitPicked(view) => {
                // A circuit replaces any compression mask (the model changed either way).
                self.compress.update(|c| c.masked = None);
                self.correct.update(CorrectStatus::model_changed);
                self.circuits.update(|c| c.picked = Some(view));
                self.finish_job();
                self.regenerate.update(|n| *n += 1);
            }
            Response::Probed(view) => {
                self.circuits.update(|c| c.probe = Some(view));
                self.finish_job();
            }
            Response::CircuitFile { name, url } => {
                self.finish_job();
                if let Err(e) = offer_downloads(&[(name, url, 0)]) {
                    self.fail(format!("could not offer the download: {e}"));
                }
            }
            Response::CorrectStarted(setup) => {
                self.correct.update(|c| {
                    *c = CorrectStatus {
                        setup: Some(setup),
                        ..Default::default()
                    }
                });
            }
            Response::CorrectPoint(d) => self.correct.update(|c| c.doses.push(d)),
            Response::CorrectReady { seconds } => {
                self.correct.update(|c| c.ready = Some(seconds));
                self.finish_job();
            }
            Response::CorrectPicked {
                count,
                applied,
                removed,
            } => {
                // A correction replaces any compression mask or circuit.
                self.compress.update(|c| c.masked = None);
                self.circuits.update(CircuitStatus::model_changed);
                self.correct
                    .update(|c| c.picked = Some((count, applied, removed)));
                self.finish_job();
                self.regenerate.update(|n| *n += 1);
            }
            Response::Compared(view) => {
                self.correct.update(|c| c.compared = Some(view));
                self.finish_job();
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

pub fn mount() {
    leptos::mount::mount_to_body(App);
}

#[component]
fn App() -> impl IntoView {
    let ui = Ui::new();
    let link = StoredValue::new(WorkerLink::default());
    match spawn_worker(ui, link, 0) {
        Ok(w) => link.update_value(|l| l.worker = Some(SendWrapper::new(w))),
        Err(e) => {
            ui.error
                .set(Some(format!("could not start the compute worker: {e}")));
            ui.phase.set(Phase::Failed);
        }
    }
    let send = move |request: Request| link.update_value(|l| l.send(ui, request));

    // Model picker state.
    let source_kind = RwSignal::new("default".to_string());
    let remote = RwSignal::new(String::new());
    let revision = RwSignal::new("main".to_string());
    let device_choice = RwSignal::new(initial_device_choice());
    let dtype_choice = RwSignal::new(initial_dtype_choice());
    let picked_files: RwSignal<Option<SendWrapper<web_sys::FileList>>> = RwSignal::new(None);

    let load = move || {
        ui.error.set(None);
        ui.notices.set(Vec::new());
        ui.phase.set(Phase::Loading);
        ui.model_name.set(String::new());
        let device = device_choice.get_untracked();
        let dtype = dtype_choice.get_untracked();
        match source_kind.get_untracked().as_str() {
            "remote" => send(Request::Load {
                source: ModelSource::Remote {
                    location: remote.get_untracked(),
                    revision: revision.get_untracked(),
                },
                device,
                dtype,
            }),
            "files" => {
                let Some(files) = picked_files.get_untracked() else {
                    ui.error.set(Some(
                        "choose a .gguf file (or config.json, *.safetensors and tokenizer.json)"
                            .into(),
                    ));
                    ui.phase.set(Phase::Failed);
                    return;
                };
                let files = (*files).clone();
                leptos::task::spawn_local(async move {
                    match read_files(&files).await {
                        Ok(list) => send(Request::Load {
                            source: ModelSource::Files(list),
                            device,
                            dtype,
                        }),
                        Err(e) => {
                            ui.error.set(Some(e));
                            ui.phase.set(Phase::Failed);
                        }
                    }
                });
            }
            _ => send(Request::Load {
                source: ModelSource::Default,
                device,
                dtype,
            }),
        }
    };
    // Open with the default model.
    load();

    let prompt = RwSignal::new("The capital of France is".to_string());
    let max_tokens = RwSignal::new(32usize);
    let temperature = RwSignal::new(0.0f32);
    let top_p = RwSignal::new(0.9f32);
    let seed = RwSignal::new(42u64);
    let generate = move || {
        ui.error.set(None);
        ui.output.set(String::new());
        ui.stats.set(String::new());
        ui.sequence.set(Vec::new());
        ui.explanation.set(None);
        ui.selected.set(None);
        ui.phase.set(Phase::Generating);
        let t = temperature.get_untracked();
        send(Request::Generate(GenerateRequest {
            prompt: prompt.get_untracked(),
            max_new_tokens: max_tokens.get_untracked(),
            temperature: t,
            top_p: (t > 0.0).then(|| top_p.get_untracked()),
            top_k: None,
            seed: seed.get_untracked(),
        }));
    };

    // A mask applied or undone: show what the model writes now.
    Effect::new(move |_| {
        if ui.regenerate.get() > 0 && ui.phase.get_untracked() == Phase::Ready {
            generate();
        }
    });

    let busy = move || {
        matches!(
            ui.phase.get(),
            Phase::Loading
                | Phase::Generating
                | Phase::Explaining
                | Phase::Compressing
                | Phase::Starting
        )
    };
    let can_generate = move || ui.phase.get() == Phase::Ready;

    view! {
        <header class="top">
            <div class="brand">
                <span class="logo">"✂"</span>
                <div>
                    <h1>"Scalpel"</h1>
                    <p class="tagline">"Attribution-guided pruning of language models, in your browser"</p>
                </div>
            </div>
            <div class="device" class:gpu=move || ui.device_is_gpu.get() data-testid="device">
                <span class="dot"></span>
                {move || ui.device.get()}
                {move || ui.dtype.get().map(|d| view! { <span class="badge-part" data-testid="dtype">{d}</span> })}
                {move || ui.tokens_per_second.get().map(|t| view! {
                    <span class="badge-part" data-testid="badge-speed">{format!("{t:.1} tokens/s")}</span>
                })}
            </div>
        </header>

        <main>
            <section class="card model">
                <h2>"Model"</h2>
                <div class="current" data-testid="model-name">
                    {move || {
                        let name = ui.model_name.get();
                        if name.is_empty() { "no model loaded".to_string() } else { name }
                    }}
                </div>
                <div class="summary">{move || ui.model_summary.get()}</div>
                <div class="picker">
                    <label>
                        <input type="radio" name="source" value="default" data-testid="source-default"
                            prop:checked=move || source_kind.get() == "default"
                            on:change=move |_| source_kind.set("default".into()) />
                        {DEFAULT_MODEL_NAME}
                    </label>
                    <label>
                        <input type="radio" name="source" value="remote" data-testid="source-remote"
                            prop:checked=move || source_kind.get() == "remote"
                            on:change=move |_| source_kind.set("remote".into()) />
                        "Hugging Face id or .gguf URL"
                    </label>
                    <label>
                        <input type="radio" name="source" value="files" data-testid="source-files"
                            prop:checked=move || source_kind.get() == "files"
                            on:change=move |_| source_kind.set("files".into()) />
                        "Local file(s)"
                    </label>
                </div>
                <Show when=move || source_kind.get() == "remote">
                    <div class="row">
                        <input class="grow" type="text" data-testid="remote-location" placeholder="HuggingFaceTB/SmolLM2-135M or https://…/model.gguf"
                            prop:value=move || remote.get()
                            on:input=move |ev| remote.set(event_target_value(&ev)) />
                        <input class="narrow" type="text" title="revision"
                            prop:value=move || revision.get()
                            on:input=move |ev| revision.set(event_target_value(&ev)) />
                    </div>
                </Show>
                <Show when=move || source_kind.get() == "files">
                    <div class="row">
                        <input type="file" multiple=true accept=".gguf,.json,.safetensors" data-testid="file-input"
                            on:change=move |ev| {
                                let input: HtmlInputElement = event_target(&ev);
                                picked_files.set(input.files().map(SendWrapper::new));
                            } />
                    </div>
                </Show>
                <div class="row">
                    <label class="inline">"Device "
                        <select on:change=move |ev| device_choice.set(parse_device(&event_target_value(&ev)))
                            prop:value=move || device_name(device_choice.get())>
                            <option value="auto">"Auto (WebGPU if available)"</option>
                            <option value="webgpu">"WebGPU"</option>
                            <option value="cpu">"CPU"</option>
                        </select>
                    </label>
                    <label class="inline" title="How the weights are held: auto keeps bf16 and f16 checkpoints 16-bit (as f16) and the rest float32; f16 halves any model's memory at a rounding of about 0.05% per weight (relevance is still computed in float32)">"Weights "
                        <select on:change=move |ev| dtype_choice.set(event_target_value(&ev).parse().unwrap_or_default())
                            prop:value=move || dtype_choice.get().name() data-testid="dtype-choice">
                            <option value="auto">"Auto"</option>
                            <option value="f32">"float32"</option>
                            <option value="f16">"float16"</option>
                        </select>
                    </label>
                    <button on:click=move |_| load() disabled=busy data-testid="load">"Load model"</button>
                    <button on:click=move |_| send(Request::ClearCache) disabled=busy data-testid="clear-cache"
                        title="Delete the model downloads this page keeps in the browser's Cache Storage">"Clear cached models"</button>
                </div>
                {move || (ui.phase.get() == Phase::Loading).then(|| progress_view(ui))}
                <ul class="notices">
                    {move || ui.notices.get().into_iter().map(|n| view! { <li>{n}</li> }).collect_view()}
                </ul>
            </section>

            <section class="card generate">
                <h2>"Generate"</h2>
                <textarea rows="3" data-testid="prompt"
                    prop:value=move || prompt.get()
                    on:input=move |ev| prompt.set(event_target_value(&ev))></textarea>
                <div class="row controls">
                    {number_field("Max tokens", max_tokens, "1", "1024", "1", "max-tokens")}
                    {number_field("Temperature", temperature, "0", "2", "0.1", "temperature")}
                    {number_field("Top-p", top_p, "0.05", "1", "0.05", "top-p")}
                    {number_field("Seed", seed, "0", "", "1", "seed")}
                    <div class="spacer"></div>
                    <button class="primary" data-testid="generate" on:click=move |_| generate()
                        disabled=move || !can_generate()>"Generate"</button>
                    <button data-testid="stop" on:click=move |_| send(Request::Cancel)
                        disabled=move || !matches!(ui.phase.get(), Phase::Generating | Phase::Explaining | Phase::Compressing)>"Stop"</button>
                </div>
                <div class="output" data-testid="output">
                    {move || if ui.sequence.get().is_empty() {
                        view! {
                            <span class="prompt-echo">{move || if ui.output.get().is_empty() && ui.stats.get().is_empty() { String::new() } else { prompt.get() }}</span>
                            <span class="generated">{move || ui.output.get()}</span>
                        }.into_any()
                    } else {
                        clickable_output(ui, link).into_any()
                    }}
                    <Show when=move || ui.phase.get() == Phase::Generating><span class="cursor">"▍"</span></Show>
                </div>
                <div class="stats" data-testid="stats">{move || ui.stats.get()}</div>
                <Show when=move || !ui.sequence.get().is_empty() && ui.explanation.get().is_none() && !ui.is_explaining()>
                    <p class="hint">"Click a generated token to see why the model wrote it."</p>
                </Show>
            </section>

            <Show when=move || ui.explanation.get().is_some() || ui.is_explaining()>
                <ExplainPanel ui=ui link=link />
            </Show>

            <Show when=move || !ui.model_name.get().is_empty()>
                <CompressPanel ui=ui link=link />
                <CircuitPanel ui=ui link=link />
                <CorrectPanel ui=ui link=link />
            </Show>

            {move || ui.error.get().map(|e| view! { <div class="error" role="alert" data-testid="error">{e}</div> })}
        </main>
        <footer>
            "Runs entirely in this tab: no data leaves the browser except the model downloads you choose. "
            "LRP is patented by its authors (free for personal and scientific use)."
        </footer>
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
        view! {
            <div class="progress" data-testid="progress">
                <div class="label">{p.stage.clone()} " " {detail}</div>
                <div class="track"><div class="fill" style=format!("width: {pct:.1}%")></div></div>
            </div>
        }
    })
}

/// The finished text as one span per token; generated tokens can be clicked to explain them.
fn clickable_output(ui: Ui, link: StoredValue<WorkerLink>) -> impl IntoView {
    let sequence = ui.sequence.get();
    let split = ui.prompt_tokens.get().min(sequence.len());
    let prompt: String = sequence[..split].iter().map(|(_, t)| t.as_str()).collect();
    let generated = sequence[split..]
        .iter()
        .enumerate()
        .map(|(i, (_, text))| {
            let position = split + i;
            view! {
                <span class="tok" data-testid="gen-token"
                    class:selected=move || ui.selected.get() == Some(position)
                    title="explain this token"
                    on:click=move |_| if !ui.is_explaining() { ui.explain(link, position) }>
                    {text.clone()}
                </span>
            }
        })
        .collect_view();
    view! {
        <span class="prompt-echo">{prompt}</span>
        <span class="generated">{generated}</span>
    }
}

/// A labelled number input bound to `value`; text that does not parse leaves the value unchanged.
fn number_field<T>(
    label: &'static str,
    value: RwSignal<T>,
    min: &'static str,
    max: &'static str,
    step: &'static str,
    testid: &'static str,
) -> impl IntoView
where
    T: std::str::FromStr + ToString + Clone + Send + Sync + 'static,
{
    view! {
        <label class="inline">{label} " "
            <input type="number" class="narrow" min=min max=max step=step data-testid=testid
                prop:value=move || value.get().to_string()
                on:input=move |ev| if let Ok(v) = event_target_value(&ev).parse() { value.set(v) } />
        </label>
    }
}

fn parse_device(v: &str) -> DeviceChoice {
    match v {
        "webgpu" => DeviceChoice::WebGpu,
        "cpu" => DeviceChoice::Cpu,
        _ => DeviceChoice::Auto,
    }
}

fn device_name(d: DeviceChoice) -> &'static str {
    match d {
        DeviceChoice::Auto => "auto",
        DeviceChoice::WebGpu => "webgpu",
        DeviceChoice::Cpu => "cpu",
    }
}

/// `?device=cpu|webgpu|auto` in the address picks the device for the first load (used by tests,
/// and handy to share a link).
fn initial_device_choice() -> DeviceChoice {
    query_param("device")
        .map(|v| parse_device(&v))
        .unwrap_or(DeviceChoice::Auto)
}

/// The value of `name=` in the page address' query, if present.
fn query_param(name: &str) -> Option<String> {
    let search = web_sys::window().and_then(|w| w.location().search().ok())?;
    let prefix = format!("{name}=");
    search
        .trim_start_matches('?')
        .split('&')
        .find_map(|kv| kv.strip_prefix(prefix.as_str()).map(str::to_string))
}

/// `?dtype=auto|f32|f16` in the address picks how the first load holds the weights.
fn initial_dtype_choice() -> WeightDtype {
    query_param("dtype")
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}

/// Reads picked files into memory for the worker.
async fn read_files(
    list: &web_sys::FileList,
) -> Result<Vec<(String, serde_bytes::ByteBuf)>, String> {
    let mut out = Vec::new();
    for i in 0..list.length() {
        let Some(file) = list.item(i) else { continue };
        let buffer = wasm_bindgen_futures::JsFuture::from(file.array_buffer())
            .await
            .map_err(|e| format!("reading {}: {e:?}", file.name()))?;
        out.push((
            file.name(),
            serde_bytes::ByteBuf::from(js_sys::Uint8Array::new(&buffer).to_vec()),
        ));
    }
    if out.is_empty() {
        return Err("no file was chosen".into());
    }
    Ok(out)
}
