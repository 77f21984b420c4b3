//! What the worker's jobs share: the worker's state (the model, what each panel keeps between
//! requests, the weights' version) and the helpers every job uses to talk to the page, download,
//! step a scorer and measure perplexity. The jobs (`*_job.rs`) build on this module and never on
//! each other; `worker.rs` dispatches the page's requests to them.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::Promise;
use scalpel::correct::ContinuationScorer;
use scalpel::eval::corpus::wiki_text;
use scalpel::eval::perplexity::{PerplexityProtocol, perplexity_async};
use scalpel::job::{Driver, Steps};
use scalpel::prune::{Granularity, Masks, SparsityReport};
use scalpel::relevance::MemoryLimits;
use scalpel::score::{Scorer, Scores, ScoringBudget};
use scalpel::task::EncodedTask;
use scalpel::task::metrics::TaskMetrics;
use scalpel::{LoadedModel, Model};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::DedicatedWorkerGlobalScope;

use crate::fetch::fetch_bytes;
use crate::protocol::{CircuitView, Response, WIKI_URL};

#[derive(Default)]
pub(crate) struct State {
    pub(crate) model: RefCell<Option<Rc<LoadedModel>>>,
    /// What the device can hold, checked before an explanation allocates.
    pub(crate) limits: Cell<MemoryLimits>,
    pub(crate) busy: Cell<bool>,
    pub(crate) cancel: Cell<bool>,
    pub(crate) compression: RefCell<Compression>,
    pub(crate) circuits: RefCell<Circuits>,
    pub(crate) correction: RefCell<Correction>,
    /// Whether the model runs on WebGPU (sizes the perplexity readout).
    pub(crate) on_gpu: Cell<bool>,
    /// Whether the page hears about the GPU device being lost (set up once per worker).
    pub(crate) watching_device_loss: Cell<bool>,
    /// Which version of the weights the model holds: every mask applied or undone, by any job,
    /// counts one up, so a panel's masks are on the model only while the version it applied
    /// them at is the current one.
    weights_version: Cell<u64>,
    /// The masks applied last and the weights' version they made (what a shrunk export cuts).
    applied: RefCell<Option<(u64, Masks)>>,
}

impl State {
    /// The loaded model, shared for the duration of a job.
    pub(crate) fn loaded(&self) -> JobResult<Rc<LoadedModel>> {
        self.model
            .borrow()
            .clone()
            .ok_or_else(|| "no model is loaded yet".into())
    }

    /// The version of the weights the model holds now (see the field).
    pub(crate) fn weights_version(&self) -> u64 {
        self.weights_version.get()
    }

    /// Undoes every mask on the model.
    pub(crate) fn restore_dense(&self) -> JobResult {
        self.model_mut(|l| {
            l.model.restore_dense();
            Ok(())
        })?;
        self.weights_version.set(self.weights_version.get() + 1);
        Ok(())
    }

    /// Applies `masks` to the dense weights, replacing any mask applied before; returns what
    /// they pruned and the weights' version they made.
    pub(crate) fn apply_masks(&self, masks: &Masks) -> JobResult<(SparsityReport, u64)> {
        let report = self.model_mut(|l| Ok(masks.apply(&mut l.model)?))?;
        self.weights_version.set(self.weights_version.get() + 1);
        let version = self.weights_version.get();
        *self.applied.borrow_mut() = Some((version, masks.clone()));
        Ok((report, version))
    }

    /// The masks the model runs with now, if a panel applied them and nothing changed the
    /// weights since.
    pub(crate) fn applied_masks(&self) -> Option<Masks> {
        self.applied
            .borrow()
            .as_ref()
            .filter(|(version, _)| *version == self.weights_version.get())
            .map(|(_, masks)| masks.clone())
    }

    /// The model, taken out of the shared slot for a job that changes its weights as it goes
    /// (a correction or a circuit search measures one mask after another). It goes back when
    /// the guard drops, and the weights' version counts one up then.
    pub(crate) fn lend_model(&self) -> JobResult<Lent<'_>> {
        let loaded = self
            .model
            .borrow_mut()
            .take()
            .ok_or("no model is loaded yet")?;
        Ok(Lent {
            state: self,
            loaded: Some(loaded),
        })
    }

    /// Runs `f` on the loaded model mutably (masking); no job may hold it at the same time.
    fn model_mut<T>(&self, f: impl FnOnce(&mut LoadedModel) -> JobResult<T>) -> JobResult<T> {
        let mut slot = self.model.borrow_mut();
        let rc = slot.as_mut().ok_or("no model is loaded yet")?;
        let loaded = Rc::get_mut(rc).ok_or("the model is busy; try again")?;
        f(loaded)
    }
}

/// The model lent to one job ([`State::lend_model`]).
pub(crate) struct Lent<'s> {
    state: &'s State,
    loaded: Option<Rc<LoadedModel>>,
}

impl Lent<'_> {
    /// The model and tokenizer, for the job to change and read.
    pub(crate) fn get(&mut self) -> JobResult<&mut LoadedModel> {
        self.loaded
            .as_mut()
            .and_then(Rc::get_mut)
            .ok_or_else(|| "the model is busy; try again".into())
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        *self.state.model.borrow_mut() = self.loaded.take();
        let version = &self.state.weights_version;
        version.set(version.get() + 1);
    }
}

/// What the compression panel keeps between requests.
#[derive(Default)]
pub(crate) struct Compression {
    pub(crate) scores: Option<Scores>,
    /// The readout's tokens and the dense model's perplexity on them.
    pub(crate) readout: Option<(Vec<u32>, f64)>,
}

impl Compression {
    /// Forgets everything tied to the previous model.
    pub(crate) fn reset(cell: &RefCell<Compression>) {
        *cell.borrow_mut() = Compression::default();
    }
}

/// What the circuit panel keeps between requests.
#[derive(Default)]
pub(crate) struct Circuits {
    pub(crate) scores: Option<Scores>,
    /// Scoring and held-out prompts with the dense model's metrics on them.
    pub(crate) scoring: Option<(EncodedTask, TaskMetrics)>,
    pub(crate) held_out: Option<(EncodedTask, TaskMetrics)>,
    pub(crate) seed: u64,
    /// The circuit picked last (applied or not) and its view.
    pub(crate) picked: Option<(Masks, CircuitView)>,
    /// The weights' version when the picked circuit was applied.
    pub(crate) applied_at: Option<u64>,
}

impl Circuits {
    /// Forgets everything tied to the previous model.
    pub(crate) fn reset(cell: &RefCell<Circuits>) {
        *cell.borrow_mut() = Circuits::default();
    }
}

/// What the correction panel keeps between requests.
#[derive(Default)]
pub(crate) struct Correction {
    /// `R_diff`, and the general and undesired scores it came from (absent for random).
    pub(crate) scores: Option<Scores>,
    pub(crate) parts: Option<(Scores, Scores)>,
    pub(crate) judge: Option<Box<dyn ContinuationScorer>>,
    pub(crate) max_new_tokens: usize,
    /// The correction picked last, and the weights' version when it was applied.
    pub(crate) picked: Option<(usize, Masks)>,
    pub(crate) applied_at: Option<u64>,
}

impl Correction {
    /// Forgets everything tied to the previous model.
    pub(crate) fn reset(cell: &RefCell<Correction>) {
        *cell.borrow_mut() = Correction::default();
    }
}

pub(crate) fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

pub(crate) fn post(msg: &Response) {
    match serde_wasm_bindgen::to_value(msg) {
        Ok(v) => {
            if let Err(e) = scope().post_message(&v) {
                web_sys::console::error_2(&"postMessage failed".into(), &e);
            }
        }
        Err(e) => web_sys::console::error_1(&format!("serializing a response: {e}").into()),
    }
}

pub(crate) fn progress(stage: &str, done: f64, total: f64) {
    post(&Response::Progress {
        stage: stage.into(),
        done,
        total,
    });
}

/// Gives the event loop a turn so queued messages (such as Cancel) are handled.
pub(crate) async fn yield_now() {
    let promise = Promise::new(&mut |resolve, _| {
        let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 0);
    });
    let _ = JsFuture::from(promise).await;
}

pub(crate) async fn download(url: &str, label: &str) -> JobResult<Vec<u8>> {
    let stage = format!("Downloading {label}");
    let fetched = fetch_bytes(url, &mut |done, total| progress(&stage, done, total)).await?;
    for message in fetched.notices {
        post(&Response::Notice { message });
    }
    if fetched.from_cache {
        post(&Response::Notice {
            message: format!("{label}: loaded from the browser cache"),
        });
    }
    Ok(fetched.bytes)
}

/// Why a worker job failed: the core's error, or the worker's own (no model loaded, a failed
/// download). The page shows its message.
#[derive(Debug)]
pub(crate) enum JobError {
    Core(scalpel::Error),
    Worker(String),
}

/// What a worker job returns.
pub(crate) type JobResult<T = ()> = Result<T, JobError>;

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobError::Core(e) => e.fmt(f),
            JobError::Worker(message) => f.write_str(message),
        }
    }
}

impl From<scalpel::Error> for JobError {
    fn from(e: scalpel::Error) -> Self {
        JobError::Core(e)
    }
}

impl From<String> for JobError {
    fn from(message: String) -> Self {
        JobError::Worker(message)
    }
}

impl From<&str> for JobError {
    fn from(message: &str) -> Self {
        JobError::Worker(message.to_string())
    }
}

/// A core job's steps as the page's progress messages, yielding to the event loop before each
/// step so a Stop arrives, and stopping the job at the next step after it.
pub(crate) struct Progress<'s>(pub(crate) &'s State);

impl Steps for Progress<'_> {
    async fn step(&mut self, stage: &str, done: usize, total: usize) -> scalpel::Result<()> {
        progress(stage, done as f64, total as f64);
        yield_now().await;
        if self.0.cancel.get() {
            Err(scalpel::Error::Cancelled)
        } else {
            Ok(())
        }
    }

    fn notice(&mut self, message: &str) {
        post(&Response::Notice {
            message: message.into(),
        });
    }
}

/// [`Progress`] for a job with events, each handed to `on_event` (which posts what the page
/// draws at once and keeps what the panel needs afterwards).
pub(crate) struct Posting<'s, F> {
    progress: Progress<'s>,
    on_event: F,
}

impl<'s, F> Posting<'s, F> {
    pub(crate) fn new(state: &'s State, on_event: F) -> Self {
        Self {
            progress: Progress(state),
            on_event,
        }
    }
}

impl<F> Steps for Posting<'_, F> {
    async fn step(&mut self, stage: &str, done: usize, total: usize) -> scalpel::Result<()> {
        self.progress.step(stage, done, total).await
    }

    fn notice(&mut self, message: &str) {
        self.progress.notice(message);
    }
}

impl<E, F: FnMut(E)> Driver<E> for Posting<'_, F> {
    fn event(&mut self, event: E) -> scalpel::Result<()> {
        (self.on_event)(event);
        Ok(())
    }
}

/// What a job's scorers may use in this worker.
pub(crate) fn budget(state: &State) -> ScoringBudget {
    ScoringBudget {
        limits: state.limits.get(),
    }
}

/// Steps `scorer` to the end with progress (stopping on Stop), then reads the scores back.
pub(crate) async fn run_scorer(
    state: &State,
    scorer: Scorer<'_>,
    stage: &str,
) -> JobResult<Scores> {
    Ok(scalpel::score::run_scorer(scorer, &mut Progress(state), stage).await?)
}

/// The perplexity readout, a quick named variant of `wiki-512`: 4 windows of 256 wiki tokens on
/// a GPU; 2 of 128 on the CPU, where one 256-token forward takes seconds in a single wasm thread.
pub(crate) fn readout_protocol(on_gpu: bool) -> PerplexityProtocol {
    if on_gpu {
        PerplexityProtocol::wiki(256, 4)
    } else {
        PerplexityProtocol::wiki(128, 2)
    }
}

pub(crate) async fn readout_perplexity(
    state: &State,
    model: &Model,
    tokens: &[u32],
    stage: &str,
) -> JobResult<f64> {
    let protocol = readout_protocol(state.on_gpu.get());
    let result = perplexity_async(model, tokens, &protocol, &mut Progress(state), stage).await?;
    Ok(result.perplexity)
}

/// The readout's tokens and dense perplexity, computed once per loaded model.
pub(crate) async fn readout(state: &State) -> JobResult<(Vec<u32>, f64)> {
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
    let tokens = loaded.tokenizer.encode(&wiki[..cut])?;
    let dense = readout_perplexity(state, &loaded.model, &tokens, "Perplexity (dense)").await?;
    let r = (tokens, dense);
    state.compression.borrow_mut().readout = Some(r.clone());
    Ok(r)
}

pub(crate) fn object_url(bytes: &[u8]) -> JobResult<String> {
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
    let blob = web_sys::Blob::new_with_u8_array_sequence(&parts)
        .map_err(|e| format!("could not hold the file in memory: {e:?}"))?;
    Ok(web_sys::Url::create_object_url_with_blob(&blob)
        .map_err(|e: JsValue| format!("could not offer the file for download: {e:?}"))?)
}

/// `"L23 H3"` for a head, `"L5 N1021"` for a neuron, `"L2 Down[17]"` for a weight.
pub(crate) fn component_label(
    granularity: Granularity,
    layer: usize,
    linear: scalpel::model::LinearKind,
    index: usize,
) -> String {
    match granularity {
        Granularity::Heads => format!("L{layer} H{index}"),
        Granularity::Neurons => format!("L{layer} N{index}"),
        Granularity::Weights => format!("L{layer} {linear:?}[{index}]"),
    }
}
